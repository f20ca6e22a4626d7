//! An in-memory mesh: several cores wired together under virtual time, no sockets.
//!
//! Each message arrives after a fixed one-way latency; a chunk or body response also
//! waits its size divided by a per-link bandwidth. Bytes are real: chunks are served from
//! each node's in-memory store and verified with `Manifest::verify_chunk` on arrival, as
//! the daemon does.

#![allow(dead_code, unreachable_pub)]

pub mod policy;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use patchmesh_core::governance::RolloutPlan;
use patchmesh_core::manifest::{FileName, ManifestBuilder};
use patchmesh_core::protocol::BodyOutcome;
use patchmesh_core::wire::{DeclineReason, FetchRequest, FetchResponse, Message};
use patchmesh_core::{
    Action, Bitfield, ChunkOutcome, Event, InboundId, Manifest, Node, NodeConfig, PatchId, PatchKey, PeerId,
    RequestId, Role, SecretKey, Timestamp, TrustPolicy, Validation,
};

pub const LATENCY: Duration = Duration::from_millis(5);
/// Bytes per second on every link.
pub const BANDWIDTH: u64 = 10_000_000;
pub const START: Timestamp = Timestamp::from_secs(1_800_000_000);

pub fn publisher() -> SecretKey {
    SecretKey::from_seed([42; 32])
}

pub fn trust() -> TrustPolicy {
    TrustPolicy::with_publishers([("publisher", publisher().public())])
}

/// Deterministic file contents.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| ((i * 7 + i / 251) as u8).wrapping_add(seed)).collect()
}

/// Builds and signs a manifest over `files`, returning it with the concatenated bytes.
pub fn manifest(id: &str, version: u64, chunk_size: u32, files: &[(&str, Vec<u8>)], signer: &SecretKey) -> (Arc<Manifest>, Vec<u8>) {
    planned_manifest(id, version, chunk_size, files, None, signer)
}

/// As [`manifest`], with a rollout plan when `plan` is given.
pub fn planned_manifest(
    id: &str,
    version: u64,
    chunk_size: u32,
    files: &[(&str, Vec<u8>)],
    plan: Option<RolloutPlan>,
    signer: &SecretKey,
) -> (Arc<Manifest>, Vec<u8>) {
    let key = PatchKey { id: PatchId::new(id).expect("patch id"), version };
    let mut builder = ManifestBuilder::new(key, chunk_size).expect("builder");
    if let Some(plan) = plan {
        builder.plan(plan);
    }
    let mut all = Vec::new();
    for (name, bytes) in files {
        builder.add_file(FileName::new(*name).expect("name"), bytes.as_slice()).expect("add file");
        all.extend_from_slice(bytes);
    }
    let created = START.as_secs() - 60;
    let mut manifest = builder.finish(created, created + 86_400).expect("finish");
    manifest.sign(signer);
    (Arc::new(manifest), all)
}

#[derive(Default)]
pub struct Store {
    pub manifests: BTreeMap<PatchKey, Arc<Manifest>>,
    pub chunks: BTreeMap<PatchKey, BTreeMap<u32, Vec<u8>>>,
    pub assembled: BTreeSet<PatchKey>,
    /// Serve chunks with one byte flipped, to play a faulty or hostile peer.
    pub corrupt_serving: bool,
    /// Never answer chunk requests, to play a frozen peer.
    pub frozen: bool,
    /// Serve at this many bytes per second instead of [`BANDWIDTH`], to play a slow peer.
    pub serve_rate: Option<u64>,
    /// Fail every assembly, to play a node whose install fails.
    pub fail_assembly: bool,
}

enum Delivery {
    Message { from: usize, to: usize, message: Message },
    Gossip { from: usize, to: usize, announcement: patchmesh_core::Announcement },
    Request { from: usize, to: usize, request: RequestId, fetch: FetchRequest },
    Response { to: usize, request: RequestId, fetch: FetchRequest, response: FetchResponse },
    Timeout { node: usize },
}

