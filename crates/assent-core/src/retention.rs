//! How long what has expired is kept before the store may purge it. Policy, not SQL: every
//! backend deletes exactly the rows older than these cut-offs.

use crate::ciba::EXPIRED_ANSWERABLE_SECS;
use crate::time::Timestamp;

/// Access tokens are kept this long past expiry (introspection of a just-expired token still
/// finds it).
pub const ACCESS_TOKEN_KEEP_SECS: i64 = 24 * 3600;

/// Audit entries are kept this long (§6.4); export them elsewhere to keep them longer.
pub const AUDIT_KEEP_SECS: i64 = 90 * 24 * 3600;

/// What a purge at some `now` deletes: each kind of row whose expiry (for signing keys: the
/// retirement of a key that is no longer current) is at or before its cut-off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PurgeCutoffs {
    pub used_jtis: Timestamp,
    pub access_tokens: Timestamp,
    pub refresh_tokens: Timestamp,
    /// Expired requests keep answering `expired_token` for a day (§3.3).
    pub ciba_requests: Timestamp,
    pub retired_signing_keys: Timestamp,
    /// Unused enrolment codes past their expiry.
    pub device_enrollments: Timestamp,
    /// Audit entries older than [`AUDIT_KEEP_SECS`].
    pub activities: Timestamp,
}

/// The cut-offs of a purge at `now`.
pub fn purge_cutoffs(now: Timestamp) -> PurgeCutoffs {
    let kept = |secs: i64| Timestamp(now.millis().saturating_sub(secs.saturating_mul(1000)));
    PurgeCutoffs {
        used_jtis: now,
        access_tokens: kept(ACCESS_TOKEN_KEEP_SECS),
        refresh_tokens: now,
        ciba_requests: kept(EXPIRED_ANSWERABLE_SECS),
        retired_signing_keys: now,
        device_enrollments: now,
        activities: kept(AUDIT_KEEP_SECS),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expired_access_tokens_and_requests_are_kept_a_day_audit_entries_90_days_the_rest_not_at_all()
    {
        let now = Timestamp(10_000_000_000);
        let day_ms = 24 * 3600 * 1000;
        assert_eq!(
            purge_cutoffs(now),
            PurgeCutoffs {
                used_jtis: now,
                access_tokens: Timestamp(now.millis() - day_ms),
                refresh_tokens: now,
                ciba_requests: Timestamp(now.millis() - day_ms),
                retired_signing_keys: now,
                device_enrollments: now,
                activities: Timestamp(now.millis() - 90 * day_ms),
            }
        );
    }

    #[test]
    fn cutoffs_saturate_instead_of_overflowing() {
        let c = purge_cutoffs(Timestamp(i64::MIN + 5));
        assert_eq!(c.access_tokens, Timestamp(i64::MIN));
        assert_eq!(c.ciba_requests, Timestamp(i64::MIN));
    }
}
