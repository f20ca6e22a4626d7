//! Attacks on the governance layer, one test each, through the public API a node uses.

use std::collections::{BTreeMap, BTreeSet};

use patchmesh_core::governance::{
    Approval, ApprovalError, ApprovalFile, ApprovalRejection, ApprovalStatus, ControlAction, ControlError,
    MaintenanceWindow, MembershipError, Policy, PolicyError, PolicyFileError, Role, RoleKeys, RolloutControl,
    RolloutPlan, RolloutState, Rules, Shortfall, SignedMembership, SignedPolicy, TrustedPolicy, VerifiedMembership, Wave,
    WaveStart, evaluate_approvals, rollout_state, verify_control,
};
use patchmesh_core::manifest::{FileName, ManifestBuilder};
use patchmesh_core::{Announcement, PatchId, PatchKey, PublicKey, SecretKey, Timestamp};

const NOW: u64 = 1_800_000_000;
const DAY: u64 = 86_400;

fn key(seed: u8) -> SecretKey {
    SecretKey::from_seed([seed; 32])
}

/// Seeds of the organisation's keys.
const ROOT_A: u8 = 1;
const ROOT_B: u8 = 2;
const PUBLISHER: u8 = 10;
const REVIEWER_A: u8 = 20;
const REVIEWER_B: u8 = 21;
const EXECUTIVE: u8 = 30;
const NODE_ADMIN: u8 = 40;
const OUTSIDER: u8 = 99;

fn role(threshold: u32, seeds: &[u8]) -> RoleKeys {
    RoleKeys { threshold, keys: seeds.iter().map(|&seed| (key(seed).public(), format!("holder-{seed}"))).collect() }
}

fn policy_v1() -> Policy {
    Policy {
        version: 1,
        created: NOW - DAY,
        expires: NOW + 365 * DAY,
        roles: BTreeMap::from([
            (Role::Root, role(1, &[ROOT_A, ROOT_B])),
            (Role::Publisher, role(1, &[PUBLISHER])),
            (Role::Reviewer, role(1, &[REVIEWER_A, REVIEWER_B])),
            (Role::Executive, role(1, &[EXECUTIVE])),
            (Role::NodeAdmin, role(1, &[NODE_ADMIN])),
        ]),
        rules: Rules::default(),
        revoked: BTreeSet::new(),
    }
}

fn signed(policy: Policy, signers: &[u8]) -> SignedPolicy {
    let mut signed = SignedPolicy::unsigned(policy);
    for &seed in signers {
        signed.sign(&key(seed));
    }
    signed
}

fn trusted() -> TrustedPolicy {
    TrustedPolicy::bootstrap(signed(policy_v1(), &[ROOT_A]), Timestamp::from_secs(NOW)).expect("bootstrap")
}

fn announcement(version: u64, plan: Option<RolloutPlan>) -> Announcement {
    let patch = PatchKey { id: PatchId::new("KB5034441").expect("id"), version };
    let mut builder = ManifestBuilder::new(patch, 1024).expect("builder");
    builder.add_file(FileName::new("fix.msu").expect("name"), &b"patch bytes"[..]).expect("add");
    if let Some(plan) = plan {
        builder.plan(plan);
    }
    let mut manifest = builder.finish(NOW - 60, NOW + 30 * DAY).expect("manifest");
    manifest.sign(&key(PUBLISHER));
    manifest.announcement().clone()
}

fn approvals(announcement: &Announcement, seeds: &[u8]) -> Vec<Approval> {
    seeds.iter().map(|&seed| Approval::sign(announcement, &key(seed))).collect()
}

fn status(policy: &TrustedPolicy, announcement: &Announcement, seeds: &[u8], now: u64) -> ApprovalStatus {
    evaluate_approvals(policy, announcement, &approvals(announcement, seeds), Timestamp::from_secs(now))
}

fn missing_roles(status: &ApprovalStatus) -> Vec<Role> {
    match status {
        ApprovalStatus::Missing { shortfall, .. } => shortfall.iter().map(|short| short.role).collect(),
        other => panic!("expected Missing, got {other:?}"),
    }
}

// ---------------------------------------------------------------- approvals

