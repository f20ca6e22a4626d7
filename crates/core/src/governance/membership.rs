//! The signed list of nodes allowed in the mesh and their sites.
//!
//! ```toml
//! format = 1
//! version = 7          # each signed change needs a higher version
//! issued = 1767225600  # Unix seconds
//!
//! [[member]]
//! peer = "12D3KooW…"   # libp2p peer id of the node's identity key
//! site = "branch-07"
//!
//! [[signature]]        # by the keys of the trust file's membership rule
//! key = "ed25519:…"
//! signature = "…"
//! ```
//!
//! A node keeps the highest version it verified and rejects any lower or equal one, so an
//! old list that still names a removed node cannot be replayed.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::policy::{RuleKind, Shortfall, TrustedPolicy};
use super::{KeySignature, MAX_DOCUMENT_SIGNATURES, add_signature, check_name, len_u32, short_ids, valid_signers};
use crate::encoding::CanonicalWriter;
use crate::keys::{PublicKey, SecretKey};
use crate::time::Timestamp;

/// The membership file format.
pub const MEMBERSHIP_FORMAT: u32 = 1;
/// Domain tag of the bytes membership signatures cover.
pub const MEMBERSHIP_DOMAIN: &str = "patchmesh/membership/1";
/// The most nodes one list may hold.
pub const MAX_MEMBERS: usize = 10_000;
const MAX_CLOCK_SKEW_SECS: u64 = 300;

/// The content of a membership list, without signatures.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Membership {
    /// Starts at 1; every signed change needs a higher one.
    pub version: u64,
    /// When this version was made, Unix seconds.
    pub issued: u64,
    /// Peer id to site.
    pub members: BTreeMap<String, String>,
}

/// A membership list and the signatures collected on it. It serializes as its TOML
/// form, so a list decoded from a peer passes the same checks as a file.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SignedMembership {
    /// The signed content.
    pub membership: Membership,
    /// Signatures over [`Membership::canonical_bytes`].
    pub signatures: Vec<KeySignature>,
}

/// A membership file or edit that is not well formed.
#[derive(Debug, thiserror::Error)]
pub enum MembershipFileError {
    /// TOML syntax or shape; the message carries line and column.
    #[error("invalid membership file: {0}")]
    Toml(#[from] toml::de::Error),
    /// Another format.
    #[error("unsupported membership file format {format}: this release reads format {MEMBERSHIP_FORMAT}")]
    UnsupportedFormat {
        /// The format found.
        format: u32,
    },
    /// A peer id listed twice.
    #[error("peer {peer} is already a member (site {site}); remove it first to move it")]
    DuplicatePeer {
        /// The peer id.
        peer: String,
        /// Its current site.
        site: String,
    },
    /// Removing a peer that is not listed.
    #[error("peer {peer} is not a member; `patchmesh members show` lists the members")]
    NotMember {
        /// The peer id.
        peer: String,
    },
    /// A malformed peer id or site, or too many members.
    #[error("{0}")]
    Invalid(String),
}

/// A membership list that does not take effect.
#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    /// The signers do not meet the membership rule.
    #[error("membership version {version} is not authorised: it needs {} (valid signers: {signers}); sign it with `patchmesh members sign`", shortfall.iter().map(ToString::to_string).collect::<Vec<_>>().join(" and "))]
    Unauthorised {
        /// The list's version.
        version: u64,
        /// What is missing.
        shortfall: Vec<Shortfall>,
        /// Short ids of the keys whose signature verified.
        signers: String,
    },
    /// A version not above the one held.
    #[error("membership version {offered} is not newer than the version {current} held: a rollback or replay is rejected")]
    Rollback {
        /// The version held.
        current: u64,
        /// The version offered.
        offered: u64,
    },
    /// The policy expired.
    #[error("trust file version {version} expired at {expires} (Unix seconds); no membership change is accepted under it")]
    PolicyExpired {
        /// The policy version.
        version: u64,
        /// Its expiry.
        expires: u64,
    },
    /// Issued later than the node's clock allows.
    #[error("membership version {version} is dated {issued}, in the future (now {now}, Unix seconds); check the signer's clock")]
    FromFuture {
        /// The list's version.
        version: u64,
        /// Its `issued` time.
        issued: u64,
        /// The time of the check.
        now: u64,
    },
    /// More signatures than allowed.
    #[error("membership version {version} carries {count} signatures, more than the maximum of {MAX_DOCUMENT_SIGNATURES}")]
    TooManySignatures {
        /// The list's version.
        version: u64,
        /// How many.
        count: usize,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct MembershipFile {
    format: u32,
    version: u64,
    issued: u64,
    #[serde(default)]
    member: Vec<MemberEntry>,
    #[serde(default)]
    signature: Vec<KeySignature>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct MemberEntry {
    peer: String,
    site: String,
}

/// Checks a libp2p peer id as text: 1 to 128 ASCII letters and digits (base58).
fn check_peer(peer: &str) -> Result<(), MembershipFileError> {
    if peer.is_empty() || peer.len() > 128 || !peer.bytes().all(|byte| byte.is_ascii_alphanumeric()) {
        return Err(MembershipFileError::Invalid(format!(
            "invalid peer id {peer:?}: give the node's peer id as `patchmesh keygen` prints it (base58, such as 12D3KooW…)"
        )));
    }
    Ok(())
}

impl Membership {
    /// Adds `peer` at `site`.
    pub fn add(&mut self, peer: &str, site: &str) -> Result<(), MembershipFileError> {
        check_peer(peer)?;
        check_name("site", site).map_err(MembershipFileError::Invalid)?;
        if let Some(current) = self.members.get(peer) {
            return Err(MembershipFileError::DuplicatePeer { peer: peer.to_string(), site: current.clone() });
        }
        if self.members.len() >= MAX_MEMBERS {
            return Err(MembershipFileError::Invalid(format!("the list already holds the maximum of {MAX_MEMBERS} members")));
        }
        self.members.insert(peer.to_string(), site.to_string());
        Ok(())
    }

    /// Removes `peer` and returns its site.
    pub fn remove(&mut self, peer: &str) -> Result<String, MembershipFileError> {
        self.members.remove(peer).ok_or_else(|| MembershipFileError::NotMember { peer: peer.to_string() })
    }

    /// The bytes signatures cover.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut writer = CanonicalWriter::with_domain(MEMBERSHIP_DOMAIN);
        writer.put_u64(self.version);
        writer.put_u64(self.issued);
        writer.put_u32(len_u32(self.members.len()));
        for (peer, site) in &self.members {
            writer.put_str(peer);
            writer.put_str(site);
        }
        writer.finish()
    }
}

impl TryFrom<String> for SignedMembership {
    type Error = MembershipFileError;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        SignedMembership::from_toml(&text)
    }
}

impl From<SignedMembership> for String {
    fn from(signed: SignedMembership) -> String {
        signed.to_toml()
    }
}

impl SignedMembership {
    /// Parses the TOML form and checks every entry.
    pub fn from_toml(text: &str) -> Result<Self, MembershipFileError> {
        let file: MembershipFile = toml::from_str(text)?;
        if file.format != MEMBERSHIP_FORMAT {
            return Err(MembershipFileError::UnsupportedFormat { format: file.format });
        }
        let mut membership = Membership { version: file.version, issued: file.issued, members: BTreeMap::new() };
        for entry in file.member {
            membership.add(&entry.peer, &entry.site)?;
        }
        Ok(SignedMembership { membership, signatures: file.signature })
    }

