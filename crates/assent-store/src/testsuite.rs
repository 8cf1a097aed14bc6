//! The one behavioural test suite every [`Store`] implementation must pass.
//!
//! Each test is a `pub async fn` taking the store as `&dyn Store` (or, for tests that spawn
//! concurrent tasks, an `Arc<dyn Store>`), so SQLite and PostgreSQL run the very same
//! assertions. Tests never sleep: time is a fixed [`NOW`] passed explicitly. They create their
//! own environments with fresh ids and assert only about rows they created, so they also pass
//! against a database shared between tests (counts from `purge_expired` are lower bounds).
//!
//! # Usage
//!
//! Enable the `testsuite` feature for tests (e.g.
//! `[dev-dependencies] assent-store = { path = "...", features = ["testsuite"] }`, plus `tokio`
//! with the `macros` and `rt-multi-thread` features), then in an integration test:
//!
//! ```ignore
//! async fn store() -> assent_store::SqliteStore {
//!     assent_store::SqliteStore::open_temporary().await.unwrap()
//! }
//! assent_store::store_test_suite!(store());
//! ```
//!
//! The factory expression is awaited once per test and must yield a value of a type that
//! implements [`Store`] (a fresh, migrated store). The macro expands to one `#[tokio::test]`
//! per suite function; invoke it in separate modules to run the suite against several stores.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use assent_core::ciba::{self, AbuseGuard, AbuseLimit, PollUpdate};
use assent_core::refresh::{self, Rotation};
use assent_core::transition::{Applied, Change, Guard, Job, ScheduledWork, Transition, WorkId};
use assent_core::{
    AbuseLimits, AccessTokenRecord, ActivityType, Actor, ActorType, Application, ApplicationId,
    AuditEntry, AutoDecision, CibaRequest, CibaSettings, CibaStatus, Decision, DecisionChannel,
    DecisionOutcome, DeliveryMode, Device, DeviceEnrollment, DeviceKeyAlgorithm, Environment,
    EnvironmentId, EnvironmentType, GrantType, IssuedTokens, Page, RefreshTokenRecord,
    SigningAlgorithm, SigningKey, Timestamp, TokenEndpointAuthMethod, User, UserId, new_id,
};

use crate::{
    ActivityFilter, CibaRequestFilter, ClaimedWork, META_KEY_CHECK, Resealed, SealedKind,
    SealedValue, Store, StoreError, StoreResult, UniqueField, WakeKey, WakeUp,
};

/// Expands to one `#[tokio::test]` per suite function, each on a fresh store from `$factory`
/// (an expression whose `.await` yields an `impl Store`). See the module documentation.
#[macro_export]
macro_rules! store_test_suite {
    ($factory:expr) => {
        $crate::store_test_suite!(@by_ref $factory;
            environments_crud,
            environments_paging,
            delete_environment_cascades,
            applications_crud,
            application_secret,
            applications_isolated_between_environments,
            applications_paging,
            malformed_cursor_is_rejected,
            users_crud,
            usernames_and_emails_unique_case_insensitively,
            same_username_in_another_environment,
            find_users,
            list_users_by_username,
            delete_user_cascades,
            delete_application_cascades,
            signing_key_rotation,
            signing_keys_per_algorithm,
            signing_key_insert_if_absent,
            ciba_insert_get,
            ciba_insert_guarded_limits,
            ciba_record_poll_compare_and_set,
            ciba_decide_once,
            ciba_decide_after_expiry,
            ciba_deny_and_cancel,
            ciba_redeem_once,
            ciba_redeem_requires_approved_unexpired,
            ciba_list_filters,
            ciba_expire_once,
            apply_with_scheduled_work,
            apply_refuses_malformed_transitions,
            access_tokens,
            revoke_tokens_for_request,
            refresh_rotation_and_reuse,
            refresh_invalid,
            refresh_reuse_grace,
            revoke_refresh_family,
            use_jti_once,
            purge_expired,
            server_meta_roundtrip,
            reseal_all_in_one_transaction,
            wake_ups_on_decision,
            wake_ups_on_new_request,
            wake_ups_on_redemption,
            work_claims_only_due_work_oldest_first,
            work_lease_excludes_other_workers_until_it_ends,
            work_given_back_only_by_its_holder,
            work_next_due,
            wake_ups_on_scheduled_work,
            devices_crud_audited,
            device_enrollment_single_use,
            audit_entries_written_with_their_transition,
            audit_log_filters_and_pages,
            device_notified_once,
            pending_for_user_and_expired_pending,
        );
        $crate::store_test_suite!(@shared $factory;
            ciba_redeem_concurrently,
            ciba_insert_guarded_concurrently,
            signing_key_insert_if_absent_concurrently,
            ciba_decide_concurrently,
            ciba_poll_concurrently,
            refresh_rotate_concurrently,
            ciba_decide_redeem_expire_race,
            device_enrollment_concurrently,
        );
        $crate::store_test_suite!(@held $factory;
            group_commit_decisions_in_one_batch,
            group_commit_redemptions_in_one_batch,
            group_commit_admissions_in_one_batch,
            group_commit_failure_fails_its_caller_only,
            group_commit_sees_earlier_transitions_of_its_batch,
            group_commit_races_across_batches,
        );
    };
    (@by_ref $factory:expr; $($name:ident),+ $(,)?) => {
        $(
            #[::tokio::test]
            async fn $name() {
                let store = $factory.await;
                $crate::testsuite::$name(&store).await;
            }
        )+
    };
    (@held $factory:expr; $($name:ident),+ $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                $crate::testsuite::$name(::std::sync::Arc::new($factory.await)).await;
            }
        )+
    };
    (@shared $factory:expr; $($name:ident),+ $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let store: ::std::sync::Arc<dyn $crate::Store> =
                    ::std::sync::Arc::new($factory.await);
                $crate::testsuite::$name(store).await;
            }
        )+
    };
}

/// The fixed "now" of every test.
pub const NOW: Timestamp = Timestamp(1_800_000_000_000);

// --- fixtures ---------------------------------------------------------------------------------

pub fn environment() -> Environment {
    Environment {
        id: new_id().into(),
        name: "Test environment".into(),
        description: Some("for the store test suite".into()),
        env_type: EnvironmentType::Sandbox,
        abuse_limits: AbuseLimits::defaults_for(EnvironmentType::Sandbox),
        created_at: NOW,
        updated_at: NOW,
    }
}

pub fn application(env_id: &EnvironmentId) -> Application {
    Application {
        id: new_id().into(),
        environment_id: env_id.clone(),
        name: "Test app".into(),
        description: None,
        enabled: true,
        protocol: "OPENID_CONNECT".into(),
        app_type: "CUSTOM_APP".into(),
        grant_types: vec![GrantType::Ciba, GrantType::RefreshToken],
        token_endpoint_auth_method: TokenEndpointAuthMethod::ClientSecretBasic,
        jwks: Some(serde_json::json!({"keys": []})),
        jwks_url: None,
        id_token_signing_algorithm: SigningAlgorithm::RS256,
        access_token_duration_seconds: 3600,
        refresh_token_duration_seconds: 86400,
        refresh_token_reuse_grace_seconds: 0,
        ciba: CibaSettings::default(),
        created_at: NOW,
        updated_at: NOW,
    }
}

pub fn user(env_id: &EnvironmentId, username: &str) -> User {
    User {
        id: new_id().into(),
        environment_id: env_id.clone(),
        username: username.into(),
        email: Some(format!("{username}@example.com")),
        given_name: Some("Given".into()),
        family_name: Some("Family".into()),
        phone_number: None,
        password_hash: Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into()),
        enabled: true,
        auto_decision: None,
        auto_decision_delay_ms: None,
        created_at: NOW,
        updated_at: NOW,
    }
}

pub fn ciba_request(
    env_id: &EnvironmentId,
    app_id: &ApplicationId,
    user_id: &UserId,
) -> CibaRequest {
    CibaRequest {
        auth_req_id: new_id().into(),
        environment_id: env_id.clone(),
        application_id: app_id.clone(),
        user_id: user_id.clone(),
        scope: "openid profile".into(),
        binding_message: Some("W4SCT".into()),
        acr_values: None,
        authorization_details: Some(serde_json::json!([{"type": "payment"}])),
        delivery_mode: DeliveryMode::Poll,
        client_notification_token: None,
        created_at: NOW,
        expires_at: NOW.plus_secs(120),
        interval_seconds: 2,
        last_polled_at: None,
        status: CibaStatus::Pending,
        decision: None,
        redeemed_at: None,
    }
}

pub fn decision(outcome: DecisionOutcome) -> Decision {
    Decision {
        outcome,
        channel: DecisionChannel::Web,
        device_id: None,
        amr: vec!["pwd".into()],
        evidence: Some(serde_json::json!({"ip": "192.0.2.1"})),
        decided_at: NOW,
    }
}

pub fn access_token(req: &CibaRequest) -> AccessTokenRecord {
    AccessTokenRecord {
        jti: new_id(),
        environment_id: req.environment_id.clone(),
        application_id: req.application_id.clone(),
        user_id: Some(req.user_id.clone()),
        scope: req.scope.clone(),
        auth_req_id: Some(req.auth_req_id.clone()),
        refresh_family_id: None,
        issued_at: NOW,
        expires_at: NOW.plus_secs(3600),
        revoked: false,
    }
}

pub fn refresh_token(req: &CibaRequest, family_id: &str) -> RefreshTokenRecord {
    RefreshTokenRecord {
        token_hash: new_id(),
        family_id: family_id.into(),
        environment_id: req.environment_id.clone(),
        application_id: req.application_id.clone(),
        user_id: req.user_id.clone(),
        scope: req.scope.clone(),
        auth_req_id: Some(req.auth_req_id.clone()),
        auth_time: NOW,
        acr: Some("urn:assent:acr:pwd".into()),
        amr: vec!["pwd".into(), "mfa".into()],
        issued_at: NOW,
        expires_at: NOW.plus_secs(86400),
        rotated_at: None,
        revoked: false,
    }
}

pub fn signing_key(
    env_id: &EnvironmentId,
    alg: SigningAlgorithm,
    created_at: Timestamp,
) -> SigningKey {
    let id = new_id();
    SigningKey {
        public_jwk: serde_json::json!({"kid": id, "kty": "OKP"}),
        id,
        environment_id: env_id.clone(),
        algorithm: alg,
        private_key_sealed: vec![1, 2, 3, 4],
        current: true,
        created_at,
        retire_at: None,
    }
}

/// An environment with one application and one user in it.
pub struct Seed {
    pub env: Environment,
    pub app: Application,
    pub user: User,
}

pub async fn seed(store: &dyn Store) -> Seed {
    let env = environment();
    store.create_environment(&env).await.unwrap();
    let app = application(&env.id);
    store.create_application(&app, b"sealed").await.unwrap();
    let user = user(&env.id, "alice");
    store.create_user(&user).await.unwrap();
    Seed { env, app, user }
}

impl Seed {
    pub fn request(&self) -> CibaRequest {
        ciba_request(&self.env.id, &self.app.id, &self.user.id)
    }

    /// Inserts a pending request and returns it.
    pub async fn pending(&self, store: &dyn Store) -> CibaRequest {
        let req = self.request();
        insert(store, &req).await.unwrap();
        req
    }

    /// Inserts a request and approves it.
    pub async fn approved(&self, store: &dyn Store) -> CibaRequest {
        let req = self.pending(store).await;
        let won = decide(store, &req, &decision(DecisionOutcome::Approve), NOW).await;
        assert!(won);
        req
    }
}

// --- state changes through core ---------------------------------------------------------------
//
// The suite persists state changes as the server does: core builds the transition from the
// state as read (possibly stale, which is how a lost race looks to the store), the store
// applies it. A transition core refuses to build changes nothing.

/// Stores `req` unguarded (`ciba::admit`).
async fn insert(store: &dyn Store, req: &CibaRequest) -> StoreResult<Applied> {
    store.apply(&ciba::admit(req.clone(), None)).await
}

/// Stores `req` under the abuse guard: `Won` (stored) or `Limited`.
async fn insert_guarded(store: &dyn Store, req: &CibaRequest, guard: &AbuseGuard) -> Applied {
    store
        .apply(&ciba::admit(req.clone(), Some(*guard)))
        .await
        .unwrap()
}

/// `req` as a caller would see it in environment `env_id` (to show that environments are
/// isolated).
fn in_env(req: &CibaRequest, env_id: &EnvironmentId) -> CibaRequest {
    CibaRequest {
        environment_id: env_id.clone(),
        ..req.clone()
    }
}

/// Records a poll of `req` (as read). Returns whether it was recorded.
async fn record_poll(store: &dyn Store, req: &CibaRequest, update: &PollUpdate) -> bool {
    store
        .apply(&ciba::record_poll(req, *update))
        .await
        .unwrap()
        .won()
}

/// Decides `req` (as read) at `now` through `ciba::decide`. Returns whether the decision
/// was stored (false when core refuses it or it lost in the store).
async fn decide(store: &dyn Store, req: &CibaRequest, decision: &Decision, now: Timestamp) -> bool {
    match ciba::decide(req, decision.clone(), now) {
        Ok(t) => store.apply(&t).await.unwrap().won(),
        Err(_) => false,
    }
}

/// Redeems `req` (as read) at `at` with `tokens`. Returns whether this redemption won.
async fn redeem(
    store: &dyn Store,
    req: &CibaRequest,
    at: Timestamp,
    tokens: &IssuedTokens,
) -> bool {
    store
        .apply(&ciba::redeem(req, tokens.clone(), at))
        .await
        .unwrap()
        .won()
}

/// What presenting a refresh token came to.
#[derive(Debug, PartialEq)]
#[expect(
    clippy::large_enum_variant,
    reason = "a test's result, compared at once"
)]
enum RefreshOutcome {
    /// Rotated: the successors are stored. Holds the presented token as stored afterwards.
    Rotated(RefreshTokenRecord),
    /// Reuse: the family is revoked.
    Reused,
    /// Unknown (in this environment), or expired unrotated.
    Invalid,
}

/// Presents the refresh token `token_hash` at `now` as the refresh grant does: read it, judge
/// it (`refresh::rotate`), apply; a rotation that lost is read and judged again.
async fn rotate(
    store: &dyn Store,
    env_id: &EnvironmentId,
    token_hash: &str,
    now: Timestamp,
    reuse_grace_secs: i64,
    new_token: &RefreshTokenRecord,
    new_access: &AccessTokenRecord,
) -> RefreshOutcome {
    let read = || async { store.get_refresh_token(env_id, token_hash).await.unwrap() };
    loop {
        let Some(presented) = read().await else {
            return RefreshOutcome::Invalid;
        };
        match refresh::rotate(&presented, new_token, new_access, now, reuse_grace_secs) {
            Rotation::Rotate(t) | Rotation::WithinGrace(t) => {
                if store.apply(&t).await.unwrap().won() {
                    return RefreshOutcome::Rotated(read().await.unwrap());
                }
            }
            Rotation::Reused(t) => {
                assert_eq!(store.apply(&t).await.unwrap(), Applied::Won);
                return RefreshOutcome::Reused;
            }
            Rotation::Invalid => return RefreshOutcome::Invalid,
        }
    }
}

/// Revokes the access token `jti` of `env_id`. Returns whether a live token of that
/// environment was revoked.
async fn revoke_access(store: &dyn Store, env_id: &EnvironmentId, jti: &str) -> bool {
    let live = |t: Option<AccessTokenRecord>| t.is_some_and(|t| !t.revoked);
    let before = live(store.get_access_token(env_id, jti).await.unwrap());
    let applied = store
        .apply(&Transition::revoke_access_token(env_id.clone(), jti))
        .await
        .unwrap();
    assert_eq!(applied, Applied::Won);
    let after = live(store.get_access_token(env_id, jti).await.unwrap());
    assert!(!after, "the token is revoked after the transition");
    before
}

/// The tokens a test created, by environment: the store reports whether a transition won,
/// not how many rows it touched, so a revocation is measured on them.
struct Watched<'a> {
    env_id: &'a EnvironmentId,
    access: &'a [&'a str],
    refresh: &'a [&'a str],
}

impl Watched<'_> {
    async fn revoked(&self, store: &dyn Store) -> u64 {
        let mut n = 0;
        for jti in self.access {
            let t = store.get_access_token(self.env_id, jti).await.unwrap();
            n += u64::from(t.unwrap().revoked);
        }
        for hash in self.refresh {
            let t = store.get_refresh_token(self.env_id, hash).await.unwrap();
            n += u64::from(t.unwrap().revoked);
        }
        n
    }
}

/// Applies `t` (which must win) and returns how many of the watched tokens it revoked.
async fn revoked_by(store: &dyn Store, t: &Transition, watched: &Watched<'_>) -> u64 {
    let before = watched.revoked(store).await;
    assert_eq!(store.apply(t).await.unwrap(), Applied::Won);
    watched.revoked(store).await - before
}

#[expect(
    clippy::needless_pass_by_value,
    reason = "takes the result of the call under test as it is: `assert_not_found(store.x().await)`"
)]
fn assert_not_found<T: std::fmt::Debug>(result: Result<T, StoreError>) {
    assert!(
        matches!(result, Err(StoreError::NotFound)),
        "expected NotFound, got {result:?}"
    );
}

fn assert_conflict<T: std::fmt::Debug>(result: Result<T, StoreError>, field: UniqueField) {
    match result {
        Err(StoreError::Conflict(f)) => assert_eq!(f, field),
        other => panic!("expected Conflict({field}), got {other:?}"),
    }
}

// --- environments -----------------------------------------------------------------------------

pub async fn environments_crud(store: &dyn Store) {
    store.ping().await.unwrap();
    let mut env = environment();
    store.create_environment(&env).await.unwrap();
    assert_eq!(store.get_environment(&env.id).await.unwrap(), env);
    assert_conflict(store.create_environment(&env).await, UniqueField::Id);

    env.name = "Renamed".into();
    env.description = None;
    env.env_type = EnvironmentType::Production;
    env.abuse_limits = AbuseLimits {
        max_pending_requests_per_user: Some(3),
        authorization_requests_per_minute: None,
    };
    env.updated_at = NOW.plus_secs(1);
    store.update_environment(&env).await.unwrap();
    assert_eq!(store.get_environment(&env.id).await.unwrap(), env);

    store.delete_environment(&env.id).await.unwrap();
    assert_not_found(store.get_environment(&env.id).await);
    assert_not_found(store.delete_environment(&env.id).await);
    assert_not_found(store.update_environment(&env).await);
}

