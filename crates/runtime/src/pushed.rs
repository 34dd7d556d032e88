//! Pushed code: the JavaScript modules `npx convex deploy` / `npx convex dev` sent, kept in the
//! system table `_modules` so they survive a restart.
//!
//! A module's text is split into parts of at most [`MODULE_PART_BYTES`] (documents are limited
//! to 1 MiB, and one bundled chunk of the `convex` package alone can come close). Rows are
//! `{path, part, text}` with index `by_path` on `[path, part]`. A push replaces every row in one
//! transaction, so a restart sees one whole push, never half of two.

use std::collections::BTreeMap;

use tickethub_store::{DocReader, IndexDef, IndexQuery, Order, StoreError, TableDef};
use tickethub_value::{validator::v, Object, Value};

use crate::{FnError, Runtime};

pub const MODULES_TABLE: &str = "_modules";
const BY_PATH: &str = "by_path";
/// Largest piece of module text in one row, in bytes (well under the 1 MiB document limit).
pub const MODULE_PART_BYTES: usize = 512 * 1024;

/// One pushed module: its path inside `convex/` as the CLI names it (`messages.js`,
/// `_deps/chunk-ABC.js`) and its JavaScript source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredModule {
    pub path: String,
    pub source: String,
}

pub(crate) fn system_table() -> TableDef {
    TableDef {
        name: MODULES_TABLE.to_string(),
        fields: [
            ("path".to_string(), v::string()),
            ("part".to_string(), v::number()),
            ("text".to_string(), v::string()),
        ]
        .into_iter()
        .collect(),
        indexes: vec![IndexDef {
            name: BY_PATH.to_string(),
            fields: vec!["path".to_string(), "part".to_string()],
        }],
        validate: true,
    }
}

fn all_rows() -> IndexQuery {
    IndexQuery {
        index: BY_PATH.to_string(),
        ..IndexQuery::full_scan(MODULES_TABLE, Order::Asc)
    }
}

/// Cut `text` into pieces of at most `max` bytes, at char boundaries.
fn split_parts(text: &str, max: usize) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut rest = text;
    while rest.len() > max {
        let mut end = max;
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        parts.push(&rest[..end]);
        rest = &rest[end..];
    }
    parts.push(rest);
    parts
}

fn read_modules(txn: &dyn DocReader) -> Result<Vec<StoredModule>, StoreError> {
    // The index orders rows by path, then part: concatenating in scan order rebuilds each text.
    let mut modules: BTreeMap<String, String> = BTreeMap::new();
    for doc in txn.collect(&all_rows(), None)? {
        let (Some(path), Some(text)) = (
            doc.fields.get("path").and_then(Value::as_str),
            doc.fields.get("text").and_then(Value::as_str),
        ) else {
            continue;
        };
        modules.entry(path.to_string()).or_default().push_str(text);
    }
    Ok(modules
        .into_iter()
        .map(|(path, source)| StoredModule { path, source })
        .collect())
}

/// The stored push, read before a runtime exists: the server reads it right after opening the
/// store, to add the tables the push's schema declares.
pub fn read_stored_modules(store: &tickethub_store::Store) -> Result<Vec<StoredModule>, FnError> {
    Ok(read_modules(&store.read()?)?)
}

impl Runtime {
    /// Create the pushed schema's tables, or change their indexes, now ([`Store::put_tables`],
    /// on a blocking thread).
    ///
    /// [`Store::put_tables`]: tickethub_store::Store::put_tables
    pub async fn put_pushed_tables(
        &self,
        tables: Vec<tickethub_store::TableDef>,
    ) -> Result<(), FnError> {
        let store = self.inner.store.clone();
        tokio::task::spawn_blocking(move || store.put_tables(tables))
            .await
            .map_err(|e| FnError::Internal(format!("creating the pushed tables: {e}")))??;
        Ok(())
    }

    /// Call `changed` whenever a commit rewrites the stored push (or may have: a bulk commit).
    /// A cluster follower reloads the push then, so functions pushed through the leader reach
    /// it without a restart. Runs on the thread that feeds commits: `changed` must be quick.
    pub fn on_pushed_modules_written(&self, changed: impl Fn() + Send + Sync + 'static) {
        let indexes = self.inner.store.index_ids_of(MODULES_TABLE);
        self.inner.store.on_commit(Box::new(move |commits| {
            let touched = commits.iter().any(|c| {
                c.writes.everything || c.writes.keys.iter().any(|k| indexes.contains(&k.index))
            });
            if touched {
                changed();
            }
        }));
    }

    /// The modules of the last successful push (empty if nothing was ever pushed).
    pub fn pushed_modules(&self) -> Result<Vec<StoredModule>, FnError> {
        Ok(read_modules(&self.inner.store.read()?)?)
    }

    /// Replace the stored modules with `modules`, in one transaction.
    pub async fn save_pushed_modules(&self, modules: Vec<StoredModule>) -> Result<(), FnError> {
        crate::scheduler::system_mutation(self, move |txn| {
            for doc in txn.collect(&all_rows(), None)? {
                txn.delete_doc(doc.id)?;
            }
            for module in &modules {
                for (part, text) in split_parts(&module.source, MODULE_PART_BYTES)
                    .into_iter()
                    .enumerate()
                {
                    let mut row = Object::new();
                    row.insert("path".into(), Value::from(module.path.clone()));
                    row.insert("part".into(), Value::Float64(part as f64));
                    row.insert("text".into(), Value::from(text.to_string()));
                    txn.insert_doc(MODULES_TABLE, row)?;
                }
            }
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_split_at_char_boundaries_and_rejoin() {
        let text = "aé".repeat(10);
        let parts = split_parts(&text, 4);
        assert!(parts.iter().all(|p| p.len() <= 4));
        assert_eq!(parts.concat(), text);
        assert_eq!(split_parts("", 4), vec![""]);
    }
}
