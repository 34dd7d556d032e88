//! [`Store`]: opening (migration, index backfill, validation of stored data), reader snapshots,
//! and the writer thread with group commit.

use std::collections::{BTreeMap, HashMap};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::{Condvar, Mutex, RwLock};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use tickethub_value::{TableNumber, Validator};

use crate::catalog::{
    id_from_key, Catalog, IndexInfo, IndexKind, TableInfo, BY_CREATION_TIME, BY_ID,
};
use crate::codec::decode_fields;
use crate::log::{CommitLog, IndexId};
use crate::{ReadTxn, Schema, SchemaError, StoreError, TableDef, Timestamp, WriteSet, WriteTxn};

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
    /// Reader connections in the pool (bounds concurrent snapshots). At least 1.
    pub readers: usize,
    /// Most jobs one batch may hold before it commits. At least 1.
    pub max_batch: usize,
    /// fsync on every commit (SQLite `synchronous=FULL` in WAL). Only benchmarks turn it off.
    pub durable: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            readers: 4,
            // Large enough that under a deep queue the fsync is shared by many jobs (executing a
            // batch this size takes ~10-20 ms, several fsyncs' worth); a shallow queue still
            // commits as soon as it is drained.
            max_batch: 1024,
            durable: true,
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
/// Documents between progress lines while backfilling or checking a table.
const PROGRESS_EVERY: u64 = 100_000;
/// The writer's page cache, in KiB (SQLite's negative `cache_size`).
const CACHE_KIB: i64 = 32 * 1024;
/// Each reader's page cache, in KiB. Readers get most pages through the memory map, so a small
/// cache suffices, and resident memory stays flat under load instead of growing by up to
/// `CACHE_KIB` per reader.
const READER_CACHE_KIB: i64 = 4 * 1024;
/// Address space each connection may map of the database file (virtual, not resident memory).
const MMAP_BYTES: i64 = 1 << 30;
/// WAL pages before a commit also checkpoints. SQLite's default (1000) is less than one big
/// batch writes, which made nearly every commit checkpoint (write the pages a second time and
/// fsync the database file) on the writer thread. Pages rewritten by several commits between
/// checkpoints are copied once.
const WAL_AUTOCHECKPOINT_PAGES: i64 = 16_384;
/// Size the WAL file is truncated back to after a checkpoint resets it, so one burst does not
/// keep a large file around.
const JOURNAL_SIZE_LIMIT_BYTES: i64 = 64 << 20;

const META_LAST_TS: &str = "last_ts";
const META_LAST_CREATION: &str = "last_creation_time";
const META_NEXT_INDEX: &str = "next_index_id";
const META_SCHEMA: &str = "schema";

/// Cheap to clone; all clones share one database.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    catalog: Arc<Catalog>,
    schema: Schema,
    readers: Arc<ReaderPool>,
    sender: RwLock<Option<mpsc::Sender<Message>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    shared: Arc<Shared>,
}

/// State the writer thread publishes to everyone else.
struct Shared {
    latest_ts: AtomicU64,
    hooks: RwLock<Vec<CommitHook>>,
    log: CommitLog,
}

enum Message {
    Job(Job, Done),
    /// Finish the queued jobs, checkpoint, and stop.
    Close(mpsc::Sender<Result<(), StoreError>>),
}

pub(crate) fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Hands out `_creationTime`s: wall-clock milliseconds with a fractional part, strictly
/// increasing even when the clock stalls or steps back (then it counts up in 1 µs steps).
pub(crate) struct CreationClock {
    last: f64,
}

impl CreationClock {
    pub(crate) fn next(&mut self) -> f64 {
        let now = now_nanos() as f64 / 1e6;
        let mut t = if now > self.last {
            now
        } else {
            self.last + 0.001
        };
        // Near 1.7e12 the f64 spacing is ~0.00024 ms, so +0.001 always moves; this guards far
        // larger values where it might not.
        if t <= self.last {
            t = f64::from_bits(self.last.to_bits() + 1);
        }
        self.last = t;
        t
    }
}

/// Reader connections; `take` waits when all are lent out (this bounds concurrent snapshots).
pub(crate) struct ReaderPool {
    conns: Mutex<Vec<Connection>>,
    available: Condvar,
    closed: std::sync::atomic::AtomicBool,
}

