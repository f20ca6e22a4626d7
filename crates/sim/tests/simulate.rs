//! End-to-end simulations of small scenarios through the library API.

use std::path::Path;

use patchmesh_sim::{Scenario, Strategy, simulate, simulate_on};
use proptest::prelude::*;

fn scenario(text: &str) -> Scenario {
    match Scenario::from_toml(text, Path::new("."), "test") {
        Ok(scenario) => scenario,
        Err(error) => panic!("scenario rejected: {error}"),
    }
}

fn run(scenario: &Scenario) -> patchmesh_sim::Report {
    simulate(scenario, scenario.seed, &|_, _| {}).expect("simulation runs")
}

/// canaccord-26 with its patch shrunk so the test stays fast in a debug build.
fn small_canaccord() -> Scenario {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../simulations/canaccord-26.toml");
    let mut scenario = Scenario::from_file(Path::new(path)).expect("canaccord-26 loads");
    scenario.patch.bytes = 8 << 20;
    scenario.patch.chunk_size = 256 << 10;
    scenario
}

#[test]
fn canaccord_reports_every_strategy() {
    let scenario = small_canaccord();
    assert!(scenario.uncongested_core(), "canaccord-26 must sit on an uncongested core");
    assert_eq!(scenario.sites.len(), 26);
    let report = run(&scenario);
    let names: Vec<&str> = report.results.iter().map(|r| r.strategy.as_str()).collect();
    assert_eq!(names, ["mesh", "central", "office-cache"]);
    assert!(report.lower_bound_s > 0.0);
    for result in &report.results {
        let makespan = result.makespan_s.expect("every site completes");
        assert!(makespan >= report.lower_bound_s, "{} beat the bound: {makespan} < {}", result.strategy, report.lower_bound_s);
        assert_eq!(result.per_site.len(), 26);
    }
    let central = &report.results[1];
    assert_eq!(central.origin_egress_bytes, 25 * (8 << 20), "central sends one copy per branch");
}

#[test]
fn same_seed_same_json() {
    let scenario = small_canaccord();
    let first = run(&scenario).to_json();
    let second = run(&scenario).to_json();
    assert_eq!(first, second);
}

#[test]
fn threads_do_not_change_the_report() {
    let scenario = small_canaccord();
    let sequential = simulate_on(&scenario, scenario.seed, 1, &|_, _| {}).expect("simulation runs").to_json();
    let parallel = simulate_on(&scenario, scenario.seed, 3, &|_, _| {}).expect("simulation runs").to_json();
    assert_eq!(sequential, parallel);
}

#[test]
fn json_has_the_documented_keys() {
    let scenario = small_canaccord();
    let report = run(&scenario);
    let value: serde_json::Value = serde_json::from_str(&report.to_json()).expect("valid JSON");
    let top: Vec<&str> = value.as_object().expect("object").keys().map(String::as_str).collect();
    assert_eq!(top, ["lower_bound_budget_s", "lower_bound_s", "origin_budget_bytes", "patch_bytes", "results", "scenario", "seed"]);
    let result = &value["results"][0];
    let mut keys: Vec<&str> = result.as_object().expect("object").keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["makespan_s", "max_site_wan_ingress_bytes", "origin_budget_overruns", "origin_egress_bytes", "p50_s", "p95_s", "per_site", "strategy", "total_wan_bytes"]
    );
    let site = &result["per_site"][0];
    let mut keys: Vec<&str> = site.as_object().expect("object").keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["completion_s", "site", "wan_egress_bytes", "wan_ingress_bytes"]);
}

const OFFICES: &str = r#"
name = "offices"
seed = 3
[patch]
size = "4MiB"
chunk_size = "256KiB"
[defaults]
nodes = 3
up = "50Mbit/s"
down = "100Mbit/s"
latency = "5ms"
[[site]]
name = "hq"
origin = true
nodes = 1
up = "200Mbit/s"
[[site]]
name = "a"
[[site]]
name = "b"
[[site]]
name = "c"
"#;

