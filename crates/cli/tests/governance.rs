//! The governance commands through the real `patchmesh` binary: keys, a trust file,
//! approvals, a lost reviewer key replaced by rotation, a recall and a membership list.

use std::path::Path;
use std::process::{Command, Output};

const EXE: &str = env!("CARGO_BIN_EXE_patchmesh");
const PASSPHRASE: &str = "correct horse battery staple";

/// Runs `patchmesh ARGS` in `dir` with `passphrase` in PATCHMESH_PASSPHRASE, if any.
fn patchmesh(dir: &Path, passphrase: Option<&str>, args: &[&str]) -> Output {
    let mut command = Command::new(EXE);
    command.current_dir(dir).args(args).env_remove("PATCHMESH_PASSPHRASE");
    if let Some(passphrase) = passphrase {
        command.env("PATCHMESH_PASSPHRASE", passphrase);
    }
    command.output().expect("run patchmesh")
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// Runs a command that must succeed and returns its output.
fn ok(dir: &Path, passphrase: Option<&str>, args: &[&str]) -> String {
    let output = patchmesh(dir, passphrase, args);
    assert!(output.status.success(), "patchmesh {args:?} failed: {}", text(&output));
    text(&output)
}

fn check_approvals(dir: &Path, trust: &str) -> (i32, String) {
    let output = patchmesh(dir, None, &["approve", "KB1-1.manifest.json", "--check", "--trust", trust]);
    (output.status.code().expect("exit code"), text(&output))
}

#[test]
fn approval_flow_and_reviewer_rotation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dir = dir.path();

    // Four keys; the root and reviewer keys are passphrase-encrypted.
    ok(dir, Some(PASSPHRASE), &["keygen", "--out", "root.key", "--passphrase"]);
    ok(dir, None, &["keygen", "--out", "publisher.key"]);
    ok(dir, Some(PASSPHRASE), &["keygen", "--out", "reviewer.key", "--passphrase"]);
    ok(dir, None, &["keygen", "--out", "executive.key"]);
    let root_file = std::fs::read_to_string(dir.join("root.key")).expect("root key");
    assert!(root_file.starts_with("patchmesh-encrypted-secret-key-v1\n"), "{root_file}");

    ok(dir, None, &[
        "trust", "init", "--out", "trust.toml",
        "--root", "ciso=root.key.pub",
        "--publisher", "it=publisher.key.pub",
        "--reviewer", "alice=reviewer.key.pub",
        "--executive", "cto=executive.key.pub",
        "--membership", "root",
    ]);
    let unsigned = patchmesh(dir, None, &["trust", "verify", "trust.toml"]);
    assert!(!unsigned.status.success(), "an unsigned trust file verified: {}", text(&unsigned));

    let wrong = patchmesh(dir, Some("not the passphrase"), &["trust", "sign", "trust.toml", "--key", "root.key"]);
    assert!(!wrong.status.success());
    assert!(text(&wrong).contains("wrong passphrase"), "{}", text(&wrong));
    let no_passphrase = patchmesh(dir, None, &["trust", "sign", "trust.toml", "--key", "root.key"]);
    assert!(text(&no_passphrase).contains("PATCHMESH_PASSPHRASE"), "{}", text(&no_passphrase));

    ok(dir, Some(PASSPHRASE), &["trust", "sign", "trust.toml", "--key", "root.key"]);
    ok(dir, None, &["trust", "verify", "trust.toml"]);

    std::fs::write(dir.join("fix.bin"), b"the patch").expect("patch file");
    ok(dir, None, &["publish", "fix.bin", "--key", "publisher.key", "--id", "KB1", "--version", "1", "--out", "KB1-1.manifest.json"]);

    let (code, output) = check_approvals(dir, "trust.toml");
    assert_eq!(code, 2, "{output}");
    assert!(output.contains("1 more reviewer key") && output.contains("1 more executive key"), "{output}");

    ok(dir, Some(PASSPHRASE), &["approve", "KB1-1.manifest.json", "--key", "reviewer.key"]);
    let (code, output) = check_approvals(dir, "trust.toml");
    assert_eq!(code, 2, "{output}");
    ok(dir, None, &["approve", "KB1-1.manifest.json", "--key", "executive.key"]);
    let (code, output) = check_approvals(dir, "trust.toml");
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("approval rule met"), "{output}");

    // Alice loses her reviewer key: version 2 revokes it and adds her new key.
    ok(dir, None, &["keygen", "--out", "reviewer2.key"]);
    ok(dir, None, &["trust", "rotate", "trust.toml", "--out", "trust-2.toml", "--revoke", "alice", "--add", "reviewer:alice-2=reviewer2.key.pub"]);
    let unsigned = patchmesh(dir, None, &["trust", "verify", "trust-2.toml", "--previous", "trust.toml"]);
    assert!(!unsigned.status.success(), "an unsigned rotation verified: {}", text(&unsigned));
    ok(dir, Some(PASSPHRASE), &["trust", "sign", "trust-2.toml", "--key", "root.key"]);
    ok(dir, None, &["trust", "verify", "trust-2.toml", "--previous", "trust.toml"]);

    // Under version 2 the lost key's approval no longer counts; the new key's does.
    let (code, output) = check_approvals(dir, "trust-2.toml");
    assert_eq!(code, 2, "{output}");
    assert!(output.contains("not counted"), "{output}");
    ok(dir, None, &["approve", "KB1-1.manifest.json", "--key", "reviewer2.key"]);
    let (code, output) = check_approvals(dir, "trust-2.toml");
    assert_eq!(code, 0, "{output}");
}

