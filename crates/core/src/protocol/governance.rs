//! Rollout governance inside the node: which patch versions it may fetch and serve.
//!
//! A node built with [`Node::with_policy`] (trust file format 2) accepts and stores any
//! announcement with a valid publisher signature, but fetches and serves a patch version
//! only while
//!
//! 1. [`evaluate_approvals`] returns [`ApprovalStatus::Met`] for it, and
//! 2. no verified order recalls or pauses it ([`rollout_state`]).
//!
//! Approvals, orders, membership lists and trust file updates travel on the sync
//! protocol ([`Message::Approvals`], [`Message::Control`], [`Message::Membership`],
//! [`Message::Trust`]). A node stores each one once, forwards only what is new to it,
//! and sends everything it stores to a peer that connects, so they flood the mesh without
//! looping. A node built with [`Node::new`] (format 1) has no governance: every trusted
//! announcement is fetched at once, as before.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::Serialize;
use tracing::{debug, info};

use super::{Event, Node, NodeConfig};
use crate::governance::{
    Approval, ApprovalError, ApprovalStatus, AuditEvent, ControlError, MembershipError, PolicyError, SignedMembership,
    SignedPolicy, VerifiedMembership, MAX_APPROVALS, RolloutControl, RolloutState, Role as GovernanceRole, TrustedPolicy,
    VerifiedControl, evaluate_approvals, rollout_state, verify_control,
};
use crate::ids::{PatchKey, PeerId};
use crate::keys::PublicKey;
use crate::manifest::ContentHash;
use crate::time::Timestamp;
use crate::wire::Message;

/// Patch versions a node keeps approvals for before their announcement arrives.
const MAX_EARLY_PATCHES: usize = 64;
/// Orders a node keeps per patch version; honest operators issue a handful.
const MAX_CONTROLS_PER_PATCH: usize = 16;
/// Trust file versions a node keeps and sends to peers, newest last. A peer more
/// versions behind than this cannot step up from what it receives and needs a newer
/// trust file installed by hand.
pub const MAX_TRUST_CHAIN: usize = 16;

/// The governance state of a node with a format 2 trust file.
#[derive(Debug)]
pub(crate) struct Governance {
    policy: TrustedPolicy,
    /// Approvals per patch version, one per (digest, key): a key that approves twice, or
    /// a peer that forwards an approval again, adds nothing.
    approvals: BTreeMap<PatchKey, BTreeMap<(ContentHash, PublicKey), Approval>>,
    /// Versions whose approval rule was met. Kept once met, so a later expiry of the
    /// trust file does not stop a rollout halfway; expiry stops new ones.
    approved: BTreeSet<PatchKey>,
    /// Verified orders per patch version, in arrival order.
    controls: BTreeMap<PatchKey, Vec<VerifiedControl>>,
    /// The latest verified membership list, if any arrived.
    membership: Option<VerifiedMembership>,
    /// The trust file versions this node has enforced, oldest first, ending with
    /// `policy`'s; at most [`MAX_TRUST_CHAIN`].
    trust_chain: VecDeque<SignedPolicy>,
}

