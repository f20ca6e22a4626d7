//! A fixed-length set of chunk indices.

use serde::{Deserialize, Serialize};

/// A set of chunk indices `0..len`, one bit each, lowest index in the lowest bit of the
/// first byte.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct Bitfield {
    len: u32,
    #[serde(with = "serde_bytes")]
    bits: Vec<u8>,
}

/// A bitfield received from a peer whose length or padding does not match.
#[derive(Debug, thiserror::Error)]
#[error("invalid bitfield: expected {expected} chunks in {expected_bytes} bytes with zero padding, got {len} chunks in {bytes} bytes")]
pub struct InvalidBitfield {
    /// The chunk count the manifest gives.
    pub expected: u32,
    /// The byte length that count needs.
    pub expected_bytes: usize,
    /// The chunk count the bitfield claims.
    pub len: u32,
    /// The byte length received.
    pub bytes: usize,
}

impl Bitfield {
    /// An empty set over `len` chunks.
    pub fn new(len: u32) -> Self {
        Bitfield { len, bits: vec![0; byte_len(len)] }
    }

    /// The full set over `len` chunks.
    pub fn full(len: u32) -> Self {
        let mut field = Bitfield::new(len);
        for index in 0..len {
            field.insert(index);
        }
        field
    }

    /// Checks that a bitfield from the wire covers exactly `expected` chunks and has no bit
    /// set past the end, so later lookups cannot go out of range.
    pub fn validate(&self, expected: u32) -> Result<(), InvalidBitfield> {
        let error = || InvalidBitfield {
            expected,
            expected_bytes: byte_len(expected),
            len: self.len,
            bytes: self.bits.len(),
        };
        if self.len != expected || self.bits.len() != byte_len(expected) {
            return Err(error());
        }
        let tail_bits = expected % 8;
        if tail_bits != 0 {
            let last = self.bits[self.bits.len() - 1];
            if last >> tail_bits != 0 {
                return Err(error());
            }
        }
        Ok(())
    }

    /// The number of chunk positions, set or not.
    pub fn len(&self) -> u32 {
        self.len
    }

    /// Whether the set covers no positions at all.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether `index` is in the set; out-of-range indices are not.
    pub fn contains(&self, index: u32) -> bool {
        index < self.len && self.bits[(index / 8) as usize] & (1 << (index % 8)) != 0
    }

    /// Adds `index`; returns whether it was new. Out-of-range indices are ignored.
    pub fn insert(&mut self, index: u32) -> bool {
        if index >= self.len || self.contains(index) {
            return false;
        }
        self.bits[(index / 8) as usize] |= 1 << (index % 8);
        true
    }

    /// Removes `index`; returns whether it was present.
    pub fn remove(&mut self, index: u32) -> bool {
        if !self.contains(index) {
            return false;
        }
        self.bits[(index / 8) as usize] &= !(1 << (index % 8));
        true
    }

    /// The number of indices in the set.
    pub fn count(&self) -> u32 {
        self.bits.iter().map(|byte| byte.count_ones()).sum()
    }

    /// Returns whether no index is in the set.
    pub fn is_clear(&self) -> bool {
        self.bits.iter().all(|&byte| byte == 0)
    }

    /// Returns whether some index is in both this set and `other`. Reads a word at a
    /// time and stops at the first common index.
    pub fn intersects(&self, other: &Bitfield) -> bool {
        let words = self.bits.len().min(other.bits.len()).div_ceil(8);
        (0..words).any(|word| self.word(word) & other.word(word) != 0)
    }

    /// Whether every position is set.
    pub fn is_full(&self) -> bool {
        self.count() == self.len
    }

