//! The embedded engine: one SQLite file in WAL mode. Snapshots are read transactions on pooled
//! reader connections; the writer runs each job in a SAVEPOINT inside one transaction per batch,
//! so a job reads its own writes straight from SQLite.
//!
//! Tables: `documents (id, creation_time, body)` keyed by the document key, `index_entries
//! (index_id, key, doc_id)`, the catalog (`tables`, `indexes`) and `meta`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rusqlite::{params, Connection, OptionalExtension};
use tickethub_value::{DocumentId, TableNumber};

use crate::backend::{
    table_id_range, BatchMeta, BatchWriter, Keep, MigrationConn, RawDoc, RawRow, Reads, RowVisitor,
    ScanRange, Snapshot, SnapshotSource, StoredDoc, StoredIndex, META_LAST_CREATION, META_LAST_TS,
};
use crate::catalog::{id_key, IndexKind};
use crate::connection::{read_last_ts, run_cached, ReaderPool};
use crate::log::IndexId;
use crate::maintenance::{maintain, MaintenanceReport};
use crate::{Order, StoreError, Timestamp, Visit};

const CREATE_TABLES: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value ANY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tables (name TEXT PRIMARY KEY, number INTEGER NOT NULL UNIQUE) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS indexes (
    index_id INTEGER PRIMARY KEY,
    table_number INTEGER NOT NULL,
    name TEXT NOT NULL,
    fields TEXT NOT NULL,
    UNIQUE (table_number, name)
);
CREATE TABLE IF NOT EXISTS documents (id BLOB PRIMARY KEY, creation_time REAL NOT NULL, body BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS index_entries (
    index_id INTEGER NOT NULL,
    key BLOB NOT NULL,
    doc_id BLOB NOT NULL,
    PRIMARY KEY (index_id, key)
) WITHOUT ROWID;
";

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::storage(e.to_string())
}

fn load(conn: &Connection, id: &DocumentId) -> Result<Option<StoredDoc>, StoreError> {
    let mut stmt =
        conn.prepare_cached("SELECT creation_time, body FROM documents WHERE id = ?1")?;
    Ok(stmt
        .query_row(params![id_key(id)], |r| {
            Ok(StoredDoc {
                creation_time: r.get(0)?,
                body: r.get(1)?,
            })
        })
        .optional()?)
}

fn scan_sql(kind: IndexKind, bounded: bool, order: Order) -> &'static str {
    // CROSS JOIN pins the index entries as the outer loop, so rows come out in key order
    // straight from the B-tree and stepping stops reading as soon as the caller stops.
    match (kind, bounded, order) {
        (IndexKind::Entries, true, Order::Asc) => "SELECT e.key, e.doc_id, d.creation_time, d.body FROM index_entries e CROSS JOIN documents d ON d.id = e.doc_id WHERE e.index_id = ?1 AND e.key >= ?2 AND e.key < ?3 ORDER BY e.key ASC",
        (IndexKind::Entries, true, Order::Desc) => "SELECT e.key, e.doc_id, d.creation_time, d.body FROM index_entries e CROSS JOIN documents d ON d.id = e.doc_id WHERE e.index_id = ?1 AND e.key >= ?2 AND e.key < ?3 ORDER BY e.key DESC",
        (IndexKind::Entries, false, Order::Asc) => "SELECT e.key, e.doc_id, d.creation_time, d.body FROM index_entries e CROSS JOIN documents d ON d.id = e.doc_id WHERE e.index_id = ?1 AND e.key >= ?2 ORDER BY e.key ASC",
        (IndexKind::Entries, false, Order::Desc) => "SELECT e.key, e.doc_id, d.creation_time, d.body FROM index_entries e CROSS JOIN documents d ON d.id = e.doc_id WHERE e.index_id = ?1 AND e.key >= ?2 ORDER BY e.key DESC",
        // `by_id` ranges are always bounded by the table's id prefix.
        (IndexKind::ById, _, Order::Asc) => "SELECT d.id, d.id, d.creation_time, d.body FROM documents d WHERE ?1 IS NOT NULL AND d.id >= ?2 AND d.id < ?3 ORDER BY d.id ASC",
        (IndexKind::ById, _, Order::Desc) => "SELECT d.id, d.id, d.creation_time, d.body FROM documents d WHERE ?1 IS NOT NULL AND d.id >= ?2 AND d.id < ?3 ORDER BY d.id DESC",
    }
}

