//! The review pages and their form handlers.
//!
//! Owns: one handler per route, each starting with the guard for its role. Pages are built
//! from [`super::html`] pieces; every dynamic value is escaped there.
//! Must never: show an original as anything but escaped text or a hex dump, or act on a form
//! whose CSRF token did not match.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Extension, Form, Path, Query, State};
use axum::http::{header, HeaderMap, Response, StatusCode};
use axum::routing::{get, post};
use axum::Router;

use super::html::{esc, esc_short, notice, page, url, Lang, Viewer};
use super::{blocking, error_page, page_response, redirect, review_error, Access, Ctx, Peer, Web};
use crate::audit::time::{jst, parse_rfc3339};
use crate::review::{RequestState, Role, Target};
use crate::store::quarantine::{valid_id, QuarantineItem};

type Res = Response<Body>;
type Params = HashMap<String, String>;

const OPERATOR: &[Role] = &[Role::Operator];
const APPROVER: &[Role] = &[Role::Approver];
const AUDITORS: &[Role] = &[Role::Auditor, Role::Admin];
const ADMIN: &[Role] = &[Role::Admin];

/// Items per list page.
const PAGE_SIZE: usize = 50;

pub(super) fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route("/", get(dashboard))
        .route("/static/style.css", get(style))
        .route("/lang/{lang}", get(set_lang))
        .route("/login", get(login_form).post(login))
        .route("/logout", post(logout))
        .route("/password", get(password_form).post(change_password))
        .route("/items", get(items))
        .route("/items/{id}", get(item))
        .route("/items/{id}/original", post(original))
        .route("/items/{id}/request", post(request_release))
        .route("/items/{id}/delete", post(delete_item))
        .route("/requests", get(requests))
        .route("/requests/{id}/{action}", post(decide))
        .route("/audit", get(audit_search))
        .route("/users", get(users).post(add_user))
        .route("/users/{name}/{action}", post(user_action))
}

fn roles_label(lang: Lang, roles: &[Role]) -> String {
    roles
        .iter()
        .map(|r| role_label(lang, *r))
        .collect::<Vec<_>>()
        .join(lang.t("・", ", "))
}

fn role_label(lang: Lang, role: Role) -> &'static str {
    match lang {
        Lang::Ja => role.label_ja(),
        Lang::En => role.as_str(),
    }
}

/// The page frame for a logged-in account.
fn frame(ctx: &Ctx, title: &str, body: &str) -> Res {
    let lang = ctx.lang;
    let mut nav: Vec<(&str, &str)> = vec![
        ("/", lang.t("ダッシュボード", "Dashboard")),
        ("/items", lang.t("隔離一覧", "Quarantine")),
        ("/requests", lang.t("解除申請", "Release requests")),
    ];
    if ctx.has_any(AUDITORS) {
        nav.push(("/audit", lang.t("監査ログ", "Audit log")));
    }
    if ctx.has_any(ADMIN) {
        nav.push(("/users", lang.t("アカウント", "Accounts")));
    }
    nav.push(("/password", lang.t("パスワード変更", "Password")));
    let roles_label = roles_label(lang, &ctx.session.roles);
    let viewer = Viewer {
        user: &ctx.session.user,
        role: &roles_label,
        nav: &nav,
        csrf: &ctx.session.csrf,
    };
    page_response(StatusCode::OK, page(lang, title, Some(&viewer), body))
}

fn csrf_field(ctx: &Ctx) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        esc(&ctx.session.csrf)
    )
}

/// A fixed message for `?done=…` (never the query text itself).
fn done_notice(lang: Lang, q: &Params) -> String {
    let text = match q.get("done").map(String::as_str) {
        Some("requested") => lang.t(
            "解除を申請しました。別の承認者の承認を待っています。",
            "Release requested; waiting for another person's approval.",
        ),
        Some("approved") => lang.t("承認し、配送しました。", "Approved and delivered."),
        Some("rejected") => lang.t("却下しました。", "Rejected."),
        Some("cancelled") => lang.t("申請を取り下げました。", "Request withdrawn."),
        Some("deleted") => lang.t("削除しました。", "Deleted."),
        Some("password") => lang.t("パスワードを変更しました。", "Password changed."),
        Some("unlocked") => lang.t("ロックを解除しました。", "Unlocked."),
        _ => return String::new(),
    };
    notice(text)
}

async fn style() -> Res {
    Response::builder()
        .header(header::CONTENT_TYPE, "text/css; charset=utf-8")
        .body(Body::from(super::html::STYLE))
        .unwrap_or_default()
}

async fn set_lang(Path(lang): Path<String>) -> Res {
    let value = if lang == "en" { "en" } else { "ja" };
    Response::builder()
        .status(StatusCode::SEE_OTHER)
        .header(header::LOCATION, "/")
        .header(
            header::SET_COOKIE,
            format!("mukaika_lang={value}; Path=/; SameSite=Strict; Max-Age=31536000"),
        )
        .body(Body::empty())
        .unwrap_or_default()
}

// ---- login, logout, password ----------------------------------------------------------------

