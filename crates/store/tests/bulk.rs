//! Bulk transactions (snapshot import) and streaming reads (snapshot export): ids and creation
//! times kept, duplicates and foreign ids refused, no write caps, tables cleared, the write set
//! saying "everything", and one snapshot seen throughout a stream while writes go on.

mod support;

use tickethub_store::{
    BulkError, DocReader, Document, IndexQuery, Order, Schema, Store, StoreError, StoreOptions,
    Visit,
};
use tickethub_value::{DocumentId, Object, TableNumber, Value};

const SCHEMA: &str = r#"
[tables.users]
fields.name = "string"
indexes.by_name = ["name"]

[tables.events]
fields.title = "string"
"#;

fn open(dir: &std::path::Path) -> Store {
    support::open(
        dir,
        Schema::from_toml(SCHEMA).unwrap(),
        StoreOptions {
            readers: 2,
            durable: false,
            ..StoreOptions::default()
        },
    )
    .unwrap()
}

fn user(name: &str) -> Object {
    [("name".to_string(), Value::from(name))]
        .into_iter()
        .collect()
}

fn names(store: &Store) -> Vec<String> {
    let mut out = Vec::new();
    store
        .read()
        .unwrap()
        .for_each_document("users", &mut |d: Document| {
            out.push(d.fields.get("name").unwrap().as_str().unwrap().to_string());
            Ok::<_, StoreError>(Visit::Continue)
        })
        .unwrap();
    out.sort();
    out
}

#[test]
fn imported_ids_and_creation_times_are_kept_and_indexed() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let number = store.read().unwrap().table_number("users").unwrap();
    let id = DocumentId::new_random(number, 1_700_000_000_000);
    let (_, info) = store
        .mutate(move |tx| {
            tx.start_bulk();
            tx.insert_imported("users", Some(id), Some(1_700_000_000_000.5), user("ada"))?;
            tx.insert_imported("users", None, None, user("bob"))?;
            Ok::<_, BulkError>(())
        })
        .unwrap();
    assert!(info.writes.everything, "a bulk commit says everything");
    assert!(info.writes.keys.is_empty(), "and lists no keys");
    let snapshot = store.read().unwrap();
    let doc = snapshot.get(id).unwrap().unwrap();
    assert_eq!(doc.creation_time, 1_700_000_000_000.5);
    let by_name = IndexQuery {
        table: "users".into(),
        index: "by_name".into(),
        eq: vec![("name".into(), Some(Value::from("ada")))],
        lower: None,
        upper: None,
        order: Order::Asc,
    };
    assert_eq!(snapshot.collect(&by_name, None).unwrap()[0].id, id);
    drop(snapshot);
    // A later ordinary insert still gets a creation time after the imported ones.
    let (later, _) = store.mutate(|tx| tx.insert("users", user("cy"))).unwrap();
    let later = store.read().unwrap().get(later).unwrap().unwrap();
    assert!(later.creation_time > 1_700_000_000_000.5);
}

#[test]
fn duplicate_and_foreign_ids_are_refused_and_nothing_lands() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let users = store.read().unwrap().table_number("users").unwrap();
    let events = store.read().unwrap().table_number("events").unwrap();
    let id = DocumentId::new_random(users, 1_700_000_000_000);
    let err = store
        .mutate(move |tx| {
            tx.start_bulk();
            tx.insert_imported("users", Some(id), None, user("a"))?;
            tx.insert_imported("users", Some(id), None, user("b"))?;
            Ok::<_, BulkError>(())
        })
        .unwrap_err();
    assert_eq!(err.code(), "DuplicateId", "{err}");
    assert!(
        names(&store).is_empty(),
        "the first row was rolled back too"
    );

    let foreign = DocumentId::new_random(events, 1_700_000_000_000);
    let err = store
        .mutate(move |tx| {
            tx.start_bulk();
            tx.insert_imported("users", Some(foreign), None, user("a"))
        })
        .unwrap_err();
    assert_eq!(err.code(), "ImportConflict", "{err}");

    let err = store
        .mutate(|tx| {
            tx.start_bulk();
            tx.insert_imported("users", None, None, Object::new())
        })
        .unwrap_err();
    assert_eq!(err.code(), "SchemaValidationError", "{err}");
    let _ = TableNumber(0);
}

#[test]
fn a_bulk_transaction_has_no_write_caps_and_clears_tables() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    // Beyond MAX_DOCS_WRITTEN (16,000) in one transaction.
    store
        .mutate(|tx| {
            tx.start_bulk();
            for i in 0..20_000 {
                tx.insert_imported("users", None, None, user(&format!("u{i:05}")))?;
            }
            Ok::<_, BulkError>(())
        })
        .unwrap();
    assert_eq!(store.read().unwrap().count("users").unwrap(), 20_000);
    // Without start_bulk the cap still applies.
    let err = store
        .mutate(|tx| {
            for i in 0..16_001 {
                tx.insert(
                    "events",
                    [("title".to_string(), Value::from(format!("{i}")))]
                        .into_iter()
                        .collect(),
                )?;
            }
            Ok::<_, StoreError>(())
        })
        .unwrap_err();
    assert_eq!(err.code(), "TransactionLimitExceeded");

    let (removed, info) = store
        .mutate(|tx| {
            tx.start_bulk();
            tx.clear_table("users")
        })
        .unwrap();
    assert_eq!(removed, 20_000);
    assert!(info.writes.everything);
    let snapshot = store.read().unwrap();
    assert_eq!(
        snapshot.count("users").unwrap(),
        0,
        "index entries are gone too"
    );
}

#[test]
fn a_stream_sees_one_snapshot_while_writes_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store
        .mutate(|tx| {
            tx.start_bulk();
            for i in 0..1_000 {
                tx.insert_imported("users", None, None, user(&format!("u{i}")))?;
            }
            Ok::<_, BulkError>(())
        })
        .unwrap();
    let snapshot = store.read().unwrap();
    let mut seen = 0;
    let writer = store.clone();
    snapshot
        .for_each_document("users", &mut |_: Document| {
            seen += 1;
            if seen == 10 {
                // Committed while the stream is half-way: not part of this snapshot.
                writer
                    .mutate(|tx| tx.insert("users", user("late")))
                    .map(|_| ())?;
            }
            Ok::<_, StoreError>(Visit::Continue)
        })
        .unwrap();
    assert_eq!(seen, 1_000);
    drop(snapshot);
    assert_eq!(store.read().unwrap().count("users").unwrap(), 1_001);
}
