//! HTTP actions: route a request to its handler and run it as an action.

use std::panic::AssertUnwindSafe;
use std::time::Instant;

use super::call::{join_error, panicked};
use super::{log_call, Caller};
use crate::ctx::LogSink;
use crate::registry::match_route;
use crate::{ActionCtx, Auth, FnError, FunctionKind, HttpRequest, HttpResponse, Runtime};

impl Runtime {
    /// Route and run an HTTP action. `None` when no route matches (the caller answers 404).
    /// A failing handler gives HTTP 500 `{"code": "[Request ID: <id>] Server Error: ...",
    /// "trace": ...}`; internal failures say only "Server Error" (the details are logged).
    pub async fn http_action(&self, request: HttpRequest, caller: Caller) -> Option<HttpResponse> {
        let route = match_route(&self.inner.routes, request.method(), request.uri().path())?;
        let handler = route.handler.clone();
        let is_head = request.method() == http::Method::HEAD;
        let label = format!("{} {}", request.method(), request.uri().path());
        let started = Instant::now();
        let logs = LogSink::default();
        let ctx = ActionCtx::new(
            self.clone(),
            Auth::new(caller.identity, self.inner.config.auth_enabled),
            logs,
        );
        let result = match std::panic::catch_unwind(AssertUnwindSafe(|| handler(ctx, request))) {
            Ok(future) => tokio::spawn(future)
                .await
                .unwrap_or_else(|e| Err(join_error(&label, e))),
            Err(payload) => Err(panicked(&label, &*payload)),
        };
        log_call(
            &label,
            Some(FunctionKind::HttpAction),
            started,
            result.as_ref().err(),
        );
        let mut response = match result {
            Ok(response) => response,
            Err(e) => server_error_response(&label, &e),
        };
        if is_head {
            *response.body_mut() = bytes::Bytes::new();
        }
        Some(response)
    }
}

/// Build the 500 response of a failed HTTP action, logging the real error with a request id.
fn server_error_response(label: &str, error: &FnError) -> HttpResponse {
    let request_id = format!("{:016x}", rand::random::<u64>());
    let (code, trace) = if error.is_user_visible() {
        let kind = if matches!(error, FnError::Convex { .. }) {
            "ConvexError"
        } else {
            "Error"
        };
        let uncaught = format!("Uncaught {kind}: {error}");
        (
            format!("[Request ID: {request_id}] Server Error: {uncaught}"),
            uncaught,
        )
    } else {
        tracing::error!(request_id, route = label, error = %error, "HTTP action failed with an internal error");
        (
            format!("[Request ID: {request_id}] Server Error"),
            String::new(),
        )
    };
    let body = serde_json::json!({ "code": code, "trace": trace }).to_string();
    http::Response::builder()
        .status(http::StatusCode::INTERNAL_SERVER_ERROR)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(bytes::Bytes::from(body))
        .unwrap_or_else(|_| http::Response::new(bytes::Bytes::new()))
}
