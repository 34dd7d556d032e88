//! The three JSON encodings of wire-protocol.md §3.
//!
//! - convex_encoded_json: `$integer`, `$float`, `$bytes` special forms; lossless.
//! - clean json (`format: "json"`): int64 as a JSON number, bytes as base64 string; lossy.
//!   Non-finite floats, which JSON cannot hold, are written as the strings `"NaN"`,
//!   `"Infinity"` and `"-Infinity"` (what `String(x)` gives in JavaScript). Decoding clean
//!   json turns every JSON number into a float64 and leaves strings as strings, so int64,
//!   bytes and non-finite floats do not survive a clean round trip.
//! - export json (snapshot export): int64 as a bare integer, floats always with a decimal
//!   point (or an exponent), bytes and non-finite floats / `-0` as `$bytes` / `$float`.
//!
//! Every decoder enforces the generic limits: depth 64, 8192 array elements, 1024 fields per
//! object, and the field-name rules (no leading `$`, printable ASCII, ≤ 1024 characters).

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use serde_json::{Map, Number, Value as Json};

use crate::limits::{
    check_field_name, FieldNameScope, LimitError, MAX_ARRAY_ELEMENTS, MAX_GENERIC_DEPTH,
    MAX_OBJECT_FIELDS,
};
use crate::{Object, Value};

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum JsonError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Limit(#[from] crate::LimitError),
}

impl JsonError {
    /// Stable machine code for this error.
    pub fn code(&self) -> &'static str {
        match self {
            JsonError::Invalid(_) => "InvalidValue",
            JsonError::Limit(e) => e.code(),
        }
    }
}

/// Base64 engines for decoding: standard and URL-safe alphabets, padding optional.
const STANDARD_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);
const URL_SAFE_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Encode bytes as standard base64 with padding (what every encoder here writes).
pub fn base64_encode(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Decode standard base64, also accepting the URL-safe alphabet and missing padding.
pub fn base64_decode(text: &str) -> Result<Vec<u8>, JsonError> {
    STANDARD_LENIENT
        .decode(text)
        .or_else(|_| URL_SAFE_LENIENT.decode(text))
        .map_err(|e| JsonError::Invalid(format!("Invalid base64 \"{}\": {e}", shorten(text))))
}

fn shorten(text: &str) -> String {
    if text.len() <= 40 {
        text.to_string()
    } else {
        let cut = (0..=40)
            .rev()
            .find(|i| text.is_char_boundary(*i))
            .unwrap_or(0);
        format!("{}...", &text[..cut])
    }
}

/// Which of the three encodings a decoder reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    ConvexEncoded,
    Clean,
    Export,
}

impl Value {
    /// Decode convex_encoded_json. Enforces the generic limits (depth 64, 8192 elements,
    /// 1024 fields, field-name rules).
    pub fn from_convex_json(json: &serde_json::Value) -> Result<Value, JsonError> {
        decode(json, Format::ConvexEncoded, 0)
    }
    pub fn to_convex_json(&self) -> serde_json::Value {
        match self {
            Value::Null => Json::Null,
            Value::Int64(x) => special("$integer", base64_encode(&x.to_le_bytes())),
            Value::Float64(x) => match plain_float(*x) {
                Some(n) => Json::Number(n),
                None => special("$float", base64_encode(&x.to_le_bytes())),
            },
            Value::Boolean(b) => Json::Bool(*b),
            Value::String(s) => Json::String(s.clone()),
            Value::Bytes(b) => special("$bytes", base64_encode(b)),
            Value::Array(items) => Json::Array(items.iter().map(Value::to_convex_json).collect()),
            Value::Object(fields) => Json::Object(
                fields
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_convex_json()))
                    .collect(),
            ),
        }
    }
    /// Decode clean json (`format: "json"`): every JSON number is a float64.
    pub fn from_clean_json(json: &serde_json::Value) -> Result<Value, JsonError> {
        decode(json, Format::Clean, 0)
    }
    /// Encode as clean json: int64 as a JSON number, bytes as a base64 string, NaN and
    /// ±Infinity as the strings `"NaN"`, `"Infinity"`, `"-Infinity"`.
    pub fn to_clean_json(&self) -> serde_json::Value {
        match self {
            Value::Null => Json::Null,
            Value::Int64(x) => Json::Number((*x).into()),
            Value::Float64(x) => match Number::from_f64(*x) {
                Some(n) => Json::Number(n),
                None if x.is_nan() => Json::String("NaN".into()),
                None if *x > 0.0 => Json::String("Infinity".into()),
                None => Json::String("-Infinity".into()),
            },
            Value::Boolean(b) => Json::Bool(*b),
            Value::String(s) => Json::String(s.clone()),
            Value::Bytes(b) => Json::String(base64_encode(b)),
            Value::Array(items) => Json::Array(items.iter().map(Value::to_clean_json).collect()),
            Value::Object(fields) => Json::Object(
                fields
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_clean_json()))
                    .collect(),
            ),
        }
    }
    /// Encode as export json: int64 as a bare integer, finite floats as JSON floats (serde_json
    /// prints them with a decimal point or an exponent, e.g. `1.0`, `1e+300`), bytes, NaN,
    /// ±Infinity and `-0` as `$bytes` / `$float`.
    pub fn to_export_json(&self) -> serde_json::Value {
        match self {
            Value::Int64(x) => Json::Number((*x).into()),
            Value::Array(items) => Json::Array(items.iter().map(Value::to_export_json).collect()),
            Value::Object(fields) => Json::Object(
                fields
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_export_json()))
                    .collect(),
            ),
            other => other.to_convex_json(),
        }
    }
    /// Parse export json back (int64 from bare integers, floats from numbers with a point).
    pub fn from_export_json(json: &serde_json::Value) -> Result<Value, JsonError> {
        decode(json, Format::Export, 0)
    }
}

