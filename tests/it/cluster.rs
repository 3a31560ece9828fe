//! Cluster mode (#21) against a real, private PostgreSQL (support::postgres): two `mukaika`
//! services with their own data folders and ports share one database, so accounts, login
//! sessions, lockout counters and release requests are the same on both; the schema is
//! migrated by `mukaika store migrate` only, and a node refuses a schema it does not know.
//! Quarantine items are shared too (tests/it/cluster_quarantine.rs tests that store): an item
//! seeded through one node's configuration is every node's.

use crate::support;

use std::path::Path;
use std::time::Duration;

use mukaika::store::quarantine::QuarantineItem;
use support::postgres::{migrate, Database};
use support::web::{account, add_user, Browser, PASSWORD};
use support::{config, runtime};

/// A node's configuration: its own data folder and ports, the shared database.
fn node(data: &Path, db: &Database, name: &str) -> mukaika::config::ServiceConfig {
    let mut c = config(data, "");
    c.audit.node = name.into();
    c.notices.recipients = false;
    db.configure(&mut c);
    c
}

/// Two nodes on one migrated database.
struct Pair {
    _dirs: (tempfile::TempDir, tempfile::TempDir),
    db: Database,
    a: mukaika::config::ServiceConfig,
    b: mukaika::config::ServiceConfig,
}

