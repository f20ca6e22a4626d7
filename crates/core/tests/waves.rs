//! Rollout waves in the in-memory harness: office nodes fetch a planned patch only once
//! their wave is open, counted from signed status reports.

mod harness;

use std::sync::Arc;
use std::time::Duration;

use harness::{Mesh, START, config, pattern, planned_manifest, publisher};
use patchmesh_core::governance::{MaintenanceWindow, RolloutPlan, Wave, WaveStart};
use patchmesh_core::{Event, Manifest, PatchKey, PeerId, Role, SecretKey};

const PATCH_BYTES: usize = 64 * 1024;
const CHUNK: u32 = 1024;
const SOAK: u64 = 10;

/// Returns the identity key of node `index`.
fn identity(index: usize) -> Arc<SecretKey> {
    Arc::new(SecretKey::from_seed([100 + index as u8; 32]))
}

/// Builds an origin at `hq` (node 0) and one office per entry of `sites`, fully
/// connected, each with an identity key and named by its peer id as the daemon names them.
fn mesh_at(sites: &[&str]) -> Mesh {
    seeded_mesh_at(sites, 0)
}

/// As [`mesh_at`], with the nodes' random choices seeded from `seed`.
fn seeded_mesh_at(sites: &[&str], seed: u64) -> Mesh {
    let base = seed * 16;
    let mut configs = vec![config("hq", Role::Origin, base + 1)];
    configs.extend(sites.iter().enumerate().map(|(i, site)| config(site, Role::Office, base + 2 + i as u64)));
    let mut names = Vec::new();
    for (index, config) in configs.iter_mut().enumerate() {
        let key = identity(index);
        names.push(PeerId::new(key.public().peer_id()));
        config.identity = Some(key);
    }
    let mut mesh = Mesh::named(configs, names);
    mesh.connect_all();
    mesh
}

/// Wave 1 is the `pilot` site from `first_start`; wave 2 is every other site, once wave 1
/// is fully verified without failures for [`SOAK`] seconds.
fn two_waves(first_start: u64) -> RolloutPlan {
    RolloutPlan {
        waves: vec![
            Wave { sites: Some(vec!["pilot".into()]), start: WaveStart::At { time: first_start } },
            Wave { sites: None, start: WaveStart::AfterPrevious { min_verified_percent: 100, soak_secs: SOAK } },
        ],
        windows: vec![],
    }
}

fn publish(mesh: &mut Mesh, plan: RolloutPlan) -> Arc<Manifest> {
    let (manifest, bytes) = planned_manifest("KB-wave", 1, CHUNK, &[("fix.msu", pattern(PATCH_BYTES, 5))], Some(plan), &publisher());
    mesh.publish(0, manifest.clone(), &bytes);
    manifest
}

fn requests_by(mesh: &Mesh, nodes: &[usize]) -> usize {
    mesh.chunk_requests.iter().filter(|(from, ..)| nodes.contains(from)).count()
}

fn complete(mesh: &Mesh, nodes: &[usize], patch: &PatchKey) -> bool {
    nodes.iter().all(|&index| mesh.stores[index].assembled.contains(patch))
}

/// Runs in steps of 100 ms until `done` holds; returns the virtual time it took, or
/// `None` after `limit`.
fn run_until(mesh: &mut Mesh, limit: Duration, done: impl Fn(&Mesh) -> bool) -> Option<Duration> {
    let start = mesh.now;
    while mesh.now.saturating_duration_since(start) < limit {
        if done(mesh) {
            return Some(mesh.now.saturating_duration_since(start));
        }
        mesh.advance(Duration::from_millis(100));
    }
    None
}

fn opened(mesh: &Mesh, node: usize) -> Option<usize> {
    mesh.events.iter().find_map(|(index, event)| match event {
        Event::WaveOpened { wave, .. } if *index == node => Some(*wave),
        _ => None,
    })
}

