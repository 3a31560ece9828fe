//! Every page rendered through the real router with hostile values in every field a person or
//! a sender controls (item names, subjects, senders, recipients, details, request and decision
//! reasons, account names, audit records, query strings), and the guard extractors' answers.

use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use tower::ServiceExt;

use crate::admin::web::{router, Web};
use crate::review::{Actor, Review, Role, Target};
use crate::store::quarantine::QuarantineItem;

/// Script, an attribute break-out, a bidi override that turns `gnp.exe` into `exe.png`, and
/// CRLF (a header split where a value reaches one).
const HOSTILE: &str =
    "<script>alert(1)</script>\"'><img src=x onerror=alert(2)>\u{202E}gnp.exe\r\nX-Injected: 1";

/// A web UI over a fresh data directory.
fn web(dir: &Path) -> Arc<Web> {
    let text = crate::config::DEFAULT_TOML
        .replace("dir = \"./data\"", &format!("dir = \"{}\"", dir.display()))
        .replace("min_free_bytes = 104857600", "min_free_bytes = 1");
    let config = crate::config::ServiceConfig::from_toml(&text).expect("config");
    let audit = Arc::new(crate::store::open_audit(&config).expect("audit"));
    let quarantine =
        crate::store::quarantine::open(dir.join("quarantine"), config.quarantine.store)
            .expect("quarantine");
    let review = Review::open(
        Arc::new(crate::live::Live::new(config)),
        quarantine,
        audit,
        crate::sink::Sink::Maildir(dir.join("maildir")),
    )
    .expect("review");
    Arc::new(Web::new(
        Arc::new(review),
        Vec::new(),
        dir.join("audit"),
        false,
    ))
}

/// A live session for `user` (no login: the password is not checked), its cookie value.
/// The session's one-time-password flag is `must_change`, whatever the store says.
/// An account missing from the store is written into it directly (as one with a name the
/// store would refuse): a session of no account is no session.
fn sign_in(web: &Web, user: &str, roles: &[Role], must_change: bool) -> String {
    let db = rusqlite::Connection::open(web.review.config().data.dir.join("review.db"))
        .expect("review.db");
    db.execute(
        "INSERT OR IGNORE INTO users (name, role, hash, must_change, created_at) VALUES (?1, ?2, 'x', 0, '2026-04-01T00:00:00Z')",
        rusqlite::params![user, crate::review::roles_text(roles)],
    )
    .expect("account");
    let mut account = web.review.user(user).expect("store").expect("account");
    assert_eq!(account.roles, roles, "roles come from the store");
    account.must_change = must_change;
    let ok = crate::review::LoginOk {
        user: account,
        previous_login: Some(crate::clock::now_rfc3339()),
        previous_from: Some(HOSTILE.into()),
        failed_since: 2,
        credentials: web.review.credential_epoch(user),
    };
    web.review.open_session(&ok, "127.0.0.1").expect("session")
}

/// The local administrator at this process's command line.
fn local() -> Actor {
    Actor::local_admin(crate::admin::control::this_process()).expect("a CLI caller")
}

/// `name` acting at this process's command line.
fn cli(name: &str) -> Actor {
    Actor::new(name, crate::admin::control::this_process())
}

fn item(id: &str, name: Option<&str>) -> QuarantineItem {
    QuarantineItem {
        id: id.into(),
        source: "mail".into(),
        origin_id: "Q0001".into(),
        name: name.map(str::to_string),
        reason: "encrypted".into(),
        detail: HOSTILE.into(),
        sha256: "00".repeat(32),
        size: 3,
        at: crate::clock::now_rfc3339(),
        report: serde_json::json!({ "findings": [HOSTILE] }),
        mail_from: Some(HOSTILE.into()),
        rcpt_to: vec!["staff@city.example.lg.jp".into(), HOSTILE.into()],
        subject: Some(HOSTILE.into()),
        detected_type: Some(HOSTILE.into()),
    }
}

