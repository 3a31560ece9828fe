//! The antivirus stage against a real, private clamd (started here on its own socket with a
//! one-signature database; tests/ci.sh installs clamav-daemon): EICAR as a plain attachment,
//! inside a zip, inside a zip inside a mail, and in an import folder is blocked with its
//! signature name; with clamd stopped intake tempfails and nothing is lost; with clamd back
//! everything flows.

use crate::support;
use mukaika_fixtures as generate;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mukaika::antivirus::{Clamd, Endpoint};
use mukaika::config::ServiceConfig;
use mukaika_sanitizers::{Declared, Policy, Registry, Verdict};
use support::{runtime, wait_for, Client};

/// The EICAR test string, assembled here so this source file itself is not a detection.
fn eicar() -> Vec<u8> {
    let mut s = String::from("X5O!P%@AP[4\\PZX54(P^)7CC)7}$");
    s.push_str("EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*");
    s.into_bytes()
}

const SIGNATURE: &str = "Mukaika.Test.EICAR";

/// A private clamd: Foreground, its own socket and a database holding one signature.
struct ClamdProcess {
    child: Option<Child>,
    dir: PathBuf,
    stream_max: String,
}

impl ClamdProcess {
    fn start(dir: &Path) -> Self {
        Self::start_with(dir, "100M")
    }

    fn start_with(dir: &Path, stream_max: &str) -> Self {
        std::fs::create_dir_all(dir.join("db")).unwrap();
        std::fs::create_dir_all(dir.join("tmp")).unwrap();
        let hex: String = eicar().iter().map(|b| format!("{b:02x}")).collect();
        std::fs::write(
            dir.join("db/custom.ndb"),
            format!("{SIGNATURE}:0:*:{hex}\n"),
        )
        .unwrap();
        let mut p = ClamdProcess {
            child: None,
            dir: dir.to_path_buf(),
            stream_max: stream_max.to_string(),
        };
        p.restart();
        p
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("clamd.sock")
    }

    fn restart(&mut self) {
        let conf = self.dir.join("clamd.conf");
        std::fs::write(
            &conf,
            format!(
                "Foreground yes\nDatabaseDirectory {0}/db\nTemporaryDirectory {0}/tmp\nLocalSocket {0}/clamd.sock\nStreamMaxLength {1}\nSelfCheck 0\n",
                self.dir.display(),
                self.stream_max
            ),
        )
        .unwrap();
        let _ = std::fs::remove_file(self.socket());
        let child = Command::new("/usr/sbin/clamd")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("clamd is installed by tests/ci.sh (clamav-daemon)");
        self.child = Some(child);
        let client = Clamd::new(Endpoint::Unix(self.socket()), Duration::from_secs(2));
        let deadline = Instant::now() + Duration::from_secs(60);
        while client.ping().is_err() {
            assert!(Instant::now() < deadline, "clamd did not come up");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(self.socket());
    }
}

impl Drop for ClamdProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    generate::zip_of(entries)
}

#[test]
fn eicar_is_blocked_by_name_wherever_it_hides_and_clamd_down_holds_everything() {
    let dir = tempfile::tempdir().unwrap();
    let mut clamd = ClamdProcess::start(&dir.path().join("clamd"));
    let scanner = Arc::new(Clamd::new(
        Endpoint::Unix(clamd.socket()),
        Duration::from_secs(5),
    ));
    let registry = Registry::standard().with_scanner(scanner);
    let process = |bytes: &[u8], name: &str| {
        registry.process(
            bytes,
            &Declared {
                name: Some(name),
                mime: None,
            },
            &Policy::default(),
        )
    };

    let plain = process(&eicar(), "readme.txt");
    assert_eq!(plain.report.verdict, Verdict::Blocked);
    let reason = plain.report.reason.clone().unwrap();
    assert_eq!(reason.code, "virus");
    assert!(reason.detail.starts_with(SIGNATURE), "{}", reason.detail);

    let zipped = process(&zip_of(&[("docs/readme.txt", &eicar())]), "docs.zip");
    assert_eq!(
        zipped.report.verdict,
        Verdict::Blocked,
        "{:?}",
        zipped.report.reason
    );
    // clamd unpacks the zip itself; either way the scanner decided, and named the signature.
    let reason = zipped.report.reason.as_ref().unwrap();
    assert_eq!(reason.code, "virus", "{}", reason.detail);
    assert!(reason.detail.contains(SIGNATURE), "{}", reason.detail);

    let clean = process(b"an ordinary memo\n", "memo.txt");
    assert_eq!(clean.report.verdict, Verdict::Passed);

    clamd.stop();
    let held = process(b"an ordinary memo\n", "memo.txt");
    assert_eq!(held.report.verdict, Verdict::Quarantined);
    assert_eq!(
        held.report.reason.as_ref().unwrap().code,
        "scanner-unavailable"
    );
    assert!(held.output().is_none(), "no answer is never a pass");
}

