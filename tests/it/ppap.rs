//! PPAP end to end (#17): password-protected attachments built at test time by the real tools
//! senders use (Info-ZIP `zip -e`, 7-Zip, qpdf, msoffcrypto-tool), sent over SMTP to a running gateway on
//! 127.0.0.1:0, unlocked by a password mail (either order), by the password in the same mail
//! or by an operator with `mukaika quarantine unlock`, and delivered only as what the registry
//! made of them. The password never reaches the audit log, a report, the spool or the
//! quarantine records. `bash tests/ci.sh` installs zip, 7-Zip, qpdf, clamav-daemon and
//! msoffcrypto-tool (in target/ppap-venv).

use crate::support;
use mukaika_fixtures as generate;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mukaika::config::ServiceConfig;
use support::{runtime, Client};

const RCPT: &str = "soumu@city.example.invalid";

/// Runs a tool in `dir`; a missing tool fails the test with the way to install it.
fn run(program: &str, args: &[&str], dir: &Path) {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{program} is not installed ({e}): run `bash tests/ci.sh`"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn staged(files: &[(&str, &[u8])]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in files {
        std::fs::write(dir.path().join(name), bytes).unwrap();
    }
    dir
}

/// Info-ZIP `zip -e -P` (ZipCrypto).
fn zip_e(files: &[(&str, &[u8])], password: &str) -> Vec<u8> {
    let dir = staged(files);
    let mut args = vec!["-q", "-X", "-e", "-P", password, "out.zip"];
    args.extend(files.iter().map(|(n, _)| *n));
    run("zip", &args, dir.path());
    std::fs::read(dir.path().join("out.zip")).unwrap()
}

/// 7-Zip AES-256 with encrypted headers (`7z a -p -mhe=on`).
fn seven_zip(files: &[(&str, &[u8])], password: &str) -> Vec<u8> {
    let dir = staged(files);
    let pw = format!("-p{password}");
    let mut args = vec!["a", "-bd", "-y", "-t7z", "-mhe=on", pw.as_str(), "out.7z"];
    args.extend(files.iter().map(|(n, _)| *n));
    run("7z", &args, dir.path());
    std::fs::read(dir.path().join("out.7z")).unwrap()
}

/// qpdf AES-256 with a user and an owner password.
fn qpdf_encrypted(pdf: &[u8], user: &str) -> Vec<u8> {
    let dir = staged(&[("in.pdf", pdf)]);
    run(
        "qpdf",
        &[
            "--encrypt",
            user,
            "owner-pw-x",
            "256",
            "--",
            "in.pdf",
            "out.pdf",
        ],
        dir.path(),
    );
    std::fs::read(dir.path().join("out.pdf")).unwrap()
}

/// msoffcrypto-tool (ECMA-376 agile), from the venv tests/ci.sh makes.
fn office_encrypted(package: &[u8], password: &str) -> Vec<u8> {
    let dir = staged(&[("in.docm", package)]);
    let tool = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ppap-venv/bin/msoffcrypto-tool");
    run(
        tool.to_str().unwrap(),
        &["-e", "-p", password, "in.docm", "out.docm"],
        dir.path(),
    );
    std::fs::read(dir.path().join("out.docm")).unwrap()
}

/// Text that does not compress, so the package passes the 4096 bytes msoffcrypto-tool 6.1.0
/// needs to read its own output back.
fn noise(bytes: usize) -> String {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..bytes)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b"0123456789abcdefghijklmnopqrstuvwxyz"[(x % 36) as usize])
        })
        .collect()
}

/// The EICAR test string, assembled here so this source file itself is not a detection.
fn eicar() -> Vec<u8> {
    let mut s = String::from("X5O!P%@AP[4\\PZX54(P^)7CC)7}$");
    s.push_str("EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*");
    s.into_bytes()
}

/// A text mail (UTF-8, 8bit).
fn text_mail(subject: &str, text: &str) -> Vec<u8> {
    generate::eml(
        &[
            format!("Subject: {subject}"),
            "Content-Type: text/plain; charset=utf-8".into(),
            "Content-Transfer-Encoding: 8bit".into(),
        ],
        text.as_bytes(),
    )
}

/// A mail with `text` and one attachment.
fn mail_with(subject: &str, text: &str, name: &str, bytes: &[u8]) -> Vec<u8> {
    let word = generate::encoded_word("UTF-8", name.as_bytes());
    generate::eml(
        &[
            format!("Subject: {subject}"),
            "Content-Type: multipart/mixed; boundary=\"b1\"".into(),
        ],
        &generate::multipart(
            "b1",
            &[
                (
                    vec![
                        "Content-Type: text/plain; charset=utf-8".into(),
                        "Content-Transfer-Encoding: 8bit".into(),
                    ],
                    text.as_bytes().to_vec(),
                ),
                generate::attachment_part(
                    &format!("application/octet-stream; name=\"{word}\""),
                    &format!("attachment; filename=\"{word}\""),
                    bytes,
                ),
            ],
        ),
    )
}

/// A running gateway with its configuration written to a file (for the CLI).
struct Gateway {
    dir: tempfile::TempDir,
    data: PathBuf,
    conf: PathBuf,
    rt: tokio::runtime::Runtime,
    running: Option<mukaika::service::Running>,
}

