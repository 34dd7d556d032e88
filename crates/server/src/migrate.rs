//! `tickethub migrate --from <data dir | postgres://…> --to <data dir | postgres://…>`: copy a
//! deployment's documents from one database to another, SQLite or Postgres on either side.
//!
//! Every table of the schema (the app's and the system tables) is copied with every document,
//! keeping `_id` and `_creationTime`, so ids stored inside documents still point where they did.
//! The source is read from one snapshot (one commit) and streamed to the target's writer, which
//! writes it all as one bulk transaction (`WriteTxn::start_bulk` / `insert_imported`, as an
//! import does): the target gets everything or nothing. No SQL here; both sides go through the
//! store.
//!
//! Both sides must be stopped: a data dir's lock is taken, and a Postgres database's writer lease
//! (which a running server holds) is taken when the store opens. A target that holds any
//! document is refused unless `--replace`, which empties every table in the same transaction.
//!
//! Stored files are not documents: they stay in a data dir's `storage/`. When the source's and the
//! target's data dirs are both known (a SQLite side is its own data dir; a Postgres side names one
//! with `--from-data-dir` / `--to-data-dir`) and differ, the files the source's `_storage` rows
//! name are copied first, each checked against its SHA-256, so a committed row always has its
//! file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Instant;

use anyhow::Context as _;
use clap::Args;
use tickethub_blobs::{BlobDir, Sha256};
use tickethub_store::{
    DataDirLock, Document, Store, StoreError, StoreLocation, StoreOptions, TableEntry, Visit,
    WriteTxn,
};

use crate::database::{describe, endpoint, parse_schema_name, DEFAULT_SCHEMA};
use crate::snapshot::{bar, lock_data_dir, open_store, server_schema};

/// `tickethub migrate`.
#[derive(Args, Debug, Clone)]
pub struct MigrateArgs {
    /// Copy from: a data dir (its SQLite file) or postgres://user:password@host:port/database.
    #[arg(long)]
    pub from: String,
    /// Copy into: a data dir (created when missing) or a postgres:// URL.
    #[arg(long)]
    pub to: String,
    /// The Postgres schema of --from, when it is a URL.
    #[arg(long, default_value = DEFAULT_SCHEMA, value_parser = parse_schema_name)]
    pub from_schema: String,
    /// The Postgres schema of --to, when it is a URL (created when missing).
    #[arg(long, default_value = DEFAULT_SCHEMA, value_parser = parse_schema_name)]
    pub to_schema: String,
    /// With a Postgres --from: the data dir of that deployment, whose storage/ holds its stored
    /// files (to copy them into a SQLite --to).
    #[arg(long)]
    pub from_data_dir: Option<PathBuf>,
    /// With a Postgres --to: the data dir its server will use, to copy the stored files into.
    #[arg(long)]
    pub to_data_dir: Option<PathBuf>,
    /// Empty every table of the target first. Without it, a target holding any document is
    /// refused and left as it was.
    #[arg(long)]
    pub replace: bool,
    /// A schema.toml to use instead of the one built into the binary (the same for both sides).
    #[arg(long)]
    pub schema: Option<PathBuf>,
}

/// Failures of a migration that are the operator's to fix, with what to do.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("--from and --to name the same database ({0})")]
    SameDatabase(String),
    #[error("the target already holds documents ({tables}); pass --replace to empty it first (nothing was written)")]
    TargetNotEmpty { tables: String },
    #[error("table \"{table}\" is number {source_number} in the source but {target_number} in the target, so its ids would change; migrate into a new, empty database (nothing was written)")]
    TableNumbersDiffer {
        table: String,
        source_number: u32,
        target_number: u32,
    },
    #[error("the table \"{0}\" of the source is not in the target's schema")]
    MissingTable(String),
    #[error("reading the source stopped before the end: {0}")]
    SourceFailed(String),
    #[error("table \"{table}\": copied {copied} documents but the source holds {expected}")]
    CountMismatch {
        table: String,
        copied: u64,
        expected: u64,
    },
}

