//! The control socket: how `mukaika quarantine …` and `mukaika admin user …` act while the
//! service runs.
//!
//! Owns: a Unix socket at `<data>/control.sock` (mode 0600: only the service's own account, or
//! root, can connect) speaking one JSON line each way, and [`execute`], which runs one
//! [`Op`] through [`Review`] — the same code path the web UI takes, so the same rules hold —
//! or, for `mukaika queue retry|hold|release`, through the running service's own spool.
//! Without a running service the CLI takes the data directory's lock and calls [`execute`]
//! itself; there is never a second writer of the audit chain, and never a second process
//! recovering (moving, deleting) spool files under the service's workers.
//! Invariants: the acting account named on the command line is checked by `Review` against the
//! account store, exactly as a web session's account is; the caller every audit record names
//! (OS user, uid, pid) is what the kernel reports for the connection (`SO_PEERCRED`) — or,
//! when the CLI acts in its own process, that process — never what the client claims.
//! Must never: accept a connection from a socket path it did not create, or act for a
//! connection whose peer credentials cannot be read.

use crate::error::Error;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::sync::{watch, Notify};

use crate::audit::event::Via;
use crate::config::ServiceConfig;
use crate::review::{Actor, Review, ReviewError, Role, Target};
use crate::store::spool::Spool;

/// What a command-line action carries to prove it is the account it names (対策基準 2(9):
/// without it, one shell could request as one person and approve as another).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Proof {
    /// The account's password (prints as `***`; read from a file or stdin, never argv).
    pub password: crate::ppap::SecretText,
}

/// Checks `proof` for `user` the way the review UI's login does (the same lockout, throttling
/// and audit record, with the caller as the client), and refuses an account still on its
/// one-time password. Returns the account acting through the caller's door.
fn prove(review: &Review, user: &str, proof: Proof, caller: &Via) -> Result<Actor, ReviewError> {
    let ok = authenticate(review, user, &proof.password, caller)?;
    if ok.user.must_change {
        return Err(ReviewError::forbidden(
            "一時パスワードのままです。`mukaika account password` か画面で変更してください / \
             change the one-time password first (`mukaika account password` or the review UI)",
        ));
    }
    Ok(Actor::new(user, caller.clone()))
}

/// The login check of a command-line action: the same throttling, lockout and audit record as
/// the review UI's login, with `via` as the client; any refusal reads the same.
fn authenticate(
    review: &Review,
    user: &str,
    password: &crate::ppap::SecretText,
    via: &Via,
) -> Result<crate::review::LoginOk, ReviewError> {
    review
        .login(user, password.expose(), via)
        .map_err(|_| ReviewError::forbidden("本人確認に失敗しました / authentication failed"))
}

