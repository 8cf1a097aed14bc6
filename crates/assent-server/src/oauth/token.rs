//! `POST /{envId}/as/token`. One handler per grant type behind [`GrantHandler`] (fosite's
//! shape): adding a grant is adding a handler to the [`GrantRegistry`] built at start-up
//! (`AppState::grants`), not editing a match.

use assent_core::ciba::{
    self, PollVerdict, check_redeemable, check_refreshable, evaluate_poll, unknown_auth_req_id,
};
use assent_core::refresh::{self, Rotation};
use assent_core::validate::plausible_auth_req_id;
use assent_core::{
    Application, DeliveryMode, GrantType, OAuthError, OAuthErrorCode, Timestamp, User,
};
use assent_store::StoreError;
use axum::Json;
use axum::extract::State;
use axum::response::Response;
use serde_json::Value;

use super::authenticated::AuthenticatedClient;
use super::discovery::CIBA_GRANT;
use super::tokens::{Authentication, mint};
use crate::error::OAuthResponseError;
use crate::form::OAuthForm;
use crate::state::AppState;

/// "Can you handle this token request? Then populate the response."
#[async_trait::async_trait]
pub trait GrantHandler: Send + Sync {
    /// The `grant_type` value this handler answers.
    fn grant_type(&self) -> &'static str;
    /// The application grant that must be enabled (else `unauthorized_client`).
    fn required_grant(&self) -> GrantType;
    async fn handle(
        &self,
        state: &AppState,
        app: &Application,
        form: &OAuthForm,
        now: Timestamp,
    ) -> Result<Value, OAuthResponseError>;
}

/// The grant handlers the token endpoint answers, built once when the state is.
#[derive(Clone)]
pub struct GrantRegistry(std::sync::Arc<[Box<dyn GrantHandler>]>);

impl GrantRegistry {
    pub fn new(handlers: Vec<Box<dyn GrantHandler>>) -> Self {
        GrantRegistry(handlers.into())
    }

    /// CIBA and refresh_token.
    pub fn standard() -> Self {
        Self::new(vec![Box::new(CibaGrant), Box::new(RefreshTokenGrant)])
    }

    /// The handler of a `grant_type` value.
    pub fn find(&self, grant_type: &str) -> Option<&dyn GrantHandler> {
        self.0
            .iter()
            .find(|h| h.grant_type() == grant_type)
            .map(AsRef::as_ref)
    }
}

pub async fn token(
    State(state): State<AppState>,
    AuthenticatedClient { app, form, now, .. }: AuthenticatedClient,
) -> Result<Response, OAuthResponseError> {
    let grant_type = form
        .get("grant_type")
        .ok_or_else(|| OAuthError::invalid_request("The grant_type parameter is required."))?;
    let grants = state.grants.clone();
    let handler = grants.find(grant_type).ok_or_else(|| {
        OAuthError::new(
            OAuthErrorCode::UnsupportedGrantType,
            "The grant_type is not supported.",
        )
    })?;
    if !app.enabled || !app.has_grant(handler.required_grant()) {
        return Err(OAuthError::unauthorized_client(
            "The application is not allowed to use this grant type.",
        )
        .into());
    }
    let body = handler.handle(&state, &app, &form, now).await?;
    Ok(super::no_store(Json(body)))
}

async fn load_user(
    state: &AppState,
    env_id: &str,
    user_id: &str,
) -> Result<Option<User>, StoreError> {
    match state.store.get_user(env_id, user_id).await {
        Ok(u) => Ok(Some(u)),
        Err(StoreError::NotFound) => Ok(None),
        Err(e) => Err(e),
    }
}

/// `urn:openid:params:grant-type:ciba` (CIBA §10.1, §11; Assent spec §3.3).
pub struct CibaGrant;

