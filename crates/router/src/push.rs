//! The push protocol of the Convex CLI 1.48 (`npx convex deploy`, `npx convex dev`,
//! `npx convex codegen`): `get_config_hashes`, `deploy2/evaluate_push`, `deploy2/start_push`,
//! `deploy2/wait_for_schema`, `deploy2/finish_push`, `deploy2/report_push_completed`.
//!
//! `start_push` and `evaluate_push` bodies are brotli-compressed JSON. `start_push` compiles and
//! analyzes the modules (a syntax error or a module that throws is refused here, naming it) and
//! keeps them pending; `finish_push` stores them and swaps the functions in. The CLI hands the
//! `start_push` answer back to `finish_push` verbatim, so the answer carries the pending push's
//! id (`tickethubPushId`) beside Convex's fields. `deploy2/evaluate_schema` stays
//! `NotSupported`: the CLI treats any 4xx there as "skip the advisory checks".
//!
//! Not supported yet, refused with `NotSupported` naming it: components
//! (`componentDefinitions`), Node.js modules (`"use node"`).

use std::io::Read as _;

use base64::Engine as _;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::{json, Value as Json};
use tickethub_js::PushError;
use tickethub_runtime::StoredModule;

use crate::body::read_limited;
use crate::error::{json_response, ApiError, ErrorCode};
use crate::{AppState, ResponseBody};

/// The Convex package version tickethub's push answers speak for (`udfServerVersion`).
const UDF_SERVER_VERSION: &str = "1.48.0";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PushStep {
    GetConfigHashes,
    EvaluatePush,
    StartPush,
    WaitForSchema,
    FinishPush,
    ReportPushCompleted,
}

pub(crate) fn step(rest: &str) -> Option<PushStep> {
    Some(match rest {
        "get_config_hashes" => PushStep::GetConfigHashes,
        "deploy2/evaluate_push" => PushStep::EvaluatePush,
        "deploy2/start_push" => PushStep::StartPush,
        "deploy2/wait_for_schema" => PushStep::WaitForSchema,
        "deploy2/finish_push" => PushStep::FinishPush,
        "deploy2/report_push_completed" => PushStep::ReportPushCompleted,
        _ => return None,
    })
}

fn push_error(error: PushError) -> ApiError {
    let code = match &error {
        PushError::Js(tickethub_js::JsError::Compile { .. }) => ErrorCode::ModuleCompileError,
        PushError::Js(tickethub_js::JsError::Evaluate { .. }) => ErrorCode::ModuleEvaluationError,
        PushError::Js(tickethub_js::JsError::Analysis(_)) => ErrorCode::ModuleAnalysisError,
        PushError::NameClash(_) => ErrorCode::PushNameClash,
        PushError::NoPendingPush => ErrorCode::NoPendingPush,
        PushError::Js(tickethub_js::JsError::Engine(_)) | PushError::Store(_) => {
            return ApiError::internal(format_args!("push: {error}"))
        }
    };
    ApiError::new(code, error.to_string())
}

/// The body, decompressed when the CLI sent it brotli-encoded.
async fn read_body(state: &AppState, request: Request<Incoming>) -> Result<Json, ApiError> {
    let (parts, body) = request.into_parts();
    let limit = *tickethub_knobs::JS_PUSH_BODY_LIMIT_BYTES;
    let bytes = read_limited(body, &parts.headers, limit, state.config.timeouts.body).await?;
    let brotli = parts
        .headers
        .get(http::header::CONTENT_ENCODING)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"br"));
    let text = if brotli {
        let mut out = Vec::new();
        brotli_decompressor::Decompressor::new(&bytes[..], 64 * 1024)
            .take(limit as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| {
                ApiError::new(
                    ErrorCode::BadRequest,
                    format!("The brotli body does not decompress: {e}"),
                )
            })?;
        if out.len() > limit {
            return Err(ApiError::new(
                ErrorCode::BodyTooLarge,
                format!("The push is larger than {limit} bytes once decompressed (TICKETHUB_JS_PUSH_BODY_LIMIT_BYTES)."),
            ));
        }
        out
    } else {
        bytes.to_vec()
    };
    serde_json::from_slice(&text).map_err(|e| {
        ApiError::new(
            ErrorCode::BadJsonBody,
            format!("The push body is not JSON: {e}"),
        )
    })
}

/// These endpoints carry the admin key in the body (`adminKey`); the header may be absent.
fn admin_headers(headers: &HeaderMap, body: &Json) -> HeaderMap {
    let mut headers = headers.clone();
    if !headers.contains_key(http::header::AUTHORIZATION) {
        if let Some(value) = body
            .get("adminKey")
            .and_then(Json::as_str)
            .and_then(|key| HeaderValue::from_str(&format!("Convex {key}")).ok())
        {
            headers.insert(http::header::AUTHORIZATION, value);
        }
    }
    headers
}

