//! Small helpers shared by the format modules.

/// Decodes `%XX` escapes (RFC 3986 / RFC 2231); anything else, including a malformed escape,
/// is kept as is.
pub(crate) fn percent_decode(s: &str) -> Vec<u8> {
    // Bytes, not string slices: a `%` may be followed by a multi-byte character, and
    // `from_str_radix` would also take a sign (`%+f`).
    fn hex(b: Option<&u8>) -> Option<u8> {
        char::from(*b?).to_digit(16).map(|d| d as u8)
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            if let (Some(high), Some(low)) = (hex(bytes.get(i + 1)), hex(bytes.get(i + 2))) {
                out.push(high << 4 | low);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
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
