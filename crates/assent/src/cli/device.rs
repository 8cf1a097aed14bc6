//! `assent device …`: this machine as one user's authentication device (§6.1). Not an admin
//! command: `enroll` trades a one-time code for a device id and keeps the new private key in a
//! local key file (mode 0600); every later call is authenticated by a fresh JWS of that key.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fmt;
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use assent_crypto::{JwsSigner, SigningAlg};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::{Method, RequestBuilder, StatusCode, Url};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::io::{AsyncBufRead, AsyncBufReadExt};

use super::table::{Table, cell, key_values};
use super::{EnvArg, note, out, outln, print_json};

/// `typ` of every device JWS, header and decision alike (§6.1).
const JWS_TYP: &str = "device+jwt";
/// Lifetime of each device JWS; the server accepts at most 60 s.
const JWS_LIFETIME_SECS: i64 = 30;
/// `wait` of `listen`'s long poll: the most the server holds an answer.
const LONG_POLL_SECS: u64 = 60;
/// How long any call may take beyond the time the server was asked to hold it.
const TIMEOUT: Duration = Duration::from_secs(30);
/// `listen` polls again no sooner than this after an answer with nothing new in it, so a
/// request that stays pending (or a server that does not hold the answer) is not a busy loop.
const MIN_POLL_GAP: Duration = Duration::from_secs(2);
/// Placeholder kid of a key not yet enrolled (the server names the device).
const ENROLLING_KID: &str = "enrolling";

wire_enum! {
    /// Algorithm of the device key.
    DeviceAlg { Es256 => "ES256", EdDsa => "EdDSA" }
}

impl DeviceAlg {
    fn signing_alg(self) -> SigningAlg {
        match self {
            DeviceAlg::Es256 => SigningAlg::ES256,
            DeviceAlg::EdDsa => SigningAlg::EdDSA,
        }
    }
}

/// `assent device [--key-file PATH] <subcommand>`.
#[derive(clap::Args, Debug)]
pub struct DeviceArgs {
    #[command(flatten)]
    key_file: KeyFileArg,
    #[command(subcommand)]
    cmd: DeviceCommand,
}

/// Where the device key lives.
#[derive(clap::Args, Debug, Clone)]
pub struct KeyFileArg {
    /// The device key file: written by `enroll` (mode 0600), read by every other subcommand
    /// [default: $XDG_CONFIG_HOME/assent/device.json, else ~/.config/assent/device.json].
    #[arg(long, global = true, env = "ASSENT_DEVICE_KEY", value_name = "PATH")]
    key_file: Option<PathBuf>,
}

/// `--server` of the subcommands that read the key file.
#[derive(clap::Args, Debug, Clone)]
pub struct ServerOverride {
    /// Base URL of the server, instead of the one recorded in the key file at enrolment.
    #[arg(long, value_name = "URL")]
    server: Option<String>,
}

