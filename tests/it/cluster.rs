//! Cluster mode (#21) against a real, private PostgreSQL (support::postgres): two `mukaika`
//! services with their own data folders and ports share one database, so accounts, login
//! sessions, lockout counters and release requests are the same on both; the schema is
//! migrated by `mukaika store migrate` only, and a node refuses a schema it does not know.
//! Quarantine items are shared too (tests/it/cluster_quarantine.rs tests that store): an item
//! seeded through one node's configuration is every node's.

use crate::support;

use std::path::Path;
use std::sync::{Arc, Mutex};
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

/// The LGWAN-side mail server of the release tests: answers a plain SMTP dialogue and keeps
/// every message it accepted with a 250. With `stall_first`, the first transaction's DATA
/// command is never answered (the connection is held open), and `stalled` fires.
struct LgwanServer {
    port: u16,
    accepted: Arc<Mutex<Vec<String>>>,
    stalled: std::sync::mpsc::Receiver<()>,
}

fn lgwan_server(stall_first: bool) -> LgwanServer {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let (tell, stalled) = std::sync::mpsc::channel();
    let stall = Arc::new(std::sync::atomic::AtomicBool::new(stall_first));
    let kept = Arc::clone(&accepted);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let (kept, tell, stall) = (Arc::clone(&kept), tell.clone(), Arc::clone(&stall));
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let _ = conn.write_all(b"220 lgwan.example.lg.jp ESMTP\r\n");
                let mut line = String::new();
                loop {
                    line.clear();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
                    let reply: &[u8] = match verb.as_str() {
                        "DATA" if stall.swap(false, std::sync::atomic::Ordering::SeqCst) => {
                            let _ = tell.send(());
                            // Never answered: wait until the client goes away.
                            while reader.read_line(&mut line).unwrap_or(0) > 0 {}
                            return;
                        }
                        "DATA" => {
                            let _ = conn.write_all(b"354 go ahead\r\n");
                            let mut message = String::new();
                            loop {
                                line.clear();
                                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                                    return;
                                }
                                if line == ".\r\n" {
                                    break;
                                }
                                message.push_str(&line);
                            }
                            kept.lock().unwrap().push(message);
                            b"250 queued\r\n"
                        }
                        "QUIT" => {
                            let _ = conn.write_all(b"221 bye\r\n");
                            return;
                        }
                        _ => b"250 ok\r\n",
                    };
                    if conn.write_all(reply).is_err() {
                        return;
                    }
                }
            });
        }
    });
    LgwanServer {
        port,
        accepted,
        stalled,
    }
}

impl LgwanServer {
    /// The request IDs of the releases accepted, in order.
    fn releases(&self) -> Vec<String> {
        self.accepted
            .lock()
            .unwrap()
            .iter()
            .filter_map(|m| {
                m.split("; request=")
                    .nth(1)
                    .and_then(|r| r.split(';').next())
                    .map(str::to_string)
            })
            .collect()
    }

    /// Waits until `n` messages were accepted (or 40 s passed).
    fn wait_for(&self, n: usize) -> Vec<String> {
        let deadline = std::time::Instant::now() + Duration::from_secs(40);
        while self.accepted.lock().unwrap().len() < n && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        self.releases()
    }
}

/// Sends releases to `server` and gives a node's claim on one `lease` seconds.
fn relay_to(c: &mut mukaika::config::ServiceConfig, server: &LgwanServer, lease: u64) {
    c.delivery.mode = mukaika::config::DeliveryMode::Relay;
    c.delivery.relay = Some(format!("smtp://127.0.0.1:{}", server.port));
    c.store.release_lease_secs = lease;
}

/// Asks for the release of `items` on `node` (as op1) and returns the request IDs.
fn request_releases(p: &Pair, addr: std::net::SocketAddr, items: &[&str]) -> Vec<String> {
    let mut op = account(&p.a, addr, "op1", "operator");
    let t = op.token();
    items
        .iter()
        .map(|item| {
            let r = op.post(
                &format!("/items/{item}/request"),
                &[
                    ("csrf", &t),
                    ("target", "original"),
                    ("reason", "正規の請求書"),
                ],
            );
            assert_eq!(r.status, 303, "{}", r.text());
            p.db.psql(&format!(
                "SELECT id FROM requests WHERE item_id = '{item}' AND state = 'pending'"
            ))
        })
        .collect()
}

