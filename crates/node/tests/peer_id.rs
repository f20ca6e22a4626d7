//! The core's pure peer id derivation against libp2p's own, so a status report's key is
//! bound to the same id the daemon's connections carry.

use libp2p::identity::Keypair;
use patchmesh_core::SecretKey;

#[test]
fn core_peer_id_matches_libp2p() {
    for seed in [[0u8; 32], [1; 32], [0x7f; 32], [0xff; 32]] {
        let core = SecretKey::from_seed(seed).public().peer_id();
        let keypair = Keypair::ed25519_from_bytes(seed).expect("ed25519 seed");
        let libp2p = libp2p::PeerId::from_public_key(&keypair.public()).to_base58();
        assert_eq!(core, libp2p, "seed byte {}", seed[0]);
    }
}