#[test]
fn reviewer_and_executive_meet_the_rule() {
    let status = status(&trusted(), &announcement(1, None), &[REVIEWER_A, EXECUTIVE], NOW);
    let ApprovalStatus::Met { approvers } = status else { panic!("{status:?}") };
    assert_eq!(approvers[&Role::Executive], BTreeSet::from([key(EXECUTIVE).public()]));
    assert!(approvers[&Role::Publisher].contains(&key(PUBLISHER).public()));
}

#[test]
fn two_reviewers_do_not_replace_an_executive() {
    let status = status(&trusted(), &announcement(1, None), &[REVIEWER_A, REVIEWER_B], NOW);
    assert_eq!(missing_roles(&status), vec![Role::Executive]);
}

#[test]
fn unknown_key_does_not_count() {
    let status = status(&trusted(), &announcement(1, None), &[REVIEWER_A, OUTSIDER], NOW);
    assert_eq!(missing_roles(&status), vec![Role::Executive]);
    let ApprovalStatus::Missing { ignored, .. } = status else { unreachable!() };
    assert!(matches!(ignored.as_slice(), [ApprovalError::UnknownKey { .. }]), "{ignored:?}");
}

#[test]
fn duplicated_approval_counts_once() {
    let mut policy = policy_v1();
    policy.roles.insert(Role::Reviewer, role(2, &[REVIEWER_A, REVIEWER_B]));
    let trusted = TrustedPolicy::bootstrap(signed(policy, &[ROOT_A]), Timestamp::from_secs(NOW)).expect("bootstrap");
    let announcement = announcement(1, None);
    let twice = approvals(&announcement, &[REVIEWER_A, REVIEWER_A, EXECUTIVE]);
    let status = evaluate_approvals(&trusted, &announcement, &twice, Timestamp::from_secs(NOW));
    let ApprovalStatus::Missing { shortfall, .. } = status else { panic!("{status:?}") };
    assert_eq!(shortfall, vec![Shortfall { role: Role::Reviewer, have: 1, need: 2 }]);
}

#[test]
fn approval_over_another_digest_does_not_count() {
    let approved = announcement(1, None);
    let other = announcement(2, None);
    // An executive approved version 1; the approval is replayed for version 2.
    let mut replayed = approvals(&other, &[REVIEWER_A]);
    replayed.extend(approvals(&approved, &[EXECUTIVE]));
    let status = evaluate_approvals(&trusted(), &other, &replayed, Timestamp::from_secs(NOW));
    assert_eq!(missing_roles(&status), vec![Role::Executive]);
    // The same signature relabelled with the new patch version still signs the old digest.
    let mut relabelled = Approval::sign(&approved, &key(EXECUTIVE));
    relabelled.patch = other.header.patch.clone();
    let error = relabelled.check(&trusted(), &other).expect_err("other digest");
    assert!(matches!(error, ApprovalError::OtherManifest { .. }), "{error}");
}

#[test]
fn forged_approval_signature_does_not_count() {
    let announcement = announcement(1, None);
    let mut forged = Approval::sign(&announcement, &key(OUTSIDER));
    forged.key = key(EXECUTIVE).public();
    let error = forged.check(&trusted(), &announcement).expect_err("forged");
    assert!(matches!(error, ApprovalError::BadSignature { .. }), "{error}");
    let status = evaluate_approvals(&trusted(), &announcement, &[forged], Timestamp::from_secs(NOW));
    assert!(missing_roles(&status).contains(&Role::Executive));
}

#[test]
fn manifest_expiry_boundaries() {
    let announcement = announcement(1, None);
    let expires = announcement.header.expires;
    // (now, rejected as expired?)
    for (now, expired) in [(expires - 1, false), (expires, true), (expires + 1, true)] {
        let status = status(&trusted(), &announcement, &[REVIEWER_A, EXECUTIVE], now);
        assert_eq!(matches!(status, ApprovalStatus::Rejected(ApprovalRejection::ManifestExpired { .. })), expired, "at {now}: {status:?}");
    }
}

#[test]
fn expired_trust_file_rejects_everything() {
    let trusted = trusted();
    let expires = trusted.policy().expires;
    let status = status(&trusted, &announcement(1, None), &[REVIEWER_A, EXECUTIVE], expires);
    assert!(matches!(status, ApprovalStatus::Rejected(ApprovalRejection::PolicyExpired { .. })), "{status:?}");
    let error = TrustedPolicy::bootstrap(signed(policy_v1(), &[ROOT_A]), Timestamp::from_secs(expires)).expect_err("expired");
    assert!(matches!(error, PolicyError::Expired { .. }), "{error}");
    assert!(TrustedPolicy::bootstrap(signed(policy_v1(), &[ROOT_A]), Timestamp::from_secs(expires - 1)).is_ok());
}

