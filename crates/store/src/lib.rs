//! The document store on embedded SQLite. The only crate that speaks SQL.
//!
//! - [`schema`]: `schema.toml` parsing, table and index definitions.
//! - [`store`]: [`Store`], the facade: open, reader snapshots, submitting jobs to the writer.
//! - `connection` (private): opening SQLite connections with their pragmas; the reader pool.
//! - `migrate` (private): creating and migrating the database to a schema (backfill, validation).
//! - `writer` (private): the writer thread with group commit, and its idle upkeep.
//! - [`maintenance`]: giving disk space back (incremental vacuum, WAL truncation).
//! - [`lock`]: [`DataDirLock`], one process per data directory.
//! - [`txn`]: [`ReadTxn`] (one consistent snapshot) and [`WriteTxn`] (runs on the writer thread).
//! - [`query`]: [`IndexQuery`], index range validation and key-range computation.
//! - [`log`]: the commit log: which index key ranges each commit touched, for live queries.
//! - [`datafile`]: checking a database file before it is opened (damaged, foreign, newer format).
//! - [`backup`]: online backup of a live database through SQLite's backup API.
//! - [`bulk`]: bulk transactions for snapshot import/export (ids kept, tables cleared, streaming).
//! - `catalog` (private): table numbers and index ids joined with the schema; immutable after open.
//! - `codec` (private): the compact binary encoding of document bodies on disk.
//!
//! Design: one writer connection on its own thread runs every mutation closure one after another
//! (serializable by construction, no OCC retries); each runs inside its own SAVEPOINT so a failure
//! rolls back alone; a batch of queued mutations shares one COMMIT (one fsync), and only then are
//! their `done` callbacks told. Readers use a pool of WAL connections, each read in one transaction.

mod backend;
pub mod backup;
pub mod bulk;
mod catalog;
pub mod cluster;
mod codec;
mod connection;
pub mod datafile;
pub mod lock;
pub mod log;
pub mod maintenance;
mod migrate;
pub mod pg_connect;
mod postgres;
pub mod query;
pub mod schema;
mod sqlite;
pub mod store;
pub mod txn;
mod writer;

pub use backup::{
    integrity_problems, BackupError, BackupPace, BackupProgress, BackupSnapshot, BackupSummary,
};
pub use bulk::{BulkError, TableEntry};
pub use cluster::{ClusterOptions, NodeRole};
pub use datafile::{
    check_database_file, DataFileError, DataFileState, APPLICATION_ID, FORMAT_VERSION,
};
pub use lock::{DataDirLock, DataDirLockError};
pub use log::{CommitLog, IndexId, ReadRange, ReadSet, WriteSet, WrittenKey};
pub use maintenance::{Checkpoint, MaintenanceReport};
pub use pg_connect::{PgConnectOptions, SslMode};
pub use query::{Bound, IndexQuery, Order, Page, PageRequest, MAX_PAGE_ITEMS};
pub use schema::{IndexDef, Schema, SchemaError, TableDef};
pub use store::{
    Backend, CommitHook, CommitInfo, Done, Job, Outcome, PostgresLocation, Store, StoreLocation,
    StoreOptions, DB_FILE,
};
pub use txn::{caps, DocReader, Document, ReadTxn, ScanVisitor, SnapshotQuery, Visit, WriteTxn};
pub use writer::panic_message;

use tickethub_value::{DocumentId, IdError, JsonError, LimitError, ValidationError};

/// A commit timestamp: nanoseconds since the Unix epoch, strictly increasing, also across restarts,
/// always below 2^63.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub u64);

