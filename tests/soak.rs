//! Soak: an origin and 26 offices on 127.0.0.1, a new patch published every few seconds,
//! and offices killed with SIGKILL and restarted at random throughout.
//!
//! At the end every office, restarted if it was down, must hold a byte-identical copy of
//! every patch, no node may have received a chunk that failed verification, and no
//! node's resident memory may have exceeded [`RSS_LIMIT_KIB`].
//!
//! `PATCHMESH_SOAK_SECS` sets how long the kills go on, 45 seconds by default, and
//! `PATCHMESH_SOAK_SEED` repeats a run. The summary is printed to standard output, which
//! `cargo test` shows with `--nocapture`:
//!
//! ```sh
//! PATCHMESH_SOAK_SECS=600 cargo test -p patchmesh --test soak -- --nocapture
//! ```

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use support::{TestMesh, TestRng, pattern, rss_kib};

const OFFICES: usize = 26;
/// How long kills and publishes go on when `PATCHMESH_SOAK_SECS` is not set, in seconds.
const DEFAULT_SECS: u64 = 45;
/// Each patch is one file of this many bytes. Nodes keep every patch, so a run stores
/// about 27 times this per patch published.
const PATCH_BYTES: usize = 1024 * 1024 + 4321;
/// The chunk size of every patch, in bytes: 65 chunks per patch.
const CHUNK: usize = 16 * 1024;
/// A new patch is published this often.
const PUBLISH_EVERY: Duration = Duration::from_secs(4);
/// The time between two kills is drawn from this range, in milliseconds.
const KILL_GAP_MS: (u64, u64) = (1000, 4000);
/// A killed office stays down for a time drawn from this range, in milliseconds.
const DOWNTIME_MS: (u64, u64) = (500, 5000);
/// How often the resident memory of every node is read.
const RSS_SAMPLE_EVERY: Duration = Duration::from_millis(500);
/// The maximum resident memory of any node, in KiB.
const RSS_LIMIT_KIB: u64 = 64 * 1024;
/// How long the offices have to finish every patch once the kills stop.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(180);

