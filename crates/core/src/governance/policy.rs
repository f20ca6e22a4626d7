//! Trust file format 2: roles, thresholds, rules, revocations, signed by the root role.
//!
//! ```toml
//! format = 2
//! version = 1                 # +1 for every change
//! created = 1767225600        # Unix seconds
//! expires = 1798761600        # Unix seconds; nodes reject the file after this
//! revoked = ["ed25519:…"]     # keys rejected from this version on; never shrinks
//!
//! [rules]                     # which roles must each meet their threshold
//! approval = ["publisher", "reviewer", "executive"]
//! recall = ["executive"]
//! pause = ["reviewer"]
//! resume = ["executive"]
//! membership = ["node-admin"]
//!
//! [roles.root]
//! threshold = 2
//! keys = [{ name = "ciso", key = "ed25519:…" }, { name = "cto", key = "ed25519:…" }]
//!
//! [[signature]]               # over the canonical bytes of everything above
//! key = "ed25519:…"
//! signature = "…"
//! ```
//!
//! The signed bytes are a canonical encoding of the parsed document ([`Policy::canonical_bytes`]),
//! so comments, spacing and table order in the TOML text do not affect signatures.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Deserialize;

use super::{KeySignature, MAX_DOCUMENT_SIGNATURES, Role, add_signature, check_name, len_u32, short_ids, valid_signers};
use crate::encoding::CanonicalWriter;
use crate::keys::{PublicKey, SecretKey};
use crate::time::Timestamp;

/// The trust file format this module reads and writes.
pub const POLICY_FORMAT: u32 = 2;
/// Domain tag of the canonical policy encoding.
pub const POLICY_DOMAIN: &str = "patchmesh/trust-policy/2";

/// The keys of one role and how many of them an action needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleKeys {
    /// Distinct keys of this role an action needs, 1 to `keys.len()`.
    pub threshold: u32,
    /// The keys and their holders' names.
    pub keys: BTreeMap<PublicKey, String>,
}

/// An action the trust file governs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum RuleKind {
    /// Rolling out a manifest.
    Approval,
    /// Recalling a patch version.
    Recall,
    /// Pausing a rollout.
    Pause,
    /// Resuming a paused rollout.
    Resume,
    /// Changing the membership list.
    Membership,
}

impl RuleKind {
    /// Every rule, in canonical order.
    pub const ALL: [RuleKind; 5] = [RuleKind::Approval, RuleKind::Recall, RuleKind::Pause, RuleKind::Resume, RuleKind::Membership];

    /// The rule's name in the trust file.
    pub fn as_str(self) -> &'static str {
        match self {
            RuleKind::Approval => "approval",
            RuleKind::Recall => "recall",
            RuleKind::Pause => "pause",
            RuleKind::Resume => "resume",
            RuleKind::Membership => "membership",
        }
    }
}

impl fmt::Display for RuleKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// For each action, the roles that must each meet their threshold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rules {
    /// Rolling out a manifest.
    pub approval: BTreeSet<Role>,
    /// Recalling a patch version.
    pub recall: BTreeSet<Role>,
    /// Pausing a rollout.
    pub pause: BTreeSet<Role>,
    /// Resuming a paused rollout.
    pub resume: BTreeSet<Role>,
    /// Changing the membership list.
    pub membership: BTreeSet<Role>,
}

impl Rules {
    /// The roles `kind` needs.
    pub fn get(&self, kind: RuleKind) -> &BTreeSet<Role> {
        match kind {
            RuleKind::Approval => &self.approval,
            RuleKind::Recall => &self.recall,
            RuleKind::Pause => &self.pause,
            RuleKind::Resume => &self.resume,
            RuleKind::Membership => &self.membership,
        }
    }
}

impl Default for Rules {
    /// A publisher, a reviewer and an executive approve; an executive recalls and
    /// resumes; a reviewer pauses (cheap to undo, so the lower bar); a node admin
    /// changes membership.
    fn default() -> Self {
        Rules {
            approval: [Role::Publisher, Role::Reviewer, Role::Executive].into(),
            recall: [Role::Executive].into(),
            pause: [Role::Reviewer].into(),
            resume: [Role::Executive].into(),
            membership: [Role::NodeAdmin].into(),
        }
    }
}

