//! Order-preserving byte encoding of index keys.
//!
//! Invariant: for any two tuples `a`, `b` of optional values (None = missing field / undefined),
//! `encode_key(a).cmp(&encode_key(b)) == compare_tuples(a, b)`. Also, the encoding of a tuple
//! prefix is a byte prefix of the encoding of every tuple that starts with it, so an `eq`
//! prefix is one contiguous byte range.
//!
//! Each element is a type tag byte followed by a body:
//!
//! | type      | tag  | body                                                            |
//! |-----------|------|-----------------------------------------------------------------|
//! | undefined | 0x01 | (none)                                                          |
//! | null      | 0x02 | (none)                                                          |
//! | int64     | 0x03 | 8 bytes big endian with the sign bit flipped                    |
//! | float64   | 0x04 | 8 bytes big endian: negatives all bits flipped, else sign flipped |
//! | boolean   | 0x05 | 0x00 or 0x01                                                    |
//! | string    | 0x06 | UTF-8 bytes, 0x00 escaped as 0x00 0xFF, then 0x00 0x01          |
//! | bytes     | 0x07 | same escaping as strings                                        |
//! | array     | 0x08 | each element encoded, then 0x00                                 |
//! | object    | 0x09 | each field as (string element of the name, value element), then 0x00 |
//!
//! Why it works: every element encoding is prefix-free (fixed widths, or a terminator that
//! cannot occur inside the body), and tags follow the type order, so comparing concatenations
//! byte-wise compares element by element. The terminators 0x00 (containers) and 0x00 0x01
//! (strings) sort below every continuation, which makes shorter sequences sort first; an
//! escaped 0x00 (0x00 0xFF) sorts above the terminator and below any byte ≥ 0x01.

use std::cmp::Ordering;

use crate::Value;

const TAG_UNDEFINED: u8 = 0x01;
const TAG_NULL: u8 = 0x02;
const TAG_INT64: u8 = 0x03;
const TAG_FLOAT64: u8 = 0x04;
const TAG_BOOLEAN: u8 = 0x05;
const TAG_STRING: u8 = 0x06;
const TAG_BYTES: u8 = 0x07;
const TAG_ARRAY: u8 = 0x08;
const TAG_OBJECT: u8 = 0x09;
/// Ends an array or object; below every tag.
const END_CONTAINER: u8 = 0x00;

/// Encode a tuple of index field values. `None` is undefined (a missing field), which sorts first.
pub fn encode_key(values: &[Option<&Value>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 * values.len());
    for value in values {
        encode_element(*value, &mut out);
    }
    out
}

/// Append the encoding of one element to `out` (so callers can build keys incrementally).
pub fn encode_element(value: Option<&Value>, out: &mut Vec<u8>) {
    match value {
        None => out.push(TAG_UNDEFINED),
        Some(v) => encode_value(v, out),
    }
}

fn encode_value(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.push(TAG_NULL),
        Value::Int64(x) => {
            out.push(TAG_INT64);
            out.extend_from_slice(&((*x as u64) ^ (1 << 63)).to_be_bytes());
        }
        Value::Float64(x) => {
            out.push(TAG_FLOAT64);
            out.extend_from_slice(&float_sort_bits(*x).to_be_bytes());
        }
        Value::Boolean(b) => {
            out.push(TAG_BOOLEAN);
            out.push(u8::from(*b));
        }
        Value::String(s) => {
            out.push(TAG_STRING);
            escape_bytes(s.as_bytes(), out);
        }
        Value::Bytes(b) => {
            out.push(TAG_BYTES);
            escape_bytes(b, out);
        }
        Value::Array(items) => {
            out.push(TAG_ARRAY);
            for item in items {
                encode_value(item, out);
            }
            out.push(END_CONTAINER);
        }
        Value::Object(fields) => {
            out.push(TAG_OBJECT);
            for (name, field) in fields {
                out.push(TAG_STRING);
                escape_bytes(name.as_bytes(), out);
                encode_value(field, out);
            }
            out.push(END_CONTAINER);
        }
    }
}

/// Map an f64 to a u64 whose unsigned order is `f64::total_cmp` order: negative numbers
/// (sign bit set) have all bits flipped so larger magnitudes sort lower; others get the sign
/// bit set so they sort above every negative.
fn float_sort_bits(x: f64) -> u64 {
    let bits = x.to_bits();
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    }
}

fn escape_bytes(bytes: &[u8], out: &mut Vec<u8>) {
    for &b in bytes {
        out.push(b);
        if b == 0x00 {
            out.push(0xFF);
        }
    }
    out.extend_from_slice(&[0x00, 0x01]);
}

/// The smallest byte string greater than every string that has `prefix` as a prefix,
/// or None when there is none (all 0xFF).
pub fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let last = prefix.iter().rposition(|&b| b != 0xFF)?;
    let mut succ = prefix[..=last].to_vec();
    succ[last] += 1;
    Some(succ)
}

