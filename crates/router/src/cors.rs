//! CORS for `/api/*`: any origin may call the API with credentials (auth is by header, not
//! cookie), so the request's origin is mirrored. HTTP actions get no automatic CORS: apps answer
//! their own preflights.

use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_MAX_AGE, ACCESS_CONTROL_REQUEST_HEADERS, ORIGIN,
    VARY,
};
use http::{HeaderMap, HeaderValue, Response, StatusCode};

use crate::ResponseBody;

const ALLOWED_METHODS: HeaderValue =
    HeaderValue::from_static("GET, POST, OPTIONS, PATCH, DELETE, PUT");
const DEFAULT_ALLOWED_HEADERS: HeaderValue =
    HeaderValue::from_static("Content-Type, Authorization, Convex-Client");
const MAX_AGE: HeaderValue = HeaderValue::from_static("86400");

/// The answer to an `OPTIONS` preflight on `/api/*`.
pub fn preflight(request_headers: &HeaderMap) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::default());
    *response.status_mut() = StatusCode::NO_CONTENT;
    let headers = response.headers_mut();
    headers.insert(ACCESS_CONTROL_ALLOW_METHODS, ALLOWED_METHODS);
    let allowed_headers = request_headers
        .get(ACCESS_CONTROL_REQUEST_HEADERS)
        .cloned()
        .unwrap_or(DEFAULT_ALLOWED_HEADERS);
    headers.insert(ACCESS_CONTROL_ALLOW_HEADERS, allowed_headers);
    headers.insert(ACCESS_CONTROL_MAX_AGE, MAX_AGE);
    decorate(&mut response, request_headers.get(ORIGIN));
    response
}

/// Add the origin-dependent headers to any `/api/*` response.
pub fn decorate(response: &mut Response<ResponseBody>, origin: Option<&HeaderValue>) {
    let headers = response.headers_mut();
    headers.append(VARY, HeaderValue::from_static("Origin"));
    if let Some(origin) = origin {
        headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        headers.insert(
            ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
}