/// A finite float other than `-0` is written as a plain JSON number.
fn plain_float(x: f64) -> Option<Number> {
    if x == 0.0 && x.is_sign_negative() {
        return None;
    }
    Number::from_f64(x)
}

fn special(key: &str, text: String) -> Json {
    let mut map = Map::new();
    map.insert(key.to_string(), Json::String(text));
    Json::Object(map)
}

/// `depth` is the number of containers around `json`.
fn decode(json: &Json, format: Format, depth: usize) -> Result<Value, JsonError> {
    Ok(match json {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Boolean(*b),
        Json::String(s) => Value::String(s.clone()),
        Json::Number(n) => decode_number(n, format)?,
        Json::Array(items) => {
            check_depth(depth)?;
            if items.len() > MAX_ARRAY_ELEMENTS {
                return Err(LimitError::ArrayTooLong {
                    len: items.len(),
                    max: MAX_ARRAY_ELEMENTS,
                }
                .into());
            }
            Value::Array(
                items
                    .iter()
                    .map(|item| decode(item, format, depth + 1))
                    .collect::<Result<_, _>>()?,
            )
        }
        Json::Object(map) => {
            if format != Format::Clean && map.len() == 1 {
                let (key, inner) = map.iter().next().expect("one entry");
                if key.starts_with('$') {
                    return decode_special(key, inner);
                }
            }
            check_depth(depth)?;
            if map.len() > MAX_OBJECT_FIELDS {
                return Err(LimitError::TooManyFields {
                    len: map.len(),
                    max: MAX_OBJECT_FIELDS,
                }
                .into());
            }
            let mut fields = Object::new();
            for (key, inner) in map {
                check_field_name(key, FieldNameScope::Nested)?;
                fields.insert(key.clone(), decode(inner, format, depth + 1)?);
            }
            Value::Object(fields)
        }
    })
}

fn check_depth(depth: usize) -> Result<(), JsonError> {
    if depth >= MAX_GENERIC_DEPTH {
        return Err(LimitError::TooNested {
            depth: depth + 1,
            max: MAX_GENERIC_DEPTH,
        }
        .into());
    }
    Ok(())
}

fn decode_number(n: &Number, format: Format) -> Result<Value, JsonError> {
    if format == Format::Export {
        if let Some(i) = n.as_i64() {
            return Ok(Value::Int64(i));
        }
        if n.is_u64() {
            return Err(JsonError::Invalid(format!(
                "Integer {n} does not fit in an int64"
            )));
        }
    }
    n.as_f64()
        .map(Value::Float64)
        .ok_or_else(|| JsonError::Invalid(format!("Number {n} is not representable as a float64")))
}

fn decode_special(key: &str, inner: &Json) -> Result<Value, JsonError> {
    let text = |what: &str| -> Result<&str, JsonError> {
        inner.as_str().ok_or_else(|| {
            JsonError::Invalid(format!("`{what}` must hold a base64 string, found {inner}"))
        })
    };
    match key {
        "$integer" => {
            let bytes = eight_bytes("$integer", &base64_decode(text(key)?)?)?;
            Ok(Value::Int64(i64::from_le_bytes(bytes)))
        }
        "$float" => {
            let bytes = eight_bytes("$float", &base64_decode(text(key)?)?)?;
            let x = f64::from_le_bytes(bytes);
            // Only values plain JSON cannot carry may use `$float`, so every float has one encoding.
            if plain_float(x).is_some() {
                return Err(JsonError::Invalid(format!(
                    "`$float` holds the ordinary number {x:?}; send it as a plain JSON number"
                )));
            }
            Ok(Value::Float64(x))
        }
        "$bytes" => Ok(Value::Bytes(base64_decode(text(key)?)?)),
        other => Err(JsonError::Invalid(format!(
            "Unsupported special object key `{}`: only `$integer`, `$float` and `$bytes` are allowed, \
             and field names may not start with '$'",
            shorten(other)
        ))),
    }
}

