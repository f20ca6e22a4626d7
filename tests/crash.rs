//! Crash consistency: an office is killed with SIGKILL at random moments while it
//! downloads, many times over, and its store must never hold a chunk file that fails
//! verification.
//!
//! The test prints its random seed. Set `PATCHMESH_CRASH_SEED` to that value to repeat a
//! run.

mod support;

use std::time::{Duration, Instant};

use support::{TestMesh, TestRng, check_chunk_files, pattern, read_manifest};

/// The chunk size of the published patch, in bytes: the smallest allowed, so one patch
/// makes many chunk writes.
const CHUNK: usize = 1024;
/// Chunks in the published patch. The last one is short.
const CHUNKS: usize = 3000;
/// How many times the office is killed.
const KILLS: usize = 15;
/// The office writes between this many new chunks after a restart before it is killed.
const WRITES_BEFORE_KILL: (u64, u64) = (7, 30);
/// The chunk writes that the kills must span, at least.
const MIN_WRITES_SPANNED: usize = 100;

const VICTIM: usize = 1;
const WITNESS: usize = 2;

#[test]
fn sigkill_during_chunk_writes() {
    let mut rng = TestRng::from_env("PATCHMESH_CRASH_SEED");
    // hq and the office that is killed. A second office, the witness, starts after the
    // kills and fetches the chunks the killed office stored, so that a corrupt chunk it
    // served would show.
    let mut mesh = TestMesh::new(2);
    mesh.restart(0);
    mesh.restart(VICTIM);
    let source = mesh.root.path().join("crash.bin");
    let bytes = pattern((CHUNKS - 1) * CHUNK + 333, 11);
    std::fs::write(&source, &bytes).expect("write source");
    let output = mesh.publish("KB-crash", &[source.as_path()], &["--chunk-size", &CHUNK.to_string()]);
    assert!(output.status.success(), "publish failed: {}", String::from_utf8_lossy(&output.stderr));
    let manifest = read_manifest(&mesh.root.path().join("KB-crash.manifest.json"));
    assert_eq!(manifest.chunk_count() as usize, CHUNKS);

    let mut stored = 0usize;
    let mut leftover_temp_files = 0usize;
    for round in 1..=KILLS {
        // Wait for a random number of new chunk files, then a random fraction of a
        // millisecond more, so the kill falls between or inside writes.
        let target = stored + rng.between(WRITES_BEFORE_KILL.0, WRITES_BEFORE_KILL.1) as usize;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let count = std::fs::read_dir(chunks_dir(&mesh, &manifest)).map(|entries| entries.count()).unwrap_or(0);
            if count >= target {
                break;
            }
            assert!(Instant::now() < deadline, "round {round}: the office stalled at {count} chunk files, waiting for {target}");
            std::thread::sleep(Duration::from_micros(200));
        }
        std::thread::sleep(Duration::from_micros(rng.between(0, 1500)));
        let killed_pid = mesh.nodes[VICTIM].child.as_ref().expect("office running").id();
        mesh.nodes[VICTIM].kill();

        let found = check_chunk_files(&mesh.nodes[VICTIM], &manifest);
        assert!(
            found.verified.len() >= stored,
            "round {round}: {} verified chunk files after the kill, {stored} before it",
            found.verified.len()
        );
        assert!(
            !complete_marker(&mesh, &manifest).exists(),
            "round {round}: the office finished before all kills; the test needs a larger file"
        );
        stored = found.verified.len();
        leftover_temp_files += found.temp_files.len();
        println!("round {round}: killed with {stored} verified chunks and {} temp files", found.temp_files.len());

        let log_before = mesh.nodes[VICTIM].log().len();
        mesh.restart(VICTIM);
        // Temp file names carry the writer's pid. The new process may have some of its own
        // under way already.
        let after = check_chunk_files(&mesh.nodes[VICTIM], &manifest);
        let stale: Vec<&String> = after.temp_files.iter().filter(|name| name.contains(&format!(":{killed_pid}."))).collect();
        assert!(stale.is_empty(), "round {round}: temp files of the killed process survived the restart: {stale:?}");
        let resumed = resumed_chunks(&mesh.nodes[VICTIM].log()[log_before..])
            .unwrap_or_else(|| panic!("round {round}: the restart logged no resumed chunk count"));
        assert_eq!(resumed, stored, "round {round}: chunks resumed after the restart");
    }
    assert!(stored >= MIN_WRITES_SPANNED, "the kills spanned only {stored} chunk writes");
    println!("{KILLS} kills spanned {stored} chunk writes; {leftover_temp_files} temp files were left and removed on restart");

    mesh.restart(WITNESS);
    mesh.wait_complete("KB-crash", Duration::from_secs(120));
    let witness = mesh.nodes[WITNESS].patch("KB-crash").expect("witness status");
    let from_peers = witness["stats"]["bytes_from_peers"].as_u64().unwrap_or(0);
    assert!(from_peers > 0, "the witness fetched nothing from the killed office, so it checked none of its chunks");
    println!("the witness verified {from_peers} bytes served by the killed office");
    for node in &mesh.nodes[1..] {
        let status = node.status().expect("status");
        let (_, files) = status.files.iter().find(|(key, _)| key.starts_with("KB-crash@")).expect("assembled files listed");
        assert!(std::fs::read(&files[0]).expect("assembled file") == bytes, "{}: assembled file differs from the source", node.name);
    }
    let witness_log = mesh.nodes[WITNESS].log();
    assert!(!witness_log.contains("failed verification"), "the witness received a chunk that failed verification:\n{witness_log}");
    let victim_log = mesh.nodes[VICTIM].log();
    assert!(
        !victim_log.contains("deleted a chunk file that failed verification"),
        "a restart found a damaged chunk file:\n{victim_log}"
    );
}

fn version_dir(mesh: &TestMesh, manifest: &patchmesh_core::Manifest) -> std::path::PathBuf {
    let key = manifest.key();
    mesh.nodes[VICTIM].data().join("patches").join(key.id.as_str()).join(key.version.to_string())
}

fn chunks_dir(mesh: &TestMesh, manifest: &patchmesh_core::Manifest) -> std::path::PathBuf {
    version_dir(mesh, manifest).join("chunks")
}

fn complete_marker(mesh: &TestMesh, manifest: &patchmesh_core::Manifest) -> std::path::PathBuf {
    version_dir(mesh, manifest).join("complete")
}

/// Returns the `chunks=` count of the last "resuming patch" line in `log`.
fn resumed_chunks(log: &str) -> Option<usize> {
    let line = log.lines().filter(|line| line.contains("resuming patch")).last()?;
    line.split("chunks=").nth(1)?.split_whitespace().next()?.parse().ok()
}
