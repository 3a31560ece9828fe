//! The shared quarantine of a cluster (#21) against a real, private PostgreSQL
//! (support::postgres): items held on one node are listed and read on the other, blobs are
//! content-addressed, deduplicated and stored in chunks whose hash is checked on every read,
//! concurrent put and remove from two processes' pools never leave an item without its blob,
//! and `mukaika store copy` moves a single node's quarantine and accounts into the database.

use crate::support;
use mukaika_fixtures as generate;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mukaika::store::pg_quarantine::{PgQuarantine, CHUNK};
use mukaika::store::postgres::Pg;
use mukaika::store::quarantine::{open_configured, QuarantineItem, QuarantineStore};
use support::postgres::{migrate, Database};
use support::web::{account, Browser, PASSWORD};
use support::{config, runtime, Client};

/// A node's configuration: its own data folder and ports, the shared database.
fn node(data: &Path, db: &Database, name: &str) -> mukaika::config::ServiceConfig {
    let mut c = config(data, "");
    c.audit.node = name.into();
    c.notices.recipients = false;
    db.configure(&mut c);
    c
}

fn item(id: &str, at: &str, body: &[u8]) -> QuarantineItem {
    QuarantineItem {
        at: at.into(),
        name: Some("見積書.zip".into()),
        reason: "encrypted".into(),
        detected_type: Some("zip".into()),
        ..support::held_mail(id, "encrypted", body)
    }
}

/// A store of its own (its own pool and connections), as another node has.
fn own_store(c: &mukaika::config::ServiceConfig, node: &str) -> PgQuarantine {
    PgQuarantine::new(Arc::new(Pg::open(&c.store).unwrap()), node)
}

fn body(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i % 251) as u8 ^ seed.wrapping_mul(31))
        .collect()
}

