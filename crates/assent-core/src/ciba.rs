//! The CIBA request state machine: what a poll of the token endpoint gets (CIBA §11, Assent
//! spec §3.3), when a decision may still be taken, and which `acr` a decision satisfies.
//!
//! Every state change of a request is built here as a [`Transition`] for the store to apply:
//! [`admit`] (a new request, with the [`auto_decision`] it may schedule), [`record_poll`]
//! (poll bookkeeping), [`decide`] (every decision channel), [`expire`], [`redeem`] and
//! [`revoke_replayed`]. The guard each one carries is
//! the state it was judged on; if that state changed before the store applied it, the store
//! reports `Lost` and the caller reads again and judges again.

use crate::error::{OAuthError, OAuthErrorCode};
use crate::ids::ApplicationId;
use crate::model::{
    AbuseLimits, ActivityType, Actor, ActorType, AuditEntry, AutoDecision, CibaRequest, CibaStatus,
    Decision, DecisionChannel, DecisionOutcome, EnvironmentType, IssuedTokens, User,
};
use crate::time::Timestamp;
use crate::transition::{Change, Guard, Job, ScheduledWork, Transition, WorkId};

/// Each `slow_down` makes the required interval this much longer (CIBA §11, RFC 8628 §3.5).
pub const SLOW_DOWN_INCREMENT_SECS: i64 = 5;
/// Network jitter forgiven when judging whether a poll came too soon.
pub const POLL_JITTER_TOLERANCE_MS: i64 = 500;
/// An expired request keeps answering `expired_token` at least this long (§3.3).
pub const EXPIRED_ANSWERABLE_SECS: i64 = 24 * 3600;

/// What the store must persist about a poll, written with a compare-and-set on the previous
/// `last_polled_at` and `interval_seconds` so two nodes (or two concurrent polls arriving in
/// the same millisecond) cannot both judge the same previous poll: every answered poll is
/// recorded, and every `slow_down` sent lengthens the interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PollUpdate {
    pub expected_last_polled_at: Option<Timestamp>,
    pub expected_interval_seconds: i64,
    pub last_polled_at: Timestamp,
    pub interval_seconds: i64,
}

/// The answer to a CIBA-grant token request for one `auth_req_id`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PollVerdict {
    /// Approved: redeem it atomically (exactly once) and issue tokens.
    Redeem,
    /// Already redeemed, and this poll arrived after the redemption: `invalid_grant`, and
    /// revoke what the redemption issued (RFC 6749 §4.1.2, spec §3.3).
    Replay,
    /// Answer with this error; persist `update` first when present.
    Refuse {
        error: OAuthError,
        update: Option<PollUpdate>,
    },
}

/// The status a request takes when `outcome` is stored (APPROVED, DENIED, CANCELLED).
pub fn decided_status(outcome: DecisionOutcome) -> CibaStatus {
    match outcome {
        DecisionOutcome::Approve => CibaStatus::Approved,
        DecisionOutcome::Deny => CibaStatus::Denied,
        DecisionOutcome::Cancel => CibaStatus::Cancelled,
    }
}

/// Judge a poll of `req` by `client_id` arriving at `now`. Pure: the caller persists the update.
pub fn evaluate_poll(req: &CibaRequest, client_id: &ApplicationId, now: Timestamp) -> PollVerdict {
    let refuse = |error, update| PollVerdict::Refuse { error, update };
    // Another client's auth_req_id is indistinguishable from an unknown one, and does not
    // touch the owner's poll state (CIBA §10.1, R53).
    if req.application_id != *client_id {
        return refuse(unknown_auth_req_id(), None);
    }
    if req.status == CibaStatus::Redeemed {
        return redeemed(req, now);
    }
    if now >= req.expires_at.plus_secs(EXPIRED_ANSWERABLE_SECS) {
        return refuse(unknown_auth_req_id(), None);
    }
    if req.is_expired(now) {
        return refuse(OAuthError::expired_token(), None);
    }
    match req.status {
        CibaStatus::Approved => PollVerdict::Redeem,
        CibaStatus::Denied | CibaStatus::Cancelled => refuse(OAuthError::access_denied(), None),
        // Expired is derived, Redeemed handled above; both unreachable here but answered safely.
        CibaStatus::Expired => refuse(OAuthError::expired_token(), None),
        CibaStatus::Redeemed => redeemed(req, now),
        CibaStatus::Pending => {
            let too_soon = req.last_polled_at.is_some_and(|prev| {
                now.millis() - prev.millis()
                    < req.interval_seconds * 1000 - POLL_JITTER_TOLERANCE_MS
            });
            if too_soon {
                refuse(
                    OAuthError::slow_down(),
                    Some(PollUpdate {
                        expected_last_polled_at: req.last_polled_at,
                        expected_interval_seconds: req.interval_seconds,
                        last_polled_at: now,
                        interval_seconds: req.interval_seconds + SLOW_DOWN_INCREMENT_SECS,
                    }),
                )
            } else {
                refuse(
                    OAuthError::authorization_pending(),
                    Some(PollUpdate {
                        expected_last_polled_at: req.last_polled_at,
                        expected_interval_seconds: req.interval_seconds,
                        last_polled_at: now,
                        interval_seconds: req.interval_seconds,
                    }),
                )
            }
        }
    }
}

