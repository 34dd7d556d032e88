//! Snapshot export and import over HTTP, as `npx convex export` / `npx convex import` call them
//! (the CLI spec, §6). Every route needs the admin key.
//!
//! - `POST /api/export/request/zip?includeStorage=true|false` → 200; the ZIP is written in the
//!   background and `_system/cli/exports:getLatest` follows it.
//! - `GET /api/export/zip/<start_ts or _exports id>` → the ZIP, streamed from disk.
//! - `POST /api/import/start_upload` → `{"uploadToken"}`;
//!   `POST /api/import/upload_part?uploadToken=&partNumber=` (raw bytes) → `"<part token>"`;
//!   `POST /api/import/finish_upload` → `{"importId"}`.
//! - `POST /api/perform_import {"importId"}`, `POST /api/cancel_import {"importId"}` → 200 `{}`.
//! - The legacy one-shot `POST /api/import` and `export/set_expiration|cancel` answer 400
//!   `NotSupported` at once (a 404 would make the CLI retry for a minute).

use std::sync::Arc;

use http::{header, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::Deserialize;
use tickethub_runtime::snapshot::{ImportFormat, ImportMode, IncludeStorage, SnapshotError};

use crate::body::{parse_json, read_api_body, read_limited};
use crate::credentials::require_admin;
use crate::error::{json_response, ApiError, ErrorCode};
use crate::storage::{query_param, stream_file};
use crate::{AppState, ResponseBody};

/// The routes this module serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route<'a> {
    RequestExport,
    DownloadExport(&'a str),
    StartUpload,
    UploadPart,
    FinishUpload,
    PerformImport,
    CancelImport,
    /// A CLI path tickethub does not implement.
    Unsupported(&'static str),
}

fn route(path: &str) -> Option<Route<'_>> {
    let rest = path.strip_prefix("/api/")?;
    Some(match rest {
        "export/request/zip" => Route::RequestExport,
        "import/start_upload" => Route::StartUpload,
        "import/upload_part" => Route::UploadPart,
        "import/finish_upload" => Route::FinishUpload,
        "perform_import" => Route::PerformImport,
        "cancel_import" => Route::CancelImport,
        "import" => Route::Unsupported(
            "The one-shot /api/import is not supported by tickethub; `npx convex import` uses the upload protocol, which is.",
        ),
        _ => {
            if let Some(id) = rest.strip_prefix("export/zip/") {
                Route::DownloadExport(id)
            } else if rest.starts_with("export/set_expiration/") || rest.starts_with("export/cancel/") {
                Route::Unsupported(
                    "Changing an export's expiration or canceling it is not supported by tickethub.",
                )
            } else {
                return None;
            }
        }
    })
}

/// Whether `path` is one of this module's.
pub fn is_snapshot_path(path: &str) -> bool {
    route(path).is_some()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ImportIdBody {
    import_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FinishUploadBody {
    import: ImportSpec,
    upload_token: String,
    part_tokens: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ImportSpec {
    table_name: Option<String>,
    component_path: Option<String>,
    mode: String,
    format: String,
}

/// A snapshot failure as the client sees it: its stable code, and the text unless internal.
fn snapshot_error(e: SnapshotError) -> ApiError {
    let code = match &e {
        SnapshotError::InvalidImport(_) | SnapshotError::RowRefused { .. } => {
            ErrorCode::InvalidImport
        }
        SnapshotError::UnsafePath(_) => ErrorCode::UnsafeZipPath,
        SnapshotError::TooLarge { .. } => ErrorCode::ImportTooLarge,
        SnapshotError::UnknownTable(_) => ErrorCode::ImportTableNotFound,
        SnapshotError::TableNotEmpty { .. } => ErrorCode::ImportTableNotEmpty,
        SnapshotError::NotFound(_) => ErrorCode::ImportNotFound,
        SnapshotError::WrongState(_) => ErrorCode::ImportWrongState,
        SnapshotError::ExportInProgress => ErrorCode::ExportInProgress,
        SnapshotError::BadUpload(_) => ErrorCode::BadImportUpload,
        SnapshotError::Store(se) => match ErrorCode::for_failed_function(se.code()) {
            Some(code) => code,
            None => return ApiError::internal(&e),
        },
        SnapshotError::Io(_) => return ApiError::internal(&e),
    };
    ApiError::new(code, e.to_string())
}

fn empty_ok() -> Response<ResponseBody> {
    json_response(StatusCode::OK, b"{}".to_vec())
}

/// Handle a request whose path [`is_snapshot_path`].
pub async fn handle(
    state: Arc<AppState>,
    request: Request<Incoming>,
) -> Result<Response<ResponseBody>, ApiError> {
    let uri = request.uri().clone();
    let Some(route) = route(uri.path()) else {
        return Err(crate::api::not_found(uri.path()));
    };
    if let Route::Unsupported(message) = route {
        return Err(ApiError::new(ErrorCode::NotSupported, message));
    }
    let wanted = match route {
        Route::DownloadExport(_) => Method::GET,
        _ => Method::POST,
    };
    if request.method() != wanted {
        return Err(ApiError::new(
            ErrorCode::MethodNotAllowed,
            format!("Use {wanted} for {}.", uri.path()),
        ));
    }
    require_admin(
        request.headers(),
        state.authenticator.as_ref(),
        "Snapshot export and import need the admin key (Authorization: Convex <admin key>).",
    )
    .await?;
    let service = state.snapshots.clone();
    let query = uri.query();
    let (parts, body) = request.into_parts();
    match route {
        Route::RequestExport => {
            let storage = match query_param(query, "includeStorage") {
                Some("true") => IncludeStorage::Yes,
                _ => IncludeStorage::No,
            };
            if query_param(query, "component").is_some_and(|c| !c.is_empty()) {
                return Err(ApiError::new(
                    ErrorCode::NotSupported,
                    "Components are not supported by tickethub.",
                ));
            }
            service
                .request_export(storage)
                .await
                .map_err(snapshot_error)?;
            Ok(empty_ok())
        }
        Route::DownloadExport(id) => {
            let id = id.to_string();
            let svc = service.clone();
            let export = tokio::task::spawn_blocking(move || svc.export_file(&id))
                .await
                .map_err(ApiError::internal)?
                .map_err(|e| match e {
                    SnapshotError::NotFound(id) => ApiError::new(
                        ErrorCode::ExportNotFound,
                        format!("No export with id \"{id}\"."),
                    ),
                    SnapshotError::WrongState(m) => ApiError::new(ErrorCode::ExportNotComplete, m),
                    other => snapshot_error(other),
                })?;
            let name = format!(
                "attachment; filename=snapshot_{}_{}.zip",
                state.config.deployment_name, export.ts
            );
            Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, "application/zip")
                .header(header::CONTENT_LENGTH, export.size)
                .header(header::CONTENT_DISPOSITION, name)
                .header(header::CACHE_CONTROL, "private, max-age=2592000")
                .body(ResponseBody::streamed(
                    stream_file(export.file, 0, export.size),
                    export.size,
                ))
                .map_err(ApiError::internal)
        }
        Route::StartUpload => {
            let token = service.start_upload().map_err(snapshot_error)?;
            Ok(json_response(
                StatusCode::OK,
                serde_json::json!({ "uploadToken": token })
                    .to_string()
                    .into_bytes(),
            ))
        }
        Route::UploadPart => {
            let token = query_param(query, "uploadToken")
                .map(|t| {
                    form_urlencoded::parse(format!("t={t}").as_bytes())
                        .next()
                        .map(|(_, v)| v.into_owned())
                        .unwrap_or_default()
                })
                .ok_or_else(|| {
                    ApiError::new(ErrorCode::BadImportUpload, "uploadToken is missing.")
                })?;
            let part: u32 = query_param(query, "partNumber")
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| {
                    ApiError::new(
                        ErrorCode::BadImportUpload,
                        "partNumber must be a number between 1 and 9999.",
                    )
                })?;
            let bytes = read_limited(
                body,
                &parts.headers,
                *tickethub_knobs::IMPORT_MAX_PART_BYTES,
                state.config.timeouts.body,
            )
            .await?;
            let svc = service.clone();
            let part_token =
                tokio::task::spawn_blocking(move || svc.upload_part(&token, part, &bytes))
                    .await
                    .map_err(ApiError::internal)?
                    .map_err(snapshot_error)?;
            Ok(json_response(
                StatusCode::OK,
                serde_json::Value::String(part_token)
                    .to_string()
                    .into_bytes(),
            ))
        }
        Route::FinishUpload => {
            let bytes = read_api_body(&state, &parts.headers, body).await?;
            let finish: FinishUploadBody = parse_json(&bytes)?;
            if finish
                .import
                .component_path
                .as_deref()
                .is_some_and(|c| !c.is_empty())
            {
                return Err(ApiError::new(
                    ErrorCode::NotSupported,
                    "Components are not supported by tickethub.",
                ));
            }
            let format = ImportFormat::parse(&finish.import.format).ok_or_else(|| {
                ApiError::new(
                    ErrorCode::InvalidImport,
                    format!(
                        "Unknown import format \"{}\"; use zip, jsonLines, jsonArray or csv.",
                        finish.import.format
                    ),
                )
            })?;
            let mode = ImportMode::parse(&finish.import.mode).ok_or_else(|| {
                ApiError::new(
                    ErrorCode::InvalidImport,
                    format!(
                        "Unknown import mode \"{}\"; use requireEmpty, append, replace or replaceAll.",
                        finish.import.mode
                    ),
                )
            })?;
            let id = service
                .finish_upload(
                    &finish.upload_token,
                    &finish.part_tokens,
                    format,
                    mode,
                    finish.import.table_name,
                )
                .await
                .map_err(snapshot_error)?;
            Ok(json_response(
                StatusCode::OK,
                serde_json::json!({ "importId": id })
                    .to_string()
                    .into_bytes(),
            ))
        }
        Route::PerformImport | Route::CancelImport => {
            let bytes = read_api_body(&state, &parts.headers, body).await?;
            let request: ImportIdBody = parse_json(&bytes)?;
            match route {
                Route::PerformImport => service.perform_import(&request.import_id).await,
                _ => service.cancel_import(&request.import_id).await,
            }
            .map_err(snapshot_error)?;
            Ok(empty_ok())
        }
        Route::Unsupported(_) => unreachable!("answered above"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_decided_from_the_path() {
        assert_eq!(route("/api/export/request/zip"), Some(Route::RequestExport));
        assert_eq!(
            route("/api/export/zip/123"),
            Some(Route::DownloadExport("123"))
        );
        assert_eq!(route("/api/import/upload_part"), Some(Route::UploadPart));
        assert!(matches!(route("/api/import"), Some(Route::Unsupported(_))));
        assert!(matches!(
            route("/api/export/cancel/1"),
            Some(Route::Unsupported(_))
        ));
        assert_eq!(route("/api/query"), None);
    }
}
