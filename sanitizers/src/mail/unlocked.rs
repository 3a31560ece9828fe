//! The unlocked delivery (PPAP): a new message that carries what the registry made of a
//! password-protected attachment once it was unlocked.
//!
//! Owns: writing that message — From, To and Subject of the mail the encrypted file came with,
//! a Japanese note saying which file was unlocked, how (パスワードメール / Web / CLI / 同一メール)
//! and what was removed, and the registry's rebuilt file as the only attachment.
//! Invariants: the attachment can only come from a registry [`Outcome`] (its [`CleanFile`],
//! which only the registry makes) — there is no way to hand this module plain bytes; the
//! message is written by `build` and re-parsed like every converted message before a
//! [`CleanMessage`] is handed out; it is never re-encrypted.
//! Must never: carry the password (it is not an input here), the decrypted bytes as they came
//! out of the container, or the encrypted original.
//!
//! [`CleanFile`]: crate::registry::CleanFile

use super::build::{self, Mailbox, OutPart};
use super::{attached_label, reason_label, recheck, thousands, CleanMessage, BLOCKED};
use crate::policy::Policy;
use crate::registry::Outcome;
use crate::report::{sha256_hex, Report, Verdict};

/// How the password was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnlockWay {
    /// A separate password mail from the same sender (paired automatically).
    PasswordMail,
    /// The password was in the text of the very mail that carried the file.
    SameMail,
    /// Typed on the web page (by the recipient or an operator).
    Web,
    /// `mukaika quarantine unlock` by an operator.
    Cli,
}

impl UnlockWay {
    /// The code used in audit records and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            UnlockWay::PasswordMail => "password-mail",
            UnlockWay::SameMail => "same-mail",
            UnlockWay::Web => "web",
            UnlockWay::Cli => "cli",
        }
    }

    /// The Japanese wording in the note.
    pub fn label_ja(self) -> &'static str {
        match self {
            UnlockWay::PasswordMail => "パスワードメール（同じ差出人から届いたパスワードの連絡）",
            UnlockWay::SameMail => {
                "同一メール（添付ファイルと同じメールの本文に書かれたパスワード）"
            }
            UnlockWay::Web => "Web（パスワード入力画面）",
            UnlockWay::Cli => "CLI（運用担当者によるパスワード入力）",
        }
    }
}

/// What the unlocked delivery says about where the file came from.
#[derive(Debug, Clone)]
pub struct UnlockedSource<'a> {
    /// X-Mukaika-Id of the new message (`ppap-<item id>`).
    pub id: &'a str,
    /// The quarantine item that held the encrypted file.
    pub item_id: &'a str,
    /// The encrypted file's name as sent.
    pub file_name: &'a str,
    /// Sender of the original mail.
    pub from: &'a str,
    /// The envelope recipients this delivery goes to. Only a single one is named in `To:`:
    /// the envelope also holds the original mail's Bcc recipients, and writing them all into
    /// the header would show them to everyone.
    pub to: &'a [String],
    /// Subject of the original mail, decoded.
    pub subject: &'a str,
    /// How the password was given.
    pub way: UnlockWay,
}

/// The unlocked delivery: the registry's report of the unlocked content and the message.
#[derive(Debug)]
pub struct UnlockedMessage {
    /// What the registry made of the unlocked content.
    pub report: Report,
    /// The message, or why it could not be written (it failed its re-check).
    pub message: Result<CleanMessage, String>,
}

