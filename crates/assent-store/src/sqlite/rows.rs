//! Decoding rows into domain values: one function per table, plus the column helpers they share.
//! Anything that does not decode is `StoreError::Corrupt`, naming the column.

use assent_core::transition::{ScheduledWork, WorkId};
use assent_core::{
    AbuseLimits, AccessTokenRecord, Activity, ActivityType, Actor, ActorType, Application,
    AuditEntry, AutoDecision, CibaRequest, CibaStatus, DecisionChannel, DeliveryMode, Device,
    DeviceKeyAlgorithm, Environment, EnvironmentType, RefreshTokenRecord, SigningAlgorithm,
    SigningKey, Timestamp, TokenEndpointAuthMethod, User,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, Sqlite};

use crate::{ClaimedWork, StoreError, StoreResult};

fn get<'r, T>(row: &'r SqliteRow, col: &str) -> StoreResult<T>
where
    T: sqlx::Decode<'r, Sqlite> + sqlx::Type<Sqlite>,
{
    row.try_get(col)
        .map_err(|e| StoreError::Corrupt(format!("{col}: {e}")))
}

/// A typed id stored as TEXT.
fn id<T: From<String>>(row: &SqliteRow, col: &str) -> StoreResult<T> {
    get::<String>(row, col).map(T::from)
}

fn ts(row: &SqliteRow, col: &str) -> StoreResult<Timestamp> {
    get::<i64>(row, col).map(Timestamp)
}

fn opt_ts(row: &SqliteRow, col: &str) -> StoreResult<Option<Timestamp>> {
    get::<Option<i64>>(row, col).map(|v| v.map(Timestamp))
}

/// A wire-named enum stored as its `as_str()` text.
fn wire<E>(row: &SqliteRow, col: &str, parse: fn(&str) -> Option<E>) -> StoreResult<E> {
    let text: String = get(row, col)?;
    parse(&text).ok_or_else(|| StoreError::Corrupt(format!("{col}: unknown value {text:?}")))
}

fn opt_wire<E>(row: &SqliteRow, col: &str, parse: fn(&str) -> Option<E>) -> StoreResult<Option<E>> {
    match get::<Option<String>>(row, col)? {
        None => Ok(None),
        Some(text) => parse(&text)
            .map(Some)
            .ok_or_else(|| StoreError::Corrupt(format!("{col}: unknown value {text:?}"))),
    }
}

fn json<T: DeserializeOwned>(row: &SqliteRow, col: &str) -> StoreResult<T> {
    let text: String = get(row, col)?;
    serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(format!("{col}: {e}")))
}

fn opt_json<T: DeserializeOwned>(row: &SqliteRow, col: &str) -> StoreResult<Option<T>> {
    match get::<Option<String>>(row, col)? {
        None => Ok(None),
        Some(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| StoreError::Corrupt(format!("{col}: {e}"))),
    }
}

/// Encodes a value for a JSON TEXT column.
pub(super) fn to_json<T: Serialize + ?Sized>(value: &T) -> StoreResult<String> {
    serde_json::to_string(value)
        .map_err(|e| StoreError::Corrupt(format!("cannot encode JSON: {e}")))
}

pub(super) fn opt_to_json<T: Serialize>(value: Option<&T>) -> StoreResult<Option<String>> {
    value.map(to_json).transpose()
}

pub(super) fn environment(row: &SqliteRow) -> StoreResult<Environment> {
    Ok(Environment {
        id: id(row, "id")?,
        name: get(row, "name")?,
        description: get(row, "description")?,
        env_type: wire(row, "env_type", EnvironmentType::parse)?,
        abuse_limits: AbuseLimits {
            max_pending_requests_per_user: get(row, "max_pending_requests_per_user")?,
            authorization_requests_per_minute: get(row, "authorization_requests_per_minute")?,
        },
        created_at: ts(row, "created_at")?,
        updated_at: ts(row, "updated_at")?,
    })
}

pub(super) fn application(row: &SqliteRow) -> StoreResult<Application> {
    Ok(Application {
        id: id(row, "id")?,
        environment_id: id(row, "environment_id")?,
        name: get(row, "name")?,
        description: get(row, "description")?,
        enabled: get(row, "enabled")?,
        protocol: get(row, "protocol")?,
        app_type: get(row, "app_type")?,
        grant_types: json(row, "grant_types")?,
        token_endpoint_auth_method: wire(
            row,
            "token_endpoint_auth_method",
            TokenEndpointAuthMethod::parse,
        )?,
        jwks: opt_json(row, "jwks")?,
        jwks_url: get(row, "jwks_url")?,
        id_token_signing_algorithm: wire(
            row,
            "id_token_signing_algorithm",
            SigningAlgorithm::parse,
        )?,
        access_token_duration_seconds: get(row, "access_token_duration_seconds")?,
        refresh_token_duration_seconds: get(row, "refresh_token_duration_seconds")?,
        refresh_token_reuse_grace_seconds: get(row, "refresh_token_reuse_grace_seconds")?,
        ciba: json(row, "ciba")?,
        created_at: ts(row, "created_at")?,
        updated_at: ts(row, "updated_at")?,
    })
}