#[test]
fn approvals_do_not_carry_over_to_another_plan() {
    let pilot_first = RolloutPlan {
        waves: vec![
            Wave { sites: Some(vec!["pilot".into()]), start: WaveStart::At { time: NOW } },
            Wave { sites: None, start: WaveStart::AfterPrevious { min_verified_percent: 95, soak_secs: 7200 } },
        ],
        windows: vec![],
    };
    let approved = announcement(1, Some(pilot_first));
    let granted = approvals(&approved, &[REVIEWER_A, EXECUTIVE]);
    assert!(matches!(evaluate_approvals(&trusted(), &approved, &granted, Timestamp::from_secs(NOW)), ApprovalStatus::Met { .. }));

    // Swap in an all-at-once plan: the publisher's signature and the approvals both fail.
    let mut swapped = approved.clone();
    swapped.plan = Some(RolloutPlan { waves: vec![Wave { sites: None, start: WaveStart::At { time: NOW } }], windows: vec![] });
    assert!(swapped.valid_signers().is_empty());
    let status = evaluate_approvals(&trusted(), &swapped, &granted, Timestamp::from_secs(NOW));
    assert_eq!(missing_roles(&status), vec![Role::Publisher, Role::Reviewer, Role::Executive]);

    // Attaching a plan to a format 1 announcement also breaks its signature.
    let mut attached = announcement(1, None);
    attached.plan = swapped.plan.clone();
    assert!(attached.valid_signers().is_empty());
}

#[test]
fn plan_survives_the_manifest_file() {
    let plan = RolloutPlan {
        waves: vec![Wave { sites: Some(vec!["pilot".into()]), start: WaveStart::At { time: NOW } }],
        windows: vec![MaintenanceWindow { site: "pilot".into(), start_minute: 1320, duration_minutes: 240 }],
    };
    let patch = PatchKey { id: PatchId::new("KB1").expect("id"), version: 1 };
    let mut builder = ManifestBuilder::new(patch, 1024).expect("builder");
    builder.add_file(FileName::new("a").expect("name"), &b"x"[..]).expect("add");
    builder.plan(plan.clone());
    let mut manifest = builder.finish(NOW, NOW + DAY).expect("manifest");
    manifest.sign(&key(PUBLISHER));
    let parsed = patchmesh_core::Manifest::from_json(&manifest.to_json()).expect("parse");
    assert_eq!(parsed.plan(), Some(&plan));
    assert_eq!(parsed.header().format, 2);
    assert_eq!(parsed.announcement().valid_signers(), vec![key(PUBLISHER).public()]);
}

// ---------------------------------------------------------------- keys in the policy

#[test]
fn same_key_twice_in_a_role_rejected() {
    let reviewer = key(REVIEWER_A).public();
    let text = signed(policy_v1(), &[]).to_toml().replace(
        &format!("{{ name = \"holder-{REVIEWER_B}\", key = \"{}\" }}", key(REVIEWER_B).public()),
        &format!("{{ name = \"again\", key = \"{reviewer}\" }}"),
    );
    let error = SignedPolicy::from_toml(&text).expect_err("duplicate");
    assert!(matches!(error, PolicyFileError::DuplicateKey { role: Role::Reviewer, .. }), "{error}");
}

