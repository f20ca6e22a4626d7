//! Importing Internet Topology Zoo graphs (GML) as a core network.
//!
//! The Topology Zoo files use a small subset of GML: nested `key value` pairs where a
//! value is a number, a quoted string or a bracketed list. Nodes carry `id`, `label`,
//! `Latitude`, `Longitude` and `Internal`; edges carry `source`, `target` and, where
//! known, `LinkSpeedRaw` in bit/s (or `LinkSpeed` with `LinkSpeedUnits`).
//!
//! Defaults, each reported as a warning:
//! - an edge without a speed gets the scenario's `default_capacity` ([`DEFAULT_CAPACITY`]
//!   unless set);
//! - an edge with an end that lacks coordinates gets `default_latency`
//!   ([`DEFAULT_LATENCY_US`] unless set); other edges get great-circle distance divided by
//!   the speed of light in fibre, 2·10^8 m/s;
//! - an external node (`Internal 0`, another operator's network) stays as a transit
//!   vertex but gets no site;
//! - a label used twice gets `-2`, `-3`, … appended in id order, and `/` in a label
//!   becomes `-`, because site names cannot contain it;
//! - parallel edges between the same two nodes merge into one link with the sum of their
//!   capacities.

use std::collections::BTreeMap;
use std::fmt::Write;

/// Capacity of an edge without a speed, unless the scenario sets `default_capacity`.
pub const DEFAULT_CAPACITY: &str = "1Gbit/s";
/// One-way latency of an edge with an end without coordinates: 5 ms, about 1,000 km of
/// fibre.
pub const DEFAULT_LATENCY_US: u64 = 5_000;
/// Propagation speed in optical fibre, in metres per second (about two thirds of c).
const FIBRE_SPEED_M_PER_S: f64 = 2e8;
/// Mean Earth radius in metres.
const EARTH_RADIUS_M: f64 = 6_371_000.0;

/// A GML value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A number.
    Number(f64),
    /// A quoted string.
    Text(String),
    /// A bracketed list of key-value pairs.
    List(Vec<(String, Value)>),
}

impl Value {
    fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::List(items) => items.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    fn number(&self, key: &str) -> Option<f64> {
        match self.get(key) {
            Some(Value::Number(n)) => Some(*n),
            Some(Value::Text(text)) => text.trim().parse().ok(),
            _ => None,
        }
    }

    fn text(&self, key: &str) -> Option<String> {
        match self.get(key) {
            Some(Value::Text(text)) => Some(text.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        }
    }

    fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        let items: &[(String, Value)] = match self {
            Value::List(items) => items,
            _ => &[],
        };
        items.iter().filter(move |(k, _)| k == key).map(|(_, v)| v)
    }
}

/// Parses GML text into its top-level key-value pairs.
pub fn parse(text: &str) -> Result<Value, String> {
    let mut tokens = Tokens { text, position: 0 };
    let items = parse_list(&mut tokens, false)?;
    Ok(Value::List(items))
}

struct Tokens<'a> {
    text: &'a str,
    position: usize,
}

#[derive(Debug, PartialEq)]
enum Token {
    Word(String),
    Text(String),
    Open,
    Close,
}

impl Tokens<'_> {
    fn line(&self) -> usize {
        self.text[..self.position].matches('\n').count() + 1
    }

    fn next(&mut self) -> Result<Option<Token>, String> {
        let rest = &self.text[self.position..];
        let trimmed = rest.trim_start();
        self.position += rest.len() - trimmed.len();
        let Some(first) = trimmed.chars().next() else {
            return Ok(None);
        };
        match first {
            '[' => {
                self.position += 1;
                Ok(Some(Token::Open))
            }
            ']' => {
                self.position += 1;
                Ok(Some(Token::Close))
            }
            '"' => {
                let body = &trimmed[1..];
                let end = body.find('"').ok_or_else(|| format!("line {}: unterminated string", self.line()))?;
                self.position += end + 2;
                Ok(Some(Token::Text(body[..end].to_string())))
            }
            _ => {
                let end = trimmed.find(|c: char| c.is_whitespace() || c == '[' || c == ']').unwrap_or(trimmed.len());
                self.position += end;
                Ok(Some(Token::Word(trimmed[..end].to_string())))
            }
        }
    }
}