/// What one migration copied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MigrateSummary {
    /// Documents per table, for every table copied (empty ones included).
    pub tables: BTreeMap<String, u64>,
    pub documents: u64,
    /// Stored files copied between data dirs (0 when they stay where they are).
    pub files_copied: u64,
}

/// Documents cross from the reading thread to the target's writer in chunks of this many.
const CHUNK: usize = 1024;
/// Chunks in flight: bounds memory whatever the size of the tables.
const CHUNKS_IN_FLIGHT: usize = 4;

/// What the source's reading thread sends the writer.
enum Chunk {
    Documents(Vec<(String, Document)>),
    /// Everything was read: the writer may commit.
    End,
    /// Reading failed: the writer rolls back.
    Failed(String),
}

pub fn run(args: MigrateArgs, default_schema: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    let from = endpoint(&args.from, &args.from_schema);
    let to = endpoint(&args.to, &args.to_schema);
    if from == to {
        return Err(MigrateError::SameDatabase(describe(&from)).into());
    }
    if let StoreLocation::Sqlite { dir } = &from {
        if !dir.join(tickethub_store::DB_FILE).exists() {
            anyhow::bail!("{} holds no tickethub database", dir.display());
        }
    }
    let from_files = files_dir(&from, args.from_data_dir.as_deref());
    let to_files = files_dir(&to, args.to_data_dir.as_deref());
    // Every data dir involved is locked for the whole copy: no server may run on either side.
    let mut locks: Vec<DataDirLock> = Vec::new();
    for dir in [&from_files, &to_files].into_iter().flatten() {
        if locks.iter().all(|l| l.dir() != dir.as_path()) {
            locks.push(lock_data_dir(dir)?);
        }
    }
    let schema = server_schema(args.schema.as_deref(), default_schema)?;
    let source = open_store(&from, schema.clone())?;
    // The target may be new: a data dir is created, a Postgres schema made by the store.
    if let StoreLocation::Sqlite { dir } = &to {
        tickethub_store::check_database_file(&dir.join(tickethub_store::DB_FILE))?;
    }
    let target = Store::open_at(&to, schema, StoreOptions::default()).map_err(|e| {
        anyhow::anyhow!(
            "could not open the target ({}): {}: {e}",
            describe(&to),
            e.code()
        )
    })?;
    eprintln!("copying from {} to {}", describe(&from), describe(&to));

    let files_copied = match (&from_files, &to_files) {
        (Some(a), Some(b)) if a != b => copy_files(&source, a, b)?,
        _ => 0,
    };
    let summary = copy_documents(&source, &target, args.replace, files_copied)?;
    source.close().map_err(|e| anyhow::anyhow!("{e}"))?;
    target.close().map_err(|e| anyhow::anyhow!("{e}"))?;
    println!(
        "Migrated {} documents in {} tables{} from {} to {} in {:.1} s",
        summary.documents,
        summary.tables.len(),
        if summary.files_copied > 0 {
            format!(" and {} stored files", summary.files_copied)
        } else {
            String::new()
        },
        describe(&from),
        describe(&to),
        started.elapsed().as_secs_f64()
    );
    let stored_files = summary.tables.get("_storage").copied().unwrap_or(0);
    if stored_files > 0 && summary.files_copied == 0 {
        if let (Some(files), None) = (&from_files, &to_files) {
            println!(
                "The {stored_files} stored files stay in {}: serve the new deployment with \
                 --data-dir {} (or copy its storage/ directory).",
                files.join("storage").display(),
                files.display()
            );
        }
    }
    Ok(())
}

