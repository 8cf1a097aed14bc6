//! Hot reads from memory: [`CachedStore`] is a [`Store`] over another one that serves the
//! directory (environments, applications with their client secrets, users and the users hints
//! resolve to) and the signing keys from an in-process cache, so a poll or an acknowledgement
//! reads the database only for the CIBA request itself. Everything else passes through.
//!
//! **Invalidation.** Every management write made through this store drops what the cache holds
//! of that environment before it returns, so a disabled user or application, a rotated secret
//! or a new key takes effect on the next request served by this process. Writes made elsewhere
//! (another process on the same database file, another node on PostgreSQL, `assent secret-key
//! rotate`) are seen through the database's directory versions: a trigger gives an
//! environment a new version, in the writing transaction, on every change of it, its
//! applications, users or keys, and a refresher here reads the versions that passed the last
//! one it saw every [`REFRESH_INTERVAL`], dropping those environments. So a change made anywhere
//! is seen here within that interval (plus one query). docs/store.md, "The directory cache",
//! says how PostgreSQL extends this across nodes.
//!
//! **No stale fills.** A read that misses goes to the database and then fills the cache, but
//! only if no invalidation happened since the read began (one generation counter, bumped by
//! every invalidation under the same lock as the fills), so a value read before a write cannot
//! be put back after the write dropped it.
//!
//! **Secrets.** An application is held with its sealed client secret and, once a request
//! needed it, the opened secret ([`ApplicationEntry::secret`]), kept in a zeroizing buffer:
//! it is wiped when the entry is dropped (evicted, invalidated by a change, or the cache
//! dropped) and the last request using it is done.
//!
//! **Bounds.** At most [`MAX_ENVIRONMENTS`] environments are held, each with at most
//! [`MAX_ENTRIES`] users, hint lookups and applications; a full map drops an arbitrary entry
//! to make room. Lookups that find nobody (a user id or a hint naming no user: a username
//! hint is also tried as an id, so every acknowledgement by username asks for an id that does
//! not exist) are remembered apart, at most [`MAX_ABSENT`] of each kind per environment, so a
//! flood of unknown hints only ever displaces other unknown ones. They are dropped like the
//! rest: a user created through this store is found on the next request, one created
//! elsewhere within [`REFRESH_INTERVAL`].

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, PoisonError, RwLock};
use std::time::Duration;

use assent_core::transition::{Applied, Transition, WorkId};
use assent_core::{
    AccessTokenRecord, Activity, Application, ApplicationId, AuditEntry, AuthReqId, CibaRequest,
    Device, DeviceEnrollment, Environment, EnvironmentId, ListPage, Page, RefreshTokenRecord,
    SigningAlgorithm, SigningKey, Timestamp, User, UserId,
};
use zeroize::Zeroizing;

use crate::{
    ActivityFilter, AuditStore, CibaRequestFilter, CibaStore, ClaimedWork, DeviceStore,
    DirectoryStore, Housekeeping, JtiStore, KeyStore, Resealed, SealedValue, Store, StoreError,
    StoreResult, TokenStore, Transitions, WakeKey, WakeUp, WakeUps, WorkStore, WriteStats,
};

/// How often the refresher reads the directory versions: the bound within which a change made
/// outside this process is seen by it.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(1);

/// Environments held at most.
pub const MAX_ENVIRONMENTS: usize = 10_000;

/// Users, hint lookups and applications held at most per environment (each).
pub const MAX_ENTRIES: usize = 100_000;

/// Lookups that found nobody remembered at most per environment (user ids, and hint lookups,
/// each).
pub const MAX_ABSENT: usize = 10_000;

/// An application as the cache holds it: the application, its sealed client secret, and the
/// opened secret once somebody needed it (wiped from memory when this is dropped).
pub struct ApplicationEntry {
    pub application: Application,
    secret_sealed: Vec<u8>,
    opened: OnceLock<Zeroizing<String>>,
}

impl ApplicationEntry {
    pub fn new(application: Application, secret_sealed: Vec<u8>) -> ApplicationEntry {
        ApplicationEntry {
            application,
            secret_sealed,
            opened: OnceLock::new(),
        }
    }