#[test]
fn non_canonical_key_encoding_rejected_in_policy_and_approval() {
    use base64::Engine;
    // y = 3 is a point of large order; y = p + 3 is the same point, encoded differently.
    let mut canonical = [0u8; 32];
    canonical[0] = 3;
    let mut alias = [0xffu8; 32];
    alias[0] = 0xed + 3;
    alias[31] = 0x7f;
    let canonical_text = PublicKey::from_bytes(canonical).expect("canonical").to_string();
    let alias_text = format!("ed25519:{}", base64::engine::general_purpose::STANDARD.encode(alias));

    let mut policy = policy_v1();
    policy.roles.get_mut(&Role::Reviewer).expect("reviewers").keys.insert(PublicKey::parse(&canonical_text).expect("key"), "point".into());
    let text = signed(policy, &[]).to_toml();
    let aliased = text.replace(&canonical_text, &alias_text);
    assert!(SignedPolicy::from_toml(&text).is_ok());
    assert!(SignedPolicy::from_toml(&aliased).is_err());

    let announcement = announcement(1, None);
    let mut file = ApprovalFile::new();
    file.add(Approval::sign(&announcement, &key(REVIEWER_A)));
    let json = file.to_json().replace(&key(REVIEWER_A).public().to_string(), &alias_text);
    assert!(ApprovalFile::from_json(&json).is_err());
}

#[test]
fn key_in_two_roles_rejected() {
    let mut policy = policy_v1();
    policy.roles.get_mut(&Role::Executive).expect("executives").keys.insert(key(REVIEWER_A).public(), "both".into());
    assert!(matches!(policy.validate(), Err(PolicyFileError::KeyInTwoRoles { .. })));
}

#[test]
fn threshold_boundaries() {
    // (threshold, keys, valid?)
    for (threshold, seeds, valid) in [(0, &[20u8, 21][..], false), (1, &[20, 21], true), (2, &[20, 21], true), (3, &[20, 21], false)] {
        let mut policy = policy_v1();
        policy.roles.insert(Role::Reviewer, role(threshold, seeds));
        assert_eq!(policy.validate().is_ok(), valid, "threshold {threshold} of {}", seeds.len());
    }
}

#[test]
fn format_one_trust_file_names_the_fix() {
    let error = SignedPolicy::from_toml("format = 1\n[[publisher]]\nname = \"a\"\nkey = \"x\"\n").expect_err("format 1");
    assert!(error.to_string().contains("patchmesh trust init --import-v1"), "{error}");
}

// ---------------------------------------------------------------- trust updates

fn v2_rotating_reviewer() -> Policy {
    let mut next = policy_v1().next_version(NOW, NOW + 365 * DAY);
    next.revoke(&key(REVIEWER_A).public());
    next.roles.get_mut(&Role::Reviewer).expect("reviewers").keys.insert(key(22).public(), "new-reviewer".into());
    next
}

#[test]
fn rotation_signed_by_old_and_new_root_accepted() {
    let updated = trusted().update(signed(v2_rotating_reviewer(), &[ROOT_A])).expect("update");
    assert_eq!(updated.policy().version, 2);
}

#[test]
fn update_signed_only_by_new_root_rejected() {
    let mut next = policy_v1().next_version(NOW, NOW + 365 * DAY);
    // An attacker replaces the whole root role with their own key.
    next.roles.insert(Role::Root, role(1, &[OUTSIDER]));
    let error = trusted().update(signed(next, &[OUTSIDER])).expect_err("new keys only");
    assert!(matches!(error, PolicyError::RootThreshold { signed_under: 1, have: 0, need: 1, .. }), "{error}");
}

#[test]
fn update_signed_only_by_old_root_rejected_when_new_root_differs() {
    let mut next = policy_v1().next_version(NOW, NOW + 365 * DAY);
    next.roles.insert(Role::Root, role(1, &[3]));
    let error = trusted().update(signed(next, &[ROOT_A])).expect_err("new root did not sign");
    assert!(matches!(error, PolicyError::RootThreshold { signed_under: 2, .. }), "{error}");
}

#[test]
fn duplicated_root_signature_counts_once() {
    let mut policy = policy_v1();
    policy.roles.get_mut(&Role::Root).expect("root").threshold = 2;
    let mut file = signed(policy, &[ROOT_A]);
    let copy = file.signatures[0].clone();
    file.signatures.push(copy);
    let error = TrustedPolicy::bootstrap(file, Timestamp::from_secs(NOW)).expect_err("one key");
    assert!(matches!(error, PolicyError::RootThreshold { have: 1, need: 2, .. }), "{error}");
}

#[test]
fn skipped_version_rejected() {
    let mut next = v2_rotating_reviewer();
    next.version = 3;
    let error = trusted().update(signed(next, &[ROOT_A])).expect_err("skip");
    assert!(matches!(error, PolicyError::SkippedVersion { current: 1, offered: 3 }), "{error}");
}

