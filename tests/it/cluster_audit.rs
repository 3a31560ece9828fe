//! Audit copies in a cluster (#21) against a real, private PostgreSQL: every node copies its
//! audit records into the shared database, audit search (UI and CLI) on one node finds every
//! node's records with their node names, `audit verify` checks the copies and names an altered
//! or deleted one, records made while the database is unreachable are copied once it is back,
//! and two nodes configured with one node name are detected, never overwritten.

use crate::support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::postgres::{migrate, Database};
use support::web::{account, add_user};
use support::{config, runtime};

fn node(data: &Path, db: &Database, name: &str) -> mukaika::config::ServiceConfig {
    let mut c = config(data, "");
    c.audit.node = name.into();
    c.notices.recipients = false;
    db.configure(&mut c);
    c
}

/// The node's configuration as a file, for the CLI.
fn config_file(dir: &Path, c: &mukaika::config::ServiceConfig) -> String {
    let file = dir.join(format!("{}.toml", c.audit.node));
    std::fs::write(
        &file,
        format!(
            "[data]\ndir = \"{}\"\n\n[audit]\nnode = \"{}\"\n\n[store]\nbackend = \"postgres\"\nurl = \"{}\"\n",
            c.data.dir.display(),
            c.audit.node,
            c.store.url.as_deref().unwrap()
        ),
    )
    .unwrap();
    file.to_str().unwrap().to_string()
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// How many of `node`'s copies contain `text`.
fn copies_with(db: &Database, node: &str, text: &str) -> usize {
    db.psql(&format!(
        "SELECT count(*) FROM audit_records WHERE node = '{node}' AND strpos(record, '{text}') > 0"
    ))
    .parse()
    .unwrap()
}

/// This node's local records, as (seq, line).
fn local_lines(data: &Path) -> Vec<String> {
    let mut files: Vec<_> = std::fs::read_dir(data.join("audit"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(f)
                .unwrap()
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

struct Pair {
    dirs: (tempfile::TempDir, tempfile::TempDir),
    db: Database,
    a: mukaika::config::ServiceConfig,
    b: mukaika::config::ServiceConfig,
}

fn pair() -> Pair {
    let (da, dbd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let db = Database::new();
    let a = node(&da.path().join("data"), &db, "node-a");
    let b = node(&dbd.path().join("data"), &db, "node-b");
    migrate(&a);
    Pair {
        dirs: (da, dbd),
        db,
        a,
        b,
    }
}

#[test]
fn one_search_on_node_b_finds_records_made_on_both_nodes_with_their_node_names() {
    let p = pair();
    let rt = runtime();
    let node_a = support::start(&rt, p.a.clone(), "test");
    let node_b = support::start(&rt, p.b.clone(), "test");
    // An account made through each node: each node's own log records it.
    add_user(&p.a, "sasaki-via-a", "operator");
    add_user(&p.b, "sasaki-via-b", "operator");
    let mut auditor = account(&p.b, node_b.admin_addr, "kansa1", "auditor");
    wait_for("both nodes' records copied", || {
        copies_with(&p.db, "node-a", "sasaki-via-a") == 1
            && copies_with(&p.db, "node-b", "sasaki-via-b") == 1
    });
    // The web UI on B.
    let page = auditor.get("/audit?user=sasaki-via");
    assert_eq!(page.status, 200);
    let text = page.text();
    assert!(
        text.contains("sasaki-via-a") && text.contains("sasaki-via-b"),
        "{text}"
    );
    assert!(text.contains("<th scope=\"col\">ノード</th>"), "{text}");
    assert!(
        text.contains("全ノードの記録（PostgreSQL の写し）"),
        "{text}"
    );
    assert!(
        text.contains("<td class=\"node\">node-a</td>")
            && text.contains("<td class=\"node\">node-b</td>"),
        "{text}"
    );
    let csv = auditor.get("/audit.csv?user=sasaki-via").text();
    assert!(csv.lines().any(|l| l.starts_with("\"node-a\",")), "{csv}");
    assert!(csv.lines().any(|l| l.starts_with("\"node-b\",")), "{csv}");
    // The CLI on B.
    let file = config_file(p.dirs.1.path(), &p.b);
    let out = support::mukaika(&["audit", "search", "--user", "sasaki-via", "--config", &file]);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(
        lines.iter().any(|l| l.starts_with("node-a "))
            && lines.iter().any(|l| l.starts_with("node-b ")),
        "{stdout}"
    );
    let out = support::mukaika(&[
        "audit",
        "search",
        "--user",
        "sasaki-via",
        "--json",
        "--config",
        &file,
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let nodes: Vec<String> = stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["node"].to_string())
        .collect();
    assert_eq!(nodes, ["\"node-a\"", "\"node-b\""], "{stdout}");
    rt.block_on(node_a.stop("test"));
    rt.block_on(node_b.stop("test"));
}

#[test]
fn audit_verify_passes_on_a_fresh_pair_and_names_an_altered_or_deleted_copy() {
    let p = pair();
    let rt = runtime();
    let node_a = support::start(&rt, p.a.clone(), "test");
    let node_b = support::start(&rt, p.b.clone(), "test");
    add_user(&p.a, "tanaka", "operator");
    add_user(&p.b, "suzuki", "operator");
    // Everything each node has written so far is copied.
    let copied_all = |c: &mukaika::config::ServiceConfig| {
        p.db.psql(&format!(
            "SELECT count(*) FROM audit_records WHERE node = '{}'",
            c.audit.node
        )) == local_lines(&c.data.dir).len().to_string()
    };
    wait_for("copies", || {
        copies_with(&p.db, "node-a", "tanaka") >= 1
            && copies_with(&p.db, "node-b", "suzuki") >= 1
            && copied_all(&p.a)
            && copied_all(&p.b)
    });
    rt.block_on(node_a.stop("test"));
    rt.block_on(node_b.stop("test"));
    let file = config_file(p.dirs.1.path(), &p.b);
    let verify = || {
        let out = support::mukaika(&["audit", "verify", "--config", &file]);
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (ok, text) = verify();
    assert!(ok, "{text}");
    assert!(text.contains("PostgreSQL の写しは完全です"), "{text}");
    assert!(
        text.contains("copies of node node-a") && text.contains("copies of node node-b"),
        "{text}"
    );
    // The record of the stop is copied as the node stops.
    assert!(
        text.contains("records of this node not copied yet: 0"),
        "{text}"
    );
    // Every copy of B equals its local line, byte for byte.
    let copied =
        p.db.psql("SELECT record FROM audit_records WHERE node = 'node-b' ORDER BY seq");
    let local = local_lines(&p.b.data.dir);
    assert_eq!(copied.lines().collect::<Vec<_>>(), local);
    assert!(local.last().unwrap().contains("service_stopped"));

    // A copy of A's record altered in the database: named by node and seq, exit 1.
    p.db.psql(
        "UPDATE audit_records SET record = replace(record, 'tanaka', 'tanakb') \
         WHERE node = 'node-a' AND strpos(record, 'tanaka') > 0",
    );
    let seq = p
        .db
        .psql("SELECT seq FROM audit_records WHERE node = 'node-a' AND strpos(record, 'tanakb') > 0 ORDER BY seq LIMIT 1");
    let (ok, text) = verify();
    assert!(!ok, "{text}");
    assert!(
        text.contains(&format!("altered copy: ノード node node-a #{seq}")),
        "{text}"
    );
    p.db.psql("UPDATE audit_records SET record = replace(record, 'tanakb', 'tanaka')");
    assert!(verify().0);

    // One of B's copies deleted: named too (B's own check against its files names it as well).
    p.db.psql("DELETE FROM audit_records WHERE node = 'node-b' AND seq = 2");
    let (ok, text) = verify();
    assert!(!ok, "{text}");
    assert!(
        text.contains("missing copy: ノード node node-b #2"),
        "{text}"
    );
    // Checked from A as well.
    let file_a = config_file(p.dirs.0.path(), &p.a);
    let out = support::mukaika(&["audit", "verify", "--config", &file_a]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("node-b #2"),
        "{out:?}"
    );
    // A row for a record B never wrote: extra (and, from B, a break in the chain before it).
    p.db.psql(
        "INSERT INTO audit_records (node, seq, hash, prev, ts, kind, record) \
         SELECT node, 999, hash, prev, ts, kind, record FROM audit_records \
         WHERE node = 'node-b' AND seq = 3",
    );
    let (ok, text) = verify();
    assert!(!ok, "{text}");
    assert!(
        text.contains("extra copy: ノード node node-b #999"),
        "{text}"
    );
}

#[test]
fn records_appended_while_the_database_is_unreachable_are_copied_once_it_is_back() {
    let db = Database::new();
    let dir = tempfile::tempdir().unwrap();
    let c = node(&dir.path().join("data"), &db, "node-a");
    migrate(&c);
    let rt = runtime();
    let running = support::start(&rt, c.clone(), "test");
    wait_for("the start copied", || {
        copies_with(&db, "node-a", "service_started") == 1
    });
    // The database refuses this node: new connections, and the ones it has are cut.
    let admin = |sql: &str| db.server.psql("postgres", sql);
    admin(&format!(
        "ALTER DATABASE {} ALLOW_CONNECTIONS false",
        db.name
    ));
    admin(&format!(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '{}'",
        db.name
    ));
    for n in 0..3 {
        running
            .reload(c.clone(), &format!("while-down-{n}"), "test")
            .unwrap();
    }
    // Durable locally all the same; the copier tries (and fails) meanwhile.
    std::thread::sleep(Duration::from_secs(2));
    admin(&format!(
        "ALTER DATABASE {} ALLOW_CONNECTIONS true",
        db.name
    ));
    wait_for("the records made while down copied", || {
        copies_with(&db, "node-a", "while-down-") == 3
    });
    rt.block_on(running.stop("test"));
    // Once each, in a chain that verifies against the local files.
    let pg = mukaika::store::postgres::Pg::open(&c.store).unwrap();
    let report =
        mukaika::store::audit_copies::verify(&pg, "node-a", &c.data.dir.join("audit"), None, false)
            .unwrap();
    assert!(report.intact(), "{report:?}");
    assert_eq!(report.not_copied, 0, "{report:?}");
}

#[test]
fn two_nodes_with_the_same_node_name_are_detected_and_nothing_is_overwritten() {
    let db = Database::new();
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let first = node(&d1.path().join("data"), &db, "kawasaki-1");
    let second = node(&d2.path().join("data"), &db, "kawasaki-1");
    migrate(&first);
    let rt = runtime();
    let one = support::start(&rt, first.clone(), "test");
    add_user(&first, "yamada", "operator");
    wait_for("the first node's records copied", || {
        copies_with(&db, "kawasaki-1", "yamada") == 1
    });
    let before = db.psql("SELECT string_agg(record, E'\\n' ORDER BY seq) FROM audit_records");
    // A second node with the same name: its records are never copied over the first's.
    let two = support::start(&rt, second.clone(), "test");
    for n in 0..3 {
        two.reload(second.clone(), &format!("second-{n}"), "test")
            .unwrap();
    }
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(copies_with(&db, "kawasaki-1", "second-"), 0);
    let after = db.psql(&format!(
        "SELECT string_agg(record, E'\\n' ORDER BY seq) FROM audit_records WHERE seq <= {}",
        before.lines().count()
    ));
    assert_eq!(before, after, "no copy was overwritten");
    // The second node's selfcheck fails the copies row; its audit verify exits 1.
    let row = |c: &mukaika::config::ServiceConfig| {
        mukaika::admin::selfcheck::run(c)
            .into_iter()
            .find(|c| c.item == "クラスタ: 監査記録の写し")
            .expect("a copies row")
    };
    let second_row = row(&second);
    assert!(!second_row.ok, "{second_row:?}");
    assert!(second_row.detail.contains("[audit] node"), "{second_row:?}");
    let first_row = row(&first);
    assert!(first_row.ok, "{first_row:?}");
    let out = support::mukaika(&[
        "audit",
        "verify",
        "--config",
        &config_file(d2.path(), &second),
    ]);
    assert!(!out.status.success(), "{out:?}");
    rt.block_on(one.stop("test"));
    rt.block_on(two.stop("test"));
}

/// A node's log with `n` records of its own (plus the checkpoints the log adds).
fn log_with(dir: &Path, node: &str, key: Option<&[u8]>, n: usize) -> mukaika::audit::AuditLog {
    let mut config = mukaika::audit::AuditConfig::new(dir, node);
    config.hmac_key = key.map(<[u8]>::to_vec);
    let log = mukaika::audit::AuditLog::open(config).unwrap();
    for i in 0..n {
        log.append(mukaika::audit::AuditEvent::ConfigLoaded(
            mukaika::audit::event::ConfigLoaded {
                source: format!("{node}-{i}"),
                sha256: "0".repeat(64),
            },
        ))
        .unwrap();
    }
    log
}

fn migrated() -> (Database, mukaika::config::StoreSection) {
    let db = Database::new();
    let dir = tempfile::tempdir().unwrap();
    let c = node(dir.path(), &db, "unused");
    migrate(&c);
    (db, c.store)
}

#[test]
fn the_copier_sends_one_insert_per_batch_repeats_nothing_and_never_overwrites_another_chain() {
    use mukaika::store::audit_copies::{Shipper, BATCH};
    let (db, store) = migrated();
    let (d1, d2, d3) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let log = log_with(d1.path(), "n1", None, 1200);
    let total = log.durable_seq();
    let started = Instant::now();
    let pass = Shipper::new(d1.path(), "n1", store.clone())
        .pass(total)
        .unwrap();
    eprintln!("copied {} records in {:?}", pass.copied, started.elapsed());
    assert_eq!((pass.copied, pass.last), (total, total));
    // One INSERT (one transaction, one now()) per batch of BATCH records.
    let statements: usize = db
        .psql("SELECT count(DISTINCT copied_at) FROM audit_records")
        .parse()
        .unwrap();
    assert_eq!(statements, (total as usize).div_ceil(BATCH));
    // A copier starting afresh copies nothing twice; one that finds copies missing at the
    // end catches up from the last one there.
    let mut again = Shipper::new(d1.path(), "n1", store.clone());
    assert_eq!(again.pass(total).unwrap().copied, 0);
    db.psql("DELETE FROM audit_records WHERE seq > 700");
    // A running copier that meets a row it did not write, with another hash: stops there.
    let mut running = Shipper::new(d1.path(), "n1", store.clone());
    assert_eq!(running.pass(700).unwrap().copied, 0);
    db.psql(
        "INSERT INTO audit_records (node, seq, hash, prev, ts, kind, record) \
         SELECT node, 701, repeat('f', 64), prev, ts, kind, record FROM audit_records \
         WHERE node = 'n1' AND seq = 700",
    );
    let err = running.pass(total).unwrap_err();
    assert!(
        err.is_permanent() && err.to_string().contains("#701"),
        "{err}"
    );
    assert_eq!(
        db.psql("SELECT hash FROM audit_records WHERE seq = 701"),
        "f".repeat(64),
        "not overwritten"
    );
    assert_eq!(
        db.psql("SELECT max(seq) FROM audit_records"),
        "701",
        "nothing of the batch after it written"
    );
    db.psql("DELETE FROM audit_records WHERE seq > 700");
    assert_eq!(
        Shipper::new(d1.path(), "n1", store.clone())
            .pass(total)
            .unwrap()
            .copied,
        total - 700
    );
    let copies = db.psql("SELECT string_agg(record, E'\\n' ORDER BY seq) FROM audit_records");
    // Another log written under the same node name, longer or shorter: refused, nothing
    // overwritten, and the copier stays stopped.
    for (dir, n) in [(&d2, 1500), (&d3, 5)] {
        let other = log_with(dir.path(), "n1", None, n);
        let mut shipper = Shipper::new(dir.path(), "n1", store.clone());
        let err = shipper.pass(other.durable_seq()).unwrap_err();
        assert!(err.is_permanent(), "{err}");
        assert!(err.to_string().contains("same [audit] node name"), "{err}");
        assert!(shipper.conflict().is_some());
        assert!(shipper.pass(other.durable_seq()).is_err());
    }
    assert_eq!(
        db.psql("SELECT string_agg(record, E'\\n' ORDER BY seq) FROM audit_records"),
        copies
    );
}

#[test]
fn copies_keyed_with_another_nodes_hmac_key_are_checked_for_hashes_and_linkage_only() {
    use mukaika::store::audit_copies::{verify, Shipper};
    let (db, store) = migrated();
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let keyed = log_with(d1.path(), "keyed", Some(b"key-of-keyed"), 5);
    let plain = log_with(d2.path(), "plain", None, 5);
    Shipper::new(d1.path(), "keyed", store.clone())
        .pass(keyed.durable_seq())
        .unwrap();
    Shipper::new(d2.path(), "plain", store.clone())
        .pass(plain.durable_seq())
        .unwrap();
    let pg = mukaika::store::postgres::Pg::open(&store).unwrap();
    // From the plain node: the keyed node's HMACs cannot be checked, and that is said.
    let r = verify(&pg, "plain", d2.path(), None, false).unwrap();
    assert!(r.intact(), "{r:?}");
    assert!(
        r.notes
            .iter()
            .any(|n| n.contains("keyed") && n.contains("only hashes and linkage")),
        "{r:?}"
    );
    // From the keyed node itself, with its key: fully checked.
    let r = verify(&pg, "keyed", d1.path(), Some(b"key-of-keyed"), false).unwrap();
    assert!(r.intact() && r.notes.is_empty(), "{r:?}");
    let r = verify(&pg, "keyed", d1.path(), Some(b"another-key"), false).unwrap();
    assert!(!r.intact(), "{r:?}");
    // A copy rewritten with a hash that recomputes still breaks the link to the next one.
    let line = db.psql("SELECT record FROM audit_records WHERE node = 'plain' AND seq = 2");
    let at = line.rfind(",\"hash\":\"").unwrap();
    let body = format!("{}}}", &line[..at]).replace("plain-1", "plain-X");
    let hash = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(body.as_bytes()))
    };
    let forged = format!("{},\"hash\":\"{hash}\"}}", &body[..body.len() - 1]);
    db.psql(&format!(
        "UPDATE audit_records SET record = '{forged}', hash = '{hash}' WHERE node = 'plain' AND seq = 2"
    ));
    let r = verify(&pg, "keyed", d1.path(), Some(b"key-of-keyed"), false).unwrap();
    assert!(
        r.problems
            .iter()
            .any(|p| p.node == "plain" && p.seq == 3 && p.kind == "broken-link"),
        "{r:?}"
    );
    // And the node that wrote it finds the copy unlike its record.
    let r = verify(&pg, "plain", d2.path(), None, true).unwrap();
    assert!(
        r.problems
            .iter()
            .any(|p| p.node == "plain" && p.seq == 2 && p.kind == "altered"),
        "{r:?}"
    );
}

#[test]
fn retention_takes_a_nodes_expired_records_out_of_the_cluster_too_and_verify_still_passes() {
    use mukaika::clock::TestClock;
    use mukaika::store::audit_copies::Shipper;
    let (db, store) = migrated();
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::at(1_796_406_775_843);
    let audit_dir = dir.path().join("audit");
    let log = mukaika::audit::AuditLog::open(mukaika::audit::AuditConfig {
        clock: clock.clone(),
        ..mukaika::audit::AuditConfig::new(&audit_dir, "n1")
    })
    .unwrap();
    let record = |i: usize| {
        log.append(mukaika::audit::AuditEvent::ConfigLoaded(
            mukaika::audit::event::ConfigLoaded {
                source: format!("n1-{i}"),
                sha256: "0".repeat(64),
            },
        ))
        .unwrap();
    };
    (0..5).for_each(record);
    clock.advance(Duration::from_secs(3 * 86_400));
    (5..8).for_each(record);
    let mut shipper = Shipper::new(&audit_dir, "n1", store.clone());
    shipper.pass(log.durable_seq()).unwrap();
    assert_eq!(db.psql("SELECT count(*) FROM audit_records"), "8");
    let pg = mukaika::store::postgres::Pg::open(&store).unwrap();
    let quarantine = mukaika::store::quarantine::FsQuarantine::open(dir.path().join("q")).unwrap();
    let expired =
        mukaika::review::retention::run_clustered(&log, &quarantine, 1, 180, Some(&pg)).unwrap();
    assert_eq!(expired.audit_files.len(), 1, "the first day's file");
    // Nothing goes before the retention record itself is copied (the next pass's work).
    assert_eq!(db.psql("SELECT count(*) FROM audit_records"), "8");
    shipper.pass(log.durable_seq()).unwrap();
    assert_eq!(
        mukaika::store::audit_copies::forget_expired(&pg, "n1", &audit_dir).unwrap(),
        5
    );
    // The five expired records' copies are gone; the rest and the retention record stay.
    assert_eq!(
        db.psql("SELECT min(seq) || ' ' || max(seq) FROM audit_records WHERE node = 'n1'"),
        "6 9"
    );
    let report = mukaika::store::audit_copies::verify(&pg, "n1", &audit_dir, None, false).unwrap();
    assert!(report.intact(), "{report:?}");
    // A node that reported in but whose copies are all gone is a finding.
    db.psql("INSERT INTO nodes (name, version) VALUES ('n9', 'test')");
    let report = mukaika::store::audit_copies::verify(&pg, "n1", &audit_dir, None, false).unwrap();
    assert!(!report.intact());
    assert!(report.problems.iter().any(|p| p.node == "n9"), "{report:?}");
    db.psql("DELETE FROM nodes WHERE name = 'n9'");

    // Files removed by hand (no retention record for them) take no copies with them.
    let dir2 = tempfile::tempdir().unwrap();
    let log2 = mukaika::audit::AuditLog::open(mukaika::audit::AuditConfig {
        clock: clock.clone(),
        ..mukaika::audit::AuditConfig::new(dir2.path(), "n2")
    })
    .unwrap();
    for i in 0..3 {
        log2.append(mukaika::audit::AuditEvent::ConfigLoaded(
            mukaika::audit::event::ConfigLoaded {
                source: format!("n2-{i}"),
                sha256: "0".repeat(64),
            },
        ))
        .unwrap();
    }
    clock.advance(Duration::from_secs(2 * 86_400));
    log2.append(mukaika::audit::AuditEvent::ConfigLoaded(
        mukaika::audit::event::ConfigLoaded {
            source: "n2-later".into(),
            sha256: "0".repeat(64),
        },
    ))
    .unwrap();
    Shipper::new(dir2.path(), "n2", store.clone())
        .pass(log2.durable_seq())
        .unwrap();
    let oldest = std::fs::read_dir(dir2.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .min()
        .unwrap();
    std::fs::remove_file(oldest).unwrap();
    assert_eq!(
        mukaika::store::audit_copies::forget_expired(&pg, "n2", dir2.path()).unwrap(),
        0
    );
    assert_eq!(
        db.psql("SELECT count(*) FROM audit_records WHERE node = 'n2'"),
        "4"
    );
}
