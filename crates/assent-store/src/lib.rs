//! Assent's persistence. The [`Store`] is made of small traits, one per aggregate
//! ([`DirectoryStore`], [`KeyStore`], [`CibaStore`], [`TokenStore`], [`JtiStore`],
//! [`WorkStore`], [`Housekeeping`]) plus [`Transitions`] and [`WakeUps`]; bring them into scope with
//! `use assent_store::prelude::*`. Their semantics hold on SQLite and PostgreSQL alike: every
//! state change of a CIBA request or a token (admission, poll bookkeeping, decisions, expiry,
//! redemption, replay revocation, refresh-token rotation and revocation) is a core
//! `Transition` persisted by [`Transitions::apply`], atomically with its guard, which reports
//! whether it won; single-use `jti`s are one conditional write. So no race between requests
//! or nodes can issue tokens twice.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

use std::sync::Arc;

use assent_core::transition::{Applied, ScheduledWork, Transition, WorkId};
use assent_core::{
    AccessTokenRecord, Activity, ActivityType, Application, ApplicationId, AuditEntry, AuthReqId,
    CibaRequest, CibaStatus, Device, DeviceEnrollment, Environment, EnvironmentId, ListPage, Page,
    RefreshTokenRecord, SigningAlgorithm, SigningKey, Timestamp, User, UserId,
};

pub mod cache;
mod open;
pub mod sqlite;
#[cfg(any(test, feature = "testsuite"))]
pub mod testsuite;
mod wakeups;

pub use cache::{ApplicationEntry, CacheStats, CachedStore};
pub use open::{StoreConfig, open};
pub use sqlite::{HeldWrites, SqliteStore};
pub use wakeups::{InProcessWakeUps, WakeKey, WakeUp, WakeUps};

/// The store traits, for callers that hold a concrete store or a generic one
/// (`Arc<dyn Store>` reaches every method without them).
pub mod prelude {
    pub use crate::{
        AuditStore, CibaStore, DeviceStore, DirectoryStore, Housekeeping, JtiStore, KeyStore,
        Store, TokenStore, Transitions, WakeUps, WorkStore,
    };
}

#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    /// The row does not exist (in this environment).
    #[error("not found")]
    NotFound,
    /// A uniqueness constraint was violated on the named field.
    #[error("{0} must be unique")]
    Conflict(UniqueField),
    /// The database is unreachable or failed.
    #[error("database error: {0}")]
    Database(String),
    /// A stored value could not be decoded.
    #[error("corrupt stored value: {0}")]
    Corrupt(String),
    /// A value the caller asked to store breaks a rule the caller should have checked first
    /// (for example a username that is not a valid identifier).
    #[error("invalid value: {0}")]
    Invalid(String),
    /// The configured backend cannot be used (unknown or not yet available database URL).
    #[error("{0}")]
    Unavailable(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// What a [`StoreError::Conflict`] is about: the field whose uniqueness a write would break.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UniqueField {
    Username,
    Email,
    AuthReqId,
    TokenHash,
    Jti,
    Algorithm,
    /// A row's own id (or a uniqueness the store cannot name more precisely).
    Id,
    /// The set of sealed values changed since it was listed ([`KeyStore::reseal_all`]).
    SealedValues,
}

impl UniqueField {
    /// The field's name as the API reports it (`target` of a uniqueness violation).
    pub fn as_str(self) -> &'static str {
        match self {
            UniqueField::Username => "username",
            UniqueField::Email => "email",
            UniqueField::AuthReqId => "auth_req_id",
            UniqueField::TokenHash => "token_hash",
            UniqueField::Jti => "jti",
            UniqueField::Algorithm => "algorithm",
            UniqueField::Id => "id",
            UniqueField::SealedValues => "sealed values",
        }
    }
}

