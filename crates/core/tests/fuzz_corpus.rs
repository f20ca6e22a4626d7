//! Replays the committed fuzz corpus through the checks the fuzz targets run.
//!
//! The fuzz targets under `fuzz/` need a nightly toolchain and cargo-fuzz. These tests
//! need neither: they feed every file under `fuzz/corpus/<target>/` to the same check
//! function, included below from `fuzz/src/lib.rs`, and fail on any panic. A file whose
//! name starts with `valid-` must also be accepted and one starting with `invalid-` must
//! be rejected. Any other file, such as one a fuzzing run added, only must not panic.
//!
//! The `valid-` and `invalid-` seeds are written by `write_seed_corpus`:
//!
//! ```sh
//! cargo test -p patchmesh-core --test fuzz_corpus -- --ignored write_seed_corpus
//! ```

#[allow(dead_code, unreachable_pub)]
#[path = "../../../fuzz/src/lib.rs"]
mod checks;

use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use patchmesh_core::encoding::CanonicalWriter;
use patchmesh_core::governance::{PatchReport, ReportState, SignedStatusReport, SourceBytes, StatusReport};
use patchmesh_core::manifest::{BODY_DOMAIN, ContentHash, FileName, ManifestBuilder, ManifestHeader};
use patchmesh_core::wire::{DeclineReason, FetchRequest, FetchResponse, Hello, Message, Role, WIRE_VERSION};
use patchmesh_core::{Announcement, Bitfield, Manifest, ManifestBody, PatchId, PatchKey, SecretKey};
use serde_json::{Value, json};

/// The fewest files a target's corpus may hold, so that a lost corpus fails loudly.
const MIN_SEEDS: usize = 20;

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus").join(target)
}

/// Runs `check` on every file of `target`'s corpus and panics with a list of failures.
fn replay(target: &str, check: fn(&[u8]) -> Result<(), String>) {
    let dir = corpus_dir(target);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("cannot list corpus {}: {error}", dir.display()))
        .map(|entry| entry.expect("corpus entry").path())
        .collect();
    paths.sort();

    let mut failures = Vec::new();
    let (mut valid, mut invalid) = (0, 0);
    for path in &paths {
        let name = path.file_name().and_then(|name| name.to_str()).unwrap_or_default().to_string();
        let bytes = std::fs::read(path).unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| check(&bytes)));
        // Shown with `--nocapture`, to see why each seed was rejected.
        if let Ok(result) = &outcome {
            println!("{name}: {result:?}");
        }
        match outcome {
            Err(panic) => {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|text| text.to_string()))
                    .unwrap_or_default();
                failures.push(format!("{name}: panicked: {message}"));
            }
            Ok(Err(reason)) if name.starts_with("valid-") => failures.push(format!("{name}: rejected: {reason}")),
            Ok(Ok(())) if name.starts_with("invalid-") => failures.push(format!("{name}: accepted")),
            Ok(_) => {}
        }
        valid += usize::from(name.starts_with("valid-"));
        invalid += usize::from(name.starts_with("invalid-"));
    }

    assert!(paths.len() >= MIN_SEEDS, "{}: {} files, expected at least {MIN_SEEDS}", dir.display(), paths.len());
    assert!(valid > 0, "{}: no valid- seed", dir.display());
    assert!(invalid > 0, "{}: no invalid- seed", dir.display());
    assert!(failures.is_empty(), "{target}: {} of {} files failed:\n{}", failures.len(), paths.len(), failures.join("\n"));
}

#[test]
fn manifest_json_corpus() {
    replay("manifest_json", checks::manifest_json);
}

#[test]
fn manifest_body_corpus() {
    replay("manifest_body", checks::manifest_body);
}

#[test]
fn trust_file_corpus() {
    replay("trust_file", checks::trust_file);
}

#[test]
fn wire_message_corpus() {
    replay("wire_message", checks::wire_message);
}

#[test]
fn fetch_request_corpus() {
    replay("fetch_request", checks::fetch_request);
}

#[test]
fn fetch_response_corpus() {
    replay("fetch_response", checks::fetch_response);
}

#[test]
fn announcement_corpus() {
    replay("announcement", checks::announcement);
}

// ---- seed generation ----

