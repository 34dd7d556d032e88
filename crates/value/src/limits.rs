//! Limits from convex-semantics.md. Each is a documented constant.
//!
//! Depth is counted in containers: a scalar has depth 0, an array or object has depth
//! 1 + the deepest of its children. A document (a top-level object) of scalar fields therefore
//! has depth 1, and `{a: {a: ... {a: 1}}}` with 16 object levels has depth 16, the maximum.

use crate::Value;

/// Nesting allowed in generic values (function arguments and results), in containers.
pub const MAX_GENERIC_DEPTH: usize = 64;
/// Nesting allowed in stored documents, counting the document object itself.
pub const MAX_DOCUMENT_DEPTH: usize = 16;
/// Largest stored document, as estimated by [`size_of`].
pub const MAX_DOCUMENT_BYTES: usize = 1 << 20;
pub const MAX_ARRAY_ELEMENTS: usize = 8192;
pub const MAX_OBJECT_FIELDS: usize = 1024;
pub const MAX_FIELD_NAME_CHARS: usize = 1024;
pub const MAX_FUNCTION_ARGS_BYTES: usize = 16 << 20;
pub const MAX_IDENTIFIER_CHARS: usize = 64;

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum LimitError {
    #[error("Value is too large: {size} bytes exceeds the maximum of {max} bytes")]
    TooLarge { size: usize, max: usize },
    #[error("Value is too nested: depth {depth} exceeds the maximum of {max}")]
    TooNested { depth: usize, max: usize },
    #[error("Array has {len} elements, more than the maximum of {max}")]
    ArrayTooLong { len: usize, max: usize },
    #[error("Object has {len} fields, more than the maximum of {max}")]
    TooManyFields { len: usize, max: usize },
    #[error("Invalid field name \"{name}\": {reason}")]
    BadFieldName { name: String, reason: &'static str },
}

impl LimitError {
    /// Stable machine code for this error.
    pub fn code(&self) -> &'static str {
        match self {
            LimitError::TooLarge { .. } => "ValueTooLarge",
            LimitError::TooNested { .. } => "ValueTooNested",
            LimitError::ArrayTooLong { .. } => "ArrayTooLong",
            LimitError::TooManyFields { .. } => "TooManyFields",
            LimitError::BadFieldName { .. } => "InvalidFieldName",
        }
    }
}

/// Where a field name sits, which decides whether a leading `_` is allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldNameScope {
    /// A top-level field of a stored document: `_` is reserved for system fields.
    DocumentTopLevel,
    /// Any other object (nested document fields, function arguments, results).
    Nested,
}

/// Check one field name: no leading `$` (reserved for the JSON special forms), no leading
/// `_` at the top level of a document, printable ASCII only, at most 1024 characters.
pub fn check_field_name(name: &str, scope: FieldNameScope) -> Result<(), LimitError> {
    let bad = |reason| {
        Err(LimitError::BadFieldName {
            name: truncate_for_message(name),
            reason,
        })
    };
    if name.len() > MAX_FIELD_NAME_CHARS {
        return bad("field names may be at most 1024 characters long");
    }
    if name.starts_with('$') {
        return bad("field names may not start with '$'");
    }
    if scope == FieldNameScope::DocumentTopLevel && name.starts_with('_') {
        return bad("top-level field names may not start with '_' (reserved for system fields)");
    }
    if !name.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
        return bad("field names must contain only printable ASCII characters");
    }
    Ok(())
}

/// Keep error messages bounded even for a megabyte-long bad field name.
fn truncate_for_message(name: &str) -> String {
    const KEEP: usize = 64;
    if name.chars().count() <= KEEP {
        name.to_string()
    } else {
        let mut s: String = name.chars().take(KEEP).collect();
        s.push_str("...");
        s
    }
}

