//! Checking the database file before anything opens it for writing.
//!
//! SQLite opens almost any file without complaint and only fails (or, worse, "repairs" by
//! creating tables) once it reads the damaged part. So before the store opens a file it checks,
//! reading only: that it is a SQLite file at all, that it is as long as its header says, and that
//! it is ours (`PRAGMA application_id`) and of a format this binary understands
//! (`PRAGMA user_version`). A file that fails gets a [`DataFileError`] naming the file and what is
//! wrong, and is left exactly as it was: the check opens it read-only, and the store never
//! opens it at all.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};

/// `PRAGMA application_id` of a tickethub database: "tick" in ASCII.
pub const APPLICATION_ID: i32 = 0x7469_636b;
/// `PRAGMA user_version` of the on-disk format this binary writes. Raise it when the layout of
/// the store's tables changes in a way an older binary would misread.
pub const FORMAT_VERSION: i32 = 1;

/// The 16 bytes every SQLite 3 database file begins with.
const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";
/// Length of the database header at the start of page 1.
const HEADER_LEN: usize = 100;
/// The tables the store creates; a database without the stamp but with these is ours from
/// before the stamp existed.
const OUR_TABLES: [&str; 5] = ["meta", "tables", "indexes", "documents", "index_entries"];

/// Why a database file was refused. Each message names the file and says what is wrong in one
/// line, and what to do where there is something to do.
#[derive(Debug, thiserror::Error)]
pub enum DataFileError {
    #[error("the database file {} is empty (0 bytes); it holds no data: move it away to start with a new database, or restore a backup", path.display())]
    Empty { path: PathBuf },
    #[error("the database file {} is truncated: it has {actual} bytes, but its header says {expected}; restore a backup (tickethub restore)", path.display())]
    Truncated {
        path: PathBuf,
        actual: u64,
        expected: u64,
    },
    #[error("the database file {} is not a SQLite database (its first bytes are not SQLite's header); it may be damaged or another kind of file: restore a backup (tickethub restore)", path.display())]
    NotSqlite { path: PathBuf },
    #[error("the database file {} is a SQLite database of another application (application_id {application_id:#010x}); tickethub will not write to it", path.display())]
    ForeignApplication { path: PathBuf, application_id: i32 },
    #[error("the database file {} is a SQLite database but not tickethub's (it has the tables {tables}); tickethub will not write to it", path.display())]
    ForeignTables { path: PathBuf, tables: String },
    #[error("the database file {} has format version {found}, newer than this tickethub understands ({FORMAT_VERSION}); run a newer tickethub", path.display())]
    NewerFormat { path: PathBuf, found: i32 },
    #[error("the database file {} has format version {found}, which this tickethub cannot read (it reads {FORMAT_VERSION})", path.display())]
    UnknownFormat { path: PathBuf, found: i32 },
    #[error("the database file {} is damaged ({detail}); restore a backup (tickethub restore)", path.display())]
    Damaged { path: PathBuf, detail: String },
    #[error("could not read the database file {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What the check found in an acceptable file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataFileState {
    /// No file yet (or an empty SQLite database): the store creates and stamps it.
    New,
    /// A tickethub database of the current format.
    Current,
    /// A tickethub database written before the stamp existed; the store stamps it when it opens.
    Unstamped,
}

/// Check `path` without changing it. See the module documentation.
pub fn check_database_file(path: &Path) -> Result<DataFileState, DataFileError> {
    let io_error = |source| DataFileError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(DataFileState::New),
        Err(e) => return Err(io_error(e)),
    };
    let actual = file.metadata().map_err(io_error)?.len();
    if actual == 0 {
        return Err(DataFileError::Empty {
            path: path.to_path_buf(),
        });
    }
    let mut header = [0u8; HEADER_LEN];
    let read = read_up_to(&mut file, &mut header).map_err(io_error)?;
    if read < SQLITE_MAGIC.len() || &header[..SQLITE_MAGIC.len()] != SQLITE_MAGIC {
        return Err(DataFileError::NotSqlite {
            path: path.to_path_buf(),
        });
    }
    if read < HEADER_LEN {
        return Err(DataFileError::Truncated {
            path: path.to_path_buf(),
            actual,
            expected: HEADER_LEN as u64,
        });
    }
    // With a WAL beside it, the main file may legitimately lag its header (a checkpoint stopped
    // half-way); SQLite's recovery replays the WAL. Without one, the file must hold every page
    // its header counts.
    if !has_wal(path) {
        if let Some(expected) = expected_len(&header) {
            if actual < expected {
                return Err(DataFileError::Truncated {
                    path: path.to_path_buf(),
                    actual,
                    expected,
                });
            }
        }
    }
    drop(file);
    inspect(path, has_wal(path))
}

