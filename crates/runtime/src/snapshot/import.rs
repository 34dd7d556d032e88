//! Reading a snapshot (a ZIP in Convex's layout, or one JSONL / JSON-array / CSV file for one
//! table) and writing it as one bulk transaction.
//!
//! Two passes over the file: [`plan_import`] reads every row (so a malformed row, an unsafe ZIP
//! path, a ZIP bomb or an `_id` of another table is refused before anything is written) and
//! counts what would change; [`apply_import`] reads it again inside one writer job, where the
//! store checks each row against the schema. Any failure rolls the whole job back: nothing is
//! imported. Rows are never all held in memory.
//!
//! Value decoding follows Convex: a table whose `generated_schema.jsonl` is `"uniform"` is
//! export JSON (integers are int64, numbers with a point are float64, `$bytes` / `$float`);
//! anything else (a lone JSONL, JSON or CSV file) is inferred: every number is a float64.
//! `_id` is kept when it is an id of the target table, `_creationTime` when it is a float64.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::sync::Arc;

use tickethub_blobs::{BlobDir, Sha256};
use tickethub_store::{BulkError, Store, Timestamp, WriteTxn};
use tickethub_value::{DocumentId, Object, TableNumber, Value};

use super::SnapshotError;
use crate::storage::STORAGE_TABLE;

/// What kind of file an import reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImportFormat {
    Zip,
    JsonLines,
    JsonArray,
    Csv,
}

impl ImportFormat {
    /// The CLI's names (`finish_upload`'s `format`).
    pub fn parse(wire: &str) -> Option<ImportFormat> {
        Some(match wire {
            "zip" => ImportFormat::Zip,
            "jsonLines" | "jsonl" => ImportFormat::JsonLines,
            "jsonArray" | "json" => ImportFormat::JsonArray,
            "csv" => ImportFormat::Csv,
            _ => return None,
        })
    }

    /// As the CLI guesses it from a file name.
    pub fn from_extension(path: &std::path::Path) -> Option<ImportFormat> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "zip" => Some(ImportFormat::Zip),
            "jsonl" => Some(ImportFormat::JsonLines),
            "json" => Some(ImportFormat::JsonArray),
            "csv" => Some(ImportFormat::Csv),
            _ => None,
        }
    }

    /// The `format` field of a `_snapshot_imports` row.
    pub fn row_name(self) -> &'static str {
        match self {
            ImportFormat::Zip => "zip",
            ImportFormat::JsonLines => "jsonl",
            ImportFormat::JsonArray => "json_array",
            ImportFormat::Csv => "csv",
        }
    }
}

/// What happens to the rows already in the tables an import writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImportMode {
    /// Refuse unless every table written is empty (the CLI's default).
    RequireEmpty,
    /// Add to the rows there.
    Append,
    /// Replace the rows of the tables the import holds.
    Replace,
    /// Replace every user table: those the import does not hold end up empty.
    ReplaceAll,
}

impl ImportMode {
    pub fn parse(wire: &str) -> Option<ImportMode> {
        Some(match wire {
            "requireEmpty" => ImportMode::RequireEmpty,
            "append" => ImportMode::Append,
            "replace" => ImportMode::Replace,
            "replaceAll" => ImportMode::ReplaceAll,
            _ => return None,
        })
    }

    /// Convex's spelling in `_snapshot_imports.mode`.
    pub fn row_name(self) -> &'static str {
        match self {
            ImportMode::RequireEmpty => "RequireEmpty",
            ImportMode::Append => "Append",
            ImportMode::Replace => "Replace",
            ImportMode::ReplaceAll => "ReplaceAll",
        }
    }
}

/// The file to import and how to read it.
#[derive(Clone, Debug)]
pub struct ImportSource {
    pub path: PathBuf,
    pub format: ImportFormat,
    /// The target table: required for JSONL / JSON / CSV, refused for a ZIP.
    pub table: Option<String>,
    pub mode: ImportMode,
    /// Most bytes the data may have uncompressed (`IMPORT_MAX_UNCOMPRESSED_BYTES`).
    pub max_uncompressed_bytes: u64,
    /// How messages name a single file ("users.jsonl line 3"): its own name offline, the table's
    /// on the server (which never learns the client's file name).
    pub display_name: String,
}