/// Convex's size estimate of a value in bytes (used for the document and transaction caps).
///
/// null and booleans 1; int64 and float64 9 (a type byte plus 8); strings and bytes 2 + their
/// length in bytes; arrays 2 + their elements; objects 2 + for each field its name's length
/// plus 1 plus its value. This tracks the stored size closely enough for the caps, like Convex's
/// own estimate, and is cheap to compute.
pub fn size_of(v: &Value) -> usize {
    match v {
        Value::Null | Value::Boolean(_) => 1,
        Value::Int64(_) | Value::Float64(_) => 9,
        Value::String(s) => 2 + s.len(),
        Value::Bytes(b) => 2 + b.len(),
        Value::Array(items) => 2 + items.iter().map(size_of).sum::<usize>(),
        Value::Object(fields) => 2 + object_fields_size(fields),
    }
}

fn object_fields_size(fields: &crate::Object) -> usize {
    fields.iter().map(|(k, v)| k.len() + 1 + size_of(v)).sum()
}

/// Nesting depth in containers: scalars 0, an array or object 1 + its deepest child
/// (see the module docs). A document of scalar fields has depth 1.
pub fn depth_of(v: &Value) -> usize {
    match v {
        Value::Array(items) => 1 + items.iter().map(depth_of).max().unwrap_or(0),
        Value::Object(fields) => 1 + fields.values().map(depth_of).max().unwrap_or(0),
        _ => 0,
    }
}

/// Check a document body (top-level user fields): size ≤ 1 MiB, depth ≤ 16, field names
/// (no `$` prefix anywhere, no `_` prefix at top level, printable ASCII, ≤ 1024 chars).
///
/// Pass the user fields only: `_id` and `_creationTime` would be refused by the `_` rule.
pub fn check_document(fields: &crate::Object) -> Result<(), LimitError> {
    for name in fields.keys() {
        check_field_name(name, FieldNameScope::DocumentTopLevel)?;
    }
    if fields.len() > MAX_OBJECT_FIELDS {
        return Err(LimitError::TooManyFields {
            len: fields.len(),
            max: MAX_OBJECT_FIELDS,
        });
    }
    // The document object itself is level 1, so its fields' containers start at level 2.
    for value in fields.values() {
        check_nested(value, 2, MAX_DOCUMENT_DEPTH)?;
    }
    let size = 2 + object_fields_size(fields);
    if size > MAX_DOCUMENT_BYTES {
        return Err(LimitError::TooLarge {
            size,
            max: MAX_DOCUMENT_BYTES,
        });
    }
    Ok(())
}

/// Check a generic value (function arguments, results): depth ≤ 64, array and object
/// lengths, nested field names (no `$` prefix, printable ASCII, ≤ 1024 chars).
pub fn check_value(v: &Value) -> Result<(), LimitError> {
    check_nested(v, 1, MAX_GENERIC_DEPTH).map(|_| ())
}

