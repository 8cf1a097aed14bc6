//! `refresh_token` (RFC 6749 §6) with rotation; reuse of a rotated token revokes the family
//! (Assent spec §3.5).

use assent_core::ciba::check_refreshable;
use assent_core::grant::{Authentication, Grant, refresh_scopes};
use assent_core::refresh::{self, Rotation};
use assent_core::{Application, GrantType, OAuthError, Timestamp};

use crate::error::OAuthResponseError;
use crate::form::OAuthForm;
use crate::oauth::tokens::mint;
use crate::service::Deps;
use crate::service::tokens::{GrantHandler, GrantOutcome, TokenRequest, unsupported_grant_type};
use crate::service::user_by_id;

pub struct RefreshTokenGrant;

#[async_trait::async_trait]
impl GrantHandler for RefreshTokenGrant {
    fn grant_type(&self) -> &'static str {
        "refresh_token"
    }

    fn required_grant(&self) -> GrantType {
        GrantType::RefreshToken
    }

    fn parse(&self, form: &OAuthForm) -> Result<TokenRequest, OAuthError> {
        let refresh_token = form.get("refresh_token").ok_or_else(|| {
            OAuthError::invalid_request("The refresh_token parameter is required.")
        })?;
        Ok(TokenRequest::RefreshToken {
            refresh_token: refresh_token.to_owned(),
            scope: form.get("scope").map(|requested| {
                requested
                    .split(' ')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            }),
        })
    }

    async fn handle(
        &self,
        state: &Deps,
        app: &Application,
        request: TokenRequest,
        now: Timestamp,
    ) -> Result<GrantOutcome, OAuthResponseError> {
        let TokenRequest::RefreshToken {
            refresh_token: token,
            scope: requested,
        } = request
        else {
            return Err(unsupported_grant_type().into());
        };
        let invalid =
            || OAuthError::invalid_grant("The refresh token is invalid, expired or revoked.");
        let env_id = &app.environment_id;
        let hash = assent_crypto::sha256_b64url(token.as_bytes());
        let Some(old) = state.store.get_refresh_token(env_id, &hash).await? else {
            return Err(invalid().into());
        };
        // Another client's token is invalid for this one, and is left alone.
        if old.application_id != app.id {
            return Err(invalid().into());
        }
        let scopes = refresh_scopes(&old.scope, requested.as_deref())?;
        let Some(user) = user_by_id(state, env_id, &old.user_id)
            .await?
            .filter(|u| u.enabled)
        else {
            state.store.apply(&refresh::revoke_family(&old)).await?;
            return Err(invalid().into());
        };
        // Tokens of a simulated SANDBOX approval do not outlive a switch to PRODUCTION (§6.5).
        if old.amr.iter().any(|m| m == "sim") {
            let env = state.store.get_environment(env_id).await?;
            if let Err(e) = check_refreshable(&old.amr, env.env_type) {
                state.store.apply(&refresh::revoke_family(&old)).await?;
                return Err(e.into());
            }
        }
        let grant = Grant {
            user,
            scopes,
            authentication: Authentication::of_refresh_token(&old),
            issue_refresh: true,
        };
        let minted = mint(state, app, &grant, Some(old.family_id.clone()), now).await?;
        let Some(new_refresh) = &minted.tokens.refresh_token else {
            return Err(invalid().into());
        };
        // Judged on the token as read; a rotation that lost (another refresh or a revocation
        // won meanwhile) is read and judged again: within the grace it rotates once more,
        // otherwise it is reuse. This terminates: a lost rotation means the token was rotated
        // or revoked, and a token rotated is judged within the grace (whose guard only a
        // revocation breaks) or as reuse.
        let mut presented = old;
        loop {
            let rotation = refresh::rotate(
                &presented,
                new_refresh,
                &minted.tokens.access_token,
                now,
                app.refresh_token_reuse_grace_seconds,
            );
            let t = match rotation {
                Rotation::Rotate(t) | Rotation::WithinGrace(t) => t,
                Rotation::Reused(t) => {
                    state.store.apply(&t).await?;
                    tracing::warn!(
                        environment_id = %env_id,
                        application_id = %app.id,
                        "rotated refresh token reused; its family is revoked"
                    );
                    return Err(invalid().into());
                }
                Rotation::Invalid => return Err(invalid().into()),
            };
            if state.store.apply(&t).await?.won() {
                return Ok(GrantOutcome::Issued(minted.response));
            }
            match state.store.get_refresh_token(env_id, &hash).await? {
                Some(again) => presented = again,
                None => return Err(invalid().into()),
            }
        }
    }
}
