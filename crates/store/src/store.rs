//! [`Store`], the facade: opening (connections, migration, the writer thread), reader snapshots,
//! and submitting jobs to the writer. The parts live in `connection` (connection setup and the
//! reader pool), `migrate` (schema migration) and `writer` (the writer loop with group commit).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use tickethub_knobs as knobs;

use crate::catalog::Catalog;
use crate::connection::{open_connection, ReaderPool, Role};
use crate::log::{CommitLog, IndexId};
use crate::maintenance::{ensure_incremental_vacuum, AutoVacuumMode, MaintenanceReport};
use crate::migrate::{migrate, Migrated};
use crate::writer::{CreationClock, IdleUpkeep, Message, Shared, Writer};
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

/// How to open a store. The defaults come from the knobs (`tickethub_knobs`); tests override
/// single fields.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Reader connections in the pool (bounds concurrent snapshots). At least 1.
    /// Default: [`knobs::READER_POOL_SIZE`].
    pub readers: usize,
    /// Most jobs one batch may hold before it commits. At least 1.
    /// Default: [`knobs::WRITER_MAX_BATCH`].
    pub max_batch: usize,
    /// Jobs queued for the writer beyond which [`Store::submit`] refuses new ones with
    /// [`StoreError::Overloaded`]. At least 1. Default: [`knobs::WRITER_QUEUE_CAPACITY`].
    pub queue_capacity: usize,
    /// Longest the writer waits for late jobs after a big batch. Default:
    /// [`knobs::WRITER_GATHER_WAIT`].
    pub gather_wait: Duration,
    /// fsync on every commit (SQLite `synchronous=FULL` in WAL). Only benchmarks turn it off.
    pub durable: bool,
    /// Idle time after a write before the writer returns free pages and truncates the WAL
    /// (`None`: never on its own; [`Store::maintain_now`] still works).
    /// Default: [`knobs::STORE_IDLE_MAINTENANCE_AFTER`].
    pub idle_maintenance_after: Option<Duration>,
    /// Free pages one upkeep step returns. At least 1.
    /// Default: [`knobs::INCREMENTAL_VACUUM_STEP_PAGES`].
    pub vacuum_step_pages: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            readers: *knobs::READER_POOL_SIZE,
            max_batch: *knobs::WRITER_MAX_BATCH,
            queue_capacity: *knobs::WRITER_QUEUE_CAPACITY,
            gather_wait: *knobs::WRITER_GATHER_WAIT,
            durable: true,
            idle_maintenance_after: Some(*knobs::STORE_IDLE_MAINTENANCE_AFTER),
            vacuum_step_pages: *knobs::INCREMENTAL_VACUUM_STEP_PAGES,
        }
    }
}

pub type Job = Box<dyn FnOnce(&mut WriteTxn<'_>) -> Outcome + Send>;
pub type Done = Box<dyn FnOnce(Result<CommitInfo, StoreError>) + Send>;
/// Called on the writer thread after each durable batch, with the commits it made, in order.
pub type CommitHook = Box<dyn Fn(&[CommitInfo]) + Send + Sync>;

/// The database file inside the store's directory.
pub const DB_FILE: &str = "tickethub.sqlite3";
/// First number given to a user table (as in Convex); system tables count up from 1.
pub const FIRST_USER_TABLE: u32 = 10_001;
/// Cheap to clone; all clones share one database.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    catalog: Arc<Catalog>,
    schema: Schema,
    readers: Arc<ReaderPool>,
    /// The writer's queue, bounded: a full queue refuses at once (see [`Store::submit`]).
    sender: RwLock<Option<mpsc::SyncSender<Message>>>,
    queue_capacity: usize,
    writer: Mutex<Option<JoinHandle<()>>>,
    shared: Arc<Shared>,
    /// The database file (its size, with the WAL's, is the database size operators see).
    db_path: std::path::PathBuf,
}

