//! Assent's HTTP layer. A request flows one way: extractor → handler (thin) → service → core
//! decides → store persists → response. Routers are built by [`router`], so tests drive them with
//! `tower::ServiceExt::oneshot` without a socket.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod clock;
pub mod correlation;
pub mod device;
pub mod error;
pub mod form;
pub mod health;
pub mod keys;
pub mod listener;
pub mod oauth;
pub mod outbound;
pub mod secrets;
pub mod service;
pub mod state;
pub mod telemetry;
pub mod v1;
pub mod work;

pub use clock::{Clock, ManualClock, SystemClock};
pub use state::{AppState, ServerConfig};

use axum::Router;

/// The whole HTTP surface: health, metrics, the management API and every environment's
/// authorization server, behind the metrics and correlation-id layers.
pub fn router(state: AppState) -> Router {
    let metrics = Router::new()
        .route("/metrics", axum::routing::get(telemetry::serve))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            v1::require_admin,
        ));
    Router::new()
        .merge(health::router())
        .merge(metrics)
        .nest("/v1", v1::router(state.clone()))
        .nest("/{env_id}/as", oauth::router())
        .nest("/{env_id}/device", device::router())
        .fallback(error::not_found_fallback)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            telemetry::layer,
        ))
        .layer(axum::middleware::from_fn(correlation::layer))
        .with_state(state)
}
