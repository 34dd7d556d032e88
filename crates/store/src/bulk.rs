//! Bulk transactions, for snapshot import and export: writes that keep the `_id` and
//! `_creationTime` they are given, clearing a whole table, and streaming every document of a
//! table from one snapshot.
//!
//! A bulk transaction is an ordinary writer job that has called [`WriteTxn::start_bulk`]: it is
//! exempt from the per-transaction write caps (an import of a million rows is one transaction,
//! so it lands whole or not at all), and its write set says "everything" instead of listing its
//! keys, so memory does not grow with the rows written and every live query re-runs once.

use rusqlite::params;
use tickethub_value::{DocumentId, Object, TableNumber, Value};

use crate::catalog::{id_from_key, id_key, IndexKind};
use crate::codec::decode_fields;
use crate::txn::load;
use crate::{Document, ReadTxn, StoreError, Visit, WriteTxn};

/// Failures of bulk writes, beyond the ordinary store errors.
#[derive(Debug, thiserror::Error)]
pub enum BulkError {
    /// Two imported documents (or an imported one and a stored one) share an `_id`.
    #[error("Duplicate _id \"{id}\" in table \"{table}\"")]
    DuplicateId { table: String, id: String },
    /// The imported document cannot go where it was asked to (e.g. an `_id` of another table).
    #[error("{0}")]
    InvalidImport(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl BulkError {
    /// Stable machine code, ScreamingCamelCase.
    pub fn code(&self) -> &'static str {
        match self {
            BulkError::DuplicateId { .. } => "DuplicateId",
            BulkError::InvalidImport(_) => "ImportConflict",
            BulkError::Store(e) => e.code(),
        }
    }
}

/// A table as the catalog numbers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableEntry {
    pub name: String,
    pub number: TableNumber,
}

impl WriteTxn<'_> {
    /// Make this job a bulk transaction (see the module docs). Call it before writing.
    pub fn start_bulk(&mut self) {
        self.bulk = true;
    }

    /// Insert a document as an import gives it: `id` and `creation_time` are kept when given
    /// (the id must be of `table` and not yet used), made up otherwise. The schema and the
    /// value limits are checked as for any insert.
    pub fn insert_imported(
        &mut self,
        table: &str,
        id: Option<DocumentId>,
        creation_time: Option<f64>,
        fields: Object,
    ) -> Result<DocumentId, BulkError> {
        let info = self.catalog.require(table)?.clone();
        let body = self.check_write(&info, &fields)?;
        // A fresh tick even when both are given: it keeps later creation times increasing past
        // the imported ones (below), and made-up ids lead with it, which makes them unique.
        let tick = self.clock.next();
        let creation_time = match creation_time {
            Some(t) if t.is_finite() && t > 0.0 => {
                if t > self.clock.last {
                    self.clock.last = t;
                }
                t
            }
            Some(t) => {
                return Err(BulkError::InvalidImport(format!(
                    "_creationTime {t} is not a positive number of milliseconds"
                )))
            }
            None => tick,
        };
        let id = match id {
            Some(id) if id.table != info.number => {
                return Err(BulkError::InvalidImport(format!(
                    "_id \"{}\" belongs to another table than \"{table}\"",
                    id.encode()
                )))
            }
            Some(id) => {
                if load(self.conn, &id)?.is_some() {
                    return Err(BulkError::DuplicateId {
                        table: table.to_string(),
                        id: id.encode(),
                    });
                }
                id
            }
            None => {
                let mut id = DocumentId::new_random(info.number, (tick as u64).max(1));
                id.internal[..8].copy_from_slice(&tick.to_bits().to_be_bytes());
                id
            }
        };
        self.conn
            .prepare_cached("INSERT INTO documents (id, creation_time, body) VALUES (?1, ?2, ?3)")
            .map_err(StoreError::from)?
            .execute(params![id_key(&id), creation_time, body])
            .map_err(StoreError::from)?;
        let id_value = Value::String(id.encode());
        for index in info.all_indexes() {
            let key = index.key_of(&id, &id_value, creation_time, &fields);
            if index.kind == IndexKind::Entries {
                self.insert_entry(index.id, &key, &id)?;
            }
            self.note_write(index.id, key);
        }
        Ok(id)
    }

    /// How many documents `table` holds, as this transaction sees it.
    pub fn count_documents(&self, table: &str) -> Result<u64, StoreError> {
        let info = self.catalog.require(table)?;
        let (start, end) = table_id_range(info.number);
        let n: i64 = self
            .conn
            .prepare_cached("SELECT count(*) FROM documents WHERE id >= ?1 AND id < ?2")?
            .query_row(params![start, end], |r| r.get(0))?;
        Ok(n as u64)
    }

    /// Delete every document of `table` (and its index entries). Returns how many there were.
    pub fn clear_table(&mut self, table: &str) -> Result<u64, StoreError> {
        let info = self.catalog.require(table)?.clone();
        let (start, end) = table_id_range(info.number);
        for index in info.all_indexes() {
            if index.kind == IndexKind::Entries {
                self.conn
                    .prepare_cached("DELETE FROM index_entries WHERE index_id = ?1")?
                    .execute(params![index.id])?;
            }
        }
        let removed = self
            .conn
            .prepare_cached("DELETE FROM documents WHERE id >= ?1 AND id < ?2")?
            .execute(params![start, end])?;
        if removed > 0 {
            // Clearing is always reported as "everything changed": listing each key would
            // mean reading every row first.
            self.writes.everything = true;
        }
        Ok(removed as u64)
    }
}

