//! A discrete-event rollout simulator that drives the patchmesh protocol core over a
//! modelled WAN.
//!
//! A [`Scenario`] describes sites, their access links, an optional core graph, the patch
//! and events over time. [`simulate`] runs every strategy it names, each a
//! [`SourcePolicy`](patchmesh_core::SourcePolicy) of the real core
//! ([`patchmesh_core::Node`]), and computes the [lower bound](bound) no strategy can
//! beat. The simulator contains no protocol logic: which manifest to accept, what to
//! advertise, which chunk to request from which peer and what to serve are the core's
//! decisions. The simulator models what lies below the core: links and their sharing
//! ([`flow`]), routes ([`network`]), storage, time and gossip flooding ([`engine`]).
//!
//! # Determinism
//!
//! The same scenario and seed give the same [`Report`], byte for byte as JSON: virtual
//! time is an integer of microseconds, events are ordered by time and then by the order
//! they were scheduled, every random choice comes from a seeded generator, and no
//! collection is iterated in hash order.

pub mod bound;
pub mod engine;
mod fast_hash;
mod finish_queue;
pub mod flow;
pub mod gml;
mod hops;
pub mod manifest;
pub mod network;
mod overlay;
pub mod report;
pub mod scenario;
pub use patchmesh_core::units;

pub use bound::{LowerBound, lower_bound};
pub use engine::{CapTrace, Progress, RunOutcome, World};
pub use report::{Report, SiteResult, StrategyResult};
pub use scenario::{Scenario, ScenarioError, Strategy};

/// A `--seed` value that is not a number.
#[derive(Debug, thiserror::Error)]
#[error("invalid seed {text:?}: expected a whole number from 0 to 18446744073709551615")]
pub struct SeedError {
    /// The rejected text.
    pub text: String,
}

/// Parses a seed given on the command line.
pub fn parse_seed(text: &str) -> Result<u64, SeedError> {
    text.trim().parse().map_err(|_| SeedError { text: text.to_string() })
}

/// Runs every strategy of `scenario` with `seed` and reports. `progress` receives the
/// strategy being run and its progress.
///
/// Strategies share nothing, so each runs on a thread of its own, up to the number of
/// cores. A strategy's run is the same on any thread, so the report does not depend on
/// how many cores there are.
pub fn simulate(scenario: &Scenario, seed: u64, progress: &(dyn Fn(Strategy, Progress) + Sync)) -> Result<Report, String> {
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    simulate_on(scenario, seed, threads, progress)
}

/// [`simulate`] on at most `threads` threads; 0 or 1 runs the strategies one after the
/// other on the calling thread.
pub fn simulate_on(
    scenario: &Scenario,
    seed: u64,
    threads: usize,
    progress: &(dyn Fn(Strategy, Progress) + Sync),
) -> Result<Report, String> {
    let bound = lower_bound(scenario);
    let outcomes = run_strategies(scenario, seed, threads, progress)?;
    let results = outcomes.iter().map(|outcome| StrategyResult::from_outcome(scenario, outcome)).collect();
    let origin_budget_bytes = scenario.origin_budget.map(|copies| (copies * scenario.patch.bytes as f64).round() as u64);
    Ok(Report {
        scenario: scenario.name.clone(),
        seed,
        patch_bytes: scenario.patch.bytes,
        lower_bound_s: bound.seconds,
        origin_budget_bytes,
        lower_bound_budget_s: bound::budget_bound(scenario, &bound, origin_budget_bytes),
        results,
        bound: Some(bound),
        warnings: scenario.warnings.clone(),
    })
}

/// Runs each strategy of `scenario` on one of at most `threads` threads and returns their
/// outcomes in the scenario's order.
fn run_strategies(
    scenario: &Scenario,
    seed: u64,
    threads: usize,
    progress: &(dyn Fn(Strategy, Progress) + Sync),
) -> Result<Vec<RunOutcome>, String> {
    let run = |strategy: Strategy| -> Result<RunOutcome, String> {
        let world = World::new(scenario, strategy, seed)?;
        Ok(world.run(&mut |p| progress(strategy, p)))
    };
    let strategies = &scenario.strategies;
    if threads <= 1 || strategies.len() <= 1 {
        return strategies.iter().map(|&strategy| run(strategy)).collect();
    }
    // Threads take strategies in order from a shared counter, so the longest (listed
    // first by default: mesh) starts at once and the rest fill the other threads.
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut slots: Vec<Option<Result<RunOutcome, String>>> = (0..strategies.len()).map(|_| None).collect();
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads.min(strategies.len()))
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(&strategy) = strategies.get(index) else {
                            return done;
                        };
                        done.push((index, run(strategy)));
                    }
                })
            })
            .collect();
        for worker in workers {
            let done = match worker.join() {
                Ok(done) => done,
                Err(panic) => std::panic::resume_unwind(panic),
            };
            for (index, outcome) in done {
                slots[index] = Some(outcome);
            }
        }
    });
    slots.into_iter().map(|slot| slot.expect("every strategy ran")).collect()
}
