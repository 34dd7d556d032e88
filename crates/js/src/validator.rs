//! Convex's JSON form of a validator (what `exportArgs()` / `exportReturns()` and the schema's
//! `documentType` give) into tickethub's [`Validator`]: the inverse of
//! `tickethub_value::validator::validator_json`.

use std::collections::BTreeMap;

use serde_json::Value as Json;
use tickethub_value::{Validator, Value};

use crate::JsError;

fn bad(what: &str, json: &Json) -> JsError {
    JsError::Analysis(format!("unsupported validator {what}: {json}"))
}

/// `{fieldType, optional}` of an object field or a record's values.
fn field(json: &Json) -> Result<Validator, JsError> {
    let inner = parse(json.get("fieldType").ok_or_else(|| bad("field", json))?)?;
    Ok(if json.get("optional") == Some(&Json::Bool(true)) {
        Validator::Optional(Box::new(inner))
    } else {
        inner
    })
}

pub(crate) fn parse(json: &Json) -> Result<Validator, JsError> {
    let kind = json
        .get("type")
        .and_then(Json::as_str)
        .ok_or_else(|| bad("without a type", json))?;
    let value = || json.get("value").ok_or_else(|| bad(kind, json));
    Ok(match kind {
        "any" => Validator::Any,
        "null" => Validator::Null,
        "number" => Validator::Float64,
        "bigint" => Validator::Int64,
        "boolean" => Validator::Boolean,
        "string" => Validator::String,
        "bytes" => Validator::Bytes,
        "id" => Validator::Id(
            json.get("tableName")
                .and_then(Json::as_str)
                .ok_or_else(|| bad("id", json))?
                .to_string(),
        ),
        "literal" => Validator::Literal(
            Value::from_convex_json(value()?).map_err(|e| bad(&format!("literal ({e})"), json))?,
        ),
        "array" => Validator::Array(Box::new(parse(value()?)?)),
        "union" => Validator::Union(
            value()?
                .as_array()
                .ok_or_else(|| bad("union", json))?
                .iter()
                .map(parse)
                .collect::<Result<_, _>>()?,
        ),
        "record" => Validator::Record(
            Box::new(parse(json.get("keys").ok_or_else(|| bad("record", json))?)?),
            Box::new(field(
                json.get("values").ok_or_else(|| bad("record", json))?,
            )?),
        ),
        "object" => {
            let fields = value()?.as_object().ok_or_else(|| bad("object", json))?;
            let mut shape = BTreeMap::new();
            for (name, f) in fields {
                shape.insert(name.clone(), field(f)?);
            }
            Validator::Object(shape)
        }
        _ => return Err(bad(kind, json)),
    })
}

/// An `exportArgs()` / `exportReturns()` text: `null` or `any` means no check.
pub(crate) fn parse_export(text: &str) -> Result<Option<Validator>, JsError> {
    let json: Json = serde_json::from_str(text)
        .map_err(|e| JsError::Analysis(format!("validator JSON {text:?}: {e}")))?;
    if json.is_null() {
        return Ok(None);
    }
    match parse(&json)? {
        Validator::Any => Ok(None),
        other => Ok(Some(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tickethub_value::validator::{v, validator_json};

    #[test]
    fn round_trips_through_convex_json() {
        let validator = v::object([
            ("body", v::string()),
            ("n", v::optional(v::number())),
            ("author", v::id("users")),
            ("tags", v::array(v::union([v::literal("a"), v::null()]))),
            ("counts", v::record(v::string(), v::int64())),
        ]);
        let json = validator_json(&validator);
        assert_eq!(parse(&json).unwrap(), validator);
        assert_eq!(parse_export("null").unwrap(), None);
        assert_eq!(parse_export(r#"{"type":"any"}"#).unwrap(), None);
        assert!(parse_export(r#"{"type":"weird"}"#).is_err());
    }
}
