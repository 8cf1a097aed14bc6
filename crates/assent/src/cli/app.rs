//! `assent app …`: `/v1/environments/{envId}/applications` and their secrets.

use std::path::PathBuf;

use anyhow::{Context, Result};
use serde_json::{Map, Value, json};

use super::client::Api;
use super::table::{Table, cell, key_values};
use super::{EnvArg, Paging, id_of, note, out, outln, print_json, print_listing};

wire_enum! {
    /// OAuth grant type.
    GrantType {
        Ciba => "CIBA",
        RefreshToken => "REFRESH_TOKEN",
        ClientCredentials => "CLIENT_CREDENTIALS",
        AuthorizationCode => "AUTHORIZATION_CODE",
        Implicit => "IMPLICIT",
        DeviceCode => "DEVICE_CODE",
    }
}

wire_enum! {
    /// How the client authenticates at the token and backchannel endpoints.
    AuthMethod {
        ClientSecretBasic => "CLIENT_SECRET_BASIC",
        ClientSecretPost => "CLIENT_SECRET_POST",
        ClientSecretJwt => "CLIENT_SECRET_JWT",
        PrivateKeyJwt => "PRIVATE_KEY_JWT",
        None => "NONE",
    }
}

wire_enum! {
    /// CIBA token delivery mode.
    DeliveryMode { Poll => "POLL", Ping => "PING", Push => "PUSH" }
}

wire_enum! {
    /// JWS algorithm.
    Alg { Rs256 => "RS256", Ps256 => "PS256", Es256 => "ES256", EdDsa => "EdDSA" }
}

#[derive(clap::Args, Debug)]
pub struct CreateArgs {
    #[command(flatten)]
    env: EnvArg,
    /// Display name of the application.
    #[arg(long)]
    name: String,
    /// Free-text description.
    #[arg(long)]
    description: Option<String>,
    /// Comma-separated grant types: CIBA and REFRESH_TOKEN (CLIENT_CREDENTIALS,
    /// AUTHORIZATION_CODE, IMPLICIT and DEVICE_CODE are not yet supported and are refused).
    #[arg(
        long,
        value_enum,
        ignore_case = true,
        value_delimiter = ',',
        default_value = "CIBA"
    )]
    grant_types: Vec<GrantType>,
    /// Token endpoint authentication method (NONE is refused with the CIBA grant: CIBA
    /// clients must authenticate).
    #[arg(
        long,
        value_enum,
        ignore_case = true,
        default_value = "CLIENT_SECRET_BASIC"
    )]
    auth_method: AuthMethod,
    /// CIBA token delivery mode: POLL (the server default). PING and PUSH are not yet
    /// supported and are refused.
    #[arg(long, value_enum, ignore_case = true)]
    delivery_mode: Option<DeliveryMode>,
    /// Client notification endpoint (for PING and PUSH, not yet supported).
    #[arg(long, value_name = "URL")]
    notification_endpoint: Option<String>,
    /// File holding the client's JWK set (for PRIVATE_KEY_JWT and signed requests).
    #[arg(long, value_name = "FILE", conflicts_with = "jwks_url")]
    jwks_file: Option<PathBuf>,
    /// URL of the client's JWK set.
    #[arg(long, value_name = "URL")]
    jwks_url: Option<String>,
    /// ID token signing algorithm (server default RS256).
    #[arg(long, value_enum, ignore_case = true)]
    id_token_alg: Option<Alg>,
    /// Algorithm the client's signed authentication requests must use (signed requests are
    /// not yet supported: any value is refused).
    #[arg(long, value_enum, ignore_case = true)]
    request_signing_alg: Option<Alg>,
    /// Lifetime of the access tokens issued to this application (server default 3600).
    #[arg(long, value_name = "SECONDS")]
    access_token_duration: Option<u64>,
    /// Lifetime of its refresh tokens, rolling: each refresh starts it again.
    #[arg(long, value_name = "SECONDS")]
    refresh_token_duration: Option<u64>,
    /// Default lifetime of a CIBA request.
    #[arg(long, value_name = "SECONDS")]
    request_expiry: Option<u64>,
    /// Minimum interval between token polls.
    #[arg(long, value_name = "SECONDS")]
    polling_interval: Option<u64>,
    /// How long a token poll may be held open waiting for a decision. Long polling is not yet
    /// supported: only 0 is accepted.
    #[arg(long, value_name = "SECONDS")]
    long_poll: Option<u64>,
    /// Create the application disabled.
    #[arg(long)]
    disabled: bool,
}

