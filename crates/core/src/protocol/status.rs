//! A serializable snapshot of a node, for the control API and the simulator.

use serde::Serialize;

use super::transfer::{TransferState, TransferStats};
use super::{ApprovalReport, Node, SiteRollout, WaveStatus};
use crate::governance::RolloutState;
use crate::time::Timestamp;
use crate::wire::Role;

/// A node's peers and patches at one instant.
#[derive(Clone, Debug, Serialize)]
pub struct NodeStatus {
    /// The node's site.
    pub site: String,
    /// The node's role.
    pub role: Role,
    /// Connected peers, by id.
    pub peers: Vec<PeerStatus>,
    /// Known patch versions, oldest key first.
    pub patches: Vec<PatchStatus>,
    /// Versions a verified order recalled, as `id@version`; none are held.
    pub recalled: Vec<String>,
    /// The format 2 trust file version the node enforces; none with format 1.
    pub trust_version: Option<u64>,
    /// The mesh-wide view: per site and patch version, the totals of the latest signed
    /// status reports this node has stored, its own included.
    pub mesh: Vec<SiteRollout>,
}

/// One connected peer.
#[derive(Clone, Debug, Serialize)]
pub struct PeerStatus {
    /// The driver's peer id.
    pub peer: String,
    /// The peer's site, once its `Hello` arrived.
    pub site: Option<String>,
    /// The peer's role, once its `Hello` arrived.
    pub role: Option<Role>,
    /// Chunk requests in flight to it.
    pub requests_in_flight: u32,
    /// Chunk payload bytes received from it.
    pub bytes_received: u64,
    /// Chunk payload bytes served to it.
    pub bytes_sent: u64,
    /// Invalid data it sent.
    pub strikes: u32,
}

/// One patch version.
#[derive(Clone, Debug, Serialize)]
pub struct PatchStatus {
    /// The patch series.
    pub patch_id: String,
    /// The version.
    pub version: u64,
    /// The transfer state.
    pub state: TransferState,
    /// Chunks verified and stored.
    pub chunks_verified: u32,
    /// Chunks in the patch.
    pub chunk_count: u32,
    /// Total patch size in bytes.
    pub total_bytes: u64,
    /// Byte counts by source.
    pub stats: TransferStats,
    /// Seconds from acceptance to completion, once complete.
    pub completion_s: Option<f64>,
    /// When the first chunk fetched from a peer was stored, in microseconds since the
    /// Unix epoch.
    pub first_chunk_at_us: Option<u64>,
    /// When the patch completed, in microseconds since the Unix epoch.
    pub completed_at_us: Option<u64>,
    /// The approvals held and still missing, with a format 2 trust file.
    pub approvals: Option<ApprovalReport>,
    /// `active` or `paused` by an order.
    pub rollout: &'static str,
    /// The node's rollout wave, for a manifest with a plan on an office node.
    pub wave: Option<WaveStatus>,
}

pub(super) fn snapshot(node: &Node, now: Timestamp) -> NodeStatus {
    let mut peers = node
        .peers
        .iter()
        .map(|(id, peer)| PeerStatus {
            peer: id.to_string(),
            site: peer.hello.as_ref().map(|hello| hello.site.clone()),
            role: peer.hello.as_ref().map(|hello| hello.role),
            requests_in_flight: peer.in_flight,
            bytes_received: peer.bytes_received,
            bytes_sent: peer.bytes_sent,
            strikes: peer.strikes,
        })
        .collect::<Vec<_>>();
    // The peer map is in id order, which is not alphabetical, so sort by name for people.
    peers.sort_by(|a, b| a.peer.cmp(&b.peer));
    let patches = node
        .transfers
        .iter()
        .map(|(key, transfer)| PatchStatus {
            patch_id: key.id.to_string(),
            version: key.version,
            state: transfer.state,
            chunks_verified: transfer.have.count(),
            chunk_count: transfer.chunk_count(),
            total_bytes: transfer.announcement.header.total_bytes,
            stats: transfer.stats,
            completion_s: transfer
                .completed_at
                .map(|at| at.saturating_duration_since(transfer.accepted_at).as_secs_f64()),
            first_chunk_at_us: transfer.first_chunk_at.map(Timestamp::as_micros),
            completed_at_us: transfer.completed_at.map(Timestamp::as_micros),
            approvals: node.approval_report(key, now),
            rollout: match node.rollout_state(key) {
                RolloutState::Active => "active",
                RolloutState::Paused { .. } => "paused",
                RolloutState::Recalled { .. } => "recalled",
            },
            wave: node.wave_status(key),
        })
        .collect();
    let recalled = node.recalled().iter().map(ToString::to_string).collect();
    let trust_version = node.policy().map(|policy| policy.policy().version);
    NodeStatus {
        site: node.config.site.clone(),
        role: node.config.role,
        peers,
        patches,
        recalled,
        trust_version,
        mesh: node.mesh_view(now),
    }
}
