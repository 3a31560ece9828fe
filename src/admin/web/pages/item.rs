//! One quarantined item: its page, and the forms posted about it.
//!
//! Owns: `/items/{id}` (metadata, release requests and the decisions open to the viewer, the
//! safe view of the original, the sanitizer report, the audit trail) and the posts
//! `/items/{id}/request` and `/items/{id}/unlock` (operators: the password of an item held
//! as `encrypted`, see [`crate::ppap`]), `/items/{id}/original` and `/items/{id}/delete`
//! (approvers). The page shows whether and how a PPAP item was unlocked.
//! Invariants: the ID is checked before any store is asked (it must not name a path); the
//! original is shown only as decoded text or a hex dump with printable strings, at most
//! 64 KB of text; it is handed out only to an approver, as an attachment, after `Review`
//! audited it; a release is offered only when none is open and the reason allows one.
//! Must never: render the original (or a message's HTML part) as HTML, or name the download
//! with anything the browser could read as a path or a header.

use std::fmt::Write;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::{header, Response, StatusCode};
use axum::response::IntoResponse;
use maud::{html, Markup};

use super::audit::audit_table;
use super::report::report_table;
use super::requests::decision_forms;
use super::{act, checked_id, reason_label, state_label, Page, Params, Res};
use crate::admin::web::guard::{Admits, Approvers, Operators, Posted, Signed};
use crate::admin::web::html::jst;
use crate::admin::web::html::{url, Lang};
use crate::admin::web::layout::{done_notice, error, error_page, frame, head_row};
use crate::admin::web::{blocking, redirect, review_error, Web};
use crate::review::{RequestState, Target};
use crate::store::quarantine::QuarantineItem;

/// Text shown of an original, at most.
const MAX_TEXT: usize = 64 * 1024;

