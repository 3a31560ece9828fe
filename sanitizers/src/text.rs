//! Plain text and CSV.
//!
//! Owns: deciding which encoding a text file is in (UTF-8 with or without BOM, UTF-16 with BOM,
//! ISO-2022-JP, CP932, EUC-JP), validating that every byte decodes in it, and neutralising CSV
//! cells a spreadsheet would run as a formula (`=`, `+`, `-`, `@` and their fullwidth forms,
//! after any leading whitespace or quotes) under any split Excel or LibreOffice could apply
//! (comma, semicolon, tab, a `sep=` first line).
//! Invariants: text is delivered byte for byte as it came (機種依存文字 in CP932 must survive, so
//! nothing is re-encoded), and only after the whole file decoded without a single replacement
//! character and without control characters a terminal or viewer would act on (one trailing DOS
//! EOF byte 0x1A aside). CSV is rewritten only by inserting `'` before a trigger character, at
//! a byte offset that is a character boundary in the file's own encoding, so the rest of every
//! line stays as it was; `'` is structural under no split, so a second pass finds nothing.
//! Must never: guess an encoding from a declared charset, or deliver text that only decoded
//! with replacements.

use std::borrow::Cow;

use encoding_rs::{Encoding, EUC_JP, ISO_2022_JP, SHIFT_JIS, UTF_8};

use crate::error::{Error, Result};
use crate::kind::FileKind;
use crate::registry::{Context, Sanitized, Sanitizer};
use crate::report::What;

/// Validates text and rebuilds CSV.
pub struct TextSanitizer;

impl Sanitizer for TextSanitizer {
    fn kinds(&self) -> &'static [FileKind] {
        &[FileKind::Csv]
    }

    fn validates(&self) -> &'static [FileKind] {
        &[FileKind::Text, FileKind::Csv]
    }

    fn validate(&self, input: &[u8], kind: FileKind, cx: &mut Context<'_>) -> Result<()> {
        let decoded = decode(input)?;
        cx.warn(format!("encoding: {}", decoded.encoding.label()));
        if kind == FileKind::Csv {
            let cells = trigger_cells(&decoded.text, Some(&*cx))?;
            if let Some(cell) = cells.first() {
                return Err(Error::unsupported(format!(
                    "{} cell(s) a spreadsheet would run as a formula, first at {}",
                    cells.len(),
                    cell.location()
                )));
            }
        }
        Ok(())
    }

    fn sanitize(&self, input: &[u8], kind: FileKind, cx: &mut Context<'_>) -> Result<Sanitized> {
        if kind != FileKind::Csv {
            return Err(Error::unsupported(format!(
                "{kind} is validated, not rebuilt"
            )));
        }
        let decoded = decode(input)?;
        if !cx.is_recheck() {
            cx.warn(format!("encoding: {}", decoded.encoding.label()));
        }
        let cells = trigger_cells(&decoded.text, Some(&*cx))?;
        if !cells.is_empty() && !cx.policy().csv_neutralize_formulas {
            return Err(Error::unsupported(format!(
                "{} cell(s) a spreadsheet would run as a formula (neutralising is off)",
                cells.len()
            )));
        }
        for cell in &cells {
            cx.check_deadline()?;
            let what = if cell.dde { What::Dde } else { What::Formula };
            cx.remove(what, cell.location(), cell.preview.clone());
        }
        let bytes = neutralize(input, &decoded, &cells)?;
        Ok(Sanitized::new(bytes, FileKind::Csv))
    }
}

/// A text encoding mukaika can validate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TextEncoding {
    Utf8,
    Utf8Bom,
    Utf16Le,
    Utf16Be,
    Iso2022Jp,
    Cp932,
    EucJp,
}

impl TextEncoding {
    fn label(self) -> &'static str {
        match self {
            TextEncoding::Utf8 => "UTF-8",
            TextEncoding::Utf8Bom => "UTF-8 (BOM)",
            TextEncoding::Utf16Le => "UTF-16LE (BOM)",
            TextEncoding::Utf16Be => "UTF-16BE (BOM)",
            TextEncoding::Iso2022Jp => "ISO-2022-JP",
            TextEncoding::Cp932 => "Shift_JIS (CP932)",
            TextEncoding::EucJp => "EUC-JP",
        }
    }
}

/// A file decoded without replacements.
struct Decoded<'a> {
    encoding: TextEncoding,
    text: Cow<'a, str>,
}

