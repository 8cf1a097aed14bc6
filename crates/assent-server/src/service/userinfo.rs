//! The UserInfo endpoint (OIDC Core §5.3): the claims an access token's scopes release, with
//! RFC 6750 bearer errors.

use assent_core::{EnvironmentId, OAuthError, OAuthErrorCode, Timestamp};
use axum::http::StatusCode;
use serde::Serialize;

use super::Deps;
use crate::error::OAuthResponseError;
use crate::oauth::tokens::{AccessTokenProblem, UserClaims, check_access_token};

fn bearer_error(code: OAuthErrorCode, detail: &str, status: StatusCode) -> OAuthResponseError {
    OAuthResponseError::bearer(OAuthError::new(code, detail), status)
}

/// The UserInfo response (OIDC Core §5.3.2): `sub` and the claims the token's scopes release.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UserinfoResponse {
    pub sub: String,
    #[serde(flatten)]
    pub claims: UserClaims,
}

#[derive(Clone)]
pub struct UserinfoService {
    state: Deps,
}

impl UserinfoService {
    pub fn new(state: Deps) -> Self {
        UserinfoService { state }
    }

    /// `{"sub", …}` for the access `token` presented in environment `env_id`: the claims its
    /// scopes release (OIDC Core §5.4). An invalid, expired or revoked token → 401
    /// `invalid_token`; one without `openid` → 403 `insufficient_scope`.
    pub async fn userinfo(
        &self,
        env_id: &EnvironmentId,
        token: &str,
        now: Timestamp,
    ) -> Result<UserinfoResponse, OAuthResponseError> {
        let state = &self.state;
        let (_, record) = check_access_token(state, env_id, token, now)
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
        // A token without a user names nobody, like one whose user was deleted.
        let user = match &record.user_id {
            Some(user_id) => super::user_by_id(state, env_id, user_id).await?,
            None => None,
        };
        let Some(user) = user else {
            return Err(bearer_error(
                OAuthErrorCode::InvalidToken,
                "The user of this access token no longer exists.",
                StatusCode::UNAUTHORIZED,
            ));
        };
        Ok(UserinfoResponse {
            claims: UserClaims::released(&user, &scopes),
            sub: user.id.into_string(),
        })
    }
}
