//! The chrome every review page shares: the document head, the skip link, the header bar with
//! its menu and logout form, the flash messages, the error page, and the stylesheet.
//!
//! Owns: [`document`] and [`public_page`] (the only makers of a whole page, and so the only
//! callers of [`html::shown`]), [`frame`], [`error_page`], [`notice`], [`error`], [`done_notice`], the
//! role labels and [`STYLE`].
//! Invariants: every page is a maud template, so every value in it is escaped by the engine;
//! the menu shows only what the viewer's roles may open; no page carries script or inline
//! style (the CSP forbids both), and the stylesheet is served from `/static/style.css`.
//! Must never: take markup as a string, or use `PreEscaped` for anything but constant text
//! written here.

use axum::body::Body;
use axum::http::{header, Response, StatusCode};
use maud::{html, Markup, DOCTYPE};

use super::html::{shown, Lang};
use crate::review::Role;

/// Who is looking at a page (for the header bar).
pub(crate) struct Viewer<'a> {
    /// Account name.
    pub user: &'a str,
    /// Roles at login.
    pub roles: &'a [Role],
    /// The session's CSRF token (for the logout form).
    pub csrf: &'a str,
    /// The menu offers the audit log search.
    pub audit: bool,
    /// The menu offers the accounts page.
    pub accounts: bool,
}

/// A whole page, finished by [`shown`].
pub(crate) fn document(
    lang: Lang,
    title: &str,
    viewer: Option<&Viewer<'_>>,
    body: Markup,
) -> String {
    let page = html! {
        // maud's own constant `<!DOCTYPE html>`, the one pre-escaped piece of a page.
        (DOCTYPE) "\n"
        html lang=(lang.code()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width";
                title { (title) " — mukaika" }
                link rel="stylesheet" href="/static/style.css";
            }
            body {
                    a.skip href="#main" { (lang.t("本文へ移動", "Skip to content")) }
                header {
                    span.brand { strong { "mukaika" } " " span.sub { (lang.t("無害化ゲートウェイ 隔離管理", "quarantine review")) } }
                    @if let Some(v) = viewer { (menu(lang, v)) }
                    span.lang {
                        @match lang {
                            Lang::Ja => a href="/lang/en" lang="en" { "English" },
                            Lang::En => a href="/lang/ja" lang="ja" { "日本語" },
                        }
                    }
                }
                main #main tabindex="-1" {
                    h1 { (title) }
                    (body)
                }
            }
        }
    };
    shown(&page.into_string())
}

/// The header bar's links for `v`, who they are, and the logout form.
fn menu(lang: Lang, v: &Viewer<'_>) -> Markup {
    let mut links = vec![
        ("/", lang.t("ダッシュボード", "Dashboard")),
        ("/items", lang.t("隔離一覧", "Quarantine")),
        ("/requests", lang.t("解除申請", "Release requests")),
    ];
    if v.audit {
        links.push(("/audit", lang.t("監査ログ", "Audit log")));
    }
    if v.accounts {
        links.push(("/users", lang.t("アカウント", "Accounts")));
    }
    links.push(("/password", lang.t("パスワード変更", "Password")));
    html! {
        nav aria-label=(lang.t("メニュー", "Menu")) {
            @for (href, label) in &links { a href=(href) { (label) } }
            // The roles only as a tooltip: with every role they are longer than the menu (the
            // dashboard says them in full).
            span.who title=(roles_label(lang, v.roles)) { (v.user) }
            form method="post" action="/logout" class="inline" {
                input type="hidden" name="csrf" value=(v.csrf);
                button { (lang.t("ログアウト", "Log out")) }
            }
        }
    }
}

/// An HTML answer.
pub(crate) fn respond(status: StatusCode, document: String) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
        .body(Body::from(document))
        .unwrap_or_default()
}

/// A page (200) for a logged-in account.
pub(crate) fn frame(lang: Lang, viewer: &Viewer<'_>, title: &str, body: Markup) -> Response<Body> {
    respond(StatusCode::OK, document(lang, title, Some(viewer), body))
}

