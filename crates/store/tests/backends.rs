//! What each storage engine must get right beyond the basics, run on SQLite and (with
//! `TICKETHUB_STORE_TEST_POSTGRES`) on Postgres: index keys longer than a B-tree entry, a
//! mutation's reads merging its batch's own writes (inserts, patches that keep or move index
//! keys, deletes) in both orders, undoing one job inside a batch, and a snapshot after an
//! acknowledged write seeing it, tables and indexes put while open. On Postgres also: one writer
//! per schema.

mod support;

use std::sync::mpsc;

use tickethub_store::{
    Bound, DocReader, IndexDef, IndexQuery, Order, Outcome, Schema, Store, StoreError,
    StoreLocation, StoreOptions, TableDef,
};
use tickethub_value::{Object, Value};

const SCHEMA: &str = r#"
[tables.items]
fields.tag = "string"
fields.n = "int64"
indexes.by_tag_n = ["tag", "n"]
"#;

fn options() -> StoreOptions {
    StoreOptions {
        readers: 2,
        durable: false,
        ..StoreOptions::default()
    }
}

fn open(dir: &std::path::Path) -> Result<Store, StoreError> {
    support::open(dir, Schema::from_toml(SCHEMA).unwrap(), options())
}

fn item(tag: &str, n: i64) -> Object {
    [
        ("tag".to_string(), Value::String(tag.into())),
        ("n".to_string(), Value::Int64(n)),
    ]
    .into_iter()
    .collect()
}

/// Hold the writer busy until the returned sender is sent to, so the jobs submitted meanwhile
/// run as one batch.
fn hold_writer(store: &Store) -> mpsc::Sender<()> {
    let (gate, wait) = mpsc::channel::<()>();
    store.submit(
        Box::new(move |_| {
            let _ = wait.recv();
            Outcome::Commit
        }),
        Box::new(|_| {}),
    );
    gate
}

fn by_tag(order: Order) -> IndexQuery {
    IndexQuery {
        table: "items".into(),
        index: "by_tag_n".into(),
        eq: vec![],
        lower: None,
        upper: None,
        order,
    }
}

fn tags_and_ns(reader: &dyn DocReader, query: &IndexQuery) -> Vec<(String, i64)> {
    reader
        .collect(query, None)
        .unwrap()
        .into_iter()
        .map(|d| {
            let tag = match &d.fields["tag"] {
                Value::String(s) => s.clone(),
                other => panic!("{other:?}"),
            };
            let n = match d.fields["n"] {
                Value::Int64(n) => n,
                ref other => panic!("{other:?}"),
            };
            (tag, n)
        })
        .collect()
}

#[test]
fn index_keys_longer_than_a_btree_entry_keep_their_order_and_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).unwrap();
    // Tags sharing a 3,000-byte prefix differ only past Postgres's B-tree limit; short ones sort
    // around them.
    let long = "x".repeat(3000);
    let tags = [
        format!("{long}b"),
        "a".to_string(),
        format!("{long}a"),
        long.clone(),
        format!("{long}a"),
        "y".to_string(),
        "x".repeat(2048),
    ];
    for (n, tag) in tags.iter().enumerate() {
        let fields = item(tag, n as i64);
        store.mutate(move |tx| tx.insert("items", fields)).unwrap();
    }
    let mut expected: Vec<(String, i64)> = tags
        .iter()
        .enumerate()
        .map(|(n, t)| (t.clone(), n as i64))
        .collect();
    expected.sort();
    let snapshot = store.read().unwrap();
    assert_eq!(tags_and_ns(&snapshot, &by_tag(Order::Asc)), expected);
    let mut reversed = expected.clone();
    reversed.reverse();
    assert_eq!(tags_and_ns(&snapshot, &by_tag(Order::Desc)), reversed);

    // An eq on a long value finds exactly its rows; a bound past the long prefix splits them.
    let mut eq = by_tag(Order::Asc);
    eq.eq = vec![("tag".into(), Some(Value::String(format!("{long}a"))))];
    assert_eq!(
        tags_and_ns(&snapshot, &eq),
        vec![(format!("{long}a"), 2), (format!("{long}a"), 4)]
    );
    let mut above = by_tag(Order::Asc);
    above.lower = Some(Bound {
        field: "tag".into(),
        value: Value::String(format!("{long}a")),
        inclusive: false,
    });
    assert_eq!(
        tags_and_ns(&snapshot, &above),
        vec![(format!("{long}b"), 0), ("y".into(), 5)]
    );
    drop(snapshot);

    // Paging through them one at a time resumes exactly after each long key.
    let snapshot = store.read().unwrap();
    let mut cursor = None;
    let mut paged = Vec::new();
    loop {
        let page = snapshot
            .paginate(
                &by_tag(Order::Asc),
                &tickethub_store::PageRequest {
                    cursor: cursor.clone(),
                    num_items: 1,
                },
            )
            .unwrap();
        for d in &page.page {
            paged.push(d.fields["n"].clone());
        }
        if page.is_done {
            break;
        }
        cursor = Some(page.continue_cursor);
    }
    let expected_ns: Vec<Value> = expected.iter().map(|(_, n)| Value::Int64(*n)).collect();
    assert_eq!(paged, expected_ns);
}

