//! The content part of a manifest: files and chunk hashes, fetched from peers by hash.

use serde::{Deserialize, Serialize};

use super::hash::ContentHash;
use super::header::{MAX_CHUNK_COUNT, MAX_FILE_COUNT};
use super::name::{FILE_NAME_MAX_LEN, FileName};
use super::ManifestError;
use crate::encoding::{CanonicalReader, CanonicalWriter};

/// Domain tag of the canonical body encoding.
pub const BODY_DOMAIN: &str = "patchmesh/manifest-body/1";

/// One file of a patch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// The path relative to the patch's root.
    pub name: FileName,
    /// The size in bytes.
    pub size: u64,
    /// The BLAKE3 hash of the whole file.
    pub hash: ContentHash,
}

/// The files of a patch and the hash of each chunk.
///
/// Chunks cut the concatenation of all files, in list order, into `chunk_size` pieces, so
/// a chunk may span several small files and an empty file occupies no chunk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestBody {
    /// The files, in the order their bytes are concatenated.
    pub files: Vec<FileEntry>,
    /// One BLAKE3 hash per chunk.
    pub chunk_hashes: Vec<ContentHash>,
}

impl ManifestBody {
    /// The canonical encoding, which the header's `body_hash` covers and peers exchange.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut writer = CanonicalWriter::with_domain(BODY_DOMAIN);
        writer.put_u32(self.files.len() as u32);
        for file in &self.files {
            writer.put_str(file.name.as_str());
            writer.put_u64(file.size);
            writer.put_fixed(&file.hash.0);
        }
        writer.put_u32(self.chunk_hashes.len() as u32);
        for hash in &self.chunk_hashes {
            writer.put_fixed(&hash.0);
        }
        writer.finish()
    }

    /// Decodes a canonical body, rejecting any other encoding of the same content.
    pub fn from_canonical_bytes(bytes: &[u8]) -> Result<Self, ManifestError> {
        let mut reader = CanonicalReader::with_domain(bytes, BODY_DOMAIN)?;
        let file_count = reader.take_u32()?;
        if file_count > MAX_FILE_COUNT {
            return Err(ManifestError::FileCount { file_count });
        }
        let mut files = Vec::with_capacity(file_count as usize);
        for _ in 0..file_count {
            let name = FileName::new(reader.take_str("file name", FILE_NAME_MAX_LEN)?)?;
            let size = reader.take_u64()?;
            let hash = ContentHash(reader.take_array()?);
            files.push(FileEntry { name, size, hash });
        }
        let chunk_count = reader.take_u32()?;
        if chunk_count > MAX_CHUNK_COUNT || reader.remaining() != chunk_count as usize * 32 {
            return Err(ManifestError::BodyLayout {
                reason: format!("{chunk_count} chunk hashes but {} bytes remain", reader.remaining()),
            });
        }
        let mut chunk_hashes = Vec::with_capacity(chunk_count as usize);
        for _ in 0..chunk_count {
            chunk_hashes.push(ContentHash(reader.take_array()?));
        }
        reader.finish()?;
        Ok(ManifestBody { files, chunk_hashes })
    }
}
