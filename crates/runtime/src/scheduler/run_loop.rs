//! Start-up recovery, scheduler passes, the background loop, `advance_time` and shutdown.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tickethub_knobs::SCHEDULER_MAX_CONCURRENT_JOBS;
use tickethub_store::{IndexQuery, Order, Visit};
use tickethub_value::{DocumentId, Object, Value};

use super::crons::{cron_row, describe_schedule, fire_due_crons};
use super::jobs::{by_state, run_job, set_state, DueJob};
use super::retention::purge_if_due;
use super::{read, system_mutation, JobState, CRON_JOBS_TABLE, MAX_ADVANCE_ROUNDS, MAX_SLEEP};
use crate::{FnError, Runtime};

// ---- start-up -----------------------------------------------------------------------------

async fn ensure_initialized(rt: &Runtime) -> Result<(), FnError> {
    let mut done = rt.inner.sched.init.lock().await;
    if !*done {
        initialize(rt).await?;
        *done = true;
    }
    Ok(())
}

async fn initialize(rt: &Runtime) -> Result<(), FnError> {
    // Cluster mode: while this node followed, the leader may have changed the deployment's
    // variables; the mirror is only refreshed by this node's own updates.
    if rt.inner.store.role() != tickethub_store::NodeRole::Single {
        crate::env_vars::reload(rt).await?;
    }
    // Actions interrupted by a stop (or, in cluster mode, by the death of the leader that ran
    // them) may or may not have run: never run them again.
    let now = rt.now_ms();
    let interrupted = system_mutation(rt, move |txn| {
        let ids: Vec<DocumentId> = txn.collect(&by_state(JobState::InProgress), None)?.into_iter().map(|d| d.id).collect();
        for id in &ids {
            let error = "The server stopped while this action was running; actions run at most once, so it was not retried";
            set_state(txn, *id, JobState::Failed, Some(error.to_string()), Some(now))?;
        }
        Ok(ids.len())
    })
    .await?;
    if interrupted > 0 {
        tracing::warn!(
            count = interrupted,
            "marked scheduled actions interrupted by a restart as failed"
        );
    }

    sync_cron_rows(rt, now).await
}

/// Bring `_cron_jobs` in line with the declared crons (built-in and pushed), keeping the stored
/// next run (a run missed while down is then due once); a cron no longer declared loses its row.
async fn sync_cron_rows(rt: &Runtime, now: f64) -> Result<(), FnError> {
    rt.inner.sched.crons_changed.store(false, Ordering::SeqCst);
    let crons = rt.crons();
    let next_runs = system_mutation(rt, move |txn| {
        let mut next_runs = HashMap::new();
        for cron in &crons {
            let described = describe_schedule(&cron.schedule);
            let next_after = |t: f64| cron.parsed.next_after(t).map_err(FnError::Internal);
            let next = match cron_row(&*txn, &cron.name)? {
                None => {
                    let next = next_after(now)?;
                    let mut row = Object::new();
                    row.insert("name".into(), Value::from(cron.name.as_str()));
                    row.insert("schedule".into(), Value::from(described));
                    row.insert("nextRunMs".into(), Value::Float64(next));
                    txn.insert_doc(CRON_JOBS_TABLE, row)?;
                    next
                }
                Some(row)
                    if row.fields.get("schedule").and_then(|s| s.as_str())
                        != Some(described.as_str()) =>
                {
                    // The schedule changed: the next run follows the last one under the new one.
                    let last = row
                        .fields
                        .get("lastRunMs")
                        .and_then(|v| v.as_f64())
                        .unwrap_or(now);
                    let next = next_after(last)?;
                    txn.patch_doc(
                        row.id,
                        vec![
                            ("schedule".into(), Some(Value::from(described))),
                            ("nextRunMs".into(), Some(Value::Float64(next))),
                        ],
                    )?;
                    next
                }
                Some(row) => match row.fields.get("nextRunMs").and_then(|v| v.as_f64()) {
                    Some(next) => next,
                    None => next_after(now)?,
                },
            };
            next_runs.insert(cron.name.clone(), next);
        }
        let stale: Vec<DocumentId> = txn
            .collect(&IndexQuery::full_scan(CRON_JOBS_TABLE, Order::Asc), None)?
            .into_iter()
            .filter(|d| {
                d.fields
                    .get("name")
                    .and_then(|n| n.as_str())
                    .is_none_or(|n| !next_runs.contains_key(n))
            })
            .map(|d| d.id)
            .collect();
        for id in stale {
            txn.delete_doc(id)?;
        }
        Ok(next_runs)
    })
    .await?;
    *rt.inner.sched.cron_next.lock() = next_runs;
    Ok(())
}

// ---- passes -------------------------------------------------------------------------------

struct Pass {
    started: usize,
    /// Due jobs seen but not started (running already, or over the concurrency bound).
    due_left: bool,
    /// Earliest future time something becomes due (a pending job, a cron, the next purge).
    next_due: Option<f64>,
    /// The purge's batch was full: more finished jobs past retention are left.
    purge_backlog: bool,
}

