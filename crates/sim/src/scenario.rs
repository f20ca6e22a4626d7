//! Scenario files: the TOML a network engineer writes, and its validated form.
//!
//! Parsing runs in two stages. Serde reads the file into `*Spec` structs that reject
//! unknown keys (the toml crate reports the line and column and serde lists the keys
//! it accepts); [`Scenario::from_toml`] then checks units, names and references and builds a
//! [`Scenario`] whose values are plain numbers. The format is described in
//! `docs/simulator.md`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::Deserialize;

use crate::gml;
use crate::units::{UnitError, parse_duration_us, parse_rate, parse_size};

/// An error that makes a scenario unusable.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The TOML is malformed or has unknown keys or wrong types.
    #[error("invalid scenario: {0}{hint}", hint = type_hint(.0))]
    Toml(#[from] toml::de::Error),
    /// A value with a missing or wrong unit, or out of range.
    #[error("invalid scenario: {context}: {error}")]
    Unit {
        /// The value's place in the file, such as `site "branch-03" up`.
        context: String,
        /// The parse error.
        error: UnitError,
    },
    /// Any other inconsistency, with what to change.
    #[error("invalid scenario: {0}")]
    Invalid(String),
    /// Sites that no route reaches from the origin.
    #[error("disconnected topology: no route from origin site {origin:?} to {}; add core links to them", quoted(.unreachable))]
    Disconnected {
        /// The origin site.
        origin: String,
        /// The sites no route reaches.
        unreachable: Vec<String>,
    },
    /// A GML topology file that cannot be used.
    #[error("invalid GML topology {path}: {reason}")]
    Gml {
        /// The file.
        path: String,
        /// The problem found.
        reason: String,
    },
}

/// Returns how to fix a value of the wrong type, for the two mistakes serde's own
/// message leaves unexplained: a quantity written without quotes and unit, and a
/// number written as text.
fn type_hint(error: &toml::de::Error) -> &'static str {
    let message = error.message();
    if !message.starts_with("invalid type") {
        ""
    } else if message.ends_with("expected a string") {
        "help: write the value in quotes with its unit, for example up = \"100Mbit/s\", latency = \"20ms\" or size = \"1GiB\"\n"
    } else if message.ends_with("expected u64") || message.ends_with("expected u32") {
        "help: write a whole number without quotes, for example seed = 7 or nodes = 4\n"
    } else {
        ""
    }
}

fn quoted(names: &[String]) -> String {
    names.iter().map(|name| format!("{name:?}")).collect::<Vec<_>>().join(", ")
}

// ---- the file as written ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioFile {
    name: Option<String>,
    seed: Option<u64>,
    strategies: Option<Vec<String>>,
    time_limit: Option<String>,
    origin_budget: Option<f64>,
    start: Option<String>,
    #[serde(default)]
    cap: Vec<CapEntry>,
    patch: PatchSpec,
    #[serde(default)]
    overlay: OverlaySpec,
    #[serde(default)]
    model: ModelSpec,
    #[serde(default)]
    node: NodeSpec,
    #[serde(default)]
    defaults: SiteDefaults,
    #[serde(default)]
    site: Vec<SiteSpec>,
    #[serde(default)]
    link: Vec<LinkSpec>,
    topology: Option<TopologySpec>,
    #[serde(default)]
    event: Vec<EventSpec>,
}

