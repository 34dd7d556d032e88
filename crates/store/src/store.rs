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
use tickethub_value::TableNumber;

use crate::backend::{BatchWriter, SnapshotSource};
use crate::catalog::Catalog;
use crate::connection::{open_connection, ReaderPool, Role};
use crate::log::{CommitLog, IndexId};
use crate::maintenance::{ensure_incremental_vacuum, AutoVacuumMode, MaintenanceReport};
use crate::migrate::{migrate, Migrated};
use crate::sqlite::{SqliteSnapshots, SqliteWriter};
use crate::writer::{Between, CreationClock, IdleUpkeep, Message, Shared, Writer};
use crate::{ReadTxn, Schema, StoreError, TableDef, Timestamp, WriteSet, WriteTxn};

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

/// Where a store keeps its data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreLocation {
    /// The embedded default: one SQLite file, `dir/tickethub.sqlite3`.
    Sqlite {
        dir: std::path::PathBuf,
    },
    Postgres(PostgresLocation),
}

/// A Postgres database and the schema inside it that holds one deployment's tables (several
/// deployments can share one database server, each in its own schema).
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresLocation {
    /// `postgres://user:password@host:port/database` (libpq key=value form works too).
    pub url: String,
    /// The Postgres schema name; created when missing.
    pub schema: String,
}

impl std::fmt::Debug for PostgresLocation {
    // The URL may carry a password: never print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresLocation")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

/// Which storage engine a store runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        })
    }
}