impl std::fmt::Display for UniqueField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Filters for listing CIBA requests. `status` filters by the status a reader sees at `now`
/// (so `Expired` finds unredeemed requests past their expiry, `Pending` excludes them).
#[derive(Clone, Debug, Default)]
pub struct CibaRequestFilter {
    pub status: Option<CibaStatus>,
    pub user_id: Option<UserId>,
    pub application_id: Option<ApplicationId>,
}

/// Name of the [`KeyStore::get_server_meta`] entry holding the at-rest key check.
pub const META_KEY_CHECK: &str = "at_rest_key_check";

/// What a value sealed under the at-rest key is, which says how it is bound (its AAD).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SealedKind {
    /// An application's client secret (`id` = application id).
    ApplicationSecret,
    /// A signing key's private key (`id` = kid).
    SigningKey,
}

/// One value sealed under the at-rest key, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedValue {
    pub kind: SealedKind,
    pub environment_id: EnvironmentId,
    pub id: String,
    pub sealed: Vec<u8>,
}

/// A sealed value and what replaces it (the same plaintext sealed under another key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resealed {
    pub old: SealedValue,
    pub new_sealed: Vec<u8>,
}

/// Everything Assent persists: one value per backend, shared as `Arc<dyn Store>`.
pub trait Store:
    DirectoryStore
    + DeviceStore
    + AuditStore
    + KeyStore
    + CibaStore
    + TokenStore
    + JtiStore
    + Transitions
    + WorkStore
    + Housekeeping
    + WakeUps
    + 'static
{
}

impl<T> Store for T where
    T: DirectoryStore
        + DeviceStore
        + AuditStore
        + KeyStore
        + CibaStore
        + TokenStore
        + JtiStore
        + Transitions
        + WorkStore
        + Housekeeping
        + WakeUps
        + 'static
{
}

/// Liveness and clean-up.
#[async_trait::async_trait]
pub trait Housekeeping: Send + Sync {
    /// Cheap round trip for `/readyz`.
    async fn ping(&self) -> StoreResult<()>;

    /// Deletes what is past keeping at `now` (expired jtis, tokens, requests answerable no
    /// longer). Returns rows deleted.
    async fn purge_expired(&self, now: Timestamp) -> StoreResult<u64>;

    /// The directory cache's counters, when the store has one ([`CachedStore`]).
    fn cache_stats(&self) -> Option<CacheStats> {
        None
    }
}

/// Environments, their applications and their users.
#[async_trait::async_trait]
pub trait DirectoryStore: Send + Sync {
    // --- environments -------------------------------------------------------------------
    async fn create_environment(&self, env: &Environment) -> StoreResult<()>;
    async fn get_environment(&self, id: &EnvironmentId) -> StoreResult<Environment>;
    async fn list_environments(&self, page: &Page) -> StoreResult<ListPage<Environment>>;
    async fn update_environment(&self, env: &Environment) -> StoreResult<()>;
    /// Deletes the environment and everything in it.
    async fn delete_environment(&self, id: &EnvironmentId) -> StoreResult<()>;

    // --- applications -------------------------------------------------------------------
    /// `secret_sealed` is the client secret encrypted by the caller.
    async fn create_application(&self, app: &Application, secret_sealed: &[u8]) -> StoreResult<()>;
    async fn get_application(
        &self,
        env_id: &EnvironmentId,
        id: &ApplicationId,
    ) -> StoreResult<Application>;
    async fn list_applications(
        &self,
        env_id: &EnvironmentId,
        page: &Page,
    ) -> StoreResult<ListPage<Application>>;
    async fn update_application(&self, app: &Application) -> StoreResult<()>;
    async fn delete_application(
        &self,
        env_id: &EnvironmentId,
        id: &ApplicationId,
    ) -> StoreResult<()>;
    async fn get_application_secret(
        &self,
        env_id: &EnvironmentId,
        id: &ApplicationId,
    ) -> StoreResult<Vec<u8>>;
    async fn set_application_secret(
        &self,
        env_id: &EnvironmentId,
        id: &ApplicationId,
        secret_sealed: &[u8],
        now: Timestamp,
    ) -> StoreResult<()>;

