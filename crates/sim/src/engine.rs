//! The discrete-event driver: real protocol cores over the modelled network.
//!
//! One [`World`] runs one strategy. It owns a [`Node`] per simulated node, each node's
//! store (which manifests and chunks it holds, whether it assembled a patch) and the
//! [`Network`]. Everything the core decides arrives as an [`Action`]; the world carries
//! it out under virtual time:
//!
//! - a `Send` or a request arrives after the path's one-way latency; control messages and
//!   requests are small, so they take no bandwidth;
//! - a served chunk or manifest body becomes a flow over the path, sharing links max-min
//!   fairly with every other flow, and arrives one latency after its last byte leaves
//!   the sender (the flow model of [`crate::flow`]);
//! - a gossiped announcement floods the overlay: each node that accepts it forwards it to
//!   its connected peers, after the link latency plus a per-hop validation delay, which
//!   is how gossipsub spreads a message that every node validates;
//! - a request the core gives up on (its timeout) has its flow cancelled, as libp2p's
//!   request-response closes the stream on timeout.
//!
//! Events are ordered by (time, sequence number), so the same scenario and seed replay
//! exactly. The event queue is a binary heap: O(log n) per event.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::sync::Arc;
use std::time::Duration;

use patchmesh_core::wire::{DeclineReason, FetchRequest, FetchResponse, Message};
use patchmesh_core::{
    Action, Announcement, BodyOutcome, ChunkOutcome, Event, InboundId, Manifest, Node, NodeConfig,
    PatchKey, PeerId, RequestId, Role, SourcePolicy, Timestamp, TrustPolicy, Validation,
};
use patchmesh_core::Bitfield;
use tracing::{debug, warn};

use crate::fast_hash::{FastMap, FastSet};
use crate::flow::FlowId;
use crate::manifest::{START, publisher, synthetic_manifest};
use patchmesh_core::rng::SplitMix64;

use crate::overlay::build_overlay;
use crate::network::{Network, mathis_cap};
use crate::scenario::{EventKind, LinkRef, NodeRef, Scenario, Strategy};

/// One node's disk contents, which survive a crash.
#[derive(Debug, Default)]
struct Store {
    manifests: BTreeMap<PatchKey, Arc<Manifest>>,
    chunks: BTreeMap<PatchKey, Bitfield>,
    assembled: BTreeSet<PatchKey>,
}

struct SimNode {
    name: PeerId,
    config: NodeConfig,
    core: Option<Node>,
    store: Store,
    /// The instant of the pending timer event, so each deadline is queued once.
    timer: Option<u64>,
    /// Virtual time at which the node first held each patch assembled.
    completed: BTreeMap<PatchKey, u64>,
}

enum Payload {
    Chunk { patch: PatchKey, index: u32 },
    Body(Vec<u8>),
}

struct FlowJob {
    server: usize,
    requester: usize,
    request: RequestId,
    epoch: u64,
    payload: Payload,
    bytes: u64,
    latency_us: u64,
    links: Vec<usize>,
}

struct Outstanding {
    server: usize,
    deadline_us: u64,
    flow: Option<FlowId>,
}

enum Outcome {
    Chunk { patch: PatchKey, index: u32, outcome: ChunkOutcome },
    Body(BodyOutcome),
}

enum Ev {
    Message { from: usize, to: usize, epoch: u64, message: Message },
    Gossip { from: usize, to: usize, epoch: u64, announcement: Announcement },
    Request { from: usize, to: usize, epoch: u64, request: RequestId, fetch: FetchRequest },
    Response { from: usize, to: usize, epoch: u64, request: RequestId, outcome: Outcome },
    Timer { node: usize },
    Scenario(usize),
    /// A cap window starts or ends somewhere.
    Caps,
}

/// A queue entry; the event itself waits in a slab so the heap moves 24 bytes, not a
/// whole message.
struct Queued {
    at: u64,
    sequence: u64,
    slot: usize,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.sequence) == (other.at, other.sequence)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Queued {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.sequence).cmp(&(other.at, other.sequence))
    }
}

/// Progress of a run, for a progress bar.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    /// Nodes that hold the first patch assembled.
    pub complete: usize,
    /// Nodes that should.
    pub total: usize,
    /// Virtual time in seconds.
    pub virtual_s: f64,
}

/// What became of one node in a run.
#[derive(Clone, Copy, Debug)]
pub struct NodeOutcome {
    /// The node's site.
    pub site: usize,
    /// Whether it is the origin node.
    pub origin: bool,
    /// When it first held the first patch assembled, in microseconds, if ever.
    pub completed_us: Option<u64>,
    /// Whether it was running when the run stopped.
    pub running: bool,
}

/// The outcome of one strategy's run, before it becomes a report.
#[derive(Clone, Debug)]
pub struct RunOutcome {
    /// The strategy.
    pub strategy: Strategy,
    /// Per node, in scenario order.
    pub nodes: Vec<NodeOutcome>,
    /// Chunk payload bytes of the first patch the origin node served.
    pub origin_egress_bytes: u64,
    /// Chunks of the first patch the origin served past its egress budget.
    pub origin_budget_overruns: u64,
    /// Per site: chunk payload bytes of the first patch that entered over its access
    /// link.
    pub wan_ingress: Vec<u64>,
    /// Per site: chunk payload bytes of the first patch that left over its access link.
    pub wan_egress: Vec<u64>,
    /// Per access and core link: (name, bytes carried in each direction), all patches.
    pub link_bytes: Vec<(String, u64, u64)>,
    /// Per capped access link direction: its load and its cap over time.
    pub cap_traces: Vec<CapTrace>,
    /// Per later patch: (patch id, microseconds until every running node held it), if
    /// it finished.
    pub later_patches: Vec<(String, Option<u64>)>,
    /// Virtual time when the run stopped, in microseconds.
    pub end_us: u64,
    /// Events processed.
    pub events: u64,
}

