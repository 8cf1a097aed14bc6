//! The directory cache and the poll records held in memory, on one database file opened twice:
//! `cached` (this process, under the cache) and `other` (another process or node, writing
//! behind the cache's back).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use assent_core::ciba::{self, PollUpdate};
use assent_core::{DecisionOutcome, SigningAlgorithm};
use assent_store::prelude::*;
use assent_store::testsuite::{NOW, decision, seed, signing_key, user};
use assent_store::{CachedStore, SqliteStore, StoreError};

static NEXT: AtomicU32 = AtomicU32::new(0);

fn fresh_path() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("assent-cache-tests");
    std::fs::create_dir_all(&dir).unwrap();
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let path = dir.join(format!("{}-{n}.db", std::process::id()));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    path
}

/// A cache refreshed only when a test says so, and a second store on the same file.
async fn pair() -> (CachedStore<SqliteStore>, Arc<SqliteStore>) {
    let path = fresh_path();
    let inner = Arc::new(SqliteStore::open(&path).await.unwrap());
    let cached = CachedStore::with_refresh(inner, None).await.unwrap();
    let other = Arc::new(SqliteStore::open(&path).await.unwrap());
    (cached, other)
}

#[tokio::test]
async fn reads_are_served_from_memory_until_a_change_elsewhere_is_refreshed() {
    let (cached, other) = pair().await;
    let s = seed(&cached).await;
    let key = signing_key(&s.env.id, SigningAlgorithm::ES256, NOW);
    cached.insert_signing_key(&key, NOW).await.unwrap();

    // Fill, then read again: the second reads are hits.
    let env = cached.get_environment(&s.env.id).await.unwrap();
    cached.get_application(&s.env.id, &s.app.id).await.unwrap();
    cached.get_user(&s.env.id, &s.user.id).await.unwrap();
    let found = by_name(&cached, &s.env.id, "alice").await;
    assert_eq!(found.unwrap().id, s.user.id);
    cached
        .current_signing_key(&s.env.id, SigningAlgorithm::ES256)
        .await
        .unwrap();
    let before = cached.stats();
    cached.get_environment(&s.env.id).await.unwrap();
    cached.get_application(&s.env.id, &s.app.id).await.unwrap();
    cached.get_user(&s.env.id, &s.user.id).await.unwrap();
    by_name(&cached, &s.env.id, "alice").await;
    cached
        .current_signing_key(&s.env.id, SigningAlgorithm::ES256)
        .await
        .unwrap();
    let after = cached.stats();
    assert_eq!(after.hits - before.hits, 5, "{before:?} → {after:?}");
    assert_eq!(after.misses, before.misses);

    // Another node disables the user and the application, renames the environment, rotates the
    // secret and the ES256 key.
    let mut disabled = s.user.clone();
    disabled.enabled = false;
    other.update_user(&disabled).await.unwrap();
    let mut app = s.app.clone();
    app.enabled = false;
    other.update_application(&app).await.unwrap();
    other
        .set_application_secret(&s.env.id, &s.app.id, b"rotated", NOW)
        .await
        .unwrap();
    let mut renamed = env.clone();
    renamed.name = "renamed".into();
    other.update_environment(&renamed).await.unwrap();
    let next_key = signing_key(&s.env.id, SigningAlgorithm::ES256, NOW.plus_secs(1));
    other.insert_signing_key(&next_key, NOW).await.unwrap();

    // Until the refresh this process still answers from memory (bounded by the refresh
    // interval in production) ...
    assert!(
        cached
            .get_user(&s.env.id, &s.user.id)
            .await
            .unwrap()
            .enabled
    );
    assert_eq!(
        cached.get_environment(&s.env.id).await.unwrap().name,
        env.name
    );
    // ... and after it, every change is seen.
    cached.refresh().await.unwrap();
    assert!(
        !cached
            .get_user(&s.env.id, &s.user.id)
            .await
            .unwrap()
            .enabled
    );
    let by_name = by_name(&cached, &s.env.id, "alice").await.unwrap();
    assert!(!by_name.enabled);
    assert!(
        !cached
            .get_application(&s.env.id, &s.app.id)
            .await
            .unwrap()
            .enabled
    );
    assert_eq!(
        cached
            .get_application_secret(&s.env.id, &s.app.id)
            .await
            .unwrap(),
        b"rotated"
    );
    assert_eq!(
        cached.get_environment(&s.env.id).await.unwrap().name,
        "renamed"
    );
    assert_eq!(
        cached
            .current_signing_key(&s.env.id, SigningAlgorithm::ES256)
            .await
            .unwrap()
            .unwrap()
            .id,
        next_key.id
    );
    assert_eq!(cached.list_signing_keys(&s.env.id).await.unwrap().len(), 2);
}

