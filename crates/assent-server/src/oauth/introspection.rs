//! `POST /{envId}/as/introspect` (RFC 7662) and `POST /{envId}/as/revoke` (RFC 7009), both
//! client-authenticated, answered by the [`IntrospectionService`].
//!
//! [`IntrospectionService`]: crate::service::introspection::IntrospectionService

use axum::Json;
use axum::extract::State;
use axum::response::Response;
use serde_json::json;

use super::authenticated::AuthenticatedClient;
use crate::error::OAuthResponseError;
use crate::state::AppState;

pub async fn introspect(
    State(state): State<AppState>,
    AuthenticatedClient { app, form, now, .. }: AuthenticatedClient,
) -> Result<Response, OAuthResponseError> {
    let body = state
        .services
        .introspection
        .introspect(&app, &form, now)
        .await?;
    Ok(super::no_store(Json(body)))
}

pub async fn revoke(
    State(state): State<AppState>,
    AuthenticatedClient { app, form, now, .. }: AuthenticatedClient,
) -> Result<Response, OAuthResponseError> {
    state
        .services
        .introspection
        .revoke(&app, &form, now)
        .await?;
    Ok(super::no_store(Json(json!({}))))
}
