//! HTML → readable text for the mail body.
//!
//! Owns: rendering an HTML part as plain text — paragraphs, lists and tables kept as lines;
//! script, style and comments gone; every link shown as `text <defanged URL>`; images as
//! `[画像: alt]`.
//! Invariants: no markup survives; a URL is never left clickable (schemes and dots are
//! defanged, `javascript:` and other schemes are not shown at all).

use html2text::render::{TaggedLine, TextDecorator};

/// Renders HTML as text (no wrapping: the reader's client wraps).
pub fn to_text(html: &str) -> String {
    let text = html2text::config::with_decorator(LinkDecorator::default())
        .no_table_borders()
        .allow_width_overflow()
        .string_from_read(html.as_bytes(), 10_000)
        .unwrap_or_else(|_| strip_tags(html));
    tidy(&text)
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

#[derive(Default)]
struct LinkDecorator {
    links: Vec<String>,
}

impl TextDecorator for LinkDecorator {
    type Annotation = ();

    fn decorate_link_start(&mut self, url: &str) -> (String, ()) {
        self.links.push(url.to_string());
        (String::new(), ())
    }
    fn decorate_link_end(&mut self) -> String {
        match self.links.pop().as_deref().and_then(defang) {
            Some(target) => format!(" <{target}>"),
            None => String::new(),
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
        LinkDecorator::default()
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
