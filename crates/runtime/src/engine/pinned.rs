//! Pinned snapshots: `/api/query_ts` keeps a snapshot open for a while so `/api/query_at_ts`
//! can read at that timestamp.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tickethub_store::{DocReader, ReadTxn, Timestamp};

use super::Inner;
use crate::{FnError, Runtime};

/// Most snapshots kept open by [`Runtime::pin_snapshot`]. Each holds one of the store's reader
/// connections (4 by default) for up to [`PINNED_SNAPSHOT_TTL`], so this stays well below the
/// pool size: live queries must keep readers to run on.
pub const MAX_PINNED_SNAPSHOTS: usize = 2;
/// How long a pinned snapshot stays available.
pub const PINNED_SNAPSHOT_TTL: Duration = Duration::from_secs(30);

pub(super) struct PinnedSnapshot {
    ts: Timestamp,
    txn: Arc<Mutex<ReadTxn>>,
    expires: Instant,
}

impl Runtime {
    /// Keep a snapshot open for a while (bounded count, expiring) and return its timestamp.
    pub fn pin_snapshot(&self) -> Result<Timestamp, FnError> {
        let txn = self.inner.store.read()?;
        let ts = txn.ts();
        let mut pins = self.inner.pins.lock();
        let now = Instant::now();
        pins.retain(|p| p.expires > now);
        if let Some(existing) = pins.iter_mut().find(|p| p.ts == ts) {
            existing.expires = now + PINNED_SNAPSHOT_TTL;
            return Ok(ts);
        }
        if pins.len() >= MAX_PINNED_SNAPSHOTS {
            pins.pop_front();
        }
        pins.push_back(PinnedSnapshot {
            ts,
            txn: Arc::new(Mutex::new(txn)),
            expires: now + PINNED_SNAPSHOT_TTL,
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
