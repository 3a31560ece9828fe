//! The password page: an account changes its own password.
//!
//! Owns: `/password` (GET and POST). It is the one page open while a one-time password is in
//! use (with logout); see [`crate::admin::web::guard`].
//! Invariants: the new password is typed twice and must match before the store is asked; the
//! store's password rules decide the rest and its refusal is shown on the form; after a
//! change this session is marked current and the account's other sessions end.
//! Must never: show a password back in the page.

use std::sync::Arc;

use axum::extract::State;
use maud::{html, Markup};

use super::{Page, Res};
use crate::admin::web::guard::{Ctx, Posted, Signed};
use crate::admin::web::layout::{error, frame, notice};
use crate::admin::web::{blocking, redirect, Web};

/// The password form, with `failure` above it.
fn password_page(ctx: &Ctx, failure: Option<&str>) -> Res {
    let lang = ctx.lang;
    let body: Markup = html! {
        @if ctx.session.must_change {
            (notice(lang.t(
                "初期パスワード（一時パスワード）のままです。続けるには新しいパスワードを設定してください（対策基準 6.4(3)⑤）。",
                "You are using a one-time password. Set a new password to continue.",
            )))
        }
        @if let Some(e) = failure { (error(e)) }
        form method="post" action="/password" {
            input type="hidden" name="csrf" value=(ctx.session.csrf);
            p { label {
                (lang.t("現在のパスワード", "Current password")) br;
                input name="old" type="password" autocomplete="current-password" required;
            } }
            p { label {
                (lang.t(
                    "新しいパスワード（12 文字以上。同じ文字の繰り返し、数字だけ、アカウント名を含むもの、よく使われるものは不可）",
                    "New password (12 characters or more; no repeats, not digits only, not your account name, not a common password)",
                )) br;
                input name="new" type="password" autocomplete="new-password" minlength="12" required;
            } }
            p { label {
                (lang.t("新しいパスワード（確認）", "New password again")) br;
                input name="again" type="password" autocomplete="new-password" minlength="12" required;
            } }
            p { button { (lang.t("変更する", "Change")) } }
        }
    };
    frame(
        lang,
        &ctx.viewer(),
        lang.t("パスワード変更", "Change password"),
        body,
    )
}

pub(super) async fn password_form(Signed(ctx, _): Signed) -> Res {
    password_page(&ctx, None)
}

pub(super) async fn change_password(State(web): State<Arc<Web>>, post: Posted) -> Page {
    let (old, new, again) = (post.field("old"), post.field("new"), post.field("again"));
    let ctx = post.ctx;
    if new != again {
        let msg = ctx.lang.t(
            "確認用のパスワードが一致しません。",
            "The two new passwords differ.",
        );
        return Ok(password_page(&ctx, Some(msg)));
    }
    let review = Arc::clone(&web.review);
    let (actor, token) = (ctx.actor(), ctx.token.clone());
    Ok(
        match blocking(move || review.change_password(&actor, &old, &new, Some(&token))).await? {
            // This session carries on (no longer on a one-time password); the others end.
            Ok(()) => redirect("/?done=password"),
            Err(e) => password_page(&ctx, Some(&e.to_string())),
        },
    )
}
