//! `POST /{envId}/as/cibaAuthorization` (and `/bc-authorize`): the backchannel authentication
//! request (CIBA §7, Assent spec §3.2). Validation order: client authentication → application
//! allowed to use CIBA → parameters → user resolution → abuse limits (spec §9).

use assent_core::jwt::{ClaimError, ClaimRules, JtiRule, MAX_JTI_LEN, SubjectRule, TimeClaimRule};
use assent_core::transition::{Applied, WorkId};
use assent_core::validate::{
    LoginHint, normalize_phone, parse_acr_values, parse_ciba_scope, parse_login_hint,
    parse_requested_expiry, validate_binding_message,
};
use assent_core::{
    Application, CibaRequest, CibaStatus, GrantType, OAuthError, OAuthErrorCode, Timestamp, User,
};
use assent_crypto::{HmacAlg, SigningAlg};
use assent_store::StoreError;
use axum::Json;
use axum::extract::State;
use axum::response::Response;
use serde_json::json;

use super::authenticated::AuthenticatedClient;
use super::client_auth;
use crate::error::OAuthResponseError;
use crate::form::OAuthForm;
use crate::state::AppState;

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
    let issuer = state.issuer(&env.id);
    if !app.enabled || !app.has_grant(GrantType::Ciba) {
        return Err(
            OAuthError::unauthorized_client("The application is not allowed to use CIBA.").into(),
        );
    }
    let params = check_parameters(&app, &form)?;
    let user = resolve_user(&state, &app, &issuer, &params.hint, now).await?;

    let expires_in = params.expires_in;
    let req = CibaRequest {
        // 32 bytes from the CSPRNG, base64url: 256 bits in [A-Za-z0-9_-] (CIBA §7.3).
        auth_req_id: assent_crypto::random_token(32),
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
    // Durable before the acknowledgement leaves, with the automatic answer of a SANDBOX user
    // (§6.5) scheduled in the same transaction. The abuse limits are checked in that
    // transaction too; without limits (SANDBOX default) it is a plain insert.
    let abuse = assent_core::ciba::abuse_guard(&env.abuse_limits, now);
    let mut admission = assent_core::ciba::admit(req.clone(), abuse);
    admission.schedule.extend(assent_core::ciba::auto_decision(
        env.env_type,
        &user,
        &req,
        WorkId(assent_core::new_id()),
    ));
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
            return Err(StoreError::Invalid("the admission of a new request lost".into()).into());
        }
    }
    tracing::info!(
        environment_id = %env.id,
        application_id = %app.id,
        user_id = %user.id,
        expires_in,
        "CIBA request accepted"
    );
    Ok(super::no_store(Json(json!({
        "auth_req_id": req.auth_req_id,
        "expires_in": expires_in,
        "interval": req.interval_seconds,
    }))))
}