pub struct Mesh {
    pub now: Timestamp,
    pub nodes: Vec<Option<Node>>,
    pub names: Vec<PeerId>,
    pub stores: Vec<Store>,
    pub events: Vec<(usize, Event)>,
    /// Every chunk request sent, as (from, to, patch, index).
    pub chunk_requests: Vec<(usize, usize, PatchKey, u32)>,
    /// Chunk requests that reached a node not holding the chunk, as (from, to, index).
    pub declined: Vec<(usize, usize, u32)>,
    links: BTreeSet<(usize, usize)>,
    queue: BinaryHeap<Reverse<(Timestamp, u64)>>,
    deliveries: HashMap<u64, Delivery>,
    sequence: u64,
    inbound: HashMap<(usize, u64), (usize, RequestId, FetchRequest)>,
    next_inbound: u64,
    seen_gossip: BTreeSet<(usize, PatchKey)>,
}

impl Mesh {
    /// Nodes `0..configs.len()`, named `n0`, `n1`, …, none connected yet.
    pub fn new(configs: Vec<NodeConfig>) -> Self {
        let names = (0..configs.len()).map(|i| PeerId::new(format!("n{i}"))).collect();
        Mesh::named(configs, names)
    }

    /// Nodes with the given names (such as the peer ids of their identity keys), none
    /// connected yet.
    pub fn named(configs: Vec<NodeConfig>, names: Vec<PeerId>) -> Self {
        let count = configs.len();
        assert_eq!(names.len(), count, "one name per node");
        let nodes = configs.into_iter().zip(&names).map(|(config, name)| Some(Node::new(name.clone(), config, trust()))).collect();
        Mesh {
            now: START,
            nodes,
            names,
            stores: (0..count).map(|_| Store::default()).collect(),
            events: Vec::new(),
            chunk_requests: Vec::new(),
            declined: Vec::new(),
            links: BTreeSet::new(),
            queue: BinaryHeap::new(),
            deliveries: HashMap::new(),
            sequence: 0,
            inbound: HashMap::new(),
            next_inbound: 0,
            seen_gossip: BTreeSet::new(),
        }
    }

    /// An origin (node 0) and `offices` office nodes, each at its own site.
    pub fn star(offices: usize, seed: u64) -> Self {
        let mut configs = vec![config("hq", Role::Origin, seed)];
        for i in 0..offices {
            configs.push(config(&format!("office-{i}"), Role::Office, seed + 1 + i as u64));
        }
        Mesh::new(configs)
    }

    pub fn connect(&mut self, a: usize, b: usize) {
        if a == b || !self.links.insert((a.min(b), a.max(b))) {
            return;
        }
        let (name_a, name_b) = (self.names[a].clone(), self.names[b].clone());
        if let Some(node) = self.nodes[a].as_mut() {
            node.handle_peer_connected(self.now, name_b);
        }
        if let Some(node) = self.nodes[b].as_mut() {
            node.handle_peer_connected(self.now, name_a);
        }
        self.drain(a);
        self.drain(b);
    }

    pub fn connect_all(&mut self) {
        for a in 0..self.nodes.len() {
            for b in a + 1..self.nodes.len() {
                self.connect(a, b);
            }
        }
    }

    pub fn disconnect(&mut self, a: usize, b: usize) {
        if !self.links.remove(&(a.min(b), a.max(b))) {
            return;
        }
        let (name_a, name_b) = (self.names[a].clone(), self.names[b].clone());
        if let Some(node) = self.nodes[a].as_mut() {
            node.handle_peer_disconnected(self.now, &name_b);
        }
        if let Some(node) = self.nodes[b].as_mut() {
            node.handle_peer_disconnected(self.now, &name_a);
        }
        self.drain(a);
        self.drain(b);
    }

    /// Stops node `index`: its links drop and its in-memory core is lost. The store stays.
    pub fn crash(&mut self, index: usize) {
        let peers: Vec<usize> = self.links.iter().filter_map(|&(a, b)| if a == index { Some(b) } else if b == index { Some(a) } else { None }).collect();
        for peer in peers {
            self.disconnect(index, peer);
        }
        self.nodes[index] = None;
    }