#[test]
fn rollback_rejected() {
    let v2 = trusted().update(signed(v2_rotating_reviewer(), &[ROOT_A])).expect("v2");
    for offered in [signed(policy_v1(), &[ROOT_A]), signed(v2_rotating_reviewer(), &[ROOT_A])] {
        let error = v2.update(offered).expect_err("rollback");
        assert!(matches!(error, PolicyError::Rollback { current: 2, .. }), "{error}");
    }
}

#[test]
fn revoked_key_rejected_from_its_version_on() {
    let v1 = trusted();
    let v2 = v1.update(signed(v2_rotating_reviewer(), &[ROOT_A])).expect("v2");
    let announcement = announcement(1, None);
    assert!(matches!(status(&v1, &announcement, &[REVIEWER_A, EXECUTIVE], NOW), ApprovalStatus::Met { .. }));
    let under_v2 = status(&v2, &announcement, &[REVIEWER_A, EXECUTIVE], NOW);
    assert_eq!(missing_roles(&under_v2), vec![Role::Reviewer]);
    // The replacement key counts.
    assert!(matches!(status(&v2, &announcement, &[22, EXECUTIVE], NOW), ApprovalStatus::Met { .. }));

    // Version 3 may not quietly drop the revocation, nor list the key again.
    let mut v3 = v2.policy().next_version(NOW, NOW + DAY);
    v3.revoked.clear();
    assert!(matches!(v2.update(signed(v3.clone(), &[ROOT_A])), Err(PolicyError::Unrevoked { .. })));
    v3.revoked = v2.policy().revoked.clone();
    v3.roles.get_mut(&Role::Reviewer).expect("reviewers").keys.insert(key(REVIEWER_A).public(), "back".into());
    assert!(matches!(v3.validate(), Err(PolicyFileError::RevokedKeyListed { .. })));
}

#[test]
fn revoked_root_key_cannot_sign_later_versions() {
    let mut v2 = policy_v1().next_version(NOW, NOW + DAY);
    v2.revoke(&key(ROOT_B).public());
    let v2 = trusted().update(signed(v2, &[ROOT_A])).expect("v2");
    let v3 = v2.policy().next_version(NOW, NOW + DAY);
    let error = v2.update(signed(v3, &[ROOT_B])).expect_err("revoked root");
    assert!(matches!(error, PolicyError::RootThreshold { have: 0, .. }), "{error}");
}

#[test]
fn chain_may_pass_expired_versions_but_not_end_on_one() {
    let mut v2 = v2_rotating_reviewer();
    v2.expires = NOW + 10;
    let v3 = v2.next_version(NOW + 5, NOW + DAY);
    let later = Timestamp::from_secs(NOW + 100);
    let updated = trusted().update_chain([signed(v2.clone(), &[ROOT_A]), signed(v3, &[ROOT_A])], later).expect("chain");
    assert_eq!(updated.policy().version, 3);
    assert!(matches!(trusted().update_chain([signed(v2, &[ROOT_A])], later), Err(PolicyError::Expired { .. })));
}

// ---------------------------------------------------------------- recall, pause, resume

fn control(action: ControlAction, issued: u64, signers: &[u8]) -> RolloutControl {
    let mut order = RolloutControl::new(action, announcement(1, None).header.patch, "printer drivers crash", issued);
    for &seed in signers {
        order.sign(&key(seed));
    }
    order
}

#[test]
fn recall_by_unauthorised_role_rejected() {
    // The recall rule names the executive role; a reviewer and the publisher do not suffice.
    let error = verify_control(&trusted(), &control(ControlAction::Recall, NOW, &[REVIEWER_A, PUBLISHER]), Timestamp::from_secs(NOW))
        .expect_err("unauthorised");
    let ControlError::Unauthorised { shortfall, .. } = &error else { panic!("{error}") };
    assert_eq!(shortfall[0].role, Role::Executive);
    assert!(verify_control(&trusted(), &control(ControlAction::Recall, NOW, &[EXECUTIVE]), Timestamp::from_secs(NOW)).is_ok());
}

#[test]
fn altered_reason_voids_the_signature() {
    let mut order = control(ControlAction::Pause, NOW, &[REVIEWER_A]);
    order.reason = "routine".into();
    assert!(verify_control(&trusted(), &order, Timestamp::from_secs(NOW)).is_err());
}

