//! `patchmesh approve`: add an approval to a manifest's approvals file, or check the
//! approval rule.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use patchmesh_core::governance::{Approval, ApprovalFile, ApprovalStatus, TrustedPolicy, evaluate_approvals};
use patchmesh_core::{Manifest, Timestamp};
use patchmesh_node::control::ControlRequest;

use crate::keygen::read_signing_key;

/// Exit code of `approve --check` when approvals are still missing.
pub(crate) const EXIT_MISSING: u8 = 2;

#[derive(clap::Args)]
pub(crate) struct ApproveArgs {
    /// The manifest file (JSON).
    manifest: PathBuf,
    /// The approver's secret key file (plain or passphrase-encrypted).
    #[arg(long, required_unless_present = "check", conflicts_with = "check")]
    key: Option<PathBuf>,
    /// The approvals file to add to or check (default: the manifest's name with
    /// `.approvals.json` in place of `.manifest.json` or `.json`).
    #[arg(long)]
    approvals: Option<PathBuf>,
    /// Check the approval rule of `--trust` instead of approving. Exit status 0 when it
    /// is met, 2 when approvals are missing, 1 when the manifest is rejected.
    #[arg(long, requires = "trust")]
    check: bool,
    /// The format 2 trust file.
    #[arg(long)]
    trust: Option<PathBuf>,
    #[command(flatten)]
    submit: crate::submit::SubmitArgs,
}

pub(crate) fn run(args: ApproveArgs) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&args.manifest).with_context(|| format!("cannot read {}", args.manifest.display()))?;
    let manifest = Manifest::from_json(&text).with_context(|| format!("manifest {}", args.manifest.display()))?;
    let approvals_path = args.approvals.clone().unwrap_or_else(|| default_approvals_path(&args.manifest));
    let mut file = read_approvals(&approvals_path)?;

    if let Some(trust) = args.trust.as_deref().filter(|_| args.check) {
        return check(&manifest, &file, trust);
    }
    let Some(key_path) = args.key.as_deref() else {
        anyhow::bail!("give --key KEY to approve, or --check --trust TRUST to check");
    };
    let key = read_signing_key(key_path)?;
    let approval = Approval::sign(manifest.announcement(), &key);
    println!("approved {} (digest {}) with {}", manifest.key(), approval.digest, key.public().short_id());
    file.add(approval);
    std::fs::write(&approvals_path, file.to_json()).with_context(|| format!("cannot write {}", approvals_path.display()))?;
    println!("{} in {} (by {})", crate::text::count(file.approvals.len(), "approval"), approvals_path.display(), file.approvers());
    let request = ControlRequest::SubmitApprovals { approvals: file.approvals.clone() };
    args.submit.send(&request, &crate::text::count(file.approvals.len(), "approval"))?;
    Ok(ExitCode::SUCCESS)
}

fn check(manifest: &Manifest, file: &ApprovalFile, trust: &Path) -> anyhow::Result<ExitCode> {
    let now = Timestamp::now_system();
    let policy = crate::trust::read_trusted(trust, now)?;
    report(manifest, file, &policy, now)
}

/// Prints whether `file` meets the approval rule of `policy` for `manifest`: exit code 0
/// when it does, 2 when approvals are missing, an error when the manifest is rejected.
pub(crate) fn report(manifest: &Manifest, file: &ApprovalFile, policy: &TrustedPolicy, now: Timestamp) -> anyhow::Result<ExitCode> {
    match evaluate_approvals(policy, manifest.announcement(), &file.approvals, now) {
        ApprovalStatus::Met { approvers } => {
            let names: Vec<String> = approvers
                .iter()
                .flat_map(|(role, keys)| keys.iter().map(move |key| (role, key)))
                .map(|(role, key)| format!("{role} {}", policy.policy().name_of(key).unwrap_or("?")))
                .collect();
            println!("manifest {}: approval rule met ({})", manifest.key(), names.join(", "));
            Ok(ExitCode::SUCCESS)
        }
        ApprovalStatus::Missing { shortfall, ignored } => {
            let needs: Vec<String> = shortfall.iter().map(ToString::to_string).collect();
            println!("manifest {}: approval rule not met; needs {}", manifest.key(), needs.join(" and "));
            for reason in ignored {
                println!("  not counted: {reason}");
            }
            Ok(ExitCode::from(EXIT_MISSING))
        }
        ApprovalStatus::Rejected(reason) => Err(anyhow::Error::from(reason).context(format!("manifest {} cannot roll out", manifest.key()))),
    }
}

/// `X.manifest.json` → `X.approvals.json`, `X.json` → `X.approvals.json`, else `X.approvals.json`.
pub(crate) fn default_approvals_path(manifest: &Path) -> PathBuf {
    let name = manifest.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
    let stem = name.strip_suffix(".manifest.json").or_else(|| name.strip_suffix(".json")).unwrap_or(&name);
    manifest.with_file_name(format!("{stem}.approvals.json"))
}

/// Reads an approvals file; a missing file is an empty one.
pub(crate) fn read_approvals(path: &Path) -> anyhow::Result<ApprovalFile> {
    match std::fs::read_to_string(path) {
        Ok(text) => ApprovalFile::from_json(&text).with_context(|| format!("approvals file {}", path.display())),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(ApprovalFile::new()),
        Err(error) => Err(error).with_context(|| format!("cannot read {}", path.display())),
    }
}
