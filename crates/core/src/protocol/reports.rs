//! Signed status reports inside the node: issuing its own, taking and flooding others'.
//!
//! A node with an identity key ([`NodeConfig::identity`]) signs a report of its patch
//! versions and sends it to every peer when something changed. It sends one within
//! [`MIN_REPORT_INTERVAL`] when a patch version changes state, within
//! [`PROGRESS_REPORT_INTERVAL`] when only chunk counts moved, and at least every
//! [`REPORT_REFRESH`] so late joiners and restarted nodes catch up.
//!
//! A received report is kept if it verifies ([`SignedStatusReport::verify`]), passes the
//! membership list when one is in force, and is newer than the one held for its node;
//! it is then forwarded to every other peer. Each node's report therefore crosses each
//! link about once per issue, and a report seen before stops there. The node keeps one
//! report per node, at most [`MAX_MEMBERS`].
//!
//! [`NodeConfig::identity`]: super::NodeConfig::identity

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use tracing::{debug, warn};

use super::{Node, TransferState};
use crate::governance::{
    MAX_MEMBERS, MAX_REPORT_PATCHES, PatchReport, ReportState, RolloutState, SignedStatusReport, SourceBytes, StatusReport, StatusReportError,
    truncate_error,
};
use crate::ids::{PatchKey, PeerId};
use crate::time::Timestamp;
use crate::wire::Message;

/// The shortest gap between two of a node's own reports.
pub const MIN_REPORT_INTERVAL: Duration = Duration::from_secs(1);
/// The shortest gap between reports that only move chunk counts.
pub const PROGRESS_REPORT_INTERVAL: Duration = Duration::from_secs(5);
/// The maximum time between two of a node's own reports.
pub const REPORT_REFRESH: Duration = Duration::from_secs(60);

/// The reports a node stores, and the state of its own.
#[derive(Debug, Default)]
pub(crate) struct Reports {
    /// The latest verified report per node peer id, this node's own included.
    pub(crate) latest: BTreeMap<String, HeldReport>,
    /// Set when `latest` changed; wave gates are evaluated again and clear it.
    pub(crate) changed: bool,
    /// The sequence of this node's last report.
    sequence: u64,
    /// When this node last sent its own report.
    last_sent: Option<Timestamp>,
    /// The patch list of that report, to tell whether anything changed since.
    last_content: Vec<PatchReport>,
    /// When to look at the own report again; always later than the last input.
    next_check: Option<Timestamp>,
}

/// A verified report and when it arrived.
#[derive(Debug)]
pub(crate) struct HeldReport {
    signed: SignedStatusReport,
    received: Timestamp,
}

impl HeldReport {
    pub(crate) fn report(&self) -> &StatusReport {
        &self.signed.report
    }

    pub(crate) fn state_of(&self, patch: &PatchKey) -> Option<ReportState> {
        self.signed.report.patches.iter().find(|entry| &entry.patch == patch).map(|entry| entry.state)
    }
}

/// One site's totals for one patch version, from the latest reports.
#[derive(Clone, Debug, Serialize)]
pub struct SiteRollout {
    /// The site.
    pub site: String,
    /// The patch series.
    pub patch_id: String,
    /// The version.
    pub version: u64,
    /// Nodes at the site that reported this version.
    pub nodes: u32,
    /// Of those, verified.
    pub verified: u32,
    /// Of those, failed.
    pub failed: u32,
    /// Of those, still waiting for their wave.
    pub waiting_for_wave: u32,
    /// Of those, holding none of it after a recall.
    pub recalled: u32,
    /// Chunk payload bytes the site's nodes received, by source.
    pub bytes: SourceBytes,
    /// Seconds since the newest of these reports arrived.
    pub newest_report_age_s: f64,
}

impl Node {
    /// Takes a signed status report from a peer (`from`) or a local caller. Returns
    /// whether it was new; a new report is forwarded to every other peer.
    ///
    /// A report whose key or signature is wrong, or that is malformed, is a strike
    /// against the peer that sent it, because honest peers forward only what verified. A report
    /// refused by the membership list is dropped quietly, since a peer holding another
    /// list version may forward it in good faith.
    pub fn handle_status(&mut self, now: Timestamp, from: Option<&PeerId>, signed: SignedStatusReport) -> Result<bool, StatusReportError> {
        let result = self.take_status(now, from, signed);
        self.after_input(now);
        result
    }

