//! Microbenchmarks of client authentication, one per `tokenEndpointAuthMethod`, through
//! [`assent_server::oauth::client_auth::authenticate`] over the directory cache on a temporary
//! SQLite store, as `assent serve` opens it: what `/token` and `/cibaAuthorization` do before
//! anything else. Each iteration includes the store reads (application, opened secret: from
//! the cache after the first) and, for the assertion methods, the single-use `jti` write
//! (through the group-commit writer); the assertions themselves are signed outside the timed part. PRIVATE_KEY_JWT
//! uses an RS256 client key registered inline (`jwks`). Run with
//! `cargo bench -p assent-server --bench client_auth`.
#![expect(
    clippy::expect_used,
    reason = "a bench whose setup fails must stop rather than measure something else"
)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use assent_core::{EnvironmentId, Timestamp};
use assent_crypto::{HmacAlg, JwsSigner, SecretBox, SigningAlg};
use assent_server::form::OAuthForm;
use assent_server::oauth::client_auth::{self, JWT_BEARER_ASSERTION};
use assent_server::{AppState, ManualClock, ServerConfig};
use assent_store::{CachedStore, SqliteStore, Store};
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, Request, header};
use base64::Engine;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};
use tokio::runtime::Runtime;
use tower::ServiceExt;

const PUBLIC_URL: &str = "https://auth.example.com";
const ADMIN_TOKEN: &str = "bench-admin-token";
const NOW: Timestamp = Timestamp(1_800_000_000_000);

struct Fixture {
    state: AppState,
    env: EnvironmentId,
    issuer: String,
}

/// A management API call through the router; returns the JSON answer.
async fn admin(router: &axum::Router, method: Method, path: &str, body: Option<Value>) -> Value {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {ADMIN_TOKEN}"))
        .header(header::CONTENT_TYPE, "application/json");
    let body = body.map_or_else(Body::empty, |b| Body::from(b.to_string()));
    let response = router
        .clone()
        .oneshot(req.body(body).expect("request"))
        .await
        .expect("router answers");
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("body");
    assert!(status.is_success(), "{path}: {status}");
    serde_json::from_slice(&bytes).expect("JSON answer")
}

/// An application with `method` (and `extra` fields); returns its id and client secret.
async fn create_app(fx: &Fixture, method: &str, extra: Value) -> (String, String) {
    let router = assent_server::router(fx.state.clone());
    let mut body = json!({
        "name": "bench",
        "grantTypes": ["CIBA"],
        "tokenEndpointAuthMethod": method,
    });
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    let path = format!("/v1/environments/{}/applications", fx.env);
    let app = admin(&router, Method::POST, &path, Some(body)).await;
    let id = app["id"].as_str().expect("application id").to_owned();
    let secret = admin(&router, Method::GET, &format!("{path}/{id}/secret"), None).await;
    let secret = secret["secret"].as_str().expect("secret").to_owned();
    (id, secret)
}

async fn fixture() -> Fixture {
    // As `assent serve` opens it (`assent_store::open`): the directory cache over SQLite.
    let sqlite = Arc::new(SqliteStore::open_temporary().await.expect("store"));
    let store: Arc<dyn Store> = Arc::new(CachedStore::new(sqlite).await.expect("cache"));
    let state = AppState::new(
        store,
        ServerConfig {
            public_url: PUBLIC_URL.into(),
            admin_token: ADMIN_TOKEN.into(),
            allow_private_notification_targets: false,
        },
        SecretBox::new(&[7u8; 32]),
        Arc::new(ManualClock::new(NOW)),
    );
    let router = assent_server::router(state.clone());
    let env = admin(
        &router,
        Method::POST,
        "/v1/environments",
        Some(json!({"name": "bench", "type": "SANDBOX"})),
    )
    .await;
    let env = EnvironmentId::from(env["id"].as_str().expect("environment id"));
    let issuer = format!("{PUBLIC_URL}/{env}/as");
    Fixture { state, env, issuer }
}

