//! Typed audit events: one struct per kind of action the gateway takes.
//!
//! Owns: the vocabulary of the audit log. Every component writes through these types; the log
//! adds the sequence number, timestamp, node name and hash chain.
//! Invariant: events carry the IDs that link an original to its output and to any release
//! decision (queue ID, mukaika ID, quarantine item ID, SHA-256 of what came in and went out).
//! Must never: carry message bodies or file contents — hashes and names only.

use serde::{Deserialize, Serialize};

/// One auditable action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AuditEvent {
    /// SMTP accepted a message into the spool.
    MessageReceived(MessageReceived),
    /// A part or file went through a sanitizer.
    PartSanitized(PartSanitized),
    /// A message was converted to text.
    MessageConverted(MessageConverted),
    /// The relay accepted a converted message.
    Delivered(Delivered),
    /// Delivery failed temporarily; retried later.
    Deferred(Deferred),
    /// Delivery failed permanently or gave up; the item waits in hold/.
    Held(Held),
    /// An original went to the quarantine store.
    Quarantined(Quarantined),
    /// A file was taken from an import folder.
    FileImported(FileImported),
    /// A result (or report) was written to an export folder.
    FileExported(FileExported),
    /// A file could not be imported this pass; it stays in the import folder.
    ImportFailed(ImportFailed),
    /// Someone asked for a quarantined item to be released.
    ReleaseRequested(ReleaseDecision),
    /// Another person approved the release.
    ReleaseApproved(ReleaseDecision),
    /// The release was rejected.
    ReleaseRejected(ReleaseDecision),
    /// The requester (or another operator) withdrew a pending request.
    ReleaseCancelled(ReleaseDecision),
    /// An approved release went out; `reason` names where it went.
    ReleaseDelivered(ReleaseDecision),
    /// A quarantined item was deleted (by a person or by retention).
    QuarantineDeleted(ReleaseDecision),
    /// An approver downloaded a quarantined original.
    OriginalDownloaded(ReleaseDecision),
    /// Someone read a quarantined original in the UI's safe text or hex view.
    OriginalViewed(ReleaseDecision),
    /// A quarantine notice was handed to the LGWAN side.
    NoticeSent(NoticeSent),
    /// An account was created, reset, unlocked, disabled, enabled, deleted, given other roles
    /// or changed its password.
    UserChanged(UserChanged),
    /// An administrator login attempt.
    AdminLogin(AdminLogin),
    /// Configuration was loaded.
    ConfigLoaded(ConfigLoaded),
    /// The service started.
    ServiceStarted(ServiceEvent),
    /// The service stopped.
    ServiceStopped(ServiceEvent),
    /// `mukaika audit verify` ran.
    AuditVerified(AuditVerified),
    /// A periodic anchor: how many records since the last one.
    Checkpoint(Checkpoint),
    /// Written on start after a crash left a torn last line; names it.
    Recovery(Recovery),
    /// Retention removed audit files or quarantined items; lists them.
    RetentionExpired(RetentionExpired),
    /// Passwords were tried on a held password-protected item (PPAP).
    UnlockAttempted(UnlockAttempted),
    /// What the registry made of an unlocked item went out as a new message.
    UnlockDelivered(UnlockDelivered),
    /// `mukaika store copy` moved this node's quarantine, accounts and release requests into
    /// the cluster's database.
    StoreCopied(StoreCopied),
}

impl AuditEvent {
    /// The record's `type` as written in the log (`message_converted`, `delivered`, …).
    pub fn kind(&self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.get("type")?.as_str().map(str::to_string))
            .unwrap_or_default()
    }
}

/// Passwords were tried on one held password-protected item. Carries how many, never which:
/// no password, candidate or part of one is ever written here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnlockAttempted {
    /// The quarantine item.
    pub item_id: String,
    /// `password-mail`, `same-mail`, `web` or `cli`.
    pub way: String,
    /// Who gave the password: the account (web, CLI) or the queue ID of the mail it was in.
    pub by: String,
    /// How many candidates were tried.
    pub candidates: u32,
    /// `unlocked`, `wrong-password`, `limit-exceeded`, `unsupported`, `already-unlocked`,
    /// `busy` (another path is unlocking it), `timeout` or `error`.
    pub outcome: String,
    /// What the unlocker said when it was not `unlocked` (never holds a password).
    pub detail: Option<String>,
    /// The door an operator's attempt came through (web or CLI); absent for passwords found
    /// in mail, for a recipient's link (its `by` names the recipient) and in records older
    /// than 0.3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<Via>,
}

