//! End to end through the real binary: `assent serve --demo` on a fresh data dir, the printed
//! walkthrough, the admin CLI, graceful shutdown on SIGTERM, what the logs must not hold, and
//! `assent bench` (cli/bench.rs).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

#[path = "cli/bench.rs"]
mod bench;
#[path = "cli/crash.rs"]
mod crash;
#[path = "cli/device.rs"]
mod device;

const BIN: &str = env!("CARGO_BIN_EXE_assent");

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("assent-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Running {
    child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    base: String,
}

fn drain(mut r: impl Read + Send + 'static, into: Arc<Mutex<String>>) {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(&mut r);
        let mut line = String::new();
        while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
            into.lock().unwrap().push_str(&line);
            line.clear();
        }
    });
}

fn command() -> Command {
    let mut c = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("ASSENT_") {
            c.env_remove(k);
        }
    }
    c
}

fn serve(data_dir: &Path, port: u16) -> Running {
    serve_with(data_dir, port, &[])
}

fn serve_with(data_dir: &Path, port: u16, extra: &[&str]) -> Running {
    let mut child = command()
        .args(["serve", "--demo"])
        .args(extra)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(data_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = Arc::new(Mutex::new(String::new()));
    let stderr = Arc::new(Mutex::new(String::new()));
    drain(child.stdout.take().unwrap(), stdout.clone());
    drain(child.stderr.take().unwrap(), stderr.clone());
    let running = Running {
        child,
        stdout,
        stderr,
        base: format!("http://127.0.0.1:{port}"),
    };
    let started = Instant::now();
    while !running
        .stdout
        .lock()
        .unwrap()
        .contains("auth_req_id=$AUTH_REQ_ID\"\n\n")
        && !running
            .stdout
            .lock()
            .unwrap()
            .contains("returns the tokens")
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "server did not print the walkthrough; stderr: {}",
            running.stderr.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(200));
    running
}

/// The value of `NAME="…"` in the walkthrough's export line.
fn exported(stdout: &str, name: &str) -> String {
    let key = format!("{name}=\"");
    let start = stdout.find(&key).unwrap() + key.len();
    let end = stdout[start..].find('"').unwrap();
    stdout[start..start + end].to_owned()
}

