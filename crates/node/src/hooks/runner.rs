//! Runs one hook command: no shell, a time limit, bounded output capture.

use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

use super::HookOutcome;
use super::settings::HookCommand;

/// Output kept per stream, in bytes; the rest is read and dropped so the hook never
/// blocks on a full pipe.
pub(super) const OUTPUT_LIMIT: usize = 16 * 1024;
/// How long to keep reading output after the hook exits. A program the hook started in
/// the background may hold the pipes open; the node does not wait for it.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// The output of one stream of a hook.
#[derive(Debug, Default)]
pub(super) struct Captured {
    /// The first [`OUTPUT_LIMIT`] bytes.
    pub(super) text: String,
    /// Bytes past the limit, dropped.
    pub(super) dropped: u64,
}

/// The result of one run.
#[derive(Debug)]
pub(super) struct Finished {
    pub(super) outcome: HookOutcome,
    pub(super) stdout: Captured,
    pub(super) stderr: Captured,
}

/// Runs `command` with `env` added to the node's environment. Every name in `clear`
/// is removed first, so a variable the node inherited never leaks into an event that
/// does not set it.
pub(super) async fn run(command: &HookCommand, env: &[(&'static str, String)], clear: &[&str], timeout: Duration) -> Finished {
    let mut process = tokio::process::Command::new(&command.program);
    process.args(&command.args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    // Its own process group, so a timeout kills whatever the hook started as well.
    process.process_group(0);
    for name in clear {
        process.env_remove(name);
    }
    process.envs(env.iter().map(|(name, value)| (*name, value.as_str())));
    let mut child = match process.spawn() {
        Ok(child) => child,
        Err(error) => {
            return Finished {
                outcome: HookOutcome::NotStarted { error: error.to_string() },
                stdout: Captured::default(),
                stderr: Captured::default(),
            };
        }
    };
    let stdout = child.stdout.take().map(|pipe| tokio::spawn(capture(pipe)));
    let stderr = child.stderr.take().map(|pipe| tokio::spawn(capture(pipe)));
    let outcome = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) => match (status.code(), status.signal()) {
            (Some(0), _) => HookOutcome::Succeeded,
            (Some(code), _) => HookOutcome::Exited { code },
            (None, Some(signal)) => HookOutcome::Signalled { signal },
            (None, None) => HookOutcome::Exited { code: -1 },
        },
        Ok(Err(error)) => HookOutcome::NotStarted { error: format!("cannot wait for the hook: {error}") },
        Err(_) => {
            if let Some(pid) = child.id() {
                kill_group(pid);
            }
            let _ = child.kill().await;
            HookOutcome::TimedOut { after_ms: timeout.as_millis() as u64 }
        }
    };
    Finished { outcome, stdout: collect(stdout).await, stderr: collect(stderr).await }
}

async fn collect(task: Option<tokio::task::JoinHandle<Captured>>) -> Captured {
    let Some(mut task) = task else {
        return Captured::default();
    };
    match tokio::time::timeout(DRAIN_GRACE, &mut task).await {
        Ok(Ok(captured)) => captured,
        Ok(Err(_)) => Captured::default(),
        Err(_) => {
            task.abort();
            Captured { text: String::new(), dropped: 0 }
        }
    }
}

async fn capture(mut pipe: impl AsyncRead + Unpin) -> Captured {
    let mut kept = Vec::new();
    let mut dropped = 0u64;
    let mut buf = [0u8; 4096];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(read) => {
                let room = OUTPUT_LIMIT.saturating_sub(kept.len()).min(read);
                kept.extend_from_slice(&buf[..room]);
                dropped += (read - room) as u64;
            }
        }
    }
    Captured { text: String::from_utf8_lossy(&kept).into_owned(), dropped }
}

/// Sends SIGKILL to the process group `pid` leads.
#[allow(unsafe_code)]
fn kill_group(pid: u32) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: kill(2) reads no memory of ours. `pid` is a child spawned into its own
    // group (process_group(0)) and not reaped yet, so the group id cannot have been
    // reused by an unrelated process.
    unsafe {
        libc::kill(-pid, libc::SIGKILL);
    }
}
