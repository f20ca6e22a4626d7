//! The mesh protocol state machine.
//!
//! A [`Node`] learns of patches from trusted announcements, fetches their bodies and
//! chunks from peers, advertises to peers the chunks it has, and decides which requests it
//! serves.
//! See the crate documentation for the order in which a driver calls it.

mod budget;
mod config;
mod endgame;
mod governance;
mod origin_scan;
mod peer;
mod reports;
mod schedule;
mod status;
mod transfer;
mod waves;

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tracing::{debug, trace, warn};

pub use config::{ConfigError, NodeConfig, SourcePolicy};
pub use governance::{ApprovalReport, GovernanceError, MAX_TRUST_CHAIN};
pub use reports::{MIN_REPORT_INTERVAL, PROGRESS_REPORT_INTERVAL, REPORT_REFRESH, SiteRollout};
pub use status::{NodeStatus, PatchStatus, PeerStatus};
pub use waves::{WaveCount, WaveStatus};
pub use transfer::{TransferState, TransferStats};

pub use crate::wire::Role;
use crate::bitfield::Bitfield;
use crate::ids::{ChunkId, PatchId, PatchKey, PeerId};
use crate::manifest::{Announcement, Manifest};
use crate::time::Timestamp;
use crate::trust::TrustPolicy;
use crate::wire::{DeclineReason, FetchRequest, FetchResponse, Hello, Message, WIRE_VERSION};
use peer::{MAX_UNKNOWN_PATCHES_PER_PEER, Peer};
use crate::rng::SplitMix64;
use transfer::Transfer;

/// How long a node waits before requesting again a body that no peer could serve.
const BODY_RETRY: Duration = Duration::from_secs(2);
/// How long chunk requests pause after the local store failed to write.
const STORE_ERROR_PAUSE: Duration = Duration::from_secs(5);
/// How long a peer gets no chunk requests after its first timeout; each further
/// consecutive timeout doubles it, up to [`MAX_COOLDOWN`].
const COOLDOWN: Duration = Duration::from_secs(15);
const MAX_COOLDOWN: Duration = Duration::from_secs(300);
/// How long after a failed assembly (a full disk, say) the node requests it again.
const ASSEMBLE_RETRY: Duration = Duration::from_secs(10);
/// How long a node waits before asking the origin again for chunks it declined for its
/// egress budget. Peers usually pass such a chunk on well before.
const ORIGIN_RETRY: Duration = Duration::from_secs(5);

/// An outbound request, chosen by the node and carried by the driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(pub u64);

/// An inbound request, numbered by the driver so it can match the node's response.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InboundId(pub u64);

/// The verdict on a gossiped announcement, in gossipsub v1.1 terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Validation {
    /// Valid and new: store it and forward it.
    Accept,
    /// Invalid, such as an untrusted or bad signature: drop it and penalise the sender.
    Reject,
    /// Valid but not worth forwarding (known, superseded, expired): drop it without
    /// penalty, so honest but slow peers are not punished.
    Ignore,
}

/// What became of a chunk request, as the driver reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChunkOutcome {
    /// The bytes passed [`Manifest::verify_chunk`] and the store made them durable.
    Stored,
    /// The peer answered with bytes that failed verification.
    Corrupt {
        /// What the verification found.
        reason: String,
    },
    /// The peer declined the request.
    Declined(DeclineReason),
    /// The request failed in transport (connection closed, stream reset, timeout).
    Failed {
        /// The transport's error.
        reason: String,
    },
    /// The bytes verified but the local store could not write them.
    StoreFailed {
        /// The store's error.
        reason: String,
    },
}

/// What the body request for a patch produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BodyOutcome {
    /// The peer sent these bytes; the node checks them against the signed header.
    Received(Vec<u8>),
    /// The peer declined.
    Declined(DeclineReason),
    /// The request failed in transport.
    Failed {
        /// The transport's error.
        reason: String,
    },
}

/// Work for the driver.
#[derive(Clone, Debug)]
pub enum Action {
    /// Send a one-way message to a peer.
    Send {
        /// The recipient.
        peer: PeerId,
        /// The message.
        message: Message,
    },
    /// Publish an announcement on the gossip topic.
    Gossip(Announcement),
    /// Send a fetch request; report the answer with [`Node::handle_chunk_outcome`] or
    /// [`Node::handle_body_outcome`] under the same `request` id.
    Request {
        /// The node's id for this request.
        request: RequestId,
        /// The peer to ask.
        peer: PeerId,
        /// What to ask for.
        fetch: FetchRequest,
    },
    /// Answer an inbound request with a response the node built.
    Respond {
        /// The driver's id of the inbound request.
        inbound: InboundId,
        /// The answer.
        response: FetchResponse,
    },
    /// Answer an inbound request with a chunk's bytes from the store. The driver verifies
    /// them against the manifest as it reads and declines with `NotFound` if they fail.
    ServeChunk {
        /// The driver's id of the inbound request.
        inbound: InboundId,
        /// The chunk to serve.
        chunk: ChunkId,
    },
    /// Persist a manifest whose body just verified, so a restart can resume it.
    StoreManifest(Arc<Manifest>),
    /// Every chunk is stored: assemble and verify the files, then report with
    /// [`Node::handle_assembled`].
    AssemblePatch(Arc<Manifest>),
    /// Close the connection to a misbehaving peer and refuse it from now on.
    BanPeer {
        /// The peer.
        peer: PeerId,
        /// Why.
        reason: String,
    },
}

