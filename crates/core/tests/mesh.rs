//! Several protocol cores in the in-memory harness under virtual time, with no sockets.

mod harness;

use std::time::Duration;

use harness::{Mesh, config, manifest, pattern, publisher};
use patchmesh_core::{Event, Role, SecretKey};

const CHUNK: u32 = 4096;

fn standard_files() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("patch.bin", pattern(10 * CHUNK as usize + 1234, 1)),
        ("empty.txt", Vec::new()),
        ("one.txt", vec![b'x']),
        ("docs/readme.txt", pattern(999, 2)),
    ]
}

#[test]
fn five_offices_complete() {
    let mut mesh = Mesh::star(5, 1);
    mesh.connect_all();
    let (manifest, bytes) = manifest("KB1", 1, CHUNK, &standard_files(), &publisher());
    let key = manifest.key().clone();
    mesh.publish(0, manifest, &bytes);
    mesh.run_for(Duration::from_secs(60));
    assert!(mesh.all_complete(&key), "not every office assembled the patch");
    for office in 1..=5 {
        assert!(mesh.bytes(office, &key) == bytes, "office {office} holds different bytes");
    }
}

#[test]
fn origin_serves_under_two_copies() {
    let mut mesh = Mesh::star(12, 7);
    mesh.connect_all();
    let (manifest, bytes) = manifest("KB2", 1, CHUNK, &[("big.bin", pattern(64 * CHUNK as usize, 3))], &publisher());
    let key = manifest.key().clone();
    mesh.publish(0, manifest, &bytes);
    mesh.run_for(Duration::from_secs(120));
    assert!(mesh.all_complete(&key));
    let served = mesh.served(0, &key);
    assert!(served <= 2 * bytes.len() as u64, "origin served {served} bytes for a {}-byte patch", bytes.len());
}

#[test]
fn requests_only_advertised_chunks() {
    let mut mesh = Mesh::star(6, 3);
    mesh.connect_all();
    let (manifest, bytes) = manifest("KB3", 1, CHUNK, &standard_files(), &publisher());
    let key = manifest.key().clone();
    mesh.publish(0, manifest, &bytes);
    mesh.run_for(Duration::from_secs(60));
    // Every request found the chunk at the peer: no Declined outcome, no strike.
    assert!(mesh.declined.is_empty(), "requests for chunks the peer did not hold: {:?}", mesh.declined);
    let misbehaved = mesh.events.iter().filter(|(_, e)| matches!(e, Event::PeerMisbehaved { .. })).count();
    assert_eq!(misbehaved, 0);
    assert!(mesh.all_complete(&key));
}

#[test]
fn corrupt_peer_banned_and_rollout_finishes() {
    let mut mesh = Mesh::star(4, 11);
    mesh.stores[2].corrupt_serving = true;
    mesh.connect_all();
    let (manifest, bytes) = manifest("KB4", 1, CHUNK, &[("f", pattern(40 * CHUNK as usize, 5))], &publisher());
    let key = manifest.key().clone();
    mesh.publish(0, manifest, &bytes);
    mesh.run_for(Duration::from_secs(120));
    for office in [1, 3, 4] {
        assert!(mesh.bytes(office, &key) == bytes, "office {office} holds different bytes");
    }
    let banned_by_others = mesh
        .events
        .iter()
        .filter(|(node, e)| *node != 2 && matches!(e, Event::PeerMisbehaved { peer, .. } if peer.as_str() == "n2"))
        .count();
    assert!(banned_by_others > 0, "nobody noticed the corrupt peer");
    let honest_struck = mesh
        .events
        .iter()
        .filter(|(_, e)| matches!(e, Event::PeerMisbehaved { peer, .. } if peer.as_str() != "n2"))
        .count();
    assert_eq!(honest_struck, 0, "an honest peer got a strike");
}

