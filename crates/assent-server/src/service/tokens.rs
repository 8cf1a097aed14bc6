//! The token endpoint (`POST /{envId}/as/token`). One handler per grant type behind
//! [`GrantHandler`] (fosite's shape): each parses its own [`TokenRequest`] from the form and
//! answers it with a [`GrantOutcome`]. Adding a grant is a `TokenRequest` variant and a
//! handler registered in the [`GrantRegistry`] built at start-up, not editing a match.

use std::sync::Arc;

use assent_core::{Application, AuthReqId, GrantType, OAuthError, OAuthErrorCode, Timestamp};

use super::Deps;
use super::grants::{CibaGrant, RefreshTokenGrant};
use crate::error::OAuthResponseError;
use crate::form::OAuthForm;
pub use crate::oauth::tokens::TokenResponse;

/// The parameters of a token request, typed per grant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenRequest {
    /// `urn:openid:params:grant-type:ciba` (CIBA §10.1).
    Ciba { auth_req_id: AuthReqId },
    /// `refresh_token` (RFC 6749 §6). `scope`: the values asked for, when the parameter was
    /// sent (possibly none: a value of only spaces).
    RefreshToken {
        refresh_token: String,
        scope: Option<Vec<String>>,
    },
}

/// What a grant gives for a request that is not refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GrantOutcome {
    /// Tokens, to be sent as the 200 body.
    Issued(TokenResponse),
    /// The CIBA request is still pending, at most until `until` (its expiry). Answered
    /// `authorization_pending` at once; long polling (issue #10) will hold the answer until
    /// the decision or `min(until, hold)` instead.
    Pending { until: Timestamp },
}

/// "Can you handle this token request? Then populate the response."
#[async_trait::async_trait]
pub trait GrantHandler: Send + Sync {
    /// The `grant_type` value this handler answers.
    fn grant_type(&self) -> &'static str;
    /// The application grant that must be enabled (else `unauthorized_client`).
    fn required_grant(&self) -> GrantType;
    /// This grant's parameters; a missing one is `invalid_request`.
    fn parse(&self, form: &OAuthForm) -> Result<TokenRequest, OAuthError>;
    /// Answers a request this handler parsed. Refusals (`invalid_grant`, `slow_down`,
    /// `access_denied`, `expired_token`, …) are errors.
    async fn handle(
        &self,
        state: &Deps,
        app: &Application,
        request: TokenRequest,
        now: Timestamp,
    ) -> Result<GrantOutcome, OAuthResponseError>;
}

/// `unsupported_grant_type`: a grant type the registry has no handler for (or a request
/// handed to a handler that did not parse it).
pub fn unsupported_grant_type() -> OAuthError {
    OAuthError::new(
        OAuthErrorCode::UnsupportedGrantType,
        "The grant_type is not supported.",
    )
}

/// The grant handlers the token endpoint answers, built once when the state is.
#[derive(Clone)]
pub struct GrantRegistry(Arc<[Box<dyn GrantHandler>]>);

impl GrantRegistry {
    pub fn new(handlers: Vec<Box<dyn GrantHandler>>) -> Self {
        GrantRegistry(handlers.into())
    }

    /// CIBA and refresh_token.
    pub fn standard() -> Self {
        Self::new(vec![Box::new(CibaGrant), Box::new(RefreshTokenGrant)])
    }

    /// The handler of a `grant_type` value.
    pub fn find(&self, grant_type: &str) -> Option<&dyn GrantHandler> {
        self.0
            .iter()
            .find(|h| h.grant_type() == grant_type)
            .map(AsRef::as_ref)
    }
}

#[derive(Clone)]
pub struct TokenService {
    state: Deps,
    grants: GrantRegistry,
}

impl TokenService {
    pub fn new(state: Deps, grants: GrantRegistry) -> Self {
        TokenService { state, grants }
    }

    pub fn grants(&self) -> &GrantRegistry {
        &self.grants
    }

