//! The lower bound on the makespan: no distribution strategy can finish sooner.
//!
//! F is the patch size, the origin site s has uplink u_s, and the N receiving sites have
//! uplinks u_i and downlinks d_i. Every term below holds for any strategy, so their
//! maximum does too; `docs/simulator.md` derives each.
//!
//! 1. Kumar and Ross (2006), for sites behind access links on an uncongested core:
//!    T ≥ max{ F/u_s, F/d_min, N·F/(u_s + Σu_i) }. The third term holds on any core:
//!    each receiving site takes in at least F over its downlink, and every byte that
//!    crosses the WAN left through some site's uplink.
//! 2. Propagation: site i learns of the patch no sooner than the one-way latency L_i from
//!    the origin, and then F bytes must pass its downlink: T ≥ L_i + F/d_i.
//! 3. Cuts: every chunk starts at the origin, so at least F bytes cross every cut that
//!    separates the origin site's LAN from site i's LAN. The smallest such cut equals the
//!    maximum flow from one LAN to the other over the access and core links (max-flow
//!    min-cut theorem), so T ≥ F / maxflow(s, i). On an uncongested core the max flow is
//!    min(u_s, d_i) and the term adds nothing to 1; a core graph can make it larger.
//! 4. The origin node's interface: T ≥ F / nic_origin.
//!
//! With an origin egress budget of B bytes (B ≥ F), peers must upload what the origin
//! does not send: T_B = max{ T, (N·F − B) / U }. Every receiving site takes in at least
//! F over its downlink, so N·F bytes cross receiving sites' downlinks; at most B of them
//! left the origin node, and the rest left through an uplink other than the origin
//! node's: a receiving site's (Σu_i) or, when other nodes share the origin's site, the
//! origin site's (u_s). U is the sum of those uplinks.

use std::collections::VecDeque;

use crate::scenario::Scenario;

/// The bound and the term that sets it.
#[derive(Clone, Debug)]
pub struct LowerBound {
    /// The bound in seconds.
    pub seconds: f64,
    /// Every term, named, in seconds.
    pub terms: Vec<(String, f64)>,
}

impl LowerBound {
    /// Returns the name of the largest term.
    pub fn binding_term(&self) -> &str {
        self.terms
            .iter()
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(name, _)| name.as_str())
            .unwrap_or("none")
    }
}

/// Computes the lower bound for the first patch of `scenario` over its links as
/// configured at the start, ignoring loss (loss only slows flows down).
pub fn lower_bound(scenario: &Scenario) -> LowerBound {
    let f = scenario.patch.bytes as f64;
    let origin = scenario.origin_site();
    let receivers: Vec<usize> = (0..scenario.sites.len()).filter(|&site| site != origin).collect();
    let u_s = scenario.sites[origin].up;
    let mut terms = Vec::new();
    terms.push(("origin interface F/nic".to_string(), f / scenario.sites[origin].nic));
    if receivers.is_empty() {
        let seconds = terms.iter().map(|t| t.1).fold(0.0, f64::max);
        return LowerBound { seconds, terms };
    }
    let d_min = receivers.iter().map(|&i| scenario.sites[i].down).fold(f64::INFINITY, f64::min);
    let upload_sum: f64 = u_s + receivers.iter().map(|&i| scenario.sites[i].up).sum::<f64>();
    terms.push(("kumar-ross F/u_s".to_string(), f / u_s));
    terms.push(("kumar-ross F/d_min".to_string(), f / d_min));
    terms.push(("kumar-ross N·F/(u_s+Σu_i)".to_string(), receivers.len() as f64 * f / upload_sum));

    let latencies = propagation_latencies_us(scenario);
    let propagation = receivers
        .iter()
        .filter_map(|&i| latencies[i].map(|l| l as f64 / 1e6 + f / scenario.sites[i].down))
        .fold(0.0, f64::max);
    terms.push(("propagation max(L_i + F/d_i)".to_string(), propagation));

    if !scenario.core_links.is_empty() {
        let cut = receivers
            .iter()
            .map(|&i| {
                let flow = max_flow(scenario, origin, i);
                if flow > 0.0 { f / flow } else { f64::INFINITY }
            })
            .fold(0.0, f64::max);
        terms.push(("cut max F/maxflow(s,i)".to_string(), cut));
    }
    let seconds = terms.iter().map(|t| t.1).fold(0.0, f64::max);
    LowerBound { seconds, terms }
}

