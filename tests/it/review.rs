//! Review decisions without the web: delivery retried after a failure, export copies,
//! requests closed when their item expires, and the administrators' digest.

use std::path::Path;
use std::sync::Arc;

use mukaika::audit::event::Via;
use mukaika::audit::{AuditConfig, AuditLog};
use mukaika::config::{NoticeMode, ServiceConfig};
use mukaika::live::Live;
use mukaika::review::{Actor, RequestState, Review, Role, Target};
use mukaika::sink::Sink;
use mukaika::store::quarantine::{QuarantineItem, QuarantineStore, SqliteQuarantine};

struct Fixture {
    review: Review,
    store: Arc<SqliteQuarantine>,
    data: tempfile::TempDir,
}

fn fixture(sink_dir: Option<&Path>, edit: impl FnOnce(&mut ServiceConfig)) -> Fixture {
    fixture_at(mukaika::clock::system(), sink_dir, edit)
}

/// A fixture whose review and audit log run on `clock`.
fn fixture_at(
    clock: mukaika::clock::SharedClock,
    sink_dir: Option<&Path>,
    edit: impl FnOnce(&mut ServiceConfig),
) -> Fixture {
    let data = tempfile::tempdir().unwrap();
    let mut config = ServiceConfig::default_config();
    config.data.dir = data.path().to_path_buf();
    edit(&mut config);
    let store = Arc::new(SqliteQuarantine::open(data.path().join("quarantine")).unwrap());
    let audit = Arc::new(
        AuditLog::open(AuditConfig {
            clock,
            ..AuditConfig::new(data.path().join("audit"), "t")
        })
        .unwrap(),
    );
    let sink = Sink::Maildir(
        sink_dir
            .map(Path::to_path_buf)
            .unwrap_or_else(|| data.path().join("maildir")),
    );
    let review = Review::open(
        Arc::new(Live::new(config)),
        Arc::clone(&store) as Arc<dyn QuarantineStore>,
        audit,
        sink,
    )
    .unwrap();
    review.add_user(&local(), "op", &[Role::Operator]).unwrap();
    review.add_user(&local(), "ap", &[Role::Approver]).unwrap();
    Fixture {
        review,
        store,
        data,
    }
}

/// The local administrator at this process's command line.
fn local() -> Actor {
    Actor::local_admin(mukaika::admin::control::this_process()).unwrap()
}

/// `name` acting at this process's command line.
fn cli(name: &str) -> Actor {
    Actor::new(name, mukaika::admin::control::this_process())
}

/// A web client at `address`.
fn web_from(address: &str) -> Via {
    Via::Web {
        client: address.to_string(),
    }
}

fn item(id: &str, source: &str, at: &str) -> QuarantineItem {
    QuarantineItem {
        id: id.into(),
        source: source.into(),
        origin_id: "default/見積書.zip".into(),
        name: Some("見積書.zip".into()),
        reason: "encrypted".into(),
        detail: String::new(),
        sha256: mukaika_sanitizers::report::sha256_hex(id.as_bytes()),
        size: id.len() as u64,
        at: at.into(),
        report: serde_json::Value::Null,
        mail_from: (source == "mail").then(|| "sender@example.com".to_string()),
        rcpt_to: if source == "mail" {
            vec!["staff@city.example.lg.jp".into()]
        } else {
            Vec::new()
        },
        subject: None,
        detected_type: Some("zip".into()),
    }
}

fn files_in(dir: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default()
}

