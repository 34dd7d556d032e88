//! Convex validators, their error texts, and the text form used in `schema.toml`
//! (e.g. `string`, `optional(string)`, `id("events")`, `union(literal("a"), literal("b"))`,
//! `object({ name: string, tags: array(string) })`, `record(string, number)`).

use std::collections::BTreeMap;

use std::fmt;

use crate::{DocumentId, Object, TableNumber, Value};

#[derive(Clone, Debug, PartialEq)]
pub enum Validator {
    Id(String),
    Null,
    Float64,
    Int64,
    Boolean,
    String,
    Bytes,
    Literal(Value),
    Array(Box<Validator>),
    Object(BTreeMap<String, Validator>),
    Record(Box<Validator>, Box<Validator>),
    Union(Vec<Validator>),
    /// Only meaningful as an object field: the field may be absent.
    Optional(Box<Validator>),
    Any,
}

/// Resolves `v.id("table")` to the table's number, to check an ID's table.
pub trait IdTables {
    fn table_number(&self, table: &str) -> Option<TableNumber>;
    /// The name of table `number`, if known; used only to word errors like Convex does.
    fn table_name(&self, _number: TableNumber) -> Option<String> {
        None
    }
}

impl IdTables for BTreeMap<String, TableNumber> {
    fn table_number(&self, table: &str) -> Option<TableNumber> {
        self.get(table).copied()
    }
    fn table_name(&self, number: TableNumber) -> Option<String> {
        self.iter()
            .find(|(_, n)| **n == number)
            .map(|(name, _)| name.clone())
    }
}

impl IdTables for std::collections::HashMap<String, TableNumber> {
    fn table_number(&self, table: &str) -> Option<TableNumber> {
        self.get(table).copied()
    }
    fn table_name(&self, number: TableNumber) -> Option<String> {
        self.iter()
            .find(|(_, n)| **n == number)
            .map(|(name, _)| name.clone())
    }
}

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum ValidationError {
    /// Message in Convex's wording, including the path (e.g. `.tags[2]`), the value and the validator.
    #[error("{0}")]
    Mismatch(String),
    #[error("Invalid validator `{text}`: {reason}")]
    Syntax { text: String, reason: String },
}

impl ValidationError {
    /// Stable machine code for this error.
    pub fn code(&self) -> &'static str {
        match self {
            ValidationError::Mismatch(_) => "ValidationError",
            ValidationError::Syntax { .. } => "InvalidValidator",
        }
    }
}

/// `Path: .a.b[2]` when inside a value, nothing at the top (Convex's layout).
fn path_line(path: &str) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!("Path: {path}")
    }
}

/// Same, for messages where the path follows on its own line only when present.
fn path_suffix(path: &str) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!("\nPath: {path}")
    }
}

fn no_match(value: &Value, validator: &Validator, path: &str) -> ValidationError {
    ValidationError::Mismatch(format!(
        "Value does not match validator.\n{}\nValue: {value}\nValidator: {validator}",
        path_line(path)
    ))
}

