//! Runs a scenario and prints the table and the JSON report, for development without
//! the `patchmesh` binary: `cargo run --release -p patchmesh-sim --example run -- FILE`.

use std::path::Path;
use std::time::Instant;

fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: run SCENARIO.toml [--json]");
        std::process::exit(2);
    };
    let json = std::env::args().any(|arg| arg == "--json");
    let scenario = match patchmesh_sim::Scenario::from_file(Path::new(&path)) {
        Ok(scenario) => scenario,
        Err(error) => {
            eprintln!("error: {error}");
            std::process::exit(1);
        }
    };
    for warning in &scenario.warnings {
        eprintln!("warning: {warning}");
    }
    let started = Instant::now();
    let report = match patchmesh_sim::simulate(&scenario, scenario.seed, &|strategy, progress| {
        if std::env::var_os("SIM_TRACE").is_some() {
            eprintln!("{} {progress:?}", strategy.name());
        }
    }) {
        Ok(report) => report,
        Err(error) => {
            eprintln!("error: {error}");
            std::process::exit(1);
        }
    };
    print!("{}", report.to_table(scenario.origin_site()));
    let events: u64 = report.results.iter().map(|result| result.events).sum();
    eprintln!("wall time {:.3} s, {events} events", started.elapsed().as_secs_f64());
    if json {
        print!("{}", report.to_json());
    }
}
