//! The quarantine review UI over real HTTP: accounts and sessions, CSRF, role checks on every
//! route, the two-person release, escaping of hostile content, downloads, notices, HTTPS, and
//! the CLI's parity with the UI.

use crate::support;
use mukaika_fixtures as generate;

use std::path::Path;
use std::time::{Duration, Instant};

use mukaika::store::quarantine::QuarantineItem;
use support::web::{account, add_user, Browser, PASSWORD};
use support::{config, runtime};

/// Puts an item straight into the service's quarantine store.
fn seed(data: &Path, id: &str, name: Option<&str>, reason: &str, subject: &str, bytes: &[u8]) {
    let item = QuarantineItem {
        origin_id: "Q0001".into(),
        name: name.map(str::to_string),
        report: serde_json::json!({"verdict": "quarantined", "findings": [subject]}),
        subject: Some(subject.into()),
        detected_type: Some(
            if name.is_some() {
                "zip"
            } else {
                "message/rfc822"
            }
            .into(),
        ),
        ..support::held_mail(id, reason, bytes)
    };
    support::hold(data, &item, bytes);
}

fn maildir_files(data: &Path) -> Vec<Vec<u8>> {
    std::fs::read_dir(data.join("maildir/new"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| std::fs::read(e.path()).unwrap())
                .collect()
        })
        .unwrap_or_default()
}

fn audit_types(data: &Path) -> Vec<String> {
    support::audit_kinds(data)
}

#[test]
fn no_account_exists_until_made_and_a_one_time_password_must_be_changed_first() {
    let data = tempfile::tempdir().unwrap();
    let c = config(data.path(), "");
    let rt = runtime();
    let running = support::start(&rt, c.clone(), "test");
    let addr = running.admin_addr;

    let mut b = Browser::new(addr);
    assert_eq!(b.get("/").status, 303, "no session: to the login page");
    for guess in [
        ("admin", "admin"),
        ("root", "password"),
        ("mukaika", "mukaika"),
    ] {
        let r = b.login(guess.0, guess.1);
        assert_eq!(r.status, 401, "no default account may exist");
    }
    let one_time = add_user(&c, "yamada", "operator");
    assert_eq!(one_time.len(), 16);
    let r = b.login("yamada", &one_time);
    assert_eq!(r.header("location"), Some("/password"));
    // Nothing else is shown until the password is changed.
    assert_eq!(b.get("/items").header("location"), Some("/password"));
    let token = b.get("/password").csrf();
    let weak = b.post(
        "/password",
        &[
            ("csrf", &token),
            ("old", &one_time),
            ("new", "short"),
            ("again", "short"),
        ],
    );
    assert!(weak.text().contains("12 文字以上"), "{}", weak.text());
    let r = b.post(
        "/password",
        &[
            ("csrf", &token),
            ("old", &one_time),
            ("new", "a-much-longer-secret"),
            ("again", "a-much-longer-secret"),
        ],
    );
    assert_eq!(r.header("location"), Some("/?done=password"));
    let dash = b.get("/").text();
    assert!(dash.contains("初めてのログインです"), "{dash}");

    // The one-time password is spent; the new one works, and the next login names this one.
    let mut again = Browser::new(addr);
    assert_eq!(again.login("yamada", &one_time).status, 401);
    assert_eq!(again.login("yamada", "a-much-longer-secret").status, 303);
    let dash = again.get("/").text();
    assert!(
        dash.contains("前回のログイン:") && dash.contains("127.0.0.1"),
        "{dash}"
    );

    // Logout ends the session.
    let token = again.token();
    assert_eq!(again.post("/logout", &[("csrf", &token)]).status, 303);
    assert_eq!(again.get("/").header("location"), Some("/login"));
    rt.block_on(running.stop("test"));
    let kinds = audit_types(data.path());
    assert!(kinds.iter().filter(|k| *k == "admin_login").count() >= 5);
    assert!(kinds.contains(&"user_changed".to_string()));
}

#[test]
fn forms_without_the_session_token_are_refused() {
    let data = tempfile::tempdir().unwrap();
    let c = config(data.path(), "");
    seed(
        data.path(),
        "Q0001-1",
        Some("a.zip"),
        "encrypted",
        "s",
        b"PK",
    );
    let rt = runtime();
    let running = support::start(&rt, c.clone(), "test");
    let mut op = account(&c, running.admin_addr, "op1", "operator");
    let form = [("target", "original"), ("reason", "業務で必要")];
    let r = op.post("/items/Q0001-1/request", &form);
    assert_eq!(r.status, 403, "no token");
    let mut forged = form.to_vec();
    forged.push(("csrf", "0000"));
    assert_eq!(op.post("/items/Q0001-1/request", &forged).status, 403);
    // A login form posted without the cookie its token is bound to fails too.
    let mut other = Browser::new(running.admin_addr);
    let r = other.post(
        "/login",
        &[("csrf", "abcd"), ("name", "op1"), ("password", PASSWORD)],
    );
    assert_eq!(r.status, 401);
    assert!(!other.cookies.contains_key("mukaika_session"));
    // With the token it goes through.
    let token = op.token();
    let mut good = form.to_vec();
    good.push(("csrf", &token));
    assert_eq!(op.post("/items/Q0001-1/request", &good).status, 303);
    rt.block_on(running.stop("test"));
}

#[test]
fn every_route_checks_its_role() {
    let data = tempfile::tempdir().unwrap();
    let c = config(data.path(), "");
    seed(
        data.path(),
        "Q0001-1",
        Some("a.zip"),
        "encrypted",
        "s",
        b"PK",
    );
    let rt = runtime();
    let running = support::start(&rt, c.clone(), "test");
    let addr = running.admin_addr;
    let mut auditor = account(&c, addr, "kansa", "auditor");
    let mut op = account(&c, addr, "op1", "operator");
    let mut ap = account(&c, addr, "ap1", "approver");
    let mut admin = account(&c, addr, "kanri", "admin");

    // Reading is open to every role.
    for b in [&mut auditor, &mut op, &mut ap, &mut admin] {
        assert_eq!(b.get("/items").status, 200);
        assert_eq!(b.get("/items/Q0001-1").status, 200);
        assert_eq!(b.get("/requests").status, 200);
    }
    // Acting is not.
    let t = auditor.token();
    let request = |t: &str| {
        vec![
            ("csrf".to_string(), t.to_string()),
            ("target".into(), "original".into()),
            ("reason".into(), "need".into()),
        ]
    };
    let post = |b: &mut Browser, path: &str, form: Vec<(String, String)>| {
        let f: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        b.post(path, &f).status
    };
    assert_eq!(
        post(&mut auditor, "/items/Q0001-1/request", request(&t)),
        403
    );
    assert_eq!(
        post(&mut auditor, "/items/Q0001-1/original", request(&t)),
        403
    );
    assert_eq!(
        post(&mut auditor, "/items/Q0001-1/delete", request(&t)),
        403
    );
    assert_eq!(auditor.get("/users").status, 403);
    assert_eq!(auditor.get("/audit").status, 200);
    let t = ap.token();
    assert_eq!(post(&mut ap, "/items/Q0001-1/request", request(&t)), 403);
    assert_eq!(ap.get("/audit").status, 403);
    let t = op.token();
    assert_eq!(post(&mut op, "/items/Q0001-1/original", request(&t)), 403);
    assert_eq!(post(&mut op, "/items/Q0001-1/delete", request(&t)), 403);
    assert_eq!(
        post(
            &mut op,
            "/users",
            vec![
                ("csrf".into(), t.clone()),
                ("name".into(), "x".into()),
                ("role_admin".into(), "1".into())
            ]
        ),
        403
    );
    assert_eq!(op.get("/users").status, 403);
    assert_eq!(post(&mut op, "/items/Q0001-1/request", request(&t)), 303);
    let rid = mukaika::review::read_requests(data.path(), None).unwrap()[0]
        .id
        .clone();
    assert_eq!(
        post(&mut op, &format!("/requests/{rid}/approve"), request(&t)),
        403
    );
    // The bulk forms and the downloads follow the same roles.
    let bulk = |t: &str, action: &str, pick: &str| {
        vec![
            ("csrf".to_string(), t.to_string()),
            ("action".into(), action.into()),
            ("reason".into(), "need".into()),
            (pick.into(), "1".into()),
        ]
    };
    assert_eq!(
        post(
            &mut op,
            "/requests/bulk",
            bulk(&t, "approve", &format!("sel-{rid}"))
        ),
        403
    );
    let ta = auditor.token();
    for action in ["request", "delete"] {
        assert_eq!(
            post(
                &mut auditor,
                "/items/bulk",
                bulk(&ta, action, "sel-Q0001-1")
            ),
            403
        );
    }
    let tp = ap.token();
    assert_eq!(
        post(&mut ap, "/items/bulk", bulk(&tp, "request", "sel-Q0001-1")),
        403
    );
    assert_eq!(
        post(&mut ap, "/items/bulk", bulk(&tp, "launch", "sel-Q0001-1")),
        404
    );
    assert_eq!(auditor.get("/items.csv").status, 200);
    assert_eq!(auditor.get("/audit.csv?user=op1").status, 200);
    assert_eq!(op.get("/audit.csv?user=op1").status, 403);
    assert_eq!(ap.get("/audit.csv?user=op1").status, 403);
    let t = admin.token();
    assert_eq!(
        post(&mut admin, &format!("/requests/{rid}/approve"), request(&t)),
        403
    );
    assert_eq!(admin.get("/users").status, 200);
    // Admin makes an account in the UI and sees its one-time password once.
    let page = admin.post(
        "/users",
        &[
            ("csrf", &t),
            ("name", "suzuki"),
            ("role_operator", "1"),
            ("role_approver", "1"),
        ],
    );
    assert_eq!(page.status, 200);
    assert!(page.text().contains("一時パスワード"), "{}", page.text());
    let users = mukaika::review::list_users_at(data.path()).unwrap();
    let suzuki = users.iter().find(|u| u.name == "suzuki").unwrap();
    assert_eq!(
        suzuki.roles,
        [
            mukaika::review::Role::Operator,
            mukaika::review::Role::Approver
        ]
    );
    assert!(suzuki.must_change);
    rt.block_on(running.stop("test"));
}

