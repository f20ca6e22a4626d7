//! Ed25519 keys and their file formats.
//!
//! A secret key file holds two lines:
//!
//! ```text
//! patchmesh-secret-key-v1
//! ed25519:<32-byte seed, standard base64>
//! ```
//!
//! and the public key file beside it (`PATH.pub`) one line, `ed25519:<32 bytes, standard
//! base64>`, optionally followed by a space and a comment. The same public text form
//! appears in trust files. The first line of a secret key file names its format, so one
//! reader takes both plain files and passphrase-encrypted ones ([`EncryptedSecretKey`]):
//!
//! ```text
//! patchmesh-encrypted-secret-key-v1
//! public: ed25519:<32 bytes, base64>
//! kdf: argon2id m=<KiB> t=<passes> p=<lanes>
//! salt: <16 bytes, base64>
//! check: <32 bytes, base64>
//! nonce: <24 bytes, base64>
//! sealed: <48 bytes, base64: the seed and the Poly1305 tag>
//! ```
//!
//! Argon2id stretches the passphrase into 64 bytes: the first 32 key XChaCha20-Poly1305,
//! which seals the seed; the last 32 key a BLAKE3 MAC (`check`) over the first four lines.
//! The check tells a wrong passphrase apart from a file altered after it was written; the
//! first four lines are also the cipher's associated data, so neither can be swapped.

mod encrypted;
mod peer_id;

use std::fmt;

pub use encrypted::{EncryptedSecretKey, KdfParams, SealError, UnlockError};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// The first line of a version 1 secret key file.
pub const SECRET_KEY_HEADER: &str = "patchmesh-secret-key-v1";
/// The first line of a passphrase-encrypted secret key file.
pub const ENCRYPTED_KEY_HEADER: &str = "patchmesh-encrypted-secret-key-v1";
const ALGORITHM_PREFIX: &str = "ed25519:";

/// An ed25519 signing key. Its `Debug` form shows only the public half.
pub struct SecretKey(SigningKey);

/// An ed25519 public key.
///
/// Construction rejects encodings that are not canonical or that are small-order points,
/// so one key cannot appear under two encodings and count twice.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PublicKey([u8; 32]);

/// A key in text or file form that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The text does not start with the expected algorithm prefix or header.
    #[error("invalid key text {text:?}: expected {expected}")]
    Format {
        /// The text, shortened; never the secret part.
        text: String,
        /// What the format requires.
        expected: &'static str,
    },
    /// The base64 part does not decode to 32 bytes.
    #[error("invalid key encoding: {reason}")]
    Encoding {
        /// Why decoding failed.
        reason: String,
    },
    /// A public key that is not a canonical encoding of a point of large order.
    #[error("invalid ed25519 public key {key}: not a canonical point of large order")]
    WeakKey {
        /// The key in text form.
        key: String,
    },
    /// A passphrase-encrypted key where only a plain one can be used.
    #[error("the secret key file is passphrase-encrypted; a node identity key must be a plain key (`patchmesh keygen` without --passphrase), while signing commands unlock encrypted keys")]
    Encrypted,
}

impl SecretKey {
    /// Builds a key from a 32-byte seed; use [`SecretKey::generate`] for a new key.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        SecretKey(SigningKey::from_bytes(&seed))
    }

    /// Generates a key from a caller-supplied source of 32 random bytes, so this crate
    /// never reads an entropy source itself.
    pub fn generate(random_seed: [u8; 32]) -> Self {
        SecretKey::from_seed(random_seed)
    }

    /// The 32-byte seed, for the libp2p identity that shares this key.
    pub fn seed(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.0.to_bytes())
    }

    /// The matching public key.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key().to_bytes())
    }

    /// Signs `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.0.sign(message).to_bytes()
    }

    /// The secret key file contents; the caller writes them with owner-only permissions.
    pub fn to_file_text(&self) -> Zeroizing<String> {
        let seed = self.seed();
        Zeroizing::new(format!("{SECRET_KEY_HEADER}\n{ALGORITHM_PREFIX}{}\n", BASE64.encode(*seed)))
    }

    /// Parses secret key file contents.
    pub fn from_file_text(text: &str) -> Result<Self, KeyError> {
        let mut lines = text.lines().map(str::trim).filter(|line| !line.is_empty());
        let header = lines.next().unwrap_or_default();
        if header == ENCRYPTED_KEY_HEADER {
            return Err(KeyError::Encrypted);
        }
        if header != SECRET_KEY_HEADER {
            return Err(KeyError::Format {
                text: header.chars().take(40).collect(),
                expected: "first line `patchmesh-secret-key-v1`",
            });
        }
        let body = lines.next().unwrap_or_default();
        let Some(encoded) = body.strip_prefix(ALGORITHM_PREFIX) else {
            return Err(KeyError::Format {
                text: "(second line withheld)".into(),
                expected: "second line `ed25519:<base64 seed>`",
            });
        };
        let decoded = Zeroizing::new(BASE64.decode(encoded).map_err(|error| KeyError::Encoding {
            reason: format!("secret key base64: {error}"),
        })?);
        let seed: [u8; 32] = decoded.as_slice().try_into().map_err(|_| KeyError::Encoding {
            reason: format!("secret key seed is {} bytes, expected 32", decoded.len()),
        })?;
        Ok(SecretKey::from_seed(seed))
    }
}

