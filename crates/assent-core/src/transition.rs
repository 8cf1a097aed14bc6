//! State changes as values. A core function takes the current state, the input, verified
//! evidence and `now`, and returns a [`Transition`]: the [`Guard`] it depends on, the
//! [`Change`] it makes, and what it causes (scheduled work, audit entries, outbox messages).
//! The store persists a transition in one way only, `Transitions::apply`, atomically, and
//! reports whether the guard still held: [`Applied::Won`] or [`Applied::Lost`] (nothing
//! written). A caller that lost re-reads and judges again.
//!
//! Because a transition is data, the store can batch many into one commit (group commit), a
//! cache can see what changed, and the audit entries and outbox messages a later feature adds
//! are written in the same transaction as the change that causes them.

use serde::{Deserialize, Serialize};

use crate::ciba::{AbuseGuard, AbuseLimit, PollUpdate};
use crate::ids::{AuthReqId, EnvironmentId};
pub use crate::model::AuditEntry;
use crate::model::{
    AccessTokenRecord, CibaRequest, Decision, DecisionOutcome, IssuedTokens, RefreshTokenRecord,
};
use crate::time::Timestamp;

/// One atomic state change and everything it causes.
#[derive(Clone, Debug, PartialEq)]
pub struct Transition {
    /// Every row the transition touches belongs to this environment.
    pub environment_id: EnvironmentId,
    /// What must still hold when the store applies the change (checked in the same
    /// transaction as the write).
    pub guard: Guard,
    pub change: Change,
    /// Work to run later, stored with the change (durable, once across nodes).
    pub schedule: Vec<ScheduledWork>,
    /// The scheduled work this transition finishes: deleted with the change. If it is gone
    /// already (another worker finished it), the transition is [`Applied::Lost`].
    pub completes: Option<WorkId>,
    /// Audit entries the change causes (§6.4), written in the same transaction.
    pub audit: Vec<AuditEntry>,
    /// Messages to send because of the change (the outbox of issue #10 adds the variants).
    pub outbox: Vec<OutboxMessage>,
}

impl Transition {
    /// A transition with nothing but its guard and change.
    pub fn new(environment_id: EnvironmentId, guard: Guard, change: Change) -> Self {
        Transition {
            environment_id,
            guard,
            change,
            schedule: Vec::new(),
            completes: None,
            audit: Vec::new(),
            outbox: Vec::new(),
        }
    }

    /// Finishes scheduled work without another change (the work found nothing left to do:
    /// the request was decided meanwhile, the environment left SANDBOX, …).
    pub fn complete_only(environment_id: EnvironmentId, work: WorkId) -> Self {
        Transition {
            completes: Some(work),
            ..Transition::new(environment_id, Guard::Always, Change::Nothing)
        }
    }

    /// Adds the audit entry `entry` (builder style).
    pub fn audited(mut self, entry: AuditEntry) -> Self {
        self.audit.push(entry);
        self
    }

    /// Sets the correlation id of the HTTP request that caused the transition on its audit
    /// entries that have none.
    pub fn correlated(mut self, correlation_id: &str) -> Self {
        for e in &mut self.audit {
            if e.correlation_id.is_none() {
                e.correlation_id = Some(correlation_id.to_owned());
            }
        }
        self
    }

    /// Revokes the access token `jti` (RFC 7009), whatever its state.
    pub fn revoke_access_token(environment_id: EnvironmentId, jti: impl Into<String>) -> Self {
        Transition::new(
            environment_id,
            Guard::Always,
            Change::RevokeAccessToken { jti: jti.into() },
        )
    }

    /// The CIBA request the transition is about, if any.
    pub fn auth_req_id(&self) -> Option<&AuthReqId> {
        match &self.change {
            Change::InsertRequest { request } => Some(&request.auth_req_id),
            Change::RecordPoll { auth_req_id, .. }
            | Change::Decide { auth_req_id, .. }
            | Change::Expire { auth_req_id }
            | Change::Redeem { auth_req_id, .. }
            | Change::RevokeRequestTokens { auth_req_id } => Some(auth_req_id),
            Change::RotateRefresh { .. }
            | Change::RevokeRefreshFamily { .. }
            | Change::RevokeAccessToken { .. }
            | Change::Nothing => None,
        }
    }

