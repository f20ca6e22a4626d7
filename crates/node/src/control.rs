//! The local control API: newline-delimited JSON over a Unix socket.
//!
//! The socket is created with mode 0600 in a directory the node owns, so only the node's
//! user (and root) can publish or query. Each connection carries one [`ControlRequest`]
//! line and gets one [`ControlResponse`] line back.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use patchmesh_core::governance::{Approval, RolloutControl, SignedMembership, SignedPolicy};
use patchmesh_core::protocol::NodeStatus;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

/// The largest request line accepted, in bytes. A manifest for the largest patch is
/// about 70 MB of JSON; larger requests are refused before they are buffered.
const MAX_REQUEST_BYTES: u64 = 128 * 1024 * 1024;

/// A request to the node.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "kebab-case")]
pub enum ControlRequest {
    /// The node's peers and patches.
    Status,
    /// Import a signed manifest and its files, then announce it (origin nodes).
    Publish {
        /// The manifest in its JSON file form.
        manifest: String,
        /// The source files, one per manifest file and in the same order. The node reads
        /// them, so they must be readable by the node's user.
        sources: Vec<PathBuf>,
    },
    /// Dial these peers (multiaddrs ending in `/p2p/<peer id>`).
    Connect {
        /// The addresses.
        addresses: Vec<String>,
    },
    /// Store approvals and pass them to every peer (format 2 trust file).
    SubmitApprovals {
        /// The approvals, as in an approvals file.
        approvals: Vec<Approval>,
    },
    /// Apply a signed recall, pause or resume order and pass it to every peer.
    SubmitControl {
        /// The order, as in an order file.
        control: RolloutControl,
    },
    /// Apply a newer signed membership list and pass it to every peer.
    SubmitMembership {
        /// The list, as the text of a membership file.
        membership: SignedMembership,
    },
    /// Apply the next trust file version (format 2) and pass it to every peer.
    SubmitTrust {
        /// The version, as the text of a trust file.
        trust: SignedPolicy,
    },
    /// The node's audit log.
    Audit,
    /// Read the node's config file again and apply `[caps]`, `[hooks]` and
    /// `disk_budget` without a restart, as SIGHUP does.
    Reload,
}

/// The node's answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "response", rename_all = "kebab-case")]
pub enum ControlResponse {
    /// The node's state.
    Status(Box<StatusReport>),
    /// The manifest was imported and announced.
    Published {
        /// `id@version`.
        patch: String,
        /// The assembled files in the origin's data dir.
        files: Vec<PathBuf>,
    },
    /// Dials started.
    Connecting {
        /// How many.
        count: usize,
    },
    /// Approvals or an order were taken.
    Submitted {
        /// How many documents were new to the node; the others it already stored.
        new: usize,
    },
    /// The audit log, as JSON lines.
    AuditLog {
        /// The log's text.
        lines: String,
    },
    /// The config file was read again and applied.
    Reloaded {
        /// The file the node read.
        path: PathBuf,
        /// Live keys that changed and now apply.
        applied: Vec<String>,
        /// Keys that changed but need a restart; the node keeps their old values.
        restart_needed: Vec<String>,
    },
    /// The request failed.
    Error {
        /// What went wrong, and what to do.
        message: String,
    },
}

/// What `patchmesh status` shows.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StatusReport {
    /// The node's libp2p peer id.
    pub peer_id: String,
    /// Addresses the node listens on.
    pub listen: Vec<String>,
    /// The protocol core's view: peers and per-patch progress.
    pub node: NodeStatusJson,
    /// Assembled file paths per patch, keyed `id@version`, for complete patches.
    pub files: BTreeMap<String, Vec<PathBuf>>,
    /// The latest hook run per patch version and event, oldest first; empty from a node
    /// without hooks.
    #[serde(default)]
    pub hooks: Vec<crate::hooks::HookRecord>,
}

