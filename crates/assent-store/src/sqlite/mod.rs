//! The SQLite store: one database file in WAL mode with `synchronous=FULL` (an accepted CIBA
//! request survives a power cut), foreign keys enforced, schema migrated at open.
//!
//! One write is exempt from the fsync: poll bookkeeping. A transition that only records a
//! poll is a compare-and-set on records held in memory (`polls`), written every 500 ms by the
//! writer in a transaction of its own committed with `synchronous=NORMAL`. Losing a record (to
//! a crash before the flush, or a power cut after it) only spares one client one `slow_down`
//! (docs/store.md, "Poll bookkeeping in memory").
//!
//! The WAL is checkpointed by SQLite itself (every 1,000 pages); `journal_size_limit`
//! ([`WAL_SIZE_LIMIT`]) truncates the file to that size each time the log restarts, so a burst
//! that grew it does not leave it at its largest on disk.
//!
//! Every statement filters by `environment_id`; conditional writes (the guards of transitions,
//! `use_jti`) are single conditional statements inside `BEGIN IMMEDIATE` transactions (or one
//! autocommitted statement) whose outcome is read from the affected row count, so concurrent
//! callers (pool connections or processes sharing the file) cannot both win.
//!
//! Every other transition goes through one writer task (`writer`): the transitions queued when
//! it wakes share one transaction, one commit and one fsync (group commit, docs/store.md).
//!
//! One file per aggregate (`directory`, `keys`, `ciba`, `tokens`, `jtis`, `work`), plus
//! `transitions` (`Transitions::apply`, sequencing their SQL for one transition) and `writer`
//! (the batches); this one opens the database, migrates it, maps errors and purges.

mod ciba;
mod directory;
mod jtis;
mod keys;
mod paging;
mod polls;
mod reader;
mod rows;
mod tokens;
mod transitions;
mod work;
mod writer;

use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use assent_core::Timestamp;
use assent_core::identifier::comparison_key;
use assent_core::retention::purge_cutoffs;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool};

use crate::{
    Housekeeping, InProcessWakeUps, StoreError, StoreResult, UniqueField, WakeKey, WakeUp, WakeUps,
};

const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// What the WAL file is truncated to when SQLite restarts the log (`PRAGMA
/// journal_size_limit`, bytes). Without it the file keeps the size of the largest burst
/// written while readers kept the log from restarting (791 MB after a million requests were
/// seeded: docs/performance.md).
const WAL_SIZE_LIMIT: u64 = 64 * 1024 * 1024;

pub struct SqliteStore {
    pool: SqlitePool,
    /// Published on every state change of a CIBA request (this process only).
    wake_ups: InProcessWakeUps,
    /// Applies every durable transition, in batches, and writes the poll records.
    writer: Arc<writer::Writer>,
    /// The hot read of a CIBA request on the caller's thread (a file database only).
    readers: Option<reader::Readers>,
    /// Poll bookkeeping held in memory and flushed through the writer (`polls.rs`).
    polls: Arc<polls::PollBook>,
    /// Writes `polls` every `polls::FLUSH_INTERVAL` until the store is closed or dropped.
    flusher: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        if let Some(f) = self
            .flusher
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            f.abort();
        }
    }
}