/// Rewrites the `valid-` and `invalid-` seeds of every target, keeping other files.
#[test]
#[ignore = "writes fuzz/corpus; run it by name after changing a format"]
fn write_seed_corpus() {
    let targets: [(&str, Vec<(String, Vec<u8>)>); 7] = [
        ("manifest_json", manifest_json_seeds()),
        ("manifest_body", manifest_body_seeds()),
        ("trust_file", trust_file_seeds()),
        ("wire_message", wire_message_seeds()),
        ("fetch_request", fetch_request_seeds()),
        ("fetch_response", fetch_response_seeds()),
        ("announcement", announcement_seeds()),
    ];
    for (target, seeds) in targets {
        let dir = corpus_dir(target);
        std::fs::create_dir_all(&dir).expect("create corpus dir");
        for entry in std::fs::read_dir(&dir).expect("list corpus dir") {
            let path = entry.expect("corpus entry").path();
            let name = path.file_name().and_then(|name| name.to_str()).unwrap_or_default();
            if name.starts_with("valid-") || name.starts_with("invalid-") {
                std::fs::remove_file(&path).expect("remove old seed");
            }
        }
        for (name, bytes) in seeds {
            assert!(name.starts_with("valid-") || name.starts_with("invalid-"), "seed name {name}");
            std::fs::write(dir.join(&name), bytes).expect("write seed");
        }
    }
}

/// Signs a status report with the key from seed byte `signer` that names the node of
/// seed byte `named`. The two differ in a forged report.
fn status_report(patch: &PatchKey, named: u8, signer: u8) -> SignedStatusReport {
    let signer = SecretKey::from_seed([signer; 32]);
    StatusReport {
        node: SecretKey::from_seed([named; 32]).public().peer_id(),
        key: signer.public(),
        site: "branch-3".into(),
        role: Role::Office,
        sequence: checks::NOW_SECS * 1_000_000,
        issued: checks::NOW_SECS,
        patches: vec![PatchReport {
            patch: patch.clone(),
            state: ReportState::Fetching,
            chunks_verified: 1,
            chunk_count: 4,
            bytes: SourceBytes { origin: 10, same_site: 20, other_sites: 30 },
            error: None,
        }],
    }
    .sign(&signer)
}

fn valid(name: &str, bytes: impl Into<Vec<u8>>) -> (String, Vec<u8>) {
    (format!("valid-{name}"), bytes.into())
}

fn invalid(name: &str, bytes: impl Into<Vec<u8>>) -> (String, Vec<u8>) {
    (format!("invalid-{name}"), bytes.into())
}

fn stranger() -> SecretKey {
    SecretKey::from_seed([9; 32])
}

/// Builds a manifest over `files`, signed by `signers`, valid around [`checks::NOW_SECS`].
fn manifest(id: &str, chunk_size: u32, files: &[(&str, Vec<u8>)], signers: &[SecretKey]) -> Manifest {
    let key = PatchKey { id: PatchId::new(id).expect("patch id"), version: 1 };
    let mut builder = ManifestBuilder::new(key, chunk_size).expect("chunk size");
    for (name, bytes) in files {
        builder.add_file(FileName::new(*name).expect("file name"), bytes.as_slice()).expect("read");
    }
    let mut manifest = builder.finish(checks::NOW_SECS - 60, checks::NOW_SECS + 86_400).expect("manifest");
    for signer in signers {
        manifest.sign(signer);
    }
    manifest
}

/// Manifests that the checks must accept, each signed by the trusted publisher.
fn valid_manifests() -> Vec<(&'static str, Manifest)> {
    let signed = |id, chunk_size, files: &[(&str, Vec<u8>)]| manifest(id, chunk_size, files, &[checks::publisher()]);
    vec![
        ("reference", (*checks::reference_manifest()).clone()),
        ("one-empty-file", signed("KB1", 1024, &[("empty.txt", Vec::new())])),
        ("one-byte", signed("KB2", 1024, &[("one.bin", vec![1])])),
        ("chunk-minus-one", signed("KB3", 1024, &[("a.bin", vec![3; 1023])])),
        ("exact-chunk", signed("KB4", 1024, &[("a.bin", vec![4; 1024])])),
        ("chunk-plus-one", signed("KB5", 1024, &[("a.bin", vec![5; 1025])])),
        (
            "small-files-share-chunks",
            signed(
                "KB6",
                1024,
                &[("a/1.txt", vec![1; 100]), ("a/2.txt", Vec::new()), ("b/3.txt", vec![3; 2000]), ("c.txt", vec![4; 7])],
            ),
        ),
        ("unicode-names", signed("KB7", 2048, &[("données/résumé.txt", vec![7; 10]), ("日本/ファイル.bin", vec![8; 3000])])),
        ("large-chunk-size", signed("KB8", 1 << 20, &[("big.bin", vec![8; 5000])])),
        ("two-signers", manifest("KB9", 1024, &[("x.bin", vec![9; 1500])], &[stranger(), checks::publisher()])),
    ]
}

/// Returns `{"header": {"x": [[[...]]]}}`, nested `depth` arrays deep, for a decoder that
/// skips the unknown field `x` by recursion.
fn nested_json(depth: usize) -> Vec<u8> {
    format!("{{\"header\": {{\"x\": {}{}}}}}", "[".repeat(depth), "]".repeat(depth)).into_bytes()
}

