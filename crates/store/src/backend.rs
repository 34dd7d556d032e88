//! What the store needs from a storage engine. Everything above this line (transactions, the
//! writer loop with group commit, migration logic, the commit log) is shared; each engine
//! (`sqlite`, `postgres`) answers these few calls.
//!
//! - [`Reads`]: point reads and ordered range scans over one consistent view.
//! - [`Snapshot`] / [`SnapshotSource`]: read-only views for queries, pooled.
//! - [`BatchWriter`]: the one writer's connection: a batch of jobs, each of which can be undone
//!   alone, committed durably as a whole.
//! - [`MigrationConn`]: the catalog tables and the meta values, for migration at open.

use tickethub_value::{DocumentId, TableNumber};

use crate::catalog::IndexKind;
use crate::log::IndexId;
use crate::maintenance::MaintenanceReport;
use crate::{Order, StoreError, Timestamp, Visit};

/// One contiguous range of one index, `[start, end)`, in `order`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ScanRange<'a> {
    pub kind: IndexKind,
    pub index: IndexId,
    pub start: &'a [u8],
    /// `None`: up to the end of the index.
    pub end: Option<&'a [u8]>,
    pub order: Order,
}

/// One entry of a scan, borrowed from the engine's row buffer.
pub(crate) struct RawRow<'r> {
    /// The index key (for `by_id`, the document key).
    pub key: &'r [u8],
    /// The document key ([`crate::catalog::id_key`]).
    pub id: &'r [u8],
    pub creation_time: f64,
    /// The encoded body (`codec`).
    pub body: &'r [u8],
}

pub(crate) type RowVisitor<'a> = dyn FnMut(RawRow<'_>) -> Result<Visit, StoreError> + 'a;

/// A stored document before decoding.
pub(crate) struct StoredDoc {
    pub creation_time: f64,
    pub body: Vec<u8>,
}

/// Reads over one consistent view: a snapshot, or the writer's batch (which sees its own writes).
pub(crate) trait Reads {
    fn load(&self, id: &DocumentId) -> Result<Option<StoredDoc>, StoreError>;
    /// Visit the range's entries in order until `visit` says stop. Lazy: a scan that stops early
    /// reads little more than what it visited.
    fn scan(&self, range: ScanRange<'_>, visit: &mut RowVisitor<'_>) -> Result<(), StoreError>;
}

/// A read-only consistent view for queries. Dropping it ends the view and returns its connection.
pub(crate) trait Snapshot: Reads + Send {
    /// The commit timestamp the view reads at.
    fn ts(&self) -> Timestamp;
    /// Entries of an `Entries` index (the dashboard's document counts).
    fn count_entries(&self, index: IndexId) -> Result<u64, StoreError>;
}

/// Where snapshots come from: a pool whose size bounds the views open at once.
pub(crate) trait SnapshotSource: Send + Sync {
    /// A snapshot at the latest commit (at least `latest`, the newest this process has
    /// acknowledged or heard of), waiting (blocking the thread) while the pool is empty.
    fn take(&self, latest: Timestamp) -> Result<Box<dyn Snapshot>, StoreError>;
    /// A snapshot if a connection is free right now.
    fn try_take(&self, latest: Timestamp) -> Result<Option<Box<dyn Snapshot>>, StoreError>;
    /// Bytes the data takes on disk.
    fn disk_bytes(&self) -> u64;
    fn close(&self);
}

/// How a job's writes end inside a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Keep {
    /// Keep its writes in the batch.
    Release,
    /// Undo its writes.
    RollBack,
}

/// Written with every batch, in the same transaction: what the next open continues from.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BatchMeta {
    pub last_ts: Timestamp,
    pub last_creation: f64,
}

/// The writer's connection. Calls come in this shape:
/// `begin_batch (begin_job writes… end_job)* commit_batch | rollback_batch`.
pub(crate) trait BatchWriter: Reads + Send {
    /// The same connection for a schema migration between batches ([`crate::Store::put_tables`]).
    fn migration(&mut self) -> &mut dyn MigrationConn;
    fn begin_batch(&mut self) -> Result<(), StoreError>;
    fn begin_job(&mut self) -> Result<(), StoreError>;
    fn end_job(&mut self, keep: Keep) -> Result<(), StoreError>;
    /// Make the batch durable, with `meta` when it moved (a batch that wrote nothing leaves it);
    /// only then are its jobs told.
    ///
    /// `commits` are the batch's writing commits, oldest first, after the commit at `before`
    /// (cluster mode writes them to the commit-log table in the same transaction).
    fn commit_batch(
        &mut self,
        meta: Option<BatchMeta>,
        before: Timestamp,
        commits: &[crate::CommitInfo],
    ) -> Result<(), StoreError>;
    /// After a failed batch: nothing of it stays. Returns the meta to continue from (it may have
    /// moved if the engine cannot tell whether a lost commit landed).
    fn rollback_batch(&mut self, before: BatchMeta) -> BatchMeta;

