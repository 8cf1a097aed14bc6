//! What the token endpoint's grants give (Assent spec §3.3, §3.5): whom tokens are issued to,
//! with which scopes and authentication, and whether a refresh token comes with them. The
//! server loads the state and signs; these functions decide.

use crate::ciba::{check_redeemable, satisfied_acr, unknown_auth_req_id};
use crate::error::{OAuthError, OAuthErrorCode};
use crate::ids::AuthReqId;
use crate::model::{CibaRequest, EnvironmentType, RefreshTokenRecord, User};
use crate::time::Timestamp;

/// The scope that asks for (and continues) a refresh family.
pub const OFFLINE_ACCESS: &str = "offline_access";

/// What a user approved, carried into every token of the grant (and of its refreshes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authentication {
    pub auth_time: Timestamp,
    pub acr: Option<String>,
    pub amr: Vec<String>,
    pub auth_req_id: Option<AuthReqId>,
}

impl Authentication {
    /// The authentication a refresh token carries on from the grant that started its family.
    pub fn of_refresh_token(token: &RefreshTokenRecord) -> Self {
        Authentication {
            auth_time: token.auth_time,
            acr: token.acr.clone(),
            amr: token.amr.clone(),
            auth_req_id: token.auth_req_id.clone(),
        }
    }
}

/// Tokens to mint: for `user`, with `scopes` (as asked; `offline_access` is granted only with
/// a refresh token), carrying `authentication`; with a refresh token when `issue_refresh`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub user: User,
    pub scopes: Vec<String>,
    pub authentication: Authentication,
    pub issue_refresh: bool,
}

/// The grant of an approved CIBA request whose poll is to redeem it (`PollVerdict::Redeem`).
/// `user` is the request's user as it is now, `env_type` the environment's type now, and
/// `refresh_grant_enabled` whether the application may use refresh tokens.
///
/// A user deleted or disabled since approving gets no tokens, and neither does a request
/// without a recorded decision: both are answered as an unknown `auth_req_id`. An approval by
/// simulation yields nothing once the environment is PRODUCTION (§6.5, `check_redeemable`).
/// The `acr` is the first requested value the decision satisfies (§3.2); a refresh token comes
/// when `offline_access` was asked for and the application has the refresh-token grant.
pub fn ciba_redemption(
    req: &CibaRequest,
    user: Option<User>,
    env_type: EnvironmentType,
    refresh_grant_enabled: bool,
) -> Result<Grant, OAuthError> {
    let Some(user) = user.filter(|u| u.enabled) else {
        return Err(unknown_auth_req_id());
    };
    let Some(decision) = &req.decision else {
        return Err(unknown_auth_req_id());
    };
    check_redeemable(decision, env_type)?;
    Ok(Grant {
        user,
        scopes: req.scopes().map(str::to_owned).collect(),
        authentication: Authentication {
            auth_time: decision.decided_at,
            acr: satisfied_acr(req.acr_values.as_deref(), decision.channel),
            amr: decision.amr.clone(),
            auth_req_id: Some(req.auth_req_id.clone()),
        },
        issue_refresh: req.has_scope(OFFLINE_ACCESS) && refresh_grant_enabled,
    })
}

