//! Management API (§5): every resource, validation errors, auth failures, isolation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::support::*;
use assent_core::{EnvironmentId, UserId};
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::{Value, json};

#[tokio::test]
async fn requires_admin_token() {
    let h = Harness::new().await;
    for token in [None, Some("wrong"), Some("")] {
        let r = h
            .admin_with_token(Method::GET, "/v1/environments", None, token)
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert_eq!(r.body["code"], "INVALID_TOKEN");
        assert!(r.body["id"].is_string());
    }
}

// --- helpers ------------------------------------------------------------------------------------

fn pct(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// A request with the admin token and an arbitrary content type and body.
async fn raw(
    h: &Harness,
    method: Method,
    path: &str,
    content_type: Option<&str>,
    body: &str,
) -> Resp {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {ADMIN_TOKEN}"));
    if let Some(ct) = content_type {
        req = req.header(header::CONTENT_TYPE, ct);
    }
    h.send(req.body(Body::from(body.to_owned())).unwrap()).await
}

/// Asserts a 400 INVALID_DATA whose first detail targets `target`.
#[track_caller]
fn assert_invalid(r: &Resp, target: &str) {
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(r.body["code"], "INVALID_DATA", "{}", r.text);
    assert_eq!(r.body["details"][0]["target"], target, "{}", r.text);
    assert_error_shape(r);
}

#[track_caller]
fn assert_code(r: &Resp, status: StatusCode, code: &str) {
    assert_eq!(r.status, status, "{}", r.text);
    assert_eq!(r.body["code"], code, "{}", r.text);
    assert_error_shape(r);
}

#[track_caller]
fn assert_error_shape(r: &Resp) {
    let id = r.body["id"].as_str().expect("error id");
    assert!(uuid::Uuid::parse_str(id).is_ok(), "id {id} is not a UUID");
    assert!(
        r.body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{}",
        r.text
    );
}

#[track_caller]
fn assert_not_found(r: &Resp) {
    assert_code(r, StatusCode::NOT_FOUND, "NOT_FOUND");
}

/// RFC 3339 in UTC: `YYYY-MM-DDTHH:MM:SS[.fff]Z`.
#[track_caller]
fn assert_utc_timestamp(v: &Value) {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("timestamp expected, got {v}"));
    let b = s.as_bytes();
    assert!(
        s.len() >= 20
            && s.ends_with('Z')
            && b[4] == b'-'
            && b[7] == b'-'
            && b[10] == b'T'
            && b[13] == b':'
            && b[16] == b':'
            && s[..4].bytes().all(|c| c.is_ascii_digit()),
        "not an RFC 3339 UTC timestamp: {s}"
    );
}

/// Whether any object anywhere in `v` has a member named `key`.
fn has_member(v: &Value, key: &str) -> bool {
    match v {
        Value::Object(o) => o.contains_key(key) || o.values().any(|x| has_member(x, key)),
        Value::Array(a) => a.iter().any(|x| has_member(x, key)),
        _ => false,
    }
}

fn ids(list: &Value, name: &str) -> Vec<String> {
    list["_embedded"][name]
        .as_array()
        .unwrap_or_else(|| panic!("no _embedded.{name} in {list}"))
        .iter()
        .map(|x| x["id"].as_str().unwrap().to_owned())
        .collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// Follows `_links.next.href` from `first` and returns every id seen, checking the page
/// shape on the way.
async fn collect_pages(h: &Harness, first: &str, name: &str, limit: u64) -> (Vec<String>, u64) {
    let mut path = first.to_owned();
    let mut seen = Vec::new();
    let mut count = None;
    for _ in 0..100 {
        let r = h.admin(Method::GET, &path, None).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.text);
        let page = ids(&r.body, name);
        assert_eq!(
            r.body["size"].as_u64(),
            Some(page.len() as u64),
            "{}",
            r.text
        );
        assert!(page.len() as u64 <= limit, "{}", r.text);
        let c = r.body["count"].as_u64().expect("count");
        assert_eq!(*count.get_or_insert(c), c, "count changed between pages");
        assert!(r.body["_links"]["self"]["href"].is_string(), "{}", r.text);
        seen.extend(page);
        match r.body["_links"]["next"]["href"].as_str() {
            Some(next) => {
                let base = format!("{PUBLIC_URL}/v1/");
                assert!(next.starts_with(&base), "next is not absolute: {next}");
                assert!(next.contains("cursor="), "{next}");
                path = next.strip_prefix(PUBLIC_URL).unwrap().to_owned();
            }
            None => return (seen, c),
        }
    }
    panic!("paging did not end");
}