fn pretty(value: &Value) -> Vec<u8> {
    serde_json::to_vec_pretty(value).expect("serialize JSON")
}

fn manifest_json_seeds() -> Vec<(String, Vec<u8>)> {
    let mut seeds: Vec<(String, Vec<u8>)> =
        valid_manifests().into_iter().map(|(name, manifest)| valid(name, manifest.to_json())).collect();

    let reference = checks::reference_manifest();
    let base: Value = serde_json::from_str(&reference.to_json()).expect("reference JSON");
    let edited = |edit: &dyn Fn(&mut Value)| {
        let mut value = base.clone();
        edit(&mut value);
        pretty(&value)
    };
    let rename = |name: &'static str| move |value: &mut Value| value["files"][0]["name"] = json!(name);

    seeds.push(invalid("empty", Vec::new()));
    seeds.push(invalid("not-utf8", vec![0xff, 0xfe, b'{', b'}']));
    seeds.push(invalid("empty-object", b"{}".to_vec()));
    seeds.push(invalid("truncated", reference.to_json().as_bytes()[..200].to_vec()));
    seeds.push(invalid("format-2", edited(&|v| v["format"] = json!(2))));
    seeds.push(invalid("unknown-field", edited(&|v| v["extra"] = json!(true))));
    seeds.push(invalid("unsigned", edited(&|v| v["signatures"] = json!([]))));
    seeds.push(invalid("stranger-signed", manifest("KB10", 1024, &[("x.bin", vec![1; 10])], &[stranger()]).to_json()));
    seeds.push(invalid(
        "bad-signature",
        edited(&|v| {
            let signature = v["signatures"][0]["signature"].as_str().expect("signature").to_string();
            let flipped = if signature.starts_with('0') { "1" } else { "0" };
            v["signatures"][0]["signature"] = json!(format!("{flipped}{}", &signature[1..]));
        }),
    ));
    seeds.push(invalid("changed-version", edited(&|v| v["header"]["patch"]["version"] = json!(4))));
    seeds.push(invalid("changed-expiry", edited(&|v| v["header"]["expires"] = json!(checks::NOW_SECS + 999_999_999))));
    seeds.push(invalid("changed-chunk-hash", edited(&|v| v["chunk_hashes"][1] = json!("00".repeat(32)))));
    seeds.push(invalid("changed-file-size", edited(&|v| v["files"][0]["size"] = json!(2999))));
    seeds.push(invalid("missing-chunk-hash", edited(&|v| v["chunk_hashes"].as_array_mut().expect("hashes").truncate(4))));
    seeds.push(invalid("short-hash", edited(&|v| v["chunk_hashes"][0] = json!("abcd"))));
    seeds.push(invalid("chunk-size-512", edited(&|v| v["header"]["chunk_size"] = json!(512))));
    seeds.push(invalid("chunk-size-zero", edited(&|v| v["header"]["chunk_size"] = json!(0))));
    seeds.push(invalid("expires-before-created", edited(&|v| v["header"]["expires"] = json!(1))));
    seeds.push(invalid("negative-size", edited(&|v| v["files"][0]["size"] = json!(-1))));
    seeds.push(invalid("huge-chunk-count", edited(&|v| v["header"]["chunk_count"] = json!(u32::MAX))));
    seeds.push(invalid("name-dotdot", edited(&rename("../etc/passwd"))));
    seeds.push(invalid("name-absolute", edited(&rename("/etc/passwd"))));
    seeds.push(invalid("name-drive-letter", edited(&rename("C:/Windows/system32.dll"))));
    seeds.push(invalid("name-backslash", edited(&rename("bin\\setup.exe"))));
    seeds.push(invalid("name-reserved", edited(&rename("aux.txt"))));
    seeds.push(invalid("name-nul", edited(&rename("a\u{0}b"))));
    seeds.push(invalid("name-trailing-dot", edited(&rename("setup."))));
    seeds.push(invalid("name-empty-component", edited(&rename("a//b"))));
    seeds.push(invalid("duplicate-name-case", rehashed(&base, &|v| v["files"][1]["name"] = json!("SETUP.EXE"))));
    seeds.push(invalid("file-and-directory", rehashed(&base, &|v| v["files"][0]["name"] = json!("docs"))));
    seeds.push(invalid("size-total-mismatch", rehashed(&base, &|v| v["files"][0]["size"] = json!(2999))));
    seeds.push(invalid("hash-count-mismatch", rehashed(&base, &|v| v["chunk_hashes"].as_array_mut().expect("hashes").truncate(4))));
    seeds.push(invalid("deep-nesting", nested_json(5000)));
    seeds
}

