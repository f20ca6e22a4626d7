//! Choosing which chunk to request from which peer.
//!
//! Each pass fills free request slots, one request at a time:
//!
//! 1. Candidate peers are those that said hello, are allowed by the source policy, and
//!    have a free slot. A peer's slots cover its bandwidth-delay product (its measured
//!    rate times its round-trip time), with `max_requests_per_peer` as the floor; the
//!    origin gets at most `max_requests_to_origin` from each node.
//! 2. Candidates are ranked: peers at the node's own site, then other sites, then the
//!    origin. Within a rank, peers with fewer requests in flight come first, then a
//!    seeded random order. Measured rates and round trips set each peer's slots (step
//!    1), so a fast peer takes more requests at once; they do not reorder peers. Ranking
//!    by rate ahead of load, tried in the simulator, made canaccord-26 3% slower: the
//!    fastest peers got every request and queued them.
//! 3. The first candidate that holds a wanted chunk gets a request for the rarest such
//!    chunk (fewest non-origin holders, random among equals). Under the mesh policy the
//!    origin is asked only for chunks that no usable peer holds, which keeps its uplink
//!    for new data, and not for chunks it declined for its egress budget until a retry
//!    pause has passed.
//! 4. **A chunk enters a site once.** The nodes of a site split the chunks between them:
//!    with the node at position `r` among the `n` usable nodes of its site that it knows
//!    (itself included, sorted by peer id), only chunk `i` with `i % n == r` is fetched
//!    from outside the site by this node; the others come from its site neighbours, who
//!    tell it with `Have` as soon as they hold them. A node that leaves or rests drops
//!    out of `n`, so its share moves to the others.
//!    A node knows only the site neighbours it is connected to, so two nodes with
//!    different views can each leave a chunk to the other, and the site would never
//!    fetch it. A node that has had no chunk request in flight for [`SITE_SHARE_WAIT`]
//!    while chunks are missing therefore drops its share and fetches any chunk from
//!    other sites.
//! 5. So that sites do not all ask the origin for the same unheld chunk, each node
//!    prefers its own share of the origin's chunks: within its site share, the sites it
//!    knows (sorted by name) take turns, so the origin sends distinct chunks to distinct
//!    sites.
//!
//! The scan is O(peers × chunks) per request. That is fine for a daemon with tens of
//! peers and for simulations of a few thousand nodes. Peers whose advertised chunks are
//! held already are never scanned: the scan visits only the chunks a peer holds and this
//! node lacks, found a word at a time. The origin's turn (`origin_scan.rs`) applies its
//! filters to 64 chunks at a time and scores only the chunks that pass.

use super::peer::Peer;
use super::transfer::TransferState;
use super::{Action, Node, Pending, SourcePolicy};
use crate::Bitfield;
use crate::ids::{ChunkId, PatchKey, PeerId};
use crate::time::Timestamp;
use crate::wire::FetchRequest;
use super::origin_scan::OriginScan;
use std::time::Duration;

/// How long a downloading node with no chunk request in flight waits for its site
/// neighbours before it fetches chunks outside its site share. Long enough for a
/// neighbour's `Have` to arrive in the usual case, short against a rollout.
pub(super) const SITE_SHARE_WAIT: Duration = Duration::from_secs(10);


/// How a node splits chunks with the other nodes of its site and the other sites.
#[derive(Clone, Copy, Debug)]
struct Shares {
    /// This node's position among the usable nodes of its site, and their number.
    site: (u32, u32),
    /// This site's position among the sites the node knows, and their number.
    sites: (u32, u32),
}

impl Shares {
    /// Whether this node fetches chunk `index` from outside its site.
    fn fetches_remotely(&self, index: u32) -> bool {
        index % self.site.1 == self.site.0
    }