pub async fn environments_paging(store: &dyn Store) {
    // Far-future creation times put these after anything else in a shared database.
    let base = Timestamp(4_000_000_000_000);
    let mut created = Vec::new();
    for i in 0..3 {
        let mut env = environment();
        env.created_at = base.plus_millis(i);
        store.create_environment(&env).await.unwrap();
        created.push(env);
    }
    let mut seen = Vec::new();
    let mut page = Page::first(2);
    loop {
        let list = store.list_environments(&page).await.unwrap();
        assert!(list.items.len() <= 2);
        assert!(list.total >= 3);
        seen.extend(list.items);
        match list.next {
            Some(next) => page.cursor = Some(next),
            None => break,
        }
    }
    let ours: Vec<_> = seen
        .iter()
        .filter(|e| created.contains(e))
        .cloned()
        .collect();
    assert_eq!(ours, created);
    for env in &created {
        store.delete_environment(&env.id).await.unwrap();
    }
}

pub async fn delete_environment_cascades(store: &dyn Store) {
    let s = seed(store).await;
    let req = s.approved(store).await;
    let tokens = IssuedTokens {
        access_token: access_token(&req),
        refresh_token: Some(refresh_token(&req, "fam")),
    };
    assert!(redeem(store, &req, NOW, &tokens).await);
    store
        .insert_signing_key(&signing_key(&s.env.id, SigningAlgorithm::ES256, NOW), NOW)
        .await
        .unwrap();
    assert!(
        store
            .use_jti(&s.env.id, "ns", "j1", NOW.plus_secs(60), NOW)
            .await
            .unwrap()
    );

    store.delete_environment(&s.env.id).await.unwrap();

    assert_not_found(store.get_application(&s.env.id, &s.app.id).await);
    assert_not_found(store.get_user(&s.env.id, &s.user.id).await);
    assert_not_found(store.get_ciba_request(&s.env.id, &req.auth_req_id).await);
    assert!(store.list_signing_keys(&s.env.id).await.unwrap().is_empty());
    let jti = &tokens.access_token.jti;
    assert_eq!(store.get_access_token(&s.env.id, jti).await.unwrap(), None);
    let hash = &tokens.refresh_token.as_ref().unwrap().token_hash;
    assert_eq!(
        store.get_refresh_token(&s.env.id, hash).await.unwrap(),
        None
    );
    // Recreating the environment starts from nothing: the jti is usable again.
    let mut again = s.env.clone();
    again.name = "Again".into();
    store.create_environment(&again).await.unwrap();
    assert!(
        store
            .use_jti(&s.env.id, "ns", "j1", NOW.plus_secs(60), NOW)
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .list_applications(&s.env.id, &Page::default())
            .await
            .unwrap()
            .total,
        0
    );
}

// --- applications -----------------------------------------------------------------------------

pub async fn applications_crud(store: &dyn Store) {
    let env = environment();
    store.create_environment(&env).await.unwrap();
    let mut app = application(&env.id);
    app.jwks = Some(serde_json::Value::String("{\"keys\":[]}".into()));
    store.create_application(&app, b"secret").await.unwrap();
    assert_eq!(store.get_application(&env.id, &app.id).await.unwrap(), app);
    assert_conflict(
        store.create_application(&app, b"secret").await,
        UniqueField::Id,
    );

    app.name = "Renamed".into();
    app.description = Some("described".into());
    app.enabled = false;
    app.grant_types = vec![GrantType::ClientCredentials];
    app.token_endpoint_auth_method = TokenEndpointAuthMethod::PrivateKeyJwt;
    app.jwks = None;
    app.jwks_url = Some("https://client.example/jwks".into());
    app.id_token_signing_algorithm = SigningAlgorithm::EdDSA;
    app.access_token_duration_seconds = 60;
    app.refresh_token_duration_seconds = 120;
    app.refresh_token_reuse_grace_seconds = 30;
    app.ciba.delivery_mode = DeliveryMode::Ping;
    app.ciba.notification_endpoint = Some("https://client.example/cb".into());
    app.updated_at = NOW.plus_secs(5);
    store.update_application(&app).await.unwrap();
    assert_eq!(store.get_application(&env.id, &app.id).await.unwrap(), app);

    store.delete_application(&env.id, &app.id).await.unwrap();
    assert_not_found(store.get_application(&env.id, &app.id).await);
    assert_not_found(store.delete_application(&env.id, &app.id).await);
    assert_not_found(store.update_application(&app).await);

    // An application in an environment that does not exist.
    assert_not_found(
        store
            .create_application(&application(&new_id().into()), b"s")
            .await,
    );
}

pub async fn application_secret(store: &dyn Store) {
    let s = seed(store).await;
    assert_eq!(
        store
            .get_application_secret(&s.env.id, &s.app.id)
            .await
            .unwrap(),
        b"sealed"
    );
    let later = NOW.plus_secs(10);
    store
        .set_application_secret(&s.env.id, &s.app.id, b"rotated", later)
        .await
        .unwrap();
    assert_eq!(
        store
            .get_application_secret(&s.env.id, &s.app.id)
            .await
            .unwrap(),
        b"rotated"
    );
    assert_eq!(
        store
            .get_application(&s.env.id, &s.app.id)
            .await
            .unwrap()
            .updated_at,
        later
    );
    assert_not_found(
        store
            .get_application_secret(&s.env.id, &"nope".into())
            .await,
    );
    assert_not_found(
        store
            .set_application_secret(&s.env.id, &"nope".into(), b"x", later)
            .await,
    );
}

pub async fn applications_isolated_between_environments(store: &dyn Store) {
    let a = seed(store).await;
    let b = seed(store).await;
    assert_not_found(store.get_application(&b.env.id, &a.app.id).await);
    assert_not_found(store.get_application_secret(&b.env.id, &a.app.id).await);
    assert_not_found(
        store
            .set_application_secret(&b.env.id, &a.app.id, b"x", NOW)
            .await,
    );
    assert_not_found(store.delete_application(&b.env.id, &a.app.id).await);
    let mut moved = a.app.clone();
    moved.environment_id = b.env.id.clone();
    assert_not_found(store.update_application(&moved).await);
    assert_not_found(store.get_user(&b.env.id, &a.user.id).await);

    let list = store
        .list_applications(&b.env.id, &Page::default())
        .await
        .unwrap();
    assert_eq!(list.total, 1);
    assert_eq!(list.items, vec![b.app.clone()]);
    // A still has its application, untouched.
    assert_eq!(
        store.get_application(&a.env.id, &a.app.id).await.unwrap(),
        a.app
    );
    assert_eq!(
        store
            .get_application_secret(&a.env.id, &a.app.id)
            .await
            .unwrap(),
        b"sealed"
    );
}

pub async fn applications_paging(store: &dyn Store) {
    let env = environment();
    store.create_environment(&env).await.unwrap();
    let mut apps = Vec::new();
    for i in 0..5 {
        let mut app = application(&env.id);
        // Two share a creation time: the id breaks the tie.
        app.created_at = NOW.plus_millis(i.min(3));
        store.create_application(&app, b"s").await.unwrap();
        apps.push(app);
    }
    apps.sort_by(|x, y| (x.created_at, &x.id).cmp(&(y.created_at, &y.id)));

    let first = store
        .list_applications(&env.id, &Page::first(2))
        .await
        .unwrap();
    assert_eq!(first.total, 5);
    assert_eq!(first.items, apps[0..2]);
    let next = first.next.clone().expect("a next cursor");

    let second = store
        .list_applications(
            &env.id,
            &Page {
                limit: 2,
                cursor: Some(next),
            },
        )
        .await
        .unwrap();
    assert_eq!(second.total, 5);
    assert_eq!(second.items, apps[2..4]);

    let third = store
        .list_applications(
            &env.id,
            &Page {
                limit: 2,
                cursor: second.next.clone(),
            },
        )
        .await
        .unwrap();
    assert_eq!(third.total, 5);
    assert_eq!(third.items, apps[4..5]);
    assert_eq!(third.next, None);

    // Limit 0 is the default limit: everything fits.
    let all = store
        .list_applications(&env.id, &Page::first(0))
        .await
        .unwrap();
    assert_eq!(all.items, apps);
    assert_eq!(all.next, None);
    // An exact fit has no next page either.
    let exact = store
        .list_applications(&env.id, &Page::first(5))
        .await
        .unwrap();
    assert_eq!(exact.items.len(), 5);
    assert_eq!(exact.next, None);
}

pub async fn malformed_cursor_is_rejected(store: &dyn Store) {
    let s = seed(store).await;
    for cursor in ["", "garbage", "x:y"] {
        let page = Page {
            limit: 2,
            cursor: Some(cursor.into()),
        };
        let result = store.list_applications(&s.env.id, &page).await;
        assert!(
            matches!(result, Err(StoreError::Corrupt(_))),
            "{cursor:?}: {result:?}"
        );
    }
}

// --- users ------------------------------------------------------------------------------------

pub async fn users_crud(store: &dyn Store) {
    let env = environment();
    store.create_environment(&env).await.unwrap();
    let mut u = user(&env.id, "Bob");
    u.phone_number = Some("+1 (555) 010-9999".into());
    u.auto_decision = Some(AutoDecision::Approve);
    u.auto_decision_delay_ms = Some(1500);
    store.create_user(&u).await.unwrap();
    assert_eq!(store.get_user(&env.id, &u.id).await.unwrap(), u);

    u.username = "Robert".into();
    u.email = None;
    u.given_name = None;
    u.phone_number = Some("+15550100000".into());
    u.password_hash = None;
    u.enabled = false;
    u.auto_decision = Some(AutoDecision::Deny);
    u.auto_decision_delay_ms = None;
    u.updated_at = NOW.plus_secs(3);
    store.update_user(&u).await.unwrap();
    assert_eq!(store.get_user(&env.id, &u.id).await.unwrap(), u);
    assert_eq!(
        store.find_user_by_username(&env.id, "bob").await.unwrap(),
        None
    );
    assert_eq!(
        store
            .find_user_by_username(&env.id, "ROBERT")
            .await
            .unwrap(),
        Some(u.clone())
    );
    assert_eq!(
        store
            .find_user_by_phone(&env.id, "+15550100000")
            .await
            .unwrap(),
        Some(u.clone())
    );
    assert_eq!(
        store
            .find_user_by_phone(&env.id, "+15550109999")
            .await
            .unwrap(),
        None
    );

    store.delete_user(&env.id, &u.id).await.unwrap();
    assert_not_found(store.get_user(&env.id, &u.id).await);
    assert_not_found(store.delete_user(&env.id, &u.id).await);
    assert_not_found(store.update_user(&u).await);
}

pub async fn usernames_and_emails_unique_case_insensitively(store: &dyn Store) {
    let env = environment();
    store.create_environment(&env).await.unwrap();
    let alice = user(&env.id, "Alice");
    store.create_user(&alice).await.unwrap();

    let mut dup = user(&env.id, "ALICE");
    dup.email = Some("other@example.com".into());
    assert_conflict(store.create_user(&dup).await, UniqueField::Username);

    let mut dup = user(&env.id, "alice2");
    dup.email = Some("ALICE@Example.COM".into());
    assert_conflict(store.create_user(&dup).await, UniqueField::Email);

    // Users without email do not collide with each other.
    let mut no_mail_1 = user(&env.id, "carol");
    no_mail_1.email = None;
    let mut no_mail_2 = user(&env.id, "dave");
    no_mail_2.email = None;
    store.create_user(&no_mail_1).await.unwrap();
    store.create_user(&no_mail_2).await.unwrap();

    // Updates are checked too.
    let mut renamed = no_mail_1.clone();
    renamed.username = "aLiCe".into();
    assert_conflict(store.update_user(&renamed).await, UniqueField::Username);
    let mut remailed = no_mail_2.clone();
    remailed.email = Some("alice@EXAMPLE.com".into());
    assert_conflict(store.update_user(&remailed).await, UniqueField::Email);
    assert_eq!(
        store.get_user(&env.id, &no_mail_1.id).await.unwrap(),
        no_mail_1
    );
}

pub async fn same_username_in_another_environment(store: &dyn Store) {
    let a = seed(store).await;
    let b = environment();
    store.create_environment(&b).await.unwrap();
    let twin = user(&b.id, "ALICE");
    store.create_user(&twin).await.unwrap();
    assert_eq!(
        store.find_user_by_username(&b.id, "alice").await.unwrap(),
        Some(twin)
    );
    assert_eq!(
        store
            .find_user_by_username(&a.env.id, "alice")
            .await
            .unwrap(),
        Some(a.user)
    );
}

pub async fn find_users(store: &dyn Store) {
    let s = seed(store).await;
    let mut u = user(&s.env.id, "Erin.Smith");
    u.email = Some("Erin.Smith@Example.com".into());
    u.phone_number = Some("+44 20 7946 0958".into());
    store.create_user(&u).await.unwrap();

    let by_name = store
        .find_user_by_username(&s.env.id, "erin.smith")
        .await
        .unwrap();
    assert_eq!(by_name, Some(u.clone()));
    let by_mail = store
        .find_user_by_email(&s.env.id, "ERIN.SMITH@EXAMPLE.COM")
        .await
        .unwrap();
    assert_eq!(by_mail, Some(u.clone()));
    let by_phone = store
        .find_user_by_phone(&s.env.id, "+442079460958")
        .await
        .unwrap();
    assert_eq!(by_phone, Some(u.clone()));

    assert_eq!(
        store
            .find_user_by_username(&s.env.id, "nobody")
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .find_user_by_email(&s.env.id, "nobody@example.com")
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .find_user_by_phone(&s.env.id, "+10000000000")
            .await
            .unwrap(),
        None
    );

    // A second user with the same number makes the number name nobody.
    let mut twin = user(&s.env.id, "erin.twin");
    twin.phone_number = u.phone_number.clone();
    store.create_user(&twin).await.unwrap();
    assert_eq!(
        store
            .find_user_by_phone(&s.env.id, "+442079460958")
            .await
            .unwrap(),
        None
    );

    let other = environment();
    store.create_environment(&other).await.unwrap();
    assert_eq!(
        store
            .find_user_by_username(&other.id, "erin.smith")
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .find_user_by_email(&other.id, "erin.smith@example.com")
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .find_user_by_phone(&other.id, "+442079460958")
            .await
            .unwrap(),
        None
    );
}

pub async fn list_users_by_username(store: &dyn Store) {
    let s = seed(store).await;
    let mut bob = user(&s.env.id, "Bob");
    bob.created_at = NOW.plus_millis(1);
    store.create_user(&bob).await.unwrap();

    let all = store
        .list_users(&s.env.id, None, &Page::default())
        .await
        .unwrap();
    assert_eq!(all.total, 2);
    assert_eq!(all.items, vec![s.user.clone(), bob.clone()]);

    let filtered = store
        .list_users(&s.env.id, Some("BOB"), &Page::default())
        .await
        .unwrap();
    assert_eq!(filtered.total, 1);
    assert_eq!(filtered.items, vec![bob]);
    assert_eq!(filtered.next, None);

    let none = store
        .list_users(&s.env.id, Some("nobody"), &Page::default())
        .await
        .unwrap();
    assert_eq!(none.total, 0);
    assert!(none.items.is_empty());

    let paged = store
        .list_users(&s.env.id, None, &Page::first(1))
        .await
        .unwrap();
    assert_eq!(paged.total, 2);
    assert_eq!(paged.items, vec![s.user]);
    assert!(paged.next.is_some());
}

pub async fn delete_user_cascades(store: &dyn Store) {
    let s = seed(store).await;
    let req = s.approved(store).await;
    let tokens = IssuedTokens {
        access_token: access_token(&req),
        refresh_token: Some(refresh_token(&req, "fam")),
    };
    assert!(redeem(store, &req, NOW, &tokens).await);

    store.delete_user(&s.env.id, &s.user.id).await.unwrap();
    assert_not_found(store.get_ciba_request(&s.env.id, &req.auth_req_id).await);
    assert_eq!(
        store
            .get_access_token(&s.env.id, &tokens.access_token.jti)
            .await
            .unwrap(),
        None
    );
    let hash = &tokens.refresh_token.as_ref().unwrap().token_hash;
    assert_eq!(
        store.get_refresh_token(&s.env.id, hash).await.unwrap(),
        None
    );
    // The application is untouched.
    assert_eq!(
        store.get_application(&s.env.id, &s.app.id).await.unwrap(),
        s.app
    );
}

pub async fn delete_application_cascades(store: &dyn Store) {
    let s = seed(store).await;
    let req = s.approved(store).await;
    let tokens = IssuedTokens {
        access_token: access_token(&req),
        refresh_token: Some(refresh_token(&req, "fam")),
    };
    assert!(redeem(store, &req, NOW, &tokens).await);

    store
        .delete_application(&s.env.id, &s.app.id)
        .await
        .unwrap();
    assert_not_found(store.get_ciba_request(&s.env.id, &req.auth_req_id).await);
    assert_eq!(
        store
            .get_access_token(&s.env.id, &tokens.access_token.jti)
            .await
            .unwrap(),
        None
    );
    let hash = &tokens.refresh_token.as_ref().unwrap().token_hash;
    assert_eq!(
        store.get_refresh_token(&s.env.id, hash).await.unwrap(),
        None
    );
    assert_eq!(store.get_user(&s.env.id, &s.user.id).await.unwrap(), s.user);
}

// --- signing keys -----------------------------------------------------------------------------

pub async fn signing_key_rotation(store: &dyn Store) {
    let env = environment();
    store.create_environment(&env).await.unwrap();
    assert_eq!(
        store
            .current_signing_key(&env.id, SigningAlgorithm::RS256)
            .await
            .unwrap(),
        None
    );

    let first = signing_key(&env.id, SigningAlgorithm::RS256, NOW);
    store.insert_signing_key(&first, NOW).await.unwrap();
    assert_eq!(
        store
            .current_signing_key(&env.id, SigningAlgorithm::RS256)
            .await
            .unwrap(),
        Some(first.clone())
    );

    let retire_at = NOW.plus_secs(7200);
    let second = signing_key(&env.id, SigningAlgorithm::RS256, NOW.plus_secs(60));
    store.insert_signing_key(&second, retire_at).await.unwrap();
    assert_eq!(
        store
            .current_signing_key(&env.id, SigningAlgorithm::RS256)
            .await
            .unwrap(),
        Some(second.clone())
    );

    let keys = store.list_signing_keys(&env.id).await.unwrap();
    let retired = SigningKey {
        current: false,
        retire_at: Some(retire_at),
        ..first
    };
    assert_eq!(keys, vec![second, retired]);

    let other = environment();
    store.create_environment(&other).await.unwrap();
    assert!(store.list_signing_keys(&other.id).await.unwrap().is_empty());
    assert_eq!(
        store
            .current_signing_key(&other.id, SigningAlgorithm::RS256)
            .await
            .unwrap(),
        None
    );
}