    /// Answers the token request `form` of the authenticated `app`: `grant_type` missing →
    /// `invalid_request`, unknown → `unsupported_grant_type`, not allowed for the application
    /// → `unauthorized_client`; then the grant's own parameters and answer.
    pub async fn token(
        &self,
        app: &Application,
        form: &OAuthForm,
        now: Timestamp,
    ) -> Result<GrantOutcome, OAuthResponseError> {
        let grant_type = form
            .get("grant_type")
            .ok_or_else(|| OAuthError::invalid_request("The grant_type parameter is required."))?;
        let handler = self
            .grants
            .find(grant_type)
            .ok_or_else(unsupported_grant_type)?;
        if !app.enabled || !app.has_grant(handler.required_grant()) {
            return Err(OAuthError::unauthorized_client(
                "The application is not allowed to use this grant type.",
            )
            .into());
        }
        let request = handler.parse(form)?;
        handler.handle(&self.state, app, request, now).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use assent_core::{OAuthErrorCode, Timestamp};
    use serde_json::json;

    use super::*;
    use crate::clock::ManualClock;
    use crate::oauth::discovery::CIBA_GRANT;
    use crate::state::{AppState, ServerConfig};

    fn parse(grant_type: &str, pairs: &[(&str, &str)]) -> Result<TokenRequest, OAuthError> {
        GrantRegistry::standard()
            .find(grant_type)
            .unwrap()
            .parse(&OAuthForm::from_pairs(pairs))
    }

    #[test]
    fn the_ciba_grant_reads_its_auth_req_id() {
        assert_eq!(
            parse(
                CIBA_GRANT,
                &[("grant_type", CIBA_GRANT), ("auth_req_id", "abc")]
            ),
            Ok(TokenRequest::Ciba {
                auth_req_id: "abc".into()
            })
        );
        // An empty value is an absent one (RFC 6749 §3.1).
        for pairs in [&[][..], &[("auth_req_id", "")][..]] {
            let e = parse(CIBA_GRANT, pairs).unwrap_err();
            assert_eq!(e.code, OAuthErrorCode::InvalidRequest);
            assert_eq!(e.detail, "The auth_req_id parameter is required.");
        }
    }

    #[test]
    fn the_refresh_grant_reads_its_token_and_the_scope_asked_for() {
        assert_eq!(
            parse("refresh_token", &[("refresh_token", "rt")]),
            Ok(TokenRequest::RefreshToken {
                refresh_token: "rt".into(),
                scope: None
            })
        );
        assert_eq!(
            parse(
                "refresh_token",
                &[("refresh_token", "rt"), ("scope", " openid  email ")]
            ),
            Ok(TokenRequest::RefreshToken {
                refresh_token: "rt".into(),
                scope: Some(vec!["openid".into(), "email".into()])
            })
        );
        // Only spaces: sent, asking for no value (narrowed to the family alone).
        assert_eq!(
            parse("refresh_token", &[("refresh_token", "rt"), ("scope", "  ")]),
            Ok(TokenRequest::RefreshToken {
                refresh_token: "rt".into(),
                scope: Some(Vec::new())
            })
        );
        // Empty: absent.
        assert_eq!(
            parse("refresh_token", &[("refresh_token", "rt"), ("scope", "")]),
            Ok(TokenRequest::RefreshToken {
                refresh_token: "rt".into(),
                scope: None
            })
        );
        let e = parse("refresh_token", &[("scope", "openid")]).unwrap_err();
        assert_eq!(e.code, OAuthErrorCode::InvalidRequest);
        assert_eq!(e.detail, "The refresh_token parameter is required.");
    }

    #[test]
    fn the_standard_registry_answers_ciba_and_refresh_token_only() {
        let grants = GrantRegistry::standard();
        assert_eq!(
            grants.find(CIBA_GRANT).map(|h| h.required_grant()),
            Some(GrantType::Ciba)
        );
        assert_eq!(
            grants.find("refresh_token").map(|h| h.required_grant()),
            Some(GrantType::RefreshToken)
        );
        for other in ["client_credentials", "authorization_code", "password", ""] {
            assert!(grants.find(other).is_none(), "{other}");
        }
    }

    #[test]
    fn a_token_response_leaves_absent_tokens_out() {
        let response = TokenResponse {
            access_token: "at".into(),
            token_type: "Bearer",
            expires_in: 3600,
            scope: "email".into(),
            id_token: None,
            refresh_token: None,
        };
        assert_eq!(
            serde_json::to_value(&response).unwrap(),
            json!({"access_token": "at", "token_type": "Bearer", "expires_in": 3600, "scope": "email"})
        );
        let full = TokenResponse {
            id_token: Some("idt".into()),
            refresh_token: Some("rt".into()),
            ..response
        };
        assert_eq!(
            serde_json::to_value(&full).unwrap(),
            json!({"access_token": "at", "token_type": "Bearer", "expires_in": 3600,
                   "scope": "email", "id_token": "idt", "refresh_token": "rt"})
        );
    }

    #[tokio::test]
    async fn a_handler_refuses_a_request_it_did_not_parse() {
        let store = assent_store::SqliteStore::open_temporary().await.unwrap();
        let state = AppState::new(
            Arc::new(store),
            ServerConfig {
                public_url: "https://assent.test".into(),
                admin_token: "t".into(),
                allow_private_notification_targets: false,
            },
            assent_crypto::SecretBox::new(&[7u8; 32]),
            Arc::new(ManualClock::new(Timestamp(0))),
        );
        let app = Application {
            id: "app".into(),
            environment_id: "env".into(),
            name: "app".into(),
            description: None,
            enabled: true,
            protocol: "OPENID_CONNECT".into(),
            app_type: "WORKER".into(),
            grant_types: vec![GrantType::Ciba, GrantType::RefreshToken],
            token_endpoint_auth_method: assent_core::TokenEndpointAuthMethod::ClientSecretBasic,
            jwks: None,
            jwks_url: None,
            id_token_signing_algorithm: assent_core::SigningAlgorithm::RS256,
            access_token_duration_seconds: 3600,
            refresh_token_duration_seconds: 86400,
            refresh_token_reuse_grace_seconds: 0,
            ciba: assent_core::CibaSettings::default(),
            created_at: Timestamp(0),
            updated_at: Timestamp(0),
        };
        let grants = GrantRegistry::standard();
        let ciba = TokenRequest::Ciba {
            auth_req_id: "a".repeat(43).into(),
        };
        let refresh = TokenRequest::RefreshToken {
            refresh_token: "rt".into(),
            scope: None,
        };
        for (grant_type, foreign) in [(CIBA_GRANT, refresh), ("refresh_token", ciba)] {
            let handler = grants.find(grant_type).unwrap();
            let e = handler
                .handle(&state, &app, foreign, Timestamp(0))
                .await
                .unwrap_err();
            assert_eq!(e.error, unsupported_grant_type(), "{grant_type}");
        }
    }
}
