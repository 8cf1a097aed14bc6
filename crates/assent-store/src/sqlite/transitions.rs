//! `Transitions::apply` for SQLite: a transition is handed to the writer (`writer.rs`), which
//! applies it with the others queued at that moment in one `BEGIN IMMEDIATE` transaction, under
//! its own savepoint: the guard is a conditional statement (rows affected / `RETURNING`),
//! followed by the change, the work it completes, the work it schedules and its audit entries
//! (`write_transition`); the wake-ups go out after the commit.
//!
//! The SQL of each aggregate stays in its file (`ciba.rs`, `tokens.rs`, `work.rs`); this one
//! only sequences it.

use assent_core::transition::{Applied, Change, Guard, Transition};
use assent_core::{AuthReqId, Timestamp, UserId};
use rusqlite::Connection;

use super::tokens::{insert_access_token, insert_refresh_token};
use super::{SqliteStore, audit, ciba, tokens, work};
use crate::{StoreError, StoreResult, Transitions, WriteStats};

/// What writing a change did.
pub(super) enum Written {
    /// The guard held and the change is written (not yet committed). `wake` is the request
    /// (and its user) to wake after the commit.
    Done { wake: Option<Wake> },
    /// Nothing was written: the guard no longer held, or an abuse limit was reached.
    Refused(Applied),
}

pub(super) struct Wake {
    pub(super) auth_req_id: AuthReqId,
    pub(super) user_id: UserId,
}

impl Written {
    /// The outcome of a guarded write on a request that `RETURNING user_id` reported: done,
    /// waking the request and that user, or (no row matched) lost.
    fn waking(auth_req_id: &AuthReqId, user_id: Option<UserId>) -> Written {
        match user_id {
            Some(user_id) => Written::Done {
                wake: Some(Wake {
                    auth_req_id: auth_req_id.clone(),
                    user_id,
                }),
            },
            None => Written::Refused(Applied::Lost),
        }
    }

    /// Done without waking anybody, or lost.
    pub(super) fn quiet(won: bool) -> Written {
        if won {
            QUIET
        } else {
            Written::Refused(Applied::Lost)
        }
    }
}

/// Written, waking nobody.
const QUIET: Written = Written::Done { wake: None };

#[async_trait::async_trait]
impl Transitions for SqliteStore {
    async fn apply(&self, t: &Transition) -> StoreResult<Applied> {
        t.check()
            .map_err(|misfit| StoreError::Invalid(misfit.to_string()))?;
        if let Some(won) = self.record_poll(t).await? {
            return Ok(won);
        }
        let applied = self.writer.apply(t.clone()).await?;
        if applied.won()
            && let Change::Decide { auth_req_id, .. }
            | Change::Expire { auth_req_id }
            | Change::Redeem { auth_req_id, .. } = &t.change
        {
            // No longer PENDING: its poll records are of no more use.
            self.polls.forget(&t.environment_id, auth_req_id);
        }
        Ok(applied)
    }

    fn write_stats(&self) -> WriteStats {
        self.writer.stats()
    }
}

/// Writes `t` (checked) in the writer's transaction: the guard and the change, the work it
/// completes, the work it schedules. On `Refused` or an error the writer rolls back what this
/// wrote (to the transition's savepoint).
pub(super) fn write_transition(conn: &Connection, t: &Transition) -> StoreResult<Written> {
    let written = write_change(conn, t)?;
    if matches!(written, Written::Refused(_)) {
        return Ok(written);
    }
    if let Some(id) = &t.completes
        && !work::complete_work(conn, &t.environment_id, id)?
    {
        // Another worker finished it: this transition must not happen twice.
        return Ok(Written::Refused(Applied::Lost));
    }
    if !t.schedule.is_empty() {
        work::insert_work(conn, &t.schedule, judged_at(t))?;
    }
    audit::insert_entries(conn, &t.audit)?;
    // None exist yet: the empty match stops compiling when the outbox (issue #10) adds them,
    // and the loop then writes them here.
    #[expect(clippy::never_loop, reason = "no outbox message exists yet")]
    for message in &t.outbox {
        match *message {}
    }
    Ok(written)
}

impl SqliteStore {
    /// A poll record that causes nothing else is a compare-and-set on the poll records held in
    /// memory (`polls.rs`). One for a request with nothing held, or one that causes more (work,
    /// later audit entries), is applied by the writer like any transition, the request pinned
    /// meanwhile. `None` when `t` is not a poll record.
    async fn record_poll(&self, t: &Transition) -> StoreResult<Option<Applied>> {
        let Change::RecordPoll {
            auth_req_id,
            update,
        } = &t.change
        else {
            return Ok(None);
        };
        let bookkeeping_only = t.schedule.is_empty()
            && t.completes.is_none()
            && t.audit.is_empty()
            && t.outbox.is_empty();
        if bookkeeping_only
            && let Some(won) = self.polls.record(&t.environment_id, auth_req_id, update)
        {
            return Ok(Some(if won { Applied::Won } else { Applied::Lost }));
        }
        let (pin, held) = self.polls.pin(&t.environment_id, auth_req_id);
        if let Some(record) = held {
            self.writer.write_polls(vec![record]).await?;
        }
        let applied = self.writer.apply(t.clone()).await;
        drop(pin);
        applied.map(Some)
    }
}

