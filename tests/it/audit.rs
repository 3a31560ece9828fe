//! The audit log: a chain that verifies, and every kind of tampering found at the right place.

use std::path::Path;
use std::sync::Arc;

use mukaika::audit::event::{Delivered, MessageReceived};
use mukaika::audit::{self, AuditConfig, AuditEvent, AuditLog};

fn received(n: u64) -> AuditEvent {
    AuditEvent::MessageReceived(MessageReceived {
        queue_id: format!("Q{n:05}"),
        client: "127.0.0.1".into(),
        mail_from: format!("sender{n}@example.invalid"),
        rcpt_to: vec!["soumu@city.example.invalid".into()],
        size: 1000 + n,
        sha256: format!("{:02x}", n % 256).repeat(32),
    })
}

fn write(dir: &Path, n: u64, config: impl Fn(AuditConfig) -> AuditConfig) {
    let log = AuditLog::open(config(AuditConfig::new(dir, "gw1"))).unwrap();
    for i in 0..n {
        log.append(received(i)).unwrap();
    }
}

fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    audit::log::list_files(dir).unwrap()
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn rewrite(path: &Path, lines: &[String]) {
    std::fs::write(
        path,
        lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
    )
    .unwrap();
}

fn problem(dir: &Path) -> audit::verify::Problem {
    audit::verify(dir, None, None)
        .unwrap()
        .problem
        .expect("verify must find a problem")
}

#[test]
fn an_untouched_chain_verifies() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), 50, |c| c);
    let report = audit::verify(dir.path(), None, None).unwrap();
    assert!(report.intact(), "{:?}", report.problem);
    assert_eq!(report.records, 50);
    // Reopening continues the same chain.
    write(dir.path(), 10, |c| c);
    let report = audit::verify(dir.path(), None, None).unwrap();
    assert!(report.intact());
    assert_eq!(report.records, 60);
}

#[test]
fn finds_an_edited_record() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), 20, |c| c);
    let f = &files(dir.path())[0];
    let mut l = lines(f);
    l[6] = l[6].replace("sender6@", "sender7@");
    rewrite(f, &l);
    let p = problem(dir.path());
    assert_eq!((p.kind.as_str(), p.line), ("edited", 7));
    assert!(p.file.starts_with("audit-"));
}

#[test]
fn finds_a_deleted_record() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), 20, |c| c);
    let f = &files(dir.path())[0];
    let mut l = lines(f);
    l.remove(9);
    rewrite(f, &l);
    let p = problem(dir.path());
    assert_eq!((p.kind.as_str(), p.line), ("gap", 10));
}

#[test]
fn finds_reordered_records() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), 20, |c| c);
    let f = &files(dir.path())[0];
    let mut l = lines(f);
    l.swap(4, 5);
    rewrite(f, &l);
    let p = problem(dir.path());
    assert_eq!((p.kind.as_str(), p.line), ("gap", 5));
}

#[test]
fn finds_a_truncated_file_in_the_middle_of_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), 200, |c| AuditConfig {
        max_file_bytes: 8 * 1024,
        ..c
    });
    let all = files(dir.path());
    assert!(all.len() >= 3, "rotation by size: {} files", all.len());
    // Cut the last two records of the first file: the next file's first record no longer
    // links to anything present.
    let mut l = lines(&all[0]);
    let kept = l.len() - 2;
    l.truncate(kept);
    rewrite(&all[0], &l);
    let p = problem(dir.path());
    assert_eq!(p.kind, "gap");
    assert_eq!(p.file, all[1].file_name().unwrap().to_string_lossy());
    assert_eq!(p.line, 1);
}

#[test]
fn finds_a_record_cut_in_half() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), 10, |c| c);
    let f = &files(dir.path())[0];
    let mut l = lines(f);
    let half = l[3].len() / 2;
    l[3].truncate(half);
    rewrite(f, &l);
    let p = problem(dir.path());
    assert_eq!((p.kind.as_str(), p.line), ("truncated", 4));
}

