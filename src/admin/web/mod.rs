//! The quarantine review UI on the admin listener.
//!
//! Owns: HTTP(S) serving of the admin listener (the review pages, `/metrics`, `/healthz`),
//! sessions, CSRF tokens, security headers and role checks. The decisions themselves live in
//! [`crate::review::Review`]; this module only asks who is acting and passes it on.
//! Invariants:
//! - Every page but the login page, the stylesheet and the recipients' PPAP password page
//!   (`/ppap/{token}`: the one-time token is its credential, its form nonce its CSRF check)
//!   needs a session; a session ends after
//!   `admin.session_idle_secs` without a request, `admin.session_max_secs` after login, at logout, when the account's password is
//!   reset or changed in another session, or when the account is disabled, deleted or given
//!   other roles. Sessions live in the account store (`review.db`, the token's SHA-256 only),
//!   so a restart keeps them. A one-time password must be changed before anything else is
//!   shown.
//! - Every review action is taken as an [`crate::review::Actor`] naming the connection's peer
//!   address (never a forwarded-for header), so its audit record names the web and the client.
//! - Every POST carries the session's CSRF token (the login form a token of its own, bound to
//!   a cookie); anything else is refused before it is read further.
//! - Cookies are HttpOnly and SameSite=Strict, and Secure under TLS; every response carries a
//!   CSP without script or inline style, nosniff, frame-deny, no-referrer and no-store.
//! - Every route but the login page, the language switch and the stylesheet takes a `guard`
//!   extractor naming its roles, and `Review` checks the role again against the account store.
//! - Pages are maud templates: the engine escapes every value, and [`html::shown`] makes
//!   control characters and bidirectional overrides visible in every finished page.
//!
//! Must never: render stored content as HTML, or hand out an original except to an approver,
//! as an attachment, after auditing it.

mod guard;
pub mod html;
mod layout;
mod pages;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Request, Response, StatusCode};
use axum::Router;
use tokio::sync::watch;

use crate::review::{Review, Role};

pub use html::Lang;
use layout::error_page;

/// One logged-in browser.
#[derive(Debug, Clone)]
pub struct Session {
    /// Account name.
    pub user: String,
    /// Roles at login (`Review` checks the store again on every action).
    pub roles: Vec<Role>,
    /// The token every form must carry.
    pub csrf: String,
    /// The password must be changed first.
    pub must_change: bool,
    /// Shown after login (対策基準 7.2(4)): the previous login, where from, and failures since.
    pub previous_login: Option<String>,
    /// Address of the previous login.
    pub previous_from: Option<String>,
    /// Failed attempts since the previous login.
    pub failed_since: u32,
}

/// What the review pages share.
pub struct Web {
    /// Decisions, accounts, items.
    pub review: Arc<Review>,
    /// Queue depths for the dashboard.
    pub spools: Vec<(&'static str, Arc<crate::store::spool::Spool>)>,
    /// The audit directory (item trails and audit search).
    pub audit_dir: std::path::PathBuf,
    /// Served over TLS (cookies get `Secure` and the `__Host-` prefix).
    pub tls: bool,
}

impl Web {
    /// The UI over `review`.
    pub fn new(
        review: Arc<Review>,
        spools: Vec<(&'static str, Arc<crate::store::spool::Spool>)>,
        audit_dir: std::path::PathBuf,
        tls: bool,
    ) -> Self {
        Self {
            review,
            spools,
            audit_dir,
            tls,
        }
    }

    fn session_cookie(&self) -> &'static str {
        if self.tls {
            "__Host-mukaika_session"
        } else {
            "mukaika_session"
        }
    }

    /// `Set-Cookie` value for `name=value` with the UI's attributes.
    fn cookie(&self, name: &str, value: &str, max_age: Option<u64>) -> String {
        let mut c = format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict");
        if self.tls {
            c.push_str("; Secure");
        }
        if let Some(age) = max_age {
            c.push_str(&format!("; Max-Age={age}"));
        }
        c
    }