    /// The client secret as sealed in the database.
    pub fn secret_sealed(&self) -> &[u8] {
        &self.secret_sealed
    }

    /// The opened client secret: `open` unseals it the first time, and the result is kept
    /// with this entry (so later requests open nothing) until the entry is dropped.
    pub fn secret<E>(&self, open: impl FnOnce(&[u8]) -> Result<String, E>) -> Result<&str, E> {
        if let Some(s) = self.opened.get() {
            return Ok(s.as_str());
        }
        let opened = Zeroizing::new(open(&self.secret_sealed)?);
        // Two first uses at once open it twice; the loser's copy is wiped when it drops here.
        Ok(self.opened.get_or_init(|| opened).as_str())
    }
}

impl std::fmt::Debug for ApplicationEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApplicationEntry")
            .field("application", &self.application)
            .field("secret_opened", &self.opened.get().is_some())
            .finish_non_exhaustive()
    }
}

/// How a hint found a user.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Lookup {
    Username,
    Email,
    Phone,
}

/// A map that never holds more than `MAX_ENTRIES`: inserting into a full one first drops an
/// arbitrary entry.
struct Bounded<K, V> {
    map: HashMap<K, V>,
    max: usize,
}

impl<K: Eq + Hash + Clone, V> Bounded<K, V> {
    fn new(max: usize) -> Self {
        Bounded {
            map: HashMap::new(),
            max,
        }
    }

    fn get(&self, k: &K) -> Option<&V> {
        self.map.get(k)
    }

    fn insert(&mut self, k: K, v: V) {
        if self.map.len() >= self.max
            && !self.map.contains_key(&k)
            && let Some(victim) = self.map.keys().next().cloned()
        {
            self.map.remove(&victim);
        }
        self.map.insert(k, v);
    }
}

/// What is held of one environment.
struct Held {
    environment: Option<Environment>,
    applications: Bounded<ApplicationId, Arc<ApplicationEntry>>,
    users: Bounded<UserId, User>,
    lookups: Bounded<(Lookup, String), UserId>,
    /// User ids that name nobody.
    absent_users: Bounded<UserId, ()>,
    /// Hint lookups that found nobody.
    absent_lookups: Bounded<(Lookup, String), ()>,
    current_keys: HashMap<SigningAlgorithm, SigningKey>,
    keys: Option<Vec<SigningKey>>,
}

impl Held {
    fn new() -> Held {
        Held {
            environment: None,
            applications: Bounded::new(MAX_ENTRIES),
            users: Bounded::new(MAX_ENTRIES),
            lookups: Bounded::new(MAX_ENTRIES),
            absent_users: Bounded::new(MAX_ABSENT),
            absent_lookups: Bounded::new(MAX_ABSENT),
            current_keys: HashMap::new(),
            keys: None,
        }
    }
}

#[derive(Default)]
struct Shared {
    held: RwLock<HashMap<EnvironmentId, Held>>,
    /// Bumped (under the write lock of `held`) by every invalidation; a fill whose read began
    /// at another generation is dropped.
    generation: AtomicU64,
    /// The newest directory version the refresher has seen.
    seen_version: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
}

/// Counters of the cache since it was built (for `/metrics` and tests).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Reads answered from memory.
    pub hits: u64,
    /// Reads that went to the database.
    pub misses: u64,
    /// Invalidations (of one environment or of everything).
    pub invalidations: u64,
    /// Environments held now.
    pub environments: u64,
}