/// The primary-key range of one table's rows: its number, big endian, is the key's prefix.
fn table_id_range(number: TableNumber) -> (Vec<u8>, Vec<u8>) {
    let start = number.0.to_be_bytes().to_vec();
    let end = (u64::from(number.0) + 1) as u32;
    // Table numbers stay far below u32::MAX, so `end` does not wrap.
    (start, end.to_be_bytes().to_vec())
}

impl ReadTxn {
    /// Every table of the schema with its number, user and system tables, by number.
    pub fn tables(&self) -> Vec<TableEntry> {
        let mut all: Vec<TableEntry> = self
            .catalog
            .by_name
            .values()
            .map(|t| TableEntry {
                name: t.def.name.clone(),
                number: t.number,
            })
            .collect();
        all.sort_by_key(|t| t.number.0);
        all
    }

    /// Call `visit` with every document of `table` in `_id` order, streamed from this snapshot
    /// (one SQLite statement: memory stays flat however large the table). Not counted against
    /// the read caps nor recorded in a read set: exports use it, not functions.
    pub fn for_each_document<E>(
        &self,
        table: &str,
        visit: &mut dyn FnMut(Document) -> Result<Visit, E>,
    ) -> Result<(), E>
    where
        E: From<StoreError>,
    {
        let info = self.catalog.require(table)?.clone();
        let (start, end) = table_id_range(info.number);
        let mut stmt = self
            .conn()
            .prepare_cached(
                "SELECT id, creation_time, body FROM documents WHERE id >= ?1 AND id < ?2 ORDER BY id",
            )
            .map_err(StoreError::from)?;
        let mut rows = stmt.query(params![start, end]).map_err(StoreError::from)?;
        while let Some(row) = rows.next().map_err(StoreError::from)? {
            let id_bytes = row
                .get_ref(0)
                .map_err(StoreError::from)?
                .as_blob()
                .map_err(|e| StoreError::storage(e.to_string()))?;
            let id = id_from_key(id_bytes)
                .ok_or_else(|| StoreError::storage("malformed document id in storage"))?;
            let creation_time: f64 = row.get(1).map_err(StoreError::from)?;
            let body = row
                .get_ref(2)
                .map_err(StoreError::from)?
                .as_blob()
                .map_err(|e| StoreError::storage(e.to_string()))?;
            let fields = decode_fields(body).map_err(|e| StoreError::storage(e.to_string()))?;
            let doc = Document {
                id,
                creation_time,
                fields,
            };
            if visit(doc)? == Visit::Stop {
                break;
            }
        }
        Ok(())
    }
}
