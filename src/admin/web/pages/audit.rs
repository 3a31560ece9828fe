//! The audit log search, its CSV download, and the audit table the item page shows too.
//!
//! Owns: `/audit` (auditors and administrators), `/audit.csv` (the same search, every
//! matching record) and [`audit_table`].
//! In a cluster (`[store] backend = "postgres"`) the search reads every node's records from
//! their copies in PostgreSQL and names each record's node.
//! Invariants: nothing is read until a filter is given; newest first, [`SHOWN`] records a
//! page with links to the older pages and the total; each record reads as a sentence in the
//! UI language (see `events`), its fields kept beside it as JSON text, cut at 600 characters.
//! Must never: be open to operators or approvers alone, or change the log.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use maud::{html, Markup};

use super::{csv, events, Page, Params};
use crate::admin::web::guard::{Auditors, Signed};
use crate::admin::web::html::jst;
use crate::admin::web::html::{cut, url, Lang};
use crate::admin::web::layout::{error_page, frame, head_row};
use crate::admin::web::{blocking, Web};

/// Records a page.
const SHOWN: usize = 500;

/// The search form's fields: query key, Japanese and English label.
const FIELDS: [(&str, &str, &str); 8] = [
    (
        "id",
        "ID（キュー・隔離・申請・Message-ID）",
        "ID (queue, item, request, Message-ID)",
    ),
    ("sender", "差出人", "Sender"),
    ("recipient", "宛先", "Recipient"),
    ("sha256", "SHA-256（前方一致）", "SHA-256 (prefix)"),
    ("verdict", "判定・結果", "Verdict or outcome"),
    ("user", "アカウント", "Account"),
    (
        "since",
        "開始（例 2026-11-27 / 2026-11-27 09:30）",
        "Since (e.g. 2026-11-27)",
    ),
    ("until", "終了（この日まで）", "Until (through that day)"),
];

/// A record's event type, and its other fields as JSON text.
fn kind_and_fields(r: &crate::audit::Record) -> (String, String) {
    let mut fields = r.event.clone();
    let kind = fields
        .get("type")
        .and_then(|t| t.as_str())
        .unwrap_or("")
        .to_string();
    if let Some(o) = fields.as_object_mut() {
        o.remove("type");
    }
    (kind, fields.to_string())
}

