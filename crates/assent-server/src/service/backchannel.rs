//! The backchannel authentication request (CIBA §7, Assent spec §3.2). Validation order:
//! application allowed to use CIBA → parameters → user resolution → abuse limits (spec §9);
//! client authentication came before, in the extractor.

use assent_core::hint::{
    self, Hint, enabled_user, id_token_hint_claim_error, id_token_hint_rules,
    invalid_id_token_hint, invalid_login_hint_token, login_hint_token_claim_error,
    login_hint_token_rules, sole_user, which_hint,
};
use assent_core::transition::{Applied, WorkId};
use assent_core::validate::{
    LoginHint, normalize_phone, parse_acr_values, parse_ciba_scope, parse_login_hint,
    parse_requested_expiry, validate_binding_message,
};
use assent_core::{
    Application, AuthReqId, CibaRequest, CibaStatus, Environment, GrantType, OAuthError,
    OAuthErrorCode, Timestamp, User, UserId,
};
use assent_crypto::{HmacAlg, SigningAlg};
use assent_store::StoreError;
use serde::Serialize;

use super::{Deps, user_by_id};
use crate::error::OAuthResponseError;
use crate::form::OAuthForm;
use crate::oauth::client_auth;

/// Parameters of later CIBA features, refused clearly rather than ignored.
const NOT_YET_SUPPORTED: &[(&str, &str)] = &[
    (
        "request",
        "Signed request objects are not supported by this server yet.",
    ),
    ("request_uri", "request_uri is not supported."),
    (
        "user_code",
        "user_code is not supported by this server yet.",
    ),
    (
        "authorization_details",
        "authorization_details is not supported by this server yet.",
    ),
];

const ID_TOKEN_ALGS: &[SigningAlg] = &[
    SigningAlg::RS256,
    SigningAlg::PS256,
    SigningAlg::ES256,
    SigningAlg::EdDSA,
];

/// The success body of §3.2: `{"auth_req_id", "expires_in", "interval"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Acknowledgement {
    pub auth_req_id: AuthReqId,
    pub expires_in: i64,
    pub interval: i64,
}

#[derive(Clone)]
pub struct BackchannelService {
    state: Deps,
}

impl BackchannelService {
    pub fn new(state: Deps) -> Self {
        BackchannelService { state }
    }

    /// Validates the request `form` of the authenticated `app` of `env`, resolves its user and
    /// stores the request (durable on return; the abuse limits are checked in the same
    /// transaction). Errors are the §3.2 answers (`unauthorized_client`, parameter errors,
    /// `unknown_user_id`, 429 `temporarily_unavailable` with `Retry-After`).
    pub async fn authorize(
        &self,
        env: &Environment,
        app: &Application,
        form: &OAuthForm,
        now: Timestamp,
    ) -> Result<Acknowledgement, OAuthResponseError> {
        let state = &self.state;
        let issuer = state.issuer(&env.id);
        if !app.enabled || !app.has_grant(GrantType::Ciba) {
            return Err(OAuthError::unauthorized_client(
                "The application is not allowed to use CIBA.",
            )
            .into());
        }
        let params = check_parameters(app, form)?;
        let user = resolve_user(state, app, &issuer, &params.hint, now).await?;

        let expires_in = params.expires_in;
        let req = CibaRequest {
            // 32 bytes from the CSPRNG, base64url: 256 bits in [A-Za-z0-9_-] (CIBA §7.3).
            auth_req_id: AuthReqId::from(assent_crypto::random_token(32)),
            environment_id: env.id.clone(),
            application_id: app.id.clone(),
            user_id: user.id.clone(),
            scope: params.scopes.join(" "),
            binding_message: params.binding_message,
            acr_values: params.acr_values,
            authorization_details: None,
            delivery_mode: app.ciba.delivery_mode,
            client_notification_token: None,
            created_at: now,
            expires_at: now.plus_secs(expires_in),
            interval_seconds: app.ciba.polling_interval_seconds.max(1),
            last_polled_at: None,
            status: CibaStatus::Pending,
            decision: None,
            redeemed_at: None,
        };
        // Durable before the acknowledgement leaves, with the automatic answer of a SANDBOX
        // user (§6.5) in the same transaction: stored with the request when it has no delay,
        // scheduled otherwise. The abuse limits are checked in that transaction too; without
        // limits (SANDBOX default) it is a plain insert.
        let abuse = assent_core::ciba::abuse_guard(&env.abuse_limits, now);
        let admission = assent_core::ciba::admit_for(
            req.clone(),
            abuse,
            env.env_type,
            &user,
            WorkId(assent_core::new_id()),
        )
        .correlated(&crate::correlation::current().to_string());
        match state.store.apply(&admission).await? {
            Applied::Won => {}
            Applied::Limited { limit, free_at } => {
                let (error, retry_after) = assent_core::ciba::limited(limit, free_at, now);
                tracing::warn!(
                    environment_id = %env.id,
                    application_id = %app.id,
                    user_id = %user.id,
                    limit = limit.as_str(),
                    retry_after,
                    "CIBA request refused: abuse limit reached"
                );
                return Err(OAuthResponseError::too_many_requests(error, retry_after));
            }
            // Only a transition completing scheduled work can lose an admission.
            Applied::Lost => {
                return Err(
                    StoreError::Invalid("the admission of a new request lost".into()).into(),
                );
            }
        }
        tracing::info!(
            environment_id = %env.id,
            application_id = %app.id,
            user_id = %user.id,
            expires_in,
            "CIBA request accepted"
        );
        state.metrics.ciba_request();
        Ok(Acknowledgement {
            auth_req_id: req.auth_req_id,
            expires_in,
            interval: req.interval_seconds,
        })
    }
}

