//! The Postgres engine, for deployments that outgrow one machine's file. Same tables as SQLite,
//! in one Postgres schema per deployment, through the blocking `postgres` client on the store's
//! own threads (the writer thread; snapshot reads run on blocking threads, see `Store::reads_wait_on_network`).
//!
//! - **Keys** are `bytea`, which Postgres compares bytewise, so the order-preserving key encoding
//!   works unchanged. An index key longer than [`KEY_PREFIX_MAX`] does not fit a B-tree entry: its
//!   first bytes go in `key_prefix` and the rest in `key_suffix`, with a SHA-256 of the whole key
//!   in `key_hash` to keep the primary key unique. `(key_prefix, key_suffix)` compares exactly as
//!   the whole key does (see `split_key`), and scans order by it.
//! - **Snapshots** are `REPEATABLE READ READ ONLY` transactions on pooled connections; the
//!   snapshot's timestamp is the `last_ts` meta value it sees, written in the same transaction as
//!   the data.
//! - **The writer** buffers a batch's writes in memory (an overlay that its own reads merge over
//!   Postgres, with an undo log so one job can be undone alone) and sends them at commit as one
//!   statement per table (`UNNEST` arrays): a round trip per statement, not per row.
//! - **One writer per database and schema**, enforced by Postgres: the writer holds a session
//!   advisory lock (released the moment its connection closes, so a killed server's successor
//!   starts at once) and a lease row whose epoch every commit checks in the same transaction (a
//!   fencing token: a writer that lost its connection and the lock cannot commit after someone
//!   else took over).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::Bound as RangeBound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use postgres::error::SqlState;
use postgres::types::ToSql;
use postgres::{Client, SimpleQueryMessage, Statement};
use sha2::{Digest, Sha256};
use tickethub_value::{DocumentId, TableNumber};
use tokio::runtime::RuntimeFlavor;

use crate::backend::{
    table_id_range, BatchMeta, BatchWriter, Keep, MigrationConn, RawDoc, RawRow, Reads, RowVisitor,
    ScanRange, Snapshot, SnapshotSource, StoredDoc, StoredIndex, META_LAST_CREATION, META_LAST_TS,
};
use crate::catalog::{id_key, IndexKind};
use crate::log::IndexId;
use crate::maintenance::{Checkpoint, MaintenanceReport};
use crate::migrate::migrate;
use crate::pg_connect::PgConnectOptions;
use crate::sqlite::{fields_json, parse_fields};
use crate::store::Backend;
use crate::{
    Order, PostgresLocation, Schema, StorageFailure, Store, StoreError, StoreOptions, Timestamp,
    Visit,
};

/// Index key bytes kept in the B-tree column. Postgres refuses B-tree entries over about 2.7 KB
/// (a third of a page); the prefix, the hash and the index id stay well below.
pub(crate) const KEY_PREFIX_MAX: usize = 2048;

/// Rows the first round of a scan fetches; each next round fetches more, up to [`SCAN_CHUNK_MAX`].
/// Most scans stop early (`first()`, `take(n)`), so the first round is small.
const SCAN_CHUNK_FIRST: i64 = 32;
const SCAN_CHUNK_MAX: i64 = 1024;

/// How often an idle writer renews its lease and checks its connection.
const LEASE_RENEW_EVERY: Duration = Duration::from_secs(5);

/// The format of the tables in a schema; a newer one is refused (as SQLite's `user_version`).
const FORMAT_VERSION: i64 = 1;
const META_FORMAT: &str = "format_version";

/// The fencing check: renews the lease only while this writer's epoch is current (0 rows: fenced).
pub(crate) const RENEW_LEASE: &str =
    "UPDATE writer_lease SET renewed_at = now() WHERE id = 1 AND epoch = $1";

// The commit's statements, prepared once per connection (see `PgWriter::flush`).
const DELETE_ENTRIES: &str = "DELETE FROM index_entries e USING UNNEST($1::int4[], $2::bytea[], $3::bytea[]) AS x(i, p, h) WHERE e.index_id = x.i AND e.key_prefix = x.p AND e.key_hash = x.h";
const PUT_ENTRIES: &str = "INSERT INTO index_entries (index_id, key_prefix, key_hash, key_suffix, doc_id) SELECT * FROM UNNEST($1::int4[], $2::bytea[], $3::bytea[], $4::bytea[], $5::bytea[]) ON CONFLICT (index_id, key_prefix, key_hash) DO UPDATE SET key_suffix = excluded.key_suffix, doc_id = excluded.doc_id";
const DELETE_DOCS: &str = "DELETE FROM documents WHERE id = ANY($1::bytea[])";
const PUT_DOCS: &str = "INSERT INTO documents (id, creation_time, body) SELECT * FROM UNNEST($1::bytea[], $2::float8[], $3::bytea[]) ON CONFLICT (id) DO UPDATE SET creation_time = excluded.creation_time, body = excluded.body";
const PUT_META: &str = "INSERT INTO meta (key, int_value, real_value) VALUES ($1, $2, NULL), ($3, NULL, $4) ON CONFLICT (key) DO UPDATE SET int_value = excluded.int_value, real_value = excluded.real_value";

pub(crate) const CREATE_TABLES: &str = "
CREATE TABLE IF NOT EXISTS meta (key text PRIMARY KEY, int_value bigint, real_value double precision, text_value text);
CREATE TABLE IF NOT EXISTS tables (name text PRIMARY KEY, number integer NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS indexes (
    index_id integer PRIMARY KEY,
    table_number integer NOT NULL,
    name text NOT NULL,
    fields text NOT NULL,
    UNIQUE (table_number, name)
);
CREATE TABLE IF NOT EXISTS documents (id bytea PRIMARY KEY, creation_time double precision NOT NULL, body bytea NOT NULL);
CREATE TABLE IF NOT EXISTS index_entries (
    index_id integer NOT NULL,
    key_prefix bytea NOT NULL,
    key_hash bytea NOT NULL,
    key_suffix bytea NOT NULL,
    doc_id bytea NOT NULL,
    PRIMARY KEY (index_id, key_prefix, key_hash)
);
CREATE TABLE IF NOT EXISTS writer_lease (
    id integer PRIMARY KEY CHECK (id = 1),
    epoch bigint NOT NULL,
    holder text NOT NULL,
    acquired_at timestamptz NOT NULL DEFAULT now(),
    renewed_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE writer_lease ADD COLUMN IF NOT EXISTS advertise_url text NOT NULL DEFAULT '';
CREATE TABLE IF NOT EXISTS commit_log (
    ts bigint PRIMARY KEY,
    prev_ts bigint NOT NULL,
    everything boolean NOT NULL,
    keys bytea NOT NULL
);
";

// ------------------------------------------------------------------------------------ errors

/// Connection loss and server shutdown are "unavailable" (retry later); a full disk is
/// [`StoreError::StorageFull`]; anything else is a storage failure for the log.
impl From<postgres::Error> for StoreError {
    fn from(e: postgres::Error) -> Self {
        let failure = StorageFailure::other(format!("postgres: {e}"));
        if let Some(code) = e.code() {
            if *code == SqlState::DISK_FULL {
                return StoreError::StorageFull(failure);
            }
            let class = &code.code()[..2];
            // 08: connection exception; 57P: operator intervention (shutdown, restart);
            // 53: insufficient resources (too many connections, out of memory).
            if class == "08" || code.code().starts_with("57P") || class == "53" {
                return StoreError::DatabaseUnavailable(failure);
            }
            return StoreError::Storage(failure);
        }
        let io = std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>());
        if e.is_closed() || io {
            return StoreError::DatabaseUnavailable(failure);
        }
        StoreError::Storage(failure)
    }
}

// -------------------------------------------------------------------------------- keys

/// Split an index key into `(prefix, hash, suffix)` as stored. Short keys keep everything in the
/// prefix with an empty hash and suffix. Comparing `(prefix, suffix)` pairs gives the order of the
/// whole keys: prefixes that differ differ within the first `KEY_PREFIX_MAX` bytes (or one is a
/// proper prefix of the other, which is then the shorter key), and equal prefixes of long keys
/// are ordered by what follows.
fn split_key(key: &[u8]) -> (&[u8], Vec<u8>, &[u8]) {
    if key.len() <= KEY_PREFIX_MAX {
        (key, Vec::new(), &[])
    } else {
        let (prefix, suffix) = key.split_at(KEY_PREFIX_MAX);
        (prefix, Sha256::digest(key).to_vec(), suffix)
    }
}

fn join_key(prefix: &[u8], suffix: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(prefix.len() + suffix.len());
    key.extend_from_slice(prefix);
    key.extend_from_slice(suffix);
    key
}

// ---------------------------------------------------------------------------- connections

/// A schema name is spliced into SQL (`SET search_path`), so only plain identifiers are taken.
pub(crate) fn check_schema_name(name: &str) -> Result<(), StoreError> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if first_ok && rest_ok && name.len() <= 63 {
        Ok(())
    } else {
        Err(StoreError::storage(format!(
            "the Postgres schema name {name:?} is not usable: use lowercase letters, digits and _, starting with a letter or _, at most 63 characters"
        )))
    }
}

