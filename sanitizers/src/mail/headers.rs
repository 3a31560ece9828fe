//! Header decoding: RFC 2047 encoded-words, raw 8-bit and JIS header bytes, RFC 2231 parameters.
//!
//! Owns: decoding unstructured header text (Subject, display names) and file-name parameters
//! the way Japanese clients do. A multi-byte character split across two encoded-words comes out
//! whole; folded ISO-2022-JP words (each ending `ESC ( B`) join without a replacement at the
//! seam; raw ISO-2022-JP, EUC-JP, CP932 or UTF-8 bytes in a header (old systems, carriers) are
//! sniffed and decoded.
//! Invariants: adjacent encoded-words with the same charset are joined as bytes, then decoded
//! once (stateful charsets are tidied at the seams, see [`charset`]); whitespace between
//! encoded-words is dropped (RFC 2047 §6.2); bytes that do not decode become U+FFFD; decoded
//! text never carries control characters (a CR/LF hidden in an encoded-word would otherwise
//! become a header line in a client that decodes twice).

use super::charset;
use crate::util::percent_decode;

/// Decodes an unstructured header value from its raw bytes (folded or not): raw 8-bit or JIS
/// bytes are sniffed, encoded-words decoded, control characters replaced by spaces. Returns
/// None when an encoded-word names a charset no decoder here knows (UTF-7, for example), so
/// the caller can use another decoder.
pub fn decode_unstructured(raw: &[u8]) -> Option<String> {
    Some(without_controls(&decode_raw(raw)?))
}

/// Control characters (CR, LF, TAB, C1…) become single spaces; runs of spaces stay as sent.
pub fn without_controls(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_string()
}

/// Unfolds a raw header value: CR and LF removed (the white space after them stays).
fn unfold(raw: &[u8]) -> Vec<u8> {
    raw.iter()
        .copied()
        .filter(|&b| b != b'\r' && b != b'\n')
        .collect()
}

/// Decodes `raw` (an unfolded or folded header value). Returns None when a charset is not one
/// encoding_rs knows (UTF-7, for example), so the caller can use another decoder.
pub fn decode(raw: &str) -> Option<String> {
    decode_raw(raw.as_bytes())
}

/// Decodes header bytes: encoded-words by their own charset (raw 8-bit bytes inside a word are
/// that charset's bytes, as some mailers send them), text between words sniffed (raw JIS,
/// EUC-JP, CP932 or UTF-8). Adjacent words of one charset are joined as bytes first.
fn decode_raw(raw: &[u8]) -> Option<String> {
    let unfolded = unfold(raw);
    let mut out = String::new();
    // Pending run of encoded-words: charset label and joined bytes.
    let mut run: Option<(String, Vec<u8>)> = None;
    // Raw bytes between encoded-words, decoded together by sniffing.
    let mut plain: Vec<u8> = Vec::new();
    let mut rest = unfolded.as_slice();
    while !rest.is_empty() {
        if let Some((label, bytes, used)) = encoded_word(rest) {
            let only_space = plain.iter().all(|&b| b == b' ' || b == b'\t');
            if run.is_some() && only_space {
                // White space alone between two encoded-words is dropped (RFC 2047 §6.2).
                plain.clear();
            } else {
                flush(&mut run, &mut out)?;
                out.push_str(&charset::decode_raw_header(&plain));
                plain.clear();
            }
            match &mut run {
                Some((current, buf)) if same_charset(current, &label) => {
                    buf.extend_from_slice(&bytes)
                }
                _ => {
                    flush(&mut run, &mut out)?;
                    run = Some((label, bytes));
                }
            }
            rest = &rest[used..];
            continue;
        }
        plain.push(rest[0]);
        rest = &rest[1..];
    }
    flush(&mut run, &mut out)?;
    out.push_str(&charset::decode_raw_header(&plain));
    Some(out.trim().to_string())
}

/// Two labels for one decoder (`ISO-2022-JP` and `iso-2022-jp`, `Shift_JIS` and `cp932`).
fn same_charset(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
        || matches!((charset::for_label(a), charset::for_label(b)), (Some(x), Some(y)) if x == y)
}

