//! `assent env …`: `/v1/environments`.

use anyhow::{Result, bail};
use serde_json::{Map, Value, json};

use super::client::Api;
use super::table::{Table, cell, key_values};
use super::{Paging, id_of, note, outln, print_json, print_listing};

wire_enum! {
    /// Environment type.
    EnvType { Sandbox => "SANDBOX", Production => "PRODUCTION" }
}

#[derive(clap::Subcommand, Debug)]
pub enum EnvCommand {
    /// Create an environment (prints its id)
    Create {
        /// Display name of the environment.
        #[arg(long)]
        name: String,
        /// SANDBOX allows simulated decisions; PRODUCTION does not.
        #[arg(long = "type", value_enum, ignore_case = true)]
        env_type: EnvType,
        /// Free-text description.
        #[arg(long)]
        description: Option<String>,
    },
    /// List environments
    List {
        #[command(flatten)]
        paging: Paging,
    },
    /// Show one environment
    Show {
        /// Environment id.
        #[arg(value_name = "ENV_ID")]
        id: String,
    },
    /// Change an environment's name or description
    Update {
        /// Environment id.
        #[arg(value_name = "ENV_ID")]
        id: String,
        /// New display name.
        #[arg(long)]
        name: Option<String>,
        /// New description.
        #[arg(long)]
        description: Option<String>,
    },
    /// Delete an environment and everything in it (applications, users, keys, requests,
    /// tokens); asks first, or needs --yes when not run from a terminal
    Delete {
        /// Environment to delete.
        #[arg(
            long = "env",
            value_name = "ENV_ID",
            required_unless_present = "id",
            conflicts_with = "id"
        )]
        env: Option<String>,
        /// The environment id as a positional argument (older form of --env).
        #[arg(value_name = "ENV_ID", hide = true)]
        id: Option<String>,
        /// Delete without asking.
        #[arg(long)]
        yes: bool,
    },
}

pub async fn run(api: &Api, cmd: EnvCommand) -> Result<()> {
    match cmd {
        EnvCommand::Create {
            name,
            env_type,
            description,
        } => {
            let mut body = json!({ "name": name, "type": env_type.as_str() });
            if let Some(d) = description {
                body["description"] = Value::String(d);
            }
            let env = api
                .post(api.url(&["environments"])?, &body)
                .await?
                .unwrap_or(Value::Null);
            if api.json {
                return print_json(&env);
            }
            let id = id_of(&env)?;
            note(&format!(
                "Created {} environment {:?}.",
                cell(&env, "type"),
                cell(&env, "name")
            ));
            outln(&id)
        }
        EnvCommand::List { paging } => {
            let listing = api
                .list(api.url(&["environments"])?, "environments", paging.limit)
                .await?;
            let mut t = Table::new(["ID", "NAME", "TYPE", "CREATED", "DESCRIPTION"]);
            for e in &listing.items {
                t.row([
                    cell(e, "id"),
                    cell(e, "name"),
                    cell(e, "type"),
                    cell(e, "createdAt"),
                    cell(e, "description"),
                ]);
            }
            print_listing(api, "environments", "environments", &listing, &t)
        }
        EnvCommand::Show { id } => {
            let env = api.get(api.url(&["environments", &id])?).await?;
            show(api, &env)
        }
        EnvCommand::Update {
            id,
            name,
            description,
        } => {
            let mut body = Map::new();
            if let Some(n) = name {
                body.insert("name".into(), Value::String(n));
            }
            if let Some(d) = description {
                body.insert("description".into(), Value::String(d));
            }
            if body.is_empty() {
                bail!("nothing to change: give --name and/or --description");
            }
            let env = api
                .send(
                    reqwest::Method::PATCH,
                    api.url(&["environments", &id])?,
                    Some(&Value::Object(body)),
                )
                .await?
                .unwrap_or(Value::Null);
            show(api, &env)
        }
        EnvCommand::Delete { env, id, yes } => {
            let id = env.or(id).unwrap_or_default();
            if !yes && !confirm_delete(&id)? {
                bail!("environment {id} was not deleted");
            }
            api.delete(api.url(&["environments", &id])?).await?;
            note(&format!("Deleted environment {id}."));
            Ok(())
        }
    }
}

/// Asks on the terminal; without one (a script, a pipe) refuses and points to --yes.
fn confirm_delete(id: &str) -> Result<bool> {
    use std::io::{BufRead, IsTerminal, Write};
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        bail!(
            "deleting environment {id} deletes every application, user, signing key and request in it; \
             add --yes to confirm (standard input is not a terminal, so there is no prompt)"
        );
    }
    eprint!(
        "Delete environment {id} and every application, user, signing key and request in it? Type yes to confirm: "
    );
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    stdin.lock().read_line(&mut answer)?;
    Ok(answer.trim().eq_ignore_ascii_case("yes"))
}

fn show(api: &Api, env: &Value) -> Result<()> {
    if api.json {
        return print_json(env);
    }
    super::out(&key_values(&[
        ("id", cell(env, "id")),
        ("name", cell(env, "name")),
        ("type", cell(env, "type")),
        ("description", cell(env, "description")),
        ("created", cell(env, "createdAt")),
        ("updated", cell(env, "updatedAt")),
    ]))
}