/// A UI with hostile items, requests, decisions and audit records, and an account holding
/// every role.
fn hostile_world(dir: &Path) -> (Arc<Web>, String) {
    let web = web(dir);
    let review = &web.review;
    for (name, roles) in [
        ("op1", &[Role::Operator][..]),
        ("ap1", &[Role::Approver][..]),
        (
            "kanri",
            &[Role::Operator, Role::Approver, Role::Auditor, Role::Admin][..],
        ),
    ] {
        review.add_user(&local(), name, roles).expect("user");
    }
    let name = format!("{HOSTILE}.zip");
    review
        .store()
        .put(&item("Q0001-1", Some(&name)), b"\x00<script>x</script>")
        .expect("put");
    let message = format!(
        "From: \"{HOSTILE}\" <evil@example.com>\r\nSubject: =?UTF-8?B?PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==?=\r\nContent-Type: text/html\r\n\r\n<html><body>{HOSTILE}</body></html>\r\n"
    );
    review
        .store()
        .put(&item("Q0002", None), message.as_bytes())
        .expect("put");
    review
        .store()
        .put(&item("Q0003-1", Some("plain.txt")), HOSTILE.as_bytes())
        .expect("put");
    review
        .request_release(&cli("op1"), "Q0001-1", Target::Original, HOSTILE)
        .expect("request");
    let decided = review
        .request_release(&cli("op1"), "Q0002", Target::Original, HOSTILE)
        .expect("request");
    review
        .reject(&cli("ap1"), &decided.id, HOSTILE)
        .expect("reject");
    let token = sign_in(
        &web,
        "kanri",
        &[Role::Operator, Role::Approver, Role::Auditor, Role::Admin],
        false,
    );
    (web, token)
}

struct Answer {
    status: StatusCode,
    location: Option<String>,
    text: String,
}

async fn send(web: &Arc<Web>, request: Request<Body>) -> Answer {
    let response = router(Arc::clone(web))
        .oneshot(request)
        .await
        .expect("answer");
    let status = response.status();
    let location = response
        .headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = axum::body::to_bytes(response.into_body(), 16 << 20)
        .await
        .expect("body");
    Answer {
        status,
        location,
        text: String::from_utf8_lossy(&body).into_owned(),
    }
}

async fn get(web: &Arc<Web>, token: &str, path: &str) -> Answer {
    let request = Request::get(path)
        .header(header::COOKIE, format!("mukaika_session={token}"))
        .body(Body::empty())
        .expect("request");
    send(web, request).await
}

/// Posts `form` with the session `token`; `csrf-token` in it stands for the session's CSRF
/// token (derived from the session token).
async fn post(web: &Arc<Web>, token: &str, path: &str, form: &str) -> Answer {
    let form = form.replace("csrf-token", &crate::review::csrf_of(token));
    let request = Request::post(path)
        .header(header::COOKIE, format!("mukaika_session={token}"))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(form))
        .expect("request");
    send(web, request).await
}

/// Asserts `page` carries none of [`HOSTILE`]'s active parts, and (when `shown`) carries it
/// escaped, so it was not simply dropped (as text, or inside an audit record's JSON).
fn assert_inert(what: &str, page: &str, shown: bool) {
    for raw in ["<script", "<img", "\"'>", "'", "\u{202E}", "\r"] {
        assert!(
            !page.contains(raw),
            "{what} carries {raw:?} unescaped:\n{page}"
        );
    }
    if shown {
        for escaped in [
            "&lt;script&gt;alert(1)&lt;/script&gt;",
            "&#39;&gt;&lt;img src=x onerror=alert(2)&gt;",
            "[U+202E]gnp.exe",
        ] {
            assert!(
                page.contains(escaped),
                "{what} does not show {escaped:?}:\n{page}"
            );
        }
    }
}

#[tokio::test]
async fn every_page_shows_hostile_values_escaped_and_bidi_and_crlf_visible() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (web, token) = hostile_world(dir.path());
    let q = crate::admin::web::html::url(HOSTILE);
    for (path, shown) in [
        ("/".to_string(), true), // the previous login's address
        ("/items".to_string(), true),
        (format!("/items?q={q}&sender={q}&type={q}&reason={q}"), true),
        ("/items/Q0001-1".to_string(), true),
        ("/items/Q0002".to_string(), true),
        ("/items/Q0003-1".to_string(), true),
        ("/requests".to_string(), true),
        ("/audit?id=Q0001-1".to_string(), true),
        (format!("/audit?user={q}&sender={q}"), true),
        ("/users".to_string(), false),
        ("/password".to_string(), false),
    ] {
        let page = get(&web, &token, &path).await;
        assert_eq!(page.status, StatusCode::OK, "{path}: {}", page.text);
        assert_inert(&path, &page.text, shown);
    }
}