/// A fresh client assertion's claims (a new `jti` each time: assertions are single-use).
fn assertion_claims(client_id: &str, aud: &str) -> Value {
    let iat = NOW.secs();
    json!({
        "iss": client_id, "sub": client_id, "aud": aud,
        "iat": iat, "exp": iat + 120,
        "jti": assent_crypto::random_token(16),
    })
}

/// A form body of `pairs`, urlencoded as a client sends it, parsed as the endpoints parse it.
fn form_of(pairs: &[(&str, &str)]) -> OAuthForm {
    let enc = |s: &str| {
        percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    let body: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect();
    OAuthForm::parse(body.join("&").as_bytes()).expect("a well-formed form")
}

fn assertion_form(client_id: &str, assertion: &str) -> OAuthForm {
    form_of(&[
        ("grant_type", "urn:openid:params:grant-type:ciba"),
        ("auth_req_id", "a1b2c3d4-e5f6-4789-abcd-0123456789ab"),
        ("client_id", client_id),
        ("client_assertion_type", JWT_BEARER_ASSERTION),
        ("client_assertion", assertion),
    ])
}

fn bench_client_auth(c: &mut Criterion) {
    let rt = Runtime::new().expect("tokio runtime");
    let fx = rt.block_on(fixture());
    let endpoint = format!("{}/token", fx.issuer);
    let poll = [
        ("grant_type", "urn:openid:params:grant-type:ciba"),
        ("auth_req_id", "a1b2c3d4-e5f6-4789-abcd-0123456789ab"),
    ];
    let authenticate = |headers: &HeaderMap, form: &OAuthForm| {
        rt.block_on(client_auth::authenticate(
            &fx.state, &fx.env, headers, form, &endpoint, NOW,
        ))
        .expect("the client authenticates")
    };
    let mut group = c.benchmark_group("client_auth");

    let (id, secret) = rt.block_on(create_app(&fx, "CLIENT_SECRET_BASIC", json!({})));
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
    let mut headers = HeaderMap::new();
    headers.insert(
        header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Basic {basic}")).expect("header"),
    );
    let form = form_of(&poll);
    group.bench_function("CLIENT_SECRET_BASIC", |b| {
        b.iter(|| authenticate(black_box(&headers), black_box(&form)))
    });

    let (id, secret) = rt.block_on(create_app(&fx, "CLIENT_SECRET_POST", json!({})));
    let mut pairs = poll.to_vec();
    pairs.extend([
        ("client_id", id.as_str()),
        ("client_secret", secret.as_str()),
    ]);
    let form = form_of(&pairs);
    let no_headers = HeaderMap::new();
    group.bench_function("CLIENT_SECRET_POST", |b| {
        b.iter(|| authenticate(black_box(&no_headers), black_box(&form)))
    });

    let (id, secret) = rt.block_on(create_app(&fx, "CLIENT_SECRET_JWT", json!({})));
    group.bench_function("CLIENT_SECRET_JWT", |b| {
        b.iter_batched(
            || {
                let claims = assertion_claims(&id, &endpoint);
                let jwt = assent_crypto::sign_hmac_jws(HmacAlg::HS256, secret.as_bytes(), &claims)
                    .expect("HS256 assertion");
                assertion_form(&id, &jwt)
            },
            |form| authenticate(&no_headers, &form),
            BatchSize::SmallInput,
        )
    });

    let key = assent_crypto::generate_key(SigningAlg::RS256, "bench-client-key").expect("key");
    let signer = JwsSigner::from_pkcs8(SigningAlg::RS256, &key.kid, &key.pkcs8_der).expect("key");
    let (id, _) = rt.block_on(create_app(
        &fx,
        "PRIVATE_KEY_JWT",
        json!({"jwks": {"keys": [key.public_jwk]}}),
    ));
    group.bench_function("PRIVATE_KEY_JWT_RS256", |b| {
        b.iter_batched(
            || {
                let jwt = signer
                    .sign(Some("JWT"), &assertion_claims(&id, &endpoint))
                    .expect("RS256 assertion");
                assertion_form(&id, &jwt)
            },
            |form| authenticate(&no_headers, &form),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_client_auth
}
criterion_main!(benches);
