use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use patchmesh_core::{PatchId, PatchKey};

use super::*;

/// Writes an executable shell script `name` into `dir`.
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

fn spec(text: &str) -> HooksSpec {
    toml::from_str(text).expect("hooks table")
}

fn duration(text: &str) -> Option<Duration> {
    text.strip_suffix("ms").and_then(|ms| ms.parse().ok()).map(Duration::from_millis)
}

fn resolve_error(dir: &Path, text: &str) -> String {
    let (key, value, fix) = resolve(&spec(text), dir, duration).expect_err("invalid hooks");
    format!("{key} = {value:?}: {fix}")
}

fn event(kind: HookKind, version: u64) -> HookEvent {
    HookEvent {
        kind,
        patch: key(version),
        files: vec![PathBuf::from("/data/files/a.bin"), PathBuf::from("/data/files/b.txt")],
        total_bytes: Some(42),
        manifest_digest: Some("ab".repeat(32)),
        body_hash: Some("cd".repeat(32)),
        reason: None,
    }
}

fn identity() -> Identity {
    Identity { site: "branch-07".into(), peer_id: "12D3KooWtest".into() }
}

fn settings(verified: &Path, timeout: Duration, max_running: usize) -> HookSettings {
    HookSettings {
        verified: Some(HookCommand { program: verified.to_path_buf(), args: Vec::new() }),
        timeout,
        max_running,
        ..HookSettings::default()
    }
}

/// Polls `hooks` until `done` holds for its records, or panics after 10 s.
async fn wait_for(hooks: &Hooks, done: impl Fn(&[HookRecord]) -> bool) -> Vec<HookRecord> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let records = hooks.records();
        if done(&records) {
            return records;
        }
        assert!(Instant::now() < deadline, "hooks did not settle: {records:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn all_finished(count: usize) -> impl Fn(&[HookRecord]) -> bool {
    move |records| records.len() == count && records.iter().all(|record| record.state == HookState::Finished)
}

#[test]
fn missing_program_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let error = resolve_error(dir.path(), "verified = [\"install.sh\"]");
    assert!(error.starts_with("hooks.verified = \"install.sh\""), "{error}");
    assert!(error.contains("PATH is not searched"), "{error}");
}

#[test]
fn relative_program_resolved() {
    let dir = tempfile::tempdir().expect("tempdir");
    script(dir.path(), "install.sh", "exit 0");
    let settings = resolve(&spec("verified = [\"install.sh\", \"--quiet\"]"), dir.path(), duration).expect("valid");
    let command = settings.verified.expect("verified hook");
    assert_eq!(command.program, dir.path().join("install.sh"));
    assert_eq!(command.args, vec!["--quiet".to_string()]);
}

#[test]
fn not_executable_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("notes.txt"), "x").expect("write");
    let error = resolve_error(dir.path(), "failed = [\"notes.txt\"]");
    assert!(error.contains("chmod +x"), "{error}");
}

#[test]
fn directory_rejected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let error = resolve_error(dir.path(), "recalled = [\".\"]");
    assert!(error.contains("not a file"), "{error}");
}

#[test]
fn empty_argv_rejected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let error = resolve_error(dir.path(), "verified = []");
    assert!(error.contains("give the program"), "{error}");
}

#[test]
fn zero_timeout_rejected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let error = resolve_error(dir.path(), "timeout = \"0ms\"");
    assert!(error.starts_with("hooks.timeout"), "{error}");
}

#[test]
fn max_running_bounds() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert!(resolve_error(dir.path(), "max_running = 0").starts_with("hooks.max_running"));
    assert!(resolve_error(dir.path(), "max_running = 17").starts_with("hooks.max_running"));
}

#[test]
fn unknown_hook_key_rejected() {
    assert!(toml::from_str::<HooksSpec>("verifed = [\"/bin/true\"]").is_err());
}

#[test]
fn environment_lists_every_variable() {
    let mut hook = event(HookKind::Verified, 7);
    hook.reason = Some("why".into());
    let env: HashMap<&str, String> = hook.environment(&identity()).into_iter().collect();
    let names: Vec<&str> = ENV_NAMES.to_vec();
    for name in &names {
        assert!(env.contains_key(name), "{name} not set");
    }
    assert_eq!(env["PATCHMESH_FILES"], "/data/files/a.bin\n/data/files/b.txt");
    assert_eq!(env["PATCHMESH_PATCH"], "KB-hook@7");
}

#[test]
fn environment_omits_unknown_values() {
    let hook = HookEvent { files: Vec::new(), total_bytes: None, manifest_digest: None, body_hash: None, ..event(HookKind::Recalled, 1) };
    let env: HashMap<&str, String> = hook.environment(&identity()).into_iter().collect();
    assert!(!env.contains_key("PATCHMESH_FILE"));
    assert!(!env.contains_key("PATCHMESH_TOTAL_BYTES"));
}

