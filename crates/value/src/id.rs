//! Convex document IDs: varint(table number) ++ 16-byte internal id (14 random bytes +
//! 2-byte big-endian day number) ++ 2-byte footer (Fletcher-16, little endian), base32 with the
//! lowercase Crockford alphabet, no padding. Decoding is strict.
//!
//! The varint is the little-endian base-128 form: seven bits per byte, lowest group first,
//! high bit set on every byte but the last. The footer is the Fletcher-16 checksum (both
//! sums modulo 256) of everything before it, XOR the format version (0). Strict decoding
//! means: only lowercase alphabet characters, a length between 31 and 37 characters, a
//! matching checksum, and an input equal to the canonical encoding of what it decodes to
//! (so no stray trailing bits and no over-long varint).

use std::fmt;
use std::str::FromStr;

use rand::RngCore;

/// A table's number; user tables start at 10001.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableNumber(pub u32);

impl TableNumber {
    /// The first table number given to user tables.
    pub const FIRST_USER: TableNumber = TableNumber(10001);
}

impl fmt::Display for TableNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DocumentId {
    pub table: TableNumber,
    pub internal: [u8; 16],
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum IdError {
    #[error("Invalid ID \"{id}\": {reason}")]
    Malformed { id: String, reason: &'static str },
}

impl IdError {
    /// Stable machine code for this error.
    pub fn code(&self) -> &'static str {
        "InvalidId"
    }
}

const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
const INTERNAL_LEN: usize = 16;
const FOOTER_LEN: usize = 2;
const VERSION: u16 = 0;
const MAX_VARINT_LEN: usize = 5;
const MIN_BINARY_LEN: usize = 1 + INTERNAL_LEN + FOOTER_LEN;
const MAX_BINARY_LEN: usize = MAX_VARINT_LEN + INTERNAL_LEN + FOOTER_LEN;
const MS_PER_DAY: u64 = 86_400_000;

/// Characters needed for `n` bytes of base32 without padding.
const fn base32_len(n: usize) -> usize {
    (n * 8).div_ceil(5)
}

impl DocumentId {
    /// A fresh random id for `table`, stamped with today's day number (days since the epoch).
    pub fn new_random(table: TableNumber, unix_ms: u64) -> DocumentId {
        let mut internal = [0u8; INTERNAL_LEN];
        rand::thread_rng().fill_bytes(&mut internal[..14]);
        let day = u16::try_from(unix_ms / MS_PER_DAY).unwrap_or(u16::MAX);
        internal[14..].copy_from_slice(&day.to_be_bytes());
        DocumentId { table, internal }
    }

    pub fn encode(&self) -> String {
        let mut buf = Vec::with_capacity(MAX_BINARY_LEN);
        write_varint(self.table.0, &mut buf);
        buf.extend_from_slice(&self.internal);
        let footer = fletcher16(&buf) ^ VERSION;
        buf.extend_from_slice(&footer.to_le_bytes());
        base32_encode(&buf)
    }

    pub fn decode(s: &str) -> Result<DocumentId, IdError> {
        let fail = |reason| IdError::Malformed {
            id: shorten(s),
            reason,
        };
        // Check the length first so hostile long inputs are rejected cheaply.
        if s.len() < base32_len(MIN_BINARY_LEN) || s.len() > base32_len(MAX_BINARY_LEN) {
            return Err(fail("wrong length for a document ID"));
        }
        let buf = base32_decode(s).ok_or_else(|| {
            fail("IDs contain only the characters 0-9 and lowercase a-z without i, l, o and u")
        })?;
        let (table, varint_len) = read_varint(&buf).ok_or_else(|| fail("invalid table number"))?;
        if table == 0 {
            return Err(fail("invalid table number"));
        }
        if buf.len() != varint_len + INTERNAL_LEN + FOOTER_LEN {
            return Err(fail("wrong length for a document ID"));
        }
        let body_len = varint_len + INTERNAL_LEN;
        let footer = u16::from_le_bytes([buf[body_len], buf[body_len + 1]]);
        if footer != fletcher16(&buf[..body_len]) ^ VERSION {
            return Err(fail("checksum mismatch (the ID is mistyped or truncated)"));
        }
        let mut internal = [0u8; INTERNAL_LEN];
        internal.copy_from_slice(&buf[varint_len..body_len]);
        let id = DocumentId {
            table: TableNumber(table),
            internal,
        };
        if id.encode() != s {
            return Err(fail("not in canonical form"));
        }
        Ok(id)
    }

    /// Days since the Unix epoch stamped into the internal id when it was created.
    pub fn day_number(&self) -> u16 {
        u16::from_be_bytes([self.internal[14], self.internal[15]])
    }
}

impl fmt::Display for DocumentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.encode())
    }
}

impl FromStr for DocumentId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        DocumentId::decode(s)
    }
}

fn shorten(s: &str) -> String {
    if s.chars().count() <= 48 {
        s.to_string()
    } else {
        format!("{}...", s.chars().take(48).collect::<String>())
    }
}