#[test]
fn a_message_held_via_one_node_is_listed_and_read_on_the_other() {
    let (da, dbd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let db = Database::new();
    let a = node(da.path(), &db, "node-a");
    let b = node(dbd.path(), &db, "node-b");
    migrate(&a);
    let rt = runtime();
    let node_a = support::start(&rt, a.clone(), "test");
    let node_b = support::start(&rt, b.clone(), "test");
    let sent = generate::mail_smime_enveloped();
    let (mut c, greeting) = Client::connect(node_a.smtp_addr);
    assert_eq!(greeting, 220);
    assert_eq!(c.send(b"EHLO client.invalid\r\n"), 250);
    assert_eq!(c.mail("soumu@city.example.invalid", &sent), 250);
    assert_eq!(c.send(b"QUIT\r\n"), 221);
    let on_b = open_configured(&b).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let held = loop {
        let items = on_b.list().unwrap();
        if !items.is_empty() || Instant::now() > deadline {
            break items;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(held.len(), 1, "held once, in the shared store");
    let id = held[0].id.clone();
    // Nothing under A's own data folder: the item is the cluster's.
    assert!(!da.path().join("quarantine/quarantine.db").exists());
    assert_eq!(
        db.psql(&format!(
            "SELECT node FROM quarantine_items WHERE id = '{id}'"
        )),
        "node-a"
    );
    // B's web UI lists it and shows it.
    let mut op = account(&b, node_b.admin_addr, "op1", "operator");
    let list = op.get("/items");
    assert_eq!(list.status, 200);
    assert!(list.text().contains(&id), "{}", list.text());
    // Its audit trail on B is the one A wrote (the cluster's copies), named by node.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let page = loop {
        let page = op.get(&format!("/items/{id}"));
        assert_eq!(page.status, 200);
        let text = page.text();
        if text.contains("node-a") && text.contains("quarantined") {
            break text;
        }
        assert!(std::time::Instant::now() < deadline, "{text}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(page.contains("ノード"), "the node column");
    // The original read through B's store is the one A held, byte for byte.
    let bytes = on_b.bytes(&id).unwrap();
    assert_eq!(
        mukaika_sanitizers::report::sha256_hex(&bytes),
        held[0].sha256
    );
    assert_eq!(bytes.len() as u64, held[0].size);
    assert!(
        bytes.windows(sent.len()).any(|w| w == sent.as_slice()),
        "the message as sent is in the original"
    );
    let on_a = open_configured(&a).unwrap();
    assert!(on_a.bytes(&id).unwrap() == bytes);
    rt.block_on(node_a.stop("test"));
    rt.block_on(node_b.stop("test"));
}

#[test]
fn the_same_bytes_held_twice_are_one_blob_in_chunks_and_go_with_the_last_item() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::new();
    let c = node(dir.path(), &db, "node-a");
    migrate(&c);
    let store = open_configured(&c).unwrap();
    // Two and a half chunks.
    let big = body(CHUNK * 5 / 2, 1);
    store
        .put(&item("B", "2026-01-02T00:00:00.000Z", &big), &big)
        .unwrap();
    let file = dir.path().join("big.bin");
    std::fs::write(&file, &big).unwrap();
    store
        .put_file(
            &item("A", "2026-01-01T00:00:00.000Z", &big),
            &std::fs::File::open(&file).unwrap(),
        )
        .unwrap();
    store
        .put(&item("C", "2026-01-03T00:00:00.000Z", b"other"), b"other")
        .unwrap();
    assert_eq!(db.psql("SELECT count(*) FROM quarantine_blobs"), "2");
    assert_eq!(
        db.psql("SELECT count(*) || ' ' || max(length(data)) FROM quarantine_chunks"),
        format!("4 {CHUNK}"),
        "three chunks for the shared content, one for the other"
    );
    let ids: Vec<String> = store.list().unwrap().into_iter().map(|i| i.id).collect();
    assert_eq!(ids, ["A", "B", "C"], "oldest first");
    let later: Vec<String> = store
        .list_since("2026-01-01T00:00:00.000Z")
        .unwrap()
        .into_iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(later, ["B", "C"]);
    // Held again: the record updates, the first time stays.
    let mut again = item("A", "2026-01-09T00:00:00.000Z", &big);
    again.detail = "retried".into();
    store.put(&again, &big).unwrap();
    let a = store.get("A").unwrap();
    assert_eq!(
        (a.at.as_str(), a.detail.as_str()),
        ("2026-01-01T00:00:00.000Z", "retried")
    );
    assert_eq!(a.rcpt_to, ["staff@city.example.lg.jp"]);
    assert_eq!(a.name.as_deref(), Some("見積書.zip"));
    assert!(store.bytes("A").unwrap() == big);
    // list_since reads the index on `at`.
    let plan = db.psql(
        "SET enable_seqscan = off; EXPLAIN SELECT id FROM quarantine_items \
         WHERE at > '2026-01-01' ORDER BY at, id",
    );
    assert!(plan.contains("quarantine_items_at"), "{plan}");
    // Bytes that are not the item's hash are refused.
    assert!(store
        .put(&item("D", "2026-01-04T00:00:00.000Z", b"one"), b"two")
        .is_err());
    // The shared blob stays until its last item goes.
    store.remove("A").unwrap();
    assert!(store.bytes("B").unwrap() == big);
    store.remove("B").unwrap();
    assert!(store.bytes("B").is_err());
    store.remove("C").unwrap();
    // Held again with other content: the blob nothing refers to any more goes.
    store
        .put(&item("E", "2026-01-05T00:00:00.000Z", b"first"), b"first")
        .unwrap();
    store
        .put(&item("E", "2026-01-05T00:00:00.000Z", b"second"), b"second")
        .unwrap();
    assert_eq!(store.bytes("E").unwrap(), b"second");
    assert_eq!(db.psql("SELECT count(*) FROM quarantine_blobs"), "1");
    store.remove("E").unwrap();
    assert_eq!(
        db.psql("SELECT (SELECT count(*) FROM quarantine_blobs) + (SELECT count(*) FROM quarantine_chunks)"),
        "0"
    );
    assert!(store.remove("nope").is_err());
}

#[test]
fn a_file_changed_after_it_was_checked_is_not_held_under_the_checked_hash() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::new();
    let c = node(dir.path(), &db, "node-a");
    migrate(&c);
    let store = open_configured(&c).unwrap();
    let checked = dir.path().join("checked.bin");
    let held = item("I1", "2026-01-01T00:00:00.000Z", b"checked bytes");
    std::fs::write(&checked, b"other bytes!!").unwrap();
    assert!(store
        .put_file(&held, &std::fs::File::open(&checked).unwrap())
        .is_err());
    assert!(store.get("I1").is_err(), "no record without its blob");
    assert_eq!(db.psql("SELECT count(*) FROM quarantine_blobs"), "0");
}

#[test]
fn concurrent_holds_and_removals_of_the_same_content_on_two_nodes_leave_every_item_readable() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::new();
    let c = node(dir.path(), &db, "node-a");
    migrate(&c);
    // Two nodes' stores, each with its own pool: the locks that matter are the database's.
    let stores = [own_store(&c, "node-a"), own_store(&c, "node-b")];
    let shared = body(100, 7);
    let missing = std::sync::Mutex::new(Vec::new());
    let barrier = std::sync::Barrier::new(6);
    std::thread::scope(|s| {
        for w in 0..6 {
            let (store, missing, shared, barrier) = (&stores[w % 2], &missing, &shared, &barrier);
            s.spawn(move || {
                barrier.wait();
                for i in 0..60 {
                    let id = format!("R{w}-{i}");
                    let held = item(&id, "2026-01-01T00:00:00.000Z", shared);
                    store.put(&held, shared).unwrap();
                    if store.bytes(&id).map(|b| b != *shared).unwrap_or(true) {
                        missing.lock().unwrap().push(id.clone());
                    }
                    // The last of each worker's items stays; before, every removal may find
                    // itself the blob's last holder and drop it while others hold it anew.
                    if i != 59 {
                        store.remove(&id).unwrap();
                    }
                }
            });
        }
    });
    let missing = missing.into_inner().unwrap();
    assert!(missing.is_empty(), "items without their blob: {missing:?}");
    let left = stores[0].list().unwrap();
    assert_eq!(left.len(), 6);
    for i in &left {
        assert!(
            stores[1].bytes(&i.id).unwrap() == shared,
            "{} unreadable",
            i.id
        );
    }
    assert_eq!(db.psql("SELECT count(*) FROM quarantine_blobs"), "1");
    for i in &left {
        stores[(i.id.len()) % 2].remove(&i.id).unwrap();
    }
    assert_eq!(db.psql("SELECT count(*) FROM quarantine_chunks"), "0");
}

#[test]
fn a_chunk_altered_in_the_database_makes_reading_its_item_fail() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::new();
    let c = node(dir.path(), &db, "node-a");
    migrate(&c);
    let store = open_configured(&c).unwrap();
    let big = body(CHUNK + 10, 3);
    store
        .put(&item("X1", "2026-01-01T00:00:00.000Z", &big), &big)
        .unwrap();
    store
        .put(&item("X2", "2026-01-01T00:00:00.000Z", b"small"), b"small")
        .unwrap();
    assert!(store.bytes("X1").unwrap() == big);
    // One byte of the second chunk flipped.
    db.psql("UPDATE quarantine_chunks SET data = set_byte(data, 3, get_byte(data, 3) # 1) WHERE seq = 1");
    let e = store.bytes("X1").unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidData, "{e}");
    // A chunk gone fails too; the other item is unaffected.
    db.psql("DELETE FROM quarantine_chunks WHERE seq = 1");
    assert!(store.bytes("X1").is_err());
    assert_eq!(store.bytes("X2").unwrap(), b"small");
}

