//! The value enum and Convex's total order across types:
//! `undefined < null < int64 < float64 < boolean < string < bytes < array < object`.
//! (`undefined` is not a value; it is represented as `Option::None` where it can occur.)
//!
//! `Value` also implements serde's `Serialize` (int64 → `serialize_i64`, bytes →
//! `serialize_bytes`, ...) so a handler can return a `Value` or a struct holding some, and
//! `Deserialize` (integers → int64, other numbers → float64) for completeness. Note that
//! going through plain serde_json text with these impls is lossy (int64 and float64 both
//! become JSON numbers); use the encodings in [`crate::json`] for the wire.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::hash::{Hash, Hasher};

/// An object's fields, sorted by name (as Convex stores them).
pub type Object = BTreeMap<String, Value>;

#[derive(Clone, Debug)]
pub enum Value {
    Null,
    Int64(i64),
    Float64(f64),
    Boolean(bool),
    String(String),
    Bytes(Vec<u8>),
    Array(Vec<Value>),
    Object(Object),
}

impl Value {
    /// Human name of the type, as Convex prints it in errors ("string", "int64", ...).
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Int64(_) => "int64",
            Value::Float64(_) => "float64",
            Value::Boolean(_) => "boolean",
            Value::String(_) => "string",
            Value::Bytes(_) => "bytes",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }
    /// The float64 inside, if this is a float64 (an int64 is *not* converted: they are
    /// distinct types in Convex).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Float64(x) => Some(*x),
            _ => None,
        }
    }
    pub fn as_object(&self) -> Option<&Object> {
        match self {
            Value::Object(o) => Some(o),
            _ => None,
        }
    }
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int64(x) => Some(*x),
            _ => None,
        }
    }
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Boolean(b) => Some(*b),
            _ => None,
        }
    }
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
    pub fn into_object(self) -> Option<Object> {
        match self {
            Value::Object(o) => Some(o),
            _ => None,
        }
    }
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }
    /// Field `name` of an object (None for non-objects and missing fields).
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.as_object().and_then(|o| o.get(name))
    }

    /// Rank of the type in the cross-type order (undefined, which has no `Value`, would be 0).
    pub(crate) fn type_rank(&self) -> u8 {
        match self {
            Value::Null => 1,
            Value::Int64(_) => 2,
            Value::Float64(_) => 3,
            Value::Boolean(_) => 4,
            Value::String(_) => 5,
            Value::Bytes(_) => 6,
            Value::Array(_) => 7,
            Value::Object(_) => 8,
        }
    }
}

impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Value {}
impl PartialOrd for Value {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Value {
    /// Convex's total order. Floats by `f64::total_cmp` (so `-0 < 0`, NaNs at the ends by sign).
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Value::Null, Value::Null) => Ordering::Equal,
            (Value::Int64(a), Value::Int64(b)) => a.cmp(b),
            (Value::Float64(a), Value::Float64(b)) => a.total_cmp(b),
            (Value::Boolean(a), Value::Boolean(b)) => a.cmp(b),
            // `String`'s Ord is byte-wise on UTF-8, which is what Convex specifies.
            (Value::String(a), Value::String(b)) => a.cmp(b),
            (Value::Bytes(a), Value::Bytes(b)) => a.cmp(b),
            (Value::Array(a), Value::Array(b)) => a.iter().cmp(b.iter()),
            // BTreeMap iterates in key order, so this compares sorted [key, value] lists.
            (Value::Object(a), Value::Object(b)) => a.iter().cmp(b.iter()),
            _ => self.type_rank().cmp(&other.type_rank()),
        }
    }
}

impl Hash for Value {
    /// Consistent with `Eq` (which is the total order): floats hash by bit pattern, and
    /// `total_cmp` equality is bit equality.
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u8(self.type_rank());
        match self {
            Value::Null => {}
            Value::Int64(x) => x.hash(state),
            Value::Float64(x) => x.to_bits().hash(state),
            Value::Boolean(b) => b.hash(state),
            Value::String(s) => s.hash(state),
            Value::Bytes(b) => b.hash(state),
            Value::Array(a) => a.hash(state),
            Value::Object(o) => o.hash(state),
        }
    }
}

