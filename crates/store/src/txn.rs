//! Transactions. A [`ReadTxn`] is one engine snapshot (`backend::Snapshot`): one consistent view.
//! A [`WriteTxn`] exists only inside a job on the writer thread; it reads its own writes.

use std::cell::{Cell, RefCell};
use std::sync::Arc;

use tickethub_value::limits::check_document;
use tickethub_value::{DocumentId, Object, TableNumber, Validator, Value};

use crate::backend::{BatchWriter, Reads, ScanRange, Snapshot, StoredDoc};
use crate::catalog::{id_from_key, id_key, Catalog, IndexKind, TableInfo};
use crate::codec::{decode_fields, encode_fields};
use crate::query::{plan, Cursor, MAX_PAGE_ITEMS};
use crate::writer::{now_unix_ms, CreationClock};
use crate::{
    IndexQuery, Order, Page, PageRequest, ReadRange, ReadSet, StoreError, Timestamp, WriteSet,
    WrittenKey,
};

/// Per-transaction caps (Convex's limits). Each is checked as the transaction goes, so the
/// offending read or write fails rather than the commit.
pub mod caps {
    pub const MAX_DOCS_SCANNED: usize = 32_000;
    pub const MAX_BYTES_READ: usize = 16 << 20;
    pub const MAX_INDEX_RANGES: usize = 4_096;
    pub const MAX_DOCS_WRITTEN: usize = 16_000;
    pub const MAX_BYTES_WRITTEN: usize = 16 << 20;
}

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

/// What a scan calls for each entry: its index key and document; the answer says whether to go on.
pub type ScanVisitor<'a> = dyn FnMut(&[u8], Document) -> Result<Visit, StoreError> + 'a;

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
        visit: &mut ScanVisitor<'_>,
    ) -> Result<(), StoreError>;
    /// Convenience over `scan`: up to `limit` documents.
    fn collect(
        &self,
        query: &IndexQuery,
        limit: Option<usize>,
    ) -> Result<Vec<Document>, StoreError> {
        let mut out = Vec::new();
        if limit == Some(0) {
            return Ok(out);
        }
        self.scan(query, None, &mut |_, doc| {
            out.push(doc);
            Ok(if limit.is_some_and(|l| out.len() >= l) {
                Visit::Stop
            } else {
                Visit::Continue
            })
        })?;
        Ok(out)
    }
    /// Convenience over `scan`: a page with an opaque cursor. `is_done` is true when the page came
    /// back short (so an exactly-full last page is followed by one empty page).
    fn paginate(&self, query: &IndexQuery, page: &PageRequest) -> Result<Page, StoreError> {
        if page.num_items == 0 || page.num_items > MAX_PAGE_ITEMS {
            return Err(StoreError::InvalidPagination(format!(
                "numItems must be between 1 and {MAX_PAGE_ITEMS}, got {}",
                page.num_items
            )));
        }
        let resume = match &page.cursor {
            None => None,
            Some(text) => match Cursor::decode(text)? {
                Cursor::End => {
                    return Ok(Page {
                        page: vec![],
                        is_done: true,
                        continue_cursor: Cursor::End.encode(),
                    })
                }
                Cursor::After(key) => Some(key),
            },
        };
        let mut docs = Vec::new();
        let mut last_key = None;
        self.scan(query, resume.as_deref(), &mut |key, doc| {
            docs.push(doc);
            if docs.len() >= page.num_items {
                last_key = Some(key.to_vec());
                return Ok(Visit::Stop);
            }
            last_key = Some(key.to_vec());
            Ok(Visit::Continue)
        })?;
        let is_done = docs.len() < page.num_items;
        let continue_cursor = match (is_done, last_key) {
            (true, _) => Cursor::End.encode(),
            (false, Some(key)) => Cursor::After(key).encode(),
            (false, None) => Cursor::End.encode(),
        };
        Ok(Page {
            page: docs,
            is_done,
            continue_cursor,
        })
    }
    /// The index ranges read so far.
    fn read_set(&self) -> ReadSet;
    /// Decode an ID string that must belong to `table`: malformed → `InvalidId`, another table's
    /// ID → [`StoreError::WrongTable`], unknown table → [`StoreError::UnknownTable`].
    fn decode_id(&self, table: &str, id: &str) -> Result<DocumentId, StoreError> {
        let expected = self
            .table_number(table)
            .ok_or_else(|| StoreError::UnknownTable(table.to_string()))?;
        let decoded = DocumentId::decode(id)?;
        if decoded.table != expected {
            let actual = self
                .table_name(decoded.table)
                .unwrap_or_else(|| format!("#{}", decoded.table.0));
            return Err(StoreError::WrongTable {
                id: id.to_string(),
                expected: table.to_string(),
                actual,
            });
        }
        Ok(decoded)
    }
}

