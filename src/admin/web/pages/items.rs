//! The quarantine list: every held item, filtered, searched, sorted and paged; its CSV
//! download; and the bulk actions on the items ticked in it.
//!
//! Owns: `/items` and its filters (`since`, `until` as Japan-time days, `source`, `sender`,
//! `recipient`, `reason`, `type`, `status`, `q`, `page`), its sort (`sort` = a column key of
//! [`SORTS`], `dir` = `asc` | `desc`: links in the column headings, marked with `aria-sort`,
//! no script), `/items.csv` (the same filters and order, every matching row) and the post
//! `/items/bulk` (request release to the original recipients, or delete, for several items).
//! Invariants: newest first unless sorted otherwise, [`PAGE_SIZE`] a page; long senders,
//! recipients, subjects and names are cut (the item page shows them whole); the filter form
//! shows back what was asked, folded unless a filter is set; under 1280 px the source and
//! type columns fold away (the item page and the CSV keep them), so rows stay two lines. A bulk action is the single-item action once per ticked item,
//! through `Review` (roles, 兼務の禁止, the reason, the audit record each), and its page says
//! what happened to each item.
//! Must never: show more of an item than its recorded metadata (the content is on the item
//! page, as text), echo `done` back as anything but a fixed message, or act on an item in
//! bulk that the same account could not act on alone.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use maud::{html, Markup};

use super::{csv, held_items, reason_label, status_key, status_label, Page, Params, STATUS_KEYS};
use crate::admin::web::guard::{Anyone, Approvers, Operators, Posted, Signed};
use crate::admin::web::html::{cut, url, Lang};
use crate::admin::web::html::{jst, parse_filter_time};
use crate::admin::web::layout::{done_notice, error_page, frame};
use crate::admin::web::Web;
use crate::review::{RequestState, Target};
use crate::store::quarantine::QuarantineItem;

/// The query keys that filter the list.
const FILTERS: [&str; 9] = [
    "since",
    "until",
    "source",
    "sender",
    "recipient",
    "reason",
    "type",
    "status",
    "q",
];

/// Recipients as the list shows them: the first, and how many more.
fn recipients_short(lang: Lang, rcpt: &[String]) -> String {
    match rcpt {
        [] => "-".to_string(),
        [one] => cut(one, 40).into_owned(),
        [first, rest @ ..] => format!(
            "{} {}{}{}",
            cut(first, 40),
            lang.t("他 ", "+"),
            rest.len(),
            lang.t(" 件", " more")
        ),
    }
}

/// Items per list page.
const PAGE_SIZE: usize = 50;

/// A `since`/`until` value as people type it (local time, `[ui] timezone`, as the table shows
/// it) in ms; an `until` that is a bare day includes that day.
fn people_bound(value: &str, until: bool) -> Option<u64> {
    if until {
        crate::clock::parse_people_until(value)
    } else {
        crate::clock::parse_people_time(value)
    }
}

/// The page refusing a `since`/`until` the list cannot read (a typo must not read as "no
/// limit": the list, its CSV and a bulk action would take every item). The page is the error,
/// as in every handler here.
#[allow(clippy::result_large_err)]
fn bad_bound(lang: Lang, q: &Params) -> Result<(), super::Res> {
    for key in ["since", "until"] {
        let Some(v) = q.get(key).map(|v| v.trim()).filter(|v| !v.is_empty()) else {
            continue;
        };
        if people_bound(v, key == "until").is_none() {
            return Err(error_page(
                lang,
                StatusCode::BAD_REQUEST,
                &format!(
                    "{}: {v}",
                    lang.t(
                        "日付は 2026-11-27 または 2026-11-27 09:30（画面と同じ現地時刻）の形で入力してください",
                        "Enter dates as 2026-11-27 or 2026-11-27 09:30 (local time, as the table shows)"
                    )
                ),
            ));
        }
    }
    Ok(())
}

/// The list's `since` and `until` in ms, read once per request (unreadable ones were refused
/// before, by `bad_bound`).
type Bounds = (Option<u64>, Option<u64>);

