//! Independent verification of outputs by other people's parsers, installed by tests/ci.sh:
//! qpdf must accept every PDF we write and pdftotext must find the same text in it; oletools'
//! olevba and mraptor must find no macro in any Office output and oleid must rate no indicator
//! above "none"; rtfobj and msodde must find no object or DDE link in RTF outputs; each tool
//! must find what it looks for in our inputs, which proves the fixtures are real. LibreOffice
//! must open the outputs and show the same text as the inputs. A missing tool fails the test:
//! nothing here is skipped.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::generate::*;
use common::*;
use mukaika_sanitizers::Verdict;

fn tool(name: &str) -> PathBuf {
    let venv = std::env::var_os("MUKAIKA_OLETOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/oletools-venv/bin"));
    if matches!(name, "olevba" | "mraptor" | "rtfobj" | "msodde" | "oleid") {
        let path = venv.join(name);
        assert!(
            path.exists(),
            "{} is missing: run `bash tests/ci.sh` (it installs oletools)",
            path.display()
        );
        return path;
    }
    for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
        let path = dir.join(name);
        if path.exists() {
            return path;
        }
    }
    panic!("{name} is not installed: run `bash tests/ci.sh` (it installs qpdf, poppler-utils, LibreOffice)");
}

fn run(cmd: &mut Command) -> (i32, String) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn pdftotext(path: &Path) -> Option<String> {
    let (code, _) = run(Command::new(tool("pdftotext"))
        .arg("-q")
        .arg(path)
        .arg(path.with_extension("txt")));
    (code == 0).then(|| std::fs::read_to_string(path.with_extension("txt")).unwrap_or_default())
}