fn flush(run: &mut Option<(String, Vec<u8>)>, out: &mut String) -> Option<()> {
    if let Some((label, bytes)) = run.take() {
        out.push_str(&decode_bytes(&label, &bytes)?);
    }
    Some(())
}

/// Decodes bytes in a MIME charset (Shift_JIS as CP932, ISO-2022-JP with its extensions).
pub fn decode_bytes(label: &str, bytes: &[u8]) -> Option<String> {
    let encoding = charset::for_label(label)?;
    Some(charset::decode_with(encoding, bytes).0)
}

/// Parses one encoded-word at the start of `s`: (charset, decoded bytes, length consumed).
fn encoded_word(s: &[u8]) -> Option<(String, Vec<u8>, usize)> {
    let body = s.strip_prefix(b"=?")?;
    let q1 = body.iter().position(|&b| b == b'?')?;
    let charset = std::str::from_utf8(&body[..q1]).ok()?;
    let after = &body[q1 + 1..];
    let q2 = after.iter().position(|&b| b == b'?')?;
    let enc = &after[..q2];
    let after = &after[q2 + 1..];
    let end = after.windows(2).position(|w| w == b"?=")?;
    let text = &after[..end];
    // A B-encoded word folded inside its text (seen from some Japanese mailers) keeps its
    // meaning: base64 ignores the white space. A Q word cannot hold a space.
    let is_b = matches!(enc, b"B" | b"b");
    if charset.is_empty()
        || !charset.is_ascii()
        || (!is_b && text.contains(&b' '))
        || charset.contains(' ')
    {
        return None;
    }
    let bytes = match enc {
        b"B" | b"b" => crate::util::base64_lenient(text),
        b"Q" | b"q" => q_decode(text),
        _ => return None,
    };
    let used = 2 + q1 + 1 + q2 + 1 + end + 2;
    Some((charset.to_string(), bytes, used))
}

fn q_decode(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'_' => out.push(b' '),
            b'=' => match crate::util::hex_pair(bytes, i + 1) {
                Some(v) => {
                    out.push(v);
                    i += 2;
                }
                None => out.push(b'='),
            },
            b => out.push(b),
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    #[test]
    fn q_escapes_before_a_multibyte_character_are_kept_literally() {
        // Sliced at byte offsets, `=` followed by あ used to panic.
        assert_eq!(
            q_decode("=\u{3042}=41_=4".as_bytes()),
            "=\u{3042}A =4".as_bytes()
        );
    }

    #[test]
    fn joins_a_character_split_across_encoded_words() {
        // 重要なお知らせ with 要 (E8 A6 81) split after its first byte.
        let raw = "=?UTF-8?B?6YeN6A==?= =?UTF-8?B?poHjgarjgYrnn6XjgonjgZs=?=";
        assert_eq!(decode(raw).as_deref(), Some("重要なお知らせ"));
    }

    #[test]
    fn decodes_iso_2022_jp_extensions_and_cp932() {
        // ①㈱髙 in ISO-2022-JP (NEC row 13 and an IBM extension)
        let jis = encoding_rs::ISO_2022_JP.encode("①㈱髙").0;
        let raw = format!(
            "=?ISO-2022-JP?B?{}?=",
            base64::engine::general_purpose::STANDARD.encode(&jis)
        );
        assert_eq!(decode(&raw).as_deref(), Some("①㈱髙"));
        let sjis = encoding_rs::SHIFT_JIS.encode("﨑№℡").0;
        let raw = format!(
            "=?Shift_JIS?B?{}?=",
            base64::engine::general_purpose::STANDARD.encode(&sjis)
        );
        assert_eq!(decode(&raw).as_deref(), Some("﨑№℡"));
    }

    #[test]
    fn keeps_plain_text_and_spaces_between_plain_words() {
        assert_eq!(
            decode("Re: =?UTF-8?Q?caf=C3=A9?= menu").as_deref(),
            Some("Re: café menu")
        );
        assert_eq!(decode("=?UTF-7?B?K2Y/?=").as_deref(), None);
    }
}