pub async fn signing_keys_per_algorithm(store: &dyn Store) {
    let env = environment();
    store.create_environment(&env).await.unwrap();
    let rsa = signing_key(&env.id, SigningAlgorithm::RS256, NOW);
    let ec = signing_key(&env.id, SigningAlgorithm::ES256, NOW.plus_secs(1));
    store
        .insert_signing_key(&rsa, NOW.plus_secs(100))
        .await
        .unwrap();
    store
        .insert_signing_key(&ec, NOW.plus_secs(100))
        .await
        .unwrap();
    assert_eq!(
        store
            .current_signing_key(&env.id, SigningAlgorithm::RS256)
            .await
            .unwrap(),
        Some(rsa.clone())
    );
    assert_eq!(
        store
            .current_signing_key(&env.id, SigningAlgorithm::ES256)
            .await
            .unwrap(),
        Some(ec.clone())
    );
    assert_eq!(
        store
            .current_signing_key(&env.id, SigningAlgorithm::EdDSA)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store.list_signing_keys(&env.id).await.unwrap(),
        vec![ec, rsa]
    );
}

/// A first use of an algorithm inserts its key only when none is current, and gets the
/// current key back either way; an existing current key is never displaced.
pub async fn signing_key_insert_if_absent(store: &dyn Store) {
    let env = environment();
    store.create_environment(&env).await.unwrap();
    let first = signing_key(&env.id, SigningAlgorithm::ES256, NOW);
    let got = store.insert_signing_key_if_absent(&first).await.unwrap();
    assert_eq!(got, first);
    let second = signing_key(&env.id, SigningAlgorithm::ES256, NOW.plus_secs(1));
    let got = store.insert_signing_key_if_absent(&second).await.unwrap();
    assert_eq!(got, first, "the key already current is returned");
    // Another algorithm is independent.
    let ed = signing_key(&env.id, SigningAlgorithm::EdDSA, NOW.plus_secs(2));
    assert_eq!(store.insert_signing_key_if_absent(&ed).await.unwrap(), ed);
    assert_eq!(
        store.list_signing_keys(&env.id).await.unwrap(),
        vec![ed, first.clone()]
    );
    assert_eq!(
        store
            .current_signing_key(&env.id, SigningAlgorithm::ES256)
            .await
            .unwrap(),
        Some(first)
    );
    // Unknown environment.
    let orphan = signing_key(&"no-such-env".into(), SigningAlgorithm::ES256, NOW);
    assert_not_found(store.insert_signing_key_if_absent(&orphan).await);
}

/// Ten concurrent first uses of one algorithm end with one key, which all of them got.
pub async fn signing_key_insert_if_absent_concurrently(store: Arc<dyn Store>) {
    let env = environment();
    store.create_environment(&env).await.unwrap();
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let store = Arc::clone(&store);
            let key = signing_key(&env.id, SigningAlgorithm::ES256, NOW);
            tokio::spawn(async move { store.insert_signing_key_if_absent(&key).await.unwrap() })
        })
        .collect();
    let mut kids = Vec::new();
    for t in tasks {
        kids.push(t.await.unwrap().id);
    }
    kids.dedup();
    assert_eq!(kids.len(), 1, "every caller got the same key");
    let keys = store.list_signing_keys(&env.id).await.unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].id, kids[0]);
    assert!(keys[0].current);
}

// --- CIBA requests ----------------------------------------------------------------------------

fn guard(pending: Option<i64>, per_minute: Option<i64>, now: Timestamp) -> AbuseGuard {
    AbuseGuard {
        max_pending_per_user: pending,
        max_per_window: per_minute,
        window_start: now.plus_secs(-60),
        now,
    }
}

/// The pending cap counts only the user's pending, unexpired requests; the rate counts the
/// application's requests of the last 60 s; a refused request is not stored.
pub async fn ciba_insert_guarded_limits(store: &dyn Store) {
    let s = seed(store).await;
    let bob = user(&s.env.id, "bob");
    store.create_user(&bob).await.unwrap();
    let cap = guard(Some(2), None, NOW);
    let first = s.request();
    assert_eq!(insert_guarded(store, &first, &cap).await, Applied::Won);
    let second = CibaRequest {
        expires_at: NOW.plus_secs(60),
        ..s.request()
    };
    assert_eq!(insert_guarded(store, &second, &cap).await, Applied::Won);
    let third = s.request();
    assert_eq!(
        insert_guarded(store, &third, &cap).await,
        Applied::Limited {
            limit: AbuseLimit::PendingPerUser,
            free_at: NOW.plus_secs(60),
        },
        "the earliest expiry frees the first slot"
    );
    assert_not_found(store.get_ciba_request(&s.env.id, &third.auth_req_id).await);
    // Another user of the same application is not limited by alice's requests.
    let for_bob = ciba_request(&s.env.id, &s.app.id, &bob.id);
    assert_eq!(insert_guarded(store, &for_bob, &cap).await, Applied::Won);
    // A decided request no longer counts; nor does an expired one.
    decide(store, &first, &decision(DecisionOutcome::Deny), NOW).await;
    assert_eq!(insert_guarded(store, &third, &cap).await, Applied::Won);
    let later = NOW.plus_secs(60);
    let fourth = CibaRequest {
        created_at: later,
        expires_at: later.plus_secs(120),
        ..s.request()
    };
    assert_eq!(
        insert_guarded(store, &fourth, &guard(Some(2), None, later)).await,
        Applied::Won,
        "second expired at `later`"
    );

    // The rate: four requests of the application so far in [NOW, NOW+60].
    let other = seed(store).await;
    let rate = guard(None, Some(2), NOW.plus_secs(10));
    let a = CibaRequest {
        created_at: NOW,
        ..other.request()
    };
    let b = CibaRequest {
        created_at: NOW.plus_secs(5),
        ..other.request()
    };
    assert_eq!(insert_guarded(store, &a, &rate).await, Applied::Won);
    assert_eq!(insert_guarded(store, &b, &rate).await, Applied::Won);
    let c = CibaRequest {
        created_at: NOW.plus_secs(10),
        ..other.request()
    };
    assert_eq!(
        insert_guarded(store, &c, &rate).await,
        Applied::Limited {
            limit: AbuseLimit::RatePerApplication,
            free_at: NOW.plus_secs(60),
        },
        "the oldest request in the window leaves it first"
    );
    // Once the oldest left the window, there is room again.
    let after = guard(None, Some(2), NOW.plus_secs(60));
    assert_eq!(insert_guarded(store, &c, &after).await, Applied::Won);
}

/// A burst of concurrent inserts for one user with a cap of 5 leaves exactly 5 pending.
pub async fn ciba_insert_guarded_concurrently(store: Arc<dyn Store>) {
    let s = seed(store.as_ref()).await;
    let cap = guard(Some(5), None, NOW);
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let store = Arc::clone(&store);
            let req = s.request();
            tokio::spawn(async move { insert_guarded(store.as_ref(), &req, &cap).await })
        })
        .collect();
    let mut inserted = 0;
    for t in tasks {
        match t.await.unwrap() {
            Applied::Won => inserted += 1,
            Applied::Limited { limit, .. } => assert_eq!(limit, AbuseLimit::PendingPerUser),
            Applied::Lost => panic!("an admission completing no work cannot lose"),
        }
    }
    assert_eq!(inserted, 5);
    let filter = CibaRequestFilter {
        status: Some(CibaStatus::Pending),
        ..CibaRequestFilter::default()
    };
    let list = store
        .list_ciba_requests(&s.env.id, &filter, NOW, &Page::first(100))
        .await
        .unwrap();
    assert_eq!(list.items.len(), 5);
}

pub async fn ciba_insert_get(store: &dyn Store) {
    let s = seed(store).await;
    let mut req = s.request();
    req.acr_values = Some("urn:assent:acr:pwd urn:assent:acr:hwk".into());
    req.delivery_mode = DeliveryMode::Ping;
    req.client_notification_token = Some("8d67dc78-7faa-4d41-aabd-67707b374255".into());
    req.last_polled_at = Some(NOW);
    insert(store, &req).await.unwrap();
    assert_eq!(
        store
            .get_ciba_request(&s.env.id, &req.auth_req_id)
            .await
            .unwrap(),
        req
    );
    assert_conflict(insert(store, &req).await, UniqueField::AuthReqId);

    let other = seed(store).await;
    assert_not_found(
        store
            .get_ciba_request(&other.env.id, &req.auth_req_id)
            .await,
    );
    assert_not_found(store.get_ciba_request(&s.env.id, &"unknown".into()).await);

    // A request for a user that does not exist is refused.
    let orphan = ciba_request(&s.env.id, &s.app.id, &new_id().into());
    assert_not_found(insert(store, &orphan).await);
}

pub async fn ciba_record_poll_compare_and_set(store: &dyn Store) {
    let s = seed(store).await;
    let req = s.pending(store).await;
    let id = &req.auth_req_id;

    let first = PollUpdate {
        expected_last_polled_at: None,
        expected_interval_seconds: 2,
        last_polled_at: NOW,
        interval_seconds: 2,
    };
    assert!(record_poll(store, &req, &first).await);
    // Same expectation again: stale, refused.
    let stale = PollUpdate {
        last_polled_at: NOW.plus_secs(1),
        ..first
    };
    assert!(!record_poll(store, &req, &stale).await);
    let got = store.get_ciba_request(&s.env.id, id).await.unwrap();
    assert_eq!(got.last_polled_at, Some(NOW));
    assert_eq!(got.interval_seconds, 2);

    let slow = PollUpdate {
        expected_last_polled_at: Some(NOW),
        expected_interval_seconds: 2,
        last_polled_at: NOW.plus_secs(1),
        interval_seconds: 7,
    };
    assert!(record_poll(store, &req, &slow).await);
    assert!(!record_poll(store, &req, &slow).await);
    // Two slow_downs judged in the same millisecond: the second expects the interval the
    // first one read, loses, and is judged again (so each slow_down lengthens the interval).
    let same_ms = PollUpdate {
        expected_last_polled_at: Some(NOW.plus_secs(1)),
        expected_interval_seconds: 2,
        last_polled_at: NOW.plus_secs(1),
        interval_seconds: 7,
    };
    assert!(!record_poll(store, &req, &same_ms).await);
    let got = store.get_ciba_request(&s.env.id, id).await.unwrap();
    assert_eq!(got.last_polled_at, Some(NOW.plus_secs(1)));
    assert_eq!(got.interval_seconds, 7);

    // Another environment cannot touch it, nor can a poll be recorded once decided.
    let other = seed(store).await;
    let next = PollUpdate {
        expected_last_polled_at: Some(NOW.plus_secs(1)),
        expected_interval_seconds: 7,
        last_polled_at: NOW.plus_secs(10),
        interval_seconds: 7,
    };
    assert!(!record_poll(store, &in_env(&req, &other.env.id), &next).await);
    decide(
        store,
        &req,
        &decision(DecisionOutcome::Approve),
        NOW.plus_secs(2),
    )
    .await;
    assert!(!record_poll(store, &req, &next).await);
    let unknown = CibaRequest {
        auth_req_id: "unknown".into(),
        ..req.clone()
    };
    assert!(!record_poll(store, &unknown, &first).await);
}

pub async fn ciba_decide_once(store: &dyn Store) {
    let s = seed(store).await;
    let req = s.pending(store).await;
    let approve = decision(DecisionOutcome::Approve);
    assert!(decide(store, &req, &approve, NOW).await);
    let deny = decision(DecisionOutcome::Deny);
    assert!(!decide(store, &req, &deny, NOW).await);

    let got = store
        .get_ciba_request(&s.env.id, &req.auth_req_id)
        .await
        .unwrap();
    assert_eq!(got.status, CibaStatus::Approved);
    assert_eq!(got.decision, Some(approve));

    // Another environment cannot decide it.
    let other = seed(store).await;
    let fresh = s.pending(store).await;
    assert!(!decide(store, &in_env(&fresh, &other.env.id), &deny, NOW).await);
    assert_eq!(
        store
            .get_ciba_request(&s.env.id, &fresh.auth_req_id)
            .await
            .unwrap(),
        fresh
    );
}

pub async fn ciba_decide_after_expiry(store: &dyn Store) {
    let s = seed(store).await;
    let req = s.pending(store).await;
    let approve = decision(DecisionOutcome::Approve);
    assert!(!decide(store, &req, &approve, req.expires_at).await);
    assert!(!decide(store, &req, &approve, req.expires_at.plus_secs(1)).await);
    let got = store
        .get_ciba_request(&s.env.id, &req.auth_req_id)
        .await
        .unwrap();
    assert_eq!(got.status, CibaStatus::Pending);
    assert_eq!(got.decision, None);
    // The store checks the expiry itself, not only core.
    let at_expiry = Transition::new(
        s.env.id.clone(),
        Guard::PendingAt { at: req.expires_at },
        Change::Decide {
            auth_req_id: req.auth_req_id.clone(),
            decision: approve.clone(),
        },
    );
    assert_eq!(store.apply(&at_expiry).await.unwrap(), Applied::Lost);
    // One millisecond before expiry still counts.
    assert!(decide(store, &req, &approve, req.expires_at.plus_millis(-1)).await);
}

pub async fn ciba_deny_and_cancel(store: &dyn Store) {
    let s = seed(store).await;
    for (outcome, status) in [
        (DecisionOutcome::Deny, CibaStatus::Denied),
        (DecisionOutcome::Cancel, CibaStatus::Cancelled),
        (DecisionOutcome::Approve, CibaStatus::Approved),
    ] {
        let req = s.pending(store).await;
        let d = decision(outcome);
        assert!(decide(store, &req, &d, NOW).await);
        let got = store
            .get_ciba_request(&s.env.id, &req.auth_req_id)
            .await
            .unwrap();
        assert_eq!(got.status, status);
        assert_eq!(got.decision, Some(d));
    }
}

pub async fn ciba_redeem_once(store: &dyn Store) {
    let s = seed(store).await;
    let req = s.approved(store).await;
    let tokens = IssuedTokens {
        access_token: access_token(&req),
        refresh_token: Some(refresh_token(&req, &new_id())),
    };
    let at = NOW.plus_secs(5);
    assert!(redeem(store, &req, at, &tokens).await);

    let got = store
        .get_ciba_request(&s.env.id, &req.auth_req_id)
        .await
        .unwrap();
    assert_eq!(got.status, CibaStatus::Redeemed);
    assert_eq!(got.redeemed_at, Some(at));
    let access = store
        .get_access_token(&s.env.id, &tokens.access_token.jti)
        .await
        .unwrap();
    assert_eq!(access, Some(tokens.access_token.clone()));
    let refresh = tokens.refresh_token.clone().unwrap();
    assert_eq!(
        store
            .get_refresh_token(&s.env.id, &refresh.token_hash)
            .await
            .unwrap(),
        Some(refresh)
    );

    // A second redemption loses and stores nothing.
    let again = IssuedTokens {
        access_token: access_token(&req),
        refresh_token: None,
    };
    assert!(!redeem(store, &req, at, &again).await);
    assert_eq!(
        store
            .get_access_token(&s.env.id, &again.access_token.jti)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .get_ciba_request(&s.env.id, &req.auth_req_id)
            .await
            .unwrap()
            .redeemed_at,
        Some(at)
    );
}

pub async fn ciba_redeem_requires_approved_unexpired(store: &dyn Store) {
    let s = seed(store).await;
    let pending = s.pending(store).await;
    let tokens = IssuedTokens {
        access_token: access_token(&pending),
        refresh_token: None,
    };
    assert!(!redeem(store, &pending, NOW, &tokens).await);
    assert_eq!(
        store
            .get_access_token(&s.env.id, &tokens.access_token.jti)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .get_ciba_request(&s.env.id, &pending.auth_req_id)
            .await
            .unwrap()
            .status,
        CibaStatus::Pending
    );

    let denied = s.pending(store).await;
    decide(store, &denied, &decision(DecisionOutcome::Deny), NOW).await;
    let tokens = IssuedTokens {
        access_token: access_token(&denied),
        refresh_token: None,
    };
    assert!(!redeem(store, &denied, NOW, &tokens).await);

    let approved = s.approved(store).await;
    let tokens = IssuedTokens {
        access_token: access_token(&approved),
        refresh_token: None,
    };
    assert!(!redeem(store, &approved, approved.expires_at, &tokens).await);
    let other = seed(store).await;
    let elsewhere = in_env(&approved, &other.env.id);
    let tokens = IssuedTokens {
        access_token: access_token(&elsewhere),
        refresh_token: None,
    };
    assert!(!redeem(store, &elsewhere, NOW, &tokens).await);
    assert_eq!(
        store
            .get_ciba_request(&s.env.id, &approved.auth_req_id)
            .await
            .unwrap()
            .status,
        CibaStatus::Approved
    );
}

/// Twenty concurrent redemptions of one approved request: exactly one wins, and only its
/// tokens are stored.
pub async fn ciba_redeem_concurrently(store: Arc<dyn Store>) {
    let s = seed(store.as_ref()).await;
    let req = s.approved(store.as_ref()).await;
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let store = Arc::clone(&store);
        let req = req.clone();
        let tokens = IssuedTokens {
            access_token: access_token(&req),
            refresh_token: Some(refresh_token(&req, &new_id())),
        };
        tasks.push(tokio::spawn(async move {
            let won = redeem(store.as_ref(), &req, NOW, &tokens).await;
            (won, tokens)
        }));
    }
    let mut winners = Vec::new();
    let mut losers = Vec::new();
    for task in tasks {
        let (won, tokens) = task.await.unwrap();
        if won {
            winners.push(tokens)
        } else {
            losers.push(tokens)
        }
    }
    assert_eq!(winners.len(), 1, "exactly one redemption wins");
    let winner = &winners[0];
    assert!(
        store
            .get_access_token(&s.env.id, &winner.access_token.jti)
            .await
            .unwrap()
            .is_some()
    );
    for loser in &losers {
        assert_eq!(
            store
                .get_access_token(&s.env.id, &loser.access_token.jti)
                .await
                .unwrap(),
            None
        );
        let hash = &loser.refresh_token.as_ref().unwrap().token_hash;
        assert_eq!(
            store.get_refresh_token(&s.env.id, hash).await.unwrap(),
            None
        );
    }
}

