//! The management API (§5): PingOne-shaped resources under `/v1`, behind the admin token.

use assent_core::{EnvironmentId, ListPage, Page};
use axum::Router;
use axum::extract::{FromRequest, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::error::{ApiError, ApiErrorCode, echo};
use crate::state::AppState;

pub mod activities;
pub mod applications;
pub mod ciba_requests;
pub mod devices;
pub mod environments;
pub mod openapi;
pub mod signing_keys;
pub mod users;

pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .merge(environments::router())
        .merge(applications::router())
        .merge(users::router())
        .merge(devices::router())
        .merge(activities::router())
        .merge(signing_keys::router())
        .merge(ciba_requests::router())
        .fallback(crate::error::api_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(state, require_admin))
        // Added after the admin layer: the document holds no secrets (docs/api.md).
        .route("/openapi.json", axum::routing::get(openapi::serve))
        .layer(axum::middleware::from_fn(crate::error::api_error_style))
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        ApiErrorCode::MethodNotAllowed,
        "The HTTP method is not allowed for this resource.",
    )
}

/// `Authorization: Bearer <admin token>`, compared in constant time; otherwise 401
/// `INVALID_TOKEN`. Also guards `/metrics`.
pub(crate) async fn require_admin(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        });
    match presented {
        Some(token)
            if assent_crypto::ct_eq(token.as_bytes(), state.config.admin_token.as_bytes()) =>
        {
            next.run(req).await
        }
        _ => ApiError::new(
            ApiErrorCode::InvalidToken,
            "The request could not be completed. The access token is missing or invalid.",
        )
        .into_response(),
    }
}

/// A JSON body whose decoding errors (bad JSON, unknown fields, wrong types) are 400
/// `INVALID_DATA` in the management error shape.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                let mime = v.split(';').next().unwrap_or("").trim();
                mime.eq_ignore_ascii_case("application/json") || mime.ends_with("+json")
            });
        if !is_json {
            return Err(ApiError::invalid(
                "body",
                "The request body must be application/json.",
            ));
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| {
                if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::too_large()
                } else {
                    ApiError::invalid("body", "The request body could not be read.")
                }
            })?;
        serde_json::from_slice(&bytes).map(ApiJson).map_err(|e| {
            ApiError::invalid(
                "body",
                format!("Invalid JSON body: {}", echo(&e.to_string())),
            )
        })
    }
}

/// Query parameters whose decoding errors are 400 `INVALID_DATA`.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> axum::extract::FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or("");
        serde_urlencoded_compat(query)
            .map(ApiQuery)
            .map_err(|e| e.into_error())
    }
}

/// Why a query string was refused.
enum QueryError {
    /// Not strictly percent-encoded UTF-8 (the OAuth forms' rule, [`crate::form::strict_decode`]).
    Encoding,
    Repeated(String),
    Typed(String),
}

impl QueryError {
    fn into_error(self) -> ApiError {
        match self {
            QueryError::Encoding => ApiError::invalid(
                "query",
                "The query string is not valid percent-encoded UTF-8.",
            ),
            QueryError::Repeated(k) => ApiError::invalid(
                "query",
                format!("Invalid query: parameter {} is repeated", echo(&k)),
            ),
            QueryError::Typed(e) => {
                ApiError::invalid("query", format!("Invalid query: {}", echo(&e)))
            }
        }
    }
}

fn serde_urlencoded_compat<T: DeserializeOwned>(query: &str) -> Result<T, QueryError> {
    // Decode to a map of strings first (rejecting repeats), then let serde type it.
    let mut map = serde_json::Map::new();
    for (k, v) in form_pairs(query)? {
        if map.contains_key(&k) {
            return Err(QueryError::Repeated(k));
        }
        map.insert(k, Value::String(v));
    }
    serde_json::from_value(Value::Object(map)).map_err(|e| QueryError::Typed(e.to_string()))
}

fn form_pairs(query: &str) -> Result<Vec<(String, String)>, QueryError> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let dec =
                |s: &str| crate::form::strict_decode(s.as_bytes()).ok_or(QueryError::Encoding);
            Ok((dec(k)?, dec(v)?))
        })
        .collect()
}

/// `?limit=&cursor=` of every list.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

impl PageQuery {
    pub fn page(&self) -> Result<Page, ApiError> {
        let limit = match self.limit.as_deref() {
            None => Page::DEFAULT_LIMIT,
            Some(s) => match s.parse::<u32>() {
                Ok(n) if (1..=Page::MAX_LIMIT).contains(&n) => n,
                _ => {
                    return Err(ApiError::invalid(
                        "limit",
                        format!("limit must be an integer from 1 to {}.", Page::MAX_LIMIT),
                    ));
                }
            },
        };
        Ok(Page {
            limit,
            cursor: self.cursor.clone(),
        })
    }
}

