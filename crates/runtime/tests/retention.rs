//! Retention of finished scheduled jobs, with the test clock: rows that finished longer ago than
//! the retention period are purged (success, failed and canceled alike), newer ones are kept,
//! pending ones never go, and a backlog bigger than one batch drains in full batches.

mod common;

use std::time::Duration;

use common::*;
use serde::Deserialize;
use serde_json::json;
use tickethub_runtime::{
    Args, Clock, FnError, Identity, JobRetention, MutationCtx, NoArgs, Runtime, RuntimeConfig,
    Value,
};

const MINUTE: f64 = 60_000.0;
const RETENTION: Duration = Duration::from_secs(10 * 60);

#[derive(Deserialize, Args)]
struct Delay {
    delay: f64,
}

#[derive(Deserialize, Args)]
struct JobId {
    id: String,
}

fn app() -> tickethub_runtime::App {
    let mut app = tickethub_runtime::App::new();
    app.internal_mutation("jobs:ok", |_ctx: &MutationCtx, _: NoArgs| Ok(()));
    app.internal_mutation(
        "jobs:fails",
        |_ctx: &MutationCtx, _: NoArgs| -> Result<(), FnError> { Err(FnError::msg("no")) },
    );
    app.mutation("jobs:scheduleOk", |ctx: &MutationCtx, a: Delay| {
        ctx.scheduler.run_after(a.delay, "jobs:ok", json!({}))
    });
    app.mutation("jobs:scheduleFailing", |ctx: &MutationCtx, a: Delay| {
        ctx.scheduler.run_after(a.delay, "jobs:fails", json!({}))
    });
    app.mutation("jobs:cancel", |ctx: &MutationCtx, a: JobId| {
        ctx.scheduler.cancel(&a.id)
    });
    app
}

fn runtime(dir: &std::path::Path, purge_batch: usize) -> Runtime {
    Runtime::new(
        app(),
        open_store(dir),
        RuntimeConfig {
            clock: Clock::Test,
            scheduled_jobs: JobRetention {
                keep_finished_for: RETENTION,
                purge_every: Duration::from_secs(60),
                purge_batch,
            },
            ..RuntimeConfig::default()
        },
    )
}

async fn schedule(rt: &Runtime, path: &str, delay: f64) -> String {
    let id = ok(rt, path, json_args(delay)).await;
    id.as_str().expect("a job id").to_string()
}

fn json_args(delay: f64) -> Value {
    json(json!({ "delay": delay }))
}

/// Every `_scheduled_functions` row: id → state kind.
async fn jobs(rt: &Runtime) -> std::collections::BTreeMap<String, String> {
    let rows = call_as(
        rt,
        Identity::Admin,
        None,
        "_system/scheduler:list",
        json(json!({ "limit": 10_000.0 })),
    )
    .await
    .outcome
    .expect("listing jobs");
    let Value::Array(rows) = rows else {
        panic!("not a list: {rows}")
    };
    rows.iter()
        .map(|row| {
            let id = row.get("_id").and_then(|v| v.as_str()).unwrap().to_string();
            let state = row
                .get("state")
                .and_then(|s| s.get("kind"))
                .and_then(|k| k.as_str())
                .unwrap()
                .to_string();
            (id, state)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_jobs_older_than_retention_are_purged_newer_and_pending_ones_kept() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path(), 1_000);

    // Three jobs that finish now, one of each finished state, and one due in a day.
    let succeeded = schedule(&rt, "jobs:scheduleOk", 1_000.0).await;
    let failed = schedule(&rt, "jobs:scheduleFailing", 1_000.0).await;
    let canceled = schedule(&rt, "jobs:scheduleOk", 1_000.0).await;
    ok(&rt, "jobs:cancel", json(json!({ "id": canceled }))).await;
    let far_pending = schedule(&rt, "jobs:scheduleOk", 24.0 * 60.0 * MINUTE).await;
    rt.advance_time(2_000.0).await.unwrap();
    let states = jobs(&rt).await;
    assert_eq!(states[&succeeded], "success");
    assert_eq!(states[&failed], "failed");
    assert_eq!(states[&canceled], "canceled");
    assert_eq!(states[&far_pending], "pending");

    // Half the retention later nothing is gone; a job finishing now is the "newer" one.
    rt.advance_time(5.0 * MINUTE).await.unwrap();
    let newer = schedule(&rt, "jobs:scheduleOk", 0.0).await;
    rt.advance_time(10.0).await.unwrap();
    assert_eq!(
        jobs(&rt).await.len(),
        5,
        "purged before the retention ran out"
    );

    // Past the retention of the first three, within that of the newer one.
    rt.advance_time(6.0 * MINUTE).await.unwrap();
    let states = jobs(&rt).await;
    for purged in [&succeeded, &failed, &canceled] {
        assert!(
            !states.contains_key(purged),
            "{purged} outlived its retention: {states:?}"
        );
    }
    assert_eq!(states.get(&newer).map(String::as_str), Some("success"));
    assert_eq!(
        states.get(&far_pending).map(String::as_str),
        Some("pending")
    );

    // A pending job is never purged, however long it waits; it still runs when due (and its
    // row is then kept for the retention period like any other).
    rt.advance_time(24.0 * 60.0 * MINUTE).await.unwrap();
    let states = jobs(&rt).await;
    assert_eq!(
        states.get(&far_pending).map(String::as_str),
        Some("success")
    );
    assert!(!states.contains_key(&newer));

    rt.shutdown().await;
    rt.store().close().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_larger_than_a_batch_drains_in_one_advance() {
    let dir = tempfile::tempdir().unwrap();
    // Batches of 3: eleven finished jobs take four purge transactions.
    let rt = runtime(dir.path(), 3);
    for _ in 0..11 {
        schedule(&rt, "jobs:scheduleOk", 0.0).await;
    }
    let pending = schedule(&rt, "jobs:scheduleOk", 60.0 * MINUTE).await;
    rt.advance_time(10.0).await.unwrap();
    assert_eq!(jobs(&rt).await.len(), 12);

    rt.advance_time(11.0 * MINUTE).await.unwrap();
    let states = jobs(&rt).await;
    assert_eq!(
        states.into_iter().collect::<Vec<_>>(),
        vec![(pending, "pending".to_string())],
        "the purge stopped after a full batch"
    );

    rt.shutdown().await;
    rt.store().close().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_that_aged_past_retention_while_down_are_purged_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path(), 1_000);
    let done = schedule(&rt, "jobs:scheduleOk", 0.0).await;
    rt.advance_time(10.0).await.unwrap();
    assert_eq!(jobs(&rt).await[&done], "success");
    rt.shutdown().await;
    rt.store().close().unwrap();
    drop(rt);

    // Twenty minutes of downtime (test time persists across restarts).
    let rt = Runtime::new(
        app(),
        open_store(dir.path()),
        RuntimeConfig {
            clock: Clock::Test,
            test_clock_skip_ms: 20.0 * MINUTE,
            scheduled_jobs: JobRetention {
                keep_finished_for: RETENTION,
                ..JobRetention::default()
            },
            ..RuntimeConfig::default()
        },
    );
    rt.advance_time(0.0).await.unwrap();
    assert!(jobs(&rt).await.is_empty(), "the first pass did not purge");
    rt.shutdown().await;
    rt.store().close().unwrap();
}
