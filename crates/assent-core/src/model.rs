//! The domain's nouns: environments, applications, users, signing keys, CIBA requests and the
//! records of issued tokens. Wire shapes (camelCase JSON) live in the server; these are the
//! values the rules and the store agree on.

use serde::{Deserialize, Serialize};

use crate::ids::{ApplicationId, AuthReqId, EnvironmentId, UserId};
use crate::time::Timestamp;

/// An identifier without a type of its own (signing key ids, device ids). Environment,
/// application and user ids are typed (`crate::ids`); all of them are UUIDs rendered as
/// lower-case hyphenated strings ([`new_id`]).
pub type Id = String;

pub fn new_id() -> Id {
    uuid::Uuid::new_v4().to_string()
}

macro_rules! wire_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),+ }
        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
            /// Parses the upper-case wire name; `parse_ci` also accepts any letter case.
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($text => Some($name::$variant),)+ _ => None }
            }
            pub fn parse_ci(s: &str) -> Option<Self> {
                Self::parse(&s.to_ascii_uppercase())
            }
        }
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).ok_or_else(|| serde::de::Error::custom(format!(
                    "unknown value, expected one of: {}",
                    [$($text),+].join(", ")
                )))
            }
        }
    };
}

wire_enum!(
    /// PingOne's environment types; only SANDBOX accepts simulated decisions (§6.5).
    EnvironmentType { Sandbox => "SANDBOX", Production => "PRODUCTION" }
);
wire_enum!(
    /// Grant types an application may use.
    GrantType {
        Ciba => "CIBA",
        RefreshToken => "REFRESH_TOKEN",
        ClientCredentials => "CLIENT_CREDENTIALS",
        AuthorizationCode => "AUTHORIZATION_CODE",
        Implicit => "IMPLICIT",
        DeviceCode => "DEVICE_CODE",
    }
);
wire_enum!(
    /// How an application authenticates at `/cibaAuthorization` and `/token` (§3.1).
    TokenEndpointAuthMethod {
        ClientSecretBasic => "CLIENT_SECRET_BASIC",
        ClientSecretPost => "CLIENT_SECRET_POST",
        ClientSecretJwt => "CLIENT_SECRET_JWT",
        PrivateKeyJwt => "PRIVATE_KEY_JWT",
        None => "NONE",
    }
);
wire_enum!(
    /// CIBA token delivery modes (§4).
    DeliveryMode { Poll => "POLL", Ping => "PING", Push => "PUSH" }
);
wire_enum!(
    /// A SANDBOX user's automatic answer (§6.5).
    AutoDecision { Approve => "APPROVE", Deny => "DENY" }
);
wire_enum!(
    /// The outcome of a decision on a CIBA request.
    DecisionOutcome { Approve => "APPROVE", Deny => "DENY", Cancel => "CANCEL" }
);
wire_enum!(
    /// Where a decision came from.
    DecisionChannel {
        Sandbox => "SANDBOX",
        Auto => "AUTO",
        Device => "DEVICE",
        Web => "WEB",
        Email => "EMAIL",
        Webhook => "WEBHOOK",
        Admin => "ADMIN",
    }
);
wire_enum!(
    /// The state of a CIBA request. `Expired` is derived from `expires_at` (see
    /// [`CibaRequest::status_at`]); it is stored only when an expiry transition
    /// (`ciba::expire`) marked it, which a reader sees the same way.
    CibaStatus {
        Pending => "PENDING",
        Approved => "APPROVED",
        Denied => "DENIED",
        Cancelled => "CANCELLED",
        Expired => "EXPIRED",
        Redeemed => "REDEEMED",
    }
);
wire_enum!(
    /// JWS algorithms Assent signs ID tokens and access tokens with.
    SigningAlgorithm {
        RS256 => "RS256",
        PS256 => "PS256",
        ES256 => "ES256",
        EdDSA => "EdDSA",
    }
);

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Environment {
    pub id: EnvironmentId,
    pub name: String,
    pub description: Option<String>,
    pub env_type: EnvironmentType,
    pub abuse_limits: AbuseLimits,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// Per-environment limits on `/cibaAuthorization` against push bombing (spec §9). `None` means
/// no limit. Enforced by the store atomically with the insert ([`crate::ciba::AbuseGuard`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AbuseLimits {
    /// Pending, unexpired requests one user may have at once.
    pub max_pending_requests_per_user: Option<i64>,
    /// Requests one application may start in any 60-second window.
    pub authorization_requests_per_minute: Option<i64>,
}