/// The content of a trust file, without its signatures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Starts at 1; each change adds exactly 1.
    pub version: u64,
    /// When this version was made, Unix seconds.
    pub created: u64,
    /// After this instant (Unix seconds) nodes reject the policy and everything it would
    /// authorise, so a frozen trust file cannot be replayed forever.
    pub expires: u64,
    /// The keys of each role. A key holds at most one role.
    pub roles: BTreeMap<Role, RoleKeys>,
    /// The roles each action needs.
    pub rules: Rules,
    /// Keys rejected from this version on. Every later version keeps them.
    pub revoked: BTreeSet<PublicKey>,
}

/// How far a set of signers falls short of one role's threshold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shortfall {
    /// The role.
    pub role: Role,
    /// Distinct valid keys of that role present.
    pub have: u32,
    /// The role's threshold.
    pub need: u32,
}

impl fmt::Display for Shortfall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let missing = self.need - self.have;
        write!(f, "{} more {} key{} ({} of {})", missing, self.role, if missing == 1 { "" } else { "s" }, self.have, self.need)
    }
}

/// A trust file that is not a well-formed policy.
#[derive(Debug, thiserror::Error)]
pub enum PolicyFileError {
    /// TOML syntax or shape; the message carries line and column.
    #[error("invalid trust file: {0}")]
    Toml(#[from] toml::de::Error),
    /// A format 1 file, which has no roles, no root and no expiry.
    #[error("trust file format 1 lists publishers only and cannot carry roles or approvals; create a format 2 file with `patchmesh trust init --import-v1 OLD.toml --root NAME=ROOT.pub ...`")]
    FormatOne,
    /// Any other format.
    #[error("unsupported trust file format {format}: this release reads format 1 and {POLICY_FORMAT}; upgrade patchmesh")]
    UnsupportedFormat {
        /// The format found.
        format: u32,
    },
    /// A role name not in the list.
    #[error("unknown role {name:?}: use root, publisher, reviewer, executive or node-admin")]
    UnknownRole {
        /// The name found.
        name: String,
    },
    /// No root role, so no later version could ever be signed.
    #[error("trust file has no [roles.root] with at least one key; the root role signs every version")]
    NoRoot,
    /// A threshold of 0 or above the number of keys.
    #[error("role {role} has threshold {threshold} but {keys} keys: use 1 to {keys}")]
    Threshold {
        /// The role.
        role: Role,
        /// The threshold found.
        threshold: u32,
        /// Its number of keys.
        keys: usize,
    },
    /// The same key twice in one role, which would let one holder count twice.
    #[error("role {role} lists key {key} twice; list each key once")]
    DuplicateKey {
        /// The role.
        role: Role,
        /// The key.
        key: PublicKey,
    },
    /// One key in two roles, which would let one holder satisfy a rule alone.
    #[error("key {key} is in roles {first} and {second}; give each holder one key per role")]
    KeyInTwoRoles {
        /// The key.
        key: PublicKey,
        /// The first role.
        first: Role,
        /// The second role.
        second: Role,
    },
    /// A revoked key still listed in a role.
    #[error("key {key} is revoked but still listed in role {role}; remove it from the role")]
    RevokedKeyListed {
        /// The key.
        key: PublicKey,
        /// The role.
        role: Role,
    },
    /// A rule that names no role, or a role the file does not define.
    #[error("rule {rule} {problem}")]
    Rule {
        /// The rule.
        rule: RuleKind,
        /// What is wrong.
        problem: String,
    },
    /// Version 0, or expiry not after creation.
    #[error("trust file version {version}: {problem}")]
    Header {
        /// The version found.
        version: u64,
        /// What is wrong.
        problem: String,
    },
    /// A key holder's name that breaks the grammar.
    #[error("{0}")]
    Name(String),
}

/// A trust file that does not establish or continue trust.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// Too few distinct root keys signed.
    #[error("trust file version {version} is signed by {have} of the {need} root keys that version {signed_under} requires (valid root signers: {signers}); collect signatures with `patchmesh trust sign`")]
    RootThreshold {
        /// The version being checked.
        version: u64,
        /// The version whose root role the signatures are checked against.
        signed_under: u64,
        /// Distinct valid root keys found.
        have: u32,
        /// The threshold.
        need: u32,
        /// Short ids of those keys.
        signers: String,
    },
    /// An older or equal version offered as an update.
    #[error("trust file version {offered} does not follow the current version {current}: a rollback or replay is rejected")]
    Rollback {
        /// The version held.
        current: u64,
        /// The version offered.
        offered: u64,
    },
    /// A version that skips one or more.
    #[error("trust file version {offered} skips versions after the current version {current}; apply version {} first", current + 1)]
    SkippedVersion {
        /// The version held.
        current: u64,
        /// The version offered.
        offered: u64,
    },
    /// A new version that forgets a revocation.
    #[error("trust file version {version} drops the revocation of key {key}; revocations are permanent")]
    Unrevoked {
        /// The version offered.
        version: u64,
        /// The key no longer revoked.
        key: PublicKey,
    },
    /// The policy's expiry has passed.
    #[error("trust file version {version} expired at {expires} (Unix seconds; now {now}); sign a new version with `patchmesh trust rotate`")]
    Expired {
        /// The version.
        version: u64,
        /// Its expiry, Unix seconds.
        expires: u64,
        /// The time of the check, Unix seconds.
        now: u64,
    },
    /// More signatures than any honest file carries.
    #[error("trust file version {version} carries {count} signatures, more than the maximum of {MAX_DOCUMENT_SIGNATURES}")]
    TooManySignatures {
        /// The version.
        version: u64,
        /// How many it carries.
        count: usize,
    },
}