fn pair() -> Pair {
    let (da, db_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let db = Database::new();
    let a = node(da.path(), &db, "node-a");
    let b = node(db_dir.path(), &db, "node-b");
    migrate(&a);
    Pair {
        _dirs: (da, db_dir),
        db,
        a,
        b,
    }
}

#[test]
fn a_login_on_one_node_is_valid_on_the_other() {
    let p = pair();
    let rt = runtime();
    let node_a = support::start(&rt, p.a.clone(), "test");
    let node_b = support::start(&rt, p.b.clone(), "test");
    let mut on_a = account(&p.a, node_a.admin_addr, "op1", "operator");
    assert_eq!(on_a.get("/").status, 200);
    // The same cookie, sent to the other node.
    let mut on_b = Browser::new(node_b.admin_addr);
    on_b.cookies = on_a.cookies.clone();
    let r = on_b.get("/");
    assert_eq!(
        r.status,
        200,
        "the session is known on B: {:?}",
        r.header("location")
    );
    // Logging out on B ends it on A too.
    let token = on_b.token();
    assert_eq!(on_b.post("/logout", &[("csrf", &token)]).status, 303);
    assert_eq!(on_a.get("/").header("location"), Some("/login"));
    // Only the token's SHA-256 is in the shared database.
    let stored = p.db.psql("SELECT token_sha256 FROM sessions");
    for value in on_a.cookies.values() {
        assert!(!stored.contains(value.as_str()), "a token in clear");
    }
    rt.block_on(node_a.stop("test"));
    rt.block_on(node_b.stop("test"));
}

#[test]
fn five_wrong_passwords_spread_over_both_nodes_lock_the_account() {
    let p = pair();
    assert_eq!(p.a.admin.lockout_attempts, 5);
    let rt = runtime();
    let node_a = support::start(&rt, p.a.clone(), "test");
    let node_b = support::start(&rt, p.b.clone(), "test");
    drop(account(&p.a, node_a.admin_addr, "op1", "operator"));
    // The account made on A logs in on B.
    assert_eq!(
        Browser::new(node_b.admin_addr)
            .login("op1", PASSWORD)
            .status,
        303
    );
    let mut on_a = Browser::new(node_a.admin_addr);
    let mut on_b = Browser::new(node_b.admin_addr);
    for i in 0..5 {
        let b = if i % 2 == 0 { &mut on_a } else { &mut on_b };
        assert_eq!(b.login("op1", "wrong-password-guess").status, 401);
        if i == 3 {
            // One count for the account, whichever node was asked.
            assert_eq!(
                p.db.psql("SELECT failed FROM users WHERE name = 'op1'"),
                "4"
            );
        }
    }
    // Locked on both, even with the right password.
    for b in [&mut on_a, &mut on_b] {
        let r = b.login("op1", PASSWORD);
        assert_eq!(r.status, 401, "locked on {}", b.addr);
    }
    let locked_until: i64 =
        p.db.psql("SELECT locked_until FROM users WHERE name = 'op1'")
            .parse()
            .unwrap();
    assert!(locked_until > 0);
    rt.block_on(node_a.stop("test"));
    rt.block_on(node_b.stop("test"));
}

#[test]
fn an_account_disabled_on_one_node_cannot_log_in_on_the_other() {
    let p = pair();
    let rt = runtime();
    let node_a = support::start(&rt, p.a.clone(), "test");
    let node_b = support::start(&rt, p.b.clone(), "test");
    drop(account(&p.a, node_a.admin_addr, "op1", "operator"));
    let mut on_b = Browser::new(node_b.admin_addr);
    assert_eq!(on_b.login("op1", PASSWORD).status, 303);
    assert_eq!(on_b.get("/").status, 200);
    let reply = mukaika::admin::control::run(
        &p.a,
        mukaika::admin::control::Op::UserDisable { name: "op1".into() },
    )
    .unwrap();
    assert!(reply.ok, "{}", reply.message);
    // B's open session ended, and a new login on B is refused.
    assert_eq!(on_b.get("/").header("location"), Some("/login"));
    let mut fresh = Browser::new(node_b.admin_addr);
    assert_eq!(fresh.login("op1", PASSWORD).status, 401);
    rt.block_on(node_a.stop("test"));
    rt.block_on(node_b.stop("test"));
}

/// Puts a held message into the quarantine `node` uses (the cluster's shared one).
fn seed(node: &mukaika::config::ServiceConfig, id: &str, bytes: &[u8]) {
    let item = QuarantineItem {
        origin_id: "Q0001".into(),
        report: serde_json::json!({"verdict": "quarantined"}),
        ..support::held_mail(id, "malformed", bytes)
    };
    mukaika::store::quarantine::open_configured(node)
        .unwrap()
        .put(&item, bytes)
        .unwrap();
}

fn maildir_count(data: &Path) -> usize {
    std::fs::read_dir(data.join("maildir/new")).map_or(0, |d| d.count())
}

#[test]
fn a_release_requested_on_one_node_is_approved_on_the_other_and_delivered_by_the_holder() {
    let p = pair();
    let original = b"From: sender@example.com\r\nTo: staff@city.example.lg.jp\r\nSubject: held\r\n\r\nbody\r\n";
    // Held via A, in the shared quarantine: every node holds it.
    seed(&p.a, "Q0001", original);
    seed(&p.a, "Q0002", original);
    let rt = runtime();
    let node_a = support::start(&rt, p.a.clone(), "test");
    let node_b = support::start(&rt, p.b.clone(), "test");
    let mut op = account(&p.a, node_a.admin_addr, "op1", "operator");
    let mut ap = account(&p.b, node_b.admin_addr, "ap1", "approver");
    let t = op.token();
    for item in ["Q0001", "Q0002"] {
        let r = op.post(
            &format!("/items/{item}/request"),
            &[
                ("csrf", &t),
                ("target", "original"),
                ("reason", "正規の請求書"),
            ],
        );
        assert_eq!(r.status, 303, "{}", r.text());
    }
    let rid =
        p.db.psql("SELECT id FROM requests WHERE item_id = 'Q0001' AND state = 'pending'");
    assert!(rid.starts_with('R'), "{rid:?}");
    // B restarting (its retry pass runs at start) does not take A's requests for orphans.
    rt.block_on(node_b.stop("test"));
    let node_b = support::start(&rt, p.b.clone(), "test");
    // A new port; the session, in the shared database, carries on.
    ap.addr = node_b.admin_addr;
    assert_eq!(
        p.db.psql("SELECT count(*) FROM requests WHERE state = 'pending'"),
        "2",
        "A's requests are still pending"
    );
    // B lists A's requests, and its approver decides one there: recorded in the shared
    // database.
    let list = ap.get("/requests");
    assert_eq!(list.status, 200);
    assert!(list.text().contains(&rid), "{}", list.text());
    let t = ap.token();
    let r = ap.post(
        &format!("/requests/{rid}/approve"),
        &[("csrf", &t), ("reason", "内容を確認した")],
    );
    assert_eq!(r.status, 303, "{}", r.text());
    // B holds the item too (the quarantine is shared): it delivers on approval.
    let state = || {
        p.db.psql(&format!(
            "SELECT state || ' ' || decided_by FROM requests WHERE id = '{rid}'"
        ))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while state() != "delivered ap1" && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(state(), "delivered ap1");
    // A second decision, on A, finds it decided.
    let t = op.token();
    let r = op.post(
        &format!("/requests/{rid}/cancel"),
        &[("csrf", &t), ("reason", "x")],
    );
    assert_eq!(r.status, 409, "{}", r.text());
    // A's retry pass (at start) does not deliver it again.
    rt.block_on(node_a.stop("test"));
    let node_a = support::start(&rt, p.a.clone(), "test");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        maildir_count(&p.a.data.dir) + maildir_count(&p.b.data.dir),
        1,
        "delivered once"
    );
    let delivered = [&p.a.data.dir, &p.b.data.dir]
        .iter()
        .filter_map(|d| std::fs::read_dir(d.join("maildir/new")).ok())
        .flatten()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let text = String::from_utf8_lossy(&std::fs::read(delivered).unwrap()).into_owned();
    assert!(
        text.starts_with(&format!(
            "X-Mukaika-Released: item=Q0001; request={rid}; requester=op1; approver=ap1\r\n"
        )),
        "{text}"
    );
    rt.block_on(node_a.stop("test"));
    rt.block_on(node_b.stop("test"));
}

#[test]
fn store_migrate_brings_a_new_database_to_the_current_schema_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::new();
    let c = node(&dir.path().join("data"), &db, "node-a");
    // Before the migration a node refuses to start, saying what to run.
    let rt = runtime();
    let refused = rt
        .block_on(mukaika::service::start(c.clone(), "test", "test"))
        .err()
        .expect("no schema yet");
    assert!(refused.to_string().contains("store migrate"), "{refused}");
    let file = dir.path().join("mukaika.toml");
    std::fs::write(
        &file,
        format!(
            "[data]\ndir = \"{}\"\n\n[store]\nbackend = \"postgres\"\nurl = \"{}\"\n",
            dir.path().join("data").display(),
            db.url()
        ),
    )
    .unwrap();
    // Whatever migrations this binary carries (each part of #21 adds its own).
    let latest = mukaika::store::postgres::latest_version().to_string();
    let out = support::mukaika(&["store", "migrate", "--config", file.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("from version 0 to {latest}")),
        "{out:?}"
    );
    assert_eq!(db.psql("SELECT max(version) FROM schema_version"), latest);
    let again = support::mukaika(&["store", "migrate", "--config", file.to_str().unwrap()]);
    assert!(again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stdout).contains(&format!("already at version {latest}"))
    );
    let running = support::start(&rt, c, "test");
    rt.block_on(running.stop("test"));
}

