//! `patchmesh verify`: check a manifest and, optionally, files against it.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use patchmesh_core::governance::TrustedPolicy;
use patchmesh_core::manifest::ContentHash;
use patchmesh_core::trust::TrustFileError;
use patchmesh_core::{Manifest, Timestamp, TrustPolicy};

#[derive(clap::Args)]
pub(crate) struct VerifyArgs {
    /// The manifest file (JSON).
    manifest: PathBuf,
    /// The trust file: format 1 (publisher keys) or format 2 (roles and approval rules).
    #[arg(long)]
    trust: PathBuf,
    /// The directory holding the patch's files under their manifest names; every file
    /// and every chunk is checked.
    #[arg(long)]
    root: Option<PathBuf>,
    /// The approvals file to check against a format 2 trust file's approval rule
    /// (default: the manifest's name with `.approvals.json` in place of
    /// `.manifest.json`, checked when it exists). Exit status 2 when approvals are missing.
    #[arg(long)]
    approvals: Option<PathBuf>,
}

/// A trust file of either format, as `verify` uses it.
enum Trust {
    Publishers(TrustPolicy),
    Governed(TrustedPolicy),
}

fn read_trust(args: &VerifyArgs, now: Timestamp) -> anyhow::Result<Trust> {
    let path = &args.trust;
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    match TrustPolicy::from_toml(&text) {
        Ok(trust) => Ok(Trust::Publishers(trust)),
        Err(TrustFileError::GovernanceFormat) => Ok(Trust::Governed(crate::trust::read_trusted(path, now)?)),
        Err(error) => Err(error).with_context(|| format!("trust file {}", path.display())),
    }
}

pub(crate) fn run(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let now = Timestamp::now_system();
    let text = std::fs::read_to_string(&args.manifest).with_context(|| format!("cannot read {}", args.manifest.display()))?;
    let manifest = Manifest::from_json(&text).with_context(|| format!("manifest {}", args.manifest.display()))?;
    let trust = read_trust(&args, now)?;
    let publishers = match &trust {
        Trust::Publishers(trust) => trust.clone(),
        Trust::Governed(policy) => policy.publisher_trust(),
    };
    let signers = publishers.verify(manifest.announcement())?;
    let names: Vec<String> = signers
        .iter()
        .map(|key| format!("{} ({})", publishers.publisher_name(key).unwrap_or("?"), key.short_id()))
        .collect();
    println!("manifest {}: signature valid, signed by {}", manifest.key(), names.join(", "));
    let approval_code = match &trust {
        Trust::Governed(policy) => check_approvals(&args, &manifest, policy, now)?,
        Trust::Publishers(_) if args.approvals.is_some() => {
            bail!("--approvals needs a format 2 trust file; {} is format 1, which has no approval rule", args.trust.display())
        }
        Trust::Publishers(_) => ExitCode::SUCCESS,
    };
    let Some(root) = args.root else {
        return Ok(approval_code);
    };
    let mut failures = 0;
    let mut concatenated_offset: u64 = 0;
    let chunk_size = u64::from(manifest.header().chunk_size);
    let mut pending = Vec::with_capacity(chunk_size as usize);
    let mut chunk_index = 0u32;
    for entry in &manifest.body().files {
        let path = root.join(entry.name.as_str());
        let file = File::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let mut hasher = blake3::Hasher::new();
        let mut buffer = vec![0; 1 << 16];
        let mut size = 0u64;
        loop {
            let read = reader.read(&mut buffer).with_context(|| format!("cannot read {}", path.display()))?;
            if read == 0 {
                break;
            }
            hasher.update(&buffer[..read]);
            size += read as u64;
            let mut rest = &buffer[..read];
            while !rest.is_empty() {
                let take = (chunk_size as usize - pending.len()).min(rest.len());
                pending.extend_from_slice(&rest[..take]);
                rest = &rest[take..];
                if pending.len() as u64 == chunk_size {
                    if let Err(error) = manifest.verify_chunk(chunk_index, &pending) {
                        println!("FAIL {}: {error}", path.display());
                        failures += 1;
                    }
                    chunk_index += 1;
                    pending.clear();
                }
            }
        }
        concatenated_offset += size;
        let hash = ContentHash::from(hasher.finalize());
        if size != entry.size || hash != entry.hash {
            println!("FAIL {}: {size} bytes hashing to {hash}, expected {} bytes hashing to {}", path.display(), entry.size, entry.hash);
            failures += 1;
        } else {
            println!("ok   {} ({size} bytes)", entry.name);
        }
    }
    if !pending.is_empty()
        && let Err(error) = manifest.verify_chunk(chunk_index, &pending)
    {
        println!("FAIL last chunk: {error}");
        failures += 1;
    }
    if concatenated_offset != manifest.header().total_bytes {
        failures += 1;
    }
    if failures > 0 {
        bail!("{failures} check(s) failed");
    }
    let files = crate::text::count(manifest.body().files.len(), "file");
    let chunks = crate::text::count(manifest.chunk_count() as usize, "chunk");
    println!("all {files} and {chunks} verified");
    Ok(approval_code)
}

/// Reports the approval rule when an approvals file is given or lies next to the
/// manifest. Without one there is nothing to count, so `verify` prints only that.
fn check_approvals(args: &VerifyArgs, manifest: &Manifest, policy: &TrustedPolicy, now: Timestamp) -> anyhow::Result<ExitCode> {
    let path = match &args.approvals {
        Some(path) => path.clone(),
        None => {
            let path = crate::approve::default_approvals_path(&args.manifest);
            if !path.exists() {
                println!(
                    "manifest {}: approval rule not checked: no approvals file at {} (give --approvals PATH)",
                    manifest.key(),
                    path.display()
                );
                return Ok(ExitCode::SUCCESS);
            }
            path
        }
    };
    if !path.exists() {
        bail!("approvals file {} does not exist: check the path, or create it with `patchmesh approve`", path.display());
    }
    let file = crate::approve::read_approvals(&path)?;
    crate::approve::report(manifest, &file, policy, now)
}
