//! Event hooks: programs the node runs when a patch version is verified, recalled or
//! fails, configured in the `[hooks]` table of `node.toml`.
//!
//! The event loop only hands events to [`Hooks::notify`], which never blocks. A manager
//! task owns the queue and the ledger (`<data_dir>/hooks.json`):
//!
//! 1. An event for which a command is configured, and which the ledger does not hold
//!    yet for that patch version, is recorded as queued.
//! 2. While fewer than `max_running` hooks run, the oldest queued record is written as
//!    running, and only then is its program started, so a crash can never make it run
//!    twice. Records found running at the next start are marked interrupted.
//! 3. The outcome (exit status, signal, timeout) and the captured output go to the log
//!    and the ledger. [`Hooks::records`] and [`Hooks::failures`] read the ledger for
//!    status reports.
//!
//! Programs run without a shell, in their own process group, with the node's environment
//! plus the `PATCHMESH_*` variables of [`ENV_NAMES`].

mod ledger;
mod runner;
mod settings;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use patchmesh_core::{Event, Node, PatchKey, Timestamp};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tracing::{Instrument, debug, error, info, info_span, warn};

pub use settings::{DEFAULT_MAX_RUNNING, DEFAULT_TIMEOUT, HookCommand, HookSettings};
pub(crate) use settings::{HooksSpec, resolve};

/// Events waiting for the manager task. Patches arrive a few a day; a full queue means
/// the manager is stuck, and the event is logged as lost.
const EVENT_QUEUE: usize = 1024;

/// Every variable the node sets for a hook. Each is removed from the inherited
/// environment first, so one an event does not set is absent rather than stale.
pub const ENV_NAMES: [&str; 12] = [
    "PATCHMESH_EVENT",
    "PATCHMESH_PATCH",
    "PATCHMESH_PATCH_ID",
    "PATCHMESH_PATCH_VERSION",
    "PATCHMESH_FILE",
    "PATCHMESH_FILES",
    "PATCHMESH_TOTAL_BYTES",
    "PATCHMESH_MANIFEST_DIGEST",
    "PATCHMESH_BODY_HASH",
    "PATCHMESH_SITE",
    "PATCHMESH_PEER_ID",
    "PATCHMESH_REASON",
];

/// The events a hook can run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HookKind {
    /// Every file of a patch version is assembled and verified.
    Verified,
    /// A signed recall removed a version this node had assembled.
    Recalled,
    /// Assembling or verifying a patch version failed.
    Failed,
}

impl fmt::Display for HookKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HookKind::Verified => "verified",
            HookKind::Recalled => "recalled",
            HookKind::Failed => "failed",
        })
    }
}

/// The facts about a patch version that a hook receives, taken when the event happened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookEvent {
    /// Which event.
    pub kind: HookKind,
    /// The patch version.
    pub patch: PatchKey,
    /// The assembled files, for `verified`; empty otherwise.
    #[serde(default)]
    pub files: Vec<PathBuf>,
    /// The sum of the file sizes, in bytes, when the manifest is known.
    pub total_bytes: Option<u64>,
    /// The BLAKE3 digest of the signed announcement (hex): what approvals sign.
    pub manifest_digest: Option<String>,
    /// The BLAKE3 hash of the manifest body (hex), which commits to every chunk hash.
    pub body_hash: Option<String>,
    /// Why, for `failed` and `recalled`.
    pub reason: Option<String>,
}

