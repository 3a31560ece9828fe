//! RFC 2047 header decoding that joins adjacent encoded-words before decoding.
//!
//! Owns: decoding unstructured header text (Subject) so that a multi-byte character split
//! across two encoded-words (common in Japanese subjects from some mailers) comes out whole.
//! Invariants: adjacent encoded-words with the same charset are joined as bytes, then decoded
//! once; whitespace between encoded-words is dropped (RFC 2047 §6.2); Shift_JIS is decoded as
//! CP932 and ISO-2022-JP with its CP50220 extensions (encoding_rs follows WHATWG, whose tables
//! include NEC row 13 and the IBM extensions); bytes that do not decode become U+FFFD.

use base64::Engine;

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
            b'=' if i + 2 < bytes.len() => match u8::from_str_radix(&text[i + 1..i + 3], 16) {
                Ok(v) => {
                    out.push(v);
                    i += 2;
                }
                Err(_) => out.push(b'='),
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
