//! Links in the delivered body: every one made unclickable, and misleading ones marked.
//!
//! Owns: the last pass over the converted body text (plain text, HTML rendered as text, quoted
//! messages, Outlook bodies alike) that defangs every URL a mail client would turn into a
//! link: `scheme://…` (`http`/`https` become `hxxp`/`hxxps`, other schemes get `[:]`), the
//! colon-only schemes that start programs (`file:`, `ms-msdt:`, `search-ms:`…), `www.` forms,
//! bare IPv4 hosts followed by a path or port, and UNC paths (`\\host\share`, which leak the
//! user's NTLM hash when clicked). Dots of a defanged host become `[.]`.
//! Invariants: the pass is idempotent (what it writes matches none of its own patterns);
//! `mailto:` addresses and plain mail addresses stay as they are; no text other than the URL
//! itself changes.
//! Must never: leave a `http://`, `https://`, `www.` or `\\host` form in a body delivered under a
//! footer that says links are disabled.

/// Defangs every link form in `text`.
pub fn defang_all(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 16);
    let bytes = text.as_bytes();
    let mut i = 0;
    let mut copied = 0;
    while i < bytes.len() {
        let at_word_start = i == 0 || !is_word_byte(bytes[i - 1]);
        if let Some((replacement, len)) = match_at(text, i, at_word_start) {
            out.push_str(&text[copied..i]);
            out.push_str(&replacement);
            i += len;
            copied = i;
            continue;
        }
        // Advance by one character, not one byte.
        i += text[i..].chars().next().map_or(1, char::len_utf8);
    }
    out.push_str(&text[copied..]);
    out
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'@' | b'+')
}

/// Schemes that launch something on Windows without `//`.
const COLON_SCHEMES: &[&str] = &[
    "file:",
    "search-ms:",
    "search:",
    "javascript:",
    "vbscript:",
    "data:",
    "jar:",
    "smb:",
];

/// The link starting at byte `i`, if any: (defanged form, bytes consumed).
fn match_at(text: &str, i: usize, at_word_start: bool) -> Option<(String, usize)> {
    let rest = &text[i..];
    let b = rest.as_bytes();
    // UNC path: \\host\share (also \\?\UNC and \\.\ forms).
    if b.starts_with(b"\\\\")
        && b.get(2)
            .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, b'?' | b'.'))
    {
        let len = url_len(rest);
        if rest[..len].contains('\\') && len > 3 {
            let body = &rest[2..len];
            return Some((format!("[\\\\]{}", defang_authority(body)), len));
        }
    }
    // Every other form starts a word with an ASCII letter or digit; this check keeps the pass
    // cheap over Japanese text, where nearly every position starts a "word".
    if !at_word_start || !b.first().is_some_and(u8::is_ascii_alphanumeric) {
        return None;
    }
    // scheme://
    let scheme_len = b
        .iter()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
        .count();
    if scheme_len > 0 && b[0].is_ascii_alphabetic() && rest[scheme_len..].starts_with("://") {
        let scheme = rest[..scheme_len].to_ascii_lowercase();
        if scheme == "hxxp" || scheme == "hxxps" || scheme == "fxp" {
            return None;
        }
        let len = url_len(rest);
        if len <= scheme_len + 3 {
            return None;
        }
        let after = &rest[scheme_len + 3..len];
        let new_scheme = match scheme.as_str() {
            "http" => "hxxp://".to_string(),
            "https" => "hxxps://".to_string(),
            _ => format!("{}[:]//", &rest[..scheme_len]),
        };
        return Some((format!("{new_scheme}{}", defang_authority(after)), len));
    }
    // Colon schemes that start programs: file:, ms-*:, search-ms:.
    let starts_with = |prefix: &str| {
        b.get(..prefix.len())
            .is_some_and(|h| h.eq_ignore_ascii_case(prefix.as_bytes()))
    };
    let colon_scheme = COLON_SCHEMES
        .iter()
        .find(|s| starts_with(s))
        .map(|s| s.len())
        .or_else(|| {
            if !starts_with("ms-") {
                return None;
            }
            let n = b
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric() || **c == b'-')
                .count();
            (b.get(n) == Some(&b':') && n > 3).then_some(n + 1)
        });
    if let Some(n) = colon_scheme {
        let len = url_len(rest).max(n);
        if len > n {
            let after = &rest[n..len];
            return Some((
                format!("{}[:]{}", &rest[..n - 1], defang_authority(after)),
                len,
            ));
        }
    }
    // www.host
    if starts_with("www.") && b.get(4).is_some_and(|c| c.is_ascii_alphanumeric()) {
        let len = url_len(rest);
        return Some((defang_authority(&rest[..len]), len));
    }
    // A bare IPv4 host with a path or port: 192.0.2.1/login, 192.0.2.1:8080.
    if let Some(host_len) = ipv4_len(b) {
        if matches!(b.get(host_len), Some(b'/') | Some(b':'))
            && b.get(host_len + 1)
                .is_some_and(|c| !c.is_ascii_whitespace())
        {
            let len = url_len(rest);
            return Some((defang_authority(&rest[..len]), len));
        }
    }
    None
}

