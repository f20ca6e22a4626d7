//! Starting, connecting and stopping the demo's node processes.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use patchmesh_core::TrustPolicy;
use patchmesh_node::control::{self, ControlRequest, ControlResponse, StatusReport};
use patchmesh_node::keyfile;

use crate::keys::generate_key;

/// One daemon process of the demo.
pub(crate) struct DemoNode {
    /// `hq` or `office-NN`.
    pub(crate) name: String,
    /// The node's directory: key, config, log and data dir.
    pub(crate) dir: PathBuf,
    pub(crate) socket: PathBuf,
    /// `/ip4/127.0.0.1/tcp/PORT/p2p/ID`, once the node listens.
    pub(crate) address: Option<String>,
    child: Option<Child>,
}

impl DemoNode {
    pub(crate) fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub(crate) fn log_path(&self) -> PathBuf {
        self.dir.join("node.log")
    }

    /// Returns the last lines of the node's log, for error messages.
    pub(crate) fn log_tail(&self) -> String {
        let text = fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(8)..].join("\n")
    }
}

/// The demo's processes; dropping it stops them all.
pub(crate) struct Cluster {
    pub(crate) nodes: Vec<DemoNode>,
}

/// Writes keys, the trust file and one config per node under `root`.
///
/// Returns the publisher's key and the nodes, origin first.
pub(crate) fn prepare(root: &Path, offices: usize, origin_budget: Option<f64>) -> anyhow::Result<(patchmesh_core::SecretKey, Vec<DemoNode>)> {
    let keys = root.join("keys");
    fs::create_dir_all(&keys).with_context(|| format!("cannot create {}", keys.display()))?;
    let publisher = generate_key()?;
    keyfile::write_key_pair(&publisher, &keys.join("publisher.key"), "demo publisher")?;
    let trust = TrustPolicy::with_publishers([("demo-publisher", publisher.public())]);
    let trust_path = keys.join("trust.toml");
    fs::write(&trust_path, trust.to_toml()).with_context(|| format!("cannot write {}", trust_path.display()))?;

    let mut nodes = Vec::with_capacity(offices + 1);
    for index in 0..=offices {
        let (name, origin) = if index == 0 { ("hq".to_string(), true) } else { (format!("office-{index:02}"), false) };
        let dir = root.join("nodes").join(&name);
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        keyfile::write_key_pair(&generate_key()?, &dir.join("node.key"), &name)?;
        let config = format!(
            "site = \"{name}\"\ndata_dir = \"data\"\nidentity_key = \"node.key\"\ntrust_file = \"{}\"\n\
             listen = [\"/ip4/127.0.0.1/tcp/0\"]\norigin = {origin}\ncontrol_socket = \"control.sock\"\n",
            trust_path.display()
        );
        let config = match origin_budget {
            Some(copies) if origin => format!("{config}origin_budget = {copies}\n"),
            _ => config,
        };
        fs::write(dir.join("node.toml"), config).with_context(|| format!("cannot write the config in {}", dir.display()))?;
        let socket = dir.join("control.sock");
        nodes.push(DemoNode { name, dir, socket, address: None, child: None });
    }
    Ok((publisher, nodes))
}

impl Cluster {
    /// Starts every node as a separate process of this executable.
    pub(crate) fn start(mut nodes: Vec<DemoNode>) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("cannot find this executable to start the nodes")?;
        for node in &mut nodes {
            let log = fs::File::create(node.log_path()).with_context(|| format!("cannot create {}", node.log_path().display()))?;
            let child = Command::new(&exe)
                .arg("node")
                .arg("--config")
                .arg(node.dir.join("node.toml"))
                .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info,libp2p=warn".into()))
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .with_context(|| format!("cannot start node {}", node.name))?;
            node.child = Some(child);
        }
        Ok(Cluster { nodes })
    }

    /// Waits until every node has written its listen address, or fails naming the node.
    pub(crate) fn wait_listening(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        for node in &mut self.nodes {
            loop {
                let ready = node.data_dir().join("node.json");
                if let Ok(text) = fs::read_to_string(&ready) {
                    let info: serde_json::Value = serde_json::from_str(&text).context("invalid node.json")?;
                    if let Some(address) = info["listen"].as_array().and_then(|list| list.first()).and_then(|a| a.as_str()) {
                        node.address = Some(address.to_string());
                        break;
                    }
                }
                if let Some(status) = node.child.as_mut().and_then(|child| child.try_wait().ok().flatten()) {
                    bail!("node {} exited with {status} before listening; its log ends:\n{}", node.name, node.log_tail());
                }
                if Instant::now() > deadline {
                    bail!("node {} did not start listening within {timeout:?}; see {}", node.name, node.log_path().display());
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(())
    }

    /// Connects every node to every other: node `i` dials nodes `0..i`.
    pub(crate) async fn connect_all(&self) -> anyhow::Result<()> {
        for (index, node) in self.nodes.iter().enumerate().skip(1) {
            let addresses = self.nodes[..index].iter().filter_map(|n| n.address.clone()).collect();
            let request = ControlRequest::Connect { addresses };
            match control::call(&node.socket, &request, Duration::from_secs(10)).await? {
                ControlResponse::Connecting { .. } => {}
                other => bail!("node {} did not accept the connect request: {other:?}", node.name),
            }
        }
        Ok(())
    }

    /// Fetches every node's status concurrently. A node that does not respond gets `None`.
    pub(crate) async fn statuses(&self) -> Vec<Option<StatusReport>> {
        let calls = self.nodes.iter().map(|node| async move {
            match control::call(&node.socket, &ControlRequest::Status, Duration::from_secs(5)).await {
                Ok(ControlResponse::Status(report)) => Some(*report),
                _ => None,
            }
        });
        futures::future::join_all(calls).await
    }

    /// Names of nodes whose process has exited.
    pub(crate) fn exited(&mut self) -> Vec<String> {
        self.nodes
            .iter_mut()
            .filter_map(|node| {
                let exited = node.child.as_mut().is_some_and(|child| child.try_wait().ok().flatten().is_some());
                exited.then(|| node.name.clone())
            })
            .collect()
    }

    /// Sends SIGTERM to every node and waits up to 10 s for each, then kills the rest.
    pub(crate) fn stop(&mut self) {
        for node in &mut self.nodes {
            if let Some(child) = &node.child {
                if let Ok(pid) = i32::try_from(child.id()) {
                    send_sigterm(pid);
                }
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                while Instant::now() < deadline {
                    if child.try_wait().ok().flatten().is_some() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Sends SIGTERM to a child process. The daemon responds with a clean shutdown.
#[allow(unsafe_code)]
fn send_sigterm(pid: i32) {
    // SAFETY: kill(2) takes plain integers and touches no memory of ours. `pid` is a
    // child we spawned and have not reaped, so it cannot name an unrelated process.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
}
