//! `/v1/environments` (§5). Creating an environment also creates its RS256 signing key.

use assent_core::{Environment, EnvironmentType, SigningAlgorithm, new_id};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::{
    ApiJson, ApiQuery, Field, PageQuery, check_text, list_body, require_object, string_field,
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
        "createdAt": env.created_at.to_rfc3339(),
        "updatedAt": env.updated_at.to_rfc3339(),
    })
}

pub(crate) const FIELDS: &[&str] = &["name", "type", "description"];

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
    let now = state.now();
    let env = Environment {
        id: new_id(),
        name,
        description,
        env_type,
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
        list,
        &[],
        render,
    )))
}

async fn show(
    State(state): State<AppState>,
    Path(env_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(render(&super::environment(&state, &env_id).await?)))
}

async fn update(
    State(state): State<AppState>,
    Path(env_id): Path<String>,
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
        Field::Value(t) => env.env_type = parse_type(&t)?,
        Field::Null => return Err(ApiError::invalid("type", "type cannot be null.")),
        Field::Absent => {}
    }
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
    Path(env_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    super::environment(&state, &env_id).await?;
    state.store.delete_environment(&env_id).await?;
    tracing::info!(environment_id = %env_id, "environment deleted");
    Ok(StatusCode::NO_CONTENT)
}
