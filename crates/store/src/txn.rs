//! Transactions. A [`ReadTxn`] is one SQLite read transaction on a pooled reader connection: one
//! consistent snapshot. A [`WriteTxn`] exists only inside a job on the writer thread; it reads its
//! own writes.

use tickethub_value::{DocumentId, Object, TableNumber, Value};

use crate::{IndexQuery, Page, PageRequest, ReadSet, StoreError, Timestamp};

#[derive(Clone, Debug, PartialEq)]
pub struct Document {
    pub id: DocumentId,
    /// Milliseconds since the epoch, with a fractional part; strictly increasing across inserts.
    pub creation_time: f64,
    /// User fields (no `_id` / `_creationTime`).
    pub fields: Object,
}

impl Document {
    /// The document as clients see it: user fields plus `_id` and `_creationTime`.
    pub fn to_value(&self) -> Value {
        let mut o = self.fields.clone();
        o.insert("_id".into(), Value::String(self.id.encode()));
        o.insert("_creationTime".into(), Value::Float64(self.creation_time));
        Value::Object(o)
    }
}

/// Tells a scan whether to go on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Visit {
    Continue,
    Stop,
}

/// Reads shared by snapshots and the writer. Every read is recorded in the transaction's read set
/// (for live queries) and counted against the per-transaction read caps.
pub trait DocReader {
    /// The snapshot's commit timestamp.
    fn ts(&self) -> Timestamp;
    fn table_number(&self, table: &str) -> Option<TableNumber>;
    fn table_name(&self, number: TableNumber) -> Option<String>;
    /// `Ok(None)` for a well-formed ID whose document is gone (or whose table is unknown).
    fn get(&self, id: DocumentId) -> Result<Option<Document>, StoreError>;
    /// Walk an index range lazily in the query's order, starting after `resume_after` (an index key
    /// previously handed to `visit`) when given. `visit` gets each entry's index key and document
    /// and decides whether to go on: `first()` reads one entry, not the range.
    fn scan(
        &self,
        query: &IndexQuery,
        resume_after: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], Document) -> Result<Visit, StoreError>,
    ) -> Result<(), StoreError>;
    /// Convenience over `scan`: up to `limit` documents.
    fn collect(&self, query: &IndexQuery, limit: Option<usize>) -> Result<Vec<Document>, StoreError>;
    /// Convenience over `scan`: a page with an opaque cursor.
    fn paginate(&self, query: &IndexQuery, page: &PageRequest) -> Result<Page, StoreError>;
    /// The index ranges read so far.
    fn read_set(&self) -> ReadSet;
}

/// A consistent snapshot for queries. Dropping it ends the read transaction.
pub struct ReadTxn {
    _private: (),
}

/// The writer's transaction, handed to a job on the writer thread.
pub struct WriteTxn<'a> {
    _private: std::marker::PhantomData<&'a ()>,
}

impl<'a> WriteTxn<'a> {
    /// Insert a document (validated against the schema and the limits); returns its new ID.
    pub fn insert(&mut self, _table: &str, _fields: Object) -> Result<DocumentId, StoreError> {
        todo!()
    }
    /// Shallow merge: `Some(v)` sets a field, `None` removes it. System fields may not be changed.
    pub fn patch(&mut self, _id: DocumentId, _fields: Vec<(String, Option<Value>)>) -> Result<(), StoreError> {
        todo!()
    }
    /// Replace the whole body, keeping `_id` and `_creationTime`.
    pub fn replace(&mut self, _id: DocumentId, _fields: Object) -> Result<(), StoreError> {
        todo!()
    }
    pub fn delete(&mut self, _id: DocumentId) -> Result<(), StoreError> {
        todo!()
    }
}