/// A PingOne-shaped list: `{"_embedded":{name:[...]},"count","size","_links"}`.
pub fn list_body<T>(
    state: &AppState,
    path: &str,
    name: &str,
    page: &Page,
    list: &ListPage<T>,
    extra_query: &[(&str, String)],
    render: impl Fn(&T) -> Value,
) -> Value {
    let items: Vec<Value> = list.items.iter().map(render).collect();
    let base = format!("{}/v1{}", state.config.public_url, path);
    let query = |cursor: Option<&str>| {
        let mut q = url_query(extra_query);
        q.push(("limit", page.limit.to_string()));
        if let Some(c) = cursor {
            q.push(("cursor", c.to_owned()));
        }
        let encoded: Vec<String> = q.iter().map(|(k, v)| format!("{k}={}", pct(v))).collect();
        format!("{base}?{}", encoded.join("&"))
    };
    let mut links = json!({ "self": { "href": query(page.cursor.as_deref()) } });
    if let Some(next) = &list.next {
        links["next"] = json!({ "href": query(Some(next)) });
    }
    json!({
        "_links": links,
        "_embedded": { name: items },
        "count": list.total,
        "size": list.items.len(),
    })
}

fn url_query<'a>(extra: &[(&'a str, String)]) -> Vec<(&'a str, String)> {
    extra.to_vec()
}

fn pct(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// Rejects any JSON that is not an object or has members outside `allowed` (400 INVALID_DATA).
pub fn require_object<'a>(
    value: &'a Value,
    allowed: &[&str],
) -> Result<&'a serde_json::Map<String, Value>, ApiError> {
    let obj = value
        .as_object()
        .ok_or_else(|| ApiError::invalid("body", "The request body must be a JSON object."))?;
    if let Some(unknown) = obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        // The name is echoed once, as the target, and shortened: it is caller input.
        return Err(ApiError::invalid(&echo(unknown), "Unknown field."));
    }
    Ok(obj)
}

/// Looks up the environment of a `/v1/environments/{envId}/…` path, or 404.
pub async fn environment(
    state: &AppState,
    env_id: &EnvironmentId,
) -> Result<assent_core::Environment, ApiError> {
    state
        .store
        .get_environment(env_id)
        .await
        .map_err(|e| match e {
            assent_store::StoreError::NotFound => ApiError::not_found("environment"),
            other => other.into(),
        })
}

/// Maps a store NotFound to a 404 naming the resource.
pub fn not_found_as(what: &'static str) -> impl Fn(assent_store::StoreError) -> ApiError {
    move |e| match e {
        assent_store::StoreError::NotFound => ApiError::not_found(what),
        other => other.into(),
    }
}

/// A member of a JSON object body: absent, explicitly null, or a value.
#[derive(Debug, PartialEq)]
pub enum Field<T> {
    Absent,
    Null,
    Value(T),
}

impl<T> Field<T> {
    /// Absent → keep `current`; null → `None`; value → `Some`.
    pub fn merge(self, current: Option<T>) -> Option<T> {
        match self {
            Field::Absent => current,
            Field::Null => None,
            Field::Value(v) => Some(v),
        }
    }
    pub fn value(self) -> Option<T> {
        match self {
            Field::Value(v) => Some(v),
            _ => None,
        }
    }
}

type Obj = serde_json::Map<String, Value>;

pub fn string_field(obj: &Obj, name: &str) -> Result<Field<String>, ApiError> {
    match obj.get(name) {
        None => Ok(Field::Absent),
        Some(Value::Null) => Ok(Field::Null),
        Some(Value::String(s)) => Ok(Field::Value(s.clone())),
        Some(_) => Err(ApiError::invalid(name, format!("{name} must be a string."))),
    }
}

pub fn bool_field(obj: &Obj, name: &str) -> Result<Field<bool>, ApiError> {
    match obj.get(name) {
        None => Ok(Field::Absent),
        Some(Value::Null) => Ok(Field::Null),
        Some(Value::Bool(b)) => Ok(Field::Value(*b)),
        Some(_) => Err(ApiError::invalid(
            name,
            format!("{name} must be a boolean."),
        )),
    }
}

pub fn int_field(obj: &Obj, name: &str, min: i64, max: i64) -> Result<Field<i64>, ApiError> {
    match obj.get(name) {
        None => Ok(Field::Absent),
        Some(Value::Null) => Ok(Field::Null),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(v) if (min..=max).contains(&v) => Ok(Field::Value(v)),
            _ => Err(ApiError::invalid(
                name,
                format!("{name} must be an integer from {min} to {max}."),
            )),
        },
        Some(_) => Err(ApiError::invalid(
            name,
            format!("{name} must be an integer."),
        )),
    }
}

/// A required, non-empty, single-line string of at most `max` characters.
pub fn check_text(name: &str, value: &str, max: usize) -> Result<(), ApiError> {
    let len = value.chars().count();
    if value.trim().is_empty() || len > max || value.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            name,
            format!("{name} must be 1 to {max} characters without control characters."),
        ));
    }
    Ok(())
}