/// The door a review action came through, as the listener or the kernel saw it — never what
/// the client says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "channel", rename_all = "lowercase")]
pub enum Via {
    /// The review web UI.
    Web {
        /// The TCP peer address of the connection. Behind a reverse proxy this is the proxy:
        /// forwarded-for headers are the client's word and are not recorded.
        client: String,
    },
    /// The command line, through the control socket (or in its own process when no service
    /// runs).
    Cli {
        /// The OS account of the calling process (from its uid).
        os_user: String,
        /// Its uid, as the kernel reported it (`SO_PEERCRED`).
        uid: u32,
        /// Its process ID, as the kernel reported it.
        pid: u32,
        /// The account that logged in to the machine (`/proc/<pid>/loginuid`, kept by the
        /// kernel across `sudo`), when known and different from `os_user`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        login_user: Option<String>,
    },
    /// mukaika itself (a retried delivery, a request closed because its item is gone).
    System,
}

impl Via {
    /// `web`, `cli` or `system`.
    pub fn channel(&self) -> &'static str {
        match self {
            Via::Web { .. } => "web",
            Via::Cli { .. } => "cli",
            Via::System => "system",
        }
    }
}

impl std::fmt::Display for Via {
    /// `127.0.0.1` for the web; `cli:<os user> pid <pid>` for the command line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Via::Web { client } => f.write_str(client),
            Via::Cli { os_user, pid, .. } => write!(f, "cli:{os_user} pid {pid}"),
            Via::System => f.write_str("system"),
        }
    }
}

/// An unlocked item's result was delivered to the original recipients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnlockDelivered {
    /// The quarantine item (its encrypted original stays held).
    pub item_id: String,
    /// `password-mail`, `same-mail`, `web` or `cli`.
    pub way: String,
    /// What the registry made of the unlocked content: `sanitized`, `passed`, `blocked`,
    /// `quarantined`.
    pub verdict: String,
    /// The registry's reason when it was not delivered.
    pub reason: Option<String>,
    /// SHA-256 of the unlocked content (as decrypted).
    pub unlocked_sha256: String,
    /// SHA-256 of the sanitized file attached, if any.
    pub output_sha256: Option<String>,
    /// Where the message went.
    pub destination: String,
    /// Its recipients.
    pub rcpt_to: Vec<String>,
}

/// SMTP accepted a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageReceived {
    /// Spool queue ID.
    pub queue_id: String,
    /// Client IP address.
    pub client: String,
    /// Envelope sender.
    pub mail_from: String,
    /// Envelope recipients.
    pub rcpt_to: Vec<String>,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the message as received.
    pub sha256: String,
}

/// A sanitizer ran on one part or file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartSanitized {
    /// Queue ID or import item ID.
    pub item_id: String,
    /// The part or file name.
    pub name: Option<String>,
    /// `sanitized`, `passed`, `blocked`, `quarantined`.
    pub verdict: String,
    /// SHA-256 in.
    pub input_sha256: String,
    /// SHA-256 out.
    pub output_sha256: Option<String>,
    /// What was removed (`what` codes with locations).
    pub removed: Vec<String>,
    /// The true type the sanitizer found (added in 0.2; absent in older records).
    #[serde(default)]
    pub detected_type: Option<String>,
}

/// A message was converted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageConverted {
    /// Queue ID.
    pub queue_id: String,
    /// X-Mukaika-Id of the output.
    pub mukaika_id: String,
    /// Original Message-ID.
    pub message_id: Option<String>,
    /// `delivered`, `quarantined`, `blocked`.
    pub verdict: String,
    /// SHA-256 of the original.
    pub input_sha256: String,
    /// SHA-256 of the converted message.
    pub output_sha256: Option<String>,
    /// Structural findings.
    pub findings: Vec<String>,
    /// How long the conversion took, in milliseconds (added in 0.2; absent in older records).
    #[serde(default)]
    pub elapsed_ms: Option<u64>,
}

/// The relay accepted a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivered {
    /// Queue ID.
    pub queue_id: String,
    /// Where to (relay URL or maildir).
    pub destination: String,
    /// Recipients.
    pub rcpt_to: Vec<String>,
    /// The relay's final reply.
    pub reply: String,
}

/// Delivery will be retried.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deferred {
    /// Queue ID.
    pub queue_id: String,
    /// Why.
    pub reason: String,
    /// Attempt number.
    pub attempt: u32,
    /// Next attempt, RFC 3339.
    pub next_attempt: String,
}

/// Delivery gave up; the item waits in hold/.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    /// Queue ID.
    pub queue_id: String,
    /// Why.
    pub reason: String,
}

/// An original was quarantined.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quarantined {
    /// Quarantine item ID.
    pub item_id: String,
    /// `mail` or `import`.
    pub source: String,
    /// The queue or import ID it came from.
    pub origin_id: String,
    /// Reason code.
    pub reason: String,
    /// SHA-256 of the held bytes.
    pub sha256: String,
}

/// A file was taken from an import folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileImported {
    /// Import item ID.
    pub item_id: String,
    /// Department folder.
    pub department: String,
    /// Path below the import folder.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256.
    pub sha256: String,
}