/// Applies `edit` to the files or chunk hashes of the manifest JSON `base`, then updates
/// the header's body length and hash and signs it again by the trusted publisher. Only the
/// consistency checks between body and header can then reject the result.
fn rehashed(base: &Value, edit: &dyn Fn(&mut Value)) -> Vec<u8> {
    let mut value = base.clone();
    edit(&mut value);
    let body: ManifestBody =
        serde_json::from_value(json!({"files": value["files"], "chunk_hashes": value["chunk_hashes"]})).expect("body");
    let body_bytes = body.canonical_bytes();
    let mut header: ManifestHeader = serde_json::from_value(value["header"].clone()).expect("header");
    header.body_bytes = body_bytes.len() as u32;
    header.body_hash = ContentHash::of(&body_bytes);
    let mut announcement = Announcement::unsigned(header);
    announcement.sign(&checks::publisher());
    value["header"] = serde_json::to_value(&announcement.header).expect("header JSON");
    value["signatures"] = serde_json::to_value(&announcement.signatures).expect("signatures JSON");
    pretty(&value)
}

/// Encodes a canonical body by hand, so that names and counts can break the grammar.
fn raw_body(files: &[(&str, u64)], hashes: u32) -> Vec<u8> {
    let mut writer = CanonicalWriter::with_domain(BODY_DOMAIN);
    writer.put_u32(files.len() as u32);
    for (name, size) in files {
        writer.put_str(name);
        writer.put_u64(*size);
        writer.put_fixed(&[0x11; 32]);
    }
    writer.put_u32(hashes);
    for _ in 0..hashes {
        writer.put_fixed(&[0x22; 32]);
    }
    writer.finish()
}

fn with_chunk_size(chunk_size: u32, body: &[u8]) -> Vec<u8> {
    let mut bytes = chunk_size.to_be_bytes().to_vec();
    bytes.extend_from_slice(body);
    bytes
}

fn manifest_body_seeds() -> Vec<(String, Vec<u8>)> {
    let mut seeds: Vec<(String, Vec<u8>)> = valid_manifests()
        .into_iter()
        .map(|(name, manifest)| valid(name, with_chunk_size(manifest.header().chunk_size, manifest.body_bytes())))
        .collect();
    seeds.push(valid("hand-encoded", with_chunk_size(1024, &raw_body(&[("a", 1024), ("b/c", 1)], 2))));

    let reference = checks::reference_manifest();
    let body = reference.body_bytes();
    let mut trailing = body.to_vec();
    trailing.push(0);
    let mut wrong_domain = body.to_vec();
    wrong_domain[4] ^= 0x20;
    let mut huge_file_count = raw_body(&[], 0);
    huge_file_count[4 + BODY_DOMAIN.len()..][..4].copy_from_slice(&u32::MAX.to_be_bytes());
    let mut huge_name_length = CanonicalWriter::with_domain(BODY_DOMAIN);
    huge_name_length.put_u32(1);
    huge_name_length.put_u32(u32::MAX);
    let mut non_utf8_name = CanonicalWriter::with_domain(BODY_DOMAIN);
    non_utf8_name.put_u32(1);
    non_utf8_name.put_bytes(&[0xc3, 0x28]);
    non_utf8_name.put_u64(1);
    non_utf8_name.put_fixed(&[0; 32]);
    non_utf8_name.put_u32(1);
    non_utf8_name.put_fixed(&[0; 32]);

    seeds.push(invalid("too-short", vec![0, 0, 4]));
    seeds.push(invalid("no-body", 1024u32.to_be_bytes().to_vec()));
    seeds.push(invalid("truncated", with_chunk_size(1024, &body[..body.len() - 1])));
    seeds.push(invalid("trailing-byte", with_chunk_size(1024, &trailing)));
    seeds.push(invalid("wrong-domain", with_chunk_size(1024, &wrong_domain)));
    seeds.push(invalid("chunk-size-zero", with_chunk_size(0, body)));
    seeds.push(invalid("chunk-size-1023", with_chunk_size(1023, body)));
    seeds.push(invalid("chunk-size-too-large", with_chunk_size((16 << 20) + 1, body)));
    seeds.push(invalid("chunk-size-mismatch", with_chunk_size(2048, body)));
    seeds.push(invalid("no-files", with_chunk_size(1024, &raw_body(&[], 0))));
    seeds.push(invalid("huge-file-count", with_chunk_size(1024, &huge_file_count)));
    seeds.push(invalid("huge-name-length", with_chunk_size(1024, &huge_name_length.finish())));
    seeds.push(invalid("non-utf8-name", with_chunk_size(1024, &non_utf8_name.finish())));
    seeds.push(invalid("too-few-hashes", with_chunk_size(1024, &raw_body(&[("a", 3000)], 2))));
    seeds.push(invalid("too-many-hashes", with_chunk_size(1024, &raw_body(&[("a", 3000)], 4))));
    seeds.push(invalid("sizes-overflow", with_chunk_size(1 << 24, &raw_body(&[("a", u64::MAX), ("b", 2)], 1))));
    seeds.push(invalid("name-dotdot", with_chunk_size(1024, &raw_body(&[("../a", 1)], 1))));
    seeds.push(invalid("name-dot", with_chunk_size(1024, &raw_body(&[("a/./b", 1)], 1))));
    seeds.push(invalid("name-absolute", with_chunk_size(1024, &raw_body(&[("/a", 1)], 1))));
    seeds.push(invalid("name-backslash", with_chunk_size(1024, &raw_body(&[("a\\b", 1)], 1))));
    seeds.push(invalid("name-control", with_chunk_size(1024, &raw_body(&[("a\u{1b}b", 1)], 1))));
    seeds.push(invalid("name-reserved", with_chunk_size(1024, &raw_body(&[("dir/COM1.log", 1)], 1))));
    seeds.push(invalid("name-empty", with_chunk_size(1024, &raw_body(&[("", 1)], 1))));
    seeds.push(invalid("duplicate-names", with_chunk_size(1024, &raw_body(&[("Readme", 1), ("README", 1)], 1))));
    seeds.push(invalid("file-and-directory", with_chunk_size(1024, &raw_body(&[("a", 1), ("a/b", 1)], 1))));
    seeds
}

