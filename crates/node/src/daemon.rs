//! The office-node daemon: the event loop that drives the protocol core with libp2p,
//! the chunk store and the control API.
//!
//! One task owns the swarm and the core. Store work (hashing, fsync) runs on tokio's
//! blocking pool and reports back over a bounded channel, so a slow disk never stalls
//! the network.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance};
use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, Swarm, identity, noise, ping, tcp, yamux};
use patchmesh_core::protocol::{BodyOutcome, GovernanceError, InboundId, RequestId};
use patchmesh_core::wire::{ANNOUNCE_TOPIC, DeclineReason, FetchRequest, FetchResponse, Message};
use patchmesh_core::{
    Action, Announcement, Bitfield, ChunkId, ChunkOutcome, Event, Manifest, Node, NodeConfig, PatchKey, PeerId, Role,
    Timestamp, TrustPolicy, Validation,
};
use patchmesh_core::governance::{AuditEvent, VerifiedMembership};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, error, info, info_span, warn};

use crate::behaviour::{Ack, Behaviour, BehaviourEvent, MAX_GOSSIP_BYTES};
use crate::config::NodeSettings;
use crate::control::{self, ControlRequest, ControlResponse, PendingControl, StatusReport};
use crate::governance::{self, GovernanceFiles};
use crate::hooks::{self, Hooks};
use crate::keyfile;
use crate::pacing::{Paced, Pacer};
use crate::reload::{self, Pacers};
use crate::log_limit::WarnLimiter;
use crate::store::{ChunkStore, WriteChunkError};

/// How often bootstrap peers that are not connected are dialled again.
const REDIAL_INTERVAL: Duration = Duration::from_secs(5);
/// A connection that closes within this time after it opened counts as short-lived.
const SHORT_CONNECTION: Duration = Duration::from_secs(1);
/// Short-lived connections in a row to one peer before the node warns that the peer may
/// be refusing it.
const SHORT_CONNECTIONS_BEFORE_WARNING: u32 = 3;
/// Store tasks waiting to report back; the loop stops reading the network when full.
const STORE_QUEUE: usize = 256;