/// An import attempt failed; the original stays where staff put it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportFailed {
    /// Department folder.
    pub department: String,
    /// Path below the import folder.
    pub path: String,
    /// What went wrong.
    pub error: String,
}

/// A result was exported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileExported {
    /// Import item ID.
    pub item_id: String,
    /// Department folder.
    pub department: String,
    /// Path below the export folder.
    pub path: String,
    /// Verdict.
    pub verdict: String,
    /// SHA-256 of what was written (absent for report-only exports).
    pub sha256: Option<String>,
}

/// A person's decision about a quarantined item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseDecision {
    /// Quarantine item ID.
    pub item_id: String,
    /// Release request ID.
    pub request_id: Option<String>,
    /// Who acted.
    pub by: String,
    /// Why.
    pub reason: String,
    /// Where it is to go (recipients or export folder), for requests and approvals.
    pub target: Option<String>,
    /// The door the action came through (absent in records older than 0.3 and for
    /// retention).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<Via>,
}

/// A notice mail mukaika wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoticeSent {
    /// The message (queue ID) the notice is about.
    pub queue_id: String,
    /// Quarantine item IDs it names.
    pub items: Vec<String>,
    /// Its recipients.
    pub rcpt_to: Vec<String>,
    /// Where it went (maildir file or outgoing queue ID).
    pub destination: String,
}

/// An account change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserChanged {
    /// The account changed.
    pub user: String,
    /// Who changed it (`cli:<OS user>` from the command line, as the kernel names the caller).
    pub by: String,
    /// `add`, `reset-password`, `unlock`, `change-password`, `disable`, `enable`, `delete` or
    /// `role`.
    pub action: String,
    /// The roles given, for `add` and `role`.
    pub role: Option<String>,
    /// The door the change came through (absent in records older than 0.3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<Via>,
}

/// An administrator login attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminLogin {
    /// Account name.
    pub user: String,
    /// Client address.
    pub client: String,
    /// `success`, `failure`, `lockout` (this failure locked it), `locked` (tried while
    /// locked), `throttled` or `disabled` (the right password of a disabled account).
    pub outcome: String,
    /// The door the attempt came through (absent in records older than 0.3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<Via>,
}

/// Configuration was loaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigLoaded {
    /// The file (or `embedded-default`).
    pub source: String,
    /// SHA-256 of its text.
    pub sha256: String,
}

/// Service start or stop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceEvent {
    /// mukaika version.
    pub version: String,
    /// Why (for stops).
    pub reason: Option<String>,
}

/// A verification run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditVerified {
    /// Records checked.
    pub records: u64,
    /// True when the chain was intact.
    pub intact: bool,
    /// The first problem, if any.
    pub problem: Option<String>,
}

/// A periodic anchor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Records written since the previous checkpoint (or since the start).
    pub records: u64,
}

/// Names a torn last line left by a crash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recovery {
    /// The file holding the torn line.
    pub file: String,
    /// Its line number (1-based).
    pub line: u64,
    /// How many bytes it had.
    pub bytes: u64,
    /// SHA-256 of those bytes, so the torn text itself stays verifiable.
    pub sha256: String,
}

/// What `mukaika store copy` moved from this node's data directory into the cluster's
/// PostgreSQL. Counts and IDs only (never a password hash or an original's bytes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreCopied {
    /// Where from (`sqlite`: the node's `review.db` and quarantine).
    pub from: String,
    /// Where to (`postgres`).
    pub to: String,
    /// Quarantine items copied.
    pub items_copied: u64,
    /// Items already in the database (a second run), left as they were.
    pub items_skipped: u64,
    /// Items not copied (missing blob, bytes not matching their SHA-256, a database error).
    pub items_failed: Vec<String>,
    /// Bytes of originals written to the database (shared content counted once).
    pub bytes_copied: u64,
    /// Accounts copied.
    pub users_copied: u64,
    /// Accounts already in the database with the same password hash.
    pub users_skipped: u64,
    /// Accounts already in the database under the same name with another password hash:
    /// left as they were, for an administrator to settle.
    pub users_differing: Vec<String>,
    /// Release requests copied.
    pub requests_copied: u64,
    /// Release requests already in the database.
    pub requests_skipped: u64,
    /// Open (pending or approved) requests not copied because their item is not in the
    /// cluster's quarantine (it failed to copy): the nodes would close them as orphans.
    #[serde(default)]
    pub requests_without_item: Vec<String>,
}

/// Retention removed things.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionExpired {
    /// What was removed (file names or item IDs).
    pub removed: Vec<String>,
    /// The retention period applied, in days.
    pub days: u32,
    /// For removed audit files: the sequence number of the last removed record…
    pub last_seq: Option<u64>,
    /// …and its hash, which the oldest remaining record names as `prev`, so verify can tell
    /// expiry from deletion.
    pub last_hash: Option<String>,
}
