//! Disk usage and removal of whole patch versions, for the node's disk budget.
//!
//! Removal renames the version directory to a temp name first and deletes it after. A
//! crash midway leaves either the whole version or a temp directory, which the next
//! [`ChunkStore::open`](super::ChunkStore::open) deletes, and never a half-removed version
//! that looks complete.

use std::fs;
use std::path::Path;

use patchmesh_core::PatchKey;
use tracing::info;

use super::ChunkStore;
use super::atomic::io_error;
use super::error::StoreError;
use super::layout::VersionLayout;

impl ChunkStore {
    /// Returns the bytes stored for `key` (manifest, chunk files and assembled files),
    /// or 0 if nothing is stored. Symbolic links are not followed.
    pub fn version_usage(&self, key: &PatchKey) -> u64 {
        tree_size(&VersionLayout::new(&self.inner.patches, key).dir())
    }

    /// Removes everything stored for `key` and returns the bytes freed.
    pub fn remove_version(&self, key: &PatchKey) -> Result<u64, StoreError> {
        let dir = VersionLayout::new(&self.inner.patches, key).dir();
        let freed = tree_size(&dir);
        if fs::symlink_metadata(&dir).is_err() {
            return Ok(0);
        }
        let doomed = self.inner.temp_names.next(&dir);
        fs::rename(&dir, &doomed).map_err(|error| io_error("rename for removal", &dir, error))?;
        fs::remove_dir_all(&doomed).map_err(|error| io_error("remove", &doomed, error))?;
        info!(patch = %key, freed, "removed patch version from the store");
        Ok(freed)
    }
}

/// Sums the sizes of regular files under `path`, without following links.
fn tree_size(path: &Path) -> u64 {
    let Ok(metadata) = fs::symlink_metadata(path) else {
        return 0;
    };
    if metadata.is_file() {
        return metadata.len();
    }
    if !metadata.is_dir() {
        return 0;
    }
    let Ok(entries) = fs::read_dir(path) else {
        return 0;
    };
    entries.flatten().map(|entry| tree_size(&entry.path())).sum()
}
