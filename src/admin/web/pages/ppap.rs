//! The recipients' PPAP password page: `/ppap/{token}`, reached from the link in a
//! recipient's notice, without an account.
//!
//! Owns: the page (sender, subject, the held file and the names its archive shows without the
//! password, a password field) and its post, which [`crate::ppap::Ppap::unlock_by_link`]
//! answers: delivered to this recipient alone, wrong (tries left), locked, expired, used.
//! Invariants: no session and no role — the token in the path is the credential, bound to
//! one item and one recipient, and the form's nonce (kept with the link) is the CSRF check;
//! the page is a maud template under the same CSP as every page (no script, no inline style);
//! Japanese first, English second on the same page; an expired, used, locked or unknown link
//! gets a page saying so and no form.
//! Must never: show, log or keep the password or the token; name any recipient but the
//! link's own; say anything of the item to a request without a live link.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use maud::{html, Markup};

use super::{Page, Res};
use crate::admin::web::layout::{both, error, notice, public_page};
use crate::admin::web::{blocking, Web};
use crate::ppap::links::{listed_files, Link, LinkAnswer, LinkState, ATTEMPTS};
use crate::ppap::SecretText;
use crate::store::quarantine::QuarantineItem;

const TITLE: &str = "パスワードの入力 / Enter the password";

/// A page that says why the link does not work (and nothing of the item).
fn refused(status: StatusCode, ja: &str, en: &str) -> Res {
    public_page(
        status,
        TITLE,
        html! {
            p.error { (both(ja, en)) }
            p { (both(
                "ご不明な点は情報システム担当にお問い合わせください。",
                "Please ask your IT staff if you need help.",
            )) }
        },
    )
}

fn unknown() -> Res {
    refused(
        StatusCode::NOT_FOUND,
        "このリンクは無効です。お知らせメールのリンクをそのままお使いください。",
        "This link is not valid. Use the link in your notice exactly as it is.",
    )
}

fn expired() -> Res {
    refused(
        StatusCode::GONE,
        "このリンクは有効期限が切れています。ファイルは引き続き保留されています。",
        "This link has expired. The file is still held.",
    )
}

fn used() -> Res {
    refused(
        StatusCode::GONE,
        "このリンクは使用済みです（ファイルはすでに解除されました）。",
        "This link has been used already (the file was unlocked).",
    )
}

fn locked() -> Res {
    refused(
        StatusCode::FORBIDDEN,
        "パスワードを続けて間違えたため、このリンクはロックされました。情報システム担当にご連絡ください。",
        "Too many wrong passwords: this link is locked. Please contact your IT staff.",
    )
}

fn unavailable() -> Res {
    refused(
        StatusCode::SERVICE_UNAVAILABLE,
        "現在この操作はできません。しばらくしてからもう一度お試しください。",
        "This is not possible right now. Please try again later.",
    )
}

/// The item as the recipient may see it, and the password form.
fn form_page(token: &str, link: &Link, item: &QuarantineItem, message: Option<Markup>) -> Res {
    let (files, visible) = listed_files(item);
    let body = html! {
        @if let Some(m) = message { (m) }
        p { (both(
            "あなた宛てのメールに添付されたパスワード付きファイルを保留しています。パスワードを入力すると、ファイルを開いて無害化し、結果をあなたにメールでお届けします。",
            "A password-protected file sent to you is held. Enter its password: the file is opened, sanitized, and the result is mailed to you.",
        )) }
        table {
            tr { th { (both("差出人", "From")) } td { (item.mail_from.as_deref().unwrap_or("-")) } }
            tr { th { (both("件名", "Subject")) } td { (item.subject.as_deref().unwrap_or("-")) } }
            tr { th { (both("ファイル", "File")) } td { (item.name.as_deref().unwrap_or("-")) } }
            tr {
                th { (both("中身（パスワードなしで見える名前）", "Contents (names visible without the password)")) }
                td {
                    @if files.is_empty() {
                        @if visible { "-" } @else { (both("（名前も暗号化されています）", "(the names are encrypted too)")) }
                    } @else {
                        ul { @for (name, size) in &files { li { (name) " (" (size) " bytes)" } } }
                    }
                }
            }
            tr { th { (both("お届け先", "Delivered to")) } td { (link.recipient) } }
        }
        form method="post" action={ "/ppap/" (token) } {
            input type="hidden" name="nonce" value=(link.nonce);
            p { label {
                (both("パスワード", "Password")) br;
                input type="password" name="password" autocomplete="off" required size="40";
            } }
            p { button { "解除してメールで受け取る / Unlock and mail it to me" } }
        }
        p { (both(
            "このリンクはあなた専用で、一度だけ使えます。パスワードを 5 回続けて間違えるとロックされます。",
            "This link is for you only and works once. Five wrong passwords lock it.",
        )) }
    };
    public_page(StatusCode::OK, TITLE, body)
}