fn bounds(q: &Params) -> Bounds {
    let get = |k: &str| q.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    (
        get("since").and_then(|v| people_bound(v, false)),
        get("until").and_then(|v| people_bound(v, true)),
    )
}

/// Whether an item passes the list filters. Dates are local days (`YYYY-MM-DD`, `[ui] timezone`).
fn passes(i: &QuarantineItem, status: &str, q: &Params, (since, until): Bounds) -> bool {
    let get = |k: &str| q.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    let contains = |hay: &str, needle: &str| hay.to_lowercase().contains(&needle.to_lowercase());
    let at = parse_filter_time(&i.at).unwrap_or(0);
    since.is_none_or(|s| at >= s)
        && until.is_none_or(|u| at < u)
        && get("source").is_none_or(|s| i.source == s)
        && get("reason").is_none_or(|r| i.reason == r)
        && get("status").is_none_or(|s| status == s)
        && get("type").is_none_or(|t| i.detected_type.as_deref().is_some_and(|d| contains(d, t)))
        && get("sender").is_none_or(|s| i.mail_from.as_deref().is_some_and(|f| contains(f, s)))
        && get("recipient").is_none_or(|r| i.rcpt_to.iter().any(|t| contains(t, r)))
        && get("q").is_none_or(|needle| {
            [
                Some(i.id.as_str()),
                Some(i.origin_id.as_str()),
                i.name.as_deref(),
                i.subject.as_deref(),
                i.mail_from.as_deref(),
                Some(i.detail.as_str()),
                Some(i.sha256.as_str()),
            ]
            .into_iter()
            .flatten()
            .any(|h| contains(h, needle))
        })
}

/// The columns the list sorts by: query key, Japanese and English heading.
const SORTS: [(&str, &str, &str); 8] = [
    ("id", "ID", "ID"),
    ("at", "日時", "Time"),
    ("source", "経路", "Source"),
    ("sender", "差出人・宛先", "Sender, recipients"),
    ("subject", "件名・名前", "Subject, name"),
    ("reason", "理由", "Reason"),
    ("type", "形式", "Type"),
    ("status", "状態", "Status"),
];

/// The chosen sort column and whether it is descending (newest first by default).
fn sort_of(q: &Params) -> (&'static str, bool) {
    let key = q
        .get("sort")
        .and_then(|k| SORTS.iter().find(|(s, _, _)| s == k))
        .map(|(s, _, _)| *s)
        .unwrap_or("at");
    let desc = match q.get("dir").map(String::as_str) {
        Some("asc") => false,
        Some("desc") => true,
        _ => key == "at",
    };
    (key, desc)
}

