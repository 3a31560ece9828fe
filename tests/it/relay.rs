//! The relay sink against a real peer: Postfix's smtp-sink stands in for the LGWAN-side MTA.

use crate::support;
use mukaika_fixtures as generate;

use std::time::{Duration, Instant};

use support::{audit_kinds, config, free_port, runtime, smtp_sink, wait_for, Client};

fn relay_config(data: &std::path::Path, port: u16) -> mukaika::config::ServiceConfig {
    let mut c = config(data, "");
    c.delivery.mode = mukaika::config::DeliveryMode::Relay;
    c.delivery.relay = Some(format!("smtp://127.0.0.1:{port}"));
    c.delivery.first_retry_secs = 1;
    c.delivery.max_retry_secs = 1;
    c.validate().unwrap();
    c
}

fn send_one(addr: std::net::SocketAddr, message: &[u8]) {
    let (mut c, _) = Client::connect(addr);
    assert_eq!(c.send(b"EHLO client.invalid\r\n"), 250);
    assert_eq!(c.mail("soumu@city.example.invalid", message), 250);
    assert_eq!(c.send(b"QUIT\r\n"), 221);
}

#[test]
fn relays_only_converted_mail_to_the_lgwan_mta() {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    // Outside the data directory, which other users (smtp-sink runs as nobody) cannot enter.
    let sink_dir = tempfile::tempdir().unwrap();
    let dump = sink_dir.path().join("sink");
    let sink = smtp_sink(port, &dump, &[]);
    let rt = runtime();
    let running = support::start(&rt, relay_config(data.path(), port), "");
    send_one(running.smtp_addr, &generate::mail_html_only());
    send_one(running.smtp_addr, &generate::mail_forwarded_macro());
    let dumped = wait_for(&dump, 2);
    rt.block_on(running.stop("test"));
    drop(sink);
    assert_eq!(dumped.len(), 2, "both converted messages reached the relay");
    for path in dumped {
        let text = String::from_utf8_lossy(&std::fs::read(path).unwrap()).into_owned();
        assert!(text.contains("X-Mukaika-Id: "), "{text}");
        assert!(!text.to_ascii_lowercase().contains("text/html") && !text.contains("vbaProject"));
    }
    let kinds = audit_kinds(data.path());
    assert_eq!(
        kinds.iter().filter(|k| *k == "delivered").count(),
        2,
        "{kinds:?}"
    );
    let delivered =
        mukaika::audit::search(&data.path().join("audit"), &Default::default()).unwrap();
    assert!(delivered
        .iter()
        .any(|r| r.event["destination"] == format!("smtp://127.0.0.1:{port}")));
}

#[test]
fn defers_while_the_relay_is_down_then_delivers_when_it_returns() {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let rt = runtime();
    let running = support::start(&rt, relay_config(data.path(), port), "");
    send_one(running.smtp_addr, &generate::mail_cp932());
    let deadline = Instant::now() + Duration::from_secs(20);
    while !audit_kinds(data.path()).iter().any(|k| k == "deferred") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        audit_kinds(data.path()).iter().any(|k| k == "deferred"),
        "a refused connection defers"
    );
    // Outside the data directory, which other users (smtp-sink runs as nobody) cannot enter.
    let sink_dir = tempfile::tempdir().unwrap();
    let dump = sink_dir.path().join("sink");
    let sink = smtp_sink(port, &dump, &[]);
    let dumped = wait_for(&dump, 1);
    rt.block_on(running.stop("test"));
    drop(sink);
    assert_eq!(dumped.len(), 1, "delivered once the relay is back");
    assert!(audit_kinds(data.path()).iter().any(|k| k == "delivered"));
    let outgoing: usize = ["incoming", "active", "deferred"]
        .iter()
        .map(|s| {
            std::fs::read_dir(data.path().join("outgoing").join(s))
                .unwrap()
                .count()
        })
        .sum();
    assert_eq!(outgoing, 0);
}

