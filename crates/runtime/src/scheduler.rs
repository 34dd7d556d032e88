//! The scheduler and crons, kept in the store so a restart neither loses nor repeats a job.
//!
//! - Jobs are rows of the system table `_scheduled_functions` (`name`, `args`, `scheduledTime`,
//!   `state: {kind, error?}`, `completedTime?`), inserted by the scheduling mutation's own
//!   transaction: a job exists only if that mutation commits.
//! - A scheduled **mutation** runs its handler and marks its row `success` in one transaction,
//!   so it takes effect exactly once, also across `kill -9`. A failing one is rolled back and
//!   then marked `failed` (until that lands it is still `pending`; re-running it is harmless
//!   because nothing of it was committed).
//! - A scheduled **action** is marked `inProgress` before it starts and `success`/`failed` after:
//!   at most once. Rows left `inProgress` by a crash are marked `failed` at start-up.
//! - Crons are rows of `_cron_jobs` (`name`, `schedule`, `lastRunMs?`, `nextRunMs`). A cron run
//!   is a job inserted in the same transaction that moves the cron's `nextRunMs` past now, so
//!   runs missed while the server was down coalesce into one.
//! - The loop sleeps until the earliest due time (at most [`MAX_SLEEP`]), and is woken when a
//!   mutation schedules something or a job finishes. At most [`MAX_CONCURRENT_JOBS`] run at once.
//! - Scheduled functions run as admin (they may be internal); `getUserIdentity()` is null there.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;
use tickethub_store::{
    DocReader, Document, IndexDef, IndexQuery, Order, Outcome, StoreError, TableDef, Visit,
};
use tickethub_value::{validator::v, DocumentId, Object, Value};
use tokio::sync::{oneshot, Notify};

use crate::ctx::LogSink;
use crate::db::WriteOps;
use crate::engine::{args_value, run_mutation_in_txn, Access, Inner, ReadAt};
use crate::{Auth, FnError, FunctionKind, FunctionSpec, Identity, Runtime};

pub const SCHEDULED_FUNCTIONS_TABLE: &str = "_scheduled_functions";
pub const CRON_JOBS_TABLE: &str = "_cron_jobs";
/// `_scheduled_functions` by `[state.kind, scheduledTime]`: due pending jobs are one range.
const BY_STATE: &str = "by_state";
const BY_NAME: &str = "by_name";

/// Most scheduled jobs running at once.
pub const MAX_CONCURRENT_JOBS: usize = 16;
/// Longest the loop sleeps without looking at the table (a safety net: it is woken on changes).
pub const MAX_SLEEP: Duration = Duration::from_secs(60);
/// Rounds `advance_time` runs (jobs scheduling due jobs) before giving up on a loop.
pub const MAX_ADVANCE_ROUNDS: usize = 1000;

/// A job's state kinds, as stored in `state.kind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobState {
    Pending,
    InProgress,
    Success,
    Failed,
    Canceled,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::InProgress => "inProgress",
            JobState::Success => "success",
            JobState::Failed => "failed",
            JobState::Canceled => "canceled",
        }
    }

    pub const ALL: [JobState; 5] = [
        JobState::Pending,
        JobState::InProgress,
        JobState::Success,
        JobState::Failed,
        JobState::Canceled,
    ];

    /// The state stored as `kind` (`"pending"`, `"inProgress"`, ...).
    pub fn parse(kind: &str) -> Option<JobState> {
        JobState::ALL.into_iter().find(|s| s.as_str() == kind)
    }
}

