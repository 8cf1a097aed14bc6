//! `assent user …`: `/v1/environments/{envId}/users`.

use std::io::BufRead;

use anyhow::{Context, Result, bail};
use serde_json::{Map, Value, json};

use super::client::Api;
use super::table::{Table, cell, key_values};
use super::{EnvArg, Paging, id_of, note, out, outln, print_json, print_listing};

wire_enum! {
    /// Simulated decision of a SANDBOX user.
    AutoDecision { Approve => "APPROVE", Deny => "DENY" }
}

#[derive(clap::Args, Debug)]
pub struct CreateArgs {
    #[command(flatten)]
    env: EnvArg,
    /// Username, unique in the environment (what a login_hint names).
    #[arg(long)]
    username: String,
    /// Email address, unique in the environment.
    #[arg(long)]
    email: Option<String>,
    /// Given (first) name.
    #[arg(long)]
    given_name: Option<String>,
    /// Family (last) name.
    #[arg(long)]
    family_name: Option<String>,
    /// Phone number (E.164, e.g. +15551234567).
    #[arg(long)]
    phone: Option<String>,
    /// Password for the web authenticator (visible to other local users; prefer --password-stdin).
    #[arg(long, conflicts_with = "password_stdin")]
    password: Option<String>,
    /// Read the password from the first line of standard input.
    #[arg(long)]
    password_stdin: bool,
    /// SANDBOX only: decide every request for this user automatically.
    #[arg(long, value_enum, ignore_case = true)]
    auto_decision: Option<AutoDecision>,
    /// Delay before the automatic decision.
    #[arg(long, value_name = "MS")]
    auto_decision_delay_ms: Option<u64>,
    /// Create the user disabled.
    #[arg(long)]
    disabled: bool,
}

#[derive(clap::Subcommand, Debug)]
pub enum UserCommand {
    /// Create a user (prints its id)
    Create(Box<CreateArgs>),
    /// List users
    List {
        #[command(flatten)]
        env: EnvArg,
        /// Only the user with this username.
        #[arg(long)]
        username: Option<String>,
        #[command(flatten)]
        paging: Paging,
    },
    /// Show one user
    Show {
        #[command(flatten)]
        env: EnvArg,
        /// User id.
        #[arg(value_name = "USER_ID")]
        id: String,
    },
    /// Delete a user
    Delete {
        #[command(flatten)]
        env: EnvArg,
        /// User id.
        #[arg(value_name = "USER_ID")]
        id: String,
    },
}

pub async fn run(api: &Api, cmd: UserCommand) -> Result<()> {
    match cmd {
        UserCommand::Create(args) => {
            let password = if args.password_stdin {
                Some(read_password(std::io::stdin().lock())?)
            } else {
                args.password.clone()
            };
            let body = create_body(&args, password);
            let url = api.url(&["environments", &args.env.env, "users"])?;
            let user = api.post(url, &body).await?.unwrap_or(Value::Null);
            if api.json {
                return print_json(&user);
            }
            let id = id_of(&user)?;
            note(&format!("Created user {:?}.", cell(&user, "username")));
            outln(&id)
        }
        UserCommand::List {
            env,
            username,
            paging,
        } => {
            let mut url = api.url(&["environments", &env.env, "users"])?;
            if let Some(u) = username {
                url.query_pairs_mut()
                    .append_pair("filter", &username_filter(&u));
            }
            let listing = api.list(url, "users", paging.limit).await?;
            let mut t = Table::new([
                "ID",
                "USERNAME",
                "NAME",
                "EMAIL",
                "PHONE",
                "ENABLED",
                "AUTO DECISION",
            ]);
            for u in &listing.items {
                t.row([
                    cell(u, "id"),
                    cell(u, "username"),
                    full_name(u),
                    cell(u, "email"),
                    cell(u, "phoneNumber"),
                    cell(u, "enabled"),
                    auto_decision(u),
                ]);
            }
            print_listing(api, "users", "users", &listing, &t)
        }
        UserCommand::Show { env, id } => {
            let user = api
                .get(api.url(&["environments", &env.env, "users", &id])?)
                .await?;
            if api.json {
                return print_json(&user);
            }
            out(&key_values(&[
                ("id", cell(&user, "id")),
                ("username", cell(&user, "username")),
                ("name", full_name(&user)),
                ("email", cell(&user, "email")),
                ("phone", cell(&user, "phoneNumber")),
                ("enabled", cell(&user, "enabled")),
                ("auto decision", auto_decision(&user)),
                ("created", cell(&user, "createdAt")),
                ("updated", cell(&user, "updatedAt")),
            ]))
        }
        UserCommand::Delete { env, id } => {
            api.delete(api.url(&["environments", &env.env, "users", &id])?)
                .await?;
            note(&format!("Deleted user {id}."));
            Ok(())
        }
    }
}

