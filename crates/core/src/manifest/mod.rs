//! Signed patch manifests.
//!
//! A manifest is a signed [`ManifestHeader`] plus a [`ManifestBody`]. The header is what
//! publishers and approvers sign and what nodes gossip (as an [`Announcement`]); the body
//! lists the files and the BLAKE3 hash of every chunk and is fetched from peers, checked
//! against the hash the header commits to. A node trusts a chunk only after its bytes hash
//! to the value in a body whose header carries a trusted signature.
//!
//! On disk and between tools a manifest is a JSON file ([`Manifest::to_json`]); its
//! `format` field names the version of that layout.

mod body;
mod builder;
mod hash;
mod header;
mod name;

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

pub use body::{BODY_DOMAIN, FileEntry, ManifestBody};
pub use builder::{ManifestBuilder, default_chunk_size};
pub use hash::{ContentHash, InvalidHash, SignatureBytes};
pub use header::{
    Announcement, ChunkVerification, HEADER_DOMAIN, HEADER_DOMAIN_PLANNED, MANIFEST_FORMAT, MANIFEST_FORMAT_PLANNED, MAX_BODY_BYTES, MAX_CHUNK_COUNT,
    MAX_CHUNK_SIZE, MAX_FILE_COUNT, MAX_SIGNATURES, MIN_CHUNK_SIZE, ManifestHeader, ManifestSignature,
};
pub use name::{COMPONENT_MAX_LEN, FILE_NAME_MAX_LEN, FileName, InvalidFileName};

use crate::encoding::DecodeError;
use crate::governance::{PlanError, RolloutPlan};
use crate::ids::PatchKey;

/// A manifest that is not internally consistent. Signature trust is checked separately, by
/// [`TrustPolicy`](crate::TrustPolicy).
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// A format version this release cannot read.
    #[error("unsupported manifest format {format}: this release reads formats {MANIFEST_FORMAT} and {MANIFEST_FORMAT_PLANNED}; upgrade patchmesh")]
    UnsupportedFormat {
        /// The format found.
        format: u32,
    },
    /// A chunk size outside the allowed range.
    #[error("invalid chunk size {chunk_size} bytes: use {MIN_CHUNK_SIZE} to {MAX_CHUNK_SIZE} bytes")]
    ChunkSize {
        /// The chunk size found.
        chunk_size: u32,
    },
    /// A chunk count that does not match the sizes, or is over the limit.
    #[error("invalid chunk count {chunk_count}: the sizes need {expected} chunks (at most {MAX_CHUNK_COUNT}; use larger chunks)")]
    ChunkCount {
        /// The count the header or body gives.
        chunk_count: u32,
        /// The count the sizes require.
        expected: u64,
    },
    /// No files, or too many.
    #[error("invalid file count {file_count}: a patch holds 1 to {MAX_FILE_COUNT} files")]
    FileCount {
        /// The count found.
        file_count: u32,
    },
    /// A body larger than any node will fetch.
    #[error("manifest body of {body_bytes} bytes exceeds the maximum of {MAX_BODY_BYTES}")]
    BodyTooLarge {
        /// The size the header declares.
        body_bytes: u32,
    },
    /// Expiry not after creation.
    #[error("manifest expires at {expires} but was created at {created} (Unix seconds): expiry must be later")]
    ExpiresBeforeCreated {
        /// Creation time.
        created: u64,
        /// Expiry time.
        expires: u64,
    },
    /// A body that does not hash to the header's `body_hash` or has another length.
    #[error("manifest body does not match the signed header: expected {expected_bytes} bytes hashing to {expected}, got {actual_bytes} bytes hashing to {actual}")]
    BodyMismatch {
        /// The hash the header commits to.
        expected: ContentHash,
        /// The hash of the body received.
        actual: ContentHash,
        /// The length the header commits to.
        expected_bytes: u32,
        /// The length received.
        actual_bytes: usize,
    },
    /// A body whose content contradicts the header or itself.
    #[error("invalid manifest body: {reason}")]
    BodyLayout {
        /// What is inconsistent.
        reason: String,
    },
    /// A file name that breaks the grammar.
    #[error(transparent)]
    FileName(#[from] InvalidFileName),
    /// A rollout plan in a format that has none, or none in the format that needs one.
    #[error("manifest format {format} {}", if *has_plan { "carries a rollout plan, which only format 2 may" } else { "needs a rollout plan and carries none" })]
    PlanFormat {
        /// The header's format.
        format: u32,
        /// Whether a plan was present.
        has_plan: bool,
    },
    /// A rollout plan that breaks its limits.
    #[error("invalid rollout plan: {0}")]
    Plan(PlanError),
    /// Canonical bytes that do not decode.
    #[error("invalid manifest encoding: {0}")]
    Decode(#[from] DecodeError),
    /// A manifest file that is not valid JSON of the expected shape.
    #[error("invalid manifest JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// A chunk whose bytes do not match the manifest.
#[derive(Debug, thiserror::Error)]
pub enum ChunkError {
    /// An index past the last chunk.
    #[error("chunk {index} is out of range: the patch has {chunk_count} chunks")]
    OutOfRange {
        /// The index requested.
        index: u32,
        /// The patch's chunk count.
        chunk_count: u32,
    },
    /// Fewer or more bytes than the chunk holds.
    #[error("chunk {index} has {actual} bytes, expected {expected}")]
    Length {
        /// The chunk index.
        index: u32,
        /// The length the manifest gives.
        expected: u32,
        /// The length received.
        actual: usize,
    },
    /// Bytes that hash to another value.
    #[error("chunk {index} hash mismatch: expected {expected}, got {actual}")]
    HashMismatch {
        /// The chunk index.
        index: u32,
        /// The hash the manifest gives.
        expected: ContentHash,
        /// The hash of the bytes received.
        actual: ContentHash,
    },
}

/// A byte range of one file that a chunk covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileSpan {
    /// Index into [`ManifestBody::files`].
    pub file: usize,
    /// Offset within the file, in bytes.
    pub offset: u64,
    /// Length in bytes, never 0.
    pub len: u64,
}

/// A complete, internally consistent manifest: the signed announcement and the body it
/// commits to.
///
/// Holding a `Manifest` proves consistency, not trust: check the signatures with
/// [`TrustPolicy::verify`](crate::TrustPolicy::verify) before acting on one from outside.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    announcement: Announcement,
    body: ManifestBody,
    body_bytes: Vec<u8>,
    /// Where each file starts in the concatenation, in bytes.
    file_offsets: Vec<u64>,
}