#[test]
fn a_cluster_refuses_a_file_quarantine_and_ignores_the_default() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::new();
    let mut c = node(dir.path(), &db, "node-a");
    assert!(
        c.validate().is_ok(),
        "the default (sqlite) is not used, not refused"
    );
    c.quarantine.store = mukaika::config::QuarantineBackend::Files;
    let e = c.validate().unwrap_err().to_string();
    assert!(e.contains("quarantine.store"), "{e}");
    // A single node may still use it.
    let single = config(dir.path(), "");
    let mut single = single;
    single.quarantine.store = mukaika::config::QuarantineBackend::Files;
    assert!(single.validate().is_ok());
}

#[test]
fn store_copy_moves_a_nodes_quarantine_and_accounts_into_the_cluster_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // A node that ran alone: an account, a held message, a release request.
    let single = config(&data, "");
    let rt = runtime();
    let running = support::start(&rt, single.clone(), "test");
    drop(account(&single, running.admin_addr, "op1", "operator"));
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
    let held = support::quarantined(&data, 1);
    assert_eq!(held.len(), 1);
    let id = held[0].id.clone();
    rt.block_on(running.stop("test"));
    let original = mukaika::store::quarantine::open(
        data.join("quarantine"),
        mukaika::config::QuarantineBackend::Sqlite,
    )
    .unwrap()
    .bytes(&id)
    .unwrap();
    rusqlite::Connection::open(data.join("review.db"))
        .unwrap()
        .execute(
            "INSERT INTO requests (id, item_id, requester, target, reason, state, requested_at)
             VALUES ('R0001', ?1, 'op1', 'original', '業務で必要', 'pending', '2026-01-01T00:00:00.000Z')",
            [&id],
        )
        .unwrap();
    // The same node, now pointed at the cluster's database.
    let db = Database::new();
    let file = dir.path().join("mukaika.toml");
    std::fs::write(
        &file,
        format!(
            "[data]\ndir = \"{}\"\n\n[audit]\nnode = \"node-a\"\n\n[store]\nbackend = \"postgres\"\nurl = \"{}\"\n",
            data.display(),
            db.url()
        ),
    )
    .unwrap();
    let copy = || {
        support::mukaika(&[
            "store",
            "copy",
            "--from",
            "sqlite",
            "--to",
            "postgres",
            "--config",
            file.to_str().unwrap(),
        ])
    };
    let mut cluster = config(&data, "");
    db.configure(&mut cluster);
    migrate(&cluster);
    let out = copy();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{out:?}");
    assert!(
        text.contains("quarantine items: 1 copied, 0 already there, 0 failed"),
        "{text}"
    );
    assert!(text.contains("accounts: 1 copied"), "{text}");
    assert!(text.contains("release requests: 1 copied"), "{text}");
    assert!(text.contains("隔離アイテム: 複製 1件"), "{text}");
    // Once more: nothing copied twice.
    let out = copy();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{out:?}");
    assert!(
        text.contains("quarantine items: 0 copied, 1 already there, 0 failed"),
        "{text}"
    );
    assert!(
        text.contains("accounts: 0 copied, 1 already there, 0 differ"),
        "{text}"
    );
    assert!(
        text.contains("release requests: 0 copied, 1 already there"),
        "{text}"
    );
    assert_eq!(db.psql("SELECT count(*) FROM quarantine_items"), "1");
    // Audited in the node's own log, once per run.
    let kinds = support::audit_kinds(&data);
    assert_eq!(
        kinds.iter().filter(|k| *k == "store_copied").count(),
        2,
        "{kinds:?}"
    );
    // Another node of the cluster: the copied account logs in, the item is listed and whole.
    let other = tempfile::tempdir().unwrap();
    let b = node(other.path(), &db, "node-b");
    let node_b = support::start(&rt, b.clone(), "test");
    let mut op = Browser::new(node_b.admin_addr);
    assert_eq!(op.login("op1", PASSWORD).status, 303);
    let list = op.get("/items");
    assert_eq!(list.status, 200);
    assert!(list.text().contains(&id), "{}", list.text());
    assert!(open_configured(&b).unwrap().bytes(&id).unwrap() == original);
    assert_eq!(
        db.psql("SELECT item_id FROM requests WHERE id = 'R0001'"),
        id
    );
    rt.block_on(node_b.stop("test"));
}