/// One connection with its prepared statements (the `postgres` client keeps none itself).
pub(crate) struct Conn {
    pub(crate) client: Client,
    statements: HashMap<&'static str, Statement>,
}

impl Conn {
    /// `role` names the connection in `pg_stat_activity` (with the schema, so an operator can
    /// tell deployments apart).
    pub(crate) fn connect(at: &PostgresLocation, role: &str) -> Result<Conn, StoreError> {
        let mut client = PgConnectOptions::parse(&at.url)?.connect()?;
        // plan_cache_mode: every statement here is prepared once per connection and run many
        // times with keys as parameters. Left to `auto`, Postgres compares the generic plan's
        // estimate with the custom plans' and, for the range scans, keeps planning each
        // execution anew: planning then costs several times the execution (a point read's
        // scan: about 0.2 ms planning for 0.04 ms executing). The generic plans are the index
        // scans on the primary keys that the custom plans pick too.
        client.batch_execute(&format!(
            "SET search_path TO \"{0}\"; SET application_name TO 'tickethub {0} {role}'; SET plan_cache_mode TO force_generic_plan",
            at.schema
        ))?;
        Ok(Conn {
            client,
            statements: HashMap::new(),
        })
    }

    fn statement(&mut self, sql: &'static str) -> Result<Statement, StoreError> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(sql)?;
        self.statements.insert(sql, s.clone());
        Ok(s)
    }

    pub(crate) fn query(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<postgres::Row>, StoreError> {
        let s = self.statement(sql)?;
        Ok(self.client.query(&s, params)?)
    }

    pub(crate) fn execute(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, StoreError> {
        let s = self.statement(sql)?;
        Ok(self.client.execute(&s, params)?)
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.client.is_closed()
    }
}

// --------------------------------------------------------------------------------- reads

/// A scan row owned (Postgres rows are materialized a round at a time).
struct OwnedRow {
    key: Vec<u8>,
    id: Vec<u8>,
    creation_time: f64,
    body: Vec<u8>,
}

const ENTRIES_ASC_BOUNDED: &str = "SELECT e.key_prefix, e.key_suffix, e.doc_id, d.creation_time, d.body FROM index_entries e JOIN documents d ON d.id = e.doc_id WHERE e.index_id = $1 AND e.key_prefix >= $2 AND (e.key_prefix, e.key_suffix) >= ($2, $3) AND e.key_prefix <= $4 AND (e.key_prefix, e.key_suffix) < ($4, $5) ORDER BY e.key_prefix, e.key_suffix LIMIT $6";
const ENTRIES_DESC_BOUNDED: &str = "SELECT e.key_prefix, e.key_suffix, e.doc_id, d.creation_time, d.body FROM index_entries e JOIN documents d ON d.id = e.doc_id WHERE e.index_id = $1 AND e.key_prefix >= $2 AND (e.key_prefix, e.key_suffix) >= ($2, $3) AND e.key_prefix <= $4 AND (e.key_prefix, e.key_suffix) < ($4, $5) ORDER BY e.key_prefix DESC, e.key_suffix DESC LIMIT $6";
const ENTRIES_ASC: &str = "SELECT e.key_prefix, e.key_suffix, e.doc_id, d.creation_time, d.body FROM index_entries e JOIN documents d ON d.id = e.doc_id WHERE e.index_id = $1 AND e.key_prefix >= $2 AND (e.key_prefix, e.key_suffix) >= ($2, $3) ORDER BY e.key_prefix, e.key_suffix LIMIT $4";
const ENTRIES_DESC: &str = "SELECT e.key_prefix, e.key_suffix, e.doc_id, d.creation_time, d.body FROM index_entries e JOIN documents d ON d.id = e.doc_id WHERE e.index_id = $1 AND e.key_prefix >= $2 AND (e.key_prefix, e.key_suffix) >= ($2, $3) ORDER BY e.key_prefix DESC, e.key_suffix DESC LIMIT $4";
const DOCS_ASC: &str =
    "SELECT id, creation_time, body FROM documents WHERE id >= $1 AND id < $2 ORDER BY id LIMIT $3";
const DOCS_DESC: &str = "SELECT id, creation_time, body FROM documents WHERE id >= $1 AND id < $2 ORDER BY id DESC LIMIT $3";

/// A range walked in rounds of growing size, each resuming after the last key seen.
struct Chunked<'a> {
    conn: &'a RefCell<Conn>,
    kind: IndexKind,
    index: IndexId,
    /// Inclusive lower bound (moves up while walking ascending).
    lower: Vec<u8>,
    /// Exclusive upper bound (moves down while walking descending).
    upper: Option<Vec<u8>>,
    order: Order,
    rows: VecDeque<OwnedRow>,
    next_limit: i64,
    exhausted: bool,
}

impl<'a> Chunked<'a> {
    fn new(conn: &'a RefCell<Conn>, range: ScanRange<'_>) -> Chunked<'a> {
        Chunked {
            conn,
            kind: range.kind,
            index: range.index,
            lower: range.start.to_vec(),
            upper: range.end.map(<[u8]>::to_vec),
            order: range.order,
            rows: VecDeque::new(),
            next_limit: SCAN_CHUNK_FIRST,
            exhausted: false,
        }
    }

    fn next(&mut self) -> Result<Option<OwnedRow>, StoreError> {
        if self.rows.is_empty() && !self.exhausted {
            self.fetch()?;
        }
        Ok(self.rows.pop_front())
    }

    fn fetch(&mut self) -> Result<(), StoreError> {
        if self.upper.as_ref().is_some_and(|u| self.lower >= *u) {
            self.exhausted = true;
            return Ok(());
        }
        let limit = self.next_limit;
        self.next_limit = (limit * 4).min(SCAN_CHUNK_MAX);
        let mut conn = self.conn.borrow_mut();
        let fetched: Vec<OwnedRow> = match self.kind {
            IndexKind::ById => {
                let upper = self
                    .upper
                    .as_ref()
                    .ok_or_else(|| StoreError::storage("a by_id scan without an upper bound"))?;
                let sql = match self.order {
                    Order::Asc => DOCS_ASC,
                    Order::Desc => DOCS_DESC,
                };
                conn.query(sql, &[&self.lower, upper, &limit])?
                    .into_iter()
                    .map(|r| {
                        let id: Vec<u8> = r.get(0);
                        OwnedRow {
                            key: id.clone(),
                            id,
                            creation_time: r.get(1),
                            body: r.get(2),
                        }
                    })
                    .collect()
            }
            IndexKind::Entries => {
                let index = self.index as i32;
                let (lp, _, ls) = split_key(&self.lower);
                let rows = match (&self.upper, self.order) {
                    (Some(upper), order) => {
                        let (up, _, us) = split_key(upper);
                        let sql = match order {
                            Order::Asc => ENTRIES_ASC_BOUNDED,
                            Order::Desc => ENTRIES_DESC_BOUNDED,
                        };
                        conn.query(sql, &[&index, &lp, &ls, &up, &us, &limit])?
                    }
                    (None, Order::Asc) => conn.query(ENTRIES_ASC, &[&index, &lp, &ls, &limit])?,
                    (None, Order::Desc) => conn.query(ENTRIES_DESC, &[&index, &lp, &ls, &limit])?,
                };
                rows.into_iter()
                    .map(|r| OwnedRow {
                        key: join_key(r.get(0), r.get(1)),
                        id: r.get(2),
                        creation_time: r.get(3),
                        body: r.get(4),
                    })
                    .collect()
            }
        };
        if (fetched.len() as i64) < limit {
            self.exhausted = true;
        }
        if let Some(last) = fetched.last() {
            match self.order {
                Order::Asc => {
                    // The smallest key above `last` is `last` followed by a zero byte.
                    let mut next = last.key.clone();
                    next.push(0);
                    self.lower = next;
                }
                Order::Desc => self.upper = Some(last.key.clone()),
            }
        }
        self.rows.extend(fetched);
        Ok(())
    }
}

