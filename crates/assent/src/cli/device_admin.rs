//! `assent device-admin …`: a user's device keys, `/v1/environments/{envId}/users/{userId}/devices`,
//! and their one-time enrolment codes, `…/deviceEnrollments` (§5, §6.1).

use std::io::Read;

use anyhow::{Context, Result, bail};
use reqwest::Method;
use serde_json::{Value, json};

use super::client::Api;
use super::table::{Table, cell, key_values};
use super::{EnvArg, Paging, id_of, note, out, outln, print_json, print_listing};

/// `--user`: whose devices.
#[derive(clap::Args, Debug, Clone)]
pub struct UserArg {
    /// User id.
    #[arg(long = "user", value_name = "USER_ID")]
    user: String,
}

/// `--env`, `--user` and `--device`: one device.
#[derive(clap::Args, Debug, Clone)]
pub struct DeviceRef {
    #[command(flatten)]
    env: EnvArg,
    #[command(flatten)]
    user: UserArg,
    /// Device id.
    #[arg(long = "device", value_name = "DEVICE_ID")]
    device: String,
}

#[derive(clap::Subcommand, Debug)]
pub enum DeviceAdminCommand {
    /// Register a device key whose public JWK you already have (prints the device)
    Register {
        #[command(flatten)]
        env: EnvArg,
        #[command(flatten)]
        user: UserArg,
        /// Display name of the device ("Ann's laptop").
        #[arg(long)]
        name: String,
        /// The device's public key as a JWK (ES256: kty EC, crv P-256; EdDSA: kty OKP, crv
        /// Ed25519): inline JSON, a file holding it, or - for standard input.
        #[arg(long, value_name = "FILE_OR_JSON")]
        public_key_jwk: String,
    },
    /// List a user's devices
    List {
        #[command(flatten)]
        env: EnvArg,
        #[command(flatten)]
        user: UserArg,
        #[command(flatten)]
        paging: Paging,
    },
    /// Show one device
    Show(DeviceRef),
    /// Disable a device: its key is refused until it is enabled again
    Disable(DeviceRef),
    /// Enable a disabled device
    Enable(DeviceRef),
    /// Delete a device (its key is refused from then on)
    Delete(DeviceRef),
    /// Make a one-time code (valid 10 minutes) with which the user enrols a device of their
    /// own: `assent device enroll --code <CODE>` (prints the code)
    EnrollCode {
        #[command(flatten)]
        env: EnvArg,
        #[command(flatten)]
        user: UserArg,
    },
}

pub async fn run(api: &Api, cmd: DeviceAdminCommand) -> Result<()> {
    match cmd {
        DeviceAdminCommand::Register {
            env,
            user,
            name,
            public_key_jwk,
        } => {
            let jwk = read_jwk(&public_key_jwk)?;
            let body = json!({ "type": "DEVICE_KEY", "name": name, "publicKeyJwk": jwk });
            let url = api.url(&["environments", &env.env, "users", &user.user, "devices"])?;
            let device = api.post(url, &body).await?.unwrap_or(Value::Null);
            if api.json {
                return print_json(&device);
            }
            id_of(&device)?;
            note(&format!("Registered device {:?}.", cell(&device, "name")));
            out(&describe(&device))
        }
        DeviceAdminCommand::List { env, user, paging } => {
            let url = api.url(&["environments", &env.env, "users", &user.user, "devices"])?;
            let listing = api.list(url, "devices", paging.limit).await?;
            let mut t = Table::new(["ID", "NAME", "ALGORITHM", "ENABLED", "CREATED", "LAST USED"]);
            for d in &listing.items {
                t.row([
                    cell(d, "id"),
                    cell(d, "name"),
                    cell(d, "algorithm"),
                    cell(d, "enabled"),
                    cell(d, "createdAt"),
                    cell(d, "lastUsedAt"),
                ]);
            }
            print_listing(api, "devices", "devices", &listing, &t)
        }
        DeviceAdminCommand::Show(d) => {
            let device = api.get(device_url(api, &d)?).await?;
            if api.json {
                return print_json(&device);
            }
            out(&describe(&device))
        }
        DeviceAdminCommand::Disable(d) => set_enabled(api, &d, false).await,
        DeviceAdminCommand::Enable(d) => set_enabled(api, &d, true).await,
        DeviceAdminCommand::Delete(d) => {
            api.delete(device_url(api, &d)?).await?;
            note(&format!("Deleted device {}.", d.device));
            Ok(())
        }
        DeviceAdminCommand::EnrollCode { env, user } => {
            let url = api.url(&[
                "environments",
                &env.env,
                "users",
                &user.user,
                "deviceEnrollments",
            ])?;
            let enrolment = api.post(url, &json!({})).await?.unwrap_or(Value::Null);
            if api.json {
                return print_json(&enrolment);
            }
            let code = enrolment
                .get("code")
                .and_then(Value::as_str)
                .context("the server's answer has no code")?;
            note(&format!(
                "One-time enrolment code for user {}, valid until {} (single use). On the device: \
                 assent device enroll --server <URL> --env {} --code {code}",
                user.user,
                cell(&enrolment, "expiresAt"),
                env.env
            ));
            outln(code)
        }
    }
}