/// Read until `buf` is full or the file ends; the count read.
fn read_up_to(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// A non-empty `-wal` file beside the database.
fn has_wal(path: &Path) -> bool {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    std::fs::metadata(Path::new(&wal)).is_ok_and(|m| m.len() > 0)
}

/// The file length the header promises: page size × page count. `None` when the header's page
/// count is not trustworthy (written by SQLite before 3.7.0, which did not maintain it).
fn expected_len(header: &[u8; HEADER_LEN]) -> Option<u64> {
    let be16 = |at: usize| u16::from_be_bytes([header[at], header[at + 1]]);
    let be32 = |at: usize| {
        u32::from_be_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
    };
    let page_size = match be16(16) {
        1 => 65_536,
        n if n >= 512 && n.is_power_of_two() => u64::from(n),
        _ => return None,
    };
    let pages = be32(28);
    let change_counter = be32(24);
    let valid_for = be32(92);
    if pages == 0 || change_counter != valid_for {
        return None;
    }
    Some(page_size * u64::from(pages))
}

/// Open read-only and look at the stamp and the tables.
///
/// Without a WAL beside it the file is opened `immutable`: a plain read-only open of a WAL-mode
/// database creates `-wal` and `-shm` files next to it, and a file we refuse (another
/// application's, say) must be left exactly as it was found. With a WAL (a server stopped by a
/// crash), the WAL holds the latest commits and has to be read, which only a normal open does.
fn inspect(path: &Path, wal: bool) -> Result<DataFileState, DataFileError> {
    let damaged = |e: rusqlite::Error| classify(path, e);
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = if wal {
        Connection::open_with_flags(path, flags)
    } else {
        Connection::open_with_flags(
            format!("file:{}?immutable=1", uri_path(path)),
            flags | OpenFlags::SQLITE_OPEN_URI,
        )
    }
    .map_err(damaged)?;
    let application_id: i32 = conn
        .pragma_query_value(None, "application_id", |r| r.get(0))
        .map_err(damaged)?;
    let version: i32 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(damaged)?;
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")
        .and_then(|mut stmt| {
            stmt.query_map([], |r| r.get(0))?
                .collect::<Result<Vec<String>, _>>()
        })
        .map_err(damaged)?;
    match application_id {
        APPLICATION_ID => match version {
            FORMAT_VERSION => Ok(DataFileState::Current),
            found if found > FORMAT_VERSION => Err(DataFileError::NewerFormat {
                path: path.to_path_buf(),
                found,
            }),
            found => Err(DataFileError::UnknownFormat {
                path: path.to_path_buf(),
                found,
            }),
        },
        0 if tables.is_empty() => Ok(DataFileState::New),
        0 if OUR_TABLES
            .iter()
            .all(|t| tables.iter().any(|have| have == t)) =>
        {
            Ok(DataFileState::Unstamped)
        }
        0 => Err(DataFileError::ForeignTables {
            path: path.to_path_buf(),
            tables: summarize(&tables),
        }),
        application_id => Err(DataFileError::ForeignApplication {
            path: path.to_path_buf(),
            application_id,
        }),
    }
}

/// `path` for a `file:` URI: the characters a URI gives meaning to are percent-encoded.
fn uri_path(path: &Path) -> String {
    let mut out = String::new();
    for c in path.to_string_lossy().chars() {
        match c {
            '%' | '?' | '#' => out.push_str(&format!("%{:02X}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// A few table names, enough to recognise whose database it is.
fn summarize(tables: &[String]) -> String {
    const SHOWN: usize = 5;
    let mut text = tables
        .iter()
        .take(SHOWN)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if tables.len() > SHOWN {
        text.push_str(&format!(" and {} more", tables.len() - SHOWN));
    }
    text
}

fn classify(path: &Path, e: rusqlite::Error) -> DataFileError {
    let path = path.to_path_buf();
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::NotADatabase) => DataFileError::NotSqlite { path },
        _ => DataFileError::Damaged {
            path,
            detail: e.to_string(),
        },
    }
}

/// Stamp the database as tickethub's, of the current format. Runs inside the first migration's
/// transaction, so a new database is never left half-stamped.
///
/// It checks the stamp once more, as the writer sees it: after a crash the latest header may have
/// been in the WAL, which [`check_database_file`] reads only when one is there. A newer format is
/// never stamped down to ours.
pub(crate) fn stamp(conn: &Connection) -> Result<(), crate::StoreError> {
    let path = Path::new(conn.path().unwrap_or("the database"));
    let application_id: i32 = conn.pragma_query_value(None, "application_id", |r| r.get(0))?;
    let version: i32 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    match (application_id, version) {
        (APPLICATION_ID, found) if found > FORMAT_VERSION => {
            return Err(DataFileError::NewerFormat {
                path: path.to_path_buf(),
                found,
            }
            .into())
        }
        (0 | APPLICATION_ID, _) => {}
        (application_id, _) => {
            return Err(DataFileError::ForeignApplication {
                path: path.to_path_buf(),
                application_id,
            }
            .into())
        }
    }
    if application_id != APPLICATION_ID || version != FORMAT_VERSION {
        conn.pragma_update(None, "application_id", APPLICATION_ID)?;
        conn.pragma_update(None, "user_version", FORMAT_VERSION)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db_with(dir: &Path, setup: &str) -> PathBuf {
        let path = dir.join("t.sqlite3");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(setup).unwrap();
        drop(conn);
        path
    }

    fn ours(dir: &Path) -> PathBuf {
        let tables: String = OUR_TABLES
            .iter()
            .map(|t| format!("CREATE TABLE {t} (x);"))
            .collect();
        db_with(dir, &tables)
    }

    #[test]
    fn a_missing_or_blank_database_is_new() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("none.sqlite3");
        assert_eq!(check_database_file(&path).unwrap(), DataFileState::New);
        let path = db_with(dir.path(), "PRAGMA user_version = 0;");
        // SQLite writes nothing for a database without tables: it is still 0 bytes.
        assert!(matches!(
            check_database_file(&path),
            Ok(DataFileState::New) | Err(DataFileError::Empty { .. })
        ));
    }

    #[test]
    fn our_tables_without_the_stamp_get_stamped_and_then_are_current() {
        let dir = tempfile::tempdir().unwrap();
        let path = ours(dir.path());
        assert_eq!(
            check_database_file(&path).unwrap(),
            DataFileState::Unstamped
        );
        stamp(&Connection::open(&path).unwrap()).unwrap();
        assert_eq!(check_database_file(&path).unwrap(), DataFileState::Current);
    }

    #[test]
    fn foreign_newer_truncated_and_random_files_are_refused_and_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let check = |path: &Path| {
            let before = std::fs::read(path).unwrap();
            let result = check_database_file(path);
            assert_eq!(
                std::fs::read(path).unwrap(),
                before,
                "the check changed the file"
            );
            let e = result.expect_err("should be refused");
            assert!(e.to_string().contains(&path.display().to_string()), "{e}");
            e
        };

        let foreign = db_with(dir.path(), "CREATE TABLE customers (name TEXT);");
        assert!(matches!(
            check(&foreign),
            DataFileError::ForeignTables { .. }
        ));
        std::fs::remove_file(&foreign).unwrap();

        let other_app = db_with(
            dir.path(),
            "PRAGMA application_id = 42; CREATE TABLE a (x);",
        );
        assert!(matches!(
            check(&other_app),
            DataFileError::ForeignApplication {
                application_id: 42,
                ..
            }
        ));
        std::fs::remove_file(&other_app).unwrap();

        let newer = ours(dir.path());
        let conn = Connection::open(&newer).unwrap();
        stamp(&conn).unwrap();
        conn.pragma_update(None, "user_version", FORMAT_VERSION + 1)
            .unwrap();
        conn.execute_batch("CREATE TABLE filler (x); INSERT INTO filler SELECT zeroblob(5000) FROM (SELECT 1 UNION SELECT 2 UNION SELECT 3);")
            .unwrap();
        drop(conn);
        assert!(
            matches!(check(&newer), DataFileError::NewerFormat { found, .. } if found == FORMAT_VERSION + 1)
        );

        let bytes = std::fs::read(&newer).unwrap();
        std::fs::write(&newer, &bytes[..bytes.len() / 2]).unwrap();
        assert!(matches!(check(&newer), DataFileError::Truncated { .. }));
        std::fs::write(&newer, &bytes[..50]).unwrap();
        assert!(matches!(check(&newer), DataFileError::Truncated { .. }));
        std::fs::write(&newer, b"").unwrap();
        assert!(matches!(check(&newer), DataFileError::Empty { .. }));

        let random: Vec<u8> = (0..65_536u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        std::fs::write(&newer, random).unwrap();
        assert!(matches!(check(&newer), DataFileError::NotSqlite { .. }));
    }
}
