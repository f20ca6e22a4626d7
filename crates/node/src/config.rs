//! The daemon's configuration file, `node.toml`.
//!
//! ```toml
//! site = "branch-07"                    # this office's name
//! data_dir = "/var/lib/patchmesh"       # chunk store, assembled patches, control socket
//! identity_key = "/etc/patchmesh/node.key"   # ed25519 secret key file (mode 0600)
//! trust_file = "/etc/patchmesh/trust.toml"   # which keys may publish
//! listen = ["/ip4/0.0.0.0/tcp/7400"]    # libp2p multiaddrs
//! bootstrap = ["/ip4/10.0.0.1/tcp/7400/p2p/12D3Koo..."]  # peers to dial at start
//! origin = false                        # true on the head office's publishing node
//! idle_connection_timeout = "5m"        # keep idle connections this long
//! control_socket = "/run/patchmesh/control.sock"  # default: <data_dir>/control.sock
//! disk_budget = "20GiB"                 # remove superseded patch versions past this
//! max_strikes = 3                       # invalid chunks before a peer is banned
//! membership_file = "/etc/patchmesh/members.toml"  # admit only these peers (format 2 trust)
//! origin_budget = 1.0                   # origin only: egress per patch version, in copies
//!
//! [caps]                                # bandwidth caps, paced on this node's sockets
//! time_zone = "Europe/London"           # windows are local wall-clock time; default UTC
//! link_up = "20Mbit/s"                  # the site's WAN link, for rates given in %
//! link_down = "50Mbit/s"
//! site_nodes = 2                        # nodes sharing the site caps, split evenly
//! upload = { rate = "10Mbit/s" }        # this node's own caps
//! download = { rate = "40Mbit/s" }
//! [caps.site_upload]                    # the site's WAN cap; this node takes 1/site_nodes
//! rate = "100%"
//! window = [{ days = "mon-fri", from = "08:00", to = "18:00", rate = "20%" }]
//!
//! [hooks]                               # programs run on patch events; no shell
//! verified = ["/usr/local/bin/install-patch", "--quiet"]   # files assembled and verified
//! recalled = ["/usr/local/bin/uninstall-patch"]            # a signed recall removed them
//! failed = ["/usr/local/bin/page-it"]                      # assembly or verification failed
//! timeout = "10m"                       # kill a hook still running after this; default 10m
//! max_running = 2                       # hooks at once, the rest wait; default 2
//!
//! [fault_injection]                     # testing only: make this node misbehave
//! corrupt_served_chunks = false         # flip a byte in every chunk this node serves
//! ```
//!
//! Relative paths are resolved against the directory holding the config file.
//!
//! A running node reads this file again on SIGHUP or `patchmesh node reload`. `[caps]`,
//! `[hooks]` and `disk_budget` take effect at once; other keys need a restart
//! (see [`crate::reload`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use patchmesh_core::caps::{CapError, CapSchedule, CapSpec, parse_rate_bytes};
use serde::Deserialize;

use crate::hooks::{HookSettings, HooksSpec};

/// The longest path a Unix domain socket address can hold on Linux, in bytes.
const UNIX_SOCKET_PATH_MAX: usize = 107;

