//! Scenario files and arguments the simulator must reject or warn about.

use std::path::Path;

use patchmesh_sim::{Scenario, ScenarioError, parse_seed};

const VALID: &str = r#"
[patch]
size = "4MiB"
[defaults]
up = "50Mbit/s"
down = "100Mbit/s"
latency = "5ms"
[[site]]
name = "hq"
origin = true
[[site]]
name = "branch"
"#;

fn reject(text: &str) -> String {
    match Scenario::from_toml(text, Path::new("."), "test") {
        Ok(_) => panic!("scenario accepted:\n{text}"),
        Err(error) => error.to_string(),
    }
}

#[test]
fn valid_base_accepted() {
    assert!(Scenario::from_toml(VALID, Path::new("."), "test").is_ok());
}

#[test]
fn unknown_key_names_line_and_known_keys() {
    let text = VALID.replace("name = \"branch\"", "name = \"branch\"\nuplink = \"10Mbit/s\"");
    let message = reject(&text);
    assert!(message.contains("line 13"), "{message}");
    assert!(message.contains("column 1"), "{message}");
    assert!(message.contains("unknown field `uplink`"), "{message}");
    assert!(message.contains("`up`"), "known keys missing: {message}");
    assert!(message.contains("`down`"), "known keys missing: {message}");
}

#[test]
fn unknown_top_level_key_rejected() {
    let message = reject(&format!("sead = 4\n{VALID}"));
    assert!(message.contains("line 1"), "{message}");
    assert!(message.contains("`seed`"), "{message}");
}

#[test]
fn capacity_without_unit_rejected() {
    let message = reject(&VALID.replace("\"50Mbit/s\"", "\"50\""));
    assert!(message.contains("missing unit"), "{message}");
    assert!(message.contains("up"), "{message}");
}

#[test]
fn negative_capacity_rejected() {
    let message = reject(&VALID.replace("\"100Mbit/s\"", "\"-100Mbit/s\""));
    assert!(message.contains("negative"), "{message}");
    assert!(message.contains("down"), "{message}");
}

#[test]
fn disconnected_topology_names_sites() {
    let text = format!(
        "{VALID}[[site]]\nname = \"island\"\n[[link]]\na = \"hq\"\nb = \"branch\"\ncapacity = \"1Gbit/s\"\nlatency = \"1ms\"\n"
    );
    let error = Scenario::from_toml(&text, Path::new("."), "test").expect_err("rejected");
    match &error {
        ScenarioError::Disconnected { unreachable, .. } => assert_eq!(unreachable, &["island".to_string()]),
        other => panic!("wrong error: {other}"),
    }
    assert!(error.to_string().contains("\"island\""), "{error}");
}

#[test]
fn zero_byte_patch_rejected() {
    let message = reject(&VALID.replace("\"4MiB\"", "\"0B\""));
    assert!(message.contains("zero bytes"), "{message}");
}

#[test]
fn seed_must_be_a_number() {
    let error = parse_seed("twelve").expect_err("rejected");
    assert!(error.to_string().contains("\"twelve\""), "{error}");
    assert_eq!(parse_seed("12").ok(), Some(12));
    assert!(parse_seed("-1").is_err());
}

#[test]
fn seed_key_must_be_a_number() {
    let message = reject(&format!("seed = \"abc\"\n{VALID}"));
    assert!(message.contains("line 1"), "{message}");
    assert!(message.contains("\"abc\""), "{message}");
    assert!(message.contains("seed = 7"), "no fix given: {message}");
}

#[test]
fn capacity_without_quotes_gets_a_fix() {
    let message = reject(&VALID.replace("\"50Mbit/s\"", "50"));
    assert!(message.contains("line 5"), "{message}");
    assert!(message.contains("\"100Mbit/s\""), "no fix given: {message}");
}

#[test]
fn unknown_rate_unit_lists_every_unit() {
    let message = reject(&VALID.replace("\"50Mbit/s\"", "\"50Mb/s\""));
    for unit in ["Mbit/s", "Mbps", "kB/s", "KiB/s", "MiB/s", "GiB/s"] {
        assert!(message.contains(unit), "{unit} missing: {message}");
    }
}

#[test]
fn gml_without_speeds_warns_and_defaults() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let gml = r#"graph [
  node [ id 0 label "A" Latitude 45.0 Longitude -75.0 Internal 1 ]
  node [ id 1 label "B" Latitude 43.7 Longitude -79.4 Internal 1 ]
  node [ id 2 label "C" Internal 1 ]
  node [ id 3 label "X" Internal 0 ]
  edge [ source 0 target 1 ]
  edge [ source 1 target 2 ]
  edge [ source 2 target 3 ]
]"#;
    std::fs::write(directory.path().join("net.gml"), gml).expect("write GML");
    let text = r#"
[patch]
size = "1MiB"
[topology]
gml = "net.gml"
origin = "A"
default_capacity = "100Mbit/s"
[defaults]
up = "1Gbit/s"
down = "1Gbit/s"
latency = "1ms"
"#;
    let scenario = Scenario::from_toml(text, directory.path(), "gml").expect("accepted with defaults");
    let warnings = scenario.warnings.join("\n");
    assert!(warnings.contains("3 edges have no link speed; assumed 100 Mbit/s"), "{warnings}");
    assert!(warnings.contains("without coordinates: C"), "{warnings}");
    assert!(warnings.contains("X"), "{warnings}");
    assert_eq!(scenario.sites.len(), 3, "the external node gets no site");
    assert!(scenario.core_links.iter().all(|link| link.capacity == 100e6 / 8.0));
}

#[test]
fn two_origins_rejected() {
    let message = reject(&VALID.replace("name = \"branch\"", "name = \"branch\"\norigin = true"));
    assert!(message.contains("exactly one"), "{message}");
    assert!(message.contains("hq, branch"), "origins not named: {message}");
}

#[test]
fn missing_origin_rejected() {
    let message = reject(&VALID.replace("origin = true", ""));
    assert!(message.contains("no origin site"), "{message}");
    assert!(message.contains("origin = true"), "no fix given: {message}");
}

#[test]
fn site_loss_error_reads_cleanly() {
    let message = reject(&VALID.replace("name = \"branch\"", "name = \"branch\"\nloss = -0.1"));
    assert!(message.contains("site \"branch\" loss = -0.1"), "{message}");
}

#[test]
fn unknown_event_node_rejected() {
    let message = reject(&format!("{VALID}[[event]]\nat = \"1s\"\nkind = \"crash\"\nnode = \"branch/4\"\n"));
    assert!(message.contains("branch/4"), "{message}");
}