fn corpus_files(prefix: &str, exts: &[&str]) -> Vec<(String, Vec<u8>)> {
    let root = workspace_root().join("../shared/corpus").join(prefix);
    let mut out = Vec::new();
    let mut stack = vec![root];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if exts
                .iter()
                .any(|e| path.extension().is_some_and(|x| x == *e))
            {
                out.push((
                    path.file_name().unwrap().to_string_lossy().into_owned(),
                    std::fs::read(&path).unwrap(),
                ));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn qpdf_accepts_every_pdf_output_and_the_text_survives() {
    let dir = tempfile::tempdir().unwrap();
    let mut inputs = vec![
        ("js-openaction.pdf".to_string(), pdf_js_openaction()),
        ("kitchen-sink.pdf".to_string(), pdf_kitchen_sink()),
        ("incremental.pdf".to_string(), pdf_incremental_js()),
        ("junk-around.pdf".to_string(), pdf_with_junk_around()),
    ];
    inputs.extend(corpus_files("pdf", &["pdf"]));
    inputs.push((
        "bench-170p.pdf".into(),
        std::fs::read(workspace_root().join("../shared/bench/pdf-170p-js.pdf")).unwrap(),
    ));
    let mut checked = 0;
    for (i, (name, bytes)) in inputs.iter().enumerate() {
        let outcome = process(bytes, name);
        if outcome.report.verdict != Verdict::Sanitized {
            continue;
        }
        let input = dir.path().join(format!("{i}-in.pdf"));
        let output = dir.path().join(format!("{i}-out.pdf"));
        std::fs::write(&input, bytes).unwrap();
        std::fs::write(&output, outcome.output().unwrap().bytes()).unwrap();
        let (code, text) = run(Command::new(tool("qpdf")).arg("--check").arg(&output));
        // Exit 3 ("warnings") means qpdf repaired or guessed: not acceptable for our output.
        assert_eq!(code, 0, "{name}: qpdf --check exit {code}: {text}");
        if let Some(before) = pdftotext(&input) {
            let after = pdftotext(&output)
                .unwrap_or_else(|| panic!("{name}: pdftotext fails on the output"));
            // A dropped annotation takes the text of its appearance with it (a media player's
            // caption); page text itself must be untouched.
            let annotations_dropped = outcome
                .report
                .removed
                .iter()
                .any(|r| r.location.contains("/Annots["));
            if annotations_dropped {
                let words: std::collections::HashSet<&str> = before.split_whitespace().collect();
                assert!(
                    after.split_whitespace().all(|w| words.contains(w)),
                    "{name}: new text appeared"
                );
                assert!(
                    !after.trim().is_empty() || before.trim().is_empty(),
                    "{name}: all text lost"
                );
            } else {
                assert_eq!(before, after, "{name}: text changed");
            }
        }
        checked += 1;
    }
    assert!(checked >= 25, "only {checked} PDFs were checked");
    // The generated fixtures carry a marker on every page.
    let out = dir.path().join("1-out.pdf");
    assert_eq!(
        pdftotext(&out)
            .unwrap()
            .matches("mukaika-fixture-text")
            .count(),
        3
    );
}

#[test]
fn olevba_and_mraptor_find_no_macros_in_office_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let generated = [
        ("macro.docm", docm_with_macro().build()),
        ("macro.xlsm", xlsm_with_macros().build()),
        ("macro.pptm", pptm_with_macro().build()),
    ];
    // The fixtures are real: the verifiers see the macro in every input.
    for (name, bytes) in &generated {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let (_, text) = run(Command::new(tool("olevba")).arg(&path));
        assert!(
            text.contains("AutoOpen") && text.contains("Shell"),
            "{name}: olevba does not see the fixture macro:\n{text}"
        );
        let (code, text) = run(Command::new(tool("mraptor")).arg(&path));
        assert_eq!(
            code, 20,
            "{name}: mraptor should call the input suspicious:\n{text}"
        );
    }
    let mut inputs: Vec<(String, Vec<u8>)> = generated
        .iter()
        .map(|(n, b)| (n.to_string(), b.clone()))
        .collect();
    inputs.extend(corpus_files(
        "office",
        &[
            "docx", "docm", "xlsx", "xlsm", "pptx", "pptm", "doc", "xls", "ppt",
        ],
    ));
    let mut outputs = Vec::new();
    for (i, (name, bytes)) in inputs.iter().enumerate() {
        let outcome = process(bytes, name);
        if let Some(out) = outcome.output() {
            let path = dir.path().join(format!("{i}-{}", out.name()));
            std::fs::write(&path, out.bytes()).unwrap();
            outputs.push(path);
        }
    }
    assert!(outputs.len() >= 12, "only {} Office outputs", outputs.len());
    for path in &outputs {
        let (code, text) = run(Command::new(tool("mraptor")).arg(path));
        assert_eq!(code, 0, "{}: mraptor exit {code}:\n{text}", path.display());
        let (_, text) = run(Command::new(tool("olevba")).arg(path));
        assert!(
            text.contains("No VBA or XLM macros found"),
            "{}: olevba:\n{text}",
            path.display()
        );
        // oleid rates each indicator; in an output every one must be "info" or "none".
        let (risky, text) = oleid_risks(path);
        assert!(risky.is_empty(), "{}: oleid:\n{text}", path.display());
    }
    // The check can fail: oleid does rate the input with an embedded object.
    let input = workspace_root()
        .join("../shared/corpus/office/ole-embedded/oletools-embedded-simple-2007.doc");
    assert!(
        !oleid_risks(&input).0.is_empty(),
        "oleid no longer flags ObjectPool"
    );
}

/// The indicators oleid rates above "info"/"none", and its whole output.
fn oleid_risks(path: &Path) -> (Vec<String>, String) {
    let (_, text) = run(Command::new(tool("oleid")).arg(path));
    let risky = text
        .lines()
        .filter(|line| {
            let cols: Vec<&str> = line.split('|').collect();
            cols.len() >= 4 && !matches!(cols[2].trim(), "" | "info" | "none" | "Risk")
        })
        .map(str::to_string)
        .collect();
    (risky, text)
}

#[test]
fn libreoffice_opens_the_outputs_and_the_text_survives() {
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("profile");
    let mut pairs: Vec<(String, Vec<u8>)> = vec![
        ("benign.docx".into(), docx_benign().build()),
        ("fields.docx".into(), docx_with_fields().build()),
        (
            "objects.docx".into(),
            docx_with_external_and_objects().build(),
        ),
        ("macro.xlsm".into(), xlsm_with_macros().build()),
        ("threats.odt".into(), odt_with_threats()),
        (
            "alternate-content.docx".into(),
            docx_with_fields_in_alternate_content(),
        ),
        (
            "bench-50k.docx".into(),
            std::fs::read(workspace_root().join("../shared/bench/docx-50k.docx")).unwrap(),
        ),
    ];
    pairs.extend(corpus_files("office/benign", &["docx", "doc"]));
    // Legacy Office with an embedded object: the object's storage goes, the text stays.
    pairs.extend(corpus_files("office/ole-embedded", &["doc", "xls", "odt"]));
    let mut files = Vec::new();
    for (i, (name, bytes)) in pairs.iter().enumerate() {
        let outcome = process(bytes, name);
        let out = outcome
            .output()
            .unwrap_or_else(|| panic!("{name}: {:?}", outcome.report.reason));
        let ext = out.name().rsplit('.').next().unwrap().to_string();
        let input = dir
            .path()
            .join(format!("in{i}.{}", name.rsplit('.').next().unwrap()));
        let output = dir.path().join(format!("out{i}.{ext}"));
        std::fs::write(&input, bytes).unwrap();
        std::fs::write(&output, out.bytes()).unwrap();
        files.push((name.clone(), input, output));
    }
    let mut cmd = Command::new(tool("soffice"));
    cmd.arg(format!(
        "-env:UserInstallation=file://{}",
        profile.display()
    ))
    .args([
        "--headless",
        "--norestore",
        "--convert-to",
        "pdf",
        "--outdir",
    ])
    .arg(dir.path().join("pdf"));
    for (_, input, output) in &files {
        cmd.arg(input).arg(output);
    }
    let (code, text) = run(&mut cmd);
    assert_eq!(code, 0, "soffice failed: {text}");
    for (name, input, output) in &files {
        let pdf_of = |p: &Path| {
            dir.path()
                .join("pdf")
                .join(p.with_extension("pdf").file_name().unwrap())
        };
        let after = pdftotext(&pdf_of(output))
            .unwrap_or_else(|| panic!("{name}: LibreOffice did not convert the output"));
        if name.starts_with("macro.") {
            // Inputs with macros may trip LibreOffice's own macro handling; compare to known text.
            let marker = "売上";
            assert!(after.contains(marker), "{name}: {after}");
        } else {
            let before = pdftotext(&pdf_of(input))
                .unwrap_or_else(|| panic!("{name}: LibreOffice did not convert the input"));
            let strip = |s: &str| s.split_whitespace().collect::<String>();
            // A removed embedded object's label may appear (Word: in place of its icon) or go
            // (Excel: with its icon); all other text must be the same.
            let (before, after) = if name.contains("embedded") {
                let label = "simple-text-file.txt";
                (before.replace(label, ""), after.replace(label, ""))
            } else {
                (before, after)
            };
            // Removed fields and links change no visible text.
            assert_eq!(
                strip(&before),
                strip(&after),
                "{name}: text differs after sanitizing"
            );
        }
    }
}

#[test]
fn rtfobj_and_msodde_find_nothing_in_rtf_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let input = rtf_with_threats();
    let in_path = dir.path().join("in.rtf");
    std::fs::write(&in_path, &input).unwrap();
    let (_, text) = run(Command::new(tool("rtfobj")).arg(&in_path));
    assert!(
        text.contains("Package") && text.contains("format_id"),
        "rtfobj does not see the fixture object:\n{text}"
    );
    let (_, text) = run(Command::new(tool("msodde")).arg(&in_path));
    assert!(
        text.contains("DDEAUTO"),
        "msodde does not see the fixture field:\n{text}"
    );

    let outcome = process(&input, "in.rtf");
    let out_path = dir.path().join("out.rtf");
    std::fs::write(&out_path, outcome.output().expect("sanitized").bytes()).unwrap();
    let (_, text) = run(Command::new(tool("rtfobj")).arg(&out_path));
    assert!(
        !text.contains("Package") && !text.contains("format_id"),
        "rtfobj finds an object in the output:\n{text}"
    );
    let (_, text) = run(Command::new(tool("msodde")).arg(&out_path));
    let links = text.split("DDE Links:").nth(1).map(str::trim);
    assert_eq!(links, Some(""), "msodde finds DDE in the output:\n{text}");

    // Field instructions hidden the ways Word still reads (issue #20 class 5): msodde sees the
    // DDE link in each input and nothing in the output.
    for (i, field) in [
        r#"{\field{\*\fldinst {\*\x junk} DDEAUTO c:\\windows\\system32\\cmd.exe "/c calc"}{\fldrslt r}}"#,
        r#"{\field{\*\fldinst {\*\x PAGE} DDEAUTO c:\\windows\\system32\\cmd.exe "/c calc"}{\fldrslt r}}"#,
        r#"{\field{\*\fldinst PAGE}{\*\fldinst DDEAUTO c:\\windows\\system32\\cmd.exe "/c calc"}{\fldrslt r}}"#,
        r#"{\field{\*\fldinst   {\b  }  {PAGE}{ DDEAUTO c:\\windows\\system32\\cmd.exe}}{\fldrslt r}}"#,
    ]
    .iter()
    .enumerate()
    {
        let rtf = format!("{{\\rtf1\\ansi before\\par {field}\\par after}}");
        let in_path = dir.path().join(format!("field{i}.rtf"));
        std::fs::write(&in_path, &rtf).unwrap();
        let (_, text) = run(Command::new(tool("msodde")).arg(&in_path));
        assert!(
            text.contains("DDEAUTO"),
            "msodde does not see field {i} in the input:\n{text}"
        );
        let outcome = process(rtf.as_bytes(), "field.rtf");
        let out_path = dir.path().join(format!("field{i}-out.rtf"));
        std::fs::write(&out_path, outcome.output().expect("sanitized").bytes()).unwrap();
        let (_, text) = run(Command::new(tool("msodde")).arg(&out_path));
        let links = text.split("DDE Links:").nth(1).map(str::trim);
        assert_eq!(links, Some(""), "msodde finds field {i} in the output:\n{text}");
    }

    // LibreOffice opens the output and shows its text.
    let profile = dir.path().join("profile");
    let (code, text) = run(Command::new(tool("soffice"))
        .arg(format!(
            "-env:UserInstallation=file://{}",
            profile.display()
        ))
        .args([
            "--headless",
            "--norestore",
            "--convert-to",
            "txt:Text",
            "--outdir",
        ])
        .arg(dir.path())
        .arg(&out_path));
    assert_eq!(code, 0, "soffice failed: {text}");
    let shown = std::fs::read_to_string(dir.path().join("out.txt"))
        .unwrap_or_else(|e| panic!("LibreOffice wrote no text ({e}): {text}"));
    assert!(
        shown.contains("会議資料") && shown.contains("dde result"),
        "{shown}"
    );
}