    fn end_session(&self, token: &str) {
        if let Err(e) = self.review.close_session(token) {
            tracing::error!(error = %e, "session not removed");
        }
    }

    /// The live session for this request, refreshing its idle clock (a store read and, at
    /// most once a second, a write: called off the async threads).
    fn session(&self, headers: &HeaderMap) -> SessionLookup {
        let Some(token) = cookie(headers, self.session_cookie()) else {
            return SessionLookup::None;
        };
        match self.review.session(&token) {
            Ok(crate::review::SessionLookup::Live(s)) => {
                let session = Session {
                    user: s.user,
                    roles: s.roles,
                    csrf: crate::review::csrf_of(&token),
                    must_change: s.must_change,
                    previous_login: s.previous_login,
                    previous_from: s.previous_from,
                    failed_since: s.failed_since,
                };
                SessionLookup::Live(token, session)
            }
            Ok(crate::review::SessionLookup::Expired) => SessionLookup::Expired,
            Ok(crate::review::SessionLookup::None) => SessionLookup::None,
            Err(e) => {
                // Fail closed: an unreadable store admits nobody.
                tracing::error!(error = %e, "session store unreadable");
                SessionLookup::None
            }
        }
    }
}

enum SessionLookup {
    None,
    Expired,
    Live(String, Session),
}

/// The value of cookie `name`, if sent.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// The language the browser chose (cookie), Japanese by default.
fn lang(headers: &HeaderMap) -> Lang {
    match cookie(headers, "mukaika_lang").as_deref() {
        Some("en") => Lang::En,
        _ => Lang::Ja,
    }
}

/// Compares tokens without leaking where they differ.
fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn redirect(to: &str) -> Response<Body> {
    Response::builder()
        .status(StatusCode::SEE_OTHER)
        .header(header::LOCATION, to)
        .body(Body::empty())
        .unwrap_or_default()
}

/// Runs blocking review work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Response<Body>> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        tracing::error!(error = %e, "review task failed");
        error_page(
            Lang::Ja,
            StatusCode::INTERNAL_SERVER_ERROR,
            "内部エラー / internal error",
        )
    })
}

/// Adds the security headers to every response.
async fn security_headers(mut response: Response<Body>) -> Response<Body> {
    let h = response.headers_mut();
    for (name, value) in [
        (
            "content-security-policy",
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
        ("cache-control", "no-store"),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// The review routes (merged with `/metrics` and `/healthz` by the admin listener).
pub fn router(web: Arc<Web>) -> Router {
    pages::routes().with_state(web)
}

/// `app` with the security headers on every response, answering only requests whose host
/// is an IP address, `localhost` or one of `hostnames` (see [`host_allowed`]).
pub fn secured(app: Router, hostnames: Vec<String>) -> Router {
    app.layer(axum::middleware::from_fn_with_state(
        Arc::new(hostnames),
        check_host,
    ))
    .layer(axum::middleware::map_response(security_headers))
}

/// Whether `host` (a Host header or URI authority, port optional) names this listener: an
/// IP address, `localhost`, or one of `names`, ignoring case. A DNS-rebinding page reaches
/// the listener under its own name, which is none of these.
pub fn host_allowed(host: &str, names: &[String]) -> bool {
    let host = host.trim();
    if let Some(rest) = host.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((v6, tail)) if tail.is_empty() || tail.strip_prefix(':').is_some_and(is_port) => {
                v6.parse::<std::net::Ipv6Addr>().is_ok()
            }
            _ => false,
        };
    }
    let bare = match host.rsplit_once(':') {
        Some((name, port)) if is_port(port) => name,
        Some(_) => return false,
        None => host,
    };
    bare.parse::<std::net::Ipv4Addr>().is_ok()
        || bare.eq_ignore_ascii_case("localhost")
        || names.iter().any(|n| n.eq_ignore_ascii_case(bare))
}

/// One to five digits.
fn is_port(p: &str) -> bool {
    (1..=5).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit())
}

