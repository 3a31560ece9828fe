//! HTML → readable text for the mail body.
//!
//! Owns: rendering an HTML part as plain text — paragraphs, lists and tables kept as lines;
//! script, style and comments gone; every link shown as `text <defanged URL>`; images as
//! `[画像: alt]`.
//! Invariants: no markup survives; a URL is never left clickable (schemes and dots are
//! defanged, `javascript:` and other schemes are not shown at all).

use html2text::render::{TaggedLine, TextDecorator};

/// Renders HTML as text (no wrapping: the reader's client wraps). Each link becomes its visible
/// text followed by `<defanged target>`, and `⚠表示と異なるリンク先` when the visible text names
/// another host than the target.
pub fn to_text(html: &str) -> String {
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

    #[test]
    fn defangs_links_and_drops_script() {
        let text = to_text("<html><head><style>p{color:red}</style><script>alert(1)</script></head><body><p>お知らせ <a href=\"https://www.example.jp/login?a=1\">こちら</a></p><!-- hidden --><img src=\"cid:x\" alt=\"ロゴ\"><ul><li>一</li><li>二</li></ul><a href=\"javascript:evil()\">押す</a></body></html>");
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
        let text = to_text("<table><tr><td>品目</td><td>金額</td></tr><tr><td>用紙</td><td>1,000円</td></tr></table>");
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
}
