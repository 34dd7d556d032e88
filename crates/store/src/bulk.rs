//! Bulk transactions, for snapshot import and export: writes that keep the `_id` and
//! `_creationTime` they are given, clearing a whole table, and streaming every document of a
//! table from one snapshot.
//!
//! A bulk transaction is an ordinary writer job that has called [`WriteTxn::start_bulk`]: it is
//! exempt from the per-transaction write caps (an import of a million rows is one transaction,
//! so it lands whole or not at all), and its write set says "everything" instead of listing its
//! keys, so memory does not grow with the rows written and every live query re-runs once.

use tickethub_value::{DocumentId, Object, TableNumber, Value};

use crate::backend::{table_id_range, ScanRange};
use crate::catalog::{id_from_key, IndexKind};
use crate::codec::decode_fields;
use crate::{Document, Order, ReadTxn, StoreError, Visit, WriteTxn};

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
                if self.conn.load(&id)?.is_some() {
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
        self.conn.insert_document(&id, creation_time, &body)?;
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
        self.conn.count_documents(info.number)
    }

    /// Delete every document of `table` (and its index entries). Returns how many there were.
    pub fn clear_table(&mut self, table: &str) -> Result<u64, StoreError> {
        let info = self.catalog.require(table)?.clone();
        let entries: Vec<_> = info
            .all_indexes()
            .filter(|index| index.kind == IndexKind::Entries)
            .map(|index| index.id)
            .collect();
        let removed = self.conn.clear_table(info.number, &entries)?;
        if removed > 0 {
            // Clearing is always reported as "everything changed": listing each key would
            // mean reading every row first.
            self.writes.everything = true;
        }
        Ok(removed)
    }
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
    /// (streamed by the engine: memory stays flat however large the table). Not counted against
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
        let range = ScanRange {
            kind: IndexKind::ById,
            index: info.by_id.id,
            start: &start,
            end: Some(&end),
            order: Order::Asc,
        };
        // The visitor's own error travels out beside the store's.
        let mut failed: Option<E> = None;
        self.snapshot.scan(range, &mut |row| {
            let id = id_from_key(row.id)
                .ok_or_else(|| StoreError::storage("malformed document id in storage"))?;
            let fields = decode_fields(row.body).map_err(|e| StoreError::storage(e.to_string()))?;
            let doc = Document {
                id,
                creation_time: row.creation_time,
                fields,
            };
            match visit(doc) {
                Ok(next) => Ok(next),
                Err(e) => {
                    failed = Some(e);
                    Ok(Visit::Stop)
                }
            }
        })?;
        if let Some(e) = failed {
            return Err(e);
        }
        Ok(())
    }
}
