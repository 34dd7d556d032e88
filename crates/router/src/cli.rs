//! The HTTP endpoints of the official Convex CLI (`npx convex ...`) that are not function calls.
//!
//! - `GET /api/stream_function_logs?cursor=N` (`npx convex logs`, and the log tail of `dev`;
//!   also under `/api/app_metrics/`): a long poll over the runtime's function log, the same
//!   source as the dashboard's Logs page. It answers as soon as there are calls after the cursor,
//!   or after `CLI_LOG_POLL_TIMEOUT` with none. The cursor is the log's entry id (opaque to the
//!   CLI, which only hands back `newCursor`); a cursor beyond the newest id (the server
//!   restarted since) starts from the beginning again.
//! - `POST /api/update_environment_variables` and `/api/v1/update_environment_variables`
//!   (`npx convex env set|remove`), `GET /api/v1/list_environment_variables`.
//! - Pushing code (`npx convex deploy` / `dev`): `get_config_hashes` and `deploy2/*`, in
//!   `push.rs`.
//! - Endpoints the CLI uses that tickethub does not implement (inline queries, schema
//!   evaluation) answer at once 400 `NotSupported`: never 404, which the CLI retries for about a
//!   minute.
//!
//! Every endpoint needs the admin key: none (or a user token) is 401 `MissingAdminKey`, a wrong
//! key 403 `BadDeployKey` (Convex's code, which the CLI prints as is).

use std::sync::Arc;