fn object_validator_text(shape: &BTreeMap<String, Validator>) -> String {
    // Names that are not identifiers are quoted so the text parses back.
    let is_ident = |k: &str| {
        k.chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    let fields: Vec<String> = shape
        .iter()
        .map(|(k, v)| {
            if is_ident(k) {
                format!("{k}: {v}")
            } else {
                format!("{}: {v}", quote(k))
            }
        })
        .collect();
    format!("v.object({{{}}})", fields.join(", "))
}

impl Validator {
    /// `nullable(T)` is `union(T, null)`.
    pub fn nullable(inner: Validator) -> Validator {
        Validator::Union(vec![inner, Validator::Null])
    }
    /// Check `value`; errors name the path and read like Convex's.
    pub fn check(&self, value: &Value, tables: &dyn IdTables) -> Result<(), ValidationError> {
        self.check_at(value, tables, "")
    }
    /// Check a top-level object of fields against an object validator (document bodies, function args).
    pub fn check_object(
        fields: &BTreeMap<String, Value>,
        shape: &BTreeMap<String, Validator>,
        tables: &dyn IdTables,
    ) -> Result<(), ValidationError> {
        check_fields(fields, shape, tables, "")
    }

    fn check_at(
        &self,
        value: &Value,
        tables: &dyn IdTables,
        path: &str,
    ) -> Result<(), ValidationError> {
        match (self, value) {
            (Validator::Any, _)
            | (Validator::Null, Value::Null)
            | (Validator::Float64, Value::Float64(_))
            | (Validator::Int64, Value::Int64(_))
            | (Validator::Boolean, Value::Boolean(_))
            | (Validator::String, Value::String(_))
            | (Validator::Bytes, Value::Bytes(_)) => Ok(()),
            (Validator::Id(table), Value::String(text)) => {
                check_id(table, text, value, self, tables, path)
            }
            (Validator::Literal(expected), _) => {
                // Equality in the total order: `1n` does not match `1.0`.
                if value == expected {
                    Ok(())
                } else {
                    Err(ValidationError::Mismatch(format!(
                        "`{value}` does not match literal validator `{self}`.{}",
                        path_suffix(path)
                    )))
                }
            }
            (Validator::Array(element), Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    element.check_at(item, tables, &format!("{path}[{i}]"))?;
                }
                Ok(())
            }
            (Validator::Object(shape), Value::Object(fields)) => {
                check_fields(fields, shape, tables, path)
            }
            (Validator::Record(keys, values), Value::Object(fields)) => {
                let keys_path = format!("{path}.keys()");
                let values_path = format!("{path}.values()");
                for (k, v) in fields {
                    keys.check_at(&Value::String(k.clone()), tables, &keys_path)?;
                    values.check_at(v, tables, &values_path)?;
                }
                Ok(())
            }
            (Validator::Union(members), _) => {
                if let [only] = members.as_slice() {
                    return only.check_at(value, tables, path);
                }
                if members
                    .iter()
                    .any(|m| m.check_at(value, tables, path).is_ok())
                {
                    Ok(())
                } else {
                    Err(no_match(value, self, path))
                }
            }
            // Outside an object field, `optional` has nothing to make optional.
            (Validator::Optional(inner), _) => inner.check_at(value, tables, path),
            _ => Err(no_match(value, self, path)),
        }
    }

    /// Parse the text form.
    pub fn parse(text: &str) -> Result<Validator, ValidationError> {
        let mut parser = Parser { text, pos: 0 };
        let validator = parser
            .validator()
            .map_err(|reason| ValidationError::Syntax {
                text: text.to_string(),
                reason,
            })?;
        parser.skip_ws();
        if parser.pos < text.len() {
            return Err(ValidationError::Syntax {
                text: text.to_string(),
                reason: parser.located("unexpected text after the validator"),
            });
        }
        Ok(validator)
    }
    /// Render as Convex prints validators in errors, e.g. `v.optional(v.string())`.
    pub fn describe(&self) -> String {
        self.to_string()
    }
}

fn check_id(
    table: &str,
    text: &str,
    value: &Value,
    validator: &Validator,
    tables: &dyn IdTables,
    path: &str,
) -> Result<(), ValidationError> {
    let (Ok(id), Some(expected)) = (DocumentId::decode(text), tables.table_number(table)) else {
        return Err(no_match(value, validator, path));
    };
    if id.table == expected {
        return Ok(());
    }
    let found = match tables.table_name(id.table) {
        Some(name) => format!("from table `{name}`"),
        None => format!("from another table (number {})", id.table),
    };
    Err(ValidationError::Mismatch(format!(
        "Found ID \"{text}\" {found}, which does not match the table name in validator `{validator}`.{}",
        path_suffix(path)
    )))
}

fn check_fields(
    fields: &Object,
    shape: &BTreeMap<String, Validator>,
    tables: &dyn IdTables,
    path: &str,
) -> Result<(), ValidationError> {
    for (name, field_validator) in shape {
        match (fields.get(name), field_validator) {
            (Some(value), Validator::Optional(inner)) => inner.check_at(value, tables, &format!("{path}.{name}"))?,
            (Some(value), _) => field_validator.check_at(value, tables, &format!("{path}.{name}"))?,
            (None, Validator::Optional(_)) => {}
            (None, _) => {
                return Err(ValidationError::Mismatch(format!(
                    "Object is missing the required field `{name}`. Consider wrapping the field validator in \
                     `v.optional(...)` if this is expected.\n{}\nObject: {}\nValidator: {}",
                    path_line(path),
                    Value::Object(fields.clone()),
                    object_validator_text(shape)
                )))
            }
        }
    }
    if let Some(extra) = fields.keys().find(|k| !shape.contains_key(*k)) {
        return Err(ValidationError::Mismatch(format!(
            "Object contains extra field `{extra}` that is not in the validator.\n{}\nObject: {}\nValidator: {}",
            path_line(path),
            Value::Object(fields.clone()),
            object_validator_text(shape)
        )));
    }
    Ok(())
}