fn scan(
    conn: &Connection,
    range: ScanRange<'_>,
    visit: &mut RowVisitor<'_>,
) -> Result<(), StoreError> {
    let sql = scan_sql(range.kind, range.end.is_some(), range.order);
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = match range.end {
        Some(end) => stmt.query(params![range.index, range.start, end])?,
        None => stmt.query(params![range.index, range.start])?,
    };
    while let Some(row) = rows.next()? {
        // Borrowed straight from SQLite's row buffer.
        let raw = RawRow {
            key: row.get_ref(0)?.as_blob().map_err(corrupt)?,
            id: row.get_ref(1)?.as_blob().map_err(corrupt)?,
            creation_time: row.get(2)?,
            body: row.get_ref(3)?.as_blob().map_err(corrupt)?,
        };
        if visit(raw)? == Visit::Stop {
            break;
        }
    }
    Ok(())
}

fn count_entries(conn: &Connection, index: IndexId) -> Result<u64, StoreError> {
    let n: i64 = conn
        .prepare_cached("SELECT count(*) FROM index_entries WHERE index_id = ?1")?
        .query_row(params![index], |r| r.get(0))?;
    Ok(n as u64)
}

fn count_documents(conn: &Connection, table: TableNumber) -> Result<u64, StoreError> {
    let (start, end) = table_id_range(table);
    let n: i64 = conn
        .prepare_cached("SELECT count(*) FROM documents WHERE id >= ?1 AND id < ?2")?
        .query_row(params![start, end], |r| r.get(0))?;
    Ok(n as u64)
}

/// A read transaction on a pooled reader connection.
pub(crate) struct SqliteSnapshot {
    conn: Option<Connection>,
    pool: Arc<ReaderPool>,
    ts: Timestamp,
}

impl SqliteSnapshot {
    fn begin(conn: Connection, pool: Arc<ReaderPool>) -> Result<SqliteSnapshot, StoreError> {
        // BEGIN alone takes no snapshot; the first read does, so read the commit ts right away.
        let started = run_cached(&conn, "BEGIN")
            .map_err(StoreError::from)
            .and_then(|_| read_last_ts(&conn));
        match started {
            Ok(ts) => Ok(SqliteSnapshot {
                conn: Some(conn),
                pool,
                ts,
            }),
            Err(e) => {
                let _ = run_cached(&conn, "ROLLBACK");
                pool.put(conn);
                Err(e)
            }
        }
    }

    fn conn(&self) -> &Connection {
        self.conn.as_ref().expect("connection present until drop")
    }
}

impl Drop for SqliteSnapshot {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            // A read transaction has nothing to commit; ending it releases the WAL snapshot.
            let _ = run_cached(&conn, "COMMIT");
            self.pool.put(conn);
        }
    }
}

impl Reads for SqliteSnapshot {
    fn load(&self, id: &DocumentId) -> Result<Option<StoredDoc>, StoreError> {
        load(self.conn(), id)
    }
    fn scan(&self, range: ScanRange<'_>, visit: &mut RowVisitor<'_>) -> Result<(), StoreError> {
        scan(self.conn(), range, visit)
    }
}

impl Snapshot for SqliteSnapshot {
    fn ts(&self) -> Timestamp {
        self.ts
    }
    fn count_entries(&self, index: IndexId) -> Result<u64, StoreError> {
        count_entries(self.conn(), index)
    }
}

/// The reader pool as a source of snapshots.
pub(crate) struct SqliteSnapshots {
    pub(crate) pool: Arc<ReaderPool>,
    pub(crate) db_path: PathBuf,
}

impl SnapshotSource for SqliteSnapshots {
    // SQLite's snapshot is its read transaction's, always the latest commit.
    fn take(&self, _latest: Timestamp) -> Result<Box<dyn Snapshot>, StoreError> {
        let conn = self.pool.take()?;
        Ok(Box::new(SqliteSnapshot::begin(conn, self.pool.clone())?))
    }
    fn try_take(&self, _latest: Timestamp) -> Result<Option<Box<dyn Snapshot>>, StoreError> {
        match self.pool.try_take()? {
            Some(conn) => Ok(Some(Box::new(SqliteSnapshot::begin(
                conn,
                self.pool.clone(),
            )?))),
            None => Ok(None),
        }
    }
    fn disk_bytes(&self) -> u64 {
        let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        let mut wal = self.db_path.clone().into_os_string();
        wal.push("-wal");
        size(&self.db_path) + size(Path::new(&wal))
    }
    fn close(&self) {
        self.pool.close();
    }
}

