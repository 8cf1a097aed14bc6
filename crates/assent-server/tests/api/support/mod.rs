//! Shared test harness: the real router over a temporary SQLite store and a manual clock,
//! driven with `oneshot` (no socket).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use assent_core::{ApplicationId, EnvironmentId, Timestamp};
use assent_crypto::SecretBox;
use assent_server::work::WorkerHandle;
use assent_server::{AppState, ManualClock, ServerConfig};
use assent_store::{SqliteStore, Store};
use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use base64::Engine;
use serde_json::{Value, json};
use tower::ServiceExt;

pub const PUBLIC_URL: &str = "https://assent.test";
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";
pub const CIBA: &str = "urn:openid:params:grant-type:ciba";
/// 2026-01-01T00:00:00Z.
pub const START: Timestamp = Timestamp(1_767_225_600_000);

pub struct Harness {
    pub router: Router,
    pub state: AppState,
    pub clock: ManualClock,
    pub store: Arc<dyn Store>,
    /// The scheduled-work worker, started with the state as the server starts it.
    pub worker: WorkerHandle,
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Resp {
    /// The OAuth `error` member.
    pub fn error(&self) -> &str {
        self.body["error"].as_str().unwrap_or("")
    }
    pub fn description(&self) -> &str {
        self.body["error_description"].as_str().unwrap_or("")
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A client of an environment, with its secret.
#[derive(Clone, Debug)]
pub struct Client {
    pub env_id: EnvironmentId,
    pub id: ApplicationId,
    pub secret: String,
}

impl Client {
    pub fn basic(&self) -> String {
        basic(&self.id, &self.secret)
    }
}

pub fn basic(id: &str, secret: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
    )
}

pub fn form_encode(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                percent_encoding::utf8_percent_encode(k, percent_encoding::NON_ALPHANUMERIC),
                percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC)
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

impl Harness {
    pub async fn new() -> Harness {
        Self::with_config(|_| {}).await
    }

    pub async fn with_config(tweak: impl FnOnce(&mut ServerConfig)) -> Harness {
        Self::with_state(tweak, |_| {}).await
    }

    /// Like `with_config`, and lets the test adjust the state before the router is built.
    pub async fn with_state(
        tweak: impl FnOnce(&mut ServerConfig),
        adjust: impl FnOnce(&mut AppState),
    ) -> Harness {
        // Under the directory cache, as `assent serve` runs it.
        let sqlite: Arc<dyn Store> = Arc::new(SqliteStore::open_temporary().await.unwrap());
        let store: Arc<dyn Store> = Arc::new(assent_store::CachedStore::new(sqlite).await.unwrap());
        Self::on_store(store, ManualClock::new(START), tweak, adjust).await
    }

    /// A harness over `store` (for example a database file a previous harness used: a
    /// restart) and `clock`.
    pub async fn on_store(
        store: Arc<dyn Store>,
        clock: ManualClock,
        tweak: impl FnOnce(&mut ServerConfig),
        adjust: impl FnOnce(&mut AppState),
    ) -> Harness {
        let mut config = ServerConfig {
            public_url: PUBLIC_URL.into(),
            admin_token: ADMIN_TOKEN.into(),
            allow_private_notification_targets: true,
        };
        tweak(&mut config);
        let mut state = AppState::new(
            store.clone(),
            config,
            SecretBox::new(&[7u8; 32]),
            Arc::new(clock.clone()),
        );
        adjust(&mut state);
        let worker = assent_server::work::start(&state);
        // Its first pass is over before the test begins: from here on it reads the clock only
        // when woken (new work, the clock moved past its next due time, `run_due_work`).
        assert!(worker.run_due_work().await, "the worker runs");
        Harness {
            router: assent_server::router(state.clone()),
            state,
            clock,
            store,
            worker,
        }
    }

    /// Runs the scheduled work due at the clock's time now (automatic decisions) and returns
    /// once it has run.
    pub async fn run_due_work(&self) {
        assert!(self.worker.run_due_work().await, "the worker has stopped");
    }

    pub async fn send(&self, req: Request<Body>) -> Resp {
        let response = self.router.clone().oneshot(req).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), 16 << 20)
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Resp {
            status,
            headers,
            body,
            text,
        }
    }

    /// A management API call with the admin token.
    pub async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> Resp {
        self.admin_with_token(method, path, body, Some(ADMIN_TOKEN))
            .await
    }

