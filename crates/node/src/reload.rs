//! Re-reading `node.toml` in a running node: on SIGHUP and on the control API's
//! `reload` request (`patchmesh node reload`).
//!
//! Live: `[caps]` (applied to the shared token buckets, so open connections change rate
//! without being closed), `[hooks]` and `disk_budget`. Every other key needs a restart;
//! a reload that changes one names it in a warning and keeps the value in force. A file
//! that does not parse or validate changes nothing.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tracing::{error, info, warn};

use crate::config::{ConfigError, NodeSettings};
use crate::control::{ControlRequest, ControlResponse, PendingControl};
use crate::hooks::Hooks;
use crate::pacing::Pacer;

/// The live token buckets, one per direction, shared with every connection.
pub(crate) struct Pacers {
    pub(crate) upload: Arc<Pacer>,
    pub(crate) download: Arc<Pacer>,
}

/// A reload that changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The node was given its settings as text, so there is no file to read again.
    #[error("this node was not started from a config file; restart it to change settings")]
    NoConfigFile,
    /// The new file is unreadable or invalid; the old settings stay in force.
    #[error("{0}; the node keeps its current settings")]
    Config(#[from] ConfigError),
}

/// The result of a reload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reloaded {
    /// The file read.
    pub path: PathBuf,
    /// Live keys whose value changed and now applies: `caps`, `hooks`, `disk_budget`.
    pub applied: Vec<&'static str>,
    /// Keys whose value changed but which only a restart applies; their old values stay.
    pub restart_needed: Vec<&'static str>,
}

/// Reads the config file again and applies what can change live to `settings`, the
/// pacers and the hooks.
pub(crate) fn reload(settings: &mut NodeSettings, pacers: &Pacers, hooks: &Hooks) -> Result<Reloaded, ReloadError> {
    let path = settings.config_path.clone().ok_or(ReloadError::NoConfigFile)?;
    let new = NodeSettings::load(&path)?;
    let restart_needed = restart_keys(settings, &new);
    let mut applied = Vec::new();
    // CapSchedule has no equality; its debug form lists every field.
    let caps_changed = format!("{:?}{:?}", settings.upload_caps, settings.download_caps) != format!("{:?}{:?}", new.upload_caps, new.download_caps);
    if caps_changed {
        pacers.upload.set_schedules(new.upload_caps.clone());
        pacers.download.set_schedules(new.download_caps.clone());
        settings.upload_caps = new.upload_caps;
        settings.download_caps = new.download_caps;
        applied.push("caps");
    }
    if settings.hooks != new.hooks {
        hooks.reload(new.hooks.clone());
        settings.hooks = new.hooks;
        applied.push("hooks");
    }
    if settings.disk_budget != new.disk_budget {
        settings.disk_budget = new.disk_budget;
        applied.push("disk_budget");
    }
    Ok(Reloaded { path, applied, restart_needed })
}

/// Returns the keys that differ between `old` and `new` and cannot change while the node runs.
pub(crate) fn restart_keys(old: &NodeSettings, new: &NodeSettings) -> Vec<&'static str> {
    let checks = [
        ("site", old.site != new.site),
        ("data_dir", old.data_dir != new.data_dir),
        ("identity_key", old.identity_key != new.identity_key),
        ("trust_file", old.trust_file != new.trust_file),
        ("listen", old.listen != new.listen),
        ("bootstrap", old.bootstrap != new.bootstrap),
        ("origin", old.origin != new.origin),
        ("idle_connection_timeout", old.idle_connection_timeout != new.idle_connection_timeout),
        ("control_socket", old.control_socket != new.control_socket),
        ("max_strikes", old.max_strikes != new.max_strikes),
        ("origin_budget", old.origin_budget != new.origin_budget),
        ("membership_file", old.membership_file != new.membership_file),
        ("fault_injection", old.fault_injection != new.fault_injection),
    ];
    checks.into_iter().filter(|(_, changed)| *changed).map(|(key, _)| key).collect()
}

/// Runs a reload for the event loop and logs it; the control response reports the same.
pub(crate) fn handle(settings: &mut NodeSettings, pacers: &Pacers, hooks: &Hooks) -> ControlResponse {
    match reload(settings, pacers, hooks) {
        Ok(done) => {
            for key in &done.restart_needed {
                warn!(key, path = %done.path.display(), "config reload: {key} changed, but only a restart applies it; keeping the current value");
            }
            info!(
                path = %done.path.display(),
                applied = ?done.applied,
                upload_bytes_per_s = ?pacers.upload.current_rate(),
                download_bytes_per_s = ?pacers.download.current_rate(),
                "config reloaded"
            );
            ControlResponse::Reloaded {
                path: done.path,
                applied: done.applied.iter().map(ToString::to_string).collect(),
                restart_needed: done.restart_needed.iter().map(ToString::to_string).collect(),
            }
        }
        Err(reason) => {
            error!(%reason, "config reload rejected");
            ControlResponse::Error { message: reason.to_string() }
        }
    }
}