fn login_page(web: &Web, lang: Lang, error: Option<&str>, expired: bool) -> Res {
    let token = crate::review::random_hex(16);
    let mut body = String::new();
    if expired {
        body.push_str(&notice(lang.t(
            "一定時間操作がなかったか、ログインから一定時間が経ったため、ログアウトしました。",
            "Your session ended after a period without activity or after its maximum lifetime.",
        )));
    }
    if let Some(e) = error {
        body.push_str(&super::html::error(e));
    }
    let _ = write!(
        body,
        "<form method=\"post\" action=\"/login\"><input type=\"hidden\" name=\"csrf\" value=\"{token}\">\
         <p><label>{}<br><input name=\"name\" autocomplete=\"username\" required></label></p>\
         <p><label>{}<br><input name=\"password\" type=\"password\" autocomplete=\"current-password\" required></label></p>\
         <p><button>{}</button></p></form>",
        lang.t("アカウント名", "Account"),
        lang.t("パスワード", "Password"),
        lang.t("ログイン", "Log in"),
    );
    let mut r = page_response(
        if error.is_some() {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::OK
        },
        page(lang, lang.t("ログイン", "Log in"), None, &body),
    );
    if let Ok(v) = web.cookie("mukaika_login", &token, Some(600)).parse() {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

async fn login_form(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Query(q): Query<Params>,
) -> Res {
    login_page(&web, super::lang(&headers), None, q.contains_key("expired"))
}

async fn login(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    peer: Option<Extension<Peer>>,
    Form(form): Form<Params>,
) -> Res {
    let lang = super::lang(&headers);
    let bound = super::cookie(&headers, "mukaika_login");
    let sent = form.get("csrf");
    if !matches!((&bound, sent), (Some(b), Some(s)) if super::same_token(b, s)) {
        return login_page(
            &web,
            lang,
            Some(lang.t(
                "ログインフォームの有効期限が切れました。もう一度入力してください。",
                "The login form expired; please try again.",
            )),
            false,
        );
    }
    let name = form.get("name").cloned().unwrap_or_default();
    let password = form.get("password").cloned().unwrap_or_default();
    let client = peer
        .map(|Extension(Peer(a))| a.ip().to_string())
        .unwrap_or_default();
    let review = Arc::clone(&web.review);
    let result = match blocking(move || review.login(&name, &password, &client)).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    match result {
        Ok(ok) => {
            let token = web.start_session(&ok);
            let mut r = redirect(if ok.user.must_change {
                "/password"
            } else {
                "/"
            });
            for c in [
                web.cookie(web.session_cookie(), &token, None),
                web.cookie("mukaika_login", "", Some(0)),
            ] {
                if let Ok(v) = c.parse() {
                    r.headers_mut().append(header::SET_COOKIE, v);
                }
            }
            r
        }
        Err(e) if e.is_login_failure() => login_page(&web, lang, Some(&e.to_string()), false),
        Err(e) => review_error(lang, &e),
    }
}

async fn logout(State(web): State<Arc<Web>>, headers: HeaderMap, Form(form): Form<Params>) -> Res {
    let ctx = match web.guard_post(&headers, Access::Any, "/password", &form) {
        Ok(c) => c,
        Err(r) => return r,
    };
    web.end_session(&ctx.token);
    let mut r = redirect("/login");
    if let Ok(v) = web.cookie(web.session_cookie(), "", Some(0)).parse() {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

fn password_body(ctx: &Ctx, error: Option<&str>) -> String {
    let lang = ctx.lang;
    let mut body = String::new();
    if ctx.session.must_change {
        body.push_str(&notice(lang.t(
                "初期パスワード（一時パスワード）のままです。続けるには新しいパスワードを設定してください（対策基準 6.4(3)⑤）。",
                "You are using a one-time password. Set a new password to continue."
            )));
    }
    if let Some(e) = error {
        body.push_str(&super::html::error(e));
    }
    let _ = write!(
        body,
        "<form method=\"post\" action=\"/password\">{}\
         <p><label>{}<br><input name=\"old\" type=\"password\" autocomplete=\"current-password\" required></label></p>\
         <p><label>{}<br><input name=\"new\" type=\"password\" autocomplete=\"new-password\" minlength=\"12\" required></label></p>\
         <p><label>{}<br><input name=\"again\" type=\"password\" autocomplete=\"new-password\" minlength=\"12\" required></label></p>\
         <p><button>{}</button></p></form>",
        csrf_field(ctx),
        lang.t("現在のパスワード", "Current password"),
        lang.t(
            "新しいパスワード（12 文字以上。同じ文字の繰り返し、数字だけ、アカウント名を含むもの、よく使われるものは不可）",
            "New password (12 characters or more; no repeats, not digits only, not your account name, not a common password)",
        ),
        lang.t("新しいパスワード（確認）", "New password again"),
        lang.t("変更する", "Change"),
    );
    body
}

async fn password_form(State(web): State<Arc<Web>>, headers: HeaderMap) -> Res {
    match web.guard(&headers, Access::Any, "/password") {
        Ok(ctx) => {
            let title = ctx.lang.t("パスワード変更", "Change password");
            frame(&ctx, title, &password_body(&ctx, None))
        }
        Err(r) => r,
    }
}

async fn change_password(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Form(form): Form<Params>,
) -> Res {
    let ctx = match web.guard_post(&headers, Access::Any, "/password", &form) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let lang = ctx.lang;
    let title = lang.t("パスワード変更", "Change password");
    let (old, new, again) = (
        form.get("old").cloned().unwrap_or_default(),
        form.get("new").cloned().unwrap_or_default(),
        form.get("again").cloned().unwrap_or_default(),
    );
    if new != again {
        let msg = lang.t(
            "確認用のパスワードが一致しません。",
            "The two new passwords differ.",
        );
        return frame(&ctx, title, &password_body(&ctx, Some(msg)));
    }
    let review = Arc::clone(&web.review);
    let user = ctx.session.user.clone();
    match blocking(move || review.change_password(&user, &old, &new)).await {
        Ok(Ok(credentials)) => {
            web.update_session(&ctx.token, |s| {
                s.must_change = false;
                s.credentials = credentials;
            });
            redirect("/?done=password")
        }
        Ok(Err(e)) => frame(&ctx, title, &password_body(&ctx, Some(&e.to_string()))),
        Err(r) => r,
    }
}

// ---- dashboard ----------------------------------------------------------------------------

/// An item's review status key: held, pending, released, rejected.
fn status_key(state: Option<RequestState>) -> &'static str {
    match state {
        None | Some(RequestState::Cancelled) => "held",
        Some(RequestState::Pending) => "pending",
        Some(RequestState::Approved) | Some(RequestState::Delivered) => "released",
        Some(RequestState::Rejected) => "rejected",
    }
}

fn status_label(lang: Lang, key: &str) -> &'static str {
    match key {
        "pending" => lang.t("承認待ち", "awaiting approval"),
        "released" => lang.t("解除済み", "released"),
        "rejected" => lang.t("却下（隔離中）", "rejected (held)"),
        _ => lang.t("隔離中", "held"),
    }
}

fn reason_label(lang: Lang, code: &str) -> String {
    match lang {
        Lang::Ja => format!("{}（{code}）", crate::pipeline::notice::reason_ja(code)),
        Lang::En => code.to_string(),
    }
}

async fn dashboard(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Query(q): Query<Params>,
) -> Res {
    let ctx = match web.guard(&headers, Access::Any, "/") {
        Ok(c) => c,
        Err(r) => return r,
    };
    let lang = ctx.lang;
    let w = Arc::clone(&web);
    let data = blocking(move || {
        let items = w.review.store().list();
        let statuses = w.review.statuses();
        let pending = w.review.requests(Some(RequestState::Pending));
        let depths: Vec<(&str, crate::store::spool::Depths)> =
            w.spools.iter().map(|(n, s)| (*n, s.depths())).collect();
        (items, statuses, pending, depths)
    })
    .await;
    let (items, statuses, pending, depths) = match data {
        Ok((Ok(i), Ok(s), Ok(p), d)) => (i, s, p, d),
        Ok(_) => return error_page(lang, StatusCode::INTERNAL_SERVER_ERROR, "store unreadable"),
        Err(r) => return r,
    };
    let mut body = done_notice(lang, &q);
    let s = &ctx.session;
    let _ = write!(
        body,
        "<p class=\"notice\">{}</p>",
        match &s.previous_login {
            Some(at) => format!(
                "{} {}（{}）。{} {} {}",
                lang.t("前回のログイン:", "Previous login:"),
                esc(&jst(at)),
                esc(s.previous_from.as_deref().unwrap_or("-")),
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
    );
    let mut by_status: HashMap<&str, usize> = HashMap::new();
    let mut by_reason: std::collections::BTreeMap<&str, usize> = Default::default();
    let mut by_day: std::collections::BTreeMap<String, usize> = Default::default();
    for i in &items {
        *by_status
            .entry(status_key(statuses.get(&i.id).copied()))
            .or_default() += 1;
        *by_reason.entry(i.reason.as_str()).or_default() += 1;
        *by_day
            .entry(jst(&i.at).chars().take(10).collect())
            .or_default() += 1;
    }
    let _ = write!(
        body,
        "<h2>{}</h2><table><tr>",
        lang.t("状態別", "By status")
    );
    for key in ["held", "pending", "rejected", "released"] {
        let _ = write!(
            body,
            "<th><a href=\"/items?status={key}\">{}</a></th>",
            status_label(lang, key)
        );
    }
    body.push_str("</tr><tr>");
    for key in ["held", "pending", "rejected", "released"] {
        let _ = write!(body, "<td>{}</td>", by_status.get(key).unwrap_or(&0));
    }
    let _ = write!(
        body,
        "</tr></table><p><a href=\"/requests\">{} {}</a></p>",
        lang.t("承認待ちの申請:", "Requests awaiting approval:"),
        pending.len()
    );
    let _ = write!(
        body,
        "<h2>{}</h2><table><tr><th>{}</th><th>{}</th></tr>",
        lang.t("理由別", "By reason"),
        lang.t("理由", "Reason"),
        lang.t("件数", "Count")
    );
    for (reason, n) in &by_reason {
        let _ = write!(
            body,
            "<tr><td><a href=\"/items?reason={}\">{}</a></td><td>{n}</td></tr>",
            url(reason),
            esc(&reason_label(lang, reason))
        );
    }
    let _ = write!(
        body,
        "</table><h2>{}</h2><table><tr><th>{}</th><th>{}</th></tr>",
        lang.t("日別（直近 14 日）", "By day (last 14 days)"),
        lang.t("日付", "Day"),
        lang.t("件数", "Count")
    );
    for (day, n) in by_day.iter().rev().take(14) {
        let _ = write!(
            body,
            "<tr><td><a href=\"/items?since={d}&amp;until={d}\">{d}</a></td><td>{n}</td></tr>",
            d = esc(day)
        );
    }
    let _ = write!(
        body,
        "</table><h2>{}</h2><table><tr><th>{}</th><th>incoming</th><th>active</th><th>deferred</th><th>hold</th></tr>",
        lang.t("キューの状況", "Queue depths"),
        lang.t("キュー", "Queue")
    );
    for (name, d) in &depths {
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(name),
            d.incoming,
            d.active,
            d.deferred,
            d.hold
        );
    }
    body.push_str("</table>");
    frame(&ctx, lang.t("ダッシュボード", "Dashboard"), &body)
}

// ---- the list -----------------------------------------------------------------------------

/// Whether an item passes the list filters. Dates are Japan-time days (`YYYY-MM-DD`).
fn passes(i: &QuarantineItem, status: &str, q: &Params) -> bool {
    let get = |k: &str| q.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    let contains = |hay: &str, needle: &str| hay.to_lowercase().contains(&needle.to_lowercase());
    let at = parse_rfc3339(&i.at).unwrap_or(0);
    let day_start = |d: &str| parse_rfc3339(d).map(|ms| ms.saturating_sub(9 * 3_600_000));
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

async fn items(State(web): State<Arc<Web>>, headers: HeaderMap, Query(q): Query<Params>) -> Res {
    let ctx = match web.guard(&headers, Access::Any, "/items") {
        Ok(c) => c,
        Err(r) => return r,
    };
    let lang = ctx.lang;
    let w = Arc::clone(&web);
    let (all, statuses) = match blocking(move || (w.review.store().list(), w.review.statuses()))
        .await
    {
        Ok((Ok(i), Ok(s))) => (i, s),
        Ok(_) => return error_page(lang, StatusCode::INTERNAL_SERVER_ERROR, "store unreadable"),
        Err(r) => return r,
    };
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
    let value = |k: &str| esc(q.get(k).map(String::as_str).unwrap_or(""));
    let mut body = done_notice(lang, &q);
    let _ = write!(
        body,
        "<form class=\"filters\" method=\"get\" action=\"/items\">\
         <label>{}<input type=\"date\" name=\"since\" value=\"{}\"></label>\
         <label>{}<input type=\"date\" name=\"until\" value=\"{}\"></label>\
         <label>{}<select name=\"source\"><option value=\"\">—</option><option value=\"mail\"{}>{}</option><option value=\"import\"{}>{}</option></select></label>\
         <label>{}<input name=\"sender\" value=\"{}\"></label>\
         <label>{}<input name=\"recipient\" value=\"{}\"></label>\
         <label>{}<select name=\"reason\"><option value=\"\">—</option>",
        lang.t("期間（開始）", "From"),
        value("since"),
        lang.t("期間（終了）", "To"),
        value("until"),
        lang.t("経路", "Source"),
        if q.get("source").map(String::as_str) == Some("mail") { " selected" } else { "" },
        lang.t("メール", "mail"),
        if q.get("source").map(String::as_str) == Some("import") { " selected" } else { "" },
        lang.t("取り込み", "import"),
        lang.t("差出人", "Sender"),
        value("sender"),
        lang.t("宛先", "Recipient"),
        value("recipient"),
        lang.t("理由", "Reason"),
    );
    for r in &reasons {
        let _ = write!(
            body,
            "<option value=\"{}\"{}>{}</option>",
            esc(r),
            if q.get("reason").map(String::as_str) == Some(*r) {
                " selected"
            } else {
                ""
            },
            esc(&reason_label(lang, r))
        );
    }
    let _ = write!(
        body,
        "</select></label><label>{}<input name=\"type\" value=\"{}\"></label><label>{}<select name=\"status\"><option value=\"\">—</option>",
        lang.t("形式", "Type"),
        value("type"),
        lang.t("状態", "Status"),
    );
    for key in ["held", "pending", "rejected", "released"] {
        let _ = write!(
            body,
            "<option value=\"{key}\"{}>{}</option>",
            if q.get("status").map(String::as_str) == Some(key) {
                " selected"
            } else {
                ""
            },
            status_label(lang, key)
        );
    }
    let _ = write!(
        body,
        "</select></label><label>{}<input type=\"search\" name=\"q\" value=\"{}\"></label><button>{}</button></form>",
        lang.t("検索（ID・件名・名前・SHA-256）", "Search (ID, subject, name, SHA-256)"),
        value("q"),
        lang.t("絞り込む", "Filter"),
    );
    let _ = write!(
        body,
        "<p>{} {}</p><table><tr><th>ID</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
        matching.len(),
        lang.t("件", "items"),
        lang.t("日時", "Time"),
        lang.t("経路", "Source"),
        lang.t("差出人", "Sender"),
        lang.t("宛先", "Recipients"),
        lang.t("件名", "Subject"),
        lang.t("名前", "Name"),
        lang.t("理由", "Reason"),
        lang.t("形式", "Type"),
        lang.t("状態", "Status"),
    );
    for (i, status) in matching
        .iter()
        .skip((page_no - 1) * PAGE_SIZE)
        .take(PAGE_SIZE)
    {
        let _ = write!(
            body,
            "<tr><td><a href=\"/items/{}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            url(&i.id),
            esc(&i.id),
            esc(&jst(&i.at)),
            esc(&i.source),
            esc_short(i.mail_from.as_deref().unwrap_or("-"), 60),
            esc_short(&i.rcpt_to.join(", "), 80),
            esc_short(i.subject.as_deref().unwrap_or("-"), 80),
            esc_short(i.name.as_deref().unwrap_or(lang.t("（メール全体）", "(whole message)")), 80),
            esc(&reason_label(lang, &i.reason)),
            esc(i.detected_type.as_deref().unwrap_or("-")),
            status_label(lang, status),
        );
    }
    body.push_str("</table><div class=\"pager\">");
    let link = |n: usize| {
        let mut params: Vec<String> = q
            .iter()
            .filter(|(k, v)| k.as_str() != "page" && k.as_str() != "done" && !v.is_empty())
            .map(|(k, v)| format!("{}={}", url(k), url(v)))
            .collect();
        params.sort();
        params.push(format!("page={n}"));
        format!("/items?{}", params.join("&amp;"))
    };
    if page_no > 1 {
        let _ = write!(
            body,
            "<a href=\"{}\">{}</a>",
            link(page_no - 1),
            lang.t("← 前へ", "← Previous")
        );
    }
    let _ = write!(body, "<span>{page_no} / {pages}</span>");
    if page_no < pages {
        let _ = write!(
            body,
            "<a href=\"{}\">{}</a>",
            link(page_no + 1),
            lang.t("次へ →", "Next →")
        );
    }
    body.push_str("</div>");
    frame(&ctx, lang.t("隔離一覧", "Quarantined items"), &body)
}

// ---- one item -----------------------------------------------------------------------------

/// The original shown safely: a message's decoded headers and text, a text file's text, or a
/// hex dump and printable strings. Never HTML.
fn safe_view(item: &QuarantineItem, bytes: &[u8], lang: Lang) -> String {
    const MAX_TEXT: usize = 64 * 1024;
    let mut out = String::new();
    let is_message = item.name.is_none() && item.source == "mail";
    if is_message {
        if let Some(msg) = mail_parser::MessageParser::default().parse(bytes) {
            let _ = write!(
                out,
                "<h3>{}</h3><pre>",
                lang.t("ヘッダー（デコード済み）", "Headers (decoded)")
            );
            for h in msg.headers() {
                let value = match &h.value {
                    mail_parser::HeaderValue::Text(t) => t.to_string(),
                    mail_parser::HeaderValue::TextList(l) => l.join(", "),
                    mail_parser::HeaderValue::Address(a) => a
                        .iter()
                        .map(|x| {
                            format!("{} <{}>", x.name().unwrap_or(""), x.address().unwrap_or(""))
                        })
                        .collect::<Vec<_>>()
                        .join(", "),
                    mail_parser::HeaderValue::DateTime(d) => d.to_rfc3339(),
                    _ => msg
                        .raw_message()
                        .get(h.offset_start as usize..h.offset_end as usize)
                        .map(|b| String::from_utf8_lossy(b).trim().to_string())
                        .unwrap_or_default(),
                };
                let _ = writeln!(out, "{}: {}", esc(h.name.as_str()), esc(&value));
            }
            out.push_str("</pre>");
            if let Some(text) = msg.body_text(0) {
                let text: String = text.chars().take(MAX_TEXT).collect();
                let _ = write!(
                    out,
                    "<h3>{}</h3><pre>{}</pre>",
                    lang.t("本文（テキストとして表示）", "Body (as text)"),
                    esc(&text)
                );
            }
            let html_parts = msg
                .parts
                .iter()
                .filter(|p| matches!(p.body, mail_parser::PartType::Html(_)))
                .count();
            if html_parts > 0 {
                if let Some(html) = msg.body_html(0) {
                    let html: String = html.chars().take(MAX_TEXT).collect();
                    let _ = write!(
                        out,
                        "<h3>{}</h3><pre>{}</pre>",
                        lang.t(
                            "HTML ソース（文字として表示。描画も実行もしません）",
                            "HTML source (shown as characters; never rendered or run)"
                        ),
                        esc(&html)
                    );
                }
            }
            return out;
        }
    }
    if let Ok(text) = std::str::from_utf8(&bytes[..bytes.len().min(MAX_TEXT)]) {
        if !text.contains('\0') {
            let _ = write!(
                out,
                "<h3>{}</h3><pre>{}</pre>",
                lang.t("内容（テキストとして表示）", "Content (as text)"),
                esc(text)
            );
            return out;
        }
    }
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
    let _ = write!(
        out,
        "<h3>{}</h3><pre>{}</pre><h3>{}</h3><pre>{}</pre>",
        lang.t("先頭 1 KB の16進ダンプ", "Hex dump of the first 1 KB"),
        esc(&dump),
        lang.t("文字列（6 文字以上）", "Strings (6 characters or more)"),
        esc(&strings)
    );
    out
}

/// The guard of a form posted about one item: role, CSRF token, and an ID that cannot name a
/// path.
#[allow(clippy::result_large_err)]
fn item_post(
    web: &Web,
    headers: &HeaderMap,
    roles: &'static [Role],
    id: &str,
    form: &Params,
) -> Result<Ctx, Res> {
    let ctx = web.guard_post(headers, Access::Roles(roles), "/items", form)?;
    if !valid_id(id) {
        return Err(bad_id(ctx.lang));
    }
    Ok(ctx)
}

fn bad_id(lang: Lang) -> Res {
    error_page(
        lang,
        StatusCode::BAD_REQUEST,
        lang.t("隔離IDの形式が正しくありません。", "Malformed item ID."),
    )
}

async fn item(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<Params>,
) -> Res {
    let ctx = match web.guard(&headers, Access::Any, "/items") {
        Ok(c) => c,
        Err(r) => return r,
    };
    let lang = ctx.lang;
    if !valid_id(&id) {
        return bad_id(lang);
    }
    let w = Arc::clone(&web);
    let lookup = id.clone();
    let viewer = ctx.session.user.clone();
    let loaded = blocking(move || {
        let item = w.review.item(&lookup)?;
        let bytes = w.review.view_bytes(&viewer, &lookup)?;
        let requests = w.review.requests_for(&lookup)?;
        let mut trail = crate::audit::search(
            &w.audit_dir,
            &crate::audit::Search {
                id: Some(lookup.clone()),
                ..Default::default()
            },
        )
        .unwrap_or_default();
        if item.source == "mail" && item.origin_id != item.id {
            trail.extend(
                crate::audit::search(
                    &w.audit_dir,
                    &crate::audit::Search {
                        id: Some(item.origin_id.clone()),
                        ..Default::default()
                    },
                )
                .unwrap_or_default(),
            );
            trail.sort_by_key(|r| r.seq);
            trail.dedup_by_key(|r| r.seq);
        }
        let pairs: Vec<String> = w
            .review
            .config()
            .import
            .pairs
            .iter()
            .map(|p| p.name.clone())
            .collect();
        Ok::<_, crate::review::ReviewError>((item, bytes, requests, trail, pairs))
    })
    .await;
    let (item, bytes, requests, trail, pairs) = match loaded {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => return review_error(lang, &e),
        Err(r) => return r,
    };
    let me = ctx.session.user.as_str();
    let mut body = done_notice(lang, &q);
    let row = |k: &str, v: &str| format!("<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(v));
    body.push_str("<table>");
    body.push_str(&row(lang.t("隔離ID", "Item ID"), &item.id));
    body.push_str(&row(lang.t("日時", "Time"), &jst(&item.at)));
    body.push_str(&row(
        lang.t("経路", "Source"),
        &format!("{} ({})", item.source, item.origin_id),
    ));
    body.push_str(&row(
        lang.t("差出人（エンベロープ）", "Envelope sender"),
        item.mail_from.as_deref().unwrap_or("-"),
    ));
    body.push_str(&row(
        lang.t("宛先（エンベロープ）", "Envelope recipients"),
        &item.rcpt_to.join(", "),
    ));
    body.push_str(&row(
        lang.t("件名", "Subject"),
        item.subject.as_deref().unwrap_or("-"),
    ));
    body.push_str(&row(
        lang.t("名前", "Name"),
        item.name
            .as_deref()
            .unwrap_or(lang.t("（メール全体）", "(whole message)")),
    ));
    body.push_str(&row(
        lang.t("理由", "Reason"),
        &format!("{} — {}", reason_label(lang, &item.reason), item.detail),
    ));
    body.push_str(&row(
        lang.t("形式（中身から判定）", "Detected type"),
        item.detected_type.as_deref().unwrap_or("-"),
    ));
    body.push_str(&row(
        lang.t("サイズ", "Size"),
        &format!("{} bytes", item.size),
    ));
    body.push_str(&row("SHA-256", &item.sha256));
    body.push_str("</table>");

    // Requests and the decisions open to this account.
    let _ = write!(
        body,
        "<h2>{}</h2><table><tr><th>ID</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th></th></tr>",
        lang.t("解除申請", "Release requests"),
        lang.t("申請者", "Requester"),
        lang.t("宛先・出力先", "Target"),
        lang.t("理由", "Reason"),
        lang.t("状態", "State"),
        lang.t("判断", "Decision"),
    );
    for r in &requests {
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&r.id),
            esc(&r.requester),
            esc(&r.target.to_string()),
            esc(&r.reason),
            esc(match lang { Lang::Ja => r.state.label_ja(), Lang::En => state_en(r.state) }),
            esc(&format!(
                "{} {}",
                r.decided_by.as_deref().unwrap_or(""),
                r.decision_reason.as_deref().unwrap_or("")
            )),
            decision_forms(&ctx, r, me),
        );
    }
    body.push_str("</table>");
    if requests.is_empty() {
        let _ = write!(
            body,
            "<p>{}</p>",
            lang.t(
                "この項目への解除申請はまだありません。",
                "No release requests yet."
            )
        );
    }
    let open = requests
        .iter()
        .any(|r| matches!(r.state, RequestState::Pending | RequestState::Approved));
    let never = web
        .review
        .config()
        .quarantine
        .never_release
        .contains(&item.reason);
    if ctx.has_any(OPERATOR) && !open && !never {
        let _ = write!(
            body,
            "<fieldset><legend>{}</legend><form method=\"post\" action=\"/items/{}/request\">{}\
             <p><label><input type=\"radio\" name=\"target\" value=\"original\"{}> {}</label></p>\
             <p><label><input type=\"radio\" name=\"target\" value=\"recipients\"> {}</label> <input name=\"recipients\" size=\"50\" placeholder=\"staff@city.example.lg.jp\"></p>",
            lang.t("解除を申請する", "Request release"),
            url(&item.id),
            csrf_field(&ctx),
            if item.rcpt_to.is_empty() { " disabled" } else { " checked" },
            lang.t("元の宛先へ配送", "Deliver to the original recipients"),
            lang.t("指定した宛先へ配送:", "Deliver to:"),
        );
        if !pairs.is_empty() {
            let _ = write!(
                body,
                "<p><label><input type=\"radio\" name=\"target\" value=\"export\"{}> {}</label> <select name=\"pair\">",
                if item.rcpt_to.is_empty() { " checked" } else { "" },
                lang.t("取り込みフォルダーの出力先へコピー:", "Copy to the export folder of:"),
            );
            for p in &pairs {
                let _ = write!(body, "<option>{}</option>", esc(p));
            }
            body.push_str("</select></p>");
        }
        let _ = write!(
            body,
            "<p><label>{}<br><textarea name=\"reason\" rows=\"3\" cols=\"60\" required></textarea></label></p><p><button>{}</button></p></form></fieldset>",
            lang.t("理由（業務上の必要性）", "Reason (business need)"),
            lang.t("申請する", "Request"),
        );
    } else if never {
        body.push_str(&super::html::error(lang.t(
            "この理由で隔離されたものは解除できません。",
            "Items held for this reason are never released.",
        )));
    }
    if ctx.has_any(APPROVER) {
        let _ = write!(
            body,
            "<fieldset><legend>{}</legend><form method=\"post\" action=\"/items/{id}/original\" class=\"inline\">{csrf}<button>{}</button></form> \
             <form method=\"post\" action=\"/items/{id}/delete\">{csrf}<label>{}<input name=\"reason\" required size=\"40\"></label> <button>{}</button></form></fieldset>",
            lang.t("承認者の操作", "Approver actions"),
            lang.t("原本をダウンロード（監査記録されます）", "Download the original (audited)"),
            lang.t("削除の理由", "Reason for deletion"),
            lang.t("削除する", "Delete"),
            id = url(&item.id),
            csrf = csrf_field(&ctx),
        );
    }
    let _ = write!(
        body,
        "<h2>{}</h2>{}",
        lang.t("原本の安全な表示", "Safe view of the original"),
        safe_view(&item, &bytes, lang)
    );
    let report = serde_json::to_string_pretty(&item.report).unwrap_or_default();
    let _ = write!(
        body,
        "<h2>{}</h2><pre>{}</pre>",
        lang.t(
            "無害化レポート（すべての検出事項）",
            "Sanitizer report (every finding)"
        ),
        esc(&report)
    );
    let _ = write!(
        body,
        "<h2>{}</h2>{}",
        lang.t("この項目の監査記録", "Audit trail of this item"),
        audit_table(lang, &trail)
    );
    frame(
        &ctx,
        &format!("{} {}", lang.t("隔離項目", "Item"), item.id),
        &body,
    )
}

fn state_en(s: RequestState) -> &'static str {
    match s {
        RequestState::Pending => "pending",
        RequestState::Approved => "approved (delivering)",
        RequestState::Delivered => "delivered",
        RequestState::Rejected => "rejected",
        RequestState::Cancelled => "withdrawn",
    }
}

/// The approve / reject / withdraw forms a request offers this account.
fn decision_forms(ctx: &Ctx, r: &crate::review::Request, me: &str) -> String {
    let lang = ctx.lang;
    if r.state != RequestState::Pending {
        return String::new();
    }
    let form = |action: &str, label: &str| {
        format!(
            "<form method=\"post\" action=\"/requests/{}/{action}\">{}<input name=\"reason\" required placeholder=\"{}\" size=\"24\"> <button>{}</button></form>",
            url(&r.id),
            csrf_field(ctx),
            lang.t("理由", "reason"),
            label
        )
    };
    let mut out = String::new();
    if ctx.has_any(APPROVER) {
        if r.requester == me {
            let _ = write!(
                out,
                "<span class=\"badge\">{}</span>",
                lang.t(
                    "自分の申請は承認できません",
                    "You cannot decide your own request"
                )
            );
        } else {
            out.push_str(&form("approve", lang.t("承認", "Approve")));
            out.push_str(&form("reject", lang.t("却下", "Reject")));
        }
    }
    if ctx.has_any(OPERATOR) {
        out.push_str(&form("cancel", lang.t("取り下げ", "Withdraw")));
    }
    out
}

fn audit_table(lang: Lang, records: &[crate::audit::Record]) -> String {
    let mut out = format!(
        "<table><tr><th>#</th><th>{}</th><th>{}</th><th>{}</th></tr>",
        lang.t("日時", "Time"),
        lang.t("種類", "Event"),
        lang.t("内容", "Details")
    );
    for r in records {
        let mut fields = r.event.clone();
        let kind = fields
            .get("type")
            .and_then(|t| t.as_str())
            .unwrap_or("")
            .to_string();
        if let Some(o) = fields.as_object_mut() {
            o.remove("type");
        }
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            r.seq,
            esc(&jst(&r.ts)),
            esc(&kind),
            esc_short(&fields.to_string(), 600)
        );
    }
    out.push_str("</table>");
    out
}

async fn original(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<Params>,
) -> Res {
    let ctx = match item_post(&web, &headers, APPROVER, &id, &form) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let review = Arc::clone(&web.review);
    let user = ctx.session.user.clone();
    let (item, bytes) = match blocking(move || review.original(&user, &id)).await {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => return review_error(ctx.lang, &e),
        Err(r) => return r,
    };
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
    Response::builder()
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(
            header::CONTENT_DISPOSITION,
            format!(
                "attachment; filename=\"{ascii}\"; filename*=UTF-8''{}",
                url(&name)
            ),
        )
        .body(Body::from(bytes))
        .unwrap_or_default()
}

async fn request_release(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<Params>,
) -> Res {
    let ctx = match item_post(&web, &headers, OPERATOR, &id, &form) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let lang = ctx.lang;
    let target = match form.get("target").map(String::as_str) {
        Some("original") => Ok(Target::Original),
        Some("recipients") => {
            format!("to:{}", form.get("recipients").cloned().unwrap_or_default()).parse()
        }
        Some("export") => Ok(Target::Export(
            form.get("pair").cloned().unwrap_or_default(),
        )),
        _ => Err("choose a target".to_string()),
    };
    let target = match target {
        Ok(t) => t,
        Err(e) => {
            return error_page(
                lang,
                StatusCode::BAD_REQUEST,
                &format!(
                    "{} ({e})",
                    lang.t("宛先・出力先が正しくありません。", "Bad target.")
                ),
            )
        }
    };
    let reason = form.get("reason").cloned().unwrap_or_default();
    let review = Arc::clone(&web.review);
    let user = ctx.session.user.clone();
    let item_id = id.clone();
    match blocking(move || review.request_release(&user, &item_id, target, &reason)).await {
        Ok(Ok(_)) => redirect(&format!("/items/{}?done=requested", url(&id))),
        Ok(Err(e)) => review_error(lang, &e),
        Err(r) => r,
    }
}

async fn delete_item(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<Params>,
) -> Res {
    let ctx = match item_post(&web, &headers, APPROVER, &id, &form) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let reason = form.get("reason").cloned().unwrap_or_default();
    let review = Arc::clone(&web.review);
    let user = ctx.session.user.clone();
    match blocking(move || review.delete(&user, &id, &reason)).await {
        Ok(Ok(())) => redirect("/items?done=deleted"),
        Ok(Err(e)) => review_error(ctx.lang, &e),
        Err(r) => r,
    }
}

// ---- requests -----------------------------------------------------------------------------

async fn requests(State(web): State<Arc<Web>>, headers: HeaderMap, Query(q): Query<Params>) -> Res {
    let ctx = match web.guard(&headers, Access::Any, "/requests") {
        Ok(c) => c,
        Err(r) => return r,
    };
    let lang = ctx.lang;
    let review = Arc::clone(&web.review);
    let all = match blocking(move || review.requests(None)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return review_error(lang, &e),
        Err(r) => return r,
    };
    let me = ctx.session.user.clone();
    let mut body = done_notice(lang, &q);
    for (title, pending) in [
        (lang.t("承認待ち", "Awaiting approval"), true),
        (
            lang.t(
                "これまでの申請（最新 200 件）",
                "Earlier requests (latest 200)",
            ),
            false,
        ),
    ] {
        let _ = write!(
            body,
            "<h2>{}</h2><table><tr><th>ID</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th></th></tr>",
            title,
            lang.t("隔離ID", "Item"),
            lang.t("申請日時", "Requested"),
            lang.t("申請者", "Requester"),
            lang.t("宛先・出力先", "Target"),
            lang.t("理由", "Reason"),
            lang.t("状態", "State"),
        );
        for r in all
            .iter()
            .filter(|r| (r.state == RequestState::Pending) == pending)
            .take(200)
        {
            let _ = write!(
                body,
                "<tr><td>{}</td><td><a href=\"/items/{}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}{}</td><td>{}</td></tr>",
                esc(&r.id),
                url(&r.item_id),
                esc(&r.item_id),
                esc(&jst(&r.requested_at)),
                esc(&r.requester),
                esc(&r.target.to_string()),
                esc(&r.reason),
                esc(match lang { Lang::Ja => r.state.label_ja(), Lang::En => state_en(r.state) }),
                r.decided_by
                    .as_deref()
                    .map(|b| format!(" — {} {}", esc(b), esc(r.decision_reason.as_deref().unwrap_or(""))))
                    .unwrap_or_default(),
                decision_forms(&ctx, r, &me),
            );
        }
        body.push_str("</table>");
    }
    frame(&ctx, lang.t("解除申請", "Release requests"), &body)
}

async fn decide(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    Form(form): Form<Params>,
) -> Res {
    let roles: &'static [Role] = match action.as_str() {
        "approve" | "reject" => APPROVER,
        "cancel" => OPERATOR,
        _ => {
            return error_page(
                super::lang(&headers),
                StatusCode::NOT_FOUND,
                "unknown action",
            )
        }
    };
    let ctx = match web.guard_post(&headers, Access::Roles(roles), "/requests", &form) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let reason = form.get("reason").cloned().unwrap_or_default();
    let review = Arc::clone(&web.review);
    let user = ctx.session.user.clone();
    let act = action.clone();
    let result = blocking(move || {
        let item = review.request(&id)?.item_id;
        match act.as_str() {
            "approve" => review.approve(&user, &id, &reason).map(|_| ()),
            "reject" => review.reject(&user, &id, &reason),
            _ => review.cancel(&user, &id, &reason),
        }
        .map(|()| item)
    })
    .await;
    let done = match action.as_str() {
        "approve" => "approved",
        "reject" => "rejected",
        _ => "cancelled",
    };
    match result {
        Ok(Ok(item)) => redirect(&format!("/items/{}?done={done}", url(&item))),
        Ok(Err(e)) => review_error(ctx.lang, &e),
        Err(r) => r,
    }
}

