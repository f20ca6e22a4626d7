//! Messages between nodes, shared by every driver.
//!
//! Three channels carry them, each versioned so a later release can change one without
//! breaking a mixed mesh:
//!
//! | channel | carries | direction |
//! |---|---|---|
//! | gossip topic [`ANNOUNCE_TOPIC`] | [`Announcement`] | flooded, validated before forwarding |
//! | protocol [`SYNC_PROTOCOL`] | [`Message`] | one-way to one peer, answered by an empty ack |
//! | protocol [`FETCH_PROTOCOL`] | [`FetchRequest`] → [`FetchResponse`] | request and response |
//!
//! The daemon encodes each as CBOR. Byte strings use `serde_bytes`, which CBOR encodes as
//! one byte string instead of an array of integers: less than half the size and more than
//! twice the throughput on loopback.

use serde::{Deserialize, Serialize};

use crate::bitfield::Bitfield;
use crate::governance::{Approval, RolloutControl, SignedMembership, SignedPolicy, SignedStatusReport};
use crate::ids::PatchKey;
use crate::manifest::{Announcement, MAX_BODY_BYTES, MAX_CHUNK_SIZE};

/// The gossipsub topic for manifest announcements.
pub const ANNOUNCE_TOPIC: &str = "patchmesh/announce/1";
/// The libp2p protocol id for one-way messages.
pub const SYNC_PROTOCOL: &str = "/patchmesh/sync/1";
/// The libp2p protocol id for fetching manifest bodies and chunks.
pub const FETCH_PROTOCOL: &str = "/patchmesh/chunks/1";
/// The version carried in [`Hello`].
pub const WIRE_VERSION: u32 = 1;

/// The largest [`Message`] a node accepts, in bytes: a bitfield for the maximum chunk
/// count is 128 KiB, and a `Have` list is bounded the same way.
pub const MAX_MESSAGE_BYTES: u64 = 1024 * 1024;
/// The largest [`FetchRequest`] a node accepts, in bytes.
pub const MAX_FETCH_REQUEST_BYTES: u64 = 4 * 1024;
/// The largest [`FetchResponse`] a node accepts, in bytes: the largest chunk or body plus
/// framing.
pub const MAX_FETCH_RESPONSE_BYTES: u64 = (if MAX_BODY_BYTES > MAX_CHUNK_SIZE { MAX_BODY_BYTES } else { MAX_CHUNK_SIZE }) as u64 + 4096;

/// Whether a node starts a rollout or receives one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// The head office's node, where patches are published; it starts with every chunk.
    Origin,
    /// A branch office's node.
    Office,
}

/// The first message on every connection, in both directions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The sender's [`WIRE_VERSION`].
    pub version: u32,
    /// The sender's site (office) name.
    pub site: String,
    /// The sender's role.
    pub role: Role,
    /// Whether the sender is its site's designated cache, which matters only under
    /// [`SourcePolicy::OfficeCache`](crate::protocol::SourcePolicy::OfficeCache).
    pub site_cache: bool,
}

/// A one-way message on [`SYNC_PROTOCOL`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// Who the sender is.
    Hello(Hello),
    /// A manifest the sender holds, sent directly to peers that connect after it was
    /// gossiped.
    Announce(Announcement),
    /// Every chunk of `patch` the sender holds.
    Bitfield {
        /// The patch version.
        patch: PatchKey,
        /// The chunks held.
        bits: Bitfield,
    },
    /// Chunks of `patch` the sender has verified since its last message, less those the
    /// receiver advertised itself (an origin hears of all).
    Have {
        /// The patch version.
        patch: PatchKey,
        /// The new chunk indices.
        indices: Vec<u32>,
    },
    /// Approvals the sender holds and counts, at most
    /// [`MAX_APPROVALS`](crate::governance::MAX_APPROVALS) per message. Sent on connect
    /// after the announcements, and forwarded to every peer when new.
    Approvals(Vec<Approval>),
    /// A verified recall, pause or resume order, forwarded to every peer when new.
    Control(RolloutControl),
    /// The sender's latest verified membership list, sent on connect and forwarded to
    /// every peer when it is newer than the receiver's.
    Membership(SignedMembership),
    /// Consecutive trust file versions (format 2), oldest first, ending with the one the
    /// sender enforces; at most
    /// [`MAX_TRUST_CHAIN`](crate::protocol::MAX_TRUST_CHAIN). Sent on connect and
    /// forwarded to every peer when the sender moves to a newer version, so a node a few
    /// versions behind can step through each one.
    Trust(Vec<SignedPolicy>),
    /// A signed status report, the sender's own or a newer one it forwards. Added after
    /// the first release: a node that does not know it fails to decode the message and
    /// drops it, which costs it the mesh-wide view and nothing else.
    Status(SignedStatusReport),
}

/// A request on [`FETCH_PROTOCOL`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FetchRequest {
    /// The canonical manifest body of `patch`.
    Body {
        /// The patch version.
        patch: PatchKey,
    },
    /// The bytes of one chunk.
    Chunk {
        /// The patch version.
        patch: PatchKey,
        /// The chunk index.
        index: u32,
    },
}

/// Why a node does not serve a request it understood.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeclineReason {
    /// The node does not hold what was asked.
    NotFound,
    /// The node serves too many requests already.
    Busy,
    /// The origin has spent its egress budget and peers hold the chunk: ask them.
    OriginBudget,
}

/// A response on [`FETCH_PROTOCOL`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FetchResponse {
    /// The canonical manifest body.
    Body(#[serde(with = "serde_bytes")] Vec<u8>),
    /// The chunk bytes.
    Chunk(#[serde(with = "serde_bytes")] Vec<u8>),
    /// The request was understood and not served.
    Declined(DeclineReason),
}
