//! The reference corpus's 50 messages (`../shared/corpus/mail`): each reaches its expected
//! verdict (or one its notes allow), and none delivers what should have been stopped. Prints a
//! score table.

use crate::common;

use std::collections::BTreeMap;

use common::notes::{self, Condition};
use common::*;
use mukaika_sanitizers::mail::{self, Disposition, MailOutcome, MailVerdict};
use mukaika_sanitizers::{FileKind, Policy, Registry, Verdict, What};

/// The corpus verdict a conversion amounts to: the strictest fate of any attachment.
fn verdict_of(outcome: &MailOutcome) -> &'static str {
    match outcome.report.verdict {
        MailVerdict::Quarantined => return "quarantine",
        MailVerdict::Blocked => return "block",
        MailVerdict::Delivered => {}
    }
    let reasons = |d: Disposition| {
        outcome
            .report
            .attachments
            .iter()
            .filter(move |a| a.disposition == d)
            .map(|a| {
                a.report
                    .reason
                    .as_ref()
                    .map(|r| r.code.as_str())
                    .unwrap_or("")
            })
    };
    if reasons(Disposition::Removed).any(|c| c == "blocked-kind") {
        "block"
    } else if reasons(Disposition::Held).next().is_some() {
        "quarantine"
    } else if outcome
        .report
        .attachments
        .iter()
        // Metadata (a PNG's tEXt, a document's author) is hygiene, not a threat removed.
        .any(|a| {
            a.disposition == Disposition::Attached
                && a.report.removed.iter().any(|r| r.what != What::Metadata)
        })
    {
        "sanitize"
    } else {
        "text-ok"
    }
}

/// Whether a converted message meets the condition a note attaches to an alternative verdict.
fn condition_holds(condition: Condition, outcome: &MailOutcome) -> Result<(), String> {
    let attachments = &outcome.report.attachments;
    match condition {
        Condition::Always => Ok(()),
        // "policy drops unknown parts with a notice": nothing held, something removed, and
        // the delivered message says how many were removed.
        Condition::UnknownPartsDropped => {
            let removed = attachments
                .iter()
                .filter(|a| a.disposition == Disposition::Removed && a.report.reason.is_some())
                .count();
            let text = outcome
                .message()
                .map(|m| String::from_utf8_lossy(m.bytes()).into_owned())
                .ok_or("not delivered")?;
            if removed == 0
                || attachments
                    .iter()
                    .any(|a| a.disposition == Disposition::Held)
            {
                Err(format!("dispositions {:?}", dispositions(outcome)))
            } else if !text.contains(&format!("attachments-removed={removed}")) {
                Err(format!(
                    "the message gives no notice of {removed} removed part(s)"
                ))
            } else {
                Ok(())
            }
        }
        // "TNEF must be unpacked/converted or dropped, never passed raw": unpacked in place
        // quotes its body in the message text; a TNEF attachment is removed, never attached
        // or held as it came.
        Condition::TnefUnpackedOrDropped => {
            let text = outcome
                .message()
                .map(|m| String::from_utf8_lossy(m.bytes()).into_owned())
                .ok_or("not delivered")?;
            let tnef: Vec<_> = attachments
                .iter()
                .filter(|a| a.report.detected_type == FileKind::Tnef)
                .collect();
            let body = mail_parser::MessageParser::default()
                .parse(outcome.message().ok_or("not delivered")?.bytes())
                .and_then(|m| m.body_text(0).map(|b| b.into_owned()))
                .unwrap_or_default();
            let unpacked = body.contains("(Outlook 形式) の本文");
            if text.to_ascii_lowercase().contains("application/ms-tnef") {
                Err("a TNEF part is in the delivered message".into())
            } else if tnef.iter().any(|a| a.disposition != Disposition::Removed) {
                Err(format!("TNEF parts kept: {:?}", dispositions(outcome)))
            } else if !unpacked && tnef.is_empty() {
                Err("the TNEF part was neither unpacked nor reported dropped".into())
            } else {
                Ok(())
            }
        }
        // "decode and re-encode": the part was rebuilt and attached.
        Condition::Supported => {
            if attachments.iter().any(|a| {
                a.disposition == Disposition::Attached && a.report.verdict == Verdict::Sanitized
            }) {
                Ok(())
            } else {
                Err(format!("nothing rebuilt: {:?}", dispositions(outcome)))
            }
        }
        other => Err(format!("{other:?} speaks of a file, not of a message")),
    }
}

