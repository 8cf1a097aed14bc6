//! Environment signing keys: created sealed under the at-rest key, parsed once into
//! [`JwsSigner`]s and cached by `kid`, published as JWKS, rotated through the management API.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use assent_core::{EnvironmentId, SigningAlgorithm, SigningKey, Timestamp, new_id};
use assent_crypto::{JwkSet, JwsSigner, SecretBox, SigningAlg};
use assent_store::{Store, StoreError};

use crate::secrets;

/// A rotated key stays in the JWKS this long: longer than any token it signed can live
/// (ID tokens 1 h, access tokens at most 24 h).
pub const ROTATED_KEY_RETENTION_SECS: i64 = 24 * 3600 + 3600;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("key material: {0}")]
    Crypto(#[from] assent_crypto::CryptoError),
}

pub fn crypto_alg(alg: SigningAlgorithm) -> SigningAlg {
    match alg {
        SigningAlgorithm::RS256 => SigningAlg::RS256,
        SigningAlgorithm::PS256 => SigningAlg::PS256,
        SigningAlgorithm::ES256 => SigningAlg::ES256,
        SigningAlgorithm::EdDSA => SigningAlg::EdDSA,
    }
}

#[derive(Clone)]
pub struct KeyRing {
    store: Arc<dyn Store>,
    secrets: Arc<SecretBox>,
    signers: Arc<Mutex<HashMap<String, Arc<JwsSigner>>>>,
}

impl KeyRing {
    pub fn new(store: Arc<dyn Store>, secrets: Arc<SecretBox>) -> Self {
        KeyRing {
            store,
            secrets,
            signers: Arc::default(),
        }
    }

    /// Generates a sealed key for `alg` (not yet stored).
    async fn generate(
        &self,
        env_id: &EnvironmentId,
        alg: SigningAlgorithm,
        now: Timestamp,
    ) -> Result<SigningKey, KeyError> {
        let kid = new_id();
        let material = tokio::task::spawn_blocking({
            let kid = kid.clone();
            move || assent_crypto::generate_key(crypto_alg(alg), &kid)
        })
        .await
        .map_err(|e| assent_crypto::CryptoError::Internal(e.to_string()))??;
        let sealed = secrets::seal_signing_key(&self.secrets, env_id, &kid, &material.pkcs8_der)?;
        Ok(SigningKey {
            id: kid,
            environment_id: env_id.clone(),
            algorithm: alg,
            public_jwk: material.public_jwk,
            private_key_sealed: sealed,
            current: true,
            created_at: now,
            retire_at: None,
        })
    }

    /// Generates a key for `alg`, makes it current and retires the previous one of that
    /// algorithm (kept published for [`ROTATED_KEY_RETENTION_SECS`]).
    pub async fn rotate(
        &self,
        env_id: &EnvironmentId,
        alg: SigningAlgorithm,
        now: Timestamp,
    ) -> Result<SigningKey, KeyError> {
        let key = self.generate(env_id, alg, now).await?;
        self.store
            .insert_signing_key(&key, now.plus_secs(ROTATED_KEY_RETENTION_SECS))
            .await?;
        Ok(key)
    }

    /// The signer for the environment's current key of `alg`, creating that key the first
    /// time an algorithm is needed (RS256 exists from the environment's creation). The first
    /// key is stored insert-if-absent: concurrent first uses (on any node) end with one key,
    /// the losers' generated keys are dropped unused.
    pub async fn signer(
        &self,
        env_id: &EnvironmentId,
        alg: SigningAlgorithm,
        now: Timestamp,
    ) -> Result<Arc<JwsSigner>, KeyError> {
        let key = match self.store.current_signing_key(env_id, alg).await? {
            Some(k) => k,
            None => {
                let fresh = self.generate(env_id, alg, now).await?;
                self.store.insert_signing_key_if_absent(&fresh).await?
            }
        };
        if let Some(s) = self.cached(&key.id) {
            return Ok(s);
        }
        let der =
            secrets::open_signing_key(&self.secrets, env_id, &key.id, &key.private_key_sealed)?;
        let signer = Arc::new(JwsSigner::from_pkcs8(crypto_alg(alg), &key.id, &der)?);
        if let Ok(mut map) = self.signers.lock() {
            map.insert(key.id.clone(), signer.clone());
        }
        Ok(signer)
    }

    fn cached(&self, kid: &str) -> Option<Arc<JwsSigner>> {
        self.signers.lock().ok()?.get(kid).cloned()
    }

    /// The environment's published public keys (current and not yet retired).
    pub async fn published(
        &self,
        env_id: &EnvironmentId,
        now: Timestamp,
    ) -> Result<Vec<serde_json::Value>, KeyError> {
        Ok(self
            .store
            .list_signing_keys(env_id)
            .await?
            .into_iter()
            .filter(|k| k.published_at(now))
            .map(|k| k.public_jwk)
            .collect())
    }

    /// The published keys as a verification key set (for ID-token hints and our own tokens).
    pub async fn verification_set(
        &self,
        env_id: &EnvironmentId,
        now: Timestamp,
    ) -> Result<JwkSet, KeyError> {
        let keys = self.published(env_id, now).await?;
        Ok(JwkSet::parse(&serde_json::json!({ "keys": keys }))?)
    }
}
