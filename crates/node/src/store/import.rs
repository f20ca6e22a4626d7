//! Importing source files on the origin node.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use patchmesh_core::manifest::{ContentHash, FileEntry, Manifest};
use tracing::{debug, trace, warn};

use super::ChunkStore;
use super::assemble::{remove_chunks_dir, write_complete_marker};
use super::atomic::{TempFile, parent_dir, sync_dir};
use super::error::ImportError;
use super::layout::VersionLayout;

pub(super) fn import(
    store: &ChunkStore,
    manifest: &Manifest,
    sources: &[PathBuf],
) -> Result<Vec<PathBuf>, ImportError> {
    let patch = manifest.key();
    let files = &manifest.body().files;
    if sources.len() != files.len() {
        return Err(ImportError::SourceCount { patch: patch.clone(), expected: files.len(), actual: sources.len() });
    }

    let layout = store.layout(patch);
    let was_assembled = store.is_assembled(manifest);
    let result =
        copy_verified(store, manifest, &layout, sources).and_then(|temps| finish(store, manifest, &layout, temps));
    match result {
        Ok(paths) => {
            debug!(%patch, files = paths.len(), "imported patch");
            Ok(paths)
        }
        Err(error) => {
            // The files of an assembled patch are left alone: only files whose hash
            // matched were renamed over them, so they still match the manifest.
            if !was_assembled {
                remove_partial_output(&layout);
            }
            Err(error)
        }
    }
}

/// Copies every source to a temp file next to its target, verifying each chunk and each
/// whole-file hash on the way. Nothing is renamed into place yet.
fn copy_verified(
    store: &ChunkStore,
    manifest: &Manifest,
    layout: &VersionLayout,
    sources: &[PathBuf],
) -> Result<Vec<TempFile>, ImportError> {
    let mut copier = ChunkCopier { manifest, sources, chunk: Vec::new(), index: 0 };
    let mut temps = Vec::with_capacity(sources.len());

    for (entry, source) in manifest.body().files.iter().zip(sources) {
        let mut input = open_source(manifest, entry, source)?;
        let target = layout.create_file_parent(&entry.name)?;
        let mut temp = TempFile::create(&store.inner.temp_names, &target)?;

        let actual = copier.copy_file(&mut input, source, entry.size, &mut temp)?;
        if actual != entry.hash {
            return Err(ImportError::FileHash {
                patch: manifest.key().clone(),
                path: source.clone(),
                name: entry.name.clone(),
                expected: entry.hash,
                actual,
            });
        }
        temp.sync()?;
        temps.push(temp);
    }

    debug_assert!(copier.chunk.is_empty(), "bytes left over after the last chunk");
    debug_assert_eq!(copier.index, manifest.chunk_count(), "not every chunk was verified");
    Ok(temps)
}

/// The chunk being filled while sources are copied in manifest order.
struct ChunkCopier<'a> {
    manifest: &'a Manifest,
    sources: &'a [PathBuf],
    /// The bytes of chunk `index` read so far; never longer than one chunk.
    chunk: Vec<u8>,
    index: u32,
}