/// The scopes of a refresh (RFC 6749 §6): the `granted` scope (space-separated, as recorded on
/// the refresh token) when none is `requested`; otherwise the requested values, which must
/// all have been granted (else `invalid_scope`), plus `offline_access`: the client is
/// continuing the refresh family. The requested values keep their order and repetitions.
pub fn refresh_scopes(
    granted: &str,
    requested: Option<&[String]>,
) -> Result<Vec<String>, OAuthError> {
    let granted: Vec<String> = granted
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let Some(requested) = requested else {
        return Ok(granted);
    };
    if requested.iter().any(|s| !granted.contains(s)) {
        return Err(OAuthError::new(
            OAuthErrorCode::InvalidScope,
            "The requested scope exceeds the scope originally granted.",
        ));
    }
    let mut scopes = requested.to_vec();
    if !scopes.iter().any(|s| s == OFFLINE_ACCESS) {
        scopes.push(OFFLINE_ACCESS.into());
    }
    Ok(scopes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CibaStatus, Decision, DecisionChannel, DecisionOutcome, DeliveryMode};

    fn user(enabled: bool) -> User {
        User {
            id: "u1".into(),
            environment_id: "e".into(),
            username: "alice".into(),
            email: None,
            given_name: None,
            family_name: None,
            phone_number: None,
            password_hash: None,
            enabled,
            auto_decision: None,
            auto_decision_delay_ms: None,
            created_at: Timestamp(0),
            updated_at: Timestamp(0),
        }
    }

    fn approved(scope: &str, acr_values: Option<&str>, channel: DecisionChannel) -> CibaRequest {
        let t0 = Timestamp(1_000_000);
        CibaRequest {
            auth_req_id: "r1".into(),
            environment_id: "e".into(),
            application_id: "app".into(),
            user_id: "u1".into(),
            scope: scope.into(),
            binding_message: None,
            acr_values: acr_values.map(str::to_owned),
            authorization_details: None,
            delivery_mode: DeliveryMode::Poll,
            client_notification_token: None,
            created_at: t0,
            expires_at: t0.plus_secs(120),
            interval_seconds: 2,
            last_polled_at: None,
            status: CibaStatus::Approved,
            decision: Some(Decision {
                outcome: DecisionOutcome::Approve,
                channel,
                device_id: None,
                amr: vec!["mfa".into(), "hwk".into()],
                evidence: None,
                decided_at: t0.plus_secs(7),
            }),
            redeemed_at: None,
        }
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn an_approved_request_grants_its_scopes_and_the_decisions_authentication() {
        let req = approved(
            "openid profile offline_access",
            Some("urn:assent:acr:hwk urn:assent:acr:pwd"),
            DecisionChannel::Device,
        );
        let grant =
            ciba_redemption(&req, Some(user(true)), EnvironmentType::Production, true).unwrap();
        assert_eq!(grant.user.id, "u1");
        assert_eq!(
            grant.scopes,
            strings(&["openid", "profile", "offline_access"])
        );
        assert_eq!(
            grant.authentication,
            Authentication {
                auth_time: Timestamp(1_007_000),
                acr: Some("urn:assent:acr:hwk".into()),
                amr: strings(&["mfa", "hwk"]),
                auth_req_id: Some("r1".into()),
            }
        );
        assert!(grant.issue_refresh);
    }

    #[test]
    fn a_refresh_token_needs_offline_access_and_the_refresh_grant() {
        let with = approved("openid offline_access", None, DecisionChannel::Web);
        let without = approved("openid", None, DecisionChannel::Web);
        let refresh = |req: &CibaRequest, enabled| {
            ciba_redemption(req, Some(user(true)), EnvironmentType::Sandbox, enabled)
                .unwrap()
                .issue_refresh
        };
        assert!(refresh(&with, true));
        assert!(!refresh(&with, false));
        assert!(!refresh(&without, true));
        // No acr_values sent: no acr.
        let grant =
            ciba_redemption(&with, Some(user(true)), EnvironmentType::Sandbox, true).unwrap();
        assert_eq!(grant.authentication.acr, None);
    }

    #[test]
    fn a_missing_or_disabled_user_or_a_missing_decision_is_an_unknown_auth_req_id() {
        let req = approved("openid", None, DecisionChannel::Device);
        let unknown = unknown_auth_req_id();
        for user in [None, Some(user(false))] {
            assert_eq!(
                ciba_redemption(&req, user, EnvironmentType::Sandbox, true),
                Err(unknown.clone())
            );
        }
        let mut undecided = req;
        undecided.decision = None;
        assert_eq!(
            ciba_redemption(&undecided, Some(user(true)), EnvironmentType::Sandbox, true),
            Err(unknown)
        );
    }

    #[test]
    fn a_simulated_approval_redeems_only_in_sandbox() {
        for channel in [DecisionChannel::Sandbox, DecisionChannel::Auto] {
            let req = approved("openid", Some("custom"), channel);
            let grant =
                ciba_redemption(&req, Some(user(true)), EnvironmentType::Sandbox, true).unwrap();
            // A simulated decision satisfies any requested value.
            assert_eq!(grant.authentication.acr.as_deref(), Some("custom"));
            let e = ciba_redemption(&req, Some(user(true)), EnvironmentType::Production, true)
                .unwrap_err();
            assert_eq!(e.code, OAuthErrorCode::InvalidGrant);
            assert!(e.detail.contains("simulated"), "{}", e.detail);
        }
    }

    #[test]
    fn a_refresh_keeps_or_narrows_the_granted_scope() {
        let granted = "openid profile email offline_access";
        assert_eq!(
            refresh_scopes(granted, None).unwrap(),
            strings(&["openid", "profile", "email", "offline_access"])
        );
        // Narrowed: offline_access is kept, the family continues.
        assert_eq!(
            refresh_scopes(granted, Some(&strings(&["openid", "email"]))).unwrap(),
            strings(&["openid", "email", "offline_access"])
        );
        assert_eq!(
            refresh_scopes(granted, Some(&strings(&["offline_access", "openid"]))).unwrap(),
            strings(&["offline_access", "openid"])
        );
        // A scope parameter of only spaces asks for nothing but the family.
        assert_eq!(
            refresh_scopes(granted, Some(&[])).unwrap(),
            strings(&["offline_access"])
        );
        let e = refresh_scopes(granted, Some(&strings(&["openid", "phone"]))).unwrap_err();
        assert_eq!(e.code, OAuthErrorCode::InvalidScope);
        assert_eq!(
            e.detail,
            "The requested scope exceeds the scope originally granted."
        );
    }

    #[test]
    fn a_refresh_carries_the_original_authentication() {
        let token = RefreshTokenRecord {
            token_hash: "h".into(),
            family_id: "f".into(),
            environment_id: "e".into(),
            application_id: "app".into(),
            user_id: "u1".into(),
            scope: "openid offline_access".into(),
            auth_req_id: Some("r1".into()),
            auth_time: Timestamp(5_000),
            acr: Some("urn:assent:acr:pwd".into()),
            amr: strings(&["pwd"]),
            issued_at: Timestamp(6_000),
            expires_at: Timestamp(9_000),
            rotated_at: None,
            revoked: false,
        };
        assert_eq!(
            Authentication::of_refresh_token(&token),
            Authentication {
                auth_time: Timestamp(5_000),
                acr: Some("urn:assent:acr:pwd".into()),
                amr: strings(&["pwd"]),
                auth_req_id: Some("r1".into()),
            }
        );
    }
}
