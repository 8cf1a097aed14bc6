//! The two error shapes Assent speaks: OAuth errors in PingOne's style on `/{envId}/as/*`
//! (§3.4) and PingOne management errors on `/v1` (§5). Both carry the request's correlation id.

use assent_core::{OAuthError, OAuthErrorCode};
use assent_store::StoreError;
use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::correlation;

const VALIDATION_PREFIX: &str =
    "The request could not be completed. One or more validation errors were in the request.";
const PROCESSING_PREFIX: &str =
    "The request could not be completed. There was an issue processing the request.";

/// An OAuth error on its way to the client.
#[derive(Debug)]
pub struct OAuthResponseError {
    pub error: OAuthError,
    pub status: StatusCode,
    /// `WWW-Authenticate` value, when the error demands one.
    pub www_authenticate: Option<String>,
    /// `Retry-After` seconds (429 answers of the abuse limits).
    pub retry_after: Option<i64>,
}

impl OAuthResponseError {
    /// HTTP status per §3.4: 400, except `invalid_client` (401).
    pub fn new(error: OAuthError) -> Self {
        let (status, www) = match error.code {
            OAuthErrorCode::InvalidClient => (
                StatusCode::UNAUTHORIZED,
                Some("Basic realm=\"assent\", error=\"invalid_client\"".to_owned()),
            ),
            OAuthErrorCode::ServerError => (StatusCode::SERVICE_UNAVAILABLE, None),
            _ => (StatusCode::BAD_REQUEST, None),
        };
        OAuthResponseError {
            error,
            status,
            www_authenticate: www,
            retry_after: None,
        }
    }

    /// HTTP 429 with `Retry-After: <secs>` (RFC 6585 §4).
    pub fn too_many_requests(error: OAuthError, retry_after_secs: i64) -> Self {
        OAuthResponseError {
            retry_after: Some(retry_after_secs.max(1)),
            ..Self::new(error).with_status(StatusCode::TOO_MANY_REQUESTS)
        }
    }

    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// RFC 6750 §3 errors of a protected resource (userinfo): the error goes in
    /// `WWW-Authenticate: Bearer`.
    pub fn bearer(error: OAuthError, status: StatusCode) -> Self {
        let www = format!(
            "Bearer realm=\"assent\", error=\"{}\", error_description=\"{}\"",
            error.code.as_str(),
            error.detail.replace(['"', '\\'], "")
        );
        OAuthResponseError {
            error,
            status,
            www_authenticate: Some(www),
            retry_after: None,
        }
    }
}

impl From<OAuthError> for OAuthResponseError {
    fn from(e: OAuthError) -> Self {
        OAuthResponseError::new(e)
    }
}

impl From<StoreError> for OAuthResponseError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "store failure");
        OAuthResponseError::new(OAuthError::new(
            OAuthErrorCode::ServerError,
            "The service is temporarily unavailable.",
        ))
    }
}

/// `<prefix>: <specific> (Correlation ID: <uuid>)`, the PingOne sentence (§3.4).
pub fn describe(error: &OAuthError, correlation_id: &uuid::Uuid) -> String {
    let prefix = if error.code.is_validation() {
        VALIDATION_PREFIX
    } else {
        PROCESSING_PREFIX
    };
    format!(
        "{prefix}: {} (Correlation ID: {correlation_id})",
        error.detail
    )
}