    /// Returns the latest report of every node, this node's own included.
    pub fn status_reports(&self) -> impl Iterator<Item = &SignedStatusReport> {
        self.reports.latest.values().map(|held| &held.signed)
    }

    pub(super) fn take_status(&mut self, now: Timestamp, from: Option<&PeerId>, signed: SignedStatusReport) -> Result<bool, StatusReportError> {
        if let Err(error) = signed.verify(now) {
            match (&error, from) {
                (StatusReportError::Malformed { .. } | StatusReportError::KeyMismatch { .. } | StatusReportError::BadSignature { .. }, Some(peer)) => {
                    self.strike(peer, error.to_string());
                }
                _ => warn!(peer = ?from.map(PeerId::as_str), %error, "status report rejected"),
            }
            return Err(error);
        }
        let report = &signed.report;
        if let Some(list) = self.membership() {
            let version = list.version();
            match list.site_of(&report.node) {
                None => {
                    let error = StatusReportError::NotMember { node: report.node.clone(), version };
                    warn!(peer = ?from.map(PeerId::as_str), %error, "status report rejected");
                    return Err(error);
                }
                Some(listed) if listed != report.site => {
                    let error = StatusReportError::WrongSite {
                        node: report.node.clone(),
                        claimed: report.site.clone(),
                        listed: listed.to_string(),
                        version,
                    };
                    warn!(peer = ?from.map(PeerId::as_str), %error, "status report rejected");
                    return Err(error);
                }
                Some(_) => {}
            }
        }
        match self.reports.latest.get(&report.node) {
            Some(held) if held.signed.report.sequence >= report.sequence => return Ok(false),
            None if self.reports.latest.len() >= MAX_MEMBERS => {
                return Err(StatusReportError::TooManyNodes { node: report.node.clone(), count: self.reports.latest.len() });
            }
            _ => {}
        }
        debug!(node = %report.node, site = %report.site, sequence = report.sequence, "status report taken");
        let author = PeerId::new(&report.node);
        let peers: Vec<PeerId> = self.peers.keys().filter(|peer| Some(*peer) != from && **peer != author).cloned().collect();
        for peer in peers {
            self.send(&peer, Message::Status(signed.clone()));
        }
        self.reports.latest.insert(report.node.clone(), HeldReport { signed, received: now });
        self.reports.changed = true;
        Ok(true)
    }

    /// Sends every held report to a peer that just connected.
    pub(super) fn share_reports(&mut self, peer: &PeerId) {
        let messages: Vec<Message> = self.reports.latest.values().map(|held| Message::Status(held.signed.clone())).collect();
        for message in messages {
            self.send(peer, message);
        }
    }

    /// When the node's own report must be looked at again, if it has an identity. Always
    /// after the last input, so a driver that wakes the node then makes progress.
    pub(super) fn report_timeout(&self) -> Option<Timestamp> {
        self.config.identity.as_ref()?;
        self.reports.next_check
    }

    /// Issues and floods the node's own report if it changed and the rate limit allows
    /// it, or if the refresh is due. Either way it sets when to look again.
    pub(super) fn maybe_send_report(&mut self, now: Timestamp) {
        let Some(identity) = self.config.identity.clone() else {
            return;
        };

        if let Some(sent) = self.reports.last_sent
            && now < sent.saturating_add(MIN_REPORT_INTERVAL)
        {
            self.reports.next_check = Some(sent.saturating_add(MIN_REPORT_INTERVAL));
            return;
        }
        let content = self.own_patch_reports();
        let due_at = match self.reports.last_sent {
            None => now,
            Some(sent) => {
                let old = &self.reports.last_content;
                let states_changed = content.len() != old.len()
                    || content.iter().zip(old).any(|(new, old)| new.patch != old.patch || new.state != old.state);
                let wait = if states_changed {
                    MIN_REPORT_INTERVAL
                } else if &content != old {
                    PROGRESS_REPORT_INTERVAL
                } else {
                    REPORT_REFRESH
                };
                sent.saturating_add(wait)
            }
        };
        if now < due_at {
            self.reports.next_check = Some(due_at);
            return;
        }

        // Microseconds of the clock keep a restarted node's sequence above its old ones.
        self.reports.sequence = (self.reports.sequence + 1).max(now.as_micros());
        let key = identity.public();
        let report = StatusReport {
            node: key.peer_id(),
            key,
            site: self.config.site.clone(),
            role: self.config.role,
            sequence: self.reports.sequence,
            issued: now.as_secs(),
            patches: content.clone(),
        };
        self.reports.last_sent = Some(now);
        self.reports.last_content = content;
        self.reports.next_check = Some(now.saturating_add(MIN_REPORT_INTERVAL));

        let signed = report.sign(&identity);
        debug_assert!(signed.verify(now).is_ok(), "own status report does not verify");
        let _ = self.take_status(now, None, signed);
    }

