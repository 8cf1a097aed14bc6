//! Microbenchmark of a batch of store writes: admissions (`ciba::admit`, the write
//! `/cibaAuthorization` makes durable before it answers) applied to a file SQLite store
//! (`synchronous=FULL`), 32 at once (group commit shares their transaction and fsync) against
//! the same 32 one after another. The reported time is per transition. Run with
//! `cargo bench -p assent-store --bench writes`.
#![expect(
    clippy::expect_used,
    reason = "a bench whose setup or writes fail must stop rather than measure something else"
)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use assent_core::ciba;
use assent_core::transition::Applied;
use assent_store::testsuite::{Seed, ciba_request, seed};
use assent_store::{SqliteStore, Store};
use criterion::{Criterion, criterion_group, criterion_main};
use tokio::runtime::Runtime;
use tokio::task::JoinSet;

/// Transitions in flight at once in the concurrent case.
const BATCH: u64 = 32;

fn admission(s: &Seed) -> assent_core::transition::Transition {
    ciba::admit(ciba_request(&s.env.id, &s.app.id, &s.user.id), None)
}

/// Applies `n` admissions, `BATCH` concurrent `apply` calls at a time; returns the time taken.
async fn concurrent(store: &Arc<dyn Store>, s: &Arc<Seed>, n: u64) -> Duration {
    let start = Instant::now();
    let mut left = n;
    while left > 0 {
        let mut set = JoinSet::new();
        for _ in 0..left.min(BATCH) {
            let (store, s) = (Arc::clone(store), Arc::clone(s));
            set.spawn(async move { store.apply(&admission(&s)).await });
        }
        left -= left.min(BATCH);
        for applied in set.join_all().await {
            assert_eq!(applied.expect("admission applied"), Applied::Won);
        }
    }
    start.elapsed()
}

/// Applies `n` admissions one after another; returns the time taken.
async fn sequential(store: &Arc<dyn Store>, s: &Seed, n: u64) -> Duration {
    let start = Instant::now();
    for _ in 0..n {
        let applied = store.apply(&admission(s)).await.expect("admission applied");
        assert_eq!(applied, Applied::Won);
    }
    start.elapsed()
}

fn bench_writes(c: &mut Criterion) {
    let rt = Runtime::new().expect("tokio runtime");
    let dir: PathBuf =
        std::env::temp_dir().join(format!("assent-store-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("bench directory");
    let store: Arc<dyn Store> = Arc::new(
        rt.block_on(SqliteStore::open(&dir.join("writes.db")))
            .expect("file store"),
    );
    let s = Arc::new(rt.block_on(seed(store.as_ref())));

    let mut group = c.benchmark_group("admit_per_transition");
    group.bench_function(format!("concurrent_{BATCH}"), |b| {
        b.iter_custom(|n| rt.block_on(concurrent(&store, &s, n)))
    });
    group.bench_function("one_after_another", |b| {
        b.iter_custom(|n| rt.block_on(sequential(&store, &s, n)))
    });
    group.finish();
    drop(store);
    // Best effort: the bench's numbers are already reported.
    let _ = std::fs::remove_dir_all(&dir);
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_writes
}
criterion_main!(benches);