/// One table an import writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TablePlan {
    pub table: String,
    /// Rows the import holds for it.
    pub rows: u64,
    /// Rows there now.
    pub existing: u64,
    /// Rows the import would delete first (Replace / ReplaceAll).
    pub to_delete: u64,
}

/// What an import would do, found by reading it all once.
#[derive(Clone, Debug)]
pub struct ImportPlan {
    pub tables: Vec<TablePlan>,
    /// Stored files (`_storage` blobs) it holds.
    pub files: u64,
    pub mode: ImportMode,
}

impl ImportPlan {
    pub fn rows(&self) -> u64 {
        self.tables.iter().map(|t| t.rows).sum()
    }

    /// Rows that would be deleted: the CLI asks for confirmation only then.
    pub fn rows_deleted(&self) -> u64 {
        self.tables.iter().map(|t| t.to_delete).sum()
    }

    /// The change summary the CLI shows before "Perform import?".
    pub fn message_to_confirm(&self) -> String {
        let mut text = String::from("Import change summary:\n");
        text.push_str("table | create | delete |\n");
        text.push_str("--------------------------\n");
        for t in &self.tables {
            text.push_str(&format!(
                "{} | {} | {} of {} |\n",
                t.table, t.rows, t.to_delete, t.existing
            ));
        }
        text.push_str("Once the import has started, it will run in the background.\nInterrupting `npx convex import` will not cancel it.");
        text
    }
}

/// What an import wrote.
#[derive(Clone, Copy, Debug)]
pub struct ImportOutcome {
    pub rows_written: u64,
    /// The commit timestamp of the import's one transaction.
    pub ts: Timestamp,
}

/// How a table's values are decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Decoding {
    /// `generated_schema.jsonl` is `"uniform"`: export JSON.
    Uniform,
    /// No (or another) generated schema: every number is a float64.
    Infer,
}

/// One row on its way into a table.
struct Row {
    table: String,
    /// `users/documents.jsonl line 3`, for messages.
    location: String,
    id: Option<DocumentId>,
    creation_time: Option<f64>,
    fields: Object,
}

/// A ZIP entry the import uses.
enum Entry {
    Documents { table: String, index: usize },
    StorageDocuments { index: usize },
    Blob { id: String, index: usize },
}

/// Table name → number, from the catalog (fixed while the store is open).
type TableNumbers = HashMap<String, TableNumber>;

fn table_numbers(store: &Store) -> Result<TableNumbers, SnapshotError> {
    Ok(store
        .read()?
        .tables()
        .into_iter()
        .map(|t| (t.name, t.number))
        .collect())
}

/// Read the whole import once: refuse anything malformed, count what would change.
pub fn plan_import(store: &Store, source: &ImportSource) -> Result<ImportPlan, SnapshotError> {
    let numbers = table_numbers(store)?;
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    if let Some(table) = &source.table {
        counts.insert(table.clone(), 0);
    }
    let files = read_rows(source, &numbers, &mut |row| {
        *counts.entry(row.table).or_insert(0) += 1;
        Ok(())
    })?;
    let snapshot = store.read()?;
    let mut tables = Vec::new();
    let mut written: Vec<String> = counts.keys().cloned().collect();
    if source.mode == ImportMode::ReplaceAll {
        // Tables the import does not hold are emptied too.
        for t in snapshot.tables() {
            if !t.name.starts_with('_') && !counts.contains_key(&t.name) {
                written.push(t.name);
            }
        }
    }
    for table in written {
        let existing = snapshot.count(&table)?;
        let rows = counts.get(&table).copied().unwrap_or(0);
        if source.mode == ImportMode::RequireEmpty && existing > 0 {
            return Err(SnapshotError::TableNotEmpty {
                table,
                rows: existing,
            });
        }
        let to_delete = match source.mode {
            ImportMode::Replace | ImportMode::ReplaceAll => existing,
            ImportMode::RequireEmpty | ImportMode::Append => 0,
        };
        tables.push(TablePlan {
            table,
            rows,
            existing,
            to_delete,
        });
    }
    Ok(ImportPlan {
        tables,
        files,
        mode: source.mode,
    })
}