/// The writer connection.
pub(crate) struct SqliteWriter {
    pub(crate) conn: Connection,
}

fn meta_set(conn: &Connection, key: &str, value: impl rusqlite::ToSql) -> Result<(), StoreError> {
    conn.prepare_cached("INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value")?
        .execute(params![key, value])?;
    Ok(())
}

fn meta_get<T: rusqlite::types::FromSql>(
    conn: &Connection,
    key: &str,
) -> Result<Option<T>, StoreError> {
    Ok(conn
        .query_row("SELECT value FROM meta WHERE key = ?1", params![key], |r| {
            r.get(0)
        })
        .optional()?)
}

impl Reads for SqliteWriter {
    fn load(&self, id: &DocumentId) -> Result<Option<StoredDoc>, StoreError> {
        load(&self.conn, id)
    }
    fn scan(&self, range: ScanRange<'_>, visit: &mut RowVisitor<'_>) -> Result<(), StoreError> {
        scan(&self.conn, range, visit)
    }
}

impl BatchWriter for SqliteWriter {
    fn migration(&mut self) -> &mut dyn MigrationConn {
        self
    }
    fn begin_batch(&mut self) -> Result<(), StoreError> {
        Ok(run_cached(&self.conn, "BEGIN IMMEDIATE")?)
    }
    fn begin_job(&mut self) -> Result<(), StoreError> {
        Ok(run_cached(&self.conn, "SAVEPOINT job")?)
    }
    fn end_job(&mut self, keep: Keep) -> Result<(), StoreError> {
        match keep {
            Keep::Release => run_cached(&self.conn, "RELEASE job")?,
            Keep::RollBack => {
                run_cached(&self.conn, "ROLLBACK TO job")?;
                run_cached(&self.conn, "RELEASE job")?;
            }
        }
        Ok(())
    }
    fn commit_batch(
        &mut self,
        meta: Option<BatchMeta>,
        _before: crate::Timestamp,
        _commits: &[crate::CommitInfo],
    ) -> Result<(), StoreError> {
        if let Some(meta) = meta {
            meta_set(&self.conn, META_LAST_TS, meta.last_ts.0 as i64)?;
            meta_set(&self.conn, META_LAST_CREATION, meta.last_creation)?;
        }
        Ok(run_cached(&self.conn, "COMMIT")?)
    }
    fn rollback_batch(&mut self, before: BatchMeta) -> BatchMeta {
        let _ = run_cached(&self.conn, "ROLLBACK");
        before
    }

    fn insert_document(
        &mut self,
        id: &DocumentId,
        creation_time: f64,
        body: &[u8],
    ) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("INSERT INTO documents (id, creation_time, body) VALUES (?1, ?2, ?3)")?
            .execute(params![id_key(id), creation_time, body])?;
        Ok(())
    }
    fn update_document(&mut self, id: &DocumentId, body: &[u8]) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("UPDATE documents SET body = ?2 WHERE id = ?1")?
            .execute(params![id_key(id), body])?;
        Ok(())
    }
    fn delete_document(&mut self, id: &DocumentId) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("DELETE FROM documents WHERE id = ?1")?
            .execute(params![id_key(id)])?;
        Ok(())
    }
    fn insert_entry(
        &mut self,
        index: IndexId,
        key: &[u8],
        id: &DocumentId,
    ) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "INSERT INTO index_entries (index_id, key, doc_id) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![index, key, id_key(id)])?;
        Ok(())
    }
    fn delete_entry(&mut self, index: IndexId, key: &[u8]) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("DELETE FROM index_entries WHERE index_id = ?1 AND key = ?2")?
            .execute(params![index, key])?;
        Ok(())
    }
    fn count_documents(&self, table: TableNumber) -> Result<u64, StoreError> {
        count_documents(&self.conn, table)
    }
    fn clear_table(&mut self, table: TableNumber, indexes: &[IndexId]) -> Result<u64, StoreError> {
        for index in indexes {
            self.conn
                .prepare_cached("DELETE FROM index_entries WHERE index_id = ?1")?
                .execute(params![index])?;
        }
        let (start, end) = table_id_range(table);
        let removed = self
            .conn
            .prepare_cached("DELETE FROM documents WHERE id >= ?1 AND id < ?2")?
            .execute(params![start, end])?;
        Ok(removed as u64)
    }

    fn maintain(&mut self, step_pages: u64) -> Result<MaintenanceReport, StoreError> {
        maintain(&self.conn, step_pages)
    }
    fn close(&mut self) -> Result<(), StoreError> {
        Ok(self.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")?)
    }
}

