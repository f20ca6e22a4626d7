//! End-to-end rollouts between real daemon processes over 127.0.0.1.

mod support;

use std::time::{Duration, Instant};

use support::{TestMesh, pattern, patchmesh};

const CHUNK: usize = 4096;

#[test]
fn five_offices_get_identical_files() {
    let mut mesh = TestMesh::new(5);
    mesh.start_all();
    let source = mesh.root.path().join("source");
    std::fs::create_dir_all(source.join("sub")).expect("source dir");
    let big = pattern(37 * CHUNK + 1234, 1);
    let files = [
        (source.join("patch.bin"), big),
        (source.join("empty.txt"), Vec::new()),
        (source.join("sub/one.txt"), vec![b'1']),
    ];
    for (path, bytes) in &files {
        std::fs::write(path, bytes).expect("write source");
    }
    let paths: Vec<&std::path::Path> = files.iter().map(|(p, _)| p.as_path()).collect();
    let output = mesh.publish("KB-e2e", &paths, &["--root", source.to_str().expect("utf-8"), "--chunk-size", "4096"]);
    assert!(output.status.success(), "publish failed: {}", String::from_utf8_lossy(&output.stderr));

    mesh.wait_complete("KB-e2e", Duration::from_secs(120));

    for node in &mesh.nodes[1..] {
        let status = node.status().expect("status");
        let (_, assembled) = status.files.iter().find(|(key, _)| key.starts_with("KB-e2e@")).expect("files listed");
        assert_eq!(assembled.len(), files.len(), "{}: file count", node.name);
        for ((_, expected), path) in files.iter().zip(assembled) {
            let actual = std::fs::read(path).expect("assembled file");
            assert!(actual == *expected, "{}: {} differs from the source", node.name, path.display());
        }
    }
}

#[test]
fn sigkill_mid_download_resumes() {
    let mut mesh = TestMesh::new(2);
    mesh.start_all();
    let source = mesh.root.path().join("big.bin");
    let chunk = 1024usize;
    let bytes = pattern(3000 * chunk + 77, 2);
    std::fs::write(&source, &bytes).expect("source");
    let output = mesh.publish("KB-kill", &[source.as_path()], &["--chunk-size", "1024"]);
    assert!(output.status.success(), "publish failed: {}", String::from_utf8_lossy(&output.stderr));

    // Freeze both sources once office-1 is partway, so its store stops changing, then kill it.
    let deadline = Instant::now() + Duration::from_secs(60);
    let held = loop {
        let verified = mesh.nodes[1].patch("KB-kill").and_then(|p| p["chunks_verified"].as_u64()).unwrap_or(0);
        if verified > 0 {
            mesh.nodes[0].signal("STOP");
            mesh.nodes[2].signal("STOP");
            break verified;
        }
        assert!(Instant::now() < deadline, "office-1 never started downloading");
        std::thread::sleep(Duration::from_millis(2));
    };
    std::thread::sleep(Duration::from_millis(200));
    mesh.nodes[1].kill();
    mesh.nodes[0].signal("CONT");
    mesh.nodes[2].signal("CONT");
    let total_chunks = 3001u64;
    assert!(held < total_chunks, "office-1 finished before the kill; the test needs a larger file");

    mesh.nodes[1].start();
    let addresses = vec![mesh.nodes[0].address.clone(), mesh.nodes[2].address.clone()];
    mesh.nodes[1].connect(addresses);
    mesh.wait_complete("KB-kill", Duration::from_secs(120));

    let log = mesh.nodes[1].log();
    let resumed = log
        .lines()
        .filter(|line| line.contains("resuming patch"))
        .last()
        .and_then(|line| line.split("chunks=").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("restart log names no resumed chunk count; log:\n{log}"));
    assert!(resumed > 0, "nothing was resumed after the restart");

    // Chunks served to office-1 after the restart: exactly the ones it lacked.
    let office = mesh.nodes[1].status().expect("status").peer_id;
    let served_after: u64 = [&mesh.nodes[0], &mesh.nodes[2]]
        .iter()
        .filter_map(|node| node.status())
        .flat_map(|status| status.node["peers"].as_array().cloned().unwrap_or_default())
        .filter(|peer| peer["peer"] == office.as_str())
        .map(|peer| peer["bytes_sent"].as_u64().unwrap_or(0))
        .sum();
    // The resumed chunks are full 1 KiB chunks, or all but one plus the 77-byte last one.
    let full = bytes.len() as u64 - resumed * chunk as u64;
    let with_last = bytes.len() as u64 - (resumed - 1) * chunk as u64 - 77;
    assert!(
        served_after == full || served_after == with_last,
        "{served_after} bytes served after the restart, but {resumed} chunks were resumed: \
         expected {full} or {with_last}, so verified chunks were fetched again"
    );

    let status = mesh.nodes[1].status().expect("status");
    let (_, files) = status.files.iter().next().expect("assembled");
    assert!(std::fs::read(&files[0]).expect("file") == bytes, "assembled file differs");
}

