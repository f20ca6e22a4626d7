//! The overlay: which nodes keep a connection to which, and the simulator's own RNG.

use std::collections::BTreeSet;

use patchmesh_core::rng::SplitMix64;

use crate::scenario::Scenario;

/// Chooses each node's neighbours: the origin, its site's cache node, up to `lan_peers`
/// random nodes at its own site and up to `wan_peers` random nodes at other sites.
/// Connections are symmetric, so a node also keeps the peers that chose it.
pub(crate) fn build_overlay(scenario: &Scenario, node_site: &[usize], first_of_site: &[usize], origin: usize, rng: &mut SplitMix64) -> Vec<Vec<usize>> {
    let count = node_site.len();
    let origin_site = scenario.origin_site();
    let mut edges: BTreeSet<(usize, usize)> = BTreeSet::new();
    for (node, &site) in node_site.iter().enumerate() {
        let first = first_of_site[site];
        let size = scenario.sites[site].nodes as usize;
        if node != origin {
            edges.insert(key(node, origin));
        }
        let cache = if site == origin_site { first + 1 } else { first };
        if cache < first + size && cache != node {
            edges.insert(key(node, cache));
        }
        let lan = (scenario.overlay.lan_peers as usize).min(size.saturating_sub(1));
        let mut picked = 0;
        let mut attempts = 0;
        while picked < lan && attempts < 4 * lan + 8 {
            attempts += 1;
            let peer = first + rng.below(size.max(1) as u64) as usize;
            if peer != node && edges.insert(key(node, peer)) {
                picked += 1;
            }
        }
        let others = count - size;
        let wan = (scenario.overlay.wan_peers as usize).min(others);
        let mut picked = 0;
        let mut attempts = 0;
        while picked < wan && attempts < 4 * wan + 8 {
            attempts += 1;
            let mut peer = rng.below(others.max(1) as u64) as usize;
            if peer >= first {
                peer += size;
            }
            if edges.insert(key(node, peer)) {
                picked += 1;
            }
        }
    }
    let mut overlay = vec![Vec::new(); count];
    for (a, b) in edges {
        overlay[a].push(b);
        overlay[b].push(a);
    }
    overlay
}

fn key(a: usize, b: usize) -> (usize, usize) {
    (a.min(b), a.max(b))
}