impl Policy {
    /// Checks thresholds, role exclusivity, revocations and rules.
    pub fn validate(&self) -> Result<(), PolicyFileError> {
        if self.version == 0 {
            return Err(PolicyFileError::Header { version: 0, problem: "versions start at 1".into() });
        }
        if self.expires <= self.created {
            return Err(PolicyFileError::Header {
                version: self.version,
                problem: format!("expires at {} but was created at {} (Unix seconds); expiry must be later", self.expires, self.created),
            });
        }
        if self.roles.get(&Role::Root).is_none_or(|root| root.keys.is_empty()) {
            return Err(PolicyFileError::NoRoot);
        }
        let mut holder: BTreeMap<PublicKey, Role> = BTreeMap::new();
        for (&role, keys) in &self.roles {
            if keys.threshold == 0 || keys.threshold as usize > keys.keys.len() {
                return Err(PolicyFileError::Threshold { role, threshold: keys.threshold, keys: keys.keys.len() });
            }
            for (key, name) in &keys.keys {
                check_name("key holder name", name).map_err(PolicyFileError::Name)?;
                if self.revoked.contains(key) {
                    return Err(PolicyFileError::RevokedKeyListed { key: *key, role });
                }
                if let Some(&first) = holder.get(key) {
                    return Err(PolicyFileError::KeyInTwoRoles { key: *key, first, second: role });
                }
                holder.insert(*key, role);
            }
        }
        for kind in RuleKind::ALL {
            let roles = self.rules.get(kind);
            if roles.is_empty() {
                return Err(PolicyFileError::Rule { rule: kind, problem: "names no role; list at least one".into() });
            }
            if let Some(missing) = roles.iter().find(|role| !self.roles.contains_key(role)) {
                return Err(PolicyFileError::Rule {
                    rule: kind,
                    problem: format!("needs role {missing}, which has no keys; add [roles.{missing}] or drop it from the rule"),
                });
            }
        }
        Ok(())
    }

    /// The role `key` holds in this version; `None` for unknown and revoked keys.
    pub fn role_of(&self, key: &PublicKey) -> Option<Role> {
        if self.revoked.contains(key) {
            return None;
        }
        self.roles.iter().find(|(_, keys)| keys.keys.contains_key(key)).map(|(&role, _)| role)
    }

    /// The name `key` is listed under.
    pub fn name_of(&self, key: &PublicKey) -> Option<&str> {
        self.roles.values().find_map(|keys| keys.keys.get(key)).map(String::as_str)
    }