    /// Starts a fresh core for node `index` and restores what its store holds.
    pub fn restart(&mut self, index: usize, config: NodeConfig) {
        let mut node = Node::new(self.names[index].clone(), config, trust());
        for (patch, manifest) in &self.stores[index].manifests {
            let mut have = Bitfield::new(manifest.chunk_count());
            for chunk in self.stores[index].chunks.get(patch).map(|c| c.keys().copied().collect::<Vec<_>>()).unwrap_or_default() {
                have.insert(chunk);
            }
            let assembled = self.stores[index].assembled.contains(patch);
            node.handle_manifest_loaded(self.now, manifest.clone(), have, assembled, false);
        }
        self.nodes[index] = Some(node);
        self.drain(index);
    }

    /// Publishes `manifest` with all of `bytes` on node `index`.
    pub fn publish(&mut self, index: usize, manifest: Arc<Manifest>, bytes: &[u8]) {
        let key = manifest.key().clone();
        let chunk_size = manifest.header().chunk_size as usize;
        let chunks = bytes.chunks(chunk_size).enumerate().map(|(i, c)| (i as u32, c.to_vec())).collect();
        self.stores[index].chunks.insert(key.clone(), chunks);
        self.stores[index].manifests.insert(key.clone(), manifest.clone());
        self.stores[index].assembled.insert(key);
        let have = Bitfield::full(manifest.chunk_count());
        let now = self.now;
        self.node(index).handle_manifest_loaded(now, manifest, have, true, true);
        self.drain(index);
    }

    /// Calls `input` on node `index` at the current time, then performs its actions.
    pub fn input<R>(&mut self, index: usize, input: impl FnOnce(&mut Node, Timestamp) -> R) -> R {
        let now = self.now;
        let result = input(self.node(index), now);
        self.drain(index);
        result
    }

    pub fn node(&mut self, index: usize) -> &mut Node {
        self.nodes[index].as_mut().expect("node is running")
    }

    fn schedule(&mut self, at: Timestamp, delivery: Delivery) {
        self.sequence += 1;
        self.deliveries.insert(self.sequence, delivery);
        self.queue.push(Reverse((at, self.sequence)));
    }

    fn linked(&self, a: usize, b: usize) -> bool {
        self.links.contains(&(a.min(b), a.max(b)))
    }

    fn index_of(&self, peer: &PeerId) -> usize {
        self.names.iter().position(|name| name == peer).expect("known peer")
    }

    /// Performs every pending action of node `index`.
    fn drain(&mut self, index: usize) {
        loop {
            let Some(node) = self.nodes[index].as_mut() else {
                return;
            };
            let Some(action) = node.poll_action() else {
                break;
            };
            self.perform(index, action);
        }
        if let Some(node) = self.nodes[index].as_mut() {
            while let Some(event) = node.poll_event() {
                self.events.push((index, event));
            }
            if let Some(at) = node.poll_timeout() {
                self.schedule(at.max(self.now), Delivery::Timeout { node: index });
            }
        }
    }