/// A poll of a redeemed request is a replay only when it arrived (its `now`) strictly after the
/// redemption time, which the redeeming poll reads just before its committing write. A poll
/// that arrived at or before that moment was in flight concurrently with the winner: it gets
/// `invalid_grant` without revoking the winner's tokens (spec §3.3). A request redeemed before
/// `redeemed_at` was recorded is always judged a replay.
fn redeemed(req: &CibaRequest, now: Timestamp) -> PollVerdict {
    match req.redeemed_at {
        Some(at) if now <= at => PollVerdict::Refuse {
            error: unknown_auth_req_id(),
            update: None,
        },
        _ => PollVerdict::Replay,
    }
}

/// Simulated decisions (SANDBOX approve/deny, automatic answers) are for SANDBOX environments
/// only (§6.5): once the environment is PRODUCTION, an approval by simulation yields no tokens,
/// even if it was taken while the environment was still SANDBOX.
pub fn check_redeemable(decision: &Decision, env_type: EnvironmentType) -> Result<(), OAuthError> {
    let simulated = matches!(
        decision.channel,
        DecisionChannel::Sandbox | DecisionChannel::Auto
    );
    if simulated && env_type != EnvironmentType::Sandbox {
        return Err(OAuthError::invalid_grant(
            "The request was approved by a simulated decision, which is not accepted in a PRODUCTION environment.",
        ));
    }
    Ok(())
}

/// A refresh token descending from a simulated approval (amr `sim`) is refused once the
/// environment is PRODUCTION, like the approval itself ([`check_redeemable`]).
pub fn check_refreshable(amr: &[String], env_type: EnvironmentType) -> Result<(), OAuthError> {
    if env_type != EnvironmentType::Sandbox && amr.iter().any(|m| m == "sim") {
        return Err(OAuthError::invalid_grant(
            "The refresh token stems from a simulated decision, which is not accepted in a PRODUCTION environment.",
        ));
    }
    Ok(())
}

/// The window of `AbuseLimits::authorization_requests_per_minute`.
pub const RATE_WINDOW_SECS: i64 = 60;

/// The condition the store evaluates atomically with inserting a CIBA request (in the same
/// transaction, so concurrent requests on any node cannot overshoot): at most
/// `max_pending_per_user` pending requests of the user unexpired at `now`, and at most
/// `max_per_window` requests of the application created after `window_start`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AbuseGuard {
    pub max_pending_per_user: Option<i64>,
    pub max_per_window: Option<i64>,
    pub window_start: Timestamp,
    pub now: Timestamp,
}

/// The guard for a request arriving at `now`; `None` when the environment sets no limit (the
/// insert is then unconditional and costs no count query).
pub fn abuse_guard(limits: &AbuseLimits, now: Timestamp) -> Option<AbuseGuard> {
    if limits.max_pending_requests_per_user.is_none()
        && limits.authorization_requests_per_minute.is_none()
    {
        return None;
    }
    Some(AbuseGuard {
        max_pending_per_user: limits.max_pending_requests_per_user,
        max_per_window: limits.authorization_requests_per_minute,
        window_start: now.plus_secs(-RATE_WINDOW_SECS),
        now,
    })
}

/// Which abuse limit refused a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AbuseLimit {
    /// `maxPendingRequestsPerUser`.
    PendingPerUser,
    /// `authorizationRequestsPerMinute`.
    RatePerApplication,
}

impl AbuseLimit {
    pub fn as_str(self) -> &'static str {
        match self {
            AbuseLimit::PendingPerUser => "maxPendingRequestsPerUser",
            AbuseLimit::RatePerApplication => "authorizationRequestsPerMinute",
        }
    }
}

/// The 429 answer for a limited request: `temporarily_unavailable` and the `Retry-After`
/// seconds (whole, at least 1) until `free_at`, when a slot frees up (the user's earliest
/// pending request expires, or the oldest request in the window leaves it).
pub fn limited(limit: AbuseLimit, free_at: Timestamp, now: Timestamp) -> (OAuthError, i64) {
    let wait_ms = (free_at.millis() - now.millis()).max(0);
    let retry_after = ((wait_ms + 999) / 1000).max(1);
    let detail = match limit {
        AbuseLimit::PendingPerUser => {
            "The user has too many pending authentication requests. Try again later."
        }
        AbuseLimit::RatePerApplication => {
            "The application has started too many authentication requests. Try again later."
        }
    };
    (
        OAuthError::new(OAuthErrorCode::TemporarilyUnavailable, detail),
        retry_after,
    )
}

