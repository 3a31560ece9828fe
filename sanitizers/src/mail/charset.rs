//! Charsets of mail text: labels, Japanese sniffing, and decoding that Japanese clients agree with.
//!
//! Owns: turning the bytes of a text part or a header into text the way Outlook, Thunderbird and
//! Becky! do for Japanese mail — a label alias table (iPhone's `cp932`, `x-sjis`, `ms_kanji`,
//! `iso-2022-jp-ms`, …), ISO-2022-JP with the CP50220 extensions (NEC row 13, IBM extensions,
//! half-width katakana by `ESC ( I`), and sniffing when no label can be right: ESC sequences mean
//! ISO-2022-JP; strictly valid UTF-8 is UTF-8; otherwise CP932 or EUC-JP, whichever decodes with
//! no error and reads more like Japanese.
//! Invariants: a label is believed unless the bytes prove it wrong (8-bit bytes under a 7-bit
//! label, or a Japanese label whose decoding fails where another Japanese encoding decodes
//! cleanly); redundant back-to-back ISO-2022-JP escape sequences (the join of two folded
//! encoded-words) are dropped before decoding, since the WHATWG decoder reports them as errors.
//! Must never: panic on any byte sequence, or return text with a U+FFFD where some candidate
//! decoding had none.

use std::borrow::Cow;

use encoding_rs::{Encoding, EUC_JP, ISO_2022_JP, SHIFT_JIS, UTF_8, WINDOWS_1252};

/// The encoding a MIME charset label names, with the aliases mail software really sends.
/// `None` for labels no decoder here knows (UTF-7, for example).
pub fn for_label(label: &str) -> Option<&'static Encoding> {
    let label = label.split('*').next().unwrap_or(label);
    let label = label.trim().trim_matches('"').trim();
    let lower = label.to_ascii_lowercase();
    let canonical = match lower.as_str() {
        "shift_jis" | "shift-jis" | "sjis" | "x-sjis" | "s-jis" | "shiftjis" | "cp932"
        | "ms932" | "ms_kanji" | "windows-31j" | "csshiftjis" | "cswindows31j" | "x-ms-cp932"
        | "ibm-943" | "ibm943" | "cp943c" => "windows-31j",
        "iso-2022-jp" | "iso-2022-jp-ms" | "cp50220" | "cp50221" | "cp50222" | "iso-2022-jp-1"
        | "iso-2022-jp-2" | "iso-2022-jp-3" | "csiso2022jp" | "jis" | "x-jis" | "iso2022jp" => {
            "iso-2022-jp"
        }
        "euc-jp"
        | "eucjp"
        | "x-euc-jp"
        | "euc_jp"
        | "cseucpkdfmtjapanese"
        | "eucjp-ms"
        | "euc-jp-ms"
        | "eucjp-win"
        | "cp51932" => "euc-jp",
        "us-ascii" | "ascii" | "ansi_x3.4-1968" | "iso646-us" | "utf8" | "utf-8" | "x-unknown"
        | "unknown-8bit" | "x-user-defined" | "default" | "" => "utf-8",
        other => other,
    };
    Encoding::for_label(canonical.as_bytes())
}

/// True when the bytes can only be ISO-2022-JP (or a 7-bit relative): an ESC that starts a
/// JIS X 0208 / JIS X 0201 designation.
pub fn has_jis_escapes(bytes: &[u8]) -> bool {
    bytes
        .windows(3)
        .any(|w| w[0] == 0x1B && matches!((w[1], w[2]), (b'$', b'B') | (b'$', b'@') | (b'(', b'I')))
}

/// Decodes a text part: `label` is its charset parameter, if any. Returns the text and the
/// number of characters that had to be replaced.
pub fn decode_text(label: Option<&str>, bytes: &[u8]) -> (String, usize) {
    let labelled = label.and_then(for_label);
    let eight_bit = bytes.iter().any(|&b| b >= 0x80);
    let enc = match labelled {
        // 8-bit bytes under a 7-bit label: the label cannot be right.
        Some(e) if e == ISO_2022_JP && eight_bit => sniff(bytes),
        Some(e) if e == UTF_8 && label.is_some_and(is_ascii_label) && eight_bit => sniff(bytes),
        // ESC designations under "us-ascii" or no useful label are ISO-2022-JP.
        Some(e) if e == UTF_8 && !eight_bit && has_jis_escapes(bytes) => ISO_2022_JP,
        Some(e) => {
            // One decoding serves both the check and the result in the common case.
            let decoded = decode_with(e, bytes);
            let private = (e == SHIFT_JIS || e == EUC_JP) && decoded.0.chars().any(is_private_use);
            if decoded.1 == 0 && !private {
                return decoded;
            }
            {
                // A Japanese or UTF-8 label whose decoding fails where another Japanese
                // encoding decodes cleanly was mislabelled (common with `Shift_JIS` on
                // EUC-JP text and the reverse).
                let japanese = [UTF_8, SHIFT_JIS, EUC_JP, ISO_2022_JP].contains(&e);
                match sniff_clean(bytes) {
                    Some(other) if japanese => other,
                    _ => e,
                }
            }
        }
        None => sniff(bytes),
    };
    decode_with(enc, bytes)
}

