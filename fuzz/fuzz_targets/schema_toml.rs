//! `schema.toml`: tables, fields (validators in text form) and indexes. Any text must parse or
//! be refused with an error that names the problem, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tickethub_store::Schema;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Schema::from_toml(text) {
        Ok(schema) => {
            for table in schema.tables.values() {
                assert!(!table.name.is_empty());
            }
        }
        Err(error) => assert!(!error.to_string().is_empty()),
    }
});
