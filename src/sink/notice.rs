//! Notices: short Japanese mails telling people that something was quarantined.
//!
//! Owns: the recipients' notice (what was held, from whom, the quarantine ID, how to ask for a
//! release), the PPAP link notice (one per recipient of a held encrypted file, with that
//! recipient's one-time link to the password page) and the administrators' notice (immediate
//! or digest, with the PPAP items held and unlocked since the last one), filled from the
//! `[notices]` templates and written by the same message writer as converted mail.
//! Invariants: a notice carries names, IDs and reasons only — never a byte of the held item;
//! every header value goes through the writer's cleaning, so a hostile subject or file name
//! cannot add headers.
//! Must never: be sent to the internet-side sender (a forged sender would turn notices into
//! backscatter).

use mukaika_sanitizers::mail::build::{self, Mailbox, Outgoing as Written};
use mukaika_sanitizers::policy::OutputCharset;

use crate::config::NoticesSection;
use crate::envelope::Envelope;
use crate::sink::Outgoing;
use crate::store::quarantine::QuarantineItem;

/// Fills `{key}` placeholders; unknown ones stay as written.
pub fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = template.to_string();
    for (key, value) in values {
        out = out.replace(&format!("{{{key}}}"), value);
    }
    out
}

/// The short Japanese label of a reason code (lists, filters, the dashboard): says why, never
/// what happened, so it reads right beside any state.
pub fn reason_ja(code: &str) -> &'static str {
    mukaika_sanitizers::Reason::new(code, "").description_ja()
}

/// Why an item is held, in plain Japanese for staff (the recipients' notice, the CLI, the web
/// UI's item page): the item's own report explained by [`Report::explain_ja`] — with its type,
/// findings and the archive members at fault — or, for a whole message or an item without a
/// file report, its reason code explained. Codes and English details stay in the record.
///
/// [`Report::explain_ja`]: mukaika_sanitizers::Report::explain_ja
pub fn explain_item_ja(item: &QuarantineItem) -> String {
    use mukaika_sanitizers::{FileKind, Reason, Report};
    let whole_mail = item.detected_type.as_deref() == Some("message/rfc822");
    if !whole_mail {
        if let Ok(report) = serde_json::from_value::<Report>(item.report.clone()) {
            if let Some(text) = report.explain_ja() {
                return text;
            }
        }
    }
    if whole_mail {
        // A message, not a file: the file sentences would say ファイル where staff got a mail.
        match item.reason.as_str() {
            "malformed" => {
                return "メールの構造が壊れているか、読み方が一通りに定まらないため、安全にテキストへ変換できませんでした。".into()
            }
            "limit-exceeded" => {
                return "メールの大きさや添付ファイルの数・入れ子の深さが、安全に処理できる上限を超えました。".into()
            }
            "encrypted" => {
                return "メール全体が暗号化 (S/MIME・PGP) されているため、中身を確認できません。".into()
            }
            _ => {}
        }
    }
    let kind = item
        .detected_type
        .as_deref()
        .and_then(FileKind::from_name)
        .unwrap_or(FileKind::Unknown);
    Reason::new(&item.reason, item.detail.clone()).explain_ja(kind, &[])
}

/// Per item: `・name（隔離ID: id）` and, indented below, why in plain Japanese.
fn item_lines(items: &[&QuarantineItem]) -> String {
    items
        .iter()
        .map(|i| {
            format!(
                "・{}（隔離ID: {}）\n　{}\n",
                i.name.as_deref().unwrap_or("メール全体"),
                i.id,
                explain_item_ja(i)
            )
        })
        .collect()
}

/// A notice written by mukaika to `to`, delivered under `key`.
fn compose(
    config: &NoticesSection,
    to: &[String],
    subject: String,
    body: String,
    id: &str,
    key: &str,
) -> Outgoing {
    let (envelope, bytes) = from_gateway(
        &config.from,
        to,
        Written {
            subject,
            message_id: Some(format!("{id}@mukaika.notice")),
            mukaika_id: id.to_string(),
            sanitized: "notice".into(),
            body,
            ..Written::default()
        },
    );
    Outgoing::notice(envelope, key, bytes)
}

/// Sends `msg` as mukaika itself: from `from` under the gateway's display name, to `to` in
/// the headers and the envelope alike, dated now, written by the same message writer as
/// converted mail (so nothing in `msg` can add a header). Notices and released files both go
/// out this way.
pub(crate) fn from_gateway(from: &str, to: &[String], msg: Written) -> (Envelope, Vec<u8>) {
    let msg = Written {
        from: vec![Mailbox {
            name: Some("mukaika 無害化ゲートウェイ".into()),
            address: from.to_string(),
        }],
        to: to
            .iter()
            .map(|a| Mailbox {
                name: None,
                address: a.clone(),
            })
            .collect(),
        date: Some(crate::clock::rfc5322(crate::clock::now_ms())),
        ..msg
    };
    let envelope = Envelope {
        helo: String::new(),
        mail_from: from.to_string(),
        rcpt_to: to.to_vec(),
        eight_bit: false,
        smtputf8: false,
    };
    (envelope, build::write(&msg, OutputCharset::Utf8))
}

