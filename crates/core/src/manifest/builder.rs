//! Building a manifest from files: chunking and hashing.

use std::io::{self, Read};

use super::body::{FileEntry, ManifestBody};
use super::hash::ContentHash;
use super::header::{
    Announcement, ChunkVerification, MANIFEST_FORMAT, MANIFEST_FORMAT_PLANNED, MAX_CHUNK_SIZE, MIN_CHUNK_SIZE,
    ManifestHeader,
};
use crate::governance::RolloutPlan;
use super::name::FileName;
use super::{Manifest, ManifestError};
use crate::ids::PatchKey;

/// Picks a chunk size for a patch of `total_bytes`: a power of two that gives about 1,024
/// chunks, between 64 KiB and 4 MiB.
///
/// Many chunks let a rollout pipeline through the mesh (the time a chunked transfer adds
/// over the streaming bound shrinks with the chunk count), while each chunk costs one
/// request and one hash; 1,024 keeps both small. A 100 MB patch gets 128 KiB chunks, a
/// 1 GiB patch 1 MiB chunks, and a 10 GiB patch 4 MiB chunks (2,560 of them).
pub fn default_chunk_size(total_bytes: u64) -> u32 {
    const MIN: u64 = 64 * 1024;
    const MAX: u64 = 4 * 1024 * 1024;
    let target = total_bytes.div_ceil(1024).clamp(MIN, MAX);
    // The clamp keeps the result within u32.
    target.next_power_of_two().min(MAX) as u32
}

/// Chunks and hashes files into a [`Manifest`].
///
/// Files are streamed: memory use is one chunk plus the hash list, whatever the file sizes.
pub struct ManifestBuilder {
    patch: PatchKey,
    chunk_size: u32,
    files: Vec<FileEntry>,
    chunk_hashes: Vec<ContentHash>,
    /// The bytes of the chunk being filled.
    pending: Vec<u8>,
    total_bytes: u64,
    plan: Option<RolloutPlan>,
}

impl ManifestBuilder {
    /// Starts a manifest for `patch` with chunks of `chunk_size` bytes.
    pub fn new(patch: PatchKey, chunk_size: u32) -> Result<Self, ManifestError> {
        if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&chunk_size) {
            return Err(ManifestError::ChunkSize { chunk_size });
        }
        Ok(ManifestBuilder {
            patch,
            chunk_size,
            files: Vec::new(),
            chunk_hashes: Vec::new(),
            pending: Vec::with_capacity(chunk_size as usize),
            total_bytes: 0,
            plan: None,
        })
    }

    /// Sets the rollout plan, which makes the manifest format
    /// [`MANIFEST_FORMAT_PLANNED`]. Default: no plan, every site may start at once.
    pub fn plan(&mut self, plan: RolloutPlan) -> &mut Self {
        self.plan = Some(plan);
        self
    }

    /// Appends a file, reading it to the end.
    pub fn add_file(&mut self, name: FileName, mut reader: impl Read) -> io::Result<()> {
        let mut file_hasher = blake3::Hasher::new();
        let mut size: u64 = 0;
        let mut buffer = vec![0; 64 * 1024];
        loop {
            let read = match reader.read(&mut buffer) {
                Ok(0) => break,
                Ok(read) => read,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(error),
            };
            file_hasher.update(&buffer[..read]);
            size += read as u64;
            self.push_bytes(&buffer[..read]);
        }
        self.total_bytes += size;
        self.files.push(FileEntry { name, size, hash: file_hasher.finalize().into() });
        Ok(())
    }

    fn push_bytes(&mut self, mut bytes: &[u8]) {
        let chunk_size = self.chunk_size as usize;
        while !bytes.is_empty() {
            let take = (chunk_size - self.pending.len()).min(bytes.len());
            self.pending.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.pending.len() == chunk_size {
                self.chunk_hashes.push(ContentHash::of(&self.pending));
                self.pending.clear();
            }
        }
    }

    /// Finishes the manifest, unsigned; sign it with [`Manifest::sign`].
    ///
    /// `created` and `expires` are seconds since the Unix epoch.
    pub fn finish(mut self, created: u64, expires: u64) -> Result<Manifest, ManifestError> {
        if !self.pending.is_empty() {
            self.chunk_hashes.push(ContentHash::of(&self.pending));
        }
        let body = ManifestBody { files: self.files, chunk_hashes: self.chunk_hashes };
        let body_bytes = body.canonical_bytes();
        let format = if self.plan.is_some() { MANIFEST_FORMAT_PLANNED } else { MANIFEST_FORMAT };
        let header = ManifestHeader {
            format,
            patch: self.patch,
            created,
            expires,
            total_bytes: self.total_bytes,
            chunk_size: self.chunk_size,
            chunk_count: u32::try_from(body.chunk_hashes.len()).unwrap_or(u32::MAX),
            file_count: u32::try_from(body.files.len()).unwrap_or(u32::MAX),
            verification: ChunkVerification::Blake3HashList,
            body_bytes: u32::try_from(body_bytes.len()).unwrap_or(u32::MAX),
            body_hash: ContentHash::of(&body_bytes),
        };
        let announcement = Announcement { plan: self.plan, ..Announcement::unsigned(header) };
        Manifest::from_parts(announcement, body_bytes)
    }
}
