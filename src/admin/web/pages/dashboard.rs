//! The dashboard: what is held and why, what waits for a decision, and the queues.
//!
//! Owns: `/`. Shows the previous login of this account (対策基準 7.2(4)), counts of items
//! by status, and charts drawn on the server (see `charts`): what each of the last
//! [`DAYS`] Japan-time days brought by verdict (from the audit log), the held items by reason
//! (from the quarantine store), the PPAP items (held / unlocked by way / expired: see
//! [`crate::ppap::links::counts`]) and the spool depths; the pending requests.
//! Invariants: counts only (no item content), each linking to the filtered list where there
//! is one; open to every logged-in account; SVG inline, no script, no inline style.
//! Must never: fail open when the store cannot be read (it shows the error page instead).

use std::collections::{BTreeMap, HashMap};

use super::charts::{bars, day_volumes, stacked_days, verdict_label, Bar, VERDICTS};
use std::sync::Arc;

use axum::extract::{Query, State};
use maud::html;

use super::{
    held_items, reason_label, status_key, status_label, unreadable, Page, Params, STATUS_KEYS,
};
use crate::admin::web::guard::Signed;
use crate::admin::web::html::jst;
use crate::admin::web::html::{url, Lang};
use crate::admin::web::layout::{done_notice, frame, head_row};
use crate::admin::web::{blocking, Session, Web};
use crate::review::RequestState;

/// Japan-time days the volume chart covers, today included.
const DAYS: u64 = 14;

/// The line about the previous login and the failures since.
fn previous_login(lang: Lang, s: &Session) -> String {
    match &s.previous_login {
        Some(at) => format!(
            "{} {}（{}）。{} {} {}",
            lang.t("前回のログイン:", "Previous login:"),
            jst(at),
            s.previous_from.as_deref().unwrap_or("-"),
            lang.t("その後のログイン失敗:", "Failed attempts since:"),
            s.failed_since,
            lang.t("回", "")
        ),
        None => format!(
            "{} {} {}",
            lang.t(
                "初めてのログインです。これまでのログイン失敗:",
                "First login. Failed attempts so far:"
            ),
            s.failed_since,
            lang.t("回", "")
        ),
    }
}

