//! Discovery (§3.6) and JWKS: cacheable for a short time, so rotation shows within minutes.

use assent_core::EnvironmentId;
use assent_core::ciba::ACR_VALUES_SUPPORTED;
use assent_core::validate::{CLAIMS_SUPPORTED, SCOPES_SUPPORTED};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::error::OAuthResponseError;
use crate::state::AppState;

/// `max-age` of discovery and JWKS (≤ 300 s per §3.6).
pub const METADATA_MAX_AGE_SECS: u32 = 60;

pub const CIBA_GRANT: &str = "urn:openid:params:grant-type:ciba";

/// Client-assertion algorithms accepted at the token and backchannel endpoints (§3.1).
pub const ASSERTION_ALGS: &[&str] = &[
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256",
    "ES384", "EdDSA",
];

fn cacheable(body: serde_json::Value) -> Response {
    let mut response = Json(body).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("public, max-age={METADATA_MAX_AGE_SECS}")) {
        response.headers_mut().insert(header::CACHE_CONTROL, v);
    }
    response
}

pub async fn openid_configuration(
    State(state): State<AppState>,
    Path(env_id): Path<EnvironmentId>,
) -> Result<Response, OAuthResponseError> {
    let env = super::environment(&state, &env_id).await?;
    let issuer = state.issuer(&env.id);
    Ok(cacheable(json!({
        "issuer": issuer,
        "token_endpoint": format!("{issuer}/token"),
        "jwks_uri": format!("{issuer}/jwks"),
        "userinfo_endpoint": format!("{issuer}/userinfo"),
        "introspection_endpoint": format!("{issuer}/introspect"),
        "revocation_endpoint": format!("{issuer}/revoke"),
        "backchannel_authentication_endpoint": format!("{issuer}/cibaAuthorization"),
        "backchannel_token_delivery_modes_supported": ["poll"],
        "grant_types_supported": [CIBA_GRANT, "refresh_token"],
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "scopes_supported": SCOPES_SUPPORTED,
        "claims_supported": CLAIMS_SUPPORTED,
        "acr_values_supported": ACR_VALUES_SUPPORTED,
        "token_endpoint_auth_methods_supported": [
            "client_secret_basic", "client_secret_post", "client_secret_jwt", "private_key_jwt"
        ],
        "token_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGS,
        "introspection_endpoint_auth_methods_supported": [
            "client_secret_basic", "client_secret_post", "client_secret_jwt", "private_key_jwt"
        ],
        "revocation_endpoint_auth_methods_supported": [
            "client_secret_basic", "client_secret_post", "client_secret_jwt", "private_key_jwt"
        ],
        "id_token_signing_alg_values_supported": ["RS256", "PS256", "ES256", "EdDSA"],
        "claims_parameter_supported": false,
        "request_parameter_supported": false,
    })))
}

pub async fn jwks(
    State(state): State<AppState>,
    Path(env_id): Path<EnvironmentId>,
) -> Result<Response, OAuthResponseError> {
    let env = super::environment(&state, &env_id).await?;
    let keys = state
        .keys
        .published(&env.id, state.now())
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "could not read signing keys");
            OAuthResponseError::new(assent_core::OAuthError::new(
                assent_core::OAuthErrorCode::ServerError,
                "The service is temporarily unavailable.",
            ))
        })?;
    Ok(cacheable(json!({ "keys": keys })))
}
