//! Helpers shared by the service tests: a test configuration, a minimal SMTP client, waiting
//! for files to appear.

#![allow(dead_code)]

pub mod postgres;
pub mod ppap;
pub mod web;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use mukaika::config::{ServiceConfig, DEFAULT_TOML};

/// Runs the `mukaika` binary with `args` and waits for it.
pub fn mukaika(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_mukaika"))
        .args(args)
        .output()
        .unwrap()
}

/// The embedded default on 127.0.0.1:0 with data under `data`, plus extra TOML text appended
/// (or replacing defaults through `edits`).
pub fn config(data: &Path, extra: &str) -> ServiceConfig {
    ServiceConfig::from_toml(&(config_text(data, "127.0.0.1:0") + extra)).unwrap()
}

/// The embedded default's text listening on `listen`, with data under `data`.
pub fn config_text(data: &Path, listen: &str) -> String {
    DEFAULT_TOML
        .replace(
            "listen = \"127.0.0.1:2525\"",
            &format!("listen = \"{listen}\""),
        )
        .replace("dir = \"./data\"", &format!("dir = \"{}\"", data.display()))
        .replace("min_free_bytes = 104857600", "min_free_bytes = 1")
        .replace("listen = \"127.0.0.1:9925\"", "listen = \"127.0.0.1:0\"")
}

/// A minimal SMTP client: sends each command, returns each reply's code.
pub struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Client {
    pub fn connect(addr: std::net::SocketAddr) -> (Self, u16) {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut c = Client {
            reader: BufReader::new(s.try_clone().unwrap()),
            writer: s,
        };
        let code = c.reply();
        (c, code)
    }
    pub fn reply(&mut self) -> u16 {
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line).unwrap() == 0 {
                return 0;
            }
            if line.as_bytes().get(3) != Some(&b'-') {
                return line[..3].parse().unwrap();
            }
        }
    }
    /// Sends `bytes` and returns the whole (possibly multi-line) reply as text.
    pub fn send_text(&mut self, bytes: &[u8]) -> String {
        self.writer.write_all(bytes).unwrap();
        let mut all = String::new();
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line).unwrap() == 0 {
                return all;
            }
            all.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                return all;
            }
        }
    }
    pub fn send(&mut self, bytes: &[u8]) -> u16 {
        self.writer.write_all(bytes).unwrap();
        self.reply()
    }
    pub fn mail(&mut self, rcpt: &str, message: &[u8]) -> u16 {
        self.mail_from("sender@example.invalid", &[rcpt], message)
    }
    /// One transaction with its own envelope: the reply to the end of DATA.
    pub fn mail_from(&mut self, from: &str, rcpts: &[&str], message: &[u8]) -> u16 {
        assert_eq!(self.send(format!("MAIL FROM:<{from}>\r\n").as_bytes()), 250);
        for rcpt in rcpts {
            assert_eq!(self.send(format!("RCPT TO:<{rcpt}>\r\n").as_bytes()), 250);
        }
        assert_eq!(self.send(b"DATA\r\n"), 354);
        let mut data = Vec::new();
        for line in message.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.starts_with(b".") {
                data.push(b'.');
            }
            data.extend_from_slice(line);
            data.extend_from_slice(b"\r\n");
        }
        data.extend_from_slice(b".\r\n");
        self.send(&data)
    }
}

