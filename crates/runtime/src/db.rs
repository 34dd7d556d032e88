//! The `db` API: `get`, `insert`, `patch`, `replace`, `delete`, and
//! `query(table).with_index(..).filter(..).order(..)` ending in `collect`, `first`, `unique`,
//! `take` or `paginate`. IDs are strings, as on the wire; they are decoded strictly here.
//!
//! Reads go through the store's [`DocReader`] (a snapshot for queries, the writer's transaction
//! for mutations). Handlers get `&ctx`, so the writer sits in a `RefCell` shared by `ctx.db` and
//! `ctx.scheduler`; the context lives only on the writer thread, so nothing here is `Sync`.

use std::cell::RefCell;

use base64::Engine as _;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tickethub_store::{Bound, DocReader, Document, IndexQuery, Order, StoreError, Visit, WriteTxn};
use tickethub_value::{DocumentId, IdTables, Object, TableNumber, Value};

use crate::FnError;

/// The writer's operations behind a trait object, so contexts can hold the writer without
/// naming `WriteTxn`'s own lifetime.
pub(crate) trait WriteOps: DocReader {
    fn insert_doc(&mut self, table: &str, fields: Object) -> Result<DocumentId, StoreError>;
    fn patch_doc(
        &mut self,
        id: DocumentId,
        fields: Vec<(String, Option<Value>)>,
    ) -> Result<(), StoreError>;
    fn replace_doc(&mut self, id: DocumentId, fields: Object) -> Result<(), StoreError>;
    fn delete_doc(&mut self, id: DocumentId) -> Result<(), StoreError>;
}

impl WriteOps for WriteTxn<'_> {
    fn insert_doc(&mut self, table: &str, fields: Object) -> Result<DocumentId, StoreError> {
        self.insert(table, fields)
    }
    fn patch_doc(
        &mut self,
        id: DocumentId,
        fields: Vec<(String, Option<Value>)>,
    ) -> Result<(), StoreError> {
        self.patch(id, fields)
    }
    fn replace_doc(&mut self, id: DocumentId, fields: Object) -> Result<(), StoreError> {
        self.replace(id, fields)
    }
    fn delete_doc(&mut self, id: DocumentId) -> Result<(), StoreError> {
        self.delete(id)
    }
}

/// The writer's transaction, shared by `ctx.db` and `ctx.scheduler` of one mutation.
pub(crate) struct TxnCell<'t> {
    cell: RefCell<&'t mut dyn WriteOps>,
}

impl<'t> TxnCell<'t> {
    pub(crate) fn new(txn: &'t mut dyn WriteOps) -> TxnCell<'t> {
        TxnCell {
            cell: RefCell::new(txn),
        }
    }
}

/// Access to a [`TxnCell`] without naming its lifetime, so the contexts holding it stay
/// covariant (a `&RefCell<&mut T>` would pin every borrow to the transaction's lifetime).
pub(crate) trait TxnAccess {
    fn read_with(&self, f: &mut dyn FnMut(&dyn DocReader)) -> Result<(), FnError>;
    fn write_with(&self, f: &mut dyn FnMut(&mut dyn WriteOps)) -> Result<(), FnError>;
}

impl TxnAccess for TxnCell<'_> {
    fn read_with(&self, f: &mut dyn FnMut(&dyn DocReader)) -> Result<(), FnError> {
        // Only fails when a read is attempted from inside a write, or a write from inside a read
        // (e.g. from a filter closure while the scan runs): a bug in the function.
        let guard = self
            .cell
            .try_borrow()
            .map_err(|_| FnError::msg("ctx.db was read while a write was in progress"))?;
        let reader: &dyn DocReader = &**guard;
        f(reader);
        Ok(())
    }
    fn write_with(&self, f: &mut dyn FnMut(&mut dyn WriteOps)) -> Result<(), FnError> {
        let mut guard = self
            .cell
            .try_borrow_mut()
            .map_err(|_| FnError::msg("ctx.db was written to while a read was in progress"))?;
        f(&mut **guard);
        Ok(())
    }
}

/// Run `f` with the writer (a typed front for [`TxnAccess::write_with`]).
pub(crate) fn with_writer<R>(
    txn: &dyn TxnAccess,
    f: impl FnOnce(&mut dyn WriteOps) -> R,
) -> Result<R, FnError> {
    let mut f = Some(f);
    let mut out = None;
    txn.write_with(&mut |w| out = f.take().map(|f| f(w)))?;
    out.ok_or_else(|| FnError::Internal("writer callback did not run".into()))
}