/// A parameter (`filename`, `name`) of a raw Content-Disposition or Content-Type value, with
/// RFC 2231 continuations joined as bytes before decoding (a character may be split across
/// `filename*0*` and `filename*1*`), and encoded-words placed — illegally, but commonly —
/// inside a quoted value decoded too.
pub fn param(raw_value: &str, wanted: &str) -> Option<String> {
    let unfolded = raw_value.replace("\r\n", "").replace('\n', "");
    let mut plain: Option<String> = None;
    let mut extended: Option<String> = None;
    let mut segments: Vec<(u32, bool, String)> = Vec::new();
    for item in split_params(&unfolded).into_iter().skip(1) {
        let Some((key, value)) = item.split_once('=') else {
            continue;
        };
        let key = key.trim().to_ascii_lowercase();
        let value = unquote(value.trim());
        let Some(rest) = key.strip_prefix(&wanted.to_ascii_lowercase()) else {
            continue;
        };
        match rest {
            "" => plain = Some(value),
            "*" => extended = Some(value),
            _ => {
                let rest = rest.strip_prefix('*')?;
                let (num, encoded) = match rest.strip_suffix('*') {
                    Some(n) => (n, true),
                    None => (rest, false),
                };
                if let Ok(n) = num.parse::<u32>() {
                    segments.push((n, encoded, value));
                }
            }
        }
    }
    if !segments.is_empty() {
        segments.sort_by_key(|s| s.0);
        let mut charset = String::from("utf-8");
        let mut bytes = Vec::new();
        for (i, (_, encoded, value)) in segments.iter().enumerate() {
            if *encoded {
                let mut v = value.as_str();
                if i == 0 {
                    if let Some((cs, after)) = v.split_once('\'') {
                        charset = cs.to_string();
                        v = after.split_once('\'').map_or(after, |(_, text)| text);
                    }
                }
                bytes.extend(percent_decode(v));
            } else {
                bytes.extend_from_slice(value.as_bytes());
            }
        }
        return decode_bytes(
            if charset.is_empty() {
                "utf-8"
            } else {
                &charset
            },
            &bytes,
        );
    }
    if let Some(ext) = extended {
        let mut parts = ext.splitn(3, '\'');
        let (cs, _lang, text) = (parts.next()?, parts.next()?, parts.next()?);
        return decode_bytes(
            if cs.is_empty() { "utf-8" } else { cs },
            &percent_decode(text),
        );
    }
    let plain = plain?;
    if plain.contains("=?") {
        return decode(&plain).or(Some(plain));
    }
    Some(plain)
}

fn split_params(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut escaped = false;
    for c in value.chars() {
        if escaped {
            current.push(c);
            escaped = false;
            continue;
        }
        match c {
            '\\' if quoted => {
                current.push(c);
                escaped = true;
            }
            '"' => {
                quoted = !quoted;
                current.push(c);
            }
            ';' if !quoted => out.push(std::mem::take(&mut current)),
            c => current.push(c),
        }
    }
    out.push(current);
    out
}

fn unquote(v: &str) -> String {
    match v.strip_prefix('"').and_then(|x| x.strip_suffix('"')) {
        Some(inner) => inner.replace("\\\"", "\"").replace("\\\\", "\\"),
        None => v.to_string(),
    }
}

#[cfg(test)]
mod param_tests {
    use super::param;

    #[test]
    fn joins_continuations_split_inside_a_character() {
        // 計 = E8 A8 88, split between the two segments.
        let raw = "attachment;\r\n filename*0*=UTF-8''%E8%A8; filename*1*=%88.txt";
        assert_eq!(param(raw, "filename").as_deref(), Some("計.txt"));
    }

    #[test]
    fn decodes_extended_and_encoded_word_values() {
        assert_eq!(
            param(
                "attachment; filename*=ISO-2022-JP''%1B%24B%25F%259%25H%1B%28B.txt",
                "filename"
            )
            .as_deref(),
            Some("テスト.txt")
        );
        assert_eq!(
            param(
                "attachment; filename=\"=?UTF-8?B?6KaL56mN?=.pdf\"",
                "filename"
            )
            .as_deref(),
            Some("見積.pdf")
        );
        assert_eq!(
            param("application/pdf; name=\"a;b.pdf\"", "name").as_deref(),
            Some("a;b.pdf")
        );
        assert_eq!(param("inline", "filename"), None);
    }
}

