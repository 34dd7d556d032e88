//! Return validators shared by several modules.
//!
//! Every function declares what it returns (`.returns(..)`), for two reasons: the runtime checks
//! each result against it (a mismatch is a `ReturnsValidationError`, never a silently wrong
//! shape reaching a client), and `tickethub codegen` turns it into the TypeScript return type of
//! `api.module.fn`. Document shapes are derived from `schema.toml` (the table's fields plus
//! `_id` and `_creationTime`), so a schema change changes them too.

use std::sync::OnceLock;

use tickethub_runtime::{v, Schema, Validator};

/// `schema.toml`, parsed once for the validators below.
fn schema() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| Schema::from_toml(crate::SCHEMA).expect("the app's schema.toml parses"))
}

/// A whole document of `table`, as `ctx.db.get` returns it.
pub(crate) fn doc(table: &str) -> Validator {
    schema()
        .tables
        .get(table)
        .unwrap_or_else(|| panic!("table `{table}` is not in schema.toml"))
        .document_validator()
}

/// A document of `table` with joined fields added, like the original's `{...ticket, event}`.
pub(crate) fn doc_with<'a>(
    table: &str,
    extra: impl IntoIterator<Item = (&'a str, Validator)>,
) -> Validator {
    let Validator::Object(mut fields) = doc(table) else {
        panic!("table `{table}` is schemaless: its documents have no fixed shape to extend");
    };
    for (name, validator) in extra {
        fields.insert(name.to_string(), validator);
    }
    Validator::Object(fields)
}

/// The validator `schema.toml` declares for `table.field`, e.g. a status union.
pub(crate) fn field(table: &str, name: &str) -> Validator {
    schema().tables[table]
        .fields
        .get(name)
        .unwrap_or_else(|| panic!("`{table}.{name}` is not in schema.toml"))
        .clone()
}

/// `v.union(v.literal("a"), ...)`.
pub(crate) fn one_of(words: &[&str]) -> Validator {
    v::union(words.iter().map(|word| v::literal(*word)))
}

/// `{outcome: "a" | "b" | ...}`: what a webhook-applying mutation did.
pub(crate) fn outcome(words: &[&str]) -> Validator {
    v::object([("outcome", one_of(words))])
}

/// `{deleted, rescheduled}`: rows a pruning job removed, and whether a full batch made it
/// schedule itself again (`users::PruneResult`).
pub(crate) fn pruned() -> Validator {
    v::object([("deleted", v::number()), ("rescheduled", v::boolean())])
}