#[tokio::test]
async fn runner_reports_exit_code() {
    let dir = tempfile::tempdir().expect("tempdir");
    let program = script(dir.path(), "fail.sh", "echo trying; echo broken >&2; exit 3");
    let result = runner::run(&HookCommand { program, args: Vec::new() }, &[], &[], Duration::from_secs(10)).await;
    assert_eq!(result.outcome, HookOutcome::Exited { code: 3 });
    assert_eq!(result.stdout.text, "trying\n");
    assert_eq!(result.stderr.text, "broken\n");
}

#[tokio::test]
async fn runner_kills_process_group_at_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pid_file = dir.path().join("sleeper.pid");
    // The sleep runs in the background, so killing only the shell would leave it.
    let program = script(dir.path(), "slow.sh", &format!("sleep 30 & echo $! > {}; wait", pid_file.display()));
    let started = Instant::now();
    let result = runner::run(&HookCommand { program, args: Vec::new() }, &[], &[], Duration::from_millis(500)).await;
    assert_eq!(result.outcome, HookOutcome::TimedOut { after_ms: 500 });
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    let sleeper = std::fs::read_to_string(&pid_file).expect("pid file").trim().to_string();
    std::thread::sleep(Duration::from_millis(100));
    let state = std::fs::read_to_string(format!("/proc/{sleeper}/stat")).unwrap_or_default();
    // Gone, or a zombie waiting for init to reap it.
    assert!(state.is_empty() || state.contains(") Z "), "background sleep {sleeper} still runs: {state}");
}

#[tokio::test]
async fn runner_bounds_output() {
    let dir = tempfile::tempdir().expect("tempdir");
    let program = script(dir.path(), "loud.sh", "head -c 100000 /dev/zero | tr '\\0' x");
    let result = runner::run(&HookCommand { program, args: Vec::new() }, &[], &[], Duration::from_secs(10)).await;
    assert_eq!(result.stdout.text.len(), runner::OUTPUT_LIMIT);
    assert_eq!(result.stdout.dropped, (100_000 - runner::OUTPUT_LIMIT) as u64);
}

#[tokio::test]
async fn runner_clears_inherited_variables() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("env.txt");
    // CARGO_MANIFEST_DIR, which cargo sets for test runs, plays a stale PATCHMESH_*
    // variable, because tests must not change the environment of a shared process.
    let program = script(dir.path(), "env.sh", &format!("echo \"${{CARGO_MANIFEST_DIR-unset}} $PATCHMESH_EVENT\" > {}", out.display()));
    let env = [("PATCHMESH_EVENT", "verified".to_string())];
    let _ = runner::run(&HookCommand { program, args: Vec::new() }, &env, &["CARGO_MANIFEST_DIR"], Duration::from_secs(10)).await;
    assert_eq!(std::fs::read_to_string(&out).expect("env output"), "unset verified\n");
}

#[tokio::test]
async fn runner_reports_missing_program() {
    let result = runner::run(&HookCommand { program: "/nonexistent/hook".into(), args: Vec::new() }, &[], &[], Duration::from_secs(1)).await;
    assert!(matches!(result.outcome, HookOutcome::NotStarted { .. }), "{:?}", result.outcome);
}

#[tokio::test]
async fn hook_runs_once_per_event() {
    let dir = tempfile::tempdir().expect("tempdir");
    let count = dir.path().join("count");
    let program = script(dir.path(), "count.sh", &format!("echo run >> {}", count.display()));
    let hooks = Hooks::start(settings(&program, Duration::from_secs(10), 2), dir.path(), identity());
    hooks.notify(event(HookKind::Verified, 1));
    wait_for(&hooks, all_finished(1)).await;
    hooks.notify(event(HookKind::Verified, 1));
    hooks.notify(event(HookKind::Verified, 2));
    let records = wait_for(&hooks, all_finished(2)).await;
    assert_eq!(std::fs::read_to_string(&count).expect("count"), "run\nrun\n");
    assert!(records.iter().all(|record| record.outcome == Some(HookOutcome::Succeeded)));
}

#[tokio::test]
async fn ledger_survives_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let count = dir.path().join("count");
    let program = script(dir.path(), "count.sh", &format!("echo run >> {}; exit 1", count.display()));
    {
        let hooks = Hooks::start(settings(&program, Duration::from_secs(10), 2), dir.path(), identity());
        hooks.notify(event(HookKind::Verified, 1));
        let records = wait_for(&hooks, all_finished(1)).await;
        assert_eq!(records[0].outcome, Some(HookOutcome::Exited { code: 1 }));
    }
    let hooks = Hooks::start(settings(&program, Duration::from_secs(10), 2), dir.path(), identity());
    hooks.notify(event(HookKind::Verified, 1));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(std::fs::read_to_string(&count).expect("count"), "run\n");
    assert_eq!(hooks.failures().len(), 1);
}

