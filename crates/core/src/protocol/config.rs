//! Settings of one node's protocol state machine.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::keys::SecretKey;
use crate::wire::Role;

/// Which peers a node fetches chunks from.
///
/// The simulator compares these policies over one network; a daemon normally runs
/// [`SourcePolicy::Mesh`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourcePolicy {
    /// Any peer that holds the chunk: peers at the node's own site first, then other
    /// sites, then the origin, which is asked only for chunks no connected peer holds.
    #[default]
    Mesh,
    /// Only the origin, as with one central download server.
    Central,
    /// The site's designated cache node fetches from the origin; every other node fetches
    /// only from its site's cache.
    OfficeCache,
}

/// Settings of a [`Node`](super::Node). Build with [`NodeConfig::new`] and adjust the
/// public fields; [`NodeConfig::validate`] checks them.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// The node's site (office) name. Nodes prefer peers at the same site.
    pub site: String,
    /// Origin or office node.
    pub role: Role,
    /// Whether this node is its site's cache under [`SourcePolicy::OfficeCache`].
    /// Default: false.
    pub site_cache: bool,
    /// Where chunks come from. Default: [`SourcePolicy::Mesh`].
    pub source_policy: SourcePolicy,
    /// Seed of the node's random choices (tie-breaks between equally rare chunks and
    /// equally good peers). Default: 0; drivers pass a per-node value.
    pub seed: u64,
    /// Chunk requests in flight to one peer. Default: 4.
    pub max_requests_per_peer: u32,
    /// Chunk requests in flight to the origin from this node. Default: 2. Keeping this
    /// low leaves the origin's uplink for chunks nobody else holds yet.
    pub max_requests_to_origin: u32,
    /// Chunk requests in flight in total. Default: 16.
    pub max_requests_total: u32,
    /// The maximum time any chunk or body request may take before it is sent elsewhere.
    /// Default: 60 s. Drivers set their transport's request timeout to at least this.
    pub request_timeout: Duration,
    /// The slowest transfer rate a peer may serve a chunk at, in bytes per second. A
    /// chunk request times out after 10 s plus its length at this rate (but never after
    /// `request_timeout`), so a peer that slows to a trickle or freezes loses the chunk
    /// to another source. Default: 16 KiB/s, so a 1 MiB chunk may take 74 s at most.
    pub min_request_rate: u64,
    /// Invalid chunks a peer may send before the node disconnects and bans it.
    /// Default: 3.
    pub max_strikes: u32,
    /// On the origin: its egress budget per patch version, in copies of the patch
    /// (chunk payload bytes divided by the patch size). Past it the origin serves only
    /// chunks no live peer holds. Default: `None`, no budget.
    pub origin_budget: Option<f64>,
    /// How far in the future a manifest's creation time may lie before the node suspects
    /// a clock error and ignores the manifest. Default: 10 minutes.
    pub max_clock_skew: Duration,
    /// The node's identity key, the one behind its libp2p peer id. With it the node signs
    /// and floods status reports, which rollout waves count. Default: `None`: the node
    /// sends no report of its own, though it still takes, forwards and counts others'.
    pub identity: Option<Arc<SecretKey>>,
    /// The shortest time between two `Have` flushes. A chunk verified sooner after the
    /// last flush waits for the next one, so a node storing many chunks a second sends
    /// each peer one `Have` listing several instead of one per chunk. The first chunk
    /// after a quiet spell goes out at once. Default: zero, a flush after every input.
    ///
    /// An interval trades message count against how soon peers learn of a chunk. Where
    /// a whole patch arrives within one interval, peers learn of none of it in time and
    /// fetch it from the origin too: with 100 ms, 12 offices on 10 MB/s links made the
    /// origin serve 4.5 copies of a 256 KiB patch instead of under 2.
    pub have_interval: Duration,
}

/// A setting outside its allowed range.
#[derive(Debug, thiserror::Error)]
#[error("invalid node setting {setting} = {value}: {fix}")]
pub struct ConfigError {
    /// The setting's name.
    pub setting: &'static str,
    /// The rejected value.
    pub value: String,
    /// What to use instead.
    pub fix: &'static str,
}

/// The longest [`NodeConfig::have_interval`] accepted.
const MAX_HAVE_INTERVAL: Duration = Duration::from_secs(10);

/// The time a chunk request gets before the rate check applies.
const SLOW_PEER_ALLOWANCE: Duration = Duration::from_secs(10);

impl NodeConfig {
    /// How long a request for `len` bytes may take: 10 s plus `len` at
    /// `min_request_rate`, capped at `request_timeout`.
    pub fn request_deadline(&self, len: u64) -> Duration {
        let transfer = Duration::from_secs_f64(len as f64 / self.min_request_rate.max(1) as f64);
        (SLOW_PEER_ALLOWANCE + transfer).min(self.request_timeout)
    }

    /// Defaults for a node at `site` with `role`.
    pub fn new(site: impl Into<String>, role: Role) -> Self {
        NodeConfig {
            site: site.into(),
            role,
            site_cache: false,
            source_policy: SourcePolicy::Mesh,
            seed: 0,
            max_requests_per_peer: 4,
            max_requests_to_origin: 2,
            max_requests_total: 16,
            request_timeout: Duration::from_secs(60),
            min_request_rate: 16 * 1024,
            max_strikes: 3,
            max_clock_skew: Duration::from_secs(600),
            origin_budget: None,
            identity: None,
            have_interval: Duration::ZERO,
        }
    }

    /// Checks every setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.site.is_empty() || self.site.len() > 128 || self.site.chars().any(char::is_control) {
            return Err(ConfigError {
                setting: "site",
                value: format!("{:?}", self.site),
                fix: "use 1 to 128 printable characters",
            });
        }
        let positive = [
            ("max_requests_per_peer", self.max_requests_per_peer),
            ("max_requests_to_origin", self.max_requests_to_origin),
            ("max_requests_total", self.max_requests_total),
            ("max_strikes", self.max_strikes),
        ];
        for (setting, value) in positive {
            if value == 0 {
                return Err(ConfigError { setting, value: "0".into(), fix: "use a value of at least 1" });
            }
        }
        if self.min_request_rate == 0 {
            return Err(ConfigError { setting: "min_request_rate", value: "0".into(), fix: "use at least 1 byte per second" });
        }
        if let Some(copies) = self.origin_budget {
            if !copies.is_finite() || copies <= 0.0 {
                return Err(ConfigError {
                    setting: "origin_budget",
                    value: copies.to_string(),
                    fix: "use a positive number of patch copies, such as 1.0",
                });
            }
            if self.role != Role::Origin {
                return Err(ConfigError {
                    setting: "origin_budget",
                    value: copies.to_string(),
                    fix: "set an egress budget on the origin only",
                });
            }
        }
        if self.have_interval > MAX_HAVE_INTERVAL {
            return Err(ConfigError {
                setting: "have_interval",
                value: format!("{:?}", self.have_interval),
                fix: "use at most 10 seconds, or peers learn of new chunks too late",
            });
        }
        if self.request_timeout < Duration::from_secs(1) {
            return Err(ConfigError {
                setting: "request_timeout",
                value: format!("{:?}", self.request_timeout),
                fix: "use at least 1 second",
            });
        }
        Ok(())
    }
}
