//! Signing keys, sealed values (and their re-sealing), server-wide values.

use assent_core::{EnvironmentId, SigningAlgorithm, SigningKey, Timestamp};
use sqlx::SqliteExecutor;

use super::rows::{self, to_json};
use super::{SqliteStore, db_err};
use crate::{KeyStore, Resealed, SealedKind, SealedValue, StoreError, StoreResult, UniqueField};

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
            environment_id: EnvironmentId::from(environment_id),
            id,
            sealed,
        })
        .collect())
}

#[async_trait::async_trait]
impl KeyStore for SqliteStore {
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
        .bind(key.environment_id.as_str())
        .bind(key.algorithm.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        sqlx::query(
            "INSERT INTO signing_keys (environment_id, id, algorithm, public_jwk,
                 private_key_sealed, is_current, created_at, retire_at)
             VALUES (?, ?, ?, ?, ?, TRUE, ?, ?)",
        )
        .bind(key.environment_id.as_str())
        .bind(key.id.as_str())
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
        .bind(key.environment_id.as_str())
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
        .bind(key.environment_id.as_str())
        .bind(key.id.as_str())
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

    async fn list_signing_keys(&self, env_id: &EnvironmentId) -> StoreResult<Vec<SigningKey>> {
        sqlx::query(
            "SELECT * FROM signing_keys WHERE environment_id = ?
             ORDER BY created_at DESC, id DESC",
        )
        .bind(env_id.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?
        .iter()
        .map(rows::signing_key)
        .collect()
    }

    async fn current_signing_key(
        &self,
        env_id: &EnvironmentId,
        alg: SigningAlgorithm,
    ) -> StoreResult<Option<SigningKey>> {
        sqlx::query(
            "SELECT * FROM signing_keys
             WHERE environment_id = ? AND algorithm = ? AND is_current = TRUE",
        )
        .bind(env_id.as_str())
        .bind(alg.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?
        .as_ref()
        .map(rows::signing_key)
        .transpose()
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
        let conflict = || StoreError::Conflict(UniqueField::SealedValues);
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
                .bind(r.old.environment_id.as_str())
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
}
