//! `POST /{envId}/as/token`, answered by the [`TokenService`] and its grant handlers.
//!
//! [`TokenService`]: crate::service::tokens::TokenService

use assent_core::OAuthError;
use axum::Json;
use axum::extract::State;
use axum::response::Response;

use super::authenticated::AuthenticatedClient;
use crate::error::OAuthResponseError;
use crate::service::tokens::GrantOutcome;
use crate::state::AppState;

pub async fn token(
    State(state): State<AppState>,
    AuthenticatedClient { app, form, now, .. }: AuthenticatedClient,
) -> Result<Response, OAuthResponseError> {
    match state.services.tokens.token(&app, &form, now).await? {
        GrantOutcome::Issued(response) => Ok(super::no_store(Json(response))),
        // Answered at once; long polling (issue #10) will hold it until the decision or `until`.
        GrantOutcome::Pending { .. } => Err(OAuthError::authorization_pending().into()),
    }
}