#[test]
fn second_wave_waits_for_soak() {
    let mut mesh = mesh_at(&["pilot", "branch-1", "branch-2"]);
    let manifest = publish(&mut mesh, two_waves(START.as_secs() - 60));
    let patch = manifest.key().clone();

    run_until(&mut mesh, Duration::from_secs(30), |mesh| complete(mesh, &[1], &patch)).expect("pilot completes");
    assert_eq!(requests_by(&mesh, &[2, 3]), 0, "wave 2 fetched before wave 1 verified");

    mesh.advance(Duration::from_secs(SOAK - 2));
    assert_eq!(requests_by(&mesh, &[2, 3]), 0, "wave 2 fetched during the soak");

    run_until(&mut mesh, Duration::from_secs(30), |mesh| complete(mesh, &[2, 3], &patch)).expect("wave 2 completes");
    assert_eq!((opened(&mesh, 1), opened(&mesh, 2), opened(&mesh, 3)), (Some(1), Some(2), Some(2)));
}

#[test]
fn waiting_reason_is_announced_once() {
    let mut mesh = mesh_at(&["pilot", "branch-1"]);
    let manifest = publish(&mut mesh, two_waves(START.as_secs() - 60));
    run_until(&mut mesh, Duration::from_secs(60), |mesh| complete(mesh, &[2], manifest.key())).expect("rollout completes");
    let waits: Vec<&String> = mesh
        .events
        .iter()
        .filter_map(|(index, event)| match event {
            Event::WaveWaiting { reason, .. } if *index == 2 => Some(reason),
            _ => None,
        })
        .collect();
    // Unhealthy, then soaking: each once, however many reports arrived meanwhile.
    assert_eq!(waits.len(), 2, "{waits:?}");
}

#[test]
fn failure_in_first_wave_keeps_second_closed() {
    let mut mesh = mesh_at(&["pilot", "pilot", "branch-1"]);
    mesh.stores[2].fail_assembly = true;
    let manifest = publish(&mut mesh, two_waves(START.as_secs() - 60));
    run_until(&mut mesh, Duration::from_secs(30), |mesh| complete(mesh, &[1], manifest.key())).expect("healthy pilot completes");
    mesh.advance(Duration::from_secs(120));
    assert_eq!(requests_by(&mesh, &[3]), 0, "wave 2 fetched although a wave 1 node failed");
    let status = mesh.node(3).wave_status(manifest.key()).expect("gated");
    assert_eq!((status.progress[0].nodes, status.progress[0].verified, status.progress[0].failed), (2, 1, 1));
}

#[test]
fn fixed_start_time_holds_first_wave() {
    let mut mesh = mesh_at(&["pilot"]);
    let manifest = publish(&mut mesh, two_waves(START.as_secs() + 30));
    mesh.advance(Duration::from_secs(29));
    assert_eq!(requests_by(&mesh, &[1]), 0, "pilot fetched before its start time");
    let took = run_until(&mut mesh, Duration::from_secs(30), |mesh| complete(mesh, &[1], manifest.key())).expect("pilot completes");
    assert!(took < Duration::from_secs(10), "pilot took {took:?} after its start time");
}

#[test]
fn maintenance_window_holds_site_until_it_opens() {
    // START is 08:00 UTC; the pilot's window opens at 08:02 for ten minutes.
    assert_eq!(START.as_secs() / 60 % 1440, 480);
    let mut plan = two_waves(START.as_secs() - 60);
    plan.windows.push(MaintenanceWindow { site: "pilot".into(), start_minute: 482, duration_minutes: 10 });
    let mut mesh = mesh_at(&["pilot"]);
    let manifest = publish(&mut mesh, plan);
    mesh.advance(Duration::from_secs(119));
    assert_eq!(requests_by(&mesh, &[1]), 0, "pilot fetched outside its window");
    let took = run_until(&mut mesh, Duration::from_secs(30), |mesh| complete(mesh, &[1], manifest.key())).expect("pilot completes");
    assert!(took < Duration::from_secs(10), "pilot took {took:?} after its window opened");
}

#[test]
fn origin_is_never_gated() {
    let mut mesh = mesh_at(&["pilot"]);
    let manifest = publish(&mut mesh, two_waves(START.as_secs() + 3600));
    assert!(mesh.node(0).wave_status(manifest.key()).is_none());
}