/// Dots in the host part (up to the first `/`, `?`, `#` or `\`) become `[.]`.
fn defang_authority(s: &str) -> String {
    let end = s.find(['/', '?', '#', '\\']).unwrap_or(s.len());
    format!("{}{}", s[..end].replace('.', "[.]"), &s[end..])
}

/// How far a URL runs: to white space, a quote or angle bracket, or a character no URL
/// contains; trailing punctuation that ends a sentence is left out, as clients do.
fn url_len(s: &str) -> usize {
    let mut len = 0;
    for (i, c) in s.char_indices() {
        if c.is_whitespace()
            || matches!(c, '<' | '>' | '"' | '\'' | '`' | '|' | '^' | '{' | '}')
            || (!c.is_ascii() && is_cjk_boundary(c))
            || c.is_control()
        {
            break;
        }
        len = i + c.len_utf8();
    }
    let trimmed =
        s[..len].trim_end_matches(['.', ',', ';', ':', '!', '?', ')', ']', '」', '。', '、']);
    // Keep a closing bracket that has its opening one inside the URL (Wikipedia-style links).
    let mut end = trimmed.len();
    for close in [')', ']'] {
        let open = if close == ')' { '(' } else { '[' };
        if s[end..len].starts_with(close) && trimmed.contains(open) {
            end += 1;
        }
    }
    end
}

/// Japanese text running straight after a URL ends it (clients do the same).
fn is_cjk_boundary(c: char) -> bool {
    matches!(c as u32, 0x3000..=0x9FFF | 0xF900..=0xFAFF | 0xFF00..=0xFFEF)
}

fn ipv4_len(b: &[u8]) -> Option<usize> {
    let mut i = 0;
    for part in 0..4 {
        let digits = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 || digits > 3 {
            return None;
        }
        let v: u32 = std::str::from_utf8(&b[i..i + digits]).ok()?.parse().ok()?;
        if v > 255 {
            return None;
        }
        i += digits;
        if part < 3 {
            if b.get(i) != Some(&b'.') {
                return None;
            }
            i += 1;
        }
    }
    Some(i)
}

/// A marker shown after a link whose visible text names a different place than its target.
pub const MISLEADING: &str = "⚠表示と異なるリンク先";

/// True when the visible text of a link names a URL or domain that is not the link's own host
/// (`<a href="https://evil.example/a">https://city.example.lg.jp/</a>`).
pub fn misleading(visible: &str, href: &str) -> bool {
    let Some(shown) = host_in_text(visible) else {
        return false;
    };
    match host_of(href) {
        Some(target) => {
            let shown = shown.trim_start_matches("www.");
            let target = target.trim_start_matches("www.");
            shown != target
        }
        // Text that looks like a web address over a non-web target (javascript:, data:).
        None => true,
    }
}

