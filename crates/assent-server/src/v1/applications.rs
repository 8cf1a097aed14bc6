//! `/v1/environments/{envId}/applications` and their secrets (§5). The client secret is
//! sealed at rest and only ever returned by `GET`/`POST …/secret`.

use assent_core::{
    Application, ApplicationId, CibaSettings, DeliveryMode, EnvironmentId, GrantType,
    SigningAlgorithm, TokenEndpointAuthMethod, new_id,
};
use assent_crypto::JwkSet;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::{
    ApiJson, ApiQuery, Field, PageQuery, bool_field, check_text, int_field, list_body,
    not_found_as, require_object, string_field,
};
use crate::error::ApiError;
use crate::secrets;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/environments/{env_id}/applications",
            get(list).post(create),
        )
        .route(
            "/environments/{env_id}/applications/{app_id}",
            get(show).patch(update).delete(delete),
        )
        .route(
            "/environments/{env_id}/applications/{app_id}/secret",
            get(get_secret).post(rotate_secret),
        )
}

/// Client secrets: 64 random bytes, base64url (86 characters) — long enough to key HS512
/// client assertions (RFC 7518 §3.2: a key at least as long as the hash).
pub fn new_client_secret() -> String {
    assent_crypto::random_token(64)
}

pub fn render(app: &Application) -> Value {
    let c = &app.ciba;
    json!({
        "id": app.id,
        "environment": { "id": app.environment_id },
        "name": app.name,
        "description": app.description,
        "enabled": app.enabled,
        "protocol": app.protocol,
        "type": app.app_type,
        "grantTypes": app.grant_types.iter().map(|g| g.as_str()).collect::<Vec<_>>(),
        "tokenEndpointAuthMethod": app.token_endpoint_auth_method.as_str(),
        "jwks": app.jwks,
        "jwksUrl": app.jwks_url,
        "idTokenSigningAlgorithm": app.id_token_signing_algorithm.as_str(),
        "accessTokenDurationSeconds": app.access_token_duration_seconds,
        "refreshTokenDurationSeconds": app.refresh_token_duration_seconds,
        "refreshTokenReuseGraceSeconds": app.refresh_token_reuse_grace_seconds,
        "cibaSettings": {
            "deliveryMode": c.delivery_mode.as_str(),
            "notificationEndpoint": c.notification_endpoint,
            "requestExpirySeconds": c.request_expiry_seconds,
            "maxRequestExpirySeconds": c.max_request_expiry_seconds,
            "pollingIntervalSeconds": c.polling_interval_seconds,
            "longPollSeconds": c.long_poll_seconds,
            "bindingMessageMaxLength": c.binding_message_max_length,
            "userCodeParameter": c.user_code_parameter,
            "requestSigningAlgorithm": c.request_signing_algorithm,
        },
        "createdAt": app.created_at.to_rfc3339(),
        "updatedAt": app.updated_at.to_rfc3339(),
    })
}

pub(crate) const FIELDS: &[&str] = &[
    "name",
    "description",
    "enabled",
    "protocol",
    "type",
    "grantTypes",
    "tokenEndpointAuthMethod",
    "jwks",
    "jwksUrl",
    "idTokenSigningAlgorithm",
    "accessTokenDurationSeconds",
    "refreshTokenDurationSeconds",
    "refreshTokenReuseGraceSeconds",
    "cibaSettings",
];
pub(crate) const CIBA_FIELDS: &[&str] = &[
    "deliveryMode",
    "notificationEndpoint",
    "requestExpirySeconds",
    "maxRequestExpirySeconds",
    "pollingIntervalSeconds",
    "longPollSeconds",
    "bindingMessageMaxLength",
    "userCodeParameter",
    "requestSigningAlgorithm",
];
const APP_TYPES: &[&str] = &[
    "WEB_APP",
    "NATIVE_APP",
    "SINGLE_PAGE_APP",
    "SERVICE",
    "WORKER",
];

