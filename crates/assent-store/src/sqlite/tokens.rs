//! Access and refresh tokens.

use assent_core::{AccessTokenRecord, RefreshTokenRecord, Timestamp};
use sqlx::SqliteExecutor;

use super::rows::{self, to_json};
use super::{SqliteStore, db_err};
use crate::{RefreshOutcome, StoreResult, TokenStore};

pub(super) async fn insert_access_token<'e>(
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

pub(super) async fn insert_refresh_token<'e>(
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

#[async_trait::async_trait]
impl TokenStore for SqliteStore {
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
}
