//! The JSON of the management API as utoipa schemas: request bodies (`*Create`, `*Update`),
//! resources, lists and the error body.
#![allow(dead_code)] // Schema-only types: they describe the JSON, the handlers never build them.

use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

// --- shared --------------------------------------------------------------------------------

/// The management error body (§5), for every 4xx of `/v1`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(title = "Error")]
pub struct ApiErrorBody {
    /// The correlation id of the failed request.
    #[schema(format = "uuid")]
    id: String,
    #[schema(inline)]
    code: ApiErrorCodeSchema,
    message: String,
    /// Present on validation errors.
    #[schema(nullable = false)]
    details: Option<Vec<ApiErrorDetailBody>>,
}

#[derive(Deserialize, ToSchema)]
#[allow(non_camel_case_types, clippy::upper_case_acronyms)]
enum ApiErrorCodeSchema {
    INVALID_DATA,
    NOT_FOUND,
    INVALID_TOKEN,
    ACCESS_FAILED,
    UNIQUENESS_VIOLATION,
    REQUEST_FAILED,
    METHOD_NOT_ALLOWED,
    UNEXPECTED_ERROR,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiErrorDetailBody {
    code: String,
    /// The member (or `body`, `query`, `request`) that caused the error; caller input is
    /// shortened to 64 characters and `…`.
    target: String,
    message: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IdRef {
    #[schema(format = "uuid")]
    id: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Href {
    #[schema(format = "uri")]
    href: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ListLinks {
    #[serde(rename = "self")]
    this: Href,
    /// Present when there is a next page.
    #[schema(nullable = false)]
    next: Option<Href>,
}

/// `?limit=&cursor=` of every paged list.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Page size, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    /// The opaque cursor of a `_links.next.href`.
    cursor: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[allow(clippy::upper_case_acronyms)]
enum EnvironmentTypeSchema {
    SANDBOX,
    PRODUCTION,
}

#[derive(Deserialize, ToSchema)]
enum SigningAlgorithmSchema {
    RS256,
    PS256,
    ES256,
    EdDSA,
}

// --- environments --------------------------------------------------------------------------

/// Limits against push bombing (§9) in a create or PATCH body: each member an integer, or
/// `null` for no limit; omitted members keep their value (PATCH) or take the type's default.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AbuseLimitsInput {
    #[schema(minimum = 1, maximum = 1_000_000)]
    max_pending_requests_per_user: Option<i64>,
    #[schema(minimum = 1, maximum = 1_000_000)]
    authorization_requests_per_minute: Option<i64>,
}

/// The limits in force (`null`: no limit).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AbuseLimits {
    #[schema(required = true, minimum = 1, maximum = 1_000_000)]
    max_pending_requests_per_user: Option<i64>,
    #[schema(required = true, minimum = 1, maximum = 1_000_000)]
    authorization_requests_per_minute: Option<i64>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentCreate {
    #[schema(min_length = 1, max_length = 256)]
    name: String,
    #[serde(rename = "type")]
    #[schema(inline)]
    env_type: EnvironmentTypeSchema,
    #[schema(max_length = 1024)]
    description: Option<String>,
    /// Omitted or `null`: the type's defaults (PRODUCTION `{5, 600}`, SANDBOX `{null, null}`).
    #[serde(rename = "abuseLimits")]
    abuse_limits: Option<AbuseLimitsInput>,
}

/// PATCH: absent members keep their value; `description: null` clears it.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentUpdate {
    #[schema(min_length = 1, max_length = 256, nullable = false)]
    name: Option<String>,
    #[serde(rename = "type")]
    #[schema(inline, nullable = false)]
    env_type: Option<EnvironmentTypeSchema>,
    #[schema(max_length = 1024)]
    description: Option<String>,
    /// `null` resets both limits to the type's defaults; a change of `type` applies the new
    /// type's defaults unless this member is given too.
    #[serde(rename = "abuseLimits")]
    abuse_limits: Option<AbuseLimitsInput>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Environment {
    #[schema(format = "uuid")]
    id: String,
    name: String,
    #[schema(required = true)]
    description: Option<String>,
    #[serde(rename = "type")]
    #[schema(inline)]
    env_type: EnvironmentTypeSchema,
    abuse_limits: AbuseLimits,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
}

// --- applications --------------------------------------------------------------------------

#[derive(Deserialize, ToSchema)]
#[allow(non_camel_case_types, clippy::upper_case_acronyms)]
enum AppTypeSchema {
    WEB_APP,
    NATIVE_APP,
    SINGLE_PAGE_APP,
    SERVICE,
    WORKER,
}

#[derive(Deserialize, ToSchema)]
#[allow(non_camel_case_types, clippy::upper_case_acronyms)]
enum ProtocolSchema {
    OPENID_CONNECT,
}

/// Grant types (matched case-insensitively).
#[derive(Deserialize, ToSchema)]
#[allow(non_camel_case_types, clippy::upper_case_acronyms)]
enum GrantTypeSchema {
    CIBA,
    REFRESH_TOKEN,
    CLIENT_CREDENTIALS,
    AUTHORIZATION_CODE,
    IMPLICIT,
    DEVICE_CODE,
}

/// Token endpoint authentication methods (matched case-insensitively). CIBA applications
/// cannot use NONE; PRIVATE_KEY_JWT needs `jwks` or `jwksUrl`.
#[derive(Deserialize, ToSchema)]
#[allow(non_camel_case_types, clippy::upper_case_acronyms)]
enum TokenEndpointAuthMethodSchema {
    CLIENT_SECRET_BASIC,
    CLIENT_SECRET_POST,
    CLIENT_SECRET_JWT,
    PRIVATE_KEY_JWT,
    NONE,
}

/// Only POLL delivery exists in this version (matched case-insensitively).
#[derive(Deserialize, ToSchema)]
#[allow(clippy::upper_case_acronyms)]
enum DeliveryModeInputSchema {
    POLL,
}

#[derive(Deserialize, ToSchema)]
#[allow(clippy::upper_case_acronyms)]
enum DeliveryModeSchema {
    POLL,
    PING,
    PUSH,
}

/// `cibaSettings` of a create or PATCH body; absent members keep their value.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CibaSettingsInput {
    #[schema(inline)]
    delivery_mode: Option<DeliveryModeInputSchema>,
    /// An https URL (http only with the development switch).
    #[schema(format = "uri", max_length = 2048)]
    notification_endpoint: Option<String>,
    #[schema(minimum = 1, maximum = 86_400, nullable = false)]
    request_expiry_seconds: Option<i64>,
    #[schema(minimum = 1, maximum = 86_400, nullable = false)]
    max_request_expiry_seconds: Option<i64>,
    #[schema(minimum = 1, maximum = 3600, nullable = false)]
    polling_interval_seconds: Option<i64>,
    /// Long polling is not available in this version: 0 only.
    #[schema(minimum = 0, maximum = 0, nullable = false)]
    long_poll_seconds: Option<i64>,
    #[schema(minimum = 1, maximum = 1024, nullable = false)]
    binding_message_max_length: Option<i64>,
    /// `user_code` is not available in this version: false only.
    #[schema(nullable = false)]
    user_code_parameter: Option<bool>,
    /// Signed request objects are not available in this version: null only.
    #[schema(value_type = Option<()>)]
    request_signing_algorithm: Option<()>,
}

/// The application members of a create or PATCH body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ApplicationUpdate {
    #[schema(min_length = 1, max_length = 256, nullable = false)]
    name: Option<String>,
    description: Option<String>,
    #[schema(nullable = false)]
    enabled: Option<bool>,
    #[schema(inline, nullable = false)]
    protocol: Option<ProtocolSchema>,
    #[serde(rename = "type")]
    #[schema(inline, nullable = false)]
    app_type: Option<AppTypeSchema>,
    #[schema(inline, nullable = false)]
    grant_types: Option<Vec<GrantTypeSchema>>,
    #[schema(inline, nullable = false)]
    token_endpoint_auth_method: Option<TokenEndpointAuthMethodSchema>,
    /// A JSON Web Key Set of public keys, as an object or as a JSON string; `null` removes it.
    #[schema(value_type = Value, required = false)]
    jwks: Option<serde_json::Value>,
    /// An https URL; exclusive with `jwks`.
    #[schema(format = "uri", max_length = 2048)]
    jwks_url: Option<String>,
    #[schema(inline, nullable = false)]
    id_token_signing_algorithm: Option<SigningAlgorithmSchema>,
    #[schema(minimum = 60, maximum = 86_400, nullable = false)]
    access_token_duration_seconds: Option<i64>,
    #[schema(minimum = 60, maximum = 2_147_483_647_i64, nullable = false)]
    refresh_token_duration_seconds: Option<i64>,
    /// Seconds during which a rotated refresh token may be presented again without revoking
    /// its family (default 0: never).
    #[schema(minimum = 0, maximum = 60, nullable = false)]
    refresh_token_reuse_grace_seconds: Option<i64>,
    /// `null` resets every CIBA setting to its default.
    ciba_settings: Option<CibaSettingsInput>,
}

/// A create body: the PATCH members, with `name` required.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ApplicationCreate {
    #[schema(min_length = 1, max_length = 256)]
    name: String,
    description: Option<String>,
    #[schema(nullable = false)]
    enabled: Option<bool>,
    #[schema(inline, nullable = false)]
    protocol: Option<ProtocolSchema>,
    #[serde(rename = "type")]
    #[schema(inline, nullable = false)]
    app_type: Option<AppTypeSchema>,
    #[schema(inline, nullable = false)]
    grant_types: Option<Vec<GrantTypeSchema>>,
    #[schema(inline, nullable = false)]
    token_endpoint_auth_method: Option<TokenEndpointAuthMethodSchema>,
    /// A JSON Web Key Set of public keys, as an object or as a JSON string.
    #[schema(value_type = Value, required = false)]
    jwks: Option<serde_json::Value>,
    /// An https URL; exclusive with `jwks`.
    #[schema(format = "uri", max_length = 2048)]
    jwks_url: Option<String>,
    #[schema(inline, nullable = false)]
    id_token_signing_algorithm: Option<SigningAlgorithmSchema>,
    #[schema(minimum = 60, maximum = 86_400, nullable = false)]
    access_token_duration_seconds: Option<i64>,
    #[schema(minimum = 60, maximum = 2_147_483_647_i64, nullable = false)]
    refresh_token_duration_seconds: Option<i64>,
    /// Seconds during which a rotated refresh token may be presented again without revoking
    /// its family (default 0: never).
    #[schema(minimum = 0, maximum = 60, nullable = false)]
    refresh_token_reuse_grace_seconds: Option<i64>,
    ciba_settings: Option<CibaSettingsInput>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CibaSettings {
    #[schema(inline)]
    delivery_mode: DeliveryModeSchema,
    #[schema(required = true)]
    notification_endpoint: Option<String>,
    request_expiry_seconds: i64,
    max_request_expiry_seconds: i64,
    polling_interval_seconds: i64,
    long_poll_seconds: i64,
    binding_message_max_length: i64,
    user_code_parameter: bool,
    #[schema(required = true)]
    request_signing_algorithm: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Application {
    #[schema(format = "uuid")]
    id: String,
    environment: IdRef,
    name: String,
    #[schema(required = true)]
    description: Option<String>,
    enabled: bool,
    #[schema(inline)]
    protocol: ProtocolSchema,
    #[serde(rename = "type")]
    #[schema(inline)]
    app_type: AppTypeSchema,
    #[schema(inline)]
    grant_types: Vec<GrantTypeSchema>,
    #[schema(inline)]
    token_endpoint_auth_method: TokenEndpointAuthMethodSchema,
    /// As given: an object, a JSON string, or null.
    #[schema(value_type = Value, required = true)]
    jwks: Option<serde_json::Value>,
    #[schema(required = true)]
    jwks_url: Option<String>,
    #[schema(inline)]
    id_token_signing_algorithm: SigningAlgorithmSchema,
    access_token_duration_seconds: i64,
    refresh_token_duration_seconds: i64,
    #[schema(minimum = 0, maximum = 60)]
    refresh_token_reuse_grace_seconds: i64,
    ciba_settings: CibaSettings,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApplicationSecret {
    secret: String,
}

// --- users ---------------------------------------------------------------------------------

#[derive(Deserialize, ToSchema)]
#[allow(clippy::upper_case_acronyms)]
enum AutoDecisionSchema {
    APPROVE,
    DENY,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserNameInput {
    #[schema(min_length = 1, max_length = 128)]
    given: Option<String>,
    #[schema(min_length = 1, max_length = 128)]
    family: Option<String>,
}

/// The user members of a create or PATCH body. `autoDecision*` exist in SANDBOX only.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UserUpdate {
    /// No spaces and no `:`.
    #[schema(min_length = 1, max_length = 128, nullable = false)]
    username: Option<String>,
    #[schema(max_length = 254)]
    email: Option<String>,
    name: Option<UserNameInput>,
    /// Digits, spaces and `+-().`, 3 to 20 digits.
    #[schema(max_length = 64)]
    phone_number: Option<String>,
    /// Write-only; `null` removes the password.
    #[schema(min_length = 8, max_length = 1024)]
    password: Option<String>,
    #[schema(nullable = false)]
    enabled: Option<bool>,
    #[schema(inline)]
    auto_decision: Option<AutoDecisionSchema>,
    #[schema(minimum = 0, maximum = 600_000)]
    auto_decision_delay_ms: Option<i64>,
}

/// A create body: the PATCH members, with `username` required.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UserCreate {
    /// No spaces and no `:`.
    #[schema(min_length = 1, max_length = 128)]
    username: String,
    #[schema(max_length = 254)]
    email: Option<String>,
    name: Option<UserNameInput>,
    /// Digits, spaces and `+-().`, 3 to 20 digits.
    #[schema(max_length = 64)]
    phone_number: Option<String>,
    /// Write-only.
    #[schema(min_length = 8, max_length = 1024)]
    password: Option<String>,
    #[schema(nullable = false)]
    enabled: Option<bool>,
    #[schema(inline)]
    auto_decision: Option<AutoDecisionSchema>,
    #[schema(minimum = 0, maximum = 600_000)]
    auto_decision_delay_ms: Option<i64>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserName {
    #[schema(required = true)]
    given: Option<String>,
    #[schema(required = true)]
    family: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct User {
    #[schema(format = "uuid")]
    id: String,
    environment: IdRef,
    username: String,
    #[schema(required = true)]
    email: Option<String>,
    #[schema(required = true)]
    name: Option<UserName>,
    #[schema(required = true)]
    phone_number: Option<String>,
    enabled: bool,
    #[schema(inline, required = true)]
    auto_decision: Option<AutoDecisionSchema>,
    #[schema(required = true)]
    auto_decision_delay_ms: Option<i64>,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
}

/// `?limit=&cursor=&filter=` of the user list.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UserListParams {
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    cursor: Option<String>,
    /// The one supported form: `username eq "<username>"`.
    filter: Option<String>,
}

// --- signing keys --------------------------------------------------------------------------

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SigningKeyCreate {
    #[schema(inline)]
    algorithm: SigningAlgorithmSchema,
}

#[derive(Deserialize, ToSchema)]
#[allow(clippy::upper_case_acronyms)]
enum KeyStatusSchema {
    CURRENT,
    PREVIOUS,
    RETIRED,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SigningKey {
    id: String,
    environment: IdRef,
    #[schema(inline)]
    algorithm: SigningAlgorithmSchema,
    #[schema(inline)]
    status: KeyStatusSchema,
    /// The public JWK.
    #[schema(value_type = Object)]
    public_jwk: serde_json::Value,
    #[schema(format = DateTime, required = true)]
    retire_at: Option<String>,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
}

// --- CIBA requests -------------------------------------------------------------------------

#[derive(Deserialize, ToSchema)]
#[allow(clippy::upper_case_acronyms)]
enum CibaStatusSchema {
    PENDING,
    APPROVED,
    DENIED,
    CANCELLED,
    EXPIRED,
    REDEEMED,
}

#[derive(Deserialize, ToSchema)]
#[allow(clippy::upper_case_acronyms)]
enum DecisionOutcomeSchema {
    APPROVE,
    DENY,
    CANCEL,
}

#[derive(Deserialize, ToSchema)]
#[allow(clippy::upper_case_acronyms)]
enum DecisionChannelSchema {
    SANDBOX,
    AUTO,
    DEVICE,
    WEB,
    EMAIL,
    WEBHOOK,
    ADMIN,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Decision {
    #[schema(inline)]
    outcome: DecisionOutcomeSchema,
    #[schema(inline)]
    channel: DecisionChannelSchema,
    #[schema(required = true)]
    device_id: Option<String>,
    amr: Vec<String>,
    #[schema(value_type = Value, required = true)]
    evidence: Option<serde_json::Value>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NamedRef {
    id: String,
    /// Null when the application or user no longer exists.
    #[schema(required = true)]
    name: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserRef {
    id: String,
    #[schema(required = true)]
    username: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schema(title = "CibaRequest")]
pub struct CibaRequestView {
    /// The auth_req_id.
    id: String,
    environment: IdRef,
    #[schema(inline)]
    status: CibaStatusSchema,
    application: NamedRef,
    user: UserRef,
    scope: String,
    #[schema(required = true)]
    binding_message: Option<String>,
    #[schema(required = true)]
    acr_values: Option<String>,
    #[schema(value_type = Value, required = true)]
    authorization_details: Option<serde_json::Value>,
    #[schema(inline)]
    delivery_mode: DeliveryModeSchema,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
    #[schema(format = DateTime)]
    expires_at: String,
    #[schema(format = DateTime, required = true)]
    decided_at: Option<String>,
    #[schema(required = true)]
    decision: Option<Decision>,
}

/// `?limit=&cursor=&status=&userId=&applicationId=` of the CIBA request list.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct CibaRequestListParams {
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    cursor: Option<String>,
    #[param(inline)]
    status: Option<CibaStatusSchema>,
    user_id: Option<String>,
    application_id: Option<String>,
}

// --- devices and enrolment codes ------------------------------------------------------------

#[derive(Deserialize, ToSchema)]
#[allow(non_camel_case_types, clippy::upper_case_acronyms)]
enum DeviceTypeSchema {
    DEVICE_KEY,
}

#[derive(Deserialize, ToSchema)]
#[allow(non_camel_case_types, clippy::upper_case_acronyms)]
enum DeviceAlgorithmSchema {
    ES256,
    EdDSA,
}

/// A device key registered by an administrator (§6.1).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DeviceCreate {
    #[schema(inline, nullable = false)]
    r#type: Option<DeviceTypeSchema>,
    /// Default "Device".
    #[schema(min_length = 1, max_length = 128, nullable = false)]
    name: Option<String>,
    /// A public JWK: EC P-256 (ES256) or OKP Ed25519 (EdDSA), no private members.
    #[schema(value_type = Object)]
    public_key_jwk: serde_json::Value,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DeviceUpdate {
    #[schema(nullable = false)]
    enabled: Option<bool>,
    #[schema(min_length = 1, max_length = 128, nullable = false)]
    name: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Device {
    #[schema(format = "uuid")]
    id: String,
    environment: IdRef,
    user: IdRef,
    #[schema(inline)]
    r#type: DeviceTypeSchema,
    name: String,
    #[schema(inline)]
    algorithm: DeviceAlgorithmSchema,
    /// The public key as stored: `kid` is the device id.
    #[schema(value_type = Object)]
    public_key_jwk: serde_json::Value,
    enabled: bool,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
}

/// `POST /v1/environments/{envId}/deviceEnrollments`: the user the code is for.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DeviceEnrollmentCreate {
    #[schema(format = "uuid")]
    user_id: String,
}

/// A one-time enrolment code, shown once (only its hash is stored).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DeviceEnrollment {
    code: String,
    #[schema(format = DateTime)]
    expires_at: String,
    user: IdRef,
}

// --- audit log -----------------------------------------------------------------------------

#[derive(Deserialize, ToSchema)]
#[allow(non_camel_case_types, clippy::upper_case_acronyms)]
enum ActivityTypeSchema {
    REQUEST_CREATED,
    DEVICE_NOTIFIED,
    REQUEST_APPROVED,
    REQUEST_DENIED,
    REQUEST_CANCELLED,
    REQUEST_EXPIRED,
    TOKENS_ISSUED,
    ENROLLMENT_CODE_CREATED,
    DEVICE_ENROLLED,
    DEVICE_DISABLED,
    DEVICE_ENABLED,
    DEVICE_UPDATED,
    DEVICE_DELETED,
}

#[derive(Deserialize, ToSchema)]
#[allow(non_camel_case_types, clippy::upper_case_acronyms)]
enum ActorTypeSchema {
    CLIENT,
    DEVICE,
    USER,
    ADMIN,
    SIMULATION,
    SYSTEM,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActivityActor {
    #[schema(inline)]
    r#type: ActorTypeSchema,
    /// The application id (CLIENT), device id (DEVICE) or user id (USER).
    #[schema(required = true)]
    id: Option<String>,
}

/// One audit entry (§6.4).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Activity {
    #[schema(format = "uuid")]
    id: String,
    environment: IdRef,
    #[schema(inline)]
    r#type: ActivityTypeSchema,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(required = true)]
    auth_req_id: Option<String>,
    #[schema(required = true)]
    user: Option<IdRef>,
    #[schema(required = true)]
    application: Option<IdRef>,
    #[schema(required = true)]
    device_id: Option<String>,
    actor: ActivityActor,
    #[schema(inline, required = true)]
    channel: Option<DecisionChannelSchema>,
    #[schema(required = true)]
    correlation_id: Option<String>,
    #[schema(value_type = Object)]
    details: serde_json::Value,
}

/// `?limit=&cursor=&authReqId=&userId=&type=&since=&until=` of the audit log.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct ActivityListParams {
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    cursor: Option<String>,
    auth_req_id: Option<String>,
    user_id: Option<String>,
    #[param(inline)]
    r#type: Option<ActivityTypeSchema>,
    /// At or after this time (RFC 3339).
    #[param(format = DateTime)]
    since: Option<String>,
    /// Before this time (RFC 3339).
    #[param(format = DateTime)]
    until: Option<String>,
}

// --- lists ---------------------------------------------------------------------------------

macro_rules! list_schema {
    ($list:ident, $embedded:ident, $member:ident, $item:ty) => {
        #[derive(Deserialize, ToSchema)]
        #[serde(deny_unknown_fields)]
        #[allow(non_snake_case)]
        pub struct $embedded {
            $member: Vec<$item>,
        }
        #[derive(Deserialize, ToSchema)]
        #[serde(deny_unknown_fields)]
        pub struct $list {
            _links: ListLinks,
            _embedded: $embedded,
            /// Total number of matching items.
            #[schema(minimum = 0)]
            count: u64,
            /// Number of items in this page.
            #[schema(minimum = 0)]
            size: u64,
        }
    };
}

list_schema!(
    EnvironmentList,
    EnvironmentsEmbedded,
    environments,
    Environment
);
list_schema!(
    ApplicationList,
    ApplicationsEmbedded,
    applications,
    Application
);
list_schema!(UserList, UsersEmbedded, users, User);
list_schema!(SigningKeyList, SigningKeysEmbedded, signingKeys, SigningKey);
list_schema!(
    CibaRequestList,
    CibaRequestsEmbedded,
    cibaRequests,
    CibaRequestView
);
list_schema!(DeviceList, DevicesEmbedded, devices, Device);
list_schema!(ActivityList, ActivitiesEmbedded, activities, Activity);
