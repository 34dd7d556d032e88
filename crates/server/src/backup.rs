//! `tickethub backup` and `tickethub restore`.
//!
//! A backup is a directory:
//! - `tickethub.sqlite3`: the database at one commit, copied with SQLite's online backup API
//!   while the server goes on serving (see `tickethub_store::backup`);
//! - `storage/blobs/`: every stored file that commit references, checked against its SHA-256 as
//!   it is copied;
//! - `backup.json`: the manifest, written last, so a backup that was interrupted has none and
//!   `restore` refuses it.
//!
//! `--to` a path ending in `.sqlite3` or `.db` writes the database file alone.
//!
//! Restore refuses a data directory a server is using (it takes the same lock a server does, and
//! holds it until done) and one that already holds a database unless `--force`. It copies the
//! database under a temporary name, runs `PRAGMA integrity_check` on the copy, and only then puts
//! it in place.

use std::fs;
use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use tickethub_blobs::{BlobDir, Sha256};
use tickethub_store::{
    check_database_file, integrity_problems, BackupPace, BackupSnapshot, DataDirLock,
    DataFileState, DB_FILE, FORMAT_VERSION,
};

/// The manifest inside a backup directory, written last.
pub const MANIFEST_FILE: &str = "backup.json";
/// What the manifest's `format` field says.
const MANIFEST_FORMAT: &str = "tickethub-backup";
/// Stored files, relative to a data directory (the runtime keeps them there).
const BLOBS_DIR: [&str; 2] = ["storage", "blobs"];
/// Read buffer for copying stored files.
const COPY_BUFFER_BYTES: usize = 256 * 1024;

#[derive(Args, Debug, Clone)]
pub struct BackupArgs {
    /// The data directory of the server to back up (it may be running).
    #[arg(long, default_value = "./tickethub-data")]
    pub data_dir: PathBuf,
    /// Only to refuse clearly: a deployment on Postgres is backed up with pg_dump.
    #[command(flatten)]
    pub database: crate::database::DatabaseArgs,
    /// Where to write the backup: a new (or empty) directory, or a file ending in `.sqlite3` or
    /// `.db` for the database alone (without stored files).
    #[arg(long)]
    pub to: PathBuf,
}

#[derive(Args, Debug, Clone)]
pub struct RestoreArgs {
    /// A backup directory made by `tickethub backup` (or a single `.sqlite3` backup file).
    #[arg(long)]
    pub from: PathBuf,
    /// The data directory to restore into. No server may be using it.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Replace the database (and stored files) a data directory already holds.
    #[arg(long)]
    pub force: bool,
    /// Only to refuse clearly: a deployment on Postgres is restored with pg_restore / psql.
    #[command(flatten)]
    pub database: crate::database::DatabaseArgs,
}

/// Backup and restore copy the SQLite file; a deployment on Postgres has none. Postgres's own
/// tools do that job there, and know how to do it consistently and online.
fn refuse_postgres(database: &crate::database::DatabaseArgs, what: &str) -> anyhow::Result<()> {
    let Some(pg) = database.postgres() else {
        return Ok(());
    };
    bail!(
        "tickethub {what} works on the SQLite file of a data dir, and this deployment keeps its \
         data in {}. Use PostgreSQL's own tools: `pg_dump --format=custom --schema={schema} \
         <database URL> > tickethub.dump` to back it up, `pg_restore --dbname=<database URL> \
         tickethub.dump` to restore it (into a database without that schema), and copy the data \
         dir's storage/ directory for the stored files.",
        crate::database::describe(&tickethub_store::StoreLocation::Postgres(pg.clone())),
        schema = pg.schema,
    )
}

/// The database path and the blob directory of a data directory (or backup directory).
fn blobs_in(dir: &Path) -> PathBuf {
    BLOBS_DIR
        .iter()
        .fold(dir.to_path_buf(), |p, part| p.join(part))
}

/// Whether `--to` names a single database file rather than a directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BackupShape {
    /// Database, stored files, manifest.
    Directory,
    /// The database file alone.
    DatabaseFile,
}

fn shape_of(to: &Path) -> BackupShape {
    match to.extension().and_then(|e| e.to_str()) {
        Some("sqlite3" | "db") => BackupShape::DatabaseFile,
        _ => BackupShape::Directory,
    }
}