    /// This node's patch versions as its report gives them, at most
    /// [`MAX_REPORT_PATCHES`], newest versions kept.
    fn own_patch_reports(&self) -> Vec<PatchReport> {
        let mut entries: Vec<PatchReport> = self
            .transfers
            .iter()
            .map(|(patch, transfer)| {
                let approved = self.governance.as_ref().is_none_or(|governance| governance.is_approved(patch));
                let state = match self.rollout_state(patch) {
                    RolloutState::Recalled { .. } => ReportState::Recalled,
                    RolloutState::Paused { .. } => ReportState::Paused,
                    RolloutState::Active if !approved => ReportState::WaitingApproval,
                    RolloutState::Active if !self.wave_allows(patch) => ReportState::WaitingForWave,
                    RolloutState::Active if transfer.hook_failure.is_some() => ReportState::Failed,
                    RolloutState::Active if transfer.state == TransferState::Complete => ReportState::Verified,
                    RolloutState::Active if transfer.last_error.is_some() => ReportState::Failed,
                    RolloutState::Active => ReportState::Fetching,
                };
                let stats = transfer.stats;
                PatchReport {
                    patch: patch.clone(),
                    state,
                    chunks_verified: transfer.have.count(),
                    chunk_count: transfer.chunk_count(),
                    bytes: SourceBytes {
                        origin: stats.bytes_from_origin,
                        same_site: stats.bytes_from_same_site,
                        other_sites: stats.bytes_from_peers.saturating_sub(stats.bytes_from_same_site),
                    },
                    error: transfer.hook_failure.as_deref().or(transfer.last_error.as_deref()).map(truncate_error),
                }
            })
            .collect();
        // A recall removes the transfer, but operators need to see that every node
        // dropped the version, so recalled versions stay in the report.
        for patch in self.recalled() {
            if !self.transfers.contains_key(&patch) {
                entries.push(PatchReport {
                    patch,
                    state: ReportState::Recalled,
                    chunks_verified: 0,
                    chunk_count: 0,
                    bytes: SourceBytes::default(),
                    error: None,
                });
            }
        }
        entries.sort_by(|a, b| a.patch.cmp(&b.patch));
        if entries.len() > MAX_REPORT_PATCHES {
            entries.sort_by_key(|entry| std::cmp::Reverse(entry.patch.version));
            entries.truncate(MAX_REPORT_PATCHES);
            entries.sort_by(|a, b| a.patch.cmp(&b.patch));
        }
        entries
    }

    /// Per site and patch version, the totals of the latest reports.
    pub(super) fn mesh_view(&self, now: Timestamp) -> Vec<SiteRollout> {
        let mut view: BTreeMap<(String, PatchKey), (SiteRollout, Timestamp)> = BTreeMap::new();
        for held in self.reports.latest.values() {
            let report = held.report();
            for entry in &report.patches {
                let (row, newest) = view.entry((report.site.clone(), entry.patch.clone())).or_insert_with(|| {
                    let row = SiteRollout {
                        site: report.site.clone(),
                        patch_id: entry.patch.id.to_string(),
                        version: entry.patch.version,
                        nodes: 0,
                        verified: 0,
                        failed: 0,
                        waiting_for_wave: 0,
                        recalled: 0,
                        bytes: SourceBytes::default(),
                        newest_report_age_s: 0.0,
                    };
                    (row, held.received)
                });
                row.nodes += 1;
                row.verified += u32::from(entry.state == ReportState::Verified);
                row.failed += u32::from(entry.state == ReportState::Failed);
                row.waiting_for_wave += u32::from(entry.state == ReportState::WaitingForWave);
                row.recalled += u32::from(entry.state == ReportState::Recalled);
                row.bytes.origin += entry.bytes.origin;
                row.bytes.same_site += entry.bytes.same_site;
                row.bytes.other_sites += entry.bytes.other_sites;
                *newest = (*newest).max(held.received);
            }
        }
        view.into_values()
            .map(|(mut row, newest)| {
                row.newest_report_age_s = now.saturating_duration_since(newest).as_secs_f64();
                row
            })
            .collect()
    }
}
