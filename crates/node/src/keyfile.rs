//! Secret key files on disk: written owner-only, refused when others can read them.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use patchmesh_core::keys::KeyError;
use patchmesh_core::{PublicKey, SecretKey};

/// A key file that could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The file does not exist or cannot be opened.
    #[error("cannot read key file {path}: {source}; create one with `patchmesh keygen --out {path}`")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Group or others may read or write the secret key.
    #[error("secret key file {path} has mode {mode:04o}, so other users can read it; run `chmod 600 {path}`")]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A public key file where a secret key file was expected.
    #[error("{path} is a public key file; give the secret key file (the same name without .pub)")]
    PublicNotSecret {
        /// The file.
        path: PathBuf,
    },
    /// The contents are not a key in the expected format.
    #[error("invalid key file {path}: {source}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        source: KeyError,
    },
    /// The secret key file already exists; keys are never overwritten.
    #[error("{path} already exists; remove it or choose another path")]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// The directory of the key file does not exist.
    #[error("cannot write key file {path}: its directory does not exist; create it first")]
    NoDirectory {
        /// The file.
        path: PathBuf,
    },
    /// Writing failed.
    #[error("cannot write key file {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Reads a secret key file, refusing one that group or others can access.
pub fn read_secret_key(path: &Path) -> Result<SecretKey, KeyFileError> {
    let read_error = |source| KeyFileError::Read { path: path.to_path_buf(), source };
    let metadata = fs::metadata(path).map_err(read_error)?;
    let looks_public = fs::read(path).is_ok_and(|bytes| bytes.starts_with(b"ed25519:"));
    if looks_public {
        return Err(KeyFileError::PublicNotSecret { path: path.to_path_buf() });
    }
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyFileError::Permissions { path: path.to_path_buf(), mode });
    }
    let text = zeroize::Zeroizing::new(fs::read_to_string(path).map_err(read_error)?);
    SecretKey::from_file_text(&text).map_err(|source| KeyFileError::Format { path: path.to_path_buf(), source })
}

/// The libp2p peer id of a node whose identity key is `key`, as other nodes' `bootstrap`
/// addresses name it (`/p2p/<peer id>`).
pub fn peer_id(key: &SecretKey) -> String {
    match libp2p::identity::Keypair::ed25519_from_bytes(*key.seed()) {
        Ok(keypair) => keypair.public().to_peer_id().to_base58(),
        Err(_) => String::from("(not an ed25519 key)"),
    }
}

/// Reads a public key file (`ed25519:<base64>` and an optional comment).
pub fn read_public_key(path: &Path) -> Result<PublicKey, KeyFileError> {
    let text = fs::read_to_string(path).map_err(|source| KeyFileError::Read { path: path.to_path_buf(), source })?;
    PublicKey::parse(text.trim()).map_err(|source| KeyFileError::Format { path: path.to_path_buf(), source })
}

/// Classifies a failure to create a secret key file, so the message names the fix.
pub fn create_error(path: &Path, source: std::io::Error) -> KeyFileError {
    let path = path.to_path_buf();
    match source.kind() {
        std::io::ErrorKind::AlreadyExists => KeyFileError::Exists { path },
        std::io::ErrorKind::NotFound => KeyFileError::NoDirectory { path },
        _ => KeyFileError::Write { path, source },
    }
}

/// Writes `key` to `path` with mode 0600 and its public half to `PATH.pub`. Refuses to
/// overwrite an existing secret key file.
pub fn write_key_pair(key: &SecretKey, path: &Path, comment: &str) -> Result<PathBuf, KeyFileError> {
    let write_error = |path: &Path, source| KeyFileError::Write { path: path.to_path_buf(), source };
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| create_error(path, source))?;
    file.write_all(key.to_file_text().as_bytes()).map_err(|source| write_error(path, source))?;
    file.sync_all().map_err(|source| write_error(path, source))?;

    let mut public_path = path.as_os_str().to_owned();
    public_path.push(".pub");
    let public_path = PathBuf::from(public_path);
    let line = if comment.is_empty() { format!("{}\n", key.public()) } else { format!("{} {comment}\n", key.public()) };
    fs::write(&public_path, line).map_err(|source| write_error(&public_path, source))?;
    Ok(public_path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("key");
        let key = SecretKey::from_seed([5; 32]);
        let public_path = write_key_pair(&key, &path, "test").expect("write");
        assert_eq!(read_secret_key(&path).expect("read").public(), key.public());
        assert_eq!(read_public_key(&public_path).expect("read pub"), key.public());
    }

    #[test]
    fn readable_by_others_rejected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("key");
        write_key_pair(&SecretKey::from_seed([5; 32]), &path, "").expect("write");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        let error = read_secret_key(&path).expect_err("world-readable");
        assert!(matches!(error, KeyFileError::Permissions { mode: 0o644, .. }), "{error}");
    }

    #[test]
    fn missing_file_names_path() {
        let error = read_secret_key(Path::new("/nonexistent/key")).expect_err("missing");
        assert!(error.to_string().contains("/nonexistent/key"), "{error}");
    }

    #[test]
    fn public_key_as_secret_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("key");
        let public_path = write_key_pair(&SecretKey::from_seed([5; 32]), &path, "").expect("write");
        let error = read_secret_key(&public_path).expect_err("public file");
        assert!(matches!(error, KeyFileError::PublicNotSecret { .. }), "{error}");
    }

    #[test]
    fn existing_key_not_overwritten() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("key");
        write_key_pair(&SecretKey::from_seed([5; 32]), &path, "").expect("write");
        assert!(write_key_pair(&SecretKey::from_seed([6; 32]), &path, "").is_err());
    }
}