/// What one transaction has read: its read set and the counters behind the read caps.
#[derive(Default)]
pub(crate) struct ReadTracker {
    read_set: RefCell<ReadSet>,
    docs_scanned: Cell<usize>,
    bytes_read: Cell<usize>,
    index_ranges: Cell<usize>,
}

impl ReadTracker {
    fn count_doc(&self, bytes: usize) -> Result<(), StoreError> {
        let docs = self.docs_scanned.get() + 1;
        let total = self.bytes_read.get() + bytes;
        self.docs_scanned.set(docs);
        self.bytes_read.set(total);
        if docs > caps::MAX_DOCS_SCANNED {
            return Err(StoreError::TransactionLimit(format!(
                "this transaction read more than {} documents; use an index range or paginate to read fewer",
                caps::MAX_DOCS_SCANNED
            )));
        }
        if total > caps::MAX_BYTES_READ {
            return Err(StoreError::TransactionLimit(format!(
                "this transaction read more than {} bytes; use an index range or paginate to read less",
                caps::MAX_BYTES_READ
            )));
        }
        Ok(())
    }
    fn count_range(&self) -> Result<(), StoreError> {
        let n = self.index_ranges.get() + 1;
        self.index_ranges.set(n);
        if n > caps::MAX_INDEX_RANGES {
            return Err(StoreError::TransactionLimit(format!(
                "this transaction queried more than {} index ranges",
                caps::MAX_INDEX_RANGES
            )));
        }
        Ok(())
    }
    fn record(&self, range: ReadRange) {
        self.read_set.borrow_mut().ranges.push(range);
    }
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::storage(e.to_string())
}

fn get_impl(
    reads: &dyn Reads,
    catalog: &Catalog,
    tracker: &ReadTracker,
    id: DocumentId,
) -> Result<Option<Document>, StoreError> {
    let Some(table) = catalog.table_by_number(id.table) else {
        return Ok(None);
    };
    let key = id_key(&id);
    let mut end = key.clone();
    end.push(0);
    tracker.record(ReadRange {
        index: table.by_id.id,
        start: key,
        end: Some(end),
    });
    let Some(StoredDoc {
        creation_time,
        body,
    }) = reads.load(&id)?
    else {
        return Ok(None);
    };
    tracker.count_doc(body.len())?;
    Ok(Some(Document {
        id,
        creation_time,
        fields: decode_fields(&body).map_err(corrupt)?,
    }))
}

fn scan_impl(
    reads: &dyn Reads,
    catalog: &Catalog,
    tracker: &ReadTracker,
    query: &IndexQuery,
    resume_after: Option<&[u8]>,
    visit: &mut ScanVisitor<'_>,
) -> Result<(), StoreError> {
    let mut plan = plan(catalog, query)?;
    tracker.count_range()?;
    if let Some(after) = resume_after {
        match plan.order {
            Order::Asc => {
                // The smallest key greater than `after` is `after` followed by a zero byte.
                let mut next = after.to_vec();
                next.push(0);
                plan.start = plan.start.max(next);
            }
            Order::Desc => {
                plan.end = Some(match plan.end {
                    Some(end) => end.min(after.to_vec()),
                    None => after.to_vec(),
                });
            }
        }
    }
    if plan.is_empty() {
        tracker.record(ReadRange {
            index: plan.index_id,
            start: plan.start,
            end: plan.end,
        });
        return Ok(());
    }
    let range = ScanRange {
        kind: plan.kind,
        index: plan.index_id,
        start: &plan.start,
        end: plan.end.as_deref(),
        order: plan.order,
    };
    let mut stopped_at: Option<Vec<u8>> = None;
    let mut outcome = Ok(());
    reads.scan(range, &mut |row| {
        let id = id_from_key(row.id).ok_or_else(|| corrupt("malformed document id in storage"))?;
        if let Err(e) = tracker.count_doc(row.body.len()) {
            outcome = Err(e);
            stopped_at = Some(row.key.to_vec());
            return Ok(Visit::Stop);
        }
        let doc = Document {
            id,
            creation_time: row.creation_time,
            fields: decode_fields(row.body).map_err(corrupt)?,
        };
        match visit(row.key, doc) {
            Ok(Visit::Continue) => Ok(Visit::Continue),
            Ok(Visit::Stop) => {
                stopped_at = Some(row.key.to_vec());
                Ok(Visit::Stop)
            }
            Err(e) => {
                outcome = Err(e);
                stopped_at = Some(row.key.to_vec());
                Ok(Visit::Stop)
            }
        }
    })?;
    // Record only what was actually covered: a live query that stopped early does not depend
    // on entries past the last one it saw.
    let range = match (stopped_at, plan.order) {
        (None, _) => ReadRange {
            index: plan.index_id,
            start: plan.start,
            end: plan.end,
        },
        (Some(mut last), Order::Asc) => {
            last.push(0);
            ReadRange {
                index: plan.index_id,
                start: plan.start,
                end: Some(last),
            }
        }
        (Some(last), Order::Desc) => ReadRange {
            index: plan.index_id,
            start: last,
            end: plan.end,
        },
    };
    tracker.record(range);
    outcome
}

