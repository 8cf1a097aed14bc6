//! `assent device` against a real `assent serve` in a PRODUCTION environment, where nothing but
//! the device can decide: enrolment with a one-time code (key file 0600, the code single use),
//! `listen --once` answering on standard input, the relying party's tokens with the device's
//! `amr`, the request's audit log (API and `assent request show`), decisions that are final,
//! and a disabled device refused. The device's private key is never printed or logged. No
//! timed assertions: only bounded waits for what must happen.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

use super::{Running, admin_token, cli, command, drain, free_port, serve, sigterm, temp_dir};

const CIBA_GRANT: &str = "urn:openid:params:grant-type:ciba";
const APP_NAME: &str = "Pump 4 Checkout";
const USERNAME: &str = "alice";
/// Bound of every wait for something that must happen: more than one long poll of `listen`
/// (60 s), so even a server that never woke the poll early would be waited for.
const BOUND: Duration = Duration::from_secs(90);

/// What a test ran and saw: every stdout and stderr captured, to check for the private key.
#[derive(Default)]
struct Seen(Vec<String>);

impl Seen {
    fn keep(&mut self, (ok, out, err): (bool, String, String)) -> (bool, String, String) {
        self.0.push(out.clone());
        self.0.push(err.clone());
        (ok, out, err)
    }

    /// The admin CLI against `server`, which must succeed; its stdout.
    fn admin(&mut self, dir: &Path, server: &Running, args: &[&str]) -> String {
        let (ok, out, err) = self.keep(cli(dir, &server.base, args));
        assert!(ok, "{args:?} failed: {err}");
        out
    }

    /// `assent device --key-file KEY …` with the server recorded in the key file.
    fn device(&mut self, key: &Path, args: &[&str]) -> (bool, String, String) {
        let out = command()
            .arg("device")
            .arg("--key-file")
            .arg(key)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        self.keep((
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    }

    /// Neither the key file's private key nor its secret part was shown (its first 48
    /// base64url characters are the fixed PKCS#8 header of every P-256 key; the 32 after them
    /// hold the private scalar).
    fn assert_never_shows_the_private_key(&self, key: &Path, server: &Running) {
        let file: Value = serde_json::from_str(&std::fs::read_to_string(key).unwrap()).unwrap();
        assert_eq!(file["algorithm"], "ES256");
        let private = file["privateKeyPkcs8"].as_str().unwrap();
        let scalar = &private[48..80];
        let logs = server.stderr.lock().unwrap().clone();
        for text in self.0.iter().chain([&logs]) {
            assert!(
                !text.contains(private) && !text.contains(scalar),
                "the device's private key was shown: {text}"
            );
        }
    }
}

/// A PRODUCTION environment with a CIBA application and a user enrolled as a device.
struct Production {
    env: String,
    client_id: String,
    secret: String,
    user_id: String,
    device_id: String,
    /// The key file `assent device enroll` wrote.
    key: PathBuf,
}

/// Creates the environment, application and user with the admin CLI, and enrols the user's
/// device with `assent device enroll`: the key file is 0600, the code is single use, and the
/// device has no pending request yet. The key file goes into a new directory `keys`.
fn production(dir: &Path, keys: &str, server: &Running, seen: &mut Seen) -> Production {
    environment(dir, keys, server, seen, "PRODUCTION")
}

/// As [`production`], in an environment of `env_type`.
fn environment(
    dir: &Path,
    keys: &str,
    server: &Running,
    seen: &mut Seen,
    env_type: &str,
) -> Production {
    let env = seen
        .admin(
            dir,
            server,
            &["env", "create", "--name", "Shop", "--type", env_type],
        )
        .trim()
        .to_owned();
    let app: Value = serde_json::from_str(&seen.admin(
        dir,
        server,
        &[
            "app",
            "create",
            "--env",
            &env,
            "--name",
            APP_NAME,
            "--grant-types",
            "CIBA",
            "--auth-method",
            "CLIENT_SECRET_BASIC",
            "--json",
        ],
    ))
    .unwrap();
    let client_id = app["id"].as_str().unwrap().to_owned();
    let secret = app["secret"].as_str().unwrap().to_owned();
    let user_id = seen
        .admin(
            dir,
            server,
            &["user", "create", "--env", &env, "--username", USERNAME],
        )
        .trim()
        .to_owned();

    let code = seen
        .admin(
            dir,
            server,
            &[
                "device-admin",
                "enroll-code",
                "--env",
                &env,
                "--user",
                &user_id,
            ],
        )
        .trim()
        .to_owned();
    assert!(
        !code.is_empty() && !code.contains(char::is_whitespace),
        "{code:?}"
    );
    let keys = temp_dir(keys);
    let key = keys.join("device.json");
    let enroll = |seen: &mut Seen, key: &Path| {
        seen.keep(cli(
            dir,
            &server.base,
            &[
                "device",
                "--key-file",
                &key.display().to_string(),
                "enroll",
                "--env",
                &env,
                "--code",
                &code,
                "--name",
                "test laptop",
            ],
        ))
    };
    let (ok, out, err) = enroll(seen, &key);
    assert!(ok, "enroll failed: {err}");
    let device_id = out
        .strip_prefix("enrolled device ")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("{out}"))
        .to_owned();
    assert!(out.contains(&key.display().to_string()), "{out}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&key), 0o600);
        assert_eq!(mode(&keys), 0o700);
    }
    let file: Value = serde_json::from_str(&std::fs::read_to_string(&key).unwrap()).unwrap();
    assert_eq!(file["deviceId"], device_id.as_str());
    assert_eq!(file["environmentId"], env.as_str());

    // The code is spent: a second enrolment with it (into another file) is refused, saying so,
    // and writes nothing.
    let other = keys.join("second.json");
    let (ok, _, err) = enroll(seen, &other);
    assert!(!ok, "a spent code enrolled a second device");
    assert!(err.contains("the enrolment code was refused"), "{err}");
    assert!(!other.exists());

    // Nothing pending yet.
    let (ok, out, err) = seen.device(&key, &["list"]);
    assert!(ok, "{err}");
    assert_eq!(out, "No pending requests.\n");
    let (ok, out, err) = seen.device(&key, &["list", "--json"]);
    assert!(ok, "{err}");
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap(),
        Value::Array(vec![])
    );

