use std::fs;
use std::io;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use patchmesh_core::manifest::{ChunkError, FileName, ManifestBuilder};
use patchmesh_core::{PatchId, SecretKey};
use tempfile::TempDir;

use super::atomic::{TempNames, io_error, is_temp_name};
use super::layout::parse_chunk_file_name;
use super::*;

const CHUNK: usize = 1024;

type Files = Vec<(&'static str, Vec<u8>)>;

fn publisher() -> SecretKey {
    SecretKey::from_seed([7; 32])
}

fn trust() -> TrustPolicy {
    TrustPolicy::with_publishers([("test", publisher().public())])
}

fn key(version: u64) -> PatchKey {
    PatchKey { id: PatchId::new("KB1").expect("id"), version }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

fn build_signed(version: u64, files: &[(&str, Vec<u8>)], signer: &SecretKey) -> Manifest {
    let mut builder = ManifestBuilder::new(key(version), CHUNK as u32).expect("builder");
    for (name, bytes) in files {
        builder.add_file(FileName::new(*name).expect("name"), bytes.as_slice()).expect("add");
    }
    let mut manifest = builder.finish(1_000, 2_000).expect("finish");
    manifest.sign(signer);
    manifest
}

fn build(files: &[(&str, Vec<u8>)]) -> Manifest {
    build_signed(1, files, &publisher())
}

fn concat(files: &[(&str, Vec<u8>)]) -> Vec<u8> {
    files.iter().flat_map(|(_, bytes)| bytes.iter().copied()).collect()
}

fn chunk_of(manifest: &Manifest, files: &[(&str, Vec<u8>)], index: u32) -> Vec<u8> {
    let start = index as usize * CHUNK;
    concat(files)[start..start + manifest.chunk_len(index) as usize].to_vec()
}

fn open_store() -> (TempDir, ChunkStore) {
    let dir = TempDir::new().expect("temp dir");
    let store = ChunkStore::open(&dir.path().join("data")).expect("open");
    (dir, store)
}

fn write_chunks(store: &ChunkStore, manifest: &Manifest, files: &[(&str, Vec<u8>)]) {
    for index in 0..manifest.chunk_count() {
        store.write_chunk(manifest, index, &chunk_of(manifest, files, index)).expect("write chunk");
    }
}

fn version_dir(store: &ChunkStore, manifest: &Manifest) -> PathBuf {
    store.layout(manifest.key()).dir()
}

fn chunk_path(store: &ChunkStore, manifest: &Manifest, index: u32) -> PathBuf {
    store.layout(manifest.key()).chunk(index)
}

fn write_sources(dir: &Path, files: &[(&str, Vec<u8>)]) -> Vec<PathBuf> {
    let sources = dir.join("sources");
    fs::create_dir_all(&sources).expect("sources dir");
    files
        .iter()
        .enumerate()
        .map(|(i, (_, bytes))| {
            let path = sources.join(format!("source-{i}"));
            fs::write(&path, bytes).expect("write source");
            path
        })
        .collect()
}

fn exists(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok()
}

/// Patches of boundary sizes, as (case name, files).
fn size_cases() -> Vec<(&'static str, Files)> {
    vec![
        ("0 bytes", vec![("a", vec![])]),
        ("1 byte", vec![("a", pattern(1, 1))]),
        ("chunk-1", vec![("a", pattern(CHUNK - 1, 2))]),
        ("chunk", vec![("a", pattern(CHUNK, 3))]),
        ("chunk+1", vec![("a", pattern(CHUNK + 1, 4))]),
        ("several chunks", vec![("a", pattern(3 * CHUNK + 17, 5))]),
        (
            "several files with empty ones",
            vec![
                ("empty-first", vec![]),
                ("dir/a.bin", pattern(5, 6)),
                ("dir/empty", vec![]),
                ("b", pattern(CHUNK + 3, 7)),
                ("dir/sub/c", pattern(CHUNK - 1, 8)),
                ("z-empty", vec![]),
            ],
        ),
        ("chunks spanning files", vec![("x", pattern(700, 9)), ("y", pattern(700, 10)), ("z", pattern(700, 11))]),
    ]
}

// ---- write and read ----

#[test]
fn round_trip_sizes() {
    for (case, files) in size_cases() {
        let (_dir, store) = open_store();
        let manifest = build(&files);
        write_chunks(&store, &manifest, &files);
        for index in 0..manifest.chunk_count() {
            let read = store.read_chunk(&manifest, index).expect("read chunk");
            assert_eq!(read, chunk_of(&manifest, &files, index), "{case}: chunk {index}");
        }
        assert_eq!(store.have(&manifest), Bitfield::full(manifest.chunk_count()), "{case}");
    }
}

#[test]
fn write_rejects_corrupt() {
    let (_dir, store) = open_store();
    let files = vec![("a", pattern(2 * CHUNK, 1))];
    let manifest = build(&files);
    let mut bytes = chunk_of(&manifest, &files, 0);
    bytes[10] ^= 1;

    let error = store.write_chunk(&manifest, 0, &bytes).expect_err("corrupt chunk");

    assert!(
        matches!(error, WriteChunkError::Rejected { source: ChunkError::HashMismatch { index: 0, .. }, .. }),
        "{error}"
    );
    assert!(!exists(&version_dir(&store, &manifest)), "version dir created for a rejected chunk");
}

#[test]
fn write_rejects_truncated() {
    let (_dir, store) = open_store();
    let files = vec![("a", pattern(2 * CHUNK, 1))];
    let manifest = build(&files);
    let bytes = chunk_of(&manifest, &files, 1);

    let error = store.write_chunk(&manifest, 1, &bytes[..CHUNK - 1]).expect_err("short chunk");

    assert!(matches!(error, WriteChunkError::Rejected { source: ChunkError::Length { index: 1, .. }, .. }), "{error}");
    assert!(!exists(&version_dir(&store, &manifest)), "version dir created for a rejected chunk");
}

#[test]
fn write_rejects_out_of_range() {
    let (_dir, store) = open_store();
    let files = vec![("a", pattern(10, 1))];
    let manifest = build(&files);

    let error = store.write_chunk(&manifest, 1, b"x").expect_err("index past the end");

    assert!(matches!(error, WriteChunkError::Rejected { source: ChunkError::OutOfRange { .. }, .. }), "{error}");
}

#[test]
fn write_twice_is_idempotent() {
    let (_dir, store) = open_store();
    let files = vec![("a", pattern(CHUNK + 5, 1))];
    let manifest = build(&files);
    let bytes = chunk_of(&manifest, &files, 1);

    store.write_chunk(&manifest, 1, &bytes).expect("first write");
    store.write_chunk(&manifest, 1, &bytes).expect("second write");

    assert_eq!(store.read_chunk(&manifest, 1).expect("read"), bytes);
    assert_eq!(store.have(&manifest).iter().collect::<Vec<_>>(), vec![1]);
}

#[test]
fn rejected_message_names_patch() {
    let (_dir, store) = open_store();
    let files = vec![("a", pattern(10, 1))];
    let manifest = build(&files);

    let error = store.write_chunk(&manifest, 0, b"wrong").expect_err("wrong bytes");

    assert!(error.to_string().contains("KB1@1"), "{error}");
}

#[test]
fn corrupt_chunk_file_deleted() {
    let (_dir, store) = open_store();
    let files = vec![("a", pattern(2 * CHUNK, 1))];
    let manifest = build(&files);
    write_chunks(&store, &manifest, &files);
    let path = chunk_path(&store, &manifest, 0);
    let mut bytes = chunk_of(&manifest, &files, 0);
    bytes[0] ^= 0xff;
    fs::write(&path, &bytes).expect("corrupt on disk");

    let error = store.read_chunk(&manifest, 0).expect_err("corrupt chunk served");

    assert!(matches!(error, ReadChunkError::CorruptChunkFile { .. }), "{error}");
    assert!(error.to_string().contains(&path.display().to_string()), "{error}");
    assert!(!exists(&path), "corrupt chunk file kept");
    assert!(!store.have(&manifest).contains(0), "corrupt chunk still counted");
}

#[test]
fn truncated_chunk_file_deleted() {
    let (_dir, store) = open_store();
    let files = vec![("a", pattern(2 * CHUNK, 1))];
    let manifest = build(&files);
    write_chunks(&store, &manifest, &files);
    let path = chunk_path(&store, &manifest, 1);
    fs::write(&path, &chunk_of(&manifest, &files, 1)[..100]).expect("truncate on disk");

    let error = store.read_chunk(&manifest, 1).expect_err("truncated chunk served");

    assert!(matches!(error, ReadChunkError::CorruptChunkFile { source: ChunkError::Length { .. }, .. }), "{error}");
    assert!(!exists(&path), "truncated chunk file kept");
}

#[test]
fn read_missing_not_stored() {
    let (_dir, store) = open_store();
    let files = vec![("a", pattern(2 * CHUNK, 1))];
    let manifest = build(&files);
    store.write_chunk(&manifest, 0, &chunk_of(&manifest, &files, 0)).expect("write");

    let error = store.read_chunk(&manifest, 1).expect_err("missing chunk");

    assert!(matches!(error, ReadChunkError::NotStored { index: 1, .. }), "{error}");
}

#[test]
fn read_out_of_range() {
    let (_dir, store) = open_store();
    let manifest = build(&[("a", pattern(10, 1))]);

    let error = store.read_chunk(&manifest, 1).expect_err("index past the end");

    assert!(matches!(error, ReadChunkError::OutOfRange { index: 1, chunk_count: 1, .. }), "{error}");
}

#[test]
fn have_ignores_stray_names() {
    let (_dir, store) = open_store();
    let files = vec![("a", pattern(3 * CHUNK, 1))];
    let manifest = build(&files);
    store.write_chunk(&manifest, 2, &chunk_of(&manifest, &files, 2)).expect("write");
    let chunks_dir = store.layout(manifest.key()).chunks_dir();
    for stray in ["01.chunk", "7.chunk", "x.chunk", "1.chunk.bak", "+1.chunk"] {
        fs::write(chunks_dir.join(stray), b"stray").expect("stray file");
    }

    let have = store.have(&manifest);

    assert_eq!(have.iter().collect::<Vec<_>>(), vec![2]);
}

#[test]
fn chunk_file_names() {
    let cases: &[(&str, Option<u32>)] = &[
        ("0.chunk", Some(0)),
        ("17.chunk", Some(17)),
        ("4294967295.chunk", Some(u32::MAX)),
        ("4294967296.chunk", None),
        ("01.chunk", None),
        ("+1.chunk", None),
        ("-1.chunk", None),
        ("1.chunk.tmp", None),
        (".chunk", None),
        ("1", None),
    ];
    for (name, index) in cases {
        assert_eq!(parse_chunk_file_name(name), *index, "{name}");
    }
}

// ---- assembly ----

#[test]
fn assemble_sizes() {
    for (case, files) in size_cases() {
        let (_dir, store) = open_store();
        let manifest = build(&files);
        write_chunks(&store, &manifest, &files);

        let paths = store.assemble(&manifest).expect("assemble");

        assert_eq!(paths, store.file_paths(&manifest), "{case}: paths");
        for (path, (name, bytes)) in paths.iter().zip(&files) {
            assert_eq!(&fs::read(path).expect("read assembled"), bytes, "{case}: {name}");
        }
        assert!(store.is_assembled(&manifest), "{case}: not marked complete");
        assert!(!exists(&store.layout(manifest.key()).chunks_dir()), "{case}: chunk files kept");
        assert_eq!(store.have(&manifest), Bitfield::full(manifest.chunk_count()), "{case}: have");
    }
}

#[test]
fn assembled_paths_absolute() {
    let (_dir, store) = open_store();
    let files = vec![("dir/a", pattern(10, 1))];
    let manifest = build(&files);
    write_chunks(&store, &manifest, &files);

    let paths = store.assemble(&manifest).expect("assemble");

    assert!(paths[0].is_absolute(), "{}", paths[0].display());
    assert!(paths[0].ends_with("patches/KB1/1/files/dir/a"), "{}", paths[0].display());
}

#[test]
fn read_after_assembly() {
    for (case, files) in size_cases() {
        let (_dir, store) = open_store();
        let manifest = build(&files);
        write_chunks(&store, &manifest, &files);
        store.assemble(&manifest).expect("assemble");

        for index in 0..manifest.chunk_count() {
            let read = store.read_chunk(&manifest, index).expect("read assembled chunk");
            assert_eq!(read, chunk_of(&manifest, &files, index), "{case}: chunk {index}");
        }
    }
}

#[test]
fn assembled_corruption_not_served() {
    let (_dir, store) = open_store();
    let files = vec![("a", pattern(2 * CHUNK, 1))];
    let manifest = build(&files);
    write_chunks(&store, &manifest, &files);
    let paths = store.assemble(&manifest).expect("assemble");
    let mut bytes = files[0].1.clone();
    bytes[CHUNK + 1] ^= 1;
    fs::write(&paths[0], &bytes).expect("corrupt assembled file");

    let error = store.read_chunk(&manifest, 1).expect_err("corrupt assembled chunk");

    assert!(matches!(error, ReadChunkError::CorruptAssembled { .. }), "{error}");
    assert_eq!(store.read_chunk(&manifest, 0).expect("intact chunk"), chunk_of(&manifest, &files, 0));
}

#[test]
fn assembled_file_missing() {
    let (_dir, store) = open_store();
    let files = vec![("a", pattern(10, 1))];
    let manifest = build(&files);
    write_chunks(&store, &manifest, &files);
    let paths = store.assemble(&manifest).expect("assemble");
    fs::remove_file(&paths[0]).expect("remove assembled file");

    let error = store.read_chunk(&manifest, 0).expect_err("missing assembled file");

    assert!(matches!(error, ReadChunkError::AssembledFileMissing { .. }), "{error}");
}

#[test]
fn assemble_missing_chunk_fails() {
    let (_dir, store) = open_store();
    let files = vec![("a", pattern(3 * CHUNK, 1))];
    let manifest = build(&files);
    write_chunks(&store, &manifest, &files);
    fs::remove_file(chunk_path(&store, &manifest, 1)).expect("remove chunk");

    let error = store.assemble(&manifest).expect_err("assembled with a gap");

    assert!(matches!(error, AssembleError::MissingChunk { index: 1, .. }), "{error}");
    assert!(!store.is_assembled(&manifest), "marked complete with a gap");
    assert!(exists(&chunk_path(&store, &manifest, 0)), "chunk files removed after a failure");
}

#[test]
fn assemble_deletes_corrupt_chunk() {
    let (_dir, store) = open_store();
    let files = vec![("a", pattern(3 * CHUNK, 1))];
    let manifest = build(&files);
    write_chunks(&store, &manifest, &files);
    let path = chunk_path(&store, &manifest, 2);
    fs::write(&path, vec![0; CHUNK]).expect("corrupt on disk");

    let error = store.assemble(&manifest).expect_err("assembled a corrupt chunk");

    assert!(matches!(error, AssembleError::CorruptChunk { .. }), "{error}");
    assert!(!store.is_assembled(&manifest), "marked complete with a corrupt chunk");
    assert!(!exists(&path), "corrupt chunk file kept");
}

#[test]
fn assemble_again_after_success() {
    let (_dir, store) = open_store();
    let files = vec![("a", pattern(CHUNK + 1, 1))];
    let manifest = build(&files);
    write_chunks(&store, &manifest, &files);
    let first = store.assemble(&manifest).expect("first assemble");

    let second = store.assemble(&manifest).expect("second assemble");

    assert_eq!(first, second);
    assert_eq!(fs::read(&second[0]).expect("read"), files[0].1);
}

#[test]
fn assemble_after_crash_before_marker() {
    let (dir, store) = open_store();
    let files = vec![("dir/a", pattern(CHUNK + 1, 1)), ("b", pattern(40, 2))];
    let manifest = build(&files);
    write_chunks(&store, &manifest, &files);
    // A crash mid-assembly leaves a half-written file and a temp file, and no marker.
    let files_dir = store.layout(manifest.key()).files_dir();
    fs::create_dir_all(files_dir.join("dir")).expect("files dir");
    fs::write(files_dir.join("dir/a"), b"half").expect("partial file");
    let temp = files_dir.join(".b.tmp:1.0-0");
    fs::write(&temp, b"partial").expect("temp file");
    let store = ChunkStore::open(&dir.path().join("data")).expect("reopen");

    let paths = store.assemble(&manifest).expect("assemble");

    assert_eq!(fs::read(&paths[0]).expect("read a"), files[0].1);
    assert_eq!(fs::read(&paths[1]).expect("read b"), files[1].1);
    assert!(!exists(&temp), "temp file kept");
}

#[test]
fn assemble_after_crash_after_marker() {
    let (_dir, store) = open_store();
    let files = vec![("a", pattern(2 * CHUNK, 1))];
    let manifest = build(&files);
    write_chunks(&store, &manifest, &files);
    store.assemble(&manifest).expect("assemble");
    // A crash after the marker leaves the chunk files in place.
    let chunks_dir = store.layout(manifest.key()).chunks_dir();
    fs::create_dir(&chunks_dir).expect("chunks dir");
    fs::write(chunk_path(&store, &manifest, 0), chunk_of(&manifest, &files, 0)).expect("chunk file");

    let paths = store.assemble(&manifest).expect("assemble again");

    assert_eq!(fs::read(&paths[0]).expect("read"), files[0].1);
    assert!(!exists(&chunks_dir), "chunk files kept");
}

#[test]
fn assemble_saves_manifest() {
    let (_dir, store) = open_store();
    let files = vec![("a", pattern(10, 1))];
    let manifest = build(&files);
    write_chunks(&store, &manifest, &files);

    store.assemble(&manifest).expect("assemble");

    let loaded = store.load_all(&trust()).expect("load");
    assert_eq!(loaded.len(), 1);
    assert!(loaded[0].assembled, "not loaded as assembled");
}

#[test]
fn assemble_contradicting_file_hash() {
    let (_dir, store) = open_store();
    let files = vec![("a", pattern(10, 1))];
    let good = build(&files);
    // Chunk hashes of the real bytes, but a file hash of other bytes.
    let mut body = good.body().clone();
    body.files[0].hash = blake3::hash(b"other").into();
    let mut announcement = good.announcement().clone();
    announcement.header.body_hash = patchmesh_core::manifest::ContentHash::of(&body.canonical_bytes());
    announcement.header.body_bytes = body.canonical_bytes().len() as u32;
    let mut manifest = Manifest::from_body(announcement, &body).expect("manifest");
    manifest.sign(&publisher());
    write_chunks(&store, &manifest, &files);

    let error = store.assemble(&manifest).expect_err("file hash ignored");

    assert!(matches!(error, AssembleError::FileHash { .. }), "{error}");
    assert!(!store.is_assembled(&manifest), "marked complete");
    assert!(!exists(&store.file_paths(&manifest)[0]), "file with a wrong hash renamed into place");
}

#[test]
fn write_after_assembly_writes_nothing() {
    let (_dir, store) = open_store();
    let files = vec![("a", pattern(2 * CHUNK, 1))];
    let manifest = build(&files);
    write_chunks(&store, &manifest, &files);
    store.assemble(&manifest).expect("assemble");

    store.write_chunk(&manifest, 0, &chunk_of(&manifest, &files, 0)).expect("write");

    assert!(!exists(&store.layout(manifest.key()).chunks_dir()), "chunk file written after assembly");
}

// ---- restart ----

#[test]
fn load_resumes_verified_chunks() {
    let (dir, store) = open_store();
    let files = vec![("a", pattern(4 * CHUNK, 1))];
    let manifest = build(&files);
    store.save_manifest(&manifest).expect("save");
    for index in [0, 2, 3] {
        store.write_chunk(&manifest, index, &chunk_of(&manifest, &files, index)).expect("write");
    }
    fs::write(chunk_path(&store, &manifest, 2), vec![0; CHUNK]).expect("corrupt on disk");
    fs::write(chunk_path(&store, &manifest, 3), &chunk_of(&manifest, &files, 3)[..10]).expect("truncate on disk");
    drop(store);
    let store = ChunkStore::open(&dir.path().join("data")).expect("reopen");

    let loaded = store.load_all(&trust()).expect("load");

    assert_eq!(loaded.len(), 1);
    assert_eq!(*loaded[0].manifest, manifest);
    assert_eq!(loaded[0].have.iter().collect::<Vec<_>>(), vec![0]);
    assert!(!loaded[0].assembled, "loaded as assembled");
    assert!(!exists(&chunk_path(&store, &manifest, 2)), "corrupt chunk file kept");
    assert!(!exists(&chunk_path(&store, &manifest, 3)), "truncated chunk file kept");
}

#[test]
fn load_skips_untrusted() {
    let (_dir, store) = open_store();
    let trusted = build(&[("a", pattern(10, 1))]);
    let untrusted = build_signed(2, &[("a", pattern(10, 2))], &SecretKey::from_seed([9; 32]));
    store.save_manifest(&trusted).expect("save trusted");
    store.save_manifest(&untrusted).expect("save untrusted");

    let loaded = store.load_all(&trust()).expect("load");

    let keys: Vec<&PatchKey> = loaded.iter().map(|patch| patch.manifest.key()).collect();
    assert_eq!(keys, vec![&key(1)]);
    assert!(exists(&store.layout(&key(2)).manifest()), "untrusted manifest deleted");
}

#[test]
fn load_skips_invalid_json() {
    let (_dir, store) = open_store();
    let manifest = build(&[("a", pattern(10, 1))]);
    store.save_manifest(&manifest).expect("save");
    let path = store.layout(manifest.key()).manifest();
    fs::write(&path, b"{ not json").expect("damage manifest");

    let loaded = store.load_all(&trust()).expect("load");

    assert!(loaded.is_empty(), "invalid manifest loaded");
    assert!(exists(&path), "invalid manifest deleted");
}

#[test]
fn load_skips_misplaced_manifest() {
    let (_dir, store) = open_store();
    let manifest = build(&[("a", pattern(10, 1))]);
    let other_dir = store.layout(&key(5)).dir();
    fs::create_dir_all(&other_dir).expect("version dir");
    fs::write(other_dir.join("manifest.json"), manifest.to_json()).expect("misplaced manifest");

    let loaded = store.load_all(&trust()).expect("load");

    assert!(loaded.is_empty(), "manifest loaded from another version's directory");
}

#[test]
fn load_skips_stray_entries() {
    let (_dir, store) = open_store();
    let manifest = build(&[("a", pattern(10, 1))]);
    store.save_manifest(&manifest).expect("save");
    let patches = store.data_dir().join("patches");
    fs::write(patches.join("stray-file"), b"x").expect("stray file");
    fs::create_dir_all(patches.join("KB1/not-a-version")).expect("stray dir");
    fs::create_dir_all(patches.join("KB1/07")).expect("non-canonical version");
    fs::create_dir_all(patches.join("KB1/9")).expect("version without manifest");

    let loaded = store.load_all(&trust()).expect("load");

    assert_eq!(loaded.len(), 1);
}

#[test]
fn load_reports_assembled() {
    let (_dir, store) = open_store();
    let files = vec![("a", pattern(CHUNK + 1, 1))];
    let manifest = build(&files);
    store.save_manifest(&manifest).expect("save");
    write_chunks(&store, &manifest, &files);
    store.assemble(&manifest).expect("assemble");

    let loaded = store.load_all(&trust()).expect("load");

    assert!(loaded[0].assembled, "not loaded as assembled");
    assert_eq!(loaded[0].have, Bitfield::full(2));
}

// ---- open ----

#[test]
fn open_removes_temp_files() {
    let (dir, store) = open_store();
    let files = vec![("dir/a", pattern(10, 1)), (".a.tmp-1", pattern(10, 2))];
    let manifest = build(&files);
    store.save_manifest(&manifest).expect("save");
    write_chunks(&store, &manifest, &files);
    let paths = store.assemble(&manifest).expect("assemble");
    let layout = store.layout(manifest.key());
    let temps = [
        layout.dir().join(".manifest.json.tmp:99.0-3"),
        layout.dir().join(".complete.tmp:99.0-4"),
        layout.files_dir().join("dir/.a.tmp:99.0-5"),
    ];
    fs::create_dir_all(layout.chunks_dir()).expect("chunks dir");
    let chunk_temp = layout.chunks_dir().join(".0.chunk.tmp:99.0-6");
    for path in temps.iter().chain([&chunk_temp]) {
        fs::write(path, b"partial").expect("temp file");
    }
    drop(store);

    let _store = ChunkStore::open(&dir.path().join("data")).expect("reopen");

    for path in temps.iter().chain([&chunk_temp]) {
        assert!(!exists(path), "temp file {} kept", path.display());
    }
    for path in &paths {
        assert!(exists(path), "assembled file {} removed", path.display());
    }
}

#[test]
fn load_keeps_own_temp_files() {
    let (_dir, store) = open_store();
    let manifest = build(&[("a", pattern(10, 1))]);
    store.save_manifest(&manifest).expect("save");
    let dir = store.layout(manifest.key()).dir();
    let own = store.inner.temp_names.next(&dir.join("complete"));
    let stale = dir.join(".complete.tmp:0.0-0");
    fs::write(&own, b"in flight").expect("own temp file");
    fs::write(&stale, b"stale").expect("stale temp file");

    store.load_all(&trust()).expect("load");

    assert!(exists(&own), "in-flight temp file of this store removed");
    assert!(!exists(&stale), "stale temp file kept");
}

#[test]
fn open_parent_is_file() {
    let dir = TempDir::new().expect("temp dir");
    let file = dir.path().join("file");
    fs::write(&file, b"x").expect("file");
    let data_dir = file.join("data");

    let error = ChunkStore::open(&data_dir).expect_err("data dir under a file");

    assert!(matches!(error, OpenError::Create { .. }), "{error}");
    assert!(error.to_string().contains(&data_dir.display().to_string()), "{error}");
    assert!(error.to_string().contains("data_dir in node.toml"), "{error}");
}

#[test]
fn open_on_file() {
    let dir = TempDir::new().expect("temp dir");
    let file = dir.path().join("file");
    fs::write(&file, b"x").expect("file");

    let error = ChunkStore::open(&file).expect_err("data dir is a file");

    assert!(matches!(error, OpenError::NotDirectory { .. }), "{error}");
    assert!(error.to_string().contains(&file.display().to_string()), "{error}");
}

#[test]
fn open_leaves_no_probe() {
    let (_dir, store) = open_store();

    let entries: Vec<_> =
        fs::read_dir(store.data_dir()).expect("list").flatten().map(|entry| entry.file_name()).collect();

    assert_eq!(entries, vec![std::ffi::OsString::from("patches")]);
}

#[test]
fn open_rejects_symlinked_patches() {
    let dir = TempDir::new().expect("temp dir");
    let data_dir = dir.path().join("data");
    let elsewhere = dir.path().join("elsewhere");
    fs::create_dir_all(&data_dir).expect("data dir");
    fs::create_dir_all(&elsewhere).expect("elsewhere");
    symlink(&elsewhere, data_dir.join("patches")).expect("symlink");

    let error = ChunkStore::open(&data_dir).expect_err("followed a link");

    assert!(matches!(error, OpenError::Store(StoreError::Symlink { .. })), "{error}");
}

// ---- import ----

#[test]
fn import_sizes() {
    for (case, files) in size_cases() {
        let (dir, store) = open_store();
        let manifest = build(&files);
        let sources = write_sources(dir.path(), &files);

        let paths = store.import(&manifest, &sources).expect("import");

        assert_eq!(paths, store.file_paths(&manifest), "{case}: paths");
        for (path, (name, bytes)) in paths.iter().zip(&files) {
            assert_eq!(&fs::read(path).expect("read imported"), bytes, "{case}: {name}");
        }
        assert!(store.is_assembled(&manifest), "{case}: not marked complete");
        let loaded = store.load_all(&trust()).expect("load");
        assert!(loaded[0].assembled, "{case}: not loaded as assembled");
    }
}

#[test]
fn import_mismatch_fails() {
    let (dir, store) = open_store();
    let files = vec![("a", pattern(CHUNK + 10, 1)), ("b", pattern(2 * CHUNK, 2))];
    let manifest = build(&files);
    let sources = write_sources(dir.path(), &files);
    let mut changed = files[1].1.clone();
    changed[CHUNK + 5] ^= 1;
    fs::write(&sources[1], &changed).expect("change source");

    let error = store.import(&manifest, &sources).expect_err("mismatched source imported");

    assert!(matches!(error, ImportError::ChunkMismatch { index: 2, .. }), "{error}");
    assert!(error.to_string().contains(&sources[1].display().to_string()), "{error}");
    assert!(error.to_string().contains("chunk 2"), "{error}");
    assert!(!store.is_assembled(&manifest), "marked complete");
    assert!(!exists(&version_dir(&store, &manifest)), "partial output kept");
}

#[test]
fn import_spanning_mismatch_names_both() {
    let (dir, store) = open_store();
    let files = vec![("a", pattern(700, 1)), ("b", pattern(700, 2))];
    let manifest = build(&files);
    let sources = write_sources(dir.path(), &files);
    fs::write(&sources[1], pattern(700, 3)).expect("change source");

    let error = store.import(&manifest, &sources).expect_err("mismatched source imported");

    assert!(error.to_string().contains(&sources[0].display().to_string()), "{error}");
    assert!(error.to_string().contains(&sources[1].display().to_string()), "{error}");
}

#[test]
fn import_wrong_size_fails() {
    let (dir, store) = open_store();
    let files = vec![("a", pattern(CHUNK, 1))];
    let manifest = build(&files);
    let sources = write_sources(dir.path(), &files);
    fs::write(&sources[0], pattern(CHUNK + 1, 1)).expect("grow source");

    let error = store.import(&manifest, &sources).expect_err("wrong size imported");

    assert!(matches!(error, ImportError::SourceSize { expected: 1024, actual: 1025, .. }), "{error}");
    assert!(!store.is_assembled(&manifest), "marked complete");
}

#[test]
fn import_wrong_count_fails() {
    let (dir, store) = open_store();
    let files = vec![("a", pattern(10, 1)), ("b", pattern(10, 2))];
    let manifest = build(&files);
    let sources = write_sources(dir.path(), &files);

    let error = store.import(&manifest, &sources[..1]).expect_err("one source for two files");

    assert!(matches!(error, ImportError::SourceCount { expected: 2, actual: 1, .. }), "{error}");
}

#[test]
fn import_directory_source_fails() {
    let (dir, store) = open_store();
    let files = vec![("a", pattern(10, 1))];
    let manifest = build(&files);

    let error = store.import(&manifest, &[dir.path().to_path_buf()]).expect_err("directory imported");

    assert!(matches!(error, ImportError::SourceNotFile { .. }), "{error}");
}

#[test]
fn import_missing_source_fails() {
    let (dir, store) = open_store();
    let files = vec![("a", pattern(10, 1))];
    let manifest = build(&files);

    let error = store.import(&manifest, &[dir.path().join("missing")]).expect_err("missing source imported");

    assert!(matches!(error, ImportError::SourceRead { .. }), "{error}");
}

#[test]
fn import_failure_keeps_assembled() {
    let (dir, store) = open_store();
    let files = vec![("a", pattern(2 * CHUNK, 1))];
    let manifest = build(&files);
    let sources = write_sources(dir.path(), &files);
    let paths = store.import(&manifest, &sources).expect("first import");
    fs::write(&sources[0], pattern(2 * CHUNK, 9)).expect("change source");

    let error = store.import(&manifest, &sources).expect_err("changed source imported");

    assert!(matches!(error, ImportError::ChunkMismatch { .. }), "{error}");
    assert!(store.is_assembled(&manifest), "complete marker removed");
    assert_eq!(fs::read(&paths[0]).expect("read"), files[0].1);
}

#[test]
fn import_removes_chunk_files() {
    let (dir, store) = open_store();
    let files = vec![("a", pattern(2 * CHUNK, 1))];
    let manifest = build(&files);
    store.write_chunk(&manifest, 0, &chunk_of(&manifest, &files, 0)).expect("write");
    let sources = write_sources(dir.path(), &files);

    store.import(&manifest, &sources).expect("import");

    assert!(!exists(&store.layout(manifest.key()).chunks_dir()), "chunk files kept");
}

// ---- symbolic links ----

#[test]
fn symlink_chunk_not_followed() {
    let (dir, store) = open_store();
    let files = vec![("a", pattern(2 * CHUNK, 1))];
    let manifest = build(&files);
    let bytes = chunk_of(&manifest, &files, 0);
    store.write_chunk(&manifest, 1, &chunk_of(&manifest, &files, 1)).expect("write");
    // The link's target contains the right bytes, so only following it could serve them.
    let target = dir.path().join("outside");
    fs::write(&target, &bytes).expect("target");
    let path = chunk_path(&store, &manifest, 0);
    symlink(&target, &path).expect("symlink");

    let read = store.read_chunk(&manifest, 0);
    let have = store.have(&manifest);
    store.write_chunk(&manifest, 0, &bytes).expect("write over link");

    assert!(matches!(read, Err(ReadChunkError::Store(StoreError::Symlink { .. }))), "{read:?}");
    assert!(!have.contains(0), "link counted as a chunk");
    assert!(fs::symlink_metadata(&path).expect("chunk file").is_file(), "link not replaced");
    assert_eq!(fs::read(&target).expect("target"), bytes, "link target changed");
}

#[test]
fn symlink_chunk_target_untouched() {
    let (dir, store) = open_store();
    let files = vec![("a", pattern(2 * CHUNK, 1))];
    let manifest = build(&files);
    store.write_chunk(&manifest, 1, &chunk_of(&manifest, &files, 1)).expect("write");
    let target = dir.path().join("outside");
    fs::write(&target, b"precious").expect("target");
    symlink(&target, chunk_path(&store, &manifest, 0)).expect("symlink");

    store.write_chunk(&manifest, 0, &chunk_of(&manifest, &files, 0)).expect("write over link");

    assert_eq!(fs::read(&target).expect("target"), b"precious");
}

#[test]
fn symlink_chunks_dir_rejected() {
    let (dir, store) = open_store();
    let files = vec![("a", pattern(10, 1))];
    let manifest = build(&files);
    store.save_manifest(&manifest).expect("save");
    let outside = dir.path().join("outside");
    fs::create_dir(&outside).expect("outside");
    symlink(&outside, store.layout(manifest.key()).chunks_dir()).expect("symlink");

    let error = store.write_chunk(&manifest, 0, &files[0].1).expect_err("wrote through a link");

    assert!(matches!(error, WriteChunkError::Store(StoreError::Symlink { .. })), "{error}");
    assert_eq!(fs::read_dir(&outside).expect("list").count(), 0, "file written through a link");
}

#[test]
fn symlink_files_dir_rejected() {
    let (dir, store) = open_store();
    let files = vec![("a", pattern(10, 1))];
    let manifest = build(&files);
    write_chunks(&store, &manifest, &files);
    let outside = dir.path().join("outside");
    fs::create_dir(&outside).expect("outside");
    symlink(&outside, store.layout(manifest.key()).files_dir()).expect("symlink");

    let error = store.assemble(&manifest).expect_err("assembled through a link");

    assert!(matches!(error, AssembleError::Store(StoreError::Symlink { .. })), "{error}");
    assert_eq!(fs::read_dir(&outside).expect("list").count(), 0, "file written through a link");
    assert!(!store.is_assembled(&manifest), "marked complete");
}

#[test]
fn symlink_file_dir_not_read() {
    let (dir, store) = open_store();
    let files = vec![("sub/a", pattern(10, 1))];
    let manifest = build(&files);
    write_chunks(&store, &manifest, &files);
    store.assemble(&manifest).expect("assemble");
    // Swap the assembled `sub` directory for a link to a copy holding the right bytes.
    let outside = dir.path().join("outside");
    fs::create_dir(&outside).expect("outside");
    fs::write(outside.join("a"), &files[0].1).expect("copy");
    let sub = store.layout(manifest.key()).files_dir().join("sub");
    fs::remove_dir_all(&sub).expect("remove sub");
    symlink(&outside, &sub).expect("symlink");

    let read = store.read_chunk(&manifest, 0);

    assert!(matches!(read, Err(ReadChunkError::Store(StoreError::Symlink { .. }))), "{read:?}");
}

// ---- errors and names ----

#[test]
fn disk_full_maps_enospc() {
    for errno in [libc::ENOSPC, libc::EDQUOT] {
        let error = io_error("write", Path::new("/x/0.chunk"), io::Error::from_raw_os_error(errno));
        assert!(error.is_disk_full(), "errno {errno}: {error}");
        assert!(error.to_string().contains("kept"), "errno {errno}: {error}");
    }
}

#[test]
fn other_errors_not_disk_full() {
    let error = io_error("write", Path::new("/x/0.chunk"), io::Error::from_raw_os_error(libc::EACCES));
    assert!(!error.is_disk_full(), "{error}");
}

#[test]
fn temp_names_never_file_names() {
    let names = TempNames::new();
    for target in ["a", "manifest.json", "0.chunk", &"n".repeat(255)] {
        let temp = names.next(&Path::new("/d").join(target));
        let name = temp.file_name().and_then(|name| name.to_str()).expect("utf-8 name");
        assert!(is_temp_name(name), "{name}");
        assert!(name.len() <= 255, "{} bytes", name.len());
        assert!(FileName::new(name).is_err(), "{name} is a valid file name");
    }
}

#[test]
fn remove_version_frees_everything() {
    let (_dir, store) = open_store();
    let files = vec![("a", pattern(5000, 1)), ("b", pattern(10, 2))];
    let manifest = build(&files);
    store.save_manifest(&manifest).expect("save");
    write_chunks(&store, &manifest, &files);
    store.assemble(&manifest).expect("assemble");
    let used = store.version_usage(manifest.key());
    assert!(used >= 5010, "usage {used} below the file sizes");
    let freed = store.remove_version(manifest.key()).expect("remove");
    assert_eq!(freed, used);
    assert!(!exists(&version_dir(&store, &manifest)), "version dir still there");
    assert_eq!(store.version_usage(manifest.key()), 0);
}

#[test]
fn interrupted_removal_cleaned_on_open() {
    let (dir, store) = open_store();
    let files = vec![("a", pattern(3000, 1))];
    let manifest = build(&files);
    store.save_manifest(&manifest).expect("save");
    write_chunks(&store, &manifest, &files);
    // A removal cut short after its rename: the version dir under a temp name.
    let version = version_dir(&store, &manifest);
    let leftover = version.with_file_name(format!(".{}.tmp:999.0-0", manifest.key().version));
    fs::rename(&version, &leftover).expect("rename");
    drop(store);
    let _reopened = ChunkStore::open(&dir.path().join("data")).expect("reopen");
    assert!(!exists(&leftover), "leftover removal dir survived open");
}

#[test]
fn crash_at_every_write_step() {
    use super::atomic::crash_point::{self, Step};

    let files = vec![("a", pattern(4 * 1024 + 17, 3)), ("b", pattern(100, 4))];
    for step in [Step::Created, Step::HalfWritten, Step::Written, Step::Synced] {
        let (dir, store) = open_store();
        let manifest = build(&files);
        store.save_manifest(&manifest).expect("save");
        let chunk = chunk_of(&manifest, &files, 0);
        crash_point::arm(Some(step));
        assert!(store.write_chunk(&manifest, 0, &chunk).is_err(), "{step:?}: the simulated crash did not happen");
        crash_point::arm(None);
        drop(store);

        // Restart: the store holds the chunk whole or not at all, and serves nothing else.
        let store = ChunkStore::open(&dir.path().join("data")).expect("reopen");
        let loaded = store.load_all(&trust()).expect("load");
        assert_eq!(loaded.len(), 1, "{step:?}: manifest lost");
        assert!(!loaded[0].have.contains(0), "{step:?}: an interrupted write counts as stored");
        assert!(store.read_chunk(&manifest, 0).is_err(), "{step:?}: an interrupted write was served");
        let leftovers: Vec<String> = fs::read_dir(version_dir(&store, &manifest).join("chunks"))
            .map(|entries| entries.flatten().map(|entry| entry.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        assert!(leftovers.is_empty(), "{step:?}: files left in chunks/: {leftovers:?}");

        // And the write succeeds on retry.
        store.write_chunk(&manifest, 0, &chunk).expect("retry");
        assert_eq!(store.read_chunk(&manifest, 0).expect("read"), chunk, "{step:?}: retry stored other bytes");
    }
}
