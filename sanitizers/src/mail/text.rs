//! Plain-text helpers for the mail body: `[cid:…]` junk, iCalendar summaries and text/enriched.
//! (Files hidden in text — uuencode, yEnc, BinHex, base64 runs — are cut out by `smuggle`.)

/// Removes Outlook's `[cid:image001.png@01D…]` placeholders.
pub fn drop_cid_junk(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("[cid:") {
        out.push_str(&rest[..start]);
        match rest[start..].find(']') {
            Some(end) => rest = &rest[start + end + 1..],
            None => {
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// A short Japanese summary of an iCalendar invitation (件名, 日時, 場所, 主催者).
pub fn calendar_summary(ics: &str) -> String {
    // Unfold continuation lines first (RFC 5545 §3.1).
    let mut lines: Vec<String> = Vec::new();
    for raw in ics.lines() {
        let raw = raw.trim_end_matches('\r');
        if let Some(cont) = raw.strip_prefix([' ', '\t']) {
            if let Some(last) = lines.last_mut() {
                last.push_str(cont);
                continue;
            }
        }
        lines.push(raw.to_string());
    }
    let mut in_event = false;
    let (mut summary, mut start, mut end, mut location, mut organizer) =
        (None, None, None, None, None);
    for line in &lines {
        if line.eq_ignore_ascii_case("BEGIN:VEVENT") {
            in_event = true;
            continue;
        }
        if line.eq_ignore_ascii_case("END:VEVENT") {
            break;
        }
        if !in_event {
            continue;
        }
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let name = key.split(';').next().unwrap_or("").to_ascii_uppercase();
        let value = unescape_ics(value);
        match name.as_str() {
            "SUMMARY" => summary = Some(value),
            "DTSTART" => start = Some(format_ics_time(&value, key)),
            "DTEND" => end = Some(format_ics_time(&value, key)),
            "LOCATION" => location = Some(value),
            "ORGANIZER" => {
                let cn = key
                    .split(';')
                    .find_map(|p| p.strip_prefix("CN="))
                    .map(|c| c.trim_matches('"').to_string());
                let mail = value
                    .trim_start_matches("mailto:")
                    .trim_start_matches("MAILTO:")
                    .to_string();
                organizer = Some(match cn {
                    Some(cn) => format!("{cn} <{mail}>"),
                    None => mail,
                });
            }
            _ => {}
        }
    }
    let mut out = String::from("[予定表の招待]\n");
    out.push_str(&format!("件名: {}\n", summary.unwrap_or_default()));
    let when = match (start, end) {
        (Some(s), Some(e)) => format!("{s} 〜 {e}"),
        (Some(s), None) => s,
        _ => String::new(),
    };
    out.push_str(&format!("日時: {when}\n"));
    out.push_str(&format!("場所: {}\n", location.unwrap_or_default()));
    out.push_str(&format!("主催者: {}\n", organizer.unwrap_or_default()));
    out
}

fn unescape_ics(value: &str) -> String {
    value
        .replace("\\n", " ")
        .replace("\\N", " ")
        .replace("\\,", ",")
        .replace("\\;", ";")
        .replace("\\\\", "\\")
}

/// `20261201T100000Z` → `2026-12-01 10:00 (UTC)`; `TZID=Asia/Tokyo` is named when given.
fn format_ics_time(value: &str, key: &str) -> String {
    let v = value.trim();
    let tz = key
        .split(';')
        .find_map(|p| p.strip_prefix("TZID="))
        .map(str::to_string);
    if v.get(..8)
        .is_some_and(|d| d.bytes().all(|b| b.is_ascii_digit()))
    {
        let date = format!("{}-{}-{}", &v[..4], &v[4..6], &v[6..8]);
        let time = v
            .get(9..13)
            .filter(|t| t.bytes().all(|b| b.is_ascii_digit()))
            .map(|t| format!(" {}:{}", &t[..2], &t[2..]));
        let zone = if v.ends_with('Z') {
            Some("UTC".to_string())
        } else {
            tz
        };
        return format!(
            "{date}{}{}",
            time.unwrap_or_default(),
            zone.map(|z| format!(" ({z})")).unwrap_or_default()
        );
    }
    v.to_string()
}

/// text/enriched → text: formatting commands dropped, `<<` unescaped.
pub fn strip_enriched(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '<' {
            if chars.peek() == Some(&'<') {
                chars.next();
                out.push('<');
                continue;
            }
            for d in chars.by_ref() {
                if d == '>' {
                    break;
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_calendar_times_are_shown_not_sliced() {
        // Eight bytes that are not eight characters used to be sliced inside あ.
        assert_eq!(format_ics_time("1234567\u{3042}", ""), "1234567\u{3042}");
        assert_eq!(
            format_ics_time("20261201T100000Z", ""),
            "2026-12-01 10:00 (UTC)"
        );
    }

    #[test]
    fn summarises_an_invitation() {
        let ics = "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nSUMMARY:定例会議（架空）\r\nDTSTART;TZID=Asia/Tokyo:20261201T100000\r\nDTEND;TZID=Asia/Tokyo:20261201T110000\r\nLOCATION:第1会議\r\n 室\r\nORGANIZER;CN=\"架空 花子\":mailto:hanako@example.invalid\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
        let s = calendar_summary(ics);
        assert!(s.contains("件名: 定例会議（架空）"), "{s}");
        assert!(
            s.contains("日時: 2026-12-01 10:00 (Asia/Tokyo) 〜 2026-12-01 11:00 (Asia/Tokyo)"),
            "{s}"
        );
        assert!(s.contains("場所: 第1会議室"), "{s}");
        assert!(
            s.contains("主催者: 架空 花子 <hanako@example.invalid>"),
            "{s}"
        );
    }

    #[test]
    fn drops_cid_placeholders() {
        assert_eq!(drop_cid_junk("ロゴ[cid:image001.png@01D8]です"), "ロゴです");
    }
}
