//! A validator as a TypeScript type, spelled the way Convex's own codegen spells it:
//! `v.id("events")` is `Id<"events">`, `v.int64()` is `bigint`, `v.bytes()` is `ArrayBuffer`,
//! an optional field is `name?: T`, and an empty object is `Record<string, never>` (so an
//! excess property in a call's arguments is an error).
//!
//! In `api.d.ts`, an object that is exactly a table's document (its fields, `_id` and
//! `_creationTime`) is written `Doc<"table">`, and one that extends it, as `{...ticket, event}`
//! does, `Doc<"table"> & { event: … }`: the reader sees the same names the front end uses.

use std::collections::BTreeMap;

use tickethub_store::Schema;
use tickethub_value::{Validator, Value};

/// Document shapes to recognise, by table. Empty when rendering the documents themselves.
#[derive(Debug, Default)]
pub struct DocShapes {
    tables: BTreeMap<String, BTreeMap<String, Validator>>,
}

impl DocShapes {
    /// The documents of every validated table of `schema`.
    pub fn from_schema(schema: &Schema) -> DocShapes {
        let tables = schema
            .tables
            .iter()
            .filter_map(|(name, table)| match table.document_validator() {
                Validator::Object(fields) => Some((name.clone(), fields)),
                _ => None,
            })
            .collect();
        DocShapes { tables }
    }

    /// The table whose whole document `shape` contains (field for field, same validators),
    /// found through `shape`'s `_id: v.id(table)`.
    fn document_in(&self, shape: &BTreeMap<String, Validator>) -> Option<&str> {
        let Some(Validator::Id(table)) = shape.get("_id") else {
            return None;
        };
        let (name, document) = self.tables.get_key_value(table)?;
        document
            .iter()
            .all(|(field, validator)| shape.get(field) == Some(validator))
            .then_some(name.as_str())
    }
}

/// Which type names the rendered text refers to, so a file imports only what it uses.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Uses {
    pub doc: bool,
    pub id: bool,
}

/// Renders validators as TypeScript, indenting nested objects.
pub struct Renderer<'a> {
    shapes: &'a DocShapes,
    pub uses: Uses,
}

const INDENT: &str = "  ";