/// The error page: `message` and a link back to the dashboard.
pub(crate) fn error_page(lang: Lang, status: StatusCode, message: &str) -> Response<Body> {
    let body = html! {
        (error(message))
        p { a href="/" { (lang.t("ダッシュボードへ", "Back to the dashboard")) } }
    };
    respond(
        status,
        document(lang, lang.t("エラー", "Error"), None, body),
    )
}

/// A table's heading row: each column's Japanese and English name.
pub(crate) fn head_row(lang: Lang, columns: &[(&str, &str)]) -> Markup {
    html! { thead { tr { @for (ja, en) in columns { th scope="col" { (lang.t(ja, en)) } } } } }
}

/// A green notice paragraph.
pub(crate) fn notice(text: &str) -> Markup {
    html! { p.notice { (text) } }
}

/// A red error paragraph.
pub(crate) fn error(text: &str) -> Markup {
    html! { p.error { (text) } }
}

/// A fixed message for `?done=…` (never the query text itself).
pub(crate) fn done_notice(lang: Lang, done: Option<&str>) -> Markup {
    let text = match done {
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
        Some("ppap-unlocked") => lang.t(
            "パスワード付きファイルを解除し、無害化した結果を配送しました。",
            "The password-protected file was unlocked; what sanitizing made of it was delivered.",
        ),
        Some("ppap-wrong") => {
            return error(lang.t(
                "パスワードが違います。ファイルは保留されたままです。",
                "Wrong password. The file stays held.",
            ))
        }
        Some("ppap-already") => {
            return error(lang.t("すでに解除されています。", "Already unlocked."))
        }
        Some("ppap-failed") => {
            return error(lang.t(
                "解除できませんでした（監査記録をご覧ください）。ファイルは保留されたままです。",
                "Could not unlock (see the audit trail). The file stays held.",
            ))
        }
        _ => return html! {},
    };
    notice(text)
}

/// The name of one role.
pub(crate) fn role_label(lang: Lang, role: Role) -> &'static str {
    match lang {
        Lang::Ja => role.label_ja(),
        Lang::En => role.as_str(),
    }
}

/// A page for someone without an account (the recipients' PPAP password page): Japanese and
/// English on one page, no menu and no language switch (which would lead to the login), the
/// same stylesheet and the same escaping as every other page.
pub(crate) fn public_page(status: StatusCode, title: &str, body: Markup) -> Response<Body> {
    let page = html! {
        (DOCTYPE) "\n"
        html lang="ja" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width";
                title { (title) " — mukaika" }
                link rel="stylesheet" href="/static/style.css";
            }
            body {
                header {
                    strong { "mukaika" }
                    " 無害化ゲートウェイ / sanitizing gateway"
                }
                main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    };
    respond(status, shown(&page.into_string()))
}

/// Japanese, then the same in English on its own line (the public page shows both).
pub(crate) fn both(ja: &str, en: &str) -> Markup {
    html! { (ja) br; span.en lang="en" { (en) } }
}

/// The names of `roles`, joined.
pub(crate) fn roles_label(lang: Lang, roles: &[Role]) -> String {
    roles
        .iter()
        .map(|r| role_label(lang, *r))
        .collect::<Vec<_>>()
        .join(lang.t("・", ", "))
}