/// The order the encoding must reproduce: element-wise by Convex's total order, undefined first,
/// a shorter tuple first on a tie.
pub fn compare_tuples(a: &[Option<&Value>], b: &[Option<&Value>]) -> Ordering {
    // `Option`'s order puts None first, which is exactly undefined-first.
    a.iter().cmp(b.iter())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::test_support::arb_value;

    fn key(values: &[Option<Value>]) -> Vec<u8> {
        let refs: Vec<Option<&Value>> = values.iter().map(Option::as_ref).collect();
        encode_key(&refs)
    }

    #[test]
    fn successor() {
        assert_eq!(prefix_successor(&[1, 2, 3]), Some(vec![1, 2, 4]));
        assert_eq!(prefix_successor(&[1, 0xFF, 0xFF]), Some(vec![2]));
        assert_eq!(prefix_successor(&[0xFF, 0xFF]), None);
        assert_eq!(prefix_successor(&[]), None);
    }

    #[test]
    fn hand_picked_order() {
        let ascending: Vec<Vec<Option<Value>>> = vec![
            vec![],
            vec![None],
            vec![None, Some(Value::Null)],
            vec![Some(Value::Null)],
            vec![Some(Value::Int64(i64::MIN))],
            vec![Some(Value::Int64(-1))],
            vec![Some(Value::Int64(0))],
            vec![Some(Value::Int64(i64::MAX))],
            vec![Some(Value::Float64(-f64::NAN))],
            vec![Some(Value::Float64(f64::NEG_INFINITY))],
            vec![Some(Value::Float64(-1.0))],
            vec![Some(Value::Float64(-0.0))],
            vec![Some(Value::Float64(0.0))],
            vec![Some(Value::Float64(f64::MIN_POSITIVE))],
            vec![Some(Value::Float64(f64::INFINITY))],
            vec![Some(Value::Float64(f64::NAN))],
            vec![Some(Value::Boolean(false))],
            vec![Some(Value::Boolean(true))],
            vec![Some(Value::from(""))],
            vec![Some(Value::from("a"))],
            vec![Some(Value::from("a\0"))],
            vec![Some(Value::from("a\u{1}"))],
            vec![Some(Value::from("b"))],
            vec![Some(Value::Bytes(vec![]))],
            vec![Some(Value::Bytes(vec![0]))],
            vec![Some(Value::Bytes(vec![0, 0]))],
            vec![Some(Value::Bytes(vec![0xFF]))],
            vec![Some(Value::Array(vec![]))],
            vec![Some(Value::Array(vec![Value::Null]))],
            vec![Some(Value::Array(vec![Value::Null, Value::Null]))],
            vec![Some(Value::Array(vec![Value::Int64(0)]))],
            vec![Some(Value::Object(Default::default()))],
        ];
        for (i, a) in ascending.iter().enumerate() {
            for (j, b) in ascending.iter().enumerate() {
                assert_eq!(key(a).cmp(&key(b)), i.cmp(&j), "{a:?} vs {b:?}");
            }
        }
    }

    fn arb_tuple() -> impl Strategy<Value = Vec<Option<Value>>> {
        prop::collection::vec(prop::option::weighted(0.8, arb_value()), 0..4)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn byte_order_matches_value_order(a in arb_tuple(), b in arb_tuple()) {
            let ra: Vec<Option<&Value>> = a.iter().map(Option::as_ref).collect();
            let rb: Vec<Option<&Value>> = b.iter().map(Option::as_ref).collect();
            prop_assert_eq!(encode_key(&ra).cmp(&encode_key(&rb)), compare_tuples(&ra, &rb));
        }

        #[test]
        fn shared_prefix_order(prefix in arb_tuple(), a in arb_tuple(), b in arb_tuple()) {
            // Tuples that share a prefix exercise comparisons deep inside the encoding.
            let ta: Vec<Option<Value>> = prefix.iter().cloned().chain(a).collect();
            let tb: Vec<Option<Value>> = prefix.iter().cloned().chain(b).collect();
            let ra: Vec<Option<&Value>> = ta.iter().map(Option::as_ref).collect();
            let rb: Vec<Option<&Value>> = tb.iter().map(Option::as_ref).collect();
            prop_assert_eq!(encode_key(&ra).cmp(&encode_key(&rb)), compare_tuples(&ra, &rb));
        }

        #[test]
        fn prefix_property(prefix in arb_tuple(), rest in arb_tuple()) {
            let p = key(&prefix);
            let full: Vec<Option<Value>> = prefix.iter().cloned().chain(rest).collect();
            let k = key(&full);
            prop_assert!(k.starts_with(&p));
            if let Some(succ) = prefix_successor(&p) {
                prop_assert!(k < succ);
                prop_assert!(p < succ);
            }
        }
    }
}