    /// Counts, per role of `rule`, the distinct `signers` holding that role. Returns the
    /// approvers when every role meets its threshold, else what is missing.
    pub fn evaluate(&self, rule: RuleKind, signers: &BTreeSet<PublicKey>) -> Result<BTreeMap<Role, BTreeSet<PublicKey>>, Vec<Shortfall>> {
        let mut approvers = BTreeMap::new();
        let mut missing = Vec::new();
        for &role in self.rules.get(rule) {
            let (present, need) = self.role_signers(role, signers);
            let have = len_u32(present.len());
            if have < need {
                missing.push(Shortfall { role, have, need });
            }
            approvers.insert(role, present);
        }
        if missing.is_empty() { Ok(approvers) } else { Err(missing) }
    }

    /// The distinct `signers` that hold `role` and are not revoked, and the role's
    /// threshold (1 for a role the policy does not define, which no key can meet).
    fn role_signers(&self, role: Role, signers: &BTreeSet<PublicKey>) -> (BTreeSet<PublicKey>, u32) {
        let Some(keys) = self.roles.get(&role) else {
            return (BTreeSet::new(), 1);
        };
        let present = signers
            .iter()
            .filter(|key| keys.keys.contains_key(key) && !self.revoked.contains(key))
            .copied()
            .collect();
        (present, keys.threshold)
    }

    /// The bytes root signatures cover.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut writer = CanonicalWriter::with_domain(POLICY_DOMAIN);
        writer.put_u32(POLICY_FORMAT);
        writer.put_u64(self.version);
        writer.put_u64(self.created);
        writer.put_u64(self.expires);
        writer.put_u32(len_u32(self.roles.len()));
        for (role, keys) in &self.roles {
            writer.put_u8(role.tag());
            writer.put_u32(keys.threshold);
            writer.put_u32(len_u32(keys.keys.len()));
            for (key, name) in &keys.keys {
                writer.put_fixed(key.as_bytes());
                writer.put_str(name);
            }
        }
        for kind in RuleKind::ALL {
            let roles = self.rules.get(kind);
            writer.put_u32(len_u32(roles.len()));
            for role in roles {
                writer.put_u8(role.tag());
            }
        }
        writer.put_u32(len_u32(self.revoked.len()));
        for key in &self.revoked {
            writer.put_fixed(key.as_bytes());
        }
        writer.finish()
    }

    /// The next version: the same content with `version + 1`, ready to edit and sign.
    pub fn next_version(&self, created: u64, expires: u64) -> Policy {
        Policy { version: self.version + 1, created, expires, ..self.clone() }
    }

    /// Removes `key` from its role and revokes it. Returns the role it held.
    pub fn revoke(&mut self, key: &PublicKey) -> Option<Role> {
        let role = self.role_of(key);
        for keys in self.roles.values_mut() {
            keys.keys.remove(key);
        }
        self.revoked.insert(*key);
        role
    }

    fn root_signers(&self, signers: &BTreeSet<PublicKey>) -> Result<(), (u32, u32, String)> {
        let (present, need) = self.role_signers(Role::Root, signers);
        let have = len_u32(present.len());
        if have >= need { Ok(()) } else { Err((have, need, short_ids(&present))) }
    }
}

/// A trust file: a policy and the root signatures over it. It serializes as its TOML
/// text, so a version received from a peer passes the same checks as a file.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SignedPolicy {
    /// The signed content.
    pub policy: Policy,
    /// Signatures over [`Policy::canonical_bytes`].
    pub signatures: Vec<KeySignature>,
}

