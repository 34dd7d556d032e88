//! Argument and result checks shared by every kind of call.

use serde::Serialize;
use tickethub_store::{DocReader, ReadTxn, Store};
use tickethub_value::{IdTables, Validator, Value};

use crate::{FnError, FunctionSpec};

/// Serialize call args; they must form an object.
pub(crate) fn args_value(args: impl Serialize) -> Result<Value, FnError> {
    match tickethub_value::to_value(&args) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(other) => Err(FnError::ArgumentValidation(format!(
            "Arguments must be an object, got {}",
            other.type_name()
        ))),
        Err(e) => Err(FnError::ArgumentValidation(e.to_string())),
    }
}

pub(crate) fn check_args(
    spec: &FunctionSpec,
    args: &Value,
    tables: &dyn IdTables,
) -> Result<(), FnError> {
    match &spec.args {
        Some(validator) => validator
            .check(args, tables)
            .map_err(|e| FnError::ArgumentValidation(e.to_string())),
        None => Ok(()),
    }
}

pub(crate) fn check_returns(
    spec: &FunctionSpec,
    result: &Value,
    tables: &dyn IdTables,
) -> Result<(), FnError> {
    match &spec.returns {
        Some(validator) => validator
            .check(result, tables)
            .map_err(|e| FnError::ReturnsValidation(e.to_string())),
        None => Ok(()),
    }
}

/// Whether checking against `v` may need table numbers (`v.id(..)` somewhere inside).
fn mentions_id(v: &Validator) -> bool {
    match v {
        Validator::Id(_) => true,
        Validator::Array(inner) | Validator::Optional(inner) => mentions_id(inner),
        Validator::Object(fields) => fields.values().any(mentions_id),
        Validator::Record(k, val) => mentions_id(k) || mentions_id(val),
        Validator::Union(options) => options.iter().any(mentions_id),
        Validator::Null
        | Validator::Float64
        | Validator::Int64
        | Validator::Boolean
        | Validator::String
        | Validator::Bytes
        | Validator::Literal(_)
        | Validator::Any => false,
    }
}

/// Table numbers for validating action args and results: a fresh snapshot, opened only when a
/// validator mentions `v.id`.
pub(super) struct SnapshotTables(Option<ReadTxn>);

impl IdTables for SnapshotTables {
    fn table_number(&self, table: &str) -> Option<tickethub_value::TableNumber> {
        self.0.as_ref().and_then(|txn| txn.table_number(table))
    }
}

pub(super) fn snapshot_tables(
    store: &Store,
    validator: Option<&Validator>,
) -> Result<SnapshotTables, FnError> {
    if validator.is_some_and(mentions_id) {
        Ok(SnapshotTables(Some(store.read()?)))
    } else {
        Ok(SnapshotTables(None))
    }
}
