//! Store behaviour through its public API: writes, reads, query validation, errors with stable
//! codes that leave the store unchanged, schema migration, timestamps, group commit outcomes.

mod support;

use std::sync::{Arc, Mutex};

use tickethub_store::{
    Bound, DocReader, IndexQuery, Order, Outcome, PageRequest, Schema, Store, StoreError,
    StoreOptions, Timestamp, Visit,
};
use tickethub_value::{DocumentId, Object, TableNumber, Value};

const SCHEMA: &str = r#"
[tables.users]
fields.name = "string"
fields.email = "string"
fields.age = "optional(number)"
indexes.by_email = ["email"]
indexes.by_name_age = ["name", "age"]

[tables.events]
fields.title = "string"
fields.owner = 'optional(id("users"))'

[tables.notes]
validate = false
indexes.by_tag = ["tag"]
"#;

fn open(dir: &std::path::Path, schema: &str) -> Result<Store, StoreError> {
    support::open(
        dir,
        Schema::from_toml(schema).unwrap(),
        StoreOptions {
            readers: 2,
            max_batch: 64,
            durable: false,
            ..StoreOptions::default()
        },
    )
}

fn obj(pairs: &[(&str, Value)]) -> Object {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

fn user(name: &str, email: &str) -> Object {
    obj(&[("name", name.into()), ("email", email.into())])
}

fn insert(store: &Store, table: &'static str, fields: Object) -> Result<DocumentId, StoreError> {
    store
        .mutate(move |tx| tx.insert(table, fields))
        .map(|(id, _)| id)
}

fn all(store: &Store, table: &str) -> Vec<Object> {
    let r = store.read().unwrap();
    r.collect(&IndexQuery::full_scan(table, Order::Asc), None)
        .unwrap()
        .into_iter()
        .map(|d| d.fields)
        .collect()
}

fn query(table: &str, index: &str) -> IndexQuery {
    IndexQuery {
        table: table.into(),
        index: index.into(),
        eq: vec![],
        lower: None,
        upper: None,
        order: Order::Asc,
    }
}

#[test]
fn crud_round_trip_and_own_writes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), SCHEMA).unwrap();
    let (id, info) = store
        .mutate(|tx| {
            let id = tx.insert("users", user("ann", "a@x"))?;
            // The writer reads its own writes, by id and through an index.
            assert_eq!(tx.get(id)?.unwrap().fields["name"], Value::from("ann"));
            let mut q = query("users", "by_email");
            q.eq.push(("email".into(), Some("a@x".into())));
            assert_eq!(tx.collect(&q, None)?.len(), 1);
            Ok::<_, StoreError>(id)
        })
        .unwrap();
    assert!(info.ts > Timestamp(0));
    assert!(!info.writes.keys.is_empty());
    store
        .mutate(move |tx| tx.patch(id, vec![("age".into(), Some(Value::Float64(30.0)))]))
        .unwrap();
    let doc = store.read().unwrap().get(id).unwrap().unwrap();
    assert_eq!(doc.fields["age"], Value::Float64(30.0));
    let v = doc.to_value();
    assert_eq!(v.get("_id"), Some(&Value::String(id.encode())));
    store
        .mutate(move |tx| tx.patch(id, vec![("age".into(), None)]))
        .unwrap();
    assert!(!store
        .read()
        .unwrap()
        .get(id)
        .unwrap()
        .unwrap()
        .fields
        .contains_key("age"));
    store
        .mutate(move |tx| tx.replace(id, user("bob", "b@x")))
        .unwrap();
    let r = store.read().unwrap();
    let doc = r.get(id).unwrap().unwrap();
    assert_eq!(doc.fields, user("bob", "b@x"));
    let mut q = query("users", "by_email");
    q.eq.push(("email".into(), Some("a@x".into())));
    assert!(
        r.collect(&q, None).unwrap().is_empty(),
        "old index entry removed on replace"
    );
    drop(r);
    store.mutate(move |tx| tx.delete(id)).unwrap();
    assert_eq!(store.read().unwrap().get(id).unwrap(), None);
    assert!(all(&store, "users").is_empty());
}

