//! The transitions of a CIBA request with a fixed `now`: every row of the poll table of spec
//! §3.3 through [`evaluate_poll`] and the transition its verdict yields, and the guards of
//! decisions, cancellation, expiry, redemption and replay.
//!
//! The table's last row (the request was recorded in PUSH mode: `unauthorized_client`) is
//! judged by the token endpoint before the verdict, from the mode recorded on the request.

use super::*;
use crate::error::OAuthErrorCode;
use crate::ids::AuthReqId;
use crate::model::{AccessTokenRecord, DeliveryMode, RefreshTokenRecord};
use crate::transition::{Applied, Change, Guard, Misfit, Transition};

/// `t` without its audit entries (their ids are random), and the kinds of those entries.
fn unaudited(t: &Transition) -> (Transition, Vec<ActivityType>) {
    let kinds = t.audit.iter().map(|e| e.kind).collect();
    (
        Transition {
            audit: Vec::new(),
            ..t.clone()
        },
        kinds,
    )
}

const T0: Timestamp = Timestamp(1_800_000_000_000);

fn pending() -> CibaRequest {
    CibaRequest {
        auth_req_id: "req-1".into(),
        environment_id: "env".into(),
        application_id: "app".into(),
        user_id: "user".into(),
        scope: "openid offline_access".into(),
        binding_message: None,
        acr_values: None,
        authorization_details: None,
        delivery_mode: DeliveryMode::Poll,
        client_notification_token: None,
        created_at: T0,
        expires_at: T0.plus_secs(120),
        interval_seconds: 2,
        last_polled_at: None,
        status: CibaStatus::Pending,
        decision: None,
        redeemed_at: None,
    }
}

fn decision(outcome: DecisionOutcome, at: Timestamp) -> Decision {
    Decision {
        outcome,
        channel: DecisionChannel::Sandbox,
        device_id: None,
        amr: vec!["sim".into()],
        evidence: None,
        decided_at: at,
    }
}

/// `req` as the store holds it once `t` (a decision) won.
fn decided(req: &CibaRequest, t: &Transition) -> CibaRequest {
    let Change::Decide { decision, .. } = &t.change else {
        panic!("not a decision: {t:?}")
    };
    CibaRequest {
        status: decided_status(decision.outcome),
        decision: Some(decision.clone()),
        ..req.clone()
    }
}

fn approved() -> CibaRequest {
    let req = pending();
    let t = decide(&req, decision(DecisionOutcome::Approve, T0), T0).unwrap();
    decided(&req, &t)
}

fn tokens(req: &CibaRequest) -> IssuedTokens {
    IssuedTokens {
        access_token: AccessTokenRecord {
            jti: "jti-1".into(),
            environment_id: req.environment_id.clone(),
            application_id: req.application_id.clone(),
            user_id: Some(req.user_id.clone()),
            scope: req.scope.clone(),
            auth_req_id: Some(req.auth_req_id.clone()),
            refresh_family_id: Some("family".into()),
            issued_at: T0,
            expires_at: T0.plus_secs(3600),
            revoked: false,
        },
        refresh_token: Some(RefreshTokenRecord {
            token_hash: "hash".into(),
            family_id: "family".into(),
            environment_id: req.environment_id.clone(),
            application_id: req.application_id.clone(),
            user_id: req.user_id.clone(),
            scope: req.scope.clone(),
            auth_req_id: Some(req.auth_req_id.clone()),
            auth_time: T0,
            acr: None,
            amr: vec!["sim".into()],
            issued_at: T0,
            expires_at: T0.plus_secs(86_400),
            rotated_at: None,
            revoked: false,
        }),
    }
}

