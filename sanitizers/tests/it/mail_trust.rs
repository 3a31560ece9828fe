//! Mail that staff can trust (issue #15): every cause of 文字化け, every smuggling path through
//! body text and every link form, each on a synthetic message built here in code.

use crate::common;

use base64::Engine;
use encoding_rs::{EUC_JP, ISO_2022_JP, SHIFT_JIS};
use mail_parser::{MessageParser, MimeHeaders, PartType};
use mukaika_sanitizers::mail::{self, Disposition, MailOutcome, MailVerdict};
use mukaika_sanitizers::policy::LinkMode;
use mukaika_sanitizers::{Policy, Registry};

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn convert_with(raw: &[u8], policy: &Policy) -> MailOutcome {
    mail::convert(raw, "trust", &Registry::standard(), policy)
}

fn convert(raw: &[u8]) -> MailOutcome {
    convert_with(raw, &Policy::default())
}

/// The delivered message's bytes, its decoded subject and its one text body.
struct Delivered {
    bytes: Vec<u8>,
    subject: String,
    body: String,
}

fn delivered(outcome: &MailOutcome) -> Delivered {
    let message = outcome.message().unwrap_or_else(|| {
        panic!(
            "delivered, not {:?} ({:?})",
            outcome.report.verdict, outcome.report.reason
        )
    });
    let bytes = message.bytes().to_vec();
    let parsed = MessageParser::default().parse(&bytes).expect("parses");
    let subject = parsed.subject().unwrap_or_default().to_string();
    let body = parsed
        .parts
        .iter()
        .find_map(|p| match &p.body {
            PartType::Text(t) if p.attachment_name().is_none() => Some(t.to_string()),
            _ => None,
        })
        .expect("one text body");
    Delivered {
        bytes,
        subject,
        body,
    }
}

fn message(headers: &str, body: &str) -> Vec<u8> {
    format!("From: a@example.invalid\r\nTo: b@example.invalid\r\nMessage-ID: <t@example.invalid>\r\n{headers}\r\n{body}")
        .into_bytes()
}

// ---------------------------------------------------------------------------------------------
// 1–4: charsets
// ---------------------------------------------------------------------------------------------

/// Encodes `text` the way Python's `email.header.Header(text, 'iso-2022-jp')` and Outlook fold
/// it: several words, each a complete ISO-2022-JP sequence ending in `ESC ( B`.
fn folded_jis_subject(text: &str, chars_per_word: usize) -> String {
    let chars: Vec<char> = text.chars().collect();
    chars
        .chunks(chars_per_word)
        .map(|c| {
            let s: String = c.iter().collect();
            format!("=?ISO-2022-JP?B?{}?=", b64(&ISO_2022_JP.encode(&s).0))
        })
        .collect::<Vec<_>>()
        .join("\r\n ")
}

#[test]
fn folded_iso_2022_jp_subject_has_no_replacement_at_the_seams() {
    let subject = "【重要】令和八年度予算編成方針について（ご確認のお願い）";
    for per_word in [3, 5, 8] {
        let raw = message(
            &format!(
                "Subject: {}\r\nContent-Type: text/plain; charset=ISO-2022-JP\r\n",
                folded_jis_subject(subject, per_word)
            ),
            "body\r\n",
        );
        let out = convert(&raw);
        assert_eq!(out.report.subject, subject);
        assert_eq!(delivered(&out).subject, subject);
    }
}

#[test]
fn an_unpadded_final_base64_group_keeps_its_characters() {
    let body = b64("最後の文字まで届く。".as_bytes());
    let raw = message(
        "Subject: =?utf-8?B?eHB0bw?=\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n",
        &format!("{}\r\n", body.trim_end_matches('=')),
    );
    let out = convert(&raw);
    let d = delivered(&out);
    assert_eq!(d.subject, "xpto");
    assert!(d.body.starts_with("最後の文字まで届く。"), "{}", d.body);
    assert!(!d.body.contains('\u{FFFD}'));
}

#[test]
fn raw_jis_euc_jp_and_cp932_subjects_are_decoded() {
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            ISO_2022_JP.encode("テスト送信").0.into_owned(),
            "テスト送信",
        ),
        (EUC_JP.encode("テスト送信").0.into_owned(), "テスト送信"),
        (SHIFT_JIS.encode("①②③ 髙橋").0.into_owned(), "①②③ 髙橋"),
        ("日本語 UTF-8".as_bytes().to_vec(), "日本語 UTF-8"),
    ];
    for (bytes, want) in cases {
        let mut raw = b"From: a@example.invalid\r\nSubject: ".to_vec();
        raw.extend_from_slice(&bytes);
        raw.extend_from_slice(b"\r\n\r\nbody\r\n");
        let out = convert(&raw);
        assert_eq!(out.report.subject, want);
        assert_eq!(delivered(&out).subject, want);
    }
}