pub fn unknown_auth_req_id() -> OAuthError {
    OAuthError::invalid_grant("The auth_req_id is invalid or was not issued to this client.")
}

/// Why a decision on a request is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecideError {
    #[error("the request has expired")]
    Expired,
    #[error("the request has already been decided")]
    AlreadyDecided,
}

/// A decision (approve, deny, cancel) may be taken only on a pending, unexpired request; the
/// first decision wins and approving after expiry changes nothing (§3.3, §6).
pub fn check_decidable(req: &CibaRequest, now: Timestamp) -> Result<(), DecideError> {
    if req.is_expired(now) {
        return Err(DecideError::Expired);
    }
    if req.status != CibaStatus::Pending {
        return Err(DecideError::AlreadyDecided);
    }
    Ok(())
}

// --- transitions ------------------------------------------------------------------------------

/// Stores a new request (durable before `/bc-authorize` acknowledges it, CIBA §7.3). With
/// `abuse` (from [`abuse_guard`]), the store counts the limits in the same transaction as the
/// insert and answers `Applied::Limited` instead of storing when one is reached (§9).
pub fn admit(request: CibaRequest, abuse: Option<AbuseGuard>) -> Transition {
    let mut audit = vec![AuditEntry::about_request(
        &request,
        ActivityType::RequestCreated,
        Actor::new(ActorType::Client, Some(request.application_id.to_string())),
        None,
        request.created_at,
        serde_json::json!({
            "scope": request.scope,
            "deliveryMode": request.delivery_mode.as_str(),
        }),
    )];
    if let Some(decision) = &request.decision {
        audit.push(decision_entry(&request, decision));
    }
    Transition {
        audit,
        ..Transition::new(
            request.environment_id.clone(),
            Guard::Admit { abuse },
            Change::InsertRequest { request },
        )
    }
}

/// Who a decision's channel says decided (§6.4): the device for a device key, the user for
/// the web page, an email link or a webhook callback, the simulation for SANDBOX and
/// automatic answers, the administrator for a cancellation.
pub fn decider(req: &CibaRequest, decision: &Decision) -> Actor {
    match decision.channel {
        DecisionChannel::Device => Actor::new(ActorType::Device, decision.device_id.clone()),
        DecisionChannel::Web | DecisionChannel::Email | DecisionChannel::Webhook => {
            Actor::new(ActorType::User, Some(req.user_id.to_string()))
        }
        DecisionChannel::Sandbox | DecisionChannel::Auto => Actor::new(ActorType::Simulation, None),
        DecisionChannel::Admin => Actor::admin(),
    }
}

/// The audit entry of `decision` on `req`: approved, denied or cancelled, by whom, through
/// which channel, with its `amr`.
pub fn decision_entry(req: &CibaRequest, decision: &Decision) -> AuditEntry {
    let kind = match decision.outcome {
        DecisionOutcome::Approve => ActivityType::RequestApproved,
        DecisionOutcome::Deny => ActivityType::RequestDenied,
        DecisionOutcome::Cancel => ActivityType::RequestCancelled,
    };
    AuditEntry {
        device_id: decision.device_id.clone(),
        ..AuditEntry::about_request(
            req,
            kind,
            decider(req, decision),
            Some(decision.channel),
            decision.decided_at,
            serde_json::json!({ "amr": decision.amr }),
        )
    }
}

/// The admission of a request made by `user` in an environment of `env_type`, with the user's
/// automatic answer if it has one (§6.5, SANDBOX only): an answer without delay is stored with
/// the request itself (already decided, channel AUTO, amr `["sim"]`, decided at its creation),
/// so the first poll finds it decided and no work is scheduled; an answer with a delay is
/// scheduled work `work` carried by the same admission ([`auto_decision`]).
pub fn admit_for(
    mut request: CibaRequest,
    abuse: Option<AbuseGuard>,
    env_type: EnvironmentType,
    user: &User,
    work: WorkId,
) -> Transition {
    let Some(answer) = auto_decision(env_type, user, &request, work) else {
        return admit(request, abuse);
    };
    if answer.due_at > request.created_at {
        let mut t = admit(request, abuse);
        t.schedule.push(answer);
        return t;
    }
    let Job::AutoDecision { outcome, .. } = answer.job;
    request.status = decided_status(outcome);
    request.decision = Some(Decision {
        outcome,
        channel: DecisionChannel::Auto,
        device_id: None,
        amr: vec!["sim".into()],
        evidence: None,
        decided_at: request.created_at,
    });
    admit(request, abuse)
}

