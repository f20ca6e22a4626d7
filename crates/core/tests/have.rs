//! `Have` batching and handling, and a peer's rest after its requests time out. One
//! node is driven by hand against a peer that has every chunk and a watcher that has
//! none, so each test checks exactly the messages the node sends.

mod harness;

use std::time::Duration;

use harness::{START, config, manifest, pattern, publisher, trust};
use patchmesh_core::wire::{FetchRequest, Hello, Message, Role, WIRE_VERSION};
use patchmesh_core::{Action, Bitfield, ChunkOutcome, Event, Node, PatchKey, PeerId, RequestId, Timestamp};

const CHUNK: u32 = 1024;
const CHUNKS: u32 = 8;

/// Builds an office node that has the manifest but no chunk, connected to `seed`, an
/// office peer at its site that has every chunk, and to [`WATCHER`], one that has none,
/// and returns its chunk requests.
fn downloading(interval: Duration) -> (Node, PatchKey, PeerId, Vec<(RequestId, u32)>) {
    downloading_from(interval, Bitfield::full(CHUNKS))
}

/// As [`downloading`], with `seed` advertising `bits`.
fn downloading_from(interval: Duration, bits: Bitfield) -> (Node, PatchKey, PeerId, Vec<(RequestId, u32)>) {
    let (manifest, _) = manifest("KB-HAVE", 1, CHUNK, &[("a.bin", pattern((CHUNK * CHUNKS) as usize, 1))], &publisher());
    let patch = manifest.key().clone();
    let mut settings = config("site", Role::Office, 7);
    settings.have_interval = interval;
    let mut node = Node::new(PeerId::new("node"), settings, trust());
    node.handle_manifest_loaded(START, manifest, Bitfield::new(CHUNKS), false, false);
    let seed = PeerId::new("seed");
    node.handle_peer_connected(START, seed.clone());
    let hello = Hello { version: WIRE_VERSION, site: "site".into(), role: Role::Office, site_cache: false };
    node.handle_message(START, &seed, Message::Hello(hello));
    node.handle_message(START, &seed, Message::Bitfield { patch: patch.clone(), bits });
    greet(&mut node, &patch, WATCHER, Role::Office);
    let requests = chunk_requests(&drain(&mut node));
    (node, patch, seed, requests)
}

/// A peer at the node's site that has no chunk, so it hears of every chunk the node stores.
const WATCHER: &str = "watcher";

/// Connects `name`, with `role`, at the node's site and holding no chunk of `patch`.
fn greet(node: &mut Node, patch: &PatchKey, name: &str, role: Role) {
    let peer = PeerId::new(name);
    node.handle_peer_connected(START, peer.clone());
    let hello = Hello { version: WIRE_VERSION, site: "site".into(), role, site_cache: false };
    node.handle_message(START, &peer, Message::Hello(hello));
    node.handle_message(START, &peer, Message::Bitfield { patch: patch.clone(), bits: Bitfield::new(CHUNKS) });
}

/// Returns the chunk requests among `actions`, with their chunk indices.
fn chunk_requests(actions: &[Action]) -> Vec<(RequestId, u32)> {
    actions
        .iter()
        .filter_map(|action| match action {
            Action::Request { request, fetch: FetchRequest::Chunk { index, .. }, .. } => Some((*request, *index)),
            _ => None,
        })
        .collect()
}

fn drain(node: &mut Node) -> Vec<Action> {
    std::iter::from_fn(|| node.poll_action()).collect()
}

/// Returns the index lists of the `Have`s among `actions` sent to [`WATCHER`].
fn haves(actions: &[Action]) -> Vec<Vec<u32>> {
    haves_to(actions, WATCHER)
}

/// Returns the index lists of the `Have`s among `actions` sent to `peer`.
fn haves_to(actions: &[Action], peer: &str) -> Vec<Vec<u32>> {
    actions
        .iter()
        .filter_map(|action| match action {
            Action::Send { peer: to, message: Message::Have { indices, .. } } if to.as_str() == peer => Some(indices.clone()),
            _ => None,
        })
        .collect()
}