/// Convex's `v.…()` notation.
/// Convex's JSON form of a validator (`ValidatorJSON` of the `convex` npm package): what
/// `npx convex function-spec` prints and the dashboard shows. An optional object field is
/// `{fieldType, optional: true}`; `Optional` elsewhere (meaningless) is its inner validator.
pub fn validator_json(validator: &Validator) -> serde_json::Value {
    match validator {
        Validator::Id(table) => serde_json::json!({"type": "id", "tableName": table}),
        Validator::Null => serde_json::json!({"type": "null"}),
        Validator::Float64 => serde_json::json!({"type": "number"}),
        Validator::Int64 => serde_json::json!({"type": "bigint"}),
        Validator::Boolean => serde_json::json!({"type": "boolean"}),
        Validator::String => serde_json::json!({"type": "string"}),
        Validator::Bytes => serde_json::json!({"type": "bytes"}),
        Validator::Any => serde_json::json!({"type": "any"}),
        Validator::Literal(v) => {
            serde_json::json!({"type": "literal", "value": v.to_convex_json()})
        }
        Validator::Array(inner) => {
            serde_json::json!({"type": "array", "value": validator_json(inner)})
        }
        Validator::Record(k, v) => {
            serde_json::json!({"type": "record", "keys": validator_json(k), "values": {"fieldType": validator_json(v), "optional": false}})
        }
        Validator::Union(options) => {
            serde_json::json!({"type": "union", "value": options.iter().map(validator_json).collect::<Vec<_>>()})
        }
        Validator::Optional(inner) => validator_json(inner),
        Validator::Object(fields) => {
            let value: serde_json::Map<String, serde_json::Value> = fields
                .iter()
                .map(|(name, v)| {
                    let (inner, optional) = match v {
                        Validator::Optional(inner) => (&**inner, true),
                        other => (other, false),
                    };
                    (
                        name.clone(),
                        serde_json::json!({"fieldType": validator_json(inner), "optional": optional}),
                    )
                })
                .collect();
            serde_json::json!({"type": "object", "value": value})
        }
    }
}

impl fmt::Display for Validator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Validator::Id(table) => write!(f, "v.id({})", quote(table)),
            Validator::Null => f.write_str("v.null()"),
            Validator::Float64 => f.write_str("v.float64()"),
            Validator::Int64 => f.write_str("v.int64()"),
            Validator::Boolean => f.write_str("v.boolean()"),
            Validator::String => f.write_str("v.string()"),
            Validator::Bytes => f.write_str("v.bytes()"),
            Validator::Any => f.write_str("v.any()"),
            Validator::Literal(value) => match value {
                Value::String(s) => write!(f, "v.literal({})", quote(s)),
                Value::Int64(x) => write!(f, "v.literal({x}n)"),
                other => write!(f, "v.literal({other})"),
            },
            Validator::Array(element) => write!(f, "v.array({element})"),
            Validator::Object(shape) => f.write_str(&object_validator_text(shape)),
            Validator::Record(k, v) => write!(f, "v.record({k}, {v})"),
            Validator::Union(members) => {
                let parts: Vec<String> = members.iter().map(ToString::to_string).collect();
                write!(f, "v.union({})", parts.join(", "))
            }
            Validator::Optional(inner) => write!(f, "v.optional({inner})"),
        }
    }
}

fn quote(s: &str) -> String {
    serde_json::to_string(s).expect("strings always serialize")
}