#[tokio::test]
async fn writes_through_the_cache_take_effect_on_the_next_read() {
    let (cached, _other) = pair().await;
    let s = seed(&cached).await;
    cached.get_user(&s.env.id, &s.user.id).await.unwrap();
    let mut disabled = s.user.clone();
    disabled.enabled = false;
    cached.update_user(&disabled).await.unwrap();
    assert!(
        !cached
            .get_user(&s.env.id, &s.user.id)
            .await
            .unwrap()
            .enabled
    );

    cached.delete_user(&s.env.id, &s.user.id).await.unwrap();
    assert!(matches!(
        cached.get_user(&s.env.id, &s.user.id).await,
        Err(StoreError::NotFound)
    ));
    assert!(by_name(&cached, &s.env.id, "alice").await.is_none());
}

/// The entry (and with it the opened secret) is shared while the application is unchanged,
/// and dropped by the cache when its secret changes, so the last holder's drop wipes it.
#[tokio::test]
async fn an_application_entry_keeps_its_opened_secret_until_the_application_changes() {
    let (cached, _other) = pair().await;
    let s = seed(&cached).await;
    let opened = AtomicU32::new(0);
    let open = |sealed: &[u8]| -> Result<String, ()> {
        opened.fetch_add(1, Ordering::Relaxed);
        Ok(String::from_utf8_lossy(sealed).into_owned())
    };
    let first = cached
        .get_application_entry(&s.env.id, &s.app.id)
        .await
        .unwrap();
    assert_eq!(first.secret(open).unwrap(), "sealed");
    let again = cached
        .get_application_entry(&s.env.id, &s.app.id)
        .await
        .unwrap();
    assert!(Arc::ptr_eq(&first, &again));
    assert_eq!(again.secret(open).unwrap(), "sealed");
    assert_eq!(opened.load(Ordering::Relaxed), 1, "opened once");
    // Never printed.
    assert!(!format!("{first:?}").contains("sealed\""));

    cached
        .set_application_secret(&s.env.id, &s.app.id, b"next", NOW)
        .await
        .unwrap();
    drop(again);
    assert_eq!(Arc::strong_count(&first), 1, "the cache let go of it");
    let next = cached
        .get_application_entry(&s.env.id, &s.app.id)
        .await
        .unwrap();
    assert!(!Arc::ptr_eq(&first, &next));
    assert_eq!(next.secret(open).unwrap(), "next");
}