#[test]
fn a_mutation_reads_its_own_and_its_batchs_writes_in_index_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).unwrap();
    let ids: Vec<_> = (0..6)
        .map(|n| {
            let fields = item("t", n * 10);
            store
                .mutate(move |tx| tx.insert("items", fields))
                .unwrap()
                .0
        })
        .collect();

    // Hold the writer so the next jobs share one batch.
    let gate = hold_writer(&store);
    let (first_tx, first_rx) = mpsc::channel();
    let (moved, deleted, kept) = (ids[1], ids[2], ids[3]);
    store.submit(
        Box::new(move |tx| {
            tx.insert("items", item("t", 25)).unwrap();
            // Moves its index key from 10 to 55.
            tx.patch(moved, vec![("n".into(), Some(Value::Int64(55)))])
                .unwrap();
            tx.delete(deleted).unwrap();
            // Keeps its key: the body must come from the batch, not from storage.
            tx.replace(kept, item("t", 30)).unwrap();
            Outcome::Commit
        }),
        Box::new(move |r| first_tx.send(r.map(|_| ())).unwrap()),
    );
    let (second_tx, second_rx) = mpsc::channel();
    store.submit(
        Box::new(move |tx| {
            let asc = tags_and_ns(tx, &by_tag(Order::Asc));
            let desc = tags_and_ns(tx, &by_tag(Order::Desc));
            let mut ranged = by_tag(Order::Asc);
            ranged.eq = vec![("tag".into(), Some(Value::String("t".into())))];
            ranged.lower = Some(Bound {
                field: "n".into(),
                value: Value::Int64(20),
                inclusive: true,
            });
            ranged.upper = Some(Bound {
                field: "n".into(),
                value: Value::Int64(50),
                inclusive: false,
            });
            let between = tags_and_ns(tx, &ranged);
            let gone = tx.get(deleted).unwrap().is_none();
            second_tx.send((asc, desc, between, gone)).unwrap();
            Outcome::Commit
        }),
        Box::new(|_| {}),
    );
    gate.send(()).unwrap();
    first_rx.recv().unwrap().unwrap();
    let (asc, desc, between, gone) = second_rx.recv().unwrap();
    let t = |ns: &[i64]| -> Vec<(String, i64)> { ns.iter().map(|n| ("t".into(), *n)).collect() };
    assert_eq!(asc, t(&[0, 25, 30, 40, 50, 55]));
    assert_eq!(desc, t(&[55, 50, 40, 30, 25, 0]));
    assert_eq!(between, t(&[25, 30, 40]));
    assert!(gone);
    // And the same once committed, from a snapshot.
    assert_eq!(
        tags_and_ns(&store.read().unwrap(), &by_tag(Order::Asc)),
        t(&[0, 25, 30, 40, 50, 55])
    );
}

