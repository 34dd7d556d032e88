//! Storage without HTTP: raw `rusqlite` doing the same writes and reads (the storage ceiling),
//! tickethub's own store called in-process, and the bounded-scan check on a large table.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rusqlite::{params, Connection};
use tickethub_store::{DocReader, IndexQuery, Order, Schema, Store, StoreError, StoreOptions};
use tickethub_value::{Object, Value};

use crate::loadgen::{new_histogram, record, ErrorCounts, LoadResult};
use crate::workloads::seed_user_id;

/// The app schema the server embeds; the in-process store uses the same tables and indexes.
const APP_SCHEMA: &str = include_str!("../../../schema.toml");
/// Most documents one mutation may write is 16,000; bulk loads stay below it.
const LOAD_BATCH: u64 = 10_000;

pub fn app_schema() -> Result<Schema> {
    Schema::from_toml(APP_SCHEMA).context("parsing the app schema")
}

/// Run `op` on `threads` threads until `warmup + measure` is over; measure after the warm-up.
fn timed_threads<F>(threads: usize, warmup: Duration, measure: Duration, op: F) -> LoadResult
where
    F: Fn(usize, u64, &mut SmallRng) -> Result<()> + Send + Sync + 'static,
{
    let op = Arc::new(op);
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + measure;
    let mut handles = Vec::new();
    for t in 0..threads.max(1) {
        let op = op.clone();
        let stop = stop.clone();
        handles.push(std::thread::spawn(move || {
            let mut rng = SmallRng::seed_from_u64(t as u64 + 11);
            let mut histogram = new_histogram();
            let mut errors = ErrorCounts::default();
            let mut ops = 0u64;
            let mut seq = 0u64;
            while !stop.load(Ordering::Relaxed) && Instant::now() < end {
                let t0 = Instant::now();
                // Sequence numbers are unique across threads: thread index in the low bits.
                let unique = seq * 256 + t as u64;
                seq += 1;
                match op(t, unique, &mut rng) {
                    Ok(()) => {
                        if t0 >= measure_from && Instant::now() <= end {
                            ops += 1;
                            record(&mut histogram, t0.elapsed());
                        }
                    }
                    Err(e) => {
                        errors.rejected += 1;
                        if errors.samples.len() < 5 {
                            errors.samples.push(e.to_string());
                        }
                    }
                }
            }
            (ops, histogram, errors)
        }));
    }
    let mut result = LoadResult {
        ops: 0,
        measured: measure,
        histogram: new_histogram(),
        errors: ErrorCounts::default(),
        acked: Vec::new(),
    };
    for h in handles {
        let (ops, histogram, errors) = h.join().expect("storage worker panicked");
        result.ops += ops;
        result.histogram.add(&histogram).expect("same bounds");
        result.errors.rejected += errors.rejected;
        result.errors.samples.extend(errors.samples);
    }
    stop.store(true, Ordering::Relaxed);
    result
}

// ---------------------------------------------------------------- raw rusqlite

fn sqlite_open(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // Durable like tickethub: the commit is on disk when it returns.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.busy_timeout(Duration::from_secs(10))?;
    Ok(conn)
}

/// A fresh SQLite file with tickethub's `users` shape and `seed` rows.
pub fn sqlite_prepare(dir: &Path, seed: u64) -> Result<std::path::PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join("ceiling.sqlite3");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let mut conn = sqlite_open(&path)?;
    conn.execute_batch(
        "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL,
             userId TEXT NOT NULL, phone TEXT, stripeConnectId TEXT);
         CREATE INDEX by_user_id ON users (userId);
         CREATE INDEX by_email ON users (email);",
    )?;
    let txn = conn.transaction()?;
    {
        let mut insert =
            txn.prepare("INSERT INTO users (name, email, userId) VALUES (?1, ?2, ?3)")?;
        for n in 0..seed {
            let id = seed_user_id(n);
            insert.execute(params![
                format!("Bench User {n}"),
                format!("{id}@bench.example"),
                id
            ])?;
        }
    }
    txn.commit()?;
    Ok(path)
}

/// One durable INSERT per commit, from one thread (SQLite has one writer).
pub fn sqlite_creates(path: &Path, warmup: Duration, measure: Duration) -> Result<LoadResult> {
    let path = path.to_path_buf();
    let conn = std::sync::Mutex::new(sqlite_open(&path)?);
    Ok(timed_threads(1, warmup, measure, move |_, seq, _| {
        let conn = conn.lock().expect("sqlite lock");
        let id = format!("ceiling-{seq}");
        conn.prepare_cached("INSERT INTO users (name, email, userId) VALUES (?1, ?2, ?3)")?
            .execute(params![
                format!("Bench User {seq}"),
                format!("{id}@bench.example"),
                id
            ])?;
        Ok(())
    }))
}

