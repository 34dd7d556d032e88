//! Serializability: concurrent read-increment-write mutations on one document lose no update.

mod support;

use tickethub_store::{DocReader, Schema, StoreError, StoreOptions};
use tickethub_value::{Object, Value};

#[test]
fn eight_threads_times_a_thousand_increments_make_8000() {
    let dir = tempfile::tempdir().unwrap();
    let schema = Schema::from_toml("[tables.counters]\nfields.n = \"int64\"\n").unwrap();
    let store = support::open(
        dir.path(),
        schema,
        StoreOptions {
            readers: 2,
            max_batch: 64,
            durable: false,
            ..StoreOptions::default()
        },
    )
    .unwrap();
    let (id, _) = store
        .mutate(|tx| {
            tx.insert(
                "counters",
                Object::from([("n".to_string(), Value::Int64(0))]),
            )
        })
        .unwrap();
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            std::thread::spawn(move || {
                for _ in 0..1000 {
                    store
                        .mutate(move |tx| {
                            let n = tx.get(id)?.unwrap().fields["n"].as_i64().unwrap();
                            tx.patch(id, vec![("n".into(), Some(Value::Int64(n + 1)))])
                        })
                        .map_err(|e: StoreError| e.to_string())
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let n = store.read().unwrap().get(id).unwrap().unwrap().fields["n"].clone();
    assert_eq!(n, Value::Int64(8000));
}
