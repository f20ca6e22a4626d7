//! The daemon's side of rollout governance: reading either trust file format, keeping
//! approvals and orders across restarts, and appending to the audit log.
//!
//! Files in the data dir:
//!
//! - `governance.json`: `{"approvals": [Approval…], "controls": [RolloutControl…]}`, every
//!   document the core stores, rewritten (temp file and rename) after each change and
//!   handed back to the core at start.
//! - `audit.jsonl`: one [`AuditRecord`] per line, hash-chained, append-only.

use std::io::Write;
use std::path::{Path, PathBuf};

use patchmesh_core::governance::{
    Approval, AuditEvent, AuditRecord, RolloutControl, SignedMembership, SignedPolicy, TrustedPolicy, VerifiedMembership,
    parse_audit_log,
};
use patchmesh_core::trust::TrustFileError;
use patchmesh_core::{Node, Timestamp, TrustPolicy};
use serde::{Deserialize, Serialize};
use tracing::warn;

/// The audit log's file name in the data dir.
pub(crate) const AUDIT_FILE: &str = "audit.jsonl";
const DOCUMENTS_FILE: &str = "governance.json";

/// The trust file as the node enforces it.
#[derive(Debug)]
pub(crate) enum LoadedTrust {
    /// Format 1: any listed publisher's signature suffices.
    Publishers(TrustPolicy),
    /// Format 2: roles, thresholds and approval rules.
    Governed(TrustedPolicy),
}

impl LoadedTrust {
    /// Returns the publisher keys, which check announcement signatures in both formats.
    pub(crate) fn publishers(&self) -> TrustPolicy {
        match self {
            LoadedTrust::Publishers(trust) => trust.clone(),
            LoadedTrust::Governed(policy) => policy.publisher_trust(),
        }
    }
}

/// Reads a trust file of either format; a format 2 file must meet its own root
/// threshold and be unexpired at `now`.
pub(crate) fn read_trust(text: &str, now: Timestamp) -> Result<LoadedTrust, String> {
    match TrustPolicy::from_toml(text) {
        Ok(trust) => Ok(LoadedTrust::Publishers(trust)),
        Err(TrustFileError::GovernanceFormat) => {
            let signed = SignedPolicy::from_toml(text).map_err(|error| error.to_string())?;
            let policy = TrustedPolicy::bootstrap(signed, now).map_err(|error| error.to_string())?;
            Ok(LoadedTrust::Governed(policy))
        }
        Err(error) => Err(error.to_string()),
    }
}

/// The latest membership list received from peers, saved in the data dir.
const MEMBERSHIP_FILE: &str = "membership.toml";

/// Reads the configured membership list and the one saved from peers, and returns the
/// newer one that verifies under `policy`.
pub(crate) fn read_membership(path: &Path, data_dir: &Path, policy: &TrustedPolicy, now: Timestamp) -> Result<VerifiedMembership, String> {
    let text = std::fs::read_to_string(path).map_err(|error| format!("cannot read membership list: {error}"))?;
    let signed = SignedMembership::from_toml(&text).map_err(|error| error.to_string())?;
    let configured = VerifiedMembership::verify(policy, signed, now).map_err(|error| error.to_string())?;
    let saved = data_dir.join(MEMBERSHIP_FILE);
    let Ok(text) = std::fs::read_to_string(&saved) else {
        return Ok(configured);
    };
    let newer = SignedMembership::from_toml(&text)
        .map_err(|error| error.to_string())
        .and_then(|signed| configured.update(policy, signed, now).map_err(|error| error.to_string()));
    match newer {
        Ok(newer) => Ok(newer),
        Err(error) => {
            warn!(path = %saved.display(), %error, "saved membership list not used");
            Ok(configured)
        }
    }
}

