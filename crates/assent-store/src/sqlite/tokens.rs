//! Access and refresh tokens: reading them, and the SQL of issuing and revoking them, which
//! `transitions.rs` runs inside the transaction of a transition.

use assent_core::{AccessTokenRecord, AuthReqId, EnvironmentId, RefreshTokenRecord, Timestamp};
use sqlx::{SqliteConnection, SqliteExecutor};

use super::rows::{self, to_json};
use super::{SqliteStore, db_err};
use crate::{StoreResult, TokenStore};

pub(super) async fn insert_access_token<'e>(
    ex: impl SqliteExecutor<'e>,
    t: &AccessTokenRecord,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO access_tokens (environment_id, jti, application_id, user_id, scope,
             auth_req_id, refresh_family_id, issued_at, expires_at, revoked)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(t.environment_id.as_str())
    .bind(&t.jti)
    .bind(t.application_id.as_str())
    .bind(t.user_id.as_deref())
    .bind(&t.scope)
    .bind(t.auth_req_id.as_deref())
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
    .bind(t.environment_id.as_str())
    .bind(&t.token_hash)
    .bind(&t.family_id)
    .bind(t.application_id.as_str())
    .bind(t.user_id.as_str())
    .bind(&t.scope)
    .bind(t.auth_req_id.as_deref())
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

/// Revokes the family's refresh tokens and the access tokens minted with them. Returns how
/// many tokens it revoked.
pub(super) async fn revoke_family(
    conn: &mut SqliteConnection,
    env_id: &EnvironmentId,
    family_id: &str,
) -> StoreResult<u64> {
    let refresh = sqlx::query(
        "UPDATE refresh_tokens SET revoked = TRUE
         WHERE environment_id = ? AND family_id = ? AND revoked = FALSE",
    )
    .bind(env_id.as_str())
    .bind(family_id)
    .execute(&mut *conn)
    .await
    .map_err(db_err)?;
    let access = sqlx::query(
        "UPDATE access_tokens SET revoked = TRUE
         WHERE environment_id = ? AND refresh_family_id = ? AND revoked = FALSE",
    )
    .bind(env_id.as_str())
    .bind(family_id)
    .execute(&mut *conn)
    .await
    .map_err(db_err)?;
    Ok(refresh.rows_affected() + access.rows_affected())
}

/// Revokes every access and refresh token issued from the CIBA request: the tokens of its
/// redemption and everything minted later by refreshing within its refresh families.
/// Returns how many tokens it revoked.
pub(super) async fn revoke_request_tokens(
    conn: &mut SqliteConnection,
    env_id: &EnvironmentId,
    auth_req_id: &AuthReqId,
) -> StoreResult<u64> {
    let access = sqlx::query(
        "UPDATE access_tokens SET revoked = TRUE
         WHERE environment_id = ? AND revoked = FALSE
           AND (auth_req_id = ? OR refresh_family_id IN (
                 SELECT family_id FROM refresh_tokens
                 WHERE environment_id = ? AND auth_req_id = ?))",
    )
    .bind(env_id.as_str())
    .bind(auth_req_id.as_str())
    .bind(env_id.as_str())
    .bind(auth_req_id.as_str())
    .execute(&mut *conn)
    .await
    .map_err(db_err)?;
    let refresh = sqlx::query(
        "UPDATE refresh_tokens SET revoked = TRUE
         WHERE environment_id = ? AND revoked = FALSE
           AND (auth_req_id = ? OR family_id IN (
                 SELECT family_id FROM refresh_tokens
                 WHERE environment_id = ? AND auth_req_id = ?))",
    )
    .bind(env_id.as_str())
    .bind(auth_req_id.as_str())
    .bind(env_id.as_str())
    .bind(auth_req_id.as_str())
    .execute(&mut *conn)
    .await
    .map_err(db_err)?;
    Ok(access.rows_affected() + refresh.rows_affected())
}

/// Sets the refresh token's `rotated_at` to `rotated_at` if it is as read: its `rotated_at`
/// is `read_rotated_at`, it is not revoked and `at < expires_at`. Returns its family when it
/// did.
pub(super) async fn mark_rotated(
    conn: &mut SqliteConnection,
    env_id: &EnvironmentId,
    token_hash: &str,
    read_rotated_at: Option<Timestamp>,
    at: Timestamp,
    rotated_at: Timestamp,
) -> StoreResult<Option<String>> {
    // `IS` is SQLite's null-safe equality (PostgreSQL: IS NOT DISTINCT FROM).
    sqlx::query_scalar(
        "UPDATE refresh_tokens SET rotated_at = ?
         WHERE environment_id = ? AND token_hash = ? AND rotated_at IS ?
           AND revoked = FALSE AND expires_at > ?
         RETURNING family_id",
    )
    .bind(rotated_at.millis())
    .bind(env_id.as_str())
    .bind(token_hash)
    .bind(read_rotated_at.map(Timestamp::millis))
    .bind(at.millis())
    .fetch_optional(&mut *conn)
    .await
    .map_err(db_err)
}

/// Revokes one access token. Returns whether it revoked one.
pub(super) async fn revoke_access_token(
    conn: &mut SqliteConnection,
    env_id: &EnvironmentId,
    jti: &str,
) -> StoreResult<bool> {
    let result = sqlx::query(
        "UPDATE access_tokens SET revoked = TRUE
         WHERE environment_id = ? AND jti = ? AND revoked = FALSE",
    )
    .bind(env_id.as_str())
    .bind(jti)
    .execute(&mut *conn)
    .await
    .map_err(db_err)?;
    Ok(result.rows_affected() == 1)
}

#[async_trait::async_trait]
impl TokenStore for SqliteStore {
    // --- tokens -------------------------------------------------------------------------

    async fn get_access_token(
        &self,
        env_id: &EnvironmentId,
        jti: &str,
    ) -> StoreResult<Option<AccessTokenRecord>> {
        sqlx::query("SELECT * FROM access_tokens WHERE environment_id = ? AND jti = ?")
            .bind(env_id.as_str())
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

    async fn get_refresh_token(
        &self,
        env_id: &EnvironmentId,
        token_hash: &str,
    ) -> StoreResult<Option<RefreshTokenRecord>> {
        sqlx::query("SELECT * FROM refresh_tokens WHERE environment_id = ? AND token_hash = ?")
            .bind(env_id.as_str())
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?
            .as_ref()
            .map(rows::refresh_token)
            .transpose()
    }
}