/// Fire due crons, then start due jobs (up to the concurrency bound), then purge finished jobs
/// past their retention if that is due.
async fn run_pass(rt: &Runtime) -> Result<Pass, FnError> {
    let sched = &rt.inner.sched;
    let _tick = sched.tick.lock().await;
    let now = rt.now_ms();
    if sched.crons_changed.load(Ordering::SeqCst) {
        if let Err(e) = sync_cron_rows(rt, now).await {
            sched.crons_changed.store(true, Ordering::SeqCst);
            return Err(e);
        }
    }
    fire_due_crons(rt, now).await?;

    let inflight = sched.inflight.lock().clone();
    let capacity = SCHEDULER_MAX_CONCURRENT_JOBS.saturating_sub(inflight.len());
    let (due, due_left, next_job) = read(rt, move |txn| {
        let mut due = Vec::new();
        let mut due_left = false;
        let mut next_job = None;
        txn.scan(&by_state(JobState::Pending), None, &mut |_, doc| {
            let at = doc
                .fields
                .get("scheduledTime")
                .and_then(|t| t.as_f64())
                .unwrap_or(0.0);
            if at > now {
                next_job = Some(at);
                return Ok(Visit::Stop);
            }
            if inflight.contains(&doc.id.encode()) {
                due_left = true;
                return Ok(Visit::Continue);
            }
            if due.len() >= capacity {
                due_left = true;
                return Ok(Visit::Stop);
            }
            let name = doc
                .fields
                .get("name")
                .and_then(|n| n.as_str())
                .unwrap_or_default()
                .to_string();
            let args = doc
                .fields
                .get("args")
                .cloned()
                .unwrap_or(Value::Object(Object::new()));
            due.push(DueJob {
                id: doc.id,
                name,
                args,
            });
            Ok(Visit::Continue)
        })?;
        Ok((due, due_left, next_job))
    })
    .await?;

    let started = due.len();
    for job in due {
        sched.inflight.lock().insert(job.id.encode());
        let rt = rt.clone();
        tokio::spawn(async move {
            let id = job.id.encode();
            run_job(&rt, job).await;
            rt.inner.sched.inflight.lock().remove(&id);
            rt.inner.sched.wake();
            rt.inner.sched.idle.notify_waiters();
        });
    }
    // After the due jobs started, so a purge never delays them.
    let next_purge = purge_if_due(rt, now).await;
    let next_cron = sched
        .cron_next
        .lock()
        .values()
        .copied()
        .fold(None, |acc: Option<f64>, t| {
            Some(acc.map_or(t, |a| a.min(t)))
        });
    let next_due = [next_job, next_cron, Some(next_purge.at_ms)]
        .into_iter()
        .flatten()
        .reduce(f64::min);
    Ok(Pass {
        started,
        due_left,
        next_due,
        purge_backlog: next_purge.backlog,
    })
}

// ---- loop, test clock, shutdown -------------------------------------------------------------

/// How often a follower's scheduler loop checks whether this node now leads.
const FOLLOWER_CHECK_EVERY: Duration = Duration::from_millis(250);

pub(crate) fn start_background(rt: &Runtime) {
    let mut task = rt.inner.sched.loop_task.lock();
    if task.is_some() {
        return;
    }
    let rt = rt.clone();
    *task = Some(tokio::spawn(async move { background_loop(rt).await }));
}

async fn background_loop(rt: Runtime) {
    let sched = &rt.inner.sched;
    while !sched.stopping.load(Ordering::SeqCst) {
        // Cluster mode: scheduled jobs and crons run on the leader only. A follower checks again
        // shortly, and starts them the moment it is promoted (the jobs' state is in the database,
        // so a job the old leader finished is not run again).
        if rt.inner.store.role() == tickethub_store::NodeRole::Follower {
            *sched.init.lock().await = false;
            tokio::select! {
                _ = tokio::time::sleep(FOLLOWER_CHECK_EVERY) => {}
                _ = sched.stop.notified() => break,
            }
            continue;
        }
        if let Err(e) = ensure_initialized(&rt).await {
            tracing::error!(error = %e, "scheduler start-up failed");
        }
        let wait = match run_pass(&rt).await {
            Ok(pass) => match pass.next_due {
                Some(at) => Duration::from_secs_f64(
                    ((at - rt.now_ms()).max(0.0) / 1000.0).min(MAX_SLEEP.as_secs_f64()),
                ),
                None => MAX_SLEEP,
            },
            Err(e) => {
                tracing::error!(error = %e, "scheduler pass failed");
                Duration::from_secs(1)
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = sched.wake.notified() => {}
            _ = sched.stop.notified() => break,
        }
    }
}

async fn wait_idle(rt: &Runtime) {
    let sched = &rt.inner.sched;
    loop {
        let notified = sched.idle.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if sched.inflight.lock().is_empty() {
            return;
        }
        notified.await;
    }
}

/// Run every job and cron due by now (and the due jobs those schedule) to completion, and purge
/// every finished job past its retention.
pub(crate) async fn run_until_idle(rt: &Runtime) -> Result<(), FnError> {
    ensure_initialized(rt).await?;
    let mut rounds = 0;
    while rounds < MAX_ADVANCE_ROUNDS {
        wait_idle(rt).await;
        let pass = run_pass(rt).await?;
        wait_idle(rt).await;
        let jobs_left = pass.started > 0 || pass.due_left;
        if !jobs_left && !pass.purge_backlog {
            return Ok(());
        }
        // Only rounds that ran jobs count: a purge backlog always ends, a job loop may not.
        if jobs_left {
            rounds += 1;
        }
    }
    Err(FnError::msg(format!(
        "scheduled jobs kept scheduling due jobs for {MAX_ADVANCE_ROUNDS} rounds; stopped waiting"
    )))
}

pub(crate) async fn shutdown(rt: &Runtime) {
    let sched = &rt.inner.sched;
    sched.stopping.store(true, Ordering::SeqCst);
    sched.stop.notify_one();
    let task = sched.loop_task.lock().take();
    if let Some(task) = task {
        let _ = task.await;
    }
    wait_idle(rt).await;
}