impl Gateway {
    fn start(edit: impl FnOnce(String) -> String) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let text = edit(support::config_text(&data, "127.0.0.1:0"));
        let conf = dir.path().join("mukaika.toml");
        std::fs::write(&conf, &text).unwrap();
        let config = ServiceConfig::from_toml(&text).unwrap();
        let rt = runtime();
        let running = support::start(&rt, config, &text);
        Gateway {
            dir,
            data,
            conf,
            rt,
            running: Some(running),
        }
    }

    fn send(&self, message: &[u8]) {
        let addr = self.running.as_ref().unwrap().smtp_addr;
        let (mut c, _) = Client::connect(addr);
        assert_eq!(c.send(b"EHLO client.invalid\r\n"), 250);
        assert_eq!(c.mail(RCPT, message), 250);
        assert_eq!(c.send(b"QUIT\r\n"), 221);
    }

    /// Sends `message` with its own envelope sender and recipient.
    fn send_as(&self, from: &str, rcpt: &str, message: &[u8]) {
        let addr = self.running.as_ref().unwrap().smtp_addr;
        let (mut c, _) = Client::connect(addr);
        assert_eq!(c.send(b"EHLO client.invalid\r\n"), 250);
        assert_eq!(c.mail_from(from, &[rcpt], message), 250);
        assert_eq!(c.send(b"QUIT\r\n"), 221);
    }

    /// Every delivered message, as text.
    fn delivered(&self) -> Vec<String> {
        std::fs::read_dir(self.data.join("maildir/new"))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter_map(|e| std::fs::read(e.path()).ok())
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The unlocked deliveries (`X-Mukaika-Sanitized: ppap-unlocked`), waiting up to 30 s for
    /// at least `n`.
    fn unlocked(&self, n: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let found: Vec<String> = self
                .delivered()
                .into_iter()
                .filter(|t| t.contains("X-Mukaika-Sanitized: ppap-unlocked"))
                .collect();
            if found.len() >= n || Instant::now() > deadline {
                return found;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Audit events of `kind`, waiting up to 30 s for at least `n`.
    fn events(&self, kind: &str, n: usize) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let found: Vec<serde_json::Value> =
                mukaika::audit::search(&self.data.join("audit"), &Default::default())
                    .unwrap_or_default()
                    .into_iter()
                    .map(|r| r.event)
                    .filter(|e| e["type"] == kind)
                    .collect();
            if found.len() >= n || Instant::now() > deadline {
                return found;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The held encrypted items, waiting for at least `n`.
    fn held(&self, n: usize) -> Vec<mukaika::store::quarantine::QuarantineItem> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let items: Vec<_> = support::quarantined(&self.data, 0)
                .into_iter()
                .filter(|i| i.reason == "encrypted")
                .collect();
            if items.len() >= n || Instant::now() > deadline {
                return items;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn mukaika(&self, args: &[&str], stdin: Option<&str>) -> std::process::Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mukaika"));
        cmd.args(args)
            .arg("--config")
            .arg(&self.conf)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        if let Some(text) = stdin {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
        }
        child.wait_with_output().unwrap()
    }

    fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            self.rt.block_on(running.stop("test"));
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A parsed message: subject, text body, and attachments (name, bytes).
struct Parsed {
    subject: String,
    text: String,
    attachments: Vec<(String, Vec<u8>)>,
}

fn parse(message: &str) -> Parsed {
    use mail_parser::MimeHeaders;
    let m = mail_parser::MessageParser::default()
        .parse(message.as_bytes())
        .unwrap();
    Parsed {
        subject: m.subject().unwrap_or_default().to_string(),
        text: m.body_text(0).unwrap_or_default().into_owned(),
        attachments: m
            .attachments()
            .map(|a| {
                (
                    a.attachment_name().unwrap_or_default().to_string(),
                    a.contents().to_vec(),
                )
            })
            .collect(),
    }
}

fn zip_members(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    (0..archive.len())
        .map(|i| {
            let mut f = archive.by_index(i).unwrap();
            let mut out = Vec::new();
            f.read_to_end(&mut out).unwrap();
            (f.name().unwrap().into_owned(), out)
        })
        .collect()
}

fn docm() -> Vec<u8> {
    generate::docm_with_macro().build()
}

const ZIP_TEXT: &str =
    "お世話になっております。\n見積書をお送りします。パスワードは別途お送りします。\n";

fn password_text(password: &str) -> String {
    format!("お世話になっております。\n先ほどお送りしたファイルの解凍パスワードは「{password}」です。\nよろしくお願いいたします。\n")
}

/// Asserts the unlocked delivery carries 見積書.zip with the docm rebuilt as a docx without its
/// macro, and says how it was unlocked.
fn assert_sanitized_docx_inside(delivery: &str, way_ja: &str) -> Parsed {
    let p = parse(delivery);
    assert!(p.subject.contains("見積書"), "{}", p.subject);
    assert!(p.text.contains(way_ja), "{}", p.text);
    assert!(p.text.contains("マクロ"), "what was removed: {}", p.text);
    assert_eq!(p.attachments.len(), 1, "{:?}", p.attachments.len());
    let (name, zip) = &p.attachments[0];
    assert_eq!(name, "見積書.zip");
    let members = zip_members(zip);
    let names: Vec<&str> = members.iter().map(|(n, _)| n.as_str()).collect();
    assert!(names.contains(&"見積書.docx"), "{names:?}");
    assert!(!names.iter().any(|n| n.ends_with(".docm")), "{names:?}");
    let (_, docx) = members.iter().find(|(n, _)| n == "見積書.docx").unwrap();
    let inner: Vec<String> = zip_members(docx).into_iter().map(|(n, _)| n).collect();
    assert!(
        !inner.iter().any(|n| n.contains("vbaProject")),
        "macro gone: {inner:?}"
    );
    p
}

#[test]
fn a_zip_then_its_password_mail_gives_one_sanitized_delivery_with_the_docm_as_docx() {
    let gw = Gateway::start(|t| t);
    let password = "Abc123!x";
    gw.send(&mail_with(
        "見積書の送付",
        ZIP_TEXT,
        "見積書.zip",
        &zip_e(
            &[("見積書.docm", &docm()), ("memo.txt", b"memo text\n")],
            password,
        ),
    ));
    let held = gw.held(1);
    assert_eq!(held.len(), 1, "the encrypted zip is held first");
    assert!(gw.unlocked(0).is_empty());
    gw.send(&text_mail("password", &password_text(password)));

    let unlocked = gw.unlocked(1);
    assert_eq!(unlocked.len(), 1);
    assert_sanitized_docx_inside(&unlocked[0], "パスワードメール");
    // The password mail itself went out masked, saying what it unlocked.
    let password_mail = gw
        .delivered()
        .into_iter()
        .map(|t| parse(&t))
        .find(|p| p.subject == "password")
        .expect("the password mail is delivered as text");
    assert!(!password_mail.text.contains(password));
    assert!(
        password_mail.text.contains("「********」"),
        "{}",
        password_mail.text
    );
    assert!(
        password_mail.text.contains(&held[0].id) && password_mail.text.contains("解除しました"),
        "{}",
        password_mail.text
    );
    // The encrypted original stays held; the item is marked unlocked (the mark follows the
    // delivery, and its audit record follows the mark).
    gw.events("unlock_delivered", 1);
    let state = mukaika::ppap::unlocked_state(&gw.data, &held[0].id)
        .unwrap()
        .expect("marked unlocked");
    assert_eq!(
        (state.way.as_str(), state.verdict.as_str()),
        ("password-mail", "sanitized")
    );
    assert_eq!(gw.held(1).len(), 1, "the original stays in quarantine");
    let attempts = gw.events("unlock_attempted", 1);
    assert_eq!(attempts[0]["outcome"], "unlocked");
    assert_eq!(attempts[0]["candidates"], 1);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(gw.unlocked(1).len(), 1, "delivered once");
}

#[test]
fn a_password_mail_first_then_its_7z_unlocks_too() {
    let gw = Gateway::start(|t| t);
    let password = "z8X!p0q7";
    gw.send(&text_mail("password first", &password_text(password)));
    // Wait for the password mail to settle before the file arrives.
    gw.events("message_converted", 1);
    gw.send(&mail_with(
        "見積書の送付",
        ZIP_TEXT,
        "見積書.7z",
        &seven_zip(&[("見積書.docm", &docm())], password),
    ));
    let unlocked = gw.unlocked(1);
    assert_eq!(unlocked.len(), 1);
    let p = parse(&unlocked[0]);
    assert!(p.text.contains("パスワードメール"), "{}", p.text);
    let (name, zip) = &p.attachments[0];
    assert_eq!(
        name, "見積書.zip",
        "a 7z is delivered as the zip it was unlocked into"
    );
    let names: Vec<String> = zip_members(zip).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["見積書.docx"]);
}

#[test]
fn a_pdf_with_a_user_password_is_unlocked_and_rebuilt_without_its_javascript() {
    let gw = Gateway::start(|t| t);
    let password = "Pdf-User-8";
    gw.send(&mail_with(
        "請求書",
        ZIP_TEXT,
        "請求書.pdf",
        &qpdf_encrypted(&generate::pdf_js_openaction(), password),
    ));
    gw.held(1);
    gw.send(&text_mail("password", &format!("PW: {password}\n")));
    let unlocked = gw.unlocked(1);
    assert_eq!(unlocked.len(), 1);
    let p = parse(&unlocked[0]);
    assert_eq!(p.attachments.len(), 1);
    let (name, pdf) = &p.attachments[0];
    assert_eq!(name, "請求書.pdf");
    assert!(pdf.starts_with(b"%PDF-"));
    assert!(!String::from_utf8_lossy(pdf).contains("/JavaScript"));
    let doc = lopdf::Document::load_mem(pdf).expect("our rebuilt PDF opens");
    assert!(!doc.is_encrypted(), "delivered in the clear");
}

#[test]
fn an_encrypted_word_document_is_unlocked_and_arrives_as_docx_without_its_macro() {
    let gw = Gateway::start(|t| t);
    let password = "Office-Pw-4";
    let docm = generate::docm_with_macro()
        .part(
            "word/document.xml",
            generate::DOCM_MAIN,
            generate::word_document(&generate::para(&noise(12_000))),
        )
        .build();
    gw.send(&mail_with(
        "契約書",
        ZIP_TEXT,
        "契約書.docm",
        &office_encrypted(&docm, password),
    ));
    gw.held(1);
    gw.send(&text_mail("password", &password_text(password)));
    let unlocked = gw.unlocked(1);
    assert_eq!(unlocked.len(), 1);
    let p = parse(&unlocked[0]);
    assert!(p.text.contains("マクロ"), "{}", p.text);
    let (name, docx) = &p.attachments[0];
    assert_eq!(name, "契約書.docx");
    let parts: Vec<String> = zip_members(docx).into_iter().map(|(n, _)| n).collect();
    assert!(parts.iter().any(|n| n == "word/document.xml"), "{parts:?}");
    assert!(!parts.iter().any(|n| n.contains("vbaProject")), "{parts:?}");
}

#[test]
fn a_wrong_password_mail_leaves_the_item_held_and_delivers_nothing() {
    let gw = Gateway::start(|t| t);
    gw.send(&mail_with(
        "見積書の送付",
        ZIP_TEXT,
        "見積書.zip",
        &zip_e(&[("見積書.docm", &docm())], "right-pw-1"),
    ));
    let held = gw.held(1);
    gw.send(&text_mail("password", &password_text("wrong-pw-2")));
    let attempts = gw.events("unlock_attempted", 1);
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0]["item_id"], held[0].id.as_str());
    assert_eq!(attempts[0]["outcome"], "wrong-password");
    std::thread::sleep(Duration::from_millis(500));
    assert!(gw.unlocked(0).is_empty());
    assert!(mukaika::ppap::unlocked_state(&gw.data, &held[0].id)
        .unwrap()
        .is_none());
}

#[test]
fn passwords_pair_only_with_the_same_sender_a_shared_recipient_and_within_the_window() {
    let gw = Gateway::start(|t| t.replace("match_window_secs = 3600", "match_window_secs = 2"));
    let password = "Pair-Rule-3";
    gw.send(&mail_with(
        "見積書の送付",
        ZIP_TEXT,
        "見積書.zip",
        &zip_e(&[("見積書.docm", &docm())], password),
    ));
    gw.held(1);
    let text = text_mail("password", &password_text(password));
    gw.send_as("someone-else@example.invalid", RCPT, &text);
    gw.send_as(
        "sender@example.invalid",
        "jinji@city.example.invalid",
        &text,
    );
    assert_eq!(gw.events("message_converted", 3).len(), 3);
    assert!(
        gw.events("unlock_attempted", 0).is_empty(),
        "another sender, other recipients"
    );
    std::thread::sleep(Duration::from_millis(2500));
    gw.send(&text);
    assert_eq!(gw.events("message_converted", 4).len(), 4);
    assert!(
        gw.events("unlock_attempted", 0).is_empty(),
        "the window has passed"
    );
    assert!(gw.unlocked(0).is_empty());
}

#[test]
fn the_password_in_the_same_mail_unlocks_its_attachment_as_same_mail_ppap() {
    let gw = Gateway::start(|t| t);
    let password = "Same-Mail-77";
    gw.send(&mail_with(
        "見積書の送付",
        &format!("見積書をお送りします。\nパスワード：{password}\n"),
        "見積書.zip",
        &zip_e(&[("見積書.docm", &docm())], password),
    ));
    let unlocked = gw.unlocked(1);
    assert_eq!(unlocked.len(), 1);
    assert!(unlocked[0].contains("way=same-mail"));
    assert_sanitized_docx_inside(&unlocked[0], "同一メール");
    let converted = gw
        .delivered()
        .into_iter()
        .filter(|t| t.contains("X-Mukaika-Sanitized: text-converted"))
        .map(|t| parse(&t))
        .next()
        .expect("the mail's text");
    assert!(!converted.text.contains(password), "{}", converted.text);
    assert!(
        converted.text.contains("解除しました"),
        "{}",
        converted.text
    );
    let attempts = gw.events("unlock_attempted", 1);
    assert_eq!(attempts[0]["way"], "same-mail");
}

/// A private clamd with a one-signature database (as tests/antivirus.rs starts it).
struct Clamd(Child, PathBuf);

impl Clamd {
    fn start(dir: &Path) -> Self {
        std::fs::create_dir_all(dir.join("db")).unwrap();
        std::fs::create_dir_all(dir.join("tmp")).unwrap();
        let hex: String = eicar().iter().map(|b| format!("{b:02x}")).collect();
        std::fs::write(
            dir.join("db/custom.ndb"),
            format!("Mukaika.Test.EICAR:0:*:{hex}\n"),
        )
        .unwrap();
        let conf = dir.join("clamd.conf");
        std::fs::write(
            &conf,
            format!(
                "Foreground yes\nDatabaseDirectory {0}/db\nTemporaryDirectory {0}/tmp\nLocalSocket {0}/clamd.sock\nSelfCheck 0\n",
                dir.display()
            ),
        )
        .unwrap();
        let child = Command::new("/usr/sbin/clamd")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("clamd is installed by tests/ci.sh (clamav-daemon)");
        let socket = dir.join("clamd.sock");
        let client = mukaika::antivirus::Clamd::new(
            mukaika::antivirus::Endpoint::Unix(socket.clone()),
            Duration::from_secs(2),
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        while client.ping().is_err() {
            assert!(Instant::now() < deadline, "clamd did not come up");
            std::thread::sleep(Duration::from_millis(100));
        }
        Clamd(child, socket)
    }
}

impl Drop for Clamd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn eicar_inside_an_encrypted_zip_is_blocked_after_unlock() {
    let av = tempfile::tempdir().unwrap();
    let clamd = Clamd::start(av.path());
    let socket = clamd.1.clone();
    let gw = Gateway::start(|t| {
        t.replace(
            "# clamd = \"unix:/run/clamav/clamd.ctl\"",
            &format!("clamd = \"unix:{}\"", socket.display()),
        )
    });
    let password = "Virus-Pw-5";
    gw.send(&mail_with(
        "資料",
        ZIP_TEXT,
        "資料.zip",
        &zip_e(&[("readme.txt", &eicar())], password),
    ));
    gw.held(1);
    gw.send(&text_mail("password", &password_text(password)));
    let unlocked = gw.unlocked(1);
    assert_eq!(unlocked.len(), 1, "the recipients learn what became of it");
    let p = parse(&unlocked[0]);
    assert!(p.attachments.is_empty(), "nothing attached");
    assert!(!unlocked[0].contains("EICAR") && !p.text.contains("EICAR-STANDARD"));
    let delivered = gw.events("unlock_delivered", 1);
    assert_ne!(delivered[0]["verdict"], "sanitized", "{:?}", delivered[0]);
    assert!(delivered[0]["output_sha256"].is_null());
    drop(gw);
    drop(clamd);
}

#[test]
fn a_bomb_inside_is_held_for_the_limit_and_an_executable_is_blocked() {
    let gw = Gateway::start(|t| t);
    let password = "Limits-Pw-9";
    let zeros = vec![0u8; 16 << 20];
    let inner_bomb = generate::zip_of(&[("zeros.bin", &zeros)]);
    gw.send(&mail_with(
        "nested bomb",
        ZIP_TEXT,
        "nested.zip",
        &zip_e(&[("inner.zip", &inner_bomb)], password),
    ));
    gw.send(&mail_with(
        "outer bomb",
        ZIP_TEXT,
        "outer.zip",
        &zip_e(&[("zeros.bin", &zeros)], password),
    ));
    let exe =
        b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\xff\xff\x00\x00payload-marker-0123456789".to_vec();
    gw.send(&mail_with(
        "setup",
        ZIP_TEXT,
        "setup.zip",
        &zip_e(&[("setup.exe", &exe)], password),
    ));
    let held = gw.held(3);
    assert_eq!(held.len(), 3);
    gw.send(&text_mail("password", &password_text(password)));

    let unlocked = gw.unlocked(2);
    assert_eq!(unlocked.len(), 2, "nested bomb and executable are answered");
    let by_subject = |s: &str| {
        unlocked
            .iter()
            .map(|t| parse(t))
            .find(|p| p.subject.contains(s))
            .unwrap_or_else(|| panic!("no delivery for {s}"))
    };
    let nested = by_subject("nested bomb");
    assert!(nested.attachments.is_empty());
    assert!(nested.text.contains("隔離"), "{}", nested.text);
    let setup = by_subject("setup");
    assert!(setup.attachments.is_empty());
    assert!(setup.text.contains("削除"), "{}", setup.text);
    let attempts = gw.events("unlock_attempted", 3);
    let outer_id = &held
        .iter()
        .find(|i| i.name.as_deref() == Some("outer.zip"))
        .unwrap()
        .id;
    let outer = attempts
        .iter()
        .find(|a| a["item_id"] == outer_id.as_str())
        .unwrap();
    assert_eq!(outer["outcome"], "limit-exceeded", "{outer:?}");
    let delivered = gw.events("unlock_delivered", 2);
    let verdicts: Vec<&str> = delivered
        .iter()
        .map(|d| d["verdict"].as_str().unwrap())
        .collect();
    assert!(!verdicts.contains(&"sanitized"), "{verdicts:?}");
    assert!(mukaika::ppap::unlocked_state(&gw.data, outer_id)
        .unwrap()
        .is_none());
}

#[test]
fn an_operator_unlocks_with_a_password_file_and_a_wrong_one_is_refused() {
    // Pairing off: only the operator's password can unlock.
    let gw = Gateway::start(|t| {
        t.replace(
            "enabled = true\nmatch_window_secs",
            "enabled = false\nmatch_window_secs",
        )
    });
    let password = "Cli-Pass-42";
    gw.send(&mail_with(
        "見積書の送付",
        &format!("パスワード：{password}\n"),
        "見積書.zip",
        &zip_e(&[("見積書.docm", &docm())], password),
    ));
    let held = gw.held(1);
    let id = held[0].id.as_str();
    let conf = gw.conf.to_str().unwrap().to_string();
    let op_pw = support::cli_account(&conf, gw.dir.path(), "op", "operator");
    let au_pw = support::cli_account(&conf, gw.dir.path(), "au", "auditor");
    let (op_pw, au_pw) = (op_pw.to_str().unwrap(), au_pw.to_str().unwrap());

    let pw = gw.dir.path().join("pw.txt");
    std::fs::write(&pw, "not-it-0\n").unwrap();
    let pw_arg = pw.to_str().unwrap();
    let out = gw.mukaika(
        &[
            "quarantine",
            "unlock",
            id,
            "--user",
            "op",
            "--password-file",
            op_pw,
            "--archive-password-file",
            pw_arg,
        ],
        None,
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("wrong password"));
    let out = gw.mukaika(
        &[
            "quarantine",
            "unlock",
            id,
            "--user",
            "au",
            "--password-file",
            au_pw,
            "--archive-password-file",
            "-",
        ],
        Some(&format!("{password}\n")),
    );
    assert_eq!(out.status.code(), Some(77), "an auditor may not unlock");
    assert!(gw.unlocked(0).is_empty());

    std::fs::write(&pw, format!("{password}\n")).unwrap();
    let out = gw.mukaika(
        &[
            "quarantine",
            "unlock",
            id,
            "--user",
            "op",
            "--password-file",
            op_pw,
            "--archive-password-file",
            pw_arg,
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let unlocked = gw.unlocked(1);
    assert_eq!(unlocked.len(), 1);
    assert!(unlocked[0].contains("way=cli"));
    assert_sanitized_docx_inside(&unlocked[0], "CLI");
    let show = gw.mukaika(&["quarantine", "show", id], None);
    assert!(
        String::from_utf8_lossy(&show.stdout).contains("unlocked:"),
        "{}",
        String::from_utf8_lossy(&show.stdout)
    );
    let attempts = gw.events("unlock_attempted", 2);
    let outcomes: Vec<&str> = attempts
        .iter()
        .map(|a| a["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes,
        ["wrong-password", "unlocked"],
        "the auditor's refusal is no attempt"
    );
    assert_eq!(attempts[1]["by"], "op");
    // A second unlock of the same item delivers nothing more.
    let out = gw.mukaika(
        &[
            "quarantine",
            "unlock",
            id,
            "--user",
            "op",
            "--password-file",
            op_pw,
            "--archive-password-file",
            pw_arg,
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already-unlocked"));
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn no_password_reaches_the_audit_log_reports_spool_or_quarantine_records() {
    let mut gw = Gateway::start(|t| t);
    let (first, second, wrong) = ("Secret-One-1", "Secret-Two-2", "Secret-Bad-3");
    // Same-mail PPAP, a password mail after its zip, and a wrong password.
    gw.send(&mail_with(
        "same",
        &format!("パスワード：{first}\n"),
        "a.zip",
        &zip_e(&[("a.docm", &docm())], first),
    ));
    gw.send(&mail_with(
        "later",
        ZIP_TEXT,
        "b.zip",
        &zip_e(&[("b.docm", &docm())], second),
    ));
    gw.held(2);
    gw.send(&text_mail("password", &password_text(second)));
    gw.unlocked(2);
    gw.send(&mail_with(
        "wrong",
        ZIP_TEXT,
        "c.zip",
        &zip_e(&[("c.docm", &docm())], "x-right-9"),
    ));
    gw.held(3);
    gw.send(&text_mail("password 2", &password_text(wrong)));
    gw.events("unlock_attempted", 3);
    std::thread::sleep(Duration::from_millis(500));
    let delivered = gw.delivered();
    gw.stop();

    let files = files_under(&gw.data);
    assert!(
        files.iter().any(|f| f.to_string_lossy().contains("audit"))
            && files.iter().any(|f| f.ends_with("quarantine.db"))
            && files.iter().any(|f| f.ends_with("ppap.db")),
        "{files:?}"
    );
    for file in &files {
        let bytes = std::fs::read(file).unwrap();
        for secret in [first, second, wrong] {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{secret} found in {}",
                file.display()
            );
        }
    }
    // Delivered text is base64: decoded, it holds no password either.
    for message in delivered {
        let p = parse(&message);
        for secret in [first, second, wrong] {
            assert!(!p.text.contains(secret), "{secret} delivered: {}", p.text);
        }
    }
}

// ---- The password page: recipients' one-time links and the operator's field (#17) ----

use support::web::{account, Browser};

const OTHER: &str = "kikaku@city.example.invalid";

impl Gateway {
    /// A gateway whose recipients get links (`[ppap] public_url`), valid `hours`.
    fn with_links(hours: u64) -> Self {
        Gateway::start(|t| {
            t.replace(
                "# public_url = \"https://gateway.city.example.lg.jp/ppap\"",
                "public_url = \"https://gateway.city.example.invalid/ppap\"",
            )
            .replace(
                "link_valid_hours = 72",
                &format!("link_valid_hours = {hours}"),
            )
        })
    }

    fn admin(&self) -> std::net::SocketAddr {
        self.running.as_ref().unwrap().admin_addr
    }

    fn config(&self) -> ServiceConfig {
        ServiceConfig::from_toml(&std::fs::read_to_string(&self.conf).unwrap()).unwrap()
    }

    /// Sends `message` from `from` to every address of `rcpts`.
    fn send_to(&self, from: &str, rcpts: &[&str], message: &[u8]) {
        let addr = self.running.as_ref().unwrap().smtp_addr;
        let (mut c, _) = Client::connect(addr);
        assert_eq!(c.send(b"EHLO client.invalid\r\n"), 250);
        assert_eq!(c.mail_from(from, rcpts, message), 250);
        assert_eq!(c.send(b"QUIT\r\n"), 221);
    }

    /// The link notices (recipient, token), waiting up to 30 s for at least `n`.
    fn links(&self, n: usize) -> Vec<(String, String)> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let found: Vec<(String, String)> = self
                .delivered()
                .iter()
                .filter_map(|t| {
                    let m = mail_parser::MessageParser::default().parse(t.as_bytes())?;
                    if !m.subject()?.contains("パスワード入力のお願い") {
                        return None;
                    }
                    let to = m.to()?.first()?.address()?.to_string();
                    let text = m.body_text(0)?.into_owned();
                    let at = text.find("https://gateway.city.example.invalid/ppap/")? + 42;
                    Some((to, text.get(at..at + 64)?.to_string()))
                })
                .collect();
            if found.len() >= n || Instant::now() > deadline {
                return found;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The hidden form nonce on a password page.
fn nonce(page: &str) -> String {
    let at = page
        .find("name=\"nonce\" value=\"")
        .unwrap_or_else(|| panic!("no nonce in {page}"));
    let rest = &page[at + 20..];
    rest[..rest.find('"').unwrap()].to_string()
}

fn sent_to(message: &str) -> Vec<String> {
    let m = mail_parser::MessageParser::default()
        .parse(message.as_bytes())
        .unwrap();
    m.to()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.address().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Fails when `secret` is in any file under the data directory (but the delivered mail in
/// `maildir/` when `delivered_too` is false: a link notice carries its token by design).
fn assert_nowhere_on_disk(data: &Path, secret: &str) {
    assert_not_kept(data, secret, true)
}

fn assert_not_kept(data: &Path, secret: &str, delivered_too: bool) {
    for file in files_under(data) {
        if !delivered_too && file.starts_with(data.join("maildir")) {
            continue;
        }
        let bytes = std::fs::read(&file).unwrap_or_default();
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{secret} found in {}",
            file.display()
        );
    }
}

#[test]
fn a_recipients_link_unlocks_for_that_recipient_alone_and_works_once() {
    let mut gw = Gateway::with_links(72);
    let password = "Web-Pass-71";
    gw.send_to(
        "partner@example.com",
        &[RCPT, OTHER],
        &mail_with(
            "見積書の送付",
            ZIP_TEXT,
            "見積書.zip",
            &zip_e(&[("見積書.docm", &docm())], password),
        ),
    );
    let held = gw.held(1);
    let links = gw.links(2);
    assert_eq!(links.len(), 2, "one link notice per recipient");
    let mine = &links.iter().find(|(to, _)| to == RCPT).unwrap().1;
    let theirs = &links.iter().find(|(to, _)| to == OTHER).unwrap().1;
    assert_ne!(mine, theirs);
    for (to, _) in &links {
        let notice = gw
            .delivered()
            .into_iter()
            .filter(|t| t.contains("X-Mukaika-Sanitized: notice"))
            .find(|t| sent_to(t) == [to.clone()]);
        assert!(
            notice.is_some(),
            "each link notice goes to its recipient alone"
        );
    }

    let mut b = Browser::new(gw.admin());
    let page = b.get(&format!("/ppap/{mine}"));
    assert_eq!(page.status, 200, "no account needed: {}", page.text());
    let text = page.text();
    for shown in [
        "partner@example.com",
        "見積書の送付",
        "見積書.zip",
        "見積書.docm",
        RCPT,
    ] {
        assert!(text.contains(shown), "{shown} on the page: {text}");
    }
    assert!(!text.contains(OTHER), "another recipient is never named");
    assert!(page
        .header("content-security-policy")
        .is_some_and(|c| c.contains("default-src 'none'")));
    assert!(!text.contains("<script"));

    // A forged form (no nonce, or another link's) is refused before any password is tried.
    let r = b.post(&format!("/ppap/{mine}"), &[("password", password)]);
    assert_eq!(r.status, 403, "{}", r.text());
    let their_nonce = nonce(&b.get(&format!("/ppap/{theirs}")).text());
    let r = b.post(
        &format!("/ppap/{mine}"),
        &[("nonce", &their_nonce), ("password", password)],
    );
    assert_eq!(r.status, 403);
    // A token that is not one of ours (one digit changed) shows nothing of the item.
    let mut forged = mine.clone().into_bytes();
    forged[10] = if forged[10] == b'0' { b'1' } else { b'0' };
    let forged = String::from_utf8(forged).unwrap();
    let r = b.get(&format!("/ppap/{forged}"));
    assert_eq!(r.status, 404);
    assert!(!r.text().contains("見積書"), "{}", r.text());
    assert_eq!(b.get("/ppap/..%2F..%2Fetc").status, 404);
    assert!(gw.unlocked(0).is_empty());

    let r = b.post(
        &format!("/ppap/{mine}"),
        &[("nonce", &nonce(&text)), ("password", password)],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("解除し"), "{}", r.text());
    assert!(!r.text().contains(password));
    let unlocked = gw.unlocked(1);
    assert_eq!(unlocked.len(), 1);
    assert_eq!(
        sent_to(&unlocked[0]),
        [RCPT],
        "only the recipient who typed it"
    );
    assert_sanitized_docx_inside(&unlocked[0], "Web");
    let delivered = gw.events("unlock_delivered", 1);
    assert_eq!(delivered[0]["rcpt_to"], serde_json::json!([RCPT]));
    assert_eq!(delivered[0]["way"], "web");
    let attempts: Vec<_> = gw
        .events("unlock_attempted", 1)
        .into_iter()
        .filter(|a| a["way"] == "web")
        .collect();
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    assert_eq!(attempts[0]["by"], format!("recipient:{RCPT}"));
    assert_eq!(attempts[0]["outcome"], "unlocked");
    // The recipient's attempt names its channel and connection, as staff's do.
    assert_eq!(attempts[0]["via"]["channel"], "web", "{}", attempts[0]);
    assert_eq!(attempts[0]["via"]["client"], "127.0.0.1", "{}", attempts[0]);

    // Used: the link works once.
    let again = b.get(&format!("/ppap/{mine}"));
    assert_eq!(again.status, 410);
    assert!(again.text().contains("使用済み"), "{}", again.text());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(gw.unlocked(1).len(), 1, "nothing more went out");
    assert_eq!(held.len(), 1);
    let id = held[0].id.as_str();
    assert!(
        mukaika::ppap::unlocked_state(&gw.data, id)
            .unwrap()
            .is_none(),
        "not unlocked for everyone yet"
    );

    // The other recipient's link still works, for them alone.
    let page = b.get(&format!("/ppap/{theirs}")).text();
    let r = b.post(
        &format!("/ppap/{theirs}"),
        &[("nonce", &nonce(&page)), ("password", password)],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let both = gw.unlocked(2);
    assert_eq!(both.len(), 2);
    let mut to: Vec<Vec<String>> = both.iter().map(|m| sent_to(m)).collect();
    to.sort();
    assert_eq!(to, [vec![OTHER.to_string()], vec![RCPT.to_string()]]);
    let state = mukaika::ppap::unlocked_state(&gw.data, id).unwrap();
    assert_eq!(
        state.map(|u| u.way),
        Some("web".into()),
        "everyone has it now"
    );
    gw.stop();
    assert_nowhere_on_disk(&gw.data, password);
    assert_not_kept(&gw.data, mine, false);
}

#[test]
fn five_wrong_passwords_lock_a_link_and_the_sixth_try_is_refused_even_when_right() {
    let mut gw = Gateway::with_links(72);
    let password = "Right-Pass-55";
    gw.send(&mail_with(
        "請求書",
        ZIP_TEXT,
        "請求書.zip",
        &zip_e(&[("請求書.docm", &docm())], password),
    ));
    gw.held(1);
    let token = gw.links(1)[0].1.clone();
    let mut b = Browser::new(gw.admin());
    let path = format!("/ppap/{token}");
    let mut page = b.get(&path).text();
    for left in (1..5).rev() {
        let r = b.post(
            &path,
            &[("nonce", &nonce(&page)), ("password", "wrong-guess")],
        );
        assert_eq!(r.status, 200);
        page = r.text();
        assert!(page.contains(&format!("あと {left} 回")), "{page}");
    }
    let r = b.post(
        &path,
        &[("nonce", &nonce(&page)), ("password", "wrong-guess")],
    );
    assert_eq!(
        r.status,
        403,
        "the fifth wrong password locks: {}",
        r.text()
    );
    assert!(r.text().contains("ロック"));
    let r = b.post(&path, &[("nonce", &nonce(&page)), ("password", password)]);
    assert_eq!(r.status, 403, "locked even with the right password");
    assert_eq!(b.get(&path).status, 403);
    std::thread::sleep(Duration::from_millis(300));
    assert!(gw.unlocked(0).is_empty(), "nothing delivered");
    let attempts = gw.events("unlock_attempted", 6);
    let outcomes: Vec<&str> = attempts
        .iter()
        .filter(|a| a["way"] == "web")
        .map(|a| a["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes,
        [
            "wrong-password",
            "wrong-password",
            "wrong-password",
            "wrong-password",
            "wrong-password",
            "locked"
        ],
        "the lock is audited and the sixth try is no attempt"
    );
    gw.stop();
    assert_nowhere_on_disk(&gw.data, password);
}

#[test]
fn an_expired_link_is_refused_with_a_japanese_page_and_unlocks_nothing() {
    let gw = Gateway::with_links(0);
    let password = "Late-Pass-00";
    gw.send(&mail_with(
        "遅い",
        ZIP_TEXT,
        "a.zip",
        &zip_e(&[("a.docm", &docm())], password),
    ));
    gw.held(1);
    let token = gw.links(1)[0].1.clone();
    let mut b = Browser::new(gw.admin());
    let r = b.get(&format!("/ppap/{token}"));
    assert_eq!(r.status, 410);
    assert!(r.text().contains("有効期限が切れています"), "{}", r.text());
    assert!(!r.text().contains("a.docm"), "nothing of the item is shown");
    let r = b.post(
        &format!("/ppap/{token}"),
        &[("nonce", "00"), ("password", password)],
    );
    assert_eq!(r.status, 410);
    std::thread::sleep(Duration::from_millis(300));
    assert!(gw.unlocked(0).is_empty());
}

#[test]
fn without_a_public_url_no_link_is_sent() {
    let gw = Gateway::start(|t| t);
    gw.send(&mail_with(
        "x",
        ZIP_TEXT,
        "a.zip",
        &zip_e(&[("a.docm", &docm())], "No-Link-1"),
    ));
    gw.held(1);
    std::thread::sleep(Duration::from_millis(500));
    assert!(gw
        .delivered()
        .iter()
        .all(|t| !t.contains("/ppap/") && !t.contains("パスワード入力")));
}

#[test]
fn an_operator_unlocks_from_the_item_page_and_the_dashboard_counts_it() {
    let mut gw = Gateway::start(|t| {
        t.replace(
            "enabled = true\nmatch_window_secs",
            "enabled = false\nmatch_window_secs",
        )
    });
    let password = "Item-Page-8";
    gw.send(&mail_with(
        "見積書の送付",
        ZIP_TEXT,
        "見積書.zip",
        &zip_e(&[("見積書.docm", &docm())], password),
    ));
    let id = gw.held(1)[0].id.clone();
    let config = gw.config();
    let mut op = account(&config, gw.admin(), "yamada", "operator");
    let mut au = account(&config, gw.admin(), "suzuki", "auditor");

    let dash = op.get("/").text();
    assert!(dash.contains("パスワード付きファイル（PPAP）"), "{dash}");
    assert!(dash.contains("<td class=\"held\">1</td>"), "{dash}");

    let page = op.get(&format!("/items/{id}")).text();
    assert!(page.contains("パスワードを入力して解除"), "{page}");
    assert!(page.contains("まだ解除されていません"));
    assert!(
        !au.get(&format!("/items/{id}")).text().contains("/unlock\""),
        "only operators get the field"
    );
    let csrf = op.token();
    let au_csrf = au.token();
    let r = au.post(
        &format!("/items/{id}/unlock"),
        &[("csrf", &au_csrf), ("password", password)],
    );
    assert_eq!(r.status, 403);
    let r = op.post(&format!("/items/{id}/unlock"), &[("password", password)]);
    assert_eq!(r.status, 403, "no CSRF token, no unlock");
    let r = op.post(
        &format!("/items/{id}/unlock"),
        &[("csrf", &csrf), ("password", "not-this-one")],
    );
    assert_eq!(r.status, 303);
    assert_eq!(
        r.header("location"),
        Some(format!("/items/{id}?done=ppap-wrong").as_str())
    );
    assert!(op
        .get(&format!("/items/{id}?done=ppap-wrong"))
        .text()
        .contains("パスワードが違います"));
    assert!(gw.unlocked(0).is_empty());
    let r = op.post(
        &format!("/items/{id}/unlock"),
        &[("csrf", &csrf), ("password", password)],
    );
    assert_eq!(r.status, 303);
    assert_eq!(
        r.header("location"),
        Some(format!("/items/{id}?done=ppap-unlocked").as_str())
    );
    let unlocked = gw.unlocked(1);
    assert_eq!(unlocked.len(), 1);
    assert_eq!(sent_to(&unlocked[0]), [RCPT], "to the item's recipients");
    assert_sanitized_docx_inside(&unlocked[0], "Web");
    let page = op.get(&format!("/items/{id}")).text();
    assert!(
        page.contains("解除済み") && page.contains("<td>web</td>"),
        "{page}"
    );
    assert!(
        !page.contains("パスワードを入力して解除"),
        "no field once unlocked"
    );
    let dash = op.get("/").text();
    assert!(dash.contains("解除済み — web</td><td>1</td>"), "{dash}");
    assert!(dash.contains("<td class=\"held\">0</td>"), "{dash}");
    let attempts = gw.events("unlock_attempted", 2);
    assert_eq!(attempts[1]["by"], "yamada");
    assert_eq!(attempts[1]["way"], "web");
    let pages = [page, dash, op.get("/audit").text(), au.get("/audit").text()];
    gw.stop();
    for p in &pages {
        assert!(!p.contains(password));
    }
    assert_nowhere_on_disk(&gw.data, password);
}

#[test]
fn after_one_recipient_used_their_link_an_operator_unlock_reaches_only_the_others() {
    let gw = Gateway::start(|t| {
        t.replace(
            "# public_url = \"https://gateway.city.example.lg.jp/ppap\"",
            "public_url = \"https://gateway.city.example.invalid/ppap\"",
        )
        .replace(
            "enabled = true\nmatch_window_secs",
            "enabled = false\nmatch_window_secs",
        )
    });
    let password = "Mixed-Ways-3";
    gw.send_to(
        "partner@example.com",
        &[RCPT, OTHER],
        &mail_with(
            "見積書の送付",
            ZIP_TEXT,
            "見積書.zip",
            &zip_e(&[("見積書.docm", &docm())], password),
        ),
    );
    let id = gw.held(1)[0].id.clone();
    let links = gw.links(2);
    let mine = &links.iter().find(|(to, _)| to == RCPT).unwrap().1;
    let mut b = Browser::new(gw.admin());
    let page = b.get(&format!("/ppap/{mine}")).text();
    let r = b.post(
        &format!("/ppap/{mine}"),
        &[("nonce", &nonce(&page)), ("password", password)],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(gw.unlocked(1).len(), 1);
    let mut au = account(&gw.config(), gw.admin(), "suzuki", "auditor");
    let item_page = au.get(&format!("/items/{id}")).text();
    let listed = item_page
        .split("<ul class=\"by-link\">")
        .nth(1)
        .unwrap_or_else(|| panic!("no link deliveries listed: {item_page}"));
    assert!(listed.starts_with(&format!("<li>{RCPT} — ")), "{listed}");
    assert!(item_page.contains("まだ解除されていません"));

    let conf = gw.conf.to_str().unwrap().to_string();
    let op_pw = support::cli_account(&conf, gw.dir.path(), "op", "operator");
    let op_pw = op_pw.to_str().unwrap().to_string();
    let unlock = || {
        gw.mukaika(
            &[
                "quarantine",
                "unlock",
                &id,
                "--user",
                "op",
                "--password-file",
                &op_pw,
                "--archive-password-file",
                "-",
            ],
            Some(&format!("{password}\n")),
        )
    };
    let out = unlock();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let all = gw.unlocked(2);
    assert_eq!(all.len(), 2);
    let cli: Vec<&String> = all.iter().filter(|m| m.contains("way=cli")).collect();
    assert_eq!(cli.len(), 1, "{all:?}");
    assert_eq!(sent_to(cli[0]), [OTHER], "not again to the one who had it");
    let out = unlock();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already-unlocked"));
}

#[test]
fn the_dashboard_counts_a_held_encrypted_file_nobody_unlocked_in_time_as_expired() {
    let gw = Gateway::start(|t| t.replace("match_window_secs = 3600", "match_window_secs = 1"));
    gw.send(&mail_with(
        "x",
        ZIP_TEXT,
        "a.zip",
        &zip_e(&[("a.docm", &docm())], "Never-Given-1"),
    ));
    gw.held(1);
    let mut au = account(&gw.config(), gw.admin(), "suzuki", "auditor");
    let dash = au.get("/").text();
    assert!(dash.contains("<td class=\"held\">1</td>"), "{dash}");
    assert!(dash.contains("<td class=\"expired\">0</td>"), "{dash}");
    std::thread::sleep(Duration::from_millis(1500));
    let dash = au.get("/").text();
    assert!(dash.contains("<td class=\"expired\">1</td>"), "{dash}");
}