/// One action asked of the service.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Op {
    /// An operator asks for a release.
    RequestRelease {
        /// Acting account.
        user: String,
        /// Its proof: the account's password and where the command came from.
        auth: Proof,
        /// Item ID.
        item: String,
        /// `original-recipients`, `to:ADDR,…` or `export:PAIR`.
        target: String,
        /// Why.
        reason: String,
    },
    /// An approver approves.
    Approve {
        /// Acting account.
        user: String,
        /// Its proof: the account's password and where the command came from.
        auth: Proof,
        /// Request ID.
        request: String,
        /// Why.
        reason: String,
    },
    /// An approver rejects.
    Reject {
        /// Acting account.
        user: String,
        /// Its proof: the account's password and where the command came from.
        auth: Proof,
        /// Request ID.
        request: String,
        /// Why.
        reason: String,
    },
    /// An operator withdraws a request.
    Cancel {
        /// Acting account.
        user: String,
        /// Its proof: the account's password and where the command came from.
        auth: Proof,
        /// Request ID.
        request: String,
        /// Why.
        reason: String,
    },
    /// An approver deletes an item.
    Delete {
        /// Acting account.
        user: String,
        /// Its proof: the account's password and where the command came from.
        auth: Proof,
        /// Item ID.
        item: String,
        /// Why.
        reason: String,
    },
    /// An account changes its own password (`mukaika account password`): the way an account
    /// used only from the command line leaves its one-time password.
    ChangePassword {
        /// The account.
        user: String,
        /// Its current password (the one-time one, the first time).
        old: crate::ppap::SecretText,
        /// The new one (the same rules as in the review UI).
        new: crate::ppap::SecretText,
    },
    /// Create an account (prints its one-time password). The local administrator's ops (this
    /// and the other `User…`) name no actor: it is the caller the kernel reports.
    UserAdd {
        /// Account name.
        name: String,
        /// Roles.
        roles: Vec<Role>,
    },
    /// Give an account a new one-time password (its sessions end).
    UserReset {
        /// Account name.
        name: String,
    },
    /// Unlock an account.
    UserUnlock {
        /// Account name.
        name: String,
    },
    /// Disable an account: it stays, cannot log in, and its sessions end.
    UserDisable {
        /// Account name.
        name: String,
    },
    /// Enable a disabled account.
    UserEnable {
        /// Account name.
        name: String,
    },
    /// Delete an account (its pending requests are withdrawn; its sessions end).
    UserDelete {
        /// Account name.
        name: String,
    },
    /// Give an account other roles (its sessions end).
    UserRole {
        /// Account name.
        name: String,
        /// The roles it holds from now on.
        roles: Vec<Role>,
    },
    /// An operator unlocks a held password-protected item (`mukaika quarantine unlock`).
    Unlock {
        /// Acting account.
        user: String,
        /// Its proof: the account's password and where the command came from.
        auth: Proof,
        /// Item ID.
        item: String,
        /// The password (prints as `***`; read from a file or stdin, never from argv).
        password: crate::ppap::SecretText,
    },
    /// An operator moves a queue item (`mukaika queue retry|hold|release`).
    QueueMove {
        /// The outgoing (relay) queue rather than the intake queue.
        outgoing: bool,
        /// Queue ID.
        id: String,
        /// `incoming` (retry, release) or `hold`.
        to: String,
    },
}

/// The running service's queues, for [`Op::QueueMove`].
#[derive(Clone)]
pub struct Queues {
    /// The intake spool and the pipeline workers' wake-up.
    pub intake: (Arc<Spool>, Arc<Notify>),
    /// The outgoing spool and the relay workers' wake-up (relay mode only).
    pub outgoing: Option<(Arc<Spool>, Arc<Notify>)>,
}

/// Moves a queue item in `queues`; the reply says from where to where.
pub fn execute_queue(queues: &Queues, outgoing: bool, id: &str, to: &str) -> Reply {
    let Some((spool, wake)) = (if outgoing {
        queues.outgoing.as_ref()
    } else {
        Some(&queues.intake)
    }) else {
        return Reply {
            ok: false,
            message: "no outgoing queue: delivery is not in relay mode".into(),
            forbidden: false,
        };
    };
    match spool.operator_move(id, to) {
        Ok(from) => {
            wake.notify_one();
            Reply {
                ok: true,
                message: format!("{from} → {to}"),
                forbidden: false,
            }
        }
        Err(e) => Reply {
            ok: false,
            message: e.to_string(),
            forbidden: false,
        },
    }
}

/// The socket's reply.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reply {
    /// Whether it was done.
    pub ok: bool,
    /// What to print.
    pub message: String,
    /// Refused for lack of permission (the CLI exits 77 then).
    #[serde(default)]
    pub forbidden: bool,
}

/// `<data>/control.sock`.
pub fn socket_path(config: &ServiceConfig) -> PathBuf {
    config.data.dir.join("control.sock")
}

/// The command-line caller with uid `uid` and process `pid`, as the kernel reported them: the
/// OS user is looked up from the uid (`uid<N>` when the password database has no name), and
/// the login account from the process's audit login uid, which `sudo` keeps.
pub fn cli_caller(uid: u32, pid: u32) -> Via {
    let os_user = os_user_name(uid).unwrap_or_else(|| format!("uid{uid}"));
    let login_user = std::fs::read_to_string(format!("/proc/{pid}/loginuid"))
        .ok()
        .and_then(|t| t.trim().parse::<u32>().ok())
        // (u32)-1: no login recorded (a daemon, a container).
        .filter(|&l| l != u32::MAX && l != uid)
        .map(|l| os_user_name(l).unwrap_or_else(|| format!("uid{l}")));
    Via::Cli {
        os_user,
        uid,
        pid,
        login_user,
    }
}

