//! Nodes with a format 2 trust file, wired by the in-memory harness: approvals gate the
//! rollout, orders recall and pause it.

// The tests return the core's governance errors as they are.
#![allow(clippy::result_large_err)]

mod harness;

use std::time::Duration;

use harness::policy::{DAY, EXECUTIVE, NODE_ADMIN, REVIEWER_A, REVIEWER_B, ROOT, key, policy, role};
use harness::{Mesh, START, manifest, pattern, publisher};
use patchmesh_core::governance::{
    Approval, ApprovalError, ControlAction, Membership, Policy, Role as GovernanceRole, RolloutControl, SignedMembership,
    SignedPolicy,
};
use patchmesh_core::protocol::GovernanceError;
use patchmesh_core::wire::Message;
use patchmesh_core::{Event, Manifest, Node, PatchKey, SecretKey, Validation};

/// Builds an origin and `offices` offices, all governed by [`policy`] and connected, with a
/// 64-chunk patch published on the origin.
fn governed_mesh(offices: usize) -> (Mesh, std::sync::Arc<Manifest>) {
    let mut mesh = Mesh::star(offices, 7);
    for index in 0..mesh.nodes.len() {
        let config = mesh.node(index).config().clone();
        mesh.nodes[index] = Some(Node::with_policy(mesh.names[index].clone(), config, policy()));
    }
    mesh.connect_all();
    let (manifest, bytes) = manifest("KB-gov", 1, 1024, &[("fix.msu", pattern(64 * 1024, 3))], &publisher());
    mesh.publish(0, manifest.clone(), &bytes);
    mesh.run_for(Duration::from_secs(5));
    (mesh, manifest)
}

fn approve(mesh: &mut Mesh, index: usize, manifest: &Manifest, seed: u8) -> Result<usize, GovernanceError> {
    let approval = Approval::sign(manifest.announcement(), &key(seed));
    mesh.input(index, |node, now| node.handle_approvals(now, None, vec![approval]))
}

fn order(action: ControlAction, patch: &PatchKey, seeds: &[u8]) -> RolloutControl {
    let mut control = RolloutControl::new(action, patch.clone(), "test order", START.as_secs());
    for &seed in seeds {
        control.sign(&key(seed));
    }
    control
}

#[test]
fn no_chunk_request_before_approvals_are_met() {
    let (mut mesh, manifest) = governed_mesh(3);
    assert!(mesh.chunk_requests.is_empty(), "chunks requested without approvals: {:?}", mesh.chunk_requests);
    let report = mesh.node(1).approval_report(manifest.key(), START).expect("office holds the announcement");
    assert!(!report.met);
    assert_eq!(report.missing.len(), 2, "{report:?}");
}

#[test]
fn fetching_starts_after_the_second_approval() {
    let (mut mesh, manifest) = governed_mesh(3);
    assert_eq!(approve(&mut mesh, 1, &manifest, REVIEWER_A).expect("reviewer approval"), 1);
    mesh.run_for(Duration::from_secs(5));
    assert!(mesh.chunk_requests.is_empty(), "chunks requested after one approval");
    // The approval reached every node: offering it again adds nothing anywhere.
    for index in 0..4 {
        assert_eq!(approve(&mut mesh, index, &manifest, REVIEWER_A).expect("again"), 0, "node {index}");
    }

    approve(&mut mesh, 3, &manifest, EXECUTIVE).expect("executive approval");
    mesh.run_for(Duration::from_secs(30));
    assert!(mesh.all_complete(manifest.key()), "rollout did not complete after both approvals");
    let met = mesh.events.iter().filter(|(_, event)| matches!(event, Event::ApprovalsMet { .. })).count();
    assert_eq!(met, 4, "every node should report the rule met once");
}

#[test]
fn approvals_over_another_digest_do_not_count() {
    let (mut mesh, manifest) = governed_mesh(2);
    // Same patch version, other content: another digest.
    let (other, _) = harness::manifest("KB-gov", 1, 1024, &[("fix.msu", pattern(64 * 1024, 4))], &publisher());
    assert_ne!(other.announcement().digest(), manifest.announcement().digest());
    let approvals = vec![Approval::sign(other.announcement(), &key(REVIEWER_A)), Approval::sign(other.announcement(), &key(EXECUTIVE))];

    let local = mesh.input(1, |node, now| node.handle_approvals(now, None, approvals.clone()));
    assert!(
        matches!(local, Err(GovernanceError::ApprovalsRejected { stored: 0, rejected: 2, first: ApprovalError::OtherManifest { .. } })),
        "{local:?}"
    );
    let from = mesh.names[0].clone();
    mesh.input(2, |node, now| node.handle_message(now, &from, Message::Approvals(approvals)));
    mesh.run_for(Duration::from_secs(10));
    assert!(mesh.chunk_requests.is_empty(), "approvals of another manifest started a rollout");
}