/// A validated `node.toml`.
#[derive(Clone, Debug)]
pub struct NodeSettings {
    /// This office's site name.
    pub site: String,
    /// Where the store, the assembled patches and the control socket live.
    pub data_dir: PathBuf,
    /// The node's ed25519 secret key file; it also gives the libp2p peer id.
    pub identity_key: PathBuf,
    /// The trust file listing publisher keys.
    pub trust_file: PathBuf,
    /// libp2p addresses to listen on.
    pub listen: Vec<libp2p::Multiaddr>,
    /// Peers to dial at start and redial while disconnected; each ends in `/p2p/<peer id>`.
    pub bootstrap: Vec<libp2p::Multiaddr>,
    /// Whether this node publishes patches (the head office).
    pub origin: bool,
    /// How long a connection with no open stream stays up. Default: 5 minutes, long
    /// enough that offices waiting for the next patch stay connected and hear its gossip
    /// at once; libp2p's own default of 10 s would drop them between rollouts.
    pub idle_connection_timeout: Duration,
    /// The control API's Unix socket, created owner-only.
    pub control_socket: PathBuf,
    /// The maximum bytes the store should hold, if limited. Past it, the node removes
    /// complete patch versions that a newer version of the same patch supersedes, oldest
    /// first. It never removes a version in progress or the newest version of a patch.
    pub disk_budget: Option<u64>,
    /// Invalid chunks a peer may send before this node bans it; `None` keeps the core's
    /// default of 3.
    pub max_strikes: Option<u32>,
    /// On the origin: its egress budget per patch version, in copies of the patch.
    pub origin_budget: Option<f64>,
    /// Caps on the bytes this node sends; the lowest applies at each instant.
    pub upload_caps: Vec<CapSchedule>,
    /// Caps on the bytes this node receives; the lowest applies at each instant.
    pub download_caps: Vec<CapSchedule>,
    /// A signed membership list (`patchmesh members`). When set, the node admits only
    /// connections from the peers on the latest verified list; it needs a format 2
    /// trust file. Default: unset, any peer may connect.
    pub membership_file: Option<PathBuf>,
    /// Deliberate misbehaviour, for testing how other nodes defend themselves.
    pub fault_injection: FaultInjection,
    /// Programs run on patch events. Default: none.
    pub hooks: HookSettings,
    /// The file these settings were read from, which a reload reads again; `None` when
    /// they were parsed from text.
    pub config_path: Option<PathBuf>,
}

/// Ways to make a node misbehave on purpose. Every other node treats such a node as
/// hostile, so these settings can only hurt the node that sets them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultInjection {
    /// Flip one byte of every chunk this node serves, after reading it from the store.
    /// Default: false.
    #[serde(default)]
    pub corrupt_served_chunks: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    site: String,
    data_dir: PathBuf,
    identity_key: PathBuf,
    trust_file: PathBuf,
    #[serde(default = "default_listen")]
    listen: Vec<String>,
    #[serde(default)]
    bootstrap: Vec<String>,
    #[serde(default)]
    origin: bool,
    #[serde(default)]
    idle_connection_timeout: Option<String>,
    #[serde(default)]
    control_socket: Option<PathBuf>,
    #[serde(default)]
    disk_budget: Option<String>,
    #[serde(default)]
    max_strikes: Option<u32>,
    #[serde(default)]
    origin_budget: Option<f64>,
    #[serde(default)]
    caps: CapsSpec,
    membership_file: Option<PathBuf>,
    #[serde(default)]
    fault_injection: FaultInjection,
    #[serde(default)]
    hooks: HooksSpec,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CapsSpec {
    time_zone: Option<String>,
    link_up: Option<String>,
    link_down: Option<String>,
    site_nodes: Option<u32>,
    upload: Option<CapSpec>,
    download: Option<CapSpec>,
    site_upload: Option<CapSpec>,
    site_download: Option<CapSpec>,
}

fn default_listen() -> Vec<String> {
    vec!["/ip4/0.0.0.0/tcp/7400".into()]
}

/// A `node.toml` that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// TOML syntax, an unknown key or a wrong type; the message gives line and column.
    #[error("invalid config file {path}: {source}")]
    Toml {
        /// The file.
        path: PathBuf,
        /// The parser's error, with position.
        source: toml::de::Error,
    },
    /// A value that parses but cannot be used.
    #[error("invalid config file {path}: {key} = {value:?}: {fix}")]
    Value {
        /// The file.
        path: PathBuf,
        /// The key path, such as `caps.upload.window[0].from`.
        key: String,
        /// The rejected value.
        value: String,
        /// What to use instead.
        fix: String,
    },
}