fn eight_bytes(what: &str, bytes: &[u8]) -> Result<[u8; 8], JsonError> {
    bytes.try_into().map_err(|_| {
        JsonError::Invalid(format!(
            "`{what}` must hold the base64 of exactly 8 bytes, got {} bytes",
            bytes.len()
        ))
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn spec_examples() {
        assert_eq!(
            Value::Int64(1).to_convex_json(),
            json!({"$integer": "AQAAAAAAAAA="})
        );
        assert_eq!(
            Value::Int64(-1).to_convex_json(),
            json!({"$integer": "//////////8="})
        );
        assert_eq!(
            Value::Bytes(vec![1, 2, 3]).to_convex_json(),
            json!({"$bytes": "AQID"})
        );
        assert_eq!(
            Value::Float64(f64::NAN).to_convex_json(),
            json!({"$float": "AAAAAAAA+H8="})
        );
        assert_eq!(
            Value::Float64(f64::INFINITY).to_convex_json(),
            json!({"$float": "AAAAAAAA8H8="})
        );
        assert_eq!(
            Value::Float64(f64::NEG_INFINITY).to_convex_json(),
            json!({"$float": "AAAAAAAA8P8="})
        );
        assert_eq!(
            Value::Float64(-0.0).to_convex_json(),
            json!({"$float": "AAAAAAAAAIA="})
        );
        assert_eq!(Value::Float64(1.5).to_convex_json(), json!(1.5));
        assert_eq!(
            Value::from_convex_json(&json!({"$integer": "AQAAAAAAAAA="})).unwrap(),
            Value::Int64(1)
        );
        assert_eq!(
            Value::from_convex_json(&json!(3)).unwrap(),
            Value::Float64(3.0)
        );
        let neg_zero = Value::from_convex_json(&json!({"$float": "AAAAAAAAAIA="})).unwrap();
        assert!(matches!(neg_zero, Value::Float64(x) if x == 0.0 && x.is_sign_negative()));
    }

    #[test]
    fn url_safe_and_unpadded_base64_accepted() {
        assert_eq!(
            Value::from_convex_json(&json!({"$integer": "__________8="})).unwrap(),
            Value::Int64(-1)
        );
        assert_eq!(
            Value::from_convex_json(&json!({"$integer": "//////////8"})).unwrap(),
            Value::Int64(-1)
        );
        assert_eq!(
            Value::from_convex_json(&json!({"$bytes": "-_8"})).unwrap(),
            Value::Bytes(vec![0xfb, 0xff])
        );
    }

    fn rejects(json: serde_json::Value, needle: &str) {
        let err = Value::from_convex_json(&json)
            .expect_err("must be rejected")
            .to_string();
        assert!(err.contains(needle), "{err:?} should contain {needle:?}");
    }

    #[test]
    fn bad_special_forms_rejected() {
        // 1.0 as $float: must be a plain number instead.
        rejects(
            json!({"$float": base64_encode(&1.0f64.to_le_bytes())}),
            "ordinary number",
        );
        rejects(json!({"$float": "AAAAAAAAAAA="}), "ordinary number"); // +0
        rejects(json!({"$integer": "AQID"}), "exactly 8 bytes");
        rejects(json!({"$integer": 1}), "base64 string");
        rejects(json!({"$bytes": "!!!"}), "Invalid base64");
        rejects(
            json!({"$undefined": null}),
            "Unsupported special object key `$undefined`",
        );
        rejects(
            json!({"$integer": "AQAAAAAAAAA=", "x": 1}),
            "may not start with '$'",
        );
        rejects(json!({"a": {"$foo": 1, "b": 2}}), "may not start with '$'");
        rejects(json!({"caf\u{e9}": 1}), "printable ASCII");
    }

    #[test]
    fn generic_limits_enforced() {
        let mut deep = json!(1);
        for _ in 0..64 {
            deep = json!([deep]);
        }
        assert!(Value::from_convex_json(&deep).is_ok());
        let too_deep = json!({ "a": deep });
        assert!(matches!(
            Value::from_convex_json(&too_deep),
            Err(JsonError::Limit(LimitError::TooNested { max: 64, .. }))
        ));
        let long = Json::Array(vec![json!(null); MAX_ARRAY_ELEMENTS + 1]);
        assert!(matches!(
            Value::from_convex_json(&long),
            Err(JsonError::Limit(LimitError::ArrayTooLong { .. }))
        ));
        let wide: Map<String, Json> = (0..=MAX_OBJECT_FIELDS)
            .map(|i| (format!("f{i}"), json!(i)))
            .collect();
        assert!(matches!(
            Value::from_clean_json(&Json::Object(wide)),
            Err(JsonError::Limit(LimitError::TooManyFields { .. }))
        ));
        let long_name = "x".repeat(1025);
        assert!(Value::from_convex_json(&json!({ long_name: 1 })).is_err());
    }

    #[test]
    fn clean_json() {
        let v = Value::Array(vec![
            Value::Int64(7),
            Value::Bytes(vec![1, 2, 3]),
            Value::Float64(f64::NAN),
            Value::Float64(f64::INFINITY),
            Value::Float64(f64::NEG_INFINITY),
            Value::Float64(2.5),
        ]);
        assert_eq!(
            v.to_clean_json(),
            json!([7, "AQID", "NaN", "Infinity", "-Infinity", 2.5])
        );
        assert_eq!(
            Value::from_clean_json(&json!({"n": 7})).unwrap().get("n"),
            Some(&Value::Float64(7.0))
        );
        // `$` keys are plain (and invalid) field names in clean json.
        assert!(Value::from_clean_json(&json!({"$integer": "AQAAAAAAAAA="})).is_err());
    }

    #[test]
    fn export_json_text() {
        let v = Value::Object(
            [
                ("i".to_string(), Value::Int64(1)),
                ("f".to_string(), Value::Float64(1.0)),
                ("big".to_string(), Value::Float64(1e300)),
                ("z".to_string(), Value::Float64(-0.0)),
                ("b".to_string(), Value::Bytes(vec![1, 2, 3])),
            ]
            .into_iter()
            .collect(),
        );
        let text = serde_json::to_string(&v.to_export_json()).unwrap();
        assert_eq!(
            text,
            r#"{"b":{"$bytes":"AQID"},"big":1e+300,"f":1.0,"i":1,"z":{"$float":"AAAAAAAAAIA="}}"#
        );
        let back = Value::from_export_json(&serde_json::from_str(&text).unwrap()).unwrap();
        assert_eq!(back, v);
        assert!(Value::from_export_json(&json!(u64::MAX)).is_err());
    }
}

#[cfg(test)]
mod round_trip_tests {
    use proptest::prelude::*;

    use super::*;
    use crate::test_support::arb_value;

    /// What clean json is documented to lose: int64 → float64, bytes → base64 string,
    /// non-finite floats → strings.
    fn clean_normal_form(v: &Value) -> Value {
        match v {
            Value::Int64(x) => Value::Float64(*x as f64),
            Value::Bytes(b) => Value::String(base64_encode(b)),
            Value::Float64(x) if x.is_nan() => Value::from("NaN"),
            Value::Float64(x) if x.is_infinite() => {
                Value::from(if *x > 0.0 { "Infinity" } else { "-Infinity" })
            }
            Value::Array(items) => Value::Array(items.iter().map(clean_normal_form).collect()),
            Value::Object(fields) => Value::Object(
                fields
                    .iter()
                    .map(|(k, v)| (k.clone(), clean_normal_form(v)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }

    fn via_text(json: &Json) -> Json {
        serde_json::from_str(&serde_json::to_string(json).unwrap()).unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1000, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn convex_json_is_exact(v in arb_value()) {
            prop_assert_eq!(Value::from_convex_json(&v.to_convex_json()).unwrap(), v.clone());
            prop_assert_eq!(Value::from_convex_json(&via_text(&v.to_convex_json())).unwrap(), v);
        }

        #[test]
        fn export_json_is_exact(v in arb_value()) {
            prop_assert_eq!(Value::from_export_json(&v.to_export_json()).unwrap(), v.clone());
            prop_assert_eq!(Value::from_export_json(&via_text(&v.to_export_json())).unwrap(), v);
        }

        #[test]
        fn clean_json_loses_only_what_is_documented(v in arb_value()) {
            let back = Value::from_clean_json(&via_text(&v.to_clean_json())).unwrap();
            prop_assert_eq!(back, clean_normal_form(&v));
        }

        #[test]
        fn every_float_has_one_convex_encoding(x in crate::test_support::arb_f64()) {
            let json = Value::Float64(x).to_convex_json();
            let is_special = json.is_object();
            prop_assert_eq!(is_special, !x.is_finite() || (x == 0.0 && x.is_sign_negative()));
        }
    }
}
