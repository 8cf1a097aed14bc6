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
    /// The earliest instant RFC 3339 can write (four-digit years): 0000-01-01T00:00:00.000Z.
    pub const RFC3339_MIN: Timestamp = Timestamp(-62_167_219_200_000);
    /// The latest: 9999-12-31T23:59:59.999Z.
    pub const RFC3339_MAX: Timestamp = Timestamp(253_402_300_799_999);

    /// RFC 3339 in UTC with millisecond precision, e.g. `2026-11-25T10:00:00.123Z`. Infallible:
    /// an instant outside years 0000–9999 (only reachable through saturating arithmetic on
    /// absurd inputs) is written as the nearest representable one, never as an empty string.
    pub fn to_rfc3339(self) -> String {
        let ms = self.0.clamp(Self::RFC3339_MIN.0, Self::RFC3339_MAX.0);
        let days = ms.div_euclid(86_400_000);
        let in_day = ms.rem_euclid(86_400_000);
        let (year, month, day) = civil_from_days(days);
        format!(
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
            in_day / 3_600_000,
            in_day / 60_000 % 60,
            in_day / 1000 % 60,
            in_day % 1000
        )
    }
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, exact for every `i64` day the clamp above lets through).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
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
        assert_eq!(
            Timestamp(951_782_400_000).to_rfc3339(),
            "2000-02-29T00:00:00.000Z"
        );
        assert_eq!(Timestamp(-1).to_rfc3339(), "1969-12-31T23:59:59.999Z");
        assert_eq!(
            Timestamp::RFC3339_MIN.to_rfc3339(),
            "0000-01-01T00:00:00.000Z"
        );
        assert_eq!(
            Timestamp::RFC3339_MAX.to_rfc3339(),
            "9999-12-31T23:59:59.999Z"
        );
        // Saturated arithmetic never yields an empty or malformed string.
        assert_eq!(Timestamp(i64::MAX).to_rfc3339(), "9999-12-31T23:59:59.999Z");
        assert_eq!(Timestamp(i64::MIN).to_rfc3339(), "0000-01-01T00:00:00.000Z");
        // Agrees with the `time` crate across the range.
        let fmt = ::time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
        );
        let mut ms = Timestamp::RFC3339_MIN.0;
        while ms < Timestamp::RFC3339_MAX.0 {
            let t = ::time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
                .unwrap();
            assert_eq!(Timestamp(ms).to_rfc3339(), t.format(&fmt).unwrap(), "{ms}");
            ms += 7_777_777_777_777;
        }
        assert_eq!(Timestamp(1999).secs(), 1);
        assert_eq!(Timestamp(5000).plus_secs(2), Timestamp(7000));
    }
}
