//! Load benchmark: the real server on a loopback socket over a fresh SQLite file, driven by
//! concurrent HTTP clients for a fixed time. Run with
//! `cargo bench -p assent-server --bench load` (options: `-- --seconds 10 --concurrency 32`).
//!
//! Scenarios:
//! - `poll`: pending requests polled with CLIENT_SECRET_BASIC (answers are
//!   authorization_pending / slow_down: the full poll path, client auth, read and bookkeeping
//!   write);
//! - `flow`: whole CIBA flows: backchannel request → simulated approval → token redemption
//!   (two RS256 signatures per flow);
//! - `init`: acknowledgements only (`POST /cibaAuthorization`, each request durable before its
//!   answer): the clearest measure of the store's write path;
//! - `sign`: RS256 signing alone, for comparison.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use assent_crypto::SecretBox;
use assent_server::{AppState, ServerConfig, SystemClock};
use assent_store::{SqliteStore, Store};
use serde_json::{Value, json};

const CIBA: &str = "urn:openid:params:grant-type:ciba";

struct Opts {
    seconds: u64,
    concurrency: usize,
    scenarios: Vec<String>,
}

fn opts() -> Opts {
    let mut o = Opts {
        seconds: 10,
        concurrency: 32,
        scenarios: vec!["poll".into(), "init".into(), "flow".into(), "sign".into()],
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--seconds" => {
                o.seconds = args[i + 1].parse().unwrap();
                i += 1;
            }
            "--concurrency" => {
                o.concurrency = args[i + 1].parse().unwrap();
                i += 1;
            }
            "--scenario" => {
                o.scenarios = vec![args[i + 1].clone()];
                i += 1;
            }
            _ => {} // cargo passes --bench
        }
        i += 1;
    }
    o
}

struct Server {
    base: String,
    admin: String,
    env: String,
    client_id: String,
    secret: String,
    http: reqwest::Client,
    store: Arc<dyn Store>,
}

async fn start_server(dir: &std::path::Path) -> Server {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.join("bench.db")).await.unwrap());
    let store_handle = Arc::clone(&store);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let base = format!("http://{addr}");
    let admin = "bench-admin-token".to_owned();
    let state = AppState::new(
        store,
        ServerConfig {
            public_url: base.clone(),
            admin_token: admin.clone(),
            allow_private_notification_targets: false,
        },
        SecretBox::new(&SecretBox::generate_key()),
        Arc::new(SystemClock),
    );
    let app = assent_server::router(state);
    // The accept loop `assent serve` runs (timeouts, connection cap), not a bare axum::serve.
    tokio::spawn(async move {
        assent_server::listener::serve(
            listener,
            app,
            assent_server::listener::ListenerConfig::default(),
            std::future::pending(),
        )
        .await
        .unwrap()
    });
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .unwrap();
    let post = |path: String, body: Value| {
        let http = http.clone();
        let url = format!("{base}{path}");
        let admin = admin.clone();
        async move {
            http.post(url)
                .bearer_auth(admin)
                .json(&body)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let env = post(
        "/v1/environments".into(),
        json!({"name":"bench","type":"SANDBOX"}),
    )
    .await;
    let env = env["id"].as_str().unwrap().to_owned();
    let app = post(
        format!("/v1/environments/{env}/applications"),
        json!({"name":"bench","grantTypes":["CIBA"],"cibaSettings":{"maxRequestExpirySeconds":3600,"requestExpirySeconds":3600}}),
    )
    .await;
    let client_id = app["id"].as_str().unwrap().to_owned();
    post(
        format!("/v1/environments/{env}/users"),
        json!({"username":"bench"}),
    )
    .await;
    let secret: Value = http
        .get(format!(
            "{base}/v1/environments/{env}/applications/{client_id}/secret"
        ))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    Server {
        base,
        admin,
        env,
        client_id,
        secret: secret["secret"].as_str().unwrap().to_owned(),
        http,
        store: store_handle,
    }
}

impl Server {
    async fn start_request(&self) -> String {
        let r: Value = self
            .http
            .post(format!("{}/{}/as/cibaAuthorization", self.base, self.env))
            .basic_auth(&self.client_id, Some(&self.secret))
            .form(&[("scope", "openid"), ("login_hint", "bench")])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        r["auth_req_id"].as_str().unwrap().to_owned()
    }

    async fn poll(&self, id: &str) -> reqwest::StatusCode {
        self.http
            .post(format!("{}/{}/as/token", self.base, self.env))
            .basic_auth(&self.client_id, Some(&self.secret))
            .form(&[("grant_type", CIBA), ("auth_req_id", id)])
            .send()
            .await
            .unwrap()
            .status()
    }

    async fn approve(&self, id: &str) {
        let s = self
            .http
            .post(format!(
                "{}/v1/environments/{}/cibaRequests/{id}/approve",
                self.base, self.env
            ))
            .bearer_auth(&self.admin)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(s, 204);
    }
}

struct Report {
    count: u64,
    elapsed: Duration,
    latencies_us: Vec<u64>,
}

impl Report {
    fn print(&self, name: &str, unit: &str) {
        let mut l = self.latencies_us.clone();
        l.sort_unstable();
        let pct = |p: f64| {
            if l.is_empty() {
                0.0
            } else {
                l[((l.len() as f64 - 1.0) * p) as usize] as f64 / 1000.0
            }
        };
        println!(
            "{name:<6} {:>10.0} {unit}/s  ({} in {:.1} s)  latency ms p50 {:.2}  p99 {:.2}  max {:.2}",
            self.count as f64 / self.elapsed.as_secs_f64(),
            self.count,
            self.elapsed.as_secs_f64(),
            pct(0.5),
            pct(0.99),
            pct(1.0),
        );
    }
}

/// Runs `work` on `concurrency` tasks until `seconds` pass; each call is one unit.
async fn drive<F, Fut>(seconds: u64, concurrency: usize, work: F) -> Report
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let work = Arc::new(work);
    let count = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let work = work.clone();
        let count = count.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut n = 0u64;
            while Instant::now() < deadline {
                let t = Instant::now();
                work(worker, n).await;
                lat.push(t.elapsed().as_micros() as u64);
                n += 1;
                count.fetch_add(1, Ordering::Relaxed);
            }
            lat
        }));
    }
    let mut latencies_us = Vec::new();
    for t in tasks {
        latencies_us.extend(t.await.unwrap());
    }
    Report {
        count: count.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
        latencies_us,
    }
}

