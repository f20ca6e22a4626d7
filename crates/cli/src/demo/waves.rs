//! `patchmesh demo --waves`: a two-wave rollout and the check that the waves kept order.
//!
//! Wave 1 is one pilot office ([`PILOT`]). Wave 2 is every other office, and it opens once
//! the pilot's signed status report has shown it verified, with no failure, for the soak time. The
//! summary shows when each wave fetched its first chunk and when its last node verified,
//! and the demo fails if any wave 2 node stored a chunk before the last wave 1 node
//! verified.

use patchmesh_core::Timestamp;
use patchmesh_core::governance::{RolloutPlan, Wave, WaveStart};
use serde::Serialize;

use super::report::NodeSummary;

/// The pilot office: the demo's wave 1.
pub(crate) const PILOT: &str = "office-01";

/// Wave 1 = [`PILOT`] from `start` (Unix seconds); wave 2 = every other site once wave 1
/// is 100 % verified with no failure for `soak_secs`.
pub(crate) fn plan(start: u64, soak_secs: u64) -> RolloutPlan {
    RolloutPlan {
        waves: vec![
            Wave { sites: Some(vec![PILOT.to_string()]), start: WaveStart::At { time: start } },
            Wave { sites: None, start: WaveStart::AfterPrevious { min_verified_percent: 100, soak_secs } },
        ],
        windows: Vec::new(),
    }
}

/// One wave in the JSON summary. Times are seconds from the publish.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct WaveSummary {
    /// From 1.
    pub(crate) wave: usize,
    pub(crate) nodes: usize,
    /// The earliest first chunk stored by a node of the wave.
    pub(crate) first_chunk_s: Option<f64>,
    /// When the wave's last node verified; `null` if one did not.
    pub(crate) completion_s: Option<f64>,
}

/// Summarizes the two waves and checks that every wave 2 node stored its first chunk
/// after the last wave 1 node verified. The check is `false` also when a wave did not
/// finish.
pub(crate) fn summarize(nodes: &[NodeSummary]) -> (Vec<WaveSummary>, bool) {
    let mut waves = Vec::new();
    for wave in [1, 2] {
        let members: Vec<&NodeSummary> = nodes.iter().filter(|node| node.wave == Some(wave)).collect();
        let first_chunk_s = members.iter().filter_map(|node| node.first_chunk_s).reduce(f64::min);
        let all_done = !members.is_empty() && members.iter().all(|node| node.completion_s.is_some());
        let completion_s = if all_done { members.iter().filter_map(|node| node.completion_s).reduce(f64::max) } else { None };
        waves.push(WaveSummary { wave, nodes: members.len(), first_chunk_s, completion_s });
    }
    let in_order = match (waves[0].completion_s, waves[1].first_chunk_s) {
        (Some(first_done), Some(second_start)) => second_start >= first_done,
        _ => false,
    };
    (waves, in_order)
}

/// Seconds from `published_at` to `at_us` (microseconds since the Unix epoch).
pub(crate) fn since_publish(published_at: Timestamp, at_us: Option<u64>) -> Option<f64> {
    at_us.map(|at| Timestamp::from_micros(at).saturating_duration_since(published_at).as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(wave: usize, first: f64, done: f64) -> NodeSummary {
        NodeSummary {
            name: format!("office-{wave}"),
            site: String::new(),
            files: Vec::new(),
            bytes_from_origin: 0,
            bytes_from_peers: 0,
            completion_s: Some(done),
            first_chunk_s: Some(first),
            wave: Some(wave),
            verified: true,
        }
    }

    #[test]
    fn wave_two_after_wave_one_is_in_order() {
        let (_, in_order) = summarize(&[node(1, 0.1, 1.0), node(2, 4.0, 5.0)]);
        assert!(in_order);
    }

    #[test]
    fn early_wave_two_chunk_is_out_of_order() {
        let (_, in_order) = summarize(&[node(1, 0.1, 1.0), node(2, 0.9, 5.0)]);
        assert!(!in_order);
    }

    #[test]
    fn plan_is_valid() {
        assert!(plan(1_800_000_000, 3).validate().is_ok());
    }
}