/// Applies a create or PATCH body to `app`; the result is then checked as a whole.
fn apply(state: &AppState, app: &mut Application, body: &Value) -> Result<(), ApiError> {
    let obj = require_object(body, FIELDS)?;
    match string_field(obj, "name")? {
        Field::Value(n) => {
            check_text("name", &n, 256)?;
            app.name = n;
        }
        Field::Null => return Err(ApiError::invalid("name", "name cannot be null.")),
        Field::Absent => {}
    }
    app.description = string_field(obj, "description")?.merge(app.description.take());
    if let Some(e) = bool_field(obj, "enabled")?.value() {
        app.enabled = e;
    }
    if let Some(p) = string_field(obj, "protocol")?.value() {
        if p != "OPENID_CONNECT" {
            return Err(ApiError::invalid(
                "protocol",
                "protocol must be OPENID_CONNECT.",
            ));
        }
        app.protocol = p;
    }
    if let Some(t) = string_field(obj, "type")?.value() {
        if !APP_TYPES.contains(&t.as_str()) {
            return Err(ApiError::invalid(
                "type",
                format!("type must be one of {}.", APP_TYPES.join(", ")),
            ));
        }
        app.app_type = t;
    }
    if let Some(v) = obj.get("grantTypes") {
        let arr = v
            .as_array()
            .ok_or_else(|| ApiError::invalid("grantTypes", "grantTypes must be an array."))?;
        let mut grants = Vec::new();
        for g in arr {
            let g = g
                .as_str()
                .and_then(GrantType::parse_ci)
                .ok_or_else(|| ApiError::invalid("grantTypes", "Unknown grant type."))?;
            // Only grants the token endpoint answers may be enabled; the others would be
            // accepted here and then refused with unsupported_grant_type.
            if !matches!(g, GrantType::Ciba | GrantType::RefreshToken) {
                return Err(ApiError::invalid(
                    "grantTypes",
                    format!(
                        "{} is not available in this version of Assent; use CIBA and REFRESH_TOKEN.",
                        g.as_str()
                    ),
                ));
            }
            if !grants.contains(&g) {
                grants.push(g);
            }
        }
        app.grant_types = grants;
    }
    if let Some(m) = string_field(obj, "tokenEndpointAuthMethod")?.value() {
        app.token_endpoint_auth_method = TokenEndpointAuthMethod::parse_ci(&m).ok_or_else(|| {
            ApiError::invalid(
                "tokenEndpointAuthMethod",
                "tokenEndpointAuthMethod must be CLIENT_SECRET_BASIC, CLIENT_SECRET_POST, CLIENT_SECRET_JWT, PRIVATE_KEY_JWT or NONE.",
            )
        })?;
    }
    match obj.get("jwks") {
        None => {}
        Some(Value::Null) => app.jwks = None,
        Some(v @ (Value::String(_) | Value::Object(_))) => {
            // Weak or invalid keys are refused here, naming the key, rather than failing
            // every assertion later (§9 "Registered keys").
            let set = JwkSet::parse(v).map_err(|e| {
                let reason = match e {
                    assent_crypto::CryptoError::Malformed(m) => m,
                    other => other.to_string(),
                };
                ApiError::invalid(
                    "jwks",
                    format!("jwks must be a JSON Web Key Set of valid public keys: {reason}."),
                )
            })?;
            if set.is_empty() {
                return Err(ApiError::invalid(
                    "jwks",
                    "jwks holds no usable signing key.",
                ));
            }
            app.jwks = Some(v.clone());
        }
        Some(_) => {
            return Err(ApiError::invalid(
                "jwks",
                "jwks must be a JSON object or a JSON string.",
            ));
        }
    }
    if let Field::Value(u) = &string_field(obj, "jwksUrl")? {
        check_url(state, "jwksUrl", u)?;
    }
    app.jwks_url = string_field(obj, "jwksUrl")?.merge(app.jwks_url.take());
    if let Some(a) = string_field(obj, "idTokenSigningAlgorithm")?.value() {
        app.id_token_signing_algorithm = SigningAlgorithm::parse(&a).ok_or_else(|| {
            ApiError::invalid(
                "idTokenSigningAlgorithm",
                "idTokenSigningAlgorithm must be RS256, PS256, ES256 or EdDSA.",
            )
        })?;
    }
    if let Some(v) = int_field(obj, "accessTokenDurationSeconds", 60, 86_400)?.value() {
        app.access_token_duration_seconds = v;
    }
    if let Some(v) = int_field(obj, "refreshTokenDurationSeconds", 60, 2_147_483_647)?.value() {
        app.refresh_token_duration_seconds = v;
    }
    if let Some(v) = int_field(obj, "refreshTokenReuseGraceSeconds", 0, 60)?.value() {
        app.refresh_token_reuse_grace_seconds = v;
    }
    match obj.get("cibaSettings") {
        None => {}
        Some(Value::Null) => app.ciba = CibaSettings::default(),
        Some(v) => apply_ciba(state, &mut app.ciba, v)?,
    }
    check_consistency(app)
}