/// A hint or an id that finds nobody is remembered, as a miss: a user created through the
/// cache is found at once, one created elsewhere after the next refresh.
#[tokio::test]
async fn lookups_that_find_nobody_are_remembered_until_a_change() {
    let (cached, other) = pair().await;
    let s = seed(&cached).await;
    let bob = user(&s.env.id, "bob");
    assert!(by_name(&cached, &s.env.id, "bob").await.is_none());
    assert!(matches!(
        cached.get_user(&s.env.id, &bob.id).await,
        Err(StoreError::NotFound)
    ));
    let before = cached.stats();
    assert!(by_name(&cached, &s.env.id, "bob").await.is_none());
    assert!(matches!(
        cached.get_user(&s.env.id, &bob.id).await,
        Err(StoreError::NotFound)
    ));
    let after = cached.stats();
    assert_eq!((after.hits - before.hits, after.misses), (2, before.misses));

    // Created elsewhere: still nobody here until the refresh sees the change.
    other.create_user(&bob).await.unwrap();
    assert!(by_name(&cached, &s.env.id, "bob").await.is_none());
    cached.refresh().await.unwrap();
    assert_eq!(by_name(&cached, &s.env.id, "bob").await.unwrap().id, bob.id);
    assert_eq!(
        cached.get_user(&s.env.id, &bob.id).await.unwrap().id,
        bob.id
    );

    // Created through the cache: found on the next request.
    let carol = user(&s.env.id, "carol");
    assert!(by_name(&cached, &s.env.id, "carol").await.is_none());
    assert!(cached.get_user(&s.env.id, &carol.id).await.is_err());
    cached.create_user(&carol).await.unwrap();
    assert_eq!(
        by_name(&cached, &s.env.id, "carol").await.unwrap().id,
        carol.id
    );
    assert_eq!(
        cached.get_user(&s.env.id, &carol.id).await.unwrap().id,
        carol.id
    );
}

/// Every write of an environment, its applications, users or keys moves its version; other
/// environments keep theirs.
#[tokio::test]
async fn directory_versions_move_with_every_write_of_an_environment() {
    let (_cached, other) = pair().await;
    let a = seed(&*other).await;
    let b = seed(&*other).await;
    let versions = other.directory_changes_since(0).await.unwrap();
    let version_of = |v: &[(assent_core::EnvironmentId, u64)], env| {
        v.iter().find(|(e, _)| *e == env).map(|(_, n)| *n)
    };
    let a0 = version_of(&versions, a.env.id.clone()).unwrap();
    let b0 = version_of(&versions, b.env.id.clone()).unwrap();
    let newest = a0.max(b0);
    assert!(
        other
            .directory_changes_since(newest)
            .await
            .unwrap()
            .is_empty()
    );
    let mut disabled = a.user.clone();
    disabled.enabled = false;
    other.update_user(&disabled).await.unwrap();
    let changed = other.directory_changes_since(newest).await.unwrap();
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0].0, a.env.id);
    assert!(changed[0].1 > newest);
    other.delete_environment(&b.env.id).await.unwrap();
    let changed = other.directory_changes_since(changed[0].1).await.unwrap();
    assert_eq!(
        changed.iter().map(|(e, _)| e.clone()).collect::<Vec<_>>(),
        vec![b.env.id.clone()]
    );
}

/// The user a username hint finds, through `store`.
async fn by_name(
    store: &dyn Store,
    env_id: &assent_core::EnvironmentId,
    username: &str,
) -> Option<assent_core::User> {
    store.find_user_by_username(env_id, username).await.unwrap()
}

/// Whether a poll record of `req` won.
async fn recorded(store: &dyn Store, req: &assent_core::CibaRequest, update: PollUpdate) -> bool {
    store
        .apply(&ciba::record_poll(req, update))
        .await
        .unwrap()
        .won()
}

fn first_poll() -> PollUpdate {
    PollUpdate {
        expected_last_polled_at: None,
        expected_interval_seconds: 2,
        last_polled_at: NOW,
        interval_seconds: 2,
    }
}

