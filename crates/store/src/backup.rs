//! Online backup: a consistent copy of a database that a server is writing to.
//!
//! SQLite's backup API copies pages in steps. On its own it restarts whenever another connection
//! writes between two steps, which against a busy server means it never finishes. So
//! [`BackupSnapshot`] opens a read transaction first and keeps it open: every step then reads
//! the same snapshot (WAL mode keeps it intact while the writer goes on appending), the backup
//! never restarts, and the copy is exactly the database at one commit. Between steps it pauses,
//! so the server keeps most of the disk and the CPUs.
//!
//! It never takes the data directory's lock and never writes to the source: a read-only
//! connection is all it uses.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use tickethub_knobs as knobs;
use tickethub_value::Value;

use crate::codec::decode_fields;
use crate::datafile::{check_database_file, DataFileError};
use crate::Timestamp;

/// The system table that names stored files by SHA-256 (the runtime defines its rows).
const STORAGE_TABLE: &str = "_storage";

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(transparent)]
    DataFile(#[from] DataFileError),
    #[error("there is no database at {}", path.display())]
    NoDatabase { path: PathBuf },
    #[error("the backup target {} already exists; choose a new name or remove it", path.display())]
    TargetExists { path: PathBuf },
    #[error("the disk holding {} is full", path.display())]
    DiskFull { path: PathBuf },
    #[error("the stored file row {id} does not decode: {reason}")]
    CorruptRow { id: String, reason: String },
    #[error("reading {}: {source}", path.display())]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("writing {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl BackupError {
    fn sqlite(path: &Path) -> impl Fn(rusqlite::Error) -> BackupError + '_ {
        move |source| match source.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DiskFull) => BackupError::DiskFull {
                path: path.to_path_buf(),
            },
            _ => BackupError::Sqlite {
                path: path.to_path_buf(),
                source,
            },
        }
    }
}

/// How fast to copy. Defaults from the knobs.
#[derive(Clone, Copy, Debug)]
pub struct BackupPace {
    /// Pages per step. At least 1.
    pub step_pages: usize,
    /// Pause after each step.
    pub pause: Duration,
}

impl Default for BackupPace {
    fn default() -> Self {
        BackupPace {
            step_pages: *knobs::BACKUP_STEP_PAGES,
            pause: *knobs::BACKUP_STEP_PAUSE,
        }
    }
}

/// How far a copy has got, after each step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackupProgress {
    pub pages_done: u64,
    pub pages_total: u64,
}

/// What a finished copy holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackupSummary {
    pub pages: u64,
    pub bytes: u64,
}

/// One read transaction on a database: everything read through it (the stored files' hashes,
/// the pages copied) is the database at one commit.
pub struct BackupSnapshot {
    conn: Connection,
    path: PathBuf,
}