/// The error a `Refuse` verdict answers with and the transition it yields (the bookkeeping,
/// if any). Fails on `Redeem` and `Replay`.
fn refused(
    req: &CibaRequest,
    client_id: &str,
    now: Timestamp,
) -> (OAuthErrorCode, Option<Transition>) {
    match evaluate_poll(req, &ApplicationId::from(client_id), now) {
        PollVerdict::Refuse { error, update } => (error.code, update.map(|u| record_poll(req, u))),
        other => panic!("expected a refusal at {now:?}, got {other:?}"),
    }
}

/// Row 1: an unknown id (the endpoint finds no request) or another client's: `invalid_grant`,
/// and the owner's poll state is left alone, so the owner can still redeem it afterwards.
#[test]
fn another_clients_request_is_invalid_grant_and_untouched() {
    for req in [pending(), approved()] {
        let (code, t) = refused(&req, "another-app", T0.plus_secs(5));
        assert_eq!(code, OAuthErrorCode::InvalidGrant);
        assert_eq!(t, None, "no bookkeeping on the owner's request");
    }
    assert_eq!(
        evaluate_poll(&approved(), &"app".into(), T0.plus_secs(5)),
        PollVerdict::Redeem
    );
    assert_eq!(unknown_auth_req_id().code, OAuthErrorCode::InvalidGrant);
}

/// Row 2: pending, polled no sooner than the interval (minus the 0.5 s tolerance) after the
/// previous poll, or polled for the first time: `authorization_pending`, recorded with a
/// compare-and-set on the poll state as read, the interval unchanged.
#[test]
fn pending_poll_in_time_is_recorded_against_the_state_read() {
    let mut req = pending();
    let (code, t) = refused(&req, "app", T0);
    assert_eq!(code, OAuthErrorCode::AuthorizationPending);
    let t = t.expect("a first poll is recorded");
    assert_eq!(
        t,
        Transition::new(
            "env".into(),
            Guard::PolledAsRead {
                last_polled_at: None,
                interval_seconds: 2
            },
            Change::RecordPoll {
                auth_req_id: "req-1".into(),
                update: PollUpdate {
                    expected_last_polled_at: None,
                    expected_interval_seconds: 2,
                    last_polled_at: T0,
                    interval_seconds: 2,
                },
            },
        )
    );
    assert_eq!(t.check(), Ok(()));

    req.last_polled_at = Some(T0);
    for later in [T0.plus_millis(1_500), T0.plus_secs(2), T0.plus_secs(60)] {
        let (code, t) = refused(&req, "app", later);
        assert_eq!(code, OAuthErrorCode::AuthorizationPending, "at {later:?}");
        let t = t.expect("recorded");
        assert_eq!(
            t.guard,
            Guard::PolledAsRead {
                last_polled_at: Some(T0),
                interval_seconds: 2
            }
        );
        let Change::RecordPoll { update, .. } = t.change else {
            panic!("{t:?}")
        };
        assert_eq!((update.last_polled_at, update.interval_seconds), (later, 2));
    }
}

/// Row 3: pending, polled too soon: `slow_down`, recorded with the interval 5 s longer; the
/// longer interval is then the one required.
#[test]
fn pending_poll_too_soon_is_slow_down_and_lengthens_the_interval() {
    let mut req = pending();
    req.last_polled_at = Some(T0);
    let (code, t) = refused(&req, "app", T0.plus_millis(1_499));
    assert_eq!(code, OAuthErrorCode::SlowDown);
    let t = t.expect("a slow_down is recorded");
    assert_eq!(
        t.guard,
        Guard::PolledAsRead {
            last_polled_at: Some(T0),
            interval_seconds: 2
        }
    );
    let Change::RecordPoll { update, .. } = t.change else {
        panic!("{t:?}")
    };
    assert_eq!(update.last_polled_at, T0.plus_millis(1_499));
    assert_eq!(update.interval_seconds, 2 + SLOW_DOWN_INCREMENT_SECS);

    // As stored after that poll: 6.4 s later is too soon for 7 s, 6.5 s is not.
    req.last_polled_at = Some(update.last_polled_at);
    req.interval_seconds = update.interval_seconds;
    let base = update.last_polled_at;
    assert_eq!(
        refused(&req, "app", base.plus_millis(6_499)).0,
        OAuthErrorCode::SlowDown
    );
    assert_eq!(
        refused(&req, "app", base.plus_millis(6_500)).0,
        OAuthErrorCode::AuthorizationPending
    );
}

