//! The modelled network: links, routes and paths between nodes.
//!
//! Each node has a network interface, one directed link each way. Each site has an
//! access link, one directed link each way, from its LAN to a core vertex. Core links
//! join vertices; with no core links the core is uncongested and every site reaches every
//! other through its access links alone. Routes between sites follow the shortest total
//! one-way latency (Dijkstra, ties broken by hop count and then vertex order) over the
//! links that are up.
//!
//! A path between nodes at the same site crosses their interfaces only; a path between
//! sites crosses the sender's interface, its site's uplink, the core route, the receiving
//! site's downlink and the receiver's interface.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::flow::{FlowNet, LinkId};
use crate::scenario::{LinkRef, Scenario};

/// A route between two nodes.
#[derive(Clone, Debug)]
pub struct Path {
    /// The directed links crossed, in order.
    pub links: Vec<LinkId>,
    /// The one-way latency in microseconds.
    pub latency_us: u64,
    /// The probability that a packet is lost somewhere on the path.
    pub loss: f64,
}

#[derive(Clone, Debug)]
struct Route {
    links: Vec<LinkId>,
    latency_us: u64,
    loss: f64,
}

/// The role of a directed link, for reports.
#[derive(Clone, Debug)]
pub enum LinkKind {
    /// A node's interface.
    Nic,
    /// A site's access uplink.
    AccessUp(usize),
    /// A site's access downlink.
    AccessDown(usize),
    /// One direction of a core link.
    Core(usize),
}

/// Links with their state and the routes between sites.
#[derive(Debug)]
pub struct Network {
    /// The flow model over these links.
    pub flows: FlowNet,
    /// Each link's role.
    pub kinds: Vec<LinkKind>,
    node_site: Vec<usize>,
    /// Each node's interface links; `None` where the interface can never be the
    /// bottleneck (see [`Network::new`]).
    nic_up: Vec<Option<LinkId>>,
    nic_down: Vec<Option<LinkId>>,
    access_up: Vec<LinkId>,
    access_down: Vec<LinkId>,
    access_latency: Vec<u64>,
    access_loss: Vec<f64>,
    lan_latency: Vec<u64>,
    access_alive: Vec<bool>,
    /// Per core link: (a to b, b to a).
    core_directed: Vec<(LinkId, LinkId)>,
    core_alive: Vec<bool>,
    vertex_count: usize,
    site_vertex: Vec<usize>,
    core: Vec<(usize, usize, u64, f64)>,
    /// `routes[a][b]`: the core route from site a's vertex to site b's vertex.
    routes: Vec<Vec<Option<Route>>>,
}

impl Network {
    /// Builds every link of `scenario`; `node_site` gives each node's site.
    pub fn new(scenario: &Scenario, node_site: Vec<usize>) -> Network {
        let mut flows = FlowNet::new();
        let mut kinds = Vec::new();
        let mut add = |flows: &mut FlowNet, capacity: f64, kind: LinkKind| {
            kinds.push(kind);
            flows.add_link(capacity)
        };
        // A node alone at its site sends and receives only over the access link, so an
        // interface at least as fast as that link never limits a flow. Leaving such
        // interfaces out keeps max-min components small and changes no rate.
        let mut nic_up = Vec::new();
        let mut nic_down = Vec::new();
        for &site in &node_site {
            let spec = &scenario.sites[site];
            if spec.nodes == 1 && spec.nic >= spec.up.max(spec.down) {
                nic_up.push(None);
                nic_down.push(None);
            } else {
                nic_up.push(Some(add(&mut flows, spec.nic, LinkKind::Nic)));
                nic_down.push(Some(add(&mut flows, spec.nic, LinkKind::Nic)));
            }
        }
        let mut access_up = Vec::new();
        let mut access_down = Vec::new();
        for (index, site) in scenario.sites.iter().enumerate() {
            access_up.push(add(&mut flows, site.up, LinkKind::AccessUp(index)));
            access_down.push(add(&mut flows, site.down, LinkKind::AccessDown(index)));
        }
        let mut core_directed = Vec::new();
        for (index, link) in scenario.core_links.iter().enumerate() {
            let forward = add(&mut flows, link.capacity, LinkKind::Core(index));
            let backward = add(&mut flows, link.capacity, LinkKind::Core(index));
            core_directed.push((forward, backward));
        }
        let mut network = Network {
            flows,
            kinds,
            node_site,
            nic_up,
            nic_down,
            access_up,
            access_down,
            access_latency: scenario.sites.iter().map(|site| site.latency_us).collect(),
            access_loss: scenario.sites.iter().map(|site| site.loss).collect(),
            lan_latency: scenario.sites.iter().map(|site| site.lan_latency_us).collect(),
            access_alive: vec![true; scenario.sites.len()],
            core_alive: vec![true; scenario.core_links.len()],
            vertex_count: scenario.vertices.len(),
            site_vertex: scenario.sites.iter().map(|site| site.vertex).collect(),
            core: scenario.core_links.iter().map(|link| (link.a, link.b, link.latency_us, link.loss)).collect(),
            routes: Vec::new(),
            core_directed,
        };
        network.compute_routes();
        network
    }

    /// The site of `node`.
    pub fn site_of(&self, node: usize) -> usize {
        self.node_site[node]
    }

    /// The directed link ids of a site's access link: (up, down).
    pub fn access_links(&self, site: usize) -> (LinkId, LinkId) {
        (self.access_up[site], self.access_down[site])
    }

    /// The directed link ids of a core link.
    pub fn core_links(&self, index: usize) -> (LinkId, LinkId) {
        self.core_directed[index]
    }