/// Write the import as one bulk transaction (blocking: call it off the async threads). Stored
/// files are published to `blobs` first, so a committed `_storage` row always has its blob; if
/// the transaction then fails, those blobs are unreferenced and collected at the next start.
/// `progress` is told the rows written so far.
pub fn apply_import(
    store: &Store,
    blobs: Option<&BlobDir>,
    source: &ImportSource,
    plan: &ImportPlan,
    progress: Arc<dyn Fn(u64) + Send + Sync>,
) -> Result<ImportOutcome, SnapshotError> {
    let numbers = table_numbers(store)?;
    if plan.files > 0 {
        let blobs = blobs.ok_or_else(|| {
            SnapshotError::InvalidImport(
                "The ZIP holds stored files but file storage is not configured on this server."
                    .into(),
            )
        })?;
        publish_blobs(source, blobs)?;
    }
    let source = source.clone();
    let clear: Vec<String> = plan
        .tables
        .iter()
        .filter(|t| t.to_delete > 0)
        .map(|t| t.table.clone())
        .collect();
    let must_be_empty: Vec<String> = match plan.mode {
        ImportMode::RequireEmpty => plan.tables.iter().map(|t| t.table.clone()).collect(),
        ImportMode::Append | ImportMode::Replace | ImportMode::ReplaceAll => Vec::new(),
    };
    let (rows, info) = store.mutate(move |txn: &mut WriteTxn<'_>| {
        txn.start_bulk();
        // Checked again inside the transaction: a write may have landed since the plan.
        for table in must_be_empty {
            let rows = txn.count_documents(&table)?;
            if rows > 0 {
                return Err(SnapshotError::TableNotEmpty { table, rows });
            }
        }
        for table in &clear {
            txn.clear_table(table)?;
        }
        let mut written = 0u64;
        read_rows(&source, &numbers, &mut |row| {
            txn.insert_imported(&row.table, row.id, row.creation_time, row.fields)
                .map_err(|source| SnapshotError::RowRefused {
                    location: row.location,
                    source,
                })?;
            written += 1;
            if written.is_multiple_of(4096) {
                progress(written);
            }
            Ok(())
        })?;
        progress(written);
        Ok::<u64, SnapshotError>(written)
    })?;
    Ok(ImportOutcome {
        rows_written: rows,
        ts: info.ts,
    })
}

/// Every row of the import, in file order; returns the number of stored files it holds.
fn read_rows(
    source: &ImportSource,
    numbers: &TableNumbers,
    visit: &mut dyn FnMut(Row) -> Result<(), SnapshotError>,
) -> Result<u64, SnapshotError> {
    let file = File::open(&source.path)?;
    let size = file.metadata()?.len();
    let limit = source.max_uncompressed_bytes;
    match source.format {
        ImportFormat::Zip => {
            if source.table.is_some() {
                return Err(SnapshotError::InvalidImport(
                    "A ZIP import holds its own tables; do not name one (--table).".into(),
                ));
            }
            read_zip(file, limit, numbers, visit)
        }
        single => {
            let table = source.table.as_deref().ok_or_else(|| {
                SnapshotError::InvalidImport(
                    "Importing a JSONL, JSON or CSV file needs the table to import into (--table)."
                        .into(),
                )
            })?;
            let number = target(numbers, table)?;
            if size > limit {
                return Err(SnapshotError::TooLarge { limit });
            }
            let name = source.display_name.clone();
            let reader = BufReader::new(file.take(limit));
            match single {
                ImportFormat::JsonLines => {
                    read_jsonl(reader, table, number, &name, Decoding::Infer, visit)?
                }
                ImportFormat::JsonArray => read_json_array(reader, table, number, &name, visit)?,
                ImportFormat::Csv => read_csv(reader, table, number, &name, visit)?,
                ImportFormat::Zip => unreachable!("handled above"),
            }
            Ok(0)
        }
    }
}

/// The number of a table the import may write (a user table, or `_storage`).
fn target(numbers: &TableNumbers, table: &str) -> Result<TableNumber, SnapshotError> {
    if table.starts_with('_') && table != STORAGE_TABLE {
        return Err(SnapshotError::UnknownTable(table.to_string()));
    }
    numbers
        .get(table)
        .copied()
        .ok_or_else(|| SnapshotError::UnknownTable(table.to_string()))
}

