//! Checks shared by the fuzz targets and the corpus replay test.
//!
//! Each check takes bytes as a file, a gossip message or a peer's request could supply
//! them, and runs them through the decoding and verification that a node performs. It
//! returns `Ok` when the input is accepted and `Err` with the reason when it is rejected.
//! A panic is a bug, either in a decoder or in one of the invariants that the checks
//! assert about accepted input.
//!
//! `crates/core/tests/fuzz_corpus.rs` includes this file as a module, so the stable test
//! suite replays the committed corpus through exactly the code the fuzzer runs. Only
//! `patchmesh-core`, `serde_json` and `cbor4ii` may be used here, because the test gets no
//! other dependencies.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use patchmesh_core::manifest::{
    ChunkVerification, ContentHash, FileName, MANIFEST_FORMAT, ManifestBuilder, ManifestHeader,
};
use patchmesh_core::protocol::BodyOutcome;
use patchmesh_core::wire::{
    FetchRequest, FetchResponse, Hello, MAX_FETCH_REQUEST_BYTES, MAX_FETCH_RESPONSE_BYTES, MAX_MESSAGE_BYTES, Message,
    WIRE_VERSION,
};
use patchmesh_core::{
    Action, Announcement, Bitfield, Event, InboundId, Manifest, ManifestBody, Node, NodeConfig, PatchId, PatchKey,
    PeerId, Role, SecretKey, Timestamp, TrustPolicy, Validation,
};

/// The clock the checks run their nodes at, in seconds since the Unix epoch. The
/// reference manifest is valid from a minute before it until a year after.
pub const NOW_SECS: u64 = 1_800_000_000;

/// The largest gossip message a node accepts, in bytes. The daemon sets gossipsub's
/// `max_transmit_size` to this value.
pub const MAX_GOSSIP_BYTES: usize = 64 * 1024;

/// The chunk size of the reference manifest, in bytes: the smallest a manifest may use.
pub const REFERENCE_CHUNK_SIZE: u32 = 1024;

/// The chunks of the reference manifest that the serving node holds.
pub const HELD_CHUNKS: [u32; 3] = [0, 2, 4];

/// Returns the one publisher key the checks trust.
pub fn publisher() -> SecretKey {
    SecretKey::from_seed([7; 32])
}

/// Returns a trust policy that lists only [`publisher`].
pub fn trust() -> TrustPolicy {
    TrustPolicy::with_publishers([("fuzz-publisher", publisher().public())])
}

/// Returns the files of the reference manifest: 3000 and 1500 bytes, so five 1 KiB
/// chunks, of which one spans both files and the last is short.
pub fn reference_files() -> Vec<(&'static str, Vec<u8>)> {
    let setup = (0..3000u32).map(|i| (i.wrapping_mul(31) ^ (i >> 3)) as u8).collect();
    let readme = (0..1500u32).map(|i| b"patchmesh fuzz reference\n"[i as usize % 25]).collect();
    vec![("setup.exe", setup), ("docs/readme.txt", readme)]
}

/// Returns a manifest over [`reference_files`] as `KB-fuzz@3`, signed by [`publisher`].
pub fn reference_manifest() -> Arc<Manifest> {
    static MANIFEST: OnceLock<Arc<Manifest>> = OnceLock::new();
    MANIFEST
        .get_or_init(|| {
            let key = PatchKey { id: PatchId::new("KB-fuzz").expect("valid patch id"), version: 3 };
            let mut builder = ManifestBuilder::new(key, REFERENCE_CHUNK_SIZE).expect("valid chunk size");
            for (name, bytes) in reference_files() {
                builder.add_file(FileName::new(name).expect("valid file name"), bytes.as_slice()).expect("in-memory read");
            }
            let mut manifest = builder.finish(NOW_SECS - 60, NOW_SECS + 365 * 86_400).expect("consistent manifest");
            manifest.sign(&publisher());
            Arc::new(manifest)
        })
        .clone()
}

/// Returns the bytes of chunk `index` of the reference manifest.
pub fn reference_chunk(index: u32) -> Vec<u8> {
    let all: Vec<u8> = reference_files().into_iter().flat_map(|(_, bytes)| bytes).collect();
    let start = index as usize * REFERENCE_CHUNK_SIZE as usize;
    let end = (start + REFERENCE_CHUNK_SIZE as usize).min(all.len());
    all[start..end].to_vec()
}

// ---- manifests ----

/// Parses a manifest file as `patchmesh verify` and the control API do, then checks its
/// signatures against [`trust`].
pub fn manifest_json(data: &[u8]) -> Result<(), String> {
    let text = std::str::from_utf8(data).map_err(|error| format!("not UTF-8: {error}"))?;
    let manifest = Manifest::from_json(text).map_err(|error| error.to_string())?;
    assert_manifest_invariants(&manifest);
    trust().verify(manifest.announcement()).map_err(|error| error.to_string())?;
    Ok(())
}

