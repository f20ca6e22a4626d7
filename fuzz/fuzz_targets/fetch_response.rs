//! A CBOR `FetchResponse`: a body delivered to a node awaiting it, or chunk bytes verified.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = patchmesh_fuzz::fetch_response(data);
});