/// Audit records as a table: sequence number, time, what happened (a sentence), and the
/// event type with its fields as JSON, folded; with the node that wrote each record first
/// when `nodes` (a cluster's records span every node).
pub(super) fn audit_table(
    lang: Lang,
    caption: &str,
    records: &[crate::audit::Record],
    nodes: bool,
) -> Markup {
    let mut heads = Vec::with_capacity(5);
    if nodes {
        heads.push(("ノード", "Node"));
    }
    heads.extend([
        ("#", "#"),
        ("日時", "Time"),
        ("出来事", "What happened"),
        ("記録", "Record"),
    ]);
    html! {
        table.audit {
            caption { (caption) }
            (head_row(lang, &heads))
            tbody {
                @for r in records {
                    @let (kind, fields) = kind_and_fields(r);
                    tr {
                        @if nodes { td.node { (r.node) } }
                        td.num { (r.seq) }
                        td { @let t = jst(&r.ts); @let (d, h) = t.split_once(' ').unwrap_or((t.as_str(), ""));
                            span.nw { (d) } " " span.nw { (h) } }
                        td.long { (events::sentence(lang, &r.event)) }
                        td.long {
                            details {
                                summary { span.nw { (kind) } }
                                (cut(&fields, 600))
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The search filter the query asks for, and whether it asks for any. Times are read as the
/// table shows them — local time (`[ui] timezone`), a bare day meaning that whole day — and
/// turned into the UTC the records keep; one that cannot be read is an error, never "no limit".
fn filter_of(q: &Params) -> Result<(crate::audit::Search, bool), String> {
    let get = |k: &str| {
        q.get(k)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let searched = FIELDS.iter().any(|(k, _, _)| get(k).is_some());
    let bound = |key: &str, whole_day: bool| -> Result<Option<String>, String> {
        let Some(v) = get(key) else { return Ok(None) };
        // "Until 2026-11-27" includes that day: the bound is the next local midnight.
        let ms = if whole_day {
            crate::clock::parse_people_until(&v)
        } else {
            crate::clock::parse_people_time(&v)
        };
        Ok(Some(crate::clock::rfc3339_utc(
            ms.ok_or_else(|| v.clone())?,
        )))
    };
    Ok((
        crate::audit::Search {
            id: get("id"),
            sender: get("sender"),
            recipient: get("recipient"),
            sha256: get("sha256"),
            verdict: get("verdict"),
            since: bound("since", false)?,
            until: bound("until", true)?,
            user: get("user"),
        },
        searched,
    ))
}

/// Whether searches read the cluster's copies of every node's records (`[store] backend =
/// "postgres"`) rather than this node's own files.
pub(super) fn cluster(web: &Web) -> Option<crate::config::StoreSection> {
    let config = web.review.config();
    (config.store.backend == crate::config::StoreBackend::Postgres).then(|| config.store.clone())
}

/// The records `filter` matches: this node's files, or every node's copies in a cluster.
pub(super) fn find(
    dir: &std::path::Path,
    store: Option<&crate::config::StoreSection>,
    filter: &crate::audit::Search,
) -> Result<Vec<crate::audit::Record>, String> {
    match store {
        None => crate::audit::search(dir, filter).map_err(|e| e.to_string()),
        Some(store) => crate::store::postgres::Pg::shared(store)
            .and_then(|pg| crate::store::audit_copies::search(&pg, filter))
            .map_err(|e| e.to_string()),
    }
}

/// The page for a time the filter could not read.
fn bad_time(lang: Lang, value: &str) -> axum::response::Response {
    error_page(
        lang,
        StatusCode::BAD_REQUEST,
        &format!(
            "{}: {}",
            lang.t(
                "日時は 2026-11-27 または 2026-11-27 09:30（画面と同じ現地時刻）の形で入力してください",
                "Enter times as 2026-11-27 or 2026-11-27 09:30 (local time, as the table shows)"
            ),
            value
        ),
    )
}

/// The query string of the search fields of `q` (what the CSV link and the pager repeat).
fn search_query(q: &Params) -> String {
    FIELDS
        .iter()
        .filter_map(|(k, _, _)| {
            q.get(*k)
                .filter(|v| !v.trim().is_empty())
                .map(|v| format!("{k}={}", url(v)))
        })
        .collect::<Vec<_>>()
        .join("&")
}

pub(super) async fn audit_search(
    State(web): State<Arc<Web>>,
    Query(q): Query<Params>,
    Signed(ctx, _): Signed<Auditors>,
) -> Page {
    let lang = ctx.lang;
    let (filter, searched) = filter_of(&q).map_err(|v| bad_time(lang, &v))?;
    let dir = web.audit_dir.clone();
    let store = cluster(&web);
    let nodes = store.is_some();
    let records = if searched {
        blocking(move || find(&dir, store.as_ref(), &filter))
            .await?
            .map_err(|e| error_page(lang, StatusCode::INTERNAL_SERVER_ERROR, &e))?
    } else {
        Vec::new()
    };
    let pages = records.len().div_ceil(SHOWN).max(1);
    let page_no = q
        .get("page")
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(1)
        .clamp(1, pages);
    let shown: Vec<crate::audit::Record> = records
        .iter()
        .rev()
        .skip((page_no - 1) * SHOWN)
        .take(SHOWN)
        .cloned()
        .collect();
    let base = search_query(&q);
    let page_link = |n: usize| format!("/audit?{base}&page={n}");
    let body = html! {
        form.filters method="get" action="/audit" {
            @for (key, ja, en) in FIELDS {
                label { (lang.t(ja, en)) input name=(key) value=(q.get(key).map(String::as_str).unwrap_or("")); }
            }
            button { (lang.t("検索", "Search")) }
        }
        @if searched {
            div.tools {
                span {
                    (records.len()) " " (lang.t("件", "records"))
                    // Sequence numbers are per node: a range across nodes would say nothing.
                    @if let (false, Some(first), Some(last)) = (nodes, shown.first(), shown.last()) {
                        " — " (lang.t("表示中: ", "showing: ")) "#" (last.seq) "–#" (first.seq)
                    }
                    @if nodes {
                        " — " (lang.t("全ノードの記録（PostgreSQL の写し）", "every node's records (their copies in PostgreSQL)"))
                    }
                }
                a href={ "/audit.csv?" (base) } download { (lang.t("検索結果を CSV でダウンロード", "Download the results as CSV")) }
            }
            (audit_table(lang, lang.t("監査記録（新しい順）", "Audit records (newest first)"), &shown, nodes))
            nav.pager aria-label=(lang.t("ページ", "Pages")) {
                @if page_no > 1 { a href=(page_link(page_no - 1)) rel="prev" { (lang.t("← 新しい記録", "← Newer")) } }
                span { (page_no) " / " (pages) }
                @if page_no < pages { a href=(page_link(page_no + 1)) rel="next" { (lang.t("古い記録 →", "Older →")) } }
            }
        }
    };
    Ok(frame(
        lang,
        &ctx.viewer(),
        lang.t("監査ログの検索", "Audit log search"),
        body,
    ))
}

/// `/audit.csv`: every record the search matches, oldest first, with the sentence and the
/// JSON; Japan time beside the UTC time the record keeps.
pub(super) async fn audit_csv(
    State(web): State<Arc<Web>>,
    Query(q): Query<Params>,
    Signed(ctx, _): Signed<Auditors>,
) -> Page {
    let lang = ctx.lang;
    let (filter, searched) = filter_of(&q).map_err(|v| bad_time(lang, &v))?;
    if !searched {
        return Err(error_page(
            lang,
            StatusCode::BAD_REQUEST,
            lang.t(
                "検索条件を指定してください。",
                "Give a search filter first.",
            ),
        ));
    }
    let dir = web.audit_dir.clone();
    let store = cluster(&web);
    let nodes = store.is_some();
    let records = blocking(move || find(&dir, store.as_ref(), &filter))
        .await?
        .map_err(|e| error_page(lang, StatusCode::INTERNAL_SERVER_ERROR, &e))?;
    let rows: Vec<Vec<String>> = records
        .iter()
        .map(|r| {
            let (kind, fields) = kind_and_fields(r);
            let mut row = Vec::with_capacity(7);
            if nodes {
                row.push(r.node.clone());
            }
            row.extend([
                r.seq.to_string(),
                jst(&r.ts),
                r.ts.clone(),
                kind,
                events::sentence(Lang::Ja, &r.event),
                fields,
            ]);
            row
        })
        .collect();
    let mut heads = Vec::with_capacity(7);
    if nodes {
        heads.push("ノード");
    }
    heads.extend([
        "番号",
        "日時（JST）",
        "日時（UTC）",
        "種類",
        "出来事",
        "記録（JSON）",
    ]);
    Ok(csv::download("mukaika-audit.csv", &heads, &rows))
}