/// Refuses (421) a request whose Host header or absolute URI names another host, or that
/// carries more than one Host header.
async fn check_host(
    axum::extract::State(names): axum::extract::State<Arc<Vec<String>>>,
    request: Request<Body>,
    next: axum::middleware::Next,
) -> Response<Body> {
    // Every Host header counts, not just the first: a second one is how a request names
    // two hosts to two readers, so more than one is refused outright.
    let header_hosts: Vec<String> = request
        .headers()
        .get_all(header::HOST)
        .iter()
        .map(|v| v.to_str().map(str::to_string).unwrap_or_default())
        .collect();
    let single = header_hosts.len() <= 1;
    let uri_host = request.uri().authority().map(|a| a.as_str().to_string());
    let named: Vec<String> = header_hosts.into_iter().chain(uri_host).collect();
    if single && !named.is_empty() && named.iter().all(|h| host_allowed(h, &names)) {
        return next.run(request).await;
    }
    tracing::warn!(host = ?named, "admin request for another host refused (DNS rebinding?)");
    Response::builder()
        .status(StatusCode::MISDIRECTED_REQUEST)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Body::from(
            "このホスト名では応答しません。[admin] hostnames に追加してください。\n\
             This host name is not served; add it to [admin] hostnames.\n",
        ))
        .unwrap_or_default()
}

/// How many connections the admin listener holds, and for how long a client may take to send
/// its request headers (`[admin] max_connections`, `max_connections_per_client`,
/// `header_timeout_secs`).
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// Connections open at once, from everyone.
    pub total: usize,
    /// Connections open at once from one IP address. The last this many of `total` are a
    /// reserve only a client holding no connection may take, so a few flooding addresses
    /// still leave room for a browser or a monitoring probe.
    pub per_client: usize,
    /// Deadline for the TLS handshake and for each request's headers, counted from the first
    /// wait (an idle keep-alive connection is closed at it too).
    pub header_timeout: Duration,
}

impl Default for ConnLimits {
    fn default() -> Self {
        Self {
            total: 256,
            per_client: 32,
            header_timeout: Duration::from_secs(10),
        }
    }
}

/// The open connections, counted per client address.
#[derive(Default)]
struct Slots {
    open: usize,
    by_client: std::collections::HashMap<std::net::IpAddr, usize>,
}

/// One connection's place in [`Slots`], given back when the connection ends.
struct Slot {
    slots: Arc<std::sync::Mutex<Slots>>,
    client: std::net::IpAddr,
}

impl Slot {
    /// A place for a connection from `client`, or `None` when that client holds its share or
    /// only the reserve is left and it already holds a connection.
    fn take(
        slots: &Arc<std::sync::Mutex<Slots>>,
        client: std::net::IpAddr,
        limits: ConnLimits,
    ) -> Option<Slot> {
        let mut s = slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let held = s.by_client.get(&client).copied().unwrap_or(0);
        let free = limits.total.saturating_sub(s.open);
        let reserve = limits.per_client.min(limits.total);
        if free == 0 || held >= limits.per_client || (held > 0 && free <= reserve) {
            return None;
        }
        s.open += 1;
        *s.by_client.entry(client).or_insert(0) += 1;
        Some(Slot {
            slots: Arc::clone(slots),
            client,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut s = self
            .slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        s.open = s.open.saturating_sub(1);
        if let Some(n) = s.by_client.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                s.by_client.remove(&self.client);
            }
        }
    }
}

/// The client address of a request, as the accept loop recorded it.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