pub async fn ciba_list_filters(store: &dyn Store) {
    let s = seed(store).await;
    let bob = user(&s.env.id, "bob");
    store.create_user(&bob).await.unwrap();
    let app2 = application(&s.env.id);
    store.create_application(&app2, b"s").await.unwrap();

    let later = |r: &mut CibaRequest, ms: i64| r.created_at = NOW.plus_millis(ms);
    let mut pending = s.request();
    later(&mut pending, 1);
    insert(store, &pending).await.unwrap();

    let mut approved = s.request();
    later(&mut approved, 2);
    insert(store, &approved).await.unwrap();
    decide(store, &approved, &decision(DecisionOutcome::Approve), NOW).await;

    let mut denied = ciba_request(&s.env.id, &s.app.id, &bob.id);
    later(&mut denied, 3);
    insert(store, &denied).await.unwrap();
    decide(store, &denied, &decision(DecisionOutcome::Deny), NOW).await;

    let mut redeemed = ciba_request(&s.env.id, &app2.id, &s.user.id);
    later(&mut redeemed, 4);
    insert(store, &redeemed).await.unwrap();
    decide(store, &redeemed, &decision(DecisionOutcome::Approve), NOW).await;
    let tokens = IssuedTokens {
        access_token: access_token(&redeemed),
        refresh_token: None,
    };
    assert!(redeem(store, &redeemed, NOW, &tokens).await);

    // Expired while pending: created earlier, already past its expiry.
    let mut expired = s.request();
    later(&mut expired, 5);
    expired.expires_at = NOW.plus_millis(-1);
    insert(store, &expired).await.unwrap();

    let env_id = &s.env.id;
    let ids = |status: Option<CibaStatus>,
               user_id: Option<&str>,
               app_id: Option<&str>,
               now: Timestamp| {
        let filter = CibaRequestFilter {
            status,
            user_id: user_id.map(UserId::from),
            application_id: app_id.map(ApplicationId::from),
        };
        async move {
            let list = store
                .list_ciba_requests(env_id, &filter, now, &Page::default())
                .await
                .unwrap();
            assert_eq!(list.total as usize, list.items.len());
            list.items
                .into_iter()
                .map(|r| r.auth_req_id)
                .collect::<Vec<_>>()
        }
    };
    let id = |r: &CibaRequest| r.auth_req_id.clone();

    assert_eq!(
        ids(None, None, None, NOW).await,
        vec![
            id(&pending),
            id(&approved),
            id(&denied),
            id(&redeemed),
            id(&expired)
        ]
    );
    assert_eq!(
        ids(Some(CibaStatus::Pending), None, None, NOW).await,
        vec![id(&pending)]
    );
    assert_eq!(
        ids(Some(CibaStatus::Approved), None, None, NOW).await,
        vec![id(&approved)]
    );
    assert_eq!(
        ids(Some(CibaStatus::Denied), None, None, NOW).await,
        vec![id(&denied)]
    );
    assert_eq!(
        ids(Some(CibaStatus::Cancelled), None, None, NOW).await,
        Vec::<String>::new()
    );
    assert_eq!(
        ids(Some(CibaStatus::Redeemed), None, None, NOW).await,
        vec![id(&redeemed)]
    );
    assert_eq!(
        ids(Some(CibaStatus::Expired), None, None, NOW).await,
        vec![id(&expired)]
    );

    // Past everyone's expiry: all but the redeemed one read as EXPIRED.
    let much_later = NOW.plus_secs(3600);
    assert_eq!(
        ids(Some(CibaStatus::Expired), None, None, much_later).await,
        vec![id(&pending), id(&approved), id(&denied), id(&expired)]
    );
    assert_eq!(
        ids(Some(CibaStatus::Pending), None, None, much_later).await,
        Vec::<String>::new()
    );
    assert_eq!(
        ids(Some(CibaStatus::Redeemed), None, None, much_later).await,
        vec![id(&redeemed)]
    );

    assert_eq!(ids(None, Some(&bob.id), None, NOW).await, vec![id(&denied)]);
    assert_eq!(
        ids(None, None, Some(&app2.id), NOW).await,
        vec![id(&redeemed)]
    );
    assert_eq!(
        ids(
            Some(CibaStatus::Approved),
            Some(&s.user.id),
            Some(&s.app.id),
            NOW
        )
        .await,
        vec![id(&approved)]
    );
    assert_eq!(
        ids(Some(CibaStatus::Denied), Some(&s.user.id), None, NOW).await,
        Vec::<String>::new()
    );

    // Paging with a filter.
    let filter = CibaRequestFilter {
        user_id: Some(s.user.id.clone()),
        ..Default::default()
    };
    let first = store
        .list_ciba_requests(&s.env.id, &filter, NOW, &Page::first(2))
        .await
        .unwrap();
    assert_eq!(first.total, 4);
    assert_eq!(
        first.items.iter().map(id).collect::<Vec<_>>(),
        vec![id(&pending), id(&approved)]
    );
    let second = store
        .list_ciba_requests(
            &s.env.id,
            &filter,
            NOW,
            &Page {
                limit: 2,
                cursor: first.next,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        second.items.iter().map(id).collect::<Vec<_>>(),
        vec![id(&redeemed), id(&expired)]
    );
    assert_eq!(second.next, None);

    // Another environment sees none of them.
    let other = seed(store).await;
    let list = store
        .list_ciba_requests(
            &other.env.id,
            &CibaRequestFilter::default(),
            NOW,
            &Page::default(),
        )
        .await
        .unwrap();
    assert_eq!(list.total, 0);
}

// --- transitions: races, expiry, scheduled work, malformed transitions --------------------------

/// Twenty decisions judged on the same pending read, applied at once: exactly one wins and
/// its decision is the one stored.
pub async fn ciba_decide_concurrently(store: Arc<dyn Store>) {
    let s = seed(store.as_ref()).await;
    let req = s.pending(store.as_ref()).await;
    let outcomes = [
        DecisionOutcome::Approve,
        DecisionOutcome::Deny,
        DecisionOutcome::Cancel,
    ];
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let store = Arc::clone(&store);
            let req = req.clone();
            let d = Decision {
                evidence: Some(serde_json::json!({ "attempt": i })),
                ..decision(outcomes[i % outcomes.len()])
            };
            tokio::spawn(async move {
                let t = ciba::decide(&req, d.clone(), NOW).unwrap();
                (store.apply(&t).await.unwrap(), d)
            })
        })
        .collect();
    let mut winners = Vec::new();
    for task in tasks {
        let (applied, d) = task.await.unwrap();
        match applied {
            Applied::Won => winners.push(d),
            Applied::Lost => {}
            Applied::Limited { .. } => panic!("a decision is never limited"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one decision wins");
    let got = store
        .get_ciba_request(&s.env.id, &req.auth_req_id)
        .await
        .unwrap();
    assert_eq!(got.status, ciba::decided_status(winners[0].outcome));
    assert_eq!(got.decision.as_ref(), Some(&winners[0]));
}

/// Twenty polls judged on the same read state (same previous poll, same interval): exactly
/// one is recorded; the others lose and would be judged again.
pub async fn ciba_poll_concurrently(store: Arc<dyn Store>) {
    let s = seed(store.as_ref()).await;
    let req = s.pending(store.as_ref()).await;
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let store = Arc::clone(&store);
            let req = req.clone();
            tokio::spawn(async move {
                let at = NOW.plus_millis(i);
                let ciba::PollVerdict::Refuse {
                    update: Some(update),
                    ..
                } = ciba::evaluate_poll(&req, &req.application_id, at)
                else {
                    panic!("a first poll of a pending request is recorded")
                };
                let won = store
                    .apply(&ciba::record_poll(&req, update))
                    .await
                    .unwrap()
                    .won();
                (won, at)
            })
        })
        .collect();
    let mut recorded = Vec::new();
    for task in tasks {
        let (won, at) = task.await.unwrap();
        if won {
            recorded.push(at);
        }
    }
    assert_eq!(recorded.len(), 1, "exactly one poll is recorded");
    let got = store
        .get_ciba_request(&s.env.id, &req.auth_req_id)
        .await
        .unwrap();
    assert_eq!(got.last_polled_at, Some(recorded[0]));
    assert_eq!(got.interval_seconds, req.interval_seconds);
}

/// Ten refreshes of one token, judged on the same read and applied at once: exactly one
/// rotation wins. Each loser reads again and judges again: with no grace that is reuse and
/// the family (the winner's successor included) is revoked; within a grace every loser
/// rotates once more, in the family, and the first rotation time stays.
pub async fn refresh_rotate_concurrently(store: Arc<dyn Store>) {
    for grace in [0, 60] {
        let s = seed(store.as_ref()).await;
        let req = s.approved(store.as_ref()).await;
        let family = new_id();
        let old = refresh_token(&req, &family);
        let tokens = IssuedTokens {
            access_token: access_token(&req),
            refresh_token: Some(old.clone()),
        };
        assert!(redeem(store.as_ref(), &req, NOW, &tokens).await);
        let read = store
            .get_refresh_token(&s.env.id, &old.token_hash)
            .await
            .unwrap()
            .unwrap();
        let at = NOW.plus_secs(5);
        let tasks: Vec<_> = (0..10)
            .map(|_| {
                let store = Arc::clone(&store);
                let read = read.clone();
                let successor = refresh_token(&req, &family);
                let access = AccessTokenRecord {
                    refresh_family_id: Some(family.clone()),
                    auth_req_id: None,
                    ..access_token(&req)
                };
                tokio::spawn(async move {
                    let Rotation::Rotate(t) =
                        refresh::rotate(&read, &successor, &access, at, grace)
                    else {
                        panic!("a current token rotates")
                    };
                    let first = store.apply(&t).await.unwrap();
                    if first.won() {
                        return (first, None, successor);
                    }
                    // Lost: judged again on what won.
                    let again = store
                        .get_refresh_token(&read.environment_id, &read.token_hash)
                        .await
                        .unwrap()
                        .unwrap();
                    let rejudged = refresh::rotate(&again, &successor, &access, at, grace);
                    let t = match &rejudged {
                        Rotation::Rotate(t) | Rotation::WithinGrace(t) | Rotation::Reused(t) => t,
                        Rotation::Invalid => panic!("a live token is never invalid"),
                    };
                    assert_eq!(store.apply(t).await.unwrap(), Applied::Won);
                    (first, Some(rejudged), successor)
                })
            })
            .collect();
        let mut winners = Vec::new();
        let mut rejudged = Vec::new();
        for task in tasks {
            let (first, again, successor) = task.await.unwrap();
            match again {
                None => winners.push(successor),
                Some(again) => {
                    assert_eq!(first, Applied::Lost);
                    rejudged.push((again, successor));
                }
            }
        }
        assert_eq!(
            winners.len(),
            1,
            "exactly one rotation wins (grace {grace})"
        );
        assert_eq!(rejudged.len(), 9);
        let stored = |hash: String| {
            let store = Arc::clone(&store);
            let env_id = s.env.id.clone();
            async move { store.get_refresh_token(&env_id, &hash).await.unwrap() }
        };
        let old_now = stored(old.token_hash.clone()).await.unwrap();
        assert_eq!(old_now.rotated_at, Some(at), "the first rotation time");
        let winner = stored(winners[0].token_hash.clone()).await.unwrap();
        if grace == 0 {
            for (again, successor) in &rejudged {
                assert!(matches!(again, Rotation::Reused(_)), "{again:?}");
                assert_eq!(stored(successor.token_hash.clone()).await, None);
            }
            assert!(winner.revoked, "reuse revokes the winner's successor too");
            assert!(old_now.revoked);
        } else {
            for (again, successor) in &rejudged {
                assert!(matches!(again, Rotation::WithinGrace(_)), "{again:?}");
                let t = stored(successor.token_hash.clone()).await.unwrap();
                assert!(!t.revoked);
                assert_eq!(t.family_id, family);
            }
            assert!(!winner.revoked);
            assert!(!old_now.revoked);
        }
    }
}

/// At the expiry boundary the guards exclude each other: on a pending request a decision
/// judged in its last millisecond and the expiry judged at `expires_at` race, and exactly one
/// wins; on an approved request only the redemption (judged before expiry) can win, against
/// a decision and an expiry judged on an older, pending read.
pub async fn ciba_decide_redeem_expire_race(store: Arc<dyn Store>) {
    let s = seed(store.as_ref()).await;
    let mut races = Vec::new();
    for _ in 0..10 {
        let req = s.pending(store.as_ref()).await;
        let last = req.expires_at.plus_millis(-1);
        let decide = ciba::decide(&req, decision(DecisionOutcome::Approve), last).unwrap();
        let expire = ciba::expire(&req, req.expires_at).unwrap();
        let (a, b) = (Arc::clone(&store), Arc::clone(&store));
        races.push((
            req,
            tokio::spawn(async move { a.apply(&decide).await.unwrap() }),
            tokio::spawn(async move { b.apply(&expire).await.unwrap() }),
        ));
    }
    for (req, decided, expired) in races {
        let (decided, expired) = (decided.await.unwrap(), expired.await.unwrap());
        assert!(
            decided.won() != expired.won(),
            "exactly one of decide ({decided:?}) and expire ({expired:?}) wins"
        );
        let got = store
            .get_ciba_request(&s.env.id, &req.auth_req_id)
            .await
            .unwrap();
        if decided.won() {
            assert_eq!(got.status, CibaStatus::Approved);
        } else {
            assert_eq!(got.status, CibaStatus::Expired);
            assert_eq!(got.decision, None);
        }
    }

    let stale = s.pending(store.as_ref()).await;
    assert!(
        decide(
            store.as_ref(),
            &stale,
            &decision(DecisionOutcome::Approve),
            NOW
        )
        .await
    );
    let last = stale.expires_at.plus_millis(-1);
    let issued = IssuedTokens {
        access_token: access_token(&stale),
        refresh_token: None,
    };
    let approved = store
        .get_ciba_request(&s.env.id, &stale.auth_req_id)
        .await
        .unwrap();
    let transitions = [
        ciba::redeem(&approved, issued.clone(), last),
        ciba::decide(&stale, decision(DecisionOutcome::Cancel), last).unwrap(),
        ciba::expire(&stale, stale.expires_at).unwrap(),
    ];
    let tasks: Vec<_> = transitions
        .into_iter()
        .map(|t| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.apply(&t).await.unwrap() })
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap());
    }
    assert_eq!(results, [Applied::Won, Applied::Lost, Applied::Lost]);
    let got = store
        .get_ciba_request(&s.env.id, &stale.auth_req_id)
        .await
        .unwrap();
    assert_eq!(got.status, CibaStatus::Redeemed);
    assert_eq!(got.redeemed_at, Some(last));
    // A redemption judged at the expiry itself loses, and stores no token.
    let late = s.approved(store.as_ref()).await;
    let issued = IssuedTokens {
        access_token: access_token(&late),
        refresh_token: None,
    };
    let t = ciba::redeem(&late, issued.clone(), late.expires_at);
    assert_eq!(store.apply(&t).await.unwrap(), Applied::Lost);
    assert_eq!(
        store
            .get_access_token(&s.env.id, &issued.access_token.jti)
            .await
            .unwrap(),
        None
    );
}

/// The expiry of a pending request is marked once, wakes its waiters, and shuts out a
/// decision judged before it; it needs the request to be past its expiry and pending.
pub async fn ciba_expire_once(store: &dyn Store) {
    let s = seed(store).await;
    let req = s.pending(store).await;
    let mut on_request = store.subscribe(&WakeKey::request(&s.env.id, &req.auth_req_id));
    let mut on_user = store.subscribe(&WakeKey::user(&s.env.id, &s.user.id));

    // The store checks the expiry too, not only core.
    let early = Transition::new(
        s.env.id.clone(),
        Guard::ExpiredPendingAt {
            at: req.expires_at.plus_millis(-1),
        },
        Change::Expire {
            auth_req_id: req.auth_req_id.clone(),
        },
    );
    assert_eq!(store.apply(&early).await.unwrap(), Applied::Lost);
    assert_not_woken(&mut on_request).await;

    let expire = ciba::expire(&req, req.expires_at).unwrap();
    assert_eq!(store.apply(&expire).await.unwrap(), Applied::Won);
    assert_woken(&mut on_request).await;
    assert_woken(&mut on_user).await;
    let got = store
        .get_ciba_request(&s.env.id, &req.auth_req_id)
        .await
        .unwrap();
    assert_eq!(got.status, CibaStatus::Expired);
    assert_eq!(got.status_at(req.expires_at), CibaStatus::Expired);
    assert_eq!(
        ciba::expire(&got, req.expires_at),
        Err(ciba::ExpireError::NotPending)
    );
    // Written once: the same transition again loses and wakes nobody.
    assert_eq!(store.apply(&expire).await.unwrap(), Applied::Lost);
    assert_not_woken(&mut on_request).await;
    // A decision judged before the expiry, applied after it, loses.
    let late = ciba::decide(
        &req,
        decision(DecisionOutcome::Approve),
        req.expires_at.plus_millis(-1),
    )
    .unwrap();
    assert_eq!(store.apply(&late).await.unwrap(), Applied::Lost);
    let listed = |status| {
        let filter = CibaRequestFilter {
            status: Some(status),
            ..CibaRequestFilter::default()
        };
        let env_id = s.env.id.clone();
        async move {
            store
                .list_ciba_requests(&env_id, &filter, NOW, &Page::first(100))
                .await
                .unwrap()
                .items
                .into_iter()
                .map(|r| r.auth_req_id)
                .collect::<Vec<_>>()
        }
    };
    // Listed as EXPIRED even by a reader whose clock is behind the expiry.
    assert_eq!(
        listed(CibaStatus::Expired).await,
        vec![req.auth_req_id.clone()]
    );
    assert!(listed(CibaStatus::Pending).await.is_empty());
    // Another environment cannot expire a request.
    let other = seed(store).await;
    let fresh = s.pending(store).await;
    let elsewhere = ciba::expire(&in_env(&fresh, &other.env.id), fresh.expires_at).unwrap();
    assert_eq!(store.apply(&elsewhere).await.unwrap(), Applied::Lost);
}

fn auto_decision_work(req: &CibaRequest) -> ScheduledWork {
    ScheduledWork {
        id: WorkId(new_id()),
        environment_id: req.environment_id.clone(),
        due_at: NOW.plus_secs(5),
        job: Job::AutoDecision {
            auth_req_id: req.auth_req_id.clone(),
            outcome: DecisionOutcome::Approve,
        },
    }
}

/// Whether `work` is stored (finishing it is then possible once).
async fn finish(store: &dyn Store, env_id: &EnvironmentId, work: &ScheduledWork) -> Applied {
    store
        .apply(&Transition::complete_only(env_id.clone(), work.id.clone()))
        .await
        .unwrap()
}