impl Shared {
    fn read<T>(&self, env: &EnvironmentId, f: impl FnOnce(&Held) -> Option<T>) -> Option<T> {
        let held = self.held.read().unwrap_or_else(PoisonError::into_inner);
        let found = held.get(env).and_then(f);
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Stores what a read that began at generation `at` found, unless something was
    /// invalidated since.
    fn fill(&self, at: u64, env: &EnvironmentId, f: impl FnOnce(&mut Held)) {
        let mut held = self.held.write().unwrap_or_else(PoisonError::into_inner);
        if self.generation.load(Ordering::SeqCst) != at {
            return;
        }
        if !held.contains_key(env) {
            if held.len() >= MAX_ENVIRONMENTS
                && let Some(victim) = held.keys().next().cloned()
            {
                held.remove(&victim);
            }
            held.insert(env.clone(), Held::new());
        }
        if let Some(h) = held.get_mut(env) {
            f(h);
        }
    }

    fn invalidate(&self, env: &EnvironmentId) {
        let mut held = self.held.write().unwrap_or_else(PoisonError::into_inner);
        self.generation.fetch_add(1, Ordering::SeqCst);
        held.remove(env);
    }

    fn invalidate_all(&self) {
        let mut held = self.held.write().unwrap_or_else(PoisonError::into_inner);
        self.generation.fetch_add(1, Ordering::SeqCst);
        held.clear();
    }
}

/// A [`Store`] that serves the directory and the signing keys from memory (module docs).
pub struct CachedStore<S: ?Sized = dyn Store> {
    inner: Arc<S>,
    shared: Arc<Shared>,
    refresher: Option<tokio::task::JoinHandle<()>>,
}

impl<S: Store + ?Sized> std::fmt::Debug for CachedStore<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedStore")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl<S: ?Sized> Drop for CachedStore<S> {
    fn drop(&mut self) {
        if let Some(r) = self.refresher.take() {
            r.abort();
        }
    }
}

impl<S: Store + ?Sized> CachedStore<S> {
    /// A cache over `inner` whose refresher (on the current Tokio runtime) reads the
    /// directory versions every [`REFRESH_INTERVAL`]. Reads the current version first, so that
    /// only later changes count.
    pub async fn new(inner: Arc<S>) -> StoreResult<CachedStore<S>> {
        Self::with_refresh(inner, Some(REFRESH_INTERVAL)).await
    }

    /// As [`CachedStore::new`], refreshing every `interval`, or only when
    /// [`CachedStore::refresh`] is called (`None`: tests).
    pub async fn with_refresh(
        inner: Arc<S>,
        interval: Option<Duration>,
    ) -> StoreResult<CachedStore<S>> {
        let shared = Arc::new(Shared::default());
        let newest = inner
            .directory_changes_since(0)
            .await?
            .iter()
            .map(|(_, v)| *v)
            .max()
            .unwrap_or(0);
        shared.seen_version.store(newest, Ordering::SeqCst);
        let refresher = interval.map(|every| {
            let inner = Arc::clone(&inner);
            let shared = Arc::clone(&shared);
            tokio::spawn(async move {
                let mut ticks = tokio::time::interval(every);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    ticks.tick().await;
                    if let Err(e) = refresh(&*inner, &shared).await {
                        tracing::warn!(error = %e, "reading the directory versions failed; the cache is dropped and read again");
                        shared.invalidate_all();
                    }
                }
            })
        });
        Ok(CachedStore {
            inner,
            shared,
            refresher,
        })
    }

    /// Reads the directory versions now and drops the environments changed since the last
    /// look (the refresher does this every interval).
    pub async fn refresh(&self) -> StoreResult<()> {
        refresh(&*self.inner, &self.shared).await
    }

    /// Drops everything held.
    pub fn clear(&self) {
        self.shared.invalidate_all();
    }

    pub fn stats(&self) -> CacheStats {
        let held = self
            .shared
            .held
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        CacheStats {
            hits: self.shared.hits.load(Ordering::Relaxed),
            misses: self.shared.misses.load(Ordering::Relaxed),
            invalidations: self.shared.generation.load(Ordering::SeqCst),
            environments: held.len() as u64,
        }
    }

    /// The store under the cache.
    pub fn inner(&self) -> &Arc<S> {
        &self.inner
    }

    /// Runs `write` on the inner store, then drops what is held of `env` (whether the write
    /// succeeded or not: a failed write may still have changed something, say a partial
    /// error after a commit).
    async fn written<T>(
        &self,
        env: &EnvironmentId,
        write: impl Future<Output = StoreResult<T>>,
    ) -> StoreResult<T> {
        let result = write.await;
        self.shared.invalidate(env);
        result
    }

    /// The user `id` holds under `lookup`, from memory or read through `find`.
    async fn find_user(
        &self,
        env: &EnvironmentId,
        lookup: Lookup,
        value: &str,
        find: impl Future<Output = StoreResult<Option<User>>>,
    ) -> StoreResult<Option<User>> {
        let key = (lookup, value.to_owned());
        if let Some(user) = self.shared.read(env, |h| {
            match h.lookups.get(&key).and_then(|id| h.users.get(id)) {
                Some(user) => Some(Some(user.clone())),
                None => h.absent_lookups.get(&key).map(|()| None),
            }
        }) {
            return Ok(user);
        }
        let at = self.shared.generation();
        let found = find.await?;
        self.shared.fill(at, env, |h| match &found {
            Some(user) => {
                h.lookups.insert(key, user.id.clone());
                h.users.insert(user.id.clone(), user.clone());
            }
            None => h.absent_lookups.insert(key, ()),
        });
        Ok(found)
    }
}

