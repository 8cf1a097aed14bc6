//! CIBA requests: reading them, and the SQL of their state changes, which
//! `transitions.rs` runs inside the transaction of a transition (each conditional write
//! reports whether its condition held).

use assent_core::ciba::{AbuseGuard, AbuseLimit, PollUpdate, RATE_WINDOW_SECS, decided_status};
use assent_core::{
    AuthReqId, CibaRequest, CibaStatus, Decision, EnvironmentId, ListPage, Page, Timestamp, UserId,
};
use sqlx::{QueryBuilder, Sqlite, SqliteConnection, SqliteExecutor};

use super::paging::{ListSpec, list_page};
use super::rows::{self, opt_to_json, to_json};
use super::{SqliteStore, db_err};
use crate::{CibaRequestFilter, CibaStore, StoreResult};

pub(super) async fn insert_request<'e>(
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
    .bind(req.environment_id.as_str())
    .bind(req.auth_req_id.as_str())
    .bind(req.application_id.as_str())
    .bind(req.user_id.as_str())
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

/// The abuse limit `req` would break under `guard`, and when a slot frees up: fewer than
/// `max_pending_per_user` requests of the user with status PENDING and `expires_at > now`, and
/// fewer than `max_per_window` requests of the application with `created_at > window_start`.
/// Counted in the caller's `BEGIN IMMEDIATE` transaction, so no other writer (connection or
/// process) can insert between the counts and the insert and a burst cannot overshoot.
pub(super) async fn abuse_limit_reached(
    conn: &mut SqliteConnection,
    req: &CibaRequest,
    guard: &AbuseGuard,
) -> StoreResult<Option<(AbuseLimit, Timestamp)>> {
    if let Some(max) = guard.max_pending_per_user {
        let (count, earliest_expiry): (i64, Option<i64>) = sqlx::query_as(
            "SELECT COUNT(*), MIN(expires_at) FROM ciba_requests
             WHERE environment_id = ? AND user_id = ? AND status = 'PENDING'
               AND expires_at > ?",
        )
        .bind(req.environment_id.as_str())
        .bind(req.user_id.as_str())
        .bind(guard.now.millis())
        .fetch_one(&mut *conn)
        .await
        .map_err(db_err)?;
        if count >= max {
            let free_at = Timestamp(earliest_expiry.unwrap_or(guard.now.millis()));
            return Ok(Some((AbuseLimit::PendingPerUser, free_at)));
        }
    }
    if let Some(max) = guard.max_per_window {
        // The oldest request that keeps the count at `max` leaves the window first.
        let (count, oldest): (i64, Option<i64>) = sqlx::query_as(
            "SELECT COUNT(*), MIN(created_at) FROM ciba_requests
             WHERE environment_id = ? AND application_id = ? AND created_at > ?",
        )
        .bind(req.environment_id.as_str())
        .bind(req.application_id.as_str())
        .bind(guard.window_start.millis())
        .fetch_one(&mut *conn)
        .await
        .map_err(db_err)?;
        if count >= max {
            let oldest = Timestamp(oldest.unwrap_or(guard.now.millis()));
            return Ok(Some((
                AbuseLimit::RatePerApplication,
                oldest.plus_secs(RATE_WINDOW_SECS),
            )));
        }
    }
    Ok(None)
}

/// Records a poll if the request is still PENDING with `last_polled_at` and
/// `interval_seconds` as `update` expects. Returns whether it was recorded.
pub(super) async fn record_poll<'e>(
    executor: impl SqliteExecutor<'e>,
    env_id: &EnvironmentId,
    auth_req_id: &AuthReqId,
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
    .bind(env_id.as_str())
    .bind(auth_req_id.as_str())
    .bind(update.expected_last_polled_at.map(Timestamp::millis))
    .bind(update.expected_interval_seconds)
    .execute(executor)
    .await
    .map_err(db_err)?;
    Ok(result.rows_affected() == 1)
}

/// Stores the decision and its status (`decided_status`) if the request is PENDING and
/// `at < expires_at`. Returns the request's user when it did.
pub(super) async fn decide(
    conn: &mut SqliteConnection,
    env_id: &EnvironmentId,
    auth_req_id: &AuthReqId,
    decision: &Decision,
    at: Timestamp,
) -> StoreResult<Option<UserId>> {
    sqlx::query_scalar::<_, String>(
        "UPDATE ciba_requests SET status = ?, decision = ?
         WHERE environment_id = ? AND auth_req_id = ? AND status = 'PENDING'
           AND expires_at > ?
         RETURNING user_id",
    )
    .bind(decided_status(decision.outcome).as_str())
    .bind(to_json(decision)?)
    .bind(env_id.as_str())
    .bind(auth_req_id.as_str())
    .bind(at.millis())
    .fetch_optional(&mut *conn)
    .await
    .map_err(db_err)
    .map(|user| user.map(UserId::from))
}