#[test]
fn unlabelled_and_mislabelled_japanese_parts_are_read_right() {
    let text = "色は匂へど散りぬるを";
    // No charset at all, JIS escapes in the bytes (multipart/signed bodies, Japanese DSNs).
    let mut raw = b"From: a@example.invalid\r\nSubject: x\r\n\r\n".to_vec();
    raw.extend_from_slice(&ISO_2022_JP.encode(text).0);
    raw.extend_from_slice(b"\r\n");
    assert!(delivered(&convert(&raw)).body.contains(text));
    // iPhone's `cp932` label.
    let mut raw =
        b"From: a@example.invalid\r\nSubject: x\r\nContent-Type: text/plain; charset=cp932\r\n\r\n"
            .to_vec();
    raw.extend_from_slice(&SHIFT_JIS.encode("①髙﨑").0);
    raw.extend_from_slice(b"\r\n");
    assert!(delivered(&convert(&raw)).body.contains("①髙﨑"));
    // 8-bit EUC-JP under an ISO-2022-JP label: the label cannot be right.
    let mut raw = b"From: a@example.invalid\r\nSubject: x\r\nContent-Type: text/plain; charset=iso-2022-jp\r\n\r\n".to_vec();
    raw.extend_from_slice(&EUC_JP.encode(text).0);
    raw.extend_from_slice(b"\r\n");
    let d = delivered(&convert(&raw));
    assert!(
        d.body.contains(text) && !d.body.contains('\u{FFFD}'),
        "{}",
        d.body
    );
    // A delivery-status part in JIS.
    let mut raw = b"From: MAILER-DAEMON@example.invalid\r\nSubject: x\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nreport\r\n--b\r\nContent-Type: message/delivery-status\r\n\r\nDiagnostic-Code: ".to_vec();
    raw.extend_from_slice(&ISO_2022_JP.encode("宛先不明").0);
    raw.extend_from_slice(b"\r\n--b--\r\n");
    let d = delivered(&convert(&raw));
    assert!(d.body.contains("宛先不明"), "{}", d.body);
    assert!(!d.body.contains("$B"), "{}", d.body);
}

// ---------------------------------------------------------------------------------------------
// 5: header block
// ---------------------------------------------------------------------------------------------

/// A multipart message with a blocked `.exe` whose Date line ends in `zone`.
fn exe_message(zone: &str) -> (Vec<u8>, Vec<u8>) {
    let mut exe = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00".to_vec();
    exe.extend(std::iter::repeat_n(0x41u8, 300));
    exe.extend_from_slice(b"PE\0\0");
    let raw = format!(
        "From: a@example.invalid\r\nTo: b@example.invalid\r\nSubject: invoice\r\nDate: Fri, 04 Dec 2026 08:00:00 {zone}\r\nContent-Type: multipart/mixed; boundary=\"XX\"\r\nMIME-Version: 1.0\r\n\r\n--XX\r\nContent-Type: text/plain\r\n\r\nsee attachment\r\n--XX\r\nContent-Type: application/octet-stream; name=\"invoice.exe\"\r\nContent-Disposition: attachment; filename=\"invoice.exe\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n--XX--\r\n",
        b64(&exe)
    );
    (raw.into_bytes(), exe)
}

fn assert_exe_absent(out: &MailOutcome, exe: &[u8]) {
    let d = delivered(out);
    let encoded = b64(exe);
    let text = String::from_utf8_lossy(&d.bytes);
    assert!(
        !d.bytes.windows(exe.len()).any(|w| w == exe),
        "raw exe bytes in the output"
    );
    assert!(
        !text.contains(&encoded[..60]) && !d.body.contains(&encoded[..60]),
        "base64 of the exe in the output"
    );
    assert!(
        out.report
            .attachments
            .iter()
            .any(|a| a.disposition == Disposition::Removed
                && a.report.input.as_deref() == Some("invoice.exe")),
        "the report names the attachment: {:?}",
        out.report.attachments
    );
}

