//! Assembling a downloaded patch from its chunk files.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use patchmesh_core::manifest::{ContentHash, Manifest};
use tracing::{debug, trace, warn};

use super::atomic::{TempFile, TempNames, parent_dir, sync_dir, write_atomic};
use super::error::{AssembleError, StoreError};
use super::layout::VersionLayout;
use super::{ChunkFile, ChunkStore};

pub(super) fn assemble(store: &ChunkStore, manifest: &Manifest) -> Result<Vec<PathBuf>, AssembleError> {
    let patch = manifest.key();
    let layout = store.layout(patch);
    if store.is_assembled(manifest) {
        // A crash after the marker was written can leave chunk files behind.
        remove_chunks_dir(&layout);
        return Ok(store.file_paths(manifest));
    }

    // Checking first avoids writing most of the files only to stop at a gap.
    let have = store.have(manifest);
    if let Some(index) = (0..manifest.chunk_count()).find(|&index| !have.contains(index)) {
        return Err(AssembleError::MissingChunk { patch: patch.clone(), index });
    }

    let mut chunks = ChunkCache { store, manifest, cached: None };
    let mut paths = Vec::with_capacity(manifest.body().files.len());
    for file_index in 0..manifest.body().files.len() {
        paths.push(assemble_file(store, manifest, &layout, &mut chunks, file_index)?);
    }
    let dirs: BTreeSet<&Path> = paths.iter().map(|path| parent_dir(path)).collect();
    for dir in dirs {
        sync_dir(dir)?;
    }

    if fs::symlink_metadata(layout.manifest()).is_err() {
        store.save_manifest(manifest)?;
    }
    write_complete_marker(&store.inner.temp_names, &layout, manifest)?;
    debug!(%patch, files = paths.len(), "assembled patch");

    remove_chunks_dir(&layout);
    Ok(paths)
}

/// Writes file `file_index` from its chunks under a temp name, checks its hash and
/// renames it into place.
fn assemble_file(
    store: &ChunkStore,
    manifest: &Manifest,
    layout: &VersionLayout,
    chunks: &mut ChunkCache<'_>,
    file_index: usize,
) -> Result<PathBuf, AssembleError> {
    let entry = &manifest.body().files[file_index];
    let target = layout.create_file_parent(&entry.name)?;
    let mut temp = TempFile::create(&store.inner.temp_names, &target)?;
    let mut hasher = blake3::Hasher::new();

    let chunk_size = u64::from(manifest.header().chunk_size);
    let start = manifest.file_offset(file_index);
    let end = start + entry.size;
    let mut position = start;
    while position < end {
        // `position` is below the total size, so the index is below the chunk count.
        let index = (position / chunk_size) as u32;
        let chunk_start = u64::from(index) * chunk_size;
        let chunk = chunks.get(index)?;
        // Both offsets are at most one chunk, so they fit in usize.
        let from = (position - chunk_start) as usize;
        let to = ((end - chunk_start) as usize).min(chunk.len());
        debug_assert!(from < to, "chunk {index} holds no bytes of file {file_index}");
        temp.write_all(&chunk[from..to])?;
        hasher.update(&chunk[from..to]);
        position = chunk_start + to as u64;
    }

    let actual = ContentHash::from(hasher.finalize());
    if actual != entry.hash {
        return Err(AssembleError::FileHash {
            patch: manifest.key().clone(),
            name: entry.name.clone(),
            expected: entry.hash,
            actual,
        });
    }
    let path = temp.persist()?;
    trace!(patch = %manifest.key(), file = %entry.name, "assembled file");
    Ok(path)
}

/// The last chunk read, because a chunk may span the end of one file and the start of the
/// next.
struct ChunkCache<'a> {
    store: &'a ChunkStore,
    manifest: &'a Manifest,
    cached: Option<(u32, Vec<u8>)>,
}

impl ChunkCache<'_> {
    fn get(&mut self, index: u32) -> Result<&[u8], AssembleError> {
        let bytes = match self.cached.take() {
            Some((cached, bytes)) if cached == index => bytes,
            _ => self.read(index)?,
        };
        let (_, bytes) = self.cached.insert((index, bytes));
        Ok(bytes)
    }

    fn read(&self, index: u32) -> Result<Vec<u8>, AssembleError> {
        let patch = self.manifest.key();
        match self.store.read_chunk_file(self.manifest, index)? {
            ChunkFile::Valid(bytes) => Ok(bytes),
            ChunkFile::Missing => Err(AssembleError::MissingChunk { patch: patch.clone(), index }),
            ChunkFile::Deleted { path, error } => {
                Err(AssembleError::CorruptChunk { patch: patch.clone(), path, source: error })
            }
        }
    }
}

/// Writes the `complete` marker, which contains the manifest's header hash.
pub(super) fn write_complete_marker(
    names: &TempNames,
    layout: &VersionLayout,
    manifest: &Manifest,
) -> Result<(), StoreError> {
    let text = format!("{}\n", manifest.header().id_hash());
    write_atomic(names, &layout.complete(), text.as_bytes())
}

/// Deletes the chunks directory of an assembled patch. Failures are logged and ignored,
/// because leftover chunk files waste space but break nothing.
pub(super) fn remove_chunks_dir(layout: &VersionLayout) {
    let dir = layout.chunks_dir();
    let removed = match fs::symlink_metadata(&dir) {
        Err(error) if error.kind() == io::ErrorKind::NotFound => return,
        Err(error) => Err(error),
        // Removes the link itself, never its target.
        Ok(metadata) if !metadata.is_dir() => fs::remove_file(&dir),
        // `remove_dir_all` does not follow links inside the tree.
        Ok(_) => fs::remove_dir_all(&dir),
    };
    if let Err(error) = removed {
        warn!(dir = %dir.display(), %error, "failed to delete chunk files of an assembled patch");
        return;
    }
    if let Err(error) = sync_dir(&layout.dir()) {
        warn!(dir = %dir.display(), %error, "failed to flush the deletion of chunk files");
        return;
    }
    debug!(dir = %dir.display(), "deleted chunk files of an assembled patch");
}
