//! Service configuration: what `mukaika serve` listens on, where it keeps its data, how it
//! delivers, and the sanitizing policy.
//!
//! Owns: [`ServiceConfig`] with an annotated embedded default that runs out of the box on one
//! machine (SMTP on 127.0.0.1:2525, loopback clients only, delivery into `./data/maildir`),
//! and validation with clear errors.
//! Invariants: unknown keys are errors; listening beyond loopback without an explicit list of
//! accepted recipient domains is refused (no open relay, 対策基準 7.1(14)①); every size and
//! time limit is non-zero.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use mukaika_sanitizers::{Policy, Registry};

/// The embedded default configuration, annotated (`mukaika config default` prints it).
pub const DEFAULT_TOML: &str = r#"# mukaika — embedded default configuration.
# Runs out of the box on one machine: SMTP on 127.0.0.1:2525 from loopback clients only, and
# converted mail delivered into ./data/maildir (the LGWAN side stands in as a folder).

[smtp]
# Address to listen on. Anything beyond loopback also needs accepted_domains (no open relay).
listen = "127.0.0.1:2525"
# Name in the greeting and EHLO reply.
hostname = "mukaika.localhost"
# Clients allowed to connect (CIDR); others get 554 at connect.
client_networks = ["127.0.0.0/8", "::1/128"]
# Recipient domains accepted; empty accepts any (allowed on loopback only).
accepted_domains = []
# Largest message accepted, in bytes (対策基準 7.1(14)③).
max_message_bytes = 26214400
# Most recipients per message.
max_recipients = 100
# Longest command or data line, in bytes.
max_line_bytes = 4096
# Seconds a client may take per command, and for the whole DATA phase (deadlines, however
# slowly the bytes trickle in).
command_timeout_secs = 300
data_timeout_secs = 600
# Concurrent connections, in all and per client address. A full listener closes (421) a
# connection waiting for a command, from the busiest address, to serve a new client.
max_connections = 500
max_connections_per_client = 50
# With three quarters of max_connections in use, a client waiting for a command is dropped
# after this many seconds instead (Postfix's stress mode).
stress_command_timeout_secs = 10
# Error replies a client may get without delivering a message before 421 and disconnect
# (Postfix's smtpd_hard_error_limit).
hard_error_limit = 20
# Message bytes all sessions together may hold in memory (restart to change); past it, DATA
# gets 452 4.3.1 and the client retries later. At least twice max_message_bytes.
memory_budget_bytes = 134217728
# Bare CR or LF in DATA (SMTP smuggling, CVE-2023-51764/5/6): "reject" with 550 5.5.2, or
# "normalize" to CRLF. Either way only CRLF.CRLF ends a message.
bare_line_endings = "reject"
# STARTTLS: PEM certificate chain and private key (対策基準 5.3). Offered when both are set.
# tls_cert_file = "/etc/mukaika/tls/cert.pem"
# tls_key_file = "/etc/mukaika/tls/key.pem"

[data]
# Spool, quarantine, maildir and audit log live here unless set separately.
dir = "./data"
# Refuse new mail (452 4.3.1) when less than this many bytes are free.
min_free_bytes = 104857600

[delivery]
# "maildir" delivers into data/maildir (tmp → new); "relay" sends to the LGWAN-side MTA.
mode = "maildir"
# relay = "smtp://lgwan-mta.example.lg.jp:25"
# Require STARTTLS to the relay and check its certificate against this CA file (対策基準 5.3).
# relay_starttls = true
# relay_ca_file = "/etc/mukaika/lgwan-ca.pem"
# Retries after a 4xx, a timeout or a network error double from first_retry_secs up to
# max_retry_secs; after give_up_hours the message moves to hold/ (never bounced to the sender).
first_retry_secs = 60
max_retry_secs = 3600
give_up_hours = 120
# Seconds per relay conversation, and connections kept to the relay.
relay_timeout_secs = 60
relay_connections = 8

[pipeline]
# Conversion workers (0: eight per core; they mostly wait for fsyncs).
workers = 0
# Seconds one message may take to convert before it is quarantined whole.
timeout_secs = 120
# Extra threads the sanitizers may use beside the workers, all together (hashing a large
# file beside its rebuild, rewriting a large Office file's parts in parallel). 0: one per core.
helper_threads = 0

[audit]
# This gateway's name in every audit record.
node = "mukaika-1"
# Optional file holding an HMAC key for the audit chain.
# hmac_key_file = "/etc/mukaika/audit.key"
# Optional SIEM: "udp://192.0.2.10:514", "tcp://192.0.2.10:601" (plain), or
# "tls://192.0.2.10:6514" (RFC 5425), which needs the CA that signed the SIEM's certificate
# and checks the certificate against the address, or against syslog_server_name when set.
# syslog = "tls://192.0.2.10:6514"
# syslog_ca_file = "/etc/mukaika/siem-ca.pem"
# syslog_server_name = "siem.city.example.lg.jp"
# Days audit files are kept (対策基準 7.1(6)); expiry writes a record of what it removed.
retention_days = 1825

[quarantine]
# Days quarantined originals are kept; expiry writes an audit record listing them.
retention_days = 180
# Item records: "sqlite" (data/quarantine/quarantine.db) or "files" (one JSON per item).
# Not used with [store] backend = "postgres": the quarantine is then in the shared database
# ("files" is refused there).
store = "sqlite"
# Reason codes that can never be released, whoever asks (a detected virus stays put).
never_release = ["virus"]

[import]
# Staff drop files into an import folder; sanitized copies and a 無害化レポート appear in the
# export folder the LGWAN side reads. A file is taken once unchanged for settle_secs.
settle_secs = 5
rescan_secs = 30
# "text" (Japanese report next to each result) or "json".
report_format = "text"
# Move processed originals to data/import-state/processed/ instead of deleting them.
archive_processed = false

[[import.pairs]]
name = "default"
# Relative folders are taken from data.dir.
import = "import"
export = "export"
# Exports are 0640 (folders 0750) unless a mode is set: mukaika never writes anything other
# users can read. Give the LGWAN-side reader the group (gid), or set mode = "0644" for everyone.
# mode = "0640"
# uid = 1000
# gid = 1000

[antivirus]
# ClamAV's daemon scans every original and every unpacked member (対策基準 7.4(1)); a detection
# blocks the item. Unset: no antivirus stage.
# clamd = "unix:/run/clamav/clamd.ctl"
timeout_secs = 30
# clamd not answering: "tempfail" (451 to new mail) or "defer" (accept, convert later).
on_unavailable = "tempfail"

[admin]
# The quarantine review UI (login needed), Prometheus /metrics and /healthz (no login).
# Loopback only unless dangerous_expose = true.
listen = "127.0.0.1:9925"
# HTTPS for the UI: PEM certificate chain and key. Both set: TLS only, Secure cookies.
# tls_cert_file = "/etc/mukaika/tls/admin-cert.pem"
# tls_key_file = "/etc/mukaika/tls/admin-key.pem"
# /healthz fails once delivery to the LGWAN side has failed this long.
delivery_unhealthy_secs = 900
# Seconds without a request before a UI session ends, and after login however active.
session_idle_secs = 900
session_max_secs = 43200
# Failed logins in a row that lock an account, and for how long (対策基準 7.2(4)).
lockout_attempts = 5
lockout_secs = 900
# Failed logins one client address may make within lockout_secs, whatever the names.
login_attempts_per_client = 20
# Host names the listener answers to besides IP addresses and localhost; any other Host
# header gets 421 (a defence against DNS rebinding). Add the name you browse or scrape it by.
# hostnames = ["mukaika-admin.city.example.lg.jp"]
# Connections open at once, in all and from one address; the last max_connections_per_client
# are kept for addresses holding none, so one flooding client cannot lock out the UI or /healthz.
max_connections = 256
max_connections_per_client = 32
# Seconds a client has to send its request headers (and finish TLS) before it is dropped.
header_timeout_secs = 10
# The review UI's address as staff open it: administrators' notices then link each item to
# <public_url>/items/<id>. Off unless set.
# public_url = "https://mukaika-admin.city.example.lg.jp"