fn write_varint(mut n: u32, out: &mut Vec<u8>) {
    while n >= 0x80 {
        out.push((n as u8 & 0x7F) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Returns the number and the bytes it took, or None if truncated or above `u32::MAX`.
fn read_varint(buf: &[u8]) -> Option<(u32, usize)> {
    let mut n: u64 = 0;
    for (i, &byte) in buf.iter().take(MAX_VARINT_LEN).enumerate() {
        n |= u64::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            return u32::try_from(n).ok().map(|n| (n, i + 1));
        }
    }
    None
}

/// Fletcher-16 with both running sums modulo 256; the second sum is the high byte.
fn fletcher16(bytes: &[u8]) -> u16 {
    let (mut sum1, mut sum2) = (0u8, 0u8);
    for &b in bytes {
        sum1 = sum1.wrapping_add(b);
        sum2 = sum2.wrapping_add(sum1);
    }
    (u16::from(sum2) << 8) | u16::from(sum1)
}

/// Base32, most significant bits first, final group zero-padded, no `=` padding.
fn base32_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(base32_len(bytes.len()));
    let (mut acc, mut bits) = (0u32, 0u32);
    for &b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((acc >> bits) & 0x1F) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((acc << (5 - bits)) & 0x1F) as usize] as char);
    }
    out
}

/// Decode base32; None on a character outside the alphabet. Leftover bits are dropped
/// here; the caller's canonical re-encoding check rejects inputs where they are not zero.
fn base32_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 5 / 8);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        let v = ALPHABET.iter().position(|&a| a == c)? as u32;
        acc = (acc << 5) | v;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn vector_internal() -> [u8; 16] {
        let mut b = [251u8; 16];
        for i in 1..16 {
            b[i] = b[i - 1].wrapping_mul(251);
        }
        b
    }

    #[test]
    fn reference_test_vector() {
        let id = DocumentId::decode("z43zp6c3e75gkmz1kfwj6mbbx5sw281h").unwrap();
        assert_eq!(id.table, TableNumber(1017));
        assert_eq!(id.internal, vector_internal());
        assert_eq!(id.encode(), "z43zp6c3e75gkmz1kfwj6mbbx5sw281h");
        let built = DocumentId {
            table: TableNumber(1017),
            internal: vector_internal(),
        };
        assert_eq!(built.to_string(), "z43zp6c3e75gkmz1kfwj6mbbx5sw281h");
    }

    #[test]
    fn user_table_ids_are_32_chars_and_stamped() {
        let id = DocumentId::new_random(TableNumber::FIRST_USER, 1_700_000_000_000);
        assert_eq!(id.encode().len(), 32);
        assert_eq!(id.day_number(), 19675);
        assert_eq!(DocumentId::decode(&id.encode()), Ok(id));
        assert_ne!(
            DocumentId::new_random(TableNumber::FIRST_USER, 0),
            DocumentId::new_random(TableNumber::FIRST_USER, 0)
        );
    }

    fn reason(s: &str) -> String {
        DocumentId::decode(s)
            .expect_err("must be rejected")
            .to_string()
    }

    #[test]
    fn corrupted_ids_rejected() {
        let good = "z43zp6c3e75gkmz1kfwj6mbbx5sw281h";
        // A character outside the alphabet (u), and uppercase.
        let bad_char = format!("u{}", &good[1..]);
        assert!(
            reason(&bad_char).contains("characters"),
            "{}",
            reason(&bad_char)
        );
        assert!(reason(&good.to_uppercase()).contains("characters"));
        // Wrong length.
        assert!(reason(&good[..30]).contains("length"));
        assert!(reason(&format!("{good}00000000")).contains("length"));
        assert!(reason("abc").starts_with("Invalid ID \"abc\": "));
        // One character changed: the checksum catches it.
        let mut flipped = good.as_bytes().to_vec();
        flipped[10] = if flipped[10] == b'0' { b'1' } else { b'0' };
        let flipped = String::from_utf8(flipped).unwrap();
        assert!(
            reason(&flipped).contains("checksum"),
            "{}",
            reason(&flipped)
        );
        // Same bytes but nonzero padding bits in the last character: not canonical. (A
        // one-byte table number gives 19 bytes = 152 bits, so 3 padding bits in 31 chars.)
        let short = DocumentId {
            table: TableNumber(5),
            internal: vector_internal(),
        }
        .encode();
        assert_eq!(short.len(), 31);
        let last = short.as_bytes()[30];
        let idx = ALPHABET.iter().position(|&a| a == last).unwrap();
        let noncanonical = format!("{}{}", &short[..30], ALPHABET[idx ^ 1] as char);
        assert!(
            reason(&noncanonical).contains("canonical"),
            "{}",
            reason(&noncanonical)
        );
    }

    proptest! {
        #[test]
        fn round_trip(table in 1u32.., internal in any::<[u8; 16]>()) {
            let id = DocumentId { table: TableNumber(table), internal };
            let text = id.encode();
            prop_assert_eq!(text.len(), base32_len(varint_len(table) + 18));
            prop_assert_eq!(DocumentId::decode(&text), Ok(id));
        }

        #[test]
        fn decoding_garbage_never_panics(s in "[0-9a-z]{28,40}|\\PC{0,40}") {
            if let Ok(id) = DocumentId::decode(&s) {
                prop_assert_eq!(id.encode(), s);
            }
        }

        #[test]
        fn base32_round_trip(bytes in prop::collection::vec(any::<u8>(), 0..40)) {
            prop_assert_eq!(base32_decode(&base32_encode(&bytes)), Some(bytes));
        }
    }

    fn varint_len(n: u32) -> usize {
        let mut v = Vec::new();
        write_varint(n, &mut v);
        v.len()
    }
}