/// A poll record is a compare-and-set in memory, written to the database by the next flush.
#[tokio::test]
async fn poll_records_are_held_in_memory_and_flushed() {
    let path = fresh_path();
    let store = SqliteStore::open(&path).await.unwrap();
    // What another process reading the file finds (a fresh store: nothing held of its own).
    let in_database = |s: &assent_store::testsuite::Seed, id: assent_core::AuthReqId| {
        let path = path.clone();
        let env = s.env.id.clone();
        async move {
            let other = SqliteStore::open(&path).await.unwrap();
            other.get_ciba_request(&env, &id).await.unwrap()
        }
    };
    let s = seed(&store).await;
    let req = s.pending(&store).await;
    let read = store
        .get_ciba_request(&s.env.id, &req.auth_req_id)
        .await
        .unwrap();
    assert_eq!(store.polls_held(), 1);
    let commits = store.write_stats().commits;
    assert!(recorded(&store, &read, first_poll()).await);
    assert_eq!(store.write_stats().commits, commits, "nothing written yet");
    // The same expectation again loses, in memory as in the database.
    assert!(!recorded(&store, &read, first_poll()).await);
    let seen = store
        .get_ciba_request(&s.env.id, &req.auth_req_id)
        .await
        .unwrap();
    assert_eq!(seen.last_polled_at, Some(NOW));
    let row = in_database(&s, req.auth_req_id.clone()).await;
    assert_eq!(
        row.last_polled_at, None,
        "not in the database before the flush"
    );

    assert_eq!(store.flush_polls().await.unwrap(), 1);
    assert_eq!(
        store.flush_polls().await.unwrap(),
        0,
        "nothing changed since"
    );
    let row = in_database(&s, req.auth_req_id.clone()).await;
    assert_eq!(row.last_polled_at, Some(NOW));
    assert_eq!(row.interval_seconds, 2);

    // A slow_down (a longer interval) recorded, then the store closed: the close flushes it.
    let slow = PollUpdate {
        expected_last_polled_at: Some(NOW),
        expected_interval_seconds: 2,
        last_polled_at: NOW.plus_secs(1),
        interval_seconds: 7,
    };
    assert!(recorded(&store, &seen, slow).await);
    store.close().await;
    let row = in_database(&s, req.auth_req_id.clone()).await;
    assert_eq!(row.last_polled_at, Some(NOW.plus_secs(1)));
    assert_eq!(row.interval_seconds, 7);
}

/// A request decided through the store drops its poll record, and a poll record asked for
/// after the decision loses (it goes to the database, where the request is no longer PENDING).
#[tokio::test]
async fn a_decided_request_drops_its_poll_record() {
    let store = SqliteStore::open(&fresh_path()).await.unwrap();
    let s = seed(&store).await;
    let req = s.pending(&store).await;
    let read = store
        .get_ciba_request(&s.env.id, &req.auth_req_id)
        .await
        .unwrap();
    assert_eq!(store.polls_held(), 1);
    let t = ciba::decide(&read, decision(DecisionOutcome::Approve), NOW).unwrap();
    assert!(store.apply(&t).await.unwrap().won());
    assert_eq!(store.polls_held(), 0);
    assert!(!recorded(&store, &read, first_poll()).await);
}

/// Records untouched for a whole flush interval are dropped (memory stays bounded by what is
/// being polled), and a request with no record held is recorded through the database.
#[tokio::test]
async fn untouched_poll_records_are_dropped_and_recorded_again_through_the_database() {
    let store = SqliteStore::open(&fresh_path()).await.unwrap();
    let s = seed(&store).await;
    let req = s.pending(&store).await;
    let read = store
        .get_ciba_request(&s.env.id, &req.auth_req_id)
        .await
        .unwrap();
    store.flush_polls().await.unwrap();
    assert_eq!(store.polls_held(), 1, "touched by the read");
    store.flush_polls().await.unwrap();
    assert_eq!(store.polls_held(), 0, "untouched since the last flush");
    let commits = store.write_stats().commits;
    assert!(recorded(&store, &read, first_poll()).await);
    assert_eq!(
        store.write_stats().commits,
        commits + 1,
        "through the writer"
    );
    // The stale expectation loses, in the database too; the next read holds the record again.
    assert!(!recorded(&store, &read, first_poll()).await);
    store
        .get_ciba_request(&s.env.id, &req.auth_req_id)
        .await
        .unwrap();
    assert_eq!(store.polls_held(), 1);
}