#[test]
fn creation_times_strictly_increase_within_and_across_mutations() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), SCHEMA).unwrap();
    for _ in 0..3 {
        store
            .mutate(|tx| {
                for i in 0..50 {
                    tx.insert("notes", obj(&[("i", Value::Int64(i))]))?;
                }
                Ok::<_, StoreError>(())
            })
            .unwrap();
    }
    let docs = store
        .read()
        .unwrap()
        .collect(&IndexQuery::full_scan("notes", Order::Asc), None)
        .unwrap();
    assert_eq!(docs.len(), 150);
    for w in docs.windows(2) {
        assert!(w[0].creation_time < w[1].creation_time);
    }
    assert!(docs[0].creation_time.fract() != 0.0 || docs[1].creation_time.fract() != 0.0);
}

/// Every bad write fails with its stable code and leaves the store as it was.
#[test]
fn bad_input_is_refused_with_stable_codes_and_no_effect() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), SCHEMA).unwrap();
    let ann = insert(&store, "users", user("ann", "a@x")).unwrap();
    let event = insert(&store, "events", obj(&[("title", "party".into())])).unwrap();
    let before_users = all(&store, "users");
    let before_events = all(&store, "events");
    let ts_before = store.latest_ts();

    let check = |code: &str, result: Result<DocumentId, StoreError>| {
        let err = result.expect_err(code);
        assert_eq!(err.code(), code, "{err}");
        assert!(!err.to_string().is_empty());
        err
    };

    // Malformed ID and an ID of another table.
    let r = store.read().unwrap();
    check("InvalidId", r.decode_id("users", "not-an-id"));
    let e = check("InvalidId", r.decode_id("users", &event.encode()));
    assert!(matches!(e, StoreError::WrongTable { .. }), "{e}");
    check("TableNotFound", r.decode_id("nope", &event.encode()));
    drop(r);
    // An id field pointing at the wrong table fails the schema.
    let mut bad_owner = obj(&[("title", "x".into())]);
    bad_owner.insert("owner".into(), Value::String(event.encode()));
    check("SchemaValidationError", insert(&store, "events", bad_owner));
    // Wrong type.
    let e = check(
        "SchemaValidationError",
        insert(
            &store,
            "users",
            obj(&[("name", Value::Int64(1)), ("email", "e".into())]),
        ),
    );
    assert!(e.to_string().starts_with("Failed to insert or update a document in table \"users\" because it does not match the schema:"), "{e}");
    // Missing required field, extra field.
    check(
        "SchemaValidationError",
        insert(&store, "users", obj(&[("name", "n".into())])),
    );
    let mut extra = user("c", "c@x");
    extra.insert("zzz".into(), Value::Null);
    check("SchemaValidationError", insert(&store, "users", extra));
    // 1.1 MiB document.
    let big = obj(&[("blob", Value::String("x".repeat(1_153_434)))]);
    check("ValueLimitExceeded", insert(&store, "notes", big));
    // 17-deep nesting.
    let mut deep = Value::Null;
    for _ in 0..17 {
        deep = Value::Object(obj(&[("d", deep)]));
    }
    check(
        "ValueLimitExceeded",
        insert(&store, "notes", obj(&[("deep", deep)])),
    );
    // Reserved field names.
    check(
        "ValueLimitExceeded",
        insert(&store, "notes", obj(&[("$x", Value::Null)])),
    );
    check(
        "ValueLimitExceeded",
        insert(&store, "notes", obj(&[("_x", Value::Null)])),
    );
    let nested_dollar = obj(&[("ok", Value::Object(obj(&[("$bad", Value::Null)])))]);
    check("ValueLimitExceeded", insert(&store, "notes", nested_dollar));
    // Unknown table.
    check("TableNotFound", insert(&store, "nope", Object::new()));
    // Updates of a missing document, and a patch that breaks the schema.
    let ghost = DocumentId {
        table: ann.table,
        internal: [7; 16],
    };
    let e = store
        .mutate(move |tx| tx.patch(ghost, vec![]))
        .map(|_| ghost);
    let e = check("NonexistentDocument", e);
    assert_eq!(
        e.to_string(),
        format!("Update on nonexistent document ID {}", ghost.encode())
    );
    check(
        "NonexistentDocument",
        store.mutate(move |tx| tx.delete(ghost)).map(|_| ghost),
    );
    check(
        "NonexistentDocument",
        store
            .mutate(move |tx| tx.replace(ghost, user("a", "b")))
            .map(|_| ghost),
    );
    check(
        "SchemaValidationError",
        store
            .mutate(move |tx| tx.patch(ann, vec![("email".into(), Some(Value::Int64(3)))]))
            .map(|_| ann),
    );
    check(
        "SchemaValidationError",
        store
            .mutate(move |tx| tx.patch(ann, vec![("email".into(), None)]))
            .map(|_| ann),
    );
    // A failing write after a good one in the same mutation undoes both.
    check(
        "SchemaValidationError",
        store
            .mutate(move |tx| {
                tx.patch(ann, vec![("name".into(), Some("changed".into()))])?;
                tx.insert("users", obj(&[("name", Value::Null)]))
            })
            .map(|(id, _)| id),
    );

    // Query errors.
    let r = store.read().unwrap();
    let e = r.collect(&query("users", "by_foo"), None).unwrap_err();
    assert_eq!(
        (e.code(), e.to_string().as_str()),
        ("IndexNotFound", "Index users.by_foo not found.")
    );
    let mut q = query("users", "by_name_age");
    q.lower = Some(Bound {
        field: "age".into(),
        value: Value::Float64(1.0),
        inclusive: true,
    });
    let e = r.collect(&q, None).unwrap_err();
    assert_eq!(e.code(), "InvalidIndexRange");
    assert!(
        e.to_string().contains("`age`") && e.to_string().contains("expected `name`"),
        "{e}"
    );
    let mut q = query("users", "by_name_age");
    q.eq.push(("age".into(), Some(Value::Float64(1.0))));
    assert_eq!(r.collect(&q, None).unwrap_err().code(), "InvalidIndexRange");
    assert_eq!(
        r.collect(&query("nope", "by_id"), None).unwrap_err().code(),
        "TableNotFound"
    );
    let bad_page = PageRequest {
        cursor: Some("!!".into()),
        num_items: 5,
    };
    assert_eq!(
        r.paginate(&query("users", "by_email"), &bad_page)
            .unwrap_err()
            .code(),
        "InvalidCursor"
    );
    let zero = PageRequest {
        cursor: None,
        num_items: 0,
    };
    assert_eq!(
        r.paginate(&query("users", "by_email"), &zero)
            .unwrap_err()
            .code(),
        "InvalidPagination"
    );
    drop(r);

    assert_eq!(all(&store, "users"), before_users);
    assert_eq!(all(&store, "events"), before_events);
    assert!(all(&store, "notes").is_empty());
    assert_eq!(
        store.latest_ts(),
        ts_before,
        "refused writes commit nothing"
    );
}

