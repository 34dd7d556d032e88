//! Pinned snapshots (`/api/query_ts` + `/api/query_at_ts`, `consistentQuery`): every query at a
//! pinned timestamp gets its own read budget and its own read set.

mod common;

use common::*;
use tickethub_runtime::{App, CallRequest, Caller, Clock, Identity, NoArgs, ReadAt, Value};

const DOCS: usize = 10_000;
/// More queries than the per-transaction read cap (32,000 documents) allows at 10k each.
const QUERIES: usize = 5;

fn app() -> App {
    let mut app = App::new();
    app.mutation("items:fill", |ctx, _: NoArgs| {
        for n in 0..DOCS {
            ctx.db
                .insert("items", serde_json::json!({"name": "x", "n": n as f64}))?;
        }
        Ok(())
    });
    app.query("items:count", |ctx, _: NoArgs| {
        Ok(ctx.db.query("items").collect()?.len() as f64)
    });
    app
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_query_at_a_pinned_timestamp_has_its_own_read_budget() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path(), app(), Clock::System);
    ok(&rt, "items:fill", obj(&[])).await;

    // A quiet database: nothing commits between the queries, so they all read one snapshot.
    let ts = rt.pin_snapshot().await.unwrap();
    let mut read_sets = Vec::new();
    for i in 0..QUERIES {
        let result = rt
            .call(CallRequest {
                path: "items:count".into(),
                args: obj(&[]),
                expected_kind: None,
                caller: Caller {
                    identity: Identity::Anonymous,
                },
                read_at: ReadAt::Pinned(ts),
                request_id: tickethub_runtime::RequestId::generate(),
            })
            .await;
        match result.outcome {
            Ok(count) => assert_eq!(count, Value::Float64(DOCS as f64), "query {i}"),
            Err(e) => panic!("query {i} at the pinned timestamp failed: {e}"),
        }
        assert_eq!(result.ts, Some(ts));
        read_sets.push(result.read_set.expect("a query reports its read set"));
    }
    // Each query reports what it read itself, not what earlier queries on the pin read.
    assert!(
        read_sets.iter().all(|r| r == &read_sets[0]),
        "{read_sets:?}"
    );
    assert_eq!(read_sets[0].ranges.len(), 1, "{:?}", read_sets[0]);
}