#[test]
fn an_approval_survives_a_failed_delivery_and_goes_out_on_the_next_pass() {
    let blocker = tempfile::tempdir().unwrap();
    let maildir = blocker.path().join("maildir");
    std::fs::write(&maildir, b"a file where the maildir should be").unwrap();
    let f = fixture(Some(&maildir), |_| {});
    let now = mukaika::clock::now_rfc3339();
    f.store.put(&item("I1", "mail", &now), b"I1").unwrap();
    let r = f
        .review
        .request_release(&cli("op"), "I1", Target::Original, "必要")
        .unwrap();
    assert!(
        f.review.approve(&cli("ap"), &r.id, "確認済み").is_err(),
        "delivery failed"
    );
    assert_eq!(
        f.review.request(&r.id).unwrap().state,
        RequestState::Approved
    );
    std::fs::remove_file(&maildir).unwrap();
    assert_eq!(f.review.deliver_approved().unwrap(), 1);
    assert_eq!(
        f.review.request(&r.id).unwrap().state,
        RequestState::Delivered
    );
    assert_eq!(files_in(&maildir.join("new")).len(), 1);
    assert_eq!(f.review.deliver_approved().unwrap(), 0, "delivered once");
}

#[test]
fn an_import_item_is_copied_to_its_export_folder_with_a_release_report() {
    let f = fixture(None, |_| {});
    let now = mukaika::clock::now_rfc3339();
    f.store.put(&item("I2", "import", &now), b"I2").unwrap();
    let refused = f
        .review
        .request_release(&cli("op"), "I2", Target::Original, "x");
    assert!(refused.unwrap_err().is_invalid(), "no original recipients");
    let unknown = f
        .review
        .request_release(&cli("op"), "I2", Target::Export("nowhere".into()), "x");
    assert!(unknown.unwrap_err().is_invalid());
    let r = f
        .review
        .request_release(
            &cli("op"),
            "I2",
            Target::Export("default".into()),
            "部署で必要",
        )
        .unwrap();
    let done = f.review.approve(&cli("ap"), &r.id, "確認").unwrap();
    assert_eq!(done.state, RequestState::Delivered);
    let export = f.data.path().join("export");
    assert_eq!(std::fs::read(export.join("見積書.zip")).unwrap(), b"I2");
    let report = std::fs::read_to_string(export.join("見積書.zip.解除レポート.txt")).unwrap();
    assert!(
        report.contains("申請者: op") && report.contains("承認者: ap"),
        "{report}"
    );
}

#[test]
fn requests_whose_item_expired_are_closed_not_left_open() {
    let f = fixture(None, |_| {});
    let now = mukaika::clock::now_rfc3339();
    f.store.put(&item("I3", "mail", &now), b"I3").unwrap();
    let r = f
        .review
        .request_release(&cli("op"), "I3", Target::Original, "必要")
        .unwrap();
    f.store.remove("I3").unwrap();
    f.review.deliver_approved().unwrap();
    assert_eq!(
        f.review.request(&r.id).unwrap().state,
        RequestState::Cancelled
    );
    assert!(f.review.approve(&cli("ap"), &r.id, "x").is_err());
}

#[test]
fn wrong_roles_and_missing_reasons_are_refused_with_predicates() {
    let f = fixture(None, |_| {});
    let now = mukaika::clock::now_rfc3339();
    f.store.put(&item("I4", "mail", &now), b"I4").unwrap();
    assert!(f
        .review
        .request_release(&cli("ap"), "I4", Target::Original, "x")
        .unwrap_err()
        .is_forbidden());
    assert!(f
        .review
        .request_release(&cli("op"), "I4", Target::Original, "  ")
        .unwrap_err()
        .is_invalid());
    assert!(f
        .review
        .request_release(&cli("op"), "../I4", Target::Original, "x")
        .unwrap_err()
        .is_not_found());
    let r = f
        .review
        .request_release(&cli("op"), "I4", Target::Original, "x")
        .unwrap();
    assert!(f
        .review
        .reject(&cli("op"), &r.id, "x")
        .unwrap_err()
        .is_forbidden());
    assert!(f
        .review
        .delete(&cli("op"), "I4", "x")
        .unwrap_err()
        .is_forbidden());
    assert!(f
        .review
        .original(&cli("op"), "I4")
        .unwrap_err()
        .is_forbidden());
    assert!(f
        .review
        .add_user(&cli("op"), "x", &[Role::Admin])
        .unwrap_err()
        .is_forbidden());
}