#[test]
fn store_copy_reports_an_account_that_differs_and_a_blob_that_does_not_match() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let db = Database::new();
    let mut c = config(&data, "");
    db.configure(&mut c);
    migrate(&c);
    // The node's own quarantine: one good item, one whose blob was altered on disk.
    let local = mukaika::store::quarantine::open(
        data.join("quarantine"),
        mukaika::config::QuarantineBackend::Sqlite,
    )
    .unwrap();
    local
        .put(&item("G1", "2026-01-01T00:00:00.000Z", b"good"), b"good")
        .unwrap();
    let bad = item("B1", "2026-01-01T00:00:00.000Z", b"bad!");
    local.put(&bad, b"bad!").unwrap();
    std::fs::write(data.join("quarantine/blobs").join(&bad.sha256), b"evil").unwrap();
    drop(local);
    // An account of the same name already in the cluster, with another password.
    let conn = rusqlite::Connection::open(data.join("review.db")).unwrap();
    conn.execute_batch(
        "CREATE TABLE users (name TEXT PRIMARY KEY, role TEXT NOT NULL, hash TEXT NOT NULL,
             must_change INTEGER NOT NULL, locked_until INTEGER NOT NULL DEFAULT 0,
             failed INTEGER NOT NULL DEFAULT 0, failed_since_login INTEGER NOT NULL DEFAULT 0,
             last_login_at TEXT, last_login_from TEXT, created_at TEXT NOT NULL);
         INSERT INTO users (name, role, hash, must_change, created_at)
             VALUES ('op1', 'operator', '$argon2id$local', 0, '2026-01-01T00:00:00Z');
         CREATE TABLE requests (id TEXT PRIMARY KEY, item_id TEXT NOT NULL,
             requester TEXT NOT NULL, target TEXT NOT NULL, reason TEXT NOT NULL,
             state TEXT NOT NULL, decided_by TEXT, decision_reason TEXT,
             requested_at TEXT NOT NULL, decided_at TEXT, delivery TEXT);
         INSERT INTO requests (id, item_id, requester, target, reason, state, requested_at)
             VALUES ('R1', 'B1', 'op1', 'original', 'x', 'pending', '2026-01-02T00:00:00Z'),
                    ('R2', 'G1', 'op1', 'original', 'x', 'pending', '2026-01-02T00:00:00Z'),
                    ('R3', 'B1', 'op1', 'original', 'x', 'rejected', '2026-01-01T00:00:00Z');",
    )
    .unwrap();
    drop(conn);
    db.psql(
        "INSERT INTO users (name, role, hash, must_change, created_at)
         VALUES ('op1', 'operator', '$argon2id$cluster', 0, '2026-01-01T00:00:00Z')",
    );
    let report = mukaika::store::copy::sqlite_to_postgres(&c).unwrap();
    assert_eq!(report.items_copied, 1);
    assert_eq!(report.items_failed, ["B1"]);
    assert_eq!(report.users_differing, ["op1"]);
    assert_eq!(report.users_copied, 0);
    assert_eq!(
        db.psql("SELECT hash FROM users WHERE name = 'op1'"),
        "$argon2id$cluster",
        "not overwritten"
    );
    assert_eq!(
        db.psql("SELECT string_agg(id, ',') FROM quarantine_items"),
        "G1"
    );
    // An open request whose item did not make it is left out (the nodes would close it as an
    // orphan); a decided one goes with the record.
    assert_eq!(report.requests_without_item, ["R1"]);
    assert_eq!(
        db.psql("SELECT string_agg(id, ',' ORDER BY id) FROM requests"),
        "R2,R3"
    );
    // The node's data directory is in use while a service runs: no copy beside it.
    let _lock = mukaika::store::lock_data_dir(&c).unwrap();
    assert!(mukaika::store::copy::sqlite_to_postgres(&c).is_err());
}

