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
//! `use_jti`) are single conditional statements inside `BEGIN IMMEDIATE` transactions whose
//! outcome is read from the affected row count (or `RETURNING`), so concurrent callers
//! (connections or processes sharing the file) cannot both win.
//!
//! Every transition, and every other write on the request path (`use_jti`), goes through one
//! writer thread (`writer`, on rusqlite): the writes queued when it wakes share one
//! transaction, one commit and one fsync (group commit, docs/store.md). Management writes
//! (directory, keys), work claims and purges run on sqlx's pool; reads of CIBA requests and
//! tokens run on rusqlite connections on the caller's thread (`reader`), the other reads on
//! the pool.
//!
//! One file per aggregate (`directory`, `keys`, `ciba`, `tokens`, `jtis`, `work`), plus
//! `transitions` (`Transitions::apply`, sequencing their SQL for one transition), `writer`
//! (the batches), `polls` (poll records in memory) and `reader`; this one opens the database,
//! migrates it, maps errors and purges.

mod audit;
mod ciba;
mod devices;
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
    /// The hot read of a CIBA request on the caller's thread.
    readers: reader::Readers,
    /// Poll bookkeeping held in memory and flushed through the writer (`polls.rs`).
    polls: Arc<polls::PollBook>,
    /// Writes `polls` every `polls::FLUSH_INTERVAL` until the store is closed or dropped.
    flusher: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// The directory of a temporary store, deleted after everything else is dropped.
    _temporary: Option<TemporaryDir>,
}

/// A directory of its own for a temporary store, removed (with the database) on drop.
struct TemporaryDir(std::path::PathBuf);

impl TemporaryDir {
    fn create() -> StoreResult<TemporaryDir> {
        static CREATED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = CREATED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = std::env::temp_dir().join(format!(
            "assent-store-{}-{n}-{nanos:08x}",
            std::process::id()
        ));
        std::fs::create_dir(&dir).map_err(|e| {
            StoreError::Database(format!(
                "cannot create a temporary database in {}: {e}",
                dir.display()
            ))
        })?;
        Ok(TemporaryDir(dir))
    }
}

impl Drop for TemporaryDir {
    fn drop(&mut self) {
        // The writer thread may still hold its (unlinked) files open for a moment: harmless.
        let _ = std::fs::remove_dir_all(&self.0);
    }
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
pub struct HeldWrites(#[expect(dead_code, reason = "held for its drop")] writer::Hold);

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if missing) the database file at `path` and applies pending migrations.
    pub async fn open(path: &Path) -> StoreResult<SqliteStore> {
        Self::open_with(path, writer::Durability::Full, None).await
    }

    /// A private database that lives as long as the store (for tests and benchmarks): a file
    /// in a directory of its own under the system's temporary directory, deleted when the
    /// store is dropped, written without any fsync. Everything else is as [`open`] gives:
    /// WAL, the same writer and readers.
    ///
    /// [`open`]: SqliteStore::open
    pub async fn open_temporary() -> StoreResult<SqliteStore> {
        let dir = TemporaryDir::create()?;
        let path = dir.0.join("assent.db");
        Self::open_with(&path, writer::Durability::Off, Some(dir)).await
    }

    async fn open_with(
        path: &Path,
        durability: writer::Durability,
        temporary: Option<TemporaryDir>,
    ) -> StoreResult<SqliteStore> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(match durability {
                writer::Durability::Full => SqliteSynchronous::Full,
                writer::Durability::Off => SqliteSynchronous::Off,
            })
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT)
            .pragma("journal_size_limit", WAL_SIZE_LIMIT.to_string());
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await
            .map_err(db_err)?;
        sqlx::migrate!("migrations/sqlite")
            .run(&pool)
            .await
            .map_err(|e| StoreError::Database(format!("migration failed: {e}")))?;
        rekey_identifiers(&pool).await?;
        let wake_ups = InProcessWakeUps::new();
        let polls = Arc::new(polls::PollBook::default());
        let writer = Arc::new(writer::Writer::start(path, durability, wake_ups.clone())?);
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
            readers: reader::Readers::new(path),
            polls,
            flusher: Mutex::new(Some(flusher)),
            _temporary: temporary,
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
        self.readers.close();
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
        sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Conflict(unique_field(
            &format!("{} {}", d.constraint().unwrap_or_default(), d.message()),
        )),
        sqlx::Error::Database(d) if d.is_foreign_key_violation() => StoreError::NotFound,
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => {
            StoreError::Corrupt(e.to_string())
        }
        _ => StoreError::Database(e.to_string()),
    }
}

