//! The sans-IO protocol core of patchmesh.
//!
//! This crate holds everything that decides what a patchmesh node does, and nothing that
//! performs input or output on a network: no sockets, no async runtime, no libp2p. The
//! office-node daemon and the rollout simulator both drive the same [`Node`] state
//! machine, which is why a simulated rollout predicts a real one.
//!
//! # Pieces
//!
//! - [`manifest`]: the signed patch manifest, its canonical encoding and the per-chunk
//!   BLAKE3 hash list that verifies every byte.
//! - [`keys`] and [`trust`]: ed25519 keys, their file format and the trust file that says
//!   which keys may publish.
//! - [`governance`]: the trust policy (roles, thresholds, rotation), approvals, recall and
//!   pause orders, the membership list, rollout waves and audit records.
//! - [`wire`]: the messages nodes exchange, shared by every driver.
//! - [`Node`]: the mesh protocol state machine.
//!
//! # Driving a node
//!
//! A driver owns the sockets, the clock and the chunk store. It feeds inputs through the
//! `handle_*` methods, each taking `now`, then drains outputs until they are empty:
//!
//! 1. [`Node::poll_action`] until it returns `None`, performing each [`Action`] (send a
//!    message, request or serve a chunk, persist a manifest, assemble a patch).
//! 2. [`Node::poll_event`] for what an operator wants to hear about ([`Event`]).
//! 3. [`Node::poll_timeout`] for the next instant at which [`Node::handle_timeout`] must
//!    be called, even when nothing else happens.
//!
//! Given the same sequence of inputs, the same `now` values and the same RNG seed, a node
//! emits the same outputs: the core never reads a clock or an entropy source itself.
//!
//! # What the core trusts its driver to do
//!
//! Chunk bytes never pass through the core. A driver reports a chunk as
//! [`ChunkOutcome::Stored`] only after [`Manifest::verify_chunk`] accepted it and the store
//! made it durable; the simulator, which moves no bytes, reports outcomes it models.

pub mod bitfield;
pub mod caps;
pub mod encoding;
pub mod governance;
pub mod ids;
pub mod keys;
pub mod manifest;
pub mod protocol;
pub mod rng;
pub mod time;
pub mod trust;
pub mod units;
pub mod wire;

pub use bitfield::Bitfield;
pub use ids::{ChunkId, PatchId, PatchKey, PeerId};
pub use keys::{PublicKey, SecretKey};
pub use manifest::{Announcement, Manifest, ManifestBody, ManifestHeader};
pub use protocol::{Action, BodyOutcome, ChunkOutcome, Event, InboundId, Node, NodeConfig, RequestId, Role, SourcePolicy, Validation};
pub use time::Timestamp;
pub use trust::TrustPolicy;
