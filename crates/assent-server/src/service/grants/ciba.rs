//! `urn:openid:params:grant-type:ciba` (CIBA §10.1, §11; Assent spec §3.3).

use assent_core::ciba::{self, PollVerdict, evaluate_poll, unknown_auth_req_id};
use assent_core::grant::ciba_redemption;
use assent_core::validate::plausible_auth_req_id;
use assent_core::{
    Application, AuthReqId, DeliveryMode, GrantType, OAuthError, OAuthErrorCode, Timestamp,
};
use assent_store::StoreError;

use crate::error::OAuthResponseError;
use crate::form::OAuthForm;
use crate::oauth::discovery::CIBA_GRANT;
use crate::oauth::tokens::mint;
use crate::service::Deps;
use crate::service::tokens::{GrantHandler, GrantOutcome, TokenRequest, unsupported_grant_type};
use crate::service::user_by_id;
use crate::telemetry::PollOutcome;

pub struct CibaGrant;

#[async_trait::async_trait]
impl GrantHandler for CibaGrant {
    fn grant_type(&self) -> &'static str {
        CIBA_GRANT
    }

    fn required_grant(&self) -> GrantType {
        GrantType::Ciba
    }

    fn parse(&self, form: &OAuthForm) -> Result<TokenRequest, OAuthError> {
        let auth_req_id = form
            .get("auth_req_id")
            .ok_or_else(|| OAuthError::invalid_request("The auth_req_id parameter is required."))?;
        Ok(TokenRequest::Ciba {
            auth_req_id: AuthReqId::from(auth_req_id),
        })
    }

    async fn handle(
        &self,
        state: &Deps,
        app: &Application,
        request: TokenRequest,
        now: Timestamp,
    ) -> Result<GrantOutcome, OAuthResponseError> {
        let answer = poll(state, app, request, now).await;
        state.metrics.ciba_poll(poll_outcome(&answer));
        answer
    }
}

/// How `answer` is counted in `assent_ciba_poll_outcomes_total`.
fn poll_outcome(answer: &Result<GrantOutcome, OAuthResponseError>) -> PollOutcome {
    match answer {
        Ok(GrantOutcome::Pending { .. }) => PollOutcome::Pending,
        Ok(GrantOutcome::Issued(_)) => PollOutcome::Redeemed,
        Err(e) => match e.error.code {
            OAuthErrorCode::AuthorizationPending => PollOutcome::Pending,
            OAuthErrorCode::SlowDown => PollOutcome::SlowDown,
            OAuthErrorCode::AccessDenied => PollOutcome::Denied,
            OAuthErrorCode::ExpiredToken => PollOutcome::Expired,
            OAuthErrorCode::InvalidGrant => PollOutcome::InvalidGrant,
            _ => PollOutcome::Error,
        },
    }
}

/// Answers one poll of `auth_req_id` (CIBA §11): pending, slow_down, tokens or an error.
async fn poll(
    state: &Deps,
    app: &Application,
    request: TokenRequest,
    now: Timestamp,
) -> Result<GrantOutcome, OAuthResponseError> {
    let TokenRequest::Ciba { auth_req_id } = request else {
        return Err(unsupported_grant_type().into());
    };
    let auth_req_id = &auth_req_id;
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
                if error.code == OAuthErrorCode::AuthorizationPending {
                    return Ok(GrantOutcome::Pending {
                        until: req.expires_at,
                    });
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
                let user = user_by_id(state, env_id, &req.user_id).await?;
                // Read now, not with the poll: the environment may have left SANDBOX since
                // a simulated approval (§6.5).
                let env = state.store.get_environment(env_id).await?;
                let grant = ciba_redemption(
                    &req,
                    user,
                    env.env_type,
                    app.has_grant(GrantType::RefreshToken),
                )?;
                let minted = mint(state, app, &grant, None, now).await?;
                // The redemption time, read just before the committing write: polls that
                // arrived up to this moment were concurrent with this one, later ones are
                // replays (evaluate_poll).
                let redeemed_at = state.now().max(now);
                if state
                    .store
                    .apply(
                        &ciba::redeem(&req, minted.tokens, redeemed_at)
                            .correlated(&crate::correlation::current().to_string()),
                    )
                    .await?
                    .won()
                {
                    tracing::info!(
                        environment_id = %env_id,
                        application_id = %app.id,
                        user_id = %grant.user.id,
                        "tokens issued for CIBA request"
                    );
                    return Ok(GrantOutcome::Issued(minted.response));
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
