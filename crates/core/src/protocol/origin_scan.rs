//! The origin's turn in `Node::pick_request`: which chunk to ask the origin for.
//!
//! The origin holds every chunk, so a scan of its chunks covers the whole patch. Testing
//! each index against the node's chunks, its requests in flight, the origin's refusals,
//! the site share and every usable peer's chunks cost a quarter of the simulator's CPU.
//! Here the filters are applied to 64 chunks at a time and only the chunks that pass all
//! of them are scored. They are visited in the order of the per-index scan (from `start`,
//! wrapping around) and the first best score wins, so the pick is the same chunk.

use std::collections::{BTreeMap, BTreeSet};

use super::RequestId;
use crate::bitfield::Bitfield;

/// What the origin scan reads, borrowed from the node and the transfer.
pub(super) struct OriginScan<'a> {
    /// The patch's chunk count; indices at or past it are never picked.
    pub(super) chunk_count: u32,
    /// Chunks this node holds.
    pub(super) have: &'a Bitfield,
    /// Chunks with a request in flight.
    pub(super) in_flight: &'a BTreeMap<u32, RequestId>,
    /// Chunks the origin declined for its budget, not to be asked again yet.
    pub(super) declined: &'a BTreeSet<u32>,
    /// For each chunk, how many connected non-origin peers advertise it.
    pub(super) availability: &'a [u32],
    /// The chunks of each peer that could serve now. Under the mesh policy a chunk one of
    /// them holds is not asked of the origin, unless `availability` counts no holder.
    pub(super) usable: &'a [&'a Bitfield],
    /// The mesh policy: keep the origin for chunks no usable peer holds, and leave the
    /// chunks outside this node's site share to its site neighbours.
    pub(super) only_unheld: bool,
    /// The origin is at this node's site, so the site share does not apply.
    pub(super) same_site: bool,
    /// The index to scan from, drawn by the caller.
    pub(super) start: u32,
}

impl OriginScan<'_> {
    /// Returns the chunk to ask the origin for: the lowest (availability, outside the node's
    /// origin share) among the chunks that pass the filters, the first met from `start`
    /// among equals. `fetches_remotely` and `from_origin` are the node's shares.
    pub(super) fn pick(&self, fetches_remotely: impl Fn(u32) -> bool, from_origin: impl Fn(u32) -> bool) -> Option<u32> {
        let words = self.chunk_count.div_ceil(64) as usize;
        if words == 0 {
            return None;
        }
        let mut wanted = self.wanted_words(words, &fetches_remotely);
        // Visit from `start` and wrap: the start word's upper bits first, its lower bits
        // last, so every index comes up once, in the per-index order.
        let first = (self.start / 64) as usize;
        let low_mask = (1u64 << (self.start % 64)) - 1;
        let wrapped = wanted[first] & low_mask;
        wanted[first] &= !low_mask;
        let order = (first..words).chain(0..first).map(|word| (word, wanted[word])).chain([(first, wrapped)]);
        // Lower is better: (rarity, outside this node's origin share).
        let mut best: Option<(u32, (u32, bool))> = None;
        for (word, mut bits) in order {
            while bits != 0 {
                let index = word as u32 * 64 + bits.trailing_zeros();
                bits &= bits - 1;
                let score = (self.availability[index as usize], !from_origin(index));
                if best.is_none_or(|(_, best_score)| score < best_score) {
                    best = Some((index, score));
                    // Nothing beats a chunk no peer holds in this node's share.
                    if score == (0, false) {
                        return Some(index);
                    }
                }
            }
        }
        best.map(|(index, _)| index)
    }

    /// Lists the chunks that pass every filter, as `words` words of 64 chunks.
    fn wanted_words(&self, words: usize, fetches_remotely: impl Fn(u32) -> bool) -> Vec<u64> {
        let mut wanted: Vec<u64> = (0..words).map(|word| !self.have.word(word)).collect();
        let tail = self.chunk_count % 64;
        if tail != 0 {
            wanted[words - 1] &= (1u64 << tail) - 1;
        }
        for &index in self.in_flight.keys().chain(self.declined) {
            if index < self.chunk_count {
                wanted[(index / 64) as usize] &= !(1u64 << (index % 64));
            }
        }
        for (word, bits) in wanted.iter_mut().enumerate() {
            if *bits == 0 {
                continue;
            }
            if self.only_unheld && !self.same_site {
                *bits = keep_bits(*bits, word, &fetches_remotely);
            }
            if self.only_unheld {
                let held = self.usable.iter().fold(0, |acc, peer| acc | peer.word(word)) & *bits;
                // A chunk no connected peer is counted for stays wanted even if a usable
                // peer's bitfield lists it, as in the per-index scan.
                let dropped = keep_bits(held, word, |index| self.availability[index as usize] > 0);
                *bits &= !dropped;
            }
        }
        wanted
    }
}

