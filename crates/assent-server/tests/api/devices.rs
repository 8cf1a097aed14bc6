//! The device channel (§6.1) and the audit log (§6.4): registration and enrolment, every check
//! of a device-signed JWS beside its attack, long polling and the event stream, signed
//! decisions through the one decision path, and the activities they leave.

use std::sync::Arc;

use assent_crypto::{KeyMaterial, SigningAlg, generate_key};
use aws_lc_rs::hmac;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair};
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use base64::Engine;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::support::*;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn claims_of(jwt: &str) -> Value {
    let part = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap(),
    )
    .unwrap()
}

/// A device's key pair, on the test side.
struct Key {
    km: KeyMaterial,
}

impl Key {
    fn new(alg: SigningAlg) -> Key {
        Key {
            km: generate_key(alg, "ignored").unwrap(),
        }
    }

    /// The public JWK as a device would send it (no kid: the server names the device).
    fn public_jwk(&self) -> Value {
        let mut jwk = self.km.public_jwk.clone();
        jwk.as_object_mut().unwrap().remove("kid");
        jwk
    }

    fn sign_bytes(&self, msg: &[u8]) -> Vec<u8> {
        match self.km.alg {
            SigningAlg::ES256 => {
                let kp =
                    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &self.km.pkcs8_der)
                        .unwrap();
                kp.sign(&SystemRandom::new(), msg)
                    .unwrap()
                    .as_ref()
                    .to_vec()
            }
            SigningAlg::EdDSA => Ed25519KeyPair::from_pkcs8(&self.km.pkcs8_der)
                .unwrap()
                .sign(msg)
                .as_ref()
                .to_vec(),
            other => panic!("not a device algorithm: {other:?}"),
        }
    }

    /// A compact JWS with exactly `header` and `claims`, signed by this key.
    fn jws(&self, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let sig = self.sign_bytes(input.as_bytes());
        format!("{input}.{}", b64(&sig))
    }
}

/// A registered device: its id, environment, user and key.
struct Dev {
    id: String,
    env_id: String,
    key: Arc<Key>,
    alg: &'static str,
}

/// Awaits `fut`, failing the test instead of hanging it when something that should happen
/// never does (a guard against a lost wake-up, not a timing assertion: the bound is generous).
async fn eventually<T>(fut: impl std::future::Future<Output = T>, what: &str) -> T {
    tokio::time::timeout(std::time::Duration::from_secs(60), fut)
        .await
        .unwrap_or_else(|_| panic!("never happened: {what}"))
}

fn now_secs(h: &Harness) -> i64 {
    h.state.now().secs()
}

impl Dev {
    fn header(&self) -> Value {
        json!({"alg": self.alg, "kid": self.id, "typ": "device+jwt"})
    }

    fn claims(&self, h: &Harness) -> Value {
        let now = now_secs(h);
        json!({
            "iss": self.id,
            "aud": format!("{}/device", h.issuer(&self.env_id)),
            "iat": now,
            "exp": now + 30,
            "jti": assent_crypto::random_token(16),
        })
    }

    /// A valid authentication JWS.
    fn token(&self, h: &Harness) -> String {
        self.key.jws(&self.header(), &self.claims(h))
    }

    /// A valid signed decision on `req` showing `binding_message`.
    fn decision(&self, h: &Harness, req: &str, decision: &str, binding: Option<&str>) -> String {
        let mut claims = self.claims(h);
        claims["auth_req_id"] = json!(req);
        claims["decision"] = json!(decision);
        claims["binding_message"] = json!(binding);
        self.key.jws(&self.header(), &claims)
    }
}

