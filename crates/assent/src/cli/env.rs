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
        #[arg(long)]
        name: String,
        /// SANDBOX allows simulated decisions; PRODUCTION does not.
        #[arg(long = "type", value_enum, ignore_case = true)]
        env_type: EnvType,
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
        #[arg(value_name = "ENV_ID")]
        id: String,
    },
    /// Change an environment's name or description
    Update {
        #[arg(value_name = "ENV_ID")]
        id: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        description: Option<String>,
    },
    /// Delete an environment and everything in it
    Delete {
        #[arg(value_name = "ENV_ID")]
        id: String,
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
            print_listing(api, "environments", "environments", &listing, t)
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
        EnvCommand::Delete { id } => {
            api.delete(api.url(&["environments", &id])?).await?;
            note(&format!("Deleted environment {id}."));
            Ok(())
        }
    }
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
