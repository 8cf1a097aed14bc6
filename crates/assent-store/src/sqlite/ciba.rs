//! CIBA requests: reading them, and the SQL of their state changes, which the writer
//! (`writer.rs`, on rusqlite) runs inside the transaction of a transition (each conditional
//! write reports whether its condition held).

use assent_core::ciba::{AbuseGuard, AbuseLimit, PollUpdate, RATE_WINDOW_SECS, decided_status};
use assent_core::{
    AuthReqId, CibaRequest, CibaStatus, Decision, EnvironmentId, ListPage, Page, Timestamp, UserId,
};
use rusqlite::{Connection, OptionalExtension, params};
use sqlx::{QueryBuilder, Sqlite};

use super::paging::{ListSpec, list_page};
use super::rows::{self, opt_to_json, to_json};
use super::{SqliteStore, db_err, sql_err};
use crate::{CibaRequestFilter, CibaStore, StoreResult};

pub(super) fn insert_request(conn: &Connection, req: &CibaRequest) -> StoreResult<()> {
    let authorization_details = opt_to_json(req.authorization_details.as_ref())?;
    let decision = opt_to_json(req.decision.as_ref())?;
    conn.prepare_cached(
        "INSERT INTO ciba_requests (environment_id, auth_req_id, application_id, user_id,
             scope, binding_message, acr_values, authorization_details, delivery_mode,
             client_notification_token, created_at, expires_at, interval_seconds,
             last_polled_at, status, decision, redeemed_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .and_then(|mut insert| {
        insert.execute(params![
            req.environment_id.as_str(),
            req.auth_req_id.as_str(),
            req.application_id.as_str(),
            req.user_id.as_str(),
            req.scope,
            req.binding_message,
            req.acr_values,
            authorization_details,
            req.delivery_mode.as_str(),
            req.client_notification_token,
            req.created_at.millis(),
            req.expires_at.millis(),
            req.interval_seconds,
            req.last_polled_at.map(Timestamp::millis),
            req.status.as_str(),
            decision,
            req.redeemed_at.map(Timestamp::millis),
        ])
    })
    .map_err(sql_err)?;
    Ok(())
}

/// The abuse limit `req` would break under `guard`, and when a slot frees up: fewer than
/// `max_pending_per_user` requests of the user with status PENDING and `expires_at > now`, and
/// fewer than `max_per_window` requests of the application with `created_at > window_start`.
/// Counted in the writer's `BEGIN IMMEDIATE` transaction, so no other writer (connection or
/// process) can insert between the counts and the insert and a burst cannot overshoot.
pub(super) fn abuse_limit_reached(
    conn: &Connection,
    req: &CibaRequest,
    guard: &AbuseGuard,
) -> StoreResult<Option<(AbuseLimit, Timestamp)>> {
    if let Some(max) = guard.max_pending_per_user {
        let (count, earliest_expiry) = count_and_min(
            conn,
            "SELECT COUNT(*), MIN(expires_at) FROM ciba_requests
             WHERE environment_id = ? AND user_id = ? AND status = 'PENDING'
               AND expires_at > ?",
            params![
                req.environment_id.as_str(),
                req.user_id.as_str(),
                guard.now.millis()
            ],
        )?;
        if count >= max {
            let free_at = Timestamp(earliest_expiry.unwrap_or(guard.now.millis()));
            return Ok(Some((AbuseLimit::PendingPerUser, free_at)));
        }
    }
    if let Some(max) = guard.max_per_window {
        // The oldest request that keeps the count at `max` leaves the window first.
        let (count, oldest) = count_and_min(
            conn,
            "SELECT COUNT(*), MIN(created_at) FROM ciba_requests
             WHERE environment_id = ? AND application_id = ? AND created_at > ?",
            params![
                req.environment_id.as_str(),
                req.application_id.as_str(),
                guard.window_start.millis()
            ],
        )?;
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

/// The one row of a `SELECT COUNT(*), MIN(…)`.
fn count_and_min(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> StoreResult<(i64, Option<i64>)> {
    conn.prepare_cached(sql)
        .and_then(|mut count| count.query_row(params, |row| Ok((row.get(0)?, row.get(1)?))))
        .map_err(sql_err)
}

/// Records a poll if the request is still PENDING with `last_polled_at` and
/// `interval_seconds` as `update` expects. Returns whether it was recorded.
pub(super) fn record_poll(
    conn: &Connection,
    env_id: &EnvironmentId,
    auth_req_id: &AuthReqId,
    update: &PollUpdate,
) -> StoreResult<bool> {
    // `IS` is SQLite's null-safe equality (PostgreSQL: IS NOT DISTINCT FROM).
    let recorded = conn
        .prepare_cached(
            "UPDATE ciba_requests SET last_polled_at = ?, interval_seconds = ?
             WHERE environment_id = ? AND auth_req_id = ? AND status = 'PENDING'
               AND last_polled_at IS ? AND interval_seconds = ?",
        )
        .and_then(|mut update_poll| {
            update_poll.execute(params![
                update.last_polled_at.millis(),
                update.interval_seconds,
                env_id.as_str(),
                auth_req_id.as_str(),
                update.expected_last_polled_at.map(Timestamp::millis),
                update.expected_interval_seconds,
            ])
        })
        .map_err(sql_err)?;
    Ok(recorded == 1)
}

/// Runs a conditional `UPDATE … RETURNING user_id` on one request: the user when a row
/// matched.
fn update_returning_user(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> StoreResult<Option<UserId>> {
    conn.prepare_cached(sql)
        .and_then(|mut update| {
            update
                .query_row(params, |row| row.get::<_, String>(0))
                .optional()
        })
        .map_err(sql_err)
        .map(|user| user.map(UserId::from))
}

/// Stores the decision and its status (`decided_status`) if the request is PENDING and
/// `at < expires_at`. Returns the request's user when it did.
pub(super) fn decide(
    conn: &Connection,
    env_id: &EnvironmentId,
    auth_req_id: &AuthReqId,
    decision: &Decision,
    at: Timestamp,
) -> StoreResult<Option<UserId>> {
    update_returning_user(
        conn,
        "UPDATE ciba_requests SET status = ?, decision = ?
         WHERE environment_id = ? AND auth_req_id = ? AND status = 'PENDING'
           AND expires_at > ?
         RETURNING user_id",
        params![
            decided_status(decision.outcome).as_str(),
            to_json(decision)?,
            env_id.as_str(),
            auth_req_id.as_str(),
            at.millis(),
        ],
    )
}

/// Stores status EXPIRED if the request is PENDING and `at >= expires_at`, so the expiry is
/// marked once and no decision lands after it. Returns the request's user when it did.
pub(super) fn expire(
    conn: &Connection,
    env_id: &EnvironmentId,
    auth_req_id: &AuthReqId,
    at: Timestamp,
) -> StoreResult<Option<UserId>> {
    update_returning_user(
        conn,
        "UPDATE ciba_requests SET status = 'EXPIRED'
         WHERE environment_id = ? AND auth_req_id = ? AND status = 'PENDING'
           AND expires_at <= ?
         RETURNING user_id",
        params![env_id.as_str(), auth_req_id.as_str(), at.millis()],
    )
}

/// Marks the request REDEEMED with `redeemed_at = at` if it is APPROVED and
/// `at < expires_at`. Returns the request's user when it did.
pub(super) fn mark_redeemed(
    conn: &Connection,
    env_id: &EnvironmentId,
    auth_req_id: &AuthReqId,
    at: Timestamp,
) -> StoreResult<Option<UserId>> {
    update_returning_user(
        conn,
        "UPDATE ciba_requests SET status = 'REDEEMED', redeemed_at = ?
         WHERE environment_id = ? AND auth_req_id = ? AND status = 'APPROVED'
           AND expires_at > ?
         RETURNING user_id",
        params![
            at.millis(),
            env_id.as_str(),
            auth_req_id.as_str(),
            at.millis()
        ],
    )
}

/// Whether the request is REDEEMED.
pub(super) fn is_redeemed(
    conn: &Connection,
    env_id: &EnvironmentId,
    auth_req_id: &AuthReqId,
) -> StoreResult<bool> {
    conn.prepare_cached(
        "SELECT 1 FROM ciba_requests
         WHERE environment_id = ? AND auth_req_id = ? AND status = 'REDEEMED'",
    )
    .and_then(|mut find| find.exists(params![env_id.as_str(), auth_req_id.as_str()]))
    .map_err(sql_err)
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
        let mut req = self.readers.ciba_request(env_id, auth_req_id)?;
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

    async fn pending_for_user(
        &self,
        env_id: &EnvironmentId,
        user_id: &UserId,
        now: Timestamp,
        limit: u32,
    ) -> StoreResult<Vec<CibaRequest>> {
        let found = sqlx::query(
            "SELECT * FROM ciba_requests
             WHERE environment_id = ? AND user_id = ? AND status = ? AND expires_at > ?
             ORDER BY created_at, auth_req_id LIMIT ?",
        )
        .bind(env_id.as_str())
        .bind(user_id.as_str())
        .bind(CibaStatus::Pending.as_str())
        .bind(now.millis())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        found.iter().map(rows::ciba_request).collect()
    }

    async fn expired_pending(
        &self,
        after: Timestamp,
        now: Timestamp,
        limit: u32,
    ) -> StoreResult<Vec<CibaRequest>> {
        // A range of the expiry index, the rows no longer pending skipped.
        let found = sqlx::query(
            "SELECT * FROM ciba_requests
             WHERE expires_at > ? AND expires_at <= ? AND status = ?
             ORDER BY expires_at LIMIT ?",
        )
        .bind(after.millis())
        .bind(now.millis())
        .bind(CibaStatus::Pending.as_str())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        found.iter().map(rows::ciba_request).collect()
    }
}
