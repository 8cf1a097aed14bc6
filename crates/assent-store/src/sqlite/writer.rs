//! Group commit: every durable transition goes through one writer task, which applies whatever
//! is queued when it wakes (up to [`MAX_BATCH`]) in ONE `BEGIN IMMEDIATE` transaction, so
//! concurrent writes share one commit and one fsync.
//!
//! Each transition runs under its own `SAVEPOINT`: released when it is written, rolled back to
//! when its guard does not hold (`Lost`, `Limited`) or when it fails (say a duplicate
//! `auth_req_id`, `Conflict`), so one caller's loss or error leaves the others' writes intact.
//! The transitions of a batch run in queue order and each sees the effects of those before it,
//! exactly as if they had been applied one after another. Callers are answered after the
//! COMMIT, so "durable on return" holds; if the transaction cannot be begun or committed (or a
//! savepoint cannot be rolled back to), nothing of the batch is durable and every caller of the
//! batch gets that error. The wake-ups of the winners are published after the commit, by the
//! writer, so a caller that stops waiting cannot lose them.
//!
//! There is no timer: a lone write at low load is a batch of one and commits at once. The
//! writer ends when the store is closed (after applying what was queued before the close) or
//! dropped; a caller whose transition never ran (the writer is gone) gets an error, never a
//! hang.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use assent_core::transition::{Applied, Transition};
use sqlx::{Connection, SqliteConnection, SqlitePool};
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::db_err;
use super::polls::{PollKey, PollRecord};
use super::transitions::{Written, write_transition};
use crate::{
    BATCH_SIZE_BOUNDS, COMMIT_DURATION_BOUNDS_MICROS, InProcessWakeUps, StoreError, StoreResult,
    WakeKey, WakeUps, WriteStats,
};

/// The most transitions applied in one transaction. Bounds how long the write lock is held and
/// how long the last caller of a batch waits for the first ones.
pub(super) const MAX_BATCH: usize = 256;

/// Transitions that may wait in the queue before callers wait to enqueue.
const QUEUE_CAPACITY: usize = 4 * MAX_BATCH;

/// The callers' side of the writer: enqueues transitions and waits for their outcome.
pub(super) struct Writer {
    queue: mpsc::Sender<Job>,
    counters: Arc<Counters>,
    /// Held by the writer while it builds and applies a batch; tests take it to let
    /// transitions queue up (`hold`).
    gate: Arc<Semaphore>,
}

/// Where the writer writes: its own connection (a file database, so that a batch needs no
/// pool hand-off) or, for the in-memory database, the pool's one connection, taken per batch.
pub(super) enum WriteConnection {
    Own(SqliteConnection),
    Pool(SqlitePool),
}

#[expect(
    clippy::large_enum_variant,
    reason = "nearly every job is an Apply: boxing it would allocate once per transition"
)]
enum Job {
    Apply(Queued),
    /// Write poll records held in memory (`polls.rs`), in a transaction of their own without
    /// an fsync, after what is queued before them. Answers the keys of requests no longer
    /// PENDING.
    Polls(Vec<PollRecord>, oneshot::Sender<StoreResult<Vec<PollKey>>>),
    /// Stop after what is queued before it, closing the writer's own connection.
    Close(oneshot::Sender<()>),
}

struct Queued {
    transition: Transition,
    answer: oneshot::Sender<StoreResult<Applied>>,
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
    /// Starts the writer task on the current Tokio runtime, writing through `pool`.
    pub(super) fn start(conn: WriteConnection, wake_ups: InProcessWakeUps) -> Writer {
        let (queue, jobs) = mpsc::channel(QUEUE_CAPACITY);
        let counters = Arc::new(Counters::default());
        let gate = Arc::new(Semaphore::new(1));
        tokio::spawn(run(
            conn,
            wake_ups,
            jobs,
            Arc::clone(&counters),
            Arc::clone(&gate),
        ));
        Writer {
            queue,
            counters,
            gate,
        }
    }