    /// Chunks `64·word ..= 64·word + 63` that this node fetches from outside its site,
    /// as a word: chunk `64·word + b` in bit `b`, as [`Bitfield::word`] reads them.
    fn remote_word(&self, word: usize) -> u64 {
        let (position, nodes) = (u64::from(self.site.0), u64::from(self.site.1));
        if nodes <= 1 {
            return u64::MAX;
        }
        let base = word as u64 * 64;
        let mut mask = 0;
        let mut index = base + (position + nodes - base % nodes) % nodes;
        while index < base + 64 {
            mask |= 1 << (index - base);
            index += nodes;
        }
        mask
    }

    /// Whether chunk `index` is in this node's share of the origin's chunks.
    fn from_origin(&self, index: u32) -> bool {
        self.fetches_remotely(index) && (index / self.site.1) % self.sites.1 == self.sites.0
    }
}

/// The state the picks of one scheduling pass over a patch share. A pick changes no
/// peer's hello, rest or ban and no chunk held. It only puts one more chunk in flight,
/// which [`Pass::picked`] takes out of the needed sets.
#[derive(Default)]
struct Pass {
    /// [`Node::shares`], adjusted for a dropped site share and worked out when first
    /// used.
    shares: Option<Shares>,
    /// The chunks this node lacks and has not requested: what it may ask a peer at its
    /// own site for.
    needed: Option<Bitfield>,
    /// Those of `needed` in this node's site share: what it may ask a peer at another
    /// site for under the mesh policy.
    needed_remote: Option<Bitfield>,
}

impl Pass {
    fn picked(&mut self, index: u32) {
        for needed in [&mut self.needed, &mut self.needed_remote].into_iter().flatten() {
            needed.remove(index);
        }
    }
}

/// [`Node::policy_allows`] for a node with `config`.
pub(super) fn policy_allows(config: &super::NodeConfig, peer: &Peer) -> bool {
    if peer.hello.is_none() {
        return false;
    }
    match config.source_policy {
        SourcePolicy::Mesh => true,
        SourcePolicy::Central => peer.is_origin(),
        SourcePolicy::OfficeCache if config.site_cache => peer.is_origin(),
        SourcePolicy::OfficeCache => peer.same_site && peer.is_site_cache(),
    }
}

/// Returns the chunks of `transfer` neither held nor in flight.
fn needed_chunks(transfer: &super::transfer::Transfer) -> Bitfield {
    let count = transfer.chunk_count();
    let words = (count as usize).div_ceil(64);
    let mut needed = Bitfield::from_words(count, (0..words).map(|word| !transfer.have.word(word)));
    for &index in transfer.in_flight.keys() {
        needed.remove(index);
    }
    needed
}

impl Node {
    pub(super) fn schedule_chunks(&mut self, now: Timestamp) {
        let mut downloading: Vec<PatchKey> = self
            .transfers
            .iter_mut()
            .map(|(patch, transfer)| {
                // Every transfer, whatever its state, so no past retry time stays due.
                if transfer.origin_retry_at.is_some_and(|at| at <= now) {
                    transfer.origin_retry_at = None;
                    transfer.origin_declined.clear();
                }
                (patch, transfer)
            })
            .filter(|(_, t)| t.state == TransferState::Downloading && t.paused_until.is_none_or(|until| until <= now))
            .map(|(patch, _)| patch.clone())
            .collect();
        downloading.retain(|patch| self.may_fetch(patch));
        for patch in downloading {
            let Some(transfer) = self.transfers.get_mut(&patch) else {
                continue;
            };
            if transfer.share_wait_until.is_some_and(|until| until <= now) {
                transfer.share_wait_until = None;
                transfer.share_dropped = true;
            }
            let share_dropped = transfer.share_dropped;
            let mut pass = Pass::default();
            while self.may_request_more(&patch) {
                let Some((peer, index)) = self.pick_request(&patch, share_dropped, &mut pass) else {
                    break;
                };
                pass.picked(index);
                self.start_chunk_request(now, peer, ChunkId { patch: patch.clone(), index });
            }
            if let Some(transfer) = self.transfers.get_mut(&patch) {
                if !transfer.in_flight.is_empty() {
                    transfer.share_wait_until = None;
                } else if !transfer.share_dropped && transfer.share_wait_until.is_none() {
                    transfer.share_wait_until = Some(now.saturating_add(SITE_SHARE_WAIT));
                }
            }
        }
        self.run_endgame(now);
    }