impl ChunkCopier<'_> {
    /// Copies `size` bytes from `input` to `temp`, verifying each chunk as it fills, and
    /// returns the BLAKE3 hash of the bytes copied.
    fn copy_file(
        &mut self,
        input: &mut File,
        source: &Path,
        size: u64,
        temp: &mut TempFile,
    ) -> Result<ContentHash, ImportError> {
        let patch = self.manifest.key();
        let changed = || ImportError::SourceChanged { patch: patch.clone(), path: source.to_path_buf() };
        let read_failed = |source_error| ImportError::SourceRead {
            patch: patch.clone(),
            path: source.to_path_buf(),
            source: source_error,
        };
        let mut hasher = blake3::Hasher::new();
        let mut remaining = size;

        while remaining > 0 {
            let chunk_len = u64::from(self.manifest.chunk_len(self.index));
            let room = chunk_len.saturating_sub(self.chunk.len() as u64);
            // The manifest's sizes add up to its chunk lengths, so a byte left to copy
            // always has room in the current chunk.
            debug_assert!(room > 0, "no room in chunk {} with {remaining} bytes left", self.index);
            if room == 0 {
                break;
            }

            let start = self.chunk.len();
            // `take` is at most one chunk, so it fits in usize.
            let take = room.min(remaining) as usize;
            self.chunk.resize(start + take, 0);
            input.read_exact(&mut self.chunk[start..]).map_err(|error| match error.kind() {
                io::ErrorKind::UnexpectedEof => changed(),
                _ => read_failed(error),
            })?;
            temp.write_all(&self.chunk[start..])?;
            hasher.update(&self.chunk[start..]);
            remaining -= take as u64;

            if self.chunk.len() as u64 == chunk_len {
                self.verify_chunk()?;
            }
        }

        // The metadata check in `open_source` saw the right size; a byte past the end now
        // means the file grew since.
        let mut extra = [0u8; 1];
        let read = loop {
            match input.read(&mut extra) {
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        match read {
            Ok(0) => Ok(ContentHash::from(hasher.finalize())),
            Ok(_) => Err(changed()),
            Err(error) => Err(read_failed(error)),
        }
    }

    fn verify_chunk(&mut self) -> Result<(), ImportError> {
        let index = self.index;
        self.manifest.verify_chunk(index, &self.chunk).map_err(|source| ImportError::ChunkMismatch {
            patch: self.manifest.key().clone(),
            index,
            sources: self.chunk_sources(index),
            source,
        })?;
        trace!(patch = %self.manifest.key(), index, "source chunk verified");
        self.chunk.clear();
        self.index += 1;
        Ok(())
    }

    /// Lists the source paths that chunk `index` covers, comma-separated.
    fn chunk_sources(&self, index: u32) -> String {
        let paths: Vec<String> =
            self.manifest.chunk_spans(index).iter().map(|span| self.sources[span.file].display().to_string()).collect();
        paths.join(", ")
    }
}

/// Opens a source and checks that it is a regular file of the manifest's size.
fn open_source(manifest: &Manifest, entry: &FileEntry, source: &Path) -> Result<File, ImportError> {
    let patch = manifest.key();
    let read_failed =
        |error| ImportError::SourceRead { patch: patch.clone(), path: source.to_path_buf(), source: error };
    let file = File::open(source).map_err(read_failed)?;
    let metadata = file.metadata().map_err(read_failed)?;
    if !metadata.is_file() {
        return Err(ImportError::SourceNotFile {
            patch: patch.clone(),
            path: source.to_path_buf(),
            name: entry.name.clone(),
        });
    }
    if metadata.len() != entry.size {
        return Err(ImportError::SourceSize {
            patch: patch.clone(),
            path: source.to_path_buf(),
            name: entry.name.clone(),
            expected: entry.size,
            actual: metadata.len(),
        });
    }
    Ok(file)
}

/// Renames the verified temp files into place, then saves the manifest, writes the
/// `complete` marker and deletes any chunk files of the version.
fn finish(
    store: &ChunkStore,
    manifest: &Manifest,
    layout: &VersionLayout,
    temps: Vec<TempFile>,
) -> Result<Vec<PathBuf>, ImportError> {
    let mut paths = Vec::with_capacity(temps.len());
    for temp in temps {
        paths.push(temp.persist()?);
    }
    let dirs: BTreeSet<&Path> = paths.iter().map(|path| parent_dir(path)).collect();
    for dir in dirs {
        sync_dir(dir)?;
    }

    store.save_manifest(manifest)?;
    write_complete_marker(&store.inner.temp_names, layout, manifest)?;
    remove_chunks_dir(layout);
    Ok(paths)
}

/// Deletes the `files` directory of a failed import and the version and patch directories
/// if that leaves them empty. Chunk files and a saved manifest stay.
fn remove_partial_output(layout: &VersionLayout) {
    let files_dir = layout.files_dir();
    let removed = match fs::symlink_metadata(&files_dir) {
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error),
        // Removes the link itself, never its target.
        Ok(metadata) if !metadata.is_dir() => fs::remove_file(&files_dir),
        // `remove_dir_all` does not follow links inside the tree.
        Ok(_) => fs::remove_dir_all(&files_dir),
    };
    if let Err(error) = removed {
        warn!(dir = %files_dir.display(), %error, "failed to remove the output of a failed import");
        return;
    }

    // `remove_dir` fails on a directory that is not empty, which is what should stay.
    let version_dir = layout.dir();
    if fs::remove_dir(&version_dir).is_ok() {
        let _ = fs::remove_dir(parent_dir(&version_dir));
    }
    debug!(dir = %version_dir.display(), "removed the output of a failed import");
}
