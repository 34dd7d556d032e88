//! Validators in their text form (as `schema.toml` and the derive write them), and checking
//! values against them. The first line of the input is the validator; the rest is a JSON value
//! in `convex_encoded_json`.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use tickethub_value::{TableNumber, Validator, Value};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (validator_text, value_text) = text.split_once('\n').unwrap_or((text, "null"));
    let Ok(validator) = Validator::parse(validator_text) else {
        return;
    };
    // What a validator prints (in error messages, and as a schema would be written) must parse
    // back to the same validator.
    let printed = validator.describe();
    let reparsed =
        Validator::parse(&printed).unwrap_or_else(|e| panic!("{printed} does not parse back: {e}"));
    assert_eq!(reparsed, validator, "{printed}");
    let tables: BTreeMap<String, TableNumber> = [
        ("users".to_string(), TableNumber(10001)),
        ("events".to_string(), TableNumber(10002)),
    ]
    .into_iter()
    .collect();
    if let Ok(json) = serde_json::from_str::<serde_json::Value>(value_text) {
        if let Ok(value) = Value::from_convex_json(&json) {
            if let Err(error) = validator.check(&value, &tables) {
                // Every refusal has a stable code and a message.
                assert!(!error.code().is_empty());
                assert!(!error.to_string().is_empty());
            }
        }
    }
});
