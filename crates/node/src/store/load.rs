//! Loading the stored patches after a restart.

use std::fs;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use patchmesh_core::manifest::Manifest;
use patchmesh_core::{Bitfield, PatchId, PatchKey, TrustPolicy};
use tracing::{debug, warn};

use super::atomic::{io_error, open_regular, remove_temp_files};
use super::error::StoreError;
use super::layout::{CHUNKS_DIR, VersionLayout, parse_chunk_file_name};
use super::{ChunkFile, ChunkStore, LoadedPatch, assemble};

pub(super) fn load_all(store: &ChunkStore, trust: &TrustPolicy) -> Result<Vec<LoadedPatch>, StoreError> {
    let patches = &store.inner.patches;
    let mut loaded = Vec::new();

    for id_dir in list_dir(patches)? {
        let Some(id) = subdir_name(&id_dir).and_then(|name| PatchId::new(name).ok()) else {
            warn!(path = %id_dir.display(), "skipping an entry that is not a patch id directory");
            continue;
        };
        let version_dirs = match list_dir(&id_dir) {
            Ok(dirs) => dirs,
            Err(error) => {
                warn!(path = %id_dir.display(), %error, "skipping a patch directory that cannot be listed");
                continue;
            }
        };

        for version_dir in version_dirs {
            let Some(version) = subdir_name(&version_dir).and_then(parse_version) else {
                warn!(path = %version_dir.display(), "skipping an entry that is not a patch version directory");
                continue;
            };
            let key = PatchKey { id: id.clone(), version };
            if let Some(patch) = load_version(store, &key, trust) {
                loaded.push(patch);
            }
        }
    }

    loaded.sort_by(|a, b| a.manifest.key().cmp(b.manifest.key()));
    Ok(loaded)
}

/// Loads one version directory. Returns `None`, after a warning, for a manifest that is
/// missing, invalid, misplaced or untrusted.
fn load_version(store: &ChunkStore, key: &PatchKey, trust: &TrustPolicy) -> Option<LoadedPatch> {
    let layout = store.layout(key);
    remove_temp_files(&layout.dir(), Some(&store.inner.temp_names));

    let path = layout.manifest();
    let text = match read_manifest_text(&path) {
        Ok(Some(text)) => text,
        Ok(None) => {
            warn!(path = %path.display(), "skipping a patch version directory without manifest.json");
            return None;
        }
        Err(error) => {
            warn!(path = %path.display(), %error, "skipping a manifest that cannot be read");
            return None;
        }
    };
    let manifest = match Manifest::from_json(&text) {
        Ok(manifest) => manifest,
        Err(error) => {
            warn!(path = %path.display(), %error, "skipping an invalid manifest");
            return None;
        }
    };
    if manifest.key() != key {
        warn!(path = %path.display(), found = %manifest.key(), "skipping a manifest stored in another patch version's directory");
        return None;
    }
    if let Err(error) = trust.verify(manifest.announcement()) {
        warn!(path = %path.display(), %error, "skipping a manifest the trust policy rejects");
        return None;
    }

    let assembled = store.is_assembled(&manifest);
    let have = if assembled {
        // A crash after the marker was written can leave chunk files behind.
        assemble::remove_chunks_dir(&layout);
        Bitfield::full(manifest.chunk_count())
    } else {
        verified_chunks(store, &layout, &manifest)
    };
    debug!(patch = %key, chunks = have.count(), chunk_count = manifest.chunk_count(), assembled, "loaded stored patch");
    Some(LoadedPatch { manifest: Arc::new(manifest), have, assembled })
}

fn read_manifest_text(path: &Path) -> Result<Option<String>, StoreError> {
    let Some(mut file) = open_regular(path)? else {
        return Ok(None);
    };
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(|error| io_error("read", path, error))?;
    Ok(Some(text))
}

/// Verifies every chunk file of a patch being downloaded, deleting those that fail. A
/// chunks directory that cannot be listed is logged and counts as empty, so the patch is
/// fetched again rather than forgotten.
fn verified_chunks(store: &ChunkStore, layout: &VersionLayout, manifest: &Manifest) -> Bitfield {
    let chunk_count = manifest.chunk_count();
    let mut have = Bitfield::new(chunk_count);
    let listed = layout.existing_dirs(&[CHUNKS_DIR]).and_then(|dir| dir.map(|dir| list_dir(&dir)).transpose());
    let paths = match listed {
        Ok(Some(paths)) => paths,
        Ok(None) => return have,
        Err(error) => {
            warn!(patch = %manifest.key(), %error, "cannot list stored chunks; counting none");
            return have;
        }
    };

    for path in paths {
        let Some(name) = path.file_name().and_then(|name| name.to_str()) else {
            warn!(path = %path.display(), "ignoring an unexpected entry in a chunks directory");
            continue;
        };
        if super::atomic::is_temp_name(name) {
            // An in-flight write of this store instance; the chunk counts once it lands.
            continue;
        }
        let Some(index) = parse_chunk_file_name(name) else {
            warn!(path = %path.display(), "ignoring an unexpected entry in a chunks directory");
            continue;
        };
        if index >= chunk_count {
            remove_out_of_range(&path, index, chunk_count);
            continue;
        }
        match store.read_chunk_file(manifest, index) {
            Ok(ChunkFile::Valid(_)) => {
                have.insert(index);
            }
            // Deleted with a warning already, or gone since the listing.
            Ok(ChunkFile::Deleted { .. } | ChunkFile::Missing) => {}
            Err(error) => warn!(path = %path.display(), %error, "not counting a chunk file that cannot be read"),
        }
    }
    have
}

fn remove_out_of_range(path: &Path, index: u32, chunk_count: u32) {
    match fs::remove_file(path) {
        Ok(()) => warn!(path = %path.display(), index, chunk_count, "deleted a chunk file past the patch's last chunk"),
        Err(error) => {
            warn!(path = %path.display(), index, chunk_count, %error, "failed to delete a chunk file past the patch's last chunk")
        }
    }
}

/// Lists the entries of `dir`, as paths.
fn list_dir(dir: &Path) -> Result<Vec<std::path::PathBuf>, StoreError> {
    let entries = fs::read_dir(dir).map_err(|error| io_error("list", dir, error))?;
    let mut paths = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|error| io_error("list", dir, error))?;
        paths.push(entry.path());
    }
    paths.sort();
    Ok(paths)
}

/// Returns the name of `path` when it is a directory and not a symbolic link.
fn subdir_name(path: &Path) -> Option<&str> {
    let metadata = fs::symlink_metadata(path).ok()?;
    if !metadata.is_dir() {
        return None;
    }
    path.file_name()?.to_str()
}

/// Parses a version directory name written as `u64::to_string` writes it.
fn parse_version(name: &str) -> Option<u64> {
    let version: u64 = name.parse().ok()?;
    (version.to_string() == name).then_some(version)
}
