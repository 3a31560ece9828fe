//! Accounts: the list, creating an account, unlocking one, issuing a new one-time password,
//! disabling, enabling and deleting one, and giving one other roles (staff changes).
//!
//! Owns: `/users` (GET and POST) and the posts `/users/{name}/unlock`, `…/reset`,
//! `…/disable`, `…/enable`, `…/delete` and `…/role`, all for administrators only.
//! Invariants: a one-time password is shown once, on the page that answers the post that made
//! it, and never stored or logged here; roles come only from the fixed checkboxes; ロック解除
//! is offered only for a locked account; an administrator is offered no way to disable,
//! delete or re-role their own account (`Review` refuses it too, and keeps the last enabled
//! administrator); a deletion must be confirmed in its form.
//! Must never: show a password hash, or any password but the one just issued.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use maud::{html, Markup};

use super::{act, no_such_action, Page, Params, Res};
use crate::admin::web::guard::{Admins, Ctx, Posted, Signed};
use crate::admin::web::html::jst;
use crate::admin::web::html::{url, Lang};
use crate::admin::web::layout::{
    done_notice, error_page, frame, head_row, notice, role_label, roles_label,
};
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
                        @if u.disabled {
                            (lang.t("無効", "disabled"))
                        } @else if u.locked(now) {
                            (lang.t("ロック中", "locked"))
                        } @else if u.must_change {
                            (lang.t("初期パスワード未変更", "one-time password not changed"))
                        } @else {
                            (lang.t("有効", "active"))
                        }
                    }
                    td { (jst(&u.created_at)) }
                    td {
                        @if u.locked(now) {
                            form method="post" action={ "/users/" (url(&u.name)) "/unlock" } class="inline" {
                                input type="hidden" name="csrf" value=(csrf);
                                button { (lang.t("ロック解除", "Unlock")) }
                            }
                            " "
                        }
                        form method="post" action={ "/users/" (url(&u.name)) "/reset" } class="inline" {
                            input type="hidden" name="csrf" value=(csrf);
                            button { (lang.t("パスワード再発行", "Reset password")) }
                        }
                        @if u.name != ctx.session.user {
                            " "
                            @if u.disabled {
                                form method="post" action={ "/users/" (url(&u.name)) "/enable" } class="inline" {
                                    input type="hidden" name="csrf" value=(csrf);
                                    button { (lang.t("有効化", "Enable")) }
                                }
                            } @else {
                                form method="post" action={ "/users/" (url(&u.name)) "/disable" } class="inline" {
                                    input type="hidden" name="csrf" value=(csrf);
                                    button { (lang.t("無効化", "Disable")) }
                                }
                            }
                            " "
                            form method="post" action={ "/users/" (url(&u.name)) "/delete" } class="inline" {
                                input type="hidden" name="csrf" value=(csrf);
                                label { input type="checkbox" name="confirm" value="1" required; " " (lang.t("確認", "confirm")) }
                                " "
                                button { (lang.t("削除", "Delete")) }
                            }
                            form method="post" action={ "/users/" (url(&u.name)) "/role" } {
                                input type="hidden" name="csrf" value=(csrf);
                                @for r in Role::ALL {
                                    label {
                                        input type="checkbox" name={ "role_" (r.as_str()) } value="1" checked[u.roles.contains(&r)];
                                        " " (role_label(lang, r))
                                    }
                                    " "
                                }
                                button { (lang.t("役割を変更", "Change roles")) }
                            }
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
    let done = q.get("done").map(String::as_str);
    let notice = account_notice(ctx.lang, done).unwrap_or_else(|| done_notice(ctx.lang, done));
    users_page(&web, &ctx, notice).await
}

/// The notices of this page's own actions.
fn account_notice(lang: Lang, done: Option<&str>) -> Option<Markup> {
    let text = match done? {
        "disabled" => lang.t(
            "アカウントを無効にしました。ログイン中のセッションは終了しました。",
            "Account disabled; its sessions ended.",
        ),
        "enabled" => lang.t("アカウントを有効にしました。", "Account enabled."),
        "user-deleted" => lang.t(
            "アカウントを削除しました。承認待ちの申請は取り下げました。",
            "Account deleted; its pending requests were withdrawn.",
        ),
        "roles" => lang.t(
            "役割を変更しました。ログイン中のセッションは終了しました。",
            "Roles changed; the account's sessions ended.",
        ),
        _ => return None,
    };
    Some(notice(text))
}

/// The roles ticked in a form (`role_<name>` checkboxes).
fn ticked_roles(post: &Posted<Admins>) -> Vec<Role> {
    Role::ALL
        .into_iter()
        .filter(|r| post.form.contains_key(&format!("role_{}", r.as_str())))
        .collect()
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
    let roles = ticked_roles(&post);
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

/// Disables `name`: it cannot log in, and its sessions end.
pub(super) async fn disable(
    State(web): State<Arc<Web>>,
    Path(name): Path<String>,
    post: Posted<Admins>,
) -> Page {
    act(&web, &post.ctx, move |review, by| {
        review.disable_user(by, &name)
    })
    .await?;
    Ok(redirect("/users?done=disabled"))
}

/// Enables `name` again.
pub(super) async fn enable(
    State(web): State<Arc<Web>>,
    Path(name): Path<String>,
    post: Posted<Admins>,
) -> Page {
    act(&web, &post.ctx, move |review, by| {
        review.enable_user(by, &name)
    })
    .await?;
    Ok(redirect("/users?done=enabled"))
}

/// Deletes `name`, once the form's confirmation box is ticked.
pub(super) async fn delete(
    State(web): State<Arc<Web>>,
    Path(name): Path<String>,
    post: Posted<Admins>,
) -> Page {
    let lang = post.ctx.lang;
    if post.field("confirm") != "1" {
        return Err(error_page(
            lang,
            StatusCode::BAD_REQUEST,
            lang.t(
                "削除するには「確認」にチェックを入れてください。",
                "Tick \"confirm\" to delete the account.",
            ),
        ));
    }
    act(&web, &post.ctx, move |review, by| {
        review.delete_user(by, &name)
    })
    .await?;
    Ok(redirect("/users?done=user-deleted"))
}

/// Gives `name` the ticked roles; its sessions end.
pub(super) async fn set_roles(
    State(web): State<Arc<Web>>,
    Path(name): Path<String>,
    post: Posted<Admins>,
) -> Page {
    let roles = ticked_roles(&post);
    act(&web, &post.ctx, move |review, by| {
        review.set_roles(by, &name, &roles)
    })
    .await?;
    Ok(redirect("/users?done=roles"))
}

/// Any other action: 404, after the administrator check as before.
pub(super) async fn unknown_action(Path(_): Path<(String, String)>, post: Posted<Admins>) -> Res {
    no_such_action(post.ctx.lang)
}