struct Parameters {
    scopes: Vec<String>,
    hint: Hint,
    binding_message: Option<String>,
    acr_values: Option<String>,
    expires_in: i64,
}

fn check_parameters(app: &Application, form: &OAuthForm) -> Result<Parameters, OAuthError> {
    for (name, message) in NOT_YET_SUPPORTED {
        if form.contains(name) {
            return Err(OAuthError::invalid_request(*message));
        }
    }
    let scopes = parse_ciba_scope(form.get("scope"))?;
    let hint = which_hint(
        form.get("login_hint"),
        form.get("id_token_hint"),
        form.get("login_hint_token"),
    )?;
    let binding_message = validate_binding_message(
        form.get("binding_message"),
        app.ciba.binding_message_max_length,
    )?;
    let expires_in = parse_requested_expiry(
        form.get("requested_expiry"),
        app.ciba.request_expiry_seconds,
        app.ciba.max_request_expiry_seconds,
    )?;
    let acr_values = parse_acr_values(form.get("acr_values"))?;
    // client_notification_token is only meaningful for PING and PUSH, which this version
    // does not offer; POLL ignores it (CIBA §7.1).
    Ok(Parameters {
        scopes,
        hint,
        binding_message,
        acr_values,
        expires_in,
    })
}

/// The enabled user the hint names, or `unknown_user_id`.
async fn resolve_user(
    state: &Deps,
    app: &Application,
    issuer: &str,
    hint: &Hint,
    now: Timestamp,
) -> Result<User, OAuthResponseError> {
    let env_id = &app.environment_id;
    let store = &state.store;
    let user = match hint {
        Hint::Login(h) => match parse_login_hint(h) {
            // An id, a username or an email, naming one user (hint::sole_user).
            LoginHint::Any(v) => sole_user(
                [
                    user_by_id(state, env_id, &UserId::from(&v)).await?,
                    store.find_user_by_username(env_id, &v).await?,
                    if v.contains('@') {
                        store.find_user_by_email(env_id, &v).await?
                    } else {
                        None
                    },
                ]
                .into_iter()
                .flatten(),
            ),
            LoginHint::Email(v) => store.find_user_by_email(env_id, &v).await?,
            LoginHint::Username(v) => store.find_user_by_username(env_id, &v).await?,
            LoginHint::Subject(v) => user_by_id(state, env_id, &UserId::from(&v)).await?,
            LoginHint::Phone(v) => {
                let phone = normalize_phone(&v);
                if phone.is_empty() {
                    None
                } else {
                    store.find_user_by_phone(env_id, &phone).await?
                }
            }
        },
        Hint::IdToken(token) => {
            let sub = check_id_token_hint(state, app, issuer, token, now).await?;
            user_by_id(state, env_id, &UserId::from(sub)).await?
        }
        Hint::LoginToken(token) => {
            let sub = check_login_hint_token(state, app, issuer, token, now).await?;
            match user_by_id(state, env_id, &UserId::from(&sub)).await? {
                Some(user) => Some(user),
                None => store.find_user_by_username(env_id, &sub).await?,
            }
        }
    };
    enabled_user(user).map_err(Into::into)
}

