//! Convex validators, their error texts, and the text form used in `schema.toml`
//! (e.g. `string`, `optional(string)`, `id("events")`, `union(literal("a"), literal("b"))`,
//! `object({ name: string, tags: array(string) })`, `record(string, number)`).

use std::collections::BTreeMap;

use crate::{TableNumber, Value};

#[derive(Clone, Debug, PartialEq)]
pub enum Validator {
    Id(String),
    Null,
    Float64,
    Int64,
    Boolean,
    String,
    Bytes,
    Literal(Value),
    Array(Box<Validator>),
    Object(BTreeMap<String, Validator>),
    Record(Box<Validator>, Box<Validator>),
    Union(Vec<Validator>),
    /// Only meaningful as an object field: the field may be absent.
    Optional(Box<Validator>),
    Any,
}

/// Resolves `v.id("table")` to the table's number, to check an ID's table.
pub trait IdTables {
    fn table_number(&self, table: &str) -> Option<TableNumber>;
}

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum ValidationError {
    /// Message in Convex's wording, including the path (e.g. `.tags[2]`), the value and the validator.
    #[error("{0}")]
    Mismatch(String),
    #[error("Invalid validator `{text}`: {reason}")]
    Syntax { text: String, reason: String },
}

impl Validator {
    /// `nullable(T)` is `union(T, null)`.
    pub fn nullable(inner: Validator) -> Validator {
        Validator::Union(vec![inner, Validator::Null])
    }
    /// Check `value`; errors name the path and read like Convex's.
    pub fn check(&self, _value: &Value, _tables: &dyn IdTables) -> Result<(), ValidationError> {
        todo!()
    }
    /// Check a top-level object of fields against an object validator (document bodies, function args).
    pub fn check_object(
        _fields: &BTreeMap<String, Value>,
        _shape: &BTreeMap<String, Validator>,
        _tables: &dyn IdTables,
    ) -> Result<(), ValidationError> {
        todo!()
    }
    /// Parse the text form.
    pub fn parse(_text: &str) -> Result<Validator, ValidationError> {
        todo!()
    }
    /// Render as Convex prints validators in errors, e.g. `v.optional(v.string())`.
    pub fn describe(&self) -> String {
        todo!()
    }
}

/// Builders for function-argument validators in app code: `v::object([("userId", v::string())])`.
pub mod v {
    use super::Validator;
    pub fn string() -> Validator {
        Validator::String
    }
    pub fn number() -> Validator {
        Validator::Float64
    }
    pub fn float64() -> Validator {
        Validator::Float64
    }
    pub fn int64() -> Validator {
        Validator::Int64
    }
    pub fn boolean() -> Validator {
        Validator::Boolean
    }
    pub fn null() -> Validator {
        Validator::Null
    }
    pub fn bytes() -> Validator {
        Validator::Bytes
    }
    pub fn any() -> Validator {
        Validator::Any
    }
    pub fn id(table: &str) -> Validator {
        Validator::Id(table.to_string())
    }
    pub fn literal(v: impl Into<crate::Value>) -> Validator {
        Validator::Literal(v.into())
    }
    pub fn array(t: Validator) -> Validator {
        Validator::Array(Box::new(t))
    }
    pub fn optional(t: Validator) -> Validator {
        Validator::Optional(Box::new(t))
    }
    pub fn nullable(t: Validator) -> Validator {
        Validator::nullable(t)
    }
    pub fn union(ts: impl IntoIterator<Item = Validator>) -> Validator {
        Validator::Union(ts.into_iter().collect())
    }
    pub fn record(k: Validator, val: Validator) -> Validator {
        Validator::Record(Box::new(k), Box::new(val))
    }
    pub fn object<'a>(fields: impl IntoIterator<Item = (&'a str, Validator)>) -> Validator {
        Validator::Object(
            fields
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        )
    }
}
