//! The writer thread: it alone writes to the database. It runs queued mutation jobs one after
//! another, each of which can be undone alone (a SAVEPOINT on SQLite, an undo log on Postgres),
//! and commits them in batches (group commit: one durable commit for the batch); a job's caller
//! hears back only after its batch is durable.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::RwLock;

use crate::backend::{BatchMeta, BatchWriter, Keep};
use crate::catalog::Catalog;
use crate::log::CommitLog;
use crate::maintenance::MaintenanceReport;
use crate::store::{CommitHook, CommitInfo, Done, Job, Outcome};
use crate::{StoreError, Timestamp, WriteSet, WriteTxn};

/// State the writer thread publishes to everyone else.
pub(crate) struct Shared {
    pub(crate) latest_ts: AtomicU64,
    pub(crate) hooks: RwLock<Vec<CommitHook>>,
    pub(crate) log: CommitLog,
    /// Set before a cluster leader that lost its lease stops its writer: jobs still queued then
    /// fail with `LeaderUnavailable` (retry, the new leader takes them), not `ShuttingDown`.
    pub(crate) stepping_down: std::sync::atomic::AtomicBool,
}

/// What the writer's queue carries.
pub(crate) enum Message {
    Job(Job, Done),
    /// Finish the queued jobs, checkpoint, and stop.
    Close(mpsc::Sender<Result<(), StoreError>>),
    /// Work between batches, after the jobs queued before it.
    Between(Between),
}

/// What the writer does between two batches, outside any batch transaction.
pub(crate) enum Between {
    /// One upkeep step ([`crate::Store::maintain_now`]).
    Maintain(mpsc::SyncSender<Result<MaintenanceReport, StoreError>>),
    /// Migrate to this schema ([`crate::Store::put_tables`]); answers with the new catalog,
    /// which the writer uses from then on.
    Migrate(
        crate::Schema,
        mpsc::SyncSender<Result<Arc<Catalog>, StoreError>>,
    ),
}

impl Between {
    /// Answer without doing it: the writer is stopping.
    fn refuse(self) {
        match self {
            Between::Maintain(ack) => {
                let _ = ack.send(Err(StoreError::ShuttingDown));
            }
            Between::Migrate(_, ack) => {
                let _ = ack.send(Err(StoreError::ShuttingDown));
            }
        }
    }
}

/// When the writer does its upkeep on its own (`maintenance.rs`).
pub(crate) struct IdleUpkeep {
    /// Idle time before a step; `None`: only on request.
    pub(crate) after: Option<Duration>,
    pub(crate) step_pages: u64,
    /// Something was written (or a step left work) since the last step.
    pub(crate) due: bool,
}

pub(crate) fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub(crate) fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Hands out `_creationTime`s: wall-clock milliseconds with a fractional part, strictly
/// increasing even when the clock stalls or steps back (then it counts up in 1 µs steps).
pub(crate) struct CreationClock {
    pub(crate) last: f64,
}

impl CreationClock {
    pub(crate) fn next(&mut self) -> f64 {
        let now = now_nanos() as f64 / 1e6;
        let mut t = if now > self.last {
            now
        } else {
            self.last + 0.001
        };
        // Near 1.7e12 the f64 spacing is ~0.00024 ms, so +0.001 always moves; this guards far
        // larger values where it might not.
        if t <= self.last {
            t = f64::from_bits(self.last.to_bits() + 1);
        }
        self.last = t;
        t
    }
}

/// The writer thread's state.
pub(crate) struct Writer {
    pub(crate) conn: Box<dyn BatchWriter>,
    pub(crate) catalog: Arc<Catalog>,
    pub(crate) clock: CreationClock,
    pub(crate) last_ts: Timestamp,
    /// Most jobs one batch may hold.
    pub(crate) max_batch: usize,
    /// Longest a batch waits for late jobs (see [`Writer::gather`]). Far below one fsync, so it
    /// costs little latency and saves a whole commit for the jobs it catches.
    pub(crate) gather_wait: Duration,
    pub(crate) shared: Arc<Shared>,
    /// Jobs in the previous batch: how many callers were waiting on one commit, so most of them
    /// are likely to send their next job right after hearing back.
    pub(crate) last_batch_len: usize,
    pub(crate) idle_upkeep: IdleUpkeep,
}

/// One job's result inside a batch, before the batch commits.
enum JobResult {
    Committed(CommitInfo),
    NothingWritten(CommitInfo),
    Failed(StoreError),
}

/// The text of a caught panic. The one copy: the runtime and the router use it too (the store is
/// the lowest crate that catches panics).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_string()
    }
}

