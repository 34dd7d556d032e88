//! Store throughput figures (not a test: nothing here asserts).
//!
//! Run: `cargo bench -p tickethub-store --bench store [-- --bench [writes] [ceiling] [reads] [scale]]`
//! (no section names: all three). Every figure is printed next to a ratio against a baseline
//! taken in the same run, because absolute numbers on a shared machine move with its load.
//!
//! - `writes`: durable single-document inserts into `users` (two indexes): one commit per
//!   mutation (sequential `mutate`, the baseline) vs group commit with 16 threads of one blocking
//!   `mutate` each, 16 threads each pipelining a window of 64 `submit`s (as an async server
//!   would), and one submitter keeping 256 in flight. Each line also gives the writer thread's
//!   CPU time per mutation, which moves far less with machine load than the rates do.
//! - `ceiling`: the same inserts without fsync: the rate the writer's CPU cost alone allows.
//! - `reads`: indexed point reads on 1 and 2 threads, measured the way the runtime reads (one
//!   snapshot per query: `store.read()` + `collect(limit 1)`) and many reads in one snapshot.
//! - `scale`: per-snapshot point reads at 10k vs 1M documents.
//!
//! With `TICKETHUB_BENCH_POSTGRES=<url>` every section runs on Postgres (a fresh schema each).

use std::sync::mpsc;
use std::time::{Duration, Instant};

use rand::Rng;
use tickethub_store::{
    DocReader, IndexQuery, Order, Outcome, PostgresLocation, Schema, Store, StoreError,
    StoreLocation, StoreOptions,
};
use tickethub_value::{Object, Value};

const SCHEMA: &str = r#"
[tables.users]
fields.name = "string"
fields.email = "string"
fields.userId = "string"
indexes.by_user_id = ["userId"]
indexes.by_email = ["email"]
"#;

/// SQLite in `dir`, or with `TICKETHUB_BENCH_POSTGRES=<url>` a fresh schema of that Postgres.
fn open(dir: &std::path::Path, durable: bool) -> Store {
    let options = StoreOptions {
        durable,
        ..StoreOptions::default()
    };
    let location = match std::env::var("TICKETHUB_BENCH_POSTGRES") {
        Ok(url) if !url.is_empty() => {
            let name = dir.file_name().unwrap().to_string_lossy().to_lowercase();
            let schema: String = name
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect();
            StoreLocation::Postgres(PostgresLocation {
                url,
                schema: format!("bench_{schema}"),
            })
        }
        _ => StoreLocation::Sqlite {
            dir: dir.to_path_buf(),
        },
    };
    Store::open_at(&location, Schema::from_toml(SCHEMA).unwrap(), options).unwrap()
}

fn user(n: u64) -> Object {
    Object::from([
        ("name".to_string(), Value::from(format!("User {n}"))),
        (
            "email".to_string(),
            Value::from(format!("user{n}@example.com")),
        ),
        ("userId".to_string(), Value::from(format!("user_{n:08}"))),
    ])
}

fn per_sec(n: u64, elapsed: Duration) -> f64 {
    n as f64 / elapsed.as_secs_f64()
}

fn sequential_inserts(store: &Store, n: u64, offset: u64) -> f64 {
    let start = Instant::now();
    for i in 0..n {
        store
            .mutate(move |tx| tx.insert("users", user(offset + i)))
            .unwrap();
    }
    per_sec(n, start.elapsed())
}

