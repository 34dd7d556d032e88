//! Cluster mode on Postgres (`TICKETHUB_STORE_TEST_POSTGRES`; skipped on SQLite runs): two nodes
//! over one schema. The first leads, the second follows (no writer: `LeaderUnavailable`) and
//! hears of the leader's commits through the commit-log table; when the leader stops renewing,
//! the follower takes over with timestamps above the old leader's; a leader whose epoch moved is
//! fenced (`WriterFenced`) and steps down.

// Only `support::location`: cluster nodes open with `Store::open_cluster`.
#[allow(dead_code)]
mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tickethub_store::{
    ClusterOptions, CommitInfo, NodeRole, PostgresLocation, Schema, Store, StoreError,
    StoreLocation, StoreOptions, Timestamp,
};
use tickethub_value::{Object, Value};

const SCHEMA: &str = r#"
[tables.items]
fields.n = "int64"
"#;

const TTL: Duration = Duration::from_millis(800);

fn node(at: &PostgresLocation, id: &str) -> Store {
    Store::open_cluster(
        at,
        ClusterOptions {
            node_id: id.into(),
            advertise_url: format!("http://{id}.invalid"),
            lease_ttl: TTL,
            poll_every: Duration::from_millis(50),
        },
        Schema::from_toml(SCHEMA).unwrap(),
        StoreOptions {
            readers: 2,
            ..StoreOptions::default()
        },
    )
    .unwrap()
}

fn item(n: i64) -> Object {
    [("n".to_string(), Value::Int64(n))].into_iter().collect()
}

fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn count(store: &Store) -> usize {
    store.read().unwrap().count("items").unwrap() as usize
}

#[test]
fn a_follower_hears_commits_takes_over_an_expired_lease_and_a_moved_epoch_fences() {
    let dir = tempfile::tempdir().unwrap();
    let StoreLocation::Postgres(at) = support::location(dir.path()) else {
        eprintln!("SQLite run: cluster mode needs Postgres (set TICKETHUB_STORE_TEST_POSTGRES)");
        return;
    };
    let a = node(&at, "a");
    assert_eq!(a.role(), NodeRole::Leader);
    let b = node(&at, "b");
    assert_eq!(b.role(), NodeRole::Follower);
    wait_until("b to learn the leader's URL", TTL, || {
        b.leader_url().as_deref() == Some("http://a.invalid")
    });

    // A follower has no writer.
    let refused = b.mutate(|tx| tx.insert("items", item(0)));
    assert!(
        matches!(refused, Err(StoreError::LeaderUnavailable)),
        "{refused:?}"
    );

    // The leader's commits reach the follower's commit hooks with their write sets.
    let heard: Arc<Mutex<Vec<CommitInfo>>> = Arc::default();
    let sink = heard.clone();
    b.on_commit(Box::new(move |batch| {
        sink.lock().unwrap().extend(batch.iter().cloned());
    }));
    let mut last = Timestamp(0);
    for n in 1..=5 {
        let (_, info) = a.mutate(move |tx| tx.insert("items", item(n))).unwrap();
        last = info.ts;
    }
    wait_until("b to hear a's commits", Duration::from_secs(5), || {
        b.latest_ts() >= last
    });
    {
        let heard = heard.lock().unwrap();
        assert_eq!(heard.len(), 5, "one entry per commit");
        assert!(
            heard.iter().all(|c| !c.writes.keys.is_empty()),
            "write sets carry their keys"
        );
        assert!(
            heard.windows(2).all(|p| p[0].ts < p[1].ts),
            "in timestamp order"
        );
    }
    assert_eq!(count(&b), 5);
    assert_eq!(b.commit_log().since(Timestamp(0)).len(), 5);

    // The leader stops (its lease is no longer renewed): b takes over after the TTL and writes
    // above a's last timestamp.
    let stopped = Instant::now();
    a.close().unwrap();
    drop(a);
    wait_until("b to lead", TTL * 4, || b.role() == NodeRole::Leader);
    let took = stopped.elapsed();
    assert!(
        took >= TTL / 2,
        "took over only after the lease expired ({took:?})"
    );
    let (_, info) = b.mutate(|tx| tx.insert("items", item(6))).unwrap();
    assert!(info.ts > last, "timestamps continue above the old leader's");
    assert_eq!(count(&b), 6);

    // Someone else takes the lease (as a node that woke from a pause would find): b's next
    // commit fails the epoch check, writes nothing, and b steps down.
    let mut pg = postgres::Client::connect(&at.url, postgres::NoTls).unwrap();
    pg.execute(
        &format!(
            "UPDATE \"{}\".writer_lease SET epoch = epoch + 1, holder = 'intruder', advertise_url = '', renewed_at = now()",
            at.schema
        ),
        &[],
    )
    .unwrap();
    let fenced = b.mutate(|tx| tx.insert("items", item(7)));
    assert!(matches!(fenced, Err(StoreError::Fenced)), "{fenced:?}");
    wait_until("b to step down", Duration::from_secs(5), || {
        b.role() == NodeRole::Follower
    });
    assert_eq!(count(&b), 6, "the fenced commit wrote nothing");
    b.close().unwrap();
}
