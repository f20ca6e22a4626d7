//! Rollout waves inside the node: an office node fetches a planned patch only once its
//! site's wave is open.
//!
//! A manifest whose announcement carries a [`RolloutPlan`] gets a [`WaveGate`] on every
//! office node. The node still stores the announcement, and serves what it holds, but
//! requests neither body nor chunks until [`wave_open`] returns
//! [`WaveDecision::Open`] for its site. The origin is never gated.
//!
//! The progress of wave `i` comes from the latest signed status reports: the wave's nodes
//! are the members of the membership list at its sites (without a list, the office nodes
//! that reported from those sites); a node counts as verified or failed when its report
//! gives that state for this patch version. The gate is evaluated again when reports change and
//! when a timer it set falls due (a fixed start time, the end of a soak, a maintenance
//! window opening).
//!
//! NOTE: without a membership list a wave's size is whatever reported so far, so a pilot
//! node that has not sent its first report yet is not waited for. Install a list to
//! count every listed node of a wave.
//!
//! Once open, a gate stays open: the plan decides when a site may *start*, and a recall
//! or pause order is the way to stop a wave part way.

use std::collections::BTreeMap;

use serde::Serialize;
use tracing::debug;

use super::{Event, Node};
use crate::governance::{ReportState, RolloutPlan, WaitReason, WaveDecision, WaveProgress, WaveStart, wave_open};
use crate::ids::PatchKey;
use crate::manifest::Announcement;
use crate::time::Timestamp;
use crate::wire::Role;

/// The wave state of one planned patch version on an office node.
#[derive(Debug, Default)]
pub(crate) struct WaveGate {
    /// The last decision, so a waiting reason is announced once, not on every input.
    decision: Option<WaveDecision>,
    /// When the node's wave opened; set once, never cleared.
    opened_at: Option<Timestamp>,
    /// This node's view of each wave's progress, maintained by [`WaveProgress::observe`].
    progress: Vec<WaveProgress>,
    /// When the decision may change without a new report.
    next_check: Option<Timestamp>,
}

impl WaveGate {
    pub(crate) fn is_open(&self) -> bool {
        self.opened_at.is_some()
    }
}

/// A patch version's wave state, for status output.
#[derive(Clone, Debug, Serialize)]
pub struct WaveStatus {
    /// The node's wave, from 1; `None` when its site is in no wave.
    pub wave: Option<usize>,
    /// `open`, `waiting`, `outside-window` or `not-in-plan`.
    pub state: &'static str,
    /// The reason the wave is not open, in words.
    pub reason: Option<String>,
    /// When the wave opened on this node, in microseconds since the Unix epoch.
    pub opened_at_us: Option<u64>,
    /// Per wave, from the first: nodes, verified, failed, as this node counts them.
    pub progress: Vec<WaveCount>,
}

/// One wave's counts.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct WaveCount {
    /// Nodes in the wave.
    pub nodes: u32,
    /// Nodes whose report gives the state verified.
    pub verified: u32,
    /// Nodes whose report gives the state failed.
    pub failed: u32,
}

impl Node {
    /// Returns a gate for a new transfer of `announcement`. Only office nodes are gated,
    /// and only for a manifest with a plan.
    pub(super) fn new_gate(&self, announcement: &Announcement) -> Option<WaveGate> {
        (announcement.plan.is_some() && self.config.role == Role::Office).then(WaveGate::default)
    }

    /// Returns whether waves let the node fetch `patch`.
    pub(super) fn wave_allows(&self, patch: &PatchKey) -> bool {
        self.transfers.get(patch).and_then(|transfer| transfer.gate.as_ref()).is_none_or(WaveGate::is_open)
    }

    /// The earliest instant a closed gate must be evaluated again.
    pub(super) fn wave_timeout(&self) -> Option<Timestamp> {
        self.transfers
            .values()
            .filter_map(|transfer| transfer.gate.as_ref())
            .filter(|gate| !gate.is_open())
            .filter_map(|gate| gate.next_check)
            .min()
    }

    /// Evaluates every closed gate when reports changed, a gate is new, or a gate's timer
    /// is due. Runs before any fetch is scheduled, so an opened wave fetches at once.
    pub(super) fn refresh_waves(&mut self, now: Timestamp) {
        let changed = std::mem::take(&mut self.reports.changed);
        let due: Vec<PatchKey> = self
            .transfers
            .iter()
            .filter_map(|(patch, transfer)| Some((patch, transfer.gate.as_ref()?)))
            .filter(|(_, gate)| !gate.is_open())
            .filter(|(_, gate)| changed || gate.decision.is_none() || gate.next_check.is_some_and(|at| at <= now))
            .map(|(patch, _)| patch.clone())
            .collect();
        for patch in due {
            self.evaluate_gate(now, &patch);
        }
    }