#[test]
fn office_cache_fetches_once_per_site() {
    let report = run(&scenario(OFFICES));
    let cache = report.results.iter().find(|r| r.strategy == "office-cache").expect("office-cache ran");
    let central = report.results.iter().find(|r| r.strategy == "central").expect("central ran");
    assert_eq!(cache.origin_egress_bytes, 3 * (4 << 20), "one copy per branch site");
    assert_eq!(central.origin_egress_bytes, 9 * (4 << 20), "one copy per branch node");
    for site in cache.per_site.iter().skip(1) {
        assert_eq!(site.wan_ingress_bytes, 4 << 20, "site {}", site.site);
    }
}

#[test]
fn events_crash_restart_join_publish_and_links() {
    let text = format!(
        r#"{OFFICES}
[[event]]
at = "100ms"
kind = "crash"
node = "a/1"
[[event]]
at = "150ms"
kind = "link-down"
site = "b"
[[event]]
at = "300ms"
kind = "publish"
id = "SECOND"
size = "1MiB"
[[event]]
at = "400ms"
kind = "link-up"
site = "b"
[[event]]
at = "500ms"
kind = "restart"
node = "a/1"
[[event]]
at = "700ms"
kind = "join"
site = "c"
"#
    );
    let scenario = scenario(&text);
    let report = run(&scenario);
    for result in &report.results {
        for site in &result.per_site {
            let completion = site.completion_s.unwrap_or_else(|| panic!("{}: site {} never completed", result.strategy, site.site));
            if site.site == "c" {
                assert!(completion >= 0.7, "{}: late joiners finished before joining", result.strategy);
            }
            if site.site == "b" {
                assert!(completion >= 0.4, "{}: site b finished while cut off", result.strategy);
            }
        }
        assert_eq!(result.later_patches.len(), 1);
        assert!(result.later_patches[0].1.is_some(), "{}: the second patch never finished", result.strategy);
        assert!(result.makespan_s.unwrap_or(0.0) >= report.lower_bound_s);
    }
}

#[test]
fn hub_and_spoke_bound_uses_cuts() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../simulations/hub-and-spoke-12.toml");
    let scenario = Scenario::from_file(Path::new(path)).expect("loads");
    assert!(!scenario.uncongested_core());
    let bound = patchmesh_sim::lower_bound(&scenario);
    // The slowest circuit (20 Mbit/s) limits its branch: F / 2.5 MB/s.
    let expected = scenario.patch.bytes as f64 / 2.5e6;
    assert!((bound.seconds - expected).abs() < 1e-6, "bound {} expected {expected}", bound.seconds);
    assert_eq!(bound.binding_term(), "cut max F/maxflow(s,i)");
}

#[test]
fn geant_topology_imports() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../simulations/geant-2012.toml");
    let scenario = Scenario::from_file(Path::new(path)).expect("loads");
    assert_eq!(scenario.sites.len(), 40);
    assert!(!scenario.core_links.is_empty());
    assert!(scenario.sites.iter().any(|site| site.origin && site.name == "NL"));
}

