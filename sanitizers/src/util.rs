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
