//! The SQLite store: one database file in WAL mode with `synchronous=FULL` (an accepted CIBA
//! request survives a power cut), foreign keys enforced, schema migrated at open.
//!
//! One write is exempt from the fsync: the poll bookkeeping of `record_poll` goes through a
//! second pool with `synchronous=NORMAL`. Its commits are durable against a process crash
//! (kill -9) but may be lost to a power cut; the next FULL commit syncs them with it. Losing
//! one "last polled at" only spares one client one `slow_down`, and keeping the fsync off the
//! poll path roughly triples poll throughput (docs/performance.md).
//!
//! Every statement filters by `environment_id`; conditional writes (`record_poll`, decisions,
//! redemption, refresh rotation, `use_jti`) are single conditional statements or `BEGIN
//! IMMEDIATE` transactions whose outcome is read from the affected row count, so concurrent
//! callers (pool connections or processes sharing the file) cannot both win.

mod paging;
mod rows;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use assent_core::ciba::{
    AbuseGuard, AbuseLimit, EXPIRED_ANSWERABLE_SECS, PollUpdate, RATE_WINDOW_SECS,
};
use assent_core::identifier::comparison_key;
use assent_core::validate::normalize_phone;
use assent_core::{
    AccessTokenRecord, Application, CibaRequest, CibaStatus, Decision, DecisionOutcome,
    Environment, IssuedTokens, ListPage, Page, RefreshTokenRecord, SigningAlgorithm, SigningKey,
    Timestamp, User,
};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Sqlite, SqliteExecutor, SqlitePool};

use self::paging::{ListSpec, list_page};
use self::rows::{opt_to_json, to_json};
use crate::{
    Admission, CibaRequestFilter, RefreshOutcome, Resealed, SealedKind, SealedValue, Store,
    StoreError, StoreResult,
};

const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Access tokens are kept this long past expiry (introspection of a just-expired token still
/// finds it).
const ACCESS_TOKEN_KEEP_MS: i64 = 24 * 3600 * 1000;

pub struct SqliteStore {
    pool: SqlitePool,
    /// `synchronous=NORMAL` connections for poll bookkeeping (the same pool in memory).
    bookkeeping: SqlitePool,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if missing) the database file at `path` and applies pending migrations.
    pub async fn open(path: &Path) -> StoreResult<SqliteStore> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options.clone())
            .await
            .map_err(db_err)?;
        let store = Self::migrated(pool.clone(), pool).await?;
        let bookkeeping = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.synchronous(SqliteSynchronous::Normal))
            .await
            .map_err(db_err)?;
        Ok(SqliteStore {
            bookkeeping,
            ..store
        })
    }

    /// A private in-memory database (for tests). The pool holds exactly one connection that
    /// is never recycled, so every caller sees the same data for the store's lifetime.
    pub async fn open_in_memory() -> StoreResult<SqliteStore> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:")
            .map_err(db_err)?
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .min_connections(1)
            .max_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await
            .map_err(db_err)?;
        Self::migrated(pool.clone(), pool).await
    }

    async fn migrated(pool: SqlitePool, bookkeeping: SqlitePool) -> StoreResult<SqliteStore> {
        sqlx::migrate!("migrations/sqlite")
            .run(&pool)
            .await
            .map_err(|e| StoreError::Database(format!("migration failed: {e}")))?;
        rekey_identifiers(&pool).await?;
        Ok(SqliteStore { pool, bookkeeping })
    }

    /// Closes the pool (checkpointing the WAL); further calls fail.
    pub async fn close(&self) {
        self.bookkeeping.close().await;
        self.pool.close().await;
    }

    async fn begin_write(&self) -> StoreResult<sqlx::Transaction<'static, Sqlite>> {
        // IMMEDIATE takes the write lock up front: conditional read-then-write sequences in the
        // transaction cannot interleave with another writer.
        self.pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_err)
    }
}

// --- errors -----------------------------------------------------------------------------------

/// Fields whose uniqueness violations are reported by name; found in the constraint name
/// (PostgreSQL) or the message (SQLite: "UNIQUE constraint failed: users.environment_id,
/// users.username_lower").
const UNIQUE_FIELDS: &[&str] = &[
    "username",
    "email",
    "auth_req_id",
    "token_hash",
    "jti",
    "algorithm",
];

/// The one mapping from database errors to `StoreError`: unique violations become
/// `Conflict(<field>)`, foreign-key violations (the environment, application or user referred to
/// does not exist) `NotFound`, undecodable values `Corrupt`, the rest `Database`.
#[expect(
    clippy::needless_pass_by_value,
    reason = "by value so that every query reads `.map_err(db_err)`"
)]
pub(crate) fn db_err(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::RowNotFound => StoreError::NotFound,
        sqlx::Error::Database(d) if d.is_unique_violation() => {
            let haystack = format!("{} {}", d.constraint().unwrap_or_default(), d.message());
            let field = UNIQUE_FIELDS
                .iter()
                .find(|f| haystack.contains(*f))
                .copied()
                .unwrap_or("id");
            StoreError::Conflict(field.to_owned())
        }
        sqlx::Error::Database(d) if d.is_foreign_key_violation() => StoreError::NotFound,
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => {
            StoreError::Corrupt(e.to_string())
        }
        _ => StoreError::Database(e.to_string()),
    }
}

/// `Ok(())` if a write touched a row, `NotFound` otherwise.
fn found(result: &sqlx::sqlite::SqliteQueryResult) -> StoreResult<()> {
    if result.rows_affected() == 0 {
        Err(StoreError::NotFound)
    } else {
        Ok(())
    }
}