#[test]
fn a_release_requested_on_one_node_and_approved_on_the_other_goes_out_once() {
    let mut p = pair();
    let server = lgwan_server(false);
    relay_to(&mut p.a, &server, 30);
    relay_to(&mut p.b, &server, 30);
    let original = b"From: sender@example.com\r\nTo: staff@city.example.lg.jp\r\nSubject: held\r\n\r\nbody\r\n";
    for id in ["Q0001", "Q0002"] {
        // Held once, in the shared quarantine: every node holds it.
        seed(&p.a, id, original);
    }
    let rt = runtime();
    let node_a = support::start(&rt, p.a.clone(), "test");
    let node_b = support::start(&rt, p.b.clone(), "test");
    let rids = request_releases(&p, node_a.admin_addr, &["Q0001", "Q0002"]);
    let rid = &rids[0];
    assert!(rid.starts_with('R'), "{rid:?}");
    // B lists A's requests, and its approver decides one there.
    let mut ap = account(&p.b, node_b.admin_addr, "ap1", "approver");
    assert!(ap.get("/requests").text().contains(rid.as_str()));
    let t = ap.token();
    let r = ap.post(
        &format!("/requests/{rid}/approve"),
        &[("csrf", &t), ("reason", "内容を確認した")],
    );
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(
        server.wait_for(1),
        vec![rid.clone()],
        "B handed it to the relay"
    );
    assert_eq!(
        p.db.psql(&format!(
            "SELECT state || ' ' || decided_by || ' ' || claimed_by FROM requests WHERE id = '{rid}'"
        )),
        "delivered ap1 node-b"
    );
    assert!(p
        .db
        .psql(&format!("SELECT delivery FROM requests WHERE id = '{rid}'"))
        .contains("(node-b): 250"));
    // A's retry pass (at start) finds it delivered and sends nothing.
    rt.block_on(node_a.stop("test"));
    let node_a = support::start(&rt, p.a.clone(), "test");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        server.releases(),
        vec![rid.clone()],
        "delivered exactly once"
    );
    let text = server.accepted.lock().unwrap()[0].clone();
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
fn approved_releases_left_behind_are_delivered_once_by_two_nodes_racing_for_them() {
    let mut p = pair();
    let server = lgwan_server(false);
    relay_to(&mut p.a, &server, 30);
    relay_to(&mut p.b, &server, 30);
    let items: Vec<String> = (1..=12).map(|n| format!("Q{n:04}")).collect();
    let original = b"From: sender@example.com\r\nTo: staff@city.example.lg.jp\r\nSubject: held\r\n\r\nbody\r\n";
    for id in &items {
        // Held once, in the shared quarantine: every node holds it.
        seed(&p.a, id, original);
    }
    let rt = runtime();
    let node_a = support::start(&rt, p.a.clone(), "test");
    let refs: Vec<&str> = items.iter().map(String::as_str).collect();
    let mut rids = request_releases(&p, node_a.admin_addr, &refs);
    rt.block_on(node_a.stop("test"));
    // Approved while no node ran (as if each node had died right after the approval): the
    // retry passes of both nodes, started together, race for them.
    add_user(&p.a, "ap1", "approver");
    p.db.psql(
        "UPDATE requests SET state = 'approved', decided_by = 'ap1', decided_at = requested_at",
    );
    let (a, b) = (p.a.clone(), p.b.clone());
    let (node_a, node_b) = rt.block_on(async {
        tokio::join!(
            mukaika::service::start(a, "test", "test"),
            mukaika::service::start(b, "test", "test")
        )
    });
    let (node_a, node_b) = (node_a.unwrap(), node_b.unwrap());
    let mut sent = server.wait_for(items.len());
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(server.releases().len(), items.len(), "none twice");
    sent.sort();
    rids.sort();
    assert_eq!(sent, rids, "each exactly once");
    assert_eq!(
        p.db.psql("SELECT count(*) FROM requests WHERE state = 'delivered'"),
        items.len().to_string()
    );
    rt.block_on(node_a.stop("test"));
    rt.block_on(node_b.stop("test"));
}