#[test]
fn rotation_keeps_one_chain_across_files() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), 300, |c| AuditConfig {
        max_file_bytes: 8 * 1024,
        ..c
    });
    let all = files(dir.path());
    assert!(all.len() >= 3);
    let report = audit::verify(dir.path(), None, None).unwrap();
    assert!(report.intact(), "{:?}", report.problem);
    // The first record of a later file names the last hash of the file before it.
    let last_of_first: serde_json::Value =
        serde_json::from_str(lines(&all[0]).last().unwrap()).unwrap();
    let first_of_second: serde_json::Value = serde_json::from_str(&lines(&all[1])[0]).unwrap();
    assert_eq!(first_of_second["prev"], last_of_first["hash"]);
    // Checkpoints were written every 1,000? No: every `checkpoint_every` (default 1000) — none
    // yet at 300; a small setting writes them.
    let dir2 = tempfile::tempdir().unwrap();
    write(dir2.path(), 25, |c| AuditConfig {
        checkpoint_every: 10,
        ..c
    });
    let checkpoints = audit::search(dir2.path(), &audit::Search::default())
        .unwrap()
        .into_iter()
        .filter(|r| r.event["type"] == "checkpoint")
        .count();
    assert_eq!(checkpoints, 2);
}

#[test]
fn hmac_protects_against_rewriting_the_whole_chain() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), 10, |c| AuditConfig {
        hmac_key: Some(b"site-secret".to_vec()),
        ..c
    });
    assert!(audit::verify(dir.path(), Some(b"site-secret"), None)
        .unwrap()
        .intact());
    let wrong = audit::verify(dir.path(), Some(b"guess"), None)
        .unwrap()
        .problem
        .unwrap();
    assert_eq!((wrong.kind.as_str(), wrong.line), ("bad-mac", 1));
    // An attacker without the key rebuilds a consistent chain: hashes check, MACs do not.
    let f = &files(dir.path())[0];
    let forged = tempfile::tempdir().unwrap();
    write(forged.path(), 10, |c| c);
    std::fs::copy(&files(forged.path())[0], f).unwrap();
    let p = audit::verify(dir.path(), Some(b"site-secret"), None)
        .unwrap()
        .problem
        .unwrap();
    assert_eq!(p.kind, "bad-mac");
}

#[test]
fn a_torn_last_line_is_recovered_and_reported_not_dropped() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), 5, |c| c);
    let f = files(dir.path())[0].clone();
    // A crash in the middle of writing record 6.
    let mut bytes = std::fs::read(&f).unwrap();
    bytes.extend_from_slice(b"{\"seq\":6,\"ts\":\"2026-");
    std::fs::write(&f, bytes).unwrap();
    let before = audit::verify(dir.path(), None, None).unwrap();
    assert!(
        before.intact() && before.notes.iter().any(|n| n.contains("torn")),
        "{before:?}"
    );
    // Restart: logging continues in a new file that names the torn line first.
    write(dir.path(), 3, |c| c);
    let all = files(dir.path());
    assert_eq!(all.len(), 2);
    let first_new: serde_json::Value = serde_json::from_str(&lines(&all[1])[0]).unwrap();
    assert_eq!(first_new["event"]["type"], "recovery");
    assert_eq!(first_new["event"]["line"], 6);
    let after = audit::verify(dir.path(), None, None).unwrap();
    assert!(after.intact(), "{:?}", after.problem);
    assert_eq!(after.records, 5 + 1 + 3);
    assert!(
        after
            .notes
            .iter()
            .any(|n| n.contains(":6: torn by a crash")),
        "{:?}",
        after.notes
    );
    // Without the recovery record, the same torn line is a truncation.
    let l = lines(&all[1]);
    rewrite(&all[1], &l[1..]);
    let p = problem(dir.path());
    assert_eq!((p.kind.as_str(), p.line), ("truncated", 6));
}