fn is_ascii_label(label: &str) -> bool {
    let l = label.trim().trim_matches('"').to_ascii_lowercase();
    matches!(
        l.as_str(),
        "us-ascii" | "ascii" | "ansi_x3.4-1968" | "iso646-us"
    )
}

/// Decodes bytes with `enc` (ISO-2022-JP tidied first). Returns text and replacement count.
pub fn decode_with(enc: &'static Encoding, bytes: &[u8]) -> (String, usize) {
    let bytes = if enc == ISO_2022_JP {
        tidy_iso2022jp(bytes)
    } else {
        Cow::Borrowed(bytes)
    };
    let (text, _) = enc.decode_without_bom_handling(&bytes);
    let replaced = text.chars().filter(|&c| c == '\u{FFFD}').count();
    (text.into_owned(), replaced)
}

/// Decodes raw header bytes that are not in an encoded-word (8-bit or JIS in the header itself,
/// as old systems and some carriers send): sniffed, since a header has no label.
pub fn decode_raw_header(bytes: &[u8]) -> String {
    if bytes.is_ascii() && !has_jis_escapes(bytes) {
        return String::from_utf8_lossy(bytes).into_owned();
    }
    decode_with(sniff(bytes), bytes).0
}

/// The encoding unlabelled bytes are in: ISO-2022-JP by its escapes, UTF-8 when strictly valid,
/// else CP932 or EUC-JP by which decodes cleanly and reads more like Japanese, else
/// windows-1252 (every byte means something there).
pub fn sniff(bytes: &[u8]) -> &'static Encoding {
    sniff_clean(bytes).unwrap_or_else(|| {
        // Nothing decodes cleanly: the Japanese candidate with the fewest errors, since a
        // Japanese gateway mostly sees Japanese; windows-1252 only when nothing looks Japanese.
        let errors = |e: &'static Encoding| {
            let (text, replaced) = decode_with(e, bytes);
            replaced + text.chars().filter(|&c| is_private_use(c)).count()
        };
        let best = [UTF_8, SHIFT_JIS, EUC_JP]
            .into_iter()
            .min_by_key(|&e| errors(e))
            .unwrap_or(UTF_8);
        if errors(best) * 4 > bytes.iter().filter(|&&b| b >= 0x80).count() {
            WINDOWS_1252
        } else {
            best
        }
    })
}

/// Like [`sniff`], but only an encoding that decodes every byte.
fn sniff_clean(bytes: &[u8]) -> Option<&'static Encoding> {
    if has_jis_escapes(bytes) && bytes.iter().all(|&b| b < 0x80) {
        // 7-bit with JIS designations is ISO-2022-JP even where a code is unassigned (carrier
        // emoji): read as anything else, the escapes would show as text.
        return Some(ISO_2022_JP);
    }
    if std::str::from_utf8(bytes).is_ok() {
        return Some(UTF_8);
    }
    let sjis = clean(SHIFT_JIS, bytes);
    let euc = clean(EUC_JP, bytes);
    match (sjis, euc) {
        (true, true) => {
            let s = japanese_score(&decode_with(SHIFT_JIS, bytes).0);
            let e = japanese_score(&decode_with(EUC_JP, bytes).0);
            Some(if e > s { EUC_JP } else { SHIFT_JIS })
        }
        (true, false) => Some(SHIFT_JIS),
        (false, true) => Some(EUC_JP),
        (false, false) => None,
    }
}

/// Decodes without a single replacement, and (for CP932 and EUC-JP) without landing in the
/// private-use area: user-defined characters are what Latin-1 or Big5 bytes look like when read
/// as Japanese, and no reader could see them anyway.
fn clean(enc: &'static Encoding, bytes: &[u8]) -> bool {
    let tidied;
    let bytes = if enc == ISO_2022_JP {
        tidied = tidy_iso2022jp(bytes);
        &tidied[..]
    } else {
        bytes
    };
    let decoded = enc.decode_without_bom_handling_and_without_replacement(bytes);
    decoded.is_some_and(|text| {
        !(enc == SHIFT_JIS || enc == EUC_JP) || !text.chars().any(is_private_use)
    })
}