/// Saves `signed`, the latest list received, so a restart keeps it.
pub(crate) fn save_membership(data_dir: &Path, signed: &SignedMembership) -> std::io::Result<()> {
    let path = data_dir.join(MEMBERSHIP_FILE);
    let temp = path.with_extension("toml.tmp");
    std::fs::write(&temp, signed.to_toml())?;
    std::fs::rename(&temp, &path)
}

/// Returns the libp2p peer ids on `signed`, skipping entries that are not one.
pub(crate) fn member_peers(signed: &SignedMembership) -> impl Iterator<Item = libp2p::PeerId> + '_ {
    signed.membership.members.keys().filter_map(|peer| peer.parse().ok())
}

#[derive(Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Documents {
    approvals: Vec<Approval>,
    controls: Vec<RolloutControl>,
}

/// The governance files of one data dir.
pub(crate) struct GovernanceFiles {
    documents: PathBuf,
    audit: PathBuf,
    /// The last record of the audit log, which the next one chains to.
    last: Option<AuditRecord>,
}

impl GovernanceFiles {
    /// Opens the files in `data_dir`, reading the audit log to find its last record.
    pub(crate) fn open(data_dir: &Path) -> GovernanceFiles {
        let audit = data_dir.join(AUDIT_FILE);
        let last = match std::fs::read_to_string(&audit) {
            Ok(text) => match parse_audit_log(&text) {
                Ok(records) => records.into_iter().last(),
                Err(error) => {
                    warn!(path = %audit.display(), %error, "audit log unreadable; new records start a new chain");
                    None
                }
            },
            Err(_) => None,
        };
        GovernanceFiles { documents: data_dir.join(DOCUMENTS_FILE), audit, last }
    }

    /// Returns the approvals and orders saved before a restart.
    pub(crate) fn load_documents(&self) -> (Vec<Approval>, Vec<RolloutControl>) {
        let text = match std::fs::read_to_string(&self.documents) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return (Vec::new(), Vec::new()),
            Err(error) => {
                warn!(path = %self.documents.display(), %error, "cannot read saved approvals and orders; peers will resend them");
                return (Vec::new(), Vec::new());
            }
        };
        match serde_json::from_str::<Documents>(&text) {
            Ok(documents) => (documents.approvals, documents.controls),
            Err(error) => {
                warn!(path = %self.documents.display(), %error, "invalid saved approvals and orders; peers will resend them");
                (Vec::new(), Vec::new())
            }
        }
    }

    /// Saves every approval and order `node` stores.
    pub(crate) fn save_documents(&self, node: &Node) -> std::io::Result<()> {
        let (approvals, controls) = node.governance_documents();
        let text = serde_json::to_string(&Documents { approvals, controls }).map_err(std::io::Error::other)?;
        let temp = self.documents.with_extension("json.tmp");
        std::fs::write(&temp, text)?;
        std::fs::rename(&temp, &self.documents)
    }

    /// Returns the last version of the trust file the audit log recorded, if any.
    pub(crate) fn last_trust_version(&self) -> Option<u64> {
        let text = std::fs::read_to_string(&self.audit).ok()?;
        parse_audit_log(&text).ok()?.into_iter().rev().find_map(|record| match record.event {
            AuditEvent::TrustChange { to_version, .. } => Some(to_version),
            _ => None,
        })
    }

    /// Appends a record of `event` at `now` and flushes it to disk.
    pub(crate) fn append(&mut self, now: Timestamp, event: AuditEvent) -> std::io::Result<()> {
        let record = match &self.last {
            Some(last) => last.next(now.as_secs(), event),
            None => AuditRecord::first(now.as_secs(), event),
        };
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&self.audit)?;
        file.write_all(record.to_line().as_bytes())?;
        file.sync_data()?;
        self.last = Some(record);
        Ok(())
    }

    /// Returns the whole audit log; a node that recorded nothing has an empty one.
    pub(crate) fn read_log(&self) -> std::io::Result<String> {
        match std::fs::read_to_string(&self.audit) {
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
            other => other,
        }
    }
}
