//! `patchmesh status`, and logging setup shared by the commands.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use patchmesh_node::control::{self, ControlRequest, ControlResponse, StatusReport};
use patchmesh_node::hooks::{HookKind, HookRecord};

#[derive(clap::Args)]
pub(crate) struct StatusArgs {
    /// The node's control socket: `control_socket` in its node.toml, by default
    /// `<data_dir>/control.sock`.
    #[arg(long, env = "PATCHMESH_SOCKET")]
    socket: PathBuf,
    /// Print the full status as JSON.
    #[arg(long)]
    json: bool,
    /// Show one patch series: its versions, approvals present and missing, orders and the
    /// node's rollout wave.
    #[arg(long, value_name = "ID")]
    patch: Option<String>,
}

/// Logs to standard error; `RUST_LOG` overrides the default level, `info`.
pub(crate) fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,libp2p=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

pub(crate) fn run(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let report = fetch_status(&args.socket)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(id) = &args.patch {
        return print_patch(&report, id);
    }
    print_report(&report);
    Ok(ExitCode::SUCCESS)
}

/// Prints every version of patch series `id` with its approvals and rollout state.
fn print_patch(report: &StatusReport, id: &str) -> anyhow::Result<ExitCode> {
    // Logs, hooks and the patch table name versions as `id@version`; take that form too.
    let (id, version) = match id.split_once('@') {
        Some((id, version)) => {
            let version: u64 = version.parse().with_context(|| format!("--patch {id}@{version}: the version is not a number; give ID or ID@VERSION, such as KB1@3"))?;
            (id, Some(version))
        }
        None => (id, None),
    };
    let node = &report.node;
    let patches: Vec<&serde_json::Value> = node["patches"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|patch| patch["patch_id"] == id && version.is_none_or(|version| patch["version"] == version))
        .collect();
    let recalled: Vec<&str> = node["recalled"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(serde_json::Value::as_str)
        .filter(|key| key.split('@').next() == Some(id))
        .collect();
    if patches.is_empty() && recalled.is_empty() {
        anyhow::bail!("patch {id:?} not found on the node; `patchmesh status --socket S` lists its patches");
    }
    let list = |value: &serde_json::Value| {
        let items: Vec<&str> = value.as_array().into_iter().flatten().filter_map(serde_json::Value::as_str).collect();
        if items.is_empty() { "none".to_string() } else { items.join(", ") }
    };
    for patch in patches {
        let version = patch["version"].as_u64().unwrap_or(0);
        let state = shown_state(patch, &report.hooks);
        let rollout = patch["rollout"].as_str().unwrap_or("-");
        println!("{id}@{version}: {state}, rollout {rollout}, {}/{} chunks", patch["chunks_verified"], patch["chunk_count"]);
        print_wave(&patch["wave"]);
        let approvals = &patch["approvals"];
        if approvals.is_null() {
            println!("  approvals: not needed (format 1 trust file)");
            continue;
        }
        let met = if approvals["met"].as_bool() == Some(true) { "met" } else { "not met" };
        println!("  approval rule: {met}");
        println!("  present: {}", list(&approvals["present"]));
        println!("  missing: {}", list(&approvals["missing"]));
        if let Some(reason) = approvals["rejected"].as_str() {
            println!("  rejected: {reason}");
        }
    }
    for key in recalled {
        println!("{key}: recalled; the node holds and serves none of it");
    }
    Ok(ExitCode::SUCCESS)
}

/// Returns the state to show for a patch version: what keeps it from fetching, if
/// anything, else its transfer state. The transfer alone would read `fetching-body` for a version that
/// requests nothing while it waits for approvals or its wave.
fn shown_state<'a>(patch: &'a serde_json::Value, hooks: &[HookRecord]) -> &'a str {
    let key = format!("{}@{}", patch["patch_id"].as_str().unwrap_or("-"), patch["version"].as_u64().unwrap_or(0));
    let hook_failed = hooks.iter().any(|record| record.is_failure() && record.event.kind == HookKind::Verified && record.event.patch.to_string() == key);
    if patch["rollout"] == "paused" {
        "paused"
    } else if patch["approvals"]["met"] == false {
        "waiting-approval"
    } else if !patch["wave"].is_null() && patch["wave"]["wave"].is_null() {
        "not-in-plan"
    } else if !patch["wave"].is_null() && patch["wave"]["state"] != "open" {
        "waiting-for-wave"
    } else if hook_failed {
        "hook-failed"
    } else {
        patch["state"].as_str().unwrap_or("-")
    }
}

/// Prints the node's wave for one patch version and each wave's counts, if a plan gates it.
fn print_wave(wave: &serde_json::Value) {
    if wave.is_null() {
        println!("  wave: not gated (no rollout plan, or the origin)");
        return;
    }
    let number = wave["wave"].as_u64().map_or_else(|| "none".to_string(), |n| n.to_string());
    println!("  wave: {number}, {}", wave["state"].as_str().unwrap_or("-"));
    if let Some(reason) = wave["reason"].as_str() {
        println!("    {reason}");
    }
    for (index, count) in wave["progress"].as_array().into_iter().flatten().enumerate() {
        println!(
            "    wave {}: {} of {} nodes verified, {} failed",
            index + 1,
            count["verified"].as_u64().unwrap_or(0),
            count["nodes"].as_u64().unwrap_or(0),
            count["failed"].as_u64().unwrap_or(0)
        );
    }
}