pub(super) fn user(row: &SqliteRow) -> StoreResult<User> {
    Ok(User {
        id: id(row, "id")?,
        environment_id: id(row, "environment_id")?,
        username: get(row, "username")?,
        email: get(row, "email")?,
        given_name: get(row, "given_name")?,
        family_name: get(row, "family_name")?,
        phone_number: get(row, "phone_number")?,
        password_hash: get(row, "password_hash")?,
        enabled: get(row, "enabled")?,
        auto_decision: opt_wire(row, "auto_decision", AutoDecision::parse)?,
        auto_decision_delay_ms: get(row, "auto_decision_delay_ms")?,
        created_at: ts(row, "created_at")?,
        updated_at: ts(row, "updated_at")?,
    })
}

pub(super) fn signing_key(row: &SqliteRow) -> StoreResult<SigningKey> {
    Ok(SigningKey {
        id: get(row, "id")?,
        environment_id: id(row, "environment_id")?,
        algorithm: wire(row, "algorithm", SigningAlgorithm::parse)?,
        public_jwk: json(row, "public_jwk")?,
        private_key_sealed: get(row, "private_key_sealed")?,
        current: get(row, "is_current")?,
        created_at: ts(row, "created_at")?,
        retire_at: opt_ts(row, "retire_at")?,
    })
}

/// The columns of a row by name, whichever driver read it: sqlx's rows, and rusqlite's for the
/// hot reads of a CIBA request and of tokens (`reader.rs`), decode through the same mapping.
pub(super) trait Cells {
    fn text(&self, col: &str) -> StoreResult<Option<String>>;
    fn int(&self, col: &str) -> StoreResult<Option<i64>>;
}

impl Cells for SqliteRow {
    fn text(&self, col: &str) -> StoreResult<Option<String>> {
        get(self, col)
    }

    fn int(&self, col: &str) -> StoreResult<Option<i64>> {
        get(self, col)
    }
}

impl Cells for rusqlite::Row<'_> {
    fn text(&self, col: &str) -> StoreResult<Option<String>> {
        self.get(col)
            .map_err(|e| StoreError::Corrupt(format!("{col}: {e}")))
    }

    fn int(&self, col: &str) -> StoreResult<Option<i64>> {
        self.get(col)
            .map_err(|e| StoreError::Corrupt(format!("{col}: {e}")))
    }
}

fn required<T>(value: Option<T>, col: &str) -> StoreResult<T> {
    value.ok_or_else(|| StoreError::Corrupt(format!("{col}: unexpected NULL")))
}

fn cell_text(row: &impl Cells, col: &str) -> StoreResult<String> {
    required(row.text(col)?, col)
}

fn cell_ts(row: &impl Cells, col: &str) -> StoreResult<Timestamp> {
    required(row.int(col)?, col).map(Timestamp)
}

fn cell_wire<E>(row: &impl Cells, col: &str, parse: fn(&str) -> Option<E>) -> StoreResult<E> {
    let text = cell_text(row, col)?;
    parse(&text).ok_or_else(|| StoreError::Corrupt(format!("{col}: unknown value {text:?}")))
}

/// A BOOLEAN column (SQLite stores 0 or 1).
fn cell_bool(row: &impl Cells, col: &str) -> StoreResult<bool> {
    required(row.int(col)?, col).map(|v| v != 0)
}

fn cell_json<T: DeserializeOwned>(row: &impl Cells, col: &str) -> StoreResult<T> {
    let text = cell_text(row, col)?;
    serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(format!("{col}: {e}")))
}

fn cell_opt_json<T: DeserializeOwned>(row: &impl Cells, col: &str) -> StoreResult<Option<T>> {
    match row.text(col)? {
        None => Ok(None),
        Some(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| StoreError::Corrupt(format!("{col}: {e}"))),
    }
}

