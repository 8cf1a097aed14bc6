//! Device keys (§6.1): the claims a device-signed JWS must carry, and what a signed decision
//! must say about the request it decides.
//!
//! Pure like the rest of core: the server verifies the signature (with the device's key, the
//! header's `alg`, `kid` and `typ`, `assent_crypto::verify_jws`), then holds the claims to
//! [`device_jwt_rules`] at `now`, records the `jti` as used, and for a decision reads it with
//! [`read_decision`] and compares it with the request as stored ([`check_decision`]).

use serde_json::{Map, Value};

use crate::jwt::{ClaimRules, JtiRule, MAX_JTI_LEN, SubjectRule, TimeClaimRule};
use crate::model::{CibaRequest, DecisionOutcome, DeviceKeyAlgorithm};

/// The `typ` header of every device-signed JWS.
pub const DEVICE_JWT_TYPE: &str = "device+jwt";

/// How far ahead of `now` a device JWS may expire (§6.1).
pub const MAX_DEVICE_JWT_LIFETIME_SECS: i64 = 60;

/// How long an enrolment code stays valid (§5).
pub const ENROLLMENT_CODE_LIFETIME_SECS: i64 = 600;

/// The `amr` of an ID token whose request a device key approved (§6.1).
pub const DEVICE_AMR: [&str; 2] = ["mfa", "hwk"];

/// The audience of every device JWS: `<issuer>/device`.
pub fn device_audience(issuer: &str) -> String {
    format!("{issuer}/device")
}

/// The namespace under which a device's `jti`s are single use (`JtiStore::use_jti`): one per
/// device, for header and body JWS alike.
pub fn jti_namespace(device_id: &str) -> String {
    format!("device:{device_id}")
}

/// The claim rules of a JWS signed by device `device_id` for the environment whose issuer is
/// `issuer`: `iss` = the device id, `aud` = `<issuer>/device`, `iat` required and not in the
/// future, `exp` required and at most 60 s ahead, `nbf` (if sent) reached, `jti` required (the
/// caller records it as used until `exp`).
pub fn device_jwt_rules(device_id: &str, issuer: &str) -> ClaimRules {
    ClaimRules {
        issuer: Some(device_id.to_owned()),
        subject: SubjectRule::Ignore,
        audiences: Some(vec![device_audience(issuer)]),
        require_exp: true,
        allow_expired: false,
        max_lifetime_secs: Some(MAX_DEVICE_JWT_LIFETIME_SECS),
        nbf: TimeClaimRule::NotInFuture,
        iat: TimeClaimRule::RequiredNotInFuture,
        jti: JtiRule::Required {
            max_len: MAX_JTI_LEN,
        },
    }
}

/// Whether a JOSE `typ` header names a device JWS (media types compare case-insensitively,
/// RFC 7515 §4.1.9).
pub fn is_device_jwt_type(typ: Option<&str>) -> bool {
    typ.is_some_and(|t| t.eq_ignore_ascii_case(DEVICE_JWT_TYPE))
}

/// The JWS `alg` a device key signs with.
pub fn jws_alg(algorithm: DeviceKeyAlgorithm) -> &'static str {
    algorithm.as_str()
}

/// What a signed decision says (the claims beyond those of [`device_jwt_rules`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedDecision {
    pub auth_req_id: String,
    /// APPROVE or DENY (a device cannot cancel).
    pub outcome: DecisionOutcome,
    /// As the device showed it; `None` when the claim is absent or null.
    pub binding_message: Option<String>,
}

/// Why a signed decision is refused: each is a 400, and the request stays pending.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecisionError {
    #[error("the signed decision has no auth_req_id")]
    MissingAuthReqId,
    #[error("the signed decision's auth_req_id is not the request decided")]
    OtherRequest,
    #[error("the signed decision's decision must be APPROVE or DENY")]
    InvalidDecision,
    #[error("the signed decision's binding_message must be a string or null")]
    InvalidBindingMessage,
    #[error("the signed decision's binding_message is not the request's binding message")]
    BindingMessageMismatch,
}

/// Reads the decision claims of a verified device JWS.
pub fn read_decision(claims: &Map<String, Value>) -> Result<SignedDecision, DecisionError> {
    let auth_req_id = match claims.get("auth_req_id") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => return Err(DecisionError::MissingAuthReqId),
    };
    let outcome = match claims.get("decision").and_then(Value::as_str) {
        Some("APPROVE") => DecisionOutcome::Approve,
        Some("DENY") => DecisionOutcome::Deny,
        _ => return Err(DecisionError::InvalidDecision),
    };
    let binding_message = match claims.get("binding_message") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(DecisionError::InvalidBindingMessage),
    };
    Ok(SignedDecision {
        auth_req_id,
        outcome,
        binding_message,
    })
}