#[test]
fn node_config_syntax_error_names_position() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("node.toml");
    std::fs::write(&config, "site = \"a\"\ndata_dir = [\n").expect("write");
    let output = patchmesh(&["node", "--config", config.to_str().expect("utf-8")]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("line 2") || stderr.contains("line 3"), "{stderr}");
    assert!(stderr.contains("column"), "{stderr}");
}

#[test]
fn missing_identity_key_is_named() {
    let mesh = TestMesh::new(1);
    std::fs::remove_file(mesh.nodes[1].dir.join("node.key")).expect("remove key");
    let output = patchmesh(&["node", "--config", mesh.nodes[1].dir.join("node.toml").to_str().expect("utf-8")]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("node.key"), "{stderr}");
    assert!(stderr.contains("keygen"), "{stderr}");
}

#[test]
fn world_readable_key_refused() {
    use std::os::unix::fs::PermissionsExt;
    let mesh = TestMesh::new(1);
    let key = mesh.nodes[1].dir.join("node.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let output = patchmesh(&["node", "--config", mesh.nodes[1].dir.join("node.toml").to_str().expect("utf-8")]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("chmod 600"), "{stderr}");
}

#[test]
fn unwritable_data_dir_refused() {
    let mesh = TestMesh::new(1);
    let dir = &mesh.nodes[1].dir;
    // A regular file where the data dir's parent should be: not writable even for root.
    std::fs::write(dir.join("blocker"), b"x").expect("blocker");
    let config = std::fs::read_to_string(dir.join("node.toml")).expect("config").replace("data_dir = \"data\"", "data_dir = \"blocker/data\"");
    std::fs::write(dir.join("node.toml"), config).expect("config");
    let output = patchmesh(&["node", "--config", dir.join("node.toml").to_str().expect("utf-8")]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("blocker"), "{stderr}");
}

#[test]
fn untrusted_publish_refused() {
    let mut mesh = TestMesh::new(1);
    mesh.nodes.truncate(1);
    mesh.start_all();
    let stranger = mesh.root.path().join("stranger.key");
    assert!(patchmesh(&["keygen", "--out", stranger.to_str().expect("utf-8")]).status.success());
    let file = mesh.root.path().join("f.bin");
    std::fs::write(&file, b"payload").expect("file");
    let output = patchmesh(&[
        "publish",
        file.to_str().expect("utf-8"),
        "--key",
        stranger.to_str().expect("utf-8"),
        "--id",
        "KB-bad",
        "--out",
        mesh.root.path().join("bad.json").to_str().expect("utf-8"),
        "--submit",
        "--socket",
        mesh.nodes[0].socket().to_str().expect("utf-8"),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("not signed by a trusted publisher"), "{stderr}");
    assert!(mesh.nodes[0].patch("KB-bad").is_none(), "the node kept an untrusted patch");
}

#[test]
fn verify_detects_changed_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("k");
    assert!(patchmesh(&["keygen", "--out", key.to_str().expect("utf-8")]).status.success());
    let public = std::fs::read_to_string(dir.path().join("k.pub")).expect("pub");
    let trust = dir.path().join("trust.toml");
    std::fs::write(&trust, format!("format = 1\n[[publisher]]\nname = \"t\"\nkey = \"{}\"\n", public.split_whitespace().next().expect("key"))).expect("trust");
    let file = dir.path().join("a.bin");
    std::fs::write(&file, pattern(10_000, 3)).expect("file");
    let manifest = dir.path().join("m.json");
    let output = patchmesh(&["publish", file.to_str().expect("utf-8"), "--key", key.to_str().expect("utf-8"), "--id", "KB-v", "--out", manifest.to_str().expect("utf-8")]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let root = dir.path().to_str().expect("utf-8");
    let ok = patchmesh(&["verify", manifest.to_str().expect("utf-8"), "--trust", trust.to_str().expect("utf-8"), "--root", root]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let mut bytes = std::fs::read(&file).expect("read");
    bytes[5000] ^= 1;
    std::fs::write(&file, bytes).expect("write");
    let bad = patchmesh(&["verify", manifest.to_str().expect("utf-8"), "--trust", trust.to_str().expect("utf-8"), "--root", root]);
    assert!(!bad.status.success(), "verify accepted a changed file");
}

#[test]
fn sigterm_stops_cleanly() {
    let mut mesh = TestMesh::new(1);
    mesh.nodes.truncate(1);
    mesh.start_all();
    let node = &mut mesh.nodes[0];
    node.signal("TERM");
    let mut child = node.child.take().expect("running");
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "node did not stop within 15 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "exit status {status}; log:\n{}", node.log());
    assert!(!node.socket().exists(), "control socket left behind");
    assert!(node.log().contains("node stopped"), "no stop logged");
}

#[test]
fn corrupt_peer_banned_others_finish() {
    let mut mesh = TestMesh::new(3);
    mesh.nodes[3].append_config("\n[fault_injection]\ncorrupt_served_chunks = true\n");
    mesh.start_all();
    let source = mesh.root.path().join("p.bin");
    let bytes = pattern(400 * 1024 + 5, 9);
    std::fs::write(&source, &bytes).expect("source");
    let output = mesh.publish("KB-bad-peer", &[source.as_path()], &["--chunk-size", "1024"]);
    assert!(output.status.success(), "publish failed: {}", String::from_utf8_lossy(&output.stderr));
    mesh.wait_complete("KB-bad-peer", Duration::from_secs(120));

    let corrupt_id = mesh.nodes[3].status().expect("status").peer_id;
    for node in &mesh.nodes[1..3] {
        let status = node.status().expect("status");
        let (_, files) = status.files.iter().find(|(key, _)| key.starts_with("KB-bad-peer@")).expect("files");
        assert!(std::fs::read(&files[0]).expect("file") == bytes, "{} holds different bytes", node.name);
        let log = node.log();
        let struck = log.lines().any(|line| line.contains("failed verification") && line.contains(&corrupt_id));
        let banned = log.lines().any(|line| line.contains("banning peer") && line.contains(&corrupt_id));
        let still_connected = status.node["peers"].as_array().expect("peers").iter().any(|p| p["peer"] == corrupt_id.as_str());
        if struck {
            assert!(banned, "{} struck the corrupt peer but did not ban it", node.name);
            assert!(!still_connected, "{} is still connected to the banned peer", node.name);
        }
        let honest_struck = log.lines().any(|line| line.contains("peer misbehaved") && !line.contains(&corrupt_id));
        assert!(!honest_struck, "{} struck an honest peer:\n{log}", node.name);
    }
    let anyone_struck = mesh.nodes[1..3].iter().any(|node| node.log().contains("failed verification"));
    assert!(anyone_struck, "no office ever fetched from the corrupt peer; the test proves nothing");
}

#[test]
fn hostile_gossip_keeps_node_working() {
    use futures::StreamExt;
    use libp2p::gossipsub;

    let mut mesh = TestMesh::new(1);
    mesh.start_all();
    let office_address: libp2p::Multiaddr = mesh.nodes[1].address.parse().expect("multiaddr");

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        // A peer whose gossipsub accepts 1 MiB messages, so it can send what honest
        // nodes never would.
        let mut swarm = libp2p::SwarmBuilder::with_new_identity()
            .with_tokio()
            .with_tcp(libp2p::tcp::Config::default(), libp2p::noise::Config::new, libp2p::yamux::Config::default)
            .expect("tcp")
            .with_behaviour(|key| {
                let config = gossipsub::ConfigBuilder::default().max_transmit_size(1 << 20).build().expect("config");
                let behaviour: gossipsub::Behaviour =
                    gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Signed(key.clone()), config).expect("gossipsub");
                behaviour
            })
            .expect("behaviour")
            .build();
        let topic = gossipsub::IdentTopic::new("patchmesh/announce/1");
        swarm.behaviour_mut().subscribe(&topic).expect("subscribe");
        swarm.dial(office_address).expect("dial");

        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let event = tokio::time::timeout_at(deadline, swarm.select_next_some()).await.expect("office subscribed in time");
            if let libp2p::swarm::SwarmEvent::Behaviour(gossipsub::Event::Subscribed { .. }) = event {
                break;
            }
        }
        // 10,000 distinct invalid announcements in about a second.
        for index in 0..10_000u32 {
            let garbage = format!("{{\"not\": \"an announcement\", \"n\": {index}}}");
            let _ = swarm.behaviour_mut().publish(topic.clone(), garbage.into_bytes());
            if index % 500 == 0 {
                let pause = tokio::time::Instant::now() + Duration::from_millis(50);
                while tokio::time::timeout_at(pause, swarm.select_next_some()).await.is_ok() {}
            }
        }
        let settle = tokio::time::Instant::now() + Duration::from_secs(1);
        while tokio::time::timeout_at(settle, swarm.select_next_some()).await.is_ok() {}
        let oversized = vec![b'x'; 200 * 1024];
        swarm.behaviour_mut().publish(topic.clone(), oversized).expect("publish oversized");
        let settle = tokio::time::Instant::now() + Duration::from_secs(1);
        while tokio::time::timeout_at(settle, swarm.select_next_some()).await.is_ok() {}
    });

    let log = mesh.nodes[1].log();
    assert!(log.contains("announcement rejected"), "garbage gossip was not rejected:\n{log}");
    let warnings = log.lines().filter(|line| line.contains("announcement rejected")).count();
    assert!(warnings <= 10, "{warnings} warnings logged for one hostile peer; repeats must be rate-limited");
    let rss_kib = mesh.nodes[1].rss_kib();
    eprintln!("after the flood: {warnings} warnings logged, office RSS {rss_kib} KiB");
    assert!(rss_kib < 100 * 1024, "office RSS {rss_kib} KiB after the flood");
    assert!(mesh.nodes[1].status().is_some(), "the office stopped answering after hostile gossip");

    let source = mesh.root.path().join("after.bin");
    std::fs::write(&source, pattern(50_000, 4)).expect("source");
    let output = mesh.publish("KB-after", &[source.as_path()], &[]);
    assert!(output.status.success(), "publish failed: {}", String::from_utf8_lossy(&output.stderr));
    mesh.wait_complete("KB-after", Duration::from_secs(60));
}

