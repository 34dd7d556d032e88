//! Opening SQLite connections (the pragmas each role needs) and the pool of reader connections.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::{Condvar, Mutex};
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use tickethub_knobs as knobs;

use crate::{StoreError, Timestamp};

/// What a connection is for; each role gets its own pragmas.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// The one connection that writes (and migrates).
    Writer,
    /// A pooled, read-only connection for snapshots.
    Reader,
}

/// How long a connection waits for a lock another connection holds before reporting busy.
pub(crate) const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Open `path` for `role`. `durable` turns on `synchronous=FULL` (an fsync per commit).
pub(crate) fn open_connection(
    path: &Path,
    role: Role,
    durable: bool,
) -> Result<Connection, StoreError> {
    let flags = match role {
        Role::Reader => OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        Role::Writer => {
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX
        }
    };
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    if role == Role::Writer {
        // First, before anything creates a table: a new database then tracks its free pages so
        // upkeep can return them (`maintenance.rs`). On an existing file this changes nothing
        // until the one-time conversion at start-up.
        conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // SQLite's default (1000 pages) is less than one big batch writes, which made nearly
        // every commit checkpoint on the writer thread.
        conn.pragma_update(None, "wal_autocheckpoint", *knobs::WAL_AUTOCHECKPOINT_PAGES)?;
        conn.pragma_update(None, "journal_size_limit", *knobs::JOURNAL_SIZE_LIMIT_BYTES)?;
    }
    conn.pragma_update(None, "synchronous", if durable { "FULL" } else { "NORMAL" })?;
    let cache_kib = match role {
        Role::Writer => *knobs::WRITER_CACHE_KIB,
        // Readers get most pages through the memory map, so a small cache suffices and resident
        // memory stays flat under load.
        Role::Reader => *knobs::READER_CACHE_KIB,
    };
    // A negative `cache_size` is in KiB.
    conn.pragma_update(None, "cache_size", -(cache_kib as i64))?;
    // Map the file: hot pages are read without a syscall and copy each, which keeps point
    // lookups in a big database close to their cost in a small one.
    conn.pragma_update(None, "mmap_size", *knobs::MMAP_BYTES)?;
    // Savepoints (one per job) copy the original of each page they change into the
    // sub-journal: keep it in memory. (The default `temp_store` runs ~20% fewer instructions
    // per job under callgrind, since it buffers in one 64 KiB chunk rather than 1 KiB ones, but
    // measured slower: freeing that chunk after every job trims the heap, and the next job
    // page-faults it back in.)
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    if role == Role::Reader {
        conn.pragma_update(None, "query_only", true)?;
    }
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// Run a parameterless statement through the connection's statement cache: the transaction
/// control statements run several times per batch, and parsing them each time showed up in
/// profiles of the writer thread.
pub(crate) fn run_cached(conn: &Connection, sql: &str) -> Result<(), rusqlite::Error> {
    conn.prepare_cached(sql)?.execute([])?;
    Ok(())
}

pub(crate) fn read_last_ts(conn: &Connection) -> Result<Timestamp, StoreError> {
    let ts: Option<i64> = conn
        .prepare_cached("SELECT value FROM meta WHERE key = 'last_ts'")?
        .query_row([], |r| r.get(0))
        .optional()?;
    Ok(Timestamp(ts.unwrap_or(0) as u64))
}

/// Reader connections. Their number bounds the snapshots open at once: [`ReaderPool::take`]
/// waits for one to come back, [`ReaderPool::try_take`] never waits.
pub(crate) struct ReaderPool {
    conns: Mutex<Vec<Connection>>,
    available: Condvar,
    closed: AtomicBool,
}

impl ReaderPool {
    pub(crate) fn new(conns: Vec<Connection>) -> ReaderPool {
        ReaderPool {
            conns: Mutex::new(conns),
            available: Condvar::new(),
            closed: AtomicBool::new(false),
        }
    }

    /// A connection, waiting (blocking the thread) while all are lent out.
    pub(crate) fn take(&self) -> Result<Connection, StoreError> {
        let mut conns = self.conns.lock();
        loop {
            if self.closed.load(Ordering::Acquire) {
                return Err(StoreError::ShuttingDown);
            }
            if let Some(c) = conns.pop() {
                return Ok(c);
            }
            self.available.wait(&mut conns);
        }
    }

    /// A connection if one is free right now.
    pub(crate) fn try_take(&self) -> Result<Option<Connection>, StoreError> {
        let mut conns = self.conns.lock();
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::ShuttingDown);
        }
        Ok(conns.pop())
    }

    pub(crate) fn put(&self, conn: Connection) {
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        self.conns.lock().push(conn);
        self.available.notify_one();
    }

    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.conns.lock().clear();
        self.available.notify_all();
    }
}
