//! HTML → readable text for the mail body.
//!
//! Owns: rendering an HTML part as plain text — paragraphs, lists and tables kept as lines;
//! script, style and comments gone; every link shown as `text <defanged URL>`; images as
//! `[画像: alt]`.
//! Invariants: no markup survives; a URL is never left clickable (schemes and dots are
//! defanged, `javascript:` and other schemes are not shown at all).

use html2text::render::{TaggedLine, TextDecorator};

use crate::error::{Error, Result};

/// Renders HTML as text (no wrapping: the reader's client wraps). Each link becomes its visible
/// text followed by `<defanged target>`, and `⚠表示と異なるリンク先` when the visible text names
/// another host than the target.
///
/// # Errors
/// [`Error::is_limit_exceeded`] when elements nest deeper than `max_depth`, or when rendering
/// would take longer than `time_left`. The renderer cannot be interrupted and its cost grows
/// with the square of the depth (200,000 nested `<div>`s took minutes; nested tables grow
/// faster still), so both are measured first by a linear scan of our own.
pub fn to_text(html: &str, max_depth: u32, time_left: std::time::Duration) -> Result<String> {
    let scan = scan(html, max_depth as usize);
    if scan.depth > max_depth as usize {
        return Err(Error::limit_exceeded(format!(
            "HTML elements nest deeper than {max_depth} levels"
        )));
    }
    let estimate = std::time::Duration::from_nanos(scan.cost_ns(html.len()));
    if estimate > time_left {
        return Err(Error::limit_exceeded(format!(
            "rendering this HTML as text would take about {} ms; {} ms are left",
            estimate.as_millis(),
            time_left.as_millis()
        )));
    }
    Ok(render(html))
}

/// What [`scan`] found: how deep the elements nest, and how much nesting the renderer walks.
struct Scan {
    /// The deepest nesting (stops growing once past the limit the scan was given).
    depth: usize,
    /// The depth summed over every element started: the renderer's cost for nesting.
    depth_sum: u64,
    /// The square of the table nesting summed over every table started: a table's layout is
    /// worked out again for each table around it.
    table_depth_squares: u64,
}

/// Rendering cost per input byte, measured on html2text 0.17 at 0.3–2.2 µs a byte (plain text,
/// wide and long tables, links, spans) on a loaded core, and rounded up.
const NS_PER_BYTE: u64 = 3_000;
/// Cost per level of nesting under each element (250 nested `<div>`s, 100 times: 0.42 s).
const NS_PER_DEPTH: u64 = 300;
/// Cost per squared table depth of each table (250 nested tables: 0.49 s; 128: 0.08 s).
const NS_PER_TABLE_DEPTH_SQUARED: u64 = 400;

impl Scan {
    /// A generous estimate of what rendering `len` bytes with this shape costs.
    fn cost_ns(&self, len: usize) -> u64 {
        (len as u64)
            .saturating_mul(NS_PER_BYTE)
            .saturating_add(self.depth_sum.saturating_mul(NS_PER_DEPTH))
            .saturating_add(
                self.table_depth_squares
                    .saturating_mul(NS_PER_TABLE_DEPTH_SQUARED),
            )
    }
}

/// Elements that never have content, so never nest.
const VOID: &[&str] = &[
    "area", "base", "basefont", "bgsound", "br", "col", "embed", "frame", "hr", "image", "img",
    "input", "keygen", "link", "meta", "param", "source", "track", "wbr",
];

/// Elements the HTML parser closes by itself when a sibling starts (`<p>`, `<li>`, `<td>`…),
/// and the document's own frame: an unclosed one does not deepen the tree.
const SELF_ENDING: &[&str] = &[
    "p", "li", "dt", "dd", "tr", "td", "th", "option", "optgroup", "thead", "tbody", "tfoot",
    "colgroup", "caption", "rb", "rt", "rtc", "rp", "html", "head", "body",
];

/// Elements whose content is text up to their own end tag, never markup.
const RAW_TEXT: &[&str] = &[
    "script",
    "style",
    "textarea",
    "title",
    "xmp",
    "iframe",
    "noembed",
    "noframes",
    "plaintext",
];