/// Orders two rows by column `key` (ties by time, then ID, so the order is stable).
fn compare(
    key: &str,
    a: &(&QuarantineItem, &'static str),
    b: &(&QuarantineItem, &'static str),
) -> Ordering {
    let text = |i: &QuarantineItem| -> String {
        match key {
            "id" => i.id.clone(),
            "source" => i.source.clone(),
            "sender" => i.mail_from.clone().unwrap_or_default().to_lowercase(),
            "subject" => i
                .subject
                .clone()
                .or_else(|| i.name.clone())
                .unwrap_or_default(),
            "reason" => i.reason.clone(),
            "type" => i.detected_type.clone().unwrap_or_default(),
            _ => String::new(),
        }
    };
    let primary = if key == "status" {
        a.1.cmp(b.1)
    } else {
        text(a.0).cmp(&text(b.0))
    };
    primary
        .then_with(|| a.0.at.cmp(&b.0.at))
        .then_with(|| a.0.id.cmp(&b.0.id))
}

/// The query string of `q` with `set` replacing its keys (`done` and empty values dropped).
fn query_with(q: &Params, set: &[(&str, String)]) -> String {
    let mut params: Vec<String> = q
        .iter()
        .filter(|(k, v)| k.as_str() != "done" && !v.is_empty() && !set.iter().any(|(s, _)| s == k))
        .map(|(k, v)| format!("{}={}", url(k), url(v)))
        .chain(set.iter().map(|(k, v)| format!("{k}={}", url(v))))
        .collect();
    params.sort();
    params.join("&")
}

/// The list URL for page `n` with the same filters and order.
fn page_link(q: &Params, n: usize) -> String {
    format!("/items?{}", query_with(q, &[("page", n.to_string())]))
}

/// A column heading that sorts by `key`: ascending first, the other way when it is the
/// current order; the current column says which way in `aria-sort`.
fn sort_heading(lang: Lang, q: &Params, key: &str, label: &str) -> Markup {
    let (current, desc) = sort_of(q);
    let on = current == key;
    let next = if on && !desc { "desc" } else { "asc" };
    let aria = on.then_some(if desc { "descending" } else { "ascending" });
    let href = format!(
        "/items?{}",
        query_with(q, &[("sort", key.to_string()), ("dir", next.to_string())])
    );
    // Source and type fold away under 1280 px (the item page and the CSV keep them).
    let class = matches!(key, "source" | "type").then_some("opt");
    html! {
        th scope="col" class=[class] aria-sort=[aria] {
            a href=(href) title=(lang.t("この列で並べ替え", "Sort by this column")) {
                (label)
                @if on { " " (if desc { "▼" } else { "▲" }) }
            }
        }
    }
}

/// The items passing the filters, in the chosen order, each with its status key.
fn listed<'a>(
    all: &'a [QuarantineItem],
    statuses: &HashMap<String, RequestState>,
    q: &Params,
) -> Vec<(&'a QuarantineItem, &'static str)> {
    let (key, desc) = sort_of(q);
    let range = bounds(q);
    let mut matching: Vec<(&QuarantineItem, &'static str)> = all
        .iter()
        .map(|i| (i, status_key(statuses.get(&i.id).copied())))
        .filter(|(i, s)| passes(i, s, q, range))
        .collect();
    matching.sort_by(|a, b| {
        let o = compare(key, a, b);
        if desc {
            o.reverse()
        } else {
            o
        }
    });
    matching
}

pub(super) async fn items(
    State(web): State<Arc<Web>>,
    Query(q): Query<Params>,
    Signed(ctx, _): Signed,
) -> Page {
    let lang = ctx.lang;
    bad_bound(lang, &q)?;
    let (all, statuses) = held_items(&web, lang).await?;
    let mut reasons: Vec<&str> = all.iter().map(|i| i.reason.as_str()).collect();
    reasons.sort_unstable();
    reasons.dedup();
    let matching = listed(&all, &statuses, &q);
    let pages = matching.len().div_ceil(PAGE_SIZE).max(1);
    let page_no = q
        .get("page")
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(1)
        .clamp(1, pages);
    let value = |k: &str| q.get(k).map(String::as_str).unwrap_or("");
    let chosen = |k: &str, v: &str| q.get(k).map(String::as_str) == Some(v);
    let bulk = ctx.may::<Operators>() || ctx.may::<Approvers>();
    let filtered = FILTERS
        .iter()
        .any(|k| q.get(*k).is_some_and(|v| !v.trim().is_empty()));
    let body = html! {
        (done_notice(lang, q.get("done").map(String::as_str)))
        // Folded unless a filter is set, so the first screen shows rows rather than fields.
        details.filterbox open[filtered] {
        summary { (lang.t("絞り込み・検索", "Filter and search")) @if filtered { " (" (lang.t("条件あり", "active")) ")" } }
        form.filters method="get" action="/items" {
            label { (lang.t("期間（開始）", "From")) input type="date" name="since" value=(value("since")); }
            label { (lang.t("期間（終了）", "To")) input type="date" name="until" value=(value("until")); }
            label {
                (lang.t("経路", "Source"))
                select name="source" {
                    option value="" { "—" }
                    option value="mail" selected[chosen("source", "mail")] { (lang.t("メール", "mail")) }
                    option value="import" selected[chosen("source", "import")] { (lang.t("取り込み", "import")) }
                }
            }
            label { (lang.t("差出人", "Sender")) input name="sender" value=(value("sender")); }
            label { (lang.t("宛先", "Recipient")) input name="recipient" value=(value("recipient")); }
            label {
                (lang.t("理由", "Reason"))
                select name="reason" {
                    option value="" { "—" }
                    @for r in &reasons {
                        option value=(r) selected[chosen("reason", r)] { (reason_label(lang, r)) }
                    }
                }
            }
            label { (lang.t("形式", "Type")) input name="type" value=(value("type")); }
            label {
                (lang.t("状態", "Status"))
                select name="status" {
                    option value="" { "—" }
                    @for key in STATUS_KEYS {
                        option value=(key) selected[chosen("status", key)] { (status_label(lang, key)) }
                    }
                }
            }
            label {
                (lang.t("検索（ID・件名・名前・SHA-256）", "Search (ID, subject, name, SHA-256)"))
                input type="search" name="q" value=(value("q"));
            }
            @if let Some(sort) = q.get("sort") { input type="hidden" name="sort" value=(sort); }
            @if let Some(dir) = q.get("dir") { input type="hidden" name="dir" value=(dir); }
            button { (lang.t("絞り込む", "Filter")) }
        }
        }
        div.tools {
            span { (matching.len()) " " (lang.t("件", "items")) }
            a href={ "/items.csv?" (query_with(&q, &[])) } download { (lang.t("この一覧を CSV でダウンロード", "Download this list as CSV")) }
        }
        form method="post" action="/items/bulk" {
            input type="hidden" name="csrf" value=(ctx.session.csrf);
            table.items {
                caption { (lang.t("隔離された項目", "Quarantined items")) " (" (page_no) " / " (pages) ")" }
                thead { tr {
                    @if bulk { th scope="col" { span.nw { (lang.t("選択", "Pick")) } } }
                    @for (key, ja, en) in SORTS { (sort_heading(lang, &q, key, lang.t(ja, en))) }
                } }
                tbody {
                    @for (i, status) in matching.iter().skip((page_no - 1) * PAGE_SIZE).take(PAGE_SIZE) {
                        tr {
                            @if bulk {
                                td { input type="checkbox" name={ "sel-" (i.id) } value="1" id={ "sel-" (i.id) }
                                    aria-label={ (lang.t("選択: ", "Pick: ")) (i.id) }; }
                            }
                            th scope="row" { a.id href={ "/items/" (url(&i.id)) } { (i.id) } }
                            td.when { @let t = jst(&i.at); @let (d, h) = t.split_once(' ').unwrap_or((t.as_str(), ""));
                                span.nw { (d) } " " span.nw { (h) } }
                            td.nw.opt { (source_label(lang, &i.source)) }
                            td.long {
                                (cut(i.mail_from.as_deref().unwrap_or("-"), 40))
                                span.sub2 title=(i.rcpt_to.join(", ")) { "→\u{a0}" (recipients_short(lang, &i.rcpt_to)) }
                            }
                            td.long {
                                (cut(i.subject.as_deref().unwrap_or("-"), 80))
                                span.sub2 { (cut(i.name.as_deref().unwrap_or(lang.t("（メール全体）", "(whole message)")), 80)) }
                            }
                            // The code as a tooltip: the description alone keeps the row at two lines.
                            td.long.reason title=(i.reason) {
                                @match lang {
                                    Lang::Ja => { (crate::sink::notice::reason_ja(&i.reason)) }
                                    Lang::En => { (i.reason) }
                                }
                            }
                            td.nw.opt { (i.detected_type.as_deref().unwrap_or("-")) }
                            td.nw { (status_label(lang, status)) }
                        }
                    }
                }
            }
            @if bulk {
                fieldset.bulk {
                    legend { (lang.t("選択した項目をまとめて操作", "Act on the picked items")) }
                    label { (lang.t("操作", "Action")) " "
                        select name="action" {
                            @if ctx.may::<Operators>() { option value="request" { (lang.t("元の宛先への解除を申請", "Request release to the original recipients")) } }
                            @if ctx.may::<Approvers>() { option value="delete" { (lang.t("削除", "Delete")) } }
                        }
                    }
                    label { (lang.t("理由", "Reason")) " " input name="reason" required; }
                    button { (lang.t("実行", "Apply")) }
                }
            }
        }
        nav.pager aria-label=(lang.t("ページ", "Pages")) {
            @if page_no > 1 { a href=(page_link(&q, page_no - 1)) { (lang.t("← 前へ", "← Previous")) } }
            span { (page_no) " / " (pages) }
            @if page_no < pages { a href=(page_link(&q, page_no + 1)) { (lang.t("次へ →", "Next →")) } }
        }
    };
    Ok(frame(
        lang,
        &ctx.viewer(),
        lang.t("隔離一覧", "Quarantined items"),
        body,
    ))
}

/// Where an item came from, in the UI language.
fn source_label(lang: Lang, source: &str) -> &str {
    match source {
        "mail" => lang.t("メール", "mail"),
        "import" => lang.t("取り込み", "import"),
        other => other,
    }
}

/// `/items.csv`: the list with the same filters and order, every matching row.
pub(super) async fn items_csv(
    State(web): State<Arc<Web>>,
    Query(q): Query<Params>,
    Signed(ctx, _): Signed,
) -> Page {
    let lang = ctx.lang;
    bad_bound(lang, &q)?;
    let (all, statuses) = held_items(&web, lang).await?;
    let rows: Vec<Vec<String>> = listed(&all, &statuses, &q)
        .into_iter()
        .map(|(i, status)| {
            vec![
                i.id.clone(),
                jst(&i.at),
                i.source.clone(),
                i.mail_from.clone().unwrap_or_default(),
                i.rcpt_to.join(", "),
                i.subject.clone().unwrap_or_default(),
                i.name.clone().unwrap_or_default(),
                i.reason.clone(),
                crate::sink::notice::reason_ja(&i.reason).to_string(),
                i.detail.clone(),
                i.detected_type.clone().unwrap_or_default(),
                i.size.to_string(),
                i.sha256.clone(),
                status_label(Lang::Ja, status).to_string(),
            ]
        })
        .collect();
    Ok(csv::download(
        "mukaika-items.csv",
        &[
            "隔離ID",
            "日時（JST）",
            "経路",
            "差出人",
            "宛先",
            "件名",
            "名前",
            "理由コード",
            "理由",
            "詳細",
            "形式",
            "サイズ",
            "SHA-256",
            "状態",
        ],
        &rows,
    ))
}

/// `/items/bulk`: the action chosen, once for each ticked item, as the single-item forms
/// would take it; a page listing each item's outcome.
pub(super) async fn bulk(State(web): State<Arc<Web>>, post: Posted<Anyone>) -> Page {
    let lang = post.ctx.lang;
    let action = post.field("action");
    let allowed = match action.as_str() {
        "request" => post.ctx.may::<Operators>(),
        "delete" => post.ctx.may::<Approvers>(),
        _ => return Err(super::no_such_action(lang)),
    };
    if !allowed {
        return Err(error_page(
            lang,
            StatusCode::FORBIDDEN,
            lang.t(
                "この操作を行う権限がありません。",
                "Your role does not allow this.",
            ),
        ));
    }
    let reason = post.field("reason");
    super::run_bulk(
        &web,
        &post.ctx,
        &post.form,
        lang.t("項目が選ばれていません。", "No item was picked."),
        super::Bulk {
            title: lang.t("まとめて操作した結果", "Bulk action"),
            caption: lang.t("項目ごとの結果", "Outcome per item"),
            back: ("/items", lang.t("隔離一覧へ戻る", "Back to the list")),
            item_links: true,
        },
        move |review, user, id| match action.as_str() {
            "request" => review
                .request_release(user, id, Target::Original, &reason)
                .map(|_| ()),
            _ => review.delete(user, id, &reason),
        },
    )
    .await
}
