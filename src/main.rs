//! The `mukaika` binary: argument parsing, terminal output and exit codes. Everything else
//! lives in the library.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{CommandFactory, Parser, Subcommand};

mod cli;

use cli::files as sanitize;
use mukaika::sanitizers::{Registry, Verdict};

/// `println!` that ends the process quietly when stdout is a closed pipe
/// (`mukaika quarantine list | head -1`), instead of std's panic. Defined before any use, it
/// shadows the prelude's macro in this file. Another write error is reported and exits 1.
macro_rules! println {
    ($($arg:tt)*) => {
        stdout_line(format_args!($($arg)*))
    };
}

/// `print!` likewise.
macro_rules! print {
    ($($arg:tt)*) => {
        stdout_write(format_args!($($arg)*), false)
    };
}

/// Writes one line to stdout; see [`println!`] above.
fn stdout_line(args: std::fmt::Arguments<'_>) {
    stdout_write(args, true)
}

fn stdout_write(args: std::fmt::Arguments<'_>, newline: bool) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let written = out
        .write_fmt(args)
        .and_then(|()| {
            if newline {
                out.write_all(b"\n")
            } else {
                Ok(())
            }
        })
        .and_then(|()| out.flush());
    if let Err(e) = written {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            // The reader has what it wanted (`head`): a normal end, like other Unix tools.
            std::process::exit(0);
        }
        eprintln!("mukaika: stdout: {e}");
        std::process::exit(1);
    }
}

#[derive(Parser)]
#[command(
    name = "mukaika",
    version,
    about = "無害化 gateway between the internet zone and LGWAN"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log lines: "text" (one line per event, never coloured) or "json" (one object a line).
    #[arg(
        long,
        value_name = "FORMAT",
        value_enum,
        default_value = "text",
        global = true
    )]
    log_format: LogFormat,
}

