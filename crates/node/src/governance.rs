//! The daemon's side of rollout governance: reading either trust file format, keeping
//! approvals and orders across restarts, and appending to the audit log.
//!
//! Files in the data dir:
//!
//! - `governance.json`: `{"approvals": [Approval…], "controls": [RolloutControl…]}`, every
//!   document the core stores, rewritten (temp file and rename) after each change and
//!   handed back to the core at start.
//! - `audit.jsonl`: one [`AuditRecord`] per line, hash-chained, append-only.
//! - `membership.toml`: the newest membership list taken, from the control socket or a
//!   peer.
//! - `trust-chain.json`: the trust file versions the node enforced, oldest first, as a
//!   JSON array of trust file texts. At start the node steps from its installed trust
//!   file through the newer ones, so an update received from peers survives a restart.
//!
//! Each file except the audit log is rewritten whole: temp file, fsync, rename, fsync of
//! the directory, so a crash leaves the old or the new version and never a torn one.

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
/// The trust file versions the node enforced, in the data dir.
const TRUST_CHAIN_FILE: &str = "trust-chain.json";

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

/// Reads the configured membership list and the one saved in the data dir, and returns
/// the newer one that verifies under `policy`. Without a configured list the saved one
/// applies, because its signatures meet the trust file's membership rule just the same.
pub(crate) fn read_membership(
    configured: Option<&Path>,
    data_dir: &Path,
    policy: &TrustedPolicy,
    now: Timestamp,
) -> Result<Option<VerifiedMembership>, String> {
    let configured = match configured {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|error| format!("cannot read membership list: {error}"))?;
            let signed = SignedMembership::from_toml(&text).map_err(|error| error.to_string())?;
            Some(VerifiedMembership::verify(policy, signed, now).map_err(|error| error.to_string())?)
        }
        None => None,
    };
    let saved = data_dir.join(MEMBERSHIP_FILE);
    let Ok(text) = std::fs::read_to_string(&saved) else {
        return Ok(configured);
    };
    let newer = SignedMembership::from_toml(&text).map_err(|error| error.to_string()).and_then(|signed| match &configured {
        Some(configured) => configured.update(policy, signed, now).map_err(|error| error.to_string()),
        None => VerifiedMembership::verify(policy, signed, now).map_err(|error| error.to_string()),
    });
    match newer {
        Ok(newer) => Ok(Some(newer)),
        Err(error) => {
            warn!(path = %saved.display(), %error, "saved membership list not used");
            Ok(configured)
        }
    }
}

/// Saves `signed`, the latest list received, so a restart keeps it.
pub(crate) fn save_membership(data_dir: &Path, signed: &SignedMembership) -> std::io::Result<()> {
    write_atomically(&data_dir.join(MEMBERSHIP_FILE), signed.to_toml().as_bytes())
}

/// Saves the trust file versions the node enforced, oldest first.
pub(crate) fn save_trust_chain(data_dir: &Path, chain: &[SignedPolicy]) -> std::io::Result<()> {
    let text = serde_json::to_string_pretty(chain).map_err(std::io::Error::other)?;
    write_atomically(&data_dir.join(TRUST_CHAIN_FILE), text.as_bytes())
}

/// Reads the saved trust file versions; none when the node never took an update.
pub(crate) fn read_trust_chain(data_dir: &Path) -> Result<Vec<SignedPolicy>, String> {
    let path = data_dir.join(TRUST_CHAIN_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text).map_err(|error| format!("invalid {}: {error}", path.display())),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(error) => Err(format!("cannot read {}: {error}", path.display())),
    }
}

/// Replaces `path` with `bytes` so that a crash leaves either the old or the new file.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut temp_name = path.file_name().unwrap_or_default().to_os_string();
    temp_name.push(".tmp");
    let temp = path.with_file_name(temp_name);
    let mut file = std::fs::File::create(&temp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
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
        write_atomically(&self.documents, text.as_bytes())
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