fn apply_ciba(state: &AppState, c: &mut CibaSettings, v: &Value) -> Result<(), ApiError> {
    let t = |f: &str| format!("cibaSettings.{f}");
    // Name the member inside cibaSettings (or cibaSettings itself when it is no object).
    let obj = require_object(v, CIBA_FIELDS).map_err(|mut e| {
        for d in &mut e.details {
            d.target = if v.is_object() {
                t(&d.target)
            } else {
                "cibaSettings".to_owned()
            };
        }
        e
    })?;
    let scoped = |e: ApiError, f: &str| {
        ApiError::invalid(
            &t(f),
            e.details
                .first()
                .map(|d| d.message.clone())
                .unwrap_or_default(),
        )
    };
    match string_field(obj, "deliveryMode").map_err(|e| scoped(e, "deliveryMode"))? {
        Field::Value(m) => {
            let mode = DeliveryMode::parse_ci(&m).ok_or_else(|| {
                ApiError::invalid(
                    &t("deliveryMode"),
                    "deliveryMode must be POLL, PING or PUSH.",
                )
            })?;
            if mode != DeliveryMode::Poll {
                // Ping and push arrive with the notification outbox; refusing beats pretending.
                return Err(ApiError::invalid(
                    &t("deliveryMode"),
                    "Only POLL delivery is available in this version of Assent.",
                ));
            }
            c.delivery_mode = mode;
        }
        Field::Null => c.delivery_mode = DeliveryMode::Poll,
        Field::Absent => {}
    }
    if let Field::Value(u) =
        &string_field(obj, "notificationEndpoint").map_err(|e| scoped(e, "notificationEndpoint"))?
    {
        check_url(state, &t("notificationEndpoint"), u)?;
    }
    c.notification_endpoint = string_field(obj, "notificationEndpoint")
        .map_err(|e| scoped(e, "notificationEndpoint"))?
        .merge(c.notification_endpoint.take());
    let int = |name: &str, min: i64, max: i64| {
        int_field(obj, name, min, max).map_err(|e| scoped(e, name))
    };
    if let Some(v) = int("requestExpirySeconds", 1, 86_400)?.value() {
        c.request_expiry_seconds = v;
    }
    if let Some(v) = int("maxRequestExpirySeconds", 1, 86_400)?.value() {
        c.max_request_expiry_seconds = v;
    }
    if let Some(v) = int("pollingIntervalSeconds", 1, 3600)?.value() {
        c.polling_interval_seconds = v;
    }
    if let Some(v) = int("longPollSeconds", 0, 60)?.value() {
        if v != 0 {
            return Err(ApiError::invalid(
                &t("longPollSeconds"),
                "Long polling is not available in this version of Assent; use 0.",
            ));
        }
        c.long_poll_seconds = v;
    }
    if let Some(v) = int("bindingMessageMaxLength", 1, 1024)?.value() {
        c.binding_message_max_length = v;
    }
    if let Some(v) = bool_field(obj, "userCodeParameter")
        .map_err(|e| scoped(e, "userCodeParameter"))?
        .value()
    {
        if v {
            return Err(ApiError::invalid(
                &t("userCodeParameter"),
                "user_code is not available in this version of Assent; use false.",
            ));
        }
        c.user_code_parameter = v;
    }
    match string_field(obj, "requestSigningAlgorithm")
        .map_err(|e| scoped(e, "requestSigningAlgorithm"))?
    {
        Field::Value(_) => {
            return Err(ApiError::invalid(
                &t("requestSigningAlgorithm"),
                "Signed request objects are not available in this version of Assent; use null.",
            ));
        }
        Field::Null => c.request_signing_algorithm = None,
        Field::Absent => {}
    }
    Ok(())
}