/// A `[[cap]]` entry: a site WAN cap, possibly with business-hour windows.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CapEntry {
    sites: Option<Vec<String>>,
    direction: Option<String>,
    time_zone: Option<String>,
    rate: Option<String>,
    #[serde(default)]
    window: Vec<patchmesh_core::caps::WindowSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchSpec {
    id: Option<String>,
    size: String,
    chunk_size: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct OverlaySpec {
    wan_peers: Option<u32>,
    lan_peers: Option<u32>,
    gossip_hop_delay: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelSpec {
    rate_interval: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeSpec {
    max_requests_per_peer: Option<u32>,
    max_requests_to_origin: Option<u32>,
    max_requests_total: Option<u32>,
    request_timeout: Option<String>,
    have_interval: Option<String>,
}

#[derive(Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct SiteDefaults {
    nodes: Option<u32>,
    up: Option<String>,
    down: Option<String>,
    latency: Option<String>,
    loss: Option<f64>,
    nic: Option<String>,
    lan_latency: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SiteSpec {
    name: String,
    #[serde(default)]
    origin: bool,
    nodes: Option<u32>,
    up: Option<String>,
    down: Option<String>,
    latency: Option<String>,
    loss: Option<f64>,
    nic: Option<String>,
    lan_latency: Option<String>,
    attach: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LinkSpec {
    a: String,
    b: String,
    capacity: String,
    latency: String,
    loss: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TopologySpec {
    gml: String,
    origin: String,
    default_capacity: Option<String>,
    default_latency: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventSpec {
    at: String,
    kind: EventKindSpec,
    site: Option<String>,
    node: Option<String>,
    a: Option<String>,
    b: Option<String>,
    size: Option<String>,
    id: Option<String>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
enum EventKindSpec {
    LinkDown,
    LinkUp,
    Crash,
    Restart,
    Join,
    Publish,
}

// ---- the validated scenario ----

/// A strategy compared in a run: each maps to one [`patchmesh_core::SourcePolicy`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Strategy {
    /// The full mesh protocol.
    Mesh,
    /// Every node downloads from the origin.
    Central,
    /// One node per site downloads from the origin, the others from it.
    OfficeCache,
}

impl Strategy {
    /// Every strategy, in report order.
    pub const ALL: [Strategy; 3] = [Strategy::Mesh, Strategy::Central, Strategy::OfficeCache];

    /// The name used in scenario files and reports.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Mesh => "mesh",
            Strategy::Central => "central",
            Strategy::OfficeCache => "office-cache",
        }
    }

    fn parse(text: &str) -> Option<Strategy> {
        Strategy::ALL.into_iter().find(|strategy| strategy.name() == text)
    }
}

/// The patch published at the start.
#[derive(Clone, Debug)]
pub struct PatchPlan {
    /// The patch series id.
    pub id: String,
    /// Total size in bytes, above 0.
    pub bytes: u64,
    /// Chunk size in bytes.
    pub chunk_size: u32,
}

/// Peer selection: a bounded neighbour set per node.
#[derive(Clone, Debug)]
pub struct Overlay {
    /// Random peers at other sites each node dials. Default 8.
    pub wan_peers: u32,
    /// Random peers at its own site each node dials. Default 8.
    pub lan_peers: u32,
    /// Validation and forwarding delay per gossip hop, in microseconds. Default 5 ms.
    pub gossip_hop_delay_us: u64,
}

/// Core settings every simulated node gets; `None` keeps the core's default.
#[derive(Clone, Debug, Default)]
pub struct NodeSettings {
    /// See [`patchmesh_core::NodeConfig::max_requests_per_peer`].
    pub max_requests_per_peer: Option<u32>,
    /// See [`patchmesh_core::NodeConfig::max_requests_to_origin`].
    pub max_requests_to_origin: Option<u32>,
    /// See [`patchmesh_core::NodeConfig::max_requests_total`].
    pub max_requests_total: Option<u32>,
    /// See [`patchmesh_core::NodeConfig::request_timeout`], in microseconds.
    pub request_timeout_us: Option<u64>,
    /// See [`patchmesh_core::NodeConfig::have_interval`], in microseconds.
    pub have_interval_us: Option<u64>,
}

/// An office: nodes on a LAN behind one access link.
#[derive(Clone, Debug)]
pub struct Site {
    /// Unique name.
    pub name: String,
    /// Whether the origin node sits here.
    pub origin: bool,
    /// Nodes at the site, the origin node included.
    pub nodes: u32,
    /// Access uplink in bytes per second.
    pub up: f64,
    /// Access downlink in bytes per second.
    pub down: f64,
    /// One-way latency of the access link in microseconds.
    pub latency_us: u64,
    /// Packet loss rate of the access link, 0 to below 1.
    pub loss: f64,
    /// Each node's network interface rate in bytes per second, both directions.
    pub nic: f64,
    /// One-way latency between nodes of the site in microseconds.
    pub lan_latency_us: u64,
    /// The core vertex the access link attaches to.
    pub vertex: usize,
}

/// A cap on one direction of a site's access link.
#[derive(Clone, Debug)]
pub struct SiteCap {
    /// The site's index.
    pub site: usize,
    /// The uplink when true, the downlink when false.
    pub up: bool,
    /// The cap over time.
    pub schedule: patchmesh_core::caps::CapSchedule,
}

/// A bidirectional core link; each direction has the full capacity.
#[derive(Clone, Debug)]
pub struct CoreLink {
    /// One end (a vertex index).
    pub a: usize,
    /// The other end.
    pub b: usize,
    /// Capacity per direction in bytes per second.
    pub capacity: f64,
    /// One-way latency in microseconds.
    pub latency_us: u64,
    /// Packet loss rate.
    pub loss: f64,
}

/// A link an event names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkRef {
    /// A site's access link, both directions.
    Access(usize),
    /// A core link, both directions.
    Core(usize),
}

/// A node by site index and position within the site.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct NodeRef {
    /// The site.
    pub site: usize,
    /// The node's position at the site, from 0.
    pub index: u32,
}

/// Something that happens during a run.
#[derive(Clone, Debug)]
pub enum EventKind {
    /// The link fails; flows over it stop and connections without another route close.
    LinkDown(LinkRef),
    /// The link is repaired.
    LinkUp(LinkRef),
    /// The node stops; its store survives.
    Crash(NodeRef),
    /// The node starts again from its store.
    Restart(NodeRef),
    /// The node starts for the first time (a late joiner).
    Join(NodeRef),
    /// The origin publishes another patch.
    Publish {
        /// Its patch id.
        id: String,
        /// Its size in bytes.
        bytes: u64,
    },
}

/// An event at a virtual time.
#[derive(Clone, Debug)]
pub struct ScheduledEvent {
    /// Microseconds after the first publish.
    pub at_us: u64,
    /// What happens.
    pub kind: EventKind,
}

/// A validated scenario.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// Its name, for reports.
    pub name: String,
    /// The seed of every random choice (overlay, node RNGs).
    pub seed: u64,
    /// The strategies to compare, in report order.
    pub strategies: Vec<Strategy>,
    /// Virtual time after which a strategy's run stops, finished or not.
    pub time_limit_us: u64,
    /// The origin's egress budget per patch version, in copies of the patch, under the
    /// mesh strategy; `None` for none. The other strategies have the origin as their
    /// only source for a site's first copy, so they cannot keep a budget and run without.
    pub origin_budget: Option<f64>,
    /// Wall-clock time of the first publish, in microseconds since the Unix epoch; cap
    /// windows are evaluated at this time plus the virtual time.
    pub start_us: u64,
    /// WAN caps per site: (site, direction up, schedule).
    pub caps: Vec<SiteCap>,
    /// The first patch.
    pub patch: PatchPlan,
    /// Peer selection.
    pub overlay: Overlay,
    /// The shortest virtual time between two max-min recomputations, in microseconds;
    /// 0 recomputes at every instant a flow starts or ends.
    pub rate_interval_us: u64,
    /// Core settings.
    pub node: NodeSettings,
    /// The sites; exactly one is the origin site.
    pub sites: Vec<Site>,
    /// Core vertex names: every site's own name, then routers named only by links.
    pub vertices: Vec<String>,
    /// Core links; empty means an uncongested core.
    pub core_links: Vec<CoreLink>,
    /// Events in time order.
    pub events: Vec<ScheduledEvent>,
    /// Assumptions made while importing, for the operator to read.
    pub warnings: Vec<String>,
}

impl Scenario {
    /// Reads and validates a scenario file; relative paths inside resolve against its
    /// directory.
    pub fn from_file(path: &Path) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ScenarioError::Read { path: path.display().to_string(), source })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let fallback = path.file_stem().map(|stem| stem.to_string_lossy().into_owned()).unwrap_or_default();
        Scenario::from_toml(&text, base, &fallback)
    }

    /// Validates scenario text. `base` resolves a GML path; `fallback_name` names a
    /// scenario without a `name` key.
    pub fn from_toml(text: &str, base: &Path, fallback_name: &str) -> Result<Scenario, ScenarioError> {
        let file: ScenarioFile = toml::from_str(text)?;
        build(file, base, fallback_name)
    }

    /// The index of the origin site.
    pub fn origin_site(&self) -> usize {
        self.sites.iter().position(|site| site.origin).unwrap_or(0)
    }

    /// Whether sites sit behind access links on an uncongested core (no core links), the
    /// setting the Kumar–Ross bound assumes.
    pub fn uncongested_core(&self) -> bool {
        self.core_links.is_empty()
    }

    /// The number of nodes over all sites.
    pub fn node_count(&self) -> usize {
        self.sites.iter().map(|site| site.nodes as usize).sum()
    }
}

