//! The endgame: a second source for the last chunks when their first source stalls.
//!
//! Near the end of a transfer every missing chunk is in flight, and one slow peer can
//! hold up completion while faster peers sit idle. Once no more than [`ENDGAME_CHUNKS`]
//! chunks are missing and none is left to request, a chunk whose request has stalled is
//! asked of a second peer that advertises it, the fastest by measured rate. A request
//! has stalled once it has taken more than [`OVERDUE_FACTOR`] times what its peer's
//! measured rate predicts and at least [`MIN_STALL`], or [`UNMEASURED_STALL`] from a
//! peer not yet measured. Whichever answer arrives first is stored and the other is
//! dropped as a duplicate. Each chunk gets at most one second request, so the endgame
//! costs at most [`ENDGAME_CHUNKS`] extra chunks per transfer, and only when a source
//! stalls; the request deadline, much later, still rests the peer.

use std::time::Duration;

use super::peer::Peer;
use super::transfer::{Transfer, TransferState};
use super::{Node, Pending, SourcePolicy};
use crate::ids::{ChunkId, PatchKey, PeerId};
use crate::time::Timestamp;

/// The most missing chunks at which the endgame starts.
const ENDGAME_CHUNKS: usize = 4;
/// How many times its predicted duration a request may take before it counts as
/// stalled.
const OVERDUE_FACTOR: f64 = 3.0;
/// The shortest time after which a request counts as stalled, in seconds, so that
/// noise in fast transfers never triggers a duplicate.
const MIN_STALL: f64 = 1.0;
/// When a request to a peer whose rate is not yet measured counts as stalled, in
/// seconds.
const UNMEASURED_STALL: f64 = 3.0;

/// Whether `transfer` is downloading, misses at most [`ENDGAME_CHUNKS`] chunks, and has
/// every one of them in flight. A stored chunk leaves `in_flight` when it is stored,
/// whichever request delivered it.
fn in_endgame(transfer: &Transfer) -> bool {
    // Cheap tests first: drivers ask after every input, and counting the chunks held
    // reads the whole bitfield.
    let in_flight = transfer.in_flight.len();
    if transfer.state != TransferState::Downloading || in_flight == 0 || in_flight > ENDGAME_CHUNKS {
        return false;
    }
    let missing = transfer.chunk_count() as usize - transfer.have.count() as usize;
    missing == in_flight
}

/// Seconds after which a request for `len` bytes to `peer` counts as stalled.
fn stall_after(peer: &Peer, len: u32) -> f64 {
    match peer.predicted_seconds(len, peer.in_flight) {
        Some(predicted) => (OVERDUE_FACTOR * predicted).max(MIN_STALL),
        None => UNMEASURED_STALL,
    }
}

impl Node {
    /// Sends second requests for overdue chunks of transfers in their endgame.
    pub(super) fn run_endgame(&mut self, now: Timestamp) {
        if self.config.source_policy != SourcePolicy::Mesh {
            return;
        }
        let patches: Vec<PatchKey> = self
            .transfers
            .iter()
            .filter(|(_, t)| t.paused_until.is_none_or(|until| until <= now) && in_endgame(t))
            .map(|(patch, _)| patch.clone())
            .collect();
        for patch in patches {
            for (index, first) in self.stalled_chunks(now, &patch) {
                // Checked once by the timer; later inputs still look for a second peer.
                if let Some(transfer) = self.transfers.get_mut(&patch) {
                    transfer.endgame_checked.insert(index);
                }
                if let Some(second) = self.second_source(&patch, index, &first) {
                    self.send_second_request(now, second, ChunkId { patch: patch.clone(), index });
                }
            }
        }
    }

    /// The earliest instant at which an in-flight request of a transfer in its endgame
    /// stalls, so the driver wakes the node then even if no input arrives.
    pub(super) fn endgame_timeout(&self) -> Option<Timestamp> {
        if self.config.source_policy != SourcePolicy::Mesh {
            return None;
        }
        let mut earliest: Option<Timestamp> = None;
        for transfer in self.transfers.values().filter(|transfer| in_endgame(transfer)) {
            for (&index, request) in &transfer.in_flight {
                if transfer.endgame.contains_key(&index) || transfer.endgame_checked.contains(&index) {
                    continue;
                }
                let Some(Pending::Chunk { peer, started, .. }) = self.requests.get(request) else {
                    continue;
                };
                let Some(state) = self.peers.get(peer) else {
                    continue;
                };
                let len = transfer.announcement.header.chunk_len(index);
                let at = started.saturating_add(Duration::from_secs_f64(stall_after(state, len)));
                earliest = Some(earliest.map_or(at, |earliest| earliest.min(at)));
            }
        }
        earliest
    }

    /// The in-flight chunks of `patch` without a second request whose request has
    /// stalled, each with the peer it went to.
    fn stalled_chunks(&self, now: Timestamp, patch: &PatchKey) -> Vec<(u32, PeerId)> {
        let Some(transfer) = self.transfers.get(patch) else {
            return Vec::new();
        };
        let mut overdue = Vec::new();
        for (&index, request) in &transfer.in_flight {
            if transfer.endgame.contains_key(&index) {
                continue;
            }
            let Some(Pending::Chunk { peer, started, .. }) = self.requests.get(request) else {
                continue;
            };
            let Some(state) = self.peers.get(peer) else {
                continue;
            };
            let len = transfer.announcement.header.chunk_len(index);
            let elapsed = now.saturating_duration_since(*started).as_secs_f64();
            // The timer fires at the stall instant, rounded to microseconds: count it as
            // stalled then, or the timer would fire again at the same instant.
            if elapsed + 1e-3 >= stall_after(state, len) {
                overdue.push((index, peer.clone()));
            }
        }
        overdue
    }

    /// The usable non-origin peer other than `first`, advertising chunk `index` with a
    /// free slot, that should deliver it soonest; peers not yet measured come last.
    fn second_source(&self, patch: &PatchKey, index: u32, first: &PeerId) -> Option<PeerId> {
        let transfer = self.transfers.get(patch)?;
        let chunk_size = transfer.announcement.header.chunk_size;
        let len = transfer.announcement.header.chunk_len(index);
        let mut best: Option<(f64, &PeerId)> = None;
        for (id, peer) in &self.peers {
            if id == first || peer.is_origin() || self.banned.contains_key(id) || peer.cooling_down {
                continue;
            }
            if peer.in_flight >= peer.pipeline_depth(self.config.max_requests_per_peer, chunk_size) {
                continue;
            }
            if !peer.have.get(patch).is_some_and(|bits| bits.contains(index)) {
                continue;
            }
            let predicted = peer.predicted_seconds(len, peer.in_flight + 1).unwrap_or(f64::MAX);
            if best.is_none_or(|(time, _)| predicted < time) {
                best = Some((predicted, id));
            }
        }
        best.map(|(_, id)| id.clone())
    }

    fn send_second_request(&mut self, now: Timestamp, peer: PeerId, chunk: ChunkId) {
        tracing::debug!(%peer, %chunk, "endgame: requesting an overdue chunk from a second peer");
        let (patch, index) = (chunk.patch.clone(), chunk.index);
        let request = self.send_chunk_request(now, peer, chunk);
        if let Some(transfer) = self.transfers.get_mut(&patch) {
            transfer.endgame.insert(index, request);
        }
    }
}
