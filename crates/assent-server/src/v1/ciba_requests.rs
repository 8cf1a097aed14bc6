//! `/v1/environments/{envId}/cibaRequests` (§5, §6.5): pending requests, cancellation, and
//! simulated user decisions in SANDBOX environments.

use std::collections::HashMap;

use assent_core::{
    ApplicationId, AuthReqId, CibaRequest, CibaStatus, DecisionChannel, DecisionOutcome,
    EnvironmentId, EnvironmentType, Timestamp, UserId,
};
use assent_store::CibaRequestFilter;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::{ApiQuery, list_body};
use crate::error::{ApiError, ApiErrorCode};
use crate::service::decisions::{DecideFailure, DecisionInput, decide};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/environments/{env_id}/cibaRequests", get(list))
        .route(
            "/environments/{env_id}/cibaRequests/{auth_req_id}",
            get(show).delete(cancel),
        )
        .route(
            "/environments/{env_id}/cibaRequests/{auth_req_id}/approve",
            post(approve),
        )
        .route(
            "/environments/{env_id}/cibaRequests/{auth_req_id}/deny",
            post(deny),
        )
}

/// Names of the application and user shown with each request.
#[derive(Default)]
struct Names {
    apps: HashMap<ApplicationId, Option<String>>,
    users: HashMap<UserId, Option<String>>,
}

impl Names {
    async fn load(state: &AppState, env_id: &EnvironmentId, reqs: &[CibaRequest]) -> Names {
        let mut names = Names::default();
        for r in reqs {
            if !names.apps.contains_key(&r.application_id) {
                let n = state
                    .store
                    .get_application(env_id, &r.application_id)
                    .await
                    .ok()
                    .map(|a| a.name);
                names.apps.insert(r.application_id.clone(), n);
            }
            if !names.users.contains_key(&r.user_id) {
                let n = state
                    .store
                    .get_user(env_id, &r.user_id)
                    .await
                    .ok()
                    .map(|u| u.username);
                names.users.insert(r.user_id.clone(), n);
            }
        }
        names
    }
}

