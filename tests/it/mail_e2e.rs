//! Japanese mail end to end as real clients send it: Python's `email` and `smtplib` build and
//! send the message over a socket on 127.0.0.1, and Python reads the delivered message back, so
//! the judge of what a reader sees is independent of our own decoder.

use crate::support;

use std::process::Command;

use mukaika::config::DEFAULT_TOML;
use support::{config, runtime, wait_for};

/// Builds a message whose long Japanese subject Python folds into several ISO-2022-JP
/// encoded-words (each ending `ESC ( B`, as Outlook and Thunderbird also write them), sends it
/// with smtplib, and prints the subject Python decodes from what it sent.
const SEND: &str = r#"
import smtplib, sys
from email.header import Header, decode_header, make_header
from email.mime.text import MIMEText
port = int(sys.argv[1])
subject = "【重要・架空】令和八年度予算編成方針および各課要求書の提出期限について（ご確認のお願い）"
msg = MIMEText("各課長様\n\n予算要求書の提出期限は一月九日です。\n", "plain", "iso-2022-jp")
msg["Subject"] = Header(subject, "iso-2022-jp")
msg["From"] = "zaisei@example.invalid"
msg["To"] = "soumu@city.example.invalid"
raw = msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))
header = [l for l in raw.split(b"\r\n\r\n")[0].split(b"\r\n") if l.startswith((b"Subject:", b" ", b"\t"))]
assert len(header) > 2, header  # folded into several lines, several words
with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
    s.sendmail("zaisei@example.invalid", ["soumu@city.example.invalid"], raw)
sys.stdout.write(str(make_header(decode_header(msg["Subject"]))))
"#;

/// Prints the Subject of the message at argv[1] as Python decodes it.
const READ: &str = r#"
import sys, email
from email import policy
msg = email.message_from_bytes(open(sys.argv[1], "rb").read(), policy=policy.default)
sys.stdout.write(str(msg["Subject"]))
"#;

/// Runs a Python script with one argument; returns what it printed (fails on any error).
fn python(script: &str, arg: &str) -> String {
    let out = Command::new("python3")
        .args(["-c", script, arg])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn a_japanese_subject_folded_by_python_arrives_character_for_character() {
    let data = tempfile::tempdir().unwrap();
    let rt = runtime();
    let running = support::start(&rt, config(data.path(), ""), DEFAULT_TOML);
    let want = python(SEND, &running.smtp_addr.port().to_string());
    assert!(want.starts_with("【重要・架空】"), "{want}");

    let delivered = wait_for(&data.path().join("maildir/new"), 1);
    assert_eq!(delivered.len(), 1);
    let got = python(READ, delivered[0].to_str().unwrap());
    assert_eq!(got, want);
    assert!(!got.contains('\u{FFFD}'));
    rt.block_on(running.stop("test"));
}

/// Sends a mail with a program and a file of unknown type attached.
const SEND_EXE: &str = r#"
import smtplib, sys
from email.message import EmailMessage
port = int(sys.argv[1])
msg = EmailMessage()
msg["Subject"] = "請求書の送付（架空）"
msg["From"] = "keiri@example.invalid"
msg["To"] = "soumu@city.example.invalid"
msg.set_content("請求書を送ります。\n")
program = b"MZ" + b"\x90" * 58 + (64).to_bytes(4, "little") + b"PE\0\0" + b"\x4c\x01" + b"\0" * 200
msg.add_attachment(program, maintype="application", subtype="octet-stream", filename="請求書.exe")
msg.add_attachment(bytes(range(256)) * 4, maintype="application", subtype="octet-stream", filename="資料.bin")
with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
    s.send_message(msg)
"#;

/// Prints the decoded text body of the message at argv[1].
const READ_BODY: &str = r#"
import sys, email
from email import policy
msg = email.message_from_bytes(open(sys.argv[1], "rb").read(), policy=policy.default)
sys.stdout.write(msg.get_body(preferencelist=("plain",)).get_content())
"#;

#[test]
fn an_executable_and_a_held_file_are_explained_to_the_recipient_in_plain_japanese() {
    let data = tempfile::tempdir().unwrap();
    let rt = runtime();
    let running = support::start(&rt, config(data.path(), ""), DEFAULT_TOML);
    python(SEND_EXE, &running.smtp_addr.port().to_string());
    // The converted message and the recipients' notice about the held file.
    let delivered = wait_for(&data.path().join("maildir/new"), 2);
    let bodies: Vec<String> = delivered
        .iter()
        .map(|p| python(READ_BODY, p.to_str().unwrap()))
        .collect();
    let converted = bodies
        .iter()
        .find(|b| b.contains("【無害化ゲートウェイ mukaika からのお知らせ】"))
        .unwrap_or_else(|| panic!("{bodies:?}"));
    let notice = bodies
        .iter()
        .find(|b| b.contains("自動通知"))
        .unwrap_or_else(|| panic!("{bodies:?}"));
    let exe = converted
        .lines()
        .find(|l| l.starts_with("・請求書.exe"))
        .unwrap_or_else(|| panic!("{converted}"));
    // Not delivered, and kept in quarantine under an ID as the import folder keeps it.
    assert!(
        exe.contains("— 削除（隔離ID: ")
            && exe.contains("）: Windows の実行ファイル (プログラム) は、"),
        "{exe}"
    );
    let held = converted
        .lines()
        .find(|l| l.starts_with("・資料.bin"))
        .unwrap_or_else(|| panic!("{converted}"));
    assert!(
        held.contains("— 隔離（隔離ID: ") && held.contains("種類を判別できず"),
        "{held}"
    );
    // The notice: the same sentence and ID, the time in Japan time.
    assert!(notice.contains("・資料.bin（隔離ID: "), "{notice}");
    assert!(notice.contains("種類を判別できず"), "{notice}");
    assert!(notice.contains(" (JST)"), "{notice}");
    for text in [converted, notice] {
        for jargon in ["(pe)", "(unknown)", "policy", "blocked", "quarantine"] {
            assert!(!text.contains(jargon), "{jargon:?} in:\n{text}");
        }
    }
    rt.block_on(running.stop("test"));
}
