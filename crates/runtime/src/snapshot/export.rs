//! Writing a snapshot ZIP in Convex's layout (see the CLI spec, §6.2):
//!
//! ```text
//! README.md
//! _tables/documents.jsonl            {"name":"events","id":10001} per user table
//! <table>/documents.jsonl            one document per line, export JSON
//! <table>/generated_schema.jsonl     "uniform"
//! _storage/documents.jsonl           with storage: {_id,_creationTime,sha256,size,contentType,internalId}
//! _storage/<id>                      with storage: the file's bytes
//! ```
//!
//! Everything is read from one [`ReadTxn`], so the ZIP is the state at one commit timestamp
//! while writes go on; documents are streamed row by row into the deflater, so memory stays
//! flat however large the tables are.

use std::io::{Seek, Write};

use tickethub_blobs::{BlobDir, Sha256};
use tickethub_store::{DocReader, Document, ReadTxn, Store, Timestamp, Visit};
use tickethub_value::Value;
use zip::write::SimpleFileOptions;
use zip::ZipWriter;

use super::SnapshotError;
use crate::storage::{format_uuid, STORAGE_TABLE};

const README: &str = "# Welcome to your Convex snapshot export!\n\nThis ZIP holds one consistent snapshot of a tickethub deployment in Convex's export format:\n`_tables/documents.jsonl` lists the tables, and each table's folder holds `documents.jsonl`\n(one document per line) and `generated_schema.jsonl`. Restore it with `npx convex import` or\n`tickethub import`.\n";

/// Whether the files behind `_storage` go into the ZIP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IncludeStorage {
    Yes,
    No,
}

/// Told as the export goes (for progress bars): documents written so far of how many.
#[derive(Clone, Copy, Debug)]
pub struct ExportProgress {
    pub documents_written: u64,
    pub documents_total: u64,
}

/// What an export wrote.
#[derive(Clone, Debug)]
pub struct ExportSummary {
    /// The commit timestamp the snapshot is of.
    pub ts: Timestamp,
    /// The user tables written, by table number.
    pub tables: Vec<String>,
    pub documents: u64,
    pub files: u64,
}

/// Call `progress` about every this many documents.
const PROGRESS_EVERY: u64 = 4096;

/// Write one snapshot of `store` as a ZIP into `out`. `blobs` is needed with
/// [`IncludeStorage::Yes`].
pub fn write_export<W: Write + Seek>(
    store: &Store,
    blobs: Option<&BlobDir>,
    out: W,
    storage: IncludeStorage,
    progress: &mut dyn FnMut(ExportProgress),
) -> Result<ExportSummary, SnapshotError> {
    let snapshot = store.read()?;
    write_snapshot(&snapshot, blobs, out, storage, progress)
}