#[test]
fn an_undone_job_leaves_its_batch_neighbours_and_storage_as_they_were() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).unwrap();
    let id = store
        .mutate(|tx| tx.insert("items", item("a", 1)))
        .unwrap()
        .0;
    let gate = hold_writer(&store);
    let (kept_tx, kept_rx) = mpsc::channel();
    store.submit(
        Box::new(move |tx| {
            tx.patch(id, vec![("n".into(), Some(Value::Int64(2)))])
                .unwrap();
            tx.insert("items", item("b", 1)).unwrap();
            Outcome::Commit
        }),
        Box::new(move |r| kept_tx.send(r.map(|_| ())).unwrap()),
    );
    store.submit(
        Box::new(move |tx| {
            // Undone: a patch over the previous job's patch, a delete, an insert.
            tx.patch(id, vec![("n".into(), Some(Value::Int64(3)))])
                .unwrap();
            tx.insert("items", item("c", 1)).unwrap();
            tx.delete(id).unwrap();
            Outcome::Rollback
        }),
        Box::new(|_| {}),
    );
    let (seen_tx, seen_rx) = mpsc::channel();
    store.submit(
        Box::new(move |tx| {
            seen_tx.send(tags_and_ns(tx, &by_tag(Order::Asc))).unwrap();
            Outcome::Commit
        }),
        Box::new(|_| {}),
    );
    gate.send(()).unwrap();
    kept_rx.recv().unwrap().unwrap();
    let expected = vec![("a".to_string(), 2), ("b".to_string(), 1)];
    assert_eq!(seen_rx.recv().unwrap(), expected);
    assert_eq!(
        tags_and_ns(&store.read().unwrap(), &by_tag(Order::Asc)),
        expected
    );
}

#[test]
fn a_second_writer_on_one_postgres_schema_is_refused_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let location = support::location(dir.path());
    if matches!(location, StoreLocation::Sqlite { .. }) {
        // On SQLite the server's data-directory lock keeps a second process out
        // (crates/server/tests/binary.rs); this test is about Postgres.
        eprintln!(
            "SQLite run: the one-writer rule is the data-dir lock's, tested in the server crate"
        );
        return;
    }
    let first = open(dir.path()).unwrap();
    first.mutate(|tx| tx.insert("items", item("a", 1))).unwrap();
    let second = support::open(dir.path(), Schema::from_toml(SCHEMA).unwrap(), options());
    match second {
        Err(e @ StoreError::DatabaseInUse { .. }) => {
            assert_eq!(e.code(), "DatabaseInUse");
            assert!(e.to_string().contains("pid"), "{e}");
        }
        Err(e) => panic!("expected DatabaseInUse, got {e:?}"),
        Ok(_) => panic!("a second writer opened the same schema"),
    }
    // The first still writes; once it is closed, a new one opens and sees everything.
    first.mutate(|tx| tx.insert("items", item("b", 2))).unwrap();
    first.close().unwrap();
    drop(first);
    let reopened = open(dir.path()).unwrap();
    assert_eq!(
        tags_and_ns(&reopened.read().unwrap(), &by_tag(Order::Asc)),
        vec![("a".to_string(), 1), ("b".to_string(), 2)]
    );
}

