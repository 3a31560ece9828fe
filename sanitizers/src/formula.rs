//! One spreadsheet formula tokenizer for every place a formula can live, in OOXML (cells, data
//! validation, conditional formatting, `x14` extensions, defined names, table columns) and in
//! ODF (cell formulas, conditions, named expressions and ranges).
//!
//! Owns: splitting a formula into strings, quoted names, identifiers and punctuation, and
//! deciding whether it reaches outside the document — a DDE call (`cmd|'/c calc'!A0`,
//! `DDE(…)`), a reference into another file (`[1]Sheet1!A1`, `'C:\[b.xlsx]S'!A1`,
//! `'file:///x.ods'#$Sheet1.A1`), a web or code call (`WEBSERVICE`, `FILTERXML`, `IMAGE`,
//! `RTD`, `CALL`, `REGISTER`) or a `HYPERLINK` the link policy would not keep.
//! Invariants: strings (`"…"`) and quoted names (`'…'`) are read with their doubled-quote
//! escapes, so a quote inside one never flips the state of the other; function names are
//! compared case-insensitively after the `_xlfn.`/`_xlws.`/`COM.MICROSOFT.`… prefixes and the
//! `of:`/`oooc:`/`msoxl:` formula namespace are taken off; an unterminated string or name is
//! judged as if it ran to the end (the spreadsheet would read it no differently).
//! Must never: call a formula harmless because it could not make sense of it — anything
//! outside strings that only a reference to elsewhere would contain (`|`, `\`, `://`) counts.

use crate::policy::link_allowed;
use crate::report::What;
use crate::util::short;

/// Why a formula must go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reach {
    /// What the removal is reported as.
    pub what: What,
    /// Short English description for the report ("DDE call", "reference to another file"…).
    pub why: String,
}

impl Reach {
    fn new(what: What, why: impl Into<String>) -> Self {
        Self {
            what,
            why: why.into(),
        }
    }
}

/// Functions that reach outside the document, after the prefixes are taken off, with what
/// their removal is reported as. `HYPERLINK` is judged by its target (see [`judge`]).
const OUTSIDE_CALLS: &[(&str, What)] = &[
    ("DDE", What::Field),
    ("DDEAUTO", What::Field),
    ("WEBSERVICE", What::DataConnection),
    ("FILTERXML", What::DataConnection),
    ("IMAGE", What::DataConnection),
    ("RTD", What::DataConnection),
    ("CALL", What::DataConnection),
    ("REGISTER", What::DataConnection),
    ("REGISTER.ID", What::DataConnection),
];

/// Function-name prefixes that name the same function in another namespace.
const FUNCTION_PREFIXES: &[&str] = &[
    "_XLFN.",
    "_XLWS.",
    "_XLUDF.",
    "COM.MICROSOFT.",
    "ORG.OPENOFFICE.",
    "ORG.LIBREOFFICE.",
];

/// Formula namespaces an ODF attribute value may start with (`of:=SUM(…)`).
const FORMULA_NAMESPACES: &[&str] = &["of:", "oooc:", "ooow:", "msoxl:"];

/// Workbook extensions that mark a bracketed name as another file (`[book.xlsx]Sheet1!A1`).
const WORKBOOK_EXTENSIONS: &[&str] = &[
    ".xls", ".xlsx", ".xlsm", ".xlsb", ".xlt", ".xltx", ".xltm", ".xla", ".xlam", ".ods", ".ots",
    ".fods", ".csv",
];

/// One lexical piece of a formula.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Token {
    /// A string literal, its doubled quotes undone.
    Str(String),
    /// A quoted sheet, file or DDE name (`'My Sheet'`), its doubled quotes undone.
    Quoted(String),
    /// A run of name characters: function names, references, numbers, `$A$1`, `Sheet1!A1`.
    Ident(String),
    /// Any other character outside strings and names (operators, brackets, separators).
    Punct(char),
}

/// Splits a formula into tokens. Whitespace between tokens is dropped.
pub(crate) fn tokenize(formula: &str) -> Vec<Token> {
    let (_, formula) = strip_namespace(formula);
    let mut out = Vec::new();
    let mut chars = formula.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' | '\'' => {
                let mut text = String::new();
                while let Some(d) = chars.next() {
                    if d == c {
                        if chars.peek() == Some(&c) {
                            chars.next();
                            text.push(c);
                            continue;
                        }
                        break;
                    }
                    text.push(d);
                }
                out.push(if c == '"' {
                    Token::Str(text)
                } else {
                    Token::Quoted(text)
                });
            }
            c if c.is_whitespace() => {}
            c if is_name_char(c) => {
                let mut text = String::from(c);
                while let Some(&d) = chars.peek() {
                    if !is_name_char(d) {
                        break;
                    }
                    text.push(d);
                    chars.next();
                }
                out.push(Token::Ident(text));
            }
            c => out.push(Token::Punct(c)),
        }
    }
    out
}

