//! Reads the notes column of the corpus manifest: which verdicts besides the expected one a
//! note allows, and the condition it attaches ("sanitize acceptable if the link is dropped").
//! Every clause that states an alternative must be one this interpreter knows, word for word,
//! so a new or reworded note fails the corpus tests instead of being silently accepted or
//! silently ignored. The conditions are checked against the report by the corpus tests.

/// The condition a note attaches to an alternative verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// No condition: the verdict is acceptable as it stands.
    Always,
    /// The file was rebuilt and a second pass over the output removes nothing ("if supported",
    /// "if RAR is supported", "if the gateway has a hardened LZH extractor").
    Supported,
    /// The quarantine says the format is unsupported, not that something failed
    /// ("quarantine acceptable if flat XML unsupported").
    Unsupported,
    /// No symbolic link of the input survives in the output ZIP ("if the link is dropped").
    LinkDropped,
    /// The output's members are exactly the input's central-directory files.
    CentralDirectoryTrusted,
    /// The output PDF holds no JavaScript ("only if the output contains no JS").
    NoJavascript,
    /// The output is an image our decoder re-opens ("only if the decoder recovers a valid
    /// image").
    ValidImage,
    /// Passed as the image kind the bytes really are ("after true-type check").
    TrueTypeImage,
    /// The default password was removed and the macros went with it.
    Decrypted,
    /// Only the member the note names was removed ("if only that member is dropped").
    OnlyMemberDropped(&'static str),
    /// Treated as a PDF and rebuilt so the output starts with `%PDF`.
    RebuiltAsPdf,
    /// Mail: every unknown part was removed with a notice, none delivered or held.
    UnknownPartsDropped,
    /// Mail: no TNEF part passed raw: each was unpacked in place (its body quoted in the
    /// message text) or dropped.
    TnefUnpackedOrDropped,
}

/// One alternative a note allows: a verdict word and the condition under which.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Alternative {
    pub verdict: &'static str,
    pub condition: Condition,
}

const fn alt(verdict: &'static str, condition: Condition) -> Alternative {
    Alternative { verdict, condition }
}

/// Every clause in the manifest that speaks of an alternative, lower-cased, and what it
/// allows. A clause listed with no alternatives describes a part the expected verdict
/// already covers (a dropped part leaves the message `text-ok`).
const KNOWN: &[(&str, &[Alternative])] = {
    use Condition::*;
    &[
        ("quarantine acceptable", &[alt("quarantine", Always)]),
        ("block acceptable", &[alt("block", Always)]),
        ("block acceptable (benign content)", &[alt("block", Always)]),
        ("sanitize acceptable", &[alt("sanitize", Always)]),
        ("strip or block", &[alt("block", Always)]),
        (
            "quarantine acceptable (xlm is hard to remove), pass is a failure",
            &[alt("quarantine", Always)],
        ),
        (
            "must still be recognised as rtf and cleaned, or quarantined - never passed",
            &[alt("quarantine", Always)],
        ),
        (
            "lzh: quarantine unless the gateway has a hardened lzh extractor (then sanitize)",
            &[alt("sanitize", Supported)],
        ),
        ("sanitize acceptable if supported", &[alt("sanitize", Supported)]),
        (
            "sanitize acceptable if rar is supported (benign content)",
            &[alt("sanitize", Supported)],
        ),
        (
            "quarantine acceptable if unsupported",
            &[alt("quarantine", Unsupported)],
        ),
        (
            "quarantine acceptable if flat xml unsupported",
            &[alt("quarantine", Unsupported)],
        ),
        (
            "quarantine acceptable if spreadsheetml 2003 is unsupported",
            &[alt("quarantine", Unsupported)],
        ),
        (
            "sanitize acceptable if the link is dropped",
            &[alt("sanitize", LinkDropped)],
        ),
        (
            "sanitize acceptable if central directory is trusted consistently",
            &[alt("sanitize", CentralDirectoryTrusted)],
        ),
        (
            "sanitize acceptable only if the output contains no js",
            &[alt("sanitize", NoJavascript)],
        ),
        (
            "sanitize acceptable only if the decoder recovers a valid image",
            &[alt("sanitize", ValidImage)],
        ),
        (
            "re-encode/strip metadata (pass acceptable if policy lets plain images through after true-type check)",
            &[alt("pass", TrueTypeImage)],
        ),
        (
            "sanitize after default-password decryption acceptable",
            &[alt("sanitize", Decrypted)],
        ),
        (
            "sanitize acceptable if only that member is dropped",
            &[alt("sanitize", OnlyMemberDropped("autoexec.bat"))],
        ),
        (
            "if treated as pdf it must be rebuilt so output starts with %pdf",
            &[alt("sanitize", RebuiltAsPdf)],
        ),
        (
            "text-ok acceptable if policy drops unknown parts with a notice",
            &[alt("text-ok", UnknownPartsDropped)],
        ),
        (
            "tnef must be unpacked/converted or dropped, never passed raw",
            &[alt("text-ok", TnefUnpackedOrDropped)],
        ),
        // Dropping these parts is what `text-ok` (the expected verdict) already means.
        ("signature part may be dropped", &[]),
        ("logo.png part is 3 bytes (drop acceptable)", &[]),
        (
            "binhex 4.0 (application/mac-binhex40) png attachment: decode and re-encode, or drop the part with a notice",
            &[alt("sanitize", Supported)],
        ),
    ]
};

/// Words that make a clause speak of an alternative; such a clause must be in `KNOWN`.
const MARKERS: &[&str] = &[
    "acceptable",
    "unless",
    " if ",
    "if treated",
    "may be",
    "or block",
    "or quarantin",
    "or sanitiz",
    "or pass",
    "or drop",
    "then sanitize",
    "text-ok",
];

/// The alternatives a note allows.
///
/// # Panics
/// On a clause that speaks of an alternative in words this interpreter does not know: the
/// test must be taught the new phrasing before the note counts.
pub fn alternatives(notes: &str) -> Vec<Alternative> {
    let mut out = Vec::new();
    for clause in notes.split(';') {
        let clause = clause.trim().to_lowercase();
        if let Some((_, alts)) = KNOWN.iter().find(|(known, _)| *known == clause) {
            out.extend_from_slice(alts);
        } else if let Some(marker) = MARKERS.iter().find(|m| clause.contains(*m)) {
            panic!(
                "manifest note clause {clause:?} states an alternative ({marker:?}) in words \
                 the corpus test does not know; teach tests/common/notes.rs its condition"
            );
        }
    }
    out
}