/// This process as a command-line caller (the CLI acting without a running service).
pub fn this_process() -> Via {
    cli_caller(rustix::process::getuid().as_raw(), std::process::id())
}

/// The name `/etc/passwd` gives `uid`.
fn os_user_name(uid: u32) -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let id: u32 = fields.nth(1)?.parse().ok()?;
        (id == uid && !name.is_empty()).then(|| name.to_string())
    })
}

/// Runs one op for `caller` (a [`Via::Cli`] from [`cli_caller`] or [`this_process`]); the
/// reply's message is what the CLI prints.
pub fn execute(review: &Review, op: Op, caller: &Via) -> Reply {
    let done = |message: String| Reply {
        ok: true,
        message,
        forbidden: false,
    };
    let result: Result<Reply, ReviewError> = (|| {
        Ok(match op {
            Op::RequestRelease {
                user,
                auth,
                item,
                target,
                reason,
            } => {
                let actor = prove(review, &user, auth, caller)?;
                let target: Target = target.parse().map_err(|e: String| {
                    ReviewError::invalid(format!("宛先・出力先 / target: {e}"))
                })?;
                let r = review.request_release(&actor, &item, target, &reason)?;
                done(format!(
                    "申請しました / requested: {} (item {}, target {}); 別の承認者の承認を待っています",
                    r.id, r.item_id, r.target
                ))
            }
            Op::Approve {
                user,
                auth,
                request,
                reason,
            } => {
                let actor = prove(review, &user, auth, caller)?;
                let r = review.approve(&actor, &request, &reason)?;
                done(format!(
                    "承認しました / approved: {} → {}",
                    r.id,
                    r.delivery
                        .unwrap_or_else(|| "配送は再試行中 / delivery pending".into())
                ))
            }
            Op::Reject {
                user,
                auth,
                request,
                reason,
            } => {
                let actor = prove(review, &user, auth, caller)?;
                review.reject(&actor, &request, &reason)?;
                done(format!("却下しました / rejected: {request}"))
            }
            Op::Cancel {
                user,
                auth,
                request,
                reason,
            } => {
                let actor = prove(review, &user, auth, caller)?;
                review.cancel(&actor, &request, &reason)?;
                done(format!("取り下げました / withdrawn: {request}"))
            }
            Op::Delete {
                user,
                auth,
                item,
                reason,
            } => {
                let actor = prove(review, &user, auth, caller)?;
                review.delete(&actor, &item, &reason)?;
                done(format!("削除しました / deleted: {item}"))
            }
            Op::ChangePassword { user, old, new } => {
                // The login check (a one-time password is what this op exists to replace), then
                // the UI's password rules.
                authenticate(review, &user, &old, caller)?;
                review.change_password(
                    &Actor::new(&user, caller.clone()),
                    old.expose(),
                    new.expose(),
                    None,
                )?;
                done(format!(
                    "パスワードを変更しました / password changed: {user}"
                ))
            }
            Op::UserAdd { name, roles } => {
                let password = review.add_user(&local_admin(caller)?, &name, &roles)?;
                done(format!(
                    "アカウント {name} ({}) を作成しました / created.\n一時パスワード / one-time password: {password}\n最初のログインで変更が必要です / it must be changed at first login.",
                    crate::review::roles_text(&roles)
                ))
            }
            Op::UserReset { name } => {
                let password = review.reset_password(&local_admin(caller)?, &name)?;
                done(format!(
                    "一時パスワード / one-time password for {name}: {password}"
                ))
            }
            Op::UserUnlock { name } => {
                review.unlock(&local_admin(caller)?, &name)?;
                done(format!("ロックを解除しました / unlocked: {name}"))
            }
            Op::UserDisable { name } => {
                review.disable_user(&local_admin(caller)?, &name)?;
                done(format!(
                    "無効にしました（セッションは終了） / disabled, sessions ended: {name}"
                ))
            }
            Op::UserEnable { name } => {
                review.enable_user(&local_admin(caller)?, &name)?;
                done(format!("有効にしました / enabled: {name}"))
            }
            Op::UserDelete { name } => {
                review.delete_user(&local_admin(caller)?, &name)?;
                done(format!(
                    "削除しました（承認待ちの申請は取り下げ） / deleted, pending requests withdrawn: {name}"
                ))
            }
            Op::UserRole { name, roles } => {
                review.set_roles(&local_admin(caller)?, &name, &roles)?;
                done(format!(
                    "役割を {} にしました（セッションは終了） / roles set, sessions ended: {name}",
                    crate::review::roles_text(&roles)
                ))
            }
            Op::Unlock {
                user,
                auth,
                item,
                password,
            } => {
                let actor = prove(review, &user, auth, caller)?;
                let password = password.into_password();
                let r = review.unlock_item(
                    &actor,
                    &item,
                    &password,
                    mukaika_sanitizers::mail::unlocked::UnlockWay::Cli,
                )?;
                match r.outcome.as_str() {
                    "unlocked" => done(format!(
                        "解除しました / unlocked: {item} → {} ({})",
                        r.destination.unwrap_or_default(),
                        r.verdict.unwrap_or_default()
                    )),
                    "wrong-password" => {
                        return Err(ReviewError::invalid(format!(
                            "パスワードが違います / wrong password for {item}"
                        )))
                    }
                    other => {
                        return Err(ReviewError::invalid(format!(
                            "解除できませんでした / not unlocked ({other}): {item}"
                        )))
                    }
                }
            }
            Op::QueueMove { .. } => {
                return Err(ReviewError::invalid(
                    "queue operations are not review actions".to_string(),
                ))
            }
        })
    })();
    result.unwrap_or_else(|e| Reply {
        ok: false,
        message: e.to_string(),
        forbidden: e.is_forbidden(),
    })
}

