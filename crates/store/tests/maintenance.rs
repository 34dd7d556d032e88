//! Giving disk space back: deleted documents' pages are returned to the file system by the
//! writer's upkeep (incremental vacuum + WAL truncation), an older database is converted to
//! incremental auto-vacuum once at start-up, and upkeep never waits for a reader.

use std::path::Path;
use std::time::{Duration, Instant};

use tickethub_store::{
    Checkpoint, DocReader, IndexQuery, Order, Schema, Store, StoreOptions, Visit,
};
use tickethub_value::{DocumentId, Object, Value};

const SCHEMA: &str = r#"
[tables.blobs]
fields.body = "string"
fields.n = "number"
indexes.by_n = ["n"]
"#;

/// Documents of about 2 KiB: 4,000 of them are ~8 MiB with their index entries.
const DOCS: usize = 4_000;
const BODY_BYTES: usize = 2_000;
/// Inserted per transaction (well under the per-transaction write caps).
const PER_TXN: usize = 500;

fn open(dir: &Path, idle_maintenance_after: Option<Duration>) -> Store {
    Store::open(
        dir,
        Schema::from_toml(SCHEMA).unwrap(),
        StoreOptions {
            readers: 2,
            durable: false,
            idle_maintenance_after,
            // Small steps, so returning everything takes several of them.
            vacuum_step_pages: 256,
            ..StoreOptions::default()
        },
    )
    .unwrap()
}

fn db_file_bytes(dir: &Path) -> u64 {
    std::fs::metadata(dir.join(tickethub_store::store::DB_FILE))
        .unwrap()
        .len()
}

fn fill(store: &Store, docs: usize) -> Vec<DocumentId> {
    let mut ids = Vec::new();
    for start in (0..docs).step_by(PER_TXN) {
        let (mut batch, _) = store
            .mutate(move |tx| {
                (start..(start + PER_TXN).min(docs))
                    .map(|n| {
                        let mut doc = Object::new();
                        // Distinct bodies, so nothing compresses or dedupes by accident.
                        doc.insert(
                            "body".into(),
                            Value::from(format!("{n:08}").repeat(BODY_BYTES / 8)),
                        );
                        doc.insert("n".into(), Value::Float64(n as f64));
                        tx.insert("blobs", doc)
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .unwrap();
        ids.append(&mut batch);
    }
    ids
}

fn delete(store: &Store, ids: &[DocumentId]) {
    for chunk in ids.chunks(PER_TXN) {
        let chunk = chunk.to_vec();
        store
            .mutate(move |tx| chunk.iter().try_for_each(|id| tx.delete(*id)))
            .unwrap();
    }
}

fn count(store: &Store) -> usize {
    let snapshot = store.read().unwrap();
    let mut n = 0;
    snapshot
        .scan(
            &IndexQuery::full_scan("blobs", Order::Asc),
            None,
            &mut |_, _| {
                n += 1;
                Ok(Visit::Continue)
            },
        )
        .unwrap();
    n
}

/// Run upkeep steps until nothing is left to do.
fn maintain_fully(store: &Store) -> u64 {
    let mut released = 0;
    for _ in 0..1_000 {
        let report = store.maintain_now().unwrap();
        released += report.pages_released;
        if !report.more_to_do() {
            return released;
        }
    }
    panic!("upkeep never finished");
}

#[test]
fn deleted_documents_pages_are_returned_to_the_file_system() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), None);
    let ids = fill(&store, DOCS);
    maintain_fully(&store);
    let full = db_file_bytes(dir.path());
    assert!(full > 6 << 20, "the filled database is only {full} bytes");

    // Keep every tenth document: the survivors are spread over the whole file.
    let (kept, gone): (Vec<_>, Vec<_>) = ids.iter().enumerate().partition(|(i, _)| i % 10 == 0);
    let gone: Vec<DocumentId> = gone.into_iter().map(|(_, id)| *id).collect();
    delete(&store, &gone);
    let after_delete = db_file_bytes(dir.path());
    // Deleting alone only moves pages to the free list (and writes the WAL).
    assert!(
        after_delete >= full,
        "{after_delete} < {full} before any upkeep"
    );

    let released = maintain_fully(&store);
    let shrunk = db_file_bytes(dir.path());
    assert!(released > 0, "no page was released");
    assert!(
        shrunk * 100 < full * 35,
        "the file is {shrunk} bytes after deleting 90% of {full} bytes"
    );
    assert_eq!(store.disk_bytes(), shrunk, "the WAL was not truncated");
    assert_eq!(count(&store), kept.len(), "upkeep lost or kept documents");
    store.close().unwrap();

    // Reopening finds the same documents in the smaller file.
    let store = open(dir.path(), None);
    assert_eq!(count(&store), kept.len());
    store.close().unwrap();
}

#[test]
fn an_idle_writer_returns_pages_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Some(Duration::from_millis(50)));
    let ids = fill(&store, DOCS);
    let full = db_file_bytes(dir.path()).max(store.disk_bytes());
    delete(&store, &ids);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = store.disk_bytes();
        if now * 100 < full * 20 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the idle writer left {now} of {full} bytes after every document was deleted"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Writes still work after upkeep, and a fresh snapshot sees them.
    fill(&store, 10);
    assert_eq!(count(&store), 10);
    store.close().unwrap();
}

#[test]
fn an_older_database_is_converted_once_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), None);
    fill(&store, 100);
    store.close().unwrap();
    drop(store);

    // Make it look like a database from before incremental vacuum.
    let path = dir.path().join(tickethub_store::store::DB_FILE);
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.pragma_update(None, "auto_vacuum", "NONE").unwrap();
        conn.execute_batch("VACUUM").unwrap();
        let mode: i64 = conn
            .pragma_query_value(None, "auto_vacuum", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, 0);
    }

    let store = open(dir.path(), None);
    assert_eq!(count(&store), 100, "the conversion lost documents");
    store.close().unwrap();
    drop(store);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let mode: i64 = conn
        .pragma_query_value(None, "auto_vacuum", |r| r.get(0))
        .unwrap();
    assert_eq!(mode, 2, "auto_vacuum is not INCREMENTAL after start-up");
    let integrity: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
}

#[test]
fn upkeep_does_not_wait_for_a_reader_on_an_older_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), None);
    let ids = fill(&store, 200);
    let old_snapshot = store.read().unwrap();
    delete(&store, &ids[..100]);

    let started = Instant::now();
    let report = store.maintain_now().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "upkeep waited {:?} for the reader",
        started.elapsed()
    );
    assert_eq!(report.checkpoint, Checkpoint::Busy);
    assert!(report.more_to_do());
    // The old snapshot still reads what it saw.
    let mut seen = 0;
    old_snapshot
        .scan(
            &IndexQuery::full_scan("blobs", Order::Asc),
            None,
            &mut |_, _| {
                seen += 1;
                Ok(Visit::Continue)
            },
        )
        .unwrap();
    assert_eq!(seen, 200);
    drop(old_snapshot);

    maintain_fully(&store);
    assert_eq!(store.disk_bytes(), db_file_bytes(dir.path()));
    assert_eq!(count(&store), 100);
    store.close().unwrap();
}