/// Once, after migration 0004: recomputes the username and email keys of rows written under
/// the old rule (`str::to_lowercase`) with the identifier profile. A stored name that is not a
/// valid identifier keeps its old key (it can still be found by its exact old form, and is
/// named in a warning so an admin can rename it); two users whose names now share a key stop the
/// start-up with both named, since letting either sign in would be a guess.
async fn rekey_identifiers(pool: &SqlitePool) -> StoreResult<()> {
    use sqlx::Row;
    let pending: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'identifier_rekey_pending'",
    )
    .fetch_optional(pool)
    .await
    .map_err(db_err)?;
    if pending.is_none() {
        return Ok(());
    }
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(db_err)?;
    let rows = sqlx::query(
        "SELECT environment_id, id, username, username_lower, email, email_lower FROM users",
    )
    .fetch_all(&mut *tx)
    .await
    .map_err(db_err)?;
    // Unique placeholders first, so re-keying one row cannot collide with another's old key.
    sqlx::query(
        "UPDATE users SET username_lower = char(0) || id,
                          email_lower = CASE WHEN email_lower IS NULL THEN NULL ELSE char(0) || id END",
    )
    .execute(&mut *tx)
    .await
    .map_err(db_err)?;
    for row in &rows {
        let env: String = row.try_get("environment_id").map_err(db_err)?;
        let id: String = row.try_get("id").map_err(db_err)?;
        let username: String = row.try_get("username").map_err(db_err)?;
        let old_username_key: String = row.try_get("username_lower").map_err(db_err)?;
        let email: Option<String> = row.try_get("email").map_err(db_err)?;
        let old_email_key: Option<String> = row.try_get("email_lower").map_err(db_err)?;
        let username_key = comparison_key(&username).unwrap_or_else(|e| {
            tracing::warn!(environment_id = %env, user_id = %id, error = %e, "stored username is not a valid identifier under the new profile; rename the user");
            old_username_key.clone()
        });
        let email_key = match (&email, old_email_key) {
            (Some(e), old) => Some(comparison_key(e).unwrap_or_else(|err| {
                tracing::warn!(environment_id = %env, user_id = %id, error = %err, "stored email is not a valid identifier under the new profile; correct it");
                old.unwrap_or_default()
            })),
            (None, _) => None,
        };
        sqlx::query(
            "UPDATE users SET username_lower = ?, email_lower = ? WHERE environment_id = ? AND id = ?",
        )
        .bind(&username_key)
        .bind(&email_key)
        .bind(&env)
        .bind(&id)
        .execute(&mut *tx)
        .await
        .map_err(|e| match db_err(e) {
            StoreError::Conflict(field) => StoreError::Database(format!(
                "user {id} of environment {env}: its {field} now compares equal to another user's \
                 under the identifier profile (RFC 8265); rename one of them with an earlier version"
            )),
            other => other,
        })?;
    }
    sqlx::query("DROP TABLE identifier_rekey_pending")
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    tx.commit().await.map_err(db_err)?;
    if !rows.is_empty() {
        tracing::info!(
            users = rows.len(),
            "usernames and emails re-keyed under the identifier profile"
        );
    }
    Ok(())
}

/// The comparison key of a username or email being stored (§9 "Identifiers"; the policy is
/// `assent_core::identifier`). Callers validate first, so a failure here is a caller's bug.
fn key(s: &str) -> StoreResult<String> {
    comparison_key(s).map_err(|e| StoreError::Invalid(format!("not a valid identifier: {e}")))
}

fn sealed_order(v: &SealedValue) -> (u8, &str, &str) {
    let kind = match v.kind {
        SealedKind::ApplicationSecret => 0,
        SealedKind::SigningKey => 1,
    };
    (kind, &v.environment_id, &v.id)
}

/// Every sealed value (client secrets, then signing private keys), ordered by environment and id.
async fn sealed_values<'e>(db: impl SqliteExecutor<'e>) -> StoreResult<Vec<SealedValue>> {
    let rows: Vec<(i64, String, String, Vec<u8>)> = sqlx::query_as(
        "SELECT 0, environment_id, id, secret_sealed FROM applications
         UNION ALL
         SELECT 1, environment_id, id, private_key_sealed FROM signing_keys
         ORDER BY 1, 2, 3",
    )
    .fetch_all(db)
    .await
    .map_err(db_err)?;
    Ok(rows
        .into_iter()
        .map(|(kind, environment_id, id, sealed)| SealedValue {
            kind: if kind == 0 {
                SealedKind::ApplicationSecret
            } else {
                SealedKind::SigningKey
            },
            environment_id,
            id,
            sealed,
        })
        .collect())
}

fn stored_status(outcome: DecisionOutcome) -> CibaStatus {
    match outcome {
        DecisionOutcome::Approve => CibaStatus::Approved,
        DecisionOutcome::Deny => CibaStatus::Denied,
        DecisionOutcome::Cancel => CibaStatus::Cancelled,
    }
}

// --- shared writes ----------------------------------------------------------------------------

async fn insert_ciba_request<'e>(
    executor: impl SqliteExecutor<'e>,
    req: &CibaRequest,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO ciba_requests (environment_id, auth_req_id, application_id, user_id,
             scope, binding_message, acr_values, authorization_details, delivery_mode,
             client_notification_token, created_at, expires_at, interval_seconds,
             last_polled_at, status, decision, redeemed_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&req.environment_id)
    .bind(&req.auth_req_id)
    .bind(&req.application_id)
    .bind(&req.user_id)
    .bind(&req.scope)
    .bind(&req.binding_message)
    .bind(&req.acr_values)
    .bind(opt_to_json(req.authorization_details.as_ref())?)
    .bind(req.delivery_mode.as_str())
    .bind(&req.client_notification_token)
    .bind(req.created_at.millis())
    .bind(req.expires_at.millis())
    .bind(req.interval_seconds)
    .bind(req.last_polled_at.map(Timestamp::millis))
    .bind(req.status.as_str())
    .bind(opt_to_json(req.decision.as_ref())?)
    .bind(req.redeemed_at.map(Timestamp::millis))
    .execute(executor)
    .await
    .map_err(db_err)?;
    Ok(())
}