/// A message's headers as `name: value` lines, decoded.
fn header_lines(msg: &mail_parser::Message<'_>) -> String {
    let mut out = String::new();
    for h in msg.headers() {
        let value = match &h.value {
            mail_parser::HeaderValue::Text(t) => t.to_string(),
            mail_parser::HeaderValue::TextList(l) => l.join(", "),
            mail_parser::HeaderValue::Address(a) => a
                .iter()
                .map(|x| format!("{} <{}>", x.name().unwrap_or(""), x.address().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(", "),
            mail_parser::HeaderValue::DateTime(d) => d.to_rfc3339(),
            _ => msg
                .raw_message()
                .get(h.offset_start as usize..h.offset_end as usize)
                .map(|b| String::from_utf8_lossy(b).trim().to_string())
                .unwrap_or_default(),
        };
        let _ = writeln!(out, "{}: {}", h.name.as_str(), value);
    }
    out
}

/// A message shown as text: decoded headers, the text body, the HTML part's source.
fn message_view(msg: &mail_parser::Message<'_>, lang: Lang) -> Markup {
    let text = msg
        .body_text(0)
        .map(|t| t.chars().take(MAX_TEXT).collect::<String>());
    let has_html = msg
        .parts
        .iter()
        .any(|p| matches!(p.body, mail_parser::PartType::Html(_)));
    let html_source = if has_html {
        msg.body_html(0)
            .map(|h| h.chars().take(MAX_TEXT).collect::<String>())
    } else {
        None
    };
    html! {
        h3 { (lang.t("ヘッダー（デコード済み）", "Headers (decoded)")) }
        pre { (header_lines(msg)) }
        @if let Some(text) = text {
            h3 { (lang.t("本文（テキストとして表示）", "Body (as text)")) }
            pre { (text) }
        }
        @if let Some(source) = html_source {
            h3 { (lang.t(
                "HTML ソース（文字として表示。描画も実行もしません）",
                "HTML source (shown as characters; never rendered or run)",
            )) }
            pre { (source) }
        }
    }
}

/// Sixteen bytes a line: offset, hex, printable ASCII; the first 1 KB.
fn hex_dump(bytes: &[u8]) -> String {
    let mut dump = String::new();
    for (n, chunk) in bytes.chunks(16).take(64).enumerate() {
        let _ = write!(dump, "{:08x}  ", n * 16);
        for b in chunk {
            let _ = write!(dump, "{b:02x} ");
        }
        dump.push_str(&"   ".repeat(16 - chunk.len()));
        dump.push(' ');
        dump.extend(chunk.iter().map(|b| {
            if b.is_ascii_graphic() || *b == b' ' {
                *b as char
            } else {
                '.'
            }
        }));
        dump.push('\n');
    }
    dump
}

/// Runs of six or more printable ASCII characters, a line each, from the first 4 MB.
fn printable_strings(bytes: &[u8]) -> String {
    let mut strings = String::new();
    let mut run = String::new();
    for &b in bytes.iter().take(4 << 20) {
        if b.is_ascii_graphic() || b == b' ' {
            run.push(b as char);
        } else {
            if run.len() >= 6 {
                strings.push_str(&run);
                strings.push('\n');
            }
            run.clear();
        }
        if strings.len() > MAX_TEXT {
            break;
        }
    }
    strings
}

/// The original shown safely: a message's decoded headers and text, a text file's text, or a
/// hex dump and printable strings. Never HTML.
fn safe_view(item: &QuarantineItem, bytes: &[u8], lang: Lang) -> Markup {
    if item.name.is_none() && item.source == "mail" {
        if let Some(msg) = mail_parser::MessageParser::default().parse(bytes) {
            return message_view(&msg, lang);
        }
    }
    if let Ok(text) = std::str::from_utf8(&bytes[..bytes.len().min(MAX_TEXT)]) {
        if !text.contains('\0') {
            return html! {
                h3 { (lang.t("内容（テキストとして表示）", "Content (as text)")) }
                pre { (text) }
            };
        }
    }
    html! {
        h3 { (lang.t("先頭 1 KB の16進ダンプ", "Hex dump of the first 1 KB")) }
        pre { (hex_dump(bytes)) }
        h3 { (lang.t("文字列（6 文字以上）", "Strings (6 characters or more)")) }
        pre { (printable_strings(bytes)) }
    }
}

/// The item's metadata as a two-column table.
fn metadata(item: &QuarantineItem, lang: Lang) -> Markup {
    let rows: [(&str, String); 12] = [
        (lang.t("隔離ID", "Item ID"), item.id.clone()),
        (lang.t("日時", "Time"), jst(&item.at)),
        (
            lang.t("経路", "Source"),
            format!("{} ({})", item.source, item.origin_id),
        ),
        (
            lang.t("差出人（エンベロープ）", "Envelope sender"),
            item.mail_from.as_deref().unwrap_or("-").to_string(),
        ),
        (
            lang.t("宛先（エンベロープ）", "Envelope recipients"),
            item.rcpt_to.join(", "),
        ),
        (
            lang.t("件名", "Subject"),
            item.subject.as_deref().unwrap_or("-").to_string(),
        ),
        (
            lang.t("名前", "Name"),
            item.name
                .as_deref()
                .unwrap_or(lang.t("（メール全体）", "(whole message)"))
                .to_string(),
        ),
        (
            lang.t("理由", "Reason"),
            match lang {
                // Staff read the plain sentence; the technical detail has its own row.
                Lang::Ja => format!(
                    "{} — {}",
                    reason_label(lang, &item.reason),
                    crate::sink::notice::explain_item_ja(item)
                ),
                Lang::En => reason_label(lang, &item.reason),
            },
        ),
        (
            lang.t("技術的な詳細", "Technical detail"),
            item.detail.clone(),
        ),
        (
            lang.t("形式（中身から判定）", "Detected type"),
            item.detected_type.as_deref().unwrap_or("-").to_string(),
        ),
        (lang.t("サイズ", "Size"), format!("{} bytes", item.size)),
        ("SHA-256", item.sha256.clone()),
    ];
    html! {
        table.meta {
            caption.sr { (lang.t("項目の情報", "About the item")) }
            @for (k, v) in &rows { tr { th scope="row" { (k) } td.long { (v) } } }
        }
    }
}

pub(super) async fn item(
    State(web): State<Arc<Web>>,
    Path(id): Path<String>,
    Query(q): Query<Params>,
    Signed(ctx, _): Signed,
) -> Page {
    let lang = ctx.lang;
    checked_id(lang, &id)?;
    let w = Arc::clone(&web);
    let lookup = id.clone();
    let viewer = ctx.actor();
    let store = super::audit::cluster(&web);
    let nodes = store.is_some();
    let loaded = blocking(move || {
        let item = w.review.item(&lookup)?;
        let bytes = w.review.view_bytes(&viewer, &lookup)?;
        let requests = w.review.requests_for(&lookup)?;
        // In a cluster the item's story may span nodes (held via one, released via
        // another): every node's copies are read then.
        let find = |id: &str| {
            super::audit::find(
                &w.audit_dir,
                store.as_ref(),
                &crate::audit::Search {
                    id: Some(id.to_string()),
                    ..Default::default()
                },
            )
            .unwrap_or_default()
        };
        let mut trail = find(&lookup);
        if item.source == "mail" && item.origin_id != item.id {
            trail.extend(find(&item.origin_id));
            trail.sort_by(|a, b| (&a.ts, &a.node, a.seq).cmp(&(&b.ts, &b.node, b.seq)));
            trail.dedup_by(|a, b| a.node == b.node && a.seq == b.seq);
        }
        let pairs: Vec<String> = w
            .review
            .config()
            .import
            .pairs
            .iter()
            .map(|p| p.name.clone())
            .collect();
        let unlocked = match w.review.ppap() {
            Some(p) => p.state(&lookup),
            None => crate::ppap::unlocked_state(&w.review.config().data.dir, &lookup),
        }
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, "PPAP state unreadable");
            None
        });
        let by_link = crate::ppap::links::link_deliveries(&w.review.config().data.dir, &lookup)
            .unwrap_or_default();
        Ok::<_, crate::review::ReviewError>((
            item, bytes, requests, trail, pairs, unlocked, by_link,
        ))
    })
    .await?;
    let (item, bytes, requests, trail, pairs, unlocked, by_link) =
        loaded.map_err(|e| review_error(lang, &e))?;
    let ppap_item = crate::ppap::links::is_ppap_item(&item);
    let me = ctx.session.user.as_str();
    let open = requests
        .iter()
        .any(|r| matches!(r.state, RequestState::Pending | RequestState::Approved));
    let never = web
        .review
        .config()
        .quarantine
        .never_release
        .contains(&item.reason);
    let csrf = ctx.session.csrf.as_str();
    let body = html! {
        (done_notice(lang, q.get("done").map(String::as_str)))
        (metadata(&item, lang))
        // Requests and the decisions open to this account.
        h2 { (lang.t("解除申請", "Release requests")) }
        table {
            caption.sr { (lang.t("この項目への解除申請", "Release requests for this item")) }
            (head_row(lang, &[
                ("ID", "ID"),
                ("申請者", "Requester"),
                ("宛先・出力先", "Target"),
                ("理由", "Reason"),
                ("状態", "State"),
                ("判断", "Decision"),
                ("", ""),
            ]))
            @for r in &requests {
                tr {
                    td.id { (r.id) }
                    td { (r.requester) }
                    td.long { (r.target) }
                    td.long { (r.reason) }
                    td { (state_label(lang, r.state)) }
                    td.long { (r.decided_by.as_deref().unwrap_or("")) " " (r.decision_reason.as_deref().unwrap_or("")) }
                    td.long { (decision_forms(&ctx, r, me)) }
                }
            }
        }
        @if requests.is_empty() {
            p { (lang.t("この項目への解除申請はまだありません。", "No release requests yet.")) }
        }
        @if ctx.may::<Operators>() && !open && !never {
            fieldset {
                legend { (lang.t("解除を申請する", "Request release")) }
                form method="post" action={ "/items/" (url(&item.id)) "/request" } {
                    input type="hidden" name="csrf" value=(csrf);
                    p { label {
                        input type="radio" name="target" value="original"
                            disabled[item.rcpt_to.is_empty()] checked[!item.rcpt_to.is_empty()];
                        " " (lang.t("元の宛先へ配送", "Deliver to the original recipients"))
                    } }
                    p {
                        label { input type="radio" name="target" value="recipients"; " " (lang.t("指定した宛先へ配送:", "Deliver to:")) }
                        " "
                        input name="recipients" size="40" placeholder="staff@city.example.lg.jp" aria-label=(lang.t("配送先の宛先", "Recipients to deliver to"));
                    }
                    @if !pairs.is_empty() {
                        p {
                            label {
                                input type="radio" name="target" value="export" checked[item.rcpt_to.is_empty()];
                                " " (lang.t("取り込みフォルダーの出力先へコピー:", "Copy to the export folder of:"))
                            }
                            " "
                            select name="pair" aria-label=(lang.t("出力先", "Export folder")) { @for p in &pairs { option { (p) } } }
                        }
                    }
                    p { label {
                        (lang.t("理由（業務上の必要性）", "Reason (business need)")) br;
                        textarea name="reason" rows="3" cols="50" required {}
                    } }
                    p { button { (lang.t("申請する", "Request")) } }
                }
            }
        } @else if never {
            (error(lang.t(
                "この理由で隔離されたものは解除できません。",
                "Items held for this reason are never released.",
            )))
        }
        @if ppap_item {
            h2 { (lang.t("パスワード付きファイル（PPAP）", "Password-protected file (PPAP)")) }
            @if let Some(u) = &unlocked {
                table {
                    tr { th scope="row" { (lang.t("状態", "State")) } td { (lang.t("解除済み", "unlocked")) } }
                    tr { th scope="row" { (lang.t("方法", "Way")) } td { (u.way) } }
                    tr { th scope="row" { (lang.t("結果", "Verdict")) } td { (u.verdict) } }
                    tr { th scope="row" { (lang.t("日時", "Time")) } td { (jst(&u.at)) } }
                    tr { th scope="row" { (lang.t("配送先", "Destination")) } td.long { (u.destination) } }
                }
            } @else {
                p { (lang.t("まだ解除されていません（暗号化されたまま保留中）。", "Not unlocked yet (held encrypted).")) }
            }
            @if !by_link.is_empty() {
                p { (lang.t(
                    "受信者が自分のリンクで解除し、本人だけに届けた分:",
                    "Delivered to single recipients through their own links:",
                )) }
                ul.by-link { @for (r, at) in &by_link { li { (r) " — " (jst(at)) } } }
            }
            @if unlocked.is_none() {
                @if ctx.may::<Operators>() {
                    fieldset {
                        legend { (lang.t("パスワードを入力して解除", "Unlock with the password")) }
                        form method="post" action={ "/items/" (url(&item.id)) "/unlock" } {
                            input type="hidden" name="csrf" value=(csrf);
                            p { label {
                                (lang.t("パスワード", "Password")) " "
                                input type="password" name="password" autocomplete="off" required size="30";
                            } }
                            p { (lang.t(
                                "解除した中身は無害化し、元の宛先（自分のリンクで受け取った人を除く）へ新しいメールとして届けます。パスワードは記録されません。",
                                "The content is sanitized and delivered as a new message to the original recipients (but those who had it through their own link). The password is never recorded.",
                            )) }
                            p { button { (lang.t("解除する", "Unlock")) } }
                        }
                    }
                }
            }
        }
        @if ctx.may::<Approvers>() {
            fieldset {
                legend { (lang.t("承認者の操作", "Approver actions")) }
                form method="post" action={ "/items/" (url(&item.id)) "/original" } class="inline" {
                    input type="hidden" name="csrf" value=(csrf);
                    button { (lang.t("原本をダウンロード（監査記録されます）", "Download the original (audited)")) }
                }
                " "
                form method="post" action={ "/items/" (url(&item.id)) "/delete" } {
                    input type="hidden" name="csrf" value=(csrf);
                    label { (lang.t("削除の理由", "Reason for deletion")) input name="reason" required size="40"; }
                    " "
                    button { (lang.t("削除する", "Delete")) }
                }
            }
        }
        h2 { (lang.t("原本の安全な表示", "Safe view of the original")) }
        (safe_view(&item, &bytes, lang))
        h2 { (lang.t("無害化レポート（すべての検出事項）", "Sanitizer report (every finding)")) }
        (report_table(lang, &item.report))
        h2 { (lang.t("この項目の監査記録", "Audit trail of this item")) }
        (audit_table(lang, lang.t("この項目の監査記録（古い順）", "Audit trail (oldest first)"), &trail, nodes))
    };
    let title = format!("{} {}", lang.t("隔離項目", "Item"), item.id);
    Ok(frame(lang, &ctx.viewer(), &title, body))
}