fn visit_row(row: &OwnedRow, visit: &mut RowVisitor<'_>) -> Result<Visit, StoreError> {
    visit(RawRow {
        key: &row.key,
        id: &row.id,
        creation_time: row.creation_time,
        body: &row.body,
    })
}

fn load(conn: &RefCell<Conn>, id: &DocumentId) -> Result<Option<StoredDoc>, StoreError> {
    let rows = conn.borrow_mut().query(
        "SELECT creation_time, body FROM documents WHERE id = $1",
        &[&id_key(id)],
    )?;
    Ok(rows.into_iter().next().map(|r| StoredDoc {
        creation_time: r.get(0),
        body: r.get(1),
    }))
}

fn count_entries(conn: &RefCell<Conn>, index: IndexId) -> Result<u64, StoreError> {
    let rows = conn.borrow_mut().query(
        "SELECT count(*) FROM index_entries WHERE index_id = $1",
        &[&(index as i32)],
    )?;
    Ok(rows[0].get::<_, i64>(0) as u64)
}

fn count_documents(conn: &RefCell<Conn>, table: TableNumber) -> Result<u64, StoreError> {
    let (start, end) = table_id_range(table);
    let rows = conn.borrow_mut().query(
        "SELECT count(*) FROM documents WHERE id >= $1 AND id < $2",
        &[&start, &end],
    )?;
    Ok(rows[0].get::<_, i64>(0) as u64)
}

// ------------------------------------------------------------------------------ snapshots

/// A pooled reader connection. A snapshot's read-only transaction is not ended when the snapshot
/// is dropped: while nothing has been committed since, the next snapshot reuses it with no round
/// trip at all (it sees exactly the latest commit); otherwise its COMMIT travels with the next
/// snapshot's BEGIN, one round trip instead of two. [`PgPool::end_stale`] ends those left open
/// longer than [`READ_TXN_IDLE_MAX`], so an idle pool does not hold back Postgres's vacuum.
struct PooledConn {
    conn: Conn,
    /// A finished snapshot's transaction, still open on it.
    open_txn: Option<OpenTxn>,
    idle_since: Instant,
}

/// A finished snapshot's read-only transaction, left open on its connection.
#[derive(Clone, Copy)]
struct OpenTxn {
    /// The commit its snapshot shows.
    ts: Timestamp,
    begun: Instant,
    /// No statement in it failed (a failed one aborts the transaction: it can only be ended).
    usable: bool,
}

impl OpenTxn {
    /// Whether a snapshot asked for at `latest` may reuse this transaction. Its snapshot is exactly
    /// the state at `ts`, and every write goes through the one writer, which publishes its commit
    /// timestamp before acknowledging (a follower: once it has heard of the commit), so `ts ==
    /// latest` means nothing acknowledged is missing. The age bound keeps Postgres's vacuum
    /// horizon moving under a steady read load.
    fn reusable_at(&self, latest: Timestamp) -> bool {
        self.usable && self.ts == latest && self.begun.elapsed() < READ_TXN_REUSE_MAX
    }
}

/// A reader connection's snapshot read of `last_ts`, prepared once at connect and run by name
/// inside the simple-query string that begins a snapshot (which cannot carry a statement
/// prepared by the client): the text protocol would parse and plan the SELECT anew each time.
const PREPARE_LAST_TS: &str =
    "PREPARE tickethub_last_ts AS SELECT int_value FROM meta WHERE key = 'last_ts'";

/// Longest a finished snapshot's transaction stays open on an idle connection.
const READ_TXN_IDLE_MAX: Duration = Duration::from_millis(500);
/// Longest one read-only transaction serves snapshots, counted from its BEGIN.
const READ_TXN_REUSE_MAX: Duration = Duration::from_secs(1);

/// Connections for snapshots. Slots whose connection broke (a Postgres restart) reconnect when
/// next taken, on the taker's (blocking) thread.
pub(crate) struct PgPool {
    at: PostgresLocation,
    idle: Mutex<Vec<PooledConn>>,
    available: Condvar,
    /// Connections lent out or idle; at most `capacity`.
    open: Mutex<usize>,
    capacity: usize,
    closed: std::sync::atomic::AtomicBool,
    disk_bytes: AtomicU64,
}

impl PgPool {
    fn get(&self, wait: bool) -> Result<Option<PooledConn>, StoreError> {
        let mut idle = self.idle.lock();
        loop {
            if self.closed.load(Ordering::Acquire) {
                return Err(StoreError::ShuttingDown);
            }
            while let Some(pooled) = idle.pop() {
                if !pooled.conn.is_closed() {
                    return Ok(Some(pooled));
                }
                // Broken (the server restarted): its slot is free for a new connection.
                *self.open.lock() -= 1;
            }
            let mut open = self.open.lock();
            if *open < self.capacity {
                *open += 1;
                drop(open);
                drop(idle);
                let connected = Conn::connect(&self.at, "reader").and_then(|mut conn| {
                    conn.client.batch_execute(PREPARE_LAST_TS)?;
                    Ok(conn)
                });
                return match connected {
                    Ok(conn) => Ok(Some(PooledConn {
                        conn,
                        open_txn: None,
                        idle_since: Instant::now(),
                    })),
                    Err(e) => {
                        *self.open.lock() -= 1;
                        Err(e)
                    }
                };
            }
            drop(open);
            if !wait {
                return Ok(None);
            }
            self.available.wait(&mut idle);
        }
    }

    fn put(&self, conn: Conn, open_txn: Option<OpenTxn>) {
        if self.closed.load(Ordering::Acquire) || conn.is_closed() {
            *self.open.lock() -= 1;
        } else {
            self.idle.lock().push(PooledConn {
                conn,
                open_txn,
                idle_since: Instant::now(),
            });
        }
        self.available.notify_one();
    }

    /// End the transactions finished snapshots left open on connections idle for a while.
    fn end_stale(&self) {
        let stale: Vec<PooledConn> = {
            let mut idle = self.idle.lock();
            let (stale, fresh): (Vec<_>, Vec<_>) = idle
                .drain(..)
                .partition(|p| p.open_txn.is_some() && p.idle_since.elapsed() >= READ_TXN_IDLE_MAX);
            *idle = fresh;
            stale
        };
        for mut pooled in stale {
            let _ = pooled.conn.client.batch_execute("COMMIT");
            self.put(pooled.conn, None);
        }
    }
}

/// While the pool lives: every [`READ_TXN_IDLE_MAX`], end stale read transactions.
fn spawn_reaper(pool: &Arc<PgPool>) -> Result<(), StoreError> {
    let pool = Arc::downgrade(pool);
    std::thread::Builder::new()
        .name("store-pg-reaper".into())
        .spawn(move || loop {
            std::thread::sleep(READ_TXN_IDLE_MAX);
            match pool.upgrade() {
                Some(pool) if !pool.closed.load(Ordering::Acquire) => pool.end_stale(),
                _ => return,
            }
        })
        .map(|_| ())
        .map_err(|e| StoreError::storage(format!("spawning the reader reaper: {e}")))
}

pub(crate) struct PgSnapshot {
    conn: Option<RefCell<Conn>>,
    pool: Arc<PgPool>,
    /// Its transaction; `usable` turns false when a statement in it fails.
    txn: Cell<OpenTxn>,
}

