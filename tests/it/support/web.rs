//! A small HTTP/1.1 client with a cookie jar for the review UI tests (plain or TLS), and the
//! helpers those tests share: making accounts, logging in, reading CSRF tokens.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;

/// One answer.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// The first CSRF token on the page.
    pub fn csrf(&self) -> String {
        let text = self.text();
        let at = text
            .find("name=\"csrf\" value=\"")
            .unwrap_or_else(|| panic!("no CSRF field in {text}"));
        let rest = &text[at + 19..];
        rest[..rest.find('"').unwrap()].to_string()
    }
}

/// A browser stand-in: one cookie jar, one connection per request.
pub struct Browser {
    pub addr: SocketAddr,
    pub cookies: HashMap<String, String>,
    tls: Option<Arc<rustls::ClientConfig>>,
}

pub fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Browser {
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            cookies: HashMap::new(),
            tls: None,
        }
    }

    /// A browser that speaks TLS and trusts `ca_der`.
    pub fn tls(addr: SocketAddr, ca_der: rustls::pki_types::CertificateDer<'static>) -> Self {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca_der).unwrap();
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        Self {
            addr,
            cookies: HashMap::new(),
            tls: Some(Arc::new(config)),
        }
    }

    pub fn request(&mut self, method: &str, path: &str, body: Option<String>) -> Resp {
        let cookie = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let mut req =
            format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
        if !cookie.is_empty() {
            req.push_str(&format!("Cookie: {cookie}\r\n"));
        }
        if let Some(b) = &body {
            req.push_str(&format!(
                "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
                b.len()
            ));
        }
        req.push_str("\r\n");
        req.push_str(body.as_deref().unwrap_or(""));
        let tcp = TcpStream::connect(self.addr).unwrap();
        tcp.set_read_timeout(Some(std::time::Duration::from_secs(30)))
            .unwrap();
        let mut raw = Vec::new();
        match &self.tls {
            Some(config) => {
                let conn = rustls::ClientConnection::new(
                    Arc::clone(config),
                    "localhost".try_into().unwrap(),
                )
                .unwrap();
                let mut s = rustls::StreamOwned::new(conn, tcp);
                s.write_all(req.as_bytes()).unwrap();
                let _ = s.read_to_end(&mut raw);
            }
            None => {
                let mut s = tcp;
                s.write_all(req.as_bytes()).unwrap();
                s.read_to_end(&mut raw).unwrap();
            }
        }
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a complete response");
        let head = String::from_utf8_lossy(&raw[..split]).into_owned();
        let mut body = raw[split + 4..].to_vec();
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        let resp_chunked = headers
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
        if resp_chunked {
            body = dechunk(&body);
        }
        for (k, v) in &headers {
            if k.eq_ignore_ascii_case("set-cookie") {
                let pair = v.split(';').next().unwrap_or("");
                if let Some((name, value)) = pair.split_once('=') {
                    if v.contains("Max-Age=0") || value.is_empty() {
                        self.cookies.remove(name);
                    } else {
                        self.cookies.insert(name.to_string(), value.to_string());
                    }
                }
            }
        }
        Resp {
            status,
            headers,
            body,
        }
    }

    pub fn get(&mut self, path: &str) -> Resp {
        self.request("GET", path, None)
    }

    pub fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Resp {
        let body = form
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        self.request("POST", path, Some(body))
    }

    /// Logs in (fetching the login form first for its token); returns the answer to the POST.
    pub fn login(&mut self, name: &str, password: &str) -> Resp {
        let form = self.get("/login");
        assert_eq!(form.status, 200);
        let token = form.csrf();
        self.post(
            "/login",
            &[("csrf", &token), ("name", name), ("password", password)],
        )
    }

    /// Logs in with a one-time password and sets `new` as the password.
    pub fn first_login(&mut self, name: &str, one_time: &str, new: &str) {
        let r = self.login(name, one_time);
        assert_eq!(r.status, 303, "{}", r.text());
        assert_eq!(r.header("location"), Some("/password"));
        let page = self.get("/password");
        let token = page.csrf();
        let r = self.post(
            "/password",
            &[
                ("csrf", &token),
                ("old", one_time),
                ("new", new),
                ("again", new),
            ],
        );
        assert_eq!(r.status, 303, "{}", r.text());
        assert_eq!(r.header("location"), Some("/?done=password"));
    }

    /// The CSRF token of the session (read off the dashboard's logout form).
    pub fn token(&mut self) -> String {
        self.get("/").csrf()
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(end) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&b[..end])
                .trim()
                .split(';')
                .next()
                .unwrap_or("0"),
            16,
        )
        .unwrap_or(0);
        if size == 0 {
            return out;
        }
        let start = end + 2;
        out.extend_from_slice(&b[start..start + size]);
        b = &b[start + size + 2..];
    }
}

/// Creates an account through the same path as `mukaika admin user add` and returns its
/// one-time password.
pub fn add_user(config: &mukaika::config::ServiceConfig, name: &str, roles: &str) -> String {
    let reply = mukaika::admin::control::run(
        config,
        mukaika::admin::control::Op::UserAdd {
            name: name.into(),
            roles: mukaika::review::parse_roles(roles).unwrap(),
        },
    )
    .unwrap();
    assert!(reply.ok, "{}", reply.message);
    reply
        .message
        .lines()
        .find_map(|l| {
            l.split_once("one-time password: ")
                .map(|(_, p)| p.trim().to_string())
        })
        .unwrap()
}

/// The password test accounts change to.
pub const PASSWORD: &str = "correct-horse-battery-9";

/// An account ready to use: created, logged in, password changed to [`PASSWORD`].
pub fn account(
    config: &mukaika::config::ServiceConfig,
    addr: SocketAddr,
    name: &str,
    roles: &str,
) -> Browser {
    let one_time = add_user(config, name, roles);
    let mut b = Browser::new(addr);
    b.first_login(name, &one_time, PASSWORD);
    b
}
