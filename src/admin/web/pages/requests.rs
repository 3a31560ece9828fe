//! Release requests: the list, and the approve / reject / withdraw decisions.
//!
//! Owns: `/requests`, the posts `/requests/{id}/approve`, `/reject` (approvers) and
//! `/cancel` (operators), `/requests/bulk` (approve or reject several pending requests at
//! once: each one through the same [`Decision`] as its own form, so each is checked and
//! audited alone), and [`decision_forms`], which the item page shows as well.
//! Invariants: a decision form is offered only on a pending request and only for a role
//! that may take it; an approver never gets an approve or reject form on their own request
//! (`Review` refuses it too: 兼務の禁止); an unknown action is a 404 before any session is
//! looked at.
//! Must never: decide anything on a GET (and `Review` refuses a decision without a reason).

use std::sync::Arc;

use axum::extract::{Form, Path, Query, State};
use axum::http::HeaderMap;
use maud::{html, Markup};

use super::{act, no_such_action, state_label, Page, Params, Res};
use crate::admin::web::guard::{Admits, Approvers, Ctx, Operators, Posted, Signed};
use crate::admin::web::html::jst;
use crate::admin::web::html::{url, Lang};
use crate::admin::web::layout::{done_notice, frame};
use crate::admin::web::{lang, redirect, Web};
use crate::review::{Actor, Request, RequestState, Review, ReviewError};

/// The approve / reject / withdraw forms a request offers this account.
pub(super) fn decision_forms(ctx: &Ctx, r: &Request, me: &str) -> Markup {
    let lang = ctx.lang;
    if r.state != RequestState::Pending {
        return html! {};
    }
    let form = |action: &str, label: &str| {
        html! {
            form method="post" action={ "/requests/" (url(&r.id)) "/" (action) } {
                input type="hidden" name="csrf" value=(ctx.session.csrf);
                input name="reason" required placeholder=(lang.t("理由", "reason")) size="24";
                " "
                button { (label) }
            }
        }
    };
    html! {
        @if ctx.may::<Approvers>() {
            @if r.requester == me {
                span.badge { (lang.t("自分の申請は承認できません", "You cannot decide your own request")) }
            } @else {
                (form("approve", lang.t("承認", "Approve")))
                (form("reject", lang.t("却下", "Reject")))
            }
        }
        @if ctx.may::<Operators>() {
            (form("cancel", lang.t("取り下げ", "Withdraw")))
        }
    }
}

/// The requests table's columns: sort key (empty: not sortable), Japanese and English heading.
const REQUEST_COLUMNS: [(&str, &str, &str); 8] = [
    ("id", "ID", "ID"),
    ("item", "隔離ID", "Item"),
    ("requested", "申請日時", "Requested"),
    ("requester", "申請者", "Requester"),
    ("", "宛先・出力先", "Target"),
    ("", "理由", "Reason"),
    ("state", "状態", "State"),
    ("", "", ""),
];

/// The order the query asks for (`sort`, `dir`); newest request first by default.
fn request_order(q: &Params) -> (&'static str, bool) {
    let key = q
        .get("sort")
        .and_then(|k| {
            REQUEST_COLUMNS
                .iter()
                .find(|(c, _, _)| !c.is_empty() && c == k)
        })
        .map_or("requested", |(c, _, _)| *c);
    let desc = match q.get("dir").map(String::as_str) {
        Some("asc") => false,
        Some("desc") => true,
        _ => key == "requested",
    };
    (key, desc)
}

/// Orders the requests by column `key` (ties by request time, then ID: a stable order).
fn sort_requests(all: &mut [Request], key: &str, desc: bool) {
    all.sort_by(|a, b| {
        let primary = match key {
            "id" => a.id.cmp(&b.id),
            "item" => a.item_id.cmp(&b.item_id),
            "requester" => a.requester.cmp(&b.requester),
            "state" => a.state.as_str().cmp(b.state.as_str()),
            _ => std::cmp::Ordering::Equal,
        };
        let o = primary
            .then_with(|| a.requested_at.cmp(&b.requested_at))
            .then_with(|| a.id.cmp(&b.id));
        if desc {
            o.reverse()
        } else {
            o
        }
    });
}

/// A heading that sorts the table by `key` (a plain link, no script), saying in `aria-sort`
/// which way the current column runs.
fn request_heading(lang: Lang, key: &str, label: &str, (current, desc): (&str, bool)) -> Markup {
    let on = current == key;
    let next = if on && !desc { "desc" } else { "asc" };
    let aria = on.then_some(if desc { "descending" } else { "ascending" });
    html! {
        th scope="col" aria-sort=[aria] {
            a href={ "/requests?sort=" (key) "&dir=" (next) } title=(lang.t("この列で並べ替え", "Sort by this column")) {
                (label)
                @if on { " " (if desc { "▼" } else { "▲" }) }
            }
        }
    }
}

