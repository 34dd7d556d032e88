//! Store throughput figures (not a test: nothing here asserts).
//!
//! Run: `cargo bench -p tickethub-store --bench store`
//!
//! - durable single-document inserts into `users` (two indexes): one commit per mutation
//!   (sequential `mutate`) vs group commit under 16 concurrent writer threads;
//! - index point reads per second (each in its own snapshot) on 1 and 2 reader threads;
//! - index lookup cost at 10k vs 1M documents.

use std::time::{Duration, Instant};

use rand::Rng;
use tickethub_store::{DocReader, IndexQuery, Order, Schema, Store, StoreError, StoreOptions};
use tickethub_value::{Object, Value};

const SCHEMA: &str = r#"
[tables.users]
fields.name = "string"
fields.email = "string"
fields.userId = "string"
indexes.by_user_id = ["userId"]
indexes.by_email = ["email"]
"#;

fn open(dir: &std::path::Path, durable: bool) -> Store {
    let options = StoreOptions {
        readers: 4,
        max_batch: 256,
        durable,
    };
    Store::open(dir, Schema::from_toml(SCHEMA).unwrap(), options).unwrap()
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

fn concurrent_inserts(store: &Store, threads: u64, each: u64, offset: u64) -> f64 {
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

/// Many mutations in flight at once through `submit` (as an async server would have), each
/// waited for through its `done` callback.
fn pipelined_inserts(store: &Store, total: u64, in_flight: u64, offset: u64) -> f64 {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let start = Instant::now();
    let mut sent = 0;
    let mut finished = 0;
    while finished < total {
        while sent < total && sent - finished < in_flight {
            let n = offset + sent;
            let tx = tx.clone();
            store.submit(
                Box::new(move |t| {
                    t.insert("users", user(n)).unwrap();
                    tickethub_store::Outcome::Commit
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
    per_sec(total, start.elapsed())
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

/// Point reads, each in its own snapshot (as a query function would), over `population` docs.
fn point_reads(store: &Store, threads: u64, each: u64, population: u64) -> f64 {
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut rng = rand::thread_rng();
                for _ in 0..each {
                    let r = store.read().unwrap();
                    let docs = r
                        .collect(&point_query(rng.gen_range(0..population)), Some(1))
                        .unwrap();
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

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this too, so keep it short then.
    let quick = !std::env::args().any(|a| a == "--bench");
    let scale = if quick { 100 } else { 1 };

    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), true);
    let seq = sequential_inserts(&store, 2_000 / scale, 0);
    let group = concurrent_inserts(&store, 16, 4_000 / scale, 10_000_000);
    println!("durable inserts, one commit per mutation (sequential): {seq:>10.0} mutations/s");
    println!("durable inserts, group commit, 16 writer threads:      {group:>10.0} mutations/s  ({:.1}x)", group / seq);
    let piped = pipelined_inserts(&store, 100_000 / scale, 1_024, 20_000_000);
    println!("durable inserts, group commit, 1024 in flight (submit): {piped:>9.0} mutations/s  ({:.1}x)", piped / seq);
    store.close().unwrap();
    drop(store);

    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), true);
    let small = 10_000;
    bulk_load(&store, small, 5_000);
    let reads = 200_000 / scale;
    let one = point_reads(&store, 1, reads, small);
    let two = point_reads(&store, 2, reads / 2, small);
    println!("index point reads, 1 thread, 10k docs:                 {one:>10.0} reads/s");
    println!(
        "index point reads, 2 threads, 10k docs:                {two:>10.0} reads/s  ({:.2}x)",
        two / one
    );
    store.close().unwrap();
    drop(store);

    let big = 1_000_000 / scale;
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), true);
    let start = Instant::now();
    bulk_load(&store, big, 10_000);
    let load = per_sec(big, start.elapsed());
    println!("bulk load of {big} documents (10k per mutation):       {load:>10.0} docs/s");
    let at_big = point_reads(&store, 1, reads, big);
    println!("index point reads, 1 thread, {big} docs:             {at_big:>10.0} reads/s");
    println!(
        "lookup cost at {big} vs 10k documents: {:.2}x (per-read time ratio)",
        one / at_big
    );
    store.close().unwrap();
}
