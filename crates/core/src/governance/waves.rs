//! Rollout plans: which sites may start a patch, and when.
//!
//! A plan travels inside the manifest announcement and is covered by the publisher's
//! signature and by every approval (both sign [`Announcement::digest`], which includes
//! the plan). A plan attached to an approved manifest by anyone else changes the digest,
//! so approvals of the original never count for it.
//!
//! Times are Unix seconds; maintenance windows are minutes of the UTC day.
//!
//! [`Announcement::digest`]: crate::Announcement::digest

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::{check_name, len_u32};
use crate::encoding::CanonicalWriter;
use crate::time::Timestamp;

/// The most waves a plan may have.
pub const MAX_WAVES: usize = 16;
/// The most site names a plan may mention, over all waves and windows; it keeps the
/// gossiped announcement far below the 64 KiB gossip limit.
pub const MAX_PLAN_SITES: usize = 256;
const MINUTES_PER_DAY: u32 = 24 * 60;

/// Ordered waves and per-site maintenance windows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutPlan {
    /// The waves, first to last. A site belongs to the first wave that lists it, or to
    /// the first wave with no site list.
    pub waves: Vec<Wave>,
    /// Times of day at which sites may start. A site with no window may start any time;
    /// a site with several may start within any of them.
    #[serde(default)]
    pub windows: Vec<MaintenanceWindow>,
}

/// One wave of a rollout.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Wave {
    /// The sites of this wave; absent means every site no earlier wave lists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sites: Option<Vec<String>>,
    /// When the wave opens.
    pub start: WaveStart,
}

/// When a wave opens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum WaveStart {
    /// At a fixed time, in Unix seconds.
    At {
        /// The opening time, Unix seconds.
        time: u64,
    },
    /// Once the previous wave is open and has stayed healthy long enough: at least
    /// `min_verified_percent` of its nodes verified and none failed, continuously for
    /// `soak_secs`.
    AfterPrevious {
        /// Percentage of the previous wave's nodes that must hold a verified copy, 1 to 100.
        min_verified_percent: u8,
        /// How long the previous wave must have stayed healthy, in seconds.
        soak_secs: u64,
    },
}

/// A daily window during which a site may start a rollout.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceWindow {
    /// The site.
    pub site: String,
    /// Start, in minutes after 00:00 UTC (0 to 1439).
    pub start_minute: u32,
    /// Length in minutes (1 to 1440); a window may run past midnight.
    pub duration_minutes: u32,
}

/// What a node knows about one wave's progress, from its peers' status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WaveProgress {
    /// Nodes in the wave, from the membership list.
    pub nodes: u32,
    /// Nodes holding a verified copy.
    pub verified: u32,
    /// Nodes that reported a failed verification or install.
    pub failures: u32,
    /// Since when the wave has continuously met its successor's condition; maintained by
    /// [`WaveProgress::observe`].
    pub healthy_since: Option<Timestamp>,
}

impl WaveProgress {
    /// Records new counts at `now`, keeping `healthy_since` when the wave was already
    /// healthy, setting it when the wave just became healthy and clearing it otherwise.
    /// `min_verified_percent` is the next wave's condition.
    pub fn observe(&mut self, nodes: u32, verified: u32, failures: u32, min_verified_percent: u8, now: Timestamp) {
        self.nodes = nodes;
        self.verified = verified;
        self.failures = failures;
        if self.is_healthy(min_verified_percent) {
            self.healthy_since.get_or_insert(now);
        } else {
            self.healthy_since = None;
        }
    }

    fn is_healthy(&self, min_verified_percent: u8) -> bool {
        self.nodes > 0
            && self.failures == 0
            && u64::from(self.verified) * 100 >= u64::from(min_verified_percent) * u64::from(self.nodes)
    }
}

/// Whether a site may start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WaveDecision {
    /// The site's wave is open and the site is inside a maintenance window.
    Open {
        /// The site's wave, from 0.
        wave: usize,
    },
    /// The site's wave is not open yet.
    Waiting {
        /// The site's wave, from 0.
        wave: usize,
        /// The first unmet condition.
        reason: WaitReason,
    },
    /// The wave is open but the site is outside its maintenance windows.
    OutsideWindow {
        /// The site's wave, from 0.
        wave: usize,
        /// When the next window opens.
        next_window: Timestamp,
    },
    /// No wave covers the site: it never starts under this plan.
    NotInPlan,
}

