//! [`AuthenticatedClient`]: what every client-authenticated endpoint (`/cibaAuthorization`,
//! `/token`, `/introspect`, `/revoke`) starts from, so their handlers do not repeat it.

use assent_core::{Application, Environment, EnvironmentId, Timestamp};
use axum::extract::{FromRequest, FromRequestParts, OriginalUri, Path, Request};
use axum::response::{IntoResponse, Response};

use super::client_auth;
use crate::form::OAuthForm;
use crate::state::AppState;

/// The environment of the path, the application that authenticated (§3.1), the parsed form
/// body, the endpoint's absolute URL and the request's one `now`: the clock is read once, here,
/// and handlers use this value.
///
/// Rejections, in this order, as before the extractor existed: a malformed form body, an
/// unknown environment (404 with an OAuth-style body), a failed client authentication (401
/// `invalid_client` with `WWW-Authenticate`, or the PingOne-style error of the check).
pub struct AuthenticatedClient {
    pub env: Environment,
    pub app: Application,
    pub form: OAuthForm,
    pub endpoint: String,
    pub now: Timestamp,
}

impl FromRequest<AppState> for AuthenticatedClient {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        let Path(env_id) = Path::<EnvironmentId>::from_request_parts(&mut parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let OriginalUri(uri) = OriginalUri::from_request_parts(&mut parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let headers = parts.headers.clone();
        let form = OAuthForm::from_request(Request::from_parts(parts, body), state)
            .await
            .map_err(IntoResponse::into_response)?;
        let now = state.now();
        let env = super::environment(state, &env_id)
            .await
            .map_err(IntoResponse::into_response)?;
        let endpoint = format!("{}{}", state.config.public_url, uri.path());
        let app = client_auth::authenticate(state, &env.id, &headers, &form, &endpoint, now)
            .await
            .map_err(IntoResponse::into_response)?;
        Ok(AuthenticatedClient {
            env,
            app,
            form,
            endpoint,
            now,
        })
    }
}