[notices]
# A short Japanese notice to the LGWAN-side recipients when mail for them is quarantined.
recipients = true
# Sender of notices, and whom staff ask for a release.
from = "mukaika-notice@mukaika.localhost"
contact = "情報システム担当"
# Administrators told of every quarantine: "immediate" (one mail each) or "digest".
admin_to = []
admin_mode = "immediate"
digest_minutes = 60
# Templates: {from} {subject} {items} {contact} {date} are filled in.
# recipient_subject = "【隔離のお知らせ】{subject}"
# recipient_body = "..."
# admin_subject = "[mukaika] 隔離 {count} 件"
# admin_body = "..."

[fonts]
# Folders with TrueType/OpenType fonts for drawing SVG text (read at start-up).
dirs = ["/usr/share/fonts"]

[ppap]
# Password-protected attachments (PPAP): a password found in the text of a mail from the same
# sender to overlapping recipients (either order, within the window) unlocks the held file,
# which is then sanitized like any attachment and delivered as a new message.
enabled = true
match_window_secs = 3600
max_candidates = 5
mask_password = true
# The recipients' password page: when set, each recipient of a held encrypted file gets a mail
# with a one-time link to <public_url>/<token> (served by the admin listener under /ppap/; add
# the host to [admin] hostnames). Off unless set.
# public_url = "https://gateway.city.example.lg.jp/ppap"
# How long a recipient's link works, in hours (0: links expire at once).
link_valid_hours = 72

[ui]
# 職員が読む時刻（レポート・通知・管理画面・CLI）と、入力する時刻（--since など）のタイムゾーン。
# 監査ログや JSON レポートなどの記録は常に UTC です。変更は再起動で反映されます。
# Time zone (IANA name) of the times people read and type: reports, notices, the web UI and the
# CLI. Records (audit log, JSON reports, metadata) stay UTC. Takes effect at the next start.
timezone = "Asia/Tokyo"
[store]
# Where accounts, login sessions, lockout counters and release requests live: "sqlite"
# (data/review.db, one node) or "postgres" (shared by every node of a cluster; see
# `mukaika store migrate`). With postgres the quarantine (items and originals) is shared too;
# `mukaika store copy --from sqlite --to postgres` moves a single node's into it.
backend = "sqlite"
# url = "postgres://mukaika@db.city.example.lg.jp/mukaika"
# With postgres over the network: TLS, the server's certificate checked against this CA.
# ca_file = "/etc/mukaika/db-ca.pem"
# 承認された解除を配送中のノードが保持する秒数。ノードが停止すると、この時間の後に別のノードが引き継ぎます。
# Seconds a node holds an approved release it is delivering; another node takes it over after this.
# release_lease_secs = 120

[policy]
# The sanitizing policy (see README, "Policy"); defaults are fail-closed.
"#;

/// The whole service configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// SMTP listener.
    pub smtp: SmtpConfig,
    /// Data directories.
    pub data: DataConfig,
    /// Delivery to the LGWAN side.
    pub delivery: DeliveryConfig,
    /// Conversion workers.
    pub pipeline: PipelineConfig,
    /// Audit log.
    pub audit: AuditSection,
    /// Quarantine store.
    #[serde(default)]
    pub quarantine: QuarantineSection,
    /// Admin listener (metrics and health).
    #[serde(default)]
    pub admin: AdminSection,
    /// Import folders.
    #[serde(default)]
    pub import: ImportSection,
    /// Antivirus stage.
    #[serde(default)]
    pub antivirus: AntivirusSection,
    /// Fonts for drawing SVG text.
    #[serde(default)]
    pub fonts: FontsSection,
    /// Quarantine notices.
    #[serde(default)]
    pub notices: NoticesSection,
    /// Password-protected attachments (PPAP).
    #[serde(default)]
    pub ppap: PpapSection,
    /// How mukaika shows things to people.
    #[serde(default)]
    pub ui: UiSection,
    /// Where the state nodes of a cluster share lives (SQLite alone, or PostgreSQL).
    #[serde(default)]
    pub store: StoreSection,
    /// Sanitizing policy.
    #[serde(default)]
    pub policy: Policy,
}

/// `[ppap]`: password-protected attachments, unlocked with the password the sender mails
/// separately (or in the same mail), then sanitized and delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PpapSection {
    /// Look for passwords in mail text and pair them with held encrypted attachments from the
    /// same sender (on by default). Off: encrypted files stay held as before; an operator can
    /// still unlock one (`mukaika quarantine unlock`).
    pub enabled: bool,
    /// How long (seconds) a held encrypted file and a password mail from the same sender to
    /// overlapping recipients are paired, in either order. Passwords wait in memory only, and
    /// no longer than this.
    pub match_window_secs: u64,
    /// At most this many password candidates are read from one mail (and tried per file).
    pub max_candidates: u32,
    /// Replace the passwords found in a delivered mail's text with `********`.
    pub mask_password: bool,
    /// The address of the recipients' password page (`https://gateway.example/ppap`); unset,
    /// notices carry no link and only operators unlock.
    pub public_url: Option<String>,
    /// How long a recipient's one-time link works, in hours (72 by default; 0 makes every
    /// link expire at once). A link also stops at its first success and is locked after
    /// five wrong passwords within 15 minutes.
    pub link_valid_hours: u64,
}

impl Default for PpapSection {
    fn default() -> Self {
        Self {
            enabled: true,
            match_window_secs: 3600,
            max_candidates: 5,
            mask_password: true,
            public_url: None,
            link_valid_hours: 72,
        }
    }
}

impl PpapSection {
    /// Sets the mail policy's candidate search and masking from this section (done once when
    /// the configuration is parsed: `[ppap]` governs them, not `[policy.mail]`).
    fn apply_to(&self, policy: &mut Policy) {
        // Masking needs the search even where pairing is off.
        policy.mail.password_candidates = if self.enabled || self.mask_password {
            self.max_candidates
        } else {
            0
        };
        policy.mail.mask_passwords = self.mask_password;
    }
}

/// `[ui]`: how mukaika shows things to people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UiSection {
    /// The IANA time zone (`Asia/Tokyo`, the default) of every time shown to people — reports,
    /// notices, the web UI, CLI listings — and of times they type without a zone (`--since
    /// 2026-12-04`). Records stay UTC. Looked up in the database compiled into the binary, so
    /// an unknown name is refused when the file is read, whatever the host has installed.
    pub timezone: String,
}

impl Default for UiSection {
    fn default() -> Self {
        Self {
            timezone: "Asia/Tokyo".into(),
        }
    }
}

impl UiSection {
    /// The configured zone (validated at load; Asia/Tokyo should it somehow not resolve).
    pub fn zone(&self) -> jiff::tz::TimeZone {
        crate::clock::zone_named(&self.timezone)
            .or_else(|| crate::clock::zone_named("Asia/Tokyo"))
            .unwrap_or(jiff::tz::TimeZone::UTC)
    }
}

