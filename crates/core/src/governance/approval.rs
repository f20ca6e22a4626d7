//! Detached approvals of a manifest, and the verdict of the approval rule.
//!
//! An approval is one key's signature over `(patch id, version, digest)`, where the digest
//! is [`Announcement::digest`]: the hash of everything the publisher signed, including the
//! content hashes, the expiry and the rollout plan. Approvals travel apart from the
//! manifest, so nodes can gossip them one by one as reviewers and executives sign.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::policy::{RuleKind, Shortfall, TrustedPolicy};
use super::{Role, short_ids};
use crate::encoding::CanonicalWriter;
use crate::ids::PatchKey;
use crate::keys::{PublicKey, SecretKey};
use crate::manifest::{Announcement, ContentHash, MAX_SIGNATURES, SignatureBytes};
use crate::time::Timestamp;

/// Domain tag of the bytes an approval signs.
pub const APPROVAL_DOMAIN: &str = "patchmesh/approval/1";
/// The approvals file format.
pub const APPROVALS_FORMAT: u32 = 1;
/// The most approvals evaluated for one manifest; more is a flooding attempt.
pub const MAX_APPROVALS: usize = 64;

/// One key's approval of one manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Approval {
    /// The patch version approved; also inside the digest, repeated so a node can file
    /// an approval that arrives before its manifest.
    pub patch: PatchKey,
    /// [`Announcement::digest`] of the approved manifest.
    pub digest: ContentHash,
    /// The approving key.
    pub key: PublicKey,
    /// The signature over [`Approval::signed_bytes`].
    pub signature: SignatureBytes,
}

/// An approval that does not count for a manifest.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ApprovalError {
    /// The approval is for another patch version or another digest.
    #[error("approval by {key} is for {patch} with digest {found}, not this manifest ({expected})")]
    OtherManifest {
        /// The approving key.
        key: PublicKey,
        /// The patch version it names.
        patch: PatchKey,
        /// The digest of the manifest evaluated.
        expected: ContentHash,
        /// The digest it signs.
        found: ContentHash,
    },
    /// The signature does not verify.
    #[error("approval by {key} has an invalid signature")]
    BadSignature {
        /// The claimed key.
        key: PublicKey,
    },
    /// A key the policy does not list, or one it revoked.
    #[error("approval by {key}: the key holds no role in trust file version {version} (unknown or revoked)")]
    UnknownKey {
        /// The key.
        key: PublicKey,
        /// The policy version.
        version: u64,
    },
}

/// Why a manifest cannot roll out whatever approvals arrive.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ApprovalRejection {
    /// The trust policy expired.
    #[error("trust file version {version} expired at {expires} (Unix seconds); no manifest is approved under it")]
    PolicyExpired {
        /// The policy version.
        version: u64,
        /// Its expiry, Unix seconds.
        expires: u64,
    },
    /// The manifest expired.
    #[error("manifest {patch} expired at {expires} (Unix seconds); publish a new version")]
    ManifestExpired {
        /// The patch version.
        patch: PatchKey,
        /// Its expiry, Unix seconds.
        expires: u64,
    },
    /// A header or plan that breaks the format.
    #[error("manifest {patch} is malformed: {reason}")]
    Malformed {
        /// The patch version.
        patch: PatchKey,
        /// What is wrong.
        reason: String,
    },
    /// More signatures or approvals than any honest manifest collects.
    #[error("manifest {patch} carries {count} signatures and approvals, more than the maximum of {max}")]
    TooMany {
        /// The patch version.
        patch: PatchKey,
        /// How many.
        count: usize,
        /// The limit.
        max: usize,
    },
}

/// The verdict of the approval rule for one manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApprovalStatus {
    /// Every role of the rule met its threshold.
    Met {
        /// The counted keys of each role of the rule.
        approvers: BTreeMap<Role, BTreeSet<PublicKey>>,
    },
    /// Some roles still need keys. More approvals may still arrive.
    Missing {
        /// What each short role still needs.
        shortfall: Vec<Shortfall>,
        /// Approvals that did not count, and why.
        ignored: Vec<ApprovalError>,
    },
    /// The manifest cannot be approved.
    Rejected(ApprovalRejection),
}

impl Approval {
    /// `key`'s approval of `announcement`.
    pub fn sign(announcement: &Announcement, key: &SecretKey) -> Approval {
        let patch = announcement.header.patch.clone();
        let digest = announcement.digest();
        let signature = SignatureBytes(key.sign(&Approval::signed_bytes(&patch, &digest)));
        Approval { patch, digest, key: key.public(), signature }
    }

    /// The bytes an approval signs.
    pub fn signed_bytes(patch: &PatchKey, digest: &ContentHash) -> Vec<u8> {
        let mut writer = CanonicalWriter::with_domain(APPROVAL_DOMAIN);
        writer.put_str(patch.id.as_str());
        writer.put_u64(patch.version);
        writer.put_fixed(&digest.0);
        writer.finish()
    }

