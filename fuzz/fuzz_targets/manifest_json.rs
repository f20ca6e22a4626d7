//! A manifest file: JSON decoding, `Manifest::from_json` and the trust check.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = patchmesh_fuzz::manifest_json(data);
});