/// `[fonts]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FontsSection {
    /// Folders searched (recursively) for TrueType/OpenType fonts to draw SVG text with. An
    /// SVG with text is held when no font is found. Read at start-up only.
    pub dirs: Vec<PathBuf>,
}

impl Default for FontsSection {
    fn default() -> Self {
        Self {
            dirs: crate::fonts::default_dirs(),
        }
    }
}

/// `[smtp]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    /// Listen address.
    pub listen: SocketAddr,
    /// Greeting and EHLO name.
    pub hostname: String,
    /// Allowed client networks (CIDR).
    pub client_networks: Vec<String>,
    /// Accepted recipient domains; empty accepts any (loopback only).
    pub accepted_domains: Vec<String>,
    /// Largest message, bytes.
    pub max_message_bytes: u64,
    /// Most recipients per message.
    pub max_recipients: usize,
    /// Longest line, bytes.
    pub max_line_bytes: usize,
    /// Deadline for each whole command (from the previous reply to the end of the command
    /// line), seconds: a client trickling bytes is dropped then with 421 4.4.2.
    pub command_timeout_secs: u64,
    /// Deadline for the whole DATA phase (354 to the final dot), seconds.
    pub data_timeout_secs: u64,
    /// Concurrent connections (restart to change).
    pub max_connections: usize,
    /// Concurrent connections per client address.
    pub max_connections_per_client: usize,
    /// Under pressure (three quarters of `max_connections` in use), the deadline for a client
    /// waiting for a command, seconds (Postfix's stress-mode `smtpd_timeout`).
    #[serde(default = "default_stress_command_timeout")]
    pub stress_command_timeout_secs: u64,
    /// Error replies a client may get without delivering a message before the session ends
    /// with 421 (Postfix's `smtpd_hard_error_limit`).
    #[serde(default = "default_hard_error_limit")]
    pub hard_error_limit: u32,
    /// Message bytes all SMTP sessions together may hold in memory, counting each buffer
    /// twice (it and the spool's copy while writing it); past it DATA gets 452 4.3.1. Sized
    /// at start-up. At least twice `max_message_bytes`, so one largest message always fits.
    #[serde(default = "default_memory_budget")]
    pub memory_budget_bytes: u64,
    /// `reject` or `normalize`.
    pub bare_line_endings: BareLineEndings,
    /// PEM certificate chain for STARTTLS.
    #[serde(default)]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key for STARTTLS.
    #[serde(default)]
    pub tls_key_file: Option<PathBuf>,
}

fn default_stress_command_timeout() -> u64 {
    10
}

fn default_hard_error_limit() -> u32 {
    20
}

fn default_memory_budget() -> u64 {
    128 << 20
}

/// What to do with bare CR or LF in DATA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BareLineEndings {
    /// 550 5.5.2; the message is not accepted.
    Reject,
    /// Accepted with every bare CR or LF turned into CRLF.
    Normalize,
}

/// `[data]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// Base directory.
    pub dir: PathBuf,
    /// Minimum free space before intake tempfails.
    pub min_free_bytes: u64,
}

/// `[delivery]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryConfig {
    /// `maildir` or `relay`.
    pub mode: DeliveryMode,
    /// The LGWAN-side MTA, `smtp://host:port`.
    #[serde(default)]
    pub relay: Option<String>,
    /// Require STARTTLS to the relay, verifying its certificate for the relay's host name
    /// against `relay_ca_file`. A relay without STARTTLS or with a certificate that does not
    /// verify gets nothing (messages wait and are retried).
    #[serde(default)]
    pub relay_starttls: bool,
    /// PEM file of the CA certificates (or the certificate itself) the relay is trusted by.
    #[serde(default)]
    pub relay_ca_file: Option<PathBuf>,
    /// First retry delay, seconds (doubling after each failure).
    pub first_retry_secs: u64,
    /// Longest retry delay, seconds.
    pub max_retry_secs: u64,
    /// Hours after which a message that still cannot be delivered moves to hold/.
    pub give_up_hours: u64,
    /// Seconds per relay conversation.
    pub relay_timeout_secs: u64,
    /// Connections kept open to the relay.
    pub relay_connections: u32,
}

impl DeliveryConfig {
    /// `(host, port)` of the relay.
    ///
    /// # Errors
    /// Missing, or not `smtp://host:port`.
    pub fn relay_target(&self) -> Result<(String, u16), ConfigError> {
        let url = self
            .relay
            .as_deref()
            .ok_or_else(|| ConfigError("delivery.relay: required when mode = \"relay\"".into()))?;
        let rest = url.strip_prefix("smtp://").ok_or_else(|| {
            ConfigError(format!("delivery.relay: {url}: expected smtp://host:port"))
        })?;
        let (host, port) = rest.rsplit_once(':').map_or((rest, "25"), |(h, p)| (h, p));
        let port = port
            .trim_end_matches('/')
            .parse::<u16>()
            .map_err(|_| ConfigError(format!("delivery.relay: {url}: bad port")))?;
        if host.is_empty() {
            return Err(ConfigError(format!("delivery.relay: {url}: no host")));
        }
        Ok((
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port,
        ))
    }
}

/// Delivery modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeliveryMode {
    /// Into `data/maildir` (tmp → new).
    Maildir,
    /// To the LGWAN-side MTA over SMTP, through the outgoing spool.
    Relay,
}

/// `[pipeline]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Worker count (0: eight per core; they mostly wait for fsyncs).
    pub workers: usize,
    /// Per-message conversion timeout, seconds.
    pub timeout_secs: u64,
    /// Helper threads the sanitizers may start beside the workers, all conversions together
    /// (0: one per core). A conversion that finds none free works on its own thread.
    #[serde(default)]
    pub helper_threads: usize,
}

/// `[audit]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSection {
    /// Node name.
    pub node: String,
    /// HMAC key file.
    #[serde(default)]
    pub hmac_key_file: Option<PathBuf>,
    /// SIEM target (`udp://ip:port`, `tcp://ip:port` or `tls://ip:port`).
    #[serde(default)]
    pub syslog: Option<String>,
    /// PEM file of the CA that signed the SIEM's certificate; required by, and only allowed
    /// with, a `tls://` target, which trusts nothing else.
    #[serde(default)]
    pub syslog_ca_file: Option<PathBuf>,
    /// The name the SIEM's certificate must carry (a `tls://` target; its IP address otherwise).
    #[serde(default)]
    pub syslog_server_name: Option<String>,
    /// Days audit files are kept (対策基準 7.1(6)); older files are removed with a record.
    #[serde(default = "default_audit_retention")]
    pub retention_days: u32,
}

fn default_audit_retention() -> u32 {
    1825
}

/// `[import]`: folder pairs staff drop files into, and how results are written.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportSection {
    /// Seconds a file must stay unchanged (size and modification time) before it is taken.
    #[serde(default = "default_settle")]
    pub settle_secs: u64,
    /// Seconds between full rescans (change events get lost on network shares).
    #[serde(default = "default_rescan")]
    pub rescan_secs: u64,
    /// `text` (a Japanese `.無害化レポート.txt` next to each result) or `json`.
    #[serde(default)]
    pub report_format: ReportFormat,
    /// Move processed originals to `<data>/import-state/processed/<pair>/…` instead of deleting them.
    #[serde(default)]
    pub archive_processed: bool,
    /// The folder pairs (none: the import folder is off).
    #[serde(default)]
    pub pairs: Vec<ImportPair>,
}