/// Decodes a canonical body and joins it to a header that commits to it, as a node does
/// with a body fetched from a peer.
///
/// The first 4 bytes of `data` are the header's chunk size (big-endian) and the rest is
/// the body, so the fuzzer can reach the consistency checks between the two. The other
/// header fields are derived from the body.
pub fn manifest_body(data: &[u8]) -> Result<(), String> {
    let (chunk_size, body_bytes) = data.split_at_checked(4).ok_or("shorter than the 4-byte chunk size")?;
    let chunk_size = u32::from_be_bytes(chunk_size.try_into().expect("4 bytes"));
    let body = ManifestBody::from_canonical_bytes(body_bytes).map_err(|error| error.to_string())?;
    assert_eq!(body.canonical_bytes(), body_bytes, "a body decoded from bytes that are not its canonical encoding");

    let total_bytes = body
        .files
        .iter()
        .try_fold(0u64, |total, file| total.checked_add(file.size))
        .ok_or("file sizes overflow u64")?;
    let header = ManifestHeader {
        format: MANIFEST_FORMAT,
        patch: reference_manifest().key().clone(),
        created: NOW_SECS - 60,
        expires: NOW_SECS + 60,
        total_bytes,
        chunk_size,
        chunk_count: body.chunk_hashes.len() as u32,
        file_count: body.files.len() as u32,
        verification: ChunkVerification::Blake3HashList,
        body_bytes: body_bytes.len() as u32,
        body_hash: ContentHash::of(body_bytes),
    };
    let manifest =
        Manifest::from_parts(Announcement::unsigned(header), body_bytes.to_vec()).map_err(|error| error.to_string())?;
    assert_manifest_invariants(&manifest);
    Ok(())
}

/// Invariants every manifest that passed the consistency checks must keep.
fn assert_manifest_invariants(manifest: &Manifest) {
    let header = manifest.header();
    let body = manifest.body();
    assert_eq!(body.canonical_bytes(), manifest.body_bytes(), "stored body bytes differ from the body");
    assert!(header.validate().is_ok(), "an accepted manifest has an invalid header");

    let mut covered = 0u64;
    for index in 0..header.chunk_count {
        let len = manifest.chunk_len(index);
        assert!(len > 0, "chunk {index} is empty");
        assert!(len <= header.chunk_size, "chunk {index} has {len} bytes, more than the chunk size");
        let spans = manifest.chunk_spans(index);
        let spanned: u64 = spans.iter().map(|span| span.len).sum();
        assert_eq!(spanned, u64::from(len), "the spans of chunk {index} do not add up to its length");
        for span in &spans {
            let size = body.files[span.file].size;
            assert!(span.offset + span.len <= size, "a span of chunk {index} runs past the end of file {}", span.file);
        }
        covered += u64::from(len);
    }
    assert_eq!(covered, header.total_bytes, "chunks do not cover the patch");
    assert!(manifest.chunk_spans(header.chunk_count).is_empty(), "a span past the last chunk");
    assert!(manifest.verify_chunk(header.chunk_count, &[]).is_err(), "an out-of-range chunk verified");

    let reparsed = Manifest::from_json(&manifest.to_json()).expect("the JSON form of an accepted manifest parses");
    assert_eq!(&reparsed, manifest, "the JSON form does not round-trip");
}

// ---- trust files ----

/// Parses a trust file as a node does at start-up, then checks the policy against an
/// announcement signed by [`publisher`].
pub fn trust_file(data: &[u8]) -> Result<(), String> {
    let text = std::str::from_utf8(data).map_err(|error| format!("not UTF-8: {error}"))?;
    let policy = TrustPolicy::from_toml(text).map_err(|error| error.to_string())?;

    let announcement = reference_manifest().announcement().clone();
    let verdict = policy.verify(&announcement);
    let lists_publisher = policy.publisher_name(&publisher().public()).is_some();
    assert_eq!(verdict.is_ok(), lists_publisher, "verdict {verdict:?} for a policy that lists the signer: {lists_publisher}");
    Ok(())
}

// ---- wire messages ----

/// Decodes CBOR as libp2p's request-response codec does: at most `limit` bytes, then
/// `cbor4ii::serde::from_slice`. Anything decoded must encode and decode back to itself.
fn decode_cbor<T>(data: &[u8], limit: u64) -> Result<T, String>
where
    T: serde::de::DeserializeOwned + serde::Serialize + PartialEq + std::fmt::Debug,
{
    if data.len() as u64 > limit {
        return Err(format!("{} bytes exceeds the codec's limit of {limit}", data.len()));
    }
    let value: T = cbor4ii::serde::from_slice(data).map_err(|error| format!("invalid CBOR: {error}"))?;
    let encoded = cbor4ii::serde::to_vec(Vec::new(), &value).expect("encoding into a Vec cannot fail");
    let decoded: T = cbor4ii::serde::from_slice(&encoded).expect("an encoded message decodes");
    assert_eq!(decoded, value, "CBOR round trip changed the message");
    Ok(value)
}