/// Records the poll [`evaluate_poll`] judged on `req` (its `update`), as a compare-and-set on
/// the poll state `req` was read with: of two polls judged on the same state, one is recorded
/// and the other loses and is judged again, so every answered poll counts towards `slow_down`.
pub fn record_poll(req: &CibaRequest, update: PollUpdate) -> Transition {
    Transition::new(
        req.environment_id.clone(),
        Guard::PolledAsRead {
            last_polled_at: update.expected_last_polled_at,
            interval_seconds: update.expected_interval_seconds,
        },
        Change::RecordPoll {
            auth_req_id: req.auth_req_id.clone(),
            update,
        },
    )
}

/// THE decision path, for every channel (SANDBOX simulation, automatic answers, admin
/// cancellation; device keys, the web page, email links and webhooks as they come): a
/// channel only differs in how it authenticated the decider and what evidence `decision`
/// carries. Refused unless `req` is pending and unexpired at `now` ([`check_decidable`]); the
/// store writes it only if the request is still pending and unexpired at `now` when it
/// applies it, so of concurrent decisions the first wins (§3.3, §6). `decision` is stored
/// as given (its `decided_at` is normally `now`).
pub fn decide(
    req: &CibaRequest,
    decision: Decision,
    now: Timestamp,
) -> Result<Transition, DecideError> {
    check_decidable(req, now)?;
    let entry = decision_entry(req, &decision);
    Ok(Transition::new(
        req.environment_id.clone(),
        Guard::PendingAt { at: now },
        Change::Decide {
            auth_req_id: req.auth_req_id.clone(),
            decision,
        },
    )
    .audited(entry))
}

/// Why [`expire`] refuses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ExpireError {
    #[error("the request has not expired yet")]
    NotExpired,
    #[error("the request is no longer pending (decided, redeemed or already expired)")]
    NotPending,
}

/// Marks that `req` expired undecided: only a pending request past its `expires_at`. A reader
/// sees EXPIRED whether or not this is applied (the status is derived from time); the point of
/// the transition is what it will carry, written exactly once and never for a request a
/// decision won: the expiry notifications of issue #10 (ping/push `expired_token`, the
/// audit entry) attach here. Nothing applies it yet outside tests.
pub fn expire(req: &CibaRequest, now: Timestamp) -> Result<Transition, ExpireError> {
    if req.status != CibaStatus::Pending {
        return Err(ExpireError::NotPending);
    }
    if !req.is_expired(now) {
        return Err(ExpireError::NotExpired);
    }
    Ok(Transition::new(
        req.environment_id.clone(),
        Guard::ExpiredPendingAt { at: now },
        Change::Expire {
            auth_req_id: req.auth_req_id.clone(),
        },
    )
    .audited(AuditEntry::about_request(
        req,
        ActivityType::RequestExpired,
        Actor::system(),
        None,
        now,
        serde_json::json!({ "expiresAt": req.expires_at.to_rfc3339() }),
    )))
}

/// Redeems an approved request ([`PollVerdict::Redeem`]) at `at` and stores `tokens` with it.
/// `at` is the redemption time, read just before the store call: polls that arrived until
/// then were concurrent with this one, later ones are replays ([`evaluate_poll`]). The store
/// writes it only if the request is still APPROVED and unexpired at `at`, so exactly one of
/// concurrent redemptions wins and only its tokens are stored.
pub fn redeem(req: &CibaRequest, tokens: IssuedTokens, at: Timestamp) -> Transition {
    let entry = AuditEntry::about_request(
        req,
        ActivityType::TokensIssued,
        Actor::new(ActorType::Client, Some(req.application_id.to_string())),
        None,
        at,
        serde_json::json!({
            "accessTokenId": tokens.access_token.jti,
            "refreshToken": tokens.refresh_token.is_some(),
        }),
    );
    Transition::new(
        req.environment_id.clone(),
        Guard::ApprovedAt { at },
        Change::Redeem {
            auth_req_id: req.auth_req_id.clone(),
            at,
            tokens,
        },
    )
    .audited(entry)
}

/// Revokes everything issued from a redeemed request whose `auth_req_id` came back
/// ([`PollVerdict::Replay`]; RFC 6749 §4.1.2, spec §3.3): its access tokens and its refresh
/// families, with the access tokens minted by refreshing them.
pub fn revoke_replayed(req: &CibaRequest) -> Transition {
    Transition::new(
        req.environment_id.clone(),
        Guard::Redeemed,
        Change::RevokeRequestTokens {
            auth_req_id: req.auth_req_id.clone(),
        },
    )
}

