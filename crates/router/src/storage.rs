//! File storage over HTTP, with Convex's paths:
//!
//! - `POST /api/storage/upload?token=…`: the raw body is the file (`Content-Type` kept as its
//!   type; an optional `Digest: sha-256=<base64>` is checked). Streamed to disk as it arrives,
//!   so memory stays flat whatever the size. Answers `{"storageId": "<_storage id>"}`.
//! - `GET|HEAD /api/storage/<uuid>`: no auth; the file with `Content-Type`, `Content-Length`,
//!   `ETag` (its SHA-256), `Digest`, immutable caching, and a single `Range` (206, or 416).
//!
//! Every refusal is 4xx with a stable code and leaves nothing behind: a bad token is refused
//! before a byte of the body is read; an oversized or interrupted body's temp file is removed.

use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tickethub_runtime::storage::{parse_uuid, ServedFile, Sha256};
use tickethub_runtime::{FileStorage, StorageError};
use tokio::sync::mpsc;

use crate::body::{drain_in_background, read_timeout, DRAIN_MAX_BYTES};
use crate::error::{json_response, ApiError, ErrorCode};
use crate::{AppState, ResponseBody};

const PREFIX: &str = "/api/storage/";
/// Bytes read from disk per chunk when serving a file.
const SERVE_CHUNK_BYTES: usize = 256 * 1024;
/// Chunks queued between the disk reader and the connection (bounds memory per download).
const SERVE_QUEUE_CHUNKS: usize = 4;

pub(crate) fn is_storage_path(path: &str) -> bool {
    path == "/api/storage" || path.starts_with(PREFIX)
}

pub(crate) async fn handle(
    state: Arc<AppState>,
    request: Request<Incoming>,
) -> Response<ResponseBody> {
    let Some(storage) = state.runtime.file_storage() else {
        return ApiError::new(
            ErrorCode::NotFound,
            "File storage is not configured on this server.",
        )
        .into_response();
    };
    let rest = request
        .uri()
        .path()
        .strip_prefix(PREFIX)
        .unwrap_or("")
        .to_string();
    let method = request.method().clone();
    let result = match (rest.as_str(), &method) {
        ("upload", &Method::POST) => {
            upload(storage, request, state.config.timeouts.upload_stall).await
        }
        ("upload", _) => Err(ApiError::new(
            ErrorCode::MethodNotAllowed,
            "Upload a file with POST to the URL generateUploadUrl gave.",
        )),
        (_, &Method::GET) | (_, &Method::HEAD) => {
            match serve(storage, request.headers(), &rest, method == Method::HEAD).await {
                Err(Unserved::BytesElsewhere) if crate::cluster::relays_writes(&state) => {
                    // A cluster follower: the bytes are on the disk of the node that led when
                    // they were uploaded; ask the leader.
                    let target = request
                        .uri()
                        .path_and_query()
                        .map(|pq| pq.as_str().to_string())
                        .unwrap_or_default();
                    let (parts, _) = request.into_parts();
                    return crate::cluster::relay(
                        &state,
                        parts,
                        crate::cluster::empty_body(),
                        &target,
                    )
                    .await;
                }
                Err(Unserved::BytesElsewhere) => Err(ApiError::internal(
                    "a stored file's row is there but its blob is missing from the disk",
                )),
                Err(Unserved::Refused(e)) => Err(e),
                Ok(response) => Ok(response),
            }
        }
        _ => Err(ApiError::new(
            ErrorCode::MethodNotAllowed,
            "Read a stored file with GET.",
        )),
    };
    result.unwrap_or_else(ApiError::into_response)
}

