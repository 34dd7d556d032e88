//! [`AppState`]: everything a request handler needs, shared by both listeners.

use std::sync::Arc;
use std::time::Duration;

use tickethub_runtime::{Clock, Runtime};
use tickethub_sync::{SyncHub, SyncOptions};

use crate::credentials::Authenticator;
use crate::serve::ConnectionLimit;

/// Body size limits. Function args may be 16 MiB; the envelope around them gets a little slack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BodyLimits {
    /// `/api/*` request bodies. Default 16 MiB + 64 KiB.
    pub api: usize,
    /// HTTP action request bodies. Default 20 MiB.
    pub http_action: usize,
}

impl Default for BodyLimits {
    fn default() -> Self {
        BodyLimits {
            api: 16 * 1024 * 1024 + 64 * 1024,
            http_action: 20 * 1024 * 1024,
        }
    }
}

/// How long a client may take to send a request: the defence against slow clients (slowloris)
/// that would otherwise hold connections and tasks for as long as they like. Defaults from the
/// `HTTP_*_TIMEOUT` knobs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadTimeouts {
    /// Complete request headers, from when the server starts waiting for them; past it the
    /// connection is closed (hyper's `header_read_timeout`).
    pub header: Duration,
    /// A whole buffered body (`/api/*`, HTTP actions, dashboard); past it 408 `BodyReadTimeout`.
    pub body: Duration,
    /// File uploads: the longest pause between two pieces of the body; past it 408
    /// `BodyReadTimeout` and the partial file is removed.
    pub upload_stall: Duration,
}

impl Default for ReadTimeouts {
    fn default() -> Self {
        use tickethub_knobs as knobs;
        ReadTimeouts {
            header: *knobs::HTTP_HEADER_READ_TIMEOUT,
            body: *knobs::HTTP_BODY_READ_TIMEOUT,
            upload_stall: *knobs::HTTP_UPLOAD_STALL_TIMEOUT,
        }
    }
}

#[derive(Clone, Debug)]
pub struct RouterConfig {
    /// Answered by `GET /instance_name`.
    pub deployment_name: String,
    /// With [`Clock::Test`], `POST /api/test/advance_time` exists (admin only).
    pub clock: Clock,
    pub limits: BodyLimits,
    /// Open connections over both ports; beyond it a connection is answered 503
    /// `TooManyConnections`. Defaults to the `MAX_CONNECTIONS` knob.
    pub max_connections: usize,
    /// Deadlines for slow clients.
    pub timeouts: ReadTimeouts,
    /// The WebSocket sessions' limits (outbox, actions, subscriptions, message size).
    pub sync: SyncOptions,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            deployment_name: "tickethub".to_string(),
            clock: Clock::System,
            limits: BodyLimits::default(),
            max_connections: *tickethub_knobs::MAX_CONNECTIONS,
            timeouts: ReadTimeouts::default(),
            sync: SyncOptions::default(),
        }
    }
}

/// Shared by every connection of both listeners. The WebSocket sync endpoint gets the same state.
pub struct AppState {
    pub runtime: Runtime,
    pub authenticator: Arc<dyn Authenticator>,
    pub config: RouterConfig,
    /// Live queries: every WebSocket session shares it.
    pub sync: Arc<SyncHub>,
    /// The cap on open connections, shared by both listeners.
    pub connections: ConnectionLimit,
    /// Snapshot export and import (`npx convex export` / `import`).
    pub snapshots: Arc<tickethub_runtime::snapshot::SnapshotService>,
    /// Pushed JavaScript (`npx convex deploy`): the pending push and the running one.
    pub pushes: Arc<tickethub_js::PushService>,
    /// The dashboard's cached table counts.
    pub(crate) dashboard_counts: crate::dashboard::CountCache,
}

impl AppState {
    pub fn new(
        runtime: Runtime,
        authenticator: Arc<dyn Authenticator>,
        config: RouterConfig,
    ) -> Arc<AppState> {
        let sync = SyncHub::with_options(
            runtime.clone(),
            Arc::new(crate::sync_endpoint::SocketAuth(authenticator.clone())),
            config.sync,
        );
        let connections = ConnectionLimit::new(config.max_connections);
        register_gauges(&runtime, &connections, &sync);
        let snapshots = tickethub_runtime::snapshot::SnapshotService::new(runtime.clone());
        let pushes = Arc::new(tickethub_js::PushService::new(runtime.clone()));
        Arc::new(AppState {
            pushes,
            snapshots,
            runtime,
            authenticator,
            config,
            sync,
            connections,
            dashboard_counts: Default::default(),
        })
    }
}

/// The figures only the HTTP layer knows, sampled with the runtime's health figures.
fn register_gauges(runtime: &Runtime, connections: &ConnectionLimit, sync: &Arc<SyncHub>) {
    let observer = runtime.observer();
    let open = connections.open_counter();
    observer.register_gauge("httpConnections", Arc::new(move || open() as f64));
    // Weak: the hub holds the runtime, so a strong reference here would keep both alive.
    let hub = Arc::downgrade(sync);
    observer.register_gauge(
        "wsConnections",
        Arc::new(move || {
            hub.upgrade().map_or(0.0, |h| {
                h.metrics
                    .connections_open
                    .load(std::sync::atomic::Ordering::Relaxed) as f64
            })
        }),
    );
    let hub = Arc::downgrade(sync);
    observer.register_gauge(
        "subscriptions",
        Arc::new(move || hub.upgrade().map_or(0.0, |h| h.subscription_count() as f64)),
    );
}
