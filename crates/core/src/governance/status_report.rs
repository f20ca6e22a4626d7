//! Signed status reports: one node's account of its own rollouts.
//!
//! Each node signs a small report with its identity key (the key behind its libp2p peer
//! id) and the mesh floods it. Nodes count the reports of a wave's sites to decide when
//! the next wave opens, and operators read the per-site totals in `patchmesh status`.
//!
//! A report binds three things: the peer id it names, the public key it carries (the id
//! must be the key's libp2p peer id, [`PublicKey::peer_id`]) and the strict ed25519
//! signature by that key. Membership checks (is the node listed, at this site) need the
//! node's list and happen in the protocol core.
//!
//! `sequence` orders one node's reports: a receiver keeps a report only if its sequence is
//! above the one held. Nodes use their clock in microseconds (or the previous sequence
//! plus one, if larger), so a restarted node's reports still win without any stored state.

use serde::{Deserialize, Serialize};

use super::check_name;
use crate::encoding::CanonicalWriter;
use crate::ids::PatchKey;
use crate::keys::{PublicKey, SecretKey};
use crate::manifest::SignatureBytes;
use crate::time::Timestamp;
use crate::wire::Role;

/// Domain tag of the bytes a status report's signature covers.
pub const STATUS_DOMAIN: &str = "patchmesh/status/1";
/// The maximum number of patch versions in one report; a node stores a handful at a time.
pub const MAX_REPORT_PATCHES: usize = 32;
/// The maximum length of an error text in a report, in bytes.
pub const MAX_REPORT_ERROR_BYTES: usize = 200;
/// The maximum length of a peer id in a report, in bytes; libp2p ed25519 ids are 52.
pub const MAX_REPORT_PEER_BYTES: usize = 128;
/// How far in the future a report's issue time may lie, in seconds, before it is refused
/// as a clock error or an attempt to pin a sequence far ahead.
pub const MAX_REPORT_SKEW_SECS: u64 = 300;

/// The state of one patch version on the reporting node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReportState {
    /// Waiting for the approval rule to be met.
    WaitingApproval,
    /// Approved, but the node's rollout wave is not open.
    WaitingForWave,
    /// Fetching the body or chunks, or assembling.
    Fetching,
    /// Every file assembled and verified.
    Verified,
    /// Assembly or verification failed; `error` gives the reason.
    Failed,
    /// Stopped by a pause order.
    Paused,
    /// Stopped by a recall order.
    Recalled,
}

impl ReportState {
    fn tag(self) -> u8 {
        match self {
            ReportState::WaitingApproval => 1,
            ReportState::WaitingForWave => 2,
            ReportState::Fetching => 3,
            ReportState::Verified => 4,
            ReportState::Failed => 5,
            ReportState::Paused => 6,
            ReportState::Recalled => 7,
        }
    }
}

/// Chunk payload bytes a node received for one patch version, by source.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceBytes {
    /// From the origin.
    pub origin: u64,
    /// From peers at the node's own site.
    pub same_site: u64,
    /// From peers at other sites.
    pub other_sites: u64,
}

/// One patch version in a report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatchReport {
    /// The patch version.
    pub patch: PatchKey,
    /// Its state.
    pub state: ReportState,
    /// Chunks verified and stored.
    pub chunks_verified: u32,
    /// Chunks in the patch.
    pub chunk_count: u32,
    /// Bytes received, by source.
    pub bytes: SourceBytes,
    /// The last failure, at most [`MAX_REPORT_ERROR_BYTES`]; set with `state` failed.
    pub error: Option<String>,
}

/// A node's account of itself, before signing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    /// The node's libp2p peer id; must be `key.peer_id()`.
    pub node: String,
    /// The node's identity public key.
    pub key: PublicKey,
    /// The node's site.
    pub site: String,
    /// Origin or office.
    pub role: Role,
    /// Orders this node's reports; higher wins.
    pub sequence: u64,
    /// When the report was made, Unix seconds.
    pub issued: u64,
    /// Patch versions the node holds, at most [`MAX_REPORT_PATCHES`].
    pub patches: Vec<PatchReport>,
}

/// A report and its signature by the node's identity key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedStatusReport {
    /// The signed content.
    pub report: StatusReport,
    /// Signature over [`StatusReport::canonical_bytes`] by `report.key`.
    pub signature: SignatureBytes,
}

