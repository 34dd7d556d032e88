//! The Convex value model, with no I/O.
//!
//! - [`value`]: [`Value`], its total order across types.
//! - [`json`]: the three JSON encodings (convex_encoded_json, clean json, export json).
//! - [`key`]: an order-preserving byte encoding of index keys.
//! - [`id`]: Convex document IDs (varint table number, 16-byte internal id, Fletcher-16 footer, base32).
//! - [`validator`]: Convex validators with Convex's error wording, and a parser for the text form used in `schema.toml`.
//! - [`limits`]: size, depth and field-name limits.
//! - [`serde_bridge`]: `to_value` / `from_value` between `Value` and serde types.

pub mod id;
pub mod json;
pub mod key;
pub mod limits;
pub mod serde_bridge;
pub mod validator;
pub mod value;

#[cfg(test)]
mod test_support;

pub use id::{DocumentId, IdError, TableNumber};
pub use json::JsonError;
pub use limits::LimitError;
pub use serde_bridge::{from_value, to_value, BridgeError};
pub use validator::{IdTables, ValidationError, Validator};
pub use value::{Object, Value};