#[test]
fn two_reviewers_without_executive_do_not_start() {
    let (mut mesh, manifest) = governed_mesh(2);
    approve(&mut mesh, 1, &manifest, REVIEWER_A).expect("first reviewer");
    approve(&mut mesh, 2, &manifest, REVIEWER_B).expect("second reviewer");
    mesh.run_for(Duration::from_secs(10));
    assert!(mesh.chunk_requests.is_empty(), "two reviewers started a rollout");
    let now = mesh.now;
    let report = mesh.node(1).approval_report(manifest.key(), now).expect("report");
    assert_eq!(report.missing, ["1 more executive key (0 of 1)".to_string()], "{report:?}");
}

#[test]
fn replay_after_recall_is_ignored() {
    let (mut mesh, manifest) = governed_mesh(2);
    approve(&mut mesh, 1, &manifest, REVIEWER_A).expect("reviewer");
    approve(&mut mesh, 1, &manifest, EXECUTIVE).expect("executive");
    mesh.run_for(Duration::from_secs(30));
    assert!(mesh.all_complete(manifest.key()));

    let recall = order(ControlAction::Recall, manifest.key(), &[EXECUTIVE]);
    assert!(mesh.input(2, |node, now| node.handle_control(now, None, recall.clone())).expect("recall"));
    mesh.run_for(Duration::from_secs(5));
    for index in 0..3 {
        let node = mesh.node(index);
        assert!(node.manifest(manifest.key()).is_none(), "node {index} still holds the recalled patch");
        assert_eq!(node.recalled(), [manifest.key().clone()], "node {index}");
    }
    let recalled = mesh.events.iter().filter(|(_, event)| matches!(event, Event::PatchRecalled { .. })).count();
    assert_eq!(recalled, 3);

    let from = mesh.names[0].clone();
    let replay = manifest.announcement().clone();
    let verdict = mesh.input(1, |node, now| node.handle_gossip(now, &from, replay));
    assert_eq!(verdict, Validation::Ignore);
    assert!(mesh.node(1).manifest(manifest.key()).is_none());
    assert!(!mesh.input(1, |node, now| node.handle_control(now, None, recall)).expect("replayed recall"), "replayed order counted as new");
}

#[test]
fn pause_stops_fetching_and_resume_restarts_it() {
    let (mut mesh, manifest) = governed_mesh(2);
    let pause = order(ControlAction::Pause, manifest.key(), &[REVIEWER_B]);
    mesh.input(0, |node, now| node.handle_control(now, None, pause)).expect("pause");
    approve(&mut mesh, 1, &manifest, REVIEWER_A).expect("reviewer");
    approve(&mut mesh, 1, &manifest, EXECUTIVE).expect("executive");
    mesh.run_for(Duration::from_secs(10));
    assert!(mesh.chunk_requests.is_empty(), "a paused rollout fetched");

    // Issued a second after the pause: among pauses and resumes the latest wins.
    let mut resume = RolloutControl::new(ControlAction::Resume, manifest.key().clone(), "checked", START.as_secs() + 1);
    resume.sign(&key(EXECUTIVE));
    mesh.input(2, |node, now| node.handle_control(now, None, resume)).expect("resume");
    mesh.run_for(Duration::from_secs(30));
    assert!(mesh.all_complete(manifest.key()), "resume did not restart the rollout");
}

#[test]
fn format_1_node_refuses_approvals() {
    let mut mesh = Mesh::star(1, 1);
    let (manifest, _) = manifest("KB-v1", 1, 1024, &[("a", pattern(10, 1))], &publisher());
    let result = approve(&mut mesh, 1, &manifest, REVIEWER_A);
    assert!(matches!(result, Err(GovernanceError::NotGoverned)), "{result:?}");
}

fn members(version: u64, peers: &[&str]) -> SignedMembership {
    let mut membership = Membership { version, issued: START.as_secs(), ..Membership::default() };
    for peer in peers {
        membership.add(peer, "site").expect("member");
    }
    let mut signed = SignedMembership { membership, signatures: Vec::new() };
    signed.sign(&key(NODE_ADMIN));
    signed
}

