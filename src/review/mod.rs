//! Quarantine review: accounts, release requests and the two-person rule.
//!
//! Owns: the accounts, web sessions and release requests — in `review.db` under the data
//! directory (SQLite), or with `[store] backend = "postgres"` in the database every node of a
//! cluster shares (one SQL over both: `store`) — password hashing (argon2id), login lockout,
//! the accounts' lifecycle (add, reset, unlock, disable, enable, delete, other roles), and
//! every decision on a quarantined item — request, cancel, approve, reject, delete, original
//! download or view — with its audit record and, on approval, delivery through the normal
//! sinks. The web UI, the control socket and the CLI all
//! act through [`Review`], so the rules hold whichever door is used.
//! Invariants:
//! - Nobody approves or rejects a request they made (対策基準 2(9) 兼務の禁止), whatever roles
//!   they hold; every action checks the actor's role against the account store.
//! - Each decision is audited durably before it takes effect; an approval is recorded before
//!   delivery, and an approved request not yet delivered is delivered again
//!   ([`Review::deliver_approved`]) — at least once, never silently dropped.
//! - Reason codes in `quarantine.never_release` (a detected virus) are never released.
//! - No account exists until an administrator creates one; a new or reset account's password
//!   is shown once and must be changed at first login (対策基準 6.4(3)⑤), to one long enough
//!   and hard to guess (6.4(3)③: no repeats, digits only, account name or common password).
//! - A login attempt is counted (per account or unknown name, and per client address) before
//!   its password is checked, so parallel attempts get no more checks than the lockout
//!   allows; at most [`MAX_PASSWORD_HASHES`] argon2 runs happen at once.
//! - A request leaves `pending` once: the check, the audit record and the write happen under
//!   one lock and transaction. Only its requester withdraws it; only someone else decides it.
//! - Every action is taken by an [`Actor`]: its audit record names the door (`via`: the web
//!   client's peer address, or the CLI's OS user, uid and pid as the kernel reported them).
//! - At least one enabled administrator stays: disabling, deleting or re-roling the last is
//!   refused, and nobody does it to their own account. A disabled account cannot log in.
//! - In a cluster, an approved release is delivered by exactly one node: the node claims the
//!   request in the shared database with a lease (`claim`), hands the item to the LGWAN side
//!   itself within three quarters of that lease — straight to the relay, not through its own
//!   outgoing spool, so that no copy waits on a node that may not come back — and marks it
//!   delivered only while the claim is still its own. A node that dies mid-delivery is taken
//!   over by the next pass of another once the lease has run out.
//! - A web session is stored as the SHA-256 of its token, with the account's credential count
//!   at login; a reset, a change of password (but for the changing session), disabling,
//!   deleting or other roles move the count and delete the account's sessions.
//!
//! Must never: deliver a quarantined item without a second person's approval, store a password,
//! a one-time password or a session token in clear, or tell a login attempt which of name and
//! password was wrong (or that the account is disabled).

mod claim;
pub mod digest;
pub mod release;
pub mod retention;
mod store;

use crate::names::plausible_address;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use store::{Db, Row, Sql, V};

use crate::audit::event::{AdminLogin, ReleaseDecision, UserChanged, Via};
use crate::audit::{AuditEvent, AuditLog};
use crate::clock::SharedClock;
use crate::config::ServiceConfig;
use crate::live::Live;
use crate::sink::{Approval, Outgoing, Sink};
use crate::store::quarantine::{valid_id, QuarantineItem, QuarantineStore};

/// What an account may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Requests releases and withdraws requests.
    Operator,
    /// Approves or rejects others' requests, deletes items, downloads originals.
    Approver,
    /// Reads everything, searches the audit log; changes nothing.
    Auditor,
    /// Manages accounts.
    Admin,
}

impl Role {
    /// All roles, in display order.
    pub const ALL: [Role; 4] = [Role::Operator, Role::Approver, Role::Auditor, Role::Admin];

    /// The name used in the store, the CLI and the audit log.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Approver => "approver",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
        }
    }

    /// The Japanese label.
    pub fn label_ja(self) -> &'static str {
        match self {
            Role::Operator => "運用担当（解除申請）",
            Role::Approver => "承認者",
            Role::Auditor => "監査担当（閲覧のみ）",
            Role::Admin => "管理者（アカウント管理）",
        }
    }
}

/// Parses `operator,approver`: one or more roles, no duplicates.
///
/// # Errors
/// An unknown or empty role list.
pub fn parse_roles(s: &str) -> Result<Vec<Role>, String> {
    let mut roles: Vec<Role> = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let role: Role = part.parse()?;
        if !roles.contains(&role) {
            roles.push(role);
        }
    }
    if roles.is_empty() {
        return Err("at least one role: operator, approver, auditor or admin".into());
    }
    roles.sort_by_key(|r| Role::ALL.iter().position(|x| x == r));
    Ok(roles)
}

/// `operator,approver`.
pub fn roles_text(roles: &[Role]) -> String {
    roles
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown role {s:?}: operator, approver, auditor or admin"))
    }
}

/// Who acts, and through which door. Every review action takes one, so every audit record of a
/// person's action names its channel ([`Via`]): the web client's address, or the OS user and
/// process of the command line, as the listener or the kernel saw them.
#[derive(Debug, Clone)]
pub struct Actor {
    name: String,
    via: Via,
    /// The machine's administrator at the command line, who is no account: may manage
    /// accounts (the first administrator can only be made so).
    local_admin: bool,
}

impl Actor {
    /// The account `name`, acting through `via`.
    pub fn new(name: impl Into<String>, via: Via) -> Self {
        Self {
            name: name.into(),
            via,
            local_admin: false,
        }
    }

    /// The local administrator running `mukaika admin user …`, named `cli:<OS user>` after
    /// the caller the kernel reported. `None` unless `via` is [`Via::Cli`]: no other door
    /// manages accounts without an administrator's account.
    pub fn local_admin(via: Via) -> Option<Self> {
        let Via::Cli { os_user, .. } = &via else {
            return None;
        };
        Some(Self {
            name: format!("cli:{os_user}"),
            via,
            local_admin: true,
        })
    }

    /// mukaika itself (a retried delivery, a request closed because its item is gone).
    pub fn system() -> Self {
        Self::new("system", Via::System)
    }

    /// The account name (`cli:<OS user>` for the local administrator).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The door.
    pub fn via(&self) -> &Via {
        &self.via
    }
}

/// The client a login is counted and recorded by: the web address, or `cli:<OS user> pid
/// <pid>`.
fn client_key(via: &Via) -> String {
    via.to_string()
}

/// A change that may take away an administrator (see `Review::change_account`).
#[derive(Debug, Clone, Copy)]
enum AccountChange<'a> {
    /// The account can no longer log in.
    Disable,
    /// The account is removed.
    Delete,
    /// The account holds these roles from now on.
    Roles(&'a [Role]),
}

impl AccountChange<'_> {
    /// The Japanese name of the change, for a refusal.
    fn what(self) -> &'static str {
        match self {
            AccountChange::Disable => "アカウントの無効化",
            AccountChange::Delete => "アカウントの削除",
            AccountChange::Roles(_) => "役割の変更",
        }
    }
}

/// One account, as the UI shows it (never the hash).
#[derive(Debug, Clone, Serialize)]
pub struct User {
    /// Login name.
    pub name: String,
    /// Roles (one person may hold several; the two-person rule holds regardless).
    pub roles: Vec<Role>,
    /// The password is a one-time one and must be changed before anything else.
    pub must_change: bool,
    /// Locked until this time (ms since the epoch), 0 when not locked.
    pub locked_until_ms: u64,
    /// Failed attempts in a row.
    pub failed: u32,
    /// Last successful login (RFC 3339).
    pub last_login_at: Option<String>,
    /// Created (RFC 3339).
    pub created_at: String,
    /// Disabled (a transfer, a leave): the account and its history stay, but it cannot log
    /// in and has no session.
    pub disabled: bool,
}

impl User {
    /// Whether it may log in and act.
    pub fn enabled(&self) -> bool {
        !self.disabled
    }

    /// Locked after failed logins, at `now_ms`.
    pub fn locked(&self, now_ms: u64) -> bool {
        self.locked_until_ms > now_ms
    }
}

/// A live web session, as the store keeps it (the token itself is never stored: only its
/// SHA-256).
#[derive(Debug, Clone)]
pub struct StoredSession {
    /// The account.
    pub user: String,
    /// Its roles now (read from the account, not from the login).
    pub roles: Vec<Role>,
    /// The password must be changed first.
    pub must_change: bool,
    /// Shown after login (対策基準 7.2(4)): the previous login, where from, and failures since.
    pub previous_login: Option<String>,
    /// Address of the previous login.
    pub previous_from: Option<String>,
    /// Failed attempts since the previous login.
    pub failed_since: u32,
}

/// What a session token is worth now.
#[derive(Debug, Clone)]
pub enum SessionLookup {
    /// No such session (never was, logged out, or ended by an account change).
    None,
    /// It was one, but it timed out (idle or lifetime); now gone.
    Expired,
    /// Live; its idle clock was refreshed.
    Live(StoredSession),
}

/// SHA-256 of a session token, hex: what the store keeps instead of the token.
fn token_hash(token: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

/// A session's CSRF token, derived from its token so nothing more is stored: only the holder
/// of the cookie can know it, and a restart keeps it.
pub fn csrf_of(token: &str) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(b"mukaika-csrf\0");
    h.update(token.as_bytes());
    hex::encode(h.finalize())
}

/// Where a released item goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Target {
    /// The original recipients of the mail it came from.
    Original,
    /// Chosen recipients.
    Recipients(Vec<String>),
    /// A copy into the export folder of the named import pair.
    Export(String),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Original => f.write_str("original-recipients"),
            Target::Recipients(r) => write!(f, "to:{}", r.join(",")),
            Target::Export(pair) => write!(f, "export:{pair}"),
        }
    }
}

impl std::str::FromStr for Target {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "original-recipients" || s == "original" {
            return Ok(Target::Original);
        }
        if let Some(list) = s.strip_prefix("to:") {
            let to: Vec<String> = list
                .split([',', ' ', '\n'])
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .map(str::to_string)
                .collect();
            if to.is_empty() || !to.iter().all(|a| plausible_address(a)) {
                return Err(format!("not a list of mail addresses: {list:?}"));
            }
            return Ok(Target::Recipients(to));
        }
        if let Some(pair) = s.strip_prefix("export:") {
            return Ok(Target::Export(pair.to_string()));
        }
        Err(format!(
            "target {s:?}: original-recipients, to:ADDR[,ADDR…] or export:PAIR"
        ))
    }
}

/// A request's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RequestState {
    /// Waiting for an approver.
    Pending,
    /// Approved; delivery not yet confirmed.
    Approved,
    /// Approved and delivered.
    Delivered,
    /// Rejected by an approver.
    Rejected,
    /// Withdrawn by an operator.
    Cancelled,
}

impl RequestState {
    /// The name used in the store and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestState::Pending => "pending",
            RequestState::Approved => "approved",
            RequestState::Delivered => "delivered",
            RequestState::Rejected => "rejected",
            RequestState::Cancelled => "cancelled",
        }
    }

    /// The state named `s` (anything unknown reads as withdrawn).
    pub fn parse(s: &str) -> RequestState {
        match s {
            "pending" => RequestState::Pending,
            "approved" => RequestState::Approved,
            "delivered" => RequestState::Delivered,
            "rejected" => RequestState::Rejected,
            _ => RequestState::Cancelled,
        }
    }

    /// The Japanese label.
    pub fn label_ja(self) -> &'static str {
        match self {
            RequestState::Pending => "承認待ち",
            RequestState::Approved => "承認済み（配送中）",
            RequestState::Delivered => "解除済み",
            RequestState::Rejected => "却下",
            RequestState::Cancelled => "取り下げ",
        }
    }
}

