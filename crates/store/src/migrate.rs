//! Creating the database and migrating it to a schema: table numbers, index ids, dropping removed
//! indexes, backfilling new ones, and checking stored documents against changed validators. All of
//! it in one transaction, before anything is served.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use rusqlite::{params, Connection, OptionalExtension};
use tickethub_value::{TableNumber, Validator};

use crate::catalog::{
    id_from_key, Catalog, IndexInfo, IndexKind, TableInfo, BY_CREATION_TIME, BY_ID,
};
use crate::codec::decode_fields;
use crate::log::IndexId;
use crate::store::FIRST_USER_TABLE;
use crate::{Schema, SchemaError, StoreError, TableDef, Timestamp};

/// Documents between progress lines while backfilling or checking a table.
const PROGRESS_EVERY: u64 = 100_000;

pub(crate) const META_LAST_TS: &str = "last_ts";
pub(crate) const META_LAST_CREATION: &str = "last_creation_time";
const META_NEXT_INDEX: &str = "next_index_id";
const META_SCHEMA: &str = "schema";

/// What the store needs from a migrated database.
pub(crate) struct Migrated {
    pub(crate) catalog: Catalog,
    /// The last commit timestamp, so timestamps keep increasing across restarts.
    pub(crate) last_ts: Timestamp,
    /// The last `_creationTime` handed out.
    pub(crate) last_creation: f64,
}

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

pub(crate) fn meta_set(
    conn: &Connection,
    key: &str,
    value: impl rusqlite::ToSql,
) -> Result<(), StoreError> {
    conn.prepare_cached("INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value")?
        .execute(params![key, value])?;
    Ok(())
}

/// What migration needs from the last schema applied: per table, a fingerprint of its validator.
fn schema_fingerprint(def: &TableDef) -> serde_json::Value {
    // `Validator`'s Debug form is a faithful, deterministic rendering: equal text means equal
    // validators, which is all the diff needs.
    let fields: BTreeMap<&String, String> = def
        .fields
        .iter()
        .map(|(k, v)| (k, format!("{v:?}")))
        .collect();
    serde_json::json!({ "validate": def.validate, "fields": fields })
}

/// Index definition as stored in the `indexes` table.
fn fields_json(fields: &[String]) -> String {
    serde_json::to_string(fields).expect("strings serialize")
}

struct StoredIndex {
    id: IndexId,
    table_number: u32,
    name: String,
    fields: Vec<String>,
}