#[derive(clap::Subcommand, Debug)]
pub enum DeviceCommand {
    /// Enrol this machine as a device of the user an admin made a one-time code for
    /// (`assent device-admin enroll-code`): makes a key pair, registers its public key and
    /// writes the key file
    Enroll {
        /// Base URL of the server.
        #[arg(long, env = "ASSENT_SERVER", value_name = "URL")]
        server: String,
        #[command(flatten)]
        env: EnvArg,
        /// The one-time enrolment code.
        #[arg(long, allow_hyphen_values = true)]
        code: String,
        /// Display name of this device [default: "assent CLI on <hostname>"].
        #[arg(long)]
        name: Option<String>,
        /// Algorithm of the new key.
        #[arg(long, value_enum, ignore_case = true, default_value = "ES256")]
        algorithm: DeviceAlg,
        /// Replace an existing key file (the device enrolled with it stays registered until
        /// an admin deletes it).
        #[arg(long)]
        force: bool,
    },
    /// List the pending requests of this device's user
    List {
        #[command(flatten)]
        server: ServerOverride,
        /// Print the server's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Approve a pending request of this device's user
    Approve {
        #[command(flatten)]
        server: ServerOverride,
        /// The request's auth_req_id.
        #[arg(value_name = "AUTH_REQ_ID", allow_hyphen_values = true)]
        id: String,
    },
    /// Deny a pending request of this device's user
    Deny {
        #[command(flatten)]
        server: ServerOverride,
        /// The request's auth_req_id.
        #[arg(value_name = "AUTH_REQ_ID", allow_hyphen_values = true)]
        id: String,
    },
    /// Wait for requests; show each one and ask on standard input whether to approve it
    /// (y/n; the end of the input stops)
    Listen {
        #[command(flatten)]
        server: ServerOverride,
        /// Stop after the first decision.
        #[arg(long)]
        once: bool,
    },
}

pub async fn run(args: DeviceArgs) -> Result<()> {
    let path = key_file_path(&args.key_file)?;
    match args.cmd {
        DeviceCommand::Enroll {
            server,
            env,
            code,
            name,
            algorithm,
            force,
        } => {
            let name = name.unwrap_or_else(default_device_name);
            enroll(&path, &server, &env.env, &code, &name, algorithm, force).await
        }
        DeviceCommand::List { server, json } => {
            let device = Device::load(&path, &server)?;
            let pending = device.pending(0).await?;
            if json {
                return print_json(&Value::Array(pending));
            }
            if pending.is_empty() {
                return outln("No pending requests.");
            }
            let now = OffsetDateTime::now_utc();
            let mut t = Table::new([
                "AUTH REQ ID",
                "APPLICATION",
                "BINDING MESSAGE",
                "SCOPE",
                "TIME LEFT",
            ]);
            for r in &pending {
                t.row([
                    cell(r, "authReqId"),
                    cell(r, "applicationName"),
                    cell(r, "bindingMessage"),
                    cell(r, "scope"),
                    time_left(r.get("expiresAt"), now),
                ]);
            }
            out(&t.render())
        }
        DeviceCommand::Approve { server, id } => {
            decide_one(&Device::load(&path, &server)?, &id, Decision::Approve).await
        }
        DeviceCommand::Deny { server, id } => {
            decide_one(&Device::load(&path, &server)?, &id, Decision::Deny).await
        }
        DeviceCommand::Listen { server, once } => {
            let device = Device::load(&path, &server)?;
            let mut input = tokio::io::BufReader::new(tokio::io::stdin());
            listen(&device, &mut input, std::io::stdin().is_terminal(), once).await
        }
    }
}

// ---- the key file ------------------------------------------------------------------------

/// What `enroll` writes and every other subcommand reads. `Debug` never shows the private key.
#[derive(Serialize, Deserialize, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
struct KeyFile {
    server: String,
    environment_id: String,
    issuer: String,
    device_id: String,
    algorithm: String,
    /// PKCS#8 DER, base64url without padding.
    private_key_pkcs8: String,
    public_key_jwk: Value,
}

impl fmt::Debug for KeyFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyFile")
            .field("server", &self.server)
            .field("environment_id", &self.environment_id)
            .field("issuer", &self.issuer)
            .field("device_id", &self.device_id)
            .field("algorithm", &self.algorithm)
            .field("private_key_pkcs8", &"<redacted>")
            .field("public_key_jwk", &self.public_key_jwk)
            .finish()
    }
}

/// `--key-file`, or the XDG default.
fn key_file_path(arg: &KeyFileArg) -> Result<PathBuf> {
    match &arg.key_file {
        Some(p) if !p.as_os_str().is_empty() => Ok(p.clone()),
        _ => default_key_file(
            std::env::var_os("XDG_CONFIG_HOME"),
            std::env::var_os("HOME"),
        ),
    }
}

/// `$XDG_CONFIG_HOME/assent/device.json` (when set to an absolute path, as the XDG spec asks),
/// else `$HOME/.config/assent/device.json`.
fn default_key_file(xdg_config_home: Option<OsString>, home: Option<OsString>) -> Result<PathBuf> {
    let config = match (xdg_config_home.map(PathBuf::from), home) {
        (Some(x), _) if x.is_absolute() => x,
        (_, Some(h)) if !h.is_empty() => PathBuf::from(h).join(".config"),
        _ => bail!(
            "no place for the device key file: neither XDG_CONFIG_HOME nor HOME is set; \
             pass --key-file or set ASSENT_DEVICE_KEY"
        ),
    };
    Ok(config.join("assent").join("device.json"))
}

fn exists_error(path: &Path) -> anyhow::Error {
    anyhow!(
        "the key file {} already exists: pass --force to replace it, or --key-file to write \
         another file",
        path.display()
    )
}

