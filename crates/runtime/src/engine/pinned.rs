//! Pinned snapshots: `/api/query_ts` keeps a snapshot open for a while so `/api/query_at_ts`
//! can read at that timestamp.

use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use tickethub_knobs::{MAX_PINNED_SNAPSHOTS, PINNED_SNAPSHOT_TTL};
use tickethub_store::{DocReader, ReadTxn, Timestamp};

use super::Inner;
use crate::{FnError, Runtime};

pub(super) struct PinnedSnapshot {
    ts: Timestamp,
    txn: Arc<Mutex<ReadTxn>>,
    expires: Instant,
}

impl Runtime {
    /// Keep a snapshot open for a while (bounded count, expiring) and return its timestamp.
    pub async fn pin_snapshot(&self) -> Result<Timestamp, FnError> {
        let txn = super::call::read_snapshot(&self.inner.store).await?;
        let ts = txn.ts();
        let mut pins = self.inner.pins.lock();
        let now = Instant::now();
        pins.retain(|p| p.expires > now);
        if let Some(existing) = pins.iter_mut().find(|p| p.ts == ts) {
            existing.expires = now + *PINNED_SNAPSHOT_TTL;
            return Ok(ts);
        }
        if pins.len() >= *MAX_PINNED_SNAPSHOTS {
            pins.pop_front();
        }
        pins.push_back(PinnedSnapshot {
            ts,
            txn: Arc::new(Mutex::new(txn)),
            expires: now + *PINNED_SNAPSHOT_TTL,
        });
        Ok(ts)
    }

    pub(super) fn pinned(
        inner: &Inner,
        ts: Timestamp,
    ) -> Result<Option<Arc<Mutex<ReadTxn>>>, FnError> {
        let mut pins = inner.pins.lock();
        let now = Instant::now();
        pins.retain(|p| p.expires > now);
        Ok(pins.iter().find(|p| p.ts == ts).map(|p| p.txn.clone()))
    }
}