#[test]
fn membership_update_floods_rollback_rejected() {
    let (mut mesh, _) = governed_mesh(2);
    let first = members(1, &["n0", "n1", "n2"]);
    assert!(mesh.input(1, |node, now| node.handle_membership(now, None, first)).expect("version 1"));
    mesh.run_for(Duration::from_secs(1));
    let second = members(2, &["n0", "n1"]);
    assert!(mesh.input(2, |node, now| node.handle_membership(now, None, second)).expect("version 2"));
    mesh.run_for(Duration::from_secs(1));
    for index in 0..3 {
        assert_eq!(mesh.node(index).membership().map(|list| list.version()), Some(2), "node {index}");
    }

    let rollback = mesh.input(0, |node, now| node.handle_membership(now, None, members(1, &["n0", "n1", "n2"])));
    assert!(matches!(rollback, Err(GovernanceError::Membership(_))), "{rollback:?}");
    let from = mesh.names[1].clone();
    let signed = members(1, &["n0", "n1", "n2"]);
    mesh.input(0, |node, now| node.handle_message(now, &from, Message::Membership(signed)));
    assert_eq!(mesh.node(0).membership().map(|list| list.version()), Some(2));
}

const NEW_EXECUTIVE: u8 = 31;
const NEW_ROOT: u8 = 2;

/// The next trust file version: `change` edits it, then each key in `signers` signs it.
fn next_trust(previous: &SignedPolicy, signers: &[u8], change: impl FnOnce(&mut Policy)) -> SignedPolicy {
    let mut next = previous.policy.next_version(START.as_secs(), START.as_secs() + 365 * DAY);
    change(&mut next);
    let mut signed = SignedPolicy::unsigned(next);
    for &seed in signers {
        signed.sign(&key(seed));
    }
    signed
}

/// Version 2: the executive's key is revoked and replaced.
fn rotated_executive() -> SignedPolicy {
    next_trust(policy().signed(), &[ROOT], |next| {
        next.revoke(&key(EXECUTIVE).public());
        next.roles.insert(GovernanceRole::Executive, role(&[key(NEW_EXECUTIVE)]));
    })
}

fn trust_versions(mesh: &mut Mesh) -> Vec<Option<u64>> {
    (0..mesh.nodes.len()).map(|index| mesh.node(index).policy().map(|policy| policy.policy().version)).collect()
}

#[test]
fn trust_update_reaches_every_node() {
    let (mut mesh, _) = governed_mesh(3);
    let taken = mesh.input(2, |node, now| node.handle_trust(now, None, vec![rotated_executive()]));
    assert_eq!(taken.expect("version 2"), Some(2));
    mesh.run_for(Duration::from_secs(1));
    assert_eq!(trust_versions(&mut mesh), vec![Some(2); 4]);
    let changed = mesh.events.iter().filter(|(_, event)| matches!(event, Event::TrustChanged { version: 2 })).count();
    assert_eq!(changed, 4, "every node should report version 2 once");
}

#[test]
fn rotated_key_counts_and_revoked_key_does_not() {
    let (mut mesh, manifest) = governed_mesh(2);
    mesh.input(0, |node, now| node.handle_trust(now, None, vec![rotated_executive()])).expect("version 2");
    mesh.run_for(Duration::from_secs(1));
    approve(&mut mesh, 1, &manifest, REVIEWER_A).expect("reviewer approval");
    let revoked = approve(&mut mesh, 1, &manifest, EXECUTIVE);
    assert!(revoked.is_err(), "the revoked executive key was taken: {revoked:?}");
    mesh.run_for(Duration::from_secs(5));
    assert!(mesh.chunk_requests.is_empty(), "chunks requested on a revoked key's approval");

    approve(&mut mesh, 2, &manifest, NEW_EXECUTIVE).expect("new executive approval");
    mesh.run_for(Duration::from_secs(30));
    assert!(mesh.all_complete(manifest.key()), "rollout did not complete with the rotated key");
}

#[test]
fn held_announcement_copy_rechecked_after_trust_change() {
    let (mut mesh, manifest) = governed_mesh(2);
    let from = mesh.names[0].clone();
    let copy = mesh.input(1, |node, now| node.handle_gossip(now, &from, manifest.announcement().clone()));
    assert_eq!(copy, Validation::Ignore, "an identical copy is a duplicate");

    let revoked = next_trust(policy().signed(), &[ROOT], |next| {
        next.revoke(&publisher().public());
    });
    mesh.input(1, |node, now| node.handle_trust(now, None, vec![revoked])).expect("version 2");
    let after = mesh.input(1, |node, now| node.handle_gossip(now, &from, manifest.announcement().clone()));
    assert_eq!(after, Validation::Reject, "a copy signed by a revoked key skipped the signature check");
}