/// Something an operator wants to hear about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A trusted announcement for a new patch version arrived.
    ManifestAccepted {
        /// The patch version.
        patch: PatchKey,
        /// The peer it came from, or `None` when published or restored locally.
        from: Option<PeerId>,
    },
    /// An announcement was rejected or ignored for a reason worth a warning.
    ManifestDropped {
        /// The patch version it claimed.
        patch: PatchKey,
        /// The peer it came from.
        from: PeerId,
        /// Why.
        reason: String,
    },
    /// Every file of a patch version is assembled and verified.
    PatchComplete {
        /// The patch version.
        patch: PatchKey,
        /// Byte counts.
        stats: TransferStats,
        /// From acceptance of the announcement to completion.
        elapsed: Duration,
    },
    /// Assembling a patch failed. The node requests assembly again after a pause.
    PatchFailed {
        /// The patch version.
        patch: PatchKey,
        /// The driver's error.
        reason: String,
    },
    /// A chunk request to a peer timed out; the peer gets no requests for `pause`.
    PeerSlow {
        /// The peer.
        peer: PeerId,
        /// The chunk it did not deliver in time.
        chunk: ChunkId,
        /// Consecutive timeouts so far.
        timeouts: u32,
        /// How long the peer rests.
        pause: Duration,
    },
    /// The origin served a chunk past its egress budget because no live peer held it.
    OriginBudgetExceeded {
        /// The chunk.
        chunk: ChunkId,
        /// Payload bytes sent past the budget for this patch version so far.
        over_bytes: u64,
    },
    /// A peer sent something invalid.
    PeerMisbehaved {
        /// The peer.
        peer: PeerId,
        /// What it sent.
        reason: String,
        /// Its strikes so far.
        strikes: u32,
    },
    /// The approval rule of a patch version is met; the node starts fetching it.
    ApprovalsMet {
        /// The patch version.
        patch: PatchKey,
    },
    /// A verified recall stopped a patch version. The node serves none of it and ignores
    /// its announcements from now on; the driver removes it from its store.
    PatchRecalled {
        /// The patch version.
        patch: PatchKey,
        /// The reason the order gives.
        reason: String,
    },
    /// A newer membership list took effect: the driver admits only its peers.
    MembershipChanged {
        /// The list's version.
        version: u64,
    },
    /// A newer trust file version took effect, from a peer or a local caller: the
    /// driver stores [`Node::trust_chain`] so a restart resumes from it.
    TrustChanged {
        /// The version now enforced.
        version: u64,
    },
    /// A governance document took effect: the driver appends it to the audit log.
    Audit(crate::governance::AuditEvent),
    /// The node's rollout wave for a planned patch version opened: it starts fetching.
    WaveOpened {
        /// The patch version.
        patch: PatchKey,
        /// The node's wave, from 1.
        wave: usize,
    },
    /// The node's rollout wave for a planned patch version is not open. Emitted when the
    /// reason changes, not on every evaluation.
    WaveWaiting {
        /// The patch version.
        patch: PatchKey,
        /// The node's wave, from 1; `None` when its site is in no wave.
        wave: Option<usize>,
        /// Why, in words.
        reason: String,
    },
}

/// One node of the mesh, without input or output of its own.
#[derive(Debug)]
pub struct Node {
    /// This node's own id, as its peers know it.
    local: PeerId,
    config: NodeConfig,
    trust: TrustPolicy,
    rng: SplitMix64,
    peers: BTreeMap<PeerId, Peer>,
    /// Connected peers resting, or whose rest ended after the last input. Only their
    /// `cooling_down` flag can be true, so refreshing the flags and finding the next
    /// wake-up visit these instead of every peer (the origin has thousands). A peer
    /// leaves once its flag is cleared, since every input visits the set.
    cooled: BTreeSet<PeerId>,
    /// The instant before which no rest in `cooled` ends, so inputs before it skip the
    /// visit. It is never later than the earliest end. A rest extended or a peer gone
    /// only makes it early, and the next visit recomputes it.
    rests_end: Option<Timestamp>,
    /// This site's position among the sites of this node and its greeted peers, sorted
    /// by name, and their number. Worked out on first use after a peer's site changes
    /// or it leaves.
    site_order: Cell<Option<(u32, u32)>>,
    /// Peers banned for invalid data; the driver refuses their connections.
    banned: BTreeMap<PeerId, String>,
    transfers: BTreeMap<PatchKey, Transfer>,
    /// The highest version accepted per patch series; lower ones are ignored.
    latest: HashMap<PatchId, u64>,
    requests: HashMap<RequestId, Pending>,
    next_request: u64,
    /// The earliest deadline in `requests` and the key (`requests.len()`,
    /// `next_request`) of the set it was computed for. Deadlines never change once set.
    /// A new request always takes a new number and a removal shrinks the map, so the key
    /// changes whenever the set does. [`Node::after_input`] refreshes it, which spares
    /// [`Node::poll_timeout`] (called by drivers after every input) a scan of every
    /// request.
    earliest_request: ((usize, u64), Option<Timestamp>),
    /// The sum of every connected peer's `in_flight`: chunk requests in flight. Kept
    /// with the peers' counts so an input need not add them up over every peer.
    in_flight_total: u32,
    /// The earliest instant the next `Have` flush may go out: the last flush plus
    /// `have_interval`. `None` before the first flush.
    next_have_flush: Option<Timestamp>,
    actions: VecDeque<Action>,
    events: VecDeque<Event>,
    /// Approvals and orders, with a format 2 trust file ([`Node::with_policy`]).
    governance: Option<Box<governance::Governance>>,
    /// Signed status reports: the latest of each node, and this node's own.
    reports: reports::Reports,
    /// How many times the trust policy was replaced. Announcements verified under an
    /// older epoch are checked again.
    trust_epoch: u64,
}

#[derive(Debug)]
enum Pending {
    Chunk { peer: PeerId, chunk: ChunkId, deadline: Timestamp, started: Timestamp },
    Body { peer: PeerId, patch: PatchKey, deadline: Timestamp },
}

impl Node {
    /// Builds the node that its peers know as `local`. `config` should have passed
    /// [`NodeConfig::validate`].
    pub fn new(local: PeerId, config: NodeConfig, trust: TrustPolicy) -> Self {
        debug_assert!(config.validate().is_ok(), "invalid node config: {config:?}");
        Node {
            local,
            rng: SplitMix64::new(config.seed),
            config,
            trust,
            peers: BTreeMap::new(),
            cooled: BTreeSet::new(),
            rests_end: None,
            site_order: Cell::new(None),
            banned: BTreeMap::new(),
            transfers: BTreeMap::new(),
            latest: HashMap::new(),
            requests: HashMap::new(),
            next_request: 0,
            earliest_request: ((0, 0), None),
            in_flight_total: 0,
            next_have_flush: None,
            actions: VecDeque::new(),
            events: VecDeque::new(),
            governance: None,
            reports: reports::Reports::default(),
            trust_epoch: 0,
        }
    }

    /// This node's own id.
    pub fn local_peer(&self) -> &PeerId {
        &self.local
    }

    /// The node's settings.
    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    /// Whether `peer` is banned; the driver should refuse its connections.
    pub fn is_banned(&self, peer: &PeerId) -> bool {
        self.banned.contains_key(peer)
    }

    /// The highest version of patch series `id` this node has accepted, if any.
    pub fn latest_version(&self, id: &PatchId) -> Option<u64> {
        self.latest.get(id).copied()
    }

    /// The manifest of `patch`, once its body has verified.
    pub fn manifest(&self, patch: &PatchKey) -> Option<&Arc<Manifest>> {
        self.transfers.get(patch).and_then(|transfer| transfer.manifest.as_ref())
    }

