//! Reading request bodies within a size limit, and parsing them as JSON.

use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use serde::de::DeserializeOwned;

use crate::error::{ApiError, ErrorCode};

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        ErrorCode::BodyTooLarge,
        format!(
            "The request body is larger than the limit of {} MiB.",
            limit / (1024 * 1024)
        ),
    )
}

/// Most bytes of a refused body read (and thrown away) so the client can finish sending and read
/// the 413; past this the connection is simply closed.
pub(crate) const DRAIN_MAX_BYTES: u64 = 64 * 1024 * 1024;
/// Longest time spent draining a refused body.
const DRAIN_MAX_TIME: Duration = Duration::from_secs(10);

/// The 408 for a body that did not arrive in time (`what` names it: "request body", "upload").
pub(crate) fn read_timeout(what: &str, waited: Duration) -> ApiError {
    ApiError::new(
        ErrorCode::BodyReadTimeout,
        format!(
            "The {what} did not arrive in time (the server waited {} ms); send it without pausing.",
            waited.as_millis()
        ),
    )
}

/// [`read_limited`] for a JSON API body: the server's API size limit and body read deadline.
pub(crate) async fn read_api_body(
    state: &crate::state::AppState,
    headers: &HeaderMap,
    body: Incoming,
) -> Result<Bytes, ApiError> {
    read_limited(
        body,
        headers,
        state.config.limits.api,
        state.config.timeouts.body,
    )
    .await
}

/// Read the whole body, refusing anything over `limit` bytes or slower than `deadline`. A
/// declared `Content-Length` over the limit is refused before a byte of the body is read; a body
/// without one is counted as it streams in (`http_body_util::Limited`), so an oversized body is
/// never held in memory whole. The deadline keeps a client that trickles its body from holding a
/// task and a buffer for as long as it likes.
pub async fn read_limited(
    mut body: Incoming,
    headers: &HeaderMap,
    limit: usize,
    deadline: Duration,
) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(len) = declared.filter(|len| *len > limit as u64) {
        drain_in_background(body, len);
        return Err(too_large(limit));
    }
    // `Limited` counts the bytes as they stream in; borrowing the body keeps it for draining.
    let Ok(collected) =
        tokio::time::timeout(deadline, Limited::new(&mut body, limit).collect()).await
    else {
        return Err(read_timeout("request body", deadline));
    };
    match collected {
        // One frame (the usual case) comes back without a copy.
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<LengthLimitError>() => {
            drain_in_background(body, DRAIN_MAX_BYTES);
            Err(too_large(limit))
        }
        Err(error) => Err(ApiError::new(
            ErrorCode::BadRequest,
            format!("Could not read the request body: {error}"),
        )),
    }
}

/// Read and discard the rest of a refused body (bounded in bytes and time). If the server closed
/// the connection with the client still sending, the client would see a reset instead of the 413.
pub(crate) fn drain_in_background(mut body: Incoming, expected: u64) {
    if expected > DRAIN_MAX_BYTES {
        return;
    }
    tokio::spawn(async move {
        let drain = async {
            let mut seen = 0u64;
            while let Some(Ok(frame)) = body.frame().await {
                if let Some(data) = frame.data_ref() {
                    seen += data.len() as u64;
                    if seen > DRAIN_MAX_BYTES {
                        return;
                    }
                }
            }
        };
        let _ = tokio::time::timeout(DRAIN_MAX_TIME, drain).await;
    });
}

/// Parse a JSON body into `T`. serde_json stops at 128 levels of nesting, so a hostile deeply
/// nested body is a clear 400, never a stack overflow.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        let message = if e.to_string().starts_with("recursion limit exceeded") {
            format!(
                "The request body is nested too deeply (more than 128 levels) at line {} column {}.",
                e.line(),
                e.column()
            )
        } else {
            match e.classify() {
                serde_json::error::Category::Data => format!("The request body has the wrong shape: {e}"),
                _ => format!("The request body is not valid JSON: {e}"),
            }
        };
        ApiError::new(ErrorCode::BadJsonBody, message)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_nesting_is_a_clear_error() {
        let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
        let e = parse_json::<serde_json::Value>(deep.as_bytes()).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadJsonBody);
        assert!(e.message.contains("nested too deeply"), "{}", e.message);
    }

    #[test]
    fn syntax_and_shape_errors() {
        let e = parse_json::<serde_json::Value>(b"{not json").unwrap_err();
        assert!(
            e.message.starts_with("The request body is not valid JSON"),
            "{}",
            e.message
        );
        let e = parse_json::<crate::wire::BatchBody>(b"{\"queries\": 5}").unwrap_err();
        assert!(
            e.message
                .starts_with("The request body has the wrong shape"),
            "{}",
            e.message
        );
    }
}