    /// The TOML form.
    pub fn to_toml(&self) -> String {
        let file = MembershipFile {
            format: MEMBERSHIP_FORMAT,
            version: self.membership.version,
            issued: self.membership.issued,
            member: self
                .membership
                .members
                .iter()
                .map(|(peer, site)| MemberEntry { peer: peer.clone(), site: site.clone() })
                .collect(),
            signature: self.signatures.clone(),
        };
        // Strings, integers and arrays of tables always serialise.
        toml::to_string(&file).unwrap_or_default()
    }

    /// Adds or replaces `key`'s signature.
    pub fn sign(&mut self, key: &SecretKey) {
        let message = self.membership.canonical_bytes();
        add_signature(&mut self.signatures, key, &message);
    }

    /// The distinct keys whose signature verifies.
    pub fn signers(&self) -> BTreeSet<PublicKey> {
        valid_signers(&self.membership.canonical_bytes(), &self.signatures)
    }
}

/// A membership list whose signatures met the membership rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedMembership(SignedMembership);

impl VerifiedMembership {
    /// Checks `signed` against the membership rule of `policy` at `now`. Use this for the
    /// first list a node sees, and [`VerifiedMembership::update`] afterwards.
    pub fn verify(policy: &TrustedPolicy, signed: SignedMembership, now: Timestamp) -> Result<Self, MembershipError> {
        let version = signed.membership.version;
        if policy.check_fresh(now).is_err() {
            let policy = policy.policy();
            return Err(MembershipError::PolicyExpired { version: policy.version, expires: policy.expires });
        }
        let count = signed.signatures.len();
        if count > MAX_DOCUMENT_SIGNATURES {
            return Err(MembershipError::TooManySignatures { version, count });
        }
        let issued = signed.membership.issued;
        if issued > now.as_secs().saturating_add(MAX_CLOCK_SKEW_SECS) {
            return Err(MembershipError::FromFuture { version, issued, now: now.as_secs() });
        }
        let signers = signed.signers();
        policy
            .policy()
            .evaluate(RuleKind::Membership, &signers)
            .map_err(|shortfall| MembershipError::Unauthorised { version, shortfall, signers: short_ids(&signers) })?;
        Ok(VerifiedMembership(signed))
    }

    /// Accepts `next` only if its version is higher and it verifies.
    pub fn update(&self, policy: &TrustedPolicy, next: SignedMembership, now: Timestamp) -> Result<Self, MembershipError> {
        let current = self.version();
        let offered = next.membership.version;
        if offered <= current {
            return Err(MembershipError::Rollback { current, offered });
        }
        VerifiedMembership::verify(policy, next, now)
    }

    /// The list's version.
    pub fn version(&self) -> u64 {
        self.0.membership.version
    }

    /// The site of `peer`, if it is a member.
    pub fn site_of(&self, peer: &str) -> Option<&str> {
        self.0.membership.members.get(peer).map(String::as_str)
    }

    /// The list as signed, for storing and gossiping.
    pub fn signed(&self) -> &SignedMembership {
        &self.0
    }
}
