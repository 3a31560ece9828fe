//! UTC timestamps for audit records, without a date library: RFC 3339 with milliseconds, and
//! the day used to name files.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, now.
pub fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `2026-11-27T05:19:41.123Z`.
pub fn rfc3339(millis: u64) -> String {
    let (y, m, d) = civil(millis / 86_400_000);
    let ms_of_day = millis % 86_400_000;
    let (h, min, s, ms) = (
        ms_of_day / 3_600_000,
        ms_of_day / 60_000 % 60,
        ms_of_day / 1000 % 60,
        ms_of_day % 1000,
    );
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{min:02}:{s:02}.{ms:03}Z")
}

/// `Fri, 27 Nov 2026 05:19:41 +0000`, for the Date header of mail mukaika writes.
pub fn rfc5322(millis: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = millis / 86_400_000;
    let (y, m, d) = civil(days);
    let secs = millis / 1000 % 86_400;
    format!(
        "{}, {d} {} {y} {:02}:{:02}:{:02} +0000",
        DAYS[(days % 7) as usize],
        MONTHS[(m - 1) as usize],
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// [`rfc5322`] of now.
pub fn rfc5322_now() -> String {
    rfc5322(now_millis())
}

/// `20261127`, the UTC day of a timestamp.
pub fn day(millis: u64) -> String {
    let (y, m, d) = civil(millis / 86_400_000);
    format!("{y:04}{m:02}{d:02}")
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.mmm]Z` (or a bare `YYYY-MM-DD`, as midnight UTC) into
/// milliseconds since the epoch.
pub fn parse_rfc3339(s: &str) -> Option<u64> {
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        part.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if s.len() > 10 && s.as_bytes().get(4) != Some(&b'-') {
        return None;
    }
    let (h, mi, sec, ms) = if s.len() >= 19 {
        (
            num(11..13)?,
            num(14..16)?,
            num(17..19)?,
            if s.get(19..20) == Some(".") {
                num(20..23).unwrap_or(0)
            } else {
                0
            },
        )
    } else {
        (0, 0, 0, 0)
    };
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    // Howard Hinnant's days_from_civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let millis = ((days * 86_400 + h * 3600 + mi * 60 + sec) * 1000) + ms;
    u64::try_from(millis).ok()
}

/// A UTC record time shown in Japan time: `2026-11-27 18:19:41`.
pub fn jst(s: &str) -> String {
    match parse_rfc3339(s) {
        Some(ms) => {
            let t = rfc3339(ms + 9 * 3_600_000);
            format!("{} {}", &t[..10], &t[11..19])
        }
        None => s.to_string(),
    }
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (Howard Hinnant's method).
fn civil(days: u64) -> (i64, u32, u32) {
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_764_221_981_123), "2025-11-27T05:39:41.123Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(day(1_764_221_981_123), "20251127");
        assert_eq!(
            rfc5322(1_764_221_981_123),
            "Thu, 27 Nov 2025 05:39:41 +0000"
        );
        assert_eq!(rfc5322(0), "Thu, 1 Jan 1970 00:00:00 +0000");
        for ms in [0, 951_782_400_000, 1_764_221_981_123, 4_102_444_799_999] {
            assert_eq!(parse_rfc3339(&rfc3339(ms)), Some(ms));
        }
        assert_eq!(
            parse_rfc3339("2026-11-27"),
            parse_rfc3339("2026-11-27T00:00:00Z")
        );
        assert_eq!(parse_rfc3339("2026-13-01"), None);
        assert_eq!(parse_rfc3339("../etc"), None);
        assert_eq!(jst("2025-11-27T20:39:41.123Z"), "2025-11-28 05:39:41");
    }
}