#[test]
fn control_from_the_future_rejected() {
    let order = control(ControlAction::Pause, NOW + 3600, &[REVIEWER_A]);
    assert!(matches!(verify_control(&trusted(), &order, Timestamp::from_secs(NOW)), Err(ControlError::FromFuture { .. })));
}

#[test]
fn rollout_state_orders() {
    let now = Timestamp::from_secs(NOW + 100);
    let verified = |action, issued, seeds: &[u8]| verify_control(&trusted(), &control(action, issued, seeds), now).expect("verified");
    let patch = announcement(1, None).header.patch;
    let pause = verified(ControlAction::Pause, NOW, &[REVIEWER_A]);
    let resume = verified(ControlAction::Resume, NOW + 10, &[EXECUTIVE]);
    let old_resume = verified(ControlAction::Resume, NOW - 10, &[EXECUTIVE]);
    let same_second_resume = verified(ControlAction::Resume, NOW, &[EXECUTIVE]);
    let recall = verified(ControlAction::Recall, NOW + 5, &[EXECUTIVE]);
    // (orders, expected state)
    let table: Vec<(Vec<&_>, RolloutState)> = vec![
        (vec![], RolloutState::Active),
        (vec![&pause], RolloutState::Paused { since: NOW }),
        (vec![&pause, &resume], RolloutState::Active),
        (vec![&resume, &pause], RolloutState::Active),
        (vec![&pause, &old_resume], RolloutState::Paused { since: NOW }),
        (vec![&pause, &same_second_resume], RolloutState::Paused { since: NOW }),
        (vec![&pause, &recall, &resume], RolloutState::Recalled { at: NOW + 5 }),
    ];
    for (orders, expected) in table {
        assert_eq!(rollout_state(&patch, orders.iter().copied()), expected);
    }
}

// ---------------------------------------------------------------- membership

fn members(version: u64, peers: &[(&str, &str)], signers: &[u8]) -> SignedMembership {
    let mut list = SignedMembership::default();
    list.membership.version = version;
    list.membership.issued = NOW;
    for (peer, site) in peers {
        list.membership.add(peer, site).expect("add");
    }
    for &seed in signers {
        list.sign(&key(seed));
    }
    list
}

#[test]
fn membership_rollback_rejected() {
    let now = Timestamp::from_secs(NOW);
    let v1 = members(1, &[("12D3KooWA", "pilot"), ("12D3KooWB", "branch-1")], &[NODE_ADMIN]);
    let v2 = members(2, &[("12D3KooWA", "pilot")], &[NODE_ADMIN]);
    let held = VerifiedMembership::verify(&trusted(), v1.clone(), now).expect("v1");
    let held = held.update(&trusted(), v2, now).expect("v2");
    assert_eq!(held.site_of("12D3KooWB"), None);
    for replay in [v1, members(2, &[("12D3KooWA", "pilot"), ("12D3KooWB", "branch-1")], &[NODE_ADMIN])] {
        let error = held.update(&trusted(), replay, now).expect_err("rollback");
        assert!(matches!(error, MembershipError::Rollback { current: 2, .. }), "{error}");
    }
}

#[test]
fn membership_needs_node_admin() {
    let error = VerifiedMembership::verify(&trusted(), members(1, &[("12D3KooWA", "pilot")], &[EXECUTIVE]), Timestamp::from_secs(NOW))
        .expect_err("unauthorised");
    assert!(matches!(error, MembershipError::Unauthorised { .. }), "{error}");
}

#[test]
fn membership_file_round_trip() {
    let list = members(4, &[("12D3KooWA", "pilot"), ("12D3KooWB", "branch-1")], &[NODE_ADMIN]);
    let parsed = SignedMembership::from_toml(&list.to_toml()).expect("parse");
    assert_eq!(parsed, list);
    assert!(SignedMembership::from_toml(&list.to_toml().replace("branch-1", "branch 1")).is_err());
}

// ---------------------------------------------------------------- canonical encodings

mod canonical {
    use proptest::prelude::*;

    use super::*;