#[test]
fn trust_update_signed_only_by_new_root_rejected() {
    let (mut mesh, _) = governed_mesh(2);
    let takeover = next_trust(policy().signed(), &[NEW_ROOT], |next| {
        next.roles.insert(GovernanceRole::Root, role(&[key(NEW_ROOT)]));
    });
    let local = mesh.input(1, |node, now| node.handle_trust(now, None, vec![takeover.clone()]));
    assert!(matches!(local, Err(GovernanceError::Trust { offered: 2, .. })), "{local:?}");

    let from = mesh.names[0].clone();
    mesh.input(1, |node, now| node.handle_message(now, &from, Message::Trust(vec![takeover])));
    mesh.run_for(Duration::from_secs(1));
    assert_eq!(trust_versions(&mut mesh), vec![Some(1); 3]);
}

#[test]
fn node_steps_through_a_chain_of_versions() {
    let (mut mesh, _) = governed_mesh(1);
    let second = rotated_executive();
    let third = next_trust(&second, &[ROOT], |_| {});
    let taken = mesh.input(1, |node, now| node.handle_trust(now, None, vec![third.clone(), second.clone()]));
    assert_eq!(taken.expect("versions 2 and 3"), Some(3));
    assert_eq!(mesh.node(1).trust_chain().len(), 3, "the chain keeps versions 1 to 3");

    let again = mesh.input(1, |node, now| node.handle_trust(now, None, vec![second, third]));
    assert_eq!(again.expect("old versions"), None, "versions already enforced change nothing");
}

#[test]
fn trust_chain_with_a_gap_rejected() {
    let (mut mesh, _) = governed_mesh(1);
    let third = next_trust(&rotated_executive(), &[ROOT], |_| {});
    let gap = mesh.input(1, |node, now| node.handle_trust(now, None, vec![third]));
    assert!(matches!(gap, Err(GovernanceError::Trust { offered: 3, .. })), "{gap:?}");
    assert_eq!(mesh.node(1).policy().map(|policy| policy.policy().version), Some(1));
}

#[test]
fn membership_list_sets_peer_sites() {
    let (mut mesh, _) = governed_mesh(2);
    let mut membership = Membership { version: 1, issued: START.as_secs(), ..Membership::default() };
    for (peer, site) in [("n0", "hq"), ("n1", "branch-north"), ("n2", "hq")] {
        membership.add(peer, site).expect("member");
    }
    let mut signed = SignedMembership { membership, signatures: Vec::new() };
    signed.sign(&key(NODE_ADMIN));
    mesh.input(0, |node, now| node.handle_membership(now, None, signed)).expect("list");
    mesh.run_for(Duration::from_secs(1));

    let status = mesh.node(0).status(START);
    let site_of = |peer: &str| status.peers.iter().find(|state| state.peer == peer).and_then(|state| state.site.clone());
    assert_eq!(site_of("n1").as_deref(), Some("branch-north"), "n1 claims office-0 but the list says branch-north");
    assert_eq!(site_of("n2").as_deref(), Some("hq"), "n2 claims office-1 but the list says hq");
}

#[test]
fn valid_approvals_kept_beside_a_rejected_one() {
    let (mut mesh, manifest) = governed_mesh(2);
    let stranger = SecretKey::from_seed([99; 32]);
    let approvals = vec![
        Approval::sign(manifest.announcement(), &key(REVIEWER_A)),
        Approval::sign(manifest.announcement(), &stranger),
        Approval::sign(manifest.announcement(), &key(EXECUTIVE)),
    ];
    let local = mesh.input(1, |node, now| node.handle_approvals(now, None, approvals));
    assert!(
        matches!(local, Err(GovernanceError::ApprovalsRejected { stored: 2, rejected: 1, first: ApprovalError::UnknownKey { .. } })),
        "{local:?}"
    );

    // The two valid approvals meet the rule and reach the other nodes.
    mesh.run_for(Duration::from_secs(30));
    assert!(mesh.all_complete(manifest.key()), "the valid approvals beside a rejected one were not used");
}

#[test]
fn met_rule_lists_nothing_missing_after_rotation() {
    let (mut mesh, manifest) = governed_mesh(1);
    approve(&mut mesh, 1, &manifest, REVIEWER_A).expect("reviewer approval");
    approve(&mut mesh, 1, &manifest, EXECUTIVE).expect("executive approval");
    mesh.run_for(Duration::from_secs(30));
    mesh.input(1, |node, now| node.handle_trust(now, None, vec![rotated_executive()])).expect("version 2");

    // The executive who approved is revoked now, but the rollout already started.
    let report = mesh.node(1).approval_report(manifest.key(), START).expect("report");
    assert!(report.met, "{report:?}");
    assert!(report.missing.is_empty(), "a met rule listed missing keys: {report:?}");
}
