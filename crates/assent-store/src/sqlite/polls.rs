//! Poll bookkeeping in memory, written back in batches: the `last_polled_at` and
//! `interval_seconds` of the requests being polled are held here, so recording a poll (a
//! compare-and-set on those two values) costs no database write, and a flusher writes what
//! changed every [`FLUSH_INTERVAL`], through the writer (`writer.rs`, so never against it for
//! the write lock), in one transaction without an fsync.
//!
//! What a reader sees is the held values over the row (`merge`), so within this process the
//! compare-and-set has exactly one winner, as in the database: an entry is changed only under
//! the lock, and a request with no entry (or a record that causes more than bookkeeping) is
//! recorded through the writer by the conditional UPDATE of old (`ciba::record_poll`), with
//! the request pinned meanwhile (nothing held for it, so its concurrent records take the same
//! path and the writer orders them). An entry is dropped when its request is
//! decided, expired or redeemed through this store, when the flusher finds the request no longer
//! PENDING, and once it went one whole flush interval unpolled. A reader that read the row
//! before such a drop does not put its (maybe older) values back: every drop bumps a generation
//! and is recorded per request until the next flush, so a read is refused only for a request
//! dropped after it began (or, for a read older than the last flush, after any drop).
//!
//! What this gives up, by design (the issue's "not durable where losing it only spares a
//! client one `slow_down`"): a crash loses at most the last interval's poll records, and two
//! processes on one database judge "too soon" each on its own records (the last flush wins).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use assent_core::ciba::PollUpdate;
use assent_core::{AuthReqId, CibaRequest, CibaStatus, EnvironmentId, Timestamp};
use rusqlite::Connection;

use super::sql_err;
use crate::StoreResult;

/// A request pinned by [`PollBook::pin`] until this is dropped.
pub(super) struct Pin<'a> {
    book: &'a PollBook,
    key: Key,
}

impl Drop for Pin<'_> {
    fn drop(&mut self) {
        self.book.unpin(&self.key);
    }
}

/// How often the poll records held in memory are written to the database.
pub(super) const FLUSH_INTERVAL: Duration = Duration::from_millis(500);

/// Whose poll record: the request's environment and id.
pub(super) type PollKey = (EnvironmentId, AuthReqId);
type Key = PollKey;

/// One request's poll record, to be written.
pub(super) type PollRecord = (PollKey, Polled);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Polled {
    last_polled_at: Option<Timestamp>,
    interval_seconds: i64,
}

struct Entry {
    polled: Polled,
    /// Changed since the last flush.
    dirty: bool,
    /// Recorded or read since the last flush (an entry neither is dropped).
    touched: bool,
}

#[derive(Default)]
struct Held {
    entries: HashMap<Key, Entry>,
    /// Requests with a poll record on its way through the database (`pin`): nothing is held
    /// for them meanwhile, so every record of theirs goes the same way, one after another.
    pinned: HashMap<Key, u32>,
    /// The generation at which each key was last dropped, since `dropped_since`: a read that
    /// began at or after `dropped_since` may hold a key not dropped after it began. (Cleared at
    /// every flush, so it stays as small as what one interval drops.)
    dropped: HashMap<Key, u64>,
    dropped_since: u64,
}

impl Held {
    /// Whether a read that began at generation `at` may hold what it read of `key`.
    fn may_hold(&self, key: &Key, at: u64, now: u64) -> bool {
        if self.pinned.contains_key(key) {
            return false;
        }
        if at >= self.dropped_since {
            self.dropped.get(key).is_none_or(|&g| g <= at)
        } else {
            // Began before the drops on record: only if nothing was dropped since.
            now == at
        }
    }
}

#[derive(Default)]
pub(super) struct PollBook {
    held: Mutex<Held>,
    /// Bumped (under the lock) whenever entries are dropped or a pin ends.
    drops: AtomicU64,
}

/// Records that `key` was dropped now (under the lock).
fn dropped(held: &mut Held, drops: &AtomicU64, key: Key) {
    let g = drops.fetch_add(1, Ordering::SeqCst) + 1;
    held.dropped.insert(key, g);
}

