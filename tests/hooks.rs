//! `[hooks]` on real daemons over 127.0.0.1: the environment a hook gets, failures,
//! timeouts, and no second run after a restart.

mod support;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use patchmesh_node::hooks::{HookOutcome, HookRecord, HookState};
use support::{TestMesh, TestNode, patchmesh, pattern};

/// Writes an executable shell script `name` into `dir`.
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write hook script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod hook script");
    path
}

/// Starts the origin and one office whose config gets `hooks` appended, publishes a
/// 20-chunk patch `id` at `version` and waits for the office to complete it. Returns the
/// mesh and the patch's bytes.
fn mesh_with_hooks(hooks: &str, id: &str, version: u64) -> (TestMesh, Vec<u8>) {
    let mut mesh = TestMesh::new(1);
    mesh.nodes[1].append_config(hooks);
    mesh.start_all();
    let bytes = pattern(20 * 4096 + 100, 3);
    let source = mesh.root.path().join(format!("{id}.bin"));
    std::fs::write(&source, &bytes).expect("source");
    let output = mesh.publish(id, &[source.as_path()], &["--chunk-size", "4096", "--version", &version.to_string()]);
    assert!(output.status.success(), "publish failed: {}", String::from_utf8_lossy(&output.stderr));
    mesh.wait_complete(id, Duration::from_secs(30));
    (mesh, bytes)
}

/// Waits until `node` reports `count` finished hook records, and returns them.
fn finished_hooks(node: &TestNode, count: usize) -> Vec<HookRecord> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let hooks = node.status().map(|status| status.hooks).unwrap_or_default();
        if hooks.len() == count && hooks.iter().all(|record| record.state == HookState::Finished) {
            return hooks;
        }
        assert!(Instant::now() < deadline, "{}: hooks not finished: {hooks:?}\nlog:\n{}", node.name, node.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Parses `NAME=value` lines; a value may span lines (PATCHMESH_FILES does).
fn parse_env(text: &str) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    let mut last: Option<String> = None;
    for line in text.lines() {
        match line.split_once('=').filter(|(name, _)| name.starts_with("PATCHMESH_")) {
            Some((name, value)) => {
                env.insert(name.to_string(), value.to_string());
                last = Some(name.to_string());
            }
            None => {
                if let Some(value) = last.as_ref().and_then(|name| env.get_mut(name)) {
                    value.push('\n');
                    value.push_str(line);
                }
            }
        }
    }
    env
}

#[test]
fn verified_hook_gets_environment() {
    let root = tempfile::tempdir().expect("tempdir");
    let out = root.path().join("env.txt");
    let args = root.path().join("args.txt");
    let hook = script(root.path(), "record-env.sh", &format!("env | grep '^PATCHMESH_' > {}; echo \"$*\" > {}", out.display(), args.display()));
    let config = format!("[hooks]\nverified = [\"{}\", \"--quiet\"]\n", hook.display());
    let (mesh, bytes) = mesh_with_hooks(&config, "KB-env", 5);
    let office = &mesh.nodes[1];
    let records = finished_hooks(office, 1);
    assert_eq!(records[0].outcome, Some(HookOutcome::Succeeded));

    assert_eq!(std::fs::read_to_string(&args).expect("hook arguments"), "--quiet\n");
    let text = std::fs::read_to_string(&out).expect("hook output");
    let env = parse_env(&text);
    let status = office.status().expect("status");
    assert_eq!(env["PATCHMESH_EVENT"], "verified");
    assert_eq!(env["PATCHMESH_PATCH"], "KB-env@5");
    assert_eq!(env["PATCHMESH_PATCH_ID"], "KB-env");
    assert_eq!(env["PATCHMESH_PATCH_VERSION"], "5");
    assert_eq!(env["PATCHMESH_SITE"], "office-1");
    assert_eq!(env["PATCHMESH_PEER_ID"], status.peer_id);
    assert_eq!(env["PATCHMESH_TOTAL_BYTES"], bytes.len().to_string());
    assert_eq!(std::fs::read(&env["PATCHMESH_FILE"]).expect("verified file"), bytes);
    assert_eq!(env["PATCHMESH_FILES"], env["PATCHMESH_FILE"]);
    let manifest = support::read_manifest(&mesh.root.path().join("KB-env.manifest.json"));
    assert_eq!(env["PATCHMESH_MANIFEST_DIGEST"], manifest.announcement().digest().to_string());
    assert_eq!(env["PATCHMESH_BODY_HASH"], manifest.header().body_hash.to_string());
    assert!(!env.contains_key("PATCHMESH_REASON"), "{env:?}");
}

#[test]
fn failing_hook_logged_and_not_rerun() {
    let root = tempfile::tempdir().expect("tempdir");
    let count = root.path().join("runs");
    let hook = script(root.path(), "fail.sh", &format!("echo run >> {}; echo 'installer: disk locked' >&2; exit 1", count.display()));
    let (mut mesh, _) = mesh_with_hooks(&format!("[hooks]\nverified = [\"{}\"]\n", hook.display()), "KB-fail", 1);
    let records = finished_hooks(&mesh.nodes[1], 1);
    assert_eq!(records[0].outcome, Some(HookOutcome::Exited { code: 1 }));
    let log = mesh.nodes[1].log();
    assert!(log.contains("hook failed"), "{log}");
    assert!(log.contains("installer: disk locked"), "{log}");
    let table = patchmesh(&["status", "--socket", mesh.nodes[1].socket().to_str().expect("utf-8")]);
    assert!(String::from_utf8_lossy(&table.stdout).contains("verified KB-fail@1: exit status 1"), "{table:?}");
    assert!(String::from_utf8_lossy(&table.stdout).contains("exit status 1: installer: disk locked"), "{table:?}");

    // office-1's signed status report counts the version failed, and it reaches the origin.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let mesh_view = mesh.nodes[0].status().map(|status| status.node["mesh"].clone()).unwrap_or_default();
        let failed = mesh_view.as_array().into_iter().flatten().any(|row| row["patch_id"] == "KB-fail" && row["failed"] == 1);
        if failed {
            break;
        }
        assert!(Instant::now() < deadline, "the origin never saw office-1's failed hook: {mesh_view}");
        std::thread::sleep(Duration::from_millis(200));
    }

    mesh.restart(1);
    mesh.wait_complete("KB-fail", Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(std::fs::read_to_string(&count).expect("run count"), "run\n");
    assert_eq!(finished_hooks(&mesh.nodes[1], 1)[0].outcome, Some(HookOutcome::Exited { code: 1 }));
}