#[test]
fn concurrent_writers_keep_one_consistent_chain() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(
        AuditLog::open(AuditConfig {
            max_file_bytes: 64 * 1024,
            ..AuditConfig::new(dir.path(), "gw1")
        })
        .unwrap(),
    );
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                let mut seqs = Vec::new();
                for i in 0..150 {
                    seqs.push(log.append(received(t * 1000 + i)).unwrap());
                }
                seqs
            })
        })
        .collect();
    let mut seqs: Vec<u64> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    seqs.sort();
    seqs.dedup();
    assert_eq!(seqs.len(), 1200, "every append got its own sequence number");
    let report = audit::verify(dir.path(), None, None).unwrap();
    assert!(report.intact(), "{:?}", report.problem);
    assert_eq!(report.records, 1201, "1200 events and one checkpoint");
}

#[test]
fn search_finds_records_by_id_sender_hash_and_time() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(AuditConfig::new(dir.path(), "gw1")).unwrap();
    for i in 0..5 {
        log.append(received(i)).unwrap();
    }
    log.append(AuditEvent::Delivered(Delivered {
        queue_id: "Q00003".into(),
        destination: "maildir".into(),
        rcpt_to: vec!["soumu@city.example.invalid".into()],
        reply: "250 2.0.0 ok".into(),
    }))
    .unwrap();
    let by_id = audit::search(
        dir.path(),
        &audit::Search {
            id: Some("Q00003".into()),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        by_id
            .iter()
            .map(|r| r.event["type"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["message_received", "delivered"]
    );
    let by_sender = audit::search(
        dir.path(),
        &audit::Search {
            sender: Some("sender2@".into()),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(by_sender.len(), 1);
    let by_hash = audit::search(
        dir.path(),
        &audit::Search {
            sha256: Some("04".repeat(10)),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(by_hash.len(), 1);
    let none = audit::search(
        dir.path(),
        &audit::Search {
            until: Some("2000-01-01".into()),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(none.is_empty());
}

#[test]
fn the_cli_verifies_and_exits_non_zero_on_tampering() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), 5, |c| c);
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_mukaika"))
            .args(args)
            .output()
            .unwrap()
    };
    let ok = run(&["audit", "verify", "--dir", dir.path().to_str().unwrap()]);
    assert_eq!(ok.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&ok.stdout).contains("完全"));
    let f = &files(dir.path())[0];
    let mut l = lines(f);
    l[2] = l[2].replace("Q00002", "Q99999");
    rewrite(f, &l);
    let bad = run(&["audit", "verify", "--dir", dir.path().to_str().unwrap()]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&bad.stdout).contains(":3: edited"),
        "{}",
        String::from_utf8_lossy(&bad.stdout)
    );
    let found = run(&[
        "audit",
        "search",
        "--dir",
        dir.path().to_str().unwrap(),
        "--id",
        "Q00001",
        "--json",
    ]);
    assert_eq!(String::from_utf8_lossy(&found.stdout).lines().count(), 1);
}

#[test]
fn retention_removes_old_files_on_record_and_the_chain_still_verifies() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), 120, |c| AuditConfig {
        max_file_bytes: 8 * 1024,
        ..c
    });
    let all = files(dir.path());
    // Age the first two files (their names carry the day they were written).
    for (i, f) in all.iter().take(2).enumerate() {
        std::fs::rename(f, dir.path().join(format!("audit-20200101-{i:04}.jsonl"))).unwrap();
    }
    let log = AuditLog::open(AuditConfig {
        max_file_bytes: 8 * 1024,
        ..AuditConfig::new(dir.path(), "gw1")
    })
    .unwrap();
    let removed = log.expire(365).unwrap();
    assert_eq!(
        removed,
        ["audit-20200101-0000.jsonl", "audit-20200101-0001.jsonl"]
    );
    assert!(!dir.path().join("audit-20200101-0000.jsonl").exists());
    let record = audit::search(dir.path(), &audit::Search::default())
        .unwrap()
        .into_iter()
        .find(|r| r.event["type"] == "retention_expired")
        .expect("expiry is recorded");
    assert_eq!(record.event["removed"].as_array().unwrap().len(), 2);
    let report = audit::verify(dir.path(), None, None).unwrap();
    assert!(report.intact(), "{:?}", report.problem);
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.contains("removed by retention")),
        "{:?}",
        report.notes
    );
}

