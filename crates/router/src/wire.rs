//! Wire shapes of `/api/*`: request bodies, value formats, response bodies, timestamps.

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use tickethub_runtime::{CallResult, RequestId};
use tickethub_store::Timestamp;
use tickethub_value::Value;

use crate::error::{ApiError, ErrorCode};

/// How values are encoded in a request's args and its response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `convex_encoded_json` (alias `convex_json`): lossless, `$integer`/`$float`/`$bytes`.
    ConvexEncoded,
    /// `json` (alias `convex_clean_json`): plain JSON, lossy.
    Clean,
}

impl Format {
    /// `None` (absent) means `json`, as in Convex's public HTTP API.
    pub fn parse(name: Option<&str>) -> Result<Format, ApiError> {
        match name {
            None | Some("json") | Some("convex_clean_json") => Ok(Format::Clean),
            Some("convex_encoded_json") | Some("convex_json") => Ok(Format::ConvexEncoded),
            Some(other) => Err(ApiError::new(
                ErrorCode::BadFormat,
                format!(
                    "Unknown format \"{}\": use \"convex_encoded_json\" or \"json\".",
                    truncate(other, 64)
                ),
            )),
        }
    }

    pub fn decode(self, json: &serde_json::Value) -> Result<Value, ApiError> {
        let decoded = match self {
            Format::ConvexEncoded => Value::from_convex_json(json),
            Format::Clean => Value::from_clean_json(json),
        };
        decoded.map_err(|e| {
            ApiError::new(
                ErrorCode::InvalidValue,
                format!("Invalid function arguments: {e}"),
            )
        })
    }

    pub fn encode(self, value: &Value) -> serde_json::Value {
        match self {
            Format::ConvexEncoded => value.to_convex_json(),
            Format::Clean => value.to_clean_json(),
        }
    }
}

fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((i, _)) => &text[..i],
        None => text,
    }
}

/// Body of `/api/query`, `/api/mutation`, `/api/action`, `/api/query_at_ts`, `/api/function` and
/// each entry of `/api/query_batch`. Unknown fields are ignored.
#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct CallBody {
    pub path: Option<String>,
    #[serde(default)]
    pub args: serde_json::Value,
    pub format: Option<String>,
    /// `/api/query_at_ts` only.
    pub ts: Option<String>,
    /// `/api/function` only; components are not supported, so it must be empty.
    pub component_path: Option<String>,
}

impl CallBody {
    pub fn path(&self) -> Result<&str, ApiError> {
        match self.path.as_deref() {
            Some(p) if !p.is_empty() => Ok(p),
            _ => Err(ApiError::new(
                ErrorCode::MissingPath,
                "The request body has no function \"path\".",
            )),
        }
    }
}

/// Body of `/api/run/<path>`.
#[derive(Deserialize, Debug)]
pub struct RunBody {
    #[serde(default)]
    pub args: serde_json::Value,
    pub format: Option<String>,
}

#[derive(Deserialize, Debug)]
pub struct BatchBody {
    pub queries: Vec<CallBody>,
}

#[derive(Deserialize, Debug)]
pub struct AdvanceTimeBody {
    pub ms: f64,
}

/// How `args` may be wrapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgsShape {
    /// `/api/query` etc.: `[obj]` (legacy positional form) or a plain object.
    ArrayOrObject,
    /// `/api/function`, `/api/run`: the object itself.
    Object,
}

/// Turn the wire `args` into the args object. Absent (`null`) means `{}`.
pub fn unwrap_args(
    args: &serde_json::Value,
    shape: ArgsShape,
    format: Format,
) -> Result<Value, ApiError> {
    let empty = serde_json::Value::Object(Default::default());
    let object = match (args, shape) {
        (serde_json::Value::Null, _) => &empty,
        (serde_json::Value::Array(items), ArgsShape::ArrayOrObject) => match items.as_slice() {
            [] => &empty,
            [one] => one,
            _ => {
                return Err(ApiError::new(
                    ErrorCode::BadRequest,
                    "\"args\" must be an array holding one object, or an object.",
                ))
            }
        },
        (other, _) => other,
    };
    if !object.is_object() {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            "Function arguments must be an object.",
        ));
    }
    format.decode(object)
}

/// `/api/query_ts` answers `{"ts": "<base64 of u64 LE>"}`.
pub fn encode_ts(ts: Timestamp) -> String {
    base64::engine::general_purpose::STANDARD.encode(ts.0.to_le_bytes())
}

pub fn decode_ts(text: &str) -> Result<Timestamp, ApiError> {
    let bad = || {
        ApiError::new(
            ErrorCode::BadRequest,
            "\"ts\" must be a timestamp returned by /api/query_ts.",
        )
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|_| bad())?;
    let bytes: [u8; 8] = bytes.try_into().map_err(|_| bad())?;
    Ok(Timestamp(u64::from_le_bytes(bytes)))
}

/// A function's outcome as the client sees it, or a system error when the failure is internal.
#[derive(Serialize)]
#[serde(tag = "status", rename_all = "camelCase")]
pub enum FunctionResponse {
    Success {
        value: serde_json::Value,
        #[serde(rename = "logLines")]
        log_lines: Vec<String>,
    },
    Error {
        #[serde(rename = "errorMessage")]
        error_message: String,
        #[serde(rename = "errorData", skip_serializing_if = "Option::is_none")]
        error_data: Option<serde_json::Value>,
        #[serde(rename = "logLines")]
        log_lines: Vec<String>,
    },
}

impl FunctionResponse {
    /// `Err` when the function failed for an internal reason: that becomes a 500 with the
    /// request's id, and its details go to the log only.
    pub fn from_call(
        result: CallResult,
        format: Format,
        request_id: &RequestId,
    ) -> Result<FunctionResponse, ApiError> {
        let log_lines = result.log_lines;
        match result.outcome {
            Ok(value) => Ok(FunctionResponse::Success {
                value: format.encode(&value),
                log_lines,
            }),
            // Thrown errors and validation failures are shown; storage failures and bugs are not.
            Err(error) if error.is_user_visible() => {
                let error_data = error.data().map(|data| format.encode(data));
                Ok(FunctionResponse::Error {
                    error_message: error.to_string(),
                    error_data,
                    log_lines,
                })
            }
            // Overload, a full disk, shutdown: the client gets the code and a plain message (their
            // texts carry no SQL or paths); the details are logged.
            Err(error) => match ErrorCode::for_failed_function(error.code()) {
                Some(code) => {
                    tracing::warn!(code = error.code(), request_id = %request_id, error = ?error, "function refused");
                    Err(ApiError::new(code, error.to_string()))
                }
                None => Err(ApiError::internal_for(
                    request_id,
                    format_args!("function failed [{}]: {error}", error.code()),
                )),
            },
        }
    }
}