    /// Marks a link up or down and recomputes routes. Returns the directed links it
    /// covers.
    pub fn set_alive(&mut self, link: LinkRef, alive: bool) -> Vec<LinkId> {
        let directed = match link {
            LinkRef::Access(site) => {
                self.access_alive[site] = alive;
                vec![self.access_up[site], self.access_down[site]]
            }
            LinkRef::Core(index) => {
                self.core_alive[index] = alive;
                vec![self.core_directed[index].0, self.core_directed[index].1]
            }
        };
        self.compute_routes();
        directed
    }

    /// Whether every link of `path` is up.
    pub fn path_alive(&self, path: &[LinkId]) -> bool {
        path.iter().all(|&link| match self.kinds[link] {
            LinkKind::Nic => true,
            LinkKind::AccessUp(site) | LinkKind::AccessDown(site) => self.access_alive[site],
            LinkKind::Core(index) => self.core_alive[index],
        })
    }

    /// The one-way latency from node `from` to node `to`, or `None` without a route.
    pub fn latency(&self, from: usize, to: usize) -> Option<u64> {
        let (a, b) = (self.node_site[from], self.node_site[to]);
        if a == b {
            return Some(self.lan_latency[a]);
        }
        if !self.access_alive[a] || !self.access_alive[b] {
            return None;
        }
        let route = self.routes[a][b].as_ref()?;
        Some(self.access_latency[a] + route.latency_us + self.access_latency[b])
    }

    /// The path from node `from` to node `to`, or `None` without a route.
    pub fn path(&self, from: usize, to: usize) -> Option<Path> {
        let (a, b) = (self.node_site[from], self.node_site[to]);
        if a == b {
            return Some(Path {
                links: self.nic_up[from].into_iter().chain(self.nic_down[to]).collect(),
                latency_us: self.lan_latency[a],
                loss: 0.0,
            });
        }
        let latency_us = self.latency(from, to)?;
        let route = self.routes[a][b].as_ref()?;
        let mut links = Vec::with_capacity(route.links.len() + 4);
        links.extend(self.nic_up[from]);
        links.push(self.access_up[a]);
        links.extend_from_slice(&route.links);
        links.push(self.access_down[b]);
        links.extend(self.nic_down[to]);
        let delivered = (1.0 - self.access_loss[a]) * (1.0 - route.loss) * (1.0 - self.access_loss[b]);
        Some(Path { links, latency_us, loss: 1.0 - delivered })
    }

    /// The core route between two sites' vertices, as (latency, directed links), or
    /// `None`. With no core links every pair is joined directly at zero latency.
    fn route_from(&self, source: usize) -> Vec<Option<Route>> {
        let sites = self.site_vertex.len();
        if self.core.is_empty() {
            return (0..sites).map(|_| Some(Route { links: Vec::new(), latency_us: 0, loss: 0.0 })).collect();
        }
        let mut adjacent: Vec<Vec<(usize, usize, bool)>> = vec![Vec::new(); self.vertex_count];
        for (index, &(a, b, _, _)) in self.core.iter().enumerate() {
            if self.core_alive[index] {
                adjacent[a].push((b, index, true));
                adjacent[b].push((a, index, false));
            }
        }
        // Dijkstra by (latency, hops, vertex) for a deterministic choice among ties.
        let mut best: Vec<Option<(u64, u32)>> = vec![None; self.vertex_count];
        let mut via: Vec<Option<(usize, usize, bool)>> = vec![None; self.vertex_count];
        let start = self.site_vertex[source];
        best[start] = Some((0, 0));
        let mut heap = BinaryHeap::from([Reverse((0u64, 0u32, start))]);
        while let Some(Reverse((latency, hops, vertex))) = heap.pop() {
            if best[vertex] != Some((latency, hops)) {
                continue;
            }
            for &(next, index, forward) in &adjacent[vertex] {
                let candidate = (latency + self.core[index].2, hops + 1);
                if best[next].is_none_or(|known| candidate < known) {
                    best[next] = Some(candidate);
                    via[next] = Some((vertex, index, forward));
                    heap.push(Reverse((candidate.0, candidate.1, next)));
                }
            }
        }
        (0..sites)
            .map(|target| {
                let end = self.site_vertex[target];
                let (latency_us, _) = best[end]?;
                let mut links = Vec::new();
                let mut delivered = 1.0;
                let mut vertex = end;
                while let Some((previous, index, forward)) = via[vertex] {
                    let (ab, ba) = self.core_directed[index];
                    links.push(if forward { ab } else { ba });
                    delivered *= 1.0 - self.core[index].3;
                    vertex = previous;
                }
                links.reverse();
                Some(Route { links, latency_us, loss: 1.0 - delivered })
            })
            .collect()
    }

    fn compute_routes(&mut self) {
        self.routes = (0..self.site_vertex.len()).map(|site| self.route_from(site)).collect();
    }
}

/// The TCP throughput limit under random loss (Mathis, Semke, Mahdavi and Ott, 1997):
/// rate ≤ (MSS / RTT) · C / √p with C = √(3/2) ≈ 1.22, in bytes per second; infinity
/// without loss.
pub fn mathis_cap(one_way_latency_us: u64, loss: f64) -> f64 {
    if loss <= 0.0 {
        return f64::INFINITY;
    }
    const MSS_BYTES: f64 = 1460.0;
    // A floor of 1 ms RTT keeps LAN paths from an absurd limit.
    let rtt_s = (2.0 * one_way_latency_us as f64 / 1e6).max(1e-3);
    MSS_BYTES / rtt_s * (1.5f64).sqrt() / loss.sqrt()
}
