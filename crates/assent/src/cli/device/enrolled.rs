//! This machine as the enrolled device: the key file loaded, a fresh device JWS for every
//! call, the signed decision (§6.1), the pending requests and the decision's answer.

use std::fmt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use assent_crypto::{JwsSigner, SigningAlg};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::{Method, StatusCode, Url};
use serde_json::{Value, json};

use super::ServerOverride;
use super::http::{Answer, TIMEOUT, call, env_url, http_client, server_url};
use super::key_file::{KeyFile, read_key_file};

/// `typ` of every device JWS, header and decision alike (§6.1).
const JWS_TYP: &str = "device+jwt";
/// Lifetime of each device JWS; the server accepts at most 60 s.
const JWS_LIFETIME_SECS: i64 = 30;

/// A user's decision on a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Decision {
    Approve,
    Deny,
}

impl Decision {
    /// The `decision` claim.
    fn wire(self) -> &'static str {
        match self {
            Decision::Approve => "APPROVE",
            Decision::Deny => "DENY",
        }
    }

    pub(super) fn done(self) -> &'static str {
        match self {
            Decision::Approve => "approved",
            Decision::Deny => "denied",
        }
    }
}

/// A decision the server turned down for that request alone (decided elsewhere, expired, not
/// this user's, binding message mismatch): `listen` reports it and goes on.
#[derive(Debug)]
pub(super) struct Refused(String);

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

pub(super) fn not_pending(id: &str) -> String {
    format!("no pending request {id} for this device's user (decided, expired or not yours)")
}

/// The claims of a device JWS (§6.1): a fresh `jti` and a short life for every call.
fn auth_claims(device_id: &str, audience: &str, now: i64, jti: &str) -> Value {
    json!({
        "iss": device_id,
        "aud": audience,
        "iat": now,
        "exp": now + JWS_LIFETIME_SECS,
        "jti": jti,
    })
}