/// Prints the mesh-wide view: per site and patch version, the totals of the latest
/// signed status reports the node holds.
fn print_mesh(node: &serde_json::Value) {
    let rows = node["mesh"].as_array().cloned().unwrap_or_default();
    println!("
mesh, from signed status reports ({} site rows):", rows.len());
    println!(
        "  {:<16} {:<24} {:>12} {:>6} {:>9} {:>7} {:>8} {:>9} {:>14} {:>14} {:>14} {:>8}",
        "site", "patch", "version", "nodes", "verified", "failed", "waiting", "recalled", "origin B", "same site B", "other sites B", "age s"
    );
    let number = |value: &serde_json::Value| value.as_u64().unwrap_or(0);
    for row in rows {
        println!(
            "  {:<16} {:<24} {:>12} {:>6} {:>9} {:>7} {:>8} {:>9} {:>14} {:>14} {:>14} {:>8.1}",
            row["site"].as_str().unwrap_or("-"),
            row["patch_id"].as_str().unwrap_or("-"),
            number(&row["version"]),
            number(&row["nodes"]),
            number(&row["verified"]),
            number(&row["failed"]),
            number(&row["waiting_for_wave"]),
            number(&row["recalled"]),
            number(&row["bytes"]["origin"]),
            number(&row["bytes"]["same_site"]),
            number(&row["bytes"]["other_sites"]),
            row["newest_report_age_s"].as_f64().unwrap_or(0.0)
        );
    }
}

/// Asks the node on `socket` for its status.
pub(crate) fn fetch_status(socket: &std::path::Path) -> anyhow::Result<StatusReport> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let response = runtime.block_on(control::call(socket, &ControlRequest::Status, Duration::from_secs(10)))?;
    match response {
        ControlResponse::Status(report) => Ok(*report),
        ControlResponse::Error { message } => {
            Err(anyhow::anyhow!("node at {} reported an error: {message}", socket.display()))
        }
        other => Err(anyhow::anyhow!("unexpected response from the node at {}: {other:?}", socket.display())),
    }
}

fn print_report(report: &StatusReport) {
    let node = &report.node;
    let text = |value: &serde_json::Value| value.as_str().unwrap_or("-").to_string();
    let number = |value: &serde_json::Value| value.as_u64().unwrap_or(0);
    println!("peer id: {}", report.peer_id);
    println!("site:    {}  role: {}", text(&node["site"]), text(&node["role"]));
    for address in &report.listen {
        println!("listen:  {address}");
    }

    let peers = node["peers"].as_array().cloned().unwrap_or_default();
    println!("\npeers ({}):", peers.len());
    println!("  {:<54} {:<16} {:>8} {:>14} {:>14}", "peer", "site", "role", "received B", "sent B");
    for peer in peers {
        println!(
            "  {:<54} {:<16} {:>8} {:>14} {:>14}",
            text(&peer["peer"]),
            text(&peer["site"]),
            text(&peer["role"]),
            number(&peer["bytes_received"]),
            number(&peer["bytes_sent"])
        );
    }

    let patches = node["patches"].as_array().cloned().unwrap_or_default();
    println!("\npatches ({}):", patches.len());
    println!(
        "  {:<32} {:>12} {:<14} {:>15} {:>14} {:>14} {:>14}",
        "patch", "version", "state", "chunks", "from origin B", "from peers B", "served B"
    );
    for patch in patches {
        let chunks = format!("{}/{}", number(&patch["chunks_verified"]), number(&patch["chunk_count"]));
        println!(
            "  {:<32} {:>12} {:<14} {:>15} {:>14} {:>14} {:>14}",
            text(&patch["patch_id"]),
            number(&patch["version"]),
            shown_state(&patch, &report.hooks),
            chunks,
            number(&patch["stats"]["bytes_from_origin"]),
            number(&patch["stats"]["bytes_from_peers"]),
            number(&patch["stats"]["bytes_served"])
        );
        if patch["rollout"] == "paused" {
            println!("    paused by an order: not fetching");
        }
        if let Some(reason) = patch["wave"]["reason"].as_str().filter(|_| patch["wave"]["state"] != "open") {
            println!("    {reason}");
        }
        if patch["approvals"]["met"] == false {
            let missing: Vec<&str> = patch["approvals"]["missing"].as_array().into_iter().flatten().filter_map(serde_json::Value::as_str).collect();
            println!("    waiting for approvals: needs {}", missing.join(" and "));
        }
    }
    for key in node["recalled"].as_array().into_iter().flatten().filter_map(serde_json::Value::as_str) {
        println!("  {key}: recalled");
    }
    print_mesh(node);

    let failed: Vec<_> = report.hooks.iter().filter(|record| record.is_failure()).collect();
    if !failed.is_empty() {
        println!("\nfailed hooks ({}):", failed.len());
        for record in failed {
            let outcome = record.outcome.as_ref().map(ToString::to_string).unwrap_or_default();
            match &record.last_stderr_line {
                Some(line) => println!("  {} {}: {outcome}: {line}", record.event.kind, record.event.patch),
                None => println!("  {} {}: {outcome}", record.event.kind, record.event.patch),
            }
        }
    }
}
