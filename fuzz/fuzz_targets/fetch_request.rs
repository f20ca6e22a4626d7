//! A CBOR `FetchRequest` on the chunk protocol, delivered to a serving node's core.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = patchmesh_fuzz::fetch_request(data);
});
