//! Device authentication (§6.1): a compact JWS signed by the device's key, in an
//! `Authorization: Device <JWS>` header or as the body of a decision. Every check is explicit
//! and each failure is the same 401 ([`DeviceError::unauthenticated`], the reason logged):
//!
//! 1. header `typ` = `device+jwt`, a `kid` naming a device of this environment;
//! 2. the device enabled, its user present and enabled;
//! 3. header `alg` = the device's algorithm (ES256 or EdDSA; `none`, HS*, RS* never), the
//!    signature verified with the device's registered public key only;
//! 4. the claims of `assent_core::device::device_jwt_rules`: `iss` = device id, `aud` =
//!    `<issuer>/device`, `iat` present and not in the future, `exp` present, not passed, at most
//!    60 s ahead, `nbf` reached, `jti` present;
//! 5. the `jti` unused for this device (recorded until `exp`).

use assent_core::device::{device_jwt_rules, is_device_jwt_type, jti_namespace};
use assent_core::{Device, EnvironmentId, Timestamp};
use assent_crypto::{JwkSet, SigningAlg, decode_header, verify_jws};
use assent_store::StoreError;
use axum::http::{HeaderMap, header};
use serde_json::{Map, Value};

use super::error::DeviceError;
use crate::service::Deps;

/// The longest device JWS read (a decision with a 64-character binding message is ~600 bytes).
pub const MAX_DEVICE_JWS_BYTES: usize = 8 * 1024;

/// A verified device JWS: who signed it and what it claims.
pub struct Verified {
    pub device: Device,
    pub claims: Map<String, Value>,
}

/// The JWS of an `Authorization: Device <JWS>` header, if the request has one. A header of
/// another scheme, or an unreadable one, is an authentication failure.
pub fn header_jws(headers: &HeaderMap) -> Result<Option<&str>, DeviceError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| DeviceError::unauthenticated("unreadable Authorization header"))?;
    match value.split_once(' ') {
        Some((scheme, jws)) if scheme.eq_ignore_ascii_case("device") && !jws.trim().is_empty() => {
            Ok(Some(jws.trim()))
        }
        _ => Err(DeviceError::unauthenticated(
            "the Authorization scheme is not Device",
        )),
    }
}

/// The device a request's `Authorization: Device` header authenticates; none is a 401.
pub async fn authenticate(
    deps: &Deps,
    env_id: &EnvironmentId,
    headers: &HeaderMap,
    now: Timestamp,
) -> Result<Device, DeviceError> {
    let jws = header_jws(headers)?
        .ok_or_else(|| DeviceError::unauthenticated("no Authorization: Device header"))?;
    Ok(verify(deps, env_id, jws, now).await?.device)
}

/// Step 2: `device` (as just read) is enabled, and its user exists and is enabled.
pub async fn usable(deps: &Deps, device: &Device) -> Result<(), DeviceError> {
    if !device.enabled {
        return Err(DeviceError::unauthenticated("the device is disabled"));
    }
    match deps
        .store
        .get_user(&device.environment_id, &device.user_id)
        .await
    {
        Ok(user) if user.enabled => Ok(()),
        Ok(_) => Err(DeviceError::unauthenticated(
            "the device's user is disabled",
        )),
        Err(StoreError::NotFound) => Err(DeviceError::unauthenticated("the device's user is gone")),
        Err(e) => Err(e.into()),
    }
}

/// Verifies one device JWS (steps 1–5 above) and records its `jti` as used.
pub async fn verify(
    deps: &Deps,
    env_id: &EnvironmentId,
    jws: &str,
    now: Timestamp,
) -> Result<Verified, DeviceError> {
    if jws.len() > MAX_DEVICE_JWS_BYTES {
        return Err(DeviceError::unauthenticated("the device JWS is too long"));
    }
    let header =
        decode_header(jws).map_err(|_| DeviceError::unauthenticated("malformed device JWS"))?;
    if !is_device_jwt_type(header.typ.as_deref()) {
        return Err(DeviceError::unauthenticated("typ is not device+jwt"));
    }
    let kid = header
        .kid
        .as_deref()
        .ok_or_else(|| DeviceError::unauthenticated("no kid"))?;
    let device = match deps.store.get_device(env_id, kid).await {
        Ok(d) => d,
        Err(StoreError::NotFound) => return Err(DeviceError::unauthenticated("unknown device")),
        Err(e) => return Err(e.into()),
    };
    usable(deps, &device).await?;
    let alg = SigningAlg::parse(device.algorithm.as_str())
        .ok_or_else(|| DeviceError::unauthenticated("the device's algorithm is unusable"))?;
    if header.alg != alg.as_str() {
        return Err(DeviceError::unauthenticated(
            "alg is not the device key's algorithm",
        ));
    }
    let keys = JwkSet::single(&device.public_jwk)
        .map_err(|_| DeviceError::unauthenticated("the device's stored key is unusable"))?;
    let claims = verify_jws(jws, &keys, &[alg])
        .map_err(|_| DeviceError::unauthenticated("the signature does not verify"))?;
    let checked = device_jwt_rules(&device.id, &deps.issuer(env_id))
        .check(&claims, now)
        .map_err(|e| DeviceError::unauthenticated(&e.to_string()))?;
    let (Some(jti), Some(exp)) = (checked.jti, checked.expires_at) else {
        return Err(DeviceError::unauthenticated("no jti or exp"));
    };
    if !deps
        .store
        .use_jti(env_id, &jti_namespace(&device.id), &jti, exp, now)
        .await?
    {
        return Err(DeviceError::unauthenticated("the jti was used before"));
    }
    Ok(Verified { device, claims })
}
