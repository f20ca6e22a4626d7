//! Requests the core gives up on: the simulator must stop their flows when the core's
//! own deadline passes, not only at `request_timeout`.

use std::path::Path;

use patchmesh_sim::{Scenario, simulate};

/// One chunk of 256 KiB over a 50 kbit/s downlink takes about 42 s. The core allows
/// a chunk 10 s plus its length at 16 KiB/s (26 s here), well before the 10-minute
/// `request_timeout`, so every attempt times out in the core.
const SLOW_BRANCH: &str = r#"
name = "slow-branch"
seed = 1
strategies = ["mesh"]
time_limit = "5min"
[patch]
size = "256KiB"
chunk_size = "256KiB"
[node]
request_timeout = "10min"
[[site]]
name = "hq"
origin = true
up = "100Mbit/s"
down = "100Mbit/s"
latency = "5ms"
[[site]]
name = "branch"
up = "50kbit/s"
down = "50kbit/s"
latency = "5ms"
"#;

#[test]
fn abandoned_request_stops_its_flow() {
    let scenario = Scenario::from_toml(SLOW_BRANCH, Path::new("."), "test").expect("scenario loads");
    let report = simulate(&scenario, scenario.seed, &|_, _| {}).expect("simulation runs");
    let branch = &report.results[0].per_site[1];
    assert_eq!(branch.site, "branch");
    assert_eq!(
        branch.wan_ingress_bytes, 0,
        "a chunk whose request the core abandoned still arrived: its flow outlived the core's deadline"
    );
}
