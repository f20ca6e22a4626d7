//! Reloading `node.toml` in running daemons over 127.0.0.1: SIGHUP and
//! `patchmesh node reload` apply new caps, a broken file changes nothing, and a lowered
//! cap slows a transfer under way.

mod support;

use std::time::{Duration, Instant};

use support::{TestMesh, TestNode, patchmesh, pattern};

fn path(node: &TestNode, name: &str) -> String {
    node.dir.join(name).to_str().expect("utf-8").to_string()
}

/// Replaces the `[caps]` upload rate in `node`'s config: the config ends with the
/// `[caps]` table this file's tests append.
fn set_upload_cap(node: &TestNode, rate: &str) {
    let config_path = node.dir.join("node.toml");
    let config = std::fs::read_to_string(&config_path).expect("config");
    let base = config.split("[caps]").next().expect("config text");
    std::fs::write(&config_path, format!("{base}[caps]\nupload = {{ rate = \"{rate}\" }}\n")).expect("config");
}

fn reload(node: &TestNode) -> std::process::Output {
    patchmesh(&["node", "reload", "--socket", &path(node, "control.sock")])
}

/// Waits until `node`'s log contains `text` `count` times.
fn wait_log(node: &TestNode, text: &str, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while node.log().matches(text).count() < count {
        assert!(Instant::now() < deadline, "{}: {text:?} not logged {count} times:\n{}", node.name, node.log());
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn started_node() -> TestMesh {
    let mut mesh = TestMesh::new(0);
    mesh.nodes[0].append_config("[caps]\nupload = { rate = \"8Mbit/s\" }\n");
    mesh.start_all();
    mesh
}

#[test]
fn sighup_applies_new_cap() {
    let mesh = started_node();
    let node = &mesh.nodes[0];
    set_upload_cap(node, "800kbit/s");
    node.signal("HUP");
    wait_log(node, "config reloaded", 1);
    let log = node.log();
    assert!(log.contains("applied=[\"caps\"]"), "{log}");
    assert!(log.contains("upload_bytes_per_s=Some(100000.0)"), "{log}");
    assert!(node.status().is_some(), "node stopped after SIGHUP");
}

#[test]
fn reload_command_applies_new_cap() {
    let mesh = started_node();
    let node = &mesh.nodes[0];
    set_upload_cap(node, "800kbit/s");
    let output = reload(node);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(stdout.contains("applied caps"), "{stdout}");
    let output = patchmesh(&["node", "reload", "--config", &path(node, "node.toml")]);
    assert!(String::from_utf8_lossy(&output.stdout).contains("nothing changed"), "{output:?}");
}

#[test]
fn broken_file_keeps_old_caps() {
    let mesh = started_node();
    let node = &mesh.nodes[0];
    set_upload_cap(node, "eight megabits");
    let output = reload(node);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("caps.upload"), "{stderr}");
    assert!(stderr.contains("keeps its current settings"), "{stderr}");
    node.signal("HUP");
    wait_log(node, "config reload rejected", 2);

    // Back to the original file: nothing to apply, so the old cap was in force all along.
    set_upload_cap(node, "8Mbit/s");
    let output = reload(node);
    assert!(String::from_utf8_lossy(&output.stdout).contains("nothing changed"), "{output:?}");
}

#[test]
fn fixed_key_change_warned() {
    let mesh = started_node();
    let node = &mesh.nodes[0];
    let config_path = node.dir.join("node.toml");
    let config = std::fs::read_to_string(&config_path).expect("config");
    std::fs::write(&config_path, config.replace("site = \"hq\"", "site = \"hq-2\"")).expect("config");
    let output = reload(node);
    assert!(output.status.success(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("site changed, but only a restart applies it"), "{stderr}");
    assert_eq!(node.status().expect("status").node["site"], "hq");
}

/// Returns the bytes of patch `id` that `node` has received, from its status.
fn received(node: &TestNode, id: &str) -> u64 {
    node.patch(id).map_or(0, |patch| patch["stats"]["bytes_from_origin"].as_u64().unwrap_or(0) + patch["stats"]["bytes_from_peers"].as_u64().unwrap_or(0))
}

/// Samples `received` every 100 ms for `span`, returning `(seconds since start, bytes)`.
fn sample(node: &TestNode, id: &str, start: Instant, span: Duration) -> Vec<(f64, u64)> {
    let end = Instant::now() + span;
    let mut samples = Vec::new();
    while Instant::now() < end {
        samples.push((start.elapsed().as_secs_f64(), received(node, id)));
        std::thread::sleep(Duration::from_millis(100));
    }
    samples
}

fn rate(samples: &[(f64, u64)]) -> f64 {
    let (first, last) = (samples[0], samples[samples.len() - 1]);
    (last.1 - first.1) as f64 / (last.0 - first.0)
}

#[test]
fn lowered_cap_slows_transfer() {
    const BEFORE: f64 = 1_000_000.0;
    const AFTER: f64 = 200_000.0;
    let mut mesh = TestMesh::new(1);
    mesh.nodes[0].append_config("[caps]\nupload = { rate = \"8Mbit/s\" }\n");
    mesh.start_all();
    let source = mesh.root.path().join("big.bin");
    std::fs::write(&source, pattern(12 << 20, 4)).expect("source");
    let output = mesh.publish("KB-cap", &[source.as_path()], &["--chunk-size", "16384"]);
    assert!(output.status.success(), "publish failed: {}", String::from_utf8_lossy(&output.stderr));
    let office = &mesh.nodes[1];
    let start = Instant::now();
    while received(office, "KB-cap") < 200_000 {
        assert!(start.elapsed() < Duration::from_secs(20), "office-1 never started downloading");
        std::thread::sleep(Duration::from_millis(50));
    }
    let before = sample(office, "KB-cap", start, Duration::from_millis(1500));

    set_upload_cap(&mesh.nodes[0], "1600kbit/s");
    let output = reload(&mesh.nodes[0]);
    assert!(output.status.success(), "{output:?}");
    // The first second after the change drains what was already granted.
    std::thread::sleep(Duration::from_secs(1));
    let after = sample(office, "KB-cap", start, Duration::from_secs(3));

    let (before, after) = (rate(&before), rate(&after));
    println!("payload rate: {before:.0} B/s under the {BEFORE} B/s cap, {after:.0} B/s under the {AFTER} B/s cap");
    assert!(before > AFTER * 3.0, "{before:.0} B/s before the change: the first cap did not allow a fast transfer");
    assert!(after <= AFTER * 1.1, "{after:.0} B/s after lowering the cap to {AFTER} B/s");
    assert!(after >= AFTER * 0.5, "{after:.0} B/s after the change: far below the new cap of {AFTER} B/s");
    assert!(received(office, "KB-cap") < 12 << 20, "the transfer finished during the measurement");
}
