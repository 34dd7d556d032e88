//! The persisted test clock, the start-up skip, and the built-in `_system/*` queries.

mod common;

use std::path::Path;

use common::*;
use serde_json::json;
use tickethub_runtime::{
    App, Clock, CronSchedule, FnError, Identity, MutationCtx, NoArgs, QueryCtx, Runtime,
    RuntimeConfig, Value,
};

fn app() -> App {
    let mut app = App::new();
    app.internal_mutation("jobs:bump", |ctx: &MutationCtx, a: Name| bump(ctx, &a.name));
    app.query("jobs:counter", |ctx: &QueryCtx, a: Name| {
        counter(ctx, &a.name)
    });
    app.mutation("jobs:later", |ctx: &MutationCtx, _: NoArgs| {
        ctx.scheduler
            .run_after(3_600_000.0, "jobs:bump", json!({"name": "later"}))
    });
    app.cron(
        "tick",
        CronSchedule::Interval { ms: 60_000 },
        "jobs:bump",
        common::json(json!({"name": "cron"})),
    );
    app
}

fn with_skip(dir: &Path, clock: Clock, skip_ms: f64) -> Result<Runtime, FnError> {
    Runtime::try_new(
        app(),
        open_store(dir),
        RuntimeConfig {
            clock,
            test_clock_skip_ms: skip_ms,
            ..RuntimeConfig::default()
        },
    )
}

async fn stop(rt: Runtime) {
    rt.shutdown().await;
    rt.store().close().unwrap();
}

async fn count(rt: &Runtime, name: &str) -> f64 {
    ok(rt, "jobs:counter", common::json(json!({ "name": name })))
        .await
        .as_f64()
        .unwrap()
}

async fn admin(rt: &Runtime, path: &str, args: serde_json::Value) -> Result<Value, FnError> {
    call_as(rt, Identity::Admin, None, path, common::json(args))
        .await
        .outcome
}

fn rows(value: Value) -> Vec<Value> {
    match value {
        Value::Array(items) => items,
        other => panic!("expected an array, got {other}"),
    }
}

fn field_f64(row: &Value, field: &str) -> f64 {
    row.get(field)
        .and_then(|v| v.as_f64())
        .unwrap_or_else(|| panic!("{field} missing in {row}"))
}

fn state(row: &Value) -> &str {
    row.get("state")
        .and_then(|s| s.get("kind"))
        .and_then(|k| k.as_str())
        .unwrap_or("?")
}

#[tokio::test]
async fn test_time_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path(), app(), Clock::Test);
    // A day ahead of real time: without the stored offset a new process would be a day behind.
    let before = rt.advance_time(86_400_000.0).await.unwrap();
    stop(rt).await;

    let rt = runtime(dir.path(), app(), Clock::Test);
    assert!(
        rt.now_ms() >= before,
        "test time went backwards across a restart: {} < {before}",
        rt.now_ms()
    );
    stop(rt).await;

    // The system clock ignores the stored offset.
    let rt = runtime(dir.path(), app(), Clock::System);
    assert!(
        rt.now_ms() < before,
        "the system clock used the test offset"
    );
    stop(rt).await;
}

