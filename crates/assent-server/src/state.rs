//! What every handler can reach: the store, the configuration, the at-rest key, the clock and
//! the caches of parsed keys.

use std::sync::Arc;

use assent_crypto::SecretBox;
use assent_store::Store;

use crate::clock::Clock;
use crate::keys::KeyRing;
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
        }
    }

    /// `{public_url}/{envId}/as`.
    pub fn issuer(&self, env_id: &str) -> String {
        format!("{}/{}/as", self.config.public_url, env_id)
    }

    pub fn now(&self) -> assent_core::Timestamp {
        self.clock.now()
    }
}