#[derive(clap::Subcommand, Debug)]
pub enum AppCommand {
    /// Create an application (prints its client id and secret)
    Create(Box<CreateArgs>),
    /// List applications
    List {
        #[command(flatten)]
        env: EnvArg,
        #[command(flatten)]
        paging: Paging,
    },
    /// Show one application
    Show {
        #[command(flatten)]
        env: EnvArg,
        /// Application id (its client_id).
        #[arg(value_name = "APP_ID")]
        id: String,
    },
    /// Print an application's client secret
    Secret {
        #[command(flatten)]
        env: EnvArg,
        /// Application id (its client_id).
        #[arg(value_name = "APP_ID")]
        id: String,
    },
    /// Replace an application's client secret (the old one stops working) and print the new one
    RotateSecret {
        #[command(flatten)]
        env: EnvArg,
        /// Application id (its client_id).
        #[arg(value_name = "APP_ID")]
        id: String,
    },
    /// Change an application's name, description or ID token signing algorithm
    Update {
        #[command(flatten)]
        env: EnvArg,
        /// Application id (its client_id).
        #[arg(value_name = "APP_ID")]
        id: String,
        /// New display name.
        #[arg(long)]
        name: Option<String>,
        /// New description.
        #[arg(long)]
        description: Option<String>,
        /// Algorithm of the ID tokens issued to it from now on (the environment's current key
        /// of that algorithm signs them; one is created if there is none).
        #[arg(long, value_enum, ignore_case = true)]
        id_token_alg: Option<Alg>,
    },
    /// Delete an application
    Delete {
        #[command(flatten)]
        env: EnvArg,
        /// Application id (its client_id).
        #[arg(value_name = "APP_ID")]
        id: String,
    },
}

pub async fn run(api: &Api, cmd: AppCommand) -> Result<()> {
    match cmd {
        AppCommand::Create(args) => create(api, *args).await,
        AppCommand::List { env, paging } => {
            let url = api.url(&["environments", &env.env, "applications"])?;
            let listing = api.list(url, "applications", paging.limit).await?;
            let mut t = Table::new([
                "ID",
                "NAME",
                "ENABLED",
                "GRANT TYPES",
                "AUTH METHOD",
                "DELIVERY",
            ]);
            for a in &listing.items {
                t.row([
                    cell(a, "id"),
                    cell(a, "name"),
                    cell(a, "enabled"),
                    cell(a, "grantTypes"),
                    cell(a, "tokenEndpointAuthMethod"),
                    cell(a, "cibaSettings.deliveryMode"),
                ]);
            }
            print_listing(api, "applications", "applications", &listing, &t)
        }
        AppCommand::Show { env, id } => {
            let url = api.url(&["environments", &env.env, "applications", &id])?;
            let app = api.get(url).await?;
            if api.json {
                return print_json(&app);
            }
            out(&describe(&app, None))
        }
        AppCommand::Secret { env, id } => {
            let secret = get_secret(api, &env.env, &id).await?;
            print_secret(api, &secret)
        }
        AppCommand::RotateSecret { env, id } => {
            let url = api.url(&["environments", &env.env, "applications", &id, "secret"])?;
            let body = api.post_empty(url).await?.unwrap_or(Value::Null);
            let secret = secret_of(&body)?;
            note("Secret rotated; the previous secret no longer works.");
            print_secret(api, &secret)
        }
        AppCommand::Update {
            env,
            id,
            name,
            description,
            id_token_alg,
        } => {
            let mut body = Map::new();
            if let Some(n) = name {
                body.insert("name".into(), json!(n));
            }
            if let Some(d) = description {
                body.insert("description".into(), json!(d));
            }
            if let Some(alg) = id_token_alg {
                body.insert("idTokenSigningAlgorithm".into(), json!(alg.as_str()));
            }
            if body.is_empty() {
                anyhow::bail!(
                    "nothing to change: give --name, --description and/or --id-token-alg"
                );
            }
            let url = api.url(&["environments", &env.env, "applications", &id])?;
            let app = api
                .send(reqwest::Method::PATCH, url, Some(&Value::Object(body)))
                .await?
                .unwrap_or(Value::Null);
            if api.json {
                return print_json(&app);
            }
            out(&describe(&app, None))
        }
        AppCommand::Delete { env, id } => {
            api.delete(api.url(&["environments", &env.env, "applications", &id])?)
                .await?;
            note(&format!("Deleted application {id}."));
            Ok(())
        }
    }
}

