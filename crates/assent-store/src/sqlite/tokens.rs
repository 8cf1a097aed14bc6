//! Access and refresh tokens: reading them, and the SQL of issuing and revoking them, which
//! the writer (`writer.rs`, on rusqlite) runs inside the transaction of a transition.

use assent_core::{AccessTokenRecord, AuthReqId, EnvironmentId, RefreshTokenRecord, Timestamp};
use rusqlite::{Connection, OptionalExtension, params};

use super::rows::to_json;
use super::{SqliteStore, sql_err};
use crate::{StoreResult, TokenStore};

pub(super) fn insert_access_token(conn: &Connection, t: &AccessTokenRecord) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT INTO access_tokens (environment_id, jti, application_id, user_id, scope,
             auth_req_id, refresh_family_id, issued_at, expires_at, revoked)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .and_then(|mut insert| {
        insert.execute(params![
            t.environment_id.as_str(),
            t.jti,
            t.application_id.as_str(),
            t.user_id.as_deref(),
            t.scope,
            t.auth_req_id.as_deref(),
            t.refresh_family_id,
            t.issued_at.millis(),
            t.expires_at.millis(),
            t.revoked,
        ])
    })
    .map_err(sql_err)?;
    Ok(())
}

pub(super) fn insert_refresh_token(conn: &Connection, t: &RefreshTokenRecord) -> StoreResult<()> {
    let amr = to_json(&t.amr)?;
    conn.prepare_cached(
        "INSERT INTO refresh_tokens (environment_id, token_hash, family_id, application_id,
             user_id, scope, auth_req_id, auth_time, acr, amr, issued_at, expires_at,
             rotated_at, revoked)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .and_then(|mut insert| {
        insert.execute(params![
            t.environment_id.as_str(),
            t.token_hash,
            t.family_id,
            t.application_id.as_str(),
            t.user_id.as_str(),
            t.scope,
            t.auth_req_id.as_deref(),
            t.auth_time.millis(),
            t.acr,
            amr,
            t.issued_at.millis(),
            t.expires_at.millis(),
            t.rotated_at.map(Timestamp::millis),
            t.revoked,
        ])
    })
    .map_err(sql_err)?;
    Ok(())
}

/// Runs one cached statement; returns the rows it changed.
fn execute(conn: &Connection, sql: &str, params: impl rusqlite::Params) -> StoreResult<u64> {
    let changed = conn
        .prepare_cached(sql)
        .and_then(|mut statement| statement.execute(params))
        .map_err(sql_err)?;
    Ok(changed as u64)
}

/// Revokes the family's refresh tokens and the access tokens minted with them. Returns how
/// many tokens it revoked.
pub(super) fn revoke_family(
    conn: &Connection,
    env_id: &EnvironmentId,
    family_id: &str,
) -> StoreResult<u64> {
    let refresh = execute(
        conn,
        "UPDATE refresh_tokens SET revoked = TRUE
         WHERE environment_id = ? AND family_id = ? AND revoked = FALSE",
        params![env_id.as_str(), family_id],
    )?;
    let access = execute(
        conn,
        "UPDATE access_tokens SET revoked = TRUE
         WHERE environment_id = ? AND refresh_family_id = ? AND revoked = FALSE",
        params![env_id.as_str(), family_id],
    )?;
    Ok(refresh + access)
}

/// Revokes every access and refresh token issued from the CIBA request: the tokens of its
/// redemption and everything minted later by refreshing within its refresh families.
/// Returns how many tokens it revoked.
pub(super) fn revoke_request_tokens(
    conn: &Connection,
    env_id: &EnvironmentId,
    auth_req_id: &AuthReqId,
) -> StoreResult<u64> {
    let access = execute(
        conn,
        "UPDATE access_tokens SET revoked = TRUE
         WHERE environment_id = ?1 AND revoked = FALSE
           AND (auth_req_id = ?2 OR refresh_family_id IN (
                 SELECT family_id FROM refresh_tokens
                 WHERE environment_id = ?1 AND auth_req_id = ?2))",
        params![env_id.as_str(), auth_req_id.as_str()],
    )?;
    let refresh = execute(
        conn,
        "UPDATE refresh_tokens SET revoked = TRUE
         WHERE environment_id = ?1 AND revoked = FALSE
           AND (auth_req_id = ?2 OR family_id IN (
                 SELECT family_id FROM refresh_tokens
                 WHERE environment_id = ?1 AND auth_req_id = ?2))",
        params![env_id.as_str(), auth_req_id.as_str()],
    )?;
    Ok(access + refresh)
}

/// Sets the refresh token's `rotated_at` to `rotated_at` if it is as read: its `rotated_at`
/// is `read_rotated_at`, it is not revoked and `at < expires_at`. Returns its family when it
/// did.
pub(super) fn mark_rotated(
    conn: &Connection,
    env_id: &EnvironmentId,
    token_hash: &str,
    read_rotated_at: Option<Timestamp>,
    at: Timestamp,
    rotated_at: Timestamp,
) -> StoreResult<Option<String>> {
    // `IS` is SQLite's null-safe equality (PostgreSQL: IS NOT DISTINCT FROM).
    conn.prepare_cached(
        "UPDATE refresh_tokens SET rotated_at = ?
         WHERE environment_id = ? AND token_hash = ? AND rotated_at IS ?
           AND revoked = FALSE AND expires_at > ?
         RETURNING family_id",
    )
    .and_then(|mut rotate| {
        rotate
            .query_row(
                params![
                    rotated_at.millis(),
                    env_id.as_str(),
                    token_hash,
                    read_rotated_at.map(Timestamp::millis),
                    at.millis(),
                ],
                |row| row.get(0),
            )
            .optional()
    })
    .map_err(sql_err)
}

/// Revokes one access token. Returns whether it revoked one.
pub(super) fn revoke_access_token(
    conn: &Connection,
    env_id: &EnvironmentId,
    jti: &str,
) -> StoreResult<bool> {
    let revoked = execute(
        conn,
        "UPDATE access_tokens SET revoked = TRUE
         WHERE environment_id = ? AND jti = ? AND revoked = FALSE",
        params![env_id.as_str(), jti],
    )?;
    Ok(revoked == 1)
}

#[async_trait::async_trait]
impl TokenStore for SqliteStore {
    // --- tokens -------------------------------------------------------------------------

    async fn get_access_token(
        &self,
        env_id: &EnvironmentId,
        jti: &str,
    ) -> StoreResult<Option<AccessTokenRecord>> {
        self.readers.access_token(env_id, jti)
    }

    async fn insert_access_token(&self, token: &AccessTokenRecord) -> StoreResult<()> {
        let token = token.clone();
        self.writer
            .execute(move |conn| insert_access_token(conn, &token).map(|()| true))
            .await
            .map(drop)
    }

    async fn get_refresh_token(
        &self,
        env_id: &EnvironmentId,
        token_hash: &str,
    ) -> StoreResult<Option<RefreshTokenRecord>> {
        self.readers.refresh_token(env_id, token_hash)
    }
}
