//! `GET`/`POST /{envId}/as/userinfo` (OIDC Core §5.3) with RFC 6750 bearer errors.

use assent_core::{OAuthError, OAuthErrorCode};
use assent_store::StoreError;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};

use super::tokens::{AccessTokenProblem, check_access_token, user_claims};
use crate::error::OAuthResponseError;
use crate::state::AppState;

fn bearer_error(code: OAuthErrorCode, detail: &str, status: StatusCode) -> OAuthResponseError {
    OAuthResponseError::bearer(OAuthError::new(code, detail), status)
}

pub async fn userinfo(
    State(state): State<AppState>,
    Path(env_id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, OAuthResponseError> {
    let env = super::environment(&state, &env_id).await?;
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
        crate::form::OAuthForm::parse(&body)?
            .get("access_token")
            .map(str::to_owned)
    } else {
        None
    };
    let token = match (header_token, body_token) {
        (Some(_), Some(_)) => {
            // RFC 6750 §2: a client MUST NOT use more than one method.
            return Err(bearer_error(
                OAuthErrorCode::InvalidRequest,
                "The access token was sent in more than one way.",
                StatusCode::BAD_REQUEST,
            ));
        }
        (Some(t), None) | (None, Some(t)) => Some(t),
        (None, None) => None,
    };
    let Some(token) = token.as_deref() else {
        // RFC 6750 §3.1: no credentials → no error code, just the challenge.
        let mut e = OAuthResponseError::new(OAuthError::invalid_request(
            "A Bearer access token is required.",
        ))
        .with_status(StatusCode::UNAUTHORIZED);
        e.www_authenticate = Some("Bearer realm=\"assent\"".into());
        return Err(e);
    };
    let now = state.now();
    let (_, record) = check_access_token(&state, &env.id, token, now)
        .await
        .map_err(|p| {
            let detail = match p {
                AccessTokenProblem::Expired => "The access token has expired.",
                AccessTokenProblem::Revoked => "The access token has been revoked.",
                AccessTokenProblem::Invalid => "The access token is invalid.",
                AccessTokenProblem::Unavailable => {
                    return OAuthResponseError::new(OAuthError::new(
                        OAuthErrorCode::ServerError,
                        "The service is temporarily unavailable.",
                    ));
                }
            };
            bearer_error(
                OAuthErrorCode::InvalidToken,
                detail,
                StatusCode::UNAUTHORIZED,
            )
        })?;
    let scopes: Vec<String> = record.scope.split(' ').map(str::to_owned).collect();
    if !scopes.iter().any(|s| s == "openid") {
        return Err(bearer_error(
            OAuthErrorCode::InsufficientScope,
            "The access token does not carry the openid scope.",
            StatusCode::FORBIDDEN,
        ));
    }
    let user_id = record.user_id.clone().unwrap_or_default();
    let user = match state.store.get_user(&env.id, &user_id).await {
        Ok(u) => u,
        Err(StoreError::NotFound) => {
            return Err(bearer_error(
                OAuthErrorCode::InvalidToken,
                "The user of this access token no longer exists.",
                StatusCode::UNAUTHORIZED,
            ));
        }
        Err(e) => return Err(e.into()),
    };
    let mut body = json!({ "sub": user.id });
    if let Value::Object(map) = &mut body {
        map.extend(user_claims(&user, &scopes));
    }
    Ok(super::no_store(Json(body)))
}