/// Which hint the request carries (exactly one, CIBA §7.1).
enum Hint {
    Login(String),
    IdToken(String),
    LoginToken(String),
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
    let hints: Vec<Hint> = [
        form.get("login_hint").map(|h| Hint::Login(h.to_owned())),
        form.get("id_token_hint")
            .map(|h| Hint::IdToken(h.to_owned())),
        form.get("login_hint_token")
            .map(|h| Hint::LoginToken(h.to_owned())),
    ]
    .into_iter()
    .flatten()
    .collect();
    let hint = match <[Hint; 1]>::try_from(hints) {
        Ok([h]) => h,
        Err(v) if v.is_empty() => {
            return Err(OAuthError::invalid_request(
                "One of login_hint, id_token_hint or login_hint_token is required.",
            ));
        }
        Err(_) => {
            return Err(OAuthError::invalid_request(
                "Only one of login_hint, id_token_hint or login_hint_token may be sent.",
            ));
        }
    };
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

fn unknown_user() -> OAuthError {
    OAuthError::new(
        OAuthErrorCode::UnknownUserId,
        "The user identified by the hint could not be found.",
    )
}

/// An enabled user, or `unknown_user_id` (a disabled user is unknown, §3.2).
fn enabled(user: Option<User>) -> Result<User, OAuthResponseError> {
    match user {
        Some(u) if u.enabled => Ok(u),
        _ => Err(unknown_user().into()),
    }
}

async fn user_by_id(state: &AppState, env_id: &str, id: &str) -> Result<Option<User>, StoreError> {
    match state.store.get_user(env_id, id).await {
        Ok(u) => Ok(Some(u)),
        Err(StoreError::NotFound) => Ok(None),
        Err(e) => Err(e),
    }
}

async fn resolve_user(
    state: &AppState,
    app: &Application,
    issuer: &str,
    hint: &Hint,
    now: Timestamp,
) -> Result<User, OAuthResponseError> {
    let env_id = app.environment_id.as_str();
    let store = &state.store;
    match hint {
        Hint::Login(h) => {
            let user = match parse_login_hint(h) {
                LoginHint::Any(v) => {
                    // An id, a username or an email. If these name different users (a username
                    // shaped like someone else's email), the hint names nobody.
                    let mut found: Vec<User> = Vec::new();
                    for candidate in [
                        user_by_id(state, env_id, &v).await?,
                        store.find_user_by_username(env_id, &v).await?,
                        if v.contains('@') {
                            store.find_user_by_email(env_id, &v).await?
                        } else {
                            None
                        },
                    ]
                    .into_iter()
                    .flatten()
                    {
                        if !found.iter().any(|u| u.id == candidate.id) {
                            found.push(candidate);
                        }
                    }
                    match <[User; 1]>::try_from(found) {
                        Ok([u]) => Some(u),
                        Err(_) => None,
                    }
                }
                LoginHint::Email(v) => store.find_user_by_email(env_id, &v).await?,
                LoginHint::Username(v) => store.find_user_by_username(env_id, &v).await?,
                LoginHint::Subject(v) => user_by_id(state, env_id, &v).await?,
                LoginHint::Phone(v) => {
                    let phone = normalize_phone(&v);
                    if phone.is_empty() {
                        None
                    } else {
                        store.find_user_by_phone(env_id, &phone).await?
                    }
                }
            };
            enabled(user)
        }
        Hint::IdToken(token) => {
            let sub = check_id_token_hint(state, app, issuer, token, now).await?;
            enabled(user_by_id(state, env_id, &sub).await?)
        }
        Hint::LoginToken(token) => {
            let sub = check_login_hint_token(state, app, issuer, token, now).await?;
            let mut user = user_by_id(state, env_id, &sub).await?;
            if user.is_none() {
                user = store.find_user_by_username(env_id, &sub).await?;
            }
            enabled(user)
        }
    }
}

const ID_TOKEN_ALGS: &[SigningAlg] = &[
    SigningAlg::RS256,
    SigningAlg::PS256,
    SigningAlg::ES256,
    SigningAlg::EdDSA,
];

/// An ID token this environment issued to the caller; it may have expired (CIBA §7.1: the
/// `sub` is what matters). Any failed check → `invalid_request`. Returns the `sub`.
async fn check_id_token_hint(
    state: &AppState,
    app: &Application,
    issuer: &str,
    token: &str,
    now: Timestamp,
) -> Result<String, OAuthResponseError> {
    let bad = |why: &str| -> OAuthResponseError {
        OAuthError::invalid_request(format!("The id_token_hint is not valid: {why}")).into()
    };
    let header = assent_crypto::decode_header(token).map_err(|_| bad("malformed token."))?;
    if header
        .typ
        .as_deref()
        .is_some_and(|t| !t.eq_ignore_ascii_case("JWT"))
    {
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
    // CIBA §7.1: an ID token we issued to this client; expired is fine, only `sub` matters.
    let rules = ClaimRules {
        issuer: Some(issuer.to_owned()),
        subject: SubjectRule::Required,
        audiences: Some(vec![app.id.clone()]),
        require_exp: false,
        allow_expired: true,
        max_lifetime_secs: None,
        nbf: TimeClaimRule::Ignore,
        iat: TimeClaimRule::Ignore,
        jti: JtiRule::Ignore,
    };
    let checked = rules.check(&claims, now).map_err(|e| {
        bad(match e {
            ClaimError::Issuer => "it was not issued by this environment.",
            ClaimError::Audience => "it was not issued to this client.",
            ClaimError::MissingSubject | ClaimError::Subject => "it has no sub.",
            // Not checked by these rules (a token we signed has a numeric exp).
            ClaimError::MissingExp
            | ClaimError::InvalidExp
            | ClaimError::Expired
            | ClaimError::TooFarAhead
            | ClaimError::InvalidNbf
            | ClaimError::NotYetValid
            | ClaimError::InvalidIat
            | ClaimError::IssuedInFuture
            | ClaimError::MissingJti
            | ClaimError::InvalidJti => "malformed token.",
        })
    })?;
    checked.subject.ok_or_else(|| bad("it has no sub."))
}

/// A JWT made by the calling application (PingOne's profile): HS256/384/512 with its client
/// secret or signed with its private key; `iss` = client id, `aud` = issuer, `exp` required,
/// no `cty`/`enc`. Expired → `expired_login_hint_token`; other failures → `invalid_request`.
async fn check_login_hint_token(
    state: &AppState,
    app: &Application,
    issuer: &str,
    token: &str,
    now: Timestamp,
) -> Result<String, OAuthResponseError> {
    let bad = |why: &str| -> OAuthResponseError {
        OAuthError::invalid_request(format!("The login_hint_token is not valid: {why}")).into()
    };
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
    let rules = ClaimRules {
        issuer: Some(app.id.clone()),
        subject: SubjectRule::Required,
        audiences: Some(vec![issuer.to_owned()]),
        require_exp: true,
        allow_expired: false,
        max_lifetime_secs: Some(MAX_LOGIN_HINT_TOKEN_LIFETIME_SECS),
        nbf: TimeClaimRule::NotInFuture,
        iat: TimeClaimRule::Ignore,
        // A token that carries a jti is accepted once, until it expires.
        jti: JtiRule::Optional {
            max_len: MAX_JTI_LEN,
        },
    };
    let checked = rules.check(&claims, now).map_err(|e| match e {
        ClaimError::Expired => OAuthError::new(
            OAuthErrorCode::ExpiredLoginHintToken,
            "The login_hint_token has expired.",
        )
        .into(),
        ClaimError::Issuer => bad("iss must be the client id."),
        ClaimError::Audience => bad("aud must be the issuer."),
        ClaimError::MissingExp | ClaimError::InvalidExp => bad("exp is required."),
        ClaimError::TooFarAhead => bad("exp must be at most 24 hours ahead."),
        ClaimError::InvalidNbf => bad("nbf must be a number."),
        ClaimError::NotYetValid => bad("it is not valid yet."),
        ClaimError::InvalidIat | ClaimError::IssuedInFuture => bad("iat is in the future."),
        ClaimError::MissingSubject | ClaimError::Subject => bad("sub is required."),
        ClaimError::MissingJti | ClaimError::InvalidJti => {
            bad("jti must be a non-empty string of at most 256 characters.")
        }
    })?;
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

/// A `login_hint_token` may expire at most this far ahead (PingOne's are typically good for an
/// hour; a day leaves room for batch jobs while bounding how long a stolen one is useful).
pub const MAX_LOGIN_HINT_TOKEN_LIFETIME_SECS: i64 = 24 * 3600;