/// Where reads come from.
#[derive(Clone, Copy)]
pub(crate) enum Source<'a> {
    Snapshot(&'a dyn DocReader),
    Writer(&'a dyn TxnAccess),
}

impl Source<'_> {
    pub(crate) fn with_reader<R>(&self, f: impl FnOnce(&dyn DocReader) -> R) -> Result<R, FnError> {
        match self {
            Source::Snapshot(reader) => Ok(f(*reader)),
            Source::Writer(txn) => {
                let mut f = Some(f);
                let mut out = None;
                txn.read_with(&mut |r| out = f.take().map(|f| f(r)))?;
                out.ok_or_else(|| FnError::Internal("reader callback did not run".into()))
            }
        }
    }

    fn get(&self, id: &str) -> Result<Option<Doc>, FnError> {
        let id = DocumentId::decode(id)?;
        Ok(self.with_reader(|r| r.get(id))??.map(Doc::from_document))
    }
}

/// `v.id("t")` checks against the tables the current transaction knows.
pub(crate) struct SourceTables<'s, 'a>(pub(crate) &'s Source<'a>);

impl IdTables for SourceTables<'_, '_> {
    fn table_number(&self, table: &str) -> Option<TableNumber> {
        self.0.with_reader(|r| r.table_number(table)).ok().flatten()
    }
}

/// A document as functions see it.
#[derive(Clone, Debug, PartialEq)]
pub struct Doc {
    pub id: String,
    pub creation_time: f64,
    pub fields: Object,
}

impl Doc {
    pub(crate) fn from_document(d: Document) -> Doc {
        Doc {
            id: d.id.encode(),
            creation_time: d.creation_time,
            fields: d.fields,
        }
    }
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
        tickethub_value::from_value(&self.to_value()).map_err(|e| {
            FnError::msg(format!(
                "Document {} does not have the expected shape: {e}",
                self.id
            ))
        })
    }
    /// The document as a Convex value, with `_id` and `_creationTime`.
    pub fn to_value(&self) -> Value {
        let mut fields = self.fields.clone();
        fields.insert("_id".into(), Value::String(self.id.clone()));
        fields.insert("_creationTime".into(), Value::Float64(self.creation_time));
        Value::Object(fields)
    }
}

impl Serialize for Doc {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        // Same shape as `to_value`, without cloning the fields.
        let mut map = s.serialize_map(Some(self.fields.len() + 2))?;
        map.serialize_entry("_creationTime", &self.creation_time)?;
        map.serialize_entry("_id", &self.id)?;
        for (k, v) in &self.fields {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// Builds an index range: `eq`s on a prefix of the index fields, then at most one lower and one
/// upper bound on the next field.
#[derive(Clone, Debug, Default)]
pub struct IndexRange {
    eq: Vec<(String, Option<Value>)>,
    lower: Option<Bound>,
    upper: Option<Bound>,
    /// The first misuse of the builder (reported when the query runs).
    misuse: Option<String>,
}

impl IndexRange {
    fn push_eq(mut self, field: &str, value: Option<Value>) -> Self {
        if self.lower.is_some() || self.upper.is_some() {
            self.note_misuse(format!("eq(\"{field}\") must come before the range bounds"));
        }
        self.eq.push((field.to_string(), value));
        self
    }
    fn note_misuse(&mut self, what: String) {
        self.misuse.get_or_insert(what);
    }
    fn set_lower(mut self, field: &str, value: Value, inclusive: bool) -> Self {
        if self.lower.is_some() {
            self.note_misuse(format!("a second lower bound (on \"{field}\")"));
        }
        self.lower = Some(Bound {
            field: field.to_string(),
            value,
            inclusive,
        });
        self
    }
    fn set_upper(mut self, field: &str, value: Value, inclusive: bool) -> Self {
        if self.upper.is_some() {
            self.note_misuse(format!("a second upper bound (on \"{field}\")"));
        }
        self.upper = Some(Bound {
            field: field.to_string(),
            value,
            inclusive,
        });
        self
    }
    pub fn eq(self, field: &str, value: impl Into<Value>) -> Self {
        self.push_eq(field, Some(value.into()))
    }
    /// `eq(field, undefined)`: documents missing the field.
    pub fn eq_undefined(self, field: &str) -> Self {
        self.push_eq(field, None)
    }
    pub fn gt(self, field: &str, value: impl Into<Value>) -> Self {
        self.set_lower(field, value.into(), false)
    }
    pub fn gte(self, field: &str, value: impl Into<Value>) -> Self {
        self.set_lower(field, value.into(), true)
    }
    pub fn lt(self, field: &str, value: impl Into<Value>) -> Self {
        self.set_upper(field, value.into(), false)
    }
    pub fn lte(self, field: &str, value: impl Into<Value>) -> Self {
        self.set_upper(field, value.into(), true)
    }
}

/// Largest page `paginate` serves (Convex's bound).
pub const MAX_PAGE_SIZE: usize = 32_000;

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

/// Opaque pagination cursors: a position in the scan. `s` is the start; `k<base64url>` is
/// "after this index key". A cursor at the end of the range is the last key read, so documents
/// added later are found by the next page rather than skipped.
mod cursor {
    use super::*;

    pub(super) const START: &str = "s";

    pub(super) fn encode(key: Option<&[u8]>) -> String {
        match key {
            None => START.to_string(),
            Some(key) => format!(
                "k{}",
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key)
            ),
        }
    }

    pub(super) fn decode(cursor: Option<&str>) -> Result<Option<Vec<u8>>, FnError> {
        match cursor {
            None | Some(START) => Ok(None),
            Some(text) => {
                let encoded = text.strip_prefix('k').ok_or(StoreError::InvalidCursor)?;
                let key = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(encoded)
                    .map_err(|_| StoreError::InvalidCursor)?;
                Ok(Some(key))
            }
        }
    }
}

type Predicate<'a> = Box<dyn Fn(&Doc) -> bool + 'a>;

/// What one scan produced.
struct Scanned {
    docs: Vec<Doc>,
    /// Index key of the last entry read (matching the filters or not).
    last_key: Option<Vec<u8>>,
    /// Whether the scan reached the end of the range.
    exhausted: bool,
}

/// A query under construction. Nothing is read until a terminal method runs.
pub struct Query<'a> {
    source: Source<'a>,
    table: String,
    index: Option<(String, IndexRange)>,
    order: Option<Order>,
    filters: Vec<Predicate<'a>>,
    misuse: Option<String>,
}