/// The decision must be about `req` (the one in the URL) and carry its binding message
/// exactly as stored (byte for byte; none when it has none), so a device cannot approve
/// something other than what it showed.
pub fn check_decision(req: &CibaRequest, decision: &SignedDecision) -> Result<(), DecisionError> {
    if decision.auth_req_id != req.auth_req_id.as_str() {
        return Err(DecisionError::OtherRequest);
    }
    if decision.binding_message != req.binding_message {
        return Err(DecisionError::BindingMessageMismatch);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::Timestamp;
    use crate::jwt::ClaimError;
    use crate::model::{CibaStatus, DeliveryMode};

    fn claims(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            other => panic!("not an object: {other}"),
        }
    }

    const ISSUER: &str = "https://idp.example/env/as";

    fn valid(now: i64) -> Value {
        json!({
            "iss": "dev-1", "aud": "https://idp.example/env/as/device",
            "iat": now, "exp": now + 30, "jti": "j-1",
        })
    }

    fn check(v: Value, now: i64) -> Result<(), ClaimError> {
        device_jwt_rules("dev-1", ISSUER)
            .check(&claims(v), Timestamp::from_secs(now))
            .map(|_| ())
    }

    #[test]
    fn a_device_jwt_is_held_to_every_claim_rule() {
        let now = 1_700_000_000;
        assert_eq!(check(valid(now), now), Ok(()));
        let with = |k: &str, v: Value| {
            let mut c = valid(now);
            c[k] = v;
            c
        };
        let without = |k: &str| {
            let mut c = valid(now);
            c.as_object_mut().map(|m| m.remove(k));
            c
        };
        assert_eq!(
            check(with("iss", json!("dev-2")), now),
            Err(ClaimError::Issuer)
        );
        assert_eq!(
            check(with("aud", json!("https://idp.example/env/as")), now),
            Err(ClaimError::Audience)
        );
        assert_eq!(check(without("exp"), now), Err(ClaimError::MissingExp));
        assert_eq!(
            check(with("exp", json!(now)), now),
            Err(ClaimError::Expired)
        );
        assert_eq!(
            check(with("exp", json!(now + 120)), now),
            Err(ClaimError::TooFarAhead)
        );
        assert_eq!(check(without("iat"), now), Err(ClaimError::MissingIat));
        assert_eq!(
            check(with("iat", json!(now + 60)), now),
            Err(ClaimError::IssuedInFuture)
        );
        assert_eq!(check(without("jti"), now), Err(ClaimError::MissingJti));
        assert_eq!(
            check(with("jti", json!("")), now),
            Err(ClaimError::InvalidJti)
        );
    }

    fn request(binding_message: Option<&str>) -> CibaRequest {
        CibaRequest {
            auth_req_id: "req-1".into(),
            environment_id: "env".into(),
            application_id: "app".into(),
            user_id: "user".into(),
            scope: "openid".into(),
            binding_message: binding_message.map(str::to_owned),
            acr_values: None,
            authorization_details: None,
            delivery_mode: DeliveryMode::Poll,
            client_notification_token: None,
            created_at: Timestamp::from_secs(0),
            expires_at: Timestamp::from_secs(120),
            interval_seconds: 2,
            last_polled_at: None,
            status: CibaStatus::Pending,
            decision: None,
            redeemed_at: None,
        }
    }

    #[test]
    fn a_decision_must_name_the_request_and_its_binding_message_exactly() {
        let read = |v: Value| read_decision(&claims(v));
        let d = read(
            json!({"auth_req_id": "req-1", "decision": "APPROVE", "binding_message": "Pump 4"}),
        )
        .unwrap();
        assert_eq!(d.outcome, DecisionOutcome::Approve);
        assert_eq!(check_decision(&request(Some("Pump 4")), &d), Ok(()));
        assert_eq!(
            check_decision(&request(Some("Pump 5")), &d),
            Err(DecisionError::BindingMessageMismatch)
        );
        assert_eq!(
            check_decision(&request(None), &d),
            Err(DecisionError::BindingMessageMismatch)
        );
        let other =
            read(json!({"auth_req_id": "req-2", "decision": "DENY", "binding_message": "Pump 4"}))
                .unwrap();
        assert_eq!(
            check_decision(&request(Some("Pump 4")), &other),
            Err(DecisionError::OtherRequest)
        );
        let none = read(json!({"auth_req_id": "req-1", "decision": "DENY"})).unwrap();
        assert_eq!(check_decision(&request(None), &none), Ok(()));
        assert_eq!(
            check_decision(&request(Some("")), &none),
            Err(DecisionError::BindingMessageMismatch)
        );
        assert_eq!(
            read(json!({"auth_req_id": "req-1", "decision": "CANCEL"})),
            Err(DecisionError::InvalidDecision)
        );
        assert_eq!(
            read(json!({"decision": "APPROVE"})),
            Err(DecisionError::MissingAuthReqId)
        );
        assert_eq!(
            read(json!({"auth_req_id": "req-1", "decision": "APPROVE", "binding_message": 4})),
            Err(DecisionError::InvalidBindingMessage)
        );
    }
}
