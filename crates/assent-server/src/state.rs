//! What every handler can reach: the store, the configuration, the at-rest key, the clock,
//! the caches of parsed keys, and the shutdown token and task tracker of background work.

use std::sync::Arc;
use std::time::Duration;

use assent_crypto::SecretBox;
use assent_store::Store;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clock::Clock;
use crate::keys::KeyRing;
use crate::oauth::token::GrantRegistry;
use crate::outbound::JwksCache;

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

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub config: Arc<ServerConfig>,
    pub secrets: Arc<SecretBox>,
    pub clock: Arc<dyn Clock>,
    pub keys: KeyRing,
    pub jwks_cache: JwksCache,
    /// The token endpoint's grant handlers, built once here.
    pub grants: GrantRegistry,
    /// Cancelled when the server shuts down: long-lived streams and workers watch it and end.
    pub shutdown: CancellationToken,
    /// Every background task (the scheduled-work worker, the purge loop) is spawned here,
    /// so shutdown can wait for them.
    pub tasks: TaskTracker,
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
        AppState {
            keys: KeyRing::new(store.clone(), secrets.clone()),
            store,
            config: Arc::new(config),
            secrets,
            clock,
            jwks_cache: JwksCache::new(allow_private),
            grants: GrantRegistry::standard(),
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
        }
    }

    /// `{public_url}/{envId}/as`.
    pub fn issuer(&self, env_id: &str) -> String {
        format!("{}/{}/as", self.config.public_url, env_id)
    }

    pub fn now(&self) -> assent_core::Timestamp {
        self.clock.now()
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