#[test]
fn publish_rejects_old_version() {
    let mut mesh = TestMesh::new(1);
    mesh.nodes.truncate(1);
    mesh.start_all();
    let file = mesh.root.path().join("f.bin");
    std::fs::write(&file, b"first").expect("file");
    let first = mesh.publish("KB-ver", &[file.as_path()], &["--version", "10"]);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    std::fs::write(&file, b"second, different").expect("file");
    for version in ["10", "9"] {
        let output = mesh.publish("KB-ver", &[file.as_path()], &["--version", version]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "version {version} accepted");
        assert!(stderr.contains("greater than 10"), "version {version}: {stderr}");
    }
    let newer = mesh.publish("KB-ver", &[file.as_path()], &["--version", "11"]);
    assert!(newer.status.success(), "{}", String::from_utf8_lossy(&newer.stderr));
}

#[test]
fn second_node_on_data_dir_refused() {
    let mut mesh = TestMesh::new(1);
    mesh.nodes.truncate(1);
    mesh.start_all();
    let output = patchmesh(&["node", "--config", mesh.nodes[0].dir.join("node.toml").to_str().expect("utf-8")]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("in use by another patchmesh node"), "{stderr}");
    assert!(mesh.nodes[0].status().is_some(), "the first node stopped answering");
}

