//! Crash-safe file replacement: temp file, fsync, rename, fsync of the directory.
//!
//! Every file the store writes goes through a [`TempFile`] in the target's directory, so
//! a crash leaves either the old file, the new file, or a temp file that
//! [`remove_temp_files`] deletes later, and never a half-written target.

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use tracing::{trace, warn};

use super::error::StoreError;

/// The marker inside every temp file name. The `:` is a character the manifest's file
/// name grammar rejects, so no assembled file can ever look like a temp file.
const TEMP_MARKER: &str = ".tmp:";

/// The maximum bytes of the target's name kept in a temp name, so that the temp name stays
/// under the 255-byte component limit of common Unix file systems.
const TEMP_BASE_MAX_LEN: usize = 200;

/// How many fresh temp names [`TempFile::create`] tries when a name is already taken.
const TEMP_CREATE_ATTEMPTS: u32 = 16;

/// Counts store instances in this process so that two stores never share temp names.
static NEXT_INSTANCE: AtomicU64 = AtomicU64::new(0);

/// The temp names of one store instance: `.<target name>.tmp:<session>-<counter>`.
#[derive(Debug)]
pub(super) struct TempNames {
    /// The process id and the instance number, which make names unique across live stores.
    session: String,
    counter: AtomicU64,
}

impl TempNames {
    pub(super) fn new() -> Self {
        let instance = NEXT_INSTANCE.fetch_add(1, Ordering::Relaxed);
        TempNames { session: format!("{}.{instance}", std::process::id()), counter: AtomicU64::new(0) }
    }

    /// Returns a fresh temp path next to `target`.
    pub(super) fn next(&self, target: &Path) -> PathBuf {
        let name = target.file_name().map(OsStr::to_string_lossy).unwrap_or_default();
        let mut end = name.len().min(TEMP_BASE_MAX_LEN);
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        let counter = self.counter.fetch_add(1, Ordering::Relaxed);
        let temp_name = format!(".{}{TEMP_MARKER}{}-{counter}", &name[..end], self.session);
        target.with_file_name(temp_name)
    }

    /// Returns whether `name` is a temp name that this instance made.
    pub(super) fn is_own(&self, name: &str) -> bool {
        is_temp_name(name) && name.contains(&format!("{TEMP_MARKER}{}-", self.session))
    }
}

/// Returns whether `name` has the form of a temp file name of any store instance.
pub(super) fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.contains(TEMP_MARKER)
}

/// Wraps an I/O error with its path, turning `ENOSPC` and `EDQUOT` into
/// [`StoreError::DiskFull`].
pub(super) fn io_error(action: &'static str, path: &Path, source: io::Error) -> StoreError {
    let path = path.to_path_buf();
    match source.raw_os_error() {
        Some(libc::ENOSPC | libc::EDQUOT) => StoreError::DiskFull { path, source },
        _ => StoreError::Io { action, path, source },
    }
}

/// Opens the regular file at `path` for reading, without following a symbolic link in
/// the last component. Returns `None` when nothing is there.
///
/// `O_NONBLOCK` keeps a pipe planted at the path from blocking the open. It has no effect
/// on regular files, and anything else is rejected right after the open.
pub(super) fn open_regular(path: &Path) -> Result<Option<File>, StoreError> {
    let opened = OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(path);
    let file = match opened {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) if error.raw_os_error() == Some(libc::ELOOP) => {
            return Err(StoreError::Symlink { path: path.to_path_buf() });
        }
        Err(error) => return Err(io_error("open", path, error)),
    };
    let metadata = file.metadata().map_err(|error| io_error("inspect", path, error))?;
    if !metadata.is_file() {
        return Err(StoreError::NotFile { path: path.to_path_buf() });
    }
    Ok(Some(file))
}

/// Flushes a directory's entries to disk, so that a rename or a new entry in it survives a
/// crash.
pub(super) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
        .open(dir)
        .map_err(|error| io_error("open directory", dir, error))?;
    file.sync_all().map_err(|error| io_error("fsync directory", dir, error))
}

/// A file being written under a temp name, renamed over its target by [`TempFile::persist`].
/// Dropping it before then removes the temp file.
#[derive(Debug)]
pub(super) struct TempFile {
    path: PathBuf,
    target: PathBuf,
    /// The open file, closed once [`TempFile::sync`] has flushed it.
    file: Option<File>,
    persisted: bool,
}

impl TempFile {
    /// Creates an empty temp file next to `target`, never following or replacing an
    /// existing entry.
    pub(super) fn create(names: &TempNames, target: &Path) -> Result<Self, StoreError> {
        let mut attempt = 0;
        loop {
            let path = names.next(target);
            let opened = OpenOptions::new().write(true).create_new(true).custom_flags(libc::O_NOFOLLOW).open(&path);
            match opened {
                Ok(file) => {
                    return Ok(TempFile { path, target: target.to_path_buf(), file: Some(file), persisted: false });
                }
                Err(error) if error.kind() == io::ErrorKind::AlreadyExists && attempt + 1 < TEMP_CREATE_ATTEMPTS => {
                    attempt += 1;
                }
                Err(error) => return Err(io_error("create temp file", &path, error)),
            }
        }
    }

    pub(super) fn write_all(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        let Some(file) = self.file.as_mut() else {
            return Err(closed_error(&self.path));
        };
        file.write_all(bytes).map_err(|error| io_error("write", &self.path, error))
    }

    /// Flushes the data to disk and closes the file, so that many finished temp files do
    /// not hold many file descriptors.
    pub(super) fn sync(&mut self) -> Result<(), StoreError> {
        if let Some(file) = self.file.take() {
            file.sync_all().map_err(|error| io_error("fsync", &self.path, error))?;
        }
        Ok(())
    }