fn default_settle() -> u64 {
    5
}

fn default_rescan() -> u64 {
    30
}

impl Default for ImportSection {
    fn default() -> Self {
        Self {
            settle_secs: default_settle(),
            rescan_secs: default_rescan(),
            report_format: ReportFormat::Text,
            archive_processed: false,
            pairs: Vec::new(),
        }
    }
}

/// The report written next to each import result.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReportFormat {
    /// Japanese plain text.
    #[default]
    Text,
    /// The report schema as JSON.
    Json,
}

/// One import → export folder pair (one per department if the site wants them separate).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportPair {
    /// Department or pair name (in reports and the audit log).
    pub name: String,
    /// Folder staff drop files into (internet side); a relative path is taken from `data.dir`.
    pub import: PathBuf,
    /// Folder results are written to (read by the LGWAN side); subfolders are mirrored. A
    /// relative path is taken from `data.dir`.
    pub export: PathBuf,
    /// Mode of written files, octal (e.g. "0640").
    #[serde(default)]
    pub mode: Option<String>,
    /// Owner (numeric uid) of written files.
    #[serde(default)]
    pub uid: Option<u32>,
    /// Group (numeric gid) of written files.
    #[serde(default)]
    pub gid: Option<u32>,
}

impl ImportPair {
    /// The mode as bits, when set and valid.
    pub fn mode_bits(&self) -> Option<u32> {
        self.mode
            .as_deref()
            .and_then(|m| u32::from_str_radix(m.trim_start_matches("0o"), 8).ok())
    }
}

/// `[antivirus]`: the optional ClamAV stage (対策基準 7.4(1)).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AntivirusSection {
    /// clamd's socket: `"unix:/run/clamav/clamd.ctl"` or `"tcp:127.0.0.1:3310"`; unset turns the
    /// stage off.
    #[serde(default)]
    pub clamd: Option<String>,
    /// Seconds each clamd read or write may take.
    #[serde(default = "default_av_timeout")]
    pub timeout_secs: u64,
    /// When clamd does not answer: `tempfail` refuses new mail with 451 (and defers what is
    /// queued), `defer` accepts and defers conversion until clamd is back. Nothing passes.
    #[serde(default)]
    pub on_unavailable: OnUnavailable,
}

fn default_av_timeout() -> u64 {
    30
}

impl Default for AntivirusSection {
    fn default() -> Self {
        Self {
            clamd: None,
            timeout_secs: default_av_timeout(),
            on_unavailable: OnUnavailable::Tempfail,
        }
    }
}

/// What intake does while the antivirus engine is unavailable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnUnavailable {
    /// 451 at the end of DATA.
    #[default]
    Tempfail,
    /// Accept; conversion waits.
    Defer,
}

/// `[admin]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSection {
    /// Address of the admin listener (`/metrics`, `/healthz`). Loopback unless
    /// `dangerous_expose` is set.
    pub listen: SocketAddr,
    /// `/healthz` fails once delivery to the LGWAN side has failed for this many seconds.
    #[serde(default = "default_unhealthy_secs")]
    pub delivery_unhealthy_secs: u64,
    /// Allow a non-loopback admin address. `/metrics` and `/healthz` do not authenticate:
    /// put them behind a firewall or a proxy that does.
    #[serde(default)]
    pub dangerous_expose: bool,
    /// PEM certificate chain for HTTPS on the admin listener (with `tls_key_file`).
    #[serde(default)]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key for HTTPS on the admin listener.
    #[serde(default)]
    pub tls_key_file: Option<PathBuf>,
    /// Seconds without a request before a UI session ends.
    #[serde(default = "default_idle_secs")]
    pub session_idle_secs: u64,
    /// Failed logins in a row that lock an account (対策基準 7.2(4)).
    #[serde(default = "default_lockout_attempts")]
    pub lockout_attempts: u32,
    /// Seconds a locked account stays locked; also the window of `login_attempts_per_client`.
    #[serde(default = "default_lockout_secs")]
    pub lockout_secs: u64,
    /// Failed logins one client address may make within `lockout_secs`, across all account
    /// names; further attempts are refused without checking any password, so one address
    /// cannot lock every account.
    #[serde(default = "default_login_attempts_per_client")]
    pub login_attempts_per_client: u32,
    /// Seconds after login at which a UI session ends however active it is (an absolute
    /// lifetime on top of `session_idle_secs`).
    #[serde(default = "default_session_max_secs")]
    pub session_max_secs: u64,
    /// Host names the admin listener answers to besides IP addresses and `localhost` (the
    /// name in the certificate, the one Prometheus scrapes). A request for any other host is
    /// refused with 421, so a web page that points its own name at this address (DNS
    /// rebinding) cannot reach the UI or `/metrics` from a staff member's browser.
    #[serde(default)]
    pub hostnames: Vec<String>,
    /// Connections the admin listener holds open at once, from all clients.
    #[serde(default = "default_admin_connections")]
    pub max_connections: usize,
    /// Connections one IP address may hold open at once. The last this many of
    /// `max_connections` are also a reserve for addresses that hold none, so a client that
    /// opens connections and never finishes them cannot lock out the UI or `/healthz`.
    #[serde(default = "default_admin_connections_per_client")]
    pub max_connections_per_client: usize,
    /// Seconds a client has to finish the TLS handshake and send each request's headers
    /// (an idle keep-alive connection is closed after it too): a slow sender gives its
    /// connection back at this deadline.
    #[serde(default = "default_admin_header_timeout_secs")]
    pub header_timeout_secs: u64,
    /// The review UI's base address as staff open it (`https://host[:port]`, no trailing
    /// path needed): the administrators' notices link every item to
    /// `<public_url>/items/<id>`. Unset: the notices name the IDs only.
    #[serde(default)]
    pub public_url: Option<String>,
}

fn default_admin_connections() -> usize {
    256
}

fn default_admin_connections_per_client() -> usize {
    32
}

fn default_admin_header_timeout_secs() -> u64 {
    10
}

fn default_idle_secs() -> u64 {
    900
}

fn default_lockout_attempts() -> u32 {
    5
}

fn default_lockout_secs() -> u64 {
    900
}

fn default_login_attempts_per_client() -> u32 {
    20
}

fn default_session_max_secs() -> u64 {
    12 * 3600
}

/// `[notices]`: mail telling people that something was quarantined.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoticesSection {
    /// Tell the LGWAN-side recipients when mail for them is quarantined.
    #[serde(default = "yes")]
    pub recipients: bool,
    /// Sender address of notices.
    #[serde(default = "default_notice_from")]
    pub from: String,
    /// Whom staff ask for a release (shown in notices).
    #[serde(default = "default_contact")]
    pub contact: String,
    /// Administrators told of quarantines.
    #[serde(default)]
    pub admin_to: Vec<String>,
    /// One mail per quarantine, or a digest.
    #[serde(default)]
    pub admin_mode: NoticeMode,
    /// Minutes between digests.
    #[serde(default = "default_digest_minutes")]
    pub digest_minutes: u64,
    /// Subject of the recipients' notice; `{subject}` is the held message's subject.
    #[serde(default = "default_recipient_subject")]
    pub recipient_subject: String,
    /// Body of the recipients' notice: `{from}`, `{subject}`, `{date}`, `{items}`, `{contact}`.
    #[serde(default = "default_recipient_body")]
    pub recipient_body: String,
    /// Subject of the administrators' notice: `{count}`.
    #[serde(default = "default_admin_subject")]
    pub admin_subject: String,
    /// Body of the administrators' notice: `{count}`, `{items}`.
    #[serde(default = "default_admin_body")]
    pub admin_body: String,
}

