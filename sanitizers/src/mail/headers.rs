//! RFC 2047 header decoding that joins adjacent encoded-words before decoding.
//!
//! Owns: decoding unstructured header text (Subject) so that a multi-byte character split
//! across two encoded-words (common in Japanese subjects from some mailers) comes out whole.
//! Invariants: adjacent encoded-words with the same charset are joined as bytes, then decoded
//! once; whitespace between encoded-words is dropped (RFC 2047 §6.2); Shift_JIS is decoded as
//! CP932 and ISO-2022-JP with its CP50220 extensions (encoding_rs follows WHATWG, whose tables
//! include NEC row 13 and the IBM extensions); bytes that do not decode become U+FFFD.

use base64::Engine;

use crate::util::percent_decode;

/// Decodes `raw` (an unfolded or folded header value). Returns None when a charset is not one
/// encoding_rs knows (UTF-7, for example), so the caller can use another decoder.
pub fn decode(raw: &str) -> Option<String> {
    let unfolded: String = raw.replace("\r\n", "").replace('\n', "");
    let mut out = String::new();
    // Pending run of encoded-words: charset label and joined bytes.
    let mut run: Option<(String, Vec<u8>)> = None;
    let mut pending_space = String::new();
    let mut rest = unfolded.as_str();
    while !rest.is_empty() {
        if let Some((label, bytes, used)) = encoded_word(rest) {
            match &mut run {
                Some((current, buf)) if current.eq_ignore_ascii_case(&label) => {
                    buf.extend_from_slice(&bytes)
                }
                _ => {
                    flush(&mut run, &mut out)?;
                    out.push_str(&pending_space);
                    run = Some((label, bytes));
                }
            }
            pending_space.clear();
            rest = &rest[used..];
            continue;
        }
        let c = rest.chars().next()?;
        if c == ' ' || c == '\t' {
            pending_space.push(c);
        } else {
            flush(&mut run, &mut out)?;
            out.push_str(&pending_space);
            pending_space.clear();
            out.push(c);
        }
        rest = &rest[c.len_utf8()..];
    }
    flush(&mut run, &mut out)?;
    out.push_str(&pending_space);
    Some(out.trim().to_string())
}

fn flush(run: &mut Option<(String, Vec<u8>)>, out: &mut String) -> Option<()> {
    if let Some((label, bytes)) = run.take() {
        out.push_str(&decode_bytes(&label, &bytes)?);
    }
    Some(())
}

/// Decodes bytes in a MIME charset (Shift_JIS as CP932).
pub fn decode_bytes(label: &str, bytes: &[u8]) -> Option<String> {
    let label = label.split('*').next().unwrap_or(label).trim();
    let lower = label.to_ascii_lowercase();
    let label = match lower.as_str() {
        "shift_jis" | "sjis" | "x-sjis" | "shift-jis" | "cp932" | "ms932" | "windows-31j" => {
            "windows-31j"
        }
        "iso-2022-jp-ms" | "cp50220" | "cp50221" | "iso-2022-jp-1" => "iso-2022-jp",
        "us-ascii" | "ascii" => "utf-8",
        other => other,
    };
    let encoding = encoding_rs::Encoding::for_label(label.as_bytes())?;
    let (text, _, _) = encoding.decode(bytes);
    Some(text.into_owned())
}

/// Parses one encoded-word at the start of `s`: (charset, decoded bytes, length consumed).
fn encoded_word(s: &str) -> Option<(String, Vec<u8>, usize)> {
    let body = s.strip_prefix("=?")?;
    let (charset, after) = body.split_once('?')?;
    let (enc, after) = after.split_once('?')?;
    let end = after.find("?=")?;
    let text = &after[..end];
    if charset.is_empty() || text.contains(' ') || charset.contains(' ') {
        return None;
    }
    let bytes = match enc {
        "B" | "b" => {
            let cleaned: String = text.chars().filter(|c| !c.is_whitespace()).collect();
            base64::engine::general_purpose::STANDARD
                .decode(cleaned.trim_end_matches('='))
                .or_else(|_| {
                    base64::engine::general_purpose::STANDARD_NO_PAD
                        .decode(cleaned.trim_end_matches('='))
                })
                .ok()?
        }
        "Q" | "q" => q_decode(text),
        _ => return None,
    };
    let used = 2 + charset.len() + 1 + enc.len() + 1 + end + 2;
    Some((charset.to_string(), bytes, used))
}

fn q_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
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

    #[test]
    fn q_escapes_before_a_multibyte_character_are_kept_literally() {
        // Sliced at byte offsets, `=` followed by あ used to panic.
        assert_eq!(q_decode("=\u{3042}=41_=4"), "=\u{3042}A =4".as_bytes());
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