impl HookEvent {
    /// The hook event for a core event, if it is one. `files` are the daemon's assembled
    /// files before the event is acted on: a recall only runs a hook for a version that
    /// was assembled here, since nothing of it was installed otherwise.
    pub(crate) fn from_core(event: &Event, node: &Node, files: &HashMap<PatchKey, Vec<PathBuf>>) -> Option<HookEvent> {
        let (kind, patch, reason) = match event {
            Event::PatchComplete { patch, .. } => (HookKind::Verified, patch, None),
            Event::PatchFailed { patch, reason } => (HookKind::Failed, patch, Some(reason.clone())),
            // The origin never installed what it published, as it runs no verified hook.
            Event::PatchRecalled { patch, reason } if files.contains_key(patch) && node.config().role != patchmesh_core::Role::Origin => {
                (HookKind::Recalled, patch, Some(reason.clone()))
            }
            _ => return None,
        };
        // The core drops a recalled version before the daemon reads the event;
        // `Hooks::event_for` fills these in from what it saw earlier.
        let manifest = node.manifest(patch);
        Some(HookEvent {
            kind,
            patch: patch.clone(),
            files: if kind == HookKind::Verified { files.get(patch).cloned().unwrap_or_default() } else { Vec::new() },
            total_bytes: manifest.map(|manifest| manifest.header().total_bytes),
            manifest_digest: manifest.map(|manifest| manifest.announcement().digest().to_string()),
            body_hash: manifest.map(|manifest| manifest.header().body_hash.to_string()),
            reason,
        })
    }

    /// Returns the `PATCHMESH_*` variables for this event.
    fn environment(&self, identity: &Identity) -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("PATCHMESH_EVENT", self.kind.to_string()),
            ("PATCHMESH_PATCH", self.patch.to_string()),
            ("PATCHMESH_PATCH_ID", self.patch.id.as_str().to_string()),
            ("PATCHMESH_PATCH_VERSION", self.patch.version.to_string()),
            ("PATCHMESH_SITE", identity.site.clone()),
            ("PATCHMESH_PEER_ID", identity.peer_id.clone()),
        ];
        if let Some(first) = self.files.first() {
            env.push(("PATCHMESH_FILE", first.display().to_string()));
            // Manifest file names cannot hold control characters, so a newline separates.
            let all: Vec<String> = self.files.iter().map(|path| path.display().to_string()).collect();
            env.push(("PATCHMESH_FILES", all.join("\n")));
        }
        let optional = [
            ("PATCHMESH_TOTAL_BYTES", self.total_bytes.map(|bytes| bytes.to_string())),
            ("PATCHMESH_MANIFEST_DIGEST", self.manifest_digest.clone()),
            ("PATCHMESH_BODY_HASH", self.body_hash.clone()),
            ("PATCHMESH_REASON", self.reason.clone()),
        ];
        env.extend(optional.into_iter().filter_map(|(name, value)| value.map(|value| (name, value))));
        env
    }
}

/// The progress of a hook run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HookState {
    /// Waiting for a free slot.
    Queued,
    /// The program was started (or was about to be).
    Running,
    /// Done; see the outcome.
    Finished,
}

/// The result of a hook run: exit status, signal, timeout, or why it never ran.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum HookOutcome {
    /// Exit status 0.
    Succeeded,
    /// A non-zero exit status.
    Exited {
        /// The status.
        code: i32,
    },
    /// Killed by a signal the node did not send.
    Signalled {
        /// The signal number.
        signal: i32,
    },
    /// Still running at the timeout; the node killed its process group.
    TimedOut {
        /// The timeout, in milliseconds.
        after_ms: u64,
    },
    /// The program could not be started.
    NotStarted {
        /// The operating system's error.
        error: String,
    },
    /// The node stopped or crashed while the hook ran; it is not run again.
    Interrupted,
}

impl HookOutcome {
    /// Whether the hook failed: anything but exit status 0.
    pub fn is_failure(&self) -> bool {
        *self != HookOutcome::Succeeded
    }
}

impl fmt::Display for HookOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HookOutcome::Succeeded => f.write_str("exit status 0"),
            HookOutcome::Exited { code } => write!(f, "exit status {code}"),
            HookOutcome::Signalled { signal } => write!(f, "killed by signal {signal}"),
            HookOutcome::TimedOut { after_ms } if after_ms % 1000 == 0 => write!(f, "killed after the timeout of {} s", after_ms / 1000),
            HookOutcome::TimedOut { after_ms } => write!(f, "killed after the timeout of {after_ms} ms"),
            HookOutcome::NotStarted { error } => write!(f, "could not start: {error}"),
            HookOutcome::Interrupted => f.write_str("interrupted: the node stopped while the hook ran; not run again"),
        }
    }
}