/// Decodes `input` in the one encoding it is valid in.
///
/// # Errors
/// Malformed when no supported encoding decodes it cleanly, or when it holds control characters.
fn decode(input: &[u8]) -> Result<Decoded<'_>> {
    // One trailing SUB (0x1A) is the DOS end-of-file mark old Japanese editors and exports
    // still write; it ends the text rather than being part of it, and it is delivered as is.
    let wide = input.starts_with(b"\xFF\xFE") || input.starts_with(b"\xFE\xFF");
    let input = match input.strip_suffix(b"\x1A") {
        Some(body) if !wide => body,
        _ => input,
    };
    let (encoding, text) = if let Some(rest) = input.strip_prefix(b"\xEF\xBB\xBF") {
        (TextEncoding::Utf8Bom, strict(UTF_8, rest))
    } else if let Some(rest) = input.strip_prefix(b"\xFF\xFE") {
        (TextEncoding::Utf16Le, utf16(rest, u16::from_le_bytes))
    } else if let Some(rest) = input.strip_prefix(b"\xFE\xFF") {
        (TextEncoding::Utf16Be, utf16(rest, u16::from_be_bytes))
    } else if let Ok(text) = std::str::from_utf8(input) {
        if text.contains('\u{1b}') {
            // Seven-bit with escape sequences: ISO-2022-JP (ESC is otherwise refused below).
            (TextEncoding::Iso2022Jp, strict(ISO_2022_JP, input))
        } else {
            (TextEncoding::Utf8, Some(Cow::Borrowed(text)))
        }
    } else {
        japanese_legacy(input)
    };
    let text = text.ok_or_else(|| {
        Error::malformed(format!(
            "the text does not decode cleanly as {} (or any other supported encoding)",
            encoding.label()
        ))
    })?;
    if let Some((line, c)) = control_character(&text) {
        return Err(Error::malformed(format!(
            "control character U+{:04X} on line {line}",
            c as u32
        )));
    }
    Ok(Decoded { encoding, text })
}

/// Decodes a text-like file (HTML, for instance) in the one encoding it is valid in.
///
/// # Errors
/// As for text files: no clean decoding, or control characters.
pub(crate) fn decode_strict(input: &[u8]) -> Result<String> {
    decode(input).map(|d| d.text.into_owned())
}

fn strict<'a>(encoding: &'static Encoding, bytes: &'a [u8]) -> Option<Cow<'a, str>> {
    encoding.decode_without_bom_handling_and_without_replacement(bytes)
}

fn utf16(bytes: &[u8], unit: fn([u8; 2]) -> u16) -> Option<Cow<'static, str>> {
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    let units = bytes.chunks_exact(2).map(|c| unit([c[0], c[1]]));
    char::decode_utf16(units)
        .collect::<std::result::Result<String, _>>()
        .ok()
        .map(Cow::Owned)
}

/// CP932 or EUC-JP: whichever decodes cleanly; when both do, the reading with fewer half-width
/// katakana (EUC-JP read as CP932 turns into runs of them).
fn japanese_legacy(input: &[u8]) -> (TextEncoding, Option<Cow<'_, str>>) {
    let sjis = strict(SHIFT_JIS, input);
    let euc = strict(EUC_JP, input);
    let halfwidth = |t: &str| {
        t.chars()
            .filter(|c| ('\u{FF61}'..='\u{FF9F}').contains(c))
            .count()
    };
    match (sjis, euc) {
        (Some(s), Some(e)) if halfwidth(&e) < halfwidth(&s) => (TextEncoding::EucJp, Some(e)),
        (Some(s), _) => (TextEncoding::Cp932, Some(s)),
        (None, Some(e)) => (TextEncoding::EucJp, Some(e)),
        (None, None) => (TextEncoding::Cp932, None),
    }
}

/// The first C0/C1 control other than tab, LF, CR and form feed, with its line number.
fn control_character(text: &str) -> Option<(usize, char)> {
    let mut line = 1;
    for c in text.chars() {
        if c == '\n' {
            line += 1;
        } else if (c.is_control() && !matches!(c, '\t' | '\r' | '\u{0C}' | '\u{7F}'))
            || c == '\u{FEFF}' && line > 1
        {
            return Some((line, c));
        }
    }
    None
}