/// The notice to the LGWAN-side recipients of a message some of which was quarantined, or
/// None when recipients' notices are off or nothing was held.
pub fn for_recipients(
    config: &NoticesSection,
    queue_id: &str,
    date: &str,
    items: &[&QuarantineItem],
) -> Option<Outgoing> {
    let first = items.first()?;
    if !config.recipients || first.rcpt_to.is_empty() {
        return None;
    }
    let subject_of_mail = first.subject.clone().unwrap_or_default();
    let from = first.mail_from.clone().unwrap_or_default();
    let list = item_lines(items);
    let values = [
        ("from", from.as_str()),
        ("subject", subject_of_mail.as_str()),
        ("date", date),
        ("items", list.as_str()),
        ("contact", config.contact.as_str()),
    ];
    Some(compose(
        config,
        &first.rcpt_to,
        fill(&config.recipient_subject, &values),
        fill(&config.recipient_body, &values),
        &format!("{queue_id}-notice"),
        &format!("{queue_id}-notice"),
    ))
}

/// How a PPAP item was unlocked, for people.
fn way_ja(way: &str) -> &str {
    match way {
        "password-mail" => "パスワードメール",
        "same-mail" => "同じメールのパスワード",
        "web" => "Web",
        "cli" => "CLI",
        other => other,
    }
}

/// The PPAP link notice to one recipient of a held encrypted file: what was held, from whom,
/// and `url`, the recipient's own one-time link to the password page (valid until
/// `expires`, Japan time). Sent to `rcpt` alone, so no recipient sees another's link.
pub fn ppap_link(
    config: &NoticesSection,
    item: &QuarantineItem,
    rcpt: &str,
    url: &str,
    expires: &str,
    key: &str,
) -> Outgoing {
    let name = item.name.as_deref().unwrap_or("(名前なし)");
    let subject_of_mail = item.subject.clone().unwrap_or_default();
    let (files, _) = item.encrypted_members();
    let mut body = format!(
        "このメールは無害化ゲートウェイ mukaika からの自動通知です。\n\n\
         あなた宛てのメールに、パスワード付き（暗号化）ファイルが添付されていたため保留しています。\n\n\
         差出人: {}\n件名: {}\nファイル: {}（隔離ID: {}）\n",
        item.mail_from.as_deref().unwrap_or("-"),
        subject_of_mail,
        name,
        item.id,
    );
    for (file, size) in files.iter().take(20) {
        body.push_str(&format!("　・{file}（{size} バイト）\n"));
    }
    body.push_str(&format!(
        "\nパスワードをご存じの場合は、次のページで入力してください。ファイルを開いて無害化し、\
         あなたにだけ別のメールでお届けします（パスワード付きのままお届けすることはありません）。\n\n\
         {url}\n\n\
         このリンクはあなた専用で、一度だけ使えます。有効期限: {expires}\n\
         パスワードを 5 回続けて間違えるとリンクはロックされます。\n\
         お心当たりのない場合や、うまくいかない場合は {} にご連絡ください。\n\n\
         This file was held because it is password-protected. If you know the password, enter it\n\
         at the link above (for you only, usable once, until {expires}); the sanitized result\n\
         will be mailed to you.\n",
        config.contact
    ));
    compose(
        config,
        &[rcpt.to_string()],
        format!("【パスワード入力のお願い】{subject_of_mail}"),
        body,
        key,
        key,
    )
}

