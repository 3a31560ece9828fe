//! The `mukaika` binary: argument parsing, terminal output and exit codes. Everything else
//! lives in the library.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

use mukaika::sanitize;
use mukaika::sanitizers::{Registry, Verdict};

#[derive(Parser)]
#[command(
    name = "mukaika",
    version,
    about = "無害化 gateway between the internet zone and LGWAN"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
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
    /// Mail → text conversion.
    Mail {
        #[command(subcommand)]
        command: MailCommand,
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
            eprintln!("mukaika: {e:#}");
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
    let registry = Registry::standard();
    let policy = match sanitize::load_policy(policy.as_deref(), &registry) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("mukaika: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    if let Err(e) = sanitize::prepare_out_dir(&out) {
        eprintln!("mukaika: {e}");
        return Ok(ExitCode::from(1));
    }
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
            bar.set_message(file.display().to_string());
        }
        match sanitize::process_file(file, &out, &registry, &policy) {
            Ok(done) => {
                if json {
                    println!("{}", serde_json::to_string(&done.report)?);
                }
                let line = match (&done.report.verdict, &done.output) {
                    (Verdict::Sanitized | Verdict::Passed, Some(path)) => {
                        format!(
                            "{}: {} -> {}",
                            file.display(),
                            done.report.verdict.label_ja(),
                            path.display()
                        )
                    }
                    _ => format!(
                        "{}: {} ({})",
                        file.display(),
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
                eprintln!("mukaika: {e}");
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
    let registry = Registry::standard();
    let policy = match sanitize::load_policy(policy.as_deref(), &registry) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("mukaika: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    if let Err(e) = sanitize::prepare_out_dir(&out) {
        eprintln!("mukaika: {e}");
        return Ok(ExitCode::from(1));
    }
    let (mut failed, mut usage) = (false, false);
    for file in &files {
        match mukaika::mail::convert_file(file, &out, &registry, &policy) {
            Ok(done) => {
                if json {
                    println!("{}", serde_json::to_string(&done.report)?);
                } else {
                    let verdict = match done.report.verdict {
                        mukaika::sanitizers::mail::MailVerdict::Delivered => "変換済み",
                        mukaika::sanitizers::mail::MailVerdict::Quarantined => "隔離",
                        mukaika::sanitizers::mail::MailVerdict::Blocked => "削除",
                    };
                    let detail = match (&done.output, &done.report.reason) {
                        (Some(path), _) => format!("-> {}", path.display()),
                        (None, Some(r)) => format!("({}: {})", r.code, r.detail),
                        (None, None) => String::new(),
                    };
                    eprintln!("{}: {verdict} {detail}", done.input);
                }
            }
            Err(e) => {
                usage |= e.is_usage();
                failed = true;
                eprintln!("mukaika: {e}");
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
