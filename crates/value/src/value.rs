//! The value enum and Convex's total order across types:
//! `undefined < null < int64 < float64 < boolean < string < bytes < array < object`.
//! (`undefined` is not a value; it is represented as `Option::None` where it can occur.)

use std::cmp::Ordering;
use std::collections::BTreeMap;

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
        todo!()
    }
    pub fn as_str(&self) -> Option<&str> {
        todo!()
    }
    pub fn as_f64(&self) -> Option<f64> {
        todo!()
    }
    pub fn as_object(&self) -> Option<&Object> {
        todo!()
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
    fn cmp(&self, _other: &Self) -> Ordering {
        todo!()
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
