//! `POST /{envId}/device/enroll {"code","name","publicKeyJwk"}` → 201 `{"deviceId"}` (§6.1):
//! a device registers its own public key with a one-time code an administrator created for
//! its user (`POST /v1/…/users/{userId}/deviceEnrollments`). The code is single use and valid
//! for 10 minutes; only its SHA-256 is stored.

use assent_core::{
    ActivityType, Actor, ActorType, AuditEntry, Device, DeviceKeyAlgorithm, EnvironmentId, new_id,
};
use assent_store::StoreError;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::error::DeviceError;
use crate::state::AppState;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EnrollBody {
    code: String,
    name: Option<String>,
    public_key_jwk: Value,
}

/// A device name as shown to administrators: 1 to 128 characters, no control characters.
pub fn check_device_name(name: &str) -> Result<(), String> {
    let n = name.chars().count();
    if n == 0 || n > 128 || name.chars().any(char::is_control) {
        return Err("name must be 1 to 128 characters without control characters.".into());
    }
    Ok(())
}

/// The device a public JWK makes, for `env_id` (its user is filled in from the code).
pub fn new_device(
    env_id: &EnvironmentId,
    user_id: assent_core::UserId,
    name: String,
    jwk: &Value,
    now: assent_core::Timestamp,
) -> Result<Device, String> {
    let id = new_id();
    let (alg, public_jwk) = assent_crypto::device_public_key(jwk, &id)
        .map_err(|e| format!("publicKeyJwk is not a usable device key: {e}."))?;
    let algorithm = DeviceKeyAlgorithm::parse(alg.as_str())
        .ok_or_else(|| "publicKeyJwk must be an ES256 or EdDSA key.".to_owned())?;
    Ok(Device {
        id,
        environment_id: env_id.clone(),
        user_id,
        name,
        algorithm,
        public_jwk,
        enabled: true,
        created_at: now,
        updated_at: now,
    })
}

pub async fn enroll(
    State(state): State<AppState>,
    Path(env_id): Path<EnvironmentId>,
    body: axum::body::Bytes,
) -> Result<Response, DeviceError> {
    let now = state.now();
    super::environment(&state, &env_id).await?;
    let body: EnrollBody = serde_json::from_slice(&body).map_err(|_| {
        DeviceError::invalid_request(
            "The body must be JSON {\"code\", \"name\", \"publicKeyJwk\"} and nothing else.",
        )
    })?;
    let name = body.name.unwrap_or_else(|| "Device".to_owned());
    check_device_name(&name).map_err(DeviceError::invalid_request)?;
    if body.code.is_empty() || body.code.len() > 256 {
        return Err(DeviceError::invalid_grant(
            "The enrolment code is not valid.",
        ));
    }
    // The user comes from the code, in the store's transaction.
    let device = new_device(&env_id, "".into(), name, &body.public_key_jwk, now)
        .map_err(DeviceError::invalid_request)?;
    let audit = AuditEntry::about_device(
        &device,
        ActivityType::DeviceEnrolled,
        Actor::new(ActorType::Device, Some(device.id.clone())),
        now,
        json!({ "via": "ENROLLMENT_CODE", "name": device.name, "algorithm": device.algorithm.as_str() }),
    )
    .with_correlation(&crate::correlation::current().to_string());
    let code_hash = assent_crypto::sha256_b64url(body.code.as_bytes());
    match state
        .store
        .enroll_device(&code_hash, &device, &audit, now)
        .await
    {
        Ok(device) => {
            tracing::info!(environment_id = %env_id, device_id = %device.id, "device enrolled");
            Ok((StatusCode::CREATED, Json(json!({ "deviceId": device.id }))).into_response())
        }
        Err(StoreError::NotFound) => Err(DeviceError::invalid_grant(
            "The enrolment code is not valid: it is unknown, was already used or has expired.",
        )),
        Err(e) => Err(e.into()),
    }
}
