//! Group commit: every durable write goes through one writer, a thread of its own holding a
//! rusqlite connection, which applies whatever is queued when it wakes (up to [`MAX_BATCH`])
//! in ONE `BEGIN IMMEDIATE` transaction, so concurrent writes share one commit and one fsync.
//! What it writes: transitions (`Transitions::apply`), single conditional statements that
//! must be as durable (a `jti`'s use, `use_jti`), and the poll records held in memory.
//!
//! Each write runs under its own `SAVEPOINT`: released when it is written, rolled back to
//! when its guard does not hold (`Lost`, `Limited`) or when it fails (say a duplicate
//! `auth_req_id`, `Conflict`), so one caller's loss or error leaves the others' writes intact.
//! The writes of a batch run in queue order and each sees the effects of those before it,
//! exactly as if they had been applied one after another. Callers are answered after the
//! COMMIT, so "durable on return" holds; if the transaction cannot be begun or committed (or a
//! savepoint cannot be rolled back to), nothing of the batch is durable and every caller of the
//! batch gets that error. The wake-ups of the winners are published after the commit, by the
//! writer, so a caller that stops waiting cannot lose them.
//!
//! Why a thread and rusqlite rather than sqlx's driver (docs/performance.md, "The writer's
//! driver"): sqlx runs each statement on a worker thread of its own and hands every statement
//! and its result across with a channel, so a batch of n transitions cost some 4n + 2
//! hand-offs between threads; here the whole batch runs on one thread, with the statements
//! prepared once and cached, and a batch costs one hand-off in (the queue) and one wake-up
//! out per caller.
//!
//! There is no timer: a lone write at low load is a batch of one and commits at once. The
//! writer ends when the store is closed (after applying what was queued before the close) or
//! dropped (after applying what is queued); a caller whose write never ran (the writer is
//! gone) gets an error, never a hang.

use std::path::Path;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};

use assent_core::transition::{Applied, Transition};
use rusqlite::{Connection, OpenFlags};
use tokio::sync::{mpsc, oneshot};

use super::polls::{PollKey, PollRecord};
use super::transitions::{Written, write_transition};
use super::{BUSY_TIMEOUT, WAL_SIZE_LIMIT, sql_err};
use crate::{
    BATCH_SIZE_BOUNDS, COMMIT_DURATION_BOUNDS_MICROS, InProcessWakeUps, StoreError, StoreResult,
    WakeKey, WakeUps, WriteStats,
};

/// The most writes applied in one transaction. Bounds how long the write lock is held and
/// how long the last caller of a batch waits for the first ones.
pub(super) const MAX_BATCH: usize = 256;

/// Writes that may wait in the queue before callers wait to enqueue.
const QUEUE_CAPACITY: usize = 4 * MAX_BATCH;

/// Statements the writer keeps prepared (it runs about thirty distinct ones).
const STATEMENT_CACHE: usize = 64;

/// How the writer's commits reach the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Durability {
    /// `synchronous=FULL`: a commit is on disk when it returns (every database file).
    Full,
    /// `synchronous=OFF`: no fsync at all (a temporary store, deleted with it).
    Off,
}

impl Durability {
    pub(super) fn pragma(self) -> &'static str {
        match self {
            Durability::Full => "FULL",
            Durability::Off => "OFF",
        }
    }
}

/// The callers' side of the writer: enqueues writes and waits for their outcome.
pub(super) struct Writer {
    queue: mpsc::Sender<Job>,
    counters: Arc<Counters>,
    /// Entered by the writer for each batch; tests hold it to let writes queue up (`hold`).
    gate: Arc<Gate>,
}

/// A single statement run by the writer in its transaction: `Ok(true)` when it wrote (its
/// condition held), `Ok(false)` when it did not (its savepoint is rolled back to).
type Statement = Box<dyn Fn(&Connection) -> StoreResult<bool> + Send>;