/// The JSON file layout of a manifest.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestFile {
    format: u32,
    header: ManifestHeader,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    plan: Option<RolloutPlan>,
    signatures: Vec<ManifestSignature>,
    files: Vec<FileEntry>,
    chunk_hashes: Vec<ContentHash>,
}

impl Manifest {
    /// Checks that `body_bytes` is the body `announcement` commits to and that both agree.
    pub fn from_parts(announcement: Announcement, body_bytes: Vec<u8>) -> Result<Self, ManifestError> {
        announcement.validate()?;
        let header = &announcement.header;
        let actual = ContentHash::of(&body_bytes);
        if actual != header.body_hash || body_bytes.len() != header.body_bytes as usize {
            return Err(ManifestError::BodyMismatch {
                expected: header.body_hash,
                actual,
                expected_bytes: header.body_bytes,
                actual_bytes: body_bytes.len(),
            });
        }
        let body = ManifestBody::from_canonical_bytes(&body_bytes)?;
        let file_offsets = check_body(header, &body)?;
        Ok(Manifest { announcement, body, body_bytes, file_offsets })
    }

    /// Builds a manifest from an announcement and a decoded body.
    pub fn from_body(announcement: Announcement, body: &ManifestBody) -> Result<Self, ManifestError> {
        Manifest::from_parts(announcement, body.canonical_bytes())
    }

    /// Parses the JSON file form and checks consistency.
    pub fn from_json(text: &str) -> Result<Self, ManifestError> {
        let file: ManifestFile = serde_json::from_str(text)?;
        // The file's format is the header's: a reader that knows only format 1 stops at the
        // first field instead of silently dropping a plan it does not understand.
        if file.format != file.header.format {
            return Err(ManifestError::UnsupportedFormat { format: file.format });
        }
        let body = ManifestBody { files: file.files, chunk_hashes: file.chunk_hashes };
        let announcement = Announcement { header: file.header, plan: file.plan, signatures: file.signatures };
        Manifest::from_body(announcement, &body)
    }

    /// The JSON file form, pretty-printed.
    pub fn to_json(&self) -> String {
        let file = ManifestFile {
            format: self.announcement.header.format,
            header: self.announcement.header.clone(),
            plan: self.announcement.plan.clone(),
            signatures: self.announcement.signatures.clone(),
            files: self.body.files.clone(),
            chunk_hashes: self.body.chunk_hashes.clone(),
        };
        // serde_json fails only on maps with non-string keys or failing Serialize impls,
        // and this struct has neither.
        serde_json::to_string_pretty(&file).unwrap_or_default()
    }

    /// The signed header and its signatures.
    pub fn announcement(&self) -> &Announcement {
        &self.announcement
    }

    /// Adds or replaces a signature by `key`.
    pub fn sign(&mut self, key: &crate::SecretKey) {
        self.announcement.sign(key);
    }