/// The host a link's target points at (lower case), for `scheme://host…` targets.
fn host_of(href: &str) -> Option<String> {
    let (_, after) = href.trim().split_once("://")?;
    let end = after.find(['/', '?', '#', '\\']).unwrap_or(after.len());
    let authority = &after[..end];
    let host = authority.rsplit('@').next().unwrap_or(authority);
    let host = host.split(':').next().unwrap_or(host);
    Some(host.trim_end_matches('.').to_ascii_lowercase())
}

/// A host named in visible link text: a URL (`https://a.example/…`), a `www.` name, or a bare
/// domain (`city.example.lg.jp`). Ordinary words are not hosts.
fn host_in_text(visible: &str) -> Option<String> {
    let t = visible.trim();
    if t.contains(char::is_whitespace) {
        return None;
    }
    if let Some(h) = host_of(t) {
        return Some(h);
    }
    let end = t.find(['/', '?', '#']).unwrap_or(t.len());
    let candidate = t[..end].trim_end_matches('.').to_ascii_lowercase();
    let labels: Vec<&str> = candidate.split('.').collect();
    let domain_like = labels.len() >= 2
        && labels
            .iter()
            .all(|l| !l.is_empty() && l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-'))
        && labels
            .last()
            .is_some_and(|tld| tld.len() >= 2 && tld.bytes().all(|c| c.is_ascii_alphabetic()));
    domain_like.then_some(candidate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defangs_web_urls_in_plain_text() {
        assert_eq!(
            defang_all("ログイン: https://evil.example/login?a=1 まで"),
            "ログイン: hxxps://evil[.]example/login?a=1 まで"
        );
        assert_eq!(
            defang_all("see http://a.example.jp."),
            "see hxxp://a[.]example[.]jp."
        );
        assert_eq!(
            defang_all("<HTTPS://A.EXAMPLE/x>"),
            "<hxxps://A[.]EXAMPLE/x>"
        );
    }

    #[test]
    fn defangs_www_ip_unc_and_program_schemes() {
        assert_eq!(defang_all("www.evil.example/a"), "www[.]evil[.]example/a");
        assert_eq!(
            defang_all("go to 192.0.2.7/login now"),
            "go to 192[.]0[.]2[.]7/login now"
        );
        assert_eq!(
            defang_all(r"open \\fileserver.example\share\a.docx"),
            r"open [\\]fileserver[.]example\share\a.docx"
        );
        assert_eq!(defang_all(r"\\srv\c$"), r"[\\]srv\c$");
        assert_eq!(
            defang_all("ftp://files.example/x"),
            "ftp[:]//files[.]example/x"
        );
        assert_eq!(
            defang_all("file:///C:/Windows/x.exe"),
            "file[:]///C:/Windows/x.exe"
        );
        assert_eq!(
            defang_all("ms-msdt:/id PCWDiagnostic"),
            "ms-msdt[:]/id PCWDiagnostic"
        );
        assert!(defang_all("search-ms:query=x&crumb=location:\\\\h\\s")
            .starts_with("search-ms[:]query"));
    }

    #[test]
    fn leaves_mail_addresses_versions_and_defanged_text_alone() {
        for s in [
            "mailto:taro@example.invalid",
            "taro@www.example.invalid",
            "version 1.2.3.4 released",
            "hxxps://evil[.]example/a",
            "www[.]example[.]jp",
            "[\\\\]srv\\share",
        ] {
            assert_eq!(defang_all(s), s);
        }
    }

    #[test]
    fn the_pass_is_idempotent() {
        let once =
            defang_all("https://a.example/ www.b.example \\\\c\\d 10.0.0.1:80/x ms-word:ofe|u|x");
        assert_eq!(defang_all(&once), once);
    }

    #[test]
    fn marks_link_text_that_names_another_host() {
        assert!(misleading(
            "https://city.example.lg.jp/safe",
            "https://evil.example/a"
        ));
        assert!(misleading("city.example.lg.jp", "https://evil.example/a"));
        assert!(!misleading("こちら", "https://evil.example/a"));
        assert!(!misleading(
            "https://www.city.example.lg.jp/a",
            "https://city.example.lg.jp/b"
        ));
        assert!(misleading("https://bank.example/", "javascript:alert(1)"));
    }
}
