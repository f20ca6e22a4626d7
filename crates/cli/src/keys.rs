//! Key generation shared by `patchmesh keygen` and the demo.

use std::io::Read;

use anyhow::Context;
use patchmesh_core::SecretKey;
use zeroize::Zeroizing;

/// A new key from the operating system's random source.
pub(crate) fn generate_key() -> anyhow::Result<SecretKey> {
    let seed = Zeroizing::new(random_bytes::<32>()?);
    Ok(SecretKey::generate(*seed))
}

/// `N` bytes from the operating system's random source.
pub(crate) fn random_bytes<const N: usize>() -> anyhow::Result<[u8; N]> {
    let mut bytes = [0u8; N];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut random| random.read_exact(&mut bytes))
        .context("cannot read the system random source /dev/urandom")?;
    Ok(bytes)
}