/// One way a spreadsheet may cut the text into cells.
///
/// Excel and LibreOffice do not agree on how to split a CSV, and neither asks the sender: Excel
/// honours a first-line `sep=X`, otherwise uses the list separator of the reader's locale (`,`
/// in Japan, `;` in much of Europe); "Text Import" and LibreOffice offer tab, comma and
/// semicolon; UTF-16 text opens tab-separated. Some readers open a quoted field only at the
/// very start of a cell, others also after leading spaces. A cell is neutralised when it
/// would be a formula under any of these splits, so no reader's choice can run one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Split {
    delimiter: char,
    /// `a, "b,c"`: the quote after the space opens a quoted field (else it is a literal `"`).
    quote_after_space: bool,
}

/// Every split to check, the file's own (its `sep=` directive, else a guess from line 1) first
/// so report locations read as the sender laid the file out.
fn splits(text: &str) -> Vec<Split> {
    let directives = sep_directives(text);
    let mut delimiters: Vec<char> = directives.clone();
    if directives.is_empty() {
        delimiters.push(guess_delimiter(text));
    }
    for d in [',', ';', '\t'] {
        if !delimiters.contains(&d) {
            delimiters.push(d);
        }
    }
    delimiters
        .into_iter()
        .flat_map(|delimiter| {
            [false, true].map(|quote_after_space| Split {
                delimiter,
                quote_after_space,
            })
        })
        .collect()
}

/// The separator a `sep=X` first line declares (Excel reads it and drops the line). Read
/// leniently — with or without surrounding quotes and spaces, any case — because an extra split
/// only ever neutralises more.
fn sep_directives(text: &str) -> Vec<char> {
    let first = text.split(['\r', '\n']).next().unwrap_or_default();
    let trimmed = first.trim_matches(|c: char| c.is_whitespace() || c == '"');
    let mut found = Vec::new();
    for line in [first, trimmed] {
        let declared = line
            .get(..4)
            .filter(|p| p.eq_ignore_ascii_case("sep="))
            .and_then(|_| {
                let mut rest = line[4..].chars();
                rest.next().filter(|_| rest.next().is_none())
            });
        if let Some(c) = declared.filter(|c| !found.contains(c)) {
            found.push(c);
        }
    }
    found
}

/// Tab when the first line has tabs and no commas, semicolon when it has semicolons and no
/// commas, comma otherwise. Only orders the report: every split is checked.
fn guess_delimiter(text: &str) -> char {
    let first = text.lines().next().unwrap_or_default();
    if first.contains(',') {
        ','
    } else if first.contains('\t') {
        '\t'
    } else if first.contains(';') {
        ';'
    } else {
        ','
    }
}

/// Calls `visit(start, end, row, column)` for every cell of `text` under `split`, where
/// `start..end` is the cell's raw text (quotes included, delimiter and line end excluded).
fn for_each_cell(text: &str, split: Split, mut visit: impl FnMut(usize, usize, usize, usize)) {
    let bytes = text.as_bytes();
    let len = bytes.len();
    let mut buf = [0u8; 4];
    let delimiter = split.delimiter.encode_utf8(&mut buf).as_bytes();
    // The first byte decides almost every time: a slice comparison at every byte was most
    // of the CSV time, and every file is read under six splits.
    let first = delimiter.first().copied();
    let at_delimiter =
        |j: usize| bytes.get(j).copied() == first && bytes[j..].starts_with(delimiter);
    let line_end = |j: usize| matches!(bytes[j], b'\r' | b'\n');
    // The first delimiter or line end at or after `from`, or the end of the text.
    let next_stop = |from: usize| {
        let mut j = from;
        // (A delimiter always has a first byte; a line-end byte stands in for none.)
        let first = first.unwrap_or(b'\n');
        while let Some(at) = bytes
            .get(j..)
            .and_then(|rest| memchr::memchr3(first, b'\r', b'\n', rest))
        {
            j += at;
            if at_delimiter(j) || line_end(j) {
                return j;
            }
            j += 1;
        }
        len
    };
    let (mut row, mut column) = (1usize, 1usize);
    let mut i = 0;
    loop {
        let mut j = i;
        if split.quote_after_space {
            while j < len && !at_delimiter(j) && matches!(bytes[j], b' ' | b'\t') {
                j += 1;
            }
        }
        if j < len && bytes[j] == b'"' && !at_delimiter(j) {
            // Quoted: delimiters and line ends inside are content; `""` is a literal quote.
            j += 1;
            loop {
                // Straight to the next quote: only a quote ends or escapes inside.
                let Some(at) = bytes.get(j..).and_then(|rest| memchr::memchr(b'"', rest)) else {
                    j = len;
                    break;
                };
                j += at;
                if bytes.get(j + 1) == Some(&b'"') {
                    j += 2;
                    continue;
                }
                j += 1;
                break;
            }
        } else {
            j = i;
        }
        // Unquoted, or what follows a closing quote (readers append it to the cell): to the
        // first delimiter or line end, found by memchr on the delimiter's first byte and the
        // line-end bytes rather than byte by byte (six splits read every byte).
        j = next_stop(j);
        visit(i, j, row, column);
        if j >= len {
            break;
        }
        if at_delimiter(j) {
            column += 1;
            i = j + delimiter.len();
        } else {
            row += 1;
            column = 1;
            i = j + if bytes[j] == b'\r' && bytes.get(j + 1) == Some(&b'\n') {
                2
            } else {
                1
            };
            if i >= len {
                break;
            }
        }
    }
}