/// A form posted about one item: the item ID from the path, then everything [`Posted`]
/// checks, then the ID's form (it must not name a path; a 400 page otherwise).
pub(super) struct ItemPost<R: Admits> {
    /// The item.
    id: String,
    /// The post, guarded.
    post: Posted<R>,
}

impl<R: Admits> FromRequest<Arc<Web>> for ItemPost<R> {
    type Rejection = Res;

    async fn from_request(request: Request, web: &Arc<Web>) -> Result<Self, Res> {
        let (mut parts, body) = request.into_parts();
        let Path(id) = Path::<String>::from_request_parts(&mut parts, web)
            .await
            .map_err(IntoResponse::into_response)?;
        let post = Posted::<R>::from_request(Request::from_parts(parts, body), web).await?;
        checked_id(post.ctx.lang, &id)?;
        Ok(ItemPost { id, post })
    }
}

pub(super) async fn original(State(web): State<Arc<Web>>, item: ItemPost<Approvers>) -> Page {
    let ItemPost { id, post } = item;
    let (item, bytes) = act(&web, &post.ctx, move |review, user| {
        review.original(user, &id)
    })
    .await?;
    let name = crate::review::release::safe_file_name(&item);
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(
            header::CONTENT_DISPOSITION,
            format!(
                "attachment; filename=\"{ascii}\"; filename*=UTF-8''{}",
                url(&name)
            ),
        )
        .body(Body::from(bytes))
        .unwrap_or_default())
}

