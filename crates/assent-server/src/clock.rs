//! The server's only source of "now", so tests can move time instead of sleeping. Waiting
//! follows the clock too ([`Clock::sleep_until`]): background work that waits for a due time
//! wakes when a test moves a [`ManualClock`] past it, not after real time passed.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use assent_core::Timestamp;
use tokio::sync::watch;

/// A future that waits for the clock.
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;

    /// Completes once the clock reads `at` (at once if it already does). A caller re-reads
    /// [`Clock::now`] when it wakes: [`SystemClock`] measures the wait on the monotonic clock,
    /// so a step of the wall clock meanwhile makes it end early or late by the step.
    fn sleep_until(&self, at: Timestamp) -> Sleep;
}

#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        Timestamp(ms)
    }

    fn sleep_until(&self, at: Timestamp) -> Sleep {
        let left = at.millis().saturating_sub(self.now().millis());
        if left <= 0 {
            return Box::pin(std::future::ready(()));
        }
        Box::pin(tokio::time::sleep(Duration::from_millis(
            left.unsigned_abs(),
        )))
    }
}

/// A clock that only moves when told to (tests). Sleepers wake when an `advance_*` moves it to
/// or past their instant.
#[derive(Clone, Debug)]
pub struct ManualClock(Arc<watch::Sender<i64>>);

impl ManualClock {
    pub fn new(start: Timestamp) -> Self {
        ManualClock(Arc::new(watch::Sender::new(start.millis())))
    }
    pub fn advance_millis(&self, ms: i64) {
        self.0.send_modify(|now| *now = now.saturating_add(ms));
    }
    pub fn advance_secs(&self, secs: i64) {
        self.advance_millis(secs.saturating_mul(1000));
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(*self.0.borrow())
    }

    fn sleep_until(&self, at: Timestamp) -> Sleep {
        let mut time = self.0.subscribe();
        Box::pin(async move {
            // The sender lives as long as any clone of the clock; once every clone is gone,
            // time stands still and the instant never comes.
            if time.wait_for(|now| *now >= at.millis()).await.is_err() {
                std::future::pending::<()>().await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Polls `fut` once: whether it was ready.
    async fn ready_now(fut: &mut Sleep) -> bool {
        std::future::poll_fn(|cx| std::task::Poll::Ready(fut.as_mut().poll(cx).is_ready())).await
    }

    #[tokio::test]
    async fn a_manual_sleep_ends_when_the_clock_is_moved_to_its_instant_and_not_before() {
        let clock = ManualClock::new(Timestamp(1_000));
        let mut sleep = clock.sleep_until(Timestamp(3_000));
        assert!(!ready_now(&mut sleep).await);
        clock.advance_millis(1_999);
        assert!(!ready_now(&mut sleep).await, "one millisecond early");
        clock.advance_millis(1);
        tokio::time::timeout(Duration::from_secs(10), sleep)
            .await
            .unwrap();
        // An instant already passed is no wait at all.
        let mut past = clock.sleep_until(Timestamp(2_000));
        assert!(ready_now(&mut past).await);
    }

    #[tokio::test]
    async fn a_manual_sleep_wakes_its_task_when_another_task_moves_the_clock() {
        let clock = ManualClock::new(Timestamp(0));
        let sleeper = tokio::spawn(clock.sleep_until(Timestamp(60_000)));
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished());
        clock.advance_secs(60);
        tokio::time::timeout(Duration::from_secs(10), sleeper)
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn a_system_sleep_until_an_instant_passed_ends_at_once() {
        let clock = SystemClock;
        let mut past = clock.sleep_until(clock.now().plus_secs(-60));
        assert!(ready_now(&mut past).await);
    }
}