impl Writer {
    pub(crate) fn run(mut self, receiver: mpsc::Receiver<Message>) {
        let mut close_ack = None;
        // Requests that arrived with a batch: served after it.
        let mut between = Vec::new();
        while close_ack.is_none() {
            let Some(first) = self.next_message(&receiver) else {
                break;
            };
            let mut batch = Vec::new();
            match first {
                Message::Job(job, done) => batch.push((job, done)),
                Message::Close(ack) => close_ack = Some(ack),
                Message::Between(request) => between.push(request),
            }
            // Group commit: everything already waiting joins this batch.
            while close_ack.is_none() && batch.len() < self.max_batch {
                match receiver.try_recv() {
                    Ok(Message::Job(job, done)) => batch.push((job, done)),
                    Ok(Message::Close(ack)) => close_ack = Some(ack),
                    Ok(Message::Between(request)) => between.push(request),
                    Err(_) => break,
                }
            }
            if close_ack.is_none() && !batch.is_empty() {
                close_ack = self.gather(&receiver, &mut batch, &mut between);
            }
            if !batch.is_empty() {
                self.last_batch_len = batch.len();
                self.run_batch(batch);
            }
            for request in between.drain(..) {
                self.serve_between(request);
            }
        }
        // Drain jobs that raced with close so their callers hear back.
        while let Ok(msg) = receiver.try_recv() {
            match msg {
                Message::Job(_, done) => done(Err(
                    if self.shared.stepping_down.load(AtomicOrdering::Acquire) {
                        StoreError::LeaderUnavailable
                    } else {
                        StoreError::ShuttingDown
                    },
                )),
                Message::Close(ack) => {
                    let _ = ack.send(Ok(()));
                }
                Message::Between(request) => request.refuse(),
            }
        }
        let result = self.conn.close();
        if let Some(ack) = close_ack {
            let _ = ack.send(result);
        }
    }

