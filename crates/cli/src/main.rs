//! `patchmesh`: keys, publishing, rollout governance, the office-node daemon, status,
//! the demo and the simulator.

mod approve;
mod audit;
mod demo;
mod keygen;
mod keys;
mod members;
mod node;
mod publish;
mod recall;
mod sim;
mod status;
mod submit;
mod text;
mod trust;
mod verify;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use patchmesh_core::governance::ControlAction;

/// Peer-to-peer patch distribution: signed manifests, BLAKE3-verified chunks, office
/// nodes, rollout governance (trust files, approvals, recalls, membership lists) and an
/// audit log.
#[derive(Parser)]
#[command(name = "patchmesh", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate an ed25519 key pair (secret file mode 0600, public key in PATH.pub).
    Keygen(keygen::KeygenArgs),
    /// Chunk, hash and sign files into a manifest; optionally hand it to an origin node.
    Publish(publish::PublishArgs),
    /// Check a manifest's signatures against a trust file, and files against the manifest.
    Verify(verify::VerifyArgs),
    /// Create, sign, rotate, revoke and check format 2 trust files.
    Trust(trust::TrustArgs),
    /// Approve a manifest (a detached signature), or check its approval rule.
    Approve(approve::ApproveArgs),
    /// Sign a recall of a patch version: nodes stop installing and serving it for good.
    Recall(recall::ControlArgs),
    /// Sign a pause of a patch version's rollout.
    Pause(recall::ControlArgs),
    /// Sign a resume of a paused rollout.
    Resume(recall::ControlArgs),
    /// Maintain the signed list of nodes allowed in the mesh.
    Members(members::MembersArgs),
    /// Run an office-node daemon.
    Node(node::NodeArgs),
    /// Show a running node's peers and per-patch progress.
    Status(status::StatusArgs),
    /// Export a node's audit log as JSON lines and check its hash chain.
    Audit(audit::AuditArgs),
    /// Run a complete rollout on this machine: N office daemons and an origin on 127.0.0.1.
    Demo(demo::DemoArgs),
    /// Simulate a rollout over a modelled WAN.
    Sim(sim::SimArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Node(_) | Command::Demo(_)) {
        restore_default_sigpipe();
    }
    let result = match cli.command {
        Command::Keygen(args) => keygen::run(args),
        Command::Trust(args) => trust::run(args),
        Command::Approve(args) => approve::run(args),
        Command::Recall(args) => recall::run(ControlAction::Recall, args),
        Command::Pause(args) => recall::run(ControlAction::Pause, args),
        Command::Resume(args) => recall::run(ControlAction::Resume, args),
        Command::Members(args) => members::run(args),
        Command::Publish(args) => publish::run(args),
        Command::Verify(args) => verify::run(args),
        Command::Node(args) => node::run(args),
        Command::Status(args) => status::run(args),
        Command::Audit(args) => audit::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Sim(args) => sim::run(args).map(|()| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {}", error_chain(&error));
            ExitCode::FAILURE
        }
    }
}

/// Lets a closed stdout end the process quietly, as it does for other Unix tools:
/// `patchmesh trust show FILE | head -1` would otherwise panic in `println!` once
/// `head` exits. The Rust runtime ignores SIGPIPE; the daemons (`node`, `demo`) keep
/// it ignored so a peer or hook that closes a pipe or socket cannot kill them.
#[allow(unsafe_code)]
fn restore_default_sigpipe() {
    // SAFETY: signal(2) with a constant handler touches no memory of ours, and no
    // other thread exists yet to race with the change.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Joins an error and its causes with ": ", skipping a cause whose text the message
/// before it already contains. Library errors often print their source inline, so the
/// plain chain would say the same thing twice.
fn error_chain(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let message = cause.to_string();
        if text.contains(&message) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&message);
    }
    text
}

/// Parses an `--origin-budget` value: a positive number of patch copies.
fn parse_origin_budget(text: &str) -> anyhow::Result<f64> {
    let copies: f64 = text.trim().parse().map_err(|_| {
        anyhow::anyhow!("invalid --origin-budget {text:?}: expected a number of patch copies, such as 1.0")
    })?;
    patchmesh_sim::scenario::check_origin_budget(copies).map_err(|error| anyhow::anyhow!("invalid --origin-budget: {error}"))
}