use http::{HeaderMap, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::{json, Value as Json};
use tickethub_runtime::{EnvVarChange, EnvVarError, FunctionKind, FunctionLogEntry, Identity};

use crate::body::{parse_json, read_limited};
use crate::credentials::{check_client_version, resolve_identity, CredentialPolicy};
use crate::error::{json_response, ApiError, ErrorCode};
use crate::{AppState, ResponseBody};

/// Largest `update_environment_variables` body: 100 variables of 8 KiB, with room for names.
const ENV_BODY_LIMIT: usize = 1024 * 1024;
/// Most entries one log answer carries (the whole ring at its default size, so `--history N`
/// sees the last N calls).
const MAX_LOG_ENTRIES: usize = 1000;

/// The CLI endpoints, from the path alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Endpoint {
    StreamFunctionLogs,
    UpdateEnvironmentVariables,
    ListEnvironmentVariables,
    /// `GET /api/v1/get_canonical_urls`: the deployment's URLs (`npx convex dev` / `deploy`).
    CanonicalUrls,
    /// A step of pushing code (`npx convex deploy` / `dev`): see `push.rs`.
    Push(crate::push::PushStep),
    /// A CLI endpoint tickethub does not implement; the text names what the user tried.
    NotSupported(&'static str),
}

/// Whether a cluster follower relays an endpoint to the leader: it writes, keeps state between
/// its steps on one node (a push), or reads what only the leader keeps current (the
/// environment-variable mirror, which a node refreshes from the table when it takes the lead).
pub(crate) fn leader_only(endpoint: &Endpoint) -> bool {
    match endpoint {
        Endpoint::UpdateEnvironmentVariables
        | Endpoint::ListEnvironmentVariables
        | Endpoint::Push(_) => true,
        Endpoint::StreamFunctionLogs | Endpoint::CanonicalUrls | Endpoint::NotSupported(_) => false,
    }
}

pub(crate) fn endpoint(path: &str) -> Option<Endpoint> {
    let rest = path.strip_prefix("/api/")?;
    if let Some(step) = crate::push::step(rest) {
        return Some(Endpoint::Push(step));
    }
    Some(match rest {
        "stream_function_logs" | "app_metrics/stream_function_logs" => Endpoint::StreamFunctionLogs,
        "update_environment_variables" | "v1/update_environment_variables" => {
            Endpoint::UpdateEnvironmentVariables
        }
        "v1/list_environment_variables" => Endpoint::ListEnvironmentVariables,
        "v1/get_canonical_urls" => Endpoint::CanonicalUrls,
        "run_test_function" => {
            Endpoint::NotSupported("Running inline queries (`npx convex run --inline-query`)")
        }
        "push_config" => Endpoint::NotSupported(
            "The old push endpoint `/api/push_config` (use a `convex` package of 1.17 or newer)",
        ),
        "stream_udf_execution" => Endpoint::NotSupported(
            "The old log stream `/api/stream_udf_execution` (use `/api/stream_function_logs`)",
        ),
        other if other.starts_with("deploy2/") => {
            Endpoint::NotSupported("This step of pushing code (schema evaluation before a push)")
        }
        _ => return None,
    })
}

/// Handle one CLI endpoint. Never fails: errors become `{code, message}` responses.
pub(crate) async fn handle(
    state: Arc<AppState>,
    request: Request<Incoming>,
    endpoint: Endpoint,
) -> Response<ResponseBody> {
    route(&state, request, endpoint)
        .await
        .unwrap_or_else(ApiError::into_response)
}

async fn route(
    state: &AppState,
    request: Request<Incoming>,
    endpoint: Endpoint,
) -> Result<Response<ResponseBody>, ApiError> {
    if let Endpoint::NotSupported(what) = endpoint {
        return Err(not_supported(what));
    }
    let expected = match endpoint {
        Endpoint::StreamFunctionLogs
        | Endpoint::ListEnvironmentVariables
        | Endpoint::CanonicalUrls => Method::GET,
        Endpoint::UpdateEnvironmentVariables | Endpoint::Push(_) | Endpoint::NotSupported(_) => {
            Method::POST
        }
    };
    if request.method() != expected {
        return Err(ApiError::new(
            ErrorCode::MethodNotAllowed,
            format!(
                "{} is not allowed on {}; use {expected}.",
                request.method(),
                request.uri().path()
            ),
        ));
    }
    check_client_version(request.headers())?;
    if let Endpoint::Push(step) = endpoint {
        // The push endpoints read the admin key from the body as well.
        return crate::push::handle(state, request, step).await;
    }
    require_admin(state, request.headers()).await?;
    match endpoint {
        Endpoint::StreamFunctionLogs => {
            let structured = wants_structured_lines(request.headers());
            stream_function_logs(state, request.uri().query(), structured).await
        }
        Endpoint::ListEnvironmentVariables => {
            let vars = state.runtime.deployment_env_vars();
            Ok(json_response(
                StatusCode::OK,
                json!({ "environmentVariables": vars })
                    .to_string()
                    .into_bytes(),
            ))
        }
        Endpoint::CanonicalUrls => {
            // The API origin file URLs use, unless the operator named public URLs.
            let origin = state
                .runtime
                .config()
                .storage
                .as_ref()
                .map(|s| s.api_origin.clone());
            let cloud = state.runtime.env_var("CONVEX_CLOUD_URL").or(origin);
            let site = state
                .runtime
                .env_var("CONVEX_SITE_URL")
                .or_else(|| cloud.clone());
            Ok(json_response(
                StatusCode::OK,
                json!({ "convexCloudUrl": cloud, "convexSiteUrl": site })
                    .to_string()
                    .into_bytes(),
            ))
        }
        Endpoint::UpdateEnvironmentVariables => {
            let (parts, body) = request.into_parts();
            let bytes = read_limited(
                body,
                &parts.headers,
                ENV_BODY_LIMIT,
                state.config.timeouts.body,
            )
            .await?;
            update_environment_variables(state, &bytes).await
        }
        Endpoint::Push(_) | Endpoint::NotSupported(_) => Err(not_supported("This endpoint")),
    }
}

fn not_supported(what: &str) -> ApiError {
    ApiError::new(
        ErrorCode::NotSupported,
        format!("{what} is not supported by tickethub."),
    )
}

/// The admin key and nothing else. A wrong key gets Convex's `BadDeployKey` so the CLI shows
/// its own advice.
pub(crate) async fn require_admin(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let identity = resolve_identity(headers, state.authenticator.as_ref(), CredentialPolicy::Reject)
        .await
        .map_err(|e| match e.code {
            ErrorCode::BadAdminKey => ApiError::new(
                ErrorCode::BadDeployKey,
                format!(
                    "The provided admin key was invalid for deployment '{}'. Check CONVEX_SELF_HOSTED_ADMIN_KEY: it must be the key the server printed at its first start (or its --admin-key).",
                    state.config.deployment_name
                ),
            ),
            _ => e,
        })?;
    match identity {
        Identity::Admin => Ok(()),
        _ => Err(ApiError::new(
            ErrorCode::MissingAdminKey,
            "This endpoint needs the admin key: Authorization: Convex <admin key>.",
        )),
    }
}

// ---- environment variables ------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateBody {
    changes: Vec<ChangeJson>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangeJson {
    name: String,
    /// `null` removes the variable.
    value: Option<String>,
}

async fn update_environment_variables(
    state: &AppState,
    bytes: &[u8],
) -> Result<Response<ResponseBody>, ApiError> {
    let body: UpdateBody = parse_json(bytes)?;
    let changes = body
        .changes
        .into_iter()
        .map(|c| EnvVarChange {
            name: c.name,
            value: c.value,
        })
        .collect();
    state
        .runtime
        .update_environment_variables(changes)
        .await
        .map_err(env_error)?;
    Ok(json_response(StatusCode::OK, b"{}".to_vec()))
}

fn env_error(error: EnvVarError) -> ApiError {
    let code = match &error {
        EnvVarError::NameInvalid(_) => ErrorCode::EnvironmentVariableNameInvalid,
        EnvVarError::NameTooLong(_) => ErrorCode::EnvironmentVariableNameTooLong,
        EnvVarError::ValueTooLarge(_) => ErrorCode::EnvironmentVariableValueTooLarge,
        EnvVarError::LimitMet(_) => ErrorCode::EnvVarLimitMet,
        EnvVarError::Internal(e) => {
            return ErrorCode::for_failed_function(e.code())
                .map(|code| ApiError::new(code, e.to_string()))
                .unwrap_or_else(|| ApiError::internal(format_args!("env update: {e}")));
        }
    };
    ApiError::new(code, error.to_string())
}

// ---- logs ------------------------------------------------------------------------------------

/// The CLI (`npm-cli-*`) and the dashboard (`dashboard-*`) get log lines as objects; other
/// clients as `[LEVEL] message` strings, as Convex does.
fn wants_structured_lines(headers: &HeaderMap) -> bool {
    headers
        .get("convex-client")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("npm-cli-") || c.starts_with("dashboard-"))
}

