//! `patchmesh sim run` as a user runs it: the report does not depend on how many
//! strategies run at once, and a bad `--jobs`, `--seed` or `--origin-budget` is refused.

use std::path::Path;

mod common;

use common::{ok, patchmesh, text};

const SCENARIO: &str = r#"
name = "three-sites"
seed = 7
strategies = ["mesh", "central", "office-cache"]

[patch]
id = "KB-TEST"
size = "4MiB"
chunk_size = "256KiB"

[defaults]
nodes = 2
up = "20Mbit/s"
down = "50Mbit/s"
latency = "10ms"

[[site]]
name = "hq"
origin = true
nodes = 1
up = "100Mbit/s"
down = "100Mbit/s"

[[site]]
name = "branch-1"

[[site]]
name = "branch-2"
"#;

fn report(dir: &Path, jobs: &str) -> String {
    let out = format!("r{jobs}.json");
    ok(dir, &["sim", "run", "scenario.toml", "-q", "--jobs", jobs, "--json", &out]);
    std::fs::read_to_string(dir.join(out)).expect("JSON report written")
}

#[test]
fn jobs_do_not_change_the_report() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("scenario.toml"), SCENARIO).expect("scenario");
    let sequential = report(dir.path(), "1");
    let parallel = report(dir.path(), "3");
    assert!(sequential.contains("\"office-cache\""), "{sequential}");
    assert_eq!(sequential, parallel);
}

#[test]
fn zero_jobs_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("scenario.toml"), SCENARIO).expect("scenario");
    let output = patchmesh(dir.path(), &["sim", "run", "scenario.toml", "--jobs", "0"]);
    assert!(!output.status.success(), "--jobs 0 accepted");
    let message = text(&output);
    assert!(message.contains("'0'"), "rejected value not named: {message}");
    assert!(message.contains("--jobs"), "option not named: {message}");
}

#[test]
fn negative_values_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("scenario.toml"), SCENARIO).expect("scenario");
    // (option, value, text the message must contain)
    let cases = [("--seed", "-1", "\"-1\""), ("--origin-budget", "-1", "--origin-budget")];
    for (option, value, expected) in cases {
        let output = patchmesh(dir.path(), &["sim", "run", "scenario.toml", option, value]);
        assert!(!output.status.success(), "{option} {value} accepted");
        let message = text(&output);
        assert!(message.contains(expected), "{option} {value}: {message}");
        assert!(!message.contains("unexpected argument"), "{option} {value} not parsed as a value: {message}");
    }
}