/// A release request.
#[derive(Debug, Clone, Serialize)]
pub struct Request {
    /// Request ID.
    pub id: String,
    /// The quarantined item.
    pub item_id: String,
    /// Who asked.
    pub requester: String,
    /// Where it is to go.
    pub target: Target,
    /// Why (the requester's words).
    pub reason: String,
    /// State.
    pub state: RequestState,
    /// Who approved, rejected or withdrew it.
    pub decided_by: Option<String>,
    /// Their reason.
    pub decision_reason: Option<String>,
    /// When it was made.
    pub requested_at: String,
    /// When it was decided.
    pub decided_at: Option<String>,
    /// Where it went, once delivered.
    pub delivery: Option<String>,
}

/// A successful login, and what the user must be told about the one before (対策基準 7.2(4)).
#[derive(Debug, Clone)]
pub struct LoginOk {
    /// The account.
    pub user: User,
    /// The previous successful login, if any.
    pub previous_login: Option<String>,
    /// Where it came from.
    pub previous_from: Option<String>,
    /// Failed attempts since the previous successful login.
    pub failed_since: u32,
    /// [`Review::credential_epoch`] as it was before the password was checked: a session
    /// holding it ends as soon as the password is replaced, the account disabled or its
    /// roles changed.
    pub credentials: u64,
}

/// Why a review action was refused. Opaque; ask it with the predicates.
#[derive(Debug)]
pub struct ReviewError {
    kind: ErrorKind,
    message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ErrorKind {
    Forbidden,
    NotFound,
    Invalid,
    Login,
    Conflict,
    Internal,
}

impl ReviewError {
    fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// A malformed request (for callers that parse their own input, like the control socket).
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, message)
    }

    fn internal(e: impl std::fmt::Display) -> Self {
        Self::new(ErrorKind::Internal, e.to_string())
    }

    /// A refusal for lack of permission or proof (for callers that check their own, like the
    /// control socket's proof of the account).
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Forbidden, message)
    }

    /// The actor may not do this (role, self-approval, never-release).
    pub fn is_forbidden(&self) -> bool {
        self.kind == ErrorKind::Forbidden
    }

    /// No such item, request or account.
    pub fn is_not_found(&self) -> bool {
        self.kind == ErrorKind::NotFound
    }

    /// The request itself is malformed (empty reason, bad target, weak password…).
    pub fn is_invalid(&self) -> bool {
        self.kind == ErrorKind::Invalid
    }

    /// Someone else moved the request first (it is no longer pending).
    pub fn is_conflict(&self) -> bool {
        self.kind == ErrorKind::Conflict
    }

    /// A login failed (wrong name or password, or a locked account).
    pub fn is_login_failure(&self) -> bool {
        self.kind == ErrorKind::Login
    }
}

impl std::fmt::Display for ReviewError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ReviewError {}

fn sql(e: rusqlite::Error) -> ReviewError {
    ReviewError::internal(format!("review database: {e}"))
}

/// Account names: `[A-Za-z0-9._-]`, 1–32 characters (safe in headers, paths and logs).
pub fn valid_user_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

use crate::random::random_hex;

/// A one-time password: 16 characters from an alphabet without look-alikes.
fn one_time_password() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut buf = [0u8; 16];
    getrandom::fill(&mut buf).expect("the operating system's random source");
    buf.iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}

fn hash_password(password: &str) -> Result<String, ReviewError> {
    use argon2::password_hash::PasswordHasher;
    argon2::Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(ReviewError::internal)
}

fn verify_password(password: &str, hash: &str) -> bool {
    use argon2::password_hash::PasswordVerifier;
    argon2::Argon2::default()
        .verify_password(password.as_bytes(), hash)
        .is_ok()
}

/// A hash nobody's password matches (of a random secret thrown away): verified against when
/// the name is unknown, so a wrong name costs as long as a wrong password.
fn dummy_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| hash_password(&random_hex(16)).unwrap_or_default())
}

/// Passwords too common to be hard to guess, compared after lowercasing, both with the digits
/// and symbols around them dropped (`Password2024!` is `password`) and with every
/// non-letter dropped (`1qaz2wsx3edc` is `qazwsxedc`).
const COMMON_PASSWORDS: &[&str] = &[
    "password",
    "passw0rd",
    "p@ssw0rd",
    "p@ssword",
    "passwd",
    "pass",
    "qwerty",
    "qwertyuiop",
    "asdfghjkl",
    "zxcvbnm",
    "qazwsx",
    "qazwsxedc",
    "qazwsxedcrfv",
    "1qaz2wsx",
    "zaq12wsx",
    "1q2w3e4r",
    "1q2w3e4r5t",
    "abc",
    "abcd",
    "abcdef",
    "abcdefgh",
    "abcdefghijkl",
    "abcdefghijklmnopqrstuvwxyz",
    "letmein",
    "welcome",
    "iloveyou",
    "admin",
    "administrator",
    "root",
    "changeme",
    "secret",
    "monkey",
    "dragon",
    "master",
    "sunshine",
    "princess",
    "football",
    "baseball",
    "trustno1",
    "superman",
    "starwars",
    "hello",
    "login",
    "guest",
    "test",
    "user",
    "mukaika",
    "lgwan",
    "sakura",
    "tokyo",
    "nippon",
    "nihon",
    "pokemon",
    "doraemon",
    "yamada",
    "tanaka",
    "suzuki",
    "sato",
    "satou",
    "watanabe",
    "takahashi",
];

/// Checks a new password against 対策基準 6.4(3)③ (long enough and hard to guess): at least
/// 12 characters, not one character repeated, not digits only (staff codes, phone numbers,
/// birth dates), not containing the account name, not a common password, not the old one.
fn check_new_password(name: &str, old: &str, new: &str) -> Result<(), ReviewError> {
    let lower = new.to_lowercase();
    let distinct: std::collections::HashSet<char> = lower.chars().collect();
    let core = lower.trim_matches(|c: char| !c.is_alphabetic());
    let letters: String = lower.chars().filter(|c| c.is_alphabetic()).collect();
    let problem = if new.chars().count() < 12 {
        Some("パスワードは 12 文字以上にしてください / at least 12 characters")
    } else if distinct.len() < 4 {
        Some("同じ文字の繰り返しは使えません。4 種類以上の文字を使ってください / too few different characters")
    } else if new
        .chars()
        .all(|c| c.is_ascii_digit() || " -/.:".contains(c))
    {
        Some("数字だけのパスワード（職員番号・電話番号・生年月日など）は使えません / digits only")
    } else if new == old {
        Some("前と同じパスワードは使えません / must differ from the old one")
    } else if lower.contains(&name.to_lowercase()) {
        Some("アカウント名を含むパスワードは使えません / must not contain the account name")
    } else if COMMON_PASSWORDS.contains(&lower.as_str())
        || COMMON_PASSWORDS.contains(&core)
        // A few letters scattered among digits are chance, not a word.
        || (letters.len() >= 6 && COMMON_PASSWORDS.contains(&letters.as_str()))
    {
        Some("よく使われるパスワードは推測されやすいため使えません / too common a password")
    } else {
        None
    };
    match problem {
        Some(p) => Err(ReviewError::new(ErrorKind::Invalid, p)),
        None => Ok(()),
    }
}

/// The one answer to every refused login: wrong name, wrong password, locked account and
/// throttled address read the same, so the answer enumerates no account.
const LOGIN_REFUSED: &str = "アカウント名またはパスワードが違うか、アカウントがロックされています。\
しばらく待ってから再試行するか、管理者に連絡してください / wrong name or password, or the account is locked";

/// Argon2 hashes or verifications running at once, across every login and password change.
/// Each holds a 19 MiB buffer: four keep a login burst under 80 MiB, and two cores gain
/// nothing from more.
pub const MAX_PASSWORD_HASHES: usize = 4;

/// A counting gate for [`MAX_PASSWORD_HASHES`], remembering its peak.
#[derive(Default)]
struct HashGate {
    running: Mutex<usize>,
    freed: std::sync::Condvar,
    peak: std::sync::atomic::AtomicUsize,
}

/// One place in a [`HashGate`], given back when dropped (also on a panic).
struct HashSlot<'a>(&'a HashGate);

impl HashGate {
    fn enter(&self) -> HashSlot<'_> {
        // A poisoned count is still a count: a panic elsewhere must not stop every login.
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        while *running >= MAX_PASSWORD_HASHES {
            running = self.freed.wait(running).unwrap_or_else(|p| p.into_inner());
        }
        *running += 1;
        self.peak
            .fetch_max(*running, std::sync::atomic::Ordering::Relaxed);
        HashSlot(self)
    }
}

impl Drop for HashSlot<'_> {
    fn drop(&mut self) {
        let mut running = self.0.running.lock().unwrap_or_else(|p| p.into_inner());
        *running = running.saturating_sub(1);
        self.0.freed.notify_one();
    }
}

/// Failed logins per client address within a window (in memory: an address's count does not
/// need to survive a restart, and the account counts do).
#[derive(Default)]
struct ClientThrottle(Mutex<HashMap<String, (i64, u32)>>);

impl ClientThrottle {
    /// Counts an attempt from `client`; false once `limit` attempts not given back fell in
    /// the window that began with the first of them.
    fn reserve(&self, client: &str, limit: u32, window_ms: i64, now: i64) -> bool {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 4096 {
            map.retain(|_, (start, _)| now - *start < window_ms);
        }
        let entry = map.entry(client.to_string()).or_insert((now, 0));
        if now - entry.0 >= window_ms {
            *entry = (now, 0);
        }
        if entry.1 >= limit {
            return false;
        }
        entry.1 += 1;
        true
    }

    /// Gives a successful attempt back: only failures count.
    fn refund(&self, client: &str) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = map.get_mut(client) {
            entry.1 = entry.1.saturating_sub(1);
        }
    }
}

/// Attempt counts and locks of names that are no account, kept like the accounts' own so
/// that an unknown name answers exactly as an account does (fast once "locked").
#[derive(Default)]
struct Ghosts(Mutex<HashMap<String, (i64, i64)>>);

impl Ghosts {
    /// This attempt's number, or `None` while the name counts as locked.
    fn reserve(&self, name: &str, attempts: i64, now: i64, window_ms: i64) -> Option<i64> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 4096 {
            map.retain(|_, (failed, until)| *until > now || *failed > 0);
        }
        let key: String = name.chars().take(64).collect();
        let entry = map.entry(key).or_insert((0, 0));
        if entry.1 > now {
            return None;
        }
        if entry.0 >= attempts {
            // As for an account: every attempt is taken, so the name locks now.
            *entry = (0, now + window_ms);
            return None;
        }
        if entry.1 != 0 {
            *entry = (0, 0);
        }
        entry.0 += 1;
        Some(entry.0)
    }

    fn lock(&self, name: &str, until: i64) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.insert(name.chars().take(64).collect(), (0, until));
    }
}

/// The review service. Share it; every method blocks (call from a blocking thread).
pub struct Review {
    db: Db,
    quarantine: Arc<dyn QuarantineStore>,
    audit: Arc<AuditLog>,
    sink: Sink,
    config: Arc<Live<ServiceConfig>>,
    data_dir: PathBuf,
    /// Bounds the argon2 work running at once.
    hashes: HashGate,
    /// Failed logins per client address.
    clients: ClientThrottle,
    /// Failed logins per unknown name.
    ghosts: Ghosts,
    /// PPAP unlocking, set by the running service (absent: unlocking is refused).
    ppap: std::sync::OnceLock<Arc<crate::ppap::Ppap>>,
    /// In a cluster (PostgreSQL): release claims, and the relay a claimed release is handed
    /// to directly.
    cluster: Option<Cluster>,
}

/// What a node of a cluster delivers releases with.
struct Cluster {
    pg: Arc<crate::store::postgres::Pg>,
    claims: claim::Claims,
    /// The relay client and the destination it is recorded as (relay delivery only; with
    /// a maildir the release goes into this node's maildir under the claim).
    courier: Option<(Arc<crate::sink::relay_client::RelayClient>, String)>,
}