/// The load and the cap of one capped access link direction, each a step function of
/// virtual time: (microseconds, bytes per second from then on).
#[derive(Clone, Debug)]
pub struct CapTrace {
    /// The site's index.
    pub site: usize,
    /// The uplink when true.
    pub up: bool,
    /// The sum of the rates of the flows on the link, after each change.
    pub load: Vec<(u64, f64)>,
    /// The link's capacity, after each change.
    pub cap: Vec<(u64, f64)>,
}

/// One strategy's simulation.
pub struct World<'a> {
    scenario: &'a Scenario,
    strategy: Strategy,
    now: u64,
    queue: BinaryHeap<Reverse<Queued>>,
    slots: Vec<Option<Ev>>,
    free_slots: Vec<usize>,
    sequence: u64,
    network: Network,
    nodes: Vec<SimNode>,
    names: FastMap<PeerId, usize>,
    origin: usize,
    /// Overlay neighbours of each node: whom it keeps a connection to when it can.
    overlay: Vec<Vec<usize>>,
    /// Open connections with their epoch; a message from an older epoch is dropped.
    connections: FastMap<(usize, usize), u64>,
    connected: Vec<BTreeSet<usize>>,
    next_epoch: u64,
    inbound: FastMap<(usize, u64), (usize, RequestId, FetchRequest, u64)>,
    next_inbound: u64,
    outstanding: BTreeMap<(usize, RequestId), Outstanding>,
    /// The job of each running flow, indexed by its [`FlowId`] (flow ids are dense).
    flows: Vec<Option<FlowJob>>,
    gossiped: FastSet<(usize, PatchKey)>,
    trust: TrustPolicy,
    primary: PatchKey,
    manifests: BTreeMap<PatchKey, Arc<Manifest>>,
    published_at: BTreeMap<PatchKey, u64>,
    /// Running nodes that do not yet hold the first patch assembled.
    incomplete: usize,
    complete: usize,
    next_scenario_event: usize,
    last_recompute: Option<u64>,
    origin_egress: u64,
    origin_budget_overruns: u64,
    cap_traces: Vec<CapTrace>,
    wan_ingress: Vec<u64>,
    wan_egress: Vec<u64>,
    link_bytes: Vec<u64>,
    events: u64,
}

fn key(a: usize, b: usize) -> (usize, usize) {
    (a.min(b), a.max(b))
}

