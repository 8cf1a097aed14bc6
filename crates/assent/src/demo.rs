//! `assent serve --demo`: idempotently seeds a SANDBOX environment, a CIBA application and a
//! user through the management API itself (so every validation applies), then prints a
//! walkthrough that works as pasted.

use anyhow::{Context, bail};
use assent_server::AppState;
use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, header};
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::config::Settings;

pub const DEMO_ENV_NAME: &str = "Assent Demo";
pub const DEMO_APP_NAME: &str = "Demo gas pump";
pub const DEMO_USERNAME: &str = "demo";

pub struct Seeded {
    pub env_id: String,
    pub client_id: String,
    pub client_secret: String,
    pub username: String,
}

async fn call(
    app: &Router,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    let mut req = Request::builder()
        .method(method.clone())
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {token}"));
    let body = match body {
        Some(b) => {
            req = req.header(header::CONTENT_TYPE, "application/json");
            Body::from(b.to_string())
        }
        None => Body::empty(),
    };
    let response = app.clone().oneshot(req.body(body)?).await?;
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await?;
    let value: Value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)?
    };
    if !status.is_success() {
        bail!("demo seeding: {method} {path} answered {status}: {value}");
    }
    Ok(value)
}

fn find_by(list: &Value, kind: &str, field: &str, value: &str) -> Option<Value> {
    list["_embedded"][kind]
        .as_array()?
        .iter()
        .find(|item| item[field] == value)
        .cloned()
}

pub async fn seed(app: Router, state: &AppState) -> anyhow::Result<Seeded> {
    let token = state.config.admin_token.clone();
    let envs = call(
        &app,
        &token,
        Method::GET,
        "/v1/environments?limit=1000",
        None,
    )
    .await?;
    let env = match find_by(&envs, "environments", "name", DEMO_ENV_NAME) {
        Some(e) => e,
        None => {
            call(
                &app,
                &token,
                Method::POST,
                "/v1/environments",
                Some(json!({
                    "name": DEMO_ENV_NAME, "type": "SANDBOX",
                    "description": "Seeded by assent serve --demo"
                })),
            )
            .await?
        }
    };
    let env_id = env["id"].as_str().context("environment id")?.to_owned();
    let apps_path = format!("/v1/environments/{env_id}/applications");
    let apps = call(
        &app,
        &token,
        Method::GET,
        &format!("{apps_path}?limit=1000"),
        None,
    )
    .await?;
    let application = match find_by(&apps, "applications", "name", DEMO_APP_NAME) {
        Some(a) => a,
        None => {
            call(&app, &token, Method::POST, &apps_path, Some(json!({
                "name": DEMO_APP_NAME, "enabled": true, "protocol": "OPENID_CONNECT", "type": "WEB_APP",
                "grantTypes": ["CIBA", "REFRESH_TOKEN"],
                "tokenEndpointAuthMethod": "CLIENT_SECRET_BASIC"
            }))).await?
        }
    };
    let client_id = application["id"]
        .as_str()
        .context("application id")?
        .to_owned();
    let secret = call(
        &app,
        &token,
        Method::GET,
        &format!("{apps_path}/{client_id}/secret"),
        None,
    )
    .await?;
    let client_secret = secret["secret"].as_str().context("secret")?.to_owned();
    let users_path = format!("/v1/environments/{env_id}/users");
    let users = call(
        &app,
        &token,
        Method::GET,
        &format!("{users_path}?filter=username%20eq%20%22{DEMO_USERNAME}%22"),
        None,
    )
    .await?;
    if find_by(&users, "users", "username", DEMO_USERNAME).is_none() {
        call(
            &app,
            &token,
            Method::POST,
            &users_path,
            Some(json!({
                "username": DEMO_USERNAME, "email": "demo@example.com",
                "name": {"given": "Dana", "family": "Demo"}, "phoneNumber": "+15550102030"
            })),
        )
        .await?;
    }
    tracing::info!(environment_id = %env_id, application_id = %client_id, "demo data ready");
    Ok(Seeded {
        env_id,
        client_id,
        client_secret,
        username: DEMO_USERNAME.into(),
    })
}

pub fn print_walkthrough(s: &Seeded, settings: &Settings) {
    let base = &settings.public_url;
    let token_file = settings.admin_token_file.display();
    println!(
        r#"
Assent demo is ready. In another terminal (the ASSENT_* variables are the ones the
assent CLI reads, so its commands below need no --server, --env or --admin-token):

  export ASSENT_SERVER="{base}" ASSENT_ENV="{env}" CLIENT_ID="{cid}" CLIENT_SECRET="{secret}"
  export ASSENT_ADMIN_TOKEN="$(cat {token_file})"

  # Discovery
  curl -s "$ASSENT_SERVER/$ASSENT_ENV/as/.well-known/openid-configuration"

  # 1. The relying party asks for {user}'s approval (CIBA backchannel request)
  AUTH_REQ_ID=$(curl -s -u "$CLIENT_ID:$CLIENT_SECRET" "$ASSENT_SERVER/$ASSENT_ENV/as/cibaAuthorization" \
      -d 'scope=openid profile email offline_access' -d 'login_hint={user}' \
      --data-urlencode 'binding_message=Pay $5.00 at Pump 4' | sed -E 's/.*"auth_req_id":"([^"]+)".*/\1/')
  echo "$AUTH_REQ_ID"

  # 2. It polls: authorization_pending while the user has not decided
  curl -s -u "$CLIENT_ID:$CLIENT_SECRET" "$ASSENT_SERVER/$ASSENT_ENV/as/token" \
      -d 'grant_type=urn:openid:params:grant-type:ciba' -d "auth_req_id=$AUTH_REQ_ID"

  # 3. The user approves (SANDBOX: simulated through the CLI:
  #      assent request approve "$AUTH_REQ_ID"
  #    or the management API:)
  curl -s -X POST -H "Authorization: Bearer $ASSENT_ADMIN_TOKEN" \
      "$ASSENT_SERVER/v1/environments/$ASSENT_ENV/cibaRequests/$AUTH_REQ_ID/approve"

  # 4. The next poll (at least 2 s after the previous one) returns the tokens
  curl -s -u "$CLIENT_ID:$CLIENT_SECRET" "$ASSENT_SERVER/$ASSENT_ENV/as/token" \
      -d 'grant_type=urn:openid:params:grant-type:ciba' -d "auth_req_id=$AUTH_REQ_ID"
"#,
        env = s.env_id,
        cid = s.client_id,
        secret = s.client_secret,
        user = s.username,
    );
}
