//! The signed part of a manifest, small enough to gossip.

use serde::{Deserialize, Serialize};

use super::hash::{ContentHash, SignatureBytes};
use super::ManifestError;
use crate::encoding::CanonicalWriter;
use crate::governance::RolloutPlan;
use crate::ids::PatchKey;
use crate::keys::{PublicKey, SecretKey};

/// The manifest format of an announcement without a rollout plan, as every release writes
/// it; this release also reads and writes [`MANIFEST_FORMAT_PLANNED`].
pub const MANIFEST_FORMAT: u32 = 1;
/// The manifest format of an announcement that carries a [`RolloutPlan`]. A separate
/// format lets releases that know no plans reject such a manifest instead of rolling it
/// out to every site at once.
pub const MANIFEST_FORMAT_PLANNED: u32 = 2;
/// Domain tag of the canonical header encoding of format 1, the bytes every signature
/// covers.
pub const HEADER_DOMAIN: &str = "patchmesh/manifest-header/1";
/// Domain tag of the signed bytes of format 2: the format 1 fields, then the plan.
pub const HEADER_DOMAIN_PLANNED: &str = "patchmesh/manifest-header/2";
/// The smallest chunk size a manifest may use, in bytes.
pub const MIN_CHUNK_SIZE: u32 = 1024;
/// The largest chunk size a manifest may use, in bytes. A chunk travels as one message,
/// and the chunk protocol's response cap follows from this.
pub const MAX_CHUNK_SIZE: u32 = 16 * 1024 * 1024;
/// The most chunks one patch may have. With 32-byte hashes this caps the body's hash list
/// at 32 MiB.
pub const MAX_CHUNK_COUNT: u32 = 1 << 20;
/// The most files one patch may have.
pub const MAX_FILE_COUNT: u32 = 100_000;
/// The largest canonical body a node will fetch, in bytes.
pub const MAX_BODY_BYTES: u32 = 64 * 1024 * 1024;
/// The most signatures an announcement may carry; more is a flooding attempt.
pub const MAX_SIGNATURES: usize = 32;

/// How each chunk is verified.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChunkVerification {
    /// The body lists one BLAKE3 hash per chunk, in order.
    Blake3HashList,
}

impl ChunkVerification {
    fn tag(self) -> u8 {
        match self {
            ChunkVerification::Blake3HashList => 1,
        }
    }
}

/// The signed fields of a manifest.
///
/// The file list and the chunk hashes live in the [`ManifestBody`](super::ManifestBody),
/// which the header commits to by length and BLAKE3 hash. That keeps a gossiped
/// announcement near 500 bytes whatever the patch size; a node fetches the body from a
/// peer and checks it against `body_hash` before using any of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestHeader {
    /// The manifest format version: [`MANIFEST_FORMAT`], or [`MANIFEST_FORMAT_PLANNED`]
    /// when the announcement carries a rollout plan.
    pub format: u32,
    /// The patch series and the version this manifest describes.
    pub patch: PatchKey,
    /// When the manifest was made, in seconds since the Unix epoch.
    pub created: u64,
    /// When nodes stop starting this manifest, in seconds since the Unix epoch.
    pub expires: u64,
    /// The sum of all file sizes, in bytes.
    pub total_bytes: u64,
    /// The size of every chunk but the last, in bytes.
    pub chunk_size: u32,
    /// The number of chunks: `total_bytes / chunk_size` rounded up.
    pub chunk_count: u32,
    /// The number of files in the body.
    pub file_count: u32,
    /// How chunks are verified.
    pub verification: ChunkVerification,
    /// The length of the canonical body, in bytes.
    pub body_bytes: u32,
    /// The BLAKE3 hash of the canonical body.
    pub body_hash: ContentHash,
}

