//! `<data_dir>/hooks.json`: every hook the node queued, started and finished.
//!
//! The file is replaced whole (temp file, fsync, rename, fsync of the directory), so a
//! crash leaves the old or the new list, never a mix. A record is written as running
//! before its program starts, which is what keeps a hook from running twice: after a
//! crash the node finds it running, marks it interrupted and does not start it again.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tracing::warn;

use super::{HookOutcome, HookRecord, HookState};

/// The file name in the data dir.
pub(super) const LEDGER_FILE: &str = "hooks.json";
/// Finished records kept; older ones are dropped so the file stays small. A dropped
/// record cannot make its hook run again: only a new event queues a hook, and the core
/// reports each patch version verified, failed or recalled once per run of the node.
pub(super) const MAX_FINISHED: usize = 1000;

#[derive(Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LedgerFile {
    records: Vec<HookRecord>,
}

/// Reads the ledger in `data_dir`. A missing file is an empty ledger; an unreadable one
/// is moved aside (never deleted) and the node starts with an empty ledger. Records left
/// running by a crash or a stop are finished as interrupted.
pub(super) fn load(data_dir: &Path, now: u64) -> Vec<HookRecord> {
    let path = data_dir.join(LEDGER_FILE);
    let mut records = match std::fs::read_to_string(&path) {
        Ok(text) => match serde_json::from_str::<LedgerFile>(&text) {
            Ok(file) => file.records,
            Err(error) => {
                let aside = data_dir.join(format!("{LEDGER_FILE}.unreadable-{now}"));
                let moved = std::fs::rename(&path, &aside);
                warn!(path = %path.display(), %error, aside = %aside.display(), moved = moved.is_ok(),
                    "hook ledger unreadable; moved aside, hooks queued before the restart will not run");
                Vec::new()
            }
        },
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(error) => {
            warn!(path = %path.display(), %error, "cannot read the hook ledger; starting with an empty one");
            Vec::new()
        }
    };
    for record in &mut records {
        if record.state == HookState::Running {
            record.state = HookState::Finished;
            record.finished_at = Some(now);
            record.outcome = Some(HookOutcome::Interrupted);
        }
    }
    records
}

/// Drops the oldest finished records past [`MAX_FINISHED`].
pub(super) fn trim(records: &mut Vec<HookRecord>) {
    let finished = records.iter().filter(|record| record.state == HookState::Finished).count();
    let mut excess = finished.saturating_sub(MAX_FINISHED);
    records.retain(|record| {
        if excess > 0 && record.state == HookState::Finished {
            excess -= 1;
            return false;
        }
        true
    });
}

/// Replaces the ledger in `data_dir` with `records`, crash-safely.
pub(super) fn save(data_dir: &Path, records: &[HookRecord]) -> std::io::Result<()> {
    let path = data_dir.join(LEDGER_FILE);
    let temp: PathBuf = data_dir.join(format!(".{LEDGER_FILE}.tmp"));
    let text = serde_json::to_vec_pretty(&LedgerFile { records: records.to_vec() }).map_err(std::io::Error::other)?;
    let mut file = File::create(&temp)?;
    file.write_all(&text)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temp, &path)?;
    File::open(data_dir)?.sync_all()
}