/// A random small scenario: 2 to 5 sites with random links, optionally on a core ring,
/// with exact or batched rate recomputation.
fn random_scenario(sites: usize, rates: Vec<(u32, u32, u32)>, nodes: Vec<u32>, core: bool, interval_ms: u32, seed: u64) -> String {
    let mut text = format!(
        "seed = {seed}\n[patch]\nsize = \"2MiB\"\nchunk_size = \"128KiB\"\n[overlay]\nwan_peers = 3\nlan_peers = 2\n[model]\nrate_interval = \"{interval_ms}ms\"\n"
    );
    for site in 0..sites {
        let (up, down, latency) = rates[site];
        let origin = if site == 0 { "origin = true\n" } else { "" };
        text.push_str(&format!(
            "[[site]]\nname = \"s{site}\"\n{origin}nodes = {}\nup = \"{up}Mbit/s\"\ndown = \"{down}Mbit/s\"\nlatency = \"{latency}ms\"\n",
            nodes[site]
        ));
    }
    if core {
        for site in 0..sites {
            let next = (site + 1) % sites;
            if next != site && !(sites == 2 && site == 1) {
                let (capacity, _, latency) = rates[(site + 2) % sites];
                text.push_str(&format!(
                    "[[link]]\na = \"s{site}\"\nb = \"s{next}\"\ncapacity = \"{capacity}Mbit/s\"\nlatency = \"{latency}ms\"\n"
                ));
            }
        }
    }
    text
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 12,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x51b0),
        ..ProptestConfig::default()
    })]

    #[test]
    fn no_strategy_beats_the_bound(
        sites in 2usize..5,
        rates in proptest::collection::vec((5u32..200, 5u32..200, 1u32..30), 5),
        nodes in proptest::collection::vec(1u32..3, 5),
        core in any::<bool>(),
        interval_ms in prop_oneof![Just(0u32), Just(10u32)],
        budget in prop_oneof![Just(None), proptest::strategy::Strategy::prop_map(1.0f64..2.0, Some)],
        seed in any::<u64>(),
    ) {
        let mut scenario = scenario(&random_scenario(sites, rates, nodes, core, interval_ms, seed));
        scenario.origin_budget = budget;
        let report = run(&scenario);
        for result in &report.results {
            let makespan = result.makespan_s.expect("every site completes");
            prop_assert!(
                makespan >= report.lower_bound_s,
                "{} finished in {makespan} s, under the bound {} s", result.strategy, report.lower_bound_s
            );
        }
        // Only the mesh keeps the budget, so only it must respect T_B and the budget.
        let mesh = &report.results[0];
        prop_assert_eq!(mesh.strategy.as_str(), "mesh");
        let makespan = mesh.makespan_s.expect("every site completes");
        prop_assert!(
            makespan >= report.lower_bound_budget_s,
            "mesh finished in {makespan} s, under the budget bound {} s", report.lower_bound_budget_s
        );
        if let Some(budget) = report.origin_budget_bytes {
            let allowed = budget + mesh.origin_budget_overruns * u64::from(scenario.patch.chunk_size);
            prop_assert!(
                mesh.origin_egress_bytes <= allowed,
                "origin sent {} bytes, budget plus overruns {allowed}", mesh.origin_egress_bytes
            );
        }
    }
}

#[test]
fn strategies_follow_the_scenario_list() {
    let text = OFFICES.replace("seed = 3", "seed = 3\nstrategies = [\"central\"]");
    let report = run(&scenario(&text));
    assert_eq!(report.results.len(), 1);
    assert_eq!(report.results[0].strategy, Strategy::Central.name());
}

#[test]
fn plot_stays_within_chart() {
    // An origin site with a second node is itself a receiving site; the completion curve
    // once overshot 100% when it was left out of the denominator.
    let text = OFFICES.replace("origin = true\nnodes = 1", "origin = true\nnodes = 2");
    let report = run(&scenario(&text));
    let svg = report.to_svg();
    let frame = svg.lines().find(|line| line.contains(r##"stroke="#999""##)).expect("chart frame");
    let top: f64 = frame.split("y=\"").nth(1).and_then(|rest| rest.split('"').next()).and_then(|v| v.parse().ok()).expect("frame y");
    for line in svg.lines().filter(|line| line.starts_with("<polyline")) {
        let points = line.split("points=\"").nth(1).and_then(|rest| rest.split('"').next()).expect("points");
        for point in points.split_whitespace() {
            let y: f64 = point.split(',').nth(1).and_then(|v| v.parse().ok()).expect("y");
            assert!(y >= top - 0.05, "point {point} lies above the chart's top at {top}");
        }
    }
}
