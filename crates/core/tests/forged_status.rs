//! Forged status reports: a report that speaks for another node, comes from a node off
//! the membership list, or claims another site is refused and never counts towards a
//! wave.

#![allow(clippy::result_large_err)]

mod harness;

use std::collections::BTreeMap;
use std::sync::Arc;

use harness::policy::{NODE_ADMIN, key, policy};
use harness::{START, config, pattern, planned_manifest, publisher};
use patchmesh_core::governance::{
    Membership, PatchReport, ReportState, RolloutPlan, SignedMembership, SignedStatusReport, SourceBytes, StatusReport, StatusReportError, Wave,
    WaveStart,
};
use patchmesh_core::wire::Message;
use patchmesh_core::{Event, Manifest, Node, PeerId, Role, SecretKey};

const PILOT: u8 = 101;
const BRANCH: u8 = 102;
const ATTACKER: u8 = 103;
const LOCAL: u8 = 104;

fn peer_of(seed: u8) -> String {
    key(seed).public().peer_id()
}

/// Lists the pilot at `pilot`, another office at `branch-2` and this node at `branch-1`.
fn members() -> SignedMembership {
    let mut membership = Membership { version: 1, issued: START.as_secs(), members: BTreeMap::new() };
    for (seed, site) in [(PILOT, "pilot"), (BRANCH, "branch-2"), (LOCAL, "branch-1")] {
        membership.add(&peer_of(seed), site).expect("member");
    }
    let mut signed = SignedMembership { membership, signatures: Vec::new() };
    signed.sign(&key(NODE_ADMIN));
    signed
}

fn plan() -> RolloutPlan {
    RolloutPlan {
        waves: vec![
            Wave { sites: Some(vec!["pilot".into()]), start: WaveStart::At { time: START.as_secs() - 60 } },
            Wave { sites: None, start: WaveStart::AfterPrevious { min_verified_percent: 100, soak_secs: 0 } },
        ],
        windows: vec![],
    }
}

/// Builds a governed wave 2 node holding the planned announcement and the membership
/// list, with one connected peer, `relay`, and returns them with the manifest.
fn wave_two_node() -> (Node, PeerId, Arc<Manifest>) {
    let mut config = config("branch-1", Role::Office, 9);
    config.identity = Some(Arc::new(key(LOCAL)));
    let mut node = Node::with_policy(PeerId::new(peer_of(LOCAL)), config, policy());
    node.handle_membership(START, None, members()).expect("membership list");
    let relay = PeerId::new(peer_of(BRANCH));
    node.handle_peer_connected(START, relay.clone());
    let (manifest, _) = planned_manifest("KB-wave", 1, 1024, &[("fix.msu", pattern(8 * 1024, 1))], Some(plan()), &publisher());
    node.handle_message(START, &relay, Message::Announce(manifest.announcement().clone()));
    (node, relay, manifest)
}

/// Signs a report that `node` at `site` verified `manifest`, carrying `signer`'s key.
fn verified(node: String, site: &str, signer: &SecretKey, manifest: &Manifest) -> SignedStatusReport {
    StatusReport {
        node,
        key: signer.public(),
        site: site.into(),
        role: Role::Office,
        sequence: START.as_micros(),
        issued: START.as_secs(),
        patches: vec![PatchReport {
            patch: manifest.key().clone(),
            state: ReportState::Verified,
            chunks_verified: manifest.chunk_count(),
            chunk_count: manifest.chunk_count(),
            bytes: SourceBytes::default(),
            error: None,
        }],
    }
    .sign(signer)
}

fn pilot_verified(node: &Node, manifest: &Manifest) -> u32 {
    node.wave_status(manifest.key()).expect("gated").progress[0].verified
}

#[test]
fn report_for_another_node_is_refused() {
    let (mut node, _, manifest) = wave_two_node();
    let forged = verified(peer_of(PILOT), "pilot", &key(ATTACKER), &manifest);
    let result = node.handle_status(START, None, forged);
    assert!(matches!(result, Err(StatusReportError::KeyMismatch { .. })), "{result:?}");
    assert_eq!(pilot_verified(&node, &manifest), 0);
}

#[test]
fn bad_signature_is_refused() {
    let (mut node, _, manifest) = wave_two_node();
    let mut forged = verified(peer_of(PILOT), "pilot", &key(PILOT), &manifest);
    forged.signature = verified(peer_of(ATTACKER), "pilot", &key(ATTACKER), &manifest).signature;
    let result = node.handle_status(START, None, forged);
    assert!(matches!(result, Err(StatusReportError::BadSignature { .. })), "{result:?}");
    assert_eq!(pilot_verified(&node, &manifest), 0);
}

#[test]
fn report_from_unlisted_node_is_refused() {
    let (mut node, _, manifest) = wave_two_node();
    let unlisted = verified(peer_of(ATTACKER), "pilot", &key(ATTACKER), &manifest);
    let result = node.handle_status(START, None, unlisted);
    assert!(matches!(result, Err(StatusReportError::NotMember { .. })), "{result:?}");
    assert_eq!(pilot_verified(&node, &manifest), 0);
}

#[test]
fn report_from_wrong_site_is_refused() {
    let (mut node, _, manifest) = wave_two_node();
    let moved = verified(peer_of(BRANCH), "pilot", &key(BRANCH), &manifest);
    let result = node.handle_status(START, None, moved);
    assert!(matches!(result, Err(StatusReportError::WrongSite { .. })), "{result:?}");
    assert_eq!(pilot_verified(&node, &manifest), 0);
}

#[test]
fn genuine_report_counts() {
    let (mut node, _, manifest) = wave_two_node();
    let genuine = verified(peer_of(PILOT), "pilot", &key(PILOT), &manifest);
    assert_eq!(node.handle_status(START, None, genuine), Ok(true));
    assert_eq!(pilot_verified(&node, &manifest), 1);
}

#[test]
fn older_report_does_not_replace_newer() {
    let (mut node, _, manifest) = wave_two_node();
    let newer = verified(peer_of(PILOT), "pilot", &key(PILOT), &manifest);
    let mut older = newer.report.clone();
    older.sequence -= 1;
    older.patches[0].state = ReportState::Failed;
    assert_eq!(node.handle_status(START, None, newer), Ok(true));
    assert_eq!(node.handle_status(START, None, older.sign(&key(PILOT))), Ok(false));
    assert_eq!(pilot_verified(&node, &manifest), 1);
}

#[test]
fn forged_report_from_peer_is_a_strike() {
    let (mut node, relay, manifest) = wave_two_node();
    let forged = verified(peer_of(PILOT), "pilot", &key(ATTACKER), &manifest);
    node.handle_message(START, &relay, Message::Status(forged));
    let struck = std::iter::from_fn(|| node.poll_event()).any(|event| matches!(event, Event::PeerMisbehaved { peer, .. } if peer == relay));
    assert!(struck, "no strike against the peer that sent a forged report");
}
