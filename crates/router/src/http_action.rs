//! HTTP actions: every path on the site port, and `/http/<path>` on the API port.

use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode, Uri};
use hyper::body::Incoming;
use tickethub_runtime::{Caller, FnError, RequestId};
use tracing::Instrument;

use crate::body::read_limited;
use crate::credentials::{resolve_identity, CredentialPolicy};
use crate::error::{text_response, ApiError};
use crate::{AppState, ResponseBody};

/// Where the action's path comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mount {
    /// The site port: the request path is the action's path.
    Site,
    /// The API port: `/http/hook` is the action `/hook`.
    ApiHttpPrefix,
}

pub async fn handle(
    state: Arc<AppState>,
    request: Request<Incoming>,
    mount: Mount,
) -> Response<ResponseBody> {
    let request_id = RequestId::generate();
    // DEBUG: see `api::handle`.
    let span = tracing::debug_span!(
        "http_action_request",
        method = %request.method(),
        path = %request.uri().path(),
        request_id = %request_id,
    );
    match handle_inner(&state, request, mount, &request_id)
        .instrument(span)
        .await
    {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn handle_inner(
    state: &AppState,
    request: Request<Incoming>,
    mount: Mount,
    request_id: &RequestId,
) -> Result<Response<ResponseBody>, ApiError> {
    let (mut parts, body) = request.into_parts();
    if mount == Mount::ApiHttpPrefix {
        parts.uri = strip_http_prefix(&parts.uri)?;
    }
    // A bad token does not stop an HTTP action: `getUserIdentity()` reports it instead.
    let identity = resolve_identity(
        &parts.headers,
        state.authenticator.as_ref(),
        CredentialPolicy::Tolerate,
    )
    .await?;
    let bytes = read_limited(
        body,
        &parts.headers,
        state.config.limits.http_action,
        state.config.timeouts.body,
    )
    .await?;
    // HEAD is GET without the body.
    let is_head = parts.method == Method::HEAD;
    if is_head {
        parts.method = Method::GET;
    }
    let path = parts.uri.path().to_string();
    let label = format!("{} {path}", parts.method);
    let request = Request::from_parts(parts, bytes);
    let response = match state
        .runtime
        .http_action(request, Caller { identity }, request_id)
        .await
    {
        Some(Ok(response)) => response,
        Some(Err(error)) => action_error_response(request_id, &label, &error),
        None => {
            return Ok(text_response(
                StatusCode::NOT_FOUND,
                format!("No HttpAction routed for {path}"),
            ))
        }
    };
    let (parts, body) = response.into_parts();
    let body = if is_head { Bytes::new() } else { body };
    Ok(Response::from_parts(parts, ResponseBody::new(body)))
}

/// The 500 answer to a failed HTTP action, as Convex gives it: `{"code": "[Request ID: <id>]
/// Server Error: Uncaught Error: ...", "trace": ...}`. Internal failures say only "Server Error"
/// (the details are logged under the same id).
fn action_error_response(request_id: &RequestId, label: &str, error: &FnError) -> Response<Bytes> {
    let (code, trace) = if error.is_user_visible() {
        let kind = if matches!(error, FnError::Convex { .. }) {
            "ConvexError"
        } else {
            "Error"
        };
        // Pushed JavaScript's errors already read `Uncaught Error: ...`, with the stack.
        let text = error.to_string();
        let uncaught = if text.starts_with("Uncaught ") {
            text
        } else {
            format!("Uncaught {kind}: {text}")
        };
        (
            format!("[Request ID: {request_id}] Server Error: {uncaught}"),
            uncaught,
        )
    } else {
        tracing::error!(request_id = %request_id, route = label, error = %error, "HTTP action failed with an internal error");
        (
            format!("[Request ID: {request_id}] Server Error"),
            String::new(),
        )
    };
    let body = serde_json::json!({ "code": code, "trace": trace }).to_string();
    let mut response = Response::new(Bytes::from(body));
    *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn strip_http_prefix(uri: &Uri) -> Result<Uri, ApiError> {
    let path = uri.path();
    let rest = path.strip_prefix("/http").unwrap_or(path);
    let rest = if rest.is_empty() { "/" } else { rest };
    let rewritten = match uri.query() {
        Some(q) => format!("{rest}?{q}"),
        None => rest.to_string(),
    };
    rewritten
        .parse()
        .map_err(|e| ApiError::internal(format_args!("rewriting {path}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_is_stripped_and_query_kept() {
        let strip = |s: &str| strip_http_prefix(&s.parse().unwrap()).unwrap().to_string();
        assert_eq!(strip("/http/clerk-users-webhook"), "/clerk-users-webhook");
        assert_eq!(strip("/http/a/b?x=1"), "/a/b?x=1");
        assert_eq!(strip("/http"), "/");
    }
}
