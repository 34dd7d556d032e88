//! Between `Value` and serde types, for typed function arguments and results.
//! Integers become int64, floats float64 (so a Rust `f64` is a Convex `number`, an `i64` an `int64`).

use crate::Value;

#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error("{0}")]
    Message(String),
}

pub fn to_value<T: serde::Serialize + ?Sized>(_t: &T) -> Result<Value, BridgeError> {
    todo!()
}

pub fn from_value<T: serde::de::DeserializeOwned>(_v: &Value) -> Result<T, BridgeError> {
    todo!()
}