/// Letters (any script), digits and the characters names and references are made of.
fn is_name_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '.' | '$' | '\\' | '?')
}

/// Takes off an ODF formula namespace (`of:=…` → `("of:", "=…")`).
fn strip_namespace(formula: &str) -> (&'static str, &str) {
    let trimmed = formula.trim_start();
    for ns in FORMULA_NAMESPACES {
        if let Some(head) = trimmed.get(..ns.len()) {
            if head.eq_ignore_ascii_case(ns) {
                return (ns, &trimmed[ns.len()..]);
            }
        }
    }
    ("", trimmed)
}

/// A function name as compared: upper case, namespace prefixes taken off.
pub(crate) fn function_name(raw: &str) -> String {
    let mut name = raw.to_uppercase();
    loop {
        let before = name.len();
        for prefix in FUNCTION_PREFIXES {
            if let Some(rest) = name.strip_prefix(prefix) {
                name = rest.to_string();
            }
        }
        if name.len() == before {
            return name;
        }
    }
}

/// Decides whether a formula reaches outside the document; `None` keeps it.
///
/// `keep_links` is the policy's: a `HYPERLINK` whose target is a string literal the link
/// policy keeps (web and mail addresses, when links are kept) stays; every other goes.
pub(crate) fn judge(formula: &str, keep_links: bool) -> Option<Reach> {
    let tokens = tokenize(formula);
    // Writer's formula language (`ooow:`) has `|` and `||` for "or" and no DDE.
    let pipe_is_dde = strip_namespace(formula).0 != "ooow:";
    let next_is = |i: usize, p: char| tokens.get(i) == Some(&Token::Punct(p));
    for (i, token) in tokens.iter().enumerate() {
        match token {
            Token::Punct('|') if pipe_is_dde => return Some(Reach::new(What::Field, "DDE call")),
            Token::Punct('[') => {
                // `[1]Sheet1!A1` (the stored form of an external reference) or a workbook
                // named in brackets. Structured references (`Table1[Col]`) hold neither.
                if let (Some(Token::Ident(inner)), true) = (tokens.get(i + 1), next_is(i + 2, ']'))
                {
                    if inner.chars().all(|c| c.is_ascii_digit()) || names_workbook(inner) {
                        return Some(other_file(&format!("[{inner}]")));
                    }
                }
            }
            // Sheet names may hold neither brackets nor slashes: a quoted name that does is a
            // path or a workbook (`'C:\dir\[b.xlsx]Sheet1'!A1`); one followed by `#` is an ODF
            // reference into another file (`'file:///x.ods'#$Sheet1.A1`).
            Token::Quoted(name) if name.contains(['[', ']', '\\', '/']) || next_is(i + 1, '#') => {
                return Some(other_file(name));
            }
            Token::Ident(name) => {
                if name.contains('\\') {
                    return Some(other_file(name));
                }
                if next_is(i + 1, ':')
                    && next_is(i + 2, '/')
                    && next_is(i + 3, '/')
                    && !name.starts_with('$')
                {
                    return Some(other_file(name));
                }
                if next_is(i + 1, '(') {
                    let function = function_name(name);
                    if function == "HYPERLINK" {
                        let target = match (tokens.get(i + 2), tokens.get(i + 3)) {
                            (Some(Token::Str(s)), Some(Token::Punct(',' | ';' | ')'))) => {
                                Some(s.as_str())
                            }
                            _ => None,
                        };
                        match target {
                            Some(t) if keep_links && link_allowed(t) => {}
                            Some(t) => {
                                return Some(Reach::new(
                                    What::Hyperlink,
                                    format!("HYPERLINK to {}", short(t)),
                                ))
                            }
                            None => {
                                return Some(Reach::new(
                                    What::Hyperlink,
                                    "HYPERLINK to a computed target",
                                ))
                            }
                        }
                    } else if let Some((_, what)) =
                        OUTSIDE_CALLS.iter().find(|(f, _)| *f == function)
                    {
                        return Some(Reach::new(*what, format!("{function} call")));
                    }
                }
            }
            _ => {}
        }
    }
    None
}

