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
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let span = tracing::info_span!("request", correlation_id = %id, %method, %path);
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
    if let Ok(v) = HeaderValue::from_str(&id.to_string()) {
        response.headers_mut().insert(X_CORRELATION_ID.clone(), v);
    }
    response
}
