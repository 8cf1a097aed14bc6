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

impl Timestamp {
    /// Parses an RFC 3339 date-time (`2026-01-31T12:00:00Z`, with optional fractional seconds,
    /// read to the millisecond, and `Z` or a `±HH:MM` offset). `None` for anything else.
    pub fn parse_rfc3339(s: &str) -> Option<Timestamp> {
        let b = s.as_bytes();
        let num = |from: usize, len: usize| -> Option<i64> {
            let part = b.get(from..from + len)?;
            part.iter().all(u8::is_ascii_digit).then(|| {
                part.iter()
                    .fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0'))
            })
        };
        let at = |i: usize, c: u8| b.get(i) == Some(&c);
        if !(at(4, b'-')
            && at(7, b'-')
            && (at(10, b'T') || at(10, b't'))
            && at(13, b':')
            && at(16, b':'))
        {
            return None;
        }
        let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
        let (hour, minute, second) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
        let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
        let days_in_month = match month {
            1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
            4 | 6 | 9 | 11 => 30,
            2 if leap => 29,
            2 => 28,
            _ => return None,
        };
        if day < 1 || day > days_in_month || hour > 23 || minute > 59 || second > 59 {
            return None;
        }
        let mut i = 19;
        let mut millis = 0;
        if at(i, b'.') {
            i += 1;
            let start = i;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                if i - start < 3 {
                    millis = millis * 10 + i64::from(b[i] - b'0');
                }
                i += 1;
            }
            if i == start {
                return None;
            }
            for _ in (i - start)..3 {
                millis *= 10;
            }
        }
        let offset_secs = match b.get(i) {
            Some(b'Z' | b'z') if i + 1 == b.len() => 0,
            Some(sign @ (b'+' | b'-')) if i + 6 == b.len() && at(i + 3, b':') => {
                let (h, m) = (num(i + 1, 2)?, num(i + 4, 2)?);
                if h > 23 || m > 59 {
                    return None;
                }
                let secs = h * 3600 + m * 60;
                if *sign == b'+' { secs } else { -secs }
            }
            _ => return None,
        };
        let days = days_from_civil(year, month, day);
        let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_secs;
        Some(Timestamp(secs * 1000 + millis))
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
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
        // Parsing is the inverse, with offsets and fractions.
        let mut ms = Timestamp::RFC3339_MIN.0;
        while ms < Timestamp::RFC3339_MAX.0 {
            let t = Timestamp(ms);
            assert_eq!(Timestamp::parse_rfc3339(&t.to_rfc3339()), Some(t), "{ms}");
            ms += 7_777_777_777_777;
        }
        assert_eq!(
            Timestamp::parse_rfc3339("2025-11-25T12:00:00.1234+02:00"),
            Some(Timestamp(1_764_064_800_123))
        );
        assert_eq!(
            Timestamp::parse_rfc3339("2025-11-25T10:00:00Z"),
            Some(Timestamp(1_764_064_800_000))
        );
        for bad in [
            "",
            "2025-11-25",
            "2025-11-25T10:00:00",
            "2025-02-29T10:00:00Z",
            "2025-13-01T10:00:00Z",
            "2025-11-25T24:00:00Z",
            "2025-11-25T10:00:00.Z",
            "2025-11-25T10:00:00+0200",
            "2025-11-25T10:00:00Zjunk",
            "+025-11-25T10:00:00Z",
        ] {
            assert_eq!(Timestamp::parse_rfc3339(bad), None, "{bad}");
        }
        assert_eq!(Timestamp(1999).secs(), 1);
        assert_eq!(Timestamp(5000).plus_secs(2), Timestamp(7000));
    }
}