impl PollBook {
    fn lock(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// To be read before the row is: `merge` does not hold values read before a drop.
    pub(super) fn generation(&self) -> u64 {
        self.drops.load(Ordering::SeqCst)
    }

    /// Puts the held poll values over `req` (read from the row, after `generation` returned
    /// `at`), or holds the row's values when nothing is held yet.
    pub(super) fn merge(&self, req: &mut CibaRequest, at: u64) {
        if req.status != CibaStatus::Pending {
            return;
        }
        let mut held = self.lock();
        let key = (req.environment_id.clone(), req.auth_req_id.clone());
        if let Some(e) = held.entries.get_mut(&key) {
            e.touched = true;
            req.last_polled_at = e.polled.last_polled_at;
            req.interval_seconds = e.polled.interval_seconds;
        } else if held.may_hold(&key, at, self.drops.load(Ordering::SeqCst)) {
            let polled = Polled {
                last_polled_at: req.last_polled_at,
                interval_seconds: req.interval_seconds,
            };
            held.entries.insert(
                key,
                Entry {
                    polled,
                    dirty: false,
                    touched: true,
                },
            );
        }
    }

    /// The compare-and-set of a poll record on the held values: `Some(won)`, or `None` when
    /// nothing is held for the request (the caller records it through the database, `pin`).
    pub(super) fn record(
        &self,
        env_id: &EnvironmentId,
        auth_req_id: &AuthReqId,
        update: &PollUpdate,
    ) -> Option<bool> {
        let mut held = self.lock();
        let e = held
            .entries
            .get_mut(&(env_id.clone(), auth_req_id.clone()))?;
        let expected = Polled {
            last_polled_at: update.expected_last_polled_at,
            interval_seconds: update.expected_interval_seconds,
        };
        if e.polled != expected {
            return Some(false);
        }
        e.polled = Polled {
            last_polled_at: Some(update.last_polled_at),
            interval_seconds: update.interval_seconds,
        };
        e.dirty = true;
        e.touched = true;
        Some(true)
    }

    /// Before a poll record goes through the database (nothing held for the request, or the
    /// record causes more than bookkeeping): nothing is held for the request until `unpin`,
    /// so concurrent records of it go the same way and the writer orders them. Returns the
    /// record that was held, if it changed since the last flush: the caller writes it first,
    /// so that the database's guard sees the values readers saw.
    /// The pin ends when the returned [`Pin`] is dropped (also when the caller stops waiting).
    pub(super) fn pin(
        &self,
        env_id: &EnvironmentId,
        auth_req_id: &AuthReqId,
    ) -> (Pin<'_>, Option<PollRecord>) {
        let key = (env_id.clone(), auth_req_id.clone());
        let mut held = self.lock();
        *held.pinned.entry(key.clone()).or_insert(0) += 1;
        let removed = held.entries.remove(&key);
        if removed.is_some() {
            dropped(&mut held, &self.drops, key.clone());
        }
        let changed = removed.filter(|e| e.dirty).map(|e| (key.clone(), e.polled));
        (Pin { book: self, key }, changed)
    }

    /// After the record a pin was for is applied (or failed). The next read holds the
    /// request's values again, unless it began before this.
    fn unpin(&self, key: &Key) {
        let mut held = self.lock();
        if let Some(n) = held.pinned.get_mut(key) {
            *n -= 1;
            if *n == 0 {
                held.pinned.remove(key);
            }
        }
        dropped(&mut held, &self.drops, key.clone());
    }

    /// Drops the entry of a request that left PENDING (or is gone).
    pub(super) fn forget(&self, env_id: &EnvironmentId, auth_req_id: &AuthReqId) {
        let mut held = self.lock();
        let key = (env_id.clone(), auth_req_id.clone());
        if held.entries.remove(&key).is_some() {
            dropped(&mut held, &self.drops, key);
        }
    }

    /// Entries held now (for tests and `/metrics`).
    pub(super) fn held(&self) -> usize {
        self.lock().entries.len()
    }

    /// What a flush writes: every changed entry (marked written). Drops the entries untouched
    /// since the last flush. Hand the result to `flushed` once written.
    pub(super) fn take_changed(&self) -> Vec<PollRecord> {
        let mut held = self.lock();
        let held = &mut *held;
        held.dropped.clear();
        held.dropped_since = self.drops.load(Ordering::SeqCst);
        let untouched: Vec<Key> = held
            .entries
            .iter()
            .filter(|(_, e)| !(e.touched || e.dirty))
            .map(|(k, _)| k.clone())
            .collect();
        if !untouched.is_empty() {
            let g = self.drops.fetch_add(1, Ordering::SeqCst) + 1;
            for key in untouched {
                held.entries.remove(&key);
                held.dropped.insert(key, g);
            }
        }
        held.entries
            .iter_mut()
            .filter_map(|(k, e)| {
                e.touched = false;
                if !e.dirty {
                    return None;
                }
                e.dirty = false;
                Some((k.clone(), e.polled))
            })
            .collect()
    }

    /// After a flush of `records`: drops the entries of requests no longer PENDING (`Ok`), or
    /// marks the records changed again for the next flush (`Err`, unless changed meanwhile).
    pub(super) fn flushed(&self, records: &[PollRecord], written: &StoreResult<Vec<PollKey>>) {
        let mut held = self.lock();
        match written {
            Ok(gone) => {
                for key in gone {
                    if held.entries.remove(key).is_some() {
                        dropped(&mut held, &self.drops, key.clone());
                    }
                }
            }
            Err(_) => {
                for (key, polled) in records {
                    if let Some(e) = held.entries.get_mut(key)
                        && e.polled == *polled
                    {
                        e.dirty = true;
                    }
                }
            }
        }
    }
}

/// Records per statement of a flush.
const RECORDS_PER_STATEMENT: usize = 2_000;

/// One UPDATE per [`RECORDS_PER_STATEMENT`] records on `conn`, in the writer's transaction
/// (the records are one JSON parameter, so a flush costs a few statements, not one per
/// request); returns the keys whose request is no longer PENDING.
pub(super) fn write(conn: &Connection, records: &[PollRecord]) -> StoreResult<Vec<PollKey>> {
    let mut update = conn
        .prepare_cached(
            "UPDATE ciba_requests
                SET last_polled_at = r.value ->> 2, interval_seconds = r.value ->> 3
               FROM json_each(?) AS r
              WHERE ciba_requests.environment_id = r.value ->> 0
                AND ciba_requests.auth_req_id = r.value ->> 1
                AND ciba_requests.status = 'PENDING'
              RETURNING ciba_requests.environment_id, ciba_requests.auth_req_id",
        )
        .map_err(sql_err)?;
    let mut gone = Vec::new();
    for chunk in records.chunks(RECORDS_PER_STATEMENT) {
        let json = serde_json::Value::Array(
            chunk
                .iter()
                .map(|((env_id, auth_req_id), polled)| {
                    serde_json::json!([
                        env_id.as_str(),
                        auth_req_id.as_str(),
                        polled.last_polled_at.map(Timestamp::millis),
                        polled.interval_seconds,
                    ])
                })
                .collect(),
        );
        let updated = update
            .query_map([json.to_string()], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<HashSet<(String, String)>>>())
            .map_err(sql_err)?;
        gone.extend(
            chunk
                .iter()
                .filter(|((e, a), _)| !updated.contains(&(e.to_string(), a.to_string())))
                .map(|(k, _)| k.clone()),
        );
    }
    Ok(gone)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testsuite::ciba_request;

    fn request(n: u32) -> CibaRequest {
        ciba_request(
            &"env-1".into(),
            &"app-1".into(),
            &format!("user-{n}").as_str().into(),
        )
    }

    /// A read holds what it read unless that request was dropped after the read began; drops
    /// of other requests do not stop it (so they do not send its poll to the database).
    #[test]
    fn only_a_drop_of_the_same_request_stops_a_read_from_holding_it() {
        let book = PollBook::default();
        let (a, b) = (request(1), request(2));
        // b is held, and dropped while a and b are being read.
        book.merge(&mut b.clone(), book.generation());
        let at = book.generation();
        book.forget(&b.environment_id, &b.auth_req_id);
        book.merge(&mut a.clone(), at);
        book.merge(&mut b.clone(), at);
        assert_eq!(book.held(), 1);
        assert!(
            book.record(&a.environment_id, &a.auth_req_id, &first(&a))
                .is_some(),
            "a is held"
        );
        assert!(
            book.record(&b.environment_id, &b.auth_req_id, &first(&b))
                .is_none(),
            "b's stale read was not held"
        );
    }

    /// A read that began before the last flush holds nothing once anything was dropped since.
    #[test]
    fn a_read_older_than_the_last_flush_holds_nothing_after_a_drop() {
        let book = PollBook::default();
        let (a, b) = (request(1), request(2));
        book.merge(&mut b.clone(), book.generation());
        let at = book.generation();
        book.take_changed();
        book.take_changed(); // b, untouched for an interval, is dropped; the record is cleared
        book.take_changed();
        book.merge(&mut a.clone(), at);
        assert_eq!(book.held(), 0);
        // A read that begins now holds it.
        book.merge(&mut a.clone(), book.generation());
        assert_eq!(book.held(), 1);
    }

    /// While a request is pinned (a record of it on its way through the database), nothing is
    /// held for it, and its records go to the database too.
    #[test]
    fn a_pinned_request_is_not_held() {
        let book = PollBook::default();
        let a = request(1);
        book.merge(&mut a.clone(), book.generation());
        let (pin, changed) = book.pin(&a.environment_id, &a.auth_req_id);
        assert!(changed.is_none(), "nothing changed since the row was read");
        book.merge(&mut a.clone(), book.generation());
        assert_eq!(book.held(), 0);
        assert!(
            book.record(&a.environment_id, &a.auth_req_id, &first(&a))
                .is_none()
        );
        drop(pin);
        book.merge(&mut a.clone(), book.generation());
        assert_eq!(book.held(), 1);
    }

    fn first(r: &CibaRequest) -> PollUpdate {
        PollUpdate {
            expected_last_polled_at: r.last_polled_at,
            expected_interval_seconds: r.interval_seconds,
            last_polled_at: r.created_at,
            interval_seconds: r.interval_seconds,
        }
    }
}