#[test]
fn the_gateway_blocks_eicar_in_mail_and_import_and_tempfails_while_clamd_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let mut clamd = ClamdProcess::start(&dir.path().join("clamd"));
    let data = dir.path().join("data");
    let text = support::config_text(&data, "127.0.0.1:0")
        .replace("settle_secs = 5", "settle_secs = 0")
        .replace("rescan_secs = 30", "rescan_secs = 1")
        .replace(
            "# clamd = \"unix:/run/clamav/clamd.ctl\"",
            &format!("clamd = \"unix:{}\"", clamd.socket().display()),
        );
    let config = ServiceConfig::from_toml(&text).unwrap();
    let rt = runtime();
    let running = support::start(&rt, config, &text);

    let attach = |name: &str, bytes: &[u8]| {
        generate::eml(
            &[
                format!("Subject: {name}"),
                "Content-Type: multipart/mixed; boundary=\"b1\"".into(),
            ],
            &generate::multipart(
                "b1",
                &[
                    (
                        vec!["Content-Type: text/plain; charset=utf-8".into()],
                        "添付します。\r\n".as_bytes().to_vec(),
                    ),
                    generate::attachment_part(
                        &format!("application/octet-stream; name=\"{name}\""),
                        &format!("attachment; filename=\"{name}\""),
                        bytes,
                    ),
                ],
            ),
        )
    };
    let (mut c, _) = Client::connect(running.smtp_addr);
    assert_eq!(c.send(b"EHLO client.invalid\r\n"), 250);
    assert_eq!(
        c.mail("soumu@city.example.invalid", &attach("eicar.txt", &eicar())),
        250
    );
    let inner = zip_of(&[("eicar.txt", &eicar())]);
    assert_eq!(
        c.mail(
            "soumu@city.example.invalid",
            &attach("nested.zip", &zip_of(&[("inner.zip", &inner)]))
        ),
        250
    );
    let delivered = wait_for(&data.join("maildir/new"), 2);
    assert_eq!(delivered.len(), 2);
    for path in &delivered {
        let text = String::from_utf8(std::fs::read(path).unwrap()).unwrap();
        assert!(!text.contains("EICAR-STANDARD"), "EICAR delivered");
        assert!(
            text.contains("attachments-removed=1"),
            "the attachment is removed, the text delivered:\n{text}"
        );
    }
    // The audit records a delivery after it happened, so the second message's record may
    // land a moment after its maildir file: wait for it rather than race it.
    let blocked_on_record = || {
        mukaika::audit::search(&data.join("audit"), &Default::default())
            .unwrap()
            .into_iter()
            .filter(|r| r.event["type"] == "part_sanitized" && r.event["verdict"] == "blocked")
            .count()
    };
    let since = Instant::now();
    while blocked_on_record() < 2 && since.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(blocked_on_record(), 2, "both attachments blocked on record");

    // The import folder: the file leaves only a report naming the detection.
    support_put(&data.join("import/請求書.txt"), &eicar());
    let report = wait_for_file(&data.join("export/請求書.txt.無害化レポート.txt"));
    assert!(
        report.contains("ウイルス") && report.contains(SIGNATURE),
        "{report}"
    );
    assert!(!data.join("export/請求書.txt").exists());

    // clamd down: intake answers 451 and keeps nothing; the client still has its message.
    clamd.stop();
    let refused = c.mail(
        "soumu@city.example.invalid",
        &attach("memo.txt", b"memo\r\n"),
    );
    assert_eq!(refused, 451);
    let (status, body) = support::http_get(running.admin_addr, "/healthz");
    assert_eq!(status, 503);
    assert!(body.contains("antivirus unavailable"), "{body}");
    let (_, metrics) = support::http_get(running.admin_addr, "/metrics");
    assert!(metrics.contains("mukaika_antivirus_up 0"), "{metrics}");

    // clamd back: the retried message flows.
    clamd.restart();
    assert_eq!(
        c.mail(
            "soumu@city.example.invalid",
            &attach("memo.txt", b"memo\r\n")
        ),
        250
    );
    assert_eq!(wait_for(&data.join("maildir/new"), 3).len(), 3);
    assert_eq!(c.send(b"QUIT\r\n"), 221);
    rt.block_on(running.stop("test"));
}

