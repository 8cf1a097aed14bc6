//! Each environment's authorization server, under `/{envId}/as` (§3).

use assent_core::{Environment, EnvironmentId, OAuthError};
use assent_store::StoreError;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{get, post};

use crate::error::OAuthResponseError;
use crate::form::MAX_FORM_BYTES;
use crate::service::Deps;
use crate::state::AppState;

pub mod authenticated;
pub mod backchannel;
pub mod client_auth;
pub mod discovery;
pub mod introspection;
pub mod token;
pub mod tokens;
pub mod userinfo;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/.well-known/openid-configuration",
            get(discovery::openid_configuration),
        )
        .route("/jwks", get(discovery::jwks))
        .route("/cibaAuthorization", post(backchannel::authorize))
        .route("/bc-authorize", post(backchannel::authorize))
        .route("/token", post(token::token))
        .route(
            "/userinfo",
            get(userinfo::userinfo).post(userinfo::userinfo),
        )
        .route("/introspect", post(introspection::introspect))
        .route("/revoke", post(introspection::revoke))
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_FORM_BYTES))
        .layer(axum::middleware::from_fn(crate::error::oauth_error_style))
}

/// A known path with the wrong method: 405 with an OAuth-style body, not an empty one.
async fn method_not_allowed() -> OAuthResponseError {
    OAuthResponseError::new(OAuthError::invalid_request(
        "The HTTP method is not allowed for this endpoint.",
    ))
    .with_status(StatusCode::METHOD_NOT_ALLOWED)
}

/// An unknown path under `/{envId}/as`: 404 with an OAuth-style body (called by the
/// top-level fallback: a nested fallback under a path parameter would collide with it).
pub fn not_found() -> OAuthResponseError {
    OAuthResponseError::new(OAuthError::invalid_request(
        "The requested endpoint was not found.",
    ))
    .with_status(StatusCode::NOT_FOUND)
}

/// The environment of an `/{envId}/as/…` path; unknown → 404 with an OAuth-style body.
pub async fn environment(
    state: &Deps,
    env_id: &EnvironmentId,
) -> Result<Environment, OAuthResponseError> {
    match state.store.get_environment(env_id).await {
        Ok(env) => Ok(env),
        Err(StoreError::NotFound) => Err(OAuthResponseError::new(OAuthError::invalid_request(
            "The environment was not found.",
        ))
        .with_status(StatusCode::NOT_FOUND)),
        Err(e) => Err(e.into()),
    }
}

/// `Cache-Control: no-store` for successful POST responses (errors set it themselves).
pub fn no_store<T: axum::response::IntoResponse>(body: T) -> axum::response::Response {
    use axum::http::{HeaderValue, header};
    let mut response = body.into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
        .headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}
