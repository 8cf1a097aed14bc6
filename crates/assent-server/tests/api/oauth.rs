//! Authorization-server endpoints (§3): discovery, JWKS, client authentication, the CIBA
//! backchannel request, the token endpoint, tokens, userinfo, introspection and revocation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use crate::support::*;
use assent_core::{AuthReqId, EnvironmentId, UserId};
use assent_crypto::{HmacAlg, JwkSet, JwsSigner, SigningAlg, generate_key, sign_hmac_jws};
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use base64::Engine;
use serde_json::{Value, json};

#[tokio::test]
async fn happy_poll_flow() {
    let h = Harness::new().await;
    let (client, _user) = h.sandbox().await;
    let id = h.start(&client, "openid").await;
    let r = h.poll(&client, &id).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.error(), "authorization_pending");
    assert_sentence(&r, PENDING);
    assert_eq!(
        h.decide(&client.env_id, &id, "approve").await.status,
        StatusCode::NO_CONTENT
    );
    h.clock.advance_secs(2);
    let r = h.poll(&client, &id).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.body["id_token"].is_string());
}

// --- helpers ------------------------------------------------------------------------------

const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const PROCESSING_PREFIX: &str =
    "The request could not be completed. There was an issue processing the request.: ";
const VALIDATION_CODES: &[&str] = &[
    "invalid_request",
    "invalid_scope",
    "invalid_binding_message",
    "expired_login_hint_token",
    "unknown_user_id",
    "missing_user_code",
    "invalid_user_code",
];
/// Plausible in shape, never issued.
const UNKNOWN_ID: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn now(h: &Harness) -> i64 {
    h.state.now().secs()
}

fn ep(env_id: &str, name: &str) -> String {
    format!("/{env_id}/as/{name}")
}

fn claims_of(jwt: &str) -> Value {
    Value::Object(assent_crypto::decode_claims_unverified(jwt).unwrap())
}

fn header_of(jwt: &str) -> Value {
    assent_crypto::decode_header(jwt).unwrap().raw
}

/// `X-Correlation-ID` is a UUID and, when there is an error description, ends it.
fn assert_correlation(r: &Resp) {
    let id = r.header("x-correlation-id").expect("X-Correlation-ID");
    uuid::Uuid::parse_str(id).expect("correlation id is a UUID");
    if !r.description().is_empty() {
        assert!(
            r.description()
                .ends_with(&format!("(Correlation ID: {id})")),
            "{}",
            r.text
        );
    }
}

fn assert_no_store(r: &Resp) {
    assert_eq!(r.header("cache-control"), Some("no-store"), "{}", r.text);
}

/// An OAuth error: status, code, prefix by kind, no-store, correlation id, and
/// `WWW-Authenticate` exactly on `invalid_client`.
fn assert_error(r: &Resp, status: StatusCode, error: &str) {
    assert_eq!(r.status, status, "{}", r.text);
    assert_eq!(r.error(), error, "{}", r.text);
    assert_no_store(r);
    assert_correlation(r);
    let prefix = if VALIDATION_CODES.contains(&error) {
        VALIDATION_PREFIX
    } else {
        PROCESSING_PREFIX
    };
    assert!(r.description().starts_with(prefix), "{}", r.text);
    let www = r.header("www-authenticate");
    if error == "invalid_client" {
        assert!(www.is_some(), "invalid_client without WWW-Authenticate");
    } else {
        assert!(www.is_none(), "WWW-Authenticate on {error}: {www:?}");
    }
}

fn assert_validation(r: &Resp, error: &str) {
    assert_error(r, StatusCode::BAD_REQUEST, error);
    assert!(r.description().starts_with(VALIDATION_PREFIX), "{}", r.text);
}

fn assert_invalid_client(r: &Resp) {
    assert_error(r, StatusCode::UNAUTHORIZED, "invalid_client");
}

fn assert_poll(r: &Resp, error: &str, sentence: &str) {
    assert_error(r, StatusCode::BAD_REQUEST, error);
    assert_sentence(r, sentence);
}

fn assert_ok(r: &Resp) {
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_no_store(r);
    assert_correlation(r);
    assert!(r.header("www-authenticate").is_none());
}

/// How a test client authenticates.
#[derive(Clone, Copy)]
enum Auth<'a> {
    Basic(&'a Client),
    Post(&'a Client),
    Hmac(&'a Client, HmacAlg),
    Key(&'a Client, &'a JwsSigner),
}

fn assertion_claims(h: &Harness, client_id: &str, aud: Value) -> Value {
    let t = now(h);
    let mut claims = json!({
        "iss": client_id, "sub": client_id, "iat": t, "exp": t + 120,
        "jti": assent_crypto::random_token(16),
    });
    claims["aud"] = aud;
    claims
}

/// A POST with `pairs` plus the credentials of `auth`.
async fn call(h: &Harness, path: &str, auth: Auth<'_>, pairs: &[(&str, &str)]) -> Resp {
    let mut all: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let mut authz = None;
    let mut jwt = None;
    match auth {
        Auth::Basic(c) => authz = Some(c.basic()),
        Auth::Post(c) => {
            all.push(("client_id".into(), c.id.to_string()));
            all.push(("client_secret".into(), c.secret.clone()));
        }
        Auth::Hmac(c, alg) => {
            let claims = assertion_claims(h, &c.id, json!(h.issuer(&c.env_id)));
            jwt = Some(sign_hmac_jws(alg, c.secret.as_bytes(), &claims).unwrap());
        }
        Auth::Key(c, signer) => {
            let claims = assertion_claims(h, &c.id, json!(h.issuer(&c.env_id)));
            jwt = Some(signer.sign(Some("JWT"), &claims).unwrap());
        }
    }
    if let Some(jwt) = jwt {
        all.push(("client_assertion_type".into(), JWT_BEARER.into()));
        all.push(("client_assertion".into(), jwt));
    }
    let refs: Vec<(&str, &str)> = all.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    h.post_form(path, authz.as_deref(), &refs).await
}

/// A token request carrying a ready-made client assertion (and a never-issued auth_req_id:
/// 400 invalid_grant means authentication passed).
async fn token_with_assertion(h: &Harness, env_id: &str, jwt: &str) -> Resp {
    h.post_form(
        &ep(env_id, "token"),
        None,
        &[
            ("grant_type", CIBA),
            ("auth_req_id", UNKNOWN_ID),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", jwt),
        ],
    )
    .await
}

async fn approve(h: &Harness, env_id: &str, id: &str) {
    let r = h.decide(env_id, id, "approve").await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
}

/// Start (login_hint alice) → approve → redeem, authenticating with `auth`.
async fn flow_with(h: &Harness, env_id: &str, auth: Auth<'_>, scope: &str) -> Value {
    let r = call(
        h,
        &ep(env_id, "cibaAuthorization"),
        auth,
        &[("scope", scope), ("login_hint", "alice")],
    )
    .await;
    assert_ok(&r);
    let id = r.body["auth_req_id"].as_str().unwrap().to_owned();
    approve(h, env_id, &id).await;
    let r = call(
        h,
        &ep(env_id, "token"),
        auth,
        &[("grant_type", CIBA), ("auth_req_id", &id)],
    )
    .await;
    assert_ok(&r);
    r.body
}

/// The full flow with Basic auth; returns the token response.
async fn flow(h: &Harness, c: &Client, scope: &str) -> Value {
    flow_with(h, &c.env_id, Auth::Basic(c), scope).await
}

/// An application authenticating with PRIVATE_KEY_JWT under a fresh `alg` key.
async fn key_app(h: &Harness, env_id: &str, alg: SigningAlg) -> (Client, JwsSigner) {
    let kid = format!("kid-{}", assent_crypto::random_token(6));
    let km = generate_key(alg, &kid).unwrap();
    let c = h
        .create_app(
            env_id,
            json!({"tokenEndpointAuthMethod": "PRIVATE_KEY_JWT", "jwks": {"keys": [km.public_jwk]}}),
        )
        .await;
    let signer = JwsSigner::from_pkcs8(alg, &kid, &km.pkcs8_der).unwrap();
    (c, signer)
}

async fn env_jwks(h: &Harness, env_id: &str) -> Value {
    let r = h.get(&ep(env_id, "jwks"), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.body
}

async fn patch_app(h: &Harness, c: &Client, body: Value) {
    let r = h
        .admin(
            Method::PATCH,
            &format!("/v1/environments/{}/applications/{}", c.env_id, c.id),
            Some(body),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

async fn introspect(h: &Harness, c: &Client, token: &str) -> Resp {
    let r = h
        .post_form(
            &ep(&c.env_id, "introspect"),
            Some(&c.basic()),
            &[("token", token)],
        )
        .await;
    assert_ok(&r);
    r
}

async fn userinfo(h: &Harness, env_id: &str, access_token: &str) -> Resp {
    h.get(
        &ep(env_id, "userinfo"),
        Some(&format!("Bearer {access_token}")),
    )
    .await
}

async fn refresh(h: &Harness, c: &Client, rt: &str, scope: Option<&str>) -> Resp {
    let mut pairs = vec![("grant_type", "refresh_token"), ("refresh_token", rt)];
    if let Some(s) = scope {
        pairs.push(("scope", s));
    }
    h.post_form(&ep(&c.env_id, "token"), Some(&c.basic()), &pairs)
        .await
}

// --- 1. token endpoint, one test per §3.3 row -------------------------------------------------

#[tokio::test]
async fn token_unknown_auth_req_id_is_invalid_grant() {
    let h = Harness::new().await;
    let (c, _) = h.sandbox().await;
    let r = h.poll(&c, UNKNOWN_ID).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_grant");
    let r = h.poll(&c, "short").await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_grant");
}

#[tokio::test]
async fn token_other_clients_auth_req_id_is_invalid_grant_and_owner_still_redeems() {
    let h = Harness::new().await;
    let (owner, _) = h.sandbox().await;
    let thief = h.create_app(&owner.env_id, json!({})).await;
    let id = h.start(&owner, "openid").await;
    approve(&h, &owner.env_id, &id).await;
    for _ in 0..3 {
        let r = h.poll(&thief, &id).await;
        assert_error(&r, StatusCode::BAD_REQUEST, "invalid_grant");
    }
    let r = h.poll(&owner, &id).await;
    assert_ok(&r);
    assert!(r.body["access_token"].is_string());
}

#[tokio::test]
async fn token_first_poll_is_authorization_pending() {
    let h = Harness::new().await;
    let (c, _) = h.sandbox().await;
    let id = h.start(&c, "openid").await;
    let r = h.poll(&c, &id).await;
    assert_poll(&r, "authorization_pending", PENDING);
}

#[tokio::test]
async fn token_too_soon_is_slow_down_and_the_longer_interval_sticks() {
    let h = Harness::new().await;
    let (c, _) = h.sandbox().await;
    // Request A: slow_down, then 3 s later slow_down again (interval now 7).
    let a = h.start(&c, "openid").await;
    assert_poll(&h.poll(&c, &a).await, "authorization_pending", PENDING);
    h.clock.advance_secs(1);
    assert_poll(&h.poll(&c, &a).await, "slow_down", SLOW_DOWN);
    h.clock.advance_secs(3);
    assert_poll(&h.poll(&c, &a).await, "slow_down", SLOW_DOWN);
    // Request B: slow_down, then 7.5 s later pending (2 + 5 s).
    let b = h.start(&c, "openid").await;
    assert_poll(&h.poll(&c, &b).await, "authorization_pending", PENDING);
    h.clock.advance_secs(1);
    assert_poll(&h.poll(&c, &b).await, "slow_down", SLOW_DOWN);
    h.clock.advance_millis(7500);
    assert_poll(&h.poll(&c, &b).await, "authorization_pending", PENDING);
    // The interval stays at 7 s: 5 s later is still too soon.
    h.clock.advance_secs(5);
    assert_poll(&h.poll(&c, &b).await, "slow_down", SLOW_DOWN);
}

#[tokio::test]
async fn token_poll_at_interval_minus_jitter_is_pending() {
    let h = Harness::new().await;
    let (c, _) = h.sandbox().await;
    let id = h.start(&c, "openid").await;
    assert_poll(&h.poll(&c, &id).await, "authorization_pending", PENDING);
    h.clock.advance_millis(1500);
    assert_poll(&h.poll(&c, &id).await, "authorization_pending", PENDING);
    h.clock.advance_millis(1499);
    assert_poll(&h.poll(&c, &id).await, "slow_down", SLOW_DOWN);
}

#[tokio::test]
async fn token_denied_is_access_denied_until_expiry() {
    let h = Harness::new().await;
    let (c, _) = h.sandbox().await;
    let id = h.start(&c, "openid").await;
    assert_eq!(
        h.decide(&c.env_id, &id, "deny").await.status,
        StatusCode::NO_CONTENT
    );
    for _ in 0..4 {
        assert_poll(&h.poll(&c, &id).await, "access_denied", DENIED);
        h.clock.advance_secs(20);
    }
    h.clock.advance_secs(40);
    assert_poll(&h.poll(&c, &id).await, "expired_token", EXPIRED);
}

#[tokio::test]
async fn token_cancelled_by_admin_is_access_denied() {
    let h = Harness::new().await;
    let (c, _) = h.sandbox().await;
    let id = h.start(&c, "openid").await;
    let r = h
        .admin(
            Method::DELETE,
            &format!("/v1/environments/{}/cibaRequests/{id}", c.env_id),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    assert_poll(&h.poll(&c, &id).await, "access_denied", DENIED);
    h.clock.advance_secs(5);
    assert_poll(&h.poll(&c, &id).await, "access_denied", DENIED);
}

#[tokio::test]
async fn token_expired_pending_is_expired_token() {
    let h = Harness::new().await;
    let (c, _) = h.sandbox().await;
    let id = h.start(&c, "openid").await;
    assert_poll(&h.poll(&c, &id).await, "authorization_pending", PENDING);
    h.clock.advance_secs(120);
    assert_poll(&h.poll(&c, &id).await, "expired_token", EXPIRED);
}

#[tokio::test]
async fn token_approved_but_not_redeemed_before_expiry_is_expired_token() {
    let h = Harness::new().await;
    let (c, _) = h.sandbox().await;
    let id = h.start(&c, "openid").await;
    approve(&h, &c.env_id, &id).await;
    h.clock.advance_secs(121);
    assert_poll(&h.poll(&c, &id).await, "expired_token", EXPIRED);

    // Approving after expiry changes nothing.
    let late = h.start(&c, "openid").await;
    h.clock.advance_secs(121);
    let r = h.decide(&c.env_id, &late, "approve").await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    assert_poll(&h.poll(&c, &late).await, "expired_token", EXPIRED);
}

#[tokio::test]
async fn token_a_day_after_expiry_is_invalid_grant() {
    let h = Harness::new().await;
    let (c, _) = h.sandbox().await;
    let id = h.start(&c, "openid").await;
    h.clock.advance_secs(120 + 24 * 3600 - 1);
    assert_poll(&h.poll(&c, &id).await, "expired_token", EXPIRED);
    h.clock.advance_secs(1);
    assert_error(
        &h.poll(&c, &id).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    );
}

#[tokio::test]
async fn token_approved_is_redeemed_once_and_replay_revokes() {
    let h = Harness::new().await;
    let (c, _) = h.sandbox().await;
    let id = h.start(&c, "openid profile").await;
    approve(&h, &c.env_id, &id).await;
    let r = h.poll(&c, &id).await;
    assert_ok(&r);
    assert!(r.body["access_token"].is_string());
    assert_eq!(r.body["token_type"], "Bearer");
    assert_eq!(r.body["expires_in"], json!(3600));
    assert!(r.body["expires_in"].is_i64());
    assert_eq!(r.body["scope"], "openid profile");
    assert!(r.body["id_token"].is_string());
    assert!(r.body.get("refresh_token").is_none());
    let at = r.body["access_token"].as_str().unwrap().to_owned();
    assert_ok(&userinfo(&h, &c.env_id, &at).await);

    h.clock.advance_secs(2);
    assert_error(
        &h.poll(&c, &id).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    );
    let r = userinfo(&h, &c.env_id, &at).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    assert_eq!(introspect(&h, &c, &at).await.body["active"], false);
}

#[tokio::test]
async fn token_missing_auth_req_id_is_invalid_request() {
    let h = Harness::new().await;
    let (c, _) = h.sandbox().await;
    let r = call(
        &h,
        &ep(&c.env_id, "token"),
        Auth::Basic(&c),
        &[("grant_type", CIBA)],
    )
    .await;
    assert_validation(&r, "invalid_request");
}

#[tokio::test]
async fn token_missing_grant_type_is_invalid_request() {
    let h = Harness::new().await;
    let (c, _) = h.sandbox().await;
    let id = h.start(&c, "openid").await;
    let r = call(
        &h,
        &ep(&c.env_id, "token"),
        Auth::Basic(&c),
        &[("auth_req_id", &id)],
    )
    .await;
    assert_validation(&r, "invalid_request");
}

#[tokio::test]
async fn token_unknown_grant_type_is_unsupported_grant_type() {
    let h = Harness::new().await;
    let (c, _) = h.sandbox().await;
    for gt in [
        "password",
        "urn:openid:params:grant-type:cibax",
        "authorization_code",
    ] {
        let r = call(
            &h,
            &ep(&c.env_id, "token"),
            Auth::Basic(&c),
            &[("grant_type", gt), ("auth_req_id", UNKNOWN_ID)],
        )
        .await;
        assert_error(&r, StatusCode::BAD_REQUEST, "unsupported_grant_type");
    }
}

#[tokio::test]
async fn app_without_ciba_grant_is_unauthorized_client_at_both_endpoints() {
    let h = Harness::new().await;
    let (c, _) = h.sandbox().await;
    let id = h.start(&c, "openid").await;
    patch_app(&h, &c, json!({"grantTypes": ["REFRESH_TOKEN"]})).await;
    let r = h
        .ciba(&c, &[("scope", "openid"), ("login_hint", "alice")])
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "unauthorized_client");
    let r = h.poll(&c, &id).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "unauthorized_client");
}

#[tokio::test]
async fn disabled_app_is_unauthorized_client() {
    let h = Harness::new().await;
    let (c, _) = h.sandbox().await;
    let id = h.start(&c, "openid").await;
    approve(&h, &c.env_id, &id).await;
    patch_app(&h, &c, json!({"enabled": false})).await;
    let r = h
        .ciba(&c, &[("scope", "openid"), ("login_hint", "alice")])
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "unauthorized_client");
    let r = h.poll(&c, &id).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "unauthorized_client");
}

// --- 2. concurrency -------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_polls_of_an_approved_request_redeem_exactly_once() {
    let h = Arc::new(Harness::new().await);
    let (c, _) = h.sandbox().await;
    let id = h.start(&c, "openid").await;
    approve(&h, &c.env_id, &id).await;
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (h, c, id) = (h.clone(), c.clone(), id.clone());
            tokio::spawn(async move { h.poll(&c, &id).await })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        let r = t.await.unwrap();
        if r.status == StatusCode::OK {
            ok += 1;
        } else {
            assert_error(&r, StatusCode::BAD_REQUEST, "invalid_grant");
        }
    }
    assert_eq!(ok, 1);
}