    /// Whether another chunk request for `patch` fits within `max_requests_total`.
    ///
    /// NOTE: the limit counts requests, not bytes, so with small chunks it may not cover
    /// a long fat path; raise `max_requests_total` there. Letting small chunks fill 16
    /// MiB in flight made the GÉANT simulation 10% slower: nodes that finished the first
    /// patch flooded the shared core with requests for a second one.
    fn may_request_more(&self, _patch: &PatchKey) -> bool {
        self.in_flight_total() < self.config.max_requests_total
    }

    fn origin_requests_in_flight(&self) -> u32 {
        self.peers.values().filter(|peer| peer.is_origin()).map(|peer| peer.in_flight).sum()
    }

    /// Ranks a peer as a source; `None` if the policy or its free slots rule it out.
    /// `origin_in_flight` is [`Node::origin_requests_in_flight`], counted once per pick
    /// rather than once per peer.
    fn source_rank(&self, peer: &Peer, chunk_len: u32, origin_in_flight: u32) -> Option<u8> {
        peer.hello.as_ref()?;
        let same_site = peer.same_site;
        let depth = peer.pipeline_depth(self.config.max_requests_per_peer, chunk_len);
        if !self.policy_allows(peer) || peer.in_flight >= depth || peer.cooling_down {
            return None;
        }
        if peer.is_origin() {
            if origin_in_flight >= self.config.max_requests_to_origin {
                return None;
            }
            return Some(2);
        }
        Some(if same_site { 0 } else { 1 })
    }

    /// Returns whether the source policy lets this node fetch chunks from `peer` at all,
    /// busy or not. A peer whose `Hello` has not arrived is not a source yet.
    pub(super) fn policy_allows(&self, peer: &Peer) -> bool {
        policy_allows(&self.config, peer)
    }

    /// Whether `peer` can serve requests now: greeted, not resting, not banned.
    fn usable(&self, id: &PeerId, peer: &Peer) -> bool {
        peer.hello.is_some() && !peer.cooling_down && !self.banned.contains_key(id)
    }

