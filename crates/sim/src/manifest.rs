//! The synthetic patch a simulation publishes.

use std::sync::Arc;

use patchmesh_core::manifest::{
    ChunkVerification, ContentHash, FileEntry, FileName, MANIFEST_FORMAT, ManifestBody, ManifestHeader,
};
use patchmesh_core::{Announcement, Manifest, PatchId, PatchKey, SecretKey, Timestamp};

/// Virtual time zero as the cores see it: 2027-01-15, a fixed instant so runs repeat.
pub const START: Timestamp = Timestamp::from_secs(1_800_000_000);
/// How long manifests stay valid after the start.
const MANIFEST_LIFETIME_S: u64 = 60 * 86_400;

/// Returns the publisher key of every simulated patch, fixed so that runs repeat.
pub(crate) fn publisher() -> SecretKey {
    SecretKey::from_seed([7; 32])
}

/// Builds a signed manifest with the real structure of a patch of `bytes` in chunks of
/// `chunk_size`, over synthetic content: one file, and chunk hashes of a label instead
/// of real bytes. The simulator moves no bytes, so nothing ever checks them.
pub fn synthetic_manifest(id: &str, bytes: u64, chunk_size: u32) -> Result<Arc<Manifest>, String> {
    let patch = PatchKey { id: PatchId::new(id).map_err(|error| error.to_string())?, version: 1 };
    let chunk_count = bytes.div_ceil(u64::from(chunk_size));
    let chunk_hashes: Vec<ContentHash> =
        (0..chunk_count).map(|index| ContentHash::of(format!("{id}/chunk/{index}").as_bytes())).collect();
    let name = FileName::new(format!("{id}.bin")).map_err(|error| error.to_string())?;
    let files = vec![FileEntry { name, size: bytes, hash: ContentHash::of(format!("{id}/file").as_bytes()) }];
    let body = ManifestBody { files, chunk_hashes };
    let body_bytes = body.canonical_bytes();
    let created = START.as_secs() - 60;
    let header = ManifestHeader {
        format: MANIFEST_FORMAT,
        patch,
        created,
        expires: created + MANIFEST_LIFETIME_S,
        total_bytes: bytes,
        chunk_size,
        chunk_count: u32::try_from(chunk_count).map_err(|_| "too many chunks".to_string())?,
        file_count: 1,
        verification: ChunkVerification::Blake3HashList,
        body_bytes: u32::try_from(body_bytes.len()).map_err(|_| "body too large".to_string())?,
        body_hash: ContentHash::of(&body_bytes),
    };
    let mut manifest = Manifest::from_parts(Announcement::unsigned(header), body_bytes).map_err(|error| error.to_string())?;
    manifest.sign(&publisher());
    Ok(Arc::new(manifest))
}