// ---- audit search -------------------------------------------------------------------------

async fn audit_search(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Query(q): Query<Params>,
) -> Res {
    let ctx = match web.guard(&headers, Access::Roles(AUDITORS), "/audit") {
        Ok(c) => c,
        Err(r) => return r,
    };
    let lang = ctx.lang;
    let get = |k: &str| {
        q.get(k)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let searched = [
        "id",
        "sender",
        "recipient",
        "sha256",
        "verdict",
        "user",
        "since",
        "until",
    ]
    .iter()
    .any(|k| get(k).is_some());
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
        match blocking(move || crate::audit::search(&dir, &filter)).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                return error_page(lang, StatusCode::INTERNAL_SERVER_ERROR, &e.to_string())
            }
            Err(r) => return r,
        }
    } else {
        Vec::new()
    };
    let value = |k: &str| esc(q.get(k).map(String::as_str).unwrap_or(""));
    let mut body = String::from("<form class=\"filters\" method=\"get\" action=\"/audit\">");
    for (key, ja, en) in [
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
    ] {
        let _ = write!(
            body,
            "<label>{}<input name=\"{key}\" value=\"{}\"></label>",
            lang.t(ja, en),
            value(key)
        );
    }
    let _ = write!(body, "<button>{}</button></form>", lang.t("検索", "Search"));
    if searched {
        let shown: Vec<crate::audit::Record> = records.iter().rev().take(500).cloned().collect();
        let _ = write!(
            body,
            "<p>{} {}{}</p>{}",
            records.len(),
            lang.t("件", "records"),
            if records.len() > 500 {
                lang.t("（新しい 500 件を表示）", " (newest 500 shown)")
            } else {
                ""
            },
            audit_table(lang, &shown)
        );
    }
    frame(&ctx, lang.t("監査ログの検索", "Audit log search"), &body)
}