pub(super) async fn requests(
    State(web): State<Arc<Web>>,
    Query(q): Query<Params>,
    Signed(ctx, _): Signed,
) -> Page {
    let lang = ctx.lang;
    let mut all = act(&web, &ctx, |review, _| review.requests(None)).await?;
    let (key, desc) = request_order(&q);
    sort_requests(&mut all, key, desc);
    let me = ctx.session.user.as_str();
    let sections = [
        (lang.t("承認待ち", "Awaiting approval"), true),
        (
            lang.t(
                "これまでの申請（最新 200 件）",
                "Earlier requests (latest 200)",
            ),
            false,
        ),
    ];
    let bulk = ctx.may::<Approvers>();
    let body = html! {
        (done_notice(lang, q.get("done").map(String::as_str)))
        @for (title, pending) in sections {
            h2 { (title) }
            table {
                caption.sr { (title) }
                thead { tr {
                    @for (k, ja, en) in REQUEST_COLUMNS {
                        @if k.is_empty() {
                            th scope="col" { (lang.t(ja, en)) }
                        } @else {
                            (request_heading(lang, k, lang.t(ja, en), (key, desc)))
                        }
                    }
                } }
                @for r in all.iter().filter(|r| (r.state == RequestState::Pending) == pending).take(200) {
                    tr {
                        th scope="row" {
                            @if pending && bulk && r.requester != me {
                                input type="checkbox" form="bulk-requests" name={ "sel-" (r.id) } value="1"
                                    aria-label={ (lang.t("選択: ", "Pick: ")) (r.id) };
                                " "
                            }
                            span.id { (r.id) }
                        }
                        td { a.id href={ "/items/" (url(&r.item_id)) } { (r.item_id) } }
                        td { @let t = jst(&r.requested_at); @let (d, h) = t.split_once(' ').unwrap_or((t.as_str(), ""));
                            span.nw { (d) } " " span.nw { (h) } }
                        td { (r.requester) }
                        td.long { (r.target) }
                        td.long { (r.reason) }
                        td {
                            (state_label(lang, r.state))
                            @if let Some(by) = &r.decided_by {
                                " — " (by) " " (r.decision_reason.as_deref().unwrap_or(""))
                            }
                        }
                        td.long { (decision_forms(&ctx, r, me)) }
                    }
                }
            }
            @if pending && bulk {
                form #bulk-requests method="post" action="/requests/bulk" {
                    input type="hidden" name="csrf" value=(ctx.session.csrf);
                    fieldset.bulk {
                        legend { (lang.t("選択した申請をまとめて判断", "Decide the picked requests")) }
                        label { (lang.t("判断", "Decision")) " "
                            select name="action" {
                                option value="approve" { (lang.t("承認", "Approve")) }
                                option value="reject" { (lang.t("却下", "Reject")) }
                            }
                        }
                        label { (lang.t("理由", "Reason")) " " input name="reason" required; }
                        button { (lang.t("実行", "Apply")) }
                    }
                }
            }
        }
    };
    Ok(frame(
        lang,
        &ctx.viewer(),
        lang.t("解除申請", "Release requests"),
        body,
    ))
}

/// One kind of decision on a pending request: who may take it, what it does, and the
/// `done` message it leads to.
pub(super) trait Decision: Send + Sync + 'static {
    /// The roles that may take it.
    type Who: Admits;
    /// The `?done=` key of the item page afterwards.
    const DONE: &'static str;
    /// Takes it as `user` on request `id`.
    fn take(review: &Review, user: &Actor, id: &str, reason: &str) -> Result<(), ReviewError>;
}

/// An approver releases the item (to the sink, now).
pub(super) struct Approve;
/// An approver refuses; the item stays held.
pub(super) struct Reject;
/// The request is withdrawn by an operator.
pub(super) struct Cancel;

impl Decision for Approve {
    type Who = Approvers;
    const DONE: &'static str = "approved";
    fn take(review: &Review, user: &Actor, id: &str, reason: &str) -> Result<(), ReviewError> {
        review.approve(user, id, reason).map(|_| ())
    }
}

impl Decision for Reject {
    type Who = Approvers;
    const DONE: &'static str = "rejected";
    fn take(review: &Review, user: &Actor, id: &str, reason: &str) -> Result<(), ReviewError> {
        review.reject(user, id, reason)
    }
}

impl Decision for Cancel {
    type Who = Operators;
    const DONE: &'static str = "cancelled";
    fn take(review: &Review, user: &Actor, id: &str, reason: &str) -> Result<(), ReviewError> {
        review.cancel(user, id, reason)
    }
}

/// Takes decision `D` on request `id`, then shows the item with the outcome.
pub(super) async fn decide<D: Decision>(
    State(web): State<Arc<Web>>,
    Path(id): Path<String>,
    post: Posted<D::Who>,
) -> Page {
    let reason = post.field("reason");
    let item = act(&web, &post.ctx, move |review, user| {
        let item = review.request(&id)?.item_id;
        D::take(review, user, &id, &reason).map(|()| item)
    })
    .await?;
    Ok(redirect(&format!("/items/{}?done={}", url(&item), D::DONE)))
}

/// Any other action: 404 before the session is looked at (the form is still read first).
pub(super) async fn unknown_action(
    headers: HeaderMap,
    Path(_): Path<(String, String)>,
    Form(_): Form<Params>,
) -> Res {
    no_such_action(lang(&headers))
}

/// `/requests/bulk`: approve or reject each picked request as its own form would (the
/// requester's own are refused one by one: 兼務の禁止); a page with each one's outcome.
pub(super) async fn bulk(State(web): State<Arc<Web>>, post: Posted<Approvers>) -> Page {
    let lang = post.ctx.lang;
    let action = post.field("action");
    if action != "approve" && action != "reject" {
        return Err(no_such_action(lang));
    }
    let reason = post.field("reason");
    super::run_bulk(
        &web,
        &post.ctx,
        &post.form,
        lang.t("申請が選ばれていません。", "No request was picked."),
        super::Bulk {
            title: lang.t("まとめて判断した結果", "Bulk decision"),
            caption: lang.t("申請ごとの結果", "Outcome per request"),
            back: (
                "/requests",
                lang.t("解除申請へ戻る", "Back to the requests"),
            ),
            item_links: false,
        },
        move |review, user, id| {
            if action == "approve" {
                Approve::take(review, user, id, &reason)
            } else {
                Reject::take(review, user, id, &reason)
            }
        },
    )
    .await
}