/// Renders values the way Convex prints them in error messages: `null`, `1` (int64),
/// `1.0` (float64), `true`, `"text"`, `b"AQID"` (bytes, base64), `[1, 2]`, `{a: 1.0}`.
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("null"),
            Value::Int64(x) => write!(f, "{x}"),
            // Debug formatting keeps the `.0` on integral floats, so int64 and float64 differ.
            Value::Float64(x) => write!(f, "{x:?}"),
            Value::Boolean(b) => write!(f, "{b}"),
            Value::String(s) => write!(f, "{s:?}"),
            Value::Bytes(b) => {
                use base64::Engine as _;
                write!(
                    f,
                    "b\"{}\"",
                    base64::engine::general_purpose::STANDARD.encode(b)
                )
            }
            Value::Array(items) => {
                f.write_str("[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_str("]")
            }
            Value::Object(fields) => {
                f.write_str("{")?;
                for (i, (k, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{k}: {v}")?;
                }
                f.write_str("}")
            }
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::String(s.to_string())
    }
}
impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::String(s)
    }
}
impl From<f64> for Value {
    fn from(x: f64) -> Value {
        Value::Float64(x)
    }
}
impl From<i64> for Value {
    fn from(x: i64) -> Value {
        Value::Int64(x)
    }
}
impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Boolean(b)
    }
}
impl From<Vec<u8>> for Value {
    fn from(b: Vec<u8>) -> Value {
        Value::Bytes(b)
    }
}
impl From<Vec<Value>> for Value {
    fn from(a: Vec<Value>) -> Value {
        Value::Array(a)
    }
}
impl From<Object> for Value {
    fn from(o: Object) -> Value {
        Value::Object(o)
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    /// `None` becomes `null`.
    fn from(o: Option<T>) -> Value {
        match o {
            Some(v) => v.into(),
            None => Value::Null,
        }
    }
}

impl serde::Serialize for Value {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        match self {
            Value::Null => serializer.serialize_unit(),
            Value::Int64(x) => serializer.serialize_i64(*x),
            Value::Float64(x) => serializer.serialize_f64(*x),
            Value::Boolean(b) => serializer.serialize_bool(*b),
            Value::String(s) => serializer.serialize_str(s),
            Value::Bytes(b) => serializer.serialize_bytes(b),
            Value::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Value::Object(fields) => {
                let mut map = serializer.serialize_map(Some(fields.len()))?;
                for (k, v) in fields {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

impl<'de> serde::Deserialize<'de> for Value {
    /// Integers become int64 (a u64 above `i64::MAX` becomes float64), other numbers float64.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> serde::de::Visitor<'de> for ValueVisitor {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a Convex value")
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        serde::Deserialize::deserialize(d)
    }
    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Boolean(b))
    }
    fn visit_i64<E>(self, x: i64) -> Result<Value, E> {
        Ok(Value::Int64(x))
    }
    fn visit_u64<E>(self, x: u64) -> Result<Value, E> {
        Ok(match i64::try_from(x) {
            Ok(i) => Value::Int64(i),
            Err(_) => Value::Float64(x as f64),
        })
    }
    fn visit_f64<E>(self, x: f64) -> Result<Value, E> {
        Ok(Value::Float64(x))
    }
    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_string()))
    }
    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }
    fn visit_bytes<E>(self, b: &[u8]) -> Result<Value, E> {
        Ok(Value::Bytes(b.to_vec()))
    }
    fn visit_byte_buf<E>(self, b: Vec<u8>) -> Result<Value, E> {
        Ok(Value::Bytes(b))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut fields = Object::new();
        while let Some((k, v)) = map.next_entry::<String, Value>()? {
            fields.insert(k, v);
        }
        Ok(Value::Object(fields))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(pairs: &[(&str, Value)]) -> Value {
        Value::Object(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        )
    }

    #[test]
    fn cross_type_order() {
        let ascending = vec![
            Value::Null,
            Value::Int64(i64::MIN),
            Value::Int64(i64::MAX),
            Value::Float64(f64::NEG_INFINITY),
            Value::Float64(5.0),
            Value::Boolean(false),
            Value::Boolean(true),
            Value::String(String::new()),
            Value::String("a".into()),
            Value::Bytes(vec![]),
            Value::Bytes(vec![0]),
            Value::Array(vec![]),
            Value::Array(vec![Value::Null]),
            obj(&[]),
            obj(&[("a", Value::Null)]),
        ];
        for (i, a) in ascending.iter().enumerate() {
            for (j, b) in ascending.iter().enumerate() {
                assert_eq!(a.cmp(b), i.cmp(&j), "{a} vs {b}");
            }
        }
    }

    #[test]
    fn float_total_order() {
        let nan = f64::NAN;
        let neg_nan = -f64::NAN;
        let xs = [
            neg_nan,
            f64::NEG_INFINITY,
            -1.0,
            -0.0,
            0.0,
            1.0,
            f64::INFINITY,
            nan,
        ];
        for w in xs.windows(2) {
            assert!(
                Value::Float64(w[0]) < Value::Float64(w[1]),
                "{:?} < {:?}",
                w[0],
                w[1]
            );
        }
        assert_eq!(Value::Float64(nan), Value::Float64(nan));
        assert_ne!(Value::Int64(1), Value::Float64(1.0));
    }

    #[test]
    fn strings_by_utf8_bytes_and_containers_shorter_first() {
        // U+FF61 (3 UTF-8 bytes starting 0xEF) vs U+10000 (4 bytes starting 0xF0): byte order
        // agrees with code point order; UTF-16 order would not.
        assert!(Value::from("\u{FF61}") < Value::from("\u{10000}"));
        assert!(Value::from("ab") < Value::from("b"));
        assert!(
            Value::Array(vec![Value::Int64(1)]) < Value::Array(vec![Value::Int64(1), Value::Null])
        );
        assert!(
            Value::Array(vec![Value::Int64(2)]) > Value::Array(vec![Value::Int64(1), Value::Null])
        );
        // Objects compare key first, then value.
        assert!(obj(&[("a", Value::Int64(9))]) < obj(&[("b", Value::Int64(0))]));
        assert!(obj(&[("a", Value::Int64(1))]) < obj(&[("a", Value::Int64(2))]));
        assert!(
            obj(&[("a", Value::Int64(1))]) < obj(&[("a", Value::Int64(1)), ("b", Value::Null)])
        );
    }

    #[test]
    fn display_like_convex() {
        let v = obj(&[
            ("n", Value::Int64(1)),
            ("x", Value::Float64(1.0)),
            ("s", Value::from("hi")),
            ("b", Value::Bytes(vec![1, 2, 3])),
            ("a", Value::Array(vec![Value::Null, Value::Boolean(true)])),
        ]);
        assert_eq!(
            v.to_string(),
            r#"{a: [null, true], b: b"AQID", n: 1, s: "hi", x: 1.0}"#
        );
    }

    #[test]
    fn serde_serialize_and_deserialize() {
        let v = obj(&[
            ("n", Value::Int64(3)),
            ("x", Value::Float64(1.5)),
            ("l", Value::Array(vec![Value::Null])),
        ]);
        let text = serde_json::to_string(&v).unwrap();
        assert_eq!(text, r#"{"l":[null],"n":3,"x":1.5}"#);
        let back: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, v);
    }
}
