//! The dashboard: what is held and why, what waits for a decision, and the queues.
//!
//! Owns: `/`. Shows the previous login of this account (対策基準 7.2(4)), counts of items
//! by status, reason and Japan-time day, the PPAP items (held / unlocked by way / expired:
//! see [`crate::ppap::links::counts`]), the pending requests and the spool depths.
//! Invariants: counts only (no item content), each linking to the filtered list; open to
//! every logged-in account.
//! Must never: fail open when the store cannot be read (it shows the error page instead).

use std::collections::{BTreeMap, HashMap};
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
    let (pending, depths, unlocked) = blocking(move || {
        let depths: Vec<(&str, crate::store::spool::Depths)> =
            w.spools.iter().map(|(n, s)| (*n, s.depths())).collect();
        let unlocked = crate::ppap::links::unlocked_all(&w.review.config().data.dir);
        (
            w.review.requests(Some(RequestState::Pending)),
            depths,
            unlocked,
        )
    })
    .await?;
    let pending = pending.map_err(|_| unreadable(lang))?;
    let unlocked = unlocked.map_err(|_| unreadable(lang))?;
    let ppap = crate::ppap::links::counts(
        &items,
        &unlocked,
        crate::clock::now_ms(),
        &web.review.config().ppap,
    );
    let mut by_status: HashMap<&str, usize> = HashMap::new();
    let mut by_reason: BTreeMap<&str, usize> = BTreeMap::new();
    let mut by_day: BTreeMap<String, usize> = BTreeMap::new();
    for i in &items {
        *by_status
            .entry(status_key(statuses.get(&i.id).copied()))
            .or_default() += 1;
        *by_reason.entry(i.reason.as_str()).or_default() += 1;
        *by_day
            .entry(jst(&i.at).chars().take(10).collect())
            .or_default() += 1;
    }
    let body = html! {
        (done_notice(lang, q.get("done").map(String::as_str)))
        p.notice { (previous_login(lang, &ctx.session)) }
        h2 { (lang.t("状態別", "By status")) }
        table {
            tr { @for key in STATUS_KEYS { th { a href={ "/items?status=" (key) } { (status_label(lang, key)) } } } }
            tr { @for key in STATUS_KEYS { td { (by_status.get(key).unwrap_or(&0)) } } }
        }
        p { a href="/requests" { (lang.t("承認待ちの申請:", "Requests awaiting approval:")) " " (pending.len()) } }
        h2 { (lang.t("理由別", "By reason")) }
        table {
            (head_row(lang, &[("理由", "Reason"), ("件数", "Count")]))
            @for (reason, n) in &by_reason {
                tr {
                    td { a href={ "/items?reason=" (url(reason)) } { (reason_label(lang, reason)) } }
                    td { (n) }
                }
            }
        }
        h2 { (lang.t("パスワード付きファイル（PPAP）", "Password-protected files (PPAP)")) }
        table.ppap {
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
        h2 { (lang.t("日別（直近 14 日）", "By day (last 14 days)")) }
        table {
            (head_row(lang, &[("日付", "Day"), ("件数", "Count")]))
            @for (day, n) in by_day.iter().rev().take(14) {
                tr {
                    td { a href={ "/items?since=" (day) "&until=" (day) } { (day) } }
                    td { (n) }
                }
            }
        }
        h2 { (lang.t("キューの状況", "Queue depths")) }
        table {
            (head_row(lang, &[
                ("キュー", "Queue"),
                ("incoming", "incoming"),
                ("active", "active"),
                ("deferred", "deferred"),
                ("hold", "hold"),
            ]))
            @for (name, d) in &depths {
                tr { td { (name) } td { (d.incoming) } td { (d.active) } td { (d.deferred) } td { (d.hold) } }
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