/// Parses a Date header the way RFC 5322 (with its obsolete forms) and real mailers write it,
/// and returns it in RFC 5322 form with the sender's own offset: `Thu, 04 Dec 2026 17:52:55
/// +0900`. Named zones are mapped (`JST` and `KST` +0900, the US zones, `UT`/`GMT`/`Z` +0000);
/// one-letter military zones and unknown names become `-0000` (RFC 5322 §4.3: their sign was
/// historically reversed, so they say nothing). None when no date can be read.
pub fn parse_date(raw: &str) -> Option<String> {
    let cleaned = strip_comments(&raw.replace(['\r', '\n'], " "));
    let mut tokens: Vec<&str> = cleaned
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|t| !t.is_empty())
        .collect();
    // An optional day name.
    if tokens
        .first()
        .is_some_and(|t| t.chars().all(|c| c.is_ascii_alphabetic()))
    {
        tokens.remove(0);
    }
    const MONTHS: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    let month_of = |t: &str| {
        let t = t.get(..3)?.to_ascii_lowercase();
        MONTHS.iter().position(|m| *m == t).map(|i| i as u32 + 1)
    };
    // "4 Dec 2026" or (seen in the wild) "Dec 4 2026".
    let (day, month, year_tok, rest) = match tokens.as_slice() {
        [d, m, y, rest @ ..] if d.parse::<u32>().is_ok() && month_of(m).is_some() => {
            (d.parse::<u32>().ok()?, month_of(m)?, *y, rest)
        }
        [m, d, y, rest @ ..] if month_of(m).is_some() && d.parse::<u32>().is_ok() => {
            (d.parse::<u32>().ok()?, month_of(m)?, *y, rest)
        }
        _ => return None,
    };
    let mut year: i32 = year_tok.parse().ok()?;
    if year_tok.len() <= 2 {
        year += if year < 50 { 2000 } else { 1900 };
    } else if year_tok.len() == 3 {
        year += 1900;
    }
    let (time, zone) = match rest {
        [t, z, ..] => (*t, Some(*z)),
        [t] => (*t, None),
        [] => ("00:00:00", None),
    };
    let mut hms = time.split(':').map(|p| p.parse::<u32>());
    let hour = hms.next()?.ok()?;
    let minute = hms.next()?.ok()?;
    let second = hms.next().transpose().ok()?.unwrap_or(0);
    if !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let offset = match zone {
        None => "-0000".to_string(),
        Some(z) if (z.starts_with('+') || z.starts_with('-')) && z.len() == 5 => {
            if z[1..].bytes().all(|b| b.is_ascii_digit()) {
                z.to_string()
            } else {
                "-0000".to_string()
            }
        }
        Some(z) => match z.to_ascii_uppercase().as_str() {
            "UT" | "UTC" | "GMT" | "Z" => "+0000",
            "JST" | "KST" => "+0900",
            "EST" => "-0500",
            "EDT" => "-0400",
            "CST" => "-0600",
            "CDT" => "-0500",
            "MST" => "-0700",
            "MDT" => "-0600",
            "PST" => "-0800",
            "PDT" => "-0700",
            "CET" | "MET" | "BST" => "+0100",
            "CEST" | "MEST" | "EET" => "+0200",
            "EEST" => "+0300",
            "HKT" | "SGT" | "AWST" => "+0800",
            _ => "-0000",
        }
        .to_string(),
    };
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    let dow = DAYS[weekday(year, month, day)];
    let mon = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ][month as usize - 1];
    Some(format!(
        "{dow}, {day:02} {mon} {year:04} {hour:02}:{minute:02}:{second:02} {offset}"
    ))
}

/// 0 = Monday (days from civil, Howard Hinnant's algorithm).
fn weekday(year: i32, month: u32, day: u32) -> usize {
    let y = i64::from(year) - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    // 1970-01-01 was a Thursday (3).
    (days + 3).rem_euclid(7) as usize
}