/// Where a release request sends the item, from the form's `target` and its companions.
fn release_target(post: &Posted<Operators>) -> Result<Target, String> {
    match post.form.get("target").map(String::as_str) {
        Some("original") => Ok(Target::Original),
        Some("recipients") => format!("to:{}", post.field("recipients")).parse(),
        Some("export") => Ok(Target::Export(post.field("pair"))),
        _ => Err("choose a target".to_string()),
    }
}

pub(super) async fn request_release(
    State(web): State<Arc<Web>>,
    item: ItemPost<Operators>,
) -> Page {
    let ItemPost { id, post } = item;
    let lang = post.ctx.lang;
    let target = release_target(&post).map_err(|e| {
        error_page(
            lang,
            StatusCode::BAD_REQUEST,
            &format!(
                "{} ({e})",
                lang.t("宛先・出力先が正しくありません。", "Bad target.")
            ),
        )
    })?;
    let reason = post.field("reason");
    let item_id = id.clone();
    act(&web, &post.ctx, move |review, user| {
        review.request_release(user, &item_id, target, &reason)
    })
    .await?;
    Ok(redirect(&format!("/items/{}?done=requested", url(&id))))
}

/// An operator types the password of an item held as `encrypted`: it is unlocked, sanitized
/// and delivered to the item's recipients ([`crate::review::Review::unlock_item`]); the page
/// then says how it went (a fixed message, never the password).
pub(super) async fn unlock(State(web): State<Arc<Web>>, item: ItemPost<Operators>) -> Page {
    let ItemPost { id, mut post } = item;
    let password = crate::ppap::SecretText::new(post.form.remove("password").unwrap_or_default())
        .into_password();
    let item_id = id.clone();
    let result = act(&web, &post.ctx, move |review, user| {
        review.unlock_item(
            user,
            &item_id,
            &password,
            mukaika_sanitizers::mail::unlocked::UnlockWay::Web,
        )
    })
    .await?;
    let done = match result.outcome.as_str() {
        "unlocked" => "ppap-unlocked",
        "wrong-password" => "ppap-wrong",
        "already-unlocked" => "ppap-already",
        _ => "ppap-failed",
    };
    Ok(redirect(&format!("/items/{}?done={done}", url(&id))))
}

pub(super) async fn delete_item(State(web): State<Arc<Web>>, item: ItemPost<Approvers>) -> Page {
    let ItemPost { id, post } = item;
    let reason = post.field("reason");
    act(&web, &post.ctx, move |review, user| {
        review.delete(user, &id, &reason)
    })
    .await?;
    Ok(redirect("/items?done=deleted"))
}
