//! The scheduler and crons, with the test clock and simulated restarts.

mod common;

use common::*;
use serde::Deserialize;
use serde_json::json;
use tickethub_runtime::{
    ActionCtx, App, Args, Clock, CronSchedule, FnError, Identity, MutationCtx, NoArgs, QueryCtx,
    Runtime, Value,
};

#[derive(Deserialize, Args)]
struct Schedule {
    delay: f64,
    fail: bool,
}

#[derive(Deserialize, Args)]
struct JobId {
    id: String,
}

fn app() -> App {
    let mut app = App::new();
    app.internal_mutation("jobs:bump", |ctx: &MutationCtx, a: Name| bump(ctx, &a.name));
    app.query("jobs:counter", |ctx: &QueryCtx, a: Name| {
        counter(ctx, &a.name)
    });
    app.mutation("jobs:schedule", |ctx: &MutationCtx, a: Schedule| {
        let id = ctx
            .scheduler
            .run_after(a.delay, "jobs:bump", json!({"name": "a"}))?;
        if a.fail {
            return Err(FnError::msg("failing after scheduling"));
        }
        Ok(id)
    });
    app.mutation("jobs:cancel", |ctx: &MutationCtx, a: JobId| {
        ctx.scheduler.cancel(&a.id)
    });
    app.internal_mutation("jobs:chain", |ctx: &MutationCtx, _: NoArgs| {
        bump(ctx, "chain")?;
        ctx.scheduler
            .run_after(0.0, "jobs:bump", json!({"name": "chained"}))?;
        Ok(())
    });
    app.mutation("jobs:scheduleChain", |ctx: &MutationCtx, _: NoArgs| {
        ctx.scheduler.run_after(60_000.0, "jobs:chain", json!({}))
    });
    app.internal_action("jobs:actionBump", |ctx: ActionCtx, _: NoArgs| async move {
        ctx.run_mutation::<Value>("jobs:bump", json!({"name": "action"}))
            .await?;
        Ok(())
    });
    app.internal_mutation(
        "jobs:alwaysFails",
        |_ctx: &MutationCtx, _: NoArgs| -> Result<(), FnError> {
            Err(FnError::msg("scheduled failure"))
        },
    );
    app.mutation("jobs:scheduleMany", |ctx: &MutationCtx, _: NoArgs| {
        ctx.scheduler.run_after(0.0, "jobs:actionBump", json!({}))?;
        ctx.scheduler
            .run_after(0.0, "jobs:alwaysFails", json!({}))?;
        ctx.scheduler
            .run_after(0.0, "jobs:bump", json!({"wrong": 1}))
    });
    app.mutation("jobs:scheduleQuery", |ctx: &MutationCtx, _: NoArgs| {
        ctx.scheduler
            .run_after(0.0, "jobs:counter", json!({"name": "a"}))
    });
    app.internal_query("jobs:job", |ctx: &QueryCtx, a: JobId| {
        Ok(ctx
            .db
            .get(&a.id)?
            .map(|d| d.to_value())
            .unwrap_or(Value::Null))
    });
    app.internal_query("jobs:all", |ctx: &QueryCtx, _: NoArgs| {
        ctx.db.query("_scheduled_functions").collect()
    });
    app.cron(
        "tick",
        CronSchedule::Interval { ms: 60_000 },
        "jobs:bump",
        common::json(json!({"name": "cron"})),
    );
    app
}

async fn count(rt: &Runtime, name: &str) -> f64 {
    ok(rt, "jobs:counter", common::json(json!({ "name": name })))
        .await
        .as_f64()
        .unwrap()
}

async fn job(rt: &Runtime, id: &Value) -> Value {
    call_as(
        rt,
        Identity::Admin,
        None,
        "jobs:job",
        obj(&[("id", id.clone())]),
    )
    .await
    .outcome
    .unwrap()
}

fn state(job: &Value) -> &str {
    job.get("state")
        .and_then(|s| s.get("kind"))
        .and_then(|k| k.as_str())
        .unwrap_or("?")
}

fn schedule(delay: f64, fail: bool) -> Value {
    common::json(json!({"delay": delay, "fail": fail}))
}

