//! `patchmesh publish`: chunk, hash and sign files into a manifest.

use std::fs::File;
use std::io::BufReader;
use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use patchmesh_core::governance::RolloutPlan;
use patchmesh_core::manifest::{FileName, ManifestBuilder, default_chunk_size};
use patchmesh_core::{Manifest, PatchId, PatchKey, SecretKey, Timestamp};
use patchmesh_node::control::{self, ControlRequest, ControlResponse};

#[derive(clap::Args)]
pub(crate) struct PublishArgs {
    /// The files of the patch, in the order they are chunked.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// The publisher's secret key file.
    #[arg(long)]
    key: PathBuf,
    /// The patch series id, such as KB5034441 (letters, digits, `.`, `_`, `-`).
    #[arg(long)]
    id: String,
    /// The version within the series; must exceed every earlier version.
    /// Default: the current Unix time in seconds, which increases on its own.
    #[arg(long)]
    version: Option<u64>,
    /// Name files by their path relative to this directory (default: each file's
    /// basename).
    #[arg(long)]
    root: Option<PathBuf>,
    /// Chunk size in bytes (default: a power of two giving about 1,024 chunks, 64 KiB to
    /// 4 MiB).
    #[arg(long)]
    chunk_size: Option<u32>,
    /// How long nodes may start this rollout, such as `30d` or `12h`.
    #[arg(long, default_value = "30d", value_parser = humantime::parse_duration)]
    expires_in: Duration,
    /// Where to write the signed manifest (default: `<id>-<version>.manifest.json`).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Hand the manifest and files to the origin node at `--socket`.
    #[arg(long, requires = "socket")]
    submit: bool,
    /// The origin node's control socket.
    #[arg(long, env = "PATCHMESH_SOCKET")]
    socket: Option<PathBuf>,
    /// A rollout plan (TOML: `[[waves]]` with `sites` and `start`, optional `[[windows]]`;
    /// see docs/protocol.md). Office nodes then fetch only once their site's wave is
    /// open. Default: no plan, every site starts at once.
    #[arg(long, value_name = "PLAN.toml")]
    plan: Option<PathBuf>,
}

