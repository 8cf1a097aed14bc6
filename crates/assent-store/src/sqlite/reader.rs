//! The hot reads (a CIBA request, an access or refresh token), on the caller's thread: a small pool of rusqlite
//! connections (read-only, WAL) used synchronously, so a poll's one database read costs no
//! hand-off to sqlx's SQLite worker thread and back (two futex wake-ups and two context
//! switches per query, about a quarter of a poll's CPU before: docs/performance.md).
//!
//! A point read by primary key on a WAL database takes microseconds and never waits for the
//! writer (WAL readers do not block on it), so running it on a Tokio worker thread is fine; a
//! read that must wait for the disk (a page not in the OS cache) holds that thread as long.
//! `busy_timeout` covers the rare moments a reader waits on the WAL index (a checkpoint
//! restarting the log).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use assent_core::{AccessTokenRecord, AuthReqId, CibaRequest, EnvironmentId, RefreshTokenRecord};
use rusqlite::{Connection, OpenFlags};

use super::{rows, sql_err};
use crate::{StoreError, StoreResult};

/// Idle connections kept (more are opened when more callers read at once, and closed after).
const IDLE: usize = 8;

pub(super) struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    /// Set by `close`: later reads fail, as they do on sqlx's closed pool.
    closed: AtomicBool,
}

impl Readers {
    pub(super) fn new(path: &Path) -> Readers {
        Readers {
            path: path.to_owned(),
            idle: Mutex::new(Vec::new()),
            closed: AtomicBool::new(false),
        }
    }

    fn open(&self) -> StoreResult<Connection> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(StoreError::Database("the store is closed".into()));
        }
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sql_err)?;
        conn.busy_timeout(super::BUSY_TIMEOUT).map_err(sql_err)?;
        Ok(conn)
    }

    /// Runs `read` on an idle connection (or a new one), then keeps it for the next caller.
    fn with<T>(&self, read: impl FnOnce(&Connection) -> StoreResult<T>) -> StoreResult<T> {
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let conn = match idle {
            Some(c) => c,
            None => self.open()?,
        };
        let result = read(&conn);
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < IDLE && !self.closed.load(Ordering::SeqCst) {
            idle.push(conn);
        }
        result
    }

    /// Closes the idle connections (those in use close when their read ends).
    pub(super) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// The request's row, decoded (`NotFound` when there is none).
    pub(super) fn ciba_request(
        &self,
        env_id: &EnvironmentId,
        auth_req_id: &AuthReqId,
    ) -> StoreResult<CibaRequest> {
        self.row(
            "SELECT * FROM ciba_requests WHERE environment_id = ?1 AND auth_req_id = ?2",
            (env_id.as_str(), auth_req_id.as_str()),
            |row| rows::ciba_request(row),
        )?
        .ok_or(StoreError::NotFound)
    }

    /// The access token's row, decoded.
    pub(super) fn access_token(
        &self,
        env_id: &EnvironmentId,
        jti: &str,
    ) -> StoreResult<Option<AccessTokenRecord>> {
        self.row(
            "SELECT * FROM access_tokens WHERE environment_id = ?1 AND jti = ?2",
            (env_id.as_str(), jti),
            |row| rows::access_token(row),
        )
    }

    /// The refresh token's row, decoded.
    pub(super) fn refresh_token(
        &self,
        env_id: &EnvironmentId,
        token_hash: &str,
    ) -> StoreResult<Option<RefreshTokenRecord>> {
        self.row(
            "SELECT * FROM refresh_tokens WHERE environment_id = ?1 AND token_hash = ?2",
            (env_id.as_str(), token_hash),
            |row| rows::refresh_token(row),
        )
    }

    /// The first row `sql` finds, decoded by `decode`.
    fn row<T>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        decode: impl FnOnce(&rusqlite::Row<'_>) -> StoreResult<T>,
    ) -> StoreResult<Option<T>> {
        self.with(|conn| {
            let mut statement = conn.prepare_cached(sql).map_err(sql_err)?;
            let mut rows = statement.query(params).map_err(sql_err)?;
            match rows.next().map_err(sql_err)? {
                Some(row) => decode(row).map(Some),
                None => Ok(None),
            }
        })
    }
}
