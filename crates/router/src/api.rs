//! `/api/*`: the JSON RPC endpoints the official client and CLI use.

use std::sync::Arc;

use futures_util::future::join_all;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use tickethub_runtime::{CallRequest, Caller, Clock, FunctionKind, Identity, ReadAt, RequestId};
use tracing::Instrument;

use crate::body::{parse_json, read_api_body};
use crate::credentials::{check_client_version, resolve_identity, CredentialPolicy};
use crate::error::{json_response, ApiError, ErrorCode};
use crate::wire::{
    decode_ts, encode_ts, unwrap_args, AdvanceTimeBody, ArgsShape, BatchBody, CallBody, Format,
    FunctionResponse, RunBody,
};
use crate::{AppState, ResponseBody};

/// The `/api/*` endpoints, decided from the path alone.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Endpoint<'a> {
    /// `/api/query`, `/api/mutation`, `/api/action`.
    Call(FunctionKind),
    QueryTs,
    QueryAtTs,
    QueryBatch,
    /// `/api/function`: any kind, args not wrapped.
    Function,
    /// `/api/run/<module/path/fn>`.
    Run(&'a str),
    /// `/api/test/advance_time` (only with the test clock).
    AdvanceTime,
    /// `/api/sync`, `/api/<version>/sync`: the WebSocket sync endpoint.
    Sync,
    /// `/api/sync_metrics` (admin): live-query counters.
    SyncMetrics,
}

fn endpoint(rest: &str) -> Option<Endpoint<'_>> {
    Some(match rest {
        "query" => Endpoint::Call(FunctionKind::Query),
        "mutation" => Endpoint::Call(FunctionKind::Mutation),
        "action" => Endpoint::Call(FunctionKind::Action),
        "query_ts" => Endpoint::QueryTs,
        "query_at_ts" => Endpoint::QueryAtTs,
        "query_batch" => Endpoint::QueryBatch,
        "function" => Endpoint::Function,
        "test/advance_time" => Endpoint::AdvanceTime,
        "sync" => Endpoint::Sync,
        "sync_metrics" => Endpoint::SyncMetrics,
        _ => {
            if let Some(path) = rest.strip_prefix("run/") {
                Endpoint::Run(path)
            } else if rest
                .strip_suffix("/sync")
                .is_some_and(|v| !v.is_empty() && !v.contains('/'))
            {
                Endpoint::Sync
            } else {
                return None;
            }
        }
    })
}

pub(crate) fn not_found(path: &str) -> ApiError {
    let shown: String = path.chars().take(200).collect();
    ApiError::new(ErrorCode::NotFound, format!("No such endpoint: {shown}"))
}

/// Handle a request whose path starts with `/api/` (CORS is added by the caller), in a span that
/// carries the request's id (the same id the runtime logs and puts in error texts).
pub async fn handle(
    state: Arc<AppState>,
    request: Request<Incoming>,
) -> Result<Response<ResponseBody>, ApiError> {
    let request_id = RequestId::generate();
    // DEBUG, like the runtime's call span: at INFO every request paid for a span nobody reads;
    // the lines logged at INFO and above name the request id themselves.
    let span = tracing::debug_span!(
        "api_request",
        method = %request.method(),
        path = %request.uri().path(),
        request_id = %request_id,
    );
    handle_in_span(state, request, request_id)
        .instrument(span)
        .await
}