async fn refresh<S: Store + ?Sized>(inner: &S, shared: &Shared) -> StoreResult<()> {
    let after = shared.seen_version.load(Ordering::SeqCst);
    let changed = inner.directory_changes_since(after).await?;
    let mut newest = after;
    for (env, version) in &changed {
        shared.invalidate(env);
        newest = newest.max(*version);
    }
    // Two refreshes at once (the refresher and a purge) never move it back.
    shared.seen_version.fetch_max(newest, Ordering::SeqCst);
    if !changed.is_empty() {
        tracing::debug!(
            environments = changed.len(),
            "directory changed elsewhere; cached entries dropped"
        );
    }
    Ok(())
}

#[async_trait::async_trait]
impl<S: Store + ?Sized> DirectoryStore for CachedStore<S> {
    async fn create_environment(&self, env: &Environment) -> StoreResult<()> {
        self.written(&env.id, self.inner.create_environment(env))
            .await
    }

    async fn get_environment(&self, id: &EnvironmentId) -> StoreResult<Environment> {
        if let Some(env) = self.shared.read(id, |h| h.environment.clone()) {
            return Ok(env);
        }
        let at = self.shared.generation();
        let env = self.inner.get_environment(id).await?;
        self.shared
            .fill(at, id, |h| h.environment = Some(env.clone()));
        Ok(env)
    }

    async fn list_environments(&self, page: &Page) -> StoreResult<ListPage<Environment>> {
        self.inner.list_environments(page).await
    }

    async fn update_environment(&self, env: &Environment) -> StoreResult<()> {
        self.written(&env.id, self.inner.update_environment(env))
            .await
    }

    async fn delete_environment(&self, id: &EnvironmentId) -> StoreResult<()> {
        self.written(id, self.inner.delete_environment(id)).await
    }

    async fn create_application(&self, app: &Application, secret_sealed: &[u8]) -> StoreResult<()> {
        self.written(
            &app.environment_id,
            self.inner.create_application(app, secret_sealed),
        )
        .await
    }

    async fn get_application(
        &self,
        env_id: &EnvironmentId,
        id: &ApplicationId,
    ) -> StoreResult<Application> {
        Ok(self
            .get_application_entry(env_id, id)
            .await?
            .application
            .clone())
    }

    async fn get_application_entry(
        &self,
        env_id: &EnvironmentId,
        id: &ApplicationId,
    ) -> StoreResult<Arc<ApplicationEntry>> {
        if let Some(app) = self
            .shared
            .read(env_id, |h| h.applications.get(id).cloned())
        {
            return Ok(app);
        }
        let at = self.shared.generation();
        let app = self.inner.get_application_entry(env_id, id).await?;
        self.shared.fill(at, env_id, |h| {
            h.applications.insert(id.clone(), Arc::clone(&app));
        });
        Ok(app)
    }

    async fn list_applications(
        &self,
        env_id: &EnvironmentId,
        page: &Page,
    ) -> StoreResult<ListPage<Application>> {
        self.inner.list_applications(env_id, page).await
    }

    async fn update_application(&self, app: &Application) -> StoreResult<()> {
        self.written(&app.environment_id, self.inner.update_application(app))
            .await
    }

