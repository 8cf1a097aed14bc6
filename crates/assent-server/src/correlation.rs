//! Every request gets a correlation id: in the `X-Correlation-ID` response header, in every
//! error body and in the log lines of that request.

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

pub static X_CORRELATION_ID: HeaderName = HeaderName::from_static("x-correlation-id");

tokio::task_local! {
    static CORRELATION_ID: uuid::Uuid;
}

/// The current request's correlation id (a fresh one outside a request).
pub fn current() -> uuid::Uuid {
    CORRELATION_ID
        .try_with(|id| *id)
        .unwrap_or_else(|_| uuid::Uuid::new_v4())
}

pub async fn layer(req: Request, next: Next) -> Response {
    let id = uuid::Uuid::new_v4();
    // The fields are only formatted (the path redacted) when the span is enabled.
    let span = tracing::info_span!(
        "request",
        correlation_id = %id,
        method = %req.method(),
        path = %loggable_path(req.uri().path()),
    );
    let started = std::time::Instant::now();
    let mut response = CORRELATION_ID
        .scope(id, next.run(req))
        .instrument(span.clone())
        .await;
    let status = response.status().as_u16();
    span.in_scope(|| {
        tracing::info!(
            status,
            elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
            "request completed"
        );
    });
    let mut text = uuid::Uuid::encode_buffer();
    if let Ok(v) = HeaderValue::from_str(id.hyphenated().encode_lower(&mut text)) {
        response.headers_mut().insert(X_CORRELATION_ID.clone(), v);
    }
    response
}

/// Path segments that are followed by a bearer value (an `auth_req_id`, which redeems tokens, or
/// a one-time link token): `…/cibaRequests/<auth_req_id>/approve`, `…/device/requests/<id>`,
/// `…/authenticator/r/<token>`.
const SECRET_AFTER: &[&str] = &["cibaRequests", "requests", "r"];

/// The request path as logged: the segment after each of [`SECRET_AFTER`] is replaced by `***`,
/// so the info-level request line never holds a value that can redeem tokens.
pub fn loggable_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut redact_next = false;
    for (i, segment) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        if redact_next && !segment.is_empty() {
            out.push_str("***");
        } else {
            out.push_str(segment);
        }
        redact_next = SECRET_AFTER.contains(&segment);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::loggable_path;

    #[test]
    fn auth_req_ids_are_not_logged() {
        assert_eq!(
            loggable_path("/v1/environments/e1/cibaRequests/SECRETID/approve"),
            "/v1/environments/e1/cibaRequests/***/approve"
        );
        assert_eq!(
            loggable_path("/v1/environments/e1/cibaRequests"),
            "/v1/environments/e1/cibaRequests"
        );
        assert_eq!(
            loggable_path("/v1/environments/e1/cibaRequests/"),
            "/v1/environments/e1/cibaRequests/"
        );
        assert_eq!(
            loggable_path("/e1/device/requests/SECRETID"),
            "/e1/device/requests/***"
        );
        assert_eq!(
            loggable_path("/e1/authenticator/r/TOKEN"),
            "/e1/authenticator/r/***"
        );
        assert_eq!(loggable_path("/e1/as/token"), "/e1/as/token");
        assert_eq!(loggable_path("/healthz"), "/healthz");
    }
}
