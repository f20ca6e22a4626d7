//! `patchmesh audit`: export a node's audit log and check its hash chain.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use patchmesh_core::governance::verify_audit_chain;
use patchmesh_node::control::{self, ControlRequest, ControlResponse};

/// The audit log's file name in a node's data dir.
const AUDIT_FILE: &str = "audit.jsonl";

#[derive(clap::Args)]
pub(crate) struct AuditArgs {
    /// Read `audit.jsonl` from this data dir (the node may be stopped); it wins over
    /// `--socket`.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Ask the running node at this control socket.
    #[arg(long, env = "PATCHMESH_SOCKET")]
    socket: Option<PathBuf>,
    /// Write the records as JSON lines to this file, or to standard output for `-`.
    #[arg(long, value_name = "PATH")]
    json: PathBuf,
}

pub(crate) fn run(args: AuditArgs) -> anyhow::Result<ExitCode> {
    let text = match (&args.data_dir, &args.socket) {
        (Some(dir), _) => {
            let path = dir.join(AUDIT_FILE);
            match std::fs::read_to_string(&path) {
                Ok(text) => text,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
                Err(error) => return Err(error).with_context(|| format!("cannot read {}", path.display())),
            }
        }
        (None, Some(socket)) => {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            match runtime.block_on(control::call(socket, &ControlRequest::Audit, Duration::from_secs(10)))? {
                ControlResponse::AuditLog { lines } => lines,
                ControlResponse::Error { message } => bail!("the node at {} reported an error: {message}", socket.display()),
                other => bail!("unexpected response from the node at {}: {other:?}", socket.display()),
            }
        }
        (None, None) => bail!("give --data-dir DIR or --socket SOCKET"),
    };
    let records = verify_audit_chain(&text).context("the audit log does not verify")?;
    if args.json.as_os_str() == "-" {
        std::io::stdout().write_all(text.as_bytes())?;
    } else {
        std::fs::write(&args.json, &text).with_context(|| format!("cannot write {}", args.json.display()))?;
    }
    eprintln!("{} audit records, hash chain intact", records.len());
    Ok(ExitCode::SUCCESS)
}