async fn jwks(h: &Harness, env: &str) -> Value {
    let r = h.get(&format!("/{env}/as/jwks"), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.body
}

fn kid_list(jwks: &Value) -> Vec<String> {
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

fn ktys(jwks: &Value) -> Vec<String> {
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kty"].as_str().unwrap().to_owned())
        .collect()
}

fn apps_path(env: &str) -> String {
    format!("/v1/environments/{env}/applications")
}

fn users_path(env: &str) -> String {
    format!("/v1/environments/{env}/users")
}

fn reqs_path(env: &str) -> String {
    format!("/v1/environments/{env}/cibaRequests")
}

/// A public key set to give applications: the environment's own JWKS.
async fn public_jwks(h: &Harness, env: &str) -> Value {
    let mut set = jwks(h, env).await;
    assert!(!has_member(&set, "d"));
    set["keys"].as_array_mut().unwrap().truncate(1);
    set
}

// --- auth and routing -------------------------------------------------------------------------

#[tokio::test]
async fn basic_auth_instead_of_bearer_is_rejected() {
    let h = Harness::new().await;
    for value in [format!("Basic {ADMIN_TOKEN}"), basic("admin", ADMIN_TOKEN)] {
        let req = Request::builder()
            .method(Method::GET)
            .uri("/v1/environments")
            .header(header::AUTHORIZATION, value)
            .body(Body::empty())
            .unwrap();
        let r = h.send(req).await;
        assert_code(&r, StatusCode::UNAUTHORIZED, "INVALID_TOKEN");
    }
    // And an unauthenticated create changes nothing.
    let r = h
        .admin_with_token(
            Method::POST,
            "/v1/environments",
            Some(json!({"name": "x", "type": "SANDBOX"})),
            None,
        )
        .await;
    assert_code(&r, StatusCode::UNAUTHORIZED, "INVALID_TOKEN");
    let list = h.admin(Method::GET, "/v1/environments", None).await;
    assert_eq!(list.body["count"], 0, "{}", list.text);
}

#[tokio::test]
async fn unknown_v1_path_is_json_404() {
    let h = Harness::new().await;
    let env = h.create_env("SANDBOX").await;
    for path in [
        "/v1/nothing-here".to_owned(),
        format!("/v1/environments/{env}/bogus"),
        format!("/v1/environments/{env}/applications/x/y/z"),
    ] {
        let r = h.admin(Method::GET, &path, None).await;
        assert_not_found(&r);
    }
}

// --- environments -----------------------------------------------------------------------------

#[tokio::test]
async fn environment_create_returns_resource() {
    let h = Harness::new().await;
    let r = h
        .admin(
            Method::POST,
            "/v1/environments",
            Some(
                json!({"name": "Staging pumps", "type": "PRODUCTION", "description": "Forecourt"}),
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let id = r.body["id"].as_str().unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
    assert_eq!(r.body["name"], "Staging pumps");
    assert_eq!(r.body["type"], "PRODUCTION");
    assert_eq!(r.body["description"], "Forecourt");
    assert_utc_timestamp(&r.body["createdAt"]);
    assert_utc_timestamp(&r.body["updatedAt"]);
    assert!(
        r.body["createdAt"]
            .as_str()
            .unwrap()
            .starts_with("2026-01-01T00:00:00")
    );

    let g = h
        .admin(Method::GET, &format!("/v1/environments/{id}"), None)
        .await;
    assert_eq!(g.status, StatusCode::OK, "{}", g.text);
    assert_eq!(g.body, r.body);
}

#[tokio::test]
async fn environment_create_validation() {
    let h = Harness::new().await;
    let cases = [
        (json!({"type": "SANDBOX"}), "name"),
        (json!({"name": "x"}), "type"),
        (json!({"name": "x", "type": "STAGING"}), "type"),
        (
            json!({"name": "x", "type": "SANDBOX", "color": "red"}),
            "color",
        ),
        (json!({"name": "a".repeat(300), "type": "SANDBOX"}), "name"),
        (json!({"name": "", "type": "SANDBOX"}), "name"),
        (json!({"name": 5, "type": "SANDBOX"}), "name"),
    ];
    for (body, target) in cases {
        let r = h
            .admin(Method::POST, "/v1/environments", Some(body.clone()))
            .await;
        assert_invalid(&r, target);
    }
    let r = raw(
        &h,
        Method::POST,
        "/v1/environments",
        Some("application/json"),
        "{not json",
    )
    .await;
    assert_code(&r, StatusCode::BAD_REQUEST, "INVALID_DATA");
    let r = raw(
        &h,
        Method::POST,
        "/v1/environments",
        Some("text/plain"),
        r#"{"name":"x","type":"SANDBOX"}"#,
    )
    .await;
    assert_code(&r, StatusCode::BAD_REQUEST, "INVALID_DATA");
    let r = raw(
        &h,
        Method::POST,
        "/v1/environments",
        None,
        r#"{"name":"x","type":"SANDBOX"}"#,
    )
    .await;
    assert_code(&r, StatusCode::BAD_REQUEST, "INVALID_DATA");

    // Nothing was created by any of them.
    let list = h.admin(Method::GET, "/v1/environments", None).await;
    assert_eq!(list.body["count"], 0, "{}", list.text);
}

#[tokio::test]
async fn environment_list_shape() {
    let h = Harness::new().await;
    let a = h.create_env("SANDBOX").await;
    let b = h.create_env("PRODUCTION").await;
    let r = h.admin(Method::GET, "/v1/environments", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(sorted(ids(&r.body, "environments")), sorted(vec![a, b]));
    assert_eq!(r.body["count"], 2);
    assert_eq!(r.body["size"], 2);
    let href = r.body["_links"]["self"]["href"].as_str().unwrap();
    assert!(
        href.starts_with(&format!("{PUBLIC_URL}/v1/environments")),
        "{href}"
    );
    assert!(r.body["_links"]["next"].is_null(), "{}", r.text);
    let first = &r.body["_embedded"]["environments"][0];
    for member in ["id", "name", "type", "createdAt", "updatedAt"] {
        assert!(!first[member].is_null(), "{member} missing: {first}");
    }
}

#[tokio::test]
async fn environment_paging() {
    let h = Harness::new().await;
    let mut created = Vec::new();
    for _ in 0..5 {
        created.push(h.create_env("SANDBOX").await);
    }
    let r = h.admin(Method::GET, "/v1/environments?limit=2", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["size"], 2);
    assert!(r.body["count"].as_u64().unwrap() >= 5, "{}", r.text);
    let next = r.body["_links"]["next"]["href"].as_str().unwrap();
    assert!(
        next.starts_with("https://assent.test/v1/environments"),
        "{next}"
    );
    assert!(next.contains("cursor="), "{next}");

    let (seen, count) = collect_pages(&h, "/v1/environments?limit=2", "environments", 2).await;
    assert_eq!(seen.len() as u64, count);
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        seen.len(),
        "an id was returned twice: {seen:?}"
    );
    assert_eq!(sorted(seen), sorted(created));
}

#[tokio::test]
async fn environment_list_rejects_bad_paging() {
    let h = Harness::new().await;
    h.create_env("SANDBOX").await;
    for (q, target) in [
        ("limit=0", "limit"),
        ("limit=abc", "limit"),
        ("limit=-1", "limit"),
        ("cursor=garbage", "cursor"),
        ("limit=2&cursor=x%3Ay", "cursor"),
    ] {
        let r = h
            .admin(Method::GET, &format!("/v1/environments?{q}"), None)
            .await;
        assert_invalid(&r, target);
    }
}

#[tokio::test]
async fn environment_get_patch_delete() {
    let h = Harness::new().await;
    let env = h.create_env("SANDBOX").await;
    let path = format!("/v1/environments/{env}");
    let before = h.admin(Method::GET, &path, None).await;
    assert_eq!(before.status, StatusCode::OK, "{}", before.text);
    assert_eq!(before.body["name"], "Test env");

    h.clock.advance_secs(60);
    let r = h
        .admin(
            Method::PATCH,
            &path,
            Some(json!({"name": "Renamed", "description": "Now described"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["name"], "Renamed");
    assert_eq!(r.body["description"], "Now described");
    assert_eq!(r.body["type"], "SANDBOX");
    let after = h.admin(Method::GET, &path, None).await;
    assert_eq!(after.body["name"], "Renamed");
    assert_eq!(after.body["description"], "Now described");
    assert_eq!(after.body["createdAt"], before.body["createdAt"]);
    assert_ne!(after.body["updatedAt"], before.body["updatedAt"]);
    assert_utc_timestamp(&after.body["updatedAt"]);

    let bad = h
        .admin(Method::PATCH, &path, Some(json!({"type": "BAD"})))
        .await;
    assert_invalid(&bad, "type");
    let bad = h
        .admin(
            Method::PATCH,
            &path,
            Some(json!({"name": "x", "color": "red"})),
        )
        .await;
    assert_invalid(&bad, "color");
    let still = h.admin(Method::GET, &path, None).await;
    assert_eq!(still.body["type"], "SANDBOX");
    assert_eq!(still.body["name"], "Renamed");

    let d = h.admin(Method::DELETE, &path, None).await;
    assert_eq!(d.status, StatusCode::NO_CONTENT, "{}", d.text);
    assert_not_found(&h.admin(Method::GET, &path, None).await);
    let list = h.admin(Method::GET, "/v1/environments", None).await;
    assert_eq!(list.body["count"], 0, "{}", list.text);
}

#[tokio::test]
async fn unknown_environment_is_404() {
    let h = Harness::new().await;
    let unknown = uuid::Uuid::new_v4().to_string();
    let path = format!("/v1/environments/{unknown}");
    assert_not_found(&h.admin(Method::GET, &path, None).await);
    assert_not_found(
        &h.admin(Method::PATCH, &path, Some(json!({"name": "x"})))
            .await,
    );
    assert_not_found(&h.admin(Method::DELETE, &path, None).await);
    assert_not_found(&h.admin(Method::GET, &apps_path(&unknown), None).await);
    assert_not_found(&h.admin(Method::GET, &users_path(&unknown), None).await);
    assert_not_found(
        &h.admin(
            Method::POST,
            &apps_path(&unknown),
            Some(json!({"name": "x"})),
        )
        .await,
    );
}

#[tokio::test]
async fn new_environment_publishes_one_rs256_key() {
    let h = Harness::new().await;
    let env = h.create_env("PRODUCTION").await;
    let set = jwks(&h, &env).await;
    let keys = set["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1, "{set}");
    assert_eq!(keys[0]["kty"], "RSA");
    assert_eq!(keys[0]["alg"], "RS256");
    assert!(keys[0]["kid"].is_string());
    assert!(!has_member(&set, "d"));
}

#[tokio::test]
async fn deleting_environment_removes_its_apps_and_users() {
    let h = Harness::new().await;
    let (client, user) = h.sandbox().await;
    let env = client.env_id.clone();
    let d = h
        .admin(Method::DELETE, &format!("/v1/environments/{env}"), None)
        .await;
    assert_eq!(d.status, StatusCode::NO_CONTENT, "{}", d.text);
    assert_not_found(
        &h.admin(
            Method::GET,
            &format!("{}/{}", apps_path(&env), client.id),
            None,
        )
        .await,
    );
    assert_not_found(
        &h.admin(Method::GET, &format!("{}/{user}", users_path(&env)), None)
            .await,
    );
    assert!(h.store.get_application(&env, &client.id).await.is_err());
    assert!(h.store.get_user(&env, &UserId::from(&user)).await.is_err());
    // Its issuer is gone too: the old secret authenticates nowhere.
    let t = h
        .post_form(
            &format!("/{env}/as/token"),
            Some(&client.basic()),
            &[("grant_type", CIBA), ("auth_req_id", "x")],
        )
        .await;
    assert!(t.status.is_client_error(), "{}", t.text);
    assert_ne!(t.status, StatusCode::BAD_REQUEST, "{}", t.text);
}

// --- applications -----------------------------------------------------------------------------

#[tokio::test]
async fn application_create_echoes_every_field() {
    let h = Harness::new().await;
    let env = h.create_env("SANDBOX").await;
    let set = public_jwks(&h, &env).await;
    let jwks_text = set.to_string();
    let ciba = json!({
        "deliveryMode": "POLL", "notificationEndpoint": null,
        "requestExpirySeconds": 90, "maxRequestExpirySeconds": 300, "pollingIntervalSeconds": 3,
        "longPollSeconds": 0, "bindingMessageMaxLength": 32, "userCodeParameter": false,
        "requestSigningAlgorithm": null
    });
    let r = h
        .admin(
            Method::POST,
            &apps_path(&env),
            Some(json!({
                "name": "Gas pump 4", "enabled": true, "protocol": "OPENID_CONNECT", "type": "WEB_APP",
                "grantTypes": ["ciba", "refresh_token"],
                "tokenEndpointAuthMethod": "CLIENT_SECRET_POST",
                "jwks": jwks_text, "jwksUrl": null,
                "idTokenSigningAlgorithm": "RS256",
                "accessTokenDurationSeconds": 1800, "refreshTokenDurationSeconds": 86400,
                "cibaSettings": ciba
            })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let b = &r.body;
    assert!(b["id"].as_str().is_some_and(|s| !s.is_empty()));
    assert_eq!(b["name"], "Gas pump 4");
    assert_eq!(b["enabled"], true);
    assert_eq!(b["protocol"], "OPENID_CONNECT");
    assert_eq!(b["type"], "WEB_APP");
    assert_eq!(b["grantTypes"], json!(["CIBA", "REFRESH_TOKEN"]));
    assert_eq!(b["tokenEndpointAuthMethod"], "CLIENT_SECRET_POST");
    assert_eq!(b["jwks"], json!(jwks_text));
    assert!(b["jwksUrl"].is_null());
    assert_eq!(b["idTokenSigningAlgorithm"], "RS256");
    assert_eq!(b["accessTokenDurationSeconds"], 1800);
    assert_eq!(b["refreshTokenDurationSeconds"], 86400);
    assert_eq!(b["cibaSettings"], ciba);
    assert_utc_timestamp(&b["createdAt"]);
    assert_utc_timestamp(&b["updatedAt"]);

    let id = b["id"].as_str().unwrap();
    let g = h
        .admin(Method::GET, &format!("{}/{id}", apps_path(&env)), None)
        .await;
    assert_eq!(g.status, StatusCode::OK, "{}", g.text);
    assert_eq!(&g.body, b);
}

#[tokio::test]
async fn application_ciba_settings_default() {
    let h = Harness::new().await;
    let env = h.create_env("SANDBOX").await;
    let defaults = json!({
        "deliveryMode": "POLL", "notificationEndpoint": null,
        "requestExpirySeconds": 120, "maxRequestExpirySeconds": 600, "pollingIntervalSeconds": 2,
        "longPollSeconds": 0, "bindingMessageMaxLength": 64, "userCodeParameter": false,
        "requestSigningAlgorithm": null
    });
    // Whole object omitted.
    let r = h
        .admin(
            Method::POST,
            &apps_path(&env),
            Some(json!({"name": "A", "grantTypes": ["CIBA"]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["cibaSettings"], defaults);
    assert_eq!(r.body["tokenEndpointAuthMethod"], "CLIENT_SECRET_BASIC");
    // Some members omitted.
    let r = h
        .admin(
            Method::POST,
            &apps_path(&env),
            Some(json!({"name": "B", "cibaSettings": {"pollingIntervalSeconds": 7}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let mut expected = defaults.clone();
    expected["pollingIntervalSeconds"] = json!(7);
    assert_eq!(r.body["cibaSettings"], expected);
}

#[tokio::test]
async fn application_never_shows_its_secret() {
    let h = Harness::new().await;
    let env = h.create_env("SANDBOX").await;
    let r = h
        .admin(
            Method::POST,
            &apps_path(&env),
            Some(json!({"name": "Pump"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let id = r.body["id"].as_str().unwrap();
    let s = h
        .admin(
            Method::GET,
            &format!("{}/{id}/secret", apps_path(&env)),
            None,
        )
        .await;
    assert_eq!(s.status, StatusCode::OK, "{}", s.text);
    let secret = s.body["secret"].as_str().unwrap();
    assert!(secret.len() >= 32, "{secret}");
    let one = h
        .admin(Method::GET, &format!("{}/{id}", apps_path(&env)), None)
        .await;
    let list = h.admin(Method::GET, &apps_path(&env), None).await;
    for resp in [&r, &one, &list] {
        assert!(resp.status.is_success(), "{}", resp.text);
        for member in ["secret", "clientSecret", "client_secret"] {
            assert!(!has_member(&resp.body, member), "{member} in {}", resp.text);
        }
        assert!(!resp.text.contains(secret), "secret leaked: {}", resp.text);
    }
}

#[tokio::test]
async fn application_jwks_returned_as_given() {
    let h = Harness::new().await;
    let env = h.create_env("SANDBOX").await;
    let set = public_jwks(&h, &env).await;
    for (name, jwks) in [
        ("as string", json!(set.to_string())),
        ("as object", set.clone()),
    ] {
        let r = h
            .admin(
                Method::POST,
                &apps_path(&env),
                Some(json!({"name": name, "tokenEndpointAuthMethod": "PRIVATE_KEY_JWT", "jwks": jwks})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        assert_eq!(r.body["jwks"], jwks, "{name}");
        assert_eq!(r.body["tokenEndpointAuthMethod"], "PRIVATE_KEY_JWT");
        let id = r.body["id"].as_str().unwrap();
        let g = h
            .admin(Method::GET, &format!("{}/{id}", apps_path(&env)), None)
            .await;
        assert_eq!(g.body["jwks"], jwks, "{name}");
    }
}

/// §9 "Registered keys": weak RSA keys, bad exponents, off-curve points and private members
/// are refused at registration, with a 400 that names the key; the good key beside them is
/// what makes the difference.
#[tokio::test]
async fn weak_application_keys_are_refused_at_registration() {
    use base64::Engine;
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let h = Harness::new().await;
    let env = h.create_env("SANDBOX").await;
    let good = public_jwks(&h, &env).await["keys"][0].clone();
    assert_eq!(good["kty"], "RSA");
    let register = |jwks: Value| {
        let h = &h;
        let env = env.clone();
        async move {
            h.admin(
                Method::POST,
                &apps_path(&env),
                Some(json!({"name": "k", "tokenEndpointAuthMethod": "PRIVATE_KEY_JWT", "jwks": jwks})),
            )
            .await
        }
    };
    assert_eq!(
        register(json!({"keys": [good]})).await.status,
        StatusCode::CREATED
    );

    let mut short = good.clone();
    short["n"] = json!(b64(&[0xC5; 128]));
    short["kid"] = json!("rsa-1024");
    let mut e1 = good.clone();
    e1["e"] = json!(b64(&[1]));
    let ec_off_curve = json!({"kty": "EC", "crv": "P-256", "kid": "ec-off", "x": b64(&[1; 32]), "y": b64(&[1; 32])});
    let mut private = good.clone();
    private["d"] = json!(b64(&[9; 256]));
    for (case, bad, says) in [
        ("1024-bit RSA", short, "1024 bits"),
        ("e = 1", e1, "exponent"),
        ("EC point off the curve", ec_off_curve, "curve"),
        ("private members", private, "private"),
    ] {
        let r = register(json!({"keys": [good, bad]})).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{case}: {}", r.text);
        assert_eq!(r.body["code"], "INVALID_DATA", "{case}");
        assert_eq!(r.body["details"][0]["target"], "jwks", "{case}");
        let message = r.body["details"][0]["message"].as_str().unwrap();
        assert!(
            message.contains("key 1") && message.contains(says),
            "{case}: {message}"
        );
    }
}

#[tokio::test]
async fn application_secret_rotation() {
    let h = Harness::new().await;
    let env = h.create_env("SANDBOX").await;
    let client = h.create_app(&env, json!({})).await;
    let path = format!("{}/{}/secret", apps_path(&env), client.id);
    let token = format!("/{env}/as/token");
    let poll = |secret: String| {
        let id = client.id.clone();
        let token = token.clone();
        let h = &h;
        async move {
            h.post_form(
                &token,
                Some(&basic(&id, &secret)),
                &[("grant_type", CIBA), ("auth_req_id", "x")],
            )
            .await
        }
    };
    // The original secret gets past client authentication.
    let r = poll(client.secret.clone()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(r.error(), "invalid_grant");

    let rot = h.admin(Method::POST, &path, None).await;
    assert_eq!(rot.status, StatusCode::OK, "{}", rot.text);
    let new = rot.body["secret"].as_str().unwrap().to_owned();
    assert_ne!(new, client.secret);
    let got = h.admin(Method::GET, &path, None).await;
    assert_eq!(got.body["secret"], new.as_str());

    let old = poll(client.secret.clone()).await;
    assert_eq!(old.status, StatusCode::UNAUTHORIZED, "{}", old.text);
    assert_eq!(old.error(), "invalid_client");
    let fresh = poll(new).await;
    assert_eq!(fresh.status, StatusCode::BAD_REQUEST, "{}", fresh.text);
    assert_eq!(fresh.error(), "invalid_grant");
}

#[tokio::test]
async fn application_validation() {
    let h = Harness::new().await;
    let env = h.create_env("SANDBOX").await;
    let set = public_jwks(&h, &env).await;
    let mut private = set.clone();
    private["keys"][0]["d"] = json!("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    let cases = [
        (json!({"grantTypes": ["CIBA"]}), "name"),
        (json!({"name": "x", "color": "red"}), "color"),
        (
            json!({"name": "x", "grantTypes": ["CIBA", "TELEPATHY"]}),
            "grantTypes",
        ),
        (json!({"name": "x", "grantTypes": "CIBA"}), "grantTypes"),
        (
            json!({"name": "x", "tokenEndpointAuthMethod": "CLIENT_SECRET_MAGIC"}),
            "tokenEndpointAuthMethod",
        ),
        (
            json!({"name": "x", "idTokenSigningAlgorithm": "HS256"}),
            "idTokenSigningAlgorithm",
        ),
        (
            json!({"name": "x", "cibaSettings": {"pollingIntervalSeconds": 0}}),
            "cibaSettings.pollingIntervalSeconds",
        ),
        (
            json!({"name": "x", "cibaSettings": {"pollingIntervalSeconds": "2"}}),
            "cibaSettings.pollingIntervalSeconds",
        ),
        (
            json!({"name": "x", "cibaSettings": {"colour": 1}}),
            "cibaSettings.colour",
        ),
        (json!({"name": "x", "cibaSettings": "POLL"}), "cibaSettings"),
        (
            json!({"name": "x", "cibaSettings": {"requestExpirySeconds": 700, "maxRequestExpirySeconds": 600}}),
            "cibaSettings.requestExpirySeconds",
        ),
        (
            json!({"name": "x", "tokenEndpointAuthMethod": "PRIVATE_KEY_JWT"}),
            "tokenEndpointAuthMethod",
        ),
        (json!({"name": "x", "jwks": {"foo": 1}}), "jwks"),
        (json!({"name": "x", "jwks": "not a key set"}), "jwks"),
        (json!({"name": "x", "jwks": 42}), "jwks"),
        (json!({"name": "x", "jwks": private}), "jwks"),
        (json!({"name": "x", "jwks": private.to_string()}), "jwks"),
        (
            json!({"name": "x", "cibaSettings": {"deliveryMode": "PING"}}),
            "cibaSettings.deliveryMode",
        ),
        (
            json!({"name": "x", "cibaSettings": {"deliveryMode": "CARRIER_PIGEON"}}),
            "cibaSettings.deliveryMode",
        ),
        (
            json!({"name": "x", "cibaSettings": {"longPollSeconds": 5}}),
            "cibaSettings.longPollSeconds",
        ),
        (
            json!({"name": "x", "cibaSettings": {"userCodeParameter": true}}),
            "cibaSettings.userCodeParameter",
        ),
        (json!({"name": "x", "protocol": "SAML"}), "protocol"),
        (
            json!({"name": "x", "grantTypes": ["CIBA"], "tokenEndpointAuthMethod": "NONE"}),
            "tokenEndpointAuthMethod",
        ),
        (
            json!({"name": "x", "accessTokenDurationSeconds": 0}),
            "accessTokenDurationSeconds",
        ),
        (
            json!({"name": "x", "jwksUrl": "ftp://keys.example/jwks"}),
            "jwksUrl",
        ),
    ];
    for (body, target) in cases {
        let r = h
            .admin(Method::POST, &apps_path(&env), Some(body.clone()))
            .await;
        assert_invalid(&r, target);
    }
    let list = h.admin(Method::GET, &apps_path(&env), None).await;
    assert_eq!(
        list.body["count"], 0,
        "a rejected application was stored: {}",
        list.text
    );
}

#[tokio::test]
async fn application_patch_persists() {
    let h = Harness::new().await;
    let env = h.create_env("SANDBOX").await;
    let client = h.create_app(&env, json!({})).await;
    let path = format!("{}/{}", apps_path(&env), client.id);
    let r = h
        .admin(
            Method::PATCH,
            &path,
            Some(json!({"name": "Pump 5", "enabled": false, "cibaSettings": {"pollingIntervalSeconds": 5}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["name"], "Pump 5");
    assert_eq!(r.body["enabled"], false);
    assert_eq!(r.body["cibaSettings"]["pollingIntervalSeconds"], 5);
    let g = h.admin(Method::GET, &path, None).await;
    assert_eq!(g.body["name"], "Pump 5");
    assert_eq!(g.body["enabled"], false);
    assert_eq!(g.body["cibaSettings"]["pollingIntervalSeconds"], 5);
    // Untouched members keep their values.
    assert_eq!(g.body["cibaSettings"]["requestExpirySeconds"], 120);
    assert_eq!(g.body["grantTypes"], json!(["CIBA", "REFRESH_TOKEN"]));

    // An invalid PATCH changes nothing, not even its valid members.
    let bad = h
        .admin(
            Method::PATCH,
            &path,
            Some(json!({"name": "Pump 6", "cibaSettings": {"pollingIntervalSeconds": 0}})),
        )
        .await;
    assert_invalid(&bad, "cibaSettings.pollingIntervalSeconds");
    let g = h.admin(Method::GET, &path, None).await;
    assert_eq!(g.body["name"], "Pump 5");
    assert_eq!(g.body["cibaSettings"]["pollingIntervalSeconds"], 5);
}

#[tokio::test]
async fn application_es256_creates_ec_key() {
    let h = Harness::new().await;
    let env = h.create_env("SANDBOX").await;
    let client = h.create_app(&env, json!({})).await;
    assert_eq!(ktys(&jwks(&h, &env).await), vec!["RSA"]);
    let r = h
        .admin(
            Method::PATCH,
            &format!("{}/{}", apps_path(&env), client.id),
            Some(json!({"idTokenSigningAlgorithm": "ES256"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["idTokenSigningAlgorithm"], "ES256");
    let set = jwks(&h, &env).await;
    let keys = set["keys"].as_array().unwrap();
    assert!(
        keys.iter().any(|k| k["kty"] == "EC" && k["alg"] == "ES256"),
        "{set}"
    );
    assert!(keys.iter().any(|k| k["kty"] == "RSA"), "{set}");
    assert!(!has_member(&set, "d"));
}

#[tokio::test]
async fn application_delete() {
    let h = Harness::new().await;
    let env = h.create_env("SANDBOX").await;
    let client = h.create_app(&env, json!({})).await;
    let other = h.create_app(&env, json!({"name": "Other"})).await;
    let path = format!("{}/{}", apps_path(&env), client.id);
    let d = h.admin(Method::DELETE, &path, None).await;
    assert_eq!(d.status, StatusCode::NO_CONTENT, "{}", d.text);
    assert_not_found(&h.admin(Method::GET, &path, None).await);
    assert_not_found(&h.admin(Method::DELETE, &path, None).await);
    assert_not_found(&h.admin(Method::GET, &format!("{path}/secret"), None).await);
    let list = h.admin(Method::GET, &apps_path(&env), None).await;
    assert_eq!(ids(&list.body, "applications"), vec![other.id.clone()]);
    // The deleted client no longer authenticates.
    let t = h
        .post_form(
            &format!("/{env}/as/token"),
            Some(&client.basic()),
            &[("grant_type", CIBA), ("auth_req_id", "x")],
        )
        .await;
    assert_eq!(t.status, StatusCode::UNAUTHORIZED, "{}", t.text);
    assert_eq!(t.error(), "invalid_client");
}

#[tokio::test]
async fn application_list_and_paging() {
    let h = Harness::new().await;
    let env = h.create_env("SANDBOX").await;
    let other_env = h.create_env("SANDBOX").await;
    h.create_app(&other_env, json!({"name": "Elsewhere"})).await;
    let mut created = Vec::new();
    for i in 0..3 {
        created.push(
            h.create_app(&env, json!({"name": format!("App {i}")}))
                .await
                .id
                .into_string(),
        );
    }
    let (seen, count) = collect_pages(
        &h,
        &format!("{}?limit=2", apps_path(&env)),
        "applications",
        2,
    )
    .await;
    assert_eq!(count, 3);
    assert_eq!(sorted(seen), sorted(created));
    let r = h
        .admin(Method::GET, &format!("{}?limit=0", apps_path(&env)), None)
        .await;
    assert_invalid(&r, "limit");
    let r = h
        .admin(
            Method::GET,
            &format!("{}?cursor=garbage", apps_path(&env)),
            None,
        )
        .await;
    assert_invalid(&r, "cursor");
}

// --- isolation --------------------------------------------------------------------------------

#[tokio::test]
async fn environments_are_isolated() {
    let h = Harness::new().await;
    let (client, user) = h.sandbox().await;
    let a = client.env_id.clone();
    let req = h.start(&client, "openid").await;
    let b = h.create_env("SANDBOX").await;
    // B has its own user of the same name, so names alone do not leak across.
    h.create_user(&b, json!({"username": "alice"})).await;

    let app_b = format!("{}/{}", apps_path(&b), client.id);
    assert_not_found(&h.admin(Method::GET, &app_b, None).await);
    assert_not_found(
        &h.admin(Method::PATCH, &app_b, Some(json!({"name": "stolen"})))
            .await,
    );
    assert_not_found(&h.admin(Method::DELETE, &app_b, None).await);
    assert_not_found(&h.admin(Method::GET, &format!("{app_b}/secret"), None).await);
    assert_not_found(
        &h.admin(Method::POST, &format!("{app_b}/secret"), None)
            .await,
    );

    let user_b = format!("{}/{user}", users_path(&b));
    assert_not_found(&h.admin(Method::GET, &user_b, None).await);
    assert_not_found(
        &h.admin(Method::PATCH, &user_b, Some(json!({"enabled": false})))
            .await,
    );
    assert_not_found(&h.admin(Method::DELETE, &user_b, None).await);

    let req_b = format!("{}/{req}", reqs_path(&b));
    assert_not_found(&h.admin(Method::GET, &req_b, None).await);
    assert_not_found(&h.admin(Method::DELETE, &req_b, None).await);
    assert_not_found(&h.decide(&b, &req, "approve").await);
    assert_not_found(&h.decide(&b, &req, "deny").await);
    let listed = h.admin(Method::GET, &reqs_path(&b), None).await;
    assert_eq!(listed.body["count"], 0, "{}", listed.text);

    // A's resources are untouched by all of that.
    let app_a = h
        .admin(
            Method::GET,
            &format!("{}/{}", apps_path(&a), client.id),
            None,
        )
        .await;
    assert_eq!(app_a.status, StatusCode::OK, "{}", app_a.text);
    assert_eq!(app_a.body["name"], "Pump 4");
    let secret = h
        .admin(
            Method::GET,
            &format!("{}/{}/secret", apps_path(&a), client.id),
            None,
        )
        .await;
    assert_eq!(secret.body["secret"], client.secret.as_str());
    let user_a = h
        .admin(Method::GET, &format!("{}/{user}", users_path(&a)), None)
        .await;
    assert_eq!(user_a.body["enabled"], true, "{}", user_a.text);
    let req_a = h
        .admin(Method::GET, &format!("{}/{req}", reqs_path(&a)), None)
        .await;
    assert_eq!(req_a.body["status"], "PENDING", "{}", req_a.text);

    // A's client does not authenticate at B's token endpoint.
    let t = h
        .post_form(
            &format!("/{b}/as/token"),
            Some(&client.basic()),
            &[("grant_type", CIBA), ("auth_req_id", req.as_str())],
        )
        .await;
    assert_eq!(t.status, StatusCode::UNAUTHORIZED, "{}", t.text);
    assert_eq!(t.error(), "invalid_client");
}

// --- users ------------------------------------------------------------------------------------

#[tokio::test]
async fn user_create_hides_password() {
    let h = Harness::new().await;
    let env = h.create_env("SANDBOX").await;
    let pw = "correct horse battery staple";
    let r = h
        .admin(
            Method::POST,
            &users_path(&env),
            Some(json!({"username": "alice", "email": "alice@example.com",
                        "name": {"given": "Alice", "family": "Liddell"},
                        "phoneNumber": "+1 555 010 2030", "password": pw})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let b = &r.body;
    let id = b["id"].as_str().unwrap();
    assert_eq!(b["username"], "alice");
    assert_eq!(b["email"], "alice@example.com");
    assert_eq!(b["name"]["given"], "Alice");
    assert_eq!(b["name"]["family"], "Liddell");
    assert_eq!(b["phoneNumber"], "+1 555 010 2030");
    assert_eq!(b["enabled"], true);
    assert_utc_timestamp(&b["createdAt"]);
    assert_utc_timestamp(&b["updatedAt"]);
    let one = h
        .admin(Method::GET, &format!("{}/{id}", users_path(&env)), None)
        .await;
    let list = h.admin(Method::GET, &users_path(&env), None).await;
    for resp in [&r, &one, &list] {
        assert!(!resp.text.contains(pw), "{}", resp.text);
        assert!(!resp.text.contains("$argon2"), "{}", resp.text);
        assert!(!has_member(&resp.body, "password"), "{}", resp.text);
        assert!(!has_member(&resp.body, "passwordHash"), "{}", resp.text);
    }
    assert_eq!(&one.body, b);

    let stored = h
        .store
        .get_user(&EnvironmentId::from(&env), &UserId::from(id))
        .await
        .unwrap();
    let hash = stored.password_hash.expect("a stored hash");
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(assent_crypto::verify_password(pw, &hash));
    assert!(!assent_crypto::verify_password("wrong password", &hash));
}

#[tokio::test]
async fn user_uniqueness() {
    let h = Harness::new().await;
    let env = h.create_env("SANDBOX").await;
    h.create_user(
        &env,
        json!({"username": "alice", "email": "alice@example.com"}),
    )
    .await;
    for (body, target) in [
        (json!({"username": "alice"}), "username"),
        (json!({"username": "Alice"}), "username"),
        (
            json!({"username": "carol", "email": "alice@example.com"}),
            "email",
        ),
        (
            json!({"username": "dave", "email": "ALICE@Example.COM"}),
            "email",
        ),
    ] {
        let r = h
            .admin(Method::POST, &users_path(&env), Some(body.clone()))
            .await;
        assert_code(&r, StatusCode::CONFLICT, "UNIQUENESS_VIOLATION");
        assert_eq!(r.body["details"][0]["target"], target, "{body}: {}", r.text);
    }
    let list = h.admin(Method::GET, &users_path(&env), None).await;
    assert_eq!(list.body["count"], 1, "{}", list.text);

    // A PATCH onto a taken username conflicts too.
    let bob = h.create_user(&env, json!({"username": "bob"})).await;
    let r = h
        .admin(
            Method::PATCH,
            &format!("{}/{bob}", users_path(&env)),
            Some(json!({"username": "ALICE"})),
        )
        .await;
    assert_code(&r, StatusCode::CONFLICT, "UNIQUENESS_VIOLATION");
    assert_eq!(r.body["details"][0]["target"], "username", "{}", r.text);

    // The same username and email in another environment are fine.
    let other = h.create_env("SANDBOX").await;
    let r = h
        .admin(
            Method::POST,
            &users_path(&other),
            Some(json!({"username": "alice", "email": "alice@example.com"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
}

#[tokio::test]
async fn user_filter_by_username() {
    let h = Harness::new().await;
    let env = h.create_env("SANDBOX").await;
    let alice = h.create_user(&env, json!({"username": "alice"})).await;
    h.create_user(&env, json!({"username": "bob"})).await;
    h.create_user(&env, json!({"username": "alice2"})).await;
    let q = pct(r#"username eq "alice""#);
    let r = h
        .admin(
            Method::GET,
            &format!("{}?filter={q}", users_path(&env)),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(ids(&r.body, "users"), vec![alice]);
    assert_eq!(r.body["count"], 1);
    assert_eq!(r.body["size"], 1);
    let none = h
        .admin(
            Method::GET,
            &format!(
                "{}?filter={}",
                users_path(&env),
                pct(r#"username eq "zed""#)
            ),
            None,
        )
        .await;
    assert_eq!(none.status, StatusCode::OK, "{}", none.text);
    assert_eq!(none.body["count"], 0);
    for bad in [
        r#"username co "a""#,
        "username eq alice",
        r#"email eq "a@b.c""#,
        "garbage",
    ] {
        let r = h
            .admin(
                Method::GET,
                &format!("{}?filter={}", users_path(&env), pct(bad)),
                None,
            )
            .await;
        assert_invalid(&r, "filter");
    }
}

#[tokio::test]
async fn user_validation() {
    let h = Harness::new().await;
    let env = h.create_env("SANDBOX").await;
    for (body, target) in [
        (json!({"email": "a@example.com"}), "username"),
        (json!({"username": "x", "shoeSize": 42}), "shoeSize"),
        (json!({"username": "x", "email": "not-an-email"}), "email"),
        (json!({"username": "x", "password": "short"}), "password"),
        (
            json!({"username": "x", "autoDecision": "MAYBE"}),
            "autoDecision",
        ),
        (json!({"username": "x", "enabled": "yes"}), "enabled"),
        (json!({"username": "has space"}), "username"),
    ] {
        let r = h
            .admin(Method::POST, &users_path(&env), Some(body.clone()))
            .await;
        assert_invalid(&r, target);
    }
    let list = h.admin(Method::GET, &users_path(&env), None).await;
    assert_eq!(list.body["count"], 0, "{}", list.text);
}

#[tokio::test]
async fn user_auto_decision_only_in_sandbox() {
    let h = Harness::new().await;
    let prod = h.create_env("PRODUCTION").await;
    let r = h
        .admin(
            Method::POST,
            &users_path(&prod),
            Some(json!({"username": "bot", "autoDecision": "APPROVE"})),
        )
        .await;
    assert_invalid(&r, "autoDecision");
    let list = h.admin(Method::GET, &users_path(&prod), None).await;
    assert_eq!(list.body["count"], 0, "{}", list.text);
    // Nor can an existing PRODUCTION user be given one.
    let u = h.create_user(&prod, json!({"username": "human"})).await;
    let r = h
        .admin(
            Method::PATCH,
            &format!("{}/{u}", users_path(&prod)),
            Some(json!({"autoDecision": "DENY"})),
        )
        .await;
    assert_invalid(&r, "autoDecision");

    let sandbox = h.create_env("SANDBOX").await;
    let r = h
        .admin(
            Method::POST,
            &users_path(&sandbox),
            Some(json!({"username": "bot", "autoDecision": "APPROVE", "autoDecisionDelayMs": 250})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["autoDecision"], "APPROVE");
    assert_eq!(r.body["autoDecisionDelayMs"], 250);
}

#[tokio::test]
async fn user_patch_and_delete() {
    let h = Harness::new().await;
    let env = h.create_env("SANDBOX").await;
    let id = h
        .create_user(&env, json!({"username": "alice", "email": "alice@example.com", "password": "first password"}))
        .await;
    let path = format!("{}/{id}", users_path(&env));
    let r = h
        .admin(
            Method::PATCH,
            &path,
            Some(json!({"email": "alice@wonderland.example", "enabled": false})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["email"], "alice@wonderland.example");
    assert_eq!(r.body["enabled"], false);
    let g = h.admin(Method::GET, &path, None).await;
    assert_eq!(g.body["email"], "alice@wonderland.example");
    assert_eq!(g.body["enabled"], false);
    assert_eq!(g.body["username"], "alice");
    // The password survives a PATCH that does not mention it.
    let stored = h
        .store
        .get_user(&EnvironmentId::from(&env), &UserId::from(&id))
        .await
        .unwrap();
    assert!(assent_crypto::verify_password(
        "first password",
        stored.password_hash.as_deref().unwrap()
    ));

    let bad = h
        .admin(Method::PATCH, &path, Some(json!({"email": "nope"})))
        .await;
    assert_invalid(&bad, "email");
    let g = h.admin(Method::GET, &path, None).await;
    assert_eq!(g.body["email"], "alice@wonderland.example");

    let d = h.admin(Method::DELETE, &path, None).await;
    assert_eq!(d.status, StatusCode::NO_CONTENT, "{}", d.text);
    assert_not_found(&h.admin(Method::GET, &path, None).await);
    assert_not_found(
        &h.admin(Method::PATCH, &path, Some(json!({"enabled": true})))
            .await,
    );
    let list = h.admin(Method::GET, &users_path(&env), None).await;
    assert_eq!(list.body["count"], 0, "{}", list.text);
}

// --- signing keys -----------------------------------------------------------------------------

#[tokio::test]
async fn signing_key_rotation() {
    let h = Harness::new().await;
    let env = h.create_env("SANDBOX").await;
    let path = format!("/v1/environments/{env}/signingKeys");
    let list = h.admin(Method::GET, &path, None).await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.text);
    let keys = list.body["_embedded"]["signingKeys"].as_array().unwrap();
    assert_eq!(keys.len(), 1, "{}", list.text);
    assert_eq!(keys[0]["status"], "CURRENT");
    assert_eq!(keys[0]["algorithm"], "RS256");
    let old = keys[0]["id"].as_str().unwrap().to_owned();
    assert!(!has_member(&list.body, "d"), "{}", list.text);

    h.clock.advance_secs(10);
    let r = h
        .admin(Method::POST, &path, Some(json!({"algorithm": "RS256"})))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["status"], "CURRENT");
    assert_eq!(r.body["algorithm"], "RS256");
    let new = r.body["id"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    assert!(!has_member(&r.body, "d"), "{}", r.text);

    let list = h.admin(Method::GET, &path, None).await;
    let keys = list.body["_embedded"]["signingKeys"].as_array().unwrap();
    assert_eq!(keys.len(), 2, "{}", list.text);
    let find = |id: &str| keys.iter().find(|k| k["id"] == id).unwrap().clone();
    assert_eq!(find(&new)["status"], "CURRENT");
    assert_eq!(find(&old)["status"], "PREVIOUS");
    assert_utc_timestamp(&find(&old)["retireAt"]);
    assert!(!has_member(&list.body, "d"), "{}", list.text);

    let set = jwks(&h, &env).await;
    let kids = kid_list(&set);
    assert!(kids.contains(&old) && kids.contains(&new), "{set}");
}

#[tokio::test]
async fn signing_keys_of_other_algorithms() {
    let h = Harness::new().await;
    let env = h.create_env("SANDBOX").await;
    let path = format!("/v1/environments/{env}/signingKeys");
    for alg in ["ES256", "EdDSA"] {
        let r = h
            .admin(Method::POST, &path, Some(json!({"algorithm": alg})))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        assert_eq!(r.body["algorithm"], alg);
        assert_eq!(r.body["status"], "CURRENT");
    }
    let set = jwks(&h, &env).await;
    let kinds = ktys(&set);
    for kty in ["RSA", "EC", "OKP"] {
        assert!(kinds.iter().any(|k| k == kty), "{kty} missing from {set}");
    }
    let list = h.admin(Method::GET, &path, None).await;
    let keys = list.body["_embedded"]["signingKeys"].as_array().unwrap();
    assert_eq!(keys.len(), 3, "{}", list.text);
    // One current key per algorithm: adding ES256 and EdDSA retires nothing.
    assert!(
        keys.iter().all(|k| k["status"] == "CURRENT"),
        "{}",
        list.text
    );
    for private in ["d", "p", "q", "dp", "dq", "qi"] {
        assert!(!has_member(&list.body, private), "{}", list.text);
        assert!(!has_member(&set, private), "{set}");
    }
}

#[tokio::test]
async fn signing_key_validation() {
    let h = Harness::new().await;
    let env = h.create_env("SANDBOX").await;
    let path = format!("/v1/environments/{env}/signingKeys");
    for (body, target) in [
        (json!({"algorithm": "HS256"}), "algorithm"),
        (json!({}), "algorithm"),
        (json!({"algorithm": "RS256", "x": 1}), "x"),
        (json!({"algorithm": 256}), "algorithm"),
    ] {
        let r = h.admin(Method::POST, &path, Some(body.clone())).await;
        assert_invalid(&r, target);
    }
    let list = h.admin(Method::GET, &path, None).await;
    assert_eq!(
        list.body["_embedded"]["signingKeys"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_not_found(
        &h.admin(
            Method::GET,
            &format!("/v1/environments/{}/signingKeys", uuid::Uuid::new_v4()),
            None,
        )
        .await,
    );
}

// --- CIBA requests ----------------------------------------------------------------------------

#[tokio::test]
async fn ciba_request_view() {
    let h = Harness::new().await;
    let (client, user) = h.sandbox().await;
    let env = client.env_id.clone();
    let r = h
        .ciba(
            &client,
            &[
                ("scope", "openid profile"),
                ("login_hint", "alice"),
                ("binding_message", "Pump 4: 40 EUR"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let id = r.body["auth_req_id"].as_str().unwrap().to_owned();

    let one = h
        .admin(Method::GET, &format!("{}/{id}", reqs_path(&env)), None)
        .await;
    assert_eq!(one.status, StatusCode::OK, "{}", one.text);
    let b = &one.body;
    assert_eq!(b["id"], id.as_str());
    assert_eq!(b["status"], "PENDING");
    assert_eq!(b["application"], json!({"id": client.id, "name": "Pump 4"}));
    assert_eq!(b["user"], json!({"id": user, "username": "alice"}));
    assert_eq!(b["scope"], "openid profile");
    assert_eq!(b["bindingMessage"], "Pump 4: 40 EUR");
    assert_eq!(b["deliveryMode"], "POLL");
    assert_utc_timestamp(&b["createdAt"]);
    assert_utc_timestamp(&b["expiresAt"]);
    assert!(
        b["createdAt"]
            .as_str()
            .unwrap()
            .starts_with("2026-01-01T00:00:00")
    );
    assert!(
        b["expiresAt"]
            .as_str()
            .unwrap()
            .starts_with("2026-01-01T00:02:00")
    );
    assert!(
        b.get("decidedAt").is_some_and(Value::is_null),
        "{}",
        one.text
    );
    assert!(
        b.get("decision").is_some_and(Value::is_null),
        "{}",
        one.text
    );
    assert!(
        b.get("acrValues").is_some_and(Value::is_null),
        "{}",
        one.text
    );

    let list = h.admin(Method::GET, &reqs_path(&env), None).await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.text);
    assert_eq!(list.body["count"], 1);
    assert_eq!(list.body["size"], 1);
    assert_eq!(&list.body["_embedded"]["cibaRequests"][0], b);
}

#[tokio::test]
async fn ciba_approve_then_conflicts() {
    let h = Harness::new().await;
    let (client, _) = h.sandbox().await;
    let env = client.env_id.clone();
    let id = h.start(&client, "openid").await;
    h.clock.advance_secs(5);
    let r = h.decide(&env, &id, "approve").await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    let g = h
        .admin(Method::GET, &format!("{}/{id}", reqs_path(&env)), None)
        .await;
    assert_eq!(g.body["status"], "APPROVED", "{}", g.text);
    assert_eq!(g.body["decision"]["outcome"], "APPROVE");
    assert_eq!(g.body["decision"]["channel"], "SANDBOX");
    assert_eq!(g.body["decision"]["amr"], json!(["sim"]));
    assert!(g.body["decision"]["deviceId"].is_null());
    assert_utc_timestamp(&g.body["decidedAt"]);
    assert!(
        g.body["decidedAt"]
            .as_str()
            .unwrap()
            .starts_with("2026-01-01T00:00:05")
    );

    for what in ["approve", "deny"] {
        let r = h.decide(&env, &id, what).await;
        assert_code(&r, StatusCode::CONFLICT, "REQUEST_FAILED");
    }
    let c = h
        .admin(Method::DELETE, &format!("{}/{id}", reqs_path(&env)), None)
        .await;
    assert_code(&c, StatusCode::CONFLICT, "REQUEST_FAILED");
    let g = h
        .admin(Method::GET, &format!("{}/{id}", reqs_path(&env)), None)
        .await;
    assert_eq!(g.body["status"], "APPROVED");
    assert_eq!(g.body["decision"]["outcome"], "APPROVE");

    // The client can redeem it.
    let t = h.poll(&client, &id).await;
    assert_eq!(t.status, StatusCode::OK, "{}", t.text);
}

#[tokio::test]
async fn ciba_deny() {
    let h = Harness::new().await;
    let (client, _) = h.sandbox().await;
    let env = client.env_id.clone();
    let id = h.start(&client, "openid").await;
    let r = h.decide(&env, &id, "deny").await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    let g = h
        .admin(Method::GET, &format!("{}/{id}", reqs_path(&env)), None)
        .await;
    assert_eq!(g.body["status"], "DENIED", "{}", g.text);
    assert_eq!(g.body["decision"]["outcome"], "DENY");
    assert_eq!(g.body["decision"]["channel"], "SANDBOX");
    assert_eq!(g.body["decision"]["amr"], json!(["sim"]));
    assert_code(
        &h.decide(&env, &id, "approve").await,
        StatusCode::CONFLICT,
        "REQUEST_FAILED",
    );
}

#[tokio::test]
async fn ciba_cancel() {
    let h = Harness::new().await;
    let (client, _) = h.sandbox().await;
    let env = client.env_id.clone();
    let id = h.start(&client, "openid").await;
    let path = format!("{}/{id}", reqs_path(&env));
    let d = h.admin(Method::DELETE, &path, None).await;
    assert_eq!(d.status, StatusCode::NO_CONTENT, "{}", d.text);
    let g = h.admin(Method::GET, &path, None).await;
    assert_eq!(g.body["status"], "CANCELLED", "{}", g.text);
    assert_eq!(g.body["decision"]["outcome"], "CANCEL");
    assert_eq!(g.body["decision"]["channel"], "ADMIN");
    assert_code(
        &h.admin(Method::DELETE, &path, None).await,
        StatusCode::CONFLICT,
        "REQUEST_FAILED",
    );
    assert_code(
        &h.decide(&env, &id, "approve").await,
        StatusCode::CONFLICT,
        "REQUEST_FAILED",
    );
    let g = h.admin(Method::GET, &path, None).await;
    assert_eq!(g.body["status"], "CANCELLED");
}

#[tokio::test]
async fn ciba_simulation_forbidden_in_production() {
    let h = Harness::new().await;
    let env = h.create_env("PRODUCTION").await;
    let client = h.create_app(&env, json!({})).await;
    h.create_user(&env, json!({"username": "alice"})).await;
    let id = h.start(&client, "openid").await;
    for what in ["approve", "deny"] {
        let r = h.decide(&env, &id, what).await;
        assert_code(&r, StatusCode::FORBIDDEN, "ACCESS_FAILED");
    }
    let g = h
        .admin(Method::GET, &format!("{}/{id}", reqs_path(&env)), None)
        .await;
    assert_eq!(g.body["status"], "PENDING", "{}", g.text);
    assert!(g.body["decision"].is_null());
    // Cancelling is an admin action, allowed everywhere.
    let d = h
        .admin(Method::DELETE, &format!("{}/{id}", reqs_path(&env)), None)
        .await;
    assert_eq!(d.status, StatusCode::NO_CONTENT, "{}", d.text);
}

#[tokio::test]
async fn ciba_unknown_request_is_404() {
    let h = Harness::new().await;
    let (client, _) = h.sandbox().await;
    let env = client.env_id.clone();
    let path = format!("{}/no-such-request", reqs_path(&env));
    assert_not_found(&h.admin(Method::GET, &path, None).await);
    assert_not_found(&h.admin(Method::DELETE, &path, None).await);
    assert_not_found(&h.decide(&env, "no-such-request", "approve").await);
    assert_not_found(&h.decide(&env, "no-such-request", "deny").await);
}

#[tokio::test]
async fn ciba_request_expires() {
    let h = Harness::new().await;
    let (client, _) = h.sandbox().await;
    let env = client.env_id.clone();
    let id = h.start(&client, "openid").await;
    h.clock.advance_secs(121);
    let path = format!("{}/{id}", reqs_path(&env));
    let g = h.admin(Method::GET, &path, None).await;
    assert_eq!(g.body["status"], "EXPIRED", "{}", g.text);
    assert!(g.body["decision"].is_null());
    assert_code(
        &h.decide(&env, &id, "approve").await,
        StatusCode::CONFLICT,
        "REQUEST_FAILED",
    );
    assert_code(
        &h.admin(Method::DELETE, &path, None).await,
        StatusCode::CONFLICT,
        "REQUEST_FAILED",
    );
    let g = h.admin(Method::GET, &path, None).await;
    assert_eq!(g.body["status"], "EXPIRED", "{}", g.text);
    assert!(g.body["decision"].is_null(), "{}", g.text);
}

#[tokio::test]
async fn ciba_request_filters() {
    let h = Harness::new().await;
    let (app1, alice) = h.sandbox().await;
    let env = app1.env_id.clone();
    let app2 = h.create_app(&env, json!({"name": "Till 2"})).await;
    let bob = h.create_user(&env, json!({"username": "bob"})).await;
    let start = |client: &Client, who: &'static str| {
        let client = client.clone();
        let h = &h;
        async move {
            let r = h
                .ciba(&client, &[("scope", "openid"), ("login_hint", who)])
                .await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text);
            r.body["auth_req_id"].as_str().unwrap().to_owned()
        }
    };
    let r1 = start(&app1, "alice").await;
    let r2 = start(&app2, "bob").await;
    let r3 = start(&app1, "bob").await;
    assert_eq!(
        h.decide(&env, &r3, "approve").await.status,
        StatusCode::NO_CONTENT
    );

    let listed = |q: String| {
        let h = &h;
        let env = env.clone();
        async move {
            let r = h
                .admin(Method::GET, &format!("{}?{q}", reqs_path(&env)), None)
                .await;
            assert_eq!(r.status, StatusCode::OK, "{q}: {}", r.text);
            assert_eq!(
                r.body["count"].as_u64(),
                Some(ids(&r.body, "cibaRequests").len() as u64),
                "{}",
                r.text
            );
            sorted(ids(&r.body, "cibaRequests"))
        }
    };
    let all = sorted(vec![r1.clone(), r2.clone(), r3.clone()]);
    assert_eq!(listed(String::new()).await, all);
    assert_eq!(
        listed("status=PENDING".into()).await,
        sorted(vec![r1.clone(), r2.clone()])
    );
    assert_eq!(listed("status=APPROVED".into()).await, vec![r3.clone()]);
    assert_eq!(
        listed(format!("userId={bob}")).await,
        sorted(vec![r2.clone(), r3.clone()])
    );
    assert_eq!(listed(format!("userId={alice}")).await, vec![r1.clone()]);
    assert_eq!(
        listed(format!("applicationId={}", app1.id)).await,
        sorted(vec![r1.clone(), r3.clone()])
    );
    assert_eq!(
        listed(format!(
            "applicationId={}&userId={bob}&status=PENDING",
            app2.id
        ))
        .await,
        vec![r2.clone()]
    );
    assert_eq!(listed("status=EXPIRED".into()).await, Vec::<String>::new());
    let r = h
        .admin(
            Method::GET,
            &format!("{}?status=BOGUS", reqs_path(&env)),
            None,
        )
        .await;
    assert_invalid(&r, "status");
    let r = h
        .admin(
            Method::GET,
            &format!("{}?colour=red", reqs_path(&env)),
            None,
        )
        .await;
    assert_code(&r, StatusCode::BAD_REQUEST, "INVALID_DATA");

    // Paging keeps the filter.
    let (seen, count) = collect_pages(
        &h,
        &format!("{}?status=PENDING&limit=1", reqs_path(&env)),
        "cibaRequests",
        1,
    )
    .await;
    assert_eq!(count, 2);
    assert_eq!(sorted(seen), sorted(vec![r1.clone(), r2.clone()]));

    h.clock.advance_secs(121);
    assert_eq!(listed("status=EXPIRED".into()).await, all);
    assert_eq!(listed("status=PENDING".into()).await, Vec::<String>::new());
    // The approved request keeps its decision after expiring.
    let g = h
        .admin(Method::GET, &format!("{}/{r3}", reqs_path(&env)), None)
        .await;
    assert_eq!(g.body["status"], "EXPIRED");
    assert_eq!(g.body["decision"]["outcome"], "APPROVE");
}

#[tokio::test]
async fn ciba_auto_decision() {
    let h = Harness::new().await;
    let (client, _) = h.sandbox().await;
    let env = client.env_id.clone();
    h.create_user(
        &env,
        json!({"username": "robot", "autoDecision": "APPROVE", "autoDecisionDelayMs": 0}),
    )
    .await;
    let r = h
        .ciba(&client, &[("scope", "openid"), ("login_hint", "robot")])
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let id = r.body["auth_req_id"].as_str().unwrap().to_owned();
    let path = format!("{}/{id}", reqs_path(&env));
    h.run_due_work().await;
    let g = h.admin(Method::GET, &path, None).await;
    assert_eq!(g.status, StatusCode::OK, "{}", g.text);
    let last = g.body;
    assert_eq!(last["status"], "APPROVED", "{last}");
    assert_eq!(last["decision"]["outcome"], "APPROVE");
    assert_eq!(last["decision"]["channel"], "AUTO");
    assert_eq!(last["decision"]["amr"], json!(["sim"]));
    assert_eq!(last["user"]["username"], "robot");
}

#[tokio::test]
async fn json_content_type_with_charset_is_accepted() {
    let h = Harness::new().await;
    let r = raw(
        &h,
        Method::POST,
        "/v1/environments",
        Some("application/json; charset=utf-8"),
        r#"{"name":"Charset","type":"SANDBOX","description":"d"}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["name"], "Charset");
    let long = h
        .admin(
            Method::POST,
            "/v1/environments",
            Some(json!({"name": "x", "type": "SANDBOX", "description": "d".repeat(1025)})),
        )
        .await;
    assert_invalid(&long, "description");
}

#[tokio::test]
async fn application_jwks_and_jwks_url_are_exclusive() {
    let h = Harness::new().await;
    let env = h.create_env("SANDBOX").await;
    let set = public_jwks(&h, &env).await;
    let r = h
        .admin(
            Method::POST,
            &apps_path(&env),
            Some(json!({"name": "x", "jwks": set, "jwksUrl": "https://rp.example/jwks"})),
        )
        .await;
    assert_invalid(&r, "jwks");
    let client = h
        .create_app(&env, json!({"jwksUrl": "https://rp.example/jwks"}))
        .await;
    let path = format!("{}/{}", apps_path(&env), client.id);
    let r = h
        .admin(Method::PATCH, &path, Some(json!({"jwks": set})))
        .await;
    assert_invalid(&r, "jwks");
    let r = h
        .admin(
            Method::PATCH,
            &path,
            Some(json!({"jwks": set, "jwksUrl": null})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["jwks"], set);
    assert!(r.body["jwksUrl"].is_null());
}

#[tokio::test]
async fn users_list_paging_keeps_filter() {
    let h = Harness::new().await;
    let env = h.create_env("SANDBOX").await;
    let mut created = Vec::new();
    for name in ["ann", "ben", "cat"] {
        created.push(h.create_user(&env, json!({"username": name})).await);
    }
    let (seen, count) =
        collect_pages(&h, &format!("{}?limit=1", users_path(&env)), "users", 1).await;
    assert_eq!(count, 3);
    assert_eq!(sorted(seen), sorted(created.clone()));
    let q = pct(r#"username eq "ben""#);
    let r = h
        .admin(
            Method::GET,
            &format!("{}?filter={q}&limit=1", users_path(&env)),
            None,
        )
        .await;
    assert_eq!(ids(&r.body, "users"), vec![created[1].clone()]);
    assert!(r.body["_links"]["next"].is_null(), "{}", r.text);
    let href = r.body["_links"]["self"]["href"].as_str().unwrap();
    assert!(href.contains("filter="), "{href}");
}

#[tokio::test]
async fn auto_decision_stops_when_environment_becomes_production() {
    let h = Harness::new().await;
    let (client, _) = h.sandbox().await;
    let env = client.env_id.clone();
    h.create_user(
        &env,
        json!({"username": "robot", "autoDecision": "APPROVE", "autoDecisionDelayMs": 0}),
    )
    .await;
    let r = h
        .admin(
            Method::PATCH,
            &format!("/v1/environments/{env}"),
            Some(json!({"type": "PRODUCTION"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = h
        .ciba(&client, &[("scope", "openid"), ("login_hint", "robot")])
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let id = r.body["auth_req_id"].as_str().unwrap().to_owned();
    h.run_due_work().await;
    let g = h
        .admin(Method::GET, &format!("{}/{id}", reqs_path(&env)), None)
        .await;
    assert_eq!(g.body["status"], "PENDING", "{}", g.text);
    assert!(g.body["decision"].is_null(), "{}", g.text);
}

#[tokio::test]
async fn secrets_and_private_keys_are_sealed_at_rest() {
    let h = Harness::new().await;
    let env = h.create_env("SANDBOX").await;
    let client = h.create_app(&env, json!({})).await;
    // What the store holds for the client secret is not the secret.
    let sealed = h
        .store
        .get_application_secret(&EnvironmentId::from(&env), &client.id)
        .await
        .unwrap();
    assert!(sealed.len() > client.secret.len());
    assert!(
        !sealed
            .windows(client.secret.len())
            .any(|w| w == client.secret.as_bytes()),
        "the client secret is stored in clear"
    );
    // And what it holds for a signing key is not a usable private key.
    let keys = h
        .store
        .list_signing_keys(&EnvironmentId::from(&env))
        .await
        .unwrap();
    assert!(!keys.is_empty());
    for k in keys {
        assert!(
            assent_crypto::JwsSigner::from_pkcs8(
                assent_crypto::SigningAlg::RS256,
                &k.id,
                &k.private_key_sealed
            )
            .is_err(),
            "a private key is stored in clear"
        );
    }
}

#[tokio::test]
async fn automatic_decisions_are_rescheduled_after_a_restart() {
    let path = data_file("auto-decision-restart");
    let clock = assent_server::ManualClock::new(START);
    let store = std::sync::Arc::new(assent_store::SqliteStore::open(&path).await.unwrap());
    let h = Harness::on_store(store.clone(), clock.clone(), |_| {}, |_| {}).await;
    let env = h.create_env("SANDBOX").await;
    let client = h.create_app(&env, json!({})).await;
    h.create_user(
        &env,
        json!({"username": "robot", "autoDecision": "DENY", "autoDecisionDelayMs": 2000}),
    )
    .await;
    let r = h
        .ciba(&client, &[("scope", "openid"), ("login_hint", "robot")])
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let id = r.body["auth_req_id"].as_str().unwrap().to_owned();
    // The process stops before the decision is due.
    assert!(h.state.shut_down(std::time::Duration::from_secs(30)).await);
    drop(h);
    store.close().await;

    // The next process on the same database, started after the due time, takes it.
    clock.advance_secs(3);
    let store = std::sync::Arc::new(assent_store::SqliteStore::open(&path).await.unwrap());
    let h = Harness::on_store(store.clone(), clock, |_| {}, |_| {}).await;
    let path = format!("/v1/environments/{env}/cibaRequests/{id}");
    let r = h.admin(Method::GET, &path, None).await;
    assert_eq!(r.body["status"], "DENIED", "{}", r.text);
    assert_eq!(r.body["decision"]["channel"], "AUTO");
}

#[tokio::test]
async fn a_pending_automatic_decision_is_dropped_when_the_environment_leaves_sandbox() {
    let h = Harness::new().await;
    let env = h.create_env("SANDBOX").await;
    let client = h.create_app(&env, json!({})).await;
    h.create_user(
        &env,
        json!({"username": "slowbot", "autoDecision": "APPROVE", "autoDecisionDelayMs": 300}),
    )
    .await;
    let r = h
        .ciba(&client, &[("scope", "openid"), ("login_hint", "slowbot")])
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let id = r.body["auth_req_id"].as_str().unwrap().to_owned();
    let r = h
        .admin(
            Method::PATCH,
            &format!("/v1/environments/{env}"),
            Some(json!({"type": "PRODUCTION"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    h.clock.advance_millis(300);
    h.run_due_work().await;
    let r = h
        .admin(
            Method::GET,
            &format!("/v1/environments/{env}/cibaRequests/{id}"),
            None,
        )
        .await;
    assert_eq!(r.body["status"], "PENDING", "{}", r.text);
    // Dropped, not postponed: nothing is left to run.
    assert_eq!(h.store.next_work_due().await.unwrap(), None);
}

/// §9 "Identifiers": usernames and emails under RFC 8265 UsernameCaseMapped. `café` typed in
/// NFC and in NFD is one account (the second is a 409, and the stored form is NFC); bidi
/// overrides, zero-width characters and the Kelvin sign are refused with 400 naming the field;
/// ordinary names in any script are welcome.
#[tokio::test]
async fn usernames_and_emails_follow_one_identifier_profile() {
    let h = Harness::new().await;
    let env = h.create_env("SANDBOX").await;
    let path = format!("/v1/environments/{env}/users");
    let create = |body: Value| {
        let h = &h;
        let path = path.clone();
        async move { h.admin(Method::POST, &path, Some(body)).await }
    };
    let r = create(json!({"username": "cafe\u{301}", "email": "Cafe\u{301}@example.com"})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["username"], "caf\u{e9}");
    assert_eq!(r.body["email"], "Caf\u{e9}@example.com");
    let r = create(json!({"username": "CAF\u{c9}"})).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    assert_eq!(r.body["code"], "UNIQUENESS_VIOLATION");
    let r = create(json!({"username": "other", "email": "caf\u{e9}@EXAMPLE.com"})).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);

    for (field, body) in [
        ("username", json!({"username": "admin\u{202e}nimda"})),
        ("username", json!({"username": "ad\u{200b}min"})),
        ("username", json!({"username": "\u{212a}ate"})),
        (
            "email",
            json!({"username": "zed", "email": "z\u{200b}@example.com"}),
        ),
        (
            "email",
            json!({"username": "zed", "email": "z\u{202e}@example.com"}),
        ),
    ] {
        let r = create(body.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.text);
        assert_eq!(r.body["details"][0]["target"], field, "{body}");
    }
    for name in [
        "\u{3b6}\u{3c9}\u{3ae}",
        "\u{5d3}\u{5d5}\u{5d3}",
        "o'brien-smith_2",
    ] {
        let r = create(json!({"username": name})).await;
        assert_eq!(r.status, StatusCode::CREATED, "{name}: {}", r.text);
    }
    // The filter goes through the same profile.
    let r = h
        .admin(
            Method::GET,
            &format!("{path}?filter=username%20eq%20%22CAFE%CC%81%22"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["count"], 1, "{}", r.text);
    let r = h
        .admin(
            Method::GET,
            &format!("{path}?filter=username%20eq%20%22%E2%84%AAate%22"),
            None,
        )
        .await;
    assert_eq!(r.body["count"], 0, "{}", r.text);
}

// --- issue 6: abuse limits and the refresh reuse grace ---------------------------------------

#[tokio::test]
async fn environment_abuse_limits_defaults_by_type() {
    let h = Harness::new().await;
    let prod = h.create_env("PRODUCTION").await;
    let sandbox = h.create_env("SANDBOX").await;
    let get = |id: String| {
        let h = &h;
        async move {
            h.admin(Method::GET, &format!("/v1/environments/{id}"), None)
                .await
                .body
        }
    };
    assert_eq!(
        get(prod.clone()).await["abuseLimits"],
        json!({"maxPendingRequestsPerUser": 5, "authorizationRequestsPerMinute": 600})
    );
    assert_eq!(
        get(sandbox.clone()).await["abuseLimits"],
        json!({"maxPendingRequestsPerUser": null, "authorizationRequestsPerMinute": null})
    );
    // Rendered in lists too.
    let r = h.admin(Method::GET, "/v1/environments", None).await;
    for e in r.body["_embedded"]["environments"].as_array().unwrap() {
        assert!(e["abuseLimits"].is_object(), "{e}");
    }
    // A change of type without abuseLimits applies the new type's defaults…
    let path = format!("/v1/environments/{sandbox}");
    let r = h
        .admin(Method::PATCH, &path, Some(json!({"type": "PRODUCTION"})))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        r.body["abuseLimits"],
        json!({"maxPendingRequestsPerUser": 5, "authorizationRequestsPerMinute": 600})
    );
    // …a PATCH of other members keeps them…
    let r = h
        .admin(
            Method::PATCH,
            &path,
            Some(json!({"abuseLimits": {"maxPendingRequestsPerUser": 2}})),
        )
        .await;
    assert_eq!(
        r.body["abuseLimits"],
        json!({"maxPendingRequestsPerUser": 2, "authorizationRequestsPerMinute": 600})
    );
    let r = h
        .admin(
            Method::PATCH,
            &path,
            Some(json!({"name": "renamed", "type": "PRODUCTION"})),
        )
        .await;
    assert_eq!(r.body["abuseLimits"]["maxPendingRequestsPerUser"], 2);
    // …and a change of type with abuseLimits starts from the new defaults.
    let r = h
        .admin(
            Method::PATCH,
            &path,
            Some(json!({"type": "SANDBOX",
                        "abuseLimits": {"authorizationRequestsPerMinute": 1000}})),
        )
        .await;
    assert_eq!(
        r.body["abuseLimits"],
        json!({"maxPendingRequestsPerUser": null, "authorizationRequestsPerMinute": 1000})
    );
    // null resets to the type's defaults.
    let r = h
        .admin(Method::PATCH, &path, Some(json!({"abuseLimits": null})))
        .await;
    assert_eq!(
        r.body["abuseLimits"],
        json!({"maxPendingRequestsPerUser": null, "authorizationRequestsPerMinute": null})
    );
    assert_eq!(get(sandbox).await["abuseLimits"], r.body["abuseLimits"]);
    // Set at creation.
    let r = h
        .admin(
            Method::POST,
            "/v1/environments",
            Some(json!({"name": "p", "type": "PRODUCTION",
                        "abuseLimits": {"maxPendingRequestsPerUser": null}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(
        r.body["abuseLimits"],
        json!({"maxPendingRequestsPerUser": null, "authorizationRequestsPerMinute": 600})
    );
}

#[tokio::test]
async fn environment_abuse_limits_validation() {
    let h = Harness::new().await;
    let env = h.create_env("PRODUCTION").await;
    let cases = [
        (
            json!({"maxPendingRequestsPerUser": 0}),
            "abuseLimits.maxPendingRequestsPerUser",
        ),
        (
            json!({"maxPendingRequestsPerUser": -1}),
            "abuseLimits.maxPendingRequestsPerUser",
        ),
        (
            json!({"maxPendingRequestsPerUser": "5"}),
            "abuseLimits.maxPendingRequestsPerUser",
        ),
        (
            json!({"maxPendingRequestsPerUser": 1.5}),
            "abuseLimits.maxPendingRequestsPerUser",
        ),
        (
            json!({"authorizationRequestsPerMinute": 0}),
            "abuseLimits.authorizationRequestsPerMinute",
        ),
        (
            json!({"authorizationRequestsPerMinute": 10_000_000_000_i64}),
            "abuseLimits.authorizationRequestsPerMinute",
        ),
        (json!({"burst": 3}), "abuseLimits.burst"),
        (json!(5), "abuseLimits"),
        (json!([1]), "abuseLimits"),
    ];
    for (limits, target) in cases {
        let r = h
            .admin(
                Method::PATCH,
                &format!("/v1/environments/{env}"),
                Some(json!({"abuseLimits": limits})),
            )
            .await;
        assert_invalid(&r, target);
        let r = h
            .admin(
                Method::POST,
                "/v1/environments",
                Some(json!({"name": "x", "type": "SANDBOX", "abuseLimits": limits})),
            )
            .await;
        assert_invalid(&r, target);
    }
    // Nothing changed.
    let r = h
        .admin(Method::GET, &format!("/v1/environments/{env}"), None)
        .await;
    assert_eq!(
        r.body["abuseLimits"],
        json!({"maxPendingRequestsPerUser": 5, "authorizationRequestsPerMinute": 600})
    );
}

#[tokio::test]
async fn application_refresh_token_reuse_grace() {
    let h = Harness::new().await;
    let env = h.create_env("SANDBOX").await;
    let client = h.create_app(&env, json!({})).await;
    let path = format!("{}/{}", apps_path(&env), client.id);
    let r = h.admin(Method::GET, &path, None).await;
    assert_eq!(r.body["refreshTokenReuseGraceSeconds"], 0);
    let r = h
        .admin(
            Method::PATCH,
            &path,
            Some(json!({"refreshTokenReuseGraceSeconds": 60})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["refreshTokenReuseGraceSeconds"], 60);
    for bad in [json!(61), json!(-1), json!("5"), json!(2.5)] {
        let r = h
            .admin(
                Method::PATCH,
                &path,
                Some(json!({"refreshTokenReuseGraceSeconds": bad})),
            )
            .await;
        assert_invalid(&r, "refreshTokenReuseGraceSeconds");
    }
    let r = h
        .admin(
            Method::POST,
            &apps_path(&env),
            Some(json!({"name": "x", "refreshTokenReuseGraceSeconds": 5})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["refreshTokenReuseGraceSeconds"], 5);
    let r = h.admin(Method::GET, &path, None).await;
    assert_eq!(r.body["refreshTokenReuseGraceSeconds"], 60);
}

/// Grants the token endpoint does not answer (it would say unsupported_grant_type) are refused
/// when an application is created or changed, naming grantTypes; CIBA and REFRESH_TOKEN stay.
#[tokio::test]
async fn unavailable_grant_types_are_refused() {
    let h = Harness::new().await;
    let env = h.create_env("SANDBOX").await;
    let path = apps_path(&env);
    let ok = h
        .admin(
            Method::POST,
            &path,
            Some(json!({"name": "A", "grantTypes": ["CIBA", "REFRESH_TOKEN"]})),
        )
        .await;
    assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.text);
    let app_path = format!("{path}/{}", ok.body["id"].as_str().unwrap());
    for grant in [
        "CLIENT_CREDENTIALS",
        "client_credentials",
        "AUTHORIZATION_CODE",
        "IMPLICIT",
        "DEVICE_CODE",
    ] {
        let r = h
            .admin(
                Method::POST,
                &path,
                Some(json!({"name": "B", "grantTypes": ["CIBA", grant]})),
            )
            .await;
        assert_invalid(&r, "grantTypes");
        assert!(r.text.contains("not available"), "{grant}: {}", r.text);
        let r = h
            .admin(
                Method::PATCH,
                &app_path,
                Some(json!({"grantTypes": [grant]})),
            )
            .await;
        assert_invalid(&r, "grantTypes");
    }
    let g = h.admin(Method::GET, &app_path, None).await;
    assert_eq!(g.body["grantTypes"], json!(["CIBA", "REFRESH_TOKEN"]));
}

// --- error bodies on the edges (issue 6, item 10) ----------------------------------------------

#[tokio::test]
async fn oversized_body_is_413_in_management_style() {
    let h = Harness::new().await;
    let ok = raw(
        &h,
        Method::POST,
        "/v1/environments",
        Some("application/json"),
        r#"{"name":"small","type":"SANDBOX"}"#,
    )
    .await;
    assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.text);
    // Over axum's 2 MiB default body limit.
    let huge = format!(
        r#"{{"name":"big","type":"SANDBOX","description":"{}"}}"#,
        "a".repeat(3 << 20)
    );
    let r = raw(
        &h,
        Method::POST,
        "/v1/environments",
        Some("application/json"),
        &huge,
    )
    .await;
    assert_code(&r, StatusCode::PAYLOAD_TOO_LARGE, "INVALID_DATA");
    assert!(
        r.body["message"].as_str().unwrap().contains("too large"),
        "{}",
        r.text
    );
}

#[tokio::test]
async fn unknown_field_name_is_echoed_once_and_truncated() {
    let h = Harness::new().await;
    let r = h
        .admin(
            Method::POST,
            "/v1/environments",
            Some(json!({"name":"e","type":"SANDBOX","colour":"red"})),
        )
        .await;
    assert_invalid(&r, "colour");
    let long = "x".repeat(1 << 20);
    let r = h
        .admin(
            Method::POST,
            "/v1/environments",
            Some(json!({"name":"e","type":"SANDBOX", long.clone(): 1})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", &r.text[..200]);
    let target = r.body["details"][0]["target"].as_str().unwrap();
    assert_eq!(target, format!("{}…", "x".repeat(64)));
    assert_eq!(
        r.text.matches(&"x".repeat(64)).count(),
        1,
        "echoed more than once"
    );
    assert!(r.text.len() < 1024, "{} bytes", r.text.len());
    // An unknown, huge query parameter is echoed shortened too.
    let r = h
        .admin(
            Method::GET,
            &format!("/v1/environments?{}=1", "q".repeat(30_000)),
            None,
        )
        .await;
    assert_invalid(&r, "query");
    assert!(r.text.len() < 1024, "{} bytes", r.text.len());
}

#[tokio::test]
async fn query_with_invalid_utf8_is_refused() {
    let h = Harness::new().await;
    let env = h.create_env("SANDBOX").await;
    h.create_user(&env, json!({"username":"café"})).await;
    // Normal case: a percent-encoded UTF-8 filter finds the user.
    let r = h
        .admin(
            Method::GET,
            &format!(
                "/v1/environments/{env}/users?filter={}",
                pct("username eq \"café\"")
            ),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["count"], 1, "{}", r.text);
    // Bytes that are not UTF-8 were replaced by U+FFFD; now they are refused.
    for query in [
        "filter=username%20eq%20%22caf%E9%22",
        "cursor=%ff",
        "limit=%e2%82",
        "limit=%zz",
        "%ff=1",
    ] {
        let r = h
            .admin(
                Method::GET,
                &format!("/v1/environments/{env}/users?{query}"),
                None,
            )
            .await;
        assert_invalid(&r, "query");
    }
}

#[tokio::test]
async fn extractor_rejections_are_management_errors() {
    let h = Harness::new().await;
    // A path segment that is not UTF-8 is refused by axum's Path extractor: JSON, not text.
    let r = h.admin(Method::GET, "/v1/environments/%ff", None).await;
    assert_invalid(&r, "request");
    let r = h
        .admin(Method::GET, "/v1/environments/%ff/users", None)
        .await;
    assert_invalid(&r, "request");
    // Unknown path and wrong method keep their management errors.
    let r = h.admin(Method::GET, "/v1/nothing-here", None).await;
    assert_not_found(&r);
    let r = h.admin(Method::PUT, "/v1/environments", None).await;
    assert_code(&r, StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED");
}

// --- OpenAPI (issue 6, item 13) ------------------------------------------------------------------

#[tokio::test]
async fn openapi_document_is_served_without_the_admin_token() {
    let h = Harness::new().await;
    let r = h.get("/v1/openapi.json", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.body["openapi"].as_str().unwrap().starts_with("3.1"));
    assert!(r.body["paths"]["/v1/environments"]["post"].is_object());
    // Every other /v1 path still needs the token.
    let r = h.get("/v1/environments", None).await;
    assert_code(&r, StatusCode::UNAUTHORIZED, "INVALID_TOKEN");
}

#[tokio::test]
async fn every_documented_operation_is_routed() {
    let h = Harness::new().await;
    let env = h.create_env("SANDBOX").await;
    for (method, path) in assent_server::v1::openapi::OPERATIONS {
        let concrete = path
            .replace("{envId}", &env)
            .replace("{appId}", "00000000-0000-4000-8000-000000000000")
            .replace("{userId}", "00000000-0000-4000-8000-000000000000")
            .replace("{authReqId}", "no-such-request");
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let body = matches!(method, Method::POST | Method::PATCH).then(|| json!({}));
        let r = h.admin(method.clone(), &concrete, body).await;
        assert_ne!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        assert_ne!(
            r.body["message"], "The requested resource was not found.",
            "{method} {path} is documented but not routed"
        );
    }
}

/// The documented bounds are the enforced ones: for every bounded member of every body schema,
/// one past the bound is refused with that member as the target, and an integer at its bound
/// is not (so the schema is neither looser nor stricter than the handler).
#[tokio::test]
async fn documented_bounds_are_the_enforced_bounds() {
    let h = Harness::new().await;
    let env = h.create_env("SANDBOX").await;
    let doc = h.get("/v1/openapi.json", None).await.body;
    let apps = format!("/v1/environments/{env}/applications");
    let users = format!("/v1/environments/{env}/users");
    let cases = [
        (
            "EnvironmentCreate",
            "/v1/environments".to_owned(),
            json!({"name":"e","type":"SANDBOX"}),
            "",
        ),
        ("ApplicationCreate", apps.clone(), json!({"name":"a"}), ""),
        (
            "CibaSettingsInput",
            apps,
            json!({"name":"a","cibaSettings":{"maxRequestExpirySeconds":86_400}}),
            "cibaSettings.",
        ),
        ("UserCreate", users.clone(), json!({"username":"u"}), ""),
        (
            "UserNameInput",
            users,
            json!({"username":"u","name":{}}),
            "name.",
        ),
    ];
    let mut probed = 0;
    let mut n = 0;
    for (schema, path, base, prefix) in cases {
        let props = doc["components"]["schemas"][schema]["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("{schema}"));
        for (name, s) in props {
            let target = format!("{prefix}{name}");
            let mut probes: Vec<(Value, bool)> = Vec::new();
            if let Some(max) = s["maximum"].as_i64() {
                probes.push((json!(max + 1), false));
                probes.push((json!(max), true));
            }
            if let Some(min) = s["minimum"].as_i64() {
                probes.push((json!(min - 1), false));
                probes.push((json!(min), true));
            }
            if let Some(max) = s["maxLength"].as_u64() {
                probes.push((json!("a".repeat(max as usize + 1)), false));
            }
            if let Some(min) = s["minLength"].as_u64().filter(|m| *m > 0) {
                probes.push((json!("a".repeat(min as usize - 1)), false));
            }
            for (value, allowed) in probes {
                n += 1;
                let mut body = base.clone();
                if body.get("username").is_some() {
                    body["username"] = json!(format!("u{n}"));
                }
                let slot = if prefix.is_empty() {
                    &mut body
                } else {
                    &mut body[prefix.trim_end_matches('.')]
                };
                slot[name] = value.clone();
                let r = h.admin(Method::POST, &path, Some(body)).await;
                let refused_here =
                    r.status == StatusCode::BAD_REQUEST && r.body["details"][0]["target"] == target;
                assert_eq!(
                    !refused_here,
                    allowed,
                    "{schema}.{name} = {}: {}",
                    &value.to_string()[..value.to_string().len().min(40)],
                    r.text
                );
                probed += 1;
            }
        }
    }
    assert!(
        probed >= 40,
        "only {probed} probes: the schema lost its bounds"
    );
    // The paging bound of every list.
    let r = h
        .admin(Method::GET, "/v1/environments?limit=1001", None)
        .await;
    assert_invalid(&r, "limit");
    let r = h
        .admin(Method::GET, "/v1/environments?limit=1000", None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}