/// Errors a store operation can give. Each has a stable code (see [`StoreError::code`]).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Id(#[from] IdError),
    #[error("Table \"{0}\" does not exist.")]
    UnknownTable(String),
    #[error("Index {table}.{index} not found.")]
    UnknownIndex { table: String, index: String },
    /// e.g. a bound on a field that does not follow the eq prefix.
    #[error("{0}")]
    InvalidIndexRange(String),
    #[error("Found ID \"{id}\" from table `{actual}`, which does not match the table name in validator `v.id(\"{expected}\")`.")]
    WrongTable {
        id: String,
        expected: String,
        actual: String,
    },
    #[error("Update on nonexistent document ID {0}")]
    PatchMissing(DocumentId),
    #[error("Replace on nonexistent document ID {0}")]
    ReplaceMissing(DocumentId),
    #[error("Delete on nonexistent document ID {0}")]
    DeleteMissing(DocumentId),
    #[error("Failed to insert or update a document in table \"{table}\" because it does not match the schema: {reason}")]
    SchemaMismatch {
        table: String,
        reason: ValidationError,
    },
    #[error(transparent)]
    Limit(#[from] LimitError),
    #[error("Transaction limit exceeded: {0}")]
    TransactionLimit(String),
    #[error(transparent)]
    Schema(#[from] SchemaError),
    #[error("Invalid pagination cursor")]
    InvalidCursor,
    /// `numItems` outside 1..=32000.
    #[error("Invalid pagination options: {0}")]
    InvalidPagination(String),
    /// A mutation job panicked; its writes were rolled back. Internal: the message is for logs.
    #[error("a mutation panicked: {0}")]
    JobPanicked(String),
    #[error(transparent)]
    Json(#[from] JsonError),
    /// SQLite or I/O failure. The message is for logs only; never send it to clients.
    #[error("storage failure: {0}")]
    Storage(StorageFailure),
    /// The disk holding the database is full (`SQLITE_FULL`, or an I/O error with `ENOSPC`):
    /// writes fail until space is freed. The text is safe to show; the detail is for logs.
    #[error("the disk holding the database is full; writes fail until space is freed")]
    StorageFull(StorageFailure),
    /// The writer's queue is full: the mutation was refused at once rather than queued without
    /// bound. Retrying shortly is safe (nothing was written).
    #[error("the server is overloaded: {capacity} mutations are already queued; retry shortly")]
    Overloaded { capacity: usize },
    #[error("the store is shutting down")]
    ShuttingDown,
    /// The database file is damaged, not SQLite, another application's, or of a newer format.
    /// Only at open; the message names the file.
    #[error(transparent)]
    DataFile(#[from] DataFileError),
    /// Another process holds the writer lease of this Postgres database and schema: two writers
    /// would corrupt it, so this one refuses to start.
    #[error("another tickethub ({holder}) is the writer of this database and schema; only one may write at a time. Stop it first: its lock goes as soon as its connection closes")]
    DatabaseInUse { holder: String },
    /// This process lost the writer lease (another one took it over): it can no longer commit.
    /// Nothing of the refused batch was written.
    #[error("this server is no longer the database's writer (another tickethub took the lease over); nothing was written")]
    Fenced,
    /// The database server cannot be reached (down, restarting, network). Retrying later is
    /// safe: nothing of a refused batch was written. The detail is for logs.
    #[error("the database is unavailable; retry shortly")]
    DatabaseUnavailable(StorageFailure),
    /// Cluster mode: this node is not the leader and no leader can be reached right now (a
    /// failover is under way). Nothing was written; retrying shortly is safe.
    #[error("no cluster leader is reachable right now (a failover may be under way); nothing was written, retry shortly")]
    LeaderUnavailable,
    /// The database URL's settings cannot work (an unknown `sslmode`, a root-certificate file
    /// that holds none): retrying will not help, the URL must change.
    #[error("the Postgres connection settings are not usable: {0}")]
    DatabaseConfig(String),
}

/// A storage failure as SQLite (or the OS) reported it, with its codes kept so that a full disk
/// can be told from a busy or corrupt database.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{message}")]
pub struct StorageFailure {
    /// SQLite's primary result code; `None` for failures that did not come from SQLite (an OS
    /// call, a document that does not decode).
    pub code: Option<rusqlite::ErrorCode>,
    /// SQLite's extended result code (e.g. `SQLITE_IOERR_FSYNC`), when there is one.
    pub extended_code: Option<i32>,
    pub message: String,
}

impl StorageFailure {
    /// A failure that did not come from SQLite.
    pub fn other(message: impl Into<String>) -> StorageFailure {
        StorageFailure {
            code: None,
            extended_code: None,
            message: message.into(),
        }
    }
}

impl StoreError {
    /// Stable machine code, ScreamingCamelCase.
    pub fn code(&self) -> &'static str {
        match self {
            StoreError::Id(_) => "InvalidId",
            StoreError::UnknownTable(_) => "TableNotFound",
            StoreError::UnknownIndex { .. } => "IndexNotFound",
            StoreError::InvalidIndexRange(_) => "InvalidIndexRange",
            StoreError::WrongTable { .. } => "InvalidId",
            StoreError::PatchMissing(_)
            | StoreError::ReplaceMissing(_)
            | StoreError::DeleteMissing(_) => "NonexistentDocument",
            StoreError::SchemaMismatch { .. } => "SchemaValidationError",
            StoreError::Limit(_) => "ValueLimitExceeded",
            StoreError::TransactionLimit(_) => "TransactionLimitExceeded",
            StoreError::Schema(_) => "InvalidSchema",
            StoreError::InvalidCursor => "InvalidCursor",
            StoreError::InvalidPagination(_) => "InvalidPagination",
            StoreError::JobPanicked(_) => "InternalError",
            StoreError::Json(_) => "InvalidValue",
            StoreError::Storage(_) => "StorageError",
            StoreError::StorageFull(_) => "StorageFull",
            StoreError::Overloaded { .. } => "ServerOverloaded",
            StoreError::ShuttingDown => "ShuttingDown",
            StoreError::DataFile(_) => "DatabaseFileRejected",
            StoreError::DatabaseInUse { .. } => "DatabaseInUse",
            StoreError::Fenced => "WriterFenced",
            StoreError::DatabaseUnavailable(_) => "DatabaseUnavailable",
            StoreError::LeaderUnavailable => "LeaderUnavailable",
            StoreError::DatabaseConfig(_) => "DatabaseMisconfigured",
        }
    }
    /// True when the error is the caller's fault (shown to clients as is); false for internal ones.
    pub fn is_user_error(&self) -> bool {
        !matches!(
            self,
            StoreError::Storage(_)
                | StoreError::StorageFull(_)
                | StoreError::Overloaded { .. }
                | StoreError::ShuttingDown
                | StoreError::JobPanicked(_)
                | StoreError::DataFile(_)
                | StoreError::DatabaseInUse { .. }
                | StoreError::Fenced
                | StoreError::DatabaseUnavailable(_)
                | StoreError::LeaderUnavailable
                | StoreError::DatabaseConfig(_)
        )
    }

    /// A storage failure that did not come from SQLite.
    pub(crate) fn storage(message: impl Into<String>) -> StoreError {
        StoreError::Storage(StorageFailure::other(message))
    }

    /// The same error again, for each job of a batch that failed as a whole. Storage failures
    /// keep their variant and codes; anything else (not expected here) becomes a storage failure.
    pub(crate) fn for_each_job(&self) -> StoreError {
        match self {
            StoreError::Storage(f) => StoreError::Storage(f.clone()),
            StoreError::StorageFull(f) => StoreError::StorageFull(f.clone()),
            StoreError::ShuttingDown => StoreError::ShuttingDown,
            StoreError::Fenced => StoreError::Fenced,
            StoreError::DatabaseUnavailable(f) => StoreError::DatabaseUnavailable(f.clone()),
            StoreError::LeaderUnavailable => StoreError::LeaderUnavailable,
            other => StoreError::storage(other.to_string()),
        }
    }
}

/// Keeps SQLite's result codes. SQLite's unix VFS reports a write that hit `ENOSPC` as
/// `SQLITE_FULL`, and so does a database at its `max_page_count`: both become
/// [`StoreError::StorageFull`]. (An `fsync` that hits `ENOSPC` comes back as
/// `SQLITE_IOERR_FSYNC` without the errno, so it stays [`StoreError::Storage`], with the extended
/// code kept for the log.)
impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        let (code, extended_code) = match &e {
            rusqlite::Error::SqliteFailure(failure, _) => {
                (Some(failure.code), Some(failure.extended_code))
            }
            _ => (None, None),
        };
        let failure = StorageFailure {
            code,
            extended_code,
            message: e.to_string(),
        };
        match code {
            Some(rusqlite::ErrorCode::DiskFull) => StoreError::StorageFull(failure),
            _ => StoreError::Storage(failure),
        }
    }
}