impl<'a> Renderer<'a> {
    pub fn new(shapes: &'a DocShapes) -> Renderer<'a> {
        Renderer {
            shapes,
            uses: Uses::default(),
        }
    }

    /// `validator` as a type, for text starting at nesting depth `depth`.
    pub fn render(&mut self, validator: &Validator, depth: usize) -> String {
        match validator {
            Validator::Id(table) => {
                self.uses.id = true;
                format!("Id<{}>", quote(table))
            }
            Validator::Null => "null".into(),
            Validator::Float64 => "number".into(),
            Validator::Int64 => "bigint".into(),
            Validator::Boolean => "boolean".into(),
            Validator::String => "string".into(),
            Validator::Bytes => "ArrayBuffer".into(),
            Validator::Any => "any".into(),
            Validator::Literal(value) => literal(value),
            Validator::Array(element) => format!("Array<{}>", self.render(element, depth)),
            Validator::Record(keys, values) => format!(
                "Record<{}, {}>",
                self.render(keys, depth),
                self.render(values, depth)
            ),
            Validator::Union(members) => {
                let mut parts: Vec<String> = Vec::with_capacity(members.len());
                for member in members {
                    let part = self.render(member, depth);
                    if !parts.contains(&part) {
                        parts.push(part);
                    }
                }
                match parts.len() {
                    0 => "never".into(),
                    _ => parts.join(" | "),
                }
            }
            // Outside an object field `optional` changes nothing (the validator checks the
            // inner value), so neither does the type.
            Validator::Optional(inner) => self.render(inner, depth),
            Validator::Object(shape) => self.object(shape, depth),
        }
    }

    fn object(&mut self, shape: &BTreeMap<String, Validator>, depth: usize) -> String {
        if let Some(table) = self.shapes.document_in(shape) {
            self.uses.doc = true;
            let document = &self.shapes.tables[table];
            let extra: BTreeMap<String, Validator> = shape
                .iter()
                .filter(|(field, _)| !document.contains_key(*field))
                .map(|(field, validator)| (field.clone(), validator.clone()))
                .collect();
            let doc = format!("Doc<{}>", quote(table));
            if extra.is_empty() {
                return doc;
            }
            return format!("{doc} & {}", self.fields(&extra, depth));
        }
        self.fields(shape, depth)
    }

    /// `{ a: T; b?: U }` over several lines; system fields first, as in a document.
    pub fn fields(&mut self, shape: &BTreeMap<String, Validator>, depth: usize) -> String {
        if shape.is_empty() {
            return "Record<string, never>".into();
        }
        let inner = INDENT.repeat(depth + 1);
        let mut out = String::from("{\n");
        let system = shape.iter().filter(|(name, _)| name.starts_with('_'));
        let user = shape.iter().filter(|(name, _)| !name.starts_with('_'));
        for (name, validator) in system.chain(user) {
            let (validator, optional) = match validator {
                Validator::Optional(inner) => (&**inner, "?"),
                other => (other, ""),
            };
            let ty = self.render(validator, depth + 1);
            out.push_str(&format!("{inner}{}{optional}: {ty};\n", property(name)));
        }
        out.push_str(&INDENT.repeat(depth));
        out.push('}');
        out
    }
}

/// A literal type: a string in JSON quotes, a number as JavaScript prints it, `1n`, `true`.
fn literal(value: &Value) -> String {
    match value {
        Value::String(text) => quote(text),
        Value::Float64(x) if x.is_finite() => {
            // JavaScript prints whole numbers without a fraction (`1`, not `1.0`).
            if x.fract() == 0.0 && x.abs() < 1e21 {
                format!("{}", *x as i64)
            } else {
                format!("{x}")
            }
        }
        // NaN and the infinities have no literal type.
        Value::Float64(_) => "number".into(),
        Value::Int64(x) => format!("{x}n"),
        Value::Boolean(b) => b.to_string(),
        Value::Null => "null".into(),
        // Convex literals are strings, numbers, bigints and booleans only.
        Value::Bytes(_) | Value::Array(_) | Value::Object(_) => "never".into(),
    }
}

/// A JSON (and so TypeScript) string literal.
pub fn quote(text: &str) -> String {
    serde_json::to_string(text).expect("strings always serialize")
}

/// An object key: bare when it is an identifier, quoted otherwise.
pub fn property(name: &str) -> String {
    if is_identifier(name) {
        name.to_string()
    } else {
        quote(name)
    }
}

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '$')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Schema {
        Schema::from_toml(
            r#"
            [tables.events]
            fields.name = "string"
            fields.is_cancelled = "optional(boolean)"
            [tables.tickets]
            fields.eventId = 'id("events")'
            fields.status = 'union(literal("valid"), literal("used"))'
            "#,
        )
        .unwrap()
    }

    /// One helper per feature: the validator's text form in, the TypeScript out.
    fn check(validator: &str, expected: &str) {
        let schema = schema();
        let shapes = DocShapes::from_schema(&schema);
        let validator = Validator::parse(validator).unwrap();
        assert_eq!(Renderer::new(&shapes).render(&validator, 0), expected);
    }

    #[test]
    fn scalars() {
        check("string", "string");
        check("number", "number");
        check("int64", "bigint");
        check("boolean", "boolean");
        check("null", "null");
        check("bytes", "ArrayBuffer");
        check("any", "any");
        check(r#"id("events")"#, r#"Id<"events">"#);
    }

    #[test]
    fn literals() {
        check(r#"literal("a\"b")"#, r#""a\"b""#);
        check("literal(3)", "3");
        check("literal(2.5)", "2.5");
        check("literal(-7n)", "-7n");
        check("literal(true)", "true");
    }

    #[test]
    fn containers() {
        check("array(string)", "Array<string>");
        check("record(string, number)", "Record<string, number>");
        check("nullable(string)", "string | null");
        check("union(string, string, null)", "string | null");
        check("optional(string)", "string");
    }

    #[test]
    fn objects() {
        check("object({})", "Record<string, never>");
        check(
            r#"object({ b: optional(number), a: string, "x-y": null })"#,
            "{\n  a: string;\n  b?: number;\n  \"x-y\": null;\n}",
        );
        check(
            "array(object({ a: object({ b: string }) }))",
            "Array<{\n  a: {\n    b: string;\n  };\n}>",
        );
    }

    #[test]
    fn documents_are_named() {
        check(
            r#"object({ _id: id("events"), _creationTime: number, name: string, is_cancelled: optional(boolean) })"#,
            r#"Doc<"events">"#,
        );
        check(
            r#"nullable(object({ _id: id("tickets"), _creationTime: number, eventId: id("events"), status: union(literal("valid"), literal("used")), event: nullable(object({ _id: id("events"), _creationTime: number, name: string, is_cancelled: optional(boolean) })) }))"#,
            "Doc<\"tickets\"> & {\n  event: Doc<\"events\"> | null;\n} | null",
        );
        // A missing field, or a different validator, is not the document.
        check(
            r#"object({ _id: id("events"), _creationTime: number, name: string })"#,
            "{\n  _creationTime: number;\n  _id: Id<\"events\">;\n  name: string;\n}",
        );
    }

    #[test]
    fn uses_are_recorded() {
        let schema = schema();
        let shapes = DocShapes::from_schema(&schema);
        let mut renderer = Renderer::new(&shapes);
        renderer.render(&Validator::String, 0);
        assert_eq!(renderer.uses, Uses::default());
        renderer.render(&Validator::Id("events".into()), 0);
        assert_eq!(
            renderer.uses,
            Uses {
                doc: false,
                id: true
            }
        );
    }
}
