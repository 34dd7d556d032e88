//! The HTTP surface of tickethub: the only crate that knows HTTP and the Convex wire shapes, and
//! the one place that maps error codes to HTTP statuses.
//!
//! Module map:
//! - [`serve`]: accept loop (HTTP/1.1, keep-alive, upgrades, TCP_NODELAY) and graceful shutdown.
//! - [`api`]: `/api/*` — query/mutation/action, `query_ts`/`query_at_ts`, `query_batch`,
//!   `function`, `run/<path>`, `test/advance_time`; hands `/api/<version>/sync` to `sync_endpoint`.
//! - `sync_endpoint`: the WebSocket upgrade into the sync crate's hub (live queries).
//! - [`http_action`]: HTTP actions on the site port and under `/http/` on the API port.
//! - [`wire`]: request bodies, the two value formats, response bodies, timestamps.
//! - [`credentials`]: `Authorization` → [`Identity`](tickethub_runtime::Identity) through an
//!   [`Authenticator`], and the `Convex-Client` header check.
//! - [`body`]: size-limited body reading and JSON parsing with clear errors.
//! - [`cors`]: CORS for `/api/*`.
//! - [`dashboard`]: the admin-only `/api/dashboard/*` JSON API and `GET /metrics`.
//! - `cli`: the Convex CLI's other endpoints: `stream_function_logs` (long poll over the function
//!   log), environment variables, and a fast 400 `NotSupported` for what tickethub does not do.
//! - [`storage`]: file storage over HTTP: `POST /api/storage/upload?token=…` (streamed to disk)
//!   and `GET /api/storage/<uuid>` (streamed from disk, with `Range`).
//! - [`snapshot`]: `npx convex export` / `import`: export request and download, import uploads in
//!   parts, perform and cancel (admin only).
//! - [`response_body`]: [`ResponseBody`], buffered or streamed.
//! - [`error`]: [`ApiError`] / [`ErrorCode`] and their statuses.
//! - [`state`]: [`AppState`], [`RouterConfig`].
//!
//! Invariants: every non-2xx answer of `/api/*` is `{"code", "message"}` with a ScreamingCamelCase
//! code; internal details (SQL, paths, traces) are logged under a request id, never sent; bodies
//! are read within a limit and an oversized declared length is refused before reading.

pub mod api;
pub mod body;
mod cli;
pub mod cluster;
pub mod cors;
pub mod credentials;
pub mod dashboard;
mod dashboard_assets;
pub mod error;
pub mod http_action;
mod push;
pub mod response_body;
pub mod serve;
pub mod snapshot;
pub mod state;
pub mod storage;
mod sync_endpoint;
pub mod wire;

use std::sync::Arc;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

pub use credentials::{AuthFailure, AuthFailureKind, Authenticator, BoxFuture};
pub use error::{ApiError, ErrorCode};
pub use serve::{serve, ConnectionLimit, GracePeriod};
pub use state::{AppState, BodyLimits, ReadTimeouts, RouterConfig};

/// Every response body: small and fully buffered, or (stored files) streamed from disk.
pub use response_body::ResponseBody;

/// Which listener a request arrived on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Surface {
    /// The API port (default 3210): `/api/*`, `/http/*`, `/instance_name`.
    Api,
    /// The site port (default 3211): every path is an HTTP action.
    Site,
}

/// Route one request. Never fails: errors become responses.
pub async fn route(
    state: Arc<AppState>,
    surface: Surface,
    request: Request<Incoming>,
) -> Response<ResponseBody> {
    // A request another node relayed: its answer names the commits it made (or saw), so that
    // node answers only once it has heard of them (see `cluster::relay`).
    if cluster::is_relayed(&request) {
        let mut response = route_here(state.clone(), surface, request).await;
        cluster::stamp_latest_commit(&state, &mut response);
        return response;
    }
    route_here(state, surface, request).await
}