/// Serves `app` on `listener` (over TLS when `tls` is set) until `shutdown` turns true.
/// Each connection's address is put into its requests as [`Peer`].
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    limits: ConnLimits,
    mut shutdown: watch::Receiver<bool>,
) {
    // A bounded number of connections per client and in all, each with a header deadline: a
    // slow or flooding client cannot exhaust the listener that operators and probes rely on.
    let slots = Arc::new(std::sync::Mutex::new(Slots::default()));
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return,
        };
        if *shutdown.borrow() {
            return;
        }
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "admin accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(permit) = Slot::take(&slots, peer.ip(), limits) else {
            tracing::warn!(%peer, "admin listener: this client holds its share of connections; connection closed");
            continue;
        };
        let app = app.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service =
                hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(Peer(peer));
                    let app = app.clone();
                    async move {
                        use tower::ServiceExt;
                        app.oneshot(req.map(Body::new)).await
                    }
                });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(limits.header_timeout);
            let served = match tls {
                Some(acceptor) => {
                    match tokio::time::timeout(limits.header_timeout, acceptor.accept(stream)).await
                    {
                        Ok(Ok(s)) => {
                            builder
                                .serve_connection(hyper_util::rt::TokioIo::new(s), service)
                                .await
                        }
                        _ => return,
                    }
                }
                None => {
                    builder
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await
                }
            };
            if let Err(e) = served {
                tracing::debug!(error = %e, %peer, "admin connection ended with an error");
            }
        });
    }
}

/// The error page and status for a refused review action.
pub(crate) fn review_error(lang: Lang, e: &crate::review::ReviewError) -> Response<Body> {
    let status = if e.is_forbidden() {
        StatusCode::FORBIDDEN
    } else if e.is_not_found() {
        StatusCode::NOT_FOUND
    } else if e.is_invalid() {
        StatusCode::BAD_REQUEST
    } else if e.is_conflict() {
        StatusCode::CONFLICT
    } else {
        tracing::error!(error = %e, "review action failed");
        StatusCode::INTERNAL_SERVER_ERROR
    };
    error_page(lang, status, &e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_gets_its_share_and_the_reserve_is_left_to_clients_holding_none() {
        let limits = ConnLimits {
            total: 8,
            per_client: 3,
            header_timeout: Duration::from_secs(1),
        };
        let slots = Arc::new(std::sync::Mutex::new(Slots::default()));
        let ip = |n: u8| std::net::IpAddr::from([127, 0, 0, n]);
        let a: Vec<Slot> = (0..5)
            .filter_map(|_| Slot::take(&slots, ip(1), limits))
            .collect();
        assert_eq!(a.len(), 3, "one client holds at most its share");
        let b: Vec<Slot> = (0..5)
            .filter_map(|_| Slot::take(&slots, ip(2), limits))
            .collect();
        assert_eq!(b.len(), 2, "a second client stops where the reserve begins");
        let c: Vec<Slot> = (3..6)
            .filter_map(|n| Slot::take(&slots, ip(n), limits))
            .collect();
        assert_eq!(c.len(), 3, "the reserve goes to clients holding none");
        assert!(Slot::take(&slots, ip(9), limits).is_none(), "full");
        drop(a);
        assert!(
            Slot::take(&slots, ip(1), limits).is_some(),
            "slots are given back"
        );
    }

    #[test]
    fn only_addresses_localhost_and_configured_names_are_answered() {
        let names = vec!["mukaika-admin.city.example.lg.jp".to_string()];
        for ok in [
            "127.0.0.1:9925",
            "10.0.0.5",
            "[::1]:9925",
            "[::1]",
            "localhost:9925",
            "LOCALHOST",
            "Mukaika-Admin.City.Example.LG.JP:443",
        ] {
            assert!(host_allowed(ok, &names), "{ok}");
        }
        for refused in [
            "rebind.attacker.example",
            "rebind.attacker.example:9925",
            "127.0.0.1.attacker.example",
            "localhost.attacker.example",
            "[::1]x",
            "[evil]:80",
            "localhost:99999999",
            "localhost:abc",
            "",
        ] {
            assert!(!host_allowed(refused, &names), "{refused}");
        }
        assert!(!host_allowed("mukaika-admin.city.example.lg.jp", &[]));
    }
}