#[tokio::test]
async fn a_job_exists_only_if_its_mutation_commits() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path(), app(), Clock::Test);
    assert_eq!(
        err(&rt, "jobs:schedule", schedule(0.0, true)).await,
        "failing after scheduling"
    );
    rt.advance_time(10.0).await.unwrap();
    assert_eq!(count(&rt, "a").await, 0.0);
    let jobs = call_as(&rt, Identity::Admin, None, "jobs:all", obj(&[]))
        .await
        .outcome
        .unwrap();
    assert!(jobs
        .as_array()
        .unwrap()
        .iter()
        .all(|j| j.get("name") != Some(&Value::from("jobs.js:bump"))
            || j.get("args").and_then(|a| a.get("name")) != Some(&Value::from("a"))));

    let id = ok(&rt, "jobs:schedule", schedule(60_000.0, false)).await;
    assert_eq!(state(&job(&rt, &id).await), "pending");
    rt.advance_time(30_000.0).await.unwrap();
    assert_eq!(count(&rt, "a").await, 0.0);
    rt.advance_time(30_000.0).await.unwrap();
    assert_eq!(count(&rt, "a").await, 1.0);
    let done = job(&rt, &id).await;
    assert_eq!(state(&done), "success");
    assert!(done.get("completedTime").is_some());
    // Nothing runs twice.
    rt.advance_time(10_000.0).await.unwrap();
    assert_eq!(count(&rt, "a").await, 1.0);
}

#[tokio::test]
async fn cancel_a_pending_job() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path(), app(), Clock::Test);
    let id = ok(&rt, "jobs:schedule", schedule(60_000.0, false)).await;
    ok(&rt, "jobs:cancel", obj(&[("id", id.clone())])).await;
    rt.advance_time(120_000.0).await.unwrap();
    assert_eq!(count(&rt, "a").await, 0.0);
    assert_eq!(state(&job(&rt, &id).await), "canceled");
    // Cancelling a finished job is a no-op.
    let id = ok(&rt, "jobs:schedule", schedule(0.0, false)).await;
    rt.advance_time(1.0).await.unwrap();
    ok(&rt, "jobs:cancel", obj(&[("id", id.clone())])).await;
    assert_eq!(state(&job(&rt, &id).await), "success");
    // An id of another table is refused.
    let other = err(&rt, "jobs:cancel", obj(&[("id", Value::from("not an id"))])).await;
    assert!(
        other.contains("Invalid ID") || other.contains("not an id"),
        "{other}"
    );
}

#[tokio::test]
async fn advance_time_runs_jobs_scheduled_by_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path(), app(), Clock::Test);
    ok(&rt, "jobs:scheduleChain", obj(&[])).await;
    // The test clock is real time plus an offset: margins are wide so a slow machine agrees.
    rt.advance_time(30_000.0).await.unwrap();
    assert_eq!(count(&rt, "chain").await, 0.0);
    rt.advance_time(30_000.0).await.unwrap();
    assert_eq!(count(&rt, "chain").await, 1.0);
    assert_eq!(count(&rt, "chained").await, 1.0);
}

#[tokio::test]
async fn scheduled_actions_failures_and_bad_targets() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path(), app(), Clock::Test);
    let bad_args_job = ok(&rt, "jobs:scheduleMany", obj(&[])).await;
    rt.advance_time(1.0).await.unwrap();
    assert_eq!(count(&rt, "action").await, 1.0);
    let jobs = call_as(&rt, Identity::Admin, None, "jobs:all", obj(&[]))
        .await
        .outcome
        .unwrap();
    let by_name = |name: &str| {
        jobs.as_array()
            .unwrap()
            .iter()
            .find(|j| j.get("name") == Some(&Value::from(name)))
            .cloned()
            .unwrap()
    };
    assert_eq!(state(&by_name("jobs.js:actionBump")), "success");
    let failed = by_name("jobs.js:alwaysFails");
    assert_eq!(state(&failed), "failed");
    assert_eq!(
        failed.get("state").unwrap().get("error"),
        Some(&Value::from("scheduled failure"))
    );
    let bad = job(&rt, &bad_args_job).await;
    assert_eq!(state(&bad), "failed");
    assert!(bad
        .get("state")
        .unwrap()
        .get("error")
        .unwrap()
        .as_str()
        .unwrap()
        .starts_with("ArgumentValidationError"));
    // Queries cannot be scheduled.
    let message = err(&rt, "jobs:scheduleQuery", obj(&[])).await;
    assert!(message.contains("Only mutations and actions"), "{message}");
}