impl<'a> Query<'a> {
    pub(crate) fn new(source: Source<'a>, table: &str) -> Query<'a> {
        Query {
            source,
            table: table.to_string(),
            index: None,
            order: None,
            filters: Vec::new(),
            misuse: None,
        }
    }

    pub fn with_index(mut self, index: &str, range: impl FnOnce(IndexRange) -> IndexRange) -> Self {
        if self.index.is_some() {
            self.misuse
                .get_or_insert_with(|| "withIndex() may be called only once".to_string());
        }
        self.index = Some((index.to_string(), range(IndexRange::default())));
        self
    }
    /// Keep documents for which `predicate` holds (Convex's `.filter`, as a Rust closure;
    /// compare with [`Value`]'s total order for Convex semantics). Runs while scanning, so
    /// `first()` and `take(n)` stop as soon as they have enough matches.
    pub fn filter(mut self, predicate: impl Fn(&Doc) -> bool + 'a) -> Self {
        self.filters.push(Box::new(predicate));
        self
    }
    pub fn order(mut self, order: Order) -> Self {
        if self.order.is_some() {
            self.misuse
                .get_or_insert_with(|| "order() may be called only once".to_string());
        }
        self.order = Some(order);
        self
    }

    fn index_query(&self) -> Result<IndexQuery, FnError> {
        if let Some(misuse) = &self.misuse {
            return Err(FnError::msg(format!(
                "Invalid query on table \"{}\": {misuse}",
                self.table
            )));
        }
        let order = self.order.unwrap_or_default();
        match &self.index {
            None => Ok(IndexQuery::full_scan(&self.table, order)),
            Some((index, range)) => {
                if let Some(misuse) = &range.misuse {
                    return Err(StoreError::InvalidIndexRange(format!(
                        "Invalid index range for {}.{index}: {misuse}",
                        self.table
                    ))
                    .into());
                }
                Ok(IndexQuery {
                    table: self.table.clone(),
                    index: index.clone(),
                    eq: range.eq.clone(),
                    lower: range.lower.clone(),
                    upper: range.upper.clone(),
                    order,
                })
            }
        }
    }

    /// Walk the range from `resume_after`, keeping filter matches, until `limit` matches.
    fn scan(&self, resume_after: Option<&[u8]>, limit: Option<usize>) -> Result<Scanned, FnError> {
        let query = self.index_query()?;
        let mut scanned = Scanned {
            docs: Vec::new(),
            last_key: None,
            exhausted: true,
        };
        if limit == Some(0) {
            scanned.exhausted = false;
            return Ok(scanned);
        }
        self.source.with_reader(|reader| {
            reader.scan(&query, resume_after, &mut |key, document| {
                scanned.last_key = Some(key.to_vec());
                let doc = Doc::from_document(document);
                if self.filters.iter().all(|keep| keep(&doc)) {
                    scanned.docs.push(doc);
                    if limit.is_some_and(|n| scanned.docs.len() >= n) {
                        scanned.exhausted = false;
                        return Ok(Visit::Stop);
                    }
                }
                Ok(Visit::Continue)
            })
        })??;
        Ok(scanned)
    }

    pub fn collect(self) -> Result<Vec<Doc>, FnError> {
        Ok(self.scan(None, None)?.docs)
    }
    pub fn take(self, n: usize) -> Result<Vec<Doc>, FnError> {
        Ok(self.scan(None, Some(n))?.docs)
    }
    pub fn first(self) -> Result<Option<Doc>, FnError> {
        Ok(self.scan(None, Some(1))?.docs.into_iter().next())
    }
    /// Errors with `unique() query returned more than one result from table <t>` when > 1.
    pub fn unique(self) -> Result<Option<Doc>, FnError> {
        let mut docs = self.scan(None, Some(2))?.docs;
        if docs.len() > 1 {
            return Err(FnError::msg(format!(
                "unique() query returned more than one result from table {}",
                self.table
            )));
        }
        Ok(docs.pop())
    }
    pub fn paginate(self, opts: PaginationOpts) -> Result<PaginationResult, FnError> {
        let n = opts.num_items;
        if !(n.is_finite() && n >= 1.0 && n <= MAX_PAGE_SIZE as f64) {
            return Err(FnError::msg(format!(
                "paginationOpts.numItems must be between 1 and {MAX_PAGE_SIZE}, got {n}"
            )));
        }
        let resume_after = cursor::decode(opts.cursor.as_deref())?;
        let scanned = self.scan(resume_after.as_deref(), Some(n as usize))?;
        // Nothing read: stay where we were (the start, or the given cursor).
        let position = scanned.last_key.or(resume_after);
        Ok(PaginationResult {
            page: scanned.docs,
            is_done: scanned.exhausted,
            continue_cursor: cursor::encode(position.as_deref()),
        })
    }
}

/// `ctx.db` in queries.
#[derive(Clone, Copy)]
pub struct DatabaseReader<'a> {
    pub(crate) source: Source<'a>,
}