#[test]
fn a_release_needs_a_second_person_and_arrives_with_who_decided() {
    let data = tempfile::tempdir().unwrap();
    let mut c = config(data.path(), "");
    c.notices.recipients = false;
    let original = b"From: sender@example.com\r\nTo: staff@city.example.lg.jp\r\nSubject: held\r\n\r\nbody\r\n";
    seed(data.path(), "Q0001", None, "malformed", "held", original);
    let rt = runtime();
    let running = support::start(&rt, c.clone(), "test");
    let addr = running.admin_addr;
    // One person holding both roles: may ask, may approve others, never their own.
    let mut both = account(&c, addr, "sato", "operator,approver");
    let mut ap = account(&c, addr, "ap1", "approver");
    let t = both.token();
    let r = both.post(
        "/items/Q0001/request",
        &[
            ("csrf", &t),
            ("target", "original"),
            ("reason", "取引先からの正規の請求書"),
        ],
    );
    assert_eq!(r.status, 303);
    let rid = mukaika::review::read_requests(data.path(), None).unwrap()[0]
        .id
        .clone();
    let detail = both.get("/items/Q0001").text();
    assert!(detail.contains("自分の申請は承認できません"), "{detail}");
    // The reason in words staff read; the technical detail on a row of its own.
    assert!(
        detail.contains("メールの構造が壊れているか") && detail.contains("技術的な詳細"),
        "{detail}"
    );
    let r = both.post(
        &format!("/requests/{rid}/approve"),
        &[("csrf", &t), ("reason", "自分で承認")],
    );
    assert_eq!(r.status, 403);
    assert!(r.text().contains("兼務の禁止"), "{}", r.text());
    // A second request for the same item is refused while one is open.
    let r = both.post(
        "/items/Q0001/request",
        &[("csrf", &t), ("target", "original"), ("reason", "again")],
    );
    assert_eq!(r.status, 400);
    assert!(
        maildir_files(data.path()).is_empty(),
        "nothing released yet"
    );

    let t = ap.token();
    let r = ap.post(
        &format!("/requests/{rid}/approve"),
        &[("csrf", &t), ("reason", "内容を確認した")],
    );
    assert_eq!(r.status, 303, "{}", r.text());
    let files = maildir_files(data.path());
    assert_eq!(files.len(), 1);
    let text = String::from_utf8_lossy(&files[0]).into_owned();
    assert!(
        text.starts_with(&format!(
            "X-Mukaika-Released: item=Q0001; request={rid}; requester=sato; approver=ap1\r\n"
        )),
        "{text}"
    );
    assert!(text.ends_with("Subject: held\r\n\r\nbody\r\n"));
    let page = ap.get("/items/Q0001").text();
    assert!(page.contains("解除済み"), "{page}");
    // The item's audit trail on its page names every step.
    for step in ["release_requested", "release_approved", "release_delivered"] {
        assert!(page.contains(step), "{step} missing from the trail");
    }
    // Approving twice does nothing more: the request was decided already (409).
    assert_eq!(
        ap.post(
            &format!("/requests/{rid}/approve"),
            &[("csrf", &t), ("reason", "x")]
        )
        .status,
        409
    );
    rt.block_on(running.stop("test"));
    let kinds = audit_types(data.path());
    for k in ["release_requested", "release_approved", "release_delivered"] {
        assert_eq!(
            kinds.iter().filter(|x| *x == k).count(),
            1,
            "{k}: {kinds:?}"
        );
    }
    // The refused self-approval left no approval record.
    let records = mukaika::audit::search(&data.path().join("audit"), &Default::default()).unwrap();
    let approved = records
        .iter()
        .find(|r| r.event["type"] == "release_approved")
        .unwrap();
    assert_eq!(approved.event["by"], "ap1");
}

#[test]
fn hostile_names_subjects_and_headers_render_escaped() {
    let data = tempfile::tempdir().unwrap();
    let c = config(data.path(), "");
    let long = format!(
        "\"><img src=x onerror=alert(1)>{}\u{202E}gnp.exe",
        "長".repeat(3500)
    );
    seed(
        data.path(),
        "Q0001-1",
        Some(&long),
        "encrypted",
        "<script>alert('s')</script>",
        b"\x00\x01<script>x</script>",
    );
    let message = "From: \"<script>alert(1)</script>\" <evil@example.com>\r\nSubject: =?UTF-8?B?PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==?=\r\nContent-Type: text/html\r\n\r\n<html><body><img src=x onerror=alert(2)><a href=\"javascript:alert(3)\">x</a></body></html>\r\n";
    seed(
        data.path(),
        "Q0002",
        None,
        "malformed",
        "<b>bold</b>",
        message.as_bytes(),
    );
    let rt = runtime();
    let running = support::start(&rt, c.clone(), "test");
    let mut b = account(&c, running.admin_addr, "kansa", "auditor,approver");
    for path in ["/items", "/items/Q0001-1", "/items/Q0002", "/"] {
        let page = b.get(path);
        assert_eq!(page.status, 200, "{path}");
        let text = page.text();
        for raw in ["<script", "<img", "<b>bold", "href=\"javascript:"] {
            assert!(!text.contains(raw), "{path} carries {raw:?} unescaped");
        }
        assert!(
            !text.contains('\u{202E}'),
            "{path} passes a bidi override through"
        );
    }
    let detail = b.get("/items/Q0001-1").text();
    assert!(
        detail.contains("&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"),
        "escaped, not dropped"
    );
    assert!(detail.contains("[U+202E]gnp.exe"));
    assert!(detail.contains("&lt;script&gt;alert(&#39;s&#39;)&lt;/script&gt;"));
    let list = b.get("/items").text();
    assert!(list.contains('…'), "10 KB names are cut in the list");
    let message_view = b.get("/items/Q0002").text();
    assert!(
        message_view.contains("Subject: &lt;script&gt;alert(1)&lt;/script&gt;"),
        "decoded header shown as text"
    );
    assert!(
        message_view.contains("&lt;img src=x onerror=alert(2)&gt;"),
        "HTML body shown as text"
    );
    // Search terms come back escaped too.
    let search = b.get("/items?q=%3Cscript%3E&sender=%22%3E%3Cimg").text();
    assert!(!search.contains("<script>") && !search.contains("\"><img"));
    rt.block_on(running.stop("test"));
}

#[test]
fn path_like_ids_are_rejected_before_any_store_is_asked() {
    let data = tempfile::tempdir().unwrap();
    let c = config(data.path(), "");
    let rt = runtime();
    let running = support::start(&rt, c.clone(), "test");
    let mut b = account(&c, running.admin_addr, "ap1", "approver");
    for id in [
        "..%2F..%2Fetc%2Fpasswd",
        "%2e%2e",
        "a%00b",
        "x.json",
        &"A".repeat(65),
    ] {
        let r = b.get(&format!("/items/{id}"));
        assert_eq!(r.status, 400, "{id}");
    }
    let t = b.token();
    let r = b.post("/items/..%2Fquarantine.db/original", &[("csrf", &t)]);
    assert_eq!(r.status, 400);
    assert_eq!(b.get("/items/NOSUCH").status, 404);
    rt.block_on(running.stop("test"));
}

#[test]
fn an_approver_downloads_an_original_as_an_attachment_and_it_is_audited() {
    let data = tempfile::tempdir().unwrap();
    let c = config(data.path(), "");
    seed(
        data.path(),
        "Q0001-1",
        Some("../見積\"書\r\n.zip"),
        "encrypted",
        "s",
        b"PK\x03\x04secret",
    );
    let rt = runtime();
    let running = support::start(&rt, c.clone(), "test");
    let mut ap = account(&c, running.admin_addr, "ap1", "approver");
    let t = ap.token();
    let r = ap.post("/items/Q0001-1/original", &[("csrf", &t)]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"PK\x03\x04secret");
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    let disposition = r.header("content-disposition").unwrap();
    assert!(
        disposition.starts_with("attachment; filename=\""),
        "{disposition}"
    );
    assert!(!disposition.contains(".."), "{disposition}");
    assert!(
        !disposition.contains("\r") && !disposition[22..].contains("\"\""),
        "{disposition}"
    );
    assert!(disposition.contains("filename*=UTF-8''"), "{disposition}");
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    rt.block_on(running.stop("test"));
    let records = mukaika::audit::search(&data.path().join("audit"), &Default::default()).unwrap();
    let dl = records
        .iter()
        .find(|r| r.event["type"] == "original_downloaded")
        .unwrap();
    assert_eq!(dl.event["by"], "ap1");
    assert_eq!(dl.event["item_id"], "Q0001-1");
}

#[test]
fn accounts_lock_after_repeated_failures_and_the_next_login_reports_them() {
    let data = tempfile::tempdir().unwrap();
    let c = config(data.path(), "").clone();
    let mut c = c;
    c.admin.lockout_attempts = 3;
    let rt = runtime();
    let running = support::start(&rt, c.clone(), "test");
    let addr = running.admin_addr;
    let b = account(&c, addr, "op1", "operator");
    drop(b);
    let mut guest = Browser::new(addr);
    for _ in 0..3 {
        assert_eq!(guest.login("op1", "wrong-password").status, 401);
    }
    let r = guest.login("op1", PASSWORD);
    assert_eq!(r.status, 401, "locked even with the right password");
    assert!(r.text().contains("ロックされています"), "{}", r.text());
    // An administrator unlocks it from the command line.
    let reply = mukaika::admin::control::run(
        &c,
        mukaika::admin::control::Op::UserUnlock { name: "op1".into() },
    )
    .unwrap();
    assert!(reply.ok);
    assert_eq!(guest.login("op1", PASSWORD).status, 303);
    let dash = guest.get("/").text();
    assert!(dash.contains("その後のログイン失敗: 4 回"), "{dash}");
    rt.block_on(running.stop("test"));
    let outcomes: Vec<String> =
        mukaika::audit::search(&data.path().join("audit"), &Default::default())
            .unwrap()
            .iter()
            .filter(|r| r.event["type"] == "admin_login")
            .map(|r| r.event["outcome"].as_str().unwrap().to_string())
            .collect();
    assert!(outcomes.contains(&"lockout".to_string()), "{outcomes:?}");
    assert!(outcomes.contains(&"locked".to_string()), "{outcomes:?}");
}

