//! The device's view of its user's pending requests, and its signed decisions (§6.1).
//!
//! - `GET /{envId}/device/requests?wait=<0..60>`: the pending, unexpired requests of the
//!   device's user. With `wait`, an empty answer is held until a request for the user is made
//!   (woken through the store's `WakeUps`: no thread, no polling loop) or `wait` seconds pass.
//! - `POST /{envId}/device/requests/{authReqId}`, body `application/jwt`: the decision, signed
//!   by the device; `auth_req_id` and `binding_message` must be the request's exactly.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use assent_core::device::{DEVICE_AMR, check_decision, read_decision};
use assent_core::{
    ActivityType, Actor, ActorType, AuditEntry, AuthReqId, CibaRequest, DecisionChannel, Device,
    EnvironmentId, Timestamp,
};
use assent_store::{StoreError, WakeKey};
use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::auth::{self, MAX_DEVICE_JWS_BYTES};
use super::error::DeviceError;
use crate::oauth::no_store;
use crate::service::Deps;
use crate::service::decisions::{DecideFailure, DecisionInput, decide as decide_request};
use crate::state::AppState;

/// The longest a long poll is held (§6.1).
pub const MAX_WAIT_SECS: i64 = 60;

/// `?wait=<0..60>`; nothing else is accepted.
fn parse_wait(query: Option<&str>) -> Result<i64, DeviceError> {
    let mut wait = 0;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("wait", v)) => {
                wait = v
                    .parse::<i64>()
                    .ok()
                    .filter(|w| (0..=MAX_WAIT_SECS).contains(w))
                    .ok_or_else(|| {
                        DeviceError::invalid_request("wait must be an integer from 0 to 60.")
                    })?;
            }
            _ => {
                return Err(DeviceError::invalid_request(
                    "The only query parameter is wait.",
                ));
            }
        }
    }
    Ok(wait)
}

/// A device (or its user) disabled or deleted while its call was held is refused like any
/// other call: the device is read again and held to the same rules as at authentication.
pub async fn still_enabled(deps: &Deps, device: &Device) -> Result<(), DeviceError> {
    match deps
        .store
        .get_device(&device.environment_id, &device.id)
        .await
    {
        Ok(current) => auth::usable(deps, &current).await,
        Err(StoreError::NotFound) => Err(DeviceError::unauthenticated("the device was deleted")),
        Err(e) => Err(e.into()),
    }
}

/// Which (request, device) pairs this process has already written a `DEVICE_NOTIFIED` entry
/// for, so a device that keeps fetching a request does not cost a write each time (the log
/// itself refuses a second entry; this only spares the round trip).
#[derive(Clone, Default)]
pub struct Notified(Arc<Mutex<HashSet<(AuthReqId, String)>>>);

impl Notified {
    const MAX: usize = 100_000;

    fn first_time(&self, req: &AuthReqId, device: &str) -> bool {
        let mut seen = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if seen.len() >= Self::MAX {
            seen.clear();
        }
        seen.insert((req.clone(), device.to_owned()))
    }

    /// The entry could not be written: try again next time.
    fn forget(&self, req: &AuthReqId, device: &str) {
        let mut seen = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        seen.remove(&(req.clone(), device.to_owned()));
    }
}

/// Records (once per request and device) that `device` was shown `reqs`, then renders them.
pub async fn shown(
    state: &AppState,
    device: &Device,
    reqs: &[CibaRequest],
    now: Timestamp,
    correlation_id: &str,
) -> Result<Vec<Value>, DeviceError> {
    let mut out = Vec::with_capacity(reqs.len());
    for req in reqs {
        if state.notified.first_time(&req.auth_req_id, &device.id) {
            let entry = AuditEntry {
                device_id: Some(device.id.clone()),
                ..AuditEntry::about_request(
                    req,
                    ActivityType::DeviceNotified,
                    Actor::new(ActorType::Device, Some(device.id.clone())),
                    Some(DecisionChannel::Device),
                    now,
                    json!({}),
                )
            }
            .with_correlation(correlation_id);
            if let Err(e) = state.store.record_device_notified(&entry).await {
                state.notified.forget(&req.auth_req_id, &device.id);
                return Err(e.into());
            }
        }
        out.push(super::view(state, req).await?);
    }
    Ok(out)
}