/// The local administrator acting through `caller`.
fn local_admin(caller: &Via) -> Result<Actor, ReviewError> {
    Actor::local_admin(caller.clone()).ok_or_else(|| {
        ReviewError::forbidden(
            "アカウント管理はコマンドラインからのみ / accounts are managed locally",
        )
    })
}

/// Listens on `path` until shutdown, one op per connection.
///
/// # Errors
/// The socket cannot be created.
pub fn serve(
    path: PathBuf,
    review: Arc<Review>,
    queues: Queues,
    mut shutdown: watch::Receiver<bool>,
) -> crate::error::Result<impl std::future::Future<Output = ()>> {
    // A socket left by a crash would refuse the bind; the pid-file lock already proves no
    // other service owns this data directory.
    let _ = std::fs::remove_file(&path);
    let listener = tokio::net::UnixListener::bind(&path)
        .map_err(|e| Error::io(path.display().to_string(), e))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| Error::io(path.display().to_string(), e))?;
    }
    Ok(async move {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = shutdown.changed() => break,
            };
            let Ok((stream, _)) = accepted else { continue };
            let review = Arc::clone(&review);
            let queues = queues.clone();
            // Who is calling, from the kernel: the audit records name this, never the
            // client's own account of itself. Unreadable credentials: no op.
            let caller = match stream.peer_cred() {
                Ok(cred) => match cred.pid().and_then(|p| u32::try_from(p).ok()) {
                    Some(pid) => cli_caller(cred.uid(), pid),
                    None => {
                        tracing::warn!(
                            "control socket: the caller's pid is unknown; connection closed"
                        );
                        continue;
                    }
                },
                Err(e) => {
                    tracing::warn!(error = %e, "control socket: no peer credentials; connection closed");
                    continue;
                }
            };
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut line = String::new();
                // One op is small: a client cannot make the service buffer more than this.
                let limited = tokio::io::AsyncReadExt::take(read, 64 * 1024);
                let mut reader = tokio::io::BufReader::new(limited);
                if reader.read_line(&mut line).await.is_err() {
                    return;
                }
                let reply = match serde_json::from_str::<Op>(&line) {
                    Ok(op) => tokio::task::spawn_blocking(move || match op {
                        Op::QueueMove { outgoing, id, to } => {
                            execute_queue(&queues, outgoing, &id, &to)
                        }
                        op => execute(&review, op, &caller),
                    })
                    .await
                    .unwrap_or_else(|e| Reply {
                        ok: false,
                        message: format!("internal error: {e}"),
                        forbidden: false,
                    }),
                    Err(e) => Reply {
                        ok: false,
                        message: format!("bad request: {e}"),
                        forbidden: false,
                    },
                };
                let mut out = serde_json::to_vec(&reply).unwrap_or_default();
                out.push(b'\n');
                let _ = write.write_all(&out).await;
            });
        }
        let _ = std::fs::remove_file(&path);
    })
}