/// The POST body for `app create`: only what was given, the server supplies the defaults.
fn create_body(a: &CreateArgs) -> Result<Value> {
    let grant_types: Vec<&str> = a.grant_types.iter().map(|g| g.as_str()).collect();
    let mut body = json!({
        "name": a.name,
        "enabled": !a.disabled,
        "protocol": "OPENID_CONNECT",
        "type": "WEB_APP",
        "grantTypes": grant_types,
        "tokenEndpointAuthMethod": a.auth_method.as_str(),
    });
    let mut set = |k: &str, v: Value| {
        body[k] = v;
    };
    if let Some(d) = &a.description {
        set("description", json!(d));
    }
    if let Some(f) = &a.jwks_file {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("cannot read the JWK set file {}", f.display()))?;
        let jwks: Value =
            serde_json::from_str(&text).with_context(|| format!("{} is not JSON", f.display()))?;
        if jwks.get("keys").and_then(Value::as_array).is_none() {
            anyhow::bail!("{} is not a JWK set (no \"keys\" array)", f.display());
        }
        set("jwks", jwks);
    }
    if let Some(u) = &a.jwks_url {
        set("jwksUrl", json!(u));
    }
    if let Some(alg) = a.id_token_alg {
        set("idTokenSigningAlgorithm", json!(alg.as_str()));
    }
    if let Some(s) = a.access_token_duration {
        set("accessTokenDurationSeconds", json!(s));
    }
    if let Some(s) = a.refresh_token_duration {
        set("refreshTokenDurationSeconds", json!(s));
    }
    let mut ciba = Map::new();
    if let Some(m) = a.delivery_mode {
        ciba.insert("deliveryMode".into(), json!(m.as_str()));
    }
    if let Some(u) = &a.notification_endpoint {
        ciba.insert("notificationEndpoint".into(), json!(u));
    }
    if let Some(s) = a.request_expiry {
        ciba.insert("requestExpirySeconds".into(), json!(s));
    }
    if let Some(s) = a.polling_interval {
        ciba.insert("pollingIntervalSeconds".into(), json!(s));
    }
    if let Some(s) = a.long_poll {
        ciba.insert("longPollSeconds".into(), json!(s));
    }
    if let Some(alg) = a.request_signing_alg {
        ciba.insert("requestSigningAlgorithm".into(), json!(alg.as_str()));
    }
    if !ciba.is_empty() {
        body["cibaSettings"] = Value::Object(ciba);
    }
    Ok(body)
}

async fn create(api: &Api, a: CreateArgs) -> Result<()> {
    let body = create_body(&a)?;
    let url = api.url(&["environments", &a.env.env, "applications"])?;
    let mut app = api.post(url, &body).await?.unwrap_or(Value::Null);
    let id = id_of(&app)?;
    // A new application's secret is only available from its own endpoint. Methods without a
    // shared secret have none worth showing; a failure here must not hide the created id.
    let secret = if matches!(a.auth_method, AuthMethod::PrivateKeyJwt | AuthMethod::None) {
        None
    } else {
        match get_secret(api, &a.env.env, &id).await {
            Ok(s) => Some(s),
            Err(e) => {
                note(&format!(
                    "warning: application {id} was created, but its secret could not be read: {e:#}\n\
                     (try `assent app secret --env {} {id}`)",
                    a.env.env
                ));
                None
            }
        }
    };
    if api.json {
        if let (Some(s), Some(obj)) = (&secret, app.as_object_mut()) {
            obj.insert("secret".into(), Value::String(s.clone()));
        }
        return print_json(&app);
    }
    note(&format!("Created application {:?}.", cell(&app, "name")));
    out(&describe(&app, secret.as_deref()))
}

async fn get_secret(api: &Api, env: &str, id: &str) -> Result<String> {
    let url = api.url(&["environments", env, "applications", id, "secret"])?;
    secret_of(&api.get(url).await?)
}

fn secret_of(body: &Value) -> Result<String> {
    body.get("secret")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .context("the server's answer has no secret")
}

/// The bare secret (for `$(assent app secret …)`), or `{"secret"}` with `--json`.
fn print_secret(api: &Api, secret: &str) -> Result<()> {
    if api.json {
        print_json(&json!({ "secret": secret }))
    } else {
        outln(secret)
    }
}