fn parse_list(tokens: &mut Tokens<'_>, nested: bool) -> Result<Vec<(String, Value)>, String> {
    let mut items = Vec::new();
    loop {
        let key = match tokens.next()? {
            None if nested => return Err(format!("line {}: missing ']'", tokens.line())),
            None => return Ok(items),
            Some(Token::Close) if nested => return Ok(items),
            Some(Token::Word(word)) => word,
            Some(other) => return Err(format!("line {}: expected a key, found {other:?}", tokens.line())),
        };
        let value = match tokens.next()? {
            Some(Token::Open) => Value::List(parse_list(tokens, true)?),
            Some(Token::Text(text)) => Value::Text(text),
            Some(Token::Word(word)) => match word.parse::<f64>() {
                Ok(number) => Value::Number(number),
                Err(_) => Value::Text(word),
            },
            other => return Err(format!("line {}: key {key:?} has no value (found {other:?})", tokens.line())),
        };
        items.push((key, value));
    }
}

/// A core link between two vertices.
#[derive(Clone, Debug, PartialEq)]
pub struct GmlLink {
    /// One end.
    pub a: usize,
    /// The other end.
    pub b: usize,
    /// Capacity per direction in bytes per second.
    pub capacity: f64,
    /// One-way latency in microseconds.
    pub latency_us: u64,
}

/// A GML graph as vertices, links and sites.
#[derive(Clone, Debug, Default)]
pub struct Topology {
    /// Vertex names: the labels, made unique.
    pub vertices: Vec<String>,
    /// Links between vertices.
    pub links: Vec<GmlLink>,
    /// (vertex, site name) for every internal node.
    pub sites: Vec<(usize, String)>,
    /// The defaults applied, for the operator.
    pub warnings: Vec<String>,
}

/// Converts a parsed GML document into a topology, applying the documented defaults.
pub fn to_topology(document: &Value, default_capacity: f64, default_latency_us: u64) -> Result<Topology, String> {
    let graph = document.get("graph").ok_or("no graph [ ... ] block")?;
    let mut topology = Topology::default();
    let mut by_id: BTreeMap<i64, usize> = BTreeMap::new();
    let mut coordinates: Vec<Option<(f64, f64)>> = Vec::new();
    let mut renamed = Vec::new();
    let mut external = Vec::new();
    let mut no_coordinates = Vec::new();

    for node in graph.all("node") {
        let id = node.number("id").ok_or("a node has no numeric id")? as i64;
        if by_id.contains_key(&id) {
            return Err(format!("node id {id} appears twice"));
        }
        let label = node.text("label").unwrap_or_else(|| format!("node-{id}")).replace('/', "-");
        let label = if label.trim().is_empty() { format!("node-{id}") } else { label.trim().to_string() };
        let mut name = label.clone();
        let mut suffix = 2;
        while topology.vertices.contains(&name) {
            name = format!("{label}-{suffix}");
            suffix += 1;
        }
        if name != label {
            renamed.push(format!("{label:?} (id {id}) as {name:?}"));
        }
        let vertex = topology.vertices.len();
        topology.vertices.push(name.clone());
        by_id.insert(id, vertex);
        let position = match (node.number("Latitude"), node.number("Longitude")) {
            (Some(lat), Some(lon)) => Some((lat, lon)),
            _ => {
                no_coordinates.push(name.clone());
                None
            }
        };
        coordinates.push(position);
        if node.number("Internal") == Some(0.0) {
            external.push(name);
        } else {
            topology.sites.push((vertex, name));
        }
    }
    if topology.vertices.is_empty() {
        return Err("the graph has no nodes".into());
    }

    let mut merged: BTreeMap<(usize, usize), GmlLink> = BTreeMap::new();
    let mut without_speed = 0usize;
    let mut default_latency_edges = 0usize;
    let mut parallel = 0usize;
    for edge in graph.all("edge") {
        let source = edge.number("source").ok_or("an edge has no source")? as i64;
        let target = edge.number("target").ok_or("an edge has no target")? as i64;
        let a = *by_id.get(&source).ok_or_else(|| format!("an edge names unknown node id {source}"))?;
        let b = *by_id.get(&target).ok_or_else(|| format!("an edge names unknown node id {target}"))?;
        if a == b {
            continue;
        }
        let capacity = match edge_speed(edge) {
            Some(bits) if bits > 0.0 => bits / 8.0,
            _ => {
                without_speed += 1;
                default_capacity
            }
        };
        let latency_us = match (coordinates[a], coordinates[b]) {
            (Some(p), Some(q)) => (great_circle_m(p, q) / FIBRE_SPEED_M_PER_S * 1e6).round().max(1.0) as u64,
            _ => {
                default_latency_edges += 1;
                default_latency_us
            }
        };
        let key = (a.min(b), a.max(b));
        match merged.get_mut(&key) {
            Some(existing) => {
                existing.capacity += capacity;
                parallel += 1;
            }
            None => {
                merged.insert(key, GmlLink { a: key.0, b: key.1, capacity, latency_us });
            }
        }
    }
    topology.links = merged.into_values().collect();

    let warnings = &mut topology.warnings;
    if without_speed > 0 {
        let edges = if without_speed == 1 { "1 edge has".to_string() } else { format!("{without_speed} edges have") };
        let mut text = format!("{edges} no link speed; assumed {:.0} Mbit/s each", default_capacity * 8.0 / 1e6);
        let _ = write!(text, " (set [topology] default_capacity to change)");
        warnings.push(text);
    }
    if !no_coordinates.is_empty() {
        warnings.push(format!(
            "nodes without coordinates: {}; their {default_latency_edges} {} assumed {} ms one-way",
            no_coordinates.join(", "),
            if default_latency_edges == 1 { "edge" } else { "edges" },
            default_latency_us as f64 / 1000.0
        ));
    }
    if !external.is_empty() {
        warnings.push(format!("external nodes (Internal 0) kept as transit only, without a site: {}", external.join(", ")));
    }
    if !renamed.is_empty() {
        warnings.push(format!("duplicate labels renamed: {}", renamed.join(", ")));
    }
    if parallel > 0 {
        warnings.push(format!("{parallel} parallel edges merged, capacities added"));
    }
    Ok(topology)
}