fn main() {
    let o = opts();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let dir = std::env::temp_dir().join(format!("assent-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let server = Arc::new(start_server(&dir).await);
        println!(
            "assent load benchmark: {} s per scenario, {} concurrent clients, {} cores",
            o.seconds,
            o.concurrency,
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(0)
        );
        for scenario in &o.scenarios {
            let writes = server.store.write_stats();
            match scenario.as_str() {
                "poll" => {
                    let mut ids = Vec::new();
                    for _ in 0..(o.concurrency * 4) {
                        ids.push(server.start_request().await);
                    }
                    let ids = Arc::new(ids);
                    let s = server.clone();
                    let report = drive(o.seconds, o.concurrency, move |w, n| {
                        let s = s.clone();
                        let ids = ids.clone();
                        async move {
                            let id = &ids[(w * 4 + (n as usize % 4)) % ids.len()];
                            let status = s.poll(id).await;
                            assert_eq!(status, 400);
                        }
                    })
                    .await;
                    report.print("poll", "polls");
                }
                "init" => {
                    let s = server.clone();
                    let report = drive(o.seconds, o.concurrency, move |_, _| {
                        let s = s.clone();
                        async move {
                            s.start_request().await;
                        }
                    })
                    .await;
                    report.print("init", "acks");
                }
                "flow" => {
                    let s = server.clone();
                    let report = drive(o.seconds, o.concurrency, move |_, _| {
                        let s = s.clone();
                        async move {
                            let id = s.start_request().await;
                            s.approve(&id).await;
                            assert_eq!(s.poll(&id).await, 200);
                        }
                    })
                    .await;
                    report.print("flow", "flows");
                }
                "sign" => {
                    let key =
                        assent_crypto::generate_key(assent_crypto::SigningAlg::RS256, "k").unwrap();
                    let signer = Arc::new(
                        assent_crypto::JwsSigner::from_pkcs8(
                            assent_crypto::SigningAlg::RS256,
                            "k",
                            &key.pkcs8_der,
                        )
                        .unwrap(),
                    );
                    let started = Instant::now();
                    let mut n = 0u64;
                    let claims = json!({"iss":"x","sub":"y","aud":"z","iat":1,"exp":2});
                    while started.elapsed() < Duration::from_secs(o.seconds.min(3)) {
                        signer.sign(Some("JWT"), &claims).unwrap();
                        n += 1;
                    }
                    println!(
                        "sign   {:>10.0} RS256 signatures/s on one core",
                        n as f64 / started.elapsed().as_secs_f64()
                    );
                }
                other => println!("unknown scenario {other}"),
            }
            let after = server.store.write_stats();
            let (transitions, commits) = (
                after.transitions - writes.transitions,
                after.commits - writes.commits,
            );
            if commits > 0 {
                println!(
                    "       store: {transitions} durable transitions in {commits} commits ({:.1} per commit)",
                    transitions as f64 / commits as f64
                );
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    });
}