/// Work scheduled by a transition is stored with its change (and only if it wins); a
/// transition completing work deletes it with its change, and loses, writing nothing, when
/// the work is gone.
pub async fn apply_with_scheduled_work(store: &dyn Store) {
    let s = seed(store).await;
    let env_id = &s.env.id;
    let req = s.request();
    let work = auto_decision_work(&req);
    let admit = Transition {
        schedule: vec![work.clone()],
        ..ciba::admit(req.clone(), None)
    };
    assert_eq!(store.apply(&admit).await.unwrap(), Applied::Won);

    // The automatic decision runs: decided and finished in one transaction.
    let run = Transition {
        completes: Some(work.id.clone()),
        ..ciba::decide(&req, decision(DecisionOutcome::Approve), NOW).unwrap()
    };
    assert_eq!(store.apply(&run).await.unwrap(), Applied::Won);
    let got = store
        .get_ciba_request(env_id, &req.auth_req_id)
        .await
        .unwrap();
    assert_eq!(got.status, CibaStatus::Approved);
    assert_eq!(finish(store, env_id, &work).await, Applied::Lost, "deleted");

    // Completing work that is gone: lost, and the change is not written.
    let other = s.pending(store).await;
    let twice = Transition {
        completes: Some(work.id.clone()),
        ..ciba::decide(&other, decision(DecisionOutcome::Deny), NOW).unwrap()
    };
    assert_eq!(store.apply(&twice).await.unwrap(), Applied::Lost);
    let got = store
        .get_ciba_request(env_id, &other.auth_req_id)
        .await
        .unwrap();
    assert_eq!(got.status, CibaStatus::Pending);
    assert_eq!(got.decision, None);

    // Work scheduled by a transition that loses, or is limited, is not stored.
    let lost_work = auto_decision_work(&req);
    let lost = Transition {
        schedule: vec![lost_work.clone()],
        ..ciba::decide(&req, decision(DecisionOutcome::Deny), NOW).unwrap()
    };
    assert_eq!(store.apply(&lost).await.unwrap(), Applied::Lost);
    assert_eq!(finish(store, env_id, &lost_work).await, Applied::Lost);
    let limited_req = s.request();
    let limited_work = auto_decision_work(&limited_req);
    let limited = Transition {
        schedule: vec![limited_work.clone()],
        ..ciba::admit(limited_req, Some(guard(Some(1), None, NOW)))
    };
    assert!(matches!(
        store.apply(&limited).await.unwrap(),
        Applied::Limited { .. }
    ));
    assert_eq!(finish(store, env_id, &limited_work).await, Applied::Lost);

    // A poll record that schedules work is written with it (not on the bookkeeping path).
    let polled_work = auto_decision_work(&other);
    let update = PollUpdate {
        expected_last_polled_at: None,
        expected_interval_seconds: 2,
        last_polled_at: NOW,
        interval_seconds: 2,
    };
    let poll = Transition {
        schedule: vec![polled_work.clone()],
        ..ciba::record_poll(&other, update)
    };
    assert_eq!(store.apply(&poll).await.unwrap(), Applied::Won);
    let got = store
        .get_ciba_request(env_id, &other.auth_req_id)
        .await
        .unwrap();
    assert_eq!(got.last_polled_at, Some(NOW));
    assert_eq!(finish(store, env_id, &polled_work).await, Applied::Won);
    assert_eq!(finish(store, env_id, &polled_work).await, Applied::Lost);

    // Work is finished only in its own environment.
    let kept = auto_decision_work(&other);
    let schedule = Transition {
        schedule: vec![kept.clone()],
        ..Transition::new(env_id.clone(), Guard::Always, Change::Nothing)
    };
    assert_eq!(store.apply(&schedule).await.unwrap(), Applied::Won);
    let elsewhere = seed(store).await;
    assert_eq!(finish(store, &elsewhere.env.id, &kept).await, Applied::Lost);
    assert_eq!(finish(store, env_id, &kept).await, Applied::Won);
}

/// A transition whose guard does not fit its change, or that writes rows of another
/// environment, is refused as `Invalid` and writes nothing.
pub async fn apply_refuses_malformed_transitions(store: &dyn Store) {
    let s = seed(store).await;
    let req = s.pending(store).await;
    let invalid = |r: StoreResult<Applied>| {
        assert!(
            matches!(r, Err(StoreError::Invalid(_))),
            "expected Invalid, got {r:?}"
        );
    };
    let mut unguarded = ciba::decide(&req, decision(DecisionOutcome::Approve), NOW).unwrap();
    unguarded.guard = Guard::Always;
    invalid(store.apply(&unguarded).await);
    let mut wrong = unguarded.clone();
    wrong.guard = Guard::ApprovedAt { at: NOW };
    invalid(store.apply(&wrong).await);
    let update = PollUpdate {
        expected_last_polled_at: None,
        expected_interval_seconds: 2,
        last_polled_at: NOW,
        interval_seconds: 2,
    };
    let mut poll = ciba::record_poll(&req, update);
    poll.guard = Guard::PolledAsRead {
        last_polled_at: Some(NOW),
        interval_seconds: 2,
    };
    invalid(store.apply(&poll).await);
    let got = store
        .get_ciba_request(&s.env.id, &req.auth_req_id)
        .await
        .unwrap();
    assert_eq!(got, req, "nothing written");

    // Rows of another environment than the transition's.
    let other = seed(store).await;
    let mut foreign = ciba::admit(s.request(), None);
    foreign.environment_id = other.env.id.clone();
    invalid(store.apply(&foreign).await);
    let mut foreign_work = Transition::new(s.env.id.clone(), Guard::Always, Change::Nothing);
    foreign_work.schedule = vec![auto_decision_work(&in_env(&req, &other.env.id))];
    invalid(store.apply(&foreign_work).await);

    // A successor outside the rotated token's family: refused, the rotation rolled back.
    let approved = s.approved(store).await;
    let family = new_id();
    let old = refresh_token(&approved, &family);
    let tokens = IssuedTokens {
        access_token: access_token(&approved),
        refresh_token: Some(old.clone()),
    };
    assert!(redeem(store, &approved, NOW, &tokens).await);
    let stray = new_id();
    let successor = refresh_token(&approved, &stray);
    let access = AccessTokenRecord {
        refresh_family_id: Some(stray),
        ..access_token(&approved)
    };
    let Rotation::Rotate(t) = refresh::rotate(&old, &successor, &access, NOW, 0) else {
        panic!("a current token rotates")
    };
    invalid(store.apply(&t).await);
    assert_eq!(
        store
            .get_refresh_token(&s.env.id, &old.token_hash)
            .await
            .unwrap(),
        Some(old)
    );
    assert_eq!(
        store
            .get_refresh_token(&s.env.id, &successor.token_hash)
            .await
            .unwrap(),
        None
    );
}

// --- tokens -----------------------------------------------------------------------------------

pub async fn access_tokens(store: &dyn Store) {
    let s = seed(store).await;
    let req = s.request();
    let mut token = access_token(&req);
    token.auth_req_id = None;
    token.user_id = None;
    store.insert_access_token(&token).await.unwrap();
    assert_eq!(
        store.get_access_token(&s.env.id, &token.jti).await.unwrap(),
        Some(token.clone())
    );
    assert_conflict(store.insert_access_token(&token).await, UniqueField::Jti);

    let other = seed(store).await;
    assert_eq!(
        store
            .get_access_token(&other.env.id, &token.jti)
            .await
            .unwrap(),
        None
    );
    assert!(!revoke_access(store, &other.env.id, &token.jti).await);

    assert!(revoke_access(store, &s.env.id, &token.jti).await);
    assert!(!revoke_access(store, &s.env.id, &token.jti).await);
    assert!(!revoke_access(store, &s.env.id, "unknown").await);
    let got = store
        .get_access_token(&s.env.id, &token.jti)
        .await
        .unwrap()
        .unwrap();
    assert!(got.revoked);
    assert_eq!(
        store.get_access_token(&s.env.id, "unknown").await.unwrap(),
        None
    );
}

pub async fn revoke_tokens_for_request(store: &dyn Store) {
    let s = seed(store).await;
    let req = s.approved(store).await;
    let family = new_id();
    let tokens = IssuedTokens {
        access_token: access_token(&req),
        refresh_token: Some(refresh_token(&req, &family)),
    };
    assert!(redeem(store, &req, NOW, &tokens).await);
    let first_refresh = tokens.refresh_token.clone().unwrap();

    // One refresh later: a new refresh token and an access token of the family.
    let next_refresh = refresh_token(&req, &family);
    let next_access = AccessTokenRecord {
        auth_req_id: None,
        refresh_family_id: Some(family.clone()),
        ..access_token(&req)
    };
    let outcome = rotate(
        store,
        &s.env.id,
        &first_refresh.token_hash,
        NOW,
        0,
        &next_refresh,
        &next_access,
    )
    .await;
    assert!(matches!(outcome, RefreshOutcome::Rotated(_)));

    // An unrelated request's token stays valid.
    let unrelated = access_token(&s.request());
    store.insert_access_token(&unrelated).await.unwrap();

    let watched = Watched {
        env_id: &s.env.id,
        access: &[&tokens.access_token.jti, &next_access.jti, &unrelated.jti],
        refresh: &[&first_refresh.token_hash, &next_refresh.token_hash],
    };
    let redeemed = store
        .get_ciba_request(&s.env.id, &req.auth_req_id)
        .await
        .unwrap();
    let revoked = revoked_by(store, &ciba::revoke_replayed(&redeemed), &watched).await;
    assert_eq!(revoked, 4);
    for jti in [&tokens.access_token.jti, &next_access.jti] {
        assert!(
            store
                .get_access_token(&s.env.id, jti)
                .await
                .unwrap()
                .unwrap()
                .revoked
        );
    }
    for hash in [&first_refresh.token_hash, &next_refresh.token_hash] {
        assert!(
            store
                .get_refresh_token(&s.env.id, hash)
                .await
                .unwrap()
                .unwrap()
                .revoked
        );
    }
    assert!(
        !store
            .get_access_token(&s.env.id, &unrelated.jti)
            .await
            .unwrap()
            .unwrap()
            .revoked
    );
    assert_eq!(
        revoked_by(store, &ciba::revoke_replayed(&redeemed), &watched).await,
        0
    );
}

/// Within the reuse grace, a rotated token rotates again in the same family without revoking;
/// the grace counts from the first rotation; after it (and with no grace) reuse revokes.
pub async fn refresh_reuse_grace(store: &dyn Store) {
    let s = seed(store).await;
    let req = s.approved(store).await;
    let family = new_id();
    let old = refresh_token(&req, &family);
    let tokens = IssuedTokens {
        access_token: access_token(&req),
        refresh_token: Some(old.clone()),
    };
    assert!(redeem(store, &req, NOW, &tokens).await);
    let next = |at: Timestamp| {
        (
            RefreshTokenRecord {
                issued_at: at,
                ..refresh_token(&req, &family)
            },
            AccessTokenRecord {
                refresh_family_id: Some(family.clone()),
                auth_req_id: None,
                ..access_token(&req)
            },
        )
    };
    let (r1, a1) = next(NOW);
    let out = rotate(store, &s.env.id, &old.token_hash, NOW, 10, &r1, &a1).await;
    assert!(matches!(out, RefreshOutcome::Rotated(_)), "{out:?}");
    // 9.999 s later, inside the 10 s grace: rotated again, both successors valid.
    let (r2, a2) = next(NOW.plus_millis(9_999));
    let out = rotate(
        store,
        &s.env.id,
        &old.token_hash,
        NOW.plus_millis(9_999),
        10,
        &r2,
        &a2,
    )
    .await;
    let RefreshOutcome::Rotated(returned) = out else {
        panic!("expected Rotated within the grace, got {out:?}")
    };
    assert_eq!(returned.rotated_at, Some(NOW), "the grace does not slide");
    for hash in [&r1.token_hash, &r2.token_hash] {
        let t = store
            .get_refresh_token(&s.env.id, hash)
            .await
            .unwrap()
            .unwrap();
        assert!(!t.revoked);
        assert_eq!(t.family_id, family);
    }
    assert!(
        !store
            .get_access_token(&s.env.id, &a2.jti)
            .await
            .unwrap()
            .unwrap()
            .revoked
    );
    // At the end of the grace, reuse revokes the family.
    let (r3, a3) = next(NOW.plus_secs(10));
    let out = rotate(
        store,
        &s.env.id,
        &old.token_hash,
        NOW.plus_secs(10),
        10,
        &r3,
        &a3,
    )
    .await;
    assert_eq!(out, RefreshOutcome::Reused, "at the end of the grace");
    assert_eq!(
        store
            .get_refresh_token(&s.env.id, &r3.token_hash)
            .await
            .unwrap(),
        None
    );
    for hash in [&r1.token_hash, &r2.token_hash] {
        assert!(
            store
                .get_refresh_token(&s.env.id, hash)
                .await
                .unwrap()
                .unwrap()
                .revoked
        );
    }
    assert!(
        store
            .get_access_token(&s.env.id, &a2.jti)
            .await
            .unwrap()
            .unwrap()
            .revoked
    );
    // A revoked token gets no grace.
    let (r4, a4) = next(NOW.plus_secs(1));
    let out = rotate(
        store,
        &s.env.id,
        &r1.token_hash,
        NOW.plus_secs(1),
        60,
        &r4,
        &a4,
    )
    .await;
    assert_eq!(out, RefreshOutcome::Reused);
}

/// With no grace, even an immediate second presentation revokes the family.
async fn refresh_reuse_without_grace_revokes(store: &dyn Store) {
    let s = seed(store).await;
    let req = s.approved(store).await;
    let family = new_id();
    let old = refresh_token(&req, &family);
    let tokens = IssuedTokens {
        access_token: access_token(&req),
        refresh_token: Some(old.clone()),
    };
    redeem(store, &req, NOW, &tokens).await;
    let new = refresh_token(&req, &family);
    let access = AccessTokenRecord {
        refresh_family_id: Some(family.clone()),
        auth_req_id: None,
        ..access_token(&req)
    };
    let out = rotate(store, &s.env.id, &old.token_hash, NOW, 0, &new, &access).await;
    assert!(matches!(out, RefreshOutcome::Rotated(_)));
    let again = refresh_token(&req, &family);
    let out = rotate(
        store,
        &s.env.id,
        &old.token_hash,
        NOW,
        0,
        &again,
        &access_token(&req),
    )
    .await;
    assert_eq!(out, RefreshOutcome::Reused);
    assert!(
        store
            .get_refresh_token(&s.env.id, &new.token_hash)
            .await
            .unwrap()
            .unwrap()
            .revoked
    );
}

pub async fn refresh_rotation_and_reuse(store: &dyn Store) {
    refresh_reuse_without_grace_revokes(store).await;
    let s = seed(store).await;
    let req = s.approved(store).await;
    let family = new_id();
    let old = refresh_token(&req, &family);
    let tokens = IssuedTokens {
        access_token: access_token(&req),
        refresh_token: Some(old.clone()),
    };
    assert!(redeem(store, &req, NOW, &tokens).await);

    let at = NOW.plus_secs(30);
    let new = RefreshTokenRecord {
        issued_at: at,
        ..refresh_token(&req, &family)
    };
    let new_access = AccessTokenRecord {
        refresh_family_id: Some(family.clone()),
        auth_req_id: None,
        ..access_token(&req)
    };
    let outcome = rotate(store, &s.env.id, &old.token_hash, at, 0, &new, &new_access).await;
    let RefreshOutcome::Rotated(returned) = outcome else {
        panic!("expected Rotated, got {outcome:?}")
    };
    assert_eq!(returned.token_hash, old.token_hash);
    assert_eq!(returned.family_id, family);
    assert_eq!(returned.amr, old.amr);
    assert_eq!(returned.auth_time, old.auth_time);
    assert_eq!(
        store
            .get_refresh_token(&s.env.id, &new.token_hash)
            .await
            .unwrap(),
        Some(new.clone())
    );
    assert_eq!(
        store
            .get_access_token(&s.env.id, &new_access.jti)
            .await
            .unwrap(),
        Some(new_access.clone())
    );
    let stored_old = store
        .get_refresh_token(&s.env.id, &old.token_hash)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored_old.rotated_at, Some(at));
    assert!(!stored_old.revoked);

    // Replaying the old token: reuse, the family is revoked, nothing new is stored.
    let thief = refresh_token(&req, &family);
    let thief_access = access_token(&req);
    let outcome = rotate(
        store,
        &s.env.id,
        &old.token_hash,
        at.plus_secs(1),
        0,
        &thief,
        &thief_access,
    )
    .await;
    assert_eq!(outcome, RefreshOutcome::Reused);
    assert!(
        store
            .get_refresh_token(&s.env.id, &new.token_hash)
            .await
            .unwrap()
            .unwrap()
            .revoked
    );
    assert!(
        store
            .get_refresh_token(&s.env.id, &old.token_hash)
            .await
            .unwrap()
            .unwrap()
            .revoked
    );
    assert!(
        store
            .get_access_token(&s.env.id, &new_access.jti)
            .await
            .unwrap()
            .unwrap()
            .revoked
    );
    assert_eq!(
        store
            .get_refresh_token(&s.env.id, &thief.token_hash)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .get_access_token(&s.env.id, &thief_access.jti)
            .await
            .unwrap(),
        None
    );

    // The (now revoked) new token is reuse too.
    let outcome = rotate(
        store,
        &s.env.id,
        &new.token_hash,
        at.plus_secs(2),
        0,
        &thief,
        &thief_access,
    )
    .await;
    assert_eq!(outcome, RefreshOutcome::Reused);
    assert_eq!(
        store
            .get_refresh_token(&s.env.id, &thief.token_hash)
            .await
            .unwrap(),
        None
    );
}

pub async fn refresh_invalid(store: &dyn Store) {
    let s = seed(store).await;
    let req = s.approved(store).await;
    let current = refresh_token(&req, &new_id());
    let tokens = IssuedTokens {
        access_token: access_token(&req),
        refresh_token: Some(current.clone()),
    };
    assert!(redeem(store, &req, NOW, &tokens).await);
    let new = refresh_token(&req, &current.family_id);
    let new_access = access_token(&req);

    let unknown = rotate(store, &s.env.id, "unknown", NOW, 0, &new, &new_access).await;
    assert_eq!(unknown, RefreshOutcome::Invalid);

    let other = seed(store).await;
    let foreign = rotate(
        store,
        &other.env.id,
        &current.token_hash,
        NOW,
        0,
        &new,
        &new_access,
    )
    .await;
    assert_eq!(foreign, RefreshOutcome::Invalid);

    let expired = rotate(
        store,
        &s.env.id,
        &current.token_hash,
        current.expires_at,
        0,
        &new,
        &new_access,
    )
    .await;
    assert_eq!(expired, RefreshOutcome::Invalid);

    // None of that changed anything.
    assert_eq!(
        store
            .get_refresh_token(&s.env.id, &current.token_hash)
            .await
            .unwrap(),
        Some(current)
    );
    assert_eq!(
        store
            .get_refresh_token(&s.env.id, &new.token_hash)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .get_access_token(&s.env.id, &new_access.jti)
            .await
            .unwrap(),
        None
    );
}