/// The chunks of the reference manifest that the connected peer of [`serving_node`]
/// lists in its `Bitfield` message.
pub const PEER_CHUNKS: [u32; 2] = [1, 3];

/// Builds the node every wire check feeds its input to: an office at `NOW_SECS` that
/// holds the reference manifest and [`HELD_CHUNKS`], with one connected office peer that
/// sent its `Bitfield` of [`PEER_CHUNKS`].
fn serving_node() -> (Node, PeerId) {
    let now = Timestamp::from_secs(NOW_SECS);
    let manifest = reference_manifest();
    let mut node = Node::new(PeerId::new("local"), NodeConfig::new("branch-1", Role::Office), trust());
    let mut have = Bitfield::new(manifest.chunk_count());
    for index in HELD_CHUNKS {
        have.insert(index);
    }
    node.handle_manifest_loaded(now, manifest, have, false, false);
    let peer = PeerId::new("peer");
    node.handle_peer_connected(now, peer.clone());
    let hello = Hello { version: WIRE_VERSION, site: "branch-2".into(), role: Role::Office, site_cache: false };
    node.handle_message(now, &peer, Message::Hello(hello));
    let mut bits = Bitfield::new(reference_manifest().chunk_count());
    for index in PEER_CHUNKS {
        bits.insert(index);
    }
    node.handle_message(now, &peer, Message::Bitfield { patch: reference_manifest().key().clone(), bits });
    let rejections = drain(&mut node).rejections;
    assert!(rejections.is_empty(), "the serving node rejected input while being set up: {rejections:?}");
    (node, peer)
}

/// The actions and rejections a node produced in response to an input.
#[derive(Default)]
struct Drained {
    actions: Vec<Action>,
    /// The reason of each `PeerMisbehaved` and `ManifestDropped` event.
    rejections: Vec<String>,
}

/// Takes every pending action and event from `node`, asserting the invariants every
/// action must keep.
fn drain(node: &mut Node) -> Drained {
    let mut drained = Drained::default();
    while let Some(action) = node.poll_action() {
        if let Action::Request { fetch: FetchRequest::Chunk { patch, index }, .. } = &action {
            let manifest = node.manifest(patch).expect("a chunk request for a patch whose body the node holds");
            assert!(*index < manifest.chunk_count(), "request for chunk {index} of {}", manifest.chunk_count());
        }
        drained.actions.push(action);
    }
    while let Some(event) = node.poll_event() {
        match event {
            Event::PeerMisbehaved { reason, .. } | Event::ManifestDropped { reason, .. } => {
                drained.rejections.push(reason)
            }
            _ => {}
        }
    }
    drained
}

/// Decodes a one-way message and delivers it to [`serving_node`], then lets time pass and
/// the peer disconnect. A message that makes the node report misbehaviour or drop a
/// manifest counts as rejected.
pub fn wire_message(data: &[u8]) -> Result<(), String> {
    let message: Message = decode_cbor(data, MAX_MESSAGE_BYTES)?;
    let (mut node, peer) = serving_node();
    let now = Timestamp::from_secs(NOW_SECS);
    node.handle_message(now, &peer, message);
    let mut rejections = drain(&mut node).rejections;
    node.handle_timeout(now.saturating_add(Duration::from_secs(120)));
    rejections.extend(drain(&mut node).rejections);
    node.handle_peer_disconnected(now.saturating_add(Duration::from_secs(121)), &peer);
    rejections.extend(drain(&mut node).rejections);
    if rejections.is_empty() { Ok(()) } else { Err(rejections.join("; ")) }
}

