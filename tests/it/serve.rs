//! The gateway end to end: a real listener on 127.0.0.1:0, a temporary data directory, SMTP
//! spoken over a socket, and the results read back from the maildir, quarantine and audit log.

use crate::support;
use mukaika_fixtures as generate;

use mukaika::config::{ServiceConfig, DEFAULT_TOML};
use support::{config, runtime, wait_for, Client};

#[test]
fn delivers_converted_mail_quarantines_what_it_must_and_audits_every_step() {
    let data = tempfile::tempdir().unwrap();
    let rt = runtime();
    let running = support::start(&rt, config(data.path(), ""), DEFAULT_TOML);
    let (mut c, greeting) = Client::connect(running.smtp_addr);
    assert_eq!(greeting, 220);
    assert_eq!(c.send(b"EHLO client.invalid\r\n"), 250);
    assert_eq!(
        c.mail("soumu@city.example.invalid", &generate::mail_html_only()),
        250
    );
    assert_eq!(
        c.mail(
            "soumu@city.example.invalid",
            &generate::mail_forwarded_macro()
        ),
        250
    );
    assert_eq!(
        c.mail(
            "soumu@city.example.invalid",
            &generate::mail_smime_enveloped()
        ),
        250
    );
    assert_eq!(c.send(b"QUIT\r\n"), 221);

    let delivered = wait_for(&data.path().join("maildir/new"), 3);
    assert_eq!(
        delivered.len(),
        3,
        "two converted messages and a notice: the enveloped message is not delivered"
    );
    let items = support::quarantined(data.path(), 1);
    assert_eq!(items.len(), 1);
    let (notices, converted): (Vec<String>, Vec<String>) = delivered
        .iter()
        .map(|p| String::from_utf8(std::fs::read(p).unwrap()).unwrap())
        .partition(|t| t.contains("X-Mukaika-Sanitized: notice"));
    assert_eq!(notices.len(), 1);
    assert!(
        notices[0].contains("X-Mukaika-Id: ") && !notices[0].contains("application/pkcs7-mime")
    );
    for text in &converted {
        assert!(
            text.contains("X-Mukaika-Id: ") && text.contains("X-Mukaika-Sanitized: text-converted")
        );
        assert!(!text.to_ascii_lowercase().contains("text/html"));
        assert!(!text.contains("vbaProject"));
    }
    rt.block_on(running.stop("test"));
    let report = mukaika::audit::verify(&data.path().join("audit"), None, None).unwrap();
    assert!(report.intact(), "{:?}", report.problem);
    let kinds: Vec<String> =
        mukaika::audit::search(&data.path().join("audit"), &Default::default())
            .unwrap()
            .iter()
            .map(|r| r.event["type"].as_str().unwrap().to_string())
            .collect();
    for k in [
        "config_loaded",
        "service_started",
        "message_received",
        "message_converted",
        "part_sanitized",
        "quarantined",
        "delivered",
        "service_stopped",
    ] {
        assert!(kinds.iter().any(|x| x == k), "missing {k} in {kinds:?}");
    }
    assert_eq!(kinds.iter().filter(|k| *k == "message_received").count(), 3);
    // Everything that was accepted was settled: the spool is empty.
    let spool = std::fs::read_dir(data.path().join("spool/incoming"))
        .unwrap()
        .count()
        + std::fs::read_dir(data.path().join("spool/active"))
            .unwrap()
            .count();
    assert_eq!(spool, 0);
}

#[test]
fn smuggled_messages_are_refused_over_a_real_socket() {
    let data = tempfile::tempdir().unwrap();
    let rt = runtime();
    let running = support::start(&rt, config(data.path(), ""), DEFAULT_TOML);
    let (mut c, _) = Client::connect(running.smtp_addr);
    assert_eq!(c.send(b"EHLO x\r\n"), 250);
    assert_eq!(c.send(b"MAIL FROM:<a@example.invalid>\r\n"), 250);
    assert_eq!(c.send(b"RCPT TO:<b@city.example.invalid>\r\n"), 250);
    assert_eq!(c.send(b"DATA\r\n"), 354);
    let code = c.send(b"Subject: x\r\n\r\nhi\n.\nMAIL FROM:<evil@example.invalid>\r\nRCPT TO:<victim@city.example.invalid>\r\nDATA\r\nforged\r\n.\r\n");
    assert_eq!(code, 550);
    assert_eq!(c.send(b"NOOP\r\n"), 250, "the session stays usable");
    rt.block_on(running.stop("test"));
    assert_eq!(
        std::fs::read_dir(data.path().join("spool/incoming"))
            .unwrap()
            .count(),
        0
    );
    assert!(wait_for(&data.path().join("maildir/new"), 0).is_empty());
}

#[test]
fn refuses_clients_outside_the_networks_and_relaying_beyond_accepted_domains() {
    let data = tempfile::tempdir().unwrap();
    let rt = runtime();
    let text = DEFAULT_TOML
        .replace("listen = \"127.0.0.1:2525\"", "listen = \"127.0.0.1:0\"")
        .replace(
            "dir = \"./data\"",
            &format!("dir = \"{}\"", data.path().display()),
        )
        .replace(
            "client_networks = [\"127.0.0.0/8\", \"::1/128\"]",
            "client_networks = [\"127.0.0.2/32\"]",
        )
        .replace(
            "accepted_domains = []",
            "accepted_domains = [\"city.example.invalid\"]",
        );
    let running = support::start(&rt, ServiceConfig::from_toml(&text).unwrap(), &text);
    let (_, code) = Client::connect(running.smtp_addr);
    assert_eq!(code, 554, "127.0.0.1 is outside 127.0.0.2/32");
    rt.block_on(running.stop("test"));

    let text = DEFAULT_TOML
        .replace("listen = \"127.0.0.1:2525\"", "listen = \"127.0.0.1:0\"")
        .replace(
            "dir = \"./data\"",
            &format!("dir = \"{}\"", data.path().display()),
        )
        .replace(
            "accepted_domains = []",
            "accepted_domains = [\"city.example.invalid\"]",
        );
    let running = support::start(&rt, ServiceConfig::from_toml(&text).unwrap(), &text);
    let (mut c, _) = Client::connect(running.smtp_addr);
    assert_eq!(c.send(b"EHLO x\r\n"), 250);
    assert_eq!(c.send(b"MAIL FROM:<a@example.invalid>\r\n"), 250);
    assert_eq!(c.send(b"RCPT TO:<someone@elsewhere.invalid>\r\n"), 550);
    assert_eq!(c.send(b"RCPT TO:<soumu@city.example.invalid>\r\n"), 250);
    rt.block_on(running.stop("test"));
}