#[test]
fn store_copy_reads_a_file_quarantine_and_leaves_it_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let db = Database::new();
    let mut c = node(&data, &db, "node-f");
    migrate(&c);
    let local = mukaika::store::quarantine::FsQuarantine::open(data.join("quarantine")).unwrap();
    local
        .put(&item("F1", "2026-01-01T00:00:00.000Z", b"filed"), b"filed")
        .unwrap();
    c.quarantine.store = mukaika::config::QuarantineBackend::Sqlite;
    let report = mukaika::store::copy::sqlite_to_postgres(&c).unwrap();
    assert_eq!((report.items_copied, report.bytes_copied), (1, 5));
    assert_eq!(open_configured(&c).unwrap().bytes("F1").unwrap(), b"filed");
    assert!(
        data.join("quarantine/items/F1.json").exists(),
        "the record stays"
    );
    assert!(!data.join("quarantine/quarantine.db").exists());
}

#[test]
fn mail_with_something_to_hold_waits_in_the_spool_while_the_database_is_away() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::new();
    let mut c = node(dir.path(), &db, "node-a");
    c.delivery.first_retry_secs = 1;
    c.delivery.max_retry_secs = 2;
    migrate(&c);
    let rt = runtime();
    let running = support::start(&rt, c.clone(), "test");
    let delivered = || {
        std::fs::read_dir(dir.path().join("maildir/new"))
            .map(|d| d.count())
            .unwrap_or(0)
    };
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
    let with_program = b"From: sender@example.com\r\nTo: soumu@city.example.invalid\r\n\
        Subject: program\r\nMIME-Version: 1.0\r\n\
        Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
        --b\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nsee the tool\r\n\
        --b\r\nContent-Type: application/octet-stream; name=\"tool.exe\"\r\n\
        Content-Disposition: attachment; filename=\"tool.exe\"\r\n\
        Content-Transfer-Encoding: base64\r\n\r\nTVqQAAMAAAA=\r\n--b--\r\n";
    let clean = b"From: sender@example.com\r\nTo: soumu@city.example.invalid\r\n\
        Subject: plain\r\n\r\njust text\r\n";
    let (mut smtp, greeting) = Client::connect(running.smtp_addr);
    assert_eq!(greeting, 220);
    assert_eq!(smtp.send(b"EHLO client.invalid\r\n"), 250);
    // Both accepted: the spool, not the database, is what a 250 answers for.
    assert_eq!(smtp.mail("soumu@city.example.invalid", with_program), 250);
    assert_eq!(smtp.mail("soumu@city.example.invalid", clean), 250);
    assert_eq!(smtp.send(b"QUIT\r\n"), 221);
    // The clean one goes on; the one with a program to hold waits (no quarantine to hold it in).
    let deadline = Instant::now() + Duration::from_secs(20);
    while delivered() < 1 {
        assert!(
            Instant::now() < deadline,
            "the clean message was not delivered"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        delivered(),
        1,
        "nothing else went out while the database was away"
    );
    admin(&format!(
        "ALTER DATABASE {} ALLOW_CONNECTIONS true",
        db.name
    ));
    // Back: held in the shared quarantine, and the rest delivered, once each.
    let deadline = Instant::now() + Duration::from_secs(40);
    while delivered() < 2 {
        assert!(Instant::now() < deadline, "the held message never went out");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        db.psql("SELECT count(*) || ' ' || min(name) FROM quarantine_items"),
        "1 tool.exe"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(delivered(), 2);
    rt.block_on(running.stop("test"));
}
