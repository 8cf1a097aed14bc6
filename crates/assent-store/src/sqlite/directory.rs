//! Environments, applications and users.

use assent_core::identifier::comparison_key;
use assent_core::validate::{PHONE_OWNER_CANDIDATES, normalize_phone, phone_owner};
use assent_core::{
    Application, ApplicationId, Environment, EnvironmentId, ListPage, Page, Timestamp, User, UserId,
};
use sqlx::{QueryBuilder, Sqlite};

use super::paging::{ListSpec, list_page};
use super::rows::{self, opt_to_json, to_json};
use super::{SqliteStore, db_err, found};
use crate::{DirectoryStore, StoreError, StoreResult};

/// The comparison key of a username or email being stored (§9 "Identifiers"; the policy is
/// `assent_core::identifier`). Callers validate first, so a failure here is a caller's bug.
fn key(s: &str) -> StoreResult<String> {
    comparison_key(s).map_err(|e| StoreError::Invalid(format!("not a valid identifier: {e}")))
}

fn environment_key(e: &Environment) -> (Timestamp, &str) {
    (e.created_at, &e.id)
}
fn application_key(a: &Application) -> (Timestamp, &str) {
    (a.created_at, &a.id)
}
fn user_key(u: &User) -> (Timestamp, &str) {
    (u.created_at, &u.id)
}

#[async_trait::async_trait]
impl DirectoryStore for SqliteStore {
    // --- environments -------------------------------------------------------------------