/// Outbound URLs must be https unless the development switch allows http.
fn check_url(state: &AppState, target: &str, url: &str) -> Result<(), ApiError> {
    let ok = match reqwest::Url::parse(url) {
        Ok(u) => {
            u.scheme() == "https"
                || (u.scheme() == "http" && state.config.allow_private_notification_targets)
        }
        Err(_) => false,
    };
    if ok && url.len() <= 2048 {
        Ok(())
    } else {
        Err(ApiError::invalid(
            target,
            format!("{target} must be an https URL."),
        ))
    }
}

fn check_consistency(app: &Application) -> Result<(), ApiError> {
    if app.jwks.is_some() && app.jwks_url.is_some() {
        return Err(ApiError::invalid("jwks", "Give jwks or jwksUrl, not both."));
    }
    if app.token_endpoint_auth_method == TokenEndpointAuthMethod::PrivateKeyJwt
        && app.jwks.is_none()
        && app.jwks_url.is_none()
    {
        return Err(ApiError::invalid(
            "tokenEndpointAuthMethod",
            "PRIVATE_KEY_JWT needs jwks or jwksUrl.",
        ));
    }
    let c = &app.ciba;
    if c.request_expiry_seconds > c.max_request_expiry_seconds {
        return Err(ApiError::invalid(
            "cibaSettings.requestExpirySeconds",
            "requestExpirySeconds must not exceed maxRequestExpirySeconds.",
        ));
    }
    if app.has_grant(GrantType::Ciba)
        && app.token_endpoint_auth_method == TokenEndpointAuthMethod::None
    {
        return Err(ApiError::invalid(
            "tokenEndpointAuthMethod",
            "CIBA applications must authenticate; NONE is not allowed with the CIBA grant.",
        ));
    }
    Ok(())
}

fn blank(env_id: &EnvironmentId, now: assent_core::Timestamp) -> Application {
    Application {
        id: new_id().into(),
        environment_id: env_id.clone(),
        name: String::new(),
        description: None,
        enabled: true,
        protocol: "OPENID_CONNECT".into(),
        app_type: "WEB_APP".into(),
        grant_types: vec![GrantType::Ciba],
        token_endpoint_auth_method: TokenEndpointAuthMethod::ClientSecretBasic,
        jwks: None,
        jwks_url: None,
        id_token_signing_algorithm: SigningAlgorithm::RS256,
        access_token_duration_seconds: 3600,
        refresh_token_duration_seconds: 2_592_000,
        refresh_token_reuse_grace_seconds: 0,
        ciba: CibaSettings::default(),
        created_at: now,
        updated_at: now,
    }
}

/// Makes sure the environment has a key for the application's ID-token algorithm.
async fn ensure_key(state: &AppState, app: &Application) -> Result<(), ApiError> {
    state
        .keys
        .signer(
            &app.environment_id,
            app.id_token_signing_algorithm,
            state.now(),
        )
        .await
        .map(|_| ())
        .map_err(|e| {
            tracing::error!(error = %e, "could not prepare the signing key");
            ApiError::new(
                crate::error::ApiErrorCode::UnexpectedError,
                "The signing key could not be prepared.",
            )
        })
}

async fn create(
    State(state): State<AppState>,
    Path(env_id): Path<EnvironmentId>,
    ApiJson(body): ApiJson<Value>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    super::environment(&state, &env_id).await?;
    let now = state.now();
    let mut app = blank(&env_id, now);
    if body.get("name").is_none() {
        return Err(ApiError::invalid("name", "name is required."));
    }
    apply(&state, &mut app, &body)?;
    let secret = new_client_secret();
    let sealed =
        secrets::seal_client_secret(&state.secrets, &env_id, &app.id, &secret).map_err(|_| {
            ApiError::new(
                crate::error::ApiErrorCode::UnexpectedError,
                "Sealing failed.",
            )
        })?;
    state.store.create_application(&app, &sealed).await?;
    ensure_key(&state, &app).await?;
    tracing::info!(environment_id = %env_id, application_id = %app.id, "application created");
    Ok((StatusCode::CREATED, Json(render(&app))))
}