#[test]
fn recall_and_membership_commands() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dir = dir.path();
    ok(dir, None, &["keygen", "--out", "root.key"]);
    ok(dir, None, &["keygen", "--out", "reviewer.key"]);
    ok(dir, None, &["keygen", "--out", "executive.key"]);
    ok(dir, None, &["keygen", "--out", "admin.key"]);
    ok(dir, None, &[
        "trust", "init", "--out", "trust.toml",
        "--root", "ciso=root.key.pub",
        "--reviewer", "alice=reviewer.key.pub",
        "--executive", "cto=executive.key.pub",
        "--node-admin", "ops=admin.key.pub",
        "--approval", "reviewer,executive",
    ]);
    ok(dir, None, &["trust", "sign", "trust.toml", "--key", "root.key"]);

    // A reviewer may pause but not recall.
    let output = ok(dir, None, &["recall", "KB1", "--version", "1", "--key", "reviewer.key", "--out", "recall.json", "--reason", "breaks printing", "--trust", "trust.toml"]);
    assert!(output.contains("not yet in effect"), "{output}");
    let output = ok(dir, None, &["recall", "KB1", "--version", "1", "--key", "executive.key", "--out", "recall.json", "--trust", "trust.toml"]);
    assert!(output.contains("rule is met"), "{output}");
    let mismatch = patchmesh(dir, None, &["pause", "KB1", "--version", "1", "--key", "reviewer.key", "--out", "recall.json"]);
    assert!(!mismatch.status.success(), "{}", text(&mismatch));

    ok(dir, None, &["members", "add", "members.toml", "--peer", "12D3KooWPilot", "--site", "pilot"]);
    ok(dir, None, &["members", "add", "members.toml", "--peer", "12D3KooWBranch", "--site", "branch-7"]);
    let unsigned = patchmesh(dir, None, &["members", "show", "members.toml", "--trust", "trust.toml"]);
    assert!(!unsigned.status.success(), "{}", text(&unsigned));
    ok(dir, None, &["members", "sign", "members.toml", "--key", "admin.key"]);
    let output = ok(dir, None, &["members", "show", "members.toml", "--trust", "trust.toml"]);
    assert!(output.contains("version 1") && output.contains("rule is met"), "{output}");
    ok(dir, None, &["members", "remove", "members.toml", "--peer", "12D3KooWBranch"]);
    let output = ok(dir, None, &["members", "show", "members.toml"]);
    assert!(output.contains("version 2"), "{output}");
    assert!(output.contains("1 member\n"), "{output}");
}
