//! Password candidates in a PPAP password mail ("パスワードは「q9w8e7」です。").
//!
//! Owns: finding the values that follow a password label in a mail's text, and masking the
//! very same values in the text that is delivered.
//! Invariants:
//! - One finder serves both [`password_candidates`] and [`mask_passwords`]: what is tried is
//!   what is masked.
//! - Labels: `パスワード`, `PW`, `Password` (ASCII case-insensitive, not inside a longer
//!   word), `解凍` (パスワード), `暗証` (番号), after NFKC folding (fullwidth and halfwidth
//!   forms), followed by `:`, `：`, `は`, `=`, a closing bracket (`【パスワード】`) or a line
//!   break; an optional note in parentheses may stand between (`パスワード(半角)：`).
//! - A value has the "value shape": 4–64 printable ASCII characters, no space, after folding
//!   (fullwidth `ｘＹ７８９` is `xY789`), with quotes `"` `'` 「」 『』 “” ‘’ and a trailing
//!   `です` / `。` stripped. A label whose same-line value is empty or a lead-in ("以下の通り",
//!   "下記") takes the next non-empty line as a whole instead; prose ("別途お送りします")
//!   yields nothing.
//!
//! Must never: log or format a candidate (they are [`Password`]s, which print `***`).

use unicode_normalization::char::compose;
use unicode_normalization::UnicodeNormalization;

use crate::unlock::Password;

/// What a masked value becomes in the delivered text.
pub const MASK: &str = "********";

/// Labels, lower-cased and folded. Longer variants first is not needed: a label's optional
/// suffix (`解凍パスワード`, `暗証番号`) is consumed with it.
const LABELS: &[&str] = &["パスワード", "password", "pw", "解凍", "暗証"];
/// Words that may follow a label before the separator.
const SUFFIXES: &[&str] = &[
    "パスワード",
    "用パスワード",
    "用",
    "番号",
    "コード",
    "キー",
    "key",
    "password",
    "pw",
];
/// Words that announce the value on the next line.
const LEAD_INS: &[&str] = &["以下", "下記", "次の", "通り", "below", "follow"];
/// Opening and closing quotes stripped around a value.
const QUOTES: &[(char, char)] = &[
    ('「', '」'),
    ('『', '』'),
    ('"', '"'),
    ('\'', '\''),
    ('“', '”'),
    ('‘', '’'),
    ('`', '`'),
    ('【', '】'),
];

/// The text folded with NFKC (halfwidth kana recomposed), with the way back to the original:
/// runs of characters that are their own fold are copied and map back byte for byte; every
/// other original character maps back as a whole. (A map entry per byte cost 16 bytes for
/// every byte of every mail, for the rare mail with a password in it.)
struct Folded {
    text: String,
    /// Where the pieces of `text` came from, in order of `folded`.
    pieces: Vec<Piece>,
}

/// One piece of a [`Folded`] text.
struct Piece {
    /// Its start in the folded text.
    folded: usize,
    /// Its start in the original.
    original: usize,
    /// `None`: a copied run (offsets map one to one); `Some(end)`: the fold of the original
    /// range `original..end`.
    whole: Option<usize>,
}

impl Folded {
    /// The original byte range of the character the folded byte `pos` belongs to (for a
    /// copied run, of that byte: its first byte starts the character, its last ends it).
    fn origin(&self, pos: usize) -> Option<(usize, usize)> {
        Folded::origin_in(&self.pieces, &self.text, pos)
    }
}

/// Characters that are their own NFKC form and never combine with what precedes them: ASCII,
/// hiragana and katakana letters, and the CJK unified ideographs.
fn nfkc_stable(c: char) -> bool {
    c.is_ascii()
        // CJK punctuation (、。「」〜…) but the ideographic space, the combining tone marks
        // and the few that fold to other characters.
        || ('\u{3001}'..='\u{3029}').contains(&c)
        || ('\u{3030}'..='\u{3035}').contains(&c)
        || ('\u{303B}'..='\u{303F}').contains(&c)
        || ('\u{3041}'..='\u{3096}').contains(&c)
        || ('\u{30A1}'..='\u{30FA}').contains(&c)
        || ('\u{4E00}'..='\u{9FFF}').contains(&c)
}

