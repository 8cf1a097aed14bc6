//! `/v1/environments/{envId}/users/{userId}/devices` and `…/deviceEnrollments` (§5, §6.1):
//! device keys registered by an administrator, and one-time codes with which a device enrols
//! itself (`POST /{envId}/device/enroll`). `/v1/environments/{envId}/deviceEnrollments` with
//! `{"userId"}` creates the same code. Every change is audited (`DEVICE_ENROLLED`,
//! `DEVICE_DISABLED`, `DEVICE_ENABLED`, `DEVICE_UPDATED`, `DEVICE_DELETED`) in its own
//! transaction, and wakes the user's held
//! device calls, so a disabled or deleted device is refused and its event stream closed at
//! once.

use assent_core::device::ENROLLMENT_CODE_LIFETIME_SECS;
use assent_core::{
    ActivityType, Actor, AuditEntry, Device, DeviceEnrollment, EnvironmentId, UserId,
};
use assent_store::WakeKey;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::{
    ApiJson, ApiQuery, Field, PageQuery, bool_field, list_body, not_found_as, require_object,
    string_field,
};
use crate::device::enroll::{check_device_name, new_device};
use crate::error::ApiError;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/environments/{env_id}/users/{user_id}/devices",
            get(list).post(create),
        )
        .route(
            "/environments/{env_id}/users/{user_id}/devices/{device_id}",
            get(show).patch(update).delete(delete),
        )
        .route(
            "/environments/{env_id}/users/{user_id}/deviceEnrollments",
            post(create_enrollment),
        )
        .route(
            "/environments/{env_id}/deviceEnrollments",
            post(create_enrollment_for),
        )
}

/// The members of a create body and of an update body.
pub(crate) const CREATE_FIELDS: &[&str] = &["type", "name", "publicKeyJwk"];
pub(crate) const UPDATE_FIELDS: &[&str] = &["enabled", "name"];

pub fn render(d: &Device) -> Value {
    json!({
        "id": d.id,
        "environment": { "id": d.environment_id },
        "user": { "id": d.user_id },
        "type": "DEVICE_KEY",
        "name": d.name,
        "algorithm": d.algorithm.as_str(),
        "publicKeyJwk": d.public_jwk,
        "enabled": d.enabled,
        "createdAt": d.created_at.to_rfc3339(),
        "updatedAt": d.updated_at.to_rfc3339(),
    })
}

fn correlated(entry: AuditEntry) -> AuditEntry {
    entry.with_correlation(&crate::correlation::current().to_string())
}

/// The environment and user of the path must exist.
async fn user_of_path(
    state: &AppState,
    env_id: &EnvironmentId,
    user_id: &UserId,
) -> Result<(), ApiError> {
    super::environment(state, env_id).await?;
    state
        .store
        .get_user(env_id, user_id)
        .await
        .map_err(not_found_as("user"))?;
    Ok(())
}

async fn load(
    state: &AppState,
    env_id: &EnvironmentId,
    user_id: &UserId,
    device_id: &str,
) -> Result<Device, ApiError> {
    user_of_path(state, env_id, user_id).await?;
    match state.store.get_device(env_id, device_id).await {
        Ok(d) if d.user_id == *user_id => Ok(d),
        Ok(_) => Err(ApiError::not_found("device")),
        Err(e) => Err(not_found_as("device")(e)),
    }
}

async fn create(
    State(state): State<AppState>,
    Path((env_id, user_id)): Path<(EnvironmentId, UserId)>,
    ApiJson(body): ApiJson<Value>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    user_of_path(&state, &env_id, &user_id).await?;
    let obj = require_object(&body, CREATE_FIELDS)?;
    match string_field(obj, "type")? {
        Field::Value(t) if t == "DEVICE_KEY" => {}
        Field::Absent => {}
        _ => return Err(ApiError::invalid("type", "type must be DEVICE_KEY.")),
    }
    let name = match string_field(obj, "name")? {
        Field::Value(n) => n,
        Field::Absent | Field::Null => "Device".to_owned(),
    };
    check_device_name(&name).map_err(|m| ApiError::invalid("name", m))?;
    let jwk = obj
        .get("publicKeyJwk")
        .ok_or_else(|| ApiError::invalid("publicKeyJwk", "publicKeyJwk is required."))?;
    let now = state.now();
    let device = new_device(&env_id, user_id.clone(), name, jwk, now)
        .map_err(|m| ApiError::invalid("publicKeyJwk", m))?;
    let audit = correlated(AuditEntry::about_device(
        &device,
        ActivityType::DeviceEnrolled,
        Actor::admin(),
        now,
        json!({ "via": "ADMIN", "name": device.name, "algorithm": device.algorithm.as_str() }),
    ));
    state
        .store
        .create_device(&device, &audit)
        .await
        .map_err(not_found_as("user"))?;
    tracing::info!(environment_id = %env_id, device_id = %device.id, "device registered");
    Ok((StatusCode::CREATED, Json(render(&device))))
}

async fn list(
    State(state): State<AppState>,
    Path((env_id, user_id)): Path<(EnvironmentId, UserId)>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<Value>, ApiError> {
    user_of_path(&state, &env_id, &user_id).await?;
    let page = q.page()?;
    let list = state.store.list_devices(&env_id, &user_id, &page).await?;
    Ok(Json(list_body(
        &state,
        &format!("/environments/{env_id}/users/{user_id}/devices"),
        "devices",
        &page,
        &list,
        &[],
        render,
    )))
}

async fn show(
    State(state): State<AppState>,
    Path((env_id, user_id, device_id)): Path<(EnvironmentId, UserId, String)>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(render(
        &load(&state, &env_id, &user_id, &device_id).await?,
    )))
}

