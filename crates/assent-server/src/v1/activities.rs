//! `GET /v1/environments/{envId}/activities` (§6.4): the audit log, oldest first, filtered by
//! `authReqId`, `userId`, `type`, `since` and `until` (RFC 3339), paged like every list.

use assent_core::{Activity, ActivityType, EnvironmentId, Timestamp};
use assent_store::ActivityFilter;
use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::{ApiQuery, PageQuery, list_body};
use crate::error::ApiError;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/environments/{env_id}/activities", get(list))
}

pub fn render(a: &Activity) -> Value {
    let e = &a.entry;
    json!({
        "id": e.id,
        "environment": { "id": e.environment_id },
        "type": e.kind.as_str(),
        "createdAt": e.at.to_rfc3339(),
        "authReqId": e.auth_req_id,
        "user": e.user_id.as_ref().map(|id| json!({ "id": id })),
        "application": e.application_id.as_ref().map(|id| json!({ "id": id })),
        "deviceId": e.device_id,
        "actor": { "type": e.actor.kind.as_str(), "id": e.actor.id },
        "channel": e.channel.map(|c| c.as_str()),
        "correlationId": e.correlation_id,
        "details": e.details,
    })
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ActivityQuery {
    limit: Option<String>,
    cursor: Option<String>,
    auth_req_id: Option<String>,
    user_id: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    since: Option<String>,
    until: Option<String>,
}

fn instant(name: &str, value: Option<&str>) -> Result<Option<Timestamp>, ApiError> {
    value
        .map(|v| {
            Timestamp::parse_rfc3339(v).ok_or_else(|| {
                ApiError::invalid(
                    name,
                    format!("{name} must be an RFC 3339 time such as 2026-01-31T12:00:00Z."),
                )
            })
        })
        .transpose()
}

async fn list(
    State(state): State<AppState>,
    Path(env_id): Path<EnvironmentId>,
    ApiQuery(q): ApiQuery<ActivityQuery>,
) -> Result<Json<Value>, ApiError> {
    super::environment(&state, &env_id).await?;
    let page = PageQuery {
        limit: q.limit.clone(),
        cursor: q.cursor.clone(),
    }
    .page()?;
    let kind = q
        .kind
        .as_deref()
        .map(|k| {
            ActivityType::parse(k).ok_or_else(|| {
                let all: Vec<&str> = ActivityType::ALL.iter().map(|t| t.as_str()).collect();
                ApiError::invalid("type", format!("type must be one of {}.", all.join(", ")))
            })
        })
        .transpose()?;
    let filter = ActivityFilter {
        auth_req_id: q.auth_req_id.clone().map(Into::into),
        user_id: q.user_id.clone().map(Into::into),
        kind,
        since: instant("since", q.since.as_deref())?,
        until: instant("until", q.until.as_deref())?,
    };
    let list = state
        .store
        .list_activities(&env_id, &filter, &page)
        .await
        .map_err(|e| match e {
            assent_store::StoreError::Corrupt(what) if what.contains("cursor") => {
                ApiError::invalid("cursor", "The cursor is not valid.")
            }
            other => other.into(),
        })?;
    let mut extra: Vec<(&str, String)> = Vec::new();
    for (name, value) in [
        ("authReqId", &q.auth_req_id),
        ("userId", &q.user_id),
        ("type", &q.kind),
        ("since", &q.since),
        ("until", &q.until),
    ] {
        if let Some(v) = value {
            extra.push((name, v.clone()));
        }
    }
    Ok(Json(list_body(
        &state,
        &format!("/environments/{env_id}/activities"),
        "activities",
        &page,
        &list,
        &extra,
        render,
    )))
}