/// Checks the guard and writes the change in the caller's transaction. `t` has passed
/// `Transition::check`, so each change comes with the guard it accepts.
fn write_change(conn: &Connection, t: &Transition) -> StoreResult<Written> {
    let env_id = &t.environment_id;
    match (&t.guard, &t.change) {
        (Guard::Admit { abuse }, Change::InsertRequest { request }) => {
            if let Some(abuse) = abuse
                && let Some((limit, free_at)) = ciba::abuse_limit_reached(conn, request, abuse)?
            {
                return Ok(Written::Refused(Applied::Limited { limit, free_at }));
            }
            ciba::insert_request(conn, request)?;
            Ok(Written::waking(
                &request.auth_req_id,
                Some(request.user_id.clone()),
            ))
        }
        (
            Guard::PolledAsRead { .. },
            Change::RecordPoll {
                auth_req_id,
                update,
            },
        ) => {
            // The guard is the update's expectation (`Transition::check`).
            let recorded = ciba::record_poll(conn, env_id, auth_req_id, update)?;
            Ok(Written::quiet(recorded))
        }
        (
            Guard::PendingAt { at },
            Change::Decide {
                auth_req_id,
                decision,
            },
        ) => {
            let user = ciba::decide(conn, env_id, auth_req_id, decision, *at)?;
            Ok(Written::waking(auth_req_id, user))
        }
        (Guard::ExpiredPendingAt { at }, Change::Expire { auth_req_id }) => {
            let user = ciba::expire(conn, env_id, auth_req_id, *at)?;
            Ok(Written::waking(auth_req_id, user))
        }
        (
            Guard::ApprovedAt { at },
            Change::Redeem {
                auth_req_id,
                tokens,
                ..
            },
        ) => {
            let Some(user) = ciba::mark_redeemed(conn, env_id, auth_req_id, *at)? else {
                return Ok(Written::Refused(Applied::Lost));
            };
            insert_access_token(conn, &tokens.access_token)?;
            if let Some(refresh) = &tokens.refresh_token {
                insert_refresh_token(conn, refresh)?;
            }
            Ok(Written::waking(auth_req_id, Some(user)))
        }
        (Guard::Redeemed, Change::RevokeRequestTokens { auth_req_id }) => {
            if !ciba::is_redeemed(conn, env_id, auth_req_id)? {
                return Ok(Written::Refused(Applied::Lost));
            }
            tokens::revoke_request_tokens(conn, env_id, auth_req_id)?;
            Ok(QUIET)
        }
        (
            Guard::RefreshAsRead {
                rotated_at: read,
                at,
            },
            Change::RotateRefresh {
                token_hash,
                rotated_at,
                new_token,
                new_access,
            },
        ) => {
            let family = tokens::mark_rotated(conn, env_id, token_hash, *read, *at, *rotated_at)?;
            let Some(family) = family else {
                return Ok(Written::Refused(Applied::Lost));
            };
            if family != new_token.family_id {
                // The caller rolls the rotation back.
                return Err(StoreError::Invalid(
                    "malformed transition: a successor outside the rotated token's family".into(),
                ));
            }
            insert_refresh_token(conn, new_token)?;
            insert_access_token(conn, new_access)?;
            Ok(QUIET)
        }
        (Guard::Always, Change::RevokeRefreshFamily { family_id }) => {
            tokens::revoke_family(conn, env_id, family_id)?;
            Ok(QUIET)
        }
        (Guard::Always, Change::RevokeAccessToken { jti }) => {
            tokens::revoke_access_token(conn, env_id, jti)?;
            Ok(QUIET)
        }
        (Guard::Always, Change::Nothing) => Ok(QUIET),
        _ => Err(StoreError::Invalid(
            "malformed transition: the guard does not fit the change".into(),
        )),
    }
}

/// When `t` was judged, recorded as the `created_at` of the work it schedules: the time its
/// guard is checked at (for an admission, the request's creation). A transition that carries
/// no time (an unguarded revocation, finishing work) dates its work by the earliest due time.
fn judged_at(t: &Transition) -> Timestamp {
    let guard_time = match &t.guard {
        Guard::Admit { abuse: Some(a) } => Some(a.now),
        Guard::PendingAt { at }
        | Guard::ExpiredPendingAt { at }
        | Guard::ApprovedAt { at }
        | Guard::RefreshAsRead { at, .. } => Some(*at),
        Guard::Admit { abuse: None }
        | Guard::PolledAsRead { .. }
        | Guard::Redeemed
        | Guard::Always => None,
    };
    let change_time = match &t.change {
        Change::InsertRequest { request } => Some(request.created_at),
        Change::RecordPoll { update, .. } => Some(update.last_polled_at),
        _ => None,
    };
    guard_time
        .or(change_time)
        .or_else(|| t.schedule.iter().map(|w| w.due_at).min())
        .unwrap_or(Timestamp(0))
}