/// A status report that is refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum StatusReportError {
    /// A field past its limit or malformed.
    #[error("status report from {node:?} is malformed: {reason}")]
    Malformed {
        /// The peer id it names, shortened.
        node: String,
        /// The broken limit.
        reason: String,
    },
    /// The key is not the named node's identity key.
    #[error("status report names node {node} but carries the key of {derived}: a node may only report for itself")]
    KeyMismatch {
        /// The peer id the report names.
        node: String,
        /// The peer id of the key it carries.
        derived: String,
    },
    /// The signature does not verify.
    #[error("status report from {node} has a bad signature")]
    BadSignature {
        /// The peer id the report names.
        node: String,
    },
    /// Issued too far in the future.
    #[error("status report from {node} is dated {issued}, in the future (now {now}, Unix seconds); check that node's clock")]
    FromFuture {
        /// The peer id.
        node: String,
        /// Its issue time.
        issued: u64,
        /// The receiver's time.
        now: u64,
    },
    /// A membership list is in force and does not name the node.
    #[error("status report from {node}, which is not on membership list version {version}")]
    NotMember {
        /// The peer id.
        node: String,
        /// The list's version.
        version: u64,
    },
    /// The node reports a site other than the one the membership list gives it.
    #[error("status report from {node} claims site {claimed:?}, but membership list version {version} puts it at {listed:?}")]
    WrongSite {
        /// The peer id.
        node: String,
        /// The site in the report.
        claimed: String,
        /// The site in the list.
        listed: String,
        /// The list's version.
        version: u64,
    },
    /// The receiver already keeps the most reports it will.
    #[error("status report from {node} dropped: {count} nodes' reports are kept already, the maximum")]
    TooManyNodes {
        /// The peer id.
        node: String,
        /// Reports kept.
        count: usize,
    },
}

impl StatusReport {
    /// Returns the bytes the signature covers.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut writer = CanonicalWriter::with_domain(STATUS_DOMAIN);
        writer.put_str(&self.node);
        writer.put_fixed(self.key.as_bytes());
        writer.put_str(&self.site);
        writer.put_u8(match self.role {
            Role::Origin => 1,
            Role::Office => 2,
        });
        writer.put_u64(self.sequence);
        writer.put_u64(self.issued);
        writer.put_u32(super::len_u32(self.patches.len()));
        for patch in &self.patches {
            writer.put_str(patch.patch.id.as_str());
            writer.put_u64(patch.patch.version);
            writer.put_u8(patch.state.tag());
            writer.put_u32(patch.chunks_verified);
            writer.put_u32(patch.chunk_count);
            writer.put_u64(patch.bytes.origin);
            writer.put_u64(patch.bytes.same_site);
            writer.put_u64(patch.bytes.other_sites);
            match &patch.error {
                None => writer.put_u8(0),
                Some(error) => {
                    writer.put_u8(1);
                    writer.put_str(error);
                }
            }
        }
        writer.finish()
    }

    /// Signs the report with `key`, which should be the key it carries.
    pub fn sign(self, key: &SecretKey) -> SignedStatusReport {
        let signature = SignatureBytes(key.sign(&self.canonical_bytes()));
        SignedStatusReport { report: self, signature }
    }

    fn check_limits(&self) -> Result<(), String> {
        if self.node.is_empty() || self.node.len() > MAX_REPORT_PEER_BYTES || !self.node.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(format!("peer id must be 1 to {MAX_REPORT_PEER_BYTES} base58 characters"));
        }
        check_name("site", &self.site)?;
        if self.patches.len() > MAX_REPORT_PATCHES {
            return Err(format!("{} patch versions, more than the maximum of {MAX_REPORT_PATCHES}", self.patches.len()));
        }
        for patch in &self.patches {
            if patch.error.as_ref().is_some_and(|error| error.len() > MAX_REPORT_ERROR_BYTES) {
                return Err(format!("error text for {} is longer than {MAX_REPORT_ERROR_BYTES} bytes", patch.patch));
            }
            if patch.chunks_verified > patch.chunk_count {
                return Err(format!("{} has {} of {} chunks verified", patch.patch, patch.chunks_verified, patch.chunk_count));
            }
        }
        Ok(())
    }
}