/// When administrators hear of quarantines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NoticeMode {
    /// A mail for every quarantined message or file.
    #[default]
    Immediate,
    /// One mail every `digest_minutes` listing what was quarantined.
    Digest,
}

fn yes() -> bool {
    true
}

fn default_notice_from() -> String {
    "mukaika-notice@mukaika.localhost".into()
}

fn default_contact() -> String {
    "情報システム担当".into()
}

fn default_digest_minutes() -> u64 {
    60
}

fn default_recipient_subject() -> String {
    "【隔離のお知らせ】{subject}".into()
}

fn default_recipient_body() -> String {
    "このメールは無害化ゲートウェイ mukaika からの自動通知です。\n\n\
     あなた宛てのメールのうち、安全にできなかったものを隔離しました。\n\n\
     差出人: {from}\n件名: {subject}\n受信日時: {date}\n\n隔離したもの:\n{items}\n\
     業務上必要な場合は、隔離IDを添えて {contact} に解除を依頼してください。\n\
     解除には担当者による申請と別の担当者による承認が必要です。\n"
        .into()
}

fn default_admin_subject() -> String {
    "[mukaika] 隔離 {count} 件".into()
}

fn default_admin_body() -> String {
    "mukaika が次のものを隔離しました（{count} 件）。\n\n{items}\n管理画面で内容を確認してください。\n".into()
}

impl Default for NoticesSection {
    fn default() -> Self {
        Self {
            recipients: true,
            from: default_notice_from(),
            contact: default_contact(),
            admin_to: Vec::new(),
            admin_mode: NoticeMode::Immediate,
            digest_minutes: default_digest_minutes(),
            recipient_subject: default_recipient_subject(),
            recipient_body: default_recipient_body(),
            admin_subject: default_admin_subject(),
            admin_body: default_admin_body(),
        }
    }
}

fn default_unhealthy_secs() -> u64 {
    900
}

impl Default for AdminSection {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9925)),
            delivery_unhealthy_secs: default_unhealthy_secs(),
            dangerous_expose: false,
            tls_cert_file: None,
            tls_key_file: None,
            session_idle_secs: default_idle_secs(),
            lockout_attempts: default_lockout_attempts(),
            lockout_secs: default_lockout_secs(),
            login_attempts_per_client: default_login_attempts_per_client(),
            session_max_secs: default_session_max_secs(),
            hostnames: Vec::new(),
            max_connections: default_admin_connections(),
            max_connections_per_client: default_admin_connections_per_client(),
            header_timeout_secs: default_admin_header_timeout_secs(),
            public_url: None,
        }
    }
}

/// `[quarantine]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuarantineSection {
    /// Days quarantined originals are kept; older ones are removed with an audit record.
    pub retention_days: u32,
    /// Where item records live: `sqlite` (`quarantine.db`, the default) or `files` (one JSON
    /// file per item). Blobs are content-addressed files either way. Not used with `[store]
    /// backend = "postgres"`, whose quarantine (items and blobs) is in the shared database;
    /// `files` is refused there.
    #[serde(default)]
    pub store: QuarantineBackend,
    /// Reason codes never released, whoever asks.
    #[serde(default = "default_never_release")]
    pub never_release: Vec<String>,
}

fn default_never_release() -> Vec<String> {
    vec![mukaika_sanitizers::scanner::DETECTED.to_string()]
}

/// The quarantine record store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum QuarantineBackend {
    /// SQLite metadata.
    #[default]
    Sqlite,
    /// One JSON file per item.
    Files,
}

impl Default for QuarantineSection {
    fn default() -> Self {
        Self {
            retention_days: 180,
            store: QuarantineBackend::Sqlite,
            never_release: default_never_release(),
        }
    }
}

/// `[store]`: the database behind accounts, login sessions, lockout counters and release
/// requests — node-local SQLite (the default) or a PostgreSQL every node of a cluster shares
/// (which then holds the quarantine too).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSection {
    /// `sqlite` (`review.db` under the data directory: one node, the default) or `postgres`
    /// (`url`: every node sees the same accounts, sessions, lockouts and requests).
    #[serde(default)]
    pub backend: StoreBackend,
    /// The PostgreSQL connection (postgres only): a URL (`postgres://user@host:port/db`,
    /// `host=/run/postgresql` for a Unix socket folder) or libpq `key=value` pairs. Keep a
    /// password out of it where the server allows (peer or certificate authentication).
    #[serde(default)]
    pub url: Option<String>,
    /// PEM file of the CA that signed the database server's certificate: with it, the link
    /// is TLS only and the certificate is checked against it and the host name in `url`.
    /// Without it the link is plain, which is allowed only to a Unix socket or loopback.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Allows a plain (unencrypted, unauthenticated server) link to a database beyond
    /// loopback. Passwords and session hashes would cross the network readable: never in
    /// production.
    #[serde(default)]
    pub dangerous_plaintext: bool,
    /// Seconds a node holds an approved release it is delivering (postgres only). Another
    /// node takes the release over only after this, so the delivery itself is cut off well
    /// before it (at three quarters): one node delivers, and a node that dies mid-delivery
    /// delays the release by at most this much. At least 5.
    #[serde(default = "default_release_lease_secs")]
    pub release_lease_secs: u64,
}

fn default_release_lease_secs() -> u64 {
    120
}

impl Default for StoreSection {
    fn default() -> Self {
        Self {
            backend: StoreBackend::default(),
            url: None,
            ca_file: None,
            dangerous_plaintext: false,
            release_lease_secs: default_release_lease_secs(),
        }
    }
}

impl StoreSection {
    /// Checks a `[store]` section that parsing alone cannot: postgres needs a URL that parses,
    /// and a plain link beyond loopback is refused unless `dangerous_plaintext`.
    ///
    /// # Errors
    /// A message naming the key at fault.
    pub fn check(&self) -> std::result::Result<(), String> {
        let store = self;
        if store.backend == StoreBackend::Sqlite {
            return Ok(());
        }
        let Some(url) = &store.url else {
            return Err("store.url: needed with backend = \"postgres\"".into());
        };
        if store.release_lease_secs < 5 {
            return Err("store.release_lease_secs: at least 5 (seconds)".into());
        }
        // The parser's message could echo the string, password and all: say only what is wrong.
        let config = <tokio_postgres::Config as std::str::FromStr>::from_str(url)
            .map_err(|_| "store.url: not a PostgreSQL connection string or URL".to_string())?;
        if config.get_hosts().is_empty() {
            return Err("store.url: no host (a name, an address or a Unix socket folder)".into());
        }
        if store.ca_file.is_none() && !store.dangerous_plaintext && !Self::local_only(&config) {
            return Err(
                "store.ca_file: a database beyond loopback is reached over TLS only (set ca_file; \
                 dangerous_plaintext = true allows a plain link)"
                    .into(),
            );
        }
        Ok(())
    }