/// The characters that start a formula: ASCII, and the fullwidth and small forms a Japanese
/// spreadsheet folds into them.
fn is_trigger_char(c: char) -> bool {
    matches!(
        c,
        '=' | '+' | '-' | '@' | '＝' | '＋' | '－' | '＠' | '﹦' | '﹢' | '﹣' | '﹫' | '\u{2212}'
    )
}

/// What a reader may skip before a cell's first visible character: whitespace (including
/// U+3000 and the tab and CR OWASP lists as triggers), quotes, and invisible marks.
fn is_padding(c: char) -> bool {
    c.is_whitespace() || matches!(c, '"' | '\u{FEFF}' | '\u{200B}')
}

/// Whether a spreadsheet could read `value`, written as a cell, as a formula: its first
/// character after padding (whitespace, quotes, invisible marks) starts one, in ASCII or in
/// the fullwidth and small forms a Japanese spreadsheet folds. For writers of CSV (the admin
/// export), which defuse such cells whole; numbers are not told apart here.
pub fn could_start_formula(value: &str) -> bool {
    value
        .chars()
        .find(|&c| !is_padding(c))
        .is_some_and(is_trigger_char)
}

/// Offset (in `text`) of the trigger character of the cell `start..end`, if it is a formula.
fn trigger_in(text: &str, start: usize, end: usize) -> Option<usize> {
    let cell = text.get(start..end)?;
    let (at, c) = cell.char_indices().find(|&(_, c)| !is_padding(c))?;
    if !is_trigger_char(c) {
        return None;
    }
    let value = cell[at..].trim_end_matches(is_padding);
    (!is_inert_number(value)).then_some(start + at)
}

/// A number, or a number that another split cuts off at `,` `;` tab or `"` with nothing after
/// it that could call anything (no function, DDE, sheet or workbook reference). `-500,残高`
/// read with semicolons is no formula a spreadsheet accepts, and a comma reader needs the
/// number: neutralising it would turn every negative first column into text.
fn is_inert_number(value: &str) -> bool {
    let cut = value.find([',', ';', '\t', '"']).unwrap_or(value.len());
    is_plain_number(value[..cut].trim_end()) && !value[cut..].contains(['(', '|', '!', '['])
}

/// A cell that starts with a formula trigger.
struct TriggerCell {
    /// Byte offset, in the decoded UTF-8 text, of the trigger character (where `'` goes).
    text_offset: usize,
    row: usize,
    column: usize,
    /// The split it was found under, when that is not the file's own.
    other_split: Option<char>,
    dde: bool,
    /// The cell's first characters, for the report.
    preview: String,
}

impl TriggerCell {
    fn location(&self) -> String {
        let at = format!("row {}, column {}", self.row, self.column);
        match self.other_split {
            None => at,
            Some('\t') => format!("{at} (split on tab)"),
            Some(d) => format!("{at} (split on '{d}')"),
        }
    }
}