#[test]
fn a_date_ending_in_z_or_a_military_zone_keeps_the_next_field() {
    for zone in ["Z", "A", "JST", "+0900", "UT"] {
        let (raw, exe) = exe_message(zone);
        let out = convert(&raw);
        assert_exe_absent(&out, &exe);
        assert_eq!(delivered(&out).body.lines().next(), Some("see attachment"));
    }
}

#[test]
fn a_named_zone_in_date_keeps_its_offset() {
    let raw = message(
        "Subject: x\r\nDate: Fri, 4 Dec 2026 17:52:55 JST\r\n",
        "body\r\n",
    );
    let d = delivered(&convert(&raw));
    let text = String::from_utf8_lossy(&d.bytes);
    assert!(
        text.contains("\r\nDate: Fri, 04 Dec 2026 17:52:55 +0900\r\n"),
        "{text}"
    );
}

#[test]
fn a_white_space_first_line_or_a_missing_blank_line_keeps_the_headers() {
    let raw =
        b"     \r\nFrom: Name <name@example.invalid>\r\nSubject: Hello World !\r\n\r\nbody\r\n";
    let out = convert(raw);
    assert_eq!(out.report.subject, "Hello World !");
    assert_eq!(out.report.from, vec!["Name <name@example.invalid>"]);
    let raw = b"From: a@example.invalid\r\nSubject: no separator\r\ncounter to RFC 2822, no separating newline here\r\n";
    let out = convert(raw);
    assert_eq!(out.report.subject, "no separator");
    assert!(delivered(&out)
        .body
        .contains("counter to RFC 2822, no separating newline here"));
}

#[test]
fn mailer_daemon_with_the_null_path_and_nested_comments_keep_their_names() {
    let raw = message("Subject: x\r\n", "b\r\n");
    let raw = String::from_utf8(raw).unwrap().replace(
        "From: a@example.invalid",
        "From: MAILER-DAEMON <>\r\nCc: Pete(A wonderful \\) chap) <pete(his account)@silly.example(his host)>",
    );
    let out = convert(raw.as_bytes());
    assert_eq!(out.report.from, vec!["MAILER-DAEMON <>"]);
    let text = String::from_utf8_lossy(&delivered(&out).bytes).into_owned();
    assert!(text.contains("From: \"MAILER-DAEMON\" <>\r\n"), "{text}");
    assert!(
        text.contains("Cc: \"Pete\" <pete@silly.example>\r\n"),
        "{text}"
    );
}

#[test]
fn a_boundary_string_in_the_middle_of_a_line_does_not_cut_the_body() {
    let raw = message(
        "Subject: x\r\nContent-Type: multipart/mixed; boundary=\"sep\"\r\n",
        "--sep\r\nContent-Type: text/plain\r\n\r\nfirst line\r\nthe string --sep inside a line\r\nlast line\r\n--sep--\r\n",
    );
    let d = delivered(&convert(&raw));
    assert!(d.body.contains("last line"), "{}", d.body);
    assert!(d.body.contains("first line"), "{}", d.body);
}

// ---------------------------------------------------------------------------------------------
// 6: nothing smuggled through text
// ---------------------------------------------------------------------------------------------

fn uuencode(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(45) {
        out.push((b' ' + chunk.len() as u8) as char);
        for g in chunk.chunks(3) {
            let b = |i: usize| g.get(i).copied().unwrap_or(0);
            for v in [
                b(0) >> 2,
                (b(0) << 4 | b(1) >> 4) & 63,
                (b(1) << 2 | b(2) >> 6) & 63,
                b(2) & 63,
            ] {
                out.push(if v == 0 { '`' } else { (b' ' + v) as char });
            }
        }
        out.push_str("\r\n");
    }
    out.push_str("`\r\n");
    out
}

fn assert_lifted(out: &MailOutcome, exe: &[u8], name_part: &str) {
    let d = delivered(out);
    assert!(!d.bytes.windows(16).any(|w| w == &exe[..16]));
    assert!(!d.body.contains(&uuencode(exe)[..40]), "{}", d.body);
    assert!(!d.body.contains(&b64(exe)[..40]), "{}", d.body);
    assert!(
        out.report.attachments.iter().any(|a| a
            .report
            .input
            .as_deref()
            .is_some_and(|n| n.contains(name_part))
            && a.disposition != Disposition::Attached),
        "{:?}",
        out.report.attachments
    );
}