pub(crate) fn system_tables() -> Vec<TableDef> {
    let scheduled = TableDef {
        name: SCHEDULED_FUNCTIONS_TABLE.to_string(),
        fields: [
            ("name", v::string()),
            ("args", v::any()),
            ("scheduledTime", v::number()),
            ("completedTime", v::optional(v::number())),
            (
                "state",
                v::object([("kind", v::string()), ("error", v::optional(v::string()))]),
            ),
        ]
        .into_iter()
        .map(|(k, val)| (k.to_string(), val))
        .collect(),
        indexes: vec![IndexDef {
            name: BY_STATE.to_string(),
            fields: vec!["state.kind".to_string(), "scheduledTime".to_string()],
        }],
        validate: true,
    };
    let crons = TableDef {
        name: CRON_JOBS_TABLE.to_string(),
        fields: [
            ("name", v::string()),
            ("schedule", v::string()),
            ("lastRunMs", v::optional(v::number())),
            ("nextRunMs", v::number()),
        ]
        .into_iter()
        .map(|(k, val)| (k.to_string(), val))
        .collect(),
        indexes: vec![IndexDef {
            name: BY_NAME.to_string(),
            fields: vec!["name".to_string()],
        }],
        validate: true,
    };
    vec![scheduled, crons]
}

