//! Rollout governance: who may publish, approve, recall and admit nodes, and when each
//! site may start a rollout.
//!
//! Everything here is pure: a function takes the documents and `now`, and returns a
//! verdict. Nothing reads a clock, a file or the network, so a node, the CLI and the
//! simulator reach the same verdict from the same inputs.
//!
//! # Documents
//!
//! - [`SignedPolicy`] (trust file format 2): roles with keys and thresholds, and the rules
//!   that combine roles for each action. A node holds one [`TrustedPolicy`], obtained by
//!   [`TrustedPolicy::bootstrap`] from the file it was installed with and advanced only by
//!   [`TrustedPolicy::update`], one version at a time.
//! - [`Approval`]: one key's detached signature over a manifest's digest
//!   ([`Announcement::digest`](crate::Announcement::digest)). [`evaluate_approvals`]
//!   combines an announcement's own signatures and any approvals into
//!   [`ApprovalStatus::Met`], [`ApprovalStatus::Missing`] or [`ApprovalStatus::Rejected`].
//! - [`RolloutControl`]: a signed recall, pause or resume of one patch version, checked by
//!   [`verify_control`] and folded into a [`RolloutState`].
//! - [`SignedMembership`]: the signed, versioned list of node peer ids and their sites.
//! - [`SignedStatusReport`]: one node's signed account of its rollouts, flooded so nodes
//!   can count a wave's progress.
//! - [`RolloutPlan`]: ordered waves and maintenance windows, carried inside the signed
//!   manifest announcement; [`wave_open`] says whether a site may start.
//! - [`AuditRecord`]: one line of the append-only audit log.
//!
//! # Counting
//!
//! A threshold counts distinct public keys with a valid strict ed25519 signature, never
//! signatures: a key that signs twice counts once, and [`PublicKey`] accepts exactly one
//! encoding per key. A key belongs to at most one role, so one person cannot satisfy
//! "one reviewer and one executive" alone.

mod approval;
mod audit;
mod membership;
mod policy;
mod recall;
mod status_report;
mod waves;


use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

pub use approval::{
    APPROVAL_DOMAIN, APPROVALS_FORMAT, Approval, ApprovalError, ApprovalFile, ApprovalFileError, ApprovalRejection, ApprovalStatus,
    MAX_APPROVALS, evaluate_approvals,
};
pub use audit::{AUDIT_FORMAT, AuditError, AuditEvent, AuditRecord, parse_audit_log, verify_audit_chain};
pub use membership::{
    MEMBERSHIP_DOMAIN, MEMBERSHIP_FORMAT, MAX_MEMBERS, Membership, MembershipError, MembershipFileError,
    SignedMembership, VerifiedMembership,
};
pub use policy::{
    POLICY_DOMAIN, POLICY_FORMAT, Policy, PolicyError, PolicyFileError, RoleKeys, RuleKind, Rules, Shortfall,
    SignedPolicy, TrustedPolicy,
};
pub use recall::{
    CONTROL_DOMAIN, ControlAction, ControlError, MAX_REASON_BYTES, RolloutControl, RolloutState, VerifiedControl,
    rollout_state, verify_control,
};
pub use status_report::{
    MAX_REPORT_ERROR_BYTES, MAX_REPORT_PATCHES, MAX_REPORT_PEER_BYTES, MAX_REPORT_SKEW_SECS, PatchReport, ReportState, STATUS_DOMAIN,
    SignedStatusReport, SourceBytes, StatusReport, StatusReportError, truncate_error,
};
pub use waves::{
    MAX_PLAN_SITES, MAX_WAVES, MaintenanceWindow, PlanError, RolloutPlan, WaitReason, Wave, WaveDecision,
    WaveProgress, WaveStart, wave_open,
};

use crate::keys::{PublicKey, SecretKey};
use crate::manifest::SignatureBytes;

/// The most signatures one governance document may carry; more is a flooding attempt.
pub const MAX_DOCUMENT_SIGNATURES: usize = 64;

/// A role a key can hold. Each key holds at most one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Signs trust file versions; the only role that can change keys.
    Root,
    /// Builds and signs manifests.
    Publisher,
    /// Checks a patch before it rolls out.
    Reviewer,
    /// Accepts the business risk of a rollout, a recall or a resume.
    Executive,
    /// Maintains the list of nodes allowed in the mesh.
    NodeAdmin,
}

impl Role {
    /// Every role, in canonical order.
    pub const ALL: [Role; 5] = [Role::Root, Role::Publisher, Role::Reviewer, Role::Executive, Role::NodeAdmin];

    /// The name used in trust files and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Root => "root",
            Role::Publisher => "publisher",
            Role::Reviewer => "reviewer",
            Role::Executive => "executive",
            Role::NodeAdmin => "node-admin",
        }
    }

    /// Parses a role name as [`Role::as_str`] writes it.
    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|role| role.as_str() == text)
    }

    fn tag(self) -> u8 {
        match self {
            Role::Root => 1,
            Role::Publisher => 2,
            Role::Reviewer => 3,
            Role::Executive => 4,
            Role::NodeAdmin => 5,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One signature over a governance document's canonical bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySignature {
    /// The signing key.
    pub key: PublicKey,
    /// The ed25519 signature.
    pub signature: SignatureBytes,
}

/// Adds or replaces `key`'s signature over `message` in `signatures`.
fn add_signature(signatures: &mut Vec<KeySignature>, key: &SecretKey, message: &[u8]) {
    let public = key.public();
    signatures.retain(|entry| entry.key != public);
    signatures.push(KeySignature { key: public, signature: SignatureBytes(key.sign(message)) });
}

/// The distinct keys whose signature over `message` verifies strictly. Invalid signatures
/// are dropped, not counted: anyone can append garbage to a gossiped document, and that
/// must not make an otherwise valid document fail.
fn valid_signers(message: &[u8], signatures: &[KeySignature]) -> BTreeSet<PublicKey> {
    signatures
        .iter()
        .filter(|entry| entry.key.verify(message, &entry.signature.0))
        .map(|entry| entry.key)
        .collect()
}

/// Short ids of `keys`, comma-separated, for error messages.
fn short_ids<'a>(keys: impl IntoIterator<Item = &'a PublicKey>) -> String {
    let ids: Vec<String> = keys.into_iter().map(PublicKey::short_id).collect();
    if ids.is_empty() { "none".to_string() } else { ids.join(", ") }
}

/// Checks a site or node name: 1 to 64 bytes of ASCII letters, digits, `.`, `_`, `-`.
fn check_name(what: &'static str, name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(format!("invalid {what} {name:?}: use 1 to 64 letters, digits, '.', '_' or '-'"))
    }
}

/// A length as `u32`; validated documents stay far below the limit.
fn len_u32(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}