impl Store {
    /// Open (or create) `dir/tickethub.sqlite3`, apply `schema` (new index → backfill, removed
    /// index → drop, changed validator → check stored documents, refusing to open on the first
    /// violation).
    ///
    /// The store does not keep other processes out of `dir`: a server takes a
    /// [`crate::DataDirLock`] first.
    pub fn open(dir: &Path, schema: Schema, options: StoreOptions) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::storage(format!("creating {}: {e}", dir.display())))?;
        let path = dir.join(DB_FILE);
        // Before the writer connection, which would create, convert (WAL) or "repair" a file that
        // is not ours.
        crate::datafile::check_database_file(&path)?;
        let writer_conn = open_connection(&path, Role::Writer, options.durable)?;
        let Migrated {
            catalog,
            last_ts,
            last_creation,
        } = migrate(&writer_conn, &schema)?;
        let catalog = Arc::new(catalog);
        // Before any reader opens: the conversion's VACUUM needs the database to itself.
        if ensure_incremental_vacuum(&writer_conn)? == AutoVacuumMode::Converted {
            tracing::info!(path = %path.display(), "the database now returns freed pages");
        }

        let readers = (0..options.readers.max(1))
            .map(|_| open_connection(&path, Role::Reader, options.durable))
            .collect::<Result<Vec<_>, _>>()?;
        let readers = Arc::new(ReaderPool::new(readers));
        let shared = Arc::new(Shared {
            latest_ts: AtomicU64::new(last_ts.0),
            hooks: RwLock::new(Vec::new()),
            log: CommitLog::new(*tickethub_knobs::COMMIT_LOG_CAPACITY, last_ts),
        });
        let queue_capacity = options.queue_capacity.max(1);
        let (sender, receiver) = mpsc::sync_channel(queue_capacity);
        let writer = Writer {
            conn: writer_conn,
            catalog: catalog.clone(),
            clock: CreationClock {
                last: last_creation,
            },
            last_ts,
            max_batch: options.max_batch.max(1),
            gather_wait: options.gather_wait,
            shared: shared.clone(),
            last_batch_len: 0,
            idle_upkeep: IdleUpkeep {
                after: options.idle_maintenance_after,
                step_pages: options.vacuum_step_pages,
                due: false,
            },
        };
        let handle = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer.run(receiver))
            .map_err(|e| StoreError::storage(format!("spawning the writer thread: {e}")))?;
        Ok(Store {
            inner: Arc::new(Inner {
                catalog,
                schema,
                readers,
                sender: RwLock::new(Some(sender)),
                queue_capacity,
                writer: Mutex::new(Some(handle)),
                shared,
                db_path: path,
            }),
        })
    }

    /// A consistent snapshot at the latest commit. Blocks the thread while every reader is lent
    /// out: async callers use [`Store::try_read`] first and wait on a blocking thread.
    pub fn read(&self) -> Result<ReadTxn, StoreError> {
        let conn = self.inner.readers.take()?;
        ReadTxn::begin(conn, self.inner.readers.clone(), self.inner.catalog.clone())
    }

    /// A consistent snapshot at the latest commit if a reader is free right now; `Ok(None)` when
    /// every reader is lent out. Never blocks.
    pub fn try_read(&self) -> Result<Option<ReadTxn>, StoreError> {
        match self.inner.readers.try_take()? {
            Some(conn) => {
                ReadTxn::begin(conn, self.inner.readers.clone(), self.inner.catalog.clone())
                    .map(Some)
            }
            None => Ok(None),
        }
    }

    /// Queue a job for the writer thread. `done` is called after the batch holding the job is
    /// durable (or has failed); it must not block. When the queue already holds
    /// [`StoreOptions::queue_capacity`] jobs, `done` is called at once with
    /// [`StoreError::Overloaded`] and the job never runs.
    pub fn submit(&self, job: Job, done: Done) {
        let sender = self.inner.sender.read();
        let Some(sender) = sender.as_ref() else {
            return done(Err(StoreError::ShuttingDown));
        };
        match sender.try_send(Message::Job(job, done)) {
            Ok(()) => {}
            Err(mpsc::TrySendError::Full(Message::Job(_, done))) => {
                done(Err(StoreError::Overloaded {
                    capacity: self.inner.queue_capacity,
                }))
            }
            Err(mpsc::TrySendError::Disconnected(Message::Job(_, done))) => {
                done(Err(StoreError::ShuttingDown))
            }
            // Only jobs are sent here.
            Err(_) => {}
        }
    }
    /// Blocking convenience over `submit`: run `f`; commit on `Ok`, roll back on `Err`.
    pub fn mutate<R, E, F>(&self, f: F) -> Result<(R, CommitInfo), E>
    where
        R: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&mut WriteTxn<'_>) -> Result<R, E> + Send + 'static,
    {
        let slot: Arc<Mutex<Option<Result<R, E>>>> = Arc::new(Mutex::new(None));
        let job_slot = slot.clone();
        let job: Job = Box::new(move |txn| {
            let result = f(txn);
            let outcome = if result.is_ok() {
                Outcome::Commit
            } else {
                Outcome::Rollback
            };
            *job_slot.lock() = Some(result);
            outcome
        });
        let (tx, rx) = mpsc::sync_channel(1);
        self.submit(
            job,
            Box::new(move |r| {
                let _ = tx.send(r);
            }),
        );
        let info = rx
            .recv()
            .map_err(|_| E::from(StoreError::ShuttingDown))?
            .map_err(E::from)?;
        let result = slot.lock().take();
        match result {
            Some(Ok(r)) => Ok((r, info)),
            Some(Err(e)) => Err(e),
            None => Err(E::from(StoreError::JobPanicked(
                "the job did not run to completion".into(),
            ))),
        }
    }

    pub fn latest_ts(&self) -> Timestamp {
        Timestamp(self.inner.shared.latest_ts.load(AtomicOrdering::Acquire))
    }

    /// Register a hook told of every durable batch (live queries use it). Hooks run on the
    /// writer thread: they must be quick and must not call back into the writer.
    pub fn on_commit(&self, hook: CommitHook) {
        self.inner.shared.hooks.write().push(hook);
    }

    /// The recent commits and the keys they wrote.
    pub fn commit_log(&self) -> &CommitLog {
        &self.inner.shared.log
    }

    /// The table an index belongs to (from the catalog, no I/O): what a commit log entry's keys
    /// name.
    pub fn table_of_index(&self, index: IndexId) -> Option<&str> {
        self.inner
            .catalog
            .by_name
            .values()
            .find(|t| t.all_indexes().any(|i| i.id == index))
            .map(|t| t.def.name.as_str())
    }

    /// Bytes on disk: the database file plus its WAL.
    pub fn disk_bytes(&self) -> u64 {
        let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        let mut wal = self.inner.db_path.clone().into_os_string();
        wal.push("-wal");
        size(&self.inner.db_path) + size(Path::new(&wal))
    }

    /// Run one upkeep step now, after the jobs already queued: return up to
    /// [`StoreOptions::vacuum_step_pages`] free pages to the file system and truncate the WAL.
    /// The writer does this by itself when idle; tests and tools call it to not wait.
    pub fn maintain_now(&self) -> Result<MaintenanceReport, StoreError> {
        let (ack, acked) = mpsc::sync_channel(1);
        {
            let sender = self.inner.sender.read();
            let sender = sender.as_ref().ok_or(StoreError::ShuttingDown)?;
            // `send`, not `try_send`: a caller asking for upkeep can wait for room in the queue.
            sender
                .send(Message::Maintain(ack))
                .map_err(|_| StoreError::ShuttingDown)?;
        }
        acked.recv().map_err(|_| StoreError::ShuttingDown)?
    }

    /// The schema the store was opened with.
    pub fn schema(&self) -> &Schema {
        &self.inner.schema
    }

    /// Stop the writer after the queued jobs, checkpoint the WAL, close connections.
    pub fn close(&self) -> Result<(), StoreError> {
        self.inner.close()
    }
}

impl Inner {
    fn close(&self) -> Result<(), StoreError> {
        let sender = self.sender.write().take();
        let mut result = Ok(());
        if let Some(sender) = sender {
            let (ack, acked) = mpsc::channel();
            // `send` (not `try_send`): close waits for room in a full queue; the writer drains it.
            if sender.send(Message::Close(ack)).is_ok() {
                result = acked.recv().unwrap_or(Ok(()));
            }
        }
        if let Some(handle) = self.writer.lock().take() {
            let _ = handle.join();
        }
        self.readers.close();
        result
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            tracing::warn!(error = %e, "closing the store");
        }
    }
}