pub(crate) async fn handle(
    state: &AppState,
    request: Request<Incoming>,
    step: PushStep,
) -> Result<Response<ResponseBody>, ApiError> {
    let headers = request.headers().clone();
    let body = read_body(state, request).await?;
    crate::cli::require_admin(state, &admin_headers(&headers, &body)).await?;
    let answer = match step {
        PushStep::GetConfigHashes => config_hashes(state),
        PushStep::EvaluatePush => {
            // The modules are analyzed again by start_push; here only the shape matters.
            json!({"schemaChange": empty_schema_change()})
        }
        PushStep::StartPush => start_push(state, &body).await?,
        PushStep::WaitForSchema => json!({"type": "complete"}),
        PushStep::FinishPush => finish_push(state, &body).await?,
        PushStep::ReportPushCompleted => Json::Null,
    };
    Ok(json_response(
        StatusCode::OK,
        answer.to_string().into_bytes(),
    ))
}

/// No module hashes: the CLI then sends every module on each push, which keeps the server
/// free of partial pushes to merge.
fn config_hashes(_state: &AppState) -> Json {
    json!({
        "config": {"functions": "convex/"},
        "moduleHashes": [],
        "udfServerVersion": UDF_SERVER_VERSION,
        "nodeVersion": null,
    })
}

fn empty_schema_change() -> Json {
    json!({"allocatedComponentIds": {}, "schemaIds": {}, "indexDiffs": {"": {"added_indexes": [], "removed_indexes": []}}})
}

fn not_supported(what: &str) -> ApiError {
    ApiError::new(
        ErrorCode::NotSupported,
        format!("{what} is not supported by tickethub yet."),
    )
}

/// The modules of a `start_push` body.
fn modules_of(body: &Json) -> Result<Vec<StoredModule>, ApiError> {
    if body
        .get("componentDefinitions")
        .and_then(Json::as_array)
        .is_some_and(|c| !c.is_empty())
    {
        return Err(not_supported(
            "Components (`convex.config.ts` with `app.use(...)`)",
        ));
    }
    let app = body
        .get("appDefinition")
        .ok_or_else(|| ApiError::new(ErrorCode::BadRequest, "The push has no `appDefinition`."))?;
    let mut modules: Vec<StoredModule> = Vec::new();
    let listed = app
        .get("changedModules")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
        .chain(app.get("schema").filter(|s| !s.is_null()));
    for module in listed {
        let path = module.get("path").and_then(Json::as_str);
        let source = module.get("source").and_then(Json::as_str);
        let (Some(path), Some(source)) = (path, source) else {
            return Err(ApiError::new(
                ErrorCode::BadRequest,
                "A pushed module has no `path` or `source`.",
            ));
        };
        if module.get("environment").and_then(Json::as_str) == Some("node") {
            return Err(not_supported(&format!(
                "The Node.js module `{path}` (\"use node\")"
            )));
        }
        if !modules.iter().any(|m| m.path == path) {
            modules.push(StoredModule {
                path: path.to_string(),
                source: source.to_string(),
            });
        }
    }
    Ok(modules)
}

async fn start_push(state: &AppState, body: &Json) -> Result<Json, ApiError> {
    let modules = modules_of(body)?;
    let pushes = state.pushes.clone();
    let prepared = tokio::task::spawn_blocking(move || pushes.prepare(modules))
        .await
        .map_err(|e| ApiError::internal(format_args!("push analysis panicked: {e}")))?
        .map_err(push_error)?;
    let analysis = &prepared.analysis;
    let schema = analysis.schema.clone().unwrap_or(Json::Null);
    let now_ms = state.runtime.now_ms() as i64;
    let engine = base64::engine::general_purpose::STANDARD;
    Ok(json!({
        "environmentVariables": state.runtime.deployment_env_vars(),
        "externalDepsId": null,
        "componentDefinitionPackages": {},
        "appAuth": [],
        "analysis": {"": {
            "definition": {"path": "", "definitionType": {"type": "app"}, "childComponents": [],
                           "httpMounts": {}, "exports": {"type": "branch", "branch": []}},
            "schema": schema,
            "functions": analysis.functions_json(),
            "udfConfig": {
                "serverVersion": UDF_SERVER_VERSION,
                "importPhaseRngSeed": {"$bytes": engine.encode([0u8; 32])},
                "importPhaseUnixTimestamp": {"$integer": engine.encode(now_ms.to_le_bytes())},
            },
        }},
        "app": {"definitionPath": "", "componentPath": "", "args": {}, "childComponents": {},
                "httpRoutes": {"httpModuleRoutes": null, "mounts": []}, "exports": {}},
        "schemaChange": empty_schema_change(),
        "tickethubPushId": prepared.id,
    }))
}

async fn finish_push(state: &AppState, body: &Json) -> Result<Json, ApiError> {
    let dry_run = body.get("dryRun").and_then(Json::as_bool).unwrap_or(false);
    let id = body
        .get("startPush")
        .and_then(|s| s.get("tickethubPushId"))
        .and_then(Json::as_u64);
    if !dry_run {
        state.pushes.commit(id).await.map_err(push_error)?;
    }
    Ok(
        json!({"authDiff": {"added": [], "removed": []}, "definitionDiffs": {}, "componentDiffs": {}}),
    )
}
