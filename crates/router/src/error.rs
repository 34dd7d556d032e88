//! System errors of the HTTP surface and the one mapping from error codes to HTTP statuses.
//!
//! A *system* error is a problem with the request itself (bad JSON, bad header, unknown endpoint,
//! bad credentials) or an internal failure. It is answered with a non-2xx status and
//! `{"code": "ScreamingCamelCase", "message": "..."}`. A *function* error (the function threw) is
//! not one of these: it is a 200 `{"status": "error", ...}` built in [`crate::wire`].

use http::{header, HeaderValue, Response, StatusCode};
use tickethub_runtime::RequestId;

use crate::ResponseBody;

/// Every code the router itself can answer with. Exhaustive so that the status of each is decided
/// in one place ([`ErrorCode::status`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    /// The body is not JSON, is nested too deep, or has a field of the wrong type.
    BadJsonBody,
    /// The body has no `path`.
    MissingPath,
    /// Any other malformed request (args of the wrong shape, bad timestamp, bad path).
    BadRequest,
    /// `format` is not one of the known encodings.
    BadFormat,
    /// The body is larger than the endpoint allows.
    BodyTooLarge,
    /// The body did not arrive within `HTTP_BODY_READ_TIMEOUT` (an upload: it paused longer than
    /// `HTTP_UPLOAD_STALL_TIMEOUT`). The connection is closed after the answer.
    BodyReadTimeout,
    /// A malformed `Convex-Client` header.
    InvalidClientVersion,
    /// `Authorization` is neither `Bearer <token>` nor `Convex <admin key>`.
    InvalidAuthHeader,
    /// The token failed verification.
    Unauthenticated,
    /// The token names an issuer/audience no configured provider accepts (or auth is off).
    NoAuthProvider,
    /// The token's provider could not be reached for its signing keys.
    AuthProviderDiscoveryFailed,
    /// `Authorization: Convex <key>` with a key that is not this deployment's.
    BadAdminKey,
    /// The endpoint needs the admin key and none was given.
    AdminKeyRequired,
    /// A value in the args could not be decoded (bad `$integer`, `$`-prefixed field, limits).
    InvalidValue,
    /// No such endpoint.
    NotFound,
    /// The endpoint exists but not for this method.
    MethodNotAllowed,
    /// The server is shutting down.
    ShuttingDown,
    /// The server already has its maximum of open connections (`MAX_CONNECTIONS`).
    TooManyConnections,
    /// Too many mutations are queued at the store; nothing was written, retry shortly.
    ServerOverloaded,
    /// The disk holding the database is full; writes fail until space is freed.
    StorageFull,
    /// Postgres: another tickethub holds this database's writer lease, so this one cannot write.
    DatabaseInUse,
    /// Postgres: this server lost the writer lease to another one; nothing was written.
    WriterFenced,
    /// Postgres cannot be reached (down, restarting, network); nothing was written, and
    /// retrying shortly is safe.
    DatabaseUnavailable,
    /// Cluster mode: no leader is reachable (a failover is under way); nothing was written, and
    /// retrying shortly is safe.
    LeaderUnavailable,
    /// Anything unexpected. The message sent is generic; details go to the log.
    InternalServerError,
    /// File storage: an upload token that this deployment did not sign (forged, altered, absent).
    InvalidUploadToken,
    /// File storage: the upload URL is older than an hour.
    UploadUrlExpired,
    /// File storage: the upload URL was already used once.
    UploadUrlUsed,
    /// File storage: the upload is larger than `--max-upload-bytes`.
    FileTooLarge,
    /// File storage: the body does not match its `Digest: sha-256=` header.
    Sha256Mismatch,
    /// File storage: a `Digest` header whose `sha-256=` value is not 32 bytes of base64.
    InvalidDigestHeader,
    /// File storage: the path after `/api/storage/` is not a file's uuid.
    InvalidStoragePath,
    /// File storage: no file has this uuid.
    FileNotFound,
    /// File storage: the `Range` asks for bytes the file does not have, or for several ranges.
    RangeNotSatisfiable,
    /// Dashboard and `/metrics`: no admin key was given (none at all, or a user's token).
    MissingAdminKey,
    /// Dashboard: no document has this id.
    DocumentNotFound,
    /// Dashboard: an edit that does not match the table's schema; nothing was written.
    SchemaValidationError,
    /// Dashboard: only a pending scheduled job can be canceled.
    NotPending,
    /// Dashboard: no scheduled job has this id.
    JobNotFound,
    /// Convex CLI endpoints: an admin key that is not this deployment's (Convex's code, which
    /// the CLI shows as is).
    BadDeployKey,
    /// An endpoint of the Convex CLI that tickethub deliberately does not implement (pushing
    /// code, inline queries). 400, not 404: the CLI retries 404s for a minute.
    NotSupported,
    /// `npx convex deploy`: a pushed module does not parse.
    ModuleCompileError,
    /// `npx convex deploy`: a pushed module threw while it was loaded.
    ModuleEvaluationError,
    /// `npx convex deploy`: an export or the schema has a shape tickethub cannot use.
    ModuleAnalysisError,
    /// `npx convex deploy`: a pushed function or table has a name the built-in app uses.
    PushNameClash,
    /// `npx convex deploy`: `finish_push` without a pending `start_push`.
    NoPendingPush,
    /// `npx convex env set`: a name that is not `[A-Za-z_][A-Za-z0-9_]*`.
    EnvironmentVariableNameInvalid,
    /// `npx convex env set`: a name longer than 256 characters.
    EnvironmentVariableNameTooLong,
    /// `npx convex env set`: a value larger than 8 KiB.
    EnvironmentVariableValueTooLarge,
    /// `npx convex env set`: more than 100 variables.
    EnvVarLimitMet,
    /// Export: an export is already being written.
    ExportInProgress,
    /// Export: no export has this id (or its ZIP is gone).
    ExportNotFound,
    /// Export: the export is not complete yet.
    ExportNotComplete,
    /// Import: a malformed file, ZIP or row (the message names the file and line).
    InvalidImport,
    /// Import: a ZIP entry with an absolute path or `..`.
    UnsafeZipPath,
    /// Import: larger than `IMPORT_MAX_UNCOMPRESSED_BYTES` once uncompressed (a ZIP bomb).
    ImportTooLarge,
    /// Import: a table the schema does not have.
    ImportTableNotFound,
    /// Import: into a non-empty table without `--replace` / `--append`.
    ImportTableNotEmpty,
    /// Import: no import has this id (400, not 404: the CLI retries 404s for a minute).
    ImportNotFound,
    /// Import: the import is not in a state that allows the request.
    ImportWrongState,
    /// Import: an unknown upload token, a bad part number, or an upload over the size limit.
    BadImportUpload,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadJsonBody => "BadJsonBody",
            ErrorCode::MissingPath => "MissingPath",
            ErrorCode::BadRequest => "BadRequest",
            ErrorCode::BadFormat => "BadFormat",
            ErrorCode::BodyTooLarge => "BodyTooLarge",
            ErrorCode::BodyReadTimeout => "BodyReadTimeout",
            ErrorCode::InvalidClientVersion => "InvalidClientVersion",
            ErrorCode::InvalidAuthHeader => "InvalidAuthHeader",
            ErrorCode::Unauthenticated => "Unauthenticated",
            ErrorCode::NoAuthProvider => "NoAuthProvider",
            ErrorCode::AuthProviderDiscoveryFailed => "AuthProviderDiscoveryFailed",
            ErrorCode::BadAdminKey => "BadAdminKey",
            ErrorCode::AdminKeyRequired => "AdminKeyRequired",
            ErrorCode::InvalidValue => "InvalidValue",
            ErrorCode::NotFound => "NotFound",
            ErrorCode::MethodNotAllowed => "MethodNotAllowed",
            ErrorCode::ShuttingDown => "ShuttingDown",
            ErrorCode::TooManyConnections => "TooManyConnections",
            ErrorCode::ServerOverloaded => "ServerOverloaded",
            ErrorCode::StorageFull => "StorageFull",
            ErrorCode::DatabaseInUse => "DatabaseInUse",
            ErrorCode::WriterFenced => "WriterFenced",
            ErrorCode::DatabaseUnavailable => "DatabaseUnavailable",
            ErrorCode::LeaderUnavailable => "LeaderUnavailable",
            ErrorCode::InternalServerError => "InternalServerError",
            ErrorCode::InvalidUploadToken => "InvalidUploadToken",
            ErrorCode::UploadUrlExpired => "UploadUrlExpired",
            ErrorCode::UploadUrlUsed => "UploadUrlUsed",
            ErrorCode::FileTooLarge => "FileTooLarge",
            ErrorCode::Sha256Mismatch => "Sha256Mismatch",
            ErrorCode::InvalidDigestHeader => "InvalidDigestHeader",
            ErrorCode::InvalidStoragePath => "InvalidStoragePath",
            ErrorCode::FileNotFound => "FileNotFound",
            ErrorCode::RangeNotSatisfiable => "RangeNotSatisfiable",
            ErrorCode::MissingAdminKey => "MissingAdminKey",
            ErrorCode::DocumentNotFound => "DocumentNotFound",
            ErrorCode::SchemaValidationError => "SchemaValidationError",
            ErrorCode::NotPending => "NotPending",
            ErrorCode::JobNotFound => "JobNotFound",
            ErrorCode::BadDeployKey => "BadDeployKey",
            ErrorCode::NotSupported => "NotSupported",
            ErrorCode::ModuleCompileError => "ModuleCompileError",
            ErrorCode::ModuleEvaluationError => "ModuleEvaluationError",
            ErrorCode::ModuleAnalysisError => "ModuleAnalysisError",
            ErrorCode::PushNameClash => "PushNameClash",
            ErrorCode::NoPendingPush => "NoPendingPush",
            ErrorCode::EnvironmentVariableNameInvalid => "EnvironmentVariableNameInvalid",
            ErrorCode::EnvironmentVariableNameTooLong => "EnvironmentVariableNameTooLong",
            ErrorCode::EnvironmentVariableValueTooLarge => "EnvironmentVariableValueTooLarge",
            ErrorCode::EnvVarLimitMet => "EnvVarLimitMet",
            ErrorCode::ExportInProgress => "ExportInProgress",
            ErrorCode::ExportNotFound => "ExportNotFound",
            ErrorCode::ExportNotComplete => "ExportNotComplete",
            ErrorCode::InvalidImport => "InvalidImport",
            ErrorCode::UnsafeZipPath => "UnsafeZipPath",
            ErrorCode::ImportTooLarge => "ImportTooLarge",
            ErrorCode::ImportTableNotFound => "ImportTableNotFound",
            ErrorCode::ImportTableNotEmpty => "ImportTableNotEmpty",
            ErrorCode::ImportNotFound => "ImportNotFound",
            ErrorCode::ImportWrongState => "ImportWrongState",
            ErrorCode::BadImportUpload => "BadImportUpload",
        }
    }

    /// The system error for a function that failed for a reason of the server's, not of the
    /// function's (its code comes from the runtime or the store); `None` for an internal error.
    pub fn for_failed_function(code: &str) -> Option<ErrorCode> {
        match code {
            "ShuttingDown" => Some(ErrorCode::ShuttingDown),
            "ServerOverloaded" => Some(ErrorCode::ServerOverloaded),
            "StorageFull" => Some(ErrorCode::StorageFull),
            "DatabaseInUse" => Some(ErrorCode::DatabaseInUse),
            "WriterFenced" => Some(ErrorCode::WriterFenced),
            "DatabaseUnavailable" => Some(ErrorCode::DatabaseUnavailable),
            "LeaderUnavailable" => Some(ErrorCode::LeaderUnavailable),
            _ => None,
        }
    }

    /// The single place where codes become statuses.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::BadJsonBody
            | ErrorCode::MissingPath
            | ErrorCode::BadRequest
            | ErrorCode::BadFormat
            | ErrorCode::InvalidClientVersion
            | ErrorCode::InvalidValue => StatusCode::BAD_REQUEST,
            ErrorCode::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::BodyReadTimeout => StatusCode::REQUEST_TIMEOUT,
            ErrorCode::InvalidAuthHeader
            | ErrorCode::Unauthenticated
            | ErrorCode::NoAuthProvider
            | ErrorCode::AuthProviderDiscoveryFailed
            | ErrorCode::AdminKeyRequired => StatusCode::UNAUTHORIZED,
            ErrorCode::BadAdminKey => StatusCode::FORBIDDEN,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            // The database's own refusals are 503 too: none is the caller's fault, nothing was
            // written, and a retry (later, or against the server that holds the lease) can work.
            ErrorCode::ShuttingDown
            | ErrorCode::TooManyConnections
            | ErrorCode::ServerOverloaded
            | ErrorCode::DatabaseInUse
            | ErrorCode::WriterFenced
            | ErrorCode::DatabaseUnavailable
            | ErrorCode::LeaderUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::StorageFull => StatusCode::INSUFFICIENT_STORAGE,
            ErrorCode::InternalServerError => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Sha256Mismatch
            | ErrorCode::InvalidDigestHeader
            | ErrorCode::InvalidStoragePath => StatusCode::BAD_REQUEST,
            ErrorCode::InvalidUploadToken => StatusCode::FORBIDDEN,
            ErrorCode::UploadUrlExpired | ErrorCode::UploadUrlUsed => StatusCode::GONE,
            ErrorCode::FileTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::FileNotFound => StatusCode::NOT_FOUND,
            ErrorCode::RangeNotSatisfiable => StatusCode::RANGE_NOT_SATISFIABLE,
            ErrorCode::MissingAdminKey => StatusCode::UNAUTHORIZED,
            ErrorCode::DocumentNotFound | ErrorCode::JobNotFound => StatusCode::NOT_FOUND,
            ErrorCode::SchemaValidationError => StatusCode::BAD_REQUEST,
            ErrorCode::NotPending => StatusCode::CONFLICT,
            ErrorCode::BadDeployKey => StatusCode::FORBIDDEN,
            ErrorCode::NotSupported
            | ErrorCode::ModuleCompileError
            | ErrorCode::ModuleEvaluationError
            | ErrorCode::ModuleAnalysisError
            | ErrorCode::PushNameClash
            | ErrorCode::NoPendingPush
            | ErrorCode::EnvironmentVariableNameInvalid
            | ErrorCode::EnvironmentVariableNameTooLong
            | ErrorCode::EnvironmentVariableValueTooLarge
            | ErrorCode::EnvVarLimitMet => StatusCode::BAD_REQUEST,
            ErrorCode::ExportNotFound => StatusCode::NOT_FOUND,
            ErrorCode::ExportInProgress
            | ErrorCode::ExportNotComplete
            | ErrorCode::InvalidImport
            | ErrorCode::UnsafeZipPath
            | ErrorCode::ImportTableNotFound
            | ErrorCode::ImportTableNotEmpty
            | ErrorCode::ImportNotFound
            | ErrorCode::ImportWrongState
            | ErrorCode::BadImportUpload => StatusCode::BAD_REQUEST,
            ErrorCode::ImportTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        }
    }
}