impl PgSnapshot {
    /// A snapshot showing at least `latest`.
    fn begin(
        pooled: PooledConn,
        pool: Arc<PgPool>,
        latest: Timestamp,
    ) -> Result<PgSnapshot, StoreError> {
        let PooledConn {
            mut conn, open_txn, ..
        } = pooled;
        if let Some(txn) = open_txn.filter(|txn| txn.reusable_at(latest)) {
            return Ok(PgSnapshot {
                conn: Some(RefCell::new(conn)),
                pool,
                txn: Cell::new(txn),
            });
        }
        // One round trip: the previous snapshot's end, the transaction and its first read, which
        // fixes the snapshot.
        let begun = Instant::now();
        let started = conn.client.simple_query(if open_txn.is_some() {
            "COMMIT; BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; EXECUTE tickethub_last_ts"
        } else {
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; EXECUTE tickethub_last_ts"
        });
        let ts = match started {
            Ok(messages) => messages
                .iter()
                .find_map(|m| match m {
                    SimpleQueryMessage::Row(row) => row.get(0).and_then(|v| v.parse::<u64>().ok()),
                    _ => None,
                })
                .unwrap_or(0),
            Err(e) => {
                let _ = conn.client.batch_execute("ROLLBACK");
                pool.put(conn, None);
                return Err(e.into());
            }
        };
        Ok(PgSnapshot {
            conn: Some(RefCell::new(conn)),
            pool,
            txn: Cell::new(OpenTxn {
                ts: Timestamp(ts),
                begun,
                usable: true,
            }),
        })
    }

    fn conn(&self) -> &RefCell<Conn> {
        self.conn.as_ref().expect("connection present until drop")
    }

    /// Runs a read in this snapshot's transaction; a failure leaves the transaction unusable.
    fn reading<T>(
        &self,
        read: impl FnOnce(&RefCell<Conn>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let result = off_worker(|| read(self.conn()));
        if result.is_err() {
            let mut txn = self.txn.get();
            txn.usable = false;
            self.txn.set(txn);
        }
        result
    }
}

impl Drop for PgSnapshot {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            // Reused or ended by the next snapshot on this connection, or ended by the reaper.
            self.pool.put(conn.into_inner(), Some(self.txn.get()));
        }
    }
}

/// Runs `read` off the async worker when called from one. The blocking `postgres` client drives
/// a runtime of its own, which panics on a tokio worker; the hot paths already call the store from
/// the blocking pool, and this keeps every other reader (file serving, exports, the dashboard)
/// correct: `block_in_place` hands the worker's other tasks to another thread while this one
/// waits on the network. Elsewhere (store threads, the blocking pool) it just calls `read`.
fn off_worker<T>(read: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(read)
        }
        _ => read(),
    }
}

impl Reads for PgSnapshot {
    fn load(&self, id: &DocumentId) -> Result<Option<StoredDoc>, StoreError> {
        self.reading(|conn| load(conn, id))
    }
    fn scan(&self, range: ScanRange<'_>, visit: &mut RowVisitor<'_>) -> Result<(), StoreError> {
        self.reading(|conn| {
            let mut rows = Chunked::new(conn, range);
            while let Some(row) = rows.next()? {
                if visit_row(&row, visit)? == Visit::Stop {
                    break;
                }
            }
            Ok(())
        })
    }
}

impl Snapshot for PgSnapshot {
    fn ts(&self) -> Timestamp {
        self.txn.get().ts
    }
    fn count_entries(&self, index: IndexId) -> Result<u64, StoreError> {
        self.reading(|conn| count_entries(conn, index))
    }
}

pub(crate) struct PgSnapshots {
    pub(crate) pool: Arc<PgPool>,
}

impl SnapshotSource for PgSnapshots {
    fn take(&self, latest: Timestamp) -> Result<Box<dyn Snapshot>, StoreError> {
        off_worker(|| {
            let conn = self
                .pool
                .get(true)?
                .expect("a waiting get returns a connection");
            Ok(Box::new(PgSnapshot::begin(conn, self.pool.clone(), latest)?) as Box<dyn Snapshot>)
        })
    }
    fn try_take(&self, latest: Timestamp) -> Result<Option<Box<dyn Snapshot>>, StoreError> {
        off_worker(|| match self.pool.get(false)? {
            Some(conn) => Ok(Some(
                Box::new(PgSnapshot::begin(conn, self.pool.clone(), latest)?) as _,
            )),
            None => Ok(None),
        })
    }
    fn disk_bytes(&self) -> u64 {
        off_worker(|| self.measure_disk_bytes())
    }
    fn close(&self) {
        self.pool.closed.store(true, Ordering::Release);
        self.pool.idle.lock().clear();
        self.pool.available.notify_all();
    }
}

impl PgSnapshots {
    fn measure_disk_bytes(&self) -> u64 {
        // Measured when a connection is free; otherwise the last figure (this runs on metric
        // scrapes, which must not wait for a reader).
        if let Ok(Some(mut pooled)) = self.pool.get(false) {
            let measured = pooled.conn.query(
                "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = current_schema() AND c.relkind = 'r'",
                &[],
            );
            match measured {
                Ok(rows) => self
                    .pool
                    .disk_bytes
                    .store(rows[0].get::<_, i64>(0) as u64, Ordering::Relaxed),
                Err(_) => {
                    // Inside a left-open transaction the failure aborted it.
                    if let Some(txn) = pooled.open_txn.as_mut() {
                        txn.usable = false;
                    }
                }
            }
            self.pool.put(pooled.conn, pooled.open_txn);
        }
        self.pool.disk_bytes.load(Ordering::Relaxed)
    }
}

// --------------------------------------------------------------------------------- writer

/// A document's state in the batch.
#[derive(Clone)]
enum DocSlot {
    Put {
        creation_time: f64,
        body: Vec<u8>,
        /// The row exists in Postgres (so the batch's count of the table does not grow).
        in_base: bool,
    },
    Deleted {
        in_base: bool,
    },
}

impl DocSlot {
    fn in_base(&self) -> bool {
        match self {
            DocSlot::Put { in_base, .. } | DocSlot::Deleted { in_base } => *in_base,
        }
    }
}

/// An index entry's state in the batch: the document key it points at, or deleted.
type EntrySlot = Option<Vec<u8>>;
type EntryKey = (IndexId, Vec<u8>);

/// A table emptied in this batch: Postgres's rows of it are hidden, then deleted at commit.
#[derive(Clone)]
struct Cleared {
    table: TableNumber,
    indexes: Vec<IndexId>,
}

/// What undoing one change needs: the slot as it was before.
enum Undo {
    Doc(Vec<u8>, Option<DocSlot>),
    Entry(EntryKey, Option<EntrySlot>),
    Clear {
        docs: Vec<(Vec<u8>, DocSlot)>,
        entries: Vec<(EntryKey, EntrySlot)>,
    },
}

/// The batch's writes, merged over Postgres by the writer's reads.
#[derive(Default)]
struct Overlay {
    docs: BTreeMap<Vec<u8>, DocSlot>,
    entries: BTreeMap<EntryKey, EntrySlot>,
    cleared: Vec<Cleared>,
    undo: Vec<Undo>,
    /// `undo.len()` when the current job began.
    job_start: usize,
}

impl Overlay {
    fn table_cleared(&self, table: TableNumber) -> bool {
        self.cleared.iter().any(|c| c.table == table)
    }
    fn index_cleared(&self, index: IndexId) -> bool {
        self.cleared.iter().any(|c| c.indexes.contains(&index))
    }
    fn set_doc(&mut self, key: Vec<u8>, slot: DocSlot) {
        let before = self.docs.insert(key.clone(), slot);
        self.undo.push(Undo::Doc(key, before));
    }
    fn set_entry(&mut self, key: EntryKey, slot: EntrySlot) {
        let before = self.entries.insert(key.clone(), slot);
        self.undo.push(Undo::Entry(key, before));
    }
    fn undo_job(&mut self) {
        while self.undo.len() > self.job_start {
            match self.undo.pop().expect("checked length") {
                Undo::Doc(key, before) => match before {
                    Some(slot) => {
                        self.docs.insert(key, slot);
                    }
                    None => {
                        self.docs.remove(&key);
                    }
                },
                Undo::Entry(key, before) => match before {
                    Some(slot) => {
                        self.entries.insert(key, slot);
                    }
                    None => {
                        self.entries.remove(&key);
                    }
                },
                Undo::Clear { docs, entries } => {
                    self.cleared.pop();
                    self.docs.extend(docs);
                    self.entries.extend(entries);
                }
            }
        }
    }
    fn table_of(id: &[u8]) -> Option<TableNumber> {
        Some(TableNumber(u32::from_be_bytes(
            id.get(..4)?.try_into().ok()?,
        )))
    }
}

