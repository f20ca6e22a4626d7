//! BLAKE3 digests as they appear in manifests.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A 32-byte BLAKE3 digest, written as 64 lowercase hex digits in text formats.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ContentHash(pub [u8; 32]);

/// Text that is not 64 hex digits.
#[derive(Debug, thiserror::Error)]
#[error("invalid BLAKE3 hash {text:?}: expected 64 hex digits")]
pub struct InvalidHash {
    /// The rejected text, shortened.
    pub text: String,
}

impl ContentHash {
    /// Hashes `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        ContentHash(*blake3::hash(bytes).as_bytes())
    }

    /// Parses 64 hex digits.
    pub fn parse(text: &str) -> Result<Self, InvalidHash> {
        let invalid = || InvalidHash { text: text.chars().take(80).collect() };
        let bytes = hex::decode(text).map_err(|_| invalid())?;
        Ok(ContentHash(bytes.try_into().map_err(|_| invalid())?))
    }
}

impl From<blake3::Hash> for ContentHash {
    fn from(hash: blake3::Hash) -> Self {
        ContentHash(*hash.as_bytes())
    }
}

impl TryFrom<String> for ContentHash {
    type Error = InvalidHash;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        ContentHash::parse(&text)
    }
}

impl From<ContentHash> for String {
    fn from(hash: ContentHash) -> String {
        hash.to_string()
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentHash({})", &hex::encode(self.0)[..16])
    }
}

/// A 64-byte ed25519 signature, written as 128 hex digits in text formats.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SignatureBytes(pub [u8; 64]);

/// Text that is not 128 hex digits.
#[derive(Debug, thiserror::Error)]
#[error("invalid signature {text:?}: expected 128 hex digits")]
pub struct InvalidSignature {
    /// The rejected text, shortened.
    pub text: String,
}

impl TryFrom<String> for SignatureBytes {
    type Error = InvalidSignature;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        let invalid = || InvalidSignature { text: text.chars().take(80).collect() };
        let bytes = hex::decode(&text).map_err(|_| invalid())?;
        Ok(SignatureBytes(bytes.try_into().map_err(|_| invalid())?))
    }
}

impl From<SignatureBytes> for String {
    fn from(signature: SignatureBytes) -> String {
        hex::encode(signature.0)
    }
}

impl fmt::Debug for SignatureBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SignatureBytes({}…)", &hex::encode(self.0)[..16])
    }
}
