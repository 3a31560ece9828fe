//! Releasing an approved item: the bytes a quarantined original leaves as, and where.
//!
//! Owns: the marker every release carries (item, request, requester, approver), the mail a
//! released item goes as — a held message whole with an `X-Mukaika-Released` header on top,
//! any other item as an attachment of a message mukaika writes — and the copy into an export
//! folder with its 解除レポート.
//! Invariants: only [`crate::review::Review`] calls this, and only for a request a second
//! person approved; names written to an export folder are reduced to one safe file name and
//! never overwrite anything; files are written through `crate::durable` (a temporary name
//! with the pair's mode and owner, fsynced, committed under a name that must not exist yet).
//! Must never: be reachable from the automatic pipeline — a release is a person's decision.

use std::fs;
use std::io::Write;
use std::path::Path;

use mukaika_sanitizers::mail::build::{OutPart, Outgoing};
use mukaika_sanitizers::names;

use crate::config::ImportPair;
use crate::durable::{self, Temp};
use crate::envelope::Envelope;
use crate::store::quarantine::QuarantineItem;

/// Who released what.
pub struct Marker<'a> {
    /// The item.
    pub item: &'a QuarantineItem,
    /// The request.
    pub request_id: &'a str,
    /// Who asked.
    pub requester: &'a str,
    /// Who approved.
    pub approver: &'a str,
}

impl Marker<'_> {
    /// `item=…; request=…; requester=…; approver=…` (account names are `[A-Za-z0-9._-]`).
    pub fn header_value(&self) -> String {
        format!(
            "item={}; request={}; requester={}; approver={}",
            self.item.id, self.request_id, self.requester, self.approver
        )
    }

    fn report_text(&self) -> String {
        format!(
            "この{}は mukaika の隔離から、二人の担当者の判断で解除されました。\n\
             無害化されていない原本です。開く前に差出人と内容を確かめてください。\n\n\
             隔離ID: {}\n名前: {}\n隔離理由: {}（{}）\nSHA-256: {}\n申請者: {}\n承認者: {}\n申請ID: {}\n",
            if self.item.name.is_some() { "ファイル" } else { "メール" },
            self.item.id,
            self.item.name.as_deref().unwrap_or("メール全体"),
            crate::sink::notice::reason_ja(&self.item.reason),
            self.item.reason,
            self.item.sha256,
            self.requester,
            self.approver,
            self.request_id,
        )
    }
}

/// Whether the item is a whole held message (rather than a file).
fn is_message(item: &QuarantineItem) -> bool {
    item.name.is_none() && item.source == "mail"
}

/// The message a release sends to `to`.
pub fn as_mail(
    marker: &Marker<'_>,
    bytes: &[u8],
    to: &[String],
    notice_from: &str,
) -> (Envelope, Vec<u8>) {
    let item = marker.item;
    if is_message(item) {
        let mut out = format!("X-Mukaika-Released: {}\r\n", marker.header_value()).into_bytes();
        out.extend_from_slice(bytes);
        let envelope = Envelope {
            helo: String::new(),
            mail_from: item.mail_from.clone().unwrap_or_default(),
            rcpt_to: to.to_vec(),
            eight_bit: true,
            smtputf8: false,
        };
        return (envelope, out);
    }
    let name = item
        .name
        .clone()
        .unwrap_or_else(|| format!("{}.bin", item.id));
    let msg = Outgoing {
        subject: format!(
            "【隔離解除】{}{}",
            name,
            item.subject
                .as_deref()
                .map(|s| format!("（元の件名: {s}）"))
                .unwrap_or_default()
        ),
        message_id: Some(format!("{}@mukaika.release", marker.request_id)),
        mukaika_id: marker.request_id.to_string(),
        sanitized: "released-original".into(),
        extra: vec![("X-Mukaika-Released", marker.header_value())],
        body: marker.report_text(),
        attachments: vec![OutPart {
            name,
            content_type: "application/octet-stream",
            bytes: bytes.to_vec(),
        }],
        ..Outgoing::default()
    };
    crate::sink::notice::from_gateway(notice_from, to, msg)
}

/// One safe file name from a quarantined item's name (its last path segment, with characters
/// Windows or a shell would trip on replaced), or `<id>.bin`.
pub fn safe_file_name(item: &QuarantineItem) -> String {
    let fallback = || {
        format!(
            "{}.{}",
            item.id,
            if is_message(item) { "eml" } else { "bin" }
        )
    };
    let Some(name) = item.name.as_deref() else {
        return fallback();
    };
    let last = name.rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String = last
        .chars()
        .map(|c| {
            let bidi = matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}');
            if c.is_control() || bidi || "<>:\"\\|?*".contains(c) {
                '_'
            } else {
                c
            }
        })
        .collect::<String>()
        .trim_matches(|c: char| c == '.' || c == ' ')
        .to_string();
    // Cut by bytes at a character boundary, extension kept (120 characters of kanji were
    // 360 bytes, more than a file system holds).
    let cleaned = names::shorten(&cleaned, names::NAME_MAX).into_owned();
    if cleaned.is_empty() || crate::names::check_name(&cleaned).is_some() {
        fallback()
    } else {
        cleaned
    }
}

/// Writes `bytes` to the first of `names` not taken in `dir`, never replacing an existing
/// file; returns the name written. The file has the pair's mode and owner before it appears
/// under its name (0640 under the service's umask when the pair sets no mode).
fn write_new(
    dir: &Path,
    names: &[String],
    bytes: &[u8],
    pair: &ImportPair,
) -> std::io::Result<String> {
    let mut temp = Temp::create_as(dir, "release", durable::READABLE)?;
    temp.file().write_all(bytes)?;
    temp.set_metadata(|f| crate::sink::export::apply_ownership(f, pair))?;
    let taken = temp.commit_first(names.iter().map(|n| dir.join(n)))?;
    Ok(taken
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default())
}

