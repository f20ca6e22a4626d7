//! Passphrase-encrypted secret key files; the format is in the [`keys`](super) module docs.
//!
//! Sealing takes the salt and nonce from the caller, so this crate still reads no entropy
//! source and a test can seal deterministically.

use std::fmt;

use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use zeroize::Zeroizing;

use super::{ENCRYPTED_KEY_HEADER, KeyError, PublicKey, SecretKey};

/// Argon2id cost parameters, stored in the file so they can grow in later releases.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory per derivation, in KiB.
    pub memory_kib: u32,
    /// Passes over the memory.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl KdfParams {
    /// What `patchmesh keygen --passphrase` writes: 64 MiB and 3 passes, the memory and
    /// passes of RFC 9106's second recommended option, with one lane.
    pub const DEFAULT: KdfParams = KdfParams { memory_kib: 64 * 1024, iterations: 3, parallelism: 1 };

    /// The most memory a file may ask for, in KiB (1 GiB): a file is data, and data must
    /// not be able to exhaust the machine that reads it.
    pub const MAX_MEMORY_KIB: u32 = 1024 * 1024;
    /// The most passes a file may ask for, for the same reason.
    pub const MAX_ITERATIONS: u32 = 64;
    /// The most lanes a file may ask for.
    pub const MAX_PARALLELISM: u32 = 16;

    fn argon2(self) -> Result<Argon2<'static>, String> {
        if self.memory_kib > Self::MAX_MEMORY_KIB
            || self.iterations > Self::MAX_ITERATIONS
            || self.parallelism > Self::MAX_PARALLELISM
        {
            return Err(format!(
                "argon2id cost m={} t={} p={} exceeds the limits m<={} t<={} p<={}",
                self.memory_kib,
                self.iterations,
                self.parallelism,
                Self::MAX_MEMORY_KIB,
                Self::MAX_ITERATIONS,
                Self::MAX_PARALLELISM
            ));
        }
        let params = Params::new(self.memory_kib, self.iterations, self.parallelism, Some(DERIVED_LEN))
            .map_err(|error| format!("argon2id cost m={} t={} p={}: {error}", self.memory_kib, self.iterations, self.parallelism))?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }
}

impl fmt::Display for KdfParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "argon2id m={} t={} p={}", self.memory_kib, self.iterations, self.parallelism)
    }
}

/// Bytes of Argon2id output: a 32-byte cipher key and a 32-byte check key.
const DERIVED_LEN: usize = 64;
/// The 32-byte seed plus the 16-byte Poly1305 tag.
const SEALED_LEN: usize = 48;

/// A secret key sealed under a passphrase.
#[derive(Clone, PartialEq, Eq)]
pub struct EncryptedSecretKey {
    public: PublicKey,
    params: KdfParams,
    salt: [u8; 16],
    check: [u8; 32],
    nonce: [u8; 24],
    sealed: [u8; SEALED_LEN],
}

/// A key could not be sealed.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The passphrase is empty, which would protect nothing.
    #[error("empty passphrase: choose a passphrase of at least one character")]
    EmptyPassphrase,
    /// Cost parameters Argon2 rejects.
    #[error("cannot derive a key: {0}")]
    Kdf(String),
}

/// An encrypted key could not be unlocked.
#[derive(Debug, thiserror::Error)]
pub enum UnlockError {
    /// The passphrase does not match the one the file was sealed with.
    #[error("wrong passphrase for the encrypted secret key {public}; set PATCHMESH_PASSPHRASE or type it again")]
    WrongPassphrase {
        /// The key the file claims to hold.
        public: PublicKey,
    },
    /// The passphrase matches but the sealed part or the public key line was changed.
    #[error("the encrypted secret key file for {public} was altered after it was written ({what}); restore it from a backup")]
    Tampered {
        /// The key the file claims to hold.
        public: PublicKey,
        /// Which part failed.
        what: &'static str,
    },
    /// Cost parameters out of range.
    #[error("cannot derive a key: {0}")]
    Kdf(String),
}