/// Why a wave is not open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WaitReason {
    /// A fixed start time not reached yet.
    StartsAt(Timestamp),
    /// Wave `wave` is not healthy: too few nodes verified, or a failure.
    PreviousUnhealthy {
        /// The wave waited on.
        wave: usize,
    },
    /// Wave `wave` is healthy but not for long enough yet.
    Soaking {
        /// The wave waited on.
        wave: usize,
        /// When the soak ends.
        until: Timestamp,
    },
}

/// A plan that breaks its limits.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// No waves, or too many.
    #[error("a rollout plan has {count} waves: use 1 to {MAX_WAVES}")]
    WaveCount {
        /// Waves found.
        count: usize,
    },
    /// The first wave waits on a previous one.
    #[error("wave 1 waits on a previous wave, but it has none: give it `kind = \"at\"` with a start time")]
    FirstWaveAfterPrevious,
    /// A percentage outside 1 to 100.
    #[error("wave {wave}: min_verified_percent {percent} is outside 1 to 100")]
    Percent {
        /// The wave, from 1.
        wave: usize,
        /// The value found.
        percent: u8,
    },
    /// A site in two waves, or a bad name.
    #[error("invalid rollout plan site: {0}")]
    Site(String),
    /// A window outside the day.
    #[error("maintenance window for {site}: start minute {start} must be below 1440 and duration {duration} between 1 and 1440 minutes")]
    Window {
        /// The site.
        site: String,
        /// The start minute found.
        start: u32,
        /// The duration found.
        duration: u32,
    },
    /// Too many site names.
    #[error("the rollout plan names {count} sites, more than the maximum of {MAX_PLAN_SITES}")]
    TooManySites {
        /// Names found.
        count: usize,
    },
}

impl RolloutPlan {
    /// Checks the plan's limits and that each site is in at most one wave.
    pub fn validate(&self) -> Result<(), PlanError> {
        if self.waves.is_empty() || self.waves.len() > MAX_WAVES {
            return Err(PlanError::WaveCount { count: self.waves.len() });
        }
        let mut named = 0usize;
        let mut seen = BTreeSet::new();
        for (index, wave) in self.waves.iter().enumerate() {
            match wave.start {
                WaveStart::AfterPrevious { .. } if index == 0 => return Err(PlanError::FirstWaveAfterPrevious),
                WaveStart::AfterPrevious { min_verified_percent, .. } if !(1..=100).contains(&min_verified_percent) => {
                    return Err(PlanError::Percent { wave: index + 1, percent: min_verified_percent });
                }
                _ => {}
            }
            for site in wave.sites.iter().flatten() {
                check_name("site", site).map_err(PlanError::Site)?;
                if !seen.insert(site.as_str()) {
                    return Err(PlanError::Site(format!("{site:?} is listed in two waves; keep it in the first")));
                }
                named += 1;
            }
        }
        for window in &self.windows {
            check_name("site", &window.site).map_err(PlanError::Site)?;
            if window.start_minute >= MINUTES_PER_DAY || !(1..=MINUTES_PER_DAY).contains(&window.duration_minutes) {
                return Err(PlanError::Window {
                    site: window.site.clone(),
                    start: window.start_minute,
                    duration: window.duration_minutes,
                });
            }
            named += 1;
        }
        if named > MAX_PLAN_SITES {
            return Err(PlanError::TooManySites { count: named });
        }
        Ok(())
    }

    /// The wave `site` belongs to, from 0.
    pub fn wave_of(&self, site: &str) -> Option<usize> {
        self.waves.iter().position(|wave| match &wave.sites {
            Some(sites) => sites.iter().any(|listed| listed == site),
            None => true,
        })
    }

    /// Appends the canonical encoding the manifest signatures cover.
    pub(crate) fn write_canonical(&self, writer: &mut CanonicalWriter) {
        writer.put_u32(len_u32(self.waves.len()));
        for wave in &self.waves {
            match &wave.sites {
                None => writer.put_u8(0),
                Some(sites) => {
                    writer.put_u8(1);
                    writer.put_u32(len_u32(sites.len()));
                    for site in sites {
                        writer.put_str(site);
                    }
                }
            }
            match wave.start {
                WaveStart::At { time } => {
                    writer.put_u8(1);
                    writer.put_u64(time);
                }
                WaveStart::AfterPrevious { min_verified_percent, soak_secs } => {
                    writer.put_u8(2);
                    writer.put_u8(min_verified_percent);
                    writer.put_u64(soak_secs);
                }
            }
        }
        writer.put_u32(len_u32(self.windows.len()));
        for window in &self.windows {
            writer.put_str(&window.site);
            writer.put_u32(window.start_minute);
            writer.put_u32(window.duration_minutes);
        }
    }
}