/// Sort a ZIP's entries into what the import uses, refusing unsafe paths and bombs up front.
fn zip_entries(
    zip: &mut zip::ZipArchive<File>,
    limit: u64,
) -> Result<(Vec<Entry>, HashMap<String, Decoding>), SnapshotError> {
    let mut entries = Vec::new();
    let mut schemas = HashMap::new();
    let mut declared: u64 = 0;
    for index in 0..zip.len() {
        let entry = zip.by_index_raw(index)?;
        let name = entry.name().to_string();
        if entry.enclosed_name().is_none() || name.split(['/', '\\']).any(|part| part == "..") {
            return Err(SnapshotError::UnsafePath(name));
        }
        declared = declared.saturating_add(entry.size());
        if declared > limit {
            return Err(SnapshotError::TooLarge { limit });
        }
        if entry.is_dir() {
            continue;
        }
        if name.contains("_components/") {
            return Err(SnapshotError::InvalidImport(format!(
                "The ZIP holds component data (\"{name}\"); components are not supported by tickethub."
            )));
        }
        let mut parts: Vec<&str> = name.split('/').collect();
        let file = parts.pop().unwrap_or_default();
        let Some(folder) = parts.last().copied() else {
            continue; // README.md and other top-level files
        };
        match (folder, file) {
            ("_tables", _) => {}
            (STORAGE_TABLE, "documents.jsonl") => entries.push(Entry::StorageDocuments { index }),
            (STORAGE_TABLE, blob) => {
                let id = blob.split('.').next().unwrap_or(blob).to_string();
                entries.push(Entry::Blob { id, index });
            }
            // Other system tables of a Convex export are not imported (as Convex does).
            (system, _) if system.starts_with('_') => {}
            (table, "documents.jsonl") => entries.push(Entry::Documents {
                table: table.to_string(),
                index,
            }),
            (table, "generated_schema.jsonl") => {
                schemas.insert(table.to_string(), index);
            }
            _ => {}
        }
    }
    let mut decodings = HashMap::new();
    for (table, index) in schemas {
        let mut text = String::new();
        zip.by_index(index)?.take(4096).read_to_string(&mut text)?;
        let uniform = text
            .lines()
            .next()
            .is_some_and(|line| line.trim() == "\"uniform\"");
        decodings.insert(
            table,
            if uniform {
                Decoding::Uniform
            } else {
                Decoding::Infer
            },
        );
    }
    Ok((entries, decodings))
}

/// Reads at most `left` more bytes in all, then fails with [`SnapshotError::TooLarge`]: the
/// sizes a ZIP declares can lie.
struct Capped<'a, R> {
    inner: R,
    left: &'a mut u64,
    limit: u64,
}

impl<R: Read> Read for Capped<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n as u64 > *self.left {
            return Err(std::io::Error::other(TooLargeMarker(self.limit)));
        }
        *self.left -= n as u64;
        Ok(n)
    }
}

#[derive(Debug)]
struct TooLargeMarker(u64);
impl std::fmt::Display for TooLargeMarker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "larger than {} bytes uncompressed", self.0)
    }
}
impl std::error::Error for TooLargeMarker {}

/// An I/O error from a [`Capped`] reader is the size limit; others stay I/O errors.
fn io_error(e: std::io::Error) -> SnapshotError {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<TooLargeMarker>())
    {
        Some(marker) => SnapshotError::TooLarge { limit: marker.0 },
        None if e.kind() == std::io::ErrorKind::InvalidData => SnapshotError::InvalidImport(
            format!("The file is not valid UTF-8 text or ZIP data: {e}"),
        ),
        None => SnapshotError::Io(e.to_string()),
    }
}

