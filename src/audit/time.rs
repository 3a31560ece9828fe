//! Compatibility shims for the admin web pages only, until they call `crate::clock` directly:
//! the time code itself lives in `crate::clock`. Nothing else may use this module.
//!
//! Must never: grow new functions or callers; remove it once `src/admin/web` no longer names it.

/// A record's UTC timestamp as the web pages have shown it so far: `2026-11-27 18:19:41`,
/// Japan time without a zone marker (the pages' own headings say JST). Other text is returned
/// as it is.
pub fn jst(s: &str) -> String {
    match crate::clock::parse_rfc3339(s) {
        // `jst_display` ends in " (JST)"; the pages add their own marker.
        Some(ms) => crate::clock::jst_display(ms)
            .trim_end_matches(" (JST)")
            .to_string(),
        None => s.to_string(),
    }
}

/// A record timestamp, or a bare date the pages' filters send (as midnight UTC), in
/// milliseconds since the epoch.
pub fn parse_rfc3339(s: &str) -> Option<u64> {
    crate::clock::parse_rfc3339(s).or_else(|| crate::clock::parse_day_utc(s))
}
