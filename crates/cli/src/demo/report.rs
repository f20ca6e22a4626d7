//! The demo's summary: a table for people and JSON for scripts.

use std::path::{Path, PathBuf};

use anyhow::Context;
use patchmesh_core::{PatchKey, Timestamp};
use patchmesh_node::control::StatusReport;
use serde::Serialize;

use super::cluster::Cluster;
use super::waves::{WaveSummary, since_publish};

/// The JSON summary.
#[derive(Serialize)]
pub(crate) struct Summary {
    pub(crate) offices: usize,
    pub(crate) patch_bytes: u64,
    /// Every office assembled the patch and every listed file hashes to the source's
    /// BLAKE3 hash.
    pub(crate) all_verified: bool,
    /// Seconds from the origin's acceptance of the publish to the last office's verified
    /// copy; `null` if some office did not finish.
    pub(crate) makespan_s: Option<f64>,
    /// Chunk payload bytes the origin served (framing and gossip excluded).
    pub(crate) origin_egress_bytes: u64,
    /// The origin's egress budget in bytes; `null` without one.
    pub(crate) origin_budget_bytes: Option<u64>,
    /// Chunk payload bytes offices received from other offices, summed.
    pub(crate) bytes_from_peers: u64,
    pub(crate) nodes: Vec<NodeSummary>,
    /// With `--waves`: each wave's first chunk and completion, seconds from the publish.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) waves: Option<Vec<WaveSummary>>,
    /// With `--waves`: every wave 2 node stored its first chunk after the last wave 1
    /// node verified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) waves_in_order: Option<bool>,
}

/// One office node.
#[derive(Serialize)]
pub(crate) struct NodeSummary {
    pub(crate) name: String,
    pub(crate) site: String,
    /// Absolute paths of the assembled files.
    pub(crate) files: Vec<PathBuf>,
    pub(crate) bytes_from_origin: u64,
    pub(crate) bytes_from_peers: u64,
    /// Seconds from the publish to this office's verified copy.
    pub(crate) completion_s: Option<f64>,
    /// Seconds from the publish to the first chunk this office stored from a peer.
    pub(crate) first_chunk_s: Option<f64>,
    /// The office's rollout wave, from 1, when the manifest has a plan.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) wave: Option<usize>,
    #[serde(skip)]
    pub(crate) verified: bool,
}

/// Finds the status entry for `patch` in a node's report.
pub(crate) fn patch_entry<'a>(status: &'a StatusReport, patch: &PatchKey) -> Option<&'a serde_json::Value> {
    status.node["patches"].as_array()?.iter().find(|entry| {
        entry["patch_id"].as_str() == Some(patch.id.as_str()) && entry["version"].as_u64() == Some(patch.version)
    })
}

impl Summary {
    pub(crate) fn build(
        cluster: &Cluster,
        statuses: &[Option<StatusReport>],
        patch: &PatchKey,
        source: &Path,
        patch_bytes: u64,
        published_at: Timestamp,
        finished: bool,
    ) -> anyhow::Result<Summary> {
        let source_hash = hash_file(source)?;
        let key = patch.to_string();
        let origin_egress_bytes = statuses
            .first()
            .and_then(Option::as_ref)
            .and_then(|status| patch_entry(status, patch))
            .and_then(|entry| entry["stats"]["bytes_served"].as_u64())
            .unwrap_or(0);
        let mut nodes = Vec::new();
        for (node, status) in cluster.nodes.iter().zip(statuses).skip(1) {
            let entry = status.as_ref().and_then(|status| patch_entry(status, patch));
            let files = status.as_ref().and_then(|status| status.files.get(&key).cloned()).unwrap_or_default();
            let complete = entry.is_some_and(|entry| entry["state"] == "complete");
            let identical = !files.is_empty() && files.iter().all(|file| hash_file(file).ok() == Some(source_hash));
            let completion_s = since_publish(published_at, entry.and_then(|entry| entry["completed_at_us"].as_u64()));
            let first_chunk_s = since_publish(published_at, entry.and_then(|entry| entry["first_chunk_at_us"].as_u64()));
            let wave = entry.and_then(|entry| entry["wave"]["wave"].as_u64()).map(|wave| wave as usize);
            nodes.push(NodeSummary {
                name: node.name.clone(),
                site: node.name.clone(),
                files,
                bytes_from_origin: entry.and_then(|e| e["stats"]["bytes_from_origin"].as_u64()).unwrap_or(0),
                bytes_from_peers: entry.and_then(|e| e["stats"]["bytes_from_peers"].as_u64()).unwrap_or(0),
                completion_s,
                first_chunk_s,
                wave,
                verified: complete && identical,
            });
        }
        let all_verified = finished && nodes.iter().all(|node| node.verified);
        let makespan_s = if all_verified {
            nodes.iter().filter_map(|node| node.completion_s).reduce(f64::max)
        } else {
            None
        };
        let bytes_from_peers = nodes.iter().map(|node| node.bytes_from_peers).sum();
        Ok(Summary {
            offices: nodes.len(),
            patch_bytes,
            all_verified,
            makespan_s,
            origin_egress_bytes,
            origin_budget_bytes: None,
            bytes_from_peers,
            nodes,
            waves: None,
            waves_in_order: None,
        })
    }

    pub(crate) fn print_table(&self, patch: &str) {
        eprintln!("\nrollout of {patch}: {} offices, {} bytes", self.offices, self.patch_bytes);
        let seconds = |value: Option<f64>| value.map(|s| format!("{s:.2}")).unwrap_or_else(|| "-".into());
        eprintln!(
            "{:<12} {:>5} {:>13} {:>12} {:>16} {:>16} {:>9}",
            "office", "wave", "first chunk s", "completion s", "from origin B", "from peers B", "verified"
        );
        for node in &self.nodes {
            eprintln!(
                "{:<12} {:>5} {:>13} {:>12} {:>16} {:>16} {:>9}",
                node.name,
                node.wave.map_or_else(|| "-".to_string(), |wave| wave.to_string()),
                seconds(node.first_chunk_s),
                seconds(node.completion_s),
                node.bytes_from_origin,
                node.bytes_from_peers,
                if node.verified { "yes" } else { "NO" }
            );
        }
        for wave in self.waves.iter().flatten() {
            eprintln!(
                "wave {}: {} offices, first chunk at {} s, all verified at {} s",
                wave.wave,
                wave.nodes,
                seconds(wave.first_chunk_s),
                seconds(wave.completion_s)
            );
        }
        match self.waves_in_order {
            Some(true) => eprintln!("waves in order: no wave 2 office stored a chunk before the last wave 1 office verified"),
            Some(false) => eprintln!("WAVES OUT OF ORDER: a wave 2 office stored a chunk before wave 1 verified, or a wave did not finish"),
            None => {}
        }
        let copies = self.origin_egress_bytes as f64 / self.patch_bytes.max(1) as f64;
        match self.makespan_s {
            Some(makespan) => eprintln!("all offices verified; makespan {makespan:.2} s"),
            None => eprintln!("NOT every office verified"),
        }
        eprintln!("origin egress: {} bytes ({copies:.2} copies of the patch)", self.origin_egress_bytes);
        if let Some(budget) = self.origin_budget_bytes {
            eprintln!("origin budget: {budget} bytes");
        }
        eprintln!("bytes from other offices: {}", self.bytes_from_peers);
    }
}

fn hash_file(path: &Path) -> anyhow::Result<blake3::Hash> {
    let mut hasher = blake3::Hasher::new();
    let file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    hasher.update_reader(file).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(hasher.finalize())
}
