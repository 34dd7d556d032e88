//! Giving disk space back: deleted rows free pages inside the file, and the WAL keeps the pages of
//! recent commits. Without upkeep both stay on disk for good: SQLite reuses free pages for new
//! rows but never shrinks the file, and a WAL only shrinks when a checkpoint truncates it.
//!
//! - The database uses `auto_vacuum=INCREMENTAL`: free pages are tracked so that
//!   `PRAGMA incremental_vacuum(N)` can move up to N of them to the end of the file and cut them
//!   off. A new database gets it before its first table; an older one is converted once at
//!   start-up with a `VACUUM` (which rewrites the file, so it is logged).
//! - Upkeep runs on the writer thread, the only connection that writes, when the writer has had
//!   nothing to do for [`knobs::STORE_IDLE_MAINTENANCE_AFTER`] after writing something: one step
//!   of at most [`knobs::INCREMENTAL_VACUUM_STEP_PAGES`] pages, then `wal_checkpoint(TRUNCATE)`,
//!   which also makes the shrunken file real (the vacuum's own changes go through the WAL).
//! - The checkpoint never waits for readers: a reader on an older snapshot makes it report
//!   "busy" and the next idle period tries again.

use rusqlite::Connection;
#[cfg(doc)]
use tickethub_knobs as knobs;

use crate::StoreError;

/// SQLite's `PRAGMA auto_vacuum` values.
const AUTO_VACUUM_INCREMENTAL: i64 = 2;

/// What [`ensure_incremental_vacuum`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AutoVacuumMode {
    /// The database already tracked free pages for incremental vacuum.
    AlreadyIncremental,
    /// An older database was rewritten once with `VACUUM` to enable it.
    Converted,
}

/// How a WAL checkpoint ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Checkpoint {
    /// Every WAL frame is in the database file and the WAL was truncated to zero bytes.
    Truncated,
    /// A reader still uses an older snapshot; the WAL is kept and upkeep tries again later.
    Busy,
}

/// What one upkeep step did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaintenanceReport {
    /// Free pages given back to the file system by this step.
    pub pages_released: u64,
    /// Free pages still inside the file (a later step returns them).
    pub free_pages_left: u64,
    pub checkpoint: Checkpoint,
}

impl MaintenanceReport {
    /// Whether another step has work to do (free pages left, or a WAL not yet truncated).
    pub fn more_to_do(&self) -> bool {
        self.free_pages_left > 0 || self.checkpoint == Checkpoint::Busy
    }
}

fn pragma_i64(conn: &Connection, name: &str) -> Result<i64, StoreError> {
    Ok(conn.pragma_query_value(None, name, |row| row.get(0))?)
}

/// Make sure the database can return free pages. Must run on the writer connection before any
/// reader opens: `VACUUM` needs the database to itself.
pub(crate) fn ensure_incremental_vacuum(conn: &Connection) -> Result<AutoVacuumMode, StoreError> {
    if pragma_i64(conn, "auto_vacuum")? == AUTO_VACUUM_INCREMENTAL {
        return Ok(AutoVacuumMode::AlreadyIncremental);
    }
    tracing::warn!(
        "converting the database to incremental auto-vacuum: a one-time VACUUM rewrites the file \
         (it needs free disk space about the database's size, and takes a while for a big one)"
    );
    conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
    conn.execute_batch("VACUUM")?;
    let mode = pragma_i64(conn, "auto_vacuum")?;
    if mode != AUTO_VACUUM_INCREMENTAL {
        return Err(StoreError::storage(format!(
            "the database kept auto_vacuum={mode} after VACUUM"
        )));
    }
    Ok(AutoVacuumMode::Converted)
}

/// One upkeep step: return up to `step_pages` free pages, then checkpoint and truncate the WAL
/// without waiting for readers.
pub(crate) fn maintain(
    conn: &Connection,
    step_pages: u64,
) -> Result<MaintenanceReport, StoreError> {
    let free_before = pragma_i64(conn, "freelist_count")?.max(0) as u64;
    if free_before > 0 {
        // `incremental_vacuum(0)` would mean "all of them": never ask for 0. The pragma yields
        // one row per page it frees, so it must be stepped to the end (one step frees one page).
        let mut vacuum =
            conn.prepare(&format!("PRAGMA incremental_vacuum({})", step_pages.max(1)))?;
        let mut freed = vacuum.query([])?;
        while freed.next()?.is_some() {}
    }
    let free_after = pragma_i64(conn, "freelist_count")?.max(0) as u64;

    // The writer's busy timeout would make TRUNCATE wait for readers on old snapshots (a pinned
    // `consistentQuery` snapshot may live for seconds) while mutations queue up. Not waiting
    // costs nothing: the next idle period tries again.
    conn.busy_timeout(std::time::Duration::ZERO)?;
    let checkpointed = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| {
        row.get::<_, i64>(0)
    });
    conn.busy_timeout(crate::connection::BUSY_TIMEOUT)?;
    let checkpoint = match checkpointed {
        Ok(0) => Checkpoint::Truncated,
        Ok(_) => Checkpoint::Busy,
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.code == rusqlite::ErrorCode::DatabaseBusy =>
        {
            Checkpoint::Busy
        }
        Err(e) => return Err(e.into()),
    };
    Ok(MaintenanceReport {
        pages_released: free_before.saturating_sub(free_after),
        free_pages_left: free_after,
        checkpoint,
    })
}