#[test]
fn a_node_killed_while_it_delivers_a_release_is_taken_over_by_the_other() {
    let mut p = pair();
    let server = lgwan_server(true);
    // A's hand-off is cut off at 3/4 of the lease (4.5 s); the test kills it well before.
    relay_to(&mut p.a, &server, 6);
    relay_to(&mut p.b, &server, 6);
    p.a.delivery.relay_timeout_secs = 60;
    let original = b"From: sender@example.com\r\nTo: staff@city.example.lg.jp\r\nSubject: held\r\n\r\nbody\r\n";
    // Held once, in the shared quarantine: every node holds it.
    seed(&p.a, "Q0001", original);
    let rt = runtime();
    let node_b = support::start(&rt, p.b.clone(), "test");
    let rid = request_releases(&p, node_b.admin_addr, &["Q0001"]).remove(0);
    // A runs as a process of its own, to be SIGKILLed.
    let admin_port = support::free_port();
    p.a.admin.listen = ([127, 0, 0, 1], admin_port).into();
    p.a.smtp.listen = ([127, 0, 0, 1], support::free_port()).into();
    let file = p.a.data.dir.join("node-a.toml");
    std::fs::create_dir_all(&p.a.data.dir).unwrap();
    std::fs::write(&file, toml::to_string(&p.a).unwrap()).unwrap();
    let mut node_a = std::process::Command::new(env!("CARGO_BIN_EXE_mukaika"))
        .args(["serve", "--config", file.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let admin = p.a.admin.listen;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(admin).is_err() {
        assert!(std::time::Instant::now() < deadline, "node A did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The approval is given on A, which claims the release and starts handing it over.
    let mut ap = account(&p.a, admin, "ap1", "approver");
    let approving = std::thread::spawn(move || {
        let t = ap.token();
        ap.post(
            &format!("/requests/{rid}/approve"),
            &[("csrf", &t), ("reason", "内容を確認した")],
        )
        .status
    });
    server
        .stalled
        .recv_timeout(Duration::from_secs(20))
        .expect("A reached the relay's DATA");
    assert_eq!(
        p.db.psql("SELECT state || ' ' || claimed_by FROM requests"),
        "approved node-a"
    );
    node_a.kill().unwrap();
    node_a.wait().unwrap();
    let _ = approving.join();
    // B takes it over once A's lease has run out, and it goes out once.
    let rid = p.db.psql("SELECT id FROM requests");
    assert_eq!(server.wait_for(1), vec![rid.clone()]);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(server.releases(), vec![rid.clone()], "exactly once");
    assert_eq!(
        p.db.psql("SELECT state || ' ' || claimed_by FROM requests"),
        "delivered node-b"
    );
    assert!(
        support::audit_kinds(&p.b.data.dir).contains(&"release_delivered".to_string()),
        "B recorded the delivery"
    );
    rt.block_on(node_b.stop("test"));
}

#[test]
fn store_migrate_brings_a_new_database_to_the_current_schema_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::new();
    let c = node(&dir.path().join("data"), &db, "node-a");
    let latest = mukaika::store::postgres::latest_version();
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
    let out = support::mukaika(&["store", "migrate", "--config", file.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("from version 0 to {latest}")),
        "{out:?}"
    );
    assert_eq!(
        db.psql("SELECT max(version) FROM schema_version"),
        latest.to_string()
    );
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
    let backlog = row(&nodes, "クラスタ: 承認済みで未配送の解除");
    assert!(backlog.ok && backlog.detail == "なし", "{backlog:?}");
    // A release approved an hour ago that no node could hand over: named, and it fails.
    p.db.psql(
        "INSERT INTO requests (id, item_id, requester, target, reason, state, decided_by, \
         requested_at, decided_at) VALUES ('R1', 'Q1', 'op1', 'original', 'x', 'approved', \
         'ap1', '2026-01-01T00:00:00Z', (now() - interval '1 hour')::text)",
    );
    let backlog = row(
        &mukaika::admin::selfcheck::run(&p.a),
        "クラスタ: 承認済みで未配送の解除",
    );
    assert!(
        !backlog.ok && backlog.detail.starts_with("1 件"),
        "{backlog:?}"
    );
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

#[test]
fn a_cluster_job_runs_on_one_node_at_a_time() {
    use mukaika::store::postgres::{Job, Pg};
    let p = pair();
    // Two processes' worth of connections (Pg::open, not the shared one).
    let (a, b) = (Pg::open(&p.a.store).unwrap(), Pg::open(&p.b.store).unwrap());
    let inside = a
        .one_at_a_time(Job::Retention, || {
            // B, and a second thread of A itself, are turned away while A runs it…
            let b_ran = b.one_at_a_time(Job::Retention, || ()).unwrap();
            let a_again = a.one_at_a_time(Job::Retention, || ()).unwrap();
            // …but another job is free.
            let other = b.one_at_a_time(Job::AdminNotices, || ()).unwrap();
            (b_ran, a_again, other)
        })
        .unwrap();
    assert_eq!(inside, Some((None, None, Some(()))));
    // Once A is done, B runs it.
    assert_eq!(b.one_at_a_time(Job::Retention, || 7).unwrap(), Some(7));
}

#[test]
fn retention_on_a_node_leaves_the_shared_quarantine_to_the_node_expiring_it() {
    use mukaika::store::postgres::{Job, Pg};
    let p = pair();
    let original = b"From: a@example.com\r\n\r\nold\r\n";
    let old = QuarantineItem {
        at: "2020-01-01T00:00:00Z".into(),
        ..support::held_mail("Q0001", "malformed", original)
    };
    let store = mukaika::store::quarantine::open_configured(&p.a).unwrap();
    store.put(&old, original).unwrap();
    let audit = mukaika::store::open_audit(&p.a).unwrap();
    let (a, b) = (Pg::open(&p.a.store).unwrap(), Pg::open(&p.b.store).unwrap());
    // While B holds the retention job, A's pass removes nothing from the quarantine.
    let during = b
        .one_at_a_time(Job::Retention, || {
            mukaika::review::retention::run_clustered(&audit, store.as_ref(), 1825, 180, Some(&a))
                .unwrap()
        })
        .unwrap()
        .unwrap();
    assert!(during.quarantine_items.is_empty());
    assert_eq!(store.list().unwrap().len(), 1);
    let after =
        mukaika::review::retention::run_clustered(&audit, store.as_ref(), 1825, 180, Some(&a))
            .unwrap();
    assert_eq!(after.quarantine_items, ["Q0001"]);
    assert!(store.list().unwrap().is_empty());
}

#[test]
fn a_new_quarantine_item_is_announced_to_the_administrators_once_by_the_cluster() {
    let mut p = pair();
    for c in [&mut p.a, &mut p.b] {
        c.notices.admin_to = vec!["security@city.example.lg.jp".into()];
        c.notices.admin_mode = mukaika::config::NoticeMode::Immediate;
    }
    let rt = runtime();
    let node_a = support::start(&rt, p.a.clone(), "test");
    let node_b = support::start(&rt, p.b.clone(), "test");
    // The first pass only sets the shared watermark.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while p.db.psql("SELECT count(*) FROM cluster_state") != "1" {
        assert!(std::time::Instant::now() < deadline, "no watermark");
        std::thread::sleep(Duration::from_millis(100));
    }
    let original = b"From: a@example.com\r\n\r\nheld\r\n";
    // Stamped an hour before the watermark — a node whose clock lags, or an upload that
    // committed late — and announced all the same.
    let item = QuarantineItem {
        at: mukaika::clock::rfc3339_utc(mukaika::clock::now_ms() - 3_600_000),
        ..support::held_mail("Q0001", "malformed", original)
    };
    // Held once, in the shared quarantine both nodes list.
    mukaika::store::quarantine::open_configured(&p.a)
        .unwrap()
        .put(&item, original)
        .unwrap();
    let notices = |data: &Path| {
        std::fs::read_dir(data.join("maildir/new"))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    while notices(&p.a.data.dir) + notices(&p.b.data.dir) == 0 {
        assert!(std::time::Instant::now() < deadline, "never announced");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Both nodes pass again (every ten seconds): nobody announces it a second time.
    std::thread::sleep(Duration::from_secs(12));
    assert_eq!(notices(&p.a.data.dir) + notices(&p.b.data.dir), 1);
    // A PPAP item unlocked on a third node (as its audit copy says) is announced by whichever
    // node holds the notices, once.
    p.db.psql(
        "INSERT INTO audit_records (node, seq, hash, prev, ts, kind, record) VALUES \
         ('node-z', 1, 'h', 'p', '2026-01-01T00:00:00.000Z', 'unlock_delivered', \
          '{\"seq\":1,\"event\":{\"type\":\"unlock_delivered\",\"item_id\":\"Q0077\",\
          \"way\":\"web\",\"verdict\":\"sanitized\",\"destination\":\"maildir\"}}')",
    );
    let texts = |data: &Path| -> Vec<String> {
        std::fs::read_dir(data.join("maildir/new"))
            .map(|d| {
                d.flatten()
                    .map(|e| {
                        let raw = std::fs::read(e.path()).unwrap_or_default();
                        mail_parser::MessageParser::default()
                            .parse(&raw)
                            .and_then(|m| m.body_text(0).map(|t| t.into_owned()))
                            .unwrap_or_default()
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    while notices(&p.a.data.dir) + notices(&p.b.data.dir) < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the unlock was never announced"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let all: Vec<String> = [texts(&p.a.data.dir), texts(&p.b.data.dir)].concat();
    assert_eq!(all.iter().filter(|t| t.contains("Q0077")).count(), 1);
    std::thread::sleep(Duration::from_secs(12));
    assert_eq!(notices(&p.a.data.dir) + notices(&p.b.data.dir), 2);
    rt.block_on(node_a.stop("test"));
    rt.block_on(node_b.stop("test"));
}

/// The outcome of the last `admin_login` record in a node's audit log.
fn last_login_outcome(data: &Path) -> String {
    mukaika::audit::search(&data.join("audit"), &Default::default())
        .unwrap()
        .iter()
        .rev()
        .find(|r| r.event["type"] == "admin_login")
        .map(|r| r.event["outcome"].as_str().unwrap_or("").to_string())
        .unwrap_or_default()
}

#[test]
fn an_address_and_an_unknown_name_get_no_more_attempts_by_spreading_them_over_the_nodes() {
    let mut p = pair();
    for c in [&mut p.a, &mut p.b] {
        c.admin.login_attempts_per_client = 4;
    }
    let rt = runtime();
    let node_a = support::start(&rt, p.a.clone(), "test");
    let node_b = support::start(&rt, p.b.clone(), "test");
    let nodes = [
        (node_a.admin_addr, &p.a.data.dir),
        (node_b.admin_addr, &p.b.data.dir),
    ];
    // Four failures from 127.0.0.1, two on each node: the fifth is throttled, wherever.
    for i in 0..4 {
        let (addr, data) = nodes[i % 2];
        assert_eq!(
            Browser::new(addr).login("nobody", "guess-one-two").status,
            401
        );
        assert_eq!(last_login_outcome(data), "failure", "attempt {i}");
    }
    let (addr, data) = nodes[0];
    assert_eq!(
        Browser::new(addr).login("nobody", "guess-one-two").status,
        401
    );
    assert_eq!(last_login_outcome(data), "throttled");
    rt.block_on(node_a.stop("test"));
    rt.block_on(node_b.stop("test"));

    // With room per address, a name that is no account locks after `lockout_attempts`
    // failures spread over both nodes, as an account would.
    for c in [&mut p.a, &mut p.b] {
        c.admin.login_attempts_per_client = 100;
    }
    p.db.psql("DELETE FROM login_throttle");
    let node_a = support::start(&rt, p.a.clone(), "test");
    let node_b = support::start(&rt, p.b.clone(), "test");
    let nodes = [
        (node_a.admin_addr, &p.a.data.dir),
        (node_b.admin_addr, &p.b.data.dir),
    ];
    for i in 0..5 {
        let (addr, data) = nodes[i % 2];
        assert_eq!(
            Browser::new(addr).login("ghost", "guess-one-two").status,
            401
        );
        let want = if i == 4 { "lockout" } else { "failure" };
        assert_eq!(last_login_outcome(data), want, "attempt {i}");
    }
    let (addr, data) = nodes[1];
    assert_eq!(
        Browser::new(addr).login("ghost", "guess-one-two").status,
        401
    );
    assert_eq!(last_login_outcome(data), "locked");
    rt.block_on(node_a.stop("test"));
    rt.block_on(node_b.stop("test"));
}

#[test]
fn a_step_missing_in_the_middle_of_the_schema_is_refused_and_then_applied() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::new();
    let c = node(dir.path(), &db, "node-a");
    migrate(&c);
    // As if a build without the quarantine step had brought this database up to date.
    db.psql(
        "DROP TABLE quarantine_items, quarantine_chunks, quarantine_blobs; \
         DELETE FROM schema_version WHERE version = 3",
    );
    let rt = runtime();
    let refused = rt
        .block_on(mukaika::service::start(c.clone(), "test", "test"))
        .err()
        .expect("a missing step is refused");
    assert!(refused.to_string().contains("store migrate"), "{refused}");
    migrate(&c);
    assert_eq!(
        db.psql("SELECT count(*) FROM schema_version WHERE version = 3"),
        "1"
    );
    let running = support::start(&rt, c, "test");
    rt.block_on(running.stop("test"));
}