impl ReaderPool {
    fn take(&self) -> Result<Connection, StoreError> {
        let mut conns = self.conns.lock();
        loop {
            if self.closed.load(AtomicOrdering::Acquire) {
                return Err(StoreError::ShuttingDown);
            }
            if let Some(c) = conns.pop() {
                return Ok(c);
            }
            self.available.wait(&mut conns);
        }
    }
    pub(crate) fn put(&self, conn: Connection) {
        if self.closed.load(AtomicOrdering::Acquire) {
            return;
        }
        self.conns.lock().push(conn);
        self.available.notify_one();
    }
    fn close(&self) {
        self.closed.store(true, AtomicOrdering::Release);
        self.conns.lock().clear();
        self.available.notify_all();
    }
}

/// Run a parameterless statement through the connection's statement cache: the transaction
/// control statements run several times per batch, and parsing them each time showed up in
/// profiles of the writer thread.
pub(crate) fn run_cached(conn: &Connection, sql: &str) -> Result<(), rusqlite::Error> {
    conn.prepare_cached(sql)?.execute([])?;
    Ok(())
}

pub(crate) fn read_last_ts(conn: &Connection) -> Result<Timestamp, StoreError> {
    let ts: Option<i64> = conn
        .prepare_cached("SELECT value FROM meta WHERE key = 'last_ts'")?
        .query_row([], |r| r.get(0))
        .optional()?;
    Ok(Timestamp(ts.unwrap_or(0) as u64))
}

fn open_connection(path: &Path, durable: bool, read_only: bool) -> Result<Connection, StoreError> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    if !read_only {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES)?;
        conn.pragma_update(None, "journal_size_limit", JOURNAL_SIZE_LIMIT_BYTES)?;
    }
    conn.pragma_update(None, "synchronous", if durable { "FULL" } else { "NORMAL" })?;
    conn.pragma_update(None, "cache_size", -CACHE_KIB)?;
    // Map the file: hot pages are read without a syscall and copy each, which keeps point
    // lookups in a big database close to their cost in a small one.
    conn.pragma_update(None, "mmap_size", MMAP_BYTES)?;
    // Savepoints (one per job) copy the original of each page they change into the
    // sub-journal: keep it in memory. (The default `temp_store` runs ~20% fewer instructions
    // per job under callgrind, since it buffers in one 64 KiB chunk rather than 1 KiB ones, but
    // measured slower: freeing that chunk after every job trims the heap, and the next job
    // page-faults it back in.)
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