impl<'a> World<'a> {
    /// Builds the nodes, the overlay and the network for `strategy`.
    pub fn new(scenario: &'a Scenario, strategy: Strategy, seed: u64) -> Result<World<'a>, String> {
        let origin_site = scenario.origin_site();
        let mut node_site = Vec::new();
        let mut nodes = Vec::new();
        let mut names = FastMap::default();
        let mut rng = SplitMix64::new(seed ^ 0x5157_4d45_5348_0001);
        let mut origin = 0;
        let mut first_of_site = Vec::new();
        for (site_index, site) in scenario.sites.iter().enumerate() {
            first_of_site.push(nodes.len());
            for index in 0..site.nodes {
                let is_origin = site_index == origin_site && index == 0;
                if is_origin {
                    origin = nodes.len();
                }
                let role = if is_origin { Role::Origin } else { Role::Office };
                let mut config = NodeConfig::new(site.name.clone(), role);
                config.seed = rng.next_u64();
                config.source_policy = match strategy {
                    Strategy::Mesh => SourcePolicy::Mesh,
                    Strategy::Central => SourcePolicy::Central,
                    Strategy::OfficeCache => SourcePolicy::OfficeCache,
                };
                // The site's cache is its first office node.
                let cache_index = if site_index == origin_site { 1 } else { 0 };
                config.site_cache = strategy == Strategy::OfficeCache && index == cache_index && !is_origin;
                let settings = &scenario.node;
                if let Some(value) = settings.max_requests_per_peer {
                    config.max_requests_per_peer = value;
                }
                if let Some(value) = settings.max_requests_to_origin {
                    config.max_requests_to_origin = value;
                }
                if let Some(value) = settings.max_requests_total {
                    config.max_requests_total = value;
                }
                if let Some(value) = settings.request_timeout_us {
                    config.request_timeout = Duration::from_micros(value);
                }
                if let Some(value) = settings.have_interval_us {
                    config.have_interval = Duration::from_micros(value);
                }
                if is_origin && strategy == Strategy::Mesh {
                    config.origin_budget = scenario.origin_budget;
                }
                config.validate().map_err(|error| error.to_string())?;
                let name = PeerId::new(format!("{}/{}", site.name, index));
                names.insert(name.clone(), nodes.len());
                node_site.push(site_index);
                nodes.push(SimNode {
                    name,
                    config,
                    core: None,
                    store: Store::default(),
                    timer: None,
                    completed: BTreeMap::new(),
                });
            }
        }
        let overlay = build_overlay(scenario, &node_site, &first_of_site, origin, &mut rng);
        let network = Network::new(scenario, node_site);
        let manifest = synthetic_manifest(&scenario.patch.id, scenario.patch.bytes, scenario.patch.chunk_size)?;
        let primary = manifest.key().clone();
        let node_count = nodes.len();
        let site_count = scenario.sites.len();
        let link_count = network.flows.link_count();
        let mut world = World {
            scenario,
            strategy,
            now: 0,
            queue: BinaryHeap::new(),
            slots: Vec::new(),
            free_slots: Vec::new(),
            sequence: 0,
            network,
            nodes,
            names,
            origin,
            overlay,
            connections: FastMap::default(),
            connected: vec![BTreeSet::new(); node_count],
            next_epoch: 0,
            inbound: FastMap::default(),
            next_inbound: 0,
            outstanding: BTreeMap::new(),
            flows: Vec::new(),
            gossiped: FastSet::default(),
            trust: TrustPolicy::with_publishers([("simulator", publisher().public())]),
            primary: primary.clone(),
            manifests: BTreeMap::from([(primary, manifest)]),
            published_at: BTreeMap::new(),
            incomplete: 0,
            complete: 0,
            next_scenario_event: 0,
            last_recompute: None,
            origin_egress: 0,
            origin_budget_overruns: 0,
            cap_traces: Vec::new(),
            wan_ingress: vec![0; site_count],
            wan_egress: vec![0; site_count],
            link_bytes: vec![0; link_count],
            events: 0,
        };
        for (index, event) in scenario.events.iter().enumerate() {
            world.schedule(event.at_us, Ev::Scenario(index));
        }
        Ok(world)
    }

    /// Runs until every node that should hold the first patch holds it and every
    /// scenario event has happened, or until the time limit. `progress` is called now
    /// and then.
    pub fn run(mut self, progress: &mut dyn FnMut(Progress)) -> RunOutcome {
        let late: BTreeSet<NodeRef> = self
            .scenario
            .events
            .iter()
            .filter_map(|event| match event.kind {
                EventKind::Join(node) => Some(node),
                _ => None,
            })
            .collect();
        let mut first_of_site = Vec::new();
        let mut count = 0;
        for site in &self.scenario.sites {
            first_of_site.push(count);
            count += site.nodes as usize;
        }
        for index in 0..self.nodes.len() {
            let site = self.network.site_of(index);
            let reference = NodeRef { site, index: (index - first_of_site[site]) as u32 };
            if !late.contains(&reference) {
                self.start_node(index);
            }
        }
        self.apply_caps();
        let primary = self.manifests[&self.primary].clone();
        self.publish(primary);

        let total = self.nodes.len().saturating_sub(1);
        let mut last_complete = usize::MAX;
        while !self.finished() {
            // Rates change only as time advances, so changes at one instant are batched
            // into one recompute.
            let next_event = self.queue.peek().map(|Reverse(queued)| queued.at);
            // With a rate interval, a recompute waits until the interval has passed. Until
            // then new flows wait at rate 0 and freed capacity stays idle, which keeps
            // every rate feasible.
            let recompute_at = self.last_recompute.map_or(0, |last| last + self.scenario.rate_interval_us);
            let dirty = self.network.flows.is_dirty();
            if dirty && next_event.is_none_or(|at| at > self.now) && self.now >= recompute_at {
                self.network.flows.recompute(self.now);
                self.last_recompute = Some(self.now);
                self.record_cap_loads();
            }
            let pending_recompute = (self.network.flows.is_dirty()).then_some(recompute_at.max(self.now));
            let next_flow = self.network.flows.next_completion();
            let candidates = [next_event, next_flow.map(|(at, _)| at), pending_recompute];
            let Some(at) = candidates.into_iter().flatten().min() else {
                warn!(strategy = self.strategy.name(), "no events left before the rollout finished");
                break;
            };
            if at > self.scenario.time_limit_us {
                warn!(strategy = self.strategy.name(), "time limit reached before the rollout finished");
                self.now = self.scenario.time_limit_us;
                break;
            }
            debug_assert!(at >= self.now, "event in the past");
            self.now = at;
            self.events += 1;
            match next_flow {
                Some((finish, flow)) if finish == at && next_event.is_none_or(|event| event > at) => self.finish_flow(flow),
                _ if next_event != Some(at) => {}
                _ => {
                    let Some(Reverse(queued)) = self.queue.pop() else {
                        continue;
                    };
                    let event = self.slots[queued.slot].take();
                    self.free_slots.push(queued.slot);
                    if let Some(event) = event {
                        self.dispatch(event);
                    }
                }
            }
            let changed = self.complete != last_complete && (self.events.is_multiple_of(64) || self.incomplete == 0);
            if changed || self.events.is_multiple_of(1 << 16) {
                last_complete = self.complete;
                progress(Progress { complete: self.complete, total, virtual_s: self.now as f64 / 1e6 });
            }
        }
        progress(Progress { complete: self.complete, total, virtual_s: self.now as f64 / 1e6 });
        self.outcome()
    }

    /// Whether every running node holds every published patch and no scenario event is
    /// left. Later patches are checked by a scan, only once the first patch is done.
    fn finished(&self) -> bool {
        if self.incomplete > 0 || self.next_scenario_event < self.scenario.events.len() {
            return false;
        }
        self.published_at.keys().all(|patch| {
            self.nodes.iter().all(|node| node.core.is_none() || node.store.assembled.contains(patch))
        })
    }

    fn outcome(&self) -> RunOutcome {
        let nodes = self
            .nodes
            .iter()
            .enumerate()
            .map(|(index, node)| NodeOutcome {
                site: self.network.site_of(index),
                origin: index == self.origin,
                completed_us: node.completed.get(&self.primary).copied(),
                running: node.core.is_some(),
            })
            .collect();
        let mut link_bytes = Vec::new();
        for (site_index, site) in self.scenario.sites.iter().enumerate() {
            let (up, down) = self.network.access_links(site_index);
            link_bytes.push((format!("{} access", site.name), self.link_bytes[up], self.link_bytes[down]));
        }
        for (index, link) in self.scenario.core_links.iter().enumerate() {
            let (forward, backward) = self.network.core_links(index);
            let name = format!("{} - {}", self.scenario.vertices[link.a], self.scenario.vertices[link.b]);
            link_bytes.push((name, self.link_bytes[forward], self.link_bytes[backward]));
        }
        let later_patches = self
            .published_at
            .iter()
            .filter(|(patch, _)| **patch != self.primary)
            .map(|(patch, &published)| {
                let running: Vec<&SimNode> = self.nodes.iter().filter(|node| node.core.is_some()).collect();
                let done = running.iter().map(|node| node.completed.get(patch).copied()).collect::<Option<Vec<u64>>>();
                let finish = done.map(|times| times.into_iter().max().unwrap_or(published).saturating_sub(published));
                (patch.id.to_string(), finish)
            })
            .collect();
        RunOutcome {
            strategy: self.strategy,
            nodes,
            origin_egress_bytes: self.origin_egress,
            origin_budget_overruns: self.origin_budget_overruns,
            cap_traces: self.cap_traces.clone(),
            wan_ingress: self.wan_ingress.clone(),
            wan_egress: self.wan_egress.clone(),
            link_bytes,
            later_patches,
            end_us: self.now,
            events: self.events,
        }
    }

    // ---- scheduling ----

    fn schedule(&mut self, at: u64, event: Ev) {
        self.sequence += 1;
        let slot = match self.free_slots.pop() {
            Some(slot) => {
                self.slots[slot] = Some(event);
                slot
            }
            None => {
                self.slots.push(Some(event));
                self.slots.len() - 1
            }
        };
        self.queue.push(Reverse(Queued { at, sequence: self.sequence, slot }));
    }

    fn timestamp(&self) -> Timestamp {
        Timestamp::from_micros(START.as_micros() + self.now)
    }

    fn epoch(&self, a: usize, b: usize) -> Option<u64> {
        self.connections.get(&key(a, b)).copied()
    }

    // ---- nodes ----

    /// Starts a node's core and restores what its store holds, then connects it.
    fn start_node(&mut self, index: usize) {
        if self.nodes[index].core.is_some() {
            return;
        }
        let now = self.timestamp();
        let node = &mut self.nodes[index];
        let mut core = Node::new(node.name.clone(), node.config.clone(), self.trust.clone());
        for (patch, manifest) in &node.store.manifests {
            let have = node.store.chunks.get(patch).cloned().unwrap_or_else(|| Bitfield::new(manifest.chunk_count()));
            let assembled = node.store.assembled.contains(patch);
            core.handle_manifest_loaded(now, manifest.clone(), have, assembled, false);
        }
        node.core = Some(core);
        node.timer = None;
        if index != self.origin && !node.store.assembled.contains(&self.primary) {
            self.incomplete += 1;
        }
        self.drain(index);
        let neighbours = self.overlay[index].clone();
        for peer in neighbours {
            self.connect(index, peer);
        }
    }

    fn stop_node(&mut self, index: usize) {
        if self.nodes[index].core.is_none() {
            return;
        }
        let peers: Vec<usize> = self.connected[index].iter().copied().collect();
        for peer in peers {
            self.disconnect(index, peer);
        }
        self.nodes[index].core = None;
        self.nodes[index].timer = None;
        if index != self.origin && !self.nodes[index].store.assembled.contains(&self.primary) {
            self.incomplete -= 1;
        }
    }

    fn connect(&mut self, a: usize, b: usize) {
        if a == b || self.connections.contains_key(&key(a, b)) {
            return;
        }
        if self.nodes[a].core.is_none() || self.nodes[b].core.is_none() || self.network.latency(a, b).is_none() {
            return;
        }
        let banned = self.nodes[a].core.as_ref().is_some_and(|core| core.is_banned(&self.nodes[b].name))
            || self.nodes[b].core.as_ref().is_some_and(|core| core.is_banned(&self.nodes[a].name));
        if banned {
            return;
        }
        self.next_epoch += 1;
        self.connections.insert(key(a, b), self.next_epoch);
        self.connected[a].insert(b);
        self.connected[b].insert(a);
        let now = self.timestamp();
        // A real driver measures the round trip with pings; here it is the path's.
        let rtt = Duration::from_micros(2 * self.network.latency(a, b).unwrap_or(0));
        for (x, y) in [(a, b), (b, a)] {
            let peer = self.nodes[y].name.clone();
            if let Some(core) = self.nodes[x].core.as_mut() {
                core.handle_peer_connected(now, peer.clone());
                core.handle_peer_rtt(now, &peer, rtt);
            }
        }
        self.drain(a);
        self.drain(b);
    }

    /// Closes the connection between `a` and `b`: flows between them stop and both cores
    /// hear of it.
    fn disconnect(&mut self, a: usize, b: usize) {
        if self.connections.remove(&key(a, b)).is_none() {
            return;
        }
        self.connected[a].remove(&b);
        self.connected[b].remove(&a);
        let cancelled: Vec<FlowId> = self
            .flows
            .iter()
            .enumerate()
            .filter(|(_, job)| job.as_ref().is_some_and(|job| key(job.server, job.requester) == key(a, b)))
            .map(|(flow, _)| flow)
            .collect();
        for flow in cancelled {
            self.network.flows.remove_flow(self.now, flow);
            self.take_job(flow);
        }
        for (x, y) in [(a, b), (b, a)] {
            let orphaned: Vec<(usize, RequestId)> = self
                .outstanding
                .range((x, RequestId(0))..=(x, RequestId(u64::MAX)))
                .filter(|(_, pending)| pending.server == y)
                .map(|(&k, _)| k)
                .collect();
            for k in orphaned {
                self.outstanding.remove(&k);
            }
        }
        let now = self.timestamp();
        for (x, y) in [(a, b), (b, a)] {
            let peer = self.nodes[y].name.clone();
            if let Some(core) = self.nodes[x].core.as_mut() {
                core.handle_peer_disconnected(now, &peer);
            }
        }
        self.drain(a);
        self.drain(b);
    }

    fn publish(&mut self, manifest: Arc<Manifest>) {
        let origin = self.origin;
        let patch = manifest.key().clone();
        self.manifests.insert(patch.clone(), manifest.clone());
        self.published_at.insert(patch.clone(), self.now);
        let store = &mut self.nodes[origin].store;
        store.manifests.insert(patch.clone(), manifest.clone());
        store.chunks.insert(patch.clone(), Bitfield::full(manifest.chunk_count()));
        store.assembled.insert(patch.clone());
        self.nodes[origin].completed.insert(patch, self.now);
        let now = self.timestamp();
        if let Some(core) = self.nodes[origin].core.as_mut() {
            core.handle_manifest_loaded(now, manifest.clone(), Bitfield::full(manifest.chunk_count()), true, true);
        }
        self.drain(origin);
    }

    /// Performs every pending action of node `index` and queues its next timer.
    fn drain(&mut self, index: usize) {
        while let Some(action) = self.nodes[index].core.as_mut().and_then(Node::poll_action) {
            self.perform(index, action);
        }
        let Some(core) = self.nodes[index].core.as_mut() else {
            return;
        };
        let mut misbehaved = Vec::new();
        while let Some(event) = core.poll_event() {
            match event {
                Event::PeerMisbehaved { peer, reason, .. } => misbehaved.push((peer, reason)),
                Event::OriginBudgetExceeded { chunk, .. } if chunk.patch == self.primary => {
                    self.origin_budget_overruns += 1;
                }
                _ => {}
            }
        }
        for (peer, reason) in misbehaved {
            warn!(node = %self.nodes[index].name, %peer, %reason, "peer misbehaved in simulation");
        }
        if let Some(core) = self.nodes[index].core.as_ref()
            && let Some(deadline) = core.poll_timeout() {
                let at = deadline.as_micros().saturating_sub(START.as_micros()).max(self.now);
                if self.nodes[index].timer.is_none_or(|pending| at < pending) {
                    self.nodes[index].timer = Some(at);
                    self.schedule(at, Ev::Timer { node: index });
                }
            }
    }

    fn perform(&mut self, index: usize, action: Action) {
        let now = self.timestamp();
        match action {
            Action::Send { peer, message } => {
                let Some(&to) = self.names.get(&peer) else {
                    return;
                };
                if let (Some(epoch), Some(latency)) = (self.epoch(index, to), self.network.latency(index, to)) {
                    self.schedule(self.now + latency, Ev::Message { from: index, to, epoch, message });
                }
            }
            Action::Gossip(announcement) => self.flood(index, None, announcement),
            Action::Request { request, peer, fetch } => {
                let Some(&to) = self.names.get(&peer) else {
                    return;
                };
                let timeout = self.request_timeout_us(index, &fetch);
                match (self.epoch(index, to), self.network.latency(index, to)) {
                    (Some(epoch), Some(latency)) => {
                        let deadline_us = self.now.saturating_add(timeout);
                        self.outstanding.insert((index, request), Outstanding { server: to, deadline_us, flow: None });
                        self.schedule(self.now + latency, Ev::Request { from: index, to, epoch, request, fetch });
                    }
                    _ => {
                        // The core asked a peer this driver no longer reaches; its
                        // disconnect is already queued, so fail the request at once.
                        let outcome = failed_outcome(&fetch, "no route to peer");
                        let epoch = self.epoch(index, to).unwrap_or(0);
                        self.schedule(self.now, Ev::Response { from: to, to: index, epoch, request, outcome });
                    }
                }
            }
            Action::Respond { inbound, response } => {
                let Some((requester, request, fetch, epoch)) = self.inbound.remove(&(index, inbound.0)) else {
                    return;
                };
                match response {
                    FetchResponse::Body(bytes) => {
                        let size = bytes.len() as u64;
                        self.start_flow(index, requester, request, epoch, Payload::Body(bytes), size);
                    }
                    FetchResponse::Declined(reason) => self.respond_declined(index, requester, request, epoch, &fetch, reason),
                    FetchResponse::Chunk(_) => {
                        debug!("the core answered with chunk bytes, which the simulator does not use");
                    }
                }
            }
            Action::ServeChunk { inbound, chunk } => {
                let Some((requester, request, fetch, epoch)) = self.inbound.remove(&(index, inbound.0)) else {
                    return;
                };
                let in_store = self.nodes[index].store.chunks.get(&chunk.patch).is_some_and(|bits| bits.contains(chunk.index));
                let length = self.manifests.get(&chunk.patch).map_or(0, |m| u64::from(m.chunk_len(chunk.index)));
                if in_store && length > 0 {
                    let payload = Payload::Chunk { patch: chunk.patch, index: chunk.index };
                    self.start_flow(index, requester, request, epoch, payload, length);
                } else {
                    self.respond_declined(index, requester, request, epoch, &fetch, DeclineReason::NotFound);
                }
            }
            Action::StoreManifest(manifest) => {
                let store = &mut self.nodes[index].store;
                let patch = manifest.key().clone();
                store.chunks.entry(patch.clone()).or_insert_with(|| Bitfield::new(manifest.chunk_count()));
                store.manifests.insert(patch, manifest);
            }
            Action::AssemblePatch(manifest) => {
                // Assembly is modelled as instant: disk time is not part of the model.
                let patch = manifest.key().clone();
                self.mark_assembled(index, &patch);
                if let Some(core) = self.nodes[index].core.as_mut() {
                    core.handle_assembled(now, &patch, Ok(()));
                }
            }
            Action::BanPeer { peer, reason } => {
                warn!(node = %self.nodes[index].name, %peer, %reason, "simulated node banned a peer");
                if let Some(&other) = self.names.get(&peer) {
                    self.disconnect(index, other);
                }
            }
        }
    }

    /// Returns how long node `index` gives `fetch` before it times the request out, in
    /// microseconds. It matches the core's deadline, so the flow stops when the core
    /// gives up. A chunk gets [`NodeConfig::request_deadline`] of its length, often
    /// shorter than `request_timeout`, and a manifest body gets `request_timeout`.
    fn request_timeout_us(&self, index: usize, fetch: &FetchRequest) -> u64 {
        let config = &self.nodes[index].config;
        let timeout = match fetch {
            FetchRequest::Chunk { patch, index: chunk } => {
                let len = self.manifests.get(patch).map_or(0, |manifest| u64::from(manifest.chunk_len(*chunk)));
                config.request_deadline(len)
            }
            FetchRequest::Body { .. } => config.request_timeout,
        };
        u64::try_from(timeout.as_micros()).unwrap_or(u64::MAX)
    }

    fn mark_assembled(&mut self, index: usize, patch: &PatchKey) {
        let node = &mut self.nodes[index];
        if !node.store.assembled.insert(patch.clone()) {
            return;
        }
        node.completed.entry(patch.clone()).or_insert(self.now);
        if *patch == self.primary && index != self.origin && node.core.is_some() {
            self.incomplete -= 1;
            self.complete += 1;
        }
    }

    fn respond_declined(&mut self, server: usize, requester: usize, request: RequestId, epoch: u64, fetch: &FetchRequest, reason: DeclineReason) {
        let outcome = match fetch {
            FetchRequest::Body { .. } => Outcome::Body(BodyOutcome::Declined(reason)),
            FetchRequest::Chunk { patch, index } => {
                Outcome::Chunk { patch: patch.clone(), index: *index, outcome: ChunkOutcome::Declined(reason) }
            }
        };
        let latency = self.network.latency(server, requester).unwrap_or(0);
        self.schedule(self.now + latency, Ev::Response { from: server, to: requester, epoch, request, outcome });
    }

    fn start_flow(&mut self, server: usize, requester: usize, request: RequestId, epoch: u64, payload: Payload, bytes: u64) {
        let Some(path) = self.network.path(server, requester) else {
            let outcome = match &payload {
                Payload::Body(_) => Outcome::Body(BodyOutcome::Failed { reason: "no route".into() }),
                Payload::Chunk { patch, index } => Outcome::Chunk {
                    patch: patch.clone(),
                    index: *index,
                    outcome: ChunkOutcome::Failed { reason: "no route".into() },
                },
            };
            self.schedule(self.now, Ev::Response { from: server, to: requester, epoch, request, outcome });
            return;
        };
        let cap = mathis_cap(path.latency_us, path.loss);
        let flow = self.network.flows.add_flow(self.now, path.links.clone(), bytes as f64, cap);
        if let Some(pending) = self.outstanding.get_mut(&(requester, request)) {
            pending.flow = Some(flow);
        }
        let job = FlowJob { server, requester, request, epoch, payload, bytes, latency_us: path.latency_us, links: path.links };
        self.insert_job(flow, job);
    }

    fn flood(&mut self, from: usize, except: Option<usize>, announcement: Announcement) {
        self.gossiped.insert((from, announcement.header.patch.clone()));
        let peers: Vec<usize> = self.connected[from].iter().copied().filter(|&peer| Some(peer) != except).collect();
        for to in peers {
            let (Some(epoch), Some(latency)) = (self.epoch(from, to), self.network.latency(from, to)) else {
                continue;
            };
            let at = self.now + latency + self.scenario.overlay.gossip_hop_delay_us;
            self.schedule(at, Ev::Gossip { from, to, epoch, announcement: announcement.clone() });
        }
    }

    // ---- events ----

    fn dispatch(&mut self, event: Ev) {
        let now = self.timestamp();
        match event {
            Ev::Message { from, to, epoch, message } => {
                if self.epoch(from, to) != Some(epoch) {
                    return;
                }
                let name = self.nodes[from].name.clone();
                if let Some(core) = self.nodes[to].core.as_mut() {
                    core.handle_message(now, &name, message);
                }
                self.drain(to);
            }
            Ev::Gossip { from, to, epoch, announcement } => {
                if self.epoch(from, to) != Some(epoch) {
                    return;
                }
                let name = self.nodes[from].name.clone();
                let patch = announcement.header.patch.clone();
                let verdict = self.nodes[to].core.as_mut().map(|core| core.handle_gossip(now, &name, announcement.clone()));
                if verdict == Some(Validation::Accept) && !self.gossiped.contains(&(to, patch)) {
                    self.flood(to, Some(from), announcement);
                }
                self.drain(to);
            }
            Ev::Request { from, to, epoch, request, fetch } => {
                if self.epoch(from, to) != Some(epoch) {
                    return;
                }
                self.next_inbound += 1;
                let inbound = InboundId(self.next_inbound);
                self.inbound.insert((to, inbound.0), (from, request, fetch.clone(), epoch));
                let name = self.nodes[from].name.clone();
                if let Some(core) = self.nodes[to].core.as_mut() {
                    core.handle_fetch_request(now, &name, inbound, fetch);
                }
                self.drain(to);
            }
            Ev::Response { from, to, epoch, request, outcome } => {
                if self.epoch(from, to) != Some(epoch) {
                    return;
                }
                self.outstanding.remove(&(to, request));
                if let Outcome::Chunk { patch, index, outcome: ChunkOutcome::Stored } = &outcome
                    && let Some(bits) = self.nodes[to].store.chunks.get_mut(patch) {
                        bits.insert(*index);
                    }
                if let Some(core) = self.nodes[to].core.as_mut() {
                    match outcome {
                        Outcome::Chunk { outcome, .. } => core.handle_chunk_outcome(now, request, outcome),
                        Outcome::Body(outcome) => core.handle_body_outcome(now, request, outcome),
                    }
                }
                self.drain(to);
            }
            Ev::Timer { node } => {
                if self.nodes[node].timer != Some(self.now) {
                    return;
                }
                self.nodes[node].timer = None;
                self.expire_requests(node);
                let due = self.nodes[node].core.as_ref().and_then(Node::poll_timeout).is_some_and(|at| at <= now);
                if due
                    && let Some(core) = self.nodes[node].core.as_mut() {
                        core.handle_timeout(now);
                    }
                self.drain(node);
            }
            Ev::Caps => self.apply_caps(),
            Ev::Scenario(index) => {
                self.next_scenario_event = index + 1;
                let event = self.scenario.events[index].kind.clone();
                self.apply(event);
            }
        }
    }

    fn insert_job(&mut self, flow: FlowId, job: FlowJob) {
        if flow >= self.flows.len() {
            self.flows.resize_with(flow + 1, || None);
        }
        self.flows[flow] = Some(job);
    }

    fn take_job(&mut self, flow: FlowId) -> Option<FlowJob> {
        self.flows.get_mut(flow).and_then(Option::take)
    }

    /// Ends a flow whose last byte left: its response arrives one latency later.
    fn finish_flow(&mut self, flow: FlowId) {
        self.network.flows.remove_flow(self.now, flow);
        let Some(job) = self.take_job(flow) else {
            return;
        };
        self.account(&job);
        if let Some(pending) = self.outstanding.get_mut(&(job.requester, job.request)) {
            pending.flow = None;
        }
        let outcome = match job.payload {
            Payload::Body(bytes) => Outcome::Body(BodyOutcome::Received(bytes)),
            Payload::Chunk { patch, index } => Outcome::Chunk { patch, index, outcome: ChunkOutcome::Stored },
        };
        let event = Ev::Response { from: job.server, to: job.requester, epoch: job.epoch, request: job.request, outcome };
        self.schedule(self.now + job.latency_us, event);
    }

    /// Cancels the flows of requests the core is about to time out.
    fn expire_requests(&mut self, node: usize) {
        let expired: Vec<(usize, RequestId)> = self
            .outstanding
            .range((node, RequestId(0))..=(node, RequestId(u64::MAX)))
            .filter(|(_, pending)| pending.deadline_us <= self.now)
            .map(|(&k, _)| k)
            .collect();
        for k in expired {
            if let Some(pending) = self.outstanding.remove(&k)
                && let Some(flow) = pending.flow {
                    self.network.flows.remove_flow(self.now, flow);
                    self.take_job(flow);
                }
        }
    }

    fn account(&mut self, job: &FlowJob) {
        for &link in &job.links {
            self.link_bytes[link] += job.bytes;
        }
        let Payload::Chunk { patch, .. } = &job.payload else {
            return;
        };
        if *patch != self.primary {
            return;
        }
        if job.server == self.origin {
            self.origin_egress += job.bytes;
        }
        let (from, to) = (self.network.site_of(job.server), self.network.site_of(job.requester));
        if from != to {
            self.wan_egress[from] += job.bytes;
            self.wan_ingress[to] += job.bytes;
        }
    }

    fn apply(&mut self, event: EventKind) {
        debug!(at_us = self.now, ?event, "scenario event");
        match event {
            EventKind::LinkDown(link) => self.link_down(link),
            EventKind::LinkUp(link) => {
                self.network.set_alive(link, true);
                self.reconnect_all();
            }
            EventKind::Crash(node) => {
                let index = self.node_index(node);
                self.stop_node(index);
            }
            EventKind::Restart(node) | EventKind::Join(node) => {
                let index = self.node_index(node);
                self.start_node(index);
            }
            EventKind::Publish { id, bytes } => {
                let chunk_size = patchmesh_core::manifest::default_chunk_size(bytes);
                match synthetic_manifest(&id, bytes, chunk_size) {
                    Ok(manifest) => self.publish(manifest),
                    Err(error) => warn!(%id, %error, "cannot build the second patch"),
                }
            }
        }
    }

    /// Sets each capped access link to its cap at this instant and schedules the next
    /// change. Several caps on one link combine to the lowest.
    fn apply_caps(&mut self) {
        if self.scenario.caps.is_empty() {
            return;
        }
        let wall = Timestamp::from_micros(self.scenario.start_us + self.now);
        let mut limits: BTreeMap<(usize, bool), f64> = BTreeMap::new();
        let mut next: Option<u64> = None;
        for cap in &self.scenario.caps {
            let site = &self.scenario.sites[cap.site];
            let nominal = if cap.up { site.up } else { site.down };
            let rate = cap.schedule.rate_at(wall).map_or(nominal, |rate| rate.min(nominal));
            let limit = limits.entry((cap.site, cap.up)).or_insert(nominal);
            *limit = limit.min(rate);
            if let Some(change) = cap.schedule.next_change(wall) {
                let at = change.as_micros() - self.scenario.start_us;
                next = Some(next.map_or(at, |next| next.min(at)));
            }
        }
        for ((site, up), rate) in limits {
            let (up_link, down_link) = self.network.access_links(site);
            let link = if up { up_link } else { down_link };
            self.network.flows.set_capacity(link, rate);
            match self.cap_traces.iter_mut().find(|trace| trace.site == site && trace.up == up) {
                Some(trace) => trace.cap.push((self.now, rate)),
                None => self.cap_traces.push(CapTrace { site, up, load: Vec::new(), cap: vec![(self.now, rate)] }),
            }
        }
        if let Some(at) = next {
            self.schedule(at, Ev::Caps);
        }
    }

    /// Appends the load of each capped link after a recompute.
    fn record_cap_loads(&mut self) {
        for index in 0..self.cap_traces.len() {
            let (site, up) = (self.cap_traces[index].site, self.cap_traces[index].up);
            let (up_link, down_link) = self.network.access_links(site);
            let link = if up { up_link } else { down_link };
            let load: f64 = self.network.flows.flows_on(link).map(|flow| self.network.flows.rate(flow)).sum();
            let trace = &mut self.cap_traces[index];
            if trace.load.last().is_none_or(|&(_, last)| last != load) {
                trace.load.push((self.now, load));
            }
        }
    }

    fn node_index(&self, node: NodeRef) -> usize {
        let before: usize = self.scenario.sites[..node.site].iter().map(|site| site.nodes as usize).sum();
        before + node.index as usize
    }

    fn link_down(&mut self, link: LinkRef) {
        let directed = self.network.set_alive(link, false);
        // Flows over the failed link: reroute when another path exists, else stop them
        // with their connection.
        let mut affected: BTreeSet<FlowId> = BTreeSet::new();
        for link in directed {
            affected.extend(self.network.flows.flows_on(link));
        }
        let mut broken = BTreeSet::new();
        for flow in affected {
            let Some(job) = self.take_job(flow) else {
                continue;
            };
            let remaining = self.network.flows.remove_flow(self.now, flow);
            match self.network.path(job.server, job.requester) {
                Some(path) if self.network.path_alive(&path.links) => {
                    let cap = mathis_cap(path.latency_us, path.loss);
                    let new_flow = self.network.flows.add_flow(self.now, path.links.clone(), remaining, cap);
                    if let Some(pending) = self.outstanding.get_mut(&(job.requester, job.request)) {
                        pending.flow = Some(new_flow);
                    }
                    self.insert_job(new_flow, FlowJob { latency_us: path.latency_us, links: path.links, ..job });
                }
                _ => {
                    broken.insert(key(job.server, job.requester));
                }
            }
        }
        // Connections without a route close.
        let mut lost: Vec<(usize, usize)> = self
            .connections
            .keys()
            .copied()
            .filter(|&(a, b)| self.network.latency(a, b).is_none())
            .collect();
        lost.extend(broken);
        lost.sort_unstable();
        lost.dedup();
        for (a, b) in lost {
            self.disconnect(a, b);
        }
    }

    fn reconnect_all(&mut self) {
        for a in 0..self.nodes.len() {
            let neighbours = self.overlay[a].clone();
            for b in neighbours {
                self.connect(a, b);
            }
        }
    }
}

fn failed_outcome(fetch: &FetchRequest, reason: &str) -> Outcome {
    match fetch {
        FetchRequest::Body { .. } => Outcome::Body(BodyOutcome::Failed { reason: reason.into() }),
        FetchRequest::Chunk { patch, index } => {
            Outcome::Chunk { patch: patch.clone(), index: *index, outcome: ChunkOutcome::Failed { reason: reason.into() } }
        }
    }
}