    /// The indices in this set that `other` lacks, in increasing order. Works a byte at
    /// a time, so a scheduler visits only the chunks a peer could send; `other` is read
    /// as empty past its end.
    pub fn difference(&self, other: &Bitfield) -> Vec<u32> {
        // Eight bytes at a time: index 8·byte + bit is bit 8·(byte mod 8) + bit of the
        // little-endian word, so words keep the indices in increasing order. A first
        // pass counts them, so the list is allocated once.
        let missing_word = |word: usize| {
            let start = word * 8;
            let mine = load_word(&self.bits, start);
            mine & !load_word(&other.bits, start)
        };
        let words = self.bits.len().div_ceil(8);
        let count: u32 = (0..words).map(|word| missing_word(word).count_ones()).sum();
        let mut indices = Vec::with_capacity(count as usize);
        for word in 0..words {
            let mut rest = missing_word(word);
            while rest != 0 {
                indices.push(word as u32 * 64 + rest.trailing_zeros());
                rest &= rest - 1;
            }
        }
        indices
    }

    /// Returns the indices in this set that `other` lacks, from `start` up to the end and
    /// then from 0 up to `start`: the order of a scan that starts at `start` and wraps.
    /// Works a word at a time and allocates nothing, so a scheduler that stops at the
    /// first good chunk pays only for the words it reads.
    pub fn difference_from<'a>(&'a self, other: &'a Bitfield, start: u32) -> ScanFrom<'a> {
        self.scan_from(other, start, true)
    }

    /// Returns the indices in both this set and `other`, in the order of
    /// [`Bitfield::difference_from`].
    pub fn intersection_from<'a>(&'a self, other: &'a Bitfield, start: u32) -> ScanFrom<'a> {
        self.scan_from(other, start, false)
    }

    fn scan_from<'a>(&'a self, other: &'a Bitfield, start: u32, complement: bool) -> ScanFrom<'a> {
        // A start past the end scans from 0, as a scan from the end that wraps would.
        let start = if start < self.len { start } else { 0 };
        ScanFrom {
            mine: self,
            other,
            complement,
            words: self.bits.len().div_ceil(8),
            first: (start / 64) as usize,
            low_bits: start % 64,
            next_step: 0,
            word: 0,
            pending: 0,
        }
    }

    /// Builds a set over `len` chunks from its words, chunk `64·w + b` in bit `b` of word
    /// `w`. Bits past `len` and words past the end are dropped.
    pub fn from_words(len: u32, words: impl IntoIterator<Item = u64>) -> Self {
        let mut field = Bitfield::new(len);
        for (word, value) in words.into_iter().enumerate() {
            let start = word * 8;
            if start >= field.bits.len() {
                break;
            }
            let end = (start + 8).min(field.bits.len());
            field.bits[start..end].copy_from_slice(&value.to_le_bytes()[..end - start]);
        }
        let tail_bits = len % 8;
        if tail_bits != 0
            && let Some(last) = field.bits.last_mut()
        {
            *last &= (1u8 << tail_bits) - 1;
        }
        field
    }

    /// Returns chunks `64·word ..= 64·word + 63` as one word, chunk `64·word + b` in bit
    /// `b`, zero past the end, so callers can combine sets a word at a time.
    pub fn word(&self, word: usize) -> u64 {
        load_word(&self.bits, word * 8)
    }

    /// The indices in the set, in increasing order.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.len).filter(|&index| self.contains(index))
    }
}

/// The iterator of [`Bitfield::difference_from`] and [`Bitfield::intersection_from`].
#[derive(Debug)]
pub struct ScanFrom<'a> {
    mine: &'a Bitfield,
    other: &'a Bitfield,
    /// Whether `other` is read complemented: a difference rather than an intersection.
    complement: bool,
    words: usize,
    /// The word that contains the start index, and the start's bit within it.
    first: usize,
    low_bits: u32,
    /// The next word to read, counted from `first`: step 0 is the first word from the
    /// start bit up, the words after it follow with wrap-around, and step `words` is
    /// the first word again, below the start bit.
    next_step: usize,
    /// The word being yielded, and its bits not yielded yet.
    word: usize,
    pending: u64,
}