    // --- users --------------------------------------------------------------------------
    /// Usernames and emails are unique per environment under the identifier profile of
    /// `assent_core::identifier` (RFC 8265 UsernameCaseMapped: NFC, case-mapped)
    /// (`StoreError::Conflict(UniqueField::Username | UniqueField::Email)`); both must already be valid identifiers.
    async fn create_user(&self, user: &User) -> StoreResult<()>;
    async fn get_user(&self, env_id: &EnvironmentId, id: &UserId) -> StoreResult<User>;
    /// Match under the identifier profile; a string that is not a valid identifier finds nobody.
    async fn find_user_by_username(
        &self,
        env_id: &EnvironmentId,
        username: &str,
    ) -> StoreResult<Option<User>>;
    /// Match under the identifier profile; a string that is not a valid identifier finds nobody.
    async fn find_user_by_email(
        &self,
        env_id: &EnvironmentId,
        email: &str,
    ) -> StoreResult<Option<User>>;
    /// `phone` already normalised by the caller (`validate::normalize_phone`); compared against
    /// the normalised stored number. Numbers are not unique: when more than one user has it,
    /// the answer is `None` (an ambiguous hint must not pick somebody).
    async fn find_user_by_phone(
        &self,
        env_id: &EnvironmentId,
        phone: &str,
    ) -> StoreResult<Option<User>>;
    /// `username`: filter under the identifier profile when given.
    async fn list_users(
        &self,
        env_id: &EnvironmentId,
        username: Option<&str>,
        page: &Page,
    ) -> StoreResult<ListPage<User>>;
    async fn update_user(&self, user: &User) -> StoreResult<()>;
    async fn delete_user(&self, env_id: &EnvironmentId, id: &UserId) -> StoreResult<()>;

    // --- for caches ---------------------------------------------------------------------
    /// The application with its sealed client secret as one shared entry, which keeps the
    /// secret once opened ([`ApplicationEntry::secret`]). [`CachedStore`] answers the same
    /// entry until the application changes; a store without a cache reads a new one each time.
    async fn get_application_entry(
        &self,
        env_id: &EnvironmentId,
        id: &ApplicationId,
    ) -> StoreResult<Arc<ApplicationEntry>> {
        let application = self.get_application(env_id, id).await?;
        let sealed = self.get_application_secret(env_id, id).await?;
        Ok(Arc::new(ApplicationEntry::new(application, sealed)))
    }

    /// The environments whose directory or keys changed after version `after`, each with its
    /// newest version. Every write of an environment, its applications, users or signing keys,
    /// whoever makes it, gives the environment a new version: the next value of one sequence
    /// of the whole database, in the writing transaction (docs/store.md, "The directory
    /// cache"). `0` lists every environment ever changed.
    async fn directory_changes_since(&self, after: u64) -> StoreResult<Vec<(EnvironmentId, u64)>>;
}

/// Signing keys, the values sealed under the at-rest key, and server-wide values.
#[async_trait::async_trait]
pub trait KeyStore: Send + Sync {
    // --- signing keys -------------------------------------------------------------------
    /// Stores `key` as the current key for its algorithm; the previous current key of that
    /// algorithm (if any) stops being current and gets `retire_at = previous_retire_at`. Atomic.
    async fn insert_signing_key(
        &self,
        key: &SigningKey,
        previous_retire_at: Timestamp,
    ) -> StoreResult<()>;
    /// All keys of the environment, newest first, including retired ones.
    async fn list_signing_keys(&self, env_id: &EnvironmentId) -> StoreResult<Vec<SigningKey>>;
    async fn current_signing_key(
        &self,
        env_id: &EnvironmentId,
        alg: SigningAlgorithm,
    ) -> StoreResult<Option<SigningKey>>;
    /// Atomically: if the environment has no current key of `key.algorithm`, stores `key` as
    /// the current one. Returns the current key either way (so concurrent first uses of an
    /// algorithm end with one key, whichever insert won).
    async fn insert_signing_key_if_absent(&self, key: &SigningKey) -> StoreResult<SigningKey>;