/// How deeply the elements of `html` nest, as the HTML parser would build them, give or take:
/// the scan keeps a stack of open elements and may only overestimate (an end tag closes what
/// it names and everything opened inside it; an end tag naming nothing open is ignored, as
/// the parser ignores it). `<div/>` opens a `div` in HTML, so `/>` closes only inside SVG or
/// MathML. Linear in the input; stops once past `stop_after`.
fn scan(html: &str, stop_after: usize) -> Scan {
    let bytes = html.as_bytes();
    let mut stack: Vec<String> = Vec::new();
    let mut open: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut deepest = 0;
    let mut depth_sum = 0u64;
    let mut table_depth_squares = 0u64;
    let mut at = 0;
    while let Some(lt) = memchr::memchr(b'<', &bytes[at..]).map(|i| at + i) {
        let rest = &bytes[lt..];
        if rest.starts_with(b"<!--") {
            at = find(bytes, lt + 4, b"-->").map_or(bytes.len(), |e| e + 3);
            continue;
        }
        let closing = rest.get(1) == Some(&b'/');
        let name_start = lt + 1 + usize::from(closing);
        let name_len = bytes[name_start.min(bytes.len())..]
            .iter()
            .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b':' | b'_'))
            .count();
        let tag_end = memchr::memchr(b'>', &bytes[lt..]).map_or(bytes.len(), |e| lt + e);
        at = (tag_end + 1).min(bytes.len());
        if name_len == 0 || !bytes[name_start].is_ascii_alphabetic() {
            continue; // `<!doctype`, `<?xml`, a lone `<`
        }
        let name = html[name_start..name_start + name_len].to_ascii_lowercase();
        if closing {
            if open.get(&name).is_some_and(|&n| n > 0) {
                while let Some(top) = stack.pop() {
                    if let Some(n) = open.get_mut(&top) {
                        *n -= 1;
                    }
                    if top == name {
                        break;
                    }
                }
            }
            continue;
        }
        if RAW_TEXT.contains(&name.as_str()) {
            let close = format!("</{name}");
            let lower_from = at;
            at = find_ascii_ci(bytes, lower_from, close.as_bytes()).unwrap_or(bytes.len());
            continue;
        }
        let foreign = ["svg", "math"]
            .iter()
            .any(|f| open.get(*f).is_some_and(|&n| n > 0));
        let self_closed = tag_end > lt && bytes[tag_end - 1] == b'/' && foreign;
        if VOID.contains(&name.as_str()) || SELF_ENDING.contains(&name.as_str()) || self_closed {
            continue;
        }
        let count = open.entry(name.clone()).or_insert(0);
        *count += 1;
        if name == "table" {
            table_depth_squares += (*count as u64).pow(2);
        }
        stack.push(name);
        deepest = deepest.max(stack.len());
        depth_sum += stack.len() as u64;
        if deepest > stop_after {
            break;
        }
    }
    Scan {
        depth: deepest,
        depth_sum,
        table_depth_squares,
    }
}

/// How deeply the elements of `html` nest (see [`scan`]).
#[cfg(test)]
fn nesting_depth(html: &str, stop_after: usize) -> usize {
    scan(html, stop_after).depth
}

/// Where `needle` next occurs in `hay` at or after `from`.
fn find(hay: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(hay.get(from..)?, needle).map(|i| from + i)
}

/// [`find`] ignoring ASCII case (`needle` is lower case).
fn find_ascii_ci(hay: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    let first = needle.first()?;
    let mut at = from;
    while let Some(i) = memchr::memchr(*first, hay.get(at..)?) {
        let start = at + i;
        let end = start + needle.len();
        if hay
            .get(start..end)
            .is_some_and(|w| w.eq_ignore_ascii_case(needle))
        {
            return Some(start);
        }
        at = start + 1;
    }
    None
}

/// [`to_text`] once the depth is known to be bounded.
fn render(html: &str) -> String {
    let decorator = LinkDecorator {
        links: Vec::new(),
        misleading: misleading_targets(html),
    };
    let text = html2text::config::with_decorator(decorator)
        .no_table_borders()
        .allow_width_overflow()
        .string_from_read(html.as_bytes(), 10_000)
        .unwrap_or_else(|_| strip_tags(html));
    tidy(&text)
}

/// The targets of links whose visible text names another host than the target. Read by a
/// small tag scanner of our own, since the renderer's decorator never sees a link's text; a
/// target is marked wherever it appears if any link to it misleads.
fn misleading_targets(html: &str) -> std::collections::HashSet<String> {
    let mut out = std::collections::HashSet::new();
    let lower = html.to_ascii_lowercase();
    let mut from = 0;
    while let Some(at) = lower[from..].find("<a") {
        let start = from + at;
        from = start + 2;
        if !lower[from..].starts_with(|c: char| c.is_ascii_whitespace()) {
            continue;
        }
        let Some(tag_end) = lower[start..].find('>').map(|e| start + e) else {
            break;
        };
        let Some(href) = attribute(&html[start..tag_end], "href") else {
            continue;
        };
        let close = lower[tag_end..]
            .find("</a")
            .map_or(lower.len(), |e| tag_end + e);
        let visible = entities(&strip_tags(&html[tag_end + 1..close.max(tag_end + 1)]));
        if crate::mail::links::misleading(&visible, &href) {
            out.insert(href);
        }
        from = close.max(from);
    }
    out
}