#[test]
fn a_lease_dropped_mid_work_or_left_by_a_crash_goes_back_to_incoming() {
    use mukaika::envelope::Envelope;
    let dir = tempfile::tempdir().unwrap();
    let envelope = Envelope {
        helo: "x".into(),
        mail_from: "a@example.invalid".into(),
        rcpt_to: vec!["b@example.invalid".into()],
        eight_bit: false,
        smtputf8: false,
    };
    let (spool, _) = mukaika::store::spool::Spool::open(dir.path(), 1).unwrap();
    let meta = spool
        .accept(envelope.clone(), "127.0.0.1", b"Subject: x\r\n\r\nbody\r\n")
        .unwrap();
    // A worker takes it and fails without an outcome: back in incoming.
    let lease = spool.lease(u64::MAX).unwrap().unwrap();
    assert_eq!(lease.meta().id, meta.id);
    assert!(
        spool.lease(u64::MAX).unwrap().is_none(),
        "one lease per item"
    );
    drop(lease);
    assert_eq!(spool.depths().incoming, 1);
    // A crash with the item in active/ (simulated by forgetting the lease): reopening recovers it.
    let lease = spool.lease(u64::MAX).unwrap().unwrap();
    std::mem::forget(lease);
    assert_eq!(spool.depths().active, 1);
    // Half-written intake in tmp/ was never acknowledged and is removed; a stray file and an
    // item with unreadable metadata go to corrupt/ and are reported.
    std::fs::write(dir.path().join("tmp/half.item"), b"partial").unwrap();
    std::fs::write(dir.path().join("incoming/orphan.eml"), b"not an item").unwrap();
    std::fs::write(dir.path().join("incoming/broken.item"), b"{not json\nx").unwrap();
    let (spool, corrupt) = mukaika::store::spool::Spool::open(dir.path(), 1).unwrap();
    assert_eq!(corrupt, ["orphan.eml", "broken"]);
    let depths = spool.depths();
    assert_eq!((depths.incoming, depths.active, depths.corrupt), (1, 0, 1));
    assert!(
        !dir.path().join("tmp/half.item").exists()
            && dir.path().join("corrupt/orphan.eml").exists()
    );
    let lease = spool.lease(u64::MAX).unwrap().unwrap();
    assert_eq!(lease.data().unwrap(), b"Subject: x\r\n\r\nbody\r\n");
    lease.complete().unwrap();
    assert_eq!(
        spool.depths(),
        mukaika::store::spool::Depths {
            corrupt: 1,
            ..Default::default()
        }
    );
}

#[test]
fn operators_hold_release_and_retry_queue_items_from_the_cli() {
    use mukaika::envelope::Envelope;
    let data = tempfile::tempdir().unwrap();
    let cfg = data.path().join("mukaika.toml");
    std::fs::write(
        &cfg,
        DEFAULT_TOML.replace(
            "dir = \"./data\"",
            &format!("dir = \"{}\"", data.path().display()),
        ),
    )
    .unwrap();
    let (spool, _) = mukaika::store::spool::Spool::open(data.path().join("spool"), 1).unwrap();
    let env = Envelope {
        helo: "x".into(),
        mail_from: "a@example.invalid".into(),
        rcpt_to: vec!["b@example.invalid".into()],
        eight_bit: false,
        smtputf8: false,
    };
    let id = spool
        .accept(env, "127.0.0.1", b"Subject: q\r\n\r\nx\r\n")
        .unwrap()
        .id;
    let run = |args: &[&str]| {
        let mut all = vec!["queue", "--config", cfg.to_str().unwrap()];
        all.extend_from_slice(args);
        std::process::Command::new(env!("CARGO_BIN_EXE_mukaika"))
            .args(&all)
            .output()
            .unwrap()
    };
    let listed = run(&["list"]);
    assert!(String::from_utf8_lossy(&listed.stdout).contains(&id));
    assert!(run(&["hold", &id]).status.success());
    assert_eq!(spool.depths().hold, 1);
    let shown = run(&["show", &id]);
    assert!(String::from_utf8_lossy(&shown.stdout).contains("\"state\": \"hold\""));
    assert!(run(&["release", &id]).status.success());
    assert_eq!(spool.depths().incoming, 1);
    assert_eq!(run(&["show", "NOSUCHID"]).status.code(), Some(1));
}

#[test]
fn starttls_upgrades_the_session_and_drops_injected_plaintext() {
    use std::sync::Arc;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    let data = tempfile::tempdir().unwrap();
    let (cert, cert_path, key_path) = support::localhost_cert(data.path());
    let mut c = config(data.path(), "");
    c.smtp.tls_cert_file = Some(cert_path);
    c.smtp.tls_key_file = Some(key_path);
    c.validate().unwrap();
    let rt = runtime();
    let running = support::start(&rt, c, DEFAULT_TOML);
    let addr = running.smtp_addr;
    rt.block_on(async move {
        async fn reply<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R) -> (u16, String) {
            let mut all = String::new();
            loop {
                let mut line = String::new();
                r.read_line(&mut line).await.unwrap();
                all.push_str(&line);
                if line.as_bytes().get(3) != Some(&b'-') {
                    return (line[..3].parse().unwrap(), all);
                }
            }
        }
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut plain = BufReader::new(tcp);
        assert_eq!(reply(&mut plain).await.0, 220);
        plain
            .get_mut()
            .write_all(b"EHLO client.invalid\r\n")
            .await
            .unwrap();
        let (code, text) = reply(&mut plain).await;
        assert!(code == 250 && text.contains("STARTTLS"), "{text}");
        // An injection attempt: a command after STARTTLS in the same packet.
        plain
            .get_mut()
            .write_all(b"STARTTLS\r\nMAIL FROM:<injected@example.invalid>\r\n")
            .await
            .unwrap();
        assert_eq!(reply(&mut plain).await.0, 220);

        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert.cert.der().clone()).unwrap();
        let client = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let tls = connector.connect(name, plain.into_inner()).await.unwrap();
        let mut tls = BufReader::new(tls);
        // Had the injected MAIL been run, its reply would come first; it must not.
        tls.get_mut()
            .write_all(b"MAIL FROM:<a@example.invalid>\r\n")
            .await
            .unwrap();
        assert_eq!(
            reply(&mut tls).await.0,
            503,
            "after the handshake the client must EHLO again"
        );
        tls.get_mut()
            .write_all(b"EHLO client.invalid\r\n")
            .await
            .unwrap();
        let (code, text) = reply(&mut tls).await;
        assert!(code == 250 && !text.contains("STARTTLS"), "{text}");
        for (cmd, want) in [
            (&b"MAIL FROM:<a@example.invalid>\r\n"[..], 250),
            (b"RCPT TO:<b@city.example.invalid>\r\n", 250),
            (b"DATA\r\n", 354),
            (b"Subject: tls\r\n\r\nover TLS\r\n.\r\n", 250),
        ] {
            tls.get_mut().write_all(cmd).await.unwrap();
            assert_eq!(reply(&mut tls).await.0, want);
        }
    });
    let delivered = wait_for(&data.path().join("maildir/new"), 1);
    rt.block_on(running.stop("test"));
    assert_eq!(delivered.len(), 1);
}

