//! `patchmesh verify`: check a manifest and, optionally, files against it.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use patchmesh_core::manifest::ContentHash;
use patchmesh_core::{Manifest, TrustPolicy};

#[derive(clap::Args)]
pub(crate) struct VerifyArgs {
    /// The manifest file (JSON).
    manifest: PathBuf,
    /// The trust file listing publisher keys.
    #[arg(long)]
    trust: PathBuf,
    /// The directory holding the patch's files under their manifest names; every file
    /// and every chunk is checked.
    #[arg(long)]
    root: Option<PathBuf>,
}

pub(crate) fn run(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&args.manifest).with_context(|| format!("cannot read {}", args.manifest.display()))?;
    let manifest = Manifest::from_json(&text).with_context(|| format!("manifest {}", args.manifest.display()))?;
    let trust_text = std::fs::read_to_string(&args.trust).with_context(|| format!("cannot read {}", args.trust.display()))?;
    let trust = TrustPolicy::from_toml(&trust_text).with_context(|| format!("trust file {}", args.trust.display()))?;
    let signers = trust.verify(manifest.announcement())?;
    let names: Vec<String> = signers
        .iter()
        .map(|key| format!("{} ({})", trust.publisher_name(key).unwrap_or("?"), key.short_id()))
        .collect();
    println!("manifest {}: signature valid, signed by {}", manifest.key(), names.join(", "));
    let Some(root) = args.root else {
        return Ok(ExitCode::SUCCESS);
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
    if !pending.is_empty() {
        if let Err(error) = manifest.verify_chunk(chunk_index, &pending) {
            println!("FAIL last chunk: {error}");
            failures += 1;
        }
    }
    if concatenated_offset != manifest.header().total_bytes {
        failures += 1;
    }
    if failures > 0 {
        bail!("{failures} check(s) failed");
    }
    println!("all {} files and {} chunks verified", manifest.body().files.len(), manifest.chunk_count());
    Ok(ExitCode::SUCCESS)
}
