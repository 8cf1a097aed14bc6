//! The shared store test suite against SQLite: once on temporary stores (deleted on drop,
//! written without fsync), once through the directory cache, once on database files opened
//! with `open` (fsync on every commit). All of them are WAL files with a pool of connections
//! and the writer thread, so concurrent callers really race.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use assent_store::SqliteStore;

mod temporary {
    use super::*;

    async fn store() -> SqliteStore {
        SqliteStore::open_temporary().await.unwrap()
    }

    assent_store::store_test_suite!(store());
}

/// The whole suite again through the directory cache, over a database file: every read after
/// a write through it sees the write.
mod cached {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use assent_store::CachedStore;

    use super::*;

    static NEXT: AtomicU32 = AtomicU32::new(0);

    async fn store() -> CachedStore<SqliteStore> {
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("assent-store-tests");
        std::fs::create_dir_all(&dir).unwrap();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("{}-cached-{n}.db", std::process::id()));
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
        let inner = Arc::new(SqliteStore::open(&path).await.unwrap());
        CachedStore::new(inner).await.unwrap()
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

    /// The restart in the middle of scheduled work, on one database file opened twice.
    #[tokio::test]
    async fn scheduled_work_runs_once_across_a_restart() {
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("assent-store-tests");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{}-work-restart.db", std::process::id()));
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
        assent_store::testsuite::scheduled_work_runs_once_across_a_restart(|| async {
            SqliteStore::open(&path).await.unwrap()
        })
        .await;
    }

    /// Typed ids are stored as the plain TEXT of the id (not, say, as JSON strings), in the
    /// columns a request and its access token use.
    #[tokio::test]
    async fn ids_are_stored_as_plain_text() {
        use assent_store::prelude::*;
        use assent_store::testsuite::{access_token, seed};
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("assent-store-tests");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{}-ids.db", std::process::id()));
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
        let store = SqliteStore::open(&path).await.unwrap();
        let s = seed(&store).await;
        let req = s.request();
        store
            .apply(&assent_core::ciba::admit(req.clone(), None))
            .await
            .unwrap();
        let token = access_token(&req);
        store.insert_access_token(&token).await.unwrap();
        store.close().await;

        let url = format!("sqlite://{}", path.display());
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        let row: (String, String, String, String, String) = sqlx::query_as(
            "SELECT typeof(environment_id) || typeof(auth_req_id) || typeof(application_id)
                    || typeof(user_id),
                    environment_id, auth_req_id, application_id, user_id
             FROM ciba_requests",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(
            row,
            (
                "text".repeat(4),
                s.env.id.to_string(),
                req.auth_req_id.to_string(),
                s.app.id.to_string(),
                s.user.id.to_string(),
            )
        );
        let row: (String, String, String) = sqlx::query_as(
            "SELECT typeof(user_id) || typeof(auth_req_id), user_id, auth_req_id
             FROM access_tokens",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(
            row,
            (
                "text".repeat(2),
                s.user.id.to_string(),
                req.auth_req_id.to_string()
            )
        );
        pool.close().await;
    }