/// What `--log-format` accepts.
#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Sanitize files: write each rebuilt output and <name>.report.json into DIR.
    Sanitize {
        /// Input files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Output folder (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Also print every report as JSON Lines on stdout.
        #[arg(long)]
        json: bool,
        /// Policy file (TOML); the built-in safe defaults otherwise.
        #[arg(long, value_name = "FILE")]
        policy: Option<PathBuf>,
    },
    /// Run the gateway (SMTP intake, conversion workers, maildir delivery).
    Serve {
        /// Configuration file; the embedded default otherwise.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Ask the running gateway whether it is healthy (its /healthz); exits 0 when it answers
    /// 200, 1 otherwise. What a container's HEALTHCHECK runs.
    Health {
        /// Configuration file the service was started with (its admin address).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Print a shell completion script: `mukaika completions bash > /etc/bash_completion.d/mukaika`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff): `mukaika man > /usr/local/share/man/man1/mukaika.1`.
    Man,
    /// Make the running gateway re-read its configuration (the same as SIGHUP). The file is
    /// checked first; an invalid one is refused here and the service is not disturbed.
    Reload {
        /// Configuration file the service was started with; the embedded default otherwise.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Check the configuration and data against the municipal standard (対策基準) and print a
    /// Japanese table; exits 1 when any check fails, so it can run from cron.
    Selfcheck {
        /// Configuration file; the embedded default otherwise.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Import folders: sanitize what staff dropped into the configured import folders.
    Import {
        #[command(subcommand)]
        command: ImportCommand,
    },
    /// Configuration: check a file, or print the annotated default.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// The shared database of a cluster ([store] backend = "postgres").
    Store {
        #[command(subcommand)]
        command: StoreCommand,
    },
    /// The spool: list, show, retry, hold and release queued messages.
    Queue {
        #[command(subcommand)]
        command: QueueCommand,
        /// Configuration file (for the data directory); the embedded default otherwise.
        #[arg(long, value_name = "FILE", global = true)]
        config: Option<PathBuf>,
        /// Act on the outgoing (relay) queue instead of the intake queue.
        #[arg(long, global = true)]
        outgoing: bool,
    },
    /// Audit log: verify the hash chain, search records.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
        /// Configuration file (its audit directory and HMAC key); the embedded default
        /// otherwise.
        #[arg(long, value_name = "FILE", global = true)]
        config: Option<PathBuf>,
    },
    /// Mail → text conversion.
    Mail {
        #[command(subcommand)]
        command: MailCommand,
    },
    /// The quarantine: list and show items, request, approve, reject and withdraw releases,
    /// delete items — with the web UI's rules (nobody approves their own request).
    Quarantine {
        #[command(subcommand)]
        command: QuarantineCommand,
        /// Configuration file; the embedded default otherwise.
        #[arg(long, value_name = "FILE", global = true)]
        config: Option<PathBuf>,
    },
    /// Your own account of the review UI: change its password from the command line (how an
    /// account used only here leaves its one-time password).
    Account {
        #[command(subcommand)]
        command: AccountCommand,
        /// Configuration file; the embedded default otherwise.
        #[arg(long, value_name = "FILE", global = true)]
        config: Option<PathBuf>,
    },
    /// Administration: accounts of the review UI.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
        /// Configuration file; the embedded default otherwise.
        #[arg(long, value_name = "FILE", global = true)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum QuarantineCommand {
    /// List quarantined items, oldest first.
    List {
        /// Only items with this reason code.
        #[arg(long)]
        reason: Option<String>,
        /// Print JSON Lines.
        #[arg(long)]
        json: bool,
    },
    /// Show one item and its release requests.
    Show {
        /// Item ID.
        id: String,
    },
    /// List release requests (newest first).
    Requests {
        /// pending, approved, delivered, rejected or cancelled.
        #[arg(long)]
        state: Option<String>,
    },
    /// Ask for an item to be released (operator).
    RequestRelease {
        /// Item ID.
        id: String,
        /// The acting account (checked against the account store).
        #[arg(long)]
        user: String,
        /// A file holding that account's password (its first line), or `-` for standard
        /// input: the command acts only after the same check as a login (対策基準 2(9)).
        #[arg(long, value_name = "FILE")]
        password_file: PathBuf,
        /// original-recipients, to:ADDR[,ADDR…] or export:PAIR.
        #[arg(long, default_value = "original-recipients")]
        target: String,
        /// Why.
        #[arg(long)]
        reason: String,
    },
    /// Approve someone else's request (approver); the item is delivered.
    Approve {
        /// Request ID.
        request: String,
        /// The acting account.
        #[arg(long)]
        user: String,
        /// A file holding that account's password (its first line), or `-` for standard
        /// input: the command acts only after the same check as a login (対策基準 2(9)).
        #[arg(long, value_name = "FILE")]
        password_file: PathBuf,
        /// Why.
        #[arg(long)]
        reason: String,
    },
    /// Reject someone else's request (approver).
    Reject {
        /// Request ID.
        request: String,
        /// The acting account.
        #[arg(long)]
        user: String,
        /// A file holding that account's password (its first line), or `-` for standard
        /// input: the command acts only after the same check as a login (対策基準 2(9)).
        #[arg(long, value_name = "FILE")]
        password_file: PathBuf,
        /// Why.
        #[arg(long)]
        reason: String,
    },
    /// Withdraw a pending request (operator).
    Cancel {
        /// Request ID.
        request: String,
        /// The acting account.
        #[arg(long)]
        user: String,
        /// A file holding that account's password (its first line), or `-` for standard
        /// input: the command acts only after the same check as a login (対策基準 2(9)).
        #[arg(long, value_name = "FILE")]
        password_file: PathBuf,
        /// Why.
        #[arg(long)]
        reason: String,
    },
    /// Unlock a held password-protected item (operator): the content is sanitized and the
    /// result delivered to the item's recipients; the encrypted original stays held.
    Unlock {
        /// Item ID.
        id: String,
        /// The acting account.
        #[arg(long)]
        user: String,
        /// A file holding that account's password (its first line), or `-` for standard
        /// input: the command acts only after the same check as a login (対策基準 2(9)).
        #[arg(long, value_name = "FILE")]
        password_file: PathBuf,
        /// A file holding the archive's password (its first line), or `-` for standard input.
        /// Never on the command line itself, where `ps` and the shell history would show it.
        #[arg(long, value_name = "FILE")]
        archive_password_file: PathBuf,
    },
    /// Delete an item (approver).
    Delete {
        /// Item ID.
        id: String,
        /// The acting account.
        #[arg(long)]
        user: String,
        /// A file holding that account's password (its first line), or `-` for standard
        /// input: the command acts only after the same check as a login (対策基準 2(9)).
        #[arg(long, value_name = "FILE")]
        password_file: PathBuf,
        /// Why.
        #[arg(long)]
        reason: String,
    },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Accounts of the review UI.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
}

#[derive(Subcommand)]
enum AccountCommand {
    /// Change an account's password: the current one (the one-time one, the first time) from
    /// --password-file, the new one from --new-password-file (the review UI's rules apply).
    Password {
        /// The account.
        #[arg(long)]
        user: String,
        /// A file holding the current password (its first line), or `-` for standard input.
        #[arg(long, value_name = "FILE")]
        password_file: PathBuf,
        /// A file holding the new password (its first line).
        #[arg(long, value_name = "FILE")]
        new_password_file: PathBuf,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create an account; prints a one-time password that must be changed at first login.
    Add {
        /// Account name ([A-Za-z0-9._-], up to 32).
        name: String,
        /// operator, approver, auditor or admin; several with commas (operator,approver).
        #[arg(long)]
        role: String,
    },
    /// Give an account a new one-time password (and unlock it).
    Reset {
        /// Account name.
        name: String,
    },
    /// Unlock an account locked after failed logins.
    Unlock {
        /// Account name.
        name: String,
    },
    /// Disable an account (a transfer, a leave): it stays with its history, cannot log in,
    /// and its sessions end. The last enabled administrator cannot be disabled.
    Disable {
        /// Account name.
        name: String,
    },
    /// Enable a disabled account.
    Enable {
        /// Account name.
        name: String,
    },
    /// Delete an account: its sessions end and its pending release requests are withdrawn.
    /// The last enabled administrator cannot be deleted.
    Delete {
        /// Account name.
        name: String,
    },
    /// Give an account other roles (its sessions end). The last enabled administrator keeps
    /// the admin role.
    Role {
        /// Account name.
        name: String,
        /// operator, approver, auditor or admin; several with commas (operator,approver).
        #[arg(long)]
        role: String,
    },
    /// List accounts.
    List,
}

#[derive(Subcommand)]
enum QueueCommand {
    /// List queued items (all states, or one).
    List {
        /// incoming, active, deferred, hold or corrupt.
        #[arg(long)]
        state: Option<String>,
    },
    /// Show one item's metadata.
    Show {
        /// Queue ID.
        id: String,
    },
    /// Retry a deferred or held item now.
    Retry {
        /// Queue ID.
        id: String,
    },
    /// Hold an item until released.
    Hold {
        /// Queue ID.
        id: String,
    },
    /// Release a held item.
    Release {
        /// Queue ID.
        id: String,
    },
}

#[derive(Subcommand)]
enum StoreCommand {
    /// Bring the PostgreSQL schema up to the version this mukaika knows (every step in one
    /// transaction; nodes refuse to start until it has run, and on a newer schema).
    Migrate {
        /// Configuration file naming the database ([store] url).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Copy this node's quarantine, accounts and release requests (its data directory) into
    /// the cluster's database. Run with the node's service stopped; running it again copies
    /// nothing twice.
    Copy {
        /// Where from: the node's own stores.
        #[arg(long, value_parser = ["sqlite"])]
        from: String,
        /// Where to: the database [store] names.
        #[arg(long, value_parser = ["postgres"])]
        to: String,
        /// The node's configuration file (its data directory, and [store] url).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate a configuration file (or the embedded default).
    Check {
        /// The file.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Print the annotated embedded default.
    Default,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Walk the chain; report the first edit, gap, reordering, truncation or bad HMAC. In a
    /// cluster (`[store] backend = "postgres"`) also check the copies in PostgreSQL: every
    /// node's chain, and this node's copies against its files. Exit 0 only when intact.
    Verify {
        /// The audit directory; the configured one (`<data>/audit`) otherwise.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Start at the first file of this day (YYYY-MM-DD).
        #[arg(long, value_name = "DATE")]
        from: Option<String>,
        /// File holding the HMAC key the log was written with.
        #[arg(long, value_name = "FILE")]
        hmac_key_file: Option<PathBuf>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Find records by ID, sender, recipient, SHA-256, verdict and time. In a cluster, every
    /// node's records (their copies in PostgreSQL), each with its node.
    Search {
        /// The audit directory (this node's files only); the configured one (`<data>/audit`),
        /// or in a cluster every node's copies, otherwise.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Message-ID, queue ID or quarantine item ID.
        #[arg(long)]
        id: Option<String>,
        /// Envelope sender.
        #[arg(long)]
        sender: Option<String>,
        /// Recipient.
        #[arg(long)]
        recipient: Option<String>,
        /// SHA-256 (a prefix is enough).
        #[arg(long)]
        sha256: Option<String>,
        /// Verdict or outcome.
        #[arg(long)]
        verdict: Option<String>,
        /// At or after this time: local time ([ui] timezone, Japan time by default) as
        /// 2026-11-27 or 2026-11-27 09:30, or RFC 3339 with a zone (2026-11-27T00:30:00Z).
        #[arg(long)]
        since: Option<String>,
        /// Before this time (the same forms).
        #[arg(long)]
        until: Option<String>,
        /// An account that acted or was acted on.
        #[arg(long)]
        user: Option<String>,
        /// Print JSON Lines instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum ImportCommand {
    /// One pass over every import folder without the daemon (for cron or a test); prints a
    /// summary table. Refused while `mukaika serve` runs on the same data (it imports itself).
    Once {
        /// Configuration file; the embedded default otherwise.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum MailCommand {
    /// Convert messages: DIR/<id>.eml (when delivered), DIR/<id>.report.json, DIR/quarantine/.
    Convert {
        /// Message files (.eml); `-` reads one from standard input.
        #[arg(required = true)]
        files: Vec<String>,
        /// Output folder (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Also print every report as JSON Lines on stdout.
        #[arg(long)]
        json: bool,
        /// Policy file (TOML); the built-in safe defaults otherwise.
        #[arg(long, value_name = "FILE")]
        policy: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    mukaika::store::restrict_umask();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("mukaika: {}", shown(&format!("{e:#}")));
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Sanitize {
            files,
            out,
            json,
            policy,
        } => sanitize_files(files, out, json, policy),
        Command::Audit { command, config } => audit(command, config.as_deref()),
        Command::Queue {
            command,
            config,
            outgoing,
        } => queue(command, config, outgoing),
        Command::Serve { config } => serve(config, cli.log_format),
        Command::Health { config } => cli::ops::health(config.as_deref()),
        Command::Completions { shell } => {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "mukaika", &mut out);
            print!("{}", String::from_utf8_lossy(&out));
            Ok(ExitCode::SUCCESS)
        }
        Command::Man => {
            let mut out = Vec::new();
            clap_mangen::Man::new(Cli::command()).render(&mut out)?;
            print!("{}", String::from_utf8_lossy(&out));
            Ok(ExitCode::SUCCESS)
        }
        Command::Reload { config } => reload(config),
        Command::Import {
            command: ImportCommand::Once { config },
        } => import_once(config.as_deref()),
        Command::Selfcheck { config } => {
            let (config, _) = match service_config(config.as_deref()) {
                Ok(c) => c,
                Err(code) => return Ok(code),
            };
            let checks = mukaika::admin::selfcheck::run(&config);
            print!("{}", mukaika::admin::selfcheck::table(&checks));
            Ok(if checks.iter().all(|c| c.ok) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Config {
            command: ConfigCommand::Default,
        } => {
            print!("{}", mukaika::config::DEFAULT_TOML);
            Ok(ExitCode::SUCCESS)
        }
        Command::Config {
            command: ConfigCommand::Check { config },
        } => match mukaika::config::ServiceConfig::load(config.as_deref()) {
            Ok((c, _)) => {
                println!(
                    "設定は有効です (SMTP {}, データ {})",
                    c.smtp.listen,
                    c.data.dir.display()
                );
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprintln!("mukaika: 設定エラー: {e}");
                Ok(ExitCode::from(2))
            }
        },
        Command::Store {
            command: StoreCommand::Migrate { config },
        } => store_migrate(config.as_deref()),
        Command::Store {
            command: StoreCommand::Copy { config, .. },
        } => store_copy(config.as_deref()),
        Command::Quarantine { command, config } => quarantine(command, config.as_deref()),
        Command::Admin {
            command: AdminCommand::User { command },
            config,
        } => users(command, config.as_deref()),
        Command::Account {
            command:
                AccountCommand::Password {
                    user,
                    password_file,
                    new_password_file,
                },
            config,
        } => {
            let (config, _) = match service_config(config.as_deref()) {
                Ok(c) => c,
                Err(code) => return Ok(code),
            };
            let old = match proof(&password_file) {
                Ok(p) => p,
                Err(code) => return Ok(code),
            };
            let new = match secret_file(&new_password_file) {
                Ok(p) => p,
                Err(code) => return Ok(code),
            };
            act(
                &config,
                mukaika::admin::control::Op::ChangePassword {
                    user,
                    old: old.password,
                    new,
                },
            )
        }
        Command::Mail {
            command:
                MailCommand::Convert {
                    files,
                    out,
                    json,
                    policy,
                },
        } => convert_mail(files, out, json, policy),
    }
}

fn sanitize_files(
    files: Vec<PathBuf>,
    out: PathBuf,
    json: bool,
    policy: Option<PathBuf>,
) -> Result<ExitCode> {
    let (registry, policy) = match batch_setup(policy.as_deref(), &out) {
        Ok(v) => v,
        Err(code) => return Ok(code),
    };
    let bar = (files.len() > 1 && std::io::stderr().is_terminal()).then(|| {
        let bar = indicatif::ProgressBar::new(files.len() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} {wide_msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let mut failed = false;
    let mut usage = false;
    for file in &files {
        if let Some(bar) = &bar {
            bar.set_message(shown_path(file));
        }
        match sanitize::process_file(file, &out, &registry, &policy) {
            Ok(done) => {
                if json {
                    println!("{}", shown_json(serde_json::to_string(&done.report)?));
                }
                let line = match (&done.report.verdict, &done.output) {
                    (Verdict::Sanitized | Verdict::Passed, Some(path)) => {
                        format!(
                            "{}: {} -> {}",
                            shown_path(file),
                            done.report.verdict.label_ja(),
                            shown_path(path)
                        )
                    }
                    _ => format!(
                        "{}: {} ({})",
                        shown_path(file),
                        done.report.verdict.label_ja(),
                        done.report
                            .reason
                            .as_ref()
                            .map(|r| r.description_ja())
                            .unwrap_or("")
                    ),
                };
                match &bar {
                    Some(bar) => bar.println(line),
                    None if !json => eprintln!("{line}"),
                    None => {}
                }
            }
            Err(e) => {
                usage |= e.is_usage();
                failed = true;
                eprintln!("mukaika: {}", shown(&e.to_string()));
            }
        }
        if let Some(bar) = &bar {
            bar.inc(1);
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    Ok(if usage {
        ExitCode::from(2)
    } else if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn convert_mail(
    files: Vec<String>,
    out: PathBuf,
    json: bool,
    policy: Option<PathBuf>,
) -> Result<ExitCode> {
    let (registry, policy) = match batch_setup(policy.as_deref(), &out) {
        Ok(v) => v,
        Err(code) => return Ok(code),
    };
    let (mut failed, mut usage) = (false, false);
    for file in &files {
        match cli::mail::convert_file(file, &out, &registry, &policy) {
            Ok(done) => {
                if json {
                    println!("{}", shown_json(serde_json::to_string(&done.report)?));
                } else {
                    let verdict = match done.report.verdict {
                        mukaika::sanitizers::mail::MailVerdict::Delivered => "変換済み",
                        mukaika::sanitizers::mail::MailVerdict::Quarantined => "隔離",
                        mukaika::sanitizers::mail::MailVerdict::Blocked => "削除",
                    };
                    let detail = match (&done.output, &done.report.reason) {
                        (Some(path), _) => format!("-> {}", shown_path(path)),
                        // The label lists use, and the code; the detail is in the JSON report.
                        (None, Some(r)) => format!("({} [{}])", r.description_ja(), shown(&r.code)),
                        (None, None) => String::new(),
                    };
                    eprintln!("{}: {verdict} {detail}", shown(&done.input));
                }
            }
            Err(e) => {
                usage |= e.is_usage();
                failed = true;
                eprintln!("mukaika: {}", shown(&e.to_string()));
            }
        }
    }
    Ok(if usage {
        ExitCode::from(2)
    } else if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Where `audit` commands read: the audit directory (`--dir` or `<data>/audit`), the configured
/// HMAC key file, and in a cluster (`[store] backend = "postgres"`) the database and this
/// node's name.
type AuditPlace = (
    PathBuf,
    Option<PathBuf>,
    Option<(mukaika::config::StoreSection, String)>,
);

fn audit_dir(
    dir: Option<PathBuf>,
    config: Option<&std::path::Path>,
) -> std::result::Result<AuditPlace, ExitCode> {
    let (config, _) = service_config(config)?;
    let cluster = (config.store.backend == mukaika::config::StoreBackend::Postgres)
        .then(|| (config.store.clone(), config.audit.node.clone()));
    Ok((
        dir.unwrap_or_else(|| config.data.dir.join("audit")),
        config.audit.hmac_key_file.clone(),
        cluster,
    ))
}

/// A `--since`/`--until` value as the audit log's UTC timestamp, or exit 2 naming the forms
/// accepted (a typo must not read as "no limit").
fn audit_time(flag: &str, value: Option<String>) -> std::result::Result<Option<String>, ExitCode> {
    match value {
        None => Ok(None),
        Some(v) => match mukaika::clock::parse_people_time(&v) {
            Some(ms) => Ok(Some(mukaika::clock::rfc3339_utc(ms))),
            None => {
                eprintln!(
                    "mukaika: {flag} {}: 日時は 2026-11-27、2026-11-27 09:30（[ui] timezone の時刻、既定は日本時間）または 2026-11-27T00:30:00Z の形で / use 2026-11-27, 2026-11-27 09:30 (local time, [ui] timezone) or RFC 3339 with a zone",
                    shown(&v)
                );
                Err(ExitCode::from(2))
            }
        },
    }
}

fn audit(command: AuditCommand, config: Option<&std::path::Path>) -> Result<ExitCode> {
    use mukaika::audit;
    match command {
        AuditCommand::Verify {
            dir,
            from,
            hmac_key_file,
            json,
        } => {
            let explicit_dir = dir.is_some();
            let (dir, configured_key, cluster) = match audit_dir(dir, config) {
                Ok(d) => d,
                Err(code) => return Ok(code),
            };
            // The copies are this node's and its peers': not for a folder named on the line.
            let cluster = cluster.filter(|_| !explicit_dir);
            let key = match hmac_key_file.or(configured_key) {
                Some(path) => Some(
                    std::fs::read(&path)
                        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?,
                ),
                None => None,
            };
            let day = from.map(|d| d.replace('-', ""));
            let key = key.as_deref().map(|k| k.trim_ascii());
            let report = audit::verify(&dir, key, day.as_deref())?;
            // In a cluster, the copies in PostgreSQL too: every node's chain, and this node's
            // copies against its own files. A database that cannot be read fails the command
            // after the local result is shown.
            let copies = cluster.as_ref().map(|(store, node)| {
                mukaika::store::postgres::Pg::shared(store)
                    .and_then(|pg| {
                        mukaika::store::audit_copies::verify(&pg, node, &dir, key, false)
                    })
                    .map_err(|e| e.to_string())
            });
            if json {
                let mut value = serde_json::to_value(&report)?;
                if let (Some(copies), Some(map)) = (&copies, value.as_object_mut()) {
                    match copies {
                        Ok(c) => map.insert("copies".into(), serde_json::to_value(c)?),
                        Err(e) => map.insert("copies_error".into(), e.clone().into()),
                    };
                }
                println!("{}", shown_json(serde_json::to_string_pretty(&value)?));
            } else {
                for note in &report.notes {
                    println!("注記: {}", shown(note));
                }
                match &report.problem {
                    None => println!(
                        "監査ログの連鎖は完全です（{} ファイル、{} 件）。",
                        report.files, report.records
                    ),
                    Some(p) => println!(
                        "監査ログの連鎖が壊れています: {}:{}: {} — {}",
                        shown(&p.file),
                        p.line,
                        p.kind,
                        shown(&p.detail)
                    ),
                }
                match &copies {
                    Some(Ok(c)) => print_copies(c),
                    Some(Err(e)) => println!(
                        "PostgreSQL の写しを検証できません / cannot verify the copies in PostgreSQL: {}",
                        shown(e)
                    ),
                    None => {}
                }
            }
            let copies_intact = match &copies {
                None => true,
                Some(Ok(c)) => c.intact(),
                Some(Err(_)) => false,
            };
            Ok(if report.intact() && copies_intact {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        AuditCommand::Search {
            dir,
            id,
            sender,
            recipient,
            sha256,
            verdict,
            since,
            until,
            user,
            json,
        } => {
            let explicit_dir = dir.is_some();
            let (dir, _, cluster) = match audit_dir(dir, config) {
                Ok(d) => d,
                Err(code) => return Ok(code),
            };
            // A cluster's search spans every node's copies, unless a folder was named.
            let cluster = cluster.filter(|_| !explicit_dir);
            let (since, until) = match (audit_time("--since", since), audit_time("--until", until))
            {
                (Ok(s), Ok(u)) => (s, u),
                (Err(code), _) | (_, Err(code)) => return Ok(code),
            };
            let filter = audit::Search {
                id,
                sender,
                recipient,
                sha256,
                verdict,
                since,
                until,
                user,
            };
            let records = match &cluster {
                Some((store, _)) => mukaika::store::postgres::Pg::shared(store)
                    .and_then(|pg| mukaika::store::audit_copies::search(&pg, &filter))
                    .map_err(|e| anyhow::anyhow!(e))?,
                None => audit::search(&dir, &filter)?,
            };
            for r in &records {
                if json {
                    println!(
                        "{}",
                        shown_json(
                            serde_json::json!({"seq": r.seq, "ts": r.ts, "node": r.node, "event": r.event})
                                .to_string()
                        )
                    );
                } else {
                    let kind = r.event.get("type").and_then(|t| t.as_str()).unwrap_or("");
                    let id = ["queue_id", "item_id", "message_id"]
                        .iter()
                        .find_map(|k| r.event.get(*k).and_then(|v| v.as_str()))
                        .unwrap_or("");
                    let verdict = ["verdict", "outcome", "reason"]
                        .iter()
                        .find_map(|k| r.event.get(*k).and_then(|v| v.as_str()))
                        .unwrap_or("");
                    if cluster.is_some() {
                        print!("{:<16} ", shown(&r.node));
                    }
                    println!(
                        "{:>8}  {}  {:<20} {:<28} {}",
                        r.seq,
                        // People read this listing: local time, marked (--json keeps UTC).
                        shown(&mukaika::clock::local_display_of(&r.ts)),
                        shown(kind),
                        shown(id),
                        shown(verdict)
                    );
                }
            }
            if !json {
                eprintln!("{} 件", records.len());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The copies part of `audit verify`, in Japanese and English.
fn print_copies(c: &mukaika::store::audit_copies::CopiesReport) {
    for n in &c.nodes {
        println!(
            "PostgreSQL の写し: ノード {} — {} 件（#{}–#{}） / copies of node {}: {} records (#{}–#{})",
            shown(&n.node),
            n.records,
            n.first,
            n.last,
            shown(&n.node),
            n.records,
            n.first,
            n.last
        );
    }
    for note in &c.notes {
        println!("注記 / note: {}", shown(note));
    }
    for p in &c.problems {
        println!(
            "写しの{} / {} copy: ノード node {} #{}: {}",
            p.kind_ja(),
            p.kind,
            shown(&p.node),
            p.seq,
            shown(&p.detail)
        );
    }
    if c.problem_count as usize > c.problems.len() {
        println!(
            "ほか {} 件 / and {} more",
            c.problem_count as usize - c.problems.len(),
            c.problem_count as usize - c.problems.len()
        );
    }
    println!(
        "このノード（{}）の未複写の記録: {} 件 / records of this node not copied yet: {}",
        shown(&c.this_node),
        c.not_copied,
        c.not_copied
    );
    if c.intact() {
        println!("PostgreSQL の写しは完全です。 / The copies in PostgreSQL are intact.");
    } else {
        println!(
            "PostgreSQL の写しに問題があります（{} 件）。 / The copies in PostgreSQL have {} problem(s).",
            c.problem_count, c.problem_count
        );
    }
}

fn serve(config: Option<PathBuf>, log_format: LogFormat) -> Result<ExitCode> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    match log_format {
        // Every line through the escaping writer: names and subjects in log fields come from
        // senders. Never coloured, on a terminal or not: the writer escapes every ESC, so a
        // colour code would reach the journal as literal `\u{1b}[32m` text, and an escape seen
        // in a line is then always one a field carried.
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .with_writer(mukaika::logging::escaping(std::io::stdout, true))
            .init(),
        LogFormat::Text => tracing_subscriber::fmt()
            .with_ansi(false)
            .with_env_filter(filter)
            .with_writer(mukaika::logging::escaping(std::io::stdout, false))
            .init(),
    }
    let (initial, text) = match service_config(config.as_deref()) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let source = config
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "embedded-default".into());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let running = mukaika::service::start(initial, &source, &text)
            .await
            .map_err(|e| anyhow::anyhow!(e))?;
        eprintln!(
            "mukaika: SMTP を {} で待ち受けています（Ctrl-C で停止）",
            running.smtp_addr
        );
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let mut hangup = signal(SignalKind::hangup())?;
        let reason = loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break "interrupt",
                _ = term.recv() => break "terminate",
                _ = hangup.recv() => match service_config(config.as_deref()) {
                    Ok((new, text)) => match running.reload(new, &source, &text) {
                        Ok(pending) if pending.is_empty() => eprintln!("mukaika: 設定を再読み込みしました"),
                        Ok(pending) => eprintln!("mukaika: 設定を再読み込みしました（再起動まで反映されない項目: {}）", pending.join(", ")),
                        Err(e) => tracing::error!(error = %e, "reload not applied"),
                    },
                    // service_config has said what is wrong; the running configuration stays.
                    Err(_) => tracing::error!("invalid configuration; the running one stays in force"),
                },
            }
        };
        running.stop(reason).await;
        Ok::<_, anyhow::Error>(ExitCode::SUCCESS)
    })
}

fn reload(config: Option<PathBuf>) -> Result<ExitCode> {
    let (service, _) = match service_config(config.as_deref()) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let pid_file = mukaika::store::pid_file(&service);
    let pid = std::fs::read_to_string(&pid_file)
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
        .and_then(rustix::process::Pid::from_raw);
    let Some(pid) = pid else {
        eprintln!(
            "mukaika: 稼働中のサービスが見つかりません ({} がありません)",
            pid_file.display()
        );
        return Ok(ExitCode::from(1));
    };
    // A pid file left by a killed service may name an unrelated process by now, and SIGHUP
    // ends most programs: signal only a process that is mukaika.
    let comm =
        std::fs::read_to_string(format!("/proc/{}/comm", pid.as_raw_nonzero())).unwrap_or_default();
    if comm.trim_end() != "mukaika" {
        eprintln!(
            "mukaika: {} は古いファイルです (pid {} は mukaika ではありません)",
            pid_file.display(),
            pid.as_raw_nonzero()
        );
        return Ok(ExitCode::from(1));
    }
    match rustix::process::kill_process(pid, rustix::process::Signal::HUP) {
        Ok(()) => {
            println!("再読み込みを依頼しました (pid {})", pid.as_raw_nonzero());
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!(
                "mukaika: pid {} に通知できません: {e}",
                pid.as_raw_nonzero()
            );
            Ok(ExitCode::from(1))
        }
    }
}

fn queue(command: QueueCommand, config: Option<PathBuf>, outgoing: bool) -> Result<ExitCode> {
    let (service, _) = match service_config(config.as_deref()) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let dir = service
        .data
        .dir
        .join(if outgoing { "outgoing" } else { "spool" });
    const STATES: [&str; 5] = ["incoming", "active", "deferred", "hold", "corrupt"];
    if let QueueCommand::List { state: Some(w) } = &command {
        if !STATES.contains(&w.as_str()) {
            eprintln!(
                "mukaika: --state {}: {} のどれか / one of them",
                shown(w),
                STATES.join(", ")
            );
            return Ok(ExitCode::from(2));
        }
    }
    if !dir.exists() {
        if matches!(command, QueueCommand::List { .. }) {
            // Nothing was ever queued here: an empty list, not an error.
            eprintln!("0 件");
            return Ok(ExitCode::SUCCESS);
        }
        eprintln!("mukaika: no queue at {}", dir.display());
        return Ok(ExitCode::from(1));
    }
    // Moves go through the running service (or run here under the data directory's lock);
    // never a second process recovering the spool under the service's workers.
    let moved = |id: String, to: &str| {
        act(
            &service,
            mukaika::admin::control::Op::QueueMove {
                outgoing,
                id,
                to: to.into(),
            },
        )
    };
    // Listing and showing only read: whoever owns the spool may be working in it right now.
    let inspect =
        || mukaika::store::spool::Spool::inspect(&dir).map_err(|e| anyhow::anyhow!("{e}"));
    match command {
        QueueCommand::Retry { id } | QueueCommand::Release { id } => moved(id, "incoming"),
        QueueCommand::Hold { id } => moved(id, "hold"),
        QueueCommand::List { state } => {
            let spool = inspect()?;
            let mut count = 0usize;
            for s in STATES
                .iter()
                .filter(|s| state.as_deref().is_none_or(|w| w == **s))
            {
                for m in spool.list(s) {
                    count += 1;
                    println!(
                        "{:<24} {:<9} {:>9}  {}  {} -> {}  {}",
                        shown(&m.id),
                        s,
                        m.size,
                        shown(&mukaika::clock::local_display_of(&m.received_at)),
                        shown(&m.envelope.mail_from),
                        shown(&m.envelope.rcpt_to.join(",")),
                        shown(&m.last_error.unwrap_or_default())
                    );
                }
            }
            eprintln!("{count} 件");
            Ok(ExitCode::SUCCESS)
        }
        QueueCommand::Show { id } => match inspect()?.find(&id) {
            Some((state, meta)) => {
                println!(
                    "{}",
                    shown_json(serde_json::to_string_pretty(
                        &serde_json::json!({"state": state, "item": meta})
                    )?)
                );
                Ok(ExitCode::SUCCESS)
            }
            None => {
                eprintln!("mukaika: {id}: no such queue item");
                Ok(ExitCode::from(1))
            }
        },
    }
}

/// The registry and policy for a batch command, and its output folder ready: a bad policy is a
/// usage error (2), an unwritable folder a failure (1).
fn batch_setup(
    policy: Option<&std::path::Path>,
    out: &std::path::Path,
) -> std::result::Result<(Registry, mukaika::sanitizers::Policy), ExitCode> {
    let registry =
        Registry::standard_with_fonts(mukaika::fonts::source(mukaika::fonts::default_dirs()));
    let policy = sanitize::load_policy(policy, &registry).map_err(|e| {
        eprintln!("mukaika: {}", shown(&e.to_string()));
        ExitCode::from(2)
    })?;
    sanitize::prepare_out_dir(out).map_err(|e| {
        eprintln!("mukaika: {}", shown(&e.to_string()));
        ExitCode::from(1)
    })?;
    Ok((registry, policy))
}

/// `mukaika import once`: one pass with the service's audit log and quarantine.
fn import_once(config: Option<&std::path::Path>) -> anyhow::Result<ExitCode> {
    let (config, text) = match service_config(config) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    // One writer per audit chain: while `mukaika serve` (or another pass) holds the data
    // directory, it does the importing.
    let _lock = match mukaika::store::lock_data_dir(&config) {
        Ok(lock) => lock,
        Err(e) => {
            eprintln!("mukaika: {}", shown(&e.to_string()));
            return Ok(ExitCode::from(2));
        }
    };
    let data = config.data.dir.clone();
    let audit =
        std::sync::Arc::new(mukaika::store::open_audit(&config).map_err(anyhow::Error::msg)?);
    audit.append(mukaika::audit::AuditEvent::ConfigLoaded(
        mukaika::audit::event::ConfigLoaded {
            source: "import once".into(),
            sha256: mukaika::sanitizers::report::sha256_hex(text.as_bytes()),
        },
    ))?;
    let quarantine = mukaika::store::quarantine::open_configured(&config)?;
    let clamd = mukaika::service::clamd(&config).map_err(anyhow::Error::msg)?;
    let registry = std::sync::Arc::new(mukaika::service::registry(&config, clamd.as_ref()));
    let importer = mukaika::source::import::Importer::new(
        config.import.clone(),
        &data,
        registry,
        audit,
        quarantine,
    )
    .with_cluster(&config.store, &config.audit.node)
    .map_err(anyhow::Error::msg)?;
    for problem in importer.create_folders() {
        eprintln!("mukaika: {}", shown(&problem));
    }
    let summary = importer.pass(&config.policy, false);
    println!("フォルダ\tファイル\t判定\t出力\t隔離ID");
    for p in &summary.processed {
        println!(
            "{}\t{}\t{}\t{}\t{}",
            shown(&p.pair),
            shown(&p.path),
            p.verdict.label_ja(),
            shown(p.output.as_deref().unwrap_or("-")),
            shown(p.quarantine_id.as_deref().unwrap_or("-"))
        );
    }
    for f in &summary.failed {
        println!(
            "{}\t{}\tエラー (取り込みフォルダに残ります)\t-\t{}",
            shown(&f.pair),
            shown(&f.path),
            shown(&f.error)
        );
    }
    // Links, FIFOs and hard-linked files are refused without being touched (#22): say so here
    // as well as in the log and the audit record, so whoever runs the pass sees why a file stays.
    for f in &summary.skipped {
        println!(
            "{}	{}	対象外 (取り込みフォルダに残ります)	-	{}",
            shown(&f.pair),
            shown(&f.path),
            shown(&f.error)
        );
    }
    println!(
        "処理 {} 件、エラー {} 件、対象外 {} 件、待機中 {} 件",
        summary.processed.len(),
        summary.failed.len(),
        summary.skipped.len(),
        summary.waiting
    );
    Ok(if summary.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Sends a review action to the running service (or runs it here under the data lock) and
/// prints the answer: exit 0 done, 77 refused for permission, 1 otherwise.
fn act(
    config: &mukaika::config::ServiceConfig,
    op: mukaika::admin::control::Op,
) -> Result<ExitCode> {
    let reply = mukaika::admin::control::run(config, op).map_err(anyhow::Error::msg)?;
    // Line by line: the service's messages have several lines (a one-time password on its
    // own), and each line is escaped for the terminal on its own.
    if reply.ok {
        for line in reply.message.lines() {
            println!("{}", shown(line));
        }
        Ok(ExitCode::SUCCESS)
    } else {
        for line in reply.message.lines() {
            eprintln!("mukaika: {}", shown(line));
        }
        Ok(ExitCode::from(if reply.forbidden { 77 } else { 1 }))
    }
}

fn quarantine(command: QuarantineCommand, config: Option<&std::path::Path>) -> Result<ExitCode> {
    use mukaika::admin::control::Op;
    let (config, _) = match service_config(config) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let data = config.data.dir.clone();
    match command {
        QuarantineCommand::List { reason, json } => {
            let store = mukaika::store::quarantine::open_configured(&config)?;
            // JSON lines only under --json: a header row is not JSON.
            if !json {
                println!("隔離ID	日時	経路	理由	名前	差出人	宛先");
            }
            for item in store.list()? {
                if reason.as_ref().is_some_and(|r| *r != item.reason) {
                    continue;
                }
                if json {
                    println!("{}", shown_json(serde_json::to_string(&item)?));
                } else {
                    println!(
                        "{}	{}	{}	{}	{}	{}	{}",
                        shown(&item.id),
                        shown(&mukaika::clock::local_display_of(&item.at)),
                        source_ja(&item.source),
                        // The words the notices and the web UI use, and the code --reason takes.
                        format_args!(
                            "{} [{}]",
                            mukaika::sink::notice::reason_ja(&item.reason),
                            shown(&item.reason)
                        ),
                        shown(item.name.as_deref().unwrap_or("(メール全体)")),
                        shown(item.mail_from.as_deref().unwrap_or("-")),
                        shown(&item.rcpt_to.join(","))
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        QuarantineCommand::Show { id } => {
            if !mukaika::store::quarantine::valid_id(&id) {
                eprintln!("mukaika: 隔離IDの形式が正しくありません / malformed item ID");
                return Ok(ExitCode::from(2));
            }
            let store = mukaika::store::quarantine::open_configured(&config)?;
            let item = match store.get(&id) {
                Ok(i) => i,
                Err(e) => {
                    eprintln!("mukaika: {}", shown(&e.to_string()));
                    return Ok(ExitCode::from(1));
                }
            };
            // For people first (local time, plain Japanese), then the record as it is (UTC,
            // codes) for whoever needs the detail.
            let verdict = item
                .report
                .get("verdict")
                .and_then(|v| serde_json::from_value::<Verdict>(v.clone()).ok())
                .unwrap_or(Verdict::Quarantined);
            println!("隔離ID: {}", shown(&item.id));
            println!(
                "隔離日時: {}",
                shown(&mukaika::clock::local_display_of(&item.at))
            );
            println!(
                "経路: {} ({})",
                source_ja(&item.source),
                shown(&item.origin_id)
            );
            println!(
                "名前: {}",
                shown(item.name.as_deref().unwrap_or("(メール全体)"))
            );
            println!("判定: {}", verdict.label_ja());
            println!(
                "理由: {} [{}]",
                mukaika::sink::notice::reason_ja(&item.reason),
                shown(&item.reason)
            );
            println!(
                "説明: {}",
                shown(&mukaika::sink::notice::explain_item_ja(&item))
            );
            if let Some(from) = &item.mail_from {
                println!("差出人: {}", shown(from));
                println!("宛先: {}", shown(&item.rcpt_to.join(", ")));
                println!("件名: {}", shown(item.subject.as_deref().unwrap_or("")));
            }
            println!("大きさ: {} バイト", item.size);
            println!("SHA-256: {}", shown(&item.sha256));
            println!("--- 記録 (JSON, 時刻は UTC) ---");
            // Line by line: escaping the whole pretty text would turn its newlines into \u000a.
            for line in serde_json::to_string_pretty(&item)?.lines() {
                println!("{}", shown_json(line.to_string()));
            }
            if let Ok(Some(u)) = mukaika::ppap::unlocked_state(&data, &id) {
                println!(
                    "パスワード解除済み / unlocked: {} ({}), {} → {}",
                    shown(&mukaika::clock::local_display_of(&u.at)),
                    u.way,
                    u.verdict,
                    shown(&u.destination)
                );
            }
            for r in mukaika::review::requests_in(&config, None)?
                .into_iter()
                .filter(|r| r.item_id == id)
            {
                println!(
                    "申請 {} ({}): {} ({}), 申請者 {}, 理由 {}, 判断 {} {}",
                    shown(&r.id),
                    shown(&mukaika::clock::local_display_of(&r.requested_at)),
                    r.state.label_ja(),
                    shown(&r.target.to_string()),
                    shown(&r.requester),
                    shown(&r.reason),
                    shown(r.decided_by.as_deref().unwrap_or("-")),
                    shown(r.decision_reason.as_deref().unwrap_or(""))
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        QuarantineCommand::Requests { state } => {
            let state = state.as_deref().map(mukaika::review::RequestState::parse);
            println!("申請ID	隔離ID	申請日時	状態	申請者	宛先・出力先	理由	判断者");
            for r in mukaika::review::requests_in(&config, state)? {
                println!(
                    "{}	{}	{}	{}	{}	{}	{}	{}",
                    shown(&r.id),
                    shown(&r.item_id),
                    shown(&mukaika::clock::local_display_of(&r.requested_at)),
                    // The state words the web UI and `quarantine show` use.
                    r.state.label_ja(),
                    shown(&r.requester),
                    shown(&r.target.to_string()),
                    shown(&r.reason),
                    shown(r.decided_by.as_deref().unwrap_or("-"))
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        QuarantineCommand::RequestRelease {
            id,
            user,
            password_file,
            target,
            reason,
        } => act(
            &config,
            Op::RequestRelease {
                user,
                auth: match proof(&password_file) {
                    Ok(p) => p,
                    Err(code) => return Ok(code),
                },
                item: id,
                target,
                reason,
            },
        ),
        QuarantineCommand::Approve {
            request,
            user,
            password_file,
            reason,
        } => act(
            &config,
            Op::Approve {
                user,
                auth: match proof(&password_file) {
                    Ok(p) => p,
                    Err(code) => return Ok(code),
                },
                request,
                reason,
            },
        ),
        QuarantineCommand::Reject {
            request,
            user,
            password_file,
            reason,
        } => act(
            &config,
            Op::Reject {
                user,
                auth: match proof(&password_file) {
                    Ok(p) => p,
                    Err(code) => return Ok(code),
                },
                request,
                reason,
            },
        ),
        QuarantineCommand::Cancel {
            request,
            user,
            password_file,
            reason,
        } => act(
            &config,
            Op::Cancel {
                user,
                auth: match proof(&password_file) {
                    Ok(p) => p,
                    Err(code) => return Ok(code),
                },
                request,
                reason,
            },
        ),
        QuarantineCommand::Unlock {
            id,
            user,
            password_file,
            archive_password_file,
        } => {
            let auth = match proof(&password_file) {
                Ok(p) => p,
                Err(code) => return Ok(code),
            };
            let password = match secret_file(&archive_password_file) {
                Ok(p) => p,
                Err(code) => return Ok(code),
            };
            act(
                &config,
                Op::Unlock {
                    user,
                    auth,
                    item: id,
                    password,
                },
            )
        }
        QuarantineCommand::Delete {
            id,
            user,
            password_file,
            reason,
        } => act(
            &config,
            Op::Delete {
                user,
                auth: match proof(&password_file) {
                    Ok(p) => p,
                    Err(code) => return Ok(code),
                },
                item: id,
                reason,
            },
        ),
    }
}

/// The password for `quarantine unlock`: the first line of `path` (`-`: standard input),
/// without its line ending. An empty one is refused.
fn read_password(path: &std::path::Path) -> std::result::Result<mukaika::ppap::SecretText, String> {
    use std::io::Read;
    let mut text = String::new();
    let read = if path == std::path::Path::new("-") {
        std::io::stdin().read_to_string(&mut text)
    } else {
        std::fs::File::open(path).and_then(|mut f| f.read_to_string(&mut text))
    };
    read.map_err(|e| format!("パスワードファイル / password file {}: {e}", path.display()))?;
    let end = text.find(['\r', '\n']).unwrap_or(text.len());
    text.truncate(end);
    if text.is_empty() {
        return Err("パスワードが空です / the password file is empty".into());
    }
    Ok(mukaika::ppap::SecretText::new(text))
}

/// The proof a command-line action carries: the acting account's password from `path`. Who
/// runs the command (OS user, pid) is not claimed here: the service asks the kernel.
fn proof(path: &std::path::Path) -> std::result::Result<mukaika::admin::control::Proof, ExitCode> {
    Ok(mukaika::admin::control::Proof {
        password: secret_file(path)?,
    })
}

/// [`read_password`], with its refusal printed and turned into exit 2 (bad usage).
fn secret_file(path: &std::path::Path) -> std::result::Result<mukaika::ppap::SecretText, ExitCode> {
    read_password(path).map_err(|e| {
        eprintln!("mukaika: {}", shown(&e));
        ExitCode::from(2)
    })
}

fn users(command: UserCommand, config: Option<&std::path::Path>) -> Result<ExitCode> {
    use mukaika::admin::control::Op;
    let (config, _) = match service_config(config) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    match command {
        UserCommand::Add { name, role } => {
            let roles = match mukaika::review::parse_roles(&role) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("mukaika: {}", shown(&e.to_string()));
                    return Ok(ExitCode::from(2));
                }
            };
            act(&config, Op::UserAdd { name, roles })
        }
        UserCommand::Reset { name } => act(&config, Op::UserReset { name }),
        UserCommand::Unlock { name } => act(&config, Op::UserUnlock { name }),
        UserCommand::Disable { name } => act(&config, Op::UserDisable { name }),
        UserCommand::Enable { name } => act(&config, Op::UserEnable { name }),
        UserCommand::Delete { name } => act(&config, Op::UserDelete { name }),
        UserCommand::Role { name, role } => {
            let roles = match mukaika::review::parse_roles(&role) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("mukaika: {}", shown(&e.to_string()));
                    return Ok(ExitCode::from(2));
                }
            };
            act(&config, Op::UserRole { name, roles })
        }
        UserCommand::List => {
            println!("アカウント	役割	前回ログイン	初期パスワード未変更	状態");
            for u in mukaika::review::users_in(&config)? {
                println!(
                    "{}	{}	{}	{}	{}",
                    shown(&u.name),
                    mukaika::review::roles_text(&u.roles),
                    u.last_login_at
                        .as_deref()
                        .map(mukaika::clock::local_display_of)
                        .unwrap_or_default(),
                    if u.must_change { "はい" } else { "いいえ" },
                    if u.disabled { "無効" } else { "有効" }
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Where a quarantined item came from, in the words the web UI uses.
fn source_ja(source: &str) -> std::borrow::Cow<'_, str> {
    match source {
        "mail" => "メール".into(),
        "import" => "取り込みフォルダ".into(),
        other => shown(other),
    }
}

/// Text from outside (a file or mail name, a subject, an address, a remote reply) as a
/// listing shows it: controls and bidi overrides escaped, so a row stays one row and a
/// terminal obeys none of it.
fn shown(text: &str) -> std::borrow::Cow<'_, str> {
    mukaika::sanitizers::names::escape_controls(text)
}

/// A path from outside as [`shown`] shows text.
fn shown_path(path: &std::path::Path) -> String {
    shown(&path.display().to_string()).into_owned()
}

/// JSON for a terminal: serde_json leaves DEL, C1 and bidi controls raw inside strings.
fn shown_json(json: String) -> String {
    mukaika::logging::escape_json(&json).into_owned()
}

/// `mukaika store migrate`: 0 once the schema is current, 1 when the database refuses or
/// is newer, 2 for a configuration without PostgreSQL.
fn store_migrate(path: Option<&std::path::Path>) -> Result<ExitCode> {
    let config = match service_config(path) {
        Ok((c, _)) => c,
        Err(code) => return Ok(code),
    };
    if config.store.backend != mukaika::config::StoreBackend::Postgres {
        eprintln!(
            "mukaika: [store] backend は sqlite です。移行は PostgreSQL だけに必要です / the sqlite \
             store needs no migration (review.db is brought up to date when opened)"
        );
        return Ok(ExitCode::from(2));
    }
    let outcome = mukaika::store::postgres::Pg::connect(&config.store).and_then(|pg| pg.migrate());
    match outcome {
        Ok((before, after)) if before == after => {
            println!("スキーマは最新です / schema already at version {after}");
            Ok(ExitCode::SUCCESS)
        }
        Ok((before, after)) => {
            println!("スキーマを更新しました / schema migrated from version {before} to {after}");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("mukaika: store migrate: {e}");
            Ok(ExitCode::from(1))
        }
    }
}

/// `mukaika store copy --from sqlite --to postgres`: 0 when everything was copied (or was
/// already there), 1 when an item could not be copied or the copy failed, 2 for a
/// configuration without PostgreSQL or a data directory in use.
fn store_copy(path: Option<&std::path::Path>) -> Result<ExitCode> {
    let config = match service_config(path) {
        Ok((c, _)) => c,
        Err(code) => return Ok(code),
    };
    if config.store.backend != mukaika::config::StoreBackend::Postgres {
        eprintln!(
            "mukaika: [store] backend が postgres ではありません。複製先のデータベースを設定してください \
             / [store] backend must be \"postgres\": the database to copy into"
        );
        return Ok(ExitCode::from(2));
    }
    let r = match mukaika::store::copy::sqlite_to_postgres(&config) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("mukaika: store copy: {}", shown(&e.to_string()));
            return Ok(ExitCode::from(if e.is_config() { 2 } else { 1 }));
        }
    };
    println!(
        "隔離アイテム: 複製 {}件、既にあるため省略 {}件、失敗 {}件（{} バイト） / quarantine items: {} copied, {} already there, {} failed ({} bytes)",
        r.items_copied,
        r.items_skipped,
        r.items_failed.len(),
        r.bytes_copied,
        r.items_copied,
        r.items_skipped,
        r.items_failed.len(),
        r.bytes_copied
    );
    println!(
        "アカウント: 複製 {}件、既にあるため省略 {}件、同名で異なるもの {}件 / accounts: {} copied, {} already there, {} differ",
        r.users_copied,
        r.users_skipped,
        r.users_differing.len(),
        r.users_copied,
        r.users_skipped,
        r.users_differing.len()
    );
    println!(
        "解除申請: 複製 {}件、既にあるため省略 {}件 / release requests: {} copied, {} already there",
        r.requests_copied, r.requests_skipped, r.requests_copied, r.requests_skipped
    );
    for name in &r.users_differing {
        println!(
            "同名のアカウントが別のパスワードで既にあります（上書きしません）: {} / account exists with another password (not overwritten)",
            shown(name)
        );
    }
    for id in &r.items_failed {
        eprintln!(
            "mukaika: 複製できなかった隔離アイテム / item not copied: {}",
            shown(id)
        );
    }
    for id in &r.requests_without_item {
        eprintln!(
            "mukaika: 隔離アイテムが複製されていないため複製しなかった解除申請 / open request not copied (its item is not in the cluster): {}",
            shown(id)
        );
    }
    Ok(
        if r.items_failed.is_empty() && r.requests_without_item.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        },
    )
}

/// The service configuration (file or embedded default); a bad one is a usage error (2).
fn service_config(
    path: Option<&std::path::Path>,
) -> std::result::Result<(mukaika::config::ServiceConfig, String), ExitCode> {
    mukaika::config::ServiceConfig::load(path).map_err(|e| {
        eprintln!("mukaika: 設定エラー: {e}");
        ExitCode::from(2)
    })
}