/// Scheduler state shared by the loop, `advance_time` and job tasks.
#[derive(Default)]
pub(crate) struct SchedulerState {
    /// Something changed (a job was scheduled or finished): look again.
    wake: Notify,
    /// A job finished (for waiting until none run).
    idle: Notify,
    /// One pass at a time, so a job is never started twice by two passes.
    tick: tokio::sync::Mutex<()>,
    /// Jobs started by this process and not finished (encoded ids).
    inflight: Mutex<HashSet<String>>,
    /// Start-up work done once: recovery of interrupted actions, cron rows.
    init: tokio::sync::OnceCell<()>,
    /// Next run of each cron (Unix ms), mirrored from `_cron_jobs`.
    cron_next: Mutex<HashMap<String, f64>>,
    stopping: AtomicBool,
    stop: Notify,
    loop_task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl SchedulerState {
    pub(crate) fn wake(&self) {
        self.wake.notify_one();
    }
}

// ---- rows -------------------------------------------------------------------------------

fn state_object(state: JobState, error: Option<String>) -> Value {
    let mut o = Object::new();
    o.insert("kind".into(), Value::from(state.as_str()));
    if let Some(error) = error {
        o.insert("error".into(), Value::String(error));
    }
    Value::Object(o)
}

fn job_state(doc: &Document) -> Option<&str> {
    doc.fields
        .get("state")
        .and_then(|s| s.get("kind"))
        .and_then(|k| k.as_str())
}

/// Check a job target: a mutation or an action (internal ones too), with object args.
pub(crate) fn prepare_job(
    inner: &Inner,
    path: &str,
    args: impl Serialize,
) -> Result<(String, Value), FnError> {
    let spec = inner.resolve(path, Access::Internal, None)?;
    if !matches!(spec.kind, FunctionKind::Mutation | FunctionKind::Action) {
        return Err(FnError::msg(format!(
            "Only mutations and actions can be scheduled, but {path} is a {}",
            spec.kind.to_string().to_lowercase()
        )));
    }
    Ok((spec.path.clone(), args_value(args)?))
}

pub(crate) fn insert_job(
    txn: &mut dyn WriteOps,
    canonical: &str,
    args: Value,
    at_ms: f64,
) -> Result<DocumentId, StoreError> {
    let mut row = Object::new();
    row.insert("name".into(), Value::from(canonical));
    row.insert("args".into(), args);
    row.insert("scheduledTime".into(), Value::Float64(at_ms));
    row.insert("state".into(), state_object(JobState::Pending, None));
    txn.insert_doc(SCHEDULED_FUNCTIONS_TABLE, row)
}

fn set_state(
    txn: &mut dyn WriteOps,
    id: DocumentId,
    state: JobState,
    error: Option<String>,
    completed_ms: Option<f64>,
) -> Result<(), StoreError> {
    let mut fields = vec![("state".to_string(), Some(state_object(state, error)))];
    if let Some(ms) = completed_ms {
        fields.push(("completedTime".to_string(), Some(Value::Float64(ms))));
    }
    txn.patch_doc(id, fields)
}

fn is_pending(txn: &dyn DocReader, id: DocumentId) -> Result<bool, StoreError> {
    Ok(txn.get(id)?.as_ref().and_then(job_state) == Some(JobState::Pending.as_str()))
}

pub(crate) fn cancel_job(txn: &mut dyn WriteOps, job_id: &str, now_ms: f64) -> Result<(), FnError> {
    let id = DocumentId::decode(job_id)?;
    if txn.table_name(id.table).as_deref() != Some(SCHEDULED_FUNCTIONS_TABLE) {
        return Err(FnError::msg(format!(
            "{job_id} is not the id of a scheduled function"
        )));
    }
    if is_pending(&*txn, id)? {
        set_state(txn, id, JobState::Canceled, None, Some(now_ms))?;
    }
    Ok(())
}

// ---- built-in system queries ---------------------------------------------------------------

/// Rows `_system/scheduler:list` returns when no `limit` is given, and the most it returns.
pub const SYSTEM_LIST_DEFAULT_LIMIT: usize = 1000;
pub const SYSTEM_LIST_MAX_LIMIT: usize = 10_000;

/// Args of `_system/scheduler:list`: an optional state kind and row limit.
#[derive(serde::Deserialize)]
struct ListJobsArgs {
    state: Option<String>,
    limit: Option<f64>,
}

impl crate::Args for ListJobsArgs {
    fn validator() -> Option<tickethub_value::Validator> {
        Some(v::object([
            ("state", v::optional(v::string())),
            ("limit", v::optional(v::number())),
        ]))
    }
}

fn list_limit(limit: Option<f64>) -> Result<usize, FnError> {
    match limit {
        None => Ok(SYSTEM_LIST_DEFAULT_LIMIT),
        Some(n) if n.is_finite() && n >= 1.0 && n.fract() == 0.0 => {
            Ok((n as usize).min(SYSTEM_LIST_MAX_LIMIT))
        }
        Some(n) => Err(FnError::ArgumentValidation(format!(
            "limit must be a positive integer, got {n}"
        ))),
    }
}

/// Internal (admin-only) queries that make the scheduler's tables visible without app code:
/// `_system/scheduler:list` (newest first; by state, latest `scheduledTime` first) and
/// `_system/crons:list`.
pub(crate) fn register_system_functions(app: &mut crate::App) {
    app.internal_query(
        "_system/scheduler:list",
        |ctx: &crate::QueryCtx, args: ListJobsArgs| -> Result<Vec<Value>, FnError> {
            let limit = list_limit(args.limit)?;
            let query = match args.state.as_deref() {
                None => ctx.db.query(SCHEDULED_FUNCTIONS_TABLE),
                Some(kind) => {
                    let state = JobState::parse(kind).ok_or_else(|| {
                        let known: Vec<&str> = JobState::ALL.iter().map(|s| s.as_str()).collect();
                        FnError::ArgumentValidation(format!(
                            "state must be one of {}, got {kind:?}",
                            known.join(", ")
                        ))
                    })?;
                    ctx.db
                        .query(SCHEDULED_FUNCTIONS_TABLE)
                        .with_index(BY_STATE, |q| q.eq("state.kind", state.as_str()))
                }
            };
            let rows = query.order(Order::Desc).take(limit)?;
            Ok(rows.iter().map(|d| d.to_value()).collect())
        },
    );
    app.internal_query(
        "_system/crons:list",
        |ctx: &crate::QueryCtx, _: crate::NoArgs| -> Result<Vec<Value>, FnError> {
            let rows = ctx.db.query(CRON_JOBS_TABLE).take(SYSTEM_LIST_MAX_LIMIT)?;
            Ok(rows.iter().map(|d| d.to_value()).collect())
        },
    );
}

// ---- small engine transactions ------------------------------------------------------------

/// Run `f` as its own mutation on the writer thread: commit on `Ok`, roll back on `Err`.
pub(crate) async fn system_mutation<R, F>(rt: &Runtime, f: F) -> Result<R, FnError>
where
    R: Send + 'static,
    F: FnOnce(&mut dyn WriteOps) -> Result<R, FnError> + Send + 'static,
{
    let (sender, receiver) = oneshot::channel();
    let slot: Arc<Mutex<Option<Result<R, FnError>>>> = Arc::new(Mutex::new(None));
    let job_slot = slot.clone();
    rt.inner.store.submit(
        Box::new(move |txn| {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(txn)))
                .unwrap_or_else(|p| Err(FnError::Internal(crate::engine::panic_message(&*p))));
            let outcome = if result.is_ok() {
                Outcome::Commit
            } else {
                Outcome::Rollback
            };
            *job_slot.lock() = Some(result);
            outcome
        }),
        Box::new(move |commit| {
            let _ = sender.send(commit);
        }),
    );
    let commit = receiver
        .await
        .map_err(|_| FnError::Internal("the store dropped a scheduler job".into()))?;
    let result = slot
        .lock()
        .take()
        .unwrap_or_else(|| Err(FnError::Internal("a scheduler job did not run".into())));
    let value = result?;
    commit?;
    Ok(value)
}

