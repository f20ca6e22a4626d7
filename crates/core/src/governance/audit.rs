//! Audit log records: one JSON object per line, appended, never rewritten.
//!
//! Each record carries the BLAKE3 hash of the previous line's bytes (without its newline)
//! and a sequence number, so deleting, reordering or editing a line breaks the chain at
//! that point ([`verify_audit_chain`]). This shows tampering after the fact; it does not
//! stop someone with write access from rewriting the whole file, which is why a node
//! should also ship its log elsewhere.

use serde::{Deserialize, Serialize};

use super::Role;
use super::recall::ControlAction;
use crate::ids::PatchKey;
use crate::keys::PublicKey;
use crate::manifest::ContentHash;

/// The audit record format.
pub const AUDIT_FORMAT: u32 = 1;

/// One line of the audit log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditRecord {
    /// [`AUDIT_FORMAT`].
    pub format: u32,
    /// 0 for the first line, then +1 per line.
    pub seq: u64,
    /// When the node recorded the event, Unix seconds.
    pub time: u64,
    /// BLAKE3 of the previous line's bytes; all zeros on the first line.
    pub prev: ContentHash,
    /// What happened.
    pub event: AuditEvent,
}

/// What an audit record reports. Keys are listed as the public keys whose signatures
/// were counted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum AuditEvent {
    /// A manifest was accepted for rollout.
    Publish {
        /// The patch version.
        patch: PatchKey,
        /// Its digest.
        digest: ContentHash,
        /// The keys counted by the approval rule.
        approvers: Vec<PublicKey>,
    },
    /// An approval was received and counted.
    Approval {
        /// The patch version.
        patch: PatchKey,
        /// The digest approved.
        digest: ContentHash,
        /// The approving key.
        key: PublicKey,
        /// Its role.
        role: Role,
    },
    /// A recall, pause or resume took effect.
    Control {
        /// Which.
        action: ControlAction,
        /// The patch version.
        patch: PatchKey,
        /// The order's reason.
        reason: String,
        /// When the order was issued, Unix seconds.
        issued: u64,
        /// The keys counted.
        signers: Vec<PublicKey>,
    },
    /// A new membership list took effect.
    MembershipChange {
        /// The version replaced, if any.
        from_version: Option<u64>,
        /// The new version.
        to_version: u64,
        /// Peer ids added.
        added: Vec<String>,
        /// Peer ids removed.
        removed: Vec<String>,
    },
    /// A new trust file version took effect.
    TrustChange {
        /// The version replaced, if any.
        from_version: Option<u64>,
        /// The new version.
        to_version: u64,
        /// Keys newly revoked.
        revoked: Vec<PublicKey>,
    },
}

/// An audit log that does not parse or whose chain is broken.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// A line that is not a record.
    #[error("audit log line {line}: {reason}")]
    Line {
        /// The line number, from 1.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A record whose `prev` or `seq` does not follow the line before.
    #[error("audit log chain broken at line {line}: {reason}; a line was edited, removed or reordered")]
    Chain {
        /// The line number, from 1.
        line: usize,
        /// What does not match.
        reason: String,
    },
}

impl AuditRecord {
    /// The first record of a log.
    pub fn first(time: u64, event: AuditEvent) -> Self {
        AuditRecord { format: AUDIT_FORMAT, seq: 0, time, prev: ContentHash([0; 32]), event }
    }

    /// The record that follows this one.
    pub fn next(&self, time: u64, event: AuditEvent) -> Self {
        AuditRecord { format: AUDIT_FORMAT, seq: self.seq + 1, time, prev: ContentHash::of(self.to_json().as_bytes()), event }
    }

    /// The record as one line of JSON, without the newline.
    pub fn to_json(&self) -> String {
        // Every field serialises infallibly.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The line to append, with its newline.
    pub fn to_line(&self) -> String {
        format!("{}\n", self.to_json())
    }
}

/// Parses a whole log; empty lines are skipped.
pub fn parse_audit_log(text: &str) -> Result<Vec<AuditRecord>, AuditError> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(index, line)| {
            serde_json::from_str(line).map_err(|error| AuditError::Line { line: index + 1, reason: error.to_string() })
        })
        .collect()
}

/// Parses a log and checks that every line follows the one before.
pub fn verify_audit_chain(text: &str) -> Result<Vec<AuditRecord>, AuditError> {
    let mut records = Vec::new();
    let mut previous: Option<(&str, u64)> = None;
    for (index, line) in text.lines().enumerate().filter(|(_, line)| !line.trim().is_empty()) {
        let number = index + 1;
        let record: AuditRecord =
            serde_json::from_str(line).map_err(|error| AuditError::Line { line: number, reason: error.to_string() })?;
        let (expected_prev, expected_seq) = match previous {
            None => (ContentHash([0; 32]), 0),
            Some((line, seq)) => (ContentHash::of(line.as_bytes()), seq + 1),
        };
        if record.prev != expected_prev || record.seq != expected_seq {
            return Err(AuditError::Chain {
                line: number,
                reason: format!("expected seq {expected_seq} and prev {expected_prev}, found seq {} and prev {}", record.seq, record.prev),
            });
        }
        previous = Some((line, record.seq));
        records.push(record);
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::PatchId;

    fn log() -> String {
        let patch = PatchKey { id: PatchId::new("KB1").expect("id"), version: 3 };
        let first = AuditRecord::first(100, AuditEvent::TrustChange { from_version: None, to_version: 1, revoked: vec![] });
        let second = first.next(
            200,
            AuditEvent::Control { action: ControlAction::Recall, patch, reason: "bricks printers".into(), issued: 190, signers: vec![] },
        );
        let third = second.next(300, AuditEvent::MembershipChange { from_version: Some(1), to_version: 2, added: vec!["12D3KooWx".into()], removed: vec![] });
        [first, second, third].iter().map(AuditRecord::to_line).collect()
    }

    #[test]
    fn chain_verifies_and_round_trips() {
        let records = verify_audit_chain(&log()).expect("chain");
        assert_eq!(records.len(), 3);
        assert_eq!(parse_audit_log(&log()).expect("parse"), records);
        assert!(log().lines().nth(1).expect("line").contains("\"kind\":\"control\""));
    }

    #[test]
    fn removed_or_edited_line_breaks_chain() {
        let text = log();
        let lines: Vec<&str> = text.lines().collect();
        let without_middle = format!("{}\n{}\n", lines[0], lines[2]);
        assert!(matches!(verify_audit_chain(&without_middle), Err(AuditError::Chain { line: 2, .. })));
        let edited = text.replace("bricks printers", "routine");
        assert!(matches!(verify_audit_chain(&edited), Err(AuditError::Chain { line: 3, .. })));
    }
}
