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
    /// Make a new current signing key for one algorithm; the previous key of that algorithm
    /// stays published for a while. Each application's ID tokens use its own algorithm
    /// (`assent app update --id-token-alg`), so only applications of this algorithm change key
    Rotate {
        #[command(flatten)]
        env: EnvArg,
        /// Which algorithm's key to replace (keys are current per algorithm).
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
            print_listing(api, "signingKeys", "signing keys", &listing, &t)
        }
        KeyCommand::Rotate { env, algorithm } => {
            let url = api.url(&["environments", &env.env, "signingKeys"])?;
            let body = json!({ "algorithm": algorithm.as_str() });
            let key = api.post(url, &body).await?.unwrap_or(Value::Null);
            if api.json {
                return print_json(&key);
            }
            note(&rotated_note(&cell(&key, "algorithm"), &env.env));
            outln(&cell(&key, "id"))
        }
    }
}

/// What a rotation really changes: keys are current per algorithm, and an application's ID
/// tokens use its own idTokenSigningAlgorithm.
fn rotated_note(alg: &str, env: &str) -> String {
    format!(
        "New current {alg} signing key. Applications whose ID token signing algorithm is {alg} sign with it from now on; \
         applications of other algorithms keep their keys, and access tokens are always signed with the RS256 key. \
         To move an application to {alg}: assent app update --env {env} --id-token-alg {alg} <APP_ID>"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_note_says_what_changes() {
        let n = rotated_note("ES256", "E1");
        assert!(!n.contains("tokens are signed with it from now on"), "{n}");
        assert!(n.contains("ID token signing algorithm is ES256"), "{n}");
        assert!(
            n.contains("access tokens are always signed with the RS256 key"),
            "{n}"
        );
        assert!(
            n.contains("assent app update --env E1 --id-token-alg ES256"),
            "{n}"
        );
    }
}
