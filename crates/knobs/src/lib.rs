//! Every tunable of tickethub has its home here, as Convex keeps its own in `knobs.rs`.
//!
//! Each knob has a default, a bound it is clamped to, and an environment override named
//! `TICKETHUB_<NAME>`, read once when the knob is first used. A value that does not parse or is
//! out of bounds is refused with a warning and the default (or the nearest bound) is used, so a
//! typo never takes a server down and never goes unnoticed.
//!
//! Limits that are part of Convex's semantics (documents read per transaction, value sizes) are
//! not knobs: they live in `tickethub_value::limits` and the store's `TxnLimits`, because an app
//! must be able to rely on them.
//!
//! To add a knob: declare it below with [`knob!`], give it a doc comment that says what it
//! bounds and why the default is what it is, and list it in `ARCHITECTURE.md`.

use std::ops::RangeInclusive;
use std::sync::LazyLock;
use std::time::Duration;

/// Reads `TICKETHUB_<name>` as a `u64` within `bounds`, else `default`.
pub fn from_env(name: &str, default: u64, bounds: RangeInclusive<u64>) -> u64 {
    let var = format!("TICKETHUB_{name}");
    let Ok(text) = std::env::var(&var) else {
        return default;
    };
    match text.trim().replace('_', "").parse::<u64>() {
        Ok(v) if bounds.contains(&v) => v,
        Ok(v) => {
            let clamped = v.clamp(*bounds.start(), *bounds.end());
            tracing::warn!(
                "{var}={v} is outside {}..={}; using {clamped}",
                bounds.start(),
                bounds.end()
            );
            clamped
        }
        Err(_) => {
            tracing::warn!("{var}={text:?} is not a whole number; using the default {default}");
            default
        }
    }
}