async fn list(
    State(state): State<AppState>,
    Path(env_id): Path<EnvironmentId>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<Value>, ApiError> {
    super::environment(&state, &env_id).await?;
    let page = q.page()?;
    let list = state.store.list_applications(&env_id, &page).await?;
    Ok(Json(list_body(
        &state,
        &format!("/environments/{env_id}/applications"),
        "applications",
        &page,
        &list,
        &[],
        render,
    )))
}

async fn load(
    state: &AppState,
    env_id: &EnvironmentId,
    app_id: &ApplicationId,
) -> Result<Application, ApiError> {
    super::environment(state, env_id).await?;
    state
        .store
        .get_application(env_id, app_id)
        .await
        .map_err(not_found_as("application"))
}

async fn show(
    State(state): State<AppState>,
    Path((env_id, app_id)): Path<(EnvironmentId, ApplicationId)>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(render(&load(&state, &env_id, &app_id).await?)))
}

async fn update(
    State(state): State<AppState>,
    Path((env_id, app_id)): Path<(EnvironmentId, ApplicationId)>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<Value>, ApiError> {
    let mut app = load(&state, &env_id, &app_id).await?;
    apply(&state, &mut app, &body)?;
    app.updated_at = state.now();
    state
        .store
        .update_application(&app)
        .await
        .map_err(not_found_as("application"))?;
    ensure_key(&state, &app).await?;
    Ok(Json(render(&app)))
}

async fn delete(
    State(state): State<AppState>,
    Path((env_id, app_id)): Path<(EnvironmentId, ApplicationId)>,
) -> Result<StatusCode, ApiError> {
    load(&state, &env_id, &app_id).await?;
    state
        .store
        .delete_application(&env_id, &app_id)
        .await
        .map_err(not_found_as("application"))?;
    Ok(StatusCode::NO_CONTENT)
}

async fn get_secret(
    State(state): State<AppState>,
    Path((env_id, app_id)): Path<(EnvironmentId, ApplicationId)>,
) -> Result<Json<Value>, ApiError> {
    load(&state, &env_id, &app_id).await?;
    let sealed = state
        .store
        .get_application_secret(&env_id, &app_id)
        .await
        .map_err(not_found_as("application"))?;
    let secret = open_secret(&state, &env_id, &app_id, &sealed)?;
    Ok(Json(json!({ "secret": secret })))
}

pub fn open_secret(
    state: &AppState,
    env_id: &EnvironmentId,
    app_id: &ApplicationId,
    sealed: &[u8],
) -> Result<String, ApiError> {
    secrets::open_client_secret(&state.secrets, env_id, app_id, sealed).map_err(|_| {
            tracing::error!(application_id = %app_id, "client secret could not be decrypted (wrong secret_key?)");
            ApiError::new(
                crate::error::ApiErrorCode::UnexpectedError,
                "The secret could not be decrypted.",
            )
        })
}

async fn rotate_secret(
    State(state): State<AppState>,
    Path((env_id, app_id)): Path<(EnvironmentId, ApplicationId)>,
) -> Result<Json<Value>, ApiError> {
    load(&state, &env_id, &app_id).await?;
    let secret = new_client_secret();
    let sealed =
        secrets::seal_client_secret(&state.secrets, &env_id, &app_id, &secret).map_err(|_| {
            ApiError::new(
                crate::error::ApiErrorCode::UnexpectedError,
                "Sealing failed.",
            )
        })?;
    state
        .store
        .set_application_secret(&env_id, &app_id, &sealed, state.now())
        .await
        .map_err(not_found_as("application"))?;
    tracing::info!(environment_id = %env_id, application_id = %app_id, "client secret rotated");
    Ok(Json(json!({ "secret": secret })))
}
