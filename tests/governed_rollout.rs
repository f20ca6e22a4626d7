//! Rollouts under a format 2 trust file between real daemons over 127.0.0.1: approvals
//! gate the rollout, a recall drops the patch everywhere.

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use support::{TestMesh, patchmesh, pattern};

fn ok(output: Output, what: &str) -> String {
    assert!(
        output.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn path(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

/// A mesh of an origin and `offices` offices whose trust file is format 2: the test
/// mesh's publisher, one reviewer and one executive must approve.
struct Governed {
    mesh: TestMesh,
    reviewer: PathBuf,
    executive: PathBuf,
    admin: PathBuf,
}

impl Governed {
    fn new(offices: usize) -> Governed {
        let mesh = TestMesh::new(offices);
        let dir = mesh.root.path();
        for name in ["root", "reviewer", "executive", "admin"] {
            ok(patchmesh(&["keygen", "--out", path(&dir.join(format!("{name}.key")))]), "keygen");
        }
        let public = |name: &str| path(&dir.join(format!("{name}.key.pub"))).to_string();
        let trust = path(&mesh.trust).to_string();
        std::fs::remove_file(&mesh.trust).expect("remove the format 1 trust file");
        let init = [
            "trust".to_string(),
            "init".into(),
            "--out".into(),
            trust.clone(),
            "--root".into(),
            format!("root={}", public("root")),
            "--publisher".into(),
            format!("it={}", path(&mesh.publisher_key.with_extension("key.pub"))),
            "--reviewer".into(),
            format!("alice={}", public("reviewer")),
            "--executive".into(),
            format!("cto={}", public("executive")),
            "--node-admin".into(),
            format!("ops={}", public("admin")),
        ];
        ok(patchmesh(&init.iter().map(String::as_str).collect::<Vec<_>>()), "trust init");
        ok(patchmesh(&["trust", "sign", &trust, "--key", path(&dir.join("root.key"))]), "trust sign");
        Governed {
            reviewer: dir.join("reviewer.key"),
            executive: dir.join("executive.key"),
            admin: dir.join("admin.key"),
            mesh,
        }
    }

    /// Publishes a 64-chunk patch `id` through the origin and returns its manifest file.
    fn publish(&self, id: &str) -> PathBuf {
        let source = self.mesh.root.path().join(format!("{id}.bin"));
        std::fs::write(&source, pattern(64 * 4096, 9)).expect("source");
        ok(self.mesh.publish(id, &[source.as_path()], &["--chunk-size", "4096"]), "publish");
        self.mesh.root.path().join(format!("{id}.manifest.json"))
    }

    /// Runs `approve MANIFEST --key KEY --submit` against node `index`.
    fn approve(&self, manifest: &Path, key: &Path, index: usize) -> String {
        let socket = self.mesh.nodes[index].socket();
        ok(patchmesh(&["approve", path(manifest), "--key", path(key), "--submit", "--socket", path(&socket)]), "approve --submit")
    }

    fn wait_until(&self, what: &str, timeout: Duration, done: impl Fn(&TestMesh) -> bool) {
        let deadline = Instant::now() + timeout;
        while !done(&self.mesh) {
            if Instant::now() >= deadline {
                let logs: Vec<String> = self.mesh.nodes.iter().map(|node| format!("--- {}\n{}", node.name, node.log())).collect();
                panic!("{what} not reached within {timeout:?}; logs:\n{}", logs.join("\n"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[test]
fn rollout_waits_for_two_approvals() {
    let mut governed = Governed::new(2);
    governed.mesh.start_all();
    let manifest = governed.publish("KB-gated");

    // Every office learns of the patch and waits.
    governed.wait_until("announcement at every office", Duration::from_secs(10), |mesh| {
        mesh.nodes[1..].iter().all(|node| node.patch("KB-gated").is_some())
    });
    std::thread::sleep(Duration::from_secs(1));
    for node in &governed.mesh.nodes[1..] {
        let patch = node.patch("KB-gated").expect("patch");
        assert_eq!(patch["chunks_verified"], 0, "{}: fetched before approval", node.name);
        assert_eq!(patch["approvals"]["met"], false, "{}", node.name);
        assert_eq!(patch["approvals"]["missing"].as_array().map(Vec::len), Some(2), "{}: {patch}", node.name);
    }

    let table = ok(patchmesh(&["status", "--socket", path(&governed.mesh.nodes[1].socket())]), "status");
    assert!(table.contains("waiting for approvals: needs"), "{table}");
    assert!(table.contains("waiting-approval"), "the state column should say what holds the patch back:\n{table}");

    governed.approve(&manifest, &governed.reviewer, 1);
    std::thread::sleep(Duration::from_secs(1));
    let patch = governed.mesh.nodes[2].patch("KB-gated").expect("patch");
    assert_eq!(patch["chunks_verified"], 0, "fetched after one approval: {patch}");
    assert_eq!(patch["approvals"]["missing"].as_array().map(Vec::len), Some(1), "approval did not reach office-2: {patch}");

    governed.approve(&manifest, &governed.executive, 2);
    governed.mesh.wait_complete("KB-gated", Duration::from_secs(15));

    let status = ok(
        patchmesh(&["status", "--socket", path(&governed.mesh.nodes[1].socket()), "--patch", "KB-gated"]),
        "status --patch",
    );
    assert!(status.contains("approval rule: met"), "{status}");
    assert!(status.contains("reviewer:alice"), "{status}");
    assert!(status.contains("executive:cto"), "{status}");

    let audit = ok(patchmesh(&["audit", "--data-dir", path(&governed.mesh.nodes[1].data()), "--json", "-"]), "audit");
    for kind in ["\"trust-change\"", "\"approval\"", "\"publish\""] {
        assert!(audit.contains(kind), "audit log lacks {kind}:\n{audit}");
    }
}

#[test]
fn recall_drops_the_patch_everywhere() {
    let mut governed = Governed::new(2);
    governed.mesh.start_all();
    let manifest = governed.publish("KB-recall");
    governed.approve(&manifest, &governed.reviewer, 0);
    governed.approve(&manifest, &governed.executive, 0);
    governed.mesh.wait_complete("KB-recall", Duration::from_secs(15));

    let version = support::read_manifest(&manifest).key().version.to_string();
    let recalled_key = format!("KB-recall@{version}");
    let order = governed.mesh.root.path().join("recall.json");
    let socket = governed.mesh.nodes[2].socket();
    ok(
        patchmesh(&[
            "recall", "KB-recall", "--version", &version, "--key", path(&governed.executive), "--out", path(&order),
            "--reason", "breaks printing", "--submit", "--socket", path(&socket),
        ]),
        "recall --submit",
    );

    governed.wait_until("recall at every node", Duration::from_secs(10), |mesh| {
        mesh.nodes.iter().all(|node| {
            let status = node.status().expect("status");
            let recalled = status.node["recalled"].as_array().is_some_and(|list| list.iter().any(|key| key == recalled_key.as_str()));
            recalled && node.patch("KB-recall").is_none()
        })
    });
    let table = ok(patchmesh(&["status", "--socket", path(&governed.mesh.nodes[1].socket())]), "status");
    assert!(table.contains(&format!("{recalled_key}: recalled")), "{table}");
    for node in &governed.mesh.nodes {
        let dir = node.data().join("patches").join("KB-recall").join(&version);
        assert!(!dir.exists(), "{}: {} still exists after the recall", node.name, dir.display());
        let audit = std::fs::read_to_string(node.data().join("audit.jsonl")).expect("audit log");
        assert!(audit.contains("\"recall\""), "{}: no recall in the audit log:\n{audit}", node.name);
    }
    // Every node's signed report marks the version recalled, so one status shows all.
    governed.wait_until("every node reported recalled", Duration::from_secs(10), |mesh| {
        let view = mesh.nodes[0].status().map(|status| status.node["mesh"].clone()).unwrap_or_default();
        let recalled: u64 = view
            .as_array()
            .into_iter()
            .flatten()
            .filter(|row| row["patch_id"] == "KB-recall")
            .filter_map(|row| row["recalled"].as_u64())
            .sum();
        recalled == mesh.nodes.len() as u64
    });
}

#[test]
fn unlisted_peer_refused_at_connection() {
    let mut governed = Governed::new(2);
    let dir = governed.mesh.root.path().to_path_buf();
    let members = dir.join("members.toml");
    let peer_of = |index: usize| {
        let key = patchmesh_node::keyfile::read_secret_key(&governed.mesh.nodes[index].dir.join("node.key")).expect("node key");
        patchmesh_node::keyfile::peer_id(&key)
    };
    let (listed, unlisted) = ([(0, "hq"), (1, "office-1")], peer_of(2));
    for (index, site) in listed {
        ok(patchmesh(&["members", "add", path(&members), "--peer", &peer_of(index), "--site", site]), "members add");
    }
    ok(patchmesh(&["members", "sign", path(&members), "--key", path(&governed.admin)]), "members sign");
    for node in &governed.mesh.nodes {
        node.append_config(&format!("membership_file = \"{}\"\n", members.display()));
    }
    governed.mesh.start_all();
    let manifest = governed.publish("KB-members");
    governed.approve(&manifest, &governed.reviewer, 0);
    governed.approve(&manifest, &governed.executive, 0);

    governed.wait_until("office-1 complete", Duration::from_secs(15), |mesh| {
        mesh.nodes[1].patch("KB-members").is_some_and(|patch| patch["state"] == "complete")
    });
    // office-2 dialled both others at start; each refused it before any message.
    std::thread::sleep(Duration::from_secs(1));
    let office = &governed.mesh.nodes[2];
    assert!(office.patch("KB-members").is_none(), "the unlisted office learned of the patch");
    let peers = office.status().expect("status").node["peers"].as_array().map(Vec::len);
    assert_eq!(peers, Some(0), "the unlisted office has connected peers");
    for node in &governed.mesh.nodes[..2] {
        let log = node.log();
        let refusals = log.lines().filter(|line| line.contains("not on the membership list") && line.contains(&unlisted)).count();
        assert!(refusals >= 1, "{}: no refusal logged for {unlisted}:\n{log}", node.name);
        assert!(refusals <= 2, "{}: {refusals} refusals logged for one peer; expected the rate limit to hold them", node.name);
    }
    // The rejected side logs the likely cause once its redials keep failing.
    governed.wait_until("a hint on the refused office", Duration::from_secs(30), |mesh| {
        mesh.nodes[2].log().contains("it may be refusing this node")
    });
}

#[test]
fn approvals_survive_a_restart() {
    let mut governed = Governed::new(1);
    governed.mesh.start_all();
    let manifest = governed.publish("KB-restart");
    governed.approve(&manifest, &governed.reviewer, 0);

    // Restarted alone, the origin can only know the approval from its own data dir.
    governed.mesh.nodes[0].kill();
    governed.mesh.nodes[0].start();
    let patch = governed.mesh.nodes[0].patch("KB-restart").expect("patch restored");
    let present = patch["approvals"]["present"].to_string();
    assert!(present.contains("reviewer:alice"), "approval lost in the restart: {patch}");
    assert_eq!(patch["approvals"]["met"], false, "{patch}");

    governed.approve(&manifest, &governed.executive, 0);
    let address = vec![governed.mesh.nodes[0].address.clone()];
    governed.mesh.nodes[1].connect(address);
    governed.mesh.wait_complete("KB-restart", Duration::from_secs(15));
}

#[test]
fn recall_runs_recalled_hook() {
    let mut governed = Governed::new(1);
    let out = governed.mesh.root.path().join("recalled-env.txt");
    let hook = governed.mesh.root.path().join("on-recall.sh");
    std::fs::write(&hook, format!("#!/bin/sh\nenv | grep '^PATCHMESH_' | sort > {}\n", out.display())).expect("hook script");
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod hook");
    governed.mesh.nodes[1].append_config(&format!("[hooks]\nrecalled = [\"{}\"]\n", hook.display()));
    // The origin never installed what it published, so it runs no recalled hook.
    let origin_out = governed.mesh.root.path().join("origin-recalled.txt");
    let origin_hook = governed.mesh.root.path().join("origin-recall.sh");
    std::fs::write(&origin_hook, format!("#!/bin/sh\ntouch {}\n", origin_out.display())).expect("origin hook script");
    std::fs::set_permissions(&origin_hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod hook");
    governed.mesh.nodes[0].append_config(&format!("[hooks]\nrecalled = [\"{}\"]\n", origin_hook.display()));
    governed.mesh.start_all();
    let manifest = governed.publish("KB-undo");
    governed.approve(&manifest, &governed.reviewer, 0);
    governed.approve(&manifest, &governed.executive, 0);
    governed.mesh.wait_complete("KB-undo", Duration::from_secs(15));

    let version = support::read_manifest(&manifest).key().version.to_string();
    let order = governed.mesh.root.path().join("undo.json");
    let socket = governed.mesh.nodes[0].socket();
    ok(
        patchmesh(&[
            "recall", "KB-undo", "--version", &version, "--key", path(&governed.executive), "--out", path(&order),
            "--reason", "breaks printing", "--submit", "--socket", path(&socket),
        ]),
        "recall --submit",
    );
    governed.wait_until("the recalled hook", Duration::from_secs(10), |_| out.exists());
    std::thread::sleep(Duration::from_millis(200));
    let env = std::fs::read_to_string(&out).expect("hook output");
    assert!(env.contains("PATCHMESH_EVENT=recalled\n"), "{env}");
    assert!(env.contains(&format!("PATCHMESH_PATCH=KB-undo@{version}\n")), "{env}");
    assert!(env.contains("PATCHMESH_REASON=breaks printing\n"), "{env}");
    assert!(env.contains(&format!("PATCHMESH_TOTAL_BYTES={}\n", 64 * 4096)), "{env}");
    assert!(!env.contains("PATCHMESH_FILE="), "{env}");
    std::thread::sleep(Duration::from_millis(500));
    assert!(!origin_out.exists(), "the origin ran a recalled hook for its own publish");
}

/// The trust file version node `index` enforces, from its status.
fn trust_version(mesh: &TestMesh, index: usize) -> Option<u64> {
    mesh.nodes[index].status().and_then(|status| status.node["trust_version"].as_u64())
}

#[test]
fn trust_update_spreads_and_survives_a_restart() {
    let mut governed = Governed::new(2);
    governed.mesh.start_all();
    let dir = governed.mesh.root.path().to_path_buf();
    let trust = path(&governed.mesh.trust).to_string();
    for name in ["cto2", "usurper"] {
        ok(patchmesh(&["keygen", "--out", path(&dir.join(format!("{name}.key")))]), "keygen");
    }

    // An update signed only by a key the installed version does not trust as root.
    let usurped = path(&dir.join("usurped.toml")).to_string();
    let usurper = format!("root:mallory={}", path(&dir.join("usurper.key.pub")));
    ok(patchmesh(&["trust", "rotate", &trust, "--out", &usurped, "--add", &usurper, "--remove", "root"]), "rotate");
    ok(patchmesh(&["trust", "sign", &usurped, "--key", path(&dir.join("usurper.key"))]), "sign");
    let socket = governed.mesh.nodes[1].socket();
    let refused = patchmesh(&["trust", "submit", &usurped, "--socket", path(&socket)]);
    assert!(!refused.status.success(), "a usurped trust file was taken");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not taken"), "{}", String::from_utf8_lossy(&refused.stderr));

    // Version 2, signed by the real root, revokes the executive's key and adds cto2.
    let next = path(&dir.join("next.toml")).to_string();
    let cto2 = format!("executive:cto2={}", path(&dir.join("cto2.key.pub")));
    ok(patchmesh(&["trust", "rotate", &trust, "--out", &next, "--revoke", "cto", "--add", &cto2]), "rotate");
    ok(patchmesh(&["trust", "sign", &next, "--key", path(&dir.join("root.key"))]), "sign");
    ok(patchmesh(&["trust", "submit", &next, "--socket", path(&socket)]), "submit");
    governed.wait_until("trust version 2 at every node", Duration::from_secs(10), |mesh| {
        (0..mesh.nodes.len()).all(|index| trust_version(mesh, index) == Some(2))
    });

    // A version the node already enforces, offered again, is rejected with that version.
    let again = patchmesh(&["trust", "submit", &next, "--socket", path(&socket)]);
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("already enforces version 2"), "{stderr}");
    let older = patchmesh(&["trust", "submit", &trust, "--socket", path(&socket)]);
    let stderr = String::from_utf8_lossy(&older.stderr);
    assert!(stderr.contains("version 1 not taken: the node already enforces version 2"), "{stderr}");

    // The revoked executive no longer approves; the new one does.
    let manifest = governed.publish("KB-rotated");
    governed.approve(&manifest, &governed.reviewer, 2);
    let socket = governed.mesh.nodes[2].socket();
    let aside = path(&dir.join("revoked.approvals.json")).to_string();
    let revoked = patchmesh(&[
        "approve",
        path(&manifest),
        "--key",
        path(&governed.executive),
        "--approvals",
        &aside,
        "--submit",
        "--socket",
        path(&socket),
    ]);
    assert!(!revoked.status.success(), "the node took an approval by a revoked key");
    assert!(String::from_utf8_lossy(&revoked.stderr).contains("revoked"), "{}", String::from_utf8_lossy(&revoked.stderr));
    governed.approve(&manifest, &dir.join("cto2.key"), 2);
    governed.mesh.wait_complete("KB-rotated", Duration::from_secs(20));

    governed.mesh.nodes[2].kill();
    governed.mesh.nodes[2].start();
    assert_eq!(trust_version(&governed.mesh, 2), Some(2), "the update was lost in the restart");
}

#[test]
fn gossiped_membership_list_enforced_without_config() {
    let mut governed = Governed::new(2);
    governed.mesh.start_all();
    let dir = governed.mesh.root.path().to_path_buf();
    let members = dir.join("members.toml");
    let peer_of = |index: usize| governed.mesh.nodes[index].status().expect("status").peer_id;
    let unlisted = peer_of(2);
    for (index, site) in [(0, "hq"), (1, "office-1")] {
        ok(patchmesh(&["members", "add", path(&members), "--peer", &peer_of(index), "--site", site]), "members add");
    }
    let socket = governed.mesh.nodes[0].socket();
    ok(patchmesh(&["members", "sign", path(&members), "--key", path(&governed.admin), "--submit", "--socket", path(&socket)]), "members sign");

    // No node has membership_file set: the signed list alone cuts office-2 off. Each
    // side handles the closed connection in its own time, so wait for all three.
    governed.wait_until("office-2 disconnected", Duration::from_secs(10), |mesh| {
        mesh.nodes[2].status().is_some_and(|status| status.node["peers"].as_array().is_some_and(Vec::is_empty))
            && mesh.nodes[..2]
                .iter()
                .all(|node| node.status().is_some_and(|status| !status.node["peers"].to_string().contains(&unlisted)))
    });
    for node in &governed.mesh.nodes[..2] {
        let log = node.log();
        assert!(log.contains("membership list enforced"), "{}: list not enforced:\n{log}", node.name);
    }

    // office-1 keeps enforcing it after a restart, from its data dir.
    governed.mesh.nodes[1].kill();
    governed.mesh.nodes[1].start();
    let log_before = governed.mesh.nodes[1].log().len();
    let address = vec![governed.mesh.nodes[1].address.clone()];
    governed.mesh.nodes[2].connect(address);
    governed.wait_until("office-1 refuses office-2 after the restart", Duration::from_secs(10), |mesh| {
        mesh.nodes[1].log()[log_before..].contains("not on the membership list")
    });
}