#[derive(Deserialize)]
struct FormatOnly {
    format: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    format: u32,
    version: u64,
    created: u64,
    expires: u64,
    #[serde(default)]
    revoked: Vec<PublicKey>,
    rules: RulesFile,
    roles: BTreeMap<String, RoleFile>,
    #[serde(default)]
    signature: Vec<KeySignature>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    approval: Vec<String>,
    recall: Vec<String>,
    pause: Vec<String>,
    resume: Vec<String>,
    membership: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleFile {
    threshold: u32,
    keys: Vec<NamedKey>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NamedKey {
    name: String,
    key: PublicKey,
}

fn parse_role(name: &str) -> Result<Role, PolicyFileError> {
    Role::parse(name).ok_or_else(|| PolicyFileError::UnknownRole { name: name.to_string() })
}

fn parse_rule(kind: RuleKind, names: &[String]) -> Result<BTreeSet<Role>, PolicyFileError> {
    let mut roles = BTreeSet::new();
    for name in names {
        if !roles.insert(parse_role(name)?) {
            return Err(PolicyFileError::Rule { rule: kind, problem: format!("lists role {name} twice") });
        }
    }
    Ok(roles)
}

impl TryFrom<String> for SignedPolicy {
    type Error = PolicyFileError;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        SignedPolicy::from_toml(&text)
    }
}

impl From<SignedPolicy> for String {
    fn from(signed: SignedPolicy) -> String {
        signed.to_toml()
    }
}

impl SignedPolicy {
    /// An unsigned trust file for `policy`.
    pub fn unsigned(policy: Policy) -> Self {
        SignedPolicy { policy, signatures: Vec::new() }
    }

    /// Parses and validates a format 2 trust file; signatures are checked by
    /// [`TrustedPolicy::bootstrap`] and [`TrustedPolicy::update`].
    pub fn from_toml(text: &str) -> Result<Self, PolicyFileError> {
        let FormatOnly { format } = toml::from_str(text)?;
        match format {
            1 => return Err(PolicyFileError::FormatOne),
            POLICY_FORMAT => {}
            format => return Err(PolicyFileError::UnsupportedFormat { format }),
        }
        let file: PolicyFile = toml::from_str(text)?;
        let mut roles = BTreeMap::new();
        for (name, entry) in file.roles {
            let role = parse_role(&name)?;
            let mut keys = BTreeMap::new();
            for NamedKey { name, key } in entry.keys {
                if keys.insert(key, name).is_some() {
                    return Err(PolicyFileError::DuplicateKey { role, key });
                }
            }
            roles.insert(role, RoleKeys { threshold: entry.threshold, keys });
        }
        let rules = Rules {
            approval: parse_rule(RuleKind::Approval, &file.rules.approval)?,
            recall: parse_rule(RuleKind::Recall, &file.rules.recall)?,
            pause: parse_rule(RuleKind::Pause, &file.rules.pause)?,
            resume: parse_rule(RuleKind::Resume, &file.rules.resume)?,
            membership: parse_rule(RuleKind::Membership, &file.rules.membership)?,
        };
        let policy = Policy {
            version: file.version,
            created: file.created,
            expires: file.expires,
            roles,
            rules,
            revoked: file.revoked.into_iter().collect(),
        };
        debug_assert_eq!(file.format, POLICY_FORMAT);
        policy.validate()?;
        Ok(SignedPolicy { policy, signatures: file.signature })
    }

    /// The trust file text.
    pub fn to_toml(&self) -> String {
        let policy = &self.policy;
        let quoted = |items: Vec<String>| items.iter().map(|item| format!("{item:?}")).collect::<Vec<_>>().join(", ");
        let mut text = format!(
            "format = {POLICY_FORMAT}\nversion = {}\ncreated = {}\nexpires = {}\nrevoked = [{}]\n\n[rules]\n",
            policy.version,
            policy.created,
            policy.expires,
            quoted(policy.revoked.iter().map(ToString::to_string).collect())
        );
        for kind in RuleKind::ALL {
            let roles = quoted(policy.rules.get(kind).iter().map(ToString::to_string).collect());
            text.push_str(&format!("{kind} = [{roles}]\n"));
        }
        for (role, keys) in &policy.roles {
            text.push_str(&format!("\n[roles.{role}]\nthreshold = {}\nkeys = [\n", keys.threshold));
            for (key, name) in &keys.keys {
                text.push_str(&format!("    {{ name = {name:?}, key = \"{key}\" }},\n"));
            }
            text.push_str("]\n");
        }
        for entry in &self.signatures {
            text.push_str(&format!("\n[[signature]]\nkey = \"{}\"\nsignature = \"{}\"\n", entry.key, String::from(entry.signature)));
        }
        text
    }

