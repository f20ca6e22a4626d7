//! The trust file: which keys may publish patches.
//!
//! Format 1 is TOML:
//!
//! ```toml
//! format = 1
//!
//! [[publisher]]
//! name = "it-patch-watcher"
//! key = "ed25519:<base64>"
//! ```
//!
//! A manifest is trusted when at least one listed publisher key has a valid signature over
//! its header. Signatures by keys not listed are ignored, never counted.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::keys::PublicKey;
use crate::manifest::{Announcement, MAX_SIGNATURES};

/// The trust file format this release reads.
pub const TRUST_FORMAT: u32 = 1;

/// The keys a node accepts manifests from.
#[derive(Clone, Debug, Default)]
pub struct TrustPolicy {
    publishers: BTreeMap<PublicKey, String>,
}

/// A trust file that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TrustFileError {
    /// TOML syntax or shape; the message carries line and column.
    #[error("invalid trust file (expected `format = 1` and [[publisher]] tables with name and key): {0}")]
    Toml(#[from] toml::de::Error),
    /// A format version this release cannot read.
    #[error("unsupported trust file format {format}: this release reads format {TRUST_FORMAT}")]
    UnsupportedFormat {
        /// The format found.
        format: u32,
    },
    /// A format 2 (governance) file: callers that accept both formats read it with
    /// [`crate::governance::SignedPolicy::from_toml`] when they see this variant.
    #[error("this is a format 2 trust file (roles and approval rules), not a format 1 list of publishers; give a format 1 file here, or use the format 2 file where one is accepted")]
    GovernanceFormat,
    /// No publisher listed, so no manifest could ever be accepted.
    #[error("trust file lists no [[publisher]]: add at least one publisher key")]
    NoPublishers,
    /// The same key listed twice.
    #[error("trust file lists key {key} twice (as {first:?} and {second:?})")]
    DuplicateKey {
        /// The key.
        key: PublicKey,
        /// The first name it appears under.
        first: String,
        /// The second name.
        second: String,
    },
}

