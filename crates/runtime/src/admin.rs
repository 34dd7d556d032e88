//! Admin edits of documents (the dashboard's Data page). Each edit is one transaction on the
//! writer thread, checked against the schema by the store exactly like a function's write, so a
//! violation writes nothing. System tables (`_*`) are the engine's: they are not edited here.

use tickethub_store::DocReader;
use tickethub_value::{DocumentId, Object, Value};

use crate::db::WriteOps;
use crate::writer::run_on_writer;
use crate::{FnError, Runtime};

/// One field change of an admin patch: `Some` sets, `None` removes (Convex's `undefined`).
pub type FieldChange = (String, Option<Value>);

fn refuse_system_table(table: &str) -> Result<(), FnError> {
    if table.starts_with('_') {
        return Err(FnError::msg(format!(
            "{table} is a system table; the engine owns its documents and they cannot be edited here."
        )));
    }
    Ok(())
}

fn table_of(txn: &dyn DocReader, id: &str) -> Result<(DocumentId, String), FnError> {
    let decoded = DocumentId::decode(id)?;
    let table = txn
        .table_name(decoded.table)
        .ok_or_else(|| FnError::msg(format!("No document has the id {id}.")))?;
    Ok((decoded, table))
}

impl Runtime {
    /// Insert `fields` into `table`; the new document's id.
    pub async fn admin_insert(&self, table: String, fields: Object) -> Result<String, FnError> {
        refuse_system_table(&table)?;
        let (id, _) = run_on_writer(&self.inner.store, move |txn| -> Result<_, FnError> {
            Ok(txn.insert_doc(&table, fields)?)
        })
        .await?;
        Ok(id.encode())
    }

    /// Shallow-merge `changes` into document `id` (Convex's `db.patch`).
    pub async fn admin_patch(&self, id: String, changes: Vec<FieldChange>) -> Result<(), FnError> {
        run_on_writer(&self.inner.store, move |txn| -> Result<_, FnError> {
            let (decoded, table) = table_of(&*txn, &id)?;
            refuse_system_table(&table)?;
            Ok(txn.patch_doc(decoded, changes)?)
        })
        .await?;
        Ok(())
    }

    /// Delete document `id`.
    pub async fn admin_delete(&self, id: String) -> Result<(), FnError> {
        run_on_writer(&self.inner.store, move |txn| -> Result<_, FnError> {
            let (decoded, table) = table_of(&*txn, &id)?;
            refuse_system_table(&table)?;
            Ok(txn.delete_doc(decoded)?)
        })
        .await?;
        Ok(())
    }
}
