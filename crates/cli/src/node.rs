//! `patchmesh node`: the office-node daemon, and `patchmesh node reload`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use patchmesh_node::NodeSettings;
use patchmesh_node::control::{self, ControlRequest, ControlResponse};
use tokio::signal::unix::{SignalKind, signal};

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub(crate) struct NodeArgs {
    #[command(subcommand)]
    command: Option<NodeCommand>,
    /// The node's config file (`docs/configuration.md` lists its keys).
    #[arg(long, required = true)]
    config: Option<PathBuf>,
}

#[derive(clap::Subcommand)]
enum NodeCommand {
    /// Make a running node read its config file again: `[caps]`, `[hooks]` and
    /// `disk_budget` apply at once, other changes need a restart. SIGHUP does the same.
    Reload(ReloadArgs),
}

#[derive(clap::Args)]
struct ReloadArgs {
    /// The node's config file; its `control_socket` names the node. The file is checked
    /// here first, so a broken file never reaches the node.
    #[arg(long, conflicts_with = "socket", required_unless_present = "socket")]
    config: Option<PathBuf>,
    /// The node's control socket, instead of --config.
    #[arg(long)]
    socket: Option<PathBuf>,
}

pub(crate) fn run(args: NodeArgs) -> anyhow::Result<ExitCode> {
    match (args.command, args.config) {
        (Some(NodeCommand::Reload(reload)), _) => run_reload(reload),
        (None, Some(config)) => run_daemon(config),
        (None, None) => bail!("give --config node.toml to run a node, or `patchmesh node reload` to reload one"),
    }
}

fn run_daemon(config: PathBuf) -> anyhow::Result<ExitCode> {
    crate::status::init_logging();
    let settings = NodeSettings::load(&config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let mut terminate = signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?;
        let mut interrupt = signal(SignalKind::interrupt()).context("cannot install the SIGINT handler")?;
        let shutdown = async move {
            tokio::select! {
                _ = terminate.recv() => tracing::info!("SIGTERM received"),
                _ = interrupt.recv() => tracing::info!("SIGINT received"),
            }
        };
        patchmesh_node::run(settings, shutdown).await.context("node failed")
    })?;
    Ok(ExitCode::SUCCESS)
}

fn run_reload(args: ReloadArgs) -> anyhow::Result<ExitCode> {
    let socket = match (&args.socket, &args.config) {
        (Some(socket), _) => socket.clone(),
        (None, Some(config)) => {
            let settings = NodeSettings::load(config).context("not reloading; the node keeps its current settings")?;
            settings.control_socket
        }
        (None, None) => bail!("give --config node.toml or --socket SOCKET"),
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    match runtime.block_on(control::call(&socket, &ControlRequest::Reload, Duration::from_secs(10)))? {
        ControlResponse::Reloaded { path, applied, restart_needed } => {
            let applied = match (applied.is_empty(), restart_needed.is_empty()) {
                (false, _) => format!("applied {}", applied.join(", ")),
                (true, true) => "nothing changed".to_string(),
                (true, false) => "no setting applied".to_string(),
            };
            println!("reloaded {}: {applied}", path.display());
            for key in &restart_needed {
                eprintln!("warning: {key} changed, but only a restart applies it; the node keeps the current value");
            }
            Ok(ExitCode::SUCCESS)
        }
        ControlResponse::Error { message } => bail!("the node at {} rejected the reload: {message}", socket.display()),
        other => bail!("unexpected response from the node at {}: {other:?}", socket.display()),
    }
}
