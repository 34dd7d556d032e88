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
pub mod cors;
pub mod credentials;
pub mod dashboard;
mod dashboard_assets;
pub mod error;
pub mod http_action;
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
    match surface {
        Surface::Site => http_action::handle(state, request, http_action::Mount::Site).await,
        Surface::Api => route_api_port(state, request).await,
    }
}

async fn route_api_port(
    state: Arc<AppState>,
    request: Request<Incoming>,
) -> Response<ResponseBody> {
    let path = request.uri().path();
    // Before CORS: the dashboard's API serves its own origin only.
    if dashboard::is_dashboard_api(path) {
        return dashboard::handle(state, request).await;
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