/// The automatic answer a SANDBOX user with `autoDecision` gives to `req`, just made (§6.5):
/// work `id`, due `autoDecisionDelayMs` (none: at once) after the request's creation, for the
/// request's admission to carry (`Transition::schedule`), so that the request and its answer
/// are durable together. `None` for a user without `autoDecision`, and outside SANDBOX:
/// simulated decisions are SANDBOX-only. When it is due, the worker answers through
/// [`decide`] (channel AUTO, amr `["sim"]`) if the environment is still SANDBOX and the
/// request still decidable.
pub fn auto_decision(
    env_type: EnvironmentType,
    user: &User,
    req: &CibaRequest,
    id: WorkId,
) -> Option<ScheduledWork> {
    if env_type != EnvironmentType::Sandbox {
        return None;
    }
    let outcome = match user.auto_decision? {
        AutoDecision::Approve => DecisionOutcome::Approve,
        AutoDecision::Deny => DecisionOutcome::Deny,
    };
    let delay_ms = user.auto_decision_delay_ms.unwrap_or(0).max(0);
    Some(ScheduledWork {
        id,
        environment_id: req.environment_id.clone(),
        due_at: req.created_at.plus_millis(delay_ms),
        job: Job::AutoDecision {
            auth_req_id: req.auth_req_id.clone(),
            outcome,
        },
    })
}

/// Assurance levels, strongest first: device key > web authenticator > magic link = webhook.
pub const ACR_HWK: &str = "urn:assent:acr:hwk";
pub const ACR_PWD: &str = "urn:assent:acr:pwd";
pub const ACR_EMAIL: &str = "urn:assent:acr:email";
pub const ACR_EXT: &str = "urn:assent:acr:ext";
pub const ACR_VALUES_SUPPORTED: &[&str] = &[ACR_HWK, ACR_PWD, ACR_EMAIL, ACR_EXT];

fn acr_level(value: &str) -> Option<u8> {
    match value {
        ACR_HWK => Some(3),
        ACR_PWD => Some(2),
        ACR_EMAIL | ACR_EXT => Some(1),
        _ => None,
    }
}

