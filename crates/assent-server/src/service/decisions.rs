//! Taking a decision on a CIBA request: the first decision wins, a decision on an expired
//! request changes nothing (§3.3, §6). Used by the simulated SANDBOX decisions, admin
//! cancellation and the device channel (`crate::device`), and by the web page, email links and
//! webhooks to come; automatic SANDBOX decisions are scheduled work (`crate::work`). Each
//! decision is audited (who, which channel, the amr) in the transition that stores it.

use assent_core::ciba::{self, DecideError, check_decidable};
use assent_core::transition::Applied;
use assent_core::{
    AuthReqId, Decision, DecisionChannel, DecisionOutcome, EnvironmentId, Timestamp,
};
use assent_store::StoreError;

use super::Deps;

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
    state: &Deps,
    env_id: &EnvironmentId,
    auth_req_id: &AuthReqId,
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
    let transition =
        ciba::decide(&req, decision, now)?.correlated(&crate::correlation::current().to_string());
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
