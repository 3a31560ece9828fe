//! CSV downloads of the quarantine list and of an audit search.
//!
//! Owns: [`download`], the one maker of a CSV answer, and [`cell`], how one value is written.
//! Invariants: UTF-8 with a byte-order mark (Excel in Japan reads BOM-less UTF-8 as Shift_JIS),
//! CRLF line ends, every cell quoted; a cell that a spreadsheet could run as a formula (one
//! starting with `=`, `+`, `-`, `@` — or their fullwidth forms, after blanks — tab or CR)
//! gets a leading `'`, so a sender address or a subject chosen by an attacker stays text; times are Japan time (the pages' convention).
//! Must never: write a value unquoted, or carry anything but the metadata the pages show.

use axum::body::Body;
use axum::http::{header, Response};

/// The byte-order mark that makes Excel read the file as UTF-8.
const BOM: &str = "\u{FEFF}";

/// One value as a quoted CSV cell, defused against formula injection.
pub(super) fn cell(value: &str) -> String {
    // The sanitizer's own notion of a formula start (fullwidth ＝ and friends, after leading
    // blanks or quotes), plus a leading tab or CR, which OWASP lists as triggers themselves.
    let risky =
        value.starts_with(['\t', '\r']) || mukaika_sanitizers::text::could_start_formula(value);
    let mut out = String::with_capacity(value.len() + 3);
    out.push('"');
    if risky {
        out.push('\'');
    }
    out.push_str(&value.replace('"', "\"\""));
    out.push('"');
    out
}

/// The whole file: BOM, the heading row, then the rows, CRLF after each.
pub(super) fn render(head: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = String::from(BOM);
    let mut line = |cells: Vec<String>| {
        out.push_str(&cells.join(","));
        out.push_str("\r\n");
    };
    line(head.iter().map(|h| cell(h)).collect());
    for r in rows {
        line(r.iter().map(|v| cell(v)).collect());
    }
    out
}

/// A CSV attachment named `name` (ASCII, chosen here, never from input).
pub(super) fn download(name: &'static str, head: &[&str], rows: &[Vec<String>]) -> Response<Body> {
    Response::builder()
        .header(header::CONTENT_TYPE, "text/csv; charset=utf-8")
        .header(
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{name}\""),
        )
        .body(Body::from(render(head, rows)))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_cells_are_defused_and_quotes_doubled() {
        assert_eq!(cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(cell("+1"), "\"'+1\"");
        assert_eq!(cell("-1"), "\"'-1\"");
        assert_eq!(cell("@SUM(A1)"), "\"'@SUM(A1)\"");
        assert_eq!(cell("\tx"), "\"'\tx\"");
        assert_eq!(cell("\rx"), "\"'\rx\"");
        assert_eq!(cell("見積書"), "\"見積書\"");
        assert_eq!(cell("a=b"), "\"a=b\"");
    }

    #[test]
    fn fullwidth_and_padded_formula_starts_are_defused_too() {
        // What a Japanese spreadsheet folds into = + - @, and blanks or quotes before them.
        for risky in [
            "＝HYPERLINK(\"http://x/\",\"請求書\")",
            "＋1",
            "－1",
            "＠SUM(A1)",
            "﹦1",
            "\u{2212}1",
            " =1",
            "\u{3000}=1",
        ] {
            assert!(
                cell(risky).starts_with("\"'"),
                "{risky:?} → {}",
                cell(risky)
            );
        }
        assert_eq!(cell("請求書＝見積書"), "\"請求書＝見積書\"");
    }

    #[test]
    fn the_file_starts_with_a_bom_and_ends_lines_with_crlf() {
        let text = render(&["ID"], &[vec!["a,b".into()]]);
        assert_eq!(text, "\u{FEFF}\"ID\"\r\n\"a,b\"\r\n");
    }
}
