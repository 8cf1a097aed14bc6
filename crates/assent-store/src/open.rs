//! Choosing the backend from the database URL, so the binary never names one.

use std::path::Path;
use std::sync::Arc;

use crate::{CachedStore, SqliteStore, Store, StoreError, StoreResult};

/// How to reach the database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreConfig {
    /// `sqlite://<path>` (the file is created if missing). `postgres://…` is recognised but
    /// not available yet.
    pub database_url: String,
}

impl StoreConfig {
    pub fn new(database_url: impl Into<String>) -> StoreConfig {
        StoreConfig {
            database_url: database_url.into(),
        }
    }
}

/// Opens the store `config` names, migrating its schema, under the directory cache
/// ([`CachedStore`]: hot reads from memory, refreshed from the database's directory versions).
pub async fn open(config: &StoreConfig) -> StoreResult<Arc<dyn Store>> {
    let url = config.database_url.as_str();
    if let Some(path) = url.strip_prefix("sqlite://") {
        let store = SqliteStore::open(Path::new(path))
            .await
            .map_err(|e| match e {
                StoreError::Database(msg) => {
                    StoreError::Database(format!("cannot open the SQLite database {path}: {msg}"))
                }
                other => other,
            })?;
        tracing::info!(database = %path, "SQLite store ready (migrations applied)");
        let store: Arc<dyn Store> = Arc::new(store);
        return Ok(Arc::new(CachedStore::new(store).await?));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Err(StoreError::Unavailable(
            "PostgreSQL is not available in this version of Assent yet; use sqlite://<path> (the default)"
                .into(),
        ));
    }
    Err(StoreError::Unavailable(
        "database_url must start with sqlite://".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn postgres_urls_are_refused_clearly() {
        for url in ["postgres://db/assent", "postgresql://db/assent"] {
            let err = open(&StoreConfig::new(url)).await.err().unwrap();
            assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
            assert!(
                err.to_string().contains("PostgreSQL is not available"),
                "{err}"
            );
        }
    }

    #[tokio::test]
    async fn other_urls_are_refused() {
        for url in ["", "mysql://db", "/var/lib/assent.db", "SQLITE:///x.db"] {
            let err = open(&StoreConfig::new(url)).await.err().unwrap();
            assert!(
                err.to_string().contains("must start with sqlite://"),
                "{url}: {err}"
            );
        }
    }

    #[tokio::test]
    async fn sqlite_urls_open_a_migrated_store() {
        let dir = std::env::temp_dir().join(format!("assent-store-open-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("open.db");
        let store = open(&StoreConfig::new(format!("sqlite://{}", path.display())))
            .await
            .unwrap();
        store.ping().await.unwrap();
        assert!(path.exists());
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn an_unopenable_sqlite_path_names_the_file() {
        let err = open(&StoreConfig::new("sqlite:///nonexistent-dir-assent/x/y.db"))
            .await
            .err()
            .unwrap();
        assert!(
            err.to_string()
                .contains("cannot open the SQLite database /nonexistent-dir-assent/x/y.db"),
            "{err}"
        );
    }
}