#[test]
fn mesh_view_counts_every_site() {
    let mut mesh = mesh_at(&["pilot", "branch-1", "branch-1"]);
    let manifest = publish(&mut mesh, two_waves(START.as_secs() - 60));
    run_until(&mut mesh, Duration::from_secs(60), |mesh| complete(mesh, &[1, 2, 3], manifest.key())).expect("rollout completes");
    mesh.advance(Duration::from_secs(2));
    let now = mesh.now;
    let view = mesh.node(1).status(now).mesh;
    let branch = view.iter().find(|row| row.site == "branch-1").expect("branch-1 row");
    assert_eq!((branch.nodes, branch.verified, branch.failed), (2, 2, 0));
    let received = branch.bytes.origin + branch.bytes.same_site + branch.bytes.other_sites;
    assert_eq!(received, 2 * PATCH_BYTES as u64);
}


proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config { cases: 12, ..proptest::test_runner::Config::default() })]

    /// However many nodes each wave has and however their random choices fall, no wave 2
    /// node requests a chunk before every pilot verified and the soak passed, and then
    /// every node completes.
    #[test]
    fn second_wave_never_starts_early(pilots in 1usize..=3, others in 1usize..=3, seed in 0u64..1000) {
        let sites: Vec<&str> = std::iter::repeat_n("pilot", pilots).chain(std::iter::repeat_n("branch-1", others)).collect();
        let mut mesh = seeded_mesh_at(&sites, seed);
        let manifest = publish(&mut mesh, two_waves(START.as_secs() - 60));
        let pilot_nodes: Vec<usize> = (1..=pilots).collect();
        let second: Vec<usize> = (pilots + 1..=pilots + others).collect();
        run_until(&mut mesh, Duration::from_secs(60), |mesh| complete(mesh, &pilot_nodes, manifest.key())).expect("pilots complete");
        mesh.advance(Duration::from_secs(SOAK - 1));
        proptest::prop_assert_eq!(requests_by(&mesh, &second), 0);
        let finished = run_until(&mut mesh, Duration::from_secs(60), |mesh| complete(mesh, &second, manifest.key()));
        proptest::prop_assert!(finished.is_some());
    }
}

fn sequence_held(mesh: &mut Mesh, holder: usize, author: usize) -> Option<u64> {
    let author = mesh.names[author].to_string();
    mesh.node(holder).status_reports().find(|signed| signed.report.node == author).map(|signed| signed.report.sequence)
}

#[test]
fn restarted_node_report_replaces_old_one() {
    let mut mesh = mesh_at(&["pilot", "branch-1"]);
    let manifest = publish(&mut mesh, two_waves(START.as_secs() - 60));
    run_until(&mut mesh, Duration::from_secs(60), |mesh| complete(mesh, &[1, 2], manifest.key())).expect("rollout completes");
    mesh.advance(Duration::from_secs(2));
    let before = sequence_held(&mut mesh, 2, 1).expect("report of node 1 held");

    // The new core starts with no stored sequence; its clock-based one still wins.
    let config = mesh.node(1).config().clone();
    mesh.crash(1);
    mesh.advance(Duration::from_secs(5));
    mesh.restart(1, config);
    for other in [0, 2] {
        mesh.connect(1, other);
    }
    mesh.advance(Duration::from_secs(2));
    let after = sequence_held(&mut mesh, 2, 1).expect("report of node 1 held");
    assert!(after > before, "restarted node's report {after} did not replace {before}");
}

#[test]
fn failed_hook_in_first_wave_keeps_second_closed() {
    let mut mesh = mesh_at(&["pilot", "pilot", "branch-1"]);
    let manifest = publish(&mut mesh, two_waves(START.as_secs() - 60));
    run_until(&mut mesh, Duration::from_secs(30), |mesh| complete(mesh, &[1, 2], manifest.key())).expect("pilot completes");
    // The install step on one pilot node fails right after verification.
    mesh.input(2, |node, now| node.handle_hook_failed(now, manifest.key(), "install exited with 1".into()));
    mesh.advance(Duration::from_secs(120));
    assert_eq!(requests_by(&mesh, &[3]), 0, "wave 2 fetched although a wave 1 hook failed");
    let status = mesh.node(3).wave_status(manifest.key()).expect("gated");
    assert_eq!((status.progress[0].verified, status.progress[0].failed), (1, 1));
}