#[test]
fn the_administrators_digest_goes_out_when_due_and_not_before() {
    let f = fixture(None, |c| {
        c.notices.admin_to = vec!["security@city.example.lg.jp".into()];
        c.notices.admin_mode = NoticeMode::Digest;
        c.notices.digest_minutes = 30;
    });
    let sink = Sink::Maildir(f.data.path().join("maildir"));
    let now = mukaika::clock::now_ms();
    let at = |mins_ago: u64| mukaika::clock::rfc3339_utc(now - mins_ago * 60_000);
    // The first pass only sets where notices start.
    assert_eq!(
        mukaika::review::digest::admin_pass(&f.review, &sink).unwrap(),
        0
    );
    let state = f.data.path().join("notice-state");
    assert!(state.exists());
    // Pretend the last digest went out 40 minutes ago; two items since, one before.
    std::fs::write(&state, at(40)).unwrap();
    f.store.put(&item("OLD", "mail", &at(50)), b"OLD").unwrap();
    f.store
        .put(&item("NEW1", "mail", &at(20)), b"NEW1")
        .unwrap();
    f.store
        .put(&item("NEW2", "import", &at(10)), b"NEW2")
        .unwrap();
    assert_eq!(
        mukaika::review::digest::admin_pass(&f.review, &sink).unwrap(),
        2
    );
    let mails = files_in(&f.data.path().join("maildir/new"));
    assert_eq!(mails.len(), 1);
    let parsed = mail_parser::MessageParser::default()
        .parse(&std::fs::read(&mails[0]).unwrap())
        .map(|m| m.into_owned())
        .unwrap();
    assert_eq!(parsed.subject(), Some("[mukaika] 隔離 2 件"));
    let body = parsed.body_text(0).unwrap();
    assert!(
        body.contains("NEW1") && body.contains("NEW2") && !body.contains("OLD"),
        "{body}"
    );
    // Not due again for another half hour, whatever arrives.
    f.store.put(&item("NEW3", "mail", &at(1)), b"NEW3").unwrap();
    assert_eq!(
        mukaika::review::digest::admin_pass(&f.review, &sink).unwrap(),
        0
    );
    assert_eq!(files_in(&f.data.path().join("maildir/new")).len(), 1);
}

#[test]
fn password_hashes_run_at_most_a_bounded_number_at_once() {
    let f = fixture(None, |c| c.admin.login_attempts_per_client = 10_000);
    std::thread::scope(|s| {
        for i in 0..24 {
            let review = &f.review;
            s.spawn(move || {
                let name = format!("ghost{i}");
                let e = review
                    .login(&name, "wrong-password", &web_from(&format!("10.0.0.{i}")))
                    .unwrap_err();
                assert!(e.is_login_failure());
            });
        }
    });
    let peak = f.review.password_hashes_peak();
    assert!(
        (1..=mukaika::review::MAX_PASSWORD_HASHES).contains(&peak),
        "{peak} hashes ran at once"
    );
}

