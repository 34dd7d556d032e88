//! HTTP actions: every path on the site port, and `/http/<path>` on the API port.

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, Uri};
use hyper::body::Incoming;
use tickethub_runtime::Caller;

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
    match handle_inner(&state, request, mount).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn handle_inner(
    state: &AppState,
    request: Request<Incoming>,
    mount: Mount,
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
    let bytes = read_limited(body, &parts.headers, state.config.limits.http_action).await?;
    // HEAD is GET without the body.
    let is_head = parts.method == Method::HEAD;
    if is_head {
        parts.method = Method::GET;
    }
    let path = parts.uri.path().to_string();
    let request = Request::from_parts(parts, bytes);
    match state
        .runtime
        .http_action(request, Caller { identity })
        .await
    {
        Some(response) => {
            let (parts, body) = response.into_parts();
            let body = if is_head { Bytes::new() } else { body };
            Ok(Response::from_parts(parts, ResponseBody::new(body)))
        }
        None => Ok(text_response(
            StatusCode::NOT_FOUND,
            format!("No HttpAction routed for {path}"),
        )),
    }
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