    /// Every host is a Unix socket folder or a loopback address — and so is every `hostaddr`,
    /// which is where the client really connects when given (`host` is then only a name).
    fn local_only(config: &tokio_postgres::Config) -> bool {
        config.get_hostaddrs().iter().all(|ip| ip.is_loopback())
            && config.get_hosts().iter().all(|h| match h {
                #[cfg(unix)]
                tokio_postgres::config::Host::Unix(_) => true,
                tokio_postgres::config::Host::Tcp(name) => {
                    name == "localhost"
                        || name
                            .parse::<std::net::IpAddr>()
                            .is_ok_and(|ip| ip.is_loopback())
                }
            })
    }
}

/// The database behind [`StoreSection`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StoreBackend {
    /// `review.db` under the data directory.
    #[default]
    Sqlite,
    /// A shared PostgreSQL (`url`).
    Postgres,
}

/// Why a configuration cannot be used.
#[derive(Debug, Clone)]
pub struct ConfigError(String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// An IP network in CIDR form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    /// Parses `192.0.2.0/24` or `::1/128` (a bare address is a host).
    ///
    /// # Errors
    /// Not an address, or a prefix too long for it.
    pub fn parse(s: &str) -> Result<Self, ConfigError> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| ConfigError(format!("{s}: not an IP network")))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| ConfigError(format!("{s}: bad prefix length")))?,
            None => max,
        };
        Ok(Self { addr, prefix })
    }

    /// True when `ip` is inside the network (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u32::MAX << (32 - self.prefix)
                };
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u128::MAX << (128 - self.prefix)
                };
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl ServiceConfig {
    /// The embedded default.
    pub fn default_config() -> Self {
        Self::from_toml(DEFAULT_TOML).expect("the embedded default configuration is valid")
    }

    /// Parses and validates a configuration.
    ///
    /// # Errors
    /// TOML errors (with the key), unknown keys, and everything [`ServiceConfig::validate`]
    /// refuses.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        // A file need only say what differs: it is laid over the embedded default, table by
        // table (a key it sets replaces the default's, arrays whole), and unknown keys are
        // still refused when the result is read.
        let given: toml::Table = toml::from_str(text).map_err(|e| ConfigError(e.to_string()))?;
        let mut merged: toml::Table =
            toml::from_str(DEFAULT_TOML).map_err(|e| ConfigError(e.to_string()))?;
        overlay(&mut merged, given);
        let mut config: ServiceConfig = toml::Value::Table(merged)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError(e.to_string()))?;
        config.ppap.apply_to(&mut config.policy);
        config.validate()?;
        Ok(config)
    }

    /// Loads a file, or the embedded default when `path` is None.
    ///
    /// # Errors
    /// Unreadable file or an invalid configuration.
    pub fn load(path: Option<&Path>) -> Result<(Self, String), ConfigError> {
        match path {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| ConfigError(format!("{}: {e}", p.display())))?;
                let config = Self::from_toml(&text)
                    .map_err(|e| ConfigError(format!("{}: {e}", p.display())))?;
                // The loaded file decides the zone people see in this process (first load
                // wins: a reload naming another zone waits for a restart).
                crate::clock::set_people_zone(config.ui.zone());
                Ok((config, text))
            }
            None => Ok((Self::default_config(), DEFAULT_TOML.to_string())),
        }
    }

    /// Checks everything that parsing alone cannot.
    ///
    /// # Errors
    /// An open relay, zero limits, bad networks, a policy the registry cannot honour.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if crate::clock::zone_named(&self.ui.timezone).is_none() {
            return Err(ConfigError(format!(
                "ui.timezone: {:?} is not a time zone name mukaika knows (an IANA name such as \"Asia/Tokyo\" or \"UTC\"; タイムゾーン名が正しくありません)",
                self.ui.timezone
            )));
        }
        self.store.check().map_err(ConfigError)?;
        if self.store.backend == StoreBackend::Postgres
            && self.quarantine.store == QuarantineBackend::Files
        {
            // Said explicitly (the default is sqlite): the items would not be where the
            // operator expects them, so refuse rather than ignore it.
            return Err(ConfigError(
                "quarantine.store = \"files\" cannot be used with store.backend = \"postgres\": \
                 a cluster keeps its quarantine in the database (削除してください)"
                    .into(),
            ));
        }
        if self.audit.retention_days == 0 || self.quarantine.retention_days == 0 {
            return Err(ConfigError(
                "audit.retention_days and quarantine.retention_days: at least one day".into(),
            ));
        }
        let admin = &self.admin;
        if admin.max_connections_per_client == 0
            || admin.max_connections_per_client * 2 > admin.max_connections
            || admin.header_timeout_secs == 0
        {
            return Err(ConfigError(
                "admin.max_connections_per_client: at least 1 and at most half of \
                 admin.max_connections (the rest is what other clients keep); \
                 admin.header_timeout_secs: at least 1"
                    .into(),
            ));
        }
        if let Some(clamd) = &self.antivirus.clamd {
            clamd
                .parse::<crate::antivirus::Endpoint>()
                .map_err(ConfigError)?;
        }
        let ppap = &self.ppap;
        if ppap.enabled && (ppap.match_window_secs == 0 || ppap.max_candidates == 0) {
            return Err(ConfigError(
                "ppap.match_window_secs and ppap.max_candidates: at least 1 (or ppap.enabled = false)".into(),
            ));
        }
        if let Some(url) = &self.admin.public_url {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(ConfigError(format!(
                    "admin.public_url: {url:?} is not an http(s) address"
                )));
            }
        }
        if let Some(url) = &ppap.public_url {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(ConfigError(format!(
                    "ppap.public_url: {url:?} is not an http(s) address"
                )));
            }
        }
        for pair in &self.import.pairs {
            if pair.mode.is_some() && pair.mode_bits().is_none_or(|m| m > 0o7777) {
                return Err(ConfigError(format!(
                    "import.pairs[{}].mode: an octal mode such as \"0640\"",
                    pair.name
                )));
            }
            if pair.import == pair.export
                || pair.export.starts_with(&pair.import)
                || pair.import.starts_with(&pair.export)
            {
                return Err(ConfigError(format!(
                    "import.pairs[{}]: the import and export folders must not contain each other",
                    pair.name
                )));
            }
        }
        if self.admin.tls_cert_file.is_some() != self.admin.tls_key_file.is_some() {
            return Err(ConfigError(
                "admin.tls_cert_file and admin.tls_key_file: set both or neither".into(),
            ));
        }
        if let Some(bad) = self.admin.hostnames.iter().find(|n| {
            n.is_empty()
                || n.starts_with(['.', '-'])
                || !n
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        }) {
            return Err(ConfigError(format!(
                "admin.hostnames: {bad:?} is not a host name (no port, no scheme)"
            )));
        }
        if self.admin.lockout_attempts == 0
            || self.admin.session_idle_secs == 0
            || self.admin.login_attempts_per_client == 0
            || self.admin.session_max_secs == 0
        {
            return Err(ConfigError(
                "admin.lockout_attempts, login_attempts_per_client, session_idle_secs and session_max_secs: at least 1".into(),
            ));
        }
        for addr in self.notices.admin_to.iter().chain([&self.notices.from]) {
            if !crate::names::plausible_address(addr) {
                return Err(ConfigError(format!(
                    "notices: {addr:?} is not a mail address"
                )));
            }
        }
        if !self.admin.listen.ip().is_loopback() && !self.admin.dangerous_expose {
            return Err(ConfigError(
                "admin.listen: a non-loopback address needs admin.dangerous_expose = true (the endpoints do not authenticate)".into(),
            ));
        }
        let s = &self.smtp;
        let networks: Vec<Network> = s
            .client_networks
            .iter()
            .map(|n| Network::parse(n))
            .collect::<Result<_, _>>()?;
        if networks.is_empty() {
            return Err(ConfigError(
                "smtp.client_networks: at least one network is needed".into(),
            ));
        }
        let loopback_only =
            s.listen.ip().is_loopback() && networks.iter().all(|n| n.addr.is_loopback());
        if s.accepted_domains.is_empty() && !loopback_only {
            return Err(ConfigError(
                "smtp.accepted_domains: listening beyond loopback needs an explicit list of recipient domains (no open relay, 対策基準 7.1(14)①)".into(),
            ));
        }
        for (name, v) in [
            ("max_message_bytes", s.max_message_bytes),
            ("command_timeout_secs", s.command_timeout_secs),
            ("data_timeout_secs", s.data_timeout_secs),
            ("stress_command_timeout_secs", s.stress_command_timeout_secs),
            ("hard_error_limit", u64::from(s.hard_error_limit)),
            ("pipeline.timeout_secs", self.pipeline.timeout_secs),
        ] {
            if v == 0 {
                return Err(ConfigError(format!(
                    "smtp.{name}: must be greater than zero"
                )));
            }
        }
        if s.max_recipients == 0
            || s.max_connections == 0
            || s.max_connections_per_client == 0
            || s.max_line_bytes < 1000
        {
            return Err(ConfigError("smtp: recipient and connection limits must be positive and max_line_bytes at least 1000 (RFC 5321)".into()));
        }
        if s.memory_budget_bytes < s.max_message_bytes.saturating_mul(2) {
            return Err(ConfigError(
                "smtp.memory_budget_bytes: at least twice max_message_bytes (one largest message and the spool's copy of it)".into(),
            ));
        }
        match (&s.tls_cert_file, &s.tls_key_file) {
            (Some(c), Some(k)) => {
                for f in [c, k] {
                    if !f.is_file() {
                        return Err(ConfigError(format!(
                            "smtp.tls: {} does not exist",
                            f.display()
                        )));
                    }
                }
            }
            (None, None) => {}
            _ => {
                return Err(ConfigError(
                    "smtp.tls_cert_file and smtp.tls_key_file go together".into(),
                ))
            }
        }
        if self.delivery.mode == DeliveryMode::Relay {
            self.delivery.relay_target()?;
        }
        if self.delivery.relay_starttls && self.delivery.relay_ca_file.is_none() {
            return Err(ConfigError(
                "delivery.relay_ca_file: needed with relay_starttls (the CA the relay's certificate is checked against)".into(),
            ));
        }
        if self.delivery.first_retry_secs == 0
            || self.delivery.max_retry_secs < self.delivery.first_retry_secs
            || self.delivery.relay_timeout_secs == 0
            || self.delivery.relay_connections == 0
        {
            return Err(ConfigError("delivery: retry delays, timeout and connections must be positive (max_retry_secs >= first_retry_secs)".into()));
        }
        match &self.audit.syslog {
            Some(target) => {
                crate::audit::syslog::target(
                    target,
                    self.audit.syslog_ca_file.as_deref(),
                    self.audit.syslog_server_name.as_deref(),
                )
                .map_err(|e| ConfigError(format!("audit.syslog: {e}")))?;
            }
            None if self.audit.syslog_ca_file.is_some()
                || self.audit.syslog_server_name.is_some() =>
            {
                return Err(ConfigError(
                    "audit.syslog_ca_file / syslog_server_name without audit.syslog".into(),
                ));
            }
            None => {}
        }
        Registry::standard()
            .check_policy(&self.policy)
            .map_err(|e| ConfigError(format!("policy: {e}")))?;
        Ok(())
    }

    /// The parsed client networks.
    pub fn client_networks(&self) -> Vec<Network> {
        self.smtp
            .client_networks
            .iter()
            .filter_map(|n| Network::parse(n).ok())
            .collect()
    }

    /// Directory for a part of the data.
    pub fn data_path(&self, part: &str) -> PathBuf {
        self.data.dir.join(part)
    }
}