fn unit<T>(context: impl FnOnce() -> String, result: Result<T, UnitError>) -> Result<T, ScenarioError> {
    result.map_err(|error| ScenarioError::Unit { context: context(), error })
}

/// Checks an origin budget given in copies of the patch.
pub fn check_origin_budget(copies: f64) -> Result<f64, String> {
    if copies.is_finite() && copies > 0.0 {
        Ok(copies)
    } else {
        Err(format!("origin_budget = {copies}: use a positive number of patch copies, such as 1.0"))
    }
}

fn check_loss(context: &str, loss: f64) -> Result<f64, ScenarioError> {
    if !(0.0..1.0).contains(&loss) {
        return Err(ScenarioError::Invalid(format!("{context} loss = {loss}: use a fraction from 0 up to, not including, 1")));
    }
    Ok(loss)
}

const DEFAULT_TIME_LIMIT: &str = "7d";

fn build(file: ScenarioFile, base: &Path, fallback_name: &str) -> Result<Scenario, ScenarioError> {
    let name = file.name.clone().unwrap_or_else(|| fallback_name.to_string());
    let strategies = match &file.strategies {
        None => Strategy::ALL.to_vec(),
        Some(names) => {
            let mut strategies = Vec::new();
            for text in names {
                let strategy = Strategy::parse(text).ok_or_else(|| {
                    ScenarioError::Invalid(format!("unknown strategy {text:?}: use \"mesh\", \"central\" or \"office-cache\""))
                })?;
                if !strategies.contains(&strategy) {
                    strategies.push(strategy);
                }
            }
            if strategies.is_empty() {
                return Err(ScenarioError::Invalid("strategies is empty: name at least one".into()));
            }
            strategies
        }
    };
    let time_limit_text = file.time_limit.clone().unwrap_or_else(|| DEFAULT_TIME_LIMIT.into());
    let time_limit_us = unit(|| "time_limit".into(), parse_duration_us(&time_limit_text))?;

    let patch = build_patch(&file.patch)?;
    let origin_budget = match file.origin_budget {
        Some(copies) => Some(check_origin_budget(copies).map_err(ScenarioError::Invalid)?),
        None => None,
    };
    let overlay = Overlay {
        wan_peers: file.overlay.wan_peers.unwrap_or(8),
        lan_peers: file.overlay.lan_peers.unwrap_or(8),
        gossip_hop_delay_us: match &file.overlay.gossip_hop_delay {
            Some(text) => unit(|| "overlay gossip_hop_delay".into(), parse_duration_us(text))?,
            None => 5_000,
        },
    };
    let rate_interval_us = match &file.model.rate_interval {
        Some(text) => unit(|| "model rate_interval".into(), parse_duration_us(text))?,
        None => 0,
    };
    let node = NodeSettings {
        max_requests_per_peer: file.node.max_requests_per_peer,
        max_requests_to_origin: file.node.max_requests_to_origin,
        max_requests_total: file.node.max_requests_total,
        request_timeout_us: match &file.node.request_timeout {
            Some(text) => Some(unit(|| "node request_timeout".into(), parse_duration_us(text))?),
            None => None,
        },
        have_interval_us: match &file.node.have_interval {
            Some(text) => Some(unit(|| "node have_interval".into(), parse_duration_us(text))?),
            None => None,
        },
    };
    for (setting, value) in [
        ("max_requests_per_peer", node.max_requests_per_peer),
        ("max_requests_to_origin", node.max_requests_to_origin),
        ("max_requests_total", node.max_requests_total),
    ] {
        if value == Some(0) {
            return Err(ScenarioError::Invalid(format!("node {setting} = 0: use at least 1")));
        }
    }
    if node.request_timeout_us.is_some_and(|us| us < 1_000_000) {
        return Err(ScenarioError::Invalid("node request_timeout is below 1s: use at least \"1s\"".into()));
    }
    if node.have_interval_us.is_some_and(|us| us > 10_000_000) {
        return Err(ScenarioError::Invalid("node have_interval is above 10s: use at most \"10s\"".into()));
    }

    let mut warnings = Vec::new();
    let mut vertices: Vec<String> = Vec::new();
    let mut core_links = Vec::new();
    let mut site_specs: Vec<SiteSpec> = file.site;
    if let Some(topology) = &file.topology {
        let imported = import_topology(topology, base, &mut warnings)?;
        vertices = imported.vertices;
        core_links = imported.links;
        for (vertex, label) in imported.sites {
            if site_specs.iter().any(|site| site.name == label) {
                continue;
            }
            site_specs.push(SiteSpec {
                name: label.clone(),
                origin: label == topology.origin,
                nodes: None,
                up: None,
                down: None,
                latency: None,
                loss: None,
                nic: None,
                lan_latency: None,
                attach: Some(vertices[vertex].clone()),
            });
        }
        for site in &mut site_specs {
            if site.name == topology.origin {
                site.origin = true;
            }
        }
        if !site_specs.iter().any(|site| site.name == topology.origin) {
            return Err(ScenarioError::Invalid(format!(
                "topology origin {:?} is not an internal node label of {}",
                topology.origin, topology.gml
            )));
        }
    }
    if site_specs.is_empty() {
        return Err(ScenarioError::Invalid("no sites: add [[site]] tables or a [topology]".into()));
    }

    let sites = build_sites(&site_specs, &file.defaults, &mut vertices)?;
    let origins: Vec<&str> = sites.iter().filter(|site| site.origin).map(|site| site.name.as_str()).collect();
    if origins.is_empty() {
        return Err(ScenarioError::Invalid("no origin site: mark exactly one site with origin = true".into()));
    }
    if origins.len() > 1 {
        return Err(ScenarioError::Invalid(format!(
            "{} origin sites ({}): mark exactly one site with origin = true",
            origins.len(),
            origins.join(", ")
        )));
    }

    for (index, spec) in file.link.iter().enumerate() {
        let context = format!("link {} ({} - {})", index + 1, spec.a, spec.b);
        let a = vertex_index(&mut vertices, &spec.a);
        let b = vertex_index(&mut vertices, &spec.b);
        if a == b {
            return Err(ScenarioError::Invalid(format!("{context}: both ends are {:?}", spec.a)));
        }
        core_links.push(CoreLink {
            a,
            b,
            capacity: unit(|| format!("{context} capacity"), parse_rate(&spec.capacity))?.0,
            latency_us: unit(|| format!("{context} latency"), parse_duration_us(&spec.latency))?,
            loss: check_loss(&context, spec.loss.unwrap_or(0.0))?,
        });
    }

    let start_us = match &file.start {
        Some(text) => {
            let instant: jiff::Timestamp = text.parse().map_err(|_| {
                ScenarioError::Invalid(format!("start {text:?}: use an RFC 3339 time such as \"2026-12-07T07:30:00Z\""))
            })?;
            u64::try_from(instant.as_microsecond())
                .map_err(|_| ScenarioError::Invalid(format!("start {text:?}: use a time after 1970")))?
        }
        None => crate::manifest::START.as_micros(),
    };
    let caps = build_caps(&file.cap, &sites)?;
    let mut scenario = Scenario {
        name,
        seed: file.seed.unwrap_or(0),
        strategies,
        time_limit_us,
        origin_budget,
        start_us,
        caps,
        patch,
        overlay,
        rate_interval_us,
        node,
        sites,
        vertices,
        core_links,
        events: Vec::new(),
        warnings,
    };
    check_connected(&scenario)?;
    scenario.events = build_events(&file.event, &scenario)?;
    Ok(scenario)
}

