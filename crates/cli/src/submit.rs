//! Handing approvals and orders to a running node over its control socket.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use patchmesh_node::control::{self, ControlRequest, ControlResponse};

/// The `--submit` and `--socket` flags shared by `approve`, `recall`, `pause` and `resume`.
#[derive(clap::Args)]
pub(crate) struct SubmitArgs {
    /// Hand the result to the node at `--socket`, which passes it to every peer.
    #[arg(long)]
    pub(crate) submit: bool,
    /// The node's control socket (`control_socket` in its node.toml, by default
    /// `<data_dir>/control.sock`).
    #[arg(long, env = "PATCHMESH_SOCKET")]
    pub(crate) socket: Option<PathBuf>,
}

impl SubmitArgs {
    /// Sends `request` if `--submit` was given and prints what the node took.
    pub(crate) fn send(&self, request: &ControlRequest, what: &str) -> anyhow::Result<()> {
        if !self.submit {
            return Ok(());
        }
        let socket = self.socket.as_deref().context("--submit needs --socket SOCKET (or PATCHMESH_SOCKET) naming the node's control socket")?;
        let new = call(socket, request)?;
        println!("{what} handed to the node at {}: {new} new to it", socket.display());
        Ok(())
    }
}

/// Sends `request` to the node on `socket` and returns how many documents were new.
fn call(socket: &Path, request: &ControlRequest) -> anyhow::Result<usize> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    match runtime.block_on(control::call(socket, request, Duration::from_secs(10)))? {
        ControlResponse::Submitted { new } => Ok(new),
        ControlResponse::Error { message } => bail!("the node at {} rejected the request: {message}", socket.display()),
        other => bail!("unexpected response from the node at {}: {other:?}", socket.display()),
    }
}
