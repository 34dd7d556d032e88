//! Proptest strategies shared by the crate's tests.

use proptest::prelude::*;

use crate::Value;

/// Floats with the awkward cases over-represented: both zeros, NaNs of both signs (and odd
/// payloads), infinities, extremes and subnormals.
pub fn arb_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        3 => any::<f64>(),
        1 => Just(0.0),
        1 => Just(-0.0),
        1 => Just(f64::NAN),
        1 => Just(-f64::NAN),
        1 => any::<u64>().prop_map(|payload| f64::from_bits(0x7FF0_0000_0000_0001 | (payload & 0x800F_FFFF_FFFF_FFFF))),
        1 => Just(f64::INFINITY),
        1 => Just(f64::NEG_INFINITY),
        1 => Just(f64::MAX),
        1 => Just(f64::MIN),
        1 => Just(f64::MIN_POSITIVE / 4.0),
        1 => (-1000i32..1000).prop_map(f64::from),
    ]
}

pub fn arb_i64() -> impl Strategy<Value = i64> {
    prop_oneof![3 => any::<i64>(), 1 => Just(i64::MIN), 1 => Just(i64::MAX), 1 => Just(0i64), 1 => -3i64..3]
}

/// Field names valid everywhere (printable ASCII, no leading `$` or `_`).
pub fn arb_field_name() -> impl Strategy<Value = String> {
    "[a-zA-Z][a-zA-Z0-9_ ~]{0,6}"
}

/// Small strings biased towards 0x00, 0x01, 0xFF-adjacent and multi-byte characters.
pub fn arb_string() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => "[ab\u{0}\u{1}\u{7f}\u{ff61}\u{10000}]{0,4}",
        1 => any::<String>(),
    ]
}

pub fn arb_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        2 => prop::collection::vec(prop_oneof![Just(0u8), Just(1u8), Just(0xFEu8), Just(0xFFu8)], 0..4),
        1 => prop::collection::vec(any::<u8>(), 0..8),
    ]
}

pub fn arb_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        arb_i64().prop_map(Value::Int64),
        arb_f64().prop_map(Value::Float64),
        any::<bool>().prop_map(Value::Boolean),
        arb_string().prop_map(Value::String),
        arb_bytes().prop_map(Value::Bytes),
    ]
}

/// Any value, nested up to a few levels.
pub fn arb_value() -> impl Strategy<Value = Value> {
    arb_leaf().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(arb_field_name(), inner, 0..4).prop_map(Value::Object),
        ]
    })
}