fn dispositions(outcome: &MailOutcome) -> Vec<(Disposition, FileKind, Option<String>)> {
    outcome
        .report
        .attachments
        .iter()
        .map(|a| {
            (
                a.disposition,
                a.report.detected_type,
                a.report.reason.as_ref().map(|r| r.code.clone()),
            )
        })
        .collect()
}

#[test]
fn corpus_messages_reach_their_expected_verdicts() {
    let dir = corpus_dir();
    let manifest = std::fs::read_to_string(dir.join("MANIFEST.tsv"))
        .expect("the reference corpus is required (MUKAIKA_CORPUS)");
    let registry = Registry::standard();
    let policy = Policy::default();
    let (mut misses, mut unsafe_outcomes) = (Vec::new(), Vec::new());
    let mut table: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut by_note = Vec::new();
    for line in manifest.lines().skip(1).filter(|l| l.starts_with("mail/")) {
        let cols: Vec<&str> = line.split('\t').collect();
        let (path, expected, notes) = (cols[0], cols[4], cols[9].trim_matches('"'));
        let raw = std::fs::read(dir.join(path)).unwrap();
        let outcome = mail::convert(&raw, "corpus", &registry, &policy);
        // A panic caught in the converter or a sanitizer holds the message, fail-closed, but
        // it is a bug: no corpus message may end that way.
        assert_mail_not_internal_error(path, &outcome);
        let got = verdict_of(&outcome);
        let folder = path.rsplit_once('/').map_or("", |(d, _)| d).to_string();
        let row = table.entry(folder).or_default();
        let mut unmet = Vec::new();
        let acceptable = got == expected
            || notes::alternatives(notes)
                .iter()
                .filter(|a| a.verdict == got)
                .any(|a| match condition_holds(a.condition, &outcome) {
                    Ok(()) => {
                        by_note.push(format!("{path}: {got} ({:?})", a.condition));
                        true
                    }
                    Err(why) => {
                        unmet.push(format!("{got} acceptable {:?}: {why}", a.condition));
                        false
                    }
                });
        // A delivered message must never carry what should have been stopped.
        if matches!(expected, "block" | "quarantine") && got == "text-ok" && !acceptable {
            unsafe_outcomes.push(format!("{path}: expected {expected}, delivered everything"));
        }
        if acceptable {
            row.1 += 1;
        } else {
            misses.push(format!(
                "{path}: got {got}, expected {expected} {unmet:?} ({:?}; attachments {:?})",
                outcome.report.reason,
                outcome
                    .report
                    .attachments
                    .iter()
                    .map(|a| (
                        a.disposition,
                        a.report.detected_type,
                        a.report.reason.clone()
                    ))
                    .collect::<Vec<_>>()
            ));
        }
        row.0 += 1;
        if let Some(message) = outcome.message() {
            let text = String::from_utf8_lossy(message.bytes());
            assert!(
                !text
                    .to_ascii_lowercase()
                    .contains("content-type: text/html"),
                "{path}: HTML in the output"
            );
        }
    }
    println!("\n{:<18} {:>8} {:>6}", "folder", "messages", "hits");
    let (mut n, mut h) = (0, 0);
    for (folder, (a, b)) in &table {
        println!("{folder:<18} {a:>8} {b:>6}");
        n += a;
        h += b;
    }
    println!("{:<18} {n:>8} {h:>6}\n", "TOTAL");
    println!(
        "accepted by a note's alternative:\n  {}\n",
        by_note.join("\n  ")
    );
    assert!(
        unsafe_outcomes.is_empty(),
        "unsafe:\n{}",
        unsafe_outcomes.join("\n")
    );
    assert!(
        misses.is_empty(),
        "{} misses:\n{}",
        misses.len(),
        misses.join("\n")
    );
    assert_eq!(n, 50);
}
