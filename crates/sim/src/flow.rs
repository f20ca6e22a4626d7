//! The flow-level network model: max-min fair sharing by progressive filling.
//!
//! A flow is a transfer of a known number of bytes over a fixed path of directed links.
//! At any instant every flow has a rate, and the rates are the max-min fair allocation:
//! no flow can get more without taking from a flow that has no more than it. Progressive
//! filling computes it: raise every rate together until a link is full (or a flow reaches
//! its own cap), freeze the flows on that link, and go on with the rest.
//!
//! Rates change only when a flow starts or ends, so the model creates no per-byte or
//! per-packet events. After a change only the connected component of the flow-link graph
//! that contains the changed links is recomputed. Flows in other components share no
//! link with it, so their max-min rates cannot change. The caller batches changes and calls
//! [`FlowNet::recompute`] once before virtual time advances.

use std::cmp::Ordering;
use std::collections::{BTreeSet, BinaryHeap};

use crate::finish_queue::FinishQueue;
use crate::hops::Hops;

/// How often a recompute searches for the component again while the flows form one: it
/// fills every flow on the other recomputes (see [`FlowNet::recompute`]).
const SEARCH_EVERY: u64 = 64;

/// Index of a directed link.
pub type LinkId = usize;
/// Index of a flow; indices of finished flows are reused.
pub type FlowId = usize;

/// The rate of a flow that has not been through a recompute yet. It equals no rate a
/// recompute computes, so the first recompute always gives the flow a prediction.
const UNRATED: f64 = -1.0;

/// The state of a flow that a recompute does not read. A recompute reads the path, cap
/// and rate of every flow of the component, so those sit in arrays of their own
/// ([`FlowNet::paths`] and the two after it). A component of hundreds of flows then spans
/// few cache lines, which matters because the protocol core runs between two recomputes
/// and evicts them.
#[derive(Debug)]
struct Progress {
    /// Per hop of the flow's path: its index in that link's flow list, so removal is O(1)
    /// per hop even on a link that carries thousands of flows.
    slots: Hops,
    /// Bytes left at `updated_us`. Brought up to date only when the rate changes or the
    /// flow ends, since in between the flow moves at one rate.
    remaining: f64,
    updated_us: u64,
    /// The predicted instant its last byte leaves the path, in microseconds.
    finish_us: u64,
}

impl Progress {
    /// Bytes left at `now_us`, moving at `rate` since `updated_us`.
    fn remaining_at(&self, now_us: u64, rate: f64) -> f64 {
        let elapsed = now_us.saturating_sub(self.updated_us) as f64 / 1e6;
        (self.remaining - rate.max(0.0) * elapsed).max(0.0)
    }
}

/// Buffers that [`FlowNet::recompute`] reuses, so a recompute allocates only when a
/// component is larger than any before it.
#[derive(Debug, Default)]
struct Scratch {
    /// The component's links, in the order the search found them, and its number of
    /// flows.
    links: Vec<LinkId>,
    flow_count: usize,
    stack: Vec<LinkId>,
    heap: BinaryHeap<Share>,
    /// (cap as bits, flow) of the component's capped flows, smallest cap first.
    capped: Vec<(u64, u32)>,
    to_freeze: Vec<u32>,
    touched: Vec<LinkId>,
    /// (flow, predicted finish) of flows whose rate changed.
    predictions: Vec<(FlowId, u64)>,
}

