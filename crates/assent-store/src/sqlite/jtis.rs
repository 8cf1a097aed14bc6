//! Single-use JWT ids.

use assent_core::{EnvironmentId, Timestamp};

use super::{SqliteStore, db_err};
use crate::{JtiStore, StoreResult};

#[async_trait::async_trait]
impl JtiStore for SqliteStore {
    // --- single-use JWT ids -------------------------------------------------------------

    async fn use_jti(
        &self,
        env_id: &EnvironmentId,
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
        .bind(env_id.as_str())
        .bind(namespace)
        .bind(jti)
        .bind(expires_at.millis())
        .bind(now.millis())
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(result.rows_affected() == 1)
    }
}