impl EncryptedSecretKey {
    /// Seals `key` under `passphrase`. `salt` and `nonce` must be fresh random bytes for
    /// every file; the caller supplies them so this crate reads no entropy source.
    pub fn seal(
        key: &SecretKey,
        passphrase: &[u8],
        params: KdfParams,
        salt: [u8; 16],
        nonce: [u8; 24],
    ) -> Result<Self, SealError> {
        if passphrase.is_empty() {
            return Err(SealError::EmptyPassphrase);
        }
        let mut file = EncryptedSecretKey {
            public: key.public(),
            params,
            salt,
            check: [0; 32],
            nonce,
            sealed: [0; SEALED_LEN],
        };
        let derived = derive(params, passphrase, &salt).map_err(SealError::Kdf)?;
        let associated = file.associated_data();
        file.check = check_mac(&derived, &associated);
        let cipher = XChaCha20Poly1305::new_from_slice(&derived[..32]).map_err(|error| SealError::Kdf(error.to_string()))?;
        let seed = key.seed();
        let sealed = cipher
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: seed.as_slice(), aad: &associated })
            .map_err(|error| SealError::Kdf(error.to_string()))?;
        file.sealed.copy_from_slice(&sealed);
        Ok(file)
    }

    /// The public key the file holds, readable without the passphrase.
    pub fn public(&self) -> PublicKey {
        self.public
    }

    /// The file's Argon2id cost.
    pub fn params(&self) -> KdfParams {
        self.params
    }

    /// Derives the keys from `passphrase` and opens the seal.
    pub fn unlock(&self, passphrase: &[u8]) -> Result<SecretKey, UnlockError> {
        let derived = derive(self.params, passphrase, &self.salt).map_err(UnlockError::Kdf)?;
        let associated = self.associated_data();
        // blake3::Hash compares in constant time.
        if blake3::Hash::from(check_mac(&derived, &associated)) != blake3::Hash::from(self.check) {
            return Err(UnlockError::WrongPassphrase { public: self.public });
        }
        let tampered = |what| UnlockError::Tampered { public: self.public, what };
        let cipher = XChaCha20Poly1305::new_from_slice(&derived[..32]).map_err(|_| tampered("cipher key"))?;
        let seed = Zeroizing::new(
            cipher
                .decrypt(XNonce::from_slice(&self.nonce), Payload { msg: &self.sealed, aad: &associated })
                .map_err(|_| tampered("sealed seed or nonce"))?,
        );
        let seed: [u8; 32] = seed.as_slice().try_into().map_err(|_| tampered("seed length"))?;
        let key = SecretKey::from_seed(seed);
        if key.public() != self.public {
            return Err(tampered("public key line"));
        }
        Ok(key)
    }

    /// The file text.
    pub fn to_file_text(&self) -> String {
        format!(
            "{}check: {}\nnonce: {}\nsealed: {}\n",
            String::from_utf8_lossy(&self.associated_data()),
            BASE64.encode(self.check),
            BASE64.encode(self.nonce),
            BASE64.encode(self.sealed)
        )
    }

    /// Parses the file text; the lines must come in the documented order.
    pub fn from_file_text(text: &str) -> Result<Self, KeyError> {
        let mut lines = text.lines().map(str::trim).filter(|line| !line.is_empty());
        let header = lines.next().unwrap_or_default();
        if header != ENCRYPTED_KEY_HEADER {
            return Err(KeyError::Format {
                text: header.chars().take(40).collect(),
                expected: "first line `patchmesh-encrypted-secret-key-v1`",
            });
        }
        let mut field = |name: &'static str, expected: &'static str| {
            let line = lines.next().unwrap_or_default();
            line.strip_prefix(name)
                .map(str::trim)
                .ok_or(KeyError::Format { text: line.chars().take(40).collect(), expected })
        };
        let public = PublicKey::parse(field("public:", "line `public: ed25519:<base64>`")?)?;
        let params = parse_params(field("kdf:", "line `kdf: argon2id m=<KiB> t=<passes> p=<lanes>`")?)?;
        let salt = decode_fixed::<16>(field("salt:", "line `salt: <base64>`")?, "salt")?;
        let check = decode_fixed::<32>(field("check:", "line `check: <base64>`")?, "check")?;
        let nonce = decode_fixed::<24>(field("nonce:", "line `nonce: <base64>`")?, "nonce")?;
        let sealed = decode_fixed::<SEALED_LEN>(field("sealed:", "line `sealed: <base64>`")?, "sealed")?;
        Ok(EncryptedSecretKey { public, params, salt, check, nonce, sealed })
    }

    /// The first four lines, rebuilt from the parsed values so that the bytes the MAC and
    /// the cipher cover do not depend on spacing in the file.
    fn associated_data(&self) -> Vec<u8> {
        format!("{ENCRYPTED_KEY_HEADER}\npublic: {}\nkdf: {}\nsalt: {}\n", self.public, self.params, BASE64.encode(self.salt))
            .into_bytes()
    }
}

impl fmt::Debug for EncryptedSecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EncryptedSecretKey(public {}, {})", self.public, self.params)
    }
}

fn derive(params: KdfParams, passphrase: &[u8], salt: &[u8; 16]) -> Result<Zeroizing<[u8; DERIVED_LEN]>, String> {
    let mut derived = Zeroizing::new([0u8; DERIVED_LEN]);
    params
        .argon2()?
        .hash_password_into(passphrase, salt, derived.as_mut())
        .map_err(|error| format!("argon2id: {error}"))?;
    Ok(derived)
}

fn check_mac(derived: &[u8; DERIVED_LEN], associated: &[u8]) -> [u8; 32] {
    let mut check_key = [0u8; 32];
    check_key.copy_from_slice(&derived[32..]);
    *blake3::keyed_hash(&check_key, associated).as_bytes()
}

