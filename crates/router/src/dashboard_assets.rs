//! `GET /dashboard` and `/dashboard/<file>`: the browser dashboard's embedded assets, with the
//! dashboard crate's security headers (strict CSP, no framing, nosniff). The assets are public
//! (they hold no data); everything they show comes from the admin-only `/api/dashboard/*`.

use http::{header, HeaderName, HeaderValue, Method, Response, StatusCode};

use crate::error::{ApiError, ErrorCode};
use crate::ResponseBody;

/// True for the paths this module serves.
pub fn is_dashboard_path(path: &str) -> bool {
    path == "/dashboard" || path.starts_with("/dashboard/")
}

pub fn handle(method: &Method, path: &str) -> Response<ResponseBody> {
    if method != Method::GET && method != Method::HEAD {
        return ApiError::new(ErrorCode::MethodNotAllowed, "Use GET for the dashboard.")
            .into_response();
    }
    let rest = &path["/dashboard".len()..];
    let Some((content_type, bytes)) = tickethub_dashboard::asset(rest) else {
        return crate::api::not_found(path).into_response();
    };
    let body = if method == Method::HEAD {
        ResponseBody::default()
    } else {
        ResponseBody::new(bytes::Bytes::from_static(bytes))
    };
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    for (name, value) in tickethub_dashboard::SECURITY_HEADERS {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    response
}
