//! The service's one clock and one time library: what time it is, and how times are written
//! for machines and shown to people.
//!
//! Owns: [`Clock`] (now, injectable: [`SystemClock`] in the service, [`TestClock`] in tests
//! that must control time without sleeping), and every conversion between milliseconds since
//! the Unix epoch — the unit the service computes with and keeps in spool metadata — and text.
//! Everything is built on `jiff`; no other module does calendar arithmetic.
//!
//! Invariants:
//! - Records stay UTC: audit records, spool and quarantine metadata, JSON reports and file
//!   names use [`rfc3339_utc`] (`2026-12-04T17:52:55.843Z`) and [`day_utc`] (`20261204`).
//!   Their format never changes, because verifiers, SIEMs and older data read it.
//! - People see local time, always marked: [`local_display`] (`2026-12-05 02:52:55 (JST)`) and
//!   [`local_date`] for reports, notices, the web UI and CLI listings, and times people type
//!   ([`parse_people_time`]) are read in the same zone. The zone is `[ui] timezone`
//!   (Asia/Tokyo unless set), fixed for the process by [`set_people_zone`] when the
//!   configuration is loaded. A time shown to a person without its zone is ambiguous for an
//!   operator reading it beside UTC records.
//! - Unreadable text is `None`, never a made-up time: [`parse_rfc3339`] returns `None` on
//!   garbage, and each caller decides explicitly what an unknown time means for it.
//!
//! Must never: read the host's time zone database or `TZ` (jiff's copy of the IANA database is
//! compiled in, `tzdb-bundle-always`, so a container without `/usr/share/zoneinfo` shows the
//! same times), panic on any input, or show a person a time without saying which zone it is in.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jiff::civil::{DateTime, Weekday};
use jiff::tz::{self, TimeZone};
use jiff::Timestamp;

/// Asia/Tokyo, embedded at compile time from jiff's bundled tzdb (`static` feature): no file
/// is read at run time, so the lookup cannot fail on a minimal container. The real zone rather
/// than a fixed +09:00 so the one time Japan did use DST (1948–1951) is right too, and so the
/// code says what it means.
static TOKYO: TimeZone = tz::get!("Asia/Tokyo");

/// The zone people see (`[ui] timezone`); unset means Asia/Tokyo. Set once per process: every
/// report, notice and listing of one run shows the same zone (a reload that named another zone
/// would otherwise mix two zones in one digest).
static PEOPLE_ZONE: OnceLock<TimeZone> = OnceLock::new();

/// The time zone called `name` (an IANA name such as `Asia/Tokyo` or `UTC`) from the database
/// compiled into the binary; `None` for a name it does not hold. Never reads the host's files.
pub fn zone_named(name: &str) -> Option<TimeZone> {
    let name = name.trim();
    if name.is_empty() {
        return None;
    }
    tz::db().get(name).ok()
}

/// Makes `zone` the one people see from now on in this process. The first call wins (later
/// ones return `false` and change nothing): the zone is a start-up setting.
pub fn set_people_zone(zone: TimeZone) -> bool {
    PEOPLE_ZONE.set(zone).is_ok()
}

/// The zone people see: `[ui] timezone`, or Asia/Tokyo.
pub fn people_zone() -> &'static TimeZone {
    PEOPLE_ZONE.get().unwrap_or(&TOKYO)
}

/// Where "now" comes from. The service holds an `Arc<dyn Clock>` so that tests can decide what
/// time it is (deferrals, retention, digests) instead of sleeping.
pub trait Clock: fmt::Debug + Send + Sync {
    /// Milliseconds since the Unix epoch, now.
    fn now_ms(&self) -> u64;
}

/// A clock shared between the parts of the service.
pub type SharedClock = Arc<dyn Clock>;

/// The machine's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        // A clock set before 1970 reads as the epoch: every caller compares times, and 0 is
        // "long ago", which never makes anything look due later than it is.
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

/// The system clock, shared.
pub fn system() -> SharedClock {
    Arc::new(SystemClock)
}

/// Now, by the system clock: for code that has no clock handed to it (log lines, IDs).
pub fn now_ms() -> u64 {
    SystemClock.now_ms()
}

/// A clock that stands still until a test sets or advances it.
#[derive(Debug, Default)]
pub struct TestClock {
    ms: AtomicU64,
}

