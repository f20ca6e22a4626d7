//! The on-disk chunk store: manifests, verified chunks and assembled patch files.
//!
//! All calls are synchronous `std::fs` code; the daemon runs them on
//! `tokio::task::spawn_blocking`. A [`ChunkStore`] is a cheap handle that can be cloned
//! into each task.
//!
//! # Layout
//!
//! ```text
//! <data_dir>/patches/<patch id>/<version>/manifest.json         Manifest::to_json
//! <data_dir>/patches/<patch id>/<version>/chunks/<index>.chunk  one verified chunk, while downloading
//! <data_dir>/patches/<patch id>/<version>/files/<file name>     assembled, ordinary files
//! <data_dir>/patches/<patch id>/<version>/complete              marker: files assembled and verified
//! ```
//!
//! `<index>` is the decimal chunk index, `<version>` the decimal patch version and
//! `<file name>` the manifest's relative [`FileName`](patchmesh_core::manifest::FileName),
//! with `/` as the directory separator. The `complete` marker contains the hex header hash
//! of the manifest that was assembled, for people reading the directory, but the store
//! only checks that it exists. Once it exists the chunk files are deleted, and chunks are
//! read from the assembled files.
//!
//! Every file is written as `.<name>.tmp:<pid>.<instance>-<counter>` in the target's
//! directory, flushed with fsync, renamed over the target, and then the directory is
//! flushed too. The `:` cannot occur in a manifest file name, so the cleanup in
//! [`ChunkStore::open`] and [`ChunkStore::load_all`] never mistakes an assembled file for a
//! leftover temp file.
//!
//! # Goals
//!
//! - No byte is stored, served or assembled unless it matches the manifest's BLAKE3 chunk
//!   hash: chunks are verified before they are written, every time they are read, and
//!   again when the store is loaded after a restart.
//! - A crash at any point leaves a state that [`ChunkStore::open`],
//!   [`ChunkStore::load_all`] and a repeated [`ChunkStore::assemble`] or
//!   [`ChunkStore::import`] recover from, without re-fetching chunks that were stored.
//! - Assembled files are ordinary files at their manifest names, ready for an installer.
//! - A call keeps at most two chunks of file data in memory, whatever the file sizes.
//! - The store never follows a symbolic link inside its data dir: files are opened with
//!   `O_NOFOLLOW`, and directories are created one component at a time, rejecting any
//!   component that is a link. The data dir itself may be a link.
//!
//! # Non-goals
//!
//! - Defending against a local user who can write inside the data dir: checks and opens
//!   are separate system calls, so such a user can race them.
//! - Several processes sharing one data dir: [`ChunkStore::open`] removes every temp file
//!   it finds, including those of another live process.
//! - Removing old patch versions, or limiting disk use.
//! - Preserving file modes, owners or timestamps of published files.
//! - Re-hashing assembled files on every restart: the `complete` marker is trusted, and
//!   [`ChunkStore::read_chunk`] verifies each chunk it returns.
//! - Platforms other than Unix.
//!
//! # Concurrency
//!
//! Every method takes `&self` and may run on several threads at once, on the same or
//! different patch versions, with one exception: the caller runs at most one
//! [`ChunkStore::assemble`] or [`ChunkStore::import`] per patch version at a time.

// The error enums carry the patch key, the path and both hashes of a failed chunk, which
// makes some 130 bytes. They are returned only next to file system calls that cost far
// more than moving them, so boxing would buy nothing but harder pattern matching.
#![allow(clippy::result_large_err)]

mod assemble;
mod atomic;
mod error;
mod gc;
mod import;
mod layout;
mod load;

use std::fs::{self, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use patchmesh_core::manifest::{ChunkError, Manifest};
use patchmesh_core::{Bitfield, PatchKey, TrustPolicy};
use tracing::{debug, trace, warn};

pub use error::{AssembleError, ImportError, OpenError, ReadChunkError, StoreError, WriteChunkError};

use atomic::{TempNames, io_error, open_regular, remove_temp_files, write_atomic};
use layout::{CHUNKS_DIR, PATCHES_DIR, VersionLayout, create_dir_checked, parse_chunk_file_name};

/// The name of the file [`ChunkStore::open`] creates and removes to check that the data
/// dir is writable.
const WRITE_PROBE: &str = ".patchmesh-write-probe";

/// A handle to the chunk store in one data dir. Cloning it is cheap and shares the store.
#[derive(Clone, Debug)]
pub struct ChunkStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The data dir as an absolute path with links resolved.
    data_dir: PathBuf,
    /// `<data_dir>/patches`.
    patches: PathBuf,
    temp_names: TempNames,
}

