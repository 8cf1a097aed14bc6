//! What the bench creates on the server, through the management API, and deletes at the end:
//! one SANDBOX environment without abuse limits, holding one application (CLIENT_SECRET_BASIC,
//! the CIBA grant, RS256 ID tokens, a 1 s polling interval) and two kinds of users: some that
//! approve every request at once (`autoDecision` APPROVE, delay 0) and some that never decide.

use anyhow::{Context, Result, anyhow};
use serde_json::{Value, json};

use crate::cli::client::Api;

/// Users of each kind; requests are spread over them.
const USERS_PER_KIND: usize = 4;
/// The longest a seeded pending request may live (it is asked for with `requested_expiry`), so
/// that seeding many and polling them for long does not meet `expired_token`.
pub const MAX_REQUEST_EXPIRY_SECONDS: u64 = 86_400;

/// The bench's environment: everything else lives in it, so deleting it deletes all.
#[derive(Debug, Clone)]
pub struct BenchEnv {
    pub id: String,
    pub name: String,
}

/// The application and users the scenarios use.
pub struct Provisioned {
    pub client_id: String,
    pub secret: String,
    /// Usernames of users whose requests are approved at once.
    pub approving: Vec<String>,
    /// Usernames of users who never decide.
    pub undecided: Vec<String>,
}

impl std::fmt::Debug for Provisioned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provisioned")
            .field("client_id", &self.client_id)
            .field("secret", &"<redacted>")
            .field("approving", &self.approving)
            .field("undecided", &self.undecided)
            .finish()
    }
}

/// `assent-bench-<8 hex digits>`: recognisable, and unlikely to meet another run's.
pub fn bench_name() -> String {
    let bytes = assent_crypto::random_bytes::<4>();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("assent-bench-{hex}")
}

fn id_of(v: &Value, what: &str) -> Result<String> {
    v.get("id")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("the server's answer for the bench {what} has no id"))
}

pub async fn create_environment(api: &Api, name: &str) -> Result<BenchEnv> {
    let body = json!({
        "name": name,
        "type": "SANDBOX",
        "description": "Created by `assent bench`, which deletes it when it ends; safe to delete.",
        "abuseLimits": {"maxPendingRequestsPerUser": null, "authorizationRequestsPerMinute": null},
    });
    let env = api
        .post(api.url(&["environments"])?, &body)
        .await
        .context("the server refused to create the bench environment")?
        .unwrap_or(Value::Null);
    Ok(BenchEnv {
        id: id_of(&env, "environment")?,
        name: name.to_owned(),
    })
}

/// Creates the application and the users in `env`.
pub async fn populate(api: &Api, env: &BenchEnv) -> Result<Provisioned> {
    let app = json!({
        "name": env.name,
        "enabled": true,
        "protocol": "OPENID_CONNECT",
        "type": "WEB_APP",
        "grantTypes": ["CIBA"],
        "tokenEndpointAuthMethod": "CLIENT_SECRET_BASIC",
        "idTokenSigningAlgorithm": "RS256",
        "cibaSettings": {
            "deliveryMode": "POLL",
            "requestExpirySeconds": 300,
            "maxRequestExpirySeconds": MAX_REQUEST_EXPIRY_SECONDS,
            "pollingIntervalSeconds": 1,
        },
    });
    let app = api
        .post(api.url(&["environments", &env.id, "applications"])?, &app)
        .await
        .context("the server refused to create the bench application")?
        .unwrap_or(Value::Null);
    let client_id = id_of(&app, "application")?;
    let secret = api
        .get(api.url(&[
            "environments",
            &env.id,
            "applications",
            &client_id,
            "secret",
        ])?)
        .await
        .context("cannot read the bench application's secret")?
        .get("secret")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .context("the server's answer has no secret")?;
    let mut approving = Vec::new();
    let mut undecided = Vec::new();
    for i in 1..=USERS_PER_KIND {
        let username = format!("{}-approve-{i}", env.name);
        create_user(
            api,
            env,
            json!({"username": username, "autoDecision": "APPROVE", "autoDecisionDelayMs": 0}),
        )
        .await?;
        approving.push(username);
        let username = format!("{}-pending-{i}", env.name);
        create_user(api, env, json!({ "username": username })).await?;
        undecided.push(username);
    }
    Ok(Provisioned {
        client_id,
        secret,
        approving,
        undecided,
    })
}

async fn create_user(api: &Api, env: &BenchEnv, body: Value) -> Result<()> {
    api.post(api.url(&["environments", &env.id, "users"])?, &body)
        .await
        .context("the server refused to create a bench user")?;
    Ok(())
}

/// Deletes the environment and everything in it.
pub async fn delete(api: &Api, env: &BenchEnv) -> Result<()> {
    api.delete(api.url(&["environments", &env.id])?).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_recognisable_and_differ() {
        let a = bench_name();
        let b = bench_name();
        assert!(
            a.starts_with("assent-bench-") && a.len() == "assent-bench-".len() + 8,
            "{a}"
        );
        assert!(
            a["assent-bench-".len()..]
                .chars()
                .all(|c| c.is_ascii_hexdigit())
        );
        assert_ne!(a, b);
    }
}