pub async fn revoke_refresh_family(store: &dyn Store) {
    let s = seed(store).await;
    let req = s.approved(store).await;
    let family = new_id();
    let refresh = refresh_token(&req, &family);
    let tokens = IssuedTokens {
        access_token: access_token(&req),
        refresh_token: Some(refresh.clone()),
    };
    assert!(redeem(store, &req, NOW, &tokens).await);
    let family_access = AccessTokenRecord {
        refresh_family_id: Some(family.clone()),
        ..access_token(&req)
    };
    store.insert_access_token(&family_access).await.unwrap();
    // A second family, from a second request.
    let req2 = s.approved(store).await;
    let other_family = refresh_token(&req2, &new_id());
    let tokens2 = IssuedTokens {
        access_token: access_token(&req2),
        refresh_token: Some(other_family.clone()),
    };
    assert!(redeem(store, &req2, NOW, &tokens2).await);

    let watched = Watched {
        env_id: &s.env.id,
        access: &[
            &tokens.access_token.jti,
            &family_access.jti,
            &tokens2.access_token.jti,
        ],
        refresh: &[&refresh.token_hash, &other_family.token_hash],
    };
    let other = seed(store).await;
    let elsewhere = RefreshTokenRecord {
        environment_id: other.env.id.clone(),
        ..refresh.clone()
    };
    assert_eq!(
        revoked_by(store, &refresh::revoke_family(&elsewhere), &watched).await,
        0
    );

    assert_eq!(
        revoked_by(store, &refresh::revoke_family(&refresh), &watched).await,
        2
    );
    assert!(
        store
            .get_refresh_token(&s.env.id, &refresh.token_hash)
            .await
            .unwrap()
            .unwrap()
            .revoked
    );
    assert!(
        store
            .get_access_token(&s.env.id, &family_access.jti)
            .await
            .unwrap()
            .unwrap()
            .revoked
    );
    assert!(
        !store
            .get_refresh_token(&s.env.id, &other_family.token_hash)
            .await
            .unwrap()
            .unwrap()
            .revoked
    );
    assert_eq!(
        revoked_by(store, &refresh::revoke_family(&refresh), &watched).await,
        0
    );

    // A revoked token presented for rotation is reuse.
    let outcome = rotate(
        store,
        &s.env.id,
        &refresh.token_hash,
        NOW,
        0,
        &refresh_token(&req, &family),
        &access_token(&req),
    )
    .await;
    assert_eq!(outcome, RefreshOutcome::Reused);
}

// --- jtis and purging -------------------------------------------------------------------------

pub async fn use_jti_once(store: &dyn Store) {
    let s = seed(store).await;
    let env = &s.env.id;
    let exp = NOW.plus_secs(60);
    assert!(
        store
            .use_jti(env, "client_assertion:a", "j1", exp, NOW)
            .await
            .unwrap()
    );
    assert!(
        !store
            .use_jti(env, "client_assertion:a", "j1", exp, NOW.plus_secs(1))
            .await
            .unwrap()
    );
    assert!(
        !store
            .use_jti(env, "client_assertion:a", "j1", exp, exp.plus_millis(-1))
            .await
            .unwrap()
    );
    // Other namespaces and environments are independent.
    assert!(
        store
            .use_jti(env, "client_assertion:b", "j1", exp, NOW)
            .await
            .unwrap()
    );
    let other = seed(store).await;
    assert!(
        store
            .use_jti(&other.env.id, "client_assertion:a", "j1", exp, NOW)
            .await
            .unwrap()
    );
    // Once expired, it may be used again, and is then remembered until its new expiry.
    let exp2 = exp.plus_secs(60);
    assert!(
        store
            .use_jti(env, "client_assertion:a", "j1", exp2, exp)
            .await
            .unwrap()
    );
    assert!(
        !store
            .use_jti(env, "client_assertion:a", "j1", exp2, exp.plus_secs(1))
            .await
            .unwrap()
    );
}

pub async fn purge_expired(store: &dyn Store) {
    let s = seed(store).await;
    let env = &s.env.id;
    let exp = NOW.plus_secs(60);
    assert!(
        store
            .use_jti(env, "ns", "expired", NOW.plus_secs(1), NOW)
            .await
            .unwrap()
    );
    assert!(
        store
            .use_jti(env, "ns", "live", exp.plus_secs(3600), NOW)
            .await
            .unwrap()
    );

    // An expired request and its tokens, an access token expired long ago and a live one.
    let old_req = s.approved(store).await;
    let tokens = IssuedTokens {
        access_token: AccessTokenRecord {
            expires_at: NOW.plus_secs(1),
            ..access_token(&old_req)
        },
        refresh_token: Some(RefreshTokenRecord {
            expires_at: NOW.plus_secs(1),
            ..refresh_token(&old_req, "f")
        }),
    };
    assert!(redeem(store, &old_req, NOW, &tokens).await);
    let live_req = ciba_request(env, &s.app.id, &s.user.id);
    let live_req = CibaRequest {
        expires_at: NOW.plus_secs(2 * 86400),
        ..live_req
    };
    insert(store, &live_req).await.unwrap();
    let live_access = AccessTokenRecord {
        expires_at: NOW.plus_secs(2 * 86400),
        ..access_token(&live_req)
    };
    store.insert_access_token(&live_access).await.unwrap();

    // Signing keys: a retired one and the current one.
    let retired = signing_key(env, SigningAlgorithm::RS256, NOW);
    store.insert_signing_key(&retired, NOW).await.unwrap();
    let current = signing_key(env, SigningAlgorithm::RS256, NOW.plus_secs(1));
    store
        .insert_signing_key(&current, NOW.plus_secs(10))
        .await
        .unwrap();

    // A minute later: only the jti has expired (the access token is kept a day past expiry).
    let deleted = store.purge_expired(exp).await.unwrap();
    assert!(deleted >= 3, "deleted {deleted}");
    assert!(
        store
            .use_jti(env, "ns", "expired", exp.plus_secs(60), exp)
            .await
            .unwrap()
    );
    assert!(
        !store
            .use_jti(env, "ns", "live", exp.plus_secs(60), exp)
            .await
            .unwrap()
    );
    let hash = &tokens.refresh_token.as_ref().unwrap().token_hash;
    assert_eq!(store.get_refresh_token(env, hash).await.unwrap(), None);
    assert!(
        store
            .get_access_token(env, &tokens.access_token.jti)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        store
            .get_ciba_request(env, &old_req.auth_req_id)
            .await
            .is_ok()
    );
    assert_eq!(
        store.list_signing_keys(env).await.unwrap(),
        vec![current.clone()]
    );

    // Past a day after expiry: the old request and its access token go, live ones stay.
    let day_later = old_req.expires_at.plus_secs(86400);
    assert!(store.purge_expired(day_later).await.unwrap() >= 2);
    assert_not_found(store.get_ciba_request(env, &old_req.auth_req_id).await);
    assert_eq!(
        store
            .get_access_token(env, &tokens.access_token.jti)
            .await
            .unwrap(),
        None
    );
    assert!(
        store
            .get_ciba_request(env, &live_req.auth_req_id)
            .await
            .is_ok()
    );
    assert!(
        store
            .get_access_token(env, &live_access.jti)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(store.list_signing_keys(env).await.unwrap(), vec![current]);
    assert_eq!(store.get_user(env, &s.user.id).await.unwrap(), s.user);
}

// --- server-wide values and the at-rest key ------------------------------------------------

pub async fn server_meta_roundtrip(store: &dyn Store) {
    let name = format!("test:{}", new_id());
    assert_eq!(store.get_server_meta(&name).await.unwrap(), None);
    store.put_server_meta(&name, b"one").await.unwrap();
    assert_eq!(
        store.get_server_meta(&name).await.unwrap().as_deref(),
        Some(&b"one"[..])
    );
    store.put_server_meta(&name, b"two").await.unwrap();
    assert_eq!(
        store.get_server_meta(&name).await.unwrap().as_deref(),
        Some(&b"two"[..])
    );
    // Deleting environments leaves server-wide values alone.
    let s = seed(store).await;
    store.delete_environment(&s.env.id).await.unwrap();
    assert_eq!(
        store.get_server_meta(&name).await.unwrap().as_deref(),
        Some(&b"two"[..])
    );
}

/// Needs a store of its own: it re-seals every sealed value of the database.
pub async fn reseal_all_in_one_transaction(store: &dyn Store) {
    let s = seed(store).await;
    let key = signing_key(&s.env.id, SigningAlgorithm::ES256, NOW);
    store.insert_signing_key(&key, NOW).await.unwrap();
    let other = seed(store).await;

    let listed = store.list_sealed_values().await.unwrap();
    let secret = SealedValue {
        kind: SealedKind::ApplicationSecret,
        environment_id: s.env.id.clone(),
        id: s.app.id.to_string(),
        sealed: b"sealed".to_vec(),
    };
    let private = SealedValue {
        kind: SealedKind::SigningKey,
        environment_id: s.env.id.clone(),
        id: key.id.clone(),
        sealed: key.private_key_sealed.clone(),
    };
    assert!(
        listed.contains(&secret) && listed.contains(&private),
        "{listed:?}"
    );
    assert_eq!(listed.len(), 3, "{listed:?}");

    let resealed = |values: &[SealedValue]| -> Vec<Resealed> {
        values
            .iter()
            .map(|v| Resealed {
                old: v.clone(),
                new_sealed: [b"new:".as_slice(), &v.sealed].concat(),
            })
            .collect()
    };
    let unchanged = |listed: &Vec<SealedValue>| {
        let listed = listed.clone();
        async move {
            assert_eq!(store.list_sealed_values().await.unwrap(), listed);
            assert_eq!(store.get_server_meta(META_KEY_CHECK).await.unwrap(), None);
        }
    };

    // A value missed (here: the other environment's secret) → nothing changes.
    let missing: Vec<SealedValue> = listed
        .iter()
        .filter(|v| v.environment_id != other.env.id)
        .cloned()
        .collect();
    assert!(matches!(
        store
            .reseal_all(&resealed(&missing), (META_KEY_CHECK, b"check"))
            .await,
        Err(StoreError::Conflict(UniqueField::SealedValues))
    ));
    unchanged(&listed).await;

    // A value that changed since it was listed → nothing changes, although the others match.
    let mut stale = listed.clone();
    stale[0].sealed = b"stale".to_vec();
    assert!(matches!(
        store
            .reseal_all(&resealed(&stale), (META_KEY_CHECK, b"check"))
            .await,
        Err(StoreError::Conflict(UniqueField::SealedValues))
    ));
    unchanged(&listed).await;

    // Exactly what the database holds → every value replaced and the check written, together.
    store
        .reseal_all(&resealed(&listed), (META_KEY_CHECK, b"check"))
        .await
        .unwrap();
    assert_eq!(
        store
            .get_application_secret(&s.env.id, &s.app.id)
            .await
            .unwrap(),
        b"new:sealed"
    );
    assert_eq!(
        store
            .get_application_secret(&other.env.id, &other.app.id)
            .await
            .unwrap(),
        b"new:sealed"
    );
    let stored_key = store
        .current_signing_key(&s.env.id, SigningAlgorithm::ES256)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored_key.private_key_sealed, b"new:\x01\x02\x03\x04");
    assert_eq!(
        store
            .get_server_meta(META_KEY_CHECK)
            .await
            .unwrap()
            .as_deref(),
        Some(&b"check"[..])
    );
    // The old list is now stale as a whole.
    assert!(matches!(
        store
            .reseal_all(&resealed(&listed), (META_KEY_CHECK, b"again"))
            .await,
        Err(StoreError::Conflict(UniqueField::SealedValues))
    ));
}

// --- wake-ups ---------------------------------------------------------------------------------

/// Generous bound on a wake-up that must come (a backend may deliver it asynchronously).
const WAKE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

async fn assert_woken(sub: &mut WakeUp) {
    let key = sub.key().clone();
    assert!(
        tokio::time::timeout(WAKE_DEADLINE, sub.woken())
            .await
            .is_ok(),
        "{key:?} was not woken"
    );
}

/// Nothing is pending for `sub` right now (checked without waiting).
async fn assert_not_woken(sub: &mut WakeUp) {
    let key = sub.key().clone();
    let mut woken = std::pin::pin!(sub.woken());
    let ready = std::future::poll_fn(|cx| {
        std::task::Poll::Ready(std::future::Future::poll(woken.as_mut(), cx).is_ready())
    })
    .await;
    assert!(!ready, "{key:?} was woken");
}

pub async fn wake_ups_on_decision(store: &dyn Store) {
    let s = seed(store).await;
    let req = s.pending(store).await;
    let mut on_request = store.subscribe(&WakeKey::request(&s.env.id, &req.auth_req_id));
    let mut on_user = store.subscribe(&WakeKey::user(&s.env.id, &s.user.id));
    let other = s.pending(store).await;
    let mut on_other = store.subscribe(&WakeKey::request(&s.env.id, &other.auth_req_id));
    assert_woken(&mut on_user).await; // the other request is new

    let approve = decision(DecisionOutcome::Approve);
    assert!(decide(store, &req, &approve, NOW).await);
    assert_woken(&mut on_request).await;
    assert_woken(&mut on_user).await;
    assert_not_woken(&mut on_other).await;

    // A decision that loses changes nothing and wakes nobody.
    let deny = decision(DecisionOutcome::Deny);
    assert!(!decide(store, &req, &deny, NOW).await);
    assert_not_woken(&mut on_request).await;
    assert_not_woken(&mut on_user).await;
}

pub async fn wake_ups_on_new_request(store: &dyn Store) {
    let s = seed(store).await;
    let bob = user(&s.env.id, "bob");
    store.create_user(&bob).await.unwrap();
    let mut on_alice = store.subscribe(&WakeKey::user(&s.env.id, &s.user.id));
    let mut on_bob = store.subscribe(&WakeKey::user(&s.env.id, &bob.id));
    // The same user id in another environment is another key.
    let mut elsewhere = store.subscribe(&WakeKey::user(&"another-environment".into(), &s.user.id));

    s.pending(store).await;
    assert_woken(&mut on_alice).await;
    assert_not_woken(&mut on_bob).await;

    // Through the abuse guard too, but not when the guard refuses it.
    let guard = AbuseGuard {
        now: NOW,
        window_start: NOW.plus_secs(-60),
        max_pending_per_user: Some(2),
        max_per_window: None,
    };
    let admitted = insert_guarded(store, &s.request(), &guard).await;
    assert_eq!(admitted, Applied::Won);
    assert_woken(&mut on_alice).await;
    let refused = insert_guarded(store, &s.request(), &guard).await;
    assert!(matches!(refused, Applied::Limited { .. }), "{refused:?}");
    assert_not_woken(&mut on_alice).await;
    assert_not_woken(&mut on_bob).await;
    assert_not_woken(&mut elsewhere).await;
}

pub async fn wake_ups_on_redemption(store: &dyn Store) {
    let s = seed(store).await;
    let req = s.approved(store).await;
    let mut on_request = store.subscribe(&WakeKey::request(&s.env.id, &req.auth_req_id));
    let tokens = IssuedTokens {
        access_token: access_token(&req),
        refresh_token: None,
    };
    assert!(redeem(store, &req, NOW, &tokens).await);
    assert_woken(&mut on_request).await;
    let again = IssuedTokens {
        access_token: access_token(&req),
        refresh_token: None,
    };
    assert!(!redeem(store, &req, NOW, &again).await);
    assert_not_woken(&mut on_request).await;
}

// --- scheduled work ---------------------------------------------------------------------------
//
// Claims look at the whole database (a worker serves every environment), so these tests need a
// store of their own, as every factory of `store_test_suite!` gives them.

/// The lease of every claim in these tests.
const LEASE_MS: i64 = 30_000;

/// An automatic approval of `req` due at `due_at`.
fn auto_decision_due(req: &CibaRequest, due_at: Timestamp) -> ScheduledWork {
    ScheduledWork {
        id: WorkId(new_id()),
        environment_id: req.environment_id.clone(),
        due_at,
        job: Job::AutoDecision {
            auth_req_id: req.auth_req_id.clone(),
            outcome: DecisionOutcome::Approve,
        },
    }
}

/// Inserts a pending request of the seed with one piece of work per due time, in one
/// transition. Returns the request and its work.
async fn pending_with_work(
    store: &dyn Store,
    s: &Seed,
    due: &[Timestamp],
) -> (CibaRequest, Vec<ScheduledWork>) {
    let req = s.request();
    let work: Vec<ScheduledWork> = due.iter().map(|&d| auto_decision_due(&req, d)).collect();
    let insert = Transition {
        schedule: work.clone(),
        ..Transition::new(
            s.env.id.clone(),
            Guard::Admit { abuse: None },
            Change::InsertRequest {
                request: req.clone(),
            },
        )
    };
    assert_eq!(store.apply(&insert).await.unwrap(), Applied::Won);
    (req, work)
}

/// The automatic decision of `work`, finishing it: what a worker applies.
fn decide_completing(req: &CibaRequest, work: &ScheduledWork, at: Timestamp) -> Transition {
    let mut decision = decision(DecisionOutcome::Approve);
    decision.channel = DecisionChannel::Auto;
    decision.amr = vec!["sim".into()];
    decision.evidence = None;
    decision.decided_at = at;
    Transition {
        completes: Some(work.id.clone()),
        ..Transition::new(
            req.environment_id.clone(),
            Guard::PendingAt { at },
            Change::Decide {
                auth_req_id: req.auth_req_id.clone(),
                decision,
            },
        )
    }
}

fn ids(claimed: &[ClaimedWork]) -> Vec<&str> {
    claimed.iter().map(|c| c.work.id.as_str()).collect()
}

pub async fn work_claims_only_due_work_oldest_first(store: &dyn Store) {
    let s = seed(store).await;
    let (_, later) = pending_with_work(store, &s, &[NOW.plus_secs(10)]).await;
    let (_, due) = pending_with_work(store, &s, &[NOW, NOW.plus_millis(-5)]).await;
    let claimed = store
        .claim_due_work("a", NOW, NOW.plus_millis(LEASE_MS), 10)
        .await
        .unwrap();
    // Due at NOW or before, oldest due first; the later work is not due.
    assert_eq!(ids(&claimed), vec![due[1].id.as_str(), due[0].id.as_str()]);
    assert_eq!(claimed[0].work, due[1]);
    assert_eq!(claimed[0].attempts, 0);
    assert_eq!(claimed[0].claimed_until, NOW.plus_millis(LEASE_MS));
    // The limit is respected, and claimed work is not claimed again under its lease.
    let at = NOW.plus_secs(10);
    assert!(
        store
            .claim_due_work("b", at, at.plus_millis(LEASE_MS), 0)
            .await
            .unwrap()
            .is_empty()
    );
    let claimed = store
        .claim_due_work("b", at, at.plus_millis(LEASE_MS), 10)
        .await
        .unwrap();
    assert_eq!(ids(&claimed), vec![later[0].id.as_str()]);
}

pub async fn work_lease_excludes_other_workers_until_it_ends(store: &dyn Store) {
    let s = seed(store).await;
    let (_, work) = pending_with_work(store, &s, &[NOW]).await;
    let lease_end = NOW.plus_millis(LEASE_MS);
    let a = store.claim_due_work("a", NOW, lease_end, 10).await.unwrap();
    assert_eq!(ids(&a), vec![work[0].id.as_str()]);
    // A live lease: nobody else, not even the same worker, claims it again.
    for (worker, at) in [("b", NOW), ("b", lease_end.plus_millis(-1)), ("a", NOW)] {
        let claimed = store
            .claim_due_work(worker, at, at.plus_millis(LEASE_MS), 10)
            .await
            .unwrap();
        assert!(claimed.is_empty(), "{worker} at {at:?}: {claimed:?}");
    }
    // An expired lease: free again, and the earlier claim counts as an attempt.
    let b = store
        .claim_due_work("b", lease_end, lease_end.plus_millis(LEASE_MS), 10)
        .await
        .unwrap();
    assert_eq!(ids(&b), vec![work[0].id.as_str()]);
    assert_eq!(b[0].attempts, 1);
    assert_eq!(b[0].claimed_until, lease_end.plus_millis(LEASE_MS));
}