fn write_snapshot<W: Write + Seek>(
    snapshot: &ReadTxn,
    blobs: Option<&BlobDir>,
    out: W,
    storage: IncludeStorage,
    progress: &mut dyn FnMut(ExportProgress),
) -> Result<ExportSummary, SnapshotError> {
    let options = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .unix_permissions(0o644);
    let mut zip = ZipWriter::new(out);
    let tables: Vec<_> = snapshot
        .tables()
        .into_iter()
        .filter(|t| !t.name.starts_with('_'))
        .collect();
    let mut total = 0;
    for table in &tables {
        total += snapshot.count(&table.name)?;
    }
    if storage == IncludeStorage::Yes {
        total += snapshot.count(STORAGE_TABLE)?;
    }
    let mut state = ExportProgress {
        documents_written: 0,
        documents_total: total,
    };
    progress(state);

    zip.start_file("README.md", options)?;
    zip.write_all(README.as_bytes())?;
    zip.start_file("_tables/documents.jsonl", options)?;
    for table in &tables {
        let line = serde_json::json!({"name": table.name, "id": table.number.0});
        writeln!(zip, "{line}")?;
    }

    let mut line = Vec::with_capacity(1024);
    for table in &tables {
        let big = likely_over_zip32(snapshot, &table.name)?;
        zip.start_file(
            format!("{}/documents.jsonl", table.name),
            options.large_file(big),
        )?;
        snapshot.for_each_document(&table.name, &mut |doc: Document| {
            line.clear();
            serde_json::to_writer(&mut line, &doc.to_value().to_export_json())
                .map_err(|e| SnapshotError::Io(e.to_string()))?;
            line.push(b'\n');
            zip.write_all(&line)?;
            state.documents_written += 1;
            if state.documents_written.is_multiple_of(PROGRESS_EVERY) {
                progress(state);
            }
            Ok::<_, SnapshotError>(Visit::Continue)
        })?;
        zip.start_file(format!("{}/generated_schema.jsonl", table.name), options)?;
        zip.write_all(b"\"uniform\"\n")?;
    }

    let mut files = 0;
    if storage == IncludeStorage::Yes {
        let blobs = blobs.ok_or_else(|| {
            SnapshotError::Io("file storage is not configured on this server".into())
        })?;
        // First the metadata, then the blobs: two passes over the same snapshot.
        zip.start_file("_storage/documents.jsonl", options)?;
        snapshot.for_each_document(STORAGE_TABLE, &mut |doc: Document| {
            let row = storage_line(&doc)?;
            writeln!(zip, "{row}")?;
            state.documents_written += 1;
            Ok::<_, SnapshotError>(Visit::Continue)
        })?;
        // Stored files are usually compressed already (images, PDFs): store them as they are.
        // ZIP64 fields only where the size needs them: some readers (fflate) misread a stored
        // entry's ZIP64 sizes.
        let stored = options.compression_method(zip::CompressionMethod::Stored);
        snapshot.for_each_document(STORAGE_TABLE, &mut |doc: Document| {
            let sha = sha_of(&doc)?;
            let mut file = blobs
                .open_blob(&sha)?
                .ok_or_else(|| SnapshotError::Io(format!("the blob of {} is missing", doc.id)))?;
            let size = file.metadata()?.len();
            let options = stored.large_file(size >= u64::from(u32::MAX));
            zip.start_file(format!("_storage/{}", doc.id.encode()), options)?;
            std::io::copy(&mut file, &mut zip)?;
            files += 1;
            Ok::<_, SnapshotError>(Visit::Continue)
        })?;
    }
    progress(state);
    zip.finish()?;
    Ok(ExportSummary {
        ts: snapshot.ts(),
        tables: tables.into_iter().map(|t| t.name).collect(),
        documents: state.documents_written,
        files,
    })
}

/// Whether a table's `documents.jsonl` may pass 4 GiB, so its entry needs ZIP64 sizes. Only
/// then: some readers (fflate) misread ZIP64 sizes of small entries. Estimated from the table's
/// size and its first documents, with a wide margin.
fn likely_over_zip32(snapshot: &ReadTxn, table: &str) -> Result<bool, SnapshotError> {
    const SAMPLE: u64 = 100;
    let rows = snapshot.count(table)?;
    let mut sampled = 0u64;
    let mut bytes = 0u64;
    snapshot.for_each_document(table, &mut |doc: Document| {
        bytes += doc.to_value().to_export_json().to_string().len() as u64 + 1;
        sampled += 1;
        Ok::<_, SnapshotError>(if sampled >= SAMPLE {
            Visit::Stop
        } else {
            Visit::Continue
        })
    })?;
    let average = bytes.checked_div(sampled).unwrap_or(0);
    // Four times the estimate against 4 GiB: documents vary in size.
    Ok(rows.saturating_mul(average).saturating_mul(4) >= u64::from(u32::MAX))
}

fn sha_of(doc: &Document) -> Result<Sha256, SnapshotError> {
    doc.fields
        .get("sha256")
        .and_then(|v| v.as_str())
        .and_then(Sha256::from_base64)
        .ok_or_else(|| SnapshotError::Io(format!("_storage row {} has no sha256", doc.id)))
}

/// A `_storage/documents.jsonl` line (Convex's `FileStorageZipMetadata`).
fn storage_line(doc: &Document) -> Result<serde_json::Value, SnapshotError> {
    let sha = sha_of(doc)?;
    let size = match doc.fields.get("size") {
        Some(Value::Float64(x)) => *x as u64,
        Some(Value::Int64(x)) => *x as u64,
        _ => 0,
    };
    let content_type = doc.fields.get("contentType").and_then(|v| v.as_str());
    Ok(serde_json::json!({
        "_id": doc.id.encode(),
        "_creationTime": doc.creation_time,
        "sha256": sha.to_base64(),
        "size": size,
        "contentType": content_type,
        "internalId": format_uuid(&doc.id.internal),
    }))
}
