//! Sites whose nodes see only part of their site: the split of remote fetches must
//! still cover every chunk.

use std::path::Path;

use patchmesh_sim::{Scenario, simulate};

/// Ten nodes a site, each connected to a few site neighbours: a node splits the remote
/// fetches among the site nodes it knows, so two nodes with different views can each
/// leave a chunk to the other. Before the fix every node of both branches stopped with
/// the same chunks missing and the rollout never finished.
const PARTIAL_VIEWS: &str = r#"
name = "partial-views"
seed = 10000
strategies = ["mesh"]
time_limit = "30min"
[patch]
size = "64MiB"
chunk_size = "1MiB"
[overlay]
wan_peers = 8
lan_peers = 4
[defaults]
nodes = 10
up = "100Mbit/s"
down = "200Mbit/s"
latency = "10ms"
[[site]]
name = "hq"
origin = true
up = "10Gbit/s"
down = "10Gbit/s"
latency = "2ms"
nic = "10Gbit/s"
[[site]]
name = "site-001"
[[site]]
name = "site-002"
"#;

#[test]
fn partial_site_views_finish() {
    let scenario = Scenario::from_toml(PARTIAL_VIEWS, Path::new("."), "test").expect("scenario loads");
    let report = simulate(&scenario, scenario.seed, &|_, _| {}).expect("simulation runs");
    assert!(report.results[0].makespan_s.is_some(), "some node never finished the patch");
}
