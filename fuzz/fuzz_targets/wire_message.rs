//! A CBOR `Message` on the sync protocol, delivered to a node's core.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = patchmesh_fuzz::wire_message(data);
});