/// An announcement whose signatures do not establish trust.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// No signature by a trusted key.
    #[error("manifest {patch} is not signed by a trusted publisher (signed by: {signers})")]
    Untrusted {
        /// The patch version.
        patch: String,
        /// Short ids of the keys that did sign, or "nobody".
        signers: String,
    },
    /// A signature claiming a trusted key that does not verify.
    #[error("manifest {patch} has an invalid signature for trusted key {key}")]
    BadSignature {
        /// The patch version.
        patch: String,
        /// The trusted key whose signature failed.
        key: String,
    },
    /// More signatures than any honest manifest carries.
    #[error("manifest {patch} carries {count} signatures, more than the maximum of {MAX_SIGNATURES}")]
    TooManySignatures {
        /// The patch version.
        patch: String,
        /// How many it carries.
        count: usize,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TrustFile {
    format: u32,
    #[serde(default)]
    publisher: Vec<PublisherEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PublisherEntry {
    name: String,
    key: PublicKey,
}

impl TrustPolicy {
    /// Parses a trust file.
    pub fn from_toml(text: &str) -> Result<Self, TrustFileError> {
        #[derive(Deserialize)]
        struct FormatOnly {
            format: u32,
        }
        // Read the format alone first: a format 2 file has fields format 1 rejects, and
        // the error should name the format, not the first unknown field.
        if toml::from_str::<FormatOnly>(text).is_ok_and(|file| file.format == crate::governance::POLICY_FORMAT) {
            return Err(TrustFileError::GovernanceFormat);
        }
        let file: TrustFile = toml::from_str(text)?;
        if file.format != TRUST_FORMAT {
            return Err(TrustFileError::UnsupportedFormat { format: file.format });
        }
        if file.publisher.is_empty() {
            return Err(TrustFileError::NoPublishers);
        }
        let mut policy = TrustPolicy::default();
        for entry in file.publisher {
            if let Some(first) = policy.publishers.get(&entry.key) {
                return Err(TrustFileError::DuplicateKey {
                    key: entry.key,
                    first: first.clone(),
                    second: entry.name,
                });
            }
            policy.publishers.insert(entry.key, entry.name);
        }
        Ok(policy)
    }

    /// A policy trusting the given publishers, as `(name, key)` pairs.
    pub fn with_publishers<'a>(publishers: impl IntoIterator<Item = (&'a str, PublicKey)>) -> Self {
        TrustPolicy {
            publishers: publishers.into_iter().map(|(name, key)| (key, name.to_string())).collect(),
        }
    }

    /// The trust file text for this policy.
    pub fn to_toml(&self) -> String {
        let mut text = format!("format = {TRUST_FORMAT}\n");
        for (key, name) in &self.publishers {
            text.push_str(&format!("\n[[publisher]]\nname = {name:?}\nkey = \"{key}\"\n"));
        }
        text
    }

    /// The publisher keys and their names, as a format 2 trust file imports them.
    pub fn publishers(&self) -> impl Iterator<Item = (&PublicKey, &str)> {
        self.publishers.iter().map(|(key, name)| (key, name.as_str()))
    }

    /// The name a publisher key is listed under.
    pub fn publisher_name(&self, key: &PublicKey) -> Option<&str> {
        self.publishers.get(key).map(String::as_str)
    }

    /// Checks the signatures of `announcement` and returns the trusted keys that signed.
    ///
    /// Any signature that claims a trusted key but does not verify rejects the whole
    /// announcement: an honest publisher never ships one.
    pub fn verify(&self, announcement: &Announcement) -> Result<Vec<PublicKey>, TrustError> {
        let patch = announcement.header.patch.to_string();
        let count = announcement.signatures.len();
        if count > MAX_SIGNATURES {
            return Err(TrustError::TooManySignatures { patch, count });
        }
        let message = announcement.signed_bytes();
        let mut trusted = Vec::new();
        for entry in &announcement.signatures {
            if !self.publishers.contains_key(&entry.key) {
                continue;
            }
            if !entry.key.verify(&message, &entry.signature.0) {
                return Err(TrustError::BadSignature { patch, key: entry.key.short_id() });
            }
            trusted.push(entry.key);
        }
        trusted.sort();
        trusted.dedup();
        if trusted.is_empty() {
            let signers: Vec<String> = announcement.signatures.iter().map(|entry| entry.key.to_string()).collect();
            let signers = if signers.is_empty() { "nobody".to_string() } else { signers.join(", ") };
            return Err(TrustError::Untrusted { patch, signers });
        }
        Ok(trusted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{PatchId, PatchKey};
    use crate::keys::SecretKey;
    use crate::manifest::ManifestBuilder;

    fn announcement(signer: &SecretKey) -> Announcement {
        let key = PatchKey { id: PatchId::new("p").expect("id"), version: 1 };
        let mut manifest = ManifestBuilder::new(key, 1024)
            .and_then(|mut builder| {
                builder
                    .add_file(crate::manifest::FileName::new("f").expect("name"), &b"data"[..])
                    .expect("add");
                builder.finish(1, 2)
            })
            .expect("manifest");
        manifest.sign(signer);
        manifest.announcement().clone()
    }

    #[test]
    fn trusted_signer_accepted() {
        let key = SecretKey::from_seed([1; 32]);
        let policy = TrustPolicy::with_publishers([("it", key.public())]);
        assert_eq!(policy.verify(&announcement(&key)).expect("trusted"), vec![key.public()]);
    }

    #[test]
    fn unknown_signer_rejected() {
        let policy = TrustPolicy::with_publishers([("it", SecretKey::from_seed([1; 32]).public())]);
        let error = policy.verify(&announcement(&SecretKey::from_seed([2; 32]))).expect_err("untrusted");
        assert!(matches!(error, TrustError::Untrusted { .. }), "{error}");
    }

    #[test]
    fn bad_signature_rejected() {
        let key = SecretKey::from_seed([1; 32]);
        let policy = TrustPolicy::with_publishers([("it", key.public())]);
        let mut announcement = announcement(&key);
        announcement.signatures[0].signature.0[0] ^= 1;
        let error = policy.verify(&announcement).expect_err("bad signature");
        assert!(matches!(error, TrustError::BadSignature { .. }), "{error}");
    }

    #[test]
    fn changed_field_rejected() {
        let key = SecretKey::from_seed([1; 32]);
        let policy = TrustPolicy::with_publishers([("it", key.public())]);
        let mut announcement = announcement(&key);
        announcement.header.patch.version = 2;
        assert!(policy.verify(&announcement).is_err());
    }

    #[test]
    fn toml_round_trip() {
        let key = SecretKey::from_seed([1; 32]).public();
        let policy = TrustPolicy::with_publishers([("it", key)]);
        let parsed = TrustPolicy::from_toml(&policy.to_toml()).expect("parse");
        assert_eq!(parsed.publisher_name(&key), Some("it"));
    }

    #[test]
    fn toml_error_has_position() {
        let error = TrustPolicy::from_toml("format = 1\n[[publisher]\n").expect_err("syntax");
        assert!(error.to_string().contains("line 2"), "{error}");
    }

    #[test]
    fn unknown_field_rejected() {
        let key = SecretKey::from_seed([1; 32]).public();
        let text = format!("format = 1\n[[publisher]]\nname = \"a\"\nkey = \"{key}\"\nrole = \"x\"\n");
        assert!(TrustPolicy::from_toml(&text).is_err());
    }

    #[test]
    fn governance_format_names_the_gap() {
        let error = TrustPolicy::from_toml("format = 2\nversion = 1\n").expect_err("format 2");
        assert!(matches!(error, TrustFileError::GovernanceFormat), "{error}");
    }
}