/// `threads` threads, each with one blocking `mutate` in flight.
fn blocking_threads(store: &Store, threads: u64, each: u64, offset: u64) -> f64 {
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..each {
                    let n = offset + t * each + i;
                    store.mutate(move |tx| tx.insert("users", user(n))).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    per_sec(threads * each, start.elapsed())
}

/// One client keeping up to `window` insert jobs in flight through `submit`, waiting for each
/// through its `done` callback; returns after all `total` are durable.
fn pipeline(store: &Store, total: u64, window: u64, offset: u64) {
    let (tx, rx) = mpsc::channel::<()>();
    let mut sent = 0;
    let mut finished = 0;
    while finished < total {
        while sent < total && sent - finished < window {
            let n = offset + sent;
            let tx = tx.clone();
            store.submit(
                Box::new(move |t| {
                    t.insert("users", user(n)).unwrap();
                    Outcome::Commit
                }),
                Box::new(move |r| {
                    r.unwrap();
                    let _ = tx.send(());
                }),
            );
            sent += 1;
        }
        rx.recv().unwrap();
        finished += 1;
    }
}

/// `clients` threads, each pipelining `each` inserts with a window of `window`.
fn pipelined_clients(store: &Store, clients: u64, each: u64, window: u64, offset: u64) -> f64 {
    let start = Instant::now();
    let handles: Vec<_> = (0..clients)
        .map(|c| {
            let store = store.clone();
            std::thread::spawn(move || pipeline(&store, each, window, offset + c * each))
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    per_sec(clients * each, start.elapsed())
}

/// CPU time the store's writer thread has used so far (Linux: from /proc; `None` elsewhere).
/// Unlike wall-clock rates it barely moves with the load other processes put on the machine.
fn writer_cpu() -> Option<Duration> {
    // A new thread names itself once it runs, so a just-opened store's writer may be unnamed.
    for _ in 0..100 {
        if let Some(cpu) = writer_cpu_now() {
            return Some(cpu);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    None
}

fn writer_cpu_now() -> Option<Duration> {
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim() == "store-writer" {
            let stat = std::fs::read_to_string(task.path().join("schedstat")).ok()?;
            let nanos: u64 = stat.split_whitespace().next()?.parse().ok()?;
            return Some(Duration::from_nanos(nanos));
        }
    }
    None
}

/// Runs `f` (which makes `n` mutations, returning mutations/s) and prints the line with the
/// writer thread's CPU per mutation.
fn measure_writes(label: &str, n: u64, baseline: Option<f64>, f: impl FnOnce() -> f64) -> f64 {
    let before = writer_cpu();
    let rate = f();
    let cpu = match (before, writer_cpu()) {
        (Some(a), Some(b)) => format!(
            "{:5.1} us writer CPU/mutation",
            (b - a).as_secs_f64() * 1e6 / n as f64
        ),
        _ => String::new(),
    };
    let ratio = match baseline {
        Some(base) => format!("{:6.1}x", rate / base),
        None => "  base".to_string(),
    };
    println!("{label:<58} {rate:>9.0} /s  {ratio}  {cpu}");
    rate
}

fn bulk_load(store: &Store, total: u64, batch: u64) {
    let mut n = 0;
    while n < total {
        let from = n;
        let to = (n + batch).min(total);
        store
            .mutate(move |tx| {
                for i in from..to {
                    tx.insert("users", user(i))?;
                }
                Ok::<_, StoreError>(())
            })
            .unwrap();
        n = to;
    }
}

fn point_query(n: u64) -> IndexQuery {
    IndexQuery {
        table: "users".into(),
        index: "by_user_id".into(),
        eq: vec![("userId".into(), Some(Value::from(format!("user_{n:08}"))))],
        lower: None,
        upper: None,
        order: Order::Asc,
    }
}

/// How the reads of a measurement are grouped into snapshots.
#[derive(Clone, Copy)]
enum Snapshots {
    /// One `store.read()` per point read, as a query function does.
    PerRead,
    /// Reads share a snapshot (renewed every [`READS_PER_SHARED_SNAPSHOT`], below the
    /// per-transaction range cap): the cost of the lookup alone.
    Shared,
}

const READS_PER_SHARED_SNAPSHOT: u64 = 1_000;

/// Point reads over `population` docs, `each` per thread.
fn point_reads(store: &Store, threads: u64, each: u64, population: u64, mode: Snapshots) -> f64 {
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut rng = rand::thread_rng();
                let mut shared = None;
                for i in 0..each {
                    let query = point_query(rng.gen_range(0..population));
                    let docs = match mode {
                        Snapshots::Shared => {
                            if i % READS_PER_SHARED_SNAPSHOT == 0 {
                                // End the old snapshot before taking the next connection.
                                drop(shared.take());
                                shared = Some(store.read().unwrap());
                            }
                            let snapshot = shared.as_ref().expect("taken above");
                            snapshot.collect(&query, Some(1)).unwrap()
                        }
                        Snapshots::PerRead => {
                            store.read().unwrap().collect(&query, Some(1)).unwrap()
                        }
                    };
                    assert_eq!(docs.len(), 1);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    per_sec(threads * each, start.elapsed())
}

fn writes(scale: u64) {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), true);
    let n = 2_000 / scale;
    let seq = measure_writes(
        "durable inserts, one commit per mutation (sequential)",
        n,
        None,
        || sequential_inserts(&store, n, 0),
    );
    let n = 16 * (4_000 / scale);
    measure_writes(
        "durable inserts, 16 threads x 1 blocking mutate",
        n,
        Some(seq),
        || blocking_threads(&store, 16, n / 16, 10_000_000),
    );
    let n = 16 * (12_500 / scale);
    measure_writes(
        "durable inserts, 16 threads x 64-job submit window",
        n,
        Some(seq),
        || pipelined_clients(&store, 16, n / 16, 64, 20_000_000),
    );
    let n = 200_000 / scale;
    measure_writes(
        "durable inserts, 1 submitter x 256 in flight",
        n,
        Some(seq),
        || pipelined_clients(&store, 1, n, 256, 30_000_000),
    );
    store.close().unwrap();
}

fn writer_ceiling(scale: u64) {
    // Without fsync the rate is bounded by the writer thread's CPU per mutation.
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), false);
    let n = 16 * (12_500 / scale);
    measure_writes(
        "no fsync (CPU bound), 16 threads x 64-job submit window",
        n,
        None,
        || pipelined_clients(&store, 16, n / 16, 64, 0),
    );
    store.close().unwrap();
}

fn reads(scale: u64) {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), true);
    let population = 10_000;
    bulk_load(&store, population, 5_000);
    let n = 200_000 / scale;
    for mode in [Snapshots::PerRead, Snapshots::Shared] {
        let label = match mode {
            Snapshots::PerRead => "one snapshot per read",
            Snapshots::Shared => "one snapshot per thread",
        };
        let one = point_reads(&store, 1, n, population, mode);
        let two = point_reads(&store, 2, n / 2, population, mode);
        println!(
            "index point reads, {label:<23}, 1 thread:  {one:>9.0} /s  ({:.2} us/read)",
            1e6 / one
        );
        println!(
            "index point reads, {label:<23}, 2 threads: {two:>9.0} /s  ({:.2}x of 1 thread)",
            two / one
        );
    }
    store.close().unwrap();
}