/// Links, the flows on them and their max-min fair rates.
#[derive(Debug, Default)]
pub struct FlowNet {
    capacity: Vec<f64>,
    /// The flows on each link, in no particular but deterministic order.
    link_flows: Vec<Vec<u32>>,
    /// Per flow id: its path.
    paths: Vec<Hops>,
    /// Per flow id: its own rate limit in bytes per second (a loss-limited TCP rate), or
    /// infinity.
    caps: Vec<f64>,
    /// Per flow id: its rate in bytes per second, or [`UNRATED`].
    rates: Vec<f64>,
    /// (cap as bits, flow) of every capped flow, in order. A recompute whose component
    /// has a large part of them reads its own in order from here instead of sorting.
    /// A positive float's bits order as its value does.
    capped: BTreeSet<(u64, u32)>,
    /// Per flow id: its progress, or `None` for a free id.
    flows: Vec<Option<Progress>>,
    free: Vec<FlowId>,
    /// Predicted completions, one entry per flow that has been through a recompute.
    finishing: FinishQueue,
    dirty: Vec<LinkId>,
    /// Scratch space for [`FlowNet::recompute`], indexed by link and by flow. The marks
    /// are generation numbers. The search meets each flow once per link it crosses, so
    /// the flow marks sit in a compact table of their own (640 KB for 160,000 flows)
    /// rather than in the flows.
    link_mark: Vec<u32>,
    flow_mark: Vec<u32>,
    residual: Vec<f64>,
    unfrozen: Vec<u32>,
    /// Per link: its position in the component's search order, the tie-break between
    /// links with equal shares.
    order: Vec<u32>,
    /// Per link: the share of its newest entry in the filling heap. Never above the
    /// link's current share (see [`FlowNet::fill`]).
    queued_share: Vec<f64>,
    generation: u32,
    /// Whether the last search found every flow in one component, and how many
    /// recomputes ran (see [`FlowNet::recompute`]).
    whole_last: bool,
    recomputes: u64,
    /// Tests set this to search for the component on every recompute.
    #[cfg(test)]
    always_search: bool,
    scratch: Scratch,
}

/// A link's fair share in bytes per second and its position in the search order, as
/// queued in the progressive-filling heap: smallest share first, then earliest found.
#[derive(Debug, PartialEq)]
struct Share {
    share: f64,
    order: u32,
    link: LinkId,
}

impl Eq for Share {}

impl PartialOrd for Share {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Share {
    /// Reversed, so the standard max-heap pops the smallest share.
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .share
            .total_cmp(&self.share)
            .then_with(|| other.order.cmp(&self.order))
    }
}

impl FlowNet {
    /// An empty network.
    pub fn new() -> Self {
        FlowNet::default()
    }

    /// Adds a directed link of `capacity` bytes per second.
    pub fn add_link(&mut self, capacity: f64) -> LinkId {
        debug_assert!(capacity > 0.0, "link capacity must be positive");
        self.capacity.push(capacity);
        self.link_flows.push(Vec::new());
        self.link_mark.push(0);
        self.residual.push(0.0);
        self.unfrozen.push(0);
        self.order.push(0);
        self.queued_share.push(0.0);
        self.capacity.len() - 1
    }

    /// Changes the capacity of `link`, for a cap that starts or ends; rates follow at the
    /// next recompute.
    pub fn set_capacity(&mut self, link: LinkId, capacity: f64) {
        debug_assert!(capacity > 0.0, "link capacity must be positive");
        if self.capacity[link] != capacity {
            self.capacity[link] = capacity;
            self.dirty.push(link);
        }
    }

    /// The number of links.
    pub fn link_count(&self) -> usize {
        self.capacity.len()
    }

    /// The capacity of `link` in bytes per second.
    pub fn capacity(&self, link: LinkId) -> f64 {
        self.capacity[link]
    }