impl NodeSettings {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut settings = NodeSettings::parse(&text, path, base)?;
        // Absolute, so a reload and its messages name the same file after a chdir.
        settings.config_path = Some(std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()));
        Ok(settings)
    }

    /// Parses config text; `path` names the file in errors and `base` resolves relative
    /// paths.
    pub fn parse(text: &str, path: &Path, base: &Path) -> Result<Self, ConfigError> {
        let raw: RawSettings =
            toml::from_str(text).map_err(|source| ConfigError::Toml { path: path.to_path_buf(), source })?;
        let value_error = |key: &str, value: &str, fix: String| ConfigError::Value {
            path: path.to_path_buf(),
            key: key.to_string(),
            value: value.to_string(),
            fix,
        };
        if raw.site.is_empty() || raw.site.len() > 128 || raw.site.chars().any(char::is_control) {
            return Err(value_error("site", &raw.site, "use 1 to 128 printable characters".into()));
        }
        let listen = raw
            .listen
            .iter()
            .map(|text| {
                text.parse::<libp2p::Multiaddr>()
                    .map_err(|error| value_error("listen", text, format!("not a multiaddr ({error}); use e.g. /ip4/0.0.0.0/tcp/7400")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if listen.is_empty() {
            return Err(value_error("listen", "[]", "list at least one address, e.g. /ip4/0.0.0.0/tcp/7400".into()));
        }
        let mut bootstrap = Vec::new();
        for text in &raw.bootstrap {
            let address: libp2p::Multiaddr = text.parse().map_err(|error| {
                value_error("bootstrap", text, format!("not a multiaddr ({error}); use /ip4/ADDR/tcp/PORT/p2p/PEER_ID"))
            })?;
            if !matches!(address.iter().last(), Some(libp2p::multiaddr::Protocol::P2p(_))) {
                return Err(value_error("bootstrap", text, "end the address with /p2p/<peer id> so the peer can be authenticated".into()));
            }
            bootstrap.push(address);
        }
        let idle_connection_timeout = match &raw.idle_connection_timeout {
            None => Duration::from_secs(300),
            Some(text) => humantime_duration(text)
                .ok_or_else(|| value_error("idle_connection_timeout", text, "use a duration such as \"30s\" or \"5m\"".into()))?,
        };
        let data_dir = base.join(&raw.data_dir);
        let control_socket = base.join(raw.control_socket.unwrap_or_else(|| raw.data_dir.join("control.sock")));
        if control_socket.as_os_str().len() > UNIX_SOCKET_PATH_MAX {
            return Err(value_error(
                "control_socket",
                &control_socket.display().to_string(),
                format!("a Unix socket path may have at most {UNIX_SOCKET_PATH_MAX} bytes; set a shorter control_socket"),
            ));
        }
        if let Some(copies) = raw.origin_budget {
            if !raw.origin {
                return Err(value_error("origin_budget", &copies.to_string(), "set it on the origin only (origin = true)".into()));
            }
            if !copies.is_finite() || copies <= 0.0 {
                return Err(value_error("origin_budget", &copies.to_string(), "use a positive number of patch copies, such as 1.0".into()));
            }
        }
        let (upload_caps, download_caps) = resolve_caps(&raw.caps).map_err(|(key, value, fix)| value_error(&key, &value, fix))?;
        let hooks = crate::hooks::resolve(&raw.hooks, base, humantime_duration).map_err(|(key, value, fix)| value_error(key, &value, fix))?;
        Ok(NodeSettings {
            site: raw.site,
            data_dir,
            identity_key: base.join(raw.identity_key),
            trust_file: base.join(raw.trust_file),
            membership_file: raw.membership_file.map(|path| base.join(path)),
            listen,
            bootstrap,
            origin: raw.origin,
            idle_connection_timeout,
            control_socket,
            disk_budget: match &raw.disk_budget {
                None => None,
                Some(text) => Some(parse_bytes(text).ok_or_else(|| {
                    value_error("disk_budget", text, "use a size with a unit, such as \"500MiB\" or \"20GiB\"".into())
                })?),
            },
            max_strikes: match raw.max_strikes {
                Some(0) => return Err(value_error("max_strikes", "0", "use at least 1".into())),
                other => other,
            },
            origin_budget: raw.origin_budget,
            upload_caps,
            download_caps,
            fault_injection: raw.fault_injection,
            hooks,
            config_path: None,
        })
    }
}

/// A rejected setting: its key path, the value as written, and the fix.
type Rejected = (String, String, String);

/// Resolves the `[caps]` table into upload and download schedules, or names the key
/// path (such as `caps.site_upload.window[0].from`), the value and the fix.
fn resolve_caps(spec: &CapsSpec) -> Result<(Vec<CapSchedule>, Vec<CapSchedule>), Rejected> {
    let zone = spec.time_zone.as_deref().unwrap_or("UTC");
    let link = |key: &str, text: &Option<String>| -> Result<Option<f64>, Rejected> {
        text.as_deref().map(|text| parse_rate_bytes(text).map_err(|fix| (key.to_string(), text.to_string(), fix))).transpose()
    };
    let link_up = link("caps.link_up", &spec.link_up)?;
    let link_down = link("caps.link_down", &spec.link_down)?;
    let site_nodes = match spec.site_nodes {
        Some(0) => return Err(("caps.site_nodes".into(), "0".into(), "use the number of nodes at this site, at least 1".into())),
        Some(count) => count,
        None => 1,
    };
    // `link_key` names the setting a percentage is taken of, for the message when it
    // is missing.
    let resolve = |key: &str, cap: &Option<CapSpec>, link: Option<f64>, link_key: &str, share: f64| {
        cap.as_ref()
            .map(|cap| {
                CapSchedule::from_spec(cap, link, zone).map(|schedule| schedule.scaled(share)).map_err(|error| cap_error(key, link_key, &error))
            })
            .transpose()
    };
    let share = 1.0 / f64::from(site_nodes);
    let upload = [
        resolve("caps.upload", &spec.upload, link_up, "caps.link_up", 1.0)?,
        resolve("caps.site_upload", &spec.site_upload, link_up, "caps.link_up", share)?,
    ];
    let download = [
        resolve("caps.download", &spec.download, link_down, "caps.link_down", 1.0)?,
        resolve("caps.site_download", &spec.site_download, link_down, "caps.link_down", share)?,
    ];
    Ok((upload.into_iter().flatten().collect(), download.into_iter().flatten().collect()))
}

/// Places a cap error under its key path in node.toml. The time zone is shared by every
/// cap, so it is `caps.time_zone` whichever cap found it.
fn cap_error(key: &str, link_key: &str, error: &CapError) -> Rejected {
    let path = match error {
        CapError::TimeZone { .. } => "caps.time_zone".to_string(),
        _ => format!("{key}.{}", error.field()),
    };
    let fix = match error {
        CapError::NeedsLink { .. } => {
            format!("a percentage needs the link speed: set {link_key}, such as {link_key} = \"20Mbit/s\", or give the rate with a unit such as \"10Mbit/s\"")
        }
        _ => error.fix(),
    };
    (path, error.value().to_string(), fix)
}

/// Parses sizes such as `512KiB`, `20GiB`, `1.5TB` into bytes. Binary (KiB, MiB, GiB,
/// TiB) and decimal (kB, MB, GB, TB) units are accepted; a plain number is rejected,
/// because a forgotten unit is more likely than a budget of a few bytes.
fn parse_bytes(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let scale: f64 = match unit.trim() {
        "B" => 1.0,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        "TiB" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        "kB" | "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "TB" => 1e12,
        _ => return None,
    };
    let bytes = number * scale;
    (bytes.is_finite() && bytes >= 0.0 && bytes < u64::MAX as f64).then_some(bytes as u64)
}

/// Parses durations such as `500ms`, `30s`, `5m`, `2h`.
fn humantime_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let millis = match unit.trim() {
        "ms" => number,
        "s" => number.checked_mul(1000)?,
        "m" => number.checked_mul(60_000)?,
        "h" => number.checked_mul(3_600_000)?,
        _ => return None,
    };
    Some(Duration::from_millis(millis))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "site = \"hq\"\ndata_dir = \"data\"\nidentity_key = \"node.key\"\ntrust_file = \"trust.toml\"\n";

    fn parse(text: &str) -> Result<NodeSettings, ConfigError> {
        NodeSettings::parse(text, Path::new("/etc/pm/node.toml"), Path::new("/etc/pm"))
    }

    #[test]
    fn minimal_defaults() {
        let settings = parse(MINIMAL).expect("parse");
        assert_eq!(settings.data_dir, PathBuf::from("/etc/pm/data"));
        assert_eq!(settings.control_socket, PathBuf::from("/etc/pm/data/control.sock"));
        assert_eq!(settings.idle_connection_timeout, Duration::from_secs(300));
        assert!(!settings.origin);
    }

    #[test]
    fn syntax_error_has_line_and_column() {
        let error = parse("site = \"hq\"\ndata_dir = \n").expect_err("syntax");
        let message = error.to_string();
        assert!(message.contains("line 2"), "{message}");
        assert!(message.contains("column"), "{message}");
    }

    #[test]
    fn caps_split_site_share() {
        let text = format!(
            "{MINIMAL}[caps]\ntime_zone = \"Europe/London\"\nlink_up = \"20Mbit/s\"\nsite_nodes = 2\n[caps.site_upload]\nrate = \"50%\"\n"
        );
        let settings = parse(&text).expect("parse");
        let rate = settings.upload_caps[0].rate_at(patchmesh_core::Timestamp::EPOCH).expect("capped");
        assert!((rate - 20e6 / 8.0 * 0.5 / 2.0).abs() < 1e-6, "{rate} bytes/s");
    }

    #[test]
    fn bad_caps_rejected() {
        let cases = [
            ("[caps]\nupload = { rate = \"10\" }\n", "caps.upload.rate = \"10\": missing unit"),
            ("[caps]\nupload = { rate = \"10 furlongs\" }\n", "Mbps"),
            ("[caps]\nupload = { rate = \"10 furlongs\" }\n", "MiB/s"),
            ("[caps]\nupload = { rate = \"10\" }\n", "caps.upload.rate = \"10\""),
            ("[caps]\ndownload = { rate = \"fast\" }\n", "caps.download.rate = \"fast\""),
            (
                "[caps]\nsite_upload = { window = [{ from = \"25:00\", to = \"06:00\", rate = \"1Mbit/s\" }] }\n",
                "caps.site_upload.window[0].from = \"25:00\"",
            ),
            (
                "[caps]\nupload = { window = [{ from = \"08:00\", to = \"18:00\", rate = \"1Mbit/s\" }, { from = \"18:00\", to = \"24:00\", rate = \"2Mbit/s\" }] }\n",
                "caps.upload.window[1].to = \"24:00\"",
            ),
            ("[caps]\nupload = { window = [{ from = \"18:00\", to = \"24:00\", rate = \"1Mbit/s\" }] }\n", "write \"00:00\" for midnight"),
            (
                "[caps]\nupload = { window = [{ days = \"mon-fry\", from = \"08:00\", to = \"18:00\", rate = \"1Mbit/s\" }] }\n",
                "caps.upload.window[0].days = \"mon-fry\"",
            ),
            ("[caps]\ntime_zone = \"Europe/Londn\"\nupload = { rate = \"1Mbit/s\" }\n", "caps.time_zone = \"Europe/Londn\""),
            ("[caps]\nupload = { rate = \"20%\" }\n", "caps.upload.rate = \"20%\""),
            ("[caps]\nupload = { rate = \"20%\" }\n", "set caps.link_up"),
            ("[caps]\nsite_download = { rate = \"20%\" }\n", "set caps.link_down"),
            ("[caps]\nlink_up = \"20\"\n", "caps.link_up = \"20\""),
            ("[caps]\nsite_nodes = 0\n", "caps.site_nodes = \"0\""),
            ("origin_budget = 1.0\n", "origin only"),
        ];
        for (extra, expected) in cases {
            let error = parse(&format!("{MINIMAL}{extra}")).expect_err("invalid caps").to_string();
            assert!(error.contains(expected), "{error:?} lacks {expected:?}");
        }
    }

    #[test]
    fn caps_errors_hide_debug_form() {
        let error = parse(&format!("{MINIMAL}[caps]\nupload = {{ rate = \"10\" }}\n")).expect_err("no unit").to_string();
        assert!(!error.contains("CapSpec"), "{error}");
    }

    #[test]
    fn unknown_key_rejected() {
        let error = parse(&format!("{MINIMAL}orign = true\n")).expect_err("typo");
        assert!(error.to_string().contains("orign"), "{error}");
    }

    #[test]
    fn bootstrap_needs_peer_id() {
        let error = parse(&format!("{MINIMAL}bootstrap = [\"/ip4/127.0.0.1/tcp/1\"]\n")).expect_err("no /p2p");
        assert!(error.to_string().contains("/p2p/"), "{error}");
    }

    #[test]
    fn sizes() {
        let cases = [
            ("20GiB", Some(20 << 30)),
            ("512KiB", Some(512 << 10)),
            ("1.5MB", Some(1_500_000)),
            ("7B", Some(7)),
            ("20", None),
            ("20 gigs", None),
            ("-1GiB", None),
        ];
        for (text, bytes) in cases {
            assert_eq!(parse_bytes(text), bytes, "{text}");
        }
    }

    #[test]
    fn durations() {
        let cases = [("500ms", Some(500)), ("30s", Some(30_000)), ("5m", Some(300_000)), ("2h", Some(7_200_000)), ("5", None), ("x", None), ("-1s", None)];
        for (text, millis) in cases {
            assert_eq!(humantime_duration(text), millis.map(Duration::from_millis), "{text}");
        }
    }
}