#[test]
fn hook_not_rerun_after_clean_restart() {
    let root = tempfile::tempdir().expect("tempdir");
    let count = root.path().join("runs");
    let hook = script(root.path(), "count.sh", &format!("echo run >> {}", count.display()));
    let (mut mesh, _) = mesh_with_hooks(&format!("[hooks]\nverified = [\"{}\"]\n", hook.display()), "KB-once", 1);
    finished_hooks(&mesh.nodes[1], 1);
    mesh.nodes[1].signal("TERM");
    let deadline = Instant::now() + Duration::from_secs(10);
    while mesh.nodes[1].child.as_mut().and_then(|child| child.try_wait().ok().flatten()).is_none() {
        assert!(Instant::now() < deadline, "office-1 did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
    mesh.restart(1);
    mesh.wait_complete("KB-once", Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(std::fs::read_to_string(&count).expect("run count"), "run\n");
}

#[test]
fn slow_hook_killed_at_timeout() {
    let root = tempfile::tempdir().expect("tempdir");
    let pid_file = root.path().join("pid");
    let hook = script(root.path(), "slow.sh", &format!("echo $$ > {}; sleep 60", pid_file.display()));
    let config = format!("[hooks]\nverified = [\"{}\"]\ntimeout = \"1s\"\n", hook.display());
    let (mesh, _) = mesh_with_hooks(&config, "KB-slow", 1);
    let records = finished_hooks(&mesh.nodes[1], 1);
    assert_eq!(records[0].outcome, Some(HookOutcome::TimedOut { after_ms: 1000 }));
    let pid = std::fs::read_to_string(&pid_file).expect("pid file");
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())).unwrap_or_default();
    assert!(stat.is_empty() || stat.contains(") Z "), "hook {} still runs: {stat}", pid.trim());
    assert!(mesh.nodes[1].log().contains("killed after the timeout"), "{}", mesh.nodes[1].log());
}

#[test]
fn missing_hook_program_refused() {
    let mesh = TestMesh::new(0);
    mesh.nodes[0].append_config("[hooks]\nverified = [\"install-patch\"]\n");
    let output = patchmesh(&["node", "--config", mesh.nodes[0].dir.join("node.toml").to_str().expect("utf-8")]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("hooks.verified = \"install-patch\""), "{stderr}");
    assert!(stderr.contains("give an absolute path"), "{stderr}");
}

#[test]
fn failed_hook_runs_once_with_reason() {
    let root = tempfile::tempdir().expect("tempdir");
    let out = root.path().join("env.txt");
    let hook = script(root.path(), "on-fail.sh", &format!("env | grep '^PATCHMESH_' >> {}", out.display()));
    let mut mesh = TestMesh::new(1);
    mesh.nodes[1].append_config(&format!("[hooks]\nfailed = [\"{}\"]\n", hook.display()));
    // A plain file where assembly creates the files directory makes every assembly fail.
    let version_dir = mesh.nodes[1].data().join("patches").join("KB-broken").join("1");
    std::fs::create_dir_all(&version_dir).expect("version dir");
    std::fs::write(version_dir.join("files"), "in the way").expect("blocking file");
    mesh.start_all();
    let source = mesh.root.path().join("broken.bin");
    std::fs::write(&source, pattern(8 * 4096, 5)).expect("source");
    let output = mesh.publish("KB-broken", &[source.as_path()], &["--chunk-size", "4096", "--version", "1"]);
    assert!(output.status.success(), "publish failed: {}", String::from_utf8_lossy(&output.stderr));

    let records = finished_hooks(&mesh.nodes[1], 1);
    assert_eq!(records[0].outcome, Some(HookOutcome::Succeeded));
    let env = parse_env(&std::fs::read_to_string(&out).expect("hook output"));
    assert_eq!(env["PATCHMESH_EVENT"], "failed");
    assert_eq!(env["PATCHMESH_PATCH"], "KB-broken@1");
    assert!(!env["PATCHMESH_REASON"].is_empty(), "{env:?}");
    assert_eq!(env["PATCHMESH_TOTAL_BYTES"], (8 * 4096).to_string());
    assert!(!env.contains_key("PATCHMESH_FILE"), "{env:?}");

    // The node retries assembly 10 s later; the retry fails too but runs no second hook.
    let deadline = Instant::now() + Duration::from_secs(30);
    while mesh.nodes[1].log().matches("assembly failed").count() < 2 {
        assert!(Instant::now() < deadline, "no assembly retry:\n{}", mesh.nodes[1].log());
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(300));
    let text = std::fs::read_to_string(&out).expect("hook output");
    assert_eq!(text.matches("PATCHMESH_EVENT=failed").count(), 1, "{text}");
}
