//! The canonical binary encoding that signatures and content hashes cover.
//!
//! Serde formats may encode one value in several ways (map order, integer widths, optional
//! fields), so nothing is signed in a serde format. Signed and hashed data is written with
//! [`CanonicalWriter`] instead: integers as fixed-width big-endian, byte strings and text
//! with a `u32` big-endian length prefix, fields in the order the format defines. Every
//! value has exactly one encoding, and [`CanonicalReader`] rejects anything else,
//! including trailing bytes.

/// Appends canonical fields to a buffer.
#[derive(Default)]
pub struct CanonicalWriter {
    buffer: Vec<u8>,
}

impl CanonicalWriter {
    /// Starts an encoding with a domain-separation tag, so a signature made for one kind of
    /// document can never verify as another.
    pub fn with_domain(domain: &str) -> Self {
        let mut writer = CanonicalWriter::default();
        writer.put_str(domain);
        writer
    }

    /// Appends one byte.
    pub fn put_u8(&mut self, value: u8) {
        self.buffer.push(value);
    }

    /// Appends a `u32`, big-endian.
    pub fn put_u32(&mut self, value: u32) {
        self.buffer.extend_from_slice(&value.to_be_bytes());
    }

    /// Appends a `u64`, big-endian.
    pub fn put_u64(&mut self, value: u64) {
        self.buffer.extend_from_slice(&value.to_be_bytes());
    }

    /// Appends bytes whose length the format fixes, with no prefix.
    pub fn put_fixed(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// Appends a length-prefixed byte string.
    ///
    /// # Panics
    ///
    /// If `bytes` is 4 GiB or longer; no canonical field comes near that.
    pub fn put_bytes(&mut self, bytes: &[u8]) {
        let len = u32::try_from(bytes.len()).expect("canonical field shorter than 4 GiB");
        self.put_u32(len);
        self.buffer.extend_from_slice(bytes);
    }

    /// Appends length-prefixed UTF-8 text.
    pub fn put_str(&mut self, text: &str) {
        self.put_bytes(text.as_bytes());
    }

    /// The encoded bytes.
    pub fn finish(self) -> Vec<u8> {
        self.buffer
    }
}

/// Canonical bytes that could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The input ended inside a field.
    #[error("truncated canonical encoding: needed {needed} more bytes at offset {offset}")]
    Truncated {
        /// Bytes still needed.
        needed: usize,
        /// Where the field started.
        offset: usize,
    },
    /// Bytes remained after the last field.
    #[error("{count} unexpected trailing bytes after the canonical encoding")]
    TrailingBytes {
        /// How many bytes were left.
        count: usize,
    },
    /// A length prefix or text that the format does not allow.
    #[error("invalid canonical field {field}: {reason}")]
    InvalidField {
        /// The field being decoded.
        field: &'static str,
        /// What was wrong with it.
        reason: String,
    },
}

/// Reads canonical fields in order from a byte slice.
pub struct CanonicalReader<'a> {
    input: &'a [u8],
    offset: usize,
}

impl<'a> CanonicalReader<'a> {
    /// Starts reading `input`, which must begin with the domain tag `domain`.
    pub fn with_domain(input: &'a [u8], domain: &str) -> Result<Self, DecodeError> {
        let mut reader = CanonicalReader { input, offset: 0 };
        let found = reader.take_str("domain", domain.len())?;
        if found != domain {
            return Err(DecodeError::InvalidField {
                field: "domain",
                reason: format!("expected {domain:?}, found {found:?}"),
            });
        }
        Ok(reader)
    }

    fn take(&mut self, count: usize) -> Result<&'a [u8], DecodeError> {
        let rest = &self.input[self.offset..];
        if rest.len() < count {
            return Err(DecodeError::Truncated { needed: count - rest.len(), offset: self.offset });
        }
        self.offset += count;
        Ok(&rest[..count])
    }

    /// Reads one byte.
    pub fn take_u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    /// Reads a big-endian `u32`.
    pub fn take_u32(&mut self) -> Result<u32, DecodeError> {
        let bytes = self.take(4)?;
        Ok(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    /// Reads a big-endian `u64`.
    pub fn take_u64(&mut self) -> Result<u64, DecodeError> {
        let mut array = [0; 8];
        array.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(array))
    }

    /// Reads `N` bytes with no prefix.
    pub fn take_array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut array = [0; N];
        array.copy_from_slice(self.take(N)?);
        Ok(array)
    }

    /// Reads a length-prefixed byte string of at most `max_len` bytes.
    pub fn take_bytes(&mut self, field: &'static str, max_len: usize) -> Result<&'a [u8], DecodeError> {
        let len = self.take_u32()? as usize;
        if len > max_len {
            return Err(DecodeError::InvalidField {
                field,
                reason: format!("length {len} exceeds the maximum of {max_len}"),
            });
        }
        self.take(len)
    }

    /// Reads length-prefixed UTF-8 text of at most `max_len` bytes.
    pub fn take_str(&mut self, field: &'static str, max_len: usize) -> Result<&'a str, DecodeError> {
        let bytes = self.take_bytes(field, max_len)?;
        std::str::from_utf8(bytes).map_err(|error| DecodeError::InvalidField {
            field,
            reason: format!("not UTF-8: {error}"),
        })
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.input.len() - self.offset
    }

    /// Ends reading; fails if any bytes are left.
    pub fn finish(self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            count => Err(DecodeError::TrailingBytes { count }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut writer = CanonicalWriter::with_domain("test/1");
        writer.put_u8(7);
        writer.put_u32(0xdead_beef);
        writer.put_u64(u64::MAX);
        writer.put_str("name");
        let bytes = writer.finish();

        let mut reader = CanonicalReader::with_domain(&bytes, "test/1").expect("domain");
        assert_eq!(reader.take_u8().expect("u8"), 7);
        assert_eq!(reader.take_u32().expect("u32"), 0xdead_beef);
        assert_eq!(reader.take_u64().expect("u64"), u64::MAX);
        assert_eq!(reader.take_str("name", 16).expect("str"), "name");
        assert!(reader.finish().is_ok());
    }

    #[test]
    fn wrong_domain() {
        let bytes = CanonicalWriter::with_domain("a/1").finish();
        assert!(CanonicalReader::with_domain(&bytes, "b/1").is_err());
    }

    #[test]
    fn trailing_bytes() {
        let mut bytes = CanonicalWriter::with_domain("a/1").finish();
        bytes.push(0);
        let reader = CanonicalReader::with_domain(&bytes, "a/1").expect("domain");
        assert!(matches!(reader.finish(), Err(DecodeError::TrailingBytes { count: 1 })));
    }

    #[test]
    fn truncated_length() {
        let mut writer = CanonicalWriter::with_domain("a/1");
        writer.put_u32(100);
        let bytes = writer.finish();
        let mut reader = CanonicalReader::with_domain(&bytes, "a/1").expect("domain");
        assert!(matches!(reader.take_bytes("field", 1000), Err(DecodeError::Truncated { .. })));
    }
}
