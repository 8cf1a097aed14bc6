//! Errors of the device endpoints (§6.1): the OAuth body shape (`error`, `error_description`
//! with the correlation id), with the statuses the device API needs: 401 with
//! `WWW-Authenticate: Device error="invalid_token"` for every authentication failure, 404 for a
//! request that is not the device's user's, 409 for a request no longer decidable.

use assent_store::StoreError;
use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::correlation;

#[derive(Debug)]
pub struct DeviceError {
    pub status: StatusCode,
    pub code: &'static str,
    pub detail: String,
}

impl DeviceError {
    fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        DeviceError {
            status,
            code,
            detail: detail.into(),
        }
    }

    /// 401: the same answer whatever failed (the reason goes to the log only), so a caller
    /// learns nothing about which devices exist.
    pub fn unauthenticated(reason: &str) -> Self {
        tracing::info!(reason, "device authentication failed");
        DeviceError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "The device could not be authenticated.",
        )
    }

    pub fn invalid_request(detail: impl Into<String>) -> Self {
        DeviceError::new(StatusCode::BAD_REQUEST, "invalid_request", detail)
    }

    pub fn invalid_grant(detail: impl Into<String>) -> Self {
        DeviceError::new(StatusCode::BAD_REQUEST, "invalid_grant", detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        DeviceError::new(StatusCode::NOT_FOUND, "not_found", detail)
    }

    pub fn conflict(detail: impl Into<String>) -> Self {
        DeviceError::new(StatusCode::CONFLICT, "request_failed", detail)
    }
}

impl From<StoreError> for DeviceError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "store failure");
        DeviceError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            "The service is temporarily unavailable.",
        )
    }
}

impl IntoResponse for DeviceError {
    fn into_response(self) -> Response {
        let id = correlation::current();
        let body = json!({
            "error": self.code,
            "error_description": format!("{} (Correlation ID: {id})", self.detail),
        });
        let mut response = (self.status, Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Device error=\"invalid_token\""),
            );
        }
        response
    }
}
