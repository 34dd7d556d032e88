//! [`Store`]: opening (migration, index backfill, validation of stored data), reader snapshots,
//! and the writer thread with group commit.

use std::path::Path;
use std::sync::Arc;

use crate::{ReadTxn, Schema, StoreError, Timestamp, WriteSet, WriteTxn};

/// What a mutation job decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Keep the job's writes; they commit with its batch.
    Commit,
    /// Undo the job's writes (its SAVEPOINT is rolled back); other jobs in the batch are unaffected.
    Rollback,
}

/// The result of a committed job, given to its `done` callback once the batch is durable.
#[derive(Clone, Debug)]
pub struct CommitInfo {
    /// The commit's timestamp; for a rolled-back or read-only job, the snapshot it read at.
    pub ts: Timestamp,
    pub writes: Arc<WriteSet>,
}

#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Reader connections in the pool (bounds concurrent snapshots).
    pub readers: usize,
    /// Most jobs one batch may hold before it commits.
    pub max_batch: usize,
    /// fsync on every commit (SQLite `synchronous=FULL` in WAL). Only benchmarks turn it off.
    pub durable: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions { readers: 4, max_batch: 256, durable: true }
    }
}

pub type Job = Box<dyn FnOnce(&mut WriteTxn<'_>) -> Outcome + Send>;
pub type Done = Box<dyn FnOnce(Result<CommitInfo, StoreError>) + Send>;
/// Called on the writer thread after each durable batch, with the commits it made, in order.
pub type CommitHook = Box<dyn Fn(&[CommitInfo]) + Send + Sync>;

/// Cheap to clone; all clones share one database.
#[derive(Clone)]
pub struct Store {
    _inner: Arc<()>,
}

impl Store {
    /// Open (or create) `dir/tickethub.sqlite3`, apply `schema` (new index → backfill, removed
    /// index → drop, changed validator → check stored documents, refusing to open on the first
    /// violation).
    pub fn open(_dir: &Path, _schema: Schema, _options: StoreOptions) -> Result<Store, StoreError> {
        todo!()
    }
    /// A consistent snapshot at the latest commit.
    pub fn read(&self) -> Result<ReadTxn, StoreError> {
        todo!()
    }
    /// Queue a job for the writer thread. `done` is called after the batch holding the job is
    /// durable (or has failed); it must not block.
    pub fn submit(&self, _job: Job, _done: Done) {
        todo!()
    }
    /// Blocking convenience over `submit`: run `f`; commit on `Ok`, roll back on `Err`.
    pub fn mutate<R, E, F>(&self, _f: F) -> Result<(R, CommitInfo), E>
    where
        R: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&mut WriteTxn<'_>) -> Result<R, E> + Send + 'static,
    {
        todo!()
    }
    pub fn latest_ts(&self) -> Timestamp {
        todo!()
    }
    /// Register a hook told of every durable batch (live queries use it).
    pub fn on_commit(&self, _hook: CommitHook) {
        todo!()
    }
    /// The schema the store was opened with.
    pub fn schema(&self) -> &Schema {
        todo!()
    }
    /// Stop the writer after the queued jobs, checkpoint the WAL, close connections.
    pub fn close(&self) -> Result<(), StoreError> {
        todo!()
    }
}
