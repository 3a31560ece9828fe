//! Who may open a page: the extractors every signed-in route takes instead of checking by hand.
//!
//! Owns: [`Signed`] (a page: a live session, the one-time-password detour, the role) and
//! [`Posted`] (a form: the same, then the session's CSRF token), the role sets they admit
//! ([`Anyone`], [`Operators`], [`Approvers`], [`Auditors`], [`Admins`]) and [`Ctx`], what a
//! handler learns about the viewer.
//! Invariants: a handler that takes one of these runs only for a live session whose password
//! is not a one-time one (but on `/password` and `/logout`) and that holds one of the roles;
//! a `Posted` handler only when the form's `csrf` matches the session's. A refused request gets
//! the same answer whatever the route: no session → `303 /login`, an expired one →
//! `303 /login?expired=1`, a one-time password → `303 /password`, a role or token missing →
//! the 403 page. A form body is read (and a non-form body refused) before the session is
//! looked at, as axum's `Form` did when it came first.
//! Must never: admit a request on a role or token it did not check, or let a page be reached
//! another way (`Review` checks the role again against the account store).

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Form, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Response, StatusCode};
use axum::response::IntoResponse;

use super::html::Lang;
use super::layout::{error_page, Viewer};
use super::{lang, redirect, same_token, Peer, Session, SessionLookup, Web};
use crate::review::Role;

/// Which accounts a route admits.
pub(crate) trait Admits: Send + Sync + 'static {
    /// The roles admitted; `None` admits every logged-in account.
    const ROLES: Option<&'static [Role]>;
}

/// Any logged-in account.
pub(crate) struct Anyone;
/// Operators (they ask for releases).
pub(crate) struct Operators;
/// Approvers (they decide, download and delete).
pub(crate) struct Approvers;
/// Auditors and administrators (the audit log).
pub(crate) struct Auditors;
/// Administrators (accounts).
pub(crate) struct Admins;

impl Admits for Anyone {
    const ROLES: Option<&'static [Role]> = None;
}
impl Admits for Operators {
    const ROLES: Option<&'static [Role]> = Some(&[Role::Operator]);
}
impl Admits for Approvers {
    const ROLES: Option<&'static [Role]> = Some(&[Role::Approver]);
}
impl Admits for Auditors {
    const ROLES: Option<&'static [Role]> = Some(&[Role::Auditor, Role::Admin]);
}
impl Admits for Admins {
    const ROLES: Option<&'static [Role]> = Some(&[Role::Admin]);
}

/// A request that passed the guard.
pub(crate) struct Ctx {
    /// The session cookie's value.
    pub token: String,
    /// The session, as of this request.
    pub session: Session,
    /// The language the browser chose.
    pub lang: Lang,
    /// The connection's peer address (a reverse proxy's, when behind one).
    pub peer: Option<std::net::IpAddr>,
}

impl Ctx {
    /// Whether the session holds a role `R` admits.
    pub(crate) fn may<R: Admits>(&self) -> bool {
        R::ROLES.is_none_or(|roles| roles.iter().any(|r| self.session.roles.contains(r)))
    }

    /// The signed-in account acting through the web from the peer address, for `Review`.
    pub(crate) fn actor(&self) -> crate::review::Actor {
        let client = self
            .peer
            .map_or_else(|| "unknown".to_string(), |ip| ip.to_string());
        crate::review::Actor::new(
            self.session.user.clone(),
            crate::audit::event::Via::Web { client },
        )
    }

    /// The header bar's view of this account.
    pub(crate) fn viewer(&self) -> Viewer<'_> {
        Viewer {
            user: &self.session.user,
            roles: &self.session.roles,
            csrf: &self.session.csrf,
            audit: self.may::<Auditors>(),
            accounts: self.may::<Admins>(),
        }
    }
}

/// A page request from a live session holding a role `R` admits.
pub(crate) struct Signed<R: Admits = Anyone>(pub Ctx, pub PhantomData<R>);

/// A form post from a live session holding a role `R` admits, carrying its CSRF token.
pub(crate) struct Posted<R: Admits = Anyone> {
    /// Who posted.
    pub ctx: Ctx,
    /// The form's fields (the token among them).
    pub form: HashMap<String, String>,
    admits: PhantomData<R>,
}

/// Pages a one-time password does not redirect away from.
fn open_to_one_time_passwords(path: &str) -> bool {
    matches!(path, "/password" | "/logout")
}

impl Web {
    /// Admits the request or answers it: login page without a session, the password page
    /// while a one-time password is in use, 403 for the wrong role.
    // The error is the answer itself, returned once per request: boxing it buys nothing.
    #[allow(clippy::result_large_err)]
    async fn admit(
        self: &Arc<Self>,
        headers: &HeaderMap,
        path: &str,
        roles: Option<&[Role]>,
        peer: Option<std::net::IpAddr>,
    ) -> Result<Ctx, Response<Body>> {
        let lang = lang(headers);
        let web = Arc::clone(self);
        let sent = headers.clone();
        let lookup = super::blocking(move || web.session(&sent)).await?;
        let (token, session) = match lookup {
            SessionLookup::Live(t, s) => (t, s),
            SessionLookup::Expired => return Err(redirect("/login?expired=1")),
            SessionLookup::None => return Err(redirect("/login")),
        };
        if session.must_change && !open_to_one_time_passwords(path) {
            return Err(redirect("/password"));
        }
        if let Some(roles) = roles {
            if !roles.iter().any(|r| session.roles.contains(r)) {
                return Err(error_page(
                    lang,
                    StatusCode::FORBIDDEN,
                    lang.t(
                        "この操作を行う権限がありません。",
                        "Your role does not allow this.",
                    ),
                ));
            }
        }
        Ok(Ctx {
            token,
            session,
            lang,
            peer,
        })
    }
}

impl<R: Admits> FromRequestParts<Arc<Web>> for Signed<R> {
    type Rejection = Response<Body>;

    async fn from_request_parts(
        parts: &mut Parts,
        web: &Arc<Web>,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts.extensions.get::<Peer>().map(|p| p.0.ip());
        let ctx = web
            .admit(&parts.headers, parts.uri.path(), R::ROLES, peer)
            .await?;
        Ok(Signed(ctx, PhantomData))
    }
}

impl<R: Admits> FromRequest<Arc<Web>> for Posted<R> {
    type Rejection = Response<Body>;

    async fn from_request(request: Request, web: &Arc<Web>) -> Result<Self, Self::Rejection> {
        let headers = request.headers().clone();
        let path = request.uri().path().to_string();
        let peer = request.extensions().get::<Peer>().map(|p| p.0.ip());
        let Form(form) = Form::<HashMap<String, String>>::from_request(request, web)
            .await
            .map_err(IntoResponse::into_response)?;
        let ctx = web.admit(&headers, &path, R::ROLES, peer).await?;
        match form.get("csrf") {
            Some(t) if same_token(t, &ctx.session.csrf) => Ok(Posted {
                ctx,
                form,
                admits: PhantomData,
            }),
            _ => Err(error_page(
                ctx.lang,
                StatusCode::FORBIDDEN,
                ctx.lang.t(
                    "フォームの有効期限が切れたか、不正な送信です。ページを開き直してください。",
                    "The form is stale or forged (CSRF check failed). Reload the page.",
                ),
            )),
        }
    }
}

impl<R: Admits> Posted<R> {
    /// A field's value, empty when not sent.
    pub(crate) fn field(&self, name: &str) -> String {
        self.form.get(name).cloned().unwrap_or_default()
    }
}
