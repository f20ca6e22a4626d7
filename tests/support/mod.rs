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
    /// A network namespace to run the node in, or `None` for the test's own.
    pub netns: Option<String>,
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
        let mut command = match &self.netns {
            Some(netns) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", netns.as_str(), EXE]);
                command
            }
            None => Command::new(EXE),
        };
        let child = command
            .args(["node", "--config"])
            .arg(self.dir.join("node.toml"))
            .env("RUST_LOG", std::env::var("PATCHMESH_TEST_LOG").unwrap_or_else(|_| "info,libp2p=warn".into()))
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

    /// The process's resident set size in KiB, from /proc.
    pub fn rss_kib(&self) -> u64 {
        let pid = self.child.as_ref().expect("running").id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| value.split_whitespace().next())
            .and_then(|kib| kib.parse().ok())
            .expect("VmRSS line")
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
            nodes.push(TestNode { netns: None, name, dir, child: None, address: String::new() });
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

// ---- helpers for the crash, disk-full and soak tests ----

/// A seeded SplitMix64 generator, so that a failing run can be repeated with its seed.
pub struct TestRng(patchmesh_core::rng::SplitMix64);

impl TestRng {
    /// Seeds from the environment variable `var` if set, otherwise from the clock, and
    /// prints the seed with the command line that repeats it.
    pub fn from_env(var: &str) -> TestRng {
        let seed = match std::env::var(var) {
            Ok(text) => text.parse().unwrap_or_else(|_| panic!("{var}={text:?} is not an unsigned integer")),
            Err(_) => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|elapsed| elapsed.as_nanos() as u64)
                .unwrap_or(1),
        };
        println!("random seed {seed}; repeat this run with {var}={seed}");
        TestRng(patchmesh_core::rng::SplitMix64::new(seed))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Returns a value in `low..=high`.
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next_u64() % (high - low + 1)
    }
}

/// Reads and parses a manifest file, such as the one [`TestMesh::publish`] writes.
pub fn read_manifest(path: &Path) -> patchmesh_core::Manifest {
    let text = std::fs::read_to_string(path).unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
    patchmesh_core::Manifest::from_json(&text).unwrap_or_else(|error| panic!("invalid manifest {}: {error}", path.display()))
}

/// The chunk files found in one node's store at one moment.
#[derive(Debug, Default)]
pub struct ChunkFiles {
    /// Indices of the `<index>.chunk` files, each of which verified.
    pub verified: Vec<u32>,
    /// Names of leftover temp files (`.<name>.tmp:<pid>.<instance>-<counter>`).
    pub temp_files: Vec<String>,
}

/// Lists `<data>/patches/<id>/<version>/chunks/` of `node` and verifies every chunk file
/// against `manifest`. Panics, naming the file, on a chunk file that fails verification
/// or any entry that is neither a chunk file nor a temp file. A missing directory counts
/// as empty.
pub fn check_chunk_files(node: &TestNode, manifest: &patchmesh_core::Manifest) -> ChunkFiles {
    let key = manifest.key();
    let dir = node.data().join("patches").join(key.id.as_str()).join(key.version.to_string()).join("chunks");
    let mut found = ChunkFiles::default();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return found;
    };
    for entry in entries {
        let entry = entry.expect("chunk dir entry");
        let name = entry.file_name().into_string().expect("UTF-8 chunk file name");
        if let Some(index) = name.strip_suffix(".chunk").and_then(|stem| stem.parse::<u32>().ok()) {
            let bytes = std::fs::read(entry.path()).unwrap_or_else(|error| panic!("cannot read {}: {error}", entry.path().display()));
            if let Err(error) = manifest.verify_chunk(index, &bytes) {
                panic!("{}: chunk file {} fails verification: {error}", node.name, entry.path().display());
            }
            found.verified.push(index);
        } else if name.starts_with('.') && name.contains(".tmp:") {
            found.temp_files.push(name);
        } else {
            panic!("{}: unexpected entry {} in {}", node.name, name, dir.display());
        }
    }
    found.verified.sort_unstable();
    found
}

/// Returns the resident set size of process `pid` in KiB, from `/proc/<pid>/status`.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

impl TestMesh {
    /// Starts node `index` again, after a SIGKILL if it is still running, and connects it
    /// to every other running node.
    pub fn restart(&mut self, index: usize) {
        self.nodes[index].kill();
        self.nodes[index].start();
        let addresses: Vec<String> = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(other, node)| *other != index && node.child.is_some())
            .map(|(_, node)| node.address.clone())
            .collect();
        self.nodes[index].connect(addresses);
    }
}