    // ---- outputs ----

    /// The next action for the driver, or `None` when there is nothing to do.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The next event for the operator, or `None`.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Node::handle_timeout`] must next be called, if ever.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let (key, cached) = self.earliest_request;
        let request_deadline = if key == self.request_set_key() { cached } else { self.scan_request_deadlines() };
        debug_assert_eq!(request_deadline, self.scan_request_deadlines(), "stale cached request deadline");
        let pauses = self
            .transfers
            .values()
            .flat_map(|transfer| [transfer.paused_until, transfer.assemble_retry_at])
            .flatten();
        let origin_retries = self.transfers.values().filter_map(|transfer| transfer.origin_retry_at);
        let share_waits = self
            .transfers
            .values()
            .filter(|transfer| transfer.state == TransferState::Downloading)
            .filter_map(|transfer| transfer.share_wait_until);
        let cooldowns = self
            .cooled
            .iter()
            .filter_map(|id| self.peers.get(id))
            .filter(|peer| peer.cooling_down)
            .filter_map(|peer| peer.cooldown_until);
        let have_flush = self.pending_have_flush();
        request_deadline
            .into_iter()
            .chain(pauses)
            .chain(origin_retries)
            .chain(share_waits)
            .chain(cooldowns)
            .chain(self.endgame_timeout())
            .chain(self.wave_timeout())
            .chain(self.report_timeout())
            .chain(have_flush)
            .min()
    }

    /// When chunks held back by `have_interval` are due to go out, if any wait.
    fn pending_have_flush(&self) -> Option<Timestamp> {
        let waiting = self.transfers.values().any(|transfer| !transfer.unannounced.is_empty());
        if waiting { self.next_have_flush } else { None }
    }

    /// Chunk requests in flight to all peers.
    fn in_flight_total(&self) -> u32 {
        debug_assert_eq!(
            self.in_flight_total,
            self.peers.values().map(|peer| peer.in_flight).sum::<u32>(),
            "in_flight_total out of step with the peers' counts"
        );
        self.in_flight_total
    }

    fn request_set_key(&self) -> (usize, u64) {
        (self.requests.len(), self.next_request)
    }

    fn scan_request_deadlines(&self) -> Option<Timestamp> {
        self.requests
            .values()
            .map(|pending| match pending {
                Pending::Chunk { deadline, .. } | Pending::Body { deadline, .. } => *deadline,
            })
            .min()
    }

    // ---- inputs ----

    /// A connection to `peer` is up. The node greets it and shares its manifests.
    pub fn handle_peer_connected(&mut self, now: Timestamp, peer: PeerId) {
        if self.banned.contains_key(&peer) {
            self.actions.push_back(Action::BanPeer { peer, reason: "banned earlier".into() });
            return;
        }
        debug!(%peer, "peer connected");
        self.peers.entry(peer.clone()).or_default();
        let hello = Hello {
            version: WIRE_VERSION,
            site: self.config.site.clone(),
            role: self.config.role,
            site_cache: self.config.site_cache,
        };
        self.send(&peer, Message::Hello(hello));
        let shareable: Vec<(Announcement, Bitfield)> = self
            .transfers
            .values()
            .filter(|transfer| transfer.manifest.is_some())
            .map(|transfer| (transfer.announcement.clone(), transfer.have.clone()))
            .collect();
        for (announcement, bits) in shareable {
            let patch = announcement.header.patch.clone();
            self.send(&peer, Message::Announce(announcement));
            self.send(&peer, Message::Bitfield { patch, bits });
        }
        self.share_governance(&peer);
        self.share_reports(&peer);
        self.after_input(now);
    }

    /// The last connection to `peer` closed. Its requests are sent elsewhere.
    pub fn handle_peer_disconnected(&mut self, now: Timestamp, peer: &PeerId) {
        let Some(state) = self.peers.remove(peer) else {
            return;
        };
        self.in_flight_total -= state.in_flight;
        self.cooled.remove(peer);
        self.site_order.set(None);
        debug!(%peer, "peer disconnected");
        if !state.is_origin() {
            for (patch, bits) in &state.have {
                if let Some(transfer) = self.transfers.get_mut(patch) {
                    adjust_availability(transfer, bits, false);
                }
            }
        }
        let orphaned: Vec<RequestId> = self
            .requests
            .iter()
            .filter(|(_, pending)| match pending {
                Pending::Chunk { peer: to, .. } | Pending::Body { peer: to, .. } => to == peer,
            })
            .map(|(id, _)| *id)
            .collect();
        for request in orphaned {
            self.fail_request(request);
        }
        self.after_input(now);
    }

    /// The driver measured the round-trip time to `peer`, for example with a ping. The
    /// node keeps enough requests in flight to it to cover its bandwidth-delay product.
    pub fn handle_peer_rtt(&mut self, now: Timestamp, peer: &PeerId, rtt: Duration) {
        if let Some(state) = self.peers.get_mut(peer) {
            state.rtt = Some(rtt);
            self.after_input(now);
        }
    }

    /// A one-way message from `from`.
    pub fn handle_message(&mut self, now: Timestamp, from: &PeerId, message: Message) {
        if !self.peers.contains_key(from) {
            trace!(peer = %from, "message from a peer that is not connected");
            return;
        }
        // A `Have` that names no chunk this node could request now leaves every pick as
        // the last pass left it, so it needs no pass of its own.
        let mut new_work = true;
        match message {
            Message::Hello(hello) => self.on_hello(from, hello),
            Message::Announce(announcement) => {
                self.accept_announcement(now, Some(from), announcement);
            }
            Message::Bitfield { patch, bits } => self.on_bitfield(from, patch, bits),
            Message::Have { patch, indices } => new_work = self.on_have(from, patch, &indices),
            Message::Approvals(approvals) => {
                let _ = self.take_approvals(now, Some(from), approvals);
            }
            Message::Control(control) => {
                let _ = self.take_control(now, Some(from), control);
            }
            Message::Membership(signed) => {
                let _ = self.take_membership(now, Some(from), signed);
            }
            Message::Trust(versions) => {
                let _ = self.take_trust(now, Some(from), versions);
            }
            Message::Status(signed) => {
                let _ = self.take_status(now, Some(from), signed);
            }
        }
        self.after_input_with(now, new_work);
    }

    /// A gossiped announcement from `from`; the verdict goes back to gossipsub.
    pub fn handle_gossip(&mut self, now: Timestamp, from: &PeerId, announcement: Announcement) -> Validation {
        let validation = self.accept_announcement(now, Some(from), announcement);
        self.after_input(now);
        validation
    }

    /// An inbound fetch request from `from`. Serving adds no chunk this node could
    /// request, so the input runs no scheduling pass of its own (see
    /// [`Node::after_input_with`]). A busy peer sends many of these.
    pub fn handle_fetch_request(&mut self, now: Timestamp, from: &PeerId, inbound: InboundId, fetch: FetchRequest) {
        let response = match fetch {
            FetchRequest::Body { patch } | FetchRequest::Chunk { patch, .. } if !self.may_serve(&patch) => {
                FetchResponse::Declined(DeclineReason::NotFound)
            }
            FetchRequest::Body { patch } => match self.manifest(&patch) {
                Some(manifest) => FetchResponse::Body(manifest.body_bytes().to_vec()),
                None => FetchResponse::Declined(DeclineReason::NotFound),
            },
            FetchRequest::Chunk { patch, index } => {
                let held = self.transfers.get(&patch).is_some_and(|transfer| transfer.have.contains(index));
                if !held || self.banned.contains_key(from) {
                    FetchResponse::Declined(DeclineReason::NotFound)
                } else {
                    let chunk = ChunkId { patch, index };
                    if self.config.role == Role::Origin
                        && self.check_origin_budget(from, &chunk) == budget::BudgetVerdict::Decline
                    {
                        self.actions.push_back(Action::Respond {
                            inbound,
                            response: FetchResponse::Declined(DeclineReason::OriginBudget),
                        });
                        self.after_input_with(now, false);
                        return;
                    }
                    self.account_served(from, &chunk);
                    trace!(peer = %from, %chunk, "serving chunk");
                    self.actions.push_back(Action::ServeChunk { inbound, chunk });
                    self.after_input_with(now, false);
                    return;
                }
            }
        };
        self.actions.push_back(Action::Respond { inbound, response });
        self.after_input_with(now, false);
    }

    /// The answer to a chunk request the node made.
    pub fn handle_chunk_outcome(&mut self, now: Timestamp, request: RequestId, outcome: ChunkOutcome) {
        let Some(Pending::Chunk { peer, chunk, started, .. }) = self.requests.remove(&request) else {
            trace!(?request, "outcome for a request no longer tracked");
            return;
        };
        let concurrent = self.peers.get(&peer).map_or(1, |state| state.in_flight);
        self.release_chunk_request(&peer, &chunk, request);
        match outcome {
            ChunkOutcome::Stored => {
                let len = self.transfers.get(&chunk.patch).map_or(0, |t| t.announcement.header.chunk_len(chunk.index));
                if let Some(state) = self.peers.get_mut(&peer) {
                    state.record_delivery(u64::from(len), now.saturating_duration_since(started), concurrent);
                }
                self.on_chunk_stored(now, &peer, &chunk);
            }
            ChunkOutcome::Declined(DeclineReason::OriginBudget) => {
                // Peers hold the chunk; ask them, and the origin only after a pause.
                if let Some(transfer) = self.transfers.get_mut(&chunk.patch) {
                    transfer.origin_declined.insert(chunk.index);
                    transfer.origin_retry_at.get_or_insert(now.saturating_add(ORIGIN_RETRY));
                }
            }
            ChunkOutcome::Corrupt { reason } => self.on_corrupt_chunk(&peer, &chunk, reason),
            ChunkOutcome::Declined(_) => {
                // The peer's advertisement was wrong or stale: forget that bit.
                if let Some(bits) = self.peers.get_mut(&peer).and_then(|state| state.have.get_mut(&chunk.patch)) {
                    if bits.remove(chunk.index) {
                        let is_origin = self.peers.get(&peer).is_some_and(Peer::is_origin);
                        if let Some(transfer) = self.transfers.get_mut(&chunk.patch) {
                            if !is_origin {
                                transfer.availability[chunk.index as usize] =
                                    transfer.availability[chunk.index as usize].saturating_sub(1);
                            }
                        }
                    }
                }
            }
            ChunkOutcome::Failed { reason } => {
                // A transport failure (stream timeout, reset) means the same as our own
                // deadline passing: this peer cannot serve now, so rest it.
                debug!(%peer, %chunk, %reason, "chunk request failed");
                self.cool_down(now, &peer, &chunk);
            }
            ChunkOutcome::StoreFailed { reason } => {
                warn!(%chunk, %reason, "store failed to write a verified chunk; pausing requests");
                if let Some(transfer) = self.transfers.get_mut(&chunk.patch) {
                    transfer.paused_until = Some(now.saturating_add(STORE_ERROR_PAUSE));
                }
            }
        }
        self.after_input(now);
    }

    /// The answer to a body request the node made.
    pub fn handle_body_outcome(&mut self, now: Timestamp, request: RequestId, outcome: BodyOutcome) {
        let Some(Pending::Body { peer, patch, .. }) = self.requests.remove(&request) else {
            return;
        };
        let Some(transfer) = self.transfers.get_mut(&patch) else {
            return;
        };
        transfer.body_request = None;
        match outcome {
            BodyOutcome::Received(bytes) => match Manifest::from_parts(transfer.announcement.clone(), bytes) {
                Ok(manifest) => {
                    let manifest = Arc::new(manifest);
                    self.actions.push_back(Action::StoreManifest(manifest.clone()));
                    self.install_manifest(now, manifest, None);
                }
                Err(error) => {
                    transfer.body_failed_from.insert(peer.clone());
                    self.strike(&peer, format!("invalid manifest body for {patch}: {error}"));
                }
            },
            BodyOutcome::Declined(reason) => {
                transfer.body_failed_from.insert(peer.clone());
                debug!(%peer, %patch, ?reason, "body request declined");
            }
            BodyOutcome::Failed { reason } => {
                transfer.body_failed_from.insert(peer.clone());
                debug!(%peer, %patch, %reason, "body request failed");
            }
        }
        self.after_input(now);
    }

    /// The driver loaded a manifest with some chunks already stored: a publish on the
    /// origin (every chunk present) or a restart (what the store verified).
    ///
    /// `assembled` says whether the files are already assembled; if every chunk is
    /// present and they are not, the node asks for assembly. A published manifest is
    /// announced on the gossip topic and to every connected peer.
    pub fn handle_manifest_loaded(
        &mut self,
        now: Timestamp,
        manifest: Arc<Manifest>,
        have: Bitfield,
        assembled: bool,
        publish: bool,
    ) {
        let announcement = manifest.announcement().clone();
        let patch = manifest.key().clone();
        if let Err(error) = self.trust.verify(&announcement) {
            warn!(%patch, %error, "not loading a manifest the trust policy rejects");
            return;
        }
        if self.is_recalled(&patch) {
            warn!(%patch, "not loading a recalled manifest");
            return;
        }
        if !self.transfers.contains_key(&patch) {
            let mut transfer = Transfer::new(announcement.clone(), now);
            transfer.gate = self.new_gate(&announcement);
            self.transfers.insert(patch.clone(), transfer);
            self.raise_latest(&patch);
            self.events.push_back(Event::ManifestAccepted { patch: patch.clone(), from: None });
            self.refresh_approval(now, &patch);
        }
        self.install_manifest(now, manifest, Some((have, assembled)));
        if publish {
            self.actions.push_back(Action::Gossip(announcement));
        }
        self.after_input(now);
    }

    /// The files of `patch` were assembled and verified, or failed with `Err(reason)`.
    pub fn handle_assembled(&mut self, now: Timestamp, patch: &PatchKey, result: Result<(), String>) {
        let Some(transfer) = self.transfers.get_mut(patch) else {
            return;
        };
        match result {
            Ok(()) => {
                transfer.state = transfer::TransferState::Complete;
                transfer.completed_at = Some(now);
                transfer.last_error = None;
                self.events.push_back(Event::PatchComplete {
                    patch: patch.clone(),
                    stats: transfer.stats,
                    elapsed: now.saturating_duration_since(transfer.accepted_at),
                });
            }
            Err(reason) => {
                // Every chunk is verified and stored, so the failure is local (a full
                // disk, say) and may pass: keep the transfer and try again later.
                transfer.state = transfer::TransferState::Assembling;
                transfer.assemble_retry_at = Some(now.saturating_add(ASSEMBLE_RETRY));
                transfer.last_error = Some(reason.clone());
                self.events.push_back(Event::PatchFailed { patch: patch.clone(), reason });
            }
        }
        self.after_input(now);
    }

    /// The driver's hook for the verified `patch` failed, for example an install step.
    /// The node keeps serving the version, but its status reports count it failed, so a
    /// wave that waits on this node's wave stays closed.
    pub fn handle_hook_failed(&mut self, now: Timestamp, patch: &PatchKey, reason: String) {
        let Some(transfer) = self.transfers.get_mut(patch) else {
            return;
        };
        warn!(%patch, %reason, "hook failed; status reports count this version failed");
        transfer.hook_failure = Some(reason);
        self.after_input(now);
    }

    /// The driver removed `patch` from its store, for example to stay within a disk
    /// budget. The node forgets it and serves none of it; it still remembers the version,
    /// so an older announcement of the series stays ignored.
    pub fn handle_patch_removed(&mut self, now: Timestamp, patch: &PatchKey) {
        if self.transfers.remove(patch).is_none() {
            return;
        }
        let orphaned: Vec<RequestId> = self
            .requests
            .iter()
            .filter(|(_, pending)| match pending {
                Pending::Chunk { chunk, .. } => &chunk.patch == patch,
                Pending::Body { patch: body, .. } => body == patch,
            })
            .map(|(id, _)| *id)
            .collect();
        for request in orphaned {
            self.fail_request(request);
        }
        debug!(%patch, "patch removed");
        self.after_input(now);
    }

    /// Time passed: expire requests whose deadline is at or before `now`.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        let expired: Vec<RequestId> = self
            .requests
            .iter()
            .filter(|(_, pending)| match pending {
                Pending::Chunk { deadline, .. } | Pending::Body { deadline, .. } => *deadline <= now,
            })
            .map(|(id, _)| *id)
            .collect();
        for request in expired {
            if let Some(Pending::Chunk { peer, chunk, .. }) = self.requests.get(&request) {
                let (peer, chunk) = (peer.clone(), chunk.clone());
                self.cool_down(now, &peer, &chunk);
            }
            debug!(?request, "request timed out");
            self.fail_request(request);
        }
        for transfer in self.transfers.values_mut() {
            if transfer.paused_until.is_some_and(|until| until <= now) {
                transfer.paused_until = None;
            }
            if transfer.assemble_retry_at.is_some_and(|at| at <= now) {
                transfer.assemble_retry_at = None;
                if let Some(manifest) = transfer.manifest.clone() {
                    self.actions.push_back(Action::AssemblePatch(manifest));
                }
            }
        }
        self.after_input(now);
    }

    // ---- internals ----

    fn send(&mut self, peer: &PeerId, message: Message) {
        self.actions.push_back(Action::Send { peer: peer.clone(), message });
    }

    fn allocate_request(&mut self) -> RequestId {
        self.next_request += 1;
        RequestId(self.next_request)
    }

    /// Work that follows every input: end cool-downs, flush `Have` batches, then schedule
    /// requests.
    fn after_input(&mut self, now: Timestamp) {
        self.after_input_with(now, true);
    }

    /// [`Node::after_input`] for an input that may have made a new chunk pickable
    /// (`new_work`) or may not. After a pass every slot is taken or nothing is left to
    /// pick, so an input that adds no candidate chunk and ends no cool-down finds the
    /// same: its pass is skipped unless a timed retry or endgame check is due.
    fn after_input_with(&mut self, now: Timestamp, new_work: bool) {
        let mut rested = false;
        if self.rests_end.is_some_and(|at| at <= now) {
            let peers = &mut self.peers;
            let mut rests_end: Option<Timestamp> = None;
            self.cooled.retain(|id| {
                let Some(peer) = peers.get_mut(id) else {
                    return false;
                };
                let cooling_down = peer.cooldown_until.is_some_and(|until| until > now);
                rested |= cooling_down != peer.cooling_down;
                peer.cooling_down = cooling_down;
                if cooling_down {
                    rests_end = earliest(rests_end, peer.cooldown_until);
                }
                cooling_down
            });
            self.rests_end = rests_end;
        }
        self.flush_have(now);
        self.refresh_waves(now);
        self.request_bodies(now);
        if self.may_schedule_chunks(now, new_work || rested) {
            self.schedule_chunks(now);
        }
        self.maybe_send_report(now);
        let key = self.request_set_key();
        if self.earliest_request.0 != key {
            self.earliest_request = (key, self.scan_request_deadlines());
        }
    }

    /// Tells whether a scheduling pass could change anything: an origin retry pause is
    /// due to expire, or a patch is downloading, a chunk request slot is free and the
    /// input may have made a chunk pickable (`new_work`). Without any of these the pass
    /// picks no chunk, so skipping it on the many `Have`s that arrive while requests are
    /// in flight, or that name chunks the node holds, changes no decision. (The skipped
    /// pass would still have drawn random numbers, so skipping changes later draws.)
    ///
    /// The slots are counted only when a patch is downloading: the origin may have
    /// thousands of peers and never has a request to count.
    ///
    /// NOTE: this mirrors the limit `may_request_more` checks, which counts requests
    /// across all patches; a per-patch limit there must be reflected here.
    fn may_schedule_chunks(&self, now: Timestamp, new_work: bool) -> bool {
        let retry_due = self.transfers.values().any(|transfer| {
            let share_wait_due = transfer.state == TransferState::Downloading && transfer.share_wait_until.is_some_and(|at| at <= now);
            share_wait_due || transfer.origin_retry_at.is_some_and(|at| at <= now)
        });
        let downloading = self.transfers.values().any(|transfer| transfer.state == TransferState::Downloading);
        // A due endgame stall must be examined even with every slot taken, or its timer
        // would fire again at once.
        let endgame_due = downloading && self.endgame_timeout().is_some_and(|at| at <= now);
        retry_due
            || endgame_due
            || (new_work && downloading && self.in_flight_total() < self.config.max_requests_total)
    }

    fn on_hello(&mut self, from: &PeerId, hello: Hello) {
        if hello.version != WIRE_VERSION {
            debug!(peer = %from, version = hello.version, "peer speaks another wire version");
        }
        let mut hello = hello;
        if let Some(listed) = self.listed_site(from)
            && listed != hello.site
        {
            debug!(peer = %from, claimed = %hello.site, %listed, "peer's site taken from the membership list");
            hello.site = listed.to_string();
        }
        let Some(state) = self.peers.get_mut(from) else {
            return;
        };
        let was_origin = state.is_origin();
        state.same_site = hello.site == self.config.site;
        state.hello = Some(hello);
        self.site_order.set(None);
        // Availability counts non-origin holders only; a role change moves the peer.
        if was_origin != state.is_origin() {
            let counted = !state.is_origin();
            let have: Vec<(PatchKey, Bitfield)> = state.have.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            for (patch, bits) in have {
                if let Some(transfer) = self.transfers.get_mut(&patch) {
                    adjust_availability(transfer, &bits, counted);
                }
            }
        }
    }

    fn on_bitfield(&mut self, from: &PeerId, patch: PatchKey, bits: Bitfield) {
        let expected = self.transfers.get(&patch).and_then(|t| t.manifest.as_ref()).map(|m| m.chunk_count());
        if let Some(expected) = expected {
            if let Err(error) = bits.validate(expected) {
                self.strike(from, format!("invalid bitfield for {patch}: {error}"));
                return;
            }
        }
        let Some(state) = self.peers.get_mut(from) else {
            return;
        };
        if !self.transfers.contains_key(&patch) && state.have.len() >= MAX_UNKNOWN_PATCHES_PER_PEER {
            return;
        }
        state.manifests.insert(patch.clone());
        let counted = !state.is_origin();
        let previous = state.have.insert(patch.clone(), bits.clone());
        if let Some(transfer) = self.transfers.get_mut(&patch) {
            if transfer.manifest.is_some() && counted {
                if let Some(previous) = previous {
                    adjust_availability(transfer, &previous, false);
                }
                adjust_availability(transfer, &bits, true);
            }
        }
    }

    /// Records a peer's new chunks and returns whether any of them is one this node lacks
    /// and has not requested while it downloads that patch. Only then can the `Have`
    /// change a scheduling pass.
    fn on_have(&mut self, from: &PeerId, patch: PatchKey, indices: &[u32]) -> bool {
        let Some(state) = self.peers.get_mut(from) else {
            return false;
        };
        let counted = !state.is_origin();
        // Under the central and office-cache policies most peers are never a source:
        // their chunks give this node nothing new to request.
        let source = schedule::policy_allows(&self.config, state);
        let Some(bits) = state.have.get_mut(&patch) else {
            // A `Have` extends a `Bitfield`; drivers deliver messages in order, so this
            // peer skipped one. Its next `Bitfield` will carry these chunks.
            debug!(peer = %from, %patch, "Have before Bitfield, ignored");
            return false;
        };
        let mut out_of_range = false;
        let mut new = Vec::new();
        for &index in indices {
            if index >= bits.len() {
                out_of_range = true;
            } else if bits.insert(index) {
                new.push(index);
            }
        }
        let mut wanted = false;
        if let Some(transfer) = self.transfers.get_mut(&patch) {
            if transfer.manifest.is_some() {
                for &index in &new {
                    if counted {
                        transfer.availability[index as usize] += 1;
                    }
                    wanted |= !transfer.have.contains(index) && !transfer.in_flight.contains_key(&index);
                }
            }
            wanted &= source && transfer.state == TransferState::Downloading;
        }
        if out_of_range {
            self.strike(from, format!("Have for {patch} names a chunk past the end"));
        }
        wanted
    }

    /// Decides on an announcement from a peer (gossip or direct) and starts fetching it
    /// if it is trusted and new.
    fn accept_announcement(&mut self, now: Timestamp, from: Option<&PeerId>, announcement: Announcement) -> Validation {
        let patch = announcement.header.patch.clone();
        let drop = |node: &mut Node, reason: String, validation: Validation| {
            if let Some(from) = from {
                node.events.push_back(Event::ManifestDropped { patch: patch.clone(), from: from.clone(), reason });
            }
            validation
        };
        if let Err(error) = announcement.header.validate() {
            return drop(self, error.to_string(), Validation::Reject);
        }
        // Flooding brings a copy from every neighbour. A copy identical to an
        // announcement already verified under the same trust gets the verdict the checks
        // below would give, without another round of signature checks (tens of
        // microseconds each).
        if let Some(known) = self.transfers.get(&patch)
            && known.verified_epoch == Some(self.trust_epoch)
            && known.announcement == announcement
        {
            if self.is_recalled(&patch) {
                return Validation::Ignore;
            }
            if let Some(peer) = from.and_then(|from| self.peers.get_mut(from)) {
                peer.manifests.insert(patch.clone());
            }
            return Validation::Ignore;
        }
        if let Err(error) = self.trust.verify(&announcement) {
            return drop(self, error.to_string(), Validation::Reject);
        }
        if self.is_recalled(&patch) {
            return Validation::Ignore;
        }
        if let Some(peer) = from.and_then(|from| self.peers.get_mut(from)) {
            peer.manifests.insert(patch.clone());
        }
        if let Some(known) = self.transfers.get(&patch) {
            if known.announcement.header != announcement.header {
                // Same version, different content: a publisher signed two manifests
                // under one version. Keep the first and say so.
                return drop(
                    self,
                    format!("conflicting manifest for {patch}: a different one with this version is already held"),
                    Validation::Reject,
                );
            }
            return Validation::Ignore;
        }
        if self.latest.get(&patch.id).is_some_and(|&latest| latest > patch.version) {
            return Validation::Ignore;
        }
        let now_secs = now.as_secs();
        if announcement.header.expires <= now_secs {
            return drop(self, format!("manifest {patch} expired at {}", announcement.header.expires), Validation::Ignore);
        }
        if announcement.header.created > now_secs + self.config.max_clock_skew.as_secs() {
            return drop(
                self,
                format!(
                    "manifest {patch} was created {} s in the future; check this node's clock",
                    announcement.header.created - now_secs
                ),
                Validation::Ignore,
            );
        }
        debug!(%patch, from = ?from.map(PeerId::as_str), "manifest accepted");
        let mut transfer = Transfer::new(announcement, now);
        transfer.verified_epoch = Some(self.trust_epoch);
        transfer.gate = self.new_gate(&transfer.announcement);
        self.transfers.insert(patch.clone(), transfer);
        self.raise_latest(&patch);
        self.events.push_back(Event::ManifestAccepted { patch: patch.clone(), from: from.cloned() });
        self.refresh_approval(now, &patch);
        Validation::Accept
    }

    fn raise_latest(&mut self, patch: &PatchKey) {
        let latest = self.latest.entry(patch.id.clone()).or_insert(patch.version);
        *latest = (*latest).max(patch.version);
    }

    /// Attaches a verified body to a transfer and starts downloading, or restores one.
    fn install_manifest(&mut self, now: Timestamp, manifest: Arc<Manifest>, restored: Option<(Bitfield, bool)>) {
        let patch = manifest.key().clone();
        let chunk_count = manifest.chunk_count();
        let Some(transfer) = self.transfers.get_mut(&patch) else {
            return;
        };
        let (have, assembled) = match restored {
            Some((have, assembled)) if have.validate(chunk_count).is_ok() => (have, assembled),
            _ => (Bitfield::new(chunk_count), false),
        };
        transfer.manifest = Some(manifest.clone());
        transfer.have = have;
        transfer.availability = vec![0; chunk_count as usize];
        transfer.state = transfer::TransferState::Downloading;

        // Peers may have advertised chunks before the body arrived: validate and count.
        let mut invalid = Vec::new();
        for (peer_id, peer) in &mut self.peers {
            let Some(bits) = peer.have.get(&patch) else {
                continue;
            };
            if bits.validate(chunk_count).is_err() {
                peer.have.remove(&patch);
                invalid.push(peer_id.clone());
            } else if !peer.is_origin() {
                for index in bits.iter() {
                    transfer.availability[index as usize] += 1;
                }
            }
        }
        for peer in invalid {
            self.strike(&peer, format!("invalid bitfield for {patch}"));
        }

        let Some(transfer) = self.transfers.get_mut(&patch) else {
            return;
        };
        if transfer.have.is_full() {
            if assembled {
                transfer.state = transfer::TransferState::Complete;
                transfer.completed_at = Some(now);
            } else {
                transfer.state = transfer::TransferState::Assembling;
                self.actions.push_back(Action::AssemblePatch(manifest.clone()));
            }
        }
        // Tell every connected peer what we hold now that we can serve the body.
        let bits = self.transfers.get(&patch).map(|t| t.have.clone()).unwrap_or_default();
        let peers: Vec<PeerId> = self.peers.keys().cloned().collect();
        for peer in peers {
            self.send(&peer, Message::Announce(manifest.announcement().clone()));
            self.send(&peer, Message::Bitfield { patch: patch.clone(), bits: bits.clone() });
        }
    }

    fn on_chunk_stored(&mut self, now: Timestamp, from: &PeerId, chunk: &ChunkId) {
        let from_origin = self.peers.get(from).is_some_and(Peer::is_origin);
        let same_site = self.peers.get(from).is_some_and(|peer| peer.hello.is_some() && peer.same_site);
        let Some(transfer) = self.transfers.get_mut(&chunk.patch) else {
            return;
        };
        if !transfer.have.insert(chunk.index) {
            return;
        }
        // Another request for the same chunk (an endgame duplicate) may still be out;
        // its answer will be a duplicate, so the chunk no longer counts as in flight.
        transfer.in_flight.remove(&chunk.index);
        transfer.endgame.remove(&chunk.index);
        let len = u64::from(transfer.announcement.header.chunk_len(chunk.index));
        if from_origin {
            transfer.stats.bytes_from_origin += len;
        } else {
            transfer.stats.bytes_from_peers += len;
            if same_site {
                transfer.stats.bytes_from_same_site += len;
            }
        }
        if let Some(peer) = self.peers.get_mut(from) {
            peer.bytes_received += len;
            peer.timeouts = 0;
        }
        transfer.unannounced.push(chunk.index);
        transfer.first_chunk_at.get_or_insert(now);
        trace!(peer = %from, %chunk, "chunk stored");
        if transfer.have.is_full() && transfer.state == transfer::TransferState::Downloading {
            transfer.state = transfer::TransferState::Assembling;
            if let Some(manifest) = transfer.manifest.clone() {
                debug!(patch = %chunk.patch, elapsed = ?now.saturating_duration_since(transfer.accepted_at), "all chunks stored");
                self.actions.push_back(Action::AssemblePatch(manifest));
            }
        }
    }

    fn on_corrupt_chunk(&mut self, peer: &PeerId, chunk: &ChunkId, reason: String) {
        if let Some(transfer) = self.transfers.get_mut(&chunk.patch) {
            transfer.stats.corrupt_chunks += 1;
        }
        self.strike(peer, format!("chunk {chunk} failed verification: {reason}"));
    }

    /// Rests a peer whose chunk request timed out: too slow, frozen or overloaded.
    fn cool_down(&mut self, now: Timestamp, peer: &PeerId, chunk: &ChunkId) {
        let Some(state) = self.peers.get_mut(peer) else {
            return;
        };
        state.timeouts += 1;
        let factor = 1u32 << (state.timeouts - 1).min(8);
        let pause = (COOLDOWN * factor).min(MAX_COOLDOWN);
        state.cooldown_until = Some(now.saturating_add(pause));
        state.cooling_down = true;
        self.cooled.insert(peer.clone());
        self.rests_end = earliest(self.rests_end, state.cooldown_until);
        let timeouts = state.timeouts;
        self.events.push_back(Event::PeerSlow { peer: peer.clone(), chunk: chunk.clone(), timeouts, pause });
    }

    /// Records a protocol violation by `peer` and bans it at the configured limit.
    fn strike(&mut self, peer: &PeerId, reason: String) {
        let Some(state) = self.peers.get_mut(peer) else {
            return;
        };
        state.strikes += 1;
        let strikes = state.strikes;
        warn!(%peer, strikes, %reason, "peer misbehaved");
        self.events.push_back(Event::PeerMisbehaved { peer: peer.clone(), reason: reason.clone(), strikes });
        if strikes >= self.config.max_strikes {
            self.banned.insert(peer.clone(), reason.clone());
            self.actions.push_back(Action::BanPeer { peer: peer.clone(), reason });
        }
    }

    fn account_served(&mut self, to: &PeerId, chunk: &ChunkId) {
        let Some(transfer) = self.transfers.get_mut(&chunk.patch) else {
            return;
        };
        let len = u64::from(transfer.announcement.header.chunk_len(chunk.index));
        transfer.stats.bytes_served += len;
        if let Some(peer) = self.peers.get_mut(to) {
            peer.bytes_sent += len;
        }
    }

    fn release_chunk_request(&mut self, peer: &PeerId, chunk: &ChunkId, request: RequestId) {
        if let Some(state) = self.peers.get_mut(peer) {
            if state.in_flight > 0 {
                state.in_flight -= 1;
                self.in_flight_total -= 1;
            }
        }
        if let Some(transfer) = self.transfers.get_mut(&chunk.patch) {
            if transfer.in_flight.get(&chunk.index) == Some(&request) {
                transfer.in_flight.remove(&chunk.index);
            }
            if transfer.endgame.get(&chunk.index) == Some(&request) {
                transfer.endgame.remove(&chunk.index);
            }
        }
    }

    /// Forgets a request that will get no useful answer, so its work is scheduled again.
    fn fail_request(&mut self, request: RequestId) {
        match self.requests.remove(&request) {
            Some(Pending::Chunk { peer, chunk, .. }) => self.release_chunk_request(&peer, &chunk, request),
            Some(Pending::Body { peer, patch, .. }) => {
                if let Some(transfer) = self.transfers.get_mut(&patch) {
                    transfer.body_request = None;
                    transfer.body_failed_from.insert(peer);
                }
            }
            None => {}
        }
    }

    /// Sends every peer the chunks stored since the last flush, unless the last flush was
    /// less than `have_interval` ago; [`Node::poll_timeout`] wakes the node when it
    /// is due.
    ///
    /// A peer other than an origin hears only of chunks it has not advertised itself: it
    /// never requests a chunk it holds, so their availability is of no use to it. Most
    /// chunks come from the node's own neighbours, and finished peers hold them all, so
    /// this drops many messages. An origin hears of every chunk, because its egress
    /// budget checks which peers hold a chunk.
    fn flush_have(&mut self, now: Timestamp) {
        if self.next_have_flush.is_some_and(|at| at > now) {
            return;
        }
        let mut batches = Vec::new();
        for (patch, transfer) in &mut self.transfers {
            if !transfer.unannounced.is_empty() {
                batches.push((patch.clone(), std::mem::take(&mut transfer.unannounced)));
            }
        }
        if batches.is_empty() {
            return;
        }
        self.next_have_flush = Some(now.saturating_add(self.config.have_interval));
        let mut messages = Vec::new();
        for (patch, indices) in &batches {
            for (id, peer) in &self.peers {
                let news: Vec<u32> = match peer.have.get(patch) {
                    Some(bits) if !peer.is_origin() => indices.iter().copied().filter(|&index| !bits.contains(index)).collect(),
                    _ => indices.clone(),
                };
                if !news.is_empty() {
                    messages.push((id.clone(), Message::Have { patch: patch.clone(), indices: news }));
                }
            }
        }
        for (peer, message) in messages {
            self.send(&peer, message);
        }
    }

    /// Starts a body request for every transfer that needs one and has a possible source.
    fn request_bodies(&mut self, now: Timestamp) {
        let waiting: Vec<PatchKey> = self
            .transfers
            .iter()
            .filter(|(patch, t)| t.state == transfer::TransferState::FetchingBody && t.body_request.is_none() && self.may_fetch(patch))
            .map(|(patch, _)| patch.clone())
            .collect();
        for patch in waiting {
            let Some(transfer) = self.transfers.get(&patch) else {
                continue;
            };
            let mut sources: Vec<&PeerId> = self
                .peers
                .iter()
                .filter(|(id, peer)| {
                    peer.hello.is_some() && peer.manifests.contains(&patch) && !transfer.body_failed_from.contains(*id)
                })
                .map(|(id, _)| id)
                .collect();
            if sources.is_empty() {
                // Everyone failed once: start over, after a pause, with all holders.
                if !transfer.body_failed_from.is_empty() {
                    let transfer = self.transfers.get_mut(&patch).expect("transfer exists");
                    transfer.body_failed_from.clear();
                    transfer.paused_until = Some(now.saturating_add(BODY_RETRY));
                }
                continue;
            }
            if transfer.paused_until.is_some_and(|until| until > now) {
                continue;
            }
            let pick = self.rng.below(sources.len() as u64) as usize;
            let peer = sources.swap_remove(pick).clone();
            let request = self.allocate_request();
            let deadline = now.saturating_add(self.config.request_timeout);
            self.requests.insert(request, Pending::Body { peer: peer.clone(), patch: patch.clone(), deadline });
            if let Some(transfer) = self.transfers.get_mut(&patch) {
                transfer.body_request = Some(request);
            }
            debug!(%peer, %patch, "requesting manifest body");
            self.actions.push_back(Action::Request { request, peer, fetch: FetchRequest::Body { patch } });
        }
    }

    /// The snapshot the control API and the simulator report.
    pub fn status(&self, now: Timestamp) -> NodeStatus {
        status::snapshot(self, now)
    }
}

/// Adds (`add`) or removes a peer's bitfield from a transfer's availability counts.
fn adjust_availability(transfer: &mut Transfer, bits: &Bitfield, add: bool) {
    if transfer.manifest.is_none() || bits.len() as usize != transfer.availability.len() {
        return;
    }
    for index in bits.iter() {
        let count = &mut transfer.availability[index as usize];
        *count = if add { *count + 1 } else { count.saturating_sub(1) };
    }
}

/// Returns the earlier of two optional instants, or `None` if both are `None`.
fn earliest(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