#[test]
fn taken_port_refused() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = holder.local_addr().expect("addr").port();
    let mesh = TestMesh::new(1);
    let dir = &mesh.nodes[1].dir;
    let config = std::fs::read_to_string(dir.join("node.toml"))
        .expect("config")
        .replace("/ip4/127.0.0.1/tcp/0", &format!("/ip4/127.0.0.1/tcp/{port}"));
    std::fs::write(dir.join("node.toml"), config).expect("config");
    let output = patchmesh(&["node", "--config", dir.join("node.toml").to_str().expect("utf-8")]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains(&port.to_string()), "{stderr}");
}

#[test]
fn frozen_peer_bypassed() {
    let mut mesh = TestMesh::new(2);
    for node in &mut mesh.nodes[..2] {
        node.start();
    }
    let origin_address = mesh.nodes[0].address.clone();
    mesh.nodes[1].connect(vec![origin_address.clone()]);
    let source = mesh.root.path().join("f.bin");
    let bytes = pattern(3000 * 1024 + 3, 5);
    std::fs::write(&source, &bytes).expect("source");
    let output = mesh.publish("KB-frozen", &[source.as_path()], &["--chunk-size", "1024"]);
    assert!(output.status.success(), "publish failed: {}", String::from_utf8_lossy(&output.stderr));
    mesh.wait_complete("KB-frozen", Duration::from_secs(60));

    // office-2 starts fetching from office-1 alone; once it has some chunks, office-1
    // freezes with requests in flight, and the origin becomes reachable.
    mesh.nodes[2].start();
    mesh.nodes[2].connect(vec![mesh.nodes[1].address.clone()]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let verified = mesh.nodes[2].patch("KB-frozen").and_then(|p| p["chunks_verified"].as_u64()).unwrap_or(0);
        if verified > 0 {
            mesh.nodes[1].signal("STOP");
            break;
        }
        assert!(Instant::now() < deadline, "office-2 never started fetching from office-1");
        std::thread::sleep(Duration::from_millis(2));
    }
    mesh.nodes[2].connect(vec![origin_address]);
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if mesh.nodes[2].patch("KB-frozen").is_some_and(|p| p["state"] == "complete") {
            break;
        }
        if Instant::now() > deadline {
            mesh.nodes[1].signal("CONT");
            panic!("office-2 did not finish while office-1 was frozen; log:\n{}", mesh.nodes[2].log());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    mesh.nodes[1].signal("CONT");
    let status = mesh.nodes[2].status().expect("status");
    let (_, files) = status.files.iter().next().expect("files");
    assert!(std::fs::read(&files[0]).expect("file") == bytes, "office-2 holds different bytes");
    let log = mesh.nodes[2].log();
    assert!(log.contains("resting the peer"), "office-2 never timed out on the frozen peer:\n{log}");
}

#[test]
fn disk_budget_removes_superseded_version() {
    let mut mesh = TestMesh::new(1);
    mesh.nodes[1].append_config("disk_budget = \"1KiB\"\n");
    mesh.start_all();
    let file = mesh.root.path().join("f.bin");
    std::fs::write(&file, pattern(20_000, 1)).expect("file");
    let v1 = mesh.publish("KB-gc", &[file.as_path()], &["--version", "1"]);
    assert!(v1.status.success(), "{}", String::from_utf8_lossy(&v1.stderr));
    mesh.wait_complete("KB-gc", Duration::from_secs(60));
    let version_dir = |version: u64| mesh.nodes[1].data().join("patches").join("KB-gc").join(version.to_string());
    assert!(version_dir(1).join("complete").exists(), "version 1 removed while it was the newest");

    std::fs::write(&file, pattern(20_000, 2)).expect("file");
    let v2 = mesh.publish("KB-gc", &[file.as_path()], &["--version", "2"]);
    assert!(v2.status.success(), "{}", String::from_utf8_lossy(&v2.stderr));
    let deadline = Instant::now() + Duration::from_secs(60);
    while !version_dir(2).join("complete").exists() || version_dir(1).exists() {
        assert!(Instant::now() < deadline, "version 1 still stored or version 2 missing; log:\n{}", mesh.nodes[1].log());
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = mesh.nodes[1].status().expect("status");
    let versions: Vec<u64> = status.node["patches"].as_array().expect("patches").iter().filter_map(|p| p["version"].as_u64()).collect();
    assert_eq!(versions, vec![2], "the node still lists a removed version");
}

/// Two network namespaces joined by a veth pair, so a test can cut and heal the link.
struct Namespaces {
    west: String,
    east: String,
    veth: String,
}

impl Namespaces {
    const WEST_IP: &'static str = "10.231.7.1";
    const EAST_IP: &'static str = "10.231.7.2";

    fn new() -> Namespaces {
        let tag = std::process::id() % 100_000;
        let spaces = Namespaces { west: format!("pmw{tag}"), east: format!("pme{tag}"), veth: format!("pmv{tag}") };
        let peer = format!("{}p", spaces.veth);
        let commands: Vec<Vec<&str>> = vec![
            vec!["netns", "add", &spaces.west],
            vec!["netns", "add", &spaces.east],
            vec!["link", "add", &spaces.veth, "type", "veth", "peer", "name", &peer],
            vec!["link", "set", &spaces.veth, "netns", &spaces.west],
            vec!["link", "set", &peer, "netns", &spaces.east],
            vec!["-n", &spaces.west, "addr", "add", "10.231.7.1/24", "dev", &spaces.veth],
            vec!["-n", &spaces.east, "addr", "add", "10.231.7.2/24", "dev", &peer],
            vec!["-n", &spaces.west, "link", "set", &spaces.veth, "up"],
            vec!["-n", &spaces.east, "link", "set", &peer, "up"],
            vec!["-n", &spaces.west, "link", "set", "lo", "up"],
            vec!["-n", &spaces.east, "link", "set", "lo", "up"],
        ];
        for args in commands {
            let output = std::process::Command::new("ip").args(&args).output().expect("run ip");
            assert!(
                output.status.success(),
                "ip {} failed (this test needs root to create network namespaces): {}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        spaces
    }

    fn set_link(&self, state: &str) {
        let status = std::process::Command::new("ip")
            .args(["-n", &self.west, "link", "set", &self.veth, state])
            .status()
            .expect("run ip");
        assert!(status.success(), "ip link set {state} failed");
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for netns in [&self.west, &self.east] {
            let _ = std::process::Command::new("ip").args(["netns", "del", netns]).status();
        }
    }
}

#[test]
fn partition_heals_and_finishes() {
    let spaces = Namespaces::new();
    let mut mesh = TestMesh::new(3);
    for (index, node) in mesh.nodes.iter_mut().enumerate() {
        let (netns, ip) = if index < 2 { (&spaces.west, Namespaces::WEST_IP) } else { (&spaces.east, Namespaces::EAST_IP) };
        node.netns = Some(netns.clone());
        let config = std::fs::read_to_string(node.dir.join("node.toml")).expect("config").replace("127.0.0.1", ip);
        std::fs::write(node.dir.join("node.toml"), config).expect("config");
    }
    mesh.start_all();

    let source = mesh.root.path().join("p.bin");
    let bytes = pattern(3000 * 1024 + 9, 8);
    std::fs::write(&source, &bytes).expect("source");
    let output = mesh.publish("KB-split", &[source.as_path()], &["--chunk-size", "1024"]);
    assert!(output.status.success(), "publish failed: {}", String::from_utf8_lossy(&output.stderr));

    // Cut the link once the east side has some chunks.
    let verified = |node: &support::TestNode| node.patch("KB-split").and_then(|p| p["chunks_verified"].as_u64()).unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(30);
    while verified(&mesh.nodes[2]) == 0 || verified(&mesh.nodes[3]) == 0 {
        assert!(Instant::now() < deadline, "the east side never started");
        std::thread::sleep(Duration::from_millis(2));
    }
    spaces.set_link("down");
    let cut_at = (verified(&mesh.nodes[2]), verified(&mesh.nodes[3]));

    // The west side finishes while cut off; the east side trades what it has.
    let deadline = Instant::now() + Duration::from_secs(60);
    while mesh.nodes[1].patch("KB-split").is_none_or(|p| p["state"] != "complete") {
        assert!(Instant::now() < deadline, "the west office did not finish during the partition");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(3));
    let during = (verified(&mesh.nodes[2]), verified(&mesh.nodes[3]));
    assert!(during.0 + during.1 > cut_at.0 + cut_at.1, "the east side made no progress while cut off: {cut_at:?} then {during:?}");
    let east_incomplete = [&mesh.nodes[2], &mesh.nodes[3]].iter().any(|node| verified(node) < 3001);
    spaces.set_link("up");

    mesh.wait_complete("KB-split", Duration::from_secs(120));
    for node in &mesh.nodes[1..] {
        let status = node.status().expect("status");
        let (_, files) = status.files.iter().next().expect("files");
        assert!(std::fs::read(&files[0]).expect("file") == bytes, "{} holds different bytes", node.name);
    }
    assert!(east_incomplete, "the east side finished before the heal, so the test proved nothing about healing");
}