#[tokio::test]
async fn running_at_crash_marked_interrupted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let record = HookRecord { event: event(HookKind::Verified, 1), state: HookState::Running, queued_at: 1, started_at: Some(1), finished_at: None, outcome: None, last_stderr_line: None };
    let queued = HookRecord { event: event(HookKind::Verified, 2), state: HookState::Queued, started_at: None, ..record.clone() };
    ledger::save(dir.path(), &[record.clone(), queued]).expect("save");
    let count = dir.path().join("count");
    let program = script(dir.path(), "count.sh", &format!("echo \"$PATCHMESH_PATCH_VERSION\" >> {}", count.display()));
    let hooks = Hooks::start(settings(&program, Duration::from_secs(10), 2), dir.path(), identity());
    let records = wait_for(&hooks, all_finished(2)).await;
    assert_eq!(records[0].outcome, Some(HookOutcome::Interrupted));
    // Only the queued hook, which never started, runs after the restart.
    assert_eq!(std::fs::read_to_string(&count).expect("count"), "2\n");
}

#[tokio::test]
async fn excess_hooks_wait_their_turn() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("log");
    let program = script(dir.path(), "slow.sh", &format!("echo \"start $PATCHMESH_PATCH_VERSION\" >> {0}; sleep 0.2; echo \"end $PATCHMESH_PATCH_VERSION\" >> {0}", log.display()));
    let hooks = Hooks::start(settings(&program, Duration::from_secs(10), 1), dir.path(), identity());
    for version in 1..=3 {
        hooks.notify(event(HookKind::Verified, version));
    }
    wait_for(&hooks, all_finished(3)).await;
    let text = std::fs::read_to_string(&log).expect("log");
    assert_eq!(text, "start 1\nend 1\nstart 2\nend 2\nstart 3\nend 3\n");
}

#[tokio::test]
async fn unreadable_ledger_moved_aside() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join(ledger::LEDGER_FILE), "{ not json").expect("write");
    let records = ledger::load(dir.path(), 5);
    assert!(records.is_empty());
    assert!(dir.path().join("hooks.json.unreadable-5").exists());
}

#[test]
fn trim_keeps_newest_finished() {
    let finished = HookRecord { event: event(HookKind::Verified, 0), state: HookState::Finished, queued_at: 0, started_at: None, finished_at: None, outcome: Some(HookOutcome::Succeeded), last_stderr_line: None };
    let mut records: Vec<HookRecord> = (0..ledger::MAX_FINISHED as u64 + 5)
        .map(|version| HookRecord { event: event(HookKind::Verified, version), ..finished.clone() })
        .collect();
    ledger::trim(&mut records);
    assert_eq!(records.len(), ledger::MAX_FINISHED);
    assert_eq!(records[0].event.patch.version, 5);
}

#[test]
fn timeout_shown_in_seconds() {
    assert_eq!(HookOutcome::TimedOut { after_ms: 600_000 }.to_string(), "killed after the timeout of 600 s");
    assert_eq!(HookOutcome::TimedOut { after_ms: 1500 }.to_string(), "killed after the timeout of 1500 ms");
}

/// Builds a core node with no trust and no patches, for mapping events.
fn empty_node() -> Node {
    let config = patchmesh_core::NodeConfig::new("branch-07", patchmesh_core::Role::Office);
    Node::new(patchmesh_core::PeerId::new("local"), config, patchmesh_core::TrustPolicy::default())
}

fn key(version: u64) -> PatchKey {
    PatchKey { id: PatchId::new("KB-hook").expect("id"), version }
}

#[test]
fn failed_event_carries_reason() {
    let event = Event::PatchFailed { patch: key(3), reason: "disk full".into() };
    let hook = HookEvent::from_core(&event, &empty_node(), &HashMap::new()).expect("a hook event");
    assert_eq!(hook.kind, HookKind::Failed);
    assert_eq!(hook.reason.as_deref(), Some("disk full"));
}

#[test]
fn recall_of_unassembled_version_ignored() {
    let event = Event::PatchRecalled { patch: key(3), reason: "bad".into() };
    assert!(HookEvent::from_core(&event, &empty_node(), &HashMap::new()).is_none());
}

#[test]
fn recall_of_assembled_version_mapped() {
    let event = Event::PatchRecalled { patch: key(3), reason: "bad".into() };
    let files = HashMap::from([(key(3), vec![PathBuf::from("/data/a.bin")])]);
    let hook = HookEvent::from_core(&event, &empty_node(), &files).expect("a hook event");
    assert_eq!(hook.kind, HookKind::Recalled);
    assert!(hook.files.is_empty(), "a recall passes no file paths: {:?}", hook.files);
}

#[test]
fn other_events_ignored() {
    let event = Event::ApprovalsMet { patch: key(3) };
    assert!(HookEvent::from_core(&event, &empty_node(), &HashMap::new()).is_none());
}

#[test]
fn last_stderr_line_kept() {
    assert_eq!(super::last_line("starting\ninstall failed: disk full\n\n").as_deref(), Some("install failed: disk full"));
    assert_eq!(super::last_line("   \n"), None);
    let long = "é".repeat(super::MAX_STDERR_LINE);
    let cut = super::last_line(&long).expect("a line");
    assert!(cut.len() <= super::MAX_STDERR_LINE, "{} bytes kept", cut.len());
}