/// Lays `given` over `base`: tables merge key by key, anything else (values, arrays) replaces.
fn overlay(base: &mut toml::Table, given: toml::Table) {
    for (key, value) in given {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(g)) => overlay(b, g),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_default_is_valid_and_loopback_only() {
        let c = ServiceConfig::default_config();
        assert!(c.smtp.listen.ip().is_loopback());
        assert_eq!(c.smtp.listen.port(), 2525);
    }

    #[test]
    fn a_tls_syslog_target_is_refused_without_its_ca_file() {
        let tls = DEFAULT_TOML.replace(
            "# syslog = \"tls://192.0.2.10:6514\"",
            "syslog = \"tls://192.0.2.10:6514\"",
        );
        assert_ne!(tls, DEFAULT_TOML);
        let err = ServiceConfig::from_toml(&tls).unwrap_err().to_string();
        assert!(err.contains("syslog_ca_file"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        let cert = rcgen::generate_simple_self_signed(vec!["192.0.2.10".to_string()]).unwrap();
        std::fs::write(&ca, cert.cert.pem()).unwrap();
        let with_ca = tls.replace(
            "# syslog_ca_file = \"/etc/mukaika/siem-ca.pem\"",
            &format!("syslog_ca_file = \"{}\"", ca.display()),
        );
        ServiceConfig::from_toml(&with_ca).unwrap();
    }

    #[test]
    fn refuses_an_unknown_time_zone_and_takes_a_known_one() {
        let c = ServiceConfig::default_config();
        assert_eq!(c.ui.timezone, "Asia/Tokyo");
        // A partial file without [ui] keeps the default.
        let partial = ServiceConfig::from_toml("[audit]\nnode = \"n2\"\n").unwrap();
        assert_eq!(partial.ui.timezone, "Asia/Tokyo");
        let err = ServiceConfig::from_toml("[ui]\ntimezone = \"Asia/Tokio\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("ui.timezone") && err.contains("Asia/Tokio"),
            "{err}"
        );
        for bad in ["", "JST", "+09:00"] {
            let text = format!("[ui]\ntimezone = {bad:?}\n");
            assert!(ServiceConfig::from_toml(&text).is_err(), "{bad:?}");
        }
        let berlin = ServiceConfig::from_toml("[ui]\ntimezone = \"Europe/Berlin\"\n").unwrap();
        assert_eq!(berlin.ui.zone().iana_name(), Some("Europe/Berlin"));
    }

    #[test]
    fn refuses_an_open_relay() {
        let text = DEFAULT_TOML.replace("listen = \"127.0.0.1:2525\"", "listen = \"0.0.0.0:25\"");
        let err = ServiceConfig::from_toml(&text).unwrap_err().to_string();
        assert!(err.contains("accepted_domains"), "{err}");
        let ok = text.replace(
            "accepted_domains = []",
            "accepted_domains = [\"city.example.lg.jp\"]",
        );
        ServiceConfig::from_toml(&ok).unwrap();
    }

    #[test]
    fn the_store_defaults_to_sqlite_and_a_postgres_link_beyond_loopback_needs_tls() {
        assert_eq!(
            ServiceConfig::default_config().store.backend,
            StoreBackend::Sqlite
        );
        let store = |lines: &str| {
            ServiceConfig::from_toml(&DEFAULT_TOML.replace("backend = \"sqlite\"", lines))
        };
        assert!(store("backend = \"sqlite\"\nbogus = 1")
            .unwrap_err()
            .to_string()
            .contains("bogus"));
        assert!(store("backend = \"postgres\"")
            .unwrap_err()
            .to_string()
            .contains("store.url"));
        let local =
            store("backend = \"postgres\"\nurl = \"host=/run/postgresql dbname=mukaika\"").unwrap();
        assert_eq!(local.store.backend, StoreBackend::Postgres);
        assert!(
            store("backend = \"postgres\"\nurl = \"postgres://mukaika@127.0.0.1/mukaika\"").is_ok()
        );
        let remote =
            "backend = \"postgres\"\nurl = \"postgres://mukaika@db.city.example.lg.jp/mukaika\"";
        assert!(store(remote)
            .unwrap_err()
            .to_string()
            .contains("store.ca_file"));
        assert!(store(&format!("{remote}\ndangerous_plaintext = true")).is_ok());
        // `hostaddr` is where the client really goes: a loopback name does not make it local.
        let disguised =
            "backend = \"postgres\"\nurl = \"host=localhost hostaddr=198.51.100.7 dbname=mukaika\"";
        assert!(store(disguised)
            .unwrap_err()
            .to_string()
            .contains("store.ca_file"));
        assert!(store(
            "backend = \"postgres\"\nurl = \"host=localhost hostaddr=127.0.0.1 dbname=mukaika\""
        )
        .is_ok());
        // The parser's complaint never echoes the string (it may hold a password).
        let bad = store("backend = \"postgres\"\nurl = \"postgres://u:s3cret@[::1\"").unwrap_err();
        assert!(!bad.to_string().contains("s3cret"), "{bad}");
    }

    #[test]
    fn rejects_unknown_keys_and_bad_values() {
        assert!(
            ServiceConfig::from_toml(&DEFAULT_TOML.replace("[data]", "[data]\nbogus = 1"))
                .unwrap_err()
                .to_string()
                .contains("bogus")
        );
        assert!(ServiceConfig::from_toml(
            &DEFAULT_TOML.replace("max_message_bytes = 26214400", "max_message_bytes = 0")
        )
        .is_err());
        assert!(
            ServiceConfig::from_toml(&DEFAULT_TOML.replace("\"::1/128\"", "\"::1/129\"")).is_err()
        );
        assert!(ServiceConfig::from_toml(&format!(
            "{DEFAULT_TOML}\n[policy.actions]\nrar = \"sanitize\"\n"
        ))
        .unwrap_err()
        .to_string()
        .contains("policy"));
        let named = |names: &str| {
            ServiceConfig::from_toml(&DEFAULT_TOML.replace(
                "# hostnames = [\"mukaika-admin.city.example.lg.jp\"]",
                &format!("hostnames = {names}"),
            ))
        };
        assert!(named(r#"["mukaika-admin.city.example.lg.jp"]"#).is_ok());
        for bad in [r#"["admin:9925"]"#, r#"["https://admin"]"#, r#"[""]"#] {
            assert!(
                named(bad).unwrap_err().to_string().contains("hostnames"),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_admin_listener_keeps_room_beside_one_clients_share_and_a_header_deadline() {
        let admin =
            |from: &str, to: &str| ServiceConfig::from_toml(&DEFAULT_TOML.replace(from, to));
        let default = ServiceConfig::from_toml(DEFAULT_TOML).unwrap().admin;
        assert_eq!(
            (
                default.max_connections,
                default.max_connections_per_client,
                default.header_timeout_secs
            ),
            (256, 32, 10)
        );
        for (from, to) in [
            (
                "max_connections_per_client = 32",
                "max_connections_per_client = 0",
            ),
            (
                "max_connections_per_client = 32",
                "max_connections_per_client = 129",
            ),
            ("header_timeout_secs = 10", "header_timeout_secs = 0"),
        ] {
            assert!(
                admin(from, to).unwrap_err().to_string().contains("admin."),
                "{to}"
            );
        }
    }

    #[test]
    fn smtp_memory_budget_holds_one_largest_message_and_limits_are_positive() {
        let c = ServiceConfig::default_config();
        assert_eq!(c.smtp.hard_error_limit, 20);
        assert_eq!(c.smtp.stress_command_timeout_secs, 10);
        assert_eq!(c.smtp.memory_budget_bytes, 128 << 20);
        let small = DEFAULT_TOML.replace(
            "memory_budget_bytes = 134217728",
            "memory_budget_bytes = 52428799",
        );
        assert!(ServiceConfig::from_toml(&small)
            .unwrap_err()
            .to_string()
            .contains("memory_budget_bytes"));
        for zero in [
            ("hard_error_limit = 20", "hard_error_limit = 0"),
            (
                "stress_command_timeout_secs = 10",
                "stress_command_timeout_secs = 0",
            ),
        ] {
            assert!(ServiceConfig::from_toml(&DEFAULT_TOML.replace(zero.0, zero.1)).is_err());
        }
        // Older files without the new keys get the defaults.
        let old = DEFAULT_TOML
            .replace("stress_command_timeout_secs = 10\n", "")
            .replace("hard_error_limit = 20\n", "")
            .replace("memory_budget_bytes = 134217728\n", "");
        assert_eq!(
            ServiceConfig::from_toml(&old)
                .unwrap()
                .smtp
                .memory_budget_bytes,
            128 << 20
        );
    }

    #[test]
    fn relay_mode_needs_a_relay_url() {
        let relay = DEFAULT_TOML.replace("mode = \"maildir\"", "mode = \"relay\"");
        assert!(ServiceConfig::from_toml(&relay)
            .unwrap_err()
            .to_string()
            .contains("delivery.relay"));
        let ok = ServiceConfig::from_toml(&relay.replace("# relay = ", "relay = ")).unwrap();
        assert_eq!(
            ok.delivery.relay_target().unwrap(),
            ("lgwan-mta.example.lg.jp".to_string(), 25)
        );
        assert!(ServiceConfig::from_toml(&relay.replace(
            "# relay = \"smtp://lgwan-mta.example.lg.jp:25\"",
            "relay = \"http://x\""
        ))
        .is_err());
    }

    #[test]
    fn networks_match_addresses() {
        let n = Network::parse("192.0.2.0/24").unwrap();
        assert!(n.contains("192.0.2.77".parse().unwrap()));
        assert!(!n.contains("192.0.3.1".parse().unwrap()));
        assert!(n.contains("::ffff:192.0.2.5".parse().unwrap()));
        assert!(Network::parse("::1/128")
            .unwrap()
            .contains("::1".parse().unwrap()));
    }

    #[test]
    fn a_file_need_only_say_what_differs_from_the_default() {
        let partial = ServiceConfig::from_toml("[smtp]\nlisten = \"127.0.0.1:2626\"\n").unwrap();
        let default = ServiceConfig::default_config();
        assert_eq!(partial.smtp.listen.to_string(), "127.0.0.1:2626");
        assert_eq!(partial.smtp.hostname, default.smtp.hostname);
        assert_eq!(partial.pipeline.timeout_secs, default.pipeline.timeout_secs);
        assert_eq!(partial.data.dir, default.data.dir);
        // An empty file is the default; a misspelt key is still refused.
        assert_eq!(
            ServiceConfig::from_toml("").unwrap().smtp.hostname,
            default.smtp.hostname
        );
        let err = ServiceConfig::from_toml("[smtp]\nlisen = \"127.0.0.1:2626\"\n").unwrap_err();
        assert!(err.to_string().contains("lisen"), "{err}");
    }
}
