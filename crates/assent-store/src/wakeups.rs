//! Wake-ups: "something changed about this CIBA request / this user's requests" or "there is
//! new scheduled work", published by the store after the commit and awaited by whoever waits
//! on it (long polls, notification workers, the scheduled-work worker). A wake-up carries no data: the subscriber re-reads the store.
//!
//! [`InProcessWakeUps`] serves one process (SQLite); a PostgreSQL store will publish with
//! NOTIFY and subscribe with LISTEN so that a change on one node wakes waiters on all of them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use assent_core::{AuthReqId, EnvironmentId, UserId};
use tokio::sync::broadcast;

/// What a wake-up is about.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum WakeKey {
    /// One CIBA request changed (inserted, decided, redeemed).
    Request {
        environment_id: EnvironmentId,
        auth_req_id: AuthReqId,
    },
    /// A CIBA request of this user changed (for example a new one was made).
    User {
        environment_id: EnvironmentId,
        user_id: UserId,
    },
    /// Scheduled work was added: a worker sleeping until later work was due looks again.
    Work,
}

impl WakeKey {
    pub fn request(environment_id: &EnvironmentId, auth_req_id: &AuthReqId) -> WakeKey {
        WakeKey::Request {
            environment_id: environment_id.clone(),
            auth_req_id: auth_req_id.clone(),
        }
    }

    pub fn user(environment_id: &EnvironmentId, user_id: &UserId) -> WakeKey {
        WakeKey::User {
            environment_id: environment_id.clone(),
            user_id: user_id.clone(),
        }
    }
}

/// Publish / subscribe on a [`WakeKey`].
pub trait WakeUps: Send + Sync {
    /// Wakes every current subscriber of `key` (none: nothing happens).
    fn publish(&self, key: &WakeKey);
    /// A subscription that is woken by every publish on `key` from now on.
    fn subscribe(&self, key: &WakeKey) -> WakeUp;
}

type Registry = Arc<Mutex<HashMap<WakeKey, broadcast::Sender<()>>>>;

/// Wake-ups within one process, over one `tokio::sync::broadcast` channel per subscribed key.
/// A key's channel is dropped with its last subscription, so keys nobody waits on cost nothing.
#[derive(Clone, Debug, Default)]
pub struct InProcessWakeUps {
    channels: Registry,
}

impl InProcessWakeUps {
    pub fn new() -> InProcessWakeUps {
        InProcessWakeUps::default()
    }

    /// How many keys have a subscriber (for tests of the clean-up).
    pub fn subscribed_keys(&self) -> usize {
        lock(&self.channels).len()
    }
}

fn lock(registry: &Registry) -> std::sync::MutexGuard<'_, HashMap<WakeKey, broadcast::Sender<()>>> {
    // The map stays consistent whatever panicked while holding it: every update is one insert
    // or one remove.
    registry.lock().unwrap_or_else(PoisonError::into_inner)
}

impl WakeUps for InProcessWakeUps {
    fn publish(&self, key: &WakeKey) {
        if let Some(sender) = lock(&self.channels).get(key) {
            // An error means no receiver is left, which the last subscription's drop handles.
            let _ = sender.send(());
        }
    }

    fn subscribe(&self, key: &WakeKey) -> WakeUp {
        let mut channels = lock(&self.channels);
        // Capacity 1: a subscriber that missed several wake-ups only needs to know it missed one.
        let receiver = channels
            .entry(key.clone())
            .or_insert_with(|| broadcast::channel(1).0)
            .subscribe();
        WakeUp {
            receiver,
            key: key.clone(),
            registry: Some(self.channels.clone()),
        }
    }
}

/// One subscription to a [`WakeKey`].
#[derive(Debug)]
pub struct WakeUp {
    receiver: broadcast::Receiver<()>,
    key: WakeKey,
    /// Where to clean up on drop (`None` for subscriptions of other implementations).
    registry: Option<Registry>,
}

