//! `patchmesh trust`: create, sign, rotate, revoke and check format 2 trust files.
//!
//! Every change writes the next version unsigned; the root key holders then sign it with
//! `trust sign` until `trust verify --previous` accepts it. Nodes accept a version only
//! when the root thresholds of the previous version and of the new one both signed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use patchmesh_core::governance::{Policy, Role, RoleKeys, RuleKind, Rules, SignedPolicy, TrustedPolicy};
use patchmesh_core::{PublicKey, Timestamp, TrustPolicy};

use crate::keygen::read_signing_key;

#[derive(clap::Args)]
pub(crate) struct TrustArgs {
    #[command(subcommand)]
    command: TrustCommand,
}

#[derive(clap::Subcommand)]
enum TrustCommand {
    /// Create version 1 of a trust file, unsigned; sign it with `trust sign`.
    Init(InitArgs),
    /// Add a signature with a root key (or any key; only root signatures count).
    Sign(SignArgs),
    /// Write the next version with keys added, removed or revoked, or new thresholds.
    Rotate(RotateArgs),
    /// Write the next version with a key revoked: for a lost or compromised key.
    Revoke(RevokeArgs),
    /// Check a trust file's signatures, and that it may follow a previous version.
    Verify(VerifyArgs),
    /// Print roles, thresholds, rules and signatures.
    Show(ShowArgs),
    /// Hand the next trust file version to a running node, which enforces it and passes
    /// it to every peer.
    Submit(TrustSubmitArgs),
}

#[derive(clap::Args)]
struct TrustSubmitArgs {
    /// The new trust file version, signed by the root threshold of the version nodes
    /// enforce now and of its own.
    file: PathBuf,
    /// The node's control socket (`control_socket` in its node.toml, by default
    /// `<data_dir>/control.sock`).
    #[arg(long, env = "PATCHMESH_SOCKET")]
    socket: PathBuf,
}

/// A key holder as `NAME=PATH.pub` or `NAME=ed25519:<base64>`.
#[derive(Clone)]
struct Holder {
    name: String,
    key: PublicKey,
}

fn parse_holder(text: &str) -> Result<Holder, String> {
    let (name, key) = text
        .split_once('=')
        .ok_or_else(|| format!("invalid key holder {text:?}: use NAME=PATH.pub or NAME=ed25519:<base64>"))?;
    Ok(Holder { name: name.to_string(), key: parse_key(key)? })
}

/// Turns a format 1 publisher name into a valid format 2 holder name: each character other than
/// an ASCII letter, digit, '.', '_' or '-' becomes '-', and the result is cut to 64
/// bytes. Format 1 allowed any name, so an import must not fail on one.
fn holder_name(name: &str) -> String {
    let mut converted: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '-' })
        .take(64)
        .collect();
    if converted.is_empty() {
        converted.push_str("publisher");
    }
    converted
}

/// A public key as `ed25519:<base64>` or the path of a `.pub` file.
fn parse_key(text: &str) -> Result<PublicKey, String> {
    if text.starts_with("ed25519:") {
        return PublicKey::parse(text).map_err(|error| error.to_string());
    }
    let contents = std::fs::read_to_string(text).map_err(|error| format!("cannot read public key file {text}: {error}"))?;
    PublicKey::parse(contents.trim()).map_err(|error| format!("public key file {text}: {error}"))
}

fn parse_threshold(text: &str) -> Result<(Role, u32), String> {
    let fail = || format!("invalid threshold {text:?}: use ROLE=N, such as reviewer=2");
    let (role, count) = text.split_once('=').ok_or_else(fail)?;
    Ok((Role::parse(role).ok_or_else(fail)?, count.parse().map_err(|_| fail())?))
}

/// A role holder as `ROLE:NAME=KEY`.
fn parse_role_holder(text: &str) -> Result<(Role, Holder), String> {
    let (role, holder) = text
        .split_once(':')
        .ok_or_else(|| format!("invalid --add {text:?}: use ROLE:NAME=PATH.pub, such as reviewer:alice=alice.pub"))?;
    let role = Role::parse(role).ok_or_else(|| format!("unknown role {role:?} in --add: use root, publisher, reviewer, executive or node-admin"))?;
    Ok((role, parse_holder(holder)?))
}