impl BackupSnapshot {
    /// Open `db_path` read-only and begin the snapshot. The file is checked first (a damaged or
    /// foreign file is refused, as at server start).
    pub fn begin(db_path: &Path) -> Result<BackupSnapshot, BackupError> {
        if !db_path.is_file() {
            return Err(BackupError::NoDatabase {
                path: db_path.to_path_buf(),
            });
        }
        check_database_file(db_path)?;
        let err = BackupError::sqlite(db_path);
        let conn = Connection::open_with_flags(
            db_path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(&err)?;
        // A busy writer may hold the WAL index briefly (e.g. while it checkpoints).
        conn.busy_timeout(Duration::from_secs(5)).map_err(&err)?;
        conn.pragma_update(None, "mmap_size", *knobs::MMAP_BYTES)
            .map_err(&err)?;
        // `BEGIN` alone takes no snapshot; the first read does, and the open transaction keeps
        // it until the copy is done.
        conn.execute_batch("BEGIN; SELECT count(*) FROM sqlite_schema;")
            .map_err(&err)?;
        Ok(BackupSnapshot {
            conn,
            path: db_path.to_path_buf(),
        })
    }

    /// The last commit's timestamp in the snapshot.
    pub fn last_commit(&self) -> Result<Timestamp, BackupError> {
        let ts: Option<i64> = self
            .conn
            .query_row("SELECT value FROM meta WHERE key = 'last_ts'", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(BackupError::sqlite(&self.path))?;
        Ok(Timestamp(ts.unwrap_or(0) as u64))
    }

    /// The SHA-256 (base64, as in `_storage.sha256`) of every stored file the snapshot
    /// references: what a backup must copy beside the database.
    pub fn stored_file_hashes(&self) -> Result<Vec<String>, BackupError> {
        let err = BackupError::sqlite(&self.path);
        let number: Option<u32> = self
            .conn
            .query_row(
                "SELECT number FROM tables WHERE name = ?1",
                [STORAGE_TABLE],
                |r| r.get(0),
            )
            .optional()
            .map_err(&err)?;
        let Some(number) = number else {
            return Ok(Vec::new());
        };
        // A table's rows are one key range: its number, big endian, then the internal id.
        let start = number.to_be_bytes().to_vec();
        let end = (u64::from(number) + 1) as u32;
        let mut stmt = self
            .conn
            .prepare("SELECT id, body FROM documents WHERE id >= ?1 AND id < ?2")
            .map_err(&err)?;
        let mut rows = stmt
            .query(rusqlite::params![start, end.to_be_bytes().to_vec()])
            .map_err(&err)?;
        let mut hashes = Vec::new();
        while let Some(row) = rows.next().map_err(&err)? {
            let id: Vec<u8> = row.get(0).map_err(&err)?;
            let body: Vec<u8> = row.get(1).map_err(&err)?;
            let corrupt = |reason: String| BackupError::CorruptRow {
                id: id.iter().map(|b| format!("{b:02x}")).collect(),
                reason,
            };
            let fields = decode_fields(&body).map_err(|e| corrupt(format!("{e:?}")))?;
            match fields.get("sha256") {
                Some(Value::String(sha)) => hashes.push(sha.to_string()),
                _ => return Err(corrupt("no sha256 field".into())),
            }
        }
        Ok(hashes)
    }

    /// Copy the snapshot to a new file `dest` (which must not exist), `pace.step_pages` at a
    /// time, pausing `pace.pause` between steps, calling `progress` after each. The copy is
    /// fsynced before this returns.
    pub fn copy_to(
        &self,
        dest: &Path,
        pace: BackupPace,
        progress: &mut dyn FnMut(BackupProgress),
    ) -> Result<BackupSummary, BackupError> {
        if dest.exists() {
            return Err(BackupError::TargetExists {
                path: dest.to_path_buf(),
            });
        }
        let dest_err = BackupError::sqlite(dest);
        let mut out = Connection::open(dest).map_err(&dest_err)?;
        // The copy is made durable once, at the end (below), not page by page.
        out.pragma_update(None, "synchronous", "OFF")
            .map_err(&dest_err)?;
        let step_pages = i32::try_from(pace.step_pages.max(1)).unwrap_or(i32::MAX);
        let pages = {
            let backup = Backup::new(&self.conn, &mut out).map_err(&dest_err)?;
            loop {
                let step = backup.step(step_pages).map_err(&dest_err)?;
                let p = backup.progress();
                let total = p.pagecount.max(0) as u64;
                progress(BackupProgress {
                    pages_done: total.saturating_sub(p.remaining.max(0) as u64),
                    pages_total: total,
                });
                match step {
                    StepResult::Done => break total,
                    // Only the destination can be locked (nobody else knows it); the source is
                    // read in our own transaction. Either way: wait and go on.
                    StepResult::More | StepResult::Busy | StepResult::Locked => {
                        if !pace.pause.is_zero() {
                            std::thread::sleep(pace.pause);
                        }
                    }
                    // `StepResult` is non-exhaustive; treat anything new like `More`.
                    _ => std::thread::sleep(pace.pause.max(Duration::from_millis(1))),
                }
            }
        };
        drop(out);
        let io_err = |source: std::io::Error| {
            if source.kind() == std::io::ErrorKind::StorageFull {
                BackupError::DiskFull {
                    path: dest.to_path_buf(),
                }
            } else {
                BackupError::Io {
                    path: dest.to_path_buf(),
                    source,
                }
            }
        };
        let file = std::fs::File::open(dest).map_err(io_err)?;
        file.sync_all().map_err(io_err)?;
        let bytes = file.metadata().map_err(io_err)?.len();
        Ok(BackupSummary { pages, bytes })
    }
}

/// `PRAGMA integrity_check` on a database file that nothing else uses (a restored copy): `Ok`
/// with SQLite's findings, empty when the file is sound.
pub fn integrity_problems(db_path: &Path) -> Result<Vec<String>, BackupError> {
    let err = BackupError::sqlite(db_path);
    let conn = Connection::open_with_flags(
        db_path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(&err)?;
    let mut stmt = conn.prepare("PRAGMA integrity_check").map_err(&err)?;
    let found = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .map_err(&err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(&err)?;
    Ok(found.into_iter().filter(|line| line != "ok").collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Schema, Store, StoreOptions, DB_FILE};

    const SCHEMA: &str = r#"
[tables.notes]
fields = { text = "string" }
"#;

    fn insert(store: &Store, text: String) {
        store
            .mutate(move |txn| -> Result<(), crate::StoreError> {
                let mut fields = tickethub_value::Object::new();
                fields.insert("text".into(), Value::from(text));
                txn.insert("notes", fields)?;
                Ok(())
            })
            .unwrap();
    }

    fn count_notes(dir: &Path) -> usize {
        let store = Store::open(
            dir,
            Schema::from_toml(SCHEMA).unwrap(),
            StoreOptions::default(),
        )
        .unwrap();
        let n = store.read().unwrap().count("notes").unwrap() as usize;
        store.close().unwrap();
        n
    }

    #[test]
    fn a_backup_taken_during_writes_is_the_snapshot_it_began_with() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(
            dir.path(),
            Schema::from_toml(SCHEMA).unwrap(),
            StoreOptions::default(),
        )
        .unwrap();
        for i in 0..500 {
            insert(&store, format!("{i:0>2000}"));
        }
        let snapshot = BackupSnapshot::begin(&dir.path().join(DB_FILE)).unwrap();
        // Written after the snapshot began: not in the copy, and it must not restart the copy.
        let mut steps = 0;
        let out = tempfile::tempdir().unwrap();
        let summary = snapshot
            .copy_to(
                &out.path().join(DB_FILE),
                BackupPace {
                    step_pages: 16,
                    pause: Duration::ZERO,
                },
                &mut |_| {
                    steps += 1;
                    if steps % 4 == 0 {
                        insert(&store, "later".into());
                    }
                },
            )
            .unwrap();
        assert!(summary.pages > 200, "{summary:?}");
        assert!(integrity_problems(&out.path().join(DB_FILE))
            .unwrap()
            .is_empty());
        assert_eq!(count_notes(out.path()), 500);
        store.close().unwrap();
    }
}
