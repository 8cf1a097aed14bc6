//! `/v1/environments/{envId}/users` (§5). Passwords are argon2id-hashed, never stored or
//! returned in any other form; `autoDecision` exists only in SANDBOX environments (§6.5).

use assent_core::{
    AutoDecision, Environment, EnvironmentId, EnvironmentType, User, UserId, new_id,
};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::{
    ApiJson, ApiQuery, Field, bool_field, check_text, int_field, list_body, not_found_as,
    require_object, string_field,
};
use crate::error::{ApiError, ApiErrorCode};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/environments/{env_id}/users", get(list).post(create))
        .route(
            "/environments/{env_id}/users/{user_id}",
            get(show).patch(update).delete(delete),
        )
}

pub fn render(u: &User) -> Value {
    let name = if u.given_name.is_some() || u.family_name.is_some() {
        json!({ "given": u.given_name, "family": u.family_name })
    } else {
        Value::Null
    };
    json!({
        "id": u.id,
        "environment": { "id": u.environment_id },
        "username": u.username,
        "email": u.email,
        "name": name,
        "phoneNumber": u.phone_number,
        "enabled": u.enabled,
        "autoDecision": u.auto_decision.map(|d| d.as_str()),
        "autoDecisionDelayMs": u.auto_decision_delay_ms,
        "createdAt": u.created_at.to_rfc3339(),
        "updatedAt": u.updated_at.to_rfc3339(),
    })
}

pub(crate) const FIELDS: &[&str] = &[
    "username",
    "email",
    "name",
    "phoneNumber",
    "password",
    "enabled",
    "autoDecision",
    "autoDecisionDelayMs",
];

fn check_email(email: &str) -> Result<(), ApiError> {
    let valid = email.len() <= 254
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && domain.contains('.') && !domain.contains('@')
        });
    if valid {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "email",
            "email must be a valid email address.",
        ))
    }
}

/// Usernames and emails under the identifier profile (§9, `assent_core::identifier`): the
/// display form is stored; look-alikes (NFD vs NFC, bidi and zero-width characters, the Kelvin
/// sign) are refused or folded so two accounts never look the same.
fn identifier(target: &str, value: &str) -> Result<String, ApiError> {
    assent_core::identifier::display_form(value).map_err(|e| {
        ApiError::invalid(
            target,
            format!("{target} {e}; see docs/api.md, \"Usernames and emails\"."),
        )
    })
}

fn check_phone(phone: &str) -> Result<(), ApiError> {
    let digits = phone.chars().filter(char::is_ascii_digit).count();
    let allowed = phone
        .chars()
        .all(|c| c.is_ascii_digit() || " +-().".contains(c));
    if allowed && (3..=20).contains(&digits) {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "phoneNumber",
            "phoneNumber must be a phone number such as +1 555 010 2030.",
        ))
    }
}

