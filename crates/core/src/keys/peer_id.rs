//! The libp2p peer id of an ed25519 key, computed without libp2p.
//!
//! A status report names its node by peer id and carries the node's public key. The
//! receiver derives the id from the key and compares, so a report can only speak for the
//! node whose identity key signed it. The derivation follows the libp2p peer id spec for
//! keys whose encoding is at most 42 bytes:
//!
//! 1. the public key as the protobuf message `PublicKey { Type = Ed25519 (1), Data = key }`:
//!    `08 01 12 20` followed by the 32 key bytes;
//! 2. wrapped in an identity multihash: code `00`, length `24` (36), the 36 bytes;
//! 3. written in base58btc (the Bitcoin alphabet) without a multibase prefix.
//!
//! Every ed25519 id therefore starts with `12D3KooW`.

use super::PublicKey;

/// The Bitcoin base58 alphabet, as libp2p uses it.
const BASE58_ALPHABET: &[u8; 58] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
/// Protobuf field 1 (varint) = 1 for `KeyType::Ed25519`, then field 2 (bytes) of 32 bytes.
const PROTOBUF_PREFIX: [u8; 4] = [0x08, 0x01, 0x12, 0x20];
/// Multihash code of the identity "hash", whose digest is its input unchanged.
const IDENTITY_MULTIHASH: u8 = 0x00;

impl PublicKey {
    /// Returns the libp2p peer id of this key, such as `12D3KooW…`, as libp2p's
    /// `PeerId::from_public_key` computes it for the same ed25519 key.
    pub fn peer_id(&self) -> String {
        let mut encoded = Vec::with_capacity(2 + PROTOBUF_PREFIX.len() + 32);
        encoded.push(IDENTITY_MULTIHASH);
        encoded.push((PROTOBUF_PREFIX.len() + 32) as u8);
        encoded.extend_from_slice(&PROTOBUF_PREFIX);
        encoded.extend_from_slice(self.as_bytes());
        base58(&encoded)
    }
}

/// Base58btc text of `bytes`: each leading zero byte becomes a `1`, the rest is the
/// big-endian number in base 58.
fn base58(bytes: &[u8]) -> String {
    let zeros = bytes.iter().take_while(|&&byte| byte == 0).count();
    // Base-58 digits, least significant first; log(256)/log(58) < 1.37 digits per byte.
    let mut digits: Vec<u8> = Vec::with_capacity(bytes.len() * 137 / 100 + 1);
    for &byte in &bytes[zeros..] {
        let mut carry = u32::from(byte);
        for digit in &mut digits {
            carry += u32::from(*digit) << 8;
            *digit = (carry % 58) as u8;
            carry /= 58;
        }
        while carry > 0 {
            digits.push((carry % 58) as u8);
            carry /= 58;
        }
    }
    let mut text = String::with_capacity(zeros + digits.len());
    text.extend(std::iter::repeat_n('1', zeros));
    text.extend(digits.iter().rev().map(|&digit| char::from(BASE58_ALPHABET[usize::from(digit)])));
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SecretKey;

    #[test]
    fn base58_boundaries() {
        // (input, base58btc) from the Bitcoin test vectors.
        let table: &[(&[u8], &str)] = &[
            (b"", ""),
            (&[0], "1"),
            (&[0, 0, 1], "112"),
            (&[57], "z"),
            (&[58], "21"),
            (b"hello world", "StV1DL6CwTryKyV"),
        ];
        for &(input, expected) in table {
            assert_eq!(base58(input), expected, "{input:?}");
        }
    }

    #[test]
    fn ed25519_ids_start_like_libp2p() {
        let id = SecretKey::from_seed([3; 32]).public().peer_id();
        assert!(id.starts_with("12D3KooW"), "{id}");
        assert_eq!(id.len(), 52, "{id}");
    }
}