#[test]
fn uuencode_in_any_text_form_is_lifted_out() {
    let (_, exe) = exe_message("+0900");
    let uu = uuencode(&exe);
    let bodies = [
        ("text/plain", format!("前文\r\nbegin 0755 tool.exe\r\n{uu}end\r\n後文\r\n")),
        ("text/html", format!("<html><body><p>前文</p><pre>begin 644 tool.exe\r\n{uu}end\r\n</pre></body></html>\r\n")),
        ("text/enriched", format!("<bold>前文</bold>\r\nbegin 644 tool.exe\r\n{}end\r\n", uu.replace('<', "<<"))),
        ("text/plain", format!("前文\r\nbegin-base64 644 tool.exe\r\n{}\r\n====\r\n", b64(&exe))),
    ];
    for (ctype, body) in bodies {
        let raw = message(
            &format!("Subject: x\r\nContent-Type: {ctype}; charset=utf-8\r\n"),
            &body,
        );
        let out = convert(&raw);
        assert_lifted(&out, &exe, "tool.exe");
    }
}

#[test]
fn binhex_yenc_base64_runs_and_mime_structure_in_text_are_lifted_out() {
    let (_, exe) = exe_message("+0900");
    let raw = message(
        "Subject: x\r\n",
        "(This file must be converted with BinHex 4.0)\r\n:$f*TEQKPH#jdCA0d,R0TG!\"6594%8dP8)3#3\"!%!N!-\r\n!*!%:\r\nbye\r\n",
    );
    let out = convert(&raw);
    let d = delivered(&out);
    assert!(!d.body.contains("$f*TEQKPH"), "{}", d.body);
    assert!(out
        .report
        .attachments
        .iter()
        .any(|a| a.disposition == Disposition::Removed));

    let yenc: String = exe
        .iter()
        .map(|b| b.wrapping_add(42))
        .flat_map(|b| match b {
            0 | b'\n' | b'\r' | b'=' => vec!['=', char::from(b.wrapping_add(64))],
            b => vec![char::from(b)],
        })
        .collect();
    let mut raw = b"From: a@example.invalid\r\nSubject: x\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\r\nhi\r\n=ybegin line=128 size=320 name=tool.exe\r\n".to_vec();
    raw.extend(yenc.chars().map(|c| c as u32 as u8));
    raw.extend_from_slice(b"\r\n=yend size=320\r\nbye\r\n");
    assert_lifted(&convert(&raw), &exe, "tool.exe");

    let block: String = b64(&exe)
        .as_bytes()
        .chunks(76)
        .map(|c| format!("{}\r\n", String::from_utf8_lossy(c)))
        .collect();
    let raw = message("Subject: x\r\n", &format!("see below\r\n{block}thanks\r\n"));
    assert_lifted(&convert(&raw), &exe, "本文中");

    let raw = message(
        "Subject: x\r\n",
        &format!("forwarded:\r\n--inner\r\nContent-Type: application/octet-stream; name=\"tool.exe\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{block}--inner--\r\n"),
    );
    assert_lifted(&convert(&raw), &exe, "tool.exe");
}

#[test]
fn a_file_hidden_in_a_winmail_dat_body_is_lifted_out_too() {
    let (_, exe) = exe_message("+0900");
    let block: String = b64(&exe)
        .as_bytes()
        .chunks(76)
        .map(|c| format!("{}\r\n", String::from_utf8_lossy(c)))
        .collect();
    let tnef = common::generate::tnef(&format!("Outlook の本文\r\n{block}以上\r\n"), &[]);
    let raw = message(
        "Subject: x\r\nContent-Type: multipart/mixed; boundary=b\r\n",
        &format!(
            "--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b\r\nContent-Type: application/ms-tnef; name=winmail.dat\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n--b--\r\n",
            b64(&tnef)
        ),
    );
    let out = convert(&raw);
    assert!(delivered(&out).body.contains("Outlook の本文"));
    assert_lifted(&out, &exe, "本文中");
}

#[test]
fn a_decoded_subject_never_becomes_a_new_header_line() {
    // An encoded-word whose text is another encoded-word holding CR LF and a Bcc field.
    let inner = "=?utf-8?Q?x=0D=0ABcc:_victim@example.invalid?=";
    let raw = message(
        &format!("Subject: =?utf-8?B?{}?=\r\n", b64(inner.as_bytes())),
        "b\r\n",
    );
    let d = delivered(&convert(&raw));
    let text = String::from_utf8_lossy(&d.bytes);
    assert!(!text.contains("\r\nBcc:"), "{text}");
    // Decoded once by a client, the subject shows the literal characters, not a line break.
    assert_eq!(d.subject, inner);
    let raw = message(
        "Subject: =?utf-8?Q?a=0D=0ABcc:_v@example.invalid?=\r\n",
        "b\r\n",
    );
    let d = delivered(&convert(&raw));
    assert!(!d.subject.contains('\r') && !d.subject.contains('\n'));
}