/// Whether a node at `site` may start the rollout at `now`.
///
/// `progress[i]` is what the node knows of wave `i`; missing entries count as no
/// progress. A wave that waits on its predecessor opens only once the predecessor is
/// itself open, so a chain of conditions cannot skip a wave whose start time lies ahead.
pub fn wave_open(plan: &RolloutPlan, site: &str, now: Timestamp, progress: &[WaveProgress]) -> WaveDecision {
    let Some(wave) = plan.wave_of(site) else {
        return WaveDecision::NotInPlan;
    };
    if let Err(reason) = opened(plan, wave, now, progress) {
        return WaveDecision::Waiting { wave, reason };
    }
    match next_window(plan, site, now) {
        None => WaveDecision::Open { wave },
        Some(next_window) => WaveDecision::OutsideWindow { wave, next_window },
    }
}

/// `Ok` when wave `index` is open at `now`, else the first unmet condition.
fn opened(plan: &RolloutPlan, index: usize, now: Timestamp, progress: &[WaveProgress]) -> Result<(), WaitReason> {
    match plan.waves[index].start {
        WaveStart::At { time } => {
            let start = Timestamp::from_secs(time);
            if now < start { Err(WaitReason::StartsAt(start)) } else { Ok(()) }
        }
        WaveStart::AfterPrevious { min_verified_percent, soak_secs } => {
            let previous = index.checked_sub(1).ok_or(WaitReason::PreviousUnhealthy { wave: 0 })?;
            opened(plan, previous, now, progress)?;
            let state = progress.get(previous).copied().unwrap_or_default();
            let since = match state.healthy_since {
                Some(since) if state.is_healthy(min_verified_percent) => since,
                _ => return Err(WaitReason::PreviousUnhealthy { wave: previous }),
            };
            let until = since.saturating_add(std::time::Duration::from_secs(soak_secs));
            if now < until { Err(WaitReason::Soaking { wave: previous, until }) } else { Ok(()) }
        }
    }
}

