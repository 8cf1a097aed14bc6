//! The worker that runs durable scheduled work (`assent_store::WorkStore`): SANDBOX automatic
//! decisions now, notification retries later; and the expiry sweep, which marks requests that
//! expired undecided (`ciba::expire`, audited as `REQUEST_EXPIRED`) within one pass
//! ([`RECHECK_MS`]) of their expiry.
//!
//! Every node runs one. A worker claims due work under a lease (no other worker runs it while
//! the lease lasts), runs each job through the one state-change path (`apply`, finishing the
//! work in the same transaction as the change it makes), and sleeps on the server's
//! [`Clock`](crate::Clock) until the next due time, a wake-up for new work of this node, the
//! shutdown, or a periodic re-check for work other nodes scheduled or a crashed node left
//! behind, whichever comes first. Work runs once: a second worker that ran it too (after a
//! lease expired) finds its completion lost and writes nothing.

use assent_core::ciba::{self, DecideError};
use assent_core::transition::{Applied, Job, ScheduledWork, Transition};
use assent_core::{
    AuthReqId, Decision, DecisionChannel, DecisionOutcome, EnvironmentType, Timestamp,
};
use assent_store::{ClaimedWork, StoreError, StoreResult, WakeKey, WakeUp};
use tokio::sync::{mpsc, oneshot};

use crate::state::AppState;

/// How long a claim holds work: a worker that dies holding it delays the work by at most this.
pub const LEASE_MS: i64 = 30_000;
/// How much work one claim takes.
pub const BATCH: u32 = 32;
/// The longest a worker sleeps without looking: bounds how late it finds work scheduled by
/// another node or freed by an expired lease.
pub const RECHECK_MS: i64 = 5_000;
/// The first retry of failed work comes after this; each further failure doubles it, up to
/// [`MAX_RETRY_DELAY_MS`].
pub const RETRY_DELAY_MS: i64 = 1_000;
pub const MAX_RETRY_DELAY_MS: i64 = 60_000;
/// The sleep after a pass that left work claimable (lost to another claimer), so a store
/// that reports work due but yields none cannot make the worker spin.
const MIN_SLEEP_MS: i64 = 10;

/// The running worker of this process.
#[derive(Clone, Debug)]
pub struct WorkerHandle {
    id: String,
    passes: mpsc::UnboundedSender<oneshot::Sender<()>>,
}

impl WorkerHandle {
    /// The worker's id, recorded as `claimed_by` on the work it holds.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Asks the worker for a pass now and waits for it to end. On `true`, every piece of work
    /// due when the pass read the clock (after this call) has run or was given back for a
    /// retry, except what another worker's lease holds. `false`: the worker has stopped.
    pub async fn run_due_work(&self) -> bool {
        let (done, ended) = oneshot::channel();
        self.passes.send(done).is_ok() && ended.await.is_ok()
    }
}

/// Starts this process's worker (a random id) as a tracked task of `state` that ends with
/// its shutdown.
pub fn start(state: &AppState) -> WorkerHandle {
    let id = assent_core::new_id();
    let (passes, requests) = mpsc::unbounded_channel();
    // Subscribed before the first pass: work scheduled from now on wakes the worker.
    let new_work = state.store.subscribe(&WakeKey::Work);
    drop(
        state
            .tasks
            .spawn(run(state.clone(), id.clone(), new_work, requests)),
    );
    WorkerHandle { id, passes }
}

async fn run(
    state: AppState,
    worker: String,
    mut new_work: WakeUp,
    mut requests: mpsc::UnboundedReceiver<oneshot::Sender<()>>,
) {
    let mut answered_by_next_pass = Vec::new();
    let mut swept_to = state
        .now()
        .plus_secs(-assent_core::ciba::EXPIRED_ANSWERABLE_SECS);
    let mut next_sweep = Timestamp(i64::MIN);
    loop {
        while let Ok(request) = requests.try_recv() {
            answered_by_next_pass.push(request);
        }
        let now = state.now();
        // At most once per re-check interval, however often the worker is woken (and at once
        // when a pass was asked for: tests, and shutdown's last pass).
        if now >= next_sweep || !answered_by_next_pass.is_empty() {
            swept_to = sweep_expired(&state, swept_to, now).await;
            next_sweep = now.plus_millis(RECHECK_MS);
        }
        let next_look = pass(&state, &worker, now).await;
        for request in answered_by_next_pass.drain(..) {
            let _ = request.send(());
        }
        if state.shutdown.is_cancelled() {
            break;
        }
        let wake_at = if next_look > now {
            next_look.min(now.plus_millis(RECHECK_MS))
        } else {
            // Claimable already, yet this pass claimed nothing more: a race with another
            // claimer, or a store that says so wrongly. Look again soon, not at once.
            now.plus_millis(MIN_SLEEP_MS)
        };
        tokio::select! {
            biased;
            () = state.shutdown.cancelled() => break,
            Some(request) = requests.recv() => answered_by_next_pass.push(request),
            () = new_work.woken() => {}
            () = state.clock.sleep_until(wake_at) => {}
        }
    }
    tracing::debug!(worker = %worker, "scheduled-work worker stopped");
}

