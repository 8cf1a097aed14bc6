//! Scheduled work (`scheduled_work`): written and finished by the writer inside the
//! transaction of the change that causes it (`apply`), claimed by workers with a lease.
//!
//! Work is not scoped by environment: a worker serves every environment, and work ids are
//! random, so the claim and retry statements address rows by id alone.

use assent_core::transition::{ScheduledWork, WorkId};
use assent_core::{EnvironmentId, Timestamp};
use rusqlite::{Connection, params};

use super::rows::{self, to_json};
use super::{SqliteStore, db_err, sql_err};
use crate::{ClaimedWork, StoreResult, WorkStore};

/// Inserts `work` in the writer's transaction.
pub(super) fn insert_work(
    conn: &Connection,
    work: &[ScheduledWork],
    now: Timestamp,
) -> StoreResult<()> {
    let mut insert = conn
        .prepare_cached(
            "INSERT INTO scheduled_work (id, environment_id, kind, payload, due_at, created_at)
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .map_err(sql_err)?;
    for w in work {
        insert
            .execute(params![
                w.id.as_str(),
                w.environment_id.as_str(),
                w.job.kind(),
                to_json(&w.job)?,
                w.due_at.millis(),
                now.millis(),
            ])
            .map_err(sql_err)?;
    }
    Ok(())
}

/// Deletes finished work in the writer's transaction. Returns false when it was already gone
/// (another worker finished it): the caller's transition has then lost.
pub(super) fn complete_work(
    conn: &Connection,
    env_id: &EnvironmentId,
    id: &WorkId,
) -> StoreResult<bool> {
    let done = conn
        .prepare_cached("DELETE FROM scheduled_work WHERE id = ? AND environment_id = ?")
        .and_then(|mut delete| delete.execute(params![id.as_str(), env_id.as_str()]))
        .map_err(sql_err)?;
    Ok(done == 1)
}

#[async_trait::async_trait]
impl WorkStore for SqliteStore {
    async fn claim_due_work(
        &self,
        worker: &str,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
    ) -> StoreResult<Vec<ClaimedWork>> {
        // One statement, so one write transaction: the rows chosen and the rows claimed are
        // the same, whatever other connections or processes do. (PostgreSQL chooses them with
        // `FOR UPDATE SKIP LOCKED`, so concurrent claimers take different rows.)
        let claimed = sqlx::query(
            "UPDATE scheduled_work
                SET claimed_by = ?, claimed_until = ?, attempts = attempts + 1
              WHERE id IN (SELECT id FROM scheduled_work
                            WHERE due_at <= ?
                              AND (claimed_until IS NULL OR claimed_until <= ?)
                            ORDER BY due_at, id
                            LIMIT ?)
             RETURNING id, environment_id, payload, due_at, claimed_until, attempts",
        )
        .bind(worker)
        .bind(lease_until.millis())
        .bind(now.millis())
        .bind(now.millis())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        let mut work = Vec::with_capacity(claimed.len());
        for row in &claimed {
            match rows::claimed_work(row) {
                Ok(w) => work.push(w),
                // Work this version cannot read (a kind added by a newer version sharing the
                // database, or a damaged row) stays held by this claim until the lease ends,
                // then free for another node: never run wrongly, never deleted, and never in
                // the way of the work behind it.
                Err(e) => tracing::warn!(
                    worker,
                    error = %e,
                    "scheduled work this version cannot read is left for another node"
                ),
            }
        }
        // RETURNING yields rows in no promised order.
        work.sort_by(|a, b| {
            (a.work.due_at, a.work.id.as_str()).cmp(&(b.work.due_at, b.work.id.as_str()))
        });
        Ok(work)
    }

    async fn next_work_due(&self) -> StoreResult<Option<Timestamp>> {
        // Work under a lease can be claimed again only when the lease ends.
        let next: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(MAX(due_at, COALESCE(claimed_until, due_at))) FROM scheduled_work",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(next.map(Timestamp))
    }

    async fn retry_work(&self, worker: &str, id: &WorkId, due_at: Timestamp) -> StoreResult<bool> {
        let given_back = sqlx::query(
            "UPDATE scheduled_work SET claimed_by = NULL, claimed_until = NULL, due_at = ?
              WHERE id = ? AND claimed_by = ?",
        )
        .bind(due_at.millis())
        .bind(id.as_str())
        .bind(worker)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(given_back.rows_affected() == 1)
    }
}