/// The notable settings of an application, with the client secret when given.
fn describe(app: &Value, secret: Option<&str>) -> String {
    let jwks = match app.get("jwks") {
        None | Some(Value::Null) => "-".to_owned(),
        Some(_) => "(set)".to_owned(),
    };
    let mut pairs = vec![("client id", cell(app, "id"))];
    if let Some(s) = secret {
        pairs.push(("client secret", s.to_owned()));
    }
    pairs.extend([
        ("name", cell(app, "name")),
        ("enabled", cell(app, "enabled")),
        ("grant types", cell(app, "grantTypes")),
        ("auth method", cell(app, "tokenEndpointAuthMethod")),
        ("id token alg", cell(app, "idTokenSigningAlgorithm")),
        ("jwks", jwks),
        ("jwks url", cell(app, "jwksUrl")),
        ("access token ttl", cell(app, "accessTokenDurationSeconds")),
        (
            "refresh token ttl",
            cell(app, "refreshTokenDurationSeconds"),
        ),
        ("delivery mode", cell(app, "cibaSettings.deliveryMode")),
        (
            "notification url",
            cell(app, "cibaSettings.notificationEndpoint"),
        ),
        (
            "request expiry",
            cell(app, "cibaSettings.requestExpirySeconds"),
        ),
        (
            "max request expiry",
            cell(app, "cibaSettings.maxRequestExpirySeconds"),
        ),
        (
            "polling interval",
            cell(app, "cibaSettings.pollingIntervalSeconds"),
        ),
        ("long poll", cell(app, "cibaSettings.longPollSeconds")),
        (
            "request signing alg",
            cell(app, "cibaSettings.requestSigningAlgorithm"),
        ),
        ("created", cell(app, "createdAt")),
    ]);
    key_values(&pairs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        a: CreateArgs,
    }

    fn args(extra: &[&str]) -> Result<CreateArgs> {
        let argv = ["t", "--env", "E", "--name", "Pump"]
            .into_iter()
            .chain(extra.iter().copied());
        Ok(T::try_parse_from(argv)?.a)
    }

    #[test]
    fn minimal_body_uses_server_defaults() -> Result<()> {
        let body = create_body(&args(&[])?)?;
        assert_eq!(
            body,
            json!({
                "name": "Pump", "enabled": true, "protocol": "OPENID_CONNECT", "type": "WEB_APP",
                "grantTypes": ["CIBA"], "tokenEndpointAuthMethod": "CLIENT_SECRET_BASIC"
            })
        );
        Ok(())
    }

    #[test]
    fn full_body() -> Result<()> {
        let body = create_body(&args(&[
            "--grant-types",
            "ciba,refresh_token",
            "--auth-method",
            "private_key_jwt",
            "--delivery-mode",
            "ping",
            "--notification-endpoint",
            "https://rp/cb",
            "--jwks-url",
            "https://rp/jwks",
            "--id-token-alg",
            "ES256",
            "--polling-interval",
            "5",
            "--request-signing-alg",
            "PS256",
            "--disabled",
        ])?)?;
        assert_eq!(body["grantTypes"], json!(["CIBA", "REFRESH_TOKEN"]));
        assert_eq!(body["tokenEndpointAuthMethod"], "PRIVATE_KEY_JWT");
        assert_eq!(body["enabled"], false);
        assert_eq!(body["jwksUrl"], "https://rp/jwks");
        assert_eq!(body["idTokenSigningAlgorithm"], "ES256");
        assert_eq!(
            body["cibaSettings"],
            json!({
                "deliveryMode": "PING", "notificationEndpoint": "https://rp/cb",
                "pollingIntervalSeconds": 5, "requestSigningAlgorithm": "PS256"
            })
        );
        Ok(())
    }

    #[test]
    fn jwks_file_is_sent_as_an_object() -> Result<()> {
        let dir = std::env::temp_dir().join(format!("assent-cli-jwks-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let good = dir.join("good.json");
        std::fs::write(
            &good,
            r#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"abc"}]}"#,
        )?;
        let bad = dir.join("bad.json");
        std::fs::write(&bad, r#"{"kty":"OKP"}"#)?;
        let body = create_body(&args(&["--jwks-file", &good.display().to_string()])?)?;
        assert_eq!(body["jwks"]["keys"][0]["crv"], "Ed25519");
        assert!(create_body(&args(&["--jwks-file", &bad.display().to_string()])?).is_err());
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }

    #[test]
    fn describe_labels_the_secret() {
        let app = json!({"id": "c1", "name": "Pump", "cibaSettings": {"deliveryMode": "POLL"}});
        let text = describe(&app, Some("s3cret"));
        assert!(text.starts_with("client id:"), "{text}");
        assert!(text.contains("client secret:       s3cret\n"), "{text}");
        assert!(text.contains("delivery mode:       POLL\n"), "{text}");
        assert!(!describe(&app, None).contains("secret"));
    }
}