/// One hook run: the latest state for one event of one patch version. The ledger contains
/// at most one record per (event, patch version).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookRecord {
    /// The event and the facts passed to the hook.
    pub event: HookEvent,
    /// The progress of the run.
    pub state: HookState,
    /// When the event was queued, in seconds since the Unix epoch.
    pub queued_at: u64,
    /// When the program started, in seconds since the Unix epoch.
    pub started_at: Option<u64>,
    /// When it finished, in seconds since the Unix epoch.
    pub finished_at: Option<u64>,
    /// The result, once finished.
    pub outcome: Option<HookOutcome>,
    /// The last non-empty line the program wrote to standard error, at most
    /// [`MAX_STDERR_LINE`] bytes: usually why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_stderr_line: Option<String>,
}

/// The maximum length of the stderr line a [`HookRecord`] keeps, in bytes.
pub const MAX_STDERR_LINE: usize = 200;

/// Returns the last non-empty line of `text`, cut to [`MAX_STDERR_LINE`] bytes at a
/// character boundary.
fn last_line(text: &str) -> Option<String> {
    let line = text.lines().rev().map(str::trim).find(|line| !line.is_empty())?;
    let mut end = line.len().min(MAX_STDERR_LINE);
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    Some(line[..end].to_string())
}

impl HookRecord {
    /// Whether the hook finished and failed.
    pub fn is_failure(&self) -> bool {
        self.outcome.as_ref().is_some_and(HookOutcome::is_failure)
    }

    fn is_for(&self, kind: HookKind, patch: &PatchKey) -> bool {
        self.event.kind == kind && self.event.patch == *patch
    }
}

/// The node's identity as hooks see it.
#[derive(Clone, Debug)]
pub(crate) struct Identity {
    pub(crate) site: String,
    pub(crate) peer_id: String,
}

enum Command {
    Event(HookEvent),
    Reload(HookSettings),
}

/// The daemon's handle on the hook manager task.
pub struct Hooks {
    commands: mpsc::Sender<Command>,
    records: Arc<Mutex<Vec<HookRecord>>>,
    /// Size and hashes of every patch version whose manifest the core has held, for the
    /// recalled hook: the core drops a recalled version before the daemon reads the event.
    facts: HashMap<PatchKey, Facts>,
}

/// The manifest facts a hook receives.
#[derive(Clone, Debug)]
struct Facts {
    total_bytes: u64,
    manifest_digest: String,
    body_hash: String,
}

/// The maximum number of versions whose facts are kept; past it the oldest version
/// numbers are dropped. Far above the versions a node stores at once.
const MAX_FACTS: usize = 4096;

impl Hooks {
    /// Loads the ledger from `data_dir` and starts the manager task; hooks queued before
    /// a restart start now. Call from inside the tokio runtime.
    pub(crate) fn start(settings: HookSettings, data_dir: &Path, identity: Identity) -> Hooks {
        let now = Timestamp::now_system().as_secs();
        let records = ledger::load(data_dir, now);
        let interrupted = records.iter().filter(|record| record.outcome == Some(HookOutcome::Interrupted)).count();
        if interrupted > 0 {
            warn!(interrupted, "hooks were running when the node stopped; they are recorded as interrupted and not run again");
        }
        let shared = Arc::new(Mutex::new(records.clone()));
        let (commands, inbox) = mpsc::channel(EVENT_QUEUE);
        let (done, finished) = mpsc::channel(settings::MAX_RUNNING_LIMIT as usize);
        let manager = Manager { settings, identity, data_dir: data_dir.to_path_buf(), records, shared: shared.clone(), running: 0, done };
        tokio::spawn(manager.run(inbox, finished));
        Hooks { commands, records: shared, facts: HashMap::new() }
    }