/// OS errors (files in the data directory): `ENOSPC` becomes [`StoreError::StorageFull`].
impl From<std::io::Error> for StoreError {
    fn from(e: std::io::Error) -> Self {
        let full = e.kind() == std::io::ErrorKind::StorageFull;
        let failure = StorageFailure::other(e.to_string());
        if full {
            StoreError::StorageFull(failure)
        } else {
            StoreError::Storage(failure)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::ffi;

    fn sqlite_error(extended_code: i32) -> rusqlite::Error {
        rusqlite::Error::SqliteFailure(ffi::Error::new(extended_code), Some("from sqlite".into()))
    }

    #[test]
    fn a_full_disk_is_told_apart_from_a_busy_database() {
        let full = StoreError::from(sqlite_error(ffi::SQLITE_FULL));
        assert!(matches!(full, StoreError::StorageFull(_)), "{full:?}");
        assert_eq!(full.code(), "StorageFull");
        assert!(!full.is_user_error());

        let busy = StoreError::from(sqlite_error(ffi::SQLITE_BUSY));
        assert_eq!(busy.code(), "StorageError");
        let StoreError::Storage(failure) = &busy else {
            panic!("{busy:?}")
        };
        assert_eq!(failure.code, Some(rusqlite::ErrorCode::DatabaseBusy));
        assert_eq!(failure.extended_code, Some(ffi::SQLITE_BUSY));

        // The extended code survives: an fsync failure is still recognisable in the log.
        let fsync = StoreError::from(sqlite_error(ffi::SQLITE_IOERR_FSYNC));
        let StoreError::Storage(failure) = &fsync else {
            panic!("{fsync:?}")
        };
        assert_eq!(failure.code, Some(rusqlite::ErrorCode::SystemIoFailure));
        assert_eq!(failure.extended_code, Some(ffi::SQLITE_IOERR_FSYNC));
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn enospc_from_the_os_is_a_full_disk() {
        const ENOSPC: i32 = 28;
        let full = StoreError::from(std::io::Error::from_raw_os_error(ENOSPC));
        assert_eq!(full.code(), "StorageFull");
        let denied = StoreError::from(std::io::Error::from(std::io::ErrorKind::PermissionDenied));
        assert_eq!(denied.code(), "StorageError");
    }

    #[test]
    fn a_failed_batch_keeps_the_variant_for_every_job() {
        let full = StoreError::from(sqlite_error(ffi::SQLITE_FULL));
        assert_eq!(full.for_each_job().code(), "StorageFull");
        assert_eq!(
            StoreError::Overloaded { capacity: 1 }.code(),
            "ServerOverloaded"
        );
    }
}