#[test]
fn msodde_finds_no_field_in_outputs_of_documents_with_hidden_fields() {
    // msodde reads simple fields anywhere and complex fields in text boxes, so it sees these
    // inputs' fields; the run-level AlternateContent and Office Math fields it cannot see are
    // checked by searching every output part for the marker (tests/ooxml.rs).
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes, seen) in [
        (
            "alternate-content.docx",
            docx_with_fields_in_alternate_content(),
            "INCLUDETEXT",
        ),
        ("text-box.docx", docx_with_field_in_text_box(), "DDEAUTO"),
    ] {
        let in_path = dir.path().join(format!("in-{name}"));
        std::fs::write(&in_path, &bytes).unwrap();
        let (_, text) = run(Command::new(tool("msodde")).arg(&in_path));
        assert!(
            text.contains(seen) && text.contains(HIDDEN_MARK),
            "{name}: msodde does not see the fixture field:\n{text}"
        );
        let outcome = process(&bytes, name);
        let out_path = dir.path().join(format!("out-{name}"));
        std::fs::write(&out_path, outcome.output().expect("sanitized").bytes()).unwrap();
        let (_, text) = run(Command::new(tool("msodde")).arg(&out_path));
        let links = text.split("DDE Links:").nth(1).map(str::trim);
        assert_eq!(
            links,
            Some(""),
            "{name}: msodde finds a field in the output:\n{text}"
        );
    }
}