impl AbuseLimits {
    /// Off in SANDBOX (test suites and load tests create thousands of pending requests for a
    /// handful of users), on in PRODUCTION.
    pub fn defaults_for(env_type: EnvironmentType) -> Self {
        match env_type {
            EnvironmentType::Sandbox => AbuseLimits {
                max_pending_requests_per_user: None,
                authorization_requests_per_minute: None,
            },
            EnvironmentType::Production => AbuseLimits {
                max_pending_requests_per_user: Some(5),
                authorization_requests_per_minute: Some(600),
            },
        }
    }
}

/// Per-application CIBA settings (Assent's extension of PingOne's application).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CibaSettings {
    pub delivery_mode: DeliveryMode,
    pub notification_endpoint: Option<String>,
    pub request_expiry_seconds: i64,
    pub max_request_expiry_seconds: i64,
    pub polling_interval_seconds: i64,
    pub long_poll_seconds: i64,
    pub binding_message_max_length: i64,
    pub user_code_parameter: bool,
    pub request_signing_algorithm: Option<String>,
}

impl Default for CibaSettings {
    /// PingOne's fixed values (120 s expiry, 2 s interval) are the defaults.
    fn default() -> Self {
        CibaSettings {
            delivery_mode: DeliveryMode::Poll,
            notification_endpoint: None,
            request_expiry_seconds: 120,
            max_request_expiry_seconds: 600,
            polling_interval_seconds: 2,
            long_poll_seconds: 0,
            binding_message_max_length: 64,
            user_code_parameter: false,
            request_signing_algorithm: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Application {
    /// Also the OAuth `client_id`.
    pub id: ApplicationId,
    pub environment_id: EnvironmentId,
    pub name: String,
    pub description: Option<String>,
    pub enabled: bool,
    pub protocol: String,
    pub app_type: String,
    pub grant_types: Vec<GrantType>,
    pub token_endpoint_auth_method: TokenEndpointAuthMethod,
    /// The application's public keys exactly as given: a JSON string (PingOne's form) or object.
    pub jwks: Option<serde_json::Value>,
    pub jwks_url: Option<String>,
    pub id_token_signing_algorithm: SigningAlgorithm,
    pub access_token_duration_seconds: i64,
    pub refresh_token_duration_seconds: i64,
    /// Seconds after a refresh token was rotated during which presenting it again rotates it
    /// once more in the same family instead of revoking the family (0: reuse always revokes).
    pub refresh_token_reuse_grace_seconds: i64,
    pub ciba: CibaSettings,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Application {
    pub fn has_grant(&self, grant: GrantType) -> bool {
        self.grant_types.contains(&grant)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: UserId,
    pub environment_id: EnvironmentId,
    pub username: String,
    pub email: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub phone_number: Option<String>,
    /// argon2id PHC string; never encrypted, never returned.
    pub password_hash: Option<String>,
    pub enabled: bool,
    pub auto_decision: Option<AutoDecision>,
    pub auto_decision_delay_ms: Option<i64>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

wire_enum!(
    /// The signature algorithms a device key may use (§6.1): ES256 (P-256) and EdDSA
    /// (Ed25519), nothing else.
    DeviceKeyAlgorithm { Es256 => "ES256", EdDsa => "EdDSA" }
);

/// A user's authentication device: a public key that signs the user's decisions (§6.1). The
/// device id is the `kid` and the `iss` of everything the device signs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    pub id: Id,
    pub environment_id: EnvironmentId,
    pub user_id: UserId,
    pub name: String,
    pub algorithm: DeviceKeyAlgorithm,
    /// The public JWK as registered (private members refused, `kid` set to the device id).
    pub public_jwk: serde_json::Value,
    pub enabled: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A one-time enrolment code (§6.1): only its SHA-256 is stored; single use, valid until
/// `expires_at` (10 minutes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceEnrollment {
    pub code_hash: String,
    pub environment_id: EnvironmentId,
    pub user_id: UserId,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

wire_enum!(
    /// What an audit entry records (§6.4).
    ActivityType {
        RequestCreated => "REQUEST_CREATED",
        DeviceNotified => "DEVICE_NOTIFIED",
        RequestApproved => "REQUEST_APPROVED",
        RequestDenied => "REQUEST_DENIED",
        RequestCancelled => "REQUEST_CANCELLED",
        RequestExpired => "REQUEST_EXPIRED",
        TokensIssued => "TOKENS_ISSUED",
        EnrollmentCodeCreated => "ENROLLMENT_CODE_CREATED",
        DeviceEnrolled => "DEVICE_ENROLLED",
        DeviceDisabled => "DEVICE_DISABLED",
        DeviceEnabled => "DEVICE_ENABLED",
        DeviceUpdated => "DEVICE_UPDATED",
        DeviceDeleted => "DEVICE_DELETED",
    }
);

wire_enum!(
    /// Who caused an audited change.
    ActorType {
        Client => "CLIENT",
        Device => "DEVICE",
        User => "USER",
        Admin => "ADMIN",
        Simulation => "SIMULATION",
        System => "SYSTEM",
    }
);

/// Who caused an audited change: its kind and, where it has one, its id (an application id
/// for CLIENT, a device id for DEVICE, a user id for USER).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    pub kind: ActorType,
    pub id: Option<String>,
}

impl Actor {
    pub fn new(kind: ActorType, id: Option<String>) -> Actor {
        Actor { kind, id }
    }

    pub fn admin() -> Actor {
        Actor::new(ActorType::Admin, None)
    }

    pub fn system() -> Actor {
        Actor::new(ActorType::System, None)
    }
}

/// One entry of the audit log (§6.4), written in the same transaction as the change it
/// records. `id` orders nothing (the store keeps the order of appends).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEntry {
    pub id: Id,
    pub environment_id: EnvironmentId,
    pub kind: ActivityType,
    pub at: Timestamp,
    pub auth_req_id: Option<AuthReqId>,
    pub user_id: Option<UserId>,
    pub application_id: Option<ApplicationId>,
    pub device_id: Option<Id>,
    pub actor: Actor,
    pub channel: Option<DecisionChannel>,
    /// The correlation id of the HTTP request that caused it (none for background work).
    pub correlation_id: Option<String>,
    /// A JSON object with what else the entry needs (amr, scope, …); never a secret.
    pub details: serde_json::Value,
}

impl AuditEntry {
    /// An entry about `req`, with its user and application.
    pub fn about_request(
        req: &CibaRequest,
        kind: ActivityType,
        actor: Actor,
        channel: Option<DecisionChannel>,
        at: Timestamp,
        details: serde_json::Value,
    ) -> AuditEntry {
        AuditEntry {
            id: new_id(),
            environment_id: req.environment_id.clone(),
            kind,
            at,
            auth_req_id: Some(req.auth_req_id.clone()),
            user_id: Some(req.user_id.clone()),
            application_id: Some(req.application_id.clone()),
            device_id: None,
            actor,
            channel,
            correlation_id: None,
            details,
        }
    }

    /// The entry, with the correlation id of the HTTP request that caused it.
    pub fn with_correlation(mut self, correlation_id: &str) -> AuditEntry {
        self.correlation_id = Some(correlation_id.to_owned());
        self
    }

    /// An entry about user `user_id` of `environment_id` and nothing more specific (an
    /// enrolment code made for them).
    pub fn about_user(
        environment_id: &EnvironmentId,
        user_id: &UserId,
        kind: ActivityType,
        actor: Actor,
        at: Timestamp,
        details: serde_json::Value,
    ) -> AuditEntry {
        AuditEntry {
            id: new_id(),
            environment_id: environment_id.clone(),
            kind,
            at,
            auth_req_id: None,
            user_id: Some(user_id.clone()),
            application_id: None,
            device_id: None,
            actor,
            channel: None,
            correlation_id: None,
            details,
        }
    }

    /// An entry about `device` (enrolled, updated, deleted).
    pub fn about_device(
        device: &Device,
        kind: ActivityType,
        actor: Actor,
        at: Timestamp,
        details: serde_json::Value,
    ) -> AuditEntry {
        AuditEntry {
            device_id: Some(device.id.clone()),
            ..AuditEntry::about_user(
                &device.environment_id,
                &device.user_id,
                kind,
                actor,
                at,
                details,
            )
        }
    }
}

/// An audit entry as stored: `seq` is its place in the log (ascending in append order).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Activity {
    pub seq: i64,
    pub entry: AuditEntry,
}

/// An environment signing key. The private part is sealed (AES-256-GCM) by the server before it
/// reaches the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SigningKey {
    /// The JWS `kid`.
    pub id: Id,
    pub environment_id: EnvironmentId,
    pub algorithm: SigningAlgorithm,
    pub public_jwk: serde_json::Value,
    pub private_key_sealed: Vec<u8>,
    /// The key currently used to sign for its algorithm.
    pub current: bool,
    pub created_at: Timestamp,
    /// After rotation: when the key leaves the JWKS (its tokens have expired by then).
    pub retire_at: Option<Timestamp>,
}

impl SigningKey {
    /// Still published in the JWKS at `now`.
    pub fn published_at(&self, now: Timestamp) -> bool {
        self.retire_at.is_none_or(|t| t > now)
    }
}

/// A recorded decision on a CIBA request, with its evidence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub outcome: DecisionOutcome,
    pub channel: DecisionChannel,
    pub device_id: Option<Id>,
    pub amr: Vec<String>,
    pub evidence: Option<serde_json::Value>,
    pub decided_at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CibaRequest {
    pub auth_req_id: AuthReqId,
    pub environment_id: EnvironmentId,
    pub application_id: ApplicationId,
    pub user_id: UserId,
    /// Space-separated, as sent.
    pub scope: String,
    pub binding_message: Option<String>,
    /// Space-separated, as sent.
    pub acr_values: Option<String>,
    pub authorization_details: Option<serde_json::Value>,
    pub delivery_mode: DeliveryMode,
    pub client_notification_token: Option<String>,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    /// The interval the client must currently respect; grows by 5 s with each `slow_down`.
    pub interval_seconds: i64,
    /// When the previous poll arrived (of any outcome).
    pub last_polled_at: Option<Timestamp>,
    /// Stored state; `Expired` is derived (stored only once `ciba::expire` marked it).
    pub status: CibaStatus,
    pub decision: Option<Decision>,
    pub redeemed_at: Option<Timestamp>,
}

impl CibaRequest {
    pub fn is_expired(&self, now: Timestamp) -> bool {
        now >= self.expires_at
    }

    /// The status a reader sees at `now`: an unredeemed request past its expiry is `EXPIRED`.
    pub fn status_at(&self, now: Timestamp) -> CibaStatus {
        if self.status != CibaStatus::Redeemed && self.is_expired(now) {
            CibaStatus::Expired
        } else {
            self.status
        }
    }

    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scope.split(' ').filter(|s| !s.is_empty())
    }

    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes().any(|s| s == scope)
    }
}