/// An ID token this environment issued to the caller; it may have expired (CIBA §7.1: the
/// `sub` is what matters). Any failed check → `invalid_request`. Returns the `sub`.
async fn check_id_token_hint(
    state: &Deps,
    app: &Application,
    issuer: &str,
    token: &str,
    now: Timestamp,
) -> Result<String, OAuthResponseError> {
    let bad = |why: &str| -> OAuthResponseError { invalid_id_token_hint(why).into() };
    let header = assent_crypto::decode_header(token).map_err(|_| bad("malformed token."))?;
    if !hint::id_token_hint_typ_acceptable(header.typ.as_deref()) {
        return Err(bad("not an ID token."));
    }
    let keys = state
        .keys
        .verification_set(&app.environment_id, now)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "could not load verification keys");
            OAuthResponseError::new(OAuthError::new(
                OAuthErrorCode::ServerError,
                "The service is temporarily unavailable.",
            ))
        })?;
    let claims = assent_crypto::verify_jws(token, &keys, ID_TOKEN_ALGS)
        .map_err(|_| bad("the signature does not verify with this environment's keys."))?;
    let checked = id_token_hint_rules(issuer, &app.id)
        .check(&claims, now)
        .map_err(id_token_hint_claim_error)?;
    checked.subject.ok_or_else(|| bad("it has no sub."))
}

/// A JWT made by the calling application (PingOne's profile): HS256/384/512 with its client
/// secret or signed with its private key, no `cty`/`enc`, and the claims of
/// [`login_hint_token_rules`]. Expired → `expired_login_hint_token`; other failures →
/// `invalid_request`. A `jti` it carries is used up. Returns the `sub`.
async fn check_login_hint_token(
    state: &Deps,
    app: &Application,
    issuer: &str,
    token: &str,
    now: Timestamp,
) -> Result<String, OAuthResponseError> {
    let bad = |why: &str| -> OAuthResponseError { invalid_login_hint_token(why).into() };
    let header = assent_crypto::decode_header(token).map_err(|_| bad("malformed token."))?;
    if header.cty.is_some() || header.enc.is_some() {
        return Err(bad("nested or encrypted tokens are not supported."));
    }
    let claims = if HmacAlg::parse(&header.alg).is_some() {
        let secret = client_auth::client_secret(state, app).await?;
        assent_crypto::verify_hmac_jws(token, secret.as_bytes(), &HmacAlg::ALL)
            .map_err(|_| bad("the signature does not verify."))?
    } else {
        let keys = client_auth::client_keys(state, app, header.kid.as_deref())
            .await
            .map_err(|_| bad("the application has no keys to verify it."))?;
        assent_crypto::verify_jws(token, &keys, &SigningAlg::ALL)
            .map_err(|_| bad("the signature does not verify."))?
    };
    let checked = login_hint_token_rules(&app.id, issuer)
        .check(&claims, now)
        .map_err(login_hint_token_claim_error)?;
    let sub = checked.subject.ok_or_else(|| bad("sub is required."))?;
    if let (Some(jti), Some(exp)) = (checked.jti, checked.expires_at) {
        let fresh = state
            .store
            .use_jti(
                &app.environment_id,
                &format!("login_hint_token:{}", app.id),
                &jti,
                exp,
                now,
            )
            .await?;
        if !fresh {
            return Err(bad("it has already been used (its jti was seen before)."));
        }
    }
    Ok(sub)
}
