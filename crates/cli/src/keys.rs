//! `patchmesh keygen`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use patchmesh_core::SecretKey;
use patchmesh_node::keyfile;

#[derive(clap::Args)]
pub(crate) struct KeygenArgs {
    /// Where to write the secret key; the public key goes to PATH.pub.
    #[arg(long)]
    out: PathBuf,
    /// A comment for the public key file, such as the key holder's name.
    #[arg(long, default_value = "")]
    comment: String,
}

pub(crate) fn run(args: KeygenArgs) -> anyhow::Result<ExitCode> {
    let key = generate_key()?;
    let public_path = keyfile::write_key_pair(&key, &args.out, &args.comment)
        .with_context(|| format!("cannot create key pair at {}", args.out.display()))?;
    println!("secret key: {} (mode 0600)", args.out.display());
    println!("public key: {} ({})", public_path.display(), key.public());
    println!("peer id as a node identity: {}", keyfile::peer_id(&key));
    Ok(ExitCode::SUCCESS)
}

/// A new key from the operating system's random source.
pub(crate) fn generate_key() -> anyhow::Result<SecretKey> {
    use std::io::Read;
    let mut seed = zeroize::Zeroizing::new([0u8; 32]);
    std::fs::File::open("/dev/urandom")
        .and_then(|mut random| random.read_exact(seed.as_mut()))
        .context("cannot read the system random source /dev/urandom")?;
    Ok(SecretKey::generate(*seed))
}