    /// Returns the hook event for a core event, if it is one, and remembers the facts of
    /// every manifest the core reports so that a later recall can pass them on. Call it
    /// for every core event, before the daemon acts on the event.
    pub(crate) fn event_for(&mut self, event: &Event, node: &Node, files: &HashMap<PatchKey, Vec<PathBuf>>) -> Option<HookEvent> {
        let patch = match event {
            Event::ManifestAccepted { patch, .. } | Event::PatchComplete { patch, .. } | Event::PatchFailed { patch, .. } => Some(patch),
            _ => None,
        };
        if let Some(manifest) = patch.and_then(|patch| node.manifest(patch)) {
            if self.facts.len() >= MAX_FACTS
                && let Some(oldest) = self.facts.keys().min_by_key(|key| key.version).cloned()
            {
                self.facts.remove(&oldest);
            }
            let facts = Facts {
                total_bytes: manifest.header().total_bytes,
                manifest_digest: manifest.announcement().digest().to_string(),
                body_hash: manifest.header().body_hash.to_string(),
            };
            self.facts.insert(manifest.key().clone(), facts);
        }
        let mut hook = HookEvent::from_core(event, node, files)?;
        if hook.kind == HookKind::Recalled
            && let Some(facts) = self.facts.remove(&hook.patch)
        {
            hook.total_bytes = Some(facts.total_bytes);
            hook.manifest_digest = Some(facts.manifest_digest);
            hook.body_hash = Some(facts.body_hash);
        }
        Some(hook)
    }

    /// Hands an event to the manager without waiting.
    pub(crate) fn notify(&self, event: HookEvent) {
        if let Err(error) = self.commands.try_send(Command::Event(event)) {
            let event = match error {
                mpsc::error::TrySendError::Full(Command::Event(event)) | mpsc::error::TrySendError::Closed(Command::Event(event)) => event,
                _ => return,
            };
            error!(event = %event.kind, patch = %event.patch, "hook queue full or stopped; this hook will not run");
        }
    }

    /// Replaces the hook settings; queued hooks start with the new commands.
    pub(crate) fn reload(&self, settings: HookSettings) {
        if self.commands.try_send(Command::Reload(settings)).is_err() {
            error!("hook manager busy or stopped; the new [hooks] table is not in force");
        }
    }

    /// Every record in the ledger, oldest first: the latest state per patch version and
    /// event.
    pub fn records(&self) -> Vec<HookRecord> {
        self.records.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// Returns the records of hooks that failed (non-zero exit, signal, timeout, not started or
    /// interrupted), oldest first. For status reports of failed hooks.
    pub fn failures(&self) -> Vec<HookRecord> {
        self.records().into_iter().filter(HookRecord::is_failure).collect()
    }
}

struct Manager {
    settings: HookSettings,
    identity: Identity,
    data_dir: PathBuf,
    records: Vec<HookRecord>,
    shared: Arc<Mutex<Vec<HookRecord>>>,
    running: usize,
    done: mpsc::Sender<(HookKind, PatchKey, runner::Finished)>,
}

impl Manager {
    async fn run(mut self, mut inbox: mpsc::Receiver<Command>, mut finished: mpsc::Receiver<(HookKind, PatchKey, runner::Finished)>) {
        self.start_queued().await;
        loop {
            tokio::select! {
                command = inbox.recv() => match command {
                    Some(Command::Event(event)) => self.queue(event).await,
                    Some(Command::Reload(settings)) => {
                        info!(timeout_ms = settings.timeout.as_millis() as u64, max_running = settings.max_running, "hook settings reloaded");
                        self.settings = settings;
                    }
                    // The daemon stopped; hooks still running are found running at the next start.
                    None => break,
                },
                Some((kind, patch, result)) = finished.recv() => self.finish(kind, &patch, result).await,
            }
            self.start_queued().await;
        }
    }