fn sigterm(child: &mut Child) -> std::process::ExitStatus {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let started = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no graceful exit"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn cli(data_dir: &Path, base: &str, args: &[&str]) -> (bool, String, String) {
    let out = command()
        .args(args)
        .arg("--server")
        .arg(base)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn demo_flow_cli_and_shutdown() {
    let dir = temp_dir("demo");
    let port = free_port();
    let mut server = serve(&dir, port);
    let stdout = server.stdout.lock().unwrap().clone();
    let env = exported(&stdout, "ENV");
    let client_id = exported(&stdout, "CLIENT_ID");
    let secret = exported(&stdout, "CLIENT_SECRET");
    let base = server.base.clone();
    let http = reqwest::Client::new();

    // The data dir was created with the admin token (0600) and the at-rest key.
    let token_path = dir.join("admin-token");
    let admin_token = std::fs::read_to_string(&token_path)
        .unwrap()
        .trim()
        .to_owned();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&token_path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let mode = std::fs::metadata(dir.join("secret-key"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
    }

    // Health and discovery.
    assert_eq!(
        http.get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        http.get(format!("{base}/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let disco: Value = http
        .get(format!("{base}/{env}/as/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(disco["issuer"], format!("{base}/{env}/as"));

    // The walkthrough: request → pending → approve (CLI) → tokens.
    let ack: Value = http
        .post(format!("{base}/{env}/as/cibaAuthorization"))
        .basic_auth(&client_id, Some(&secret))
        .form(&[
            ("scope", "openid profile email offline_access"),
            ("login_hint", "demo"),
            ("binding_message", "Pay $5.00 at Pump 4"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = ack["auth_req_id"].as_str().unwrap().to_owned();
    let poll = || {
        http.post(format!("{base}/{env}/as/token"))
            .basic_auth(&client_id, Some(&secret))
            .form(&[
                ("grant_type", "urn:openid:params:grant-type:ciba"),
                ("auth_req_id", id.as_str()),
            ])
            .send()
    };
    let pending: Value = poll().await.unwrap().json().await.unwrap();
    assert_eq!(pending["error"], "authorization_pending");

    let (ok, out, err) = cli(
        &dir,
        &base,
        &["request", "list", "--env", &env, "--status", "PENDING"],
    );
    assert!(ok, "{err}");
    assert!(
        out.contains(&id) && out.contains("Pay $5.00 at Pump 4"),
        "{out}"
    );
    let (ok, _, err) = cli(&dir, &base, &["request", "approve", "--env", &env, &id]);
    assert!(ok, "{err}");
    let (ok, _, err) = cli(&dir, &base, &["request", "approve", "--env", &env, &id]);
    assert!(!ok && err.contains("REQUEST_FAILED"), "{err}");

    let tokens = poll().await.unwrap();
    assert_eq!(tokens.status(), 200);
    let tokens: Value = tokens.json().await.unwrap();
    assert!(tokens["id_token"].is_string() && tokens["refresh_token"].is_string());

    // Admin CLI: JSON output and a validation error rendered for a person.
    let (ok, out, _) = cli(&dir, &base, &["env", "list", "--json"]);
    assert!(ok);
    assert!(out.contains(&env));
    let (ok, _, err) = cli(
        &dir,
        &base,
        &["env", "create", "--name", "x", "--type", "STAGING"],
    );
    assert!(!ok);
    assert!(
        err.contains("INVALID_DATA") || err.contains("STAGING"),
        "{err}"
    );
    let (ok, out, err) = cli(
        &dir,
        &base,
        &["user", "list", "--env", &env, "--username", "demo"],
    );
    assert!(ok, "{err}");
    assert!(out.contains("demo"));

    // SIGTERM: graceful exit with status 0.
    let status = sigterm(&mut server.child);
    assert!(status.success(), "{status:?}");
    let logs = server.stderr.lock().unwrap().clone();
    assert!(
        logs.contains("admin-token"),
        "the token file's path is logged"
    );
    assert!(
        !logs.contains(&admin_token),
        "the admin token must never be logged"
    );
    assert!(
        !logs.contains(&secret),
        "client secrets must never be logged"
    );
    assert!(
        logs.contains("/cibaRequests/***/approve"),
        "admin calls on a request are logged with the auth_req_id redacted"
    );
    assert!(
        !logs.contains(&id),
        "auth_req_ids (which redeem tokens) must never be logged"
    );

    // A second start with --demo on the same data dir reuses what it seeded.
    let mut again = serve(&dir, free_port());
    let stdout2 = again.stdout.lock().unwrap().clone();
    assert_eq!(exported(&stdout2, "ENV"), env);
    assert_eq!(exported(&stdout2, "CLIENT_ID"), client_id);
    // The request accepted before the restart is still there.
    let (ok, out, err) = cli(
        &dir,
        &again.base.clone(),
        &["request", "show", "--env", &env, &id],
    );
    assert!(ok, "{err}");
    assert!(out.contains("REDEEMED"), "{out}");
    sigterm(&mut again.child);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn refuses_bad_configuration() {
    let dir = temp_dir("badcfg");
    let out = command()
        .args(["serve", "--database-url", "mysql://x", "--data-dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("database_url"));
    let out = command()
        .args(["serve", "--public-url", "ftp://x", "--data-dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("public_url"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn json_logs_carry_the_correlation_id() {
    let dir = temp_dir("jsonlogs");
    let mut server = serve_with(&dir, free_port(), &["--log-format", "json"]);
    let env = exported(&server.stdout.lock().unwrap(), "ENV");
    let r = reqwest::Client::new()
        .post(format!("{}/{env}/as/token", server.base))
        .form(&[("grant_type", "urn:openid:params:grant-type:ciba")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let id = r.headers()["x-correlation-id"].to_str().unwrap().to_owned();
    sigterm(&mut server.child);
    let logs = server.stderr.lock().unwrap().clone();
    let lines: Vec<Value> = logs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l.to_string().contains(&id) && l["error"] == "invalid_client"),
        "no JSON log line with the correlation id {id}: {logs}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

// --- Connections and shutdown (slow clients, the connection cap, the shutdown deadline) ---

/// Generous bound for every "must happen" wait below (the timeouts under test are 1 s).
const BOUND: Duration = Duration::from_secs(10);

async fn connect(port: u16) -> tokio::net::TcpStream {
    tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap()
}

/// Reads until the server closes the connection; panics after [`BOUND`].
async fn read_until_closed(mut r: impl tokio::io::AsyncRead + Unpin, what: &str) -> String {
    use tokio::io::AsyncReadExt;
    let mut all = Vec::new();
    let closed = tokio::time::timeout(BOUND, async {
        let mut buf = [0u8; 4096];
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => all.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    let text = String::from_utf8_lossy(&all).into_owned();
    assert!(
        closed.is_ok(),
        "{what}: not closed within {BOUND:?}; got {text:?}"
    );
    text
}

/// Sends `GET /healthz` on a keep-alive connection and reads the (small) answer.
async fn healthz_on(stream: &mut tokio::net::TcpStream) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut all = Vec::new();
    tokio::time::timeout(BOUND, async {
        let mut buf = [0u8; 1024];
        while !String::from_utf8_lossy(&all).contains("\r\n\r\n") {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed: {:?}", String::from_utf8_lossy(&all));
            all.extend_from_slice(&buf[..n]);
        }
        // The body is tiny; give it a moment to follow the head in the same or next segment.
        let _ = tokio::time::timeout(Duration::from_millis(100), stream.read(&mut buf)).await;
    })
    .await
    .expect("no answer to /healthz");
    String::from_utf8_lossy(&all).into_owned()
}

fn admin_token(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("admin-token"))
        .unwrap()
        .trim()
        .to_owned()
}

/// A management call whose JSON body is announced longer than what is sent.
fn short_body_request(token: &str) -> Vec<u8> {
    format!(
        "POST /v1/environments HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: 2000\r\n\r\n{{\"name\":"
    )
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_clients_are_closed_and_healthz_keeps_answering() {
    use tokio::io::AsyncWriteExt;
    let dir = temp_dir("slowloris");
    let port = free_port();
    let mut server = serve_with(
        &dir,
        port,
        &[
            "--header-read-timeout",
            "1",
            "--body-read-timeout",
            "1",
            "--idle-timeout",
            "1",
        ],
    );
    let token = admin_token(&dir);
    let mut attackers = Vec::new();
    for i in 0..200 {
        let token = token.clone();
        attackers.push(tokio::spawn(async move {
            let mut s = connect(port).await;
            match i % 4 {
                // A partial request line, then nothing.
                0 => {
                    s.write_all(b"GET /healthz HTT").await.unwrap();
                    let got = read_until_closed(s, "partial request line").await;
                    assert_eq!(got, "");
                }
                // One header byte every half second.
                1 => {
                    let (r, mut w) = s.into_split();
                    let trickle = tokio::spawn(async move {
                        for b in b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n" {
                            if w.write_all(&[*b]).await.is_err() {
                                return;
                            }
                            tokio::time::sleep(Duration::from_millis(500)).await;
                        }
                    });
                    let got = read_until_closed(r, "one header byte at a time").await;
                    trickle.abort();
                    assert_eq!(got, "");
                }
                // A body shorter than its Content-Length.
                2 => {
                    s.write_all(&short_body_request(&token)).await.unwrap();
                    let got = read_until_closed(s, "short body").await;
                    assert!(got.is_empty() || got.starts_with("HTTP/1.1 408"), "{got}");
                }
                // An idle keep-alive connection after one request.
                _ => {
                    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
                        .await
                        .unwrap();
                    let got = read_until_closed(s, "idle keep-alive").await;
                    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
                }
            }
        }));
    }
    let client = reqwest::Client::new();
    for _ in 0..5 {
        let r = tokio::time::timeout(BOUND, client.get(format!("{}/healthz", server.base)).send())
            .await
            .expect("/healthz did not answer during the attack")
            .unwrap();
        assert_eq!(r.status(), 200);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for a in attackers {
        a.await.unwrap();
    }
    let r = client
        .get(format!("{}/healthz", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(sigterm(&mut server.child).success());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_connection_cap_holds_and_sigterm_closes_idle_connections_at_once() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = temp_dir("conncap");
    let port = free_port();
    // Idle and shutdown timeouts long: only the shutdown can close the idle connections fast.
    let mut server = serve_with(
        &dir,
        port,
        &[
            "--max-connections",
            "2",
            "--idle-timeout",
            "60",
            "--shutdown-timeout",
            "60",
        ],
    );
    let mut first = connect(port).await;
    let mut second = connect(port).await;
    assert!(healthz_on(&mut first).await.starts_with("HTTP/1.1 200"));
    assert!(healthz_on(&mut second).await.starts_with("HTTP/1.1 200"));
    let mut third = connect(port).await;
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 256];
    let early = tokio::time::timeout(Duration::from_secs(1), third.read(&mut buf)).await;
    assert!(
        early.is_err(),
        "a third connection was served at --max-connections 2"
    );
    drop(first);
    let n = tokio::time::timeout(BOUND, third.read(&mut buf))
        .await
        .expect("the waiting connection was not served after one closed")
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    assert!(
        server
            .stderr
            .lock()
            .unwrap()
            .contains("connection limit reached"),
        "no warning at the cap: {}",
        server.stderr.lock().unwrap()
    );
    // Two idle keep-alive connections open; the 60 s deadline must not be waited for.
    let status = sigterm(&mut server.child);
    assert!(status.success(), "{status:?}");
    assert_eq!(read_until_closed(second, "idle at shutdown").await, "");
    assert!(
        server
            .stderr
            .lock()
            .unwrap()
            .contains("all connections closed"),
        "{}",
        server.stderr.lock().unwrap()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_cuts_a_request_that_never_finishes_at_the_deadline() {
    use tokio::io::AsyncWriteExt;
    let dir = temp_dir("deadline");
    let port = free_port();
    let mut server = serve_with(
        &dir,
        port,
        &["--shutdown-timeout", "1", "--body-read-timeout", "600"],
    );
    let stream = connect(port).await;
    let (r, mut w) = stream.into_split();
    w.write_all(&short_body_request(&admin_token(&dir)))
        .await
        .unwrap();
    // The body keeps coming, one byte every 200 ms: the request stays in flight.
    let trickle = tokio::spawn(async move {
        loop {
            if w.write_all(b" ").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    let status = sigterm(&mut server.child);
    assert!(status.success(), "{status:?}");
    let _ = read_until_closed(r, "in flight at the deadline").await;
    trickle.abort();
    let logs = server.stderr.lock().unwrap().clone();
    assert!(logs.contains("shutdown deadline reached"), "{logs}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn listen_takes_host_names_and_binds_before_writing_anything() {
    // A port in use fails before the data dir is created.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_port = busy.local_addr().unwrap().port();
    let dir = temp_dir("listen");
    let out = command()
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{busy_port}"),
            "--data-dir",
        ])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot listen"));
    assert!(
        !dir.exists(),
        "the data dir was created although the port is in use"
    );
    // A malformed address says which forms are accepted.
    let out = command()
        .args(["serve", "--listen", "localhost", "--data-dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("IP:PORT"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!dir.exists());
    // A host name is resolved.
    let port = free_port();
    let mut child = command()
        .args([
            "serve",
            "--listen",
            &format!("localhost:{port}"),
            "--data-dir",
        ])
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = Arc::new(Mutex::new(String::new()));
    drain(child.stderr.take().unwrap(), stderr.clone());
    let started = Instant::now();
    while !stderr.lock().unwrap().contains("Assent is listening") {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "not listening: {}",
            stderr.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let r = reqwest::get(format!("http://localhost:{port}/healthz"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(sigterm(&mut child).success());
    drop(busy);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `assent secret-key …` on a data dir (no server involved).
fn key_cli(data_dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out = command()
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Starts `assent serve` expecting it to refuse: returns its stderr once it exits unsuccessfully.
fn serve_refused(data_dir: &Path, extra: &[&str]) -> String {
    let mut child = command()
        .arg("serve")
        .args(extra)
        .arg("--listen")
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--data-dir")
        .arg(data_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = Arc::new(Mutex::new(String::new()));
    drain(child.stderr.take().unwrap(), stderr.clone());
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!(
                "serve {extra:?} did not refuse to start: {}",
                stderr.lock().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success(), "{extra:?} started");
    // The drain thread may still be copying the last line.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !stderr.lock().unwrap().contains("error:") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    stderr.lock().unwrap().clone()
}

/// The demo flow on a running server: the client authenticates, the request is approved and
/// redeemed, so the client secret opens and a signing key signs the ID token.
async fn demo_tokens(dir: &Path, server: &Running) {
    let stdout = server.stdout.lock().unwrap().clone();
    let env = exported(&stdout, "ENV");
    let client_id = exported(&stdout, "CLIENT_ID");
    let secret = exported(&stdout, "CLIENT_SECRET");
    let http = reqwest::Client::new();
    let base = &server.base;
    let ack: Value = http
        .post(format!("{base}/{env}/as/cibaAuthorization"))
        .basic_auth(&client_id, Some(&secret))
        .form(&[("scope", "openid"), ("login_hint", "demo")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = ack["auth_req_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{ack}"))
        .to_owned();
    let (ok, _, err) = cli(dir, base, &["request", "approve", "--env", &env, &id]);
    assert!(ok, "{err}");
    let tokens: Value = http
        .post(format!("{base}/{env}/as/token"))
        .basic_auth(&client_id, Some(&secret))
        .form(&[
            ("grant_type", "urn:openid:params:grant-type:ciba"),
            ("auth_req_id", id.as_str()),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(tokens["id_token"].is_string(), "{tokens}");
}

#[tokio::test(flavor = "multi_thread")]
async fn at_rest_key_cannot_silently_change_and_rotates() {
    let dir = temp_dir("atrestkey");
    let key1 = "11".repeat(32);
    let key2 = "22".repeat(32);

    // First start with --secret-key: the demo seeds sealed data, no key file is written.
    let mut server = serve_with(&dir, free_port(), &["--secret-key", &key1]);
    demo_tokens(&dir, &server).await;
    sigterm(&mut server.child);
    let key_file = dir.join("secret-key");
    assert!(!key_file.exists());

    // Without the key: refused, explained, and no new key generated into the data dir.
    let err = serve_refused(&dir, &[]);
    assert!(
        err.contains("holds data sealed under an at-rest key")
            && err.contains(&key_file.display().to_string())
            && err.contains("does not exist")
            && err.contains("--secret-key-file"),
        "{err}"
    );
    assert!(!key_file.exists(), "a key was generated into existing data");
    // A wrong key: refused, naming the source.
    let err = serve_refused(&dir, &["--secret-key", &key2]);
    assert!(
        err.contains("does not match") && err.contains("--secret-key"),
        "{err}"
    );
    // A malformed key: what is wrong, in words.
    let err = serve_refused(&dir, &["--secret-key", "not-a-key-a"]);
    assert!(
        err.contains("must be 32 bytes as 64 hex digits or base64 (got 11 characters"),
        "{err}"
    );
    assert!(!err.contains("symbol"), "{err}");

    // `secret-key check` agrees.
    let (ok, out, err) = key_cli(&dir, &["secret-key", "check", "--secret-key", &key1]);
    assert!(ok && out.contains("matches"), "{out}{err}");
    let (ok, _, err) = key_cli(&dir, &["secret-key", "check", "--secret-key", &key2]);
    assert!(!ok && err.contains("does not match"), "{err}");

    // The right key, from a file: starts.
    let own_file = dir.join("my-key");
    std::fs::write(&own_file, format!("{key1}\n")).unwrap();
    let file_arg = own_file.display().to_string();
    let mut server = serve_with(&dir, free_port(), &["--secret-key-file", &file_arg]);
    sigterm(&mut server.child);

    // Rotate (server stopped): the file now holds a new key, the old one is kept aside.
    let (ok, out, err) = key_cli(
        &dir,
        &["secret-key", "rotate", "--secret-key-file", &file_arg],
    );
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("Re-sealed 1 client secrets and 1 signing keys"),
        "{out}"
    );
    let new_key = std::fs::read_to_string(&own_file)
        .unwrap()
        .trim()
        .to_owned();
    assert_ne!(new_key, key1);
    assert_eq!(new_key.len(), 64);
    let old_file = dir.join("my-key.old");
    assert_eq!(std::fs::read_to_string(&old_file).unwrap().trim(), key1);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&own_file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    // The old key is refused now; the new one starts and everything still opens.
    let err = serve_refused(&dir, &["--secret-key", &key1]);
    assert!(err.contains("does not match"), "{err}");
    let mut server = serve_with(&dir, free_port(), &["--secret-key-file", &file_arg]);
    demo_tokens(&dir, &server).await;
    sigterm(&mut server.child);
    let logs = server.stderr.lock().unwrap().clone();
    assert!(
        !logs.contains(&new_key) && !logs.contains(&key1),
        "a key was logged"
    );

    // Rotating to a given key: --new-key-file.
    let given = dir.join("given-key");
    std::fs::write(&given, format!("{key2}\n")).unwrap();
    let (ok, out, err) = key_cli(
        &dir,
        &[
            "secret-key",
            "rotate",
            "--secret-key-file",
            &file_arg,
            "--new-key-file",
            &given.display().to_string(),
        ],
    );
    assert!(ok, "{out}{err}");
    assert_eq!(std::fs::read_to_string(&own_file).unwrap().trim(), key2);
    let (ok, out, err) = key_cli(&dir, &["secret-key", "check", "--secret-key", &key2]);
    assert!(ok && out.contains("matches"), "{out}{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The walkthrough exports the CLI's own variables, so its `assent request approve` works as
/// pasted (no --server, --env or --admin-token); `env delete` needs --yes without a terminal.
#[tokio::test(flavor = "multi_thread")]
async fn walkthrough_variables_are_the_clis_and_env_delete_needs_yes() {
    let dir = temp_dir("walkvars");
    let mut server = serve(&dir, free_port());
    let stdout = server.stdout.lock().unwrap().clone();
    assert!(
        stdout.contains("export ASSENT_SERVER=\"") && stdout.contains("export ASSENT_ADMIN_TOKEN="),
        "{stdout}"
    );
    assert!(
        !stdout.contains("export ASSENT=") && !stdout.contains("$ADMIN_TOKEN"),
        "{stdout}"
    );
    assert!(
        stdout.contains("assent request approve \"$AUTH_REQ_ID\""),
        "{stdout}"
    );
    let base = exported(&stdout, "ASSENT_SERVER");
    assert_eq!(base, server.base);
    let env = exported(&stdout, "ASSENT_ENV");
    let client_id = exported(&stdout, "CLIENT_ID");
    let secret = exported(&stdout, "CLIENT_SECRET");
    let token = std::fs::read_to_string(dir.join("admin-token"))
        .unwrap()
        .trim()
        .to_owned();
    let ack: Value = reqwest::Client::new()
        .post(format!("{base}/{env}/as/cibaAuthorization"))
        .basic_auth(&client_id, Some(&secret))
        .form(&[("scope", "openid"), ("login_hint", "demo")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = ack["auth_req_id"].as_str().unwrap().to_owned();
    // As pasted: only the exported variables, from another directory (no data dir to find).
    let elsewhere = temp_dir("walkvars-cwd");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let out = command()
        .current_dir(&elsewhere)
        .env("ASSENT_SERVER", &base)
        .env("ASSENT_ENV", &env)
        .env("ASSENT_ADMIN_TOKEN", &token)
        .args(["request", "approve", &id])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (ok, out, err) = cli(&dir, &base, &["request", "show", "--env", &env, &id]);
    assert!(ok && out.contains("APPROVED"), "{out}{err}");

    // env delete: refused without --yes (stdin is not a terminal), the environment stays.
    let (ok, _, err) = cli(&dir, &base, &["env", "delete", "--env", &env]);
    assert!(!ok && err.contains("--yes"), "{err}");
    let (ok, _, err) = cli(&dir, &base, &["env", "show", &env]);
    assert!(ok, "{err}");
    let (ok, _, err) = cli(&dir, &base, &["env", "delete", "--env", &env, "--yes"]);
    assert!(ok, "{err}");
    let (ok, _, err) = cli(&dir, &base, &["env", "show", &env]);
    assert!(!ok && err.contains("NOT_FOUND"), "{err}");

    // INVALID_DATA log lines name the field that failed.
    let r = reqwest::Client::new()
        .post(format!("{base}/v1/environments"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"name": "x", "type": "STAGING"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    sigterm(&mut server.child);
    let logs = server.stderr.lock().unwrap().clone();
    assert!(
        logs.lines()
            .any(|l| l.contains("INVALID_DATA") && l.contains("fields=type")),
        "{logs}"
    );
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&elsewhere);
}