fn storage_error(e: StorageError) -> ApiError {
    let code = match &e {
        StorageError::InvalidUploadToken => ErrorCode::InvalidUploadToken,
        StorageError::UploadUrlExpired => ErrorCode::UploadUrlExpired,
        StorageError::UploadUrlUsed => ErrorCode::UploadUrlUsed,
        StorageError::TooLarge { .. } => ErrorCode::FileTooLarge,
        StorageError::Sha256Mismatch => ErrorCode::Sha256Mismatch,
        StorageError::Interrupted => ErrorCode::BadRequest,
        StorageError::NotConfigured => ErrorCode::NotFound,
        StorageError::Store(se) if se.code() == "ShuttingDown" => ErrorCode::ShuttingDown,
        // The database's disk or the blobs' (the same data dir): 507, a plain message; the OS
        // error goes to the log.
        _ if e.code() == "StorageFull" => {
            tracing::warn!(error = %e, "upload refused: the disk is full");
            return ApiError::new(
                ErrorCode::StorageFull,
                "The disk holding this deployment's data is full; uploads fail until space is freed.",
            );
        }
        // The database's refusals (Postgres unreachable, the writer lease elsewhere) keep their
        // code and plain message, as they do for function calls.
        StorageError::Store(se) => match ErrorCode::for_failed_function(se.code()) {
            Some(code) => {
                tracing::warn!(error = %e, "storage request refused");
                return ApiError::new(code, se.to_string());
            }
            None => return ApiError::internal(e),
        },
        StorageError::Blob(_) | StorageError::BlobMissing { .. } => return ApiError::internal(e),
    };
    ApiError::new(code, e.to_string())
}

pub(crate) fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// The `sha-256=` entry of a `Digest` header (RFC 3230), if any.
fn expected_digest(headers: &HeaderMap) -> Result<Option<Sha256>, ApiError> {
    let bad = || {
        ApiError::new(
            ErrorCode::InvalidDigestHeader,
            "The Digest header's sha-256 value must be the base64 of 32 bytes: `Digest: sha-256=<base64>`.",
        )
    };
    let Some(value) = headers.get("digest") else {
        return Ok(None);
    };
    let text = value.to_str().map_err(|_| bad())?;
    for entry in text.split(',') {
        if let Some((algorithm, encoded)) = entry.trim().split_once('=') {
            if algorithm.trim().eq_ignore_ascii_case("sha-256") {
                return Sha256::from_base64(encoded).map(Some).ok_or_else(bad);
            }
        }
    }
    Ok(None)
}

/// Stream an upload to disk. There is no total deadline (a 1 GiB file over a slow link may
/// rightly take long), but a body that stops moving for `stall` is refused with
/// `BodyReadTimeout`; dropping the sink then removes the partial file.
async fn upload(
    storage: FileStorage,
    request: Request<Incoming>,
    stall: Duration,
) -> Result<Response<ResponseBody>, ApiError> {
    let token = query_param(request.uri().query(), "token").unwrap_or("");
    let grant = storage.check_upload_token(token).map_err(storage_error)?;
    let (parts, mut body) = request.into_parts();
    let limit = storage.max_upload_bytes();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(len) = declared.filter(|len| *len > limit) {
        drain_in_background(body, len);
        return Err(storage_error(StorageError::TooLarge { limit }));
    }
    let digest = expected_digest(&parts.headers)?;
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_string);
    let mut sink = storage.start_upload(grant).map_err(storage_error)?;
    loop {
        let Ok(frame) = tokio::time::timeout(stall, body.frame()).await else {
            return Err(read_timeout("upload", stall));
        };
        let Some(frame) = frame else {
            break;
        };
        let frame = frame.map_err(|e| {
            ApiError::new(
                ErrorCode::BadRequest,
                format!("Could not read the upload body: {e}"),
            )
        })?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if let Err(e) = sink.write(data).await {
            if matches!(e, StorageError::TooLarge { .. }) {
                drain_in_background(body, DRAIN_MAX_BYTES);
            }
            return Err(storage_error(e));
        }
    }
    let storage_id = sink
        .finish(content_type, digest)
        .await
        .map_err(storage_error)?;
    let body = serde_json::json!({ "storageId": storage_id }).to_string();
    Ok(json_response(StatusCode::OK, body.into_bytes()))
}

/// What a `Range` header asks of a file of `size` bytes.
#[derive(Debug, PartialEq, Eq)]
enum RangeRequest {
    /// No (usable) `Range`: the whole file.
    Whole,
    /// `start..=end`, inclusive, within the file.
    Part {
        start: u64,
        end: u64,
    },
    Unsatisfiable,
}