pub async fn list(
    State(state): State<AppState>,
    Path(env_id): Path<EnvironmentId>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, DeviceError> {
    let now = state.now();
    super::environment(&state, &env_id).await?;
    let device = auth::authenticate(&state, &env_id, &headers, now).await?;
    let wait = parse_wait(query.as_deref())?;
    let deadline = now.plus_secs(wait);
    // Subscribed before the first read, so a request made in between still wakes us.
    let mut wake = state
        .store
        .subscribe(&WakeKey::user(&env_id, &device.user_id));
    if wait > 0 {
        // A disable committed between the authentication and the subscription woke nobody:
        // look once more now that later ones will.
        still_enabled(&state, &device).await?;
    }
    loop {
        let now = state.now();
        let pending = state
            .store
            .pending_for_user(&env_id, &device.user_id, now, super::MAX_LISTED)
            .await?;
        if !pending.is_empty() || now >= deadline || state.shutdown.is_cancelled() {
            let correlation_id = crate::correlation::current().to_string();
            let body = shown(&state, &device, &pending, now, &correlation_id).await?;
            return Ok(no_store(Json(Value::Array(body))));
        }
        tokio::select! {
            () = wake.woken() => still_enabled(&state, &device).await?,
            () = state.clock.sleep_until(deadline) => {}
            () = state.shutdown.cancelled() => {}
        }
    }
}

fn is_jwt_body(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/jwt"))
}

pub async fn decide(
    State(state): State<AppState>,
    Path((env_id, auth_req_id)): Path<(EnvironmentId, AuthReqId)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, DeviceError> {
    let now = state.now();
    super::environment(&state, &env_id).await?;
    if !is_jwt_body(&headers) {
        return Err(DeviceError::invalid_request(
            "The body must be a JWS signed by the device, with Content-Type: application/jwt.",
        ));
    }
    if body.len() > MAX_DEVICE_JWS_BYTES {
        return Err(DeviceError::unauthenticated("the device JWS is too long"));
    }
    let jws = std::str::from_utf8(&body)
        .map_err(|_| DeviceError::unauthenticated("the body is not a JWS"))?
        .trim();
    // Authentication first: the body, and a header if one is sent (same device).
    let header_device = match auth::header_jws(&headers)? {
        Some(h) => Some(auth::verify(&state, &env_id, h, now).await?.device),
        None => None,
    };
    let signed = auth::verify(&state, &env_id, jws, now).await?;
    if header_device.is_some_and(|d| d.id != signed.device.id) {
        return Err(DeviceError::unauthenticated(
            "the Authorization header is from another device than the body",
        ));
    }
    let device = signed.device;
    let req = match state.store.get_ciba_request(&env_id, &auth_req_id).await {
        Ok(r) if r.user_id == device.user_id => r,
        Ok(_) | Err(StoreError::NotFound) => {
            return Err(DeviceError::not_found(
                "There is no such request for this device's user.",
            ));
        }
        Err(e) => return Err(e.into()),
    };
    // Then the content: the request shown, exactly.
    let decision = read_decision(&signed.claims)
        .and_then(|d| check_decision(&req, &d).map(|()| d))
        .map_err(|e| DeviceError::invalid_request(format!("The decision is refused: {e}.")))?;
    let alg = device.algorithm.as_str();
    let input = DecisionInput {
        outcome: decision.outcome,
        channel: DecisionChannel::Device,
        amr: DEVICE_AMR.iter().map(|s| (*s).to_owned()).collect(),
        device_id: Some(device.id.clone()),
        evidence: Some(json!({
            "type": "DEVICE_SIGNED_DECISION",
            "deviceId": device.id,
            "alg": alg,
            "jws": jws,
            "verifiedAt": now.to_rfc3339(),
        })),
    };
    match decide_request(&state, &env_id, &auth_req_id, input, now).await {
        Ok(()) => Ok(StatusCode::NO_CONTENT.into_response()),
        Err(DecideFailure::NotFound) => Err(DeviceError::not_found(
            "There is no such request for this device's user.",
        )),
        Err(DecideFailure::Refused(e)) => Err(DeviceError::conflict(format!(
            "The request cannot be decided: {e}."
        ))),
        Err(DecideFailure::Store(e)) => Err(e.into()),
    }
}
