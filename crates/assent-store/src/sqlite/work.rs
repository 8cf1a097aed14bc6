//! Scheduled work (`scheduled_work`): written and finished inside the transaction of the
//! change that causes it (`apply`), claimed by workers with a lease.

use assent_core::Timestamp;
use assent_core::transition::{ScheduledWork, WorkId};
use sqlx::SqliteConnection;

use super::db_err;
use super::rows::to_json;
use crate::StoreResult;

/// Inserts `work` in the caller's transaction.
pub(super) async fn insert_work(
    conn: &mut SqliteConnection,
    work: &[ScheduledWork],
    now: Timestamp,
) -> StoreResult<()> {
    for w in work {
        sqlx::query(
            "INSERT INTO scheduled_work (id, environment_id, kind, payload, due_at, created_at)
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(w.id.as_str())
        .bind(&w.environment_id)
        .bind(w.job.kind())
        .bind(to_json(&w.job)?)
        .bind(w.due_at.millis())
        .bind(now.millis())
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
    }
    Ok(())
}

/// Deletes finished work in the caller's transaction. Returns false when it was already gone
/// (another worker finished it): the caller's transition has then lost.
pub(super) async fn complete_work(
    conn: &mut SqliteConnection,
    env_id: &str,
    id: &WorkId,
) -> StoreResult<bool> {
    let done = sqlx::query("DELETE FROM scheduled_work WHERE id = ? AND environment_id = ?")
        .bind(id.as_str())
        .bind(env_id)
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
    Ok(done.rows_affected() == 1)
}