/// One `bytes=` range (`a-b`, `a-`, `-n`). Several ranges are refused as Convex does; a header
/// that is not a byte range is ignored (RFC 9110: the whole file).
fn parse_range(value: Option<&HeaderValue>, size: u64) -> RangeRequest {
    let Some(text) = value.and_then(|v| v.to_str().ok()) else {
        return RangeRequest::Whole;
    };
    let Some(spec) = text.trim().strip_prefix("bytes=") else {
        return RangeRequest::Whole;
    };
    if spec.contains(',') {
        return RangeRequest::Unsatisfiable;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeRequest::Whole;
    };
    let number = |s: &str| -> Option<Option<u64>> {
        let s = s.trim();
        if s.is_empty() {
            Some(None)
        } else if s.bytes().all(|b| b.is_ascii_digit()) {
            s.parse().ok().map(Some)
        } else {
            None
        }
    };
    let (Some(first), Some(last)) = (number(first), number(last)) else {
        return RangeRequest::Whole;
    };
    match (first, last) {
        (Some(start), _) if start >= size => RangeRequest::Unsatisfiable,
        (Some(start), Some(end)) if end < start => RangeRequest::Whole,
        (Some(start), Some(end)) => RangeRequest::Part {
            start,
            end: end.min(size - 1),
        },
        (Some(start), None) => RangeRequest::Part {
            start,
            end: size - 1,
        },
        (None, Some(0)) => RangeRequest::Unsatisfiable,
        (None, Some(_)) if size == 0 => RangeRequest::Unsatisfiable,
        (None, Some(suffix)) => RangeRequest::Part {
            start: size.saturating_sub(suffix),
            end: size - 1,
        },
        (None, None) => RangeRequest::Whole,
    }
}

/// Why [`serve`] did not answer with the file.
enum Unserved {
    /// The file's row exists, its bytes are not on this node's disk.
    BytesElsewhere,
    Refused(ApiError),
}

impl From<ApiError> for Unserved {
    fn from(e: ApiError) -> Unserved {
        Unserved::Refused(e)
    }
}

async fn serve(
    storage: FileStorage,
    headers: &HeaderMap,
    uuid: &str,
    head_only: bool,
) -> Result<Response<ResponseBody>, Unserved> {
    if parse_uuid(uuid).is_none() {
        return Err(Unserved::Refused(ApiError::new(
            ErrorCode::InvalidStoragePath,
            "A stored file's URL is /api/storage/<uuid>, as getUrl gives it.",
        )));
    }
    let opened = {
        let storage = storage.clone();
        let uuid = uuid.to_string();
        match tokio::task::spawn_blocking(move || storage.open_file(&uuid))
            .await
            .map_err(ApiError::internal)?
        {
            Ok(opened) => opened,
            Err(StorageError::BlobMissing { storage_id }) => {
                tracing::debug!(%storage_id, "a stored file's bytes are not on this node");
                return Err(Unserved::BytesElsewhere);
            }
            Err(e) => return Err(storage_error(e).into()),
        }
    };
    Ok(respond(opened, headers, head_only)?)
}

/// The answer for an opened file (or its absence): headers, conditional and range requests.
fn respond(
    opened: Option<ServedFile>,
    headers: &HeaderMap,
    head_only: bool,
) -> Result<Response<ResponseBody>, ApiError> {
    let Some(ServedFile {
        file,
        size,
        sha256,
        content_type,
    }) = opened
    else {
        return Err(ApiError::new(
            ErrorCode::FileNotFound,
            "No stored file has this URL (it may have been deleted).",
        ));
    };
    let etag = format!("\"{}\"", sha256.to_hex());
    let mut builder = Response::builder()
        .header(header::ETAG, &etag)
        .header(header::CACHE_CONTROL, "private, max-age=2592000, immutable")
        .header(header::ACCEPT_RANGES, "bytes")
        .header("digest", format!("sha-256={}", sha256.to_base64()))
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .header(
            header::CONTENT_TYPE,
            content_type
                .as_deref()
                .unwrap_or("application/octet-stream"),
        );
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|tag| tag.trim() == etag || tag.trim() == "*")
        })
    {
        return builder
            .status(StatusCode::NOT_MODIFIED)
            .body(ResponseBody::default())
            .map_err(ApiError::internal);
    }
    let (status, start, length) = match parse_range(headers.get(header::RANGE), size) {
        RangeRequest::Whole => (StatusCode::OK, 0, size),
        RangeRequest::Part { start, end } => {
            builder = builder.header(header::CONTENT_RANGE, format!("bytes {start}-{end}/{size}"));
            (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
        }
        RangeRequest::Unsatisfiable => {
            let mut response = ApiError::new(
                ErrorCode::RangeNotSatisfiable,
                format!("The Range must name one byte range within the file's {size} bytes."),
            )
            .into_response();
            if let Ok(value) = HeaderValue::from_str(&format!("bytes */{size}")) {
                response.headers_mut().insert(header::CONTENT_RANGE, value);
            }
            return Ok(response);
        }
    };
    builder = builder
        .status(status)
        .header(header::CONTENT_LENGTH, length);
    let body = if head_only || length == 0 {
        ResponseBody::default()
    } else {
        ResponseBody::streamed(stream_file(file, start, length), length)
    };
    builder.body(body).map_err(ApiError::internal)
}