/// Copies the item into `export_dir` (as its own name, prefixed with the request ID if that
/// is taken) with a `.解除レポート.txt` beside it, both with `pair`'s mode and owner, as the
/// pair's sanitized files get them. Returns the path written.
///
/// # Errors
/// The folder cannot be written, or the mode or owner cannot be set.
pub fn to_export(
    export_dir: &Path,
    pair: &ImportPair,
    marker: &Marker<'_>,
    bytes: &[u8],
) -> std::io::Result<String> {
    fs::create_dir_all(export_dir)?;
    let name = safe_file_name(marker.item);
    let prefixed =
        names::shorten(&format!("{}_{name}", marker.request_id), names::NAME_MAX).into_owned();
    let chosen = write_new(export_dir, &[name, prefixed], bytes, pair)?;
    const REPORT: &str = ".解除レポート.txt";
    write_new(
        export_dir,
        &[format!(
            "{}{REPORT}",
            names::shorten(&chosen, names::NAME_MAX - REPORT.len())
        )],
        marker.report_text().as_bytes(),
        pair,
    )?;
    Ok(export_dir.join(chosen).display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(name: Option<&str>) -> QuarantineItem {
        QuarantineItem {
            id: "Q1-2".into(),
            source: "mail".into(),
            origin_id: "Q1".into(),
            name: name.map(str::to_string),
            reason: "encrypted".into(),
            detail: String::new(),
            sha256: "ab".repeat(32),
            size: 3,
            at: String::new(),
            report: serde_json::Value::Null,
            mail_from: Some("sender@example.com".into()),
            rcpt_to: vec!["staff@city.example.lg.jp".into()],
            subject: Some("見積".into()),
            detected_type: None,
        }
    }

    #[test]
    fn names_lose_paths_controls_and_direction_overrides() {
        assert_eq!(safe_file_name(&item(Some("../../etc/passwd"))), "passwd");
        assert_eq!(
            safe_file_name(&item(Some("C:\\x\\請求書.zip"))),
            "請求書.zip"
        );
        assert_eq!(
            safe_file_name(&item(Some("invoice\u{202E}fdp.exe"))),
            "invoice_fdp.exe"
        );
        assert_eq!(safe_file_name(&item(Some(".."))), "Q1-2.bin");
        assert_eq!(safe_file_name(&item(Some("CON.txt"))), "Q1-2.bin");
        assert_eq!(safe_file_name(&item(None)), "Q1-2.eml");
    }

    #[test]
    fn export_copies_never_overwrite_and_carry_a_report() {
        let dir = tempfile::tempdir().unwrap();
        let it = item(Some("見積書.zip"));
        let marker = Marker {
            item: &it,
            request_id: "R1",
            requester: "op1",
            approver: "ap1",
        };
        let pair: ImportPair =
            toml::from_str("name = \"soumu\"\nimport = \"in\"\nexport = \"out\"\nmode = \"0604\"")
                .unwrap();
        let first = to_export(dir.path(), &pair, &marker, b"one").unwrap();
        let second = to_export(dir.path(), &pair, &marker, b"two").unwrap();
        assert_ne!(first, second);
        for name in ["見積書.zip", "R1_見積書.zip", "見積書.zip.解除レポート.txt"] {
            let mode = fs::metadata(dir.path().join(name)).unwrap().permissions();
            assert_eq!(
                std::os::unix::fs::PermissionsExt::mode(&mode) & 0o7777,
                0o604,
                "{name}"
            );
        }
        assert_eq!(fs::read(dir.path().join("見積書.zip")).unwrap(), b"one");
        assert_eq!(fs::read(dir.path().join("R1_見積書.zip")).unwrap(), b"two");
        let report = fs::read_to_string(dir.path().join("見積書.zip.解除レポート.txt")).unwrap();
        assert!(report.contains("申請者: op1") && report.contains("承認者: ap1"));
    }

    #[test]
    fn a_released_file_goes_as_an_attachment_with_the_marker() {
        let it = item(Some("見積書.zip"));
        let marker = Marker {
            item: &it,
            request_id: "R1",
            requester: "op1",
            approver: "ap1",
        };
        let (env, bytes) = as_mail(
            &marker,
            b"PK\x03\x04",
            &["a@example.lg.jp".into()],
            "n@x.lg.jp",
        );
        assert_eq!(env.rcpt_to, ["a@example.lg.jp"]);
        let parsed = mail_parser::MessageParser::default().parse(&bytes).unwrap();
        assert_eq!(
            parsed.header_raw("X-Mukaika-Released").map(str::trim),
            Some("item=Q1-2; request=R1; requester=op1; approver=ap1")
        );
        assert_eq!(parsed.attachment(0).unwrap().contents(), b"PK\x03\x04");
        let whole = item(None);
        let marker = Marker {
            item: &whole,
            ..marker
        };
        let (env, bytes) = as_mail(
            &marker,
            b"Subject: x\r\n\r\nbody\r\n",
            &["b@example.lg.jp".into()],
            "n@x.lg.jp",
        );
        assert_eq!(env.mail_from, "sender@example.com");
        assert!(bytes.starts_with(b"X-Mukaika-Released: item=Q1-2;"));
        assert!(bytes.ends_with(b"Subject: x\r\n\r\nbody\r\n"));
    }
}
