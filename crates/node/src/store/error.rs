//! One error type per store operation.
//!
//! [`StoreError`] covers the file system failures that every operation can hit. Each other
//! enum adds the failures of its own operation and wraps a `StoreError` for the rest.

use std::io;
use std::path::PathBuf;

use patchmesh_core::PatchKey;
use patchmesh_core::manifest::{ChunkError, ContentHash, FileName};

/// A store directory that could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The data dir or one of its parents could not be created.
    #[error("cannot create data dir {path}: {source}; choose a writable data_dir in node.toml")]
    Create {
        /// The data dir.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// Something other than a directory exists at the data dir's path.
    #[error("data dir {path} is not a directory; choose a directory for data_dir in node.toml")]
    NotDirectory {
        /// The data dir.
        path: PathBuf,
    },
    /// Creating or removing the probe file failed.
    #[error("data dir {path} is not writable: {source}; choose a writable data_dir in node.toml")]
    NotWritable {
        /// The data dir.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// The `patches` directory inside the data dir could not be prepared.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A file system failure inside the data dir.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file system has no space left (`ENOSPC`) or the user's quota is used up
    /// (`EDQUOT`).
    #[error(
        "disk full while writing {path}: {source}; chunks verified and stored so far are kept, so free space on that file system and the download resumes from them"
    )]
    DiskFull {
        /// The file being written.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// Any other failed file system call.
    #[error("failed to {action} {path}: {source}; check the permissions and the file system of the data dir")]
    Io {
        /// The call that failed, as a verb phrase such as "rename".
        action: &'static str,
        /// The path it acted on.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// A symbolic link where the store expects its own file or directory.
    #[error("found a symbolic link at {path}: the store never follows links inside its data dir; remove the link")]
    Symlink {
        /// The link.
        path: PathBuf,
    },
    /// A file or other non-directory where the store expects a directory.
    #[error("{path} is not a directory but the store needs a directory there; move it out of the data dir")]
    NotDirectory {
        /// The path.
        path: PathBuf,
    },
    /// A directory, device or pipe where the store expects a regular file.
    #[error("{path} is not a regular file but the store needs one there; move it out of the data dir")]
    NotFile {
        /// The path.
        path: PathBuf,
    },
}

impl StoreError {
    /// Returns whether this is [`StoreError::DiskFull`], the one failure that freeing space
    /// fixes.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, StoreError::DiskFull { .. })
    }
}

/// A chunk that [`ChunkStore::write_chunk`](super::ChunkStore::write_chunk) did not store.
#[derive(Debug, thiserror::Error)]
pub enum WriteChunkError {
    /// The bytes failed [`Manifest::verify_chunk`](patchmesh_core::Manifest::verify_chunk);
    /// nothing was written.
    #[error("rejected a chunk of {patch}, nothing was written: {source}; fetch the chunk from another peer")]
    Rejected {
        /// The patch version.
        patch: PatchKey,
        /// The verification failure.
        source: ChunkError,
    },
    /// The bytes verified but could not be written.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A chunk that [`ChunkStore::read_chunk`](super::ChunkStore::read_chunk) did not return.
#[derive(Debug, thiserror::Error)]
pub enum ReadChunkError {
    /// An index past the last chunk.
    #[error("chunk {index} of {patch} is out of range: the patch has {chunk_count} chunks")]
    OutOfRange {
        /// The patch version.
        patch: PatchKey,
        /// The index requested.
        index: u32,
        /// The patch's chunk count.
        chunk_count: u32,
    },
    /// No chunk file, and the patch is not assembled.
    #[error("chunk {index} of {patch} is not stored; fetch it before serving it")]
    NotStored {
        /// The patch version.
        patch: PatchKey,
        /// The chunk index.
        index: u32,
    },
    /// The chunk file failed verification and was deleted.
    #[error("chunk file {path} of {patch} failed verification and was deleted, so fetch the chunk again: {source}")]
    CorruptChunkFile {
        /// The patch version.
        patch: PatchKey,
        /// The deleted chunk file.
        path: PathBuf,
        /// The verification failure.
        source: ChunkError,
    },
    /// An assembled file is missing although the patch is marked complete.
    #[error(
        "assembled file {path} of {patch} is missing although the patch is marked complete; delete {version_dir} so the node fetches the patch again"
    )]
    AssembledFileMissing {
        /// The patch version.
        patch: PatchKey,
        /// The missing file.
        path: PathBuf,
        /// The directory of this patch version.
        version_dir: PathBuf,
    },
    /// The assembled files no longer match the manifest.
    #[error(
        "assembled files of {patch} failed verification: {source}; delete {version_dir} so the node fetches the patch again"
    )]
    CorruptAssembled {
        /// The patch version.
        patch: PatchKey,
        /// The directory of this patch version.
        version_dir: PathBuf,
        /// The verification failure.
        source: ChunkError,
    },
    /// A file system failure.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A patch that [`ChunkStore::assemble`](super::ChunkStore::assemble) could not assemble.
