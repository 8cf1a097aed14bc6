//! The device's calls: the HTTP client, URLs under an environment, a whole answer and the
//! server's own words for a failure, issuer discovery, and the enrolment.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::{RequestBuilder, StatusCode, Url};
use serde::Deserialize;
use serde_json::{Value, json};

use super::DeviceAlg;
use super::key_file::{KeyFile, exists_error, write_key_file};
use crate::cli::outln;

/// How long any call may take beyond the time the server was asked to hold it.
pub(super) const TIMEOUT: Duration = Duration::from_secs(30);
/// Placeholder kid of a key not yet enrolled (the server names the device).
pub(super) const ENROLLING_KID: &str = "enrolling";

pub(super) fn http_client() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("assent-cli/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("cannot set up the HTTP client")
}

/// A server base URL; `from` says where it came from, for the error.
pub(super) fn server_url(server: &str, from: &str) -> Result<Url> {
    let url = Url::parse(server.trim())
        .with_context(|| format!("{from} {server:?} is not a valid URL"))?;
    if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
        bail!("{from} {server:?} must be an http:// or https:// URL");
    }
    Ok(url)
}

/// `<server>/<envId>/<segments…>`: a path already in `server` is kept (a server behind a
/// prefix), its query dropped; each segment is percent-encoded.
pub(super) fn env_url(server: &Url, env: &str, segments: &[&str]) -> Result<Url> {
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
pub(super) struct Answer {
    pub(super) status: StatusCode,
    www_authenticate: Option<String>,
    body: String,
}

impl Answer {
    /// The server's own words: `error_description`, else `error`, else (for a 401) the
    /// `WWW-Authenticate` parameters, else the start of the body or the status.
    pub(super) fn text(&self) -> String {
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

    pub(super) fn json(&self, what: &str) -> Result<Value> {
        serde_json::from_str(&self.body)
            .with_context(|| format!("the server's answer to {what} is not JSON"))
    }

    /// Any other failure, named by the call it answered.
    pub(super) fn unexpected(&self, what: &str) -> anyhow::Error {
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
pub(super) async fn call(req: RequestBuilder, server: &Url) -> Result<Answer> {
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
pub(super) fn public_jwk_to_enroll(jwk: &Value) -> Value {
    let mut jwk = jwk.clone();
    if let Some(members) = jwk.as_object_mut() {
        members.remove("kid");
    }
    jwk
}

pub(super) async fn enroll(
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
