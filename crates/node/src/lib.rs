//! The patchmesh office-node daemon.
//!
//! [`daemon::run`] drives the sans-IO [`patchmesh_core::Node`] with libp2p (TCP, noise,
//! yamux, identify, ping, gossipsub, request-response), a crash-safe chunk
//! [`store`], and a local [`control`] API on a Unix socket.

mod behaviour;
pub mod config;
pub mod control;
pub mod daemon;
mod governance;
pub mod hooks;
pub mod keyfile;
mod log_limit;
mod pacing;
pub mod reload;
pub mod store;

pub use config::NodeSettings;
pub use daemon::{DaemonError, run};