impl SignedStatusReport {
    /// Checks the limits, that the key is the named node's identity and the signature
    /// (strict ed25519), and that the report is not dated past `now` plus
    /// [`MAX_REPORT_SKEW_SECS`].
    pub fn verify(&self, now: Timestamp) -> Result<(), StatusReportError> {
        let report = &self.report;
        let node: String = report.node.chars().take(MAX_REPORT_PEER_BYTES).collect();
        report.check_limits().map_err(|reason| StatusReportError::Malformed { node: node.clone(), reason })?;
        let derived = report.key.peer_id();
        if derived != report.node {
            return Err(StatusReportError::KeyMismatch { node, derived });
        }
        if !report.key.verify(&report.canonical_bytes(), &self.signature.0) {
            return Err(StatusReportError::BadSignature { node });
        }
        if report.issued > now.as_secs().saturating_add(MAX_REPORT_SKEW_SECS) {
            return Err(StatusReportError::FromFuture { node, issued: report.issued, now: now.as_secs() });
        }
        Ok(())
    }
}

/// Cuts `text` to at most [`MAX_REPORT_ERROR_BYTES`] on a character boundary.
pub fn truncate_error(text: &str) -> String {
    let mut end = text.len().min(MAX_REPORT_ERROR_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::PatchId;

    const NOW: Timestamp = Timestamp::from_secs(1_800_000_000);

    fn report(key: &SecretKey) -> StatusReport {
        StatusReport {
            node: key.public().peer_id(),
            key: key.public(),
            site: "branch-1".into(),
            role: Role::Office,
            sequence: 1,
            issued: NOW.as_secs(),
            patches: vec![PatchReport {
                patch: PatchKey { id: PatchId::new("KB1").expect("id"), version: 1 },
                state: ReportState::Fetching,
                chunks_verified: 1,
                chunk_count: 4,
                bytes: SourceBytes::default(),
                error: None,
            }],
        }
    }

    #[test]
    fn signed_report_verifies() {
        let key = SecretKey::from_seed([5; 32]);
        assert_eq!(report(&key).sign(&key).verify(NOW), Ok(()));
    }

    #[test]
    fn altered_report_fails() {
        let key = SecretKey::from_seed([5; 32]);
        let mut signed = report(&key).sign(&key);
        signed.report.patches[0].state = ReportState::Verified;
        assert!(matches!(signed.verify(NOW), Err(StatusReportError::BadSignature { .. })));
    }

    #[test]
    fn key_of_another_node_fails() {
        let (key, other) = (SecretKey::from_seed([5; 32]), SecretKey::from_seed([6; 32]));
        let mut forged = report(&other);
        forged.node = key.public().peer_id();
        assert!(matches!(forged.sign(&other).verify(NOW), Err(StatusReportError::KeyMismatch { .. })));
    }

    #[test]
    fn future_report_fails() {
        let key = SecretKey::from_seed([5; 32]);
        let mut future = report(&key);
        future.issued = NOW.as_secs() + MAX_REPORT_SKEW_SECS + 1;
        assert!(matches!(future.sign(&key).verify(NOW), Err(StatusReportError::FromFuture { .. })));
    }

    #[test]
    fn limits_boundaries() {
        let key = SecretKey::from_seed([5; 32]);
        // (patches, error length, accepted?)
        let table: &[(usize, usize, bool)] =
            &[(0, 0, true), (MAX_REPORT_PATCHES, MAX_REPORT_ERROR_BYTES, true), (MAX_REPORT_PATCHES + 1, 0, false), (1, MAX_REPORT_ERROR_BYTES + 1, false)];
        for &(patches, error_len, accepted) in table {
            let mut big = report(&key);
            let mut entry = big.patches[0].clone();
            entry.error = (error_len > 0).then(|| "e".repeat(error_len));
            big.patches = vec![entry; patches];
            let result = big.sign(&key).verify(NOW);
            assert_eq!(result.is_ok(), accepted, "{patches} patches, error {error_len}: {result:?}");
        }
    }

    #[test]
    fn truncate_keeps_char_boundary() {
        let text = "é".repeat(MAX_REPORT_ERROR_BYTES);
        assert_eq!(truncate_error(&text).len(), MAX_REPORT_ERROR_BYTES);
    }
}
