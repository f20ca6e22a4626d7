//! Identifiers: peers, patches and chunks.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Equality and order of a shared string id: those of its text, with a pointer check
/// first. Clones share one allocation, and maps keyed by ids compare them on every
/// lookup, so equal ids mostly compare without reading the text.
macro_rules! shared_str_order {
    ($id:ident) => {
        impl PartialEq for $id {
            fn eq(&self, other: &Self) -> bool {
                Arc::ptr_eq(&self.0, &other.0) || self.0 == other.0
            }
        }

        impl Eq for $id {}

        impl PartialOrd for $id {
            fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
                Some(self.cmp(other))
            }
        }

        impl Ord for $id {
            fn cmp(&self, other: &Self) -> std::cmp::Ordering {
                if Arc::ptr_eq(&self.0, &other.0) { std::cmp::Ordering::Equal } else { self.0.cmp(&other.0) }
            }
        }
    };
}

/// A peer as the driver names it: the libp2p peer id in base58 for the daemon, a node
/// name in the simulator. The core compares and prints it and gives it no other meaning.
///
/// Peers are ordered by a 64-bit hash of the name, then by the name. Nodes need only an
/// order they all share (a site splits its chunks by it), not the alphabetical one.
/// Maps keyed by peer are searched on every message, and comparing two numbers held in
/// the id is cheaper than reading two names from memory. Names would also compare
/// slowly, because libp2p ids all start with the same characters.
#[derive(Clone)]
pub struct PeerId {
    hash: u64,
    name: Arc<str>,
}

impl PeerId {
    /// Wraps a driver's name for a peer.
    pub fn new(name: impl AsRef<str>) -> Self {
        let name = name.as_ref();
        PeerId { hash: fnv1a(name.as_bytes()), name: Arc::from(name) }
    }

    /// The driver's name for this peer.
    pub fn as_str(&self) -> &str {
        &self.name
    }
}

/// Hashes `bytes` with 64-bit FNV-1a, a fixed function, so every node and platform
/// orders peers alike.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3))
}

impl PartialEq for PeerId {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash && (Arc::ptr_eq(&self.name, &other.name) || self.name == other.name)
    }
}

impl Eq for PeerId {}

impl PartialOrd for PeerId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for PeerId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.hash.cmp(&other.hash).then_with(|| {
            if Arc::ptr_eq(&self.name, &other.name) { std::cmp::Ordering::Equal } else { self.name.cmp(&other.name) }
        })
    }
}

impl std::hash::Hash for PeerId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // Equal names have equal hashes, so this agrees with `Eq`.
        state.write_u64(self.hash);
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerId({})", self.name)
    }
}

/// The maximum length of a patch id, in bytes.
pub const PATCH_ID_MAX_LEN: usize = 128;

/// The name of a patch series, such as `KB5034441` or `openssl-3.0.13`.
///
/// Grammar: 1 to 128 ASCII characters from `A-Z a-z 0-9 . _ -`, starting with a letter or
/// digit. Patch ids become directory names in every node's data dir, so the grammar
/// leaves no room for path separators, `..` or characters a file system treats specially.
///
/// Shared, not owned: every message, request and chunk id carries one, so a clone is a
/// reference count, not an allocation.
#[derive(Clone, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PatchId(Arc<str>);

shared_str_order!(PatchId);

/// A patch id that does not follow the grammar.
#[derive(Debug, thiserror::Error)]
#[error(
    "invalid patch id {value:?}: use 1 to {PATCH_ID_MAX_LEN} characters from A-Z a-z 0-9 . _ -, starting with a letter or digit"
)]
pub struct InvalidPatchId {
    /// The rejected value.
    pub value: String,
}

impl PatchId {
    /// Validates `value` against the patch id grammar.
    pub fn new(value: impl Into<String>) -> Result<Self, InvalidPatchId> {
        let value = value.into();
        let valid_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        let starts_well = value.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
        if starts_well && value.len() <= PATCH_ID_MAX_LEN && value.chars().all(valid_char) {
            Ok(PatchId(Arc::from(value)))
        } else {
            Err(InvalidPatchId { value })
        }
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for PatchId {
    type Error = InvalidPatchId;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        PatchId::new(value)
    }
}

impl From<PatchId> for String {
    fn from(id: PatchId) -> String {
        id.0.to_string()
    }
}

impl fmt::Display for PatchId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for PatchId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PatchId({})", self.0)
    }
}

/// One version of a patch series: the unit that is signed, fetched and stored.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub struct PatchKey {
    /// The patch series.
    pub id: PatchId,
    /// The version within the series; a higher version supersedes a lower one.
    pub version: u64,
}

impl fmt::Display for PatchKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.id, self.version)
    }
}

/// One chunk of one patch version.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub struct ChunkId {
    /// The patch version the chunk belongs to.
    pub patch: PatchKey,
    /// The chunk's position in the patch, from 0.
    pub index: u32,
}

impl fmt::Display for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.patch, self.index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_id_grammar() {
        let long = "a".repeat(PATCH_ID_MAX_LEN);
        let too_long = "a".repeat(PATCH_ID_MAX_LEN + 1);
        let cases: &[(&str, bool)] = &[
            ("KB5034441", true),
            ("openssl-3.0.13", true),
            ("a", true),
            (&long, true),
            ("", false),
            (&too_long, false),
            ("-lead", false),
            (".hidden", false),
            ("..", false),
            ("a/b", false),
            ("a\\b", false),
            ("a b", false),
            ("a\0b", false),
            ("é", false),
        ];
        for (value, valid) in cases {
            assert_eq!(PatchId::new(*value).is_ok(), *valid, "patch id {value:?}");
        }
    }

    #[test]
    fn peer_ids_with_one_name_are_equal() {
        let (a, b) = (PeerId::new("12D3KooWsite-a"), PeerId::new("12D3KooWsite-a"));
        assert_eq!(a, b, "two allocations of one name differ");
        assert_eq!(a.cmp(&b), std::cmp::Ordering::Equal);
    }

    #[test]
    fn peer_order_is_total_and_fixed() {
        let names = ["n1", "n2", "n10", "site-001-n0", "12D3KooWA", "12D3KooWB", ""];
        let ids: Vec<PeerId> = names.iter().map(PeerId::new).collect();
        for a in &ids {
            for b in &ids {
                assert_eq!(a.cmp(b), b.cmp(a).reverse(), "{a} and {b} compare both ways");
                assert_eq!(a.cmp(b) == std::cmp::Ordering::Equal, a.as_str() == b.as_str(), "{a} and {b}");
            }
        }
        // Every node must sort peers alike, on every platform: the hash is FNV-1a.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
