//! The writer's queue is bounded: when it is full, a new job is refused at once with
//! `ServerOverloaded` instead of queueing without bound.

mod support;

use std::sync::mpsc;

use tickethub_store::{Outcome, Schema, StoreError, StoreOptions};
use tickethub_value::{Object, Value};

const CAPACITY: usize = 4;

#[test]
fn a_full_writer_queue_refuses_at_once_with_server_overloaded() {
    let dir = tempfile::tempdir().unwrap();
    let schema = Schema::from_toml("[tables.items]\nfields.n = \"number\"\n").unwrap();
    let store = support::open(
        dir.path(),
        schema,
        StoreOptions {
            queue_capacity: CAPACITY,
            durable: false,
            ..StoreOptions::default()
        },
    )
    .unwrap();

    // Hold the writer inside a job, so nothing leaves the queue.
    let (started_tx, started) = mpsc::channel();
    let (release, release_rx) = mpsc::channel::<()>();
    let (results_tx, results) = mpsc::channel();
    let done_to = |tx: &mpsc::Sender<(usize, Result<(), StoreError>)>, i: usize| {
        let tx = tx.clone();
        Box::new(move |r: Result<tickethub_store::CommitInfo, StoreError>| {
            let _ = tx.send((i, r.map(|_| ())));
        }) as tickethub_store::Done
    };
    store.submit(
        Box::new(move |_txn| {
            started_tx.send(()).unwrap();
            release_rx.recv().unwrap();
            Outcome::Commit
        }),
        done_to(&results_tx, 0),
    );
    started.recv().unwrap();

    let insert = |n: f64| -> tickethub_store::Job {
        Box::new(move |txn| {
            let fields = Object::from([("n".to_string(), Value::Float64(n))]);
            txn.insert("items", fields).unwrap();
            Outcome::Commit
        })
    };
    for i in 1..=CAPACITY {
        store.submit(insert(i as f64), done_to(&results_tx, i));
    }
    // The queue holds CAPACITY jobs: the next is refused, synchronously, before any commit.
    let refused = CAPACITY + 1;
    store.submit(insert(refused as f64), done_to(&results_tx, refused));
    let (i, result) = results.try_recv().expect("refused at once");
    assert_eq!(i, refused);
    let error = result.unwrap_err();
    assert!(
        matches!(error, StoreError::Overloaded { capacity: CAPACITY }),
        "{error:?}"
    );
    assert_eq!(error.code(), "ServerOverloaded");

    // Everything accepted still commits once the writer moves on.
    release.send(()).unwrap();
    let mut committed: Vec<usize> = (0..=CAPACITY)
        .map(|_| {
            let (i, result) = results.recv().unwrap();
            result.unwrap();
            i
        })
        .collect();
    committed.sort();
    assert_eq!(committed, (0..=CAPACITY).collect::<Vec<_>>());
    // And the queue accepts again.
    let fields = Object::from([("n".to_string(), Value::Float64(0.0))]);
    store
        .mutate(move |txn| txn.insert("items", fields).map(|_| ()))
        .map_err(|e: StoreError| e)
        .unwrap();
    store.close().unwrap();
}