    /// Flushes the data and renames the temp file over the target. The caller syncs the
    /// directory with [`sync_dir`], once for many renames if it likes.
    pub(super) fn persist(mut self) -> Result<PathBuf, StoreError> {
        self.sync()?;
        fs::rename(&self.path, &self.target).map_err(|error| io_error("rename temp file onto", &self.target, error))?;
        self.persisted = true;
        Ok(self.target.clone())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.persisted {
            return;
        }
        match fs::remove_file(&self.path) {
            Ok(()) => trace!(path = %self.path.display(), "removed unused temp file"),
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => {
                warn!(path = %self.path.display(), %error, "failed to remove temp file; the next open removes it")
            }
        }
    }
}

fn closed_error(path: &Path) -> StoreError {
    StoreError::Io {
        action: "write to closed temp file",
        path: path.to_path_buf(),
        source: io::Error::other("the temp file was already synced and closed"),
    }
}

/// Replaces `target` with `bytes` atomically and durably.
pub(super) fn write_atomic(names: &TempNames, target: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let mut temp = TempFile::create(names, target)?;
    crash_point::check(crash_point::Step::Created, &mut temp)?;
    let half = bytes.len() / 2;
    temp.write_all(&bytes[..half])?;
    crash_point::check(crash_point::Step::HalfWritten, &mut temp)?;
    temp.write_all(&bytes[half..])?;
    crash_point::check(crash_point::Step::Written, &mut temp)?;
    temp.sync()?;
    crash_point::check(crash_point::Step::Synced, &mut temp)?;
    temp.persist()?;
    sync_dir(parent_dir(target))
}

/// Simulated crashes inside [`write_atomic`], for unit tests of crash consistency.
///
/// A test arms one step; when a write reaches it, the write stops as a killed process
/// would: the temp file stays on disk exactly as it is (its cleanup on drop is skipped)
/// and an error returns. Outside tests every check is a no-op.
pub(super) mod crash_point {
    use super::{StoreError, TempFile};

    /// Where a write can be cut short.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub(in crate::store) enum Step {
        /// The temp file exists and is empty.
        Created,
        /// Half the bytes are written.
        HalfWritten,
        /// All bytes are written, not yet synced.
        Written,
        /// The temp file is synced, not yet renamed.
        Synced,
    }

    #[cfg(test)]
    thread_local! {
        static ARMED: std::cell::Cell<Option<Step>> = const { std::cell::Cell::new(None) };
    }

    /// Arms `step` for the next write on this thread, or disarms with `None`.
    #[cfg(test)]
    pub(in crate::store) fn arm(step: Option<Step>) {
        ARMED.with(|armed| armed.set(step));
    }

    #[cfg(test)]
    pub(super) fn check(step: Step, temp: &mut TempFile) -> Result<(), StoreError> {
        if ARMED.with(|armed| armed.get()) != Some(step) {
            return Ok(());
        }
        ARMED.with(|armed| armed.set(None));
        // A killed process runs no destructor: keep the temp file where it is.
        temp.persisted = true;
        Err(StoreError::Io {
            action: "simulated crash",
            path: temp.path.clone(),
            source: std::io::Error::other(format!("crash at {step:?}")),
        })
    }

    #[cfg(not(test))]
    #[inline(always)]
    pub(super) fn check(_step: Step, _temp: &mut TempFile) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Returns the directory containing `path`. Every store path has one.
pub(super) fn parent_dir(path: &Path) -> &Path {
    path.parent().unwrap_or(Path::new("."))
}

/// Deletes temp files under `dir`, recursing into subdirectories but never through a
/// symbolic link. Temp files of `keep` (a live store's in-flight writes) are left alone.
///
/// Failures are logged and skipped, because a leftover temp file wastes space but breaks
/// nothing. Returns the number of files removed.
pub(super) fn remove_temp_files(dir: &Path, keep: Option<&TempNames>) -> usize {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return 0,
        Err(error) => {
            warn!(dir = %dir.display(), %error, "failed to list directory while removing temp files");
            return 0;
        }
    };
    let mut removed = 0;
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(error) => {
                warn!(dir = %dir.display(), %error, "failed to list directory while removing temp files");
                break;
            }
        };
        let path = entry.path();
        // `DirEntry::file_type` does not follow symbolic links.
        let Ok(file_type) = entry.file_type() else { continue };
        if file_type.is_dir() {
            let is_leftover = entry.file_name().to_str().is_some_and(is_temp_name)
                && !keep.is_some_and(|names| entry.file_name().to_str().is_some_and(|name| names.is_own(name)));
            if is_leftover {
                // A version directory renamed for removal whose deletion was cut short.
                match fs::remove_dir_all(&path) {
                    Ok(()) => {
                        warn!(path = %path.display(), "removed a directory left by an interrupted removal");
                        removed += 1;
                    }
                    Err(error) => warn!(path = %path.display(), %error, "failed to remove a leftover directory"),
                }
                continue;
            }
            removed += remove_temp_files(&path, keep);
            continue;
        }
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !is_temp_name(name) || keep.is_some_and(|names| names.is_own(name)) {
            continue;
        }
        match fs::remove_file(&path) {
            Ok(()) => {
                warn!(path = %path.display(), "removed a temp file left by an interrupted write");
                removed += 1;
            }
            Err(error) => warn!(path = %path.display(), %error, "failed to remove a leftover temp file"),
        }
    }
    removed
}