async fn handle_in_span(
    state: Arc<AppState>,
    request: Request<Incoming>,
    request_id: RequestId,
) -> Result<Response<ResponseBody>, ApiError> {
    // A cheap clone (shared bytes) so the endpoint can borrow the path while the body is consumed.
    let uri = request.uri().clone();
    let path = uri.path();
    let rest = path.strip_prefix("/api/").unwrap_or("");
    let endpoint = match endpoint(rest) {
        // The route exists only when the server runs with `--test-clock`.
        Some(Endpoint::AdvanceTime) if state.config.clock != Clock::Test => None,
        other => other,
    };
    let Some(endpoint) = endpoint else {
        return Err(not_found(path));
    };
    match endpoint {
        Endpoint::Sync => return crate::sync_endpoint::upgrade(&state, request),
        Endpoint::SyncMetrics => return crate::sync_endpoint::metrics(&state, &request).await,
        _ => {}
    }
    if request.method() != Method::POST {
        return Err(ApiError::new(
            ErrorCode::MethodNotAllowed,
            format!("{} is not allowed on {path}; use POST.", request.method()),
        ));
    }
    let (parts, body) = request.into_parts();
    check_client_version(&parts.headers)?;
    let identity = resolve_identity(
        &parts.headers,
        state.authenticator.as_ref(),
        CredentialPolicy::Reject,
    )
    .await?;
    let bytes = read_api_body(&state, &parts.headers, body).await?;
    let caller = Caller { identity };
    match endpoint {
        Endpoint::Call(kind) => {
            let body: CallBody = parse_json(&bytes)?;
            call(
                &state,
                &request_id,
                &body,
                Some(kind),
                ArgsShape::ArrayOrObject,
                caller,
                ReadAt::Latest,
            )
            .await
        }
        Endpoint::QueryAtTs => {
            let body: CallBody = parse_json(&bytes)?;
            let ts = body.ts.as_deref().ok_or_else(|| {
                ApiError::new(ErrorCode::BadRequest, "The request body has no \"ts\".")
            })?;
            let read_at = ReadAt::Pinned(decode_ts(ts)?);
            call(
                &state,
                &request_id,
                &body,
                Some(FunctionKind::Query),
                ArgsShape::ArrayOrObject,
                caller,
                read_at,
            )
            .await
        }
        Endpoint::Function => {
            let body: CallBody = parse_json(&bytes)?;
            if body
                .component_path
                .as_deref()
                .is_some_and(|c| !c.is_empty())
            {
                return Err(ApiError::new(
                    ErrorCode::BadRequest,
                    "Components are not supported by this server.",
                ));
            }
            call(
                &state,
                &request_id,
                &body,
                None,
                ArgsShape::Object,
                caller,
                ReadAt::Latest,
            )
            .await
        }
        Endpoint::Run(fn_path) => {
            let run: RunBody = parse_json(&bytes)?;
            let body = CallBody {
                path: Some(run_path_to_function(fn_path)?),
                args: run.args,
                format: run.format,
                ts: None,
                component_path: None,
            };
            call(
                &state,
                &request_id,
                &body,
                None,
                ArgsShape::Object,
                caller,
                ReadAt::Latest,
            )
            .await
        }
        Endpoint::QueryTs => {
            let ts = state.runtime.pin_snapshot().await.map_err(|e| {
                ApiError::internal_for(&request_id, format_args!("pin_snapshot: {e}"))
            })?;
            let body = serde_json::json!({ "ts": encode_ts(ts) });
            Ok(json_response(StatusCode::OK, body.to_string().into_bytes()))
        }
        Endpoint::QueryBatch => query_batch(&state, &request_id, &bytes, caller).await,
        Endpoint::AdvanceTime => {
            if caller.identity != Identity::Admin {
                return Err(ApiError::new(
                    ErrorCode::AdminKeyRequired,
                    "advance_time needs the admin key (Authorization: Convex <admin key>).",
                ));
            }
            let body: AdvanceTimeBody = parse_json(&bytes)?;
            if !body.ms.is_finite() || body.ms < 0.0 {
                return Err(ApiError::new(
                    ErrorCode::BadRequest,
                    "\"ms\" must be a finite number ≥ 0.",
                ));
            }
            let now = state.runtime.advance_time(body.ms).await.map_err(|e| {
                ApiError::internal_for(&request_id, format_args!("advance_time: {e}"))
            })?;
            let body = serde_json::json!({ "now": now });
            Ok(json_response(StatusCode::OK, body.to_string().into_bytes()))
        }
        Endpoint::Sync | Endpoint::SyncMetrics => Err(not_found(path)),
    }
}

/// `/api/run/messages/list` names `messages:list`; `/api/run/a/b/fn` names `a/b:fn`.
fn run_path_to_function(fn_path: &str) -> Result<String, ApiError> {
    match fn_path.trim_end_matches('/').rsplit_once('/') {
        Some((module, function)) if !module.is_empty() && !function.is_empty() => Ok(format!("{module}:{function}")),
        _ => Err(ApiError::new(
            ErrorCode::BadRequest,
            "The path after /api/run/ must be <module path>/<function name>, e.g. /api/run/messages/list.",
        )),
    }
}

