//! `POST /{envId}/as/cibaAuthorization` (and `/bc-authorize`): the backchannel authentication
//! request (CIBA §7, Assent spec §3.2), answered by [`BackchannelService::authorize`].
//!
//! [`BackchannelService::authorize`]: crate::service::backchannel::BackchannelService::authorize

use axum::Json;
use axum::extract::State;
use axum::response::Response;

use super::authenticated::AuthenticatedClient;
use crate::error::OAuthResponseError;
use crate::state::AppState;

pub async fn authorize(
    State(state): State<AppState>,
    AuthenticatedClient {
        env,
        app,
        form,
        now,
        ..
    }: AuthenticatedClient,
) -> Result<Response, OAuthResponseError> {
    let acknowledgement = state
        .services
        .backchannel
        .authorize(&env, &app, &form, now)
        .await?;
    Ok(super::no_store(Json(acknowledgement)))
}
