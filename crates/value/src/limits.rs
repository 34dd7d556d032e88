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
/// + 1 + its value. This tracks the stored size closely enough for the caps, like Convex's
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
