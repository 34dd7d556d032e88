//! `tickethub export` and `tickethub import`: the same ZIP snapshots as `npx convex export` /
//! `import`, done offline on a data dir (the server must be stopped: both take the data dir's
//! lock, and on Postgres the database's writer lease), with progress bars.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use tickethub_blobs::BlobDir;
use tickethub_runtime::snapshot::{
    apply_import, plan_import, write_export, ImportFormat, ImportMode, ImportSource, IncludeStorage,
};
use tickethub_runtime::Runtime;
use tickethub_store::{DataDirLock, Schema, Store, StoreLocation, StoreOptions};

use crate::database::{describe, DatabaseArgs};

/// `tickethub export`.
#[derive(Args, Debug, Clone)]
pub struct ExportArgs {
    /// The data dir of a stopped server.
    #[arg(long, default_value = "./tickethub-data")]
    pub data_dir: PathBuf,
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// The ZIP to write (Convex's snapshot format).
    #[arg(long)]
    pub path: PathBuf,
    /// Also write the stored files (`_storage`).
    #[arg(long)]
    pub include_file_storage: bool,
    /// A schema.toml to use instead of the one built into the binary.
    #[arg(long)]
    pub schema: Option<PathBuf>,
}

/// `tickethub import`.
#[derive(Args, Debug, Clone)]
pub struct ImportArgs {
    /// The data dir of a stopped server.
    #[arg(long, default_value = "./tickethub-data")]
    pub data_dir: PathBuf,
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// The table to import into (JSONL, JSON or CSV files; not with a ZIP).
    #[arg(long)]
    pub table: Option<String>,
    /// zip, jsonLines, jsonArray or csv; guessed from the extension when absent.
    #[arg(long)]
    pub format: Option<String>,
    /// Add to the documents already there.
    #[arg(long, conflicts_with_all = ["replace", "replace_all"])]
    pub append: bool,
    /// Replace the documents of the tables the import holds.
    #[arg(long, conflicts_with = "replace_all")]
    pub replace: bool,
    /// Replace every table: those the import does not hold end up empty.
    #[arg(long)]
    pub replace_all: bool,
    /// Do not ask before deleting documents.
    #[arg(short = 'y', long)]
    pub yes: bool,
    /// A schema.toml to use instead of the one built into the binary.
    #[arg(long)]
    pub schema: Option<PathBuf>,
    /// The file to import.
    pub path: PathBuf,
}

/// The server's schema: the app's (embedded, or `--schema`) plus the system tables.
pub(crate) fn server_schema(
    schema_file: Option<&Path>,
    default_schema: &str,
) -> anyhow::Result<Schema> {
    let text = match schema_file {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("could not read the schema file {}", path.display()))?,
        None => default_schema.to_string(),
    };
    let mut schema = Schema::from_toml(&text).map_err(|e| anyhow::anyhow!("{e}"))?;
    for table in Runtime::system_tables() {
        schema.add_system_table(table);
    }
    Ok(schema)
}

/// Open an existing deployment's store offline. Its data dir's lock is taken first (so no server
/// is running on it); on Postgres the store also takes the database's writer lease, which a
/// running server holds (`DatabaseInUse`).
pub(crate) fn open_store(location: &StoreLocation, schema: Schema) -> anyhow::Result<Store> {
    if let StoreLocation::Sqlite { dir } = location {
        if !dir.join(tickethub_store::store::DB_FILE).exists() {
            anyhow::bail!("{} holds no tickethub database", dir.display());
        }
    }
    Store::open_at(location, schema, StoreOptions::default()).map_err(|e| {
        anyhow::anyhow!(
            "could not open the database ({}): {}: {e}",
            describe(location),
            e.code()
        )
    })
}

/// The data dir's lock, for commands that must not run beside a server.
pub(crate) fn lock_data_dir(data_dir: &Path) -> anyhow::Result<DataDirLock> {
    DataDirLock::acquire(data_dir).map_err(|e| {
        anyhow::anyhow!(
            "{e} (stop the server first, or use `npx convex export` / `import` against it)"
        )
    })
}

/// The deployment's store, with the server's schema, after taking the data dir's lock.
fn open(
    data_dir: &Path,
    database: &DatabaseArgs,
    schema_file: Option<&Path>,
    default_schema: &str,
) -> anyhow::Result<(DataDirLock, Store)> {
    let schema = server_schema(schema_file, default_schema)?;
    let location = database.location(data_dir);
    if let StoreLocation::Sqlite { dir } = &location {
        // Before the lock, which would create the data dir.
        if !dir.join(tickethub_store::store::DB_FILE).exists() {
            anyhow::bail!("{} holds no tickethub database", dir.display());
        }
    }
    let lock = lock_data_dir(data_dir)?;
    let store = open_store(&location, schema)?;
    Ok((lock, store))
}