    async fn create_environment(&self, env: &Environment) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO environments (id, name, description, env_type,
                 max_pending_requests_per_user, authorization_requests_per_minute, created_at,
                 updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(env.id.as_str())
        .bind(&env.name)
        .bind(&env.description)
        .bind(env.env_type.as_str())
        .bind(env.abuse_limits.max_pending_requests_per_user)
        .bind(env.abuse_limits.authorization_requests_per_minute)
        .bind(env.created_at.millis())
        .bind(env.updated_at.millis())
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn get_environment(&self, id: &EnvironmentId) -> StoreResult<Environment> {
        let row = sqlx::query("SELECT * FROM environments WHERE id = ?")
            .bind(id.as_str())
            .fetch_one(&self.pool)
            .await
            .map_err(db_err)?;
        rows::environment(&row)
    }

    async fn list_environments(&self, page: &Page) -> StoreResult<ListPage<Environment>> {
        let filter = |qb: &mut QueryBuilder<Sqlite>| {
            qb.push(" WHERE TRUE");
        };
        let spec = ListSpec {
            table: "environments",
            id_column: "id",
            filter: &filter,
            map_row: rows::environment,
            key: environment_key,
        };
        list_page(&self.pool, spec, page).await
    }

    async fn update_environment(&self, env: &Environment) -> StoreResult<()> {
        let result = sqlx::query(
            "UPDATE environments SET name = ?, description = ?, env_type = ?,
                 max_pending_requests_per_user = ?, authorization_requests_per_minute = ?,
                 updated_at = ?
             WHERE id = ?",
        )
        .bind(&env.name)
        .bind(&env.description)
        .bind(env.env_type.as_str())
        .bind(env.abuse_limits.max_pending_requests_per_user)
        .bind(env.abuse_limits.authorization_requests_per_minute)
        .bind(env.updated_at.millis())
        .bind(env.id.as_str())
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        found(&result)
    }

    async fn delete_environment(&self, id: &EnvironmentId) -> StoreResult<()> {
        // Everything else references the environment ON DELETE CASCADE.
        let result = sqlx::query("DELETE FROM environments WHERE id = ?")
            .bind(id.as_str())
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        found(&result)
    }

    // --- applications -------------------------------------------------------------------

    async fn create_application(&self, app: &Application, secret_sealed: &[u8]) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO applications (environment_id, id, name, description, enabled, protocol,
                 app_type, grant_types, token_endpoint_auth_method, jwks, jwks_url,
                 id_token_signing_algorithm, access_token_duration_seconds,
                 refresh_token_duration_seconds, refresh_token_reuse_grace_seconds, ciba,
                 secret_sealed, secret_updated_at, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(app.environment_id.as_str())
        .bind(app.id.as_str())
        .bind(&app.name)
        .bind(&app.description)
        .bind(app.enabled)
        .bind(&app.protocol)
        .bind(&app.app_type)
        .bind(to_json(&app.grant_types)?)
        .bind(app.token_endpoint_auth_method.as_str())
        .bind(opt_to_json(app.jwks.as_ref())?)
        .bind(&app.jwks_url)
        .bind(app.id_token_signing_algorithm.as_str())
        .bind(app.access_token_duration_seconds)
        .bind(app.refresh_token_duration_seconds)
        .bind(app.refresh_token_reuse_grace_seconds)
        .bind(to_json(&app.ciba)?)
        .bind(secret_sealed)
        .bind(app.created_at.millis())
        .bind(app.created_at.millis())
        .bind(app.updated_at.millis())
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn get_application(
        &self,
        env_id: &EnvironmentId,
        id: &ApplicationId,
    ) -> StoreResult<Application> {
        let row = sqlx::query("SELECT * FROM applications WHERE environment_id = ? AND id = ?")
            .bind(env_id.as_str())
            .bind(id.as_str())
            .fetch_one(&self.pool)
            .await
            .map_err(db_err)?;
        rows::application(&row)
    }

    async fn list_applications(
        &self,
        env_id: &EnvironmentId,
        page: &Page,
    ) -> StoreResult<ListPage<Application>> {
        let filter = |qb: &mut QueryBuilder<Sqlite>| {
            qb.push(" WHERE environment_id = ")
                .push_bind(env_id.as_str().to_owned());
        };
        let spec = ListSpec {
            table: "applications",
            id_column: "id",
            filter: &filter,
            map_row: rows::application,
            key: application_key,
        };
        list_page(&self.pool, spec, page).await
    }

    async fn update_application(&self, app: &Application) -> StoreResult<()> {
        let result = sqlx::query(
            "UPDATE applications SET name = ?, description = ?, enabled = ?, protocol = ?,
                 app_type = ?, grant_types = ?, token_endpoint_auth_method = ?, jwks = ?,
                 jwks_url = ?, id_token_signing_algorithm = ?, access_token_duration_seconds = ?,
                 refresh_token_duration_seconds = ?, refresh_token_reuse_grace_seconds = ?,
                 ciba = ?, updated_at = ?
             WHERE environment_id = ? AND id = ?",
        )
        .bind(&app.name)
        .bind(&app.description)
        .bind(app.enabled)
        .bind(&app.protocol)
        .bind(&app.app_type)
        .bind(to_json(&app.grant_types)?)
        .bind(app.token_endpoint_auth_method.as_str())
        .bind(opt_to_json(app.jwks.as_ref())?)
        .bind(&app.jwks_url)
        .bind(app.id_token_signing_algorithm.as_str())
        .bind(app.access_token_duration_seconds)
        .bind(app.refresh_token_duration_seconds)
        .bind(app.refresh_token_reuse_grace_seconds)
        .bind(to_json(&app.ciba)?)
        .bind(app.updated_at.millis())
        .bind(app.environment_id.as_str())
        .bind(app.id.as_str())
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        found(&result)
    }

    async fn delete_application(
        &self,
        env_id: &EnvironmentId,
        id: &ApplicationId,
    ) -> StoreResult<()> {
        // Its CIBA requests and tokens reference it ON DELETE CASCADE.
        let result = sqlx::query("DELETE FROM applications WHERE environment_id = ? AND id = ?")
            .bind(env_id.as_str())
            .bind(id.as_str())
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        found(&result)
    }

    async fn get_application_secret(
        &self,
        env_id: &EnvironmentId,
        id: &ApplicationId,
    ) -> StoreResult<Vec<u8>> {
        sqlx::query_scalar(
            "SELECT secret_sealed FROM applications WHERE environment_id = ? AND id = ?",
        )
        .bind(env_id.as_str())
        .bind(id.as_str())
        .fetch_one(&self.pool)
        .await
        .map_err(db_err)
    }

    async fn set_application_secret(
        &self,
        env_id: &EnvironmentId,
        id: &ApplicationId,
        secret_sealed: &[u8],
        now: Timestamp,
    ) -> StoreResult<()> {
        let result = sqlx::query(
            "UPDATE applications SET secret_sealed = ?, secret_updated_at = ?, updated_at = ?
             WHERE environment_id = ? AND id = ?",
        )
        .bind(secret_sealed)
        .bind(now.millis())
        .bind(now.millis())
        .bind(env_id.as_str())
        .bind(id.as_str())
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        found(&result)
    }

    // --- users --------------------------------------------------------------------------

    async fn create_user(&self, user: &User) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO users (environment_id, id, username, username_lower, email, email_lower,
                 given_name, family_name, phone_number, phone_normalized, password_hash, enabled,
                 auto_decision, auto_decision_delay_ms, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(user.environment_id.as_str())
        .bind(user.id.as_str())
        .bind(&user.username)
        .bind(key(&user.username)?)
        .bind(&user.email)
        .bind(user.email.as_deref().map(key).transpose()?)
        .bind(&user.given_name)
        .bind(&user.family_name)
        .bind(&user.phone_number)
        .bind(user.phone_number.as_deref().map(normalize_phone))
        .bind(&user.password_hash)
        .bind(user.enabled)
        .bind(user.auto_decision.map(|d| d.as_str()))
        .bind(user.auto_decision_delay_ms)
        .bind(user.created_at.millis())
        .bind(user.updated_at.millis())
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn get_user(&self, env_id: &EnvironmentId, id: &UserId) -> StoreResult<User> {
        let row = sqlx::query("SELECT * FROM users WHERE environment_id = ? AND id = ?")
            .bind(env_id.as_str())
            .bind(id.as_str())
            .fetch_one(&self.pool)
            .await
            .map_err(db_err)?;
        rows::user(&row)
    }

    async fn find_user_by_username(
        &self,
        env_id: &EnvironmentId,
        username: &str,
    ) -> StoreResult<Option<User>> {
        self.find_user_by_identifier(env_id, IdentifierColumn::Username, username)
            .await
    }

    async fn find_user_by_email(
        &self,
        env_id: &EnvironmentId,
        email: &str,
    ) -> StoreResult<Option<User>> {
        self.find_user_by_identifier(env_id, IdentifierColumn::Email, email)
            .await
    }

    async fn find_user_by_phone(
        &self,
        env_id: &EnvironmentId,
        phone: &str,
    ) -> StoreResult<Option<User>> {
        // Phone numbers are not unique: core's `phone_owner` says whom a number names.
        let rows = sqlx::query(
            "SELECT * FROM users WHERE environment_id = ? AND phone_normalized = ? LIMIT ?",
        )
        .bind(env_id.as_str())
        .bind(phone)
        .bind(PHONE_OWNER_CANDIDATES)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        phone_owner(rows).as_ref().map(rows::user).transpose()
    }

    async fn list_users(
        &self,
        env_id: &EnvironmentId,
        username: Option<&str>,
        page: &Page,
    ) -> StoreResult<ListPage<User>> {
        let username_key = match username.map(comparison_key) {
            None => None,
            Some(Ok(key)) => Some(key),
            // No stored username has a key that is not a valid identifier.
            Some(Err(_)) => {
                return Ok(ListPage {
                    items: Vec::new(),
                    total: 0,
                    next: None,
                });
            }
        };
        let filter = |qb: &mut QueryBuilder<Sqlite>| {
            qb.push(" WHERE environment_id = ")
                .push_bind(env_id.as_str().to_owned());
            if let Some(key) = &username_key {
                qb.push(" AND username_lower = ").push_bind(key.clone());
            }
        };
        let spec = ListSpec {
            table: "users",
            id_column: "id",
            filter: &filter,
            map_row: rows::user,
            key: user_key,
        };
        list_page(&self.pool, spec, page).await
    }

    async fn update_user(&self, user: &User) -> StoreResult<()> {
        let result = sqlx::query(
            "UPDATE users SET username = ?, username_lower = ?, email = ?, email_lower = ?,
                 given_name = ?, family_name = ?, phone_number = ?, phone_normalized = ?,
                 password_hash = ?, enabled = ?, auto_decision = ?, auto_decision_delay_ms = ?,
                 updated_at = ?
             WHERE environment_id = ? AND id = ?",
        )
        .bind(&user.username)
        .bind(key(&user.username)?)
        .bind(&user.email)
        .bind(user.email.as_deref().map(key).transpose()?)
        .bind(&user.given_name)
        .bind(&user.family_name)
        .bind(&user.phone_number)
        .bind(user.phone_number.as_deref().map(normalize_phone))
        .bind(&user.password_hash)
        .bind(user.enabled)
        .bind(user.auto_decision.map(|d| d.as_str()))
        .bind(user.auto_decision_delay_ms)
        .bind(user.updated_at.millis())
        .bind(user.environment_id.as_str())
        .bind(user.id.as_str())
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        found(&result)
    }

    async fn delete_user(&self, env_id: &EnvironmentId, id: &UserId) -> StoreResult<()> {
        // Its CIBA requests and tokens reference it ON DELETE CASCADE.
        let result = sqlx::query("DELETE FROM users WHERE environment_id = ? AND id = ?")
            .bind(env_id.as_str())
            .bind(id.as_str())
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        found(&result)
    }

    async fn directory_changes_since(&self, after: u64) -> StoreResult<Vec<(EnvironmentId, u64)>> {
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT environment_id, seq FROM directory_versions WHERE seq > ? ORDER BY seq",
        )
        .bind(after)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(rows
            .into_iter()
            .map(|(env, seq)| (EnvironmentId::from(env), u64::try_from(seq).unwrap_or(0)))
            .collect())
    }
}

/// The columns holding an identifier's comparison key (RFC 8265 profile).
#[derive(Clone, Copy)]
enum IdentifierColumn {
    Username,
    Email,
}

impl SqliteStore {
    /// The user whose username or email matches `value` under the identifier profile; a value
    /// that is not a valid identifier (a hint, say) names nobody.
    async fn find_user_by_identifier(
        &self,
        env_id: &EnvironmentId,
        column: IdentifierColumn,
        value: &str,
    ) -> StoreResult<Option<User>> {
        let Ok(key) = comparison_key(value) else {
            return Ok(None);
        };
        let sql = match column {
            IdentifierColumn::Username => {
                "SELECT * FROM users WHERE environment_id = ? AND username_lower = ?"
            }
            IdentifierColumn::Email => {
                "SELECT * FROM users WHERE environment_id = ? AND email_lower = ?"
            }
        };
        sqlx::query(sql)
            .bind(env_id.as_str())
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?
            .as_ref()
            .map(rows::user)
            .transpose()
    }
}