/// Every cell that is a formula under at least one split, once each, in text order.
///
/// # Errors
/// Unsupported when a `sep='` directive makes the neutralising quote itself a delimiter;
/// a deadline hit.
fn trigger_cells(text: &str, cx: Option<&Context<'_>>) -> Result<Vec<TriggerCell>> {
    let splits = splits(text);
    let own = splits.first().map(|s| s.delimiter);
    let mut found = std::collections::BTreeMap::new();
    for split in &splits {
        if let Some(cx) = cx {
            cx.check_deadline()?;
        }
        for_each_cell(text, *split, |start, end, row, column| {
            let Some(at) = trigger_in(text, start, end) else {
                return;
            };
            found.entry(at).or_insert_with(|| {
                let value = text[at..end].trim_end_matches(is_padding);
                TriggerCell {
                    text_offset: at,
                    row,
                    column,
                    other_split: (Some(split.delimiter) != own).then_some(split.delimiter),
                    dde: looks_like_dde(value),
                    preview: value.chars().take(40).collect(),
                }
            });
        });
    }
    if !found.is_empty() && splits.iter().any(|s| s.delimiter == '\'') {
        return Err(Error::unsupported(
            "sep=' makes the quote that neutralises a formula a delimiter",
        ));
    }
    Ok(found.into_values().collect())
}

/// `-12`, `+3.5`, `-1e3`: numbers a spreadsheet reads as numbers, not formulas.
fn is_plain_number(cell: &str) -> bool {
    let body = cell.strip_prefix(['+', '-']).unwrap_or(cell);
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(at) => (&body[..at], Some(&body[at + 1..])),
        None => (body, None),
    };
    let digits = mantissa.chars().filter(char::is_ascii_digit).count();
    let mantissa_ok = digits > 0
        && mantissa.chars().all(|c| c.is_ascii_digit() || c == '.')
        && mantissa.chars().filter(|&c| c == '.').count() <= 1;
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        !e.is_empty() && e.chars().all(|c| c.is_ascii_digit())
    });
    mantissa_ok && exponent_ok
}

/// `=cmd|' /c calc'!A1`, `@SUM(1+1)*cmd|…`: an application name, a pipe, then a `!` topic.
fn looks_like_dde(cell: &str) -> bool {
    cell.find('|')
        .is_some_and(|pipe| cell[pipe..].contains('!') && pipe > 1)
}

/// Inserts `'` before every trigger character, writing in the file's own encoding, and proves
/// the result decodes to exactly the text with those quotes added.
fn neutralize(input: &[u8], decoded: &Decoded<'_>, cells: &[TriggerCell]) -> Result<Vec<u8>> {
    if cells.is_empty() {
        return Ok(input.to_vec());
    }
    let text = decoded.text.as_ref();
    let expected = splice_text(text, cells);
    let out = match decoded.encoding {
        TextEncoding::Utf16Le | TextEncoding::Utf16Be => {
            // UTF-16 round-trips exactly, so re-encoding keeps every other character as it was.
            let mut out = Vec::with_capacity(expected.len() * 2 + 2);
            let le = decoded.encoding == TextEncoding::Utf16Le;
            out.extend_from_slice(if le { b"\xFF\xFE" } else { b"\xFE\xFF" });
            for unit in expected.encode_utf16() {
                out.extend_from_slice(&if le {
                    unit.to_le_bytes()
                } else {
                    unit.to_be_bytes()
                });
            }
            out
        }
        enc => {
            // CP932 is not re-encoded (NEC and IBM duplicates would change bytes): `'` is
            // spliced into the input itself, at the byte where each trigger character begins.
            let points: Vec<usize> = cells.iter().map(|c| c.text_offset).collect();
            let offsets = input_offsets(input, enc, text, &points)?;
            splice(input, &offsets)
        }
    };
    match decode(&out) {
        Ok(again) if again.encoding == decoded.encoding && again.text == expected => Ok(out),
        _ => Err(Error::internal(
            "the neutralised CSV does not decode to the expected text",
        )),
    }
}

fn splice_text(text: &str, cells: &[TriggerCell]) -> String {
    let mut out = String::with_capacity(text.len() + cells.len());
    let mut last = 0;
    for cell in cells {
        out.push_str(&text[last..cell.text_offset]);
        out.push('\'');
        last = cell.text_offset;
    }
    out.push_str(&text[last..]);
    out
}

fn splice(input: &[u8], offsets: &[usize]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() + offsets.len());
    let mut last = 0;
    for &at in offsets {
        out.extend_from_slice(&input[last..at]);
        out.push(b'\'');
        last = at;
    }
    out.extend_from_slice(&input[last..]);
    out
}

/// ISO-2022-JP decoder state (the escape sequences the WHATWG decoder knows).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Iso2022State {
    Ascii,
    Roman,
    Katakana,
    Jis0208,
}