async fn update(
    State(state): State<AppState>,
    Path((env_id, user_id, device_id)): Path<(EnvironmentId, UserId, String)>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<Value>, ApiError> {
    let obj = require_object(&body, UPDATE_FIELDS)?;
    let enabled = match bool_field(obj, "enabled")? {
        Field::Value(e) => Some(e),
        Field::Null => return Err(ApiError::invalid("enabled", "enabled cannot be null.")),
        Field::Absent => None,
    };
    let name = match string_field(obj, "name")? {
        Field::Value(n) => {
            check_device_name(&n).map_err(|m| ApiError::invalid("name", m))?;
            Some(n)
        }
        Field::Null => return Err(ApiError::invalid("name", "name cannot be null.")),
        Field::Absent => None,
    };
    // A compare-and-set on the device as read: a concurrent change (a disable while this
    // renames) is read again and kept, never overwritten.
    for _ in 0..8 {
        let read = load(&state, &env_id, &user_id, &device_id).await?;
        let now = state.now();
        let device = Device {
            enabled: enabled.unwrap_or(read.enabled),
            name: name.clone().unwrap_or_else(|| read.name.clone()),
            updated_at: now,
            ..read.clone()
        };
        // Disabling and enabling are what the log is read for; a rename alone is an update.
        let kind = match (read.enabled, device.enabled) {
            (true, false) => ActivityType::DeviceDisabled,
            (false, true) => ActivityType::DeviceEnabled,
            _ => ActivityType::DeviceUpdated,
        };
        let audit = correlated(AuditEntry::about_device(
            &device,
            kind,
            Actor::admin(),
            now,
            json!({
                "enabled": device.enabled,
                "wasEnabled": read.enabled,
                "name": device.name,
            }),
        ));
        if state
            .store
            .update_device(&read, &device, &audit)
            .await
            .map_err(not_found_as("device"))?
        {
            // Held long polls and event streams of this user re-check their device.
            state.store.publish(&WakeKey::user(&env_id, &user_id));
            tracing::info!(environment_id = %env_id, device_id = %device.id, enabled = device.enabled, "device updated");
            return Ok(Json(render(&device)));
        }
    }
    Err(ApiError::new(
        crate::error::ApiErrorCode::RequestFailed,
        "The device kept changing while it was updated; try again.",
    ))
}

async fn delete(
    State(state): State<AppState>,
    Path((env_id, user_id, device_id)): Path<(EnvironmentId, UserId, String)>,
) -> Result<StatusCode, ApiError> {
    let device = load(&state, &env_id, &user_id, &device_id).await?;
    let audit = correlated(AuditEntry::about_device(
        &device,
        ActivityType::DeviceDeleted,
        Actor::admin(),
        state.now(),
        json!({ "name": device.name }),
    ));
    state
        .store
        .delete_device(&env_id, &user_id, &device_id, &audit)
        .await
        .map_err(not_found_as("device"))?;
    state.store.publish(&WakeKey::user(&env_id, &user_id));
    tracing::info!(environment_id = %env_id, device_id = %device_id, "device deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// A new one-time code for `user_id` (§5): 160 random bits, shown once, stored as its SHA-256.
async fn new_enrollment(
    state: &AppState,
    env_id: &EnvironmentId,
    user_id: &UserId,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    user_of_path(state, env_id, user_id).await?;
    let now = state.now();
    let code = assent_crypto::random_token(20);
    let enrollment = DeviceEnrollment {
        code_hash: assent_crypto::sha256_b64url(code.as_bytes()),
        environment_id: env_id.clone(),
        user_id: user_id.clone(),
        created_at: now,
        expires_at: now.plus_secs(ENROLLMENT_CODE_LIFETIME_SECS),
    };
    let audit = correlated(AuditEntry::about_user(
        env_id,
        user_id,
        ActivityType::EnrollmentCodeCreated,
        Actor::admin(),
        now,
        json!({ "expiresAt": enrollment.expires_at.to_rfc3339() }),
    ));
    state
        .store
        .create_enrollment(&enrollment, &audit)
        .await
        .map_err(not_found_as("user"))?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "code": code,
            "expiresAt": enrollment.expires_at.to_rfc3339(),
            "user": { "id": user_id },
        })),
    ))
}

async fn create_enrollment(
    State(state): State<AppState>,
    Path((env_id, user_id)): Path<(EnvironmentId, UserId)>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    // No body, or an empty JSON object.
    if !body.iter().all(u8::is_ascii_whitespace) {
        let value: Value = serde_json::from_slice(&body)
            .map_err(|_| ApiError::invalid("body", "The body must be empty or {}."))?;
        require_object(&value, &[])?;
    }
    new_enrollment(&state, &env_id, &user_id).await
}

async fn create_enrollment_for(
    State(state): State<AppState>,
    Path(env_id): Path<EnvironmentId>,
    ApiJson(body): ApiJson<Value>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let obj = require_object(&body, &["userId"])?;
    let user_id: UserId = match string_field(obj, "userId")? {
        Field::Value(u) => u.into(),
        _ => return Err(ApiError::invalid("userId", "userId is required.")),
    };
    new_enrollment(&state, &env_id, &user_id).await
}