    /// Checks this approval against `announcement` and returns the role it counts for.
    /// A node receiving an approval by gossip rejects the sender on
    /// [`ApprovalError::BadSignature`] and ignores the other errors, which an honest peer
    /// holding another policy version or manifest can cause.
    // Approvals arrive a few per manifest, so an error a few hashes long is not worth boxing.
    #[allow(clippy::result_large_err)]
    pub fn check(&self, policy: &TrustedPolicy, announcement: &Announcement) -> Result<Role, ApprovalError> {
        let expected = announcement.digest();
        if self.patch != announcement.header.patch || self.digest != expected {
            return Err(ApprovalError::OtherManifest {
                key: self.key,
                patch: self.patch.clone(),
                expected,
                found: self.digest,
            });
        }
        if !self.key.verify(&Approval::signed_bytes(&self.patch, &self.digest), &self.signature.0) {
            return Err(ApprovalError::BadSignature { key: self.key });
        }
        policy
            .policy()
            .role_of(&self.key)
            .ok_or(ApprovalError::UnknownKey { key: self.key, version: policy.policy().version })
    }
}

/// Evaluates the approval rule of `policy` for `announcement` at `now`.
///
/// The signatures on the announcement and the approvals are pooled, and each role counts
/// its distinct keys: a duplicated approval, or the same key on the announcement and in an
/// approval, counts once. Approvals for another digest, with bad signatures or by keys
/// without a role do not count and are listed in [`ApprovalStatus::Missing::ignored`].
pub fn evaluate_approvals(policy: &TrustedPolicy, announcement: &Announcement, approvals: &[Approval], now: Timestamp) -> ApprovalStatus {
    let patch = announcement.header.patch.clone();
    if policy.check_fresh(now).is_err() {
        let policy = policy.policy();
        return ApprovalStatus::Rejected(ApprovalRejection::PolicyExpired { version: policy.version, expires: policy.expires });
    }
    if let Err(error) = announcement.validate() {
        return ApprovalStatus::Rejected(ApprovalRejection::Malformed { patch, reason: error.to_string() });
    }
    if now.as_secs() >= announcement.header.expires {
        return ApprovalStatus::Rejected(ApprovalRejection::ManifestExpired { patch, expires: announcement.header.expires });
    }
    let count = announcement.signatures.len() + approvals.len();
    let max = MAX_SIGNATURES + MAX_APPROVALS;
    if announcement.signatures.len() > MAX_SIGNATURES || approvals.len() > MAX_APPROVALS {
        return ApprovalStatus::Rejected(ApprovalRejection::TooMany { patch, count, max });
    }

    let mut signers: BTreeSet<PublicKey> = announcement.valid_signers().into_iter().collect();
    let mut ignored = Vec::new();
    for approval in approvals {
        match approval.check(policy, announcement) {
            Ok(_) => {
                signers.insert(approval.key);
            }
            Err(error) => ignored.push(error),
        }
    }
    match policy.policy().evaluate(RuleKind::Approval, &signers) {
        Ok(approvers) => ApprovalStatus::Met { approvers },
        Err(shortfall) => ApprovalStatus::Missing { shortfall, ignored },
    }
}

/// An approvals file: the approvals collected for one manifest, as JSON.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalFile {
    /// [`APPROVALS_FORMAT`].
    pub format: u32,
    /// The approvals, at most one per key and digest.
    pub approvals: Vec<Approval>,
}

/// An approvals file that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ApprovalFileError {
    /// Not JSON of the expected shape.
    #[error("invalid approvals file: {0}")]
    Json(#[from] serde_json::Error),
    /// Another format.
    #[error("unsupported approvals file format {format}: this release reads format {APPROVALS_FORMAT}")]
    UnsupportedFormat {
        /// The format found.
        format: u32,
    },
}

impl ApprovalFile {
    /// An empty file.
    pub fn new() -> Self {
        ApprovalFile { format: APPROVALS_FORMAT, approvals: Vec::new() }
    }

    /// Parses the JSON form.
    pub fn from_json(text: &str) -> Result<Self, ApprovalFileError> {
        let file: ApprovalFile = serde_json::from_str(text)?;
        if file.format != APPROVALS_FORMAT {
            return Err(ApprovalFileError::UnsupportedFormat { format: file.format });
        }
        Ok(file)
    }

    /// The JSON form, pretty-printed.
    pub fn to_json(&self) -> String {
        // Every field serialises infallibly.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Adds `approval`, replacing an earlier one by the same key for the same digest.
    pub fn add(&mut self, approval: Approval) {
        self.approvals.retain(|held| !(held.key == approval.key && held.digest == approval.digest));
        self.approvals.push(approval);
    }

    /// Short ids of the approving keys, for messages.
    pub fn approvers(&self) -> String {
        short_ids(self.approvals.iter().map(|approval| &approval.key))
    }
}