    async fn delete_application(
        &self,
        env_id: &EnvironmentId,
        id: &ApplicationId,
    ) -> StoreResult<()> {
        self.written(env_id, self.inner.delete_application(env_id, id))
            .await
    }

    async fn get_application_secret(
        &self,
        env_id: &EnvironmentId,
        id: &ApplicationId,
    ) -> StoreResult<Vec<u8>> {
        Ok(self
            .get_application_entry(env_id, id)
            .await?
            .secret_sealed()
            .to_vec())
    }

    async fn set_application_secret(
        &self,
        env_id: &EnvironmentId,
        id: &ApplicationId,
        secret_sealed: &[u8],
        now: Timestamp,
    ) -> StoreResult<()> {
        self.written(
            env_id,
            self.inner
                .set_application_secret(env_id, id, secret_sealed, now),
        )
        .await
    }

    async fn create_user(&self, user: &User) -> StoreResult<()> {
        self.written(&user.environment_id, self.inner.create_user(user))
            .await
    }

    async fn get_user(&self, env_id: &EnvironmentId, id: &UserId) -> StoreResult<User> {
        if let Some(user) = self.shared.read(env_id, |h| match h.users.get(id) {
            Some(user) => Some(Ok(user.clone())),
            None => h.absent_users.get(id).map(|()| Err(StoreError::NotFound)),
        }) {
            return user;
        }
        let at = self.shared.generation();
        let user = self.inner.get_user(env_id, id).await;
        match &user {
            Ok(found) => self.shared.fill(at, env_id, |h| {
                h.users.insert(id.clone(), found.clone());
            }),
            Err(StoreError::NotFound) => self.shared.fill(at, env_id, |h| {
                h.absent_users.insert(id.clone(), ());
            }),
            Err(_) => {}
        }
        user
    }

    async fn find_user_by_username(
        &self,
        env_id: &EnvironmentId,
        username: &str,
    ) -> StoreResult<Option<User>> {
        self.find_user(
            env_id,
            Lookup::Username,
            username,
            self.inner.find_user_by_username(env_id, username),
        )
        .await
    }

    async fn find_user_by_email(
        &self,
        env_id: &EnvironmentId,
        email: &str,
    ) -> StoreResult<Option<User>> {
        self.find_user(
            env_id,
            Lookup::Email,
            email,
            self.inner.find_user_by_email(env_id, email),
        )
        .await
    }

    async fn find_user_by_phone(
        &self,
        env_id: &EnvironmentId,
        phone: &str,
    ) -> StoreResult<Option<User>> {
        self.find_user(
            env_id,
            Lookup::Phone,
            phone,
            self.inner.find_user_by_phone(env_id, phone),
        )
        .await
    }

    async fn list_users(
        &self,
        env_id: &EnvironmentId,
        username: Option<&str>,
        page: &Page,
    ) -> StoreResult<ListPage<User>> {
        self.inner.list_users(env_id, username, page).await
    }

    async fn update_user(&self, user: &User) -> StoreResult<()> {
        self.written(&user.environment_id, self.inner.update_user(user))
            .await
    }

    async fn delete_user(&self, env_id: &EnvironmentId, id: &UserId) -> StoreResult<()> {
        self.written(env_id, self.inner.delete_user(env_id, id))
            .await
    }

    async fn directory_changes_since(&self, after: u64) -> StoreResult<Vec<(EnvironmentId, u64)>> {
        self.inner.directory_changes_since(after).await
    }
}

#[async_trait::async_trait]
impl<S: Store + ?Sized> KeyStore for CachedStore<S> {
    async fn insert_signing_key(
        &self,
        key: &SigningKey,
        previous_retire_at: Timestamp,
    ) -> StoreResult<()> {
        self.written(
            &key.environment_id,
            self.inner.insert_signing_key(key, previous_retire_at),
        )
        .await
    }

    async fn list_signing_keys(&self, env_id: &EnvironmentId) -> StoreResult<Vec<SigningKey>> {
        if let Some(keys) = self.shared.read(env_id, |h| h.keys.clone()) {
            return Ok(keys);
        }
        let at = self.shared.generation();
        let keys = self.inner.list_signing_keys(env_id).await?;
        self.shared
            .fill(at, env_id, |h| h.keys = Some(keys.clone()));
        Ok(keys)
    }

