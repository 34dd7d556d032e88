//! What operators and the dashboard see of a running deployment: the function log (every call,
//! in a bounded ring) and the health figures (counters on the call and commit paths, sampled
//! every few seconds into a bounded ring).
//!
//! Cost when nobody reads: one entry moved into the ring under a short lock (the path is the
//! registry's shared `Arc<str>`, the request id is moved, not copied), and a few relaxed atomic
//! increments. Waking long polls costs nothing while none waits. Readers copy entries out.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use tokio::sync::{watch, Notify};

use crate::{FnError, FunctionKind, Timestamp, Value};

/// How a call ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallOutcome {
    Success,
    Failure,
}

impl CallOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            CallOutcome::Success => "success",
            CallOutcome::Failure => "failure",
        }
    }
}

/// One function call as the log keeps it.
#[derive(Clone, Debug)]
pub struct FunctionLogEntry {
    /// Increasing from 1; a reader's cursor is the last id it saw.
    pub id: u64,
    /// When the call finished, in ms since the epoch (the runtime's clock).
    pub timestamp_ms: f64,
    /// The canonical path (`module:function`), or `METHOD /path` for an HTTP action.
    pub path: Arc<str>,
    /// `None` when the path named no function.
    pub kind: Option<FunctionKind>,
    pub duration_ms: f64,
    pub outcome: CallOutcome,
    /// `[LEVEL] 'message'` lines, as the call captured them.
    pub log_lines: Vec<String>,
    /// The error's message (internal errors are summarised, as clients see them).
    pub error: Option<String>,
    /// A ConvexError's data.
    pub error_data: Option<Value>,
    /// The client request's id; `None` for scheduled jobs and crons.
    pub request_id: Option<String>,
}

/// A finished call, handed to [`Observer::record_call`].
pub(crate) struct FinishedCall<'a> {
    pub path: Arc<str>,
    pub kind: Option<FunctionKind>,
    pub started: Instant,
    pub error: Option<&'a FnError>,
    pub log_lines: Vec<String>,
    pub request_id: Option<String>,
}

/// The bounded ring of recent calls (`FUNCTION_LOG_CAPACITY`).
pub struct FunctionLog {
    ring: Mutex<Ring>,
    /// The newest entry's id (0 before the first call).
    newest: AtomicU64,
    /// Long polls waiting right now; a push notifies only when there is one.
    waiters: AtomicUsize,
    pushed: Notify,
}

struct Ring {
    entries: VecDeque<FunctionLogEntry>,
    capacity: usize,
    next_id: u64,
}

impl FunctionLog {
    pub fn new(capacity: usize) -> FunctionLog {
        FunctionLog {
            ring: Mutex::new(Ring {
                entries: VecDeque::new(),
                capacity: capacity.max(1),
                next_id: 1,
            }),
            newest: AtomicU64::new(0),
            waiters: AtomicUsize::new(0),
            pushed: Notify::new(),
        }
    }

    fn push(&self, mut entry: FunctionLogEntry) {
        let dropped = {
            let mut ring = self.ring.lock();
            let id = ring.next_id;
            ring.next_id += 1;
            entry.id = id;
            let dropped = if ring.entries.len() == ring.capacity {
                ring.entries.pop_front()
            } else {
                None
            };
            ring.entries.push_back(entry);
            // SeqCst pairs with `wait_after`: either this sees its waiter count, or it sees this id.
            self.newest.store(id, Ordering::SeqCst);
            dropped
        };
        drop(dropped); // freed outside the lock
        if self.waiters.load(Ordering::SeqCst) > 0 {
            self.pushed.notify_waiters();
        }
    }

    /// The id of the newest entry (0 before the first call).
    pub fn newest_id(&self) -> u64 {
        self.newest.load(Ordering::SeqCst)
    }

    /// Up to `max` entries with an id above `cursor`, oldest first. Entries dropped from the ring
    /// are simply missing (ids jump).
    pub fn after(&self, cursor: u64, max: usize) -> Vec<FunctionLogEntry> {
        let ring = self.ring.lock();
        let first = ring.entries.partition_point(|e| e.id <= cursor);
        ring.entries.range(first..).take(max).cloned().collect()
    }

