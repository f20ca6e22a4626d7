//! Rollout waves between real daemon processes over 127.0.0.1: office-1 is the pilot,
//! and the other offices store no chunk before it verified and its soak passed.

mod support;

use std::time::Duration;

use support::{TestMesh, patchmesh, pattern};

const SOAK_SECS: u64 = 2;

#[test]
fn second_wave_starts_after_pilot_verifies() {
    let mut mesh = TestMesh::new(3);
    mesh.start_all();
    let plan = mesh.root.path().join("plan.toml");
    let text = format!(
        "[[waves]]\nsites = [\"office-1\"]\nstart = {{ kind = \"at\", time = 0 }}\n\n\
         [[waves]]\nstart = {{ kind = \"after-previous\", min_verified_percent = 100, soak_secs = {SOAK_SECS} }}\n"
    );
    std::fs::write(&plan, text).expect("plan");
    let source = mesh.root.path().join("patch.bin");
    std::fs::write(&source, pattern(200 * 1024 + 17, 3)).expect("source");
    let output = mesh.publish("KB-waves", &[source.as_path()], &["--chunk-size", "4096", "--plan", plan.to_str().expect("utf-8")]);
    assert!(output.status.success(), "publish failed: {}", String::from_utf8_lossy(&output.stderr));

    mesh.wait_complete("KB-waves", Duration::from_secs(60));

    let pilot = mesh.nodes[1].patch("KB-waves").expect("pilot status");
    let pilot_done = pilot["completed_at_us"].as_u64().expect("pilot completion time");
    assert_eq!(pilot["wave"]["wave"], 1, "{pilot}");
    for node in &mesh.nodes[2..] {
        let patch = node.patch("KB-waves").expect("status");
        let first = patch["first_chunk_at_us"].as_u64().expect("first chunk time");
        assert_eq!(patch["wave"]["wave"], 2, "{}: {patch}", node.name);
        assert!(
            first >= pilot_done + SOAK_SECS * 1_000_000,
            "{} stored a chunk {} ms after the pilot verified, inside the {SOAK_SECS} s soak",
            node.name,
            (first as i64 - pilot_done as i64) / 1000
        );
    }
    let log = mesh.nodes[2].log();
    assert!(log.contains("rollout wave open"), "wave opening not logged:\n{log}");

    let socket = mesh.nodes[2].socket();
    let output = patchmesh(&["status", "--socket", socket.to_str().expect("utf-8"), "--patch", "KB-waves"]);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "status --patch failed: {}", String::from_utf8_lossy(&output.stderr));
    assert!(text.contains("wave: 2, open"), "no wave state in status --patch:\n{text}");
    assert!(text.contains("wave 1: 1 of 1 nodes verified, 0 failed"), "no wave counts in status --patch:\n{text}");
}

#[test]
fn status_shows_every_site_from_reports() {
    let mut mesh = TestMesh::new(2);
    mesh.start_all();
    let source = mesh.root.path().join("patch.bin");
    std::fs::write(&source, pattern(64 * 1024, 4)).expect("source");
    let output = mesh.publish("KB-view", &[source.as_path()], &["--chunk-size", "4096"]);
    assert!(output.status.success(), "publish failed: {}", String::from_utf8_lossy(&output.stderr));
    mesh.wait_complete("KB-view", Duration::from_secs(60));

    // A report follows a state change within about a second.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let status = mesh.nodes[1].status().expect("status");
        let rows = status.node["mesh"].as_array().cloned().unwrap_or_default();
        let verified: u64 = rows.iter().filter(|row| row["patch_id"] == "KB-view").map(|row| row["verified"].as_u64().unwrap_or(0)).sum();
        if verified == 3 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "office-1 sees {verified} verified nodes, not 3: {rows:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let socket = mesh.nodes[1].socket();
    let output = patchmesh(&["status", "--socket", socket.to_str().expect("utf-8")]);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("mesh, from signed status reports (3 site rows)"), "no mesh table in status:\n{text}");
}