/// Writes the unlocked delivery for `result`, what the registry made of the unlocked content
/// of `source.item_id`. A sanitized result is attached; a blocked or held one is only named.
pub fn unlocked_message(
    source: &UnlockedSource<'_>,
    result: Outcome,
    policy: &Policy,
) -> UnlockedMessage {
    let (report, clean) = result.into_parts();
    let mut body = String::new();
    body.push_str("このメールは、パスワード付き（暗号化）で届いたため無害化ゲートウェイ mukaika が保留していた添付ファイルを、パスワードで解除し無害化した結果をお届けするものです。\n\n");
    body.push_str(&format!("元のメールの件名: {}\n", source.subject));
    body.push_str(&format!("差出人: {}\n", source.from));
    body.push_str(&format!(
        "解除したファイル: {}（隔離ID: {}）\n",
        source.file_name, source.item_id
    ));
    body.push_str(&format!("解除の方法: {}\n", source.way.label_ja()));
    body.push_str(&format!(
        "解除した内容（{} バイト, SHA-256 {}…）の扱い: {}\n",
        thousands(report.input_size),
        report.input_sha256.get(..16).unwrap_or(""),
        fate(&report)
    ));
    let removed = removals(&report);
    if !removed.is_empty() {
        body.push_str("取り除いたもの:\n");
        for line in removed {
            body.push_str(&format!("・{line}\n"));
        }
    }
    body.push_str("\n暗号化された元のファイルは、保存期間の間、隔離されたまま保管されます。無害化したファイルは暗号化せずに添付しています。\n");
    let attachments: Vec<OutPart> = clean
        .into_iter()
        .map(|c| OutPart {
            name: c.name().to_string(),
            content_type: c.kind().mime_type(),
            bytes: c.into_bytes(),
        })
        .collect();
    let outgoing = build::Outgoing {
        from: vec![mailbox(source.from)],
        to: match source.to {
            [one] => vec![mailbox(one)],
            _ => Vec::new(),
        },
        subject: format!("[パスワード解除済み] {}", source.subject),
        mukaika_id: source.id.to_string(),
        sanitized: format!(
            "ppap-unlocked; way={}; attachments-sanitized={}",
            source.way.as_str(),
            attachments.len()
        ),
        body,
        attachments,
        ..build::Outgoing::default()
    };
    let bytes = build::write(&outgoing, policy.mail.output_charset);
    let message = recheck(&bytes, outgoing.attachments.len()).map(|()| CleanMessage { bytes });
    UnlockedMessage { report, message }
}

fn mailbox(address: &str) -> Mailbox {
    Mailbox {
        name: None,
        address: address.to_string(),
    }
}

/// The registry's verdict in the words the mail notice uses.
fn fate(r: &Report) -> String {
    match r.verdict {
        Verdict::Sanitized | Verdict::Passed => attached_label(r),
        Verdict::Blocked => format!(
            "{}: {}",
            Verdict::Blocked.label_ja(),
            reason_label(r, BLOCKED)
        ),
        Verdict::Quarantined => format!(
            "{}: {}",
            Verdict::Quarantined.label_ja(),
            reason_label(r, super::HELD)
        ),
    }
}

/// Every removal in the report and its members', by kind and file.
fn removals(r: &Report) -> Vec<String> {
    let mut out = Vec::new();
    collect(r, &mut out);
    out
}

fn collect(r: &Report, out: &mut Vec<String>) {
    let at = r.input.clone().unwrap_or_default();
    // What, in which file and how often; part names and object numbers stay in the report.
    let mut whats: Vec<(&str, usize)> = Vec::new();
    for x in &r.removed {
        let what = x.what.description_ja();
        match whats.iter_mut().find(|(w, _)| *w == what) {
            Some((_, n)) => *n += 1,
            None => whats.push((what, 1)),
        }
    }
    for (what, n) in whats {
        out.push(if n > 1 {
            format!("{what}（{at}、{n} か所）")
        } else {
            format!("{what}（{at}）")
        });
    }
    if r.verdict == Verdict::Blocked && !at.is_empty() && r.reason.is_some() {
        out.push(format!("{at}: {}", reason_label(r, BLOCKED)));
    }
    for c in &r.children {
        collect(c, out);
    }
}