async fn stream_function_logs(
    state: &AppState,
    query: Option<&str>,
    structured: bool,
) -> Result<Response<ResponseBody>, ApiError> {
    let cursor_text = form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .find(|(k, _)| k == "cursor")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| "0".to_string());
    let cursor = cursor_text
        .parse::<f64>()
        .ok()
        .filter(|c| c.is_finite() && *c >= 0.0)
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::BadRequest,
                format!("`cursor` must be a number ≥ 0 (the `newCursor` of the previous answer), got {cursor_text:?}."),
            )
        })?;
    let log = &state.runtime.observer().log;
    let mut cursor = cursor as u64;
    if cursor > log.newest_id() {
        cursor = 0;
    }
    let deadline = tokio::time::Instant::now() + *tickethub_knobs::CLI_LOG_POLL_TIMEOUT;
    loop {
        let entries = log.after(cursor, MAX_LOG_ENTRIES);
        if let Some(last) = entries.last() {
            cursor = last.id;
        }
        // A call that named no function ran nothing; Convex's stream has no such entries.
        let json: Vec<Json> = entries
            .iter()
            .filter_map(|e| e.kind.map(|kind| execution_json(e, kind, structured)))
            .collect();
        let now = tokio::time::Instant::now();
        if !json.is_empty() || now >= deadline {
            let body = json!({ "entries": json, "newCursor": cursor });
            return Ok(json_response(StatusCode::OK, body.to_string().into_bytes()));
        }
        log.wait_after(cursor, deadline - now).await;
    }
}