    /// The next message. While upkeep is due, an idle period of `idle_upkeep.after` runs one
    /// step (and waits again while more is left); `None` once every sender is gone.
    fn next_message(&mut self, receiver: &mpsc::Receiver<Message>) -> Option<Message> {
        loop {
            let upkeep_after = match self.idle_upkeep.after {
                Some(after) if self.idle_upkeep.due => Some(after),
                _ => None,
            };
            let tick_after = self.conn.idle_tick_every();
            let wait = match (upkeep_after, tick_after) {
                (None, None) => return receiver.recv().ok(),
                (Some(a), Some(b)) => a.min(b),
                (Some(a), None) | (None, Some(a)) => a,
            };
            match receiver.recv_timeout(wait) {
                Ok(message) => return Some(message),
                Err(mpsc::RecvTimeoutError::Disconnected) => return None,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Err(e) = self.conn.idle_tick() {
                        tracing::warn!(error = %e, "keeping the database connection alive failed");
                    }
                    if upkeep_after.is_none() {
                        continue;
                    }
                    if let Err(e) = self.upkeep_step() {
                        // Not fatal: the data is intact, only space is not returned yet.
                        tracing::warn!(error = %e, "store upkeep failed; retrying after the next write");
                        self.idle_upkeep.due = false;
                    }
                }
            }
        }
    }

    fn serve_between(&mut self, request: Between) {
        match request {
            Between::Maintain(ack) => {
                let _ = ack.send(self.upkeep_step());
            }
            Between::Migrate(schema, ack) => {
                let migrated = crate::migrate::migrate(self.conn.migration(), &schema);
                let _ = ack.send(migrated.map(|migrated| {
                    self.catalog = Arc::new(migrated.catalog);
                    self.catalog.clone()
                }));
            }
        }
    }

    fn upkeep_step(&mut self) -> Result<MaintenanceReport, StoreError> {
        let report = self.conn.maintain(self.idle_upkeep.step_pages)?;
        if report.pages_released > 0 {
            tracing::debug!(
                pages_released = report.pages_released,
                free_pages_left = report.free_pages_left,
                "returned free pages to the file system"
            );
        }
        self.idle_upkeep.due = report.more_to_do();
        Ok(report)
    }

    /// When the previous batch answered many callers at once, their next jobs arrive a moment
    /// apart; starting the commit with only the first few would make the rest wait a whole extra
    /// fsync. So wait briefly (at most `gather_wait`) until about as many jobs as last time
    /// are here. Under light load (a batch of one) this never waits.
    fn gather(
        &self,
        receiver: &mpsc::Receiver<Message>,
        batch: &mut Vec<(Job, Done)>,
        between: &mut Vec<Between>,
    ) -> Option<mpsc::Sender<Result<(), StoreError>>> {
        let wanted = self.last_batch_len.min(self.max_batch);
        if batch.len() * 2 >= wanted {
            return None;
        }
        let deadline = Instant::now() + self.gather_wait;
        while batch.len() < wanted {
            let left = deadline.saturating_duration_since(Instant::now());
            match receiver.recv_timeout(left) {
                Ok(Message::Job(job, done)) => batch.push((job, done)),
                Ok(Message::Close(ack)) => return Some(ack),
                Ok(Message::Between(request)) => between.push(request),
                Err(_) => break,
            }
        }
        None
    }

    fn run_batch(&mut self, batch: Vec<(Job, Done)>) {
        let saved_ts = self.last_ts;
        let saved_clock = self.clock.last;
        let mut results: Vec<(Done, JobResult)> = Vec::with_capacity(batch.len());
        let outcome = self.run_jobs(batch, &mut results).and_then(|()| {
            let moved = self.last_ts != saved_ts || self.clock.last != saved_clock;
            let commits: Vec<CommitInfo> = results
                .iter()
                .filter_map(|(_, r)| match r {
                    JobResult::Committed(info) => Some(info.clone()),
                    _ => None,
                })
                .collect();
            self.conn.commit_batch(
                moved.then_some(BatchMeta {
                    last_ts: self.last_ts,
                    last_creation: self.clock.last,
                }),
                saved_ts,
                &commits,
            )
        });
        if let Err(e) = outcome {
            tracing::error!(error = %e, "batch failed; every job in it is reported failed");
            let resume = self.conn.rollback_batch(BatchMeta {
                last_ts: saved_ts,
                last_creation: saved_clock,
            });
            self.last_ts = resume.last_ts;
            self.clock.last = resume.last_creation;
            for (done, _) in results {
                done(Err(e.for_each_job()));
            }
            return;
        }
        self.shared
            .latest_ts
            .store(self.last_ts.0, AtomicOrdering::Release);
        if self.last_ts != saved_ts {
            // Something was written (perhaps deleted): look for space to return once idle.
            self.idle_upkeep.due = true;
        }
        let mut committed = Vec::new();
        for (_, result) in &results {
            if let JobResult::Committed(info) = result {
                self.shared.log.push(info.ts, info.writes.clone());
                committed.push(info.clone());
            }
        }
        for (done, result) in results {
            done(match result {
                JobResult::Committed(info) | JobResult::NothingWritten(info) => Ok(info),
                JobResult::Failed(e) => Err(e),
            });
        }
        if !committed.is_empty() {
            for hook in self.shared.hooks.read().iter() {
                hook(&committed);
            }
        }
    }

    /// Run each job in its own savepoint. An `Err` means the batch transaction itself is broken;
    /// `results` then holds every job's `done` (including ones not yet run) for the caller to fail.
    fn run_jobs(
        &mut self,
        batch: Vec<(Job, Done)>,
        results: &mut Vec<(Done, JobResult)>,
    ) -> Result<(), StoreError> {
        let mut jobs = batch.into_iter();
        if let Err(e) = self.conn.begin_batch() {
            results
                .extend(jobs.map(|(_, done)| (done, JobResult::Failed(StoreError::ShuttingDown))));
            return Err(e);
        }
        while let Some((job, done)) = jobs.next() {
            if let Err(e) = self.conn.begin_job() {
                results.push((done, JobResult::Failed(StoreError::ShuttingDown)));
                results.extend(
                    jobs.map(|(_, done)| (done, JobResult::Failed(StoreError::ShuttingDown))),
                );
                return Err(e);
            }
            let snapshot = self.last_ts;
            let mut txn = WriteTxn::new(&mut *self.conn, &self.catalog, &mut self.clock, snapshot);
            let ran = catch_unwind(AssertUnwindSafe(|| job(&mut txn)));
            let writes = txn.into_writes();
            let (keep, result) = match ran {
                Ok(Outcome::Commit) if writes.is_empty() => (
                    Keep::Release,
                    JobResult::Committed(CommitInfo {
                        ts: snapshot,
                        writes: Arc::new(writes),
                    }),
                ),
                Ok(Outcome::Commit) => {
                    let ts = Timestamp((self.last_ts.0 + 1).max(now_nanos()));
                    self.last_ts = ts;
                    (
                        Keep::Release,
                        JobResult::Committed(CommitInfo {
                            ts,
                            writes: Arc::new(writes),
                        }),
                    )
                }
                Ok(Outcome::Rollback) => (
                    Keep::RollBack,
                    JobResult::NothingWritten(CommitInfo {
                        ts: snapshot,
                        writes: Arc::new(WriteSet::default()),
                    }),
                ),
                Err(payload) => {
                    let message = panic_message(payload.as_ref());
                    tracing::error!(%message, "a mutation panicked; its writes are rolled back");
                    (
                        Keep::RollBack,
                        JobResult::Failed(StoreError::JobPanicked(message)),
                    )
                }
            };
            let read_only_commit =
                matches!(&result, JobResult::Committed(info) if info.writes.is_empty());
            // A read-only commit is reported but does not enter the log or hooks.
            let result = if read_only_commit {
                match result {
                    JobResult::Committed(info) => JobResult::NothingWritten(info),
                    other => other,
                }
            } else {
                result
            };
            results.push((done, result));
            if let Err(e) = self.conn.end_job(keep) {
                results.extend(
                    jobs.map(|(_, done)| (done, JobResult::Failed(StoreError::ShuttingDown))),
                );
                return Err(e);
            }
        }
        Ok(())
    }
}
