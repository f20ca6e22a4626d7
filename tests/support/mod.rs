//! Real daemons for integration tests: separate `patchmesh node` processes on 127.0.0.1,
//! each with its own key, config and data dir under a temporary directory.

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use patchmesh_node::control::{self, ControlRequest, ControlResponse, StatusReport};

pub const EXE: &str = env!("CARGO_BIN_EXE_patchmesh");

/// Runs `patchmesh ARGS` to completion.
pub fn patchmesh(args: &[&str]) -> Output {
    Command::new(EXE).args(args).output().expect("run patchmesh")
}

pub struct TestNode {
    pub name: String,
    pub dir: PathBuf,
    pub child: Option<Child>,
    pub address: String,
}

impl TestNode {
    /// Appends `text` to the node's config, before it starts.
    pub fn append_config(&self, text: &str) {
        let path = self.dir.join("node.toml");
        let mut config = std::fs::read_to_string(&path).expect("config");
        config.push_str(text);
        std::fs::write(path, config).expect("config");
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("control.sock")
    }

    pub fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Starts (or restarts) the daemon and waits until it listens.
    pub fn start(&mut self) {
        let _ = std::fs::remove_file(self.data().join("node.json"));
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("node.log")).expect("log");
        let child = Command::new(EXE)
            .args(["node", "--config"])
            .arg(self.dir.join("node.toml"))
            .env("RUST_LOG", "info,libp2p=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn node");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(text) = std::fs::read_to_string(self.data().join("node.json")) {
                let info: serde_json::Value = serde_json::from_str(&text).expect("node.json");
                if let Some(address) = info["listen"][0].as_str() {
                    self.address = address.to_string();
                    return;
                }
            }
            assert!(Instant::now() < deadline, "node {} did not listen; log:\n{}", self.name, self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let status = Command::new("kill").args([&format!("-{signal}"), &pid]).status().expect("kill");
        assert!(status.success(), "kill -{signal} {pid} failed");
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("node.log")).unwrap_or_default()
    }

    pub fn status(&self) -> Option<StatusReport> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        match runtime.block_on(control::call(&self.socket(), &ControlRequest::Status, Duration::from_secs(5))) {
            Ok(ControlResponse::Status(report)) => Some(*report),
            _ => None,
        }
    }

    pub fn connect(&self, addresses: Vec<String>) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let response = runtime
            .block_on(control::call(&self.socket(), &ControlRequest::Connect { addresses }, Duration::from_secs(5)))
            .expect("connect request");
        assert!(matches!(response, ControlResponse::Connecting { .. }), "{response:?}");
    }

    /// The status entry of patch `id`, if the node knows it.
    pub fn patch(&self, id: &str) -> Option<serde_json::Value> {
        let status = self.status()?;
        status.node["patches"].as_array()?.iter().find(|p| p["patch_id"] == id).cloned()
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        }
        if let Some(mut child) = self.child.take() {
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline && child.try_wait().ok().flatten().is_none() {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// An origin (`hq`) and `offices` office nodes with keys and configs, not started.
pub struct TestMesh {
    pub root: tempfile::TempDir,
    pub publisher_key: PathBuf,
    pub trust: PathBuf,
    pub nodes: Vec<TestNode>,
}

impl TestMesh {
    pub fn new(offices: usize) -> TestMesh {
        let root = tempfile::Builder::new().prefix("pm-it-").tempdir().expect("tempdir");
        let publisher_key = root.path().join("publisher.key");
        let output = patchmesh(&["keygen", "--out", publisher_key.to_str().expect("utf-8")]);
        assert!(output.status.success(), "keygen: {}", String::from_utf8_lossy(&output.stderr));
        let public = std::fs::read_to_string(root.path().join("publisher.key.pub")).expect("pub");
        let key = public.split_whitespace().next().expect("key");
        let trust = root.path().join("trust.toml");
        std::fs::write(&trust, format!("format = 1\n\n[[publisher]]\nname = \"test\"\nkey = \"{key}\"\n")).expect("trust");
        let mut nodes = Vec::new();
        for index in 0..=offices {
            let name = if index == 0 { "hq".to_string() } else { format!("office-{index}") };
            let dir = root.path().join(&name);
            std::fs::create_dir_all(&dir).expect("node dir");
            let output = patchmesh(&["keygen", "--out", dir.join("node.key").to_str().expect("utf-8")]);
            assert!(output.status.success());
            let config = format!(
                "site = \"{name}\"\ndata_dir = \"data\"\nidentity_key = \"node.key\"\ntrust_file = \"{}\"\n\
                 listen = [\"/ip4/127.0.0.1/tcp/0\"]\norigin = {}\ncontrol_socket = \"control.sock\"\n",
                trust.display(),
                index == 0
            );
            std::fs::write(dir.join("node.toml"), config).expect("config");
            nodes.push(TestNode { name, dir, child: None, address: String::new() });
        }
        TestMesh { root, publisher_key, trust, nodes }
    }

    /// Starts every node and connects each to all earlier ones.
    pub fn start_all(&mut self) {
        for node in &mut self.nodes {
            node.start();
        }
        for index in 1..self.nodes.len() {
            let addresses = self.nodes[..index].iter().map(|n| n.address.clone()).collect();
            self.nodes[index].connect(addresses);
        }
    }

    /// Publishes `files` through the origin; `extra` goes to `patchmesh publish` as is.
    pub fn publish(&self, id: &str, files: &[&Path], extra: &[&str]) -> Output {
        let manifest = self.root.path().join(format!("{id}.manifest.json"));
        let mut args: Vec<String> = vec!["publish".into()];
        args.extend(files.iter().map(|f| f.display().to_string()));
        args.extend(
            [
                "--key",
                self.publisher_key.to_str().expect("utf-8"),
                "--id",
                id,
                "--out",
                manifest.to_str().expect("utf-8"),
                "--submit",
                "--socket",
                self.nodes[0].socket().to_str().expect("utf-8"),
            ]
            .map(String::from),
        );
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        patchmesh(&args)
    }

    /// Waits until every office reports `id` complete, or panics with the laggards.
    pub fn wait_complete(&self, id: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let pending: Vec<&str> = self.nodes[1..]
                .iter()
                .filter(|node| node.child.is_some())
                .filter(|node| node.patch(id).is_none_or(|p| p["state"] != "complete"))
                .map(|node| node.name.as_str())
                .collect();
            if pending.is_empty() {
                return;
            }
            assert!(Instant::now() < deadline, "offices not complete after {timeout:?}: {pending:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Deterministic, incompressible-looking bytes.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}
