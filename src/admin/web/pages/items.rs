//! The quarantine list: every held item, filtered, searched and paged.
//!
//! Owns: `/items` and its filters (`since`, `until` as Japan-time days, `source`, `sender`,
//! `recipient`, `reason`, `type`, `status`, `q`, `page`).
//! Invariants: newest first, [`PAGE_SIZE`] a page; long senders, recipients, subjects and
//! names are cut (the item page shows them whole); the filter form shows back what was asked.
//! Must never: show more of an item than its recorded metadata (the content is on the item
//! page, as text), or echo `done` back as anything but a fixed message.

use std::sync::Arc;

use axum::extract::{Query, State};
use maud::html;

use super::{held_items, reason_label, status_key, status_label, Page, Params, STATUS_KEYS};
use crate::admin::web::guard::Signed;
use crate::admin::web::html::{cut, url};
use crate::admin::web::html::{jst, parse_filter_time};
use crate::admin::web::layout::{done_notice, frame, head_row};
use crate::admin::web::Web;
use crate::store::quarantine::QuarantineItem;

/// Items per list page.
const PAGE_SIZE: usize = 50;

/// Whether an item passes the list filters. Dates are Japan-time days (`YYYY-MM-DD`).
fn passes(i: &QuarantineItem, status: &str, q: &Params) -> bool {
    let get = |k: &str| q.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    let contains = |hay: &str, needle: &str| hay.to_lowercase().contains(&needle.to_lowercase());
    let at = parse_filter_time(&i.at).unwrap_or(0);
    let day_start = |d: &str| parse_filter_time(d).map(|ms| ms.saturating_sub(9 * 3_600_000));
    get("since").is_none_or(|d| day_start(d).is_none_or(|s| at >= s))
        && get("until").is_none_or(|d| day_start(d).is_none_or(|u| at < u + 86_400_000))
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

/// The list URL for page `n` with the same filters (`done` dropped).
fn page_link(q: &Params, n: usize) -> String {
    let mut params: Vec<String> = q
        .iter()
        .filter(|(k, v)| k.as_str() != "page" && k.as_str() != "done" && !v.is_empty())
        .map(|(k, v)| format!("{}={}", url(k), url(v)))
        .collect();
    params.sort();
    params.push(format!("page={n}"));
    format!("/items?{}", params.join("&"))
}

pub(super) async fn items(
    State(web): State<Arc<Web>>,
    Query(q): Query<Params>,
    Signed(ctx, _): Signed,
) -> Page {
    let lang = ctx.lang;
    let (all, statuses) = held_items(&web, lang).await?;
    let mut reasons: Vec<&str> = all.iter().map(|i| i.reason.as_str()).collect();
    reasons.sort_unstable();
    reasons.dedup();
    let mut matching: Vec<(&QuarantineItem, &str)> = all
        .iter()
        .map(|i| (i, status_key(statuses.get(&i.id).copied())))
        .filter(|(i, s)| passes(i, s, &q))
        .collect();
    matching.reverse(); // newest first
    let pages = matching.len().div_ceil(PAGE_SIZE).max(1);
    let page_no = q
        .get("page")
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(1)
        .clamp(1, pages);
    let value = |k: &str| q.get(k).map(String::as_str).unwrap_or("");
    let chosen = |k: &str, v: &str| q.get(k).map(String::as_str) == Some(v);
    let body = html! {
        (done_notice(lang, q.get("done").map(String::as_str)))
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
            button { (lang.t("絞り込む", "Filter")) }
        }
        p { (matching.len()) " " (lang.t("件", "items")) }
        table {
            (head_row(lang, &[
                ("ID", "ID"),
                ("日時", "Time"),
                ("経路", "Source"),
                ("差出人", "Sender"),
                ("宛先", "Recipients"),
                ("件名", "Subject"),
                ("名前", "Name"),
                ("理由", "Reason"),
                ("形式", "Type"),
                ("状態", "Status"),
            ]))
            @for (i, status) in matching.iter().skip((page_no - 1) * PAGE_SIZE).take(PAGE_SIZE) {
                tr {
                    td { a href={ "/items/" (url(&i.id)) } { (i.id) } }
                    td { (jst(&i.at)) }
                    td { (i.source) }
                    td { (cut(i.mail_from.as_deref().unwrap_or("-"), 60)) }
                    td { (cut(&i.rcpt_to.join(", "), 80)) }
                    td { (cut(i.subject.as_deref().unwrap_or("-"), 80)) }
                    td { (cut(i.name.as_deref().unwrap_or(lang.t("（メール全体）", "(whole message)")), 80)) }
                    td { (reason_label(lang, &i.reason)) }
                    td { (i.detected_type.as_deref().unwrap_or("-")) }
                    td { (status_label(lang, status)) }
                }
            }
        }
        div.pager {
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