#[test]
fn soak_with_random_kills() {
    let soak_secs: u64 = std::env::var("PATCHMESH_SOAK_SECS")
        .map(|text| text.parse().unwrap_or_else(|_| panic!("PATCHMESH_SOAK_SECS={text:?} is not a number of seconds")))
        .unwrap_or(DEFAULT_SECS);
    let mut rng = TestRng::from_env("PATCHMESH_SOAK_SEED");
    let started = Instant::now();
    let mut mesh = TestMesh::new(OFFICES);
    mesh.start_all();
    let setup = started.elapsed();

    let mut patches: Vec<(String, Vec<u8>)> = Vec::new();
    let mut max_rss: BTreeMap<String, u64> = BTreeMap::new();
    let mut down_until: BTreeMap<usize, Instant> = BTreeMap::new();
    let (mut kills, mut kills_mid_download, mut restarts) = (0u32, 0u32, 0u32);

    // The origin is never killed, so its memory at the start and the end shows growth.
    let origin_rss_first = mesh.nodes[0].child.as_ref().and_then(|child| rss_kib(child.id())).unwrap_or_default();
    let soak_start = Instant::now();
    let soak_end = soak_start + Duration::from_secs(soak_secs);
    let mut next_publish = soak_start;
    let mut next_kill = soak_start + Duration::from_millis(rng.between(KILL_GAP_MS.0, KILL_GAP_MS.1));
    let mut next_sample = soak_start;
    while Instant::now() < soak_end {
        let now = Instant::now();
        if now >= next_publish {
            let id = format!("KB-soak-{}", patches.len() + 1);
            let bytes = pattern(PATCH_BYTES, patches.len() as u64 + 100);
            let source = mesh.root.path().join(format!("{id}.bin"));
            std::fs::write(&source, &bytes).expect("write source");
            let output = mesh.publish(&id, &[source.as_path()], &["--chunk-size", &CHUNK.to_string()]);
            assert!(output.status.success(), "publish {id} failed: {}", String::from_utf8_lossy(&output.stderr));
            patches.push((id, bytes));
            next_publish += PUBLISH_EVERY;
        }
        if now >= next_kill {
            let running: Vec<usize> = (1..=OFFICES).filter(|index| !down_until.contains_key(index)).collect();
            let victim = running[rng.between(0, running.len() as u64 - 1) as usize];
            let downloading = patches.last().is_some_and(|(id, _)| {
                mesh.nodes[victim].patch(id).is_none_or(|patch| patch["state"] != "complete")
            });
            kills_mid_download += u32::from(downloading);
            mesh.nodes[victim].kill();
            down_until.insert(victim, now + Duration::from_millis(rng.between(DOWNTIME_MS.0, DOWNTIME_MS.1)));
            kills += 1;
            next_kill = now + Duration::from_millis(rng.between(KILL_GAP_MS.0, KILL_GAP_MS.1));
        }
        let due: Vec<usize> = down_until.iter().filter(|(_, until)| **until <= now).map(|(index, _)| *index).collect();
        for index in due {
            down_until.remove(&index);
            mesh.restart(index);
            restarts += 1;
        }
        if now >= next_sample {
            sample_rss(&mesh, &mut max_rss);
            next_sample = now + RSS_SAMPLE_EVERY;
        }
        std::thread::sleep(Duration::from_millis(20));
    }

    let down_at_end = down_until.len();
    for index in std::mem::take(&mut down_until).into_keys() {
        mesh.restart(index);
        restarts += 1;
    }
    let converge_start = Instant::now();
    let ids: Vec<&str> = patches.iter().map(|(id, _)| id.as_str()).collect();
    let finished = wait_all_complete(&mesh, &ids, converge_start + CONVERGE_TIMEOUT, &mut max_rss);
    let converge = converge_start.elapsed();
    let mut slowest: Vec<(&String, &Duration)> = finished.iter().collect();
    slowest.sort_by_key(|(_, elapsed)| std::cmp::Reverse(**elapsed));
    let slowest: Vec<String> =
        slowest.iter().take(3).map(|(name, elapsed)| format!("{name} {:.1} s", elapsed.as_secs_f64())).collect();
    sample_rss(&mesh, &mut max_rss);
    let origin_rss_last = mesh.nodes[0].child.as_ref().and_then(|child| rss_kib(child.id())).unwrap_or_default();

    // Seconds from acceptance to completion of each patch, per office. An office that
    // restarted during a rollout counts from its restart, and one that restarted after it
    // reports 0 and is left out, so only recent patches have many values.
    let mut completion_s: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for node in &mesh.nodes[1..] {
        let status = node.status().unwrap_or_else(|| panic!("{} does not respond to a status request", node.name));
        for patch in status.node["patches"].as_array().cloned().unwrap_or_default() {
            let id = patches.iter().map(|(id, _)| id.as_str()).find(|id| patch["patch_id"] == *id);
            if let (Some(id), Some(seconds)) = (id, patch["completion_s"].as_f64()) {
                if seconds > 0.0 {
                    completion_s.entry(id).or_default().push(seconds);
                }
            }
        }
        for (id, bytes) in &patches {
            let prefix = format!("{id}@");
            let (_, files) = status
                .files
                .iter()
                .find(|(key, _)| key.starts_with(&prefix))
                .unwrap_or_else(|| panic!("{} lists no assembled files for {id}", node.name));
            assert!(std::fs::read(&files[0]).expect("assembled file") == *bytes, "{}: {id} differs from the source", node.name);
        }
    }
    for node in &mesh.nodes {
        assert!(!node.log().contains("failed verification"), "{} received a chunk that failed verification", node.name);
    }

    let (heaviest, peak) = max_rss.iter().max_by_key(|(_, rss)| **rss).map(|(name, rss)| (name.clone(), *rss)).unwrap_or_default();
    let mut peaks: Vec<u64> = max_rss.values().copied().collect();
    peaks.sort_unstable();
    let median = peaks.get(peaks.len() / 2).copied().unwrap_or_default();
    println!("soak summary");
    println!("  nodes:          1 origin + {OFFICES} offices on 127.0.0.1");
    println!("  setup:          {:.1} s", setup.as_secs_f64());
    println!("  kill phase:     {soak_secs} s, {kills} SIGKILLs, {restarts} restarts ({down_at_end} down when it ended)");
    println!("  mid-download:   {kills_mid_download} kills hit an office that lacked the newest patch");
    println!("  patches:        {} of {} bytes, {} KiB chunks", patches.len(), PATCH_BYTES, CHUNK / 1024);
    println!("  converged:      {:.1} s after the kills stopped; slowest {}", converge.as_secs_f64(), slowest.join(", "));
    println!("  verified:       every office holds every patch byte-identical");
    let (newest, _) = patches.last().expect("at least one patch");
    let mut newest_s = completion_s.get(newest.as_str()).cloned().unwrap_or_default();
    newest_s.sort_by(f64::total_cmp);
    if let Some(median) = newest_s.get(newest_s.len() / 2) {
        println!("  rollout time:   {newest}, median {median:.1} s over the {} offices that fetched it without a restart", newest_s.len());
    }
    println!("  max RSS:        {} MiB ({heaviest}); median of per-node maxima {} MiB; limit {} MiB",
        peak / 1024, median / 1024, RSS_LIMIT_KIB / 1024);
    println!("  origin RSS:     {} MiB before the first publish, {} MiB at the end", origin_rss_first / 1024, origin_rss_last / 1024);
    println!("  total:          {:.1} s", started.elapsed().as_secs_f64());

    assert!(kills > 0, "the soak ran too briefly to kill anything");
    assert!(peak <= RSS_LIMIT_KIB, "{heaviest} reached {peak} KiB of resident memory, over the limit of {RSS_LIMIT_KIB} KiB");
}