/// The database file inside the store's directory.
pub const DB_FILE: &str = "tickethub.sqlite3";
/// First number given to a user table (as in Convex); system tables count up from 1.
pub const FIRST_USER_TABLE: u32 = 10_001;
/// Cheap to clone; all clones share one database.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    /// Replaced whole when tables are put while open ([`Store::put_tables`]); a snapshot keeps
    /// the catalog it started with.
    catalog: RwLock<Arc<Catalog>>,
    schema: RwLock<Arc<Schema>>,
    /// Held through a [`Store::put_tables`]: two at once would each migrate to a schema that
    /// lacks the other's tables, and the second would drop the first's indexes.
    putting_tables: Mutex<()>,
    backend: Backend,
    snapshots: Arc<dyn SnapshotSource>,
    /// The writer's queue, bounded: a full queue refuses at once (see [`Store::submit`]).
    sender: RwLock<Option<mpsc::SyncSender<Message>>>,
    queue_capacity: usize,
    writer: Mutex<Option<JoinHandle<()>>>,
    shared: Arc<Shared>,
    /// Kept for a writer started later (a cluster follower promoted to leader).
    options: StoreOptions,
    /// Cluster mode: the role and the leader's address, shared with the watcher thread.
    cluster: Option<Arc<crate::cluster::ClusterState>>,
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
        let mut writer = SqliteWriter {
            conn: open_connection(&path, Role::Writer, options.durable)?,
        };
        let migrated = migrate(&mut writer, &schema)?;
        // Before any reader opens: the conversion's VACUUM needs the database to itself.
        if ensure_incremental_vacuum(&writer.conn)? == AutoVacuumMode::Converted {
            tracing::info!(path = %path.display(), "the database now returns freed pages");
        }
        let readers = (0..options.readers.max(1))
            .map(|_| open_connection(&path, Role::Reader, options.durable))
            .collect::<Result<Vec<_>, _>>()?;
        let snapshots = SqliteSnapshots {
            pool: Arc::new(ReaderPool::new(readers)),
            db_path: path,
        };
        Store::start(
            Backend::Sqlite,
            Box::new(writer),
            Arc::new(snapshots),
            migrated,
            schema,
            options,
        )
    }

    /// Start the writer thread over an opened, migrated engine.
    pub(crate) fn start(
        backend: Backend,
        writer_conn: Box<dyn BatchWriter>,
        snapshots: Arc<dyn SnapshotSource>,
        migrated: Migrated,
        schema: Schema,
        options: StoreOptions,
    ) -> Result<Store, StoreError> {
        Store::assemble(
            backend,
            Some(writer_conn),
            snapshots,
            migrated,
            schema,
            options,
            None,
        )
    }

    /// A store over an opened engine: with a writer thread when `writer_conn` is given; without
    /// one (a cluster follower: reads only, until [`Store::promote`]) otherwise.
    pub(crate) fn assemble(
        backend: Backend,
        writer_conn: Option<Box<dyn BatchWriter>>,
        snapshots: Arc<dyn SnapshotSource>,
        migrated: Migrated,
        schema: Schema,
        options: StoreOptions,
        cluster: Option<Arc<crate::cluster::ClusterState>>,
    ) -> Result<Store, StoreError> {
        let Migrated {
            catalog,
            last_ts,
            last_creation,
        } = migrated;
        let catalog = RwLock::new(Arc::new(catalog));
        let shared = Arc::new(Shared {
            latest_ts: AtomicU64::new(last_ts.0),
            hooks: RwLock::new(Vec::new()),
            log: CommitLog::new(*tickethub_knobs::COMMIT_LOG_CAPACITY, last_ts),
            stepping_down: std::sync::atomic::AtomicBool::new(false),
        });
        let queue_capacity = options.queue_capacity.max(1);
        let store = Store {
            inner: Arc::new(Inner {
                catalog,
                schema: RwLock::new(Arc::new(schema)),
                putting_tables: Mutex::new(()),
                backend,
                snapshots,
                sender: RwLock::new(None),
                queue_capacity,
                writer: Mutex::new(None),
                shared,
                options,
                cluster,
            }),
        };
        if let Some(conn) = writer_conn {
            store.spawn_writer(conn, last_ts, last_creation)?;
        }
        Ok(store)
    }

    /// Start the writer thread, continuing from `last_ts` and `last_creation`.
    fn spawn_writer(
        &self,
        conn: Box<dyn BatchWriter>,
        last_ts: Timestamp,
        last_creation: f64,
    ) -> Result<(), StoreError> {
        let inner = &self.inner;
        let options = &inner.options;
        let (sender, receiver) = mpsc::sync_channel(inner.queue_capacity);
        let writer = Writer {
            conn,
            catalog: inner.catalog.read().clone(),
            clock: CreationClock {
                last: last_creation,
            },
            last_ts,
            max_batch: options.max_batch.max(1),
            gather_wait: options.gather_wait,
            shared: inner.shared.clone(),
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
        *inner.writer.lock() = Some(handle);
        *inner.sender.write() = Some(sender);
        Ok(())
    }

    /// Cluster mode: this node became the leader. Start a writer over `conn` (which holds the
    /// new lease epoch), its timestamps strictly above everything committed so far.
    pub(crate) fn promote(
        &self,
        conn: Box<dyn BatchWriter>,
        stored_ts: Timestamp,
        last_creation: f64,
    ) -> Result<(), StoreError> {
        let last_ts = stored_ts.max(self.latest_ts());
        self.inner
            .shared
            .stepping_down
            .store(false, AtomicOrdering::Release);
        self.inner
            .shared
            .latest_ts
            .fetch_max(last_ts.0, AtomicOrdering::AcqRel);
        self.spawn_writer(conn, last_ts, last_creation)
    }

    /// Cluster mode: this node lost the lease. Stop the writer (queued jobs fail with the
    /// writer's own error or `ShuttingDown`); mutations go to the new leader from now on.
    pub(crate) fn demote(&self) {
        self.inner
            .shared
            .stepping_down
            .store(true, AtomicOrdering::Release);
        let sender = self.inner.sender.write().take();
        if let Some(sender) = sender {
            let (ack, acked) = mpsc::channel();
            if sender.send(Message::Close(ack)).is_ok() {
                let _ = acked.recv();
            }
        }
        if let Some(handle) = self.inner.writer.lock().take() {
            let _ = handle.join();
        }
    }

    /// Cluster mode, on a follower: commits the leader made, oldest first, as read from the
    /// commit-log table. They enter the commit log and reach the commit hooks exactly as a local
    /// batch does, so live queries match them against read sets unchanged.
    pub(crate) fn feed_commits(&self, commits: &[CommitInfo]) {
        let Some(last) = commits.last() else { return };
        for commit in commits {
            self.inner.shared.log.push(commit.ts, commit.writes.clone());
        }
        self.inner
            .shared
            .latest_ts
            .fetch_max(last.ts.0, AtomicOrdering::AcqRel);
        for hook in self.inner.shared.hooks.read().iter() {
            hook(commits);
        }
    }

    /// A handle that does not keep the store open (the cluster watcher holds one).
    pub(crate) fn downgrade(&self) -> std::sync::Weak<Inner> {
        Arc::downgrade(&self.inner)
    }

    pub(crate) fn from_weak(weak: &std::sync::Weak<Inner>) -> Option<Store> {
        weak.upgrade().map(|inner| Store { inner })
    }

    /// This node's place in a cluster: `Single` outside cluster mode.
    pub fn role(&self) -> crate::cluster::NodeRole {
        match &self.inner.cluster {
            None => crate::cluster::NodeRole::Single,
            Some(state) => state.role(),
        }
    }

    /// Cluster mode: the leader's advertised URL as last read from the lease row (`None` when
    /// no leader holds a live lease, or outside cluster mode).
    pub fn leader_url(&self) -> Option<String> {
        self.inner.cluster.as_ref().and_then(|c| c.leader_url())
    }

    /// Cluster mode: this node's id.
    pub fn node_id(&self) -> Option<String> {
        self.inner.cluster.as_ref().map(|c| c.node_id().to_string())
    }

    /// Open the store at `location`: [`Store::open`] for SQLite; for Postgres, the same schema
    /// migration, then this process takes the database's writer lease.
    pub fn open_at(
        location: &StoreLocation,
        schema: Schema,
        options: StoreOptions,
    ) -> Result<Store, StoreError> {
        match location {
            StoreLocation::Sqlite { dir } => Store::open(dir, schema, options),
            StoreLocation::Postgres(at) => crate::postgres::open(at, schema, options),
        }
    }

    /// Open one node of a cluster over Postgres (`cluster.rs`): it leads when the lease is free,
    /// else it follows (reads only) and takes over when the leader's lease expires.
    pub fn open_cluster(
        at: &PostgresLocation,
        cluster: crate::ClusterOptions,
        schema: Schema,
        options: StoreOptions,
    ) -> Result<Store, StoreError> {
        crate::cluster::open(at, cluster, schema, options)
    }

    /// Whether reads wait on the network (Postgres): async callers then read on blocking threads,
    /// never on an async worker. SQLite reads are local and bounded, and stay on the worker.
    pub fn reads_wait_on_network(&self) -> bool {
        self.inner.backend == Backend::Postgres
    }

    /// The storage engine this store runs on.
    pub fn backend(&self) -> Backend {
        self.inner.backend
    }

    /// A consistent snapshot at the latest commit. Blocks the thread while every reader is lent
    /// out: async callers use [`Store::try_read`] first and wait on a blocking thread.
    pub fn read(&self) -> Result<ReadTxn, StoreError> {
        let snapshot = self.inner.snapshots.take(self.latest_ts())?;
        Ok(ReadTxn::new(snapshot, self.inner.catalog.read().clone()))
    }

    /// A consistent snapshot at the latest commit if a reader is free right now; `Ok(None)` when
    /// every reader is lent out. Never blocks.
    pub fn try_read(&self) -> Result<Option<ReadTxn>, StoreError> {
        Ok(self
            .inner
            .snapshots
            .try_take(self.latest_ts())?
            .map(|snapshot| ReadTxn::new(snapshot, self.inner.catalog.read().clone())))
    }

    /// Queue a job for the writer thread. `done` is called after the batch holding the job is
    /// durable (or has failed); it must not block. When the queue already holds
    /// [`StoreOptions::queue_capacity`] jobs, `done` is called at once with
    /// [`StoreError::Overloaded`] and the job never runs.
    pub fn submit(&self, job: Job, done: Done) {
        let sender = self.inner.sender.read();
        let Some(sender) = sender.as_ref() else {
            // A cluster follower has no writer: its runtime forwards mutations to the leader, so
            // a job reaching here came while the leadership moves.
            let error = match &self.inner.cluster {
                Some(state) if !state.is_closed() => StoreError::LeaderUnavailable,
                _ => StoreError::ShuttingDown,
            };
            return done(Err(error));
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

    /// The number of the table named `name` (from the catalog, no I/O).
    pub fn table_number(&self, name: &str) -> Option<TableNumber> {
        self.inner.catalog.read().table(name).map(|t| t.number)
    }

    /// The table an index belongs to (from the catalog, no I/O): what a commit log entry's keys
    /// name.
    /// The ids of `table`'s indexes (built-in ones included): what a commit's written keys name.
    pub fn index_ids_of(&self, table: &str) -> Vec<IndexId> {
        self.inner
            .catalog
            .read()
            .table(table)
            .map(|t| t.all_indexes().map(|i| i.id).collect())
            .unwrap_or_default()
    }

    pub fn table_of_index(&self, index: IndexId) -> Option<String> {
        self.inner
            .catalog
            .read()
            .by_name
            .values()
            .find(|t| t.all_indexes().any(|i| i.id == index))
            .map(|t| t.def.name.clone())
    }

    /// Bytes on disk: for SQLite the database file plus its WAL; for Postgres the schema's
    /// tables and indexes.
    pub fn disk_bytes(&self) -> u64 {
        self.inner.snapshots.disk_bytes()
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
                .send(Message::Between(Between::Maintain(ack)))
                .map_err(|_| StoreError::ShuttingDown)?;
        }
        acked.recv().map_err(|_| StoreError::ShuttingDown)?
    }

    /// The schema the store was opened with, and the tables added since.
    pub fn schema(&self) -> Arc<Schema> {
        self.inner.schema.read().clone()
    }

    /// Create `tables`, or change the indexes of those already there, after the jobs already
    /// queued, as the schema migration at open would (a new index is backfilled, a removed one
    /// dropped): the jobs queued after this returns, and the snapshots taken after it, see the
    /// result. Pushed `schema.ts` tables take effect this way without a restart. Blocks the
    /// thread until the writer has done it (writes wait meanwhile); on a node without a writer
    /// (a cluster follower) it fails with [`StoreError::LeaderUnavailable`].
    pub fn put_tables(&self, tables: Vec<TableDef>) -> Result<(), StoreError> {
        let _one_at_a_time = self.inner.putting_tables.lock();
        let mut schema = (*self.schema()).clone();
        let mut changed = false;
        for table in tables {
            if schema.tables.get(&table.name) != Some(&table) {
                schema.tables.insert(table.name.clone(), table);
                changed = true;
            }
        }
        if !changed {
            return Ok(());
        }
        // A cluster follower has no writer: the leader migrated the database already.
        if let Some(cluster) = self
            .inner
            .cluster
            .as_ref()
            .filter(|c| c.role() == crate::NodeRole::Follower)
        {
            let catalog = cluster.follower_catalog(&schema)?;
            *self.inner.catalog.write() = Arc::new(catalog);
            *self.inner.schema.write() = Arc::new(schema);
            return Ok(());
        }
        let (ack, acked) = mpsc::sync_channel(1);
        {
            let sender = self.inner.sender.read();
            let sender = sender.as_ref().ok_or(StoreError::LeaderUnavailable)?;
            sender
                .send(Message::Between(Between::Migrate(schema.clone(), ack)))
                .map_err(|_| StoreError::ShuttingDown)?;
        }
        let catalog = acked.recv().map_err(|_| StoreError::ShuttingDown)??;
        *self.inner.catalog.write() = catalog;
        *self.inner.schema.write() = Arc::new(schema);
        Ok(())
    }

    /// Stop the writer after the queued jobs, checkpoint the WAL, close connections.
    pub fn close(&self) -> Result<(), StoreError> {
        self.inner.close()
    }
}

impl Inner {
    fn close(&self) -> Result<(), StoreError> {
        if let Some(cluster) = &self.cluster {
            cluster.close();
        }
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
        self.snapshots.close();
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