fn strikes(node: &mut Node) -> usize {
    std::iter::from_fn(|| node.poll_event()).filter(|event| matches!(event, Event::PeerMisbehaved { .. })).count()
}

fn at(ms: u64) -> Timestamp {
    START.saturating_add(Duration::from_millis(ms))
}

#[test]
fn first_chunk_announced_at_once() {
    let (mut node, _, _, requests) = downloading(Duration::from_millis(100));
    node.handle_chunk_outcome(at(10), requests[0].0, ChunkOutcome::Stored);
    assert_eq!(haves(&drain(&mut node)), vec![vec![requests[0].1]]);
}

#[test]
fn no_have_for_chunks_the_peer_holds() {
    let (mut node, _, _, requests) = downloading(Duration::ZERO);
    node.handle_chunk_outcome(at(10), requests[0].0, ChunkOutcome::Stored);
    assert!(haves_to(&drain(&mut node), "seed").is_empty(), "told the seed of a chunk it advertised");
}

#[test]
fn origin_hears_of_chunks_it_holds() {
    let (mut node, patch, _, requests) = downloading(Duration::ZERO);
    let origin = "origin";
    greet(&mut node, &patch, origin, Role::Origin);
    node.handle_message(START, &PeerId::new(origin), Message::Bitfield { patch, bits: Bitfield::full(CHUNKS) });
    drain(&mut node);
    node.handle_chunk_outcome(at(10), requests[0].0, ChunkOutcome::Stored);
    assert_eq!(haves_to(&drain(&mut node), origin), vec![vec![requests[0].1]]);
}

#[test]
fn chunks_within_interval_wait() {
    let (mut node, _, _, requests) = downloading(Duration::from_millis(100));
    node.handle_chunk_outcome(at(10), requests[0].0, ChunkOutcome::Stored);
    drain(&mut node);
    node.handle_chunk_outcome(at(20), requests[1].0, ChunkOutcome::Stored);
    node.handle_chunk_outcome(at(30), requests[2].0, ChunkOutcome::Stored);
    assert!(haves(&drain(&mut node)).is_empty(), "sent a Have within the interval");
}

#[test]
fn waiting_chunks_wake_the_node() {
    let (mut node, _, _, requests) = downloading(Duration::from_millis(100));
    node.handle_chunk_outcome(at(10), requests[0].0, ChunkOutcome::Stored);
    node.handle_chunk_outcome(at(20), requests[1].0, ChunkOutcome::Stored);
    assert!(node.poll_timeout().is_some_and(|due| due <= at(110)), "no wake-up for the waiting Have");
}

#[test]
fn waiting_chunks_sent_in_one_have() {
    let (mut node, _, _, requests) = downloading(Duration::from_millis(100));
    node.handle_chunk_outcome(at(10), requests[0].0, ChunkOutcome::Stored);
    drain(&mut node);
    node.handle_chunk_outcome(at(20), requests[1].0, ChunkOutcome::Stored);
    node.handle_chunk_outcome(at(30), requests[2].0, ChunkOutcome::Stored);
    drain(&mut node);
    node.handle_timeout(at(110));
    assert_eq!(haves(&drain(&mut node)), vec![vec![requests[1].1, requests[2].1]]);
}

#[test]
fn zero_interval_sends_every_chunk() {
    let (mut node, _, _, requests) = downloading(Duration::ZERO);
    node.handle_chunk_outcome(at(10), requests[0].0, ChunkOutcome::Stored);
    node.handle_chunk_outcome(at(10), requests[1].0, ChunkOutcome::Stored);
    assert_eq!(haves(&drain(&mut node)).len(), 2);
}

