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
//!   mutation schedules something or a job finishes. At most
//!   [`tickethub_knobs::SCHEDULER_MAX_CONCURRENT_JOBS`] run at once.
//! - Scheduled functions run as admin (they may be internal); `getUserIdentity()` is null there.
//!
//! - Finished jobs' rows are deleted after a retention period (7 days by default, as Convex),
//!   in bounded batches, so the table does not grow without bound (`retention`).
//!
//! Modules: `jobs` (job rows, running one job), `crons` (cron rows, firing due crons),
//! `retention` (purging finished jobs), `run_loop` (start-up, passes, the loop, `advance_time`, shutdown), `system` (the built-in
//! `_system/*` queries).

mod crons;
mod jobs;
mod retention;
mod run_loop;
mod system;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use parking_lot::Mutex;
use tickethub_store::{DocReader, IndexDef, TableDef};
use tickethub_value::{validator::v, Value};
use tokio::sync::Notify;

pub(crate) use jobs::{cancel_job, insert_job, prepare_job};
pub use retention::JobRetention;
pub(crate) use run_loop::{run_until_idle, shutdown, start_background};
pub(crate) use system::register_system_functions;
pub use system::{SYSTEM_LIST_DEFAULT_LIMIT, SYSTEM_LIST_MAX_LIMIT};

use crate::db::WriteOps;
use crate::writer::run_on_writer;
use crate::{FnError, Runtime};

pub const SCHEDULED_FUNCTIONS_TABLE: &str = "_scheduled_functions";
pub const CRON_JOBS_TABLE: &str = "_cron_jobs";
/// `_scheduled_functions` by `[state.kind, scheduledTime]`: due pending jobs are one range.
const BY_STATE: &str = "by_state";
const BY_NAME: &str = "by_name";
/// `_scheduled_functions` by `completedTime`: finished jobs past retention are one range.
const BY_COMPLETION: &str = "by_completion";

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
        indexes: vec![
            IndexDef {
                name: BY_STATE.to_string(),
                fields: vec!["state.kind".to_string(), "scheduledTime".to_string()],
            },
            IndexDef {
                name: BY_COMPLETION.to_string(),
                fields: vec!["completedTime".to_string()],
            },
        ],
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
    /// Start-up work done once per leadership term: recovery of interrupted actions, cron
    /// rows, the environment-variable mirror. `false` until done; a cluster follower sets it
    /// back to `false`, so a node that leads again redoes it (another leader ran meanwhile).
    init: tokio::sync::Mutex<bool>,
    /// Next run of each cron (Unix ms), mirrored from `_cron_jobs`.
    cron_next: Mutex<HashMap<String, f64>>,
    /// A push changed the crons: the next pass brings `_cron_jobs` in line first.
    crons_changed: AtomicBool,
    /// When the next purge of finished jobs is due (runtime clock, Unix ms); `None` until the
    /// first pass, which purges at once (rows may have aged past retention while we were down).
    next_purge_ms: Mutex<Option<f64>>,
    stopping: AtomicBool,
    stop: Notify,
    loop_task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl SchedulerState {
    pub(crate) fn wake(&self) {
        self.wake.notify_one();
    }

    /// The declared crons changed (a push): sync their rows on the next pass.
    pub(crate) fn crons_changed(&self) {
        self.crons_changed
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.wake();
    }
}
// ---- small engine transactions ------------------------------------------------------------

/// Run `f` as its own mutation on the writer thread: commit on `Ok`, roll back on `Err`.
pub(crate) async fn system_mutation<R, F>(rt: &Runtime, f: F) -> Result<R, FnError>
where
    R: Send + 'static,
    F: FnOnce(&mut dyn WriteOps) -> Result<R, FnError> + Send + 'static,
{
    let (value, _commit) = run_on_writer(&rt.inner.store, move |txn| f(txn)).await?;
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

/// What [`Runtime::cancel_pending_job`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CancelOutcome {
    Canceled,
    /// The job is running or finished; its state's kind (`inProgress`, `success`, ...).
    NotPending(String),
    /// No scheduled job has this id.
    NoSuchJob,
}

impl Runtime {
    /// Cancel a scheduled job that has not started (the dashboard's cancel button). Unlike
    /// `ctx.scheduler.cancel`, which ignores finished jobs, this says why nothing happened.
    pub async fn cancel_pending_job(&self, job_id: String) -> Result<CancelOutcome, FnError> {
        let now = self.now_ms();
        system_mutation(self, move |txn| jobs::cancel_if_pending(txn, &job_id, now)).await
    }
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