/// Turns every SIGHUP into a reload request on the control channel, so a signal and
/// `patchmesh node reload` take the same path through the event loop.
pub(crate) async fn forward_sighup(requests: mpsc::Sender<PendingControl>) {
    let mut hangups = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(hangups) => hangups,
        Err(error) => {
            warn!(%error, "cannot install the SIGHUP handler; reload with `patchmesh node reload` instead");
            return;
        }
    };
    while hangups.recv().await.is_some() {
        info!("SIGHUP received; reloading the config file");
        let (reply, answer) = oneshot::channel();
        if requests.send(PendingControl { request: ControlRequest::Reload, reply }).await.is_err() {
            return;
        }
        // The event loop logs the result; waiting keeps two reloads from overlapping.
        let _ = answer.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "site = \"hq\"\ndata_dir = \"data\"\nidentity_key = \"node.key\"\ntrust_file = \"trust.toml\"\nlisten = [\"/ip4/127.0.0.1/tcp/0\"]\n";

    /// A node's settings loaded from `node.toml` in a temp dir, with live pacers and hooks.
    struct Fixture {
        dir: tempfile::TempDir,
        settings: NodeSettings,
        pacers: Pacers,
        hooks: Hooks,
    }

    impl Fixture {
        fn new(text: &str) -> Fixture {
            let dir = tempfile::tempdir().expect("tempdir");
            std::fs::write(dir.path().join("node.toml"), text).expect("write config");
            let settings = NodeSettings::load(&dir.path().join("node.toml")).expect("valid config");
            let pacers = Pacers { upload: Pacer::new(settings.upload_caps.clone()), download: Pacer::new(settings.download_caps.clone()) };
            let identity = crate::hooks::Identity { site: "hq".into(), peer_id: "peer".into() };
            let hooks = Hooks::start(settings.hooks.clone(), dir.path(), identity);
            Fixture { dir, settings, pacers, hooks }
        }

        fn reload(&mut self, text: &str) -> Result<Reloaded, ReloadError> {
            std::fs::write(self.dir.path().join("node.toml"), text).expect("write config");
            reload(&mut self.settings, &self.pacers, &self.hooks)
        }
    }

    fn with_upload(rate: &str) -> String {
        format!("{BASE}[caps]\nupload = {{ rate = \"{rate}\" }}\n")
    }

    #[tokio::test]
    async fn new_cap_applied() {
        let mut fixture = Fixture::new(&with_upload("8Mbit/s"));
        let done = fixture.reload(&with_upload("800kbit/s")).expect("reload");
        assert_eq!(done.applied, vec!["caps"]);
        assert_eq!(fixture.pacers.upload.current_rate(), Some(100_000.0));
    }

    #[tokio::test]
    async fn unchanged_file_applies_nothing() {
        let mut fixture = Fixture::new(&with_upload("8Mbit/s"));
        let done = fixture.reload(&with_upload("8Mbit/s")).expect("reload");
        assert!(done.applied.is_empty(), "{done:?}");
    }

    #[tokio::test]
    async fn broken_file_keeps_caps() {
        let mut fixture = Fixture::new(&with_upload("8Mbit/s"));
        let error = fixture.reload(&with_upload("eight megabits")).expect_err("invalid rate");
        assert!(error.to_string().contains("caps.upload"), "{error}");
        assert_eq!(fixture.pacers.upload.current_rate(), Some(1_000_000.0));
    }

    #[tokio::test]
    async fn syntax_error_keeps_caps() {
        let mut fixture = Fixture::new(&with_upload("8Mbit/s"));
        let error = fixture.reload("site = ").expect_err("syntax error");
        assert!(error.to_string().contains("keeps its current settings"), "{error}");
        assert_eq!(fixture.settings.upload_caps.len(), 1);
    }

    #[tokio::test]
    async fn fixed_keys_named() {
        let mut fixture = Fixture::new(BASE);
        let changed = BASE.replace("hq", "branch").replace("tcp/0", "tcp/7400");
        let done = fixture.reload(&changed).expect("reload");
        assert_eq!(done.restart_needed, vec!["site", "listen"]);
        assert_eq!(fixture.settings.site, "hq");
    }

    #[tokio::test]
    async fn disk_budget_applied() {
        let mut fixture = Fixture::new(BASE);
        let done = fixture.reload(&format!("{BASE}disk_budget = \"1GiB\"\n")).expect("reload");
        assert_eq!(done.applied, vec!["disk_budget"]);
        assert_eq!(fixture.settings.disk_budget, Some(1 << 30));
    }

    #[tokio::test]
    async fn hooks_applied() {
        let mut fixture = Fixture::new(BASE);
        let done = fixture.reload(&format!("{BASE}[hooks]\ntimeout = \"30s\"\n")).expect("reload");
        assert_eq!(done.applied, vec!["hooks"]);
        assert_eq!(fixture.settings.hooks.timeout, std::time::Duration::from_secs(30));
    }

    #[tokio::test]
    async fn parsed_settings_cannot_reload() {
        let mut fixture = Fixture::new(BASE);
        fixture.settings.config_path = None;
        let error = reload(&mut fixture.settings, &fixture.pacers, &fixture.hooks).expect_err("no file");
        assert!(matches!(error, ReloadError::NoConfigFile));
    }
}
