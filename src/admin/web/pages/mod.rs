//! The review pages and their form handlers, one module a page.
//!
//! Owns: the route table, the stylesheet and language routes, and what several pages show
//! alike (an item's review status, a quarantine reason, a request's state, the item-ID check).
//! Invariants: every route but `/login`, `/lang/…`, the stylesheet, the recipients' PPAP
//! password page `/ppap/{token}` (its token and form nonce are its credential; see `ppap`)
//! and the 404 for an unknown request action takes a `Signed` or `Posted` extractor (see `guard`) naming the roles it
//! admits, so no handler checks a session by hand; every page is a maud template framed by
//! `layout`.
//! Must never: show an original as anything but escaped text or a hex dump, or act on a form
//! whose CSRF token did not match.

mod account;
mod audit;
mod charts;
mod csv;
mod dashboard;
mod events;
mod item;
mod items;
mod login;
mod ppap;
mod report;
mod requests;
mod users;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::Path;
use axum::http::{header, Response, StatusCode};
use axum::routing::{get, post};
use axum::Router;

use super::guard::Ctx;
use super::html::Lang;
use super::layout::error_page;
use super::{blocking, review_error, Web};
use crate::review::{Actor, RequestState, Review, ReviewError};
use crate::store::quarantine::{valid_id, QuarantineItem};

type Res = Response<Body>;
/// What a handler answers: `Err` is an answer too (an error page or a redirect), so `?` ends
/// a handler early with it.
type Page = Result<Res, Res>;
type Params = HashMap<String, String>;

pub(super) fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route("/", get(dashboard::dashboard))
        .route("/static/style.css", get(style))
        .route("/lang/{lang}", get(set_lang))
        .route("/login", get(login::login_form).post(login::login))
        .route("/logout", post(login::logout))
        .route(
            "/password",
            get(account::password_form).post(account::change_password),
        )
        .route("/items", get(items::items))
        .route("/items.csv", get(items::items_csv))
        .route("/items/bulk", post(items::bulk))
        .route("/items/{id}", get(item::item))
        .route("/items/{id}/original", post(item::original))
        .route("/items/{id}/request", post(item::request_release))
        .route("/items/{id}/delete", post(item::delete_item))
        .route("/items/{id}/unlock", post(item::unlock))
        .route("/ppap/{token}", get(ppap::page).post(ppap::submit))
        .route("/requests", get(requests::requests))
        .route("/requests/bulk", post(requests::bulk))
        .route(
            "/requests/{id}/approve",
            post(requests::decide::<requests::Approve>),
        )
        .route(
            "/requests/{id}/reject",
            post(requests::decide::<requests::Reject>),
        )
        .route(
            "/requests/{id}/cancel",
            post(requests::decide::<requests::Cancel>),
        )
        .route("/requests/{id}/{action}", post(requests::unknown_action))
        .route("/audit", get(audit::audit_search))
        .route("/audit.csv", get(audit::audit_csv))
        .route("/users", get(users::users).post(users::add_user))
        .route("/users/{name}/unlock", post(users::unlock))
        .route("/users/{name}/reset", post(users::reset))
        .route("/users/{name}/disable", post(users::disable))
        .route("/users/{name}/enable", post(users::enable))
        .route("/users/{name}/delete", post(users::delete))
        .route("/users/{name}/role", post(users::set_roles))
        .route("/users/{name}/{action}", post(users::unknown_action))
}

async fn style() -> Res {
    Response::builder()
        .header(header::CONTENT_TYPE, "text/css; charset=utf-8")
        .body(Body::from(super::layout::STYLE))
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

/// Runs `f` on the review as the signed-in account (acting through the web from the peer
/// address), off the async threads; a refusal becomes its error page (403, 404, 400, 409 or
/// 500 by kind).
async fn act<T, F>(web: &Web, ctx: &Ctx, f: F) -> Result<T, Res>
where
    T: Send + 'static,
    F: FnOnce(&Review, &Actor) -> Result<T, ReviewError> + Send + 'static,
{
    let review = Arc::clone(&web.review);
    let user = ctx.actor();
    let lang = ctx.lang;
    blocking(move || f(&review, &user))
        .await?
        .map_err(|e| review_error(lang, &e))
}

/// Every item with its review status, or the 500 page when the stores cannot be read.
async fn held_items(
    web: &Arc<Web>,
    lang: Lang,
) -> Result<(Vec<QuarantineItem>, HashMap<String, RequestState>), Res> {
    let w = Arc::clone(web);
    match blocking(move || (w.review.store().list(), w.review.statuses())).await? {
        (Ok(items), Ok(statuses)) => Ok((items, statuses)),
        _ => Err(unreadable(lang)),
    }
}

/// The 500 page for stores that could not be read.
fn unreadable(lang: Lang) -> Res {
    error_page(lang, StatusCode::INTERNAL_SERVER_ERROR, "store unreadable")
}

/// The 404 page for a form posted to an action that does not exist.
fn no_such_action(lang: Lang) -> Res {
    error_page(lang, StatusCode::NOT_FOUND, "unknown action")
}

/// `Err(400 page)` unless `id` is a well-formed item ID (one that cannot name a path).
#[allow(clippy::result_large_err)]
fn checked_id(lang: Lang, id: &str) -> Result<(), Res> {
    if valid_id(id) {
        Ok(())
    } else {
        Err(error_page(
            lang,
            StatusCode::BAD_REQUEST,
            lang.t("隔離IDの形式が正しくありません。", "Malformed item ID."),
        ))
    }
}

/// An item's review status key: held, pending, released, rejected.
fn status_key(state: Option<RequestState>) -> &'static str {
    match state {
        None | Some(RequestState::Cancelled) => "held",
        Some(RequestState::Pending) => "pending",
        Some(RequestState::Approved) | Some(RequestState::Delivered) => "released",
        Some(RequestState::Rejected) => "rejected",
    }
}

