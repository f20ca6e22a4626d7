//! `patchmesh verify` with a format 2 trust file: the publisher role's keys check the
//! signature, and an approvals file next to the manifest is held to the approval rule.

use std::path::Path;

mod common;

use common::{ok, patchmesh, text};

/// Writes a signed format 2 trust file needing publisher and reviewer, and publishes a patch.
fn setup(dir: &Path) {
    common::signed_trust_file(dir, &["stranger"], &["--approval", "publisher,reviewer"]);
    std::fs::create_dir(dir.join("files")).expect("files dir");
    std::fs::write(dir.join("files/fix.bin"), b"the patch").expect("patch file");
    ok(dir, &["publish", "files/fix.bin", "--key", "publisher.key", "--id", "KB1", "--version", "1", "--out", "KB1-1.manifest.json"]);
}

#[test]
fn format_two_signature() {
    let dir = tempfile::tempdir().expect("tempdir");
    setup(dir.path());
    let output = ok(dir.path(), &["verify", "KB1-1.manifest.json", "--trust", "trust.toml", "--root", "files"]);
    assert!(output.contains("signed by it"), "{output}");
    assert!(output.contains("all 1 file and 1 chunk verified"), "{output}");
    assert!(output.contains("no approvals file"), "{output}");
}

#[test]
fn format_two_no_stale_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    setup(dir.path());
    let output = text(&patchmesh(dir.path(), &["verify", "KB1-1.manifest.json", "--trust", "trust.toml"]));
    assert!(!output.contains("enforce yet"), "{output}");
}

#[test]
fn format_two_wrong_signer() {
    let dir = tempfile::tempdir().expect("tempdir");
    setup(dir.path());
    ok(dir.path(), &["publish", "files/fix.bin", "--key", "stranger.key", "--id", "KB2", "--version", "1", "--out", "KB2-1.manifest.json"]);
    let output = patchmesh(dir.path(), &["verify", "KB2-1.manifest.json", "--trust", "trust.toml"]);
    assert!(!output.status.success(), "{}", text(&output));
}

#[test]
fn approvals_missing() {
    let dir = tempfile::tempdir().expect("tempdir");
    setup(dir.path());
    ok(dir.path(), &["approve", "KB1-1.manifest.json", "--key", "publisher.key"]);
    let output = patchmesh(dir.path(), &["verify", "KB1-1.manifest.json", "--trust", "trust.toml"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(text(&output).contains("1 more reviewer key"), "{}", text(&output));
}

#[test]
fn approvals_met() {
    let dir = tempfile::tempdir().expect("tempdir");
    setup(dir.path());
    ok(dir.path(), &["approve", "KB1-1.manifest.json", "--key", "publisher.key"]);
    ok(dir.path(), &["approve", "KB1-1.manifest.json", "--key", "reviewer.key"]);
    let output = ok(dir.path(), &["verify", "KB1-1.manifest.json", "--trust", "trust.toml", "--root", "files"]);
    assert!(output.contains("approval rule met"), "{output}");
}

#[test]
fn approvals_flag() {
    let dir = tempfile::tempdir().expect("tempdir");
    setup(dir.path());
    ok(dir.path(), &["approve", "KB1-1.manifest.json", "--key", "publisher.key", "--approvals", "elsewhere.json"]);
    ok(dir.path(), &["approve", "KB1-1.manifest.json", "--key", "reviewer.key", "--approvals", "elsewhere.json"]);
    let output = ok(dir.path(), &["verify", "KB1-1.manifest.json", "--trust", "trust.toml", "--approvals", "elsewhere.json"]);
    assert!(output.contains("approval rule met"), "{output}");
}

#[test]
fn approvals_flag_missing_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    setup(dir.path());
    let output = patchmesh(dir.path(), &["verify", "KB1-1.manifest.json", "--trust", "trust.toml", "--approvals", "nope.json"]);
    assert!(text(&output).contains("nope.json does not exist"), "{}", text(&output));
}