#[tokio::test]
async fn hostile_account_names_and_error_messages_are_escaped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (web, token) = hostile_world(dir.path());
    // An account name only the session holds (the store refuses such names): the header.
    let odd = sign_in(&web, HOSTILE, &[Role::Operator], false);
    let page = get(&web, &odd, "/items").await;
    assert_eq!(page.status, StatusCode::OK);
    assert_inert("header", &page.text, true);
    // An error page quoting what was posted.
    let form = format!(
        "csrf=csrf-token&target=recipients&recipients={}&reason=x",
        crate::admin::web::html::url(HOSTILE)
    );
    let page = post(&web, &token, "/items/Q0001-1/request", &form).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert_inert("error page", &page.text, false);
    // A one-time password notice names the account made.
    let page = post(
        &web,
        &token,
        "/users",
        "csrf=csrf-token&name=new.user&role_operator=1",
    )
    .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.text.contains("<strong>new.user</strong>"),
        "{}",
        page.text
    );
}

#[tokio::test]
async fn every_page_but_login_and_the_stylesheet_needs_a_session() {
    let dir = tempfile::tempdir().expect("tempdir");
    let web = web(dir.path());
    for path in [
        "/",
        "/items",
        "/items/Q0001-1",
        "/requests",
        "/audit",
        "/users",
        "/password",
    ] {
        let page = get(&web, "none", path).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(page.location.as_deref(), Some("/login"), "{path}");
    }
    for path in [
        "/logout",
        "/password",
        "/items/Q0001-1/request",
        "/items/Q0001-1/original",
        "/items/Q0001-1/delete",
        "/items/Q0001-1/unlock",
        "/requests/R1/approve",
        "/requests/R1/reject",
        "/requests/R1/cancel",
        "/users",
        "/users/x/unlock",
        "/users/x/reset",
        "/users/x/disable",
        "/users/x/enable",
        "/users/x/delete",
        "/users/x/role",
    ] {
        let page = post(&web, "none", path, "csrf=x").await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(page.location.as_deref(), Some("/login"), "{path}");
    }
    assert_eq!(get(&web, "none", "/login").await.status, StatusCode::OK);
    assert_eq!(
        get(&web, "none", "/static/style.css").await.status,
        StatusCode::OK
    );
    // The recipients' PPAP page needs no session; without the running service's engine it
    // says it cannot help now, and never redirects to the login.
    let ppap = get(&web, "none", &format!("/ppap/{}", "ab".repeat(32))).await;
    assert_eq!(ppap.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(ppap.location.is_none());
}

#[tokio::test]
async fn a_one_time_password_reaches_only_the_password_page_and_logout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let web = web(dir.path());
    let token = sign_in(&web, "fresh", &[Role::Admin], true);
    for path in ["/", "/items", "/users"] {
        let page = get(&web, &token, path).await;
        assert_eq!(page.location.as_deref(), Some("/password"), "{path}");
    }
    let page = post(&web, &token, "/users", "csrf=csrf-token&name=x").await;
    assert_eq!(page.location.as_deref(), Some("/password"));
    assert_eq!(get(&web, &token, "/password").await.status, StatusCode::OK);
    let page = post(&web, &token, "/logout", "csrf=csrf-token").await;
    assert_eq!(page.location.as_deref(), Some("/login"));
}

#[tokio::test]
async fn the_guard_refuses_a_wrong_role_and_a_wrong_token_with_the_403_page() {
    let dir = tempfile::tempdir().expect("tempdir");
    let web = web(dir.path());
    let token = sign_in(&web, "op", &[Role::Operator], false);
    for path in ["/users", "/audit"] {
        let page = get(&web, &token, path).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{path}");
        assert!(
            page.text.contains("この操作を行う権限がありません。"),
            "{path}"
        );
    }
    let page = post(
        &web,
        &token,
        "/requests/R1/approve",
        "csrf=csrf-token&reason=x",
    )
    .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    let page = post(&web, &token, "/requests/R1/cancel", "csrf=wrong&reason=x").await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(
        page.text.contains("CSRF") || page.text.contains("不正な送信"),
        "{}",
        page.text
    );
    // An action that does not exist is a 404 before the session is looked at.
    let page = post(&web, "none", "/requests/R1/frobnicate", "csrf=x").await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
}