#[test]
fn index_queries_eq_bounds_undefined_order_and_first_reads_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), SCHEMA).unwrap();
    store
        .mutate(|tx| {
            for (name, age) in [
                ("a", Some(1.0)),
                ("a", Some(5.0)),
                ("a", None),
                ("a", Some(3.0)),
                ("b", Some(2.0)),
            ] {
                let mut u = user(name, &format!("{name}{age:?}"));
                if let Some(age) = age {
                    u.insert("age".into(), Value::Float64(age));
                }
                tx.insert("users", u)?;
            }
            Ok::<_, StoreError>(())
        })
        .unwrap();
    let r = store.read().unwrap();
    let ages = |q: &IndexQuery| -> Vec<Option<f64>> {
        r.collect(q, None)
            .unwrap()
            .iter()
            .map(|d| d.fields.get("age").and_then(Value::as_f64))
            .collect()
    };
    let mut q = query("users", "by_name_age");
    q.eq.push(("name".into(), Some("a".into())));
    assert_eq!(ages(&q), vec![None, Some(1.0), Some(3.0), Some(5.0)]);
    q.order = Order::Desc;
    assert_eq!(ages(&q), vec![Some(5.0), Some(3.0), Some(1.0), None]);
    q.lower = Some(Bound {
        field: "age".into(),
        value: Value::Float64(1.0),
        inclusive: false,
    });
    q.upper = Some(Bound {
        field: "age".into(),
        value: Value::Float64(5.0),
        inclusive: true,
    });
    assert_eq!(ages(&q), vec![Some(5.0), Some(3.0)]);
    let mut undefined = query("users", "by_name_age");
    undefined.eq = vec![("name".into(), Some("a".into())), ("age".into(), None)];
    assert_eq!(ages(&undefined), vec![None]);

    // A scan that stops after one entry reads one entry and records only what it covered.
    let mut seen = 0;
    let full = query("users", "by_name_age");
    r.scan(&full, None, &mut |_, _| {
        seen += 1;
        Ok(Visit::Stop)
    })
    .unwrap();
    assert_eq!(seen, 1);
    let range = r.read_set().ranges.last().unwrap().clone();
    assert!(range.end.is_some(), "early stop bounds the read range");

    // Pagination walks every document once.
    let mut cursor = None;
    let mut got = Vec::new();
    loop {
        let page = r
            .paginate(
                &full,
                &PageRequest {
                    cursor: cursor.clone(),
                    num_items: 2,
                },
            )
            .unwrap();
        got.extend(page.page.iter().map(|d| d.id));
        if page.is_done {
            break;
        }
        cursor = Some(page.continue_cursor);
    }
    assert_eq!(
        got,
        r.collect(&full, None)
            .unwrap()
            .iter()
            .map(|d| d.id)
            .collect::<Vec<_>>()
    );

    // by_id: a point lookup by `_id`.
    let first = r.collect(&full, Some(1)).unwrap()[0].clone();
    let mut by_id = query("users", "by_id");
    by_id
        .eq
        .push(("_id".into(), Some(Value::String(first.id.encode()))));
    assert_eq!(r.collect(&by_id, None).unwrap(), vec![first]);
    assert_eq!(r.collect(&query("users", "by_id"), None).unwrap().len(), 5);
}

