//! `/v1/environments` (§5). Creating an environment also creates its RS256 signing key.

use assent_core::{
    AbuseLimits, Environment, EnvironmentId, EnvironmentType, SigningAlgorithm, new_id,
};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::{
    ApiJson, ApiQuery, Field, PageQuery, check_text, int_field, list_body, require_object,
    string_field,
};
use crate::error::ApiError;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/environments", get(list).post(create))
        .route(
            "/environments/{env_id}",
            get(show).patch(update).delete(delete),
        )
}

pub fn render(env: &Environment) -> Value {
    json!({
        "id": env.id,
        "name": env.name,
        "description": env.description,
        "type": env.env_type.as_str(),
        "abuseLimits": render_abuse_limits(&env.abuse_limits),
        "createdAt": env.created_at.to_rfc3339(),
        "updatedAt": env.updated_at.to_rfc3339(),
    })
}

pub(crate) const FIELDS: &[&str] = &["name", "type", "description", "abuseLimits"];
const ABUSE_FIELDS: &[&str] = &[
    "maxPendingRequestsPerUser",
    "authorizationRequestsPerMinute",
];
/// Upper bound of either abuse limit (a sanity bound; `null` is "no limit").
const ABUSE_LIMIT_MAX: i64 = 1_000_000;

fn render_abuse_limits(l: &AbuseLimits) -> Value {
    json!({
        "maxPendingRequestsPerUser": l.max_pending_requests_per_user,
        "authorizationRequestsPerMinute": l.authorization_requests_per_minute,
    })
}

/// Applies a body's `abuseLimits` to `base` (the current limits, or the defaults of a new
/// type): absent keeps `base`, `null` gives `defaults`, an object sets the members it gives
/// (each an integer ≥ 1, or `null` for no limit).
fn apply_abuse_limits(
    obj: &serde_json::Map<String, Value>,
    base: AbuseLimits,
    defaults: AbuseLimits,
) -> Result<AbuseLimits, ApiError> {
    let v = match obj.get("abuseLimits") {
        None => return Ok(base),
        Some(Value::Null) => return Ok(defaults),
        Some(v) => v,
    };
    let t = |f: &str| format!("abuseLimits.{f}");
    let limits = require_object(v, ABUSE_FIELDS).map_err(|mut e| {
        for d in &mut e.details {
            d.target = if v.is_object() {
                t(&d.target)
            } else {
                "abuseLimits".to_owned()
            };
        }
        e
    })?;
    let member = |name: &str, current: Option<i64>| {
        int_field(limits, name, 1, ABUSE_LIMIT_MAX)
            .map(|f| f.merge(current))
            .map_err(|_| {
                ApiError::invalid(
                    &t(name),
                    format!(
                        "abuseLimits.{name} must be an integer from 1 to {ABUSE_LIMIT_MAX}, or null for no limit."
                    ),
                )
            })
    };
    Ok(AbuseLimits {
        max_pending_requests_per_user: member(
            "maxPendingRequestsPerUser",
            base.max_pending_requests_per_user,
        )?,
        authorization_requests_per_minute: member(
            "authorizationRequestsPerMinute",
            base.authorization_requests_per_minute,
        )?,
    })
}

fn parse_type(v: &str) -> Result<EnvironmentType, ApiError> {
    EnvironmentType::parse(v)
        .ok_or_else(|| ApiError::invalid("type", "type must be SANDBOX or PRODUCTION."))
}

async fn create(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<Value>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let obj = require_object(&body, FIELDS)?;
    let name = string_field(obj, "name")?
        .value()
        .ok_or_else(|| ApiError::invalid("name", "name is required."))?;
    check_text("name", &name, 256)?;
    let env_type = match string_field(obj, "type")?.value() {
        Some(t) => parse_type(&t)?,
        None => {
            return Err(ApiError::invalid(
                "type",
                "type is required (SANDBOX or PRODUCTION).",
            ));
        }
    };
    let description = string_field(obj, "description")?.value();
    if let Some(d) = &description {
        check_description(d)?;
    }
    let defaults = AbuseLimits::defaults_for(env_type);
    let abuse_limits = apply_abuse_limits(obj, defaults, defaults)?;
    let now = state.now();
    let env = Environment {
        id: new_id().into(),
        name,
        description,
        env_type,
        abuse_limits,
        created_at: now,
        updated_at: now,
    };
    state.store.create_environment(&env).await?;
    state
        .keys
        .rotate(&env.id, SigningAlgorithm::RS256, now)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "could not create the environment's signing key");
            ApiError::new(
                crate::error::ApiErrorCode::UnexpectedError,
                "The environment's signing key could not be created.",
            )
        })?;
    tracing::info!(environment_id = %env.id, "environment created");
    Ok((StatusCode::CREATED, Json(render(&env))))
}

fn check_description(d: &str) -> Result<(), ApiError> {
    if d.chars().count() > 1024 {
        return Err(ApiError::invalid(
            "description",
            "description must be at most 1024 characters.",
        ));
    }
    Ok(())
}

async fn list(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<Value>, ApiError> {
    let page = q.page()?;
    let list = state.store.list_environments(&page).await?;
    Ok(Json(list_body(
        &state,
        "/environments",
        "environments",
        &page,
        &list,
        &[],
        render,
    )))
}

async fn show(
    State(state): State<AppState>,
    Path(env_id): Path<EnvironmentId>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(render(&super::environment(&state, &env_id).await?)))
}

async fn update(
    State(state): State<AppState>,
    Path(env_id): Path<EnvironmentId>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<Value>, ApiError> {
    let mut env = super::environment(&state, &env_id).await?;
    let obj = require_object(&body, FIELDS)?;
    match string_field(obj, "name")? {
        Field::Value(n) => {
            check_text("name", &n, 256)?;
            env.name = n;
        }
        Field::Null => return Err(ApiError::invalid("name", "name cannot be null.")),
        Field::Absent => {}
    }
    match string_field(obj, "type")? {
        Field::Value(t) => {
            let new_type = parse_type(&t)?;
            // A change of type brings the new type's default limits unless the body sets them.
            if new_type != env.env_type {
                env.abuse_limits = AbuseLimits::defaults_for(new_type);
            }
            env.env_type = new_type;
        }
        Field::Null => return Err(ApiError::invalid("type", "type cannot be null.")),
        Field::Absent => {}
    }
    env.abuse_limits = apply_abuse_limits(
        obj,
        env.abuse_limits,
        AbuseLimits::defaults_for(env.env_type),
    )?;
    if let Field::Value(d) = &string_field(obj, "description")? {
        check_description(d)?;
    }
    env.description = string_field(obj, "description")?.merge(env.description);
    env.updated_at = state.now();
    state.store.update_environment(&env).await?;
    Ok(Json(render(&env)))
}

async fn delete(
    State(state): State<AppState>,
    Path(env_id): Path<EnvironmentId>,
) -> Result<StatusCode, ApiError> {
    super::environment(&state, &env_id).await?;
    state.store.delete_environment(&env_id).await?;
    tracing::info!(environment_id = %env_id, "environment deleted");
    Ok(StatusCode::NO_CONTENT)
}