pub(super) async fn dashboard(
    State(web): State<Arc<Web>>,
    Query(q): Query<Params>,
    Signed(ctx, _): Signed,
) -> Page {
    let lang = ctx.lang;
    let (items, statuses) = held_items(&web, lang).await?;
    let w = Arc::clone(&web);
    let now = crate::clock::now_ms();
    let since = crate::clock::rfc3339_utc(now.saturating_sub(DAYS * 86_400_000));
    let (pending, depths, unlocked, trail) = blocking(move || {
        let depths: Vec<(&str, crate::store::spool::Depths)> =
            w.spools.iter().map(|(n, s)| (*n, s.depths())).collect();
        let unlocked = crate::ppap::links::unlocked_all(&w.review.config().data.dir);
        let trail = crate::audit::search(
            &w.audit_dir,
            &crate::audit::Search {
                since: Some(since),
                ..Default::default()
            },
        );
        (
            w.review.requests(Some(RequestState::Pending)),
            depths,
            unlocked,
            trail,
        )
    })
    .await?;
    let pending = pending.map_err(|_| unreadable(lang))?;
    let unlocked = unlocked.map_err(|_| unreadable(lang))?;
    // An unreadable audit log leaves the chart empty rather than the page: the counts from
    // the store still stand, and `mukaika audit verify` is where the log is judged.
    let volumes = day_volumes(&trail.unwrap_or_default());
    let days: Vec<(String, [usize; 4])> = (0..DAYS)
        .rev()
        .map(|back| {
            let day = crate::clock::jst_date(now.saturating_sub(back * 86_400_000));
            let counts = volumes.get(&day).copied().unwrap_or_default();
            (day, counts)
        })
        .collect();
    let ppap = crate::ppap::links::counts(&items, &unlocked, now, &web.review.config().ppap);
    let mut by_status: HashMap<&str, usize> = HashMap::new();
    let mut by_reason: BTreeMap<&str, usize> = BTreeMap::new();
    for i in &items {
        *by_status
            .entry(status_key(statuses.get(&i.id).copied()))
            .or_default() += 1;
        *by_reason.entry(i.reason.as_str()).or_default() += 1;
    }
    let mut reasons: Vec<(&str, usize)> = by_reason.into_iter().collect();
    reasons.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let reason_bars: Vec<Bar> = reasons
        .iter()
        .map(|(reason, n)| Bar {
            label: reason_label(lang, reason),
            value: *n,
            href: Some(format!("/items?reason={}", url(reason))),
            alt: false,
        })
        .collect();
    let mut ppap_bars = vec![Bar {
        label: lang
            .t("保留中（未解除）", "held (not unlocked)")
            .to_string(),
        value: ppap.held,
        href: Some("/items?reason=encrypted".into()),
        alt: false,
    }];
    for (way, ja, en) in [
        (
            "password-mail",
            "パスワードメールで解除",
            "unlocked: password mail",
        ),
        ("same-mail", "同じメールで解除", "unlocked: same mail"),
        ("web", "画面で解除", "unlocked: web"),
        ("cli", "CLI で解除", "unlocked: CLI"),
    ] {
        ppap_bars.push(Bar {
            label: lang.t(ja, en).to_string(),
            value: ppap.unlocked.get(way).copied().unwrap_or(0),
            href: None,
            alt: false,
        });
    }
    ppap_bars.push(Bar {
        label: lang
            .t("期限切れ（保留中）", "expired (still held)")
            .to_string(),
        value: ppap.expired,
        href: None,
        alt: true,
    });
    let queue_bars: Vec<Bar> = depths
        .iter()
        .flat_map(|(name, d)| {
            [
                ("incoming", d.incoming, false),
                ("active", d.active, false),
                ("deferred", d.deferred, true),
                ("hold", d.hold, true),
            ]
            .map(|(state, value, alt)| Bar {
                label: format!("{name} {state}"),
                value,
                href: None,
                alt,
            })
        })
        .collect();
    let body = html! {
        (done_notice(lang, q.get("done").map(String::as_str)))
        p.notice {
            (previous_login(lang, &ctx.session)) br;
            (lang.t("あなたの役割: ", "Your roles: ")) (crate::admin::web::layout::roles_label(lang, &ctx.session.roles))
        }
        table.status {
            caption { (lang.t("状態別の件数", "Items by status")) }
            thead { tr { @for key in STATUS_KEYS { th scope="col" { a href={ "/items?status=" (key) } { (status_label(lang, key)) } } } } }
            tbody { tr { @for key in STATUS_KEYS { td.num { (by_status.get(key).unwrap_or(&0)) } } } }
        }
        p { a href="/requests" { (lang.t("承認待ちの申請:", "Requests awaiting approval:")) " " (pending.len()) } }
        div.charts {
            (stacked_days(lang, lang.t("日別の処理件数（直近 14 日、判定別）", "Volume per day (last 14 days, by verdict)"), &days))
            (bars(lang.t("隔離の理由別", "Held items by reason"), &reason_bars))
            (bars(lang.t("パスワード付きファイル（PPAP）", "Password-protected files (PPAP)"), &ppap_bars))
            (bars(lang.t("キューの状況", "Queue depths"), &queue_bars))
        }
        // The same numbers as tables, for screen readers and for copying.
        details.numbers {
            summary { (lang.t("数値を表で見る", "The numbers as tables")) }
            table.ppap {
                caption { (lang.t("パスワード付きファイル（PPAP）", "Password-protected files (PPAP)")) }
                (head_row(lang, &[("区分", "Kind"), ("件数", "Count")]))
                tr {
                    td { a href="/items?reason=encrypted" { (lang.t("保留中（未解除）", "held (not unlocked)")) } }
                    td.held { (ppap.held) }
                }
                @for way in ["password-mail", "same-mail", "web", "cli"] {
                    tr {
                        td { (lang.t("解除済み", "unlocked")) " — " (way) }
                        td { (ppap.unlocked.get(way).unwrap_or(&0)) }
                    }
                }
                tr {
                    td { (lang.t("期限切れ（期限内に解除されず保留中）", "expired (never unlocked in time, still held)")) }
                    td.expired { (ppap.expired) }
                }
            }
            table.days {
                caption { (lang.t("日別の処理件数", "Volume per day")) }
                thead { tr {
                    th scope="col" { (lang.t("日付", "Day")) }
                    @for class in VERDICTS { th scope="col" { (verdict_label(lang, class)) } }
                } }
                tbody {
                    @for (day, counts) in days.iter().rev() {
                        tr {
                            th scope="row" { span.nw { (day) } }
                            @for n in counts { td.num { (n) } }
                        }
                    }
                }
            }
        }
    };
    Ok(frame(
        lang,
        &ctx.viewer(),
        lang.t("ダッシュボード", "Dashboard"),
        body,
    ))
}