    pub async fn admin_with_token(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        token: Option<&str>,
    ) -> Resp {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let body = match body {
            Some(b) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Body::from(b.to_string())
            }
            None => Body::empty(),
        };
        self.send(req.body(body).unwrap()).await
    }

    /// A form POST to `path` with optional Authorization header.
    pub async fn post_form(&self, path: &str, auth: Option<&str>, pairs: &[(&str, &str)]) -> Resp {
        self.post_raw(path, auth, form_encode(pairs).into_bytes())
            .await
    }

    pub async fn post_raw(&self, path: &str, auth: Option<&str>, body: Vec<u8>) -> Resp {
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(a) = auth {
            req = req.header(header::AUTHORIZATION, a);
        }
        self.send(req.body(Body::from(body)).unwrap()).await
    }

    pub async fn get(&self, path: &str, auth: Option<&str>) -> Resp {
        let mut req = Request::builder().method(Method::GET).uri(path);
        if let Some(a) = auth {
            req = req.header(header::AUTHORIZATION, a);
        }
        self.send(req.body(Body::empty()).unwrap()).await
    }

    pub fn issuer(&self, env_id: &str) -> String {
        format!("{PUBLIC_URL}/{env_id}/as")
    }

    // --- provisioning -------------------------------------------------------------------

    pub async fn create_env(&self, env_type: &str) -> String {
        let r = self
            .admin(
                Method::POST,
                "/v1/environments",
                Some(json!({"name": "Test env", "type": env_type})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        r.body["id"].as_str().unwrap().to_owned()
    }

    /// Creates an application (defaults: CIBA + REFRESH_TOKEN, CLIENT_SECRET_BASIC) with the
    /// members of `extra` merged in, and fetches its secret.
    pub async fn create_app(&self, env_id: &str, extra: Value) -> Client {
        let mut body = json!({
            "name": "Pump 4",
            "grantTypes": ["CIBA", "REFRESH_TOKEN"],
            "tokenEndpointAuthMethod": "CLIENT_SECRET_BASIC"
        });
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                b.insert(k.clone(), v.clone());
            }
        }
        let r = self
            .admin(
                Method::POST,
                &format!("/v1/environments/{env_id}/applications"),
                Some(body),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        let id = r.body["id"].as_str().unwrap().to_owned();
        let s = self
            .admin(
                Method::GET,
                &format!("/v1/environments/{env_id}/applications/{id}/secret"),
                None,
            )
            .await;
        assert_eq!(s.status, StatusCode::OK);
        Client {
            env_id: env_id.into(),
            id: id.into(),
            secret: s.body["secret"].as_str().unwrap().to_owned(),
        }
    }

    pub async fn create_user(&self, env_id: &str, body: Value) -> String {
        let r = self
            .admin(
                Method::POST,
                &format!("/v1/environments/{env_id}/users"),
                Some(body),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        r.body["id"].as_str().unwrap().to_owned()
    }

    /// A SANDBOX environment with a Basic-auth CIBA app and user "alice".
    pub async fn sandbox(&self) -> (Client, String) {
        let env = self.create_env("SANDBOX").await;
        let client = self.create_app(&env, json!({})).await;
        let user = self
            .create_user(
                &env,
                json!({"username": "alice", "email": "Alice@Example.com",
                       "name": {"given": "Alice", "family": "Liddell"}, "phoneNumber": "+1 555 010 2030"}),
            )
            .await;
        (client, user)
    }

    /// POST /cibaAuthorization with Basic auth.
    pub async fn ciba(&self, client: &Client, pairs: &[(&str, &str)]) -> Resp {
        self.post_form(
            &format!("/{}/as/cibaAuthorization", client.env_id),
            Some(&client.basic()),
            pairs,
        )
        .await
    }

    /// Starts a request for alice and returns its auth_req_id.
    pub async fn start(&self, client: &Client, scope: &str) -> String {
        let r = self
            .ciba(client, &[("scope", scope), ("login_hint", "alice")])
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        r.body["auth_req_id"].as_str().unwrap().to_owned()
    }

    /// A CIBA-grant poll with Basic auth.
    pub async fn poll(&self, client: &Client, auth_req_id: &str) -> Resp {
        self.post_form(
            &format!("/{}/as/token", client.env_id),
            Some(&client.basic()),
            &[("grant_type", CIBA), ("auth_req_id", auth_req_id)],
        )
        .await
    }

    pub async fn decide(&self, env_id: &str, auth_req_id: &str, what: &str) -> Resp {
        self.admin(
            Method::POST,
            &format!("/v1/environments/{env_id}/cibaRequests/{auth_req_id}/{what}"),
            None,
        )
        .await
    }
}

/// A fresh database file for a test that restarts the server on the same data.
pub fn data_file(name: &str) -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("assent-server-tests");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{}-{name}.db", std::process::id()));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    path
}

/// The four PingOne poll sentences (§3.4), without the correlation suffix.
pub const PENDING: &str = "The request could not be completed. There was an issue processing the request.: The authorization request is still pending.";
pub const SLOW_DOWN: &str = "The request could not be completed. There was an issue processing the request.: The authorization request is still pending. Please slow down the poll requests.";
pub const DENIED: &str = "The request could not be completed. There was an issue processing the request.: The authorization request has been denied.";
pub const EXPIRED: &str = "The request could not be completed. There was an issue processing the request.: The authorization request for the provided auth_req_id has expired.";
pub const VALIDATION_PREFIX: &str =
    "The request could not be completed. One or more validation errors were in the request.: ";

/// Asserts `description` is `<sentence> (Correlation ID: <uuid>)` with the header's id.
pub fn assert_sentence(r: &Resp, sentence: &str) {
    let id = r.header("x-correlation-id").expect("X-Correlation-ID");
    assert_eq!(
        r.description(),
        format!("{sentence} (Correlation ID: {id})"),
        "{}",
        r.text
    );
}