#[expect(
    clippy::large_enum_variant,
    reason = "nearly every job is a Write: boxing it would allocate once per transition"
)]
enum Job {
    Write(Queued),
    /// Write poll records held in memory (`polls.rs`), in a transaction of their own without
    /// an fsync, after what is queued before them. Answers the keys of requests no longer
    /// PENDING.
    Polls(Vec<PollRecord>, oneshot::Sender<StoreResult<Vec<PollKey>>>),
    /// Stop after what is queued before it, closing the writer's connection.
    Close(oneshot::Sender<()>),
}

#[expect(
    clippy::large_enum_variant,
    reason = "nearly every write is a Transition: boxing it would allocate once per transition"
)]
enum Queued {
    Transition {
        transition: Transition,
        answer: oneshot::Sender<StoreResult<Applied>>,
    },
    Statement {
        run: Statement,
        answer: oneshot::Sender<StoreResult<bool>>,
    },
}

impl Queued {
    /// Writes it in the writer's transaction (under its savepoint).
    fn write(&self, conn: &Connection) -> StoreResult<Written> {
        match self {
            Queued::Transition { transition, .. } => write_transition(conn, transition),
            Queued::Statement { run, .. } => run(conn).map(Written::quiet),
        }
    }

    /// Answers the caller with the outcome of its write, once the batch is committed,
    /// publishing a winning transition's wake-ups first.
    fn answer(self, outcome: StoreResult<Written>, wake_ups: &InProcessWakeUps) {
        // A caller that stopped waiting has nothing to be told.
        match self {
            Queued::Transition { transition, answer } => {
                let _ = answer.send(outcome.map(|written| match written {
                    Written::Done { wake } => {
                        publish(wake_ups, &transition, wake.as_ref());
                        Applied::Won
                    }
                    Written::Refused(applied) => applied,
                }));
            }
            Queued::Statement { answer, .. } => {
                let _ = answer.send(outcome.map(|w| matches!(w, Written::Done { .. })));
            }
        }
    }

    /// Answers the caller with the batch's error: nothing of it is durable.
    fn fail(self, e: StoreError) {
        match self {
            Queued::Transition { answer, .. } => {
                let _ = answer.send(Err(e));
            }
            Queued::Statement { answer, .. } => {
                let _ = answer.send(Err(e));
            }
        }
    }
}

/// Lets a test keep the writer from starting a batch ([`Writer::hold`]).
#[derive(Default)]
struct Gate {
    held: Mutex<bool>,
    released: Condvar,
}

