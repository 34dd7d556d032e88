//! The three JSON encodings of wire-protocol.md §3.
//!
//! - convex_encoded_json: `$integer`, `$float`, `$bytes` special forms; lossless.
//! - clean json (`format: "json"`): int64 as a JSON number, bytes as base64 string; lossy.
//! - export json (snapshot export): int64 as a bare integer, floats always with a decimal point.

use crate::Value;

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum JsonError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Limit(#[from] crate::LimitError),
}

impl Value {
    /// Decode convex_encoded_json. Enforces the generic limits (depth 64, 8192 elements,
    /// 1024 fields, field-name rules).
    pub fn from_convex_json(_json: &serde_json::Value) -> Result<Value, JsonError> {
        todo!()
    }
    pub fn to_convex_json(&self) -> serde_json::Value {
        todo!()
    }
    /// Decode clean json (`format: "json"`): every JSON number is a float64.
    pub fn from_clean_json(_json: &serde_json::Value) -> Result<Value, JsonError> {
        todo!()
    }
    pub fn to_clean_json(&self) -> serde_json::Value {
        todo!()
    }
    pub fn to_export_json(&self) -> serde_json::Value {
        todo!()
    }
    /// Parse export json back (int64 from bare integers, floats from numbers with a point).
    pub fn from_export_json(_json: &serde_json::Value) -> Result<Value, JsonError> {
        todo!()
    }
}