/// Point reads by the indexed `userId`, one connection per thread.
pub fn sqlite_reads(
    path: &Path,
    seed: u64,
    threads: usize,
    warmup: Duration,
    measure: Duration,
) -> Result<LoadResult> {
    let conns: Vec<std::sync::Mutex<Connection>> = (0..threads)
        .map(|_| sqlite_open(path).map(std::sync::Mutex::new))
        .collect::<Result<_>>()?;
    Ok(timed_threads(threads, warmup, measure, move |t, _, rng| {
        let conn = conns[t].lock().expect("sqlite lock");
        let id = seed_user_id(rng.gen_range(0..seed));
        let mut stmt = conn.prepare_cached(
            "SELECT id, name, email, userId, phone, stripeConnectId FROM users WHERE userId = ?1 LIMIT 1",
        )?;
        let row: (i64, String, String, String, Option<String>, Option<String>) =
            stmt.query_row(params![id], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            })?;
        anyhow::ensure!(row.3 == id, "wrong row");
        Ok(())
    }))
}

// ---------------------------------------------------------------- tickethub store in-process

fn user_fields(user_id: &str, n: u64) -> Object {
    let mut fields = Object::new();
    fields.insert("name".into(), Value::String(format!("Bench User {n}")));
    fields.insert(
        "email".into(),
        Value::String(format!("{user_id}@bench.example")),
    );
    fields.insert("userId".into(), Value::String(user_id.to_string()));
    fields
}

pub fn store_open(dir: &Path) -> Result<Store> {
    Ok(Store::open(dir, app_schema()?, StoreOptions::default())?)
}

/// Insert users `seed-<from> .. seed-<to-1>` in batches of [`LOAD_BATCH`] per mutation.
pub fn store_load(store: &Store, from: u64, to: u64) -> Result<()> {
    let mut start = from;
    while start < to {
        let end = (start + LOAD_BATCH).min(to);
        store.mutate(move |txn| -> Result<(), StoreError> {
            for n in start..end {
                txn.insert("users", user_fields(&seed_user_id(n), n))?;
            }
            Ok(())
        })?;
        start = end;
    }
    Ok(())
}

/// Durable single-document inserts from `threads` threads (the writer groups their commits).
pub fn store_creates(
    store: &Store,
    threads: usize,
    warmup: Duration,
    measure: Duration,
) -> LoadResult {
    let store = store.clone();
    timed_threads(threads, warmup, measure, move |_, seq, _| {
        let id = format!("inproc-{seq}");
        store.mutate(move |txn| -> Result<(), StoreError> {
            txn.insert("users", user_fields(&id, seq))?;
            Ok(())
        })?;
        Ok(())
    })
}

pub fn by_user_id(user_id: &str) -> IndexQuery {
    IndexQuery {
        table: "users".into(),
        index: "by_user_id".into(),
        eq: vec![("userId".into(), Some(Value::String(user_id.to_string())))],
        lower: None,
        upper: None,
        order: Order::Asc,
    }
}

/// Point reads through the index, each in its own snapshot (as a query does).
pub fn store_reads(
    store: &Store,
    seed: u64,
    threads: usize,
    warmup: Duration,
    measure: Duration,
) -> LoadResult {
    let store = store.clone();
    timed_threads(threads, warmup, measure, move |_, _, rng| {
        let id = seed_user_id(rng.gen_range(0..seed));
        let docs = store.read()?.collect(&by_user_id(&id), Some(1))?;
        anyhow::ensure!(docs.len() == 1, "seeded user {id} not found");
        Ok(())
    })
}

/// Latencies of one read shape repeated `iterations` times on one thread.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ReadTiming {
    pub p50_us: u64,
    pub p99_us: u64,
    pub mean_us: f64,
    pub rows: usize,
}

pub fn time_reads<F>(iterations: usize, mut op: F) -> Result<ReadTiming>
where
    F: FnMut(&mut SmallRng) -> Result<usize>,
{
    let mut rng = SmallRng::seed_from_u64(5);
    let mut histogram = new_histogram();
    let mut rows = 0;
    let started = Instant::now();
    for _ in 0..iterations {
        let t0 = Instant::now();
        rows = op(&mut rng)?;
        record(&mut histogram, t0.elapsed());
    }
    Ok(ReadTiming {
        p50_us: histogram.value_at_quantile(0.5),
        p99_us: histogram.value_at_quantile(0.99),
        mean_us: started.elapsed().as_secs_f64() * 1e6 / iterations.max(1) as f64,
        rows,
    })
}

/// `take(10)`, `first()` and an index point lookup on a store holding `rows` users.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ScanTimings {
    pub rows: u64,
    pub load_seconds: f64,
    pub take10: ReadTiming,
    pub first: ReadTiming,
    pub index_lookup: ReadTiming,
}

pub fn scan_timings(store: &Store, rows: u64, load_seconds: f64) -> Result<ScanTimings> {
    const ITERATIONS: usize = 3_000;
    let full = IndexQuery::full_scan("users", Order::Asc);
    let take10 = time_reads(ITERATIONS, |_| {
        Ok(store.read()?.collect(&full, Some(10))?.len())
    })?;
    let first = time_reads(ITERATIONS, |_| {
        Ok(store.read()?.collect(&full, Some(1))?.len())
    })?;
    let index_lookup = time_reads(ITERATIONS, |rng| {
        let id = seed_user_id(rng.gen_range(0..rows));
        Ok(store.read()?.collect(&by_user_id(&id), Some(1))?.len())
    })?;
    anyhow::ensure!(take10.rows == 10 && first.rows == 1 && index_lookup.rows == 1);
    Ok(ScanTimings {
        rows,
        load_seconds,
        take10,
        first,
        index_lookup,
    })
}