fn udf_type(kind: FunctionKind) -> &'static str {
    match kind {
        FunctionKind::Query => "Query",
        FunctionKind::Mutation => "Mutation",
        FunctionKind::Action => "Action",
        FunctionKind::HttpAction => "HttpAction",
    }
}

/// Convex's `FunctionExecution` `Completion` entry. Times are in seconds, as Convex sends them.
/// Usage figures are not measured per call, so they are zeros.
fn execution_json(entry: &FunctionLogEntry, kind: FunctionKind, structured: bool) -> Json {
    let timestamp = entry.timestamp_ms / 1000.0;
    let duration = entry.duration_ms / 1000.0;
    let log_lines: Vec<Json> = entry
        .log_lines
        .iter()
        .map(|line| {
            if structured {
                structured_line(line, entry.timestamp_ms)
            } else {
                Json::String(line.clone())
            }
        })
        .collect();
    let identifier = match entry.path.split_once(".js:") {
        Some((module, function)) => format!("{module}:{function}"),
        None => entry.path.to_string(),
    };
    let execution_id = entry.id.to_string();
    json!({
        "kind": "Completion",
        "udfType": udf_type(kind),
        "componentPath": null,
        "identifier": identifier,
        "logLines": log_lines,
        "timestamp": timestamp,
        "cachedResult": false,
        "caller": if entry.request_id.is_some() { "HttpApi" } else { "Scheduler" },
        "parentExecutionId": null,
        "executionTime": duration,
        "userExecutionTime": duration,
        "success": null,
        "error": entry.error,
        "requestId": entry.request_id.clone().unwrap_or_else(|| execution_id.clone()),
        "executionId": execution_id,
        "usageStats": {
            "databaseReadBytes": 0, "databaseWriteBytes": 0, "databaseIoReadBytes": 0,
            "databaseIoWriteBytes": 0, "databaseReadDocuments": 0, "databaseWriteDocuments": 0,
            "storageReadBytes": 0, "storageWriteBytes": 0, "vectorIndexReadBytes": 0,
            "vectorIndexWriteBytes": 0, "textIndexQueryBytes": 0, "textIndexWriteQueryBytes": 0,
            "vectorIndexReadQueryBytes": 0, "vectorIndexWriteQueryBytes": 0,
            "networkEgressBytes": 0, "memoryUsedMb": 0
        },
        "returnBytes": null,
        "occInfo": null,
        "willRetry": false,
        "executionTimestamp": timestamp - duration,
        "identityType": "unknown",
        "environment": "isolate",
    })
}

/// `[WARN] 'text'` → `{messages: ["'text'"], level: "WARN", timestamp (ms), isTruncated}`.
fn structured_line(line: &str, timestamp_ms: f64) -> Json {
    let (level, message) = line
        .strip_prefix('[')
        .and_then(|rest| rest.split_once("] "))
        .unwrap_or(("LOG", line));
    json!({
        "messages": [message],
        "level": level,
        "timestamp": timestamp_ms.round() as i64,
        "isTruncated": false,
        "systemMetadata": null,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_from_paths() {
        assert_eq!(
            endpoint("/api/stream_function_logs"),
            Some(Endpoint::StreamFunctionLogs)
        );
        assert_eq!(
            endpoint("/api/v1/update_environment_variables"),
            Some(Endpoint::UpdateEnvironmentVariables)
        );
        assert!(matches!(
            endpoint("/api/deploy2/start_push"),
            Some(Endpoint::Push(crate::push::PushStep::StartPush))
        ));
        assert!(matches!(
            endpoint("/api/deploy2/evaluate_schema"),
            Some(Endpoint::NotSupported(_))
        ));
        assert_eq!(endpoint("/api/query"), None);
        assert_eq!(endpoint("/api/export/request/zip"), None);
    }

    #[test]
    fn log_lines_become_objects() {
        assert_eq!(
            structured_line("[WARN] 'low stock'", 1500.4),
            json!({"messages": ["'low stock'"], "level": "WARN", "timestamp": 1500, "isTruncated": false, "systemMetadata": null})
        );
        assert_eq!(structured_line("plain", 1.0)["level"], "LOG");
    }
}
