//! The origin's egress budget.
//!
//! An operator who must protect the origin's uplink gives it a budget of chunk payload
//! bytes per patch version, in copies of the patch. Within the budget the origin serves
//! as usual. Past it, the origin declines a chunk that a live peer other than the
//! requester already holds, or is receiving from the origin, so peers spread it. It still
//! serves a chunk that no live peer holds, because refusing would stall the rollout, and
//! reports each such overrun.
//!
//! The budget keeps a reserve for chunks the origin has not sent yet: a repeat is served
//! from the budget only while the remainder still covers every unsent chunk once. With a
//! budget of one copy the origin therefore sends each chunk once, unless its only
//! recipient leaves before passing it on.

use tracing::debug;

use super::{Event, Node};
use crate::ids::{ChunkId, PeerId};

/// The origin's verdict on one chunk request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum BudgetVerdict {
    /// Serve it within the budget.
    Serve,
    /// Serve it, over budget, because no live peer can.
    ServeOver {
        /// Bytes past the budget after this chunk.
        over: u64,
    },
    /// Decline, because peers hold it.
    Decline,
}

impl Node {
    /// Decides whether the origin serves `chunk` to `requester`, and records the send.
    ///
    /// Nodes without a budget always serve.
    pub(super) fn check_origin_budget(&mut self, requester: &PeerId, chunk: &ChunkId) -> BudgetVerdict {
        let Some(copies) = self.config.origin_budget else {
            return BudgetVerdict::Serve;
        };
        let Some(transfer) = self.transfers.get(&chunk.patch) else {
            return BudgetVerdict::Serve;
        };
        let header = &transfer.announcement.header;
        let budget = (copies * header.total_bytes as f64).round() as u64;
        let len = u64::from(header.chunk_len(chunk.index));
        let spent = transfer.stats.bytes_served;
        let remaining = budget.saturating_sub(spent);
        let first_send = !transfer.origin_sent.contains_key(&chunk.index);
        let unsent = transfer.origin_unsent_bytes;
        let verdict = if first_send {
            // Every chunk has to leave the origin once; a budget under one copy is
            // overrun here, and reported.
            if remaining >= len { BudgetVerdict::Serve } else { BudgetVerdict::ServeOver { over: spent + len - budget } }
        } else if remaining.saturating_sub(unsent) >= len {
            BudgetVerdict::Serve
        } else if self.held_elsewhere(requester, chunk) {
            BudgetVerdict::Decline
        } else {
            let over = (spent + len).saturating_sub(budget);
            if over == 0 { BudgetVerdict::Serve } else { BudgetVerdict::ServeOver { over } }
        };
        match verdict {
            BudgetVerdict::Decline => {
                debug!(peer = %requester, %chunk, "origin budget spent and peers hold the chunk: declining");
            }
            BudgetVerdict::ServeOver { over } => {
                self.events.push_back(Event::OriginBudgetExceeded { chunk: chunk.clone(), over_bytes: over });
            }
            BudgetVerdict::Serve => {}
        }
        if verdict != BudgetVerdict::Decline {
            if let Some(transfer) = self.transfers.get_mut(&chunk.patch) {
                if transfer.origin_sent.insert(chunk.index, requester.clone()).is_none() {
                    transfer.origin_unsent_bytes = transfer.origin_unsent_bytes.saturating_sub(len);
                }
            }
        }
        verdict
    }

    /// Checks whether a live peer other than `requester` advertises `chunk` or was the
    /// last to be sent it by this origin.
    fn held_elsewhere(&self, requester: &PeerId, chunk: &ChunkId) -> bool {
        let Some(transfer) = self.transfers.get(&chunk.patch) else {
            return false;
        };
        let in_transit = transfer
            .origin_sent
            .get(&chunk.index)
            .is_some_and(|recipient| recipient != requester && self.peers.contains_key(recipient));
        in_transit
            || self.peers.iter().any(|(id, peer)| {
                id != requester
                    && !peer.is_origin()
                    && !self.banned.contains_key(id)
                    && peer.have.get(&chunk.patch).is_some_and(|bits| bits.contains(chunk.index))
            })
    }
}