async fn insert_access_token<'e>(
    ex: impl SqliteExecutor<'e>,
    t: &AccessTokenRecord,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO access_tokens (environment_id, jti, application_id, user_id, scope,
             auth_req_id, refresh_family_id, issued_at, expires_at, revoked)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&t.environment_id)
    .bind(&t.jti)
    .bind(&t.application_id)
    .bind(&t.user_id)
    .bind(&t.scope)
    .bind(&t.auth_req_id)
    .bind(&t.refresh_family_id)
    .bind(t.issued_at.millis())
    .bind(t.expires_at.millis())
    .bind(t.revoked)
    .execute(ex)
    .await
    .map_err(db_err)?;
    Ok(())
}

async fn insert_refresh_token<'e>(
    ex: impl SqliteExecutor<'e>,
    t: &RefreshTokenRecord,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO refresh_tokens (environment_id, token_hash, family_id, application_id,
             user_id, scope, auth_req_id, auth_time, acr, amr, issued_at, expires_at,
             rotated_at, revoked)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&t.environment_id)
    .bind(&t.token_hash)
    .bind(&t.family_id)
    .bind(&t.application_id)
    .bind(&t.user_id)
    .bind(&t.scope)
    .bind(&t.auth_req_id)
    .bind(t.auth_time.millis())
    .bind(&t.acr)
    .bind(to_json(&t.amr)?)
    .bind(t.issued_at.millis())
    .bind(t.expires_at.millis())
    .bind(t.rotated_at.map(Timestamp::millis))
    .bind(t.revoked)
    .execute(ex)
    .await
    .map_err(db_err)?;
    Ok(())
}

/// Revokes the family's refresh tokens and the access tokens minted with them.
async fn revoke_family(
    conn: &mut sqlx::SqliteConnection,
    env_id: &str,
    family_id: &str,
) -> StoreResult<u64> {
    let refresh = sqlx::query(
        "UPDATE refresh_tokens SET revoked = TRUE
         WHERE environment_id = ? AND family_id = ? AND revoked = FALSE",
    )
    .bind(env_id)
    .bind(family_id)
    .execute(&mut *conn)
    .await
    .map_err(db_err)?;
    let access = sqlx::query(
        "UPDATE access_tokens SET revoked = TRUE
         WHERE environment_id = ? AND refresh_family_id = ? AND revoked = FALSE",
    )
    .bind(env_id)
    .bind(family_id)
    .execute(&mut *conn)
    .await
    .map_err(db_err)?;
    Ok(refresh.rows_affected() + access.rows_affected())
}