#[tokio::test]
async fn a_due_job_runs_exactly_once_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let later;
    {
        let rt = runtime(dir.path(), app(), Clock::Test);
        ok(&rt, "jobs:schedule", schedule(0.0, false)).await;
        later = ok(&rt, "jobs:schedule", schedule(60_000.0, false)).await;
        rt.advance_time(1.0).await.unwrap();
        assert_eq!(count(&rt, "a").await, 1.0);
        rt.shutdown().await;
        rt.store().close().unwrap();
    }
    {
        // A new process: the finished job is not repeated, the pending one is not lost.
        let rt = runtime(dir.path(), app(), Clock::Test);
        assert_eq!(state(&job(&rt, &later).await), "pending");
        rt.advance_time(0.0).await.unwrap();
        assert_eq!(count(&rt, "a").await, 1.0);
        rt.advance_time(120_000.0).await.unwrap();
        assert_eq!(count(&rt, "a").await, 2.0);
        assert_eq!(state(&job(&rt, &later).await), "success");
        rt.store().close().unwrap();
    }
}

#[tokio::test]
async fn an_action_interrupted_by_a_crash_is_not_retried() {
    let dir = tempfile::tempdir().unwrap();
    let id = {
        let store = open_store(dir.path());
        let (id, _) = store
            .mutate(|txn| -> Result<_, tickethub_store::StoreError> {
                let row = common::json(json!({
                    "name": "jobs.js:actionBump", "args": {}, "scheduledTime": 0.0,
                    "state": {"kind": "inProgress"}
                }));
                txn.insert("_scheduled_functions", row.into_object().unwrap())
            })
            .unwrap();
        store.close().unwrap();
        Value::from(id.encode())
    };
    let rt = runtime(dir.path(), app(), Clock::Test);
    rt.advance_time(0.0).await.unwrap();
    assert_eq!(state(&job(&rt, &id).await), "failed");
    assert_eq!(count(&rt, "action").await, 0.0);
}

#[tokio::test]
async fn missed_cron_runs_coalesce_into_one() {
    let dir = tempfile::tempdir().unwrap();
    {
        let rt = runtime(dir.path(), app(), Clock::Test);
        rt.advance_time(0.0).await.unwrap();
        assert_eq!(count(&rt, "cron").await, 0.0);
        // Ten intervals pass at once: one run.
        rt.advance_time(600_000.0).await.unwrap();
        assert_eq!(count(&rt, "cron").await, 1.0);
        rt.advance_time(60_000.0).await.unwrap();
        assert_eq!(count(&rt, "cron").await, 2.0);
        rt.shutdown().await;
        rt.store().close().unwrap();
    }
    {
        // Down for an hour: one run on the way back (the test clock's offset is persisted, so
        // an hour on from where the last process stopped is well past the stored next run).
        let rt = runtime(dir.path(), app(), Clock::Test);
        rt.advance_time(3_600_000.0).await.unwrap();
        assert_eq!(count(&rt, "cron").await, 3.0);
        rt.store().close().unwrap();
    }
}

#[tokio::test]
async fn the_background_loop_runs_due_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path(), app(), Clock::System);
    rt.start_background();
    ok(&rt, "jobs:schedule", schedule(0.0, false)).await;
    // Woken by the commit; poll without asserting on timing (bounded so a bug cannot hang CI).
    for _ in 0..1000 {
        if count(&rt, "a").await == 1.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(count(&rt, "a").await, 1.0);
    rt.shutdown().await;
    assert!(
        rt.advance_time(1.0).await.is_err(),
        "advance_time needs the test clock"
    );
}

#[tokio::test]
async fn cron_expressions_parse_as_five_fields() {
    let every_minute = CronSchedule::Cron("* * * * *".into());
    let next = every_minute.next_after(60_000.0 * 10.0 + 1.0).unwrap();
    assert_eq!(next, 60_000.0 * 11.0);
    assert!(CronSchedule::Cron("0 * * * * *".into())
        .next_after(0.0)
        .is_err());
    let daily = CronSchedule::Cron("30 2 * * *".into());
    assert_eq!(
        daily.next_after(0.0).unwrap(),
        (2.0 * 60.0 + 30.0) * 60_000.0
    );
    let _ = NoArgs::default();
}
