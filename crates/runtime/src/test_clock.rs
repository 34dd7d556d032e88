//! The test clock's offset, kept in the one-row system table `_test_clock` (`offsetMs`).
//!
//! With `Clock::Test` the runtime's time is real time plus an offset that only grows
//! (`advance_time`, and the start-up skip). Keeping the offset in the store means a restart
//! does not move test time backwards: jobs and crons scheduled at test times stay in the past
//! once they were, exactly as with the system clock.

use tickethub_store::{DocReader, IndexQuery, Order, StoreError, TableDef};
use tickethub_value::{validator::v, Object, Value};

use crate::db::WriteOps;

pub const TEST_CLOCK_TABLE: &str = "_test_clock";
const OFFSET_FIELD: &str = "offsetMs";

pub(crate) fn system_table() -> TableDef {
    TableDef {
        name: TEST_CLOCK_TABLE.to_string(),
        fields: [(OFFSET_FIELD.to_string(), v::number())]
            .into_iter()
            .collect(),
        indexes: Vec::new(),
        validate: true,
    }
}

fn the_row() -> IndexQuery {
    IndexQuery::full_scan(TEST_CLOCK_TABLE, Order::Asc)
}

/// The stored offset in ms; 0 when none was stored yet.
pub(crate) fn load(txn: &dyn DocReader) -> Result<f64, StoreError> {
    Ok(txn
        .collect(&the_row(), Some(1))?
        .into_iter()
        .next()
        .and_then(|doc| doc.fields.get(OFFSET_FIELD).and_then(|v| v.as_f64()))
        .unwrap_or(0.0))
}

/// Store `offset_ms`, never lowering the stored value: concurrent writers may commit out of
/// order, and test time must not go backwards.
pub(crate) fn save(txn: &mut dyn WriteOps, offset_ms: f64) -> Result<(), StoreError> {
    match txn.collect(&the_row(), Some(1))?.into_iter().next() {
        Some(doc) => {
            let stored = doc.fields.get(OFFSET_FIELD).and_then(|v| v.as_f64());
            if stored.is_none_or(|s| s < offset_ms) {
                txn.patch_doc(
                    doc.id,
                    vec![(OFFSET_FIELD.to_string(), Some(Value::Float64(offset_ms)))],
                )?;
            }
            Ok(())
        }
        None => {
            let mut row = Object::new();
            row.insert(OFFSET_FIELD.into(), Value::Float64(offset_ms));
            txn.insert_doc(TEST_CLOCK_TABLE, row).map(|_| ())
        }
    }
}
