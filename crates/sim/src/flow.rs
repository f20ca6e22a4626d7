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
use std::collections::BinaryHeap;

use crate::finish_queue::FinishQueue;

/// Index of a directed link.
pub type LinkId = usize;
/// Index of a flow; indices of finished flows are reused.
pub type FlowId = usize;

#[derive(Debug)]
struct Flow {
    path: Vec<LinkId>,
    /// The flow's own rate limit in bytes per second (a loss-limited TCP rate), or
    /// infinity.
    cap: f64,
    /// The current rate in bytes per second.
    rate: f64,
    /// Bytes left at `updated_us`.
    remaining: f64,
    updated_us: u64,
    /// The predicted instant its last byte leaves the path, in microseconds.
    finish_us: u64,
}

/// Buffers that [`FlowNet::recompute`] reuses, so a recompute allocates only when a
/// component is larger than any before it.
#[derive(Debug, Default)]
struct Scratch {
    /// The component's links and flows, in the order the search found them.
    links: Vec<LinkId>,
    flows: Vec<FlowId>,
    stack: Vec<LinkId>,
    /// Links with unfrozen flows, for the linear bottleneck scan.
    active: Vec<LinkId>,
    heap: BinaryHeap<Share>,
    /// (cap, flow) of the component's capped flows, smallest cap first.
    capped: Vec<(f64, FlowId)>,
    to_freeze: Vec<FlowId>,
    touched: Vec<LinkId>,
}

/// Links, the flows on them and their max-min fair rates.
#[derive(Debug, Default)]
pub struct FlowNet {
    capacity: Vec<f64>,
    /// The flows on each link, in no particular but deterministic order.
    link_flows: Vec<Vec<FlowId>>,
    flows: Vec<Option<Flow>>,
    free: Vec<FlowId>,
    /// Predicted completions, one entry per flow that has been through a recompute.
    finishing: FinishQueue,
    dirty: Vec<LinkId>,
    /// Scratch space for [`FlowNet::recompute`], indexed by link and by flow.
    link_mark: Vec<u64>,
    flow_mark: Vec<u64>,
    residual: Vec<f64>,
    unfrozen: Vec<u32>,
    /// Per link: `residual / unfrozen` as of the last change to either, for the scan.
    share: Vec<f64>,
    generation: u64,
    scratch: Scratch,
}

/// Components with at most this many links find bottlenecks by a linear scan, which
/// beats a heap's pushes and stale pops at this size.
const SCAN_LIMIT: usize = 256;

/// A link's fair share in the progressive-filling heap, smallest first.
#[derive(Debug, PartialEq)]
struct Share(f64, LinkId);

impl Eq for Share {}

impl PartialOrd for Share {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Share {
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .0
            .total_cmp(&self.0)
            .then_with(|| other.1.cmp(&self.1))
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
        self.share.push(0.0);
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
        self.link_flows[link].iter().copied()
    }

    /// Starts a flow of `bytes` over `path` at `now_us`, limited to `cap` bytes per second
    /// on its own (infinity for none). Its rate is 0 until the next recompute.
    pub fn add_flow(&mut self, now_us: u64, path: Vec<LinkId>, bytes: f64, cap: f64) -> FlowId {
        let flow = Flow {
            path,
            cap,
            rate: 0.0,
            remaining: bytes,
            updated_us: now_us,
            finish_us: u64::MAX,
        };
        let id = match self.free.pop() {
            Some(id) => id,
            None => {
                self.flows.push(None);
                self.flow_mark.push(0);
                self.flows.len() - 1
            }
        };
        for &link in &flow.path {
            self.link_flows[link].push(id);
            self.dirty.push(link);
        }
        self.flows[id] = Some(flow);
        id
    }

    /// Ends a flow, finished or cancelled, and returns the bytes it had left.
    pub fn remove_flow(&mut self, now_us: u64, id: FlowId) -> f64 {
        let Some(flow) = self.flows.get_mut(id).and_then(Option::take) else {
            return 0.0;
        };
        for &link in &flow.path {
            let flows = &mut self.link_flows[link];
            if let Some(position) = flows.iter().position(|&other| other == id) {
                flows.swap_remove(position);
            }
            self.dirty.push(link);
        }
        self.finishing.remove(id);
        self.free.push(id);
        let elapsed = now_us.saturating_sub(flow.updated_us) as f64 / 1e6;
        (flow.remaining - flow.rate * elapsed).max(0.0)
    }

    /// Whether a flow with this id is running.
    pub fn contains(&self, id: FlowId) -> bool {
        self.flows.get(id).is_some_and(Option::is_some)
    }

