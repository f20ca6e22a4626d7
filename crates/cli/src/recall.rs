//! `patchmesh recall`, `pause` and `resume`: sign a rollout control order.
//!
//! The first signer creates the order file; later signers run the same command on the
//! same `--out` file to add their signatures, until the trust file's rule is met.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use patchmesh_core::governance::{ControlAction, RolloutControl, verify_control};
use patchmesh_core::{PatchId, PatchKey, Timestamp};

use patchmesh_node::control::ControlRequest;

use crate::keygen::read_signing_key;

#[derive(clap::Args)]
pub(crate) struct ControlArgs {
    /// The patch series id, such as KB5034441.
    patch: String,
    /// The patch version concerned.
    #[arg(long)]
    version: u64,
    /// The signer's secret key file (plain or passphrase-encrypted).
    #[arg(long)]
    key: PathBuf,
    /// The order file: created by the first signer, signed in place by the others.
    #[arg(long)]
    out: PathBuf,
    /// Why, for operators and the audit log; needed when creating the order.
    #[arg(long)]
    reason: Option<String>,
    /// A format 2 trust file: report whether the signatures now meet the rule.
    #[arg(long)]
    trust: Option<PathBuf>,
    #[command(flatten)]
    submit: crate::submit::SubmitArgs,
}

pub(crate) fn run(action: ControlAction, args: ControlArgs) -> anyhow::Result<ExitCode> {
    let now = Timestamp::now_system();
    let patch = PatchKey { id: PatchId::new(args.patch.clone())?, version: args.version };
    let mut order = match std::fs::read_to_string(&args.out) {
        Ok(text) => {
            let order: RolloutControl = serde_json::from_str(&text).with_context(|| format!("invalid order file {}", args.out.display()))?;
            if order.action != action || order.patch != patch {
                bail!(
                    "{} holds a {} of {}, not a {action} of {patch}; choose another --out file",
                    args.out.display(),
                    order.action,
                    order.patch
                );
            }
            if args.reason.as_ref().is_some_and(|reason| *reason != order.reason) {
                bail!("{} already states the reason {:?}; leave out --reason to co-sign it", args.out.display(), order.reason);
            }
            order
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let reason = args.reason.clone().with_context(|| format!("give --reason to create the {action} order"))?;
            RolloutControl::new(action, patch, reason, now.as_secs())
        }
        Err(error) => return Err(error).with_context(|| format!("cannot read {}", args.out.display())),
    };
    let key = read_signing_key(&args.key)?;
    order.sign(&key);
    let json = serde_json::to_string_pretty(&order).context("cannot encode the order")?;
    std::fs::write(&args.out, json).with_context(|| format!("cannot write {}", args.out.display()))?;
    let signatures = crate::text::count(order.signatures.len(), "signature");
    println!("{action} of {} signed by {} ({signatures}) in {}", order.patch, key.public().short_id(), args.out.display());
    if let Some(trust) = &args.trust {
        let policy = crate::trust::read_trusted(trust, now)?;
        match verify_control(&policy, &order, now) {
            Ok(_) => println!("the {action} rule is met; the order takes effect where nodes receive it"),
            Err(error) => println!("not yet in effect: {error}"),
        }
    }
    args.submit.send(&ControlRequest::SubmitControl { control: order.clone() }, &format!("the {action} order"))?;
    Ok(ExitCode::SUCCESS)
}