/// Records the resident memory of every running node.
fn sample_rss(mesh: &TestMesh, max_rss: &mut BTreeMap<String, u64>) {
    for node in &mesh.nodes {
        let Some(child) = &node.child else { continue };
        if let Some(rss) = rss_kib(child.id()) {
            let entry = max_rss.entry(node.name.clone()).or_default();
            *entry = (*entry).max(rss);
        }
    }
}

/// Waits until every office reports every patch in `ids` complete, sampling memory
/// meanwhile, and returns when each office was first seen complete. Each round requests
/// each office's status once.
fn wait_all_complete(
    mesh: &TestMesh,
    ids: &[&str],
    deadline: Instant,
    max_rss: &mut BTreeMap<String, u64>,
) -> BTreeMap<String, Duration> {
    let start = Instant::now();
    let mut finished = BTreeMap::new();
    loop {
        let mut pending = Vec::new();
        for node in &mesh.nodes[1..] {
            let complete: Vec<String> = node
                .status()
                .and_then(|status| status.node["patches"].as_array().cloned())
                .unwrap_or_default()
                .iter()
                .filter(|patch| patch["state"] == "complete")
                .filter_map(|patch| patch["patch_id"].as_str().map(String::from))
                .collect();
            let missing = ids.iter().filter(|id| !complete.iter().any(|done| done == *id)).count();
            if missing > 0 {
                pending.push(format!("{} lacks {missing}", node.name));
            } else {
                finished.entry(node.name.clone()).or_insert_with(|| start.elapsed());
            }
        }
        if pending.is_empty() {
            return finished;
        }
        assert!(Instant::now() < deadline, "patches not complete within {CONVERGE_TIMEOUT:?} of the last kill: {pending:?}");
        sample_rss(mesh, max_rss);
        std::thread::sleep(Duration::from_millis(200));
    }
}