/// Create or migrate the database to `schema` inside one transaction.
pub(crate) fn migrate(conn: &Connection, schema: &Schema) -> Result<Migrated, StoreError> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    match migrate_in_txn(conn, schema) {
        Ok(result) => {
            conn.execute_batch("COMMIT")?;
            Ok(result)
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

fn migrate_in_txn(conn: &Connection, schema: &Schema) -> Result<Migrated, StoreError> {
    conn.execute_batch(CREATE_TABLES)?;
    crate::datafile::stamp(conn)?;
    for def in schema.tables.values() {
        // System tables come from the engine, not schema.toml, but follow the same index rules.
        crate::schema::check_indexes(def)?;
    }
    let last_ts = Timestamp(meta_get::<i64>(conn, META_LAST_TS)?.unwrap_or(0) as u64);
    let last_creation = meta_get::<f64>(conn, META_LAST_CREATION)?.unwrap_or(0.0);
    let mut next_index: u32 = meta_get::<i64>(conn, META_NEXT_INDEX)?.unwrap_or(1) as u32;
    let previous: serde_json::Value = match meta_get::<String>(conn, META_SCHEMA)? {
        Some(text) => serde_json::from_str(&text)
            .map_err(|e| StoreError::storage(format!("stored schema: {e}")))?,
        None => serde_json::json!({}),
    };

    // Table numbers: existing ones kept, new ones appended; rows are never deleted, so a number
    // is never reused.
    let mut numbers: BTreeMap<String, u32> = BTreeMap::new();
    {
        let mut stmt = conn.prepare("SELECT name, number FROM tables")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, u32>(1)?)))?;
        for row in rows {
            let (name, number) = row?;
            numbers.insert(name, number);
        }
    }
    for name in schema.tables.keys() {
        if numbers.contains_key(name) {
            continue;
        }
        let system = name.starts_with('_');
        let existing = numbers
            .values()
            .copied()
            .filter(|n| (*n >= FIRST_USER_TABLE) != system);
        let number =
            existing
                .max()
                .map(|n| n + 1)
                .unwrap_or(if system { 1 } else { FIRST_USER_TABLE });
        if system && number >= FIRST_USER_TABLE {
            return Err(StoreError::storage("too many system tables"));
        }
        conn.execute(
            "INSERT INTO tables (name, number) VALUES (?1, ?2)",
            params![name, number],
        )?;
        numbers.insert(name.clone(), number);
    }

    let mut stored: Vec<StoredIndex> = Vec::new();
    {
        let mut stmt = conn.prepare("SELECT index_id, table_number, name, fields FROM indexes")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, u32>(0)?,
                r.get::<_, u32>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
            ))
        })?;
        for row in rows {
            let (id, table_number, name, fields) = row?;
            let fields: Vec<String> = serde_json::from_str(&fields)
                .map_err(|e| StoreError::storage(format!("stored index fields: {e}")))?;
            stored.push(StoredIndex {
                id,
                table_number,
                name,
                fields,
            });
        }
    }

    let mut catalog = Catalog::default();
    let mut to_backfill: Vec<(Arc<TableInfo>, IndexInfo)> = Vec::new();
    for (name, &number) in &numbers {
        // Tables dropped from the schema keep their documents and built-in indexes, unvalidated.
        let def = schema
            .tables
            .get(name)
            .cloned()
            .unwrap_or_else(|| TableDef {
                name: name.clone(),
                fields: BTreeMap::new(),
                indexes: Vec::new(),
                validate: false,
            });
        let mut wanted: Vec<(String, Vec<String>)> =
            vec![(BY_ID.into(), vec![]), (BY_CREATION_TIME.into(), vec![])];
        wanted.extend(
            def.indexes
                .iter()
                .map(|i| (i.name.clone(), i.fields.clone())),
        );
        let mut kept: HashMap<String, IndexId> = HashMap::new();
        for old in stored.iter().filter(|s| s.table_number == number) {
            match wanted.iter().find(|(n, _)| *n == old.name) {
                Some((_, fields)) if *fields == old.fields => {
                    kept.insert(old.name.clone(), old.id);
                }
                _ => {
                    tracing::info!(table = %name, index = %old.name, "dropping index removed or changed in the schema");
                    conn.execute(
                        "DELETE FROM index_entries WHERE index_id = ?1",
                        params![old.id],
                    )?;
                    conn.execute("DELETE FROM indexes WHERE index_id = ?1", params![old.id])?;
                }
            }
        }
        let mut infos: Vec<(IndexInfo, bool)> = Vec::new();
        for (index_name, fields) in wanted {
            let (id, fresh) = match kept.get(&index_name) {
                Some(&id) => (id, false),
                None => {
                    let id = next_index;
                    next_index += 1;
                    conn.execute(
                        "INSERT INTO indexes (index_id, table_number, name, fields) VALUES (?1, ?2, ?3, ?4)",
                        params![id, number, index_name, fields_json(&fields)],
                    )?;
                    (id, true)
                }
            };
            let kind = if index_name == BY_ID {
                IndexKind::ById
            } else {
                IndexKind::Entries
            };
            let paths = fields
                .iter()
                .map(|f| f.split('.').map(str::to_string).collect())
                .collect();
            infos.push((
                IndexInfo::new(id, index_name, paths, kind),
                fresh && kind == IndexKind::Entries,
            ));
        }
        let mut infos = infos.into_iter();
        let (by_id, _) = infos.next().expect("by_id first");
        let (by_creation_time, ct_fresh) = infos.next().expect("by_creation_time second");
        let rest: Vec<(IndexInfo, bool)> = infos.collect();
        let table = Arc::new(TableInfo {
            number: TableNumber(number),
            def,
            by_id,
            by_creation_time: by_creation_time.clone(),
            user_indexes: rest.iter().map(|(i, _)| i.clone()).collect(),
        });
        if ct_fresh {
            to_backfill.push((table.clone(), by_creation_time));
        }
        for (info, fresh) in rest {
            if fresh {
                to_backfill.push((table.clone(), info));
            }
        }
        catalog.by_name.insert(name.clone(), table.clone());
        catalog.by_number.insert(number, table);
    }

    // Check stored documents against validators that are new or changed, before any backfill.
    for table in catalog.by_name.values() {
        if !table.def.validate {
            continue;
        }
        let now = schema_fingerprint(&table.def);
        if previous.get(&table.def.name) == Some(&now) {
            continue;
        }
        let mut checked = 0u64;
        for_each_document(conn, table.number, |id, _, fields| {
            Validator::check_object(&fields, &table.def.fields, &catalog).map_err(|reason| {
                StoreError::Schema(SchemaError::DataViolates {
                    id: id.encode(),
                    table: table.def.name.clone(),
                    reason: reason.to_string(),
                })
            })?;
            checked += 1;
            if checked.is_multiple_of(PROGRESS_EVERY) {
                tracing::info!(table = %table.def.name, checked, "checking stored documents against the new schema");
            }
            Ok(())
        })?;
    }

    for (table, index) in &to_backfill {
        let mut done = 0u64;
        let mut insert = conn.prepare_cached(
            "INSERT INTO index_entries (index_id, key, doc_id) VALUES (?1, ?2, ?3)",
        )?;
        for_each_document(conn, table.number, |id, creation_time, fields| {
            let id_value = tickethub_value::Value::String(id.encode());
            let key = index.key_of(&id, &id_value, creation_time, &fields);
            insert.execute(params![index.id, key, crate::catalog::id_key(&id)])?;
            done += 1;
            if done.is_multiple_of(PROGRESS_EVERY) {
                tracing::info!(table = %table.def.name, index = %index.name, done, "backfilling index");
            }
            Ok(())
        })?;
        if done > 0 {
            tracing::info!(table = %table.def.name, index = %index.name, done, "index backfilled");
        }
    }

    let fingerprints: serde_json::Map<String, serde_json::Value> = catalog
        .by_name
        .values()
        .map(|t| (t.def.name.clone(), schema_fingerprint(&t.def)))
        .collect();
    meta_set(
        conn,
        META_SCHEMA,
        serde_json::Value::Object(fingerprints).to_string(),
    )?;
    meta_set(conn, META_NEXT_INDEX, i64::from(next_index))?;
    Ok(Migrated {
        catalog,
        last_ts,
        last_creation,
    })
}

/// Visit every document of a table in id order.
fn for_each_document(
    conn: &Connection,
    table: TableNumber,
    mut f: impl FnMut(
        tickethub_value::DocumentId,
        f64,
        tickethub_value::Object,
    ) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let start = table.0.to_be_bytes().to_vec();
    let end = (u64::from(table.0) + 1).to_be_bytes()[4..].to_vec();
    let mut stmt = conn.prepare(
        "SELECT id, creation_time, body FROM documents WHERE id >= ?1 AND id < ?2 ORDER BY id",
    )?;
    let mut rows = stmt.query(params![start, end])?;
    while let Some(row) = rows.next()? {
        let id_bytes: Vec<u8> = row.get(0)?;
        let id = id_from_key(&id_bytes)
            .ok_or_else(|| StoreError::storage("malformed document id in storage"))?;
        let creation_time: f64 = row.get(1)?;
        let body = row
            .get_ref(2)?
            .as_blob()
            .map_err(|e| StoreError::storage(e.to_string()))?;
        let fields = decode_fields(body).map_err(|e| StoreError::storage(e.to_string()))?;
        f(id, creation_time, fields)?;
    }
    Ok(())
}
