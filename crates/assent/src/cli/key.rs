//! `assent key …`: `/v1/environments/{envId}/signingKeys`.

use anyhow::Result;
use serde_json::{Value, json};

use super::app::Alg;
use super::client::Api;
use super::table::{Table, cell};
use super::{EnvArg, note, outln, print_json, print_listing};

#[derive(clap::Subcommand, Debug)]
pub enum KeyCommand {
    /// List signing keys (current, previous still published, retired)
    List {
        #[command(flatten)]
        env: EnvArg,
    },
    /// Make a new current signing key; the previous one stays published for a while
    Rotate {
        #[command(flatten)]
        env: EnvArg,
        #[arg(long, value_enum, ignore_case = true, default_value = "RS256")]
        algorithm: Alg,
    },
}

pub async fn run(api: &Api, cmd: KeyCommand) -> Result<()> {
    match cmd {
        KeyCommand::List { env } => {
            let url = api.url(&["environments", &env.env, "signingKeys"])?;
            let listing = api.list(url, "signingKeys", None).await?;
            let mut t = Table::new(["ID", "ALGORITHM", "STATUS", "CREATED", "RETIRES"]);
            for k in &listing.items {
                t.row([
                    cell(k, "id"),
                    cell(k, "algorithm"),
                    cell(k, "status"),
                    cell(k, "createdAt"),
                    cell(k, "retireAt"),
                ]);
            }
            print_listing(api, "signingKeys", "signing keys", &listing, t)
        }
        KeyCommand::Rotate { env, algorithm } => {
            let url = api.url(&["environments", &env.env, "signingKeys"])?;
            let body = json!({ "algorithm": algorithm.as_str() });
            let key = api.post(url, &body).await?.unwrap_or(Value::Null);
            if api.json {
                return print_json(&key);
            }
            note(&format!(
                "New current {} signing key; tokens are signed with it from now on.",
                cell(&key, "algorithm")
            ));
            outln(&cell(&key, "id"))
        }
    }
}
