//! The login page, the login form's handler and logout.
//!
//! Owns: `/login` (GET and POST) and `/logout`. The login form carries a token of its own,
//! bound to a short-lived cookie, since there is no session yet to hold one.
//! Invariants: a failed, locked or unknown login gets one answer (401 and the same page);
//! a successful one sets the session cookie and clears the login cookie; logout ends the
//! session on the server, not only in the browser.
//! Must never: say whether an account exists, or start a session for a post whose login
//! token did not match its cookie.

use std::sync::Arc;

use axum::extract::{Extension, Form, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use maud::html;

use super::{Page, Params, Res};
use crate::admin::web::guard::Posted;
use crate::admin::web::html::Lang;
use crate::admin::web::layout::{document, error, notice, respond};
use crate::admin::web::{blocking, cookie, lang, redirect, review_error, same_token, Peer, Web};

/// The login page; 401 with `failure` above the form when it answers a failed attempt.
pub(super) fn login_page(web: &Web, lang: Lang, failure: Option<&str>, expired: bool) -> Res {
    let token = crate::random::random_hex(16);
    let body = html! {
        @if expired {
            (notice(lang.t(
                "一定時間操作がなかったか、ログインから一定時間が経ったため、ログアウトしました。",
                "Your session ended after a period without activity or after its maximum lifetime.",
            )))
        }
        @if let Some(e) = failure { (error(e)) }
        form method="post" action="/login" {
            input type="hidden" name="csrf" value=(token);
            p { label { (lang.t("アカウント名", "Account")) br; input name="name" autocomplete="username" required; } }
            p { label { (lang.t("パスワード", "Password")) br; input name="password" type="password" autocomplete="current-password" required; } }
            p { button { (lang.t("ログイン", "Log in")) } }
        }
    };
    let status = if failure.is_some() {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::OK
    };
    let mut r = respond(
        status,
        document(lang, lang.t("ログイン", "Log in"), None, body),
    );
    if let Ok(v) = web.cookie("mukaika_login", &token, Some(600)).parse() {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

pub(super) async fn login_form(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Query(q): Query<Params>,
) -> Res {
    login_page(&web, lang(&headers), None, q.contains_key("expired"))
}

pub(super) async fn login(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    peer: Option<Extension<Peer>>,
    Form(form): Form<Params>,
) -> Page {
    let lang = lang(&headers);
    let bound = cookie(&headers, "mukaika_login");
    let sent = form.get("csrf");
    if !matches!((&bound, sent), (Some(b), Some(s)) if same_token(b, s)) {
        return Ok(login_page(
            &web,
            lang,
            Some(lang.t(
                "ログインフォームの有効期限が切れました。もう一度入力してください。",
                "The login form expired; please try again.",
            )),
            false,
        ));
    }
    let name = form.get("name").cloned().unwrap_or_default();
    let password = form.get("password").cloned().unwrap_or_default();
    let client = peer
        .map(|Extension(Peer(a))| a.ip().to_string())
        .unwrap_or_default();
    let review = Arc::clone(&web.review);
    let result = blocking(move || {
        let via = crate::audit::event::Via::Web {
            client: client.clone(),
        };
        let ok = review.login(&name, &password, &via)?;
        let token = review.open_session(&ok, &client)?;
        Ok::<_, crate::review::ReviewError>((ok, token))
    })
    .await?;
    Ok(match result {
        Ok((ok, token)) => {
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
    })
}

pub(super) async fn logout(State(web): State<Arc<Web>>, post: Posted) -> Res {
    let (w, token) = (Arc::clone(&web), post.ctx.token.clone());
    // The session ends on the server before the browser is told (a failure is logged).
    let _ = blocking(move || w.end_session(&token)).await;
    let mut r = redirect("/login");
    if let Ok(v) = web.cookie(web.session_cookie(), "", Some(0)).parse() {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}