fn apply(env: &Environment, user: &mut User, body: &Value) -> Result<(), ApiError> {
    let obj = require_object(body, FIELDS)?;
    match string_field(obj, "username")? {
        Field::Value(u) => {
            check_text("username", &u, 128)?;
            if u.contains(char::is_whitespace) || u.contains(':') {
                return Err(ApiError::invalid(
                    "username",
                    "username must not contain spaces or ':'.",
                ));
            }
            user.username = identifier("username", &u)?;
        }
        Field::Null => return Err(ApiError::invalid("username", "username cannot be null.")),
        Field::Absent => {}
    }
    let email = match string_field(obj, "email")? {
        Field::Value(e) => {
            check_email(&e)?;
            Field::Value(identifier("email", &e)?)
        }
        other => other,
    };
    user.email = email.merge(user.email.take());
    match obj.get("name") {
        None => {}
        Some(Value::Null) => {
            user.given_name = None;
            user.family_name = None;
        }
        Some(v) => {
            let n = require_object(v, &["given", "family"])
                .map_err(|_| ApiError::invalid("name", "name has members given and family."))?;
            for (field, slot) in [
                ("given", &mut user.given_name),
                ("family", &mut user.family_name),
            ] {
                let f = string_field(n, field).map_err(|_| {
                    ApiError::invalid(&format!("name.{field}"), "must be a string.")
                })?;
                if let Field::Value(s) = &f {
                    check_text(&format!("name.{field}"), s, 128)?;
                }
                *slot = f.merge(slot.take());
            }
        }
    }
    if let Field::Value(p) = &string_field(obj, "phoneNumber")? {
        check_phone(p)?;
    }
    user.phone_number = string_field(obj, "phoneNumber")?.merge(user.phone_number.take());
    match string_field(obj, "password")? {
        Field::Value(p) => {
            if p.chars().count() < 8 || p.len() > 1024 {
                return Err(ApiError::invalid(
                    "password",
                    "password must be 8 to 1024 characters.",
                ));
            }
            user.password_hash = Some(assent_crypto::hash_password(&p).map_err(|_| {
                ApiError::new(
                    ApiErrorCode::UnexpectedError,
                    "The password could not be hashed.",
                )
            })?);
        }
        Field::Null => user.password_hash = None,
        Field::Absent => {}
    }
    if let Some(e) = bool_field(obj, "enabled")?.value() {
        user.enabled = e;
    }
    match string_field(obj, "autoDecision")? {
        Field::Value(d) => {
            let d = AutoDecision::parse(&d).ok_or_else(|| {
                ApiError::invalid("autoDecision", "autoDecision must be APPROVE or DENY.")
            })?;
            if env.env_type != EnvironmentType::Sandbox {
                return Err(ApiError::invalid(
                    "autoDecision",
                    "autoDecision is only available in SANDBOX environments.",
                ));
            }
            user.auto_decision = Some(d);
        }
        Field::Null => user.auto_decision = None,
        Field::Absent => {}
    }
    match int_field(obj, "autoDecisionDelayMs", 0, 600_000)? {
        Field::Value(ms) => {
            if env.env_type != EnvironmentType::Sandbox {
                return Err(ApiError::invalid(
                    "autoDecisionDelayMs",
                    "autoDecisionDelayMs is only available in SANDBOX environments.",
                ));
            }
            user.auto_decision_delay_ms = Some(ms);
        }
        Field::Null => user.auto_decision_delay_ms = None,
        Field::Absent => {}
    }
    Ok(())
}