#[test]
fn frozen_peer_rested_and_bypassed() {
    let mut mesh = Mesh::star(3, 17);
    mesh.connect(0, 1);
    let (manifest, bytes) = manifest("KB11", 1, CHUNK, &[("f", pattern(30 * CHUNK as usize, 6))], &publisher());
    let key = manifest.key().clone();
    mesh.publish(0, manifest, &bytes);
    mesh.run_for(Duration::from_secs(30));
    assert!(mesh.bytes(1, &key) == bytes, "office 1 did not finish before freezing");

    // Office 1 holds everything and stops answering; office 2 prefers it to the origin.
    mesh.stores[1].frozen = true;
    mesh.connect(1, 2);
    mesh.connect(0, 2);
    mesh.run_for(Duration::from_secs(600));
    assert!(mesh.bytes(2, &key) == bytes, "office 2 did not finish around the frozen peer");
    let rested = mesh
        .events
        .iter()
        .any(|(node, e)| *node == 2 && matches!(e, Event::PeerSlow { peer, .. } if peer.as_str() == "n1"));
    assert!(rested, "office 2 never rested the frozen peer");
}

#[test]
fn slow_peer_rested_and_bypassed() {
    // 256 KiB chunks from a peer serving 1 KB/s would take 262 s each; the deadline is
    // 10 s plus the chunk at 16 KiB/s, so 26 s.
    let chunk = 256 * 1024;
    let mut mesh = Mesh::star(2, 23);
    mesh.connect(0, 1);
    let (manifest, bytes) = manifest("KB12", 1, chunk, &[("f", pattern(8 * chunk as usize, 7))], &publisher());
    let key = manifest.key().clone();
    mesh.publish(0, manifest, &bytes);
    mesh.run_for(Duration::from_secs(60));
    assert!(mesh.bytes(1, &key) == bytes, "office 1 did not finish before slowing down");

    mesh.stores[1].serve_rate = Some(1000);
    mesh.connect(1, 2);
    mesh.connect(0, 2);
    mesh.run_for(Duration::from_secs(200));
    assert!(mesh.bytes(2, &key) == bytes, "office 2 did not finish around the slow peer");
    let rested = mesh
        .events
        .iter()
        .any(|(node, e)| *node == 2 && matches!(e, Event::PeerSlow { peer, .. } if peer.as_str() == "n1"));
    assert!(rested, "office 2 never rested the slow peer");
}

#[test]
fn untrusted_manifest_ignored() {
    let mut mesh = Mesh::star(2, 5);
    mesh.connect_all();
    let stranger = SecretKey::from_seed([99; 32]);
    let (manifest, _) = manifest("KB5", 1, CHUNK, &standard_files(), &stranger);
    let announcement = manifest.announcement().clone();
    let name = mesh.names[0].clone();
    let verdict = mesh.node(1).handle_gossip(harness::START, &name, announcement);
    assert_eq!(verdict, patchmesh_core::Validation::Reject);
    assert!(mesh.node(1).manifest(manifest.key()).is_none());
}

#[test]
fn late_joiner_catches_up() {
    let mut mesh = Mesh::star(4, 9);
    for office in 1..4 {
        mesh.connect(0, office);
    }
    let (manifest, bytes) = manifest("KB6", 1, CHUNK, &standard_files(), &publisher());
    let key = manifest.key().clone();
    mesh.publish(0, manifest, &bytes);
    mesh.run_for(Duration::from_secs(30));
    mesh.connect(4, 2);
    mesh.run_for(Duration::from_secs(30));
    assert!(mesh.bytes(4, &key) == bytes, "late joiner holds different bytes");
}