fn render(r: &CibaRequest, names: &Names, now: Timestamp) -> Value {
    let decision = r.decision.as_ref().map(|d| {
        json!({
            "outcome": d.outcome.as_str(),
            "channel": d.channel.as_str(),
            "deviceId": d.device_id,
            "amr": d.amr,
            "evidence": d.evidence,
        })
    });
    json!({
        "id": r.auth_req_id,
        "environment": { "id": r.environment_id },
        "status": r.status_at(now).as_str(),
        "application": { "id": r.application_id, "name": names.apps.get(&r.application_id).cloned().flatten() },
        "user": { "id": r.user_id, "username": names.users.get(&r.user_id).cloned().flatten() },
        "scope": r.scope,
        "bindingMessage": r.binding_message,
        "acrValues": r.acr_values,
        "authorizationDetails": r.authorization_details,
        "deliveryMode": r.delivery_mode.as_str(),
        "createdAt": r.created_at.to_rfc3339(),
        "updatedAt": r.decision.as_ref().map(|d| d.decided_at).or(r.redeemed_at).unwrap_or(r.created_at).to_rfc3339(),
        "expiresAt": r.expires_at.to_rfc3339(),
        "decidedAt": r.decision.as_ref().map(|d| d.decided_at.to_rfc3339()),
        "decision": decision,
    })
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RequestQuery {
    limit: Option<String>,
    cursor: Option<String>,
    status: Option<String>,
    user_id: Option<UserId>,
    application_id: Option<ApplicationId>,
}

async fn list(
    State(state): State<AppState>,
    Path(env_id): Path<EnvironmentId>,
    ApiQuery(q): ApiQuery<RequestQuery>,
) -> Result<Json<Value>, ApiError> {
    super::environment(&state, &env_id).await?;
    let page = super::PageQuery {
        limit: q.limit.clone(),
        cursor: q.cursor.clone(),
    }
    .page()?;
    let status = q
        .status
        .as_deref()
        .map(|s| {
            CibaStatus::parse(s).ok_or_else(|| {
                ApiError::invalid(
                    "status",
                    "status must be PENDING, APPROVED, DENIED, CANCELLED, EXPIRED or REDEEMED.",
                )
            })
        })
        .transpose()?;
    let filter = CibaRequestFilter {
        status,
        user_id: q.user_id.clone(),
        application_id: q.application_id.clone(),
    };
    let now = state.now();
    let list = state
        .store
        .list_ciba_requests(&env_id, &filter, now, &page)
        .await?;
    let names = Names::load(&state, &env_id, &list.items).await;
    let mut extra = Vec::new();
    if let Some(s) = &q.status {
        extra.push(("status", s.clone()));
    }
    if let Some(u) = &q.user_id {
        extra.push(("userId", u.to_string()));
    }
    if let Some(a) = &q.application_id {
        extra.push(("applicationId", a.to_string()));
    }
    Ok(Json(list_body(
        &state,
        &format!("/environments/{env_id}/cibaRequests"),
        "cibaRequests",
        &page,
        &list,
        &extra,
        |r| render(r, &names, now),
    )))
}

async fn show(
    State(state): State<AppState>,
    Path((env_id, auth_req_id)): Path<(EnvironmentId, AuthReqId)>,
) -> Result<Json<Value>, ApiError> {
    super::environment(&state, &env_id).await?;
    let req = state
        .store
        .get_ciba_request(&env_id, &auth_req_id)
        .await
        .map_err(super::not_found_as("CIBA request"))?;
    let names = Names::load(&state, &env_id, std::slice::from_ref(&req)).await;
    Ok(Json(render(&req, &names, state.now())))
}

fn decide_error(e: DecideFailure) -> ApiError {
    match e {
        DecideFailure::NotFound => ApiError::not_found("CIBA request"),
        DecideFailure::Refused(why) => {
            ApiError::conflict(format!("The request cannot be decided: {why}."))
        }
        DecideFailure::Store(e) => e.into(),
    }
}

async fn cancel(
    State(state): State<AppState>,
    Path((env_id, auth_req_id)): Path<(EnvironmentId, AuthReqId)>,
) -> Result<StatusCode, ApiError> {
    super::environment(&state, &env_id).await?;
    let input = DecisionInput {
        outcome: DecisionOutcome::Cancel,
        channel: DecisionChannel::Admin,
        amr: Vec::new(),
        device_id: None,
        evidence: None,
    };
    decide(&state, &env_id, &auth_req_id, input, state.now())
        .await
        .map_err(decide_error)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn simulate(
    state: &AppState,
    env_id: &EnvironmentId,
    auth_req_id: &AuthReqId,
    outcome: DecisionOutcome,
) -> Result<StatusCode, ApiError> {
    let env = super::environment(state, env_id).await?;
    if env.env_type != EnvironmentType::Sandbox {
        return Err(ApiError::new(
            ApiErrorCode::AccessFailed,
            "Simulated decisions are only available in SANDBOX environments.",
        ));
    }
    let input = DecisionInput {
        outcome,
        channel: DecisionChannel::Sandbox,
        amr: vec!["sim".into()],
        device_id: None,
        evidence: None,
    };
    decide(state, env_id, auth_req_id, input, state.now())
        .await
        .map_err(decide_error)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn approve(
    State(state): State<AppState>,
    Path((env_id, auth_req_id)): Path<(EnvironmentId, AuthReqId)>,
) -> Result<StatusCode, ApiError> {
    simulate(&state, &env_id, &auth_req_id, DecisionOutcome::Approve).await
}

async fn deny(
    State(state): State<AppState>,
    Path((env_id, auth_req_id)): Path<(EnvironmentId, AuthReqId)>,
) -> Result<StatusCode, ApiError> {
    simulate(&state, &env_id, &auth_req_id, DecisionOutcome::Deny).await
}