#[test]
fn batch_past_the_end_strikes() {
    let (mut node, patch, _, _) = downloading(Duration::ZERO);
    let other = PeerId::new("other");
    node.handle_peer_connected(START, other.clone());
    node.handle_message(START, &other, Message::Bitfield { patch: patch.clone(), bits: Bitfield::new(CHUNKS) });
    strikes(&mut node);
    node.handle_message(START, &other, Message::Have { patch, indices: vec![0, 1, CHUNKS, 2] });
    assert_eq!(strikes(&mut node), 1, "one strike for a batch naming a chunk past the end");
}

#[test]
fn oversized_batch_strikes_once() {
    let (mut node, patch, _, _) = downloading(Duration::ZERO);
    let other = PeerId::new("other");
    node.handle_peer_connected(START, other.clone());
    node.handle_message(START, &other, Message::Bitfield { patch: patch.clone(), bits: Bitfield::new(CHUNKS) });
    strikes(&mut node);
    // More indices than the patch has chunks: the excess is out of range.
    let indices: Vec<u32> = (0..4 * CHUNKS).collect();
    node.handle_message(START, &other, Message::Have { patch, indices });
    assert_eq!(strikes(&mut node), 1);
}

#[test]
fn batch_keeps_valid_indices() {
    let (mut node, patch, seed, requests) = downloading_from(Duration::ZERO, Bitfield::new(CHUNKS));
    assert!(requests.is_empty(), "requested a chunk nobody holds");
    node.handle_message(START, &seed, Message::Have { patch, indices: vec![3, CHUNKS + 5, 5] });
    let mut asked: Vec<u32> = chunk_requests(&drain(&mut node)).into_iter().map(|(_, index)| index).collect();
    asked.sort_unstable();
    assert_eq!(asked, vec![3, 5]);
}

#[test]
fn have_of_held_chunk_requests_nothing() {
    let (mut node, patch, seed, requests) = downloading_from(Duration::ZERO, Bitfield::new(CHUNKS));
    assert!(requests.is_empty(), "requested a chunk nobody holds");
    node.handle_message(START, &seed, Message::Have { patch: patch.clone(), indices: vec![2] });
    let first = chunk_requests(&drain(&mut node));
    node.handle_chunk_outcome(at(10), first[0].0, ChunkOutcome::Stored);
    drain(&mut node);
    let other = PeerId::new("other");
    node.handle_peer_connected(at(20), other.clone());
    node.handle_message(at(20), &other, Message::Bitfield { patch: patch.clone(), bits: Bitfield::new(CHUNKS) });
    drain(&mut node);
    node.handle_message(at(30), &other, Message::Have { patch, indices: vec![2] });
    assert!(chunk_requests(&drain(&mut node)).is_empty());
}

#[test]
fn rested_peer_asked_again_when_rest_ends() {
    let (mut node, _, _, requests) = downloading(Duration::from_millis(100));
    assert!(!requests.is_empty(), "no request to the seed");
    let deadline = node.poll_timeout().expect("a request deadline");
    node.handle_timeout(deadline);
    let slow = std::iter::from_fn(|| node.poll_event()).filter(|event| matches!(event, Event::PeerSlow { .. })).count();
    assert!(slow > 0, "the seed was not rested after its requests timed out");
    assert!(chunk_requests(&drain(&mut node)).is_empty(), "asked the resting seed");
    // Inputs during the rest leave the seed resting. The first one after the rest ends
    // sends it requests again.
    node.handle_timeout(deadline.saturating_add(Duration::from_secs(1)));
    assert!(chunk_requests(&drain(&mut node)).is_empty(), "asked the seed during its rest");
    // The node wakes itself, and one of its wake-ups ends the rest. Each timed-out
    // request doubled it, to minutes.
    let mut requested = false;
    for _ in 0..10 {
        let Some(wake) = node.poll_timeout().filter(|&at| at <= deadline.saturating_add(Duration::from_secs(600))) else {
            break;
        };
        node.handle_timeout(wake);
        if !chunk_requests(&drain(&mut node)).is_empty() {
            requested = true;
            break;
        }
    }
    assert!(requested, "the seed got no request after its rest");
}