/// [`NodeStatus`] as JSON: the core's type serializes but does not deserialize, so the
/// client side keeps it as a JSON value.
pub type NodeStatusJson = serde_json::Value;

/// Converts the core's status for the report.
pub fn status_json(status: &NodeStatus) -> NodeStatusJson {
    serde_json::to_value(status).unwrap_or(serde_json::Value::Null)
}

/// A control request waiting for the daemon's event loop.
pub(crate) struct PendingControl {
    pub(crate) request: ControlRequest,
    pub(crate) reply: oneshot::Sender<ControlResponse>,
}

/// A control call that failed before the node answered.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The socket is missing or refused the connection.
    #[error("cannot connect to the node's control socket {path}: {source}; is the node running with this data dir?")]
    Connect {
        /// The socket.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The exchange failed midway.
    #[error("control socket {path}: {source}")]
    Io {
        /// The socket.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The node's answer did not parse.
    #[error("control socket {path}: invalid response: {source}")]
    Response {
        /// The socket.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
    /// No answer in time.
    #[error("control socket {path}: no response within {timeout:?}")]
    Timeout {
        /// The socket.
        path: PathBuf,
        /// How long the client waited.
        timeout: Duration,
    },
}

/// Sends one request to the node listening on `socket` and returns its response.
pub async fn call(socket: &Path, request: &ControlRequest, timeout: Duration) -> Result<ControlResponse, ControlError> {
    let exchange = async {
        let io = |source| ControlError::Io { path: socket.to_path_buf(), source };
        let mut stream = UnixStream::connect(socket)
            .await
            .map_err(|source| ControlError::Connect { path: socket.to_path_buf(), source })?;
        let mut line = serde_json::to_vec(request).map_err(|source| ControlError::Response { path: socket.to_path_buf(), source })?;
        line.push(b'\n');
        stream.write_all(&line).await.map_err(io)?;
        let mut reader = BufReader::new(stream);
        let mut answer = String::new();
        reader.read_line(&mut answer).await.map_err(io)?;
        serde_json::from_str(&answer).map_err(|source| ControlError::Response { path: socket.to_path_buf(), source })
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| ControlError::Timeout { path: socket.to_path_buf(), timeout })?
}

/// Binds the control socket owner-only, replacing a stale socket file.
pub(crate) fn bind(path: &Path) -> std::io::Result<UnixListener> {
    if let Ok(metadata) = std::fs::symlink_metadata(path) {
        use std::os::unix::fs::FileTypeExt;
        if metadata.file_type().is_socket() {
            std::fs::remove_file(path)?;
        }
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Accepts control connections and forwards each request to the event loop.
pub(crate) async fn serve(listener: UnixListener, requests: mpsc::Sender<PendingControl>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                tracing::warn!(%error, "control socket accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let requests = requests.clone();
        tokio::spawn(async move {
            if let Err(error) = handle_connection(stream, requests).await {
                tracing::debug!(%error, "control connection failed");
            }
        });
    }
}

async fn handle_connection(stream: UnixStream, requests: mpsc::Sender<PendingControl>) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read.take(MAX_REQUEST_BYTES));
    let mut line = String::new();
    reader.read_line(&mut line).await?;
    let response = match serde_json::from_str::<ControlRequest>(&line) {
        Err(error) => ControlResponse::Error { message: format!("invalid control request: {error}") },
        Ok(request) => {
            let (reply, answer) = oneshot::channel();
            if requests.send(PendingControl { request, reply }).await.is_err() {
                ControlResponse::Error { message: "the node is shutting down".into() }
            } else {
                answer.await.unwrap_or(ControlResponse::Error { message: "the node is shutting down".into() })
            }
        }
    };
    let mut bytes = serde_json::to_vec(&response).unwrap_or_default();
    bytes.push(b'\n');
    write.write_all(&bytes).await?;
    write.shutdown().await
}

use tokio::io::AsyncReadExt as _;