/// A consistent snapshot for queries. Dropping it ends the read transaction and returns the
/// connection to the pool. `Send` but not `Sync`: use it from one thread at a time.
///
/// Reading through the `ReadTxn` itself counts every read against one budget and one read set.
/// A snapshot shared by several queries (a pinned timestamp) gives each its own with
/// [`ReadTxn::new_query`].
pub struct ReadTxn {
    pub(crate) snapshot: Box<dyn Snapshot>,
    pub(crate) catalog: Arc<Catalog>,
    tracker: ReadTracker,
}

impl ReadTxn {
    pub(crate) fn new(snapshot: Box<dyn Snapshot>, catalog: Arc<Catalog>) -> ReadTxn {
        ReadTxn {
            snapshot,
            catalog,
            tracker: ReadTracker::default(),
        }
    }

    /// How many documents `table` holds at this snapshot. Counts the `by_creation_time` index's
    /// entries (small rows, no document bodies): linear in the table, but about 50 ns an entry,
    /// and it is neither counted against the read caps nor recorded in the read set (the dashboard
    /// uses it, not functions).
    pub fn count(&self, table: &str) -> Result<u64, StoreError> {
        let info = self.catalog.require(table)?;
        self.snapshot.count_entries(info.by_creation_time.id)
    }

    /// Start one more query on this snapshot, with its own read budget (the per-transaction read
    /// caps) and its own read set: queries sharing a pinned snapshot must not use up each other's
    /// budget, and a live query depends only on what it read itself.
    pub fn new_query(&self) -> SnapshotQuery<'_> {
        SnapshotQuery {
            txn: self,
            tracker: ReadTracker::default(),
        }
    }
}

/// One query's reads on a shared snapshot (see [`ReadTxn::new_query`]).
pub struct SnapshotQuery<'a> {
    txn: &'a ReadTxn,
    tracker: ReadTracker,
}

impl DocReader for SnapshotQuery<'_> {
    fn ts(&self) -> Timestamp {
        self.txn.snapshot.ts()
    }
    fn table_number(&self, table: &str) -> Option<TableNumber> {
        self.txn.table_number(table)
    }
    fn table_name(&self, number: TableNumber) -> Option<String> {
        self.txn.table_name(number)
    }
    fn get(&self, id: DocumentId) -> Result<Option<Document>, StoreError> {
        get_impl(&*self.txn.snapshot, &self.txn.catalog, &self.tracker, id)
    }
    fn scan(
        &self,
        query: &IndexQuery,
        resume_after: Option<&[u8]>,
        visit: &mut ScanVisitor<'_>,
    ) -> Result<(), StoreError> {
        scan_impl(
            &*self.txn.snapshot,
            &self.txn.catalog,
            &self.tracker,
            query,
            resume_after,
            visit,
        )
    }
    fn read_set(&self) -> ReadSet {
        self.tracker.read_set.borrow().clone()
    }
}

impl DocReader for ReadTxn {
    fn ts(&self) -> Timestamp {
        self.snapshot.ts()
    }
    fn table_number(&self, table: &str) -> Option<TableNumber> {
        self.catalog.table(table).map(|t| t.number)
    }
    fn table_name(&self, number: TableNumber) -> Option<String> {
        self.catalog
            .table_by_number(number)
            .map(|t| t.def.name.clone())
    }
    fn get(&self, id: DocumentId) -> Result<Option<Document>, StoreError> {
        get_impl(&*self.snapshot, &self.catalog, &self.tracker, id)
    }
    fn scan(
        &self,
        query: &IndexQuery,
        resume_after: Option<&[u8]>,
        visit: &mut ScanVisitor<'_>,
    ) -> Result<(), StoreError> {
        scan_impl(
            &*self.snapshot,
            &self.catalog,
            &self.tracker,
            query,
            resume_after,
            visit,
        )
    }
    fn read_set(&self) -> ReadSet {
        self.tracker.read_set.borrow().clone()
    }
}

