//! `dataModel.d.ts`: `DataModel`, `TableNames`, `Doc<"table">` and `Id<"table">`, from
//! `schema.toml`.
//!
//! Convex's codegen writes `DataModelFromSchemaDefinition<typeof schema>`, which needs a
//! `schema.ts`. Ours is TOML, so `DataModel` is written out in the shape that type produces
//! (the `GenericDataModel` of the `convex` package): per table its `document` (the fields plus
//! `_id` and `_creationTime`), its `fieldPaths`, and its `indexes`, each ending in
//! `_creationTime` as `defineTable(..).index(..)` types them, next to the built-in `by_id` and
//! `by_creation_time`. `Doc` and `Id` are then defined exactly as Convex defines them.

use std::collections::BTreeSet;

use tickethub_store::{Schema, TableDef};
use tickethub_value::Validator;

use crate::header;
use crate::ts::{quote, DocShapes, Renderer};

/// Dotted paths into documents of this shape, as `fieldPaths` lists them. A record's keys are
/// any string, so below a record the path is a template literal.
fn field_paths(validator: &Validator, prefix: &str, out: &mut BTreeSet<String>) {
    match validator {
        Validator::Object(fields) => {
            for (name, field) in fields {
                let path = if prefix.is_empty() {
                    name.clone()
                } else {
                    format!("{prefix}.{name}")
                };
                out.insert(path.clone());
                field_paths(field, &path, out);
            }
        }
        Validator::Optional(inner) => field_paths(inner, prefix, out),
        Validator::Union(members) => {
            for member in members {
                field_paths(member, prefix, out);
            }
        }
        Validator::Record(..) => {
            out.insert(format!("{prefix}.${{string}}"));
        }
        Validator::Id(_)
        | Validator::Null
        | Validator::Float64
        | Validator::Int64
        | Validator::Boolean
        | Validator::String
        | Validator::Bytes
        | Validator::Literal(_)
        | Validator::Array(_)
        | Validator::Any => {}
    }
}

/// A union of string literal types (template literals where a path has `${string}`).
fn string_union(paths: &BTreeSet<String>) -> String {
    if paths.is_empty() {
        return "never".into();
    }
    let parts: Vec<String> = paths
        .iter()
        .map(|path| {
            if path.contains("${") {
                format!("`{path}`")
            } else {
                quote(path)
            }
        })
        .collect();
    parts.join(" | ")
}

fn table_type(table: &TableDef, renderer: &mut Renderer<'_>) -> String {
    let document = table.document_validator();
    let (document_type, paths) = match &document {
        Validator::Object(fields) => {
            let mut paths = BTreeSet::new();
            field_paths(&document, "", &mut paths);
            (renderer.fields(fields, 2), string_union(&paths))
        }
        // A schemaless table: any fields beside the system ones, at any path.
        _ => {
            renderer.uses.id = true;
            (
                format!(
                    "{{ _id: Id<{}>; _creationTime: number; [field: string]: any }}",
                    quote(&table.name)
                ),
                "string".to_string(),
            )
        }
    };
    let mut indexes = vec![
        ("by_id".to_string(), vec!["_id".to_string()]),
        (
            "by_creation_time".to_string(),
            vec!["_creationTime".to_string()],
        ),
    ];
    for index in &table.indexes {
        let mut fields = index.fields.clone();
        fields.push("_creationTime".to_string());
        indexes.push((index.name.clone(), fields));
    }
    let mut out = String::from("{\n");
    out.push_str(&format!("    document: {document_type};\n"));
    out.push_str(&format!("    fieldPaths: {paths};\n"));
    out.push_str("    indexes: {\n");
    for (name, fields) in indexes {
        let fields: Vec<String> = fields.iter().map(|f| quote(f)).collect();
        out.push_str(&format!(
            "      {}: [{}];\n",
            quote(&name),
            fields.join(", ")
        ));
    }
    out.push_str("    };\n    searchIndexes: {};\n    vectorIndexes: {};\n  }");
    out
}

/// The text of `dataModel.d.ts`. System tables (`_storage`, …) are not part of `DataModel`, as
/// in Convex; `Id<"_storage">` still works through `SystemTableNames`.
pub fn data_model_d_ts(schema: &Schema) -> String {
    // Documents are written out in full here: this is where `Doc<"table">` is defined.
    let no_shapes = DocShapes::default();
    let mut renderer = Renderer::new(&no_shapes);
    let mut out = header("Generated data model types.");
    out.push_str(
        "import type {\n  DocumentByName,\n  TableNamesInDataModel,\n  SystemTableNames,\n} from \"convex/server\";\n\
         import type { GenericId } from \"convex/values\";\n\n",
    );
    out.push_str(
        "/**\n * A type describing your app's data model: its tables, the type of their documents\n * and their indexes, from schema.toml.\n */\nexport type DataModel = {\n",
    );
    for (name, table) in schema
        .tables
        .iter()
        .filter(|(name, _)| !name.starts_with('_'))
    {
        out.push_str(&format!(
            "  {}: {};\n",
            crate::ts::property(name),
            table_type(table, &mut renderer)
        ));
    }
    out.push_str("};\n\n");
    out.push_str(
        "/**\n * The names of all of your tables.\n */\n\
         export type TableNames = TableNamesInDataModel<DataModel>;\n\n\
         /**\n * The type of a document stored in a table.\n *\n * @typeParam TableName - A string literal type of the table name (like \"users\").\n */\n\
         export type Doc<TableName extends TableNames> = DocumentByName<DataModel, TableName>;\n\n\
         /**\n * An identifier for a document: a string at run time, typed by its table.\n *\n * @typeParam TableName - A string literal type of the table name (like \"users\").\n */\n\
         export type Id<TableName extends TableNames | SystemTableNames> = GenericId<TableName>;\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_objects_unions_and_records() {
        let validator = Validator::parse(
            "object({ a: string, b: optional(object({ c: number })), d: union(object({ e: null }), string), f: record(string, number) })",
        )
        .unwrap();
        let mut paths = BTreeSet::new();
        field_paths(&validator, "", &mut paths);
        assert_eq!(
            string_union(&paths),
            r#""a" | "b" | "b.c" | "d" | "d.e" | "f" | `f.${string}`"#
        );
    }

    #[test]
    fn tables_indexes_and_docs() {
        let schema = Schema::from_toml(
            r#"
            [tables.users]
            fields.name = "string"
            fields.phone = "optional(string)"
            indexes.by_name = ["name"]
            [tables.logs]
            validate = false
            "#,
        )
        .unwrap();
        let text = data_model_d_ts(&schema);
        assert!(
            text.contains("  users: {\n    document: {\n      _creationTime: number;\n      _id: Id<\"users\">;\n      name: string;\n      phone?: string;\n    };\n    fieldPaths: \"_creationTime\" | \"_id\" | \"name\" | \"phone\";\n    indexes: {\n      \"by_id\": [\"_id\"];\n      \"by_creation_time\": [\"_creationTime\"];\n      \"by_name\": [\"name\", \"_creationTime\"];\n    };"),
            "{text}"
        );
        assert!(text.contains("logs: {\n    document: { _id: Id<\"logs\">; _creationTime: number; [field: string]: any };\n    fieldPaths: string;"), "{text}");
        assert!(text.contains(
            "export type Doc<TableName extends TableNames> = DocumentByName<DataModel, TableName>;"
        ));
    }
}
