//! `/v1/environments/{envId}/signingKeys` (§5, §3.5): list and rotate.

use assent_core::{EnvironmentId, SigningAlgorithm, SigningKey};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::{ApiJson, require_object, string_field};
use crate::error::{ApiError, ApiErrorCode};
use crate::state::AppState;

pub(crate) const FIELDS: &[&str] = &["algorithm"];

pub fn router() -> Router<AppState> {
    Router::new().route("/environments/{env_id}/signingKeys", get(list).post(create))
}

pub fn render(k: &SigningKey, now: assent_core::Timestamp) -> Value {
    let status = if k.current {
        "CURRENT"
    } else if k.published_at(now) {
        "PREVIOUS"
    } else {
        "RETIRED"
    };
    json!({
        "id": k.id,
        "environment": { "id": k.environment_id },
        "algorithm": k.algorithm.as_str(),
        "status": status,
        "publicJwk": k.public_jwk,
        "retireAt": k.retire_at.map(|t| t.to_rfc3339()),
        "createdAt": k.created_at.to_rfc3339(),
        "updatedAt": k.created_at.to_rfc3339(),
    })
}

async fn list(
    State(state): State<AppState>,
    Path(env_id): Path<EnvironmentId>,
) -> Result<Json<Value>, ApiError> {
    super::environment(&state, &env_id).await?;
    let now = state.now();
    let keys = state.store.list_signing_keys(&env_id).await?;
    let items: Vec<Value> = keys.iter().map(|k| render(k, now)).collect();
    Ok(Json(json!({
        "_links": { "self": { "href": format!("{}/v1/environments/{env_id}/signingKeys", state.config.public_url) } },
        "_embedded": { "signingKeys": items },
        "count": items.len(),
        "size": items.len(),
    })))
}

async fn create(
    State(state): State<AppState>,
    Path(env_id): Path<EnvironmentId>,
    ApiJson(body): ApiJson<Value>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    super::environment(&state, &env_id).await?;
    let obj = require_object(&body, FIELDS)?;
    let alg = match string_field(obj, "algorithm")?.value() {
        Some(a) => SigningAlgorithm::parse(&a).ok_or_else(|| {
            ApiError::invalid(
                "algorithm",
                "algorithm must be RS256, PS256, ES256 or EdDSA.",
            )
        })?,
        None => return Err(ApiError::invalid("algorithm", "algorithm is required.")),
    };
    let now = state.now();
    let key = state.keys.rotate(&env_id, alg, now).await.map_err(|e| {
        tracing::error!(error = %e, "key rotation failed");
        ApiError::new(
            ApiErrorCode::UnexpectedError,
            "The key could not be created.",
        )
    })?;
    tracing::info!(environment_id = %env_id, kid = %key.id, algorithm = %alg, "signing key rotated");
    Ok((StatusCode::CREATED, Json(render(&key, now))))
}