    async fn current_signing_key(
        &self,
        env_id: &EnvironmentId,
        alg: SigningAlgorithm,
    ) -> StoreResult<Option<SigningKey>> {
        if let Some(key) = self
            .shared
            .read(env_id, |h| h.current_keys.get(&alg).cloned())
        {
            return Ok(Some(key));
        }
        let at = self.shared.generation();
        let key = self.inner.current_signing_key(env_id, alg).await?;
        if let Some(k) = &key {
            self.shared.fill(at, env_id, |h| {
                h.current_keys.insert(alg, k.clone());
            });
        }
        Ok(key)
    }

    async fn insert_signing_key_if_absent(&self, key: &SigningKey) -> StoreResult<SigningKey> {
        self.written(
            &key.environment_id,
            self.inner.insert_signing_key_if_absent(key),
        )
        .await
    }

    async fn get_server_meta(&self, name: &str) -> StoreResult<Option<Vec<u8>>> {
        self.inner.get_server_meta(name).await
    }

    async fn put_server_meta(&self, name: &str, value: &[u8]) -> StoreResult<()> {
        self.inner.put_server_meta(name, value).await
    }

    async fn list_sealed_values(&self) -> StoreResult<Vec<SealedValue>> {
        self.inner.list_sealed_values().await
    }

    async fn reseal_all(&self, resealed: &[Resealed], meta: (&str, &[u8])) -> StoreResult<()> {
        let result = self.inner.reseal_all(resealed, meta).await;
        self.shared.invalidate_all();
        result
    }
}

#[async_trait::async_trait]
impl<S: Store + ?Sized> CibaStore for CachedStore<S> {
    async fn get_ciba_request(
        &self,
        env_id: &EnvironmentId,
        auth_req_id: &AuthReqId,
    ) -> StoreResult<CibaRequest> {
        self.inner.get_ciba_request(env_id, auth_req_id).await
    }

    async fn list_ciba_requests(
        &self,
        env_id: &EnvironmentId,
        filter: &CibaRequestFilter,
        now: Timestamp,
        page: &Page,
    ) -> StoreResult<ListPage<CibaRequest>> {
        self.inner
            .list_ciba_requests(env_id, filter, now, page)
            .await
    }

    async fn pending_for_user(
        &self,
        env_id: &EnvironmentId,
        user_id: &UserId,
        now: Timestamp,
        limit: u32,
    ) -> StoreResult<Vec<CibaRequest>> {
        self.inner
            .pending_for_user(env_id, user_id, now, limit)
            .await
    }

    async fn expired_pending(
        &self,
        after: Timestamp,
        now: Timestamp,
        limit: u32,
    ) -> StoreResult<Vec<CibaRequest>> {
        self.inner.expired_pending(after, now, limit).await
    }
}

/// Devices are read for each device call (not cached): a disabled or deleted device is refused
/// on its next call by construction.
#[async_trait::async_trait]
impl<S: Store + ?Sized> DeviceStore for CachedStore<S> {
    async fn create_device(&self, device: &Device, audit: &AuditEntry) -> StoreResult<()> {
        self.inner.create_device(device, audit).await
    }

    async fn get_device(&self, env_id: &EnvironmentId, id: &str) -> StoreResult<Device> {
        self.inner.get_device(env_id, id).await
    }

    async fn list_devices(
        &self,
        env_id: &EnvironmentId,
        user_id: &UserId,
        page: &Page,
    ) -> StoreResult<ListPage<Device>> {
        self.inner.list_devices(env_id, user_id, page).await
    }

    async fn update_device(
        &self,
        read: &Device,
        device: &Device,
        audit: &AuditEntry,
    ) -> StoreResult<bool> {
        self.inner.update_device(read, device, audit).await
    }

    async fn delete_device(
        &self,
        env_id: &EnvironmentId,
        user_id: &UserId,
        id: &str,
        audit: &AuditEntry,
    ) -> StoreResult<()> {
        self.inner.delete_device(env_id, user_id, id, audit).await
    }