#[test]
fn holds_a_message_the_relay_refuses_permanently() {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    // Outside the data directory, which other users (smtp-sink runs as nobody) cannot enter.
    let sink_dir = tempfile::tempdir().unwrap();
    let dump = sink_dir.path().join("sink");
    let sink = smtp_sink(port, &dump, &["-f", "RCPT"]);
    let rt = runtime();
    let running = support::start(&rt, relay_config(data.path(), port), "");
    send_one(running.smtp_addr, &generate::mail_eucjp());
    let held = wait_for(&data.path().join("outgoing/hold"), 1);
    rt.block_on(running.stop("test"));
    drop(sink);
    assert_eq!(held.len(), 1, "the message waits in hold/: {held:?}");
    let kinds = audit_kinds(data.path());
    assert!(
        kinds.iter().any(|k| k == "held") && !kinds.iter().any(|k| k == "delivered"),
        "{kinds:?}"
    );
}

#[test]
fn swaks_sends_html_japanese_and_macro_mail_and_the_relay_gets_only_conversions() {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    // Outside the data directory, which other users (smtp-sink runs as nobody) cannot enter.
    let sink_dir = tempfile::tempdir().unwrap();
    let dump = sink_dir.path().join("sink");
    let sink = smtp_sink(port, &dump, &[]);
    let rt = runtime();
    let running = support::start(&rt, relay_config(data.path(), port), "");
    let server = running.smtp_addr.to_string();
    let docm = data.path().join("申請書.docm");
    std::fs::write(&docm, generate::docm_with_macro().build()).unwrap();
    let swaks = |extra: &[&str]| {
        let mut cmd = std::process::Command::new("swaks");
        cmd.args([
            "--server",
            &server,
            "--to",
            "soumu@city.example.invalid",
            "--from",
            "taro@example.invalid",
            "--silent",
            "2",
        ]);
        cmd.args(extra);
        let out = cmd
            .output()
            .expect("swaks is required: run bash tests/ci.sh");
        assert!(
            out.status.success(),
            "swaks failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    swaks(&[
        "--header",
        "Subject: HTML",
        "--add-header",
        "Content-Type: text/html; charset=UTF-8",
        "--body",
        "<p>お知らせ <a href=\"https://login.example.invalid/\">こちら</a></p><script>x()</script>",
    ]);
    swaks(&[
        "--header",
        "Subject: 日本語の件名",
        "--body",
        "本文：①㈱髙橋",
    ]);
    swaks(&[
        "--header",
        "Subject: macro",
        "--body",
        "様式です",
        "--attach",
        docm.to_str().unwrap(),
    ]);
    let dumped = wait_for(&dump, 3);
    rt.block_on(running.stop("test"));
    drop(sink);
    assert_eq!(dumped.len(), 3);
    let texts: Vec<String> = dumped
        .iter()
        .map(|p| String::from_utf8_lossy(&std::fs::read(p).unwrap()).into_owned())
        .collect();
    for t in &texts {
        assert!(
            t.contains("X-Mukaika-Id: ")
                && !t.to_ascii_lowercase().contains("text/html")
                && !t.contains("<script"),
            "{t}"
        );
    }
    let all = texts.join("\n");
    assert!(
        all.contains("application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
        "the docm arrives as a docx"
    );
    assert!(!all.contains("macroEnabled"));
}

#[test]
fn relays_over_starttls_only_to_a_relay_whose_certificate_verifies() {
    // The LGWAN-side MTA: a second gateway with STARTTLS and a certificate for "localhost".
    let lgwan = tempfile::tempdir().unwrap();
    let (_, ca, key) = support::localhost_cert(lgwan.path());
    let mut target = config(lgwan.path(), "");
    target.smtp.tls_cert_file = Some(ca.clone());
    target.smtp.tls_key_file = Some(key);
    let rt = runtime();
    let lgwan_side = support::start(&rt, target, "lgwan");
    let port = lgwan_side.smtp_addr.port();

    // A gateway that trusts the right certificate delivers.
    let data = tempfile::tempdir().unwrap();
    let mut c = relay_config(data.path(), port);
    c.delivery.relay = Some(format!("smtp://localhost:{port}"));
    c.delivery.relay_starttls = true;
    c.delivery.relay_ca_file = Some(ca.clone());
    c.validate().unwrap();
    let gateway = support::start(&rt, c, "gateway");
    send_one(gateway.smtp_addr, &generate::mail_html_only());
    let arrived = wait_for(&lgwan.path().join("maildir/new"), 1);
    assert_eq!(arrived.len(), 1, "delivered over TLS");
    let delivered = mukaika::audit::search(&data.path().join("audit"), &Default::default())
        .unwrap()
        .into_iter()
        .find(|r| r.event["type"] == "delivered")
        .expect("delivery recorded");
    assert!(delivered.event["destination"]
        .as_str()
        .unwrap()
        .contains("STARTTLS"));
    rt.block_on(gateway.stop("test"));

    // One that trusts another certificate sends nothing: the message waits.
    let other = tempfile::tempdir().unwrap();
    let wrong = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let wrong_ca = other.path().join("wrong-ca.pem");
    std::fs::write(&wrong_ca, wrong.cert.pem()).unwrap();
    let mut c = relay_config(other.path(), port);
    c.delivery.relay = Some(format!("smtp://localhost:{port}"));
    c.delivery.relay_starttls = true;
    c.delivery.relay_ca_file = Some(wrong_ca);
    let gateway = support::start(&rt, c, "gateway");
    send_one(gateway.smtp_addr, &generate::mail_html_only());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !audit_kinds(other.path()).iter().any(|k| k == "deferred") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let deferred = mukaika::audit::search(&other.path().join("audit"), &Default::default())
        .unwrap()
        .into_iter()
        .find(|r| r.event["type"] == "deferred")
        .expect("the failed handshake is recorded as a deferral");
    assert!(
        deferred.event["reason"].as_str().unwrap().contains("TLS"),
        "{}",
        deferred.event
    );
    std::thread::sleep(Duration::from_millis(500));
    let arrived = std::fs::read_dir(lgwan.path().join("maildir/new"))
        .unwrap()
        .count();
    assert_eq!(arrived, 1, "nothing more arrived");
    rt.block_on(gateway.stop("test"));
    rt.block_on(lgwan_side.stop("test"));
}

#[test]
fn an_approved_release_goes_out_through_the_relay_marked_with_both_people() {
    use mukaika::admin::control::{run, Op};
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    // Outside the data directory, which other users (smtp-sink runs as nobody) cannot enter.
    let sink_dir = tempfile::tempdir().unwrap();
    let dump = sink_dir.path().join("sink");
    let sink = smtp_sink(port, &dump, &[]);
    let mut c = relay_config(data.path(), port);
    c.notices.recipients = false;
    let original = b"From: sender@example.com\r\nTo: soumu@city.example.invalid\r\nSubject: held\r\n\r\nbody line\r\n";
    let item = mukaika::store::quarantine::QuarantineItem {
        rcpt_to: vec!["soumu@city.example.invalid".into()],
        ..support::held_mail("Q0001", "malformed", original)
    };
    support::hold(data.path(), &item, original);
    let rt = runtime();
    let running = support::start(&rt, c.clone(), "");
    for (name, role) in [("op1", "operator"), ("ap1", "approver")] {
        support::control_account(&c, name, role);
    }
    let reply = run(
        &c,
        Op::RequestRelease {
            user: "op1".into(),
            auth: support::proof(support::CLI_PASSWORD),
            item: "Q0001".into(),
            target: "original-recipients".into(),
            reason: "取引先に確認済み".into(),
        },
    )
    .unwrap();
    assert!(reply.ok, "{}", reply.message);
    let request = mukaika::review::read_requests(data.path(), None).unwrap()[0]
        .id
        .clone();
    let reply = run(
        &c,
        Op::Approve {
            user: "ap1".into(),
            auth: support::proof(support::CLI_PASSWORD),
            request: request.clone(),
            reason: "確認".into(),
        },
    )
    .unwrap();
    assert!(reply.ok, "{}", reply.message);
    let dumped = wait_for(&dump, 1);
    rt.block_on(running.stop("test"));
    drop(sink);
    assert_eq!(dumped.len(), 1);
    let text = String::from_utf8_lossy(&std::fs::read(&dumped[0]).unwrap()).into_owned();
    assert!(
        text.contains(&format!(
            "X-Mukaika-Released: item=Q0001; request={request}; requester=op1; approver=ap1"
        )),
        "{text}"
    );
    assert!(text.contains("body line"), "{text}");
    let kinds = audit_kinds(data.path());
    assert!(
        kinds.contains(&"release_delivered".to_string())
            && kinds.contains(&"delivered".to_string()),
        "{kinds:?}"
    );
}

/// The pipeline passes a converted message on by writing it over its intake item and renaming
/// that into the outgoing spool. A crash between the two leaves the converted bytes staged in
/// the intake spool; after the restart they go to the LGWAN MTA once, as they are — not
/// converted a second time, not dropped, not audited as a new conversion.
#[test]
fn a_message_staged_before_a_crash_is_relayed_once_as_staged() {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let sink_dir = tempfile::tempdir().unwrap();
    let dump = sink_dir.path().join("sink");
    let sink = smtp_sink(port, &dump, &[]);
    let active = data.path().join("spool/active");
    std::fs::create_dir_all(&active).unwrap();
    let staged = b"Subject: staged\r\nX-Test: STAGED-BEFORE-CRASH\r\n\r\n<b>kept as text</b>\r\n";
    let meta = mukaika::store::spool::ItemMeta {
        id: "0000000000010000000001".into(),
        envelope: mukaika::envelope::Envelope {
            helo: "client.invalid".into(),
            mail_from: "sender@example.invalid".into(),
            rcpt_to: vec!["soumu@city.example.invalid".into()],
            eight_bit: false,
            smtputf8: false,
        },
        client: "converted".into(),
        received_at: "2026-12-05T01:00:00.000Z".into(),
        size: staged.len() as u64,
        sha256: String::new(),
        attempts: 0,
        next_attempt_ms: None,
        last_error: None,
        converted: true,
    };
    let mut bytes = serde_json::to_vec(&meta).unwrap();
    bytes.push(b'\n');
    bytes.extend_from_slice(staged);
    std::fs::write(active.join(format!("{}.item", meta.id)), &bytes).unwrap();

    let rt = runtime();
    let running = support::start(&rt, relay_config(data.path(), port), "");
    let dumped = wait_for(&dump, 1);
    // Long enough for a second copy, had the item been queued twice.
    std::thread::sleep(Duration::from_millis(1500));
    let dumped_after = wait_for(&dump, 1);
    rt.block_on(running.stop("test"));
    drop(sink);
    assert_eq!(dumped.len(), 1, "the staged message reached the relay");
    assert_eq!(dumped_after.len(), 1, "and only once");
    let text = String::from_utf8_lossy(&std::fs::read(&dumped[0]).unwrap()).into_owned();
    assert!(text.contains("STAGED-BEFORE-CRASH"), "{text}");
    assert!(
        !text.contains("X-Mukaika-Id"),
        "converted a second time: {text}"
    );
    let kinds = audit_kinds(data.path());
    assert_eq!(
        kinds.iter().filter(|k| *k == "delivered").count(),
        1,
        "{kinds:?}"
    );
    assert!(!kinds.iter().any(|k| k == "message_converted"), "{kinds:?}");
    for state in ["incoming", "active", "deferred", "hold"] {
        let dir = data.path().join("spool").join(state);
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "{state}/");
    }
}

/// A converted message moves from the intake spool into the relay's by a rename, which is what
/// keeps it in exactly one of them: with the outgoing spool on another file system (here a
/// link into /dev/shm, a tmpfs) the service refuses to start rather than copy and risk a
/// message relayed twice after a crash.
#[test]
fn the_relay_refuses_to_start_with_its_spools_on_two_file_systems() {
    use std::os::unix::fs::MetadataExt;
    let data = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir_in("/dev/shm").unwrap();
    assert_ne!(
        std::fs::metadata(data.path()).unwrap().dev(),
        std::fs::metadata(elsewhere.path()).unwrap().dev(),
        "the test needs /dev/shm on a file system of its own"
    );
    std::os::unix::fs::symlink(elsewhere.path(), data.path().join("outgoing")).unwrap();
    let rt = runtime();
    let refused = rt
        .block_on(mukaika::service::start(
            relay_config(data.path(), free_port()),
            "test",
            "",
        ))
        .err()
        .expect("two file systems are refused");
    assert!(refused.is_config(), "{refused}");
    assert!(
        refused.to_string().contains("different file systems"),
        "{refused}"
    );
}