#[async_trait::async_trait]
impl GrantHandler for CibaGrant {
    fn grant_type(&self) -> &'static str {
        CIBA_GRANT
    }
    fn required_grant(&self) -> GrantType {
        GrantType::Ciba
    }

    async fn handle(
        &self,
        state: &AppState,
        app: &Application,
        form: &OAuthForm,
        now: Timestamp,
    ) -> Result<Value, OAuthResponseError> {
        let auth_req_id = form
            .get("auth_req_id")
            .ok_or_else(|| OAuthError::invalid_request("The auth_req_id parameter is required."))?;
        if !plausible_auth_req_id(auth_req_id) {
            return Err(unknown_auth_req_id().into());
        }
        let env_id = &app.environment_id;
        // A poll whose bookkeeping lost a race is judged again against the state that won, until
        // it is recorded: every answered poll counts towards slow_down. This terminates because
        // each lost compare-and-set means another poll was recorded (or the request left
        // PENDING, after which no update is asked for).
        loop {
            let req = match state.store.get_ciba_request(env_id, auth_req_id).await {
                Ok(r) => r,
                Err(StoreError::NotFound) => return Err(unknown_auth_req_id().into()),
                Err(e) => return Err(e.into()),
            };
            // Judged by the mode recorded on the request, not the application's current one: a
            // request started in POLL mode stays redeemable after the application changes mode.
            if req.application_id == app.id && req.delivery_mode == DeliveryMode::Push {
                return Err(OAuthError::unauthorized_client(
                    "Applications in PUSH mode receive tokens at their notification endpoint.",
                )
                .into());
            }
            match evaluate_poll(&req, &app.id, now) {
                PollVerdict::Refuse { error, update } => {
                    if let Some(update) = update
                        && !state
                            .store
                            .apply(&ciba::record_poll(&req, update))
                            .await?
                            .won()
                    {
                        continue;
                    }
                    return Err(error.into());
                }
                PollVerdict::Replay => {
                    state.store.apply(&ciba::revoke_replayed(&req)).await?;
                    tracing::warn!(
                        environment_id = %env_id,
                        application_id = %app.id,
                        "redeemed auth_req_id presented again; its tokens are revoked"
                    );
                    return Err(unknown_auth_req_id().into());
                }
                PollVerdict::Redeem => {
                    // A user deleted or disabled since approving gets no tokens.
                    let Some(user) = load_user(state, env_id, &req.user_id)
                        .await?
                        .filter(|u| u.enabled)
                    else {
                        return Err(unknown_auth_req_id().into());
                    };
                    let Some(decision) = &req.decision else {
                        return Err(unknown_auth_req_id().into());
                    };
                    // Read now, not with the poll: the environment may have left SANDBOX since
                    // a simulated approval (§6.5).
                    let env = state.store.get_environment(env_id).await?;
                    check_redeemable(decision, env.env_type)?;
                    let authn = Authentication {
                        auth_time: decision.decided_at,
                        acr: assent_core::ciba::satisfied_acr(
                            req.acr_values.as_deref(),
                            decision.channel,
                        ),
                        amr: decision.amr.clone(),
                        auth_req_id: Some(req.auth_req_id.clone()),
                    };
                    let scopes: Vec<String> = req.scopes().map(str::to_owned).collect();
                    let wants_refresh =
                        req.has_scope("offline_access") && app.has_grant(GrantType::RefreshToken);
                    let minted =
                        mint(state, app, &user, &scopes, &authn, wants_refresh, None, now).await?;
                    // The redemption time, read just before the committing write: polls that
                    // arrived up to this moment were concurrent with this one, later ones are
                    // replays (evaluate_poll).
                    let redeemed_at = state.now().max(now);
                    if state
                        .store
                        .apply(&ciba::redeem(&req, minted.tokens, redeemed_at))
                        .await?
                        .won()
                    {
                        tracing::info!(
                            environment_id = %env_id,
                            application_id = %app.id,
                            user_id = %user.id,
                            "tokens issued for CIBA request"
                        );
                        return Ok(minted.response);
                    }
                    // Lost the race: to another poll (refused, without revoking the winner's
                    // tokens) or to expiry (judged again: expired_token).
                    match state.store.get_ciba_request(env_id, auth_req_id).await {
                        Ok(r) if r.status == assent_core::CibaStatus::Redeemed => {
                            return Err(unknown_auth_req_id().into());
                        }
                        Ok(r) if r.is_expired(redeemed_at) => {
                            return Err(OAuthError::expired_token().into());
                        }
                        Ok(_) => continue,
                        Err(StoreError::NotFound) => return Err(unknown_auth_req_id().into()),
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
    }
}

/// `refresh_token` (RFC 6749 §6) with rotation; reuse of a rotated token revokes the family.
pub struct RefreshTokenGrant;

#[async_trait::async_trait]
impl GrantHandler for RefreshTokenGrant {
    fn grant_type(&self) -> &'static str {
        "refresh_token"
    }
    fn required_grant(&self) -> GrantType {
        GrantType::RefreshToken
    }

    async fn handle(
        &self,
        state: &AppState,
        app: &Application,
        form: &OAuthForm,
        now: Timestamp,
    ) -> Result<Value, OAuthResponseError> {
        let invalid =
            || OAuthError::invalid_grant("The refresh token is invalid, expired or revoked.");
        let token = form.get("refresh_token").ok_or_else(|| {
            OAuthError::invalid_request("The refresh_token parameter is required.")
        })?;
        let env_id = &app.environment_id;
        let hash = assent_crypto::sha256_b64url(token.as_bytes());
        let Some(old) = state.store.get_refresh_token(env_id, &hash).await? else {
            return Err(invalid().into());
        };
        // Another client's token is invalid for this one, and is left alone.
        if old.application_id != app.id {
            return Err(invalid().into());
        }
        let granted: Vec<String> = old
            .scope
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        let scopes = match form.get("scope") {
            None => granted.clone(),
            Some(requested) => {
                let requested: Vec<String> = requested
                    .split(' ')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect();
                if requested.iter().any(|s| !granted.contains(s)) {
                    return Err(OAuthError::new(
                        OAuthErrorCode::InvalidScope,
                        "The requested scope exceeds the scope originally granted.",
                    )
                    .into());
                }
                // Keep offline_access: the client is continuing the refresh family.
                let mut s = requested;
                if !s.iter().any(|x| x == "offline_access") {
                    s.push("offline_access".into());
                }
                s
            }
        };
        let Some(user) = load_user(state, env_id, &old.user_id)
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
        let authn = Authentication {
            auth_time: old.auth_time,
            acr: old.acr.clone(),
            amr: old.amr.clone(),
            auth_req_id: old.auth_req_id.clone(),
        };
        let minted = mint(
            state,
            app,
            &user,
            &scopes,
            &authn,
            true,
            Some(old.family_id.clone()),
            now,
        )
        .await?;
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
                return Ok(minted.response);
            }
            match state.store.get_refresh_token(env_id, &hash).await? {
                Some(again) => presented = again,
                None => return Err(invalid().into()),
            }
        }
    }
}