fn build_patch(spec: &PatchSpec) -> Result<PatchPlan, ScenarioError> {
    let bytes = unit(|| "patch size".into(), parse_size(&spec.size))?;
    if bytes == 0 {
        return Err(ScenarioError::Invalid(format!(
            "patch size {:?} is zero bytes: a rollout needs at least one byte",
            spec.size
        )));
    }
    let chunk_size = match &spec.chunk_size {
        Some(text) => {
            let size = unit(|| "patch chunk_size".into(), parse_size(text))?;
            let min = u64::from(patchmesh_core::manifest::MIN_CHUNK_SIZE);
            let max = u64::from(patchmesh_core::manifest::MAX_CHUNK_SIZE);
            if !(min..=max).contains(&size) {
                return Err(ScenarioError::Invalid(format!("patch chunk_size {text:?}: use {min} to {max} bytes")));
            }
            size as u32
        }
        None => patchmesh_core::manifest::default_chunk_size(bytes),
    };
    let chunks = bytes.div_ceil(u64::from(chunk_size));
    if chunks > u64::from(patchmesh_core::manifest::MAX_CHUNK_COUNT) {
        return Err(ScenarioError::Invalid(format!("patch of {bytes} bytes needs {chunks} chunks: use a larger chunk_size")));
    }
    let id = spec.id.clone().unwrap_or_else(|| "SIM-PATCH".into());
    if patchmesh_core::PatchId::new(id.clone()).is_err() {
        return Err(ScenarioError::Invalid(format!("patch id {id:?}: use letters, digits, '.', '_' and '-'")));
    }
    Ok(PatchPlan { id, bytes, chunk_size })
}