    fn perform(&mut self, index: usize, action: Action) {
        let now = self.now;
        match action {
            Action::Send { peer, message } => {
                let to = self.index_of(&peer);
                self.schedule(now.saturating_add(LATENCY), Delivery::Message { from: index, to, message });
            }
            Action::Gossip(announcement) => self.flood(index, announcement),
            Action::Request { request, peer, fetch } => {
                let to = self.index_of(&peer);
                if let FetchRequest::Chunk { patch, index: chunk } = &fetch {
                    self.chunk_requests.push((index, to, patch.clone(), *chunk));
                }
                self.schedule(now.saturating_add(LATENCY), Delivery::Request { from: index, to, request, fetch });
            }
            Action::Respond { inbound, response } => self.respond(index, inbound, response),
            Action::ServeChunk { inbound, chunk } => {
                let store = &self.stores[index];
                if store.frozen {
                    return;
                }
                let response = match store.chunks.get(&chunk.patch).and_then(|c| c.get(&chunk.index)) {
                    Some(bytes) => {
                        let mut bytes = bytes.clone();
                        if store.corrupt_serving && !bytes.is_empty() {
                            bytes[0] ^= 0xff;
                        }
                        FetchResponse::Chunk(bytes)
                    }
                    None => FetchResponse::Declined(DeclineReason::NotFound),
                };
                self.respond(index, inbound, response);
            }
            Action::StoreManifest(manifest) => {
                self.stores[index].manifests.insert(manifest.key().clone(), manifest);
            }
            Action::AssemblePatch(manifest) => {
                let key = manifest.key().clone();
                let chunks = self.stores[index].chunks.get(&key).cloned().unwrap_or_default();
                let bytes: Vec<u8> = chunks.values().flatten().copied().collect();
                let mut offset = 0usize;
                let mut result = Ok(());
                if self.stores[index].fail_assembly {
                    result = Err("installer exited with status 1".to_string());
                }
                for file in &manifest.body().files {
                    let end = offset + file.size as usize;
                    if patchmesh_core::manifest::ContentHash::of(&bytes[offset..end]) != file.hash {
                        result = Err(format!("file {} does not match its hash", file.name));
                    }
                    offset = end;
                }
                if result.is_ok() {
                    self.stores[index].assembled.insert(key.clone());
                }
                self.node(index).handle_assembled(now, &key, result);
            }
            Action::BanPeer { peer, .. } => {
                let other = self.index_of(&peer);
                self.disconnect(index, other);
            }
        }
    }

    fn respond(&mut self, index: usize, inbound: InboundId, response: FetchResponse) {
        let Some((requester, request, fetch)) = self.inbound.remove(&(index, inbound.0)) else {
            return;
        };
        let size = match &response {
            FetchResponse::Chunk(bytes) | FetchResponse::Body(bytes) => bytes.len() as u64,
            FetchResponse::Declined(_) => 0,
        };
        let rate = self.stores[index].serve_rate.unwrap_or(BANDWIDTH).max(1);
        let transfer = Duration::from_micros(size * 1_000_000 / rate);
        let at = self.now.saturating_add(LATENCY + transfer);
        self.schedule(at, Delivery::Response { to: requester, request, fetch, response });
    }

    fn flood(&mut self, from: usize, announcement: patchmesh_core::Announcement) {
        self.seen_gossip.insert((from, announcement.header.patch.clone()));
        let peers: Vec<usize> = (0..self.nodes.len()).filter(|&to| self.linked(from, to)).collect();
        for to in peers {
            let delivery = Delivery::Gossip { from, to, announcement: announcement.clone() };
            self.schedule(self.now.saturating_add(LATENCY), delivery);
        }
    }

    /// Runs until no delivery is left or `limit` of virtual time has passed.
    pub fn run_for(&mut self, limit: Duration) {
        let end = self.now.saturating_add(limit);
        while let Some(Reverse((at, sequence))) = self.queue.peek().copied() {
            if at > end {
                break;
            }
            self.queue.pop();
            self.now = at;
            let delivery = self.deliveries.remove(&sequence).expect("scheduled delivery");
            self.deliver(delivery);
        }
        self.now = self.now.max(end.min(self.now));
    }

    /// As [`Mesh::run_for`], but the clock ends at `now + limit` even when nothing was
    /// delivered near the end, so timers set past the last delivery can fall due.
    pub fn advance(&mut self, limit: Duration) {
        let end = self.now.saturating_add(limit);
        self.run_for(limit);
        self.now = self.now.max(end);
    }