const CREATE_TABLES: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value ANY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tables (name TEXT PRIMARY KEY, number INTEGER NOT NULL UNIQUE) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS indexes (
    index_id INTEGER PRIMARY KEY,
    table_number INTEGER NOT NULL,
    name TEXT NOT NULL,
    fields TEXT NOT NULL,
    UNIQUE (table_number, name)
);
CREATE TABLE IF NOT EXISTS documents (id BLOB PRIMARY KEY, creation_time REAL NOT NULL, body BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS index_entries (
    index_id INTEGER NOT NULL,
    key BLOB NOT NULL,
    doc_id BLOB NOT NULL,
    PRIMARY KEY (index_id, key)
) WITHOUT ROWID;
";

fn meta_get<T: rusqlite::types::FromSql>(
    conn: &Connection,
    key: &str,
) -> Result<Option<T>, StoreError> {
    Ok(conn
        .query_row("SELECT value FROM meta WHERE key = ?1", params![key], |r| {
            r.get(0)
        })
        .optional()?)
}

fn meta_set(conn: &Connection, key: &str, value: impl rusqlite::ToSql) -> Result<(), StoreError> {
    conn.prepare_cached("INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value")?
        .execute(params![key, value])?;
    Ok(())
}

/// What migration needs from the last schema applied: per table, a fingerprint of its validator.
fn schema_fingerprint(def: &TableDef) -> serde_json::Value {
    // `Validator`'s Debug form is a faithful, deterministic rendering: equal text means equal
    // validators, which is all the diff needs.
    let fields: BTreeMap<&String, String> = def
        .fields
        .iter()
        .map(|(k, v)| (k, format!("{v:?}")))
        .collect();
    serde_json::json!({ "validate": def.validate, "fields": fields })
}

/// Index definition as stored in the `indexes` table.
fn fields_json(fields: &[String]) -> String {
    serde_json::to_string(fields).expect("strings serialize")
}

struct StoredIndex {
    id: IndexId,
    table_number: u32,
    name: String,
    fields: Vec<String>,
}

/// Create or migrate the database to `schema` inside one transaction; returns the catalog, the
/// last commit ts and the last creation time.
fn migrate(conn: &Connection, schema: &Schema) -> Result<(Catalog, Timestamp, f64), StoreError> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    match migrate_in_txn(conn, schema) {
        Ok(result) => {
            conn.execute_batch("COMMIT")?;
            Ok(result)
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

fn migrate_in_txn(
    conn: &Connection,
    schema: &Schema,
) -> Result<(Catalog, Timestamp, f64), StoreError> {
    conn.execute_batch(CREATE_TABLES)?;
    for def in schema.tables.values() {
        // System tables come from the engine, not schema.toml, but follow the same index rules.
        crate::schema::check_indexes(def)?;
    }
    let last_ts = Timestamp(meta_get::<i64>(conn, META_LAST_TS)?.unwrap_or(0) as u64);
    let last_creation = meta_get::<f64>(conn, META_LAST_CREATION)?.unwrap_or(0.0);
    let mut next_index: u32 = meta_get::<i64>(conn, META_NEXT_INDEX)?.unwrap_or(1) as u32;
    let previous: serde_json::Value = match meta_get::<String>(conn, META_SCHEMA)? {
        Some(text) => serde_json::from_str(&text)
            .map_err(|e| StoreError::Storage(format!("stored schema: {e}")))?,
        None => serde_json::json!({}),
    };

    // Table numbers: existing ones kept, new ones appended; rows are never deleted, so a number
    // is never reused.
    let mut numbers: BTreeMap<String, u32> = BTreeMap::new();
    {
        let mut stmt = conn.prepare("SELECT name, number FROM tables")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, u32>(1)?)))?;
        for row in rows {
            let (name, number) = row?;
            numbers.insert(name, number);
        }
    }
    for name in schema.tables.keys() {
        if numbers.contains_key(name) {
            continue;
        }
        let system = name.starts_with('_');
        let existing = numbers
            .values()
            .copied()
            .filter(|n| (*n >= FIRST_USER_TABLE) != system);
        let number =
            existing
                .max()
                .map(|n| n + 1)
                .unwrap_or(if system { 1 } else { FIRST_USER_TABLE });
        if system && number >= FIRST_USER_TABLE {
            return Err(StoreError::Storage("too many system tables".into()));
        }
        conn.execute(
            "INSERT INTO tables (name, number) VALUES (?1, ?2)",
            params![name, number],
        )?;
        numbers.insert(name.clone(), number);
    }

    let mut stored: Vec<StoredIndex> = Vec::new();
    {
        let mut stmt = conn.prepare("SELECT index_id, table_number, name, fields FROM indexes")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, u32>(0)?,
                r.get::<_, u32>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
            ))
        })?;
        for row in rows {
            let (id, table_number, name, fields) = row?;
            let fields: Vec<String> = serde_json::from_str(&fields)
                .map_err(|e| StoreError::Storage(format!("stored index fields: {e}")))?;
            stored.push(StoredIndex {
                id,
                table_number,
                name,
                fields,
            });
        }
    }

    let mut catalog = Catalog::default();
    let mut to_backfill: Vec<(Arc<TableInfo>, IndexInfo)> = Vec::new();
    for (name, &number) in &numbers {
        // Tables dropped from the schema keep their documents and built-in indexes, unvalidated.
        let def = schema
            .tables
            .get(name)
            .cloned()
            .unwrap_or_else(|| TableDef {
                name: name.clone(),
                fields: BTreeMap::new(),
                indexes: Vec::new(),
                validate: false,
            });
        let mut wanted: Vec<(String, Vec<String>)> =
            vec![(BY_ID.into(), vec![]), (BY_CREATION_TIME.into(), vec![])];
        wanted.extend(
            def.indexes
                .iter()
                .map(|i| (i.name.clone(), i.fields.clone())),
        );
        let mut kept: HashMap<String, IndexId> = HashMap::new();
        for old in stored.iter().filter(|s| s.table_number == number) {
            match wanted.iter().find(|(n, _)| *n == old.name) {
                Some((_, fields)) if *fields == old.fields => {
                    kept.insert(old.name.clone(), old.id);
                }
                _ => {
                    tracing::info!(table = %name, index = %old.name, "dropping index removed or changed in the schema");
                    conn.execute(
                        "DELETE FROM index_entries WHERE index_id = ?1",
                        params![old.id],
                    )?;
                    conn.execute("DELETE FROM indexes WHERE index_id = ?1", params![old.id])?;
                }
            }
        }
        let mut infos: Vec<(IndexInfo, bool)> = Vec::new();
        for (index_name, fields) in wanted {
            let (id, fresh) = match kept.get(&index_name) {
                Some(&id) => (id, false),
                None => {
                    let id = next_index;
                    next_index += 1;
                    conn.execute(
                        "INSERT INTO indexes (index_id, table_number, name, fields) VALUES (?1, ?2, ?3, ?4)",
                        params![id, number, index_name, fields_json(&fields)],
                    )?;
                    (id, true)
                }
            };
            let kind = if index_name == BY_ID {
                IndexKind::ById
            } else {
                IndexKind::Entries
            };
            let paths = fields
                .iter()
                .map(|f| f.split('.').map(str::to_string).collect())
                .collect();
            infos.push((
                IndexInfo::new(id, index_name, paths, kind),
                fresh && kind == IndexKind::Entries,
            ));
        }
        let mut infos = infos.into_iter();
        let (by_id, _) = infos.next().expect("by_id first");
        let (by_creation_time, ct_fresh) = infos.next().expect("by_creation_time second");
        let rest: Vec<(IndexInfo, bool)> = infos.collect();
        let table = Arc::new(TableInfo {
            number: TableNumber(number),
            def,
            by_id,
            by_creation_time: by_creation_time.clone(),
            user_indexes: rest.iter().map(|(i, _)| i.clone()).collect(),
        });
        if ct_fresh {
            to_backfill.push((table.clone(), by_creation_time));
        }
        for (info, fresh) in rest {
            if fresh {
                to_backfill.push((table.clone(), info));
            }
        }
        catalog.by_name.insert(name.clone(), table.clone());
        catalog.by_number.insert(number, table);
    }

    // Check stored documents against validators that are new or changed, before any backfill.
    for table in catalog.by_name.values() {
        if !table.def.validate {
            continue;
        }
        let now = schema_fingerprint(&table.def);
        if previous.get(&table.def.name) == Some(&now) {
            continue;
        }
        let mut checked = 0u64;
        for_each_document(conn, table.number, |id, _, fields| {
            Validator::check_object(&fields, &table.def.fields, &catalog).map_err(|reason| {
                StoreError::Schema(SchemaError::DataViolates {
                    id: id.encode(),
                    table: table.def.name.clone(),
                    reason: reason.to_string(),
                })
            })?;
            checked += 1;
            if checked.is_multiple_of(PROGRESS_EVERY) {
                tracing::info!(table = %table.def.name, checked, "checking stored documents against the new schema");
            }
            Ok(())
        })?;
    }

    for (table, index) in &to_backfill {
        let mut done = 0u64;
        let mut insert = conn.prepare_cached(
            "INSERT INTO index_entries (index_id, key, doc_id) VALUES (?1, ?2, ?3)",
        )?;
        for_each_document(conn, table.number, |id, creation_time, fields| {
            let id_value = tickethub_value::Value::String(id.encode());
            let key = index.key_of(&id, &id_value, creation_time, &fields);
            insert.execute(params![index.id, key, crate::catalog::id_key(&id)])?;
            done += 1;
            if done.is_multiple_of(PROGRESS_EVERY) {
                tracing::info!(table = %table.def.name, index = %index.name, done, "backfilling index");
            }
            Ok(())
        })?;
        if done > 0 {
            tracing::info!(table = %table.def.name, index = %index.name, done, "index backfilled");
        }
    }

    let fingerprints: serde_json::Map<String, serde_json::Value> = catalog
        .by_name
        .values()
        .map(|t| (t.def.name.clone(), schema_fingerprint(&t.def)))
        .collect();
    meta_set(
        conn,
        META_SCHEMA,
        serde_json::Value::Object(fingerprints).to_string(),
    )?;
    meta_set(conn, META_NEXT_INDEX, i64::from(next_index))?;
    Ok((catalog, last_ts, last_creation))
}