#[test]
fn libreoffice_opens_outputs_whose_outside_formulas_and_links_were_removed() {
    // A removed formula leaves its cached value: LibreOffice shows the value, where the input
    // showed an error or recalculated through the link.
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("profile");
    let cases: [(&str, Vec<u8>, &[&str]); 4] = [
        (
            "quoted.xlsx",
            xlsx_with_quoted_sheet_dde(),
            &["7", "8", "9"],
        ),
        (
            "places.xlsx",
            xlsx_with_outside_formulas(),
            // The label's column is narrow: with IPAex fonts LibreOffice clips its last
            // character, so only its start is looked for.
            &["売上", "開く", "応答", "400"],
        ),
        (
            "formulas.ods",
            ods_with_outside_formulas(),
            &["10", "応答", "5", "開く"],
        ),
        (
            "xlink.odt",
            odt_with_prefixed_xlink(),
            &["本文", "ファイルへのリンク"],
        ),
    ];
    let mut cmd = Command::new(tool("soffice"));
    cmd.arg(format!(
        "-env:UserInstallation=file://{}",
        profile.display()
    ))
    .args([
        "--headless",
        "--norestore",
        "--convert-to",
        "pdf",
        "--outdir",
    ])
    .arg(dir.path().join("pdf"));
    for (name, bytes, _) in &cases {
        let outcome = process(bytes, name);
        let path = dir.path().join(name);
        std::fs::write(&path, outcome.output().expect("sanitized").bytes()).unwrap();
        cmd.arg(&path);
    }
    let (code, text) = run(&mut cmd);
    assert_eq!(code, 0, "soffice failed: {text}");
    for (name, _, shown) in &cases {
        let pdf = dir
            .path()
            .join("pdf")
            .join(Path::new(name).with_extension("pdf"));
        let text = pdftotext(&pdf)
            .unwrap_or_else(|| panic!("{name}: LibreOffice did not convert the output"));
        let words: Vec<&str> = text.split_whitespace().collect();
        for s in *shown {
            // Numbers whole; words may be clipped by their column on the right.
            let seen = words
                .iter()
                .any(|w| w == s || (!s.bytes().all(|b| b.is_ascii_digit()) && w.starts_with(s)));
            assert!(seen, "{name}: {s} not shown: {text}");
        }
        assert!(!text.contains(HIDDEN_MARK), "{name}: {text}");
    }
}
