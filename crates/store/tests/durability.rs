//! Durability: a child process committing mutations is SIGKILLed at random moments; after each
//! restart every mutation it reported committed is present, none is half applied, and the store
//! opens cleanly.
//!
//! The child is this same test binary, re-run with `DURABILITY_CHILD_DIR` set: the
//! `child_process_body` test then becomes the child's main loop instead of a no-op.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use rand::Rng;
use tickethub_store::{
    DocReader, IndexQuery, Order, PageRequest, Schema, Store, StoreError, StoreOptions,
};
use tickethub_value::{Object, Value};

const ENV: &str = "DURABILITY_CHILD_DIR";
const SCHEMA: &str = r#"
[tables.pairs]
fields.seq = "int64"
fields.side = "string"
indexes.by_seq = ["seq"]

[tables.counter]
fields.count = "int64"
"#;
const WRITER_THREADS: usize = 4;

fn open(dir: &std::path::Path) -> Store {
    Store::open(
        dir,
        Schema::from_toml(SCHEMA).unwrap(),
        StoreOptions {
            readers: 2,
            max_batch: 64,
            durable: true,
            ..StoreOptions::default()
        },
    )
    .unwrap()
}

fn counter_doc(store: &Store) -> Option<(tickethub_value::DocumentId, i64)> {
    let r = store.read().unwrap();
    let docs = r
        .collect(&IndexQuery::full_scan("counter", Order::Asc), None)
        .unwrap();
    assert!(docs.len() <= 1);
    docs.first()
        .map(|d| (d.id, d.fields["count"].as_i64().unwrap()))
}

/// One mutation: bump the counter to `seq` and insert the two halves of pair `seq`.
fn commit_one(store: &Store) -> Result<i64, StoreError> {
    store
        .mutate(|tx| {
            let r = tx.collect(&IndexQuery::full_scan("counter", Order::Asc), Some(1))?;
            let (id, count) = (r[0].id, r[0].fields["count"].as_i64().unwrap());
            let seq = count + 1;
            tx.patch(id, vec![("count".into(), Some(Value::Int64(seq)))])?;
            for side in ["left", "right"] {
                let fields = Object::from([
                    ("seq".to_string(), Value::Int64(seq)),
                    ("side".to_string(), Value::from(side)),
                ]);
                tx.insert("pairs", fields)?;
            }
            Ok(seq)
        })
        .map(|(seq, _)| seq)
}

#[test]
fn child_process_body() {
    let Ok(dir) = std::env::var(ENV) else { return };
    let store = open(std::path::Path::new(&dir));
    if counter_doc(&store).is_none() {
        store
            .mutate(|tx| {
                tx.insert(
                    "counter",
                    Object::from([("count".to_string(), Value::Int64(0))]),
                )
            })
            .unwrap();
    }
    println!("ready");
    let threads: Vec<_> = (0..WRITER_THREADS)
        .map(|_| {
            let store = store.clone();
            std::thread::spawn(move || loop {
                let seq = commit_one(&store).unwrap();
                // Acknowledged only after `done`, i.e. after the commit is durable.
                println!("committed {seq}");
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

/// Sequence numbers checked per snapshot while verifying.
const VERIFY_CHUNK: usize = 1_000;

fn by_seq(seq: i64) -> IndexQuery {
    IndexQuery {
        table: "pairs".into(),
        index: "by_seq".into(),
        eq: vec![("seq".into(), Some(Value::Int64(seq)))],
        lower: None,
        upper: None,
        order: Order::Asc,
    }
}

/// Check the store's invariants; returns the committed count.
fn verify(dir: &std::path::Path, acknowledged: i64) -> i64 {
    let store = open(dir);
    let (_, count) = counter_doc(&store).expect("counter exists once the child said ready");
    assert!(
        count >= acknowledged,
        "acknowledged mutation {acknowledged} lost; store has {count}"
    );
    // One snapshot per chunk of sequence numbers: a snapshot may query at most 4096 index
    // ranges and scan at most 32000 documents, and the child can commit more than that. Nothing
    // writes while this runs, so the snapshots agree.
    let mut pairs_seen = 0;
    for chunk_start in (1..=count).step_by(VERIFY_CHUNK) {
        let chunk_end = (chunk_start + VERIFY_CHUNK as i64 - 1).min(count);
        let r = store.read().unwrap();
        for seq in chunk_start..=chunk_end {
            let halves: Vec<Value> = r
                .collect(&by_seq(seq), None)
                .unwrap()
                .iter()
                .map(|d| d.fields["side"].clone())
                .collect();
            assert_eq!(halves.len(), 2, "pair {seq} half applied: {halves:?}");
            pairs_seen += 2;
        }
    }
    // Every pair is accounted for above, so any other document is from an unacknowledged,
    // half-visible or phantom commit: count the table page by page (a snapshot per page, for
    // the scan cap).
    let mut total = 0;
    let mut cursor = None;
    loop {
        let page = store
            .read()
            .unwrap()
            .paginate(
                &IndexQuery::full_scan("pairs", Order::Asc),
                &PageRequest {
                    cursor: cursor.take(),
                    num_items: 8_000,
                },
            )
            .unwrap();
        total += page.page.len() as i64;
        if page.is_done {
            break;
        }
        cursor = Some(page.continue_cursor);
    }
    assert_eq!(
        total, pairs_seen,
        "every committed mutation wrote exactly its two halves"
    );
    store.close().unwrap();
    count
}

#[test]
fn killed_child_loses_no_acknowledged_commit() {
    if std::env::var(ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut rng = rand::thread_rng();
    let mut total_acked = 0;
    for round in 0..20 {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "child_process_body",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Wait for the child to be up, then kill it at a random moment while it commits.
        // (libtest prints `test child_process_body ... ` before the child's first line.)
        loop {
            match rx.recv_timeout(Duration::from_secs(120)) {
                Ok(line) if line.ends_with("ready") => break,
                Ok(_) => {}
                Err(e) => {
                    let _ = child.kill();
                    panic!("the child never became ready: {e}");
                }
            }
        }
        std::thread::sleep(Duration::from_millis(rng.gen_range(5..150)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reader.join().unwrap();
        let acked = rx
            .try_iter()
            .filter_map(|l| {
                l.rsplit_once("committed ")
                    .and_then(|(_, n)| n.trim().parse::<i64>().ok())
            })
            .max();
        let acked = acked.unwrap_or(0).max(total_acked);
        let count = verify(dir.path(), acked);
        eprintln!("round {round}: acknowledged up to {acked}, store holds {count}");
        total_acked = count;
    }
    assert!(total_acked > 0, "the child committed something");
}
