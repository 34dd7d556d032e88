//! [`Runtime`]: runs calls. Queries run on a snapshot (on a blocking thread), mutations run as
//! jobs on the store's writer thread (serializable by construction, group-committed), actions run
//! on tokio. Also the scheduler loop, crons and the clock.

use std::collections::BTreeMap;

use tickethub_store::{ReadSet, Store, TableDef, Timestamp};
use tickethub_value::Value;

use crate::{App, FnError, FunctionKind, HttpRequest, HttpResponse, Identity};

/// The runtime's clock. `Test` adds a manual offset to real time (`tickethub serve --test-clock`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Clock {
    System,
    Test,
}

#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    pub clock: Clock,
    /// Whether any auth provider is configured (exposed to apps as `ctx.auth.enabled()`).
    pub auth_enabled: bool,
    /// Environment values functions may read via `ctx.env(name)`.
    pub env: BTreeMap<String, String>,
}

#[derive(Clone, Debug)]
pub struct Caller {
    pub identity: Identity,
}

impl Caller {
    pub fn is_admin(&self) -> bool {
        matches!(self.identity, Identity::Admin)
    }
}

/// Which snapshot a query reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadAt {
    Latest,
    /// A timestamp from [`Runtime::pin_snapshot`] (`/api/query_ts` → `/api/query_at_ts`).
    Pinned(Timestamp),
}

#[derive(Clone, Debug)]
pub struct CallRequest {
    /// As given by the client (canonicalized by the runtime).
    pub path: String,
    /// The args object (`args[0]` of the wire form).
    pub args: Value,
    /// `None` for `/api/function` (run whatever kind it is).
    pub expected_kind: Option<FunctionKind>,
    pub caller: Caller,
    pub read_at: ReadAt,
}

#[derive(Debug)]
pub struct CallResult {
    pub outcome: Result<Value, FnError>,
    /// `"[LOG] 'hi'"`-style lines.
    pub log_lines: Vec<String>,
    /// The snapshot a query read, or the commit ts of a mutation.
    pub ts: Option<Timestamp>,
    /// For queries: the index ranges read (live queries subscribe to them).
    pub read_set: Option<ReadSet>,
}

/// Cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    _private: std::sync::Arc<()>,
}

impl Runtime {
    /// Engine-owned tables to add to the schema before opening the store (`_scheduled_functions`,
    /// cron state).
    pub fn system_tables() -> Vec<TableDef> {
        todo!()
    }
    pub fn new(_app: App, _store: Store, _config: RuntimeConfig) -> Runtime {
        todo!()
    }
    /// Start the scheduler and cron loops on the current tokio runtime. A cron that was due while
    /// the server was down runs once.
    pub fn start_background(&self) {
        todo!()
    }
    pub fn store(&self) -> &Store {
        todo!()
    }
    /// Run a query, mutation or action. Function failures are in `outcome`, never panics.
    pub async fn call(&self, _request: CallRequest) -> CallResult {
        todo!()
    }
    /// Keep a snapshot open for a while (bounded count, expiring) and return its timestamp.
    pub fn pin_snapshot(&self) -> Result<Timestamp, FnError> {
        todo!()
    }
    /// Route and run an HTTP action. `None` when no route matches (the caller answers 404).
    pub async fn http_action(&self, _request: HttpRequest, _caller: Caller) -> Option<HttpResponse> {
        todo!()
    }
    /// Test clock only: move time forward, run every scheduled job and cron that became due, and
    /// return the new time in ms once they have finished.
    pub async fn advance_time(&self, _ms: f64) -> Result<f64, FnError> {
        todo!()
    }
    pub fn now_ms(&self) -> f64 {
        todo!()
    }
    /// Stop the background loops and wait for in-flight scheduled jobs.
    pub async fn shutdown(&self) {
        todo!()
    }
}
