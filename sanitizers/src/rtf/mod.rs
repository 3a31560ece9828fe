//! RTF: a strict tokenizer, a text reader, and (with the sanitizer) a rebuilder.
//!
//! Owns: [`lex`], which turns RTF bytes into [`Token`]s the way Word reads them — headers that
//! only start with `{\rt`, `\binN` with any length, control words up to 32 letters with
//! parameters of up to 10 digits — and refuses what Word and a scanner could read differently
//! (a `\'` without two hex digits, a `\bin` running past the end, unbalanced groups, a
//! parameter that overflows).
//! Invariants: sans-IO and allocation bounded by the input; every byte of the input is
//! accounted for by exactly one token (or is a CR/LF, which RTF ignores).
//! Must never: guess — ambiguous input is an error, and errors quarantine.

pub mod rebuild;
pub mod text;

use crate::error::{Error, Result};

/// One RTF token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    /// `{`
    Open,
    /// `}`
    Close,
    /// `\*`, marking the group's destination as ignorable.
    Star,
    /// A control word and its parameter (`\ansicpg932`, `\par`).
    Word {
        /// The letters.
        name: Vec<u8>,
        /// The numeric parameter.
        param: Option<i32>,
    },
    /// `\'hh`: one byte in the document's code page.
    Hex(u8),
    /// `\binN` data.
    Bin(Vec<u8>),
    /// A control symbol: `\~`, `\-`, `\_`, `\:`, `\|`, or an escaped `\\`, `\{`, `\}`.
    Symbol(u8),
    /// Plain text bytes (CR and LF removed).
    Text(Vec<u8>),
}

/// Tokenizes a whole document.
///
/// # Errors
/// Malformed for the ambiguities listed in the module docs.
pub fn lex(input: &[u8]) -> Result<Vec<Token>> {
    match lex_partial(input) {
        (tokens, None) => Ok(tokens),
        (_, Some(err)) => Err(err),
    }
}

/// Tokenizes as far as the input is unambiguous, returning what was read and the first error.
pub fn lex_partial(input: &[u8]) -> (Vec<Token>, Option<Error>) {
    let mut tokens = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    let mut text: Vec<u8> = Vec::new();
    macro_rules! fail {
        ($($arg:tt)*) => {{
            if !text.is_empty() {
                tokens.push(Token::Text(std::mem::take(&mut text)));
            }
            return (tokens, Some(Error::malformed(format!($($arg)*))));
        }};
    }
    while i < input.len() {
        let b = input[i];
        if !matches!(b, b'{' | b'}' | b'\\' | b'\r' | b'\n') {
            text.push(b);
            i += 1;
            continue;
        }
        if !text.is_empty() {
            tokens.push(Token::Text(std::mem::take(&mut text)));
        }
        match b {
            b'{' => {
                depth += 1;
                tokens.push(Token::Open);
                i += 1;
            }
            b'}' => {
                if depth == 0 {
                    fail!("RTF closes a group at byte {i} that was never opened");
                }
                depth -= 1;
                tokens.push(Token::Close);
                i += 1;
                if depth == 0 {
                    // After the document's last brace only whitespace and NULs may follow.
                    let rest = &input[i..];
                    if rest.iter().any(|c| !c.is_ascii_whitespace() && *c != 0) {
                        fail!("{} bytes follow the end of the RTF document", rest.len());
                    }
                    return (tokens, None);
                }
            }
            b'\r' | b'\n' => i += 1,
            _ => {
                // A backslash.
                let Some(&next) = input.get(i + 1) else {
                    fail!("RTF ends in a backslash");
                };
                if next.is_ascii_alphabetic() {
                    let start = i + 1;
                    let mut j = start;
                    while j < input.len() && input[j].is_ascii_alphabetic() {
                        j += 1;
                    }
                    if j - start > 32 {
                        fail!("RTF control word longer than 32 letters at byte {i}");
                    }
                    let name = input[start..j].to_vec();
                    let mut param = None;
                    let num_start = j;
                    if input.get(j) == Some(&b'-') {
                        j += 1;
                    }
                    let digits_start = j;
                    while j < input.len() && input[j].is_ascii_digit() {
                        j += 1;
                    }
                    if j > digits_start {
                        if j - digits_start > 10 {
                            fail!("RTF parameter longer than 10 digits at byte {i}");
                        }
                        let Some(value) = std::str::from_utf8(&input[num_start..j])
                            .ok()
                            .and_then(|s| s.parse::<i64>().ok())
                            .and_then(|v| i32::try_from(v).ok())
                        else {
                            fail!("RTF parameter out of range at byte {i}");
                        };
                        param = Some(value);
                    } else {
                        j = num_start; // a lone '-' is text, not a sign
                    }
                    if input.get(j) == Some(&b' ') {
                        j += 1;
                    }
                    if name == b"bin" {
                        let len = param.unwrap_or(0);
                        let Ok(len) = usize::try_from(len) else {
                            fail!("RTF \\bin with a negative length at byte {i}");
                        };
                        let Some(data) = j.checked_add(len).and_then(|end| input.get(j..end))
                        else {
                            fail!("RTF \\bin{len} runs past the end of the file");
                        };
                        tokens.push(Token::Bin(data.to_vec()));
                        i = j + len;
                        continue;
                    }
                    tokens.push(Token::Word { name, param });
                    i = j;
                } else if next == b'\'' {
                    let hex = input.get(i + 2..i + 4).and_then(|h| {
                        std::str::from_utf8(h)
                            .ok()
                            .and_then(|h| u8::from_str_radix(h, 16).ok())
                    });
                    let Some(byte) = hex else {
                        fail!("RTF \\' without two hex digits at byte {i}");
                    };
                    tokens.push(Token::Hex(byte));
                    i += 4;
                } else if next == b'*' {
                    tokens.push(Token::Star);
                    i += 2;
                } else if next == b'\r' || next == b'\n' {
                    tokens.push(Token::Word {
                        name: b"par".to_vec(),
                        param: None,
                    });
                    i += 2;
                } else {
                    tokens.push(Token::Symbol(next));
                    i += 2;
                }
            }
        }
    }
    if !text.is_empty() {
        tokens.push(Token::Text(text));
    }
    (
        tokens,
        Some(Error::malformed(format!(
            "RTF ends with {depth} group(s) still open"
        ))),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizes_words_hex_bin_and_symbols() {
        let tokens = lex(b"{\\rtf1\\ansi \\'82\\'a0{\\*\\x y}\\bin3 a}b\\{\\par}").unwrap();
        assert_eq!(tokens[0], Token::Open);
        assert_eq!(
            tokens[1],
            Token::Word {
                name: b"rtf".to_vec(),
                param: Some(1)
            }
        );
        assert!(tokens.contains(&Token::Hex(0x82)));
        assert!(tokens.contains(&Token::Bin(b"a}b".to_vec())));
        assert!(tokens.contains(&Token::Symbol(b'{')));
        assert!(tokens.contains(&Token::Star));
    }

    #[test]
    fn refuses_ambiguous_input() {
        for bad in [
            &b"{\\rtf1 \\'zz}"[..],
            b"{\\rtf1 \\bin99 ab}",
            b"{\\rtf1 }}",
            b"{\\rtf1 {",
            b"{\\rtf1 \\u99999999999 }",
            b"{\\rtf1 }trailing",
        ] {
            assert!(lex(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