/// How many expired requests one read of the sweep takes (their expiries are applied
/// concurrently, so the writer commits them together).
pub const SWEEP_BATCH: u32 = 256;
/// How far back each sweep looks again (other nodes' clocks, requests being admitted while
/// the previous sweep read). The read walks the expiry index over this window, requests no
/// longer pending included, so it is kept short.
const SWEEP_OVERLAP_MS: i64 = 5_000;
/// The most batches one sweep takes (a backlog after a restart is worked off over several
/// passes, so scheduled work and shutdown are not kept waiting).
const SWEEP_MAX_BATCHES: usize = 40;

/// Marks every request that expired undecided by `now` (expiry after `after`) through
/// `ciba::expire`, which writes its audit entry (and, with issue #10, its notifications) once
/// across workers and nodes: of two sweeps, one wins each request. Returns where the next
/// sweep starts.
async fn sweep_expired(state: &AppState, after: Timestamp, now: Timestamp) -> Timestamp {
    let mut after = after;
    for _ in 0..SWEEP_MAX_BATCHES {
        if state.shutdown.is_cancelled() {
            return after;
        }
        let expired = match state.store.expired_pending(after, now, SWEEP_BATCH).await {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "could not read expired requests");
                return after;
            }
        };
        let applies = expired.iter().filter_map(|req| {
            let t = ciba::expire(req, now).ok()?;
            Some(async move { state.store.apply(&t).await })
        });
        let results = futures_util::future::join_all(applies).await;
        if let Some(e) = results.iter().find_map(|r| r.as_ref().err()) {
            tracing::warn!(error = %e, "could not mark expired requests");
            return after;
        }
        let full = expired.len() == SWEEP_BATCH as usize;
        let Some(last) = expired.last().filter(|_| full) else {
            // All of them read: the next sweep starts a little before `now`.
            return after.max(now.plus_millis(-SWEEP_OVERLAP_MS));
        };
        // A full batch: more may share the last expiry; those marked are skipped next read.
        after = last.expires_at.plus_millis(-1);
    }
    after
}

/// Runs everything claimable at `now`, batch after batch. Returns when work is next due.
async fn pass(state: &AppState, worker: &str, now: Timestamp) -> Timestamp {
    let lease_until = now.plus_millis(LEASE_MS);
    loop {
        let claimed = match state
            .store
            .claim_due_work(worker, now, lease_until, BATCH)
            .await
        {
            Ok(claimed) => claimed,
            Err(e) => {
                tracing::warn!(worker, error = %e, "could not claim scheduled work");
                return now.plus_millis(RECHECK_MS);
            }
        };
        for (i, work) in claimed.iter().enumerate() {
            if state.shutdown.is_cancelled() {
                // Not started: back to whoever runs next (this node after its restart, or
                // another one), without waiting for the lease.
                for unstarted in &claimed[i..] {
                    give_back(state, worker, unstarted, unstarted.work.due_at).await;
                }
                return now;
            }
            run_claimed(state, worker, work, now).await;
        }
        if claimed.len() < BATCH as usize {
            break;
        }
    }
    match state.store.next_work_due().await {
        Ok(next) => next.unwrap_or(Timestamp(i64::MAX)),
        Err(e) => {
            tracing::warn!(worker, error = %e, "could not read when scheduled work is due");
            now.plus_millis(RECHECK_MS)
        }
    }
}

/// Runs one claimed job; a store failure gives it back for a retry after a backoff that grows
/// with its attempts (never dropped: if even that fails, the lease ends and it is claimed
/// again).
async fn run_claimed(state: &AppState, worker: &str, claimed: &ClaimedWork, now: Timestamp) {
    let work = &claimed.work;
    let result = match &work.job {
        Job::AutoDecision {
            auth_req_id,
            outcome,
        } => auto_decision(state, work, auth_req_id, *outcome, now).await,
    };
    if let Err(e) = result {
        let retry_at = now.plus_millis(retry_delay_ms(claimed.attempts));
        tracing::warn!(
            worker,
            work_id = work.id.as_str(),
            kind = work.job.kind(),
            attempts = claimed.attempts + 1,
            error = %e,
            "scheduled work failed; it will be retried"
        );
        give_back(state, worker, claimed, retry_at).await;
    }
}