fn vertex_index(vertices: &mut Vec<String>, name: &str) -> usize {
    match vertices.iter().position(|vertex| vertex == name) {
        Some(index) => index,
        None => {
            vertices.push(name.to_string());
            vertices.len() - 1
        }
    }
}

fn build_sites(specs: &[SiteSpec], defaults: &SiteDefaults, vertices: &mut Vec<String>) -> Result<Vec<Site>, ScenarioError> {
    let mut seen = BTreeSet::new();
    let mut sites = Vec::new();
    for spec in specs {
        if spec.name.is_empty() || spec.name.contains('/') || spec.name.chars().any(char::is_control) {
            return Err(ScenarioError::Invalid(format!("site name {:?}: use printable characters without '/'", spec.name)));
        }
        if !seen.insert(spec.name.clone()) {
            return Err(ScenarioError::Invalid(format!("site {:?} appears twice: site names must be unique", spec.name)));
        }
        let context = |key: &str| format!("site {:?} {key}", spec.name);
        let pick = |own: &Option<String>, default: &Option<String>, key: &str| -> Result<String, ScenarioError> {
            own.clone().or_else(|| default.clone()).ok_or_else(|| {
                ScenarioError::Invalid(format!("site {:?} has no {key}: set it on the site or in [defaults]", spec.name))
            })
        };
        let up = unit(|| context("up"), parse_rate(&pick(&spec.up, &defaults.up, "up")?))?.0;
        let down = unit(|| context("down"), parse_rate(&pick(&spec.down, &defaults.down, "down")?))?.0;
        let latency_us = unit(|| context("latency"), parse_duration_us(&pick(&spec.latency, &defaults.latency, "latency")?))?;
        let nic_text = spec.nic.clone().or_else(|| defaults.nic.clone()).unwrap_or_else(|| "1Gbit/s".into());
        let nic = unit(|| context("nic"), parse_rate(&nic_text))?.0;
        let lan_text = spec.lan_latency.clone().or_else(|| defaults.lan_latency.clone()).unwrap_or_else(|| "200us".into());
        let lan_latency_us = unit(|| context("lan_latency"), parse_duration_us(&lan_text))?;
        let loss = check_loss(&format!("site {:?}", spec.name), spec.loss.or(defaults.loss).unwrap_or(0.0))?;
        let nodes = spec.nodes.or(defaults.nodes).unwrap_or(1);
        if nodes == 0 {
            return Err(ScenarioError::Invalid(format!("site {:?} has nodes = 0: use at least 1", spec.name)));
        }
        let vertex_name = spec.attach.clone().unwrap_or_else(|| spec.name.clone());
        let vertex = vertex_index(vertices, &vertex_name);
        sites.push(Site {
            name: spec.name.clone(),
            origin: spec.origin,
            nodes,
            up,
            down,
            latency_us,
            loss,
            nic,
            lan_latency_us,
            vertex,
        });
    }
    Ok(sites)
}