struct PreparedCall {
    request: CallRequest,
    format: Format,
}

fn prepare(
    request_id: &RequestId,
    body: &CallBody,
    expected_kind: Option<FunctionKind>,
    shape: ArgsShape,
    caller: Caller,
    read_at: ReadAt,
) -> Result<PreparedCall, ApiError> {
    let path = body.path()?;
    let format = Format::parse(body.format.as_deref())?;
    let args = unwrap_args(&body.args, shape, format)?;
    Ok(PreparedCall {
        request: CallRequest {
            path: path.to_string(),
            args,
            expected_kind,
            caller,
            read_at,
            request_id: request_id.clone(),
        },
        format,
    })
}

async fn run_prepared(
    state: &AppState,
    prepared: PreparedCall,
) -> Result<FunctionResponse, ApiError> {
    let request_id = prepared.request.request_id.clone();
    let result = state.runtime.call(prepared.request).await;
    // A mutation a follower forwarded: answer once this node's reads show it.
    if let (Ok(_), Some(ts)) = (&result.outcome, result.ts) {
        crate::cluster::until_seen(state, ts).await;
    }
    FunctionResponse::from_call(result, prepared.format, &request_id)
}

async fn call(
    state: &AppState,
    request_id: &RequestId,
    body: &CallBody,
    expected_kind: Option<FunctionKind>,
    shape: ArgsShape,
    caller: Caller,
    read_at: ReadAt,
) -> Result<Response<ResponseBody>, ApiError> {
    let prepared = prepare(request_id, body, expected_kind, shape, caller, read_at)?;
    let response = run_prepared(state, prepared).await?;
    serialize(request_id, &response)
}

fn serialize(
    request_id: &RequestId,
    value: &impl serde::Serialize,
) -> Result<Response<ResponseBody>, ApiError> {
    let bytes = serde_json::to_vec(value).map_err(|e| {
        ApiError::internal_for(request_id, format_args!("serializing a response: {e}"))
    })?;
    // Function failures are 200 too: the client reads `status` from the body.
    Ok(json_response(StatusCode::OK, bytes))
}

/// `{"queries": [...]}` → `{"results": [...]}`, every query at one snapshot.
async fn query_batch(
    state: &AppState,
    request_id: &RequestId,
    bytes: &[u8],
    caller: Caller,
) -> Result<Response<ResponseBody>, ApiError> {
    let batch: BatchBody = parse_json(bytes)?;
    let ts = state
        .runtime
        .pin_snapshot()
        .await
        .map_err(|e| ApiError::internal_for(request_id, format_args!("pin_snapshot: {e}")))?;
    // Validate every entry before running any, so a malformed batch runs nothing.
    let prepared = batch
        .queries
        .iter()
        .map(|q| {
            prepare(
                request_id,
                q,
                Some(FunctionKind::Query),
                ArgsShape::ArrayOrObject,
                caller.clone(),
                ReadAt::Pinned(ts),
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    let results = join_all(prepared.into_iter().map(|p| run_prepared(state, p)))
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    #[derive(serde::Serialize)]
    struct BatchResponse {
        results: Vec<FunctionResponse>,
    }
    serialize(request_id, &BatchResponse { results })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_from_paths() {
        assert_eq!(endpoint("query"), Some(Endpoint::Call(FunctionKind::Query)));
        assert_eq!(endpoint("run/a/b/fn"), Some(Endpoint::Run("a/b/fn")));
        assert_eq!(endpoint("1.48.0/sync"), Some(Endpoint::Sync));
        assert_eq!(endpoint("sync"), Some(Endpoint::Sync));
        assert_eq!(endpoint("a/b/sync"), None);
        assert_eq!(endpoint("nope"), None);
        assert_eq!(endpoint(""), None);
    }

    #[test]
    fn run_paths() {
        assert_eq!(
            run_path_to_function("messages/list").unwrap(),
            "messages:list"
        );
        assert_eq!(run_path_to_function("a/b/fn").unwrap(), "a/b:fn");
        assert!(run_path_to_function("fn").is_err());
    }
}