// --- 3. backchannel request errors ----------------------------------------------------------

async fn ciba_pairs(h: &Harness, c: &Client, pairs: &[(&str, &str)]) -> Resp {
    h.ciba(c, pairs).await
}

#[tokio::test]
async fn bc_missing_scope_is_invalid_request() {
    let h = Harness::new().await;
    let (c, _) = h.sandbox().await;
    let r = ciba_pairs(&h, &c, &[("login_hint", "alice")]).await;
    assert_validation(&r, "invalid_request");
}

#[tokio::test]
async fn bc_scope_without_openid_is_invalid_request() {
    let h = Harness::new().await;
    let (c, _) = h.sandbox().await;
    let r = ciba_pairs(
        &h,
        &c,
        &[("scope", "profile email"), ("login_hint", "alice")],
    )
    .await;
    assert_validation(&r, "invalid_request");
}

#[tokio::test]
async fn bc_unknown_scope_is_invalid_scope() {
    let h = Harness::new().await;
    let (c, _) = h.sandbox().await;
    let r = ciba_pairs(
        &h,
        &c,
        &[("scope", "openid bogus"), ("login_hint", "alice")],
    )
    .await;
    assert_validation(&r, "invalid_scope");
}

#[tokio::test]
async fn bc_missing_openid_is_reported_before_unknown_scope() {
    let h = Harness::new().await;
    let (c, _) = h.sandbox().await;
    let r = ciba_pairs(
        &h,
        &c,
        &[("scope", "profile bogus"), ("login_hint", "alice")],
    )
    .await;
    assert_validation(&r, "invalid_request");
}

#[tokio::test]
async fn bc_no_hint_is_invalid_request() {
    let h = Harness::new().await;
    let (c, _) = h.sandbox().await;
    let r = ciba_pairs(&h, &c, &[("scope", "openid")]).await;
    assert_validation(&r, "invalid_request");
}

#[tokio::test]
async fn bc_two_hints_is_invalid_request() {
    let h = Harness::new().await;
    let (c, _) = h.sandbox().await;
    let tokens = flow(&h, &c, "openid").await;
    let r = ciba_pairs(
        &h,
        &c,
        &[
            ("scope", "openid"),
            ("login_hint", "alice"),
            ("id_token_hint", tokens["id_token"].as_str().unwrap()),
        ],
    )
    .await;
    assert_validation(&r, "invalid_request");
}

#[tokio::test]
async fn bc_binding_message_too_long_is_invalid_binding_message() {
    let h = Harness::new().await;
    let (c, _) = h.sandbox().await;
    let long = "a".repeat(65);
    let r = ciba_pairs(
        &h,
        &c,
        &[
            ("scope", "openid"),
            ("login_hint", "alice"),
            ("binding_message", &long),
        ],
    )
    .await;
    assert_validation(&r, "invalid_binding_message");
    // 64 scalar values (multi-byte ones) are fine.
    let max = "€".repeat(64);
    let r = ciba_pairs(
        &h,
        &c,
        &[
            ("scope", "openid"),
            ("login_hint", "alice"),
            ("binding_message", &max),
        ],
    )
    .await;
    assert_ok(&r);
}

#[tokio::test]
async fn bc_binding_message_with_control_or_format_chars_is_invalid() {
    let h = Harness::new().await;
    let (c, _) = h.sandbox().await;
    for m in [
        "line\nbreak",
        "zero\u{200B}width",
        "tab\there",
        "ls\u{2028}x",
    ] {
        let r = ciba_pairs(
            &h,
            &c,
            &[
                ("scope", "openid"),
                ("login_hint", "alice"),
                ("binding_message", m),
            ],
        )
        .await;
        assert_validation(&r, "invalid_binding_message");
        assert!(!r.text.contains('\n'), "input reflected: {}", r.text);
    }
}

#[tokio::test]
async fn bc_unicode_binding_message_is_kept_verbatim() {
    let h = Harness::new().await;
    let (c, _) = h.sandbox().await;
    let msg = "Pay €50 at Pump 4 👨\u{200D}👩\u{200D}👧";
    let r = ciba_pairs(
        &h,
        &c,
        &[
            ("scope", "openid"),
            ("login_hint", "alice"),
            ("binding_message", msg),
        ],
    )
    .await;
    assert_ok(&r);
    let id = r.body["auth_req_id"].as_str().unwrap();
    let r = h
        .admin(
            Method::GET,
            &format!("/v1/environments/{}/cibaRequests/{id}", c.env_id),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["bindingMessage"], msg);
}

#[tokio::test]
async fn bc_bad_requested_expiry_is_invalid_request() {
    let h = Harness::new().await;
    let (c, _) = h.sandbox().await;
    for v in ["0", "-1", "abc", "1.5", " 30"] {
        let r = ciba_pairs(
            &h,
            &c,
            &[
                ("scope", "openid"),
                ("login_hint", "alice"),
                ("requested_expiry", v),
            ],
        )
        .await;
        assert_validation(&r, "invalid_request");
    }
}

#[tokio::test]
async fn bc_requested_expiry_is_honoured_and_clamped() {
    let h = Harness::new().await;
    let (c, _) = h.sandbox().await;
    let r = ciba_pairs(
        &h,
        &c,
        &[
            ("scope", "openid"),
            ("login_hint", "alice"),
            ("requested_expiry", "30"),
        ],
    )
    .await;
    assert_ok(&r);
    assert_eq!(r.body["expires_in"], json!(30));
    let id = r.body["auth_req_id"].as_str().unwrap().to_owned();
    h.clock.advance_secs(30);
    assert_poll(&h.poll(&c, &id).await, "expired_token", EXPIRED);

    let r = ciba_pairs(
        &h,
        &c,
        &[
            ("scope", "openid"),
            ("login_hint", "alice"),
            ("requested_expiry", "99999"),
        ],
    )
    .await;
    assert_ok(&r);
    assert_eq!(r.body["expires_in"], json!(600));
}

#[tokio::test]
async fn bc_unknown_user_is_unknown_user_id() {
    let h = Harness::new().await;
    let (c, _) = h.sandbox().await;
    let r = ciba_pairs(&h, &c, &[("scope", "openid"), ("login_hint", "nobody")]).await;
    assert_validation(&r, "unknown_user_id");
}

#[tokio::test]
async fn bc_disabled_user_is_unknown_user_id() {
    let h = Harness::new().await;
    let (c, user) = h.sandbox().await;
    let r = h
        .admin(
            Method::PATCH,
            &format!("/v1/environments/{}/users/{user}", c.env_id),
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = ciba_pairs(&h, &c, &[("scope", "openid"), ("login_hint", "alice")]).await;
    assert_validation(&r, "unknown_user_id");
}

#[tokio::test]
async fn bc_unsupported_parameters_are_invalid_request() {
    let h = Harness::new().await;
    let (c, _) = h.sandbox().await;
    for (name, value) in [
        ("request", "eyJhbGciOiJSUzI1NiJ9.e30.c2ln"),
        ("user_code", "1234"),
        (
            "authorization_details",
            r#"[{"type":"payment","amount":"50.00"}]"#,
        ),
    ] {
        let r = ciba_pairs(
            &h,
            &c,
            &[("scope", "openid"), ("login_hint", "alice"), (name, value)],
        )
        .await;
        assert_validation(&r, "invalid_request");
    }
}

#[tokio::test]
async fn bc_duplicate_parameter_is_invalid_request() {
    let h = Harness::new().await;
    let (c, _) = h.sandbox().await;
    let r = h
        .post_raw(
            &ep(&c.env_id, "cibaAuthorization"),
            Some(&c.basic()),
            b"scope=openid&scope=openid&login_hint=alice".to_vec(),
        )
        .await;
    assert_validation(&r, "invalid_request");
}

#[tokio::test]
async fn bc_invalid_utf8_after_decoding_is_invalid_request() {
    let h = Harness::new().await;
    let (c, _) = h.sandbox().await;
    for body in [
        b"scope=openid&login_hint=%ff".to_vec(),
        b"scope=openid&login_hint=%e2%82".to_vec(),
        b"scope=openid&login_hint=%zz".to_vec(),
        b"scope=openid&login_hint=\xff".to_vec(),
        // A sign is not a hex digit: "%+4" must not decode to U+0004.
        b"scope=openid&login_hint=alice&x=%+4".to_vec(),
        b"scope=openid&login_hint=al%-1ce".to_vec(),
    ] {
        let r = h
            .post_raw(&ep(&c.env_id, "cibaAuthorization"), Some(&c.basic()), body)
            .await;
        assert_validation(&r, "invalid_request");
    }
}

#[tokio::test]
async fn bc_wrong_content_type_is_invalid_request() {
    let h = Harness::new().await;
    let (c, _) = h.sandbox().await;
    let req = Request::builder()
        .method(Method::POST)
        .uri(ep(&c.env_id, "cibaAuthorization"))
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, c.basic())
        .body(Body::from(r#"{"scope":"openid","login_hint":"alice"}"#))
        .unwrap();
    let r = h.send(req).await;
    assert_validation(&r, "invalid_request");
}

#[tokio::test]
async fn bc_huge_body_is_refused_without_500() {
    let h = Harness::new().await;
    let (c, _) = h.sandbox().await;
    let mut body = b"scope=openid&login_hint=alice&binding_message=".to_vec();
    body.extend(std::iter::repeat_n(b'a', 100 * 1024));
    let r = h
        .post_raw(&ep(&c.env_id, "cibaAuthorization"), Some(&c.basic()), body)
        .await;
    assert!(
        r.status == StatusCode::PAYLOAD_TOO_LARGE || r.status == StatusCode::BAD_REQUEST,
        "{} {}",
        r.status,
        r.text
    );
    assert_eq!(r.error(), "invalid_request", "{}", r.text);
    assert_no_store(&r);
    assert_correlation(&r);
}

#[tokio::test]
async fn bc_success_shape() {
    let h = Harness::new().await;
    let (c, _) = h.sandbox().await;
    let r = ciba_pairs(&h, &c, &[("scope", "openid"), ("login_hint", "alice")]).await;
    assert_ok(&r);
    let id = r.body["auth_req_id"].as_str().unwrap();
    assert!(id.len() >= 43, "{id}");
    assert!(
        id.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)),
        "{id}"
    );
    assert!(r.body["expires_in"].is_i64() && !r.body["expires_in"].is_f64());
    assert_eq!(r.body["expires_in"], json!(120));
    assert!(r.body["interval"].is_i64() && !r.body["interval"].is_f64());
    assert_eq!(r.body["interval"], json!(2));
    // Two requests never share an id.
    let r2 = ciba_pairs(&h, &c, &[("scope", "openid"), ("login_hint", "alice")]).await;
    assert_ne!(r2.body["auth_req_id"], r.body["auth_req_id"]);
}

#[tokio::test]
async fn bc_authorize_alias_works() {
    let h = Harness::new().await;
    let (c, _) = h.sandbox().await;
    let r = h
        .post_form(
            &ep(&c.env_id, "bc-authorize"),
            Some(&c.basic()),
            &[("scope", "openid"), ("login_hint", "alice")],
        )
        .await;
    assert_ok(&r);
    let id = r.body["auth_req_id"].as_str().unwrap();
    assert_poll(&h.poll(&c, id).await, "authorization_pending", PENDING);
}

