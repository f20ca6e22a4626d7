use super::*;
use crate::ids::PatchId;
use crate::keys::SecretKey;

const CHUNK: u32 = 1024;

fn key() -> PatchKey {
    PatchKey { id: PatchId::new("KB1").expect("id"), version: 1 }
}

fn build(files: &[(&str, Vec<u8>)]) -> Manifest {
    let mut builder = ManifestBuilder::new(key(), CHUNK).expect("builder");
    for (name, bytes) in files {
        builder.add_file(FileName::new(*name).expect("name"), bytes.as_slice()).expect("add");
    }
    let mut manifest = builder.finish(1_000, 2_000).expect("finish");
    manifest.sign(&SecretKey::from_seed([3; 32]));
    manifest
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

#[test]
fn chunk_counts_at_boundaries() {
    let c = CHUNK as usize;
    let cases = [(0, 0), (1, 1), (c - 1, 1), (c, 1), (c + 1, 2), (5 * c + 7, 6)];
    for (size, chunks) in cases {
        let manifest = build(&[("f", pattern(size, 1))]);
        assert_eq!(manifest.chunk_count(), chunks, "file of {size} bytes");
    }
}

#[test]
fn every_chunk_verifies() {
    let data = pattern(3 * CHUNK as usize + 100, 9);
    let manifest = build(&[("f", data.clone())]);
    for (index, chunk) in data.chunks(CHUNK as usize).enumerate() {
        assert!(manifest.verify_chunk(index as u32, chunk).is_ok(), "chunk {index}");
    }
}

#[test]
fn flipped_byte_rejected() {
    let mut data = pattern(2 * CHUNK as usize, 4);
    let manifest = build(&[("f", data.clone())]);
    data[5] ^= 1;
    let error = manifest.verify_chunk(0, &data[..CHUNK as usize]).expect_err("flipped");
    assert!(matches!(error, ChunkError::HashMismatch { index: 0, .. }), "{error}");
}

#[test]
fn truncated_chunk_rejected() {
    let data = pattern(2 * CHUNK as usize, 4);
    let manifest = build(&[("f", data.clone())]);
    let error = manifest.verify_chunk(1, &data[CHUNK as usize..data.len() - 1]).expect_err("short");
    assert!(matches!(error, ChunkError::Length { index: 1, .. }), "{error}");
}

#[test]
fn spans_cross_files() {
    let manifest = build(&[
        ("a", pattern(CHUNK as usize - 10, 1)),
        ("empty", Vec::new()),
        ("one", vec![7]),
        ("b", pattern(30, 2)),
    ]);
    let spans = manifest.chunk_spans(0);
    let expected = vec![
        FileSpan { file: 0, offset: 0, len: u64::from(CHUNK) - 10 },
        FileSpan { file: 2, offset: 0, len: 1 },
        FileSpan { file: 3, offset: 0, len: 9 },
    ];
    assert_eq!(spans, expected);
    assert_eq!(manifest.chunk_spans(1), vec![FileSpan { file: 3, offset: 9, len: 21 }]);
}

#[test]
fn json_round_trip() {
    let manifest = build(&[("dir/a.bin", pattern(4000, 3)), ("b", Vec::new())]);
    let parsed = Manifest::from_json(&manifest.to_json()).expect("parse");
    assert_eq!(parsed, manifest);
}

#[test]
fn body_tamper_detected() {
    let manifest = build(&[("a", pattern(3000, 3))]);
    let mut body = manifest.body().clone();
    body.chunk_hashes[0] = ContentHash([0; 32]);
    let error = Manifest::from_body(manifest.announcement().clone(), &body).expect_err("tampered");
    assert!(matches!(error, ManifestError::BodyMismatch { .. }), "{error}");
}

#[test]
fn header_tamper_breaks_signature() {
    let manifest = build(&[("a", pattern(3000, 3))]);
    let mut announcement = manifest.announcement().clone();
    assert_eq!(announcement.valid_signers().len(), 1);
    announcement.header.expires += 1;
    assert!(announcement.valid_signers().is_empty());
}

#[test]
fn duplicate_signature_counts_once() {
    let manifest = build(&[("a", pattern(10, 3))]);
    let mut announcement = manifest.announcement().clone();
    let copy = announcement.signatures[0].clone();
    announcement.signatures.push(copy);
    assert_eq!(announcement.valid_signers().len(), 1);
}

#[test]
fn duplicate_names_rejected() {
    let mut builder = ManifestBuilder::new(key(), CHUNK).expect("builder");
    builder.add_file(FileName::new("A.txt").expect("name"), &b"x"[..]).expect("add");
    builder.add_file(FileName::new("a.txt").expect("name"), &b"y"[..]).expect("add");
    assert!(builder.finish(1, 2).is_err());
}

#[test]
fn file_and_directory_clash_rejected() {
    let mut builder = ManifestBuilder::new(key(), CHUNK).expect("builder");
    builder.add_file(FileName::new("a").expect("name"), &b"x"[..]).expect("add");
    builder.add_file(FileName::new("a/b").expect("name"), &b"y"[..]).expect("add");
    assert!(builder.finish(1, 2).is_err());
}

#[test]
fn body_rejects_trailing_bytes() {
    let manifest = build(&[("a", pattern(10, 3))]);
    let mut bytes = manifest.body_bytes().to_vec();
    bytes.push(0);
    assert!(ManifestBody::from_canonical_bytes(&bytes).is_err());
}

#[test]
fn default_chunk_sizes() {
    let cases = [
        (0, 64 * 1024),
        (1, 64 * 1024),
        (100_000_000, 128 * 1024),
        (1 << 30, 1 << 20),
        (10 << 30, 4 << 20),
        (u64::MAX / 2, 4 << 20),
    ];
    for (total, expected) in cases {
        assert_eq!(default_chunk_size(total), expected, "total {total}");
    }
}

#[test]
fn announcement_fits_gossip_for_10_gib() {
    // A 10 GiB patch: the header's size does not depend on the patch size.
    let header = ManifestHeader {
        format: MANIFEST_FORMAT,
        patch: PatchKey { id: PatchId::new("x".repeat(128)).expect("id"), version: u64::MAX },
        created: 1,
        expires: 2,
        total_bytes: 10 << 30,
        chunk_size: 1 << 20,
        chunk_count: 10 * 1024,
        file_count: 1,
        verification: ChunkVerification::Blake3HashList,
        body_bytes: 400_000,
        body_hash: ContentHash([1; 32]),
    };
    let mut announcement = Announcement::unsigned(header);
    for seed in 0..MAX_SIGNATURES as u8 {
        announcement.sign(&SecretKey::from_seed([seed; 32]));
    }
    let encoded = serde_json::to_vec(&announcement).expect("encode");
    assert!(encoded.len() < 64 * 1024, "announcement is {} bytes", encoded.len());
}