// ---- accounts -----------------------------------------------------------------------------

async fn users_page(web: &Web, ctx: &Ctx, notice: Option<String>) -> Res {
    let lang = ctx.lang;
    let review = Arc::clone(&web.review);
    let list = match blocking(move || review.users()).await {
        Ok(Ok(u)) => u,
        Ok(Err(e)) => return review_error(lang, &e),
        Err(r) => return r,
    };
    let mut body = notice.unwrap_or_default();
    let _ = write!(
        body,
        "<table><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th></th></tr>",
        lang.t("アカウント", "Account"),
        lang.t("役割", "Role"),
        lang.t("前回ログイン", "Last login"),
        lang.t("状態", "State"),
        lang.t("作成", "Created"),
    );
    let now = crate::audit::log::now_millis();
    for u in &list {
        let state = if u.locked_until_ms > now {
            lang.t("ロック中", "locked")
        } else if u.must_change {
            lang.t("初期パスワード未変更", "one-time password not changed")
        } else {
            lang.t("有効", "active")
        };
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>\
             <form method=\"post\" action=\"/users/{n}/unlock\" class=\"inline\">{csrf}<button>{}</button></form> \
             <form method=\"post\" action=\"/users/{n}/reset\" class=\"inline\">{csrf}<button>{}</button></form></td></tr>",
            esc(&u.name),
            roles_label(lang, &u.roles),
            esc(&u.last_login_at.as_deref().map(jst).unwrap_or_default()),
            state,
            esc(&jst(&u.created_at)),
            lang.t("ロック解除", "Unlock"),
            lang.t("パスワード再発行", "Reset password"),
            n = url(&u.name),
            csrf = csrf_field(ctx),
        );
    }
    let _ = write!(
        body,
        "</table><fieldset><legend>{}</legend><form method=\"post\" action=\"/users\">{}\
         <label>{}<input name=\"name\" required pattern=\"[A-Za-z0-9._-]{{1,32}}\"></label> <label>{}",
        lang.t("アカウントを作る", "Create an account"),
        csrf_field(ctx),
        lang.t("アカウント名", "Name"),
        lang.t("役割", "Role"),
    );
    body.push_str("</label>");
    for r in Role::ALL {
        let _ = write!(
            body,
            "<label><input type=\"checkbox\" name=\"role_{}\" value=\"1\"> {}</label>",
            r.as_str(),
            role_label(lang, r)
        );
    }
    let _ = write!(
        body,
        " <button>{}</button></form></fieldset>",
        lang.t("作成", "Create")
    );
    frame(ctx, lang.t("アカウント", "Accounts"), &body)
}