/// Who holds the lease, for the refusal message of a second server.
pub(crate) fn holder_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown host".into());
    format!("pid {} on {host}", std::process::id())
}

/// The advisory lock's key: one per schema, so deployments sharing a database do not collide.
fn lock_key(schema: &str) -> i64 {
    let digest = Sha256::digest(format!("tickethub writer {schema}").as_bytes());
    i64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
}

pub(crate) struct PgWriter {
    conn: RefCell<Conn>,
    at: PostgresLocation,
    durable: bool,
    /// The lease epoch this process holds; every commit checks it.
    epoch: i64,
    /// Set once another writer took over: every later batch fails.
    fenced: bool,
    batch: Overlay,
    /// Cluster mode (`cluster.rs`): no advisory lock (a paused leader's session must not block
    /// a takeover; the lease's TTL and epoch decide), and every commit's write set goes to the
    /// `commit_log` table for the followers, with a NOTIFY.
    cluster: Option<String>,
    /// Migration ends in ROLLBACK (a cluster follower reads the catalog, the leader migrates).
    dry_run: bool,
}

impl PgWriter {
    pub(crate) fn connect_writer(at: &PostgresLocation, durable: bool) -> Result<Conn, StoreError> {
        let mut conn = Conn::connect(at, "writer")?;
        // Created only when missing: on a managed Postgres an administrator may have made the
        // schema for a role that cannot create schemas.
        let exists = !conn
            .query(
                "SELECT 1 FROM pg_namespace WHERE nspname = $1",
                &[&at.schema],
            )?
            .is_empty();
        if !exists {
            conn.client
                .batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS \"{}\"", at.schema))?;
        }
        if !durable {
            // Benchmarks only: the commit returns before the WAL is flushed.
            conn.client.batch_execute("SET synchronous_commit = off")?;
        }
        Ok(conn)
    }

    /// Take the advisory lock on a fresh connection; `false` when another session holds it.
    fn try_lock(conn: &mut Conn, schema: &str) -> Result<bool, StoreError> {
        let rows = conn.query("SELECT pg_try_advisory_lock($1)", &[&lock_key(schema)])?;
        Ok(rows[0].get(0))
    }

    fn holder(conn: &mut Conn) -> String {
        conn.query("SELECT holder FROM writer_lease WHERE id = 1", &[])
            .ok()
            .and_then(|rows| rows.first().map(|r| r.get::<_, String>(0)))
            .unwrap_or_else(|| "another process".into())
    }

    /// Open: connect, take the lock, or refuse with who holds it.
    fn open(at: &PostgresLocation, durable: bool) -> Result<PgWriter, StoreError> {
        let mut conn = PgWriter::connect_writer(at, durable)?;
        if !PgWriter::try_lock(&mut conn, &at.schema)? {
            return Err(StoreError::DatabaseInUse {
                holder: PgWriter::holder(&mut conn),
            });
        }
        Ok(PgWriter {
            conn: RefCell::new(conn),
            at: at.clone(),
            durable,
            epoch: 0,
            fenced: false,
            batch: Overlay::default(),
            cluster: None,
            dry_run: false,
        })
    }

    /// Cluster mode: a writer for the lease `epoch` this node has just taken (`cluster.rs`),
    /// without the advisory lock. `channel` is the NOTIFY channel of the commit log.
    pub(crate) fn for_cluster(
        at: &PostgresLocation,
        durable: bool,
        epoch: i64,
        channel: String,
    ) -> Result<PgWriter, StoreError> {
        let conn = PgWriter::connect_writer(at, durable)?;
        Ok(PgWriter {
            conn: RefCell::new(conn),
            at: at.clone(),
            durable,
            epoch,
            fenced: false,
            batch: Overlay::default(),
            cluster: Some(channel),
            dry_run: false,
        })
    }

    /// After migration: a new epoch, which fences off any earlier holder's late commits.
    fn take_lease(&mut self) -> Result<(), StoreError> {
        let rows = self.conn.get_mut().query(
            "INSERT INTO writer_lease (id, epoch, holder) VALUES (1, 1, $1) ON CONFLICT (id) DO UPDATE SET epoch = writer_lease.epoch + 1, holder = excluded.holder, acquired_at = now(), renewed_at = now() RETURNING epoch",
            &[&holder_name()],
        )?;
        self.epoch = rows[0].get(0);
        Ok(())
    }

    /// Before a batch or an idle tick: a lost connection is replaced, and the lock and the lease
    /// are checked to still be ours. Anything else means another writer took over: fenced.
    fn ensure_connected(&mut self) -> Result<(), StoreError> {
        if self.fenced {
            return Err(StoreError::Fenced);
        }
        if !self.conn.get_mut().is_closed() {
            return Ok(());
        }
        let mut conn = PgWriter::connect_writer(&self.at, self.durable)?;
        let locked = self.cluster.is_some() || PgWriter::try_lock(&mut conn, &self.at.schema)?;
        let still_ours = locked && {
            let rows = conn.query("SELECT epoch FROM writer_lease WHERE id = 1", &[])?;
            rows.first().map(|r| r.get::<_, i64>(0)) == Some(self.epoch)
        };
        if !still_ours {
            self.fenced = true;
            tracing::error!(holder = %PgWriter::holder(&mut conn), "another tickethub took over the database while this one was disconnected; this server can no longer write");
            return Err(StoreError::Fenced);
        }
        tracing::info!("reconnected to Postgres; still the writer");
        *self.conn.get_mut() = conn;
        Ok(())
    }

    fn flush(
        &mut self,
        meta: Option<BatchMeta>,
        before: Timestamp,
        commits: &[crate::CommitInfo],
    ) -> Result<(), StoreError> {
        let overlay = std::mem::take(&mut self.batch);
        let epoch = self.epoch;
        let conn = self.conn.get_mut();
        // Prepared once per connection: a statement given as text would be parsed and described
        // in a round trip of its own on every commit, doubling the commit's round trips.
        let renew = conn.statement(RENEW_LEASE)?;
        let delete_entries = conn.statement(DELETE_ENTRIES)?;
        let put_entries = conn.statement(PUT_ENTRIES)?;
        let delete_docs = conn.statement(DELETE_DOCS)?;
        let put_docs = conn.statement(PUT_DOCS)?;
        let put_meta = conn.statement(PUT_META)?;
        let mut tx = conn.client.transaction()?;
        let renewed = tx.execute(&renew, &[&epoch])?;
        if renewed != 1 {
            drop(tx);
            self.fenced = true;
            return Err(StoreError::Fenced);
        }
        for cleared in &overlay.cleared {
            let indexes: Vec<i32> = cleared.indexes.iter().map(|i| *i as i32).collect();
            tx.execute(
                "DELETE FROM index_entries WHERE index_id = ANY($1)",
                &[&indexes],
            )?;
            let (start, end) = table_id_range(cleared.table);
            tx.execute(
                "DELETE FROM documents WHERE id >= $1 AND id < $2",
                &[&start, &end],
            )?;
        }

        let mut del_index = Vec::new();
        let mut del_prefix: Vec<&[u8]> = Vec::new();
        let mut del_hash = Vec::new();
        let mut put_index = Vec::new();
        let mut put_prefix: Vec<&[u8]> = Vec::new();
        let mut put_hash = Vec::new();
        let mut put_suffix: Vec<&[u8]> = Vec::new();
        let mut put_doc: Vec<&[u8]> = Vec::new();
        for ((index, key), slot) in &overlay.entries {
            let (prefix, hash, suffix) = split_key(key);
            match slot {
                None => {
                    del_index.push(*index as i32);
                    del_prefix.push(prefix);
                    del_hash.push(hash);
                }
                Some(doc) => {
                    put_index.push(*index as i32);
                    put_prefix.push(prefix);
                    put_hash.push(hash);
                    put_suffix.push(suffix);
                    put_doc.push(doc);
                }
            }
        }
        if !del_index.is_empty() {
            tx.execute(&delete_entries, &[&del_index, &del_prefix, &del_hash])?;
        }
        if !put_index.is_empty() {
            tx.execute(
                &put_entries,
                &[&put_index, &put_prefix, &put_hash, &put_suffix, &put_doc],
            )?;
        }

        let mut del_docs: Vec<&[u8]> = Vec::new();
        let mut put_ids: Vec<&[u8]> = Vec::new();
        let mut put_times = Vec::new();
        let mut put_bodies: Vec<&[u8]> = Vec::new();
        for (id, slot) in &overlay.docs {
            match slot {
                DocSlot::Deleted { .. } => del_docs.push(id),
                DocSlot::Put {
                    creation_time,
                    body,
                    ..
                } => {
                    put_ids.push(id);
                    put_times.push(*creation_time);
                    put_bodies.push(body);
                }
            }
        }
        if !del_docs.is_empty() {
            tx.execute(&delete_docs, &[&del_docs])?;
        }
        if !put_ids.is_empty() {
            tx.execute(&put_docs, &[&put_ids, &put_times, &put_bodies])?;
        }
        if let Some(meta) = meta {
            tx.execute(
                &put_meta,
                &[
                    &META_LAST_TS,
                    &(meta.last_ts.0 as i64),
                    &META_LAST_CREATION,
                    &meta.last_creation,
                ],
            )?;
        }
        if let (Some(channel), false) = (&self.cluster, commits.is_empty()) {
            let mut ts = Vec::with_capacity(commits.len());
            let mut prev = Vec::with_capacity(commits.len());
            let mut everything = Vec::with_capacity(commits.len());
            let mut keys = Vec::with_capacity(commits.len());
            let mut last = before.0 as i64;
            for commit in commits {
                ts.push(commit.ts.0 as i64);
                prev.push(last);
                last = commit.ts.0 as i64;
                everything.push(commit.writes.everything);
                keys.push(crate::cluster::encode_keys(&commit.writes));
            }
            tx.execute(
                "INSERT INTO commit_log (ts, prev_ts, everything, keys) SELECT * FROM UNNEST($1::int8[], $2::int8[], $3::bool[], $4::bytea[])",
                &[&ts, &prev, &everything, &keys],
            )?;
            // Delivered at commit, to every follower's LISTEN connection.
            tx.execute("SELECT pg_notify($1, '')", &[channel])?;
        }
        tx.commit()?;
        Ok(())
    }

    /// What the last commit stored: the timestamp and creation time to continue above.
    pub(crate) fn stored_meta(&mut self) -> Result<BatchMeta, StoreError> {
        let conn = self.conn.get_mut();
        let ts = conn.query(
            "SELECT int_value FROM meta WHERE key = $1",
            &[&META_LAST_TS],
        )?;
        let ct = conn.query(
            "SELECT real_value FROM meta WHERE key = $1",
            &[&META_LAST_CREATION],
        )?;
        Ok(BatchMeta {
            last_ts: Timestamp(
                ts.first()
                    .and_then(|r| r.get::<_, Option<i64>>(0))
                    .unwrap_or(0) as u64,
            ),
            last_creation: ct
                .first()
                .and_then(|r| r.get::<_, Option<f64>>(0))
                .unwrap_or(0.0),
        })
    }

    /// The document as the batch sees it: the overlay, or Postgres unless its table was cleared.
    fn load_merged(&self, key: &[u8], id: &DocumentId) -> Result<Option<StoredDoc>, StoreError> {
        match self.batch.docs.get(key) {
            Some(DocSlot::Put {
                creation_time,
                body,
                ..
            }) => Ok(Some(StoredDoc {
                creation_time: *creation_time,
                body: body.clone(),
            })),
            Some(DocSlot::Deleted { .. }) => Ok(None),
            None if self.batch.table_cleared(id.table) => Ok(None),
            None => load(&self.conn, id),
        }
    }

    /// First touch of a document already in Postgres by an update or delete (the caller loaded
    /// it first), or a later touch of one the overlay holds.
    fn touched_in_base(&self, key: &[u8]) -> bool {
        self.batch.docs.get(key).is_none_or(DocSlot::in_base)
    }
}