async fn give_back(state: &AppState, worker: &str, claimed: &ClaimedWork, due_at: Timestamp) {
    let id = &claimed.work.id;
    match state.store.retry_work(worker, id, due_at).await {
        Ok(true) => {}
        Ok(false) => tracing::info!(
            worker,
            work_id = id.as_str(),
            "scheduled work is held by another worker now"
        ),
        Err(e) => tracing::warn!(
            worker,
            work_id = id.as_str(),
            error = %e,
            "could not give scheduled work back; it is claimed again when its lease ends"
        ),
    }
}

/// The backoff before retry number `attempts + 1`: [`RETRY_DELAY_MS`] doubled per earlier
/// attempt, at most [`MAX_RETRY_DELAY_MS`].
pub fn retry_delay_ms(attempts: i64) -> i64 {
    let doublings = u32::try_from(attempts.clamp(0, 16)).unwrap_or(16);
    RETRY_DELAY_MS
        .saturating_mul(1_i64 << doublings)
        .min(MAX_RETRY_DELAY_MS)
}

/// A SANDBOX user's automatic answer (§6.5): decided through the one decision path with
/// channel AUTO and amr `["sim"]`, finishing the work in the same transaction. Dropped (the
/// work finished without a decision) when the environment is gone or no longer SANDBOX
/// (simulated decisions are SANDBOX-only), or the request is gone, decided or expired.
async fn auto_decision(
    state: &AppState,
    work: &ScheduledWork,
    auth_req_id: &AuthReqId,
    outcome: DecisionOutcome,
    now: Timestamp,
) -> StoreResult<()> {
    let env_id = &work.environment_id;
    match state.store.get_environment(env_id).await {
        Ok(env) if env.env_type == EnvironmentType::Sandbox => {}
        Ok(_) => return drop_work(state, work, "the environment is not SANDBOX any more").await,
        Err(StoreError::NotFound) => {
            return drop_work(state, work, "the environment is gone").await;
        }
        Err(e) => return Err(e),
    }
    // Lost once: something changed since the read (a decision, or another worker finished
    // the work); read again and judge again, once.
    for _ in 0..2 {
        let req = match state.store.get_ciba_request(env_id, auth_req_id).await {
            Ok(req) => req,
            Err(StoreError::NotFound) => {
                return drop_work(state, work, "the request is gone").await;
            }
            Err(e) => return Err(e),
        };
        let decision = Decision {
            outcome,
            channel: DecisionChannel::Auto,
            device_id: None,
            amr: vec!["sim".into()],
            evidence: None,
            decided_at: now,
        };
        let mut transition = match ciba::decide(&req, decision, now) {
            Ok(transition) => transition,
            Err(DecideError::AlreadyDecided) => {
                return drop_work(state, work, "the request was decided meanwhile").await;
            }
            Err(DecideError::Expired) => {
                return drop_work(state, work, "the request has expired").await;
            }
        };
        transition.completes = Some(work.id.clone());
        if state.store.apply(&transition).await? == Applied::Won {
            tracing::info!(
                environment_id = %env_id,
                outcome = outcome.as_str(),
                channel = DecisionChannel::Auto.as_str(),
                "CIBA request decided"
            );
            return Ok(());
        }
    }
    tracing::info!(
        environment_id = %env_id,
        work_id = work.id.as_str(),
        "automatic decision already finished by another worker"
    );
    Ok(())
}

/// Finishes `work` without a decision.
async fn drop_work(state: &AppState, work: &ScheduledWork, why: &'static str) -> StoreResult<()> {
    let done = Transition::complete_only(work.environment_id.clone(), work.id.clone());
    match state.store.apply(&done).await? {
        Applied::Won => tracing::info!(
            environment_id = %work.environment_id,
            work_id = work.id.as_str(),
            kind = work.job.kind(),
            reason = why,
            "scheduled work dropped"
        ),
        Applied::Lost | Applied::Limited { .. } => tracing::info!(
            environment_id = %work.environment_id,
            work_id = work.id.as_str(),
            "scheduled work already finished by another worker"
        ),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_retry_delay_doubles_per_attempt_up_to_its_cap() {
        assert_eq!(retry_delay_ms(0), 1_000);
        assert_eq!(retry_delay_ms(1), 2_000);
        assert_eq!(retry_delay_ms(5), 32_000);
        assert_eq!(retry_delay_ms(6), MAX_RETRY_DELAY_MS);
        assert_eq!(retry_delay_ms(i64::MAX), MAX_RETRY_DELAY_MS);
        assert_eq!(retry_delay_ms(-3), 1_000);
    }
}