    async fn queue(&mut self, mut event: HookEvent) {
        let span = info_span!("hook", event = %event.kind, patch = %event.patch);
        let _entered = span.enter();
        if self.settings.command(event.kind).is_none() {
            debug!("no hook configured for this event");
            return;
        }
        if let Some(earlier) = self.records.iter().find(|record| record.is_for(event.kind, &event.patch)) {
            info!(state = ?earlier.state, "hook already ran or is queued for this patch version; not running it again");
            return;
        }
        let known = self.records.iter().rev().find(|record| record.event.patch == event.patch && record.event.total_bytes.is_some());
        if event.total_bytes.is_none()
            && let Some(known) = known
        {
            event.total_bytes = known.event.total_bytes;
            event.manifest_digest.clone_from(&known.event.manifest_digest);
            event.body_hash.clone_from(&known.event.body_hash);
        }
        debug!("hook queued");
        let now = Timestamp::now_system().as_secs();
        self.records.push(HookRecord {
            event,
            state: HookState::Queued,
            queued_at: now,
            started_at: None,
            finished_at: None,
            outcome: None,
            last_stderr_line: None,
        });
        drop(_entered);
        self.save().await;
    }

    /// Starts queued hooks, oldest first, while slots are free.
    async fn start_queued(&mut self) {
        while self.running < self.settings.max_running {
            let Some(index) = self.records.iter().position(|record| record.state == HookState::Queued) else {
                return;
            };
            let event = self.records[index].event.clone();
            let span = info_span!("hook", event = %event.kind, patch = %event.patch);
            let Some(command) = self.settings.command(event.kind).cloned() else {
                span.in_scope(|| info!("the hook for this event was removed by a reload; not running it"));
                self.records.remove(index);
                self.save().await;
                continue;
            };
            self.records[index].state = HookState::Running;
            self.records[index].started_at = Some(Timestamp::now_system().as_secs());
            // Durable before the program starts: see the module docs.
            self.save().await;
            self.running += 1;
            span.in_scope(|| info!(program = %command.program.display(), "hook started"));
            let env = event.environment(&self.identity);
            let timeout = self.settings.timeout;
            let done = self.done.clone();
            let task_span = span.clone();
            tokio::spawn(
                async move {
                    let result = runner::run(&command, &env, &ENV_NAMES, timeout).await;
                    let _ = done.send((event.kind, event.patch, result)).await;
                }
                .instrument(task_span),
            );
        }
    }

    async fn finish(&mut self, kind: HookKind, patch: &PatchKey, result: runner::Finished) {
        self.running = self.running.saturating_sub(1);
        let span = info_span!("hook", event = %kind, patch = %patch);
        span.in_scope(|| log_finished(&result));
        if let Some(record) = self.records.iter_mut().find(|record| record.is_for(kind, patch)) {
            record.state = HookState::Finished;
            record.finished_at = Some(Timestamp::now_system().as_secs());
            record.last_stderr_line = last_line(&result.stderr.text);
            record.outcome = Some(result.outcome);
        }
        ledger::trim(&mut self.records);
        self.save().await;
    }

    async fn save(&mut self) {
        *self.shared.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = self.records.clone();
        let records = self.records.clone();
        let data_dir = self.data_dir.clone();
        let saved = tokio::task::spawn_blocking(move || ledger::save(&data_dir, &records)).await;
        match saved {
            Ok(Ok(())) => {}
            Ok(Err(error)) => error!(%error, "cannot save the hook ledger; after a restart a hook may run again"),
            Err(error) => error!(%error, "hook ledger save task failed"),
        }
    }
}

/// Logs a hook's outcome and output: at info when it succeeded, at warn when it failed,
/// so a failure and the output explaining it sit together.
fn log_finished(result: &runner::Finished) {
    let failed = result.outcome.is_failure();
    if failed {
        warn!(outcome = %result.outcome, "hook failed");
    } else {
        info!(outcome = %result.outcome, "hook succeeded");
    }
    for (stream, captured) in [("stdout", &result.stdout), ("stderr", &result.stderr)] {
        for line in captured.text.lines() {
            if failed {
                warn!(stream, "hook output: {line}");
            } else {
                info!(stream, "hook output: {line}");
            }
        }
        if captured.dropped > 0 {
            warn!(stream, dropped_bytes = captured.dropped, limit_bytes = runner::OUTPUT_LIMIT, "hook output past the limit was not logged");
        }
    }
}