fn fold(original: &str) -> Folded {
    let mut text = String::with_capacity(original.len());
    let mut pieces: Vec<Piece> = Vec::new();
    for (start, c) in original.char_indices() {
        let end = start + c.len_utf8();
        // Most of a mail is ASCII, kana or common kanji: each is its own NFKC form and never
        // the second half of a composition, so it is copied (folding char by char through the
        // normaliser was a third of the relay's conversion time).
        if nfkc_stable(c) {
            if pieces.last().is_none_or(|p| p.whole.is_some()) {
                pieces.push(Piece {
                    folded: text.len(),
                    original: start,
                    whole: None,
                });
            }
            text.push(c);
            continue;
        }
        for f in std::iter::once(c).nfkc() {
            // Halfwidth ｶﾞ folds character by character to カ + a combining mark: recompose,
            // and the composed character maps back to both.
            let last = text.chars().next_back();
            if let Some((last, composed)) = last.and_then(|l| Some((l, compose(l, f)?))) {
                let last_start = text.len() - last.len_utf8();
                let Some((from, _)) = Folded::origin_in(&pieces, &text, last_start) else {
                    continue;
                };
                text.truncate(last_start);
                if pieces.last().is_some_and(|p| p.folded == last_start) {
                    pieces.pop();
                }
                pieces.push(Piece {
                    folded: last_start,
                    original: from,
                    whole: Some(end),
                });
                text.push(composed);
                continue;
            }
            let same_source = pieces
                .last()
                .is_some_and(|p| p.whole.is_some() && p.original == start);
            if !same_source {
                pieces.push(Piece {
                    folded: text.len(),
                    original: start,
                    whole: Some(end),
                });
            }
            text.push(f);
        }
    }
    Folded { text, pieces }
}

impl Folded {
    /// [`Folded::origin`] while the text is being built.
    fn origin_in(pieces: &[Piece], text: &str, pos: usize) -> Option<(usize, usize)> {
        let i = pieces.partition_point(|p| p.folded <= pos).checked_sub(1)?;
        let p = pieces.get(i)?;
        if pos >= text.len() {
            return None;
        }
        Some(match p.whole {
            Some(end) => (p.original, end),
            None => {
                let at = p.original + (pos - p.folded);
                (at, at + 1)
            }
        })
    }
}

/// A value found: its range in the folded text and the value itself.
struct Found {
    start: usize,
    end: usize,
    value: String,
}

fn is_value_shape(value: &str) -> bool {
    (4..=64).contains(&value.chars().count()) && value.bytes().all(|b| b.is_ascii_graphic())
}

/// Strips a trailing `です`/`。`/`、` (repeatedly) and surrounding quotes; returns the value's
/// offset and length within `raw`.
fn trim_value(raw: &str) -> (usize, &str) {
    let mut start = 0;
    let mut value = raw.trim();
    start += raw.len() - raw.trim_start().len();
    loop {
        let before = value.len();
        for tail in ["です", "。", "、"] {
            if let Some(v) = value.strip_suffix(tail) {
                value = v.trim_end();
            }
        }
        if value.len() == before {
            break;
        }
    }
    for (open, close) in QUOTES {
        if let Some(inner) = value.strip_prefix(*open) {
            if let Some(end) = inner.find(*close) {
                start += open.len_utf8();
                return (start, &inner[..end]);
            }
        }
    }
    (start, value)
}

/// The token at the start of `rest` (after separators): up to whitespace or a non-ASCII
/// character, or the quoted text when it opens with a quote.
fn token(rest: &str) -> (usize, &str) {
    let lead = rest.len() - rest.trim_start().len();
    let body = &rest[lead..];
    for (open, close) in QUOTES {
        if let Some(inner) = body.strip_prefix(*open) {
            let end = inner.find(*close).unwrap_or(inner.len());
            return (lead + open.len_utf8(), &inner[..end]);
        }
    }
    let end = body
        .char_indices()
        .find(|(_, c)| c.is_whitespace() || !c.is_ascii())
        .map_or(body.len(), |(i, _)| i);
    let mut value = &body[..end];
    // "Abc123(半角)" stops at 半: drop the bracket the note opened.
    if end < body.len() {
        value = value.trim_end_matches(['(', '[', '<']);
    }
    (lead, value)
}

fn is_ascii_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}

/// How far past a label the finder looks for its separator, value and next line: a value
/// is at most 64 characters, so a longer stretch is prose, and a bound here keeps the whole
/// search linear in the text (a body of nothing but labels must not cost minutes).
const WINDOW: usize = 512;