fn trust_file_seeds() -> Vec<(String, Vec<u8>)> {
    let key = checks::publisher().public();
    let other = stranger().public();
    let entry = |name: &str, key: &dyn std::fmt::Display| format!("\n[[publisher]]\nname = \"{name}\"\nkey = \"{key}\"\n");
    let one = format!("format = 1\n{}", entry("it", &key));
    let zero_key = format!("ed25519:{}", "A".repeat(43) + "=");
    vec![
        valid("one-publisher", one.clone()),
        valid("two-publishers", format!("format = 1\n{}{}", entry("it", &key), entry("backup", &other))),
        valid("other-publisher-only", format!("format = 1\n{}", entry("someone else", &other))),
        valid("comments", format!("# trust file\nformat = 1 # version\n{}# end\n", entry("it", &key))),
        valid("key-with-comment", format!("format = 1\n{}", entry("it", &format!("{key} IT publisher")))),
        valid("unicode-name", format!("format = 1\n{}", entry("Bürokratie ✓", &key))),
        valid("inline-table-array", format!("format = 1\npublisher = [{{ name = \"it\", key = \"{key}\" }}]\n")),
        valid("crlf", one.replace('\n', "\r\n")),
        invalid("empty", ""),
        invalid("not-utf8", vec![b'f', 0xff, b'=', b'1']),
        invalid("format-only", "format = 1\n"),
        invalid("format-2", format!("format = 2\n{}", entry("it", &key))),
        invalid("format-string", format!("format = \"1\"\n{}", entry("it", &key))),
        invalid("format-negative", format!("format = -1\n{}", entry("it", &key))),
        invalid("format-huge", format!("format = 99999999999999999999\n{}", entry("it", &key))),
        invalid("format-missing", entry("it", &key)),
        invalid("duplicate-key", format!("format = 1\n{}{}", entry("a", &key), entry("b", &key))),
        invalid("unknown-field", format!("{one}role = \"admin\"\n")),
        invalid("unknown-top-level", format!("threshold = 2\n{one}")),
        invalid("missing-name", format!("format = 1\n[[publisher]]\nkey = \"{key}\"\n")),
        invalid("missing-key", "format = 1\n[[publisher]]\nname = \"it\"\n"),
        invalid("key-wrong-algorithm", format!("format = 1\n{}", entry("it", &key.to_string().replace("ed25519", "rsa")))),
        invalid("key-short", format!("format = 1\n{}", entry("it", &"ed25519:AAAA"))),
        invalid("key-not-base64", format!("format = 1\n{}", entry("it", &"ed25519:!!!!"))),
        invalid("key-small-order", format!("format = 1\n{}", entry("it", &zero_key))),
        invalid("syntax-error", "format = 1\n[[publisher]\n"),
        invalid("unterminated-string", "format = 1\n[[publisher]]\nname = \"it\n"),
        invalid("deep-nesting", format!("format = 1\nx = {}{}\n", "[".repeat(5000), "]".repeat(5000))),
    ]
}

fn cbor(value: &impl serde::Serialize) -> Vec<u8> {
    cbor4ii::serde::to_vec(Vec::new(), value).expect("encode CBOR")
}

/// Returns `{variant: {"x": [[[...0...]]]}}` in CBOR, nested `depth` arrays deep, for a
/// decoder that skips the unknown field `x` by recursion.
fn deeply_nested(variant: &str, depth: usize) -> Vec<u8> {
    let mut bytes = cbor(&json!({variant: {"x": 0}}));
    assert_eq!(bytes.pop(), Some(0x00), "the encoding ends with the integer 0");
    bytes.extend(std::iter::repeat_n(0x81, depth));
    bytes.push(0x00);
    bytes
}

