//! File names derived from other names (outputs, reports, numbered copies, held originals).
//!
//! Owns: the one rule for making a derived name fit a file system — [`shorten`].
//! Invariants: a shortened name is valid UTF-8 cut at a character boundary, at most the asked
//! number of bytes, and keeps its extension so the reader's desktop still opens it with the
//! right program; a name that already fits is returned unchanged.
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

#[cfg(test)]
mod tests {
    use super::*;

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