pub fn run_backup(args: BackupArgs) -> anyhow::Result<()> {
    refuse_postgres(&args.database, "backup")?;
    let started = Instant::now();
    let db = args.data_dir.join(DB_FILE);
    let shape = shape_of(&args.to);
    let db_target = match shape {
        BackupShape::DatabaseFile => {
            if args.to.exists() {
                bail!(
                    "the backup target {} already exists; choose a new name",
                    args.to.display()
                );
            }
            args.to.clone()
        }
        BackupShape::Directory => {
            if args.to.exists() && !is_empty_dir(&args.to)? {
                bail!(
                    "the backup directory {} is not empty; choose a new one",
                    args.to.display()
                );
            }
            fs::create_dir_all(&args.to)
                .with_context(|| format!("could not create {}", args.to.display()))?;
            args.to.join(DB_FILE)
        }
    };

    // Everything below reads this one snapshot.
    let snapshot = BackupSnapshot::begin(&db)?;
    let last_commit = snapshot.last_commit()?;
    let hashes = snapshot.stored_file_hashes()?;

    let mut files = CopiedFiles::default();
    match shape {
        BackupShape::Directory => {
            files = copy_stored_files(&args.data_dir, &args.to, &hashes)?;
        }
        BackupShape::DatabaseFile if !hashes.is_empty() => eprintln!(
            "tickethub backup: note: {} stored files are not in a single-file backup; back up to a directory to include them",
            hashes.len()
        ),
        BackupShape::DatabaseFile => {}
    }

    let bar = progress_bar("database", "pages");
    let summary = snapshot
        .copy_to(&db_target, BackupPace::default(), &mut |p| {
            bar.set_length(p.pages_total);
            bar.set_position(p.pages_done);
        })
        .with_context(|| format!("could not back up {}", db.display()))?;
    bar.finish_and_clear();
    drop(snapshot);

    if shape == BackupShape::Directory {
        let manifest = serde_json::json!({
            "format": MANIFEST_FORMAT,
            "formatVersion": FORMAT_VERSION,
            "tickethubVersion": env!("CARGO_PKG_VERSION"),
            "createdUnixMs": SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0),
            // A string: the nanosecond timestamp does not fit a JSON number exactly.
            "lastCommitTs": last_commit.0.to_string(),
            "database": { "file": DB_FILE, "bytes": summary.bytes, "pages": summary.pages },
            "storedFiles": { "count": files.count, "bytes": files.bytes },
        });
        write_durably(
            &args.to.join(MANIFEST_FILE),
            serde_json::to_vec_pretty(&manifest)?.as_slice(),
        )?;
    }
    sync_dir(args.to.parent().unwrap_or(Path::new(".")))?;
    println!(
        "tickethub backup: {} written in {:.1}s: database {} bytes at commit {}, {} stored files ({} bytes)",
        args.to.display(),
        started.elapsed().as_secs_f64(),
        summary.bytes,
        last_commit.0,
        files.count,
        files.bytes
    );
    Ok(())
}

#[derive(Default)]
struct CopiedFiles {
    count: u64,
    bytes: u64,
}

/// Copy the stored files `hashes` names from a data directory's blob directory into the backup's,
/// checking each one's content against its name.
fn copy_stored_files(
    data_dir: &Path,
    backup_dir: &Path,
    hashes: &[String],
) -> anyhow::Result<CopiedFiles> {
    let mut copied = CopiedFiles::default();
    if hashes.is_empty() {
        return Ok(copied);
    }
    let source = BlobDir::open_existing(&blobs_in(data_dir));
    let target = BlobDir::open(&blobs_in(backup_dir))
        .with_context(|| format!("could not create {}", blobs_in(backup_dir).display()))?;
    let bar = progress_bar("stored files", "files");
    bar.set_length(hashes.len() as u64);
    for text in hashes {
        let sha = Sha256::from_base64(text)
            .with_context(|| format!("a _storage row has a malformed sha256 {text:?}"))?;
        let Some(file) = source.open_blob(&sha)? else {
            bail!(
                "the stored file {} was removed while the backup ran (it was deleted after the backup began); run the backup again",
                sha.to_hex()
            );
        };
        copied.bytes += copy_blob(file, &target, &sha)?;
        copied.count += 1;
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(copied)
}

/// Stream one blob into `target`, refusing content that does not match `expected`.
fn copy_blob(mut file: fs::File, target: &BlobDir, expected: &Sha256) -> anyhow::Result<u64> {
    let mut writer = target.writer(u64::MAX)?;
    let mut buf = vec![0u8; COPY_BUFFER_BYTES];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        writer.write(&buf[..n])?;
    }
    let staged = writer.finish()?;
    if staged.sha256 != *expected {
        bail!(
            "the stored file {} is damaged: its content hashes to {}",
            expected.to_hex(),
            staged.sha256.to_hex()
        );
    }
    let size = staged.size;
    target.publish(staged)?;
    Ok(size)
}

