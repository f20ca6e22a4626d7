//! Where chunks come from: the origin's egress budget and site locality, in the
//! in-memory harness under virtual time.

mod harness;

use std::collections::BTreeMap;
use std::time::Duration;

use harness::{Mesh, config, manifest, pattern, publisher};
use patchmesh_core::{Event, NodeConfig, PatchKey, Role};

const CHUNK: u32 = 4096;

/// An origin (node 0) at site "hq", then `per_site[s]` office nodes at site `s`.
fn sites(per_site: &[usize], seed: u64, budget: Option<f64>) -> (Mesh, Vec<usize>) {
    let mut origin = config("hq", Role::Origin, seed);
    origin.origin_budget = budget;
    let mut configs: Vec<NodeConfig> = vec![origin];
    let mut site_of = vec![usize::MAX];
    for (site, &count) in per_site.iter().enumerate() {
        for _ in 0..count {
            configs.push(config(&format!("site-{site}"), Role::Office, seed + configs.len() as u64));
            site_of.push(site);
        }
    }
    (Mesh::new(configs), site_of)
}

fn overrun_bytes(mesh: &Mesh) -> u64 {
    mesh.events
        .iter()
        .filter(|(node, event)| *node == 0 && matches!(event, Event::OriginBudgetExceeded { .. }))
        .count() as u64
        * u64::from(CHUNK)
}

fn publish(mesh: &mut Mesh, chunks: usize, seed: u8) -> (PatchKey, u64) {
    let (manifest, bytes) = manifest("KB-S", 1, CHUNK, &[("patch.bin", pattern(chunks * CHUNK as usize, seed))], &publisher());
    let key = manifest.key().clone();
    mesh.publish(0, manifest, &bytes);
    (key, bytes.len() as u64)
}

#[test]
fn budget_of_one_copy_sends_each_chunk_once() {
    let (mut mesh, _) = sites(&[1; 12], 5, Some(1.0));
    mesh.connect_all();
    let (key, size) = publish(&mut mesh, 64, 1);
    mesh.run_for(Duration::from_secs(300));
    assert!(mesh.all_complete(&key), "not every office completed");
    assert_eq!(mesh.served(0, &key), size, "origin egress differs from one copy");
    assert_eq!(overrun_bytes(&mesh), 0, "overruns reported without a reason");
}

#[test]
fn budget_below_one_copy_overruns_and_reports() {
    let (mut mesh, _) = sites(&[1; 3], 9, Some(0.5));
    mesh.connect_all();
    let (key, size) = publish(&mut mesh, 16, 2);
    mesh.run_for(Duration::from_secs(300));
    assert!(mesh.all_complete(&key), "a budget under one copy stalled the rollout");
    let served = mesh.served(0, &key);
    assert!(served >= size, "origin sent {served} bytes, less than one copy of {size}");
    assert_eq!(overrun_bytes(&mesh), served - size / 2, "overrun events do not add up to the excess");
}

#[test]
fn chunk_enters_each_site_once() {
    let (mut mesh, site_of) = sites(&[3, 3, 2], 21, None);
    mesh.connect_all();
    let (key, _) = publish(&mut mesh, 48, 3);
    mesh.run_for(Duration::from_secs(300));
    assert!(mesh.all_complete(&key), "not every office completed");
    // For each site: how often each chunk was requested from a node outside it.
    let mut remote: BTreeMap<(usize, u32), u32> = BTreeMap::new();
    for (from, to, _, index) in &mesh.chunk_requests {
        if site_of[*from] != site_of[*to] {
            *remote.entry((site_of[*from], *index)).or_default() += 1;
        }
    }
    let repeated: Vec<_> = remote.iter().filter(|(_, count)| **count > 1).collect();
    assert!(repeated.is_empty(), "(site, chunk) fetched from outside more than once: {repeated:?}");
    assert_eq!(remote.len(), 3 * 48, "some site did not fetch every chunk from outside once");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig {
        cases: 24,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0xb0d9e7),
        ..Default::default()
    })]

    /// Random sites, budgets and a crash: every live office completes, no node asks a
    /// peer for a chunk it does not hold, and the origin exceeds its budget only by
    /// the chunks it reported as overruns.
    #[test]
    fn budget_holds_with_a_crash(
        per_site in proptest::collection::vec(1usize..4, 1..5),
        budget in 1.0f64..2.0,
        crash_after_ms in 0u64..400,
        seed in 0u64..1_000,
    ) {
        let (mut mesh, _) = sites(&per_site, seed, Some(budget));
        mesh.connect_all();
        let (key, size) = publish(&mut mesh, 40, seed as u8);
        mesh.run_for(Duration::from_millis(crash_after_ms));
        let victim = 1 + (seed as usize % (mesh.nodes.len() - 1));
        mesh.crash(victim);
        mesh.run_for(Duration::from_secs(600));
        for node in 1..mesh.nodes.len() {
            if node != victim {
                proptest::prop_assert!(mesh.bytes(node, &key).len() as u64 == size, "node {} incomplete", node);
            }
        }
        proptest::prop_assert!(mesh.declined.is_empty(), "requests for chunks not held: {:?}", mesh.declined);
        let allowed = (budget * size as f64).round() as u64 + overrun_bytes(&mesh);
        let served = mesh.served(0, &key);
        proptest::prop_assert!(served <= allowed, "origin served {} bytes, budget plus overruns {}", served, allowed);
    }
}

#[test]
fn endgame_bypasses_stalled_peer() {
    // Offices 1 and 2 hold the patch; office 3 fetches from both, and office 1 never
    // answers. Its requests stall after 3 s (its rate is unmeasured); without the
    // endgame they would wait for the 10 s request deadline.
    let mut configs = vec![config("hq", Role::Origin, 31)];
    for office in 1..=3u64 {
        let mut office_config = config(&format!("office-{office}"), Role::Office, 31 + office);
        office_config.request_timeout = Duration::from_secs(60);
        configs.push(office_config);
    }
    let mut mesh = Mesh::new(configs);
    mesh.connect(0, 1);
    mesh.connect(0, 2);
    let (key, size) = publish(&mut mesh, 40, 4);
    mesh.run_for(Duration::from_secs(30));
    assert_eq!(mesh.bytes(2, &key).len() as u64, size, "office 2 did not finish first");

    mesh.stores[1].frozen = true;
    mesh.connect(1, 3);
    mesh.connect(2, 3);
    mesh.run_for(Duration::from_secs(6));
    assert_eq!(mesh.bytes(3, &key).len() as u64, size, "office 3 waited for the stalled peer");
    let rested = mesh.events.iter().any(|(node, event)| *node == 3 && matches!(event, Event::PeerSlow { .. }));
    assert!(!rested, "office 3 finished only after a request deadline");
}
