//! Structure-aware fuzzing of the Office Open XML rebuild. Random bytes rarely survive a zip's
//! CRCs and inflation, so the `registry` target seldom reaches the XML rewriter; here the input
//! is the *content* of the parts, wrapped in a well-formed package:
//!
//! `[kind byte] part₀ 0xFF 0xFE part₁ 0xFF 0xFE part₂ …` → main document, its .rels, styles
//! (or, for a workbook, sheet1 and sharedStrings), laid out as Word or Excel would.
//!
//! Besides panics (aborted by `setup`), it fails when the registry's own re-check rejects an
//! output: the rebuild must be idempotent (a second pass removes nothing) and re-open with our
//! parser. Such an input is quarantined — fail closed, so never a leak — but a document that is
//! held only because the rewriter is not idempotent is a bug a municipality would see.
#![no_main]

mod setup;

use std::io::Write;

use libfuzzer_sys::fuzz_target;
use mukaika_sanitizers::Declared;

const SEPARATOR: &[u8] = b"\xFF\xFE";

const WORD: &[(&str, &str)] = &[
    (
        "word/document.xml",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml",
    ),
    ("word/_rels/document.xml.rels", ""),
    (
        "word/styles.xml",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.styles+xml",
    ),
];
const EXCEL: &[(&str, &str)] = &[
    (
        "xl/workbook.xml",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml",
    ),
    ("xl/_rels/workbook.xml.rels", ""),
    (
        "xl/worksheets/sheet1.xml",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml",
    ),
    (
        "xl/sharedStrings.xml",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml",
    ),
];

fn package(data: &[u8]) -> Option<(Vec<u8>, &'static str)> {
    let (&kind, rest) = data.split_first()?;
    let (layout, name) = if kind & 1 == 0 {
        (WORD, "f.docx")
    } else {
        (EXCEL, "f.xlsx")
    };
    let mut parts: Vec<&[u8]> = Vec::new();
    let mut tail = rest;
    while let Some(at) = tail.windows(SEPARATOR.len()).position(|w| w == SEPARATOR) {
        parts.push(&tail[..at]);
        tail = &tail[at + SEPARATOR.len()..];
    }
    parts.push(tail);

    let mut types = String::from(
        r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/>"#,
    );
    for (path, content_type) in layout.iter().filter(|(_, t)| !t.is_empty()) {
        types.push_str(&format!(
            r#"<Override PartName="/{path}" ContentType="{content_type}"/>"#
        ));
    }
    types.push_str("</Types>");
    let root_rels = format!(
        r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="{}"/></Relationships>"#,
        layout[0].0
    );

    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let stored =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let mut add = |path: &str, bytes: &[u8]| -> Option<()> {
        zip.start_file(path, stored).ok()?;
        zip.write_all(bytes).ok()
    };
    add("[Content_Types].xml", types.as_bytes())?;
    add("_rels/.rels", root_rels.as_bytes())?;
    for ((path, _), bytes) in layout.iter().zip(parts) {
        add(path, bytes)?;
    }
    Some((zip.finish().ok()?.into_inner(), name))
}

fuzz_target!(|data: &[u8]| {
    let Some((bytes, name)) = package(data) else {
        return;
    };
    let (registry, policy) = setup::registry();
    let outcome = registry.process(
        &bytes,
        &Declared {
            name: Some(name),
            mime: None,
        },
        policy,
    );
    if let Some(reason) = &outcome.report.reason {
        assert!(
            !(reason.code == "internal-error" && reason.detail.contains("output re-check")),
            "the rebuild is not idempotent or does not re-open: {}",
            reason.detail
        );
    }
});