#[derive(Debug, thiserror::Error)]
pub enum AssembleError {
    /// A chunk file is missing.
    #[error("cannot assemble {patch}: chunk {index} is not stored; fetch it first")]
    MissingChunk {
        /// The patch version.
        patch: PatchKey,
        /// The chunk index.
        index: u32,
    },
    /// A chunk file failed verification and was deleted.
    #[error(
        "cannot assemble {patch}: chunk file {path} failed verification and was deleted, so fetch the chunk again: {source}"
    )]
    CorruptChunk {
        /// The patch version.
        patch: PatchKey,
        /// The deleted chunk file.
        path: PathBuf,
        /// The verification failure.
        source: ChunkError,
    },
    /// An assembled file whose chunks all verified hashes to another value than the
    /// manifest's file hash, so the manifest contradicts itself.
    #[error(
        "cannot assemble {patch}: file {name} hashes to {actual} but the manifest lists {expected}; the manifest's file hash contradicts its chunk hashes, so the publisher must publish a corrected manifest"
    )]
    FileHash {
        /// The patch version.
        patch: PatchKey,
        /// The file's name in the manifest.
        name: FileName,
        /// The hash the manifest lists.
        expected: ContentHash,
        /// The hash of the assembled bytes.
        actual: ContentHash,
    },
    /// A file system failure; the chunk files are kept.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Source files that [`ChunkStore::import`](super::ChunkStore::import) did not import.
///
/// After any of these errors the patch is not marked complete and the partial output is
/// removed.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Not one source path per manifest file.
    #[error(
        "cannot import {patch}: got {actual} source files but the manifest lists {expected}; pass one source per manifest file, in manifest order"
    )]
    SourceCount {
        /// The patch version.
        patch: PatchKey,
        /// The manifest's file count.
        expected: usize,
        /// The number of sources given.
        actual: usize,
    },
    /// A source that could not be opened or read.
    #[error("cannot import {patch}: failed to read source {path}: {source}")]
    SourceRead {
        /// The patch version.
        patch: PatchKey,
        /// The source file.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// A source that is a directory or another non-regular file.
    #[error("cannot import {patch}: source {path} is not a regular file; pass the file to publish as {name}")]
    SourceNotFile {
        /// The patch version.
        patch: PatchKey,
        /// The source path.
        path: PathBuf,
        /// The manifest file it was given for.
        name: FileName,
    },
    /// A source whose size differs from the manifest's.
    #[error(
        "cannot import {patch}: source {path} has {actual} bytes but the manifest lists {expected} for {name}; pass the file the manifest was built from"
    )]
    SourceSize {
        /// The patch version.
        patch: PatchKey,
        /// The source file.
        path: PathBuf,
        /// The manifest file it was given for.
        name: FileName,
        /// The size the manifest lists.
        expected: u64,
        /// The source's size.
        actual: u64,
    },
    /// A source whose size changed while it was read.
    #[error(
        "cannot import {patch}: source {path} changed size while it was read; import again once nothing writes to it"
    )]
    SourceChanged {
        /// The patch version.
        patch: PatchKey,
        /// The source file.
        path: PathBuf,
    },
    /// Source bytes that fail a chunk hash.
    #[error(
        "cannot import {patch}: chunk {index} read from {sources} does not match the manifest: {source}; pass the files the manifest was built from"
    )]
    ChunkMismatch {
        /// The patch version.
        patch: PatchKey,
        /// The chunk index.
        index: u32,
        /// The source paths the chunk covers, comma-separated.
        sources: String,
        /// The verification failure.
        source: ChunkError,
    },
    /// A source whose chunks all match but whose whole-file hash does not.
    #[error(
        "cannot import {patch}: source {path} hashes to {actual} but the manifest lists {expected} for {name}; the manifest's file hash contradicts its chunk hashes, so rebuild the manifest"
    )]
    FileHash {
        /// The patch version.
        patch: PatchKey,
        /// The source file.
        path: PathBuf,
        /// The manifest file it was given for.
        name: FileName,
        /// The hash the manifest lists.
        expected: ContentHash,
        /// The hash of the source's bytes.
        actual: ContentHash,
    },
    /// A file system failure inside the data dir.
    #[error(transparent)]
    Store(#[from] StoreError),
}