/// Recursive-descent parser for the text form. Errors are plain strings with a column.
struct Parser<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn rest(&self) -> &'a str {
        &self.text[self.pos..]
    }

    fn located(&self, what: &str) -> String {
        let column = self.text[..self.pos].chars().count() + 1;
        match self.rest().chars().next() {
            Some(c) => format!("{what} at column {column} (found `{c}`)"),
            None => format!("{what} at column {column} (found the end of the text)"),
        }
    }

    fn skip_ws(&mut self) {
        let trimmed = self.rest().trim_start();
        self.pos = self.text.len() - trimmed.len();
    }

    fn eat(&mut self, c: char) -> bool {
        self.skip_ws();
        if self.rest().starts_with(c) {
            self.pos += c.len_utf8();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: char) -> Result<(), String> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(self.located(&format!("expected `{c}`")))
        }
    }

    fn ident(&mut self) -> Option<&'a str> {
        self.skip_ws();
        let rest = self.rest();
        let len = rest
            .char_indices()
            .find(|&(i, c)| !(c.is_ascii_alphabetic() || c == '_' || (i > 0 && c.is_ascii_digit())))
            .map_or(rest.len(), |(i, _)| i);
        if len == 0 {
            return None;
        }
        self.pos += len;
        Some(&rest[..len])
    }

    fn validator(&mut self) -> Result<Validator, String> {
        self.skip_ws();
        let start = self.pos;
        let mut name = self
            .ident()
            .ok_or_else(|| self.located("expected a validator"))?;
        // Accept Convex's `v.string()` spelling as well as the bare `string`.
        if name == "v" && self.eat('.') {
            name = self
                .ident()
                .ok_or_else(|| self.located("expected a validator name after `v.`"))?;
        }
        let simple = match name {
            "string" => Some(Validator::String),
            "number" | "float64" => Some(Validator::Float64),
            "int64" | "bigint" => Some(Validator::Int64),
            "boolean" => Some(Validator::Boolean),
            "null" => Some(Validator::Null),
            "bytes" => Some(Validator::Bytes),
            "any" => Some(Validator::Any),
            _ => None,
        };
        if let Some(v) = simple {
            if self.eat('(') {
                self.expect(')')?;
            }
            return Ok(v);
        }
        let known = [
            "id", "literal", "array", "object", "record", "union", "optional", "nullable",
        ];
        if !known.contains(&name) {
            self.pos = start;
            return Err(self.located(&format!("unknown validator `{name}`")));
        }
        self.expect('(')?;
        let v = match name {
            "id" => Validator::Id(self.string_literal()?),
            "literal" => Validator::Literal(self.literal()?),
            "array" => Validator::Array(Box::new(self.validator()?)),
            "object" => Validator::Object(self.object_fields()?),
            "record" => {
                let k = self.validator()?;
                self.expect(',')?;
                Validator::Record(Box::new(k), Box::new(self.validator()?))
            }
            "union" => {
                let mut members = vec![self.validator()?];
                while self.eat(',') {
                    self.skip_ws();
                    if self.rest().starts_with(')') {
                        break;
                    }
                    members.push(self.validator()?);
                }
                Validator::Union(members)
            }
            "optional" => Validator::Optional(Box::new(self.validator()?)),
            "nullable" => Validator::nullable(self.validator()?),
            _ => unreachable!("checked against `known` above"),
        };
        self.expect(')')?;
        Ok(v)
    }

    fn object_fields(&mut self) -> Result<BTreeMap<String, Validator>, String> {
        self.expect('{')?;
        let mut fields = BTreeMap::new();
        loop {
            if self.eat('}') {
                return Ok(fields);
            }
            self.skip_ws();
            let name = if self.rest().starts_with(['"', '\'']) {
                self.string_literal()?
            } else {
                self.ident()
                    .ok_or_else(|| self.located("expected a field name or `}`"))?
                    .to_string()
            };
            self.expect(':')?;
            let v = self.validator()?;
            if fields.insert(name.clone(), v).is_some() {
                return Err(self.located(&format!("field `{name}` appears twice")));
            }
            if !self.eat(',') {
                self.expect('}')?;
                return Ok(fields);
            }
        }
    }

    /// A double-quoted (JSON escapes) or single-quoted string.
    fn string_literal(&mut self) -> Result<String, String> {
        self.skip_ws();
        let rest = self.rest();
        let quote = match rest.chars().next() {
            Some(q @ ('"' | '\'')) => q,
            _ => return Err(self.located("expected a quoted string")),
        };
        let mut escaped = false;
        let end = rest[1..].char_indices().find(|&(_, c)| {
            let closes = c == quote && !escaped;
            escaped = c == '\\' && !escaped;
            closes
        });
        let Some((end, _)) = end else {
            return Err(self.located("unterminated string"));
        };
        let body = &rest[1..1 + end];
        let value = if quote == '"' {
            serde_json::from_str::<String>(&rest[..end + 2])
                .map_err(|e| self.located(&format!("invalid string ({e})")))?
        } else {
            body.replace("\\'", "'").replace("\\\\", "\\")
        };
        self.pos += end + 2;
        Ok(value)
    }

    /// `"text"`, `true`, `false`, a number (float64), or a number with an `n` suffix (int64).
    fn literal(&mut self) -> Result<Value, String> {
        self.skip_ws();
        let rest = self.rest();
        if rest.starts_with(['"', '\'']) {
            return Ok(Value::String(self.string_literal()?));
        }
        if let Some(word) = ["true", "false"].into_iter().find(|w| rest.starts_with(w)) {
            self.pos += word.len();
            return Ok(Value::Boolean(word == "true"));
        }
        let len = rest
            .find(|c: char| !(c.is_ascii_digit() || matches!(c, '-' | '+' | '.' | 'e' | 'E')))
            .unwrap_or(rest.len());
        let number = &rest[..len];
        if number.is_empty() {
            return Err(self.located("expected a string, number or boolean literal"));
        }
        if rest[len..].starts_with('n') {
            let x = number
                .parse::<i64>()
                .map_err(|_| self.located("invalid int64 literal"))?;
            self.pos += len + 1;
            return Ok(Value::Int64(x));
        }
        let x = number
            .parse::<f64>()
            .map_err(|_| self.located("invalid number literal"))?;
        // `1e999` parses to infinity, which no JSON value can equal and which the validator
        // could not even print back (found by fuzzing: fuzz/README.md).
        if !x.is_finite() {
            return Err(self.located("number literal out of range (it must be a finite float64)"));
        }
        self.pos += len;
        Ok(Value::Float64(x))
    }
}