/// An issued JWT access token, recorded so it can be revoked and introspected.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessTokenRecord {
    pub jti: String,
    pub environment_id: EnvironmentId,
    pub application_id: ApplicationId,
    pub user_id: Option<UserId>,
    pub scope: String,
    pub auth_req_id: Option<AuthReqId>,
    /// Set when minted by a refresh-token grant: revoked with that refresh family.
    pub refresh_family_id: Option<String>,
    pub issued_at: Timestamp,
    pub expires_at: Timestamp,
    pub revoked: bool,
}

/// An opaque refresh token; only its SHA-256 is stored. Tokens of one family descend from one
/// CIBA grant; reuse of a rotated token revokes the family.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshTokenRecord {
    /// base64url SHA-256 of the token.
    pub token_hash: String,
    pub family_id: String,
    pub environment_id: EnvironmentId,
    pub application_id: ApplicationId,
    pub user_id: UserId,
    pub scope: String,
    pub auth_req_id: Option<AuthReqId>,
    /// When the user decided; carried to ID tokens minted on refresh.
    pub auth_time: Timestamp,
    pub acr: Option<String>,
    pub amr: Vec<String>,
    pub issued_at: Timestamp,
    pub expires_at: Timestamp,
    /// Set when the token was exchanged for a newer one.
    pub rotated_at: Option<Timestamp>,
    pub revoked: bool,
}

/// What the token endpoint persists when it redeems an approved CIBA request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuedTokens {
    pub access_token: AccessTokenRecord,
    pub refresh_token: Option<RefreshTokenRecord>,
}