fn support_put(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

fn wait_for_file(path: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn over_the_stream_limit_is_held_and_sessions_are_reused() {
    let dir = tempfile::tempdir().unwrap();
    let clamd = ClamdProcess::start_with(&dir.path().join("clamd"), "1M");
    let scanner = Clamd::new(Endpoint::Unix(clamd.socket()), Duration::from_secs(5));
    use mukaika_sanitizers::scanner::Scanner;
    // Many scans over pooled sessions.
    for _ in 0..20 {
        assert_eq!(scanner.scan(b"clean bytes\n").unwrap(), None);
    }
    assert!(scanner.scan(&eicar()).unwrap().is_some());
    let big = vec![b'a'; 3 << 20];
    let err = scanner.scan(&big).unwrap_err();
    assert!(!err.is_transient(), "{err}");
    let registry = Registry::standard().with_scanner(Arc::new(scanner));
    let outcome = registry.process(
        &big,
        &Declared {
            name: Some("big.txt"),
            mime: None,
        },
        &Policy::default(),
    );
    assert_eq!(outcome.report.verdict, Verdict::Quarantined);
    assert_eq!(outcome.report.reason.unwrap().code, "unscannable");
}

#[test]
fn in_defer_mode_mail_is_accepted_and_waits_for_clamd() {
    let dir = tempfile::tempdir().unwrap();
    let mut clamd = ClamdProcess::start(&dir.path().join("clamd"));
    let data = dir.path().join("data");
    let text = support::config_text(&data, "127.0.0.1:0")
        .replace(
            "# clamd = \"unix:/run/clamav/clamd.ctl\"",
            &format!("clamd = \"unix:{}\"", clamd.socket().display()),
        )
        .replace(
            "on_unavailable = \"tempfail\"",
            "on_unavailable = \"defer\"",
        );
    let config = ServiceConfig::from_toml(&text).unwrap();
    let rt = runtime();
    let running = support::start(&rt, config, &text);
    clamd.stop();
    let (mut c, _) = Client::connect(running.smtp_addr);
    assert_eq!(c.send(b"EHLO client.invalid\r\n"), 250);
    assert_eq!(
        c.mail("soumu@city.example.invalid", &generate::mail_html_only()),
        250,
        "accepted: it waits in the spool"
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        wait_for_none(&data.join("maildir/new")),
        "nothing converted without clamd"
    );
    let kinds = support::audit_kinds(&data);
    assert!(kinds.iter().any(|k| k == "deferred"), "{kinds:?}");
    clamd.restart();
    let delivered = wait_for(&data.join("maildir/new"), 1);
    assert_eq!(delivered.len(), 1, "delivered once clamd is back");
    assert_eq!(c.send(b"QUIT\r\n"), 221);
    rt.block_on(running.stop("test"));
}

fn wait_for_none(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .map(|d| d.count() == 0)
        .unwrap_or(true)
}

#[test]
fn the_corpus_eicar_files_are_blocked_with_the_scanner() {
    let dir = tempfile::tempdir().unwrap();
    let clamd = ClamdProcess::start(&dir.path().join("clamd"));
    let scanner = Arc::new(Clamd::new(
        Endpoint::Unix(clamd.socket()),
        Duration::from_secs(5),
    ));
    let registry = Registry::standard().with_scanner(scanner);
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/eicar");
    let mut seen = 0;
    for entry in std::fs::read_dir(&corpus).expect("the shared corpus") {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = std::fs::read(&path).unwrap();
        let outcome = registry.process(
            &bytes,
            &Declared {
                name: Some(&name),
                mime: None,
            },
            &Policy::default(),
        );
        assert_eq!(
            outcome.report.verdict,
            Verdict::Blocked,
            "{name}: {:?}",
            outcome.report.reason
        );
        // Blocked by the scanner, by name: not by type, and not by a bug on the way.
        let reason = outcome
            .report
            .reason
            .as_ref()
            .expect("a blocked file has a reason");
        assert_eq!(reason.code, "virus", "{name}: {}", reason.detail);
        assert!(
            reason.detail.contains(SIGNATURE),
            "{name}: {}",
            reason.detail
        );
        seen += 1;
    }
    assert_eq!(seen, 3);
}