    /// Checks that the transition is well formed: its guard is one its change accepts, the
    /// values the guard and the change both carry agree, and every row it writes belongs to
    /// [`Transition::environment_id`]. A store refuses a transition that fails this (as
    /// `StoreError::Invalid`) before writing anything: it is a caller's bug, not a lost race.
    pub fn check(&self) -> Result<(), Misfit> {
        let env = &self.environment_id;
        let same_env = |other: &EnvironmentId, what: &'static str| {
            if other == env {
                Ok(())
            } else {
                Err(Misfit(what))
            }
        };
        for work in &self.schedule {
            same_env(
                &work.environment_id,
                "scheduled work of another environment",
            )?;
        }
        for entry in &self.audit {
            same_env(
                &entry.environment_id,
                "an audit entry of another environment",
            )?;
        }
        match (&self.guard, &self.change) {
            (Guard::Admit { .. }, Change::InsertRequest { request }) => {
                same_env(&request.environment_id, "a request of another environment")
            }
            (
                Guard::PolledAsRead {
                    last_polled_at,
                    interval_seconds,
                },
                Change::RecordPoll { update, .. },
            ) => {
                if update.expected_last_polled_at == *last_polled_at
                    && update.expected_interval_seconds == *interval_seconds
                {
                    Ok(())
                } else {
                    Err(Misfit(
                        "the poll guard differs from the update's expectation",
                    ))
                }
            }
            (Guard::PendingAt { .. }, Change::Decide { .. })
            | (Guard::ExpiredPendingAt { .. }, Change::Expire { .. })
            | (Guard::Redeemed, Change::RevokeRequestTokens { .. })
            | (
                Guard::Always,
                Change::RevokeRefreshFamily { .. }
                | Change::RevokeAccessToken { .. }
                | Change::Nothing,
            ) => Ok(()),
            (
                Guard::ApprovedAt { at },
                Change::Redeem {
                    at: redeemed_at,
                    tokens,
                    ..
                },
            ) => {
                if at != redeemed_at {
                    return Err(Misfit(
                        "a redemption judged at one time and stored at another",
                    ));
                }
                same_env(
                    &tokens.access_token.environment_id,
                    "a token of another environment",
                )?;
                match &tokens.refresh_token {
                    Some(r) => same_env(&r.environment_id, "a token of another environment"),
                    None => Ok(()),
                }
            }
            (
                Guard::RefreshAsRead { rotated_at, at },
                Change::RotateRefresh {
                    rotated_at: stored,
                    new_token,
                    new_access,
                    ..
                },
            ) => {
                // The first rotation time is kept: the grace does not slide.
                if rotated_at.unwrap_or(*at) != *stored {
                    return Err(Misfit("a rotation that moves the first rotation time"));
                }
                same_env(&new_token.environment_id, "a token of another environment")?;
                same_env(&new_access.environment_id, "a token of another environment")?;
                if new_access.refresh_family_id.as_deref() != Some(new_token.family_id.as_str()) {
                    return Err(Misfit(
                        "an access token outside the new refresh token's family",
                    ));
                }
                Ok(())
            }
            _ => Err(Misfit("the guard does not fit the change")),
        }
    }
}

/// Why a [`Transition`] is malformed ([`Transition::check`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed transition: {0}")]
pub struct Misfit(pub &'static str);

/// What must hold, at apply time, for the change to be written. Each [`Change`] documents the
/// guards it accepts; the store refuses any other pairing as `StoreError::Invalid`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Guard {
    /// Nothing: the change is right whatever happened meanwhile (revoking, finishing work).
    Always,
    /// A new request: its `auth_req_id` is unused and, when `abuse` is set, the limits it
    /// carries are not reached (counted in the same transaction as the insert).
    Admit { abuse: Option<AbuseGuard> },
    /// The request is still PENDING with the poll state as read (`last_polled_at`,
    /// `interval_seconds`): a compare-and-set, so two polls cannot both judge one previous poll.
    PolledAsRead {
        last_polled_at: Option<Timestamp>,
        interval_seconds: i64,
    },
    /// The request is still PENDING and `at < expires_at`.
    PendingAt { at: Timestamp },
    /// The request is still PENDING and `at >= expires_at` (it expired undecided).
    ExpiredPendingAt { at: Timestamp },
    /// The request is APPROVED and `at < expires_at`.
    ApprovedAt { at: Timestamp },
    /// The request is REDEEMED.
    Redeemed,
    /// The presented refresh token is as read: same `rotated_at`, not revoked, `at <
    /// expires_at`.
    RefreshAsRead {
        rotated_at: Option<Timestamp>,
        at: Timestamp,
    },
}