/// An edge's speed in bit/s, from `LinkSpeedRaw` or `LinkSpeed` with `LinkSpeedUnits`.
fn edge_speed(edge: &Value) -> Option<f64> {
    if let Some(raw) = edge.number("LinkSpeedRaw") {
        return Some(raw);
    }
    let speed = edge.number("LinkSpeed")?;
    let scale = match edge.text("LinkSpeedUnits")?.trim() {
        "K" | "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        _ => return None,
    };
    Some(speed * scale)
}

/// Great-circle distance between two (latitude, longitude) points in degrees, by the
/// haversine formula.
fn great_circle_m(p: (f64, f64), q: (f64, f64)) -> f64 {
    let (lat1, lon1) = (p.0.to_radians(), p.1.to_radians());
    let (lat2, lon2) = (q.0.to_radians(), q.1.to_radians());
    let h = ((lat2 - lat1) / 2.0).sin().powi(2) + lat1.cos() * lat2.cos() * ((lon2 - lon1) / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_M * h.sqrt().min(1.0).asin()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
graph [
  directed 0
  node [ id 0 label "Alpha" Latitude 50.0 Longitude 0.0 Internal 1 ]
  node [ id 1 label "Beta" Latitude 51.0 Longitude 0.0 Internal 1 ]
  node [ id 2 label "Beta" Internal 1 ]
  node [ id 3 label "Peer ISP" Latitude 52.0 Longitude 1.0 Internal 0 ]
  edge [ source 0 target 1 LinkSpeedRaw 10000000000.0 ]
  edge [ source 1 target 2 ]
  edge [ source 1 target 3 LinkSpeed "1" LinkSpeedUnits "G" ]
]
"#;

    #[test]
    fn sample_imports_with_defaults() {
        let document = parse(SAMPLE).expect("parses");
        let topology = to_topology(&document, 1e6, 7_000).expect("converts");
        assert_eq!(topology.vertices, vec!["Alpha", "Beta", "Beta-2", "Peer ISP"]);
        assert_eq!(topology.sites.len(), 3, "the external node gets no site");
        let first = &topology.links[0];
        assert_eq!(first.capacity, 10e9 / 8.0);
        // One degree of latitude is about 111.2 km: 556 µs in fibre.
        assert!((550..=562).contains(&first.latency_us), "latency {}", first.latency_us);
        let defaulted = topology.links.iter().find(|link| (link.a, link.b) == (1, 2)).expect("edge 1-2");
        assert_eq!(defaulted.capacity, 1e6);
        assert_eq!(defaulted.latency_us, 7_000);
        let text = topology.warnings.join("\n");
        assert!(text.contains("1 edge has no link speed"), "{text}");
        assert!(!text.contains("1 edges"), "plural for one edge: {text}");
        assert!(text.contains("without coordinates: Beta-2"), "{text}");
        assert!(text.contains("Internal 0"), "{text}");
        assert!(text.contains("duplicate labels"), "{text}");
    }

    #[test]
    fn unterminated_list_rejected() {
        assert!(parse("graph [ node [ id 0 ]").is_err());
    }

    #[test]
    fn zoo_files_import() {
        let directory = concat!(env!("CARGO_MANIFEST_DIR"), "/../../simulations");
        {
            let name = "Geant2012.gml";
            let path = format!("{directory}/{name}");
            let Ok(text) = std::fs::read_to_string(&path) else {
                panic!("missing {path}");
            };
            let topology = to_topology(&parse(&text).expect("parses"), 125e6, 5_000).expect("converts");
            assert!(topology.sites.len() > 20, "{name}: {} sites", topology.sites.len());
            assert!(!topology.links.is_empty());
        }
    }
}