    /// The flows crossing `link`.
    pub fn flows_on(&self, link: LinkId) -> impl Iterator<Item = FlowId> + '_ {
        self.link_flows[link].iter().map(|&id| id as FlowId)
    }

    /// Starts a flow of `bytes` over `path` at `now_us`, limited to `cap` bytes per second
    /// on its own (infinity for none). Its rate is 0 until the next recompute. A path
    /// crosses each link at most once.
    pub fn add_flow(&mut self, now_us: u64, path: Vec<LinkId>, bytes: f64, cap: f64) -> FlowId {
        debug_assert!(
            path.iter().enumerate().all(|(hop, link)| !path[..hop].contains(link)),
            "path {path:?} crosses a link twice"
        );
        let id = match self.free.pop() {
            Some(id) => id,
            None => {
                self.flows.push(None);
                self.paths.push(Hops::new(std::iter::empty()));
                self.caps.push(f64::INFINITY);
                self.rates.push(UNRATED);
                self.flow_mark.push(0);
                self.flows.len() - 1
            }
        };
        let narrow = u32::try_from(id).expect("fewer than 2^32 flows");
        let slots = Hops::new(path.iter().map(|&link| self.link_flows[link].len()));
        for &link in &path {
            self.link_flows[link].push(narrow);
            self.dirty.push(link);
        }
        self.paths[id] = Hops::new(path.into_iter());
        self.caps[id] = cap;
        if cap.is_finite() {
            self.capped.insert((cap.to_bits(), narrow));
        }
        self.rates[id] = UNRATED;
        self.flows[id] = Some(Progress { slots, remaining: bytes, updated_us: now_us, finish_us: u64::MAX });
        id
    }

    /// Ends a flow, finished or cancelled, and returns the bytes it had left.
    pub fn remove_flow(&mut self, now_us: u64, id: FlowId) -> f64 {
        let Some(flow) = self.flows.get_mut(id).and_then(Option::take) else {
            return 0.0;
        };
        for (link, slot) in self.paths[id].iter().zip(flow.slots.iter()) {
            let flows = &mut self.link_flows[link];
            debug_assert_eq!(flows[slot] as usize, id, "slot index out of date on link {link}");
            flows.swap_remove(slot);
            // The link's last flow moved into the freed slot: record where it went.
            if let Some(&moved) = flows.get(slot)
                && let Some(other) = self.flows[moved as usize].as_mut()
                && let Some(hop) = self.paths[moved as usize].iter().position(|hop| hop == link)
            {
                other.slots.as_mut_slice()[hop] = slot as u32;
            }
            self.dirty.push(link);
        }
        if self.caps[id].is_finite() {
            self.capped.remove(&(self.caps[id].to_bits(), id as u32));
        }
        self.finishing.remove(id);
        self.free.push(id);
        flow.remaining_at(now_us, self.rates[id])
    }

    /// Whether a flow with this id is running.
    pub fn contains(&self, id: FlowId) -> bool {
        self.flows.get(id).is_some_and(Option::is_some)
    }

    /// The current rate of a flow in bytes per second, 0 if it is not running.
    pub fn rate(&self, id: FlowId) -> f64 {
        if self.contains(id) { self.rates[id].max(0.0) } else { 0.0 }
    }

    /// The running flow predicted to finish first, with the instant in microseconds;
    /// ties go to the lower flow id. Valid after [`FlowNet::recompute`].
    pub fn next_completion(&mut self) -> Option<(u64, FlowId)> {
        self.finishing.peek()
    }

    /// The predicted finish of a running flow in microseconds.
    pub fn finish_us(&self, id: FlowId) -> Option<u64> {
        self.flows
            .get(id)
            .and_then(Option::as_ref)
            .map(|flow| flow.finish_us)
    }

    /// The number of running flows.
    pub fn flow_count(&self) -> usize {
        self.flows.len() - self.free.len()
    }

    /// Whether a flow started or ended since the last recompute.
    pub fn is_dirty(&self) -> bool {
        !self.dirty.is_empty()
    }

    /// Recomputes the rates of every flow connected to a changed link and updates the
    /// completion predictions of those whose rate changed. Returns how many changed.
    pub fn recompute(&mut self, now_us: u64) -> usize {
        if self.dirty.is_empty() {
            return 0;
        }
        // Three marks per recompute: `generation` for visited, `generation + 1` for
        // frozen flows and `generation + 2` for links touched by one freezing step.
        // Before the numbers wrap, every mark goes back to 0, which no generation uses.
        if self.generation > u32::MAX - 3 {
            self.generation = 0;
            self.link_mark.fill(0);
            self.flow_mark.fill(0);
        }
        self.generation += 3;
        let mut scratch = std::mem::take(&mut self.scratch);
        // Filling a union of components gives each the rates it would get alone, so
        // filling every flow is exact too. The search visits each flow once per link it
        // crosses, in scattered order. When the last search found one component with
        // every flow (as in a mesh whose nodes all fetch from one origin), a pass over
        // all flows in index order replaces it. Every 64th recompute searches again, in
        // case the network has split since.
        self.recomputes += 1;
        #[cfg(test)]
        let whole_last = self.whole_last && !self.always_search;
        #[cfg(not(test))]
        let whole_last = self.whole_last;
        if whole_last && self.recomputes % SEARCH_EVERY != 0 {
            self.take_every_flow(&mut scratch);
        } else {
            self.find_component(&mut scratch);
            self.whole_last = scratch.flow_count == self.flow_count();
        }
        self.fill(&mut scratch, now_us);
        let changed = scratch.predictions.len();
        self.finishing.set_all(&scratch.predictions);

        #[cfg(debug_assertions)]
        for &link in &scratch.links {
            let load: f64 = self.link_flows[link].iter().map(|&id| self.rates[id as usize].max(0.0)).sum();
            debug_assert!(
                load <= self.capacity[link] * (1.0 + 1e-9),
                "link {link} overloaded: {load} > {}",
                self.capacity[link]
            );
        }
        self.scratch = scratch;
        changed
    }

    /// Collects the connected component of the changed links, by depth-first search,
    /// into `scratch.links` and `scratch.flow_count`. On the way it brings each flow's
    /// remaining bytes up to `now_us` at its old rate and lists the capped flows in
    /// `scratch.capped`, smallest cap first.
    fn find_component(&mut self, scratch: &mut Scratch) {
        let generation = self.generation;
        scratch.links.clear();
        scratch.flow_count = 0;
        scratch.capped.clear();
        scratch.stack.clear();
        std::mem::swap(&mut scratch.stack, &mut self.dirty);
        while let Some(link) = scratch.stack.pop() {
            if self.link_mark[link] == generation {
                continue;
            }
            self.link_mark[link] = generation;
            scratch.links.push(link);
            for &id in &self.link_flows[link] {
                let index = id as usize;
                if self.flow_mark[index] == generation {
                    continue;
                }
                self.flow_mark[index] = generation;
                scratch.flow_count += 1;
                let cap = self.caps[index];
                if cap.is_finite() {
                    scratch.capped.push((cap.to_bits(), id));
                }
                for next in self.paths[index].iter() {
                    if self.link_mark[next] != generation {
                        scratch.stack.push(next);
                    }
                }
            }
        }
        // Sorting the component's n capped flows costs n·log n. Reading them in order
        // from the set of all capped flows costs one pass over that set.
        if scratch.capped.len() * 4 >= self.capped.len() {
            scratch.capped.clear();
            let members = self.capped.iter().filter(|&&(_, id)| self.flow_mark[id as usize] == generation);
            scratch.capped.extend(members);
        } else {
            scratch.capped.sort_unstable();
        }
    }

    /// Lists every link that carries a flow and counts every flow, as
    /// [`FlowNet::find_component`] does for a component. The flows need no visit mark:
    /// filling reads only the frozen mark, which no flow carries at the start of a
    /// recompute.
    fn take_every_flow(&mut self, scratch: &mut Scratch) {
        let generation = self.generation;
        scratch.links.clear();
        scratch.flow_count = self.flow_count();
        scratch.capped.clear();
        self.dirty.clear();
        for (link, flows) in self.link_flows.iter().enumerate() {
            if !flows.is_empty() {
                self.link_mark[link] = generation;
                scratch.links.push(link);
            }
        }
        scratch.capped.extend(self.capped.iter().copied());
    }

    /// Progressive filling over the component: repeatedly freezes the flows of the link
    /// with the smallest fair share (or the flow with the smallest cap, if lower) at
    /// that rate. Lists in `scratch.predictions` the flows whose rate changed.
    ///
    /// The heap is lazy. A link's share changes only when one of its flows freezes, at
    /// a rate no higher than the least share, so in exact arithmetic it never falls.
    /// The link therefore keeps its queued entry, which is checked when it reaches the
    /// top: a stale one goes back with the current share. A share that rounding pushes
    /// below the queued one is queued again at once. With that invariant (every link
    /// with unfrozen flows has an entry no larger than its current share) the first
    /// valid entry is the link with the least (share, search order), the one a linear
    /// scan of the component would pick.
    fn fill(&mut self, scratch: &mut Scratch, now_us: u64) {
        let frozen = self.generation + 1;
        let touched_mark = frozen + 1;
        scratch.predictions.clear();
        // Built in one O(n) pass rather than by n pushes.
        let mut entries = std::mem::take(&mut scratch.heap).into_vec();
        entries.clear();
        for (position, &link) in scratch.links.iter().enumerate() {
            self.residual[link] = self.capacity[link];
            self.unfrozen[link] = self.link_flows[link].len() as u32;
            self.order[link] = position as u32;
            if self.unfrozen[link] > 0 {
                let share = self.current_share(link);
                self.queued_share[link] = share;
                entries.push(Share { share, order: position as u32, link });
            }
        }
        scratch.heap = BinaryHeap::from(entries);
        let mut next_capped = 0;
        // Once every flow is frozen the rest of the heap holds only links without
        // unfrozen flows, which the loop would pop one by one to no effect.
        let mut unfrozen_flows = scratch.flow_count;
        while unfrozen_flows > 0 {
            let bottleneck = self.least_share(scratch);
            while next_capped < scratch.capped.len() && self.is_frozen(scratch.capped[next_capped].1 as usize, frozen) {
                next_capped += 1;
            }
            let cap = scratch.capped.get(next_capped).map(|&(bits, id)| (f64::from_bits(bits), id));
            scratch.to_freeze.clear();
            let rate = match (bottleneck, cap) {
                (None, None) => break,
                (Some((share, _)), Some((cap, id))) if cap <= share => {
                    scratch.to_freeze.push(id);
                    cap
                }
                (None, Some((cap, id))) => {
                    scratch.to_freeze.push(id);
                    cap
                }
                (Some((share, link)), _) => {
                    for index in 0..self.link_flows[link].len() {
                        let id = self.link_flows[link][index];
                        if !self.is_frozen(id as usize, frozen) {
                            scratch.to_freeze.push(id);
                        }
                    }
                    share
                }
            };
            if scratch.to_freeze.is_empty() {
                // Unreachable while the counts match the flow sets; guards the loop.
                debug_assert!(false, "bottleneck link without unfrozen flows");
                if let Some((_, link)) = bottleneck {
                    self.unfrozen[link] = 0;
                }
                continue;
            }
            scratch.touched.clear();
            for &id in &scratch.to_freeze {
                let id = id as usize;
                self.flow_mark[id] = frozen;
                unfrozen_flows -= 1;
                for link in self.paths[id].iter() {
                    self.residual[link] -= rate;
                    self.unfrozen[link] -= 1;
                    if self.link_mark[link] != touched_mark {
                        self.link_mark[link] = touched_mark;
                        scratch.touched.push(link);
                    }
                }
                self.set_rate(id, rate, now_us, &mut scratch.predictions);
            }
            for index in 0..scratch.touched.len() {
                let link = scratch.touched[index];
                self.link_mark[link] = self.generation;
                if self.unfrozen[link] > 0 && self.current_share(link) < self.queued_share[link] {
                    self.queue_share(&mut scratch.heap, link);
                }
            }
        }
    }

    /// Gives flow `id` its new `rate` at `now_us`. A flow whose rate changed gets a new
    /// prediction, listed in `predictions`, and the others keep theirs.
    fn set_rate(&mut self, id: FlowId, rate: f64, now_us: u64, predictions: &mut Vec<(FlowId, u64)>) {
        if self.rates[id].to_bits() == rate.to_bits() {
            return;
        }
        let Some(flow) = self.flows[id].as_mut() else {
            return;
        };
        flow.remaining = flow.remaining_at(now_us, self.rates[id]);
        flow.updated_us = now_us;
        flow.finish_us = finish_time(now_us, flow.remaining, rate);
        self.rates[id] = rate;
        predictions.push((id, flow.finish_us));
    }

    fn is_frozen(&self, id: FlowId, frozen: u32) -> bool {
        self.flow_mark[id] == frozen
    }

    /// Computes the fair share of a link with unfrozen flows: what each could still get.
    fn current_share(&self, link: LinkId) -> f64 {
        self.residual[link].max(0.0) / f64::from(self.unfrozen[link])
    }

    fn queue_share(&mut self, heap: &mut BinaryHeap<Share>, link: LinkId) {
        let share = self.current_share(link);
        self.queued_share[link] = share;
        heap.push(Share { share, order: self.order[link], link });
    }

    /// Finds the link with the least (share, search order) among those with unfrozen
    /// flows and leaves its entry in the heap. On the way it drops entries of links
    /// without unfrozen flows and requeues stale ones.
    fn least_share(&mut self, scratch: &mut Scratch) -> Option<(f64, LinkId)> {
        while let Some(&Share { share, link, .. }) = scratch.heap.peek() {
            if self.unfrozen[link] == 0 {
                scratch.heap.pop();
                continue;
            }
            if self.current_share(link).to_bits() == share.to_bits() {
                return Some((share, link));
            }
            scratch.heap.pop();
            // Only the link's newest entry is requeued, because an older one is a duplicate.
            if share.to_bits() == self.queued_share[link].to_bits() {
                self.queue_share(&mut scratch.heap, link);
            }
        }
        None
    }
}