/// A patch version found by [`ChunkStore::load_all`].
#[derive(Clone, Debug)]
pub struct LoadedPatch {
    /// The stored manifest, trusted by the policy passed to `load_all`.
    pub manifest: Arc<Manifest>,
    /// The chunks that verified: all of them once the patch is assembled.
    pub have: Bitfield,
    /// Whether the `complete` marker exists.
    pub assembled: bool,
}

/// The outcome of [`ChunkStore::read_chunk_file`] for one chunk.
enum ChunkFile {
    /// Bytes that verified.
    Valid(Vec<u8>),
    /// No chunk file.
    Missing,
    /// A chunk file that failed verification and was deleted.
    Deleted { path: PathBuf, error: ChunkError },
}

impl ChunkStore {
    /// Opens or creates the store under `data_dir` and removes temp files left by an
    /// interrupted write.
    ///
    /// Fails when `data_dir` cannot be created, is not a directory, or does not accept a
    /// new file; the error names the path.
    pub fn open(data_dir: &Path) -> Result<ChunkStore, OpenError> {
        match fs::metadata(data_dir) {
            Ok(metadata) if !metadata.is_dir() => {
                return Err(OpenError::NotDirectory { path: data_dir.to_path_buf() });
            }
            Ok(_) => {}
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                fs::create_dir_all(data_dir)
                    .map_err(|source| OpenError::Create { path: data_dir.to_path_buf(), source })?;
            }
            Err(source) => return Err(OpenError::Create { path: data_dir.to_path_buf(), source }),
        }
        let data_dir = data_dir.canonicalize().map_err(|error| io_error("resolve", data_dir, error))?;
        probe_writable(&data_dir)?;

        let patches = create_dir_checked(&data_dir, PATCHES_DIR)?;
        let removed = remove_temp_files(&patches, None);
        debug!(data_dir = %data_dir.display(), removed_temp_files = removed, "opened chunk store");