    fn evaluate_gate(&mut self, now: Timestamp, patch: &PatchKey) {
        let Some(plan) = self.transfers.get(patch).and_then(|transfer| transfer.announcement.plan.clone()) else {
            return;
        };
        let counts = self.wave_counts(&plan, patch);
        let site = self.config.site.clone();
        let Some(gate) = self.transfers.get_mut(patch).and_then(|transfer| transfer.gate.as_mut()) else {
            return;
        };
        gate.progress.resize(plan.waves.len(), WaveProgress::default());
        for (index, count) in counts.iter().enumerate() {
            // A wave's health is judged by the condition of the wave after it.
            let percent = match plan.waves.get(index + 1).map(|wave| wave.start) {
                Some(WaveStart::AfterPrevious { min_verified_percent, .. }) => min_verified_percent,
                _ => 100,
            };
            gate.progress[index].observe(count.nodes, count.verified, count.failed, percent, now);
        }
        let decision = wave_open(&plan, &site, now, &gate.progress);
        gate.next_check = match &decision {
            WaveDecision::Waiting { reason: WaitReason::StartsAt(at), .. } => Some(*at),
            WaveDecision::Waiting { reason: WaitReason::Soaking { until, .. }, .. } => Some(*until),
            WaveDecision::OutsideWindow { next_window, .. } => Some(*next_window),
            WaveDecision::Waiting { reason: WaitReason::PreviousUnhealthy { .. }, .. } | WaveDecision::NotInPlan | WaveDecision::Open { .. } => None,
        };
        if gate.decision.as_ref() == Some(&decision) {
            return;
        }
        gate.decision = Some(decision.clone());
        match decision {
            WaveDecision::Open { wave } => {
                gate.opened_at = Some(now);
                debug!(%patch, wave = wave + 1, "rollout wave open");
                self.events.push_back(Event::WaveOpened { patch: patch.clone(), wave: wave + 1 });
            }
            other => {
                let reason = describe(&other, &site, &counts);
                let wave = match other {
                    WaveDecision::Waiting { wave, .. } | WaveDecision::OutsideWindow { wave, .. } => Some(wave + 1),
                    _ => None,
                };
                debug!(%patch, ?wave, %reason, "waiting for the rollout wave");
                self.events.push_back(Event::WaveWaiting { patch: patch.clone(), wave, reason });
            }
        }
    }

    /// Counts each wave's nodes, verified and failed for `patch` from the latest reports.
    fn wave_counts(&self, plan: &RolloutPlan, patch: &PatchKey) -> Vec<WaveCount> {
        let mut counts = vec![WaveCount { nodes: 0, verified: 0, failed: 0 }; plan.waves.len()];
        let table = site_waves(plan);
        let wave_for = |site: &str| wave_index(&table, site);
        let mut add = |wave: usize, state: Option<ReportState>| {
            let count = &mut counts[wave];
            count.nodes += 1;
            match state {
                Some(ReportState::Verified) => count.verified += 1,
                Some(ReportState::Failed) => count.failed += 1,
                _ => {}
            }
        };
        match self.membership() {
            Some(list) => {
                for (peer, site) in &list.signed().membership.members {
                    let Some(wave) = wave_for(site) else { continue };
                    let state = self.reports.latest.get(peer).filter(|held| &held.report().site == site).and_then(|held| held.state_of(patch));
                    add(wave, state);
                }
            }
            None => {
                for held in self.reports.latest.values().filter(|held| held.report().role == Role::Office) {
                    let Some(wave) = wave_for(&held.report().site) else { continue };
                    add(wave, held.state_of(patch));
                }
            }
        }
        counts
    }