#[test]
fn a_password_reset_or_change_ends_the_other_sessions_of_that_account() {
    let data = tempfile::tempdir().unwrap();
    let c = config(data.path(), "");
    let rt = runtime();
    let running = support::start(&rt, c.clone(), "test");
    let addr = running.admin_addr;
    let mut first = account(&c, addr, "op1", "operator");
    let mut bystander = account(&c, addr, "op2", "operator");
    let mut second = Browser::new(addr);
    assert_eq!(second.login("op1", PASSWORD).status, 303);
    assert_eq!(second.get("/").status, 200);

    // Changing the password keeps the session that did it and ends the other one.
    let token = first.get("/password").csrf();
    let new = "another-long-secret-2";
    let r = first.post(
        "/password",
        &[
            ("csrf", &token),
            ("old", PASSWORD),
            ("new", new),
            ("again", new),
        ],
    );
    assert_eq!(r.header("location"), Some("/?done=password"));
    assert_eq!(
        first.get("/").status,
        200,
        "the changing session carries on"
    );
    assert_eq!(second.get("/").header("location"), Some("/login"));
    assert_eq!(second.login("op1", PASSWORD).status, 401, "old password");

    // An administrator's reset (here from the command line, through the running service)
    // ends it too; someone else's session is untouched.
    let reply = mukaika::admin::control::run(
        &c,
        mukaika::admin::control::Op::UserReset { name: "op1".into() },
    )
    .unwrap();
    assert!(reply.ok);
    assert_eq!(first.get("/").header("location"), Some("/login"));
    assert_eq!(bystander.get("/").status, 200);
    rt.block_on(running.stop("test"));
}

/// One GET with a chosen Host header: the status code.
fn get_as_host(addr: std::net::SocketAddr, path: &str, host: &str) -> u16 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    raw.split(' ').nth(1).unwrap().parse().unwrap()
}

#[test]
fn requests_for_other_host_names_are_refused_against_dns_rebinding() {
    let data = tempfile::tempdir().unwrap();
    let mut c = config(data.path(), "");
    c.admin.hostnames = vec!["mukaika-admin.city.example.lg.jp".into()];
    let rt = runtime();
    let running = support::start(&rt, c.clone(), "test");
    let addr = running.admin_addr;
    let port = addr.port();
    for path in ["/login", "/metrics", "/healthz", "/"] {
        assert_eq!(
            get_as_host(addr, path, &format!("rebind.attacker.example:{port}")),
            421,
            "{path}"
        );
    }
    assert_eq!(
        get_as_host(addr, "/login", &format!("127.0.0.1:{port}")),
        200
    );
    assert_eq!(
        get_as_host(
            addr,
            "/metrics",
            &format!("mukaika-admin.city.example.lg.jp:{port}")
        ),
        200
    );
    rt.block_on(running.stop("test"));
}

