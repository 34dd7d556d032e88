//! Where the store tests keep their data. By default a SQLite file in the test's directory; with
//! `TICKETHUB_STORE_TEST_POSTGRES=<url>` (tests/run sets it after starting a throwaway Postgres)
//! the same tests run on Postgres, each directory mapped to its own Postgres schema, so reopening
//! a directory reopens the same data.

use std::path::Path;

use tickethub_store::{PostgresLocation, Schema, Store, StoreError, StoreLocation, StoreOptions};

pub const POSTGRES_ENV: &str = "TICKETHUB_STORE_TEST_POSTGRES";

pub fn location(dir: &Path) -> StoreLocation {
    match std::env::var(POSTGRES_ENV) {
        Ok(url) if !url.is_empty() => {
            // A schema name from the directory: unique per test, stable across reopens.
            let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
            for b in dir.as_os_str().as_encoded_bytes() {
                hash = (hash ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
            }
            StoreLocation::Postgres(PostgresLocation {
                url,
                schema: format!("t_{hash:016x}"),
            })
        }
        _ => StoreLocation::Sqlite {
            dir: dir.to_path_buf(),
        },
    }
}

pub fn open(dir: &Path, schema: Schema, options: StoreOptions) -> Result<Store, StoreError> {
    Store::open_at(&location(dir), schema, options)
}