    /// Picks the next chunk request for `patch`; with `share_dropped` the node fetches
    /// any chunk from other sites, not only its site share. `pass` caches what the
    /// picks of one pass share.
    ///
    /// Peers other than the origin are tested first for holding any chunk this node
    /// needs from them, a word at a time. Only those that pass are ranked and draw a
    /// random number, so the first in rank order always yields a chunk. Most peers at
    /// other sites hold nothing in this node's site share.
    fn pick_request(&mut self, patch: &PatchKey, share_dropped: bool, pass: &mut Pass) -> Option<(PeerId, u32)> {
        let transfer = self.transfers.get(patch)?;
        let chunk_len = transfer.announcement.header.chunk_size;
        let chunk_count = transfer.chunk_count();
        let needed = pass.needed.get_or_insert_with(|| needed_chunks(transfer));
        if needed.is_clear() {
            // The origin's candidates are a subset of these, so nothing can be picked.
            return None;
        }
        let only_unheld = self.config.source_policy == SourcePolicy::Mesh;
        let origin_in_flight = self.origin_requests_in_flight();
        let mut ranked: Vec<(u8, u32, &PeerId, &Peer)> = Vec::new();
        for (id, peer) in &self.peers {
            if !self.banned.is_empty() && self.banned.contains_key(id) {
                continue;
            }
            if let Some(rank) = self.source_rank(peer, chunk_len, origin_in_flight) {
                ranked.push((rank, peer.in_flight, id, peer));
            }
        }
        let shares_of = |node: &Node| {
            let mut shares = node.shares();
            if share_dropped {
                shares.site = (0, 1);
            }
            shares
        };
        if only_unheld && ranked.iter().any(|&(rank, ..)| rank > 0) {
            let shares = *pass.shares.get_or_insert_with(|| shares_of(self));
            let needed = pass.needed.as_ref().expect("set above");
            pass.needed_remote.get_or_insert_with(|| {
                let words = (needed.len() as usize).div_ceil(64);
                Bitfield::from_words(needed.len(), (0..words).map(|word| needed.word(word) & shares.remote_word(word)))
            });
        }
        let needed = pass.needed.as_ref().expect("set above");
        // What this node may ask `peer` for: under the mesh policy a peer at another site
        // only for chunks in this node's site share.
        let needed_from = |rank: u8| match (&pass.needed_remote, only_unheld && rank > 0) {
            (Some(remote), true) => remote,
            _ => needed,
        };
        // Ordered by (rank, requests in flight, random draw, id). Peer ids are unique, so
        // no two candidates compare equal.
        let mut best: Option<((u8, u32, u64, &PeerId), &Peer)> = None;
        let mut origins = Vec::new();
        for &(rank, in_flight, id, peer) in &ranked {
            if peer.is_origin() {
                origins.push((in_flight, id, peer));
                continue;
            }
            // Comparing the rank first spares reading the advertised chunks of a peer
            // that cannot win.
            if best.as_ref().is_some_and(|((best_rank, best_in_flight, ..), _)| (rank, in_flight) > (*best_rank, *best_in_flight)) {
                continue;
            }
            let Some(advertised) = peer.have.get(patch) else {
                continue;
            };
            if !advertised.intersects(needed_from(rank)) {
                continue;
            }
            let key = (rank, in_flight, self.rng.next_u64(), id);
            if best.as_ref().is_none_or(|(best_key, _)| key < *best_key) {
                best = Some((key, peer));
            }
        }
        if let Some(((rank, _, _, id), peer)) = best {
            let advertised = peer.have.get(patch)?;
            let start = self.rng.below(u64::from(chunk_count.max(1))) as u32;
            let mut pick: Option<(u32, u32)> = None;
            for index in advertised.intersection_from(needed_from(rank), start) {
                // Lower is better: rarest first.
                let rarity = transfer.availability[index as usize];
                if pick.is_none_or(|(_, best_rarity)| rarity < best_rarity) {
                    pick = Some((index, rarity));
                    // Nothing can beat a chunk only this peer advertises: stop scanning.
                    if rarity <= 1 {
                        break;
                    }
                }
            }
            // The intersection test above makes this `Some`. A node must not panic on
            // what a peer advertised, so a miss only ends the pass.
            debug_assert!(pick.is_some(), "the peer advertised a needed chunk");
            return pick.map(|(index, _)| (id.clone(), index));
        }

        // The origin is asked last. Peers that can serve now: a resting or banned peer's
        // chunks do not keep a chunk away from the origin, or a frozen peer holding
        // everything would stall the node. The origin sits at one site, but its uplink is
        // the scarce one: it counts as outside for every node but its own site's, so
        // `same_site` applies the site share as for any peer at another site.
        let mut origins: Vec<((u32, u64, &PeerId), &Peer)> =
            origins.into_iter().map(|(in_flight, id, peer)| ((in_flight, self.rng.next_u64(), id), peer)).collect();
        origins.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        for ((_, _, id), peer) in origins {
            let same_site = peer.same_site;
            let start = self.rng.below(u64::from(chunk_count.max(1))) as u32;
            let usable: Vec<&crate::Bitfield> = if only_unheld {
                self.peers
                    .iter()
                    .filter(|(id, peer)| !peer.is_origin() && self.usable(id, peer))
                    .filter_map(|(_, peer)| peer.have.get(patch))
                    .collect()
            } else {
                Vec::new()
            };
            let scan = OriginScan {
                chunk_count,
                have: &transfer.have,
                in_flight: &transfer.in_flight,
                declined: &transfer.origin_declined,
                availability: &transfer.availability,
                usable: &usable,
                only_unheld,
                same_site,
                start,
            };
            let shares = *pass.shares.get_or_insert_with(|| shares_of(self));
            if let Some(index) = scan.pick(|index| shares.fetches_remotely(index), |index| shares.from_origin(index)) {
                return Some((id.clone(), index));
            }
        }
        None
    }

