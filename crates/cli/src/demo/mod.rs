//! `patchmesh demo`: a complete rollout on this machine.
//!
//! Starts an origin node (`hq`) and N office nodes as separate processes on 127.0.0.1,
//! each with its own key, config, log and data dir; publishes a real file through the
//! origin's control API; shows progress; and stops when every office holds a verified,
//! byte-identical copy.

mod cluster;
mod report;
mod waves;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use patchmesh_core::{PatchId, PatchKey, Timestamp};

use cluster::Cluster;
use report::{NodeSummary, Summary};

#[derive(clap::Args)]
pub(crate) struct DemoArgs {
    /// Office nodes to start, besides the origin.
    #[arg(long, default_value_t = 26, value_parser = clap::value_parser!(u16).range(1..=200))]
    offices: u16,
    /// The file to roll out (default: this patchmesh executable).
    #[arg(long)]
    file: Option<PathBuf>,
    /// Where to keep keys, configs, logs and node data (default: a new temporary
    /// directory). Kept after exit; its path is printed.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Give up after this many seconds and exit non-zero, naming unfinished nodes.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    /// Write a JSON summary to PATH, or `-` for standard output.
    #[arg(long)]
    json: Option<String>,
    /// Give the origin an egress budget of this many patch copies, such as 1.0. Past it
    /// the origin serves only chunks no office holds.
    #[arg(long, value_name = "COPIES")]
    origin_budget: Option<String>,
    /// Roll out in two waves: office-01 alone first, then every other office once
    /// office-01 has verified its copy and stayed without failure for --wave-soak seconds.
    /// Fails if a wave 2 office stores a chunk before wave 1 verified.
    #[arg(long)]
    waves: bool,
    /// With --waves: seconds wave 1 must stay verified before wave 2 opens.
    #[arg(long, default_value_t = 3, value_name = "SECS", requires = "waves")]
    wave_soak: u64,
}

pub(crate) fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(run_demo(args))
}