/// While this lives, the writer starts no batch ([`SqliteStore::hold_writes`]).
#[must_use = "the writer resumes when this is dropped"]
pub struct HeldWrites(
    #[expect(dead_code, reason = "held for its drop")] tokio::sync::OwnedSemaphorePermit,
);

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if missing) the database file at `path` and applies pending migrations.
    pub async fn open(path: &Path) -> StoreResult<SqliteStore> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT)
            .pragma("journal_size_limit", WAL_SIZE_LIMIT.to_string());
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options.clone())
            .await
            .map_err(db_err)?;
        // The writer's own connection (`synchronous=FULL`): a batch waits for no pool.
        let own = sqlx::ConnectOptions::connect(&options)
            .await
            .map_err(db_err)?;
        Self::migrated(
            pool,
            writer::WriteConnection::Own(own),
            Some(reader::Readers::new(path)),
        )
        .await
    }

    /// A private in-memory database (for tests). The pool holds exactly one connection that
    /// is never recycled, so every caller sees the same data for the store's lifetime; the
    /// writer takes it for each batch like any other caller.
    pub async fn open_in_memory() -> StoreResult<SqliteStore> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:")
            .map_err(db_err)?
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .min_connections(1)
            .max_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await
            .map_err(db_err)?;
        let writes = writer::WriteConnection::Pool(pool.clone());
        Self::migrated(pool.clone(), writes, None).await
    }

    /// Migrates the database behind `pool` and starts the writer (on the current Tokio
    /// runtime).
    async fn migrated(
        pool: SqlitePool,
        writes: writer::WriteConnection,
        readers: Option<reader::Readers>,
    ) -> StoreResult<SqliteStore> {
        sqlx::migrate!("migrations/sqlite")
            .run(&pool)
            .await
            .map_err(|e| StoreError::Database(format!("migration failed: {e}")))?;
        rekey_identifiers(&pool).await?;
        let wake_ups = InProcessWakeUps::new();
        let polls = Arc::new(polls::PollBook::default());
        let writer = Arc::new(writer::Writer::start(writes, wake_ups.clone()));
        let flusher = tokio::spawn({
            let polls = Arc::clone(&polls);
            let writer = Arc::clone(&writer);
            async move {
                let mut ticks = tokio::time::interval(polls::FLUSH_INTERVAL);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    ticks.tick().await;
                    if let Err(e) = flush_polls(&polls, &writer).await {
                        tracing::warn!(error = %e, "writing poll records failed; retried at the next flush");
                    }
                }
            }
        });
        Ok(SqliteStore {
            writer,
            pool,
            wake_ups,
            readers,
            polls,
            flusher: Mutex::new(Some(flusher)),
        })
    }

    /// Stops the writer once it has applied what is queued, then closes the pools
    /// (checkpointing the WAL); further calls fail.
    pub async fn close(&self) {
        let flusher = self
            .flusher
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(f) = flusher {
            f.abort();
            let _ = f.await;
        }
        if let Err(e) = flush_polls(&self.polls, &self.writer).await {
            tracing::warn!(error = %e, "writing the last poll records failed");
        }
        self.writer.close().await;
        if let Some(readers) = &self.readers {
            readers.close();
        }
        self.pool.close().await;
    }

    /// Keeps the writer from starting its next batch until the returned value is dropped, so
    /// that the transitions applied meanwhile queue up and then share one transaction (up to
    /// 256 of them). For tests of group commit; `write_stats().queued` says how many wait.
    /// Writes the poll records held in memory now (the flusher does every
    /// `FLUSH_INTERVAL`); returns how many were written. For tests.
    pub async fn flush_polls(&self) -> StoreResult<usize> {
        flush_polls(&self.polls, &self.writer).await
    }

    /// How many requests' poll records are held in memory. For tests.
    pub fn polls_held(&self) -> usize {
        self.polls.held()
    }

    pub async fn hold_writes(&self) -> StoreResult<HeldWrites> {
        Ok(HeldWrites(self.writer.hold().await?))
    }

    async fn begin_write(&self) -> StoreResult<sqlx::Transaction<'static, Sqlite>> {
        // IMMEDIATE takes the write lock up front: conditional read-then-write sequences in the
        // transaction cannot interleave with another writer.
        self.pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_err)
    }
}

/// Writes the changed poll records through the writer; returns how many were written.
async fn flush_polls(polls: &polls::PollBook, writer: &writer::Writer) -> StoreResult<usize> {
    let records = polls.take_changed();
    if records.is_empty() {
        return Ok(0);
    }
    let written = writer.write_polls(records.clone()).await;
    polls.flushed(&records, &written);
    written.map(|gone| records.len() - gone.len())
}

// --- errors -----------------------------------------------------------------------------------

/// Fields whose uniqueness violations are reported by name; found in the constraint name
/// (PostgreSQL) or the message (SQLite: "UNIQUE constraint failed: users.environment_id,
/// users.username_lower").
const UNIQUE_FIELDS: &[(&str, UniqueField)] = &[
    ("username", UniqueField::Username),
    ("email", UniqueField::Email),
    ("auth_req_id", UniqueField::AuthReqId),
    ("token_hash", UniqueField::TokenHash),
    ("jti", UniqueField::Jti),
    ("algorithm", UniqueField::Algorithm),
];

/// The one mapping from database errors to `StoreError`: unique violations become
/// `Conflict(<field>)`, foreign-key violations (the environment, application or user referred to
/// does not exist) `NotFound`, undecodable values `Corrupt`, the rest `Database`.
#[expect(
    clippy::needless_pass_by_value,
    reason = "by value so that every query reads `.map_err(db_err)`"
)]
pub(crate) fn db_err(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::RowNotFound => StoreError::NotFound,
        sqlx::Error::Database(d) if d.is_unique_violation() => {
            let haystack = format!("{} {}", d.constraint().unwrap_or_default(), d.message());
            let field = UNIQUE_FIELDS
                .iter()
                .find(|(name, _)| haystack.contains(name))
                .map_or(UniqueField::Id, |(_, field)| *field);
            StoreError::Conflict(field)
        }
        sqlx::Error::Database(d) if d.is_foreign_key_violation() => StoreError::NotFound,
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => {
            StoreError::Corrupt(e.to_string())
        }
        _ => StoreError::Database(e.to_string()),
    }
}

/// `Ok(())` if a write touched a row, `NotFound` otherwise.
fn found(result: &sqlx::sqlite::SqliteQueryResult) -> StoreResult<()> {
    if result.rows_affected() == 0 {
        Err(StoreError::NotFound)
    } else {
        Ok(())
    }
}