/// The write itself.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// Store a new request (durable on return). Guard: [`Guard::Admit`].
    InsertRequest { request: CibaRequest },
    /// Record a poll. Guard: [`Guard::PolledAsRead`] (with the update's expected values).
    /// May be committed without an fsync when it causes nothing else (docs/store.md).
    RecordPoll {
        auth_req_id: AuthReqId,
        update: PollUpdate,
    },
    /// Store a decision and its status (APPROVED, DENIED, CANCELLED). Guard:
    /// [`Guard::PendingAt`].
    Decide {
        auth_req_id: AuthReqId,
        decision: Decision,
    },
    /// Mark that the request expired undecided. The status stays derived from time (a reader
    /// sees EXPIRED either way); what the transition carries (a notification, an audit entry)
    /// is written once. Guard: [`Guard::ExpiredPendingAt`].
    Expire { auth_req_id: AuthReqId },
    /// Mark the request REDEEMED at `at` and store the tokens. Guard: [`Guard::ApprovedAt`].
    Redeem {
        auth_req_id: AuthReqId,
        at: Timestamp,
        tokens: IssuedTokens,
    },
    /// Revoke every token issued from the request (a replayed `auth_req_id`). Guard:
    /// [`Guard::Redeemed`].
    RevokeRequestTokens { auth_req_id: AuthReqId },
    /// Rotate a refresh token: set its `rotated_at` (kept when already set: the grace does not
    /// slide) and store the new refresh and access tokens, in its family. Guard:
    /// [`Guard::RefreshAsRead`].
    RotateRefresh {
        token_hash: String,
        rotated_at: Timestamp,
        new_token: RefreshTokenRecord,
        new_access: AccessTokenRecord,
    },
    /// Revoke a refresh family (its refresh and access tokens). Guard: [`Guard::Always`].
    RevokeRefreshFamily { family_id: String },
    /// Revoke one access token (RFC 7009). Guard: [`Guard::Always`].
    RevokeAccessToken { jti: String },
    /// No change of its own (a transition that only finishes scheduled work). Guard:
    /// [`Guard::Always`].
    Nothing,
}

/// What the store reports for a transition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The guard held: everything was written, durable on return.
    Won,
    /// The guard no longer held (or the completed work was already finished): nothing was
    /// written. Re-read and judge again.
    Lost,
    /// [`Guard::Admit`] only: an abuse limit is reached; nothing was written. A slot frees up
    /// at `free_at`.
    Limited {
        limit: AbuseLimit,
        free_at: Timestamp,
    },
}

impl Applied {
    pub fn won(self) -> bool {
        self == Applied::Won
    }
}

/// Identifies one piece of scheduled work.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WorkId(pub String);

impl WorkId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Work to run at or after `due_at`, by exactly one worker of any node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduledWork {
    pub id: WorkId,
    pub environment_id: EnvironmentId,
    pub due_at: Timestamp,
    pub job: Job,
}

/// What scheduled work does. Stored as its `kind` plus a JSON payload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Job {
    /// A SANDBOX user's automatic answer (§6.5), dropped if the environment is no longer
    /// SANDBOX or the request was decided meanwhile.
    AutoDecision {
        auth_req_id: AuthReqId,
        outcome: DecisionOutcome,
    },
}

impl Job {
    /// The `kind` column.
    pub fn kind(&self) -> &'static str {
        match self {
            Job::AutoDecision { .. } => "AUTO_DECISION",
        }
    }
}

/// An outbound message (ping, push, webhook, email). None exist yet: the outbox (issue #10)
/// adds them, and every store's `apply` must then write them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutboxMessage {}