fn device_url(api: &Api, d: &DeviceRef) -> Result<reqwest::Url> {
    api.url(&[
        "environments",
        &d.env.env,
        "users",
        &d.user.user,
        "devices",
        &d.device,
    ])
}

async fn set_enabled(api: &Api, d: &DeviceRef, enabled: bool) -> Result<()> {
    let body = json!({ "enabled": enabled });
    let device = api
        .send(Method::PATCH, device_url(api, d)?, Some(&body))
        .await?
        .unwrap_or(Value::Null);
    if api.json {
        return print_json(&device);
    }
    let done = if enabled { "Enabled" } else { "Disabled" };
    note(&format!("{done} device {}.", d.device));
    Ok(())
}

/// `--public-key-jwk`: JSON when it starts with `{`, `-` for standard input, else a file name.
fn read_jwk(arg: &str) -> Result<Value> {
    let trimmed = arg.trim_start();
    let (text, from) = if trimmed.starts_with('{') {
        (arg.to_owned(), "--public-key-jwk".to_owned())
    } else if arg == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the public key JWK from standard input")?;
        (text, "standard input".to_owned())
    } else {
        let text = std::fs::read_to_string(arg)
            .with_context(|| format!("cannot read the public key JWK from {arg}"))?;
        (text, arg.to_owned())
    };
    parse_jwk(&text, &from)
}

/// A JWK must be one JSON object; the server checks the key itself.
fn parse_jwk(text: &str, from: &str) -> Result<Value> {
    let v: Value = serde_json::from_str(text)
        .with_context(|| format!("the public key JWK from {from} is not valid JSON"))?;
    if !v.is_object() {
        bail!("the public key JWK from {from} is not a JSON object");
    }
    Ok(v)
}

fn describe(d: &Value) -> String {
    key_values(&[
        ("id", cell(d, "id")),
        ("name", cell(d, "name")),
        ("type", cell(d, "type")),
        ("user", cell(d, "user.id")),
        ("algorithm", cell(d, "algorithm")),
        ("enabled", cell(d, "enabled")),
        ("public key", cell(d, "publicKeyJwk")),
        ("created", cell(d, "createdAt")),
        ("updated", cell(d, "updatedAt")),
        ("last used", cell(d, "lastUsedAt")),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct T {
        #[command(subcommand)]
        cmd: DeviceAdminCommand,
    }

    #[test]
    fn parses_every_subcommand() -> Result<()> {
        let cases: &[&[&str]] = &[
            &[
                "register",
                "--env",
                "E",
                "--user",
                "U",
                "--name",
                "N",
                "--public-key-jwk",
                "{}",
            ],
            &["list", "--env", "E", "--user", "U", "--limit", "3"],
            &["show", "--env", "E", "--user", "U", "--device", "D"],
            &["disable", "--env", "E", "--user", "U", "--device", "D"],
            &["enable", "--env", "E", "--user", "U", "--device", "D"],
            &["delete", "--env", "E", "--user", "U", "--device", "D"],
            &["enroll-code", "--env", "E", "--user", "U"],
        ];
        for args in cases {
            let argv = std::iter::once("t").chain(args.iter().copied());
            T::try_parse_from(argv).with_context(|| format!("{args:?}"))?;
        }
        for bad in [
            &["show", "--env", "E", "--user", "U"][..],
            &["enroll-code", "--env", "E"],
            &["register", "--env", "E", "--user", "U", "--name", "N"],
        ] {
            let argv = std::iter::once("t").chain(bad.iter().copied());
            assert!(T::try_parse_from(argv).is_err(), "{bad:?} should not parse");
        }
        Ok(())
    }

    #[test]
    fn jwk_inline_or_from_a_file() -> Result<()> {
        let jwk = read_jwk(r#" {"kty":"OKP","crv":"Ed25519","x":"abc"}"#)?;
        assert_eq!(jwk["crv"], "Ed25519");
        let path = std::env::temp_dir().join(format!("assent-jwk-test-{}", std::process::id()));
        std::fs::write(&path, r#"{"kty":"EC"}"#)?;
        let from_file = read_jwk(&path.display().to_string());
        std::fs::remove_file(&path)?;
        assert_eq!(from_file?["kty"], "EC");
        let err = read_jwk("/nonexistent/jwk.json")
            .err()
            .map(|e| e.to_string());
        assert!(err.unwrap_or_default().contains("/nonexistent/jwk.json"));
        assert!(parse_jwk("[1]", "x").is_err());
        assert!(parse_jwk("{", "x").is_err());
        Ok(())
    }

    #[test]
    fn describe_shows_the_key_and_dashes_for_never_used() {
        let d = json!({"id": "d1", "name": "Laptop", "type": "DEVICE_KEY", "user": {"id": "u1"},
            "algorithm": "ES256", "enabled": false, "publicKeyJwk": {"kty": "EC"}, "lastUsedAt": null});
        let text = describe(&d);
        assert!(text.contains("enabled:    no\n"), "{text}");
        assert!(text.contains("public key: {\"kty\":\"EC\"}\n"), "{text}");
        assert!(text.contains("last used:  -\n"), "{text}");
        assert!(text.contains("user:       u1\n"), "{text}");
    }
}
