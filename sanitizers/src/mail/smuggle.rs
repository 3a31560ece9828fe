//! Files hidden in body text: found, cut out, and handed back to go through the registry.
//!
//! Owns: the scan of every text body about to be delivered (plain text, HTML rendered as text,
//! text/enriched, reports, quoted messages) for content that is a file rather than words:
//! uuencode (`begin 644 …` with three- or four-digit modes, and `begin-base64`), yEnc
//! (`=ybegin … =yend`), BinHex 4.0, runs of base64 lines, and MIME structure (a boundary line
//! followed by part headers — what a malformed header block turns a whole multipart into).
//! Invariants: what is cut out never stays in the text, whether or not it decodes; every cut is
//! returned so the caller can put it through the registry (or hold the message) and list it in
//! the notice; text that is none of these comes back unchanged.
//! Must never: leave the bytes of a removed part in the delivered text, encoded in any form.

/// Something found in a text body.
#[derive(Debug, PartialEq, Eq)]
pub enum Embedded {
    /// A file decoded from uuencode, yEnc or a base64 block.
    File {
        /// Its name, from the `begin`/`=ybegin` line, or a made-up one for a base64 block.
        name: String,
        /// The decoded bytes.
        bytes: Vec<u8>,
    },
    /// BinHex 4.0, which is not decoded: cut out and reported as removed.
    BinHex {
        /// The name on the BinHex header, when it could be read; else empty.
        name: String,
        /// The encoded text as it was (for the report's size and hash).
        encoded: Vec<u8>,
    },
    /// MIME parts inside the text: the boundary and the text from the first boundary line.
    Mime {
        /// The boundary (without the leading `--`).
        boundary: String,
        /// The text from the first boundary line to the end of the structure.
        body: String,
    },
}

/// Lines of base64 in a row (each at least [`BASE64_MIN_LINE`] long) that make a block.
const BASE64_MIN_LINES: usize = 4;
const BASE64_MIN_LINE: usize = 40;

/// Cuts every embedded file and MIME structure out of `text`.
pub fn extract(text: &str) -> (String, Vec<Embedded>) {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let mut out = String::with_capacity(text.len());
    let mut found = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = trim_eol(lines[i]);
        if let Some(name) = uuencode_begin(line) {
            let (bytes, next) = uudecode(&lines, i + 1);
            found.push(Embedded::File { name, bytes });
            i = next;
            continue;
        }
        if let Some(name) = base64_begin(line) {
            let mut encoded = String::new();
            let mut j = i + 1;
            while j < lines.len() && trim_eol(lines[j]) != "====" {
                encoded.push_str(trim_eol(lines[j]));
                j += 1;
            }
            let bytes = crate::util::base64_lenient(encoded.as_bytes());
            found.push(Embedded::File { name, bytes });
            i = (j + 1).min(lines.len());
            continue;
        }
        if let Some(name) = ybegin(line) {
            let (bytes, next) = ydecode(&lines, i + 1);
            found.push(Embedded::File { name, bytes });
            i = next;
            continue;
        }
        if contains_ignore_case(line.as_bytes(), b"(this file must be converted with binhex") {
            let (name, encoded, next) = binhex_block(&lines, i);
            found.push(Embedded::BinHex { name, encoded });
            i = next;
            continue;
        }
        if let Some(boundary) = mime_boundary_at(&lines, i) {
            let close = format!("--{boundary}--");
            let mut j = i;
            let mut body = String::new();
            while j < lines.len() {
                body.push_str(lines[j]);
                j += 1;
                if trim_eol(lines[j - 1]).trim_end() == close {
                    break;
                }
            }
            found.push(Embedded::Mime { boundary, body });
            i = j;
            continue;
        }
        let run = base64_run(&lines, i);
        if run >= BASE64_MIN_LINES {
            let encoded: String = lines[i..i + run].iter().map(|l| trim_eol(l)).collect();
            let bytes = crate::util::base64_lenient(encoded.as_bytes());
            found.push(Embedded::File {
                name: format!("本文中のデータ{}.bin", found.len() + 1),
                bytes,
            });
            i += run;
            continue;
        }
        out.push_str(lines[i]);
        i += 1;
    }
    (out, found)
}

fn contains_ignore_case(hay: &[u8], needle: &[u8]) -> bool {
    hay.len() >= needle.len()
        && hay
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
}

fn trim_eol(line: &str) -> &str {
    line.trim_end_matches(['\n', '\r'])
}

/// `begin 644 name` / `begin 0755 name` (three or four octal digits, as uuencode writes them).
fn uuencode_begin(line: &str) -> Option<String> {
    let rest = line.strip_prefix("begin ")?;
    let (mode, name) = rest.trim_start().split_once(' ')?;
    let octal = (3..=4).contains(&mode.len()) && mode.bytes().all(|b| (b'0'..=b'7').contains(&b));
    octal.then(|| name.trim().to_string())
}

