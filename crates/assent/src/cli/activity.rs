//! The audit log of one CIBA request (`/v1/environments/{envId}/activities?authReqId=`, §6.4),
//! as `assent request show` prints it under the request.

use anyhow::Result;
use serde_json::Value;

use super::client::Api;
use super::table::{Table, cell};

/// Every activity recorded for `auth_req_id`, oldest first, across all pages.
pub async fn of_request(api: &Api, env: &str, auth_req_id: &str) -> Result<Vec<Value>> {
    let mut url = api.url(&["environments", env, "activities"])?;
    url.query_pairs_mut().append_pair("authReqId", auth_req_id);
    Ok(api.list(url, "activities", None).await?.items)
}

/// The history as a table: time, type, who acted, through which channel, correlation id.
pub fn history_table(activities: &[Value]) -> Table {
    let mut t = Table::new(["TIME", "TYPE", "ACTOR", "CHANNEL", "CORRELATION ID"]);
    for a in activities {
        t.row([
            cell(a, "createdAt"),
            cell(a, "type"),
            actor(a),
            cell(a, "channel"),
            cell(a, "correlationId"),
        ]);
    }
    t
}

/// `DEVICE <id>`, `CLIENT <id>`, or the type alone when the actor has no id (`SYSTEM`).
fn actor(a: &Value) -> String {
    match (cell(a, "actor.type").as_str(), cell(a, "actor.id").as_str()) {
        ("-", _) => "-".to_owned(),
        (kind, "-") => kind.to_owned(),
        (kind, id) => format!("{kind} {id}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn history_rows_name_the_actor_and_dash_the_nulls() {
        let acts = [
            json!({"id": "1", "type": "REQUEST_CREATED", "createdAt": "2026-01-01T10:00:00.000Z",
                   "actor": {"type": "CLIENT", "id": "app-1"}, "channel": null, "correlationId": "c-9"}),
            json!({"id": "2", "type": "REQUEST_EXPIRED", "createdAt": "2026-01-01T10:02:00.000Z",
                   "actor": {"type": "SYSTEM", "id": null}, "channel": null, "correlationId": null}),
            json!({"id": "3", "type": "REQUEST_APPROVED", "createdAt": "2026-01-01T10:01:00.000Z",
                   "actor": {"type": "DEVICE", "id": "d-1"}, "channel": "DEVICE"}),
        ];
        let text = history_table(&acts).render();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[0].starts_with("TIME"), "{text}");
        assert!(lines[1].contains("REQUEST_CREATED") && lines[1].contains("CLIENT app-1"));
        assert!(lines[1].ends_with("c-9"), "{text}");
        assert!(lines[2].contains("SYSTEM ") && !lines[2].contains("SYSTEM -"));
        assert!(
            lines[3].contains("DEVICE d-1") && lines[3].ends_with('-'),
            "{text}"
        );
        assert_eq!(actor(&json!({})), "-");
    }
}