#[test]
fn idle_sessions_end_and_every_answer_carries_the_security_headers() {
    let data = tempfile::tempdir().unwrap();
    let mut c = config(data.path(), "");
    c.admin.session_idle_secs = 1;
    let rt = runtime();
    let running = support::start(&rt, c.clone(), "test");
    let mut b = account(&c, running.admin_addr, "op1", "operator");
    let session = b.cookies.get("mukaika_session").cloned().unwrap();
    assert_eq!(b.get("/").status, 200);
    std::thread::sleep(Duration::from_millis(1300));
    let r = b.get("/items");
    assert_eq!(r.header("location"), Some("/login?expired=1"));
    assert!(b
        .get("/login?expired=1")
        .text()
        .contains("ログアウトしました"));
    b.cookies.insert("mukaika_session".into(), session);
    assert_eq!(
        b.get("/").header("location"),
        Some("/login"),
        "the old token is gone"
    );

    for path in ["/login", "/", "/static/style.css", "/metrics"] {
        let r = Browser::new(running.admin_addr).get(path);
        let csp = r.header("content-security-policy").unwrap_or_default();
        assert!(
            csp.contains("default-src 'none'") && !csp.contains("unsafe-inline"),
            "{path}: {csp}"
        );
        assert!(csp.contains("frame-ancestors 'none'"), "{path}");
        assert_eq!(
            r.header("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(r.header("x-frame-options"), Some("DENY"), "{path}");
    }
    let login = Browser::new(running.admin_addr).get("/login");
    let cookie = login.header("set-cookie").unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(!login.text().contains("<script"), "no script at all");
    rt.block_on(running.stop("test"));
}

#[test]
fn the_ui_speaks_english_on_request() {
    let data = tempfile::tempdir().unwrap();
    let c = config(data.path(), "");
    let rt = runtime();
    let running = support::start(&rt, c.clone(), "test");
    let mut b = Browser::new(running.admin_addr);
    assert!(b.get("/login").text().contains("ログイン"));
    assert_eq!(b.get("/lang/en").status, 303);
    let page = b.get("/login").text();
    assert!(
        page.contains("Log in") && page.contains("lang=\"en\""),
        "{page}"
    );
    rt.block_on(running.stop("test"));
}

#[test]
fn items_held_for_a_virus_are_never_released() {
    let data = tempfile::tempdir().unwrap();
    let c = config(data.path(), "");
    seed(
        data.path(),
        "Q0001-1",
        Some("eicar.com"),
        "virus",
        "s",
        b"X5O!",
    );
    let rt = runtime();
    let running = support::start(&rt, c.clone(), "test");
    let mut op = account(&c, running.admin_addr, "op1", "operator");
    let page = op.get("/items/Q0001-1").text();
    assert!(
        page.contains("解除できません") && !page.contains("/items/Q0001-1/request"),
        "{page}"
    );
    let t = op.token();
    let r = op.post(
        "/items/Q0001-1/request",
        &[("csrf", &t), ("target", "original"), ("reason", "please")],
    );
    assert_eq!(r.status, 403);
    rt.block_on(running.stop("test"));
}

#[test]
fn quarantine_notices_reach_the_recipients_and_the_administrators() {
    let data = tempfile::tempdir().unwrap();
    let mut c = config(data.path(), "");
    c.notices.admin_to = vec!["security@city.example.lg.jp".into()];
    c.notices.contact = "情報政策課（内線 1234）".into();
    c.admin.public_url = Some("https://mukaika-admin.city.example.lg.jp".into());
    let rt = runtime();
    let running = support::start(&rt, c.clone(), "test");
    let (mut smtp, _) = support::Client::connect(running.smtp_addr);
    assert_eq!(smtp.send(b"EHLO client.invalid\r\n"), 250);
    // An encrypted ZIP (PPAP) cannot be made safe: the attachment is held.
    assert_eq!(
        smtp.mail("staff@city.example.lg.jp", &generate::mail_ppap()),
        250
    );
    let items = support::quarantined(data.path(), 1);
    assert_eq!(items.len(), 1);
    let id = items[0].id.clone();
    assert_eq!(items[0].rcpt_to, ["staff@city.example.lg.jp"]);
    assert_eq!(items[0].subject.as_deref(), Some("PPAP"));

    let deadline = Instant::now() + Duration::from_secs(40);
    let (mut recipient_notice, mut admin_notice) = (None, None);
    while Instant::now() < deadline && (recipient_notice.is_none() || admin_notice.is_none()) {
        for f in maildir_files(data.path()) {
            let parsed = mail_parser::MessageParser::default().parse(&f).unwrap();
            let subject = parsed.subject().unwrap_or("").to_string();
            if subject.starts_with("【隔離のお知らせ】") {
                recipient_notice = Some(parsed.body_text(0).unwrap().into_owned());
            } else if subject.starts_with("[mukaika] 隔離") {
                admin_notice = Some(parsed.body_text(0).unwrap().into_owned());
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let notice = recipient_notice.expect("a notice to the recipient");
    assert!(notice.contains(&format!("隔離ID: {id}")), "{notice}");
    assert!(
        notice.contains("見積書.zip") && notice.contains("情報政策課（内線 1234）"),
        "{notice}"
    );
    assert!(
        notice.contains("sender@example.invalid") && notice.contains("件名: PPAP"),
        "{notice}"
    );
    let admin = admin_notice.expect("an administrators' notice");
    assert!(
        admin.contains(&id) && admin.contains("staff@city.example.lg.jp"),
        "{admin}"
    );
    assert!(
        admin.contains(&format!(
            "https://mukaika-admin.city.example.lg.jp/items/{id}"
        )),
        "each item links to its page ([admin] public_url): {admin}"
    );
    rt.block_on(running.stop("test"));
    assert!(audit_types(data.path()).contains(&"notice_sent".to_string()));
}

#[test]
fn the_admin_ui_serves_https_with_secure_cookies() {
    let data = tempfile::tempdir().unwrap();
    let (cert, cert_path, key_path) = support::localhost_cert(data.path());
    let mut c = config(data.path(), "");
    c.admin.tls_cert_file = Some(cert_path);
    c.admin.tls_key_file = Some(key_path);
    let rt = runtime();
    let running = support::start(&rt, c.clone(), "test");
    let one_time = add_user(&c, "op1", "operator");
    let mut b = Browser::tls(running.admin_addr, cert.cert.der().clone());
    let r = b.login("op1", &one_time);
    assert_eq!(r.status, 303);
    let session = r
        .headers_named("set-cookie")
        .into_iter()
        .find(|c| c.starts_with("__Host-mukaika_session="))
        .expect("a __Host- session cookie");
    assert!(
        session.contains("Secure")
            && session.contains("HttpOnly")
            && session.contains("SameSite=Strict")
    );
    assert_eq!(b.get("/password").status, 200);
    // Plain HTTP gets nothing from a TLS listener.
    let plain = std::net::TcpStream::connect(running.admin_addr).and_then(|mut s| {
        use std::io::{Read, Write};
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.write_all(b"GET /login HTTP/1.1\r\nHost: x\r\n\r\n")?;
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        Ok(buf)
    });
    assert!(!String::from_utf8_lossy(&plain.unwrap_or_default()).contains("200 OK"));
    rt.block_on(running.stop("test"));
}

#[test]
fn the_two_person_rule_cannot_be_faked_from_one_shell() {
    // One shell, one person: request as yamada, approve as tanaka. Each action must prove it
    // is the account it names, with that account's own password (対策基準 2(9) 兼務の禁止).
    let data = tempfile::tempdir().unwrap();
    let conf_path = data.path().join("mukaika.toml");
    std::fs::write(&conf_path, support::config_text(data.path(), "127.0.0.1:0")).unwrap();
    let conf = conf_path.to_str().unwrap();
    let original = b"Subject: held\r\n\r\nbody\r\n";
    seed(data.path(), "Q0001", None, "malformed", "held", original);
    let yamada = support::cli_account(conf, data.path(), "yamada", "operator");
    let tanaka = support::cli_account(conf, data.path(), "tanaka", "approver");
    let (yamada, tanaka) = (yamada.to_str().unwrap(), tanaka.to_str().unwrap());
    let request = |user: &str, pw: Option<&str>| {
        let mut args = vec![
            "quarantine",
            "request-release",
            "Q0001",
            "--user",
            user,
            "--reason",
            "取引先に確認済み",
            "--config",
            conf,
        ];
        if let Some(pw) = pw {
            args.extend(["--password-file", pw]);
        }
        support::mukaika(&args)
    };
    // No proof at all: refused before anything is asked of the service.
    assert_eq!(request("yamada", None).status.code(), Some(2));
    // Someone else's password: refused as unauthenticated, nothing requested.
    let out = request("yamada", Some(tanaka));
    assert_eq!(
        out.status.code(),
        Some(77),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("authentication failed"));
    assert!(mukaika::review::read_requests(data.path(), None)
        .unwrap()
        .is_empty());
    // yamada's own password: requested.
    let out = request("yamada", Some(yamada));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rid = mukaika::review::read_requests(data.path(), None).unwrap()[0]
        .id
        .clone();
    let approve = |user: &str, pw: &str| {
        support::mukaika(&[
            "quarantine",
            "approve",
            &rid,
            "--user",
            user,
            "--password-file",
            pw,
            "--reason",
            "ok",
            "--config",
            conf,
        ])
    };
    // The same shell approving as tanaka with yamada's password: refused, still pending.
    let out = approve("tanaka", yamada);
    assert_eq!(out.status.code(), Some(77));
    assert_eq!(
        mukaika::review::read_requests(data.path(), Some(mukaika::review::RequestState::Pending))
            .unwrap()
            .len(),
        1
    );
    assert!(maildir_files(data.path()).is_empty());
    // tanaka's own password: approved and delivered.
    let out = approve("tanaka", tanaka);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(maildir_files(data.path()).len(), 1);
    // Every check is in the audit log as a login from the command line, with the OS user and
    // the process, and the failures say so.
    let logins: Vec<(String, String, String)> = mukaika::audit::search(
        &data.path().join("audit"),
        &mukaika::audit::Search::default(),
    )
    .unwrap()
    .into_iter()
    .filter(|r| r.event["type"] == "admin_login")
    .map(|r| {
        (
            r.event["user"].as_str().unwrap().to_string(),
            r.event["client"].as_str().unwrap().to_string(),
            r.event["outcome"].as_str().unwrap().to_string(),
        )
    })
    .collect();
    assert!(
        logins
            .iter()
            .all(|(_, client, _)| client.starts_with("cli:") && client.contains(" pid ")),
        "{logins:?}"
    );
    let failed: Vec<&str> = logins
        .iter()
        .filter(|(_, _, outcome)| outcome != "success")
        .map(|(user, _, _)| user.as_str())
        .collect();
    assert_eq!(failed, ["yamada", "tanaka"], "{logins:?}");

    // An account still on its one-time password acts nowhere until it has changed it.
    let out = support::mukaika(&[
        "admin", "user", "add", "suzuki", "--role", "operator", "--config", conf,
    ]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let one_time = text
        .lines()
        .find_map(|l| l.split_once("one-time password: ").map(|(_, p)| p.trim()))
        .unwrap();
    let ot = data.path().join("suzuki.one-time");
    std::fs::write(&ot, format!("{one_time}\n")).unwrap();
    let out = request("suzuki", Some(ot.to_str().unwrap()));
    assert_eq!(out.status.code(), Some(77));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("one-time"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_command_line_follows_the_same_rules_with_and_without_a_running_service() {
    let data = tempfile::tempdir().unwrap();
    let conf_path = data.path().join("mukaika.toml");
    std::fs::write(
        &conf_path,
        support::config_text(data.path(), "127.0.0.1:0").replace(
            "[notices]\nrecipients = true",
            "[notices]\nrecipients = false",
        ),
    )
    .unwrap();
    let conf = conf_path.to_str().unwrap();
    let original = b"Subject: held\r\n\r\nbody\r\n";
    seed(data.path(), "Q0001", None, "malformed", "held", original);
    seed(data.path(), "Q0002", None, "malformed", "held", original);

    // No service: the CLI acts under the data directory's lock.
    let out = support::mukaika(&[
        "admin",
        "user",
        "add",
        "sato",
        "--role",
        "operator,approver",
        "--config",
        conf,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("one-time password: "), "{text}");
    let ap1_pw = support::cli_account(conf, data.path(), "ap1", "approver");
    let ap1_pw = ap1_pw.to_str().unwrap();
    // sato leaves the one-time password the way a command-line user does.
    let one_time = text
        .lines()
        .find_map(|l| l.split_once("one-time password: ").map(|(_, p)| p.trim()))
        .unwrap();
    let sato_old = data.path().join("sato.one-time");
    std::fs::write(&sato_old, format!("{one_time}\n")).unwrap();
    let sato_new = data.path().join("sato.password");
    std::fs::write(&sato_new, format!("{}\n", support::CLI_PASSWORD)).unwrap();
    let sato_pw = sato_new.to_str().unwrap();
    assert!(support::mukaika(&[
        "account",
        "password",
        "--user",
        "sato",
        "--password-file",
        sato_old.to_str().unwrap(),
        "--new-password-file",
        sato_pw,
        "--config",
        conf,
    ])
    .status
    .success());
    assert_eq!(
        support::mukaika(&["admin", "user", "add", "x", "--role", "root", "--config", conf])
            .status
            .code(),
        Some(2)
    );

    let out = support::mukaika(&[
        "quarantine",
        "request-release",
        "Q0001",
        "--user",
        "sato",
        "--password-file",
        sato_pw,
        "--reason",
        "必要",
        "--config",
        conf,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = support::mukaika(&[
        "quarantine",
        "request-release",
        "Q0001",
        "--user",
        "nobody",
        "--password-file",
        ap1_pw,
        "--reason",
        "x",
        "--config",
        conf,
    ]);
    assert_eq!(out.status.code(), Some(77), "unknown account");
    let rid = mukaika::review::read_requests(data.path(), None).unwrap()[0]
        .id
        .clone();
    let out = support::mukaika(&[
        "quarantine",
        "approve",
        &rid,
        "--user",
        "sato",
        "--password-file",
        sato_pw,
        "--reason",
        "self",
        "--config",
        conf,
    ]);
    assert_eq!(out.status.code(), Some(77), "self-approval refused");
    assert!(String::from_utf8_lossy(&out.stderr).contains("兼務の禁止"));
    let out = support::mukaika(&[
        "quarantine",
        "approve",
        &rid,
        "--user",
        "ap1",
        "--password-file",
        ap1_pw,
        "--reason",
        "ok",
        "--config",
        conf,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(maildir_files(data.path()).len(), 1);
    let out = support::mukaika(&[
        "quarantine",
        "delete",
        "Q0002",
        "--user",
        "sato",
        "--password-file",
        sato_pw,
        "--reason",
        "",
        "--config",
        conf,
    ]);
    assert_eq!(out.status.code(), Some(1), "a reason is required");
    let out = support::mukaika(&["quarantine", "show", "../etc", "--config", conf]);
    assert_eq!(out.status.code(), Some(2));

    // With the service running, the same commands go through its control socket.
    let c =
        mukaika::config::ServiceConfig::from_toml(&std::fs::read_to_string(&conf_path).unwrap())
            .unwrap();
    let rt = runtime();
    let running = support::start(&rt, c, "test");
    let out = support::mukaika(&[
        "quarantine",
        "request-release",
        "Q0002",
        "--user",
        "sato",
        "--password-file",
        sato_pw,
        "--target",
        "to:kacho@city.example.lg.jp",
        "--reason",
        "課長宛て",
        "--config",
        conf,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rid2 =
        mukaika::review::read_requests(data.path(), Some(mukaika::review::RequestState::Pending))
            .unwrap()[0]
            .id
            .clone();
    let out = support::mukaika(&[
        "quarantine",
        "reject",
        &rid2,
        "--user",
        "ap1",
        "--password-file",
        ap1_pw,
        "--reason",
        "不要",
        "--config",
        conf,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = support::mukaika(&[
        "quarantine",
        "delete",
        "Q0002",
        "--user",
        "ap1",
        "--password-file",
        ap1_pw,
        "--reason",
        "不要と判断",
        "--config",
        conf,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list = support::mukaika(&["quarantine", "list", "--config", conf]);
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(list.contains("Q0001") && !list.contains("Q0002"), "{list}");
    rt.block_on(running.stop("test"));
    let kinds = audit_types(data.path());
    for k in [
        "release_requested",
        "release_approved",
        "release_delivered",
        "release_rejected",
        "quarantine_deleted",
    ] {
        assert!(kinds.contains(&k.to_string()), "{k}: {kinds:?}");
    }
    // One audit chain, intact, although two processes acted on it.
    let report = mukaika::audit::verify(&data.path().join("audit"), None, None).unwrap();
    assert!(report.intact(), "{report:?}");
}

#[test]
fn the_list_filters_searches_and_pages() {
    let data = tempfile::tempdir().unwrap();
    let c = config(data.path(), "");
    for n in 0..55 {
        let reason = if n % 5 == 0 { "malformed" } else { "encrypted" };
        seed(
            data.path(),
            &format!("Q{n:04}-1"),
            Some(&format!("file{n}.zip")),
            reason,
            &format!("件名{n}"),
            format!("bytes{n}").as_bytes(),
        );
    }
    let rt = runtime();
    let running = support::start(&rt, c.clone(), "test");
    let mut b = account(&c, running.admin_addr, "kansa", "auditor");
    let rows = |page: &str| {
        page.matches("<th scope=\"row\"><a class=\"id\" href=\"/items/")
            .count()
    };
    let first = b.get("/items").text();
    assert!(
        first.contains("55 件") && first.contains("1 / 2"),
        "{first}"
    );
    assert_eq!(rows(&first), 50);
    let second = b.get("/items?page=2").text();
    assert_eq!(rows(&second), 5);
    let malformed = b.get("/items?reason=malformed").text();
    assert!(malformed.contains("11 件"), "{malformed}");
    let searched = b
        .get(&format!("/items?q={}", support::web::encode("件名42")))
        .text();
    assert_eq!(rows(&searched), 1);
    assert!(searched.contains("Q0042-1"));
    assert_eq!(rows(&b.get("/items?source=import").text()), 0);
    assert_eq!(
        rows(
            &b.get("/items?sender=sender%40example.com&recipient=staff")
                .text()
        ),
        50
    );
    assert_eq!(rows(&b.get("/items?type=zip&status=held").text()), 50);
    assert_eq!(rows(&b.get("/items?status=pending").text()), 0);
    assert_eq!(
        rows(&b.get("/items?since=2000-01-01&until=2000-01-02").text()),
        0
    );
    let today = mukaika::clock::jst_date(mukaika::clock::now_ms());
    assert!(b
        .get(&format!("/items?since={today}&until={today}"))
        .text()
        .contains("55 件"));
    let dash = b.get("/").text();
    assert!(
        dash.contains("malformed") && dash.contains(&today),
        "{dash}"
    );
    rt.block_on(running.stop("test"));
}

/// The `admin_login` outcomes in the audit log for `user` (after the service stopped).
fn login_outcomes(data: &Path, user: &str) -> Vec<String> {
    mukaika::audit::search(&data.join("audit"), &Default::default())
        .unwrap()
        .iter()
        .filter(|r| r.event["type"] == "admin_login" && r.event["user"] == user)
        .map(|r| r.event["outcome"].as_str().unwrap().to_string())
        .collect()
}

/// A password was checked (as opposed to refused before the hash).
fn checked(outcome: &str) -> bool {
    matches!(outcome, "failure" | "lockout" | "success")
}

#[test]
fn two_hundred_parallel_logins_check_no_more_passwords_than_the_lockout_allows() {
    let data = tempfile::tempdir().unwrap();
    let mut c = config(data.path(), "");
    c.admin.lockout_attempts = 5;
    // Only the account's own count is under test here: neither the per-address login throttle
    // nor the listener's per-client connection share (32 by default) may refuse the burst.
    c.admin.login_attempts_per_client = 10_000;
    c.admin.max_connections = 512;
    c.admin.max_connections_per_client = 256;
    let rt = runtime();
    let running = support::start(&rt, c.clone(), "test");
    let addr = running.admin_addr;
    drop(account(&c, addr, "op1", "operator"));
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..200)
            .map(|i| {
                s.spawn(move || {
                    Browser::new(addr)
                        .login("op1", &format!("wrong-password-{i}"))
                        .status
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(statuses.iter().all(|s| *s == 401), "{statuses:?}");
    assert_eq!(
        Browser::new(addr).login("op1", PASSWORD).status,
        401,
        "locked: the right password does not log in"
    );
    rt.block_on(running.stop("test"));
    let outcomes = login_outcomes(data.path(), "op1");
    let checks = outcomes.iter().filter(|o| checked(o)).count();
    // One success is the first login of `account`.
    assert!(checks <= 5 + 1, "{checks} password checks: {outcomes:?}");
    assert!(
        outcomes.iter().any(|o| o == "lockout"),
        "the account locked: {outcomes:?}"
    );
    let user = mukaika::review::list_users_at(data.path())
        .unwrap()
        .into_iter()
        .find(|u| u.name == "op1")
        .unwrap();
    assert!(user.locked_until_ms > 0, "{user:?}");
}

/// A login answer with its fresh form token taken out, for comparing.
fn login_answer(b: &mut Browser, name: &str, password: &str) -> (u16, String) {
    let r = b.login(name, password);
    let token = r.csrf();
    (r.status, r.text().replace(&token, "TOKEN"))
}

#[test]
fn locked_unknown_and_wrong_logins_get_the_same_answer() {
    let data = tempfile::tempdir().unwrap();
    let mut c = config(data.path(), "");
    c.admin.lockout_attempts = 2;
    let rt = runtime();
    let running = support::start(&rt, c.clone(), "test");
    let addr = running.admin_addr;
    drop(account(&c, addr, "op1", "operator"));
    let mut b = Browser::new(addr);
    let wrong = login_answer(&mut b, "op1", "wrong-password-1");
    let locking = login_answer(&mut b, "op1", "wrong-password-2");
    let locked = login_answer(&mut b, "op1", PASSWORD);
    let unknown = login_answer(&mut b, "nobody", "wrong-password-1");
    let unknown_again = login_answer(&mut b, "nobody", "wrong-password-2");
    let unknown_locked = login_answer(&mut b, "nobody", "wrong-password-3");
    assert_eq!(wrong.0, 401);
    assert!(wrong.1.contains("ロックされています"), "{}", wrong.1);
    for (what, answer) in [
        ("the failure that locks", &locking),
        ("a locked account", &locked),
        ("an unknown name", &unknown),
        ("an unknown name again", &unknown_again),
        ("an unknown name a third time", &unknown_locked),
    ] {
        assert_eq!(answer, &wrong, "{what} answers differently");
    }
    rt.block_on(running.stop("test"));
    // The audit log still tells the administrator what happened.
    let outcomes = login_outcomes(data.path(), "op1");
    assert!(outcomes.contains(&"lockout".to_string()), "{outcomes:?}");
    assert!(outcomes.contains(&"locked".to_string()), "{outcomes:?}");
}

#[test]
fn one_address_cannot_lock_every_account() {
    let data = tempfile::tempdir().unwrap();
    let mut c = config(data.path(), "");
    c.admin.lockout_attempts = 2;
    c.admin.login_attempts_per_client = 3;
    // Long enough that a loaded machine does not see the window pass mid-test.
    c.admin.lockout_secs = 600;
    let rt = runtime();
    let running = support::start(&rt, c.clone(), "test");
    let addr = running.admin_addr;
    for name in ["a1", "b1", "c1"] {
        drop(account(&c, addr, name, "operator"));
    }
    let mut attacker = Browser::new(addr);
    for name in ["a1", "a1", "b1", "b1", "c1", "c1"] {
        assert_eq!(attacker.login(name, "wrong-password").status, 401);
    }
    // Even the right password is refused from this address now…
    assert_eq!(attacker.login("c1", PASSWORD).status, 401);
    let users = mukaika::review::list_users_at(data.path()).unwrap();
    let get = |n: &str| users.iter().find(|u| u.name == n).unwrap().clone();
    // …but only the first account's two failures were counted against accounts.
    assert!(get("a1").locked_until_ms > 0, "{:?}", get("a1"));
    assert_eq!(
        (get("b1").failed, get("b1").locked_until_ms),
        (1, 0),
        "{:?}",
        get("b1")
    );
    assert_eq!(
        (get("c1").failed, get("c1").locked_until_ms),
        (0, 0),
        "{:?}",
        get("c1")
    );
    rt.block_on(running.stop("test"));
    let throttled = login_outcomes(data.path(), "c1")
        .iter()
        .filter(|o| *o == "throttled")
        .count();
    assert!(throttled >= 2, "refusals are audited as throttled");
}

#[test]
fn an_operator_cannot_withdraw_another_operators_request() {
    let data = tempfile::tempdir().unwrap();
    let c = config(data.path(), "");
    seed(
        data.path(),
        "Q0001-1",
        Some("a.zip"),
        "encrypted",
        "s",
        b"PK",
    );
    let rt = runtime();
    let running = support::start(&rt, c.clone(), "test");
    let addr = running.admin_addr;
    let mut a = account(&c, addr, "op1", "operator");
    let mut b = account(&c, addr, "op2", "operator");
    let t = a.token();
    let r = a.post(
        "/items/Q0001-1/request",
        &[("csrf", &t), ("target", "original"), ("reason", "必要")],
    );
    assert_eq!(r.status, 303);
    let rid = mukaika::review::read_requests(data.path(), None).unwrap()[0]
        .id
        .clone();
    let t = b.token();
    let r = b.post(
        &format!("/requests/{rid}/cancel"),
        &[("csrf", &t), ("reason", "邪魔なので")],
    );
    assert_eq!(r.status, 403, "{}", r.text());
    let request = mukaika::review::read_requests(data.path(), None).unwrap()[0].clone();
    assert_eq!(request.state, mukaika::review::RequestState::Pending);
    // The requester still may.
    let t = a.token();
    let r = a.post(
        &format!("/requests/{rid}/cancel"),
        &[("csrf", &t), ("reason", "不要になった")],
    );
    assert_eq!(r.status, 303, "{}", r.text());
    rt.block_on(running.stop("test"));
    let records = mukaika::audit::search(&data.path().join("audit"), &Default::default()).unwrap();
    let cancels: Vec<_> = records
        .iter()
        .filter(|r| r.event["type"] == "release_cancelled")
        .map(|r| r.event["by"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(cancels, ["op1"], "op2's refused attempt left no record");
}

#[test]
fn two_approvers_at_once_record_one_approval_and_the_other_gets_409() {
    let data = tempfile::tempdir().unwrap();
    let mut c = config(data.path(), "");
    c.notices.recipients = false;
    const ROUNDS: usize = 6;
    for i in 0..ROUNDS {
        let original = format!(
            "From: sender@example.com\r\nTo: staff@city.example.lg.jp\r\nSubject: held {i}\r\n\r\nbody\r\n"
        );
        seed(
            data.path(),
            &format!("Q000{i}"),
            None,
            "malformed",
            "held",
            original.as_bytes(),
        );
    }
    let rt = runtime();
    let running = support::start(&rt, c.clone(), "test");
    let addr = running.admin_addr;
    let mut op = account(&c, addr, "op1", "operator");
    let mut ap1 = account(&c, addr, "ap1", "approver");
    let mut ap2 = account(&c, addr, "ap2", "approver");
    let (t1, t2) = (ap1.token(), ap2.token());
    for i in 0..ROUNDS {
        let t = op.token();
        let r = op.post(
            &format!("/items/Q000{i}/request"),
            &[("csrf", &t), ("target", "original"), ("reason", "必要")],
        );
        assert_eq!(r.status, 303);
        let rid = mukaika::review::read_requests(data.path(), None).unwrap()[0]
            .id
            .clone();
        let barrier = std::sync::Barrier::new(2);
        let mut statuses = std::thread::scope(|s| {
            let one = s.spawn(|| {
                barrier.wait();
                ap1.post(
                    &format!("/requests/{rid}/approve"),
                    &[("csrf", &t1), ("reason", "確認")],
                )
                .status
            });
            let two = s.spawn(|| {
                barrier.wait();
                ap2.post(
                    &format!("/requests/{rid}/approve"),
                    &[("csrf", &t2), ("reason", "確認")],
                )
                .status
            });
            vec![one.join().unwrap(), two.join().unwrap()]
        });
        statuses.sort_unstable();
        assert_eq!(statuses, [303, 409], "round {i}");
    }
    assert_eq!(
        maildir_files(data.path()).len(),
        ROUNDS,
        "each went out once"
    );
    rt.block_on(running.stop("test"));
    let kinds = audit_types(data.path());
    for k in ["release_approved", "release_delivered"] {
        assert_eq!(
            kinds.iter().filter(|x| *x == k).count(),
            ROUNDS,
            "{k}: {kinds:?}"
        );
    }
}

#[test]
fn guessable_passwords_are_refused_with_the_reason_in_japanese() {
    let data = tempfile::tempdir().unwrap();
    let c = config(data.path(), "");
    let rt = runtime();
    let running = support::start(&rt, c.clone(), "test");
    let one_time = add_user(&c, "yamada", "operator");
    let mut b = Browser::new(running.admin_addr);
    assert_eq!(b.login("yamada", &one_time).status, 303);
    let token = b.get("/password").csrf();
    for (weak, why) in [
        ("aaaaaaaaaaaa", "同じ文字の繰り返し"),
        ("abababababab", "同じ文字の繰り返し"),
        ("090123456789", "数字だけ"),
        ("1980-04-01-0042", "数字だけ"),
        ("Yamada-2024-spring", "アカウント名"),
        ("Password2024!", "よく使われる"),
        ("qwertyuiop1234", "よく使われる"),
        ("1qaz2wsx3edc", "よく使われる"),
    ] {
        let r = b.post(
            "/password",
            &[
                ("csrf", &token),
                ("old", &one_time),
                ("new", weak),
                ("again", weak),
            ],
        );
        assert!(r.text().contains(why), "{weak}: {}", r.text());
        assert_eq!(b.get("/").header("location"), Some("/password"), "{weak}");
    }
    let r = b.post(
        "/password",
        &[
            ("csrf", &token),
            ("old", &one_time),
            ("new", "kumo-no-ue-de-odoru"),
            ("again", "kumo-no-ue-de-odoru"),
        ],
    );
    assert_eq!(r.header("location"), Some("/?done=password"));
    rt.block_on(running.stop("test"));
}

#[test]
fn a_session_ends_after_its_absolute_lifetime_however_active() {
    let data = tempfile::tempdir().unwrap();
    let mut c = config(data.path(), "");
    c.admin.session_max_secs = 4;
    let rt = runtime();
    let running = support::start(&rt, c.clone(), "test");
    let mut b = account(&c, running.admin_addr, "op1", "operator");
    let start = Instant::now();
    // Never idle for more than a moment (the idle limit is 15 minutes)…
    while start.elapsed() < Duration::from_secs(2) {
        assert_eq!(b.get("/").status, 200);
        std::thread::sleep(Duration::from_millis(250));
    }
    std::thread::sleep(Duration::from_millis(4200).saturating_sub(start.elapsed()));
    // …and still over.
    assert_eq!(b.get("/").header("location"), Some("/login?expired=1"));
    assert_eq!(b.login("op1", PASSWORD).status, 303);
    assert_eq!(b.get("/").status, 200, "a new login starts a new lifetime");
    rt.block_on(running.stop("test"));
}

#[test]
fn reading_an_originals_safe_view_is_audited() {
    let data = tempfile::tempdir().unwrap();
    let c = config(data.path(), "");
    seed(
        data.path(),
        "Q0001-1",
        Some("a.zip"),
        "encrypted",
        "s",
        b"PK",
    );
    let rt = runtime();
    let running = support::start(&rt, c.clone(), "test");
    let mut kansa = account(&c, running.admin_addr, "kansa", "auditor");
    assert_eq!(kansa.get("/items/Q0001-1").status, 200);
    rt.block_on(running.stop("test"));
    let records = mukaika::audit::search(&data.path().join("audit"), &Default::default()).unwrap();
    let viewed = records
        .iter()
        .find(|r| r.event["type"] == "original_viewed")
        .expect("an original_viewed record");
    assert_eq!(viewed.event["by"], "kansa");
    assert_eq!(viewed.event["item_id"], "Q0001-1");
}

/// One GET with the given raw header lines: the status code.
fn get_with_headers(addr: std::net::SocketAddr, path: &str, headers: &str) -> u16 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\n{headers}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    raw.split(' ').nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_request_with_two_host_headers_is_refused() {
    let data = tempfile::tempdir().unwrap();
    let c = config(data.path(), "");
    let rt = runtime();
    let running = support::start(&rt, c.clone(), "test");
    let addr = running.admin_addr;
    let port = addr.port();
    let good = format!("Host: 127.0.0.1:{port}\r\n");
    let evil = format!("Host: rebind.attacker.example:{port}\r\n");
    assert_eq!(get_with_headers(addr, "/login", &good), 200);
    for (what, headers) in [
        ("good then evil", format!("{good}{evil}")),
        ("evil then good", format!("{evil}{good}")),
        ("good twice", format!("{good}{good}")),
    ] {
        assert_eq!(get_with_headers(addr, "/login", &headers), 421, "{what}");
        assert_eq!(get_with_headers(addr, "/metrics", &headers), 421, "{what}");
    }
    rt.block_on(running.stop("test"));
}

/// The audit records of type `kind`, oldest first.
fn records_of(data: &Path, kind: &str) -> Vec<serde_json::Value> {
    mukaika::audit::search(&data.join("audit"), &mukaika::audit::Search::default())
        .unwrap()
        .into_iter()
        .filter(|r| r.event["type"] == kind)
        .map(|r| r.event)
        .collect()
}

#[test]
fn a_web_approval_is_recorded_with_the_web_channel_and_the_peer_address() {
    let data = tempfile::tempdir().unwrap();
    let c = config(data.path(), "");
    seed(
        data.path(),
        "Q0001",
        None,
        "malformed",
        "held",
        b"Subject: x\r\n\r\nbody\r\n",
    );
    let rt = runtime();
    let running = support::start(&rt, c.clone(), "test");
    let mut op = account(&c, running.admin_addr, "op1", "operator");
    let mut ap = account(&c, running.admin_addr, "ap1", "approver");
    let t = op.token();
    let form = [
        ("csrf", t.as_str()),
        ("target", "original"),
        ("reason", "取引先に確認済み"),
    ];
    assert_eq!(op.post("/items/Q0001/request", &form).status, 303);
    let rid = mukaika::review::read_requests(data.path(), None).unwrap()[0]
        .id
        .clone();
    let t = ap.token();
    let r = ap.post(
        &format!("/requests/{rid}/approve"),
        &[("csrf", t.as_str()), ("reason", "ok")],
    );
    assert_eq!(r.status, 303, "{}", r.text());
    rt.block_on(running.stop("test"));
    let web = serde_json::json!({ "channel": "web", "client": "127.0.0.1" });
    let approved = records_of(data.path(), "release_approved");
    assert_eq!(approved.len(), 1);
    assert_eq!(approved[0]["by"], "ap1");
    assert_eq!(approved[0]["via"], web, "{approved:?}");
    for kind in ["release_requested", "release_delivered", "admin_login"] {
        let records = records_of(data.path(), kind);
        assert!(!records.is_empty(), "{kind}");
        assert!(
            records.iter().all(|r| r["via"] == web),
            "{kind}: {records:?}"
        );
    }
    // The password changes at first login name their door too.
    let changes = records_of(data.path(), "user_changed");
    assert!(changes
        .iter()
        .filter(|r| r["action"] == "change-password")
        .all(|r| r["via"] == web));
}

#[test]
fn a_session_survives_a_restart_and_only_its_hash_is_stored() {
    let data = tempfile::tempdir().unwrap();
    let c = config(data.path(), "");
    let rt = runtime();
    let running = support::start(&rt, c.clone(), "test");
    let mut b = account(&c, running.admin_addr, "op1", "operator");
    let cookie = b.cookies.get("mukaika_session").cloned().unwrap();
    let csrf = b.token();
    rt.block_on(running.stop("test"));

    let running = support::start(&rt, c.clone(), "test");
    let mut again = Browser::new(running.admin_addr);
    again
        .cookies
        .insert("mukaika_session".into(), cookie.clone());
    let r = again.get("/items");
    assert_eq!(r.status, 200, "the same cookie works after the restart");
    assert_eq!(again.token(), csrf, "and so does the same form token");
    let r = again.post("/logout", &[("csrf", csrf.as_str())]);
    assert_eq!(r.status, 303);
    rt.block_on(running.stop("test"));

    // The store never saw the token, only its SHA-256; the logout removed even that.
    let raw = std::fs::read(data.path().join("review.db")).unwrap();
    assert!(
        !raw.windows(cookie.len()).any(|w| w == cookie.as_bytes()),
        "the session token is stored in clear"
    );
    let db = rusqlite::Connection::open(data.path().join("review.db")).unwrap();
    let left: i64 = db
        .query_row("SELECT COUNT(*) FROM sessions", [], |r| r.get(0))
        .unwrap();
    assert_eq!(left, 0, "logged out");
}

#[test]
fn a_disabled_account_cannot_log_in_and_its_session_ends() {
    let data = tempfile::tempdir().unwrap();
    let c = config(data.path(), "");
    let rt = runtime();
    let running = support::start(&rt, c.clone(), "test");
    let mut admin = account(&c, running.admin_addr, "kanri", "admin");
    let mut op = account(&c, running.admin_addr, "op1", "operator");
    let mut ap = account(&c, running.admin_addr, "ap1", "approver");
    assert_eq!(op.get("/items").status, 200);
    let t = admin.token();
    assert_eq!(
        admin
            .post("/users/op1/disable", &[("csrf", t.as_str())])
            .status,
        303
    );
    assert_eq!(op.get("/items").header("location"), Some("/login"));
    assert_eq!(op.login("op1", PASSWORD).status, 401, "disabled");
    let page = admin.get("/users").text();
    assert!(page.contains("/users/op1/enable"), "{page}");
    // Enabled again, it logs in with its own password.
    assert_eq!(
        admin
            .post("/users/op1/enable", &[("csrf", t.as_str())])
            .status,
        303
    );
    assert_eq!(op.login("op1", PASSWORD).status, 303);
    assert_eq!(op.get("/items").status, 200);
    // Other roles end the sessions too; the next login holds the new ones.
    assert_eq!(ap.get("/requests").status, 200);
    let r = admin.post(
        "/users/ap1/role",
        &[("csrf", t.as_str()), ("role_auditor", "1")],
    );
    assert_eq!(r.status, 303);
    assert_eq!(ap.get("/requests").header("location"), Some("/login"));
    assert_eq!(ap.login("ap1", PASSWORD).status, 303);
    assert_eq!(ap.get("/audit").status, 200, "an auditor now");
    // An administrator does not disable, delete or re-role their own account.
    for action in ["disable", "delete", "role"] {
        let r = admin.post(
            &format!("/users/kanri/{action}"),
            &[
                ("csrf", t.as_str()),
                ("confirm", "1"),
                ("role_operator", "1"),
            ],
        );
        assert_eq!(r.status, 403, "{action}");
    }
    // A deletion must be confirmed; then the account is gone and its session with it.
    assert_eq!(
        admin
            .post("/users/op1/delete", &[("csrf", t.as_str())])
            .status,
        400
    );
    assert_eq!(
        admin
            .post(
                "/users/op1/delete",
                &[("csrf", t.as_str()), ("confirm", "1")]
            )
            .status,
        303
    );
    assert_eq!(op.get("/items").header("location"), Some("/login"));
    assert_eq!(op.login("op1", PASSWORD).status, 401, "deleted");
    rt.block_on(running.stop("test"));

    let changes: Vec<(String, String, serde_json::Value)> = records_of(data.path(), "user_changed")
        .into_iter()
        .filter(|r| r["by"] == "kanri" && r["action"] != "change-password")
        .map(|r| {
            (
                r["user"].as_str().unwrap().to_string(),
                r["action"].as_str().unwrap().to_string(),
                r["via"].clone(),
            )
        })
        .collect();
    let web = serde_json::json!({ "channel": "web", "client": "127.0.0.1" });
    let expected: Vec<(String, String, serde_json::Value)> = [
        ("op1", "disable"),
        ("op1", "enable"),
        ("ap1", "role"),
        ("op1", "delete"),
    ]
    .iter()
    .map(|(u, a)| (u.to_string(), a.to_string(), web.clone()))
    .collect();
    assert_eq!(changes, expected);
    let role = records_of(data.path(), "user_changed")
        .into_iter()
        .find(|r| r["action"] == "role")
        .unwrap();
    assert_eq!(role["role"], "auditor");
    assert!(records_of(data.path(), "admin_login")
        .iter()
        .any(|r| r["user"] == "op1" && r["outcome"] == "disabled"));
}

#[test]
fn the_users_page_offers_unlock_only_for_a_locked_account() {
    let data = tempfile::tempdir().unwrap();
    let c = config(data.path(), "");
    let rt = runtime();
    let running = support::start(&rt, c.clone(), "test");
    let mut admin = account(&c, running.admin_addr, "kanri", "admin");
    let _op = account(&c, running.admin_addr, "op1", "operator");
    let _ap = account(&c, running.admin_addr, "ap1", "approver");
    let page = admin.get("/users").text();
    assert!(!page.contains("/unlock\""), "nobody is locked: {page}");
    let mut guesser = Browser::new(running.admin_addr);
    for _ in 0..c.admin.lockout_attempts {
        assert_eq!(guesser.login("op1", "wrong-password").status, 401);
    }
    let page = admin.get("/users").text();
    assert!(page.contains("action=\"/users/op1/unlock\""), "{page}");
    assert_eq!(page.matches("/unlock\"").count(), 1, "{page}");
    assert_eq!(page.matches("ロック解除").count(), 1, "{page}");
    let t = admin.token();
    assert_eq!(
        admin
            .post("/users/op1/unlock", &[("csrf", t.as_str())])
            .status,
        303
    );
    assert!(!admin.get("/users").text().contains("/unlock\""));
    rt.block_on(running.stop("test"));
}

/// The item IDs in the order the list shows them.
fn listed_ids(page: &str) -> Vec<String> {
    page.split("<th scope=\"row\"><a class=\"id\" href=\"/items/")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_string)
        .collect()
}

#[test]
fn the_list_sorts_by_a_column_heading_link_and_says_which_way_in_aria_sort() {
    let data = tempfile::tempdir().unwrap();
    let c = config(data.path(), "");
    for (id, subject) in [
        ("Q0001", "b-件名"),
        ("Q0002", "c-件名"),
        ("Q0003", "a-件名"),
    ] {
        seed(
            data.path(),
            id,
            None,
            "malformed",
            subject,
            subject.as_bytes(),
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let rt = runtime();
    let running = support::start(&rt, c.clone(), "test");
    let mut b = account(&c, running.admin_addr, "kansa", "auditor");
    let page = b.get("/items").text();
    assert_eq!(
        listed_ids(&page),
        ["Q0003", "Q0002", "Q0001"],
        "newest first"
    );
    assert!(page.contains("aria-sort=\"descending\""), "{page}");
    assert!(
        page.contains("href=\"/items?dir=asc&amp;sort=subject\""),
        "{page}"
    );
    let asc = b.get("/items?dir=asc&sort=subject").text();
    assert_eq!(listed_ids(&asc), ["Q0003", "Q0001", "Q0002"]);
    assert!(asc.contains("<th scope=\"col\" aria-sort=\"ascending\"><a href=\"/items?dir=desc&amp;sort=subject\""), "{asc}");
    let desc = b.get("/items?dir=desc&sort=subject").text();
    assert_eq!(listed_ids(&desc), ["Q0002", "Q0001", "Q0003"]);
    // The filters survive a sort, and an unknown column falls back to the time.
    let filtered = b.get("/items?dir=asc&sort=subject&q=a-").text();
    assert_eq!(listed_ids(&filtered), ["Q0003"]);
    let unknown = b.get("/items?sort=nonsense").text();
    assert_eq!(listed_ids(&unknown), ["Q0003", "Q0002", "Q0001"]);
    rt.block_on(running.stop("test"));
}

#[test]
fn the_list_and_the_audit_search_download_as_csv_with_a_bom_and_defused_formulas() {
    let data = tempfile::tempdir().unwrap();
    let c = config(data.path(), "");
    seed(
        data.path(),
        "Q0001",
        None,
        "malformed",
        "=HYPERLINK(\"http://evil.example/\",\"請求書\")",
        b"one",
    );
    seed(data.path(), "Q0002", None, "malformed", "@SUM(1+1)", b"two");
    seed(
        data.path(),
        "Q0003",
        None,
        "malformed",
        "見積書, \"至急\"",
        b"three",
    );
    let rt = runtime();
    let running = support::start(&rt, c.clone(), "test");
    let addr = running.admin_addr;
    let mut op = account(&c, addr, "yamada", "operator");
    let t = op.token();
    let r = op.post(
        "/items/Q0001/request",
        &[
            ("csrf", &t),
            ("target", "original"),
            ("reason", "+確認済み"),
        ],
    );
    assert_eq!(r.status, 303);
    let csv = op.get("/items.csv");
    assert_eq!(csv.status, 200);
    assert!(csv.header("content-type").unwrap().starts_with("text/csv"));
    assert!(csv
        .header("content-disposition")
        .unwrap()
        .contains("attachment"));
    assert!(csv.body.starts_with(b"\xEF\xBB\xBF"), "UTF-8 with a BOM");
    let text = csv.text();
    assert_eq!(
        text.matches("\r\n").count(),
        4,
        "heading and three rows: {text}"
    );
    assert!(
        text.contains("\"'=HYPERLINK(\"\"http://evil.example/\"\",\"\"請求書\"\")\""),
        "{text}"
    );
    assert!(text.contains("\"'@SUM(1+1)\""), "{text}");
    assert!(text.contains("\"見積書, \"\"至急\"\"\""), "{text}");
    assert!(!text.contains(",\"=") && !text.contains(",\"@"), "{text}");
    assert!(text.contains("承認待ち"), "status in Japanese: {text}");
    // The same filters as the page.
    let one = op.get("/items.csv?q=Q0002").text();
    assert_eq!(one.matches("\r\n").count(), 2, "{one}");

    // The audit search: auditors only, the same BOM, Japan time, the sentence beside the JSON.
    assert_eq!(op.get("/audit.csv?id=Q0001").status, 403);
    let mut au = account(&c, addr, "kansa", "auditor");
    let csv = au.get("/audit.csv?id=Q0001");
    assert_eq!(csv.status, 200);
    assert!(csv.body.starts_with(b"\xEF\xBB\xBF"));
    let text = csv.text();
    assert!(text.contains("yamada さんが解除を申請しました"), "{text}");
    assert!(text.contains("release_requested"), "{text}");
    let today = mukaika::clock::jst_date(mukaika::clock::now_ms());
    assert!(text.contains(&format!("\"{today} ")), "JST time: {text}");
    rt.block_on(running.stop("test"));
}

#[test]
fn bulk_approval_refuses_ones_own_request_and_approves_the_others() {
    let data = tempfile::tempdir().unwrap();
    let mut c = config(data.path(), "");
    c.notices.recipients = false;
    let original = b"From: sender@example.com\r\nTo: staff@city.example.lg.jp\r\nSubject: held\r\n\r\nbody\r\n";
    for id in ["Q0001", "Q0002", "Q0003"] {
        seed(data.path(), id, None, "malformed", "held", original);
    }
    let rt = runtime();
    let running = support::start(&rt, c.clone(), "test");
    let addr = running.admin_addr;
    let mut op = account(&c, addr, "yamada", "operator");
    let mut both = account(&c, addr, "sato", "operator,approver");
    // An operator asks for two items at once; each request is its own, audited.
    let t = op.token();
    let r = op.post(
        "/items/bulk",
        &[
            ("csrf", &t),
            ("action", "request"),
            ("reason", "取引先に確認済み"),
            ("sel-Q0001", "1"),
            ("sel-Q0002", "1"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("2 / 2"), "{}", r.text());
    // An operator may not delete, in bulk either.
    let r = op.post(
        "/items/bulk",
        &[
            ("csrf", &t),
            ("action", "delete"),
            ("reason", "x"),
            ("sel-Q0003", "1"),
        ],
    );
    assert_eq!(r.status, 403);
    // Without the token nothing is done.
    let r = op.post(
        "/items/bulk",
        &[("action", "request"), ("reason", "x"), ("sel-Q0003", "1")],
    );
    assert_eq!(r.status, 403);
    // sato asks for the third, then approves all three in one form: the own one is refused.
    let t = both.token();
    let r = both.post(
        "/items/bulk",
        &[
            ("csrf", &t),
            ("action", "request"),
            ("reason", "自分でも申請"),
            ("sel-Q0003", "1"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let requests = mukaika::review::read_requests(data.path(), None).unwrap();
    assert_eq!(requests.len(), 3);
    let own = requests.iter().find(|r| r.requester == "sato").unwrap();
    let page = both.get("/requests").text();
    assert!(
        !page.contains(&format!("name=\"sel-{}\"", own.id)),
        "no box to tick for one's own request"
    );
    let mut form: Vec<(String, String)> = vec![
        ("csrf".into(), t.clone()),
        ("action".into(), "approve".into()),
        ("reason".into(), "内容を確認した".into()),
    ];
    for r in &requests {
        form.push((format!("sel-{}", r.id), "1".into()));
    }
    let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let r = both.post("/requests/bulk", &pairs);
    assert_eq!(r.status, 409, "one of three refused: {}", r.text());
    let text = r.text();
    assert!(
        text.contains("2 / 3") && text.contains("兼務の禁止"),
        "{text}"
    );
    let after = mukaika::review::read_requests(data.path(), None).unwrap();
    let state = |id: &str| after.iter().find(|r| r.id == id).unwrap().state;
    assert_eq!(state(&own.id), mukaika::review::RequestState::Pending);
    assert_eq!(
        after
            .iter()
            .filter(|r| r.state == mukaika::review::RequestState::Delivered
                || r.state == mukaika::review::RequestState::Approved)
            .count(),
        2
    );
    rt.block_on(running.stop("test"));
    let records = mukaika::audit::search(&data.path().join("audit"), &Default::default()).unwrap();
    let approved: Vec<&str> = records
        .iter()
        .filter(|r| r.event["type"] == "release_approved")
        .map(|r| r.event["request_id"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(approved.len(), 2, "each approval audited on its own");
    assert!(!approved.contains(&own.id.as_str()));
    assert_eq!(
        records
            .iter()
            .filter(|r| r.event["type"] == "release_requested")
            .count(),
        3
    );
}

#[test]
fn the_audit_search_pages_past_five_hundred_records() {
    let data = tempfile::tempdir().unwrap();
    let c = config(data.path(), "");
    {
        let log = mukaika::audit::AuditLog::open(mukaika::audit::AuditConfig::new(
            data.path().join("audit"),
            "test",
        ))
        .unwrap();
        for n in 0..520 {
            log.append(mukaika::audit::AuditEvent::AdminLogin(
                mukaika::audit::event::AdminLogin {
                    user: "pagecheck".into(),
                    client: format!("192.0.2.{}", n % 250),
                    outcome: "failure".into(),
                    via: None,
                },
            ))
            .unwrap();
        }
    }
    let rt = runtime();
    let running = support::start(&rt, c.clone(), "test");
    let mut b = account(&c, running.admin_addr, "kansa", "auditor");
    let rows = |page: &str| page.matches("<td class=\"num\">").count();
    let first = b.get("/audit?user=pagecheck").text();
    assert!(
        first.contains("520 件") && first.contains("1 / 2"),
        "{first}"
    );
    assert_eq!(rows(&first), 500);
    assert!(
        first.contains("href=\"/audit?user=pagecheck&amp;page=2\""),
        "{first}"
    );
    assert!(
        first.contains("pagecheck のログイン: 失敗"),
        "in Japanese: {first}"
    );
    let second = b.get("/audit?user=pagecheck&page=2").text();
    assert_eq!(rows(&second), 20, "the oldest 20");
    let seqs: Vec<u64> = second
        .split("<td class=\"num\">")
        .skip(1)
        .filter_map(|s| s.split('<').next()?.parse().ok())
        .collect();
    let all: Vec<u64> = mukaika::audit::search(
        &data.path().join("audit"),
        &mukaika::audit::Search {
            user: Some("pagecheck".into()),
            ..Default::default()
        },
    )
    .unwrap()
    .iter()
    .map(|r| r.seq)
    .collect();
    let oldest: Vec<u64> = all.iter().take(20).rev().copied().collect();
    assert_eq!(seqs, oldest);
    rt.block_on(running.stop("test"));
}

#[test]
fn the_dashboard_draws_its_charts_as_inline_svg_without_script_or_inline_style() {
    let data = tempfile::tempdir().unwrap();
    let c = config(data.path(), "");
    seed(data.path(), "Q0001", None, "malformed", "s", b"one");
    seed(data.path(), "Q0002", None, "malformed", "s", b"two");
    seed(data.path(), "Q0003", None, "encrypted", "s", b"three");
    let rt = runtime();
    let running = support::start(&rt, c.clone(), "test");
    let mut b = account(&c, running.admin_addr, "kansa", "auditor");
    let dash = b.get("/");
    let text = dash.text();
    assert_eq!(text.matches("<svg class=\"chart\"").count(), 4, "{text}");
    assert!(
        !text.contains("<script") && !text.contains("style="),
        "{text}"
    );
    // Each bar says its count, and the reasons link to the filtered list.
    assert!(
        text.contains("<a href=\"/items?reason=malformed\">")
            && text.contains(">2</text>")
            && text.contains(">1</text>"),
        "{text}"
    );
    let csp = dash.header("content-security-policy").unwrap();
    assert!(csp.contains("default-src 'none'") && !csp.contains("unsafe-inline"));
    rt.block_on(running.stop("test"));
}

/// Issue #19: the audit filter takes the days the table shows (local time, a bare day being
/// that whole day), and refuses a time it cannot read instead of searching without a bound.
#[test]
fn the_audit_search_takes_the_local_day_the_table_shows_and_refuses_garbage() {
    let data = tempfile::tempdir().unwrap();
    let c = config(data.path(), "");
    let rt = runtime();
    let running = support::start(&rt, c.clone(), "test");
    let mut b = account(&c, running.admin_addr, "kansa", "auditor");
    let today = mukaika::clock::local_date(mukaika::clock::now_ms());
    let tomorrow = mukaika::clock::local_date(mukaika::clock::now_ms() + 86_400_000);
    let count = |page: &str| -> usize {
        let (head, _) = page.split_once(" 件").expect("a count");
        head.rsplit(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    // The service's own start is on record today, and it is found by the day it shows.
    let found = b.get(&format!("/audit?since={today}&until={today}")).text();
    assert!(count(&found) >= 1, "{found}");
    let none = b.get(&format!("/audit?since={tomorrow}")).text();
    assert_eq!(count(&none), 0, "{none}");
    let r = b.get("/audit?since=yesterday");
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("yesterday"));
    rt.block_on(running.stop("test"));
}

/// The quarantine list and its CSV read the days the table shows (a bare "until" day includes
/// it) and refuse a date they cannot read, instead of listing every item.
#[test]
fn the_item_list_takes_local_days_and_refuses_a_date_it_cannot_read() {
    let data = tempfile::tempdir().unwrap();
    let c = config(data.path(), "");
    seed(data.path(), "Q0001", None, "malformed", "held", b"x");
    let rt = runtime();
    let running = support::start(&rt, c.clone(), "test");
    let mut b = account(&c, running.admin_addr, "kansa", "auditor");
    let today = mukaika::clock::local_date(mukaika::clock::now_ms());
    let page = b.get(&format!("/items?since={today}&until={today}")).text();
    assert!(page.contains("Q0001"), "{page}");
    for bad in [
        "/items?since=yesterday",
        "/items?until=2026-11-3",
        "/items.csv?until=x",
    ] {
        let r = b.get(bad);
        assert_eq!(r.status, 400, "{bad}: {}", r.text());
    }
    rt.block_on(running.stop("test"));
}

/// The requests table sorts by a column heading link (no script) and says which way in
/// `aria-sort`; newest request first by default.
#[test]
fn the_requests_table_sorts_by_a_column_heading_link() {
    let data = tempfile::tempdir().unwrap();
    let mut c = config(data.path(), "");
    c.notices.recipients = false;
    for id in ["Q0001", "Q0002", "Q0003"] {
        seed(data.path(), id, None, "malformed", "held", b"x");
    }
    let rt = runtime();
    let running = support::start(&rt, c.clone(), "test");
    let addr = running.admin_addr;
    // Three requesters, asking in the order Q0002 (sato), Q0003 (abe), Q0001 (kato).
    for (who, item) in [("sato", "Q0002"), ("abe", "Q0003"), ("kato", "Q0001")] {
        let mut op = account(&c, addr, who, "operator");
        let t = op.token();
        let r = op.post(
            &format!("/items/{item}/request"),
            &[("csrf", &t), ("target", "original"), ("reason", "必要")],
        );
        assert_eq!(r.status, 303, "{}", r.text());
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut b = account(&c, addr, "kansa", "auditor");
    let order = |page: &str| -> Vec<String> {
        page.split("<td><a class=\"id\" href=\"/items/")
            .skip(1)
            .filter_map(|rest| rest.split('"').next())
            .map(str::to_string)
            .collect()
    };
    let page = b.get("/requests").text();
    assert_eq!(order(&page), ["Q0001", "Q0003", "Q0002"], "newest first");
    assert!(page.contains("aria-sort=\"descending\""), "{page}");
    let by_requester = b.get("/requests?sort=requester&dir=asc").text();
    assert_eq!(order(&by_requester), ["Q0003", "Q0001", "Q0002"]);
    assert!(by_requester.contains("aria-sort=\"ascending\""));
    let by_item = b.get("/requests?sort=item&dir=desc").text();
    assert_eq!(order(&by_item), ["Q0003", "Q0002", "Q0001"]);
    rt.block_on(running.stop("test"));
}