    /// Applies `transition` in the next batch and returns its own outcome, once that batch is
    /// committed.
    pub(super) async fn apply(&self, transition: Transition) -> StoreResult<Applied> {
        let (answer, answered) = oneshot::channel();
        let job = Job::Apply(Queued { transition, answer });
        if self.queue.send(job).await.is_err() {
            return Err(writer_gone());
        }
        self.counters.queued.fetch_add(1, Ordering::SeqCst);
        answered.await.unwrap_or_else(|_| Err(writer_gone()))
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
    /// transitions fail.
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

    /// Keeps the writer from starting another batch until the returned permit is dropped: what
    /// is applied meanwhile queues up and then goes into one batch (up to `MAX_BATCH`).
    pub(super) async fn hold(&self) -> StoreResult<tokio::sync::OwnedSemaphorePermit> {
        Arc::clone(&self.gate)
            .acquire_owned()
            .await
            .map_err(|_| writer_gone())
    }
}

fn writer_gone() -> StoreError {
    StoreError::Database("the store is closed: its writer has stopped".into())
}

async fn run(
    mut conn: WriteConnection,
    wake_ups: InProcessWakeUps,
    mut jobs: mpsc::Receiver<Job>,
    counters: Arc<Counters>,
    gate: Arc<Semaphore>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut close = None;
    while close.is_none() {
        let Some(first) = jobs.recv().await else {
            break;
        };
        // Never closed, so `Err` cannot happen; without a permit the batch simply goes ahead.
        let _held = gate.acquire().await.ok();
        // What ends the batch, to be done after it.
        let mut after = None;
        let mut next = Some(first);
        while let Some(job) = next.take() {
            match job {
                Job::Apply(queued) => batch.push(queued),
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
            counters.queued.fetch_sub(
                i64::try_from(batch.len()).unwrap_or(i64::MAX),
                Ordering::SeqCst,
            );
            run_batch(&mut conn, &wake_ups, &counters, &mut batch).await;
        }
        match after {
            Some(Job::Polls(records, answer)) => {
                let written = match &mut conn {
                    WriteConnection::Own(c) => write_polls(c, &records).await,
                    WriteConnection::Pool(pool) => match pool.acquire().await {
                        Ok(mut c) => write_polls(&mut c, &records).await,
                        Err(e) => Err(db_err(e)),
                    },
                };
                let _ = answer.send(written);
            }
            Some(Job::Close(done)) => close = Some(done),
            Some(Job::Apply(_)) | None => {}
        }
    }
    // Jobs still queued are dropped with the queue: their callers get `writer_gone`.
    drop(jobs);
    if let WriteConnection::Own(c) = conn
        && let Err(e) = c.close().await
    {
        tracing::warn!(error = %e, "closing the writer's connection failed");
    }
    if let Some(done) = close {
        let _ = done.send(());
    }
}

/// Applies `batch` in one transaction and answers each caller (draining `batch`).
async fn run_batch(
    conn: &mut WriteConnection,
    wake_ups: &InProcessWakeUps,
    counters: &Counters,
    batch: &mut Vec<Queued>,
) {
    let started = std::time::Instant::now();
    let applied = match conn {
        WriteConnection::Own(c) => apply_batch(c, batch).await,
        WriteConnection::Pool(pool) => match pool.acquire().await {
            Ok(mut c) => apply_batch(&mut c, batch).await,
            Err(e) => Err(db_err(e)),
        },
    };
    match applied {
        Ok(outcomes) => {
            counters.committed(batch.len(), started.elapsed());
            for (job, outcome) in batch.drain(..).zip(outcomes) {
                let answer = outcome.map(|written| match written {
                    Written::Done { wake } => {
                        publish(wake_ups, &job.transition, wake.as_ref());
                        Applied::Won
                    }
                    Written::Refused(applied) => applied,
                });
                // A caller that stopped waiting has nothing to be told.
                let _ = job.answer.send(answer);
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, transitions = batch.len(), "a group commit failed");
            for job in batch.drain(..) {
                let _ = job.answer.send(Err(e.clone()));
            }
        }
    }
}

/// Poll records in one transaction committed without an fsync (`synchronous=NORMAL` for
/// its commit only: the next FULL commit syncs it). Returns the keys that matched no PENDING
/// request.
async fn write_polls(
    conn: &mut SqliteConnection,
    records: &[PollRecord],
) -> StoreResult<Vec<PollKey>> {
    sqlx::raw_sql("PRAGMA synchronous = NORMAL")
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
    let written = super::polls::write(&mut *conn, records).await;
    let restored = sqlx::raw_sql("PRAGMA synchronous = FULL")
        .execute(&mut *conn)
        .await
        .map_err(db_err);
    let gone = written?;
    restored?;
    Ok(gone)
}

/// One transaction for the whole batch, one savepoint per transition. `Ok` holds each
/// transition's own outcome (in batch order) once the COMMIT succeeded.
async fn apply_batch(
    conn: &mut SqliteConnection,
    batch: &[Queued],
) -> StoreResult<Vec<StoreResult<Written>>> {
    // IMMEDIATE takes the write lock up front: no other writer (a pool connection or another
    // process on the file) can slip between a guard and its write.
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await.map_err(db_err)?;
    let mut outcomes = Vec::with_capacity(batch.len());
    for job in batch {
        sqlx::raw_sql("SAVEPOINT one")
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        let outcome = write_transition(&mut tx, &job.transition).await;
        let end = if matches!(outcome, Ok(Written::Done { .. })) {
            "RELEASE one"
        } else {
            "ROLLBACK TO one; RELEASE one"
        };
        // Failing here means SQLite ended the whole transaction (it does on some errors, such
        // as a full disk): the earlier writes are gone too, so the batch fails as one.
        sqlx::raw_sql(end).execute(&mut *tx).await.map_err(db_err)?;
        outcomes.push(outcome);
    }
    tx.commit().await.map_err(db_err)?;
    Ok(outcomes)
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