impl DatabaseReader<'_> {
    pub fn get(&self, id: &str) -> Result<Option<Doc>, FnError> {
        self.source.get(id)
    }
    pub fn query(&self, table: &str) -> Query<'_> {
        Query::new(self.source, table)
    }
}

/// `ctx.db` in mutations: reads see the mutation's own writes.
pub struct DatabaseWriter<'a> {
    pub(crate) txn: &'a dyn TxnAccess,
}

/// Serialize a write's value; it must be an object.
fn object_of(what: &str, value: impl Serialize) -> Result<Object, FnError> {
    match tickethub_value::to_value(&value) {
        Ok(Value::Object(fields)) => Ok(fields),
        Ok(other) => Err(FnError::msg(format!(
            "{what} expects an object, got {}",
            other.type_name()
        ))),
        Err(e) => Err(FnError::msg(format!(
            "{what}: the value is not a Convex value: {e}"
        ))),
    }
}

impl<'a> DatabaseWriter<'a> {
    pub(crate) fn source(&self) -> Source<'a> {
        Source::Writer(self.txn)
    }
    fn write<R>(
        &self,
        f: impl FnOnce(&mut dyn WriteOps) -> Result<R, StoreError>,
    ) -> Result<R, FnError> {
        Ok(with_writer(self.txn, f)??)
    }
    /// A reader over this transaction (e.g. for helpers written against `DatabaseReader`).
    pub fn reader(&self) -> DatabaseReader<'a> {
        DatabaseReader {
            source: self.source(),
        }
    }
    pub fn get(&self, id: &str) -> Result<Option<Doc>, FnError> {
        self.source().get(id)
    }
    pub fn query(&self, table: &str) -> Query<'_> {
        Query::new(self.source(), table)
    }
    /// Insert `value` (a struct or map serializing to an object); returns the new `_id`.
    /// A `None` field serializes as `null`; to leave an optional field out (JS `undefined`),
    /// mark it `#[serde(skip_serializing_if = "Option::is_none")]`.
    pub fn insert(&self, table: &str, value: impl Serialize) -> Result<String, FnError> {
        let fields = object_of("insert()", value)?;
        Ok(self.write(|w| w.insert_doc(table, fields))?.encode())
    }
    /// Shallow merge of the object `value`'s fields.
    pub fn patch(&self, id: &str, value: impl Serialize) -> Result<(), FnError> {
        let fields = object_of("patch()", value)?;
        self.patch_fields(id, fields.into_iter().map(|(k, v)| (k, Some(v))).collect())
    }
    /// Shallow merge where `None` removes a field (JS `undefined`).
    pub fn patch_fields(
        &self,
        id: &str,
        fields: Vec<(String, Option<Value>)>,
    ) -> Result<(), FnError> {
        let id = DocumentId::decode(id)?;
        self.write(|w| w.patch_doc(id, fields))
    }
    pub fn replace(&self, id: &str, value: impl Serialize) -> Result<(), FnError> {
        let fields = object_of("replace()", value)?;
        let id = DocumentId::decode(id)?;
        self.write(|w| w.replace_doc(id, fields))
    }
    pub fn delete(&self, id: &str) -> Result<(), FnError> {
        let id = DocumentId::decode(id)?;
        self.write(|w| w.delete_doc(id))
    }
}