fn wire_message_seeds() -> Vec<(String, Vec<u8>)> {
    let reference = checks::reference_manifest();
    let patch = reference.key().clone();
    let count = reference.chunk_count();
    let hello = |role| Hello { version: WIRE_VERSION, site: "branch-9".into(), role, site_cache: false };
    let mut bits = Bitfield::new(count);
    bits.insert(1);
    bits.insert(3);
    let other_patch = PatchKey { id: PatchId::new("KB-other").expect("id"), version: 1 };
    let untrusted = manifest("KB-untrusted", 1024, &[("x.bin", vec![1; 10])], &[stranger()]);
    let mut bad_signature = reference.announcement().clone();
    bad_signature.signatures[0].signature.0[10] ^= 1;
    let mut conflicting = reference.announcement().clone();
    conflicting.header.created += 1;
    conflicting.sign(&checks::publisher());

    // A Bitfield whose byte string does not fit its length. The encoding of
    // `Bitfield::new(count)` ends with its one-byte `bits` string, header 0x41, so that is
    // replaced.
    let bitfield_with_bytes = |bytes: &[u8]| {
        let mut encoded = cbor(&Message::Bitfield { patch: patch.clone(), bits: Bitfield::new(count) });
        assert_eq!(encoded[encoded.len() - 2..], [0x41, 0x00], "Bitfield encoding changed");
        encoded.truncate(encoded.len() - 2);
        assert!(bytes.len() < 24, "the header below is for short byte strings");
        encoded.push(0x40 + bytes.len() as u8);
        encoded.extend_from_slice(bytes);
        encoded
    };

    let hello_bytes = cbor(&Message::Hello(hello(Role::Office)));
    vec![
        valid("hello-office", hello_bytes.clone()),
        valid("hello-origin", cbor(&Message::Hello(hello(Role::Origin)))),
        valid("announce", cbor(&Message::Announce(reference.announcement().clone()))),
        valid("bitfield", cbor(&Message::Bitfield { patch: patch.clone(), bits: bits.clone() })),
        valid("bitfield-full", cbor(&Message::Bitfield { patch: patch.clone(), bits: Bitfield::full(count) })),
        valid("have", cbor(&Message::Have { patch: patch.clone(), indices: vec![1, 3] })),
        valid("have-empty", cbor(&Message::Have { patch: patch.clone(), indices: Vec::new() })),
        invalid("announce-untrusted", cbor(&Message::Announce(untrusted.announcement().clone()))),
        invalid("announce-bad-signature", cbor(&Message::Announce(bad_signature))),
        invalid("announce-conflicting", cbor(&Message::Announce(conflicting))),
        invalid("bitfield-short", cbor(&Message::Bitfield { patch: patch.clone(), bits: Bitfield::new(count - 1) })),
        invalid("bitfield-long", cbor(&Message::Bitfield { patch: patch.clone(), bits: Bitfield::new(count + 64) })),
        invalid("bitfield-bytes-mismatch", bitfield_with_bytes(&[0; 7])),
        invalid("bitfield-padding-set", bitfield_with_bytes(&[0xff])),
        invalid("have-out-of-range", cbor(&Message::Have { patch: patch.clone(), indices: vec![count, u32::MAX] })),
        invalid("empty", Vec::new()),
        invalid("truncated", hello_bytes[..hello_bytes.len() - 3].to_vec()),
        invalid("unknown-variant", cbor(&json!({"Goodbye": {"reason": "x"}}))),
        invalid("wrong-type", cbor(&json!({"Hello": 7}))),
        invalid("invalid-patch-id", cbor(&json!({"Have": {"patch": {"id": "../x", "version": 1}, "indices": []}}))),
        invalid("array-length-huge", {
            // `indices` comes last, so the empty array 0x80 ends the encoding. The
            // replacement claims 2^64 - 1 elements.
            let mut encoded = cbor(&Message::Have { patch: patch.clone(), indices: Vec::new() });
            assert_eq!(encoded.pop(), Some(0x80), "Have encoding changed");
            encoded.extend([0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
            encoded
        }),
        invalid("string-length-huge", vec![0x7b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
        invalid("deep-nesting", deeply_nested("Hello", 1000)),
        invalid("indefinite-map", vec![0xbf, 0xbf, 0xbf, 0xbf]),
        valid("status", cbor(&Message::Status(status_report(&patch, 9, 9)))),
        invalid("status-for-another-node", cbor(&Message::Status(status_report(&patch, 9, 10)))),
        valid("have-unknown-patch", cbor(&Message::Have { patch: other_patch.clone(), indices: vec![0] })),
        valid("bitfield-unknown-patch", cbor(&Message::Bitfield { patch: other_patch, bits: Bitfield::new(3) })),
    ]
}

fn fetch_request_seeds() -> Vec<(String, Vec<u8>)> {
    let reference = checks::reference_manifest();
    let patch = reference.key().clone();
    let other = PatchKey { id: PatchId::new("KB-other").expect("id"), version: 1 };
    let newer = PatchKey { id: patch.id.clone(), version: patch.version + 1 };
    let chunk = |patch: &PatchKey, index| cbor(&FetchRequest::Chunk { patch: patch.clone(), index });
    let body = cbor(&FetchRequest::Body { patch: patch.clone() });
    let mut seeds = vec![valid("body", body.clone())];
    for index in checks::HELD_CHUNKS {
        seeds.push(valid(&format!("chunk-{index}"), chunk(&patch, index)));
    }
    seeds.extend([
        invalid("chunk-not-held-1", chunk(&patch, 1)),
        invalid("chunk-not-held-3", chunk(&patch, 3)),
        invalid("chunk-past-end", chunk(&patch, reference.chunk_count())),
        invalid("chunk-max-index", chunk(&patch, u32::MAX)),
        invalid("chunk-other-patch", chunk(&other, 0)),
        invalid("chunk-newer-version", chunk(&newer, 0)),
        invalid("body-other-patch", cbor(&FetchRequest::Body { patch: other })),
        invalid("body-newer-version", cbor(&FetchRequest::Body { patch: newer })),
        invalid("empty", Vec::new()),
        invalid("truncated", body[..body.len() - 2].to_vec()),
        invalid("unknown-variant", cbor(&json!({"Everything": {}}))),
        invalid("negative-index", cbor(&json!({"Chunk": {"patch": {"id": "KB-fuzz", "version": 3}, "index": -1}}))),
        invalid("index-too-large", cbor(&json!({"Chunk": {"patch": {"id": "KB-fuzz", "version": 3}, "index": 1u64 << 40}}))),
        invalid("invalid-patch-id", cbor(&json!({"Body": {"patch": {"id": "a/../../b", "version": 3}}}))),
        invalid("patch-id-too-long", cbor(&json!({"Body": {"patch": {"id": "K".repeat(129), "version": 3}}}))),
        invalid("missing-field", cbor(&json!({"Chunk": {"patch": {"id": "KB-fuzz", "version": 3}}}))),
        invalid("oversized", [cbor(&json!({"Body": {"patch": {"id": "KB-fuzz", "version": 3}}})), vec![0; 4096]].concat()),
        invalid("deep-nesting", deeply_nested("Body", 1000)),
        invalid("text-not-utf8", vec![0xa1, 0x64, b'B', b'o', b'd', 0xff, 0xa0]),
        invalid("float-version", cbor(&json!({"Body": {"patch": {"id": "KB-fuzz", "version": 3.5}}}))),
    ]);
    seeds
}

fn fetch_response_seeds() -> Vec<(String, Vec<u8>)> {
    let reference = checks::reference_manifest();
    let body = reference.body_bytes().to_vec();
    let mut seeds = vec![
        valid("body", cbor(&FetchResponse::Body(body.clone()))),
        valid("declined-not-found", cbor(&FetchResponse::Declined(DeclineReason::NotFound))),
        valid("declined-busy", cbor(&FetchResponse::Declined(DeclineReason::Busy))),
    ];
    for index in 0..reference.chunk_count() {
        seeds.push(valid(&format!("chunk-{index}"), cbor(&FetchResponse::Chunk(checks::reference_chunk(index)))));
    }

    let mut tampered_body = body.clone();
    tampered_body[60] ^= 1;
    let mut flipped_chunk = checks::reference_chunk(2);
    flipped_chunk[500] ^= 0x80;
    let mut long_chunk = checks::reference_chunk(4);
    long_chunk.push(0);
    let other_body = manifest("KB-other", 1024, &[("x.bin", vec![1; 10])], &[checks::publisher()]).body_bytes().to_vec();
    let chunk_as_integers = cbor(&json!({"Chunk": checks::reference_chunk(4)}));

    seeds.extend([
        invalid("body-tampered", cbor(&FetchResponse::Body(tampered_body))),
        invalid("body-truncated", cbor(&FetchResponse::Body(body[..body.len() - 1].to_vec()))),
        invalid("body-empty", cbor(&FetchResponse::Body(Vec::new()))),
        invalid("body-other-manifest", cbor(&FetchResponse::Body(other_body))),
        invalid("chunk-flipped-bit", cbor(&FetchResponse::Chunk(flipped_chunk))),
        invalid("chunk-truncated", cbor(&FetchResponse::Chunk(checks::reference_chunk(0)[..1023].to_vec()))),
        invalid("chunk-one-byte-long", cbor(&FetchResponse::Chunk(long_chunk))),
        invalid("chunk-empty", cbor(&FetchResponse::Chunk(Vec::new()))),
        invalid("empty", Vec::new()),
        invalid("unknown-variant", cbor(&json!({"Partial": []}))),
        invalid("unknown-decline-reason", cbor(&json!({"Declined": "overloaded"}))),
        invalid("chunk-length-huge", vec![0xa1, 0x65, b'C', b'h', b'u', b'n', b'k', 0x5b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
        invalid("chunk-truncated-encoding", {
            let encoded = cbor(&FetchResponse::Chunk(checks::reference_chunk(1)));
            encoded[..encoded.len() - 100].to_vec()
        }),
        invalid("deep-nesting", deeply_nested("Body", 1000)),
    ]);
    // cbor4ii reads a serde_bytes field only from a CBOR byte string.
    seeds.push(invalid("chunk-as-integer-array", chunk_as_integers));
    seeds
}

fn announcement_seeds() -> Vec<(String, Vec<u8>)> {
    let publisher = checks::publisher();
    let reference = checks::reference_manifest();
    let announcement = reference.announcement().clone();
    let json = |announcement: &Announcement| serde_json::to_vec(announcement).expect("serialize");
    let resigned = |edit: &dyn Fn(&mut Announcement)| {
        let mut changed = announcement.clone();
        edit(&mut changed);
        changed.signatures.clear();
        changed.sign(&publisher);
        json(&changed)
    };
    let unsigned_edit = |edit: &dyn Fn(&mut Announcement)| {
        let mut changed = announcement.clone();
        edit(&mut changed);
        json(&changed)
    };
    let mut many_signatures = announcement.clone();
    for seed in 0..32u8 {
        many_signatures.signatures.insert(0, {
            let mut other = Announcement::unsigned(announcement.header.clone());
            other.sign(&SecretKey::from_seed([seed + 100; 32]));
            other.signatures.remove(0)
        });
    }
    let mut with_stranger = announcement.clone();
    with_stranger.sign(&stranger());
    let value: Value = serde_json::from_slice(&json(&announcement)).expect("JSON");
    let mut padded = json(&announcement);
    padded.extend(std::iter::repeat_n(b' ', checks::MAX_GOSSIP_BYTES));

    vec![
        valid("reference", json(&announcement)),
        valid("pretty", serde_json::to_vec_pretty(&announcement).expect("serialize")),
        valid("with-stranger-signature", json(&with_stranger)),
        valid("other-manifest", json(valid_manifests()[6].1.announcement())),
        invalid("unsigned", unsigned_edit(&|a| a.signatures.clear())),
        invalid("stranger-only", {
            let mut changed = announcement.clone();
            changed.signatures.clear();
            changed.sign(&stranger());
            json(&changed)
        }),
        invalid("bad-signature", unsigned_edit(&|a| a.signatures[0].signature.0[0] ^= 1)),
        invalid("changed-version", unsigned_edit(&|a| a.header.patch.version += 1)),
        invalid("changed-body-hash", unsigned_edit(&|a| a.header.body_hash.0[0] ^= 1)),
        invalid("expired", resigned(&|a| {
            a.header.created = checks::NOW_SECS - 7200;
            a.header.expires = checks::NOW_SECS - 3600;
        })),
        invalid("from-the-future", resigned(&|a| {
            a.header.created = checks::NOW_SECS + 86_400;
            a.header.expires = checks::NOW_SECS + 2 * 86_400;
        })),
        invalid("chunk-count-mismatch", resigned(&|a| a.header.chunk_count += 1)),
        invalid("chunk-size-small", resigned(&|a| a.header.chunk_size = 1000)),
        invalid("no-files", resigned(&|a| a.header.file_count = 0)),
        invalid("body-too-large", resigned(&|a| a.header.body_bytes = u32::MAX)),
        invalid("format-2", resigned(&|a| a.header.format = 2)),
        invalid("too-many-signatures", json(&many_signatures)),
        invalid("over-gossip-limit", padded),
        invalid("empty", Vec::new()),
        invalid("not-an-announcement", br#"{"not": "an announcement", "n": 1}"#.to_vec()),
        invalid("missing-signatures", pretty(&json!({"header": value["header"]}))),
        invalid("verification-unknown", {
            let mut changed = value.clone();
            changed["header"]["verification"] = json!("sha1-hash-list");
            pretty(&changed)
        }),
        invalid("invalid-key", {
            let mut changed = value.clone();
            changed["signatures"][0]["key"] = json!("ed25519:AAAA");
            pretty(&changed)
        }),
        invalid("invalid-patch-id", {
            let mut changed = value.clone();
            changed["header"]["patch"]["id"] = json!("../../etc");
            pretty(&changed)
        }),
        invalid("deep-nesting", nested_json(5000)),
        invalid("not-utf8", vec![b'{', 0xff, b'}']),
    ]
}