/// Builders for function-argument validators in app code: `v::object([("userId", v::string())])`.
pub mod v {
    use super::Validator;
    pub fn string() -> Validator {
        Validator::String
    }
    pub fn number() -> Validator {
        Validator::Float64
    }
    pub fn float64() -> Validator {
        Validator::Float64
    }
    pub fn int64() -> Validator {
        Validator::Int64
    }
    pub fn boolean() -> Validator {
        Validator::Boolean
    }
    pub fn null() -> Validator {
        Validator::Null
    }
    pub fn bytes() -> Validator {
        Validator::Bytes
    }
    pub fn any() -> Validator {
        Validator::Any
    }
    pub fn id(table: &str) -> Validator {
        Validator::Id(table.to_string())
    }
    pub fn literal(v: impl Into<crate::Value>) -> Validator {
        Validator::Literal(v.into())
    }
    pub fn array(t: Validator) -> Validator {
        Validator::Array(Box::new(t))
    }
    pub fn optional(t: Validator) -> Validator {
        Validator::Optional(Box::new(t))
    }
    pub fn nullable(t: Validator) -> Validator {
        Validator::nullable(t)
    }
    pub fn union(ts: impl IntoIterator<Item = Validator>) -> Validator {
        Validator::Union(ts.into_iter().collect())
    }
    pub fn record(k: Validator, val: Validator) -> Validator {
        Validator::Record(Box::new(k), Box::new(val))
    }
    pub fn object<'a>(fields: impl IntoIterator<Item = (&'a str, Validator)>) -> Validator {
        Validator::Object(
            fields
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::v;
    use super::*;

    fn tables() -> BTreeMap<String, TableNumber> {
        [
            ("users".to_string(), TableNumber(10001)),
            ("events".to_string(), TableNumber(10002)),
        ]
        .into_iter()
        .collect()
    }

    fn obj(pairs: Vec<(&str, Value)>) -> Value {
        Value::Object(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
    }

    /// One helper for all message tests: `expected` None means the value must pass.
    fn check(validator: &Validator, value: Value, expected: Option<&str>) {
        let got = validator
            .check(&value, &tables())
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            got.as_deref(),
            expected,
            "validator {validator}, value {value}"
        );
    }

    fn user() -> Validator {
        v::object([
            ("name", v::string()),
            ("age", v::optional(v::number())),
            ("tags", v::array(v::string())),
        ])
    }

    #[test]
    fn scalars_and_int_float_distinction() {
        check(&v::number(), Value::Float64(1.0), None);
        check(&v::int64(), Value::Int64(1), None);
        check(
            &v::number(),
            Value::Int64(1),
            Some("Value does not match validator.\n\nValue: 1\nValidator: v.float64()"),
        );
        check(
            &v::int64(),
            Value::Float64(1.0),
            Some("Value does not match validator.\n\nValue: 1.0\nValidator: v.int64()"),
        );
        check(&v::any(), Value::Bytes(vec![1]), None);
        check(&v::nullable(v::string()), Value::Null, None);
        check(
            &v::nullable(v::string()),
            Value::Boolean(true),
            Some("Value does not match validator.\n\nValue: true\nValidator: v.union(v.string(), v.null())"),
        );
    }

    #[test]
    fn literals() {
        check(&v::literal("a"), Value::from("a"), None);
        check(&v::literal(3i64), Value::Int64(3), None);
        check(
            &v::literal(3i64),
            Value::Float64(3.0),
            Some("`3.0` does not match literal validator `v.literal(3n)`."),
        );
        check(
            &v::literal("a"),
            Value::from("b"),
            Some("`\"b\"` does not match literal validator `v.literal(\"a\")`."),
        );
    }

    #[test]
    fn objects_missing_extra_and_paths() {
        check(
            &user(),
            obj(vec![("name", "ada".into()), ("tags", Value::Array(vec![]))]),
            None,
        );
        check(
            &user(),
            obj(vec![("tags", Value::Array(vec![]))]),
            Some(
                "Object is missing the required field `name`. Consider wrapping the field validator in \
                 `v.optional(...)` if this is expected.\n\nObject: {tags: []}\nValidator: v.object({age: \
                 v.optional(v.float64()), name: v.string(), tags: v.array(v.string())})",
            ),
        );
        let extra = user()
            .check(
                &obj(vec![
                    ("name", "a".into()),
                    ("tags", Value::Array(vec![])),
                    ("foo", Value::Int64(1)),
                ]),
                &tables(),
            )
            .unwrap_err()
            .to_string();
        assert!(
            extra.starts_with(
                "Object contains extra field `foo` that is not in the validator.\n\nObject: "
            ),
            "{extra}"
        );
        check(
            &user(),
            obj(vec![("name", "a".into()), ("tags", Value::Array(vec!["x".into(), Value::Float64(3.0)]))]),
            Some("Value does not match validator.\nPath: .tags[1]\nValue: 3.0\nValidator: v.string()"),
        );
        let deep = v::object([(
            "a",
            v::object([("b", v::array(v::object([("c", v::int64())])))]),
        )]);
        let value = obj(vec![(
            "a",
            obj(vec![(
                "b",
                Value::Array(vec![
                    obj(vec![("c", Value::Int64(1))]),
                    obj(vec![("c", "x".into())]),
                ]),
            )]),
        )]);
        let err = deep.check(&value, &tables()).unwrap_err().to_string();
        assert!(err.contains("\nPath: .a.b[1].c\n"), "{err}");
        // A nested missing field carries the path of the object.
        let err = deep
            .check(&obj(vec![("a", obj(vec![]))]), &tables())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("required field `b`") && err.contains("\nPath: .a\n"),
            "{err}"
        );
    }

    #[test]
    fn check_object_top_level() {
        let shape: BTreeMap<String, Validator> = [
            ("userId".to_string(), v::id("users")),
            ("note".to_string(), v::optional(v::string())),
        ]
        .into_iter()
        .collect();
        let id = DocumentId::new_random(TableNumber(10001), 0).encode();
        let fields: Object = [("userId".to_string(), Value::String(id))]
            .into_iter()
            .collect();
        assert_eq!(Validator::check_object(&fields, &shape, &tables()), Ok(()));
        let err = Validator::check_object(&Object::new(), &shape, &tables())
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("Object is missing the required field `userId`."),
            "{err}"
        );
    }

    #[test]
    fn records() {
        let r = v::record(v::string(), v::number());
        check(&r, obj(vec![("a", Value::Float64(1.0))]), None);
        let err = r
            .check(&obj(vec![("a", "x".into())]), &tables())
            .unwrap_err()
            .to_string();
        assert!(err.contains("Path: .values()"), "{err}");
        let ids = v::record(v::id("users"), v::boolean());
        let err = ids
            .check(&obj(vec![("notAnId", Value::Boolean(true))]), &tables())
            .unwrap_err()
            .to_string();
        assert!(err.contains("Path: .keys()"), "{err}");
    }

    #[test]
    fn ids_check_the_table() {
        let user_id = DocumentId::new_random(TableNumber(10001), 0).encode();
        let event_id = DocumentId::new_random(TableNumber(10002), 0).encode();
        check(&v::id("users"), Value::String(user_id.clone()), None);
        check(
            &v::id("users"),
            Value::String(event_id.clone()),
            Some(&format!(
                "Found ID \"{event_id}\" from table `events`, which does not match the table name in validator `v.id(\"users\")`."
            )),
        );
        check(
            &v::id("users"),
            Value::from("notanid"),
            Some(
                "Value does not match validator.\n\nValue: \"notanid\"\nValidator: v.id(\"users\")",
            ),
        );
        // A table the resolver does not know: no ID can belong to it.
        assert!(v::id("ghosts")
            .check(&Value::String(user_id), &tables())
            .is_err());
    }

    #[test]
    fn parse_text_forms() {
        let cases: Vec<(&str, Validator)> = vec![
            ("string", v::string()),
            ("number", v::number()),
            ("float64", v::float64()),
            ("int64", v::int64()),
            ("boolean", v::boolean()),
            ("null", v::null()),
            ("bytes", v::bytes()),
            ("any", v::any()),
            ("id(\"events\")", v::id("events")),
            ("literal(\"valid\")", v::literal("valid")),
            ("literal(3)", v::literal(3.0)),
            ("literal(-2.5)", v::literal(-2.5)),
            ("literal(3n)", v::literal(3i64)),
            ("literal(true)", v::literal(true)),
            ("array(string)", v::array(v::string())),
            (
                "object({ a: string, b: optional(int64), })",
                v::object([("a", v::string()), ("b", v::optional(v::int64()))]),
            ),
            ("object({})", v::object([])),
            ("record(string, number)", v::record(v::string(), v::number())),
            ("union(literal(\"a\"), literal('b'), null)", v::union([v::literal("a"), v::literal("b"), v::null()])),
            ("nullable(id(\"users\"))", v::nullable(v::id("users"))),
            (
                "v.object({ name: v.string(), tags: v.array(v.string()), \"x-y\": v.optional(v.any()) })",
                v::object([("name", v::string()), ("tags", v::array(v::string())), ("x-y", v::optional(v::any()))]),
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(Validator::parse(text), Ok(expected.clone()), "{text}");
            // describe() output parses back to the same validator.
            assert_eq!(
                Validator::parse(&expected.describe()),
                Ok(expected.clone()),
                "{}",
                expected.describe()
            );
        }
        assert_eq!(
            v::optional(v::string()).describe(),
            "v.optional(v.string())"
        );
    }

    #[test]
    fn parse_errors_say_where() {
        let err = |t: &str| Validator::parse(t).unwrap_err().to_string();
        assert_eq!(
            err("strin"),
            "Invalid validator `strin`: unknown validator `strin` at column 1 (found `s`)"
        );
        assert_eq!(err("array(string"), "Invalid validator `array(string`: expected `)` at column 13 (found the end of the text)");
        assert!(
            err("object({ a string })").contains("expected `:` at column 12"),
            "{}",
            err("object({ a string })")
        );
        assert!(err("string)").contains("unexpected text after the validator at column 7"));
        assert!(err("id(events)").contains("expected a quoted string at column 4"));
        assert!(err("object({a: string, a: int64})").contains("appears twice"));
        assert!(err("").contains("expected a validator at column 1"));
    }

    /// Found by the `validator` fuzz target: `literal(.52e2222)` parsed to an infinite literal
    /// that printed as `v.literal(inf)`, which did not parse back.
    #[test]
    fn fuzz_regression_number_literals_must_be_finite() {
        for text in ["literal(.52e2222)", "literal(1e999)", "literal(-1e999)"] {
            let err = Validator::parse(text).unwrap_err().to_string();
            assert!(err.contains("number literal out of range"), "{text}: {err}");
        }
        let biggest = Validator::parse("literal(1.7976931348623157e308)").unwrap();
        assert_eq!(Validator::parse(&biggest.describe()).unwrap(), biggest);
    }
}