/// The status keys in the order the dashboard and the list filter show them.
const STATUS_KEYS: [&str; 4] = ["held", "pending", "rejected", "released"];

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
        Lang::Ja => format!("{}（{code}）", crate::sink::notice::reason_ja(code)),
        Lang::En => code.to_string(),
    }
}

/// A release request's state in the UI language.
fn state_label(lang: Lang, s: RequestState) -> &'static str {
    match lang {
        Lang::Ja => s.label_ja(),
        Lang::En => match s {
            RequestState::Pending => "pending",
            RequestState::Approved => "approved (delivering)",
            RequestState::Delivered => "delivered",
            RequestState::Rejected => "rejected",
            RequestState::Cancelled => "withdrawn",
        },
    }
}

/// What a bulk action on several items or requests is, for its result page.
pub(super) struct Bulk<'a> {
    /// The page's title.
    pub title: &'a str,
    /// The table's caption.
    pub caption: &'a str,
    /// Where "back" goes, and its words.
    pub back: (&'a str, &'a str),
    /// Whether each ID links to its item page.
    pub item_links: bool,
}

/// The result page of a bulk action: each picked ID with its outcome; 409 when any was
/// refused (each was decided on its own, under the same rules as its single form).
pub(super) fn bulk_result(
    ctx: &Ctx,
    bulk: Bulk<'_>,
    ids: &[String],
    outcomes: &[Result<(), String>],
) -> Response<Body> {
    use maud::html;
    let lang = ctx.lang;
    let done = outcomes.iter().filter(|o| o.is_ok()).count();
    let body = html! {
        p { (done) " / " (ids.len()) " " (lang.t("件を処理しました。", "done.")) }
        table {
            caption { (bulk.caption) }
            thead { tr { th scope="col" { "ID" } th scope="col" { (lang.t("結果", "Outcome")) } } }
            tbody {
                @for (id, o) in ids.iter().zip(outcomes) {
                    tr {
                        th scope="row" {
                            @if bulk.item_links {
                                a.id href={ "/items/" (super::html::url(id)) } { (id) }
                            } @else {
                                span.id { (id) }
                            }
                        }
                        @match o {
                            Ok(()) => td.ok { (lang.t("完了", "done")) },
                            Err(e) => td.long.refused { (lang.t("できませんでした: ", "refused: ")) (e) },
                        }
                    }
                }
            }
        }
        p { a href=(bulk.back.0) { (bulk.back.1) } }
    };
    let mut page = super::layout::frame(lang, &ctx.viewer(), bulk.title, body);
    if done != ids.len() {
        *page.status_mut() = StatusCode::CONFLICT;
    }
    page
}

/// The IDs a bulk form picked (`sel-<ID>=1`; well-formed IDs only, sorted), or the page saying
/// nothing was picked (`none`). (The page is the error, as in every handler here.)
#[allow(clippy::result_large_err)]
pub(super) fn picked(
    form: &HashMap<String, String>,
    lang: Lang,
    none: &str,
) -> Result<Vec<String>, Res> {
    let mut ids: Vec<String> = form
        .iter()
        .filter(|(_, v)| v.as_str() == "1")
        .filter_map(|(k, _)| k.strip_prefix("sel-"))
        .filter(|id| valid_id(id))
        .map(str::to_string)
        .collect();
    ids.sort();
    if ids.is_empty() {
        return Err(error_page(lang, StatusCode::BAD_REQUEST, none));
    }
    Ok(ids)
}

/// Carries out a bulk form: each picked ID (`none` when there is none) through `each`, the
/// same review call its single form makes, so every rule and audit record applies to each;
/// then the result page.
pub(super) async fn run_bulk<F>(
    web: &Web,
    ctx: &Ctx,
    form: &HashMap<String, String>,
    none: &str,
    bulk: Bulk<'_>,
    each: F,
) -> Page
where
    F: Fn(&Review, &Actor, &str) -> Result<(), ReviewError> + Send + 'static,
{
    let ids = picked(form, ctx.lang, none)?;
    let todo = ids.clone();
    let outcomes: Vec<Result<(), String>> = act(web, ctx, move |review, user| {
        Ok(todo
            .iter()
            .map(|id| each(review, user, id).map_err(|e| e.to_string()))
            .collect())
    })
    .await?;
    Ok(bulk_result(ctx, bulk, &ids, &outcomes))
}