/// `mukaika serve` as a child process, stopped with SIGTERM when dropped.
struct Served(std::process::Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn signal(child: &std::process::Child, signal: rustix::process::Signal) {
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, signal).unwrap();
}

#[test]
fn reload_applies_new_limits_and_a_broken_file_leaves_the_running_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = support::free_port();
    let path = dir.path().join("mukaika.toml");
    let path_arg = path.to_str().unwrap();
    let base = support::config_text(&data, &format!("127.0.0.1:{port}"));
    std::fs::write(&path, &base).unwrap();
    let served = Served(
        std::process::Command::new(env!("CARGO_BIN_EXE_mukaika"))
            .args(["serve", "--config", path_arg])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(std::time::Instant::now() < deadline, "serve did not start");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let message = format!(
        "From: s@example.invalid\r\nTo: r@city.example.invalid\r\nSubject: reload\r\n\r\n{}\r\n",
        "本文の行です。\r\n".repeat(200)
    );
    let send = |expect_size: &str| {
        let (mut c, code) = Client::connect(addr);
        assert_eq!(code, 220);
        assert!(c
            .send_text(b"EHLO client.example.invalid\r\n")
            .contains(expect_size));
        c.mail("r@city.example.invalid", message.as_bytes())
    };
    assert_eq!(send("SIZE 26214400"), 250);

    // Tighten the size limit; `mukaika reload` checks the file and signals the service.
    std::fs::write(
        &path,
        base.replace("max_message_bytes = 26214400", "max_message_bytes = 2048"),
    )
    .unwrap();
    let out = support::mukaika(&["reload", "--config", path_arg]);
    assert!(out.status.success(), "{out:?}");
    let reloaded = |n: usize| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let kinds = support::audit_kinds(&data);
            let count = kinds.iter().filter(|k| *k == "config_loaded").count();
            if count >= n || std::time::Instant::now() > deadline {
                return count;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    assert_eq!(reloaded(2), 2, "the reload is audited");
    // The record is written just before the swap; wait for new sessions to see it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (mut c, _) = Client::connect(addr);
        let ehlo = c.send_text(b"EHLO client.example.invalid\r\n");
        if ehlo.contains("SIZE 2048") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{ehlo}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(send("SIZE 2048"), 552, "the new limit applies");

    // A broken file: the CLI refuses it, and a bare SIGHUP leaves the running configuration.
    std::fs::write(&path, "[smtp]\nno_such_key = 1\n").unwrap();
    let out = support::mukaika(&["reload", "--config", path_arg]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    signal(&served.0, rustix::process::Signal::HUP);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(send("SIZE 2048"), 552, "still the last good configuration");
    // The SIGHUP was handled before the session above was served (one signal task, and the
    // session waited 300 ms), so a third record would be there by now.
    let loaded = support::audit_kinds(&data)
        .iter()
        .filter(|k| *k == "config_loaded")
        .count();
    assert_eq!(loaded, 2, "nothing is audited for a refused file");

    // The service stops cleanly and takes its pid file with it.
    let pid_file = data.join("mukaika.pid");
    assert!(pid_file.exists());
    let mut served = served;
    signal(&served.0, rustix::process::Signal::TERM);
    let status = served.0.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(!pid_file.exists());
    let out = support::mukaika(&["reload", "--config", path_arg]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "the broken file is still refused first"
    );

    // A stale pid file naming another process (this test) is not signalled.
    std::fs::write(&path, &base).unwrap();
    std::fs::write(&pid_file, format!("{}\n", std::process::id())).unwrap();
    let out = support::mukaika(&["reload", "--config", path_arg]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("古いファイル"));
}

#[test]
fn reload_keeps_restart_only_settings_and_names_them() {
    let data = tempfile::tempdir().unwrap();
    let rt = runtime();
    let running = support::start(&rt, config(data.path(), ""), DEFAULT_TOML);
    let mut new = config(data.path(), "");
    new.smtp.listen = "127.0.0.1:1".parse().unwrap();
    new.pipeline.workers = 3;
    new.smtp.max_recipients = 1;
    let pending = running.reload(new, "test", "edited").unwrap();
    assert_eq!(pending, ["smtp.listen", "pipeline.workers"]);
    // The reloadable limit applies; the listener is the one still bound.
    let (mut c, _) = Client::connect(running.smtp_addr);
    assert_eq!(c.send(b"EHLO x\r\n"), 250);
    assert_eq!(c.send(b"MAIL FROM:<a@example.invalid>\r\n"), 250);
    assert_eq!(c.send(b"RCPT TO:<b@city.example.invalid>\r\n"), 250);
    assert_eq!(c.send(b"RCPT TO:<c@city.example.invalid>\r\n"), 452);
    rt.block_on(running.stop("test"));
    let kinds = support::audit_kinds(data.path());
    assert_eq!(
        kinds.iter().filter(|k| *k == "config_loaded").count(),
        2,
        "{kinds:?}"
    );
}

/// Parses the Prometheus text format strictly: every sample line is `name{labels} value` with a
/// declared family, and every value is a number. Returns (series, value) pairs.
fn parse_metrics(text: &str) -> Vec<(String, f64)> {
    let mut declared = std::collections::HashSet::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let name = parts.next().unwrap();
            let kind = parts.next().unwrap();
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            declared.insert(name.to_string());
            continue;
        }
        if line.starts_with("# HELP ") || line.is_empty() {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad line {line:?}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        let name = series.split('{').next().unwrap();
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .filter(|f| declared.contains(*f))
            .unwrap_or(name);
        assert!(declared.contains(family), "undeclared family in {line:?}");
        if let Some(labels) = series.strip_prefix(name) {
            if !labels.is_empty() {
                assert!(labels.starts_with('{') && labels.ends_with('}'), "{line:?}");
            }
        }
        samples.push((series.to_string(), value));
    }
    samples
}

#[test]
fn metrics_count_from_the_audit_record_and_health_reports_what_fails() {
    let data = tempfile::tempdir().unwrap();
    let rt = runtime();
    let running = support::start(&rt, config(data.path(), ""), DEFAULT_TOML);
    assert!(running.admin_addr.ip().is_loopback());
    let (status, body) = support::http_get(running.admin_addr, "/healthz");
    assert_eq!((status, body.as_str()), (200, "ok\n"));

    let (mut c, _) = Client::connect(running.smtp_addr);
    assert_eq!(c.send(b"EHLO client.invalid\r\n"), 250);
    assert_eq!(
        c.mail(
            "soumu@city.example.invalid",
            &generate::mail_forwarded_macro()
        ),
        250
    );
    assert_eq!(
        c.mail(
            "soumu@city.example.invalid",
            &generate::mail_smime_enveloped()
        ),
        250
    );
    assert_eq!(c.send(b"QUIT\r\n"), 221);
    wait_for(&data.path().join("maildir/new"), 1);
    support::quarantined(data.path(), 1);

    // Counters follow durable audit records; poll briefly for the second settle.
    let mut samples = Vec::new();
    for _ in 0..100 {
        let (status, body) = support::http_get(running.admin_addr, "/metrics");
        assert_eq!(status, 200);
        samples = parse_metrics(&body);
        let converted: f64 = samples
            .iter()
            .filter(|(s, _)| s.starts_with("mukaika_messages_converted_total"))
            .map(|(_, v)| v)
            .sum();
        if converted >= 2.0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let value = |series: &str| {
        samples
            .iter()
            .find(|(s, _)| s == series)
            .map(|(_, v)| *v)
            .unwrap_or_else(|| panic!("{series} missing from {samples:?}"))
    };
    assert_eq!(value("mukaika_smtp_messages_received_total"), 2.0);
    assert_eq!(
        value("mukaika_messages_converted_total{verdict=\"delivered\"}"),
        1.0
    );
    assert_eq!(
        value("mukaika_messages_converted_total{verdict=\"quarantined\"}"),
        1.0
    );
    assert_eq!(
        value("mukaika_files_total{type=\"docm\",verdict=\"sanitized\"}"),
        1.0
    );
    assert_eq!(
        value("mukaika_deliveries_total{outcome=\"delivered\"}"),
        1.0
    );
    assert_eq!(value("mukaika_conversion_seconds_count"), 2.0);
    assert_eq!(value("mukaika_conversion_seconds_bucket{le=\"+Inf\"}"), 2.0);
    assert_eq!(
        value("mukaika_spool_items{spool=\"intake\",state=\"incoming\"}"),
        0.0
    );
    assert!(value("mukaika_spool_free_bytes{spool=\"intake\"}") > 0.0);
    rt.block_on(running.stop("test"));

    // A disk below the configured floor fails health, with the reason.
    let data = tempfile::tempdir().unwrap();
    let text = support::config_text(data.path(), "127.0.0.1:0")
        .replace("min_free_bytes = 1", "min_free_bytes = 1000000000000000");
    let config = ServiceConfig::from_toml(&text).unwrap();
    let running = support::start(&rt, config, &text);
    let (status, body) = support::http_get(running.admin_addr, "/healthz");
    assert_eq!(status, 503);
    assert!(body.contains("disk nearly full"), "{body}");
    rt.block_on(running.stop("test"));
}

#[test]
fn a_second_service_or_import_pass_on_the_same_data_is_refused() {
    let data = tempfile::tempdir().unwrap();
    let rt = runtime();
    let running = support::start(&rt, config(data.path(), ""), DEFAULT_TOML);
    let second = rt.block_on(mukaika::service::start(
        config(data.path(), ""),
        "test",
        DEFAULT_TOML,
    ));
    let err = second
        .err()
        .expect("a second service on the same data must not start");
    assert!(
        err.to_string().contains("in use by another mukaika"),
        "{err}"
    );
    let text = support::config_text(data.path(), "127.0.0.1:0");
    let file = data.path().join("c.toml");
    std::fs::write(&file, text).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mukaika"))
        .args(["import", "once", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("in use"));
    rt.block_on(running.stop("test"));
    // Once stopped, the data directory is free again.
    let again = support::start(&rt, config(data.path(), ""), DEFAULT_TOML);
    rt.block_on(again.stop("test"));
}

/// A sanitizer that takes far longer than the pipeline allows (PDF only).
struct Slow;

impl mukaika_sanitizers::Sanitizer for Slow {
    fn kinds(&self) -> &'static [mukaika_sanitizers::FileKind] {
        &[mukaika_sanitizers::FileKind::Pdf]
    }
    fn sanitize(
        &self,
        _input: &[u8],
        _kind: mukaika_sanitizers::FileKind,
        _cx: &mut mukaika_sanitizers::Context<'_>,
    ) -> Result<mukaika_sanitizers::Sanitized, mukaika_sanitizers::Error> {
        std::thread::sleep(std::time::Duration::from_millis(2500));
        Err(mukaika_sanitizers::Error::malformed("too slow to matter"))
    }
}

#[test]
fn a_conversion_past_its_deadline_quarantines_the_message_whole_once_and_the_queue_moves_on() {
    use std::sync::Arc;
    let data = tempfile::tempdir().unwrap();
    let mut c = config(data.path(), "");
    c.pipeline.timeout_secs = 1;
    c.notices.recipients = false;
    let rt = runtime();
    let (spool, _) = mukaika::store::spool::Spool::open(data.path().join("spool"), 1).unwrap();
    let audit = Arc::new(
        mukaika::audit::AuditLog::open(mukaika::audit::AuditConfig::new(
            data.path().join("audit"),
            "t",
        ))
        .unwrap(),
    );
    let quarantine =
        mukaika::store::quarantine::open(data.path().join("quarantine"), c.quarantine.store)
            .unwrap();
    let pipeline = Arc::new(mukaika::pipeline::Pipeline {
        spool: Arc::clone(&spool),
        audit,
        quarantine,
        sink: mukaika::sink::Sink::Maildir(data.path().join("maildir")),
        registry: Arc::new(mukaika_sanitizers::Registry::with_sanitizers(vec![
            Box::new(Slow),
        ])),
        antivirus: None,
        config: Arc::new(mukaika::live::Live::new(c)),
        wake: Arc::new(tokio::sync::Notify::new()),
        ppap: None,
    });
    let envelope = mukaika::envelope::Envelope {
        helo: "client.invalid".into(),
        mail_from: "sender@example.invalid".into(),
        rcpt_to: vec!["soumu@city.example.invalid".into()],
        eight_bit: false,
        smtputf8: false,
    };
    let slow = b"From: a@example.invalid\r\nTo: soumu@city.example.invalid\r\nSubject: slow\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b\r\nContent-Type: application/pdf; name=a.pdf\r\nContent-Disposition: attachment; filename=a.pdf\r\n\r\n%PDF-1.4\r\n%%EOF\r\n--b--\r\n";
    let quick = b"From: a@example.invalid\r\nTo: soumu@city.example.invalid\r\nSubject: quick\r\n\r\nplain text\r\n";
    let slow_id = spool
        .accept(envelope.clone(), "127.0.0.1", slow)
        .unwrap()
        .id;
    spool.accept(envelope, "127.0.0.1", quick).unwrap();
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let worker = rt.spawn(Arc::clone(&pipeline).worker(stop_rx));
    // One worker: the quick message is only reached once the slow one is settled.
    let delivered = wait_for(&data.path().join("maildir/new"), 1);
    assert_eq!(
        delivered.len(),
        1,
        "the queue moved on past the stuck conversion"
    );
    let items = support::quarantined(data.path(), 1);
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].id, slow_id);
    assert_eq!(items[0].reason, "timeout");
    // The late conversion finishes and finds the message already settled: nothing twice.
    std::thread::sleep(std::time::Duration::from_millis(3000));
    let _ = stop.send(true);
    rt.block_on(worker).unwrap();
    assert_eq!(
        std::fs::read_dir(data.path().join("maildir/new"))
            .unwrap()
            .count(),
        1
    );
    let kinds = support::audit_kinds(data.path());
    assert_eq!(
        kinds.iter().filter(|k| *k == "quarantined").count(),
        1,
        "{kinds:?}"
    );
    assert_eq!(spool.depths().incoming + spool.depths().active, 0);
}