    /// The rollout plan, if the publisher set one.
    pub fn plan(&self) -> Option<&RolloutPlan> {
        self.announcement.plan.as_ref()
    }

    /// The signed header.
    pub fn header(&self) -> &ManifestHeader {
        &self.announcement.header
    }

    /// The patch version this manifest describes.
    pub fn key(&self) -> &PatchKey {
        &self.announcement.header.patch
    }

    /// The files and chunk hashes.
    pub fn body(&self) -> &ManifestBody {
        &self.body
    }

    /// The canonical body bytes, as peers exchange them.
    pub fn body_bytes(&self) -> &[u8] {
        &self.body_bytes
    }

    /// The number of chunks.
    pub fn chunk_count(&self) -> u32 {
        self.header().chunk_count
    }

    /// The length of chunk `index`, in bytes.
    pub fn chunk_len(&self, index: u32) -> u32 {
        self.header().chunk_len(index)
    }

    /// Where file `index` starts in the concatenation of all files, in bytes.
    pub fn file_offset(&self, index: usize) -> u64 {
        self.file_offsets[index]
    }

    /// Checks `bytes` against the hash of chunk `index`.
    pub fn verify_chunk(&self, index: u32, bytes: &[u8]) -> Result<(), ChunkError> {
        let chunk_count = self.chunk_count();
        if index >= chunk_count {
            return Err(ChunkError::OutOfRange { index, chunk_count });
        }
        let expected_len = self.chunk_len(index);
        if bytes.len() != expected_len as usize {
            return Err(ChunkError::Length { index, expected: expected_len, actual: bytes.len() });
        }
        let expected = self.body.chunk_hashes[index as usize];
        let actual = ContentHash::of(bytes);
        if actual != expected {
            return Err(ChunkError::HashMismatch { index, expected, actual });
        }
        Ok(())
    }

    /// The file ranges chunk `index` covers, in order; empty for an index past the end.
    pub fn chunk_spans(&self, index: u32) -> Vec<FileSpan> {
        let len = u64::from(self.chunk_len(index));
        if len == 0 {
            return Vec::new();
        }
        let start = u64::from(index) * u64::from(self.header().chunk_size);
        let end = start + len;
        // The first file whose range ends after `start`; empty files are skipped below.
        let first = self.file_offsets.partition_point(|&offset| offset <= start).saturating_sub(1);
        let mut spans = Vec::new();
        for (file, entry) in self.body.files.iter().enumerate().skip(first) {
            let file_start = self.file_offsets[file];
            if file_start >= end {
                break;
            }
            let file_end = file_start + entry.size;
            let span_start = start.max(file_start);
            let span_end = end.min(file_end);
            if span_end > span_start {
                spans.push(FileSpan { file, offset: span_start - file_start, len: span_end - span_start });
            }
        }
        spans
    }
}

/// Checks a body against its header and returns each file's offset in the concatenation.
fn check_body(header: &ManifestHeader, body: &ManifestBody) -> Result<Vec<u64>, ManifestError> {
    if body.files.len() != header.file_count as usize {
        return Err(ManifestError::BodyLayout {
            reason: format!("header declares {} files, body lists {}", header.file_count, body.files.len()),
        });
    }
    if body.chunk_hashes.len() != header.chunk_count as usize {
        return Err(ManifestError::BodyLayout {
            reason: format!(
                "header declares {} chunks, body lists {} hashes",
                header.chunk_count,
                body.chunk_hashes.len()
            ),
        });
    }
    let mut offsets = Vec::with_capacity(body.files.len());
    let mut total: u64 = 0;
    let mut seen = HashSet::new();
    for file in &body.files {
        if !seen.insert(file.name.fold_case()) {
            return Err(ManifestError::BodyLayout {
                reason: format!("file name {:?} appears twice (names compare without case)", file.name.as_str()),
            });
        }
        offsets.push(total);
        total = total.checked_add(file.size).ok_or_else(|| ManifestError::BodyLayout {
            reason: "file sizes overflow".into(),
        })?;
    }
    // A name that is also a directory of another name cannot be assembled.
    for file in &body.files {
        let name = file.name.as_str();
        for (position, _) in name.match_indices('/') {
            let directory = name[..position].to_lowercase();
            if seen.contains(&directory) {
                return Err(ManifestError::BodyLayout {
                    reason: format!("{:?} is both a file and a directory of {name:?}", &name[..position]),
                });
            }
        }
    }
    if total != header.total_bytes {
        return Err(ManifestError::BodyLayout {
            reason: format!("files add up to {total} bytes, header declares {}", header.total_bytes),
        });
    }
    Ok(offsets)
}

#[cfg(test)]
mod tests;