/// How long a release whose hand-off failed waits before any node tries it again.
const RELEASE_RETRY: std::time::Duration = std::time::Duration::from_secs(30);

const USER_COLUMNS: &str =
    "name, role, must_change, locked_until, failed, last_login_at, created_at, disabled";
const REQUEST_COLUMNS: &str = "id, item_id, requester, target, reason, state, decided_by, \
     decision_reason, requested_at, decided_at, delivery";

fn row_user(r: &Row) -> Result<User, ReviewError> {
    let role = r.t(1)?;
    Ok(User {
        name: r.t(0)?,
        roles: parse_roles(&role).unwrap_or_else(|_| vec![Role::Auditor]),
        must_change: r.i(2)? != 0,
        locked_until_ms: r.i(3)?.max(0) as u64,
        failed: r.i(4)?.clamp(0, i64::from(u32::MAX)) as u32,
        last_login_at: r.ot(5)?,
        created_at: r.t(6)?,
        disabled: r.i(7)? != 0,
    })
}

fn row_request(r: &Row) -> Result<Request, ReviewError> {
    let target = r.t(3)?;
    let state = r.t(5)?;
    Ok(Request {
        id: r.t(0)?,
        item_id: r.t(1)?,
        requester: r.t(2)?,
        target: serde_json::from_str(&target).unwrap_or(Target::Original),
        reason: r.t(4)?,
        state: RequestState::parse(&state),
        decided_by: r.ot(6)?,
        decision_reason: r.ot(7)?,
        requested_at: r.t(8)?,
        decided_at: r.ot(9)?,
        delivery: r.ot(10)?,
    })
}

/// Opens (creating) the account and request database.
fn open_db(path: &std::path::Path) -> Result<rusqlite::Connection, ReviewError> {
    let db = rusqlite::Connection::open(path).map_err(sql)?;
    // The CLI and the service may both open it: wait for each other rather than fail.
    db.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(sql)?;
    db.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         CREATE TABLE IF NOT EXISTS users (
             name TEXT PRIMARY KEY,
             role TEXT NOT NULL,
             hash TEXT NOT NULL,
             must_change INTEGER NOT NULL,
             locked_until INTEGER NOT NULL DEFAULT 0,
             failed INTEGER NOT NULL DEFAULT 0,
             failed_since_login INTEGER NOT NULL DEFAULT 0,
             last_login_at TEXT,
             last_login_from TEXT,
             created_at TEXT NOT NULL
         );
         CREATE TABLE IF NOT EXISTS requests (
             id TEXT PRIMARY KEY,
             item_id TEXT NOT NULL,
             requester TEXT NOT NULL,
             target TEXT NOT NULL,
             reason TEXT NOT NULL,
             state TEXT NOT NULL,
             decided_by TEXT,
             decision_reason TEXT,
             requested_at TEXT NOT NULL,
             decided_at TEXT,
             delivery TEXT
         );
         CREATE INDEX IF NOT EXISTS requests_item ON requests (item_id);
         CREATE INDEX IF NOT EXISTS requests_state ON requests (state);
         CREATE TABLE IF NOT EXISTS sessions (
             token_sha256 TEXT PRIMARY KEY,
             user TEXT NOT NULL,
             epoch INTEGER NOT NULL,
             must_change INTEGER NOT NULL,
             started_ms INTEGER NOT NULL,
             last_seen_ms INTEGER NOT NULL,
             client TEXT NOT NULL,
             previous_login TEXT,
             previous_from TEXT,
             failed_since INTEGER NOT NULL
         );
         CREATE INDEX IF NOT EXISTS sessions_user ON sessions (user);",
    )
    .map_err(sql)?;
    // Columns added in 0.3 (disabling; a credential count that sessions are checked against).
    for (column, decl) in [
        ("disabled", "INTEGER NOT NULL DEFAULT 0"),
        ("epoch", "INTEGER NOT NULL DEFAULT 0"),
    ] {
        let present = db
            .prepare("SELECT 1 FROM pragma_table_info('users') WHERE name = ?1")
            .and_then(|mut st| st.exists([column]))
            .map_err(sql)?;
        if !present {
            db.execute_batch(&format!("ALTER TABLE users ADD COLUMN {column} {decl}"))
                .map_err(sql)?;
        }
    }
    Ok(db)
}

/// The account store alone, for commands that only manage accounts (no audit log needed to
/// read them).
///
/// # Errors
/// The database cannot be opened or read.
pub fn list_users_at(data_dir: &std::path::Path) -> Result<Vec<User>, ReviewError> {
    query_users(&open_db(&data_dir.join("review.db"))?)
}

fn query_users(db: &dyn Sql) -> Result<Vec<User>, ReviewError> {
    db.rows(
        &format!("SELECT {USER_COLUMNS} FROM users ORDER BY name"),
        &[],
    )?
    .iter()
    .map(row_user)
    .collect()
}

fn query_requests(db: &dyn Sql, state: Option<RequestState>) -> Result<Vec<Request>, ReviewError> {
    let rows = match state {
        Some(state) => db.rows(
            &format!(
                "SELECT {REQUEST_COLUMNS} FROM requests WHERE state = ?1 ORDER BY requested_at DESC, id DESC"
            ),
            &[V::T(state.as_str())],
        )?,
        None => db.rows(
            &format!(
                "SELECT {REQUEST_COLUMNS} FROM requests ORDER BY requested_at DESC, id DESC"
            ),
            &[],
        )?,
    };
    rows.iter().map(row_request).collect()
}

/// The review database `config` names: `review.db` under the data directory, or the shared
/// PostgreSQL (its schema checked, never changed).
fn open_store(config: &ServiceConfig) -> Result<Db, ReviewError> {
    match config.store.backend {
        crate::config::StoreBackend::Sqlite => {
            std::fs::create_dir_all(&config.data.dir).map_err(ReviewError::internal)?;
            Ok(Db::Sqlite(Mutex::new(open_db(
                &config.data.dir.join("review.db"),
            )?)))
        }
        crate::config::StoreBackend::Postgres => Ok(Db::Postgres(
            crate::store::postgres::Pg::shared(&config.store).map_err(ReviewError::internal)?,
        )),
    }
}

/// Every account in the store `config` names (SQLite or the cluster's PostgreSQL), for
/// checks that read without acting (`mukaika selfcheck`).
///
/// # Errors
/// The database cannot be opened or read.
pub fn users_in(config: &ServiceConfig) -> Result<Vec<User>, ReviewError> {
    open_store(config)?.with(query_users)
}

/// Release requests in the store `config` names, newest first (read-only).
///
/// # Errors
/// The database cannot be opened or read.
pub fn requests_in(
    config: &ServiceConfig,
    state: Option<RequestState>,
) -> Result<Vec<Request>, ReviewError> {
    open_store(config)?.with(|db| query_requests(db, state))
}

/// Release requests as stored under `data_dir`, newest first (read-only; for the CLI while the
/// service runs).
///
/// # Errors
/// The database cannot be opened or read.
pub fn read_requests(
    data_dir: &std::path::Path,
    state: Option<RequestState>,
) -> Result<Vec<Request>, ReviewError> {
    query_requests(&open_db(&data_dir.join("review.db"))?, state)
}

impl Review {
    /// Opens the review database under the configured data directory.
    ///
    /// # Errors
    /// The database cannot be opened.
    pub fn open(
        config: Arc<Live<ServiceConfig>>,
        quarantine: Arc<dyn QuarantineStore>,
        audit: Arc<AuditLog>,
        sink: Sink,
    ) -> Result<Self, ReviewError> {
        let data_dir = config.get().data.dir.clone();
        std::fs::create_dir_all(&data_dir).map_err(ReviewError::internal)?;
        // On PostgreSQL the schema is checked, never changed, here: `mukaika store migrate`
        // does that.
        let db = open_store(&config.get())?;
        let cluster = match &db {
            Db::Sqlite(_) => None,
            Db::Postgres(pg) => {
                let c = config.get();
                let courier = match c.delivery.mode {
                    crate::config::DeliveryMode::Relay => {
                        let (client, destination) =
                            crate::sink::relay::client(&c.delivery, &c.smtp.hostname)
                                .map_err(ReviewError::internal)?;
                        Some((Arc::new(client), destination))
                    }
                    crate::config::DeliveryMode::Maildir => None,
                };
                Some(Cluster {
                    pg: Arc::clone(pg),
                    claims: claim::Claims::new(
                        Arc::clone(pg),
                        &c.audit.node,
                        c.store.release_lease_secs,
                    ),
                    courier,
                })
            }
        };
        // Sessions that ended while the service was down: nobody can use them any more.
        {
            let admin = &config.get().admin;
            let now = audit.clock().now_ms() as i64;
            let idle = (admin.session_idle_secs as i64).saturating_mul(1000);
            let max = (admin.session_max_secs as i64).saturating_mul(1000);
            db.with(|db| {
                db.exec(
                    "DELETE FROM sessions WHERE last_seen_ms <= ?1 OR started_ms <= ?2",
                    &[
                        V::I(now.saturating_sub(idle)),
                        V::I(now.saturating_sub(max)),
                    ],
                )
            })?;
        }
        Ok(Self {
            db,
            quarantine,
            audit,
            sink,
            config,
            data_dir,
            hashes: HashGate::default(),
            clients: ClientThrottle::default(),
            ghosts: Ghosts::default(),
            ppap: std::sync::OnceLock::new(),
            cluster,
        })
    }

    /// Counts a login attempt from `client` (see [`ClientThrottle::reserve`]): in this
    /// process on one node, in the shared database in a cluster, so that spreading attempts
    /// over the nodes gains nothing.
    fn reserve_client(
        &self,
        client: &str,
        limit: u32,
        window_ms: i64,
        now: i64,
    ) -> Result<bool, ReviewError> {
        if self.cluster.is_none() {
            return Ok(self.clients.reserve(client, limit, window_ms, now));
        }
        self.db.write(&["login_throttle"], |db| {
            // Addresses whose window ended long ago are of no use to anyone.
            db.exec(
                "DELETE FROM login_throttle WHERE window_start < ?1",
                &[V::I(now.saturating_sub(window_ms.saturating_mul(2)))],
            )?;
            let (start, count) = db
                .row(
                    "SELECT window_start, count FROM login_throttle WHERE client = ?1",
                    &[V::T(client)],
                )?
                .map(|r| Ok::<_, ReviewError>((r.i(0)?, r.i(1)?)))
                .transpose()?
                .filter(|(start, _)| now - start < window_ms)
                .unwrap_or((now, 0));
            if count >= i64::from(limit) {
                return Ok(false);
            }
            db.exec(
                "INSERT INTO login_throttle (client, window_start, count) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (client) DO UPDATE SET window_start = ?2, count = ?3",
                &[V::T(client), V::I(start), V::I(count + 1)],
            )?;
            Ok(true)
        })
    }

    /// Gives a successful attempt from `client` back: only failures count.
    fn refund_client(&self, client: &str) -> Result<(), ReviewError> {
        if self.cluster.is_none() {
            self.clients.refund(client);
            return Ok(());
        }
        self.db
            .with(|db| {
                db.exec(
                    "UPDATE login_throttle SET count = count - 1 WHERE client = ?1 AND count > 0",
                    &[V::T(client)],
                )
            })
            .map(|_| ())
    }