pub(super) fn ciba_request(row: &impl Cells) -> StoreResult<CibaRequest> {
    Ok(CibaRequest {
        auth_req_id: cell_text(row, "auth_req_id")?.into(),
        environment_id: cell_text(row, "environment_id")?.into(),
        application_id: cell_text(row, "application_id")?.into(),
        user_id: cell_text(row, "user_id")?.into(),
        scope: cell_text(row, "scope")?,
        binding_message: row.text("binding_message")?,
        acr_values: row.text("acr_values")?,
        authorization_details: cell_opt_json(row, "authorization_details")?,
        delivery_mode: cell_wire(row, "delivery_mode", DeliveryMode::parse)?,
        client_notification_token: row.text("client_notification_token")?,
        created_at: cell_ts(row, "created_at")?,
        expires_at: cell_ts(row, "expires_at")?,
        interval_seconds: required(row.int("interval_seconds")?, "interval_seconds")?,
        last_polled_at: row.int("last_polled_at")?.map(Timestamp),
        status: cell_wire(row, "status", CibaStatus::parse)?,
        decision: cell_opt_json(row, "decision")?,
        redeemed_at: row.int("redeemed_at")?.map(Timestamp),
    })
}

pub(super) fn access_token(row: &impl Cells) -> StoreResult<AccessTokenRecord> {
    Ok(AccessTokenRecord {
        jti: cell_text(row, "jti")?,
        environment_id: cell_text(row, "environment_id")?.into(),
        application_id: cell_text(row, "application_id")?.into(),
        user_id: row.text("user_id")?.map(Into::into),
        scope: cell_text(row, "scope")?,
        auth_req_id: row.text("auth_req_id")?.map(Into::into),
        refresh_family_id: row.text("refresh_family_id")?,
        issued_at: cell_ts(row, "issued_at")?,
        expires_at: cell_ts(row, "expires_at")?,
        revoked: cell_bool(row, "revoked")?,
    })
}

pub(super) fn refresh_token(row: &impl Cells) -> StoreResult<RefreshTokenRecord> {
    Ok(RefreshTokenRecord {
        token_hash: cell_text(row, "token_hash")?,
        family_id: cell_text(row, "family_id")?,
        environment_id: cell_text(row, "environment_id")?.into(),
        application_id: cell_text(row, "application_id")?.into(),
        user_id: cell_text(row, "user_id")?.into(),
        scope: cell_text(row, "scope")?,
        auth_req_id: row.text("auth_req_id")?.map(Into::into),
        auth_time: cell_ts(row, "auth_time")?,
        acr: row.text("acr")?,
        amr: cell_json(row, "amr")?,
        issued_at: cell_ts(row, "issued_at")?,
        expires_at: cell_ts(row, "expires_at")?,
        rotated_at: row.int("rotated_at")?.map(Timestamp),
        revoked: cell_bool(row, "revoked")?,
    })
}

/// A claimed `scheduled_work` row. `attempts` counts claims before this one (the column
/// already counts this one).
pub(super) fn claimed_work(row: &SqliteRow) -> StoreResult<ClaimedWork> {
    Ok(ClaimedWork {
        work: ScheduledWork {
            id: WorkId(get(row, "id")?),
            environment_id: id(row, "environment_id")?,
            due_at: ts(row, "due_at")?,
            job: json(row, "payload")?,
        },
        attempts: get::<i64>(row, "attempts")? - 1,
        claimed_until: ts(row, "claimed_until")?,
    })
}

pub(super) fn device(row: &impl Cells) -> StoreResult<Device> {
    Ok(Device {
        id: cell_text(row, "id")?,
        environment_id: cell_text(row, "environment_id")?.into(),
        user_id: cell_text(row, "user_id")?.into(),
        name: cell_text(row, "name")?,
        algorithm: cell_wire(row, "algorithm", DeviceKeyAlgorithm::parse)?,
        public_jwk: cell_json(row, "public_jwk")?,
        enabled: cell_bool(row, "enabled")?,
        created_at: cell_ts(row, "created_at")?,
        updated_at: cell_ts(row, "updated_at")?,
    })
}

pub(super) fn activity(row: &impl Cells) -> StoreResult<Activity> {
    let channel = match row.text("channel")? {
        None => None,
        Some(c) => Some(
            DecisionChannel::parse(&c)
                .ok_or_else(|| StoreError::Corrupt(format!("channel: unknown value {c:?}")))?,
        ),
    };
    Ok(Activity {
        seq: required(row.int("seq")?, "seq")?,
        entry: AuditEntry {
            id: cell_text(row, "id")?,
            environment_id: cell_text(row, "environment_id")?.into(),
            kind: cell_wire(row, "type", ActivityType::parse)?,
            at: cell_ts(row, "at")?,
            auth_req_id: row.text("auth_req_id")?.map(Into::into),
            user_id: row.text("user_id")?.map(Into::into),
            application_id: row.text("application_id")?.map(Into::into),
            device_id: row.text("device_id")?,
            actor: Actor::new(
                cell_wire(row, "actor_type", ActorType::parse)?,
                row.text("actor_id")?,
            ),
            channel,
            correlation_id: row.text("correlation_id")?,
            details: cell_json(row, "details")?,
        },
    })
}
