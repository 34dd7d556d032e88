//! `schema.toml`: tables, fields (validators in text form), indexes, and a per-table switch for
//! schema validation. Example:
//!
//! ```toml
//! [tables.users]
//! validate = true                     # default true
//! fields.name = "string"
//! fields.phone = "optional(string)"
//! indexes.by_user_id = ["userId"]
//! ```

use std::collections::BTreeMap;

use tickethub_value::Validator;

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum SchemaError {
    #[error("schema.toml: {0}")]
    Parse(String),
    #[error("schema.toml: table `{table}`: {reason}")]
    Table { table: String, reason: String },
    /// A stored document violates a changed validator: the store refuses to open.
    #[error("Document with ID \"{id}\" in table \"{table}\" does not match the schema: {reason}")]
    DataViolates { id: String, table: String, reason: String },
}

#[derive(Clone, Debug, PartialEq)]
pub struct IndexDef {
    pub name: String,
    /// User fields; the store appends `_creationTime` and `_id` implicitly.
    pub fields: Vec<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TableDef {
    pub name: String,
    /// Field validators (top-level object shape). Empty with `validate = false` means schemaless.
    pub fields: BTreeMap<String, Validator>,
    pub indexes: Vec<IndexDef>,
    /// Whether writes and stored documents are checked against `fields`.
    pub validate: bool,
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct Schema {
    pub tables: BTreeMap<String, TableDef>,
}

impl Schema {
    pub fn from_toml(_text: &str) -> Result<Schema, SchemaError> {
        todo!()
    }
    /// Add an engine-owned system table (name starts with `_`), e.g. `_scheduled_functions`.
    pub fn add_system_table(&mut self, table: TableDef) {
        self.tables.insert(table.name.clone(), table);
    }
}
