//! `patchmesh members`: maintain the signed membership list.
//!
//! Editing a signed list starts the next version and drops the old signatures, since they
//! no longer cover the content; editing an unsigned list keeps its version, so several
//! edits make one new version.

use patchmesh_node::control::ControlRequest;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use patchmesh_core::Timestamp;
use patchmesh_core::governance::{SignedMembership, VerifiedMembership};

use crate::keygen::read_signing_key;

#[derive(clap::Args)]
pub(crate) struct MembersArgs {
    #[command(subcommand)]
    command: MembersCommand,
}

#[derive(clap::Subcommand)]
enum MembersCommand {
    /// Add a node; creates the file (version 1) if it does not exist.
    Add {
        /// The membership file.
        file: PathBuf,
        /// The node's peer id, as `patchmesh keygen` prints it.
        #[arg(long)]
        peer: String,
        /// The node's site, such as branch-07.
        #[arg(long)]
        site: String,
    },
    /// Remove a node.
    Remove {
        /// The membership file.
        file: PathBuf,
        /// The node's peer id.
        #[arg(long)]
        peer: String,
    },
    /// Sign the list with a node admin key (plain or passphrase-encrypted).
    Sign {
        /// The membership file; the signature is added in place.
        file: PathBuf,
        /// The secret key file.
        #[arg(long)]
        key: PathBuf,
        #[command(flatten)]
        submit: crate::submit::SubmitArgs,
    },
    /// Print the members and, with --trust, whether the signatures meet the rule.
    Show {
        /// The membership file.
        file: PathBuf,
        /// A format 2 trust file.
        #[arg(long)]
        trust: Option<PathBuf>,
    },
}

pub(crate) fn run(args: MembersArgs) -> anyhow::Result<ExitCode> {
    let now = Timestamp::now_system();
    match args.command {
        MembersCommand::Add { file, peer, site } => {
            let mut list = read_or_new(&file)?;
            start_edit(&mut list, now);
            list.membership.add(&peer, &site)?;
            write(&file, &list)?;
            println!("added {peer} at {site}; version {} is unsigned until `patchmesh members sign`", list.membership.version);
        }
        MembersCommand::Remove { file, peer } => {
            let mut list = read(&file)?;
            start_edit(&mut list, now);
            let site = list.membership.remove(&peer)?;
            write(&file, &list)?;
            println!("removed {peer} (was at {site}); version {} is unsigned until `patchmesh members sign`", list.membership.version);
        }
        MembersCommand::Sign { file, key, submit } => {
            let mut list = read(&file)?;
            let key = read_signing_key(&key)?;
            list.sign(&key);
            write(&file, &list)?;
            println!("signed membership version {} with {}", list.membership.version, key.public().short_id());
            let what = format!("membership version {}", list.membership.version);
            submit.send(&ControlRequest::SubmitMembership { membership: list }, &what)?;
        }
        MembersCommand::Show { file, trust } => {
            let list = read(&file)?;
            println!(
                "membership version {}, issued {}, {}",
                list.membership.version,
                crate::text::unix_time(list.membership.issued),
                crate::text::count(list.membership.members.len(), "member")
            );
            for (peer, site) in &list.membership.members {
                println!("  {site:<16} {peer}");
            }
            if let Some(trust) = trust {
                let policy = crate::trust::read_trusted(&trust, now)?;
                VerifiedMembership::verify(&policy, list, now)?;
                println!("the membership rule is met");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Moves a signed list to the next, unsigned version before an edit.
fn start_edit(list: &mut SignedMembership, now: Timestamp) {
    if !list.signatures.is_empty() {
        list.membership.version += 1;
        list.signatures.clear();
    }
    list.membership.issued = now.as_secs();
}

fn read(path: &Path) -> anyhow::Result<SignedMembership> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read membership file {}; create it with `patchmesh members add`", path.display()))?;
    SignedMembership::from_toml(&text).with_context(|| format!("membership file {}", path.display()))
}

fn read_or_new(path: &Path) -> anyhow::Result<SignedMembership> {
    if path.exists() {
        return read(path);
    }
    let mut list = SignedMembership::default();
    list.membership.version = 1;
    Ok(list)
}

fn write(path: &Path, list: &SignedMembership) -> anyhow::Result<()> {
    std::fs::write(path, list.to_toml()).with_context(|| format!("cannot write membership file {}", path.display()))
}
