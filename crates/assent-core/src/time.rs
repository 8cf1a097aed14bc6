//! Instants as Unix milliseconds: trivially comparable, stored as BIGINT by every store, and
//! rendered as RFC 3339 only at the HTTP edge.

use serde::{Deserialize, Serialize};

/// A point in time, in milliseconds since the Unix epoch (UTC).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn from_millis(ms: i64) -> Self {
        Timestamp(ms)
    }
    pub fn from_secs(secs: i64) -> Self {
        Timestamp(secs.saturating_mul(1000))
    }
    pub fn millis(self) -> i64 {
        self.0
    }
    /// Whole seconds since the epoch (rounded down), as used in JWT `iat`/`exp`.
    pub fn secs(self) -> i64 {
        self.0.div_euclid(1000)
    }
    pub fn plus_secs(self, secs: i64) -> Self {
        Timestamp(self.0.saturating_add(secs.saturating_mul(1000)))
    }
    pub fn plus_millis(self, ms: i64) -> Self {
        Timestamp(self.0.saturating_add(ms))
    }
    /// RFC 3339 in UTC with millisecond precision, e.g. `2026-11-25T10:00:00.123Z`.
    pub fn to_rfc3339(self) -> String {
        let nanos = i128::from(self.0) * 1_000_000;
        match ::time::OffsetDateTime::from_unix_timestamp_nanos(nanos) {
            Ok(t) => {
                let fmt = ::time::macros::format_description!(
                    "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
                );
                t.format(&fmt).unwrap_or_default()
            }
            Err(_) => String::new(),
        }
    }
}

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339_utc() {
        assert_eq!(Timestamp(0).to_rfc3339(), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            Timestamp(1_764_064_800_123).to_rfc3339(),
            "2025-11-25T10:00:00.123Z"
        );
        assert_eq!(Timestamp(1999).secs(), 1);
        assert_eq!(Timestamp(5000).plus_secs(2), Timestamp(7000));
    }
}