/// The `acr` for the ID token: the first requested value the decision satisfies; `None` when
/// `acr_values` was not sent or nothing is satisfied (§3.2). Simulated and automatic SANDBOX
/// decisions satisfy any value.
pub fn satisfied_acr(acr_values: Option<&str>, channel: DecisionChannel) -> Option<String> {
    let requested = acr_values?.split(' ').filter(|v| !v.is_empty());
    let level = match channel {
        DecisionChannel::Sandbox | DecisionChannel::Auto => {
            return requested.into_iter().next().map(str::to_owned);
        }
        DecisionChannel::Device => 3,
        DecisionChannel::Web => 2,
        DecisionChannel::Email | DecisionChannel::Webhook => 1,
        DecisionChannel::Admin => return None,
    };
    requested
        .into_iter()
        .find(|v| acr_level(v).is_some_and(|l| l <= level))
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    #[test]
    fn each_outcome_is_stored_as_its_own_status() {
        use super::{CibaStatus, DecisionOutcome, decided_status};
        assert_eq!(
            decided_status(DecisionOutcome::Approve),
            CibaStatus::Approved
        );
        assert_eq!(decided_status(DecisionOutcome::Deny), CibaStatus::Denied);
        assert_eq!(
            decided_status(DecisionOutcome::Cancel),
            CibaStatus::Cancelled
        );
    }

    use super::*;
    use crate::error::OAuthErrorCode;
    use crate::model::DeliveryMode;

    fn pending(now: Timestamp) -> CibaRequest {
        CibaRequest {
            auth_req_id: "r1".into(),
            environment_id: "e".into(),
            application_id: "app".into(),
            user_id: "u".into(),
            scope: "openid".into(),
            binding_message: None,
            acr_values: None,
            authorization_details: None,
            delivery_mode: DeliveryMode::Poll,
            client_notification_token: None,
            created_at: now,
            expires_at: now.plus_secs(120),
            interval_seconds: 2,
            last_polled_at: None,
            status: CibaStatus::Pending,
            decision: None,
            redeemed_at: None,
        }
    }

    fn code(v: &PollVerdict) -> Option<OAuthErrorCode> {
        match v {
            PollVerdict::Refuse { error, .. } => Some(error.code),
            _ => None,
        }
    }

    #[test]
    fn first_poll_is_pending_and_recorded() {
        let t0 = Timestamp(1_000_000);
        let v = evaluate_poll(&pending(t0), &"app".into(), t0);
        assert_eq!(code(&v), Some(OAuthErrorCode::AuthorizationPending));
        let PollVerdict::Refuse {
            update: Some(u), ..
        } = v
        else {
            panic!("expected an update")
        };
        assert_eq!(u.last_polled_at, t0);
        assert_eq!(u.interval_seconds, 2);
        assert_eq!(u.expected_last_polled_at, None);
    }

    #[test]
    fn too_soon_is_slow_down_and_interval_grows() {
        let t0 = Timestamp(1_000_000);
        let mut r = pending(t0);
        r.last_polled_at = Some(t0);
        // 1.4 s later with a 2 s interval: below 2 - 0.5.
        let v = evaluate_poll(&r, &"app".into(), t0.plus_millis(1400));
        assert_eq!(code(&v), Some(OAuthErrorCode::SlowDown));
        let PollVerdict::Refuse {
            update: Some(u), ..
        } = v
        else {
            panic!("expected an update")
        };
        assert_eq!(u.interval_seconds, 7);
        // 1.5 s later is within the jitter tolerance.
        let v = evaluate_poll(&r, &"app".into(), t0.plus_millis(1500));
        assert_eq!(code(&v), Some(OAuthErrorCode::AuthorizationPending));
        // The grown interval sticks: 3 s later than a slow_down at interval 7 is still too soon.
        r.interval_seconds = 7;
        let v = evaluate_poll(&r, &"app".into(), t0.plus_secs(3));
        assert_eq!(code(&v), Some(OAuthErrorCode::SlowDown));
    }

    #[test]
    fn terminal_states() {
        let t0 = Timestamp(1_000_000);
        let mut r = pending(t0);
        assert_eq!(
            code(&evaluate_poll(&r, &"other".into(), t0)),
            Some(OAuthErrorCode::InvalidGrant)
        );
        r.status = CibaStatus::Approved;
        assert_eq!(evaluate_poll(&r, &"app".into(), t0), PollVerdict::Redeem);
        assert_eq!(
            code(&evaluate_poll(&r, &"app".into(), t0.plus_secs(120))),
            Some(OAuthErrorCode::ExpiredToken)
        );
        assert_eq!(
            code(&evaluate_poll(
                &r,
                &"app".into(),
                t0.plus_secs(120 + 24 * 3600)
            )),
            Some(OAuthErrorCode::InvalidGrant)
        );
        r.status = CibaStatus::Denied;
        assert_eq!(
            code(&evaluate_poll(&r, &"app".into(), t0)),
            Some(OAuthErrorCode::AccessDenied)
        );
        r.status = CibaStatus::Cancelled;
        assert_eq!(
            code(&evaluate_poll(&r, &"app".into(), t0)),
            Some(OAuthErrorCode::AccessDenied)
        );
        r.status = CibaStatus::Redeemed;
        assert_eq!(evaluate_poll(&r, &"app".into(), t0), PollVerdict::Replay);
        assert_eq!(
            evaluate_poll(&r, &"app".into(), t0.plus_secs(500)),
            PollVerdict::Replay
        );
    }

    #[test]
    fn concurrent_duplicate_of_a_redemption_is_not_a_replay() {
        let t0 = Timestamp(1_000_000);
        let mut r = pending(t0);
        r.status = CibaStatus::Redeemed;
        r.redeemed_at = Some(t0.plus_millis(40));
        // Arrived before (or in the very millisecond of) the redemption: in flight with it.
        for at in [t0, t0.plus_millis(40)] {
            let v = evaluate_poll(&r, &"app".into(), at);
            assert_eq!(code(&v), Some(OAuthErrorCode::InvalidGrant));
            assert!(matches!(v, PollVerdict::Refuse { update: None, .. }));
        }
        // Arrived after it: a replay, which revokes.
        assert_eq!(
            evaluate_poll(&r, &"app".into(), t0.plus_millis(41)),
            PollVerdict::Replay
        );
        // Another client's poll is never a replay of the owner's redemption.
        assert_eq!(
            code(&evaluate_poll(&r, &"other".into(), t0.plus_secs(5))),
            Some(OAuthErrorCode::InvalidGrant)
        );
    }

    #[test]
    fn simulated_approvals_redeem_only_in_sandbox() {
        let decision = |channel| Decision {
            outcome: crate::model::DecisionOutcome::Approve,
            channel,
            device_id: None,
            amr: vec!["sim".into()],
            evidence: None,
            decided_at: Timestamp(0),
        };
        for ch in [DecisionChannel::Sandbox, DecisionChannel::Auto] {
            assert_eq!(
                check_redeemable(&decision(ch), EnvironmentType::Sandbox),
                Ok(())
            );
            let e = check_redeemable(&decision(ch), EnvironmentType::Production).unwrap_err();
            assert_eq!(e.code, OAuthErrorCode::InvalidGrant);
            assert!(e.detail.contains("simulated"), "{}", e.detail);
        }
        for ch in [
            DecisionChannel::Device,
            DecisionChannel::Web,
            DecisionChannel::Admin,
        ] {
            assert_eq!(
                check_redeemable(&decision(ch), EnvironmentType::Production),
                Ok(())
            );
        }
    }

    #[test]
    fn simulated_refresh_tokens_refresh_only_in_sandbox() {
        let sim = vec!["sim".to_owned()];
        let hwk = vec!["mfa".to_owned(), "hwk".to_owned()];
        assert_eq!(check_refreshable(&sim, EnvironmentType::Sandbox), Ok(()));
        assert_eq!(
            check_refreshable(&sim, EnvironmentType::Production)
                .unwrap_err()
                .code,
            OAuthErrorCode::InvalidGrant
        );
        assert_eq!(check_refreshable(&hwk, EnvironmentType::Production), Ok(()));
    }

    #[test]
    fn abuse_guard_and_retry_after() {
        let now = Timestamp(1_000_000);
        let sandbox = AbuseLimits::defaults_for(EnvironmentType::Sandbox);
        assert_eq!(abuse_guard(&sandbox, now), None);
        let prod = AbuseLimits::defaults_for(EnvironmentType::Production);
        let g = abuse_guard(&prod, now).unwrap();
        assert_eq!(g.max_pending_per_user, Some(5));
        assert_eq!(g.max_per_window, Some(600));
        assert_eq!(g.window_start, now.plus_secs(-60));
        let only_rate = AbuseLimits {
            max_pending_requests_per_user: None,
            authorization_requests_per_minute: Some(3),
        };
        assert_eq!(
            abuse_guard(&only_rate, now).unwrap().max_pending_per_user,
            None
        );

        let (e, secs) = limited(AbuseLimit::PendingPerUser, now.plus_millis(119_001), now);
        assert_eq!(e.code, OAuthErrorCode::TemporarilyUnavailable);
        assert_eq!(e.code.as_str(), "temporarily_unavailable");
        assert!(!e.code.is_validation());
        assert_eq!(secs, 120);
        // Whole seconds, never 0, even when the slot is (about to be) free.
        assert_eq!(limited(AbuseLimit::RatePerApplication, now, now).1, 1);
        assert_eq!(
            limited(AbuseLimit::RatePerApplication, now.plus_millis(1), now).1,
            1
        );
        assert_eq!(
            limited(AbuseLimit::RatePerApplication, now.plus_secs(60), now).1,
            60
        );
    }

    #[test]
    fn decisions_only_on_pending_unexpired() {
        let t0 = Timestamp(1_000_000);
        let mut r = pending(t0);
        assert_eq!(check_decidable(&r, t0), Ok(()));
        assert_eq!(
            check_decidable(&r, t0.plus_secs(120)),
            Err(DecideError::Expired)
        );
        r.status = CibaStatus::Approved;
        assert_eq!(check_decidable(&r, t0), Err(DecideError::AlreadyDecided));
    }

    #[test]
    fn acr_levels() {
        let req = Some("urn:assent:acr:hwk urn:assent:acr:pwd");
        assert_eq!(
            satisfied_acr(req, DecisionChannel::Web).as_deref(),
            Some(ACR_PWD)
        );
        assert_eq!(
            satisfied_acr(req, DecisionChannel::Device).as_deref(),
            Some(ACR_HWK)
        );
        assert_eq!(satisfied_acr(req, DecisionChannel::Email), None);
        assert_eq!(
            satisfied_acr(Some("urn:assent:acr:ext"), DecisionChannel::Email).as_deref(),
            Some(ACR_EXT)
        );
        assert_eq!(
            satisfied_acr(Some("custom"), DecisionChannel::Sandbox).as_deref(),
            Some("custom")
        );
        assert_eq!(satisfied_acr(None, DecisionChannel::Device), None);
    }

    /// A pending request made at `t0` by user `user` of application `app`.
    fn fresh_request(t0: Timestamp) -> CibaRequest {
        CibaRequest {
            auth_req_id: "req-1".into(),
            environment_id: "env".into(),
            application_id: "app".into(),
            user_id: "user".into(),
            scope: "openid".into(),
            binding_message: None,
            acr_values: None,
            authorization_details: None,
            delivery_mode: DeliveryMode::Poll,
            client_notification_token: None,
            created_at: t0,
            expires_at: t0.plus_secs(120),
            interval_seconds: 2,
            last_polled_at: None,
            status: CibaStatus::Pending,
            decision: None,
            redeemed_at: None,
        }
    }

    /// SANDBOX user `user` answering `answer` after `delay_ms`.
    fn robot(t0: Timestamp, answer: AutoDecision, delay_ms: i64) -> User {
        User {
            id: "user".into(),
            environment_id: "env".into(),
            username: "robot".into(),
            email: None,
            given_name: None,
            family_name: None,
            phone_number: None,
            password_hash: None,
            enabled: true,
            auto_decision: Some(answer),
            auto_decision_delay_ms: Some(delay_ms),
            created_at: t0,
            updated_at: t0,
        }
    }

    #[test]
    fn a_sandbox_user_with_auto_decision_schedules_its_answer_after_its_delay() {
        let t0 = Timestamp(1_800_000_000_000);
        let req = fresh_request(t0);
        let mut user = robot(t0, AutoDecision::Deny, 1500);
        let id = || WorkId("work-1".into());
        assert_eq!(
            auto_decision(EnvironmentType::Sandbox, &user, &req, id()),
            Some(ScheduledWork {
                id: id(),
                environment_id: "env".into(),
                due_at: t0.plus_millis(1500),
                job: Job::AutoDecision {
                    auth_req_id: "req-1".into(),
                    outcome: DecisionOutcome::Deny,
                },
            })
        );
        // Simulated decisions are SANDBOX-only.
        assert_eq!(
            auto_decision(EnvironmentType::Production, &user, &req, id()),
            None
        );
        // No delay: due at once.
        user.auto_decision = Some(AutoDecision::Approve);
        user.auto_decision_delay_ms = None;
        let work = auto_decision(EnvironmentType::Sandbox, &user, &req, id()).unwrap();
        assert_eq!(work.due_at, t0);
        assert_eq!(
            work.job,
            Job::AutoDecision {
                auth_req_id: "req-1".into(),
                outcome: DecisionOutcome::Approve,
            }
        );
        user.auto_decision = None;
        assert_eq!(
            auto_decision(EnvironmentType::Sandbox, &user, &req, id()),
            None
        );
    }

    #[test]
    fn an_automatic_answer_without_delay_is_stored_with_the_request() {
        let t0 = Timestamp(1_800_000_000_000);
        let req = fresh_request(t0);
        let mut user = robot(t0, AutoDecision::Approve, 0);
        let id = || WorkId("work-1".into());
        let inserted = |t: &Transition| match &t.change {
            Change::InsertRequest { request } => request.clone(),
            other => panic!("not an admission: {other:?}"),
        };

        // No delay: decided in the admission, nothing scheduled.
        let t = admit_for(req.clone(), None, EnvironmentType::Sandbox, &user, id());
        assert!(t.schedule.is_empty());
        let stored = inserted(&t);
        assert_eq!(stored.status, CibaStatus::Approved);
        let decision = stored.decision.unwrap();
        assert_eq!(decision.channel, DecisionChannel::Auto);
        assert_eq!(decision.amr, vec!["sim".to_owned()]);
        assert_eq!(decision.decided_at, t0);
        assert_eq!(
            evaluate_poll(&inserted(&t), &"app".into(), t0),
            PollVerdict::Redeem
        );
        // Audited as made and as answered, by the simulation.
        let kinds: Vec<ActivityType> = t.audit.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            vec![ActivityType::RequestCreated, ActivityType::RequestApproved]
        );
        assert_eq!(t.audit[1].actor, Actor::new(ActorType::Simulation, None));
        assert_eq!(t.audit[1].channel, Some(DecisionChannel::Auto));

        user.auto_decision = Some(AutoDecision::Deny);
        user.auto_decision_delay_ms = None;
        let t = admit_for(req.clone(), None, EnvironmentType::Sandbox, &user, id());
        assert_eq!(inserted(&t).status, CibaStatus::Denied);

        // A delay: pending, the answer scheduled in the same transition.
        user.auto_decision_delay_ms = Some(1);
        let t = admit_for(req.clone(), None, EnvironmentType::Sandbox, &user, id());
        assert_eq!(inserted(&t).status, CibaStatus::Pending);
        assert_eq!(t.schedule.len(), 1);
        assert_eq!(t.schedule[0].due_at, t0.plus_millis(1));

        // PRODUCTION, or no automatic answer: a plain pending admission.
        let t = admit_for(req.clone(), None, EnvironmentType::Production, &user, id());
        assert_eq!(inserted(&t).status, CibaStatus::Pending);
        assert!(t.schedule.is_empty());
        user.auto_decision = None;
        let t = admit_for(req, None, EnvironmentType::Sandbox, &user, id());
        let plain = admit(inserted(&t), None);
        assert_eq!(
            (&t.guard, &t.change, &t.schedule),
            (&plain.guard, &plain.change, &plain.schedule)
        );
        let kinds: Vec<ActivityType> = t.audit.iter().map(|e| e.kind).collect();
        assert_eq!(kinds, vec![ActivityType::RequestCreated]);
        assert_eq!(inserted(&t).status, CibaStatus::Pending);
    }
}

#[cfg(test)]
mod transition_tests;
