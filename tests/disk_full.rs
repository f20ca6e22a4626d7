//! Disk full mid-download: an office whose data dir is a 2 MiB tmpfs is sent a larger
//! patch, reports the full disk, keeps its verified chunks, and finishes once the tmpfs
//! grows, without a restart. A second test fills the disk during assembly instead.
//!
//! The test mounts the tmpfs itself and so needs root (CI runs as root). Without it, the
//! test fails with a message that names the cause, rather than passing unchecked.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use support::{TestMesh, check_chunk_files, pattern, read_manifest};

/// The chunk size of the patch, in bytes. tmpfs stores a file in 4 KiB pages, so larger
/// chunks make the usable space predictable.
const CHUNK: usize = 64 * 1024;
/// The patch size: twice the first tmpfs size.
const PATCH_BYTES: usize = 4 * 1024 * 1024 + 1000;

/// A tmpfs mounted by the test, lazily unmounted when dropped so that a panic while the
/// node still has files open cannot leave it behind.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(path).expect("create mount point");
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs"])
            .arg(path)
            .output()
            .expect("run mount");
        assert!(
            output.status.success(),
            "this test needs root to mount a tmpfs, and `mount -t tmpfs` at {} failed: {}; run it as root",
            path.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
        Tmpfs { path: path.to_path_buf() }
    }

    fn resize(&self, size: &str) {
        let output = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.path)
            .output()
            .expect("run mount");
        assert!(output.status.success(), "remount to {size} failed: {}", String::from_utf8_lossy(&output.stderr).trim());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("--lazy").arg(&self.path).status();
    }
}

#[test]
fn disk_full_keeps_chunks_and_resumes() {
    let mut mesh = TestMesh::new(1);
    let tmpfs = Tmpfs::mount(&mesh.nodes[1].data(), "2m");
    mesh.start_all();

    let source = mesh.root.path().join("big.bin");
    let bytes = pattern(PATCH_BYTES, 21);
    std::fs::write(&source, &bytes).expect("write source");
    let output = mesh.publish("KB-full", &[source.as_path()], &["--chunk-size", &CHUNK.to_string()]);
    assert!(output.status.success(), "publish failed: {}", String::from_utf8_lossy(&output.stderr));
    let manifest = read_manifest(&mesh.root.path().join("KB-full.manifest.json"));

    let office = &mesh.nodes[1];
    let deadline = Instant::now() + Duration::from_secs(60);
    while !office.log().contains("disk full while writing") {
        assert!(Instant::now() < deadline, "no disk-full error logged within 60 s; log:\n{}", office.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = office.log();
    let line = log.lines().find(|line| line.contains("disk full while writing")).expect("disk-full line");
    assert!(line.contains("No space left on device"), "the error does not name the cause: {line}");
    assert!(line.contains("free space"), "the error does not say what to do: {line}");

    // Let the node retry against the full disk for a while, then check what it kept.
    std::thread::sleep(Duration::from_secs(6));
    let patch = office.patch("KB-full").expect("the office still responds and lists the patch");
    assert_ne!(patch["state"], "complete", "the patch completed on a 2 MiB tmpfs");
    let on_disk = check_chunk_files(office, &manifest);
    assert!(!on_disk.verified.is_empty(), "no verified chunk was kept on the full disk");
    assert!(on_disk.temp_files.is_empty(), "failed writes left temp files: {:?}", on_disk.temp_files);
    assert_eq!(
        patch["chunks_verified"].as_u64(),
        Some(on_disk.verified.len() as u64),
        "the node's count of stored chunks differs from the chunk files on disk"
    );
    println!("disk full after {} of {} chunks", on_disk.verified.len(), manifest.chunk_count());

    let grown = Instant::now();
    tmpfs.resize("64m");
    mesh.wait_complete("KB-full", Duration::from_secs(60));
    println!("complete {:.1} s after the tmpfs grew", grown.elapsed().as_secs_f64());

    let status = mesh.nodes[1].status().expect("status");
    let (_, files) = status.files.iter().find(|(key, _)| key.starts_with("KB-full@")).expect("assembled files listed");
    assert!(std::fs::read(&files[0]).expect("assembled file") == bytes, "assembled file differs from the source");
    for node in &mut mesh.nodes {
        node.kill();
    }
    drop(tmpfs);
}

/// The chunk files of a 20-chunk patch fit on a 2 MiB tmpfs, but the assembled file
/// beside them does not, so the disk fills during assembly instead of during the download.
/// A patch whose assembly failed once stayed failed until the node restarted.
#[test]
fn disk_full_during_assembly_resumes() {
    let mut mesh = TestMesh::new(1);
    let tmpfs = Tmpfs::mount(&mesh.nodes[1].data(), "2m");
    mesh.start_all();

    let source = mesh.root.path().join("assembly.bin");
    let bytes = pattern(19 * CHUNK + 777, 22);
    std::fs::write(&source, &bytes).expect("write source");
    let output = mesh.publish("KB-assembly", &[source.as_path()], &["--chunk-size", &CHUNK.to_string()]);
    assert!(output.status.success(), "publish failed: {}", String::from_utf8_lossy(&output.stderr));
    let manifest = read_manifest(&mesh.root.path().join("KB-assembly.manifest.json"));

    let office = &mesh.nodes[1];
    let deadline = Instant::now() + Duration::from_secs(60);
    while !office.log().contains("assembly failed") {
        assert!(Instant::now() < deadline, "no assembly failure logged within 60 s; log:\n{}", office.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = office.log();
    let line = log.lines().find(|line| line.contains("assembly failed")).expect("assembly failure line");
    assert!(line.contains("No space left on device"), "the error does not name the cause: {line}");
    let on_disk = check_chunk_files(office, &manifest);
    assert_eq!(on_disk.verified.len() as u32, manifest.chunk_count(), "chunk files lost after the failed assembly");
    assert!(on_disk.temp_files.is_empty(), "the failed assembly left temp files: {:?}", on_disk.temp_files);

    tmpfs.resize("64m");
    let grown = Instant::now();
    let deadline = grown + Duration::from_secs(30);
    while office.patch("KB-assembly").is_none_or(|patch| patch["state"] != "complete") {
        let state = office.patch("KB-assembly").map(|patch| patch["state"].clone());
        assert!(
            Instant::now() < deadline,
            "not complete 30 s after the tmpfs grew, without a restart; state {state:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("complete {:.1} s after the tmpfs grew", grown.elapsed().as_secs_f64());

    let status = office.status().expect("status");
    let (_, files) = status.files.iter().find(|(key, _)| key.starts_with("KB-assembly@")).expect("assembled files listed");
    assert!(std::fs::read(&files[0]).expect("assembled file") == bytes, "assembled file differs from the source");
    for node in &mut mesh.nodes {
        node.kill();
    }
    drop(tmpfs);
}