/// The largest char boundary of `s` at or below `at`.
fn boundary(s: &str, at: usize) -> usize {
    let mut at = at.min(s.len());
    while !s.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// Finds every value in the folded text, in one pass over it.
fn find_all(folded: &str) -> Vec<Found> {
    let lower = folded.to_ascii_lowercase();
    let bytes = lower.as_bytes();
    let mut found = Vec::new();
    let mut pos = 0usize;
    while pos < lower.len() {
        if !lower.is_char_boundary(pos) {
            pos += 1;
            continue;
        }
        // The first label (in `LABELS` order) that starts here.
        let Some(label) = LABELS
            .iter()
            .find(|l| bytes[pos..].starts_with(l.as_bytes()))
        else {
            pos += 1;
            continue;
        };
        let mut cursor = pos + label.len();
        if label.is_ascii() {
            let before = pos.checked_sub(1).and_then(|i| bytes.get(i));
            let after = bytes.get(cursor);
            if before.is_some_and(|b| is_ascii_word_byte(*b))
                || after.is_some_and(|b| is_ascii_word_byte(*b))
            {
                pos = cursor;
                continue;
            }
        }
        if let Some(f) = value_after(folded, &lower, cursor) {
            cursor = f.end;
            found.push(f);
        }
        pos = cursor.max(pos + label.len());
    }
    found
}

/// The value following a label that ends at `cursor`, if the separator and shape rules hold.
fn value_after(folded: &str, lower: &str, mut cursor: usize) -> Option<Found> {
    // Optional suffix words and a parenthesised note, then the separator.
    loop {
        let rest = &lower[cursor..];
        let trimmed = rest.trim_start_matches([' ', '\t', '\u{3000}']);
        let skipped = rest.len() - trimmed.len();
        if let Some(s) = SUFFIXES.iter().find(|s| trimmed.starts_with(**s)) {
            cursor += skipped + s.len();
            continue;
        }
        if trimmed.starts_with('(') {
            let near = &trimmed[..boundary(trimmed, 41)];
            if let Some(close) = near.find(')').filter(|c| *c <= 40) {
                if !trimmed[..close].contains('\n') {
                    cursor += skipped + close + 1;
                    continue;
                }
            }
        }
        break;
    }
    let rest = &lower[cursor..];
    let trimmed = rest.trim_start_matches([' ', '\t', '\u{3000}']);
    let mut sep_end = cursor + (rest.len() - trimmed.len());
    let mut separated = false;
    let mut line_break = false;
    // Separators may repeat: "【パスワード】：", "PW =".
    for c in trimmed.chars() {
        match c {
            ':' | 'は' | '=' | '】' | ']' | '>' | '》' => {
                separated = true;
                sep_end += c.len_utf8();
            }
            ' ' | '\t' | '\u{3000}' if separated => sep_end += c.len_utf8(),
            '\r' | '\n' => {
                line_break = true;
                break;
            }
            _ => break,
        }
    }
    if !separated && !line_break {
        return None;
    }
    let window_end = boundary(folded, sep_end + WINDOW);
    let (line_end, long_line) = match folded[sep_end..window_end].find(['\r', '\n']) {
        Some(i) => (sep_end + i, false),
        None => (window_end, window_end < folded.len()),
    };
    let same_line = &folded[sep_end..line_end];
    let (offset, value) = token(same_line);
    let (inner, value) = trim_value(value);
    if is_value_shape(value) {
        let start = sep_end + offset + inner;
        return Some(Found {
            start,
            end: start + value.len(),
            value: value.to_string(),
        });
    }
    // A line longer than the window is prose, not a lead-in.
    if long_line {
        return None;
    }
    // Nothing on the line, or a lead-in ("以下の通りです"): the next non-empty line.
    let lead = same_line.trim();
    let lead_lower = lead.to_ascii_lowercase();
    if !lead.is_empty() && !LEAD_INS.iter().any(|l| lead_lower.contains(l)) {
        return None;
    }
    let mut line_start = line_end;
    for line in folded[line_end..boundary(folded, line_end + WINDOW)].split_inclusive('\n') {
        let this_start = line_start;
        line_start += line.len();
        let content = line.trim_end_matches(['\r', '\n']);
        if content.trim().is_empty() {
            continue;
        }
        let (offset, value) = trim_value(content);
        if is_value_shape(value) {
            let start = this_start + offset;
            return Some(Found {
                start,
                end: start + value.len(),
                value: value.to_string(),
            });
        }
        return None;
    }
    None
}

/// The password candidates in a mail's text, in order of appearance, deduplicated, at most
/// `max`.
pub fn password_candidates(text: &str, max: usize) -> Vec<Password> {
    let folded = fold(text);
    let mut seen: Vec<String> = Vec::new();
    for f in find_all(&folded.text) {
        if seen.len() >= max {
            break;
        }
        if !seen.contains(&f.value) {
            seen.push(f.value);
        }
    }
    let out = seen.iter().map(|v| Password::new(v.as_str())).collect();
    for mut v in seen {
        zeroize::Zeroize::zeroize(&mut v);
    }
    out
}

/// The text with every candidate value replaced by [`MASK`], and how many were masked.
pub fn mask_passwords(text: &str) -> (String, usize) {
    let folded = fold(text);
    let found = find_all(&folded.text);
    let mut out = String::with_capacity(text.len());
    let mut copied = 0usize;
    let mut count = 0usize;
    for f in &found {
        let (Some(first), Some(last)) = (
            folded.origin(f.start),
            f.end.checked_sub(1).and_then(|i| folded.origin(i)),
        ) else {
            continue;
        };
        let (start, end) = (first.0, last.1);
        if start < copied {
            continue;
        }
        out.push_str(&text[copied..start]);
        out.push_str(MASK);
        copied = end;
        count += 1;
    }
    out.push_str(&text[copied..]);
    (out, count)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidates(text: &str) -> Vec<String> {
        password_candidates(text, 5)
            .iter()
            .map(|p| p.expose().to_string())
            .collect()
    }

    #[test]
    fn finds_the_password_in_realistic_ppap_mails() {
        let cases: &[(&str, &[&str])] = &[
            ("お世話になっております。\n先ほどお送りしたファイルのパスワードをお知らせします。\n\n【パスワード】\n  Abc123!\n\nよろしくお願いいたします。", &["Abc123!"]),
            ("パスワード：ｘＹ７８９", &["xY789"]),
            ("解凍パスワードは「q9w8e7」です。", &["q9w8e7"]),
            ("PW: hoge", &["hoge"]),
            ("pw:hoge2024", &["hoge2024"]),
            ("Password: Tr0ub4dor&3", &["Tr0ub4dor&3"]),
            ("PASSWORD = s3cr3t", &["s3cr3t"]),
            ("【パスワード】Kx9#mQ2z", &["Kx9#mQ2z"]),
            ("パスワード(半角英数)：Ab12Cd34", &["Ab12Cd34"]),
            ("暗証番号：4821", &["4821"]),
            ("暗証番号は 0000 です", &["0000"]),
            ("ﾊﾟｽﾜｰﾄﾞ:halfKana9", &["halfKana9"]),
            ("解凍パスワードは以下の通りです。\n\n  『z8X!p0q』\n", &["z8X!p0q"]),
            ("パスワードは\n20261204abc\nです。", &["20261204abc"]),
            ("見積書.zip のパスワード：Mitsu2026。", &["Mitsu2026"]),
            ("パスワード：“r7T-u8I”", &["r7T-u8I"]),
            ("パスワード：Abc123（半角）", &["Abc123"]),
            ("パスワード：ab12\nパスワード：ab12\nPW: cd34", &["ab12", "cd34"]),
        ];
        for (mail, expected) in cases {
            assert_eq!(&candidates(mail), expected, "mail: {mail}");
        }
    }

    #[test]
    fn prose_that_mentions_passwords_yields_nothing() {
        for mail in [
            "パスワードについては別途ご連絡いたします。\nよろしくお願いします。",
            "パスワードは別途お送りします。\n山田",
            "パスワードは後ほど別メールにてお送りします。",
            "PPAP廃止に伴い、パスワード付きZIPの送付を取りやめます。",
            "Passwords are sent separately.",
            "新しいPWDの設定方法は添付資料をご覧ください。",
            "解凍できない場合はご連絡ください。",
            "パスワード：なし",
            "パスワード: ab",
            "暗証番号は各自で管理してください。",
            "upwards: 1234",
        ] {
            assert!(
                candidates(mail).is_empty(),
                "mail: {mail} gave {:?}",
                candidates(mail)
            );
        }
    }

    #[test]
    fn at_most_max_candidates_are_returned() {
        let mail = "PW: aaaa1\nPW: bbbb2\nPW: cccc3\nPW: dddd4";
        assert_eq!(password_candidates(mail, 2).len(), 2);
        assert_eq!(password_candidates(mail, 0).len(), 0);
    }

    #[test]
    fn masking_hides_exactly_what_is_tried() {
        let mail = "お世話になります。\n解凍パスワードは「q9w8e7」です。\nPW：ｘＹ７８９\n以上";
        let (masked, n) = mask_passwords(mail);
        assert_eq!(n, 2);
        assert_eq!(
            masked,
            "お世話になります。\n解凍パスワードは「********」です。\nPW：********\n以上"
        );
        assert!(!masked.contains("q9w8e7") && !masked.contains("ｘＹ７８９"));
        let (again, n) = mask_passwords(mail);
        assert_eq!((again.as_str(), n), (masked.as_str(), 2));
        let next_line = "【パスワード】\n  Abc123!\n";
        assert_eq!(
            mask_passwords(next_line),
            ("【パスワード】\n  ********\n".to_string(), 1)
        );
        let none = "パスワードは別途お送りします。";
        assert_eq!(mask_passwords(none), (none.to_string(), 0));
    }

    #[test]
    fn a_body_of_nothing_but_labels_is_searched_in_linear_time() {
        // Each pass of the old finder searched the rest of the text for every label: a 1 MB
        // body of "xpw" took minutes of a worker's CPU after the conversion's deadline; these
        // 300 KB bodies took the old finder tens of seconds and take this one well under a second
        // (most of the time below is NFKC folding in a debug build).
        for body in [
            "xpw".repeat(100_000),
            "pw:".repeat(100_000),
            format!("パスワード：\n{}", "a".repeat(300_000)),
            "パスワード(".repeat(20_000),
        ] {
            let started = std::time::Instant::now();
            let _ = password_candidates(&body, 5);
            let (masked, _) = mask_passwords(&body);
            assert!(masked.len() >= body.len() / 2);
            assert!(
                started.elapsed() < std::time::Duration::from_secs(30),
                "{:?} for {} bytes",
                started.elapsed(),
                body.len()
            );
        }
    }

    #[test]
    fn the_fast_path_folds_exactly_as_the_normaliser_does() {
        // Every character the fast path takes, alone and after a halfwidth voiced mark's
        // base, folds to itself under NFKC, and the folded text of mixed input is NFKC.
        for range in [
            0u32..0x80,
            0x3001..0x302A,
            0x3030..0x3036,
            0x303B..0x3040,
            0x3041..0x3097,
            0x30A1..0x30FB,
            0x4E00..0xA000,
        ] {
            for cp in range {
                let c = char::from_u32(cp).unwrap();
                assert!(nfkc_stable(c));
                let nfkc: String = std::iter::once(c).nfkc().collect();
                assert_eq!(nfkc, c.to_string(), "U+{cp:04X}");
            }
        }
        let mixed = "ﾊﾟｽﾜｰﾄﾞ：ＡＢｃ１２３ かﾞ e\u{301} 漢字 パスワード";
        let folded = fold(mixed).text;
        assert_eq!(folded, mixed.nfkc().collect::<String>());
    }

    /// The byte-by-byte map the pieces replaced: every folded byte's original character.
    fn origin_per_byte(original: &str) -> (String, Vec<(usize, usize)>) {
        let mut chars: Vec<(char, usize, usize)> = Vec::new();
        for (start, c) in original.char_indices() {
            let end = start + c.len_utf8();
            for f in std::iter::once(c).nfkc() {
                if let Some(last) = chars.last_mut() {
                    if let Some(composed) = compose(last.0, f) {
                        *last = (composed, last.1, end);
                        continue;
                    }
                }
                chars.push((f, start, end));
            }
        }
        let mut text = String::new();
        let mut origin = Vec::new();
        for (c, start, end) in chars {
            text.push(c);
            origin.extend(std::iter::repeat_n((start, end), c.len_utf8()));
        }
        (text, origin)
    }

    #[test]
    fn folded_text_maps_back_to_the_characters_it_came_from() {
        for text in [
            "パスワード：Abc123!x です",
            "ﾊﾟｽﾜｰﾄﾞ：ＡＢｃ１２３ かﾞ e\u{301} 漢字",
            "ＰＷ は「ｓｅｃｒｅｔ９９」",
            "㍻ ① ｶﾞｷﾞｸﾞ\u{3099} plain ascii ㌔",
            "",
            "\u{301}starts with a mark",
        ] {
            let folded = fold(text);
            let (reference, per_byte) = origin_per_byte(text);
            assert_eq!(folded.text, reference, "{text:?}");
            for (pos, &(start, end)) in per_byte.iter().enumerate() {
                let (s, e) = folded.origin(pos).unwrap();
                // Char starts map to the original character's start, char ends to its end.
                if folded.text.is_char_boundary(pos) {
                    assert_eq!(s, start, "{text:?} at {pos}");
                }
                if folded.text.is_char_boundary(pos + 1) {
                    assert_eq!(e, end, "{text:?} at {pos}");
                }
            }
            assert!(folded.origin(folded.text.len()).is_none());
        }
    }
}