#[tokio::test]
async fn a_start_up_skip_coalesces_missed_cron_runs_into_one() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path(), app(), Clock::Test);
    rt.advance_time(0.0).await.unwrap();
    rt.advance_time(60_000.0).await.unwrap();
    assert_eq!(count(&rt, "cron").await, 1.0);
    ok(&rt, "jobs:later", obj(&[])).await;
    let before_kill = rt.now_ms();
    stop(rt).await;

    // Ten minutes of downtime: ten runs were missed.
    let rt = with_skip(dir.path(), Clock::Test, 600_000.0).unwrap();
    let started = rt.now_ms();
    assert!(
        started >= before_kill + 600_000.0,
        "the skip was not applied: {started} < {before_kill} + 600000"
    );
    let now = rt.advance_time(0.0).await.unwrap();
    assert_eq!(
        count(&rt, "cron").await,
        2.0,
        "missed runs did not coalesce"
    );
    // The job due in an hour is not due yet: the skip moved time by ten minutes only.
    assert_eq!(count(&rt, "later").await, 0.0);

    let crons = rows(admin(&rt, "_system/crons:list", json!({})).await.unwrap());
    assert_eq!(crons.len(), 1, "{crons:?}");
    assert_eq!(crons[0].get("name").and_then(|n| n.as_str()), Some("tick"));
    let next = field_f64(&crons[0], "nextRunMs");
    assert!(next > now, "next run {next} is not after now {now}");
    assert!(field_f64(&crons[0], "lastRunMs") >= before_kill + 600_000.0);

    let done = rows(
        admin(&rt, "_system/scheduler:list", json!({"state": "success"}))
            .await
            .unwrap(),
    );
    let cron_runs: Vec<&Value> = done
        .iter()
        .filter(|r| r.get("name").and_then(|n| n.as_str()) == Some("jobs.js:bump"))
        .collect();
    assert_eq!(cron_runs.len(), 2, "{done:?}");
    assert!(cron_runs
        .iter()
        .all(|r| field_f64(r, "completedTime") >= field_f64(r, "scheduledTime")));
    stop(rt).await;

    // The skip happens once: it is not re-applied when the process starts again without it.
    let rt = runtime(dir.path(), app(), Clock::Test);
    assert!(rt.now_ms() >= now);
    assert!(rt.now_ms() < now + 600_000.0, "the skip was applied twice");
    rt.advance_time(0.0).await.unwrap();
    assert_eq!(count(&rt, "cron").await, 2.0);
    stop(rt).await;
}

#[tokio::test]
async fn a_skip_needs_the_test_clock_and_a_valid_number() {
    let dir = tempfile::tempdir().unwrap();
    let message = with_skip(dir.path(), Clock::System, 1.0)
        .err()
        .expect("a skip with the system clock must fail")
        .to_string();
    assert!(message.contains("needs the test clock"), "{message}");
    let message = with_skip(dir.path(), Clock::Test, -5.0)
        .err()
        .expect("a negative skip must fail")
        .to_string();
    assert!(message.contains("non-negative"), "{message}");
}

#[tokio::test]
async fn system_queries_list_jobs_for_the_admin_only() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path(), app(), Clock::Test);
    let job_id = ok(&rt, "jobs:later", obj(&[])).await;

    // Both spellings of the path reach the built-in query.
    for path in ["_system/scheduler:list", "_system/scheduler.js:list"] {
        let pending = rows(admin(&rt, path, json!({"state": "pending"})).await.unwrap());
        assert_eq!(pending.len(), 1, "{pending:?}");
        assert_eq!(pending[0].get("_id"), Some(&job_id));
        assert_eq!(
            pending[0].get("name").and_then(|n| n.as_str()),
            Some("jobs.js:bump")
        );
        assert_eq!(state(&pending[0]), "pending");
        assert!(pending[0].get("scheduledTime").is_some());
        assert_eq!(
            pending[0].get("args").and_then(|a| a.get("name")),
            Some(&Value::from("later"))
        );
    }
    let succeeded = rows(
        admin(&rt, "_system/scheduler:list", json!({"state": "success"}))
            .await
            .unwrap(),
    );
    assert!(succeeded.is_empty(), "{succeeded:?}");
    let all = rows(
        admin(&rt, "_system/scheduler:list", json!({}))
            .await
            .unwrap(),
    );
    assert_eq!(all.len(), 1);

    // A limit bounds the rows; newest first.
    ok(&rt, "jobs:later", obj(&[])).await;
    let newest = rows(
        admin(&rt, "_system/scheduler:list", json!({"limit": 1}))
            .await
            .unwrap(),
    );
    assert_eq!(newest.len(), 1);
    assert_ne!(newest[0].get("_id"), Some(&job_id));

    let error = admin(&rt, "_system/scheduler:list", json!({"state": "done"}))
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("state must be one of"), "{error}");

    // Internal: a client without the admin key does not see them.
    for path in ["_system/scheduler:list", "_system/crons:list"] {
        let error = err(&rt, path, obj(&[])).await;
        assert!(error.contains("Could not find"), "{path}: {error}");
    }
    stop(rt).await;
}

#[test]
#[should_panic(expected = "reserved for the runtime's built-in functions")]
fn an_app_cannot_register_system_paths() {
    let mut app = App::new();
    app.query("_system/scheduler:list", |_ctx: &QueryCtx, _: NoArgs| Ok(1));
}