#[derive(clap::Args)]
struct InitArgs {
    /// Where to write the trust file.
    #[arg(long)]
    out: PathBuf,
    /// A root key holder, NAME=PATH.pub or NAME=ed25519:<base64>; repeat for each.
    #[arg(long = "root", value_parser = parse_holder, required = true)]
    roots: Vec<Holder>,
    /// A publisher key holder; repeat for each.
    #[arg(long = "publisher", value_parser = parse_holder)]
    publishers: Vec<Holder>,
    /// A reviewer key holder; repeat for each.
    #[arg(long = "reviewer", value_parser = parse_holder)]
    reviewers: Vec<Holder>,
    /// An executive key holder; repeat for each.
    #[arg(long = "executive", value_parser = parse_holder)]
    executives: Vec<Holder>,
    /// A node admin key holder; repeat for each.
    #[arg(long = "node-admin", value_parser = parse_holder)]
    node_admins: Vec<Holder>,
    /// Import the publishers of a format 1 trust file.
    #[arg(long)]
    import_v1: Option<PathBuf>,
    /// A role's threshold, ROLE=N (default 1 for every role); repeat for each.
    #[arg(long = "threshold", value_parser = parse_threshold)]
    thresholds: Vec<(Role, u32)>,
    /// The roles the approval rule needs, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "publisher,reviewer,executive")]
    approval: Vec<String>,
    /// The roles a recall needs.
    #[arg(long, value_delimiter = ',', default_value = "executive")]
    recall: Vec<String>,
    /// The roles a pause needs.
    #[arg(long, value_delimiter = ',', default_value = "reviewer")]
    pause: Vec<String>,
    /// The roles a resume needs.
    #[arg(long, value_delimiter = ',', default_value = "executive")]
    resume: Vec<String>,
    /// The roles a membership change needs.
    #[arg(long, value_delimiter = ',', default_value = "node-admin")]
    membership: Vec<String>,
    /// How long the file stays valid, such as `365d`.
    #[arg(long, default_value = "365d", value_parser = humantime::parse_duration)]
    expires_in: Duration,
}

#[derive(clap::Args)]
struct SignArgs {
    /// The trust file; the signature is added in place.
    file: PathBuf,
    /// The secret key file (plain or passphrase-encrypted).
    #[arg(long)]
    key: PathBuf,
}

#[derive(clap::Args)]
struct RotateArgs {
    /// The current trust file.
    file: PathBuf,
    /// Where to write the next version.
    #[arg(long)]
    out: PathBuf,
    /// Add a key holder, ROLE:NAME=PATH.pub; repeat for each.
    #[arg(long = "add", value_parser = parse_role_holder)]
    additions: Vec<(Role, Holder)>,
    /// Retire a key that was not compromised (holder name, ed25519:… or PATH.pub).
    #[arg(long = "remove")]
    removals: Vec<String>,
    /// Revoke a lost or compromised key (holder name, ed25519:… or PATH.pub).
    #[arg(long = "revoke")]
    revocations: Vec<String>,
    /// Set a role's threshold, ROLE=N.
    #[arg(long = "threshold", value_parser = parse_threshold)]
    thresholds: Vec<(Role, u32)>,
    /// How long the new version stays valid.
    #[arg(long, default_value = "365d", value_parser = humantime::parse_duration)]
    expires_in: Duration,
}

#[derive(clap::Args)]
struct RevokeArgs {
    /// The current trust file.
    file: PathBuf,
    /// The key to revoke: holder name, ed25519:… or PATH.pub.
    key: String,
    /// Where to write the next version.
    #[arg(long)]
    out: PathBuf,
    /// How long the new version stays valid.
    #[arg(long, default_value = "365d", value_parser = humantime::parse_duration)]
    expires_in: Duration,
}

#[derive(clap::Args)]
struct VerifyArgs {
    /// The trust file to check.
    file: PathBuf,
    /// The version it must follow; without it the file must meet its own root threshold.
    #[arg(long)]
    previous: Option<PathBuf>,
}

#[derive(clap::Args)]
struct ShowArgs {
    /// The trust file.
    file: PathBuf,
}