#[test]
fn read_sets_overlap_the_writes_that_change_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), SCHEMA).unwrap();
    insert(&store, "users", user("ann", "a@x")).unwrap();
    let r = store.read().unwrap();
    let mut q = query("users", "by_email");
    q.eq.push(("email".into(), Some("b@x".into())));
    assert!(r.collect(&q, None).unwrap().is_empty());
    let reads = r.read_set();
    let since = r.ts();
    drop(r);
    let (_, unrelated) = store
        .mutate(|tx| tx.insert("users", user("c", "c@x")))
        .unwrap();
    assert!(!reads.overlaps(&unrelated.writes));
    assert!(!store.commit_log().changed_since(since, &reads));
    let (_, related) = store
        .mutate(|tx| tx.insert("users", user("b", "b@x")))
        .unwrap();
    assert!(reads.overlaps(&related.writes));
    assert!(store.commit_log().changed_since(since, &reads));
}

#[test]
fn snapshots_are_stable_while_the_writer_commits() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), SCHEMA).unwrap();
    insert(&store, "notes", obj(&[("n", Value::Int64(1))])).unwrap();
    let snap = store.read().unwrap();
    let ts = snap.ts();
    insert(&store, "notes", obj(&[("n", Value::Int64(2))])).unwrap();
    assert_eq!(
        snap.collect(&IndexQuery::full_scan("notes", Order::Asc), None)
            .unwrap()
            .len(),
        1
    );
    assert_eq!(snap.ts(), ts);
    assert!(store.latest_ts() > ts);
    assert_eq!(all(&store, "notes").len(), 2);
}

#[test]
fn jobs_in_one_batch_fail_alone() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), SCHEMA).unwrap();
    type JobResults = Vec<(usize, Result<Timestamp, String>)>;
    let results: Arc<Mutex<JobResults>> = Arc::default();
    let hook_seen: Arc<Mutex<Vec<Timestamp>>> = Arc::default();
    let hs = hook_seen.clone();
    store.on_commit(Box::new(move |infos| {
        hs.lock().unwrap().extend(infos.iter().map(|i| i.ts))
    }));
    // Hold the writer busy so the next jobs queue up and run as one batch.
    let (gate_tx, gate_rx) = std::sync::mpsc::channel::<()>();
    store.submit(
        Box::new(move |_| {
            let _ = gate_rx.recv();
            Outcome::Commit
        }),
        Box::new(|_| {}),
    );
    for i in 0..4usize {
        let results = results.clone();
        store.submit(
            Box::new(move |tx| {
                tx.insert("notes", obj(&[("i", Value::Int64(i as i64))]))
                    .unwrap();
                match i {
                    1 => Outcome::Rollback,
                    2 => panic!("job 2 panics on purpose"),
                    _ => Outcome::Commit,
                }
            }),
            Box::new(move |r| {
                results
                    .lock()
                    .unwrap()
                    .push((i, r.map(|c| c.ts).map_err(|e| e.code().to_string())))
            }),
        );
    }
    gate_tx.send(()).unwrap();
    // A blocking mutate after them returns once they are all done (the writer runs in order).
    let (_, last) = store
        .mutate(|tx| tx.insert("notes", obj(&[("i", Value::Int64(9))])))
        .unwrap();
    // Hooks run after the `done` callbacks; wait until they have seen the last commit.
    while !hook_seen.lock().unwrap().contains(&last.ts) {
        std::thread::yield_now();
    }
    let results = results.lock().unwrap().clone();
    assert_eq!(results.len(), 4);
    assert_eq!(results[2].1, Err("InternalError".to_string()));
    let (t0, t3) = (results[0].1.clone().unwrap(), results[3].1.clone().unwrap());
    assert!(t0 < t3, "committed jobs get distinct increasing timestamps");
    let kept: Vec<Value> = all(&store, "notes")
        .iter()
        .map(|o| o["i"].clone())
        .collect();
    assert_eq!(
        kept,
        vec![Value::Int64(0), Value::Int64(3), Value::Int64(9)]
    );
    let hooked = hook_seen.lock().unwrap().clone();
    assert!(hooked.contains(&t0) && hooked.contains(&t3));
    assert!(hooked.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn timestamps_grow_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut last = Timestamp(0);
    let mut last_creation = 0.0;
    for _ in 0..3 {
        let store = open(dir.path(), SCHEMA).unwrap();
        assert_eq!(
            store.latest_ts(),
            last,
            "reopen starts from the persisted ts"
        );
        for _ in 0..3 {
            let (id, info) = store
                .mutate(|tx| tx.insert("notes", Object::new()))
                .unwrap();
            assert!(info.ts > last);
            last = info.ts;
            let ct = store
                .read()
                .unwrap()
                .get(id)
                .unwrap()
                .unwrap()
                .creation_time;
            assert!(ct > last_creation);
            last_creation = ct;
        }
        assert_eq!(store.read().unwrap().ts(), last);
        store.close().unwrap();
        assert_eq!(
            insert(&store, "notes", Object::new()).unwrap_err().code(),
            "ShuttingDown"
        );
    }
}