/// SHA-256 of a written message, for the caller's audit record.
pub fn message_sha256(message: &CleanMessage) -> String {
    sha256_hex(message.bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::Declared;
    use crate::registry::Registry;

    const PASSWORD_MAIL: &[u8] = "From: a@example.com\r\nTo: b@example.com\r\nSubject: pw\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n解凍パスワードは「q9w8e7X」です。\r\n".as_bytes();

    fn text_of(message: &CleanMessage) -> String {
        mail_parser::MessageParser::default()
            .parse(message.bytes())
            .unwrap()
            .body_text(0)
            .unwrap()
            .into_owned()
    }

    #[test]
    fn the_engine_returns_candidates_masks_them_and_can_add_a_note() {
        let registry = Registry::standard();
        let mut policy = Policy::default();
        let plain = crate::mail::convert(PASSWORD_MAIL, "Q1", &registry, &policy);
        assert!(plain.password_candidates().is_empty(), "off by default");
        assert!(text_of(plain.message().unwrap()).contains("q9w8e7X"));

        policy.mail.password_candidates = 5;
        let mut out = crate::mail::convert(PASSWORD_MAIL, "Q1", &registry, &policy);
        assert_eq!(out.password_candidates().len(), 1);
        assert_eq!(
            format!("{:?}", out.password_candidates()),
            "[Password(***)]"
        );
        let text = text_of(out.message().unwrap());
        assert!(
            !text.contains("q9w8e7X") && text.contains("「********」"),
            "{text}"
        );
        assert!(!format!("{out:?}").contains("q9w8e7X"));
        assert!(out.add_note("解除しました: Q0-1"));
        let text = text_of(out.message().unwrap());
        assert!(text.contains("解除しました: Q0-1") && !text.contains("q9w8e7X"));
        assert_eq!(
            out.report.output_sha256.as_deref(),
            Some(sha256_hex(out.message().unwrap().bytes()).as_str())
        );
        assert!(!serde_json::to_string(&out.report)
            .unwrap()
            .contains("q9w8e7X"));

        policy.mail.mask_passwords = false;
        let unmasked = crate::mail::convert(PASSWORD_MAIL, "Q1", &registry, &policy);
        assert!(text_of(unmasked.message().unwrap()).contains("q9w8e7X"));
    }

    #[test]
    fn the_unlocked_delivery_attaches_the_registry_output_and_names_the_way() {
        let registry = Registry::standard();
        let policy = Policy::default();
        let result = registry.process(
            b"hello, this is plain text\n",
            &Declared {
                name: Some("memo.txt"),
                mime: None,
            },
            &policy,
        );
        let to = vec!["staff@city.example.lg.jp".to_string()];
        let source = UnlockedSource {
            id: "ppap-Q1-1",
            item_id: "Q1-1",
            file_name: "見積書.zip",
            from: "sender@example.com",
            to: &to,
            subject: "見積書の送付",
            way: UnlockWay::PasswordMail,
        };
        let out = unlocked_message(&source, result, &policy);
        let message = out.message.expect("written");
        let parsed = mail_parser::MessageParser::default()
            .parse(message.bytes())
            .unwrap();
        assert_eq!(parsed.attachment_count(), 1);
        let text = parsed.body_text(0).unwrap();
        assert!(
            text.contains("見積書.zip") && text.contains("パスワードメール"),
            "{text}"
        );
        assert!(parsed.subject().unwrap().contains("見積書の送付"));
    }

    #[test]
    fn several_recipients_are_never_listed_in_the_header() {
        // The envelope holds the original mail's Bcc recipients too.
        let registry = Registry::standard();
        let policy = Policy::default();
        for (to, named) in [
            (vec!["a@city.example.lg.jp".to_string()], true),
            (
                vec![
                    "a@city.example.lg.jp".to_string(),
                    "hidden@city.example.lg.jp".to_string(),
                ],
                false,
            ),
        ] {
            let result = registry.process(
                b"hello\n",
                &Declared {
                    name: Some("memo.txt"),
                    mime: None,
                },
                &policy,
            );
            let source = UnlockedSource {
                id: "ppap-Q1-1",
                item_id: "Q1-1",
                file_name: "a.zip",
                from: "s@example.com",
                to: &to,
                subject: "x",
                way: UnlockWay::Cli,
            };
            let message = unlocked_message(&source, result, &policy)
                .message
                .expect("written");
            let text = String::from_utf8_lossy(message.bytes()).into_owned();
            assert!(!text.contains("hidden@"), "{text}");
            assert_eq!(text.contains("\r\nTo: "), named, "{text}");
        }
    }
}