    /// This node's shares of its site's remote fetches and of the origin's chunks.
    ///
    /// Only the mesh policy splits fetches within a site: under the others each node
    /// already has exactly one source.
    fn shares(&self) -> Shares {
        let mut site_before = 0;
        let mut site_total = 1;
        for (id, peer) in &self.peers {
            if peer.same_site && !peer.is_origin() && self.usable(id, peer) {
                site_total += 1;
                if *id < self.local {
                    site_before += 1;
                }
            }
        }
        let site = if self.config.source_policy == SourcePolicy::Mesh { (site_before, site_total) } else { (0, 1) };
        Shares { site, sites: self.site_order() }
    }

    /// Returns [`Node::site_order`](field@Node::site_order), working it out again if a
    /// change cleared it.
    fn site_order(&self) -> (u32, u32) {
        if let Some(order) = self.site_order.get() {
            return order;
        }
        let mut sites: Vec<&str> = vec![self.config.site.as_str()];
        for peer in self.peers.values() {
            if let Some(hello) = peer.hello.as_ref()
                && !peer.is_origin()
            {
                sites.push(hello.site.as_str());
            }
        }
        sites.sort_unstable();
        sites.dedup();
        let position = sites.iter().position(|site| *site == self.config.site).unwrap_or(0);
        let order = (position as u32, sites.len() as u32);
        self.site_order.set(Some(order));
        order
    }

    fn start_chunk_request(&mut self, now: Timestamp, peer: PeerId, chunk: ChunkId) {
        let index = chunk.index;
        let patch = chunk.patch.clone();
        let request = self.send_chunk_request(now, peer, chunk);
        if let Some(transfer) = self.transfers.get_mut(&patch) {
            transfer.in_flight.insert(index, request);
        }
    }

    /// Sends a request for `chunk` to `peer` and tracks it with its deadline; the caller
    /// records it as the chunk's first or endgame request.
    pub(super) fn send_chunk_request(&mut self, now: Timestamp, peer: PeerId, chunk: ChunkId) -> super::RequestId {
        let request = self.allocate_request();
        let len = u64::from(self.transfers.get(&chunk.patch).map_or(0, |t| t.announcement.header.chunk_len(chunk.index)));
        let deadline = now.saturating_add(self.config.request_deadline(len));
        if let Some(state) = self.peers.get_mut(&peer) {
            state.in_flight += 1;
            self.in_flight_total += 1;
        }
        tracing::trace!(%peer, %chunk, "requesting chunk");
        self.requests.insert(request, Pending::Chunk { peer: peer.clone(), chunk: chunk.clone(), deadline, started: now });
        let fetch = FetchRequest::Chunk { patch: chunk.patch, index: chunk.index };
        self.actions.push_back(Action::Request { request, peer, fetch });
        request
    }
}

#[cfg(test)]
mod tests {
    use super::Shares;

    #[test]
    fn remote_word_matches_fetches_remotely() {
        for (position, nodes) in [(0, 1), (0, 2), (1, 2), (2, 3), (4, 5), (6, 7), (63, 64), (64, 65), (99, 100)] {
            let shares = Shares { site: (position, nodes), sites: (0, 1) };
            for word in 0..4 {
                let expected = (0..64u32).filter(|bit| shares.fetches_remotely(word as u32 * 64 + bit)).fold(0u64, |mask, bit| mask | 1 << bit);
                assert_eq!(shares.remote_word(word), expected, "position {position} of {nodes}, word {word}");
            }
        }
    }
}