    async fn create_enrollment(
        &self,
        enrollment: &DeviceEnrollment,
        audit: &AuditEntry,
    ) -> StoreResult<()> {
        self.inner.create_enrollment(enrollment, audit).await
    }

    async fn enroll_device(
        &self,
        code_hash: &str,
        device: &Device,
        audit: &AuditEntry,
        now: Timestamp,
    ) -> StoreResult<Device> {
        self.inner
            .enroll_device(code_hash, device, audit, now)
            .await
    }
}

#[async_trait::async_trait]
impl<S: Store + ?Sized> AuditStore for CachedStore<S> {
    async fn list_activities(
        &self,
        env_id: &EnvironmentId,
        filter: &ActivityFilter,
        page: &Page,
    ) -> StoreResult<ListPage<Activity>> {
        self.inner.list_activities(env_id, filter, page).await
    }

    async fn record_device_notified(&self, entry: &AuditEntry) -> StoreResult<bool> {
        self.inner.record_device_notified(entry).await
    }
}

#[async_trait::async_trait]
impl<S: Store + ?Sized> TokenStore for CachedStore<S> {
    async fn get_access_token(
        &self,
        env_id: &EnvironmentId,
        jti: &str,
    ) -> StoreResult<Option<AccessTokenRecord>> {
        self.inner.get_access_token(env_id, jti).await
    }

    async fn insert_access_token(&self, token: &AccessTokenRecord) -> StoreResult<()> {
        self.inner.insert_access_token(token).await
    }

    async fn get_refresh_token(
        &self,
        env_id: &EnvironmentId,
        token_hash: &str,
    ) -> StoreResult<Option<RefreshTokenRecord>> {
        self.inner.get_refresh_token(env_id, token_hash).await
    }
}

#[async_trait::async_trait]
impl<S: Store + ?Sized> JtiStore for CachedStore<S> {
    async fn use_jti(
        &self,
        env_id: &EnvironmentId,
        namespace: &str,
        jti: &str,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> StoreResult<bool> {
        self.inner
            .use_jti(env_id, namespace, jti, expires_at, now)
            .await
    }
}

#[async_trait::async_trait]
impl<S: Store + ?Sized> Transitions for CachedStore<S> {
    async fn apply(&self, t: &Transition) -> StoreResult<Applied> {
        self.inner.apply(t).await
    }

    fn write_stats(&self) -> WriteStats {
        self.inner.write_stats()
    }
}

#[async_trait::async_trait]
impl<S: Store + ?Sized> WorkStore for CachedStore<S> {
    async fn claim_due_work(
        &self,
        worker: &str,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
    ) -> StoreResult<Vec<ClaimedWork>> {
        self.inner
            .claim_due_work(worker, now, lease_until, limit)
            .await
    }

    async fn next_work_due(&self) -> StoreResult<Option<Timestamp>> {
        self.inner.next_work_due().await
    }

    async fn retry_work(&self, worker: &str, id: &WorkId, due_at: Timestamp) -> StoreResult<bool> {
        self.inner.retry_work(worker, id, due_at).await
    }
}

#[async_trait::async_trait]
impl<S: Store + ?Sized> Housekeeping for CachedStore<S> {
    async fn ping(&self) -> StoreResult<()> {
        self.inner.ping().await
    }

    fn cache_stats(&self) -> Option<CacheStats> {
        Some(self.stats())
    }

    async fn purge_expired(&self, now: Timestamp) -> StoreResult<u64> {
        let deleted = self.inner.purge_expired(now).await?;
        // Retired signing keys past keeping go too: their deletes gave their environments new
        // versions, so what is held of them goes now (all of it, if the versions cannot be
        // read: the purge itself succeeded).
        if self.refresh().await.is_err() {
            self.clear();
        }
        Ok(deleted)
    }
}

impl<S: Store + ?Sized> WakeUps for CachedStore<S> {
    fn publish(&self, key: &WakeKey) {
        self.inner.publish(key);
    }

    fn subscribe(&self, key: &WakeKey) -> WakeUp {
        self.inner.subscribe(key)
    }
}
