//! [`DataDirLock`]: one serving process per data directory.
//!
//! Two servers on one directory would each keep their own commit timestamps, commit log and live
//! queries: each one's subscribers would miss the other's writes, and timestamps could interleave.
//! SQLite's own locking does not prevent that (it serialises transactions, not processes), so a
//! server takes this lock before opening the store and holds it for its whole life.
//!
//! Backup and export read through SQLite's own locking (a read transaction sees one consistent
//! snapshot beside a running server), so they never take this lock.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The lock file inside the data directory. It holds the pid of the process holding the lock.
pub const LOCK_FILE: &str = "tickethub.lock";

/// An exclusive OS lock (`flock` on Unix, `LockFileEx` on Windows) on the data directory's lock
/// file, released when this value is dropped or the process exits, however it exits: a `kill -9`
/// never leaves a stale lock behind. The file itself stays (removing it would let a third process
/// lock a new file while a second still waits on the old one).
#[derive(Debug)]
pub struct DataDirLock {
    /// Held open: closing it releases the lock.
    _file: File,
    dir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum DataDirLockError {
    /// Another process holds the lock.
    #[error("the data directory {} is in use by another tickethub process ({})", dir.display(), holder_text(*pid))]
    Held {
        dir: PathBuf,
        /// The holder's pid as it wrote it, when it could be read.
        pid: Option<u32>,
    },
    #[error("could not lock the data directory {}", dir.display())]
    Io {
        dir: PathBuf,
        source: std::io::Error,
    },
}

fn holder_text(pid: Option<u32>) -> String {
    match pid {
        Some(pid) => format!("pid {pid}"),
        None => "pid unknown".to_string(),
    }
}

impl DataDirLock {
    /// Take the lock on `dir` (created if missing) without waiting, and write our pid into the
    /// lock file. Fails with [`DataDirLockError::Held`] naming the holder's pid when another
    /// process has it.
    pub fn acquire(dir: &Path) -> Result<DataDirLock, DataDirLockError> {
        let io_error = |source| DataDirLockError::Io {
            dir: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io_error)?;
        // Not truncated on open: until we hold the lock, the pid in it is the holder's.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join(LOCK_FILE))
            .map_err(io_error)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                // A holder that has just locked may not have written its pid yet: then unknown.
                let pid = file
                    .read_to_string(&mut text)
                    .ok()
                    .and_then(|_| text.trim().parse().ok());
                return Err(DataDirLockError::Held {
                    dir: dir.to_path_buf(),
                    pid,
                });
            }
            Err(TryLockError::Error(e)) => return Err(io_error(e)),
        }
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| writeln!(file, "{}", std::process::id()))
            .and_then(|()| file.flush())
            .map_err(io_error)?;
        Ok(DataDirLock {
            _file: file,
            dir: dir.to_path_buf(),
        })
    }

    /// The locked directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_dir_is_refused_with_the_holders_pid() {
        let dir = tempfile::tempdir().unwrap();
        let held = DataDirLock::acquire(dir.path()).unwrap();
        // flock locks belong to open files, so a second open in this process conflicts too.
        match DataDirLock::acquire(dir.path()) {
            Err(DataDirLockError::Held { pid, dir: named }) => {
                assert_eq!(pid, Some(std::process::id()));
                assert_eq!(named, dir.path());
            }
            other => panic!("expected Held, got {other:?}"),
        }
        drop(held);
        let again = DataDirLock::acquire(dir.path()).unwrap();
        assert_eq!(again.dir(), dir.path());
    }
}
