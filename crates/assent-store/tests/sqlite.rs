//! The shared store test suite against SQLite: once on private in-memory databases (one
//! connection), once on database files (a pool of connections in WAL mode, so concurrent
//! callers really race).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use assent_store::SqliteStore;

mod in_memory {
    use super::*;

    async fn store() -> SqliteStore {
        SqliteStore::open_in_memory().await.unwrap()
    }

    assent_store::store_test_suite!(store());
}

mod file {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    static NEXT: AtomicU32 = AtomicU32::new(0);

    /// A fresh database file under Cargo's per-target temporary directory.
    async fn store() -> SqliteStore {
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("assent-store-tests");
        std::fs::create_dir_all(&dir).unwrap();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("{}-{n}.db", std::process::id()));
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
        SqliteStore::open(&path).await.unwrap()
    }

    assent_store::store_test_suite!(store());

    #[tokio::test]
    async fn reopening_keeps_data_and_migrations_are_idempotent() {
        use assent_store::Store;
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("assent-store-tests");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{}-reopen.db", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let env = assent_store::testsuite::environment();
        {
            let store = SqliteStore::open(&path).await.unwrap();
            store.create_environment(&env).await.unwrap();
            store.close().await;
        }
        let store = SqliteStore::open(&path).await.unwrap();
        assert_eq!(store.get_environment(&env.id).await.unwrap(), env);
        store.close().await;
    }
}
