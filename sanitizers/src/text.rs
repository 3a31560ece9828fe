//! Plain text and CSV.
//!
//! Owns: deciding which encoding a text file is in (UTF-8 with or without BOM, UTF-16 with BOM,
//! ISO-2022-JP, CP932, EUC-JP), validating that every byte decodes in it, and neutralising CSV
//! cells a spreadsheet would run as a formula (`=`, `+`, `-`, `@`, tab, CR).
//! Invariants: text is delivered byte for byte as it came (機種依存文字 in CP932 must survive, so
//! nothing is re-encoded), and only after the whole file decoded without a single replacement
//! character and without control characters a terminal or viewer would act on. CSV is rewritten
//! only by inserting `'` before a trigger cell, at a byte offset that is a character boundary in
//! the file's own encoding, so the rest of every line stays as it was.
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
            let cells = trigger_cells(&decoded, delimiter(&decoded.text));
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
        let cells = trigger_cells(&decoded, delimiter(&decoded.text));
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

    /// Byte-compatible with ASCII for the CSV structure characters: a `,`, `"`, tab, CR or LF
    /// byte is always that character (UTF-8, EUC-JP: multibyte bytes are ≥ 0x80; CP932: trail
    /// bytes are ≥ 0x40).
    fn ascii_structural(self) -> bool {
        matches!(
            self,
            TextEncoding::Utf8 | TextEncoding::Utf8Bom | TextEncoding::Cp932 | TextEncoding::EucJp
        )
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

/// Tab-separated when the first line has tabs and no commas; comma-separated otherwise.
fn delimiter(text: &str) -> u8 {
    let first = text.lines().next().unwrap_or_default();
    if first.contains('\t') && !first.contains(',') {
        b'\t'
    } else {
        b','
    }
}

/// A cell that starts with a formula trigger.
struct TriggerCell {
    /// Byte offset, in the decoded UTF-8 text, of the cell's first content character.
    text_offset: usize,
    row: usize,
    column: usize,
    dde: bool,
    /// The cell's first characters, for the report.
    preview: String,
}

impl TriggerCell {
    fn location(&self) -> String {
        format!("row {}, column {}", self.row, self.column)
    }
}

/// Walks the CSV structure of the decoded text and lists every trigger cell.
fn trigger_cells(decoded: &Decoded<'_>, delimiter: u8) -> Vec<TriggerCell> {
    let text = decoded.text.as_ref();
    let bytes = text.as_bytes();
    let mut cells = Vec::new();
    let (mut row, mut column) = (1usize, 1usize);
    let mut i = 0;
    while i <= bytes.len() {
        // At the start of a cell.
        let quoted = bytes.get(i) == Some(&b'"');
        let start = if quoted { i + 1 } else { i };
        let first = if quoted && bytes.get(start) == Some(&b'"') {
            None // `""` opens with a literal quote: not a trigger.
        } else {
            bytes.get(start).copied()
        };
        // Scan to the end of the cell.
        let mut j = start.min(bytes.len());
        let mut content_end = None;
        if quoted {
            while j < bytes.len() {
                if bytes[j] == b'"' {
                    if bytes.get(j + 1) == Some(&b'"') {
                        j += 2;
                        continue;
                    }
                    content_end = Some(j);
                    j += 1;
                    break;
                }
                j += 1;
            }
        }
        while j < bytes.len() && bytes[j] != delimiter && bytes[j] != b'\n' && bytes[j] != b'\r' {
            j += 1;
        }
        let content_end = content_end.unwrap_or(j).min(bytes.len());
        let content = text
            .get(start.min(content_end)..content_end)
            .unwrap_or_default();
        if let Some(first) = first {
            if is_trigger(first, quoted, delimiter) && !is_plain_number(content) {
                cells.push(TriggerCell {
                    text_offset: start,
                    row,
                    column,
                    dde: looks_like_dde(content),
                    preview: content.chars().take(40).collect(),
                });
            }
        }
        // Past the delimiter or line end.
        match bytes.get(j) {
            Some(&b) if b == delimiter => {
                column += 1;
                i = j + 1;
            }
            Some(b'\r') => {
                row += 1;
                column = 1;
                i = if bytes.get(j + 1) == Some(&b'\n') {
                    j + 2
                } else {
                    j + 1
                };
                if i == bytes.len() {
                    break;
                }
            }
            Some(b'\n') => {
                row += 1;
                column = 1;
                i = j + 1;
                if i == bytes.len() {
                    break;
                }
            }
            _ => break,
        }
    }
    cells
}

fn is_trigger(first: u8, quoted: bool, delimiter: u8) -> bool {
    match first {
        b'=' | b'+' | b'-' | b'@' => true,
        b'\t' => delimiter != b'\t',
        b'\r' => quoted,
        _ => false,
    }
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

/// Inserts `'` before every trigger cell, writing in the file's own encoding.
fn neutralize(input: &[u8], decoded: &Decoded<'_>, cells: &[TriggerCell]) -> Result<Vec<u8>> {
    if cells.is_empty() {
        return Ok(input.to_vec());
    }
    let text = decoded.text.as_ref();
    match decoded.encoding {
        enc if enc.ascii_structural() || enc == TextEncoding::Iso2022Jp => {
            // Same structure bytes in the input as in the decoded text: map each cell's
            // position by counting structural bytes, and splice `'` into the input itself.
            let offsets = input_offsets(input, enc, text, cells)?;
            Ok(splice(input, &offsets))
        }
        TextEncoding::Utf16Le | TextEncoding::Utf16Be => {
            let rewritten = splice_text(text, cells);
            let mut out = Vec::with_capacity(rewritten.len() * 2 + 2);
            let le = decoded.encoding == TextEncoding::Utf16Le;
            out.extend_from_slice(if le { b"\xFF\xFE" } else { b"\xFE\xFF" });
            for unit in rewritten.encode_utf16() {
                out.extend_from_slice(&if le {
                    unit.to_le_bytes()
                } else {
                    unit.to_be_bytes()
                });
            }
            Ok(out)
        }
        other => Err(Error::internal(format!(
            "no CSV writer for {}",
            other.label()
        ))),
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

/// Structural positions: offsets of every ASCII `,` / tab / `"` / CR / LF byte, which are
/// the same sequence in the decoded text and (for ASCII-structural encodings) in the input.
fn structural(bytes: &[u8]) -> impl Iterator<Item = usize> + '_ {
    bytes
        .iter()
        .enumerate()
        .filter(|(_, b)| matches!(b, b',' | b'\t' | b'"' | b'\r' | b'\n'))
        .map(|(i, _)| i)
}

/// Maps each cell's text offset to the input offset, through the structural byte just before
/// it (a cell starts at the file start or right after one of them): the n-th structural byte
/// of the decoded text is the n-th of the input.
fn input_offsets(
    input: &[u8],
    enc: TextEncoding,
    text: &str,
    cells: &[TriggerCell],
) -> Result<Vec<usize>> {
    let (start, positions) = if enc == TextEncoding::Iso2022Jp {
        (0, iso2022_structural(input))
    } else {
        let skip = if enc == TextEncoding::Utf8Bom { 3 } else { 0 };
        (skip, structural(&input[skip..]).map(|p| p + skip).collect())
    };
    let text_positions: Vec<usize> = structural(text.as_bytes()).collect();
    if text_positions.len() != positions.len() {
        return Err(Error::internal(
            "CSV structure differs between the input and its decoding",
        ));
    }
    cells
        .iter()
        .map(|cell| {
            if cell.text_offset == 0 {
                return Ok(start);
            }
            let n = text_positions
                .binary_search(&(cell.text_offset - 1))
                .map_err(|_| Error::internal("CSV cell does not follow a delimiter"))?;
            let at = positions[n] + 1;
            // The cell must start in ASCII state: a trigger after an ISO-2022-JP escape
            // sequence would need the escape moved, which this writer does not do.
            if input.get(at) == Some(&0x1B) {
                return Err(Error::unsupported(
                    "a formula cell starts with an ISO-2022-JP escape sequence",
                ));
            }
            Ok(at)
        })
        .collect()
}

/// Structural bytes of ISO-2022-JP, counted only while the decoder is in an ASCII / JIS-Roman
/// state (in a two-byte state those bytes are halves of kanji).
fn iso2022_structural(input: &[u8]) -> Vec<usize> {
    let mut positions = Vec::new();
    let mut ascii = true;
    let mut i = 0;
    while i < input.len() {
        if input[i] == 0x1B {
            match input.get(i + 1..i + 3) {
                Some(b"(B") | Some(b"(J") => ascii = true,
                Some(_) => ascii = false,
                None => {}
            }
            i += 3;
            continue;
        }
        if ascii && matches!(input[i], b',' | b'\t' | b'"' | b'\r' | b'\n') {
            positions.push(i);
        }
        i += 1;
    }
    positions
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cells(text: &str) -> Vec<String> {
        let decoded = decode(text.as_bytes()).unwrap();
        trigger_cells(&decoded, delimiter(&decoded.text))
            .iter()
            .map(|c| c.location())
            .collect()
    }

    #[test]
    fn finds_trigger_cells_and_leaves_numbers() {
        assert_eq!(
            cells("a,=1+1,-3\n\"@SUM(A1)\",+81 3,-2+3\r\n\"\"\"=x\",b\n"),
            vec![
                "row 1, column 2",
                "row 2, column 1",
                "row 2, column 2",
                "row 2, column 3"
            ]
        );
        assert!(cells("1,-2.5,+3e4,text\n").is_empty());
    }

    #[test]
    fn quoted_delimiters_do_not_split_cells() {
        assert_eq!(cells("\"a,=b\",c\n"), Vec::<String>::new());
        assert_eq!(cells("\"a\nb\",=c\n"), vec!["row 1, column 2"]);
    }

    #[test]
    fn iso2022jp_csv_is_neutralised_outside_kanji_runs() {
        // 「会議」 encodes with bytes that read as ',' and '"' in the two-byte state.
        let csv = "名前,会議\r\n架空,=1+1\r\n";
        let (bytes, _, bad) = ISO_2022_JP.encode(csv);
        assert!(!bad);
        let decoded = decode(&bytes).unwrap();
        let cells = trigger_cells(&decoded, b',');
        let out = neutralize(&bytes, &decoded, &cells).unwrap();
        let (text, _, errors) = ISO_2022_JP.decode(&out);
        assert!(!errors);
        assert_eq!(text, "名前,会議\r\n架空,'=1+1\r\n");
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