impl Reads for PgWriter {
    fn load(&self, id: &DocumentId) -> Result<Option<StoredDoc>, StoreError> {
        self.load_merged(&id_key(id), id)
    }

    fn scan(&self, range: ScanRange<'_>, visit: &mut RowVisitor<'_>) -> Result<(), StoreError> {
        // The overlay's rows in the range, as (key, document key, creation time, body); `None`
        // for a key the batch deleted.
        let mut overlay: Vec<(Vec<u8>, Option<OwnedRow>)> = Vec::new();
        let in_range = |key: &[u8]| key >= range.start && range.end.is_none_or(|end| key < end);
        match range.kind {
            IndexKind::ById => {
                let upper = match range.end {
                    Some(end) => RangeBound::Excluded(end.to_vec()),
                    None => RangeBound::Unbounded,
                };
                for (key, slot) in self
                    .batch
                    .docs
                    .range((RangeBound::Included(range.start.to_vec()), upper))
                {
                    let row = match slot {
                        DocSlot::Put {
                            creation_time,
                            body,
                            ..
                        } => Some(OwnedRow {
                            key: key.clone(),
                            id: key.clone(),
                            creation_time: *creation_time,
                            body: body.clone(),
                        }),
                        DocSlot::Deleted { .. } => None,
                    };
                    overlay.push((key.clone(), row));
                }
            }
            IndexKind::Entries => {
                let lower = (range.index, range.start.to_vec());
                let upper = match range.end {
                    Some(end) => RangeBound::Excluded((range.index, end.to_vec())),
                    None => RangeBound::Excluded((range.index + 1, Vec::new())),
                };
                for ((_, key), slot) in self
                    .batch
                    .entries
                    .range((RangeBound::Included(lower), upper))
                {
                    let row = match slot {
                        Some(doc_key) => {
                            let Some(id) = crate::catalog::id_from_key(doc_key) else {
                                return Err(StoreError::storage("malformed document id in batch"));
                            };
                            let doc = self.load_merged(doc_key, &id)?.ok_or_else(|| {
                                StoreError::storage("an index entry of the batch has no document")
                            })?;
                            Some(OwnedRow {
                                key: key.clone(),
                                id: doc_key.clone(),
                                creation_time: doc.creation_time,
                                body: doc.body,
                            })
                        }
                        None => None,
                    };
                    overlay.push((key.clone(), row));
                }
            }
        }
        debug_assert!(overlay.iter().all(|(k, _)| in_range(k)));
        if range.order == Order::Desc {
            overlay.reverse();
        }
        let base_hidden = match range.kind {
            IndexKind::ById => range
                .start
                .get(..4)
                .and_then(|_| Overlay::table_of(range.start))
                .is_some_and(|t| self.batch.table_cleared(t)),
            IndexKind::Entries => self.batch.index_cleared(range.index),
        };
        let mut base = (!base_hidden).then(|| Chunked::new(&self.conn, range));
        let mut next_base = match base.as_mut() {
            Some(b) => b.next()?,
            None => None,
        };
        let mut pending = overlay.into_iter().peekable();
        loop {
            // Which stream's key comes first in the scan's order.
            let take_overlay = match (pending.peek(), &next_base) {
                (None, None) => return Ok(()),
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some((ok, _)), Some(b)) => match range.order {
                    Order::Asc => ok.as_slice() <= b.key.as_slice(),
                    Order::Desc => ok.as_slice() >= b.key.as_slice(),
                },
            };
            if take_overlay {
                let (key, row) = pending.next().expect("peeked");
                if next_base.as_ref().is_some_and(|b| b.key == key) {
                    // The batch rewrote or deleted this entry: Postgres's row is stale.
                    next_base = base.as_mut().map(Chunked::next).transpose()?.flatten();
                }
                if let Some(row) = row {
                    if visit_row(&row, visit)? == Visit::Stop {
                        return Ok(());
                    }
                }
            } else {
                let mut row = next_base.take().expect("checked");
                next_base = base.as_mut().map(Chunked::next).transpose()?.flatten();
                // An entry the batch left alone may point at a document it changed (a patch
                // that kept the indexed fields): the body comes from the batch.
                match self.batch.docs.get(&row.id) {
                    Some(DocSlot::Deleted { .. }) => continue,
                    Some(DocSlot::Put { body, .. }) => row.body = body.clone(),
                    None => {}
                }
                if visit_row(&row, visit)? == Visit::Stop {
                    return Ok(());
                }
            }
        }
    }
}