impl ScanFrom<'_> {
    /// Reads the word at `step` and returns its index and the bits it yields, masked to
    /// the part of the word that step covers.
    fn read(&self, step: usize) -> (usize, u64) {
        let word = (self.first + step) % self.words;
        let other = self.other.word(word);
        let missing = self.mine.word(word) & if self.complement { !other } else { other };
        let below_start = (1u64 << self.low_bits) - 1;
        let part = if step == 0 {
            !below_start
        } else if step == self.words {
            below_start
        } else {
            u64::MAX
        };
        (word, missing & part)
    }
}

impl Iterator for ScanFrom<'_> {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        loop {
            if self.pending != 0 {
                let bit = self.pending.trailing_zeros();
                self.pending &= self.pending - 1;
                return Some(self.word as u32 * 64 + bit);
            }
            if self.words == 0 || self.next_step > self.words {
                return None;
            }
            (self.word, self.pending) = self.read(self.next_step);
            self.next_step += 1;
        }
    }
}

/// Reads the eight bytes of `bits` from `start` as a little-endian word, zero past the end.
fn load_word(bits: &[u8], start: usize) -> u64 {
    // A whole word is one load; only the tail needs the copy of variable length, which
    // compiles to a call to `memcpy`.
    if let Some(whole) = bits.get(start..start + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(whole);
        return u64::from_le_bytes(word);
    }
    let mut word = [0u8; 8];
    if let Some(rest) = bits.get(start..) {
        let len = rest.len().min(8);
        word[..len].copy_from_slice(&rest[..len]);
    }
    u64::from_le_bytes(word)
}

