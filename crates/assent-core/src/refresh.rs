//! Refresh-token rotation (RFC 6749 §6, spec §3.5): every use rotates the token; presenting a
//! rotated token again is reuse and revokes its whole family, except within the
//! application's reuse grace (`refreshTokenReuseGraceSeconds`), where a concurrent or retried
//! refresh gets another rotation in the same family. The grace counts from the first
//! rotation and does not slide.

use crate::model::{AccessTokenRecord, RefreshTokenRecord};
use crate::time::Timestamp;
use crate::transition::{Change, Guard, Transition};

/// What presenting a refresh token leads to.
#[derive(Clone, Debug, PartialEq)]
pub enum Rotation {
    /// The token is current: rotate it (its `rotated_at` becomes `now`) and store its
    /// successors. Guarded on the token being as read: still unrotated, unrevoked, unexpired.
    Rotate(Transition),
    /// The token was rotated less than the grace ago: store other successors in its family,
    /// keeping its first rotation time. Guarded on that rotation time, unrevoked, unexpired.
    WithinGrace(Transition),
    /// The token was rotated longer ago, or revoked: reuse. Revoke the family (unguarded),
    /// then refuse.
    Reused(Transition),
    /// Expired without having been rotated: refuse, change nothing.
    Invalid,
}

/// Judges `presented` (as read) at `now`, with the application's `reuse_grace_secs` (negative
/// counts as 0). The successors `new_token` and `new_access` must belong to the presented
/// token's family. If the transition loses (another refresh or a revocation won meanwhile),
/// read the token again and judge again.
pub fn rotate(
    presented: &RefreshTokenRecord,
    new_token: &RefreshTokenRecord,
    new_access: &AccessTokenRecord,
    now: Timestamp,
    reuse_grace_secs: i64,
) -> Rotation {
    if presented.revoked {
        return Rotation::Reused(revoke_family(presented));
    }
    let live = now < presented.expires_at;
    let rotation = |rotated_at: Option<Timestamp>| {
        Transition::new(
            presented.environment_id.clone(),
            Guard::RefreshAsRead {
                rotated_at,
                at: now,
            },
            Change::RotateRefresh {
                token_hash: presented.token_hash.clone(),
                rotated_at: rotated_at.unwrap_or(now),
                new_token: new_token.clone(),
                new_access: new_access.clone(),
            },
        )
    };
    match presented.rotated_at {
        None if live => Rotation::Rotate(rotation(None)),
        None => Rotation::Invalid,
        Some(first) if live && now.millis() - first.millis() < reuse_grace_secs.max(0) * 1000 => {
            Rotation::WithinGrace(rotation(Some(first)))
        }
        Some(_) => Rotation::Reused(revoke_family(presented)),
    }
}