    // --- server-wide values and the at-rest key --------------------------------------
    /// A server-wide value (e.g. [`META_KEY_CHECK`]); `None` if never written.
    async fn get_server_meta(&self, name: &str) -> StoreResult<Option<Vec<u8>>>;
    /// Inserts or replaces a server-wide value.
    async fn put_server_meta(&self, name: &str, value: &[u8]) -> StoreResult<()>;
    /// Every value sealed under the at-rest key, in every environment (client secrets and
    /// signing private keys), in a stable order.
    async fn list_sealed_values(&self) -> StoreResult<Vec<SealedValue>>;
    /// In ONE transaction: replaces each `old` sealed value by its `new_sealed` and sets the
    /// server-wide value `meta.0` to `meta.1` (the new key check). Changes nothing and fails
    /// with `Conflict(UniqueField::SealedValues)` unless `resealed` covers exactly the sealed values the
    /// database holds, each still as `old` says (no value added, changed or missed meanwhile).
    async fn reseal_all(&self, resealed: &[Resealed], meta: (&str, &[u8])) -> StoreResult<()>;
}

/// Device keys and their one-time enrolment codes (§6.1). Each write appends its audit entry
/// in the same transaction.
#[async_trait::async_trait]
pub trait DeviceStore: Send + Sync {
    /// Registers `device` and appends `audit`. `NotFound` when its user does not exist,
    /// `Conflict(UniqueField::Id)` when the id is taken.
    async fn create_device(&self, device: &Device, audit: &AuditEntry) -> StoreResult<()>;
    async fn get_device(&self, env_id: &EnvironmentId, id: &str) -> StoreResult<Device>;
    /// The devices of one user, oldest first.
    async fn list_devices(
        &self,
        env_id: &EnvironmentId,
        user_id: &UserId,
        page: &Page,
    ) -> StoreResult<ListPage<Device>>;
    /// Stores `device`'s name, `enabled` and `updated_at` (the key and user never change) and
    /// appends `audit`, if the stored device still has the name and `enabled` of `read` (a
    /// compare-and-set: a concurrent change is never overwritten). `Ok(false)`, nothing
    /// written, when it changed meanwhile (read again, apply again); `NotFound` when the
    /// device (of that user) is gone.
    async fn update_device(
        &self,
        read: &Device,
        device: &Device,
        audit: &AuditEntry,
    ) -> StoreResult<bool>;
    /// Deletes the device of `user_id` and appends `audit`. `NotFound` when it is gone.
    async fn delete_device(
        &self,
        env_id: &EnvironmentId,
        user_id: &UserId,
        id: &str,
        audit: &AuditEntry,
    ) -> StoreResult<()>;
    /// Stores an enrolment code (its hash) and appends `audit`. `NotFound` when its user does
    /// not exist.
    async fn create_enrollment(
        &self,
        enrollment: &DeviceEnrollment,
        audit: &AuditEntry,
    ) -> StoreResult<()>;
    /// Uses the enrolment code whose SHA-256 is `code_hash`, if it is unused and unexpired at
    /// `now` and its user is enabled, and registers `device` for the code's user, in one
    /// transaction: the code is
    /// deleted, the device stored with the code's user (whatever `device.user_id` says), and
    /// `audit` appended with that user. Of concurrent enrolments with one code exactly one
    /// succeeds. `NotFound` when there is no such code (unknown, used, expired, or its user
    /// disabled).
    async fn enroll_device(
        &self,
        code_hash: &str,
        device: &Device,
        audit: &AuditEntry,
        now: Timestamp,
    ) -> StoreResult<Device>;
}

/// Filters for listing the audit log; all of them must hold.
#[derive(Clone, Debug, Default)]
pub struct ActivityFilter {
    pub auth_req_id: Option<AuthReqId>,
    pub user_id: Option<UserId>,
    pub kind: Option<ActivityType>,
    /// At or after.
    pub since: Option<Timestamp>,
    /// Before.
    pub until: Option<Timestamp>,
}