fn names_workbook(inner: &str) -> bool {
    let lower = inner.to_ascii_lowercase();
    WORKBOOK_EXTENSIONS.iter().any(|e| lower.ends_with(e))
}

fn other_file(name: &str) -> Reach {
    Reach::new(
        What::ExternalReference,
        format!("reference to another file {}", short(name)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reach(f: &str) -> Option<What> {
        judge(f, false).map(|r| r.what)
    }

    #[test]
    fn strings_and_quoted_names_keep_their_doubled_quotes() {
        assert_eq!(
            tokenize(r#"="a""|b"&'it''s'!A1"#),
            vec![
                Token::Punct('='),
                Token::Str("a\"|b".into()),
                Token::Punct('&'),
                Token::Quoted("it's".into()),
                Token::Punct('!'),
                Token::Ident("A1".into()),
            ]
        );
    }

    #[test]
    fn a_double_quote_in_a_sheet_name_does_not_hide_a_dde_call() {
        assert_eq!(reach(r#"'a"b'!A1&cmd|'/c calc'!A0"#), Some(What::Field));
        assert_eq!(reach(r#"'a"b'!A1&"x"&cmd|'/c calc'!A0"#), Some(What::Field));
        assert_eq!(
            reach(r#"'it''s "x'!A1&cmd|'/c calc'!A0"#),
            Some(What::Field)
        );
        assert_eq!(reach(r#"'a"b'!A1&"c|d""e|f""""|g""#), None);
    }

    #[test]
    fn references_to_other_files_are_found_in_both_dialects() {
        for f in [
            "[1]Sheet1!$A$1",
            "SUM([2]Data!A1:A3)",
            "'[1]My Sheet'!A1",
            r"'C:\dir\[book.xlsx]Sheet1'!A1",
            "[book.xlsx]Sheet1!A1",
            r"\\host\share\x",
            "of:=['file:///C:/x.ods'#$Sheet1.A1]",
            "'file:///C:/x.ods'#$Sheet1.A1",
            "of:=[$'https://example.invalid/x.ods'#$S.A1]",
        ] {
            assert_eq!(reach(f), Some(What::ExternalReference), "{f}");
        }
        for f in [
            "SUM(A1:A3)",
            "Table1[Column]",
            "Table1[[#This Row],[Col]]",
            "'データ'!$A$1:$A$3",
            "of:=SUM([.A1:.B2])",
            "of:=[$'My Sheet'.A1]",
            "\"file:///x\"",
            "A1#",
            "#REF!",
        ] {
            assert_eq!(reach(f), None, "{f}");
        }
    }

    #[test]
    fn outside_calls_are_found_through_their_prefixes_and_case() {
        assert_eq!(
            reach("_xlfn.WEBSERVICE(\"http://x\")"),
            Some(What::DataConnection)
        );
        assert_eq!(
            reach("_xlfn._xlws.filterxml(A1,\"//a\")"),
            Some(What::DataConnection)
        );
        assert_eq!(
            reach("of:=COM.MICROSOFT.WEBSERVICE(\"http://x\")"),
            Some(What::DataConnection)
        );
        assert_eq!(
            reach("oooc:=dde(\"soffice\";\"x.ods\";\"A1\")"),
            Some(What::Field)
        );
        assert_eq!(
            reach("of:=DDE (\"cmd\";\"/c calc\";\"x\")"),
            Some(What::Field)
        );
        assert_eq!(reach("\"WEBSERVICE(\"&A1"), None);
        assert_eq!(reach("MYWEBSERVICE(A1)"), None);
        assert_eq!(reach("STDEV.S(A1:A3)"), None);
        assert_eq!(reach("ooow:<A1> || <B1>"), None);
        assert_eq!(reach("ooow:DDE(\"a\")"), Some(What::Field));
    }

    #[test]
    fn hyperlinks_follow_the_link_policy() {
        assert_eq!(
            reach("HYPERLINK(\"file:///C:/x.exe\",\"x\")"),
            Some(What::Hyperlink)
        );
        assert_eq!(
            reach("HYPERLINK(\"https://example.jp\")"),
            Some(What::Hyperlink)
        );
        assert_eq!(judge("HYPERLINK(\"https://example.jp\",\"x\")", true), None);
        assert!(judge("HYPERLINK(\"file:///C:/x.exe\")", true).is_some());
        assert!(judge("of:=HYPERLINK(\"fi\"&\"le:///x\";\"x\")", true).is_some());
        assert!(judge("HYPERLINK(A1)", true).is_some());
    }
}
