//! Messages and exit behaviour of the `patchmesh` binary that users reported: imported
//! publisher names, trust rotation hints, key files that exist, and a closed stdout.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};

mod common;

use common::{EXE, ok, patchmesh, text};

fn fails(dir: &Path, args: &[&str]) -> String {
    let output = patchmesh(dir, args);
    assert!(!output.status.success(), "patchmesh {args:?} succeeded: {}", text(&output));
    text(&output)
}

/// Writes a format 1 trust file naming the publisher `name`, and a root key.
fn format_one(dir: &Path, name: &str) {
    ok(dir, &["keygen", "--out", "root.key"]);
    ok(dir, &["keygen", "--out", "publisher.key"]);
    let key = std::fs::read_to_string(dir.join("publisher.key.pub")).expect("public key");
    let key = key.split_whitespace().next().expect("key word");
    let file = format!("format = 1\n\n[[publisher]]\nname = {name:?}\nkey = \"{key}\"\n");
    std::fs::write(dir.join("old.toml"), file).expect("old trust file");
}

#[test]
fn import_name_with_space() {
    let dir = tempfile::tempdir().expect("tempdir");
    format_one(dir.path(), "IT publisher");
    let output = ok(dir.path(), &["trust", "init", "--out", "trust.toml", "--root", "ciso=root.key.pub", "--import-v1", "old.toml", "--approval", "publisher", "--recall", "root", "--pause", "root", "--resume", "root", "--membership", "root"]);
    assert!(output.contains("\"IT publisher\" in old.toml becomes \"IT-publisher\""), "{output}");
}

#[test]
fn import_name_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    format_one(dir.path(), "IT publisher (é)");
    ok(dir.path(), &["trust", "init", "--out", "trust.toml", "--root", "ciso=root.key.pub", "--import-v1", "old.toml", "--approval", "publisher", "--recall", "root", "--pause", "root", "--resume", "root", "--membership", "root"]);
    let written = std::fs::read_to_string(dir.path().join("trust.toml")).expect("trust file");
    assert!(written.contains("\"IT-publisher----\""), "{written}");
}

#[test]
fn import_valid_name_silent() {
    let dir = tempfile::tempdir().expect("tempdir");
    format_one(dir.path(), "it-publisher");
    let output = ok(dir.path(), &["trust", "init", "--out", "trust.toml", "--root", "ciso=root.key.pub", "--import-v1", "old.toml", "--approval", "publisher", "--recall", "root", "--pause", "root", "--resume", "root", "--membership", "root"]);
    assert!(!output.contains("becomes"), "{output}");
}

/// Writes a signed version 1 with one key in each of root, publisher, reviewer and executive.
fn governed(dir: &Path) {
    common::signed_trust_file(dir, &[], &[]);
}

#[test]
fn revoke_last_key_hint() {
    let dir = tempfile::tempdir().expect("tempdir");
    governed(dir.path());
    let output = fails(dir.path(), &["trust", "revoke", "trust.toml", "cto", "--out", "trust-2.toml"]);
    assert!(output.contains("patchmesh trust rotate trust.toml --out trust-2.toml --revoke cto --add executive:NAME=NEW.pub"), "{output}");
}

#[test]
fn readd_revoked_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    governed(dir.path());
    ok(dir.path(), &["keygen", "--out", "reviewer2.key"]);
    ok(dir.path(), &["trust", "rotate", "trust.toml", "--out", "trust-2.toml", "--revoke", "alice", "--add", "reviewer:alice-2=reviewer2.key.pub"]);
    let output = fails(dir.path(), &["trust", "rotate", "trust-2.toml", "--out", "trust-3.toml", "--add", "reviewer:alice=reviewer.key.pub"]);
    assert!(output.contains("was revoked and can never return"), "{output}");
}

#[test]
fn keygen_existing_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    ok(dir.path(), &["keygen", "--out", "node.key"]);
    let output = fails(dir.path(), &["keygen", "--out", "node.key"]);
    assert!(output.contains("node.key already exists; remove it or choose another path"), "{output}");
}

#[test]
fn keygen_existing_no_directory_hint() {
    let dir = tempfile::tempdir().expect("tempdir");
    ok(dir.path(), &["keygen", "--out", "node.key"]);
    let output = fails(dir.path(), &["keygen", "--out", "node.key"]);
    assert!(!output.contains("directory"), "{output}");
}

#[test]
fn keygen_missing_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = fails(dir.path(), &["keygen", "--out", "absent/node.key"]);
    assert!(output.contains("directory does not exist"), "{output}");
}

/// `trust show FILE | head -1`: the reader is gone before the first write.
#[test]
fn closed_stdout_is_quiet() {
    let dir = tempfile::tempdir().expect("tempdir");
    governed(dir.path());
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let output = Command::new(EXE)
        .current_dir(dir.path())
        .args(["trust", "show", "trust.toml"])
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .expect("run patchmesh");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.is_empty(), "{stderr}");
    assert_eq!(output.status.signal(), Some(libc::SIGPIPE), "{:?}", output.status);
}

#[test]
fn trust_show_iso_times() {
    let dir = tempfile::tempdir().expect("tempdir");
    governed(dir.path());
    let output = ok(dir.path(), &["trust", "show", "trust.toml"]);
    assert!(output.contains("Z (Unix "), "{output}");
}

#[test]
fn members_show_singular() {
    let dir = tempfile::tempdir().expect("tempdir");
    ok(dir.path(), &["members", "add", "members.toml", "--peer", "12D3KooWPilot", "--site", "pilot"]);
    let output = ok(dir.path(), &["members", "show", "members.toml"]);
    assert!(output.contains(", 1 member\n"), "{output}");
}

#[test]
fn help_names_governance() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = ok(dir.path(), &["--help"]);
    assert!(output.contains("rollout governance"), "{output}");
}

#[test]
fn node_help_names_configuration_doc() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = ok(dir.path(), &["node", "--help"]);
    assert!(output.contains("docs/configuration.md"), "{output}");
}