pub async fn work_given_back_only_by_its_holder(store: &dyn Store) {
    let s = seed(store).await;
    let (_, work) = pending_with_work(store, &s, &[NOW]).await;
    let id = &work[0].id;
    let lease_end = NOW.plus_millis(LEASE_MS);
    store.claim_due_work("a", NOW, lease_end, 10).await.unwrap();
    let retry_at = NOW.plus_secs(2);
    assert!(!store.retry_work("b", id, retry_at).await.unwrap());
    assert!(
        !store
            .retry_work("a", &WorkId(new_id()), retry_at)
            .await
            .unwrap(),
        "unknown work"
    );
    // Refused: a's lease still holds it.
    assert!(
        store
            .claim_due_work("b", NOW.plus_secs(5), NOW.plus_secs(35), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.retry_work("a", id, retry_at).await.unwrap());
    // Given back: unclaimed, due at the new time, claimable by anyone from then on.
    assert_eq!(store.next_work_due().await.unwrap(), Some(retry_at));
    let before = retry_at.plus_millis(-1);
    assert!(
        store
            .claim_due_work("b", before, before.plus_millis(LEASE_MS), 10)
            .await
            .unwrap()
            .is_empty()
    );
    let b = store
        .claim_due_work("b", retry_at, retry_at.plus_millis(LEASE_MS), 10)
        .await
        .unwrap();
    assert_eq!(ids(&b), vec![id.as_str()]);
    assert_eq!(b[0].work.due_at, retry_at);
    assert_eq!(b[0].attempts, 1);
    // a holds it no more.
    assert!(!store.retry_work("a", id, retry_at).await.unwrap());
}

pub async fn work_next_due(store: &dyn Store) {
    assert_eq!(store.next_work_due().await.unwrap(), None);
    let s = seed(store).await;
    let (req, work) = pending_with_work(store, &s, &[NOW.plus_secs(20), NOW.plus_secs(5)]).await;
    assert_eq!(store.next_work_due().await.unwrap(), Some(NOW.plus_secs(5)));
    // Claimed: claimable again at the end of its lease, so the other work comes first.
    let at = NOW.plus_secs(5);
    let claimed = store
        .claim_due_work("a", at, NOW.plus_secs(60), 10)
        .await
        .unwrap();
    assert_eq!(ids(&claimed), vec![work[1].id.as_str()]);
    assert_eq!(
        store.next_work_due().await.unwrap(),
        Some(NOW.plus_secs(20))
    );
    // Finished: gone.
    assert_eq!(
        store
            .apply(&decide_completing(&req, &work[1], at))
            .await
            .unwrap(),
        Applied::Won
    );
    assert_eq!(
        store.next_work_due().await.unwrap(),
        Some(NOW.plus_secs(20))
    );
    let done = Transition::complete_only(s.env.id.clone(), work[0].id.clone());
    assert_eq!(store.apply(&done).await.unwrap(), Applied::Won);
    assert_eq!(store.next_work_due().await.unwrap(), None);
}

pub async fn wake_ups_on_scheduled_work(store: &dyn Store) {
    let s = seed(store).await;
    let mut on_work = store.subscribe(&WakeKey::Work);
    // A transition without work wakes no worker.
    let plain = s.request();
    let insert = Transition::new(
        s.env.id.clone(),
        Guard::Admit { abuse: None },
        Change::InsertRequest { request: plain },
    );
    assert_eq!(store.apply(&insert).await.unwrap(), Applied::Won);
    assert_not_woken(&mut on_work).await;
    let (req, work) = pending_with_work(store, &s, &[NOW.plus_secs(5)]).await;
    assert_woken(&mut on_work).await;
    // Finishing work schedules none.
    assert_eq!(
        store
            .apply(&decide_completing(&req, &work[0], NOW))
            .await
            .unwrap(),
        Applied::Won
    );
    assert_not_woken(&mut on_work).await;
}

/// A crash in the middle of scheduled work: worker A claims it and dies with the store; after
/// the restart worker B runs it once A's lease ends, and A's late completion changes nothing.
/// `open` opens the same database each time it is called (a file, a server).
pub async fn scheduled_work_runs_once_across_a_restart<S, F, Fut>(open: F)
where
    S: Store,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    let due = NOW.plus_millis(1500);
    let lease_end = due.plus_millis(LEASE_MS);
    let (s, req, work, stale) = {
        let store = open().await;
        let s = seed(&store).await;
        let (req, work) = pending_with_work(&store, &s, &[due]).await;
        let early = store
            .claim_due_work("a", NOW, NOW.plus_millis(LEASE_MS), 10)
            .await
            .unwrap();
        assert!(early.is_empty(), "not due yet: {early:?}");
        let claimed = store.claim_due_work("a", due, lease_end, 10).await.unwrap();
        assert_eq!(ids(&claimed), vec![work[0].id.as_str()]);
        // A read the request and built its decision, then the process died before applying
        // it: the store goes without a clean close.
        let read = store
            .get_ciba_request(&s.env.id, &req.auth_req_id)
            .await
            .unwrap();
        let stale = decide_completing(&read, &work[0], due);
        drop(store);
        (s, req, work, stale)
    };

    let store = open().await;
    let pending = store
        .get_ciba_request(&s.env.id, &req.auth_req_id)
        .await
        .unwrap();
    assert_eq!(pending.status, CibaStatus::Pending, "nothing was decided");
    // A's lease survived the restart: B waits for its end.
    assert_eq!(store.next_work_due().await.unwrap(), Some(lease_end));
    let before = lease_end.plus_millis(-1);
    assert!(
        store
            .claim_due_work("b", before, before.plus_millis(LEASE_MS), 10)
            .await
            .unwrap()
            .is_empty()
    );
    let claimed = store
        .claim_due_work("b", lease_end, lease_end.plus_millis(LEASE_MS), 10)
        .await
        .unwrap();
    assert_eq!(ids(&claimed), vec![work[0].id.as_str()]);
    assert_eq!(claimed[0].attempts, 1);
    let ran = decide_completing(&pending, &claimed[0].work, lease_end);
    assert_eq!(store.apply(&ran).await.unwrap(), Applied::Won);

    // A's completion arrives late: lost, nothing written, whether it decides or only finishes.
    assert_eq!(store.apply(&stale).await.unwrap(), Applied::Lost);
    let only_finish = Transition::complete_only(s.env.id.clone(), work[0].id.clone());
    assert_eq!(store.apply(&only_finish).await.unwrap(), Applied::Lost);
    let decided = store
        .get_ciba_request(&s.env.id, &req.auth_req_id)
        .await
        .unwrap();
    assert_eq!(decided.status, CibaStatus::Approved);
    assert_eq!(
        decided.decision.as_ref().map(|d| d.decided_at),
        Some(lease_end),
        "B's decision, not A's"
    );
    // It ran once: nothing is left to claim, ever.
    assert_eq!(store.next_work_due().await.unwrap(), None);
    let far = lease_end.plus_secs(86_400);
    assert!(
        store
            .claim_due_work("b", far, far.plus_millis(LEASE_MS), 10)
            .await
            .unwrap()
            .is_empty()
    );
}

// --- group commit -----------------------------------------------------------------------------

/// What the group-commit tests need beyond [`Store`]: a way to hold the writer, so that the
/// transitions applied meanwhile queue up (`WriteStats::queued`) and then share one batch.
#[async_trait::async_trait]
pub trait HoldWrites: Store {
    /// The writer starts no batch until the returned value is dropped.
    async fn hold_writes(&self) -> Box<dyn Send>;
}

#[async_trait::async_trait]
impl HoldWrites for crate::SqliteStore {
    async fn hold_writes(&self) -> Box<dyn Send> {
        Box::new(crate::SqliteStore::hold_writes(self).await.unwrap())
    }
}

#[async_trait::async_trait]
impl<S: HoldWrites> HoldWrites for crate::CachedStore<S> {
    async fn hold_writes(&self) -> Box<dyn Send> {
        self.inner().hold_writes().await
    }
}

/// What applying a batch came to: each transition's outcome, in queue order, and what the
/// store's write counters moved by.
struct Batch {
    outcomes: Vec<StoreResult<Applied>>,
    commits: u64,
    transitions: u64,
}

/// Applies `transitions` from concurrent tasks while the writer is held, each queued before the
/// next is started (so the queue order is the order given), then lets the writer go: they are
/// applied together, in that order, as far as the store's batch cap allows.
async fn in_one_batch<S: HoldWrites + 'static>(
    store: &Arc<S>,
    transitions: Vec<Transition>,
) -> Batch {
    let before = store.write_stats();
    let held = store.hold_writes().await;
    let mut tasks = Vec::new();
    for t in transitions {
        let applier = Arc::clone(store);
        tasks.push(tokio::spawn(async move { applier.apply(&t).await }));
        wait_until_queued(store.as_ref(), before.queued + tasks.len() as u64).await;
    }
    drop(held);
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.unwrap());
    }
    let after = store.write_stats();
    Batch {
        outcomes,
        commits: after.commits - before.commits,
        transitions: after.transitions - before.transitions,
    }
}

/// Yields until `n` transitions wait for the writer (a condition, not a time).
async fn wait_until_queued(store: &dyn Store, n: u64) {
    while store.write_stats().queued < n {
        tokio::task::yield_now().await;
    }
}

fn won_count(outcomes: &[StoreResult<Applied>]) -> usize {
    outcomes
        .iter()
        .filter(|o| matches!(o, Ok(Applied::Won)))
        .count()
}

/// The batch really was grouped: every transition ran, in fewer commits than transitions.
fn assert_grouped(batch: &Batch, n: usize) {
    assert_eq!(batch.transitions, n as u64, "every transition was applied");
    assert!(
        batch.commits < batch.transitions,
        "{} commits for {} transitions",
        batch.commits,
        batch.transitions
    );
}

/// Sixty-four decisions of one pending request in one batch: the first wins, every other one
/// sees it and loses, exactly as if they had been applied one after another.
pub async fn group_commit_decisions_in_one_batch<S: HoldWrites + 'static>(store: Arc<S>) {
    let s = seed(store.as_ref()).await;
    let req = s.pending(store.as_ref()).await;
    let outcomes = [DecisionOutcome::Approve, DecisionOutcome::Deny];
    let decisions: Vec<Decision> = (0..64)
        .map(|i| Decision {
            evidence: Some(serde_json::json!({ "attempt": i })),
            ..decision(outcomes[i % outcomes.len()])
        })
        .collect();
    let transitions = decisions
        .iter()
        .map(|d| ciba::decide(&req, d.clone(), NOW).unwrap())
        .collect();
    let batch = in_one_batch(&store, transitions).await;
    assert_grouped(&batch, 64);
    assert_eq!(won_count(&batch.outcomes), 1, "{:?}", batch.outcomes);
    assert!(matches!(batch.outcomes[0], Ok(Applied::Won)));
    assert!(
        batch.outcomes[1..]
            .iter()
            .all(|o| matches!(o, Ok(Applied::Lost)))
    );
    let got = store
        .get_ciba_request(&s.env.id, &req.auth_req_id)
        .await
        .unwrap();
    assert_eq!(got.status, CibaStatus::Approved);
    assert_eq!(got.decision.as_ref(), Some(&decisions[0]));
}

/// Sixty-four redemptions of one approved request in one batch: one wins, and only its tokens
/// are stored.
pub async fn group_commit_redemptions_in_one_batch<S: HoldWrites + 'static>(store: Arc<S>) {
    let s = seed(store.as_ref()).await;
    let req = s.approved(store.as_ref()).await;
    let issued: Vec<IssuedTokens> = (0..64)
        .map(|_| IssuedTokens {
            access_token: access_token(&req),
            refresh_token: Some(refresh_token(&req, &new_id())),
        })
        .collect();
    let transitions = issued
        .iter()
        .map(|tokens| ciba::redeem(&req, tokens.clone(), NOW))
        .collect();
    let batch = in_one_batch(&store, transitions).await;
    assert_grouped(&batch, 64);
    assert_eq!(won_count(&batch.outcomes), 1, "{:?}", batch.outcomes);
    for (outcome, tokens) in batch.outcomes.iter().zip(&issued) {
        let stored = store
            .get_access_token(&s.env.id, &tokens.access_token.jti)
            .await
            .unwrap();
        let hash = &tokens.refresh_token.as_ref().unwrap().token_hash;
        let refresh = store.get_refresh_token(&s.env.id, hash).await.unwrap();
        match outcome {
            Ok(Applied::Won) => {
                assert!(stored.is_some() && refresh.is_some(), "the winner's tokens");
            }
            Ok(Applied::Lost) => {
                assert!(stored.is_none() && refresh.is_none(), "a loser's tokens");
            }
            other => panic!("a redemption wins or loses: {other:?}"),
        }
    }
    let got = store
        .get_ciba_request(&s.env.id, &req.auth_req_id)
        .await
        .unwrap();
    assert_eq!(got.status, CibaStatus::Redeemed);
}

/// Sixty-four independent admissions in one batch: all win, all are readable afterwards, and
/// they took fewer commits than transitions.
pub async fn group_commit_admissions_in_one_batch<S: HoldWrites + 'static>(store: Arc<S>) {
    let s = seed(store.as_ref()).await;
    let requests: Vec<CibaRequest> = (0..64).map(|_| s.request()).collect();
    let transitions = requests
        .iter()
        .map(|r| ciba::admit(r.clone(), None))
        .collect();
    let batch = in_one_batch(&store, transitions).await;
    assert_grouped(&batch, 64);
    assert_eq!(won_count(&batch.outcomes), 64, "{:?}", batch.outcomes);
    for req in &requests {
        let got = store
            .get_ciba_request(&s.env.id, &req.auth_req_id)
            .await
            .unwrap();
        assert_eq!(&got, req);
    }
}

/// A transition that fails inside a batch (a duplicate `auth_req_id`, whether stored before or
/// admitted earlier in the same batch) fails for its caller only: the others are written.
pub async fn group_commit_failure_fails_its_caller_only<S: HoldWrites + 'static>(store: Arc<S>) {
    let s = seed(store.as_ref()).await;
    let stored = s.pending(store.as_ref()).await;
    let (a, b, c) = (s.request(), s.request(), s.request());
    let admit = |r: &CibaRequest| ciba::admit(r.clone(), None);
    let batch = in_one_batch(
        &store,
        vec![
            admit(&a),
            admit(&stored),
            admit(&b),
            admit(&b),
            ciba::decide(&a, decision(DecisionOutcome::Approve), NOW).unwrap(),
            admit(&c),
        ],
    )
    .await;
    assert_grouped(&batch, 6);
    let conflict =
        |o: &StoreResult<Applied>| matches!(o, Err(StoreError::Conflict(UniqueField::AuthReqId)));
    let o = &batch.outcomes;
    assert!(matches!(o[0], Ok(Applied::Won)), "{o:?}");
    assert!(conflict(&o[1]), "{o:?}");
    assert!(matches!(o[2], Ok(Applied::Won)), "{o:?}");
    assert!(conflict(&o[3]), "{o:?}");
    assert!(matches!(o[4], Ok(Applied::Won)), "{o:?}");
    assert!(matches!(o[5], Ok(Applied::Won)), "{o:?}");
    let get = |r: &CibaRequest| {
        let store = Arc::clone(&store);
        let id = r.auth_req_id.clone();
        let env = s.env.id.clone();
        async move { store.get_ciba_request(&env, &id).await.unwrap() }
    };
    assert_eq!(get(&a).await.status, CibaStatus::Approved);
    assert_eq!(get(&b).await, b);
    assert_eq!(get(&c).await, c);
    assert_eq!(get(&stored).await, stored);
}

/// In one batch a request is admitted, decided, decided again, redeemed and redeemed again:
/// each transition sees the ones before it, so the outcomes are those of applying them one
/// after another.
pub async fn group_commit_sees_earlier_transitions_of_its_batch<S: HoldWrites + 'static>(
    store: Arc<S>,
) {
    let s = seed(store.as_ref()).await;
    let req = s.request();
    let tokens = |req: &CibaRequest| IssuedTokens {
        access_token: access_token(req),
        refresh_token: None,
    };
    let (first, second) = (tokens(&req), tokens(&req));
    let batch = in_one_batch(
        &store,
        vec![
            ciba::admit(req.clone(), None),
            ciba::decide(&req, decision(DecisionOutcome::Approve), NOW).unwrap(),
            ciba::decide(&req, decision(DecisionOutcome::Deny), NOW).unwrap(),
            ciba::redeem(&req, first.clone(), NOW),
            ciba::redeem(&req, second.clone(), NOW),
        ],
    )
    .await;
    assert_grouped(&batch, 5);
    let o = &batch.outcomes;
    assert!(matches!(o[0], Ok(Applied::Won)), "{o:?}");
    assert!(matches!(o[1], Ok(Applied::Won)), "{o:?}");
    assert!(matches!(o[2], Ok(Applied::Lost)), "{o:?}");
    assert!(matches!(o[3], Ok(Applied::Won)), "{o:?}");
    assert!(matches!(o[4], Ok(Applied::Lost)), "{o:?}");
    let got = store
        .get_ciba_request(&s.env.id, &req.auth_req_id)
        .await
        .unwrap();
    assert_eq!(got.status, CibaStatus::Redeemed);
    assert_eq!(
        got.decision.map(|d| d.outcome),
        Some(DecisionOutcome::Approve)
    );
    let jti = |t: &IssuedTokens| t.access_token.jti.clone();
    assert!(
        store
            .get_access_token(&s.env.id, &jti(&first))
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        store
            .get_access_token(&s.env.id, &jti(&second))
            .await
            .unwrap(),
        None
    );
}