impl MigrationConn for SqliteWriter {
    fn begin(&mut self) -> Result<(), StoreError> {
        Ok(self.conn.execute_batch("BEGIN IMMEDIATE")?)
    }
    fn commit(&mut self) -> Result<(), StoreError> {
        Ok(self.conn.execute_batch("COMMIT")?)
    }
    fn rollback(&mut self) {
        let _ = self.conn.execute_batch("ROLLBACK");
    }
    fn create_tables(&mut self) -> Result<(), StoreError> {
        self.conn.execute_batch(CREATE_TABLES)?;
        crate::datafile::stamp(&self.conn)
    }

    fn meta_i64(&mut self, key: &str) -> Result<Option<i64>, StoreError> {
        meta_get(&self.conn, key)
    }
    fn meta_f64(&mut self, key: &str) -> Result<Option<f64>, StoreError> {
        meta_get(&self.conn, key)
    }
    fn meta_text(&mut self, key: &str) -> Result<Option<String>, StoreError> {
        meta_get(&self.conn, key)
    }
    fn set_meta_i64(&mut self, key: &str, value: i64) -> Result<(), StoreError> {
        meta_set(&self.conn, key, value)
    }
    fn set_meta_text(&mut self, key: &str, value: &str) -> Result<(), StoreError> {
        meta_set(&self.conn, key, value)
    }

    fn tables(&mut self) -> Result<Vec<(String, u32)>, StoreError> {
        let mut stmt = self.conn.prepare("SELECT name, number FROM tables")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, u32>(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
    fn insert_table(&mut self, name: &str, number: u32) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO tables (name, number) VALUES (?1, ?2)",
            params![name, number],
        )?;
        Ok(())
    }
    fn indexes(&mut self) -> Result<Vec<StoredIndex>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT index_id, table_number, name, fields FROM indexes")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, u32>(0)?,
                r.get::<_, u32>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, table_number, name, fields) = row?;
            out.push(StoredIndex {
                id,
                table_number,
                name,
                fields: parse_fields(&fields)?,
            });
        }
        Ok(out)
    }
    fn insert_index(&mut self, index: &StoredIndex) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO indexes (index_id, table_number, name, fields) VALUES (?1, ?2, ?3, ?4)",
            params![
                index.id,
                index.table_number,
                index.name,
                fields_json(&index.fields)
            ],
        )?;
        Ok(())
    }
    fn drop_index(&mut self, id: IndexId) -> Result<(), StoreError> {
        self.conn
            .execute("DELETE FROM index_entries WHERE index_id = ?1", params![id])?;
        self.conn
            .execute("DELETE FROM indexes WHERE index_id = ?1", params![id])?;
        Ok(())
    }

    fn documents_page(
        &mut self,
        table: TableNumber,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<RawDoc>, StoreError> {
        let (start, end) = table_id_range(table);
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, creation_time, body FROM documents WHERE id >= ?1 AND id < ?2 AND (?3 IS NULL OR id > ?3) ORDER BY id LIMIT ?4",
        )?;
        let rows = stmt.query_map(params![start, end, after, limit as i64], |r| {
            Ok(RawDoc {
                id: r.get(0)?,
                creation_time: r.get(1)?,
                body: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
    fn insert_entries(
        &mut self,
        index: IndexId,
        entries: &[(Vec<u8>, Vec<u8>)],
    ) -> Result<(), StoreError> {
        let mut insert = self.conn.prepare_cached(
            "INSERT INTO index_entries (index_id, key, doc_id) VALUES (?1, ?2, ?3)",
        )?;
        for (key, doc) in entries {
            insert.execute(params![index, key, doc])?;
        }
        Ok(())
    }
}

/// An index's fields as the `indexes` table stores them (JSON text; Postgres uses the same).
pub(crate) fn fields_json(fields: &[String]) -> String {
    serde_json::to_string(fields).expect("strings serialize")
}

pub(crate) fn parse_fields(text: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::storage(format!("stored index fields: {e}")))
}
