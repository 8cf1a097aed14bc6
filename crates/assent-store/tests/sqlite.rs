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
        use assent_store::prelude::*;
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

    /// Rows keyed by an earlier version (`str::to_lowercase`) are re-keyed under the identifier
    /// profile once, after migration 0004; a collision the new profile reveals stops the start.
    #[tokio::test]
    async fn usernames_keyed_by_an_earlier_version_are_rekeyed_once() {
        use assent_store::prelude::*;
        use assent_store::testsuite::{environment, user};
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("assent-store-tests");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{}-rekey.db", std::process::id()));
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
        let env = environment();
        // FULLWIDTH LATIN CAPITAL LETTER A: to_lowercase gives the fullwidth small letter, the
        // profile's width mapping gives plain "a".
        let old = user(&env.id, "\u{ff21}lice");
        let other = user(&env.id, "bob");
        let raw = |path: &std::path::Path| {
            let url = format!("sqlite://{}", path.display());
            async move { sqlx::SqlitePool::connect(&url).await.unwrap() }
        };
        {
            let store = SqliteStore::open(&path).await.unwrap();
            store.create_environment(&env).await.unwrap();
            store.create_user(&old).await.unwrap();
            store.create_user(&other).await.unwrap();
            store.close().await;
        }
        {
            // What an earlier version wrote, and the marker migration 0004 leaves.
            let pool = raw(&path).await;
            sqlx::query("UPDATE users SET username_lower = '\u{ff41}lice' WHERE username = ?")
                .bind(&old.username)
                .execute(&pool)
                .await
                .unwrap();
            sqlx::query("CREATE TABLE identifier_rekey_pending (since INTEGER NOT NULL)")
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
        }
        let store = SqliteStore::open(&path).await.unwrap();
        let found = store.find_user_by_username(&env.id, "ALICE").await.unwrap();
        assert_eq!(found.map(|u| u.id), Some(old.id.clone()));
        assert!(
            store
                .find_user_by_username(&env.id, "bob")
                .await
                .unwrap()
                .is_some()
        );
        store.close().await;

        // Two names that only the new profile sees as one: start-up refuses, naming them.
        {
            let pool = raw(&path).await;
            sqlx::query("UPDATE users SET username = 'ALICE', username_lower = 'x-old' WHERE username = 'bob'")
                .execute(&pool)
                .await
                .unwrap();
            sqlx::query("CREATE TABLE identifier_rekey_pending (since INTEGER NOT NULL)")
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
        }
        let err = SqliteStore::open(&path).await.unwrap_err().to_string();
        assert!(
            err.contains("compares equal") && err.contains(&env.id),
            "{err}"
        );
    }
}