async fn register(h: &Harness, env_id: &str, user_id: &str, alg: SigningAlg) -> Dev {
    let key = Key::new(alg);
    let r = h
        .admin(
            Method::POST,
            &format!("/v1/environments/{env_id}/users/{user_id}/devices"),
            Some(json!({"type": "DEVICE_KEY", "name": "Alice's phone", "publicKeyJwk": key.public_jwk()})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    Dev {
        id: r.body["id"].as_str().unwrap().to_owned(),
        env_id: env_id.to_owned(),
        key: Arc::new(key),
        alg: if alg == SigningAlg::ES256 {
            "ES256"
        } else {
            "EdDSA"
        },
    }
}

fn device_get(path: &str, auth: Option<String>) -> Request<Body> {
    let mut req = Request::builder().method(Method::GET).uri(path);
    if let Some(a) = auth {
        req = req.header(header::AUTHORIZATION, a);
    }
    req.body(Body::empty()).unwrap()
}

async fn list(h: &Harness, dev: &Dev, auth: Option<String>) -> Resp {
    h.send(device_get(
        &format!("/{}/device/requests", dev.env_id),
        auth,
    ))
    .await
}

async fn post_decision(h: &Harness, dev: &Dev, req: &str, jws: &str, auth: Option<String>) -> Resp {
    let mut r = Request::builder()
        .method(Method::POST)
        .uri(format!("/{}/device/requests/{req}", dev.env_id))
        .header(header::CONTENT_TYPE, "application/jwt");
    if let Some(a) = auth {
        r = r.header(header::AUTHORIZATION, a);
    }
    h.send(r.body(Body::from(jws.to_owned())).unwrap()).await
}

fn assert_unauthenticated(r: &Resp, what: &str) {
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{what}: {}", r.text);
    assert_eq!(r.error(), "invalid_token", "{what}");
    assert_eq!(
        r.header("www-authenticate"),
        Some("Device error=\"invalid_token\""),
        "{what}"
    );
}

/// A PRODUCTION environment with an app and alice: nothing but a device can decide there.
async fn production(h: &Harness) -> (Client, String) {
    let env = h.create_env("PRODUCTION").await;
    let client = h.create_app(&env, json!({})).await;
    let user = h.create_user(&env, json!({"username": "alice"})).await;
    (client, user)
}

async fn start_with(h: &Harness, c: &Client, binding: Option<&str>) -> String {
    let mut pairs = vec![("scope", "openid profile"), ("login_hint", "alice")];
    if let Some(b) = binding {
        pairs.push(("binding_message", b));
    }
    let r = h.ciba(c, &pairs).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.body["auth_req_id"].as_str().unwrap().to_owned()
}

async fn activities(h: &Harness, env_id: &str, query: &str) -> Vec<Value> {
    let r = h
        .admin(
            Method::GET,
            &format!("/v1/environments/{env_id}/activities?{query}"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.body["_embedded"]["activities"]
        .as_array()
        .unwrap()
        .clone()
}

fn types(entries: &[Value]) -> Vec<&str> {
    entries
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect()
}

// --- registration and enrolment ------------------------------------------------------------

#[tokio::test]
async fn devices_are_registered_listed_updated_and_deleted_with_their_keys_checked() {
    let h = Harness::new().await;
    let (client, user) = production(&h).await;
    let env = client.env_id.to_string();
    let base = format!("/v1/environments/{env}/users/{user}/devices");
    let es = register(&h, &env, &user, SigningAlg::ES256).await;
    let ed = register(&h, &env, &user, SigningAlg::EdDSA).await;

    let r = h
        .admin(Method::GET, &format!("{base}/{}", es.id), None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["algorithm"], "ES256");
    assert_eq!(r.body["type"], "DEVICE_KEY");
    assert_eq!(r.body["enabled"], true);
    assert_eq!(r.body["publicKeyJwk"]["kid"], es.id.as_str());
    assert!(r.body["publicKeyJwk"].get("d").is_none());
    let r = h.admin(Method::GET, &base, None).await;
    assert_eq!(r.body["count"], 2);
    let mut algs: Vec<&str> = r.body["_embedded"]["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["algorithm"].as_str().unwrap())
        .collect();
    algs.sort_unstable();
    assert_eq!(algs, ["ES256", "EdDSA"]);

    // Keys that are not ES256/EdDSA public keys are refused, naming the member.
    let rsa = generate_key(SigningAlg::RS256, "k").unwrap().public_jwk;
    let p384 = generate_key(SigningAlg::ES384, "k").unwrap().public_jwk;
    let mut private = Key::new(SigningAlg::ES256).public_jwk();
    private["d"] = json!(b64(&[7u8; 32]));
    for (what, jwk) in [
        ("RSA", rsa),
        ("P-384", p384),
        ("private part", private),
        ("oct", json!({"kty": "oct", "k": "c2VjcmV0"})),
        ("not an object", json!("key")),
    ] {
        let r = h
            .admin(
                Method::POST,
                &base,
                Some(json!({"name": "x", "publicKeyJwk": jwk})),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{what}: {}", r.text);
        assert_eq!(r.body["details"][0]["target"], "publicKeyJwk", "{what}");
    }
    let r = h
        .admin(Method::POST, &base, Some(json!({"name": "x"})))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = h
        .admin(
            Method::POST,
            &format!(
                "/v1/environments/{env}/users/{}/devices",
                assent_core::new_id()
            ),
            Some(json!({"publicKeyJwk": Key::new(SigningAlg::ES256).public_jwk()})),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // Disable, rename, delete.
    let r = h
        .admin(
            Method::PATCH,
            &format!("{base}/{}", ed.id),
            Some(json!({"enabled": false, "name": "Old phone"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["enabled"], false);
    assert_eq!(r.body["name"], "Old phone");
    let r = h
        .admin(
            Method::PATCH,
            &format!("{base}/{}", ed.id),
            Some(json!({"publicKeyJwk": {}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = h
        .admin(Method::DELETE, &format!("{base}/{}", ed.id), None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = h
        .admin(Method::GET, &format!("{base}/{}", ed.id), None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // Another user's path does not reach the device.
    let bob = h.create_user(&env, json!({"username": "bob"})).await;
    let r = h
        .admin(
            Method::GET,
            &format!("/v1/environments/{env}/users/{bob}/devices/{}", es.id),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // Audited, by the administrator.
    let log = activities(&h, &env, &format!("userId={user}")).await;
    assert_eq!(
        types(&log),
        [
            "DEVICE_ENROLLED",
            "DEVICE_ENROLLED",
            "DEVICE_DISABLED",
            "DEVICE_DELETED"
        ]
    );
    assert!(log.iter().all(|e| e["actor"]["type"] == "ADMIN"));
    assert_eq!(log[2]["details"]["enabled"], false);
    assert_eq!(log[2]["deviceId"], ed.id.as_str());
}

async fn enrollment_code(h: &Harness, env: &str, user: &str) -> String {
    let r = h
        .admin(
            Method::POST,
            &format!("/v1/environments/{env}/users/{user}/deviceEnrollments"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["user"]["id"], user);
    r.body["code"].as_str().unwrap().to_owned()
}

async fn enroll(h: &Harness, env: &str, code: &str, jwk: &Value) -> Resp {
    let req = Request::builder()
        .method(Method::POST)
        .uri(format!("/{env}/device/enroll"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            json!({"code": code, "name": "Phone", "publicKeyJwk": jwk}).to_string(),
        ))
        .unwrap();
    h.send(req).await
}

#[tokio::test]
async fn enrolment_codes_are_single_use_expire_after_ten_minutes_and_are_stored_hashed() {
    let h = Harness::new().await;
    let (client, user) = production(&h).await;
    let env = client.env_id.to_string();
    let key = Key::new(SigningAlg::EdDSA);

    let code = enrollment_code(&h, &env, &user).await;
    assert!(code.len() >= 22, "at least 128 bits");
    let r = enroll(&h, &env, &code, &key.public_jwk()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let device_id = r.body["deviceId"].as_str().unwrap().to_owned();
    let dev = Dev {
        id: device_id.clone(),
        env_id: env.clone(),
        key: Arc::new(key),
        alg: "EdDSA",
    };
    assert_eq!(
        list(&h, &dev, Some(format!("Device {}", dev.token(&h))))
            .await
            .status,
        StatusCode::OK
    );

    // Used: refused the second time.
    let again = enroll(&h, &env, &code, &Key::new(SigningAlg::ES256).public_jwk()).await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST);
    assert_eq!(again.error(), "invalid_grant");

    // Expired after ten minutes.
    let late = enrollment_code(&h, &env, &user).await;
    h.clock.advance_secs(600);
    let r = enroll(&h, &env, &late, &Key::new(SigningAlg::ES256).public_jwk()).await;
    assert_eq!(r.error(), "invalid_grant", "{}", r.text);

    // A bad key does not use up the code.
    let code = enrollment_code(&h, &env, &user).await;
    let r = enroll(&h, &env, &code, &json!({"kty": "RSA"})).await;
    assert_eq!(r.error(), "invalid_request");
    // Of concurrent enrolments with one code, exactly one succeeds.
    let attempts = (0..8).map(|_| {
        let jwk = Key::new(SigningAlg::ES256).public_jwk();
        let (h, env, code) = (&h, &env, &code);
        async move { enroll(h, env, code, &jwk).await.status }
    });
    let statuses = futures_util::future::join_all(attempts).await;
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::CREATED)
            .count(),
        1,
        "{statuses:?}"
    );

    // The environment-level form names the user in the body.
    let r = h
        .admin(
            Method::POST,
            &format!("/v1/environments/{env}/deviceEnrollments"),
            Some(json!({"userId": user})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = h
        .admin(
            Method::POST,
            &format!("/v1/environments/{env}/deviceEnrollments"),
            Some(json!({"userId": assent_core::new_id()})),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // Only hashes are stored: the code appears nowhere in the database file.
    let log = activities(&h, &env, "type=DEVICE_ENROLLED").await;
    assert_eq!(log.len(), 2);
    assert_eq!(log[0]["deviceId"], device_id.as_str());
    assert_eq!(log[0]["actor"]["type"], "DEVICE");
    assert_eq!(log[0]["user"]["id"], user.as_str());
    assert_eq!(log[0]["details"]["via"], "ENROLLMENT_CODE");
}

// --- authentication ------------------------------------------------------------------------

#[tokio::test]
async fn every_check_of_a_device_jws_is_enforced_beside_the_valid_case() {
    let h = Harness::new().await;
    let (client, user) = production(&h).await;
    let env = client.env_id.to_string();
    let dev = register(&h, &env, &user, SigningAlg::ES256).await;
    let other = register(&h, &env, &user, SigningAlg::ES256).await;
    let auth = |jws: &str| Some(format!("Device {jws}"));

    // The valid case.
    let r = list(&h, &dev, auth(&dev.token(&h))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body, json!([]));

    let with = |k: &str, v: Value| {
        let mut c = dev.claims(&h);
        c[k] = v;
        c
    };
    let without = |k: &str| {
        let mut c = dev.claims(&h);
        c.as_object_mut().unwrap().remove(k);
        c
    };
    let now = now_secs(&h);
    let forged = {
        // Signed by another key under this device's id.
        other.key.jws(&dev.header(), &dev.claims(&h))
    };
    let hs256 = {
        // HS256 keyed with the device's public key (the classic key-confusion attack).
        let header = json!({"alg": "HS256", "kid": dev.id, "typ": "device+jwt"});
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(dev.claims(&h).to_string().as_bytes())
        );
        let public = serde_json::to_vec(&dev.key.public_jwk()).unwrap();
        let tag = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, &public),
            input.as_bytes(),
        );
        format!("{input}.{}", b64(tag.as_ref()))
    };
    let none = format!(
        "{}.{}.",
        b64(json!({"alg": "none", "kid": dev.id, "typ": "device+jwt"})
            .to_string()
            .as_bytes()),
        b64(dev.claims(&h).to_string().as_bytes())
    );
    let replayed = dev.token(&h);
    assert_eq!(list(&h, &dev, auth(&replayed)).await.status, StatusCode::OK);
    let cases: Vec<(&str, Option<String>)> = vec![
        ("no header", None),
        ("another scheme", Some(format!("Bearer {}", dev.token(&h)))),
        ("not a JWS", auth("abc")),
        ("forged signature", auth(&forged)),
        ("HS256 with the public key", auth(&hs256)),
        ("alg none", auth(&none)),
        (
            "alg not the key's",
            auth(&dev.key.jws(
                &json!({"alg": "EdDSA", "kid": dev.id, "typ": "device+jwt"}),
                &dev.claims(&h),
            )),
        ),
        (
            "wrong typ",
            auth(&dev.key.jws(
                &json!({"alg": "ES256", "kid": dev.id, "typ": "JWT"}),
                &dev.claims(&h),
            )),
        ),
        (
            "no typ",
            auth(
                &dev.key
                    .jws(&json!({"alg": "ES256", "kid": dev.id}), &dev.claims(&h)),
            ),
        ),
        (
            "no kid",
            auth(&dev.key.jws(
                &json!({"alg": "ES256", "typ": "device+jwt"}),
                &dev.claims(&h),
            )),
        ),
        (
            "unknown kid",
            auth(&dev.key.jws(
                &json!({"alg": "ES256", "kid": assent_core::new_id(), "typ": "device+jwt"}),
                &dev.claims(&h),
            )),
        ),
        (
            "iss of another device",
            auth(&dev.key.jws(&dev.header(), &with("iss", json!(other.id)))),
        ),
        (
            "wrong audience",
            auth(
                &dev.key
                    .jws(&dev.header(), &with("aud", json!(h.issuer(&env)))),
            ),
        ),
        (
            "expired",
            auth(&dev.key.jws(&dev.header(), &with("exp", json!(now)))),
        ),
        (
            "exp more than 60 s ahead",
            auth(&dev.key.jws(&dev.header(), &with("exp", json!(now + 120)))),
        ),
        ("no exp", auth(&dev.key.jws(&dev.header(), &without("exp")))),
        (
            "iat in the future",
            auth(&dev.key.jws(&dev.header(), &with("iat", json!(now + 30)))),
        ),
        ("no iat", auth(&dev.key.jws(&dev.header(), &without("iat")))),
        ("no jti", auth(&dev.key.jws(&dev.header(), &without("jti")))),
        ("replayed jti", auth(&replayed)),
    ];
    for (what, a) in cases {
        assert_unauthenticated(&list(&h, &dev, a).await, what);
    }

    // A device of another environment is unknown here.
    let (c2, u2) = production(&h).await;
    let foreign = register(&h, c2.env_id.as_str(), &u2, SigningAlg::ES256).await;
    let r = h
        .send(device_get(
            &format!("/{env}/device/requests"),
            auth(&foreign.token(&h)),
        ))
        .await;
    assert_unauthenticated(&r, "a device of another environment");

    // Disabled device, disabled user, deleted device.
    let path = format!("/v1/environments/{env}/users/{user}/devices/{}", dev.id);
    h.admin(Method::PATCH, &path, Some(json!({"enabled": false})))
        .await;
    assert_unauthenticated(
        &list(&h, &dev, auth(&dev.token(&h))).await,
        "disabled device",
    );
    h.admin(Method::PATCH, &path, Some(json!({"enabled": true})))
        .await;
    assert_eq!(
        list(&h, &dev, auth(&dev.token(&h))).await.status,
        StatusCode::OK
    );
    let user_path = format!("/v1/environments/{env}/users/{user}");
    h.admin(Method::PATCH, &user_path, Some(json!({"enabled": false})))
        .await;
    assert_unauthenticated(&list(&h, &dev, auth(&dev.token(&h))).await, "disabled user");
    h.admin(Method::PATCH, &user_path, Some(json!({"enabled": true})))
        .await;
    h.admin(Method::DELETE, &path, None).await;
    assert_unauthenticated(
        &list(&h, &dev, auth(&dev.token(&h))).await,
        "deleted device",
    );

    // An EdDSA device works the same way.
    let ed = register(&h, &env, &user, SigningAlg::EdDSA).await;
    assert_eq!(
        list(&h, &ed, auth(&ed.token(&h))).await.status,
        StatusCode::OK
    );
    let r = h
        .send(device_get(
            &format!("/{env}/device/requests?wait=61"),
            auth(&ed.token(&h)),
        ))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
}

// --- signed decisions ------------------------------------------------------------------------

#[tokio::test]
async fn a_signed_approval_in_production_gives_tokens_with_hwk_amr_and_an_audit_trail() {
    let h = Harness::new().await;
    let (client, user) = production(&h).await;
    let env = client.env_id.to_string();
    let dev = register(&h, &env, &user, SigningAlg::ES256).await;
    let id = start_with(&h, &client, Some("Pump 4: 40 EUR")).await;

    let r = list(&h, &dev, Some(format!("Device {}", dev.token(&h)))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let shown = &r.body[0];
    assert_eq!(shown["authReqId"], id.as_str());
    assert_eq!(shown["applicationName"], "Pump 4");
    assert_eq!(shown["bindingMessage"], "Pump 4: 40 EUR");
    assert_eq!(shown["scope"], "openid profile");
    assert!(shown["expiresAt"].is_string() && shown["createdAt"].is_string());
    // Listing again does not audit the notice twice.
    list(&h, &dev, Some(format!("Device {}", dev.token(&h)))).await;

    let signed = dev.decision(&h, &id, "APPROVE", Some("Pump 4: 40 EUR"));
    let r = post_decision(&h, &dev, &id, &signed, None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    // A second decision (another signature) changes nothing.
    let again = dev.decision(&h, &id, "DENY", Some("Pump 4: 40 EUR"));
    let r = post_decision(&h, &dev, &id, &again, None).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    // The same signed decision again is a replay.
    assert_unauthenticated(&post_decision(&h, &dev, &id, &signed, None).await, "replay");

    h.clock.advance_secs(5);
    let tokens = h.poll(&client, &id).await;
    assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.text);
    let id_token = claims_of(tokens.body["id_token"].as_str().unwrap());
    assert_eq!(id_token["amr"], json!(["mfa", "hwk"]));
    assert_eq!(id_token["sub"], user.as_str());

    // The decision and its evidence are kept and shown.
    let r = h
        .admin(
            Method::GET,
            &format!("/v1/environments/{env}/cibaRequests/{id}"),
            None,
        )
        .await;
    assert_eq!(r.body["status"], "REDEEMED");
    let d = &r.body["decision"];
    assert_eq!(d["outcome"], "APPROVE");
    assert_eq!(d["channel"], "DEVICE");
    assert_eq!(d["deviceId"], dev.id.as_str());
    assert_eq!(d["amr"], json!(["mfa", "hwk"]));
    assert_eq!(d["evidence"]["jws"], signed.as_str());
    assert_eq!(d["evidence"]["alg"], "ES256");

    // The activities of the flow, in order, with who did what.
    let log = activities(&h, &env, &format!("authReqId={id}")).await;
    assert_eq!(
        types(&log),
        [
            "REQUEST_CREATED",
            "DEVICE_NOTIFIED",
            "REQUEST_APPROVED",
            "TOKENS_ISSUED"
        ]
    );
    assert_eq!(
        log[0]["actor"],
        json!({"type": "CLIENT", "id": client.id.as_str()})
    );
    assert_eq!(log[1]["actor"], json!({"type": "DEVICE", "id": dev.id}));
    assert_eq!(log[2]["actor"], json!({"type": "DEVICE", "id": dev.id}));
    assert_eq!(log[2]["channel"], "DEVICE");
    assert_eq!(log[2]["details"]["amr"], json!(["mfa", "hwk"]));
    assert_eq!(log[3]["actor"]["type"], "CLIENT");
    for e in &log {
        assert!(e["correlationId"].is_string(), "{e}");
        assert_eq!(e["user"]["id"], user.as_str());
    }
    // Filters and paging.
    assert_eq!(activities(&h, &env, "type=TOKENS_ISSUED").await.len(), 1);
    let r = h
        .admin(
            Method::GET,
            &format!("/v1/environments/{env}/activities?limit=2"),
            None,
        )
        .await;
    assert_eq!(r.body["size"], 2);
    let next = r.body["_links"]["next"]["href"].as_str().unwrap();
    let next = next.strip_prefix(PUBLIC_URL).unwrap();
    let r2 = h.admin(Method::GET, next, None).await;
    // The environment's log: the device's registration, then the flow.
    assert_eq!(
        r.body["_embedded"]["activities"][0]["type"],
        "DEVICE_ENROLLED"
    );
    assert_eq!(
        r2.body["_embedded"]["activities"][0]["type"],
        "DEVICE_NOTIFIED"
    );
    let r = h
        .admin(
            Method::GET,
            &format!("/v1/environments/{env}/activities?type=NOPE"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = h
        .admin(
            Method::GET,
            &format!("/v1/environments/{env}/activities?since=yesterday"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let later = assent_core::Timestamp(h.state.now().millis() + 1).to_rfc3339();
    assert!(
        activities(&h, &env, &format!("since={later}"))
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn a_decision_that_differs_from_the_request_is_refused_and_the_request_stays_pending() {
    let h = Harness::new().await;
    let (client, user) = production(&h).await;
    let env = client.env_id.to_string();
    let dev = register(&h, &env, &user, SigningAlg::ES256).await;
    let second = register(&h, &env, &user, SigningAlg::EdDSA).await;
    let id = start_with(&h, &client, Some("Pump 4")).await;
    let other_id = start_with(&h, &client, None).await;

    let cases = [
        (
            "binding message differs",
            dev.decision(&h, &id, "APPROVE", Some("Pump 5")),
        ),
        (
            "binding message missing",
            dev.decision(&h, &id, "APPROVE", None),
        ),
        (
            "auth_req_id of another request",
            dev.decision(&h, &other_id, "APPROVE", Some("Pump 4")),
        ),
        (
            "decision not APPROVE/DENY",
            dev.decision(&h, &id, "CANCEL", Some("Pump 4")),
        ),
    ];
    for (what, jws) in cases {
        let r = post_decision(&h, &dev, &id, &jws, None).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{what}: {}", r.text);
    }
    // A body from one device with a header from another.
    let body = dev.decision(&h, &id, "APPROVE", Some("Pump 4"));
    let r = post_decision(
        &h,
        &dev,
        &id,
        &body,
        Some(format!("Device {}", second.token(&h))),
    )
    .await;
    assert_unauthenticated(&r, "header of another device");
    // The body must be a JWT.
    let r = h
        .send(
            Request::builder()
                .method(Method::POST)
                .uri(format!("/{env}/device/requests/{id}"))
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(dev.decision(&h, &id, "APPROVE", Some("Pump 4"))))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // A device of another user of the environment: 404, as for an unknown request.
    let bob = h.create_user(&env, json!({"username": "bob"})).await;
    let bobs = register(&h, &env, &bob, SigningAlg::ES256).await;
    let r = post_decision(
        &h,
        &bobs,
        &id,
        &bobs.decision(&h, &id, "APPROVE", Some("Pump 4")),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    let missing = assent_core::new_id();
    let r = post_decision(
        &h,
        &dev,
        &missing,
        &dev.decision(&h, &missing, "APPROVE", None),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    let r = h
        .admin(
            Method::GET,
            &format!("/v1/environments/{env}/cibaRequests/{id}"),
            None,
        )
        .await;
    assert_eq!(r.body["status"], "PENDING", "{}", r.text);
    // With the header of the same device, the right decision goes through; a deny gives
    // access_denied to the client.
    let body = dev.decision(&h, &id, "DENY", Some("Pump 4"));
    let r = post_decision(
        &h,
        &dev,
        &id,
        &body,
        Some(format!("Device {}", dev.token(&h))),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    h.clock.advance_secs(5);
    assert_eq!(h.poll(&client, &id).await.error(), "access_denied");
    // Expired requests cannot be decided.
    h.clock.advance_secs(600);
    let r = post_decision(
        &h,
        &dev,
        &other_id,
        &dev.decision(&h, &other_id, "APPROVE", None),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
}

#[tokio::test]
async fn of_a_hundred_concurrent_decisions_from_different_channels_exactly_one_wins() {
    let h = Harness::new().await;
    let (client, user) = h.sandbox().await;
    let env = client.env_id.to_string();
    let dev = register(&h, &env, &user, SigningAlg::ES256).await;
    let id = start_with(&h, &client, None).await;
    let signed: Vec<String> = (0..34)
        .map(|_| dev.decision(&h, &id, "APPROVE", None))
        .collect();
    let (h, dev, id, env) = (&h, &dev, &id, &env);
    let mut calls: Vec<std::pin::Pin<Box<dyn std::future::Future<Output = StatusCode>>>> =
        Vec::new();
    for jws in &signed {
        calls.push(Box::pin(async move {
            post_decision(h, dev, id, jws, None).await.status
        }));
    }
    for i in 0..66 {
        calls.push(Box::pin(async move {
            if i % 2 == 0 {
                h.decide(env, id, "deny").await.status
            } else {
                h.admin(
                    Method::DELETE,
                    &format!("/v1/environments/{env}/cibaRequests/{id}"),
                    None,
                )
                .await
                .status
            }
        }));
    }
    let statuses = futures_util::future::join_all(calls).await;
    let won = statuses
        .iter()
        .filter(|s| **s == StatusCode::NO_CONTENT)
        .count();
    assert_eq!(won, 1, "{statuses:?}");
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::NO_CONTENT || *s == StatusCode::CONFLICT),
        "{statuses:?}"
    );
    let log = activities(h, env, &format!("authReqId={id}")).await;
    let decisions = log
        .iter()
        .filter(|e| {
            matches!(
                e["type"].as_str(),
                Some("REQUEST_APPROVED" | "REQUEST_DENIED" | "REQUEST_CANCELLED")
            )
        })
        .count();
    assert_eq!(decisions, 1, "{log:?}");
}

// --- the device's view -----------------------------------------------------------------------

#[tokio::test]
async fn a_held_long_poll_answers_when_a_request_is_made_and_not_before() {
    let h = Harness::new().await;
    let (client, user) = production(&h).await;
    let env = client.env_id.to_string();
    let dev = register(&h, &env, &user, SigningAlg::ES256).await;

    let held = tokio::spawn(h.router.clone().oneshot(device_get(
        &format!("/{env}/device/requests?wait=60"),
        Some(format!("Device {}", dev.token(&h))),
    )));
    // Held: nothing pending, and the clock has not moved.
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    assert!(
        !held.is_finished(),
        "the long poll is held while nothing is pending"
    );
    let id = start_with(&h, &client, Some("Hello")).await;
    let response = eventually(held, "the held poll answers the new request")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = serde_json::from_slice(
        &axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(body[0]["authReqId"], id.as_str());
    assert_eq!(body[0]["bindingMessage"], "Hello");

    // With nothing pending, the hold ends when `wait` has passed.
    let decided = dev.decision(&h, &id, "DENY", Some("Hello"));
    assert_eq!(
        post_decision(&h, &dev, &id, &decided, None).await.status,
        StatusCode::NO_CONTENT
    );
    let held = tokio::spawn(h.router.clone().oneshot(device_get(
        &format!("/{env}/device/requests?wait=10"),
        Some(format!("Device {}", dev.token(&h))),
    )));
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    assert!(!held.is_finished());
    // The hold ends `wait` after the call read the clock: move it until the call is over (it
    // may still be authenticating when the clock first moves).
    for _ in 0..1000 {
        if held.is_finished() {
            break;
        }
        h.clock.advance_secs(1);
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    let response = eventually(held, "the hold ends after wait")
        .await
        .unwrap()
        .unwrap();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    assert_eq!(&body[..], b"[]");

    // Disabling the device ends its held call with 401.
    let held = tokio::spawn(h.router.clone().oneshot(device_get(
        &format!("/{env}/device/requests?wait=60"),
        Some(format!("Device {}", dev.token(&h))),
    )));
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    h.admin(
        Method::PATCH,
        &format!("/v1/environments/{env}/users/{user}/devices/{}", dev.id),
        Some(json!({"enabled": false})),
    )
    .await;
    let response = eventually(held, "the disabled device's held poll ends")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

/// Reads SSE frames from `body` until one whose `event:` is `kind` (or the stream ends).
async fn next_event(
    frames: &mut (impl futures_util::Stream<Item = Result<axum::body::Bytes, axum::Error>> + Unpin),
    buffer: &mut String,
    kind: &str,
) -> Option<(Option<String>, Value)> {
    eventually(next_event_unbounded(frames, buffer, kind), "the next event").await
}

async fn next_event_unbounded(
    frames: &mut (impl futures_util::Stream<Item = Result<axum::body::Bytes, axum::Error>> + Unpin),
    buffer: &mut String,
    kind: &str,
) -> Option<(Option<String>, Value)> {
    use futures_util::StreamExt;
    loop {
        while let Some(end) = buffer.find("\n\n") {
            let frame: String = buffer.drain(..end + 2).collect();
            let mut event = None;
            let mut id = None;
            let mut data = String::new();
            for line in frame.lines() {
                if let Some(v) = line.strip_prefix("event: ") {
                    event = Some(v.to_owned());
                } else if let Some(v) = line.strip_prefix("id: ") {
                    id = Some(v.to_owned());
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data.push_str(v);
                }
            }
            if event.as_deref() == Some(kind) {
                return Some((id, serde_json::from_str(&data).unwrap()));
            }
        }
        match frames.next().await {
            Some(Ok(bytes)) => buffer.push_str(&String::from_utf8_lossy(&bytes)),
            _ => return None,
        }
    }
}

#[tokio::test]
async fn the_event_stream_sends_each_request_once_resumes_after_last_event_id_and_closes_on_disable()
 {
    let h = Harness::new().await;
    let (client, user) = production(&h).await;
    let env = client.env_id.to_string();
    let dev = register(&h, &env, &user, SigningAlg::ES256).await;
    let first = start_with(&h, &client, Some("First")).await;

    let open = |last: Option<&str>| {
        let mut req = Request::builder()
            .method(Method::GET)
            .uri(format!("/{env}/device/events"))
            .header(header::AUTHORIZATION, format!("Device {}", dev.token(&h)));
        if let Some(l) = last {
            req = req.header("last-event-id", l);
        }
        h.router.clone().oneshot(req.body(Body::empty()).unwrap())
    };
    let response = open(None).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let stream_correlation = response.headers()["x-correlation-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        response.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut frames = response.into_body().into_data_stream();
    let mut buffer = String::new();
    let (event_id, data) = next_event(&mut frames, &mut buffer, "request")
        .await
        .unwrap();
    assert_eq!(data["authReqId"], first.as_str());
    assert_eq!(data["bindingMessage"], "First");
    let event_id = event_id.unwrap();
    // The stream's notice is audited under the correlation id of the call that opened it.
    let log = activities(&h, &env, &format!("authReqId={first}&type=DEVICE_NOTIFIED")).await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["correlationId"], stream_correlation.as_str());

    // A new request arrives on the open stream.
    let second = start_with(&h, &client, Some("Second")).await;
    let (_, data) = next_event(&mut frames, &mut buffer, "request")
        .await
        .unwrap();
    assert_eq!(data["authReqId"], second.as_str());
    // A decision removes it.
    let d = dev.decision(&h, &second, "APPROVE", Some("Second"));
    assert_eq!(
        post_decision(&h, &dev, &second, &d, None).await.status,
        StatusCode::NO_CONTENT
    );
    let (_, data) = next_event(&mut frames, &mut buffer, "removed")
        .await
        .unwrap();
    assert_eq!(data["authReqId"], second.as_str());

    // Reconnecting with Last-Event-ID resumes after the first request: it is not sent again.
    let resumed = open(Some(&event_id)).await.unwrap();
    let mut resumed_frames = resumed.into_body().into_data_stream();
    let mut resumed_buffer = String::new();
    let third = start_with(&h, &client, Some("Third")).await;
    let (_, data) = next_event(&mut resumed_frames, &mut resumed_buffer, "request")
        .await
        .unwrap();
    assert_eq!(
        data["authReqId"],
        third.as_str(),
        "the first request is not sent again"
    );

    // Disabling the device closes its streams.
    h.admin(
        Method::PATCH,
        &format!("/v1/environments/{env}/users/{user}/devices/{}", dev.id),
        Some(json!({"enabled": false})),
    )
    .await;
    assert!(
        next_event(&mut frames, &mut buffer, "request")
            .await
            .is_none()
    );
    assert!(
        next_event(&mut resumed_frames, &mut resumed_buffer, "request")
            .await
            .is_none()
    );
}

#[tokio::test]
async fn a_request_that_expires_undecided_is_audited_once_by_the_sweep() {
    let h = Harness::new().await;
    let (client, _user) = production(&h).await;
    let env = client.env_id.to_string();
    let id = start_with(&h, &client, None).await;
    h.clock.advance_secs(121);
    h.run_due_work().await;
    h.run_due_work().await;
    let log = activities(&h, &env, &format!("authReqId={id}")).await;
    assert_eq!(
        types(&log),
        ["REQUEST_CREATED", "REQUEST_EXPIRED"],
        "{log:?}"
    );
    assert_eq!(log[1]["actor"]["type"], "SYSTEM");
    let r = h
        .admin(
            Method::GET,
            &format!("/v1/environments/{env}/cibaRequests/{id}"),
            None,
        )
        .await;
    assert_eq!(r.body["status"], "EXPIRED");
    assert_eq!(h.poll(&client, &id).await.error(), "expired_token");
}

#[tokio::test]
async fn disabling_the_user_ends_the_devices_held_calls_and_streams() {
    let h = Harness::new().await;
    let (client, user) = production(&h).await;
    let env = client.env_id.to_string();
    let dev = register(&h, &env, &user, SigningAlg::ES256).await;
    let held = tokio::spawn(h.router.clone().oneshot(device_get(
        &format!("/{env}/device/requests?wait=60"),
        Some(format!("Device {}", dev.token(&h))),
    )));
    let stream = h
        .router
        .clone()
        .oneshot(device_get(
            &format!("/{env}/device/events"),
            Some(format!("Device {}", dev.token(&h))),
        ))
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    let mut frames = stream.into_body().into_data_stream();
    let mut buffer = String::new();
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    let r = h
        .admin(
            Method::PATCH,
            &format!("/v1/environments/{env}/users/{user}"),
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let response = eventually(held, "the disabled user's held poll ends")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(
        next_event(&mut frames, &mut buffer, "request")
            .await
            .is_none()
    );
    // An enrolment code of a disabled user enrols nothing.
    let r = h
        .admin(
            Method::POST,
            &format!("/v1/environments/{env}/users/{user}/deviceEnrollments"),
            None,
        )
        .await;
    let code = r.body["code"].as_str().unwrap().to_owned();
    let r = enroll(&h, &env, &code, &Key::new(SigningAlg::ES256).public_jwk()).await;
    assert_eq!(r.error(), "invalid_grant", "{}", r.text);
    let log = activities(&h, &env, "type=ENROLLMENT_CODE_CREATED").await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["actor"]["type"], "ADMIN");
}