async fn route_here(
    state: Arc<AppState>,
    surface: Surface,
    request: Request<Incoming>,
) -> Response<ResponseBody> {
    match surface {
        // Cluster follower: an HTTP action is an action, and actions run on the leader; the
        // leader's API port serves the same routes under `/http`.
        Surface::Site if cluster::relays_writes(&state) => {
            let target = format!("/http{}", path_and_query(&request));
            let (parts, body) = request.into_parts();
            cluster::relay(&state, parts, cluster::incoming_body(body), &target).await
        }
        Surface::Site => http_action::handle(state, request, http_action::Mount::Site).await,
        Surface::Api => route_api_port(state, request).await,
    }
}

fn path_and_query(request: &Request<Incoming>) -> String {
    request
        .uri()
        .path_and_query()
        .map(|pq| pq.as_str().to_string())
        .unwrap_or_else(|| request.uri().path().to_string())
}

/// Whether a follower hands this API-port request to the leader whole: every write that is not
/// a single function call (those the runtime forwards), and whatever keeps its state on one node.
fn relayed_to_leader(path: &str, method: &Method) -> bool {
    let reads = method == Method::GET || method == Method::HEAD;
    if dashboard::is_dashboard_api(path) {
        // Document edits, runs, cancels.
        return !reads;
    }
    if path == "/http" || path.starts_with("/http/") {
        return true;
    }
    if storage::is_storage_path(path) {
        // Uploads (the signing key and the blob directory are the leader's); a GET is served
        // here and relayed only when this node lacks the file's bytes (`storage.rs`).
        return !reads;
    }
    if snapshot::is_snapshot_path(path) {
        // Exports and imports keep their progress in the leader's memory and files.
        return true;
    }
    match cli::endpoint(path) {
        Some(endpoint) => cli::leader_only(&endpoint),
        None => false,
    }
}

async fn route_api_port(
    state: Arc<AppState>,
    request: Request<Incoming>,
) -> Response<ResponseBody> {
    let path = request.uri().path();
    if request.method() != Method::OPTIONS
        && relayed_to_leader(path, request.method())
        && cluster::relays_writes(&state)
    {
        let target = path_and_query(&request);
        let (parts, body) = request.into_parts();
        return cluster::relay(&state, parts, cluster::incoming_body(body), &target).await;
    }
    // Before CORS: the dashboard's API serves its own origin only.
    if dashboard::is_dashboard_api(path) {
        return dashboard::handle(state, request).await;
    }
    if path == cluster::CALL_PATH {
        return cluster::handle(state, request)
            .await
            .unwrap_or_else(ApiError::into_response);
    }
    if path == "/metrics" {
        return dashboard::metrics(state, request).await;
    }
    if path.starts_with("/api/") || path == "/api" {
        let origin = request.headers().get(http::header::ORIGIN).cloned();
        if request.method() == Method::OPTIONS {
            return cors::preflight(request.headers());
        }
        let mut response = if storage::is_storage_path(path) {
            storage::handle(state, request).await
        } else if let Some(endpoint) = cli::endpoint(path) {
            cli::handle(state, request, endpoint).await
        } else if snapshot::is_snapshot_path(path) {
            snapshot::handle(state, request)
                .await
                .unwrap_or_else(ApiError::into_response)
        } else {
            api::handle(state, request)
                .await
                .unwrap_or_else(ApiError::into_response)
        };
        cors::decorate(&mut response, origin.as_ref());
        return response;
    }
    if path == "/http" || path.starts_with("/http/") {
        return http_action::handle(state, request, http_action::Mount::ApiHttpPrefix).await;
    }
    if dashboard_assets::is_dashboard_path(path) {
        return dashboard_assets::handle(request.method(), path);
    }
    if path == "/instance_name" {
        if request.method() != Method::GET && request.method() != Method::HEAD {
            return ApiError::new(ErrorCode::MethodNotAllowed, "Use GET for /instance_name.")
                .into_response();
        }
        return error::text_response(StatusCode::OK, state.config.deployment_name.clone());
    }
    api::not_found(path).into_response()
}
