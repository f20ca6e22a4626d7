//! `patchmesh node`: the office-node daemon.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use patchmesh_node::NodeSettings;
use tokio::signal::unix::{SignalKind, signal};

#[derive(clap::Args)]
pub(crate) struct NodeArgs {
    /// The node's config file (see the README for its keys).
    #[arg(long)]
    config: PathBuf,
}

pub(crate) fn run(args: NodeArgs) -> anyhow::Result<ExitCode> {
    crate::status::init_logging();
    let settings = NodeSettings::load(&args.config)?;
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