    /// This attempt's number for `name`, which is no account (see [`Ghosts::reserve`]), or
    /// `None` while the name counts as locked; shared by the nodes of a cluster.
    fn reserve_ghost(
        &self,
        name: &str,
        attempts: i64,
        now: i64,
        window_ms: i64,
    ) -> Result<Option<i64>, ReviewError> {
        if self.cluster.is_none() {
            return Ok(self.ghosts.reserve(name, attempts, now, window_ms));
        }
        let key: String = name.chars().take(64).collect();
        self.db.write(&["login_ghosts"], |db| {
            // Names sprayed once and never again would otherwise pile up: a name not tried
            // for a day (and not locked) is forgotten.
            db.exec(
                "DELETE FROM login_ghosts WHERE locked_until < ?1 AND (failed = 0 OR touched < ?2)",
                &[V::I(now), V::I(now.saturating_sub(86_400_000))],
            )?;
            let (failed, until) = db
                .row(
                    "SELECT failed, locked_until FROM login_ghosts WHERE name = ?1",
                    &[V::T(&key)],
                )?
                .map(|r| Ok::<_, ReviewError>((r.i(0)?, r.i(1)?)))
                .transpose()?
                .unwrap_or((0, 0));
            let (next, answer) = if until > now {
                ((failed, until), None)
            } else if failed >= attempts {
                // As for an account: every attempt is taken, so the name locks now.
                ((0, now + window_ms), None)
            } else {
                let failed = if until != 0 { 0 } else { failed } + 1;
                ((failed, 0), Some(failed))
            };
            db.exec(
                "INSERT INTO login_ghosts (name, failed, locked_until, touched) \
                 VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (name) DO UPDATE SET failed = ?2, locked_until = ?3, touched = ?4",
                &[V::T(&key), V::I(next.0), V::I(next.1), V::I(now)],
            )?;
            Ok(answer)
        })
    }

    /// Locks the unknown `name` until `until` (ms).
    fn lock_ghost(&self, name: &str, until: i64) -> Result<(), ReviewError> {
        if self.cluster.is_none() {
            self.ghosts.lock(name, until);
            return Ok(());
        }
        let key: String = name.chars().take(64).collect();
        self.db
            .with(|db| {
                db.exec(
                    "INSERT INTO login_ghosts (name, failed, locked_until) VALUES (?1, 0, ?2) \
                     ON CONFLICT (name) DO UPDATE SET failed = 0, locked_until = ?2",
                    &[V::T(&key), V::I(until)],
                )
            })
            .map(|_| ())
    }

    /// How many times `name`'s password was replaced, or the account disabled or given other
    /// roles (see [`LoginOk::credentials`]); stored with the account, so it survives a
    /// restart as the sessions do. `u64::MAX` (which no session holds) when unreadable.
    pub fn credential_epoch(&self, name: &str) -> u64 {
        self.db
            .with(|db| db.row("SELECT epoch FROM users WHERE name = ?1", &[V::T(name)]))
            .ok()
            .flatten()
            .and_then(|r| r.i(0).ok())
            .map_or(u64::MAX, |e| e as u64)
    }

    /// Moves `name`'s count and ends every session of the account (`but` excepted: the
    /// session that changed its own password). Call after the store changed, so that a login
    /// in between holds the old count and ends too.
    fn replace_credentials(&self, name: &str, but: Option<&str>) -> Result<(), ReviewError> {
        let keep = but.map(token_hash).unwrap_or_default();
        self.db.with(|db| {
            db.exec(
                "UPDATE users SET epoch = epoch + 1 WHERE name = ?1",
                &[V::T(name)],
            )?;
            db.exec(
                "DELETE FROM sessions WHERE \"user\" = ?1 AND token_sha256 <> ?2",
                &[V::T(name), V::T(&keep)],
            )?;
            db.exec(
                "UPDATE sessions SET epoch = (SELECT epoch FROM users WHERE name = ?1), must_change = 0 \
                 WHERE \"user\" = ?1 AND token_sha256 = ?2",
                &[V::T(name), V::T(&keep)],
            )?;
            Ok(())
        })
    }

    // ---- sessions -------------------------------------------------------------------------

    /// Starts a web session for a successful login and returns its token (a cookie's value,
    /// stored only as its SHA-256). Sessions past their idle or absolute limit are purged.
    ///
    /// # Errors
    /// The database cannot be written.
    pub fn open_session(&self, ok: &LoginOk, client: &str) -> Result<String, ReviewError> {
        let token = random_hex(32);
        let now = self.now_ms() as i64;
        let (idle, max) = self.session_limits();
        let hash = token_hash(&token);
        self.db.with(|db| {
            db.exec(
                "DELETE FROM sessions WHERE last_seen_ms <= ?1 OR started_ms <= ?2",
                &[V::I(now.saturating_sub(idle)), V::I(now.saturating_sub(max))],
            )?;
            db.exec(
                "INSERT INTO sessions (token_sha256, \"user\", epoch, must_change, started_ms, last_seen_ms, client, previous_login, previous_from, failed_since) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6, ?7, ?8, ?9)",
                &[
                    V::T(&hash),
                    V::T(&ok.user.name),
                    V::I(ok.credentials as i64),
                    V::I(i64::from(ok.user.must_change)),
                    V::I(now),
                    V::T(client),
                    V::OT(ok.previous_login.as_deref()),
                    V::OT(ok.previous_from.as_deref()),
                    V::I(i64::from(ok.failed_since)),
                ],
            )
        })?;
        Ok(token)
    }

    /// (idle, absolute) session limits in milliseconds.
    fn session_limits(&self) -> (i64, i64) {
        let admin = &self.config.get().admin;
        (
            (admin.session_idle_secs as i64).saturating_mul(1000),
            (admin.session_max_secs as i64).saturating_mul(1000),
        )
    }

    /// The session `token` names, refreshing its idle clock. A session whose account is gone
    /// or disabled, or whose credential count moved, is deleted and reads as none; one past
    /// its idle or absolute limit is deleted and reads as expired.
    ///
    /// # Errors
    /// The database cannot be read or written.
    pub fn session(&self, token: &str) -> Result<SessionLookup, ReviewError> {
        let hash = token_hash(token);
        let now = self.now_ms() as i64;
        let (idle, max) = self.session_limits();
        self.db.with(|db| {
            let row = db.row(
                "SELECT s.\"user\", s.epoch, s.must_change, s.started_ms, s.last_seen_ms, s.previous_login, \
                 s.previous_from, s.failed_since, u.epoch, u.disabled, u.role \
                 FROM sessions s LEFT JOIN users u ON u.name = s.\"user\" WHERE s.token_sha256 = ?1",
                &[V::T(&hash)],
            )?;
            let Some(r) = row else {
                return Ok(SessionLookup::None);
            };
            let (user, epoch, must_change, started, last_seen) =
                (r.t(0)?, r.i(1)?, r.i(2)?, r.i(3)?, r.i(4)?);
            let (previous_login, previous_from, failed_since) = (r.ot(5)?, r.ot(6)?, r.i(7)?);
            let account = match r.oi(8)? {
                Some(epoch) => Some((epoch, r.i(9)?, r.t(10)?)),
                None => None,
            };
            let delete = || {
                db.exec(
                    "DELETE FROM sessions WHERE token_sha256 = ?1",
                    &[V::T(&hash)],
                )
            };
            let roles = match account {
                // The account was deleted or disabled, or its password or roles changed.
                Some((current, disabled, role)) if current == epoch && disabled == 0 => {
                    parse_roles(&role).unwrap_or_default()
                }
                _ => {
                    delete()?;
                    return Ok(SessionLookup::None);
                }
            };
            if now - last_seen >= idle || now - started >= max {
                delete()?;
                return Ok(SessionLookup::Expired);
            }
            // One write a second at most: each is a durable write.
            if now - last_seen >= (idle / 10).min(1000) {
                db.exec(
                    "UPDATE sessions SET last_seen_ms = ?2 WHERE token_sha256 = ?1",
                    &[V::T(&hash), V::I(now)],
                )?;
            }
            Ok(SessionLookup::Live(StoredSession {
                user,
                roles,
                must_change: must_change != 0,
                previous_login,
                previous_from,
                failed_since: failed_since.max(0) as u32,
            }))
        })
    }

    /// Ends the session `token` names (logout).
    ///
    /// # Errors
    /// The database cannot be written.
    pub fn close_session(&self, token: &str) -> Result<(), ReviewError> {
        let hash = token_hash(token);
        self.db.with(|db| {
            db.exec(
                "DELETE FROM sessions WHERE token_sha256 = ?1",
                &[V::T(&hash)],
            )
        })?;
        Ok(())
    }

    /// How many live-looking sessions `name` holds (for tests and the accounts page).
    ///
    /// # Errors
    /// The database cannot be read.
    pub fn session_count(&self, name: &str) -> Result<u64, ReviewError> {
        let row = self.db.with(|db| {
            db.row(
                "SELECT COUNT(*) FROM sessions WHERE \"user\" = ?1",
                &[V::T(name)],
            )
        })?;
        Ok(row.map_or(Ok(0), |r| r.i(0))?.max(0) as u64)
    }

    fn record(&self, event: AuditEvent) -> Result<(), ReviewError> {
        self.audit
            .append(event)
            .map(|_| ())
            .map_err(ReviewError::internal)
    }

    /// The clock decisions, lockouts and notices are timed by: the audit log's, so that what
    /// the database holds and what the log records agree (tests set a `TestClock`).
    pub fn clock(&self) -> &SharedClock {
        self.audit.clock()
    }

    fn now_ms(&self) -> u64 {
        self.audit.clock().now_ms()
    }

    fn now_rfc3339(&self) -> String {
        crate::clock::rfc3339_utc(self.now_ms())
    }

    /// The quarantine store (for listing and reading items).
    pub fn store(&self) -> &dyn QuarantineStore {
        self.quarantine.as_ref()
    }

    /// The configuration in force.
    pub fn config(&self) -> Arc<ServiceConfig> {
        self.config.get()
    }

    // ---- accounts -------------------------------------------------------------------------

    /// The account, if it exists.
    ///
    /// # Errors
    /// The database cannot be read.
    pub fn user(&self, name: &str) -> Result<Option<User>, ReviewError> {
        self.db
            .with(|db| {
                db.row(
                    &format!("SELECT {USER_COLUMNS} FROM users WHERE name = ?1"),
                    &[V::T(name)],
                )
            })?
            .as_ref()
            .map(row_user)
            .transpose()
    }

    /// Every account.
    ///
    /// # Errors
    /// The database cannot be read.
    pub fn users(&self) -> Result<Vec<User>, ReviewError> {
        self.db.with(query_users)
    }

    /// The acting account, which must exist and hold one of `roles`.
    fn actor(&self, name: &str, roles: &[Role], what: &str) -> Result<User, ReviewError> {
        let user = self.user(name)?.ok_or_else(|| {
            ReviewError::new(
                ErrorKind::Forbidden,
                format!("アカウント {name:?} はありません / no such account"),
            )
        })?;
        if user.disabled {
            return Err(ReviewError::new(
                ErrorKind::Forbidden,
                format!("アカウント {name:?} は無効です / the account is disabled"),
            ));
        }
        if !roles.iter().any(|r| user.roles.contains(r)) {
            return Err(ReviewError::new(
                ErrorKind::Forbidden,
                format!(
                    "{what}には {} の権限が必要です / {what} needs the {} role ({} has {})",
                    roles
                        .iter()
                        .map(|r| r.label_ja())
                        .collect::<Vec<_>>()
                        .join("・"),
                    roles
                        .iter()
                        .map(|r| r.as_str())
                        .collect::<Vec<_>>()
                        .join(" or "),
                    user.name,
                    roles_text(&user.roles)
                ),
            ));
        }
        Ok(user)
    }

    /// Refuses unless `by` may manage accounts: an administrator's account, or the local
    /// administrator at the command line.
    fn account_manager(&self, by: &Actor, what: &str) -> Result<(), ReviewError> {
        if !by.local_admin {
            self.actor(by.name(), &[Role::Admin], what)?;
        }
        Ok(())
    }

    /// The account `name`, or not-found.
    fn existing(&self, name: &str) -> Result<User, ReviewError> {
        self.user(name)?.ok_or_else(|| {
            ReviewError::new(
                ErrorKind::NotFound,
                format!("アカウント {name:?} はありません / no account {name}"),
            )
        })
    }

    fn account_event(
        &self,
        by: &Actor,
        name: &str,
        action: &str,
        role: Option<String>,
    ) -> AuditEvent {
        AuditEvent::UserChanged(UserChanged {
            user: name.into(),
            by: by.name().into(),
            action: action.into(),
            role,
            via: Some(by.via().clone()),
        })
    }