/// Counts delivered files per `<tag-N@` Message-ID in `maildir/new`.
fn delivered_per_id(data: &std::path::Path, tag: &str) -> std::collections::HashMap<usize, usize> {
    let mut seen = std::collections::HashMap::new();
    for entry in std::fs::read_dir(data.join("maildir/new"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        if let Some(n) = text
            .split(&format!("<{tag}-"))
            .nth(1)
            .and_then(|t| t.split('@').next())
            .and_then(|n| n.parse().ok())
        {
            *seen.entry(n).or_insert(0) += 1;
        }
    }
    seen
}

fn tagged_mail(tag: &str, n: usize) -> Vec<u8> {
    format!(
        "From: s@example.invalid\r\nTo: soumu@city.example.invalid\r\nSubject: {tag} {n}\r\nMessage-ID: <{tag}-{n}@example.invalid>\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\n本文 {n}\r\n"
    )
    .into_bytes()
}

/// Issue #16 A: `mukaika queue …` beside a running service ran the spool's crash recovery —
/// it deleted `tmp/` and moved `active/` back under the workers (451s and duplicates).
#[test]
fn queue_commands_beside_a_running_service_neither_recover_the_spool_nor_disturb_delivery() {
    use mukaika::envelope::Envelope;
    let data = tempfile::tempdir().unwrap();
    let cfg = data.path().join("mukaika.toml");
    std::fs::write(&cfg, support::config_text(data.path(), "127.0.0.1:0")).unwrap();
    let queue = |args: &[&str]| {
        let mut all = vec!["queue", "--config", cfg.to_str().unwrap()];
        all.extend_from_slice(args);
        support::mukaika(&all)
    };
    // Held messages from before the start, to be released during the load.
    const HELD: usize = 40;
    let held: Vec<String> = {
        let (spool, _) = mukaika::store::spool::Spool::open(data.path().join("spool"), 1).unwrap();
        (0..HELD)
            .map(|n| {
                let env = Envelope {
                    helo: "x".into(),
                    mail_from: "s@example.invalid".into(),
                    rcpt_to: vec!["soumu@city.example.invalid".into()],
                    eight_bit: false,
                    smtputf8: false,
                };
                let id = spool
                    .accept(env, "127.0.0.1", &tagged_mail("held", n))
                    .unwrap()
                    .id;
                spool.operator_move(&id, "hold").unwrap();
                id
            })
            .collect()
    };
    let rt = runtime();
    let running = support::start(&rt, config(data.path(), ""), DEFAULT_TOML);

    // Directly: what the service has in tmp/ and active/ is not the lister's to touch.
    let spool_dir = data.path().join("spool");
    let stray_tmp = spool_dir.join("tmp/FFFFFFFFFFFF0000000000.item");
    std::fs::write(&stray_tmp, b"an intake being written").unwrap();
    let meta = mukaika::store::spool::ItemMeta {
        id: "FFFFFFFFFFFF0000000001".into(),
        envelope: Envelope {
            helo: "x".into(),
            mail_from: "s@example.invalid".into(),
            rcpt_to: vec!["soumu@city.example.invalid".into()],
            eight_bit: false,
            smtputf8: false,
        },
        client: "127.0.0.1".into(),
        received_at: "2026-01-01T00:00:00.000Z".into(),
        size: 1,
        sha256: String::new(),
        attempts: 0,
        next_attempt_ms: None,
        last_error: None,
        converted: false,
    };
    let in_work = spool_dir.join(format!("active/{}.item", meta.id));
    let mut bytes = serde_json::to_vec(&meta).unwrap();
    bytes.extend_from_slice(b"\nx");
    std::fs::write(&in_work, &bytes).unwrap();
    let listed = queue(&["list"]);
    assert!(listed.status.success(), "{listed:?}");
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(
        stray_tmp.exists() && in_work.exists(),
        "queue list removed or moved the service's files"
    );
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with(&meta.id) && l.contains(" active ")),
        "the item in work is listed as active: {listed}"
    );
    assert_eq!(listed.matches(" hold ").count(), HELD, "{listed}");
    std::fs::remove_file(&stray_tmp).unwrap();
    std::fs::remove_file(&in_work).unwrap();

    // Under load: list every 0.2 s and release every held message.
    const SENDERS: usize = 4;
    const PER_SENDER: usize = 60;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let lister = {
        let done = std::sync::Arc::clone(&done);
        let cfg = cfg.clone();
        std::thread::spawn(move || {
            let mut runs = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let out = support::mukaika(&["queue", "--config", cfg.to_str().unwrap(), "list"]);
                assert!(out.status.success(), "{out:?}");
                runs += 1;
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
            runs
        })
    };
    let releaser = {
        let cfg = cfg.clone();
        let held = held.clone();
        std::thread::spawn(move || {
            for id in &held {
                let out =
                    support::mukaika(&["queue", "--config", cfg.to_str().unwrap(), "release", id]);
                assert!(out.status.success(), "release {id}: {out:?}");
            }
        })
    };
    let senders: Vec<_> = (0..SENDERS)
        .map(|s| {
            let addr = running.smtp_addr;
            std::thread::spawn(move || {
                let (mut c, greeting) = Client::connect(addr);
                assert_eq!(greeting, 220);
                assert_eq!(c.send(b"EHLO client.invalid\r\n"), 250);
                (0..PER_SENDER)
                    .map(|i| {
                        let n = s * PER_SENDER + i;
                        (
                            n,
                            c.mail("soumu@city.example.invalid", &tagged_mail("load", n)),
                        )
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let replies: Vec<(usize, u16)> = senders
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    releaser.join().unwrap();
    let refused: Vec<_> = replies.iter().filter(|(_, code)| *code != 250).collect();
    assert!(
        refused.is_empty(),
        "messages refused while queue commands ran: {refused:?}"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    let (load, released) = loop {
        let (load, released) = (
            delivered_per_id(data.path(), "load"),
            delivered_per_id(data.path(), "held"),
        );
        if (load.len() == SENDERS * PER_SENDER && released.len() == HELD)
            || std::time::Instant::now() > deadline
        {
            break (load, released);
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    // A duplicate would land a moment after the first copy.
    std::thread::sleep(std::time::Duration::from_secs(2));
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let runs = lister.join().unwrap();
    let (load_again, released_again) = (
        delivered_per_id(data.path(), "load"),
        delivered_per_id(data.path(), "held"),
    );
    assert_eq!(load.len(), SENDERS * PER_SENDER, "every message delivered");
    assert_eq!(released.len(), HELD, "every released message delivered");
    let dups: Vec<_> = load_again
        .iter()
        .chain(released_again.iter())
        .filter(|(_, n)| **n > 1)
        .collect();
    assert!(dups.is_empty(), "delivered more than once: {dups:?}");
    assert!(runs >= 3, "queue list ran only {runs} times");
    rt.block_on(running.stop("test"));
    let report = mukaika::audit::verify(&data.path().join("audit"), None, None).unwrap();
    assert!(report.intact(), "{:?}", report.problem);
    println!(
        "issue16-A: {} messages + {HELD} released, queue list ran {runs} times, refused {}, duplicates {}",
        SENDERS * PER_SENDER,
        refused.len(),
        dups.len()
    );
}

/// A sanitizer that works until its deadline stops it, checking the clock as it goes (PDF
/// only), and records when its thread gave up.
struct UntilStopped(std::sync::Arc<std::sync::Mutex<Option<std::time::Instant>>>);

impl mukaika_sanitizers::Sanitizer for UntilStopped {
    fn kinds(&self) -> &'static [mukaika_sanitizers::FileKind] {
        &[mukaika_sanitizers::FileKind::Pdf]
    }
    fn sanitize(
        &self,
        _input: &[u8],
        _kind: mukaika_sanitizers::FileKind,
        cx: &mut mukaika_sanitizers::Context<'_>,
    ) -> Result<mukaika_sanitizers::Sanitized, mukaika_sanitizers::Error> {
        let stopped = loop {
            if let Err(e) = cx.check_deadline() {
                break e;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        };
        *self.0.lock().unwrap() = Some(std::time::Instant::now());
        Err(stopped)
    }
}

#[test]
fn a_timed_out_conversion_stops_its_thread_at_the_message_deadline() {
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};
    let data = tempfile::tempdir().unwrap();
    // The file budget (60 s by default) is far longer than the message's: the message's
    // deadline is what must stop the work.
    let mut c = config(data.path(), "");
    c.pipeline.timeout_secs = 1;
    c.notices.recipients = false;
    let rt = runtime();
    let (spool, _) = mukaika::store::spool::Spool::open(data.path().join("spool"), 1).unwrap();
    let audit = Arc::new(
        mukaika::audit::AuditLog::open(mukaika::audit::AuditConfig::new(
            data.path().join("audit"),
            "t",
        ))
        .unwrap(),
    );
    let quarantine =
        mukaika::store::quarantine::open(data.path().join("quarantine"), c.quarantine.store)
            .unwrap();
    let stopped_at = Arc::new(Mutex::new(None));
    let pipeline = Arc::new(mukaika::pipeline::Pipeline {
        spool: Arc::clone(&spool),
        audit,
        quarantine,
        sink: mukaika::sink::Sink::Maildir(data.path().join("maildir")),
        registry: Arc::new(mukaika_sanitizers::Registry::with_sanitizers(vec![
            Box::new(UntilStopped(Arc::clone(&stopped_at))),
        ])),
        antivirus: None,
        config: Arc::new(mukaika::live::Live::new(c)),
        wake: Arc::new(tokio::sync::Notify::new()),
        ppap: None,
    });
    let envelope = mukaika::envelope::Envelope {
        helo: "client.invalid".into(),
        mail_from: "sender@example.invalid".into(),
        rcpt_to: vec!["soumu@city.example.invalid".into()],
        eight_bit: false,
        smtputf8: false,
    };
    let slow = b"From: a@example.invalid\r\nTo: soumu@city.example.invalid\r\nSubject: slow\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b\r\nContent-Type: application/pdf; name=a.pdf\r\nContent-Disposition: attachment; filename=a.pdf\r\n\r\n%PDF-1.4\r\n%%EOF\r\n--b--\r\n";
    spool.accept(envelope, "127.0.0.1", slow).unwrap();
    let started = Instant::now();
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let worker = rt.spawn(Arc::clone(&pipeline).worker(stop_rx));
    let items = support::quarantined(data.path(), 1);
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].reason, "timeout");
    // Held at the deadline; and the conversion thread has given up too, within twice the
    // deadline, instead of running on for the file's whole budget.
    while stopped_at.lock().unwrap().is_none() && started.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let stopped = stopped_at.lock().unwrap().take();
    let stopped = stopped.expect("the conversion thread still runs past twice the deadline");
    assert!(
        stopped.duration_since(started) < Duration::from_secs(2),
        "stopped after {:?}",
        stopped.duration_since(started)
    );
    let _ = stop.send(true);
    rt.block_on(worker).unwrap();
    assert_eq!(
        std::fs::read_dir(data.path().join("maildir/new"))
            .map(|d| d.count())
            .unwrap_or(0),
        0,
        "nothing of the timed-out message is delivered"
    );
}

/// A plain connection to `to` from the loopback address `from` (all of 127/8 is local on Linux).
fn connect_from(
    rt: &tokio::runtime::Runtime,
    from: &str,
    to: std::net::SocketAddr,
) -> std::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    let stream = rt.block_on(socket.connect(to)).unwrap().into_std().unwrap();
    stream.set_nonblocking(false).unwrap();
    stream
}

#[test]
fn one_client_holding_unfinished_requests_leaves_healthz_to_others_and_slow_headers_are_dropped() {
    use std::io::{Read, Write};
    use std::time::{Duration, Instant};
    let data = tempfile::tempdir().unwrap();
    let rt = runtime();
    let text = support::config_text(data.path(), "127.0.0.1:0")
        .replace("header_timeout_secs = 10", "header_timeout_secs = 2");
    let running = support::start(&rt, ServiceConfig::from_toml(&text).unwrap(), &text);
    let admin = running.admin_addr;

    // One client opens more connections than the whole listener used to hold, each with a
    // request that never ends.
    let flood: Vec<std::net::TcpStream> = (0..260)
        .map(|_| {
            let mut s = connect_from(&rt, "127.0.0.1", admin);
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                .unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));

    // Another client still gets its answer, well within the header deadline.
    let asked = Instant::now();
    let mut other = connect_from(&rt, "127.0.0.2", admin);
    other
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    other
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    let _ = other.read_to_string(&mut answer);
    assert!(
        answer.starts_with("HTTP/1.1 200") && asked.elapsed() < Duration::from_secs(2),
        "after {:?}: {answer:?}",
        asked.elapsed()
    );

    // A client that sends its headers a line at a time is dropped at the deadline, not kept.
    let started = Instant::now();
    let mut slow = connect_from(&rt, "127.0.0.3", admin);
    slow.set_read_timeout(Some(Duration::from_millis(250)))
        .unwrap();
    let _ = slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    let mut buf = [0u8; 512];
    let closed_after = loop {
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "a slow sender kept its connection"
        );
        if slow.write_all(b"X-Slow: 1\r\n").is_err() {
            break started.elapsed();
        }
        match slow.read(&mut buf) {
            Ok(0) => break started.elapsed(),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break started.elapsed(),
        }
    };
    assert!(
        closed_after >= Duration::from_millis(1500) && closed_after < Duration::from_secs(4),
        "closed after {closed_after:?}"
    );
    // The flood's connections went at the same deadline: the first client is served again.
    let (status, _) = support::http_get(admin, "/healthz");
    assert_eq!(status, 200);
    drop(flood);
}

/// `mukaika serve` as a child process on fixed free ports, stdout into `log`, with `env` set.
struct ServeChild {
    child: std::process::Child,
    smtp: std::net::SocketAddr,
    admin: std::net::SocketAddr,
}

impl Drop for ServeChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve_child(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> ServeChild {
    serve_child_edited(dir, args, env, |t| t)
}

/// [`serve_child`] with the configuration text passed through `edit` first.
fn serve_child_edited(
    dir: &std::path::Path,
    args: &[&str],
    env: &[(&str, &str)],
    edit: impl FnOnce(String) -> String,
) -> ServeChild {
    let (smtp, admin) = (support::free_port(), support::free_port());
    let text = edit(
        support::config_text(&dir.join("data"), &format!("127.0.0.1:{smtp}")).replace(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"127.0.0.1:{admin}\""),
        ),
    );
    let config = dir.join("mukaika.toml");
    std::fs::write(&config, text).unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_mukaika"))
        .arg("serve")
        .args(args)
        .arg("--config")
        .arg(&config)
        .envs(env.iter().copied())
        .env_remove("NO_COLOR")
        .stdout(std::fs::File::create(dir.join("serve.log")).unwrap())
        .stderr(std::fs::File::create(dir.join("serve.err")).unwrap())
        .spawn()
        .unwrap();
    ServeChild {
        child,
        smtp: format!("127.0.0.1:{smtp}").parse().unwrap(),
        admin: format!("127.0.0.1:{admin}").parse().unwrap(),
    }
}

fn wait_healthy(admin: std::net::SocketAddr) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::net::TcpStream::connect(admin).is_err()
        || support::http_get(admin, "/healthz").0 != 200
    {
        assert!(
            std::time::Instant::now() < deadline,
            "serve did not come up"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Issue #19: the journal shows what happened to each message, in words, with its IDs.
#[test]
fn serve_logs_one_info_line_per_message_accepted_delivered_and_held_with_its_ids() {
    let dir = tempfile::tempdir().unwrap();
    let served = serve_child(dir.path(), &["--log-format", "json"], &[]);
    wait_healthy(served.admin);
    let (mut c, _) = Client::connect(served.smtp);
    assert_eq!(c.send(b"EHLO client.invalid\r\n"), 250);
    assert_eq!(
        c.mail(
            "soumu@city.example.invalid",
            b"Subject: hi\r\n\r\nplain text\r\n"
        ),
        250
    );
    assert_eq!(
        c.mail(
            "soumu@city.example.invalid",
            &generate::mail_smime_enveloped()
        ),
        250
    );
    assert_eq!(c.send(b"QUIT\r\n"), 221);
    let lines = |message: &str| -> Vec<serde_json::Value> {
        std::fs::read_to_string(dir.path().join("serve.log"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|v| v["fields"]["message"] == message)
            .collect()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while lines("message delivered").is_empty() || lines("message held").is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "no delivered/held lines in {}",
            std::fs::read_to_string(dir.path().join("serve.log")).unwrap()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let accepted = lines("message accepted");
    assert_eq!(accepted.len(), 2, "{accepted:?}");
    for line in &accepted {
        assert_eq!(line["level"], "INFO");
        let f = &line["fields"];
        assert!(f["queue_id"].as_str().is_some_and(|s| !s.is_empty()), "{f}");
        assert_eq!(f["from"], "sender@example.invalid", "{f}");
        assert_eq!(f["rcpt_count"], 1, "{f}");
        assert!(f["size"].as_u64().is_some_and(|n| n > 0), "{f}");
    }
    let ids: Vec<&str> = accepted
        .iter()
        .map(|l| l["fields"]["queue_id"].as_str().unwrap())
        .collect();
    let delivered = lines("message delivered");
    assert_eq!(delivered.len(), 1, "{delivered:?}");
    assert!(ids.contains(&delivered[0]["fields"]["queue_id"].as_str().unwrap()));
    assert!(
        delivered[0]["fields"]["reply"].is_string(),
        "{:?}",
        delivered[0]
    );
    let held = lines("message held");
    assert_eq!(held.len(), 1, "{held:?}");
    let f = &held[0]["fields"];
    assert!(ids.contains(&f["queue_id"].as_str().unwrap()), "{f}");
    assert!(
        f["quarantine_id"].as_str().is_some_and(|s| !s.is_empty()),
        "{f}"
    );
    assert!(f["reason"].as_str().is_some_and(|s| !s.is_empty()), "{f}");
    // Not a terminal: no colour codes anywhere.
    let all = std::fs::read_to_string(dir.path().join("serve.log")).unwrap()
        + &std::fs::read_to_string(dir.path().join("serve.err")).unwrap();
    assert!(!all.contains('\u{1b}'), "{all}");
}

/// Receives one datagram on `sock` (a `NOTIFY_SOCKET`) within `secs`.
fn notified(sock: &std::os::unix::net::UnixDatagram, secs: u64) -> String {
    sock.set_read_timeout(Some(std::time::Duration::from_secs(secs)))
        .unwrap();
    let mut buf = [0u8; 512];
    let n = sock.recv(&mut buf).expect("a notification");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Issue #19: `Type=notify` — READY=1 only once SMTP and the admin listener answer, then
/// WATCHDOG=1 at half of WATCHDOG_USEC, and STOPPING=1 on SIGTERM.
#[test]
fn serve_tells_systemd_it_is_ready_only_when_listening_then_pets_the_watchdog() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    let served = serve_child(
        dir.path(),
        &[],
        &[
            ("NOTIFY_SOCKET", path.to_str().unwrap()),
            ("WATCHDOG_USEC", "400000"),
        ],
    );
    let ready = notified(&sock, 30);
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready:?}");
    // Ready means answering: both listeners take a connection at once.
    let (_, greeting) = Client::connect(served.smtp);
    assert_eq!(greeting, 220);
    assert_eq!(support::http_get(served.admin, "/healthz").0, 200);
    let started = std::time::Instant::now();
    for _ in 0..2 {
        assert_eq!(notified(&sock, 2), "WATCHDOG=1");
    }
    assert!(started.elapsed() < std::time::Duration::from_millis(800));
    signal(&served.child, rustix::process::Signal::TERM);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        assert!(std::time::Instant::now() < deadline, "no STOPPING=1");
        if notified(&sock, 10) == "STOPPING=1" {
            break;
        }
    }
}

/// systemd's usual NOTIFY_SOCKET is an abstract name, written with a leading '@'.
#[test]
fn serve_notifies_an_abstract_notify_socket() {
    use std::os::linux::net::SocketAddrExt;
    let dir = tempfile::tempdir().unwrap();
    let name = format!(
        "mukaika-test-{}-{}",
        std::process::id(),
        support::free_port()
    );
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let sock = std::os::unix::net::UnixDatagram::bind_addr(&addr).unwrap();
    let _served = serve_child(dir.path(), &[], &[("NOTIFY_SOCKET", &format!("@{name}"))]);
    assert_eq!(notified(&sock, 30), "READY=1");
}

/// Issue #19: `mukaika health` is what the container's HEALTHCHECK runs.
#[test]
fn health_exits_0_while_the_service_answers_and_1_when_it_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let served = serve_child(dir.path(), &[], &[]);
    wait_healthy(served.admin);
    let config = dir.path().join("mukaika.toml");
    let out = support::mukaika(&["health", "--config", config.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(served);
    let out = support::mukaika(&["health", "--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(!out.stderr.is_empty());
}

/// `mukaika health` against an HTTPS admin listener trusts the listener's own certificate
/// chain, and a wrong chain is a failed check, not a plain-HTTP retry.
#[test]
fn health_speaks_https_to_an_admin_listener_with_a_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (_, cert, key) = support::localhost_cert(dir.path());
    let lines = format!(
        "tls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n",
        cert.display(),
        key.display()
    );
    let served = serve_child_edited(dir.path(), &[], &[], |t| {
        t.replace(
            "# tls_cert_file = \"/etc/mukaika/tls/admin-cert.pem\"\n# tls_key_file = \"/etc/mukaika/tls/admin-key.pem\"\n",
            &lines,
        )
    });
    let config = dir.path().join("mukaika.toml");
    assert!(std::fs::read_to_string(&config).unwrap().contains(&lines));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let out = loop {
        let out = support::mukaika(&["health", "--config", config.to_str().unwrap()]);
        if out.status.success() || std::time::Instant::now() > deadline {
            break out;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Another certificate in the file the check reads: the service is not trusted.
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let (_, other_cert, _) = support::localhost_cert(&other);
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace(
            &cert.display().to_string(),
            &other_cert.display().to_string(),
        )
        .replace(
            &key.display().to_string(),
            &other.join("key.pem").display().to_string(),
        );
    let wrong = dir.path().join("wrong.toml");
    std::fs::write(&wrong, text).unwrap();
    let out = support::mukaika(&["health", "--config", wrong.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    drop(served);
}

/// Issue #19: gauges for the review queue and the build, read on scrape.
#[test]
fn metrics_show_the_review_queue_and_the_build() {
    let data = tempfile::tempdir().unwrap();
    let rt = runtime();
    let running = support::start(&rt, config(data.path(), ""), DEFAULT_TOML);
    let (mut c, _) = Client::connect(running.smtp_addr);
    assert_eq!(c.send(b"EHLO client.invalid\r\n"), 250);
    assert_eq!(
        c.mail(
            "soumu@city.example.invalid",
            &generate::mail_smime_enveloped()
        ),
        250
    );
    assert_eq!(c.send(b"QUIT\r\n"), 221);
    let item = support::quarantined(data.path(), 1)[0].id.clone();
    let scrape = || {
        let (status, body) = support::http_get(running.admin_addr, "/metrics");
        assert_eq!(status, 200);
        (parse_metrics(&body), body)
    };
    let value = |(samples, body): &(Vec<(String, f64)>, String), series: &str| {
        samples
            .iter()
            .find(|(s, _)| s == series)
            .map(|(_, v)| *v)
            .unwrap_or_else(|| panic!("{series} missing from {body}"))
    };
    let before = scrape();
    assert_eq!(value(&before, "mukaika_review_items_awaiting"), 1.0);
    assert_eq!(value(&before, "mukaika_review_requests_pending"), 0.0);

    // An operator asks for its release: the item now waits for an approver instead.
    use mukaika::admin::control::{run, Op};
    let c = config(data.path(), "");
    support::control_account(&c, "op1", "operator");
    let reply = run(
        &c,
        Op::RequestRelease {
            user: "op1".into(),
            auth: support::proof(support::CLI_PASSWORD),
            item,
            target: "original-recipients".into(),
            reason: "送信者に確認済み".into(),
        },
    )
    .unwrap();
    assert!(reply.ok, "{}", reply.message);
    let after = scrape();
    assert_eq!(value(&after, "mukaika_review_items_awaiting"), 0.0);
    assert_eq!(value(&after, "mukaika_review_requests_pending"), 1.0);
    let (samples, body) = &before;
    let build = format!(
        "mukaika_build_info{{version=\"{}\"",
        env!("CARGO_PKG_VERSION")
    );
    let (_, one) = samples
        .iter()
        .find(|(s, _)| s.starts_with(&build))
        .unwrap_or_else(|| panic!("{build} missing from {body}"));
    assert_eq!(*one, 1.0);
    rt.block_on(running.stop("test"));
}