fn blob_dir(data_dir: &Path) -> anyhow::Result<BlobDir> {
    BlobDir::open(&data_dir.join("storage").join("blobs"))
        .map_err(|e| anyhow::anyhow!("could not open the stored files: {e}"))
}

pub(crate) fn bar(total: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{{spinner}} {what} [{{bar:40}}] {{pos}}/{{len}} documents ({{per_sec}}, {{eta}} left)"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar
}

pub fn export(args: ExportArgs, default_schema: &str) -> anyhow::Result<()> {
    let (_lock, store) = open(
        &args.data_dir,
        &args.database,
        args.schema.as_deref(),
        default_schema,
    )?;
    let storage = if args.include_file_storage {
        IncludeStorage::Yes
    } else {
        IncludeStorage::No
    };
    let blobs = match storage {
        IncludeStorage::Yes => Some(blob_dir(&args.data_dir)?),
        IncludeStorage::No => None,
    };
    // Written to a temp file and renamed: an interrupted export leaves no half ZIP behind.
    let temp = args.path.with_extension("zip.partial");
    let file = std::fs::File::create(&temp)
        .with_context(|| format!("could not create {}", temp.display()))?;
    let progress = bar(0, "exporting");
    let summary = write_export(&store, blobs.as_ref(), file, storage, &mut |p| {
        progress.set_length(p.documents_total);
        progress.set_position(p.documents_written);
    });
    let summary = match summary {
        Ok(summary) => summary,
        Err(e) => {
            let _ = std::fs::remove_file(&temp);
            progress.abandon();
            anyhow::bail!("export failed: {e}");
        }
    };
    std::fs::rename(&temp, &args.path)
        .with_context(|| format!("could not write {}", args.path.display()))?;
    progress.finish();
    println!(
        "Exported {} documents from {} tables{} at timestamp {} to {}",
        summary.documents,
        summary.tables.len(),
        if summary.files > 0 {
            format!(" and {} files", summary.files)
        } else {
            String::new()
        },
        summary.ts.0,
        args.path.display()
    );
    store.close().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}

pub fn import(args: ImportArgs, default_schema: &str) -> anyhow::Result<()> {
    let format = match &args.format {
        Some(name) => ImportFormat::parse(name).ok_or_else(|| {
            anyhow::anyhow!("unknown format {name:?}: use zip, jsonLines, jsonArray or csv")
        })?,
        None => ImportFormat::from_extension(&args.path).ok_or_else(|| {
            anyhow::anyhow!(
                "cannot tell the format of {} from its extension; pass --format",
                args.path.display()
            )
        })?,
    };
    let mode = if args.append {
        ImportMode::Append
    } else if args.replace {
        ImportMode::Replace
    } else if args.replace_all {
        ImportMode::ReplaceAll
    } else {
        ImportMode::RequireEmpty
    };
    let source = ImportSource {
        display_name: args
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "the file".into()),
        path: args.path.clone(),
        format,
        table: args.table.clone(),
        mode,
        max_uncompressed_bytes: *tickethub_knobs::IMPORT_MAX_UNCOMPRESSED_BYTES,
    };
    let (_lock, store) = open(
        &args.data_dir,
        &args.database,
        args.schema.as_deref(),
        default_schema,
    )?;
    let checking = ProgressBar::new_spinner();
    checking.set_message(format!("checking {}", args.path.display()));
    checking.enable_steady_tick(Duration::from_millis(100));
    let plan = plan_import(&store, &source);
    checking.finish_and_clear();
    let plan = plan.map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("{}", plan.message_to_confirm());
    if plan.rows_deleted() > 0 && !args.yes {
        print!(
            "This deletes {} documents. Perform import? [y/N] ",
            plan.rows_deleted()
        );
        std::io::stdout().flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            println!("Nothing was imported.");
            return Ok(());
        }
    }
    let blobs = if plan.files > 0 {
        Some(blob_dir(&args.data_dir)?)
    } else {
        None
    };
    let progress = bar(plan.rows(), "importing");
    let shown = progress.clone();
    let outcome = apply_import(
        &store,
        blobs.as_ref(),
        &source,
        &plan,
        Arc::new(move |n| shown.set_position(n)),
    );
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(e) => {
            progress.abandon();
            anyhow::bail!("import failed, nothing was imported: {e}");
        }
    };
    progress.finish();
    println!(
        "Imported {} documents into {} tables at timestamp {}",
        outcome.rows_written,
        plan.tables.iter().filter(|t| t.rows > 0).count(),
        outcome.ts.0
    );
    store.close().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}
