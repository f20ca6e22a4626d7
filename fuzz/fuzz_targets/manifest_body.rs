//! A canonical manifest body behind a 4-byte chunk size:
//! `ManifestBody::from_canonical_bytes` and `Manifest::from_parts`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = patchmesh_fuzz::manifest_body(data);
});