/// Maps text offsets (sorted, each at a character) to the input offsets where those characters'
/// bytes begin, by walking the input one character at a time. The input decoded cleanly, so
/// each character's length follows from its lead byte (CP932: ASCII, 0x80 and half-width
/// katakana are one byte, the rest two; EUC-JP: 0x8F starts three, other non-ASCII two).
fn input_offsets(
    input: &[u8],
    enc: TextEncoding,
    text: &str,
    points: &[usize],
) -> Result<Vec<usize>> {
    let mut pos = if enc == TextEncoding::Utf8Bom { 3 } else { 0 };
    let mut state = Iso2022State::Ascii;
    let mut out = Vec::with_capacity(points.len());
    let mut next = points.iter().copied().peekable();
    let lost = || Error::internal("CSV text and input bytes fell out of step");
    for (offset, c) in text.char_indices() {
        if enc == TextEncoding::Iso2022Jp {
            while input.get(pos) == Some(&0x1B) {
                state = match input.get(pos + 1..pos + 3) {
                    Some(b"(B") => Iso2022State::Ascii,
                    Some(b"(J") => Iso2022State::Roman,
                    Some(b"(I") => Iso2022State::Katakana,
                    Some(b"$@") | Some(b"$B") => Iso2022State::Jis0208,
                    _ => return Err(lost()),
                };
                pos += 3;
            }
        }
        while next.peek() == Some(&offset) {
            if !matches!(state, Iso2022State::Ascii | Iso2022State::Roman) {
                // `'` would need escape sequences around it, which this writer does not add.
                return Err(Error::unsupported(
                    "a formula cell starts inside an ISO-2022-JP kanji run",
                ));
            }
            out.push(pos);
            next.next();
        }
        let lead = *input.get(pos).ok_or_else(lost)?;
        pos += match enc {
            TextEncoding::Utf8 | TextEncoding::Utf8Bom => c.len_utf8(),
            TextEncoding::Cp932 if lead <= 0x80 || (0xA1..=0xDF).contains(&lead) => 1,
            TextEncoding::Cp932 => 2,
            TextEncoding::EucJp if lead < 0x80 => 1,
            TextEncoding::EucJp if lead == 0x8F => 3,
            TextEncoding::EucJp => 2,
            TextEncoding::Iso2022Jp if state == Iso2022State::Jis0208 => 2,
            TextEncoding::Iso2022Jp => 1,
            TextEncoding::Utf16Le | TextEncoding::Utf16Be => return Err(lost()),
        };
    }
    if next.peek().is_some() || pos > input.len() {
        return Err(lost());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The byte-at-a-time cell scanner the memchr one replaced, kept as its oracle: both must
    /// give the same cells under every split.
    fn for_each_cell_byte_at_a_time(
        text: &str,
        split: Split,
        mut visit: impl FnMut(usize, usize, usize, usize),
    ) {
        let bytes = text.as_bytes();
        let len = bytes.len();
        let mut buf = [0u8; 4];
        let delimiter = split.delimiter.encode_utf8(&mut buf).as_bytes();
        // The first byte decides almost every time: a slice comparison at every byte was most
        // of the CSV time, and every file is read under six splits.
        let first = delimiter.first().copied();
        let at_delimiter =
            |j: usize| bytes.get(j).copied() == first && bytes[j..].starts_with(delimiter);
        let line_end = |j: usize| matches!(bytes[j], b'\r' | b'\n');
        let (mut row, mut column) = (1usize, 1usize);
        let mut i = 0;
        loop {
            let mut j = i;
            if split.quote_after_space {
                while j < len && !at_delimiter(j) && matches!(bytes[j], b' ' | b'\t') {
                    j += 1;
                }
            }
            if j < len && bytes[j] == b'"' && !at_delimiter(j) {
                // Quoted: delimiters and line ends inside are content; `""` is a literal quote.
                j += 1;
                while j < len {
                    if bytes[j] == b'"' {
                        if bytes.get(j + 1) == Some(&b'"') {
                            j += 2;
                            continue;
                        }
                        j += 1;
                        break;
                    }
                    j += 1;
                }
            } else {
                j = i;
            }
            // Unquoted, or what follows a closing quote (readers append it to the cell).
            while j < len && !at_delimiter(j) && !line_end(j) {
                j += 1;
            }
            visit(i, j, row, column);
            if j >= len {
                break;
            }
            if at_delimiter(j) {
                column += 1;
                i = j + delimiter.len();
            } else {
                row += 1;
                column = 1;
                i = j + if bytes[j] == b'\r' && bytes.get(j + 1) == Some(&b'\n') {
                    2
                } else {
                    1
                };
                if i >= len {
                    break;
                }
            }
        }
    }

    /// A cell scanner: `for_each_cell`'s shape, with the visitor as a trait object.
    type Scanner = fn(&str, Split, &mut dyn FnMut(usize, usize, usize, usize));

    /// Every cell `(start, end, row, column)` a scanner visits.
    fn all_cells(text: &str, split: Split, scan: Scanner) -> Vec<(usize, usize, usize, usize)> {
        let mut out = Vec::new();
        scan(text, split, &mut |a, b, c, d| out.push((a, b, c, d)));
        out
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3000))]

        #[test]
        fn the_memchr_cell_scanner_visits_the_cells_the_byte_scanner_did(
            pieces in proptest::collection::vec(
                proptest::sample::select(vec![
                    ",", ";", "\t", "|", "→", "\"", "\"\"", " ", "\r", "\n", "\r\n", "a",
                    "=1", "表", "\u{2192}x",
                ]),
                0..40,
            ),
            delimiter in proptest::sample::select(vec![',', ';', '\t', '|', '→', '\'']),
            quote_after_space in proptest::prelude::any::<bool>(),
        ) {
            let text = pieces.concat();
            let split = Split { delimiter, quote_after_space };
            proptest::prop_assert_eq!(
                all_cells(&text, split, |t, s, v| for_each_cell(t, s, v)),
                all_cells(&text, split, |t, s, v| for_each_cell_byte_at_a_time(t, s, v)),
            );
        }
    }

    fn cells(text: &str) -> Vec<String> {
        let decoded = decode(text.as_bytes()).unwrap();
        trigger_cells(&decoded.text, None)
            .unwrap()
            .iter()
            .map(|c| c.location())
            .collect()
    }

    fn neutralised(text: &str) -> String {
        let decoded = decode(text.as_bytes()).unwrap();
        let cells = trigger_cells(&decoded.text, None).unwrap();
        String::from_utf8(neutralize(text.as_bytes(), &decoded, &cells).unwrap()).unwrap()
    }

    #[test]
    fn finds_trigger_cells_and_leaves_numbers() {
        assert_eq!(
            cells("a,=1+1,-3\n\"@SUM(A1)\",+81 3,-2+3\r\n\"\"\"=x\",b\n"),
            vec![
                "row 1, column 2",
                "row 2, column 1",
                "row 2, column 2",
                "row 2, column 3",
                "row 3, column 1",
            ]
        );
        assert!(cells("1,-2.5,+3e4,text\n").is_empty());
        assert!(cells(" -1 ,\"+2\", 3e4\n").is_empty());
        // Negative first columns stay numbers for the comma reader, whatever a semicolon
        // reader would make of the rest of the line…
        assert!(cells("-500,残高\n\"-1\",\"x\"\n-2;x\n").is_empty());
        // …unless that rest could call something.
        assert_eq!(cells("-1,cmd|' /C calc'!A0\n").len(), 1);
    }

    #[test]
    fn quoted_delimiters_do_not_split_cells() {
        assert_eq!(cells("\"a,=b\",c\n"), Vec::<String>::new());
        assert_eq!(cells("\"a\nb\",=c\n"), vec!["row 1, column 2"]);
    }

    #[test]
    fn a_cell_that_is_a_formula_only_under_another_split_is_found() {
        // Comma-separated, but a semicolon reader sees `=HYPERLINK(…)` start a cell.
        assert_eq!(
            neutralised("名前,メモ\nx,a;=HYPERLINK(\"http://evil.example\")\n"),
            "名前,メモ\nx,a;'=HYPERLINK(\"http://evil.example\")\n"
        );
        // A quote opened only by a comma reader hides the semicolon cell from it.
        assert_eq!(neutralised("x,\"a;=1+1\"\n"), "x,\"a;'=1+1\"\n");
        // A space-then-quote field: a literal quote to some readers, a quoted field to others.
        assert_eq!(neutralised("a, \"b,=1+1\"\n"), "a, \"b,'=1+1\"\n");
    }

    #[test]
    fn sep_directive_adds_its_delimiter() {
        assert_eq!(sep_directives("sep=|\na|=1\n"), vec!['|']);
        assert_eq!(neutralised("sep=|\na|=1+1\n"), "sep=|\na|'=1+1\n");
        assert_eq!(cells("SEP=|\na|b\n"), Vec::<String>::new());
        assert!(sep_directives("sep=ab\n").is_empty());
        let decoded = decode(b"sep='\na'=1+1\n").unwrap();
        assert!(trigger_cells(&decoded.text, None).is_err());
    }

    #[test]
    fn fullwidth_and_padded_triggers_are_neutralised_at_the_trigger() {
        assert_eq!(
            neutralised("＝1+1,＋A1,－A1,＠SUM(A1)\n  =1+1,\t@x,\"  -A1\",\u{3000}=1\n"),
            "'＝1+1,'＋A1,'－A1,'＠SUM(A1)\n  '=1+1,\t'@x,\"  '-A1\",\u{3000}'=1\n"
        );
    }

    #[test]
    fn iso2022jp_csv_is_neutralised_outside_kanji_runs() {
        // 「会議」 encodes with bytes that read as ',' and '"' in the two-byte state.
        let csv = "名前,会議\r\n架空,=1+1\r\n";
        let (bytes, _, bad) = ISO_2022_JP.encode(csv);
        assert!(!bad);
        let decoded = decode(&bytes).unwrap();
        let cells = trigger_cells(&decoded.text, None).unwrap();
        let out = neutralize(&bytes, &decoded, &cells).unwrap();
        let (text, _, errors) = ISO_2022_JP.decode(&out);
        assert!(!errors);
        assert_eq!(text, "名前,会議\r\n架空,'=1+1\r\n");
    }

    #[test]
    fn legacy_character_lengths_follow_the_lead_byte() {
        // Every single character CP932 and EUC-JP decode: the lead-byte rule of
        // `input_offsets` must give its exact byte length.
        let mut checked = 0;
        for enc in [TextEncoding::Cp932, TextEncoding::EucJp] {
            let encoding = if enc == TextEncoding::Cp932 {
                SHIFT_JIS
            } else {
                EUC_JP
            };
            let mut samples: Vec<Vec<u8>> = (0u8..=0xFF).map(|b| vec![b]).collect();
            for a in 0x80u8..=0xFF {
                for b in 0u8..=0xFF {
                    samples.push(vec![a, b]);
                    if enc == TextEncoding::EucJp && a == 0x8F {
                        samples.extend((0xA1u8..=0xFE).map(|c| vec![a, b, c]));
                    }
                }
            }
            for bytes in samples {
                let Some(text) = strict(encoding, &bytes) else {
                    continue;
                };
                if text.chars().count() != 1 || text.contains('\u{1b}') {
                    continue;
                }
                let at = text.len();
                let mut input = bytes.clone();
                input.push(b'=');
                let with_trigger = format!("{text}=");
                let offsets = input_offsets(&input, enc, &with_trigger, &[at]).unwrap();
                assert_eq!(offsets, vec![bytes.len()], "{enc:?} {bytes:02X?}");
                checked += 1;
            }
        }
        assert!(checked > 15_000, "{checked}");
    }

    #[test]
    fn dos_eof_byte_ends_cp932_text() {
        let mut sjis = SHIFT_JIS.encode("令和６年度,①\r\n").0.into_owned();
        sjis.push(0x1A);
        let decoded = decode(&sjis).unwrap();
        assert_eq!(decoded.encoding, TextEncoding::Cp932);
        assert_eq!(decoded.text, "令和６年度,①\r\n");
        assert!(decode(b"a\x1Ab\n").is_err(), "only at the very end");
    }

    #[test]
    fn dde_shape() {
        assert!(looks_like_dde("=cmd|' /C calc'!A0"));
        assert!(!looks_like_dde("=SUM(A1:A2)"));
    }

    #[test]
    fn encodings_are_told_apart() {
        let sjis = SHIFT_JIS.encode("令和６年度 ①②㈱髙").0.into_owned();
        assert_eq!(decode(&sjis).unwrap().encoding, TextEncoding::Cp932);
        let euc = EUC_JP.encode("東京都千代田区の住所一覧です").0.into_owned();
        assert_eq!(decode(&euc).unwrap().encoding, TextEncoding::EucJp);
        let jis = ISO_2022_JP.encode("日本語のテキスト").0.into_owned();
        assert_eq!(decode(&jis).unwrap().encoding, TextEncoding::Iso2022Jp);
        assert!(decode(b"abc\x00def").is_err());
        assert!(decode(b"\x1b[31mred").is_err());
        assert!(decode(b"\xFF\xFEa").is_err());
    }
}