/// `None` when `now` is inside one of `site`'s windows or the site has none; otherwise
/// the start of the next window.
fn next_window(plan: &RolloutPlan, site: &str, now: Timestamp) -> Option<Timestamp> {
    let minute_of_day = ((now.as_secs() / 60) % u64::from(MINUTES_PER_DAY)) as u32;
    let mut wait_minutes: Option<u32> = None;
    for window in plan.windows.iter().filter(|window| window.site == site) {
        let since_start = (minute_of_day + MINUTES_PER_DAY - window.start_minute) % MINUTES_PER_DAY;
        if since_start < window.duration_minutes {
            return None;
        }
        let until_start = MINUTES_PER_DAY - since_start;
        wait_minutes = Some(wait_minutes.map_or(until_start, |best| best.min(until_start)));
    }
    let minutes = wait_minutes?;
    // Round down to the minute, then step to the window's first minute.
    let minute_start = Timestamp::from_secs(now.as_secs() / 60 * 60);
    Some(minute_start.saturating_add(std::time::Duration::from_secs(u64::from(minutes) * 60)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: u64 = 3600;
    const T0: u64 = 1_800_000_000;

    fn plan() -> RolloutPlan {
        RolloutPlan {
            waves: vec![
                Wave { sites: Some(vec!["pilot".into()]), start: WaveStart::At { time: T0 } },
                Wave { sites: None, start: WaveStart::AfterPrevious { min_verified_percent: 95, soak_secs: 2 * HOUR } },
            ],
            windows: vec![],
        }
    }

    fn healthy_from(nodes: u32, verified: u32, failures: u32, since: u64) -> Vec<WaveProgress> {
        vec![WaveProgress { nodes, verified, failures, healthy_since: Some(Timestamp::from_secs(since)) }]
    }

    #[test]
    fn pilot_opens_at_its_start_time() {
        let plan = plan();
        assert_eq!(
            wave_open(&plan, "pilot", Timestamp::from_secs(T0 - 1), &[]),
            WaveDecision::Waiting { wave: 0, reason: WaitReason::StartsAt(Timestamp::from_secs(T0)) }
        );
        assert_eq!(wave_open(&plan, "pilot", Timestamp::from_secs(T0), &[]), WaveDecision::Open { wave: 0 });
    }

    #[test]
    fn second_wave_boundaries() {
        // (nodes, verified, failures, healthy since, now, open?)
        let table: &[(u32, u32, u32, u64, u64, bool)] = &[
            (20, 19, 0, T0, T0 + 2 * HOUR, true),      // exactly 95 %, exactly 2 h
            (20, 19, 0, T0, T0 + 2 * HOUR - 1, false), // one second short
            (20, 18, 0, T0, T0 + 9 * HOUR, false),     // 90 %
            (20, 20, 1, T0, T0 + 9 * HOUR, false),     // a failure
            (0, 0, 0, T0, T0 + 9 * HOUR, false),       // an empty wave proves nothing
            (1, 1, 0, T0, T0 + 2 * HOUR, true),
        ];
        for &(nodes, verified, failures, since, now, open) in table {
            let decision = wave_open(&plan(), "branch-7", Timestamp::from_secs(now), &healthy_from(nodes, verified, failures, since));
            assert_eq!(matches!(decision, WaveDecision::Open { wave: 1 }), open, "{nodes}/{verified}/{failures} at +{}: {decision:?}", now - since);
        }
    }

    #[test]
    fn later_wave_waits_for_earlier_start_time() {
        // Progress claimed for wave 1 cannot open wave 2 before wave 1 itself opens.
        let decision = wave_open(&plan(), "branch-7", Timestamp::from_secs(T0 - 10), &healthy_from(20, 20, 0, 0));
        assert!(matches!(decision, WaveDecision::Waiting { wave: 1, reason: WaitReason::StartsAt(_) }), "{decision:?}");
    }

    #[test]
    fn observe_tracks_health() {
        let mut progress = WaveProgress::default();
        progress.observe(10, 10, 0, 95, Timestamp::from_secs(100));
        progress.observe(10, 10, 0, 95, Timestamp::from_secs(200));
        assert_eq!(progress.healthy_since, Some(Timestamp::from_secs(100)));
        progress.observe(10, 10, 1, 95, Timestamp::from_secs(300));
        assert_eq!(progress.healthy_since, None);
    }

    #[test]
    fn maintenance_window_boundaries() {
        let mut plan = plan();
        // 22:00 to 02:00 UTC, across midnight.
        plan.windows.push(MaintenanceWindow { site: "pilot".into(), start_minute: 22 * 60, duration_minutes: 240 });
        let day = T0 / 86_400 * 86_400 + 86_400;
        let table: &[(u64, Option<u64>)] = &[
            (day + 22 * HOUR, None),
            (day + 22 * HOUR - 60, Some(day + 22 * HOUR)),
            (day + HOUR, None),
            (day + 2 * HOUR - 1, None),
            (day + 2 * HOUR, Some(day + 22 * HOUR)),
        ];
        for &(now, next) in table {
            let decision = wave_open(&plan, "pilot", Timestamp::from_secs(now), &[]);
            let expected = match next {
                None => WaveDecision::Open { wave: 0 },
                Some(next) => WaveDecision::OutsideWindow { wave: 0, next_window: Timestamp::from_secs(next) },
            };
            assert_eq!(decision, expected, "at {}", now - day);
        }
    }

    #[test]
    fn unlisted_site_without_catch_all_is_not_in_plan() {
        let mut plan = plan();
        plan.waves[1].sites = Some(vec!["branch-1".into()]);
        assert_eq!(wave_open(&plan, "branch-9", Timestamp::from_secs(T0 * 2), &[]), WaveDecision::NotInPlan);
    }

    #[test]
    fn invalid_plans_rejected() {
        let mut first_after = plan();
        first_after.waves.remove(0);
        assert!(matches!(first_after.validate(), Err(PlanError::FirstWaveAfterPrevious)));
        let mut twice = plan();
        twice.waves[1].sites = Some(vec!["pilot".into()]);
        assert!(matches!(twice.validate(), Err(PlanError::Site(_))));
        let mut window = plan();
        window.windows.push(MaintenanceWindow { site: "pilot".into(), start_minute: 1440, duration_minutes: 10 });
        assert!(matches!(window.validate(), Err(PlanError::Window { .. })));
        assert!(plan().validate().is_ok());
    }
}