/// The data dir holding a side's stored files: a SQLite side's own, a Postgres side's when named.
fn files_dir(location: &StoreLocation, named: Option<&Path>) -> Option<PathBuf> {
    match location {
        StoreLocation::Sqlite { dir } => Some(dir.clone()),
        StoreLocation::Postgres(_) => named.map(Path::to_path_buf),
    }
}

/// Copy every document of `source` (one snapshot) into `target` as one bulk transaction.
pub fn copy_documents(
    source: &Store,
    target: &Store,
    replace: bool,
    files_copied: u64,
) -> anyhow::Result<MigrateSummary> {
    let snapshot = source.read()?;
    let tables = snapshot.tables();
    check_table_numbers(&tables, &target.read()?.tables())?;
    let mut expected = BTreeMap::new();
    for table in &tables {
        expected.insert(table.name.clone(), snapshot.count(&table.name)?);
    }
    drop(snapshot);
    let total: u64 = expected.values().sum();
    let progress = bar(total, "copying");

    // The source is read on its own thread, from one snapshot, while the target's writer thread
    // runs the one bulk transaction that writes it.
    let (sender, receiver) = mpsc::sync_channel::<Chunk>(CHUNKS_IN_FLIGHT);
    let reader_store = source.clone();
    let names: Vec<String> = tables.iter().map(|t| t.name.clone()).collect();
    let reader = std::thread::Builder::new()
        .name("migrate-read".into())
        .spawn(move || read_all(&reader_store, &names, &sender))
        .context("starting the reading thread")?;

    let shown = progress.clone();
    let table_names: Vec<String> = tables.iter().map(|t| t.name.clone()).collect();
    let written = target.mutate(move |txn: &mut WriteTxn<'_>| {
        txn.start_bulk();
        // Checked inside the transaction that writes: nothing can land in between.
        let mut non_empty = Vec::new();
        for table in &table_names {
            let rows = txn.count_documents(table)?;
            if rows > 0 {
                non_empty.push(format!("{table}: {rows}"));
            }
        }
        if !non_empty.is_empty() {
            if !replace {
                return Err(anyhow::Error::from(MigrateError::TargetNotEmpty {
                    tables: non_empty.join(", "),
                }));
            }
            for table in &table_names {
                txn.clear_table(table)?;
            }
        }
        let mut written: BTreeMap<String, u64> = BTreeMap::new();
        let mut n = 0u64;
        loop {
            match receiver.recv() {
                Ok(Chunk::Documents(docs)) => {
                    for (table, doc) in docs {
                        txn.insert_imported(
                            &table,
                            Some(doc.id),
                            Some(doc.creation_time),
                            doc.fields,
                        )
                        .map_err(|e| {
                            anyhow::anyhow!("{table} document {}: {}: {e}", doc.id, e.code())
                        })?;
                        *written.entry(table).or_insert(0) += 1;
                        n += 1;
                    }
                    shown.set_position(n);
                }
                Ok(Chunk::End) => break,
                Ok(Chunk::Failed(message)) => {
                    return Err(MigrateError::SourceFailed(message).into())
                }
                Err(_) => {
                    return Err(
                        MigrateError::SourceFailed("the reading thread stopped".into()).into(),
                    )
                }
            }
        }
        Ok::<_, anyhow::Error>(written)
    });
    // The reader ends on its own once the writer stops taking chunks (its sends fail).
    let _ = reader.join();
    let (written, _commit) = match written {
        Ok(done) => done,
        Err(e) => {
            progress.abandon();
            return Err(e.context("the migration was rolled back; the target is as it was"));
        }
    };
    progress.finish();
    for (table, rows) in &expected {
        let copied = written.get(table).copied().unwrap_or(0);
        if copied != *rows {
            return Err(MigrateError::CountMismatch {
                table: table.clone(),
                copied,
                expected: *rows,
            }
            .into());
        }
    }
    Ok(MigrateSummary {
        documents: total,
        tables: expected,
        files_copied,
    })
}