fn create_body(a: &CreateArgs, password: Option<String>) -> Value {
    let mut body = json!({ "username": a.username });
    if let Some(e) = &a.email {
        body["email"] = json!(e);
    }
    let mut name = Map::new();
    if let Some(g) = &a.given_name {
        name.insert("given".into(), json!(g));
    }
    if let Some(f) = &a.family_name {
        name.insert("family".into(), json!(f));
    }
    if !name.is_empty() {
        body["name"] = Value::Object(name);
    }
    if let Some(p) = &a.phone {
        body["phoneNumber"] = json!(p);
    }
    if let Some(p) = password {
        body["password"] = json!(p);
    }
    if a.disabled {
        body["enabled"] = json!(false);
    }
    if let Some(d) = a.auto_decision {
        body["autoDecision"] = json!(d.as_str());
    }
    if let Some(ms) = a.auto_decision_delay_ms {
        body["autoDecisionDelayMs"] = json!(ms);
    }
    body
}

/// The first line of `input`, without its line ending; empty is an error.
fn read_password(mut input: impl BufRead) -> Result<String> {
    let mut line = String::new();
    input
        .read_line(&mut line)
        .context("cannot read the password from standard input")?;
    let password = line.trim_end_matches(['\n', '\r']);
    if password.is_empty() {
        bail!("--password-stdin: standard input held no password");
    }
    Ok(password.to_owned())
}

/// `username eq "<u>"`, with `\` and `"` escaped.
fn username_filter(username: &str) -> String {
    let escaped = username.replace('\\', "\\\\").replace('"', "\\\"");
    format!("username eq \"{escaped}\"")
}

fn full_name(u: &Value) -> String {
    let parts: Vec<String> = ["name.given", "name.family"]
        .iter()
        .map(|p| cell(u, p))
        .filter(|s| s != "-")
        .collect();
    if parts.is_empty() {
        "-".to_owned()
    } else {
        parts.join(" ")
    }
}

fn auto_decision(u: &Value) -> String {
    match (
        cell(u, "autoDecision").as_str(),
        u.get("autoDecisionDelayMs").and_then(Value::as_u64),
    ) {
        ("-", _) => "-".to_owned(),
        (d, Some(ms)) if ms > 0 => format!("{d} after {ms} ms"),
        (d, _) => d.to_owned(),
    }
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

    #[test]
    fn filter_escapes_quotes() {
        assert_eq!(username_filter("alice"), r#"username eq "alice""#);
        assert_eq!(username_filter(r#"a"b\c"#), r#"username eq "a\"b\\c""#);
    }

    #[test]
    fn password_from_stdin() -> Result<()> {
        assert_eq!(read_password(&b"pa ss\r\nnext\n"[..])?, "pa ss");
        assert_eq!(
            read_password(&b"last-line-no-newline"[..])?,
            "last-line-no-newline"
        );
        assert!(read_password(&b"\n"[..]).is_err());
        assert!(read_password(&b""[..]).is_err());
        Ok(())
    }

    #[test]
    fn body_has_only_what_was_given() -> Result<()> {
        let a = T::try_parse_from(["t", "--env", "E", "--username", "u"])?.a;
        assert_eq!(create_body(&a, None), json!({"username": "u"}));
        let a = T::try_parse_from([
            "t",
            "--env",
            "E",
            "--username",
            "u",
            "--given-name",
            "Ann",
            "--phone",
            "+1",
            "--auto-decision",
            "deny",
            "--auto-decision-delay-ms",
            "250",
            "--disabled",
        ])?
        .a;
        assert_eq!(
            create_body(&a, Some("pw".into())),
            json!({
                "username": "u", "name": {"given": "Ann"}, "phoneNumber": "+1", "password": "pw",
                "enabled": false, "autoDecision": "DENY", "autoDecisionDelayMs": 250
            })
        );
        Ok(())
    }

    #[test]
    fn display_helpers() {
        let u = json!({"name": {"given": "Ann", "family": null}, "autoDecision": "APPROVE", "autoDecisionDelayMs": 500});
        assert_eq!(full_name(&u), "Ann");
        assert_eq!(auto_decision(&u), "APPROVE after 500 ms");
        assert_eq!(full_name(&json!({"name": null})), "-");
        assert_eq!(auto_decision(&json!({"autoDecision": null})), "-");
    }
}