async fn run_demo(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let file = match args.file {
        Some(file) => file,
        None => std::env::current_exe().context("cannot find this executable to use as the demo file")?,
    };
    let file = std::fs::canonicalize(&file).with_context(|| format!("cannot read --file {}", file.display()))?;
    let metadata = std::fs::metadata(&file).with_context(|| format!("cannot read --file {}", file.display()))?;
    if !metadata.is_file() {
        bail!("--file {} is not a regular file; give the file to roll out", file.display());
    }
    let patch_bytes = metadata.len();
    let origin_budget = args.origin_budget.as_deref().map(crate::parse_origin_budget).transpose()?;
    let root = prepare_data_dir(args.data_dir)?;
    eprintln!("demo data dir: {} (kept after exit)", root.display());

    let offices = usize::from(args.offices);
    let (publisher, nodes) = cluster::prepare(&root, offices, origin_budget)?;
    let mut cluster = Cluster::start(nodes)?;
    cluster.wait_listening(Duration::from_secs(30))?;
    cluster.connect_all().await?;
    wait_for_mesh(&cluster, offices).await;

    let created = Timestamp::now_system().as_secs();
    let patch = PatchKey { id: PatchId::new("demo-patch")?, version: created };
    let files = std::slice::from_ref(&file);
    let lifetime = Duration::from_secs(86_400);
    let manifest = if args.waves {
        let plan = waves::plan(created, args.wave_soak);
        crate::publish::build_planned_manifest(&patch, files, plan, created, lifetime, &publisher)?
    } else {
        crate::publish::build_manifest(&patch, files, None, None, created, lifetime, &publisher)?
    };
    let manifest_path = root.join("demo-patch.manifest.json");
    std::fs::write(&manifest_path, manifest.to_json()).with_context(|| format!("cannot write {}", manifest_path.display()))?;
    eprintln!(
        "publishing {} ({patch_bytes} bytes, {} chunks of {} bytes) to {} offices",
        file.display(),
        manifest.chunk_count(),
        manifest.header().chunk_size,
        offices
    );
    let origin_socket = cluster.nodes[0].socket.clone();
    let socket = origin_socket.clone();
    let files = vec![file.clone()];
    let submitted = manifest.clone();
    tokio::task::spawn_blocking(move || crate::publish::submit(&socket, &submitted, &files))
        .await
        .context("publish task failed")??;
    let published_at = Timestamp::now_system();
    let started = Instant::now();

    let progress = progress_bar(offices as u64 * u64::from(manifest.chunk_count()));
    let key = patch.to_string();
    let deadline = started + Duration::from_secs(args.timeout);
    let (statuses, finished) = loop {
        let statuses = cluster.statuses().await;
        let mut verified = 0u64;
        let mut complete = 0usize;
        for status in statuses.iter().skip(1).flatten() {
            if let Some(entry) = report::patch_entry(status, &patch) {
                verified += entry["chunks_verified"].as_u64().unwrap_or(0);
                if entry["state"] == "complete" {
                    complete += 1;
                }
            }
        }
        progress.set_position(verified);
        progress.set_message(format!("{complete}/{offices} offices verified"));
        if complete == offices {
            break (statuses, true);
        }
        let exited = cluster.exited();
        if !exited.is_empty() {
            progress.abandon();
            bail!("node(s) {} exited during the rollout; see their node.log under {}", exited.join(", "), root.display());
        }
        if Instant::now() > deadline {
            break (statuses, false);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    progress.finish_and_clear();

    let mut summary = Summary::build(&cluster, &statuses, &patch, &file, patch_bytes, published_at, finished)?;
    summary.origin_budget_bytes = origin_budget.map(|copies| (copies * patch_bytes as f64).round() as u64);
    if args.waves {
        let (waves, in_order) = waves::summarize(&summary.nodes);
        summary.waves = Some(waves);
        summary.waves_in_order = Some(in_order);
    }
    cluster.stop();
    summary.print_table(&key);
    if let Some(target) = &args.json {
        let json = serde_json::to_string_pretty(&summary)?;
        if target == "-" {
            println!("{json}");
        } else {
            std::fs::write(target, json + "\n").with_context(|| format!("cannot write --json {target}"))?;
        }
    }
    if !summary.all_verified {
        let unfinished: Vec<&str> = summary.nodes.iter().filter(|n| !n.verified).map(|n: &NodeSummary| n.name.as_str()).collect();
        eprintln!("error: not every office holds a verified copy after {} s: {}", args.timeout, unfinished.join(", "));
        return Ok(ExitCode::FAILURE);
    }
    if summary.waves_in_order == Some(false) {
        eprintln!("error: a wave 2 office stored a chunk before the last wave 1 office verified; see the node logs under {}", root.display());
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// Creates the demo's directory: the given one (which must be empty or new) or a new
/// temporary one.
fn prepare_data_dir(data_dir: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    match data_dir {
        Some(dir) => {
            if dir.exists() && std::fs::read_dir(&dir).with_context(|| format!("cannot read --data-dir {}", dir.display()))?.next().is_some() {
                bail!("--data-dir {} is not empty; choose a new or empty directory so no earlier data is overwritten", dir.display());
            }
            std::fs::create_dir_all(&dir).with_context(|| format!("cannot create --data-dir {}", dir.display()))?;
            Ok(std::fs::canonicalize(&dir)?)
        }
        None => Ok(tempfile::Builder::new().prefix("patchmesh-demo-").tempdir().context("cannot create a temporary directory")?.keep()),
    }
}

/// Waits until every node sees all others, up to 30 s; a slower mesh still works, it
/// only starts with fewer sources.
async fn wait_for_mesh(cluster: &Cluster, offices: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let statuses = cluster.statuses().await;
        let connected = statuses
            .iter()
            .flatten()
            .filter(|status| status.node["peers"].as_array().is_some_and(|peers| peers.len() >= offices))
            .count();
        if connected == offices + 1 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("warning: not every node connected to every other within 30 s; starting anyway");
}

fn progress_bar(total: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} chunks  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}
