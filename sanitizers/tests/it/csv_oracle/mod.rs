//! An independent reading of a CSV the way every spreadsheet might read it, for the property
//! test in `text.rs` and the `csv` fuzz target: the cells that would still be formulas.
//!
//! Written apart from the sanitizer (characters, not bytes; one state machine) so that the
//! property checks the rule, not the implementation: under every split — comma, semicolon,
//! tab, a `sep=` first line; quotes opening a field only at its start or also after spaces —
//! no cell may begin, after whitespace and quotes, with `= + - @` or a fullwidth or small
//! form of them, unless it is an inert number.
#![allow(dead_code)]

/// Characters that start a formula.
pub const TRIGGERS: &[char] = &[
    '=', '+', '-', '@', '＝', '＋', '－', '＠', '﹦', '﹢', '﹣', '﹫', '\u{2212}',
];

/// Every (delimiter, raw cell) that a reader would take for a formula.
pub fn formula_cells(text: &str) -> Vec<(char, String)> {
    let mut delimiters = vec![',', ';', '\t'];
    let first = text.split(['\r', '\n']).next().unwrap_or("");
    for line in [
        first,
        first.trim_matches(|c: char| c.is_whitespace() || c == '"'),
    ] {
        let chars: Vec<char> = line.chars().collect();
        if chars.len() == 5 {
            let head: String = chars[..4].iter().collect();
            if head.eq_ignore_ascii_case("sep=") && !delimiters.contains(&chars[4]) {
                delimiters.push(chars[4]);
            }
        }
    }
    let mut found = Vec::new();
    for &d in &delimiters {
        for quote_after_space in [false, true] {
            for cell in split(text, d, quote_after_space) {
                if is_formula(&cell) {
                    found.push((d, cell));
                }
            }
        }
    }
    found
}

#[derive(PartialEq)]
enum State {
    /// At a cell's start (only spaces seen, when they may precede a quote).
    Start,
    Quoted,
    Unquoted,
}

/// The raw cells of `text` under one split (quotes kept, delimiters and line ends dropped).
pub fn split(text: &str, d: char, quote_after_space: bool) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut cells = Vec::new();
    let mut cell = String::new();
    let mut state = State::Start;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let ends = state != State::Quoted && (c == d || c == '\r' || c == '\n');
        if ends {
            cells.push(std::mem::take(&mut cell));
            state = State::Start;
        } else {
            cell.push(c);
            state = match state {
                State::Start if c == '"' => State::Quoted,
                State::Start if quote_after_space && (c == ' ' || c == '\t') => State::Start,
                State::Start => State::Unquoted,
                State::Quoted if c == '"' && chars.get(i + 1) == Some(&'"') => {
                    cell.push('"');
                    i += 1;
                    State::Quoted
                }
                State::Quoted if c == '"' => State::Unquoted,
                other => other,
            };
        }
        i += 1;
    }
    cells.push(cell);
    cells
}

fn is_padding(c: char) -> bool {
    c.is_whitespace() || c == '"' || c == '\u{FEFF}' || c == '\u{200B}'
}

/// A cell that starts, after whitespace and quotes, with a trigger and is not an inert number.
pub fn is_formula(cell: &str) -> bool {
    let value = cell.trim_start_matches(is_padding);
    match value.chars().next() {
        Some(c) if TRIGGERS.contains(&c) => !inert_number(value.trim_end_matches(is_padding)),
        _ => false,
    }
}

/// `-12`, `+3.5e4`; or such a number cut off by `,` `;` tab or `"` with no `(`, `|`, `!` or `[`
/// after it (nothing a spreadsheet could call).
fn inert_number(value: &str) -> bool {
    let cut = value
        .char_indices()
        .find(|&(_, c)| matches!(c, ',' | ';' | '\t' | '"'))
        .map_or(value.len(), |(i, _)| i);
    let (number, rest) = value.split_at(cut);
    number_syntax(number.trim_end()) && !rest.chars().any(|c| matches!(c, '(' | '|' | '!' | '['))
}

fn number_syntax(s: &str) -> bool {
    let s = s.strip_prefix(['+', '-']).unwrap_or(s);
    let (mantissa, exponent) = match s.split_once(['e', 'E']) {
        Some((m, e)) => (m, Some(e)),
        None => (s, None),
    };
    let digits = mantissa.chars().filter(|c| c.is_ascii_digit()).count();
    let dots = mantissa.chars().filter(|&c| c == '.').count();
    let mantissa_ok = digits > 0 && digits + dots == mantissa.chars().count() && dots <= 1;
    let exponent_ok = match exponent {
        None => true,
        Some(e) => {
            let e = e.strip_prefix(['+', '-']).unwrap_or(e);
            !e.is_empty() && e.chars().all(|c| c.is_ascii_digit())
        }
    };
    mantissa_ok && exponent_ok
}