/// Ids carry their table's number: the target must number every table as the source does.
fn check_table_numbers(source: &[TableEntry], target: &[TableEntry]) -> Result<(), MigrateError> {
    for table in source {
        let Some(other) = target.iter().find(|t| t.name == table.name) else {
            return Err(MigrateError::MissingTable(table.name.clone()));
        };
        if other.number != table.number {
            return Err(MigrateError::TableNumbersDiffer {
                table: table.name.clone(),
                source_number: table.number.0,
                target_number: other.number.0,
            });
        }
    }
    Ok(())
}

/// The reading thread: every document of every table, from one snapshot, in chunks.
fn read_all(store: &Store, tables: &[String], sender: &mpsc::SyncSender<Chunk>) {
    let outcome = (|| -> Result<(), ReadStop> {
        let snapshot = store.read()?;
        let mut chunk = Vec::with_capacity(CHUNK);
        for table in tables {
            snapshot.for_each_document(table, &mut |doc: Document| {
                chunk.push((table.clone(), doc));
                if chunk.len() == CHUNK {
                    let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
                    sender
                        .send(Chunk::Documents(full))
                        .map_err(|_| ReadStop::WriterGone)?;
                }
                Ok::<_, ReadStop>(Visit::Continue)
            })?;
        }
        if !chunk.is_empty() {
            sender
                .send(Chunk::Documents(chunk))
                .map_err(|_| ReadStop::WriterGone)?;
        }
        Ok(())
    })();
    let last = match outcome {
        Ok(()) => Chunk::End,
        Err(ReadStop::Store(e)) => Chunk::Failed(format!("{}: {e}", e.code())),
        // The writer gave up (it refused the target); it says why.
        Err(ReadStop::WriterGone) => return,
    };
    let _ = sender.send(last);
}

/// Why the reading thread stopped early.
enum ReadStop {
    Store(StoreError),
    WriterGone,
}

impl From<StoreError> for ReadStop {
    fn from(e: StoreError) -> Self {
        ReadStop::Store(e)
    }
}

/// Copy the files the source's `_storage` rows name from one data dir to another, each checked
/// against its SHA-256. Files already there are skipped.
fn copy_files(source: &Store, from: &Path, to: &Path) -> anyhow::Result<u64> {
    let blobs_of = |dir: &Path| dir.join("storage").join("blobs");
    let from_blobs = BlobDir::open_existing(&blobs_of(from));
    let to_blobs = BlobDir::open(&blobs_of(to))
        .map_err(|e| anyhow::anyhow!("could not open the stored files in {}: {e}", to.display()))?;
    let mut wanted: Vec<Sha256> = Vec::new();
    source
        .read()?
        .for_each_document("_storage", &mut |doc: Document| {
            if let Some(sha) = doc
                .fields
                .get("sha256")
                .and_then(|v| v.as_str())
                .and_then(Sha256::from_base64)
            {
                wanted.push(sha);
            }
            Ok::<_, StoreError>(Visit::Continue)
        })?;
    let progress = bar(wanted.len() as u64, "copying files");
    let mut copied = 0;
    for sha in &wanted {
        progress.inc(1);
        if to_blobs.contains(sha) {
            continue;
        }
        let mut file = from_blobs
            .open_blob(sha)
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "the stored file {} is missing from {}",
                    sha.to_hex(),
                    from.display()
                )
            })?;
        let mut writer = to_blobs
            .writer(u64::MAX)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = std::io::Read::read(&mut file, &mut buf)?;
            if n == 0 {
                break;
            }
            writer
                .write(&buf[..n])
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        let staged = writer.finish().map_err(|e| anyhow::anyhow!("{e}"))?;
        if staged.sha256 != *sha {
            anyhow::bail!(
                "the stored file {} in {} does not match its digest",
                sha.to_hex(),
                from.display()
            );
        }
        to_blobs
            .publish(staged)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        copied += 1;
    }
    progress.finish();
    Ok(copied)
}