#[test]
fn a_node_refuses_a_schema_newer_than_it_knows() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::new();
    let c = node(dir.path(), &db, "node-a");
    migrate(&c);
    db.psql("INSERT INTO schema_version (version, description) VALUES (999, 'from the future')");
    let rt = runtime();
    let refused = rt
        .block_on(mukaika::service::start(c.clone(), "test", "test"))
        .err()
        .expect("a newer schema is refused");
    assert!(refused.to_string().contains("newer"), "{refused}");
    // `store migrate` does not touch it either.
    let err = mukaika::store::postgres::Pg::connect(&c.store)
        .unwrap()
        .migrate()
        .unwrap_err();
    assert!(err.to_string().contains("newer"), "{err}");
}

#[test]
fn the_database_link_is_tls_checked_against_the_configured_ca() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::new();
    let mut c = node(dir.path(), &db, "node-a");
    migrate(&c);
    c.store.url = Some(db.tcp_url());
    c.store.ca_file = Some(db.server.ca_file());
    let pg = mukaika::store::postgres::Pg::open(&c.store).unwrap();
    let tls = db.psql(
        "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
         WHERE a.application_name = 'mukaika' AND s.ssl",
    );
    assert_eq!(tls, "1", "mukaika's connection is TLS");
    drop(pg);
    // A server whose certificate the configured CA did not sign is refused.
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let wrong_ca = dir.path().join("other-ca.pem");
    std::fs::write(&wrong_ca, other.cert.pem()).unwrap();
    c.store.ca_file = Some(wrong_ca);
    let err = mukaika::store::postgres::Pg::open(&c.store).unwrap_err();
    assert!(err.to_string().contains("connect"), "{err}");
}

