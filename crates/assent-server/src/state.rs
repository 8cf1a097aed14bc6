//! What every handler can reach: the store, the configuration, the at-rest key, the clock,
//! the caches of parsed keys, the metrics (together the services' [`Deps`]), the services, and the
//! shutdown token and task tracker of background work.

use std::sync::Arc;
use std::time::Duration;

use assent_crypto::SecretBox;
use assent_store::Store;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clock::Clock;
use crate::keys::KeyRing;
use crate::outbound::JwksCache;
use crate::service::tokens::GrantRegistry;
use crate::service::{Deps, Services};
use crate::telemetry::Metrics;

/// Settings the HTTP layer needs (the binary builds them from flags, env vars and TOML).
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Base of every issuer and of absolute links, without a trailing slash.
    pub public_url: String,
    pub admin_token: String,
    /// Development and tests only: allow `http` and loopback/private URLs for outbound calls
    /// (application `jwksUrl`, notification endpoints).
    pub allow_private_notification_targets: bool,
}

/// The dependencies ([`Deps`], reached through `Deref`: `state.store`, `state.now()`, …), the
/// services built from them, and the lifecycle of background work.
///
/// One `Arc`, so the clone axum makes for every request and every `State` extractor is one
/// atomic increment (it was five `Deps` and the services' handles, some forty reference
/// counts, before: docs/performance.md).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

/// What an [`AppState`] shares (reached through `Deref`: `state.services`, `state.shutdown`).
#[derive(Clone)]
pub struct Shared {
    /// Read through `Deref`; replaced only by the `set_*` methods of [`AppState`], which
    /// rebuild the services so they keep sharing the same values.
    deps: Deps,
    /// The services between handlers and core, built once here.
    pub services: Services,
    /// Cancelled when the server shuts down: long-lived streams and workers watch it and end.
    pub shutdown: CancellationToken,
    /// Every background task (the scheduled-work worker, the purge loop) is spawned here,
    /// so shutdown can wait for them.
    pub tasks: TaskTracker,
    /// Which requests this process has audited as shown to which device.
    pub notified: crate::device::requests::Notified,
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl std::ops::Deref for Shared {
    type Target = Deps;

    fn deref(&self) -> &Deps {
        &self.deps
    }
}

impl Shared {
    fn rebuild_services(&mut self) {
        let grants = self.services.tokens.grants().clone();
        self.services = Services::new(&self.deps, grants);
    }
}

impl AppState {
    pub fn new(
        store: Arc<dyn Store>,
        config: ServerConfig,
        secrets: SecretBox,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let secrets = Arc::new(secrets);
        let allow_private = config.allow_private_notification_targets;
        let deps = Deps {
            keys: KeyRing::new(store.clone(), secrets.clone()),
            store,
            config: Arc::new(config),
            secrets,
            clock,
            jwks_cache: JwksCache::new(allow_private),
            metrics: Metrics::new(),
        };
        AppState(Arc::new(Shared {
            services: Services::new(&deps, GrantRegistry::standard()),
            deps,
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            notified: crate::device::requests::Notified::default(),
        }))
    }

    /// Replaces the clock (tests: a clock that counts its reads), for the handlers and the
    /// services alike. Call before the state is shared (a clone keeps what it had).
    pub fn set_clock(&mut self, clock: Arc<dyn Clock>) {
        let shared = Arc::make_mut(&mut self.0);
        shared.deps.clock = clock;
        shared.rebuild_services();
    }

    /// Replaces the JWKS cache (tests: other address rules or refresh interval).
    pub fn set_jwks_cache(&mut self, cache: JwksCache) {
        let shared = Arc::make_mut(&mut self.0);
        shared.deps.jwks_cache = cache;
        shared.rebuild_services();
    }

    /// Replaces the grant handlers the token endpoint answers.
    pub fn set_grants(&mut self, grants: GrantRegistry) {
        let shared = Arc::make_mut(&mut self.0);
        shared.services = Services::new(&shared.deps, grants);
    }

    /// Spawns a background task that ends when the server shuts down: `task` runs until it
    /// finishes or the shutdown token is cancelled, whichever comes first (`None` then).
    pub fn spawn_background<F>(&self, task: F) -> tokio::task::JoinHandle<Option<F::Output>>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tasks
            .spawn(self.shutdown.clone().run_until_cancelled_owned(task))
    }

    /// Cancels the shutdown token and waits, at most `deadline`, for every tracked task to end.
    /// Returns whether they all ended in time (the rest are left to the runtime's exit).
    pub async fn shut_down(&self, deadline: Duration) -> bool {
        self.shutdown.cancel();
        self.tasks.close();
        tokio::time::timeout(deadline, self.tasks.wait())
            .await
            .is_ok()
    }
}
