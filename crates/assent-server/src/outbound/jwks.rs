//! The cache of applications' `jwksUrl` documents (RFC 7523 client assertions and
//! `login_hint_token`s signed with the application's private key), fetched under the outbound
//! rules of [`super`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use assent_crypto::JwkSet;
use axum::http::header;
use serde_json::Value;

/// A fetched document (or the reason it could not be had), with when.
type Fetched = (Instant, Result<JwkSet, String>);

/// Cache of applications' `jwksUrl` documents: fetched on first use, kept for
/// [`JwksCache::TTL`], and refetched early when an unknown `kid` shows up (at most once per
/// [`JwksCache::MIN_REFRESH`], so a flood of bogus kids cannot hammer the client's server).
/// A failed fetch is remembered for [`JwksCache::FAILURE_BACKOFF`], and concurrent misses of
/// one URL wait for a single fetch, so nobody can turn Assent into a traffic amplifier.
#[derive(Clone)]
pub struct JwksCache {
    entries: Arc<Mutex<HashMap<String, Fetched>>>,
    fetching: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
    /// The outbound client with the public-only resolver, the timeout and no redirects — or why
    /// it could not be built, in which case every fetch is refused (fail closed: never a
    /// default client without those protections).
    http: Result<reqwest::Client, String>,
    allow_private: bool,
    min_refresh: Duration,
}

impl JwksCache {
    pub const TTL: Duration = Duration::from_secs(300);
    pub const MIN_REFRESH: Duration = Duration::from_secs(10);
    pub const FAILURE_BACKOFF: Duration = Duration::from_secs(15);
    const MAX_BYTES: usize = 256 * 1024;

    pub fn new(allow_private: bool) -> Self {
        let mut builder = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none());
        if !allow_private {
            // Names are resolved once, by a resolver that drops private addresses: the address
            // checked is the address connected to (no DNS-rebinding window).
            builder = builder.dns_resolver(Arc::new(super::PublicOnlyResolver));
        }
        let http = builder.build().map_err(|e| {
            tracing::error!(error = %e, "the outbound HTTP client for jwksUrl could not be built; jwksUrl fetches are refused");
            e.to_string()
        });
        Self::with_client(http, allow_private)
    }

    /// A cache over a given outbound client (or the reason there is none: every fetch fails).
    pub fn with_client(http: Result<reqwest::Client, String>, allow_private: bool) -> Self {
        JwksCache {
            entries: Arc::default(),
            fetching: Arc::default(),
            http,
            allow_private,
            min_refresh: Self::MIN_REFRESH,
        }
    }

    /// The same cache with another early-refetch spacing (tests use zero).
    pub fn with_min_refresh(mut self, min_refresh: Duration) -> Self {
        self.min_refresh = min_refresh;
        self
    }

    /// A cached answer still good for this `kid`, if any.
    fn fresh(&self, url: &str, kid: Option<&str>) -> Option<Result<JwkSet, String>> {
        let map = self.entries.lock().ok()?;
        let (fetched, result) = map.get(url)?;
        let age = fetched.elapsed();
        match result {
            Ok(set) => {
                let knows_kid = kid.is_none_or(|k| set.contains_kid(k));
                (age < Self::TTL && (knows_kid || age < self.min_refresh)).then(|| Ok(set.clone()))
            }
            Err(e) => (age < Self::FAILURE_BACKOFF).then(|| Err(e.clone())),
        }
    }

    pub async fn get(&self, url: &str, kid: Option<&str>) -> Result<JwkSet, String> {
        if let Some(answer) = self.fresh(url, kid) {
            return answer;
        }
        let gate = {
            let mut map = self
                .fetching
                .lock()
                .map_err(|_| "cache poisoned".to_owned())?;
            map.entry(url.to_owned()).or_default().clone()
        };
        let _one_fetch = gate.lock().await;
        // Whoever held the gate before us may have fetched what we need.
        if let Some(answer) = self.fresh(url, kid) {
            return answer;
        }
        let result = self.fetch(url).await;
        if let Ok(mut map) = self.entries.lock() {
            map.insert(url.to_owned(), (Instant::now(), result.clone()));
        }
        result
    }

    async fn fetch(&self, url: &str) -> Result<JwkSet, String> {
        let http = self
            .http
            .as_ref()
            .map_err(|e| format!("no outbound HTTP client: {e}"))?;
        if !self.allow_private {
            super::check_public_target(url).await?;
        }
        let mut response = http
            .get(url)
            .header(header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("status {}", response.status()));
        }
        let too_large = || "jwks document too large".to_owned();
        if response
            .content_length()
            .is_some_and(|n| n > Self::MAX_BYTES as u64)
        {
            return Err(too_large());
        }
        // Read at most MAX_BYTES, whatever the server claims.
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
            if body.len() + chunk.len() > Self::MAX_BYTES {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        let value: Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
        JwkSet::parse(&value).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::JwksCache;

    /// Fail closed: without the protected client, a fetch is refused rather than made with a
    /// default client (no public-only resolver, no timeout, redirects followed).
    #[tokio::test]
    async fn no_outbound_client_means_no_fetch() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}/jwks", listener.local_addr().unwrap());
        let cache = JwksCache::with_client(Err("TLS backend unavailable".into()), true);
        let err = cache.get(&url, None).await.unwrap_err();
        assert!(err.contains("no outbound HTTP client"), "{err}");
        // Nothing connected to the listener.
        assert!(listener.accept().is_err());
    }
}
