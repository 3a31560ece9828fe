//! RTF → plain text, for TNEF bodies and notices.
//!
//! Owns: reading the visible text of an RTF document: paragraphs and tabs kept, `\'hh` bytes
//! decoded in the document's code page (`\ansicpg`, CP932 by default for Japanese mail), `\uN`
//! Unicode escapes with their `\ucN` fallbacks skipped, and every destination that is not body
//! text (font and colour tables, styles, info, pictures, objects, fields' instructions, the
//! `\*` destinations Outlook's HTML encapsulation uses) left out.
//! Invariants: works on the token stream of [`super::lex`], so it sees RTF exactly as the
//! sanitizer does; never fails — what it cannot read it leaves out.

use super::{lex_partial, Token};

/// Destinations whose content is not body text.
const SKIPPED: &[&[u8]] = &[
    b"fonttbl",
    b"colortbl",
    b"stylesheet",
    b"info",
    b"pict",
    b"objdata",
    b"objclass",
    b"objname",
    b"fldinst",
    b"header",
    b"footer",
    b"headerl",
    b"headerr",
    b"footerl",
    b"footerr",
    b"listtable",
    b"listoverridetable",
    b"rsidtbl",
    b"generator",
    b"xmlnstbl",
    b"themedata",
    b"colorschememapping",
    b"datastore",
    b"latentstyles",
    b"filetbl",
    b"revtbl",
    b"pgdsctbl",
    b"bkmkstart",
    b"bkmkend",
    b"template",
];

#[derive(Clone, Copy)]
struct State {
    skip: bool,
    uc: usize,
}

/// The visible text of `rtf`.
pub fn to_text(rtf: &[u8]) -> String {
    let (tokens, _) = lex_partial(rtf);
    let mut codepage: &'static encoding_rs::Encoding = encoding_rs::SHIFT_JIS;
    let mut out = String::new();
    let mut pending: Vec<u8> = Vec::new();
    let mut stack: Vec<State> = Vec::new();
    let mut state = State { skip: false, uc: 1 };
    let mut skip_chars = 0usize;
    let mut group_start = false;
    let flush = |pending: &mut Vec<u8>, out: &mut String, cp: &'static encoding_rs::Encoding| {
        if !pending.is_empty() {
            out.push_str(&cp.decode_without_bom_handling(pending).0);
            pending.clear();
        }
    };
    for token in &tokens {
        let first = std::mem::take(&mut group_start);
        match token {
            Token::Open => {
                flush(&mut pending, &mut out, codepage);
                stack.push(state);
                group_start = true;
            }
            Token::Close => {
                flush(&mut pending, &mut out, codepage);
                state = stack.pop().unwrap_or(State { skip: false, uc: 1 });
            }
            Token::Star => {
                // `{\*\dest …}`: an ignorable destination, never body text.
                if first {
                    state.skip = true;
                }
            }
            Token::Word { name, param } => {
                if first && SKIPPED.contains(&name.as_slice()) {
                    state.skip = true;
                }
                if state.skip {
                    continue;
                }
                if skip_chars > 0 {
                    skip_chars -= 1;
                    continue;
                }
                match (name.as_slice(), *param) {
                    (b"ansicpg", Some(cp)) => {
                        flush(&mut pending, &mut out, codepage);
                        codepage = encoding_for_codepage(cp).unwrap_or(codepage);
                    }
                    (b"uc", Some(n)) => state.uc = usize::try_from(n).unwrap_or(1),
                    (b"u", Some(n)) => {
                        flush(&mut pending, &mut out, codepage);
                        let unit = if n < 0 { n + 65536 } else { n };
                        if let Some(c) = u32::try_from(unit).ok().and_then(char::from_u32) {
                            out.push(c);
                        }
                        skip_chars = state.uc;
                    }
                    (b"par" | b"line" | b"sect" | b"row", _) => {
                        flush(&mut pending, &mut out, codepage);
                        out.push('\n');
                    }
                    (b"tab" | b"cell", _) => {
                        flush(&mut pending, &mut out, codepage);
                        out.push('\t');
                    }
                    (b"emdash", _) => out.push('—'),
                    (b"endash", _) => out.push('–'),
                    (b"lquote", _) => out.push('‘'),
                    (b"rquote", _) => out.push('’'),
                    (b"ldblquote", _) => out.push('“'),
                    (b"rdblquote", _) => out.push('”'),
                    (b"bullet", _) => out.push('•'),
                    _ => {}
                }
            }
            Token::Hex(byte) => {
                if state.skip {
                    continue;
                }
                if skip_chars > 0 {
                    skip_chars -= 1;
                    continue;
                }
                pending.push(*byte);
            }
            Token::Text(bytes) => {
                if state.skip {
                    continue;
                }
                let mut bytes = &bytes[..];
                while skip_chars > 0 && !bytes.is_empty() {
                    skip_chars -= 1;
                    bytes = &bytes[1..];
                }
                // No flush: Word writes a CP932 trail byte in the ASCII range as plain text
                // right after the `\'hh` lead byte (`\'83A` is ア).
                pending.extend(bytes.iter().filter(|&&b| b != b'\r' && b != b'\n'));
            }
            Token::Symbol(c) => {
                if state.skip {
                    continue;
                }
                match c {
                    b'~' => pending.push(b' '),
                    b'-' | b'_' => pending.push(b'-'),
                    other => pending.push(*other),
                }
            }
            Token::Bin(_) => {}
        }
    }
    flush(&mut pending, &mut out, codepage);
    crate::mail::html::tidy(&out)
}

/// The encoding of a Windows code page number.
pub fn encoding_for_codepage(cp: i32) -> Option<&'static encoding_rs::Encoding> {
    Some(match cp {
        932 => encoding_rs::SHIFT_JIS,
        20932 | 51932 => encoding_rs::EUC_JP,
        50220..=50222 => encoding_rs::ISO_2022_JP,
        65001 => encoding_rs::UTF_8,
        936 => encoding_rs::GBK,
        949 => encoding_rs::EUC_KR,
        950 => encoding_rs::BIG5,
        874 => encoding_rs::WINDOWS_874,
        1250 => encoding_rs::WINDOWS_1250,
        1251 => encoding_rs::WINDOWS_1251,
        1252 => encoding_rs::WINDOWS_1252,
        1253 => encoding_rs::WINDOWS_1253,
        1254 => encoding_rs::WINDOWS_1254,
        1255 => encoding_rs::WINDOWS_1255,
        1256 => encoding_rs::WINDOWS_1256,
        1257 => encoding_rs::WINDOWS_1257,
        1258 => encoding_rs::WINDOWS_1258,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_paragraphs_code_page_bytes_and_unicode() {
        let rtf = br"{\rtf1\ansi\ansicpg932{\fonttbl{\f0 MS Gothic;}}{\*\generator x;}\f0 \'82\'b1\'82\'f1\'82\'c9\'82\'bf\'82\'cd\'83A\par \u9312?\u-28504?\tab end}";
        assert_eq!(to_text(rtf), "こんにちはア\n①\u{90A8}\tend");
    }

    #[test]
    fn leaves_out_objects_fields_and_html_tags() {
        let rtf = br"{\rtf1{\object\objemb{\*\objdata 0102}{\result shown}}{\field{\*\fldinst HYPERLINK x}{\fldrslt link}}{\*\htmltag84 <p>}body}";
        assert_eq!(to_text(rtf), "shownlinkbody");
    }
}
