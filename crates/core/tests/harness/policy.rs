//! A format 2 trust policy for harness tests: root, the harness publisher, two
//! reviewers, one executive and one node admin, each role with threshold 1.

use std::collections::{BTreeMap, BTreeSet};

use patchmesh_core::SecretKey;
use patchmesh_core::governance::{Policy, Role as GovernanceRole, RoleKeys, Rules, SignedPolicy, TrustedPolicy};

use super::{START, publisher};

pub const DAY: u64 = 86_400;
pub const ROOT: u8 = 1;
pub const REVIEWER_A: u8 = 20;
pub const REVIEWER_B: u8 = 21;
pub const EXECUTIVE: u8 = 30;
pub const NODE_ADMIN: u8 = 40;

/// Returns the key whose seed is `seed` repeated.
pub fn key(seed: u8) -> SecretKey {
    SecretKey::from_seed([seed; 32])
}

/// Returns a role of `keys` with threshold 1.
pub fn role(keys: &[SecretKey]) -> RoleKeys {
    RoleKeys { threshold: 1, keys: keys.iter().map(|key| (key.public(), format!("key-{}", key.public().short_id()))).collect() }
}

/// Publisher (the harness's key) + one reviewer + one executive approve a rollout.
pub fn policy() -> TrustedPolicy {
    let policy = Policy {
        version: 1,
        created: START.as_secs() - DAY,
        expires: START.as_secs() + 365 * DAY,
        roles: BTreeMap::from([
            (GovernanceRole::Root, role(&[key(ROOT)])),
            (GovernanceRole::Publisher, role(&[publisher()])),
            (GovernanceRole::Reviewer, role(&[key(REVIEWER_A), key(REVIEWER_B)])),
            (GovernanceRole::Executive, role(&[key(EXECUTIVE)])),
            (GovernanceRole::NodeAdmin, role(&[key(NODE_ADMIN)])),
        ]),
        rules: Rules::default(),
        revoked: BTreeSet::new(),
    };
    let mut signed = SignedPolicy::unsigned(policy);
    signed.sign(&key(ROOT));
    TrustedPolicy::bootstrap(signed, START).expect("bootstrap")
}