/// An error for approvals or an order that the node did not take.
#[derive(Debug, thiserror::Error)]
pub enum GovernanceError {
    /// The node reads a format 1 trust file, which has no approvals or orders.
    #[error("this node's trust file is format 1, which has no approval rules or orders; install a format 2 trust file (`patchmesh trust init`) on every node")]
    NotGoverned,
    /// An approval that does not count.
    #[error(transparent)]
    Approval(#[from] ApprovalError),
    /// An order that does not take effect.
    #[error(transparent)]
    Control(#[from] ControlError),
    /// A membership list that does not take effect.
    #[error(transparent)]
    Membership(#[from] MembershipError),
    /// A trust file update that does not take effect.
    #[error("trust file version {offered} not taken: {source}")]
    Trust {
        /// The first version that failed.
        offered: u64,
        /// Why.
        source: PolicyError,
    },
    /// More trust file versions in one message than a node keeps.
    #[error("{count} trust file versions in one message, more than the maximum of {MAX_TRUST_CHAIN}")]
    TooManyTrustVersions {
        /// How many arrived.
        count: usize,
    },
    /// Some approvals of a local batch did not count; the valid ones were stored and
    /// forwarded.
    #[error("{rejected} approval(s) not counted, the first because {first}; {stored} new approval(s) stored")]
    ApprovalsRejected {
        /// New approvals stored from the same batch.
        stored: usize,
        /// Approvals that did not count.
        rejected: usize,
        /// The reason the first of them did not count.
        first: ApprovalError,
    },
    /// More approvals in one message than one manifest can collect.
    #[error("{count} approvals in one message, more than the maximum of {MAX_APPROVALS}")]
    TooManyApprovals {
        /// How many arrived.
        count: usize,
    },
    /// Too many orders for one patch version.
    #[error("{patch} already has {MAX_CONTROLS_PER_PATCH} orders; no more are kept")]
    TooManyControls {
        /// The patch version.
        patch: PatchKey,
    },
}

/// Approvals of one patch version, as the status report shows them.
#[derive(Clone, Debug, Serialize)]
pub struct ApprovalReport {
    /// Whether the approval rule is met, so the node fetches and serves the version.
    pub met: bool,
    /// Keys that count, as `role:name` (or `role:short id` when unnamed).
    pub present: Vec<String>,
    /// The keys each short role still needs, such as "1 more executive key (0 of 1)".
    pub missing: Vec<String>,
    /// The reason the version can never be approved, if there is one.
    pub rejected: Option<String>,
}

impl Governance {
    fn new(policy: TrustedPolicy) -> Self {
        let trust_chain = VecDeque::from([policy.signed().clone()]);
        Governance { policy, approvals: BTreeMap::new(), approved: BTreeSet::new(), controls: BTreeMap::new(), membership: None, trust_chain }
    }

    fn approvals_of(&self, patch: &PatchKey) -> Vec<Approval> {
        self.approvals.get(patch).map(|held| held.values().cloned().collect()).unwrap_or_default()
    }

    pub(super) fn is_approved(&self, patch: &PatchKey) -> bool {
        self.approved.contains(patch)
    }

    fn state(&self, patch: &PatchKey) -> RolloutState {
        rollout_state(patch, self.controls.get(patch).into_iter().flatten())
    }
}

// Governance documents arrive a few per manifest, so errors a few keys and hashes long
// are not worth boxing.
#[allow(clippy::result_large_err)]
impl Node {
    /// Builds a node governed by a format 2 trust file: an announcement is accepted when
    /// a publisher key of `policy` signed it, and fetched once its approval rule is met.
    pub fn with_policy(local: PeerId, config: NodeConfig, policy: TrustedPolicy) -> Self {
        let mut node = Node::new(local, config, policy.publisher_trust());
        node.governance = Some(Box::new(Governance::new(policy)));
        node
    }

    /// Returns the format 2 policy the node enforces, if it has one.
    pub fn policy(&self) -> Option<&TrustedPolicy> {
        self.governance.as_ref().map(|governance| &governance.policy)
    }

    /// Approvals from a peer (`from`) or handed in locally (`None`). Returns how many
    /// were new; those are forwarded to every other peer.
    ///
    /// A peer's approval with a bad signature counts as a strike against the peer. One
    /// for another manifest or by a key without a role is dropped quietly, because an
    /// honest peer with another policy version can send it. A local caller gets
    /// [`GovernanceError::ApprovalsRejected`] with the first such error instead; the
    /// valid approvals of its batch are still stored and forwarded.
    pub fn handle_approvals(&mut self, now: Timestamp, from: Option<&PeerId>, approvals: Vec<Approval>) -> Result<usize, GovernanceError> {
        let result = self.take_approvals(now, from, approvals);
        self.after_input(now);
        result
    }

    /// Takes a recall, pause or resume order from a peer (`from`) or a local caller. Returns
    /// whether it was new. A recall stops serving the version and drops it: the node
    /// emits [`Event::PatchRecalled`], on which the driver removes it from its store.
    pub fn handle_control(&mut self, now: Timestamp, from: Option<&PeerId>, control: RolloutControl) -> Result<bool, GovernanceError> {
        let result = self.take_control(now, from, control);
        self.after_input(now);
        result
    }

    /// Takes a signed membership list from a peer (`from`) or a local caller. Returns
    /// whether it replaced the list held; a newer list is forwarded to every other peer
    /// and announced with [`Event::MembershipChanged`]. The same version again is not an
    /// error, an older one is.
    pub fn handle_membership(&mut self, now: Timestamp, from: Option<&PeerId>, signed: SignedMembership) -> Result<bool, GovernanceError> {
        let result = self.take_membership(now, from, signed);
        self.after_input(now);
        result
    }

    /// Takes newer trust file versions from a peer (`from`) or a local caller. Versions
    /// at or below the enforced one are skipped. The rest must follow it one by one, and
    /// each needs the root threshold of the version before it and of its own. The last
    /// must be unexpired. Returns the version now enforced when it changed; the
    /// node then forwards its chain to every other peer and emits
    /// [`Event::TrustChanged`]. Nothing changes when any version fails.
    pub fn handle_trust(&mut self, now: Timestamp, from: Option<&PeerId>, versions: Vec<SignedPolicy>) -> Result<Option<u64>, GovernanceError> {
        let result = self.take_trust(now, from, versions);
        self.after_input(now);
        result
    }

    /// Returns the trust file versions the node has enforced, oldest first, for the
    /// driver to store and hand back to [`Node::handle_trust`] after a restart.
    pub fn trust_chain(&self) -> Vec<SignedPolicy> {
        self.governance.as_ref().map(|governance| governance.trust_chain.iter().cloned().collect()).unwrap_or_default()
    }

    /// Returns the latest verified membership list, if the node has one.
    pub fn membership(&self) -> Option<&VerifiedMembership> {
        self.governance.as_ref().and_then(|governance| governance.membership.as_ref())
    }

    /// Returns `peer`'s site on the membership list, if the node has a list that names it.
    pub(super) fn listed_site(&self, peer: &PeerId) -> Option<&str> {
        self.membership()?.signed().membership.members.get(peer.as_str()).map(String::as_str)
    }

    /// Returns the rollout state of `patch` under the node's orders. Without governance
    /// it is always active.
    pub fn rollout_state(&self, patch: &PatchKey) -> RolloutState {
        self.governance.as_ref().map_or(RolloutState::Active, |governance| governance.state(patch))
    }

    /// Reports the stored approvals of `patch` and what is still missing, for status.
    pub fn approval_report(&self, patch: &PatchKey, now: Timestamp) -> Option<ApprovalReport> {
        let governance = self.governance.as_ref()?;
        let transfer = self.transfers.get(patch)?;
        let approvals = governance.approvals_of(patch);
        let policy = governance.policy.policy();
        let label = |role: GovernanceRole, key: &PublicKey| format!("{role}:{}", policy.name_of(key).map_or_else(|| key.short_id(), str::to_string));
        let mut report = ApprovalReport { met: governance.approved.contains(patch), present: Vec::new(), missing: Vec::new(), rejected: None };
        let counted: BTreeSet<PublicKey> = transfer.announcement.valid_signers().into_iter().chain(approvals.iter().map(|a| a.key)).collect();
        report.present = counted.iter().filter_map(|key| policy.role_of(key).map(|role| label(role, key))).collect();
        if report.met {
            // The rule was met when the rollout started and stays met. Checking it again
            // under a later trust file version would list keys that are no longer needed.
            return Some(report);
        }
        match evaluate_approvals(&governance.policy, &transfer.announcement, &approvals, now) {
            ApprovalStatus::Met { .. } => {}
            ApprovalStatus::Missing { shortfall, .. } => report.missing = shortfall.iter().map(ToString::to_string).collect(),
            ApprovalStatus::Rejected(reason) => report.rejected = Some(reason.to_string()),
        }
        Some(report)
    }

    /// Lists the versions recalled by a verified order, for status.
    pub fn recalled(&self) -> Vec<PatchKey> {
        let Some(governance) = self.governance.as_ref() else {
            return Vec::new();
        };
        governance
            .controls
            .keys()
            .filter(|patch| matches!(governance.state(patch), RolloutState::Recalled { .. }))
            .cloned()
            .collect()
    }

    /// Returns every approval and order the node stores, for the driver to persist and
    /// hand back after a restart.
    pub fn governance_documents(&self) -> (Vec<Approval>, Vec<RolloutControl>) {
        let Some(governance) = self.governance.as_ref() else {
            return (Vec::new(), Vec::new());
        };
        let approvals = governance.approvals.values().flat_map(|held| held.values().cloned()).collect();
        let controls = governance.controls.values().flatten().map(|control| control.control().clone()).collect();
        (approvals, controls)
    }

    /// Returns whether the node may request the body or chunks of `patch`.
    pub(super) fn may_fetch(&self, patch: &PatchKey) -> bool {
        self.wave_allows(patch)
            && self.governance
            .as_ref()
            .is_none_or(|governance| governance.approved.contains(patch) && governance.state(patch) == RolloutState::Active)
    }

    /// Returns whether the node may serve the body or chunks of `patch`. A paused version
    /// is still served, so peers part way through keep progressing once resumed. A
    /// recalled version is never served.
    pub(super) fn may_serve(&self, patch: &PatchKey) -> bool {
        self.governance.as_ref().is_none_or(|governance| {
            governance.approved.contains(patch) && !matches!(governance.state(patch), RolloutState::Recalled { .. })
        })
    }

    /// Returns whether a verified order recalled `patch`, whose announcements are then ignored.
    pub(super) fn is_recalled(&self, patch: &PatchKey) -> bool {
        matches!(self.rollout_state(patch), RolloutState::Recalled { .. })
    }

    /// Sends a newly connected peer what the plain handshake leaves out: announcements
    /// still waiting for approvals, then every approval and order held.
    pub(super) fn share_governance(&mut self, peer: &PeerId) {
        let Some(governance) = self.governance.as_ref() else {
            return;
        };
        let mut messages = Vec::new();
        for transfer in self.transfers.values().filter(|transfer| transfer.manifest.is_none()) {
            messages.push(Message::Announce(transfer.announcement.clone()));
        }
        for patch in governance.approvals.keys() {
            for batch in governance.approvals_of(patch).chunks(MAX_APPROVALS) {
                messages.push(Message::Approvals(batch.to_vec()));
            }
        }
        for control in governance.controls.values().flatten() {
            messages.push(Message::Control(control.control().clone()));
        }
        if let Some(membership) = &governance.membership {
            messages.push(Message::Membership(membership.signed().clone()));
        }
        messages.push(Message::Trust(governance.trust_chain.iter().cloned().collect()));
        for message in messages {
            self.send(peer, message);
        }
    }

    /// Evaluates the approval rule of `patch` again and records when it becomes met.
    pub(super) fn refresh_approval(&mut self, now: Timestamp, patch: &PatchKey) {
        let Some(governance) = self.governance.as_mut() else {
            return;
        };
        let Some(transfer) = self.transfers.get(patch) else {
            return;
        };
        if governance.approved.contains(patch) {
            return;
        }
        let approvals = governance.approvals_of(patch);
        if let ApprovalStatus::Met { approvers } = evaluate_approvals(&governance.policy, &transfer.announcement, &approvals, now) {
            let keys: usize = approvers.values().map(BTreeSet::len).sum();
            info!(%patch, keys, "approval rule met; starting the rollout");
            governance.approved.insert(patch.clone());
            self.events.push_back(Event::ApprovalsMet { patch: patch.clone() });
            self.events.push_back(Event::Audit(AuditEvent::Publish {
                patch: patch.clone(),
                digest: transfer.announcement.digest(),
                approvers: approvers.into_values().flatten().collect(),
            }));
        }
    }

    pub(super) fn take_approvals(&mut self, now: Timestamp, from: Option<&PeerId>, approvals: Vec<Approval>) -> Result<usize, GovernanceError> {
        let Some(governance) = self.governance.as_mut() else {
            return Err(GovernanceError::NotGoverned);
        };
        if approvals.len() > MAX_APPROVALS {
            let error = GovernanceError::TooManyApprovals { count: approvals.len() };
            if let Some(peer) = from {
                self.strike(peer, error.to_string());
            }
            return Err(error);
        }
        let mut fresh = Vec::new();
        let mut bad_signature = None;
        // For a local caller: the first approval that does not count, and how many.
        let mut local_rejection: Option<(ApprovalError, usize)> = None;
        for approval in approvals {
            let checked = match self.transfers.get(&approval.patch) {
                Some(transfer) => approval.check(&governance.policy, &transfer.announcement),
                None => check_unanchored(&governance.policy, &approval),
            };
            let role = match checked {
                Ok(role) => role,
                Err(error @ ApprovalError::BadSignature { .. }) if from.is_some() => {
                    bad_signature.get_or_insert(error);
                    continue;
                }
                Err(error) if from.is_none() => {
                    let (_, count) = local_rejection.get_or_insert((error, 0));
                    *count += 1;
                    continue;
                }
                Err(error) => {
                    debug!(peer = ?from.map(PeerId::as_str), %error, "approval not counted");
                    continue;
                }
            };
            let known = self.transfers.contains_key(&approval.patch) || governance.approvals.contains_key(&approval.patch);
            if !known && governance.approvals.len() >= MAX_EARLY_PATCHES {
                debug!(patch = %approval.patch, "approval for an unknown patch dropped: too many unknown patches");
                continue;
            }
            let held = governance.approvals.entry(approval.patch.clone()).or_default();
            if held.len() >= MAX_APPROVALS {
                continue;
            }
            if held.insert((approval.digest, approval.key), approval.clone()).is_none() {
                debug!(patch = %approval.patch, key = %approval.key.short_id(), %role, "approval stored");
                self.events.push_back(Event::Audit(AuditEvent::Approval {
                    patch: approval.patch.clone(),
                    digest: approval.digest,
                    key: approval.key,
                    role,
                }));
                fresh.push(approval);
            }
        }
        if let (Some(error), Some(peer)) = (bad_signature, from) {
            self.strike(peer, error.to_string());
        }
        let patches: BTreeSet<PatchKey> = fresh.iter().map(|approval| approval.patch.clone()).collect();
        for patch in &patches {
            self.refresh_approval(now, patch);
        }
        let count = fresh.len();
        if !fresh.is_empty() {
            self.forward(from, &Message::Approvals(fresh));
        }
        match local_rejection {
            Some((first, rejected)) => Err(GovernanceError::ApprovalsRejected { stored: count, rejected, first }),
            None => Ok(count),
        }
    }

    pub(super) fn take_control(&mut self, now: Timestamp, from: Option<&PeerId>, control: RolloutControl) -> Result<bool, GovernanceError> {
        let Some(governance) = self.governance.as_mut() else {
            return Err(GovernanceError::NotGoverned);
        };
        let verified = match verify_control(&governance.policy, &control, now) {
            Ok(verified) => verified,
            Err(error) => {
                debug!(peer = ?from.map(PeerId::as_str), %error, "order not taken");
                return Err(error.into());
            }
        };

        let patch = control.patch.clone();
        let held = governance.controls.entry(patch.clone()).or_default();
        if held.contains(&verified) {
            return Ok(false);
        }
        if held.len() >= MAX_CONTROLS_PER_PATCH {
            return Err(GovernanceError::TooManyControls { patch });
        }
        let before = governance.state(&patch);
        governance.controls.entry(patch.clone()).or_default().push(verified);
        let after = governance.state(&patch);
        info!(%patch, action = %control.action, reason = %control.reason, state = ?after, "rollout order taken");
        self.events.push_back(Event::Audit(AuditEvent::Control {
            action: control.action,
            patch: patch.clone(),
            reason: control.reason.clone(),
            issued: control.issued,
            signers: control.signers().into_iter().collect(),
        }));
        if after != before && matches!(after, RolloutState::Recalled { .. }) {
            self.events.push_back(Event::PatchRecalled { patch: patch.clone(), reason: control.reason.clone() });
            self.handle_patch_removed(now, &patch);
        }
        self.forward(from, &Message::Control(control));
        Ok(true)
    }

    pub(super) fn take_membership(&mut self, now: Timestamp, from: Option<&PeerId>, signed: SignedMembership) -> Result<bool, GovernanceError> {
        let Some(governance) = self.governance.as_mut() else {
            return Err(GovernanceError::NotGoverned);
        };
        let previous = governance.membership.as_ref();
        if previous.is_some_and(|held| held.signed() == &signed) {
            return Ok(false);
        }
        let verified = match previous {
            Some(held) => held.update(&governance.policy, signed.clone(), now),
            None => VerifiedMembership::verify(&governance.policy, signed.clone(), now),
        };
        let verified = match verified {
            Ok(verified) => verified,
            Err(error) => {
                debug!(peer = ?from.map(PeerId::as_str), %error, "membership list not taken");
                return Err(error.into());
            }
        };

        let old: BTreeSet<String> = previous.map(|held| held.signed().membership.members.keys().cloned().collect()).unwrap_or_default();
        let new: BTreeSet<String> = signed.membership.members.keys().cloned().collect();
        let from_version = previous.map(VerifiedMembership::version);
        let version = verified.version();
        info!(version, members = new.len(), "membership list taken");
        governance.membership = Some(verified);
        // A peer's site decides which chunks it fetches from and serves to whom, so the
        // signed list overrides what the peer itself claims.
        for (peer, state) in &mut self.peers {
            if let (Some(hello), Some(site)) = (state.hello.as_mut(), signed.membership.members.get(peer.as_str())) {
                hello.site.clone_from(site);
                state.same_site = *site == self.config.site;
            }
        }
        self.site_order.set(None);
        self.events.push_back(Event::MembershipChanged { version });
        self.events.push_back(Event::Audit(AuditEvent::MembershipChange {
            from_version,
            to_version: version,
            added: new.difference(&old).cloned().collect(),
            removed: old.difference(&new).cloned().collect(),
        }));
        self.forward(from, &Message::Membership(signed));
        Ok(true)
    }

    pub(super) fn take_trust(&mut self, now: Timestamp, from: Option<&PeerId>, versions: Vec<SignedPolicy>) -> Result<Option<u64>, GovernanceError> {
        let Some(governance) = self.governance.as_mut() else {
            return Err(GovernanceError::NotGoverned);
        };
        if versions.len() > MAX_TRUST_CHAIN {
            let error = GovernanceError::TooManyTrustVersions { count: versions.len() };
            if let Some(peer) = from {
                self.strike(peer, error.to_string());
            }
            return Err(error);
        }
        let current = governance.policy.policy().version;
        let mut newer: Vec<SignedPolicy> = versions.into_iter().filter(|signed| signed.policy.version > current).collect();
        newer.sort_by_key(|signed| signed.policy.version);
        newer.dedup_by_key(|signed| signed.policy.version);
        let Some(offered) = newer.first().map(|signed| signed.policy.version) else {
            return Ok(None);
        };

        // An honest peer forwards only versions it verified, but it may hold a different
        // lineage (another root) or be too far ahead, so a failure is logged, not struck.
        let trusted = governance.policy.update_chain(newer.iter().cloned(), now).map_err(|source| {
            debug!(peer = ?from.map(PeerId::as_str), offered, %source, "trust file update not taken");
            GovernanceError::Trust { offered, source }
        })?;

        let version = trusted.policy().version;
        let revoked: Vec<PublicKey> = trusted.policy().revoked.difference(&governance.policy.policy().revoked).copied().collect();
        info!(from_version = current, version, revoked = revoked.len(), "trust file version taken");
        governance.policy = trusted;
        governance.trust_chain.extend(newer);
        while governance.trust_chain.len() > MAX_TRUST_CHAIN {
            governance.trust_chain.pop_front();
        }
        let chain: Vec<SignedPolicy> = governance.trust_chain.iter().cloned().collect();
        self.trust = governance.policy.publisher_trust();
        self.trust_epoch += 1;
        self.events.push_back(Event::TrustChanged { version });
        self.events.push_back(Event::Audit(AuditEvent::TrustChange { from_version: Some(current), to_version: version, revoked }));

        // Rules and keys changed: a pending version may now meet its rule, or no longer.
        let pending: Vec<PatchKey> = self.transfers.keys().cloned().collect();
        for patch in &pending {
            self.refresh_approval(now, patch);
        }
        self.forward(from, &Message::Trust(chain));
        Ok(Some(version))
    }

    /// Sends `message` to every connected peer except `from`.
    fn forward(&mut self, from: Option<&PeerId>, message: &Message) {
        let peers: Vec<PeerId> = self.peers.keys().filter(|peer| Some(*peer) != from).cloned().collect();
        for peer in peers {
            self.send(&peer, message.clone());
        }
    }
}

/// Checks an approval whose manifest the node has not seen: the signature and the key's
/// role. The digest is checked when the announcement arrives.
#[allow(clippy::result_large_err)]
fn check_unanchored(policy: &TrustedPolicy, approval: &Approval) -> Result<GovernanceRole, ApprovalError> {
    let message = Approval::signed_bytes(&approval.patch, &approval.digest);
    if !approval.key.verify(&message, &approval.signature.0) {
        return Err(ApprovalError::BadSignature { key: approval.key });
    }
    policy
        .policy()
        .role_of(&approval.key)
        .ok_or(ApprovalError::UnknownKey { key: approval.key, version: policy.policy().version })
}
