//! File names derived from other names (outputs, reports, numbered copies, held originals), and
//! attacker-chosen names shown to people.
//!
//! Owns: the one rule for making a derived name fit a file system — [`shorten`] — and the one
//! rule for which characters a name may not carry raw into a terminal, a log line, a TSV row or
//! a file name — [`is_hidden_control`], applied by [`escape_controls`] (text) and
//! [`file_name_safe`] (names on disk).
//! Invariants: a shortened name is valid UTF-8 cut at a character boundary, at most the asked
//! number of bytes, and keeps its extension so the reader's desktop still opens it with the
//! right program; a name that already fits is returned unchanged.
//! Escaped text holds no C0 or C1 control, DEL or bidirectional control, so it stays on one
//! line, sets no terminal title and cannot reorder what is shown beside it.
//! Must never: cut inside a character, or drop the extension while any of the stem is left.
//!
//! Why it exists: Japanese names take three bytes a character, and ext4, XFS and tmpfs hold 255
//! bytes a name. A 230-byte input name fits, but the export's `.無害化レポート.txt` beside it
//! does not — and a write that fails after the output was written leaves the original in the
//! import folder to be exported again on every rescan.

use std::borrow::Cow;

/// The longest file name, in bytes, that Linux file systems hold (`NAME_MAX`).
pub const NAME_MAX: usize = 255;

/// An extension longer than this is treated as part of the stem (`報告.令和六年度…` has none).
const MAX_EXTENSION_BYTES: usize = 16;

/// `name` cut to at most `max_bytes` bytes, at a character boundary, keeping its extension (the
/// part from the last `.`, when it is short and not the whole name). The cut stem loses any
/// trailing dots and spaces, which Windows would strip and so turn into a different name.
///
/// ```
/// use mukaika_sanitizers::names::shorten;
/// assert_eq!(shorten("請求書一覧.csv", 12), "請求.csv");
/// assert_eq!(shorten("short.txt", 255), "short.txt");
/// ```
pub fn shorten(name: &str, max_bytes: usize) -> Cow<'_, str> {
    if name.len() <= max_bytes {
        return Cow::Borrowed(name);
    }
    let ext = name
        .rfind('.')
        .filter(|&dot| dot > 0 && name.len() - dot <= MAX_EXTENSION_BYTES)
        .map_or("", |dot| &name[dot..]);
    let cut = |s: &str, room: usize| -> String {
        let mut at = room.min(s.len());
        while !s.is_char_boundary(at) {
            at -= 1;
        }
        s[..at].trim_end_matches(['.', ' ']).to_string()
    };
    let stem = cut(
        &name[..name.len() - ext.len()],
        max_bytes.saturating_sub(ext.len()),
    );
    if stem.is_empty() {
        // No room for a stem beside the extension: a name that is only `.csv` would be hidden.
        return Cow::Owned(cut(name, max_bytes));
    }
    Cow::Owned(format!("{stem}{ext}"))
}

/// Whether `c` must not reach a person raw: a C0 or C1 control or DEL (line breaks, tabs that
/// split a TSV row, ESC and the terminal sequences it starts) or a bidirectional control that
/// reorders what follows (`請求書\u{202e}fdp.exe` shown as `請求書exe.pdf`).
pub fn is_hidden_control(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
        )
}

/// `s` with every [`is_hidden_control`] character written as a visible Rust-style escape
/// (`\u{1b}`, `\u{202e}`); text without one is returned unchanged. For command-line listings,
/// log fields and report text: what an attacker named a file or a mail is shown, never obeyed.
///
/// ```
/// use mukaika_sanitizers::names::escape_controls;
/// assert_eq!(escape_controls("a\u{1b}]0;x\u{7}\r\n\u{202e}b"), "a\\u{1b}]0;x\\u{7}\\u{d}\\u{a}\\u{202e}b");
/// assert_eq!(escape_controls("請求書.pdf"), "請求書.pdf");
/// ```
pub fn escape_controls(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_hidden_control) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if is_hidden_control(c) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// `name` with every [`is_hidden_control`] character replaced by `_`, for a name written to
/// disk: a backslash escape would be a path separator on the Windows share that reads the
/// export folder, and a bidi override would disguise the extension in Explorer.
pub fn file_name_safe(name: &str) -> Cow<'_, str> {
    if !name.chars().any(is_hidden_control) {
        return Cow::Borrowed(name);
    }
    Cow::Owned(
        name.chars()
            .map(|c| if is_hidden_control(c) { '_' } else { c })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_bidi_overrides_are_escaped_and_nothing_else_changes() {
        let hostile =
            "x\u{1b}]0;title\u{7}\r\n\t\u{7f}\u{85}\u{9b}\u{202e}\u{2066}\u{200f}\u{61c}y 日本語";
        let shown = escape_controls(hostile);
        assert!(!shown.chars().any(is_hidden_control), "{shown}");
        assert_eq!(
            shown,
            "x\\u{1b}]0;title\\u{7}\\u{d}\\u{a}\\u{9}\\u{7f}\\u{85}\\u{9b}\\u{202e}\\u{2066}\\u{200f}\\u{61c}y 日本語"
        );
        assert!(matches!(
            escape_controls("会議資料 (2).docx"),
            Cow::Borrowed(_)
        ));
        let on_disk = file_name_safe("請求書\u{202e}fdp.exe");
        assert_eq!(on_disk, "請求書_fdp.exe");
        assert!(matches!(file_name_safe("請求書.pdf"), Cow::Borrowed(_)));
    }

    #[test]
    fn cuts_at_a_character_boundary_and_keeps_the_extension() {
        let long = format!("{}.xlsx", "長".repeat(100));
        let short = shorten(&long, NAME_MAX);
        assert!(short.len() <= NAME_MAX);
        assert!(short.ends_with("長.xlsx"));
        assert_eq!(short.len(), 250 / 3 * 3 + 5);
        for max in 0..40 {
            let s = shorten("会議資料 第3回.docx", max);
            assert!(s.len() <= max, "{max}: {s}");
        }
    }

    #[test]
    fn a_long_tail_after_the_last_dot_is_no_extension() {
        let name = format!("a.{}", "あ".repeat(100));
        let short = shorten(&name, 20);
        assert_eq!(short, format!("a.{}", "あ".repeat(6)));
    }

    #[test]
    fn trailing_dots_and_spaces_of_a_cut_stem_go() {
        assert_eq!(shorten("ab. cd.txt", 8), "ab.txt");
        assert_eq!(shorten("fits.txt", 8), "fits.txt");
    }
}