/// `begin-base64 644 name` (POSIX uuencode -m).
fn base64_begin(line: &str) -> Option<String> {
    let rest = line.strip_prefix("begin-base64 ")?;
    let (mode, name) = rest.trim_start().split_once(' ')?;
    let octal = (3..=4).contains(&mode.len()) && mode.bytes().all(|b| (b'0'..=b'7').contains(&b));
    octal.then(|| name.trim().to_string())
}

/// Decodes uuencoded lines from `start` to the `end` line; returns bytes and the next line.
fn uudecode(lines: &[&str], start: usize) -> (Vec<u8>, usize) {
    let mut out = Vec::new();
    let mut i = start;
    while i < lines.len() {
        let line = trim_eol(lines[i]);
        i += 1;
        if line.trim_end() == "end" {
            break;
        }
        let bytes = line.as_bytes();
        let Some(&first) = bytes.first() else {
            continue;
        };
        let len = (first.wrapping_sub(b' ') & 0x3F) as usize;
        let data: Vec<u8> = bytes[1..]
            .iter()
            .map(|b| b.wrapping_sub(b' ') & 0x3F)
            .collect();
        let mut decoded = Vec::with_capacity(len + 3);
        for group in data.chunks(4) {
            let g = |k: usize| group.get(k).copied().unwrap_or(0);
            decoded.push((g(0) << 2) | (g(1) >> 4));
            decoded.push((g(1) << 4) | (g(2) >> 2));
            decoded.push((g(2) << 6) | g(3));
        }
        decoded.truncate(len);
        out.extend_from_slice(&decoded);
    }
    (out, i)
}

/// `=ybegin line=128 size=… name=file.exe`.
fn ybegin(line: &str) -> Option<String> {
    let rest = line.strip_prefix("=ybegin ")?;
    let name = rest.split_once("name=").map(|(_, n)| n.trim().to_string());
    Some(
        name.filter(|n| !n.is_empty())
            .unwrap_or_else(|| "yenc.bin".into()),
    )
}

/// Decodes yEnc lines up to `=yend`; returns bytes and the next line.
fn ydecode(lines: &[&str], start: usize) -> (Vec<u8>, usize) {
    let mut out = Vec::new();
    let mut i = start;
    while i < lines.len() {
        let line = trim_eol(lines[i]);
        i += 1;
        if line.starts_with("=yend") {
            break;
        }
        if line.starts_with("=ypart ") {
            continue;
        }
        // yEnc is 8-bit: the text was decoded from bytes already, so each character is
        // mapped back to the byte it was read from (Latin-1, or windows-1252 for 0x80–0x9F).
        let mut bytes = line.chars().map(char_byte);
        while let Some(b) = bytes.next() {
            if b == b'=' {
                if let Some(next) = bytes.next() {
                    out.push(next.wrapping_sub(64).wrapping_sub(42));
                }
            } else {
                out.push(b.wrapping_sub(42));
            }
        }
    }
    (out, i)
}

/// The byte a character was decoded from by a single-byte decoder.
fn char_byte(c: char) -> u8 {
    if let Ok(b) = u8::try_from(u32::from(c)) {
        return b;
    }
    let mut buf = [0u8; 4];
    let (bytes, _, unmappable) = encoding_rs::WINDOWS_1252.encode(c.encode_utf8(&mut buf));
    match bytes.first() {
        Some(&b) if !unmappable => b,
        _ => b'?',
    }
}

/// A BinHex block: the announcement line, then data from a line starting with `:` to the next
/// `:` that ends a line. Returns (name, encoded text, next line).
fn binhex_block(lines: &[&str], start: usize) -> (String, Vec<u8>, usize) {
    let mut encoded = Vec::new();
    let mut i = start + 1;
    let mut in_data = false;
    while i < lines.len() {
        let line = trim_eol(lines[i]);
        i += 1;
        if !in_data {
            if line.starts_with(':') {
                in_data = true;
            } else if line.trim().is_empty() {
                continue;
            } else {
                // No data after the announcement: only the line itself goes.
                i -= 1;
                break;
            }
        }
        encoded.extend_from_slice(line.as_bytes());
        if in_data && line.len() > 1 && line.ends_with(':') {
            break;
        }
    }
    (String::new(), encoded, i)
}

/// A MIME boundary line at `i` followed by part headers: `--X` then `Content-Type:` (or
/// another `Content-` field) on the next non-empty line.
fn mime_boundary_at(lines: &[&str], i: usize) -> Option<String> {
    let line = trim_eol(lines[i]).trim_end();
    let boundary = line.strip_prefix("--")?;
    if boundary.is_empty()
        || boundary.len() > 200
        || boundary.ends_with("--")
        || boundary
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
    {
        return None;
    }
    let next = lines.get(i + 1).map(|l| trim_eol(l))?;
    let lower = next.to_ascii_lowercase();
    [
        "content-type:",
        "content-transfer-encoding:",
        "content-disposition:",
    ]
    .iter()
    .any(|h| lower.starts_with(h))
    .then(|| boundary.to_string())
}