#[test]
fn schema_migration_backfills_drops_and_refuses_violations() {
    let dir = tempfile::tempdir().unwrap();
    let v1 = "[tables.items]\nfields.name = \"string\"\nfields.qty = \"any\"\n";
    let store = open(dir.path(), v1).unwrap();
    let mut ids = Vec::new();
    for (name, qty) in [
        ("b", Value::Float64(2.0)),
        ("a", Value::String("many".into())),
        ("c", Value::Float64(1.0)),
    ] {
        ids.push(insert(&store, "items", obj(&[("name", name.into()), ("qty", qty)])).unwrap());
    }
    let items_number = store.read().unwrap().table_number("items").unwrap();
    store.close().unwrap();
    drop(store);

    // New index: backfilled from the stored documents.
    let v2 = format!("{v1}indexes.by_name = [\"name\"]\n");
    let store = open(dir.path(), &v2).unwrap();
    let names: Vec<Value> = store
        .read()
        .unwrap()
        .collect(&query("items", "by_name"), None)
        .unwrap()
        .iter()
        .map(|d| d.fields["name"].clone())
        .collect();
    assert_eq!(
        names,
        vec![Value::from("a"), Value::from("b"), Value::from("c")]
    );
    assert_eq!(
        store.read().unwrap().table_number("items"),
        Some(items_number),
        "table numbers are kept"
    );
    store.close().unwrap();
    drop(store);

    // A stricter validator the data violates: refused, naming the document; the old schema still opens.
    let strict = "[tables.items]\nfields.name = \"string\"\nfields.qty = \"number\"\nindexes.by_name = [\"name\"]\n";
    let err = open(dir.path(), strict).err().expect("refused");
    assert_eq!(err.code(), "InvalidSchema");
    let text = err.to_string();
    assert!(
        text.contains(&ids[1].encode())
            && text.contains("\"items\"")
            && text.contains("does not match the schema"),
        "{text}"
    );
    let store = open(dir.path(), &v2).unwrap();
    assert_eq!(
        all(&store, "items").len(),
        3,
        "the refused schema changed nothing"
    );
    store.close().unwrap();
    drop(store);

    // Removed index: gone; asking for it is an unknown index.
    let store = open(dir.path(), v1).unwrap();
    assert_eq!(
        store
            .read()
            .unwrap()
            .collect(&query("items", "by_name"), None)
            .unwrap_err()
            .code(),
        "IndexNotFound"
    );
    // A new table gets a fresh number above the old one.
    store.close().unwrap();
    drop(store);
    let store = open(
        dir.path(),
        &format!("{v1}[tables.more]\nvalidate = false\n"),
    )
    .unwrap();
    let more = store.read().unwrap().table_number("more").unwrap();
    assert!(more > items_number && more >= TableNumber(10_001));
}
