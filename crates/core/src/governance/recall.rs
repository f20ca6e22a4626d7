//! Signed recall, pause and resume orders for one patch version.
//!
//! A recall is final: the version must not be installed or served again, whatever comes
//! later. Pause and resume toggle; among verified orders for a version the latest
//! `issued` wins, and a pause wins a tie, so replaying an old resume cannot undo a newer
//! pause.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::policy::{RuleKind, Shortfall, TrustedPolicy};
use super::{KeySignature, MAX_DOCUMENT_SIGNATURES, add_signature, valid_signers};
use crate::encoding::CanonicalWriter;
use crate::ids::PatchKey;
use crate::keys::{PublicKey, SecretKey};
use crate::time::Timestamp;

/// Domain tag of the bytes a rollout control order signs.
pub const CONTROL_DOMAIN: &str = "patchmesh/rollout-control/1";
/// The longest reason, in bytes.
pub const MAX_REASON_BYTES: usize = 1024;
/// How far in the future an order's `issued` time may be, in seconds, to allow for clock
/// skew between the signer's machine and the node.
const MAX_CLOCK_SKEW_SECS: u64 = 300;

/// What an order does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ControlAction {
    /// Withdraw the version for good.
    Recall,
    /// Stop starting the version until a resume.
    Pause,
    /// Undo a pause.
    Resume,
}

impl ControlAction {
    /// The rule of the trust file that governs this action.
    pub fn rule(self) -> RuleKind {
        match self {
            ControlAction::Recall => RuleKind::Recall,
            ControlAction::Pause => RuleKind::Pause,
            ControlAction::Resume => RuleKind::Resume,
        }
    }

    fn tag(self) -> u8 {
        match self {
            ControlAction::Recall => 1,
            ControlAction::Pause => 2,
            ControlAction::Resume => 3,
        }
    }
}

impl fmt::Display for ControlAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ControlAction::Recall => "recall",
            ControlAction::Pause => "pause",
            ControlAction::Resume => "resume",
        })
    }
}

/// A recall, pause or resume order and the signatures collected on it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutControl {
    /// What to do.
    pub action: ControlAction,
    /// The patch version concerned.
    pub patch: PatchKey,
    /// Why, for operators and the audit log.
    pub reason: String,
    /// When the order was made, Unix seconds.
    pub issued: u64,
    /// Signatures over [`RolloutControl::signed_bytes`].
    pub signatures: Vec<KeySignature>,
}

/// An order that does not take effect.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The signers do not meet the action's rule.
    #[error("{action} of {patch} is not authorised: it needs {} (valid signers: {signers})", join(.shortfall))]
    Unauthorised {
        /// The action.
        action: ControlAction,
        /// The patch version.
        patch: PatchKey,
        /// What is missing.
        shortfall: Vec<Shortfall>,
        /// Short ids of the keys whose signature verified.
        signers: String,
    },
    /// The policy expired.
    #[error("trust file version {version} expired at {expires} (Unix seconds); no order is accepted under it")]
    PolicyExpired {
        /// The policy version.
        version: u64,
        /// Its expiry, Unix seconds.
        expires: u64,
    },
    /// Issued later than the node's clock allows.
    #[error("{action} of {patch} is dated {issued}, in the future (now {now}, Unix seconds); check the signer's clock")]
    FromFuture {
        /// The action.
        action: ControlAction,
        /// The patch version.
        patch: PatchKey,
        /// Its `issued` time.
        issued: u64,
        /// The time of the check.
        now: u64,
    },
    /// A reason longer than [`MAX_REASON_BYTES`], or more signatures than allowed.
    #[error("{action} of {patch} is oversized: {what}")]
    Oversized {
        /// The action.
        action: ControlAction,
        /// The patch version.
        patch: PatchKey,
        /// What is too large.
        what: String,
    },
}

fn join(shortfall: &[Shortfall]) -> String {
    shortfall.iter().map(ToString::to_string).collect::<Vec<_>>().join(" and ")
}