/// Validate `v` found at container level `level` (1 = the outermost container) and
/// return its depth. Fails fast, before recursing past `max_depth`.
fn check_nested(v: &Value, level: usize, max_depth: usize) -> Result<usize, LimitError> {
    match v {
        // `level` is a lower bound of the true depth; stopping here keeps hostile inputs cheap.
        Value::Array(_) | Value::Object(_) if level > max_depth => Err(LimitError::TooNested {
            depth: level,
            max: max_depth,
        }),
        Value::Array(items) => {
            if items.len() > MAX_ARRAY_ELEMENTS {
                return Err(LimitError::ArrayTooLong {
                    len: items.len(),
                    max: MAX_ARRAY_ELEMENTS,
                });
            }
            let mut deepest = 0;
            for item in items {
                deepest = deepest.max(check_nested(item, level + 1, max_depth)?);
            }
            Ok(1 + deepest)
        }
        Value::Object(fields) => {
            if fields.len() > MAX_OBJECT_FIELDS {
                return Err(LimitError::TooManyFields {
                    len: fields.len(),
                    max: MAX_OBJECT_FIELDS,
                });
            }
            let mut deepest = 0;
            for (name, value) in fields {
                check_field_name(name, FieldNameScope::Nested)?;
                deepest = deepest.max(check_nested(value, level + 1, max_depth)?);
            }
            Ok(1 + deepest)
        }
        _ => Ok(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Object;

    fn nest_objects(levels: usize) -> Object {
        // `levels` object levels counting the document itself.
        let mut inner = Value::Int64(1);
        for _ in 1..levels {
            inner = Value::Object([("a".to_string(), inner)].into_iter().collect());
        }
        [("a".to_string(), inner)].into_iter().collect()
    }

    fn doc(pairs: Vec<(&str, Value)>) -> Object {
        pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
    }

    #[test]
    fn depth_definition() {
        assert_eq!(depth_of(&Value::Null), 0);
        assert_eq!(depth_of(&Value::Array(vec![])), 1);
        assert_eq!(depth_of(&Value::Object(nest_objects(16))), 16);
        assert_eq!(check_document(&nest_objects(16)), Ok(()));
        assert_eq!(
            check_document(&nest_objects(17)),
            Err(LimitError::TooNested { depth: 17, max: 16 })
        );
        // Arrays count as levels too.
        let mut arr = Value::Null;
        for _ in 0..16 {
            arr = Value::Array(vec![arr]);
        }
        assert!(matches!(
            check_document(&doc(vec![("x", arr)])),
            Err(LimitError::TooNested { .. })
        ));
    }

    #[test]
    fn size_cap() {
        let big = doc(vec![("blob", Value::Bytes(vec![0; 1_100_000]))]);
        assert!(matches!(
            check_document(&big),
            Err(LimitError::TooLarge {
                max: MAX_DOCUMENT_BYTES,
                ..
            })
        ));
        let fine = doc(vec![("blob", Value::Bytes(vec![0; 1_000_000]))]);
        assert_eq!(check_document(&fine), Ok(()));
        assert_eq!(size_of(&Value::from("abc")), 5);
        assert_eq!(
            size_of(&Value::Object(doc(vec![("ab", Value::Int64(1))]))),
            2 + 3 + 9
        );
    }

    #[test]
    fn field_names() {
        let bad = |pairs| check_document(&doc(pairs)).unwrap_err().to_string();
        assert_eq!(
            bad(vec![("_secret", Value::Null)]),
            "Invalid field name \"_secret\": top-level field names may not start with '_' (reserved for system fields)"
        );
        assert!(bad(vec![("$x", Value::Null)]).contains("may not start with '$'"));
        let nested_dollar = doc(vec![("ok", Value::Object(doc(vec![("$x", Value::Null)])))]);
        assert!(check_document(&nested_dollar)
            .unwrap_err()
            .to_string()
            .contains("'$'"));
        // `_` is fine below the top level.
        assert_eq!(
            check_document(&doc(vec![(
                "ok",
                Value::Object(doc(vec![("_x", Value::Null)]))
            )])),
            Ok(())
        );
        assert!(bad(vec![("tab\there", Value::Null)]).contains("printable ASCII"));
        assert!(bad(vec![("é", Value::Null)]).contains("printable ASCII"));
        let long = "x".repeat(1025);
        assert!(bad(vec![(long.as_str(), Value::Null)]).contains("1024"));
    }

    #[test]
    fn counts() {
        let many: Object = (0..1025).map(|i| (format!("f{i}"), Value::Null)).collect();
        assert_eq!(
            check_document(&many),
            Err(LimitError::TooManyFields {
                len: 1025,
                max: 1024
            })
        );
        let long = doc(vec![("xs", Value::Array(vec![Value::Null; 8193]))]);
        assert_eq!(
            check_document(&long),
            Err(LimitError::ArrayTooLong {
                len: 8193,
                max: 8192
            })
        );
        assert_eq!(check_value(&Value::Array(vec![Value::Null; 8192])), Ok(()));
    }
}