#[test]
fn selfcheck_and_the_account_list_read_the_clusters_accounts_not_the_nodes_folder() {
    let p = pair();
    // Made through node A while no service runs; node B's folder has no review.db at all.
    add_user(&p.a, "op1", "operator");
    assert!(!p.b.data.dir.join("review.db").exists());
    let checks = mukaika::admin::selfcheck::run(&p.b);
    let initial = checks
        .iter()
        .find(|c| c.item == "初期パスワードのままのアカウントがない")
        .unwrap();
    assert!(
        !initial.ok,
        "op1 still has its one-time password: {}",
        initial.detail
    );
    assert!(initial.detail.contains("op1"), "{}", initial.detail);
    let file = p._dirs.1.path().join("b.toml");
    std::fs::write(
        &file,
        format!(
            "[data]\ndir = \"{}\"\n\n[store]\nbackend = \"postgres\"\nurl = \"{}\"\n",
            p.b.data.dir.display(),
            p.db.url()
        ),
    )
    .unwrap();
    let out = support::mukaika(&["admin", "user", "list", "--config", file.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("op1"),
        "{out:?}"
    );
}

#[test]
fn a_node_reconnects_after_the_database_restarts() {
    // A server of its own: the restart cuts every connection to it.
    let server = std::sync::Arc::new(support::postgres::Server::start());
    let db = Database::on(server.clone());
    let dir = tempfile::tempdir().unwrap();
    let c = node(dir.path(), &db, "node-a");
    migrate(&c);
    let rt = runtime();
    let node_a = support::start(&rt, c.clone(), "test");
    let mut b = account(&c, node_a.admin_addr, "op1", "operator");
    assert_eq!(b.get("/").status, 200);
    server.restart();
    // The first request may find the old connection cut (the store unreadable: admitted as
    // nobody, to the login page); the node then connects again, and the session, kept in the
    // database, is still valid.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut status = 0;
    while std::time::Instant::now() < deadline {
        status = b.get("/").status;
        if status == 200 {
            break;
        }
        assert!(status == 303 || status >= 500, "{status}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(status, 200);
    rt.block_on(node_a.stop("test"));
}

/// `selfcheck` in cluster mode: the link to the shared database and how it is protected, the
/// schema against this binary, and the nodes that reported in recently (and which went silent).
#[test]
fn selfcheck_names_the_database_link_the_schema_and_the_nodes_seen() {
    let p = pair();
    let rt = runtime();
    let node_a = support::start(&rt, p.a.clone(), "test");
    let node_b = support::start(&rt, p.b.clone(), "test");
    let row = |checks: &[mukaika::admin::selfcheck::Check], item: &str| {
        checks
            .iter()
            .find(|c| c.item == item)
            .unwrap_or_else(|| panic!("no row {item}: {checks:?}"))
            .clone()
    };
    // Both report in as they start.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let nodes = loop {
        let checks = mukaika::admin::selfcheck::run(&p.a);
        let nodes = row(&checks, "クラスタ: 稼働中のノード");
        if nodes.detail.contains("node-a") && nodes.detail.contains("node-b") {
            break checks;
        }
        assert!(std::time::Instant::now() < deadline, "{nodes:?}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let link = row(&nodes, "クラスタ: 共有データベースへの接続");
    assert!(link.ok, "{link:?}");
    let schema = row(&nodes, "クラスタ: データベースの版");
    let latest = mukaika::store::postgres::latest_version().to_string();
    assert!(
        schema.ok && schema.detail.starts_with(&latest),
        "{schema:?}"
    );
    assert!(row(&nodes, "クラスタ: 稼働中のノード").ok);
    rt.block_on(node_b.stop("test"));
    // Node B has been silent for ten minutes: named as such, while A still counts.
    p.db.psql("UPDATE nodes SET last_seen = now() - interval '10 minutes' WHERE name = 'node-b'");
    let checks = mukaika::admin::selfcheck::run(&p.a);
    let nodes = row(&checks, "クラスタ: 稼働中のノード");
    assert!(nodes.ok, "{nodes:?}");
    assert!(nodes.detail.contains("応答なし: node-b"), "{nodes:?}");
    rt.block_on(node_a.stop("test"));
    // No node at all has reported in lately: that fails.
    p.db.psql("UPDATE nodes SET last_seen = now() - interval '10 minutes'");
    let checks = mukaika::admin::selfcheck::run(&p.a);
    assert!(!row(&checks, "クラスタ: 稼働中のノード").ok);
    // A database whose schema is behind this binary.
    p.db.psql(
        "DELETE FROM schema_version WHERE version = (SELECT max(version) FROM schema_version)",
    );
    let checks = mukaika::admin::selfcheck::run(&p.a);
    let schema = row(&checks, "クラスタ: データベースの版");
    assert!(
        !schema.ok && schema.detail.contains("store migrate"),
        "{schema:?}"
    );
}
