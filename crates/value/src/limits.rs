//! Limits from convex-semantics.md. Each is a documented constant.

use crate::Value;

pub const MAX_GENERIC_DEPTH: usize = 64;
pub const MAX_DOCUMENT_DEPTH: usize = 16;
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

/// Convex's size estimate of a value in bytes (used for the document and transaction caps).
pub fn size_of(_v: &Value) -> usize {
    todo!()
}

/// Nesting depth (a scalar is depth 0... choose and document; a 17-deep document must fail the 16 cap).
pub fn depth_of(_v: &Value) -> usize {
    todo!()
}

/// Check a document body (top-level user fields): size ≤ 1 MiB, depth ≤ 16, field names
/// (no `$` prefix anywhere, no `_` prefix at top level, printable ASCII, ≤ 1024 chars).
pub fn check_document(_fields: &crate::Object) -> Result<(), LimitError> {
    todo!()
}
