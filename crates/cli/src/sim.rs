//! `patchmesh sim`: the rollout simulator.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{Context, bail};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use patchmesh_sim::{Scenario, Strategy};

/// Simulate rollouts over a modelled WAN before running them.
#[derive(clap::Args, Debug)]
pub(crate) struct SimArgs {
    #[command(subcommand)]
    command: SimCommand,
}

#[derive(clap::Subcommand, Debug)]
enum SimCommand {
    /// Run a scenario: every strategy it names, plus the lower bound, over the same
    /// network.
    Run {
        /// The scenario file (TOML); see docs/simulator.md for its format.
        scenario: PathBuf,
        /// Seed of every random choice; overrides the scenario's `seed` key. A whole
        /// number.
        #[arg(long, allow_negative_numbers = true)]
        seed: Option<String>,
        /// Write the JSON report to this file, or to standard output with `-`.
        #[arg(long, value_name = "PATH|-")]
        json: Option<String>,
        /// Write one CSV row per strategy and site to this file.
        #[arg(long, value_name = "PATH")]
        csv: Option<PathBuf>,
        /// Write an SVG chart (completion over time, bytes per link) to this file.
        #[arg(long, value_name = "PATH.svg")]
        plot: Option<PathBuf>,
        /// Run only these strategies (mesh, central, office-cache), comma-separated;
        /// default: the scenario's list.
        #[arg(long, value_delimiter = ',')]
        strategy: Vec<String>,
        /// Give the origin an egress budget of this many patch copies (for example 1.0)
        /// under the mesh strategy; overrides the scenario's `origin_budget` key.
        #[arg(long, value_name = "COPIES", allow_negative_numbers = true)]
        origin_budget: Option<String>,
        /// Run at most this many strategies at once, each on a thread of its own;
        /// default: the number of cores. Each running strategy keeps its own copy of the
        /// simulated network in memory.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
        jobs: Option<u16>,
        /// Do not print the table.
        #[arg(long, short)]
        quiet: bool,
    },
}

/// Runs a `patchmesh sim` command.
pub(crate) fn run(args: SimArgs) -> anyhow::Result<()> {
    match args.command {
        SimCommand::Run { scenario, seed, json, csv, plot, strategy, origin_budget, jobs, quiet } => run_scenario(RunOptions {
            path: scenario,
            seed,
            json,
            csv,
            plot,
            strategies: strategy,
            origin_budget,
            jobs: jobs.map(usize::from),
            quiet,
        }),
    }
}

struct RunOptions {
    path: PathBuf,
    seed: Option<String>,
    json: Option<String>,
    csv: Option<PathBuf>,
    plot: Option<PathBuf>,
    strategies: Vec<String>,
    origin_budget: Option<String>,
    jobs: Option<usize>,
    quiet: bool,
}

fn run_scenario(options: RunOptions) -> anyhow::Result<()> {
    let mut scenario = Scenario::from_file(&options.path)?;
    let seed = match &options.seed {
        Some(text) => patchmesh_sim::parse_seed(text)?,
        None => scenario.seed,
    };
    if !options.strategies.is_empty() {
        let mut chosen = Vec::new();
        for name in &options.strategies {
            let Some(strategy) = Strategy::ALL.into_iter().find(|s| s.name() == name.trim()) else {
                bail!("unknown strategy {name:?}: use mesh, central or office-cache");
            };
            chosen.push(strategy);
        }
        scenario.strategies = chosen;
    }
    if let Some(text) = &options.origin_budget {
        scenario.origin_budget = Some(crate::parse_origin_budget(text)?);
    }
    for warning in &scenario.warnings {
        eprintln!("warning: {warning}");
    }

    // One bar per strategy: strategies run side by side on as many cores as there are.
    let bars = MultiProgress::with_draw_target(if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    });
    let style = ProgressStyle::with_template("{prefix:>13} [{bar:40}] {pos}/{len} nodes  {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    let strategy_bars: Vec<(Strategy, ProgressBar)> = scenario
        .strategies
        .iter()
        .map(|&strategy| {
            let bar = bars.add(ProgressBar::new(0).with_style(style.clone()).with_prefix(strategy.name()));
            (strategy, bar)
        })
        .collect();
    let jobs = options.jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from));
    let report = patchmesh_sim::simulate_on(&scenario, seed, jobs, &|strategy, progress| {
        let Some((_, bar)) = strategy_bars.iter().find(|(s, _)| *s == strategy) else {
            return;
        };
        bar.set_length(progress.total as u64);
        bar.set_position(progress.complete as u64);
        bar.set_message(format!("virtual {:.1} s", progress.virtual_s));
    })
    .map_err(|error| anyhow::anyhow!("simulation of {} failed: {error}", options.path.display()))?;
    for (_, bar) in &strategy_bars {
        bar.finish_and_clear();
    }
    bars.clear().ok();

    let json_to_stdout = options.json.as_deref() == Some("-");
    if !options.quiet {
        let table = report.to_table(scenario.origin_site());
        if json_to_stdout {
            eprint!("{table}");
        } else {
            print!("{table}");
        }
    }
    if let Some(target) = &options.json {
        let text = report.to_json();
        if target == "-" {
            std::io::stdout().write_all(text.as_bytes()).context("cannot write the JSON report to standard output")?;
        } else {
            std::fs::write(target, text).with_context(|| format!("cannot write the JSON report to {target}"))?;
        }
    }
    if let Some(path) = &options.csv {
        std::fs::write(path, report.to_csv()).with_context(|| format!("cannot write the CSV to {}", path.display()))?;
    }
    if let Some(path) = &options.plot {
        std::fs::write(path, report.to_svg()).with_context(|| format!("cannot write the SVG to {}", path.display()))?;
    }
    Ok(())
}