/// Checks that every site is reachable from the origin over the core links.
fn build_caps(entries: &[CapEntry], sites: &[Site]) -> Result<Vec<SiteCap>, ScenarioError> {
    let mut caps = Vec::new();
    for entry in entries {
        let targets: Vec<usize> = match &entry.sites {
            Some(names) => names
                .iter()
                .map(|name| {
                    sites.iter().position(|site| &site.name == name).ok_or_else(|| {
                        ScenarioError::Invalid(format!("cap names unknown site {name:?}: use one of the [[site]] names"))
                    })
                })
                .collect::<Result<_, _>>()?,
            None => (0..sites.len()).filter(|&index| !sites[index].origin).collect(),
        };
        let directions: &[bool] = match entry.direction.as_deref().unwrap_or("both") {
            "up" => &[true],
            "down" => &[false],
            "both" => &[true, false],
            other => {
                return Err(ScenarioError::Invalid(format!("cap direction {other:?}: use \"up\", \"down\" or \"both\"")));
            }
        };
        let zone = entry.time_zone.as_deref().unwrap_or("UTC");
        let spec = patchmesh_core::caps::CapSpec { rate: entry.rate.clone(), window: entry.window.clone() };
        for &site in &targets {
            for &up in directions {
                let link = if up { sites[site].up } else { sites[site].down };
                let schedule = patchmesh_core::caps::CapSchedule::from_spec(&spec, Some(link), zone)
                    .map_err(|error| ScenarioError::Invalid(format!("cap for site {:?}: {error}", sites[site].name)))?;
                caps.push(SiteCap { site, up, schedule });
            }
        }
    }
    Ok(caps)
}

