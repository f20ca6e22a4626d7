//! Choosing which chunk to request from which peer.
//!
//! Each pass fills free request slots, one request at a time:
//!
//! 1. Candidate peers are those that said hello, are allowed by the source policy, and
//!    have a free slot (per peer, and per node towards the origin).
//! 2. Candidates are ranked: peers at the node's own site, then other sites, then the
//!    origin; within a rank, fewer requests in flight first, then a seeded random order.
//! 3. The first candidate that holds a wanted chunk gets a request for the rarest such
//!    chunk (fewest non-origin holders, random among equals). Under the mesh policy the
//!    origin is asked only for chunks that no connected peer holds, which keeps its
//!    uplink for new data.
//! 4. So that nodes do not all ask the origin for the same unheld chunk, each node
//!    prefers its own share of the chunks from the origin: with the node at position `r`
//!    among the `n` non-origin peers it knows (itself included, sorted by peer id), chunk
//!    `i` is in its share when `i % n == r`. Nodes with similar views get disjoint shares,
//!    and the origin sends distinct chunks to distinct nodes.
//!
//! The scan is O(peers × chunks) per request. That is fine for a daemon with tens of
//! peers and for simulations of a few thousand nodes. Peers whose advertised chunks are
//! held already are never scanned: the scan visits only the chunks a peer holds and this
//! node lacks, found a byte at a time.

use super::peer::Peer;
use super::transfer::TransferState;
use super::{Action, Node, Pending, SourcePolicy};
use crate::ids::{ChunkId, PatchKey, PeerId};
use crate::time::Timestamp;
use crate::wire::FetchRequest;

impl Node {
    pub(super) fn schedule_chunks(&mut self, now: Timestamp) {
        let downloading: Vec<PatchKey> = self
            .transfers
            .iter()
            .filter(|(_, t)| t.state == TransferState::Downloading && t.paused_until.is_none_or(|until| until <= now))
            .map(|(patch, _)| patch.clone())
            .collect();
        for patch in downloading {
            while self.requests_in_flight() < self.config.max_requests_total {
                let Some((peer, index)) = self.pick_request(&patch) else {
                    break;
                };
                self.start_chunk_request(now, peer, ChunkId { patch: patch.clone(), index });
            }
        }
    }

    fn requests_in_flight(&self) -> u32 {
        self.peers.values().map(|peer| peer.in_flight).sum()
    }

    fn origin_requests_in_flight(&self) -> u32 {
        self.peers.values().filter(|peer| peer.is_origin()).map(|peer| peer.in_flight).sum()
    }

    /// Ranks a peer as a source; `None` if the policy or its free slots rule it out.
    fn source_rank(&self, peer: &Peer) -> Option<u8> {
        let hello = peer.hello.as_ref()?;
        let same_site = hello.site == self.config.site;
        let allowed = match self.config.source_policy {
            SourcePolicy::Mesh => true,
            SourcePolicy::Central => peer.is_origin(),
            SourcePolicy::OfficeCache if self.config.site_cache => peer.is_origin(),
            SourcePolicy::OfficeCache => same_site && peer.is_site_cache(),
        };
        if !allowed || peer.in_flight >= self.config.max_requests_per_peer || peer.cooling_down {
            return None;
        }
        if peer.is_origin() {
            if self.origin_requests_in_flight() >= self.config.max_requests_to_origin {
                return None;
            }
            return Some(2);
        }
        Some(if same_site { 0 } else { 1 })
    }