/// The instant a flow with `remaining` bytes at `rate` finishes, rounded up to the next
/// microsecond so that no transfer beats its rate.
fn finish_time(now_us: u64, remaining: f64, rate: f64) -> u64 {
    if remaining <= 0.0 {
        return now_us;
    }
    if rate <= 0.0 {
        return u64::MAX;
    }
    let micros = (remaining / rate * 1e6).ceil();
    if micros >= (u64::MAX - now_us) as f64 {
        u64::MAX
    } else {
        now_us + micros as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Computes max-min fair rates by textbook water filling over every flow at once.
    /// It is written apart from [`FlowNet`] to check it. All unfrozen flows share one
    /// level, which rises until a link is full or a cap is reached, and the flows there
    /// freeze. `flows` holds (path, cap) pairs, and every path crosses at least one link.
    fn water_filling(capacity: &[f64], flows: &[(Vec<LinkId>, f64)]) -> Vec<f64> {
        let mut rates: Vec<Option<f64>> = vec![None; flows.len()];
        let mut level = 0.0;
        while rates.iter().any(Option::is_none) {
            // Per link: bytes per second left above the current level, and unfrozen flows.
            let headroom = |link: LinkId, rates: &[Option<f64>], level: f64| {
                let mut left = capacity[link];
                let mut count = 0;
                for ((path, _), rate) in flows.iter().zip(rates) {
                    if path.contains(&link) {
                        match rate {
                            Some(rate) => left -= rate,
                            None => {
                                left -= level;
                                count += 1;
                            }
                        }
                    }
                }
                (left, count)
            };
            let mut step = f64::INFINITY;
            for link in 0..capacity.len() {
                let (left, count) = headroom(link, &rates, level);
                if count > 0 {
                    step = step.min(left.max(0.0) / f64::from(count));
                }
            }
            for ((_, cap), rate) in flows.iter().zip(&rates) {
                if rate.is_none() {
                    step = step.min(cap - level);
                }
            }
            level += step;
            let full: Vec<bool> = (0..capacity.len())
                .map(|link| headroom(link, &rates, level).0 <= 1e-9 * capacity[link])
                .collect();
            for ((path, cap), rate) in flows.iter().zip(rates.iter_mut()) {
                let bottlenecked = path.iter().any(|&link| full[link]) || *cap <= level * (1.0 + 1e-12);
                if rate.is_none() && bottlenecked {
                    *rate = Some(level);
                }
            }
        }
        rates.into_iter().map(|rate| rate.unwrap_or(0.0)).collect()
    }

    /// One step of a random run: start a flow, end one, or let time pass and recompute.
    #[derive(Clone, Debug)]
    enum Step {
        /// Links as a bit mask over the network's links, bytes, and an optional cap.
        Start { links: u8, bytes: u32, cap: Option<u32> },
        /// Ends the running flow at this index modulo their number.
        End(usize),
        /// Advances virtual time by this many microseconds and recomputes.
        Recompute(u32),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            3 => (1u8..=255, 1u32..5_000_000, proptest::option::of(1u32..50)).prop_map(|(links, bytes, cap)| Step::Start {
                links,
                bytes,
                cap
            }),
            2 => any::<usize>().prop_map(Step::End),
            2 => (0u32..2_000_000).prop_map(Step::Recompute),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, rng_seed: proptest::test_runner::RngSeed::Fixed(0x5eed), ..ProptestConfig::default() })]

        /// After any sequence of arrivals and departures, the rates after a recompute
        /// equal a from-scratch max-min solution, and the next completion is the
        /// earliest prediction.
        #[test]
        fn incremental_rates_match_from_scratch(
            capacities in proptest::collection::vec(1u32..100, 1..8),
            steps in proptest::collection::vec(step(), 1..60),
            always_search in any::<bool>(),
        ) {
            let mut net = FlowNet::new();
            net.always_search = always_search;
            let capacity: Vec<f64> = capacities.iter().map(|&mbytes| f64::from(mbytes) * 1e6).collect();
            for &bytes_per_second in &capacity {
                net.add_link(bytes_per_second);
            }
            // Running flows: (id, path, cap).
            let mut running: Vec<(FlowId, Vec<LinkId>, f64)> = Vec::new();
            let mut now = 0u64;
            for step in steps {
                match step {
                    Step::Start { links, bytes, cap } => {
                        let path: Vec<LinkId> = (0..capacity.len()).filter(|&link| links & (1 << link) != 0).collect();
                        if path.is_empty() {
                            continue;
                        }
                        let cap = cap.map_or(f64::INFINITY, |mbytes| f64::from(mbytes) * 1e6);
                        let id = net.add_flow(now, path.clone(), f64::from(bytes), cap);
                        running.push((id, path, cap));
                    }
                    Step::End(pick) if !running.is_empty() => {
                        let (id, _, _) = running.swap_remove(pick % running.len());
                        net.remove_flow(now, id);
                    }
                    Step::End(_) => {}
                    Step::Recompute(elapsed) => {
                        now += u64::from(elapsed);
                        net.recompute(now);
                        let specs: Vec<(Vec<LinkId>, f64)> = running.iter().map(|(_, path, cap)| (path.clone(), *cap)).collect();
                        let expected = water_filling(&capacity, &specs);
                        for ((id, path, _), want) in running.iter().zip(expected) {
                            let got = net.rate(*id);
                            prop_assert!(
                                (got - want).abs() <= 1e-6 * want.max(1.0),
                                "flow {id} over {path:?}: incremental rate {got}, from scratch {want}"
                            );
                        }
                        let earliest = running.iter().filter_map(|(id, _, _)| Some((net.finish_us(*id)?, *id))).min();
                        prop_assert_eq!(net.next_completion(), earliest, "next completion is not the earliest prediction");
                    }
                }
            }
        }
    }

    #[test]
    fn filling_every_flow_matches_two_components() {
        // Two flows share link 0: one component holding every flow, so the next
        // recompute fills every flow instead of searching. Then a flow starts on a link
        // of its own, a second component, and each must still get its own rates.
        let mut net = FlowNet::new();
        let shared = net.add_link(10e6);
        let alone = net.add_link(3e6);
        let a = net.add_flow(0, vec![shared], 1e9, f64::INFINITY);
        let b = net.add_flow(0, vec![shared], 1e9, f64::INFINITY);
        net.recompute(0);
        assert!(net.whole_last, "one component held every flow");
        let c = net.add_flow(1, vec![alone], 1e9, f64::INFINITY);
        net.recompute(1);
        assert_eq!(net.rate(a), 5e6);
        assert_eq!(net.rate(b), 5e6);
        assert_eq!(net.rate(c), 3e6);
        net.remove_flow(2, a);
        net.recompute(2);
        assert_eq!(net.rate(b), 10e6);
        assert_eq!(net.rate(c), 3e6);
    }

    #[test]
    fn removal_keeps_moved_flow_removable() {
        // Ending the first of three flows on a link moves the last into its slot; that
        // flow must still come off the link cleanly afterwards.
        let mut net = FlowNet::new();
        let link = net.add_link(9e6);
        let first = net.add_flow(0, vec![link], 1e6, f64::INFINITY);
        let middle = net.add_flow(0, vec![link], 1e6, f64::INFINITY);
        let last = net.add_flow(0, vec![link], 1e6, f64::INFINITY);
        net.remove_flow(0, first);
        net.remove_flow(0, last);
        net.recompute(0);
        let on_link: Vec<FlowId> = net.flows_on(link).collect();
        assert_eq!(on_link, [middle], "flows left on the link");
        assert!(close(net.rate(middle), 9e6), "rate of the remaining flow = {}", net.rate(middle));
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * b.abs().max(1.0)
    }

    #[test]
    fn two_flows_share_one_link() {
        let mut net = FlowNet::new();
        let link = net.add_link(10e6);
        let a = net.add_flow(0, vec![link], 5e6, f64::INFINITY);
        let b = net.add_flow(0, vec![link], 10e6, f64::INFINITY);
        net.recompute(0);
        assert!(close(net.rate(a), 5e6), "rate a = {}", net.rate(a));
        assert!(close(net.rate(b), 5e6), "rate b = {}", net.rate(b));
        assert_eq!(net.next_completion(), Some((1_000_000, a)));

        // When `a` ends at 1 s, `b` has 5 MB left and gets the whole link: done at 1.5 s.
        net.remove_flow(1_000_000, a);
        assert_eq!(net.recompute(1_000_000), 1);
        assert!(close(net.rate(b), 10e6));
        assert_eq!(net.next_completion(), Some((1_500_000, b)));
    }

    #[test]
    fn three_flows_share_a_bottleneck() {
        // Three flows cross a 9 MB/s bottleneck; each also has a private 100 MB/s link.
        let mut net = FlowNet::new();
        let bottleneck = net.add_link(9e6);
        let flows: Vec<FlowId> = (0..3)
            .map(|_| {
                let private = net.add_link(100e6);
                net.add_flow(0, vec![private, bottleneck], 1e6, f64::INFINITY)
            })
            .collect();
        net.recompute(0);
        for flow in flows {
            assert!(
                close(net.rate(flow), 3e6),
                "flow {flow} rate {}",
                net.rate(flow)
            );
        }
    }

    #[test]
    fn chain_of_two_links() {
        // Link A (10 MB/s) feeds link B (4 MB/s). Flow 1 crosses both, flow 2 only A,
        // flow 3 only B. B splits 2 + 2; flow 2 takes what A has left: 8.
        let mut net = FlowNet::new();
        let a = net.add_link(10e6);
        let b = net.add_link(4e6);
        let through = net.add_flow(0, vec![a, b], 1e6, f64::INFINITY);
        let only_a = net.add_flow(0, vec![a], 1e6, f64::INFINITY);
        let only_b = net.add_flow(0, vec![b], 1e6, f64::INFINITY);
        net.recompute(0);
        assert!(
            close(net.rate(through), 2e6),
            "through = {}",
            net.rate(through)
        );
        assert!(
            close(net.rate(only_b), 2e6),
            "only_b = {}",
            net.rate(only_b)
        );
        assert!(
            close(net.rate(only_a), 8e6),
            "only_a = {}",
            net.rate(only_a)
        );
    }

    #[test]
    fn flow_cap_frees_capacity_for_others() {
        let mut net = FlowNet::new();
        let link = net.add_link(10e6);
        let slow = net.add_flow(0, vec![link], 1e6, 1e6);
        let fast = net.add_flow(0, vec![link], 1e6, f64::INFINITY);
        net.recompute(0);
        assert!(close(net.rate(slow), 1e6));
        assert!(close(net.rate(fast), 9e6));
    }

    #[test]
    fn separate_components_keep_rates() {
        let mut net = FlowNet::new();
        let left = net.add_link(10e6);
        let right = net.add_link(20e6);
        let a = net.add_flow(0, vec![left], 1e9, f64::INFINITY);
        let b = net.add_flow(0, vec![right], 1e9, f64::INFINITY);
        net.recompute(0);
        let b_finish = net.finish_us(b);
        let c = net.add_flow(500_000, vec![left], 1e9, f64::INFINITY);
        assert_eq!(
            net.recompute(500_000),
            2,
            "only the flows on the changed link are re-predicted"
        );
        assert_eq!(net.finish_us(b), b_finish);
        assert!(close(net.rate(a), 5e6));
        assert!(close(net.rate(c), 5e6));
        assert!(close(net.rate(b), 20e6));
    }

    #[test]
    fn remaining_bytes_follow_rate_changes() {
        let mut net = FlowNet::new();
        let link = net.add_link(1e6);
        let a = net.add_flow(0, vec![link], 2e6, f64::INFINITY);
        net.recompute(0);
        let b = net.add_flow(1_000_000, vec![link], 1e6, f64::INFINITY);
        net.recompute(1_000_000);
        // `a` sent 1 MB alone, then shares: 1 MB left at 0.5 MB/s.
        assert!(close(net.remove_flow(1_000_000, a), 1e6));
        assert!(close(net.remove_flow(1_000_000, b), 1e6));
    }
}