/// A secret key file of either format, as signing commands read it.
#[derive(Debug)]
pub enum SecretKeyFile {
    /// A plain key, usable at once.
    Plain(SecretKey),
    /// A key that needs its passphrase.
    Encrypted(EncryptedSecretKey),
}

impl SecretKeyFile {
    /// Parses either secret key file format, chosen by the first line.
    pub fn from_file_text(text: &str) -> Result<Self, KeyError> {
        let first = text.lines().map(str::trim).find(|line| !line.is_empty()).unwrap_or_default();
        if first == ENCRYPTED_KEY_HEADER {
            EncryptedSecretKey::from_file_text(text).map(SecretKeyFile::Encrypted)
        } else {
            SecretKey::from_file_text(text).map(SecretKeyFile::Plain)
        }
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey(public {})", self.public())
    }
}

impl PublicKey {
    /// Validates 32 bytes as a public key.
    pub fn from_bytes(bytes: [u8; 32]) -> Result<Self, KeyError> {
        let weak = || KeyError::WeakKey { key: format!("{ALGORITHM_PREFIX}{}", BASE64.encode(bytes)) };
        let key = VerifyingKey::from_bytes(&bytes).map_err(|_| weak())?;
        // A non-canonical y coordinate (y + p for y < 19) decompresses to the same point as
        // its canonical form. `VerifyingKey::to_bytes` returns the bytes it was given, so
        // the round trip must recompress the point; that gives each key exactly one
        // accepted encoding.
        if key.to_edwards().compress().to_bytes() != bytes || key.is_weak() {
            return Err(weak());
        }
        Ok(PublicKey(bytes))
    }

    /// The 32 key bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// A short, stable id for logs and status output: 16 hex digits of the key's BLAKE3
    /// hash.
    pub fn short_id(&self) -> String {
        hex::encode(&blake3::hash(&self.0).as_bytes()[..8])
    }

    /// Verifies `signature` over `message` with ed25519-dalek's strict verification, which
    /// rejects non-canonical signatures and small-order components.
    pub fn verify(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        let Ok(key) = VerifyingKey::from_bytes(&self.0) else {
            return false;
        };
        let signature = ed25519_dalek::Signature::from_bytes(signature);
        key.verify_strict(message, &signature).is_ok()
    }

    /// Parses `ed25519:<base64>`, ignoring a trailing comment after a space.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let token = text.split_whitespace().next().unwrap_or_default();
        let Some(encoded) = token.strip_prefix(ALGORITHM_PREFIX) else {
            return Err(KeyError::Format {
                text: token.chars().take(60).collect(),
                expected: "`ed25519:<base64 of 32 bytes>`",
            });
        };
        let decoded = BASE64.decode(encoded).map_err(|error| KeyError::Encoding {
            reason: format!("public key {token:?}: {error}"),
        })?;
        let bytes: [u8; 32] = decoded.as_slice().try_into().map_err(|_| KeyError::Encoding {
            reason: format!("public key {token:?} is {} bytes, expected 32", decoded.len()),
        })?;
        PublicKey::from_bytes(bytes)
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{ALGORITHM_PREFIX}{}", BASE64.encode(self.0))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.short_id())
    }
}

impl TryFrom<String> for PublicKey {
    type Error = KeyError;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        PublicKey::parse(&text)
    }
}

impl From<PublicKey> for String {
    fn from(key: PublicKey) -> String {
        key.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_file_round_trip() {
        let key = SecretKey::from_seed([7; 32]);
        let text = key.to_file_text();
        let parsed = SecretKey::from_file_text(&text).expect("parse");
        assert_eq!(parsed.public(), key.public());
    }

    #[test]
    fn public_text_round_trip() {
        let key = SecretKey::from_seed([9; 32]).public();
        let parsed = PublicKey::parse(&format!("{key} it-publisher")).expect("parse");
        assert_eq!(parsed, key);
    }

    #[test]
    fn sign_and_verify() {
        let key = SecretKey::from_seed([1; 32]);
        let signature = key.sign(b"message");
        assert!(key.public().verify(b"message", &signature));
        assert!(!key.public().verify(b"other", &signature));
    }

    #[test]
    fn secret_file_wrong_header() {
        let error = SecretKey::from_file_text("ssh-ed25519 AAAA\n").expect_err("header");
        assert!(error.to_string().contains("patchmesh-secret-key-v1"), "{error}");
    }

    #[test]
    fn small_order_key_rejected() {
        // The identity point (y = 1) has order 1: any signature check against it is meaningless.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert!(PublicKey::from_bytes(identity).is_err());
    }

    #[test]
    fn non_canonical_encoding_of_large_order_point_rejected() {
        // y = 3 is a point of large order; y = p + 3 encodes the same point. Before the
        // recompression check both were accepted, so one key holder could be listed,
        // and counted, twice.
        let mut canonical = [0u8; 32];
        canonical[0] = 3;
        let mut non_canonical = [0xffu8; 32];
        non_canonical[0] = 0xed + 3;
        non_canonical[31] = 0x7f;
        assert!(PublicKey::from_bytes(canonical).is_ok());
        let error = PublicKey::from_bytes(non_canonical).expect_err("non-canonical");
        assert!(matches!(error, KeyError::WeakKey { .. }), "{error}");
    }

    #[test]
    fn non_canonical_key_rejected() {
        // y = p + 1 encodes the same point as y = 1 but is not canonical.
        let mut bytes = [0xffu8; 32];
        bytes[0] = 0xee;
        bytes[31] = 0x7f;
        assert!(PublicKey::from_bytes(bytes).is_err());
    }
}
