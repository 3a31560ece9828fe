//! The audit log search, and the audit table the item page shows too.
//!
//! Owns: `/audit` (auditors and administrators) and [`audit_table`].
//! Invariants: nothing is read until a filter is given; at most the newest 500 records are
//! shown, with the total; each record's fields are shown as JSON text, cut at 600
//! characters.
//! Must never: be open to operators or approvers alone, or change the log.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use maud::{html, Markup};

use super::{Page, Params};
use crate::admin::web::guard::{Auditors, Signed};
use crate::admin::web::html::jst;
use crate::admin::web::html::{cut, Lang};
use crate::admin::web::layout::{error_page, frame, head_row};
use crate::admin::web::{blocking, Web};

/// Records shown at most.
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
    ("since", "開始（UTC、例 2026-11-27）", "Since (UTC)"),
    ("until", "終了（UTC）", "Until (UTC)"),
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

/// Audit records as a table: sequence number, time, event type, the other fields as JSON.
pub(super) fn audit_table(lang: Lang, records: &[crate::audit::Record]) -> Markup {
    html! {
        table {
            (head_row(lang, &[
                ("#", "#"),
                ("日時", "Time"),
                ("種類", "Event"),
                ("内容", "Details"),
            ]))
            @for r in records {
                @let (kind, fields) = kind_and_fields(r);
                tr {
                    td { (r.seq) }
                    td { (jst(&r.ts)) }
                    td { (kind) }
                    td { (cut(&fields, 600)) }
                }
            }
        }
    }
}

pub(super) async fn audit_search(
    State(web): State<Arc<Web>>,
    Query(q): Query<Params>,
    Signed(ctx, _): Signed<Auditors>,
) -> Page {
    let lang = ctx.lang;
    let get = |k: &str| {
        q.get(k)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let searched = FIELDS.iter().any(|(k, _, _)| get(k).is_some());
    let filter = crate::audit::Search {
        id: get("id"),
        sender: get("sender"),
        recipient: get("recipient"),
        sha256: get("sha256"),
        verdict: get("verdict"),
        since: get("since"),
        until: get("until"),
        user: get("user"),
    };
    let dir = web.audit_dir.clone();
    let records = if searched {
        blocking(move || crate::audit::search(&dir, &filter))
            .await?
            .map_err(|e| error_page(lang, StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()))?
    } else {
        Vec::new()
    };
    let shown: Vec<crate::audit::Record> = records.iter().rev().take(SHOWN).cloned().collect();
    let body = html! {
        form.filters method="get" action="/audit" {
            @for (key, ja, en) in FIELDS {
                label { (lang.t(ja, en)) input name=(key) value=(q.get(key).map(String::as_str).unwrap_or("")); }
            }
            button { (lang.t("検索", "Search")) }
        }
        @if searched {
            p {
                (records.len()) " " (lang.t("件", "records"))
                @if records.len() > SHOWN { (lang.t("（新しい 500 件を表示）", " (newest 500 shown)")) }
            }
            (audit_table(lang, &shown))
        }
    };
    Ok(frame(
        lang,
        &ctx.viewer(),
        lang.t("監査ログの検索", "Audit log search"),
        body,
    ))
}
