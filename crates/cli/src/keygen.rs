//! `patchmesh keygen`, and reading a signing key in either file format.
//!
//! Signing commands run on an operator's machine, which need not run a node: they read a
//! plain or a passphrase-encrypted key with [`read_signing_key`]. A node identity key must
//! stay plain because the daemon starts unattended.

use std::fs::OpenOptions;
use std::io::{IsTerminal, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use patchmesh_core::SecretKey;
use patchmesh_core::keys::{ENCRYPTED_KEY_HEADER, EncryptedSecretKey, KdfParams};
use patchmesh_node::keyfile;
use zeroize::Zeroizing;

use crate::keys::{generate_key, random_bytes};

/// The environment variable a script sets instead of typing the passphrase.
pub(crate) const PASSPHRASE_ENV: &str = "PATCHMESH_PASSPHRASE";

#[derive(clap::Args)]
pub(crate) struct KeygenArgs {
    /// Where to write the secret key; the public key goes to PATH.pub.
    #[arg(long)]
    out: PathBuf,
    /// A comment for the public key file, such as the key holder's name.
    #[arg(long, default_value = "")]
    comment: String,
    /// Encrypt the secret key under a passphrase, typed twice at the terminal or taken
    /// from PATCHMESH_PASSPHRASE. Not for node identity keys, which the daemon reads
    /// unattended.
    #[arg(long)]
    passphrase: bool,
}

pub(crate) fn run(args: KeygenArgs) -> anyhow::Result<ExitCode> {
    let key = generate_key()?;
    let public_path = if args.passphrase {
        let passphrase = read_new_passphrase()?;
        let sealed = EncryptedSecretKey::seal(&key, passphrase.as_bytes(), KdfParams::DEFAULT, random_bytes()?, random_bytes()?)?;
        write_encrypted_pair(&sealed, &args.out, &args.comment)
    } else {
        keyfile::write_key_pair(&key, &args.out, &args.comment).map_err(anyhow::Error::from)
    }
    .with_context(|| format!("cannot create key pair at {}", args.out.display()))?;
    let protection = if args.passphrase { "mode 0600, passphrase-encrypted" } else { "mode 0600" };
    println!("secret key: {} ({protection})", args.out.display());
    println!("public key: {} ({})", public_path.display(), key.public());
    if !args.passphrase {
        println!("peer id as a node identity: {}", keyfile::peer_id(&key));
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads a secret key for signing: a plain key file, or an encrypted one unlocked with the
/// passphrase from PATCHMESH_PASSPHRASE or the terminal.
pub(crate) fn read_signing_key(path: &Path) -> anyhow::Result<SecretKey> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) if text.trim_start().starts_with(ENCRYPTED_KEY_HEADER) => Zeroizing::new(text),
        // Plain files, unreadable files and public key files get the node's checks and
        // messages.
        _ => return Ok(keyfile::read_secret_key(path)?),
    };
    let mode = std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        bail!("secret key file {} has mode {mode:04o}, so other users can read it; run `chmod 600 {}`", path.display(), path.display());
    }
    let sealed = EncryptedSecretKey::from_file_text(&text).with_context(|| format!("invalid key file {}", path.display()))?;
    let passphrase = read_passphrase(&format!("passphrase for {} ({}): ", path.display(), sealed.public().short_id()))?;
    sealed.unlock(passphrase.as_bytes()).with_context(|| format!("cannot unlock {}", path.display()))
}

/// The passphrase from the environment, or typed once at the terminal.
fn read_passphrase(prompt: &str) -> anyhow::Result<Zeroizing<String>> {
    if let Ok(passphrase) = std::env::var(PASSPHRASE_ENV) {
        return Ok(Zeroizing::new(passphrase));
    }
    if !std::io::stdin().is_terminal() {
        bail!("the key is passphrase-encrypted and there is no terminal to ask on; set {PASSPHRASE_ENV}");
    }
    let passphrase = rpassword::prompt_password(prompt).context("cannot read the passphrase from the terminal")?;
    Ok(Zeroizing::new(passphrase))
}

/// A new passphrase from the environment, or typed twice at the terminal.
fn read_new_passphrase() -> anyhow::Result<Zeroizing<String>> {
    let passphrase = read_passphrase("new passphrase: ")?;
    if passphrase.is_empty() {
        bail!("the passphrase is empty; choose one of at least one character (or leave out --passphrase)");
    }
    if std::env::var_os(PASSPHRASE_ENV).is_none() {
        let again = Zeroizing::new(rpassword::prompt_password("repeat passphrase: ").context("cannot read the passphrase from the terminal")?);
        if *again != *passphrase {
            bail!("the two passphrases differ; run keygen again");
        }
    }
    Ok(passphrase)
}

/// Writes `sealed` to `path` with mode 0600, refusing to overwrite a file, and its public
/// key to `PATH.pub`.
fn write_encrypted_pair(sealed: &EncryptedSecretKey, path: &Path, comment: &str) -> anyhow::Result<PathBuf> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| patchmesh_node::keyfile::create_error(path, source))?;
    file.write_all(sealed.to_file_text().as_bytes())?;
    file.sync_all()?;
    let mut public_path = path.as_os_str().to_owned();
    public_path.push(".pub");
    let public_path = PathBuf::from(public_path);
    let line = if comment.is_empty() { format!("{}\n", sealed.public()) } else { format!("{} {comment}\n", sealed.public()) };
    std::fs::write(&public_path, line).with_context(|| format!("cannot write {}", public_path.display()))?;
    Ok(public_path)
}