fn byte_len(len: u32) -> usize {
    (len as usize).div_ceil(8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_and_count() {
        let mut field = Bitfield::new(10);
        assert!(field.insert(0));
        assert!(field.insert(9));
        assert!(!field.insert(9), "second insert of 9 reported as new");
        assert!(!field.insert(10), "out-of-range insert accepted");
        assert_eq!(field.count(), 2);
        assert_eq!(field.iter().collect::<Vec<_>>(), vec![0, 9]);
    }

    #[test]
    fn intersects_table() {
        // (len, this set, other set, whether they intersect)
        let cases: [(u32, &[u32], &[u32], bool); 6] = [
            (0, &[], &[], false),
            (10, &[], &[3], false),
            (10, &[3], &[3], true),
            (10, &[2], &[3], false),
            (130, &[129], &[64, 129], true),
            (130, &[0, 63, 128], &[1, 64, 129], false),
        ];
        for (len, mine, other, expected) in cases {
            let field = |indices: &[u32]| {
                let mut field = Bitfield::new(len);
                indices.iter().for_each(|&index| {
                    field.insert(index);
                });
                field
            };
            assert_eq!(field(mine).intersects(&field(other)), expected, "{mine:?} and {other:?} over {len}");
            assert_eq!(field(mine).is_clear(), mine.is_empty(), "{mine:?} over {len} clear");
        }
    }

    #[test]
    fn full_sizes() {
        for len in [0, 1, 7, 8, 9, 64, 1000] {
            let field = Bitfield::full(len);
            assert!(field.is_full(), "len {len}");
            assert_eq!(field.count(), len, "len {len}");
            assert!(field.validate(len).is_ok(), "len {len}");
        }
    }

    #[test]
    fn validate_rejects_padding() {
        let mut field = Bitfield::new(3);
        field.bits[0] = 0b1000;
        assert!(field.validate(3).is_err());
    }

    #[test]
    fn difference_from_wraps_at_start() {
        let mut mine = Bitfield::new(200);
        let mut other = Bitfield::new(200);
        for index in (0..200).step_by(3) {
            mine.insert(index);
        }
        for index in (0..200).step_by(5) {
            other.insert(index);
        }
        let listed = mine.difference(&other);
        for start in [0, 1, 2, 3, 63, 64, 65, 127, 128, 150, 199, 200, 500] {
            let split = listed.partition_point(|&index| index < start);
            let expected: Vec<u32> = listed[split..].iter().chain(&listed[..split]).copied().collect();
            let got: Vec<u32> = mine.difference_from(&other, start).collect();
            assert_eq!(got, expected, "start {start}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: 256,
            rng_seed: proptest::test_runner::RngSeed::Fixed(0xb17f),
            ..proptest::prelude::ProptestConfig::default()
        })]

        /// Matches the listed difference rotated at `start`, for any sets and start.
        #[test]
        fn difference_from_is_rotated_difference(
            len in 0u32..300,
            seed_mine in proptest::collection::vec(proptest::bool::ANY, 300),
            seed_other in proptest::collection::vec(proptest::bool::ANY, 300),
            start in 0u32..320,
        ) {
            let mut mine = Bitfield::new(len);
            let mut other = Bitfield::new(len);
            for index in 0..len {
                if seed_mine[index as usize] { mine.insert(index); }
                if seed_other[index as usize] { other.insert(index); }
            }
            let listed = mine.difference(&other);
            let split = if start < len { listed.partition_point(|&index| index < start) } else { 0 };
            let expected: Vec<u32> = listed[split..].iter().chain(&listed[..split]).copied().collect();
            let got: Vec<u32> = mine.difference_from(&other, start).collect();
            proptest::prop_assert_eq!(got, expected);
        }
    }

    #[test]
    fn intersection_from_lists_common_indices() {
        let mut mine = Bitfield::new(130);
        let mut other = Bitfield::new(130);
        for index in [1, 5, 64, 100, 129] {
            mine.insert(index);
        }
        for index in [5, 64, 99, 129] {
            other.insert(index);
        }
        let got: Vec<u32> = mine.intersection_from(&other, 70).collect();
        assert_eq!(got, vec![129, 5, 64]);
    }

    #[test]
    fn from_words_drops_bits_past_len() {
        let field = Bitfield::from_words(70, [u64::MAX, u64::MAX, u64::MAX]);
        assert_eq!(field.count(), 70);
        assert!(field.validate(70).is_ok(), "padding bits set");
    }

    #[test]
    fn from_words_round_trips_words() {
        let mut field = Bitfield::new(150);
        for index in [0, 7, 63, 64, 127, 149] {
            field.insert(index);
        }
        let words: Vec<u64> = (0..3).map(|word| field.word(word)).collect();
        assert_eq!(Bitfield::from_words(150, words), field);
    }

    #[test]
    fn difference_from_empty_set() {
        let empty = Bitfield::new(0);
        assert_eq!(empty.difference_from(&empty, 0).count(), 0);
    }

    #[test]
    fn difference_lists_missing_indices() {
        let mut peer = Bitfield::new(20);
        let mut own = Bitfield::new(20);
        assert!(peer.difference(&own).is_empty(), "empty set has nothing new");
        for index in [0, 7, 8, 17, 19] {
            peer.insert(index);
        }
        own.insert(7);
        own.insert(3);
        assert_eq!(peer.difference(&own), vec![0, 8, 17, 19]);
        assert!(own.difference(&Bitfield::full(20)).is_empty(), "a superset leaves nothing");
    }

    /// Checks the word-at-a-time difference against the definition, at sizes around
    /// byte and word boundaries and with `other` shorter, equal and longer.
    #[test]
    fn difference_matches_definition_at_boundaries() {
        let mut state: u64 = 0x853c_49e6_748f_ea9b;
        for len in [0, 1, 7, 8, 9, 63, 64, 65, 127, 128, 129, 1000, 1024] {
            for other_len in [0, len / 2, len, len + 9] {
                let mut mine = Bitfield::new(len);
                let mut theirs = Bitfield::new(other_len);
                for index in 0..len.max(other_len) {
                    state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                    if state >> 62 != 0 {
                        mine.insert(index);
                    }
                    if (state >> 60) & 1 != 0 {
                        theirs.insert(index);
                    }
                }
                let expected: Vec<u32> = (0..len).filter(|&index| mine.contains(index) && !theirs.contains(index)).collect();
                assert_eq!(mine.difference(&theirs), expected, "{len} chunks against {other_len}");
            }
        }
    }

    #[test]
    fn validate_rejects_length() {
        let field = Bitfield::new(9);
        assert!(field.validate(8).is_err());
        assert!(field.validate(17).is_err());
    }
}