fn parse_params(text: &str) -> Result<KdfParams, KeyError> {
    let bad = || KeyError::Format { text: text.chars().take(60).collect(), expected: "`argon2id m=<KiB> t=<passes> p=<lanes>`" };
    let mut words = text.split_whitespace();
    if words.next() != Some("argon2id") {
        return Err(bad());
    }
    let mut number = |prefix: &str| -> Result<u32, KeyError> {
        words.next().and_then(|word| word.strip_prefix(prefix)).and_then(|n| n.parse().ok()).ok_or_else(bad)
    };
    let params = KdfParams { memory_kib: number("m=")?, iterations: number("t=")?, parallelism: number("p=")? };
    if words.next().is_some() {
        return Err(bad());
    }
    Ok(params)
}

fn decode_fixed<const N: usize>(text: &str, field: &str) -> Result<[u8; N], KeyError> {
    let decoded = BASE64
        .decode(text)
        .map_err(|error| KeyError::Encoding { reason: format!("encrypted key {field}: {error}") })?;
    decoded.as_slice().try_into().map_err(|_| KeyError::Encoding {
        reason: format!("encrypted key {field} is {} bytes, expected {N}", decoded.len()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SecretKeyFile;

    /// The smallest cost Argon2 allows, so the tests stay fast; files written by the CLI
    /// use [`KdfParams::DEFAULT`].
    const CHEAP: KdfParams = KdfParams { memory_kib: 8, iterations: 1, parallelism: 1 };

    fn sealed() -> (SecretKey, EncryptedSecretKey) {
        let key = SecretKey::from_seed([3; 32]);
        let file = EncryptedSecretKey::seal(&key, b"correct horse", CHEAP, [1; 16], [2; 24]).expect("seal");
        (key, file)
    }

    #[test]
    fn round_trip_through_text() {
        let (key, file) = sealed();
        let parsed = EncryptedSecretKey::from_file_text(&file.to_file_text()).expect("parse");
        assert_eq!(parsed, file);
        assert_eq!(parsed.unlock(b"correct horse").expect("unlock").public(), key.public());
    }

    #[test]
    fn wrong_passphrase_is_named() {
        let (_, file) = sealed();
        let error = file.unlock(b"correct horsf").expect_err("wrong passphrase");
        assert!(matches!(error, UnlockError::WrongPassphrase { .. }), "{error}");
        assert!(error.to_string().contains("wrong passphrase"), "{error}");
    }

    #[test]
    fn tampered_seal_detected() {
        let (_, file) = sealed();
        let text = file.to_file_text();
        let sealed_line = text.lines().find(|line| line.starts_with("sealed: ")).expect("sealed line");
        let mut bytes = BASE64.decode(&sealed_line["sealed: ".len()..]).expect("base64");
        bytes[5] ^= 0x40;
        let altered = text.replace(sealed_line, &format!("sealed: {}", BASE64.encode(&bytes)));
        let parsed = EncryptedSecretKey::from_file_text(&altered).expect("still parses");
        let error = parsed.unlock(b"correct horse").expect_err("tampered");
        assert!(matches!(error, UnlockError::Tampered { .. }), "{error}");
    }

    #[test]
    fn swapped_public_key_detected() {
        // Replacing the public line with another key must not make the file claim it.
        let (_, file) = sealed();
        let other = SecretKey::from_seed([4; 32]).public();
        let altered = file.to_file_text().replace(&file.public().to_string(), &other.to_string());
        let parsed = EncryptedSecretKey::from_file_text(&altered).expect("still parses");
        assert!(parsed.unlock(b"correct horse").is_err());
    }

    #[test]
    fn oversized_cost_rejected_before_allocating() {
        let (_, file) = sealed();
        let altered = file.to_file_text().replace("m=8 ", "m=4000000000 ");
        let parsed = EncryptedSecretKey::from_file_text(&altered).expect("parses");
        assert!(matches!(parsed.unlock(b"correct horse"), Err(UnlockError::Kdf(_))));
    }

    #[test]
    fn empty_passphrase_rejected() {
        let key = SecretKey::from_seed([3; 32]);
        assert!(matches!(
            EncryptedSecretKey::seal(&key, b"", CHEAP, [1; 16], [2; 24]),
            Err(SealError::EmptyPassphrase)
        ));
    }

    #[test]
    fn either_format_parses_and_plain_reader_names_encryption() {
        let (_, file) = sealed();
        let text = file.to_file_text();
        assert!(matches!(SecretKeyFile::from_file_text(&text), Ok(SecretKeyFile::Encrypted(_))));
        assert!(matches!(SecretKey::from_file_text(&text), Err(KeyError::Encrypted)));
        let plain = SecretKey::from_seed([3; 32]).to_file_text();
        assert!(matches!(SecretKeyFile::from_file_text(&plain), Ok(SecretKeyFile::Plain(_))));
    }
}