impl TestClock {
    /// A clock standing at `ms`, shared.
    pub fn at(ms: u64) -> Arc<Self> {
        Arc::new(Self {
            ms: AtomicU64::new(ms),
        })
    }

    /// Moves the clock to `ms` (backwards too: tests of clock steps need it).
    pub fn set(&self, ms: u64) {
        self.ms.store(ms, Ordering::SeqCst);
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        let _ = self
            .ms
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |ms| {
                Some(ms.saturating_add(by))
            });
    }
}

impl Clock for TestClock {
    fn now_ms(&self) -> u64 {
        self.ms.load(Ordering::SeqCst)
    }
}

/// Milliseconds → jiff's timestamp. Past jiff's range (late on 9999-12-30 UTC) the time is clamped
/// to its end: such a time is no real instant, and clamping keeps every formatter total.
fn timestamp(ms: u64) -> Timestamp {
    i64::try_from(ms)
        .ok()
        .and_then(|ms| Timestamp::from_millisecond(ms).ok())
        .unwrap_or(Timestamp::MAX)
}

fn utc(ms: u64) -> DateTime {
    TimeZone::UTC.to_datetime(timestamp(ms))
}

/// The record format: `2026-12-04T17:52:55.843Z` (RFC 3339, UTC, milliseconds).
pub fn rfc3339_utc(ms: u64) -> String {
    let t = utc(ms);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// [`rfc3339_utc`] of now, by the system clock.
pub fn now_rfc3339() -> String {
    rfc3339_utc(now_ms())
}

/// Reads an RFC 3339 timestamp with an offset (`Z`, `+09:00`, …; fractional seconds optional),
/// as records contain them, into milliseconds since the epoch. `None` for anything else,
/// including times before 1970, which no record of this service holds.
pub fn parse_rfc3339(s: &str) -> Option<u64> {
    // jiff also reads a trailing `[Zone]` annotation and ISO 8601 forms; records never hold
    // those, but a stricter pre-check would only reject times that are unambiguous anyway.
    let t: Timestamp = s.trim().parse().ok()?;
    u64::try_from(t.as_millisecond()).ok()
}

/// Reads a bare date `2026-12-04` as midnight UTC of that day (date filters typed by people
/// are turned into Japan-time days by the caller).
pub fn parse_day_utc(s: &str) -> Option<u64> {
    let d: jiff::civil::Date = s.trim().parse().ok()?;
    let t = TimeZone::UTC.to_timestamp(d.at(0, 0, 0, 0)).ok()?;
    u64::try_from(t.as_millisecond()).ok()
}

/// The Date header format (RFC 5322): `Fri, 4 Dec 2026 17:52:55 +0000`. Written in UTC, as
/// before: mail clients show a Date header in the reader's own zone whatever offset it
/// carries, so +0900 would change no screen, only every stored notice's bytes.
pub fn rfc5322(ms: u64) -> String {
    let t = utc(ms);
    let day = match t.weekday() {
        Weekday::Monday => "Mon",
        Weekday::Tuesday => "Tue",
        Weekday::Wednesday => "Wed",
        Weekday::Thursday => "Thu",
        Weekday::Friday => "Fri",
        Weekday::Saturday => "Sat",
        Weekday::Sunday => "Sun",
    };
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = usize::try_from(t.month() - 1)
        .ok()
        .and_then(|m| MONTHS.get(m))
        .copied()
        .unwrap_or("Jan");
    format!(
        "{day}, {} {month} {:04} {:02}:{:02}:{:02} +0000",
        t.day(),
        t.year(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// `20261204`: the UTC day, for file names (audit files rotate at UTC midnight).
pub fn day_utc(ms: u64) -> String {
    let t = utc(ms);
    format!("{:04}{:02}{:02}", t.year(), t.month(), t.day())
}

/// `ms` in `zone`, as people read it: `2026-12-05 02:52:55 (JST)`. The mark is the zone's
/// abbreviation at that instant (`JST`, `CET`/`CEST`, `+07` where the database has no letters).
pub fn display_in(ms: u64, zone: &TimeZone) -> String {
    let ts = timestamp(ms);
    let t = zone.to_datetime(ts);
    let info = zone.to_offset_info(ts);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} ({})",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        info.abbreviation()
    )
}

/// The mark of the people's zone now (`JST`), for headings such as `日時 (JST)` over a column
/// of [`local_display`] times.
pub fn local_zone_mark() -> String {
    let ts = timestamp(now_ms());
    people_zone().to_offset_info(ts).abbreviation().to_string()
}

/// For people, in their zone ([`people_zone`]): `2026-12-05 02:52:55 (JST)`.
pub fn local_display(ms: u64) -> String {
    display_in(ms, people_zone())
}

/// For people: the day in their zone, `2026-12-05`.
pub fn local_date(ms: u64) -> String {
    let t = people_zone().to_datetime(timestamp(ms));
    format!("{:04}-{:02}-{:02}", t.year(), t.month(), t.day())
}

/// A record's timestamp shown to people in their zone; text that is no timestamp is shown as
/// it is (a person should see what the record holds rather than a made-up time).
pub fn local_display_of(record_ts: &str) -> String {
    parse_rfc3339(record_ts).map_or_else(|| record_ts.to_string(), local_display)
}

/// [`local_display`] under its first name (the zone was Japan's before `[ui] timezone`).
pub fn jst_display(ms: u64) -> String {
    local_display(ms)
}

/// [`local_date`] under its first name.
pub fn jst_date(ms: u64) -> String {
    local_date(ms)
}

/// [`local_display_of`] under its first name.
pub fn jst_display_of(record_ts: &str) -> String {
    local_display_of(record_ts)
}

/// A time a person typed, as milliseconds since the epoch: RFC 3339 with a zone (`Z`,
/// `+09:00`), or local time ([`people_zone`]) without one — a day (`2026-12-04`, its local
/// midnight), or a day and time (`2026-12-04 17:30`, `2026-12-04T17:30:05`). `None` for
/// anything else, so a typo is refused rather than read as "no limit".
pub fn parse_people_time(s: &str) -> Option<u64> {
    parse_people_time_in(s, people_zone())
}

/// [`parse_people_time`] in a given zone.
pub fn parse_people_time_in(s: &str, zone: &TimeZone) -> Option<u64> {
    let s = s.trim();
    if let Some(ms) = parse_rfc3339(s) {
        return Some(ms);
    }
    // A bare day is exactly ten characters; jiff's date parser would also take the day out of
    // a longer date-and-time, dropping the time.
    let civil: jiff::civil::DateTime = if s.len() == 10 {
        s.parse::<jiff::civil::Date>().ok()?.at(0, 0, 0, 0)
    } else {
        s.replacen(' ', "T", 1).parse().ok()?
    };
    let t = zone.to_timestamp(civil).ok()?;
    u64::try_from(t.as_millisecond()).ok()
}

/// The end of a range a person typed ("until"), exclusive, in ms: a bare day means through
/// that day — the next local midnight, whatever the day's length in the zone — and a time is
/// that time. `None` for anything [`parse_people_time`] would refuse. The web filters and the
/// CLI's `--until` read the same way.
pub fn parse_people_until(s: &str) -> Option<u64> {
    parse_people_until_in(s, people_zone())
}

/// [`parse_people_until`] in a given zone.
pub fn parse_people_until_in(s: &str, zone: &TimeZone) -> Option<u64> {
    let t = s.trim();
    if t.len() != 10 {
        return parse_people_time_in(t, zone);
    }
    let next = t.parse::<jiff::civil::Date>().ok()?.tomorrow().ok()?;
    let ts = zone.to_timestamp(next.at(0, 0, 0, 0)).ok()?;
    u64::try_from(ts.as_millisecond()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn until_a_day_is_through_that_day_and_until_a_time_is_that_time() {
        let tokyo = zone_named("Asia/Tokyo").unwrap();
        let day = parse_people_time_in("2026-11-27", &tokyo).unwrap();
        assert_eq!(
            parse_people_until_in("2026-11-27", &tokyo),
            Some(day + 86_400_000)
        );
        assert_eq!(
            parse_people_until_in("2026-11-27 09:30", &tokyo),
            parse_people_time_in("2026-11-27 09:30", &tokyo)
        );
        assert_eq!(parse_people_until_in("yesterday", &tokyo), None);
        // A day of 23 hours (spring forward in Berlin): its end is the next local midnight.
        let berlin = zone_named("Europe/Berlin").unwrap();
        let start = parse_people_time_in("2026-03-29", &berlin).unwrap();
        assert_eq!(
            parse_people_until_in("2026-03-29", &berlin),
            Some(start + 23 * 3_600_000)
        );
    }

    const DEC_4_2026: u64 = 1_796_406_775_843; // 2026-12-04T17:52:55.843Z

    #[test]
    fn writes_records_in_the_existing_utc_format() {
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_utc(DEC_4_2026), "2026-12-04T17:52:55.843Z");
        assert_eq!(rfc3339_utc(1_764_221_981_123), "2025-11-27T05:39:41.123Z");
        assert_eq!(day_utc(DEC_4_2026), "20261204");
        assert_eq!(day_utc(0), "19700101");
    }

    #[test]
    fn round_trips_records_across_leap_days_and_years() {
        for ms in [
            0,
            951_782_400_000,   // 2000-02-29 (divisible by 400: leap)
            4_107_542_399_999, // 2100-02-28T23:59:59.999Z (2100 is no leap year)
            1_709_164_800_000, // 2024-02-29
            DEC_4_2026,
            4_102_444_799_999, // 2099-12-31T23:59:59.999Z
        ] {
            assert_eq!(parse_rfc3339(&rfc3339_utc(ms)), Some(ms), "{ms}");
        }
        assert_eq!(rfc3339_utc(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339_utc(4_107_542_400_000), "2100-03-01T00:00:00.000Z");
        assert_eq!(parse_rfc3339("2100-02-29T00:00:00Z"), None);
        assert_eq!(parse_rfc3339("2023-02-29T00:00:00Z"), None);
    }

    #[test]
    fn reads_offsets_and_optional_fractions() {
        let utc = parse_rfc3339("2026-12-04T17:52:55Z");
        assert_eq!(utc, Some(DEC_4_2026 - 843));
        assert_eq!(parse_rfc3339("2026-12-05T02:52:55+09:00"), utc);
        assert_eq!(parse_rfc3339("2026-12-04T12:52:55-05:00"), utc);
        assert_eq!(
            parse_rfc3339("2026-12-04T17:52:55.843+00:00"),
            Some(DEC_4_2026)
        );
        assert_eq!(parse_rfc3339("2026-12-04T17:52:55.8431Z"), Some(DEC_4_2026));
    }

    #[test]
    fn garbage_is_none_not_the_epoch() {
        for bad in [
            "",
            "garbage",
            "../etc",
            "2026-13-01T00:00:00Z",
            "2026-12-32T00:00:00Z",
            "2026-12-04T24:00:01Z",
            "2026-12-04T17:52:55",  // no offset: which zone is unknown
            "2026-12-04",           // a day is no instant
            "1969-12-31T23:59:59Z", // before the epoch: no record of ours
            "2026-12-04T17:52:55Z trailing",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad:?}");
        }
        assert_eq!(parse_day_utc("2026-12-04"), Some(DEC_4_2026 - 64_375_843));
        assert_eq!(parse_day_utc("2026-02-30"), None);
        assert_eq!(parse_day_utc("x"), None);
    }

    #[test]
    fn shows_people_japan_time_across_utc_midnight() {
        // 17:52 UTC on the 4th is 02:52 on the 5th in Tokyo.
        assert_eq!(jst_display(DEC_4_2026), "2026-12-05 02:52:55 (JST)");
        assert_eq!(jst_date(DEC_4_2026), "2026-12-05");
        // 14:59:59 UTC is still the same day in Tokyo; 15:00 UTC is the next.
        let d = parse_rfc3339("2026-12-31T14:59:59Z").unwrap_or_default();
        assert_eq!(jst_display(d), "2026-12-31 23:59:59 (JST)");
        assert_eq!(jst_display(d + 1000), "2027-01-01 00:00:00 (JST)");
        assert_eq!(jst_date(d + 1000), "2027-01-01");
        assert_eq!(
            jst_display_of("2026-12-04T17:52:55.843Z"),
            "2026-12-05 02:52:55 (JST)"
        );
        assert_eq!(jst_display_of("not a time"), "not a time");
    }

    #[test]
    fn japan_time_is_a_constant_nine_hours_in_the_service_era() {
        // No DST in Japan since 1951: every instant of the service's life is UTC+9.
        for ms in [
            0,
            951_782_400_000,
            1_720_000_000_000,
            DEC_4_2026,
            4_102_444_799_999,
        ] {
            let shown = jst_display(ms);
            let nine_later = rfc3339_utc(ms + 9 * 3_600_000);
            assert_eq!(&shown[..10], &nine_later[..10], "{ms}");
            assert_eq!(&shown[11..19], &nine_later[11..19], "{ms}");
        }
    }

    #[test]
    fn writes_date_headers() {
        assert_eq!(rfc5322(0), "Thu, 1 Jan 1970 00:00:00 +0000");
        assert_eq!(
            rfc5322(1_764_221_981_123),
            "Thu, 27 Nov 2025 05:39:41 +0000"
        );
        assert_eq!(rfc5322(DEC_4_2026), "Fri, 4 Dec 2026 17:52:55 +0000");
        assert_eq!(rfc5322(951_782_400_000), "Tue, 29 Feb 2000 00:00:00 +0000");
    }

    #[test]
    fn formatters_are_total() {
        // Far past jiff's range (which ends late on 9999-12-30 UTC): clamped, not a panic.
        assert!(rfc3339_utc(u64::MAX).starts_with("9999-12-30T"));
        assert!(jst_display(u64::MAX).starts_with("9999-12-31 "));
        assert_eq!(day_utc(u64::MAX), "99991230");
        assert!(rfc5322(u64::MAX).contains("Dec 9999"));
    }

    #[test]
    fn shows_and_reads_other_zones_from_the_compiled_in_database() {
        // The whole IANA database is in the binary: no /usr/share/zoneinfo needed.
        let berlin = zone_named("Europe/Berlin").unwrap();
        assert_eq!(display_in(DEC_4_2026, &berlin), "2026-12-04 18:52:55 (CET)");
        let july = parse_rfc3339("2026-07-01T12:00:00Z").unwrap();
        assert_eq!(display_in(july, &berlin), "2026-07-01 14:00:00 (CEST)");
        let utc = zone_named("UTC").unwrap();
        assert_eq!(display_in(DEC_4_2026, &utc), "2026-12-04 17:52:55 (UTC)");
        assert_eq!(
            display_in(DEC_4_2026, &zone_named("Asia/Tokyo").unwrap()),
            "2026-12-05 02:52:55 (JST)"
        );
        assert_eq!(
            parse_people_time_in("2026-12-04 18:52:55", &berlin),
            Some(DEC_4_2026 - 843)
        );
        // No test sets the process's zone: the default is Japan's.
        assert_eq!(local_zone_mark(), "JST");
        for bad in [
            "",
            "Asia/Tokio",
            "JST+9",
            "../../etc/passwd",
            "Mars/Olympus",
        ] {
            assert!(zone_named(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn test_clock_is_set_and_advanced() {
        let clock = TestClock::at(DEC_4_2026);
        assert_eq!(clock.now_ms(), DEC_4_2026);
        clock.advance(Duration::from_secs(90));
        assert_eq!(clock.now_ms(), DEC_4_2026 + 90_000);
        clock.set(5);
        assert_eq!(clock.now_ms(), 5);
        clock.set(u64::MAX - 1);
        clock.advance(Duration::from_secs(1));
        assert_eq!(clock.now_ms(), u64::MAX);
        let shared: SharedClock = clock;
        assert_eq!(shared.now_ms(), u64::MAX);
        assert!(SystemClock.now_ms() > DEC_4_2026 - 365 * 86_400_000);
    }

    #[test]
    fn times_people_type_are_read_as_japan_time_unless_they_say_otherwise() {
        // 2026-12-04 00:00 in Japan is 2026-12-03T15:00Z.
        let midnight = parse_rfc3339("2026-12-03T15:00:00Z").unwrap();
        assert_eq!(parse_people_time("2026-12-04"), Some(midnight));
        assert_eq!(
            parse_people_time("2026-12-04 17:30"),
            parse_rfc3339("2026-12-04T08:30:00Z")
        );
        assert_eq!(
            parse_people_time("2026-12-04T17:30:05"),
            parse_rfc3339("2026-12-04T08:30:05Z")
        );
        assert_eq!(
            parse_people_time("2026-12-04T17:30:05Z"),
            parse_rfc3339("2026-12-04T17:30:05Z")
        );
        for bad in ["yesterday", "2026-13-01", "12/04", "", "2026-12-04 25:00"] {
            assert_eq!(parse_people_time(bad), None, "{bad}");
        }
    }
}