pub(crate) async fn schedule_standalone(
    rt: &Runtime,
    canonical: String,
    args: Value,
    at_ms: f64,
) -> Result<String, FnError> {
    let id = system_mutation(rt, move |txn| Ok(insert_job(txn, &canonical, args, at_ms)?)).await?;
    rt.inner.sched.wake();
    Ok(id.encode())
}

pub(crate) async fn cancel_standalone(rt: &Runtime, job_id: String) -> Result<(), FnError> {
    let now = rt.now_ms();
    system_mutation(rt, move |txn| cancel_job(txn, &job_id, now)).await
}

/// Read with a fresh snapshot off the async threads.
async fn read<R, F>(rt: &Runtime, f: F) -> Result<R, FnError>
where
    R: Send + 'static,
    F: FnOnce(&dyn DocReader) -> Result<R, FnError> + Send + 'static,
{
    let store = rt.inner.store.clone();
    tokio::task::spawn_blocking(move || {
        let txn = store.read()?;
        f(&txn)
    })
    .await
    .map_err(|e| FnError::Internal(format!("scheduler read failed: {e}")))?
}

fn by_state(state: JobState) -> IndexQuery {
    IndexQuery {
        table: SCHEDULED_FUNCTIONS_TABLE.to_string(),
        index: BY_STATE.to_string(),
        eq: vec![("state.kind".to_string(), Some(Value::from(state.as_str())))],
        lower: None,
        upper: None,
        order: Order::Asc,
    }
}

fn cron_row(txn: &dyn DocReader, name: &str) -> Result<Option<Document>, StoreError> {
    let query = IndexQuery {
        table: CRON_JOBS_TABLE.to_string(),
        index: BY_NAME.to_string(),
        eq: vec![("name".to_string(), Some(Value::from(name)))],
        lower: None,
        upper: None,
        order: Order::Asc,
    };
    Ok(txn.collect(&query, Some(1))?.into_iter().next())
}

fn describe_schedule(schedule: &crate::CronSchedule) -> String {
    match schedule {
        crate::CronSchedule::Interval { ms } => format!("every {ms} ms"),
        crate::CronSchedule::Cron(expr) => format!("cron {expr}"),
    }
}

// ---- start-up -----------------------------------------------------------------------------

async fn ensure_initialized(rt: &Runtime) -> Result<(), FnError> {
    rt.inner
        .sched
        .init
        .get_or_try_init(|| initialize(rt))
        .await
        .map(|_| ())
}

