//! Running the real `patchmesh` binary from the integration tests.

// Each test crate compiles its own copy and uses only some of these.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

pub(crate) const EXE: &str = env!("CARGO_BIN_EXE_patchmesh");

/// Runs `patchmesh ARGS` in `dir`, with no passphrase in the environment.
pub(crate) fn patchmesh(dir: &Path, args: &[&str]) -> Output {
    Command::new(EXE).current_dir(dir).args(args).env_remove("PATCHMESH_PASSPHRASE").output().expect("run patchmesh")
}

/// Joins standard output and standard error.
pub(crate) fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// Runs a command that must succeed and returns its output.
pub(crate) fn ok(dir: &Path, args: &[&str]) -> String {
    let output = patchmesh(dir, args);
    assert!(output.status.success(), "patchmesh {args:?} failed: {}", text(&output));
    text(&output)
}

/// Generates the keys `root`, `publisher`, `reviewer`, `executive` and `extra_keys` in
/// `dir`, then writes `trust.toml` (format 2, one key per role, root signs membership
/// lists) with `extra_args` added to `trust init`, and signs it with the root key.
pub(crate) fn signed_trust_file(dir: &Path, extra_keys: &[&str], extra_args: &[&str]) {
    for key in ["root", "publisher", "reviewer", "executive"].iter().chain(extra_keys) {
        ok(dir, &["keygen", "--out", &format!("{key}.key")]);
    }
    let mut init = vec![
        "trust", "init", "--out", "trust.toml",
        "--root", "ciso=root.key.pub",
        "--publisher", "it=publisher.key.pub",
        "--reviewer", "alice=reviewer.key.pub",
        "--executive", "cto=executive.key.pub",
        "--membership", "root",
    ];
    init.extend_from_slice(extra_args);
    ok(dir, &init);
    ok(dir, &["trust", "sign", "trust.toml", "--key", "root.key"]);
}
