//! CIBA requests. Every state change (insert, decision, redemption) publishes a wake-up on the
//! request and on its user once committed; poll bookkeeping does not.

use assent_core::ciba::{AbuseGuard, AbuseLimit, PollUpdate, RATE_WINDOW_SECS, decided_status};
use assent_core::{CibaRequest, CibaStatus, Decision, IssuedTokens, ListPage, Page, Timestamp};
use sqlx::{QueryBuilder, Sqlite, SqliteExecutor};

use super::paging::{ListSpec, list_page};
use super::rows::{self, opt_to_json, to_json};
use super::tokens::{insert_access_token, insert_refresh_token};
use super::{SqliteStore, db_err};
use crate::{Admission, CibaRequestFilter, CibaStore, StoreResult};

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

fn ciba_key(r: &CibaRequest) -> (Timestamp, &str) {
    (r.created_at, &r.auth_req_id)
}

#[async_trait::async_trait]
impl CibaStore for SqliteStore {
    // --- CIBA requests ------------------------------------------------------------------

    async fn insert_ciba_request(&self, req: &CibaRequest) -> StoreResult<()> {
        // Autocommit with synchronous=FULL: durable once this returns.
        insert_ciba_request(&self.pool, req).await?;
        self.publish_request_change(&req.environment_id, &req.auth_req_id, Some(&req.user_id));
        Ok(())
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
        self.publish_request_change(&req.environment_id, &req.auth_req_id, Some(&req.user_id));
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
        let decided: Option<String> = sqlx::query_scalar(
            "UPDATE ciba_requests SET status = ?, decision = ?
             WHERE environment_id = ? AND auth_req_id = ? AND status = 'PENDING'
               AND expires_at > ?
             RETURNING user_id",
        )
        .bind(decided_status(decision.outcome).as_str())
        .bind(to_json(decision)?)
        .bind(env_id)
        .bind(auth_req_id)
        .bind(now.millis())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        let won = decided.is_some();
        if won {
            self.publish_request_change(env_id, auth_req_id, decided.as_deref());
        }
        Ok(won)
    }

    async fn redeem_ciba_request(
        &self,
        env_id: &str,
        auth_req_id: &str,
        now: Timestamp,
        tokens: &IssuedTokens,
    ) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let redeemed: Option<String> = sqlx::query_scalar(
            "UPDATE ciba_requests SET status = 'REDEEMED', redeemed_at = ?
             WHERE environment_id = ? AND auth_req_id = ? AND status = 'APPROVED'
               AND expires_at > ?
             RETURNING user_id",
        )
        .bind(now.millis())
        .bind(env_id)
        .bind(auth_req_id)
        .bind(now.millis())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?;
        let Some(user_id) = redeemed else {
            tx.rollback().await.map_err(db_err)?;
            return Ok(false);
        };
        insert_access_token(&mut *tx, &tokens.access_token).await?;
        if let Some(refresh) = &tokens.refresh_token {
            insert_refresh_token(&mut *tx, refresh).await?;
        }
        tx.commit().await.map_err(db_err)?;
        self.publish_request_change(env_id, auth_req_id, Some(&user_id));
        Ok(true)
    }
}