impl IntoResponse for OAuthResponseError {
    fn into_response(self) -> Response {
        let id = correlation::current();
        let description = describe(&self.error, &id);
        tracing::info!(
            error = self.error.code.as_str(),
            status = self.status.as_u16(),
            detail = %self.error.detail,
            "oauth error"
        );
        let body = json!({ "error": self.error.code.as_str(), "error_description": description });
        let mut response = (self.status, Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        if let Some(www) = self.www_authenticate
            && let Ok(v) = HeaderValue::from_str(&www)
        {
            headers.insert(header::WWW_AUTHENTICATE, v);
        }
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// Management API error codes (§5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApiErrorCode {
    InvalidData,
    NotFound,
    InvalidToken,
    AccessFailed,
    UniquenessViolation,
    RequestFailed,
    MethodNotAllowed,
    /// A body over the size limit: PingOne documents no code of its own for this, so the body
    /// says `INVALID_DATA` and the status says 413.
    PayloadTooLarge,
    UnexpectedError,
}

impl ApiErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ApiErrorCode::InvalidData => "INVALID_DATA",
            ApiErrorCode::NotFound => "NOT_FOUND",
            ApiErrorCode::InvalidToken => "INVALID_TOKEN",
            ApiErrorCode::AccessFailed => "ACCESS_FAILED",
            ApiErrorCode::UniquenessViolation => "UNIQUENESS_VIOLATION",
            ApiErrorCode::RequestFailed => "REQUEST_FAILED",
            ApiErrorCode::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            ApiErrorCode::PayloadTooLarge => "INVALID_DATA",
            ApiErrorCode::UnexpectedError => "UNEXPECTED_ERROR",
        }
    }
    fn status(self) -> StatusCode {
        match self {
            ApiErrorCode::InvalidData => StatusCode::BAD_REQUEST,
            ApiErrorCode::NotFound => StatusCode::NOT_FOUND,
            ApiErrorCode::InvalidToken => StatusCode::UNAUTHORIZED,
            ApiErrorCode::AccessFailed => StatusCode::FORBIDDEN,
            ApiErrorCode::UniquenessViolation | ApiErrorCode::RequestFailed => StatusCode::CONFLICT,
            ApiErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiErrorCode::UnexpectedError => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// One `details` entry of a management error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiErrorDetail {
    pub code: &'static str,
    pub target: String,
    pub message: String,
}

#[derive(Debug)]
pub struct ApiError {
    pub code: ApiErrorCode,
    pub message: String,
    pub details: Vec<ApiErrorDetail>,
}

impl ApiError {
    pub fn new(code: ApiErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            details: Vec::new(),
        }
    }
    /// 400 INVALID_DATA about one field.
    pub fn invalid(target: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        ApiError {
            code: ApiErrorCode::InvalidData,
            message: "The request could not be completed. One or more validation errors were in the request.".into(),
            details: vec![ApiErrorDetail {
                code: "INVALID_VALUE",
                target: target.to_owned(),
                message,
            }],
        }
    }
    /// 413 for a body over the limit (`INVALID_DATA` in the body, see [`ApiErrorCode`]).
    pub fn too_large() -> Self {
        ApiError::new(
            ApiErrorCode::PayloadTooLarge,
            "The request could not be completed. The request body is too large.",
        )
    }
    pub fn not_found(what: &str) -> Self {
        ApiError::new(
            ApiErrorCode::NotFound,
            format!("The requested {what} was not found."),
        )
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        ApiError::new(ApiErrorCode::RequestFailed, message)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ApiError::not_found("resource"),
            StoreError::Conflict(field) => ApiError {
                code: ApiErrorCode::UniquenessViolation,
                message: format!("The {field} is already in use in this environment."),
                details: vec![ApiErrorDetail {
                    code: "UNIQUENESS_VIOLATION",
                    target: field.as_str().to_owned(),
                    message: format!("{field} must be unique within the environment."),
                }],
            },
            StoreError::Corrupt(what) if what.contains("cursor") => {
                ApiError::invalid("cursor", "The cursor is not valid.")
            }
            other => {
                tracing::error!(error = %other, "store failure");
                ApiError::new(
                    ApiErrorCode::UnexpectedError,
                    "The service is temporarily unavailable.",
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let id = correlation::current();
        // Which fields failed (the details' targets, each cut to 64 characters: an unknown
        // member's name comes from the request).
        let fields: Vec<String> = self
            .details
            .iter()
            .map(|d| d.target.chars().take(64).collect())
            .collect();
        if fields.is_empty() {
            tracing::info!(code = self.code.as_str(), message = %self.message, "management API error");
        } else {
            tracing::info!(
                code = self.code.as_str(),
                fields = %fields.join(","),
                message = %self.message,
                "management API error"
            );
        }
        let details: Vec<_> = self
            .details
            .iter()
            .map(|d| json!({"code": d.code, "target": d.target, "message": d.message}))
            .collect();
        let mut body =
            json!({"id": id.to_string(), "code": self.code.as_str(), "message": self.message});
        if !details.is_empty() {
            body["details"] = serde_json::Value::Array(details);
        }
        let mut response = (self.code.status(), Json(body)).into_response();
        if self.code == ApiErrorCode::InvalidToken {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"assent-admin\""),
            );
        }
        response
    }
}