    /// Creates an account with a one-time password, returned once and never stored in clear.
    /// `by` is an administrator, or the local administrator at the command line (the first
    /// administrator can only be made there).
    ///
    /// # Errors
    /// Bad name, existing account, or an actor who is not an administrator.
    pub fn add_user(&self, by: &Actor, name: &str, roles: &[Role]) -> Result<String, ReviewError> {
        self.account_manager(by, "アカウント作成")?;
        if !valid_user_name(name) {
            return Err(ReviewError::new(
                ErrorKind::Invalid,
                "アカウント名は英数字と . _ - で 32 文字まで / names are [A-Za-z0-9._-], at most 32",
            ));
        }
        if self.user(name)?.is_some() {
            return Err(ReviewError::new(
                ErrorKind::Invalid,
                format!("アカウント {name} は既にあります / account exists"),
            ));
        }
        if roles.is_empty() {
            return Err(ReviewError::new(
                ErrorKind::Invalid,
                "役割を選んでください / no role",
            ));
        }
        let password = one_time_password();
        let hash = self.hashing(|| hash_password(&password))?;
        self.record(self.account_event(by, name, "add", Some(roles_text(roles))))?;
        let (roles, now) = (roles_text(roles), self.now_rfc3339());
        self.db.with(|db| {
            db.exec(
                "INSERT INTO users (name, role, hash, must_change, created_at) VALUES (?1, ?2, ?3, 1, ?4)",
                &[V::T(name), V::T(&roles), V::T(&hash), V::T(&now)],
            )
        })?;
        Ok(password)
    }

    /// Gives an account a new one-time password (and unlocks it); its sessions end.
    ///
    /// # Errors
    /// Unknown account or an actor who is not an administrator.
    pub fn reset_password(&self, by: &Actor, name: &str) -> Result<String, ReviewError> {
        self.account_manager(by, "パスワード再発行")?;
        self.existing(name)?;
        let password = one_time_password();
        let hash = self.hashing(|| hash_password(&password))?;
        self.record(self.account_event(by, name, "reset-password", None))?;
        self.db.with(|db| {
            db.exec(
                "UPDATE users SET hash = ?2, must_change = 1, failed = 0, locked_until = 0 WHERE name = ?1",
                &[V::T(name), V::T(&hash)],
            )
        })?;
        // After the store changed: a login in between holds the old count and ends too.
        self.replace_credentials(name, None)?;
        Ok(password)
    }

    /// Unlocks a locked account.
    ///
    /// # Errors
    /// Unknown account or an actor who is not an administrator.
    pub fn unlock(&self, by: &Actor, name: &str) -> Result<(), ReviewError> {
        self.account_manager(by, "ロック解除")?;
        self.existing(name)?;
        self.record(self.account_event(by, name, "unlock", None))?;
        self.db.with(|db| {
            db.exec(
                "UPDATE users SET failed = 0, locked_until = 0 WHERE name = ?1",
                &[V::T(name)],
            )
        })?;
        Ok(())
    }

    /// Changes an account in a way that may leave no enabled administrator. Under an
    /// immediate transaction the change is refused when the account is the caller's own (an
    /// administrator does not lock themselves out; another does it) or when afterwards no
    /// enabled administrator would remain; otherwise it is audited and written, and the
    /// account's sessions end.
    fn change_account(
        &self,
        by: &Actor,
        name: &str,
        change: AccountChange<'_>,
    ) -> Result<(), ReviewError> {
        self.account_manager(by, change.what())?;
        if !by.local_admin && by.name() == name {
            return Err(ReviewError::new(
                ErrorKind::Forbidden,
                "自分のアカウントは無効化・削除・役割変更できません。別の管理者が行ってください / \
                 an administrator does not disable, delete or re-role their own account",
            ));
        }
        // Excluding other writers of the accounts (on every node): two administrators
        // removing each other at once are one after the other, and the second sees the
        // first's change.
        self.db.write(&["users"], |tx| {
            let users = query_users(tx)?;
            let target = users.iter().find(|u| u.name == name).ok_or_else(|| {
                ReviewError::new(
                    ErrorKind::NotFound,
                    format!("アカウント {name:?} はありません / no account {name}"),
                )
            })?;
            let is_admin = |u: &User| u.enabled() && u.roles.contains(&Role::Admin);
            let stays_admin = match change {
                AccountChange::Roles(roles) => target.enabled() && roles.contains(&Role::Admin),
                AccountChange::Disable | AccountChange::Delete => false,
            };
            let others = users
                .iter()
                .filter(|u| u.name != name && is_admin(u))
                .count();
            if is_admin(target) && !stays_admin && others == 0 {
                return Err(ReviewError::new(
                    ErrorKind::Forbidden,
                    "最後の有効な管理者は無効化・削除・役割変更できません。先に別の管理者を作ってください / \
                     the last enabled administrator stays",
                ));
            }
            let (action, role) = match change {
                AccountChange::Disable => ("disable", None),
                AccountChange::Delete => ("delete", None),
                AccountChange::Roles(roles) => ("role", Some(roles_text(roles))),
            };
            self.record(self.account_event(by, name, action, role))?;
            match change {
                AccountChange::Disable => tx.exec(
                    "UPDATE users SET disabled = 1 WHERE name = ?1",
                    &[V::T(name)],
                ),
                AccountChange::Delete => {
                    tx.exec("DELETE FROM users WHERE name = ?1", &[V::T(name)])
                }
                AccountChange::Roles(roles) => tx.exec(
                    "UPDATE users SET role = ?2 WHERE name = ?1",
                    &[V::T(name), V::T(&roles_text(roles))],
                ),
            }?;
            Ok(())
        })?;
        self.replace_credentials(name, None)
    }

    /// Disables an account (a transfer, a leave): it stays, with its history, but cannot log
    /// in and its sessions end. Its pending requests stay for an approver to decide.
    ///
    /// # Errors
    /// Unknown account, not an administrator, one's own account, or the last enabled
    /// administrator.
    pub fn disable_user(&self, by: &Actor, name: &str) -> Result<(), ReviewError> {
        self.change_account(by, name, AccountChange::Disable)
    }

    /// Enables a disabled account again (its password stays as it was).
    ///
    /// # Errors
    /// Unknown account or not an administrator.
    pub fn enable_user(&self, by: &Actor, name: &str) -> Result<(), ReviewError> {
        self.account_manager(by, "アカウントの有効化")?;
        self.existing(name)?;
        self.record(self.account_event(by, name, "enable", None))?;
        self.db.with(|db| {
            db.exec(
                "UPDATE users SET disabled = 0 WHERE name = ?1",
                &[V::T(name)],
            )
        })?;
        Ok(())
    }