fn check_connected(scenario: &Scenario) -> Result<(), ScenarioError> {
    if scenario.core_links.is_empty() {
        return Ok(());
    }
    let origin = scenario.origin_site();
    let mut adjacent: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for link in &scenario.core_links {
        adjacent.entry(link.a).or_default().push(link.b);
        adjacent.entry(link.b).or_default().push(link.a);
    }
    let mut reached = BTreeSet::from([scenario.sites[origin].vertex]);
    let mut stack = vec![scenario.sites[origin].vertex];
    while let Some(vertex) = stack.pop() {
        for &next in adjacent.get(&vertex).map(Vec::as_slice).unwrap_or(&[]) {
            if reached.insert(next) {
                stack.push(next);
            }
        }
    }
    let unreachable: Vec<String> =
        scenario.sites.iter().filter(|site| !reached.contains(&site.vertex)).map(|site| site.name.clone()).collect();
    if unreachable.is_empty() {
        Ok(())
    } else {
        Err(ScenarioError::Disconnected { origin: scenario.sites[origin].name.clone(), unreachable })
    }
}

fn find_site(scenario: &Scenario, name: &str, context: &str) -> Result<usize, ScenarioError> {
    scenario
        .sites
        .iter()
        .position(|site| site.name == name)
        .ok_or_else(|| ScenarioError::Invalid(format!("{context}: unknown site {name:?}")))
}

/// Parses `site/index` into a node reference.
fn find_node(scenario: &Scenario, text: &str, context: &str) -> Result<NodeRef, ScenarioError> {
    let (site_name, index) = text.rsplit_once('/').ok_or_else(|| {
        ScenarioError::Invalid(format!("{context}: node {text:?} is not of the form \"site/index\", such as \"branch-03/0\""))
    })?;
    let site = find_site(scenario, site_name, context)?;
    let index: u32 = index
        .parse()
        .map_err(|_| ScenarioError::Invalid(format!("{context}: node index {index:?} is not a number")))?;
    if index >= scenario.sites[site].nodes {
        return Err(ScenarioError::Invalid(format!(
            "{context}: site {site_name:?} has {} nodes, so {text:?} does not exist",
            scenario.sites[site].nodes
        )));
    }
    Ok(NodeRef { site, index })
}

