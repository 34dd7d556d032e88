//! Order-preserving byte encoding of index keys.
//!
//! Invariant: for any two tuples `a`, `b` of optional values (None = missing field / undefined),
//! `encode_key(a).cmp(&encode_key(b)) == compare_tuples(a, b)`. Also, the encoding of a tuple
//! prefix is a byte prefix of the encoding of every tuple that starts with it, so an `eq`
//! prefix is one contiguous byte range.

use crate::Value;

/// Encode a tuple of index field values. `None` is undefined (a missing field), which sorts first.
pub fn encode_key(_values: &[Option<&Value>]) -> Vec<u8> {
    todo!()
}

/// Append the encoding of one element to `out` (so callers can build keys incrementally).
pub fn encode_element(_value: Option<&Value>, _out: &mut Vec<u8>) {
    todo!()
}

/// The smallest byte string greater than every string that has `prefix` as a prefix,
/// or None when there is none (all 0xFF).
pub fn prefix_successor(_prefix: &[u8]) -> Option<Vec<u8>> {
    todo!()
}

/// The order the encoding must reproduce: element-wise by Convex's total order, undefined first,
/// a shorter tuple first on a tie.
pub fn compare_tuples(_a: &[Option<&Value>], _b: &[Option<&Value>]) -> std::cmp::Ordering {
    todo!()
}