#[test]
fn deleting_the_oldest_files_without_retention_is_found() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), 120, |c| AuditConfig {
        max_file_bytes: 8 * 1024,
        ..c
    });
    let all = files(dir.path());
    std::fs::remove_file(&all[0]).unwrap();
    let p = problem(dir.path());
    assert_eq!((p.kind.as_str(), p.line), ("missing-head", 1));
}

#[test]
fn records_are_forwarded_to_syslog_as_rfc5424() {
    let receiver = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    receiver
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let target = audit::syslog::SyslogTarget::Udp(receiver.local_addr().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(AuditConfig {
        syslog: Some(target),
        ..AuditConfig::new(dir.path(), "gw1")
    })
    .unwrap();
    log.append(received(7)).unwrap();
    let mut buf = [0u8; 4096];
    let n = receiver.recv(&mut buf).unwrap();
    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
    // <PRI>VERSION TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD] MSG
    assert!(msg.starts_with("<110>1 "), "{msg}");
    let fields: Vec<&str> = msg.splitn(8, ' ').collect();
    assert!(
        fields[1].ends_with('Z') && fields[1].contains('T'),
        "timestamp: {msg}"
    );
    assert_eq!(fields[2], "gw1");
    assert_eq!(fields[3], "mukaika");
    assert_eq!(fields[5], "message_received");
    assert!(
        msg.contains(" message_received [mukaika@32473 seq=\"1\" hash=\""),
        "{msg}"
    );
    let json = msg.split('\u{FEFF}').nth(1).unwrap();
    let record: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(record["event"]["queue_id"], "Q00007");
    assert_eq!(log.forwarder().unwrap().failures(), 0);
}

#[test]
fn quarantine_retention_removes_old_items_only_after_recording_them() {
    use mukaika::store::quarantine::{FsQuarantine, QuarantineItem, QuarantineStore};
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(AuditConfig::new(dir.path().join("audit"), "gw1")).unwrap();
    let store = FsQuarantine::open(dir.path().join("quarantine")).unwrap();
    let item = |id: &str, at: &str, body: &[u8]| {
        let it = QuarantineItem {
            id: id.into(),
            source: "mail".into(),
            origin_id: "Q1".into(),
            name: Some("a.rar".into()),
            reason: "policy-quarantine".into(),
            detail: "rar".into(),
            sha256: mukaika_sanitizers::report::sha256_hex(body),
            size: body.len() as u64,
            at: at.into(),
            report: serde_json::Value::Null,
            mail_from: None,
            rcpt_to: Vec::new(),
            subject: None,
            detected_type: None,
        };
        store.put(&it, body).unwrap();
    };
    item("old-1", "2020-01-01T00:00:00.000Z", b"old bytes");
    item("new-1", &mukaika::clock::now_rfc3339(), b"new bytes");
    item("odd-1", "not a time", b"odd bytes");

    let expired = mukaika::review::retention::run(&log, &store, 1825, 180).unwrap();
    assert_eq!(expired.quarantine_items, ["old-1"]);
    let left: Vec<String> = store.list().unwrap().into_iter().map(|i| i.id).collect();
    assert_eq!(left.len(), 2);
    assert!(left.contains(&"new-1".to_string()) && left.contains(&"odd-1".to_string()));
    assert!(store.bytes("old-1").is_err());
    let record = audit::search(&dir.path().join("audit"), &audit::Search::default())
        .unwrap()
        .into_iter()
        .find(|r| r.event["type"] == "retention_expired")
        .expect("the removal is on record");
    assert_eq!(record.event["removed"], serde_json::json!(["old-1"]));
    assert_eq!(record.event["days"], 180);

    // A second pass finds nothing and records nothing.
    let again = mukaika::review::retention::run(&log, &store, 1825, 180).unwrap();
    assert!(again.quarantine_items.is_empty());
    let records = audit::search(&dir.path().join("audit"), &audit::Search::default()).unwrap();
    assert_eq!(
        records
            .iter()
            .filter(|r| r.event["type"] == "retention_expired")
            .count(),
        1
    );
}

/// 2026-12-04T17:52:55.843Z: 02:52:55 on the 5th in Japan.
const LATE_EVENING_UTC: u64 = 1_796_406_775_843;

#[test]
fn records_carry_the_clock_in_utc_and_search_shows_people_japan_time() {
    let dir = tempfile::tempdir().unwrap();
    let clock = mukaika::clock::TestClock::at(LATE_EVENING_UTC);
    let log = AuditLog::open(AuditConfig {
        clock: clock.clone(),
        ..AuditConfig::new(dir.path(), "gw1")
    })
    .unwrap();
    log.append(received(1)).unwrap();
    clock.advance(std::time::Duration::from_secs(3600));
    log.append(received(2)).unwrap();
    drop(log);
    // The record itself: UTC, in the format verifiers and SIEMs read, and the file named by
    // the UTC day.
    let all = files(dir.path());
    assert_eq!(all.len(), 1);
    assert!(all[0].ends_with("audit-20261204-0000.jsonl"), "{all:?}");
    let text = std::fs::read_to_string(&all[0]).unwrap();
    assert!(
        text.contains(r#""ts":"2026-12-04T17:52:55.843Z""#),
        "{text}"
    );
    assert!(
        text.contains(r#""ts":"2026-12-04T18:52:55.843Z""#),
        "{text}"
    );

    let search = |json: bool| {
        let mut args = vec!["audit", "search", "--dir", dir.path().to_str().unwrap()];
        if json {
            args.push("--json");
        }
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_mukaika"))
            .args(&args)
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    let shown = search(false);
    assert!(shown.contains("2026-12-05 02:52:55 (JST)"), "{shown}");
    assert!(shown.contains("2026-12-05 03:52:55 (JST)"), "{shown}");
    assert!(!shown.contains("T17:52"), "{shown}");
    let json = search(true);
    assert!(
        json.contains(r#""ts":"2026-12-04T17:52:55.843Z""#),
        "{json}"
    );
}

#[test]
fn verify_reports_a_chained_record_whose_time_is_unreadable() {
    let dir = tempfile::tempdir().unwrap();
    let (first, hash) = audit::chain::encode(
        1,
        "2026-12-04T17:52:55.843Z",
        "gw1",
        audit::chain::GENESIS,
        &received(1),
        None,
    );
    // Re-chained by someone without a key: the hashes link, the time is no time.
    let (second, _) = audit::chain::encode(2, "yesterday", "gw1", &hash, &received(2), None);
    std::fs::write(
        dir.path().join("audit-20261204-0000.jsonl"),
        format!("{first}{second}"),
    )
    .unwrap();
    let p = problem(dir.path());
    assert_eq!((p.kind.as_str(), p.line), ("bad-timestamp", 2), "{p:?}");
}

#[test]
fn audit_commands_find_the_configured_log_and_refuse_times_they_cannot_read() {
    let data = tempfile::tempdir().unwrap();
    let conf_path = data.path().join("mukaika.toml");
    std::fs::write(
        &conf_path,
        crate::support::config_text(data.path(), "127.0.0.1:0"),
    )
    .unwrap();
    let conf = conf_path.to_str().unwrap();
    let out = crate::support::mukaika(&[
        "admin", "user", "add", "yamada", "--role", "operator", "--config", conf,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--config", conf]);
        crate::support::mukaika(&all)
    };
    // No --dir: the configured audit directory.
    let out = run(&["audit", "verify"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = run(&["audit", "search"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("user_changed"));
    // A time it cannot read is refused with the forms it can, not read as "no limit".
    for bad in ["yesterday", "2026/12/04", "12-04"] {
        let out = run(&["audit", "search", "--since", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("2026-11-27 09:30"));
    }
    // Days are Japan days: today's finds the record, tomorrow's finds nothing.
    let now = mukaika::clock::now_ms();
    let today = mukaika::clock::jst_date(now);
    let tomorrow = mukaika::clock::jst_date(now + 86_400_000);
    let out = run(&["audit", "search", "--since", &today]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("user_changed"));
    let out = run(&["audit", "search", "--since", &tomorrow]);
    assert!(out.status.success());
    let (text, count) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        !text.contains("user_changed") && count.contains("0 件"),
        "{text}{count}"
    );
}