impl RolloutControl {
    /// An unsigned order.
    pub fn new(action: ControlAction, patch: PatchKey, reason: impl Into<String>, issued: u64) -> Self {
        RolloutControl { action, patch, reason: reason.into(), issued, signatures: Vec::new() }
    }

    /// The bytes every signature covers.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut writer = CanonicalWriter::with_domain(CONTROL_DOMAIN);
        writer.put_u8(self.action.tag());
        writer.put_str(self.patch.id.as_str());
        writer.put_u64(self.patch.version);
        writer.put_u64(self.issued);
        writer.put_str(&self.reason);
        writer.finish()
    }

    /// Adds or replaces `key`'s signature.
    pub fn sign(&mut self, key: &SecretKey) {
        let message = self.signed_bytes();
        add_signature(&mut self.signatures, key, &message);
    }

    /// The distinct keys whose signature verifies.
    pub fn signers(&self) -> BTreeSet<PublicKey> {
        valid_signers(&self.signed_bytes(), &self.signatures)
    }
}

/// An order whose signatures met its rule; only these change a [`RolloutState`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedControl(RolloutControl);

impl VerifiedControl {
    /// The order.
    pub fn control(&self) -> &RolloutControl {
        &self.0
    }
}

/// Checks `control` against its rule in `policy` at `now`.
pub fn verify_control(policy: &TrustedPolicy, control: &RolloutControl, now: Timestamp) -> Result<VerifiedControl, ControlError> {
    let action = control.action;
    let patch = control.patch.clone();
    if policy.check_fresh(now).is_err() {
        let policy = policy.policy();
        return Err(ControlError::PolicyExpired { version: policy.version, expires: policy.expires });
    }
    if control.reason.len() > MAX_REASON_BYTES {
        let what = format!("reason of {} bytes, more than {MAX_REASON_BYTES}", control.reason.len());
        return Err(ControlError::Oversized { action, patch, what });
    }
    if control.signatures.len() > MAX_DOCUMENT_SIGNATURES {
        let what = format!("{} signatures, more than {MAX_DOCUMENT_SIGNATURES}", control.signatures.len());
        return Err(ControlError::Oversized { action, patch, what });
    }
    if control.issued > now.as_secs().saturating_add(MAX_CLOCK_SKEW_SECS) {
        return Err(ControlError::FromFuture { action, patch, issued: control.issued, now: now.as_secs() });
    }
    let signers = control.signers();
    policy.policy().evaluate(action.rule(), &signers).map_err(|shortfall| ControlError::Unauthorised {
        action,
        patch,
        shortfall,
        signers: super::short_ids(&signers),
    })?;
    Ok(VerifiedControl(control.clone()))
}

/// Where a patch version's rollout stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RolloutState {
    /// No order stops it.
    Active,
    /// Paused by the order issued at `since` (Unix seconds).
    Paused {
        /// When the pause was issued.
        since: u64,
    },
    /// Recalled by the order issued at `at` (Unix seconds); final.
    Recalled {
        /// When the earliest recall was issued.
        at: u64,
    },
}

/// Folds the verified orders for `patch` into its state. Orders for other versions are
/// skipped, so a node may pass everything it holds.
pub fn rollout_state<'a>(patch: &PatchKey, controls: impl IntoIterator<Item = &'a VerifiedControl>) -> RolloutState {
    let mut recalled: Option<u64> = None;
    // (issued, is_pause) of the order in force; a pause sorts after a resume of the
    // same second, so it wins the tie.
    let mut latest: Option<(u64, bool)> = None;
    for VerifiedControl(control) in controls {
        if &control.patch != patch {
            continue;
        }
        match control.action {
            ControlAction::Recall => recalled = Some(recalled.map_or(control.issued, |at| at.min(control.issued))),
            ControlAction::Pause | ControlAction::Resume => {
                let order = (control.issued, control.action == ControlAction::Pause);
                if latest.is_none_or(|held| order > held) {
                    latest = Some(order);
                }
            }
        }
    }
    match (recalled, latest) {
        (Some(at), _) => RolloutState::Recalled { at },
        (None, Some((since, true))) => RolloutState::Paused { since },
        _ => RolloutState::Active,
    }
}
