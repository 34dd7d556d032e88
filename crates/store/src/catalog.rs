//! The catalog: table numbers and index ids as stored in the database, joined with the schema's
//! definitions. Built once at open and immutable afterwards (the schema only changes at open), so
//! readers and the writer share it without locks.

use std::collections::HashMap;
use std::sync::Arc;

use tickethub_value::key::encode_element;
use tickethub_value::{DocumentId, IdTables, Object, TableNumber, Value};

use crate::log::IndexId;
use crate::{StoreError, TableDef};

pub(crate) const BY_ID: &str = "by_id";
pub(crate) const BY_CREATION_TIME: &str = "by_creation_time";
pub(crate) const CREATION_TIME_FIELD: &str = "_creationTime";
pub(crate) const ID_FIELD: &str = "_id";

/// How an index's entries are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IndexKind {
    /// The documents table's primary key; the key is the document's id bytes.
    ById,
    /// Rows in `index_entries`, keyed by `encode_key([fields..., _creationTime, _id])`.
    Entries,
}

#[derive(Clone, Debug)]
pub(crate) struct IndexInfo {
    pub id: IndexId,
    pub name: String,
    /// User field paths (split on `.`), without the implicit `_creationTime` and `_id`.
    pub fields: Vec<Vec<String>>,
    pub kind: IndexKind,
    /// [`IndexInfo::queryable_fields`], computed once: every query checks its fields against it.
    queryable: Vec<String>,
}

impl IndexInfo {
    pub fn new(id: IndexId, name: String, fields: Vec<Vec<String>>, kind: IndexKind) -> IndexInfo {
        let mut info = IndexInfo {
            id,
            name,
            fields,
            kind,
            queryable: Vec::new(),
        };
        info.queryable = info.compute_queryable_fields();
        info
    }

    /// The fields a query may constrain, in order: the user fields, then the implicit ones.
    pub fn queryable_fields(&self) -> &[String] {
        &self.queryable
    }

    fn compute_queryable_fields(&self) -> Vec<String> {
        match self.kind {
            IndexKind::ById => vec![ID_FIELD.to_string()],
            IndexKind::Entries => {
                let mut all: Vec<String> = self.fields.iter().map(|p| p.join(".")).collect();
                all.push(CREATION_TIME_FIELD.to_string());
                all.push(ID_FIELD.to_string());
                all
            }
        }
    }

    /// The index key of a document: its field values, then `_creationTime` and `_id`.
    /// `id_value` is `Value::String(id.encode())`, passed in so a write encodes it once.
    pub fn key_of(
        &self,
        id: &DocumentId,
        id_value: &Value,
        creation_time: f64,
        fields: &Object,
    ) -> Vec<u8> {
        match self.kind {
            IndexKind::ById => id_key(id),
            IndexKind::Entries => {
                let mut key = Vec::with_capacity(32 + 16 * self.fields.len());
                for path in &self.fields {
                    encode_element(field_at(fields, path), &mut key);
                }
                encode_element(Some(&Value::Float64(creation_time)), &mut key);
                encode_element(Some(id_value), &mut key);
                key
            }
        }
    }
}

/// A document's value at a dotted path; `None` (undefined) when any step is missing.
pub(crate) fn field_at<'a>(fields: &'a Object, path: &[String]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    let mut v = fields.get(first)?;
    for step in rest {
        v = v.as_object()?.get(step)?;
    }
    Some(v)
}

/// The primary key of a document row: table number (big endian, so a table's rows are one
/// contiguous range) then the 16-byte internal id.
pub(crate) fn id_key(id: &DocumentId) -> Vec<u8> {
    let mut key = Vec::with_capacity(20);
    key.extend_from_slice(&id.table.0.to_be_bytes());
    key.extend_from_slice(&id.internal);
    key
}

pub(crate) fn id_from_key(key: &[u8]) -> Option<DocumentId> {
    if key.len() != 20 {
        return None;
    }
    let table = TableNumber(u32::from_be_bytes(key[..4].try_into().ok()?));
    Some(DocumentId {
        table,
        internal: key[4..].try_into().ok()?,
    })
}

#[derive(Debug)]
pub(crate) struct TableInfo {
    pub number: TableNumber,
    pub def: TableDef,
    pub by_id: IndexInfo,
    pub by_creation_time: IndexInfo,
    pub user_indexes: Vec<IndexInfo>,
}

impl TableInfo {
    pub fn index(&self, name: &str) -> Option<&IndexInfo> {
        match name {
            BY_ID => Some(&self.by_id),
            BY_CREATION_TIME => Some(&self.by_creation_time),
            _ => self.user_indexes.iter().find(|i| i.name == name),
        }
    }
    /// Every index whose entries a write must maintain or report.
    pub fn all_indexes(&self) -> impl Iterator<Item = &IndexInfo> {
        [&self.by_id, &self.by_creation_time]
            .into_iter()
            .chain(self.user_indexes.iter())
    }
}

#[derive(Debug, Default)]
pub(crate) struct Catalog {
    pub by_name: HashMap<String, Arc<TableInfo>>,
    pub by_number: HashMap<u32, Arc<TableInfo>>,
}

impl Catalog {
    pub fn table(&self, name: &str) -> Option<&Arc<TableInfo>> {
        self.by_name.get(name)
    }
    /// The table named `name`, or [`StoreError::UnknownTable`].
    pub fn require(&self, name: &str) -> Result<&Arc<TableInfo>, StoreError> {
        self.table(name)
            .ok_or_else(|| StoreError::UnknownTable(name.to_string()))
    }
    pub fn table_by_number(&self, number: TableNumber) -> Option<&Arc<TableInfo>> {
        self.by_number.get(&number.0)
    }
}

impl IdTables for Catalog {
    fn table_number(&self, table: &str) -> Option<TableNumber> {
        self.by_name.get(table).map(|t| t.number)
    }
}
