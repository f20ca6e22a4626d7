//! The `[hooks]` table of `node.toml`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::HookKind;

/// How long a hook may run before the node kills it, unless `hooks.timeout` sets
/// another. Ten minutes leaves room for an installer that unpacks a large patch.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);
/// Hooks that may run at once, unless `hooks.max_running` sets another number.
pub const DEFAULT_MAX_RUNNING: usize = 2;
/// The highest `hooks.max_running` accepted: hooks are meant for a few installs a day,
/// not a worker pool.
pub(super) const MAX_RUNNING_LIMIT: u32 = 16;

/// The `[hooks]` table as written.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HooksSpec {
    verified: Option<Vec<String>>,
    recalled: Option<Vec<String>>,
    failed: Option<Vec<String>>,
    timeout: Option<String>,
    max_running: Option<u32>,
}

/// One program to run, with its arguments; never passed through a shell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HookCommand {
    /// The program, absolute (a relative path in the config is resolved against the
    /// config file's directory).
    pub program: PathBuf,
    /// The arguments after the program.
    pub args: Vec<String>,
}

/// Validated hook settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HookSettings {
    /// Runs once a patch version is assembled and verified. Default: none.
    pub verified: Option<HookCommand>,
    /// Runs once a signed recall removed a version this node had assembled. Default: none.
    pub recalled: Option<HookCommand>,
    /// Runs once assembling or verifying a patch version failed. Default: none.
    pub failed: Option<HookCommand>,
    /// How long a hook may run before it is killed. Default: [`DEFAULT_TIMEOUT`].
    pub timeout: Duration,
    /// Hooks running at once; the others wait in order. Default: [`DEFAULT_MAX_RUNNING`].
    pub max_running: usize,
}

impl Default for HookSettings {
    fn default() -> Self {
        HookSettings { verified: None, recalled: None, failed: None, timeout: DEFAULT_TIMEOUT, max_running: DEFAULT_MAX_RUNNING }
    }
}

impl HookSettings {
    /// Returns the command for `kind`, if one is configured.
    pub fn command(&self, kind: HookKind) -> Option<&HookCommand> {
        match kind {
            HookKind::Verified => self.verified.as_ref(),
            HookKind::Recalled => self.recalled.as_ref(),
            HookKind::Failed => self.failed.as_ref(),
        }
    }
}

/// A rejected `[hooks]` value: the key, the value and what to write instead.
pub(crate) type SpecError = (&'static str, String, String);

/// Validates `spec`, resolving relative programs against `base`, the config file's
/// directory. Every program must exist and be executable now, so a typo shows at start
/// (or at reload) rather than when the first patch arrives.
pub(crate) fn resolve(spec: &HooksSpec, base: &Path, parse_duration: fn(&str) -> Option<Duration>) -> Result<HookSettings, SpecError> {
    let timeout = match &spec.timeout {
        None => DEFAULT_TIMEOUT,
        Some(text) => match parse_duration(text) {
            Some(duration) if !duration.is_zero() => duration,
            _ => return Err(("hooks.timeout", text.clone(), "use a duration above zero such as \"30s\" or \"10m\"".into())),
        },
    };
    let max_running = match spec.max_running {
        None => DEFAULT_MAX_RUNNING,
        Some(count @ 1..=MAX_RUNNING_LIMIT) => count as usize,
        Some(count) => return Err(("hooks.max_running", count.to_string(), format!("use 1 to {MAX_RUNNING_LIMIT}"))),
    };
    Ok(HookSettings {
        verified: command("hooks.verified", spec.verified.as_deref(), base)?,
        recalled: command("hooks.recalled", spec.recalled.as_deref(), base)?,
        failed: command("hooks.failed", spec.failed.as_deref(), base)?,
        timeout,
        max_running,
    })
}

fn command(key: &'static str, argv: Option<&[String]>, base: &Path) -> Result<Option<HookCommand>, SpecError> {
    let Some(argv) = argv else {
        return Ok(None);
    };
    let Some((program, args)) = argv.split_first().filter(|(program, _)| !program.is_empty()) else {
        return Err((key, format!("{argv:?}"), "give the program and its arguments, e.g. [\"/usr/local/bin/install-patch\", \"--quiet\"]".into()));
    };
    let resolved = base.join(program);
    let fix = |problem: String| (key, program.clone(), problem);
    let metadata = std::fs::metadata(&resolved).map_err(|error| {
        fix(format!(
            "cannot use {} ({error}); give an absolute path, or a path relative to {} (PATH is not searched)",
            resolved.display(),
            base.display()
        ))
    })?;
    if !metadata.is_file() {
        return Err(fix(format!("{} is not a file; name the program itself", resolved.display())));
    }
    if metadata.permissions().mode() & 0o111 == 0 {
        return Err(fix(format!("{} is not executable; run chmod +x on it", resolved.display())));
    }
    Ok(Some(HookCommand { program: resolved, args: args.to_vec() }))
}
