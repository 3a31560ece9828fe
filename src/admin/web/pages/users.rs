//! Accounts: the list, creating an account, unlocking one and issuing a new one-time password.
//!
//! Owns: `/users` (GET and POST) and the posts `/users/{name}/unlock` and `/users/{name}/reset`,
//! all for administrators only.
//! Invariants: a one-time password is shown once, on the page that answers the post that made
//! it, and never stored or logged here; roles come only from the fixed checkboxes.
//! Must never: show a password hash, or any password but the one just issued.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use maud::{html, Markup};

use super::{act, no_such_action, Page, Params, Res};
use crate::admin::web::guard::{Admins, Ctx, Posted, Signed};
use crate::admin::web::html::jst;
use crate::admin::web::html::{url, Lang};
use crate::admin::web::layout::{done_notice, frame, head_row, role_label, roles_label};
use crate::admin::web::{redirect, Web};
use crate::review::Role;

/// The accounts page with `notice` above the list.
async fn users_page(web: &Web, ctx: &Ctx, notice: Markup) -> Page {
    let lang = ctx.lang;
    let list = act(web, ctx, |review, _| review.users()).await?;
    let now = crate::clock::now_ms();
    let csrf = ctx.session.csrf.as_str();
    let body = html! {
        (notice)
        table {
            (head_row(lang, &[
                ("アカウント", "Account"),
                ("役割", "Role"),
                ("前回ログイン", "Last login"),
                ("状態", "State"),
                ("作成", "Created"),
                ("", ""),
            ]))
            @for u in &list {
                tr {
                    td { (u.name) }
                    td { (roles_label(lang, &u.roles)) }
                    td { (u.last_login_at.as_deref().map(jst).unwrap_or_default()) }
                    td {
                        @if u.locked_until_ms > now {
                            (lang.t("ロック中", "locked"))
                        } @else if u.must_change {
                            (lang.t("初期パスワード未変更", "one-time password not changed"))
                        } @else {
                            (lang.t("有効", "active"))
                        }
                    }
                    td { (jst(&u.created_at)) }
                    td {
                        form method="post" action={ "/users/" (url(&u.name)) "/unlock" } class="inline" {
                            input type="hidden" name="csrf" value=(csrf);
                            button { (lang.t("ロック解除", "Unlock")) }
                        }
                        " "
                        form method="post" action={ "/users/" (url(&u.name)) "/reset" } class="inline" {
                            input type="hidden" name="csrf" value=(csrf);
                            button { (lang.t("パスワード再発行", "Reset password")) }
                        }
                    }
                }
            }
        }
        fieldset {
            legend { (lang.t("アカウントを作る", "Create an account")) }
            form method="post" action="/users" {
                input type="hidden" name="csrf" value=(csrf);
                label { (lang.t("アカウント名", "Name")) input name="name" required pattern="[A-Za-z0-9._-]{1,32}"; }
                " "
                label { (lang.t("役割", "Role")) }
                @for r in Role::ALL {
                    label { input type="checkbox" name={ "role_" (r.as_str()) } value="1"; " " (role_label(lang, r)) }
                }
                " "
                button { (lang.t("作成", "Create")) }
            }
        }
    };
    Ok(frame(
        lang,
        &ctx.viewer(),
        lang.t("アカウント", "Accounts"),
        body,
    ))
}

pub(super) async fn users(
    State(web): State<Arc<Web>>,
    Query(q): Query<Params>,
    Signed(ctx, _): Signed<Admins>,
) -> Page {
    let notice = done_notice(ctx.lang, q.get("done").map(String::as_str));
    users_page(&web, &ctx, notice).await
}

/// The notice that shows a just-issued one-time password, once.
fn one_time_notice(lang: Lang, name: &str, password: &str) -> Markup {
    html! {
        p.notice {
            (lang.t("一時パスワード", "One-time password for")) " "
            strong { (name) } ": "
            span.secret { (password) }
            br;
            (lang.t(
                "この画面でだけ表示します。本人に安全な方法で伝えてください。最初のログインで変更が必要です。",
                "Shown only now. Hand it over safely; it must be changed at first login.",
            ))
        }
    }
}

pub(super) async fn add_user(State(web): State<Arc<Web>>, post: Posted<Admins>) -> Page {
    let name = post.field("name");
    let roles: Vec<Role> = Role::ALL
        .into_iter()
        .filter(|r| post.form.contains_key(&format!("role_{}", r.as_str())))
        .collect();
    let who = name.clone();
    let password = act(&web, &post.ctx, move |review, by| {
        review.add_user(by, &who, &roles)
    })
    .await?;
    let notice = one_time_notice(post.ctx.lang, &name, &password);
    users_page(&web, &post.ctx, notice).await
}

pub(super) async fn unlock(
    State(web): State<Arc<Web>>,
    Path(name): Path<String>,
    post: Posted<Admins>,
) -> Page {
    act(&web, &post.ctx, move |review, by| review.unlock(by, &name)).await?;
    Ok(redirect("/users?done=unlocked"))
}

/// Issues a new one-time password for `name` and shows it once.
pub(super) async fn reset(
    State(web): State<Arc<Web>>,
    Path(name): Path<String>,
    post: Posted<Admins>,
) -> Page {
    let who = name.clone();
    let password = act(&web, &post.ctx, move |review, by| {
        review.reset_password(by, &who)
    })
    .await?;
    let notice = one_time_notice(post.ctx.lang, &name, &password);
    users_page(&web, &post.ctx, notice).await
}

/// Any other action: 404, after the administrator check as before.
pub(super) async fn unknown_action(Path(_): Path<(String, String)>, post: Posted<Admins>) -> Res {
    no_such_action(post.ctx.lang)
}