impl Gate {
    /// The writer's side: waits while writes are held; while the returned guard lives (one
    /// batch), writes cannot be held.
    fn enter(&self) -> std::sync::MutexGuard<'_, bool> {
        let held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        self.released
            .wait_while(held, |held| *held)
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// While this lives, the writer starts no batch ([`Writer::hold`]).
pub(super) struct Hold(Arc<Gate>);

impl Drop for Hold {
    fn drop(&mut self) {
        *self.0.held.lock().unwrap_or_else(PoisonError::into_inner) = false;
        self.0.released.notify_all();
    }
}

#[derive(Default)]
struct Counters {
    transitions: AtomicU64,
    commits: AtomicU64,
    /// Jobs in the queue (or taken by a writer not yet applying them). Counted up only once a
    /// job is in the queue, so a reader that sees `n` knows the first `n` are there, in order;
    /// the writer may count a job down before its caller counted it up, hence signed.
    queued: AtomicI64,
    /// Per bucket of `BATCH_SIZE_BOUNDS` (not cumulative here).
    batch_sizes: [AtomicU64; BATCH_SIZE_BOUNDS.len()],
    /// Per bucket of `COMMIT_DURATION_BOUNDS_MICROS` (not cumulative here).
    commit_durations: [AtomicU64; COMMIT_DURATION_BOUNDS_MICROS.len()],
    commit_micros: AtomicU64,
}

impl Counters {
    fn committed(&self, transitions: usize, took: std::time::Duration) {
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.transitions
            .fetch_add(transitions as u64, Ordering::Relaxed);
        let size = transitions as u64;
        // Above the last bound: counted only in the total (Prometheus' `+Inf`), the commits.
        if let Some(b) = BATCH_SIZE_BOUNDS.iter().position(|&bound| size <= bound) {
            self.batch_sizes[b].fetch_add(1, Ordering::Relaxed);
        }
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.commit_micros.fetch_add(micros, Ordering::Relaxed);
        if let Some(d) = COMMIT_DURATION_BOUNDS_MICROS
            .iter()
            .position(|&bound| micros <= bound)
        {
            self.commit_durations[d].fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Cumulative bucket counts, from per-bucket ones.
fn cumulative<const N: usize>(per_bucket: &[AtomicU64; N]) -> [u64; N] {
    let mut total = 0;
    std::array::from_fn(|i| {
        total += per_bucket[i].load(Ordering::Relaxed);
        total
    })
}

impl Writer {
    /// Opens the writer's connection to the (migrated) database at `path` and starts its
    /// thread.
    pub(super) fn start(
        path: &Path,
        durability: Durability,
        wake_ups: InProcessWakeUps,
    ) -> StoreResult<Writer> {
        let conn = open(path, durability).map_err(sql_err)?;
        let (queue, jobs) = mpsc::channel(QUEUE_CAPACITY);
        let counters = Arc::new(Counters::default());
        let gate = Arc::new(Gate::default());
        let writer = Thread {
            conn,
            durability,
            wake_ups,
            counters: Arc::clone(&counters),
            gate: Arc::clone(&gate),
        };
        std::thread::Builder::new()
            .name("assent-sqlite-writer".into())
            .spawn(move || writer.run(jobs))
            .map_err(|e| StoreError::Database(format!("cannot start the writer thread: {e}")))?;
        Ok(Writer {
            queue,
            counters,
            gate,
        })
    }

    /// Applies `transition` in the next batch and returns its own outcome, once that batch is
    /// committed.
    pub(super) async fn apply(&self, transition: Transition) -> StoreResult<Applied> {
        let (answer, answered) = oneshot::channel();
        self.enqueue(Queued::Transition { transition, answer })
            .await?;
        answered.await.unwrap_or_else(|_| Err(writer_gone()))
    }

    /// Runs `statement` in the next batch, under its own savepoint, and returns what it
    /// returned, once that batch is committed.
    pub(super) async fn execute(
        &self,
        statement: impl Fn(&Connection) -> StoreResult<bool> + Send + 'static,
    ) -> StoreResult<bool> {
        let (answer, answered) = oneshot::channel();
        self.enqueue(Queued::Statement {
            run: Box::new(statement),
            answer,
        })
        .await?;
        answered.await.unwrap_or_else(|_| Err(writer_gone()))
    }

    async fn enqueue(&self, write: Queued) -> StoreResult<()> {
        if self.queue.send(Job::Write(write)).await.is_err() {
            return Err(writer_gone());
        }
        self.counters.queued.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// Writes poll records after what is queued (one writer, so they never wait for the
    /// database's write lock against a batch). Returns the keys of requests no longer PENDING.
    pub(super) async fn write_polls(&self, records: Vec<PollRecord>) -> StoreResult<Vec<PollKey>> {
        let (answer, answered) = oneshot::channel();
        if self.queue.send(Job::Polls(records, answer)).await.is_err() {
            return Err(writer_gone());
        }
        answered.await.unwrap_or_else(|_| Err(writer_gone()))
    }

    /// Applies what is queued, then stops the writer (closing its connection); later
    /// writes fail.
    pub(super) async fn close(&self) {
        let (done, closed) = oneshot::channel();
        if self.queue.send(Job::Close(done)).await.is_ok() {
            // An error means the writer is gone already.
            let _ = closed.await;
        }
    }

    pub(super) fn stats(&self) -> WriteStats {
        WriteStats {
            transitions: self.counters.transitions.load(Ordering::Relaxed),
            commits: self.counters.commits.load(Ordering::Relaxed),
            queued: u64::try_from(self.counters.queued.load(Ordering::SeqCst)).unwrap_or(0),
            batch_sizes: cumulative(&self.counters.batch_sizes),
            commit_durations: cumulative(&self.counters.commit_durations),
            commit_micros: self.counters.commit_micros.load(Ordering::Relaxed),
        }
    }

    /// Keeps the writer from starting another batch until the returned value is dropped
    /// (waiting for a batch being applied to end): what is written meanwhile queues up and
    /// then goes into one batch (up to `MAX_BATCH`).
    pub(super) async fn hold(&self) -> StoreResult<Hold> {
        let gate = Arc::clone(&self.gate);
        tokio::task::spawn_blocking(move || {
            let held = gate.held.lock().unwrap_or_else(PoisonError::into_inner);
            let mut held = gate
                .released
                .wait_while(held, |held| *held)
                .unwrap_or_else(PoisonError::into_inner);
            *held = true;
            drop(held);
            Hold(gate)
        })
        .await
        .map_err(|e| StoreError::Database(format!("holding writes failed: {e}")))
    }
}

fn writer_gone() -> StoreError {
    StoreError::Database("the store is closed: its writer has stopped".into())
}

/// The writer's connection: read-write on the migrated file, foreign keys enforced, commits
/// as durable as `durability` says, savepoint journals in memory.
fn open(path: &Path, durability: Durability) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "foreign_keys", true)?;
    conn.pragma_update(None, "synchronous", durability.pragma())?;
    // The savepoint of every write keeps the original of each page it changes in a
    // sub-journal; in a temporary file (the default) that is a pwrite per page changed, in
    // the writer's serial path (docs/performance.md, "The writer's driver").
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.pragma_update(
        None,
        "journal_size_limit",
        i64::try_from(WAL_SIZE_LIMIT).unwrap_or(i64::MAX),
    )?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

/// What the writer thread owns.
struct Thread {
    conn: Connection,
    durability: Durability,
    wake_ups: InProcessWakeUps,
    counters: Arc<Counters>,
    gate: Arc<Gate>,
}

impl Thread {
    fn run(self, mut jobs: mpsc::Receiver<Job>) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        let mut close = None;
        while close.is_none() {
            let Some(first) = jobs.blocking_recv() else {
                break;
            };
            let _entered = self.gate.enter();
            // What ends the batch, to be done after it.
            let mut after = None;
            let mut next = Some(first);
            while let Some(job) = next.take() {
                match job {
                    Job::Write(queued) => batch.push(queued),
                    other => {
                        after = Some(other);
                        break;
                    }
                }
                if batch.len() < MAX_BATCH {
                    next = jobs.try_recv().ok();
                }
            }
            if !batch.is_empty() {
                self.counters.queued.fetch_sub(
                    i64::try_from(batch.len()).unwrap_or(i64::MAX),
                    Ordering::SeqCst,
                );
                self.run_batch(&mut batch);
            }
            match after {
                Some(Job::Polls(records, answer)) => {
                    let _ = answer.send(self.write_polls(&records));
                }
                Some(Job::Close(done)) => close = Some(done),
                Some(Job::Write(_)) | None => {}
            }
        }
        // Jobs still queued are dropped with the queue: their callers get `writer_gone`.
        drop(jobs);
        if let Err((_, e)) = self.conn.close() {
            tracing::warn!(error = %e, "closing the writer's connection failed");
        }
        if let Some(done) = close {
            let _ = done.send(());
        }
    }

    /// Applies `batch` in one transaction and answers each caller (draining `batch`).
    fn run_batch(&self, batch: &mut Vec<Queued>) {
        let started = std::time::Instant::now();
        match self.apply_batch(batch) {
            Ok(outcomes) => {
                self.counters.committed(batch.len(), started.elapsed());
                for (job, outcome) in batch.drain(..).zip(outcomes) {
                    job.answer(outcome, &self.wake_ups);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, writes = batch.len(), "a group commit failed");
                for job in batch.drain(..) {
                    job.fail(e.clone());
                }
            }
        }
    }

    /// One transaction for the whole batch, one savepoint per write. `Ok` holds each write's
    /// own outcome (in batch order) once the COMMIT succeeded.
    fn apply_batch(&self, batch: &[Queued]) -> StoreResult<Vec<StoreResult<Written>>> {
        in_transaction(&self.conn, |conn| {
            let mut outcomes = Vec::with_capacity(batch.len());
            for job in batch {
                run(conn, "SAVEPOINT one")?;
                let outcome = job.write(conn);
                // Failing here means SQLite ended the whole transaction (it does on some
                // errors, such as a full disk): the earlier writes are gone too, so the batch
                // fails as one.
                if !matches!(outcome, Ok(Written::Done { .. })) {
                    run(conn, "ROLLBACK TO one")?;
                }
                run(conn, "RELEASE one")?;
                outcomes.push(outcome);
            }
            Ok(outcomes)
        })
    }

    /// Poll records in one transaction committed without an fsync (`synchronous=NORMAL` for
    /// its commit only: the next FULL commit syncs it). Returns the keys that matched no
    /// PENDING request.
    fn write_polls(&self, records: &[PollRecord]) -> StoreResult<Vec<PollKey>> {
        let conn = &self.conn;
        let relaxed = self.durability == Durability::Full;
        if relaxed {
            conn.pragma_update(None, "synchronous", "NORMAL")
                .map_err(sql_err)?;
        }
        let written = in_transaction(conn, |conn| super::polls::write(conn, records));
        let restored = if relaxed {
            conn.pragma_update(None, "synchronous", self.durability.pragma())
                .map_err(sql_err)
        } else {
            Ok(())
        };
        let gone = written?;
        restored?;
        Ok(gone)
    }
}

/// Runs `write` in one `BEGIN IMMEDIATE` transaction (which takes the write lock up front: no
/// other writer, a pool connection or another process on the file, can slip between a guard
/// and its write), committed when it returns `Ok` and rolled back otherwise.
fn in_transaction<T>(
    conn: &Connection,
    write: impl FnOnce(&Connection) -> StoreResult<T>,
) -> StoreResult<T> {
    run(conn, "BEGIN IMMEDIATE")?;
    let done = write(conn).and_then(|value| run(conn, "COMMIT").map(|()| value));
    // SQLite may have ended the transaction itself already.
    if done.is_err()
        && !conn.is_autocommit()
        && let Err(e) = run(conn, "ROLLBACK")
    {
        tracing::warn!(error = %e, "rolling back a failed write transaction failed");
    }
    done
}

/// Runs one statement that takes no parameters and returns no rows, prepared once.
fn run(conn: &Connection, sql: &str) -> StoreResult<()> {
    conn.prepare_cached(sql)
        .and_then(|mut statement| statement.execute([]))
        .map(drop)
        .map_err(sql_err)
}

/// The wake-ups of a committed winner: its request and user, and the work worker when it
/// scheduled work.
fn publish(wake_ups: &InProcessWakeUps, t: &Transition, wake: Option<&super::transitions::Wake>) {
    if let Some(w) = wake {
        wake_ups.publish(&WakeKey::request(&t.environment_id, &w.auth_req_id));
        wake_ups.publish(&WakeKey::user(&t.environment_id, &w.user_id));
    }
    if !t.schedule.is_empty() {
        // A worker sleeping until later work was due looks again.
        wake_ups.publish(&WakeKey::Work);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_writer_connection_is_durable_with_savepoint_journals_in_memory() {
        let dir = super::super::TemporaryDir::create().unwrap();
        let path = dir.0.join("writer.db");
        drop(Connection::open(&path).unwrap());
        for (durability, synchronous) in [(Durability::Full, 2), (Durability::Off, 0)] {
            let conn = open(&path, durability).unwrap();
            let pragma = |name: &str| {
                conn.pragma_query_value(None, name, |row| row.get::<_, i64>(0))
                    .unwrap()
            };
            assert_eq!(pragma("synchronous"), synchronous, "{durability:?}");
            assert_eq!(pragma("foreign_keys"), 1);
            assert_eq!(pragma("temp_store"), 2, "MEMORY");
            assert_eq!(
                u64::try_from(pragma("journal_size_limit")).unwrap(),
                WAL_SIZE_LIMIT
            );
        }
    }
}