impl WakeUp {
    /// A subscription over a receiver of another implementation (LISTEN/NOTIFY later).
    pub fn from_receiver(key: WakeKey, receiver: broadcast::Receiver<()>) -> WakeUp {
        WakeUp {
            receiver,
            key,
            registry: None,
        }
    }

    pub fn key(&self) -> &WakeKey {
        &self.key
    }

    /// Returns once a publish on the key happened after the subscription (or after the previous
    /// return). Wake-ups missed in between collapse into one. If the publishing side is gone,
    /// never returns: bound the wait with a timeout.
    pub async fn woken(&mut self) {
        use broadcast::error::{RecvError, TryRecvError};
        match self.receiver.recv().await {
            Ok(()) | Err(RecvError::Lagged(_)) => {}
            Err(RecvError::Closed) => std::future::pending().await,
        }
        // What else is queued is the same news.
        while let Ok(()) | Err(TryRecvError::Lagged(_)) = self.receiver.try_recv() {}
    }
}

impl Drop for WakeUp {
    fn drop(&mut self) {
        let Some(registry) = &self.registry else {
            return;
        };
        let mut channels = lock(registry);
        // This subscription's receiver is still alive here: it is the last one if it is alone.
        if channels
            .get(&self.key)
            .is_some_and(|sender| sender.receiver_count() <= 1)
        {
            channels.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const DEADLINE: Duration = Duration::from_secs(10);

    #[tokio::test]
    async fn a_publish_wakes_the_subscribers_of_its_key_only() {
        let wake_ups = InProcessWakeUps::new();
        let key = WakeKey::request(&"env".into(), &"req-1".into());
        let mut a = wake_ups.subscribe(&key);
        let mut b = wake_ups.subscribe(&key);
        let mut other = wake_ups.subscribe(&WakeKey::request(&"env".into(), &"req-2".into()));
        let mut same_id_other_kind =
            wake_ups.subscribe(&WakeKey::user(&"env".into(), &"req-1".into()));
        wake_ups.publish(&key);
        tokio::time::timeout(DEADLINE, a.woken()).await.unwrap();
        tokio::time::timeout(DEADLINE, b.woken()).await.unwrap();
        // Nothing was published on the other keys: they have nothing pending.
        assert!(futures_poll_once(other.woken()).await.is_none());
        assert!(
            futures_poll_once(same_id_other_kind.woken())
                .await
                .is_none()
        );
    }

    #[tokio::test]
    async fn missed_wake_ups_collapse_into_one() {
        let wake_ups = InProcessWakeUps::new();
        let key = WakeKey::user(&"env".into(), &"u1".into());
        let mut sub = wake_ups.subscribe(&key);
        wake_ups.publish(&key);
        wake_ups.publish(&key);
        wake_ups.publish(&key);
        tokio::time::timeout(DEADLINE, sub.woken()).await.unwrap();
        assert!(futures_poll_once(sub.woken()).await.is_none());
    }

    #[tokio::test]
    async fn the_last_subscription_dropped_frees_its_key() {
        let wake_ups = InProcessWakeUps::new();
        let key = WakeKey::request(&"env".into(), &"req-1".into());
        let a = wake_ups.subscribe(&key);
        let b = wake_ups.subscribe(&key);
        assert_eq!(wake_ups.subscribed_keys(), 1);
        drop(a);
        assert_eq!(wake_ups.subscribed_keys(), 1);
        drop(b);
        assert_eq!(wake_ups.subscribed_keys(), 0);
        // Publishing on a key nobody waits on creates nothing.
        wake_ups.publish(&key);
        assert_eq!(wake_ups.subscribed_keys(), 0);
    }

    /// Polls `fut` once: `Some` if it was ready.
    async fn futures_poll_once<F: std::future::Future>(fut: F) -> Option<F::Output> {
        let mut fut = std::pin::pin!(fut);
        std::future::poll_fn(|cx| {
            std::task::Poll::Ready(match fut.as_mut().poll(cx) {
                std::task::Poll::Ready(v) => Some(v),
                std::task::Poll::Pending => None,
            })
        })
        .await
    }
}