/// RFC 5322 comments removed (nested, with quoted-pairs), quoted strings kept as they are.
pub fn strip_comments(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut depth = 0u32;
    let mut quoted = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' if depth > 0 || quoted => {
                let next = chars.next();
                if depth == 0 {
                    out.push(c);
                    out.extend(next);
                }
            }
            '"' if depth == 0 => {
                quoted = !quoted;
                out.push(c);
            }
            '(' if !quoted => depth += 1,
            ')' if !quoted && depth > 0 => {
                depth -= 1;
                if depth == 0 {
                    out.push(' ');
                }
            }
            c if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod date_tests {
    use super::parse_date;

    #[test]
    fn japanese_and_named_zones_keep_their_offset() {
        assert_eq!(
            parse_date("Thu, 4 Dec 2026 17:52:55 JST").as_deref(),
            Some("Fri, 04 Dec 2026 17:52:55 +0900")
        );
        assert_eq!(
            parse_date("Fri, 04 Dec 2026 08:52:55 Z").as_deref(),
            Some("Fri, 04 Dec 2026 08:52:55 +0000")
        );
        assert_eq!(
            parse_date("Fri, 04 Dec 2026 08:52:55 EST").as_deref(),
            Some("Fri, 04 Dec 2026 08:52:55 -0500")
        );
        // Military zones: their sign was reversed in RFC 822's day, so they say nothing.
        assert_eq!(
            parse_date("4 Dec 26 08:52 A").as_deref(),
            Some("Fri, 04 Dec 2026 08:52:00 -0000")
        );
    }

    #[test]
    fn numeric_offsets_and_comments() {
        assert_eq!(
            parse_date("Mon, 1 Jan 2001 00:00:00 +0900 (JST)").as_deref(),
            Some("Mon, 01 Jan 2001 00:00:00 +0900")
        );
        assert_eq!(
            parse_date(" 13 (c) Feb (x(y)) 1999 23:59:01 -0330").as_deref(),
            Some("Sat, 13 Feb 1999 23:59:01 -0330")
        );
        assert_eq!(parse_date("yesterday"), None);
        assert_eq!(parse_date("Mon, 32 Jan 2001 00:00:00 +0900"), None);
    }
}

/// One mailbox of an address header: decoded display name and address (empty for `<>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedMailbox {
    /// The display name (a phrase, else the comment of an old-style `addr (Name)`).
    pub name: Option<String>,
    /// The address with comments and white space removed; empty for the null path `<>`.
    pub address: String,
}

/// Parses an address-list header (From, To, Cc, Reply-To) from its raw bytes, as RFC 5322 and
/// its obsolete syntax allow: nested comments, quoted strings with quoted-pairs, groups, the
/// null path `<>`, encoded-words in phrases (and, as clients accept, inside quoted strings).
pub fn address_list(raw: &[u8]) -> Vec<ParsedMailbox> {
    let text = charset::decode_raw_header(&unfold(raw));
    let mut out = Vec::new();
    let mut phrase: Vec<(bool, String)> = Vec::new(); // (was quoted, text)
    let mut comment: Option<String> = None;
    let mut angle: Option<String> = None;
    let finish = |phrase: &mut Vec<(bool, String)>,
                  comment: &mut Option<String>,
                  angle: &mut Option<String>,
                  out: &mut Vec<ParsedMailbox>| {
        let words = std::mem::take(phrase);
        let comment = comment.take();
        match angle.take() {
            Some(addr) => {
                let name = phrase_text(&words).or(comment);
                out.push(ParsedMailbox {
                    name,
                    address: addr,
                });
            }
            None if !words.is_empty() => {
                // An addr-spec without angle brackets: its words, joined without spaces.
                let address: String = words.iter().map(|(_, w)| w.as_str()).collect();
                out.push(ParsedMailbox {
                    name: comment.map(|c| without_controls(&decode(&c).unwrap_or(c))),
                    address,
                });
            }
            None => {}
        }
    };
    let mut chars = text.chars().peekable();
    let mut atom = String::new();
    let push_atom = |atom: &mut String, phrase: &mut Vec<(bool, String)>| {
        if !atom.is_empty() {
            phrase.push((false, std::mem::take(atom)));
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '(' => {
                push_atom(&mut atom, &mut phrase);
                let mut depth = 1;
                let mut inner = String::new();
                while let Some(d) = chars.next() {
                    match d {
                        '\\' => inner.extend(chars.next()),
                        '(' => {
                            depth += 1;
                            inner.push(d);
                        }
                        ')' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                            inner.push(d);
                        }
                        d => inner.push(d),
                    }
                }
                let inner = inner.trim().to_string();
                if comment.is_none() && !inner.is_empty() {
                    comment = Some(inner);
                }
            }
            '"' => {
                push_atom(&mut atom, &mut phrase);
                let mut inner = String::new();
                while let Some(d) = chars.next() {
                    match d {
                        '\\' => inner.extend(chars.next()),
                        '"' => break,
                        d => inner.push(d),
                    }
                }
                phrase.push((true, inner));
            }
            '<' => {
                push_atom(&mut atom, &mut phrase);
                let mut inner = String::new();
                for d in chars.by_ref() {
                    if d == '>' {
                        break;
                    }
                    inner.push(d);
                }
                let addr: String = strip_comments(&inner)
                    .chars()
                    .filter(|c| !c.is_whitespace() && *c != '"')
                    .collect();
                // Obsolete source routes (`<@a,@b:user@host>`) keep only the mailbox.
                let addr = match addr.rsplit_once(':') {
                    Some((route, mbox)) if route.starts_with('@') => mbox.to_string(),
                    _ => addr,
                };
                angle = Some(addr);
            }
            ',' | ';' => {
                push_atom(&mut atom, &mut phrase);
                finish(&mut phrase, &mut comment, &mut angle, &mut out);
            }
            ':' if angle.is_none() && !atom.contains('@') => {
                // A group's display name: dropped, its members follow.
                push_atom(&mut atom, &mut phrase);
                phrase.clear();
                comment = None;
            }
            c if c.is_whitespace() => push_atom(&mut atom, &mut phrase),
            c => atom.push(c),
        }
    }
    push_atom(&mut atom, &mut phrase);
    finish(&mut phrase, &mut comment, &mut angle, &mut out);
    out
}