/// The writer's transaction, handed to a job on the writer thread.
pub struct WriteTxn<'a> {
    pub(crate) conn: &'a mut dyn BatchWriter,
    pub(crate) catalog: &'a Catalog,
    pub(crate) clock: &'a mut CreationClock,
    ts: Timestamp,
    tracker: ReadTracker,
    pub(crate) writes: WriteSet,
    docs_written: usize,
    bytes_written: usize,
    /// A bulk transaction (see [`WriteTxn::start_bulk`]): no write caps, and instead of its
    /// written keys it reports "everything may have changed".
    pub(crate) bulk: bool,
}

impl<'a> WriteTxn<'a> {
    pub(crate) fn new(
        conn: &'a mut dyn BatchWriter,
        catalog: &'a Catalog,
        clock: &'a mut CreationClock,
        ts: Timestamp,
    ) -> WriteTxn<'a> {
        WriteTxn {
            conn,
            catalog,
            clock,
            ts,
            tracker: ReadTracker::default(),
            writes: WriteSet::default(),
            docs_written: 0,
            bytes_written: 0,
            bulk: false,
        }
    }

    pub(crate) fn into_writes(self) -> WriteSet {
        self.writes
    }

    /// The keys this transaction has written so far.
    pub fn write_set(&self) -> &WriteSet {
        &self.writes
    }

    /// Insert a document (validated against the schema and the limits); returns its new ID.
    pub fn insert(&mut self, table: &str, fields: Object) -> Result<DocumentId, StoreError> {
        let info = self.catalog.require(table)?.clone();
        let body = self.check_write(&info, &fields)?;
        let creation_time = self.clock.next();
        let mut id = DocumentId::new_random(info.number, now_unix_ms());
        // Lead the internal id with the creation time (a positive f64's bits sort like the
        // number), keeping 6 random bytes and the day stamp: ids stay valid Convex ids, are
        // unique by construction, and new rows append to the right edge of the documents
        // B-tree instead of dirtying a random page per insert (which made every commit write
        // one page per document).
        id.internal[..8].copy_from_slice(&creation_time.to_bits().to_be_bytes());
        self.conn.insert_document(&id, creation_time, &body)?;
        let id_value = Value::String(id.encode());
        for index in info.all_indexes() {
            let key = index.key_of(&id, &id_value, creation_time, &fields);
            if index.kind == IndexKind::Entries {
                self.insert_entry(index.id, &key, &id)?;
            }
            self.note_write(index.id, key);
        }
        Ok(id)
    }

    /// Shallow merge: `Some(v)` sets a field, `None` removes it. System fields may not be changed.
    pub fn patch(
        &mut self,
        id: DocumentId,
        fields: Vec<(String, Option<Value>)>,
    ) -> Result<(), StoreError> {
        let (info, creation_time, mut body) = self
            .load_for_write(id)
            .map_err(|e| e.unwrap_or(StoreError::PatchMissing(id)))?;
        let old = body.clone();
        for (name, value) in fields {
            match value {
                Some(v) => {
                    body.insert(name, v);
                }
                None => {
                    body.remove(&name);
                }
            }
        }
        self.rewrite(&info, id, creation_time, &old, &body)
    }

    /// Replace the whole body, keeping `_id` and `_creationTime`.
    pub fn replace(&mut self, id: DocumentId, fields: Object) -> Result<(), StoreError> {
        let (info, creation_time, old) = self
            .load_for_write(id)
            .map_err(|e| e.unwrap_or(StoreError::ReplaceMissing(id)))?;
        self.rewrite(&info, id, creation_time, &old, &fields)
    }

    pub fn delete(&mut self, id: DocumentId) -> Result<(), StoreError> {
        let (info, creation_time, old) = self
            .load_for_write(id)
            .map_err(|e| e.unwrap_or(StoreError::DeleteMissing(id)))?;
        self.count_write(0)?;
        self.conn.delete_document(&id)?;
        let id_value = Value::String(id.encode());
        for index in info.all_indexes() {
            let key = index.key_of(&id, &id_value, creation_time, &old);
            if index.kind == IndexKind::Entries {
                self.delete_entry(index.id, &key)?;
            }
            self.note_write(index.id, key);
        }
        Ok(())
    }

    /// `Err(None)` when the document does not exist (the caller names the operation).
    fn load_for_write(
        &mut self,
        id: DocumentId,
    ) -> Result<(Arc<TableInfo>, f64, Object), Option<StoreError>> {
        let Some(info) = self.catalog.table_by_number(id.table).cloned() else {
            return Err(None);
        };
        let Some(stored) = self.conn.load(&id).map_err(Some)? else {
            return Err(None);
        };
        let fields = decode_fields(&stored.body).map_err(|e| Some(corrupt(e)))?;
        Ok((info, stored.creation_time, fields))
    }

    fn rewrite(
        &mut self,
        info: &TableInfo,
        id: DocumentId,
        creation_time: f64,
        old: &Object,
        new: &Object,
    ) -> Result<(), StoreError> {
        let body = self.check_write(info, new)?;
        self.conn.update_document(&id, &body)?;
        let id_value = Value::String(id.encode());
        for index in info.all_indexes() {
            let old_key = index.key_of(&id, &id_value, creation_time, old);
            let new_key = index.key_of(&id, &id_value, creation_time, new);
            if old_key != new_key {
                if index.kind == IndexKind::Entries {
                    self.delete_entry(index.id, &old_key)?;
                    self.insert_entry(index.id, &new_key, &id)?;
                }
                self.note_write(index.id, old_key);
            }
            // Even an unchanged key is reported: the document stored under it changed.
            self.note_write(index.id, new_key);
        }
        Ok(())
    }

    /// Limits, schema, and the write caps; returns the encoded body.
    pub(crate) fn check_write(
        &mut self,
        info: &TableInfo,
        fields: &Object,
    ) -> Result<Vec<u8>, StoreError> {
        check_document(fields)?;
        if info.def.validate {
            Validator::check_object(fields, &info.def.fields, self.catalog).map_err(|reason| {
                StoreError::SchemaMismatch {
                    table: info.def.name.clone(),
                    reason,
                }
            })?;
        }
        let body = encode_fields(fields);
        self.count_write(body.len())?;
        Ok(body)
    }

    /// Record a written index key for live queries; a bulk transaction records none (its commit
    /// says "everything", which keeps a million-row import from holding a million keys).
    pub(crate) fn note_write(&mut self, index: u32, key: Vec<u8>) {
        if self.bulk {
            self.writes.everything = true;
        } else {
            self.writes.keys.push(WrittenKey { index, key });
        }
    }

    pub(crate) fn count_write(&mut self, bytes: usize) -> Result<(), StoreError> {
        if self.bulk {
            return Ok(());
        }
        if self.docs_written + 1 > caps::MAX_DOCS_WRITTEN {
            return Err(StoreError::TransactionLimit(format!(
                "this transaction wrote more than {} documents; split the work across several mutations",
                caps::MAX_DOCS_WRITTEN
            )));
        }
        if self.bytes_written + bytes > caps::MAX_BYTES_WRITTEN {
            return Err(StoreError::TransactionLimit(format!(
                "this transaction wrote more than {} bytes; split the work across several mutations",
                caps::MAX_BYTES_WRITTEN
            )));
        }
        self.docs_written += 1;
        self.bytes_written += bytes;
        Ok(())
    }

    pub(crate) fn insert_entry(
        &mut self,
        index: u32,
        key: &[u8],
        id: &DocumentId,
    ) -> Result<(), StoreError> {
        self.conn.insert_entry(index, key, id)
    }

    fn delete_entry(&mut self, index: u32, key: &[u8]) -> Result<(), StoreError> {
        self.conn.delete_entry(index, key)
    }
}

impl DocReader for WriteTxn<'_> {
    fn ts(&self) -> Timestamp {
        self.ts
    }
    fn table_number(&self, table: &str) -> Option<TableNumber> {
        self.catalog.table(table).map(|t| t.number)
    }
    fn table_name(&self, number: TableNumber) -> Option<String> {
        self.catalog
            .table_by_number(number)
            .map(|t| t.def.name.clone())
    }
    fn get(&self, id: DocumentId) -> Result<Option<Document>, StoreError> {
        get_impl(&*self.conn, self.catalog, &self.tracker, id)
    }
    fn scan(
        &self,
        query: &IndexQuery,
        resume_after: Option<&[u8]>,
        visit: &mut ScanVisitor<'_>,
    ) -> Result<(), StoreError> {
        scan_impl(
            &*self.conn,
            self.catalog,
            &self.tracker,
            query,
            resume_after,
            visit,
        )
    }
    fn read_set(&self) -> ReadSet {
        self.tracker.read_set.borrow().clone()
    }
}