#[tokio::test]
async fn unknown_environment_is_404_json() {
    let h = Harness::new().await;
    let (c, _) = h.sandbox().await;
    let env = uuid::Uuid::new_v4().to_string();
    let r = h
        .post_form(
            &ep(&env, "cibaAuthorization"),
            Some(&c.basic()),
            &[("scope", "openid"), ("login_hint", "alice")],
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    assert!(!r.error().is_empty(), "{}", r.text);
    assert_correlation(&r);
    let r = h
        .post_form(
            &ep(&env, "token"),
            Some(&c.basic()),
            &[("grant_type", CIBA), ("auth_req_id", UNKNOWN_ID)],
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    assert!(!r.error().is_empty(), "{}", r.text);
    for path in [".well-known/openid-configuration", "jwks"] {
        let r = h.get(&ep(&env, path), None).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}: {}", r.text);
        assert!(!r.error().is_empty(), "{path}: {}", r.text);
    }
}

// --- 4. hints -------------------------------------------------------------------------------

#[tokio::test]
async fn login_hint_forms_resolve_alice() {
    let h = Harness::new().await;
    let (c, user) = h.sandbox().await;
    let email_typed = "email:alice@example.com".to_owned();
    let sub_typed = format!("sub:{user}");
    for hint in [
        "alice",
        "ALICE@example.COM",
        user.as_str(),
        email_typed.as_str(),
        "username:alice",
        sub_typed.as_str(),
        "tel:+15550102030",
    ] {
        let r = ciba_pairs(&h, &c, &[("scope", "openid"), ("login_hint", hint)]).await;
        assert_ok(&r);
        let id = r.body["auth_req_id"].as_str().unwrap();
        let show = h
            .admin(
                Method::GET,
                &format!("/v1/environments/{}/cibaRequests/{id}", c.env_id),
                None,
            )
            .await;
        assert_eq!(show.body["user"]["id"], user.as_str(), "{hint}");
    }
    for hint in [
        "bob",
        "email:bob@example.com",
        "sub:nobody",
        "tel:+19999999999",
        "username:ALICE@example.com",
    ] {
        let r = ciba_pairs(&h, &c, &[("scope", "openid"), ("login_hint", hint)]).await;
        assert_validation(&r, "unknown_user_id");
    }
}

async fn with_id_token_hint(h: &Harness, c: &Client, hint: &str) -> Resp {
    ciba_pairs(h, c, &[("scope", "openid"), ("id_token_hint", hint)]).await
}

#[tokio::test]
async fn id_token_hint_valid_and_expired_are_accepted() {
    let h = Harness::new().await;
    let (c, _) = h.sandbox().await;
    let tokens = flow(&h, &c, "openid").await;
    let idt = tokens["id_token"].as_str().unwrap();
    assert_ok(&with_id_token_hint(&h, &c, idt).await);
    h.clock.advance_secs(7200);
    assert_ok(&with_id_token_hint(&h, &c, idt).await);
}

#[tokio::test]
async fn id_token_hint_tampered_is_invalid_request() {
    let h = Harness::new().await;
    let (c, _) = h.sandbox().await;
    let tokens = flow(&h, &c, "openid").await;
    let idt = tokens["id_token"].as_str().unwrap();
    let sig_start = idt.rfind('.').unwrap() + 1;
    let mut bytes = idt.as_bytes().to_vec();
    let i = sig_start + 10;
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(bytes).unwrap();
    assert_validation(
        &with_id_token_hint(&h, &c, &tampered).await,
        "invalid_request",
    );
    // A changed payload with the original signature fails too.
    let mut parts: Vec<String> = idt.split('.').map(str::to_owned).collect();
    let mut claims = claims_of(idt);
    claims["sub"] = json!("someone-else");
    parts[1] = b64(claims.to_string().as_bytes());
    assert_validation(
        &with_id_token_hint(&h, &c, &parts.join(".")).await,
        "invalid_request",
    );
    assert_validation(
        &with_id_token_hint(&h, &c, "not-a-jwt").await,
        "invalid_request",
    );
}

#[tokio::test]
async fn id_token_hint_from_another_environment_is_invalid_request() {
    let h = Harness::new().await;
    let (c, _) = h.sandbox().await;
    let (other, _) = h.sandbox().await;
    let tokens = flow(&h, &other, "openid").await;
    let r = with_id_token_hint(&h, &c, tokens["id_token"].as_str().unwrap()).await;
    assert_validation(&r, "invalid_request");
}

#[tokio::test]
async fn id_token_hint_issued_to_another_client_is_invalid_request() {
    let h = Harness::new().await;
    let (c, _) = h.sandbox().await;
    let other = h.create_app(&c.env_id, json!({})).await;
    let tokens = flow(&h, &other, "openid").await;
    let r = with_id_token_hint(&h, &c, tokens["id_token"].as_str().unwrap()).await;
    assert_validation(&r, "invalid_request");
}

#[tokio::test]
async fn access_token_as_id_token_hint_is_invalid_request() {
    let h = Harness::new().await;
    let (c, _) = h.sandbox().await;
    let tokens = flow(&h, &c, "openid").await;
    let r = with_id_token_hint(&h, &c, tokens["access_token"].as_str().unwrap()).await;
    assert_validation(&r, "invalid_request");
}

#[tokio::test]
async fn id_token_hint_of_deleted_user_is_unknown_user_id() {
    let h = Harness::new().await;
    let (c, user) = h.sandbox().await;
    let tokens = flow(&h, &c, "openid").await;
    let r = h
        .admin(
            Method::DELETE,
            &format!("/v1/environments/{}/users/{user}", c.env_id),
            None,
        )
        .await;
    assert!(r.status.is_success(), "{}", r.text);
    let r = with_id_token_hint(&h, &c, tokens["id_token"].as_str().unwrap()).await;
    assert_validation(&r, "unknown_user_id");
}

fn lht_claims(h: &Harness, c: &Client, sub: &str) -> Value {
    let t = now(h);
    json!({"iss": c.id, "sub": sub, "aud": h.issuer(&c.env_id), "exp": t + 300, "iat": t})
}

async fn with_lht(h: &Harness, c: &Client, token: &str) -> Resp {
    ciba_pairs(h, c, &[("scope", "openid"), ("login_hint_token", token)]).await
}

fn hmac_lht(c: &Client, claims: &Value) -> String {
    sign_hmac_jws(HmacAlg::HS256, c.secret.as_bytes(), claims).unwrap()
}

#[tokio::test]
async fn login_hint_token_hs256_by_id_and_username() {
    let h = Harness::new().await;
    let (c, user) = h.sandbox().await;
    for sub in [user.as_str(), "alice"] {
        let r = with_lht(&h, &c, &hmac_lht(&c, &lht_claims(&h, &c, sub))).await;
        assert_ok(&r);
    }
}

#[tokio::test]
async fn login_hint_token_expired_is_expired_login_hint_token() {
    let h = Harness::new().await;
    let (c, user) = h.sandbox().await;
    let token = hmac_lht(&c, &lht_claims(&h, &c, &user));
    h.clock.advance_secs(301);
    let r = with_lht(&h, &c, &token).await;
    assert_validation(&r, "expired_login_hint_token");
}

#[tokio::test]
async fn login_hint_token_failures_are_invalid_request() {
    let h = Harness::new().await;
    let (c, user) = h.sandbox().await;
    let other = h.create_app(&c.env_id, json!({})).await;
    let claims = lht_claims(&h, &c, &user);
    // Wrong secret.
    let wrong = sign_hmac_jws(HmacAlg::HS256, b"not-the-secret-0123456789", &claims).unwrap();
    assert_validation(&with_lht(&h, &c, &wrong).await, "invalid_request");
    // Another client's iss (signed with that client's secret, and with ours).
    let mut foreign = claims.clone();
    foreign["iss"] = json!(other.id);
    assert_validation(
        &with_lht(&h, &c, &hmac_lht(&other, &foreign)).await,
        "invalid_request",
    );
    assert_validation(
        &with_lht(&h, &c, &hmac_lht(&c, &foreign)).await,
        "invalid_request",
    );
    // Wrong aud.
    let mut bad_aud = claims.clone();
    bad_aud["aud"] = json!(format!("{}/token", h.issuer(&c.env_id)));
    assert_validation(
        &with_lht(&h, &c, &hmac_lht(&c, &bad_aud)).await,
        "invalid_request",
    );
    // No exp.
    let mut no_exp = claims.clone();
    no_exp.as_object_mut().unwrap().remove("exp");
    assert_validation(
        &with_lht(&h, &c, &hmac_lht(&c, &no_exp)).await,
        "invalid_request",
    );
    // A cty header, correctly signed.
    let head = b64(br#"{"alg":"HS256","typ":"JWT","cty":"JWT"}"#);
    let input = format!("{head}.{}", b64(claims.to_string().as_bytes()));
    let mac = hex_decode(&assent_crypto::hmac_sha256_hex(
        c.secret.as_bytes(),
        input.as_bytes(),
    ));
    let cty = format!("{input}.{}", b64(&mac));
    assert_validation(&with_lht(&h, &c, &cty).await, "invalid_request");
    // alg none.
    let none = format!(
        "{}.{}.",
        b64(br#"{"alg":"none"}"#),
        b64(claims.to_string().as_bytes())
    );
    assert_validation(&with_lht(&h, &c, &none).await, "invalid_request");
}

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[tokio::test]
async fn login_hint_token_unknown_sub_is_unknown_user_id() {
    let h = Harness::new().await;
    let (c, _) = h.sandbox().await;
    let r = with_lht(&h, &c, &hmac_lht(&c, &lht_claims(&h, &c, "nobody"))).await;
    assert_validation(&r, "unknown_user_id");
}

#[tokio::test]
async fn login_hint_token_es256_for_private_key_jwt_app() {
    let h = Harness::new().await;
    let (base, _) = h.sandbox().await;
    let (c, signer) = key_app(&h, &base.env_id, SigningAlg::ES256).await;
    let token = signer
        .sign(Some("JWT"), &lht_claims(&h, &c, "alice"))
        .unwrap();
    let r = call(
        &h,
        &ep(&c.env_id, "cibaAuthorization"),
        Auth::Key(&c, &signer),
        &[("scope", "openid"), ("login_hint_token", &token)],
    )
    .await;
    assert_ok(&r);
}

// --- 5. client authentication ----------------------------------------------------------------

#[tokio::test]
async fn client_secret_basic_ok_and_attacks() {
    let h = Harness::new().await;
    let (c, _) = h.sandbox().await;
    flow(&h, &c, "openid").await;
    let token = ep(&c.env_id, "token");
    let poll = [("grant_type", CIBA), ("auth_req_id", UNKNOWN_ID)];
    // Wrong secret, at both endpoints.
    let wrong = basic(&c.id, "wrong-secret");
    assert_invalid_client(&h.post_form(&token, Some(&wrong), &poll).await);
    assert_invalid_client(
        &h.post_form(
            &ep(&c.env_id, "cibaAuthorization"),
            Some(&wrong),
            &[("scope", "openid"), ("login_hint", "alice")],
        )
        .await,
    );
    // Unknown client id.
    let unknown = basic(&uuid::Uuid::new_v4().to_string(), &c.secret);
    assert_invalid_client(&h.post_form(&token, Some(&unknown), &poll).await);
    // Percent-encoded credentials (RFC 6749 §2.3.1) are decoded.
    let pct = |s: &str| s.bytes().map(|b| format!("%{b:02X}")).collect::<String>();
    let r = h
        .post_form(&token, Some(&basic(&pct(&c.id), &pct(&c.secret))), &poll)
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_grant");
    // Basic + client_secret in the body: two methods.
    let r = h
        .post_form(
            &token,
            Some(&c.basic()),
            &[
                ("grant_type", CIBA),
                ("auth_req_id", UNKNOWN_ID),
                ("client_secret", &c.secret),
            ],
        )
        .await;
    assert_validation(&r, "invalid_request");
    // A matching client_id parameter is fine; a different one is not.
    let r = h
        .post_form(
            &token,
            Some(&c.basic()),
            &[
                ("grant_type", CIBA),
                ("auth_req_id", UNKNOWN_ID),
                ("client_id", &c.id),
            ],
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_grant");
    let other = h.create_app(&c.env_id, json!({})).await;
    let r = h
        .post_form(
            &token,
            Some(&c.basic()),
            &[
                ("grant_type", CIBA),
                ("auth_req_id", UNKNOWN_ID),
                ("client_id", &other.id),
            ],
        )
        .await;
    assert_invalid_client(&r);
    // No credentials at all.
    assert_invalid_client(&h.post_form(&token, None, &poll).await);
    assert_invalid_client(
        &h.post_form(
            &ep(&c.env_id, "cibaAuthorization"),
            None,
            &[("scope", "openid"), ("login_hint", "alice")],
        )
        .await,
    );
    // Malformed Basic and Bearer are invalid_client too.
    assert_invalid_client(&h.post_form(&token, Some("Basic !!!"), &poll).await);
    assert_invalid_client(&h.post_form(&token, Some("Bearer abc"), &poll).await);
    // A client of another environment is unknown here.
    let (foreign, _) = h.sandbox().await;
    let r = h.post_form(&token, Some(&foreign.basic()), &poll).await;
    assert_invalid_client(&r);
}

#[tokio::test]
async fn client_secret_post_ok_and_wrong_method() {
    let h = Harness::new().await;
    let (base, _) = h.sandbox().await;
    let c = h
        .create_app(
            &base.env_id,
            json!({"tokenEndpointAuthMethod": "CLIENT_SECRET_POST"}),
        )
        .await;
    flow_with(&h, &c.env_id, Auth::Post(&c), "openid").await;
    let token = ep(&c.env_id, "token");
    let poll = [("grant_type", CIBA), ("auth_req_id", UNKNOWN_ID)];
    // Basic used by a POST app.
    assert_invalid_client(&h.post_form(&token, Some(&c.basic()), &poll).await);
    // Wrong secret.
    let r = h
        .post_form(
            &token,
            None,
            &[
                ("grant_type", CIBA),
                ("auth_req_id", UNKNOWN_ID),
                ("client_id", &c.id),
                ("client_secret", "nope"),
            ],
        )
        .await;
    assert_invalid_client(&r);
    // Secret without client_id.
    let r = h
        .post_form(
            &token,
            None,
            &[
                ("grant_type", CIBA),
                ("auth_req_id", UNKNOWN_ID),
                ("client_secret", &c.secret),
            ],
        )
        .await;
    assert_invalid_client(&r);
    // And the Basic app cannot use POST.
    let r = call(&h, &token, Auth::Post(&base), &poll).await;
    assert_invalid_client(&r);
}

#[tokio::test]
async fn client_secret_jwt_all_hmac_algs_ok() {
    let h = Harness::new().await;
    let (base, _) = h.sandbox().await;
    let c = h
        .create_app(
            &base.env_id,
            json!({"tokenEndpointAuthMethod": "CLIENT_SECRET_JWT"}),
        )
        .await;
    for alg in [HmacAlg::HS256, HmacAlg::HS384, HmacAlg::HS512] {
        flow_with(&h, &c.env_id, Auth::Hmac(&c, alg), "openid").await;
    }
    // A Basic attempt by a CLIENT_SECRET_JWT app is the wrong method.
    let r = h
        .post_form(
            &ep(&c.env_id, "token"),
            Some(&c.basic()),
            &[("grant_type", CIBA), ("auth_req_id", UNKNOWN_ID)],
        )
        .await;
    assert_invalid_client(&r);
}

#[tokio::test]
async fn client_secret_jwt_attacks_are_invalid_client() {
    let h = Harness::new().await;
    let (base, _) = h.sandbox().await;
    let (foreign, _) = h.sandbox().await;
    let c = h
        .create_app(
            &base.env_id,
            json!({"tokenEndpointAuthMethod": "CLIENT_SECRET_JWT"}),
        )
        .await;
    let env = c.env_id.clone();
    let issuer = h.issuer(&env);
    let sign = |claims: &Value| sign_hmac_jws(HmacAlg::HS256, c.secret.as_bytes(), claims).unwrap();
    let base_claims = || assertion_claims(&h, &c.id, json!(issuer));
    let t = now(&h);

    // Baseline: accepted (invalid_grant on the never-issued auth_req_id).
    let r = token_with_assertion(&h, &env, &sign(&base_claims())).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_grant");

    let mut cases: Vec<(&str, String)> = Vec::new();
    let mut expired = base_claims();
    expired["exp"] = json!(t - 1);
    cases.push(("expired", sign(&expired)));
    let mut far = base_claims();
    far["exp"] = json!(t + 3600 + 60);
    cases.push(("exp > 1h ahead", sign(&far)));
    let mut nbf = base_claims();
    nbf["nbf"] = json!(t + 60);
    cases.push(("nbf in the future", sign(&nbf)));
    let mut no_jti = base_claims();
    no_jti.as_object_mut().unwrap().remove("jti");
    cases.push(("no jti", sign(&no_jti)));
    let mut no_exp = base_claims();
    no_exp.as_object_mut().unwrap().remove("exp");
    cases.push(("no exp", sign(&no_exp)));
    let mut aud = base_claims();
    aud["aud"] = json!(h.issuer(&foreign.env_id));
    cases.push(("foreign aud", sign(&aud)));
    let mut sub = base_claims();
    sub["sub"] = json!("someone-else");
    cases.push(("iss != sub", sign(&sub)));
    let wrong_secret =
        sign_hmac_jws(HmacAlg::HS256, b"wrong-secret-wrong-secret", &base_claims()).unwrap();
    cases.push(("wrong secret", wrong_secret));
    let none = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(base_claims().to_string().as_bytes())
    );
    cases.push(("alg none", none));
    for (what, jwt) in &cases {
        let r = token_with_assertion(&h, &env, jwt).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{what}: {}", r.text);
        assert_invalid_client(&r);
    }

    // Replayed jti: the second use fails.
    let once = sign(&base_claims());
    assert_error(
        &token_with_assertion(&h, &env, &once).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    );
    assert_invalid_client(&token_with_assertion(&h, &env, &once).await);

    // Wrong client_assertion_type.
    let r = h
        .post_form(
            &ep(&env, "token"),
            None,
            &[
                ("grant_type", CIBA),
                ("auth_req_id", UNKNOWN_ID),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:saml2-bearer",
                ),
                ("client_assertion", &sign(&base_claims())),
            ],
        )
        .await;
    assert_invalid_client(&r);
}

#[tokio::test]
async fn private_key_jwt_all_key_types_ok() {
    let h = Harness::new().await;
    let (base, _) = h.sandbox().await;
    for alg in [
        SigningAlg::RS256,
        SigningAlg::PS256,
        SigningAlg::ES256,
        SigningAlg::EdDSA,
    ] {
        let (c, signer) = key_app(&h, &base.env_id, alg).await;
        flow_with(&h, &c.env_id, Auth::Key(&c, &signer), "openid").await;
    }
}

#[tokio::test]
async fn private_key_jwt_audiences() {
    let h = Harness::new().await;
    let (base, _) = h.sandbox().await;
    let (c, signer) = key_app(&h, &base.env_id, SigningAlg::ES256).await;
    let env = c.env_id.clone();
    let issuer = h.issuer(&env);
    for aud in [
        json!(issuer),
        json!(format!("{issuer}/token")),
        json!([format!("{issuer}/token")]),
        json!(["https://elsewhere.example", issuer]),
    ] {
        let jwt = signer
            .sign(Some("JWT"), &assertion_claims(&h, &c.id, aud.clone()))
            .unwrap();
        let r = token_with_assertion(&h, &env, &jwt).await;
        assert_error(&r, StatusCode::BAD_REQUEST, "invalid_grant");
    }
    // [endpoint] at /cibaAuthorization.
    let jwt = signer
        .sign(
            Some("JWT"),
            &assertion_claims(&h, &c.id, json!([format!("{issuer}/cibaAuthorization")])),
        )
        .unwrap();
    let r = h
        .post_form(
            &ep(&env, "cibaAuthorization"),
            None,
            &[
                ("scope", "openid"),
                ("login_hint", "alice"),
                ("client_assertion_type", JWT_BEARER),
                ("client_assertion", &jwt),
            ],
        )
        .await;
    assert_ok(&r);
    // The backchannel endpoint, under either name, is an audience wherever the assertion is
    // presented (CIBA §7.1, R17).
    for name in ["cibaAuthorization", "bc-authorize"] {
        let jwt = signer
            .sign(
                Some("JWT"),
                &assertion_claims(&h, &c.id, json!(format!("{issuer}/{name}"))),
            )
            .unwrap();
        let r = token_with_assertion(&h, &env, &jwt).await;
        assert_error(&r, StatusCode::BAD_REQUEST, "invalid_grant");
    }
    // Some other URL.
    let jwt = signer
        .sign(
            Some("JWT"),
            &assertion_claims(&h, &c.id, json!("https://assent.test/other/as")),
        )
        .unwrap();
    assert_invalid_client(&token_with_assertion(&h, &env, &jwt).await);
}

#[tokio::test]
async fn private_key_jwt_key_confusion_and_foreign_key_are_invalid_client() {
    let h = Harness::new().await;
    let (base, _) = h.sandbox().await;
    let kid = "kid1";
    let km = generate_key(SigningAlg::ES256, kid).unwrap();
    let c = h
        .create_app(
            &base.env_id,
            json!({"tokenEndpointAuthMethod": "PRIVATE_KEY_JWT", "jwks": {"keys": [km.public_jwk.clone()]}}),
        )
        .await;
    let env = c.env_id.clone();
    let issuer = h.issuer(&env);
    // HS256 keyed with the public JWK's JSON text.
    for key_text in [
        km.public_jwk.to_string(),
        serde_json::to_string_pretty(&km.public_jwk).unwrap(),
    ] {
        let jwt = sign_hmac_jws(
            HmacAlg::HS256,
            key_text.as_bytes(),
            &assertion_claims(&h, &c.id, json!(issuer)),
        )
        .unwrap();
        assert_invalid_client(&token_with_assertion(&h, &env, &jwt).await);
    }
    // A key not registered, same kid and a fresh kid.
    for other_kid in [kid, "kid2"] {
        let other = generate_key(SigningAlg::ES256, other_kid).unwrap();
        let signer = JwsSigner::from_pkcs8(SigningAlg::ES256, other_kid, &other.pkcs8_der).unwrap();
        let jwt = signer
            .sign(Some("JWT"), &assertion_claims(&h, &c.id, json!(issuer)))
            .unwrap();
        assert_invalid_client(&token_with_assertion(&h, &env, &jwt).await);
        let r = h
            .post_form(
                &ep(&env, "cibaAuthorization"),
                None,
                &[
                    ("scope", "openid"),
                    ("login_hint", "alice"),
                    ("client_assertion_type", JWT_BEARER),
                    ("client_assertion", &jwt),
                ],
            )
            .await;
        assert_invalid_client(&r);
    }
    // alg none claiming to be this client.
    let none = format!(
        "{}.{}.",
        b64(br#"{"alg":"none"}"#),
        b64(assertion_claims(&h, &c.id, json!(issuer))
            .to_string()
            .as_bytes())
    );
    assert_invalid_client(&token_with_assertion(&h, &env, &none).await);
    // The registered key still works.
    let signer = JwsSigner::from_pkcs8(SigningAlg::ES256, kid, &km.pkcs8_der).unwrap();
    let jwt = signer
        .sign(Some("JWT"), &assertion_claims(&h, &c.id, json!(issuer)))
        .unwrap();
    assert_error(
        &token_with_assertion(&h, &env, &jwt).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    );
}

// --- 6. tokens ------------------------------------------------------------------------------

fn verify_with_openidconnect(
    jwks: &Value,
    issuer: &str,
    client_id: &str,
    at_time: i64,
    id_token: &str,
    access_token: &str,
) -> Value {
    use openidconnect::core::{CoreIdToken, CoreIdTokenVerifier, CoreJsonWebKeySet};
    use openidconnect::{AccessToken, AccessTokenHash, ClientId, IssuerUrl, Nonce};

    let keys: CoreJsonWebKeySet = serde_json::from_value(jwks.clone()).unwrap();
    let verifier = CoreIdTokenVerifier::new_public_client(
        ClientId::new(client_id.to_owned()),
        IssuerUrl::new(issuer.to_owned()).unwrap(),
        keys,
    )
    .allow_any_alg()
    .set_time_fn(move || chrono::DateTime::from_timestamp(at_time, 0).unwrap());
    let token: CoreIdToken = id_token.parse().unwrap();
    let claims = token
        .claims(&verifier, |_: Option<&Nonce>| Ok(()))
        .expect("ID token verifies");
    let expected = AccessTokenHash::from_token(
        &AccessToken::new(access_token.to_owned()),
        token.signing_alg().unwrap(),
        token.signing_key(&verifier).unwrap(),
    )
    .unwrap();
    assert_eq!(claims.access_token_hash(), Some(&expected));
    serde_json::to_value(claims).unwrap()
}

#[tokio::test]
async fn id_token_verifies_with_openidconnect_for_every_alg() {
    let h = Harness::new().await;
    let (base, _) = h.sandbox().await;
    let env = base.env_id.clone();
    let issuer = h.issuer(&env);
    for alg in ["RS256", "PS256", "ES256", "EdDSA"] {
        let c = h
            .create_app(&env, json!({"idTokenSigningAlgorithm": alg}))
            .await;
        let tokens = flow(&h, &c, "openid").await;
        let jwks = env_jwks(&h, &env).await;
        let idt = tokens["id_token"].as_str().unwrap();
        let at = tokens["access_token"].as_str().unwrap();
        assert_eq!(header_of(idt)["alg"], alg);
        let claims = verify_with_openidconnect(&jwks, &issuer, &c.id, now(&h), idt, at);
        assert_eq!(claims["iss"], issuer.as_str());
        // Independently: at_hash is the left half of SHA-256 for the *256 algorithms.
        if alg != "EdDSA" {
            let d = assent_crypto::sha256(at.as_bytes());
            assert_eq!(claims_of(idt)["at_hash"], b64(&d[..16]));
        }
        // And with assent's own verifier against the JWKS.
        let set = JwkSet::parse(&jwks).unwrap();
        assent_crypto::verify_jws(idt, &set, &SigningAlg::ALL).unwrap();
        let kid = header_of(idt)["kid"].as_str().unwrap().to_owned();
        assert!(set.contains_kid(&kid));
    }
}

#[tokio::test]
async fn id_token_claims() {
    let h = Harness::new().await;
    let (c, user) = h.sandbox().await;
    let id = h.start(&c, "openid").await;
    h.clock.advance_secs(3);
    let approved_at = now(&h);
    approve(&h, &c.env_id, &id).await;
    h.clock.advance_secs(4);
    let r = h.poll(&c, &id).await;
    assert_ok(&r);
    let idt = r.body["id_token"].as_str().unwrap();
    let header = header_of(idt);
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["typ"], "JWT");
    let jwks = env_jwks(&h, &c.env_id).await;
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|k| k["kid"].as_str())
        .collect();
    assert!(kids.contains(&header["kid"].as_str().unwrap()));
    let claims = claims_of(idt);
    assert_eq!(claims["iss"], h.issuer(&c.env_id));
    assert_eq!(claims["sub"], user.as_str());
    assert_eq!(claims["aud"], c.id.as_str());
    assert_eq!(claims["auth_time"], json!(approved_at));
    assert_eq!(claims["iat"], json!(now(&h)));
    assert_eq!(claims["exp"], json!(claims["iat"].as_i64().unwrap() + 3600));
    assert_eq!(claims["amr"], json!(["sim"]));
    assert_eq!(claims["env"], c.env_id.as_str());
    assert!(claims.get("acr").is_none(), "{claims}");
    for absent in ["email", "name", "given_name", "preferred_username"] {
        assert!(claims.get(absent).is_none(), "{absent} in {claims}");
    }
}

#[tokio::test]
async fn id_token_acr_only_when_requested() {
    let h = Harness::new().await;
    let (c, _) = h.sandbox().await;
    let r = ciba_pairs(
        &h,
        &c,
        &[
            ("scope", "openid"),
            ("login_hint", "alice"),
            ("acr_values", "urn:assent:acr:pwd"),
        ],
    )
    .await;
    assert_ok(&r);
    let id = r.body["auth_req_id"].as_str().unwrap().to_owned();
    approve(&h, &c.env_id, &id).await;
    let r = h.poll(&c, &id).await;
    assert_ok(&r);
    let claims = claims_of(r.body["id_token"].as_str().unwrap());
    assert_eq!(claims["acr"], "urn:assent:acr:pwd");
}

#[tokio::test]
async fn id_token_claims_by_scope() {
    let h = Harness::new().await;
    let (c, _) = h.sandbox().await;
    let email = claims_of(
        flow(&h, &c, "openid email").await["id_token"]
            .as_str()
            .unwrap(),
    );
    assert_eq!(email["email"], "Alice@Example.com");
    for absent in ["name", "given_name", "preferred_username"] {
        assert!(email.get(absent).is_none(), "{absent} in {email}");
    }
    let profile = claims_of(
        flow(&h, &c, "openid profile").await["id_token"]
            .as_str()
            .unwrap(),
    );
    assert!(profile.get("email").is_none(), "{profile}");
    assert_eq!(profile["name"], "Alice Liddell");
    assert_eq!(profile["given_name"], "Alice");
    assert_eq!(profile["preferred_username"], "alice");
}

#[tokio::test]
async fn access_token_is_an_rfc9068_jwt() {
    let h = Harness::new().await;
    let (c, user) = h.sandbox().await;
    let tokens = flow(&h, &c, "openid email").await;
    let at = tokens["access_token"].as_str().unwrap();
    assert_eq!(header_of(at)["typ"], "at+jwt");
    let claims = claims_of(at);
    let issuer = h.issuer(&c.env_id);
    assert_eq!(claims["iss"], issuer.as_str());
    assert_eq!(claims["sub"], user.as_str());
    assert!(claims.get("aud").is_some_and(|a| !a.is_null()));
    assert_eq!(claims["client_id"], c.id.as_str());
    assert_eq!(claims["scope"], "openid email");
    assert_eq!(claims["iat"], json!(now(&h)));
    assert_eq!(claims["exp"], json!(now(&h) + 3600));
    assert!(claims["jti"].as_str().is_some_and(|j| j.len() >= 16));
    assert_eq!(claims["env"], c.env_id.as_str());
    let set = JwkSet::parse(&env_jwks(&h, &c.env_id).await).unwrap();
    assent_crypto::verify_jws(at, &set, &SigningAlg::ALL).unwrap();
}

// --- 7. refresh -----------------------------------------------------------------------------

#[tokio::test]
async fn refresh_token_only_with_offline_access_and_grant() {
    let h = Harness::new().await;
    let (c, _) = h.sandbox().await;
    let t = flow(&h, &c, "openid offline_access").await;
    assert!(t["refresh_token"].is_string(), "{t}");
    assert_eq!(t["scope"], "openid offline_access");
    let t = flow(&h, &c, "openid").await;
    assert!(t.get("refresh_token").is_none(), "{t}");

    let no_rt = h
        .create_app(&c.env_id, json!({"grantTypes": ["CIBA"]}))
        .await;
    let t = flow(&h, &no_rt, "openid offline_access").await;
    assert!(t.get("refresh_token").is_none(), "{t}");
    assert_eq!(t["scope"], "openid");
    assert_eq!(
        claims_of(t["access_token"].as_str().unwrap())["scope"],
        "openid"
    );
}

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_family() {
    let h = Harness::new().await;
    let (c, _) = h.sandbox().await;
    let t = flow(&h, &c, "openid offline_access").await;
    let rt1 = t["refresh_token"].as_str().unwrap().to_owned();
    let at1 = t["access_token"].as_str().unwrap().to_owned();
    h.clock.advance_secs(10);
    let r = refresh(&h, &c, &rt1, None).await;
    assert_ok(&r);
    let rt2 = r.body["refresh_token"].as_str().unwrap().to_owned();
    let at2 = r.body["access_token"].as_str().unwrap().to_owned();
    assert_ne!(rt1, rt2);
    assert_ne!(at1, at2);
    assert!(r.body["id_token"].is_string());
    assert_eq!(r.body["token_type"], "Bearer");
    assert_ok(&userinfo(&h, &c.env_id, &at2).await);

    // Reuse of the rotated token: invalid_grant, and the new one is revoked too.
    let r = refresh(&h, &c, &rt1, None).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_grant");
    let r = refresh(&h, &c, &rt2, None).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_grant");
    assert_eq!(introspect(&h, &c, &rt2).await.body["active"], false);
    assert_eq!(introspect(&h, &c, &at2).await.body["active"], false);
    assert_eq!(
        userinfo(&h, &c.env_id, &at2).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn refresh_by_another_client_is_invalid_grant() {
    let h = Harness::new().await;
    let (c, _) = h.sandbox().await;
    let other = h.create_app(&c.env_id, json!({})).await;
    let t = flow(&h, &c, "openid offline_access").await;
    let rt = t["refresh_token"].as_str().unwrap();
    assert_error(
        &refresh(&h, &other, rt, None).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    );
    // The owner's token is untouched.
    assert_ok(&refresh(&h, &c, rt, None).await);
}

#[tokio::test]
async fn refresh_scope_narrowing_and_widening() {
    let h = Harness::new().await;
    let (c, _) = h.sandbox().await;
    let t = flow(&h, &c, "openid email profile offline_access").await;
    let rt = t["refresh_token"].as_str().unwrap();
    let r = refresh(&h, &c, rt, Some("openid phone")).await;
    assert_validation(&r, "invalid_scope");
    let r = refresh(&h, &c, rt, Some("openid email")).await;
    assert_ok(&r);
    let scope = r.body["scope"].as_str().unwrap();
    assert!(scope.split(' ').any(|s| s == "email"), "{scope}");
    assert!(!scope.split(' ').any(|s| s == "profile"), "{scope}");
    let idt = claims_of(r.body["id_token"].as_str().unwrap());
    assert!(idt.get("name").is_none(), "{idt}");
    assert_eq!(idt["email"], "Alice@Example.com");
    // Narrowed to a grant without openid: an access token, and no ID token.
    let rt = r.body["refresh_token"].as_str().unwrap().to_owned();
    let r = refresh(&h, &c, &rt, Some("email")).await;
    assert_ok(&r);
    assert!(r.body.get("id_token").is_none(), "{}", r.text);
    assert!(r.body["access_token"].is_string());
    // Missing refresh_token parameter.
    let r = h
        .post_form(
            &ep(&c.env_id, "token"),
            Some(&c.basic()),
            &[("grant_type", "refresh_token")],
        )
        .await;
    assert_validation(&r, "invalid_request");
    assert_error(
        &refresh(&h, &c, "garbage", None).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    );
}

// --- 8. userinfo ----------------------------------------------------------------------------

#[tokio::test]
async fn userinfo_get_and_post() {
    let h = Harness::new().await;
    let (c, user) = h.sandbox().await;
    let t = flow(&h, &c, "openid email").await;
    let at = t["access_token"].as_str().unwrap();
    let r = userinfo(&h, &c.env_id, at).await;
    assert_ok(&r);
    assert_eq!(r.body["sub"], user.as_str());
    assert_eq!(r.body["email"], "Alice@Example.com");
    assert!(r.body.get("name").is_none());
    let r = h
        .post_raw(
            &ep(&c.env_id, "userinfo"),
            Some(&format!("Bearer {at}")),
            Vec::new(),
        )
        .await;
    assert_ok(&r);
    assert_eq!(r.body["sub"], user.as_str());

    let t = flow(&h, &c, "openid profile").await;
    let r = userinfo(&h, &c.env_id, t["access_token"].as_str().unwrap()).await;
    assert_ok(&r);
    assert_eq!(r.body["preferred_username"], "alice");
    assert!(r.body.get("email").is_none());
}

#[tokio::test]
async fn userinfo_errors_follow_rfc6750() {
    let h = Harness::new().await;
    let (c, _) = h.sandbox().await;
    let path = ep(&c.env_id, "userinfo");
    // No token: a bare challenge.
    let r = h.get(&path, None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    let www = r.header("www-authenticate").unwrap();
    assert!(www.starts_with("Bearer realm="), "{www}");
    assert!(!www.contains("error="), "{www}");
    assert_no_store(&r);
    assert_correlation(&r);
    // Garbage token.
    let r = h.get(&path, Some("Bearer garbage.token.here")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    assert!(
        r.header("www-authenticate")
            .unwrap()
            .contains("error=\"invalid_token\"")
    );
    assert_no_store(&r);
    // Expired.
    let t = flow(&h, &c, "openid").await;
    let at = t["access_token"].as_str().unwrap().to_owned();
    h.clock.advance_secs(3601);
    let r = userinfo(&h, &c.env_id, &at).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    assert!(
        r.header("www-authenticate")
            .unwrap()
            .contains("error=\"invalid_token\"")
    );
    // Revoked.
    let t = flow(&h, &c, "openid").await;
    let at = t["access_token"].as_str().unwrap().to_owned();
    assert_ok(&userinfo(&h, &c.env_id, &at).await);
    let r = h
        .post_form(
            &ep(&c.env_id, "revoke"),
            Some(&c.basic()),
            &[("token", &at)],
        )
        .await;
    assert_ok(&r);
    let r = userinfo(&h, &c.env_id, &at).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    assert!(
        r.header("www-authenticate")
            .unwrap()
            .contains("error=\"invalid_token\"")
    );
    // The ID token is not an access token.
    let r = userinfo(&h, &c.env_id, t["id_token"].as_str().unwrap()).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    // An access token of another environment.
    let (other, _) = h.sandbox().await;
    let t = flow(&h, &other, "openid").await;
    let r = userinfo(&h, &c.env_id, t["access_token"].as_str().unwrap()).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
}

// --- 9. introspection and revocation ----------------------------------------------------------

#[tokio::test]
async fn introspection() {
    let h = Harness::new().await;
    let (c, user) = h.sandbox().await;
    let other = h.create_app(&c.env_id, json!({})).await;
    let t = flow(&h, &c, "openid offline_access").await;
    let at = t["access_token"].as_str().unwrap();
    let rt = t["refresh_token"].as_str().unwrap();

    let r = introspect(&h, &c, at).await;
    assert_eq!(r.body["active"], true, "{}", r.text);
    assert_eq!(r.body["sub"], user.as_str());
    assert_eq!(r.body["client_id"], c.id.as_str());
    assert_eq!(r.body["scope"], "openid offline_access");
    assert_eq!(r.body["exp"], json!(now(&h) + 3600));

    let r = introspect(&h, &other, at).await;
    assert_eq!(r.body, json!({"active": false}));

    let r = introspect(&h, &c, rt).await;
    assert_eq!(r.body["active"], true, "{}", r.text);
    assert_eq!(r.body["token_type"], "refresh_token");
    assert_eq!(
        introspect(&h, &other, rt).await.body,
        json!({"active": false})
    );

    for garbage in ["garbage", "a.b.c", t["id_token"].as_str().unwrap()] {
        assert_eq!(
            introspect(&h, &c, garbage).await.body,
            json!({"active": false})
        );
    }

    let r = h
        .post_form(&ep(&c.env_id, "introspect"), None, &[("token", at)])
        .await;
    assert_invalid_client(&r);
    let r = h
        .post_form(&ep(&c.env_id, "introspect"), Some(&c.basic()), &[])
        .await;
    assert_validation(&r, "invalid_request");
}

#[tokio::test]
async fn revocation() {
    let h = Harness::new().await;
    let (c, _) = h.sandbox().await;
    let revoke = |token: String| {
        let h = &h;
        let c = &c;
        async move {
            let r = h
                .post_form(
                    &ep(&c.env_id, "revoke"),
                    Some(&c.basic()),
                    &[("token", &token)],
                )
                .await;
            assert_ok(&r);
        }
    };
    // Access token.
    let t = flow(&h, &c, "openid offline_access").await;
    let at = t["access_token"].as_str().unwrap().to_owned();
    revoke(at.clone()).await;
    assert_eq!(introspect(&h, &c, &at).await.body["active"], false);

    // Refresh token: its family is revoked.
    let rt1 = t["refresh_token"].as_str().unwrap().to_owned();
    let r = refresh(&h, &c, &rt1, None).await;
    assert_ok(&r);
    let rt2 = r.body["refresh_token"].as_str().unwrap().to_owned();
    revoke(rt2.clone()).await;
    assert_error(
        &refresh(&h, &c, &rt2, None).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    );
    assert_eq!(introspect(&h, &c, &rt2).await.body["active"], false);

    // Revoking a parent refresh token revokes its live descendant.
    let t = flow(&h, &c, "openid offline_access").await;
    let parent = t["refresh_token"].as_str().unwrap().to_owned();
    let r = refresh(&h, &c, &parent, None).await;
    assert_ok(&r);
    let child = r.body["refresh_token"].as_str().unwrap().to_owned();
    let child_at = r.body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(introspect(&h, &c, &child_at).await.body["active"], true);
    revoke(parent).await;
    assert_error(
        &refresh(&h, &c, &child, None).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    );
    assert_eq!(introspect(&h, &c, &child_at).await.body["active"], false);

    // Unknown token: 200.
    revoke("never-issued".into()).await;
    // Another client's token is left alone.
    let other = h.create_app(&c.env_id, json!({})).await;
    let t = flow(&h, &c, "openid offline_access").await;
    let rt = t["refresh_token"].as_str().unwrap().to_owned();
    let r = h
        .post_form(
            &ep(&c.env_id, "revoke"),
            Some(&other.basic()),
            &[("token", &rt)],
        )
        .await;
    assert_ok(&r);
    assert_eq!(introspect(&h, &c, &rt).await.body["active"], true);
    // Unauthenticated.
    let r = h
        .post_form(&ep(&c.env_id, "revoke"), None, &[("token", &rt)])
        .await;
    assert_invalid_client(&r);
}

// --- 10. discovery --------------------------------------------------------------------------

#[tokio::test]
async fn discovery_document() {
    let h = Harness::new().await;
    let (c, _) = h.sandbox().await;
    let r = h
        .get(&ep(&c.env_id, ".well-known/openid-configuration"), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let issuer = format!("https://assent.test/{}/as", c.env_id);
    let d = &r.body;
    assert_eq!(d["issuer"], issuer.as_str());
    assert_eq!(d["token_endpoint"], format!("{issuer}/token"));
    assert_eq!(d["jwks_uri"], format!("{issuer}/jwks"));
    assert_eq!(
        d["backchannel_authentication_endpoint"],
        format!("{issuer}/cibaAuthorization")
    );
    assert_eq!(
        d["backchannel_token_delivery_modes_supported"],
        json!(["poll"])
    );
    assert!(
        d["grant_types_supported"]
            .as_array()
            .unwrap()
            .contains(&json!(CIBA))
    );
    let methods = d["token_endpoint_auth_methods_supported"]
        .as_array()
        .unwrap();
    for m in [
        "client_secret_basic",
        "client_secret_post",
        "client_secret_jwt",
        "private_key_jwt",
    ] {
        assert!(methods.contains(&json!(m)), "{m}");
    }
    let algs = d["id_token_signing_alg_values_supported"]
        .as_array()
        .unwrap();
    assert!(algs.contains(&json!("EdDSA")));
    assert!(!algs.contains(&json!("Ed25519")));
    assert!(
        d.get("backchannel_authentication_request_signing_alg_values_supported")
            .is_none()
    );
    assert!(d.get("authorization_details_types_supported").is_none());
    for r in [&r, &h.get(&ep(&c.env_id, "jwks"), None).await] {
        let cc = r.header("cache-control").unwrap();
        assert!(cc.contains("public"), "{cc}");
        let max_age: u32 = cc
            .split(',')
            .filter_map(|p| p.trim().strip_prefix("max-age="))
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(max_age <= 300, "{cc}");
        assert_correlation(r);
    }
}

#[tokio::test]
async fn tokens_verify_only_against_their_own_environments_jwks() {
    let h = Harness::new().await;
    let (a, _) = h.sandbox().await;
    let (b, _) = h.sandbox().await;
    let t = flow(&h, &a, "openid").await;
    // Make sure B has keys published too.
    flow(&h, &b, "openid").await;
    let jwks_a = JwkSet::parse(&env_jwks(&h, &a.env_id).await).unwrap();
    let jwks_b = JwkSet::parse(&env_jwks(&h, &b.env_id).await).unwrap();
    for token in [
        t["id_token"].as_str().unwrap(),
        t["access_token"].as_str().unwrap(),
    ] {
        assent_crypto::verify_jws(token, &jwks_a, &SigningAlg::ALL).unwrap();
        assert!(assent_crypto::verify_jws(token, &jwks_b, &SigningAlg::ALL).is_err());
    }
}

// --- 11. correlation ids ----------------------------------------------------------------------

#[tokio::test]
async fn correlation_id_on_every_response() {
    let h = Harness::new().await;
    let (c, _) = h.sandbox().await;
    let id = h.start(&c, "openid").await;
    let mut seen = std::collections::HashSet::new();
    let responses = [
        h.ciba(&c, &[("scope", "openid"), ("login_hint", "alice")])
            .await,
        h.poll(&c, &id).await,
        h.poll(&c, &id).await,
        h.ciba(&c, &[("scope", "openid")]).await,
        h.post_form(&ep(&c.env_id, "token"), None, &[]).await,
        h.get(&ep(&c.env_id, "jwks"), None).await,
        h.get(&ep(&c.env_id, "userinfo"), None).await,
    ];
    for r in &responses {
        assert_correlation(r);
        assert!(seen.insert(r.header("x-correlation-id").unwrap().to_owned()));
    }
}

#[tokio::test]
async fn wrong_method_is_405_with_a_json_body() {
    let h = Harness::new().await;
    let (client, _) = h.sandbox().await;
    let r = h.get(&format!("/{}/as/token", client.env_id), None).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.error(), "invalid_request");
    let r = h
        .admin(
            axum::http::Method::PUT,
            &format!("/v1/environments/{}", client.env_id),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.body["code"], "METHOD_NOT_ALLOWED");
}

/// A tiny JWKS server for `jwksUrl`: serves whatever `keys` holds and counts fetches.
async fn jwks_server(
    keys: Arc<std::sync::Mutex<Value>>,
) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let hits = Arc::new(AtomicUsize::new(0));
    let (k, c) = (keys.clone(), hits.clone());
    let app = axum::Router::new().route(
        "/jwks",
        axum::routing::get(move || {
            let (k, c) = (k.clone(), c.clone());
            async move {
                c.fetch_add(1, Ordering::SeqCst);
                axum::Json(k.lock().unwrap().clone())
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/jwks"), hits)
}

#[tokio::test]
async fn private_key_jwt_via_jwks_url_is_cached_and_refetched_for_a_new_kid() {
    use std::sync::atomic::Ordering;
    let h = Harness::with_state(
        |_| {},
        |s| {
            s.set_jwks_cache(
                assent_server::outbound::JwksCache::new(true)
                    .with_min_refresh(std::time::Duration::ZERO),
            )
        },
    )
    .await;
    let (base, _) = h.sandbox().await;
    let k1 = generate_key(SigningAlg::ES256, "k1").unwrap();
    let k2 = generate_key(SigningAlg::ES256, "k2").unwrap();
    let keys = Arc::new(std::sync::Mutex::new(json!({"keys": [k1.public_jwk]})));
    let (url, hits) = jwks_server(keys.clone()).await;
    let c = h
        .create_app(
            &base.env_id,
            json!({"tokenEndpointAuthMethod": "PRIVATE_KEY_JWT", "jwksUrl": url}),
        )
        .await;
    let s1 = JwsSigner::from_pkcs8(SigningAlg::ES256, "k1", &k1.pkcs8_der).unwrap();
    let s2 = JwsSigner::from_pkcs8(SigningAlg::ES256, "k2", &k2.pkcs8_der).unwrap();
    let aud = json!(h.issuer(&c.env_id));
    let signed = |s: &JwsSigner| {
        s.sign(Some("JWT"), &assertion_claims(&h, &c.id, aud.clone()))
            .unwrap()
    };

    let r = token_with_assertion(&h, &c.env_id, &signed(&s1)).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_grant");
    let r = token_with_assertion(&h, &c.env_id, &signed(&s1)).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_grant");
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "the second assertion used the cache"
    );

    // The client rotates to k2: an assertion with the unknown kid makes Assent refetch.
    *keys.lock().unwrap() = json!({"keys": [k2.public_jwk]});
    let r = token_with_assertion(&h, &c.env_id, &signed(&s2)).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_grant");
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    // k1 is gone from the client's set now.
    assert_invalid_client(&token_with_assertion(&h, &c.env_id, &signed(&s1)).await);
}

#[tokio::test]
async fn jwks_url_on_a_private_address_is_refused_without_the_development_switch() {
    let h = Harness::with_state(
        |_| {},
        |s| s.set_jwks_cache(assent_server::outbound::JwksCache::new(false)),
    )
    .await;
    let (base, _) = h.sandbox().await;
    let k1 = generate_key(SigningAlg::ES256, "k1").unwrap();
    let keys = Arc::new(std::sync::Mutex::new(json!({"keys": [k1.public_jwk]})));
    let (url, hits) = jwks_server(keys).await;
    let c = h
        .create_app(
            &base.env_id,
            json!({"tokenEndpointAuthMethod": "PRIVATE_KEY_JWT", "jwksUrl": url}),
        )
        .await;
    let s1 = JwsSigner::from_pkcs8(SigningAlg::ES256, "k1", &k1.pkcs8_der).unwrap();
    let jwt = s1
        .sign(
            Some("JWT"),
            &assertion_claims(&h, &c.id, json!(h.issuer(&c.env_id))),
        )
        .unwrap();
    assert_invalid_client(&token_with_assertion(&h, &c.env_id, &jwt).await);
    assert_eq!(
        hits.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "no request left Assent"
    );
}

#[tokio::test]
async fn ed25519_is_accepted_as_an_alias_of_eddsa_in_assertions() {
    let h = Harness::new().await;
    let (base, _) = h.sandbox().await;
    let (c, _) = key_app(&h, &base.env_id, SigningAlg::EdDSA).await;
    // key_app registered a fresh key; make one we can sign with by hand under alg "Ed25519".
    let km = generate_key(SigningAlg::EdDSA, "ed").unwrap();
    patch_app(&h, &c, json!({"jwks": {"keys": [km.public_jwk]}})).await;
    let pair = aws_lc_rs::signature::Ed25519KeyPair::from_pkcs8(&km.pkcs8_der).unwrap();
    let sign_as = |alg: &str| {
        let header = b64(json!({"alg": alg, "kid": "ed", "typ": "JWT"})
            .to_string()
            .as_bytes());
        let claims = assertion_claims(&h, &c.id, json!(h.issuer(&c.env_id)));
        let payload = b64(claims.to_string().as_bytes());
        let input = format!("{header}.{payload}");
        let sig = pair.sign(input.as_bytes());
        format!("{input}.{}", b64(sig.as_ref()))
    };
    for alg in ["Ed25519", "EdDSA"] {
        let r = token_with_assertion(&h, &c.env_id, &sign_as(alg)).await;
        assert_error(&r, StatusCode::BAD_REQUEST, "invalid_grant");
    }
    // Discovery lists EdDSA, not the alias.
    let d = h
        .get(&ep(&c.env_id, ".well-known/openid-configuration"), None)
        .await;
    let algs = d.body["token_endpoint_auth_signing_alg_values_supported"].to_string();
    assert!(algs.contains("EdDSA") && !algs.contains("Ed25519"));
}

#[tokio::test]
async fn a_user_disabled_after_approving_gets_no_tokens() {
    let h = Harness::new().await;
    let (client, user) = h.sandbox().await;
    let id = h.start(&client, "openid").await;
    approve(&h, &client.env_id, &id).await;
    let r = h
        .admin(
            Method::PATCH,
            &format!("/v1/environments/{}/users/{user}", client.env_id),
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = h.poll(&client, &id).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_grant");
}

#[tokio::test]
async fn an_ambiguous_login_hint_names_nobody() {
    let h = Harness::new().await;
    let (client, _) = h.sandbox().await;
    // "bob@example.com" is one user's username and another user's email.
    h.create_user(&client.env_id, json!({"username": "bob@example.com"}))
        .await;
    h.create_user(
        &client.env_id,
        json!({"username": "robert", "email": "bob@example.com"}),
    )
    .await;
    let r = h
        .ciba(
            &client,
            &[("scope", "openid"), ("login_hint", "bob@example.com")],
        )
        .await;
    assert_validation(&r, "unknown_user_id");
    // The typed forms are not ambiguous.
    for hint in ["username:bob@example.com", "email:bob@example.com"] {
        let r = h
            .ciba(&client, &[("scope", "openid"), ("login_hint", hint)])
            .await;
        assert_ok(&r);
    }
    // Two users sharing a phone number: tel: names nobody.
    h.create_user(
        &client.env_id,
        json!({"username": "alice2", "phoneNumber": "+1 (555) 010-2030"}),
    )
    .await;
    let r = h
        .ciba(
            &client,
            &[("scope", "openid"), ("login_hint", "tel:+15550102030")],
        )
        .await;
    assert_validation(&r, "unknown_user_id");
}

#[tokio::test]
async fn tokens_of_a_disabled_user_or_application_stop_working() {
    let h = Harness::new().await;
    let (client, user) = h.sandbox().await;
    let tokens = flow(&h, &client, "openid").await;
    let at = tokens["access_token"].as_str().unwrap().to_owned();
    assert_eq!(
        userinfo(&h, &client.env_id, &at).await.status,
        StatusCode::OK
    );
    assert_eq!(introspect(&h, &client, &at).await.body["active"], true);
    let r = h
        .admin(
            Method::PATCH,
            &format!("/v1/environments/{}/users/{user}", client.env_id),
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        userinfo(&h, &client.env_id, &at).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(introspect(&h, &client, &at).await.body["active"], false);
    // Re-enabled user, disabled application: still refused at userinfo.
    h.admin(
        Method::PATCH,
        &format!("/v1/environments/{}/users/{user}", client.env_id),
        Some(json!({"enabled": true})),
    )
    .await;
    assert_eq!(
        userinfo(&h, &client.env_id, &at).await.status,
        StatusCode::OK
    );
    patch_app(&h, &client, json!({"enabled": false})).await;
    assert_eq!(
        userinfo(&h, &client.env_id, &at).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn userinfo_takes_the_token_from_a_form_body() {
    let h = Harness::new().await;
    let (c, user) = h.sandbox().await;
    let t = flow(&h, &c, "openid").await;
    let at = t["access_token"].as_str().unwrap();
    let path = ep(&c.env_id, "userinfo");
    let r = h.post_form(&path, None, &[("access_token", at)]).await;
    assert_ok(&r);
    assert_eq!(r.body["sub"], user);
    // Header and body at once: invalid_request (RFC 6750 §2).
    let r = h
        .post_form(
            &path,
            Some(&format!("Bearer {at}")),
            &[("access_token", at)],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.header("www-authenticate")
            .unwrap()
            .contains("invalid_request")
    );
    // A forged token in the body is refused like one in the header.
    let r = h.post_form(&path, None, &[("access_token", "a.b.c")]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

/// §3.1, issue #6 item 5: every client-authentication failure reads the same, so a caller
/// cannot learn which client ids exist or how they authenticate. An assertion signed with a
/// wrong key for an unknown `iss`, for a CLIENT_SECRET_JWT client, for a PRIVATE_KEY_JWT
/// client and for a CLIENT_SECRET_BASIC client; a wrong Basic secret and an unknown Basic
/// client; an expired assertion of a real client: one sentence.
#[tokio::test]
async fn client_authentication_failures_are_indistinguishable() {
    let h = Harness::new().await;
    let (basic, _) = h.sandbox().await;
    let env = basic.env_id.clone();
    let hmac = h
        .create_app(
            &env,
            json!({"tokenEndpointAuthMethod": "CLIENT_SECRET_JWT"}),
        )
        .await;
    let (key, _) = key_app(&h, &env, SigningAlg::ES256).await;
    let (_, stranger) = key_app(&h, &env, SigningAlg::ES256).await;
    let issuer = h.issuer(&env);
    let unknown = "3f1b2c4d-0000-4000-8000-000000000000";

    let mut answers: Vec<(String, Resp)> = Vec::new();
    for (who, id) in [
        ("unknown iss", unknown),
        ("CLIENT_SECRET_JWT client", hmac.id.as_str()),
        ("PRIVATE_KEY_JWT client", key.id.as_str()),
        ("CLIENT_SECRET_BASIC client", basic.id.as_str()),
    ] {
        for (how, jwt) in [
            (
                "HS256 with a wrong secret",
                sign_hmac_jws(
                    HmacAlg::HS256,
                    b"not-the-secret-at-all-0123456789",
                    &assertion_claims(&h, id, json!(issuer)),
                )
                .unwrap(),
            ),
            (
                "ES256 with a stranger's key",
                stranger
                    .sign(Some("JWT"), &assertion_claims(&h, id, json!(issuer)))
                    .unwrap(),
            ),
        ] {
            answers.push((
                format!("{who}, {how}"),
                token_with_assertion(&h, &env, &jwt).await,
            ));
        }
    }
    let mut expired = assertion_claims(&h, &hmac.id, json!(issuer));
    expired["exp"] = json!(now(&h) - 10);
    let jwt = sign_hmac_jws(HmacAlg::HS256, hmac.secret.as_bytes(), &expired).unwrap();
    answers.push((
        "expired assertion".into(),
        token_with_assertion(&h, &env, &jwt).await,
    ));
    for (who, authz) in [
        ("wrong Basic secret", basic_auth(&basic.id, "wrong-secret")),
        ("unknown Basic client", basic_auth(unknown, &basic.secret)),
    ] {
        let r = h
            .post_form(
                &ep(&env, "token"),
                Some(&authz),
                &[("grant_type", CIBA), ("auth_req_id", UNKNOWN_ID)],
            )
            .await;
        answers.push((who.into(), r));
    }

    let sentence = |r: &Resp| {
        r.description()
            .split(" (Correlation ID")
            .next()
            .unwrap_or("")
            .to_owned()
    };
    let first = sentence(&answers[0].1);
    assert!(
        first.ends_with("The client credentials are invalid."),
        "{first}"
    );
    for (case, r) in &answers {
        assert_invalid_client(r);
        assert_eq!(sentence(r), first, "{case}");
        assert_eq!(
            r.header("www-authenticate"),
            answers[0].1.header("www-authenticate"),
            "{case}"
        );
    }
    // The genuine credentials still pass (invalid_grant on the never-issued auth_req_id).
    let good = assertion_claims(&h, &hmac.id, json!(issuer));
    let jwt = sign_hmac_jws(HmacAlg::HS256, hmac.secret.as_bytes(), &good).unwrap();
    assert_error(
        &token_with_assertion(&h, &env, &jwt).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    );
}

fn basic_auth(id: &str, secret: &str) -> String {
    crate::support::basic(id, secret)
}

/// §9 "Identifiers": a hint finds only the user it names. The Kelvin sign (U+212A) looks like
/// `K` and case-folds to `k`, but it is not an identifier character: `\u{212a}ate` names nobody,
/// where `KATE` finds kate; the NFD spelling of `josé` finds the NFC account; zero-width and
/// bidi characters name nobody.
#[tokio::test]
async fn login_hints_go_through_the_identifier_profile() {
    let h = Harness::new().await;
    let (c, _) = h.sandbox().await;
    let kate = h
        .create_user(
            &c.env_id,
            json!({"username": "kate", "email": "kate@example.com"}),
        )
        .await;
    let jose = h
        .create_user(&c.env_id, json!({"username": "jos\u{e9}"}))
        .await;
    for (hint, who) in [
        ("KATE", &kate),
        ("username:Kate", &kate),
        ("email:KATE@EXAMPLE.COM", &kate),
        ("jose\u{301}", &jose),
        ("JOS\u{c9}", &jose),
    ] {
        let r = ciba_pairs(&h, &c, &[("scope", "openid"), ("login_hint", hint)]).await;
        assert_ok(&r);
        let id = r.body["auth_req_id"].as_str().unwrap();
        let show = h
            .admin(
                Method::GET,
                &format!("/v1/environments/{}/cibaRequests/{id}", c.env_id),
                None,
            )
            .await;
        assert_eq!(show.body["user"]["id"], who.as_str(), "{hint:?}");
    }
    for hint in [
        "\u{212a}ate",
        "username:\u{212a}ate",
        "email:\u{212a}ate@example.com",
        "ka\u{200b}te",
        "kate\u{202e}",
    ] {
        let r = ciba_pairs(&h, &c, &[("scope", "openid"), ("login_hint", hint)]).await;
        assert_validation(&r, "unknown_user_id");
    }
}

/// §3.2 acr_values limits: URI characters only, 256 per value, 16 values, 1024 in all.
#[tokio::test]
async fn acr_values_are_bounded_and_uri_characters_only() {
    let h = Harness::new().await;
    let (c, _) = h.sandbox().await;
    let ok = ciba_pairs(
        &h,
        &c,
        &[
            ("scope", "openid"),
            ("login_hint", "alice"),
            ("acr_values", "urn:assent:acr:hwk Multi_Factor"),
        ],
    )
    .await;
    assert_ok(&ok);
    let long_value = "a".repeat(257);
    let seventeen = vec!["x"; 17].join(" ");
    let huge = "a".repeat(60_000);
    for bad in [
        "<script>alert(1)</script>",
        "urn:x \"quoted\"",
        long_value.as_str(),
        seventeen.as_str(),
        huge.as_str(),
    ] {
        let r = ciba_pairs(
            &h,
            &c,
            &[
                ("scope", "openid"),
                ("login_hint", "alice"),
                ("acr_values", bad),
            ],
        )
        .await;
        assert_validation(&r, "invalid_request");
    }
}

/// A login_hint_token expires at most 24 h ahead, and one that carries a jti is accepted once.
#[tokio::test]
async fn login_hint_token_lifetime_is_capped_and_jti_is_single_use() {
    let h = Harness::new().await;
    let (c, user) = h.sandbox().await;
    let t = now(&h);
    let mut day = lht_claims(&h, &c, &user);
    day["exp"] = json!(t + 23 * 3600);
    assert_ok(&with_lht(&h, &c, &hmac_lht(&c, &day)).await);
    let mut too_long = lht_claims(&h, &c, &user);
    too_long["exp"] = json!(t + 25 * 3600);
    assert_validation(
        &with_lht(&h, &c, &hmac_lht(&c, &too_long)).await,
        "invalid_request",
    );

    let mut once = lht_claims(&h, &c, &user);
    once["jti"] = json!("lht-1");
    let token = hmac_lht(&c, &once);
    assert_ok(&with_lht(&h, &c, &token).await);
    let replay = with_lht(&h, &c, &token).await;
    assert_validation(&replay, "invalid_request");
    assert!(
        replay.description().contains("already been used"),
        "{}",
        replay.text
    );
    once["jti"] = json!("lht-2");
    assert_ok(&with_lht(&h, &c, &hmac_lht(&c, &once)).await);
    // The same jti from another application is that application's own.
    let other = h.create_app(&c.env_id, json!({})).await;
    let mut theirs = lht_claims(&h, &other, &user);
    theirs["jti"] = json!("lht-1");
    assert_ok(&with_lht(&h, &other, &hmac_lht(&other, &theirs)).await);
    let mut bad_jti = lht_claims(&h, &c, &user);
    bad_jti["jti"] = json!(42);
    assert_validation(
        &with_lht(&h, &c, &hmac_lht(&c, &bad_jti)).await,
        "invalid_request",
    );
}

// --- issue 6: abuse limits, simulated decisions in PRODUCTION, races -------------------------

/// A PRODUCTION environment with a Basic-auth CIBA app and users "alice" and "bob".
async fn production(h: &Harness) -> Client {
    let env = h.create_env("PRODUCTION").await;
    let client = h.create_app(&env, json!({})).await;
    h.create_user(&env, json!({"username": "alice"})).await;
    h.create_user(&env, json!({"username": "bob"})).await;
    client
}

async fn start_for(h: &Harness, c: &Client, user: &str) -> Resp {
    h.ciba(c, &[("scope", "openid"), ("login_hint", user)])
        .await
}

fn retry_after(r: &Resp) -> i64 {
    r.header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("Retry-After is whole seconds")
}

/// 429 `temporarily_unavailable` in the endpoint's usual error style, with `Retry-After` ≥ 1.
fn assert_limited(r: &Resp) {
    assert_error(r, StatusCode::TOO_MANY_REQUESTS, "temporarily_unavailable");
    assert!(retry_after(r) >= 1, "{}", r.text);
}

#[tokio::test]
async fn abuse_pending_cap_per_user_is_429_with_retry_after() {
    let h = Harness::new().await;
    let c = production(&h).await;
    for _ in 0..5 {
        assert_ok(&start_for(&h, &c, "alice").await);
    }
    h.clock.advance_secs(30);
    let r = start_for(&h, &c, "alice").await;
    assert_limited(&r);
    // Until the oldest pending request expires: created 30 s ago with a 120 s expiry.
    assert_eq!(retry_after(&r), 90);
    assert!(r.description().contains("too many pending"), "{}", r.text);
    // Nothing was stored for the refused request.
    let list = h
        .admin(
            Method::GET,
            &format!("/v1/environments/{}/cibaRequests?status=PENDING", c.env_id),
            None,
        )
        .await;
    assert_eq!(list.body["count"], 5, "{}", list.text);
    // Another user is not affected; user resolution comes before the limits.
    assert_ok(&start_for(&h, &c, "bob").await);
    assert_validation(&start_for(&h, &c, "nobody").await, "unknown_user_id");
    // A decided request frees its slot.
    let id = list.body["_embedded"]["cibaRequests"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = h
        .admin(
            Method::DELETE,
            &format!("/v1/environments/{}/cibaRequests/{id}", c.env_id),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    assert_ok(&start_for(&h, &c, "alice").await);
    assert_limited(&start_for(&h, &c, "alice").await);
    // Once the pending ones expire, alice can be asked again.
    h.clock.advance_secs(90);
    assert_ok(&start_for(&h, &c, "alice").await);
}

#[tokio::test]
async fn abuse_rate_limit_per_application_is_429_until_the_window_moves() {
    let h = Harness::new().await;
    let c = production(&h).await;
    let r = h
        .admin(
            Method::PATCH,
            &format!("/v1/environments/{}", c.env_id),
            Some(json!({"abuseLimits": {"maxPendingRequestsPerUser": null,
                                        "authorizationRequestsPerMinute": 3}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_ok(&start_for(&h, &c, "alice").await);
    h.clock.advance_secs(10);
    assert_ok(&start_for(&h, &c, "alice").await);
    assert_ok(&start_for(&h, &c, "bob").await);
    h.clock.advance_secs(10);
    let r = start_for(&h, &c, "bob").await;
    assert_limited(&r);
    // The oldest request (20 s ago) leaves the 60 s window in 40 s.
    assert_eq!(retry_after(&r), 40);
    assert!(r.description().contains("too many"), "{}", r.text);
    // The limits come last (spec §3.2 order): bad parameters and unknown users are reported as
    // such, not as 429.
    assert_validation(&start_for(&h, &c, "nobody").await, "unknown_user_id");
    let r = h.ciba(&c, &[("login_hint", "bob")]).await;
    assert_validation(&r, "invalid_request");
    // The rate is per application.
    let other = h.create_app(&c.env_id, json!({})).await;
    assert_ok(&start_for(&h, &other, "alice").await);
    h.clock.advance_secs(39);
    assert_eq!(retry_after(&start_for(&h, &c, "bob").await), 1);
    h.clock.advance_secs(1);
    assert_ok(&start_for(&h, &c, "bob").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn abuse_pending_cap_holds_under_a_concurrent_burst() {
    let h = Arc::new(Harness::new().await);
    let c = production(&h).await;
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let (h, c) = (h.clone(), c.clone());
            tokio::spawn(async move { start_for(&h, &c, "alice").await })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        let r = t.await.unwrap();
        if r.status == StatusCode::OK {
            ok += 1;
        } else {
            assert_limited(&r);
        }
    }
    assert_eq!(ok, 5);
    let list = h
        .admin(
            Method::GET,
            &format!("/v1/environments/{}/cibaRequests?status=PENDING", c.env_id),
            None,
        )
        .await;
    assert_eq!(list.body["count"], 5, "{}", list.text);
}

#[tokio::test]
async fn sandbox_has_no_abuse_limits_by_default() {
    let h = Harness::new().await;
    let (c, _) = h.sandbox().await;
    for _ in 0..30 {
        assert_ok(&start_for(&h, &c, "alice").await);
    }
    // The same environment as PRODUCTION gets PRODUCTION's defaults.
    let r = h
        .admin(
            Method::PATCH,
            &format!("/v1/environments/{}", c.env_id),
            Some(json!({"type": "PRODUCTION"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_limited(&start_for(&h, &c, "alice").await);
}

#[tokio::test]
async fn simulated_approval_yields_no_tokens_once_production() {
    let h = Harness::new().await;
    let (c, _) = h.sandbox().await;
    let id = h.start(&c, "openid").await;
    approve(&h, &c.env_id, &id).await;
    let env_path = format!("/v1/environments/{}", c.env_id);
    let r = h
        .admin(
            Method::PATCH,
            &env_path,
            Some(json!({"type": "PRODUCTION"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    h.clock.advance_secs(2);
    let r = h.poll(&c, &id).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_grant");
    assert!(r.description().contains("simulated decision"), "{}", r.text);
    assert!(r.body.get("access_token").is_none());
    // Nothing was redeemed: still APPROVED, no tokens recorded.
    let g = h
        .admin(Method::GET, &format!("{env_path}/cibaRequests/{id}"), None)
        .await;
    assert_eq!(g.body["status"], "APPROVED", "{}", g.text);

    // An automatic decision taken while SANDBOX does not survive the switch either.
    let r = h
        .admin(Method::PATCH, &env_path, Some(json!({"type": "SANDBOX"})))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    h.create_user(
        &c.env_id,
        json!({"username": "robot", "autoDecision": "APPROVE", "autoDecisionDelayMs": 0}),
    )
    .await;
    let r = start_for(&h, &c, "robot").await;
    assert_ok(&r);
    let auto_id = r.body["auth_req_id"].as_str().unwrap().to_owned();
    h.run_due_work().await;
    let g = h
        .admin(
            Method::GET,
            &format!("{env_path}/cibaRequests/{auto_id}"),
            None,
        )
        .await;
    assert_eq!(g.body["status"], "APPROVED", "{}", g.text);
    assert_eq!(g.body["decision"]["channel"], "AUTO", "{}", g.text);
    let r = h
        .admin(
            Method::PATCH,
            &env_path,
            Some(json!({"type": "PRODUCTION"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    h.clock.advance_secs(2);
    let r = h.poll(&c, &auto_id).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_grant");
    assert!(r.description().contains("simulated decision"), "{}", r.text);
}

#[tokio::test]
async fn refresh_tokens_of_a_simulated_approval_stop_in_production() {
    let h = Harness::new().await;
    let (c, _) = h.sandbox().await;
    let t = flow(&h, &c, "openid offline_access").await;
    let rt = t["refresh_token"].as_str().unwrap().to_owned();
    let r = refresh(&h, &c, &rt, None).await;
    assert_ok(&r);
    let rt2 = r.body["refresh_token"].as_str().unwrap().to_owned();
    let r = h
        .admin(
            Method::PATCH,
            &format!("/v1/environments/{}", c.env_id),
            Some(json!({"type": "PRODUCTION"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = refresh(&h, &c, &rt2, None).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_grant");
    assert!(r.description().contains("simulated decision"), "{}", r.text);
    assert_eq!(introspect(&h, &c, &rt2).await.body["active"], false);
}

#[tokio::test]
async fn an_automatic_decision_due_after_the_switch_to_production_is_dropped() {
    let h = Harness::new().await;
    let (c, _) = h.sandbox().await;
    h.create_user(
        &c.env_id,
        json!({"username": "robot", "autoDecision": "APPROVE", "autoDecisionDelayMs": 0}),
    )
    .await;
    h.create_user(
        &c.env_id,
        json!({"username": "slowbot", "autoDecision": "APPROVE", "autoDecisionDelayMs": 2000}),
    )
    .await;
    let request = |id: &str| format!("/v1/environments/{}/cibaRequests/{id}", c.env_id);
    // Control: in SANDBOX the scheduled decision applies.
    let r = start_for(&h, &c, "robot").await;
    assert_ok(&r);
    let id = r.body["auth_req_id"].as_str().unwrap().to_owned();
    h.run_due_work().await;
    let g = h.admin(Method::GET, &request(&id), None).await;
    assert_eq!(g.body["status"], "APPROVED", "{}", g.text);
    // Scheduled while SANDBOX, due after the switch: dropped, the request stays pending.
    let r = start_for(&h, &c, "slowbot").await;
    assert_ok(&r);
    let id = r.body["auth_req_id"].as_str().unwrap().to_owned();
    let r = h
        .admin(
            Method::PATCH,
            &format!("/v1/environments/{}", c.env_id),
            Some(json!({"type": "PRODUCTION"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    h.clock.advance_millis(2000);
    h.run_due_work().await;
    assert_eq!(
        h.store.next_work_due().await.unwrap(),
        None,
        "the decision was dropped, not postponed"
    );
    let g = h.admin(Method::GET, &request(&id), None).await;
    assert_eq!(g.body["status"], "PENDING", "{}", g.text);
    assert!(g.body["decision"].is_null(), "{}", g.text);
}

/// An automatic decision waits for its delay on the server's clock: not a millisecond early.
#[tokio::test]
async fn an_automatic_decision_is_taken_when_its_delay_has_passed_on_the_clock() {
    let h = Harness::new().await;
    let (c, _) = h.sandbox().await;
    h.create_user(
        &c.env_id,
        json!({"username": "slowbot", "autoDecision": "DENY", "autoDecisionDelayMs": 1500}),
    )
    .await;
    let r = start_for(&h, &c, "slowbot").await;
    assert_ok(&r);
    let id = r.body["auth_req_id"].as_str().unwrap().to_owned();
    let path = format!("/v1/environments/{}/cibaRequests/{id}", c.env_id);
    h.clock.advance_millis(1499);
    h.run_due_work().await;
    let g = h.admin(Method::GET, &path, None).await;
    assert_eq!(g.body["status"], "PENDING", "{}", g.text);
    // Moving the clock is enough to wake the sleeping worker: no explicit pass.
    let mut decided = h.store.subscribe(&assent_store::WakeKey::request(
        &c.env_id,
        &AuthReqId::from(&id),
    ));
    h.clock.advance_millis(1);
    tokio::time::timeout(std::time::Duration::from_secs(10), decided.woken())
        .await
        .expect("the worker woke at the due time");
    let g = h.admin(Method::GET, &path, None).await;
    assert_eq!(g.body["status"], "DENIED", "{}", g.text);
    assert_eq!(g.body["decision"]["channel"], "AUTO");
    assert_eq!(g.body["decision"]["amr"], json!(["sim"]));
    assert_eq!(g.body["decidedAt"], (START.plus_millis(1500)).to_rfc3339());
}

/// New work wakes the sleeping worker: a decision due at once is taken without a pass being
/// asked for and without the clock moving.
#[tokio::test]
async fn an_automatic_decision_due_at_once_wakes_the_worker() {
    let h = Harness::new().await;
    let (c, _) = h.sandbox().await;
    let robot = h
        .create_user(
            &c.env_id,
            json!({"username": "robot", "autoDecision": "APPROVE", "autoDecisionDelayMs": 0}),
        )
        .await;
    let mut changes = h.store.subscribe(&assent_store::WakeKey::user(
        &c.env_id,
        &UserId::from(&robot),
    ));
    let r = start_for(&h, &c, "robot").await;
    assert_ok(&r);
    let id = r.body["auth_req_id"].as_str().unwrap().to_owned();
    let path = format!("/v1/environments/{}/cibaRequests/{id}", c.env_id);
    for _ in 0..2 {
        // The insert, then the decision.
        tokio::time::timeout(std::time::Duration::from_secs(10), changes.woken())
            .await
            .expect("the request changed");
        let g = h.admin(Method::GET, &path, None).await;
        if g.body["status"] == "APPROVED" {
            assert_eq!(g.body["decision"]["channel"], "AUTO");
            assert_eq!(g.body["decidedAt"], START.to_rfc3339());
            return;
        }
    }
    panic!("the automatic decision was not taken");
}

/// A decision taken by an admin before the automatic one is due wins; the automatic one is
/// finished without deciding again.
#[tokio::test]
async fn an_automatic_decision_after_an_admin_decision_is_finished_without_a_second_one() {
    let h = Harness::new().await;
    let (c, _) = h.sandbox().await;
    h.create_user(
        &c.env_id,
        json!({"username": "slowbot", "autoDecision": "APPROVE", "autoDecisionDelayMs": 2000}),
    )
    .await;
    let r = start_for(&h, &c, "slowbot").await;
    assert_ok(&r);
    let id = r.body["auth_req_id"].as_str().unwrap().to_owned();
    let path = format!("/v1/environments/{}/cibaRequests/{id}", c.env_id);
    h.clock.advance_millis(500);
    assert_eq!(
        h.decide(&c.env_id, &id, "deny").await.status,
        StatusCode::NO_CONTENT
    );
    let before = h.admin(Method::GET, &path, None).await;
    assert_eq!(before.body["status"], "DENIED", "{}", before.text);
    h.clock.advance_millis(1500);
    h.run_due_work().await;
    assert_eq!(h.store.next_work_due().await.unwrap(), None, "finished");
    let after = h.admin(Method::GET, &path, None).await;
    assert_eq!(after.body["status"], "DENIED", "{}", after.text);
    assert_eq!(after.body["decision"], before.body["decision"], "unchanged");
    assert_eq!(after.body["decidedAt"], before.body["decidedAt"]);
}

/// The server stops before an automatic decision is due; a new one on the same database takes
/// it, once, and its tokens say it was simulated.
#[tokio::test]
async fn an_automatic_decision_survives_a_restart_and_is_taken_once() {
    let path = data_file("auto-approve-restart");
    let clock = assent_server::ManualClock::new(START);
    let store = Arc::new(assent_store::SqliteStore::open(&path).await.unwrap());
    let h = Harness::on_store(store.clone(), clock.clone(), |_| {}, |_| {}).await;
    let (c, _) = h.sandbox().await;
    h.create_user(
        &c.env_id,
        json!({"username": "robot", "autoDecision": "APPROVE", "autoDecisionDelayMs": 5000}),
    )
    .await;
    let r = start_for(&h, &c, "robot").await;
    assert_ok(&r);
    let id = r.body["auth_req_id"].as_str().unwrap().to_owned();
    h.clock.advance_millis(4000);
    h.run_due_work().await;
    assert!(h.state.shut_down(std::time::Duration::from_secs(30)).await);
    assert!(
        !h.worker.run_due_work().await,
        "the worker stopped with the server"
    );
    drop(h);
    store.close().await;

    let store = Arc::new(assent_store::SqliteStore::open(&path).await.unwrap());
    let h = Harness::on_store(store.clone(), clock, |_| {}, |_| {}).await;
    let request = format!("/v1/environments/{}/cibaRequests/{id}", c.env_id);
    let g = h.admin(Method::GET, &request, None).await;
    assert_eq!(g.body["status"], "PENDING", "not due yet: {}", g.text);
    h.clock.advance_millis(1000);
    h.run_due_work().await;
    let g = h.admin(Method::GET, &request, None).await;
    assert_eq!(g.body["status"], "APPROVED", "{}", g.text);
    assert_eq!(g.body["decidedAt"], START.plus_millis(5000).to_rfc3339());
    // Once: nothing is left to run, and a later pass changes nothing.
    assert_eq!(h.store.next_work_due().await.unwrap(), None);
    h.clock.advance_secs(60);
    h.run_due_work().await;
    let again = h.admin(Method::GET, &request, None).await;
    assert_eq!(again.body["decision"], g.body["decision"]);
    let r = h.poll(&c, &id).await;
    assert_ok(&r);
    let id_token = claims_of(r.body["id_token"].as_str().unwrap());
    assert_eq!(id_token["amr"], json!(["sim"]), "{id_token}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_duplicate_polls_do_not_revoke_the_winners_tokens() {
    let h = Arc::new(Harness::new().await);
    let (c, _) = h.sandbox().await;
    let id = h.start(&c, "openid offline_access").await;
    approve(&h, &c.env_id, &id).await;
    let tasks: Vec<_> = (0..30)
        .map(|_| {
            let (h, c, id) = (h.clone(), c.clone(), id.clone());
            tokio::spawn(async move { h.poll(&c, &id).await })
        })
        .collect();
    let mut winners = Vec::new();
    for t in tasks {
        let r = t.await.unwrap();
        if r.status == StatusCode::OK {
            winners.push(r);
        } else {
            assert_error(&r, StatusCode::BAD_REQUEST, "invalid_grant");
        }
    }
    assert_eq!(winners.len(), 1);
    let at = winners[0].body["access_token"].as_str().unwrap().to_owned();
    let rt = winners[0].body["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    // A duplicate that reads the request after the commit but arrived in the same instant as
    // the redemption (the clock has not moved) is still a concurrent one: nothing is revoked.
    assert_error(
        &h.poll(&c, &id).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    );
    assert_eq!(introspect(&h, &c, &at).await.body["active"], true);
    assert_eq!(introspect(&h, &c, &rt).await.body["active"], true);
    assert_ok(&userinfo(&h, &c.env_id, &at).await);
    // A poll arriving after the redemption is a replay: it revokes.
    h.clock.advance_millis(1);
    assert_error(
        &h.poll(&c, &id).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    );
    assert_eq!(introspect(&h, &c, &at).await.body["active"], false);
    assert_eq!(introspect(&h, &c, &rt).await.body["active"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_concurrent_poll_of_a_pending_request_is_recorded() {
    let h = Arc::new(Harness::new().await);
    let (c, _) = h.sandbox().await;
    let id = h.start(&c, "openid").await;
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (h, c, id) = (h.clone(), c.clone(), id.clone());
            tokio::spawn(async move { h.poll(&c, &id).await })
        })
        .collect();
    let (mut pending, mut slow) = (0, 0);
    for t in tasks {
        let r = t.await.unwrap();
        match r.error() {
            "authorization_pending" => pending += 1,
            "slow_down" => slow += 1,
            other => panic!("unexpected {other}: {}", r.text),
        }
    }
    // All arrived at the same instant: the first is pending, every other one too soon.
    assert_eq!((pending, slow), (1, 19));
    let req = h
        .store
        .get_ciba_request(&c.env_id, &AuthReqId::from(&id))
        .await
        .unwrap();
    assert_eq!(req.last_polled_at, Some(h.state.now()));
    assert_eq!(
        req.interval_seconds,
        2 + 5 * 19,
        "each slow_down lengthened it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_first_signings_with_a_new_algorithm_create_one_key() {
    let h = Arc::new(Harness::new().await);
    let env = h.create_env("SANDBOX").await;
    let now = h.state.now();
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let (h, env) = (h.clone(), env.clone());
            tokio::spawn(async move {
                h.state
                    .keys
                    .signer(
                        &EnvironmentId::from(&env),
                        assent_core::SigningAlgorithm::ES256,
                        now,
                    )
                    .await
                    .unwrap()
                    .kid()
                    .to_owned()
            })
        })
        .collect();
    let mut kids = Vec::new();
    for t in tasks {
        kids.push(t.await.unwrap());
    }
    kids.dedup();
    assert_eq!(kids.len(), 1, "all signed with one key");
    let r = h
        .admin(
            Method::GET,
            &format!("/v1/environments/{env}/signingKeys"),
            None,
        )
        .await;
    let es256: Vec<&Value> = r.body["_embedded"]["signingKeys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["algorithm"] == "ES256")
        .collect();
    assert_eq!(es256.len(), 1, "{}", r.text);
    assert_eq!(es256[0]["id"], kids[0].as_str());
    assert_eq!(es256[0]["status"], "CURRENT");
}

#[tokio::test]
async fn refresh_reuse_within_the_grace_rotates_again_and_after_it_revokes() {
    let h = Harness::new().await;
    let (c, _) = h.sandbox().await;
    patch_app(&h, &c, json!({"refreshTokenReuseGraceSeconds": 10})).await;
    let t = flow(&h, &c, "openid offline_access").await;
    let rt1 = t["refresh_token"].as_str().unwrap().to_owned();
    let r = refresh(&h, &c, &rt1, None).await;
    assert_ok(&r);
    let rt2 = r.body["refresh_token"].as_str().unwrap().to_owned();
    // A retry 9 s later (the client lost the first answer): rotated again, nothing revoked.
    h.clock.advance_secs(9);
    let r = refresh(&h, &c, &rt1, None).await;
    assert_ok(&r);
    let rt3 = r.body["refresh_token"].as_str().unwrap().to_owned();
    let at3 = r.body["access_token"].as_str().unwrap().to_owned();
    assert_ne!(rt3, rt2);
    assert_eq!(introspect(&h, &c, &rt2).await.body["active"], true);
    assert_eq!(introspect(&h, &c, &rt3).await.body["active"], true);
    assert_ok(&userinfo(&h, &c.env_id, &at3).await);
    // 10 s after the rotation the grace is over: reuse revokes the whole family.
    h.clock.advance_secs(1);
    let r = refresh(&h, &c, &rt1, None).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_grant");
    assert_eq!(introspect(&h, &c, &rt2).await.body["active"], false);
    assert_eq!(introspect(&h, &c, &rt3).await.body["active"], false);
    assert_eq!(introspect(&h, &c, &at3).await.body["active"], false);
}

#[tokio::test]
async fn refresh_reuse_with_no_grace_revokes_at_once() {
    let h = Harness::new().await;
    let (c, _) = h.sandbox().await;
    let t = flow(&h, &c, "openid offline_access").await;
    let rt1 = t["refresh_token"].as_str().unwrap().to_owned();
    let r = refresh(&h, &c, &rt1, None).await;
    assert_ok(&r);
    let rt2 = r.body["refresh_token"].as_str().unwrap().to_owned();
    // Same instant, default grace 0: reuse.
    let r = refresh(&h, &c, &rt1, None).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_grant");
    assert_eq!(introspect(&h, &c, &rt2).await.body["active"], false);
}

// --- error bodies on the edges (issue 6, item 10) ----------------------------------------------

#[tokio::test]
async fn oversized_bodies_are_oauth_413_on_every_post() {
    let h = Harness::new().await;
    let (c, _) = h.sandbox().await;
    let mut body = b"access_token=x&pad=".to_vec();
    body.extend(std::iter::repeat_n(b'a', 100 * 1024));
    for name in [
        "userinfo",
        "token",
        "cibaAuthorization",
        "bc-authorize",
        "introspect",
        "revoke",
    ] {
        let r = h
            .post_raw(&ep(&c.env_id, name), Some(&c.basic()), body.clone())
            .await;
        assert_error(&r, StatusCode::PAYLOAD_TOO_LARGE, "invalid_request");
        assert!(r.description().contains("too large"), "{name}: {}", r.text);
    }
    // The normal case: a small userinfo POST is answered as a bearer error, not 413.
    let r = h
        .post_raw(&ep(&c.env_id, "userinfo"), None, b"access_token=x".to_vec())
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
}

#[tokio::test]
async fn unknown_endpoint_and_wrong_method_are_oauth_errors() {
    let h = Harness::new().await;
    let (c, _) = h.sandbox().await;
    let r = h.get(&ep(&c.env_id, "no-such-endpoint"), None).await;
    assert_error(&r, StatusCode::NOT_FOUND, "invalid_request");
    let r = h.get(&ep(&c.env_id, "token"), None).await;
    assert_error(&r, StatusCode::METHOD_NOT_ALLOWED, "invalid_request");
    // A path parameter that is not UTF-8, refused by axum's Path extractor.
    let r = h.get("/%ff/as/jwks", None).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_request");
}

/// The claim rules of hints, pinned to their exact sentences and their edges (one shared
/// checker, `assent_core::jwt`, decides them; each caller keeps its own words).
#[tokio::test]
async fn hint_claim_failures_keep_their_sentences_and_edges() {
    let h = Harness::new().await;
    let (c, user) = h.sandbox().await;
    let t = now(&h);
    let lht = |edit: &dyn Fn(&mut Value)| {
        let mut claims = lht_claims(&h, &c, &user);
        edit(&mut claims);
        hmac_lht(&c, &claims)
    };
    let remove = |name: &'static str| {
        move |v: &mut Value| {
            v.as_object_mut().unwrap().remove(name);
        }
    };
    let set = |name: &'static str, value: Value| move |v: &mut Value| v[name] = value.clone();
    let prefix = "The login_hint_token is not valid: ";
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "other iss",
            lht(&set("iss", json!("someone"))),
            "iss must be the client id.",
        ),
        (
            "aud missing",
            lht(&remove("aud")),
            "aud must be the issuer.",
        ),
        ("no exp", lht(&remove("exp")), "exp is required."),
        (
            "exp not a number",
            lht(&set("exp", json!("soon"))),
            "exp is required.",
        ),
        (
            "exp a day and 6 s ahead",
            lht(&set("exp", json!(t + 24 * 3600 + 6))),
            "exp must be at most 24 hours ahead.",
        ),
        (
            "nbf not a number",
            lht(&set("nbf", json!("now"))),
            "nbf must be a number.",
        ),
        (
            "nbf 6 s ahead",
            lht(&set("nbf", json!(t + 6))),
            "it is not valid yet.",
        ),
        ("no sub", lht(&remove("sub")), "sub is required."),
        ("empty sub", lht(&set("sub", json!(""))), "sub is required."),
        (
            "jti too long",
            lht(&set("jti", json!("j".repeat(257)))),
            "jti must be a non-empty string of at most 256 characters.",
        ),
    ];
    for (case, token, why) in &cases {
        let r = with_lht(&h, &c, token).await;
        assert_validation(&r, "invalid_request");
        assert!(
            r.description().contains(&format!("{prefix}{why}")),
            "{case}: {}",
            r.text
        );
    }
    // Within the skew, and at the longest jti: accepted.
    for (case, token) in [
        (
            "exp a day and 5 s ahead",
            lht(&set("exp", json!(t + 24 * 3600 + 5))),
        ),
        ("nbf 5 s ahead", lht(&set("nbf", json!(t + 5)))),
        ("jti of 256", lht(&set("jti", json!("j".repeat(256))))),
    ] {
        let r = with_lht(&h, &c, &token).await;
        assert_eq!(r.status, StatusCode::OK, "{case}: {}", r.text);
    }
    // Expired (at the instant of exp, no grace) is its own error, and wins over a missing sub.
    for (case, token) in [
        ("exp now", lht(&set("exp", json!(t)))),
        ("expired without sub", {
            let mut claims = lht_claims(&h, &c, &user);
            claims["exp"] = json!(t - 1);
            claims.as_object_mut().unwrap().remove("sub");
            hmac_lht(&c, &claims)
        }),
    ] {
        let r = with_lht(&h, &c, &token).await;
        assert_validation(&r, "expired_login_hint_token");
        assert!(
            r.description()
                .contains("The login_hint_token has expired."),
            "{case}: {}",
            r.text
        );
    }

    // id_token_hint: signed with this environment's key, so that only the claims are at fault.
    let signer = h
        .state
        .keys
        .signer(
            &c.env_id,
            assent_core::SigningAlgorithm::RS256,
            h.state.now(),
        )
        .await
        .unwrap();
    let idt = |edit: &dyn Fn(&mut Value)| {
        let mut claims = json!({
            "iss": h.issuer(&c.env_id), "sub": user, "aud": c.id, "iat": t, "exp": t + 3600,
        });
        edit(&mut claims);
        signer.sign(Some("JWT"), &claims).unwrap()
    };
    let idt_cases: Vec<(&str, String, &str)> = vec![
        (
            "another issuer",
            idt(&set("iss", json!(h.issuer("other-env")))),
            "it was not issued by this environment.",
        ),
        (
            "another client",
            idt(&set("aud", json!(["someone-else"]))),
            "it was not issued to this client.",
        ),
        ("no sub", idt(&remove("sub")), "it has no sub."),
    ];
    for (case, hint, why) in &idt_cases {
        let r = with_id_token_hint(&h, &c, hint).await;
        assert_validation(&r, "invalid_request");
        assert!(
            r.description()
                .contains(&format!("The id_token_hint is not valid: {why}")),
            "{case}: {}",
            r.text
        );
    }
    // Expired long ago, with aud as an array: still names the user (CIBA §7.1).
    let old = idt(&|v: &mut Value| {
        v["exp"] = json!(t - 86_400);
        v["aud"] = json!(["x", c.id]);
    });
    let r = with_id_token_hint(&h, &c, &old).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

/// The client-assertion time rules at their edges: `exp` at `now` is expired, one hour and 5 s
/// ahead is the limit, `nbf` may be up to 5 s ahead.
#[tokio::test]
async fn client_assertion_time_edges() {
    let h = Harness::new().await;
    let (base, _) = h.sandbox().await;
    let c = h
        .create_app(
            &base.env_id,
            json!({"tokenEndpointAuthMethod": "CLIENT_SECRET_JWT"}),
        )
        .await;
    let issuer = h.issuer(&c.env_id);
    let t = now(&h);
    let assertion = |name: &str, value: i64| {
        let mut claims = assertion_claims(&h, &c.id, json!(issuer));
        claims[name] = json!(value);
        sign_hmac_jws(HmacAlg::HS256, c.secret.as_bytes(), &claims).unwrap()
    };
    for (case, jwt, accepted) in [
        ("exp now", assertion("exp", t), false),
        ("exp in 1 s", assertion("exp", t + 1), true),
        ("exp 1 h 5 s ahead", assertion("exp", t + 3605), true),
        ("exp 1 h 6 s ahead", assertion("exp", t + 3606), false),
        ("nbf 5 s ahead", assertion("nbf", t + 5), true),
        ("nbf 6 s ahead", assertion("nbf", t + 6), false),
    ] {
        let r = token_with_assertion(&h, &c.env_id, &jwt).await;
        if accepted {
            // Authenticated: invalid_grant on the never-issued auth_req_id.
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{case}: {}", r.text);
            assert_error(&r, StatusCode::BAD_REQUEST, "invalid_grant");
        } else {
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{case}: {}", r.text);
            assert_invalid_client(&r);
        }
    }
}

// --- PUSH is judged by the mode recorded on the request ------------------------------------

/// Sets the application's delivery mode through the store (the API accepts only POLL today).
async fn set_app_delivery_mode(h: &Harness, c: &Client, mode: assent_core::DeliveryMode) {
    let mut app = h.store.get_application(&c.env_id, &c.id).await.unwrap();
    app.ciba.delivery_mode = mode;
    h.store.update_application(&app).await.unwrap();
}

#[tokio::test]
async fn a_request_recorded_as_poll_stays_redeemable_after_the_app_switches_to_push() {
    let h = Harness::new().await;
    let (client, _user) = h.sandbox().await;
    let id = h.start(&client, "openid").await;
    set_app_delivery_mode(&h, &client, assent_core::DeliveryMode::Push).await;
    let r = h.poll(&client, &id).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(r.error(), "authorization_pending");
    assert_eq!(
        h.decide(&client.env_id, &id, "approve").await.status,
        StatusCode::NO_CONTENT
    );
    h.clock.advance_secs(2);
    let r = h.poll(&client, &id).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.body["id_token"].is_string());
}

#[tokio::test]
async fn a_request_recorded_as_push_is_refused_at_the_token_endpoint() {
    let h = Harness::new().await;
    let (client, _user) = h.sandbox().await;
    let id = h.start(&client, "openid").await;
    // The application is POLL now; the request was recorded as PUSH.
    let mut req = h
        .store
        .get_ciba_request(&client.env_id, &AuthReqId::from(&id))
        .await
        .unwrap();
    req.auth_req_id = "recorded-as-push-0000000000000000".into();
    req.delivery_mode = assent_core::DeliveryMode::Push;
    h.store
        .apply(&assent_core::ciba::admit(req.clone(), None))
        .await
        .unwrap();
    let r = h.poll(&client, &req.auth_req_id).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(r.error(), "unauthorized_client");
    assert!(r.description().contains("PUSH mode"), "{}", r.text);
    // The POLL request beside it is unaffected.
    assert_eq!(h.poll(&client, &id).await.error(), "authorization_pending");
}

// --- shutdown: background tasks are tracked and end on cancel ------------------------------

#[tokio::test]
async fn shutdown_cancels_a_scheduled_automatic_decision_and_waits_for_it() {
    let h = Harness::new().await;
    let (c, _) = h.sandbox().await;
    h.create_user(
        &c.env_id,
        json!({"username": "slowbot", "autoDecision": "APPROVE", "autoDecisionDelayMs": 600_000}),
    )
    .await;
    let r = start_for(&h, &c, "slowbot").await;
    assert_ok(&r);
    let id = r.body["auth_req_id"].as_str().unwrap().to_owned();
    // Due in ten minutes (the longest delay): only the shutdown ends the worker's wait.
    assert!(!h.state.tasks.is_empty(), "the worker is tracked");
    assert!(
        h.state.shut_down(std::time::Duration::from_secs(30)).await,
        "every tracked task ended"
    );
    assert!(h.state.tasks.is_empty());
    assert!(!h.worker.run_due_work().await, "the worker has stopped");
    let req = h
        .store
        .get_ciba_request(&c.env_id, &AuthReqId::from(&id))
        .await
        .unwrap();
    assert_eq!(
        req.status,
        assent_core::CibaStatus::Pending,
        "nothing decided"
    );
    // Still scheduled, for the next start.
    assert_eq!(
        h.store.next_work_due().await.unwrap(),
        Some(req.created_at.plus_millis(600_000))
    );
}

#[tokio::test]
async fn shutdown_ends_background_tasks_and_reports_ones_that_outlive_the_deadline() {
    let h = Harness::new().await;
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let background = h.state.spawn_background(async move {
        let _ = started_tx.send(());
        std::future::pending::<()>().await;
    });
    started_rx.await.unwrap();
    assert!(h.state.shut_down(std::time::Duration::from_secs(30)).await);
    assert_eq!(background.await.unwrap(), None, "ended by the cancel");

    // A task that ignores the token is not waited for beyond the deadline.
    let h = Harness::new().await;
    let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
    let stubborn = h.state.tasks.spawn(async move {
        let _ = release_rx.await;
    });
    assert!(!h.state.shut_down(std::time::Duration::ZERO).await);
    assert!(h.state.shutdown.is_cancelled());
    release_tx.send(()).unwrap();
    stubborn.await.unwrap();
}

// --- one `now` per request ------------------------------------------------------------------

/// A clock that counts its reads.
struct CountingClock {
    inner: assent_server::ManualClock,
    reads: Arc<std::sync::atomic::AtomicUsize>,
}

impl assent_server::Clock for CountingClock {
    fn now(&self) -> assent_core::Timestamp {
        self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        assent_server::Clock::now(&self.inner)
    }
    fn sleep_until(&self, at: assent_core::Timestamp) -> assent_server::clock::Sleep {
        assent_server::Clock::sleep_until(&self.inner, at)
    }
}

#[tokio::test]
async fn a_client_authenticated_request_reads_the_clock_once() {
    let reads = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = reads.clone();
    let h = Harness::with_state(
        |_| {},
        |state| {
            let inner = assent_server::ManualClock::new(START);
            state.set_clock(Arc::new(CountingClock {
                inner,
                reads: counter,
            }));
        },
    )
    .await;
    let (base, _) = h.sandbox().await;
    let c = h
        .create_app(
            &base.env_id,
            json!({"tokenEndpointAuthMethod": "CLIENT_SECRET_JWT"}),
        )
        .await;
    let t = START.secs();
    for endpoint in ["introspect", "revoke", "token", "cibaAuthorization"] {
        let claims = json!({
            "iss": c.id, "sub": c.id, "aud": h.issuer(&c.env_id), "iat": t, "exp": t + 120,
            "jti": assent_crypto::random_token(16),
        });
        let jwt = sign_hmac_jws(HmacAlg::HS256, c.secret.as_bytes(), &claims).unwrap();
        let before = reads.load(std::sync::atomic::Ordering::SeqCst);
        let r = h
            .post_form(
                &ep(&c.env_id, endpoint),
                None,
                &[
                    ("client_assertion_type", JWT_BEARER),
                    ("client_assertion", &jwt),
                    ("token", "not-a-token"),
                    ("grant_type", CIBA),
                    ("auth_req_id", UNKNOWN_ID),
                ],
            )
            .await;
        // The assertion was accepted: whatever the endpoint answers, it is not invalid_client.
        assert_ne!(r.status, StatusCode::UNAUTHORIZED, "{endpoint}: {}", r.text);
        assert_eq!(
            reads.load(std::sync::atomic::Ordering::SeqCst) - before,
            1,
            "{endpoint}: one clock read for authentication and the handler"
        );
    }
}

#[tokio::test]
async fn the_token_endpoint_answers_the_grants_of_the_registry_built_with_the_state() {
    let h = Harness::with_state(
        |_| {},
        |state| {
            state.set_grants(assent_server::service::tokens::GrantRegistry::new(
                Vec::new(),
            ))
        },
    )
    .await;
    let (client, _user) = h.sandbox().await;
    let id = h.start(&client, "openid").await;
    let r = h.poll(&client, &id).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(r.error(), "unsupported_grant_type");
    // The standard registry answers the same request.
    let h = Harness::new().await;
    let (client, _user) = h.sandbox().await;
    let id = h.start(&client, "openid").await;
    assert_eq!(h.poll(&client, &id).await.error(), "authorization_pending");
}

#[tokio::test]
async fn an_automatic_answer_without_delay_is_there_at_the_first_poll() {
    let h = Harness::new().await;
    let (c, _) = h.sandbox().await;
    h.create_user(
        &c.env_id,
        json!({"username": "robot", "autoDecision": "APPROVE", "autoDecisionDelayMs": 0}),
    )
    .await;
    let r = start_for(&h, &c, "robot").await;
    assert_ok(&r);
    let id = r.body["auth_req_id"].as_str().unwrap().to_owned();
    // No pass of the worker, no time moved: the answer was stored with the request, and no
    // work was scheduled for it.
    assert_eq!(h.store.next_work_due().await.unwrap(), None);
    let r = h.poll(&c, &id).await;
    assert_ok(&r);
    assert!(r.body["access_token"].is_string(), "{}", r.text);
    let g = h
        .admin(
            Method::GET,
            &format!("/v1/environments/{}/cibaRequests/{id}", c.env_id),
            None,
        )
        .await;
    assert_eq!(g.body["decision"]["channel"], "AUTO", "{}", g.text);
    assert_eq!(g.body["decision"]["amr"], json!(["sim"]), "{}", g.text);

    h.create_user(
        &c.env_id,
        json!({"username": "denier", "autoDecision": "DENY", "autoDecisionDelayMs": 0}),
    )
    .await;
    let r = start_for(&h, &c, "denier").await;
    let id = r.body["auth_req_id"].as_str().unwrap().to_owned();
    let r = h.poll(&c, &id).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "access_denied");
}