/// The claims of a signed decision (§6.1): the device JWS claims plus what is decided, with
/// `binding_message` exactly as the server listed it (`null` when the request has none).
fn decision_claims(
    device_id: &str,
    audience: &str,
    now: i64,
    jti: &str,
    auth_req_id: &str,
    decision: Decision,
    binding_message: &Value,
) -> Value {
    let mut claims = auth_claims(device_id, audience, now, jti);
    claims["auth_req_id"] = json!(auth_req_id);
    claims["decision"] = json!(decision.wire());
    claims["binding_message"] = match binding_message {
        Value::String(s) => Value::String(s.clone()),
        _ => Value::Null,
    };
    claims
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

pub(super) fn auth_req_id(request: &Value) -> Option<&str> {
    request.get("authReqId").and_then(Value::as_str)
}

/// This machine as the enrolled device: its key, and where and to whom it speaks.
pub(super) struct Device {
    http: reqwest::Client,
    server: Url,
    env: String,
    device_id: String,
    /// `<issuer>/device`.
    audience: String,
    signer: JwsSigner,
}

impl fmt::Debug for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Device")
            .field("server", &self.server.as_str())
            .field("env", &self.env)
            .field("device_id", &self.device_id)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl Device {
    pub(super) fn load(path: &Path, server: &ServerOverride) -> Result<Device> {
        let file = read_key_file(path)?;
        Device::from_key_file(&file, server.server.as_deref())
            .with_context(|| format!("the key file {} cannot be used", path.display()))
    }

    fn from_key_file(file: &KeyFile, server_override: Option<&str>) -> Result<Device> {
        let server = match server_override {
            Some(s) => server_url(s, "--server")?,
            None => server_url(&file.server, "its server")?,
        };
        let alg = SigningAlg::parse(&file.algorithm)
            .filter(|a| matches!(a, SigningAlg::ES256 | SigningAlg::EdDSA))
            .with_context(|| format!("algorithm {:?} is not ES256 or EdDSA", file.algorithm))?;
        let der = URL_SAFE_NO_PAD
            .decode(file.private_key_pkcs8.trim())
            .map_err(|_| anyhow!("privateKeyPkcs8 is not base64url"))?;
        let signer = JwsSigner::from_pkcs8(alg, &file.device_id, &der)
            .context("privateKeyPkcs8 is not a usable key")?;
        if file.device_id.is_empty() || file.environment_id.is_empty() {
            bail!("deviceId or environmentId is empty");
        }
        Ok(Device {
            http: http_client()?,
            server,
            env: file.environment_id.clone(),
            device_id: file.device_id.clone(),
            audience: format!("{}/device", file.issuer.trim_end_matches('/')),
            signer,
        })
    }

    /// `Authorization: Device <JWS>`, new for every call.
    fn authorization(&self) -> Result<String> {
        let jti = assent_crypto::random_token(16);
        let claims = auth_claims(&self.device_id, &self.audience, unix_now(), &jti);
        let jws = self
            .signer
            .sign(Some(JWS_TYP), &claims)
            .context("cannot sign with the device key")?;
        Ok(format!("Device {jws}"))
    }

    /// The signed decision on one listed request.
    fn decision_jws(&self, request: &Value, decision: Decision, now: i64) -> Result<String> {
        let id = auth_req_id(request).context("the server listed a request without authReqId")?;
        let claims = decision_claims(
            &self.device_id,
            &self.audience,
            now,
            &assent_crypto::random_token(16),
            id,
            decision,
            request.get("bindingMessage").unwrap_or(&Value::Null),
        );
        self.signer
            .sign(Some(JWS_TYP), &claims)
            .context("cannot sign the decision with the device key")
    }

    /// A 401: the server does not take this key.
    fn key_refused(answer: &Answer) -> anyhow::Error {
        anyhow!(
            "the server refused this device's key (disabled, deleted or unknown device): {}",
            answer.text()
        )
    }

    /// The pending requests of the device's user; with `wait` > 0 the server holds the answer
    /// until one exists or `wait` seconds pass.
    pub(super) async fn pending(&self, wait: u64) -> Result<Vec<Value>> {
        let mut url = env_url(&self.server, &self.env, &["device", "requests"])?;
        url.query_pairs_mut().append_pair("wait", &wait.to_string());
        let req = self
            .http
            .request(Method::GET, url)
            .header(reqwest::header::AUTHORIZATION, self.authorization()?)
            .header(reqwest::header::ACCEPT, "application/json")
            .timeout(TIMEOUT + Duration::from_secs(wait));
        let answer = call(req, &self.server).await?;
        let what = "the list of pending requests";
        match answer.status {
            s if s.is_success() => match answer.json(what)? {
                Value::Array(items) => Ok(items),
                _ => bail!("the server's list of pending requests is not a JSON array"),
            },
            StatusCode::UNAUTHORIZED => Err(Device::key_refused(&answer)),
            _ => Err(answer.unexpected(what)),
        }
    }

    /// Sends the signed decision on `request` (one of [`Device::pending`]'s); the body alone
    /// authenticates it, so no `Authorization` header.
    pub(super) async fn decide(&self, request: &Value, decision: Decision) -> Result<()> {
        let id = auth_req_id(request).context("the server listed a request without authReqId")?;
        let url = env_url(&self.server, &self.env, &["device", "requests", id])?;
        let body = self.decision_jws(request, decision, unix_now())?;
        let req = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/jwt")
            .body(body);
        let answer = call(req, &self.server).await?;
        match answer.status {
            s if s.is_success() => Ok(()),
            StatusCode::UNAUTHORIZED => Err(Device::key_refused(&answer)),
            StatusCode::CONFLICT => Err(Refused(format!(
                "{id} was already decided or has expired: {}",
                answer.text()
            ))
            .into()),
            StatusCode::NOT_FOUND => Err(Refused(not_pending(id)).into()),
            StatusCode::BAD_REQUEST => Err(Refused(format!(
                "the server rejected the decision on {id}: {}",
                answer.text()
            ))
            .into()),
            _ => Err(answer.unexpected("the decision")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::key_file::tests::key_file;
    use super::*;

    #[test]
    fn debug_never_shows_the_private_key() {
        let file = key_file(SigningAlg::EdDSA);
        let device = Device::from_key_file(&file, None).unwrap();
        for text in [
            format!("{file:?}"),
            format!("{file:#?}"),
            format!("{device:?}"),
        ] {
            assert!(!text.contains(&file.private_key_pkcs8), "{text}");
            assert!(!text.contains(&file.private_key_pkcs8[..16]), "{text}");
        }
        assert!(format!("{file:?}").contains("<redacted>"));
        assert!(format!("{file:?}").contains("dev-1"));
    }

    #[test]
    fn decision_claims_have_every_member_and_the_exact_binding_message() {
        let message = json!("  Pump 4: pay 12,00 € ?  ");
        let c = decision_claims(
            "dev-1",
            "https://x/E/as/device",
            1000,
            "j1",
            "r-1",
            Decision::Deny,
            &message,
        );
        assert_eq!(
            c,
            json!({
                "iss": "dev-1", "aud": "https://x/E/as/device", "iat": 1000, "exp": 1030,
                "jti": "j1", "auth_req_id": "r-1", "decision": "DENY",
                "binding_message": "  Pump 4: pay 12,00 € ?  "
            })
        );
        let c = decision_claims("d", "a", 5, "j", "r", Decision::Approve, &Value::Null);
        assert_eq!(c["decision"], "APPROVE");
        assert!(c.as_object().unwrap().contains_key("binding_message"));
        assert_eq!(c["binding_message"], Value::Null);
    }

    #[test]
    fn the_decision_is_signed_by_the_device_key_with_its_header() {
        for alg in [SigningAlg::ES256, SigningAlg::EdDSA] {
            let file = key_file(alg);
            let device = Device::from_key_file(&file, None).unwrap();
            assert_eq!(device.audience, "http://127.0.0.1:1/env-1/as/device");
            let request =
                json!({"authReqId": "r-9", "bindingMessage": "Code 7 4 1", "scope": "openid"});
            let jws = device
                .decision_jws(&request, Decision::Approve, 2000)
                .unwrap();

            let header = assent_crypto::decode_header(&jws).unwrap();
            assert_eq!(header.alg, alg.as_str());
            assert_eq!(header.kid.as_deref(), Some("dev-1"));
            assert_eq!(header.typ.as_deref(), Some("device+jwt"));
            let mut jwk = file.public_key_jwk.clone();
            jwk["kid"] = json!("dev-1");
            let keys = assent_crypto::JwkSet::parse(&json!({ "keys": [jwk] })).unwrap();
            let claims = assent_crypto::verify_jws(&jws, &keys, &[alg]).unwrap();
            assert_eq!(claims["iss"], "dev-1");
            assert_eq!(claims["aud"], "http://127.0.0.1:1/env-1/as/device");
            assert_eq!(claims["iat"], 2000);
            assert_eq!(claims["exp"], 2030);
            assert_eq!(claims["auth_req_id"], "r-9");
            assert_eq!(claims["decision"], "APPROVE");
            assert_eq!(claims["binding_message"], "Code 7 4 1");
            assert!(claims["jti"].as_str().is_some_and(|j| j.len() >= 16));

            let other = device
                .decision_jws(&request, Decision::Approve, 2000)
                .unwrap();
            let other = assent_crypto::decode_claims_unverified(&other).unwrap();
            assert_ne!(other["jti"], claims["jti"], "every JWS needs a fresh jti");
            let none = device
                .decision_jws(&json!({"authReqId": "r-8"}), Decision::Deny, 2000)
                .unwrap();
            let none = assent_crypto::decode_claims_unverified(&none).unwrap();
            assert_eq!(none["binding_message"], Value::Null);
        }
    }

    #[test]
    fn each_authorization_header_is_a_new_device_jws() {
        let device = Device::from_key_file(&key_file(SigningAlg::ES256), None).unwrap();
        let (a, b) = (
            device.authorization().unwrap(),
            device.authorization().unwrap(),
        );
        let claims = |h: &str| {
            let jws = h.strip_prefix("Device ").unwrap();
            assent_crypto::decode_claims_unverified(jws).unwrap()
        };
        let (ca, cb) = (claims(&a), claims(&b));
        assert_ne!(ca["jti"], cb["jti"]);
        assert_eq!(ca["iss"], "dev-1");
        let lifetime = ca["exp"].as_i64().unwrap() - ca["iat"].as_i64().unwrap();
        assert!(lifetime > 0 && lifetime <= 60, "{lifetime}");
        assert!(!ca.contains_key("decision"));
    }

    #[test]
    fn the_server_override_and_bad_key_files() {
        let mut file = key_file(SigningAlg::ES256);
        let device = Device::from_key_file(&file, Some("http://127.0.0.2:9/prefix")).unwrap();
        assert_eq!(device.server.as_str(), "http://127.0.0.2:9/prefix");
        let url = env_url(&device.server, &device.env, &["device", "requests", "a/b"]).unwrap();
        assert_eq!(
            url.as_str(),
            "http://127.0.0.2:9/prefix/env-1/device/requests/a%2Fb"
        );
        assert!(Device::from_key_file(&file, Some("ftp://x")).is_err());
        file.algorithm = "RS256".into();
        assert!(Device::from_key_file(&file, None).is_err());
        file.algorithm = "EdDSA".into();
        assert!(
            Device::from_key_file(&file, None).is_err(),
            "an ES256 key is no EdDSA key"
        );
    }
}
