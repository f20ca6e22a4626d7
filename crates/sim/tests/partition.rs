//! A WAN partition mid-rollout: the side with the origin finishes while cut off, the
//! other side keeps exchanging what it already has, and everyone finishes after the heal.

use std::path::Path;

use patchmesh_sim::{Scenario, simulate};

/// Two regions joined by one core link; the east region has no origin.
const PARTITIONED: &str = r#"
name = "partition"
seed = 5
strategies = ["mesh"]
[patch]
size = "8MiB"
chunk_size = "128KiB"
[defaults]
nodes = 2
up = "20Mbit/s"
down = "50Mbit/s"
latency = "2ms"
[[site]]
name = "hq"
origin = true
nodes = 1
up = "100Mbit/s"
attach = "west"
[[site]]
name = "w1"
attach = "west"
[[site]]
name = "e1"
attach = "east"
[[site]]
name = "e2"
attach = "east"
[[link]]
a = "west"
b = "east"
capacity = "100Mbit/s"
latency = "10ms"
[[event]]
at = "1s"
kind = "link-down"
a = "west"
b = "east"
[[event]]
at = "30s"
kind = "link-up"
a = "west"
b = "east"
"#;

#[test]
fn partition_heals_and_finishes() {
    let scenario = match Scenario::from_toml(PARTITIONED, Path::new("."), "test") {
        Ok(scenario) => scenario,
        Err(error) => panic!("scenario rejected: {error}"),
    };
    let report = simulate(&scenario, scenario.seed, &|_, _| {}).expect("simulation runs");
    let mesh = &report.results[0];
    let completion = |site: &str| {
        mesh.per_site
            .iter()
            .find(|result| result.site == site)
            .and_then(|result| result.completion_s)
            .unwrap_or_else(|| panic!("site {site} never completed"))
    };
    assert!(completion("w1") < 30.0, "the origin's side did not finish during the partition");
    assert!(completion("e1") >= 30.0, "e1 finished while cut off from every source");
    assert!(completion("e2") >= 30.0, "e2 finished while cut off from every source");
    // After the heal the east side needs only what it lacked: at most one more patch
    // copy per site crosses the core link, not a restart from zero.
    assert!(completion("e1") < 60.0, "e1 took {} s after a heal at 30 s", completion("e1"));
}
