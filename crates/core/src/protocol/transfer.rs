//! The state of one patch version on one node.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use serde::Serialize;

use super::RequestId;
use super::waves::WaveGate;
use crate::bitfield::Bitfield;
use crate::ids::PeerId;
use crate::manifest::{Announcement, Manifest};
use crate::time::Timestamp;

/// Where a patch version stands on a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TransferState {
    /// The announcement is trusted; the body (file list and chunk hashes) is being fetched.
    FetchingBody,
    /// Chunks are being fetched.
    Downloading,
    /// Every chunk is verified and stored; the driver is assembling the files.
    Assembling,
    /// The files are assembled and verified.
    Complete,
}

/// Chunk payload byte counts for one patch version.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TransferStats {
    /// Received from the origin.
    pub bytes_from_origin: u64,
    /// Received from other peers.
    pub bytes_from_peers: u64,
    /// The part of `bytes_from_peers` received from peers at this node's own site.
    pub bytes_from_same_site: u64,
    /// Served to peers.
    pub bytes_served: u64,
    /// Chunks that failed verification.
    pub corrupt_chunks: u64,
}

#[derive(Debug)]
pub(crate) struct Transfer {
    pub(crate) announcement: Announcement,
    pub(crate) manifest: Option<Arc<Manifest>>,
    pub(crate) state: TransferState,
    /// Verified chunks; empty until the body arrives.
    pub(crate) have: Bitfield,
    /// Chunks requested and not yet answered, with the request that carries each.
    pub(crate) in_flight: BTreeMap<u32, RequestId>,
    /// Chunks in flight that also have an endgame request to a second peer, with it.
    pub(crate) endgame: BTreeMap<u32, RequestId>,
    /// Chunks whose stall the endgame has already examined, so its timer does not fire
    /// again for them.
    pub(crate) endgame_checked: BTreeSet<u32>,
    /// For each chunk, how many connected non-origin peers advertise it. Rarest-first
    /// picks from the lowest counts.
    pub(crate) availability: Vec<u32>,
    /// The body request in flight, if any.
    pub(crate) body_request: Option<RequestId>,
    /// Peers a body request already failed with, so the next try goes elsewhere.
    pub(crate) body_failed_from: BTreeSet<PeerId>,
    /// Chunks verified since the last `Have` went out.
    pub(crate) unannounced: Vec<u32>,
    /// No chunk requests before this instant, after a local store error.
    pub(crate) paused_until: Option<Timestamp>,
    /// When to ask the driver again to assemble the files, after a failed assembly.
    pub(crate) assemble_retry_at: Option<Timestamp>,
    pub(crate) stats: TransferStats,
    /// On an origin with an egress budget: the chunks it has sent, each with the last
    /// peer it went to.
    pub(crate) origin_sent: HashMap<u32, PeerId>,
    /// Payload bytes of the chunks not in `origin_sent`.
    pub(crate) origin_unsent_bytes: u64,
    /// Chunks the origin declined for its budget; not asked of it again before
    /// `origin_retry_at`.
    pub(crate) origin_declined: BTreeSet<u32>,
    pub(crate) origin_retry_at: Option<Timestamp>,
    /// The time at which this node stops waiting for its site neighbours, set when a
    /// scheduling pass leaves no chunk request in flight while chunks are missing. It is
    /// `None` while a request is out. See `SITE_SHARE_WAIT`.
    pub(crate) share_wait_until: Option<Timestamp>,
    /// Whether that wait has run out: the node fetches any chunk from other sites, not
    /// only its site share, for the rest of the transfer.
    pub(crate) share_dropped: bool,
    pub(crate) accepted_at: Timestamp,
    /// When the first chunk fetched from a peer was stored; shows when a wave started.
    pub(crate) first_chunk_at: Option<Timestamp>,
    pub(crate) completed_at: Option<Timestamp>,
    /// The wave gate of an office node for a manifest with a rollout plan; `None` when
    /// nothing gates fetching (no plan, or the origin).
    pub(crate) gate: Option<WaveGate>,
    /// The last assembly failure, cleared when an assembly succeeds; status reports
    /// carry it so other nodes count the failure against this node's wave.
    pub(crate) last_error: Option<String>,
    /// The reason the driver's hook for the verified version failed (the install step,
    /// say). It is kept for good: the version stays verified and served, but its status
    /// reports count it failed, so later waves stay closed.
    pub(crate) hook_failure: Option<String>,
    /// The node's trust epoch when this announcement's signatures were checked, if they
    /// were on receipt: an identical copy under the same epoch needs no second check.
    pub(crate) verified_epoch: Option<u64>,
}

impl Transfer {
    pub(crate) fn new(announcement: Announcement, now: Timestamp) -> Self {
        Transfer {
            origin_unsent_bytes: announcement.header.total_bytes,
            announcement,
            manifest: None,
            state: TransferState::FetchingBody,
            have: Bitfield::new(0),
            in_flight: BTreeMap::new(),
            endgame: BTreeMap::new(),
            endgame_checked: BTreeSet::new(),
            availability: Vec::new(),
            body_request: None,
            body_failed_from: BTreeSet::new(),
            unannounced: Vec::new(),
            paused_until: None,
            assemble_retry_at: None,
            stats: TransferStats::default(),
            origin_sent: HashMap::new(),
            origin_declined: BTreeSet::new(),
            origin_retry_at: None,
            share_wait_until: None,
            share_dropped: false,
            accepted_at: now,
            first_chunk_at: None,
            completed_at: None,
            gate: None,
            last_error: None,
            hook_failure: None,
            verified_epoch: None,
        }
    }

    pub(crate) fn chunk_count(&self) -> u32 {
        self.announcement.header.chunk_count
    }
}
