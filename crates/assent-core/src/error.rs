//! OAuth 2.0 / CIBA error codes (RFC 6749 §5.2, CIBA Core §11 and §13, RFC 6750 §3.1) and the
//! specific sentence that goes with each occurrence. The server turns them into PingOne-style
//! bodies (§3.4 of the Assent spec).

/// The `error` member. Variant docs quote where the code comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OAuthErrorCode {
    /// RFC 6749 §5.2: missing or invalid parameter, repeated parameter, malformed request.
    InvalidRequest,
    /// RFC 6749 §5.2: client authentication failed. Always 401 with `WWW-Authenticate`.
    InvalidClient,
    /// RFC 6749 §5.2: the grant (here: `auth_req_id`, refresh token) is invalid, expired,
    /// revoked, or was issued to another client.
    InvalidGrant,
    /// RFC 6749 §5.2: the client may not use this grant (or this delivery mode).
    UnauthorizedClient,
    /// RFC 6749 §5.2.
    UnsupportedGrantType,
    /// RFC 6749 §5.2: the requested scope is invalid or unknown.
    InvalidScope,
    /// CIBA §13: the login_hint_token has expired.
    ExpiredLoginHintToken,
    /// CIBA §13: the OP cannot identify the user from the hint.
    UnknownUserId,
    /// CIBA §13: user code required but missing.
    MissingUserCode,
    /// CIBA §13: user code invalid.
    InvalidUserCode,
    /// CIBA §13: binding message invalid or unacceptable.
    InvalidBindingMessage,
    /// CIBA §11: the user has not yet decided.
    AuthorizationPending,
    /// CIBA §11: polling too fast; the interval grows by 5 s.
    SlowDown,
    /// CIBA §11 / §13: the user (or the OP) denied the request.
    AccessDenied,
    /// CIBA §11: the auth_req_id has expired.
    ExpiredToken,
    /// RFC 6750 §3.1: the access token is expired, revoked or malformed.
    InvalidToken,
    /// RFC 6750 §3.1.
    InsufficientScope,
    /// RFC 7009 §2.2.1.
    UnsupportedTokenType,
    /// The server could not complete the request (storage down); never for bad input.
    ServerError,
    /// RFC 6749 §4.1.2.1: the server cannot handle the request now; try again later. Used for
    /// the abuse limits of `/cibaAuthorization` (HTTP 429 with `Retry-After`).
    TemporarilyUnavailable,
}

impl OAuthErrorCode {
    pub fn as_str(self) -> &'static str {
        use OAuthErrorCode::*;
        match self {
            InvalidRequest => "invalid_request",
            InvalidClient => "invalid_client",
            InvalidGrant => "invalid_grant",
            UnauthorizedClient => "unauthorized_client",
            UnsupportedGrantType => "unsupported_grant_type",
            InvalidScope => "invalid_scope",
            ExpiredLoginHintToken => "expired_login_hint_token",
            UnknownUserId => "unknown_user_id",
            MissingUserCode => "missing_user_code",
            InvalidUserCode => "invalid_user_code",
            InvalidBindingMessage => "invalid_binding_message",
            AuthorizationPending => "authorization_pending",
            SlowDown => "slow_down",
            AccessDenied => "access_denied",
            ExpiredToken => "expired_token",
            InvalidToken => "invalid_token",
            InsufficientScope => "insufficient_scope",
            UnsupportedTokenType => "unsupported_token_type",
            ServerError => "server_error",
            TemporarilyUnavailable => "temporarily_unavailable",
        }
    }

    /// PingOne uses a "validation errors" prefix for parameter checks and user resolution and
    /// a "processing" prefix for everything else (Assent spec §3.4).
    pub fn is_validation(self) -> bool {
        use OAuthErrorCode::*;
        matches!(
            self,
            InvalidRequest
                | InvalidScope
                | InvalidBindingMessage
                | ExpiredLoginHintToken
                | UnknownUserId
                | MissingUserCode
                | InvalidUserCode
        )
    }
}

impl std::fmt::Display for OAuthErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error code with its specific sentence (never containing unescaped input or secrets).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {detail}")]
pub struct OAuthError {
    pub code: OAuthErrorCode,
    pub detail: String,
}

impl OAuthError {
    pub fn new(code: OAuthErrorCode, detail: impl Into<String>) -> Self {
        OAuthError {
            code,
            detail: detail.into(),
        }
    }
    pub fn invalid_request(detail: impl Into<String>) -> Self {
        Self::new(OAuthErrorCode::InvalidRequest, detail)
    }
    pub fn invalid_client(detail: impl Into<String>) -> Self {
        Self::new(OAuthErrorCode::InvalidClient, detail)
    }
    pub fn invalid_grant(detail: impl Into<String>) -> Self {
        Self::new(OAuthErrorCode::InvalidGrant, detail)
    }
    pub fn unauthorized_client(detail: impl Into<String>) -> Self {
        Self::new(OAuthErrorCode::UnauthorizedClient, detail)
    }

    /// The exact PingOne sentences for the four poll outcomes (§3.4).
    pub fn authorization_pending() -> Self {
        Self::new(
            OAuthErrorCode::AuthorizationPending,
            "The authorization request is still pending.",
        )
    }
    pub fn slow_down() -> Self {
        Self::new(
            OAuthErrorCode::SlowDown,
            "The authorization request is still pending. Please slow down the poll requests.",
        )
    }
    pub fn access_denied() -> Self {
        Self::new(
            OAuthErrorCode::AccessDenied,
            "The authorization request has been denied.",
        )
    }
    pub fn expired_token() -> Self {
        Self::new(
            OAuthErrorCode::ExpiredToken,
            "The authorization request for the provided auth_req_id has expired.",
        )
    }
}