/// Read `length` bytes from `start` on a blocking thread, a chunk at a time, into a bounded
/// channel. The reader stops when the connection drops the receiver.
pub(crate) fn stream_file(
    mut file: std::fs::File,
    start: u64,
    length: u64,
) -> mpsc::Receiver<std::io::Result<Bytes>> {
    let (chunks, receiver) = mpsc::channel(SERVE_QUEUE_CHUNKS);
    tokio::task::spawn_blocking(move || {
        if let Err(e) = file.seek(SeekFrom::Start(start)) {
            let _ = chunks.blocking_send(Err(e));
            return;
        }
        let mut left = length;
        while left > 0 {
            let want = left.min(SERVE_CHUNK_BYTES as u64) as usize;
            let mut buf = vec![0u8; want];
            let read = match file.read(&mut buf) {
                Ok(0) => {
                    let _ = chunks.blocking_send(Err(std::io::Error::other(
                        "the stored file is shorter than its recorded size",
                    )));
                    return;
                }
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let _ = chunks.blocking_send(Err(e));
                    return;
                }
            };
            buf.truncate(read);
            left -= read as u64;
            if chunks.blocking_send(Ok(Bytes::from(buf))).is_err() {
                return;
            }
        }
    });
    receiver
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(text: &str, size: u64) -> RangeRequest {
        parse_range(Some(&HeaderValue::from_str(text).unwrap()), size)
    }

    #[test]
    fn ranges() {
        use RangeRequest::*;
        assert_eq!(parse_range(None, 10), Whole);
        assert_eq!(range("bytes=0-3", 10), Part { start: 0, end: 3 });
        assert_eq!(range("bytes=5-", 10), Part { start: 5, end: 9 });
        assert_eq!(range("bytes=-4", 10), Part { start: 6, end: 9 });
        assert_eq!(range("bytes=-40", 10), Part { start: 0, end: 9 });
        assert_eq!(range("bytes=8-100", 10), Part { start: 8, end: 9 });
        assert_eq!(range("bytes=10-", 10), Unsatisfiable);
        assert_eq!(range("bytes=0-1,4-5", 10), Unsatisfiable);
        assert_eq!(range("bytes=-0", 10), Unsatisfiable);
        assert_eq!(range("items=0-3", 10), Whole);
        assert_eq!(range("bytes=x-3", 10), Whole);
        assert_eq!(range("bytes=5-3", 10), Whole);
    }

    #[test]
    fn digest_header() {
        let mut headers = HeaderMap::new();
        assert!(expected_digest(&headers).unwrap().is_none());
        let sha = Sha256::of(b"x");
        headers.insert(
            "digest",
            HeaderValue::from_str(&format!("md5=abc, SHA-256={}", sha.to_base64())).unwrap(),
        );
        assert_eq!(expected_digest(&headers).unwrap(), Some(sha));
        headers.insert("digest", HeaderValue::from_static("sha-256=bm9wZQ=="));
        assert_eq!(
            expected_digest(&headers).unwrap_err().code,
            ErrorCode::InvalidDigestHeader
        );
    }
}