/// Row 4: denied or cancelled, before expiry: `access_denied` on every poll, nothing recorded.
#[test]
fn denied_or_cancelled_is_access_denied_until_expiry() {
    for outcome in [DecisionOutcome::Deny, DecisionOutcome::Cancel] {
        let req = pending();
        let t = decide(&req, decision(outcome, T0), T0).unwrap();
        let req = decided(&req, &t);
        for at in [T0, T0.plus_secs(1), req.expires_at.plus_millis(-1)] {
            assert_eq!(
                refused(&req, "app", at),
                (OAuthErrorCode::AccessDenied, None)
            );
        }
        assert_eq!(
            refused(&req, "app", req.expires_at).0,
            OAuthErrorCode::ExpiredToken
        );
    }
}

/// Row 5: past expiry and not redeemed, whatever the stored state (including one marked by
/// [`expire`]): `expired_token` for 24 h, then `invalid_grant`; nothing recorded; approving
/// after expiry is refused.
#[test]
fn past_expiry_is_expired_token_for_a_day_then_invalid_grant() {
    let mut states = Vec::new();
    for outcome in [
        DecisionOutcome::Approve,
        DecisionOutcome::Deny,
        DecisionOutcome::Cancel,
    ] {
        let t = decide(&pending(), decision(outcome, T0), T0).unwrap();
        states.push(decided(&pending(), &t));
    }
    states.push(pending());
    states.push(CibaRequest {
        status: CibaStatus::Expired,
        ..pending()
    });
    for req in &states {
        for at in [
            req.expires_at,
            req.expires_at
                .plus_secs(EXPIRED_ANSWERABLE_SECS)
                .plus_millis(-1),
        ] {
            assert_eq!(
                refused(req, "app", at),
                (OAuthErrorCode::ExpiredToken, None),
                "{:?} at {at:?}",
                req.status
            );
        }
        let gone = req.expires_at.plus_secs(EXPIRED_ANSWERABLE_SECS);
        assert_eq!(
            refused(req, "app", gone),
            (OAuthErrorCode::InvalidGrant, None)
        );
    }
    let late = decide(
        &pending(),
        decision(DecisionOutcome::Approve, T0),
        pending().expires_at,
    );
    assert_eq!(late, Err(DecideError::Expired));
}

/// Row 6: approved: redeem, once. The redemption is guarded on APPROVED at its time; a poll
/// that arrived until then gets `invalid_grant` and revokes nothing, a later one is a replay
/// whose transition revokes what was issued.
#[test]
fn approved_is_redeemed_once_and_a_later_poll_is_a_replay() {
    let req = approved();
    let at = T0.plus_secs(3);
    assert_eq!(evaluate_poll(&req, &"app".into(), at), PollVerdict::Redeem);
    let issued = tokens(&req);
    let t = redeem(&req, issued.clone(), at);
    assert_eq!(
        unaudited(&t),
        (
            Transition::new(
                "env".into(),
                Guard::ApprovedAt { at },
                Change::Redeem {
                    auth_req_id: "req-1".into(),
                    at,
                    tokens: issued,
                },
            ),
            vec![ActivityType::TokensIssued]
        )
    );
    assert_eq!(
        t.audit[0].actor,
        Actor::new(ActorType::Client, Some("app".into()))
    );
    assert_eq!(t.check(), Ok(()));
    assert_eq!(t.auth_req_id(), Some(&AuthReqId::from("req-1")));

    // As stored once it won.
    let redeemed = CibaRequest {
        status: CibaStatus::Redeemed,
        redeemed_at: Some(at),
        ..req
    };
    for concurrent in [T0.plus_secs(2), at] {
        assert_eq!(
            refused(&redeemed, "app", concurrent),
            (OAuthErrorCode::InvalidGrant, None)
        );
    }
    for replay_at in [at.plus_millis(1), redeemed.expires_at.plus_secs(1)] {
        assert_eq!(
            evaluate_poll(&redeemed, &"app".into(), replay_at),
            PollVerdict::Replay
        );
    }
    let revoke = revoke_replayed(&redeemed);
    assert_eq!(
        revoke,
        Transition::new(
            "env".into(),
            Guard::Redeemed,
            Change::RevokeRequestTokens {
                auth_req_id: "req-1".into()
            },
        )
    );
    assert_eq!(revoke.check(), Ok(()));
    // Another client presenting it is no replay of the owner's redemption.
    assert_eq!(
        refused(&redeemed, "another-app", at.plus_secs(1)),
        (OAuthErrorCode::InvalidGrant, None)
    );
}