    /// Wait until an entry newer than `cursor` exists, or `timeout` passes.
    pub async fn wait_after(&self, cursor: u64, timeout: Duration) {
        struct Waiting<'a>(&'a AtomicUsize);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        self.waiters.fetch_add(1, Ordering::SeqCst);
        let _waiting = Waiting(&self.waiters);
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Created before the check, so a push after the check wakes it.
            let pushed = self.pushed.notified();
            if self.newest.load(Ordering::SeqCst) > cursor {
                return;
            }
            if tokio::time::timeout_at(deadline, pushed).await.is_err() {
                return;
            }
        }
    }
}

/// Duration buckets (upper bounds, µs): 10 µs × √2ᵏ, up to about 3 minutes.
const BUCKETS: usize = 50;

fn bucket_bound_us(k: usize) -> f64 {
    10.0 * 2f64.powf(k as f64 / 2.0)
}

fn bucket_of(duration: Duration) -> usize {
    let us = duration.as_secs_f64() * 1e6;
    if us <= 10.0 {
        return 0;
    }
    ((2.0 * (us / 10.0).log2()).ceil() as usize).min(BUCKETS - 1)
}

/// The kinds the figures are kept by, in a fixed order.
pub const KINDS: [FunctionKind; 4] = [
    FunctionKind::Query,
    FunctionKind::Mutation,
    FunctionKind::Action,
    FunctionKind::HttpAction,
];

fn kind_index(kind: FunctionKind) -> usize {
    match kind {
        FunctionKind::Query => 0,
        FunctionKind::Mutation => 1,
        FunctionKind::Action => 2,
        FunctionKind::HttpAction => 3,
    }
}

struct KindCounters {
    calls: AtomicU64,
    failures: AtomicU64,
    buckets: [AtomicU64; BUCKETS],
}

#[derive(Clone, Copy)]
struct KindSnapshot {
    calls: u64,
    buckets: [u64; BUCKETS],
}

