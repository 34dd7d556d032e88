//! Retention of finished jobs: `_scheduled_functions` rows that ended (`success`, `failed`,
//! `canceled`) are deleted once they are older than [`JobRetention::keep_finished_for`], so the
//! table holds the recent history and the jobs still to run, not every job ever scheduled.
//!
//! The purge is a bounded range scan of the `by_completion` index (`completedTime` below the
//! cutoff; pending and running jobs have no `completedTime`, so they are outside every range it
//! reads), deleting at most [`JobRetention::purge_batch`] rows per transaction. It runs inside
//! the scheduler's passes, timed by the runtime's clock (so `advance_time` moves it too), every
//! [`JobRetention::purge_every`]; when a batch comes back full it is due again at once, so a
//! backlog drains in consecutive small transactions that other mutations interleave with.

use std::time::Duration;

use tickethub_knobs as knobs;
use tickethub_store::{Bound, IndexQuery, Order, StoreError, Visit};
use tickethub_value::{DocumentId, Value};

use super::{system_mutation, BY_COMPLETION, SCHEDULED_FUNCTIONS_TABLE};
use crate::db::WriteOps;
use crate::Runtime;

/// How long finished job rows are kept, and how the purge paces itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JobRetention {
    /// A finished job's row is deleted this long after its `completedTime`.
    /// Default: [`knobs::SCHEDULED_JOB_RETENTION`] (7 days, as Convex).
    pub keep_finished_for: Duration,
    /// Time between purges when the last one found less than a full batch.
    /// Default: [`knobs::SCHEDULED_JOB_PURGE_INTERVAL`].
    pub purge_every: Duration,
    /// Most rows one purge transaction deletes. At least 1.
    /// Default: [`knobs::SCHEDULED_JOB_PURGE_BATCH`].
    pub purge_batch: usize,
}

impl Default for JobRetention {
    fn default() -> Self {
        JobRetention {
            keep_finished_for: *knobs::SCHEDULED_JOB_RETENTION,
            purge_every: *knobs::SCHEDULED_JOB_PURGE_INTERVAL,
            purge_batch: *knobs::SCHEDULED_JOB_PURGE_BATCH,
        }
    }
}

/// What one purge transaction did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Purged {
    pub(super) deleted: usize,
    /// The batch was full: more rows past retention may be left.
    pub(super) more_left: bool,
}

/// The finished jobs that completed before `cutoff_ms`, oldest first.
fn finished_before(cutoff_ms: f64) -> IndexQuery {
    IndexQuery {
        table: SCHEDULED_FUNCTIONS_TABLE.to_string(),
        index: BY_COMPLETION.to_string(),
        eq: vec![],
        // A missing `completedTime` (pending, inProgress) sorts below every number, so this
        // lower bound leaves unfinished jobs out.
        lower: Some(Bound {
            field: "completedTime".to_string(),
            value: Value::Float64(f64::NEG_INFINITY),
            inclusive: true,
        }),
        upper: Some(Bound {
            field: "completedTime".to_string(),
            value: Value::Float64(cutoff_ms),
            inclusive: false,
        }),
        order: Order::Asc,
    }
}

/// Delete at most `batch` finished job rows that completed before `cutoff_ms`.
pub(super) fn purge_finished_before(
    txn: &mut dyn WriteOps,
    cutoff_ms: f64,
    batch: usize,
) -> Result<Purged, StoreError> {
    let batch = batch.max(1);
    let mut ids: Vec<DocumentId> = Vec::new();
    // Only the ids are kept: a batch of rows with large `args` never sits in memory at once.
    txn.scan(&finished_before(cutoff_ms), None, &mut |_, doc| {
        ids.push(doc.id);
        Ok(if ids.len() >= batch {
            Visit::Stop
        } else {
            Visit::Continue
        })
    })?;
    for id in &ids {
        txn.delete_doc(*id)?;
    }
    Ok(Purged {
        deleted: ids.len(),
        more_left: ids.len() >= batch,
    })
}

/// When the next purge is due, as [`purge_if_due`] left it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct NextPurge {
    /// Runtime clock, Unix ms.
    pub(super) at_ms: f64,
    /// The last batch was full: the next one is due at once.
    pub(super) backlog: bool,
}

/// Run one purge if it is due at `now_ms`, and say when the next one is due.
pub(super) async fn purge_if_due(rt: &Runtime, now_ms: f64) -> NextPurge {
    let sched = &rt.inner.sched;
    if let Some(due) = *sched.next_purge_ms.lock() {
        if due > now_ms {
            return NextPurge {
                at_ms: due,
                backlog: false,
            };
        }
    }
    let retention = rt.inner.config.scheduled_jobs;
    let cutoff = now_ms - retention.keep_finished_for.as_secs_f64() * 1000.0;
    let interval_ms = retention.purge_every.as_secs_f64() * 1000.0;
    let batch = retention.purge_batch;
    let purged = system_mutation(rt, move |txn| {
        Ok(purge_finished_before(txn, cutoff, batch)?)
    })
    .await;
    let (next, backlog) = match purged {
        Ok(purged) => {
            if purged.deleted > 0 {
                tracing::info!(
                    deleted = purged.deleted,
                    more_left = purged.more_left,
                    "purged finished scheduled jobs past their retention"
                );
            }
            if purged.more_left {
                (now_ms, true)
            } else {
                (now_ms + interval_ms, false)
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "purging finished scheduled jobs failed; retrying later");
            (now_ms + interval_ms, false)
        }
    };
    *sched.next_purge_ms.lock() = Some(next);
    NextPurge {
        at_ms: next,
        backlog,
    }
}