/// Visit every document of a table in id order.
fn for_each_document(
    conn: &Connection,
    table: TableNumber,
    mut f: impl FnMut(
        tickethub_value::DocumentId,
        f64,
        tickethub_value::Object,
    ) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let start = table.0.to_be_bytes().to_vec();
    let end = (u64::from(table.0) + 1).to_be_bytes()[4..].to_vec();
    let mut stmt = conn.prepare(
        "SELECT id, creation_time, body FROM documents WHERE id >= ?1 AND id < ?2 ORDER BY id",
    )?;
    let mut rows = stmt.query(params![start, end])?;
    while let Some(row) = rows.next()? {
        let id_bytes: Vec<u8> = row.get(0)?;
        let id = id_from_key(&id_bytes)
            .ok_or_else(|| StoreError::Storage("malformed document id in storage".into()))?;
        let creation_time: f64 = row.get(1)?;
        let body = row
            .get_ref(2)?
            .as_blob()
            .map_err(|e| StoreError::Storage(e.to_string()))?;
        let fields = decode_fields(body).map_err(|e| StoreError::Storage(e.to_string()))?;
        f(id, creation_time, fields)?;
    }
    Ok(())
}

impl Store {
    /// Open (or create) `dir/tickethub.sqlite3`, apply `schema` (new index → backfill, removed
    /// index → drop, changed validator → check stored documents, refusing to open on the first
    /// violation).
    pub fn open(dir: &Path, schema: Schema, options: StoreOptions) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Storage(format!("creating {}: {e}", dir.display())))?;
        let path = dir.join(DB_FILE);
        let writer_conn = open_connection(&path, options.durable, false)?;
        let (catalog, last_ts, last_creation) = migrate(&writer_conn, &schema)?;
        let catalog = Arc::new(catalog);

        let mut conns = Vec::with_capacity(options.readers.max(1));
        for _ in 0..options.readers.max(1) {
            let conn = open_connection(&path, options.durable, true)?;
            conn.pragma_update(None, "query_only", true)?;
            conn.pragma_update(None, "cache_size", -READER_CACHE_KIB)?;
            conns.push(conn);
        }
        let readers = Arc::new(ReaderPool {
            conns: Mutex::new(conns),
            available: Condvar::new(),
            closed: std::sync::atomic::AtomicBool::new(false),
        });
        let shared = Arc::new(Shared {
            latest_ts: AtomicU64::new(last_ts.0),
            hooks: RwLock::new(Vec::new()),
            log: CommitLog::new(*tickethub_knobs::COMMIT_LOG_CAPACITY, last_ts),
        });
        let (sender, receiver) = mpsc::channel();
        let writer = Writer {
            conn: writer_conn,
            catalog: catalog.clone(),
            clock: CreationClock {
                last: last_creation,
            },
            last_ts,
            max_batch: options.max_batch.max(1),
            shared: shared.clone(),
            last_batch_len: 0,
        };
        let handle = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer.run(receiver))
            .map_err(|e| StoreError::Storage(format!("spawning the writer thread: {e}")))?;
        Ok(Store {
            inner: Arc::new(Inner {
                catalog,
                schema,
                readers,
                sender: RwLock::new(Some(sender)),
                writer: Mutex::new(Some(handle)),
                shared,
            }),
        })
    }

    /// A consistent snapshot at the latest commit.
    pub fn read(&self) -> Result<ReadTxn, StoreError> {
        let conn = self.inner.readers.take()?;
        ReadTxn::begin(conn, self.inner.readers.clone(), self.inner.catalog.clone())
    }

    /// Queue a job for the writer thread. `done` is called after the batch holding the job is
    /// durable (or has failed); it must not block.
    pub fn submit(&self, job: Job, done: Done) {
        let sender = self.inner.sender.read();
        match sender.as_ref() {
            Some(s) => {
                if let Err(mpsc::SendError(Message::Job(_, done))) = s.send(Message::Job(job, done))
                {
                    done(Err(StoreError::ShuttingDown));
                }
            }
            None => done(Err(StoreError::ShuttingDown)),
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

/// The writer thread's state. It alone writes to the database.
struct Writer {
    conn: Connection,
    catalog: Arc<Catalog>,
    clock: CreationClock,
    last_ts: Timestamp,
    max_batch: usize,
    shared: Arc<Shared>,
    /// Jobs in the previous batch: how many callers were waiting on one commit, so most of them
    /// are likely to send their next job right after hearing back.
    last_batch_len: usize,
}

/// Longest a batch waits for late jobs (see [`Writer::gather`]). Far below one fsync, so it
/// costs little latency and saves a whole commit for the jobs it catches.
const GATHER_WAIT: std::time::Duration = std::time::Duration::from_micros(250);

/// One job's result inside a batch, before the batch commits.
enum JobResult {
    Committed(CommitInfo),
    NothingWritten(CommitInfo),
    Failed(StoreError),
}

/// How a job's savepoint ends.
#[derive(Clone, Copy)]
enum Keep {
    /// Keep its writes in the batch.
    Release,
    /// Undo its writes, then end the savepoint.
    RollBack,
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a mutation panicked".to_string()
    }
}

impl Writer {
    fn run(mut self, receiver: mpsc::Receiver<Message>) {
        let mut close_ack = None;
        while close_ack.is_none() {
            let Ok(first) = receiver.recv() else { break };
            let mut batch = Vec::new();
            match first {
                Message::Job(job, done) => batch.push((job, done)),
                Message::Close(ack) => close_ack = Some(ack),
            }
            // Group commit: everything already waiting joins this batch.
            while close_ack.is_none() && batch.len() < self.max_batch {
                match receiver.try_recv() {
                    Ok(Message::Job(job, done)) => batch.push((job, done)),
                    Ok(Message::Close(ack)) => close_ack = Some(ack),
                    Err(_) => break,
                }
            }
            if close_ack.is_none() {
                close_ack = self.gather(&receiver, &mut batch);
            }
            if !batch.is_empty() {
                self.last_batch_len = batch.len();
                self.run_batch(batch);
            }
        }
        // Drain jobs that raced with close so their callers hear back.
        while let Ok(msg) = receiver.try_recv() {
            match msg {
                Message::Job(_, done) => done(Err(StoreError::ShuttingDown)),
                Message::Close(ack) => {
                    let _ = ack.send(Ok(()));
                }
            }
        }
        let result = self
            .conn
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
            .map_err(StoreError::from);
        if let Some(ack) = close_ack {
            let _ = ack.send(result);
        }
    }

    /// When the previous batch answered many callers at once, their next jobs arrive a moment
    /// apart; starting the commit with only the first few would make the rest wait a whole extra
    /// fsync. So wait briefly (at most [`GATHER_WAIT`]) until about as many jobs as last time
    /// are here. Under light load (a batch of one) this never waits.
    fn gather(
        &self,
        receiver: &mpsc::Receiver<Message>,
        batch: &mut Vec<(Job, Done)>,
    ) -> Option<mpsc::Sender<Result<(), StoreError>>> {
        let wanted = self.last_batch_len.min(self.max_batch);
        if batch.len() * 2 >= wanted {
            return None;
        }
        let deadline = std::time::Instant::now() + GATHER_WAIT;
        while batch.len() < wanted {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match receiver.recv_timeout(left) {
                Ok(Message::Job(job, done)) => batch.push((job, done)),
                Ok(Message::Close(ack)) => return Some(ack),
                Err(_) => break,
            }
        }
        None
    }

    fn run_batch(&mut self, batch: Vec<(Job, Done)>) {
        let saved_ts = self.last_ts;
        let saved_clock = self.clock.last;
        let mut results: Vec<(Done, JobResult)> = Vec::with_capacity(batch.len());
        let outcome = self.run_jobs(batch, &mut results).and_then(|()| {
            if self.last_ts != saved_ts {
                meta_set(&self.conn, META_LAST_TS, self.last_ts.0 as i64)?;
            }
            if self.clock.last != saved_clock {
                meta_set(&self.conn, META_LAST_CREATION, self.clock.last)?;
            }
            run_cached(&self.conn, "COMMIT")?;
            Ok(())
        });
        if let Err(e) = outcome {
            tracing::error!(error = %e, "batch failed; every job in it is reported failed");
            let _ = run_cached(&self.conn, "ROLLBACK");
            self.last_ts = saved_ts;
            self.clock.last = saved_clock;
            for (done, _) in results {
                done(Err(StoreError::Storage(e.to_string())));
            }
            return;
        }
        self.shared
            .latest_ts
            .store(self.last_ts.0, AtomicOrdering::Release);
        let mut committed = Vec::new();
        for (_, result) in &results {
            if let JobResult::Committed(info) = result {
                self.shared.log.push(info.ts, info.writes.clone());
                committed.push(info.clone());
            }
        }
        for (done, result) in results {
            done(match result {
                JobResult::Committed(info) | JobResult::NothingWritten(info) => Ok(info),
                JobResult::Failed(e) => Err(e),
            });
        }
        if !committed.is_empty() {
            for hook in self.shared.hooks.read().iter() {
                hook(&committed);
            }
        }
    }

    /// Run each job in its own savepoint. An `Err` means the batch transaction itself is broken;
    /// `results` then holds every job's `done` (including ones not yet run) for the caller to fail.
    fn run_jobs(
        &mut self,
        batch: Vec<(Job, Done)>,
        results: &mut Vec<(Done, JobResult)>,
    ) -> Result<(), StoreError> {
        let mut jobs = batch.into_iter();
        let begun = run_cached(&self.conn, "BEGIN IMMEDIATE");
        if let Err(e) = begun {
            results
                .extend(jobs.map(|(_, done)| (done, JobResult::Failed(StoreError::ShuttingDown))));
            return Err(e.into());
        }
        while let Some((job, done)) = jobs.next() {
            if let Err(e) = run_cached(&self.conn, "SAVEPOINT job") {
                results.push((done, JobResult::Failed(StoreError::ShuttingDown)));
                results.extend(
                    jobs.map(|(_, done)| (done, JobResult::Failed(StoreError::ShuttingDown))),
                );
                return Err(e.into());
            }
            let snapshot = self.last_ts;
            let mut txn = WriteTxn::new(&self.conn, &self.catalog, &mut self.clock, snapshot);
            let ran = catch_unwind(AssertUnwindSafe(|| job(&mut txn)));
            let writes = txn.into_writes();
            let (keep, result) = match ran {
                Ok(Outcome::Commit) if writes.is_empty() => (
                    Keep::Release,
                    JobResult::Committed(CommitInfo {
                        ts: snapshot,
                        writes: Arc::new(writes),
                    }),
                ),
                Ok(Outcome::Commit) => {
                    let ts = Timestamp((self.last_ts.0 + 1).max(now_nanos()));
                    self.last_ts = ts;
                    (
                        Keep::Release,
                        JobResult::Committed(CommitInfo {
                            ts,
                            writes: Arc::new(writes),
                        }),
                    )
                }
                Ok(Outcome::Rollback) => (
                    Keep::RollBack,
                    JobResult::NothingWritten(CommitInfo {
                        ts: snapshot,
                        writes: Arc::new(WriteSet::default()),
                    }),
                ),
                Err(payload) => {
                    let message = panic_message(payload.as_ref());
                    tracing::error!(%message, "a mutation panicked; its writes are rolled back");
                    (
                        Keep::RollBack,
                        JobResult::Failed(StoreError::JobPanicked(message)),
                    )
                }
            };
            let read_only_commit =
                matches!(&result, JobResult::Committed(info) if info.writes.is_empty());
            // A read-only commit is reported but does not enter the log or hooks.
            let result = if read_only_commit {
                match result {
                    JobResult::Committed(info) => JobResult::NothingWritten(info),
                    other => other,
                }
            } else {
                result
            };
            results.push((done, result));
            let ended = match keep {
                Keep::Release => run_cached(&self.conn, "RELEASE job"),
                Keep::RollBack => run_cached(&self.conn, "ROLLBACK TO job")
                    .and_then(|()| run_cached(&self.conn, "RELEASE job")),
            };
            if let Err(e) = ended {
                results.extend(
                    jobs.map(|(_, done)| (done, JobResult::Failed(StoreError::ShuttingDown))),
                );
                return Err(e.into());
            }
        }
        Ok(())
    }
}