impl Default for KindCounters {
    fn default() -> Self {
        KindCounters {
            calls: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl Default for KindSnapshot {
    fn default() -> Self {
        KindSnapshot {
            calls: 0,
            buckets: [0; BUCKETS],
        }
    }
}

impl KindCounters {
    fn snapshot(&self) -> KindSnapshot {
        let mut buckets = [0; BUCKETS];
        for (out, b) in buckets.iter_mut().zip(&self.buckets) {
            *out = b.load(Ordering::Relaxed);
        }
        KindSnapshot {
            calls: self.calls.load(Ordering::Relaxed),
            buckets,
        }
    }
}

/// A figure read from outside the runtime (open connections, subscriptions), sampled with the
/// rest. Registered by the layer that owns it.
pub type GaugeFn = Arc<dyn Fn() -> f64 + Send + Sync>;

/// One health sample: rates over the interval before `unix_ms`, levels at `unix_ms`.
#[derive(Clone, Debug)]
pub struct HealthSample {
    pub unix_ms: f64,
    /// Per kind, in [`KINDS`] order.
    pub calls_per_sec: [f64; 4],
    pub p50_ms: [f64; 4],
    pub p99_ms: [f64; 4],
    pub commits_per_sec: f64,
    /// Mean commits per group-commit batch over the interval (0 without commits).
    pub batch_size: f64,
    pub db_bytes: f64,
    pub rss_bytes: f64,
    /// The registered gauges, by name, in registration order.
    pub gauges: Vec<(&'static str, f64)>,
}

/// Totals since start, for `/metrics` counters.
#[derive(Clone, Debug)]
pub struct Totals {
    /// Per kind, in [`KINDS`] order.
    pub calls: [u64; 4],
    pub failures: [u64; 4],
    pub commits: u64,
    pub batches: u64,
}

struct Previous {
    at: Instant,
    kinds: [KindSnapshot; 4],
    commits: u64,
    batches: u64,
}

/// The function log plus the health counters and their sampled ring.
pub struct Observer {
    pub log: FunctionLog,
    kinds: [KindCounters; 4],
    commits: AtomicU64,
    batches: AtomicU64,
    /// The newest durable commit's timestamp; "what changed" long polls wait on it.
    last_commit: watch::Sender<Timestamp>,
    gauges: RwLock<Vec<(&'static str, GaugeFn)>>,
    samples: Mutex<VecDeque<Arc<HealthSample>>>,
    samples_kept: usize,
    previous: Mutex<Option<Previous>>,
}

impl Observer {
    pub(crate) fn new(log_capacity: usize, samples_kept: usize) -> Observer {
        Observer {
            log: FunctionLog::new(log_capacity),
            kinds: Default::default(),
            commits: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            last_commit: watch::Sender::new(Timestamp(0)),
            gauges: RwLock::new(Vec::new()),
            samples: Mutex::new(VecDeque::new()),
            samples_kept: samples_kept.max(1),
            previous: Mutex::new(None),
        }
    }

    /// Count a call and append it to the log. The entry is built before the ring's lock.
    pub(crate) fn record_call(&self, call: FinishedCall<'_>, now_ms: f64) {
        let elapsed = call.started.elapsed();
        if let Some(kind) = call.kind {
            let counters = &self.kinds[kind_index(kind)];
            counters.calls.fetch_add(1, Ordering::Relaxed);
            if call.error.is_some() {
                counters.failures.fetch_add(1, Ordering::Relaxed);
            }
            counters.buckets[bucket_of(elapsed)].fetch_add(1, Ordering::Relaxed);
        }
        let (error, error_data) = match call.error {
            None => (None, None),
            Some(FnError::Convex { message, data }) => (Some(message.clone()), Some(data.clone())),
            // Internal details stay in the server's own log, as for clients.
            Some(e @ FnError::Internal(_)) => (Some(format!("Server Error ({})", e.code())), None),
            Some(e) => (Some(e.to_string()), None),
        };
        self.log.push(FunctionLogEntry {
            id: 0,
            timestamp_ms: now_ms,
            path: call.path,
            kind: call.kind,
            duration_ms: elapsed.as_secs_f64() * 1000.0,
            outcome: if error.is_some() {
                CallOutcome::Failure
            } else {
                CallOutcome::Success
            },
            log_lines: call.log_lines,
            error,
            error_data,
            request_id: call.request_id,
        });
    }

    /// Count one durable batch of `commits` commits, the last at `ts` (the store's commit hook,
    /// on the writer thread).
    pub(crate) fn record_batch(&self, commits: usize, ts: Timestamp) {
        self.commits.fetch_add(commits as u64, Ordering::Relaxed);
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.last_commit.send_replace(ts);
    }

    /// Wait until a commit after `since` is durable, or `timeout` passes; the newest commit's
    /// timestamp seen (0 if none since start).
    pub async fn wait_commit_after(&self, since: Timestamp, timeout: Duration) -> Timestamp {
        let mut last = self.last_commit.subscribe();
        let _ = tokio::time::timeout(timeout, last.wait_for(|ts| *ts > since)).await;
        let ts = *last.borrow();
        ts
    }

    /// Sample `name` with the other figures from now on.
    pub fn register_gauge(&self, name: &'static str, gauge: GaugeFn) {
        let mut gauges = self.gauges.write();
        gauges.retain(|(n, _)| *n != name);
        gauges.push((name, gauge));
    }

    pub fn totals(&self) -> Totals {
        let mut calls = [0; 4];
        let mut failures = [0; 4];
        for (i, k) in self.kinds.iter().enumerate() {
            calls[i] = k.calls.load(Ordering::Relaxed);
            failures[i] = k.failures.load(Ordering::Relaxed);
        }
        Totals {
            calls,
            failures,
            commits: self.commits.load(Ordering::Relaxed),
            batches: self.batches.load(Ordering::Relaxed),
        }
    }

    /// The samples kept, oldest first.
    pub fn samples(&self) -> Vec<Arc<HealthSample>> {
        self.samples.lock().iter().cloned().collect()
    }

    /// Take one sample now (the sampler task calls it every `HEALTH_SAMPLE_INTERVAL`).
    pub(crate) fn sample(&self, unix_ms: f64, db_bytes: f64) -> Arc<HealthSample> {
        let now = Instant::now();
        let kinds: [KindSnapshot; 4] = std::array::from_fn(|i| self.kinds[i].snapshot());
        let commits = self.commits.load(Ordering::Relaxed);
        let batches = self.batches.load(Ordering::Relaxed);
        let gauges: Vec<(&'static str, f64)> =
            self.gauges.read().iter().map(|(n, g)| (*n, g())).collect();
        let previous = self.previous.lock().replace(Previous {
            at: now,
            kinds,
            commits,
            batches,
        });
        let (base, secs) = match previous {
            Some(p) => {
                let secs = now.duration_since(p.at).as_secs_f64().max(1e-3);
                (p, secs)
            }
            None => (
                Previous {
                    at: now,
                    kinds: [KindSnapshot::default(); 4],
                    commits,
                    batches,
                },
                1.0,
            ),
        };
        let mut sample = HealthSample {
            unix_ms,
            calls_per_sec: [0.0; 4],
            p50_ms: [0.0; 4],
            p99_ms: [0.0; 4],
            commits_per_sec: (commits - base.commits) as f64 / secs,
            batch_size: match batches - base.batches {
                0 => 0.0,
                n => (commits - base.commits) as f64 / n as f64,
            },
            db_bytes,
            rss_bytes: rss_bytes(),
            gauges,
        };
        for (i, (now, before)) in kinds.iter().zip(&base.kinds).enumerate() {
            sample.calls_per_sec[i] = (now.calls - before.calls) as f64 / secs;
            let delta: [u64; BUCKETS] = std::array::from_fn(|b| now.buckets[b] - before.buckets[b]);
            sample.p50_ms[i] = quantile_ms(&delta, 0.50);
            sample.p99_ms[i] = quantile_ms(&delta, 0.99);
        }
        let sample = Arc::new(sample);
        let mut samples = self.samples.lock();
        if samples.len() == self.samples_kept {
            samples.pop_front();
        }
        samples.push_back(sample.clone());
        sample
    }
}

/// The upper bound (ms) of the bucket holding quantile `q`; 0 without observations.
fn quantile_ms(buckets: &[u64; BUCKETS], q: f64) -> f64 {
    let total: u64 = buckets.iter().sum();
    if total == 0 {
        return 0.0;
    }
    let rank = ((total as f64) * q).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (k, n) in buckets.iter().enumerate() {
        seen += n;
        if seen >= rank {
            return bucket_bound_us(k) / 1000.0;
        }
    }
    bucket_bound_us(BUCKETS - 1) / 1000.0
}

/// Resident memory of this process (Linux `/proc/self/statm`; 0 elsewhere).
fn rss_bytes() -> f64 {
    let Ok(statm) = std::fs::read_to_string("/proc/self/statm") else {
        return 0.0;
    };
    let pages: f64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0.0);
    // Linux pages are 4 KiB on every platform we ship for.
    pages * 4096.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_and_quantiles() {
        assert_eq!(bucket_of(Duration::from_micros(5)), 0);
        assert!(bucket_bound_us(bucket_of(Duration::from_millis(3))) >= 3000.0);
        let mut b = [0u64; BUCKETS];
        b[bucket_of(Duration::from_millis(1))] = 99;
        b[bucket_of(Duration::from_millis(100))] = 1;
        assert!(quantile_ms(&b, 0.5) >= 1.0 && quantile_ms(&b, 0.5) < 1.5);
        assert!(quantile_ms(&b, 0.99) < 1.5);
        assert!(quantile_ms(&b, 1.0) >= 100.0);
    }

    #[test]
    fn the_ring_keeps_the_newest() {
        let log = FunctionLog::new(2);
        for _ in 0..3 {
            log.push(FunctionLogEntry {
                id: 0,
                timestamp_ms: 0.0,
                path: "a:b".into(),
                kind: None,
                duration_ms: 0.0,
                outcome: CallOutcome::Success,
                log_lines: vec![],
                error: None,
                error_data: None,
                request_id: None,
            });
        }
        let ids: Vec<u64> = log.after(0, 10).iter().map(|e| e.id).collect();
        assert_eq!(ids, vec![2, 3]);
        assert_eq!(log.after(2, 10).len(), 1);
        assert_eq!(log.newest_id(), 3);
    }

    fn entry() -> FunctionLogEntry {
        FunctionLogEntry {
            id: 0,
            timestamp_ms: 0.0,
            path: "a:b".into(),
            kind: None,
            duration_ms: 0.0,
            outcome: CallOutcome::Success,
            log_lines: vec![],
            error: None,
            error_data: None,
            request_id: None,
        }
    }

    /// A push wakes a waiting long poll at once (virtual time does not reach its timeout), and
    /// one that finds a newer entry already there does not wait at all.
    #[tokio::test(start_paused = true)]
    async fn a_push_wakes_a_waiting_long_poll() {
        let log = Arc::new(FunctionLog::new(4));
        let hour = Duration::from_secs(3600);
        let start = tokio::time::Instant::now();
        let waiter = tokio::spawn({
            let log = log.clone();
            async move { log.wait_after(0, hour).await }
        });
        while log.waiters.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        log.push(entry());
        waiter.await.unwrap();
        assert!(start.elapsed() < hour, "the waiter slept until its timeout");
        assert_eq!(log.waiters.load(Ordering::SeqCst), 0);

        log.wait_after(0, hour).await;
        assert!(start.elapsed() < hour);
    }
}