/// The audit log (§6.4). Entries are appended by the writes they record (transitions, device
/// writes), in the same transaction; this part reads them.
#[async_trait::async_trait]
pub trait AuditStore: Send + Sync {
    /// Entries of one environment in the order they were appended, oldest first.
    async fn list_activities(
        &self,
        env_id: &EnvironmentId,
        filter: &ActivityFilter,
        page: &Page,
    ) -> StoreResult<ListPage<Activity>>;
    /// Appends a `DEVICE_NOTIFIED` entry unless the log has one for the same request and
    /// device already. Returns whether it was appended.
    async fn record_device_notified(&self, entry: &AuditEntry) -> StoreResult<bool>;
}

/// CIBA requests, as read. Their state changes are transitions ([`Transitions::apply`]).
#[async_trait::async_trait]
pub trait CibaStore: Send + Sync {
    // --- CIBA requests ------------------------------------------------------------------
    async fn get_ciba_request(
        &self,
        env_id: &EnvironmentId,
        auth_req_id: &AuthReqId,
    ) -> StoreResult<CibaRequest>;
    async fn list_ciba_requests(
        &self,
        env_id: &EnvironmentId,
        filter: &CibaRequestFilter,
        now: Timestamp,
        page: &Page,
    ) -> StoreResult<ListPage<CibaRequest>>;
    /// The requests of `user_id` still pending and unexpired at `now`, oldest first, at most
    /// `limit` (what the user's devices show, §6.1).
    async fn pending_for_user(
        &self,
        env_id: &EnvironmentId,
        user_id: &UserId,
        now: Timestamp,
        limit: u32,
    ) -> StoreResult<Vec<CibaRequest>>;
    /// Requests of any environment still stored PENDING whose expiry is after `after` and at
    /// or before `now`, soonest expiry first, at most `limit`: what the expiry sweep marks
    /// expired (`ciba::expire`).
    async fn expired_pending(
        &self,
        after: Timestamp,
        now: Timestamp,
        limit: u32,
    ) -> StoreResult<Vec<CibaRequest>>;
}

/// Access and refresh tokens, as read. Issuing them with a redemption or a rotation, and
/// revoking them, are transitions ([`Transitions::apply`]).
#[async_trait::async_trait]
pub trait TokenStore: Send + Sync {
    // --- tokens -------------------------------------------------------------------------
    async fn get_access_token(
        &self,
        env_id: &EnvironmentId,
        jti: &str,
    ) -> StoreResult<Option<AccessTokenRecord>>;
    /// Records an access token issued outside a transition.
    async fn insert_access_token(&self, token: &AccessTokenRecord) -> StoreResult<()>;
    async fn get_refresh_token(
        &self,
        env_id: &EnvironmentId,
        token_hash: &str,
    ) -> StoreResult<Option<RefreshTokenRecord>>;
}

/// The one way state changes are persisted (see `assent_core::transition` and
/// docs/store.md, which lists what each guard checks).
#[async_trait::async_trait]
pub trait Transitions: Send + Sync {
    /// Persists `t` atomically, in one transaction durable on return: checks its guard, writes
    /// its change, inserts its scheduled work, deletes the work it completes (and, once they
    /// exist, writes its audit entries and outbox messages). `Won` when the guard held and the
    /// completed work was still there; `Lost` (nothing written) otherwise; `Limited` (nothing
    /// written) only for `Guard::Admit` when an abuse limit is reached. After the commit it
    /// publishes the wake-ups of the request (and its user) for an admission, a decision, an
    /// expiry and a redemption; poll bookkeeping and revocations publish nothing.
    ///
    /// Errors: a malformed transition (`Transition::check`: a guard that does not fit the
    /// change, rows of another environment) is `StoreError::Invalid` and writes nothing; an
    /// admission of an `auth_req_id` already stored is `Conflict(UniqueField::AuthReqId)`,
    /// of a request whose application or user does not exist `NotFound`.
    ///
    /// The one exception to "durable on return": a poll record that causes nothing else may
    /// be committed without an fsync (docs/store.md).
    ///
    /// Concurrent transitions may share one transaction and one commit (group commit,
    /// docs/store.md); each is still judged on its own guard, in order, and each caller gets
    /// its own outcome. If that shared commit fails, every transition of it fails with the
    /// error and none is durable.
    async fn apply(&self, t: &Transition) -> StoreResult<Applied>;