/// The stylesheet (served from `/static/style.css`; the CSP allows no inline style).
///
/// Layout rules that keep the pages readable at 1024 and 1366 px without horizontal
/// scrolling: cells break only at spaces and, in Japanese, between characters of long text
/// (`td.long`); short values (IDs, times, states, reasons' names) never break inside a word
/// (`.nw`, `keep-all`); the menu stays on one line by dropping the subtitle under 1280 px.
pub const STYLE: &str = "*{box-sizing:border-box}\
body{font-family:'Noto Sans JP','IPAexGothic',sans-serif;margin:0;color:#222;background:#f7f7f5;font-size:15px;line-height:1.45}\
.skip{position:absolute;left:-9999px;top:0}.skip:focus{left:.5em;top:.5em;background:#fff;color:#000;padding:.3em .6em;z-index:2}\
header{background:#1d3557;color:#fff;padding:.4em 1em;display:flex;gap:.3em 1em;align-items:center;flex-wrap:wrap}\
header a{color:#fff}.brand{white-space:nowrap}nav{display:flex;gap:.2em .9em;align-items:center;flex:1 1 auto;flex-wrap:wrap}\
nav a,.who,.lang{white-space:nowrap}.who{margin-left:auto}\
@media (max-width:1279px){.sub,table.items .opt{display:none}header{font-size:14px}nav{gap:.2em .7em}}\
@media (min-width:1280px){.when{white-space:nowrap}td.reason{min-width:17.5em}}\
main{padding:.8em 1.5em;max-width:100%}main:focus{outline:none}h1{font-size:1.4em;margin:.3em 0 .5em;overflow-wrap:anywhere}\
h2{font-size:1.15em;margin:1.2em 0 .4em}\
table{border-collapse:collapse;width:100%;background:#fff;font-size:14px;line-height:1.3}caption{text-align:left;font-weight:bold;padding:.2em 0;caption-side:top}\
th,td{border:1px solid #ccc;padding:.15em .4em;text-align:left;vertical-align:top;word-break:keep-all;overflow-wrap:break-word}\
th{background:#e9edf2;white-space:nowrap}tbody th[scope=row]{font-weight:normal}table.items tbody th{background:#fff}td.long,td.long *{word-break:normal;overflow-wrap:anywhere}td.long{min-width:8.5em}\
.nw{white-space:nowrap}.id{font-family:monospace;font-size:.9em;white-space:nowrap}.sub2{display:block;color:#555;font-size:.88em}details.filterbox{margin:0 0 .5em}details.filterbox form{margin:.5em 0 0}\
th a{color:inherit}th[aria-sort] a{font-weight:bold}td.num,th.num{text-align:right}\
pre{background:#fff;border:1px solid #ccc;padding:.5em;white-space:pre-wrap;overflow-wrap:anywhere;max-height:40em;overflow:auto}\
.error{background:#fde2e2;border:1px solid #c00;padding:.5em}.notice{background:#e6f4ea;border:1px solid #2a7;padding:.5em}\
.inline{display:inline}form.filters{display:flex;flex-wrap:wrap;gap:.5em;margin-bottom:1em;align-items:flex-end}\
form.filters label{display:flex;flex-direction:column;font-size:.85em}form.filters input,form.filters select{max-width:14em}\
fieldset{background:#fff;margin:1em 0;min-width:0}\
.pager{margin:1em 0;display:flex;gap:1em;flex-wrap:wrap}.badge{padding:0 .4em;border-radius:.3em;background:#ddd}\
.bulk{display:flex;flex-wrap:wrap;gap:.5em;align-items:center;margin:.5em 0}.bulk input[name=reason]{width:20em;max-width:100%}\
.secret{font-family:monospace;font-size:1.4em;background:#fff3cd;padding:.3em}\
.en{color:#555;font-size:.9em}.tools{display:flex;gap:1em;flex-wrap:wrap;margin:.3em 0}\
td form{margin:.1em 0}td input[name=reason]{width:10em;max-width:100%}\
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(30em,1fr));gap:1em}\
figure{margin:0;background:#fff;border:1px solid #ccc;padding:.5em;min-width:0}figcaption{font-weight:bold;margin-bottom:.3em}\
svg.chart{width:100%;height:auto;display:block}svg.chart text{font-size:11px;fill:#333}\
.v-forwarded,.k-forwarded{fill:#2a7f62;background:#2a7f62}.v-quarantined,.k-quarantined{fill:#c0392b;background:#c0392b}\
.v-rejected,.k-rejected{fill:#7f8c8d;background:#7f8c8d}.v-other,.k-other{fill:#e0a526;background:#e0a526}\
.bar{fill:#1d3557}.bar2{fill:#e0a526}.axis{stroke:#999;stroke-width:1}\
.legend{display:flex;gap:1em;flex-wrap:wrap;font-size:.85em;list-style:none;padding:0;margin:.3em 0}\
.legend span{display:inline-block;width:.9em;height:.9em;margin-right:.3em;vertical-align:middle}\
details{margin:.5em 0}summary{cursor:pointer}\
.sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}\
td.ok{color:#1b6b3a}td.refused{color:#a00}textarea{max-width:100%}";