/// An attribute's value in a start tag (quoted or not), entities decoded.
fn attribute(tag: &str, name: &str) -> Option<String> {
    let lower = tag.to_ascii_lowercase();
    let mut from = 0;
    while let Some(at) = lower[from..].find(name) {
        let i = from + at;
        from = i + name.len();
        let before_ok = lower[..i].ends_with(|c: char| c.is_ascii_whitespace());
        let rest = lower[from..].trim_start();
        if !before_ok || !rest.starts_with('=') {
            continue;
        }
        let value_start = tag.len() - rest.len() + 1;
        let value = tag[value_start..].trim_start();
        let raw = match value.chars().next() {
            Some(q @ ('"' | '\'')) => value[1..].split(q).next().unwrap_or(""),
            _ => value
                .split(|c: char| c.is_ascii_whitespace() || c == '>')
                .next()
                .unwrap_or(""),
        };
        return Some(entities(raw).trim().to_string());
    }
    None
}

/// The few character references link text and targets use.
fn entities(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let end = rest.find(';').filter(|&e| e < 12);
        let decoded = end.and_then(|e| {
            let name = &rest[1..e];
            match name {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                "nbsp" => Some(' '),
                _ => {
                    let num = name.strip_prefix('#')?;
                    let v = match num.strip_prefix(['x', 'X']) {
                        Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                        None => num.parse().ok()?,
                    };
                    char::from_u32(v)
                }
            }
        });
        match (decoded, end) {
            (Some(c), Some(e)) => {
                out.push(c);
                rest = &rest[e + 1..];
            }
            _ => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Collapses runs of blank lines and trailing spaces.
pub fn tidy(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank = 0;
    for line in text.lines() {
        let line = line.trim_end();
        if line.is_empty() {
            blank += 1;
            if blank > 1 {
                continue;
            }
        } else {
            blank = 0;
        }
        out.push_str(line);
        out.push('\n');
    }
    out.trim_matches('\n').to_string()
}

/// A last-resort tag stripper, used only if the HTML renderer fails.
fn strip_tags(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

/// Makes a URL unclickable: `https://example.jp/a` → `hxxps://example[.]jp/a`. Returns None for
/// schemes that are not shown at all (`javascript:`, `data:`, `vbscript:`, `file:`…).
pub fn defang(url: &str) -> Option<String> {
    let url: String = url.trim().chars().filter(|c| !c.is_control()).collect();
    let lower = url.to_ascii_lowercase();
    let (scheme, rest) = if let Some(r) = lower.strip_prefix("https://") {
        ("hxxps://", &url[url.len() - r.len()..])
    } else if let Some(r) = lower.strip_prefix("http://") {
        ("hxxp://", &url[url.len() - r.len()..])
    } else if let Some(r) = lower.strip_prefix("ftp://") {
        ("fxp://", &url[url.len() - r.len()..])
    } else if let Some(r) = lower.strip_prefix("mailto:") {
        return Some(format!("mailto:{}", r.replace('.', "[.]")));
    } else {
        // In-page anchors, cid: and every other scheme are not shown.
        return None;
    };
    let (host, path) = match rest.find(['/', '?', '#']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    Some(format!("{scheme}{}{path}", host.replace('.', "[.]")))
}

struct LinkDecorator {
    links: Vec<String>,
    /// Targets whose link text names another host (see [`misleading_targets`]).
    misleading: std::collections::HashSet<String>,
}

impl TextDecorator for LinkDecorator {
    type Annotation = ();

    fn decorate_link_start(&mut self, url: &str) -> (String, ()) {
        self.links.push(url.to_string());
        (String::new(), ())
    }
    fn decorate_link_end(&mut self) -> String {
        let href = self.links.pop().unwrap_or_default();
        let warn = if self.misleading.contains(href.trim()) {
            format!(" {}", crate::mail::links::MISLEADING)
        } else {
            String::new()
        };
        match defang(&href) {
            Some(target) => format!(" <{target}>{warn}"),
            None => warn,
        }
    }
    fn decorate_em_start(&self) -> (String, ()) {
        (String::new(), ())
    }
    fn decorate_em_end(&self) -> String {
        String::new()
    }
    fn decorate_strong_start(&self) -> (String, ()) {
        (String::new(), ())
    }
    fn decorate_strong_end(&self) -> String {
        String::new()
    }
    fn decorate_strikeout_start(&self) -> (String, ()) {
        (String::new(), ())
    }
    fn decorate_strikeout_end(&self) -> String {
        String::new()
    }
    fn decorate_code_start(&self) -> (String, ()) {
        (String::new(), ())
    }
    fn decorate_code_end(&self) -> String {
        String::new()
    }
    fn decorate_preformat_first(&self) {}
    fn decorate_preformat_cont(&self) {}
    fn decorate_image(&mut self, _src: &str, title: &str) -> (String, ()) {
        let title = title.trim();
        if title.is_empty() {
            ("[画像]".into(), ())
        } else {
            (format!("[画像: {title}]"), ())
        }
    }
    fn header_prefix(&self, _level: usize) -> String {
        String::new()
    }
    fn quote_prefix(&self) -> String {
        "> ".into()
    }
    fn unordered_item_prefix(&self) -> String {
        "・".into()
    }
    fn ordered_item_prefix(&self, i: i64) -> String {
        format!("{i}. ")
    }
    fn make_subblock_decorator(&self) -> Self {
        LinkDecorator {
            links: Vec::new(),
            misleading: self.misleading.clone(),
        }
    }
    fn finalise(&mut self, _urls: Vec<String>) -> Vec<TaggedLine<()>> {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const LONG: Duration = Duration::from_secs(60);

    #[test]
    fn defangs_links_and_drops_script() {
        let text = to_text("<html><head><style>p{color:red}</style><script>alert(1)</script></head><body><p>お知らせ <a href=\"https://www.example.jp/login?a=1\">こちら</a></p><!-- hidden --><img src=\"cid:x\" alt=\"ロゴ\"><ul><li>一</li><li>二</li></ul><a href=\"javascript:evil()\">押す</a></body></html>", 256, LONG).unwrap();
        assert!(
            text.contains("こちら <hxxps://www[.]example[.]jp/login?a=1>"),
            "{text}"
        );
        assert!(text.contains("[画像: ロゴ]"), "{text}");
        assert!(text.contains("・一") && text.contains("押す"), "{text}");
        assert!(
            !text.contains("alert")
                && !text.contains("color")
                && !text.contains("hidden")
                && !text.contains("javascript"),
            "{text}"
        );
    }

    #[test]
    fn tables_become_lines() {
        let text = to_text("<table><tr><td>品目</td><td>金額</td></tr><tr><td>用紙</td><td>1,000円</td></tr></table>", 256, LONG).unwrap();
        assert!(
            text.lines()
                .any(|l| l.contains("品目") && l.contains("金額")),
            "{text}"
        );
        assert!(
            text.lines()
                .any(|l| l.contains("用紙") && l.contains("1,000円")),
            "{text}"
        );
    }

    #[test]
    fn nesting_depth_follows_the_tree_the_parser_builds() {
        assert_eq!(nesting_depth(&"<div>".repeat(50), 1000), 50);
        assert_eq!(nesting_depth(&"<div/>".repeat(50), 1000), 50);
        assert_eq!(nesting_depth(&"<div></div>".repeat(50), 1000), 1);
        // Self-ending and void elements do not deepen the tree; stray end tags close nothing.
        assert_eq!(
            nesting_depth(&"<p>a<li>b<br><img src=x>".repeat(50), 1000),
            0
        );
        assert_eq!(nesting_depth(&"<div></span>".repeat(50), 1000), 50);
        // An end tag closes what was opened inside its element.
        assert_eq!(nesting_depth("<div><b><i><u></div><div>", 1000), 4);
        // `/>` closes inside SVG; script text is not markup.
        let svg = format!("<svg>{}</svg>", "<path d='M0 0'/>".repeat(50));
        assert_eq!(nesting_depth(&svg, 1000), 1);
        let script = format!("<script>{}</SCRIPT><div>", "<div>".repeat(50));
        assert_eq!(nesting_depth(&script, 1000), 1);
        assert_eq!(nesting_depth(&"<!-- <div> -->".repeat(50), 1000), 0);
        // The scan stops once past the limit.
        assert_eq!(nesting_depth(&"<div>".repeat(5000), 10), 11);
    }

    #[test]
    fn html_nested_past_the_limit_is_refused_before_parsing() {
        let deep = "<div>".repeat(300);
        let err = to_text(&deep, 256, LONG).unwrap_err();
        assert!(err.is_limit_exceeded(), "{err}");
        assert!(to_text(&"<div>".repeat(200), 256, LONG).is_ok());
    }

    #[test]
    fn html_that_would_not_render_in_the_time_left_is_refused_before_parsing() {
        let tables = "<table><tr><td>x".repeat(200);
        let err = to_text(&tables, 256, Duration::from_millis(50)).unwrap_err();
        assert!(err.is_limit_exceeded(), "{err}");
        let big = "<p>本文</p>".repeat(100_000);
        let err = to_text(&big, 256, Duration::from_millis(50)).unwrap_err();
        assert!(err.is_limit_exceeded(), "{err}");
        assert!(to_text("<p>本文</p>", 256, Duration::from_millis(50)).is_ok());
    }
}