fn read_zip(
    file: File,
    limit: u64,
    numbers: &TableNumbers,
    visit: &mut dyn FnMut(Row) -> Result<(), SnapshotError>,
) -> Result<u64, SnapshotError> {
    let mut zip = zip::ZipArchive::new(file)?;
    let (entries, decodings) = zip_entries(&mut zip, limit)?;
    let mut left = limit;
    let mut blob_ids = std::collections::HashSet::new();
    for entry in &entries {
        if let Entry::Blob { id, .. } = entry {
            blob_ids.insert(id.clone());
        }
    }
    let mut files = 0;
    for entry in &entries {
        match entry {
            Entry::Documents { table, index } => {
                let number = target(numbers, table)?;
                let decoding = decodings.get(table).copied().unwrap_or(Decoding::Infer);
                let reader = zip.by_index(*index)?;
                let name = reader.name().to_string();
                let capped = Capped {
                    inner: reader,
                    left: &mut left,
                    limit,
                };
                read_jsonl(
                    BufReader::new(capped),
                    table,
                    number,
                    &name,
                    decoding,
                    visit,
                )?;
            }
            Entry::StorageDocuments { index } => {
                let number = target(numbers, STORAGE_TABLE)?;
                let reader = zip.by_index(*index)?;
                let name = reader.name().to_string();
                let capped = Capped {
                    inner: reader,
                    left: &mut left,
                    limit,
                };
                read_jsonl(
                    BufReader::new(capped),
                    STORAGE_TABLE,
                    number,
                    &name,
                    Decoding::Uniform,
                    &mut |row| {
                        let id = row.id.map(|id| id.encode()).unwrap_or_default();
                        if !blob_ids.contains(&id) {
                            return Err(SnapshotError::InvalidImport(format!(
                                "{}: the file of _storage row \"{id}\" is not in the ZIP",
                                row.location
                            )));
                        }
                        files += 1;
                        visit(storage_row(row)?)
                    },
                )?;
            }
            Entry::Blob { .. } => {}
        }
    }
    Ok(files)
}

/// A `_storage/documents.jsonl` row as a `_storage` row: `sha256` (base64), `size`,
/// `contentType`; `internalId` is our id's bytes, so it is dropped.
fn storage_row(mut row: Row) -> Result<Row, SnapshotError> {
    let sha = row
        .fields
        .get("sha256")
        .and_then(|v| v.as_str())
        .and_then(|s| Sha256::from_base64(s).or_else(|| Sha256::from_hex(s)))
        .ok_or_else(|| {
            SnapshotError::InvalidImport(format!("{}: no valid sha256", row.location))
        })?;
    let size = match row.fields.get("size") {
        Some(Value::Int64(n)) => *n as f64,
        Some(Value::Float64(n)) => *n,
        _ => {
            return Err(SnapshotError::InvalidImport(format!(
                "{}: no valid size",
                row.location
            )))
        }
    };
    let mut fields = Object::new();
    fields.insert("sha256".into(), Value::String(sha.to_base64()));
    fields.insert("size".into(), Value::Float64(size));
    if let Some(Value::String(ct)) = row.fields.get("contentType") {
        fields.insert("contentType".into(), Value::String(ct.clone()));
    }
    row.fields = fields;
    Ok(row)
}

/// Copy the ZIP's stored files into the blob directory, checking each against its row's digest.
fn publish_blobs(source: &ImportSource, blobs: &BlobDir) -> Result<(), SnapshotError> {
    let mut zip = zip::ZipArchive::new(File::open(&source.path)?)?;
    let (entries, _) = zip_entries(&mut zip, source.max_uncompressed_bytes)?;
    // The digests the rows name, by id.
    let mut expected: HashMap<String, Sha256> = HashMap::new();
    for entry in &entries {
        if let Entry::StorageDocuments { index } = entry {
            let reader = BufReader::new(zip.by_index(*index)?);
            read_jsonl_raw(reader, "_storage/documents.jsonl", &mut |map, location| {
                let id = map.get("_id").and_then(|v| v.as_str()).unwrap_or_default();
                let sha = map
                    .get("sha256")
                    .and_then(|v| v.as_str())
                    .and_then(|s| Sha256::from_base64(s).or_else(|| Sha256::from_hex(s)))
                    .ok_or_else(|| {
                        SnapshotError::InvalidImport(format!("{location}: no valid sha256"))
                    })?;
                expected.insert(id.to_string(), sha);
                Ok(())
            })?;
        }
    }
    for entry in &entries {
        if let Entry::Blob { id, index } = entry {
            let Some(sha) = expected.get(id) else {
                continue; // a file no row names is not imported
            };
            if blobs.contains(sha) {
                continue;
            }
            let mut reader = zip.by_index(*index)?;
            let mut writer = blobs.writer(source.max_uncompressed_bytes)?;
            let mut buf = vec![0u8; 256 * 1024];
            loop {
                let n = reader.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                writer.write(&buf[..n])?;
            }
            let staged = writer.finish()?;
            if staged.sha256 != *sha {
                return Err(SnapshotError::InvalidImport(format!(
                    "The stored file _storage/{id} does not match the sha256 of its row."
                )));
            }
            blobs.publish(staged)?;
        }
    }
    Ok(())
}

