//! The `db` API: `get`, `insert`, `patch`, `replace`, `delete`, and
//! `query(table).with_index(..).filter(..).order(..)` ending in `collect`, `first`, `unique`,
//! `take` or `paginate`. IDs are strings, as on the wire; they are decoded strictly here.

use serde::de::DeserializeOwned;
use serde::Serialize;
use tickethub_store::Order;
use tickethub_value::{Object, Value};

use crate::FnError;

/// A document as functions see it.
#[derive(Clone, Debug, PartialEq)]
pub struct Doc {
    pub id: String,
    pub creation_time: f64,
    pub fields: Object,
}

impl Doc {
    pub fn get(&self, field: &str) -> Option<&Value> {
        self.fields.get(field)
    }
    pub fn get_str(&self, field: &str) -> Option<&str> {
        self.fields.get(field).and_then(|v| v.as_str())
    }
    pub fn get_f64(&self, field: &str) -> Option<f64> {
        self.fields.get(field).and_then(|v| v.as_f64())
    }
    /// Deserialize the whole document (with `_id` and `_creationTime`) into `T`.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, FnError> {
        todo!()
    }
    /// The document as a Convex value, with `_id` and `_creationTime`.
    pub fn to_value(&self) -> Value {
        todo!()
    }
}

impl Serialize for Doc {
    fn serialize<S: serde::Serializer>(&self, _s: S) -> Result<S::Ok, S::Error> {
        todo!()
    }
}

/// Builds an index range: `eq`s on a prefix of the index fields, then at most one lower and one
/// upper bound on the next field.
#[derive(Clone, Debug, Default)]
pub struct IndexRange {
    _private: (),
}

impl IndexRange {
    pub fn eq(self, _field: &str, _value: impl Into<Value>) -> Self {
        todo!()
    }
    /// `eq(field, undefined)`: documents missing the field.
    pub fn eq_undefined(self, _field: &str) -> Self {
        todo!()
    }
    pub fn gt(self, _field: &str, _value: impl Into<Value>) -> Self {
        todo!()
    }
    pub fn gte(self, _field: &str, _value: impl Into<Value>) -> Self {
        todo!()
    }
    pub fn lt(self, _field: &str, _value: impl Into<Value>) -> Self {
        todo!()
    }
    pub fn lte(self, _field: &str, _value: impl Into<Value>) -> Self {
        todo!()
    }
}

#[derive(Clone, Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaginationOpts {
    pub num_items: f64,
    pub cursor: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PaginationResult {
    pub page: Vec<Doc>,
    pub is_done: bool,
    pub continue_cursor: String,
}

/// A query under construction. Nothing is read until a terminal method runs.
pub struct Query<'a> {
    _private: std::marker::PhantomData<&'a ()>,
}

impl<'a> Query<'a> {
    pub fn with_index(self, _index: &str, _range: impl FnOnce(IndexRange) -> IndexRange) -> Self {
        todo!()
    }
    /// Keep documents for which `predicate` holds (Convex's `.filter`, as a Rust closure;
    /// compare with [`Value`]'s total order for Convex semantics).
    pub fn filter(self, _predicate: impl Fn(&Doc) -> bool + 'a) -> Self {
        todo!()
    }
    pub fn order(self, _order: Order) -> Self {
        todo!()
    }
    pub fn collect(self) -> Result<Vec<Doc>, FnError> {
        todo!()
    }
    pub fn take(self, _n: usize) -> Result<Vec<Doc>, FnError> {
        todo!()
    }
    pub fn first(self) -> Result<Option<Doc>, FnError> {
        todo!()
    }
    /// Errors with `unique() query returned more than one result from table <t>` when > 1.
    pub fn unique(self) -> Result<Option<Doc>, FnError> {
        todo!()
    }
    pub fn paginate(self, _opts: PaginationOpts) -> Result<PaginationResult, FnError> {
        todo!()
    }
}

/// `ctx.db` in queries.
pub struct DatabaseReader<'a> {
    _private: std::marker::PhantomData<&'a ()>,
}

impl DatabaseReader<'_> {
    pub fn get(&self, _id: &str) -> Result<Option<Doc>, FnError> {
        todo!()
    }
    pub fn query(&self, _table: &str) -> Query<'_> {
        todo!()
    }
}

/// `ctx.db` in mutations: reads see the mutation's own writes.
pub struct DatabaseWriter<'a> {
    _private: std::marker::PhantomData<&'a ()>,
}

impl DatabaseWriter<'_> {
    pub fn get(&self, _id: &str) -> Result<Option<Doc>, FnError> {
        todo!()
    }
    pub fn query(&self, _table: &str) -> Query<'_> {
        todo!()
    }
    /// Insert `value` (a struct or map serializing to an object); returns the new `_id`.
    pub fn insert(&self, _table: &str, _value: impl Serialize) -> Result<String, FnError> {
        todo!()
    }
    /// Shallow merge of the object `value`'s fields.
    pub fn patch(&self, _id: &str, _value: impl Serialize) -> Result<(), FnError> {
        todo!()
    }
    /// Shallow merge where `None` removes a field (JS `undefined`).
    pub fn patch_fields(&self, _id: &str, _fields: Vec<(String, Option<Value>)>) -> Result<(), FnError> {
        todo!()
    }
    pub fn replace(&self, _id: &str, _value: impl Serialize) -> Result<(), FnError> {
        todo!()
    }
    pub fn delete(&self, _id: &str) -> Result<(), FnError> {
        todo!()
    }
}
