//! Small helpers shared by the format modules.

/// Decodes `%XX` escapes (RFC 3986 / RFC 2231); anything else, including a malformed escape,
/// is kept as is.
pub(crate) fn percent_decode(s: &str) -> Vec<u8> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
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
    }
}