    /// Closing the store lets the writer apply what is already queued (its caller gets its
    /// answer, nothing hangs); a transition applied after the close fails.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn closing_answers_queued_transitions_and_fails_later_ones() {
        use assent_store::prelude::*;
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("assent-store-tests");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{}-close.db", std::process::id()));
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
        let store = std::sync::Arc::new(SqliteStore::open(&path).await.unwrap());
        let s = assent_store::testsuite::seed(store.as_ref()).await;
        let (queued, late) = (s.request(), s.request());
        let held = store.hold_writes().await.unwrap();
        let queued_apply = {
            let store = std::sync::Arc::clone(&store);
            let admit = assent_core::ciba::admit(queued.clone(), None);
            tokio::spawn(async move { store.apply(&admit).await })
        };
        while store.write_stats().queued < 1 {
            tokio::task::yield_now().await;
        }
        let closing = {
            let store = std::sync::Arc::clone(&store);
            tokio::spawn(async move { store.close().await })
        };
        drop(held);
        closing.await.unwrap();
        assert!(queued_apply.await.unwrap().unwrap().won());
        let err = store
            .apply(&assent_core::ciba::admit(late, None))
            .await
            .unwrap_err();
        assert!(
            matches!(err, assent_store::StoreError::Database(_)),
            "{err}"
        );
        assert_eq!(store.write_stats().commits, 1);
        drop(store);
        let reopened = SqliteStore::open(&path).await.unwrap();
        reopened
            .get_ciba_request(&s.env.id, &queued.auth_req_id)
            .await
            .unwrap();
        reopened.close().await;
    }

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

    /// Requests accepted by a version whose automatic SANDBOX decisions were in-memory timers
    /// have no scheduled work; migration 0005 schedules those still pending and unexpired,
    /// in the exact JSON shape of `Job`, due when the timer would have fired.
    #[tokio::test]
    async fn migration_0005_schedules_the_automatic_decisions_of_earlier_requests() {
        use assent_core::ciba::admit;
        use assent_core::transition::Job;
        use assent_core::{AutoDecision, CibaStatus, DecisionOutcome, EnvironmentType, Timestamp};
        use assent_store::prelude::*;
        use assent_store::testsuite::{NOW, application, ciba_request, environment, user};
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("assent-store-tests");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{}-upgrade-0005.db", std::process::id()));
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
        let sandbox = environment();
        let mut production = environment();
        production.env_type = EnvironmentType::Production;
        let mut due = None;
        let mut expected = None;
        {
            let store = SqliteStore::open(&path).await.unwrap();
            for env in [&sandbox, &production] {
                store.create_environment(env).await.unwrap();
                let app = application(&env.id);
                store.create_application(&app, b"sealed").await.unwrap();
                let mut robot = user(&env.id, "robot");
                robot.auto_decision = Some(AutoDecision::Deny);
                robot.auto_decision_delay_ms = Some(1500);
                store.create_user(&robot).await.unwrap();
                let mut quickbot = user(&env.id, "quickbot");
                quickbot.auto_decision = Some(AutoDecision::Approve);
                store.create_user(&quickbot).await.unwrap();
                let human = user(&env.id, "alice");
                store.create_user(&human).await.unwrap();

                // The migration reads the real clock: far future is unexpired, 2001 expired.
                let mut pending = ciba_request(&env.id, &app.id, &robot.id);
                pending.expires_at = Timestamp(4_000_000_000_000);
                let admit = |req: &assent_core::CibaRequest| admit(req.clone(), None);
                store.apply(&admit(&pending)).await.unwrap();
                let mut decided = ciba_request(&env.id, &app.id, &robot.id);
                decided.status = CibaStatus::Denied;
                store.apply(&admit(&decided)).await.unwrap();
                let mut expired = ciba_request(&env.id, &app.id, &quickbot.id);
                expired.created_at = Timestamp(1_000_000_000_000);
                expired.expires_at = Timestamp(1_000_000_300_000);
                store.apply(&admit(&expired)).await.unwrap();
                let plain = ciba_request(&env.id, &app.id, &human.id);
                store.apply(&admit(&plain)).await.unwrap();
                if env.env_type == EnvironmentType::Sandbox {
                    due = Some(pending.created_at.plus_millis(1500));
                    expected = Some(Job::AutoDecision {
                        auth_req_id: pending.auth_req_id.clone(),
                        outcome: DecisionOutcome::Deny,
                    });
                }
            }
            store.close().await;
        }
        {
            // The database as the previous version left it: no scheduled_work, 0005 not run.
            let url = format!("sqlite://{}", path.display());
            let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
            sqlx::query("DROP TABLE scheduled_work")
                .execute(&pool)
                .await
                .unwrap();
            sqlx::query("DELETE FROM _sqlx_migrations WHERE version = 5")
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
        }
        let store = SqliteStore::open(&path).await.unwrap();
        let (due, expected) = (due.unwrap(), expected.unwrap());
        assert_eq!(store.next_work_due().await.unwrap(), Some(due));
        let far = NOW.plus_secs(86_400);
        let claimed = store
            .claim_due_work("upgrade", far, far.plus_secs(30), 10)
            .await
            .unwrap();
        assert_eq!(claimed.len(), 1, "{claimed:?}");
        assert_eq!(claimed[0].work.job, expected);
        assert_eq!(claimed[0].work.environment_id, sandbox.id);
        assert_eq!(claimed[0].work.due_at, due);
        assert_eq!(claimed[0].attempts, 0);
        // Byte for byte what `insert_work` writes for the same job.
        let url = format!("sqlite://{}", path.display());
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        let (kind, payload): (String, String) =
            sqlx::query_as("SELECT kind, payload FROM scheduled_work")
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(kind, expected.kind());
        assert_eq!(payload, serde_json::to_string(&expected).unwrap());
        pool.close().await;
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
            err.contains("compares equal") && err.contains(env.id.as_str()),
            "{err}"
        );
    }
}