/// The field a uniqueness violation names (`haystack`: its constraint and message).
fn unique_field(haystack: &str) -> UniqueField {
    UNIQUE_FIELDS
        .iter()
        .find(|(name, _)| haystack.contains(name))
        .map_or(UniqueField::Id, |(_, field)| *field)
}

/// `db_err` for the statements run with rusqlite (the writer's and the readers'): the same
/// mapping, read from SQLite's extended result codes.
#[expect(
    clippy::needless_pass_by_value,
    reason = "by value so that every statement reads `.map_err(sql_err)`"
)]
pub(crate) fn sql_err(e: rusqlite::Error) -> StoreError {
    // SQLITE_CONSTRAINT_FOREIGNKEY, _PRIMARYKEY and _UNIQUE.
    const FOREIGN_KEY: i32 = 787;
    const PRIMARY_KEY: i32 = 1555;
    const UNIQUE: i32 = 2067;
    match &e {
        rusqlite::Error::QueryReturnedNoRows => StoreError::NotFound,
        rusqlite::Error::SqliteFailure(f, message) => match f.extended_code {
            PRIMARY_KEY | UNIQUE => {
                StoreError::Conflict(unique_field(message.as_deref().unwrap_or_default()))
            }
            FOREIGN_KEY => StoreError::NotFound,
            _ => StoreError::Database(e.to_string()),
        },
        rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::InvalidColumnType(..)
        | rusqlite::Error::IntegralValueOutOfRange(..) => StoreError::Corrupt(e.to_string()),
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
        let steps: [(&'static str, Timestamp); 7] = [
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
            (
                "DELETE FROM device_enrollments WHERE expires_at <= ?",
                cutoffs.device_enrollments,
            ),
            ("DELETE FROM activities WHERE at <= ?", cutoffs.activities),
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

    /// A pragma's value, as a pool connection of `store` sees it.
    async fn pragma<T>(store: &SqliteStore, sql: &'static str) -> T
    where
        T: for<'r> sqlx::Decode<'r, Sqlite> + sqlx::Type<Sqlite> + Send + Unpin,
    {
        sqlx::query_scalar(sql)
            .fetch_one(&store.pool)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn file_databases_are_durable_wal_with_foreign_keys() {
        let path =
            std::env::temp_dir().join(format!("assent-store-pragmas-{}.db", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let store = SqliteStore::open(&path).await.unwrap();
        assert_eq!(pragma::<String>(&store, "PRAGMA journal_mode").await, "wal");
        assert_eq!(
            pragma::<i64>(&store, "PRAGMA synchronous").await,
            2,
            "synchronous=FULL"
        );
        assert_eq!(pragma::<i64>(&store, "PRAGMA foreign_keys").await, 1);
        let wal_limit = pragma::<i64>(&store, "PRAGMA journal_size_limit").await;
        assert_eq!(u64::try_from(wal_limit).unwrap(), WAL_SIZE_LIMIT);
        store.close().await;
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }

    /// A temporary store is a WAL file written without fsync, in a directory of its own that
    /// goes with the store.
    #[tokio::test]
    async fn temporary_stores_are_deleted_with_the_store() {
        let store = SqliteStore::open_temporary().await.unwrap();
        let dir = store._temporary.as_ref().unwrap().0.clone();
        assert!(dir.join("assent.db").is_file());
        assert_eq!(pragma::<String>(&store, "PRAGMA journal_mode").await, "wal");
        assert_eq!(
            pragma::<i64>(&store, "PRAGMA synchronous").await,
            0,
            "synchronous=OFF"
        );
        let other = SqliteStore::open_temporary().await.unwrap();
        assert_ne!(
            other._temporary.as_ref().unwrap().0,
            dir,
            "one directory each"
        );
        drop(store);
        assert!(!dir.exists(), "{} is left behind", dir.display());
    }
}
