//! Business-hour WAN caps in the simulator: capacities follow the windows, and no
//! 1-second window carries more than the cap.

use std::path::Path;

use patchmesh_sim::{CapTrace, Scenario, World};

/// Three branches at 20 Mbit/s down, capped to 20% on weekdays from 08:00 to 18:00
/// London time. The rollout starts at 07:59:30 on a Monday, so the cap begins 30 s in.
const CAPPED: &str = r#"
name = "capped"
seed = 5
start = "2026-12-07T07:59:30Z"
strategies = ["mesh"]

[patch]
size = "64MiB"
chunk_size = "256KiB"

[defaults]
up = "10Mbit/s"
down = "20Mbit/s"
latency = "10ms"

[[site]]
name = "hq"
origin = true
up = "100Mbit/s"
down = "100Mbit/s"

[[site]]
name = "b1"

[[site]]
name = "b2"

[[site]]
name = "b3"

[[cap]]
direction = "down"
time_zone = "Europe/London"
rate = "100%"
window = [{ days = "mon-fri", from = "08:00", to = "18:00", rate = "20%" }]
"#;

/// The value of a step function at `at`.
fn value_at(steps: &[(u64, f64)], at: u64) -> f64 {
    steps.iter().take_while(|(time, _)| *time <= at).last().map_or(0.0, |step| step.1)
}

/// Bytes a step function of rates adds up to over [from, to), in microseconds.
fn integral(steps: &[(u64, f64)], from: u64, to: u64) -> f64 {
    let mut total = 0.0;
    for (index, &(start, rate)) in steps.iter().enumerate() {
        let end = steps.get(index + 1).map_or(u64::MAX, |next| next.0);
        let (low, high) = (start.max(from), end.min(to));
        if high > low {
            total += rate * (high - low) as f64 / 1e6;
        }
    }
    total
}

fn run() -> (Scenario, Vec<CapTrace>, Option<u64>) {
    let scenario = Scenario::from_toml(CAPPED, Path::new("."), "capped").expect("scenario loads");
    let world = World::new(&scenario, scenario.strategies[0], scenario.seed).expect("world builds");
    let outcome = world.run(&mut |_| {});
    let done = outcome.nodes.iter().filter(|node| !node.origin).map(|node| node.completed_us).collect::<Option<Vec<_>>>();
    (scenario, outcome.cap_traces, done.and_then(|times| times.into_iter().max()))
}

#[test]
fn cap_follows_business_hours() {
    let (scenario, traces, finished) = run();
    assert!(finished.is_some(), "some branch never finished");
    assert_eq!(traces.len(), 3, "one trace per branch downlink");
    let link = scenario.sites[1].down;
    for trace in &traces {
        let before = value_at(&trace.cap, 29_000_000);
        let after = value_at(&trace.cap, 31_000_000);
        assert!((before - link).abs() < 1e-6, "site {}: cap {before} before 08:00", trace.site);
        assert!((after - 0.2 * link).abs() < 1e-6, "site {}: cap {after} after 08:00", trace.site);
    }
}

#[test]
fn no_window_exceeds_cap() {
    let (_, traces, finished) = run();
    let end = finished.expect("every branch finishes");
    for trace in &traces {
        for &(at, load) in &trace.load {
            let cap = value_at(&trace.cap, at);
            assert!(load <= cap * (1.0 + 1e-9), "site {} at {at} us: load {load} over cap {cap}", trace.site);
        }
        // Every 1-second window, starting every 100 ms.
        let mut start = 0;
        while start < end {
            let carried = integral(&trace.load, start, start + 1_000_000);
            let allowed = integral(&trace.cap, start, start + 1_000_000);
            assert!(carried <= allowed * 1.05, "site {}: {carried} bytes in the second from {start} us, cap {allowed}", trace.site);
            start += 100_000;
        }
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig {
        cases: 16,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0xca95),
        ..Default::default()
    })]

    /// Random caps, windows, time zones and start times: no capped link ever carries
    /// more than its cap at that instant, and every branch still finishes.
    #[test]
    fn random_caps_never_exceeded(
        base_percent in 10u32..=100,
        window_percent in 5u32..=100,
        from_hour in 0u32..24,
        hours in 1u32..12,
        zone in proptest::sample::select(vec!["UTC", "Europe/London", "America/New_York", "Asia/Kolkata"]),
        start_minute in 0u64..(7 * 24 * 60),
        direction in proptest::sample::select(vec!["up", "down", "both"]),
        seed in 0u64..1000,
    ) {
        let start = jiff::Timestamp::from_second(1_796_601_600 + start_minute as i64 * 60).expect("valid time");
        let text = CAPPED
            .replace("seed = 5", &format!("seed = {seed}"))
            .replace("start = \"2026-12-07T07:59:30Z\"", &format!("start = \"{start}\""))
            .replace("size = \"64MiB\"", "size = \"8MiB\"")
            .replace("direction = \"down\"", &format!("direction = \"{direction}\""))
            .replace("time_zone = \"Europe/London\"", &format!("time_zone = \"{zone}\""))
            .replace("rate = \"100%\"", &format!("rate = \"{base_percent}%\""))
            .replace(
                "window = [{ days = \"mon-fri\", from = \"08:00\", to = \"18:00\", rate = \"20%\" }]",
                &format!(
                    "window = [{{ from = \"{from_hour:02}:00\", to = \"{:02}:00\", rate = \"{window_percent}%\" }}]",
                    (from_hour + hours) % 24
                ),
            );
        let scenario = Scenario::from_toml(&text, Path::new("."), "capped").expect("scenario loads");
        let world = World::new(&scenario, scenario.strategies[0], scenario.seed).expect("world builds");
        let outcome = world.run(&mut |_| {});
        let finished = outcome.nodes.iter().filter(|node| !node.origin).all(|node| node.completed_us.is_some());
        proptest::prop_assert!(finished, "a branch never finished");
        for trace in &outcome.cap_traces {
            for &(at, load) in &trace.load {
                let cap = value_at(&trace.cap, at);
                proptest::prop_assert!(load <= cap * (1.0 + 1e-9), "site {} at {} us: load {} over cap {}", trace.site, at, load, cap);
            }
        }
    }
}
