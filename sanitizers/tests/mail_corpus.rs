//! The reference corpus's 50 messages (`../shared/corpus/mail`): each reaches its expected
//! verdict (or one its notes allow), and none delivers what should have been stopped. Prints a
//! score table.

mod common;

use std::collections::BTreeMap;

use common::*;
use mukaika_sanitizers::mail::{self, Disposition, MailOutcome, MailVerdict};
use mukaika_sanitizers::{Policy, Registry, What};

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

#[test]
fn corpus_messages_reach_their_expected_verdicts() {
    let dir = corpus_dir();
    let manifest = std::fs::read_to_string(dir.join("MANIFEST.tsv"))
        .expect("the reference corpus is required (MUKAIKA_CORPUS)");
    let registry = Registry::standard();
    let policy = Policy::default();
    let (mut misses, mut unsafe_outcomes) = (Vec::new(), Vec::new());
    let mut table: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for line in manifest.lines().skip(1).filter(|l| l.starts_with("mail/")) {
        let cols: Vec<&str> = line.split('\t').collect();
        let (path, expected, notes) = (
            cols[0],
            cols[4],
            cols[9].trim_matches('"').to_ascii_lowercase(),
        );
        let raw = std::fs::read(dir.join(path)).unwrap();
        let outcome = mail::convert(&raw, "corpus", &registry, &policy);
        let got = verdict_of(&outcome);
        let folder = path.rsplit_once('/').map_or("", |(d, _)| d).to_string();
        let row = table.entry(folder).or_default();
        let acceptable = got == expected
            || notes.contains(&format!("{got} acceptable"))
            || (got == "text-ok" && expected == "sanitize" && notes.contains("dropped"));
        // A delivered message must never carry what should have been stopped.
        if matches!(expected, "block" | "quarantine") && got == "text-ok" && !acceptable {
            unsafe_outcomes.push(format!("{path}: expected {expected}, delivered everything"));
        }
        if acceptable {
            row.1 += 1;
        } else {
            misses.push(format!(
                "{path}: got {got}, expected {expected} ({:?}; attachments {:?})",
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