#[test]
fn restart_resumes_without_refetching() {
    let mut mesh = Mesh::star(3, 13);
    mesh.connect_all();
    let (manifest, bytes) = manifest("KB7", 1, CHUNK, &[("f", pattern(60 * CHUNK as usize, 8))], &publisher());
    let key = manifest.key().clone();
    mesh.publish(0, manifest, &bytes);
    mesh.run_for(Duration::from_millis(40));
    let held_before: Vec<u32> = mesh.stores[1].chunks.get(&key).map(|c| c.keys().copied().collect()).unwrap_or_default();
    assert!(!held_before.is_empty() && held_before.len() < 61, "crash point missed: {} chunks", held_before.len());
    mesh.crash(1);
    let requests_before = mesh.chunk_requests.len();
    mesh.restart(1, config("office-0", Role::Office, 99));
    mesh.connect_all();
    mesh.run_for(Duration::from_secs(60));
    assert!(mesh.bytes(1, &key) == bytes, "restarted office holds different bytes");
    let refetched: Vec<u32> = mesh.chunk_requests[requests_before..]
        .iter()
        .filter(|(from, _, patch, index)| *from == 1 && *patch == key && held_before.contains(index))
        .map(|(_, _, _, index)| *index)
        .collect();
    assert!(refetched.is_empty(), "refetched verified chunks {refetched:?}");
}

#[test]
fn lower_version_ignored() {
    let mut mesh = Mesh::star(1, 2);
    mesh.connect_all();
    let (v2, bytes) = manifest("KB8", 2, CHUNK, &standard_files(), &publisher());
    mesh.publish(0, v2, &bytes);
    mesh.run_for(Duration::from_secs(10));
    let (v1, _) = manifest("KB8", 1, CHUNK, &standard_files(), &publisher());
    let name = mesh.names[0].clone();
    let now = mesh.now;
    let verdict = mesh.node(1).handle_gossip(now, &name, v1.announcement().clone());
    assert_eq!(verdict, patchmesh_core::Validation::Ignore);
}

#[test]
fn expired_manifest_ignored() {
    let mut mesh = Mesh::star(1, 2);
    mesh.connect_all();
    let (manifest, _) = manifest("KB9", 1, CHUNK, &standard_files(), &publisher());
    let name = mesh.names[0].clone();
    let later = harness::START.saturating_add(Duration::from_secs(2 * 86_400));
    let verdict = mesh.node(1).handle_gossip(later, &name, manifest.announcement().clone());
    assert_eq!(verdict, patchmesh_core::Validation::Ignore);
}

#[test]
fn same_seed_same_trace() {
    let run = || {
        let mut mesh = Mesh::star(6, 21);
        mesh.connect_all();
        let (manifest, bytes) = manifest("KB10", 1, CHUNK, &standard_files(), &publisher());
        mesh.publish(0, manifest, &bytes);
        mesh.run_for(Duration::from_secs(60));
        (mesh.chunk_requests.clone(), mesh.now)
    };
    assert_eq!(run(), run());
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig {
        cases: 24,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x5eed),
        ..Default::default()
    })]

    /// Random mesh sizes, chunk sizes and file sizes: every office ends with the exact
    /// bytes, and no node ever asks a peer for a chunk that peer does not hold.
    #[test]
    fn random_rollouts_complete(
        offices in 1usize..8,
        chunk_exponent in 10u32..14,
        size in 0usize..60_000,
        seed in 0u64..1_000,
    ) {
        let chunk = 1u32 << chunk_exponent;
        let mut mesh = Mesh::star(offices, seed);
        mesh.connect_all();
        let files = vec![("a", pattern(size, seed as u8)), ("b", pattern(size / 3, 1)), ("c", Vec::new())];
        let (manifest, bytes) = manifest("KBP", 1, chunk, &files, &publisher());
        let key = manifest.key().clone();
        mesh.publish(0, manifest, &bytes);
        mesh.run_for(Duration::from_secs(300));
        proptest::prop_assert!(mesh.all_complete(&key), "not complete");
        for office in 1..=offices {
            proptest::prop_assert!(mesh.bytes(office, &key) == bytes, "office {} holds different bytes", office);
        }
        proptest::prop_assert!(mesh.declined.is_empty(), "declined: {:?}", mesh.declined);
    }
}
