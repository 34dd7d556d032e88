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

use crate::catalog::{CREATION_TIME_FIELD, ID_FIELD};

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum SchemaError {
    #[error("schema.toml: {0}")]
    Parse(String),
    #[error("schema.toml: table `{table}`: {reason}")]
    Table { table: String, reason: String },
    /// A stored document violates a changed validator: the store refuses to open.
    #[error("Document with ID \"{id}\" in table \"{table}\" does not match the schema: {reason}")]
    DataViolates {
        id: String,
        table: String,
        reason: String,
    },
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

impl TableDef {
    /// The validator of a whole stored document: the declared fields plus the system fields
    /// `_id` (an ID of this table) and `_creationTime` (ms since the epoch), as Convex adds them.
    /// Return validators (`returns`) and generated TypeScript types (`Doc<"table">`) both start
    /// from it, so they cannot drift from `schema.toml`. A schemaless table (`validate = false`)
    /// admits any document, so its validator is `any`.
    pub fn document_validator(&self) -> Validator {
        if !self.validate {
            return Validator::Any;
        }
        let mut fields = self.fields.clone();
        fields.insert(ID_FIELD.to_string(), Validator::Id(self.name.clone()));
        fields.insert(CREATION_TIME_FIELD.to_string(), Validator::Float64);
        Validator::Object(fields)
    }
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct Schema {
    pub tables: BTreeMap<String, TableDef>,
}

/// Longest table or index name (Convex: identifiers of at most 64 characters).
pub const MAX_NAME_CHARS: usize = tickethub_value::limits::MAX_IDENTIFIER_CHARS;
/// Most user fields one index may list (`_creationTime` and `_id` are appended on top).
pub const MAX_INDEX_FIELDS: usize = 16;

impl Schema {
    /// Parse and check `schema.toml`. Errors name the table (and index or field) at fault.
    pub fn from_toml(text: &str) -> Result<Schema, SchemaError> {
        let root: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| SchemaError::Parse(e.to_string()))?;
        let mut schema = Schema::default();
        for (key, value) in &root {
            if key != "tables" {
                return Err(SchemaError::Parse(format!(
                    "unknown top-level key `{key}` (expected `[tables.<name>]`)"
                )));
            }
            let tables = value
                .as_table()
                .ok_or_else(|| SchemaError::Parse("`tables` must be a table".into()))?;
            for (name, body) in tables {
                let def = parse_table(name, body)?;
                schema.tables.insert(name.clone(), def);
            }
        }
        Ok(schema)
    }
    /// Add an engine-owned system table (name starts with `_`), e.g. `_scheduled_functions`.
    pub fn add_system_table(&mut self, table: TableDef) {
        self.tables.insert(table.name.clone(), table);
    }
}

fn table_error(table: &str, reason: impl Into<String>) -> SchemaError {
    SchemaError::Table {
        table: table.to_string(),
        reason: reason.into(),
    }
}

/// Identifier rule shared by tables and indexes: ASCII letter first, then letters, digits, `_`.
pub(crate) fn check_identifier(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("name is empty".into());
    }
    if name.starts_with('_') {
        return Err(format!(
            "`{name}`: names starting with `_` are reserved for the system"
        ));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(format!(
            "`{name}` is longer than {MAX_NAME_CHARS} characters"
        ));
    }
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!(
            "`{name}` is not an identifier (a letter, then letters, digits or `_`)"
        ));
    }
    Ok(())
}