impl ManifestHeader {
    /// The canonical bytes of the header fields. For a format 1 announcement these are
    /// the bytes signatures cover; [`Announcement::signed_bytes`] gives them for both
    /// formats.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut writer = CanonicalWriter::with_domain(HEADER_DOMAIN);
        self.write_fields(&mut writer);
        writer.finish()
    }

    fn write_fields(&self, writer: &mut CanonicalWriter) {
        writer.put_u32(self.format);
        writer.put_str(self.patch.id.as_str());
        writer.put_u64(self.patch.version);
        writer.put_u64(self.created);
        writer.put_u64(self.expires);
        writer.put_u64(self.total_bytes);
        writer.put_u32(self.chunk_size);
        writer.put_u32(self.chunk_count);
        writer.put_u32(self.file_count);
        writer.put_u8(self.verification.tag());
        writer.put_u32(self.body_bytes);
        writer.put_fixed(&self.body_hash.0);
    }

    /// The BLAKE3 hash of the canonical header fields. For format 1 it equals
    /// [`Announcement::digest`]; for format 2 only the digest also covers the plan.
    pub fn id_hash(&self) -> ContentHash {
        ContentHash::of(&self.canonical_bytes())
    }

    /// Checks the header's fields against each other and the format limits.
    pub fn validate(&self) -> Result<(), ManifestError> {
        if self.format != MANIFEST_FORMAT && self.format != MANIFEST_FORMAT_PLANNED {
            return Err(ManifestError::UnsupportedFormat { format: self.format });
        }
        if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&self.chunk_size) {
            return Err(ManifestError::ChunkSize { chunk_size: self.chunk_size });
        }
        let expected_chunks = self.total_bytes.div_ceil(u64::from(self.chunk_size));
        if expected_chunks > u64::from(MAX_CHUNK_COUNT) || expected_chunks != u64::from(self.chunk_count) {
            return Err(ManifestError::ChunkCount {
                chunk_count: self.chunk_count,
                expected: expected_chunks,
            });
        }
        if self.file_count == 0 || self.file_count > MAX_FILE_COUNT {
            return Err(ManifestError::FileCount { file_count: self.file_count });
        }
        if self.body_bytes > MAX_BODY_BYTES {
            return Err(ManifestError::BodyTooLarge { body_bytes: self.body_bytes });
        }
        if self.expires <= self.created {
            return Err(ManifestError::ExpiresBeforeCreated { created: self.created, expires: self.expires });
        }
        Ok(())
    }

    /// The length of chunk `index` in bytes; every chunk is `chunk_size` but the last.
    /// Returns 0 for an index past the end.
    pub fn chunk_len(&self, index: u32) -> u32 {
        if index >= self.chunk_count {
            return 0;
        }
        let start = u64::from(index) * u64::from(self.chunk_size);
        // The difference fits in u32 because it is at most chunk_size.
        (self.total_bytes - start).min(u64::from(self.chunk_size)) as u32
    }
}

/// One signature over a header's canonical bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestSignature {
    /// The signing key.
    pub key: PublicKey,
    /// The ed25519 signature.
    pub signature: SignatureBytes,
}

/// A header with its signatures: what nodes gossip to announce a patch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announcement {
    /// The signed fields.
    pub header: ManifestHeader,
    /// The rollout plan, present exactly when the header's format is
    /// [`MANIFEST_FORMAT_PLANNED`]; signed with the header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<RolloutPlan>,
    /// Signatures over [`Announcement::signed_bytes`], at most [`MAX_SIGNATURES`].
    pub signatures: Vec<ManifestSignature>,
}

impl Announcement {
    /// An announcement with no plan and no signatures yet.
    pub fn unsigned(header: ManifestHeader) -> Self {
        Announcement { header, plan: None, signatures: Vec::new() }
    }

    /// The bytes every signature covers: the canonical header for format 1, and for any
    /// announcement carrying a plan the header fields under [`HEADER_DOMAIN_PLANNED`]
    /// followed by the plan. A plan attached to a format 1 announcement therefore changes
    /// the signed bytes, and the publisher's signature no longer verifies.
    pub fn signed_bytes(&self) -> Vec<u8> {
        if self.plan.is_none() && self.header.format == MANIFEST_FORMAT {
            return self.header.canonical_bytes();
        }
        let mut writer = CanonicalWriter::with_domain(HEADER_DOMAIN_PLANNED);
        self.header.write_fields(&mut writer);
        match &self.plan {
            None => writer.put_u8(0),
            Some(plan) => {
                writer.put_u8(1);
                plan.write_canonical(&mut writer);
            }
        }
        writer.finish()
    }

    /// The BLAKE3 hash of [`Announcement::signed_bytes`]: what approvals sign. It binds the
    /// patch id and version, the content hashes, the expiry and the plan.
    pub fn digest(&self) -> ContentHash {
        ContentHash::of(&self.signed_bytes())
    }

    /// Checks the header and that a plan is present exactly in format 2, and valid.
    pub fn validate(&self) -> Result<(), ManifestError> {
        self.header.validate()?;
        match (&self.plan, self.header.format == MANIFEST_FORMAT_PLANNED) {
            (None, false) => Ok(()),
            (Some(plan), true) => plan.validate().map_err(ManifestError::Plan),
            (plan, _) => Err(ManifestError::PlanFormat { format: self.header.format, has_plan: plan.is_some() }),
        }
    }

    /// Adds a signature by `key`, replacing an earlier one by the same key.
    pub fn sign(&mut self, key: &SecretKey) {
        let public = key.public();
        let signature = SignatureBytes(key.sign(&self.signed_bytes()));
        self.signatures.retain(|entry| entry.key != public);
        self.signatures.push(ManifestSignature { key: public, signature });
    }

    /// The distinct keys whose signature verifies, strictly, over this header.
    pub fn valid_signers(&self) -> Vec<PublicKey> {
        let message = self.signed_bytes();
        let mut signers: Vec<PublicKey> = self
            .signatures
            .iter()
            .filter(|entry| entry.key.verify(&message, &entry.signature.0))
            .map(|entry| entry.key)
            .collect();
        signers.sort();
        signers.dedup();
        signers
    }
}