    fn deliver(&mut self, delivery: Delivery) {
        let now = self.now;
        match delivery {
            Delivery::Message { from, to, message } => {
                if !self.linked(from, to) || self.nodes[to].is_none() {
                    return;
                }
                let name = self.names[from].clone();
                self.node(to).handle_message(now, &name, message);
                self.drain(to);
            }
            Delivery::Gossip { from, to, announcement } => {
                if !self.linked(from, to) || self.nodes[to].is_none() {
                    return;
                }
                let key = announcement.header.patch.clone();
                let name = self.names[from].clone();
                let verdict = self.node(to).handle_gossip(now, &name, announcement.clone());
                if verdict == Validation::Accept && !self.seen_gossip.contains(&(to, key)) {
                    self.flood(to, announcement);
                }
                self.drain(to);
            }
            Delivery::Request { from, to, request, fetch } => {
                if !self.linked(from, to) || self.nodes[to].is_none() {
                    return;
                }
                if let FetchRequest::Chunk { patch, index } = &fetch {
                    let held = self.stores[to].chunks.get(patch).is_some_and(|chunks| chunks.contains_key(index));
                    if !held {
                        self.declined.push((from, to, *index));
                    }
                }
                self.next_inbound += 1;
                let inbound = InboundId(self.next_inbound);
                self.inbound.insert((to, inbound.0), (from, request, fetch.clone()));
                let name = self.names[from].clone();
                self.node(to).handle_fetch_request(now, &name, inbound, fetch);
                self.drain(to);
            }
            Delivery::Response { to, request, fetch, response } => {
                if self.nodes[to].is_none() {
                    return;
                }
                self.deliver_response(to, request, fetch, response);
                self.drain(to);
            }
            Delivery::Timeout { node } => {
                if let Some(core) = self.nodes[node].as_mut() {
                    if core.poll_timeout().is_some_and(|at| at <= now) {
                        core.handle_timeout(now);
                    }
                }
                self.drain(node);
            }
        }
    }

    fn deliver_response(&mut self, to: usize, request: RequestId, fetch: FetchRequest, response: FetchResponse) {
        let now = self.now;
        match (fetch, response) {
            (FetchRequest::Body { .. }, FetchResponse::Body(bytes)) => {
                self.node(to).handle_body_outcome(now, request, BodyOutcome::Received(bytes));
            }
            (FetchRequest::Body { .. }, FetchResponse::Declined(reason)) => {
                self.node(to).handle_body_outcome(now, request, BodyOutcome::Declined(reason));
            }
            (FetchRequest::Chunk { patch, index }, FetchResponse::Chunk(bytes)) => {
                let manifest = self.node(to).manifest(&patch).cloned().expect("manifest before chunks");
                let outcome = match manifest.verify_chunk(index, &bytes) {
                    Ok(()) => {
                        self.stores[to].chunks.entry(patch).or_default().insert(index, bytes);
                        ChunkOutcome::Stored
                    }
                    Err(error) => ChunkOutcome::Corrupt { reason: error.to_string() },
                };
                self.node(to).handle_chunk_outcome(now, request, outcome);
            }
            (FetchRequest::Chunk { .. }, FetchResponse::Declined(reason)) => {
                self.node(to).handle_chunk_outcome(now, request, ChunkOutcome::Declined(reason));
            }
            (_, _) => {
                self.node(to).handle_chunk_outcome(now, request, ChunkOutcome::Failed { reason: "mismatched response".into() });
            }
        }
    }

    /// Whether every running node holds an assembled copy of `patch`.
    pub fn all_complete(&self, patch: &PatchKey) -> bool {
        self.stores.iter().zip(&self.nodes).all(|(store, node)| node.is_none() || store.assembled.contains(patch))
    }

    /// The bytes node `index` holds for `patch`, concatenated.
    pub fn bytes(&self, index: usize, patch: &PatchKey) -> Vec<u8> {
        self.stores[index].chunks.get(patch).map(|c| c.values().flatten().copied().collect()).unwrap_or_default()
    }

    /// Chunk payload bytes node `index` served for `patch`.
    pub fn served(&self, index: usize, patch: &PatchKey) -> u64 {
        self.nodes[index]
            .as_ref()
            .and_then(|node| node.status(START).patches.into_iter().find(|p| p.patch_id == patch.id.as_str() && p.version == patch.version))
            .map(|p| p.stats.bytes_served)
            .unwrap_or(0)
    }
}

pub fn config(site: &str, role: Role, seed: u64) -> NodeConfig {
    let mut config = NodeConfig::new(site, role);
    config.seed = seed;
    config.request_timeout = Duration::from_secs(5);
    config
}
