//! Taking a decision on a CIBA request: the first decision wins, a decision on an expired
//! request changes nothing (§3.3, §6). Used by the simulated SANDBOX decisions, admin
//! cancellation and (later) the device channels.

use std::time::Duration;

use assent_core::ciba::{self, DecideError, check_decidable};
use assent_core::transition::Applied;
use assent_core::{Decision, DecisionChannel, DecisionOutcome, Timestamp};
use assent_store::StoreError;

use crate::state::AppState;

#[derive(Debug, thiserror::Error)]
pub enum DecideFailure {
    #[error("no such request")]
    NotFound,
    #[error(transparent)]
    Refused(#[from] DecideError),
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for DecideFailure {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => DecideFailure::NotFound,
            other => DecideFailure::Store(other),
        }
    }
}

pub struct DecisionInput {
    pub outcome: DecisionOutcome,
    pub channel: DecisionChannel,
    pub amr: Vec<String>,
    pub device_id: Option<String>,
    pub evidence: Option<serde_json::Value>,
}

pub async fn decide(
    state: &AppState,
    env_id: &str,
    auth_req_id: &str,
    input: DecisionInput,
    now: Timestamp,
) -> Result<(), DecideFailure> {
    let req = state.store.get_ciba_request(env_id, auth_req_id).await?;
    let decision = Decision {
        outcome: input.outcome,
        channel: input.channel,
        device_id: input.device_id,
        amr: input.amr,
        evidence: input.evidence,
        decided_at: now,
    };
    let (outcome, channel) = (decision.outcome, decision.channel);
    let transition = ciba::decide(&req, decision, now)?;
    if state.store.apply(&transition).await? == Applied::Won {
        tracing::info!(
            environment_id = %env_id,
            outcome = outcome.as_str(),
            channel = channel.as_str(),
            "CIBA request decided"
        );
        return Ok(());
    }
    // Lost a race: report why, from the state that won.
    let req = state.store.get_ciba_request(env_id, auth_req_id).await?;
    Err(check_decidable(&req, now)
        .err()
        .unwrap_or(DecideError::AlreadyDecided)
        .into())
}

/// SANDBOX users with `autoDecision` answer by themselves after `autoDecisionDelayMs` (§6.5).
/// The handle lets a caller (tests) await the outcome. The task is tracked by the state and
/// ends, without deciding, when the server shuts down ([`AutoDecisionResult::Cancelled`]).
pub fn schedule_auto_decision(
    state: AppState,
    env_id: String,
    auth_req_id: String,
    outcome: DecisionOutcome,
    delay_ms: i64,
) -> tokio::task::JoinHandle<AutoDecisionResult> {
    let shutdown = state.shutdown.clone();
    state.tasks.clone().spawn(async move {
        let run = async {
            if delay_ms > 0 {
                tokio::time::sleep(Duration::from_millis(u64::try_from(delay_ms).unwrap_or(0)))
                    .await;
            }
            apply_auto_decision(&state, &env_id, &auth_req_id, outcome).await
        };
        shutdown
            .run_until_cancelled(run)
            .await
            .unwrap_or(AutoDecisionResult::Cancelled)
    })
}

/// What became of an automatic decision when its timer fired.
#[derive(Debug, PartialEq, Eq)]
pub enum AutoDecisionResult {
    Applied,
    /// The environment is not SANDBOX any more (or is gone): the simulated decision is dropped.
    NotSandbox,
    /// Refused (already decided, expired, deleted) or the store failed.
    NotApplied,
    /// The server shut down before the timer fired (the decision is rescheduled at the next
    /// start by [`resume_auto_decisions`]).
    Cancelled,
}

/// Applies an automatic decision now, if its environment is still SANDBOX: simulated decisions
/// are SANDBOX-only (§6.5) and the environment may have changed type while the timer ran.
pub async fn apply_auto_decision(
    state: &AppState,
    env_id: &str,
    auth_req_id: &str,
    outcome: DecisionOutcome,
) -> AutoDecisionResult {
    match state.store.get_environment(env_id).await {
        Ok(env) if env.env_type == assent_core::EnvironmentType::Sandbox => {}
        _ => {
            tracing::info!(environment_id = %env_id, "automatic decision skipped: not a SANDBOX environment any more");
            return AutoDecisionResult::NotSandbox;
        }
    }
    let input = DecisionInput {
        outcome,
        channel: DecisionChannel::Auto,
        amr: vec!["sim".into()],
        device_id: None,
        evidence: None,
    };
    let now = state.now();
    match decide(state, env_id, auth_req_id, input, now).await {
        Ok(()) => AutoDecisionResult::Applied,
        Err(e) => {
            tracing::info!(environment_id = %env_id, error = %e, "automatic decision not applied");
            AutoDecisionResult::NotApplied
        }
    }
}

/// After a restart, pending requests of SANDBOX users with `autoDecision` get their decision
/// scheduled again (the timers of the previous process lived in memory). The remaining delay
/// counts from the request's creation. Returns how many were rescheduled.
pub async fn resume_auto_decisions(state: &AppState) -> Result<usize, StoreError> {
    use assent_core::{AutoDecision, EnvironmentType, Page};
    use assent_store::CibaRequestFilter;

    let now = state.now();
    let filter = CibaRequestFilter {
        status: Some(assent_core::CibaStatus::Pending),
        ..CibaRequestFilter::default()
    };
    let mut resumed = 0;
    let mut env_page = Page::first(Page::MAX_LIMIT);
    loop {
        let envs = state.store.list_environments(&env_page).await?;
        for env in envs
            .items
            .iter()
            .filter(|e| e.env_type == EnvironmentType::Sandbox)
        {
            let mut page = Page::first(Page::MAX_LIMIT);
            loop {
                let reqs = state
                    .store
                    .list_ciba_requests(&env.id, &filter, now, &page)
                    .await?;
                for req in &reqs.items {
                    let Ok(user) = state.store.get_user(&env.id, &req.user_id).await else {
                        continue;
                    };
                    let Some(auto) = user.auto_decision else {
                        continue;
                    };
                    let outcome = match auto {
                        AutoDecision::Approve => DecisionOutcome::Approve,
                        AutoDecision::Deny => DecisionOutcome::Deny,
                    };
                    let due = req
                        .created_at
                        .plus_millis(user.auto_decision_delay_ms.unwrap_or(0));
                    // Detached: the timer runs on its own.
                    drop(schedule_auto_decision(
                        state.clone(),
                        env.id.clone(),
                        req.auth_req_id.clone(),
                        outcome,
                        (due.millis() - now.millis()).max(0),
                    ));
                    resumed += 1;
                }
                match reqs.next {
                    Some(cursor) => page.cursor = Some(cursor),
                    None => break,
                }
            }
        }
        match envs.next {
            Some(cursor) => env_page.cursor = Some(cursor),
            None => break,
        }
    }
    Ok(resumed)
}