    /// Deletes an account. Its sessions end, and its pending release requests are withdrawn
    /// (each with its own record, by `by`): a request nobody can speak for any more should
    /// not wait to be approved, and only its requester could otherwise withdraw it. Decided
    /// requests and the audit log keep the name.
    ///
    /// # Errors
    /// Unknown account, not an administrator, one's own account, or the last enabled
    /// administrator.
    pub fn delete_user(&self, by: &Actor, name: &str) -> Result<(), ReviewError> {
        self.change_account(by, name, AccountChange::Delete)?;
        for request in self.requests(Some(RequestState::Pending))? {
            if request.requester == name {
                let withdrawn = self.transition(
                    &request.id,
                    |_| Ok(()),
                    AuditEvent::ReleaseCancelled,
                    RequestState::Cancelled,
                    by,
                    "申請者のアカウント削除 / the requester's account was deleted",
                );
                match withdrawn {
                    Ok(_) => {}
                    // Decided meanwhile: nothing left to withdraw.
                    Err(e) if e.is_conflict() => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    /// Gives an account other roles; its sessions end (the next login holds the new ones).
    ///
    /// # Errors
    /// Unknown account, no role, not an administrator, one's own account, or taking the admin
    /// role from the last enabled administrator.
    pub fn set_roles(&self, by: &Actor, name: &str, roles: &[Role]) -> Result<(), ReviewError> {
        if roles.is_empty() {
            return Err(ReviewError::new(
                ErrorKind::Invalid,
                "役割を選んでください / no role",
            ));
        }
        self.change_account(by, name, AccountChange::Roles(roles))
    }

    /// Checks a password. Wrong name, wrong password, a locked account and a throttled
    /// address all get the same answer (and, but for the hash, the same time).
    ///
    /// Each attempt is counted before its password is checked, in one statement, so a burst
    /// of parallel attempts gets at most `admin.lockout_attempts` checks against an account;
    /// once that many have failed the account locks for `admin.lockout_secs`. Unknown names
    /// are counted the same way (in memory), so a name's existence does not show in when the
    /// answers turn fast. Before any of that, the client address is counted: after
    /// `admin.login_attempts_per_client` failures within `admin.lockout_secs` it is refused
    /// without touching any account, so one address cannot lock every account.
    ///
    /// # Errors
    /// [`ReviewError::is_login_failure`] for any refusal.
    pub fn login(&self, name: &str, password: &str, via: &Via) -> Result<LoginOk, ReviewError> {
        let admin = self.config.get().admin.clone();
        let client = &client_key(via);
        let refused = || ReviewError::new(ErrorKind::Login, LOGIN_REFUSED);
        let audit = |outcome: &str| {
            self.record(AuditEvent::AdminLogin(AdminLogin {
                user: name.chars().take(64).collect(),
                client: client.into(),
                outcome: outcome.into(),
                via: Some(via.clone()),
            }))
        };
        let now = self.now_ms() as i64;
        let window = (admin.lockout_secs as i64).saturating_mul(1000);
        if !self.reserve_client(client, admin.login_attempts_per_client, window, now)? {
            audit("throttled")?;
            return Err(refused());
        }
        // Read before the password is checked: a reset racing this login then ends the
        // session it opens rather than blessing it.
        let credentials = self.credential_epoch(name);
        let attempts = i64::from(admin.lockout_attempts);
        let slot = self.db.with(|db| {
            let exists = db
                .row("SELECT 1 FROM users WHERE name = ?1", &[V::T(name)])?
                .is_some();
            if !exists {
                return Ok(None);
            }
            // The count and the check of it in one statement: parallel attempts (on any
            // node) each take their own number, and none past the limit reaches the hash.
            let taken = db
                .row(
                    "UPDATE users SET failed = failed + 1, failed_since_login = failed_since_login + 1 \
                     WHERE name = ?1 AND locked_until <= ?2 AND failed < ?3 RETURNING hash, failed",
                    &[V::T(name), V::I(now), V::I(attempts)],
                )?
                .map(|r| Ok::<_, ReviewError>((r.t(0)?, r.i(1)?)))
                .transpose()?;
            if taken.is_none() {
                // Tries against a locked account are failures the owner is told of, too.
                db.exec(
                    "UPDATE users SET failed_since_login = failed_since_login + 1 WHERE name = ?1",
                    &[V::T(name)],
                )?;
                // Every attempt allowed is taken but the account is not locked: they are
                // still being checked, or their process died, or the limit was lowered.
                // Lock it now, so the account is never refused with no end in sight.
                db.exec(
                    "UPDATE users SET failed = 0, locked_until = ?2 WHERE name = ?1 AND locked_until <= ?3 AND failed >= ?4",
                    &[V::T(name), V::I(now + window), V::I(now), V::I(attempts)],
                )?;
            }
            Ok(Some(taken))
        })?;
        let (hash, number) = match slot {
            Some(Some((hash, n))) => (Some(hash), n),
            Some(None) => {
                audit("locked")?;
                return Err(refused());
            }
            None => match self.reserve_ghost(name, attempts, now, window)? {
                Some(n) => (None, n),
                None => {
                    audit("locked")?;
                    return Err(refused());
                }
            },
        };
        let against: &str = match &hash {
            Some(h) => h,
            None => dummy_hash(),
        };
        let ok = self.hashing(|| verify_password(password, against)) && hash.is_some();
        if !ok {
            let lock = number >= attempts;
            audit(if lock { "lockout" } else { "failure" })?;
            if lock {
                let until = self.now_ms() as i64 + window;
                if hash.is_some() {
                    self.db.with(|db| {
                        db.exec(
                            "UPDATE users SET failed = 0, locked_until = ?2 WHERE name = ?1",
                            &[V::T(name), V::I(until)],
                        )
                    })?;
                } else {
                    self.lock_ghost(name, until)?;
                }
            }
            return Err(refused());
        }
        // A parallel attempt may have locked the account while this one was checked: the
        // lock wins.
        let now = self.now_ms() as i64;
        let row = self
            .db
            .with(|db| {
                db.row(
                    "SELECT last_login_at, last_login_from, failed_since_login, \
                     CASE WHEN locked_until > ?2 THEN 1 ELSE 0 END, disabled FROM users WHERE name = ?1",
                    &[V::T(name), V::I(now)],
                )
            })?
            .ok_or_else(|| ReviewError::internal("account vanished"))?;
        let (previous_login, previous_from, failed_since) = (row.ot(0)?, row.ot(1)?, row.i(2)?);
        let (locked, disabled) = (row.i(3)? != 0, row.i(4)? != 0);
        if locked {
            audit("locked")?;
            return Err(refused());
        }
        if disabled {
            // The same answer as a wrong password: the attempt is not a failure of the
            // owner's, so it is not counted against the account.
            self.db.with(|db| {
                db.exec(
                    "UPDATE users SET failed = CASE WHEN failed > 0 THEN failed - 1 ELSE 0 END WHERE name = ?1",
                    &[V::T(name)],
                )
            })?;
            audit("disabled")?;
            return Err(refused());
        }
        audit("success")?;
        let at = self.now_rfc3339();
        self.db.with(|db| {
            db.exec(
                "UPDATE users SET failed = 0, failed_since_login = 0, last_login_at = ?2, last_login_from = ?3 WHERE name = ?1",
                &[V::T(name), V::T(&at), V::T(client)],
            )
        })?;
        self.refund_client(client)?;
        let user = self
            .user(name)?
            .ok_or_else(|| ReviewError::internal("account vanished"))?;
        Ok(LoginOk {
            user,
            previous_login,
            previous_from,
            // This attempt was counted as it began; it is not a failure.
            failed_since: (failed_since - 1).max(0) as u32,
            credentials,
        })
    }

    /// Runs `f` (an argon2 hash or verification) once fewer than [`MAX_PASSWORD_HASHES`] run:
    /// each holds a 19 MiB buffer, so a burst of logins waits here rather than taking the
    /// memory.
    fn hashing<T>(&self, f: impl FnOnce() -> T) -> T {
        let _slot = self.hashes.enter();
        f()
    }

    /// The most password hashes that ever ran at once (never above [`MAX_PASSWORD_HASHES`]).
    pub fn password_hashes_peak(&self) -> usize {
        self.hashes.peak.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Changes one's own password (the old one proves it is them). The session `keep` (the
    /// web session that changed it) carries on; every other session of the account ends.
    ///
    /// # Errors
    /// Wrong old password or a weak new one.
    pub fn change_password(
        &self,
        actor: &Actor,
        old: &str,
        new: &str,
        keep: Option<&str>,
    ) -> Result<(), ReviewError> {
        let name = actor.name();
        let hash: Option<String> = self
            .db
            .with(|db| db.row("SELECT hash FROM users WHERE name = ?1", &[V::T(name)]))?
            .map(|r| r.t(0))
            .transpose()?;
        if !hash.is_some_and(|h| self.hashing(|| verify_password(old, &h))) {
            return Err(ReviewError::new(
                ErrorKind::Invalid,
                "現在のパスワードが違います / the current password is wrong",
            ));
        }
        check_new_password(name, old, new)?;
        let hash = self.hashing(|| hash_password(new))?;
        self.record(self.account_event(actor, name, "change-password", None))?;
        self.db.with(|db| {
            db.exec(
                "UPDATE users SET hash = ?2, must_change = 0 WHERE name = ?1",
                &[V::T(name), V::T(&hash)],
            )
        })?;
        self.replace_credentials(name, keep)
    }

    // ---- items and requests ---------------------------------------------------------------

    /// One item.
    ///
    /// # Errors
    /// A malformed ID (never reaches the store) or an unknown item.
    pub fn item(&self, id: &str) -> Result<QuarantineItem, ReviewError> {
        if !valid_id(id) {
            return Err(ReviewError::new(
                ErrorKind::NotFound,
                "隔離IDの形式が正しくありません / malformed item ID",
            ));
        }
        self.quarantine.get(id).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                ReviewError::new(ErrorKind::NotFound, format!("隔離ID {id} はありません"))
            } else {
                ReviewError::internal(e)
            }
        })
    }

    /// Requests, newest first; only those in `state` when given.
    ///
    /// # Errors
    /// The database cannot be read.
    pub fn requests(&self, state: Option<RequestState>) -> Result<Vec<Request>, ReviewError> {
        self.db.with(|db| query_requests(db, state))
    }

    /// Requests for one item, newest first.
    ///
    /// # Errors
    /// The database cannot be read.
    pub fn requests_for(&self, item_id: &str) -> Result<Vec<Request>, ReviewError> {
        self.db
            .with(|db| {
                db.rows(
                    &format!(
                        "SELECT {REQUEST_COLUMNS} FROM requests WHERE item_id = ?1 ORDER BY requested_at DESC, id DESC"
                    ),
                    &[V::T(item_id)],
                )
            })?
            .iter()
            .map(row_request)
            .collect()
    }

    /// One request.
    ///
    /// # Errors
    /// Unknown request.
    pub fn request(&self, id: &str) -> Result<Request, ReviewError> {
        self.db
            .with(|db| {
                db.row(
                    &format!("SELECT {REQUEST_COLUMNS} FROM requests WHERE id = ?1"),
                    &[V::T(id)],
                )
            })?
            .as_ref()
            .map(row_request)
            .transpose()?
            .ok_or_else(|| {
                ReviewError::new(ErrorKind::NotFound, format!("申請 {id:?} はありません"))
            })
    }

    fn set_state(
        &self,
        id: &str,
        state: RequestState,
        by: Option<&str>,
        reason: Option<&str>,
    ) -> Result<(), ReviewError> {
        let now = self.now_rfc3339();
        self.db.with(|db| match by {
            Some(by) => db.exec(
                "UPDATE requests SET state = ?2, decided_by = ?3, decision_reason = ?4, decided_at = ?5 WHERE id = ?1",
                &[V::T(id), V::T(state.as_str()), V::T(by), V::OT(reason), V::T(&now)],
            ),
            None => db.exec(
                "UPDATE requests SET state = ?2 WHERE id = ?1",
                &[V::T(id), V::T(state.as_str())],
            ),
        })?;
        Ok(())
    }

    /// Records `event` for `request` and moves the request to `state`: the audit record first,
    /// so nothing changes unrecorded.
    fn decide(
        &self,
        request: &Request,
        event: fn(ReleaseDecision) -> AuditEvent,
        state: RequestState,
        by: &Actor,
        reason: &str,
    ) -> Result<(), ReviewError> {
        self.record(event(ReleaseDecision {
            item_id: request.item_id.clone(),
            request_id: Some(request.id.clone()),
            by: by.name().into(),
            reason: reason.into(),
            target: Some(request.target.to_string()),
            via: Some(by.via().clone()),
        }))?;
        self.set_state(&request.id, state, Some(by.name()), Some(reason))
    }

    /// Moves a pending request to `state` — the one transition a request makes out of
    /// pending. The request is read, checked with `allowed`, audited and written under the
    /// database lock and an immediate (writing) transaction, so of two people deciding at
    /// once exactly one is recorded and the other gets [`ReviewError::is_conflict`].
    fn transition(
        &self,
        request_id: &str,
        allowed: impl FnOnce(&Request) -> Result<(), ReviewError>,
        event: fn(ReleaseDecision) -> AuditEvent,
        state: RequestState,
        by: &Actor,
        reason: &str,
    ) -> Result<Request, ReviewError> {
        // The write lock now: a command-line process or another node deciding the same
        // request waits, and then sees it decided.
        let now = self.now_rfc3339();
        self.db.write(&["requests"], |tx| {
        let request = tx
            .row(
                &format!("SELECT {REQUEST_COLUMNS} FROM requests WHERE id = ?1"),
                &[V::T(request_id)],
            )?
            .as_ref()
            .map(row_request)
            .transpose()?
            .ok_or_else(|| {
                ReviewError::new(
                    ErrorKind::NotFound,
                    format!("申請 {request_id:?} はありません"),
                )
            })?;
        allowed(&request)?;
        if request.state != RequestState::Pending {
            return Err(ReviewError::new(
                ErrorKind::Conflict,
                format!(
                    "申請は既に「{}」です / the request is no longer pending",
                    request.state.label_ja()
                ),
            ));
        }
        self.record(event(ReleaseDecision {
            item_id: request.item_id.clone(),
            request_id: Some(request.id.clone()),
            by: by.name().into(),
            reason: reason.into(),
            target: Some(request.target.to_string()),
            via: Some(by.via().clone()),
        }))?;
        tx.exec(
            "UPDATE requests SET state = ?2, decided_by = ?3, decision_reason = ?4, decided_at = ?5 WHERE id = ?1 AND state = 'pending'",
            &[V::T(&request.id), V::T(state.as_str()), V::T(by.name()), V::T(reason), V::T(&now)],
        )?;
        Ok(request)
        })
    }

    /// Refuses a decision on one's own request (対策基準 2(9) 兼務の禁止).
    fn not_own(actor: &Actor) -> impl FnOnce(&Request) -> Result<(), ReviewError> + '_ {
        move |request| {
            if request.requester == actor.name() {
                return Err(ReviewError::new(
                    ErrorKind::Forbidden,
                    "自分の申請は承認・却下できません（対策基準 2(9) 兼務の禁止） / nobody decides their own request",
                ));
            }
            Ok(())
        }
    }

    fn need_reason(reason: &str) -> Result<String, ReviewError> {
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(ReviewError::new(
                ErrorKind::Invalid,
                "理由を入力してください / a reason is required",
            ));
        }
        Ok(reason.chars().take(1000).collect())
    }

    /// An operator asks for an item to be released to `target`.
    ///
    /// # Errors
    /// Wrong role, unknown item, a reason that can never be released, a request already
    /// pending, or a target that does not fit the item.
    pub fn request_release(
        &self,
        by: &Actor,
        item_id: &str,
        target: Target,
        reason: &str,
    ) -> Result<Request, ReviewError> {
        let actor = by.name();
        self.actor(actor, &[Role::Operator], "解除申請")?;
        let reason = Self::need_reason(reason)?;
        let item = self.item(item_id)?;
        let config = self.config.get();
        if let Some(code) = never_released(&config, &item) {
            return Err(ReviewError::new(
                ErrorKind::Forbidden,
                format!(
                    "理由「{code}」を含む隔離は解除できません / items holding {code:?} are never released"
                ),
            ));
        }
        match &target {
            Target::Original if item.rcpt_to.is_empty() => {
                return Err(ReviewError::new(
                    ErrorKind::Invalid,
                    "元の宛先がありません（取り込みフォルダーの項目は export を指定） / the item has no original recipients",
                ))
            }
            Target::Export(pair) if !config.import.pairs.iter().any(|p| &p.name == pair) => {
                return Err(ReviewError::new(
                    ErrorKind::Invalid,
                    format!("取り込みフォルダー {pair:?} は設定にありません / no such import pair"),
                ))
            }
            Target::Recipients(to) if !to.iter().all(|a| plausible_address(a)) => {
                return Err(ReviewError::new(
                    ErrorKind::Invalid,
                    "宛先の形式が正しくありません / malformed recipient",
                ))
            }
            _ => {}
        }
        let id = format!("R{}-{}", self.now_ms(), &random_hex(3));
        let shown_target = target.to_string();
        let target = serde_json::to_string(&target).map_err(ReviewError::internal)?;
        let now = self.now_rfc3339();
        // "No request open for this item" and the new one are one transaction: two people
        // asking at the same moment (on one node or two) cannot both open one — two open
        // requests could be approved twice and the item released twice.
        self.db.write(&["requests"], |db| {
            let open = db.row(
                "SELECT id FROM requests WHERE item_id = ?1 AND state IN ('pending', 'approved')",
                &[V::T(item_id)],
            )?;
            if open.is_some() {
                return Err(ReviewError::new(
                    ErrorKind::Invalid,
                    "この項目には処理中の申請があります / a request for this item is already open",
                ));
            }
            self.record(AuditEvent::ReleaseRequested(ReleaseDecision {
                item_id: item_id.into(),
                request_id: Some(id.clone()),
                by: actor.into(),
                reason: reason.clone(),
                target: Some(shown_target),
                via: Some(by.via().clone()),
            }))?;
            db.exec(
                "INSERT INTO requests (id, item_id, requester, target, reason, state, requested_at) VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?6)",
                &[V::T(&id), V::T(item_id), V::T(actor), V::T(&target), V::T(&reason), V::T(&now)],
            )
        })?;
        self.request(&id)
    }