#[test]
fn an_idle_postgres_pool_holds_no_transaction_open() {
    let dir = tempfile::tempdir().unwrap();
    let StoreLocation::Postgres(at) = support::location(dir.path()) else {
        eprintln!(
            "SQLite run: read transactions end with their snapshot; this test is about Postgres"
        );
        return;
    };
    let store = open(dir.path()).unwrap();
    store.mutate(|tx| tx.insert("items", item("a", 1))).unwrap();
    for _ in 0..20 {
        let snapshot = store.read().unwrap();
        assert_eq!(tags_and_ns(&snapshot, &by_tag(Order::Asc)).len(), 1);
    }
    // A finished snapshot's transaction stays open a moment (its COMMIT rides with the next
    // BEGIN), but never for long on an idle pool: that would hold back Postgres's vacuum.
    let mut probe = postgres::Client::connect(&at.url, postgres::NoTls).unwrap();
    let open_in = |probe: &mut postgres::Client| -> i64 {
        probe
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE state = 'idle in transaction' AND application_name = $1",
                &[&format!("tickethub {} reader", at.schema)],
            )
            .unwrap()
            .get(0)
    };
    assert!(
        open_in(&mut probe) >= 1,
        "the last snapshot's transaction is still open"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while open_in(&mut probe) > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "idle read transactions were not ended"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn a_snapshot_taken_after_an_acknowledged_write_sees_it() {
    // On Postgres a finished snapshot's transaction is reused while nothing was committed since;
    // a write acknowledged in between must end that reuse. Readers on other threads keep the
    // pooled transactions busy and left open, as a server's queries do.
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (store, stop) = (store.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    tags_and_ns(&store.read().unwrap(), &by_tag(Order::Asc));
                }
            })
        })
        .collect();
    for n in 1..=100 {
        let before = store.read().unwrap();
        assert_eq!(tags_and_ns(&before, &by_tag(Order::Asc)).len(), n - 1);
        drop(before);
        let (_, info) = store
            .mutate(move |tx| tx.insert("items", item("a", n as i64)))
            .unwrap();
        let after = store.read().unwrap();
        assert!(
            after.ts() >= info.ts,
            "snapshot {:?} before commit {:?}",
            after.ts(),
            info.ts
        );
        assert_eq!(
            tags_and_ns(&after, &by_tag(Order::Asc)).len(),
            n,
            "write {n} missing"
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    readers.into_iter().for_each(|r| r.join().unwrap());
}

#[test]
fn tables_put_while_open_are_usable_at_once_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).unwrap();
    store.mutate(|tx| tx.insert("items", item("a", 1))).unwrap();
    store.mutate(|tx| tx.insert("items", item("b", 2))).unwrap();
    let before = store.read().unwrap();
    let tags = |table: &str, index: &str| TableDef {
        name: table.into(),
        fields: Default::default(),
        indexes: vec![IndexDef {
            name: index.into(),
            fields: vec!["tag".into()],
        }],
        validate: false,
    };
    // A new table, and a second index on `items` (its rows backfilled).
    let mut items = Schema::from_toml(SCHEMA).unwrap().tables["items"].clone();
    items.indexes.push(IndexDef {
        name: "by_n".into(),
        fields: vec!["n".into()],
    });
    store
        .put_tables(vec![tags("labels", "by_tag"), items])
        .unwrap();
    store
        .mutate(|tx| tx.insert("labels", item("x", 7)))
        .unwrap();
    let by_n = |reader: &dyn DocReader| {
        let query = IndexQuery {
            index: "by_n".into(),
            order: Order::Desc,
            ..by_tag(Order::Desc)
        };
        tags_and_ns(reader, &query)
    };
    let labels = IndexQuery {
        table: "labels".into(),
        index: "by_tag".into(),
        ..by_tag(Order::Asc)
    };
    let expected_items = vec![("b".to_string(), 2), ("a".to_string(), 1)];
    let after = store.read().unwrap();
    assert_eq!(by_n(&after), expected_items);
    assert_eq!(tags_and_ns(&after, &labels), vec![("x".to_string(), 7)]);
    // A snapshot from before keeps the catalog it started with.
    assert!(before.table_number("labels").is_none());
    drop((before, after));

    // Reopened with the new definitions, nothing is rebuilt or lost.
    store.close().unwrap();
    drop(store);
    let mut schema = Schema::from_toml(SCHEMA).unwrap();
    schema
        .tables
        .insert("labels".into(), tags("labels", "by_tag"));
    let reopened = support::open(dir.path(), schema, options()).unwrap();
    let read = reopened.read().unwrap();
    assert_eq!(tags_and_ns(&read, &labels), vec![("x".to_string(), 7)]);
}