/// Two waves of decisions of one request judged on the same read: the first queued while the
/// writer is held, the second racing in as it is let go (into that batch or later ones).
/// Exactly one decision wins over both waves, the first of the first wave.
pub async fn group_commit_races_across_batches<S: HoldWrites + 'static>(store: Arc<S>) {
    let s = seed(store.as_ref()).await;
    let req = s.pending(store.as_ref()).await;
    let before = store.write_stats();
    let decide = |i: usize| {
        let d = Decision {
            evidence: Some(serde_json::json!({ "attempt": i })),
            ..decision(DecisionOutcome::Approve)
        };
        (ciba::decide(&req, d.clone(), NOW).unwrap(), d)
    };
    let held = store.hold_writes().await;
    let mut tasks = Vec::new();
    let spawn = |t: Transition| {
        let store = Arc::clone(&store);
        tokio::spawn(async move { store.apply(&t).await.unwrap() })
    };
    let mut decisions = Vec::new();
    for i in 0..32 {
        let (t, d) = decide(i);
        tasks.push(spawn(t));
        decisions.push(d);
        wait_until_queued(store.as_ref(), before.queued + tasks.len() as u64).await;
    }
    // The second wave starts as the writer is let go.
    drop(held);
    for i in 32..64 {
        let (t, d) = decide(i);
        tasks.push(spawn(t));
        decisions.push(d);
    }
    let mut winners = Vec::new();
    for (i, task) in tasks.into_iter().enumerate() {
        if task.await.unwrap().won() {
            winners.push(i);
        }
    }
    assert_eq!(
        winners,
        vec![0],
        "exactly one decision wins, the first queued"
    );
    let after = store.write_stats();
    assert_eq!(after.transitions - before.transitions, 64);
    let got = store
        .get_ciba_request(&s.env.id, &req.auth_req_id)
        .await
        .unwrap();
    assert_eq!(got.decision.as_ref(), Some(&decisions[0]));
}

// --- devices, enrolment codes, the audit log ---------------------------------------------------

pub fn device(env_id: &EnvironmentId, user_id: &UserId) -> Device {
    Device {
        id: new_id(),
        environment_id: env_id.clone(),
        user_id: user_id.clone(),
        name: "Phone".into(),
        algorithm: DeviceKeyAlgorithm::Es256,
        public_jwk: serde_json::json!({"kty": "EC", "crv": "P-256", "x": "x", "y": "y"}),
        enabled: true,
        created_at: NOW,
        updated_at: NOW,
    }
}

fn device_entry(d: &Device, kind: ActivityType) -> AuditEntry {
    AuditEntry::about_device(
        d,
        kind,
        Actor::admin(),
        NOW,
        serde_json::json!({"name": d.name}),
    )
}

async fn log_of(
    store: &dyn Store,
    env_id: &EnvironmentId,
    filter: ActivityFilter,
) -> Vec<AuditEntry> {
    store
        .list_activities(env_id, &filter, &Page::first(1000))
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|a| a.entry)
        .collect()
}

fn kinds(entries: &[AuditEntry]) -> Vec<ActivityType> {
    entries.iter().map(|e| e.kind).collect()
}

/// Devices are created, read, listed per user, updated and deleted, each write with its audit
/// entry; a device of an unknown user is `NotFound`, and deleting the user deletes its devices.
pub async fn devices_crud_audited(store: &dyn Store) {
    let s = seed(store).await;
    let d = device(&s.env.id, &s.user.id);
    store
        .create_device(&d, &device_entry(&d, ActivityType::DeviceEnrolled))
        .await
        .unwrap();
    assert_eq!(store.get_device(&s.env.id, &d.id).await.unwrap(), d);
    let other = user(&s.env.id, "bob");
    store.create_user(&other).await.unwrap();
    let bobs = device(&s.env.id, &other.id);
    store
        .create_device(&bobs, &device_entry(&bobs, ActivityType::DeviceEnrolled))
        .await
        .unwrap();
    let listed = store
        .list_devices(&s.env.id, &s.user.id, &Page::first(10))
        .await
        .unwrap();
    assert_eq!(listed.items, vec![d.clone()]);
    assert_eq!(listed.total, 1);

    let nobody = device(&s.env.id, &UserId::from(new_id()));
    assert!(matches!(
        store
            .create_device(
                &nobody,
                &device_entry(&nobody, ActivityType::DeviceEnrolled)
            )
            .await,
        Err(StoreError::NotFound)
    ));
    // Another environment does not see it.
    let elsewhere = seed(store).await;
    assert!(matches!(
        store.get_device(&elsewhere.env.id, &d.id).await,
        Err(StoreError::NotFound)
    ));

    let updated = Device {
        enabled: false,
        name: "Old phone".into(),
        updated_at: NOW.plus_secs(1),
        ..d.clone()
    };
    assert!(
        store
            .update_device(
                &d,
                &updated,
                &device_entry(&updated, ActivityType::DeviceUpdated)
            )
            .await
            .unwrap()
    );
    // A change judged on a stale read is not written (compare-and-set), and logs nothing.
    let stale = Device {
        enabled: true,
        ..d.clone()
    };
    assert!(
        !store
            .update_device(
                &d,
                &stale,
                &device_entry(&stale, ActivityType::DeviceEnabled)
            )
            .await
            .unwrap()
    );
    assert_eq!(store.get_device(&s.env.id, &d.id).await.unwrap(), updated);
    // Updating or deleting through the wrong user finds nothing, and logs nothing.
    let wrong_user = Device {
        user_id: other.id.clone(),
        ..updated.clone()
    };
    assert!(matches!(
        store
            .update_device(
                &updated,
                &wrong_user,
                &device_entry(&wrong_user, ActivityType::DeviceUpdated)
            )
            .await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store
            .delete_device(
                &s.env.id,
                &other.id,
                &d.id,
                &device_entry(&d, ActivityType::DeviceDeleted)
            )
            .await,
        Err(StoreError::NotFound)
    ));
    store
        .delete_device(
            &s.env.id,
            &s.user.id,
            &d.id,
            &device_entry(&d, ActivityType::DeviceDeleted),
        )
        .await
        .unwrap();
    assert!(matches!(
        store.get_device(&s.env.id, &d.id).await,
        Err(StoreError::NotFound)
    ));
    let log = log_of(
        store,
        &s.env.id,
        ActivityFilter {
            user_id: Some(s.user.id.clone()),
            ..ActivityFilter::default()
        },
    )
    .await;
    assert_eq!(
        kinds(&log),
        [
            ActivityType::DeviceEnrolled,
            ActivityType::DeviceUpdated,
            ActivityType::DeviceDeleted
        ]
    );
    assert_eq!(log[0].device_id.as_deref(), Some(d.id.as_str()));
    assert_eq!(log[0].actor, Actor::admin());

    store.delete_user(&s.env.id, &other.id).await.unwrap();
    assert!(matches!(
        store.get_device(&s.env.id, &bobs.id).await,
        Err(StoreError::NotFound)
    ));
}

fn code_entry(e: &DeviceEnrollment) -> AuditEntry {
    AuditEntry::about_user(
        &e.environment_id,
        &e.user_id,
        ActivityType::EnrollmentCodeCreated,
        Actor::admin(),
        e.created_at,
        serde_json::json!({}),
    )
}

fn enrollment(env_id: &EnvironmentId, user_id: &UserId, code_hash: &str) -> DeviceEnrollment {
    DeviceEnrollment {
        code_hash: code_hash.into(),
        environment_id: env_id.clone(),
        user_id: user_id.clone(),
        created_at: NOW,
        expires_at: NOW.plus_secs(600),
    }
}

/// A code enrols one device, for the code's user whatever the device says, once; an expired or
/// unknown code enrols nothing; a code of another environment is unknown.
pub async fn device_enrollment_single_use(store: &dyn Store) {
    let s = seed(store).await;
    store
        .create_enrollment(
            &enrollment(&s.env.id, &s.user.id, "hash-1"),
            &code_entry(&enrollment(&s.env.id, &s.user.id, "hash-1")),
        )
        .await
        .unwrap();
    let d = device(&s.env.id, &UserId::from("placeholder"));
    let entry = device_entry(&d, ActivityType::DeviceEnrolled);
    let got = store
        .enroll_device("hash-1", &d, &entry, NOW.plus_secs(1))
        .await
        .unwrap();
    assert_eq!(got.user_id, s.user.id);
    assert_eq!(store.get_device(&s.env.id, &d.id).await.unwrap(), got);
    let again = device(&s.env.id, &UserId::from("placeholder"));
    assert!(matches!(
        store
            .enroll_device("hash-1", &again, &entry, NOW.plus_secs(2))
            .await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.get_device(&s.env.id, &again.id).await,
        Err(StoreError::NotFound)
    ));
    // Expired at its expiry.
    store
        .create_enrollment(
            &enrollment(&s.env.id, &s.user.id, "hash-2"),
            &code_entry(&enrollment(&s.env.id, &s.user.id, "hash-2")),
        )
        .await
        .unwrap();
    assert!(matches!(
        store
            .enroll_device("hash-2", &again, &entry, NOW.plus_secs(600))
            .await,
        Err(StoreError::NotFound)
    ));
    // Another environment's code.
    let other = seed(store).await;
    store
        .create_enrollment(
            &enrollment(&other.env.id, &other.user.id, "hash-3"),
            &code_entry(&enrollment(&other.env.id, &other.user.id, "hash-3")),
        )
        .await
        .unwrap();
    assert!(matches!(
        store.enroll_device("hash-3", &again, &entry, NOW).await,
        Err(StoreError::NotFound)
    ));
    // A code for a user that does not exist is refused.
    let nobody = enrollment(&s.env.id, &UserId::from(new_id()), "hash-4");
    assert!(matches!(
        store.create_enrollment(&nobody, &code_entry(&nobody)).await,
        Err(StoreError::NotFound)
    ));
    // Not for a disabled user.
    store
        .create_enrollment(
            &enrollment(&s.env.id, &s.user.id, "hash-5"),
            &code_entry(&enrollment(&s.env.id, &s.user.id, "hash-5")),
        )
        .await
        .unwrap();
    let disabled = User {
        enabled: false,
        ..s.user.clone()
    };
    store.update_user(&disabled).await.unwrap();
    assert!(matches!(
        store.enroll_device("hash-5", &again, &entry, NOW).await,
        Err(StoreError::NotFound)
    ));
    let log = log_of(store, &s.env.id, ActivityFilter::default()).await;
    let enrolled: Vec<_> = log
        .iter()
        .filter(|e| e.kind == ActivityType::DeviceEnrolled)
        .collect();
    assert_eq!(enrolled.len(), 1);
    assert_eq!(enrolled[0].user_id.as_ref(), Some(&s.user.id));
    // Each code created is in the log, for its user.
    let codes = log
        .iter()
        .filter(|e| e.kind == ActivityType::EnrollmentCodeCreated)
        .count();
    assert_eq!(codes, 3);
}

pub async fn device_enrollment_concurrently(store: Arc<dyn Store>) {
    let s = seed(store.as_ref()).await;
    store
        .create_enrollment(
            &enrollment(&s.env.id, &s.user.id, "race"),
            &code_entry(&enrollment(&s.env.id, &s.user.id, "race")),
        )
        .await
        .unwrap();
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let store = Arc::clone(&store);
            let d = device(&s.env.id, &UserId::from("placeholder"));
            tokio::spawn(async move {
                let entry = device_entry(&d, ActivityType::DeviceEnrolled);
                store.enroll_device("race", &d, &entry, NOW).await.is_ok()
            })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        if t.await.unwrap() {
            won += 1;
        }
    }
    assert_eq!(won, 1);
    let listed = store
        .list_devices(&s.env.id, &s.user.id, &Page::first(100))
        .await
        .unwrap();
    assert_eq!(listed.total, 1);
}

/// The audit entries a transition carries are written with it, in order, and not when it
/// loses: an admission, a decision (and a losing second one), a redemption, an expiry.
pub async fn audit_entries_written_with_their_transition(store: &dyn Store) {
    let s = seed(store).await;
    let req = s.pending(store).await;
    let t = ciba::decide(&req, decision(DecisionOutcome::Approve), NOW)
        .unwrap()
        .correlated("corr-1");
    assert_eq!(store.apply(&t).await.unwrap(), Applied::Won);
    // A second decision judged on the same read loses, and logs nothing.
    let late = ciba::decide(&req, decision(DecisionOutcome::Deny), NOW).unwrap();
    assert_eq!(store.apply(&late).await.unwrap(), Applied::Lost);
    let approved = store
        .get_ciba_request(&s.env.id, &req.auth_req_id)
        .await
        .unwrap();
    let tokens = IssuedTokens {
        access_token: access_token(&approved),
        refresh_token: None,
    };
    let at = NOW.plus_secs(1);
    assert_eq!(
        store
            .apply(&ciba::redeem(&approved, tokens, at))
            .await
            .unwrap(),
        Applied::Won
    );
    let expiring = s.pending(store).await;
    let t = ciba::expire(&expiring, expiring.expires_at).unwrap();
    assert_eq!(store.apply(&t).await.unwrap(), Applied::Won);
    assert_eq!(store.apply(&t).await.unwrap(), Applied::Lost);

    let log = log_of(
        store,
        &s.env.id,
        ActivityFilter {
            auth_req_id: Some(req.auth_req_id.clone()),
            ..ActivityFilter::default()
        },
    )
    .await;
    assert_eq!(
        kinds(&log),
        [
            ActivityType::RequestCreated,
            ActivityType::RequestApproved,
            ActivityType::TokensIssued
        ]
    );
    assert_eq!(log[1].correlation_id.as_deref(), Some("corr-1"));
    assert_eq!(log[1].channel, Some(DecisionChannel::Web));
    assert_eq!(
        log[1].actor,
        Actor::new(ActorType::User, Some(s.user.id.to_string()))
    );
    assert_eq!(
        log[0].actor,
        Actor::new(ActorType::Client, Some(s.app.id.to_string()))
    );
    assert_eq!(log[0].user_id.as_ref(), Some(&s.user.id));
    assert_eq!(log[0].application_id.as_ref(), Some(&s.app.id));
    let log = log_of(
        store,
        &s.env.id,
        ActivityFilter {
            auth_req_id: Some(expiring.auth_req_id.clone()),
            ..ActivityFilter::default()
        },
    )
    .await;
    assert_eq!(
        kinds(&log),
        [ActivityType::RequestCreated, ActivityType::RequestExpired]
    );
    assert_eq!(log[1].actor, Actor::system());
}

/// Filters by request, user, type and time combine; pages are in append order, with a
/// cursor; a malformed cursor is refused.
pub async fn audit_log_filters_and_pages(store: &dyn Store) {
    let s = seed(store).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let mut req = s.request();
        req.created_at = NOW.plus_secs(i);
        insert(store, &req).await.unwrap();
        ids.push(req.auth_req_id);
    }
    let all = log_of(store, &s.env.id, ActivityFilter::default()).await;
    assert_eq!(all.len(), 5);
    let order: Vec<_> = all.iter().map(|e| e.auth_req_id.clone().unwrap()).collect();
    assert_eq!(order, ids, "append order");
    let between = log_of(
        store,
        &s.env.id,
        ActivityFilter {
            since: Some(NOW.plus_secs(1)),
            until: Some(NOW.plus_secs(3)),
            ..ActivityFilter::default()
        },
    )
    .await;
    assert_eq!(between.len(), 2);
    let none = log_of(
        store,
        &s.env.id,
        ActivityFilter {
            kind: Some(ActivityType::TokensIssued),
            ..ActivityFilter::default()
        },
    )
    .await;
    assert!(none.is_empty());
    let first = store
        .list_activities(&s.env.id, &ActivityFilter::default(), &Page::first(2))
        .await
        .unwrap();
    assert_eq!(first.items.len(), 2);
    assert_eq!(first.total, 5);
    let second = store
        .list_activities(
            &s.env.id,
            &ActivityFilter::default(),
            &Page {
                limit: 2,
                cursor: first.next.clone(),
            },
        )
        .await
        .unwrap();
    assert_eq!(second.items[0].entry.auth_req_id.as_ref(), Some(&ids[2]));
    assert!(second.items[0].seq > first.items[1].seq);
    assert!(matches!(
        store
            .list_activities(
                &s.env.id,
                &ActivityFilter::default(),
                &Page {
                    limit: 2,
                    cursor: Some("garbage".into())
                }
            )
            .await,
        Err(StoreError::Corrupt(_))
    ));
    // Other environments' entries are not listed.
    let other = seed(store).await;
    assert!(
        log_of(store, &other.env.id, ActivityFilter::default())
            .await
            .is_empty()
    );
}

/// A device is told of a request once in the log however often it fetches it.
pub async fn device_notified_once(store: &dyn Store) {
    let s = seed(store).await;
    let req = s.pending(store).await;
    let d = device(&s.env.id, &s.user.id);
    let entry = || AuditEntry {
        device_id: Some(d.id.clone()),
        ..AuditEntry::about_request(
            &req,
            ActivityType::DeviceNotified,
            Actor::new(ActorType::Device, Some(d.id.clone())),
            Some(DecisionChannel::Device),
            NOW,
            serde_json::json!({}),
        )
    };
    assert!(store.record_device_notified(&entry()).await.unwrap());
    assert!(!store.record_device_notified(&entry()).await.unwrap());
    let other = AuditEntry {
        device_id: Some("another".into()),
        ..entry()
    };
    assert!(store.record_device_notified(&other).await.unwrap());
    let log = log_of(
        store,
        &s.env.id,
        ActivityFilter {
            kind: Some(ActivityType::DeviceNotified),
            ..ActivityFilter::default()
        },
    )
    .await;
    assert_eq!(log.len(), 2);
}

/// A user's pending requests exclude decided and expired ones and other users'; the sweep's
/// read finds requests still stored PENDING that expired in its window, and not once marked.
pub async fn pending_for_user_and_expired_pending(store: &dyn Store) {
    let s = seed(store).await;
    let pending = s.pending(store).await;
    let _approved = s.approved(store).await;
    let bob = user(&s.env.id, "bob");
    store.create_user(&bob).await.unwrap();
    let mut bobs = s.request();
    bobs.user_id = bob.id.clone();
    insert(store, &bobs).await.unwrap();
    let got = store
        .pending_for_user(&s.env.id, &s.user.id, NOW, 100)
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].auth_req_id, pending.auth_req_id);
    assert!(
        store
            .pending_for_user(&s.env.id, &s.user.id, pending.expires_at, 100)
            .await
            .unwrap()
            .is_empty()
    );
    let at = pending.expires_at;
    let expired = store.expired_pending(NOW, at, 10_000).await.unwrap();
    let ids: Vec<_> = expired
        .iter()
        .filter(|r| r.environment_id == s.env.id)
        .map(|r| r.auth_req_id.clone())
        .collect();
    assert!(ids.contains(&pending.auth_req_id) && ids.contains(&bobs.auth_req_id));
    assert_eq!(ids.len(), 2, "the approved request is not pending");
    // Not yet expired at `at - 1`, and outside the window after `at`.
    assert!(
        store
            .expired_pending(NOW, at.plus_millis(-1), 10_000)
            .await
            .unwrap()
            .iter()
            .all(|r| r.environment_id != s.env.id)
    );
    let t = ciba::expire(&pending, at).unwrap();
    store.apply(&t).await.unwrap();
    let again = store.expired_pending(NOW, at, 10_000).await.unwrap();
    assert!(!again.iter().any(|r| r.auth_req_id == pending.auth_req_id));
}