impl PgWriter {
    fn count_merged(&self, table: TableNumber) -> Result<u64, StoreError> {
        let cleared = self.batch.table_cleared(table);
        let base = if cleared {
            0
        } else {
            count_documents(&self.conn, table)?
        };
        let (start, end) = table_id_range(table);
        let mut count = base as i64;
        for slot in self.batch.docs.range(start..end).map(|(_, s)| s) {
            let in_base = slot.in_base() && !cleared;
            count += match (slot, in_base) {
                (DocSlot::Put { .. }, false) => 1,
                (DocSlot::Deleted { .. }, true) => -1,
                _ => 0,
            };
        }
        Ok(count.max(0) as u64)
    }
}

impl BatchWriter for PgWriter {
    fn migration(&mut self) -> &mut dyn MigrationConn {
        self
    }
    fn begin_batch(&mut self) -> Result<(), StoreError> {
        self.batch = Overlay::default();
        self.ensure_connected()
    }
    fn begin_job(&mut self) -> Result<(), StoreError> {
        self.batch.job_start = self.batch.undo.len();
        Ok(())
    }
    fn end_job(&mut self, keep: Keep) -> Result<(), StoreError> {
        match keep {
            // A kept job's undo records are never needed: a failed batch drops the whole overlay.
            Keep::Release => self.batch.undo.truncate(self.batch.job_start),
            Keep::RollBack => self.batch.undo_job(),
        }
        Ok(())
    }
    fn commit_batch(
        &mut self,
        meta: Option<BatchMeta>,
        before: Timestamp,
        commits: &[crate::CommitInfo],
    ) -> Result<(), StoreError> {
        self.flush(meta, before, commits)
    }
    fn rollback_batch(&mut self, before: BatchMeta) -> BatchMeta {
        self.batch = Overlay::default();
        // A commit whose answer was lost may still have landed: continue above what is stored.
        let stored = self.ensure_connected().and_then(|()| self.stored_meta());
        match stored {
            Ok(stored) => BatchMeta {
                last_ts: before.last_ts.max(stored.last_ts),
                last_creation: before.last_creation.max(stored.last_creation),
            },
            Err(_) => before,
        }
    }

    fn insert_document(
        &mut self,
        id: &DocumentId,
        creation_time: f64,
        body: &[u8],
    ) -> Result<(), StoreError> {
        let key = id_key(id);
        // A new id, unless the batch deleted it earlier (an import replacing a row).
        let in_base = self.batch.docs.get(&key).is_some_and(DocSlot::in_base);
        self.batch.set_doc(
            key,
            DocSlot::Put {
                creation_time,
                body: body.to_vec(),
                in_base,
            },
        );
        Ok(())
    }
    fn update_document(&mut self, id: &DocumentId, body: &[u8]) -> Result<(), StoreError> {
        let key = id_key(id);
        let stored = self
            .load_merged(&key, id)?
            .ok_or_else(|| StoreError::storage("update of a document the batch cannot see"))?;
        let in_base = self.touched_in_base(&key);
        self.batch.set_doc(
            key,
            DocSlot::Put {
                creation_time: stored.creation_time,
                body: body.to_vec(),
                in_base,
            },
        );
        Ok(())
    }
    fn delete_document(&mut self, id: &DocumentId) -> Result<(), StoreError> {
        let key = id_key(id);
        let in_base = self.touched_in_base(&key);
        self.batch.set_doc(key, DocSlot::Deleted { in_base });
        Ok(())
    }
    fn insert_entry(
        &mut self,
        index: IndexId,
        key: &[u8],
        id: &DocumentId,
    ) -> Result<(), StoreError> {
        self.batch
            .set_entry((index, key.to_vec()), Some(id_key(id)));
        Ok(())
    }
    fn delete_entry(&mut self, index: IndexId, key: &[u8]) -> Result<(), StoreError> {
        self.batch.set_entry((index, key.to_vec()), None);
        Ok(())
    }
    fn count_documents(&self, table: TableNumber) -> Result<u64, StoreError> {
        self.count_merged(table)
    }
    fn clear_table(&mut self, table: TableNumber, indexes: &[IndexId]) -> Result<u64, StoreError> {
        let count = self.count_merged(table)?;
        let (start, end) = table_id_range(table);
        let docs: Vec<(Vec<u8>, DocSlot)> = self
            .batch
            .docs
            .range(start.clone()..end.clone())
            .map(|(k, s)| (k.clone(), s.clone()))
            .collect();
        for (key, _) in &docs {
            self.batch.docs.remove(key);
        }
        let entries: Vec<(EntryKey, EntrySlot)> = self
            .batch
            .entries
            .iter()
            .filter(|((index, _), _)| indexes.contains(index))
            .map(|(k, s)| (k.clone(), s.clone()))
            .collect();
        for (key, _) in &entries {
            self.batch.entries.remove(key);
        }
        self.batch.cleared.push(Cleared {
            table,
            indexes: indexes.to_vec(),
        });
        self.batch.undo.push(Undo::Clear { docs, entries });
        Ok(count)
    }

    fn maintain(&mut self, _step_pages: u64) -> Result<MaintenanceReport, StoreError> {
        // Postgres's autovacuum returns space by itself.
        Ok(MaintenanceReport {
            pages_released: 0,
            free_pages_left: 0,
            checkpoint: Checkpoint::Truncated,
        })
    }
    fn idle_tick(&mut self) -> Result<(), StoreError> {
        self.ensure_connected()?;
        let epoch = self.epoch;
        let renewed = self.conn.get_mut().execute(RENEW_LEASE, &[&epoch])?;
        if renewed != 1 {
            self.fenced = true;
            return Err(StoreError::Fenced);
        }
        Ok(())
    }
    fn idle_tick_every(&self) -> Option<Duration> {
        // In cluster mode the watcher thread renews the lease (`cluster.rs`); this tick still
        // notices a lost connection early.
        Some(LEASE_RENEW_EVERY)
    }
    fn close(&mut self) -> Result<(), StoreError> {
        // Closing the connection releases the advisory lock: a successor can start at once.
        Ok(())
    }
}

impl MigrationConn for PgWriter {
    fn begin(&mut self) -> Result<(), StoreError> {
        Ok(self.conn.get_mut().client.batch_execute("BEGIN")?)
    }
    fn commit(&mut self) -> Result<(), StoreError> {
        // A follower checks the schema without writing: the leader migrates.
        let end = if self.dry_run { "ROLLBACK" } else { "COMMIT" };
        Ok(self.conn.get_mut().client.batch_execute(end)?)
    }
    fn rollback(&mut self) {
        let _ = self.conn.get_mut().client.batch_execute("ROLLBACK");
    }
    fn create_tables(&mut self) -> Result<(), StoreError> {
        let conn = self.conn.get_mut();
        conn.client.batch_execute(CREATE_TABLES)?;
        let rows = conn.query("SELECT int_value FROM meta WHERE key = $1", &[&META_FORMAT])?;
        let found = rows.first().and_then(|r| r.get::<_, Option<i64>>(0));
        match found {
            Some(v) if v > FORMAT_VERSION => Err(StoreError::storage(format!(
                "the Postgres schema \"{}\" holds data of a newer tickethub (format {v}; this one reads up to {FORMAT_VERSION}); upgrade tickethub",
                self.at.schema
            ))),
            Some(_) => Ok(()),
            None => self.set_meta_i64(META_FORMAT, FORMAT_VERSION),
        }
    }

