//! Creating the database and migrating it to a schema: table numbers, index ids, dropping removed
//! indexes, backfilling new ones, and checking stored documents against changed validators. All of
//! it in one transaction, before anything is served.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use tickethub_value::{TableNumber, Validator};

use crate::backend::{
    MigrationConn, StoredIndex, META_LAST_CREATION, META_LAST_TS, META_NEXT_INDEX, META_SCHEMA,
};
use crate::catalog::{
    id_from_key, Catalog, IndexInfo, IndexKind, TableInfo, BY_CREATION_TIME, BY_ID,
};
use crate::codec::decode_fields;
use crate::log::IndexId;
use crate::store::FIRST_USER_TABLE;
use crate::{Schema, SchemaError, StoreError, TableDef, Timestamp};

/// Documents between progress lines while backfilling or checking a table.
const PROGRESS_EVERY: u64 = 100_000;

/// Documents read per round while checking or backfilling a table.
const PAGE: usize = 1_000;

/// What the store needs from a migrated database.
pub(crate) struct Migrated {
    pub(crate) catalog: Catalog,
    /// The last commit timestamp, so timestamps keep increasing across restarts.
    pub(crate) last_ts: Timestamp,
    /// The last `_creationTime` handed out.
    pub(crate) last_creation: f64,
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

/// Create or migrate the database to `schema` inside one transaction.
pub(crate) fn migrate(
    conn: &mut dyn MigrationConn,
    schema: &Schema,
) -> Result<Migrated, StoreError> {
    conn.begin()?;
    match migrate_in_txn(conn, schema) {
        Ok(result) => {
            conn.commit()?;
            Ok(result)
        }
        Err(e) => {
            conn.rollback();
            Err(e)
        }
    }
}

fn migrate_in_txn(conn: &mut dyn MigrationConn, schema: &Schema) -> Result<Migrated, StoreError> {
    conn.create_tables()?;
    for def in schema.tables.values() {
        // System tables come from the engine, not schema.toml, but follow the same index rules.
        crate::schema::check_indexes(def)?;
    }
    let last_ts = Timestamp(conn.meta_i64(META_LAST_TS)?.unwrap_or(0) as u64);
    let last_creation = conn.meta_f64(META_LAST_CREATION)?.unwrap_or(0.0);
    let mut next_index: u32 = conn.meta_i64(META_NEXT_INDEX)?.unwrap_or(1) as u32;
    let previous: serde_json::Value = match conn.meta_text(META_SCHEMA)? {
        Some(text) => serde_json::from_str(&text)
            .map_err(|e| StoreError::storage(format!("stored schema: {e}")))?,
        None => serde_json::json!({}),
    };

    // Table numbers: existing ones kept, new ones appended; rows are never deleted, so a number
    // is never reused.
    let mut numbers: BTreeMap<String, u32> = conn.tables()?.into_iter().collect();
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
        conn.insert_table(name, number)?;
        numbers.insert(name.clone(), number);
    }

    let stored = conn.indexes()?;

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
                    conn.drop_index(old.id)?;
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
                    conn.insert_index(&StoredIndex {
                        id,
                        table_number: number,
                        name: index_name.clone(),
                        fields: fields.clone(),
                    })?;
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
        for_each_document(conn, table.number, &mut |_, id, _, fields| {
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
        let mut entries: Vec<(Vec<u8>, Vec<u8>)> = Vec::with_capacity(PAGE);
        for_each_document(
            conn,
            table.number,
            &mut |conn, id, creation_time, fields| {
                let id_value = tickethub_value::Value::String(id.encode());
                let key = index.key_of(&id, &id_value, creation_time, &fields);
                entries.push((key, crate::catalog::id_key(&id)));
                if entries.len() >= PAGE {
                    conn.insert_entries(index.id, &entries)?;
                    entries.clear();
                }
                done += 1;
                if done.is_multiple_of(PROGRESS_EVERY) {
                    tracing::info!(table = %table.def.name, index = %index.name, done, "backfilling index");
                }
                Ok(())
            },
        )?;
        conn.insert_entries(index.id, &entries)?;
        if done > 0 {
            tracing::info!(table = %table.def.name, index = %index.name, done, "index backfilled");
        }
    }

    let fingerprints: serde_json::Map<String, serde_json::Value> = catalog
        .by_name
        .values()
        .map(|t| (t.def.name.clone(), schema_fingerprint(&t.def)))
        .collect();
    conn.set_meta_text(
        META_SCHEMA,
        &serde_json::Value::Object(fingerprints).to_string(),
    )?;
    conn.set_meta_i64(META_NEXT_INDEX, i64::from(next_index))?;
    Ok(Migrated {
        catalog,
        last_ts,
        last_creation,
    })
}

/// What [`for_each_document`] calls with each document: the connection (to write through), the
/// id, the creation time and the fields.
type DocumentVisitor<'a> = dyn FnMut(
        &mut dyn MigrationConn,
        tickethub_value::DocumentId,
        f64,
        tickethub_value::Object,
    ) -> Result<(), StoreError>
    + 'a;

/// Visit every document of a table in id order, a page at a time; the visitor may write through
/// the connection between pages.
fn for_each_document(
    conn: &mut dyn MigrationConn,
    table: TableNumber,
    visit: &mut DocumentVisitor<'_>,
) -> Result<(), StoreError> {
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = conn.documents_page(table, after.as_deref(), PAGE)?;
        let Some(last) = page.last() else {
            return Ok(());
        };
        after = Some(last.id.clone());
        for doc in page {
            let id = id_from_key(&doc.id)
                .ok_or_else(|| StoreError::storage("malformed document id in storage"))?;
            let fields =
                decode_fields(&doc.body).map_err(|e| StoreError::storage(e.to_string()))?;
            visit(conn, id, doc.creation_time, fields)?;
        }
    }
}
