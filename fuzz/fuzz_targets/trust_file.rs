//! A trust file: `TrustPolicy::from_toml` and a signature check under the parsed policy.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = patchmesh_fuzz::trust_file(data);
});
