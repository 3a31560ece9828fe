//! Text rules of the review UI: the language, query encoding, list cuts, and the last pass
//! over every finished page.
//!
//! Owns: [`Lang`], [`url`], [`cut`], [`shown`], and how the pages show and read times ([`jst`],
//! [`parse_filter_time`]). Escaping itself belongs to the template
//! engine: pages are `maud::html!` templates, and every `(value)` in one is escaped by maud
//! (`&`, `<`, `>`, `"`), so a value needs no call to reach a page safely.
//! Invariants: [`shown`] runs once over every whole document (`layout::document` is its only
//! caller); after it no `'`, control character (but newline and tab) or bidirectional
//! override reaches the browser — they read `&#39;` and `[U+XXXX]`. Nothing here builds markup.
//! Must never: hand a page to the browser without [`shown`], or be used to mark a value as
//! already-escaped HTML.

use std::borrow::Cow;
use std::fmt::Write;

/// The UI language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// 日本語 (the default).
    Ja,
    /// English.
    En,
}

impl Lang {
    /// Picks the Japanese or the English text.
    pub fn t<'a>(self, ja: &'a str, en: &'a str) -> &'a str {
        match self {
            Lang::Ja => ja,
            Lang::En => en,
        }
    }

    /// The `lang` attribute value.
    pub fn code(self) -> &'static str {
        match self {
            Lang::Ja => "ja",
            Lang::En => "en",
        }
    }
}

/// Whether `c` is shown as `[U+XXXX]` rather than passed to the browser: a control character
/// (newline and tab excepted) or one that reorders text (a name like `gnp.exe` behind U+202E
/// reads as `exe.png`).
fn hidden(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t')
        || matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// The last pass over a whole rendered document: `'` as `&#39;` (maud leaves it, and no
/// attribute of ours is single-quoted, so this only closes a door), and every character
/// [`hidden`] as a visible `[U+XXXX]`. The markup mukaika writes holds neither (only the
/// newline after the doctype), so what this changes came from a value.
pub fn shown(document: &str) -> String {
    let mut out = String::with_capacity(document.len() + 16);
    for c in document.chars() {
        match c {
            '\'' => out.push_str("&#39;"),
            c if hidden(c) => {
                let _ = write!(out, "[U+{:04X}]", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// At most `max` characters of `s`, with an ellipsis when cut (lists stay readable with
/// 10 KB names; the detail page shows the whole name).
pub fn cut(s: &str, max: usize) -> Cow<'_, str> {
    match s.char_indices().nth(max) {
        None => Cow::Borrowed(s),
        Some((end, _)) => Cow::Owned(format!("{}…", &s[..end])),
    }
}

/// Percent-encodes a path segment or query value.
pub fn url(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// A record's UTC timestamp as the pages show it: `2026-11-27 18:19:41`, Japan time without a
/// zone marker (the pages' own headings say JST). Other text is returned as it is.
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
pub fn parse_filter_time(s: &str) -> Option<u64> {
    crate::clock::parse_rfc3339(s).or_else(|| crate::clock::parse_day_utc(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_pass_shows_controls_and_bidi_overrides_and_quotes_apostrophes() {
        assert_eq!(
            shown("<p>a'b\r\n\u{202E}gnp.exe\u{2066}\u{0}\tz</p>"),
            "<p>a&#39;b[U+000D]\n[U+202E]gnp.exe[U+2066][U+0000]\tz</p>"
        );
    }

    #[test]
    fn cuts_count_characters_not_bytes() {
        assert_eq!(cut("長長長", 3), "長長長");
        assert_eq!(cut("長長長長", 3), "長長長…");
        assert_eq!(cut("", 0), "");
    }
}