#[test]
fn a_redemption_stored_at_another_time_than_judged_is_malformed() {
    let req = approved();
    let mut t = redeem(&req, tokens(&req), T0.plus_secs(3));
    t.guard = Guard::ApprovedAt {
        at: T0.plus_secs(4),
    };
    assert!(matches!(t.check(), Err(Misfit(_))));
    let mut foreign = tokens(&req);
    foreign.access_token.environment_id = "elsewhere".into();
    assert!(redeem(&req, foreign, T0).check().is_err());
}

#[test]
fn admission_carries_the_abuse_guard() {
    let req = pending();
    let limits = AbuseLimits::defaults_for(crate::model::EnvironmentType::Production);
    let abuse = abuse_guard(&limits, T0);
    let t = admit(req.clone(), abuse);
    assert_eq!(t.guard, Guard::Admit { abuse });
    assert_eq!(
        t.change,
        Change::InsertRequest {
            request: req.clone()
        }
    );
    assert_eq!(t.environment_id, "env");
    assert_eq!(t.check(), Ok(()));
    assert!(t.schedule.is_empty() && t.completes.is_none());
    let unguarded = admit(req, None);
    assert_eq!(unguarded.guard, Guard::Admit { abuse: None });
    // A request of another environment than the transition's is malformed.
    let mut t = unguarded;
    t.environment_id = "elsewhere".into();
    assert!(t.check().is_err());
}

/// Every channel decides through `decide`: on a pending, unexpired request it yields the
/// decision guarded on "still pending at `now`", which is what makes the first decision win.
#[test]
fn decide_and_cancel_are_guarded_on_pending_at_now() {
    let req = pending();
    for outcome in [
        DecisionOutcome::Approve,
        DecisionOutcome::Deny,
        DecisionOutcome::Cancel,
    ] {
        let now = T0.plus_secs(10);
        let d = Decision {
            channel: DecisionChannel::Admin,
            ..decision(outcome, now)
        };
        let t = decide(&req, d.clone(), now).unwrap();
        let kind = match outcome {
            DecisionOutcome::Approve => ActivityType::RequestApproved,
            DecisionOutcome::Deny => ActivityType::RequestDenied,
            DecisionOutcome::Cancel => ActivityType::RequestCancelled,
        };
        assert_eq!(
            unaudited(&t),
            (
                Transition::new(
                    "env".into(),
                    Guard::PendingAt { at: now },
                    Change::Decide {
                        auth_req_id: "req-1".into(),
                        decision: d,
                    },
                ),
                vec![kind]
            )
        );
        assert_eq!(t.audit[0].actor, Actor::admin());
        assert_eq!(t.audit[0].channel, Some(DecisionChannel::Admin));
        assert_eq!(t.audit[0].at, now);
        assert_eq!(t.check(), Ok(()));
    }
    // One millisecond before expiry still counts; at expiry it does not.
    let last = req.expires_at.plus_millis(-1);
    assert!(decide(&req, decision(DecisionOutcome::Approve, last), last).is_ok());
    assert_eq!(
        decide(
            &req,
            decision(DecisionOutcome::Approve, req.expires_at),
            req.expires_at
        ),
        Err(DecideError::Expired)
    );
}

