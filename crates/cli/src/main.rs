//! `patchmesh`: keys, publishing, the office-node daemon, status, the demo and the
//! simulator.

mod demo;
mod keys;
mod node;
mod publish;
mod sim;
mod status;
mod verify;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Peer-to-peer patch distribution: signed manifests, BLAKE3-verified chunks, office nodes.
#[derive(Parser)]
#[command(name = "patchmesh", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate an ed25519 key pair (secret file mode 0600, public key in PATH.pub).
    Keygen(keys::KeygenArgs),
    /// Chunk, hash and sign files into a manifest; optionally hand it to an origin node.
    Publish(publish::PublishArgs),
    /// Check a manifest's signatures against a trust file, and files against the manifest.
    Verify(verify::VerifyArgs),
    /// Run an office-node daemon.
    Node(node::NodeArgs),
    /// Show a running node's peers and per-patch progress.
    Status(status::StatusArgs),
    /// Run a complete rollout on this machine: N office daemons and an origin on 127.0.0.1.
    Demo(demo::DemoArgs),
    /// Simulate a rollout over a modelled WAN.
    Sim(sim::SimArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Keygen(args) => keys::run(args),
        Command::Publish(args) => publish::run(args),
        Command::Verify(args) => verify::run(args),
        Command::Node(args) => node::run(args),
        Command::Status(args) => status::run(args),
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
