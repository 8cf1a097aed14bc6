//! Taking a decision on a CIBA request: the first decision wins, a decision on an expired
//! request changes nothing (§3.3, §6). Used by the simulated SANDBOX decisions, admin
//! cancellation and (later) the device channels.

use std::time::Duration;

use assent_core::ciba::{DecideError, check_decidable};
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
    check_decidable(&req, now)?;
    let decision = Decision {
        outcome: input.outcome,
        channel: input.channel,
        device_id: input.device_id,
        amr: input.amr,
        evidence: input.evidence,
        decided_at: now,
    };
    if state
        .store
        .decide_ciba_request(env_id, auth_req_id, &decision, now)
        .await?
    {
        tracing::info!(
            environment_id = %env_id,
            outcome = decision.outcome.as_str(),
            channel = decision.channel.as_str(),
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
pub fn schedule_auto_decision(
    state: AppState,
    env_id: String,
    auth_req_id: String,
    outcome: DecisionOutcome,
    delay_ms: i64,
) {
    tokio::spawn(async move {
        if delay_ms > 0 {
            tokio::time::sleep(Duration::from_millis(u64::try_from(delay_ms).unwrap_or(0))).await;
        }
        let input = DecisionInput {
            outcome,
            channel: DecisionChannel::Auto,
            amr: vec!["sim".into()],
            device_id: None,
            evidence: None,
        };
        let now = state.now();
        if let Err(e) = decide(&state, &env_id, &auth_req_id, input, now).await {
            tracing::info!(environment_id = %env_id, error = %e, "automatic decision not applied");
        }
    });
}