/// How many lines from `i` on are base64 (the alphabet only, at least [`BASE64_MIN_LINE`] long,
/// the last one may be shorter or padded).
fn base64_run(lines: &[&str], i: usize) -> usize {
    let is_b64 = |l: &str| {
        !l.is_empty()
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
            && !l.trim_end_matches('=').contains('=')
    };
    let mut n = 0;
    while let Some(line) = lines.get(i + n) {
        let line = trim_eol(line).trim_end();
        if !is_b64(line) {
            break;
        }
        if line.len() < BASE64_MIN_LINE {
            // A short line ends the block, and belongs to it when the block is long enough and
            // the line looks like a base64 tail (padding, or a whole group of mixed symbols).
            let tail = line.ends_with('=')
                || (line.len().is_multiple_of(4)
                    && line.len() >= 4
                    && line
                        .bytes()
                        .any(|b| b.is_ascii_digit() || b.is_ascii_uppercase()));
            if n >= BASE64_MIN_LINES - 1 && tail {
                n += 1;
            }
            break;
        }
        n += 1;
    }
    // Base64 of words has mixed case and digits; a run of one letter ("=====", "-----") or
    // of plain words is not data.
    if n > 0 {
        let sample = trim_eol(lines[i]);
        let lower = sample.bytes().any(|b| b.is_ascii_lowercase());
        let upper = sample.bytes().any(|b| b.is_ascii_uppercase());
        if !(lower && upper) {
            return 0;
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn files(found: &[Embedded]) -> Vec<(&str, &[u8])> {
        found
            .iter()
            .filter_map(|e| match e {
                Embedded::File { name, bytes } => Some((name.as_str(), bytes.as_slice())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn cuts_uuencode_with_three_and_four_digit_modes() {
        for begin in ["begin 644 a.txt", "begin 0755 a.txt"] {
            let text = format!("前文\n{begin}\n#86)C\n`\nend\n後文\n");
            let (rest, found) = extract(&text);
            assert_eq!(rest, "前文\n後文\n");
            assert_eq!(files(&found), vec![("a.txt", &b"abc"[..])]);
        }
    }

    #[test]
    fn cuts_begin_base64_and_yenc() {
        let text = "x\nbegin-base64 644 b.bin\nTVqQAAMAAAAEAAAA\n====\ny\n";
        let (rest, found) = extract(text);
        assert_eq!(rest, "x\ny\n");
        assert_eq!(files(&found)[0].1[..2], *b"MZ");
        let encoded: Vec<u8> = b"MZ\x90\x00".iter().map(|b| b.wrapping_add(42)).collect();
        let mut line = String::new();
        for b in encoded {
            if matches!(b, 0 | b'\n' | b'\r' | b'=') {
                line.push('=');
                line.push(char::from(b.wrapping_add(64)));
            } else {
                // As a Latin-1 decoder of the body would have read the byte.
                line.push(char::from(b));
            }
        }
        let text = format!("a\n=ybegin line=128 size=4 name=evil.exe\n{line}\n=yend size=4\nb\n");
        let (rest, found) = extract(&text);
        assert_eq!(rest, "a\nb\n");
        assert_eq!(files(&found), vec![("evil.exe", &b"MZ\x90\x00"[..])]);
    }

    #[test]
    fn cuts_binhex_and_base64_runs() {
        let text = "(This file must be converted with BinHex 4.0)\n:$f*TEQKPH#jdCA0d,R0TG!\"6594%8dP8)3#3\"!%!N!-\n!*!%:\nbye\n";
        let (rest, found) = extract(text);
        assert_eq!(rest, "bye\n");
        assert!(matches!(found[0], Embedded::BinHex { .. }));

        let payload: Vec<u8> = (0..600u32).map(|i| (i * 7 % 251) as u8).collect();
        let b64 = base64::engine::general_purpose::STANDARD.encode(&payload);
        let block: String = b64
            .as_bytes()
            .chunks(76)
            .map(|c| format!("{}\n", String::from_utf8_lossy(c)))
            .collect();
        let (rest, found) = extract(&format!("hello\n{block}bye\n"));
        assert_eq!(rest, "hello\nbye\n");
        assert_eq!(files(&found)[0].1, payload.as_slice());
    }

    #[test]
    fn finds_mime_structure_in_text() {
        let text = "intro\n--XYZ\nContent-Type: application/octet-stream; name=a.exe\nContent-Transfer-Encoding: base64\n\nTVqQ\n--XYZ--\nafter\n";
        let (rest, found) = extract(text);
        assert_eq!(rest, "intro\nafter\n");
        assert!(
            matches!(&found[0], Embedded::Mime { boundary, body } if boundary == "XYZ" && body.contains("TVqQ"))
        );
    }

    #[test]
    fn leaves_ordinary_text_alone() {
        let text = "-- \n署名\n----------\n==========\nABCDEFGHIJKLMNOPQRSTUVWXYZABCDEFGHIJKLMNOPQRSTUVWXYZ\nbegin the meeting at 10\nURL: https://example.invalid/a\n";
        let (rest, found) = extract(text);
        assert_eq!(rest, text);
        assert!(found.is_empty());
    }
}