pub(super) async fn page(State(web): State<Arc<Web>>, Path(token): Path<String>) -> Page {
    let w = Arc::clone(&web);
    let t = token.clone();
    let looked = blocking(move || {
        let ppap = w.review.ppap()?;
        Some(ppap.link(&t).and_then(|state| match state {
            LinkState::Open(link) => {
                let item = ppap.link_item(&link)?;
                Ok((LinkState::Open(link), Some(item)))
            }
            other => Ok((other, None)),
        }))
    })
    .await?;
    match looked {
        None => Err(unavailable()),
        Some(Err(e)) => {
            tracing::error!(error = %e, "PPAP link page failed");
            Err(unknown())
        }
        Some(Ok((LinkState::Open(link), Some(item)))) => Ok(form_page(&token, &link, &item, None)),
        Some(Ok((LinkState::Expired, _))) => Err(expired()),
        Some(Ok((LinkState::Used, _))) => Err(used()),
        Some(Ok((LinkState::Locked, _))) => Err(locked()),
        Some(Ok(_)) => Err(unknown()),
    }
}

pub(super) async fn submit(
    State(web): State<Arc<Web>>,
    Path(token): Path<String>,
    peer: Option<axum::Extension<crate::admin::web::Peer>>,
    Form(mut form): Form<HashMap<String, String>>,
) -> Page {
    let nonce = form.remove("nonce").unwrap_or_default();
    // Moved out of the form at once, and wiped when dropped.
    let password = SecretText::new(form.remove("password").unwrap_or_default()).into_password();
    drop(form);
    let w = Arc::clone(&web);
    let t = token.clone();
    // The recipient's attempt is recorded with the connection it came from, like staff's.
    let via = peer.map(|p| crate::audit::event::Via::Web {
        client: p.0 .0.ip().to_string(),
    });
    let answered = blocking(move || {
        let ppap = w.review.ppap()?;
        let answer = ppap.unlock_by_link(&t, &nonce, &password, via);
        drop(password);
        Some(answer.and_then(|a| {
            // A wrong password shows the form again, with the item.
            let item = match &a {
                LinkAnswer::Wrong(_, link) => Some(ppap.link_item(link)?),
                _ => None,
            };
            Ok((a, item))
        }))
    })
    .await?;
    let answer = match answered {
        None => return Err(unavailable()),
        Some(Err(e)) => {
            tracing::error!(error = %e, "PPAP link unlock failed");
            return Err(refused(
                StatusCode::INTERNAL_SERVER_ERROR,
                "処理できませんでした。ファイルは引き続き保留されています。情報システム担当にご連絡ください。",
                "This could not be done. The file is still held; please contact your IT staff.",
            ));
        }
        Some(Ok(a)) => a,
    };
    match answer {
        (LinkAnswer::Delivered(result, link), _) => {
            let verdict = result.verdict.unwrap_or_default();
            let blocked = verdict == "blocked" || verdict == "quarantined";
            Ok(public_page(
                StatusCode::OK,
                "解除しました / Unlocked",
                html! {
                    (notice(&format!(
                        "パスワード付きファイルを解除し、無害化した結果を {} 宛てにメールでお送りしました。",
                        link.recipient
                    )))
                    p.en lang="en" { "The file was unlocked; what sanitizing made of it was mailed to " (link.recipient) "." }
                    @if blocked {
                        (error(&format!(
                            "中身の検査結果: {verdict}（危険なものは届きません。詳しくは届いたメールをご覧ください）"
                        )))
                    }
                    p { (both("このページは閉じてかまいません。", "You may close this page.")) }
                },
            ))
        }
        (LinkAnswer::Wrong(left, link), Some(item)) => {
            let message = html! {
                p.error { (both(
                    &format!("パスワードが違います。あと {left} 回まで入力できます（{ATTEMPTS} 回間違えるとロックされます）。"),
                    &format!("Wrong password. {left} tries left before the link locks."),
                )) }
            };
            Ok(form_page(&token, &link, &item, Some(message)))
        }
        (LinkAnswer::Wrong(..), None) | (LinkAnswer::Unknown, _) => Err(unknown()),
        (LinkAnswer::Locked, _) => Err(locked()),
        (LinkAnswer::Expired, _) => Err(expired()),
        (LinkAnswer::Used, _) => Err(used()),
        (LinkAnswer::Forged, _) => Err(refused(
            StatusCode::FORBIDDEN,
            "フォームが正しくありません。リンクを開き直してください。",
            "The form is stale or forged. Open the link again.",
        )),
        (LinkAnswer::Failed(outcome), _) => Err(refused(
            StatusCode::UNPROCESSABLE_ENTITY,
            &format!("このファイルは解除できませんでした（{outcome}）。ファイルは引き続き保留されています。情報システム担当にご連絡ください。"),
            &format!("The file could not be unlocked ({outcome}). It is still held; please contact your IT staff."),
        )),
    }
}
