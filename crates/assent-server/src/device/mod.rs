//! The device channel (§6.1) under `/{envId}/device`: self-enrolment with a one-time code, the
//! device's view of its user's pending requests (long polling and Server-Sent Events), and
//! signed decisions, which go through the one decision path (`service::decisions::decide`).
//! Every call but enrolment is authenticated by a device-signed JWS (`auth.rs`).

use assent_core::{CibaRequest, EnvironmentId};
use assent_store::StoreError;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::service::Deps;
use crate::state::AppState;

pub mod auth;
pub mod enroll;
pub mod error;
pub mod events;
pub mod requests;

use error::DeviceError;

/// The most requests one answer lists (a user rarely has more than a few pending).
pub const MAX_LISTED: u32 = 100;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/enroll", post(enroll::enroll))
        .route("/requests", get(requests::list))
        .route("/requests/{auth_req_id}", post(requests::decide))
        .route("/events", get(events::events))
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(16 * 1024))
        .layer(axum::middleware::from_fn(crate::error::oauth_error_style))
}

async fn method_not_allowed() -> DeviceError {
    DeviceError {
        status: StatusCode::METHOD_NOT_ALLOWED,
        code: "invalid_request",
        detail: "The HTTP method is not allowed for this endpoint.".into(),
    }
}

/// The environment of a `/{envId}/device/…` path must exist (404 otherwise).
pub async fn environment(deps: &Deps, env_id: &EnvironmentId) -> Result<(), DeviceError> {
    match deps.store.get_environment(env_id).await {
        Ok(_) => Ok(()),
        Err(StoreError::NotFound) => Err(DeviceError::not_found("The environment was not found.")),
        Err(e) => Err(e.into()),
    }
}

/// A pending request as a device shows it (§6.1).
pub async fn view(deps: &Deps, req: &CibaRequest) -> Result<Value, DeviceError> {
    let application_name = match deps
        .store
        .get_application(&req.environment_id, &req.application_id)
        .await
    {
        Ok(app) => Some(app.name),
        Err(StoreError::NotFound) => None,
        Err(e) => return Err(e.into()),
    };
    Ok(json!({
        "authReqId": req.auth_req_id,
        "applicationName": application_name,
        "scope": req.scope,
        "bindingMessage": req.binding_message,
        "authorizationDetails": req.authorization_details,
        "acrValues": req.acr_values,
        "createdAt": req.created_at.to_rfc3339(),
        "expiresAt": req.expires_at.to_rfc3339(),
    }))
}