    /// An approver other than the requester approves; the item is then delivered.
    ///
    /// # Errors
    /// Wrong role, self-approval, a request decided meanwhile ([`ReviewError::is_conflict`]);
    /// a delivery failure after the approval leaves the request approved for
    /// [`Review::deliver_approved`] to retry.
    pub fn approve(
        &self,
        actor: &Actor,
        request_id: &str,
        reason: &str,
    ) -> Result<Request, ReviewError> {
        self.actor(actor.name(), &[Role::Approver], "承認")?;
        let reason = Self::need_reason(reason)?;
        let item = self.item(&self.request(request_id)?.item_id)?;
        Self::releasable(&self.config.get(), &item)?;
        self.transition(
            request_id,
            Self::not_own(actor),
            AuditEvent::ReleaseApproved,
            RequestState::Approved,
            actor,
            &reason,
        )?;
        self.deliver(&self.request(request_id)?, actor.via()).map_err(|e| {
            ReviewError::internal(format!(
                "承認は記録しました。配送に失敗したため自動で再試行します / approved; delivery failed and is retried: {e}"
            ))
        })?;
        self.request(request_id)
    }

    /// An approver other than the requester rejects.
    ///
    /// # Errors
    /// Wrong role, self-decision, a request decided meanwhile, no reason.
    pub fn reject(&self, actor: &Actor, request_id: &str, reason: &str) -> Result<(), ReviewError> {
        self.actor(actor.name(), &[Role::Approver], "却下")?;
        let reason = Self::need_reason(reason)?;
        self.transition(
            request_id,
            Self::not_own(actor),
            AuditEvent::ReleaseRejected,
            RequestState::Rejected,
            actor,
            &reason,
        )
        .map(|_| ())
    }

    /// The requester withdraws their own pending request; nobody else may.
    ///
    /// # Errors
    /// Wrong role, someone else's request ([`ReviewError::is_forbidden`]), or a request not
    /// pending.
    pub fn cancel(&self, actor: &Actor, request_id: &str, reason: &str) -> Result<(), ReviewError> {
        self.actor(actor.name(), &[Role::Operator], "申請の取り下げ")?;
        let reason = Self::need_reason(reason)?;
        self.transition(
            request_id,
            |request| {
                if request.requester != actor.name() {
                    return Err(ReviewError::new(
                        ErrorKind::Forbidden,
                        "他の人の申請は取り下げられません / only the requester may withdraw a request",
                    ));
                }
                Ok(())
            },
            AuditEvent::ReleaseCancelled,
            RequestState::Cancelled,
            actor,
            &reason,
        )
        .map(|_| ())
    }

    /// An approver deletes an item (its open requests are withdrawn with it).
    ///
    /// Gives the review its PPAP engine (the running service does, once).
    pub fn set_ppap(&self, ppap: Arc<crate::ppap::Ppap>) {
        let _ = self.ppap.set(ppap);
    }

    /// The PPAP engine, when the service runs (the recipients' password page unlocks through
    /// it with `UnlockWay::Web` and the one recipient as the delivery's only address).
    pub fn ppap(&self) -> Option<&Arc<crate::ppap::Ppap>> {
        self.ppap.get()
    }

    /// An operator unlocks a held password-protected item with `password`: the content goes
    /// through the registry and the result to the item's recipients
    /// ([`crate::ppap::Ppap::unlock_item`]); the encrypted original stays held. The attempt is
    /// audited (never the password) whatever its outcome.
    ///
    /// # Errors
    /// Wrong role, unknown item, not held for encryption, no PPAP engine (the service is not
    /// running), or the delivery or audit record failed.
    pub fn unlock_item(
        &self,
        actor: &Actor,
        item_id: &str,
        password: &mukaika_sanitizers::Password,
        way: mukaika_sanitizers::mail::unlocked::UnlockWay,
    ) -> Result<crate::ppap::UnlockResult, ReviewError> {
        self.actor(actor.name(), &[Role::Operator], "パスワード解除")?;
        self.item(item_id)?;
        let ppap = self.ppap.get().ok_or_else(|| {
            ReviewError::new(
                ErrorKind::Invalid,
                "パスワード解除は起動中のサービスが行います / unlocking needs the running service (its registry and antivirus engine)",
            )
        })?;
        ppap.unlock_item(
            item_id,
            password,
            way,
            actor.name(),
            Some(actor.via().clone()),
            None,
        )
        .map_err(|e| {
            // A refused request (not an encrypted item) is the caller's; a database or disk
            // failure is ours.
            let kind = if e.is_transient() {
                ErrorKind::Internal
            } else {
                ErrorKind::Invalid
            };
            ReviewError::new(kind, e.to_string())
        })
    }

    /// # Errors
    /// Wrong role, unknown item, no reason, or the store cannot be written.
    pub fn delete(&self, by: &Actor, item_id: &str, reason: &str) -> Result<(), ReviewError> {
        let actor = by.name();
        self.actor(actor, &[Role::Approver], "削除")?;
        let reason = Self::need_reason(reason)?;
        let item = self.item(item_id)?;
        if self
            .requests_for(item_id)?
            .iter()
            .any(|r| r.state == RequestState::Approved)
        {
            return Err(ReviewError::new(
                ErrorKind::Invalid,
                "配送中の項目は削除できません / the item is being delivered",
            ));
        }
        self.record(AuditEvent::QuarantineDeleted(ReleaseDecision {
            item_id: item.id.clone(),
            request_id: None,
            by: actor.into(),
            reason: reason.clone(),
            target: None,
            via: Some(by.via().clone()),
        }))?;
        let now = self.now_rfc3339();
        self.db.with(|db| {
            db.exec(
                "UPDATE requests SET state = 'cancelled', decided_by = ?2, decision_reason = ?3, decided_at = ?4 WHERE item_id = ?1 AND state = 'pending'",
                &[V::T(item_id), V::T(actor), V::T("item deleted"), V::T(&now)],
            )
        })?;
        self.quarantine
            .remove(item_id)
            .map_err(ReviewError::internal)
    }

    /// The original bytes, for an approver only, audited before they are handed out.
    ///
    /// # Errors
    /// Wrong role or unknown item.
    pub fn original(
        &self,
        by: &Actor,
        item_id: &str,
    ) -> Result<(QuarantineItem, Vec<u8>), ReviewError> {
        let actor = by.name();
        self.actor(actor, &[Role::Approver], "原本のダウンロード")?;
        let item = self.item(item_id)?;
        // What is never released is not handed out by download either: the approver's
        // browser is on the LGWAN side.
        Self::releasable(&self.config.get(), &item)?;
        let bytes = self
            .quarantine
            .bytes(item_id)
            .map_err(ReviewError::internal)?;
        self.record(AuditEvent::OriginalDownloaded(ReleaseDecision {
            item_id: item.id.clone(),
            request_id: None,
            by: actor.into(),
            reason: "download".into(),
            target: None,
            via: Some(by.via().clone()),
        }))?;
        Ok((item, bytes))
    }

    /// The original bytes for the read-only safe view (never sent as they are), audited
    /// before they are handed out: reading an original's text is seeing it, as a download is.
    ///
    /// # Errors
    /// Unknown actor or item.
    pub fn view_bytes(&self, by: &Actor, item_id: &str) -> Result<Vec<u8>, ReviewError> {
        let actor = by.name();
        self.actor(
            actor,
            &[Role::Operator, Role::Approver, Role::Auditor, Role::Admin],
            "原本の表示",
        )?;
        self.item(item_id)?;
        let bytes = self
            .quarantine
            .bytes(item_id)
            .map_err(ReviewError::internal)?;
        self.record(AuditEvent::OriginalViewed(ReleaseDecision {
            item_id: item_id.into(),
            request_id: None,
            by: actor.into(),
            reason: "safe view".into(),
            target: None,
            via: Some(by.via().clone()),
        }))?;
        Ok(bytes)
    }

    /// The database this node shares with the other nodes of its cluster (`None`: a single
    /// node on SQLite).
    pub fn cluster_db(&self) -> Option<&Arc<crate::store::postgres::Pg>> {
        self.cluster.as_ref().map(|c| &c.pg)
    }

    /// Refuses an item whose reason is never released (a detected virus), whoever asks.
    fn releasable(config: &ServiceConfig, item: &QuarantineItem) -> Result<(), ReviewError> {
        if never_released(config, item).is_some() {
            return Err(ReviewError::new(
                ErrorKind::Forbidden,
                "この隔離は解除できません / never released",
            ));
        }
        Ok(())
    }

    /// Delivers every approved request not yet delivered (after a crash or a failed delivery,
    /// or approved on a node that died before it went out), and closes requests whose item
    /// retention removed. In a cluster each is claimed first, so every node may run this pass
    /// and each release still goes once. Returns how many went out.
    ///
    /// # Errors
    /// The database cannot be read.
    pub fn deliver_approved(&self) -> Result<usize, ReviewError> {
        // Pending requests for items retention removed can never be decided: close them.
        for request in self.requests(Some(RequestState::Pending))? {
            if self.item(&request.item_id).is_err_and(|e| e.is_not_found()) {
                self.close_orphan(&request)?;
            }
        }
        let mut sent = 0;
        let mut outcome = |request: &Request, result: Result<(), ReviewError>| match result {
            Ok(()) => sent += 1,
            // The item left the quarantine (retention) before it could go: the request
            // can never be delivered, so it is closed, with a record saying why.
            Err(e) if e.is_not_found() => {
                if let Err(e) = self.close_orphan(request) {
                    tracing::error!(request = %request.id, error = %e, "orphaned release not closed; tried again");
                }
                tracing::error!(request = %request.id, item = %request.item_id, "approved release dropped: the item is no longer in the quarantine");
            }
            Err(e) => {
                tracing::error!(request = %request.id, error = %e, "approved release not delivered; retried later")
            }
        };
        let Some(cluster) = &self.cluster else {
            for request in self.requests(Some(RequestState::Approved))? {
                let result = self.hand_off(&request, &Via::System, None, &mut false);
                outcome(&request, result);
            }
            return Ok(sent);
        };
        // Each claim is a request nobody else holds; one given back after a failure waits
        // RELEASE_RETRY before it can be taken again, so this ends.
        let mut seen = std::collections::HashSet::new();
        while let Some(claim) = cluster.claims.next().map_err(ReviewError::internal)? {
            if !seen.insert(claim.request_id.clone()) {
                cluster.claims.give_back(&claim, std::time::Duration::ZERO);
                break;
            }
            let request = match self.request(&claim.request_id) {
                Ok(request) => request,
                Err(e) => {
                    cluster.claims.give_back(&claim, RELEASE_RETRY);
                    return Err(e);
                }
            };
            let result = self.deliver_claimed(cluster, &request, &Via::System, &claim);
            outcome(&request, result);
        }
        Ok(sent)
    }