/// Writes the key file with mode 0600 from its creation (the directory, if new, 0700).
/// Without `force` an existing file is refused; with it, the new file is written beside it and
/// renamed over it, so the old one's wider mode (if any) does not carry over.
fn write_key_file(path: &Path, contents: &[u8], force: bool) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        create_private_dir(dir)
            .with_context(|| format!("cannot create the directory {}", dir.display()))?;
    }
    if !force {
        return match write_new_file(path, contents) {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(exists_error(path)),
            other => other.with_context(|| format!("cannot write {}", path.display())),
        };
    }
    let name = path
        .file_name()
        .with_context(|| format!("{} is not a file name", path.display()))?;
    let mut tmp_name = OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".{}.tmp", assent_crypto::random_token(6)));
    let tmp = path.with_file_name(tmp_name);
    write_new_file(&tmp, contents).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        anyhow!(e).context(format!("cannot replace {}", path.display()))
    })
}

/// Creates `path` (which must not exist) with mode 0600 and writes `contents`; a half-written
/// file is removed.
fn write_new_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    let written = file.write_all(contents).and_then(|()| file.sync_all());
    if written.is_err() {
        let _ = std::fs::remove_file(path);
    }
    written
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Reads the key file, refusing one that others may read or write (as ssh does).
fn read_key_file(path: &Path) -> Result<KeyFile> {
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "no device key file at {}: enrol this device first (assent device enroll --server \
             URL --env ENV_ID --code CODE), or point --key-file / ASSENT_DEVICE_KEY at its key file",
            path.display()
        ),
        Err(e) => {
            return Err(anyhow!(e)).with_context(|| format!("cannot open {}", path.display()));
        }
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = file
            .metadata()
            .with_context(|| format!("cannot read the permissions of {}", path.display()))?;
        check_private(path, meta.permissions().mode())?;
    }
    let mut text = String::new();
    file.read_to_string(&mut text)
        .with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{} is not a device key file", path.display()))
}

/// A key file must be the owner's alone: no group or other permission bits.
fn check_private(path: &Path, mode: u32) -> Result<()> {
    if mode & 0o077 != 0 {
        bail!(
            "permissions {:04o} for {} are too open: a device key must be readable and writable \
             by its owner only; fix it with: chmod 600 {}",
            mode & 0o7777,
            path.display(),
            path.display()
        );
    }
    Ok(())
}

fn default_device_name() -> String {
    let host = ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|h| h.trim().to_owned())
        .chain(std::env::var("HOSTNAME").ok())
        .find(|h| !h.is_empty());
    match host {
        Some(h) => format!("assent CLI on {h}"),
        None => "assent CLI".to_owned(),
    }
}

// ---- HTTP ----------------------------------------------------------------------------------

fn http_client() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("assent-cli/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("cannot set up the HTTP client")
}

/// A server base URL; `from` says where it came from, for the error.
fn server_url(server: &str, from: &str) -> Result<Url> {
    let url = Url::parse(server.trim())
        .with_context(|| format!("{from} {server:?} is not a valid URL"))?;
    if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
        bail!("{from} {server:?} must be an http:// or https:// URL");
    }
    Ok(url)
}

/// `<server>/<envId>/<segments…>`: a path already in `server` is kept (a server behind a
/// prefix), its query dropped; each segment is percent-encoded.
fn env_url(server: &Url, env: &str, segments: &[&str]) -> Result<Url> {
    let mut url = server.clone();
    url.set_query(None);
    url.set_fragment(None);
    {
        let mut path = url
            .path_segments_mut()
            .map_err(|()| anyhow!("{server} cannot be used as a base URL"))?;
        path.pop_if_empty();
        for s in std::iter::once(&env).chain(segments) {
            if s.is_empty() || *s == "." || *s == ".." {
                bail!("invalid id {s:?}");
            }
            path.push(s);
        }
    }
    Ok(url)
}

/// A device endpoint's answer, read whole.
struct Answer {
    status: StatusCode,
    www_authenticate: Option<String>,
    body: String,
}

