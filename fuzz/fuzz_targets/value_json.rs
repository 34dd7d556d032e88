//! Convex JSON values in both wire encodings (`convex_encoded_json` and clean `json`), and the
//! export encoding. Any JSON a client sends must decode or be refused, never panic; whatever
//! decodes must survive its own encoding unchanged, and its index key must order it as the
//! value order does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tickethub_value::key::encode_key;
use tickethub_value::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    if let Ok(value) = Value::from_convex_json(&json) {
        let again = Value::from_convex_json(&value.to_convex_json())
            .expect("a decoded value re-decodes from its own encoding");
        assert_eq!(value, again, "convex_encoded_json round trip");
        let exported = Value::from_export_json(&value.to_export_json())
            .expect("a decoded value re-decodes from its export encoding");
        assert_eq!(value, exported, "export json round trip");
        check_key_order(&value);
    }
    if let Ok(value) = Value::from_clean_json(&json) {
        // Clean json is lossy (int64 becomes a number, bytes a string), so only re-encoding is
        // checked, not equality.
        let _ = Value::from_clean_json(&value.to_clean_json());
    }
    let _ = Value::from_export_json(&json);
});

/// An array's elements, pairwise: the byte order of their index keys is the value order.
fn check_key_order(value: &Value) {
    let Value::Array(items) = value else {
        return;
    };
    for pair in items.windows(2).take(16) {
        let (a, b) = (&pair[0], &pair[1]);
        let key_order = encode_key(&[Some(a)]).cmp(&encode_key(&[Some(b)]));
        assert_eq!(key_order, a.cmp(b), "index key order of {a} and {b}");
    }
}