pub fn run_restore(args: RestoreArgs) -> anyhow::Result<()> {
    refuse_postgres(&args.database, "restore")?;
    let started = Instant::now();
    let (db_source, blob_source) = if args.from.is_dir() {
        let manifest = args.from.join(MANIFEST_FILE);
        if !manifest.is_file() {
            bail!(
                "{} is not a complete tickethub backup: it has no {MANIFEST_FILE} (a backup writes it last, so this one did not finish)",
                args.from.display()
            );
        }
        let text = fs::read(&manifest)
            .with_context(|| format!("could not read {}", manifest.display()))?;
        let parsed: serde_json::Value = serde_json::from_slice(&text)
            .with_context(|| format!("{} is not valid JSON", manifest.display()))?;
        if parsed.get("format").and_then(|f| f.as_str()) != Some(MANIFEST_FORMAT) {
            bail!("{} is not a tickethub backup manifest", manifest.display());
        }
        (args.from.join(DB_FILE), Some(blobs_in(&args.from)))
    } else if args.from.is_file() {
        (args.from.clone(), None)
    } else {
        bail!("there is no backup at {}", args.from.display());
    };
    match check_database_file(&db_source)? {
        DataFileState::Current | DataFileState::Unstamped => {}
        DataFileState::New => bail!("the backup's database {} is empty", db_source.display()),
    }

    // The server's own lock: while we hold it no server can start on the directory, and if one
    // is running we are refused here, before anything is touched.
    let _lock = DataDirLock::acquire(&args.data_dir)?;
    let db_target = args.data_dir.join(DB_FILE);
    let blob_target = blobs_in(&args.data_dir);
    let holds_data = db_target.exists()
        || sibling(&db_target, "-wal").exists()
        || (blob_target.is_dir() && !BlobDir::open_existing(&blob_target).list()?.is_empty());
    if holds_data && !args.force {
        bail!(
            "the data directory {} already holds a database; restore --force replaces it",
            args.data_dir.display()
        );
    }

    // The database, under a temporary name until it has passed the integrity check.
    let staging = sibling(&db_target, ".restoring");
    let _ = fs::remove_file(&staging);
    copy_file_durably(&db_source, &staging)?;
    let problems = integrity_problems(&staging)?;
    if !problems.is_empty() {
        let _ = fs::remove_file(&staging);
        bail!(
            "the backup's database {} fails PRAGMA integrity_check: {}",
            db_source.display(),
            problems.into_iter().take(3).collect::<Vec<_>>().join("; ")
        );
    }

    let mut files = CopiedFiles::default();
    if let Some(blob_source) = blob_source.filter(|p| p.is_dir()) {
        let source = BlobDir::open_existing(&blob_source);
        let target = BlobDir::open(&blob_target)
            .with_context(|| format!("could not create {}", blob_target.display()))?;
        let all = source.list()?;
        let bar = progress_bar("stored files", "files");
        bar.set_length(all.len() as u64);
        for sha in all {
            if let Some(file) = source.open_blob(&sha)? {
                files.bytes += copy_blob(file, &target, &sha)?;
                files.count += 1;
            }
            bar.inc(1);
        }
        bar.finish_and_clear();
    }

    // The old database's WAL would be replayed over the restored file: it goes first.
    for suffix in ["-wal", "-shm"] {
        match fs::remove_file(sibling(&db_target, suffix)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).context("could not remove the old database's WAL"),
        }
    }
    fs::rename(&staging, &db_target).with_context(|| {
        format!(
            "could not move the restored database to {}",
            db_target.display()
        )
    })?;
    sync_dir(&args.data_dir)?;
    println!(
        "tickethub restore: {} restored into {} in {:.1}s: integrity_check ok, {} stored files ({} bytes)",
        args.from.display(),
        args.data_dir.display(),
        started.elapsed().as_secs_f64(),
        files.count,
        files.bytes
    );
    Ok(())
}

/// `path` with `suffix` appended to its file name (`x.sqlite3` → `x.sqlite3-wal`).
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn is_empty_dir(dir: &Path) -> anyhow::Result<bool> {
    if !dir.is_dir() {
        bail!("{} exists and is not a directory", dir.display());
    }
    Ok(fs::read_dir(dir)?.next().is_none())
}

fn copy_file_durably(from: &Path, to: &Path) -> anyhow::Result<()> {
    fs::copy(from, to)
        .with_context(|| format!("could not copy {} to {}", from.display(), to.display()))?;
    fs::File::open(to)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("could not sync {}", to.display()))
}

/// Write `bytes` to `path` through a temporary file, fsync, rename: `path` is whole or absent.
fn write_durably(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let temp = sibling(path, ".tmp");
    fs::write(&temp, bytes).with_context(|| format!("could not write {}", temp.display()))?;
    fs::File::open(&temp)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("could not sync {}", temp.display()))?;
    fs::rename(&temp, path).with_context(|| format!("could not write {}", path.display()))?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("could not sync the directory {}", dir.display()))
}

/// A progress bar on stderr when it is a terminal; otherwise nothing is drawn (logs and CI output
/// stay clean, and the summary line says what happened).
fn progress_bar(what: &'static str, unit: &'static str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(0);
    let template =
        format!("{what:>12} [{{bar:40}}] {{pos}}/{{len}} {unit} ({{percent}}%, {{eta}} left)");
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_ending_in_sqlite3_or_db_is_a_single_file_backup() {
        assert_eq!(
            shape_of(Path::new("/b/x.sqlite3")),
            BackupShape::DatabaseFile
        );
        assert_eq!(shape_of(Path::new("x.db")), BackupShape::DatabaseFile);
        assert_eq!(shape_of(Path::new("/b/2026-12-03")), BackupShape::Directory);
        assert_eq!(shape_of(Path::new("/b/nightly.d")), BackupShape::Directory);
    }
}