    /// Returns the wave state of `patch` on this node, for status, or `None` when nothing
    /// gates it.
    pub fn wave_status(&self, patch: &PatchKey) -> Option<WaveStatus> {
        let transfer = self.transfers.get(patch)?;
        let gate = transfer.gate.as_ref()?;
        let plan = transfer.announcement.plan.as_ref()?;
        let counts = self.wave_counts(plan, patch);
        let (wave, state, reason) = match &gate.decision {
            None => (plan.wave_of(&self.config.site).map(|wave| wave + 1), "waiting", None),
            Some(WaveDecision::Open { wave }) => (Some(wave + 1), "open", None),
            Some(decision @ WaveDecision::Waiting { wave, .. }) => (Some(wave + 1), "waiting", Some(describe(decision, &self.config.site, &counts))),
            Some(decision @ WaveDecision::OutsideWindow { wave, .. }) => {
                (Some(wave + 1), "outside-window", Some(describe(decision, &self.config.site, &counts)))
            }
            Some(decision @ WaveDecision::NotInPlan) => (None, "not-in-plan", Some(describe(decision, &self.config.site, &counts))),
        };
        // A gate stays open once opened, whatever an earlier evaluation decided.
        let state = if gate.is_open() { "open" } else { state };
        Some(WaveStatus { wave, state, reason, opened_at_us: gate.opened_at.map(Timestamp::as_micros), progress: counts })
    }
}

/// Maps each listed site to its first wave and finds the first wave with no site list.
/// The table spares a scan of the plan for each of thousands of reports.
fn site_waves(plan: &RolloutPlan) -> (BTreeMap<&str, usize>, Option<usize>) {
    let mut listed = BTreeMap::new();
    for (index, wave) in plan.waves.iter().enumerate() {
        for site in wave.sites.iter().flatten() {
            listed.entry(site.as_str()).or_insert(index);
        }
    }
    (listed, plan.waves.iter().position(|wave| wave.sites.is_none()))
}

/// Looks `site` up in a [`site_waves`] table, giving what `RolloutPlan::wave_of` gives:
/// the first wave that lists the site or lists no sites.
fn wave_index(table: &(BTreeMap<&str, usize>, Option<usize>), site: &str) -> Option<usize> {
    let (listed, catch_all) = table;
    match (listed.get(site).copied(), *catch_all) {
        (Some(named), Some(any)) => Some(named.min(any)),
        (named, any) => named.or(any),
    }
}

/// Says in words why a wave is not open.
fn describe(decision: &WaveDecision, site: &str, counts: &[WaveCount]) -> String {
    match decision {
        WaveDecision::Open { wave } => format!("wave {} is open", wave + 1),
        WaveDecision::Waiting { wave, reason: WaitReason::StartsAt(at) } => {
            format!("wave {} starts at {} (Unix seconds)", wave + 1, at.as_secs())
        }
        WaveDecision::Waiting { wave, reason: WaitReason::PreviousUnhealthy { wave: previous } } => {
            let count = counts.get(*previous).copied().unwrap_or(WaveCount { nodes: 0, verified: 0, failed: 0 });
            format!(
                "wave {} waits for wave {}: {} of {} nodes verified, {} failed",
                wave + 1,
                previous + 1,
                count.verified,
                count.nodes,
                count.failed
            )
        }
        WaveDecision::Waiting { wave, reason: WaitReason::Soaking { wave: previous, until } } => {
            format!("wave {} waits while wave {} soaks until {} (Unix seconds)", wave + 1, previous + 1, until.as_secs())
        }
        WaveDecision::OutsideWindow { wave, next_window } => {
            format!("wave {} is open but site {site} is outside its maintenance window until {} (Unix seconds)", wave + 1, next_window.as_secs())
        }
        WaveDecision::NotInPlan => format!("site {site} is in no wave of the rollout plan, so it never starts this version"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::governance::Wave;

    fn wave(sites: Option<&[&str]>) -> Wave {
        Wave {
            sites: sites.map(|sites| sites.iter().map(|site| site.to_string()).collect()),
            start: WaveStart::AfterPrevious { min_verified_percent: 100, soak_secs: 0 },
        }
    }

    #[test]
    fn lookup_table_agrees_with_plan() {
        // A catch-all wave before a wave that lists a site takes that site, as `wave_of` decides.
        let plans = [
            vec![wave(Some(&["a"])), wave(None)],
            vec![wave(None), wave(Some(&["a"]))],
            vec![wave(Some(&["a"])), wave(Some(&["b"]))],
            vec![wave(Some(&["b"])), wave(None), wave(Some(&["a"]))],
        ];
        for waves in plans {
            let plan = RolloutPlan { waves, windows: Vec::new() };
            let table = site_waves(&plan);
            for site in ["a", "b", "c"] {
                assert_eq!(wave_index(&table, site), plan.wave_of(site), "site {site} in {plan:?}");
            }
        }
    }
}