/// Computes T_B, the bound under an origin egress budget of `budget_bytes`, from the
/// bound `plain` without one. Without a budget it is `plain`.
pub fn budget_bound(scenario: &Scenario, plain: &LowerBound, budget_bytes: Option<u64>) -> f64 {
    let Some(budget) = budget_bytes else {
        return plain.seconds;
    };
    let f = scenario.patch.bytes as f64;
    let origin = scenario.origin_site();
    let receivers: Vec<usize> = (0..scenario.sites.len()).filter(|&site| site != origin).collect();
    let mut uplinks: f64 = receivers.iter().map(|&i| scenario.sites[i].up).sum();
    if scenario.sites[origin].nodes > 1 {
        uplinks += scenario.sites[origin].up;
    }
    let peer_bytes = (receivers.len() as f64 * f - budget as f64).max(0.0);
    let term = if uplinks > 0.0 { peer_bytes / uplinks } else if peer_bytes > 0.0 { f64::INFINITY } else { 0.0 };
    plain.seconds.max(term)
}

/// Computes the one-way latency from the origin site's LAN to each site's LAN over the shortest
/// core route, or `None` where there is none.
fn propagation_latencies_us(scenario: &Scenario) -> Vec<Option<u64>> {
    let origin = scenario.origin_site();
    let vertices = scenario.vertices.len();
    let mut best: Vec<Option<u64>> = vec![None; vertices];
    let start = scenario.sites[origin].vertex;
    if scenario.core_links.is_empty() {
        best = vec![Some(0); vertices];
    } else {
        best[start] = Some(0);
        // Bellman-Ford style relaxation; the graphs are small.
        let mut changed = true;
        while changed {
            changed = false;
            for link in &scenario.core_links {
                for (x, y) in [(link.a, link.b), (link.b, link.a)] {
                    if let Some(at) = best[x] {
                        let candidate = at + link.latency_us;
                        if best[y].is_none_or(|known| candidate < known) {
                            best[y] = Some(candidate);
                            changed = true;
                        }
                    }
                }
            }
        }
    }
    scenario
        .sites
        .iter()
        .map(|site| best[site.vertex].map(|core| scenario.sites[origin].latency_us + core + site.latency_us))
        .collect()
}

/// Computes the maximum flow from site `from`'s LAN to site `to`'s LAN, in bytes per second
/// (Edmonds–Karp). The graph has a vertex per core vertex and per site LAN, an edge LAN
/// to vertex of the site's uplink capacity, vertex to LAN of its downlink, and both
/// directions of every core link.
pub fn max_flow(scenario: &Scenario, from: usize, to: usize) -> f64 {
    let vertices = scenario.vertices.len();
    let lan = |site: usize| vertices + site;
    let count = vertices + scenario.sites.len();
    let mut capacity = vec![vec![0.0f64; count]; count];
    for (index, site) in scenario.sites.iter().enumerate() {
        capacity[lan(index)][site.vertex] += site.up;
        capacity[site.vertex][lan(index)] += site.down;
    }
    if scenario.core_links.is_empty() {
        // An uncongested core: every vertex reaches every other without limit.
        for (a, row) in capacity.iter_mut().enumerate().take(vertices) {
            for (b, cell) in row.iter_mut().enumerate().take(vertices) {
                if a != b {
                    *cell = f64::INFINITY;
                }
            }
        }
    }
    for link in &scenario.core_links {
        capacity[link.a][link.b] += link.capacity;
        capacity[link.b][link.a] += link.capacity;
    }
    let (source, sink) = (lan(from), lan(to));
    let mut total = 0.0;
    loop {
        let mut parent: Vec<Option<usize>> = vec![None; count];
        parent[source] = Some(source);
        let mut queue = VecDeque::from([source]);
        while let Some(vertex) = queue.pop_front() {
            if vertex == sink {
                break;
            }
            for next in 0..count {
                if parent[next].is_none() && capacity[vertex][next] > 1e-9 {
                    parent[next] = Some(vertex);
                    queue.push_back(next);
                }
            }
        }
        if parent[sink].is_none() {
            return total;
        }
        let mut bottleneck = f64::INFINITY;
        let mut vertex = sink;
        while vertex != source {
            let previous = parent[vertex].unwrap_or(source);
            bottleneck = bottleneck.min(capacity[previous][vertex]);
            vertex = previous;
        }
        if !bottleneck.is_finite() {
            return f64::INFINITY;
        }
        let mut vertex = sink;
        while vertex != source {
            let previous = parent[vertex].unwrap_or(source);
            capacity[previous][vertex] -= bottleneck;
            capacity[vertex][previous] += bottleneck;
            vertex = previous;
        }
        total += bottleneck;
    }
}
