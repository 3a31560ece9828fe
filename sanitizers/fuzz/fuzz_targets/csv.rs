//! Fuzzes CSV splitting against a reading written apart from the sanitizer.
//!
//! Input: `[encoding byte] text…` (UTF-8, lossily); the text is written as UTF-8, UTF-8 with a
//! BOM, CP932 or UTF-16LE with a BOM and sent through the registry as `x.csv`. For every
//! delivered output it checks the property issue #20 asks for — under every split Excel or
//! LibreOffice could apply (comma, semicolon, tab, a `sep=` line; quotes opening a field at
//! its start or after spaces) no cell begins, after whitespace and quotes, with a formula
//! trigger — and that only `'` was added and a second pass removes nothing. A held file is
//! fail-closed and not a failure; a file content detection takes for another text kind (HTML
//! delivered as text) must still leave no formula cell, the rest is not checked.
#![no_main]

#[path = "../../tests/it/csv_oracle/mod.rs"]
mod csv_oracle;
mod setup;

use encoding_rs::SHIFT_JIS;
use libfuzzer_sys::fuzz_target;
use mukaika_sanitizers::{Declared, FileKind, Verdict};

fn decode(bytes: &[u8], encoding: u8) -> Option<String> {
    match encoding {
        0 => String::from_utf8(bytes.to_vec()).ok(),
        1 => String::from_utf8(bytes.strip_prefix(b"\xEF\xBB\xBF")?.to_vec()).ok(),
        2 => SHIFT_JIS
            .decode_without_bom_handling_and_without_replacement(bytes)
            .map(|t| t.into_owned()),
        _ => {
            let units: Vec<u16> = bytes
                .strip_prefix(b"\xFF\xFE")?
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16(&units).ok()
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let encoding = selector % 4;
    let text = String::from_utf8_lossy(rest).into_owned();
    let input: Vec<u8> = match encoding {
        0 => text.as_bytes().to_vec(),
        1 => [b"\xEF\xBB\xBF".as_slice(), text.as_bytes()].concat(),
        2 => SHIFT_JIS.encode(&text).0.into_owned(),
        _ => [0xFF, 0xFE]
            .into_iter()
            .chain(text.encode_utf16().flat_map(u16::to_le_bytes))
            .collect(),
    };
    // What the file holds once written (CP932 turns what it cannot hold into `&#…;`).
    let Some(text) = decode(&input, encoding) else {
        return;
    };
    let (registry, policy) = setup::registry();
    let declared = Declared {
        name: Some("x.csv"),
        mime: None,
    };
    let outcome = registry.process(&input, &declared, policy);
    if outcome.report.verdict != Verdict::Sanitized {
        return;
    }
    let Some(out) = outcome.output() else {
        return;
    };
    if out.kind() != FileKind::Csv {
        // Content detection overrode the name (markup such as `<body` in the first kilobyte
        // is HTML, delivered as UTF-8 text): no formula cell may be left, but the text is no
        // longer the CSV's, so nothing else is compared.
        let bytes = out.bytes();
        let text = String::from_utf8_lossy(bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes));
        let left = csv_oracle::formula_cells(&text);
        assert!(
            left.is_empty(),
            "formula cells left in {:?} output: {left:?}",
            out.kind()
        );
        return;
    }
    let Some(result) = decode(out.bytes(), encoding) else {
        panic!("the output does not decode as its input did");
    };
    let left = csv_oracle::formula_cells(&result);
    assert!(left.is_empty(), "formula cells left: {left:?}");

    // Only `'` added, one per reported removal.
    let mut added = 0;
    let mut out_chars = result.chars().peekable();
    for c in text.chars() {
        while c != '\'' && out_chars.peek() == Some(&'\'') {
            out_chars.next();
            added += 1;
        }
        assert_eq!(
            out_chars.next(),
            Some(c),
            "a character other than `'` changed"
        );
    }
    added += out_chars.filter(|&c| c == '\'').count();
    assert_eq!(added, outcome.report.removed.len());

    let again = registry.process(out.bytes(), &declared, policy);
    assert!(
        again.report.removed.is_empty(),
        "second pass removed {:?}",
        again.report.removed
    );
    assert_eq!(again.output().map(|o| o.bytes()), Some(out.bytes()));
});