impl Answer {
    /// The server's own words: `error_description`, else `error`, else (for a 401) the
    /// `WWW-Authenticate` parameters, else the start of the body or the status.
    fn text(&self) -> String {
        #[derive(Deserialize)]
        struct OAuthError {
            error: Option<String>,
            error_description: Option<String>,
        }
        let parsed = serde_json::from_str::<OAuthError>(&self.body).ok();
        let header = self.www_authenticate.as_deref();
        let found = parsed
            .as_ref()
            .and_then(|e| e.error_description.clone())
            .filter(|d| !d.trim().is_empty())
            .or_else(|| header.and_then(|h| auth_param(h, "error_description")))
            .or_else(|| parsed.and_then(|e| e.error))
            .or_else(|| header.and_then(|h| auth_param(h, "error")));
        let text = match found {
            Some(t) => t,
            None if !self.body.trim().is_empty() => self.body.trim().chars().take(200).collect(),
            None => self
                .status
                .canonical_reason()
                .unwrap_or("no explanation")
                .to_owned(),
        };
        text.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    /// The OAuth `error` code of the body, if any.
    fn error_code(&self) -> Option<String> {
        serde_json::from_str::<Value>(&self.body)
            .ok()?
            .get("error")?
            .as_str()
            .map(str::to_owned)
    }

    fn json(&self, what: &str) -> Result<Value> {
        serde_json::from_str(&self.body)
            .with_context(|| format!("the server's answer to {what} is not JSON"))
    }

    /// Any other failure, named by the call it answered.
    fn unexpected(&self, what: &str) -> anyhow::Error {
        anyhow!(
            "the server answered {} to {what}: {}",
            self.status.as_u16(),
            self.text()
        )
    }
}

/// One parameter of a `WWW-Authenticate` challenge (`Device error="invalid_token", …`).
fn auth_param(header: &str, name: &str) -> Option<String> {
    let mut rest = header;
    while let Some(at) = rest.find(name) {
        let before = rest[..at].chars().next_back();
        let after = &rest[at + name.len()..];
        rest = after;
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let Some(value) = after.trim_start().strip_prefix('=') else {
            continue;
        };
        let value = value.trim_start();
        return Some(match value.strip_prefix('"') {
            Some(quoted) => quoted.split('"').next().unwrap_or_default().to_owned(),
            None => value
                .split([',', ' '])
                .next()
                .unwrap_or_default()
                .to_owned(),
        });
    }
    None
}

/// Sends one request and reads the whole answer; a failure to reach the server says so.
async fn call(req: RequestBuilder, server: &Url) -> Result<Answer> {
    let shown = server.as_str().trim_end_matches('/');
    let transport = |e: reqwest::Error| {
        if e.is_timeout() {
            anyhow!("{shown} did not answer in time")
        } else {
            anyhow!("cannot reach {shown}: {}", root_cause(&e))
        }
    };
    let resp = req.send().await.map_err(transport)?;
    let status = resp.status();
    let www_authenticate = resp
        .headers()
        .get(reqwest::header::WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = resp.text().await.map_err(transport)?;
    Ok(Answer {
        status,
        www_authenticate,
        body,
    })
}

/// The innermost cause ("Connection refused (os error 111)").
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// The environment's issuer, from its discovery document (§3.6).
async fn discover_issuer(http: &reqwest::Client, server: &Url, env: &str) -> Result<String> {
    let url = env_url(server, env, &["as", ".well-known", "openid-configuration"])?;
    let answer = call(http.get(url), server).await?;
    let what = "the discovery request";
    match answer.status {
        s if s.is_success() => answer
            .json(what)?
            .get("issuer")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .context("the server's discovery document has no issuer"),
        StatusCode::NOT_FOUND => bail!(
            "environment {env} was not found at {}",
            server.as_str().trim_end_matches('/')
        ),
        _ => Err(answer.unexpected(what)),
    }
}

/// `POST /{envId}/device/enroll`; the device id the server gave.
async fn post_enroll(
    http: &reqwest::Client,
    server: &Url,
    env: &str,
    body: &Value,
) -> Result<String> {
    let url = env_url(server, env, &["device", "enroll"])?;
    let answer = call(http.post(url).json(body), server).await?;
    let what = "the enrolment";
    if answer.status.is_success() {
        return answer
            .json(what)?
            .get("deviceId")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .context("the server's answer to the enrolment has no deviceId");
    }
    match answer.error_code().as_deref() {
        Some("invalid_grant") => bail!("the enrolment code was refused: {}", answer.text()),
        Some("invalid_request") => bail!("the server refused the enrolment: {}", answer.text()),
        _ => Err(answer.unexpected(what)),
    }
}

/// The public JWK as the server is to register it: without the placeholder `kid`.
fn public_jwk_to_enroll(jwk: &Value) -> Value {
    let mut jwk = jwk.clone();
    if let Some(members) = jwk.as_object_mut() {
        members.remove("kid");
    }
    jwk
}

async fn enroll(
    path: &Path,
    server: &str,
    env: &str,
    code: &str,
    name: &str,
    algorithm: DeviceAlg,
    force: bool,
) -> Result<()> {
    // Before the code is spent: it is single use.
    if !force && std::fs::symlink_metadata(path).is_ok() {
        return Err(exists_error(path));
    }
    let base = server_url(server, "--server")?;
    let http = http_client()?;
    let issuer = discover_issuer(&http, &base, env).await?;
    let alg = algorithm.signing_alg();
    let key = assent_crypto::generate_key(alg, ENROLLING_KID)
        .context("cannot generate the device key")?;
    let jwk = public_jwk_to_enroll(&key.public_jwk);
    let body = json!({ "code": code, "name": name, "publicKeyJwk": jwk });
    let device_id = post_enroll(&http, &base, env, &body).await?;
    let file = KeyFile {
        server: server.trim().trim_end_matches('/').to_owned(),
        environment_id: env.to_owned(),
        issuer,
        device_id: device_id.clone(),
        algorithm: algorithm.as_str().to_owned(),
        private_key_pkcs8: URL_SAFE_NO_PAD.encode(key.pkcs8_der.as_slice()),
        public_key_jwk: jwk,
    };
    let mut text = serde_json::to_string_pretty(&file).context("cannot format the key file")?;
    text.push('\n');
    write_key_file(path, text.as_bytes(), force).with_context(|| {
        format!(
            "device {device_id} was enrolled, but its key could not be saved and is lost: ask an \
             admin to delete the device (assent device-admin delete --env {env} --user USER_ID \
             --device {device_id}) and for a new code"
        )
    })?;
    outln(&format!(
        "enrolled device {device_id} for environment {env}; key in {}",
        path.display()
    ))
}

// ---- the enrolled device ---------------------------------------------------------------------

/// A user's decision on a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Decision {
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

    fn done(self) -> &'static str {
        match self {
            Decision::Approve => "approved",
            Decision::Deny => "denied",
        }
    }
}