    /// The current rate of a flow in bytes per second, 0 if it is not running.
    pub fn rate(&self, id: FlowId) -> f64 {
        self.flows
            .get(id)
            .and_then(Option::as_ref)
            .map_or(0.0, |flow| flow.rate)
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
        self.generation += 3;
        let generation = self.generation;
        let mut scratch = std::mem::take(&mut self.scratch);

        // 1. The connected component of the changed links, by depth-first search.
        scratch.links.clear();
        scratch.flows.clear();
        scratch.stack.clear();
        std::mem::swap(&mut scratch.stack, &mut self.dirty);
        while let Some(link) = scratch.stack.pop() {
            if self.link_mark[link] == generation {
                continue;
            }
            self.link_mark[link] = generation;
            scratch.links.push(link);
            for &id in &self.link_flows[link] {
                if self.flow_mark[id] == generation {
                    continue;
                }
                self.flow_mark[id] = generation;
                scratch.flows.push(id);
                if let Some(flow) = &self.flows[id] {
                    for &next in &flow.path {
                        if self.link_mark[next] != generation {
                            scratch.stack.push(next);
                        }
                    }
                }
            }
        }

        // 2. Bring each flow's remaining bytes up to `now` at its old rate.
        scratch.capped.clear();
        for &id in &scratch.flows {
            if let Some(flow) = self.flows[id].as_mut() {
                let elapsed = now_us.saturating_sub(flow.updated_us) as f64 / 1e6;
                flow.remaining = (flow.remaining - flow.rate * elapsed).max(0.0);
                flow.updated_us = now_us;
                if flow.cap.is_finite() {
                    scratch.capped.push((flow.cap, id));
                }
            }
        }
        scratch
            .capped
            .sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));

        // 3. Progressive filling over the component. A small component finds each
        // bottleneck by scanning its links; a large one keeps them in a heap.
        let scan = scratch.links.len() <= SCAN_LIMIT;
        scratch.heap.clear();
        scratch.active.clear();
        for &link in &scratch.links {
            self.residual[link] = self.capacity[link];
            self.unfrozen[link] = self.link_flows[link].len() as u32;
            if self.unfrozen[link] > 0 {
                let share = self.residual[link] / f64::from(self.unfrozen[link]);
                if scan {
                    self.share[link] = share;
                    scratch.active.push(link);
                } else {
                    scratch.heap.push(Share(share, link));
                }
            }
        }
        let mut next_capped = 0;
        let mut changed = 0;
        // A flow is frozen once its mark moves past this generation.
        let frozen = generation + 1;
        let touched_mark = frozen + 1;
        loop {
            // The link with the smallest fair share; ties go to the link found first in
            // the scan, or to the lower id in the heap. Stale heap entries (share
            // changed, or no unfrozen flow left) are dropped on the way.
            let bottleneck = if scan {
                // One pass drops links without unfrozen flows, keeping the order, and
                // finds the least share among the rest.
                let mut best: Option<(f64, LinkId)> = None;
                let mut kept = 0;
                for position in 0..scratch.active.len() {
                    let link = scratch.active[position];
                    if self.unfrozen[link] == 0 {
                        continue;
                    }
                    scratch.active[kept] = link;
                    kept += 1;
                    let share = self.share[link];
                    if best.is_none_or(|(least, _)| share < least) {
                        best = Some((share, link));
                    }
                }
                scratch.active.truncate(kept);
                best
            } else {
                loop {
                    match scratch.heap.peek() {
                        Some(Share(share, link)) => {
                            let count = self.unfrozen[*link];
                            let current = if count == 0 {
                                f64::NAN
                            } else {
                                self.residual[*link].max(0.0) / f64::from(count)
                            };
                            if count == 0 || current.to_bits() != share.to_bits() {
                                scratch.heap.pop();
                                continue;
                            }
                            break Some((*share, *link));
                        }
                        None => break None,
                    }
                }
            };
            while next_capped < scratch.capped.len()
                && self.flow_mark[scratch.capped[next_capped].1] == frozen
            {
                next_capped += 1;
            }
            let cap = scratch.capped.get(next_capped).copied();
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
                    let flow_mark = &self.flow_mark;
                    scratch.to_freeze.extend(
                        self.link_flows[link]
                            .iter()
                            .copied()
                            .filter(|&id| flow_mark[id] != frozen),
                    );
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
                self.flow_mark[id] = frozen;
                let Some(flow) = self.flows[id].as_mut() else {
                    continue;
                };
                for &link in &flow.path {
                    self.residual[link] -= rate;
                    self.unfrozen[link] -= 1;
                    if self.link_mark[link] != touched_mark {
                        self.link_mark[link] = touched_mark;
                        scratch.touched.push(link);
                    }
                }

                // 4. A new prediction for a flow whose rate changed. The others keep
                // theirs, which their updated remaining bytes would only round.
                if flow.rate.to_bits() == rate.to_bits() && flow.finish_us != u64::MAX {
                    continue;
                }
                changed += 1;
                flow.rate = rate;
                flow.finish_us = finish_time(now_us, flow.remaining, rate);
                self.finishing.set(id, flow.finish_us);
            }
            for &link in &scratch.touched {
                self.link_mark[link] = generation;
                if self.unfrozen[link] > 0 {
                    let share = self.residual[link].max(0.0) / f64::from(self.unfrozen[link]);
                    if scan {
                        self.share[link] = share;
                    } else {
                        scratch.heap.push(Share(share, link));
                    }
                }
            }
        }

        #[cfg(debug_assertions)]
        for &link in &scratch.links {
            let load: f64 = self.link_flows[link]
                .iter()
                .filter_map(|&id| self.flows[id].as_ref())
                .map(|flow| flow.rate)
                .sum();
            debug_assert!(
                load <= self.capacity[link] * (1.0 + 1e-9),
                "link {link} overloaded: {load} > {}",
                self.capacity[link]
            );
        }
        self.scratch = scratch;
        changed
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