pub(crate) fn run(args: PublishArgs) -> anyhow::Result<ExitCode> {
    let key = crate::keygen::read_signing_key(&args.key)?;
    let now = Timestamp::now_system().as_secs();
    let version = args.version.unwrap_or(now);
    let patch = PatchKey { id: PatchId::new(args.id.clone())?, version };
    let plan = args.plan.as_deref().map(read_plan).transpose()?;
    let layout = (args.root.as_deref(), args.chunk_size);
    let manifest = build_manifest_with(&patch, &args.files, layout, plan, (now, args.expires_in), &key)?;
    let out = args.out.clone().unwrap_or_else(|| PathBuf::from(format!("{}-{}.manifest.json", patch.id, patch.version)));
    std::fs::write(&out, manifest.to_json()).with_context(|| format!("cannot write manifest {}", out.display()))?;
    println!(
        "manifest {} written to {}: {} files, {} bytes, {} chunks of {} bytes",
        patch,
        out.display(),
        manifest.body().files.len(),
        manifest.header().total_bytes,
        manifest.chunk_count(),
        manifest.header().chunk_size
    );
    if args.submit {
        let socket = args.socket.as_deref().context("--submit needs --socket")?;
        submit(socket, &manifest, &args.files)?;
        println!("published {patch} to the node at {}", socket.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Chunks, hashes and signs `files` into a manifest for `patch`.
pub(crate) fn build_manifest(
    patch: &PatchKey,
    files: &[PathBuf],
    root: Option<&Path>,
    chunk_size: Option<u32>,
    created: u64,
    expires_in: Duration,
    key: &SecretKey,
) -> anyhow::Result<Manifest> {
    build_manifest_with(patch, files, (root, chunk_size), None, (created, expires_in), key)
}

/// Reads and checks a rollout plan file.
fn read_plan(path: &Path) -> anyhow::Result<RolloutPlan> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read --plan {}", path.display()))?;
    let plan: RolloutPlan = toml::from_str(&text).with_context(|| format!("invalid --plan {}", path.display()))?;
    plan.validate().with_context(|| format!("invalid --plan {}", path.display()))?;
    if plan.waves.iter().all(|wave| wave.sites.is_some()) {
        eprintln!(
            "warning: every wave in --plan {} lists its sites, so a site no wave lists never starts this version; \
             end the plan with a wave without `sites` to take every other site",
            path.display()
        );
    }
    Ok(plan)
}

/// As [`build_manifest`] with files named by basename and the default chunk size, and a
/// rollout plan, which makes the manifest format 2.
pub(crate) fn build_planned_manifest(
    patch: &PatchKey,
    files: &[PathBuf],
    plan: RolloutPlan,
    created: u64,
    expires_in: Duration,
    key: &SecretKey,
) -> anyhow::Result<Manifest> {
    plan.validate().context("invalid rollout plan")?;
    build_manifest_with(patch, files, (None, None), Some(plan), (created, expires_in), key)
}

/// Builds and signs a manifest; `layout` is the naming root and chunk size, `validity`
/// the creation time (Unix seconds) and lifetime.
fn build_manifest_with(
    patch: &PatchKey,
    files: &[PathBuf],
    layout: (Option<&Path>, Option<u32>),
    plan: Option<RolloutPlan>,
    validity: (u64, Duration),
    key: &SecretKey,
) -> anyhow::Result<Manifest> {
    let (root, chunk_size) = layout;
    let (created, expires_in) = validity;
    let mut total: u64 = 0;
    for path in files {
        let metadata = std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
        if !metadata.is_file() {
            bail!("{} is not a regular file; list the files of the patch, not directories", path.display());
        }
        total += metadata.len();
    }
    let chunk_size = chunk_size.unwrap_or_else(|| default_chunk_size(total));
    let mut builder = ManifestBuilder::new(patch.clone(), chunk_size)?;
    if let Some(plan) = plan {
        builder.plan(plan);
    }
    let mut names = std::collections::HashSet::new();
    for path in files {
        let name = file_name(path, root)?;
        if !names.insert(name.fold_case()) {
            bail!("two files would both be named {name:?} in the patch; pass --root DIR so files are named by their path under DIR");
        }
        let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        builder
            .add_file(name, BufReader::with_capacity(1 << 20, file))
            .with_context(|| format!("cannot read {}", path.display()))?;
    }
    let expires = created.saturating_add(expires_in.as_secs().max(1));
    let mut manifest = builder.finish(created, expires)?;
    manifest.sign(key);
    Ok(manifest)
}

/// The manifest name of `path`: relative to `root` if given, else its basename.
fn file_name(path: &Path, root: Option<&Path>) -> anyhow::Result<FileName> {
    let relative = match root {
        Some(root) => {
            let absolute = std::fs::canonicalize(path).with_context(|| format!("cannot resolve {}", path.display()))?;
            let root_absolute = std::fs::canonicalize(root).with_context(|| format!("cannot resolve --root {}", root.display()))?;
            absolute
                .strip_prefix(&root_absolute)
                .with_context(|| format!("{} is not under --root {}; pass a root that contains every file", path.display(), root.display()))?
                .to_path_buf()
        }
        None => PathBuf::from(path.file_name().with_context(|| format!("{} has no file name", path.display()))?),
    };
    let mut parts = Vec::new();
    for component in relative.components() {
        match component {
            Component::Normal(part) => parts.push(
                part.to_str().with_context(|| format!("file name {} is not UTF-8; rename it", path.display()))?.to_string(),
            ),
            _ => bail!("cannot name {} relative to the root", path.display()),
        }
    }
    Ok(FileName::new(parts.join("/"))?)
}

/// Hands a manifest and its files to the origin node listening on `socket`.
pub(crate) fn submit(socket: &Path, manifest: &Manifest, files: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let sources = files
        .iter()
        .map(|path| std::fs::canonicalize(path).with_context(|| format!("cannot resolve {}", path.display())))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let request = ControlRequest::Publish { manifest: manifest.to_json(), sources };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    // Import hashes every byte once more; allow for slow disks.
    let response = runtime.block_on(control::call(socket, &request, Duration::from_secs(3600)))?;
    match response {
        ControlResponse::Published { files, .. } => Ok(files),
        ControlResponse::Error { message } => bail!("the node refused the publish: {message}"),
        other => bail!("unexpected response from the node: {other:?}"),
    }
}