    /// Closes a request whose item left the quarantine (retention) before it could go.
    fn close_orphan(&self, request: &Request) -> Result<(), ReviewError> {
        self.decide(
            request,
            AuditEvent::ReleaseCancelled,
            RequestState::Cancelled,
            &Actor::system(),
            "item no longer in the quarantine",
        )
    }

    /// Delivers an approved request: on one node at once; in a cluster once it is claimed —
    /// and not at all here when another node holds the claim (it is delivering it, or did).
    /// `via` is the approver's door when it goes with the approval, [`Via::System`] on a
    /// retry.
    fn deliver(&self, request: &Request, via: &Via) -> Result<(), ReviewError> {
        let Some(cluster) = &self.cluster else {
            return self.hand_off(request, via, None, &mut false);
        };
        match cluster
            .claims
            .take(&request.id)
            .map_err(ReviewError::internal)?
        {
            Some(claim) => self.deliver_claimed(cluster, request, via, &claim),
            None => {
                tracing::info!(request = %request.id, "release held by another node's delivery (or delivered)");
                Ok(())
            }
        }
    }

    /// Delivers a request this node claimed; gives the claim back (to be tried again after
    /// [`RELEASE_RETRY`]) when the hand-off failed before anything went out. Once it went
    /// out the claim is kept whatever fails next: giving it back would send it again.
    fn deliver_claimed(
        &self,
        cluster: &Cluster,
        request: &Request,
        via: &Via,
        claim: &claim::Claim,
    ) -> Result<(), ReviewError> {
        let mut went_out = false;
        let result = self.hand_off(request, via, Some((cluster, claim)), &mut went_out);
        if let Err(e) = &result {
            if went_out {
                tracing::error!(request = %request.id, error = %e, "release went out but was not fully recorded; its claim is kept");
            } else {
                // An item that is gone is closed by the caller; nothing to retry then.
                let retry = if e.is_not_found() {
                    std::time::Duration::ZERO
                } else {
                    RELEASE_RETRY
                };
                cluster.claims.give_back(claim, retry);
            }
        }
        result
    }

    /// Sends an approved request's item where it is to go, then marks it delivered: through
    /// this node's sink on one node; under `claimed` in a cluster, straight to the relay and
    /// within the claim's deadline.
    fn hand_off(
        &self,
        request: &Request,
        via: &Via,
        claimed: Option<(&Cluster, &claim::Claim)>,
        went_out: &mut bool,
    ) -> Result<(), ReviewError> {
        let item = self.item(&request.item_id)?;
        // Checked again at delivery: the list may have grown since the approval.
        Self::releasable(&self.config.get(), &item)?;
        let bytes = self
            .quarantine
            .bytes(&item.id)
            .map_err(ReviewError::internal)?;
        let approver = request.decided_by.clone().unwrap_or_default();
        let config = self.config.get();
        let marker = crate::review::release::Marker {
            item: &item,
            request_id: &request.id,
            requester: &request.requester,
            approver: &approver,
        };
        let destination = match &request.target {
            Target::Export(pair) => {
                let pair = config
                    .import
                    .pairs
                    .iter()
                    .find(|p| &p.name == pair)
                    .ok_or_else(|| ReviewError::internal(format!("import pair {pair} is gone")))?;
                crate::review::release::to_export(
                    &self.data_dir.join(&pair.export),
                    pair,
                    &marker,
                    &bytes,
                )
                .map_err(ReviewError::internal)?
            }
            target => {
                let to = match target {
                    Target::Recipients(to) => to.clone(),
                    _ => item.rcpt_to.clone(),
                };
                let (envelope, message) =
                    crate::review::release::as_mail(&marker, &bytes, &to, &config.notices.from);
                let approval = Approval::new(&request.id, &request.requester, &approver)
                    .ok_or_else(|| {
                        ReviewError::internal("an approval by the requester is no approval")
                    })?;
                match claimed.and_then(|(c, k)| c.courier.as_ref().map(|courier| (c, k, courier))) {
                    Some((cluster, claim, (client, to_relay))) => {
                        let out = Outgoing::release(envelope, &approval, message);
                        let deadline = cluster.claims.time_left(claim).ok_or_else(|| {
                            ReviewError::internal(
                                "too little of the release claim's lease left to hand it over; tried again",
                            )
                        })?;
                        let client = Arc::clone(client);
                        let (from, rcpt, data) = out.into_relay();
                        let reply = cluster
                            .pg
                            .run(async move {
                                tokio::time::timeout(deadline, client.send(&from, &rcpt, &data))
                                    .await
                            })
                            .map_err(ReviewError::internal)?
                            .map_err(|_| {
                                ReviewError::internal(
                                    "the relay did not answer within the release claim's deadline",
                                )
                            })?
                            .map_err(|e| ReviewError::internal(format!("relay: {e}")))?;
                        format!("{to_relay} ({}): {reply}", config.audit.node)
                    }
                    None => self
                        .sink
                        .deliver(Outgoing::release(envelope, &approval, message))
                        .map_err(ReviewError::internal)?,
                }
            }
        };
        *went_out = true;
        let delivered = AuditEvent::ReleaseDelivered(ReleaseDecision {
            item_id: item.id.clone(),
            request_id: Some(request.id.clone()),
            by: approver,
            reason: destination.clone(),
            target: Some(request.target.to_string()),
            via: Some(via.clone()),
        });
        match claimed {
            // In a cluster the request is finished first: until it is, another node may take
            // the request over when the lease runs out and send it again. A database that
            // does not answer is asked a few times more before that is risked.
            Some((cluster, claim)) => {
                let mut finished = cluster.claims.finish(claim, &destination);
                for _ in 0..3 {
                    if finished.is_ok() {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_secs(1));
                    finished = cluster.claims.finish(claim, &destination);
                }
                match finished {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::error!(request = %request.id, "release claim taken over by another node while this one delivered: it may have gone twice")
                    }
                    Err(e) => {
                        tracing::error!(request = %request.id, error = %e, "release went out but cannot be marked delivered: another node may send it again when the claim's lease runs out");
                        self.record(delivered)?;
                        return Err(ReviewError::internal(e));
                    }
                }
                self.record(delivered)?;
            }
            None => {
                self.record(delivered)?;
                self.db.with(|db| {
                    db.exec(
                        "UPDATE requests SET state = 'delivered', delivery = ?2 WHERE id = ?1",
                        &[V::T(&request.id), V::T(&destination)],
                    )
                })?;
            }
        }
        Ok(())
    }

    /// The review status of each item: the latest request's state, if any.
    ///
    /// # Errors
    /// The database cannot be read.
    pub fn statuses(&self) -> Result<std::collections::HashMap<String, RequestState>, ReviewError> {
        let mut out = std::collections::HashMap::new();
        // Oldest first, so the newest request of each item wins.
        for r in self.requests(None)?.into_iter().rev() {
            out.insert(r.item_id, r.state);
        }
        Ok(out)
    }
}

/// The never-released reason (`quarantine.never_release`, a detected virus) the item holds
/// anywhere: its own reason, or one inside its report — a member of an archive, an attachment
/// of a held message — so that a virus found only in a part is not released with its container.
fn never_released(config: &ServiceConfig, item: &QuarantineItem) -> Option<String> {
    fn inside(v: &serde_json::Value, codes: &[String]) -> Option<String> {
        match v {
            serde_json::Value::Object(map) => {
                let own = map
                    .get("reason")
                    .and_then(|r| r.get("code"))
                    .and_then(|c| c.as_str())
                    .filter(|c| codes.iter().any(|n| n == c));
                match own {
                    Some(code) => Some(code.to_string()),
                    None => map.values().find_map(|v| inside(v, codes)),
                }
            }
            serde_json::Value::Array(items) => items.iter().find_map(|v| inside(v, codes)),
            _ => None,
        }
    }
    let codes = &config.quarantine.never_release;
    if codes.contains(&item.reason) {
        return Some(item.reason.clone());
    }
    // A report the store could not read may have named a virus inside: fail closed.
    if item
        .report
        .get(crate::store::quarantine::UNREADABLE_REPORT)
        .is_some()
    {
        return Some(crate::store::quarantine::UNREADABLE_REPORT.to_string());
    }
    inside(&item.report, codes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_item_whose_report_cannot_be_read_is_never_released() {
        let config: ServiceConfig = toml::from_str(crate::config::DEFAULT_TOML).unwrap();
        let item = QuarantineItem {
            id: "Q1-2".into(),
            source: "mail".into(),
            origin_id: "Q1".into(),
            name: Some("a.zip".into()),
            reason: "policy-quarantine".into(),
            detail: String::new(),
            sha256: "ab".repeat(32),
            size: 1,
            at: String::new(),
            report: crate::store::quarantine::read_report("{\"children\": [truncated"),
            mail_from: None,
            rcpt_to: Vec::new(),
            subject: None,
            detected_type: None,
        };
        assert!(never_released(&config, &item).is_some());
        // A report that reads (even an empty one) is judged by what it says.
        let readable = QuarantineItem {
            report: crate::store::quarantine::read_report("null"),
            ..item
        };
        assert_eq!(never_released(&config, &readable), None);
    }

    #[test]
    fn addresses_and_names_are_checked_before_they_reach_headers() {
        assert!(plausible_address("staff@city.example.lg.jp"));
        assert!(!plausible_address("a@b\r\nBcc: x@y"));
        assert!(!plausible_address("<a@b>"));
        assert!(!plausible_address("nobody"));
        assert!(valid_user_name("sato.k"));
        assert!(!valid_user_name("../root"));
        assert!(!valid_user_name(""));
    }

    #[test]
    fn targets_round_trip_through_their_text_form() {
        for t in [
            Target::Original,
            Target::Recipients(vec!["a@example.lg.jp".into(), "b@example.lg.jp".into()]),
            Target::Export("default".into()),
        ] {
            assert_eq!(t.to_string().parse::<Target>().unwrap(), t);
        }
        assert!("to:a@b\r\nX: y".parse::<Target>().is_err());
        assert!("somewhere".parse::<Target>().is_err());
    }

    #[test]
    fn role_lists_parse_without_duplicates() {
        assert_eq!(
            parse_roles("approver, operator,approver").unwrap(),
            [Role::Operator, Role::Approver]
        );
        assert!(parse_roles("").is_err());
        assert!(parse_roles("root").is_err());
        assert_eq!(
            roles_text(&[Role::Operator, Role::Approver]),
            "operator,approver"
        );
    }

    #[test]
    fn weak_new_passwords_are_refused() {
        assert!(check_new_password("sato", "old-password-1", "short").is_err());
        assert!(check_new_password("sato", "old-password-1", "old-password-1").is_err());
        assert!(check_new_password("sato", "x", "my-SATO-password").is_err());
        assert!(check_new_password("sato", "x", "correct horse battery").is_ok());
        for guessable in [
            "aaaaaaaaaaaa",
            "121212121212",
            "0312345678901",
            "1985/12/24-0042",
            "Passw0rd2024!!",
            "!!Sakura2025!!",
            "1qaz2wsx3edc4rfv",
        ] {
            assert!(
                check_new_password("sato", "x", guessable).is_err(),
                "{guessable}"
            );
        }
        assert!(check_new_password("sato", "x", "a9#b7!c5$d3%").is_ok());
    }

    #[test]
    fn one_time_passwords_verify_against_their_hash_and_differ() {
        let (a, b) = (one_time_password(), one_time_password());
        assert_ne!(a, b);
        assert_eq!(a.len(), 16);
        let hash = hash_password(&a).unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password(&a, &hash));
        assert!(!verify_password(&b, &hash));
        assert!(!verify_password(&a, dummy_hash()));
        assert!(dummy_hash().starts_with("$argon2id$"));
    }
}
