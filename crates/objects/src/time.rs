//! UTC calendar arithmetic on Unix times, for object keys, Object Lock dates and playlists.
//!
//! Kordon stores times as `i64` microseconds since the Unix epoch (UTC, no leap seconds).
//! These helpers turn them into calendar fields and RFC 3339 text without a time-zone database.
//! Supported: 1970-01-01 to 9999-12-31.

use std::time::{SystemTime, UNIX_EPOCH};

/// Microseconds per second.
pub const MICROS: i64 = 1_000_000;
/// 9999-12-31T23:59:59.999999Z in microseconds.
pub const MAX_MICROS: i64 = 253_402_300_799_999_999;

/// A UTC calendar time, to the microsecond.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Civil {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub micro: u32,
}

/// Days since 1970-01-01 → (year, month 1..=12, day 1..=31); Howard Hinnant's
/// `civil_from_days`, exact for the proleptic Gregorian calendar.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// (year, month, day) → days since 1970-01-01; the inverse of [`civil_from_days`].
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Splits a Unix time in microseconds into UTC calendar fields; `None` outside 1970..=9999.
pub fn civil(unix_micros: i64) -> Option<Civil> {
    if !(0..=MAX_MICROS).contains(&unix_micros) {
        return None;
    }
    let secs = unix_micros.div_euclid(MICROS);
    let micro = unix_micros.rem_euclid(MICROS) as u32;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    Some(Civil {
        year,
        month,
        day,
        hour: (sod / 3600) as u32,
        minute: ((sod % 3600) / 60) as u32,
        second: (sod % 60) as u32,
        micro,
    })
}

/// RFC 3339 in UTC with milliseconds, e.g. `2026-11-27T10:14:06.123Z` (HLS
/// `EXT-X-PROGRAM-DATE-TIME`, S3 dates). `None` outside 1970..=9999.
pub fn rfc3339_millis(unix_micros: i64) -> Option<String> {
    let c = civil(unix_micros)?;
    Some(format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        c.year,
        c.month,
        c.day,
        c.hour,
        c.minute,
        c.second,
        c.micro / 1000
    ))
}

/// RFC 3339 in UTC with microseconds, e.g. `2026-11-27T10:14:06.123456Z` (human messages).
pub fn rfc3339_micros(unix_micros: i64) -> String {
    match civil(unix_micros) {
        Some(c) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
            c.year, c.month, c.day, c.hour, c.minute, c.second, c.micro
        ),
        None => format!("{unix_micros}µs"),
    }
}

/// Now, in microseconds since the Unix epoch (0 if the clock is before 1970).
pub fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_dates() {
        assert_eq!(rfc3339_millis(0).unwrap(), "1970-01-01T00:00:00.000Z");
        // 2026-11-27T10:14:06.123456Z
        let t = 1_795_774_446_123_456;
        assert_eq!(rfc3339_millis(t).unwrap(), "2026-11-27T10:14:06.123Z");
        assert_eq!(rfc3339_micros(t), "2026-11-27T10:14:06.123456Z");
        // A leap day.
        let leap = days_from_civil(2028, 2, 29) * 86_400 * MICROS;
        assert_eq!(rfc3339_millis(leap).unwrap(), "2028-02-29T00:00:00.000Z");
        assert_eq!(
            rfc3339_millis(MAX_MICROS).unwrap(),
            "9999-12-31T23:59:59.999Z"
        );
        assert!(civil(-1).is_none());
        assert!(civil(MAX_MICROS + 1).is_none());
    }

    proptest! {
        #[test]
        fn days_round_trip(days in 0i64..2_932_896) {
            let (y, m, d) = civil_from_days(days);
            prop_assert!((1..=12).contains(&m) && (1..=31).contains(&d));
            prop_assert_eq!(days_from_civil(y, m, d), days);
        }
    }
}