/// Keeps the bits of `bits`, in word `word`, whose chunk index satisfies `keep`.
fn keep_bits(bits: u64, word: usize, keep: impl Fn(u32) -> bool) -> u64 {
    let mut rest = bits;
    let mut kept = 0;
    while rest != 0 {
        let bit = rest.trailing_zeros();
        rest &= rest - 1;
        if keep(word as u32 * 64 + bit) {
            kept |= 1 << bit;
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Scans index by index, as `pick_request` did before: the definition the word-wise
    /// scan must match.
    fn reference(scan: &OriginScan<'_>, fetches_remotely: impl Fn(u32) -> bool, from_origin: impl Fn(u32) -> bool) -> Option<u32> {
        let order = (scan.start..scan.chunk_count).chain(0..scan.start);
        let mut best: Option<(u32, (u32, bool))> = None;
        for index in order {
            if scan.have.contains(index) || scan.in_flight.contains_key(&index) {
                continue;
            }
            if scan.only_unheld && !scan.same_site && !fetches_remotely(index) {
                continue;
            }
            if scan.declined.contains(&index) {
                continue;
            }
            let rarity = scan.availability[index as usize];
            if scan.only_unheld && rarity > 0 && scan.usable.iter().any(|bits| bits.contains(index)) {
                continue;
            }
            let score = (rarity, !from_origin(index));
            if best.is_none_or(|(_, best_score)| score < best_score) {
                best = Some((index, score));
                if score == (0, false) {
                    break;
                }
            }
        }
        best.map(|(index, _)| index)
    }

    fn bitfield(len: u32, indices: &[u32]) -> Bitfield {
        let mut bits = Bitfield::new(len);
        for &index in indices {
            bits.insert(index % len.max(1));
        }
        bits
    }

    proptest! {
        /// Random states around word boundaries: the word-wise pick equals the per-index one.
        #[test]
        fn pick_matches_per_index_scan(
            chunk_count in prop_oneof![Just(0u32), 1u32..130, Just(1024u32)],
            have in prop::collection::vec(0u32..1024, 0..600),
            in_flight in prop::collection::vec(0u32..1100, 0..20),
            declined in prop::collection::vec(0u32..1024, 0..20),
            availability in prop::collection::vec(prop_oneof![Just(0u32), 0u32..4], 1024),
            peers in prop::collection::vec(prop::collection::vec(0u32..1024, 0..300), 0..4),
            only_unheld: bool,
            same_site: bool,
            start in 0u32..1024,
            site in (1u32..5, 0u32..5),
            sites in (1u32..4, 0u32..4),
        ) {
            let have = bitfield(chunk_count, &have);
            let in_flight: BTreeMap<u32, RequestId> = in_flight.into_iter().map(|index| (index, RequestId(0))).collect();
            let declined: BTreeSet<u32> = declined.into_iter().collect();
            let peers: Vec<Bitfield> = peers.iter().map(|indices| bitfield(chunk_count, indices)).collect();
            let usable: Vec<&Bitfield> = peers.iter().collect();
            let (site_total, site_position) = (site.0, site.1 % site.0);
            let (sites_total, sites_position) = (sites.0, sites.1 % sites.0);
            let fetches_remotely = |index: u32| index % site_total == site_position;
            let from_origin = |index: u32| fetches_remotely(index) && (index / site_total) % sites_total == sites_position;
            let scan = OriginScan {
                chunk_count,
                have: &have,
                in_flight: &in_flight,
                declined: &declined,
                availability: &availability,
                usable: &usable,
                only_unheld,
                same_site,
                start: start % chunk_count.max(1),
            };
            prop_assert_eq!(scan.pick(fetches_remotely, from_origin), reference(&scan, fetches_remotely, from_origin));
        }
    }
}