    fn insert_document(
        &mut self,
        id: &DocumentId,
        creation_time: f64,
        body: &[u8],
    ) -> Result<(), StoreError>;
    fn update_document(&mut self, id: &DocumentId, body: &[u8]) -> Result<(), StoreError>;
    fn delete_document(&mut self, id: &DocumentId) -> Result<(), StoreError>;
    fn insert_entry(
        &mut self,
        index: IndexId,
        key: &[u8],
        id: &DocumentId,
    ) -> Result<(), StoreError>;
    fn delete_entry(&mut self, index: IndexId, key: &[u8]) -> Result<(), StoreError>;
    /// Documents of one table, as the batch sees them.
    fn count_documents(&self, table: TableNumber) -> Result<u64, StoreError>;
    /// Remove every document of `table` and the entries of `indexes` (its `Entries` indexes).
    /// Returns how many documents there were.
    fn clear_table(&mut self, table: TableNumber, indexes: &[IndexId]) -> Result<u64, StoreError>;

    /// Idle upkeep (SQLite returns free pages and truncates its WAL).
    fn maintain(&mut self, step_pages: u64) -> Result<MaintenanceReport, StoreError>;
    /// While idle: keep what the engine needs alive (Postgres renews the writer lease).
    fn idle_tick(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
    /// The longest the writer may stay idle before [`BatchWriter::idle_tick`]; `None`: never.
    fn idle_tick_every(&self) -> Option<std::time::Duration> {
        None
    }
    /// At close, after the last batch.
    fn close(&mut self) -> Result<(), StoreError>;
}

/// An index as the catalog tables store it.
pub(crate) struct StoredIndex {
    pub id: IndexId,
    pub table_number: u32,
    pub name: String,
    pub fields: Vec<String>,
}

/// Meta keys (what the next open continues from, and the migration's memory).
pub(crate) const META_LAST_TS: &str = "last_ts";
pub(crate) const META_LAST_CREATION: &str = "last_creation_time";
pub(crate) const META_NEXT_INDEX: &str = "next_index_id";
pub(crate) const META_SCHEMA: &str = "schema";

/// What migration needs: the catalog tables and meta values, in one transaction.
pub(crate) trait MigrationConn {
    fn begin(&mut self) -> Result<(), StoreError>;
    fn commit(&mut self) -> Result<(), StoreError>;
    fn rollback(&mut self);
    /// Create the store's tables when missing and check the data's format version.
    fn create_tables(&mut self) -> Result<(), StoreError>;

    fn meta_i64(&mut self, key: &str) -> Result<Option<i64>, StoreError>;
    fn meta_f64(&mut self, key: &str) -> Result<Option<f64>, StoreError>;
    fn meta_text(&mut self, key: &str) -> Result<Option<String>, StoreError>;
    fn set_meta_i64(&mut self, key: &str, value: i64) -> Result<(), StoreError>;
    fn set_meta_text(&mut self, key: &str, value: &str) -> Result<(), StoreError>;

    fn tables(&mut self) -> Result<Vec<(String, u32)>, StoreError>;
    fn insert_table(&mut self, name: &str, number: u32) -> Result<(), StoreError>;
    fn indexes(&mut self) -> Result<Vec<StoredIndex>, StoreError>;
    fn insert_index(&mut self, index: &StoredIndex) -> Result<(), StoreError>;
    /// Drop an index's definition and entries.
    fn drop_index(&mut self, id: IndexId) -> Result<(), StoreError>;

    /// Up to `limit` documents of `table` in id order, after the id key `after` when given.
    fn documents_page(
        &mut self,
        table: TableNumber,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<RawDoc>, StoreError>;
    /// Add entries `(key, document key)` to an index being backfilled.
    fn insert_entries(
        &mut self,
        index: IndexId,
        entries: &[(Vec<u8>, Vec<u8>)],
    ) -> Result<(), StoreError>;
}

/// A document as migration pages through them.
pub(crate) struct RawDoc {
    /// The document key ([`crate::catalog::id_key`]).
    pub id: Vec<u8>,
    pub creation_time: f64,
    pub body: Vec<u8>,
}

/// The primary-key range of one table's documents: its number, big endian, is the key's prefix.
pub(crate) fn table_id_range(number: TableNumber) -> (Vec<u8>, Vec<u8>) {
    let start = number.0.to_be_bytes().to_vec();
    // Table numbers stay far below u32::MAX, so this does not wrap.
    let end = (number.0 + 1).to_be_bytes().to_vec();
    (start, end)
}