/// A daemon that could not start or stopped on an error.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The identity key could not be read.
    #[error(transparent)]
    Identity(#[from] keyfile::KeyFileError),
    /// The trust file could not be read.
    #[error("cannot use trust file {path}: {reason}")]
    Trust {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The data dir could not be opened.
    #[error("cannot open data dir: {0}")]
    Store(String),
    /// libp2p could not be set up.
    #[error("cannot start networking: {0}")]
    Network(String),
    /// A listen address could not be bound.
    #[error("cannot listen on {address}: {reason}; check that the port is free and the address is local")]
    Listen {
        /// The address.
        address: Multiaddr,
        /// Why.
        reason: String,
    },
    /// Another process holds the data dir.
    #[error("data dir {path} is in use by another patchmesh node; stop it or give this node its own data_dir")]
    DataDirInUse {
        /// The data dir.
        path: PathBuf,
    },
    /// The control socket could not be created.
    #[error("cannot create control socket {path}: {source}")]
    Control {
        /// The socket.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Results of store work done off the event loop.
enum StoreDone {
    ChunkWritten { request: RequestId, outcome: ChunkOutcome },
    ChunkRead { channel: ResponseChannel<FetchResponse>, chunk: ChunkId, result: Result<Vec<u8>, String> },
    Assembled { patch: PatchKey, result: Result<Vec<PathBuf>, String> },
    Imported { manifest: Arc<Manifest>, result: Result<Vec<PathBuf>, String>, reply: oneshot::Sender<ControlResponse> },
}

/// Runs a node until `shutdown` resolves.
pub async fn run(settings: NodeSettings, shutdown: impl std::future::Future<Output = ()>) -> Result<(), DaemonError> {
    let secret = keyfile::read_secret_key(&settings.identity_key)?;
    let trust_text = std::fs::read_to_string(&settings.trust_file)
        .map_err(|error| DaemonError::Trust { path: settings.trust_file.clone(), reason: error.to_string() })?;
    let loaded = governance::read_trust(&trust_text, Timestamp::now_system())
        .map_err(|reason| DaemonError::Trust { path: settings.trust_file.clone(), reason })?;
    let trust = loaded.publishers();
    // Lock before the store opens, because opening removes leftover temp files that a
    // running node could still be writing.
    std::fs::create_dir_all(&settings.data_dir)
        .map_err(|error| DaemonError::Store(format!("cannot create {}: {error}", settings.data_dir.display())))?;
    let _lock = lock_data_dir(&settings.data_dir)?;
    let store = ChunkStore::open(&settings.data_dir).map_err(|error| DaemonError::Store(error.to_string()))?;
    for address in &settings.listen {
        probe_listen_address(address)?;
    }

    let keypair = identity::Keypair::ed25519_from_bytes(*secret.seed())
        .map_err(|error| DaemonError::Network(error.to_string()))?;
    let local_peer = keypair.public().to_peer_id();
    let role = if settings.origin { Role::Origin } else { Role::Office };
    let mut config = NodeConfig::new(settings.site.clone(), role);
    // The core signs status reports with the libp2p identity key; their sequence comes
    // from the clock, so nothing about them needs persisting across restarts.
    config.identity = Some(Arc::new(secret));
    config.seed = u64::from_le_bytes(blake3::hash(&local_peer.to_bytes()).as_bytes()[..8].try_into().unwrap_or_default());
    if let Some(max_strikes) = settings.max_strikes {
        config.max_strikes = max_strikes;
    }
    config.origin_budget = settings.origin_budget;
    config.validate().map_err(|error| DaemonError::Network(error.to_string()))?;
    let request_timeout = config.request_timeout;
    let local = PeerId::new(local_peer.to_base58());
    let policy = match loaded {
        governance::LoadedTrust::Governed(policy) => Some(policy),
        governance::LoadedTrust::Publishers(_) => None,
    };
    if let (Some(path), None) = (&settings.membership_file, &policy) {
        let reason = format!("membership_file {} needs a format 2 trust file, but this one is format 1; convert it with `patchmesh trust init --import-v1`", path.display());
        return Err(DaemonError::Trust { path: settings.trust_file.clone(), reason });
    }
    let mut node = match policy {
        Some(policy) => Node::with_policy(local, config, policy),
        None => Node::new(local, config, trust.clone()),
    };
    // Newer trust file versions taken from peers before a restart; the membership list
    // may be signed under one of them, so they apply first.
    restore_trust_chain(&mut node, &settings.data_dir);
    let trust = match node.policy() {
        Some(policy) => policy.publisher_trust(),
        None => trust,
    };
    let trust_version = node.policy().map(|policy| policy.policy().version);
    let membership = match node.policy() {
        None => None,
        Some(policy) => {
            governance::read_membership(settings.membership_file.as_deref(), &settings.data_dir, policy, Timestamp::now_system())
                .map_err(|reason| DaemonError::Trust {
                    path: settings.membership_file.clone().unwrap_or_else(|| settings.data_dir.join("membership.toml")),
                    reason,
                })?
        }
    };

    let idle = settings.idle_connection_timeout;
    let upload = Pacer::new(settings.upload_caps.clone());
    let download = Pacer::new(settings.download_caps.clone());
    let pacers = Pacers { upload: upload.clone(), download: download.clone() };
    let mut behaviour = Behaviour::new(&keypair, request_timeout + Duration::from_secs(5))
        .map_err(|error| DaemonError::Network(error.to_string()))?;
    if let Some(members) = &membership {
        behaviour.admit_only(governance::member_peers(members.signed()));
    }
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_other_transport(|key| paced_tcp(key, upload, download))
        .map_err(|error| DaemonError::Network(error.to_string()))?
        .with_behaviour(|_| behaviour)
        .map_err(|error| DaemonError::Network(error.to_string()))?
        .with_swarm_config(|config| config.with_idle_connection_timeout(idle))
        .build();
    let topic = IdentTopic::new(ANNOUNCE_TOPIC);
    swarm.behaviour_mut().gossipsub.subscribe(&topic).map_err(|error| DaemonError::Network(error.to_string()))?;
    for address in &settings.listen {
        swarm
            .listen_on(address.clone())
            .map_err(|error| DaemonError::Listen { address: address.clone(), reason: error.to_string() })?;
    }

    let listener = control::bind(&settings.control_socket)
        .map_err(|source| DaemonError::Control { path: settings.control_socket.clone(), source })?;
    let (control_tx, control_rx) = mpsc::channel(64);
    let sighup_task = tokio::spawn(reload::forward_sighup(control_tx.clone()));
    let control_task = tokio::spawn(control::serve(listener, control_tx));

    let span = info_span!("node", peer = %local_peer, site = %settings.site);
    let _entered = span.enter();
    info!(data_dir = %settings.data_dir.display(), origin = settings.origin, "node starting");
    if settings.fault_injection.corrupt_served_chunks {
        warn!("fault injection: this node corrupts every chunk it serves");
    }

    let (store_tx, store_rx) = mpsc::channel(STORE_QUEUE);
    let mut daemon = Daemon {
        swarm,
        node,
        store,
        trust,
        topic,
        settings: settings.clone(),
        outbound_fetch: HashMap::new(),
        outbound_sync: HashMap::new(),
        inbound: HashMap::new(),
        next_inbound: 0,
        sync_queues: HashMap::new(),
        store_tx,
        store_tasks: 0,
        files: HashMap::new(),
        listen: Vec::new(),
        warnings: WarnLimiter::new(Duration::from_secs(60), 5),
        dial_targets: settings.bootstrap.clone(),
        gossip_limit: WarnLimiter::new(Duration::from_secs(10), 50),
        governance: GovernanceFiles::open(&settings.data_dir),
        refusals: WarnLimiter::new(Duration::from_secs(60), 1),
        hook_failures_reported: HashSet::new(),
        connection_opened: HashMap::new(),
        short_connections: HashMap::new(),
        hooks: Hooks::start(settings.hooks.clone(), &settings.data_dir, hooks::Identity { site: settings.site.clone(), peer_id: local_peer.to_base58() }),
        pacers,
    };
    daemon.restore_governance(trust_version, membership);
    daemon.restore();
    let result = daemon.run_loop(control_rx, store_rx, shutdown).await;
    control_task.abort();
    sighup_task.abort();
    let _ = std::fs::remove_file(&settings.control_socket);
    info!("node stopped");
    result
}

struct Daemon {
    swarm: Swarm<Behaviour>,
    node: Node,
    store: ChunkStore,
    trust: TrustPolicy,
    topic: IdentTopic,
    settings: NodeSettings,
    /// Fetch requests in flight: libp2p's id to the core's.
    outbound_fetch: HashMap<OutboundRequestId, (RequestId, FetchRequest)>,
    /// One-way messages in flight, per peer: the ack releases the next one.
    outbound_sync: HashMap<OutboundRequestId, libp2p::PeerId>,
    /// Inbound fetch requests without a response yet.
    inbound: HashMap<InboundId, ResponseChannel<FetchResponse>>,
    next_inbound: u64,
    /// Messages waiting per peer, sent one at a time so they arrive in order.
    sync_queues: HashMap<libp2p::PeerId, SyncQueue>,
    store_tx: mpsc::Sender<StoreDone>,
    store_tasks: usize,
    /// Assembled files per complete patch.
    files: HashMap<PatchKey, Vec<PathBuf>>,
    listen: Vec<Multiaddr>,
    /// Limits warnings that remote peers can trigger to a few per peer per minute.
    warnings: WarnLimiter,
    /// Announcements accepted for decoding per forwarding peer: 50 per 10 s.
    gossip_limit: WarnLimiter,
    /// Peers redialled while disconnected: the bootstrap list and addresses from
    /// connect requests.
    dial_targets: Vec<Multiaddr>,
    /// Saved approvals and orders, and the audit log.
    governance: GovernanceFiles,
    /// Limits warnings about peers the membership list refuses to one per peer a minute.
    refusals: WarnLimiter,
    /// Runs the `[hooks]` programs on patch events.
    hooks: Hooks,
    /// Versions whose failed `verified` hook was already passed to the core.
    hook_failures_reported: HashSet<PatchKey>,
    /// When each open connection was established.
    connection_opened: HashMap<libp2p::swarm::ConnectionId, std::time::Instant>,
    /// Short-lived connections in a row, per peer.
    short_connections: HashMap<libp2p::PeerId, u32>,
    /// The token buckets every connection shares, for a reload to change.
    pacers: Pacers,
}

#[derive(Default)]
struct SyncQueue {
    in_flight: bool,
    waiting: VecDeque<Message>,
}

impl SyncQueue {
    /// Queues `message`, merging a `Have` into a waiting `Have` for the same patch and
    /// replacing a waiting status report of the same node.
    ///
    /// Messages go out one at a time. Without merging, chunks verified while one message
    /// waits for its ack would queue up as many small `Have`s. Peers would then learn of
    /// new chunks late and request from the origin chunks that a neighbour already has.
    /// Only a node's latest report matters, so a slow peer's queue contains at most one
    /// report per node however fast reports flood.
    fn push(&mut self, message: Message) {
        if let Message::Status(report) = &message {
            let waiting = self.waiting.iter_mut().find_map(|queued| match queued {
                Message::Status(old) if old.report.node == report.report.node => Some(old),
                _ => None,
            });
            if let Some(old) = waiting {
                if old.report.sequence < report.report.sequence {
                    *old = report.clone();
                }
                return;
            }
        }
        if let Message::Have { patch, indices } = &message {
            if let Some(Message::Have { patch: waiting_patch, indices: waiting }) = self.waiting.back_mut() {
                if waiting_patch == patch {
                    waiting.extend_from_slice(indices);
                    return;
                }
            }
        }
        self.waiting.push_back(message);
    }
}

impl Daemon {
    /// Loads what the store verified before a restart into the core.
    fn restore(&mut self) {
        let loaded = match self.store.load_all(&self.trust) {
            Ok(loaded) => loaded,
            Err(error) => {
                error!(%error, "cannot read the store; starting empty");
                return;
            }
        };
        let now = Timestamp::now_system();
        for patch in loaded {
            let key = patch.manifest.key().clone();
            info!(patch = %key, chunks = patch.have.count(), total = patch.manifest.chunk_count(), assembled = patch.assembled, "resuming patch");
            if patch.assembled {
                self.files.insert(key, self.store.file_paths(&patch.manifest));
            }
            self.node.handle_manifest_loaded(now, patch.manifest, patch.have, patch.assembled, false);
        }
        self.pump();
        self.enforce_disk_budget();
    }

    async fn run_loop(
        &mut self,
        mut control_rx: mpsc::Receiver<PendingControl>,
        mut store_rx: mpsc::Receiver<StoreDone>,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), DaemonError> {
        tokio::pin!(shutdown);
        let mut redial = tokio::time::interval(REDIAL_INTERVAL);
        loop {
            let timeout = self.node.poll_timeout();
            let sleep = async {
                match timeout {
                    Some(at) => {
                        let wait = at.saturating_duration_since(Timestamp::now_system());
                        tokio::time::sleep(wait).await;
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = &mut shutdown => break,
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                Some(done) = store_rx.recv() => self.on_store_done(done),
                Some(pending) = control_rx.recv() => self.on_control(pending),
                () = sleep => self.node.handle_timeout(Timestamp::now_system()),
                _ = redial.tick() => {
                    self.redial();
                    self.report_hook_failures();
                }
            }
            self.pump();
        }
        info!(store_tasks = self.store_tasks, "shutting down; waiting for store writes");
        // Writes are atomic (temp file, fsync, rename), so a write cut short leaves
        // nothing visible; waiting lets the ones under way finish cleanly.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while self.store_tasks > 0 {
            match tokio::time::timeout_at(deadline, store_rx.recv()).await {
                Ok(Some(_)) => self.store_tasks -= 1,
                _ => break,
            }
        }
        Ok(())
    }

    /// Tells the core about `verified` hooks that failed since the last look, so its
    /// status reports count those versions failed. Hooks run in their own task, so this
    /// polls their ledger on the redial tick rather than on every event.
    fn report_hook_failures(&mut self) {
        for record in self.hooks.failures() {
            let patch = record.event.patch;
            if record.event.kind != hooks::HookKind::Verified || !self.hook_failures_reported.insert(patch.clone()) {
                continue;
            }
            let reason = record.outcome.map_or_else(|| "hook failed".to_string(), |outcome| format!("verified hook: {outcome}"));
            self.node.handle_hook_failed(Timestamp::now_system(), &patch, reason);
        }
    }

    fn redial(&mut self) {
        for address in self.dial_targets.clone() {
            let Some(libp2p::multiaddr::Protocol::P2p(peer)) = address.iter().last() else {
                continue;
            };
            if !self.swarm.is_connected(&peer) {
                if let Err(error) = self.swarm.dial(address.clone()) {
                    debug!(%address, %error, "dial failed");
                }
            }
        }
    }

    fn core_peer(peer: &libp2p::PeerId) -> PeerId {
        PeerId::new(peer.to_base58())
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        let now = Timestamp::now_system();
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                info!(%address, "listening");
                self.listen.push(address);
                self.write_ready_file();
            }
            SwarmEvent::ConnectionEstablished { peer_id, connection_id, num_established, endpoint, .. } => {
                self.connection_opened.insert(connection_id, std::time::Instant::now());
                if self.node.is_banned(&Self::core_peer(&peer_id)) {
                    let _ = self.swarm.disconnect_peer_id(peer_id);
                    return;
                }
                if num_established.get() == 1 {
                    info!(peer = %peer_id, address = %endpoint.get_remote_address(), "peer connected");
                    self.node.handle_peer_connected(now, Self::core_peer(&peer_id));
                }
            }
            SwarmEvent::ConnectionClosed { peer_id, connection_id, num_established, cause, .. } => {
                self.note_connection_lifetime(peer_id, connection_id);
                if num_established == 0 {
                    info!(peer = %peer_id, cause = ?cause.map(|c| c.to_string()), "peer disconnected");
                    self.sync_queues.remove(&peer_id);
                    self.node.handle_peer_disconnected(now, &Self::core_peer(&peer_id));
                }
            }
            SwarmEvent::IncomingConnectionError { peer_id, error: libp2p::swarm::ListenError::Denied { .. }, send_back_addr, .. } => {
                self.log_refused(peer_id, &send_back_addr);
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error: libp2p::swarm::DialError::Denied { .. }, .. } => {
                self.log_refused(peer_id, &Multiaddr::empty());
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                debug!(peer = ?peer_id, %error, "outgoing connection failed");
            }
            SwarmEvent::Behaviour(event) => self.on_behaviour_event(now, event),
            _ => {}
        }
    }

    /// Warns when connections to one peer keep closing right after they open. The side
    /// that rejects a non-member logs why, but the rejected side only gets closed
    /// connections, so this warning gives its operator the likely cause.
    fn note_connection_lifetime(&mut self, peer: libp2p::PeerId, connection: libp2p::swarm::ConnectionId) {
        let Some(opened) = self.connection_opened.remove(&connection) else {
            return;
        };
        if opened.elapsed() > SHORT_CONNECTION {
            self.short_connections.remove(&peer);
            return;
        }
        let count = self.short_connections.entry(peer).or_insert(0);
        *count += 1;
        if *count >= SHORT_CONNECTIONS_BEFORE_WARNING
            && let Some(suppressed) = self.refusals.check(&format!("closed by {peer}"), std::time::Instant::now())
        {
            warn!(
                %peer,
                closed = *count,
                suppressed,
                local_peer = %self.swarm.local_peer_id(),
                "connections to this peer close right after they open; it may be refusing this node: check that this node's peer id is on the mesh's membership list"
            );
        }
    }

    /// Logs a connection the membership list refused, at most once per peer a minute.
    fn log_refused(&mut self, peer: Option<libp2p::PeerId>, address: &Multiaddr) {
        let key = peer.map_or_else(|| "unknown peer".to_string(), |peer| peer.to_base58());
        if let Some(suppressed) = self.refusals.check(&key, std::time::Instant::now()) {
            warn!(peer = %key, %address, suppressed, "connection refused: peer is not on the membership list");
        }
    }

    fn on_behaviour_event(&mut self, now: Timestamp, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Ping(ping::Event { peer, result: Ok(rtt), .. }) => {
                self.node.handle_peer_rtt(now, &PeerId::new(peer.to_base58()), rtt);
                self.pump();
            }
            BehaviourEvent::Gossipsub(gossipsub::Event::Message { propagation_source, message_id, message }) => {
                let acceptance = self.on_gossip(now, &propagation_source, &message.data);
                self.swarm.behaviour_mut().gossipsub.report_message_validation_result(&message_id, &propagation_source, acceptance);
            }
            BehaviourEvent::Sync(request_response::Event::Message { peer, message, .. }) => match message {
                request_response::Message::Request { request, channel, .. } => {
                    let _ = self.swarm.behaviour_mut().sync.send_response(channel, Ack);
                    self.node.handle_message(now, &Self::core_peer(&peer), request);
                }
                request_response::Message::Response { request_id, .. } => self.sync_done(request_id),
            },
            BehaviourEvent::Sync(request_response::Event::OutboundFailure { peer, request_id, error, .. }) => {
                debug!(%peer, %error, "message delivery failed");
                self.sync_done(request_id);
            }
            BehaviourEvent::Fetch(request_response::Event::Message { peer, message, .. }) => match message {
                request_response::Message::Request { request, channel, .. } => {
                    self.next_inbound += 1;
                    let inbound = InboundId(self.next_inbound);
                    self.inbound.insert(inbound, channel);
                    self.node.handle_fetch_request(now, &Self::core_peer(&peer), inbound, request);
                }
                request_response::Message::Response { request_id, response } => {
                    self.on_fetch_response(now, peer, request_id, response);
                }
            },
            BehaviourEvent::Fetch(request_response::Event::OutboundFailure { peer, request_id, error, .. }) => {
                if let Some((request, fetch)) = self.outbound_fetch.remove(&request_id) {
                    debug!(%peer, ?fetch, %error, "fetch failed");
                    let reason = error.to_string();
                    match fetch {
                        FetchRequest::Body { .. } => self.node.handle_body_outcome(now, request, BodyOutcome::Failed { reason }),
                        FetchRequest::Chunk { .. } => self.node.handle_chunk_outcome(now, request, ChunkOutcome::Failed { reason }),
                    }
                }
            }
            _ => {}
        }
    }

    fn on_gossip(&mut self, now: Timestamp, source: &libp2p::PeerId, data: &[u8]) -> MessageAcceptance {
        // Honest publishers announce a few patches a day; past 50 in 10 s from one
        // forwarding peer, the rest are dropped undecoded and unforwarded.
        if self.gossip_limit.check(&source.to_base58(), std::time::Instant::now()).is_none() {
            return MessageAcceptance::Ignore;
        }
        let announcement = match decode_announcement(data) {
            Ok(announcement) => announcement,
            Err(reason) => {
                if let Some(suppressed) = self.warnings.check(&source.to_base58(), std::time::Instant::now()) {
                    warn!(peer = %source, %reason, suppressed, "announcement rejected");
                }
                return MessageAcceptance::Reject;
            }
        };
        match self.node.handle_gossip(now, &Self::core_peer(source), announcement) {
            Validation::Accept => MessageAcceptance::Accept,
            Validation::Reject => MessageAcceptance::Reject,
            Validation::Ignore => MessageAcceptance::Ignore,
        }
    }

    fn on_fetch_response(&mut self, now: Timestamp, peer: libp2p::PeerId, id: OutboundRequestId, response: FetchResponse) {
        let Some((request, fetch)) = self.outbound_fetch.remove(&id) else {
            return;
        };
        match (fetch, response) {
            (FetchRequest::Body { .. }, FetchResponse::Body(bytes)) => {
                self.node.handle_body_outcome(now, request, BodyOutcome::Received(bytes));
            }
            (FetchRequest::Body { .. }, FetchResponse::Declined(reason)) => {
                self.node.handle_body_outcome(now, request, BodyOutcome::Declined(reason));
            }
            (FetchRequest::Chunk { patch, index }, FetchResponse::Chunk(bytes)) => {
                let Some(manifest) = self.node.manifest(&patch).cloned() else {
                    return;
                };
                let store = self.store.clone();
                let done = self.store_tx.clone();
                self.store_tasks += 1;
                let span = tracing::trace_span!("chunk", peer = %peer, chunk = %ChunkId { patch: patch.clone(), index });
                tokio::task::spawn_blocking(move || {
                    let _entered = span.enter();
                    let outcome = match store.write_chunk(&manifest, index, &bytes) {
                        Ok(()) => ChunkOutcome::Stored,
                        Err(error @ WriteChunkError::Rejected { .. }) => {
                            warn!(%peer, %error, "chunk failed verification; not stored");
                            ChunkOutcome::Corrupt { reason: error.to_string() }
                        }
                        Err(error) => {
                            error!(%error, "cannot store a verified chunk");
                            ChunkOutcome::StoreFailed { reason: error.to_string() }
                        }
                    };
                    let _ = done.blocking_send(StoreDone::ChunkWritten { request, outcome });
                });
            }
            (FetchRequest::Chunk { .. }, FetchResponse::Declined(reason)) => {
                self.node.handle_chunk_outcome(now, request, ChunkOutcome::Declined(reason));
            }
            (fetch, _) => {
                warn!(%peer, ?fetch, "response does not match the request");
                let reason = "response does not match the request".to_string();
                match fetch {
                    FetchRequest::Body { .. } => self.node.handle_body_outcome(now, request, BodyOutcome::Failed { reason }),
                    FetchRequest::Chunk { .. } => self.node.handle_chunk_outcome(now, request, ChunkOutcome::Corrupt { reason }),
                }
            }
        }
    }

    fn on_store_done(&mut self, done: StoreDone) {
        self.store_tasks = self.store_tasks.saturating_sub(1);
        let now = Timestamp::now_system();
        match done {
            StoreDone::ChunkWritten { request, outcome } => self.node.handle_chunk_outcome(now, request, outcome),
            StoreDone::ChunkRead { channel, chunk, result } => {
                let response = match result {
                    Ok(bytes) => FetchResponse::Chunk(bytes),
                    Err(error) => {
                        warn!(%chunk, %error, "cannot serve chunk");
                        FetchResponse::Declined(DeclineReason::NotFound)
                    }
                };
                let _ = self.swarm.behaviour_mut().fetch.send_response(channel, response);
            }
            StoreDone::Assembled { patch, result } => match result {
                Ok(files) => {
                    info!(%patch, files = files.len(), "patch assembled and verified");
                    self.files.insert(patch.clone(), files);
                    self.node.handle_assembled(now, &patch, Ok(()));
                    self.enforce_disk_budget();
                }
                Err(reason) => {
                    error!(%patch, %reason, "assembly failed");
                    self.node.handle_assembled(now, &patch, Err(reason));
                }
            },
            StoreDone::Imported { manifest, result, reply } => match result {
                Ok(files) => {
                    let key = manifest.key().clone();
                    info!(patch = %key, files = files.len(), bytes = manifest.header().total_bytes, "patch published");
                    self.files.insert(key.clone(), files.clone());
                    let have = Bitfield::full(manifest.chunk_count());
                    self.node.handle_manifest_loaded(now, manifest, have, true, true);
                    let _ = reply.send(ControlResponse::Published { patch: key.to_string(), files });
                    self.enforce_disk_budget();
                }
                Err(message) => {
                    let _ = reply.send(ControlResponse::Error { message });
                }
            },
        }
    }

    fn on_control(&mut self, pending: PendingControl) {
        match pending.request {
            ControlRequest::Status => {
                let report = StatusReport {
                    peer_id: self.swarm.local_peer_id().to_base58(),
                    listen: self.listen.iter().map(ToString::to_string).collect(),
                    node: control::status_json(&self.node.status(Timestamp::now_system())),
                    files: self.files.iter().map(|(key, files)| (key.to_string(), files.clone())).collect(),
                    hooks: self.hooks.records(),
                };
                let _ = pending.reply.send(ControlResponse::Status(Box::new(report)));
            }
            ControlRequest::Connect { addresses } => {
                let mut count = 0;
                for text in addresses {
                    match text.parse::<Multiaddr>() {
                        Ok(address) => {
                            // Addresses with a peer id are redialled like bootstrap peers
                            // whenever the connection drops, for example after a partition.
                            let has_peer_id = matches!(address.iter().last(), Some(libp2p::multiaddr::Protocol::P2p(_)));
                            if has_peer_id && !self.dial_targets.contains(&address) {
                                self.dial_targets.push(address.clone());
                            }
                            match self.swarm.dial(address) {
                                Ok(()) => count += 1,
                                Err(error) => warn!(address = %text, %error, "dial failed"),
                            }
                        }
                        Err(error) => warn!(address = %text, %error, "invalid address in connect request"),
                    }
                }
                let _ = pending.reply.send(ControlResponse::Connecting { count });
            }
            ControlRequest::Publish { manifest, sources } => self.publish(manifest, sources, pending.reply),
            ControlRequest::SubmitApprovals { approvals } => {
                let result = self.node.handle_approvals(Timestamp::now_system(), None, approvals);
                // Save before acknowledging: a client told "submitted" may stop the node.
                self.pump();
                let result = result.map_err(|error| match error {
                    GovernanceError::ApprovalsRejected { .. } => error.to_string(),
                    other => format!("approvals not taken: {other}"),
                });
                let _ = pending.reply.send(submitted(result));
            }
            ControlRequest::SubmitControl { control } => {
                let order = format!("{} of {}", control.action, control.patch);
                let result = self.node.handle_control(Timestamp::now_system(), None, control);
                self.pump();
                let result = result.map(usize::from).map_err(|error| format!("{order} not taken: {error}"));
                let _ = pending.reply.send(submitted(result));
            }
            ControlRequest::SubmitMembership { membership } => {
                let version = membership.membership.version;
                let result = self.node.handle_membership(Timestamp::now_system(), None, membership);
                self.pump();
                let result = result.map(usize::from).map_err(|error| format!("membership version {version} not taken: {error}"));
                let _ = pending.reply.send(submitted(result));
            }
            ControlRequest::SubmitTrust { trust } => {
                let version = trust.policy.version;
                let result = self.node.handle_trust(Timestamp::now_system(), None, vec![trust]);
                self.pump();
                // Report the version the node enforces, because the offered version
                // does not show how far ahead the node already is.
                let current = self.node.policy().map_or(0, |policy| policy.policy().version);
                let result = match result {
                    Ok(Some(_)) => Ok(1),
                    Ok(None) => Err(format!("trust file version {version} not taken: the node already enforces version {current}")),
                    Err(error) => Err(error.to_string()),
                };
                let _ = pending.reply.send(submitted(result));
            }
            ControlRequest::Reload => {
                let _ = pending.reply.send(reload::handle(&mut self.settings, &self.pacers, &self.hooks));
            }
            ControlRequest::Audit => {
                let response = match self.governance.read_log() {
                    Ok(lines) => ControlResponse::AuditLog { lines },
                    Err(error) => ControlResponse::Error { message: format!("cannot read the audit log: {error}") },
                };
                let _ = pending.reply.send(response);
            }
        }
    }

    fn publish(&mut self, manifest: String, sources: Vec<PathBuf>, reply: oneshot::Sender<ControlResponse>) {
        let fail = |reply: oneshot::Sender<ControlResponse>, message: String| {
            warn!(%message, "publish refused");
            let _ = reply.send(ControlResponse::Error { message });
        };
        if !self.settings.origin {
            return fail(reply, "this node is not an origin; publish on the node with `origin = true`".into());
        }
        let manifest = match Manifest::from_json(&manifest) {
            Ok(manifest) => Arc::new(manifest),
            Err(error) => return fail(reply, error.to_string()),
        };
        if let Err(error) = self.trust.verify(manifest.announcement()) {
            return fail(reply, format!("{error}; add the publisher's key to {}", self.settings.trust_file.display()));
        }
        let patch = manifest.key();
        if let Some(latest) = self.node.latest_version(&patch.id) {
            if latest >= patch.version {
                return fail(
                    reply,
                    format!(
                        "patch {} version {} is not newer than version {latest}, which this node already holds; \
                         publish with a version greater than {latest}",
                        patch.id, patch.version
                    ),
                );
            }
        }
        if sources.len() != manifest.body().files.len() {
            return fail(
                reply,
                format!("the manifest lists {} files but {} source files were given", manifest.body().files.len(), sources.len()),
            );
        }
        let store = self.store.clone();
        let done = self.store_tx.clone();
        self.store_tasks += 1;
        tokio::task::spawn_blocking(move || {
            let result = store.import(&manifest, &sources).map_err(|error| error.to_string());
            let _ = done.blocking_send(StoreDone::Imported { manifest, result, reply });
        });
    }

    fn sync_done(&mut self, request_id: OutboundRequestId) {
        if let Some(peer) = self.outbound_sync.remove(&request_id) {
            if let Some(queue) = self.sync_queues.get_mut(&peer) {
                queue.in_flight = false;
            }
            self.flush_sync(peer);
        }
    }

    fn flush_sync(&mut self, peer: libp2p::PeerId) {
        let Some(queue) = self.sync_queues.get_mut(&peer) else {
            return;
        };
        if queue.in_flight {
            return;
        }
        if let Some(message) = queue.waiting.pop_front() {
            queue.in_flight = true;
            let id = self.swarm.behaviour_mut().sync.send_request(&peer, message);
            self.outbound_sync.insert(id, peer);
        }
    }

    /// Performs the core's actions and logs its events until both queues are empty.
    fn pump(&mut self) {
        while let Some(action) = self.node.poll_action() {
            self.perform(action);
        }
        while let Some(event) = self.node.poll_event() {
            // Warnings that can repeat are rate-limited per peer, and budget overruns
            // as one kind.
            let limit_key = match &event {
                Event::ManifestDropped { from, .. } => Some(from.as_str()),
                Event::PeerMisbehaved { peer, .. } | Event::PeerSlow { peer, .. } => Some(peer.as_str()),
                Event::OriginBudgetExceeded { .. } => Some("origin-budget"),
                _ => None,
            };
            match limit_key {
                Some(key) => {
                    if let Some(suppressed) = self.warnings.check(key, std::time::Instant::now()) {
                        log_event(&event, suppressed);
                    }
                }
                None => log_event(&event, 0),
            }
            // Read before a recall removes the files; queued after, so the hook runs on
            // a store that no longer contains the version.
            let hook = self.hooks.event_for(&event, &self.node, &self.files);
            self.on_governance_event(event);
            if let Some(hook) = hook {
                self.hooks.notify(hook);
            }
        }
    }

    /// Hands the core the approvals and orders saved before a restart, and records a
    /// trust file version the audit log has not seen.
    fn restore_governance(&mut self, trust_version: Option<u64>, membership: Option<VerifiedMembership>) {
        let now = Timestamp::now_system();
        if let Some(membership) = membership
            && let Err(error) = self.node.handle_membership(now, None, membership.signed().clone())
        {
            warn!(%error, "membership list not taken");
        }
        if let Some(version) = trust_version {
            let previous = self.governance.last_trust_version();
            if previous != Some(version) {
                let revoked = self.node.policy().map(|policy| policy.policy().revoked.iter().copied().collect()).unwrap_or_default();
                let event = AuditEvent::TrustChange { from_version: previous, to_version: version, revoked };
                if let Err(error) = self.governance.append(now, event) {
                    error!(%error, "cannot append to the audit log");
                }
            }
        }
        let (approvals, controls) = self.governance.load_documents();
        for control in controls {
            if let Err(error) = self.node.handle_control(now, None, control) {
                warn!(%error, "saved order no longer takes effect");
            }
        }
        for batch in approvals.chunks(patchmesh_core::governance::MAX_APPROVALS) {
            if let Err(error) = self.node.handle_approvals(now, None, batch.to_vec()) {
                warn!(%error, "saved approvals no longer count");
            }
        }
        // Restoring re-emits audit records for documents already logged; drop them.
        while self.node.poll_event().is_some() {}
        while self.node.poll_action().is_some() {}
    }

    /// Admits only the peers of the membership list the core now holds, closes
    /// connections to the others, and saves the list for restarts.
    fn apply_membership(&mut self, version: u64) {
        let Some(signed) = self.node.membership().map(|members| members.signed().clone()) else {
            return;
        };
        if let Err(error) = governance::save_membership(&self.settings.data_dir, &signed) {
            error!(version, %error, "cannot save the membership list; a restart falls back to membership_file");
        }
        let admitted: std::collections::HashSet<libp2p::PeerId> = governance::member_peers(&signed).collect();
        let Some(members) = self.swarm.behaviour_mut().members.as_mut() else {
            // The first list this node enforces: it arrived from a peer or the control
            // socket on a node started without one. Its signatures meet the trust
            // file's membership rule, so it binds this node as it binds the others.
            self.swarm.behaviour_mut().admit_only(admitted.iter().copied());
            let outsiders: Vec<libp2p::PeerId> = self.swarm.connected_peers().filter(|peer| !admitted.contains(peer)).copied().collect();
            for peer in outsiders {
                warn!(%peer, version, "peer is not on the membership list; closing its connections");
                let _ = self.swarm.disconnect_peer_id(peer);
            }
            info!(version, members = admitted.len(), "membership list enforced");
            return;
        };
        let removed: Vec<libp2p::PeerId> = members.allowed_peers().difference(&admitted).copied().collect();
        for peer in &admitted {
            members.allow_peer(*peer);
        }
        // The allow list closes the connections of each peer it no longer allows.
        for peer in removed {
            members.disallow_peer(peer);
            warn!(%peer, version, "peer removed from the membership list; closing its connections");
        }
        info!(version, members = admitted.len(), "membership list enforced");
    }

    /// Acts on the core's governance events: audit records, saved documents, recalls.
    fn on_governance_event(&mut self, event: Event) {
        match event {
            Event::Audit(audit) => {
                let saves = matches!(audit, AuditEvent::Approval { .. } | AuditEvent::Control { .. });
                if let Err(error) = self.governance.append(Timestamp::now_system(), audit) {
                    error!(%error, "cannot append to the audit log");
                }
                if saves && let Err(error) = self.governance.save_documents(&self.node) {
                    error!(%error, "cannot save approvals and orders; a restart relies on peers to resend them");
                }
            }
            Event::MembershipChanged { version } => self.apply_membership(version),
            Event::TrustChanged { version } => {
                if let Some(policy) = self.node.policy() {
                    self.trust = policy.publisher_trust();
                }
                if let Err(error) = governance::save_trust_chain(&self.settings.data_dir, &self.node.trust_chain()) {
                    error!(version, %error, "cannot save the trust file version; a restart falls back to the installed trust file");
                }
            }
            Event::PatchRecalled { patch, .. } => {
                self.files.remove(&patch);
                match self.store.remove_version(&patch) {
                    Ok(freed) => info!(%patch, freed, "recalled patch removed from the store"),
                    Err(error) => error!(%patch, %error, "cannot remove a recalled patch from the store"),
                }
            }
            _ => {}
        }
    }

    fn libp2p_peer(peer: &PeerId) -> Option<libp2p::PeerId> {
        peer.as_str().parse().ok()
    }

    fn perform(&mut self, action: Action) {
        match action {
            Action::Send { peer, message } => {
                let Some(peer) = Self::libp2p_peer(&peer) else {
                    return;
                };
                self.sync_queues.entry(peer).or_default().push(message);
                self.flush_sync(peer);
            }
            Action::Gossip(announcement) => {
                let data = serde_json::to_vec(&announcement).unwrap_or_default();
                if let Err(error) = self.swarm.behaviour_mut().gossipsub.publish(self.topic.clone(), data) {
                    // Peers connected now also get the announcement directly.
                    debug!(%error, "gossip publish failed");
                }
            }
            Action::Request { request, peer, fetch } => {
                let Some(peer) = Self::libp2p_peer(&peer) else {
                    return;
                };
                let id = self.swarm.behaviour_mut().fetch.send_request(&peer, fetch.clone());
                self.outbound_fetch.insert(id, (request, fetch));
            }
            Action::Respond { inbound, response } => {
                if let Some(channel) = self.inbound.remove(&inbound) {
                    let _ = self.swarm.behaviour_mut().fetch.send_response(channel, response);
                }
            }
            Action::ServeChunk { inbound, chunk } => {
                let Some(channel) = self.inbound.remove(&inbound) else {
                    return;
                };
                let Some(manifest) = self.node.manifest(&chunk.patch).cloned() else {
                    let _ = self.swarm.behaviour_mut().fetch.send_response(channel, FetchResponse::Declined(DeclineReason::NotFound));
                    return;
                };
                let store = self.store.clone();
                let done = self.store_tx.clone();
                let corrupt = self.settings.fault_injection.corrupt_served_chunks;
                self.store_tasks += 1;
                tokio::task::spawn_blocking(move || {
                    let mut result = store.read_chunk(&manifest, chunk.index).map_err(|error| error.to_string());
                    if let (true, Ok(bytes)) = (corrupt, result.as_mut()) {
                        if let Some(first) = bytes.first_mut() {
                            *first ^= 0xff;
                        }
                    }
                    let _ = done.blocking_send(StoreDone::ChunkRead { channel, chunk, result });
                });
            }
            Action::StoreManifest(manifest) => {
                if let Err(error) = self.store.save_manifest(&manifest) {
                    error!(patch = %manifest.key(), %error, "cannot save manifest; a restart will not resume this patch");
                }
            }
            Action::AssemblePatch(manifest) => {
                let store = self.store.clone();
                let done = self.store_tx.clone();
                self.store_tasks += 1;
                tokio::task::spawn_blocking(move || {
                    let patch = manifest.key().clone();
                    let result = store.assemble(&manifest).map_err(|error| error.to_string());
                    let _ = done.blocking_send(StoreDone::Assembled { patch, result });
                });
            }
            Action::BanPeer { peer, reason } => {
                warn!(%peer, %reason, "banning peer");
                if let Some(peer) = Self::libp2p_peer(&peer) {
                    let _ = self.swarm.disconnect_peer_id(peer);
                }
            }
        }
    }

    /// Removes superseded, complete patch versions, oldest first, while the store holds
    /// more than the disk budget. Versions in progress and the newest version of each
    /// patch are never removed.
    fn enforce_disk_budget(&mut self) {
        let Some(budget) = self.settings.disk_budget else {
            return;
        };
        let status = self.node.status(Timestamp::now_system());
        let mut versions: Vec<(PatchKey, bool)> = Vec::new();
        for patch in &status.patches {
            let Ok(id) = patchmesh_core::PatchId::new(patch.patch_id.clone()) else {
                continue;
            };
            let latest = self.node.latest_version(&id).unwrap_or(patch.version);
            let removable = patch.state == patchmesh_core::protocol::TransferState::Complete && patch.version < latest;
            versions.push((PatchKey { id, version: patch.version }, removable));
        }
        let mut usage: u64 = versions.iter().map(|(key, _)| self.store.version_usage(key)).sum();
        if usage <= budget {
            return;
        }
        let mut candidates: Vec<&PatchKey> = versions.iter().filter(|(_, removable)| *removable).map(|(key, _)| key).collect();
        candidates.sort_by_key(|key| key.version);
        for key in candidates {
            if usage <= budget {
                break;
            }
            match self.store.remove_version(key) {
                Ok(freed) => {
                    usage = usage.saturating_sub(freed);
                    self.files.remove(key);
                    self.node.handle_patch_removed(Timestamp::now_system(), key);
                }
                Err(error) => error!(patch = %key, %error, "cannot remove a superseded patch version"),
            }
        }
        if usage > budget {
            warn!(usage, budget, "the store exceeds its disk budget with only current or in-progress patches left");
        }
    }

    /// Writes `<data_dir>/node.json` with the peer id, listen addresses and control
    /// socket, so scripts and the demo can find a node that listens on port 0.
    fn write_ready_file(&self) {
        let info = serde_json::json!({
            "peer_id": self.swarm.local_peer_id().to_base58(),
            "listen": self.listen.iter().map(|a| format!("{a}/p2p/{}", self.swarm.local_peer_id())).collect::<Vec<_>>(),
            "control_socket": self.settings.control_socket,
            "site": self.settings.site,
        });
        let path = self.settings.data_dir.join("node.json");
        let temp = self.settings.data_dir.join(".node.json.tmp");
        let result = std::fs::write(&temp, info.to_string()).and_then(|()| std::fs::rename(&temp, &path));
        if let Err(error) = result {
            warn!(path = %path.display(), %error, "cannot write node.json");
        }
    }
}

/// Builds the control response for approvals or an order handed to the core.
fn submitted(result: Result<usize, String>) -> ControlResponse {
    match result {
        Ok(new) => ControlResponse::Submitted { new },
        Err(message) => {
            warn!(%message, "control submission rejected");
            ControlResponse::Error { message }
        }
    }
}

/// Locks `<data_dir>/lock` for the life of the process, so two nodes never share one store
/// or one control socket. The operating system releases the lock when the process exits,
/// even after SIGKILL.
fn lock_data_dir(data_dir: &std::path::Path) -> Result<std::fs::File, DaemonError> {
    let path = data_dir.join("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|error| DaemonError::Store(format!("cannot open {}: {error}", path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(DaemonError::DataDirInUse { path: data_dir.to_path_buf() }),
        Err(std::fs::TryLockError::Error(error)) => {
            Err(DaemonError::Store(format!("cannot lock {}: {error}", path.display())))
        }
    }
}

/// Fails if a fixed TCP port in `address` is already taken.
///
/// libp2p binds listening sockets with SO_REUSEPORT, so a second node on the same port
/// would start without error and the kernel would split connections between the two. A
/// plain bind without that option fails while any listener holds the port.
fn probe_listen_address(address: &Multiaddr) -> Result<(), DaemonError> {
    use libp2p::multiaddr::Protocol;
    let mut protocols = address.iter();
    let ip: std::net::IpAddr = match protocols.next() {
        Some(Protocol::Ip4(ip)) => ip.into(),
        Some(Protocol::Ip6(ip)) => ip.into(),
        _ => return Ok(()),
    };
    let Some(Protocol::Tcp(port)) = protocols.next() else {
        return Ok(());
    };
    if port == 0 {
        return Ok(());
    }
    std::net::TcpListener::bind((ip, port))
        .map(drop)
        .map_err(|error| DaemonError::Listen { address: address.clone(), reason: error.to_string() })
}

/// Decodes a gossiped announcement, refusing anything over [`MAX_GOSSIP_BYTES`] before
/// parsing it. gossipsub enforces the same limit on the wire; this guards the decoder if
/// that limit is ever raised.
/// Steps the node's policy through the trust file versions saved in the data dir. A
/// version that no longer verifies leaves the node on the installed trust file, and the
/// reason is logged.
fn restore_trust_chain(node: &mut Node, data_dir: &std::path::Path) {
    if node.policy().is_none() {
        return;
    }
    let chain = match governance::read_trust_chain(data_dir) {
        Ok(chain) => chain,
        Err(error) => {
            warn!(%error, "saved trust file versions not used");
            return;
        }
    };
    match node.handle_trust(Timestamp::now_system(), None, chain) {
        Ok(Some(version)) => info!(version, "trust file version restored from the data dir"),
        Ok(None) => {}
        Err(error) => warn!(%error, "saved trust file versions not used; the installed trust file applies"),
    }
}

fn decode_announcement(data: &[u8]) -> Result<Announcement, String> {
    if data.len() > MAX_GOSSIP_BYTES {
        return Err(format!("{} bytes exceeds the limit of {MAX_GOSSIP_BYTES}", data.len()));
    }
    serde_json::from_slice(data).map_err(|error| format!("undecodable: {error}"))
}

/// Logs a core event; `suppressed` counts earlier warnings for the same peer that the
/// rate limit held back.
/// TCP with noise and yamux, paced on the raw socket so caps count every byte the
/// node sends or receives, protocol framing included.
fn paced_tcp(
    key: &identity::Keypair,
    upload: std::sync::Arc<Pacer>,
    download: std::sync::Arc<Pacer>,
) -> Result<
    libp2p::core::transport::Boxed<(libp2p::PeerId, libp2p::core::muxing::StreamMuxerBox)>,
    Box<dyn std::error::Error + Send + Sync>,
> {
    use libp2p::Transport;
    let noise = noise::Config::new(key)?;
    Ok(tcp::tokio::Transport::new(tcp::Config::default().nodelay(true))
        .map(move |stream, _| Paced::new(stream, upload.clone(), download.clone()))
        .upgrade(libp2p::core::upgrade::Version::V1)
        .authenticate(noise)
        .multiplex(yamux::Config::default())
        .map(|(peer, muxer), _| (peer, libp2p::core::muxing::StreamMuxerBox::new(muxer)))
        .boxed())
}

fn log_event(event: &Event, suppressed: u32) {
    match event {
        Event::ManifestAccepted { patch, from } => info!(%patch, from = ?from.as_ref().map(PeerId::as_str), "manifest accepted"),
        Event::ManifestDropped { patch, from, reason } => {
            warn!(%patch, peer = %from, %reason, suppressed, "announcement dropped")
        }
        Event::PatchComplete { patch, stats, elapsed } => info!(
            %patch,
            bytes_from_origin = stats.bytes_from_origin,
            bytes_from_peers = stats.bytes_from_peers,
            elapsed_s = elapsed.as_secs_f64(),
            "patch complete"
        ),
        Event::PatchFailed { patch, reason } => error!(%patch, %reason, "patch failed"),
        Event::PeerSlow { peer, chunk, timeouts, pause } => {
            warn!(%peer, %chunk, timeouts, pause_s = pause.as_secs(), "chunk request timed out; resting the peer")
        }
        Event::PeerMisbehaved { peer, reason, strikes } => warn!(%peer, strikes, %reason, suppressed, "peer misbehaved"),
        Event::ApprovalsMet { patch } => info!(%patch, "approval rule met"),
        Event::PatchRecalled { patch, reason } => warn!(%patch, %reason, "patch recalled"),
        Event::MembershipChanged { version } => info!(version, "membership list changed"),
        Event::TrustChanged { version } => info!(version, "trust file version changed"),
        Event::WaveOpened { patch, wave } => info!(%patch, wave, "rollout wave open; fetching"),
        Event::WaveWaiting { patch, wave: Some(wave), reason } => info!(%patch, wave, %reason, "waiting for the rollout wave"),
        Event::WaveWaiting { patch, wave: None, reason } => info!(%patch, %reason, "not in any rollout wave"),
        Event::Audit(_) => {}
        Event::OriginBudgetExceeded { chunk, over_bytes } => {
            warn!(%chunk, over_bytes, suppressed, "served a chunk past the origin budget: no live peer holds it")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(seed: u8, sequence: u64) -> Message {
        let key = patchmesh_core::SecretKey::from_seed([seed; 32]);
        let report = patchmesh_core::governance::StatusReport {
            node: key.public().peer_id(),
            key: key.public(),
            site: "branch-1".into(),
            role: Role::Office,
            sequence,
            issued: 1_800_000_000,
            patches: Vec::new(),
        };
        Message::Status(report.sign(&key))
    }

    #[test]
    fn queued_report_replaced_by_newer() {
        let mut queue = SyncQueue::default();
        for message in [report(1, 5), report(2, 1), report(1, 7), report(1, 6)] {
            queue.push(message);
        }
        let sequences: Vec<u64> = queue
            .waiting
            .iter()
            .filter_map(|message| match message {
                Message::Status(signed) => Some(signed.report.sequence),
                _ => None,
            })
            .collect();
        assert_eq!(sequences, [7, 1]);
    }

    #[test]
    fn oversized_announcement_rejected() {
        let data = vec![b' '; MAX_GOSSIP_BYTES + 1];
        let error = decode_announcement(&data).expect_err("oversized");
        assert!(error.contains("exceeds"), "{error}");
    }

    #[test]
    fn garbage_announcement_rejected() {
        assert!(decode_announcement(b"{\"header\": 1}").is_err());
    }
}