    Production {
        env,
        client_id,
        secret,
        user_id,
        device_id,
        key,
    }
}

/// The relying party's CIBA request for the user; its `auth_req_id`.
async fn ciba_request(server: &Running, p: &Production, binding_message: &str) -> String {
    let r = reqwest::Client::new()
        .post(format!("{}/{}/as/cibaAuthorization", server.base, p.env))
        .basic_auth(&p.client_id, Some(&p.secret))
        .form(&[
            ("scope", "openid"),
            ("login_hint", USERNAME),
            ("binding_message", binding_message),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let ack: Value = r.json().await.unwrap();
    ack["auth_req_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{ack}"))
        .to_owned()
}

/// The relying party polls the token endpoint until it has an answer other than
/// `authorization_pending` / `slow_down`; the status and body.
async fn poll_tokens(server: &Running, p: &Production, id: &str) -> (u16, Value) {
    let started = Instant::now();
    loop {
        let r = reqwest::Client::new()
            .post(format!("{}/{}/as/token", server.base, p.env))
            .basic_auth(&p.client_id, Some(&p.secret))
            .form(&[("grant_type", CIBA_GRANT), ("auth_req_id", id)])
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap();
        if !matches!(
            body["error"].as_str(),
            Some("authorization_pending" | "slow_down")
        ) {
            return (status, body);
        }
        assert!(started.elapsed() < BOUND, "still {body} after {BOUND:?}");
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

/// Waits until `text` holds every one of `wanted`, or the child exits, or [`BOUND`] passes.
fn wait_for(text: &Arc<Mutex<String>>, wanted: &[&str], child: &mut Child, what: &str) {
    let started = Instant::now();
    while !wanted.iter().all(|w| text.lock().unwrap().contains(w)) {
        if let Some(status) = child.try_wait().unwrap() {
            // The drain thread may still be copying the last lines.
            std::thread::sleep(Duration::from_millis(500));
            if wanted.iter().all(|w| text.lock().unwrap().contains(w)) {
                return;
            }
            panic!("{what}: exited ({status}) first: {}", text.lock().unwrap());
        }
        assert!(
            started.elapsed() < BOUND,
            "{what}: not within {BOUND:?}: {}",
            text.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_exit(child: &mut Child, what: &str) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if started.elapsed() > BOUND {
            let _ = child.kill();
            panic!("{what}: did not exit within {BOUND:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The claims of a JWS, unverified.
fn claims(jws: &str) -> Value {
    let payload = jws.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// The `type`s of the request's audit entries, as the management API lists them.
async fn activity_types(dir: &Path, server: &Running, env: &str, id: &str) -> Vec<String> {
    let r = reqwest::Client::new()
        .get(format!("{}/v1/environments/{env}/activities", server.base))
        .query(&[("authReqId", id)])
        .bearer_auth(admin_token(dir))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    body["_embedded"]["activities"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"))
        .iter()
        .map(|a| a["type"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn device_enrols_and_approves_a_production_request_with_listen() {
    listen_and_approve("PRODUCTION").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn device_enrols_and_approves_a_sandbox_request_with_listen() {
    listen_and_approve("SANDBOX").await;
}

/// Enrol, `listen --once`, approve at the prompt, redeem: in an environment of `env_type`.
async fn listen_and_approve(env_type: &str) {
    let name = format!("device-listen-{}", env_type.to_ascii_lowercase());
    let dir = temp_dir(&name);
    let mut server = serve(&dir, free_port());
    let mut seen = Seen::default();
    let p = environment(&dir, &format!("{name}-keys"), &server, &mut seen, env_type);

    // The listener waits for requests; its answers come from a pipe.
    let mut listener = command()
        .arg("device")
        .arg("--key-file")
        .arg(&p.key)
        .args(["listen", "--once"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut answers = listener.stdin.take().unwrap();
    let stdout = Arc::new(Mutex::new(String::new()));
    let stderr = Arc::new(Mutex::new(String::new()));
    drain(listener.stdout.take().unwrap(), stdout.clone());
    drain(listener.stderr.take().unwrap(), stderr.clone());

    let message = "Pay 12.00 at Pump 4";
    let id = ciba_request(&server, &p, message).await;
    wait_for(
        &stdout,
        &[
            &format!("request:               {id}\n"),
            &format!("application:           {APP_NAME}\n"),
            &format!("binding message:       {message}\n"),
        ],
        &mut listener,
        "the listener showing the request",
    );
    answers.write_all(b"y\n").unwrap();
    answers.flush().unwrap();
    let status = wait_exit(&mut listener, "listen --once");
    drop(answers);
    assert!(status.success(), "{status}: {}", stderr.lock().unwrap());
    let approved = format!("approved {id}\n");
    let copied = Instant::now();
    while !stdout.lock().unwrap().contains(&approved) {
        assert!(
            copied.elapsed() < Duration::from_secs(5),
            "{}",
            stdout.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        stdout.lock().unwrap().contains("Approve? [y/n] y\n"),
        "the piped answer is echoed after the prompt: {}",
        stdout.lock().unwrap()
    );
    seen.0.push(stdout.lock().unwrap().clone());
    seen.0.push(stderr.lock().unwrap().clone());

    // The relying party's tokens carry the device's proof of possession.
    let (status, tokens) = poll_tokens(&server, &p, &id).await;
    assert_eq!(status, 200, "{tokens}");
    let id_token = claims(tokens["id_token"].as_str().unwrap());
    assert_eq!(
        id_token["amr"],
        serde_json::json!(["mfa", "hwk"]),
        "{id_token}"
    );
    assert_eq!(id_token["sub"], p.user_id.as_str(), "{id_token}");

    // The audit log of the request, through the API and `assent request show`.
    let history = [
        "REQUEST_CREATED",
        "DEVICE_NOTIFIED",
        "REQUEST_APPROVED",
        "TOKENS_ISSUED",
    ];
    assert_eq!(activity_types(&dir, &server, &p.env, &id).await, history);
    let shown = seen.admin(&dir, &server, &["request", "show", "--env", &p.env, &id]);
    let at: Vec<usize> = history
        .iter()
        .map(|t| shown.find(t).unwrap_or_else(|| panic!("no {t}: {shown}")))
        .collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "out of order: {shown}");
    assert!(
        shown.contains(&format!("DEVICE {}", p.device_id)),
        "the device is named as the actor: {shown}"
    );

    sigterm(&mut server.child);
    seen.assert_never_shows_the_private_key(&p.key, &server);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(p.key.parent().unwrap());
}

#[tokio::test(flavor = "multi_thread")]
async fn device_decisions_are_final_and_a_disabled_device_is_refused() {
    let dir = temp_dir("device-final");
    let mut server = serve(&dir, free_port());
    let mut seen = Seen::default();
    let p = production(&dir, "device-final-keys", &server, &mut seen);

    let id = ciba_request(&server, &p, "Sign in on the kiosk").await;
    let (ok, out, err) = seen.device(&p.key, &["list"]);
    assert!(ok, "{err}");
    assert!(
        out.contains(&id) && out.contains(APP_NAME) && out.contains("Sign in on the kiosk"),
        "{out}"
    );

    // Denied by the device: final, so approving it afterwards fails and says why.
    let (ok, out, err) = seen.device(&p.key, &["deny", &id]);
    assert!(ok, "{err}");
    assert_eq!(out, format!("denied {id}\n"));
    let (ok, out, err) = seen.device(&p.key, &["approve", &id]);
    assert!(!ok, "approved a denied request: {out}");
    assert!(
        err.contains(&id) && err.contains("decided") && err.contains("expired"),
        "{err}"
    );
    let (status, body) = poll_tokens(&server, &p, &id).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("access_denied")),
        "{body}"
    );

    // Disabled by an admin: the device's key is refused, with a message that says so.
    seen.admin(
        &dir,
        &server,
        &[
            "device-admin",
            "disable",
            "--env",
            &p.env,
            "--user",
            &p.user_id,
            "--device",
            &p.device_id,
        ],
    );
    let (ok, out, err) = seen.device(&p.key, &["list"]);
    assert!(!ok, "a disabled device listed requests: {out}");
    assert!(err.contains("refused this device's key"), "{err}");

    sigterm(&mut server.child);
    seen.assert_never_shows_the_private_key(&p.key, &server);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(p.key.parent().unwrap());
}
