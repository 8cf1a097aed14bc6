//! `GET`/`POST /{envId}/as/userinfo` (OIDC Core §5.3) with RFC 6750 bearer errors, answered
//! by the [`UserinfoService`].
//!
//! [`UserinfoService`]: crate::service::userinfo::UserinfoService

use assent_core::{Environment, EnvironmentId, OAuthError, OAuthErrorCode, Timestamp};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::error::OAuthResponseError;
use crate::state::AppState;

pub async fn userinfo(
    State(state): State<AppState>,
    BearerRequest { env, token, now }: BearerRequest,
) -> Result<Response, OAuthResponseError> {
    let body = state
        .services
        .userinfo
        .userinfo(&env.id, &token, now)
        .await?;
    Ok(super::no_store(Json(body)))
}

/// A request to a protected resource: the environment of the path, the one access token it
/// presents (RFC 6750 §2.1 header or §2.2 form body) and the request's `now`.
///
/// Rejections, in this order: an unknown environment (404 with an OAuth-style body), a form
/// body that does not parse (`invalid_request`), a token sent in more than one way (400
/// `invalid_request` with a Bearer challenge), no token (401 with a bare challenge, §3.1).
pub struct BearerRequest {
    pub env: Environment,
    pub token: String,
    pub now: Timestamp,
}

fn bearer_error(code: OAuthErrorCode, detail: &str, status: StatusCode) -> OAuthResponseError {
    OAuthResponseError::bearer(OAuthError::new(code, detail), status)
}

impl FromRequest<AppState> for BearerRequest {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        let Path(env_id) = Path::<EnvironmentId>::from_request_parts(&mut parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let headers = parts.headers.clone();
        let body = Bytes::from_request(Request::from_parts(parts, body), state)
            .await
            .map_err(IntoResponse::into_response)?;
        let env = super::environment(state, &env_id)
            .await
            .map_err(IntoResponse::into_response)?;
        let token = presented_token(&headers, &body).map_err(IntoResponse::into_response)?;
        Ok(BearerRequest {
            env,
            token,
            now: state.now(),
        })
    }
}

fn presented_token(headers: &HeaderMap, body: &Bytes) -> Result<String, OAuthResponseError> {
    let header_token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim().to_owned());
    // RFC 6750 §2.2: a POST may carry the token as the form parameter access_token instead.
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| {
            m.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    let body_token = if is_form && !body.is_empty() {
        crate::form::OAuthForm::parse(body)?
            .get("access_token")
            .map(str::to_owned)
    } else {
        None
    };
    match (header_token, body_token) {
        (Some(_), Some(_)) => {
            // RFC 6750 §2: a client MUST NOT use more than one method.
            Err(bearer_error(
                OAuthErrorCode::InvalidRequest,
                "The access token was sent in more than one way.",
                StatusCode::BAD_REQUEST,
            ))
        }
        (Some(t), None) | (None, Some(t)) => Ok(t),
        (None, None) => {
            // RFC 6750 §3.1: no credentials → no error code, just the challenge.
            let mut e = OAuthResponseError::new(OAuthError::invalid_request(
                "A Bearer access token is required.",
            ))
            .with_status(StatusCode::UNAUTHORIZED);
            e.www_authenticate = Some("Bearer realm=\"assent\"".into());
            Err(e)
        }
    }
}
