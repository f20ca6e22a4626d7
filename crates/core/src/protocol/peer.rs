//! What a node tracks about each connected peer.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::bitfield::Bitfield;
use crate::ids::PatchKey;
use crate::time::Timestamp;
use crate::wire::{Hello, Role};

/// The most patches a node tracks per peer before it has their manifests, so a peer
/// cannot grow our memory by advertising made-up patches.
pub(crate) const MAX_UNKNOWN_PATCHES_PER_PEER: usize = 64;

/// The most chunk requests in flight to one peer however large its bandwidth-delay
/// product, so one fast peer cannot take every request slot.
pub(crate) const MAX_PIPELINE: u32 = 32;

#[derive(Debug, Default)]
pub(crate) struct Peer {
    /// `None` until the peer's [`Hello`] arrives; no chunk is requested before that.
    pub(crate) hello: Option<Hello>,
    /// Whether the peer's site, as its `Hello` or the membership list gives it, is this
    /// node's. Kept with `hello`, since schedulers test it for every peer on every pick.
    pub(crate) same_site: bool,
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
    /// Estimated rate at which this peer delivers chunks to this node, in bytes per
    /// second; `None` until a chunk from it arrived.
    pub(crate) rate: Option<f64>,
    /// Round-trip time to the peer as the driver measured it.
    pub(crate) rtt: Option<Duration>,
}

impl Peer {
    pub(crate) fn is_origin(&self) -> bool {
        self.hello.as_ref().is_some_and(|hello| hello.role == Role::Origin)
    }

    /// Folds one delivered chunk into the rate estimate: `len` bytes that took
    /// `elapsed` while `concurrent` requests (this one included) shared the peer's path.
    ///
    /// Requests to one peer run side by side, so one request's own throughput is about a
    /// `concurrent`-th of the path's; scaling by it estimates the path. The average is
    /// exponentially weighted, so the estimate follows a changing path within a few
    /// chunks.
    pub(crate) fn record_delivery(&mut self, len: u64, elapsed: Duration, concurrent: u32) {
        let seconds = elapsed.as_secs_f64().max(1e-3);
        let sample = len as f64 * f64::from(concurrent.max(1)) / seconds;
        self.rate = Some(match self.rate {
            Some(rate) => 0.7 * rate + 0.3 * sample,
            None => sample,
        });
    }

    /// How many chunk requests of `chunk_len` bytes this peer may have in flight: at
    /// least `floor`, and enough to keep its bandwidth-delay product covered, up to
    /// [`MAX_PIPELINE`].
    pub(crate) fn pipeline_depth(&self, floor: u32, chunk_len: u32) -> u32 {
        let (Some(rate), Some(rtt)) = (self.rate, self.rtt) else {
            return floor;
        };
        let bdp = rate * rtt.as_secs_f64();
        // One request beyond the bandwidth-delay product keeps the pipe full while the
        // next response starts.
        let depth = (bdp / f64::from(chunk_len.max(1))).ceil() as u32 + 1;
        depth.clamp(floor, MAX_PIPELINE.max(floor))
    }

    /// Seconds this peer should take to deliver `len` bytes while `concurrent` requests
    /// share its path; `None` until its rate is measured.
    pub(crate) fn predicted_seconds(&self, len: u32, concurrent: u32) -> Option<f64> {
        let rate = self.rate?;
        let rtt = self.rtt.map_or(0.0, |rtt| rtt.as_secs_f64());
        Some(f64::from(len) * f64::from(concurrent.max(1)) / rate.max(1.0) + rtt)
    }

    pub(crate) fn is_site_cache(&self) -> bool {
        self.hello.as_ref().is_some_and(|hello| hello.site_cache)
    }
}