async fn initialize(rt: &Runtime) -> Result<(), FnError> {
    // Actions interrupted by a stop may or may not have run: never run them again.
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

    // Bring `_cron_jobs` in line with the declared crons, keeping the stored next run (a run
    // missed while down is then due once).
    let crons = rt.inner.crons.clone();
    let next_runs = system_mutation(rt, move |txn| {
        let mut next_runs = HashMap::new();
        for cron in &crons {
            let described = describe_schedule(&cron.schedule);
            let next_after = |t: f64| cron.schedule.next_after(t).map_err(FnError::Internal);
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

struct DueJob {
    id: DocumentId,
    name: String,
    args: Value,
}

struct Pass {
    started: usize,
    /// Due jobs seen but not started (running already, or over the concurrency bound).
    due_left: bool,
    /// Earliest future time something becomes due (a pending job or a cron).
    next_due: Option<f64>,
}

/// Fire due crons, then start due jobs (up to the concurrency bound).
async fn run_pass(rt: &Runtime) -> Result<Pass, FnError> {
    let sched = &rt.inner.sched;
    let _tick = sched.tick.lock().await;
    let now = rt.now_ms();
    fire_due_crons(rt, now).await?;

    let inflight = sched.inflight.lock().clone();
    let capacity = MAX_CONCURRENT_JOBS.saturating_sub(inflight.len());
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
    let next_cron = sched
        .cron_next
        .lock()
        .values()
        .copied()
        .fold(None, |acc: Option<f64>, t| {
            Some(acc.map_or(t, |a| a.min(t)))
        });
    let next_due = match (next_job, next_cron) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    Ok(Pass {
        started,
        due_left,
        next_due,
    })
}

/// Turn each due cron into a job due now and move its next run past now, in one transaction.
async fn fire_due_crons(rt: &Runtime, now: f64) -> Result<(), FnError> {
    let due: Vec<crate::registry::CronSpec> = {
        let next = rt.inner.sched.cron_next.lock();
        rt.inner
            .crons
            .iter()
            .filter(|c| next.get(&c.name).is_some_and(|t| *t <= now))
            .cloned()
            .collect()
    };
    if due.is_empty() {
        return Ok(());
    }
    let next_runs = system_mutation(rt, move |txn| {
        let mut next_runs = Vec::new();
        for cron in &due {
            let next = cron.schedule.next_after(now).map_err(FnError::Internal)?;
            insert_job(txn, &cron.path, cron.args.clone(), now)?;
            let fields = vec![
                ("lastRunMs".to_string(), Some(Value::Float64(now))),
                ("nextRunMs".to_string(), Some(Value::Float64(next))),
            ];
            match cron_row(&*txn, &cron.name)? {
                Some(row) => txn.patch_doc(row.id, fields)?,
                None => {
                    let mut row: Object = fields
                        .into_iter()
                        .filter_map(|(k, v)| v.map(|v| (k, v)))
                        .collect();
                    row.insert("name".into(), Value::from(cron.name.as_str()));
                    row.insert(
                        "schedule".into(),
                        Value::from(describe_schedule(&cron.schedule)),
                    );
                    txn.insert_doc(CRON_JOBS_TABLE, row)?;
                }
            }
            tracing::info!(cron = cron.name, path = cron.path, "cron fired");
            next_runs.push((cron.name.clone(), next));
        }
        Ok(next_runs)
    })
    .await?;
    rt.inner.sched.cron_next.lock().extend(next_runs);
    Ok(())
}

fn admin(rt: &Runtime) -> Auth {
    Auth::new(Identity::Admin, rt.inner.config.auth_enabled)
}

/// What is recorded as a failed job's error: internal details stay in the server log.
fn recorded_error(e: &FnError) -> String {
    if e.is_user_visible() {
        e.to_string()
    } else {
        "Server Error".to_string()
    }
}

async fn run_job(rt: &Runtime, job: DueJob) {
    let spec = match rt.inner.resolve(&job.name, Access::Internal, None) {
        Ok(spec) if matches!(spec.kind, FunctionKind::Mutation | FunctionKind::Action) => spec,
        Ok(_) | Err(_) => {
            let error = format!("Could not find a mutation or action named {}", job.name);
            mark_finished(rt, job.id, Err(error)).await;
            return;
        }
    };
    match spec.kind {
        FunctionKind::Mutation => run_scheduled_mutation(rt, spec, job).await,
        _ => run_scheduled_action(rt, spec, job).await,
    }
}

/// Record a job's end if it is still pending or in progress (a canceled one stays canceled).
async fn mark_finished(rt: &Runtime, id: DocumentId, result: Result<(), String>) {
    let now = rt.now_ms();
    let marked = system_mutation(rt, move |txn| {
        let state = txn
            .get(id)?
            .as_ref()
            .and_then(job_state)
            .map(str::to_string);
        if matches!(state.as_deref(), Some("pending") | Some("inProgress")) {
            let (state, error) = match result {
                Ok(()) => (JobState::Success, None),
                Err(e) => (JobState::Failed, Some(e)),
            };
            set_state(txn, id, state, error, Some(now))?;
        }
        Ok(())
    })
    .await;
    if let Err(e) = marked {
        tracing::error!(job = %id, error = %e, "could not record the end of a scheduled job");
    }
}

async fn run_scheduled_mutation(rt: &Runtime, spec: Arc<FunctionSpec>, job: DueJob) {
    let started = std::time::Instant::now();
    let id = job.id;
    let inner = rt.inner.clone();
    let auth = admin(rt);
    let path = spec.path.clone();
    // Ok(true) ran and committed, Ok(false) skipped (no longer pending), Err failed.
    let result = system_mutation(rt, move |txn| {
        if !is_pending(&*txn, id)? {
            return Ok(false);
        }
        let run = run_mutation_in_txn(&inner, &spec, txn, &auth, &LogSink::default(), job.args);
        run.result?;
        let now = inner.now_ms();
        set_state(txn, id, JobState::Success, None, Some(now))?;
        Ok(true)
    })
    .await;
    match result {
        Ok(true) => {
            tracing::info!(job = %id, path, duration_ms = started.elapsed().as_secs_f64() * 1000.0, "scheduled mutation succeeded")
        }
        Ok(false) => {}
        Err(e) => {
            tracing::warn!(job = %id, path, error = %e, "scheduled mutation failed");
            mark_finished(rt, id, Err(recorded_error(&e))).await;
        }
    }
}

async fn run_scheduled_action(rt: &Runtime, spec: Arc<FunctionSpec>, job: DueJob) {
    let id = job.id;
    let claimed = system_mutation(rt, move |txn| {
        if !is_pending(&*txn, id)? {
            return Ok(false);
        }
        set_state(txn, id, JobState::InProgress, None, None)?;
        Ok(true)
    })
    .await;
    match claimed {
        Ok(true) => {}
        Ok(false) => return,
        Err(e) => {
            tracing::error!(job = %id, error = %e, "could not start a scheduled action");
            return;
        }
    }
    let execution = rt
        .run_spec(
            spec.clone(),
            job.args,
            admin(rt),
            ReadAt::Latest,
            LogSink::default(),
        )
        .await;
    let result = match execution.outcome {
        Ok(_) => {
            tracing::info!(job = %id, path = spec.path, "scheduled action succeeded");
            Ok(())
        }
        Err(e) => {
            tracing::warn!(job = %id, path = spec.path, error = %e, "scheduled action failed");
            Err(recorded_error(&e))
        }
    };
    mark_finished(rt, id, result).await;
}

// ---- loop, test clock, shutdown -------------------------------------------------------------

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
    if let Err(e) = ensure_initialized(&rt).await {
        tracing::error!(error = %e, "scheduler start-up failed; retrying on the next pass");
    }
    while !sched.stopping.load(Ordering::SeqCst) {
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

/// Run every job and cron due by now (and the due jobs those schedule) to completion.
pub(crate) async fn run_until_idle(rt: &Runtime) -> Result<(), FnError> {
    ensure_initialized(rt).await?;
    for _ in 0..MAX_ADVANCE_ROUNDS {
        wait_idle(rt).await;
        let pass = run_pass(rt).await?;
        wait_idle(rt).await;
        if pass.started == 0 && !pass.due_left {
            return Ok(());
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