/// Sends `op` to the running service. `Ok(None)` when no service listens.
///
/// # Errors
/// The service answered nothing usable.
pub fn call(config: &ServiceConfig, op: &Op) -> crate::error::Result<Option<Reply>> {
    let path = socket_path(config);
    let mut stream = match std::os::unix::net::UnixStream::connect(&path) {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(Error::io(path.display().to_string(), e)),
    };
    let mut line = serde_json::to_vec(op)
        .map_err(|e| Error::permanent("encoding the request").with_source(e))?;
    line.push(b'\n');
    let talk = |e| Error::io(format!("talking to the service on {}", path.display()), e);
    stream.write_all(&line).map_err(talk)?;
    let mut answer = String::new();
    BufReader::new(stream)
        .read_line(&mut answer)
        .map_err(talk)?;
    serde_json::from_str(&answer)
        .map(Some)
        .map_err(|e| Error::transient("the service's answer").with_source(e))
}

/// Runs `op` through the running service, or — when none runs — here, under the data
/// directory's lock (so there is still one audit writer).
///
/// # Errors
/// The lock is held without a socket answering, or the stores cannot be opened.
pub fn run(config: &ServiceConfig, op: Op) -> crate::error::Result<Reply> {
    if let Some(reply) = call(config, &op)? {
        return Ok(reply);
    }
    let _lock = crate::store::lock_data_dir(config)?;
    let data = &config.data.dir;
    if let Op::QueueMove { outgoing, id, to } = &op {
        // No service runs and the lock is ours: recovering the spool here is safe.
        let dir = data.join(if *outgoing { "outgoing" } else { "spool" });
        let (spool, _) = crate::store::spool::Spool::open(dir, config.data.min_free_bytes)?;
        let queues = Queues {
            intake: (Arc::clone(&spool), Arc::new(Notify::new())),
            outgoing: Some((spool, Arc::new(Notify::new()))),
        };
        return Ok(execute_queue(&queues, *outgoing, id, to));
    }
    let audit = Arc::new(crate::store::open_audit(config)?);
    let quarantine = crate::store::quarantine::open_configured(config)
        .map_err(|e| Error::io("quarantine store", e))?;
    let sink = match config.delivery.mode {
        crate::config::DeliveryMode::Maildir => crate::sink::Sink::Maildir(data.join("maildir")),
        crate::config::DeliveryMode::Relay => {
            // The relay sends it once the service starts.
            let (outgoing, _) = crate::store::spool::Spool::open(
                data.join("outgoing"),
                config.data.min_free_bytes,
            )?;
            crate::sink::Sink::Relay {
                outgoing,
                wake: Arc::new(tokio::sync::Notify::new()),
            }
        }
    };
    let review = Review::open(
        Arc::new(crate::live::Live::new(config.clone())),
        quarantine,
        audit,
        sink,
    )
    .map_err(|e| Error::transient(format!("review database: {e}")))?;
    Ok(execute(&review, op, &this_process()))
}