        let inner = Inner { data_dir, patches, temp_names: TempNames::new() };
        Ok(ChunkStore { inner: Arc::new(inner) })
    }

    /// Returns the data dir, absolute and with links resolved.
    pub fn data_dir(&self) -> &Path {
        &self.inner.data_dir
    }

    /// Persists the manifest JSON ([`Manifest::to_json`]) for its patch version,
    /// atomically replacing an earlier copy.
    pub fn save_manifest(&self, manifest: &Manifest) -> Result<(), StoreError> {
        let layout = self.layout(manifest.key());
        layout.create_dirs(&[])?;
        write_atomic(&self.inner.temp_names, &layout.manifest(), manifest.to_json().as_bytes())?;
        debug!(patch = %manifest.key(), "saved manifest");
        Ok(())
    }

    /// Loads every stored patch version for a restart, sorted by patch key.
    ///
    /// A manifest that cannot be read, does not parse, lies in another version's directory
    /// or is rejected by `trust` is skipped with a warning and never deleted. For each
    /// version loaded, every chunk file is verified and one that fails is deleted with a
    /// warning. A chunks directory that cannot be listed counts as empty, with a warning.
    /// Leftover temp files are removed. Fails only when the `patches` directory cannot be
    /// listed.
    pub fn load_all(&self, trust: &TrustPolicy) -> Result<Vec<LoadedPatch>, StoreError> {
        load::load_all(self, trust)
    }

    /// Verifies `bytes` as chunk `index` of `manifest` and, only if they match, stores
    /// them durably: temp file, fsync, rename, fsync of the directory.
    ///
    /// Rejected bytes return [`WriteChunkError::Rejected`] without touching the disk.
    /// Writing a chunk that is already stored, or one of an assembled patch, succeeds
    /// without rewriting it.
    pub fn write_chunk(&self, manifest: &Manifest, index: u32, bytes: &[u8]) -> Result<(), WriteChunkError> {
        let patch = manifest.key();
        manifest
            .verify_chunk(index, bytes)
            .map_err(|source| WriteChunkError::Rejected { patch: patch.clone(), source })?;

        if self.is_assembled(manifest) {
            trace!(%patch, index, "chunk of an assembled patch not written again");
            return Ok(());
        }
        let layout = self.layout(patch);
        layout.create_dirs(&[CHUNKS_DIR])?;
        let path = layout.chunk(index);
        if holds_bytes(&path, bytes) {
            trace!(%patch, index, "chunk already stored");
            return Ok(());
        }

        write_atomic(&self.inner.temp_names, &path, bytes)?;
        trace!(%patch, index, "chunk stored");
        Ok(())
    }

    /// Reads chunk `index` and verifies it before returning it: from its chunk file while
    /// the patch downloads, or from the assembled files once the patch is complete.
    ///
    /// Bytes that fail verification are never returned. A chunk file that fails is also
    /// deleted, so that [`ChunkStore::have`] drops it and the node fetches it again.
    pub fn read_chunk(&self, manifest: &Manifest, index: u32) -> Result<Vec<u8>, ReadChunkError> {
        let patch = manifest.key();
        let chunk_count = manifest.chunk_count();
        if index >= chunk_count {
            return Err(ReadChunkError::OutOfRange { patch: patch.clone(), index, chunk_count });
        }
        if self.is_assembled(manifest) {
            return self.read_assembled_chunk(manifest, index);
        }

        match self.read_chunk_file(manifest, index)? {
            ChunkFile::Valid(bytes) => {
                trace!(%patch, index, "chunk read from chunk file");
                Ok(bytes)
            }
            ChunkFile::Deleted { path, error } => {
                Err(ReadChunkError::CorruptChunkFile { patch: patch.clone(), path, source: error })
            }
            // An assembly may have finished, and removed the chunk files, since the check
            // above.
            ChunkFile::Missing if self.is_assembled(manifest) => self.read_assembled_chunk(manifest, index),
            ChunkFile::Missing => Err(ReadChunkError::NotStored { patch: patch.clone(), index }),
        }
    }

    /// Returns which chunks are stored: the chunk files present, or every chunk once the
    /// patch is assembled.
    ///
    /// Reads only directory entries and hashes nothing, so a damaged chunk file counts
    /// until a read or a restart verifies it. A directory that cannot be listed is logged
    /// and counts as empty.
    pub fn have(&self, manifest: &Manifest) -> Bitfield {
        let chunk_count = manifest.chunk_count();
        if self.is_assembled(manifest) {
            return Bitfield::full(chunk_count);
        }
        let mut have = Bitfield::new(chunk_count);
        let layout = self.layout(manifest.key());
        let chunks_dir = match layout.existing_dirs(&[CHUNKS_DIR]) {
            Ok(Some(dir)) => dir,
            Ok(None) => return have,
            Err(error) => {
                warn!(patch = %manifest.key(), %error, "cannot list stored chunks");
                return have;
            }
        };
        let entries = match fs::read_dir(&chunks_dir) {
            Ok(entries) => entries,
            Err(error) => {
                warn!(dir = %chunks_dir.display(), %error, "cannot list stored chunks");
                return have;
            }
        };

        for entry in entries.flatten() {
            // `DirEntry::file_type` does not follow links, so a planted link never counts.
            let is_file = entry.file_type().is_ok_and(|file_type| file_type.is_file());
            let index = entry.file_name().to_str().and_then(parse_chunk_file_name);
            if let (true, Some(index)) = (is_file, index) {
                have.insert(index);
            }
        }
        have
    }

    /// Assembles the patch's files from the chunk files into `files/`, verifies each
    /// whole-file hash, writes the `complete` marker and then deletes the chunk files.
    ///
    /// Each file, empty ones included, is written under a temp name, flushed and renamed.
    /// The manifest is saved too when it is not stored yet. Returns the absolute paths of
    /// the assembled files in manifest order. Calling it again after a crash at any point,
    /// or after it succeeded, finishes or repeats the work.
    pub fn assemble(&self, manifest: &Manifest) -> Result<Vec<PathBuf>, AssembleError> {
        assemble::assemble(self, manifest)
    }

    /// Publishes a patch on the origin by copying `sources` (one per manifest file, in
    /// manifest order) into the assembled layout, then saving the manifest and writing the
    /// `complete` marker.
    ///
    /// Sources are streamed in chunk-sized pieces and every chunk and every whole-file hash
    /// is verified before any file is renamed into place. Sources are opened like any path
    /// a user passes, following links. On any error nothing new is marked complete and the
    /// partial output is removed; an already assembled patch keeps its files. Importing
    /// an assembled patch again rewrites its files, which repairs damaged ones.
    pub fn import(&self, manifest: &Manifest, sources: &[PathBuf]) -> Result<Vec<PathBuf>, ImportError> {
        import::import(self, manifest, sources)
    }

    /// Returns the absolute paths of the assembled files, in manifest order, whether or
    /// not they exist yet.
    pub fn file_paths(&self, manifest: &Manifest) -> Vec<PathBuf> {
        let layout = self.layout(manifest.key());
        manifest.body().files.iter().map(|entry| layout.file(&entry.name)).collect()
    }

    /// Returns whether the patch is assembled, that is whether its `complete` marker exists.
    pub fn is_assembled(&self, manifest: &Manifest) -> bool {
        let layout = self.layout(manifest.key());
        match layout.existing_dirs(&[]) {
            Ok(Some(_)) => {}
            Ok(None) => return false,
            Err(error) => {
                warn!(patch = %manifest.key(), %error, "cannot check whether the patch is assembled");
                return false;
            }
        }
        fs::symlink_metadata(layout.complete()).is_ok_and(|metadata| metadata.is_file())
    }

    fn layout(&self, key: &PatchKey) -> VersionLayout {
        VersionLayout::new(&self.inner.patches, key)
    }

    /// Reads and verifies chunk file `index`, deleting it when it fails verification.
    fn read_chunk_file(&self, manifest: &Manifest, index: u32) -> Result<ChunkFile, StoreError> {
        let layout = self.layout(manifest.key());
        if layout.existing_dirs(&[CHUNKS_DIR])?.is_none() {
            return Ok(ChunkFile::Missing);
        }
        let path = layout.chunk(index);
        let Some(file) = open_regular(&path)? else {
            return Ok(ChunkFile::Missing);
        };

        // Reading one byte past the chunk length is enough to detect an overlong file.
        let expected_len = manifest.chunk_len(index);
        let mut bytes = Vec::with_capacity(expected_len as usize);
        file.take(u64::from(expected_len) + 1)
            .read_to_end(&mut bytes)
            .map_err(|error| io_error("read", &path, error))?;

        match manifest.verify_chunk(index, &bytes) {
            Ok(()) => Ok(ChunkFile::Valid(bytes)),
            Err(error) => {
                match fs::remove_file(&path) {
                    Ok(()) => {
                        warn!(patch = %manifest.key(), path = %path.display(), %error, "deleted a chunk file that failed verification")
                    }
                    Err(remove_error) => warn!(
                        patch = %manifest.key(),
                        path = %path.display(),
                        %error,
                        %remove_error,
                        "chunk file failed verification and could not be deleted"
                    ),
                }
                Ok(ChunkFile::Deleted { path, error })
            }
        }
    }

    /// Reads chunk `index` from the assembled files and verifies it.
    fn read_assembled_chunk(&self, manifest: &Manifest, index: u32) -> Result<Vec<u8>, ReadChunkError> {
        let patch = manifest.key();
        let layout = self.layout(patch);
        let mut bytes = Vec::with_capacity(manifest.chunk_len(index) as usize);

        for span in manifest.chunk_spans(index) {
            let name = &manifest.body().files[span.file].name;
            let missing = || ReadChunkError::AssembledFileMissing {
                patch: patch.clone(),
                path: layout.file(name),
                version_dir: layout.dir(),
            };
            let path = layout.existing_file_parent(name)?.ok_or_else(missing)?;
            let mut file = open_regular(&path)?.ok_or_else(missing)?;

            // A short file leaves the chunk short, which verification reports below.
            io::Seek::seek(&mut file, io::SeekFrom::Start(span.offset))
                .map_err(|error| io_error("seek in", &path, error))?;
            file.take(span.len).read_to_end(&mut bytes).map_err(|error| io_error("read", &path, error))?;
        }

        manifest.verify_chunk(index, &bytes).map_err(|source| ReadChunkError::CorruptAssembled {
            patch: patch.clone(),
            version_dir: layout.dir(),
            source,
        })?;
        trace!(%patch, index, "chunk read from assembled files");
        Ok(bytes)
    }
}

/// Creates and removes a probe file in `data_dir`.
fn probe_writable(data_dir: &Path) -> Result<(), OpenError> {
    let path = data_dir.join(WRITE_PROBE);
    let not_writable = |source| OpenError::NotWritable { path: data_dir.to_path_buf(), source };
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .map_err(not_writable)?;
    match fs::remove_file(&path) {
        Ok(()) => Ok(()),
        // Another store opening the same dir removed it first.
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(not_writable(error)),
    }
}

/// Returns whether the regular file at `path` contains exactly `bytes`. Any failure counts
/// as no.
fn holds_bytes(path: &Path, bytes: &[u8]) -> bool {
    let Ok(Some(file)) = open_regular(path) else {
        return false;
    };
    if file.metadata().map(|metadata| metadata.len()).ok() != Some(bytes.len() as u64) {
        return false;
    }
    let mut stored = Vec::with_capacity(bytes.len());
    file.take(bytes.len() as u64).read_to_end(&mut stored).is_ok() && stored == bytes
}

#[cfg(test)]
mod tests;