pub(crate) fn run(args: TrustArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        TrustCommand::Init(args) => init(args),
        TrustCommand::Sign(args) => sign(args),
        TrustCommand::Rotate(args) => rotate(args),
        TrustCommand::Revoke(args) => {
            let rotate_args = RotateArgs {
                file: args.file,
                out: args.out,
                additions: Vec::new(),
                removals: Vec::new(),
                revocations: vec![args.key],
                thresholds: Vec::new(),
                expires_in: args.expires_in,
            };
            rotate(rotate_args)
        }
        TrustCommand::Verify(args) => verify(args),
        TrustCommand::Show(args) => show(args),
        TrustCommand::Submit(args) => {
            let policy = read_policy(&args.file)?;
            let what = format!("trust file version {}", policy.policy.version);
            let submit = crate::submit::SubmitArgs { submit: true, socket: Some(args.socket) };
            submit.send(&patchmesh_node::control::ControlRequest::SubmitTrust { trust: policy }, &what)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Reads and parses a format 2 trust file.
pub(crate) fn read_policy(path: &Path) -> anyhow::Result<SignedPolicy> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read trust file {}", path.display()))?;
    SignedPolicy::from_toml(&text).with_context(|| format!("trust file {}", path.display()))
}

/// Reads a trust file and checks it as a node installed with it would.
pub(crate) fn read_trusted(path: &Path, now: Timestamp) -> anyhow::Result<TrustedPolicy> {
    TrustedPolicy::bootstrap(read_policy(path)?, now).with_context(|| format!("trust file {}", path.display()))
}

fn write_policy(path: &Path, policy: &SignedPolicy) -> anyhow::Result<()> {
    std::fs::write(path, policy.to_toml()).with_context(|| format!("cannot write trust file {}", path.display()))
}

fn init(args: InitArgs) -> anyhow::Result<ExitCode> {
    let now = Timestamp::now_system().as_secs();
    let mut publishers = args.publishers;
    if let Some(path) = &args.import_v1 {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        let old = TrustPolicy::from_toml(&text).with_context(|| format!("format 1 trust file {}", path.display()))?;
        for (key, old_name) in old.publishers() {
            let name = holder_name(old_name);
            if name != old_name {
                println!(
                    "publisher {old_name:?} in {} becomes {name:?}: holder names use letters, digits, '.', '_' or '-'",
                    path.display()
                );
            }
            publishers.push(Holder { name, key: *key });
        }
    }
    let mut roles = BTreeMap::new();
    for (role, holders) in [
        (Role::Root, args.roots),
        (Role::Publisher, publishers),
        (Role::Reviewer, args.reviewers),
        (Role::Executive, args.executives),
        (Role::NodeAdmin, args.node_admins),
    ] {
        if holders.is_empty() {
            continue;
        }
        let mut keys = BTreeMap::new();
        for holder in holders {
            if keys.insert(holder.key, holder.name.clone()).is_some() {
                bail!("key {} is given twice for role {role}; give each holder's key once", holder.key);
            }
        }
        roles.insert(role, RoleKeys { threshold: 1, keys });
    }
    for (role, threshold) in args.thresholds {
        roles
            .get_mut(&role)
            .with_context(|| format!("--threshold {role}={threshold}: role {role} has no keys; add them with --{role}"))?
            .threshold = threshold;
    }
    let rule = |names: &[String]| -> anyhow::Result<BTreeSet<Role>> {
        names
            .iter()
            .map(|name| Role::parse(name.trim()).with_context(|| format!("unknown role {name:?} in a rule: use root, publisher, reviewer, executive or node-admin")))
            .collect()
    };
    let rules = Rules {
        approval: rule(&args.approval)?,
        recall: rule(&args.recall)?,
        pause: rule(&args.pause)?,
        resume: rule(&args.resume)?,
        membership: rule(&args.membership)?,
    };
    let policy = Policy {
        version: 1,
        created: now,
        expires: now.saturating_add(args.expires_in.as_secs().max(1)),
        roles,
        rules,
        revoked: BTreeSet::new(),
    };
    policy.validate()?;
    write_policy(&args.out, &SignedPolicy::unsigned(policy))?;
    println!("trust file version 1 written to {}, unsigned; sign it with `patchmesh trust sign {} --key ROOT.key`", args.out.display(), args.out.display());
    Ok(ExitCode::SUCCESS)
}

fn sign(args: SignArgs) -> anyhow::Result<ExitCode> {
    let mut policy = read_policy(&args.file)?;
    let key = read_signing_key(&args.key)?;
    let role = policy.policy.role_of(&key.public());
    policy.sign(&key);
    write_policy(&args.file, &policy)?;
    let role = role.map_or_else(|| "no role in this version".to_string(), |role| role.to_string());
    println!("signed trust file version {} with {} ({role})", policy.policy.version, key.public().short_id());
    match TrustedPolicy::bootstrap(policy, Timestamp::now_system()) {
        Ok(_) => println!("the root threshold of this version is met"),
        Err(error) => println!("not yet valid on its own: {error}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// Finds a key in `policy` by holder name, `ed25519:…` or `.pub` path.
fn find_key(policy: &Policy, text: &str) -> anyhow::Result<PublicKey> {
    let by_name: Vec<PublicKey> = policy
        .roles
        .values()
        .flat_map(|keys| keys.keys.iter())
        .filter(|(_, name)| name.as_str() == text)
        .map(|(key, _)| *key)
        .collect();
    match by_name.as_slice() {
        [key] => Ok(*key),
        [] => parse_key(text).map_err(|error| anyhow::anyhow!("{error}; or give a holder name listed by `patchmesh trust show`")),
        _ => bail!("several keys are listed under the name {text:?}; give the key as ed25519:… instead"),
    }
}

fn rotate(args: RotateArgs) -> anyhow::Result<ExitCode> {
    let now = Timestamp::now_system().as_secs();
    let current = read_policy(&args.file)?;
    let mut next = current.policy.next_version(now, now.saturating_add(args.expires_in.as_secs().max(1)));
    for text in &args.revocations {
        let key = find_key(&next, text)?;
        let role = next.revoke(&key);
        println!("revoked {} ({})", key.short_id(), role.map_or("held no role".to_string(), |role| format!("was {role}")));
    }
    for text in &args.removals {
        let key = find_key(&next, text)?;
        let removed = next.roles.values_mut().any(|keys| keys.keys.remove(&key).is_some());
        if !removed {
            bail!("--remove {text}: key {} holds no role in version {}", key.short_id(), current.policy.version);
        }
    }
    for (role, holder) in &args.additions {
        if next.revoked.contains(&holder.key) {
            bail!(
                "--add {role}:{}: key {} was revoked and can never return; give the holder a new key from `patchmesh keygen`",
                holder.name,
                holder.key.short_id()
            );
        }
        let keys = next.roles.entry(*role).or_insert_with(|| RoleKeys { threshold: 1, keys: BTreeMap::new() });
        if keys.keys.insert(holder.key, holder.name.clone()).is_some() {
            bail!("--add {role}:{}: the key is already a {role} key", holder.name);
        }
    }
    for (role, threshold) in &args.thresholds {
        next.roles.get_mut(role).with_context(|| format!("--threshold {role}={threshold}: role {role} has no keys"))?.threshold = *threshold;
    }
    // A role emptied by revocations would fail validation with a message about
    // thresholds; say what happened instead.
    if let Some((role, _)) = next.roles.iter().find(|(_, keys)| keys.keys.is_empty()) {
        let revoked = args.revocations.first().map_or("NAME", String::as_str);
        bail!(
            "role {role} would have no keys left; revoke and replace in one version with `patchmesh trust rotate {} --out {} --revoke {revoked} --add {role}:NAME=NEW.pub`",
            args.file.display(),
            args.out.display()
        );
    }
    // Thresholds are never lowered implicitly: a revocation that leaves a role with fewer
    // keys than its threshold fails here until a replacement is added or --threshold set.
    next.validate().context("the new version is invalid; add replacement keys with --add ROLE:NAME=PATH.pub or lower the threshold with --threshold ROLE=N")?;
    let version = next.version;
    write_policy(&args.out, &SignedPolicy::unsigned(next))?;
    println!(
        "trust file version {version} written to {}, unsigned; the root keys of versions {} and {version} must sign it with `patchmesh trust sign {} --key ROOT.key`",
        args.out.display(),
        current.policy.version,
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let now = Timestamp::now_system();
    let next = read_policy(&args.file)?;
    let version = next.policy.version;
    let trusted = match &args.previous {
        None => TrustedPolicy::bootstrap(next, now)?,
        Some(previous) => {
            // The previous version may have expired by now; only the new one must be fresh.
            let previous_policy = read_policy(previous)?;
            let previous_trusted = TrustedPolicy::bootstrap(previous_policy.clone(), Timestamp::from_secs(previous_policy.policy.created))
                .with_context(|| format!("previous trust file {}", previous.display()))?;
            previous_trusted.update_chain([next], now)?
        }
    };
    println!(
        "trust file {} version {version}: valid until {}, {} in {}",
        args.file.display(),
        crate::text::unix_time(trusted.policy().expires),
        crate::text::count(trusted.policy().roles.values().map(|keys| keys.keys.len()).sum::<usize>(), "key"),
        crate::text::count(trusted.policy().roles.len(), "role")
    );
    Ok(ExitCode::SUCCESS)
}

fn show(args: ShowArgs) -> anyhow::Result<ExitCode> {
    let signed = read_policy(&args.file)?;
    let policy = &signed.policy;
    println!(
        "trust file {} version {}, created {}, expires {}",
        args.file.display(),
        policy.version,
        crate::text::unix_time(policy.created),
        crate::text::unix_time(policy.expires)
    );
    for (role, keys) in &policy.roles {
        println!("{role}: {} of {}", keys.threshold, keys.keys.len());
        for (key, name) in &keys.keys {
            println!("  {name:<20} {key}");
        }
    }
    for kind in RuleKind::ALL {
        let roles: Vec<&str> = policy.rules.get(kind).iter().map(|role| role.as_str()).collect();
        println!("rule {kind}: {}", roles.join(" + "));
    }
    for key in &policy.revoked {
        println!("revoked: {key}");
    }
    let signers = signed.signers();
    for entry in &signed.signatures {
        let status = if signers.contains(&entry.key) { "valid" } else { "INVALID" };
        let holder = policy.name_of(&entry.key).unwrap_or("not in this version");
        println!("signature: {} ({holder}) {status}", entry.key.short_id());
    }
    Ok(ExitCode::SUCCESS)
}