/// Each non-empty line as a JSON object, with its location.
fn read_jsonl_raw(
    reader: impl BufRead,
    name: &str,
    visit: &mut dyn FnMut(
        serde_json::Map<String, serde_json::Value>,
        String,
    ) -> Result<(), SnapshotError>,
) -> Result<(), SnapshotError> {
    for (i, line) in reader.lines().enumerate() {
        let line = line.map_err(io_error)?;
        let line_no = i + 1;
        let text = line.trim();
        if text.is_empty() {
            continue;
        }
        let location = format!("{name} line {line_no}");
        let json: serde_json::Value = serde_json::from_str(text).map_err(|e| {
            SnapshotError::InvalidImport(format!("{location}: not valid JSON ({e})"))
        })?;
        let serde_json::Value::Object(map) = json else {
            return Err(SnapshotError::InvalidImport(format!(
                "{location}: not a JSON object (each line must be one document)"
            )));
        };
        visit(map, location)?;
    }
    Ok(())
}

fn read_jsonl(
    reader: impl BufRead,
    table: &str,
    number: TableNumber,
    name: &str,
    decoding: Decoding,
    visit: &mut dyn FnMut(Row) -> Result<(), SnapshotError>,
) -> Result<(), SnapshotError> {
    read_jsonl_raw(reader, name, &mut |map, location| {
        visit(to_row(map, table, number, decoding, location)?)
    })
}

fn read_json_array(
    mut reader: impl Read,
    table: &str,
    number: TableNumber,
    name: &str,
    visit: &mut dyn FnMut(Row) -> Result<(), SnapshotError>,
) -> Result<(), SnapshotError> {
    let mut text = Vec::new();
    reader.read_to_end(&mut text).map_err(io_error)?;
    let json: serde_json::Value = serde_json::from_slice(&text)
        .map_err(|e| SnapshotError::InvalidImport(format!("{name}: not valid JSON ({e})")))?;
    let serde_json::Value::Array(items) = json else {
        return Err(SnapshotError::InvalidImport(format!(
            "{name}: a JSON import must be one array of documents"
        )));
    };
    for (i, item) in items.into_iter().enumerate() {
        let location = format!("{name} element {}", i + 1);
        let serde_json::Value::Object(map) = item else {
            return Err(SnapshotError::InvalidImport(format!(
                "{location}: not a JSON object"
            )));
        };
        visit(to_row(map, table, number, Decoding::Infer, location)?)?;
    }
    Ok(())
}

/// CSV: the header row names the fields; a cell that parses as a number is a float64, any other
/// is a string (as Convex does).
fn read_csv(
    reader: impl Read,
    table: &str,
    number: TableNumber,
    name: &str,
    visit: &mut dyn FnMut(Row) -> Result<(), SnapshotError>,
) -> Result<(), SnapshotError> {
    let mut csv = csv::Reader::from_reader(reader);
    let headers = csv
        .headers()
        .map_err(|e| SnapshotError::InvalidImport(format!("{name}: no header row ({e})")))?
        .clone();
    for record in csv.records() {
        let record = record.map_err(|e| match e.kind() {
            csv::ErrorKind::Io(_) => {
                let csv::ErrorKind::Io(io) = e.into_kind() else {
                    unreachable!()
                };
                io_error(io)
            }
            _ => SnapshotError::InvalidImport(format!("{name}: {e}")),
        })?;
        let line = record.position().map_or(0, |p| p.line());
        let location = format!("{name} line {line}");
        let mut map = serde_json::Map::new();
        for (field, cell) in headers.iter().zip(record.iter()) {
            let value = match cell.parse::<f64>() {
                Ok(x) if x.is_finite() => serde_json::json!(x),
                _ => serde_json::Value::String(cell.to_string()),
            };
            map.insert(field.to_string(), value);
        }
        visit(to_row(map, table, number, Decoding::Infer, location)?)?;
    }
    Ok(())
}

