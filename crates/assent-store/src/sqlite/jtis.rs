//! Single-use JWT ids, recorded by the writer (their use is a conditional write, group-committed
//! with the transitions).

use assent_core::{EnvironmentId, Timestamp};
use rusqlite::params;

use super::{SqliteStore, sql_err};
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
        let (env_id, namespace, jti) = (env_id.clone(), namespace.to_owned(), jti.to_owned());
        // One statement: a fresh insert, or the takeover of an expired entry, affects one row;
        // an unexpired entry makes the conditional DO UPDATE a no-op (0 rows).
        self.writer
            .execute(move |conn| {
                let used = conn
                    .prepare_cached(
                        "INSERT INTO used_jtis (environment_id, namespace, jti, expires_at)
                         VALUES (?, ?, ?, ?)
                         ON CONFLICT (environment_id, namespace, jti)
                         DO UPDATE SET expires_at = excluded.expires_at
                         WHERE used_jtis.expires_at <= ?",
                    )
                    .and_then(|mut insert| {
                        insert.execute(params![
                            env_id.as_str(),
                            namespace,
                            jti,
                            expires_at.millis(),
                            now.millis()
                        ])
                    })
                    .map_err(sql_err)?;
                Ok(used == 1)
            })
            .await
    }
}