#[test]
fn two_approvals_at_once_leave_one_record_and_a_conflict() {
    let f = fixture(None, |_| {});
    f.review
        .add_user(&local(), "ap2", &[Role::Approver])
        .unwrap();
    let now = mukaika::clock::now_rfc3339();
    for i in 0..8 {
        let id = format!("C{i}");
        f.store
            .put(&item(&id, "mail", &now), id.as_bytes())
            .unwrap();
        let r = f
            .review
            .request_release(&cli("op"), &id, Target::Original, "x")
            .unwrap();
        let barrier = std::sync::Barrier::new(2);
        let results: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = ["ap", "ap2"]
                .into_iter()
                .map(|who| {
                    let (review, barrier, rid) = (&f.review, &barrier, r.id.clone());
                    s.spawn(move || {
                        barrier.wait();
                        review.approve(&cli(who), &rid, "ok")
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "round {i}");
        assert!(
            results
                .iter()
                .any(|r| r.as_ref().is_err_and(|e| e.is_conflict())),
            "round {i}"
        );
    }
    let approvals = mukaika::audit::search(&f.data.path().join("audit"), &Default::default())
        .unwrap()
        .iter()
        .filter(|r| r.event["type"] == "release_approved")
        .count();
    assert_eq!(approvals, 8);
}

#[test]
fn a_throttled_address_leaves_the_accounts_usable_from_elsewhere() {
    let f = fixture(None, |c| {
        c.admin.lockout_attempts = 2;
        c.admin.login_attempts_per_client = 3;
        c.admin.lockout_secs = 600;
    });
    let op = f.review.reset_password(&local(), "op").unwrap();
    let ap = f.review.reset_password(&local(), "ap").unwrap();
    let attacker = "192.0.2.66";
    for name in ["nobody", "nobody", "ap", "ap", "op", "op"] {
        assert!(f
            .review
            .login(name, "wrong-password", &web_from(attacker))
            .unwrap_err()
            .is_login_failure());
    }
    assert!(
        f.review.login("op", &op, &web_from(attacker)).is_err(),
        "the address is throttled"
    );
    let counted = |name: &str| {
        let u = f.review.user(name).unwrap().unwrap();
        (u.failed, u.locked_until_ms)
    };
    // The third failure reached ap; nothing after it reached any account.
    assert_eq!(counted("ap"), (1, 0));
    assert_eq!(counted("op"), (0, 0));
    // The accounts the address tried last were never counted against: staff elsewhere log in.
    assert!(f.review.login("op", &op, &web_from("192.0.2.10")).is_ok());
    assert!(f.review.login("ap", &ap, &web_from("192.0.2.11")).is_ok());
}

/// 2030-01-01T00:00:00Z: far from the machine's clock, so only the fixture's clock can make
/// these digests due.
const T2030: u64 = 1_893_456_000_000;

fn digest_fixture(clock: &Arc<mukaika::clock::TestClock>) -> Fixture {
    fixture_at(clock.clone(), None, |c| {
        c.notices.admin_to = vec!["security@city.example.lg.jp".into()];
        c.notices.admin_mode = NoticeMode::Digest;
        c.notices.digest_minutes = 30;
    })
}

#[test]
fn admin_digest_is_due_when_the_clock_passes_digest_minutes() {
    use mukaika::clock::rfc3339_utc;
    use std::time::Duration;
    let clock = mukaika::clock::TestClock::at(T2030);
    let f = digest_fixture(&clock);
    let sink = Sink::Maildir(f.data.path().join("maildir"));
    let pass = || mukaika::review::digest::admin_pass(&f.review, &sink).unwrap();
    assert_eq!(pass(), 0, "the first pass only sets where notices start");
    clock.advance(Duration::from_secs(60));
    f.store
        .put(&item("NEW1", "mail", &rfc3339_utc(T2030 + 60_000)), b"NEW1")
        .unwrap();
    clock.advance(Duration::from_secs(28 * 60));
    assert_eq!(pass(), 0, "29 minutes after the last: not due");
    clock.advance(Duration::from_secs(60));
    assert_eq!(
        pass(),
        1,
        "30 minutes (and the settling time) after the last: due"
    );
    assert_eq!(files_in(&f.data.path().join("maildir/new")).len(), 1);
    assert_eq!(
        std::fs::read_to_string(f.data.path().join("notice-state")).unwrap(),
        rfc3339_utc(T2030 + 30 * 60_000 - 5_000)
    );
}

#[test]
fn a_damaged_digest_watermark_announces_items_rather_than_skipping_them() {
    let clock = mukaika::clock::TestClock::at(T2030);
    let f = digest_fixture(&clock);
    let sink = Sink::Maildir(f.data.path().join("maildir"));
    f.store
        .put(
            &item(
                "HELD",
                "mail",
                &mukaika::clock::rfc3339_utc(T2030 - 3_600_000),
            ),
            b"HELD",
        )
        .unwrap();
    // "zz" sorts after every timestamp: listed as text, it would hide every item.
    std::fs::write(f.data.path().join("notice-state"), "zz").unwrap();
    assert_eq!(
        mukaika::review::digest::admin_pass(&f.review, &sink).unwrap(),
        1
    );
    assert_eq!(files_in(&f.data.path().join("maildir/new")).len(), 1);
}

#[test]
fn refuses_to_remove_the_last_enabled_admin() {
    let f = fixture(None, |_| {});
    let by = local();
    f.review.add_user(&by, "kanri", &[Role::Admin]).unwrap();
    let refused = |r: Result<(), mukaika::review::ReviewError>| {
        let e = r.unwrap_err();
        assert!(e.is_forbidden(), "{e}");
    };
    refused(f.review.disable_user(&by, "kanri"));
    refused(f.review.delete_user(&by, "kanri"));
    refused(f.review.set_roles(&by, "kanri", &[Role::Operator]));
    // Keeping the admin role among others is no removal.
    f.review
        .set_roles(&by, "kanri", &[Role::Auditor, Role::Admin])
        .unwrap();
    // With a second administrator the first may go; then the second is the last.
    f.review.add_user(&by, "kanri2", &[Role::Admin]).unwrap();
    f.review.disable_user(&by, "kanri").unwrap();
    refused(f.review.set_roles(&by, "kanri2", &[Role::Approver]));
    refused(f.review.delete_user(&by, "kanri2"));
    // A disabled administrator counts for nothing: enabling it makes kanri2 removable.
    f.review.enable_user(&by, "kanri").unwrap();
    f.review.delete_user(&by, "kanri2").unwrap();
    assert!(f.review.user("kanri2").unwrap().is_none());
    // An administrator's account may not remove itself, even with another admin left.
    f.review.add_user(&by, "kanri3", &[Role::Admin]).unwrap();
    refused(f.review.disable_user(&cli("kanri"), "kanri"));
    // Nor may anyone but an administrator.
    refused(f.review.disable_user(&cli("op"), "ap"));
    f.review.disable_user(&cli("kanri"), "kanri3").unwrap();
}

#[test]
fn deleting_an_account_withdraws_its_pending_requests() {
    let f = fixture(None, |_| {});
    let now = mukaika::clock::now_rfc3339();
    f.store.put(&item("I9", "mail", &now), b"I9").unwrap();
    let r = f
        .review
        .request_release(&cli("op"), "I9", Target::Original, "必要")
        .unwrap();
    f.review.delete_user(&local(), "op").unwrap();
    let after = f.review.request(&r.id).unwrap();
    assert_eq!(after.state, RequestState::Cancelled);
    assert!(
        f.review.approve(&cli("ap"), &r.id, "ok").is_err(),
        "nothing left to approve"
    );
    let records = mukaika::audit::search(
        &f.data.path().join("audit"),
        &mukaika::audit::Search::default(),
    )
    .unwrap();
    let withdrawn = records
        .iter()
        .find(|r| r.event["type"] == "release_cancelled")
        .expect("the withdrawal is on record");
    assert_eq!(withdrawn.event["via"]["channel"], "cli");
    let deleted = records
        .iter()
        .find(|r| r.event["type"] == "user_changed" && r.event["action"] == "delete")
        .expect("the deletion is on record");
    assert_eq!(deleted.event["user"], "op");
    assert_eq!(deleted.event["via"]["channel"], "cli");
    assert_eq!(
        deleted.event["via"]["pid"],
        u64::from(std::process::id()),
        "{:?}",
        deleted.event
    );
}

#[test]
fn sessions_are_kept_as_hashes_and_end_with_account_changes() {
    let f = fixture(None, |_| {});
    let one_time = f.review.reset_password(&local(), "op").unwrap();
    let ok = f
        .review
        .login("op", &one_time, &web_from("192.0.2.1"))
        .unwrap();
    let token = f.review.open_session(&ok, "192.0.2.1").unwrap();
    let live = |token: &str| {
        matches!(
            f.review.session(token).unwrap(),
            mukaika::review::SessionLookup::Live(_)
        )
    };
    assert!(live(&token));
    let db = rusqlite::Connection::open(f.data.path().join("review.db")).unwrap();
    let stored: String = db
        .query_row("SELECT token_sha256 FROM sessions", [], |r| r.get(0))
        .unwrap();
    assert_ne!(stored, token);
    assert_eq!(
        stored,
        mukaika_sanitizers::report::sha256_hex(token.as_bytes())
    );
    assert_eq!(f.review.session_count("op").unwrap(), 1);
    // Disabling ends it, and enabling does not bring it back.
    f.review.disable_user(&local(), "op").unwrap();
    assert!(!live(&token));
    assert_eq!(f.review.session_count("op").unwrap(), 0);
    f.review.enable_user(&local(), "op").unwrap();
    assert!(!live(&token));
    // A reset ends every session; a change of password every other one.
    let ok = f
        .review
        .login("op", &one_time, &web_from("192.0.2.1"))
        .unwrap();
    let (a, b) = (
        f.review.open_session(&ok, "192.0.2.1").unwrap(),
        f.review.open_session(&ok, "192.0.2.2").unwrap(),
    );
    f.review
        .change_password(&cli("op"), &one_time, "a9#b7!c5$d3%x", Some(&a))
        .unwrap();
    assert!(live(&a) && !live(&b));
    f.review.reset_password(&local(), "op").unwrap();
    assert!(!live(&a));
}

/// A virus found only inside a container (a member of an archive the whole-file scan missed)
/// keeps the container from release and from download, as a virus at the top would.
#[test]
fn a_container_with_a_virus_inside_is_never_released_or_handed_out() {
    let f = fixture(None, |_| {});
    let now = mukaika::clock::now_rfc3339();
    let mut zip = item("M1-1", "mail", &now);
    zip.reason = "blocked-member".into();
    zip.report = serde_json::json!({
        "input": "a.zip",
        "verdict": "blocked",
        "reason": {"code": "blocked-member", "detail": "a member is blocked"},
        "children": [{
            "input": "a.zip/evil.exe",
            "verdict": "blocked",
            "reason": {"code": "virus", "detail": "Win.Test.EICAR_HDB-1"},
            "children": []
        }]
    });
    f.store.put(&zip, b"PK-with-a-virus-inside").unwrap();
    let refused = f
        .review
        .request_release(&cli("op"), "M1-1", Target::Original, "取引先に確認済み")
        .unwrap_err();
    assert!(refused.is_forbidden(), "{refused}");
    assert!(refused.to_string().contains("virus"), "{refused}");
    let refused = f.review.original(&cli("ap"), "M1-1").unwrap_err();
    assert!(refused.is_forbidden(), "{refused}");
    // A container without one is still the reviewers' to decide.
    let mut other = item("M2-1", "mail", &now);
    other.reason = "blocked-member".into();
    f.store.put(&other, b"PK").unwrap();
    f.review
        .request_release(&cli("op"), "M2-1", Target::Original, "取引先に確認済み")
        .unwrap();
}

/// Two operators asking for the same item at the same moment open one request, not two (two
/// open requests could each be approved, releasing the item twice).
#[test]
fn two_requests_for_one_item_at_once_open_one() {
    let f = fixture(None, |_| {});
    f.review
        .add_user(&local(), "op2", &[Role::Operator])
        .unwrap();
    let now = mukaika::clock::now_rfc3339();
    for i in 0..16 {
        let id = format!("D{i}");
        f.store
            .put(&item(&id, "mail", &now), id.as_bytes())
            .unwrap();
        let barrier = std::sync::Barrier::new(2);
        let results: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = ["op", "op2"]
                .into_iter()
                .map(|who| {
                    let (review, barrier, id) = (&f.review, &barrier, id.clone());
                    s.spawn(move || {
                        barrier.wait();
                        review.request_release(&cli(who), &id, Target::Original, "必要")
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "round {i}");
        let open = f.review.requests_for(&id).unwrap();
        assert_eq!(open.len(), 1, "round {i}: {open:?}");
    }
}