fn build_events(specs: &[EventSpec], scenario: &Scenario) -> Result<Vec<ScheduledEvent>, ScenarioError> {
    let mut events = Vec::new();
    let origin = scenario.origin_site();
    for (number, spec) in specs.iter().enumerate() {
        let context = format!("event {}", number + 1);
        let at_us = unit(|| format!("{context} at"), parse_duration_us(&spec.at))?;
        let link = |scenario: &Scenario| -> Result<LinkRef, ScenarioError> {
            match (&spec.site, &spec.a, &spec.b) {
                (Some(site), None, None) => Ok(LinkRef::Access(find_site(scenario, site, &context)?)),
                (None, Some(a), Some(b)) => {
                    let position = scenario.core_links.iter().position(|link| {
                        let (x, y) = (&scenario.vertices[link.a], &scenario.vertices[link.b]);
                        (x == a && y == b) || (x == b && y == a)
                    });
                    position.map(LinkRef::Core).ok_or_else(|| {
                        ScenarioError::Invalid(format!("{context}: no core link between {a:?} and {b:?}"))
                    })
                }
                _ => Err(ScenarioError::Invalid(format!(
                    "{context}: name a site (its access link) or both ends a and b of a core link"
                ))),
            }
        };
        let node = |scenario: &Scenario| -> Result<NodeRef, ScenarioError> {
            let text = spec.node.as_deref().ok_or_else(|| {
                ScenarioError::Invalid(format!("{context}: missing node = \"site/index\""))
            })?;
            let node = find_node(scenario, text, &context)?;
            if node.site == origin && node.index == 0 {
                return Err(ScenarioError::Invalid(format!(
                    "{context}: {text:?} is the origin node, which this simulator keeps running"
                )));
            }
            Ok(node)
        };
        let kinds: Vec<EventKind> = match spec.kind {
            EventKindSpec::LinkDown => vec![EventKind::LinkDown(link(scenario)?)],
            EventKindSpec::LinkUp => vec![EventKind::LinkUp(link(scenario)?)],
            EventKindSpec::Crash => vec![EventKind::Crash(node(scenario)?)],
            EventKindSpec::Restart => vec![EventKind::Restart(node(scenario)?)],
            EventKindSpec::Join => match (&spec.node, &spec.site) {
                (Some(_), None) => vec![EventKind::Join(node(scenario)?)],
                (None, Some(site)) => {
                    let site = find_site(scenario, site, &context)?;
                    let first = if site == origin { 1 } else { 0 };
                    (first..scenario.sites[site].nodes).map(|index| EventKind::Join(NodeRef { site, index })).collect()
                }
                _ => {
                    return Err(ScenarioError::Invalid(format!("{context}: a join names either a node or a site")));
                }
            },
            EventKindSpec::Publish => {
                let size = spec.size.as_deref().ok_or_else(|| {
                    ScenarioError::Invalid(format!("{context}: a publish needs size, such as \"200MB\""))
                })?;
                let bytes = unit(|| format!("{context} size"), parse_size(size))?;
                if bytes == 0 {
                    return Err(ScenarioError::Invalid(format!("{context}: patch size {size:?} is zero bytes")));
                }
                let id = spec.id.clone().unwrap_or_else(|| format!("SIM-PATCH-{}", number + 2));
                if patchmesh_core::PatchId::new(id.clone()).is_err() || id == scenario.patch.id {
                    return Err(ScenarioError::Invalid(format!(
                        "{context}: patch id {id:?} must be valid and differ from the first patch's"
                    )));
                }
                vec![EventKind::Publish { id, bytes }]
            }
        };
        events.extend(kinds.into_iter().map(|kind| ScheduledEvent { at_us, kind }));
    }
    events.sort_by_key(|event| event.at_us);
    Ok(events)
}

struct ImportedTopology {
    vertices: Vec<String>,
    links: Vec<CoreLink>,
    /// (vertex, site name) for every internal node.
    sites: Vec<(usize, String)>,
}

fn import_topology(spec: &TopologySpec, base: &Path, warnings: &mut Vec<String>) -> Result<ImportedTopology, ScenarioError> {
    let path = base.join(&spec.gml);
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(&path).map_err(|source| ScenarioError::Read { path: shown.clone(), source })?;
    let default_capacity = match &spec.default_capacity {
        Some(text) => unit(|| "topology default_capacity".into(), parse_rate(text))?.0,
        None => parse_rate(gml::DEFAULT_CAPACITY).map(|rate| rate.0).unwrap_or(125e6),
    };
    let default_latency_us = match &spec.default_latency {
        Some(text) => unit(|| "topology default_latency".into(), parse_duration_us(text))?,
        None => gml::DEFAULT_LATENCY_US,
    };
    let graph = gml::parse(&text).map_err(|reason| ScenarioError::Gml { path: shown.clone(), reason })?;
    let imported = gml::to_topology(&graph, default_capacity, default_latency_us)
        .map_err(|reason| ScenarioError::Gml { path: shown.clone(), reason })?;
    warnings.extend(imported.warnings.iter().map(|warning| format!("{}: {warning}", spec.gml)));
    let links = imported
        .links
        .iter()
        .map(|link| CoreLink { a: link.a, b: link.b, capacity: link.capacity, latency_us: link.latency_us, loss: 0.0 })
        .collect();
    Ok(ImportedTopology { vertices: imported.vertices, links, sites: imported.sites })
}