/// Decodes a fetch request and delivers it to [`serving_node`]. A request the node serves
/// counts as accepted, and a declined one as rejected.
pub fn fetch_request(data: &[u8]) -> Result<(), String> {
    let fetch: FetchRequest = decode_cbor(data, MAX_FETCH_REQUEST_BYTES)?;
    let (mut node, peer) = serving_node();
    let manifest = reference_manifest();
    node.handle_fetch_request(Timestamp::from_secs(NOW_SECS), &peer, InboundId(1), fetch.clone());
    let drained = drain(&mut node);

    let mut outcome = Err(format!("no response to {fetch:?}"));
    for action in drained.actions {
        match action {
            Action::ServeChunk { inbound, chunk } => {
                assert_eq!(inbound, InboundId(1));
                assert_eq!(&chunk.patch, manifest.key(), "served a chunk of another patch");
                assert!(HELD_CHUNKS.contains(&chunk.index), "served chunk {} that the node does not hold", chunk.index);
                outcome = Ok(());
            }
            Action::Respond { inbound, response } => {
                assert_eq!(inbound, InboundId(1));
                outcome = match response {
                    FetchResponse::Body(bytes) => {
                        assert_eq!(bytes, manifest.body_bytes(), "served a body that is not the manifest's");
                        Ok(())
                    }
                    FetchResponse::Chunk(_) => panic!("the core responded with chunk bytes, which only the store may send"),
                    FetchResponse::Declined(reason) => Err(format!("declined: {reason:?}")),
                };
            }
            _ => {}
        }
    }
    outcome
}

/// Decodes a fetch response. A body goes to a node that requested it, as the response. A
/// chunk is verified against every chunk of the reference manifest, as the store verifies
/// it against the requested one.
pub fn fetch_response(data: &[u8]) -> Result<(), String> {
    let response: FetchResponse = decode_cbor(data, MAX_FETCH_RESPONSE_BYTES)?;
    let manifest = reference_manifest();
    match response {
        FetchResponse::Body(bytes) => {
            let (mut node, request) = node_awaiting_body();
            let now = Timestamp::from_secs(NOW_SECS);
            node.handle_body_outcome(now, request, BodyOutcome::Received(bytes.clone()));
            let rejections = drain(&mut node).rejections;
            let installed = node.manifest(manifest.key()).is_some();
            assert_eq!(installed, bytes == manifest.body_bytes(), "a body was installed or refused wrongly");
            if installed { Ok(()) } else { Err(rejections.join("; ")) }
        }
        FetchResponse::Chunk(bytes) => {
            let matches: Vec<u32> =
                (0..manifest.chunk_count()).filter(|&index| manifest.verify_chunk(index, &bytes).is_ok()).collect();
            match matches.as_slice() {
                [] => Err("matches no chunk".into()),
                [index] => {
                    assert_eq!(bytes, reference_chunk(*index), "bytes verified as chunk {index} but differ from it");
                    Ok(())
                }
                _ => panic!("bytes verified as several chunks: {matches:?}"),
            }
        }
        FetchResponse::Declined(_) => Ok(()),
    }
}

/// Builds an office that learned of the reference manifest from an origin and requested
/// its body from it, and returns it with the id of that request.
fn node_awaiting_body() -> (Node, patchmesh_core::RequestId) {
    let now = Timestamp::from_secs(NOW_SECS);
    let mut node = Node::new(PeerId::new("local"), NodeConfig::new("branch-1", Role::Office), trust());
    let origin = PeerId::new("origin");
    node.handle_peer_connected(now, origin.clone());
    let hello = Hello { version: WIRE_VERSION, site: "hq".into(), role: Role::Origin, site_cache: false };
    node.handle_message(now, &origin, Message::Hello(hello));
    node.handle_message(now, &origin, Message::Announce(reference_manifest().announcement().clone()));
    let request = drain(&mut node).actions.into_iter().find_map(|action| match action {
        Action::Request { request, fetch: FetchRequest::Body { .. }, .. } => Some(request),
        _ => None,
    });
    (node, request.expect("an office requests the body of an announced manifest"))
}

// ---- announcements ----

/// Decodes a gossiped announcement as the daemon does and hands it to an office's core,
/// which validates it. Anything but `Accept` counts as rejected.
pub fn announcement(data: &[u8]) -> Result<(), String> {
    if data.len() > MAX_GOSSIP_BYTES {
        return Err(format!("{} bytes exceeds the gossip limit of {MAX_GOSSIP_BYTES}", data.len()));
    }
    let announcement: Announcement = serde_json::from_slice(data).map_err(|error| format!("invalid JSON: {error}"))?;
    let signers = announcement.valid_signers();
    let header_valid = announcement.header.validate().is_ok();
    let trusted = trust().verify(&announcement).is_ok();

    let now = Timestamp::from_secs(NOW_SECS);
    let mut node = Node::new(PeerId::new("local"), NodeConfig::new("branch-1", Role::Office), trust());
    let peer = PeerId::new("peer");
    node.handle_peer_connected(now, peer.clone());
    let validation = node.handle_gossip(now, &peer, announcement);
    let rejections = drain(&mut node).rejections;

    if validation == Validation::Accept {
        assert!(header_valid, "accepted an announcement whose header is invalid");
        assert!(trusted, "accepted an announcement the trust policy rejects");
        assert!(signers.contains(&publisher().public()), "accepted without a valid signature by the trusted key");
        return Ok(());
    }
    Err(format!("{validation:?}: {}", rejections.join("; ")))
}