    fn meta_i64(&mut self, key: &str) -> Result<Option<i64>, StoreError> {
        let rows = self
            .conn
            .get_mut()
            .query("SELECT int_value FROM meta WHERE key = $1", &[&key])?;
        Ok(rows.first().and_then(|r| r.get(0)))
    }
    fn meta_f64(&mut self, key: &str) -> Result<Option<f64>, StoreError> {
        let rows = self
            .conn
            .get_mut()
            .query("SELECT real_value FROM meta WHERE key = $1", &[&key])?;
        Ok(rows.first().and_then(|r| r.get(0)))
    }
    fn meta_text(&mut self, key: &str) -> Result<Option<String>, StoreError> {
        let rows = self
            .conn
            .get_mut()
            .query("SELECT text_value FROM meta WHERE key = $1", &[&key])?;
        Ok(rows.first().and_then(|r| r.get(0)))
    }
    fn set_meta_i64(&mut self, key: &str, value: i64) -> Result<(), StoreError> {
        self.conn.get_mut().execute(
            "INSERT INTO meta (key, int_value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET int_value = excluded.int_value",
            &[&key, &value],
        )?;
        Ok(())
    }
    fn set_meta_text(&mut self, key: &str, value: &str) -> Result<(), StoreError> {
        self.conn.get_mut().execute(
            "INSERT INTO meta (key, text_value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET text_value = excluded.text_value",
            &[&key, &value],
        )?;
        Ok(())
    }

    fn tables(&mut self) -> Result<Vec<(String, u32)>, StoreError> {
        let rows = self
            .conn
            .get_mut()
            .query("SELECT name, number FROM tables", &[])?;
        Ok(rows
            .iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, i32>(1) as u32))
            .collect())
    }
    fn insert_table(&mut self, name: &str, number: u32) -> Result<(), StoreError> {
        self.conn.get_mut().execute(
            "INSERT INTO tables (name, number) VALUES ($1, $2)",
            &[&name, &(number as i32)],
        )?;
        Ok(())
    }
    fn indexes(&mut self) -> Result<Vec<StoredIndex>, StoreError> {
        let rows = self.conn.get_mut().query(
            "SELECT index_id, table_number, name, fields FROM indexes",
            &[],
        )?;
        rows.iter()
            .map(|r| {
                Ok(StoredIndex {
                    id: r.get::<_, i32>(0) as u32,
                    table_number: r.get::<_, i32>(1) as u32,
                    name: r.get(2),
                    fields: parse_fields(r.get(3))?,
                })
            })
            .collect()
    }
    fn insert_index(&mut self, index: &StoredIndex) -> Result<(), StoreError> {
        self.conn.get_mut().execute(
            "INSERT INTO indexes (index_id, table_number, name, fields) VALUES ($1, $2, $3, $4)",
            &[
                &(index.id as i32),
                &(index.table_number as i32),
                &index.name,
                &fields_json(&index.fields),
            ],
        )?;
        Ok(())
    }
    fn drop_index(&mut self, id: IndexId) -> Result<(), StoreError> {
        let conn = self.conn.get_mut();
        conn.execute(
            "DELETE FROM index_entries WHERE index_id = $1",
            &[&(id as i32)],
        )?;
        conn.execute("DELETE FROM indexes WHERE index_id = $1", &[&(id as i32)])?;
        Ok(())
    }

    fn documents_page(
        &mut self,
        table: TableNumber,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<RawDoc>, StoreError> {
        let (start, end) = table_id_range(table);
        let after = after.unwrap_or(&[]);
        let rows = self.conn.get_mut().query(
            "SELECT id, creation_time, body FROM documents WHERE id >= $1 AND id < $2 AND id > $3 ORDER BY id LIMIT $4",
            &[&start, &end, &after, &(limit as i64)],
        )?;
        Ok(rows
            .into_iter()
            .map(|r| RawDoc {
                id: r.get(0),
                creation_time: r.get(1),
                body: r.get(2),
            })
            .collect())
    }
    fn insert_entries(
        &mut self,
        index: IndexId,
        entries: &[(Vec<u8>, Vec<u8>)],
    ) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut prefixes: Vec<&[u8]> = Vec::with_capacity(entries.len());
        let mut hashes = Vec::with_capacity(entries.len());
        let mut suffixes: Vec<&[u8]> = Vec::with_capacity(entries.len());
        let mut docs: Vec<&[u8]> = Vec::with_capacity(entries.len());
        for (key, doc) in entries {
            let (prefix, hash, suffix) = split_key(key);
            prefixes.push(prefix);
            hashes.push(hash);
            suffixes.push(suffix);
            docs.push(doc);
        }
        self.conn.get_mut().execute(
            "INSERT INTO index_entries (index_id, key_prefix, key_hash, key_suffix, doc_id) SELECT $1, * FROM UNNEST($2::bytea[], $3::bytea[], $4::bytea[], $5::bytea[])",
            &[&(index as i32), &prefixes, &hashes, &suffixes, &docs],
        )?;
        Ok(())
    }
}

/// Open a store on Postgres: take the writer's lock (or refuse: another server writes), migrate
/// the schema, take a new lease epoch, connect the readers.
pub(crate) fn open(
    at: &PostgresLocation,
    schema: Schema,
    options: StoreOptions,
) -> Result<Store, StoreError> {
    check_schema_name(&at.schema)?;
    let mut writer = PgWriter::open(at, options.durable)?;
    let migrated = migrate(&mut writer, &schema)?;
    writer.take_lease()?;
    let pool = connect_pool(at, options.readers)?;
    tracing::info!(schema = %at.schema, epoch = writer.epoch, "opened the Postgres store; this server is its writer");
    Store::start(
        Backend::Postgres,
        Box::new(writer),
        Arc::new(PgSnapshots { pool }),
        migrated,
        schema,
        options,
    )
}

/// The snapshot pool, every connection made now: a bad URL or a full server shows at start, not
/// on the first query.
fn connect_pool(at: &PostgresLocation, readers: usize) -> Result<Arc<PgPool>, StoreError> {
    let capacity = readers.max(1);
    let pool = Arc::new(PgPool {
        at: at.clone(),
        idle: Mutex::new(Vec::new()),
        available: Condvar::new(),
        open: Mutex::new(0),
        capacity,
        closed: std::sync::atomic::AtomicBool::new(false),
        disk_bytes: AtomicU64::new(0),
    });
    // Connect the readers now: a bad URL or a full server shows at start, not on the first query.
    let conns = (0..capacity)
        .map(|_| {
            pool.get(true)
                .map(|c| c.expect("a waiting get returns a connection"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    for pooled in conns {
        pool.put(pooled.conn, None);
    }
    spawn_reaper(&pool)?;
    Ok(pool)
}

/// What migrating to `schema` would find, in a transaction that is rolled back: a cluster
/// follower's catalog, which the leader's own migration decided.
pub(crate) fn dry_run_migration(
    at: &PostgresLocation,
    durable: bool,
    schema: &Schema,
) -> Result<crate::migrate::Migrated, StoreError> {
    let mut probe = PgWriter::for_cluster(at, durable, 0, String::new())?;
    probe.dry_run = true;
    migrate(&mut probe, schema)
}

/// Open a cluster node's store (`cluster.rs`): the leader migrates and writes with `writer`; a
/// follower (`writer` is `None`) checks the schema in a transaction it rolls back and starts
/// without a writer.
pub(crate) fn open_node(
    at: &PostgresLocation,
    schema: Schema,
    options: StoreOptions,
    writer: Option<PgWriter>,
    state: Arc<crate::cluster::ClusterState>,
) -> Result<Store, StoreError> {
    let (writer, migrated) = match writer {
        Some(mut writer) => {
            let migrated = migrate(&mut writer, &schema)?;
            (Some(Box::new(writer) as Box<dyn BatchWriter>), migrated)
        }
        None => (None, dry_run_migration(at, options.durable, &schema)?),
    };
    let pool = connect_pool(at, options.readers)?;
    Store::assemble(
        Backend::Postgres,
        writer,
        Arc::new(PgSnapshots { pool }),
        migrated,
        schema,
        options,
        Some(state),
    )
}