/// Longest piece of caller input echoed in an error message or target.
pub const MAX_ECHO_CHARS: usize = 64;

/// Caller input as echoed in an error: at most [`MAX_ECHO_CHARS`] characters, then `…`.
pub fn echo(input: &str) -> String {
    match input.char_indices().nth(MAX_ECHO_CHARS) {
        Some((cut, _)) => format!("{}…", &input[..cut]),
        None => input.to_owned(),
    }
}

/// A response that is an error but not JSON: the rejection of one of axum's own extractors
/// (path, body limit) or of the router itself.
fn is_plain_error(response: &Response) -> bool {
    let status = response.status();
    let json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    (status.is_client_error() || status.is_server_error()) && !json
}

/// Safety net of `/v1`: any error response that is not already a management error (an axum
/// extractor's plain-text rejection) is answered in the management style with its status.
pub async fn api_error_style(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let response = next.run(req).await;
    if !is_plain_error(&response) {
        return response;
    }
    let status = response.status();
    let error = match status {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::too_large(),
        StatusCode::NOT_FOUND => ApiError::new(
            ApiErrorCode::NotFound,
            "The requested resource was not found.",
        ),
        StatusCode::METHOD_NOT_ALLOWED => ApiError::new(
            ApiErrorCode::MethodNotAllowed,
            "The HTTP method is not allowed for this resource.",
        ),
        s if s.is_server_error() => ApiError::new(
            ApiErrorCode::UnexpectedError,
            "The service is temporarily unavailable.",
        ),
        _ => ApiError::invalid("request", "The request could not be read."),
    };
    error.into_response()
}

/// Safety net of `/{envId}/as/*`: the same for OAuth errors, which also carry
/// `Cache-Control: no-store`.
pub async fn oauth_error_style(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let response = next.run(req).await;
    if !is_plain_error(&response) {
        return response;
    }
    let status = response.status();
    let error = if status.is_server_error() {
        OAuthResponseError::new(OAuthError::new(
            OAuthErrorCode::ServerError,
            "The service is temporarily unavailable.",
        ))
    } else {
        let detail = match status {
            StatusCode::PAYLOAD_TOO_LARGE => "The request body is too large.",
            StatusCode::NOT_FOUND => "The requested endpoint was not found.",
            StatusCode::METHOD_NOT_ALLOWED => "The HTTP method is not allowed for this endpoint.",
            _ => "The request could not be read.",
        };
        OAuthResponseError::new(OAuthError::invalid_request(detail)).with_status(status)
    };
    error.into_response()
}

/// Any path no router knows: a JSON 404 rather than an empty body, in the OAuth style under
/// `/{envId}/as/`.
pub async fn not_found_fallback(uri: axum::http::Uri) -> Response {
    let mut segments = uri.path().trim_start_matches('/').split('/');
    if segments.next().is_some_and(|s| !s.is_empty())
        && matches!(segments.next(), Some("as" | "device"))
    {
        return crate::oauth::not_found().into_response();
    }
    api_not_found().await
}

/// An unknown path under `/v1`: a management 404.
pub async fn api_not_found() -> Response {
    ApiError::new(
        ApiErrorCode::NotFound,
        "The requested resource was not found.",
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_truncates_long_input_on_a_char_boundary() {
        assert_eq!(echo("short"), "short");
        let exact = "é".repeat(MAX_ECHO_CHARS);
        assert_eq!(echo(&exact), exact);
        let long = "é".repeat(MAX_ECHO_CHARS + 1);
        assert_eq!(echo(&long), format!("{}…", exact));
    }
}