    /// Adds or replaces `key`'s signature.
    pub fn sign(&mut self, key: &SecretKey) {
        add_signature(&mut self.signatures, key, &self.policy.canonical_bytes());
    }

    /// The distinct keys whose signature verifies.
    pub fn signers(&self) -> BTreeSet<PublicKey> {
        valid_signers(&self.policy.canonical_bytes(), &self.signatures)
    }

    fn check_signed_under(&self, under: &Policy) -> Result<(), PolicyError> {
        let count = self.signatures.len();
        if count > MAX_DOCUMENT_SIGNATURES {
            return Err(PolicyError::TooManySignatures { version: self.policy.version, count });
        }
        under.root_signers(&self.signers()).map_err(|(have, need, signers)| PolicyError::RootThreshold {
            version: self.policy.version,
            signed_under: under.version,
            have,
            need,
            signers,
        })
    }
}

/// A policy whose signatures a node has checked: the only kind governance decisions use.
///
/// A node obtains its first one with [`TrustedPolicy::bootstrap`] from the file it was
/// installed with, stores the file, and replaces it only with the result of
/// [`TrustedPolicy::update`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustedPolicy {
    signed: SignedPolicy,
}

impl TrustedPolicy {
    /// Accepts an installed trust file: it must meet its own root threshold and be
    /// unexpired. Which file to install is the operator's trust decision.
    pub fn bootstrap(signed: SignedPolicy, now: Timestamp) -> Result<Self, PolicyError> {
        signed.check_signed_under(&signed.policy)?;
        let trusted = TrustedPolicy { signed };
        trusted.check_fresh(now)?;
        Ok(trusted)
    }

    /// Accepts the next version: exactly one more than this one, signed by this version's
    /// root threshold and by its own, keeping every revocation. Expiry is not checked
    /// here, so a node that was offline can step through versions that have since
    /// expired; call [`TrustedPolicy::check_fresh`] on the result, or use
    /// [`TrustedPolicy::update_chain`].
    pub fn update(&self, next: SignedPolicy) -> Result<TrustedPolicy, PolicyError> {
        let current = self.signed.policy.version;
        let offered = next.policy.version;
        if offered <= current {
            return Err(PolicyError::Rollback { current, offered });
        }
        if offered != current + 1 {
            return Err(PolicyError::SkippedVersion { current, offered });
        }
        if let Some(key) = self.signed.policy.revoked.difference(&next.policy.revoked).next() {
            return Err(PolicyError::Unrevoked { version: offered, key: *key });
        }
        next.check_signed_under(&self.signed.policy)?;
        next.check_signed_under(&next.policy)?;
        Ok(TrustedPolicy { signed: next })
    }

    /// Applies `versions` in order and checks that the last is unexpired at `now`.
    pub fn update_chain(&self, versions: impl IntoIterator<Item = SignedPolicy>, now: Timestamp) -> Result<TrustedPolicy, PolicyError> {
        let mut trusted = self.clone();
        for next in versions {
            trusted = trusted.update(next)?;
        }
        trusted.check_fresh(now)?;
        Ok(trusted)
    }

    /// Fails once the policy has expired.
    pub fn check_fresh(&self, now: Timestamp) -> Result<(), PolicyError> {
        let policy = &self.signed.policy;
        if now.as_secs() >= policy.expires {
            return Err(PolicyError::Expired { version: policy.version, expires: policy.expires, now: now.as_secs() });
        }
        Ok(())
    }

    /// The checked policy.
    pub fn policy(&self) -> &Policy {
        &self.signed.policy
    }

    /// The file as signed, for storing and gossiping.
    pub fn signed(&self) -> &SignedPolicy {
        &self.signed
    }

    /// Builds a format 1 policy of the publisher keys, for the signature check on
    /// announcements. The publisher threshold is enforced by the approval rule.
    pub fn publisher_trust(&self) -> crate::trust::TrustPolicy {
        let publishers = self.signed.policy.roles.get(&Role::Publisher);
        crate::trust::TrustPolicy::with_publishers(
            publishers.into_iter().flat_map(|role| role.keys.iter().map(|(key, name)| (name.as_str(), *key))),
        )
    }
}