    /// How the durable transitions applied so far were grouped into commits (for `/metrics`,
    /// and for tests that check batching happened).
    fn write_stats(&self) -> WriteStats;
}

/// Counters of [`Transitions::apply`]'s group commits since the store opened. Poll records
/// held in memory and flushed in batches are not counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Transitions applied in committed transactions (won, lost or failed on their own).
    pub transitions: u64,
    /// Committed transactions (each one fsync).
    pub commits: u64,
    /// Transitions waiting for the writer now.
    pub queued: u64,
    /// Committed transactions by how many transitions they held: `batch_sizes[i]` counts
    /// those of at most [`BATCH_SIZE_BOUNDS`]`[i]` (cumulative, as Prometheus buckets are).
    pub batch_sizes: [u64; BATCH_SIZE_BOUNDS.len()],
    /// Committed transactions by how long they took from `BEGIN` to the end of `COMMIT` (the
    /// fsync included): `commit_durations[i]` counts those of at most
    /// [`COMMIT_DURATION_BOUNDS_MICROS`]`[i]` µs (cumulative).
    pub commit_durations: [u64; COMMIT_DURATION_BOUNDS_MICROS.len()],
    /// The sum of those durations, in µs.
    pub commit_micros: u64,
}

/// Upper bounds of the batch-size buckets of [`WriteStats`].
pub const BATCH_SIZE_BOUNDS: [u64; 9] = [1, 2, 4, 8, 16, 32, 64, 128, 256];

/// Upper bounds of the commit-duration buckets of [`WriteStats`], in µs (0.5 ms to 1 s).
pub const COMMIT_DURATION_BOUNDS_MICROS: [u64; 10] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000,
];

/// A piece of scheduled work held by one worker until `claimed_until`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimedWork {
    pub work: ScheduledWork,
    /// How many times it was claimed before this claim.
    pub attempts: i64,
    pub claimed_until: Timestamp,
}

/// Durable scheduled work (written by [`Transitions::apply`]), claimed by workers of any node.
#[async_trait::async_trait]
pub trait WorkStore: Send + Sync {
    /// Atomically claims up to `limit` pieces of work due at `now` (`due_at <= now`) that no
    /// live lease holds (never claimed, or `claimed_until <= now`), for `worker` until
    /// `lease_until`, oldest due first. Two workers never hold the same work at once.
    async fn claim_due_work(
        &self,
        worker: &str,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
    ) -> StoreResult<Vec<ClaimedWork>>;
    /// The earliest instant at which some work can be claimed: its `due_at`, or the end of
    /// its lease while one holds it (`None`: no work at all), so a worker knows how long it
    /// may sleep.
    async fn next_work_due(&self) -> StoreResult<Option<Timestamp>>;
    /// Gives claimed work back to run again at `due_at` (after a failure). Returns false if
    /// `worker` no longer holds it.
    async fn retry_work(&self, worker: &str, id: &WorkId, due_at: Timestamp) -> StoreResult<bool>;
}

/// Single-use JWT ids.
#[async_trait::async_trait]
pub trait JtiStore: Send + Sync {
    // --- single-use JWT ids -------------------------------------------------------------
    /// Remembers `jti` under `namespace` (e.g. "client_assertion:<client_id>") until
    /// `expires_at`. Returns false if it was already remembered and not yet expired.
    async fn use_jti(
        &self,
        env_id: &EnvironmentId,
        namespace: &str,
        jti: &str,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> StoreResult<bool>;
}