    fn pick_request(&mut self, patch: &PatchKey) -> Option<(PeerId, u32)> {
        let mut candidates: Vec<(u8, u32, u64, &PeerId, &Peer)> = Vec::new();
        for (id, peer) in &self.peers {
            if self.banned.contains_key(id) {
                continue;
            }
            let holds_patch = peer.is_origin() || peer.have.contains_key(patch);
            if !holds_patch {
                continue;
            }
            if let Some(rank) = self.source_rank(peer) {
                candidates.push((rank, peer.in_flight, 0, id, peer));
            }
        }
        for candidate in &mut candidates {
            candidate.2 = self.rng.next_u64();
        }
        // Peer ids are unique, so no two candidates compare equal.
        candidates.sort_unstable_by(|a, b| (a.0, a.1, a.2, a.3).cmp(&(b.0, b.1, b.2, b.3)));

        let transfer = self.transfers.get(patch)?;
        let only_unheld = self.config.source_policy == SourcePolicy::Mesh;
        // Both are needed only for the origin, usually the last candidate, so they are
        // computed when it is reached.
        let mut origin_share: Option<(u32, u32)> = None;
        // Peers that can serve now: a resting or banned peer's chunks do not keep a chunk
        // away from the origin, or a frozen peer holding everything would stall the node.
        let mut usable: Option<Vec<&crate::Bitfield>> = None;
        for (_, _, _, id, peer) in candidates {
            let origin = peer.is_origin();
            let advertised = peer.have.get(patch);
            let chunk_count = transfer.chunk_count();
            let start = self.rng.below(u64::from(chunk_count.max(1))) as u32;
            // Only chunks the peer has and this node lacks are worth a look; listing
            // them bytewise first saves testing every index against every peer. The
            // origin has every chunk, so its indices need no list.
            let listed: Vec<u32> = if origin {
                Vec::new()
            } else {
                match advertised {
                    Some(bits) => bits.difference(&transfer.have),
                    None => continue,
                }
            };
            // Visit them from `start` and wrap around, as a full scan from there would.
            // Exactly one of the two sources is non-empty.
            let (all_from_start, all_before_start) = if origin { (start..chunk_count, 0..start) } else { (0..0, 0..0) };
            let split = listed.partition_point(|&index| index < start);
            let order = all_from_start
                .chain(all_before_start)
                .chain(listed[split..].iter().chain(&listed[..split]).copied());
            let (share, shares) = if origin {
                *origin_share.get_or_insert_with(|| self.origin_share())
            } else {
                (0, 1)
            };
            // Lower is better: (rarity, outside this node's origin share).
            let mut best: Option<(u32, (u32, bool))> = None;
            for index in order {
                if transfer.have.contains(index) || transfer.in_flight.contains_key(&index) {
                    continue;
                }
                let holds = origin || advertised.is_some_and(|bits| bits.contains(index));
                if !holds {
                    continue;
                }
                let rarity = transfer.availability[index as usize];
                if origin && only_unheld && rarity > 0 {
                    let usable = usable.get_or_insert_with(|| {
                        self.peers
                            .iter()
                            .filter(|(id, peer)| {
                                !peer.is_origin()
                                    && peer.hello.is_some()
                                    && !peer.cooling_down
                                    && !self.banned.contains_key(*id)
                            })
                            .filter_map(|(_, peer)| peer.have.get(patch))
                            .collect()
                    });
                    if usable.iter().any(|bits| bits.contains(index)) {
                        continue;
                    }
                }
                let outside_share = origin && index % shares != share;
                let score = (rarity, outside_share);
                if best.is_none_or(|(_, best_score)| score < best_score) {
                    best = Some((index, score));
                    // Nothing can beat a chunk only this peer advertises (or, from the
                    // origin, one nobody holds in this node's share): stop scanning.
                    if score == (0, false) || (!origin && rarity <= 1) {
                        break;
                    }
                }
            }
            if let Some((index, _)) = best {
                return Some((id.clone(), index));
            }
        }
        None
    }

    /// This node's position among the non-origin peers it knows, itself included, and
    /// their number.
    fn origin_share(&self) -> (u32, u32) {
        let mut before = 0;
        let mut total = 1;
        for (id, peer) in &self.peers {
            if peer.hello.is_some() && !peer.is_origin() {
                total += 1;
                if *id < self.local {
                    before += 1;
                }
            }
        }
        (before, total)
    }

    fn start_chunk_request(&mut self, now: Timestamp, peer: PeerId, chunk: ChunkId) {
        let request = self.allocate_request();
        let len = u64::from(self.transfers.get(&chunk.patch).map_or(0, |t| t.announcement.header.chunk_len(chunk.index)));
        let deadline = now.saturating_add(self.config.request_deadline(len));
        if let Some(state) = self.peers.get_mut(&peer) {
            state.in_flight += 1;
        }
        if let Some(transfer) = self.transfers.get_mut(&chunk.patch) {
            transfer.in_flight.insert(chunk.index, request);
        }
        tracing::trace!(%peer, %chunk, "requesting chunk");
        self.requests.insert(request, Pending::Chunk { peer: peer.clone(), chunk: chunk.clone(), deadline });
        let fetch = FetchRequest::Chunk { patch: chunk.patch, index: chunk.index };
        self.actions.push_back(Action::Request { request, peer, fetch });
    }
}
