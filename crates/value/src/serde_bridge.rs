//! Between `Value` and serde types, for typed function arguments and results.
//! Integers become int64, floats float64 (so a Rust `f64` is a Convex `number`, an `i64` an `int64`).
//!
//! Serializing (`to_value`): unit and `None` → null; `u64` above `i64::MAX` → error; byte
//! buffers (`serde_bytes`) → bytes, while a plain `Vec<u8>` is an array of int64;
//! structs and maps → objects (map keys must be strings, chars or integers, which are
//! written in decimal); sequences and tuples → arrays; unit variants → their name as a
//! string; other variants → `{variant: content}` (serde's externally tagged form).
//!
//! Deserializing (`from_value`): the inverse. Two conveniences, because JavaScript clients
//! send every `number` as a float64: a Rust integer field accepts a float64 holding an exact
//! integer in range, and a Rust float field accepts an int64.

mod de;
mod ser;

use std::fmt;

use crate::Value;

#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error("{0}")]
    Message(String),
}

impl BridgeError {
    /// Stable machine code for this error.
    pub fn code(&self) -> &'static str {
        "InvalidValue"
    }
}

impl serde::ser::Error for BridgeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        BridgeError::Message(msg.to_string())
    }
}

impl serde::de::Error for BridgeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        BridgeError::Message(msg.to_string())
    }
}

pub fn to_value<T: serde::Serialize + ?Sized>(t: &T) -> Result<Value, BridgeError> {
    ser::to_value(t)
}

pub fn from_value<T: serde::de::DeserializeOwned>(v: &Value) -> Result<T, BridgeError> {
    de::from_value(v)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;
    use serde::{Deserialize, Serialize};

    use super::*;
    use crate::test_support::arb_value;

    #[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
    #[serde(rename_all = "camelCase")]
    struct Ticket {
        user_id: String,
        seat_count: i64,
        price: f64,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        promo_code: Option<String>,
        note: Option<String>,
        tags: Vec<String>,
        status: Status,
        extra: BTreeMap<String, u32>,
        payload: Value,
        flag: bool,
        pair: (i32, String),
    }

    #[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
    #[serde(rename_all = "camelCase")]
    enum Status {
        Open,
        OnHold { until: f64 },
        Sold(String),
        Moved(i64, i64),
    }

    fn obj(pairs: Vec<(&str, Value)>) -> Value {
        Value::Object(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
    }

    fn ticket() -> Ticket {
        Ticket {
            user_id: "u1".into(),
            seat_count: 2,
            price: 10.5,
            promo_code: None,
            note: None,
            tags: vec!["a".into()],
            status: Status::Open,
            extra: [("k".to_string(), 7)].into_iter().collect(),
            payload: Value::Bytes(vec![1, 2]),
            flag: true,
            pair: (3, "x".into()),
        }
    }

    #[test]
    fn struct_to_value_shape() {
        let v = to_value(&ticket()).unwrap();
        let expected = obj(vec![
            ("userId", Value::from("u1")),
            ("seatCount", Value::Int64(2)),
            ("price", Value::Float64(10.5)),
            ("note", Value::Null),
            ("tags", Value::Array(vec![Value::from("a")])),
            ("status", Value::from("open")),
            ("extra", obj(vec![("k", Value::Int64(7))])),
            ("payload", Value::Bytes(vec![1, 2])),
            ("flag", Value::Boolean(true)),
            (
                "pair",
                Value::Array(vec![Value::Int64(3), Value::from("x")]),
            ),
        ]);
        assert_eq!(v, expected);
        // skip_serializing_if dropped promoCode entirely.
        assert!(v.get("promoCode").is_none());
    }

    #[test]
    fn round_trips_including_enum_variants() {
        for status in [
            Status::Open,
            Status::OnHold { until: 5.0 },
            Status::Sold("bob".into()),
            Status::Moved(1, -2),
        ] {
            let t = Ticket {
                status,
                promo_code: Some("P".into()),
                note: Some("n".into()),
                ..ticket()
            };
            let v = to_value(&t).unwrap();
            let back: Ticket = from_value(&v).unwrap();
            assert_eq!(back, t);
        }
        assert_eq!(
            to_value(&Status::OnHold { until: 5.0 }).unwrap(),
            obj(vec![("onHold", obj(vec![("until", Value::Float64(5.0))]))])
        );
    }

    #[test]
    fn missing_option_fields_and_js_numbers() {
        // A JS client sends seatCount as a float64 and leaves out optional fields.
        let v = obj(vec![
            ("userId", Value::from("u1")),
            ("seatCount", Value::Float64(2.0)),
            ("price", Value::Int64(10)),
            ("tags", Value::Array(vec![])),
            ("status", Value::from("open")),
            ("extra", obj(vec![("k", Value::Float64(7.0))])),
            ("payload", Value::Null),
            ("flag", Value::Boolean(false)),
            (
                "pair",
                Value::Array(vec![Value::Float64(3.0), Value::from("x")]),
            ),
        ]);
        let t: Ticket = from_value(&v).unwrap();
        assert_eq!(t.seat_count, 2);
        assert_eq!(t.price, 10.0);
        assert_eq!(t.promo_code, None);
        assert_eq!(t.note, None);
        // A fractional float is not silently truncated into an integer.
        let mut bad = v.clone().into_object().unwrap();
        bad.insert("seatCount".into(), Value::Float64(2.5));
        let err = from_value::<Ticket>(&Value::Object(bad))
            .unwrap_err()
            .to_string();
        assert!(err.contains("2.5"), "{err}");
        let mut bad = v.into_object().unwrap();
        bad.insert("userId".into(), Value::Int64(1));
        assert!(from_value::<Ticket>(&Value::Object(bad)).is_err());
    }

    #[test]
    fn integer_edges() {
        assert!(to_value(&u64::MAX).is_err());
        assert_eq!(
            to_value(&(i64::MAX as u64)).unwrap(),
            Value::Int64(i64::MAX)
        );
        assert!(from_value::<u8>(&Value::Int64(300)).is_err());
        assert_eq!(from_value::<u8>(&Value::Int64(200)).unwrap(), 200);
        assert_eq!(to_value(&()).unwrap(), Value::Null);
        assert_eq!(to_value(&None::<i32>).unwrap(), Value::Null);
        assert_eq!(from_value::<Option<i64>>(&Value::Null).unwrap(), None);
        assert_eq!(
            from_value::<Option<i64>>(&Value::Int64(4)).unwrap(),
            Some(4)
        );
        assert!(from_value::<(i64, i64)>(&Value::Array(vec![Value::Int64(1)])).is_err());
        let map: BTreeMap<i32, bool> = [(5, true)].into_iter().collect();
        assert_eq!(
            to_value(&map).unwrap(),
            obj(vec![("5", Value::Boolean(true))])
        );
    }

    proptest! {
        #[test]
        fn value_round_trips_through_serde(v in arb_value()) {
            let through = to_value(&v).unwrap();
            prop_assert_eq!(&through, &v);
            let back: Value = from_value(&v).unwrap();
            prop_assert_eq!(back, v);
        }
    }
}