fn is_private_use(c: char) -> bool {
    matches!(c as u32, 0xE000..=0xF8FF)
}

/// How much a text reads like Japanese: kana, common kanji and full-width punctuation count
/// for it; half-width katakana and rare symbols (what EUC-JP looks like read as CP932, and the
/// reverse) count against.
fn japanese_score(text: &str) -> i64 {
    text.chars()
        .map(|c| match c as u32 {
            0x3040..=0x30FF => 3,
            0x4E00..=0x9FFF => 2,
            0x3000..=0x303F | 0xFF01..=0xFF5E => 1,
            0xFF61..=0xFF9F => -2,
            0x80..=0x2FFF => -1,
            _ => 0,
        })
        .sum()
}

/// Drops an ISO-2022-JP escape sequence that is immediately followed by another (it switches
/// to a mode nothing is written in). Folded encoded-words each end with `ESC ( B`, so joining
/// them puts `ESC ( B ESC $ B` back to back, which the WHATWG decoder reports as an error.
fn tidy_iso2022jp(bytes: &[u8]) -> Cow<'_, [u8]> {
    fn escape_len(b: &[u8]) -> Option<usize> {
        match b {
            [0x1B, b'(', b'B' | b'J' | b'I', ..] | [0x1B, b'$', b'@' | b'B', ..] => Some(3),
            [0x1B, b'$', b'(', b'D' | b'Q' | b'O', ..] => Some(4),
            _ => None,
        }
    }
    let mut out: Option<Vec<u8>> = None;
    let mut i = 0;
    while i < bytes.len() {
        if let Some(n) = escape_len(&bytes[i..]) {
            if bytes.get(i + n..).and_then(escape_len).is_some() {
                out.get_or_insert_with(|| bytes[..i].to_vec());
                i += n;
                continue;
            }
        }
        if let Some(o) = out.as_mut() {
            o.push(bytes[i]);
        }
        i += 1;
    }
    match out {
        Some(o) => Cow::Owned(o),
        None => Cow::Borrowed(bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jis(s: &str) -> Vec<u8> {
        ISO_2022_JP.encode(s).0.into_owned()
    }

    #[test]
    fn iphone_cp932_label_is_windows_31j() {
        let bytes = SHIFT_JIS.encode("①髙﨑").0;
        assert_eq!(decode_text(Some("cp932"), &bytes), ("①髙﨑".into(), 0));
        assert_eq!(decode_text(Some("x-sjis"), &bytes), ("①髙﨑".into(), 0));
    }

    #[test]
    fn unlabelled_jis_escapes_are_iso_2022_jp() {
        let bytes = jis("色は匂えど\r\n散りぬるを");
        assert_eq!(decode_text(None, &bytes).0, "色は匂えど\r\n散りぬるを");
        assert_eq!(
            decode_text(Some("us-ascii"), &bytes).0,
            "色は匂えど\r\n散りぬるを"
        );
    }

    #[test]
    fn eight_bit_under_a_seven_bit_label_is_sniffed() {
        let euc = EUC_JP.encode("テストです").0;
        assert_eq!(
            decode_text(Some("iso-2022-jp"), &euc),
            ("テストです".into(), 0)
        );
        let sjis = SHIFT_JIS.encode("テストです").0;
        assert_eq!(
            decode_text(Some("us-ascii"), &sjis),
            ("テストです".into(), 0)
        );
        assert_eq!(decode_text(None, "日本語".as_bytes()), ("日本語".into(), 0));
    }

    #[test]
    fn a_japanese_label_on_the_other_japanese_encoding_is_corrected() {
        let euc = EUC_JP.encode("お知らせの件について").0;
        assert_eq!(
            decode_text(Some("shift_jis"), &euc),
            ("お知らせの件について".into(), 0)
        );
    }

    #[test]
    fn joined_folded_words_decode_without_replacement() {
        let mut joined = jis("ご確認の");
        joined.extend(jis("お願い"));
        assert_eq!(
            decode_with(ISO_2022_JP, &joined),
            ("ご確認のお願い".into(), 0)
        );
    }

    #[test]
    fn raw_header_bytes_are_sniffed() {
        assert_eq!(decode_raw_header(&jis("テスト")), "テスト");
        assert_eq!(decode_raw_header(&EUC_JP.encode("テスト").0), "テスト");
        assert_eq!(decode_raw_header(&SHIFT_JIS.encode("①②③").0), "①②③");
        assert_eq!(decode_raw_header(b"plain"), "plain");
        // Latin-1 read as CP932 would land in the user-defined area: not Japanese.
        assert_eq!(decode_raw_header(b"Fr\xf6sche"), "Frösche");
    }
}