// ---------------------------------------------------------------------------------------------
// 7: links
// ---------------------------------------------------------------------------------------------

#[test]
fn every_link_form_in_plain_text_is_defanged() {
    let cases = [
        ("https://evil.example/login", "hxxps://evil[.]example/login"),
        ("http://evil.example", "hxxp://evil[.]example"),
        ("www.evil.example/x", "www[.]evil[.]example/x"),
        ("http://192.0.2.10/a", "hxxp://192[.]0[.]2[.]10/a"),
        ("192.0.2.10/a", "192[.]0[.]2[.]10/a"),
        (
            "\\\\fileserver.example\\share\\a.docx",
            "[\\\\]fileserver[.]example\\share\\a.docx",
        ),
        ("\\\\srv\\c$", "[\\\\]srv\\c$"),
        ("ftp://files.example/a", "ftp[:]//files[.]example/a"),
        ("file:///C:/x.exe", "file[:]///C:/x.exe"),
        ("ms-msdt:/id PCWDiagnostic", "ms-msdt[:]/id PCWDiagnostic"),
    ];
    for (link, want) in cases {
        let raw = message(
            "Subject: x\r\nContent-Type: text/plain; charset=utf-8\r\n",
            &format!("こちら {link} です\r\n"),
        );
        let d = delivered(&convert(&raw));
        assert!(
            d.body.contains(&format!("こちら {want} です")),
            "{link}: {}",
            d.body
        );
    }
    // mailto and plain addresses stay as they are.
    let raw = message(
        "Subject: x\r\n",
        "mailto:taro@example.invalid taro@example.invalid\r\n",
    );
    assert!(delivered(&convert(&raw))
        .body
        .contains("mailto:taro@example.invalid taro@example.invalid"));
}

#[test]
fn link_text_naming_another_site_is_marked() {
    let raw = message(
        "Subject: x\r\nContent-Type: text/html; charset=utf-8\r\n",
        "<p><a href=\"https://evil.example/a\">https://city.example.lg.jp/safe</a> と <a href=\"https://city.example.lg.jp/b\">こちら</a></p>\r\n",
    );
    let out = convert(&raw);
    let d = delivered(&out);
    assert!(
        d.body.contains("hxxps://city[.]example[.]lg[.]jp/safe <hxxps://evil[.]example/a> ⚠表示と異なるリンク先"),
        "{}",
        d.body
    );
    assert!(!d.body.contains("https://"), "{}", d.body);
    assert_eq!(
        d.body.matches("⚠表示と異なるリンク先").count(),
        1 + 1,
        "{}",
        d.body
    );
    assert_eq!(out.report.misleading_links, 1);
}

#[test]
fn keeping_links_by_policy_also_drops_the_footer_claim() {
    let mut policy = Policy::default();
    policy.mail.links = LinkMode::Keep;
    let raw = message("Subject: x\r\n", "https://city.example.lg.jp/a\r\n");
    let d = delivered(&convert_with(&raw, &policy));
    assert!(d.body.contains("https://city.example.lg.jp/a"));
    assert!(!d.body.contains("無効化されています"), "{}", d.body);
    let d = delivered(&convert(&raw));
    assert!(d.body.contains("無効化されています"));
}

// ---------------------------------------------------------------------------------------------
// 8: false quarantines
// ---------------------------------------------------------------------------------------------

#[test]
fn identical_duplicate_mime_fields_are_not_ambiguous_but_differing_ones_are() {
    let part = |second: &str| {
        message(
            "Subject: x\r\nContent-Type: multipart/mixed; boundary=b\r\n",
            &format!("--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b\r\nContent-Type: text/plain; name=a.txt\r\nContent-Disposition: attachment; filename=a.txt\r\n{second}\r\nhello\r\n--b--\r\n"),
        )
    };
    let same = convert(&part("Content-Disposition: attachment; filename=a.txt\r\n"));
    assert_eq!(same.report.verdict, MailVerdict::Delivered);
    let differ = convert(&part("Content-Disposition: attachment; filename=b.exe\r\n"));
    assert_eq!(differ.report.verdict, MailVerdict::Quarantined);
}