/// Revokes the family of `token`: every refresh token of it and the access tokens minted with
/// them (reuse, `/revoke`, a user disabled since, a simulated grant outliving SANDBOX).
pub fn revoke_family(token: &RefreshTokenRecord) -> Transition {
    Transition::new(
        token.environment_id.clone(),
        Guard::Always,
        Change::RevokeRefreshFamily {
            family_id: token.family_id.clone(),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Timestamp = Timestamp(1_800_000_000_000);

    fn token(hash: &str) -> RefreshTokenRecord {
        RefreshTokenRecord {
            token_hash: hash.into(),
            family_id: "family".into(),
            environment_id: "env".into(),
            application_id: "app".into(),
            user_id: "user".into(),
            scope: "openid offline_access".into(),
            auth_req_id: Some("req".into()),
            auth_time: T0,
            acr: None,
            amr: vec!["pwd".into()],
            issued_at: T0,
            expires_at: T0.plus_secs(3600),
            rotated_at: None,
            revoked: false,
        }
    }

    fn access() -> AccessTokenRecord {
        AccessTokenRecord {
            jti: "jti".into(),
            environment_id: "env".into(),
            application_id: "app".into(),
            user_id: Some("user".into()),
            scope: "openid offline_access".into(),
            auth_req_id: None,
            refresh_family_id: Some("family".into()),
            issued_at: T0,
            expires_at: T0.plus_secs(3600),
            revoked: false,
        }
    }

    fn judge(presented: &RefreshTokenRecord, now: Timestamp, grace: i64) -> Rotation {
        rotate(presented, &token("next"), &access(), now, grace)
    }

    fn family_revoked() -> Transition {
        Transition::new(
            "env".into(),
            Guard::Always,
            Change::RevokeRefreshFamily {
                family_id: "family".into(),
            },
        )
    }

    #[test]
    fn a_current_token_rotates_now() {
        let now = T0.plus_secs(30);
        let Rotation::Rotate(t) = judge(&token("old"), now, 0) else {
            panic!("expected a rotation")
        };
        assert_eq!(
            t,
            Transition::new(
                "env".into(),
                Guard::RefreshAsRead {
                    rotated_at: None,
                    at: now
                },
                Change::RotateRefresh {
                    token_hash: "old".into(),
                    rotated_at: now,
                    new_token: token("next"),
                    new_access: access(),
                },
            )
        );
        assert_eq!(t.check(), Ok(()));
        // The last millisecond of its life still counts.
        let old = token("old");
        assert!(matches!(
            judge(&old, old.expires_at.plus_millis(-1), 0),
            Rotation::Rotate(_)
        ));
    }

    #[test]
    fn within_the_grace_it_rotates_again_keeping_the_first_rotation_time() {
        let first = T0.plus_secs(30);
        let rotated = RefreshTokenRecord {
            rotated_at: Some(first),
            ..token("old")
        };
        for now in [first, first.plus_millis(9_999)] {
            let Rotation::WithinGrace(t) = judge(&rotated, now, 10) else {
                panic!("expected a rotation within the grace at {now:?}")
            };
            assert_eq!(
                t.guard,
                Guard::RefreshAsRead {
                    rotated_at: Some(first),
                    at: now
                }
            );
            let Change::RotateRefresh { rotated_at, .. } = &t.change else {
                panic!("{t:?}")
            };
            assert_eq!(*rotated_at, first, "the grace does not slide");
            assert_eq!(t.check(), Ok(()));
        }
    }

    #[test]
    fn reuse_after_the_grace_or_without_one_revokes_the_family() {
        let first = T0.plus_secs(30);
        let rotated = RefreshTokenRecord {
            rotated_at: Some(first),
            ..token("old")
        };
        assert_eq!(
            judge(&rotated, first.plus_secs(10), 10),
            Rotation::Reused(family_revoked()),
            "at the end of the grace"
        );
        assert_eq!(
            judge(&rotated, first, 0),
            Rotation::Reused(family_revoked())
        );
        assert_eq!(
            judge(&rotated, first, -5),
            Rotation::Reused(family_revoked()),
            "a negative grace is none"
        );
        // Rotated, then expired: still reuse (whoever holds it had a successor).
        assert_eq!(
            judge(&rotated, rotated.expires_at, 3600),
            Rotation::Reused(family_revoked())
        );
    }

    #[test]
    fn a_revoked_token_is_reuse_and_gets_no_grace() {
        let revoked = RefreshTokenRecord {
            revoked: true,
            ..token("old")
        };
        assert_eq!(judge(&revoked, T0, 60), Rotation::Reused(family_revoked()));
        let revoked_after_rotation = RefreshTokenRecord {
            rotated_at: Some(T0),
            ..revoked
        };
        assert_eq!(
            judge(&revoked_after_rotation, T0.plus_secs(1), 60),
            Rotation::Reused(family_revoked())
        );
    }

    #[test]
    fn an_expired_unrotated_token_is_invalid() {
        let old = token("old");
        assert_eq!(judge(&old, old.expires_at, 0), Rotation::Invalid);
        assert_eq!(
            judge(&old, old.expires_at.plus_secs(1), 60),
            Rotation::Invalid
        );
    }

    #[test]
    fn successors_outside_the_family_are_malformed() {
        let foreign = AccessTokenRecord {
            refresh_family_id: None,
            ..access()
        };
        let Rotation::Rotate(t) = rotate(&token("old"), &token("next"), &foreign, T0, 0) else {
            panic!("expected a rotation")
        };
        assert!(t.check().is_err());
        assert_eq!(revoke_family(&token("old")), family_revoked());
        assert_eq!(family_revoked().check(), Ok(()));
    }
}