fn environment_key(e: &Environment) -> (Timestamp, &str) {
    (e.created_at, &e.id)
}
fn application_key(a: &Application) -> (Timestamp, &str) {
    (a.created_at, &a.id)
}
fn user_key(u: &User) -> (Timestamp, &str) {
    (u.created_at, &u.id)
}
fn ciba_key(r: &CibaRequest) -> (Timestamp, &str) {
    (r.created_at, &r.auth_req_id)
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    // --- environments -------------------------------------------------------------------

    async fn create_environment(&self, env: &Environment) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO environments (id, name, description, env_type,
                 max_pending_requests_per_user, authorization_requests_per_minute, created_at,
                 updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&env.id)
        .bind(&env.name)
        .bind(&env.description)
        .bind(env.env_type.as_str())
        .bind(env.abuse_limits.max_pending_requests_per_user)
        .bind(env.abuse_limits.authorization_requests_per_minute)
        .bind(env.created_at.millis())
        .bind(env.updated_at.millis())
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn get_environment(&self, id: &str) -> StoreResult<Environment> {
        let row = sqlx::query("SELECT * FROM environments WHERE id = ?")
            .bind(id)
            .fetch_one(&self.pool)
            .await
            .map_err(db_err)?;
        rows::environment(&row)
    }

    async fn list_environments(&self, page: &Page) -> StoreResult<ListPage<Environment>> {
        let filter = |qb: &mut QueryBuilder<Sqlite>| {
            qb.push(" WHERE TRUE");
        };
        let spec = ListSpec {
            table: "environments",
            id_column: "id",
            filter: &filter,
            map_row: rows::environment,
            key: environment_key,
        };
        list_page(&self.pool, spec, page).await
    }

    async fn update_environment(&self, env: &Environment) -> StoreResult<()> {
        let result = sqlx::query(
            "UPDATE environments SET name = ?, description = ?, env_type = ?,
                 max_pending_requests_per_user = ?, authorization_requests_per_minute = ?,
                 updated_at = ?
             WHERE id = ?",
        )
        .bind(&env.name)
        .bind(&env.description)
        .bind(env.env_type.as_str())
        .bind(env.abuse_limits.max_pending_requests_per_user)
        .bind(env.abuse_limits.authorization_requests_per_minute)
        .bind(env.updated_at.millis())
        .bind(&env.id)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        found(&result)
    }

    async fn delete_environment(&self, id: &str) -> StoreResult<()> {
        // Everything else references the environment ON DELETE CASCADE.
        let result = sqlx::query("DELETE FROM environments WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        found(&result)
    }

    // --- applications -------------------------------------------------------------------

    async fn create_application(&self, app: &Application, secret_sealed: &[u8]) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO applications (environment_id, id, name, description, enabled, protocol,
                 app_type, grant_types, token_endpoint_auth_method, jwks, jwks_url,
                 id_token_signing_algorithm, access_token_duration_seconds,
                 refresh_token_duration_seconds, refresh_token_reuse_grace_seconds, ciba,
                 secret_sealed, secret_updated_at, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&app.environment_id)
        .bind(&app.id)
        .bind(&app.name)
        .bind(&app.description)
        .bind(app.enabled)
        .bind(&app.protocol)
        .bind(&app.app_type)
        .bind(to_json(&app.grant_types)?)
        .bind(app.token_endpoint_auth_method.as_str())
        .bind(opt_to_json(app.jwks.as_ref())?)
        .bind(&app.jwks_url)
        .bind(app.id_token_signing_algorithm.as_str())
        .bind(app.access_token_duration_seconds)
        .bind(app.refresh_token_duration_seconds)
        .bind(app.refresh_token_reuse_grace_seconds)
        .bind(to_json(&app.ciba)?)
        .bind(secret_sealed)
        .bind(app.created_at.millis())
        .bind(app.created_at.millis())
        .bind(app.updated_at.millis())
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn get_application(&self, env_id: &str, id: &str) -> StoreResult<Application> {
        let row = sqlx::query("SELECT * FROM applications WHERE environment_id = ? AND id = ?")
            .bind(env_id)
            .bind(id)
            .fetch_one(&self.pool)
            .await
            .map_err(db_err)?;
        rows::application(&row)
    }

    async fn list_applications(
        &self,
        env_id: &str,
        page: &Page,
    ) -> StoreResult<ListPage<Application>> {
        let filter = |qb: &mut QueryBuilder<Sqlite>| {
            qb.push(" WHERE environment_id = ")
                .push_bind(env_id.to_owned());
        };
        let spec = ListSpec {
            table: "applications",
            id_column: "id",
            filter: &filter,
            map_row: rows::application,
            key: application_key,
        };
        list_page(&self.pool, spec, page).await
    }

    async fn update_application(&self, app: &Application) -> StoreResult<()> {
        let result = sqlx::query(
            "UPDATE applications SET name = ?, description = ?, enabled = ?, protocol = ?,
                 app_type = ?, grant_types = ?, token_endpoint_auth_method = ?, jwks = ?,
                 jwks_url = ?, id_token_signing_algorithm = ?, access_token_duration_seconds = ?,
                 refresh_token_duration_seconds = ?, refresh_token_reuse_grace_seconds = ?,
                 ciba = ?, updated_at = ?
             WHERE environment_id = ? AND id = ?",
        )
        .bind(&app.name)
        .bind(&app.description)
        .bind(app.enabled)
        .bind(&app.protocol)
        .bind(&app.app_type)
        .bind(to_json(&app.grant_types)?)
        .bind(app.token_endpoint_auth_method.as_str())
        .bind(opt_to_json(app.jwks.as_ref())?)
        .bind(&app.jwks_url)
        .bind(app.id_token_signing_algorithm.as_str())
        .bind(app.access_token_duration_seconds)
        .bind(app.refresh_token_duration_seconds)
        .bind(app.refresh_token_reuse_grace_seconds)
        .bind(to_json(&app.ciba)?)
        .bind(app.updated_at.millis())
        .bind(&app.environment_id)
        .bind(&app.id)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        found(&result)
    }

    async fn delete_application(&self, env_id: &str, id: &str) -> StoreResult<()> {
        // Its CIBA requests and tokens reference it ON DELETE CASCADE.
        let result = sqlx::query("DELETE FROM applications WHERE environment_id = ? AND id = ?")
            .bind(env_id)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        found(&result)
    }

    async fn get_application_secret(&self, env_id: &str, id: &str) -> StoreResult<Vec<u8>> {
        sqlx::query_scalar(
            "SELECT secret_sealed FROM applications WHERE environment_id = ? AND id = ?",
        )
        .bind(env_id)
        .bind(id)
        .fetch_one(&self.pool)
        .await
        .map_err(db_err)
    }

    async fn set_application_secret(
        &self,
        env_id: &str,
        id: &str,
        secret_sealed: &[u8],
        now: Timestamp,
    ) -> StoreResult<()> {
        let result = sqlx::query(
            "UPDATE applications SET secret_sealed = ?, secret_updated_at = ?, updated_at = ?
             WHERE environment_id = ? AND id = ?",
        )
        .bind(secret_sealed)
        .bind(now.millis())
        .bind(now.millis())
        .bind(env_id)
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        found(&result)
    }

    // --- users --------------------------------------------------------------------------

    async fn create_user(&self, user: &User) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO users (environment_id, id, username, username_lower, email, email_lower,
                 given_name, family_name, phone_number, phone_normalized, password_hash, enabled,
                 auto_decision, auto_decision_delay_ms, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&user.environment_id)
        .bind(&user.id)
        .bind(&user.username)
        .bind(key(&user.username)?)
        .bind(&user.email)
        .bind(user.email.as_deref().map(key).transpose()?)
        .bind(&user.given_name)
        .bind(&user.family_name)
        .bind(&user.phone_number)
        .bind(user.phone_number.as_deref().map(normalize_phone))
        .bind(&user.password_hash)
        .bind(user.enabled)
        .bind(user.auto_decision.map(|d| d.as_str()))
        .bind(user.auto_decision_delay_ms)
        .bind(user.created_at.millis())
        .bind(user.updated_at.millis())
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn get_user(&self, env_id: &str, id: &str) -> StoreResult<User> {
        let row = sqlx::query("SELECT * FROM users WHERE environment_id = ? AND id = ?")
            .bind(env_id)
            .bind(id)
            .fetch_one(&self.pool)
            .await
            .map_err(db_err)?;
        rows::user(&row)
    }

    async fn find_user_by_username(
        &self,
        env_id: &str,
        username: &str,
    ) -> StoreResult<Option<User>> {
        // A hint that is not a valid identifier names nobody.
        let Ok(key) = comparison_key(username) else {
            return Ok(None);
        };
        sqlx::query("SELECT * FROM users WHERE environment_id = ? AND username_lower = ?")
            .bind(env_id)
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?
            .as_ref()
            .map(rows::user)
            .transpose()
    }

    async fn find_user_by_email(&self, env_id: &str, email: &str) -> StoreResult<Option<User>> {
        let Ok(key) = comparison_key(email) else {
            return Ok(None);
        };
        sqlx::query("SELECT * FROM users WHERE environment_id = ? AND email_lower = ?")
            .bind(env_id)
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?
            .as_ref()
            .map(rows::user)
            .transpose()
    }

    async fn find_user_by_phone(&self, env_id: &str, phone: &str) -> StoreResult<Option<User>> {
        // Phone numbers are not unique: a number two users share names nobody.
        let rows = sqlx::query(
            "SELECT * FROM users WHERE environment_id = ? AND phone_normalized = ? LIMIT 2",
        )
        .bind(env_id)
        .bind(phone)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        match rows.as_slice() {
            [one] => rows::user(one).map(Some),
            _ => Ok(None),
        }
    }

    async fn list_users(
        &self,
        env_id: &str,
        username: Option<&str>,
        page: &Page,
    ) -> StoreResult<ListPage<User>> {
        let username_key = match username.map(comparison_key) {
            None => None,
            Some(Ok(key)) => Some(key),
            // No stored username has a key that is not a valid identifier.
            Some(Err(_)) => {
                return Ok(ListPage {
                    items: Vec::new(),
                    total: 0,
                    next: None,
                });
            }
        };
        let filter = |qb: &mut QueryBuilder<Sqlite>| {
            qb.push(" WHERE environment_id = ")
                .push_bind(env_id.to_owned());
            if let Some(key) = &username_key {
                qb.push(" AND username_lower = ").push_bind(key.clone());
            }
        };
        let spec = ListSpec {
            table: "users",
            id_column: "id",
            filter: &filter,
            map_row: rows::user,
            key: user_key,
        };
        list_page(&self.pool, spec, page).await
    }

    async fn update_user(&self, user: &User) -> StoreResult<()> {
        let result = sqlx::query(
            "UPDATE users SET username = ?, username_lower = ?, email = ?, email_lower = ?,
                 given_name = ?, family_name = ?, phone_number = ?, phone_normalized = ?,
                 password_hash = ?, enabled = ?, auto_decision = ?, auto_decision_delay_ms = ?,
                 updated_at = ?
             WHERE environment_id = ? AND id = ?",
        )
        .bind(&user.username)
        .bind(key(&user.username)?)
        .bind(&user.email)
        .bind(user.email.as_deref().map(key).transpose()?)
        .bind(&user.given_name)
        .bind(&user.family_name)
        .bind(&user.phone_number)
        .bind(user.phone_number.as_deref().map(normalize_phone))
        .bind(&user.password_hash)
        .bind(user.enabled)
        .bind(user.auto_decision.map(|d| d.as_str()))
        .bind(user.auto_decision_delay_ms)
        .bind(user.updated_at.millis())
        .bind(&user.environment_id)
        .bind(&user.id)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        found(&result)
    }

    async fn delete_user(&self, env_id: &str, id: &str) -> StoreResult<()> {
        // Its CIBA requests and tokens reference it ON DELETE CASCADE.
        let result = sqlx::query("DELETE FROM users WHERE environment_id = ? AND id = ?")
            .bind(env_id)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        found(&result)
    }

    // --- signing keys -------------------------------------------------------------------

    async fn insert_signing_key(
        &self,
        key: &SigningKey,
        previous_retire_at: Timestamp,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "UPDATE signing_keys SET is_current = FALSE, retire_at = ?
             WHERE environment_id = ? AND algorithm = ? AND is_current = TRUE",
        )
        .bind(previous_retire_at.millis())
        .bind(&key.environment_id)
        .bind(key.algorithm.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        sqlx::query(
            "INSERT INTO signing_keys (environment_id, id, algorithm, public_jwk,
                 private_key_sealed, is_current, created_at, retire_at)
             VALUES (?, ?, ?, ?, ?, TRUE, ?, ?)",
        )
        .bind(&key.environment_id)
        .bind(&key.id)
        .bind(key.algorithm.as_str())
        .bind(to_json(&key.public_jwk)?)
        .bind(&key.private_key_sealed)
        .bind(key.created_at.millis())
        .bind(key.retire_at.map(Timestamp::millis))
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)
    }

    async fn insert_signing_key_if_absent(&self, key: &SigningKey) -> StoreResult<SigningKey> {
        // IMMEDIATE: the check and the insert hold the write lock together. (PostgreSQL: an
        // INSERT … ON CONFLICT DO NOTHING on the partial unique index, then a SELECT.)
        let mut tx = self.begin_write().await?;
        let current = sqlx::query(
            "SELECT * FROM signing_keys
             WHERE environment_id = ? AND algorithm = ? AND is_current = TRUE",
        )
        .bind(&key.environment_id)
        .bind(key.algorithm.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?;
        if let Some(row) = current {
            tx.rollback().await.map_err(db_err)?;
            return rows::signing_key(&row);
        }
        sqlx::query(
            "INSERT INTO signing_keys (environment_id, id, algorithm, public_jwk,
                 private_key_sealed, is_current, created_at, retire_at)
             VALUES (?, ?, ?, ?, ?, TRUE, ?, NULL)",
        )
        .bind(&key.environment_id)
        .bind(&key.id)
        .bind(key.algorithm.as_str())
        .bind(to_json(&key.public_jwk)?)
        .bind(&key.private_key_sealed)
        .bind(key.created_at.millis())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(SigningKey {
            current: true,
            retire_at: None,
            ..key.clone()
        })
    }

    async fn list_signing_keys(&self, env_id: &str) -> StoreResult<Vec<SigningKey>> {
        sqlx::query(
            "SELECT * FROM signing_keys WHERE environment_id = ?
             ORDER BY created_at DESC, id DESC",
        )
        .bind(env_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?
        .iter()
        .map(rows::signing_key)
        .collect()
    }

    async fn current_signing_key(
        &self,
        env_id: &str,
        alg: SigningAlgorithm,
    ) -> StoreResult<Option<SigningKey>> {
        sqlx::query(
            "SELECT * FROM signing_keys
             WHERE environment_id = ? AND algorithm = ? AND is_current = TRUE",
        )
        .bind(env_id)
        .bind(alg.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?
        .as_ref()
        .map(rows::signing_key)
        .transpose()
    }

    // --- CIBA requests ------------------------------------------------------------------

    async fn insert_ciba_request(&self, req: &CibaRequest) -> StoreResult<()> {
        // Autocommit with synchronous=FULL: durable once this returns.
        insert_ciba_request(&self.pool, req).await
    }

    async fn insert_ciba_request_guarded(
        &self,
        req: &CibaRequest,
        guard: &AbuseGuard,
    ) -> StoreResult<Admission> {
        // IMMEDIATE: no other writer (pool connection or process) can insert between the
        // counts and the insert, so a burst cannot overshoot the limits.
        let mut tx = self.begin_write().await?;
        if let Some(max) = guard.max_pending_per_user {
            let (count, earliest_expiry): (i64, Option<i64>) = sqlx::query_as(
                "SELECT COUNT(*), MIN(expires_at) FROM ciba_requests
                 WHERE environment_id = ? AND user_id = ? AND status = 'PENDING'
                   AND expires_at > ?",
            )
            .bind(&req.environment_id)
            .bind(&req.user_id)
            .bind(guard.now.millis())
            .fetch_one(&mut *tx)
            .await
            .map_err(db_err)?;
            if count >= max {
                tx.rollback().await.map_err(db_err)?;
                return Ok(Admission::Limited {
                    limit: AbuseLimit::PendingPerUser,
                    free_at: Timestamp(earliest_expiry.unwrap_or(guard.now.millis())),
                });
            }
        }
        if let Some(max) = guard.max_per_window {
            // The oldest request that keeps the count at `max` leaves the window first.
            let (count, oldest): (i64, Option<i64>) = sqlx::query_as(
                "SELECT COUNT(*), MIN(created_at) FROM ciba_requests
                 WHERE environment_id = ? AND application_id = ? AND created_at > ?",
            )
            .bind(&req.environment_id)
            .bind(&req.application_id)
            .bind(guard.window_start.millis())
            .fetch_one(&mut *tx)
            .await
            .map_err(db_err)?;
            if count >= max {
                tx.rollback().await.map_err(db_err)?;
                let oldest = oldest.unwrap_or(guard.now.millis());
                return Ok(Admission::Limited {
                    limit: AbuseLimit::RatePerApplication,
                    free_at: Timestamp(oldest).plus_secs(RATE_WINDOW_SECS),
                });
            }
        }
        insert_ciba_request(&mut *tx, req).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(Admission::Inserted)
    }

    async fn get_ciba_request(&self, env_id: &str, auth_req_id: &str) -> StoreResult<CibaRequest> {
        let row =
            sqlx::query("SELECT * FROM ciba_requests WHERE environment_id = ? AND auth_req_id = ?")
                .bind(env_id)
                .bind(auth_req_id)
                .fetch_one(&self.pool)
                .await
                .map_err(db_err)?;
        rows::ciba_request(&row)
    }

    async fn list_ciba_requests(
        &self,
        env_id: &str,
        filter: &CibaRequestFilter,
        now: Timestamp,
        page: &Page,
    ) -> StoreResult<ListPage<CibaRequest>> {
        let push_filter = |qb: &mut QueryBuilder<Sqlite>| {
            qb.push(" WHERE environment_id = ")
                .push_bind(env_id.to_owned());
            if let Some(user_id) = &filter.user_id {
                qb.push(" AND user_id = ").push_bind(user_id.clone());
            }
            if let Some(application_id) = &filter.application_id {
                qb.push(" AND application_id = ")
                    .push_bind(application_id.clone());
            }
            // The status a reader sees at `now` (CibaRequest::status_at).
            match filter.status {
                None => {}
                Some(CibaStatus::Expired) => {
                    qb.push(" AND status <> ")
                        .push_bind(CibaStatus::Redeemed.as_str())
                        .push(" AND expires_at <= ")
                        .push_bind(now.millis());
                }
                Some(CibaStatus::Redeemed) => {
                    qb.push(" AND status = ")
                        .push_bind(CibaStatus::Redeemed.as_str());
                }
                Some(status) => {
                    qb.push(" AND status = ")
                        .push_bind(status.as_str())
                        .push(" AND expires_at > ")
                        .push_bind(now.millis());
                }
            }
        };
        let spec = ListSpec {
            table: "ciba_requests",
            id_column: "auth_req_id",
            filter: &push_filter,
            map_row: rows::ciba_request,
            key: ciba_key,
        };
        list_page(&self.pool, spec, page).await
    }

    async fn record_poll(
        &self,
        env_id: &str,
        auth_req_id: &str,
        update: &PollUpdate,
    ) -> StoreResult<bool> {
        // `IS` is SQLite's null-safe equality (PostgreSQL: IS NOT DISTINCT FROM).
        let result = sqlx::query(
            "UPDATE ciba_requests SET last_polled_at = ?, interval_seconds = ?
             WHERE environment_id = ? AND auth_req_id = ? AND status = 'PENDING'
               AND last_polled_at IS ? AND interval_seconds = ?",
        )
        .bind(update.last_polled_at.millis())
        .bind(update.interval_seconds)
        .bind(env_id)
        .bind(auth_req_id)
        .bind(update.expected_last_polled_at.map(Timestamp::millis))
        .bind(update.expected_interval_seconds)
        .execute(&self.bookkeeping)
        .await
        .map_err(db_err)?;
        Ok(result.rows_affected() == 1)
    }

    async fn decide_ciba_request(
        &self,
        env_id: &str,
        auth_req_id: &str,
        decision: &Decision,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let result = sqlx::query(
            "UPDATE ciba_requests SET status = ?, decision = ?
             WHERE environment_id = ? AND auth_req_id = ? AND status = 'PENDING'
               AND expires_at > ?",
        )
        .bind(stored_status(decision.outcome).as_str())
        .bind(to_json(decision)?)
        .bind(env_id)
        .bind(auth_req_id)
        .bind(now.millis())
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(result.rows_affected() == 1)
    }

    async fn redeem_ciba_request(
        &self,
        env_id: &str,
        auth_req_id: &str,
        now: Timestamp,
        tokens: &IssuedTokens,
    ) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let result = sqlx::query(
            "UPDATE ciba_requests SET status = 'REDEEMED', redeemed_at = ?
             WHERE environment_id = ? AND auth_req_id = ? AND status = 'APPROVED'
               AND expires_at > ?",
        )
        .bind(now.millis())
        .bind(env_id)
        .bind(auth_req_id)
        .bind(now.millis())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        if result.rows_affected() != 1 {
            tx.rollback().await.map_err(db_err)?;
            return Ok(false);
        }
        insert_access_token(&mut *tx, &tokens.access_token).await?;
        if let Some(refresh) = &tokens.refresh_token {
            insert_refresh_token(&mut *tx, refresh).await?;
        }
        tx.commit().await.map_err(db_err)?;
        Ok(true)
    }

    // --- tokens -------------------------------------------------------------------------

    async fn get_access_token(
        &self,
        env_id: &str,
        jti: &str,
    ) -> StoreResult<Option<AccessTokenRecord>> {
        sqlx::query("SELECT * FROM access_tokens WHERE environment_id = ? AND jti = ?")
            .bind(env_id)
            .bind(jti)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?
            .as_ref()
            .map(rows::access_token)
            .transpose()
    }

    async fn insert_access_token(&self, token: &AccessTokenRecord) -> StoreResult<()> {
        insert_access_token(&self.pool, token).await
    }

    async fn revoke_access_token(&self, env_id: &str, jti: &str) -> StoreResult<bool> {
        let result = sqlx::query(
            "UPDATE access_tokens SET revoked = TRUE
             WHERE environment_id = ? AND jti = ? AND revoked = FALSE",
        )
        .bind(env_id)
        .bind(jti)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(result.rows_affected() == 1)
    }

    async fn revoke_tokens_for_request(&self, env_id: &str, auth_req_id: &str) -> StoreResult<u64> {
        let mut tx = self.begin_write().await?;
        // Access tokens issued at redemption, and those minted later by refreshing within one
        // of the request's refresh families.
        let access = sqlx::query(
            "UPDATE access_tokens SET revoked = TRUE
             WHERE environment_id = ? AND revoked = FALSE
               AND (auth_req_id = ? OR refresh_family_id IN (
                     SELECT family_id FROM refresh_tokens
                     WHERE environment_id = ? AND auth_req_id = ?))",
        )
        .bind(env_id)
        .bind(auth_req_id)
        .bind(env_id)
        .bind(auth_req_id)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        let refresh = sqlx::query(
            "UPDATE refresh_tokens SET revoked = TRUE
             WHERE environment_id = ? AND revoked = FALSE
               AND (auth_req_id = ? OR family_id IN (
                     SELECT family_id FROM refresh_tokens
                     WHERE environment_id = ? AND auth_req_id = ?))",
        )
        .bind(env_id)
        .bind(auth_req_id)
        .bind(env_id)
        .bind(auth_req_id)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(access.rows_affected() + refresh.rows_affected())
    }

    async fn get_refresh_token(
        &self,
        env_id: &str,
        token_hash: &str,
    ) -> StoreResult<Option<RefreshTokenRecord>> {
        sqlx::query("SELECT * FROM refresh_tokens WHERE environment_id = ? AND token_hash = ?")
            .bind(env_id)
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?
            .as_ref()
            .map(rows::refresh_token)
            .transpose()
    }

    async fn rotate_refresh_token(
        &self,
        env_id: &str,
        token_hash: &str,
        now: Timestamp,
        reuse_grace_secs: i64,
        new_token: &RefreshTokenRecord,
        new_access: &AccessTokenRecord,
    ) -> StoreResult<RefreshOutcome> {
        let mut tx = self.begin_write().await?;
        // Current, or rotated moments ago within the application's reuse grace (a concurrent or
        // retried refresh, answered with another rotation in the same family). `rotated_at`
        // keeps the first rotation, so the grace does not slide; with no grace the threshold is
        // `now` and only a current token passes.
        let rotated = sqlx::query(
            "UPDATE refresh_tokens SET rotated_at = COALESCE(rotated_at, ?)
             WHERE environment_id = ? AND token_hash = ?
               AND (rotated_at IS NULL OR rotated_at > ?)
               AND revoked = FALSE AND expires_at > ?
             RETURNING *",
        )
        .bind(now.millis())
        .bind(env_id)
        .bind(token_hash)
        .bind(now.plus_secs(-reuse_grace_secs.max(0)).millis())
        .bind(now.millis())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?;
        if let Some(row) = rotated {
            let old = rows::refresh_token(&row)?;
            insert_refresh_token(&mut *tx, new_token).await?;
            insert_access_token(&mut *tx, new_access).await?;
            tx.commit().await.map_err(db_err)?;
            return Ok(RefreshOutcome::Rotated(old));
        }
        // Lost: find out whether this is reuse of a rotated (or revoked) token.
        let reused_family: Option<String> = sqlx::query_scalar(
            "SELECT family_id FROM refresh_tokens
             WHERE environment_id = ? AND token_hash = ?
               AND (rotated_at IS NOT NULL OR revoked = TRUE)",
        )
        .bind(env_id)
        .bind(token_hash)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?;
        match reused_family {
            Some(family_id) => {
                revoke_family(&mut tx, env_id, &family_id).await?;
                tx.commit().await.map_err(db_err)?;
                Ok(RefreshOutcome::Reused)
            }
            None => {
                tx.rollback().await.map_err(db_err)?;
                Ok(RefreshOutcome::Invalid)
            }
        }
    }

    async fn revoke_refresh_family(&self, env_id: &str, family_id: &str) -> StoreResult<u64> {
        let mut tx = self.begin_write().await?;
        let revoked = revoke_family(&mut tx, env_id, family_id).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(revoked)
    }

    // --- single-use JWT ids -------------------------------------------------------------

    async fn use_jti(
        &self,
        env_id: &str,
        namespace: &str,
        jti: &str,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> StoreResult<bool> {
        // One statement: a fresh insert, or the takeover of an expired entry, affects one row;
        // an unexpired entry makes the conditional DO UPDATE a no-op (0 rows).
        let result = sqlx::query(
            "INSERT INTO used_jtis (environment_id, namespace, jti, expires_at)
             VALUES (?, ?, ?, ?)
             ON CONFLICT (environment_id, namespace, jti)
             DO UPDATE SET expires_at = excluded.expires_at
             WHERE used_jtis.expires_at <= ?",
        )
        .bind(env_id)
        .bind(namespace)
        .bind(jti)
        .bind(expires_at.millis())
        .bind(now.millis())
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(result.rows_affected() == 1)
    }

    // --- server-wide values and the at-rest key --------------------------------------

    async fn get_server_meta(&self, name: &str) -> StoreResult<Option<Vec<u8>>> {
        sqlx::query_scalar("SELECT value FROM server_meta WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)
    }

    async fn put_server_meta(&self, name: &str, value: &[u8]) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO server_meta (name, value) VALUES (?, ?)
             ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        )
        .bind(name)
        .bind(value)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn list_sealed_values(&self) -> StoreResult<Vec<SealedValue>> {
        sealed_values(&self.pool).await
    }

    async fn reseal_all(&self, resealed: &[Resealed], meta: (&str, &[u8])) -> StoreResult<()> {
        let conflict = || StoreError::Conflict("sealed values".into());
        let mut tx = self.begin_write().await?;
        // The write lock is held: what is read here is what the updates below replace.
        let mut current = sealed_values(&mut *tx).await?;
        let mut given: Vec<&SealedValue> = resealed.iter().map(|r| &r.old).collect();
        current.sort_by(|a, b| sealed_order(a).cmp(&sealed_order(b)));
        given.sort_by(|a, b| sealed_order(a).cmp(&sealed_order(b)));
        if current.len() != given.len() || current.iter().zip(&given).any(|(c, g)| c != *g) {
            return Err(conflict());
        }
        for r in resealed {
            let sql = match r.old.kind {
                SealedKind::ApplicationSecret => {
                    "UPDATE applications SET secret_sealed = ?
                     WHERE environment_id = ? AND id = ? AND secret_sealed = ?"
                }
                SealedKind::SigningKey => {
                    "UPDATE signing_keys SET private_key_sealed = ?
                     WHERE environment_id = ? AND id = ? AND private_key_sealed = ?"
                }
            };
            let result = sqlx::query(sql)
                .bind(&r.new_sealed)
                .bind(&r.old.environment_id)
                .bind(&r.old.id)
                .bind(&r.old.sealed)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            if result.rows_affected() != 1 {
                return Err(conflict());
            }
        }
        sqlx::query(
            "INSERT INTO server_meta (name, value) VALUES (?, ?)
             ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        )
        .bind(meta.0)
        .bind(meta.1)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)
    }

    async fn purge_expired(&self, now: Timestamp) -> StoreResult<u64> {
        let now_ms = now.millis();
        let steps: [(&'static str, i64); 5] = [
            ("DELETE FROM used_jtis WHERE expires_at <= ?", now_ms),
            (
                "DELETE FROM access_tokens WHERE expires_at <= ?",
                now_ms.saturating_sub(ACCESS_TOKEN_KEEP_MS),
            ),
            ("DELETE FROM refresh_tokens WHERE expires_at <= ?", now_ms),
            (
                // Expired requests keep answering `expired_token` for a day (§3.3).
                "DELETE FROM ciba_requests WHERE expires_at <= ?",
                now_ms.saturating_sub(EXPIRED_ANSWERABLE_SECS.saturating_mul(1000)),
            ),
            (
                "DELETE FROM signing_keys WHERE is_current = FALSE AND retire_at <= ?",
                now_ms,
            ),
        ];
        let mut deleted = 0;
        for (sql, cutoff) in steps {
            let result = sqlx::query(sql)
                .bind(cutoff)
                .execute(&self.pool)
                .await
                .map_err(db_err)?;
            deleted += result.rows_affected();
        }
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn file_databases_are_durable_wal_with_foreign_keys() {
        let path =
            std::env::temp_dir().join(format!("assent-store-pragmas-{}.db", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let store = SqliteStore::open(&path).await.unwrap();
        let mut conn = store.pool.acquire().await.unwrap();
        let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        let foreign_keys: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!(journal, "wal");
        assert_eq!(synchronous, 2, "synchronous=FULL");
        assert_eq!(foreign_keys, 1);
        drop(conn);
        // Only the poll bookkeeping skips the fsync.
        let bookkeeping: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(&store.bookkeeping)
            .await
            .unwrap();
        assert_eq!(bookkeeping, 1, "synchronous=NORMAL for record_poll");
        store.close().await;
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }
}