/// Once, after migration 0004: recomputes the username and email keys of rows written under
/// the old rule (`str::to_lowercase`) with the identifier profile. A stored name that is not a
/// valid identifier keeps its old key (it can still be found by its exact old form, and is
/// named in a warning so an admin can rename it); two users whose names now share a key stop the
/// start-up with both named, since letting either sign in would be a guess.
async fn rekey_identifiers(pool: &SqlitePool) -> StoreResult<()> {
    use sqlx::Row;
    let pending: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'identifier_rekey_pending'",
    )
    .fetch_optional(pool)
    .await
    .map_err(db_err)?;
    if pending.is_none() {
        return Ok(());
    }
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(db_err)?;
    let rows = sqlx::query(
        "SELECT environment_id, id, username, username_lower, email, email_lower FROM users",
    )
    .fetch_all(&mut *tx)
    .await
    .map_err(db_err)?;
    // Unique placeholders first, so re-keying one row cannot collide with another's old key.
    sqlx::query(
        "UPDATE users SET username_lower = char(0) || id,
                          email_lower = CASE WHEN email_lower IS NULL THEN NULL ELSE char(0) || id END",
    )
    .execute(&mut *tx)
    .await
    .map_err(db_err)?;
    for row in &rows {
        let env: String = row.try_get("environment_id").map_err(db_err)?;
        let id: String = row.try_get("id").map_err(db_err)?;
        let username: String = row.try_get("username").map_err(db_err)?;
        let old_username_key: String = row.try_get("username_lower").map_err(db_err)?;
        let email: Option<String> = row.try_get("email").map_err(db_err)?;
        let old_email_key: Option<String> = row.try_get("email_lower").map_err(db_err)?;
        let username_key = comparison_key(&username).unwrap_or_else(|e| {
            tracing::warn!(environment_id = %env, user_id = %id, error = %e, "stored username is not a valid identifier under the new profile; rename the user");
            old_username_key.clone()
        });
        let email_key = match (&email, old_email_key) {
            (Some(e), old) => Some(comparison_key(e).unwrap_or_else(|err| {
                tracing::warn!(environment_id = %env, user_id = %id, error = %err, "stored email is not a valid identifier under the new profile; correct it");
                old.unwrap_or_default()
            })),
            (None, _) => None,
        };
        sqlx::query(
            "UPDATE users SET username_lower = ?, email_lower = ? WHERE environment_id = ? AND id = ?",
        )
        .bind(&username_key)
        .bind(&email_key)
        .bind(&env)
        .bind(&id)
        .execute(&mut *tx)
        .await
        .map_err(|e| match db_err(e) {
            StoreError::Conflict(field) => StoreError::Database(format!(
                "user {id} of environment {env}: its {field} now compares equal to another user's \
                 under the identifier profile (RFC 8265); rename one of them with an earlier version"
            )),
            other => other,
        })?;
    }
    sqlx::query("DROP TABLE identifier_rekey_pending")
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    tx.commit().await.map_err(db_err)?;
    if !rows.is_empty() {
        tracing::info!(
            users = rows.len(),
            "usernames and emails re-keyed under the identifier profile"
        );
    }
    Ok(())
}

#[async_trait::async_trait]
impl Housekeeping for SqliteStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn purge_expired(&self, now: Timestamp) -> StoreResult<u64> {
        // What is kept, and how long, is core's policy (`assent_core::retention`).
        let cutoffs = purge_cutoffs(now);
        let steps: [(&'static str, Timestamp); 5] = [
            (
                "DELETE FROM used_jtis WHERE expires_at <= ?",
                cutoffs.used_jtis,
            ),
            (
                "DELETE FROM access_tokens WHERE expires_at <= ?",
                cutoffs.access_tokens,
            ),
            (
                "DELETE FROM refresh_tokens WHERE expires_at <= ?",
                cutoffs.refresh_tokens,
            ),
            (
                "DELETE FROM ciba_requests WHERE expires_at <= ?",
                cutoffs.ciba_requests,
            ),
            (
                "DELETE FROM signing_keys WHERE is_current = FALSE AND retire_at <= ?",
                cutoffs.retired_signing_keys,
            ),
        ];
        let mut deleted = 0;
        for (sql, cutoff) in steps {
            let result = sqlx::query(sql)
                .bind(cutoff.millis())
                .execute(&self.pool)
                .await
                .map_err(db_err)?;
            deleted += result.rows_affected();
        }
        Ok(deleted)
    }
}

impl WakeUps for SqliteStore {
    fn publish(&self, key: &WakeKey) {
        self.wake_ups.publish(key);
    }

    fn subscribe(&self, key: &WakeKey) -> WakeUp {
        self.wake_ups.subscribe(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn file_databases_are_durable_wal_with_foreign_keys() {
        let path =
            std::env::temp_dir().join(format!("assent-store-pragmas-{}.db", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let store = SqliteStore::open(&path).await.unwrap();
        let mut conn = store.pool.acquire().await.unwrap();
        let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        let foreign_keys: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!(journal, "wal");
        assert_eq!(synchronous, 2, "synchronous=FULL");
        assert_eq!(foreign_keys, 1);
        let wal_limit: i64 = sqlx::query_scalar("PRAGMA journal_size_limit")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!(u64::try_from(wal_limit).unwrap(), WAL_SIZE_LIMIT);
        drop(conn);
        store.close().await;
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }
}