fn parse_table(name: &str, body: &toml::Value) -> Result<TableDef, SchemaError> {
    check_identifier(name).map_err(|r| table_error(name, r))?;
    let body = body
        .as_table()
        .ok_or_else(|| table_error(name, "must be a table"))?;
    let mut def = TableDef {
        name: name.to_string(),
        fields: BTreeMap::new(),
        indexes: Vec::new(),
        validate: true,
    };
    for (key, value) in body {
        match key.as_str() {
            "validate" => {
                def.validate = value
                    .as_bool()
                    .ok_or_else(|| table_error(name, "`validate` must be true or false"))?;
            }
            "fields" => {
                let fields = value
                    .as_table()
                    .ok_or_else(|| table_error(name, "`fields` must be a table"))?;
                for (field, text) in fields {
                    if field.starts_with('_') || field.starts_with('$') || field.is_empty() {
                        return Err(table_error(name, format!("field `{field}`: user field names may not be empty or start with `_` or `$`")));
                    }
                    let text = text
                        .as_str()
                        .ok_or_else(|| table_error(name, format!("field `{field}`: the validator must be a string such as \"string\"")))?;
                    let validator = Validator::parse(text)
                        .map_err(|e| table_error(name, format!("field `{field}`: {e}")))?;
                    def.fields.insert(field.clone(), validator);
                }
            }
            "indexes" => {
                let indexes = value
                    .as_table()
                    .ok_or_else(|| table_error(name, "`indexes` must be a table"))?;
                for (index, fields) in indexes {
                    let list = fields.as_array().ok_or_else(|| {
                        table_error(
                            name,
                            format!("index `{index}`: must be a list of field names"),
                        )
                    })?;
                    let mut names = Vec::with_capacity(list.len());
                    for f in list {
                        let f = f.as_str().ok_or_else(|| {
                            table_error(
                                name,
                                format!("index `{index}`: field names must be strings"),
                            )
                        })?;
                        names.push(f.to_string());
                    }
                    def.indexes.push(IndexDef {
                        name: index.clone(),
                        fields: names,
                    });
                }
            }
            other => {
                return Err(table_error(
                    name,
                    format!("unknown key `{other}` (expected `validate`, `fields` or `indexes`)"),
                ));
            }
        }
    }
    check_indexes(&def)?;
    Ok(def)
}

/// Index rules: identifier names not clashing with the built-in indexes, 1..=16 distinct user
/// fields, and, when the table is validated, every field path present in the validator.
pub(crate) fn check_indexes(def: &TableDef) -> Result<(), SchemaError> {
    let name = &def.name;
    for (i, index) in def.indexes.iter().enumerate() {
        let at = |r: String| table_error(name, format!("index `{}`: {r}", index.name));
        check_identifier(&index.name).map_err(at)?;
        if index.name == "by_id" || index.name == "by_creation_time" {
            return Err(at("this name is reserved for a built-in index".into()));
        }
        if def.indexes[..i]
            .iter()
            .any(|other| other.name == index.name)
        {
            return Err(at("declared twice".into()));
        }
        if index.fields.is_empty() {
            return Err(at("lists no fields".into()));
        }
        if index.fields.len() > MAX_INDEX_FIELDS {
            return Err(at(format!(
                "has {} fields, more than the maximum of {MAX_INDEX_FIELDS}",
                index.fields.len()
            )));
        }
        for (j, field) in index.fields.iter().enumerate() {
            if index.fields[..j].contains(field) {
                return Err(at(format!("field `{field}` is listed twice")));
            }
            if field
                .split('.')
                .any(|part| part.is_empty() || part.starts_with('$'))
                || field.starts_with('_')
            {
                return Err(at(format!(
                    "`{field}` is not a usable field path (`_creationTime` and `_id` are appended to every index)"
                )));
            }
            if def.validate && !path_in_shape(field, &def.fields) {
                return Err(at(format!("field `{field}` is not in the table's fields")));
            }
        }
    }
    Ok(())
}