/// A system error on its way to the client.
#[derive(Debug, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct ApiError {
    pub code: ErrorCode,
    /// Safe to show a client: never SQL, paths or traces.
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
        }
    }

    /// An internal failure outside any request's handling: [`ApiError::internal_for`] under a
    /// fresh request id.
    pub fn internal(detail: impl std::fmt::Display) -> ApiError {
        ApiError::internal_for(&RequestId::generate(), detail)
    }

    /// An internal failure: logs `detail` under the request's id and returns an error whose
    /// message only carries that id.
    pub fn internal_for(request_id: &RequestId, detail: impl std::fmt::Display) -> ApiError {
        tracing::error!(request_id = %request_id, "internal server error: {detail}");
        ApiError::new(
            ErrorCode::InternalServerError,
            format!("[Request ID: {request_id}] Server Error: an internal error occurred; the server log has the details."),
        )
    }

    pub fn into_response(self) -> Response<ResponseBody> {
        #[derive(serde::Serialize)]
        struct Body<'a> {
            code: &'a str,
            message: &'a str,
        }
        let body = serde_json::to_vec(&Body {
            code: self.code.as_str(),
            message: &self.message,
        })
        .unwrap_or_else(|_| b"{\"code\":\"InternalServerError\",\"message\":\"\"}".to_vec());
        let mut response = json_response(self.code.status(), body);
        if self.code == ErrorCode::BodyReadTimeout {
            // The rest of the body may still be on its way; this connection cannot be reused.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

pub(crate) fn json_response(status: StatusCode, body: Vec<u8>) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

pub(crate) fn text_response(status: StatusCode, body: String) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_databases_refusals_keep_their_code_and_are_503() {
        for (code, expected) in [
            ("DatabaseInUse", ErrorCode::DatabaseInUse),
            ("WriterFenced", ErrorCode::WriterFenced),
            ("DatabaseUnavailable", ErrorCode::DatabaseUnavailable),
            ("LeaderUnavailable", ErrorCode::LeaderUnavailable),
            ("ServerOverloaded", ErrorCode::ServerOverloaded),
        ] {
            let mapped = ErrorCode::for_failed_function(code);
            assert_eq!(mapped, Some(expected), "{code}");
            assert_eq!(expected.as_str(), code);
            assert_eq!(expected.status(), StatusCode::SERVICE_UNAVAILABLE, "{code}");
        }
        assert_eq!(
            ErrorCode::for_failed_function("StorageFull").map(ErrorCode::status),
            Some(StatusCode::INSUFFICIENT_STORAGE)
        );
        // A generic storage failure stays internal: its message may carry SQL.
        assert_eq!(ErrorCode::for_failed_function("StorageError"), None);
    }
}