pub fn wait_for(dir: &Path, n: usize) -> Vec<std::path::PathBuf> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let files: Vec<_> = std::fs::read_dir(dir)
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        if files.len() >= n || Instant::now() > deadline {
            return files;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts the service on `rt` with `config`; `text` is what the audit records as its source.
pub fn start(
    rt: &tokio::runtime::Runtime,
    config: ServiceConfig,
    text: &str,
) -> mukaika::service::Running {
    rt.block_on(mukaika::service::start(config, "test", text))
        .unwrap()
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A free loopback port (bound and released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Postfix's smtp-sink on `port`, dumping every transaction into `dump` (one file each).
/// Extra arguments (like `-f RCPT`) make it refuse commands.
pub fn smtp_sink(port: u16, dump: &Path, extra: &[&str]) -> SinkProcess {
    std::fs::create_dir_all(dump).unwrap();
    std::process::Command::new("chmod")
        .arg("0777")
        .arg(dump)
        .status()
        .unwrap();
    let mut cmd = std::process::Command::new("/usr/sbin/smtp-sink");
    // smtp-sink refuses to keep root privileges; run it as nobody.
    cmd.args(["-u", "nobody", "-d", &format!("{}/%H%M%S.", dump.display())]);
    cmd.args(extra);
    cmd.arg(format!("127.0.0.1:{port}")).arg("10");
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let child = cmd
        .spawn()
        .expect("smtp-sink (postfix) is required: run bash tests/ci.sh");
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    SinkProcess(child)
}

/// A running smtp-sink, killed and reaped when dropped.
pub struct SinkProcess(std::process::Child);

impl Drop for SinkProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Audit event types in order.
pub fn audit_kinds(data: &Path) -> Vec<String> {
    mukaika::audit::search(&data.join("audit"), &Default::default())
        .unwrap()
        .iter()
        .map(|r| r.event["type"].as_str().unwrap_or("").to_string())
        .collect()
}

/// The quarantine's items under `data` (the configured default store), waiting up to 30 s
/// for at least `n`.
pub fn quarantined(data: &Path, n: usize) -> Vec<mukaika::store::quarantine::QuarantineItem> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let items = mukaika::store::quarantine::open(
            data.join("quarantine"),
            mukaika::config::QuarantineBackend::Sqlite,
        )
        .and_then(|s| s.list())
        .unwrap_or_default();
        if items.len() >= n || Instant::now() > deadline {
            return items;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One HTTP/1.1 GET over a plain socket (the admin listener): status code and body.
pub fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// A self-signed certificate for `localhost`, written as `cert.pem` and `key.pem` in `dir`.
pub fn localhost_cert(
    dir: &Path,
) -> (
    rcgen::CertifiedKey<rcgen::KeyPair>,
    std::path::PathBuf,
    std::path::PathBuf,
) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    (cert, cert_path, key_path)
}

/// The password tests give accounts they set up on the command line; [`cli_account`] adds a
/// number derived from the account's name, so two accounts never share one.
pub const CLI_PASSWORD: &str = "tadashii-uma-denchi-7";

/// An account made on the command line (`mukaika admin user add`) and moved off its one-time
/// password the way a CLI-only user does (`mukaika account password`), with `config` as the
/// configuration file. Returns a file in `dir` holding its password (its own, see
/// [`CLI_PASSWORD`]).
pub fn cli_account(config: &str, dir: &Path, name: &str, roles: &str) -> std::path::PathBuf {
    let out = mukaika(&[
        "admin", "user", "add", name, "--role", roles, "--config", config,
    ]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let one_time = text
        .lines()
        .find_map(|l| l.split_once("one-time password: ").map(|(_, p)| p.trim()))
        .expect("a one-time password");
    let old = dir.join(format!("{name}.one-time"));
    std::fs::write(&old, format!("{one_time}\n")).unwrap();
    let new = dir.join(format!("{name}.password"));
    let own: u32 = name.bytes().map(u32::from).sum();
    std::fs::write(&new, format!("{CLI_PASSWORD}-{own}\n")).unwrap();
    let out = mukaika(&[
        "account",
        "password",
        "--user",
        name,
        "--password-file",
        old.to_str().unwrap(),
        "--new-password-file",
        new.to_str().unwrap(),
        "--config",
        config,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    new
}

/// The proof a test gives for an account [`cli_account`] or `account password` set up.
pub fn proof(password: &str) -> mukaika::admin::control::Proof {
    mukaika::admin::control::Proof {
        password: mukaika::ppap::SecretText::new(password.to_string()),
    }
}

/// A synthetic mail held whole (a test changes what it needs with `..held_mail(…)`).
pub fn held_mail(
    id: &str,
    reason: &str,
    bytes: &[u8],
) -> mukaika::store::quarantine::QuarantineItem {
    mukaika::store::quarantine::QuarantineItem {
        id: id.into(),
        source: "mail".into(),
        origin_id: id.into(),
        name: None,
        reason: reason.into(),
        detail: "synthetic test item".into(),
        sha256: mukaika_sanitizers::report::sha256_hex(bytes),
        size: bytes.len() as u64,
        at: mukaika::clock::now_rfc3339(),
        report: serde_json::Value::Null,
        mail_from: Some("sender@example.com".into()),
        rcpt_to: vec!["staff@city.example.lg.jp".into()],
        subject: Some("held".into()),
        detected_type: Some("message/rfc822".into()),
    }
}

/// Puts `item` with `bytes` into the quarantine store under `data` (the embedded default).
pub fn hold(data: &Path, item: &mukaika::store::quarantine::QuarantineItem, bytes: &[u8]) {
    let store = mukaika::store::quarantine::open(
        data.join("quarantine"),
        mukaika::config::QuarantineBackend::Sqlite,
    )
    .unwrap();
    store.put(item, bytes).unwrap();
}

/// An account made through the running service's control socket (as `admin user add` and
/// `account password` do), with [`CLI_PASSWORD`] as its password.
pub fn control_account(config: &ServiceConfig, name: &str, roles: &str) {
    use mukaika::admin::control::{run, Op};
    let one_time = web::add_user(config, name, roles);
    let reply = run(
        config,
        Op::ChangePassword {
            user: name.into(),
            old: mukaika::ppap::SecretText::new(one_time),
            new: mukaika::ppap::SecretText::new(CLI_PASSWORD.into()),
        },
    )
    .unwrap();
    assert!(reply.ok, "{}", reply.message);
}
