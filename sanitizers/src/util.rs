//! Small helpers shared by the format modules.

/// Decodes `%XX` escapes (RFC 3986 / RFC 2231); anything else, including a malformed escape,
/// is kept as is.
pub(crate) fn percent_decode(s: &str) -> Vec<u8> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            if let Some(v) = hex_pair(bytes, i + 1) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// The byte written as two hex digits at `bytes[at..at + 2]`, if they are there. Reads bytes,
/// not a string slice: the escape may be followed by a multi-byte character, and
/// `from_str_radix` would also accept a sign (`%+f`).
pub(crate) fn hex_pair(bytes: &[u8], at: usize) -> Option<u8> {
    let digit = |i: usize| char::from(*bytes.get(i)?).to_digit(16);
    Some((digit(at)? << 4 | digit(at.checked_add(1)?)?) as u8)
}

/// A value shown in a report: control characters dropped, at most 200 characters.
pub(crate) fn short(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(200).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn decodes_escapes_and_keeps_the_rest() {
        assert_eq!(
            super::percent_decode("a%20b%E8%A8%88%zz%"),
            b"a b\xE8\xA8\x88%zz%"
        );
        // Found by fuzzing: a `%` before a multi-byte character used to panic.
        assert_eq!(
            super::percent_decode("%\u{e9}t%+f%4"),
            "%\u{e9}t%+f%4".as_bytes()
        );
        assert_eq!(super::percent_decode("%41"), b"A");
    }
}

/// Base64 as mail clients read it: characters outside the alphabet (line breaks, spaces, stray
/// punctuation) are skipped, and a final group without its padding still yields its bytes
/// (Python, Thunderbird and Outlook all keep them; a strict decoder would drop the last one or
/// two bytes of many bodies). Padding ends the data unless only more base64 follows
/// (concatenated encodings): a mailing list's footer appended after a base64 body is not data.
pub(crate) fn base64_lenient(input: &[u8]) -> Vec<u8> {
    // 0xFF: not in the alphabet.
    const TABLE: [u8; 256] = {
        let mut t = [0xFFu8; 256];
        let mut i = 0;
        while i < 26 {
            t[b'A' as usize + i] = i as u8;
            t[b'a' as usize + i] = 26 + i as u8;
            i += 1;
        }
        let mut d = 0;
        while d < 10 {
            t[b'0' as usize + d] = 52 + d as u8;
            d += 1;
        }
        t[b'+' as usize] = 62;
        t[b'/' as usize] = 63;
        t
    };
    let value = |b: u8| {
        let v = TABLE[b as usize];
        (v != 0xFF).then_some(u32::from(v))
    };
    let mut out = Vec::with_capacity(input.len() / 4 * 3 + 3);
    let (mut acc, mut n) = (0u32, 0u8);
    let flush = |acc: u32, n: u8, out: &mut Vec<u8>| match n {
        2 => out.push((acc >> 4) as u8),
        3 => {
            out.push((acc >> 10) as u8);
            out.push((acc >> 2) as u8);
        }
        _ => {}
    };
    // Where the data certainly ends: the last byte that is neither base64, padding nor white
    // space (found once, so a body of many padded groups stays linear).
    let last_other = input
        .iter()
        .rposition(|&c| !(c.is_ascii_whitespace() || c == b'=' || value(c).is_some()));
    for (i, &b) in input.iter().enumerate() {
        if b == b'=' {
            flush(acc, n, &mut out);
            (acc, n) = (0, 0);
            if last_other.is_some_and(|p| p > i) {
                return out;
            }
            continue;
        }
        let Some(v) = value(b) else { continue };
        acc = (acc << 6) | v;
        n += 1;
        if n == 4 {
            out.extend_from_slice(&[(acc >> 16) as u8, (acc >> 8) as u8, acc as u8]);
            (acc, n) = (0, 0);
        }
    }
    flush(acc, n, &mut out);
    out
}

#[cfg(test)]
mod base64_tests {
    use super::base64_lenient;

    #[test]
    fn keeps_the_bytes_of_an_unpadded_final_group() {
        assert_eq!(base64_lenient(b"eHB0bw"), b"xpto");
        assert_eq!(base64_lenient(b"eHB0b28"), b"xpto\x6f"[..5].to_vec());
        assert_eq!(base64_lenient(b"eHB0bw=="), b"xpto");
        assert_eq!(base64_lenient(b"eHB0\r\nbw\r\n"), b"xpto");
        assert_eq!(base64_lenient(b"eA==eA=="), b"xx");
        assert_eq!(base64_lenient(b""), b"");
        // A list footer after the padding is not part of the data.
        assert_eq!(
            base64_lenient(b"eHB0bw==\r\n\r\n___\r\nlist@example.invalid\r\n"),
            b"xpto"
        );
    }
}
