//! Rules for names that mukaika derives or accepts from outside: export paths, delivery keys
//! and mail addresses in configuration and account records.
//!
//! Owns: deciding whether a name may be used as is (pure functions, no I/O).
//! Invariant: a name these functions accept cannot name a path outside its folder, a Windows
//! device, or carry a control or bidi character into a folder name.
//! Must never: rewrite a name silently — callers decide what to do with a refusal.

/// Why a path cannot be exported as named, if it cannot.
pub fn check_name(rel: &str) -> Option<String> {
    if rel.len() > 1024 {
        return Some("パスが長すぎます / path too long".into());
    }
    let segments: Vec<&str> = rel.split('/').collect();
    for (i, &segment) in segments.iter().enumerate() {
        let is_folder = i + 1 < segments.len();
        if segment.is_empty() || segment == "." || segment == ".." {
            return Some(format!("不正なパス要素 / bad path segment {segment:?}"));
        }
        if segment.contains('\u{FFFD}') {
            return Some("文字コードを判別できない名前 / undecodable name".into());
        }
        // Bidi overrides and isolates in a folder name too: the folder would be mirrored to
        // the export side as it is (`資料\u{202e}txt.exe` shows as `資料exe.txt`). A file name
        // with one goes on to the sanitizer, which holds it as a disguise and names its report
        // with the control replaced.
        if segment.chars().any(|c| {
            c.is_control()
                || (is_folder && mukaika_sanitizers::names::is_hidden_control(c))
                || "<>:\"\\|?*".contains(c)
        }) {
            return Some(format!(
                "使えない文字を含む名前 / reserved characters in {segment:?}"
            ));
        }
        if segment.len() > 255 {
            return Some("名前が長すぎます / name too long".into());
        }
        if segment.ends_with('.') || segment.ends_with(' ') {
            return Some(format!(
                "末尾が . または空白の名前 / trailing dot or space in {segment:?}"
            ));
        }
        let stem = segment.split('.').next().unwrap_or("").to_ascii_uppercase();
        let device = matches!(stem.as_str(), "CON" | "PRN" | "AUX" | "NUL" | "CLOCK$")
            || (stem.len() == 4
                && (stem.starts_with("COM") || stem.starts_with("LPT"))
                && stem.as_bytes()[3].is_ascii_digit());
        if device {
            return Some(format!(
                "Windows の予約名 / reserved device name {segment:?}"
            ));
        }
    }
    None
}

/// A delivery key reduced to what may stand in a file name (ASCII letters, digits, `-`): the
/// delivered marker's name here and, with `.mukaika`, the maildir file's name — one rule, so the
/// two always agree.
pub fn safe_key(key: &str) -> String {
    key.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect()
}

/// Whether `s` looks like one mail address (`local@domain`, no spaces, controls or brackets):
/// enough to refuse header injection and typos, not a full RFC 5321 parser.
pub fn plausible_address(s: &str) -> bool {
    let Some((local, domain)) = s.rsplit_once('@') else {
        return false;
    };
    s.len() <= 254
        && !local.is_empty()
        && !domain.is_empty()
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && s.chars()
            .all(|c| !c.is_control() && !c.is_whitespace() && !"<>()[],;:\"\\".contains(c))
}
