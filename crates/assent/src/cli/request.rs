//! `assent request …`: `/v1/environments/{envId}/cibaRequests`.

use anyhow::Result;
use serde_json::{Value, json};

use super::client::Api;
use super::table::{Table, cell, key_values};
use super::{EnvArg, Paging, activity, note, out, outln, print_json, print_listing};

wire_enum! {
    /// State of a CIBA request.
    Status {
        Pending => "PENDING",
        Approved => "APPROVED",
        Denied => "DENIED",
        Cancelled => "CANCELLED",
        Expired => "EXPIRED",
        Redeemed => "REDEEMED",
    }
}

#[derive(clap::Subcommand, Debug)]
pub enum RequestCommand {
    /// List CIBA requests, newest last
    List {
        #[command(flatten)]
        env: EnvArg,
        /// Only requests in this state.
        #[arg(long, value_enum, ignore_case = true)]
        status: Option<Status>,
        /// Only requests for this user.
        #[arg(long, value_name = "USER_ID")]
        user_id: Option<String>,
        /// Only requests of this application (client_id).
        #[arg(long, value_name = "APP_ID")]
        app_id: Option<String>,
        #[command(flatten)]
        paging: Paging,
    },
    /// Show one request with its decision and its history (the audit log's entries for it)
    Show {
        #[command(flatten)]
        env: EnvArg,
        /// The request's auth_req_id.
        #[arg(value_name = "AUTH_REQ_ID", allow_hyphen_values = true)]
        id: String,
    },
    /// Approve a pending request as the user would (SANDBOX environments only)
    Approve {
        #[command(flatten)]
        env: EnvArg,
        /// The request's auth_req_id.
        #[arg(value_name = "AUTH_REQ_ID", allow_hyphen_values = true)]
        id: String,
    },
    /// Deny a pending request as the user would (SANDBOX environments only)
    Deny {
        #[command(flatten)]
        env: EnvArg,
        /// The request's auth_req_id.
        #[arg(value_name = "AUTH_REQ_ID", allow_hyphen_values = true)]
        id: String,
    },
    /// Cancel a pending request
    Cancel {
        #[command(flatten)]
        env: EnvArg,
        /// The request's auth_req_id.
        #[arg(value_name = "AUTH_REQ_ID", allow_hyphen_values = true)]
        id: String,
    },
}

pub async fn run(api: &Api, cmd: RequestCommand) -> Result<()> {
    match cmd {
        RequestCommand::List {
            env,
            status,
            user_id,
            app_id,
            paging,
        } => {
            let mut url = api.url(&["environments", &env.env, "cibaRequests"])?;
            {
                let mut q = url.query_pairs_mut();
                if let Some(s) = status {
                    q.append_pair("status", s.as_str());
                }
                if let Some(u) = &user_id {
                    q.append_pair("userId", u);
                }
                if let Some(a) = &app_id {
                    q.append_pair("applicationId", a);
                }
            }
            if url.query() == Some("") {
                url.set_query(None);
            }
            let listing = api.list(url, "cibaRequests", paging.limit).await?;
            let mut t = Table::new([
                "ID",
                "STATUS",
                "APPLICATION",
                "USER",
                "MODE",
                "CREATED",
                "EXPIRES",
                "BINDING MESSAGE",
            ]);
            for r in &listing.items {
                t.row([
                    cell(r, "id"),
                    cell(r, "status"),
                    cell(r, "application.name"),
                    cell(r, "user.username"),
                    cell(r, "deliveryMode"),
                    cell(r, "createdAt"),
                    cell(r, "expiresAt"),
                    cell(r, "bindingMessage"),
                ]);
            }
            print_listing(api, "cibaRequests", "requests", &listing, &t)
        }
        RequestCommand::Show { env, id } => {
            let r = api
                .get(api.url(&["environments", &env.env, "cibaRequests", &id])?)
                .await?;
            if api.json {
                let activities = activity::of_request(api, &env.env, &id).await?;
                return print_json(&json!({ "request": r, "activities": activities }));
            }
            out(&describe(&r))?;
            let activities = activity::of_request(api, &env.env, &id).await?;
            outln("")?;
            if activities.is_empty() {
                return outln("history: none recorded");
            }
            outln("history:")?;
            out(&activity::history_table(&activities).render())
        }
        RequestCommand::Approve { env, id } => decide(api, &env.env, &id, "approve").await,
        RequestCommand::Deny { env, id } => decide(api, &env.env, &id, "deny").await,
        RequestCommand::Cancel { env, id } => {
            api.delete(api.url(&["environments", &env.env, "cibaRequests", &id])?)
                .await?;
            note(&format!("Cancelled request {id}."));
            Ok(())
        }
    }
}

async fn decide(api: &Api, env: &str, id: &str, action: &str) -> Result<()> {
    let url = api.url(&["environments", env, "cibaRequests", id, action])?;
    api.post_empty(url).await?;
    let done = if action == "approve" {
        "Approved"
    } else {
        "Denied"
    };
    note(&format!("{done} request {id}."));
    Ok(())
}

fn describe(r: &Value) -> String {
    let who = |name: &str, id: &str| {
        let (n, i) = (cell(r, name), cell(r, id));
        if n == "-" { i } else { format!("{n} ({i})") }
    };
    key_values(&[
        ("id", cell(r, "id")),
        ("status", cell(r, "status")),
        ("application", who("application.name", "application.id")),
        ("user", who("user.username", "user.id")),
        ("scope", cell(r, "scope")),
        ("acr values", cell(r, "acrValues")),
        ("binding message", cell(r, "bindingMessage")),
        ("authorization details", cell(r, "authorizationDetails")),
        ("delivery mode", cell(r, "deliveryMode")),
        ("created", cell(r, "createdAt")),
        ("expires", cell(r, "expiresAt")),
        ("decided", cell(r, "decidedAt")),
        ("decision", cell(r, "decision.outcome")),
        ("decision channel", cell(r, "decision.channel")),
        ("decision device", cell(r, "decision.deviceId")),
        ("decision amr", cell(r, "decision.amr")),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn describe_shows_names_with_ids_and_nulls_as_dashes() {
        let r = json!({
            "id": "r1", "status": "APPROVED",
            "application": {"id": "a1", "name": "Pump"}, "user": {"id": "u1", "username": null},
            "scope": "openid", "decision": {"outcome": "APPROVE", "channel": "SANDBOX", "amr": ["sim"]},
            "decidedAt": null
        });
        let text = describe(&r);
        assert!(
            text.contains("application:           Pump (a1)\n"),
            "{text}"
        );
        assert!(text.contains("user:                  u1\n"), "{text}");
        assert!(text.contains("decided:               -\n"), "{text}");
        assert!(text.contains("decision amr:          sim\n"), "{text}");
    }
}
