//! Snapshot export and import in Convex's ZIP format, as `npx convex export` / `npx convex
//! import` and the offline `tickethub export` / `tickethub import` use them.
//!
//! - [`export`]: writes one consistent snapshot (one read transaction, so one commit timestamp)
//!   as a ZIP, streaming table by table: memory does not grow with the data.
//! - [`import`]: reads a ZIP, or one JSONL / JSON-array / CSV file for one table; checks it all
//!   first (plan), then writes it as one bulk transaction: every row lands, or none.
//! - [`service`]: the server side of the CLI's protocol: the `_exports` and `_snapshot_imports`
//!   system tables, uploads in parts, the import worker and the `_system/cli/*` queries.
//!
//! Nothing here knows HTTP: the router maps [`SnapshotError::code`] to statuses.

pub mod export;
pub mod import;
pub mod service;

pub use export::{write_export, ExportProgress, ExportSummary, IncludeStorage};
pub use import::{
    apply_import, plan_import, ImportFormat, ImportMode, ImportOutcome, ImportPlan, ImportSource,
    TablePlan,
};
pub use service::{SnapshotService, EXPORTS_TABLE, SNAPSHOT_IMPORTS_TABLE};

use tickethub_blobs::BlobError;
use tickethub_store::{BulkError, StoreError};

/// Failures of export and import. Each has a stable code ([`SnapshotError::code`]); user errors
/// say what to fix (and, for a bad row, where it is).
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// A row, an entry or the file as a whole is malformed; the text names the file and line.
    #[error("{0}")]
    InvalidImport(String),
    /// A ZIP entry whose path leaves the archive (`..`, an absolute path).
    #[error(
        "The ZIP entry \"{0}\" has an unsafe path (absolute or with \"..\"); nothing was imported."
    )]
    UnsafePath(String),
    /// The data would be larger than `IMPORT_MAX_UNCOMPRESSED_BYTES` once uncompressed.
    #[error("The import is larger than {limit} bytes once uncompressed (TICKETHUB_IMPORT_MAX_UNCOMPRESSED_BYTES); nothing was imported.")]
    TooLarge { limit: u64 },
    /// `--table` names a table the schema does not have, or the ZIP has such a table.
    #[error("Table \"{0}\" is not in this deployment's schema; nothing was imported.")]
    UnknownTable(String),
    /// Import into a non-empty table without `--replace` / `--append`.
    #[error("Table \"{table}\" already has {rows} documents. Use --replace to replace them or --append to add to them; nothing was imported.")]
    TableNotEmpty { table: String, rows: u64 },
    /// A row the schema or the store refused while writing; the text names the file and line.
    #[error("{location}: {source}")]
    RowRefused {
        location: String,
        #[source]
        source: BulkError,
    },
    #[error("No import or export with id \"{0}\".")]
    NotFound(String),
    /// The import is not in the state the request needs (e.g. perform on a failed import).
    #[error("{0}")]
    WrongState(String),
    /// An export is already being written.
    #[error("An export is already in progress; wait for it to finish.")]
    ExportInProgress,
    #[error("{0}")]
    BadUpload(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Disk failure (blobs, the ZIP file). Internal: the message is for logs.
    #[error("snapshot file failure: {0}")]
    Io(String),
}

impl SnapshotError {
    pub fn code(&self) -> &'static str {
        match self {
            SnapshotError::InvalidImport(_) => "InvalidImport",
            SnapshotError::UnsafePath(_) => "UnsafeZipPath",
            SnapshotError::TooLarge { .. } => "ImportTooLarge",
            SnapshotError::UnknownTable(_) => "ImportTableNotFound",
            SnapshotError::TableNotEmpty { .. } => "ImportTableNotEmpty",
            SnapshotError::RowRefused { source, .. } => match source {
                BulkError::Store(StoreError::SchemaMismatch { .. }) => "SchemaValidationError",
                other => other.code(),
            },
            SnapshotError::NotFound(_) => "ImportNotFound",
            SnapshotError::WrongState(_) => "ImportWrongState",
            SnapshotError::ExportInProgress => "ExportInProgress",
            SnapshotError::BadUpload(_) => "BadImportUpload",
            SnapshotError::Store(e) => e.code(),
            SnapshotError::Io(_) => "StorageError",
        }
    }

    /// True when the text may be shown to the client as is.
    pub fn is_user_error(&self) -> bool {
        match self {
            SnapshotError::Store(e) => e.is_user_error(),
            SnapshotError::RowRefused {
                source: BulkError::Store(e),
                ..
            } => e.is_user_error(),
            SnapshotError::Io(_) => false,
            _ => true,
        }
    }
}

impl From<std::io::Error> for SnapshotError {
    fn from(e: std::io::Error) -> Self {
        SnapshotError::Io(e.to_string())
    }
}

impl From<BlobError> for SnapshotError {
    fn from(e: BlobError) -> Self {
        SnapshotError::Io(e.to_string())
    }
}

impl From<zip::result::ZipError> for SnapshotError {
    fn from(e: zip::result::ZipError) -> Self {
        match e {
            zip::result::ZipError::Io(e) => SnapshotError::Io(e.to_string()),
            other => {
                SnapshotError::InvalidImport(format!("The file is not a readable ZIP: {other}"))
            }
        }
    }
}