/// Stores status EXPIRED if the request is PENDING and `at >= expires_at`, so the expiry is
/// marked once and no decision lands after it. Returns the request's user when it did.
pub(super) async fn expire(
    conn: &mut SqliteConnection,
    env_id: &EnvironmentId,
    auth_req_id: &AuthReqId,
    at: Timestamp,
) -> StoreResult<Option<UserId>> {
    sqlx::query_scalar::<_, String>(
        "UPDATE ciba_requests SET status = 'EXPIRED'
         WHERE environment_id = ? AND auth_req_id = ? AND status = 'PENDING'
           AND expires_at <= ?
         RETURNING user_id",
    )
    .bind(env_id.as_str())
    .bind(auth_req_id.as_str())
    .bind(at.millis())
    .fetch_optional(&mut *conn)
    .await
    .map_err(db_err)
    .map(|user| user.map(UserId::from))
}

/// Marks the request REDEEMED with `redeemed_at = at` if it is APPROVED and
/// `at < expires_at`. Returns the request's user when it did.
pub(super) async fn mark_redeemed(
    conn: &mut SqliteConnection,
    env_id: &EnvironmentId,
    auth_req_id: &AuthReqId,
    at: Timestamp,
) -> StoreResult<Option<UserId>> {
    sqlx::query_scalar::<_, String>(
        "UPDATE ciba_requests SET status = 'REDEEMED', redeemed_at = ?
         WHERE environment_id = ? AND auth_req_id = ? AND status = 'APPROVED'
           AND expires_at > ?
         RETURNING user_id",
    )
    .bind(at.millis())
    .bind(env_id.as_str())
    .bind(auth_req_id.as_str())
    .bind(at.millis())
    .fetch_optional(&mut *conn)
    .await
    .map_err(db_err)
    .map(|user| user.map(UserId::from))
}

/// Whether the request is REDEEMED.
pub(super) async fn is_redeemed(
    conn: &mut SqliteConnection,
    env_id: &EnvironmentId,
    auth_req_id: &AuthReqId,
) -> StoreResult<bool> {
    let found: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM ciba_requests
         WHERE environment_id = ? AND auth_req_id = ? AND status = 'REDEEMED'",
    )
    .bind(env_id.as_str())
    .bind(auth_req_id.as_str())
    .fetch_optional(&mut *conn)
    .await
    .map_err(db_err)?;
    Ok(found.is_some())
}

fn ciba_key(r: &CibaRequest) -> (Timestamp, &str) {
    (r.created_at, &r.auth_req_id)
}

#[async_trait::async_trait]
impl CibaStore for SqliteStore {
    // --- CIBA requests ------------------------------------------------------------------

    async fn get_ciba_request(
        &self,
        env_id: &EnvironmentId,
        auth_req_id: &AuthReqId,
    ) -> StoreResult<CibaRequest> {
        let at = self.polls.generation();
        let mut req = match &self.readers {
            Some(readers) => readers.ciba_request(env_id, auth_req_id)?,
            None => {
                let row = sqlx::query(
                    "SELECT * FROM ciba_requests WHERE environment_id = ? AND auth_req_id = ?",
                )
                .bind(env_id.as_str())
                .bind(auth_req_id.as_str())
                .fetch_one(&self.pool)
                .await
                .map_err(db_err)?;
                rows::ciba_request(&row)?
            }
        };
        // The poll records held in memory are newer than the row's (`polls.rs`).
        self.polls.merge(&mut req, at);
        Ok(req)
    }

    async fn list_ciba_requests(
        &self,
        env_id: &EnvironmentId,
        filter: &CibaRequestFilter,
        now: Timestamp,
        page: &Page,
    ) -> StoreResult<ListPage<CibaRequest>> {
        let push_filter = |qb: &mut QueryBuilder<Sqlite>| {
            qb.push(" WHERE environment_id = ")
                .push_bind(env_id.as_str().to_owned());
            if let Some(user_id) = &filter.user_id {
                qb.push(" AND user_id = ")
                    .push_bind(user_id.as_str().to_owned());
            }
            if let Some(application_id) = &filter.application_id {
                qb.push(" AND application_id = ")
                    .push_bind(application_id.as_str().to_owned());
            }
            // The status a reader sees at `now` (CibaRequest::status_at).
            match filter.status {
                None => {}
                Some(CibaStatus::Expired) => {
                    // Or marked EXPIRED by an expire transition (on a node whose clock ran
                    // ahead of this reader's).
                    qb.push(" AND ((status <> ")
                        .push_bind(CibaStatus::Redeemed.as_str())
                        .push(" AND expires_at <= ")
                        .push_bind(now.millis())
                        .push(") OR status = ")
                        .push_bind(CibaStatus::Expired.as_str())
                        .push(")");
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
            map_row: |row| rows::ciba_request(row),
            key: ciba_key,
        };
        list_page(&self.pool, spec, page).await
    }
}
