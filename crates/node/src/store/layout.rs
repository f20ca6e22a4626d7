//! Paths of one patch version inside the data dir, and directory creation that never
//! follows a symbolic link.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use patchmesh_core::PatchKey;
use patchmesh_core::manifest::FileName;

use super::atomic::{io_error, sync_dir};
use super::error::StoreError;

/// The directory under the data dir that contains every patch.
pub(super) const PATCHES_DIR: &str = "patches";
/// The manifest JSON in a version directory.
pub(super) const MANIFEST_FILE: &str = "manifest.json";
/// The marker that the files are assembled and verified.
pub(super) const COMPLETE_FILE: &str = "complete";
/// The directory of chunk files while a patch downloads.
pub(super) const CHUNKS_DIR: &str = "chunks";
/// The directory of assembled files.
pub(super) const FILES_DIR: &str = "files";
/// The extension of a chunk file, `<index>.chunk`.
const CHUNK_EXTENSION: &str = ".chunk";

/// The paths of one patch version: `<patches>/<patch id>/<version>/...`.
#[derive(Debug, Clone)]
pub(super) struct VersionLayout {
    /// The `patches` directory, checked when the store opened.
    patches: PathBuf,
    id: String,
    version: String,
}

impl VersionLayout {
    pub(super) fn new(patches: &Path, key: &PatchKey) -> Self {
        VersionLayout {
            patches: patches.to_path_buf(),
            id: key.id.as_str().to_string(),
            version: key.version.to_string(),
        }
    }

    /// The version directory.
    pub(super) fn dir(&self) -> PathBuf {
        self.patches.join(&self.id).join(&self.version)
    }

    pub(super) fn manifest(&self) -> PathBuf {
        self.dir().join(MANIFEST_FILE)
    }

    pub(super) fn complete(&self) -> PathBuf {
        self.dir().join(COMPLETE_FILE)
    }

    pub(super) fn chunks_dir(&self) -> PathBuf {
        self.dir().join(CHUNKS_DIR)
    }

    pub(super) fn chunk(&self, index: u32) -> PathBuf {
        self.chunks_dir().join(chunk_file_name(index))
    }

    pub(super) fn files_dir(&self) -> PathBuf {
        self.dir().join(FILES_DIR)
    }

    /// Returns the assembled path of `name`. The file name grammar admits no `..`, absolute path
    /// or empty component, so the result stays under `files/`.
    pub(super) fn file(&self, name: &FileName) -> PathBuf {
        let mut path = self.files_dir();
        path.extend(name.components());
        path
    }

    /// Creates the version directory and the subdirectories `below` it, one component at a
    /// time, and returns the deepest one. An existing component that is a symbolic link or
    /// not a directory is an error.
    pub(super) fn create_dirs(&self, below: &[&str]) -> Result<PathBuf, StoreError> {
        let components = self.components(below);
        walk_dirs(&self.patches, &components, true).map(|path| path.unwrap_or_default())
    }

    /// Checks the version directory and the subdirectories `below` it like
    /// [`VersionLayout::create_dirs`] but creates nothing. Returns `None` when one is
    /// missing.
    pub(super) fn existing_dirs(&self, below: &[&str]) -> Result<Option<PathBuf>, StoreError> {
        let components = self.components(below);
        walk_dirs(&self.patches, &components, false)
    }

    /// Creates the parent directories of the assembled file `name` and returns its path.
    pub(super) fn create_file_parent(&self, name: &FileName) -> Result<PathBuf, StoreError> {
        let mut below = vec![FILES_DIR];
        let components: Vec<&str> = name.components().collect();
        below.extend(&components[..components.len().saturating_sub(1)]);
        self.create_dirs(&below)?;
        Ok(self.file(name))
    }

    /// Checks the parent directories of the assembled file `name` without creating any,
    /// and returns its path, or `None` when a directory is missing.
    pub(super) fn existing_file_parent(&self, name: &FileName) -> Result<Option<PathBuf>, StoreError> {
        let mut below = vec![FILES_DIR];
        let components: Vec<&str> = name.components().collect();
        below.extend(&components[..components.len().saturating_sub(1)]);
        Ok(self.existing_dirs(&below)?.map(|_| self.file(name)))
    }

    fn components<'a>(&'a self, below: &[&'a str]) -> Vec<&'a str> {
        let mut components = vec![self.id.as_str(), self.version.as_str()];
        components.extend_from_slice(below);
        components
    }
}

/// Returns the file name of chunk `index`.
fn chunk_file_name(index: u32) -> String {
    format!("{index}{CHUNK_EXTENSION}")
}

/// Parses a chunk file name in the form [`chunk_file_name`] writes, rejecting a sign or a
/// leading zero.
pub(super) fn parse_chunk_file_name(name: &str) -> Option<u32> {
    let digits = name.strip_suffix(CHUNK_EXTENSION)?;
    let index: u32 = digits.parse().ok()?;
    (index.to_string() == digits).then_some(index)
}

/// Walks `components` below `root`, which the caller trusts, checking each with `lstat`.
/// With `create`, a missing directory is created and its parent synced; without it,
/// `Ok(None)` is returned.
///
/// NOTE: the checks and the later opens are separate system calls, so a local user who
/// can write inside the data dir could swap a directory for a link in between. The
/// store guards against leftovers and mistakes, not against such a user.
fn walk_dirs(root: &Path, components: &[&str], create: bool) -> Result<Option<PathBuf>, StoreError> {
    let mut path = root.to_path_buf();
    for component in components {
        let parent = path.clone();
        path.push(component);
        match fs::symlink_metadata(&path) {
            Ok(metadata) => check_dir(&path, &metadata)?,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                if !create {
                    return Ok(None);
                }
                match fs::create_dir(&path) {
                    Ok(()) => sync_dir(&parent)?,
                    // Another thread created it first; check what it created.
                    Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
                        let metadata =
                            fs::symlink_metadata(&path).map_err(|error| io_error("inspect", &path, error))?;
                        check_dir(&path, &metadata)?;
                    }
                    Err(error) => return Err(io_error("create directory", &path, error)),
                }
            }
            Err(error) => return Err(io_error("inspect", &path, error)),
        }
    }
    Ok(Some(path))
}

fn check_dir(path: &Path, metadata: &fs::Metadata) -> Result<(), StoreError> {
    if metadata.file_type().is_symlink() {
        return Err(StoreError::Symlink { path: path.to_path_buf() });
    }
    if !metadata.is_dir() {
        return Err(StoreError::NotDirectory { path: path.to_path_buf() });
    }
    Ok(())
}

/// Creates `dir` under a trusted parent if missing, rejecting a link or a non-directory.
pub(super) fn create_dir_checked(parent: &Path, name: &str) -> Result<PathBuf, StoreError> {
    walk_dirs(parent, &[name], true).map(|path| path.unwrap_or_default())
}