/// First decision wins: once one is stored, every other decision (of any channel, cancel
/// included) is refused; two decisions judged on the same pending state carry the same
/// guard, and the store lets only one of them win.
#[test]
fn decisions_after_the_first_are_refused() {
    let req = pending();
    let first = decide(&req, decision(DecisionOutcome::Approve, T0), T0).unwrap();
    let second = decide(&req, decision(DecisionOutcome::Deny, T0), T0).unwrap();
    assert_eq!(first.guard, second.guard);
    let won = decided(&req, &first);
    for outcome in [
        DecisionOutcome::Approve,
        DecisionOutcome::Deny,
        DecisionOutcome::Cancel,
    ] {
        assert_eq!(
            decide(&won, decision(outcome, T0.plus_secs(1)), T0.plus_secs(1)),
            Err(DecideError::AlreadyDecided)
        );
    }
    let redeemed = CibaRequest {
        status: CibaStatus::Redeemed,
        ..won.clone()
    };
    assert_eq!(
        decide(&redeemed, decision(DecisionOutcome::Cancel, T0), T0),
        Err(DecideError::AlreadyDecided)
    );
    // A decided request past its expiry reports the expiry, as the poll does.
    assert_eq!(
        decide(
            &won,
            decision(DecisionOutcome::Cancel, won.expires_at),
            won.expires_at
        ),
        Err(DecideError::Expired)
    );
}

#[test]
fn expire_only_a_pending_request_past_its_expiry() {
    let req = pending();
    let t = expire(&req, req.expires_at).unwrap();
    assert_eq!(
        unaudited(&t),
        (
            Transition::new(
                "env".into(),
                Guard::ExpiredPendingAt { at: req.expires_at },
                Change::Expire {
                    auth_req_id: "req-1".into()
                },
            ),
            vec![ActivityType::RequestExpired]
        )
    );
    assert_eq!(t.audit[0].actor, Actor::system());
    assert_eq!(t.check(), Ok(()));
    assert!(expire(&req, req.expires_at.plus_secs(3600)).is_ok());
    assert_eq!(
        expire(&req, req.expires_at.plus_millis(-1)),
        Err(ExpireError::NotExpired)
    );
    for status in [
        CibaStatus::Approved,
        CibaStatus::Denied,
        CibaStatus::Cancelled,
        CibaStatus::Redeemed,
        CibaStatus::Expired,
    ] {
        let req = CibaRequest {
            status,
            ..pending()
        };
        assert_eq!(
            expire(&req, req.expires_at),
            Err(ExpireError::NotPending),
            "{status:?}"
        );
    }
}

#[test]
fn a_guard_of_another_change_is_malformed() {
    let req = pending();
    let mut t = decide(&req, decision(DecisionOutcome::Approve, T0), T0).unwrap();
    t.guard = Guard::Always;
    assert!(t.check().is_err());
    let mut t = record_poll(
        &req,
        PollUpdate {
            expected_last_polled_at: None,
            expected_interval_seconds: 2,
            last_polled_at: T0,
            interval_seconds: 2,
        },
    );
    t.guard = Guard::PolledAsRead {
        last_polled_at: Some(T0),
        interval_seconds: 2,
    };
    assert!(
        t.check().is_err(),
        "the guard must be the update's expectation"
    );
    assert_eq!(
        Transition::new("env".into(), Guard::PendingAt { at: T0 }, Change::Nothing).check(),
        Err(Misfit("the guard does not fit the change"))
    );
    assert!(Applied::Won.won() && !Applied::Lost.won());
}