async fn create(
    State(state): State<AppState>,
    Path(env_id): Path<EnvironmentId>,
    ApiJson(body): ApiJson<Value>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let env = super::environment(&state, &env_id).await?;
    if body.get("username").is_none() {
        return Err(ApiError::invalid("username", "username is required."));
    }
    let now = state.now();
    let mut user = User {
        id: new_id().into(),
        environment_id: env_id.clone(),
        username: String::new(),
        email: None,
        given_name: None,
        family_name: None,
        phone_number: None,
        password_hash: None,
        enabled: true,
        auto_decision: None,
        auto_decision_delay_ms: None,
        created_at: now,
        updated_at: now,
    };
    // Hashing is deliberately slow: keep it off the async workers.
    let user = tokio::task::spawn_blocking(move || apply(&env, &mut user, &body).map(|()| user))
        .await
        .map_err(|_| ApiError::new(ApiErrorCode::UnexpectedError, "Internal error."))??;
    state.store.create_user(&user).await?;
    tracing::info!(environment_id = %env_id, user_id = %user.id, "user created");
    Ok((StatusCode::CREATED, Json(render(&user))))
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct UserQuery {
    limit: Option<String>,
    cursor: Option<String>,
    filter: Option<String>,
}

/// PingOne's SCIM-style filter, the one form supported: `username eq "value"`.
fn parse_username_filter(filter: &str) -> Result<String, ApiError> {
    let bad = || {
        ApiError::invalid(
            "filter",
            "Only the filter username eq \"<username>\" is supported.",
        )
    };
    let rest = filter.trim();
    let (attr, rest) = rest.split_once(char::is_whitespace).ok_or_else(bad)?;
    let (op, value) = rest
        .trim_start()
        .split_once(char::is_whitespace)
        .ok_or_else(bad)?;
    if !attr.eq_ignore_ascii_case("username") || !op.eq_ignore_ascii_case("eq") {
        return Err(bad());
    }
    let value = value.trim();
    let inner = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .ok_or_else(bad)?;
    if inner.contains('"') {
        return Err(bad());
    }
    Ok(inner.to_owned())
}

async fn list(
    State(state): State<AppState>,
    Path(env_id): Path<EnvironmentId>,
    ApiQuery(q): ApiQuery<UserQuery>,
) -> Result<Json<Value>, ApiError> {
    super::environment(&state, &env_id).await?;
    let page = super::PageQuery {
        limit: q.limit.clone(),
        cursor: q.cursor.clone(),
    }
    .page()?;
    let username = q.filter.as_deref().map(parse_username_filter).transpose()?;
    let list = state
        .store
        .list_users(&env_id, username.as_deref(), &page)
        .await?;
    let extra: Vec<(&str, String)> = q.filter.iter().map(|f| ("filter", f.clone())).collect();
    Ok(Json(list_body(
        &state,
        &format!("/environments/{env_id}/users"),
        "users",
        &page,
        &list,
        &extra,
        render,
    )))
}

async fn load(
    state: &AppState,
    env_id: &EnvironmentId,
    user_id: &UserId,
) -> Result<(Environment, User), ApiError> {
    let env = super::environment(state, env_id).await?;
    let user = state
        .store
        .get_user(env_id, user_id)
        .await
        .map_err(not_found_as("user"))?;
    Ok((env, user))
}

async fn show(
    State(state): State<AppState>,
    Path((env_id, user_id)): Path<(EnvironmentId, UserId)>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(render(&load(&state, &env_id, &user_id).await?.1)))
}

async fn update(
    State(state): State<AppState>,
    Path((env_id, user_id)): Path<(EnvironmentId, UserId)>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<Value>, ApiError> {
    let (env, mut user) = load(&state, &env_id, &user_id).await?;
    let now = state.now();
    let mut user =
        tokio::task::spawn_blocking(move || apply(&env, &mut user, &body).map(|()| user))
            .await
            .map_err(|_| ApiError::new(ApiErrorCode::UnexpectedError, "Internal error."))??;
    user.updated_at = now;
    state
        .store
        .update_user(&user)
        .await
        .map_err(not_found_as("user"))?;
    // The user's held device calls re-check their user (a disabled user ends them).
    state
        .store
        .publish(&assent_store::WakeKey::user(&env_id, &user_id));
    Ok(Json(render(&user)))
}

async fn delete(
    State(state): State<AppState>,
    Path((env_id, user_id)): Path<(EnvironmentId, UserId)>,
) -> Result<StatusCode, ApiError> {
    load(&state, &env_id, &user_id).await?;
    state
        .store
        .delete_user(&env_id, &user_id)
        .await
        .map_err(not_found_as("user"))?;
    state
        .store
        .publish(&assent_store::WakeKey::user(&env_id, &user_id));
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn username_filter() {
        assert_eq!(
            parse_username_filter("username eq \"alice\"").unwrap(),
            "alice"
        );
        assert_eq!(
            parse_username_filter("  USERNAME  EQ  \"a.b@c\" ").unwrap(),
            "a.b@c"
        );
        assert!(parse_username_filter("email eq \"a\"").is_err());
        assert!(parse_username_filter("username co \"a\"").is_err());
        assert!(parse_username_filter("username eq alice").is_err());
        assert!(parse_username_filter("username eq \"a\"b\"").is_err());
    }
}
