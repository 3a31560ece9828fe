//! HTML building blocks for the review UI: escaping, the page frame, the stylesheet.
//!
//! Owns: [`esc`], the one way a dynamic string reaches a page, and the layout every page
//! shares. Invariants: every value that did not come from a string literal in this module or
//! in `pages` goes through [`esc`]; bidirectional overrides and control characters are shown
//! as `[U+XXXX]`, never passed to the browser; no page carries script or inline style (the CSP
//! forbids both).

use std::fmt::Write;

/// The UI language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// 日本語 (the default).
    Ja,
    /// English.
    En,
}

impl Lang {
    /// Picks the Japanese or the English text.
    pub fn t<'a>(self, ja: &'a str, en: &'a str) -> &'a str {
        match self {
            Lang::Ja => ja,
            Lang::En => en,
        }
    }
}

/// Escapes text for HTML element content and double-quoted attributes.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\n' | '\t' => out.push(c),
            c if c.is_control()
                || matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}') =>
            {
                let _ = write!(out, "[U+{:04X}]", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// A green notice paragraph.
pub fn notice(text: &str) -> String {
    format!("<p class=\"notice\">{}</p>", esc(text))
}

/// A red error paragraph.
pub fn error(text: &str) -> String {
    format!("<p class=\"error\">{}</p>", esc(text))
}

/// [`esc`] of at most `max` characters, with an ellipsis when cut (lists stay readable with
/// 10 KB names; the detail page shows the whole name).
pub fn esc_short(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        esc(s)
    } else {
        let cut: String = s.chars().take(max).collect();
        format!("{}…", esc(&cut))
    }
}

/// Percent-encodes a query value.
pub fn url(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Who is looking at a page (for the header bar).
pub struct Viewer<'a> {
    /// Account name.
    pub user: &'a str,
    /// Role label.
    pub role: &'a str,
    /// Links the role may follow.
    pub nav: &'a [(&'a str, &'a str)],
    /// The session's CSRF token (for the logout form).
    pub csrf: &'a str,
}

/// A whole page.
pub fn page(lang: Lang, title: &str, viewer: Option<&Viewer<'_>>, body: &str) -> String {
    let mut nav = String::new();
    if let Some(v) = viewer {
        nav.push_str("<nav>");
        for (href, label) in v.nav {
            let _ = write!(nav, "<a href=\"{}\">{}</a>", esc(href), esc(label));
        }
        let _ = write!(
            nav,
            "<span class=\"who\">{} ({})</span><form method=\"post\" action=\"/logout\" class=\"inline\"><input type=\"hidden\" name=\"csrf\" value=\"{}\"><button>{}</button></form>",
            esc(v.user),
            esc(v.role),
            esc(v.csrf),
            lang.t("ログアウト", "Log out")
        );
        nav.push_str("</nav>");
    }
    let other = match lang {
        Lang::Ja => "<a href=\"/lang/en\" lang=\"en\">English</a>",
        Lang::En => "<a href=\"/lang/ja\" lang=\"ja\">日本語</a>",
    };
    format!(
        "<!DOCTYPE html>\n<html lang=\"{}\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><title>{} — mukaika</title><link rel=\"stylesheet\" href=\"/static/style.css\"></head><body><header><strong>mukaika</strong> {}{nav}<span class=\"lang\">{other}</span></header><main><h1>{}</h1>{body}</main></body></html>",
        match lang {
            Lang::Ja => "ja",
            Lang::En => "en",
        },
        esc(title),
        lang.t("無害化ゲートウェイ 隔離管理", "quarantine review"),
        esc(title),
    )
}

/// The stylesheet (served from `/static/style.css`; the CSP allows no inline style).
pub const STYLE: &str = "body{font-family:'Noto Sans JP','IPAexGothic',sans-serif;margin:0;color:#222;background:#f7f7f5}\
header{background:#1d3557;color:#fff;padding:.5em 1em;display:flex;gap:1em;align-items:center;flex-wrap:wrap}\
header a{color:#fff}nav{display:flex;gap:1em;align-items:center;flex:1}.who{margin-left:auto}\
main{padding:1em 2em}table{border-collapse:collapse;width:100%;background:#fff}\
th,td{border:1px solid #ccc;padding:.3em .5em;text-align:left;vertical-align:top;overflow-wrap:anywhere}\
th{background:#e9edf2}pre{background:#fff;border:1px solid #ccc;padding:.5em;white-space:pre-wrap;overflow-wrap:anywhere;max-height:40em;overflow:auto}\
.error{background:#fde2e2;border:1px solid #c00;padding:.5em}.notice{background:#e6f4ea;border:1px solid #2a7;padding:.5em}\
.inline{display:inline}form.filters{display:flex;flex-wrap:wrap;gap:.5em;margin-bottom:1em}\
form.filters label{display:flex;flex-direction:column;font-size:.85em}fieldset{background:#fff;margin:1em 0}\
.pager{margin:1em 0;display:flex;gap:1em}.badge{padding:0 .4em;border-radius:.3em;background:#ddd}\
.secret{font-family:monospace;font-size:1.4em;background:#fff3cd;padding:.3em}";