/// A decision the server turned down for that request alone (decided elsewhere, expired, not
/// this user's, binding message mismatch): `listen` reports it and goes on.
#[derive(Debug)]
struct Refused(String);

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

fn not_pending(id: &str) -> String {
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

fn auth_req_id(request: &Value) -> Option<&str> {
    request.get("authReqId").and_then(Value::as_str)
}

/// This machine as the enrolled device: its key, and where and to whom it speaks.
struct Device {
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
    fn load(path: &Path, server: &ServerOverride) -> Result<Device> {
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
    async fn pending(&self, wait: u64) -> Result<Vec<Value>> {
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
    async fn decide(&self, request: &Value, decision: Decision) -> Result<()> {
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

/// `approve` / `deny`: the request as listed (for its binding message), then the decision.
async fn decide_one(device: &Device, id: &str, decision: Decision) -> Result<()> {
    let pending = device.pending(0).await?;
    let request = pending
        .iter()
        .find(|r| auth_req_id(r) == Some(id))
        .ok_or_else(|| anyhow!(not_pending(id)))?;
    device.decide(request, decision).await?;
    outln(&format!("{} {id}", decision.done()))
}

/// `listen`: long-polls, shows each request once, asks, decides. Returns at the end of
/// `input` (also while waiting for requests), and with `once` after the first decision (whose
/// failure is then the error). On a terminal (`interactive`), what was typed while no question
/// was asked is discarded, so a stray `y` cannot approve a request not yet shown; piped answers
/// are used in order and echoed after each prompt.
async fn listen<R: AsyncBufRead + Unpin>(
    device: &Device,
    input: &mut R,
    interactive: bool,
    once: bool,
) -> Result<()> {
    let mut seen: HashSet<String> = HashSet::new();
    let mut shown = 0u64;
    loop {
        let started = Instant::now();
        let Some(pending) = poll_unless_input_ends(device, input).await? else {
            return Ok(());
        };
        // A request no longer listed is decided or expired for good: forget it.
        seen.retain(|id| pending.iter().any(|r| auth_req_id(r) == Some(id.as_str())));
        let mut new = false;
        for request in &pending {
            let Some(id) = auth_req_id(request) else {
                continue;
            };
            if !seen.insert(id.to_owned()) {
                continue;
            }
            new = true;
            if shown > 0 {
                out("\n")?;
            }
            shown += 1;
            out(&describe_request(request, OffsetDateTime::now_utc()))?;
            if interactive {
                discard_typed_ahead(input).await?;
            }
            let Some(decision) = ask(input, !interactive).await? else {
                return Ok(());
            };
            match device.decide(request, decision).await {
                Ok(()) => outln(&format!("{} {id}", decision.done()))?,
                Err(e) if once => return Err(e),
                Err(e) if e.downcast_ref::<Refused>().is_some() => note(&format!("error: {e:#}")),
                Err(e) => return Err(e),
            }
            if once {
                return Ok(());
            }
        }
        let elapsed = started.elapsed();
        if !new && elapsed < MIN_POLL_GAP {
            tokio::time::sleep(MIN_POLL_GAP - elapsed).await;
        }
    }
}

/// One long poll, given up (`None`) when `input` ends first. Input that arrives meanwhile is
/// only looked at (`fill_buf`), not consumed.
async fn poll_unless_input_ends<R: AsyncBufRead + Unpin>(
    device: &Device,
    input: &mut R,
) -> Result<Option<Vec<Value>>> {
    let poll = device.pending(LONG_POLL_SECS);
    tokio::pin!(poll);
    let mut watch_input = true;
    loop {
        tokio::select! {
            pending = &mut poll => return pending.map(Some),
            more = input.fill_buf(), if watch_input => {
                let more = more.context("cannot read standard input")?;
                if more.is_empty() {
                    return Ok(None);
                }
                watch_input = false;
            }
        }
    }
}

/// Drops what is already buffered from `input`, without waiting for more.
async fn discard_typed_ahead<R: AsyncBufRead + Unpin>(input: &mut R) -> Result<()> {
    let buffered = tokio::time::timeout(Duration::ZERO, input.fill_buf()).await;
    if let Ok(Ok(buf)) = buffered {
        let n = buf.len();
        input.consume(n);
    }
    Ok(())
}

/// Asks `Approve? [y/n] ` until the answer is y or n (yes / no, any case); `None` at the end
/// of the input. With `echo` (input not a terminal) the answer read is shown after the prompt.
async fn ask<R: AsyncBufRead + Unpin>(input: &mut R, echo: bool) -> Result<Option<Decision>> {
    loop {
        out("Approve? [y/n] ")?;
        let mut line = String::new();
        let read = input
            .read_line(&mut line)
            .await
            .context("cannot read the answer from standard input")?;
        if read == 0 {
            outln("")?;
            return Ok(None);
        }
        if echo {
            outln(line.trim_end_matches(['\n', '\r']))?;
        }
        if let Some(d) = parse_answer(&line) {
            return Ok(Some(d));
        }
    }
}

fn parse_answer(line: &str) -> Option<Decision> {
    match line.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" => Some(Decision::Approve),
        "n" | "no" => Some(Decision::Deny),
        _ => None,
    }
}

/// What `listen` shows of a request before asking.
fn describe_request(r: &Value, now: OffsetDateTime) -> String {
    let plain = |s: String| -> String {
        s.chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect()
    };
    key_values(&[
        ("request", plain(cell(r, "authReqId"))),
        ("application", plain(cell(r, "applicationName"))),
        ("binding message", plain(cell(r, "bindingMessage"))),
        ("scope", plain(cell(r, "scope"))),
        ("acr values", plain(cell(r, "acrValues"))),
        (
            "authorization details",
            plain(cell(r, "authorizationDetails")),
        ),
        ("time left", time_left(r.get("expiresAt"), now)),
    ])
}

/// `1m 52s` until an RFC 3339 expiry, `expired` once past, `-` without one.
fn time_left(expires_at: Option<&Value>, now: OffsetDateTime) -> String {
    let Some(text) = expires_at.and_then(Value::as_str) else {
        return "-".to_owned();
    };
    let Ok(at) = OffsetDateTime::parse(text, &Rfc3339) else {
        return text.to_owned();
    };
    let secs = (at - now).whole_seconds();
    match secs {
        s if s <= 0 => "expired".to_owned(),
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m {}s", s / 60, s % 60),
        s => format!("{}h {}m", s / 3600, s % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct T {
        #[command(flatten)]
        args: DeviceArgs,
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "assent-device-test-{name}-{}-{}",
            std::process::id(),
            assent_crypto::random_token(6)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    fn key_file(alg: SigningAlg) -> KeyFile {
        let key = assent_crypto::generate_key(alg, ENROLLING_KID).unwrap();
        KeyFile {
            server: "http://127.0.0.1:1".into(),
            environment_id: "env-1".into(),
            issuer: "http://127.0.0.1:1/env-1/as".into(),
            device_id: "dev-1".into(),
            algorithm: alg.as_str().into(),
            private_key_pkcs8: URL_SAFE_NO_PAD.encode(key.pkcs8_der.as_slice()),
            public_key_jwk: public_jwk_to_enroll(&key.public_jwk),
        }
    }

    #[cfg(unix)]
    #[test]
    fn key_file_is_0600_from_creation_in_a_0700_directory() {
        let dir = temp_dir("create");
        let path = dir.join("nested").join("device.json");
        write_key_file(&path, b"{}", false).unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&dir.join("nested")), 0o700);
        assert_eq!(std::fs::read(&path).unwrap(), b"{}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_existing_key_file_is_refused_without_force_and_replaced_with_it() {
        let dir = temp_dir("exists");
        let path = dir.join("device.json");
        std::fs::write(&path, "old").unwrap();
        let err = write_key_file(&path, b"new", false)
            .unwrap_err()
            .to_string();
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(
            err.contains("--force") && err.contains("--key-file"),
            "{err}"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old");

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        write_key_file(&path, b"new", true).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        #[cfg(unix)]
        assert_eq!(mode(&path), 0o600);
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(left.len(), 1, "a temporary file was left behind");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn a_key_file_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = temp_dir("perm");
        let path = dir.join("device.json");
        let text = serde_json::to_string(&key_file(SigningAlg::ES256)).unwrap();
        write_key_file(&path, text.as_bytes(), false).unwrap();
        assert_eq!(read_key_file(&path).unwrap().device_id, "dev-1");

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = read_key_file(&path).unwrap_err().to_string();
        assert!(err.contains("0644") && err.contains("too open"), "{err}");
        assert!(
            err.contains(&format!("chmod 600 {}", path.display())),
            "{err}"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(read_key_file(&path).is_err());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert!(read_key_file(&path).is_ok());

        let missing = read_key_file(&dir.join("none.json"))
            .unwrap_err()
            .to_string();
        assert!(missing.contains("assent device enroll"), "{missing}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn default_key_file_follows_xdg() {
        let p = default_key_file(Some("/x/cfg".into()), Some("/home/a".into())).unwrap();
        assert_eq!(p, PathBuf::from("/x/cfg/assent/device.json"));
        let p = default_key_file(Some("relative".into()), Some("/home/a".into())).unwrap();
        assert_eq!(p, PathBuf::from("/home/a/.config/assent/device.json"));
        let p = default_key_file(Some("".into()), Some("/home/a".into())).unwrap();
        assert_eq!(p, PathBuf::from("/home/a/.config/assent/device.json"));
        assert!(default_key_file(None, None).is_err());
    }

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
    fn the_key_file_round_trips_with_the_documented_members() {
        let file = key_file(SigningAlg::ES256);
        let v = serde_json::to_value(&file).unwrap();
        let mut members: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        members.sort_unstable();
        assert_eq!(
            members,
            [
                "algorithm",
                "deviceId",
                "environmentId",
                "issuer",
                "privateKeyPkcs8",
                "publicKeyJwk",
                "server"
            ]
        );
        assert!(v["publicKeyJwk"].get("kid").is_none());
        assert!(v["publicKeyJwk"].get("d").is_none());
        let back: KeyFile = serde_json::from_value(v).unwrap();
        assert_eq!(back, file);
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

    #[test]
    fn answers_in_the_servers_words() {
        let answer = |status: u16, header: Option<&str>, body: &str| Answer {
            status: StatusCode::from_u16(status).unwrap(),
            www_authenticate: header.map(str::to_owned),
            body: body.to_owned(),
        };
        let a = answer(
            400,
            None,
            r#"{"error":"invalid_grant","error_description":"The code has expired."}"#,
        );
        assert_eq!(a.text(), "The code has expired.");
        assert_eq!(a.error_code().as_deref(), Some("invalid_grant"));
        let a = answer(
            401,
            Some(r#"Device error="invalid_token", error_description="device disabled""#),
            "",
        );
        assert_eq!(a.text(), "device disabled");
        let a = answer(401, Some(r#"Device error="invalid_token""#), "");
        assert_eq!(a.text(), "invalid_token");
        assert_eq!(answer(502, None, "").text(), "Bad Gateway");
        assert_eq!(
            auth_param(r#"Device xerror="a", error=b"#, "error").as_deref(),
            Some("b")
        );
    }

    #[tokio::test]
    async fn answers_are_y_or_n_and_the_end_of_input_stops() {
        let mut input: &[u8] = b"maybe\n\nY\n";
        assert_eq!(
            ask(&mut input, false).await.unwrap(),
            Some(Decision::Approve)
        );
        let mut input: &[u8] = b"no\r\n";
        assert_eq!(ask(&mut input, true).await.unwrap(), Some(Decision::Deny));
        let mut input: &[u8] = b"n";
        assert_eq!(ask(&mut input, false).await.unwrap(), Some(Decision::Deny));
        let mut input: &[u8] = b"what\n";
        assert_eq!(ask(&mut input, false).await.unwrap(), None);
        let mut input: &[u8] = b"";
        assert_eq!(ask(&mut input, false).await.unwrap(), None);
    }

    #[test]
    fn time_left_and_what_listen_shows() {
        let now = OffsetDateTime::parse("2026-01-01T10:00:00Z", &Rfc3339).unwrap();
        let left = |s: &str| time_left(Some(&json!(s)), now);
        assert_eq!(left("2026-01-01T10:01:52.500Z"), "1m 52s");
        assert_eq!(left("2026-01-01T10:00:09Z"), "9s");
        assert_eq!(left("2026-01-01T12:30:00Z"), "2h 30m");
        assert_eq!(left("2026-01-01T09:59:59Z"), "expired");
        assert_eq!(left("soon"), "soon");
        assert_eq!(time_left(None, now), "-");

        let r = json!({"authReqId": "r1", "applicationName": "Pump\u{1b}[2J", "bindingMessage": "A\nB",
            "scope": "openid email", "acrValues": null, "authorizationDetails": [{"type": "payment"}],
            "expiresAt": "2026-01-01T10:02:00Z"});
        let text = describe_request(&r, now);
        assert!(text.contains("application:           Pump [2J\n"), "{text}");
        assert!(text.contains("binding message:       A B\n"), "{text}");
        assert!(text.contains("acr values:            -\n"), "{text}");
        assert!(
            text.contains("authorization details: {\"type\":\"payment\"}\n"),
            "{text}"
        );
        assert!(text.contains("time left:             2m 0s\n"), "{text}");
    }

    #[test]
    fn parses_the_device_subcommands() {
        let ok: &[&[&str]] = &[
            &[
                "enroll",
                "--server",
                "http://h:1",
                "--env",
                "E",
                "--code",
                "-c0de",
            ],
            &[
                "--key-file",
                "/k",
                "enroll",
                "--server",
                "http://h:1",
                "--env",
                "E",
                "--code",
                "c",
                "--name",
                "N",
                "--algorithm",
                "eddsa",
                "--force",
            ],
            &["list", "--json", "--key-file", "/k"],
            &["list", "--server", "http://other:2"],
            &["approve", "-r1"],
            &["deny", "r1", "--server", "http://h:1"],
            &["listen", "--once"],
        ];
        for args in ok {
            let argv = std::iter::once("t").chain(args.iter().copied());
            T::try_parse_from(argv).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        }
        let cli = T::try_parse_from(["t", "enroll", "--server", "s", "--env", "E", "--code", "c"])
            .unwrap();
        let DeviceCommand::Enroll {
            algorithm, force, ..
        } = cli.args.cmd
        else {
            panic!("not enroll")
        };
        assert_eq!((algorithm, force), (DeviceAlg::Es256, false));
        for bad in [
            &["enroll", "--env", "E", "--code", "c", "--server"][..],
            &["enroll", "--server", "s", "--env", "E"],
            &[
                "enroll",
                "--server",
                "s",
                "--env",
                "E",
                "--code",
                "c",
                "--algorithm",
                "RS256",
            ],
            &["approve"],
        ] {
            let argv = std::iter::once("t").chain(bad.iter().copied());
            assert!(T::try_parse_from(argv).is_err(), "{bad:?} should not parse");
        }
    }
}