/// The administrators' notice listing `items` and the PPAP items `unlocked` since the last
/// one, or None when nobody is configured or there is nothing to say.
pub fn for_admins(
    config: &NoticesSection,
    id: &str,
    items: &[&QuarantineItem],
    unlocked: &[crate::store::quarantine::Unlocked],
    review_url: Option<&str>,
) -> Option<Outgoing> {
    if config.admin_to.is_empty() || (items.is_empty() && unlocked.is_empty()) {
        return None;
    }
    // `[admin] public_url`: each item links to its page in the review UI.
    let link = |item_id: &str| match review_url {
        Some(base) => format!("\n  {}/items/{}", base.trim_end_matches('/'), item_id),
        None => String::new(),
    };
    let count = items.len().to_string();
    let list: String = items
        .iter()
        .map(|i| {
            format!(
                "・{} [{}] {} — {}（{} 隔離、差出人 {}、宛先 {}）{}\n",
                i.id,
                i.source,
                i.name.as_deref().unwrap_or("メール全体"),
                reason_ja(&i.reason),
                // People read this: local time, marked; the record keeps UTC.
                crate::clock::local_display_of(&i.at),
                i.mail_from.as_deref().unwrap_or("-"),
                if i.rcpt_to.is_empty() {
                    "-".to_string()
                } else {
                    i.rcpt_to.join(", ")
                },
                link(&i.id)
            )
        })
        .collect();
    let held_ppap: Vec<&&QuarantineItem> = items.iter().filter(|i| i.is_ppap()).collect();
    let mut list = list;
    if !held_ppap.is_empty() || !unlocked.is_empty() {
        list.push_str(&format!(
            "\nパスワード付きファイル（PPAP）: 保留 {} 件、解除 {} 件\n",
            held_ppap.len(),
            unlocked.len()
        ));
        for i in &held_ppap {
            list.push_str(&format!(
                "・保留 {} {}\n",
                i.id,
                i.name.as_deref().unwrap_or("-")
            ));
        }
        for u in unlocked {
            list.push_str(&format!(
                "・解除 {}（{}、結果 {}、{}）{}\n",
                u.item_id,
                way_ja(&u.way),
                u.verdict,
                crate::clock::local_display_of(&u.at),
                link(&u.item_id)
            ));
        }
    }
    let values = [("count", count.as_str()), ("items", list.as_str())];
    Some(compose(
        config,
        &config.admin_to,
        fill(&config.admin_subject, &values),
        fill(&config.admin_body, &values),
        &format!("{id}-admin-notice"),
        &format!("{id}-admin-notice"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(id: &str, name: Option<&str>, subject: &str) -> QuarantineItem {
        QuarantineItem {
            id: id.into(),
            source: "mail".into(),
            origin_id: "Q1".into(),
            name: name.map(str::to_string),
            reason: "encrypted".into(),
            detail: "zip".into(),
            sha256: "00".repeat(32),
            size: 10,
            at: "2026-11-27T00:00:00.000Z".into(),
            report: serde_json::Value::Null,
            mail_from: Some("sender@example.com".into()),
            rcpt_to: vec!["staff@city.example.lg.jp".into()],
            subject: Some(subject.into()),
            detected_type: Some("zip".into()),
        }
    }

    #[test]
    fn recipients_notice_names_the_item_and_how_to_ask_without_any_injected_header() {
        let config = NoticesSection::default();
        let item = held(
            "Q1-1",
            Some("見積書.zip"),
            "見積\r\nBcc: victim@example.invalid",
        );
        let out = for_recipients(&config, "Q1", "2026-11-27", &[&item]).unwrap();
        let (env, bytes) = (out.envelope(), out.bytes());
        assert_eq!(env.rcpt_to, ["staff@city.example.lg.jp"]);
        assert_eq!(env.mail_from, config.from);
        let parsed = mail_parser::MessageParser::default().parse(bytes).unwrap();
        let body = parsed.body_text(0).unwrap();
        assert!(body.contains("見積書.zip"), "{body}");
        assert!(body.contains("隔離ID: Q1-1"), "{body}");
        assert!(body.contains("情報システム担当"), "{body}");
        assert!(
            body.contains("パスワードで保護 (暗号化) されているため"),
            "{body}"
        );
        assert!(!body.contains("encrypted"), "{body}");
        assert!(parsed
            .subject()
            .unwrap()
            .starts_with("【隔離のお知らせ】見積"));
        let text = String::from_utf8_lossy(bytes);
        assert!(!text.contains("\r\nBcc:"), "{text}");
    }

    #[test]
    fn no_notice_when_switched_off_or_nobody_to_tell() {
        let item = held("Q1", None, "s");
        let off = NoticesSection {
            recipients: false,
            ..NoticesSection::default()
        };
        assert!(for_recipients(&off, "Q1", "d", &[&item]).is_none());
        assert!(for_admins(&NoticesSection::default(), "Q1", &[&item], &[], None).is_none());
        let admins = NoticesSection {
            admin_to: vec!["security@city.example.lg.jp".into()],
            ..NoticesSection::default()
        };
        let out = for_admins(&admins, "Q1", &[&item], &[], None).unwrap();
        let (env, bytes) = (out.envelope(), out.bytes());
        assert_eq!(env.rcpt_to, ["security@city.example.lg.jp"]);
        let parsed = mail_parser::MessageParser::default().parse(bytes).unwrap();
        assert_eq!(parsed.subject(), Some("[mukaika] 隔離 1 件"));
        assert!(parsed.body_text(0).unwrap().contains("sender@example.com"));
    }

    #[test]
    fn admins_notice_links_each_item_to_its_page_when_the_ui_address_is_set() {
        let admins = NoticesSection {
            admin_to: vec!["security@city.example.lg.jp".into()],
            ..NoticesSection::default()
        };
        let item = held("Q7-1", Some("a.zip"), "s");
        let out = for_admins(
            &admins,
            "A1",
            &[&item],
            &[],
            Some("https://mukaika-admin.example.lg.jp/"),
        )
        .unwrap();
        let parsed = mail_parser::MessageParser::default()
            .parse(out.bytes())
            .unwrap();
        let body = parsed.body_text(0).unwrap().into_owned();
        assert!(
            body.contains("https://mukaika-admin.example.lg.jp/items/Q7-1"),
            "{body}"
        );
        let plain = for_admins(&admins, "A1", &[&item], &[], None).unwrap();
        let parsed = mail_parser::MessageParser::default()
            .parse(plain.bytes())
            .unwrap();
        assert!(!parsed.body_text(0).unwrap().contains("/items/"));
    }

    #[test]
    fn admins_notice_shows_when_each_item_was_held_in_japan_time() {
        let admins = NoticesSection {
            admin_to: vec!["security@city.example.lg.jp".into()],
            ..NoticesSection::default()
        };
        let mut late = held("Q2", Some("b.zip"), "s");
        late.at = "2026-11-27T15:30:00.000Z".into(); // already the 28th in Japan
        let out = for_admins(&admins, "A1", &[&held("Q1", None, "s"), &late], &[], None).unwrap();
        let parsed = mail_parser::MessageParser::default()
            .parse(out.bytes())
            .unwrap();
        let body = parsed.body_text(0).unwrap();
        assert!(body.contains("2026-11-27 09:00:00 (JST) 隔離"), "{body}");
        assert!(body.contains("2026-11-28 00:30:00 (JST) 隔離"), "{body}");
        assert!(!body.contains("T15:30"), "{body}");
    }

    #[test]
    fn a_link_notice_goes_to_one_recipient_with_only_their_link_and_the_listed_names() {
        let mut item = held("Q1-1", Some("見積書.zip"), "見積");
        item.rcpt_to.push("other@city.example.lg.jp".into());
        item.report = serde_json::json!({"encrypted": {
            "names_visible": true,
            "members": [{"name": "見積書.docm", "size": 1234, "encrypted": true}]
        }});
        let url = format!("https://g.example/ppap/{}", "ab".repeat(32));
        let out = ppap_link(
            &NoticesSection::default(),
            &item,
            "staff@city.example.lg.jp",
            &url,
            "2026-12-07 09:00:00 (JST)",
            "Q1-1-link-0",
        );
        assert_eq!(out.envelope().rcpt_to, ["staff@city.example.lg.jp"]);
        let parsed = mail_parser::MessageParser::default()
            .parse(out.bytes())
            .unwrap();
        let body = parsed.body_text(0).unwrap();
        for shown in [
            url.as_str(),
            "見積書.docm",
            "1234",
            "sender@example.com",
            "2026-12-07 09:00:00 (JST)",
        ] {
            assert!(body.contains(shown), "{shown}: {body}");
        }
        assert!(!body.contains("other@city.example.lg.jp"), "{body}");
    }

    #[test]
    fn the_admins_digest_lists_ppap_items_held_and_unlocked() {
        let admins = NoticesSection {
            admin_to: vec!["security@city.example.lg.jp".into()],
            ..NoticesSection::default()
        };
        let unlocked = crate::store::quarantine::Unlocked {
            item_id: "Q0-1".into(),
            way: "password-mail".into(),
            verdict: "sanitized".into(),
            at: "2026-11-27T00:00:00.000Z".into(),
            destination: "maildir".into(),
        };
        let only_unlocked = for_admins(&admins, "A1", &[], std::slice::from_ref(&unlocked), None)
            .expect("an unlock alone is worth a digest");
        let body = mail_parser::MessageParser::default()
            .parse(only_unlocked.bytes())
            .unwrap()
            .body_text(0)
            .unwrap()
            .into_owned();
        assert!(body.contains("保留 0 件、解除 1 件"), "{body}");
        assert!(body.contains("・解除 Q0-1（パスワードメール"), "{body}");
        let out = for_admins(
            &admins,
            "A2",
            &[&held("Q2-1", Some("b.zip"), "s")],
            &[],
            None,
        )
        .unwrap();
        let body = mail_parser::MessageParser::default()
            .parse(out.bytes())
            .unwrap()
            .body_text(0)
            .unwrap()
            .into_owned();
        assert!(body.contains("保留 1 件、解除 0 件"), "{body}");
        assert!(body.contains("・保留 Q2-1 b.zip"), "{body}");
    }
}