/// A knob: its name, the type it is used as, its default, and its inclusive bounds.
macro_rules! knob {
    ($(#[$doc:meta])* $name:ident: usize = $default:expr, min $lo:expr, max $hi:expr) => {
        $(#[$doc])*
        pub static $name: LazyLock<usize> =
            LazyLock::new(|| from_env(stringify!($name), $default as u64, $lo as u64..=$hi as u64) as usize);
    };
    ($(#[$doc:meta])* $name:ident: u64 = $default:expr, min $lo:expr, max $hi:expr) => {
        $(#[$doc])*
        pub static $name: LazyLock<u64> =
            LazyLock::new(|| from_env(stringify!($name), $default as u64, $lo as u64..=$hi as u64));
    };
    ($(#[$doc:meta])* $name:ident: Duration(ms) = $default:expr, min $lo:expr, max $hi:expr) => {
        $(#[$doc])*
        pub static $name: LazyLock<Duration> = LazyLock::new(|| {
            Duration::from_millis(from_env(stringify!($name), $default as u64, $lo as u64..=$hi as u64))
        });
    };
    ($(#[$doc:meta])* $name:ident: Duration(us) = $default:expr, min $lo:expr, max $hi:expr) => {
        $(#[$doc])*
        pub static $name: LazyLock<Duration> = LazyLock::new(|| {
            Duration::from_micros(from_env(stringify!($name), $default as u64, $lo as u64..=$hi as u64))
        });
    };
}

// ---------------------------------------------------------------------------------------------
// Store

knob!(
    /// Reader connections in the store's pool: the most snapshots open at once. A query that finds
    /// none free never blocks an async worker: it waits on the blocking pool instead.
    READER_POOL_SIZE: usize = 8, min 1, max 256
);
knob!(
    /// Mutations queued for the writer thread beyond which new ones are refused with
    /// `ServerOverloaded` instead of queueing without bound.
    WRITER_QUEUE_CAPACITY: usize = 16_384, min 16, max 1_048_576
);
knob!(
    /// Most mutations one group commit may hold. Under a deep queue one fsync is shared by many.
    WRITER_MAX_BATCH: usize = 1024, min 1, max 65_536
);
knob!(
    /// After a big batch, how long the writer waits for the callers it answered to send their
    /// next mutations, so they share the next fsync.
    WRITER_GATHER_WAIT: Duration(us) = 250, min 0, max 10_000
);
knob!(
    /// Pages `tickethub backup` copies per step of SQLite's online backup before pausing
    /// (`BACKUP_STEP_PAUSE`). 1,024 pages is 4 MiB: a step takes a few ms, so the serving
    /// process's writer, which shares the disk and the CPUs, is never starved for long.
    BACKUP_STEP_PAGES: usize = 1_024, min 1, max 1_048_576
);
knob!(
    /// Pause between backup steps: the share of disk and CPU a running backup leaves to the
    /// server. 0 copies flat out. (`bench --backup` measures creates/s during a backup.)
    BACKUP_STEP_PAUSE: Duration(ms) = 10, min 0, max 10_000
);
knob!(
    /// The writer connection's SQLite page cache, in KiB.
    WRITER_CACHE_KIB: u64 = 32 * 1024, min 256, max 4 * 1024 * 1024
);
knob!(
    /// Each reader connection's SQLite page cache, in KiB. Readers get most pages through the
    /// memory map, so a small cache keeps resident memory flat under load.
    READER_CACHE_KIB: u64 = 4 * 1024, min 64, max 1024 * 1024
);
knob!(
    /// Address space each connection may map of the database file (virtual, not resident).
    MMAP_BYTES: u64 = 1u64 << 30, min 0, max 1u64 << 40
);
knob!(
    /// WAL pages before a commit also checkpoints.
    WAL_AUTOCHECKPOINT_PAGES: u64 = 16_384, min 100, max 1_000_000
);
knob!(
    /// Size the WAL file is truncated back to after a checkpoint.
    JOURNAL_SIZE_LIMIT_BYTES: u64 = 64u64 << 20, min 1u64 << 20, max 1u64 << 34
);
knob!(
    /// How long the writer must have had nothing to do before it does its upkeep (returning
    /// freed pages to the file system, truncating the WAL). Upkeep never delays a mutation that
    /// is already queued, and it runs only after something was written since the last one.
    STORE_IDLE_MAINTENANCE_AFTER: Duration(ms) = 1_000, min 10, max 3_600_000
);
knob!(
    /// Freed pages one upkeep step gives back to the file system (`PRAGMA incremental_vacuum`).
    /// 4,096 pages (16 MiB at 4 KiB pages) take a few milliseconds, so a mutation that arrives
    /// meanwhile waits little; a bigger free list is returned over several idle periods.
    INCREMENTAL_VACUUM_STEP_PAGES: u64 = 4_096, min 1, max 1_000_000
);
knob!(
    /// Commits the in-memory commit log keeps for live queries. A subscriber further behind than
    /// this re-runs all its queries once.
    COMMIT_LOG_CAPACITY: usize = 4096, min 16, max 1_048_576
);

knob!(
    /// Cluster mode: how long the leader's lease lives without renewal, the failover time
    /// (`serve --lease-ttl-ms` overrides it).
    CLUSTER_LEASE_TTL: Duration(ms) = 10_000, min 300, max 600_000
);

knob!(
    /// Cluster mode: longest a follower goes without reading the commit-log table when no NOTIFY
    /// arrives (a NOTIFY can be lost on a reconnect).
    CLUSTER_COMMIT_POLL: Duration(ms) = 1_000, min 10, max 60_000
);

// ---------------------------------------------------------------------------------------------
// Runtime

knob!(
    /// Snapshots pinned at once for `/api/query_ts` + `consistentQuery`.
    MAX_PINNED_SNAPSHOTS: usize = 2, min 1, max 64
);
knob!(
    /// How long a pinned snapshot stays open after its last use.
    PINNED_SNAPSHOT_TTL: Duration(ms) = 30_000, min 100, max 600_000
);
knob!(
    /// Function calls the in-memory function log keeps (the dashboard's Logs page and, later,
    /// `npx convex logs` read it); older entries are dropped.
    FUNCTION_LOG_CAPACITY: usize = 1000, min 1, max 1_000_000
);
knob!(
    /// How often the health sampler records the deployment's figures (dashboard Health page).
    HEALTH_SAMPLE_INTERVAL: Duration(ms) = 5_000, min 100, max 600_000
);
knob!(
    /// Samples the health ring keeps (with the default interval: the last 10 minutes).
    HEALTH_SAMPLES_KEPT: usize = 120, min 1, max 100_000
);
knob!(
    /// Scheduled functions and crons running at once.
    SCHEDULER_MAX_CONCURRENT_JOBS: usize = 16, min 1, max 1024
);
knob!(
    /// How long a finished scheduled function's row (`success`, `failed`, `canceled`) is kept
    /// in `_scheduled_functions` after it finished, as Convex keeps them: 7 days. Pending and
    /// running jobs are never purged. `tickethub serve --scheduled-job-retention-ms` overrides it.
    SCHEDULED_JOB_RETENTION: Duration(ms) = 7 * 24 * 60 * 60 * 1000, min 0, max 10 * 365 * 24 * 60 * 60 * 1000u64
);
knob!(
    /// How often the scheduler looks for finished jobs past their retention (by the server's
    /// clock, so the test clock moves it too). A purge whose batch came back full runs again
    /// at once, so a backlog drains in consecutive batches.
    SCHEDULED_JOB_PURGE_INTERVAL: Duration(ms) = 60_000, min 10, max 24 * 60 * 60 * 1000
);
knob!(
    /// Finished job rows one purge transaction deletes: small enough that a purge never holds
    /// the writer for long (about a millisecond per 100 rows), large enough to outpace any
    /// realistic job rate with the default interval.
    SCHEDULED_JOB_PURGE_BATCH: usize = 1_000, min 1, max 100_000
);

// ---------------------------------------------------------------------------------------------
// Sync (WebSocket)

knob!(
    /// Query results memoised per (query, args, identity) at the latest timestamp.
    SYNC_MEMO_CAPACITY: usize = 16_384, min 0, max 1_048_576
);
knob!(
    /// Messages queued for one client before the session stops producing more.
    SYNC_OUTBOX_CAPACITY: usize = 64, min 1, max 65_536
);
knob!(
    /// A client that does not take a message within this time is dropped.
    SYNC_SEND_TIMEOUT: Duration(ms) = 30_000, min 100, max 600_000
);
knob!(
    /// Idle time after which the server pings a client.
    SYNC_PING_AFTER_IDLE: Duration(ms) = 15_000, min 100, max 600_000
);
knob!(
    /// Actions one WebSocket connection may have running at once; more are refused with
    /// `TooManyConcurrentActions`.
    SYNC_MAX_ACTIONS_PER_CONNECTION: usize = 16, min 1, max 4096
);

knob!(
    /// Queries one WebSocket connection may have subscribed at once. A `ModifyQuerySet` that
    /// would go past it closes the connection with `TooManySubscriptions`: every subscription
    /// costs memory and a re-run on each matching commit, so one client must not hold unboundedly
    /// many. The official client keeps one per distinct `useQuery`, far below this.
    SYNC_MAX_QUERIES_PER_CONNECTION: usize = 1024, min 1, max 1_048_576
);
knob!(
    /// Largest WebSocket message (and frame) a client may send, in bytes: function args may be
    /// 16 MiB, plus the envelope. A bigger frame is refused from its header (close code 1009,
    /// Message Too Big) and its payload is never buffered.
    SYNC_MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024 + 64 * 1024, min 1024, max 1usize << 30
);

// ---------------------------------------------------------------------------------------------
// HTTP

knob!(
    /// Open connections the server accepts, over both ports together. Beyond it a new connection
    /// is answered `503 TooManyConnections` and closed.
    MAX_CONNECTIONS: usize = 4096, min 1, max 1_000_000
);
knob!(
    /// Time a client gets to send a request's complete headers, counted from when the server
    /// starts waiting for them (also between requests on a kept-alive connection). Past it the
    /// connection is closed: a slowloris client that trickles header bytes holds a connection for
    /// at most this long. 10 s is far above what any real client on any network needs.
    HTTP_HEADER_READ_TIMEOUT: Duration(ms) = 10_000, min 100, max 600_000
);
knob!(
    /// Time a client gets to send a whole request body to `/api/*`, HTTP actions and the
    /// dashboard API (at most 16–20 MiB). Past it the request is answered `408 BodyReadTimeout`
    /// and the connection closed. 60 s lets 20 MiB through at under 3 Mbit/s.
    HTTP_BODY_READ_TIMEOUT: Duration(ms) = 60_000, min 100, max 3_600_000
);
knob!(
    /// File uploads may be large and slow, so they have no total deadline; instead the body must
    /// keep moving: an upload that receives no bytes for this long is refused with
    /// `408 BodyReadTimeout` and its partial file removed.
    HTTP_UPLOAD_STALL_TIMEOUT: Duration(ms) = 30_000, min 100, max 3_600_000
);
knob!(
    /// Time a graceful shutdown waits for open requests before it stops anyway.
    SHUTDOWN_GRACE: Duration(ms) = 10_000, min 0, max 600_000
);

// ---------------------------------------------------------------------------------------------
// File storage

knob!(
    /// Largest file one upload (or `ctx.storage.store`) may hold, in bytes; `tickethub serve
    /// --max-upload-bytes` overrides it. 1 GiB: large enough for images, documents and short
    /// videos, small enough that one request cannot fill a modest disk. Uploads stream to disk,
    /// so the limit bounds disk use, not memory.
    MAX_UPLOAD_BYTES: u64 = 1u64 << 30, min 1, max 1u64 << 40
);

// ---------------------------------------------------------------------------------------------
// The Convex CLI (`npx convex data`, `npx convex logs`)

knob!(
    /// Most documents one `_system/cli/tableData` page returns, whatever `numItems` the CLI asks
    /// for (it asks for 10,000 when no `--limit` is given and pages on). 1,000 keeps one page's
    /// encoding and the socket message small; the CLI simply asks for the next page.
    CLI_DATA_PAGE_MAX_DOCS: usize = 1000, min 1, max 32_000
);
knob!(
    /// Most bytes of documents (their value size) one `_system/cli/tableData` page gathers before
    /// it ends early: a table of large documents still gives bounded pages. 8 MiB, well under the
    /// 16 MiB a transaction may read.
    CLI_DATA_PAGE_MAX_BYTES: usize = 8 * 1024 * 1024, min 64 * 1024, max 64 * 1024 * 1024
);
knob!(
    /// Longest `GET /api/stream_function_logs` waits for a new function call before answering
    /// with no entries (Convex waits 60 s; the CLI polls again at once).
    CLI_LOG_POLL_TIMEOUT: Duration(ms) = 60_000, min 100, max 600_000
);

// ---------------------------------------------------------------------------------------------
// Snapshot import (`npx convex import`, `tickethub import`)

knob!(
    /// Most bytes a snapshot import may hold once uncompressed may hold once uncompressed (the sum over a ZIP's entries, or
    /// a single JSONL / JSON / CSV file). Refused before anything is written, so a ZIP bomb cannot
    /// fill the disk or the memory. 8 GiB: well above a million-document deployment.
    IMPORT_MAX_UNCOMPRESSED_BYTES: u64 = 8u64 << 30, min 1024, max 1u64 << 42
);

knob!(
    /// Most bytes an import upload may have in total (all its parts). Parts stream to a file in
    /// the data dir, so this bounds disk use. 4 GiB.
    IMPORT_MAX_UPLOAD_BYTES: u64 = 4u64 << 30, min 1024, max 1u64 << 42
);

knob!(
    /// Most bytes one upload part may have. The CLI sends 5 MiB parts (`CONVEX_IMPORT_CHUNK_SIZE`
    /// changes it); a part is held in memory while it is written, so this bounds that. 64 MiB.
    IMPORT_MAX_PART_BYTES: usize = 64 << 20, min 1024, max 1 << 30
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_parse_and_clamp() {
        std::env::set_var("TICKETHUB_KNOB_TEST_A", "1_000");
        assert_eq!(from_env("KNOB_TEST_A", 5, 1..=10_000), 1000);
        std::env::set_var("TICKETHUB_KNOB_TEST_B", "99999");
        assert_eq!(from_env("KNOB_TEST_B", 5, 1..=10), 10);
        std::env::set_var("TICKETHUB_KNOB_TEST_C", "lots");
        assert_eq!(from_env("KNOB_TEST_C", 5, 1..=10), 5);
        assert_eq!(from_env("KNOB_TEST_UNSET", 7, 1..=10), 7);
    }

    #[test]
    fn defaults_are_within_bounds() {
        assert_eq!(*READER_POOL_SIZE, 8);
        assert!(*WRITER_QUEUE_CAPACITY >= 16);
        assert_eq!(*WRITER_GATHER_WAIT, Duration::from_micros(250));
    }
}

// ---------------------------------------------------------------------------------------------
// Pushed JavaScript (`tickethub-js`).

knob!(
    /// Longest one JavaScript query or mutation may run, syscalls included, before it is
    /// stopped (Convex's limit for queries and mutations is 1 s).
    JS_CALL_TIME_LIMIT: Duration(ms) = 1_000, min 10, max 600_000
);

knob!(
    /// Longest one JavaScript action (or HTTP action) may run, waits on `fetch`, timers and
    /// `ctx.run*` included (Convex's limit for actions is 10 minutes).
    JS_ACTION_TIME_LIMIT: Duration(ms) = 600_000, min 10, max 3_600_000
);

knob!(
    /// Largest response body `fetch` in a JavaScript action reads, in bytes; past it the
    /// `fetch` fails rather than hold an unbounded body in memory.
    JS_FETCH_BODY_LIMIT_BYTES: usize = 32 << 20, min 1 << 10, max 1 << 30
);

knob!(
    /// Most heap one thread's QuickJS runtime may use, in bytes (Convex gives an isolate 64 MiB).
    /// A call that goes past it fails, and the thread starts a fresh runtime for the next call.
    JS_MEMORY_LIMIT_BYTES: usize = 64 << 20, min 4 << 20, max 4 << 30
);

knob!(
    /// Largest body `deploy2/start_push` and friends accept once decompressed, in bytes: the
    /// whole bundled `convex/` folder with source maps.
    JS_PUSH_BODY_LIMIT_BYTES: usize = 64 << 20, min 1 << 20, max 1 << 30
);
