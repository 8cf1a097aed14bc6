//! The services between the handlers and core: one per endpoint group of `/{envId}/as`. A
//! handler extracts (form, environment, client, `now`), makes one call here and renders what
//! comes back; the service loads what core needs, asks core to decide, and persists the
//! outcome. Services own their dependencies ([`Deps`]) and never read the clock for the
//! request's `now`: the extractor read it once and passes it in.

use std::sync::Arc;

use assent_core::{EnvironmentId, Timestamp, User, UserId};
use assent_crypto::SecretBox;
use assent_store::{Store, StoreError};

use crate::clock::Clock;
use crate::keys::KeyRing;
use crate::outbound::JwksCache;
use crate::state::ServerConfig;
use crate::telemetry::Metrics;

pub mod backchannel;
pub mod decisions;
pub mod grants;
pub mod introspection;
pub mod tokens;
pub mod userinfo;

use backchannel::BackchannelService;
use introspection::IntrospectionService;
use tokens::{GrantRegistry, TokenService};
use userinfo::UserinfoService;

/// What the services (and every handler, through `AppState`) reach: the store, the
/// configuration, the at-rest key, the clock, the caches of parsed keys and the metrics. Cheap to clone:
/// every part is shared.
#[derive(Clone)]
pub struct Deps {
    pub store: Arc<dyn Store>,
    pub config: Arc<ServerConfig>,
    pub secrets: Arc<SecretBox>,
    pub clock: Arc<dyn Clock>,
    pub keys: KeyRing,
    pub jwks_cache: JwksCache,
    /// What `/metrics` reports; this server's own recorder, not a global one.
    pub metrics: Metrics,
}

impl Deps {
    /// `{public_url}/{envId}/as`.
    pub fn issuer(&self, env_id: &EnvironmentId) -> String {
        format!("{}/{}/as", self.config.public_url, env_id)
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }
}

/// The services, built once with the state.
#[derive(Clone)]
pub struct Services {
    /// `/cibaAuthorization` and `/bc-authorize`.
    pub backchannel: BackchannelService,
    /// `/token`, with its grant registry.
    pub tokens: TokenService,
    /// `/introspect` and `/revoke`.
    pub introspection: IntrospectionService,
    /// `/userinfo`.
    pub userinfo: UserinfoService,
}

impl Services {
    pub fn new(deps: &Deps, grants: GrantRegistry) -> Self {
        Services {
            backchannel: BackchannelService::new(deps.clone()),
            tokens: TokenService::new(deps.clone(), grants),
            introspection: IntrospectionService::new(deps.clone()),
            userinfo: UserinfoService::new(deps.clone()),
        }
    }
}

/// The user with this id, or `None` when there is none.
async fn user_by_id(
    state: &Deps,
    env_id: &EnvironmentId,
    id: &UserId,
) -> Result<Option<User>, StoreError> {
    match state.store.get_user(env_id, id).await {
        Ok(u) => Ok(Some(u)),
        Err(StoreError::NotFound) => Ok(None),
        Err(e) => Err(e),
    }
}
