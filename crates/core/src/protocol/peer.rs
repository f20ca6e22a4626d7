//! What a node tracks about each connected peer.

use std::collections::{BTreeMap, BTreeSet};

use crate::bitfield::Bitfield;
use crate::ids::PatchKey;
use crate::time::Timestamp;
use crate::wire::{Hello, Role};

/// The most patches a node tracks per peer before it has their manifests, so a peer
/// cannot grow our memory by advertising made-up patches.
pub(crate) const MAX_UNKNOWN_PATCHES_PER_PEER: usize = 64;

#[derive(Debug, Default)]
pub(crate) struct Peer {
    /// `None` until the peer's [`Hello`] arrives; no chunk is requested before that.
    pub(crate) hello: Option<Hello>,
    /// Chunks the peer holds, per patch, as it advertised them.
    pub(crate) have: BTreeMap<PatchKey, Bitfield>,
    /// Patches the peer is known to hold a manifest for.
    pub(crate) manifests: BTreeSet<PatchKey>,
    /// Chunk requests in flight to this peer.
    pub(crate) in_flight: u32,
    /// Invalid chunks received from this peer.
    pub(crate) strikes: u32,
    /// Chunk requests to this peer that timed out since its last good chunk.
    pub(crate) timeouts: u32,
    /// No chunk requests go to this peer before this instant, after timeouts.
    pub(crate) cooldown_until: Option<Timestamp>,
    /// Whether `cooldown_until` lies in the future, as of the last input.
    pub(crate) cooling_down: bool,
    /// Chunk payload bytes received from this peer.
    pub(crate) bytes_received: u64,
    /// Chunk payload bytes served to this peer.
    pub(crate) bytes_sent: u64,
}

impl Peer {
    pub(crate) fn is_origin(&self) -> bool {
        self.hello.as_ref().is_some_and(|hello| hello.role == Role::Origin)
    }

    pub(crate) fn is_site_cache(&self) -> bool {
        self.hello.as_ref().is_some_and(|hello| hello.site_cache)
    }
}