async fn users(State(web): State<Arc<Web>>, headers: HeaderMap, Query(q): Query<Params>) -> Res {
    match web.guard(&headers, Access::Roles(ADMIN), "/users") {
        Ok(ctx) => {
            let notice = done_notice(ctx.lang, &q);
            users_page(&web, &ctx, Some(notice)).await
        }
        Err(r) => r,
    }
}

fn one_time_notice(lang: Lang, name: &str, password: &str) -> String {
    format!(
        "<p class=\"notice\">{} <strong>{}</strong>: <span class=\"secret\">{}</span><br>{}</p>",
        lang.t("一時パスワード", "One-time password for"),
        esc(name),
        esc(password),
        lang.t(
            "この画面でだけ表示します。本人に安全な方法で伝えてください。最初のログインで変更が必要です。",
            "Shown only now. Hand it over safely; it must be changed at first login."
        )
    )
}

async fn add_user(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Form(form): Form<Params>,
) -> Res {
    let ctx = match web.guard_post(&headers, Access::Roles(ADMIN), "/users", &form) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let lang = ctx.lang;
    let name = form.get("name").cloned().unwrap_or_default();
    let roles: Vec<Role> = Role::ALL
        .into_iter()
        .filter(|r| form.contains_key(&format!("role_{}", r.as_str())))
        .collect();
    let review = Arc::clone(&web.review);
    let (by, who) = (ctx.session.user.clone(), name.clone());
    match blocking(move || review.add_user(&by, &who, &roles)).await {
        Ok(Ok(password)) => {
            users_page(&web, &ctx, Some(one_time_notice(lang, &name, &password))).await
        }
        Ok(Err(e)) => review_error(lang, &e),
        Err(r) => r,
    }
}

async fn user_action(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Path((name, action)): Path<(String, String)>,
    Form(form): Form<Params>,
) -> Res {
    let ctx = match web.guard_post(&headers, Access::Roles(ADMIN), "/users", &form) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let lang = ctx.lang;
    let review = Arc::clone(&web.review);
    let by = ctx.session.user.clone();
    let who = name.clone();
    match action.as_str() {
        "unlock" => match blocking(move || review.unlock(&by, &who)).await {
            Ok(Ok(())) => redirect("/users?done=unlocked"),
            Ok(Err(e)) => review_error(lang, &e),
            Err(r) => r,
        },
        "reset" => match blocking(move || review.reset_password(&by, &who)).await {
            Ok(Ok(password)) => {
                users_page(&web, &ctx, Some(one_time_notice(lang, &name, &password))).await
            }
            Ok(Err(e)) => review_error(lang, &e),
            Err(r) => r,
        },
        _ => error_page(lang, StatusCode::NOT_FOUND, "unknown action"),
    }
}
