//! A gossiped announcement: JSON decoding and the core's validation.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = patchmesh_fuzz::announcement(data);
});