    fn arb_role_keys(base: u8) -> impl Strategy<Value = RoleKeys> {
        (1usize..4, proptest::collection::vec("[a-z][a-z0-9._-]{0,12}", 3)).prop_flat_map(move |(count, names)| {
            (1..=count as u32).prop_map(move |threshold| RoleKeys {
                threshold,
                keys: (0..count).map(|index| (key(base + index as u8).public(), names[index].clone())).collect(),
            })
        })
    }

    fn arb_policy() -> impl Strategy<Value = Policy> {
        (1u64..1000, 0u64..1 << 40, 1u64..1 << 30, arb_role_keys(1), arb_role_keys(10), arb_role_keys(20), arb_role_keys(30), arb_role_keys(40), any::<bool>())
            .prop_map(|(version, created, lifetime, root, publisher, reviewer, executive, admin, revoke)| Policy {
                version,
                created,
                expires: created + lifetime,
                roles: BTreeMap::from([
                    (Role::Root, root),
                    (Role::Publisher, publisher),
                    (Role::Reviewer, reviewer),
                    (Role::Executive, executive),
                    (Role::NodeAdmin, admin),
                ]),
                rules: Rules::default(),
                revoked: if revoke { BTreeSet::from([key(77).public()]) } else { BTreeSet::new() },
            })
    }

    fn arb_plan() -> impl Strategy<Value = RolloutPlan> {
        let wave = (proptest::option::of(proptest::collection::vec("[a-z0-9-]{1,10}", 0..3)), any::<u64>(), 1u8..=100, any::<u64>(), any::<bool>())
            .prop_map(|(sites, time, percent, soak, fixed)| Wave {
                sites,
                start: if fixed { WaveStart::At { time } } else { WaveStart::AfterPrevious { min_verified_percent: percent, soak_secs: soak } },
            });
        let window = ("[a-z0-9-]{1,10}", 0u32..1440, 1u32..=1440)
            .prop_map(|(site, start_minute, duration_minutes)| MaintenanceWindow { site, start_minute, duration_minutes });
        (proptest::collection::vec(wave, 1..4), proptest::collection::vec(window, 0..3)).prop_map(|(waves, windows)| RolloutPlan { waves, windows })
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 128,
            rng_seed: proptest::test_runner::RngSeed::Fixed(0x90_7e4e),
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        #[test]
        fn policy_file_round_trip_keeps_signed_bytes(policy in arb_policy(), sign in any::<bool>()) {
            let file = signed(policy.clone(), if sign { &[1][..] } else { &[] });
            let parsed = SignedPolicy::from_toml(&file.to_toml()).expect("parse");
            prop_assert_eq!(parsed.policy.canonical_bytes(), policy.canonical_bytes());
            prop_assert_eq!(&parsed, &file);
        }

        #[test]
        fn distinct_policies_sign_distinct_bytes(a in arb_policy(), b in arb_policy()) {
            prop_assert_eq!(a == b, a.canonical_bytes() == b.canonical_bytes());
        }

        #[test]
        fn plan_json_round_trip_keeps_signed_bytes(plan in arb_plan()) {
            let mut announcement = announcement(1, None);
            announcement.header.format = 2;
            announcement.plan = Some(plan);
            let json = serde_json::to_string(&announcement).expect("json");
            let parsed: Announcement = serde_json::from_str(&json).expect("parse");
            prop_assert_eq!(parsed.signed_bytes(), announcement.signed_bytes());
        }

        #[test]
        fn distinct_plans_sign_distinct_bytes(a in arb_plan(), b in arb_plan()) {
            let with = |plan: &RolloutPlan| {
                let mut announcement = announcement(1, None);
                announcement.header.format = 2;
                announcement.plan = Some(plan.clone());
                announcement.signed_bytes()
            };
            prop_assert_eq!(a == b, with(&a) == with(&b));
        }

        #[test]
        fn control_and_membership_json_round_trip(reason in "\\PC{0,40}", issued in any::<u64>(), version in 1u64..1 << 50) {
            let mut order = RolloutControl::new(ControlAction::Pause, PatchKey { id: PatchId::new("KB1").expect("id"), version }, reason, issued);
            order.sign(&key(REVIEWER_A));
            let parsed: RolloutControl = serde_json::from_str(&serde_json::to_string(&order).expect("json")).expect("parse");
            prop_assert_eq!(parsed.signed_bytes(), order.signed_bytes());
            prop_assert_eq!(parsed.signers().len(), 1);
        }
    }
}