/// Whether a dotted path can exist in documents of this shape. Paths through `any`, unions,
/// records and the like are accepted: only a plain object shape can prove a field absent.
fn path_in_shape(path: &str, shape: &BTreeMap<String, Validator>) -> bool {
    let (head, rest) = match path.split_once('.') {
        Some((h, r)) => (h, Some(r)),
        None => (path, None),
    };
    let Some(validator) = shape.get(head) else {
        return false;
    };
    let Some(rest) = rest else { return true };
    let mut v = validator;
    while let Validator::Optional(inner) = v {
        v = inner;
    }
    match v {
        Validator::Object(inner) => path_in_shape(rest, inner),
        Validator::Any | Validator::Union(_) | Validator::Record(..) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_form() {
        let schema = Schema::from_toml(
            r#"
            [tables.users]
            fields.name = "string"
            fields.phone = "optional(string)"
            fields.userId = "string"
            indexes.by_user_id = ["userId"]

            [tables.logs]
            validate = false
            indexes.by_level = ["level"]
            "#,
        )
        .unwrap();
        let users = &schema.tables["users"];
        assert!(users.validate);
        assert_eq!(users.fields.len(), 3);
        assert_eq!(
            users.indexes,
            vec![IndexDef {
                name: "by_user_id".into(),
                fields: vec!["userId".into()]
            }]
        );
        assert!(!schema.tables["logs"].validate);
    }

    fn err(text: &str) -> String {
        Schema::from_toml(text).unwrap_err().to_string()
    }

    #[test]
    fn errors_say_where() {
        assert!(err("[tables.users\n").starts_with("schema.toml: "));
        assert!(err("[tables._x]\n").contains("reserved"));
        assert!(err(&format!("[tables.{}]\n", "a".repeat(65))).contains("longer than 64"));
        let e = err("[tables.users]\nfields.a = \"string\"\nindexes.by_b = [\"b\"]\n");
        assert!(
            e.contains("`users`") && e.contains("by_b") && e.contains("`b`"),
            "{e}"
        );
        let many: Vec<String> = (0..17).map(|i| format!("\"f{i}\"")).collect();
        let e = err(&format!(
            "[tables.t]\nvalidate = false\nindexes.big = [{}]\n",
            many.join(",")
        ));
        assert!(e.contains("more than the maximum of 16"), "{e}");
        assert!(err("[tables.t]\ncolumns = 1\n").contains("unknown key `columns`"));
        assert!(
            err("[tables.t]\nvalidate = false\nindexes.by_id = [\"a\"]\n").contains("reserved")
        );
        assert!(err("[tables.t]\nfields._a = \"string\"\n").contains("`_a`"));
    }

    #[test]
    fn document_validator_adds_the_system_fields() {
        let schema = Schema::from_toml(
            "[tables.users]\nfields.name = \"string\"\n[tables.logs]\nvalidate = false\n",
        )
        .unwrap();
        let doc = schema.tables["users"].document_validator();
        assert_eq!(
            doc.to_string(),
            r#"v.object({_creationTime: v.float64(), _id: v.id("users"), name: v.string()})"#
        );
        assert_eq!(schema.tables["logs"].document_validator(), Validator::Any);
    }

    #[test]
    fn nested_index_paths() {
        let ok = "[tables.t]\nfields.a = \"object({ b: string })\"\nindexes.by_ab = [\"a.b\"]\n";
        Schema::from_toml(ok).unwrap();
        let bad = "[tables.t]\nfields.a = \"object({ b: string })\"\nindexes.by_ac = [\"a.c\"]\n";
        assert!(Schema::from_toml(bad).is_err());
    }
}

#[cfg(test)]
mod app_schema {
    #[test]
    fn the_repo_schema_parses() {
        let text = include_str!("../../../schema.toml");
        let schema = super::Schema::from_toml(text).unwrap();
        let names: Vec<&str> = schema.tables.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "clerkSync",
                "events",
                "purchaseRefusals",
                "rateLimits",
                "stripeEvents",
                "ticketCounts",
                "tickets",
                "userTombstones",
                "users",
                "waitingList",
                "webhookDeliveries"
            ]
        );
        let tickets = &schema.tables["tickets"];
        assert_eq!(tickets.indexes.len(), 4);
        assert!(schema.tables.values().all(|t| t.validate));
    }
}