/// A parsed line as a row: system fields taken out, the rest decoded.
fn to_row(
    mut map: serde_json::Map<String, serde_json::Value>,
    table: &str,
    number: TableNumber,
    decoding: Decoding,
    location: String,
) -> Result<Row, SnapshotError> {
    let bad = |what: String| SnapshotError::InvalidImport(format!("{location}: {what}"));
    let id = match map.remove("_id") {
        None => None,
        Some(serde_json::Value::String(text)) => {
            let id = DocumentId::decode(&text)
                .map_err(|e| bad(format!("_id \"{text}\" is not a document id ({e})")))?;
            if id.table != number {
                return Err(SnapshotError::RowRefused {
                    location,
                    source: BulkError::InvalidImport(format!(
                        "_id \"{text}\" is an id of another table (number {}), not of \"{table}\"",
                        id.table.0
                    )),
                });
            }
            Some(id)
        }
        Some(_) => return Err(bad("_id must be a string".into())),
    };
    let creation_time = match map.remove("_creationTime") {
        // Kept only when it is a float64, as Convex does; an integer gets a new one.
        Some(serde_json::Value::Number(n))
            if !n.is_i64() && !n.is_u64() || decoding == Decoding::Infer =>
        {
            n.as_f64()
        }
        _ => None,
    };
    let json = serde_json::Value::Object(map);
    let value = match decoding {
        Decoding::Uniform => Value::from_export_json(&json),
        Decoding::Infer => Value::from_clean_json(&json),
    }
    .map_err(|e| bad(format!("{e}")))?;
    let Value::Object(fields) = value else {
        unreachable!("an object decodes to an object")
    };
    Ok(Row {
        table: table.to_string(),
        location,
        id,
        creation_time,
        fields,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_modes_parse_the_cli_names() {
        assert_eq!(
            ImportFormat::parse("jsonLines"),
            Some(ImportFormat::JsonLines)
        );
        assert_eq!(
            ImportFormat::parse("jsonArray"),
            Some(ImportFormat::JsonArray)
        );
        assert_eq!(ImportFormat::parse("xml"), None);
        assert_eq!(
            ImportMode::parse("replaceAll"),
            Some(ImportMode::ReplaceAll)
        );
        assert_eq!(ImportMode::parse("ReplaceAll"), None);
    }

    #[test]
    fn a_line_that_is_not_an_object_is_named() {
        let text = "{\"a\":1}\n[1,2]\n";
        let err = read_jsonl(
            text.as_bytes(),
            "t",
            TableNumber(10001),
            "t.jsonl",
            Decoding::Infer,
            &mut |_| Ok(()),
        )
        .unwrap_err();
        assert_eq!(err.code(), "InvalidImport");
        assert!(err.to_string().contains("t.jsonl line 2"), "{err}");
    }

    #[test]
    fn uniform_keeps_int64_and_infer_makes_floats() {
        let line = |d| {
            let mut out = None;
            read_jsonl(
                "{\"n\":3,\"f\":1.0,\"_creationTime\":5.5}".as_bytes(),
                "t",
                TableNumber(10001),
                "x",
                d,
                &mut |row| {
                    out = Some(row);
                    Ok(())
                },
            )
            .unwrap();
            out.unwrap()
        };
        let uniform = line(Decoding::Uniform);
        assert_eq!(uniform.fields.get("n"), Some(&Value::Int64(3)));
        assert_eq!(uniform.fields.get("f"), Some(&Value::Float64(1.0)));
        assert_eq!(uniform.creation_time, Some(5.5));
        let inferred = line(Decoding::Infer);
        assert_eq!(inferred.fields.get("n"), Some(&Value::Float64(3.0)));
    }
}