fn lookup_scale(scale: u64) {
    let reads = 200_000 / scale;
    let small = 10_000;
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), true);
    bulk_load(&store, small, 5_000);
    let at_small = point_reads(&store, 1, reads, small, Snapshots::PerRead);
    store.close().unwrap();
    drop(store);

    let big = 1_000_000 / scale;
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), true);
    let start = Instant::now();
    bulk_load(&store, big, 10_000);
    let load = per_sec(big, start.elapsed());
    println!("bulk load of {big} documents (10k per mutation):        {load:>9.0} docs/s");
    let at_big = point_reads(&store, 1, reads, big, Snapshots::PerRead);
    store.close().unwrap();
    drop(store);
    println!("index point reads (one snapshot each), {small} docs:     {at_small:>9.0} /s");
    println!("index point reads (one snapshot each), {big} docs:   {at_big:>9.0} /s");
    println!(
        "lookup cost at {big} vs {small} documents: {:.2}x (per-read time ratio)",
        at_small / at_big
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this too, so keep it short then.
    let quick = !args.iter().any(|a| a == "--bench");
    // STORE_BENCH_DIVISOR shrinks every count (e.g. 10 for a run under callgrind).
    let divisor = std::env::var("STORE_BENCH_DIVISOR")
        .ok()
        .and_then(|d| d.parse().ok());
    let scale = divisor.unwrap_or(if quick { 100 } else { 1 }).max(1);
    let sections: Vec<&str> = args
        .iter()
        .skip(1)
        .map(String::as_str)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wanted = |name: &str| sections.is_empty() || sections.contains(&name);
    if wanted("writes") {
        writes(scale);
    }
    if wanted("ceiling") {
        writer_ceiling(scale);
    }
    if wanted("reads") {
        reads(scale);
    }
    if wanted("scale") {
        lookup_scale(scale);
    }
}