/// A display name from phrase words: encoded-words decoded (adjacent ones joined, RFC 2047
/// §6.2), quoted strings unescaped (and decoded when they hold encoded-words, as clients do).
fn phrase_text(words: &[(bool, String)]) -> Option<String> {
    if words.is_empty() {
        return None;
    }
    let joined = words
        .iter()
        .map(|(_, w)| w.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    let name = decode(&joined).unwrap_or(joined);
    let name = without_controls(&name);
    (!name.is_empty()).then_some(name)
}

#[cfg(test)]
mod address_tests {
    use super::{address_list, ParsedMailbox};

    fn mb(name: Option<&str>, address: &str) -> ParsedMailbox {
        ParsedMailbox {
            name: name.map(str::to_string),
            address: address.into(),
        }
    }

    #[test]
    fn nested_comments_do_not_become_the_name() {
        let raw = br#"Pete(A wonderful \) chap) <pete(his account)@silly.test(his host)>"#;
        assert_eq!(address_list(raw), vec![mb(Some("Pete"), "pete@silly.test")]);
    }

    #[test]
    fn the_null_path_keeps_its_name() {
        assert_eq!(
            address_list(b"MAILER-DAEMON <>"),
            vec![mb(Some("MAILER-DAEMON"), "")]
        );
        assert_eq!(
            address_list(b"\"MAILER DAEMON\" <>"),
            vec![mb(Some("MAILER DAEMON"), "")]
        );
    }

    #[test]
    fn groups_lists_and_old_style_comments() {
        assert_eq!(
            address_list(b"Team: a@example.invalid, \"B, Jr.\" <b@example.invalid>;, c@example.invalid (Cee)"),
            vec![
                mb(None, "a@example.invalid"),
                mb(Some("B, Jr."), "b@example.invalid"),
                mb(Some("Cee"), "c@example.invalid"),
            ]
        );
        assert_eq!(address_list(b"undisclosed-recipients:;"), vec![]);
    }

    #[test]
    fn encoded_and_raw_japanese_names() {
        assert_eq!(
            address_list(b"=?utf-8?B?eHB0bw?= <dummy@example.com>"),
            vec![mb(Some("xpto"), "dummy@example.com")]
        );
        let jis = encoding_rs::ISO_2022_JP.encode("架空 太郎").0;
        let mut raw = jis.to_vec();
        raw.extend_from_slice(b" <taro@example.invalid>");
        assert_eq!(
            address_list(&raw),
            vec![mb(Some("架空 太郎"), "taro@example.invalid")]
        );
    }
}
