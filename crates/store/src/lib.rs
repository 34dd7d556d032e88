//! The document store on embedded SQLite. The only crate that speaks SQL.
//!
//! - [`schema`]: `schema.toml` parsing, table and index definitions.
//! - [`store`]: [`Store`]: open (migrate, backfill, validate), reader snapshots, the writer thread
//!   with group commit.
//! - [`txn`]: [`ReadTxn`] (one consistent snapshot) and [`WriteTxn`] (runs on the writer thread).
//! - [`query`]: [`IndexQuery`], index range validation and key-range computation.
//! - [`log`]: the commit log: which index key ranges each commit touched, for live queries.
//! - `catalog` (private): table numbers and index ids joined with the schema; immutable after open.
//! - `codec` (private): the compact binary encoding of document bodies on disk.
//!
//! Design: one writer connection on its own thread runs every mutation closure one after another
//! (serializable by construction, no OCC retries); each runs inside its own SAVEPOINT so a failure
//! rolls back alone; a batch of queued mutations shares one COMMIT (one fsync), and only then are
//! their `done` callbacks told. Readers use a pool of WAL connections, each read in one transaction.

mod catalog;
mod codec;
pub mod log;
pub mod query;
pub mod schema;
pub mod store;
pub mod txn;

pub use log::{CommitLog, IndexId, ReadRange, ReadSet, WriteSet, WrittenKey};
pub use query::{Bound, IndexQuery, Order, Page, PageRequest, MAX_PAGE_ITEMS};
pub use schema::{IndexDef, Schema, SchemaError, TableDef};
pub use store::{CommitHook, CommitInfo, Done, Job, Outcome, Store, StoreOptions};
pub use txn::{caps, DocReader, Document, ReadTxn, ScanVisitor, Visit, WriteTxn};

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
    Storage(String),
    #[error("the store is shutting down")]
    ShuttingDown,
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
            StoreError::ShuttingDown => "ShuttingDown",
        }
    }
    /// True when the error is the caller's fault (shown to clients as is); false for internal ones.
    pub fn is_user_error(&self) -> bool {
        !matches!(
            self,
            StoreError::Storage(_) | StoreError::ShuttingDown | StoreError::JobPanicked(_)
        )
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Storage(e.to_string())
    }
}
