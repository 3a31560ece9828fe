//! PDF rebuilder behaviour, each case run through the fail-closed helper.

use crate::common;

use common::generate::*;
use common::*;
use mukaika_sanitizers::{Policy, Verdict, What};

const FORBIDDEN: &[&str] = &[
    "JS",
    "JavaScript",
    "AA",
    "Launch",
    "URI",
    "GoToR",
    "GoToE",
    "EmbeddedFile",
    "EmbeddedFiles",
    "EF",
    "AF",
    "RichMedia",
    "FileAttachment",
    "XFA",
    "SubmitForm",
    "ImportData",
];

fn assert_no_active_content(bytes: &[u8]) {
    let names = pdf_names(bytes);
    for bad in FORBIDDEN {
        assert!(!names.iter().any(|n| n == bad), "output still has /{bad}");
    }
}

#[test]
fn removes_javascript_openaction_and_keeps_pages() {
    let input = pdf_js_openaction();
    let outcome = assert_fail_closed("brochure.pdf", &input);
    assert!(
        removed(&outcome, What::Javascript, "OpenAction"),
        "{:?}",
        outcome.report.removed
    );
    let out = outcome.output().unwrap().bytes();
    assert_no_active_content(out);
    assert!(!pdf_names(out).iter().any(|n| n == "OpenAction"));
    assert_eq!(pdf_pages(out), 2);
}

#[test]
fn removes_every_active_family_and_keeps_what_is_harmless() {
    let input = pdf_kitchen_sink();
    let outcome = assert_fail_closed("form.pdf", &input);
    for (what, needle) in [
        (What::Javascript, "/Names /JavaScript"),
        (What::EmbeddedFile, "/Names /EmbeddedFiles"),
        (What::EmbeddedFile, "catalog /AF"),
        (What::EmbeddedFile, "FileAttachment"),
        (What::Multimedia, "RichMedia"),
        (What::AutoAction, "catalog /AA"),
        (What::AutoAction, "triggers: O"),
        (What::AutoAction, "triggers: K"),
        (What::Action, "Launch: cmd.exe"),
        (What::Action, "GoToR"),
        (What::Hyperlink, "https://phish.invalid/login"),
        (What::Javascript, "/A"),
        (What::Xfa, "XFA"),
        (What::Metadata, "trailer /Info"),
    ] {
        assert!(
            removed(&outcome, what, needle),
            "missing {what:?} {needle}: {:#?}",
            outcome.report.removed
        );
    }
    let out = outcome.output().unwrap().bytes();
    assert_no_active_content(out);
    assert_eq!(pdf_pages(out), 3);
    let names = pdf_names(out);
    assert!(
        names.iter().any(|n| n == "GoTo"),
        "in-document GoTo link must stay"
    );
    assert!(
        names.iter().any(|n| n == "AcroForm") && names.iter().any(|n| n == "Fields"),
        "form fields stay"
    );
    assert!(
        names.iter().any(|n| n == "OpenAction"),
        "a plain destination OpenAction stays"
    );
    assert!(
        names.iter().any(|n| n == "Outlines"),
        "outline stays without its action"
    );
    assert!(!names.iter().any(|n| n == "Info" || n == "Author"));
}

#[test]
fn keeps_uri_links_when_policy_allows() {
    let policy = Policy {
        keep_links: true,
        ..Policy::default()
    };
    let outcome = process_with(&pdf_kitchen_sink(), "form.pdf", &policy);
    assert_eq!(outcome.report.verdict, Verdict::Sanitized);
    let names = pdf_names(outcome.output().unwrap().bytes());
    assert!(names.iter().any(|n| n == "URI"));
    assert!(!names.iter().any(|n| n == "Launch" || n == "JS"));
}

#[test]
fn drops_non_web_uri_actions_even_when_links_are_kept() {
    let (mut doc, cat, _) = pdf_base(1);
    let c = doc
        .get_object_mut(cat)
        .and_then(lopdf::Object::as_dict_mut)
        .unwrap();
    c.set("OpenAction", lopdf::dictionary! { "S" => "URI", "URI" => lopdf::Object::string_literal("javascript:app.alert(1)") });
    let mut bytes = Vec::new();
    doc.save_to(&mut bytes).unwrap();
    let policy = Policy {
        keep_links: true,
        ..Policy::default()
    };
    let outcome = process_with(&bytes, "a.pdf", &policy);
    assert!(
        removed(&outcome, What::Hyperlink, "javascript:"),
        "{:?}",
        outcome.report.removed
    );
    assert!(!pdf_names(outcome.output().unwrap().bytes())
        .iter()
        .any(|n| n == "URI"));
}

#[test]
fn rebuilds_from_the_final_revision_and_drops_history() {
    let input = pdf_incremental_js();
    let outcome = assert_fail_closed("update.pdf", &input);
    assert!(removed(&outcome, What::RevisionHistory, "earlier revision"));
    assert!(
        removed(&outcome, What::Javascript, "OpenAction"),
        "{:?}",
        outcome.report.removed
    );
    let out = outcome.output().unwrap().bytes();
    assert_no_active_content(out);
    assert_eq!(out.windows(5).filter(|w| *w == b"%%EOF").count(), 1);
    assert_eq!(pdf_pages(out), 2);
}

#[test]
fn drops_bytes_before_the_header_and_after_the_end() {
    let outcome = assert_fail_closed("carrier.pdf", &pdf_with_junk_around());
    assert!(removed(&outcome, What::TrailingData, "before %PDF- header"));
    assert!(removed(&outcome, What::TrailingData, "after last %%EOF"));
    let out = outcome.output().unwrap().bytes();
    assert!(out.starts_with(b"%PDF-"));
    assert!(!out.windows(8).any(|w| w == b"appended"));
}

#[test]
fn quarantines_a_pdf_without_pages() {
    let (mut doc, _, pages) = pdf_base(1);
    doc.objects.insert(pages, lopdf::Object::Dictionary(lopdf::dictionary! { "Type" => "Pages", "Kids" => Vec::<lopdf::Object>::new(), "Count" => 0 }));
    let mut bytes = Vec::new();
    doc.save_to(&mut bytes).unwrap();
    let outcome = process(&bytes, "empty.pdf");
    assert_eq!(outcome.report.verdict, Verdict::Quarantined);
    assert_eq!(outcome.report.reason.unwrap().code, "malformed");
}

#[test]
fn quarantines_zip_magic_in_front_of_a_pdf() {
    let mut bytes = b"PK\x03\x04".to_vec();
    bytes.extend(pdf_js_openaction());
    let outcome = process(&bytes, "invoice.pdf");
    assert_eq!(outcome.report.verdict, Verdict::Quarantined);
    assert_eq!(outcome.report.reason.unwrap().code, "polyglot");
}

fn page_dict(doc: &mut lopdf::Document, n: u32) -> &mut lopdf::Dictionary {
    let id = *doc.get_pages().get(&n).unwrap();
    doc.get_object_mut(id)
        .and_then(lopdf::Object::as_dict_mut)
        .unwrap()
}

fn lit(s: &str) -> lopdf::Object {
    lopdf::Object::string_literal(s)
}

fn save(mut doc: lopdf::Document) -> Vec<u8> {
    let mut bytes = Vec::new();
    doc.save_to(&mut bytes).unwrap();
    bytes
}

/// Every stream's decoded bytes and every string in a PDF, for "marker gone" checks.
fn pdf_payload(bytes: &[u8]) -> Vec<u8> {
    let doc = lopdf::Document::load_mem(bytes).expect("output parses");
    let mut out = Vec::new();
    fn walk(obj: &lopdf::Object, out: &mut Vec<u8>) {
        match obj {
            lopdf::Object::String(s, _) => out.extend_from_slice(s),
            lopdf::Object::Array(a) => a.iter().for_each(|o| walk(o, out)),
            lopdf::Object::Dictionary(d) => d.iter().for_each(|(_, v)| walk(v, out)),
            lopdf::Object::Stream(s) => {
                s.dict.iter().for_each(|(_, v)| walk(v, out));
                out.extend(
                    s.decompressed_content()
                        .unwrap_or_else(|_| s.content.clone()),
                );
            }
            _ => {}
        }
    }
    doc.objects.values().for_each(|o| walk(o, &mut out));
    out
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[test]
fn actions_without_a_type_are_judged_by_s_wherever_they_sit() {
    use lopdf::{dictionary, Object};
    let (mut doc, cat, _) = pdf_base(2);
    let page2 = *doc.get_pages().get(&2).unwrap();
    // A presentation step's next action, with no /Type /Action.
    let launch = doc.add_object(dictionary! { "S" => "Launch", "F" => lit("presstep-calc.exe") });
    let submit = dictionary! { "S" => "SubmitForm", "F" => dictionary! { "FS" => "URL", "F" => lit("http://submit-marker.invalid/") } };
    page_dict(&mut doc, 1).set(
        "PresSteps",
        dictionary! { "Type" => "NavNode", "NA" => launch, "Next" => dictionary! { "Type" => "NavNode", "NA" => submit } },
    );
    // A Text annotation's action and triggers, and an action inside an array under an odd key.
    let annot = doc.add_object(dictionary! {
        "Type" => "Annot", "Subtype" => "Text", "Rect" => vec![0.into(), 0.into(), 10.into(), 10.into()],
        "A" => dictionary! { "S" => "URI", "URI" => lit("http://uri-marker.invalid/") },
        "AA" => dictionary! { "E" => dictionary! { "S" => "JavaScript", "JS" => lit("annot-js-marker()") } },
    });
    page_dict(&mut doc, 1).set("Annots", vec![Object::Reference(annot)]);
    page_dict(&mut doc, 2).set(
        "AA",
        dictionary! { "O" => dictionary! { "S" => "ImportData", "F" => lit("aa-import.fdf") } },
    );
    page_dict(&mut doc, 2).set(
        "PieceOfArray",
        vec![
            Object::Integer(1),
            Object::Dictionary(dictionary! { "S" => "ImportData", "F" => lit("array-import.fdf") }),
        ],
    );
    // A GoTo whose /Next chain leaves the document.
    let goto = dictionary! {
        "S" => "GoTo", "D" => vec![Object::Reference(page2), "Fit".into()],
        "Next" => vec![
            Object::Dictionary(dictionary! { "S" => "GoToR", "F" => lit("next-remote.pdf"), "D" => vec![0.into(), "Fit".into()] }),
            Object::Dictionary(dictionary! { "S" => "GoToE", "T" => dictionary! { "R" => "C", "N" => lit("next-embedded") } }),
        ],
    };
    let c = doc
        .get_object_mut(cat)
        .and_then(Object::as_dict_mut)
        .unwrap();
    c.set("OpenAction", goto);
    // A destination name tree whose value is an action.
    c.set(
        "Names",
        dictionary! { "Dests" => dictionary! { "Names" => vec![
            lit("d1"), Object::Array(vec![Object::Reference(page2), "Fit".into()]),
            lit("d2"), Object::Dictionary(dictionary! { "S" => "Launch", "F" => lit("names-launch.exe") }),
            lit("d3"), Object::Dictionary(dictionary! { "D" => vec![Object::Reference(page2), "Fit".into()], "Next" => dictionary! { "S" => "JavaScript", "JS" => lit("dest-js-marker()") } }),
        ] } },
    );
    let input = save(doc);
    let outcome = assert_fail_closed("steps.pdf", &input);
    for (what, needle) in [
        (What::Action, "presstep-calc.exe"),
        (What::Action, "submit-marker.invalid"),
        (What::Hyperlink, "uri-marker.invalid"),
        (What::Action, "array-import.fdf"),
        (What::Action, "next-remote.pdf"),
        (What::EmbeddedFile, "GoToE"),
        (What::Action, "names-launch.exe"),
        (What::Javascript, "Next"),
    ] {
        assert!(
            removed(&outcome, what, needle),
            "missing {what:?} {needle}: {:#?}",
            outcome.report.removed
        );
    }
    let out = outcome.output().unwrap().bytes();
    assert_no_active_content(out);
    let payload = pdf_payload(out);
    for marker in [
        "presstep-calc",
        "submit-marker",
        "uri-marker",
        "annot-js-marker",
        "aa-import",
        "array-import",
        "next-remote",
        "next-embedded",
        "names-launch",
        "dest-js-marker",
    ] {
        assert!(!contains(&payload, marker), "{marker} survived");
    }
    assert!(pdf_names(out).iter().any(|n| n == "GoTo"), "the GoTo stays");
    assert_eq!(pdf_pages(out), 2);
}

const PE_MARKER: &str = "This program cannot be run in DOS mode";

fn pe_bytes() -> Vec<u8> {
    let mut pe = b"MZ\x90\x00\x03\x00\x00\x00".to_vec();
    pe.extend_from_slice(PE_MARKER.as_bytes());
    pe.extend_from_slice(b"PE\0\0L\x01");
    pe
}

#[test]
fn streams_under_keys_not_on_the_allowlist_are_dropped() {
    use lopdf::{dictionary, Object, Stream};
    let (mut doc, cat, _) = pdf_base(1);
    let payload = doc.add_object(Stream::new(dictionary! {}, pe_bytes()));
    let in_array = doc.add_object(Stream::new(dictionary! {}, pe_bytes()));
    page_dict(&mut doc, 1).set("Payload", payload);
    page_dict(&mut doc, 1).set("Extras", vec![Object::Reference(in_array)]);
    let in_catalog_child = doc.add_object(Stream::new(dictionary! {}, pe_bytes()));
    let c = doc
        .get_object_mut(cat)
        .and_then(Object::as_dict_mut)
        .unwrap();
    c.set(
        "ViewerPreferences",
        dictionary! { "Blob" => in_catalog_child },
    );
    let outcome = assert_fail_closed("carrier.pdf", &save(doc));
    assert!(
        removed(&outcome, What::UnknownPart, "/Payload"),
        "{:#?}",
        outcome.report.removed
    );
    assert!(removed(&outcome, What::UnknownPart, "/Extras"));
    assert!(removed(&outcome, What::UnknownPart, "/Blob"));
    let out = outcome.output().unwrap().bytes();
    assert!(!contains(&pdf_payload(out), PE_MARKER), "the PE survived");
    assert!(!contains(out, PE_MARKER));
    assert_eq!(pdf_pages(out), 1);
}

/// A minimal sfnt font: the tables named, each 4-byte aligned, directory sorted by tag.
fn sfnt(tables: &[(&[u8; 4], Vec<u8>)]) -> Vec<u8> {
    let mut tables = tables.to_vec();
    tables.sort_by_key(|(t, _)| **t);
    let n = tables.len() as u16;
    let mut out = Vec::new();
    out.extend_from_slice(&0x0001_0000u32.to_be_bytes());
    out.extend_from_slice(&n.to_be_bytes());
    out.extend_from_slice(&[0, 16, 0, 0, 0, 0]);
    let mut offset = 12 + 16 * tables.len();
    let mut data = Vec::new();
    for (tag, body) in &tables {
        out.extend_from_slice(*tag);
        out.extend_from_slice(&0u32.to_be_bytes());
        out.extend_from_slice(&(offset as u32).to_be_bytes());
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        data.extend_from_slice(body);
        while data.len() % 4 != 0 {
            data.push(0);
        }
        offset = 12 + 16 * tables.len() + data.len();
    }
    out.extend(data);
    out
}

fn valid_sfnt() -> Vec<u8> {
    let mut head = vec![0u8; 54];
    head[0..4].copy_from_slice(&0x0001_0000u32.to_be_bytes());
    head[12..16].copy_from_slice(&0x5F0F_3CF5u32.to_be_bytes());
    head[18..20].copy_from_slice(&1000u16.to_be_bytes());
    let mut maxp = vec![0u8; 6];
    maxp[0..4].copy_from_slice(&0x0000_5000u32.to_be_bytes());
    maxp[4..6].copy_from_slice(&1u16.to_be_bytes());
    sfnt(&[
        (b"head", head),
        (b"maxp", maxp),
        (b"loca", vec![0, 0, 0, 0]),
        (b"glyf", Vec::new()),
    ])
}

/// A minimal CFF font: one name, a top DICT pointing at one glyph's charstring (`endchar`).
fn valid_cff() -> Vec<u8> {
    let mut cff = vec![1, 0, 4, 1];
    cff.extend_from_slice(&[0, 1, 1, 1, 2, b'A']); // Name INDEX
    let charstrings: i32 = 4 + 6 + 11 + 2 + 2;
    let mut top = vec![29];
    top.extend_from_slice(&charstrings.to_be_bytes());
    top.push(17);
    cff.extend_from_slice(&[0, 1, 1, 1, 1 + top.len() as u8]); // Top DICT INDEX
    cff.extend(top);
    cff.extend_from_slice(&[0, 0]); // String INDEX
    cff.extend_from_slice(&[0, 0]); // Global Subr INDEX
    assert_eq!(cff.len() as i32, charstrings);
    cff.extend_from_slice(&[0, 1, 1, 1, 2, 14]); // CharStrings INDEX: endchar
    cff
}

#[test]
fn embedded_font_programs_are_kept_only_when_they_parse() {
    use lopdf::{dictionary, Object, Stream};
    let (mut doc, _, _) = pdf_base(1);
    let mut with_pe_appended = valid_sfnt();
    with_pe_appended.extend(pe_bytes());
    // A well-formed font with one more table, named like no font table, holding a PE.
    let mut head = vec![0u8; 54];
    head[12..16].copy_from_slice(&0x5F0F_3CF5u32.to_be_bytes());
    let with_pe_table = sfnt(&[
        (b"head", head),
        (b"maxp", vec![0, 0, 0x50, 0, 0, 1]),
        (b"loca", vec![0, 0, 0, 0]),
        (b"glyf", Vec::new()),
        (b"zPE!", pe_bytes()),
    ]);
    let clear = b"%!PS-AdobeFont-1.0: X\n/FontName /X def\ncurrentfile eexec\n".to_vec();
    let clear_len = clear.len() as i64;
    let mut type1 = clear;
    type1.extend_from_slice(b"\x01\x02\x03\x04");
    type1.extend(pe_bytes());
    type Case<'a> = (
        &'a str,
        &'a str,
        Option<&'a str>,
        Vec<u8>,
        Vec<(&'a str, i64)>,
    );
    let cases: Vec<Case> = vec![
        ("good", "FontFile2", None, valid_sfnt(), vec![]),
        ("appended", "FontFile2", None, with_pe_appended, vec![]),
        (
            "table",
            "FontFile3",
            Some("OpenType"),
            with_pe_table,
            vec![],
        ),
        ("garbage2", "FontFile2", None, pe_bytes(), vec![]),
        ("garbage3", "FontFile3", Some("Type1C"), pe_bytes(), vec![]),
        ("cff", "FontFile3", Some("Type1C"), valid_cff(), vec![]),
        (
            "cff-appended",
            "FontFile3",
            Some("Type1C"),
            {
                let mut cff = valid_cff();
                cff.extend(pe_bytes());
                cff
            },
            vec![],
        ),
        (
            "type1",
            "FontFile",
            None,
            type1,
            vec![("Length1", clear_len), ("Length2", 4), ("Length3", 0)],
        ),
    ];
    let mut fonts = lopdf::Dictionary::new();
    for (i, (name, key, subtype, data, lengths)) in cases.iter().enumerate() {
        let mut dict = dictionary! {};
        if let Some(s) = subtype {
            dict.set("Subtype", Object::Name(s.as_bytes().to_vec()));
        }
        for (k, v) in lengths {
            dict.set(*k, *v);
        }
        let file = doc.add_object(Stream::new(dict, data.clone()));
        let descriptor = doc.add_object(dictionary! {
            "Type" => "FontDescriptor", "FontName" => Object::Name(name.as_bytes().to_vec()),
            "Flags" => 32, "FontBBox" => vec![0.into(), 0.into(), 1000.into(), 1000.into()],
            "ItalicAngle" => 0, "Ascent" => 800, "Descent" => -200, "CapHeight" => 700, "StemV" => 80,
            *key => file,
        });
        let font = doc.add_object(dictionary! {
            "Type" => "Font", "Subtype" => "TrueType", "BaseFont" => Object::Name(name.as_bytes().to_vec()),
            "FontDescriptor" => descriptor,
        });
        fonts.set(format!("G{i}"), font);
    }
    let font_res = page_dict(&mut doc, 1)
        .get_mut(b"Resources")
        .and_then(Object::as_dict_mut)
        .unwrap()
        .get_mut(b"Font")
        .and_then(Object::as_dict_mut)
        .unwrap();
    for (k, v) in fonts.iter() {
        font_res.set(k.clone(), v.clone());
    }
    let outcome = assert_fail_closed("fonts.pdf", &save(doc));
    let dropped: Vec<_> = outcome
        .report
        .removed
        .iter()
        .filter(|r| r.what == What::EmbeddedFont)
        .collect();
    assert_eq!(dropped.len(), 6, "{:#?}", outcome.report.removed);
    assert!(removed(&outcome, What::EmbeddedFont, "belong to no table"));
    assert!(removed(&outcome, What::EmbeddedFont, "font table 'zPE!'"));
    assert!(removed(
        &outcome,
        What::EmbeddedFont,
        "data after the font program"
    ));
    let out = outcome.output().unwrap().bytes();
    assert!(!contains(&pdf_payload(out), PE_MARKER), "a PE survived");
    let names = pdf_names(out);
    assert_eq!(
        names.iter().filter(|n| *n == "FontFile2").count(),
        1,
        "the well-formed TrueType font stays"
    );
    assert_eq!(
        names.iter().filter(|n| *n == "FontFile3").count(),
        2,
        "the well-formed CFF font and the OpenType font without its odd table stay"
    );
}

#[test]
fn a_stream_reached_as_an_image_first_and_then_as_a_font_program_is_held() {
    // The page's XObject reference comes first, so the stream was once admitted as an image;
    // the font descriptor then names the same object, which would have skipped the font check.
    use lopdf::{dictionary, Object, Stream};
    let (mut doc, _, _) = pdf_base(1);
    let mut junk = valid_sfnt();
    junk.extend(pe_bytes());
    let shared = doc.add_object(Stream::new(
        dictionary! { "Type" => "XObject", "Subtype" => "Form", "BBox" => vec![0.into(), 0.into(), 1.into(), 1.into()] },
        junk,
    ));
    let descriptor = doc.add_object(dictionary! {
        "Type" => "FontDescriptor", "FontName" => "X", "Flags" => 32,
        "FontBBox" => vec![0.into(), 0.into(), 1000.into(), 1000.into()],
        "ItalicAngle" => 0, "Ascent" => 800, "Descent" => -200, "CapHeight" => 700, "StemV" => 80,
        "FontFile2" => shared,
    });
    let font = doc.add_object(dictionary! {
        "Type" => "Font", "Subtype" => "TrueType", "BaseFont" => "X", "FontDescriptor" => descriptor,
    });
    let resources = page_dict(&mut doc, 1)
        .get_mut(b"Resources")
        .and_then(Object::as_dict_mut)
        .unwrap();
    // XObject before Font in the dictionary, so the image reference is met first.
    let mut fonts = resources.remove(b"Font").unwrap();
    fonts.as_dict_mut().unwrap().set("G9", font);
    resources.set("XObject", dictionary! { "Im1" => shared });
    resources.set("Font", fonts);
    let outcome = process(&save(doc), "shared.pdf");
    match outcome.output() {
        Some(out) => assert!(
            !contains(&pdf_payload(out.bytes()), PE_MARKER),
            "a PE survived as an unchecked font"
        ),
        None => assert_eq!(
            outcome.report.reason.as_ref().map(|r| r.code.as_str()),
            Some("malformed")
        ),
    }
}

#[test]
fn a_page_tree_that_loops_is_held_and_a_repeated_page_is_written_twice() {
    use lopdf::{dictionary, Object};
    // /Kids naming the node itself.
    let (mut doc, _, pages) = pdf_base(2);
    doc.get_object_mut(pages)
        .and_then(Object::as_dict_mut)
        .unwrap()
        .get_mut(b"Kids")
        .and_then(Object::as_array_mut)
        .unwrap()
        .push(Object::Reference(pages));
    let looped = save(doc);
    // An inner node whose kid is the root.
    let (mut doc, _, pages) = pdf_base(1);
    let inner = doc.add_object(dictionary! { "Type" => "Pages", "Parent" => pages, "Kids" => vec![Object::Reference(pages)], "Count" => 1 });
    doc.get_object_mut(pages)
        .and_then(Object::as_dict_mut)
        .unwrap()
        .get_mut(b"Kids")
        .and_then(Object::as_array_mut)
        .unwrap()
        .push(Object::Reference(inner));
    let cycle = save(doc);
    // The same page listed twice is no loop: it is shown twice, and written as two pages.
    let (mut doc, _, pages) = pdf_base(2);
    let first = *doc.get_pages().get(&1).unwrap();
    let root = doc
        .get_object_mut(pages)
        .and_then(Object::as_dict_mut)
        .unwrap();
    root.get_mut(b"Kids")
        .and_then(Object::as_array_mut)
        .unwrap()
        .push(Object::Reference(first));
    root.set("Count", 3);
    let outcome = assert_fail_closed("repeated.pdf", &save(doc));
    assert_eq!(pdf_pages(outcome.output().unwrap().bytes()), 3);
    for (name, bytes) in [("looped.pdf", looped), ("cycle.pdf", cycle)] {
        let outcome = process(&bytes, name);
        assert_eq!(outcome.report.verdict, Verdict::Quarantined, "{name}");
        let reason = outcome.report.reason.unwrap();
        assert_eq!(reason.code, "malformed", "{name}: {}", reason.detail);
        assert!(reason.detail.contains("twice"), "{name}: {}", reason.detail);
    }
}

#[test]
fn a_nested_page_tree_is_rebuilt_flat_with_inherited_attributes() {
    use lopdf::{dictionary, Object};
    let (mut doc, cat, pages) = pdf_base(3);
    let kids: Vec<Object> = doc
        .get_pages()
        .values()
        .map(|id| Object::Reference(*id))
        .collect();
    // Pages 2 and 3 under an inner node that carries their media box and resources.
    let inner = doc.new_object_id();
    for kid in &kids[1..] {
        let id = kid.as_reference().unwrap();
        let page = doc
            .get_object_mut(id)
            .and_then(Object::as_dict_mut)
            .unwrap();
        page.remove(b"MediaBox");
        let res = page.remove(b"Resources").unwrap();
        page.set("Parent", inner);
        let _ = res;
    }
    let font = page_dict(&mut doc, 1).get(b"Resources").unwrap().clone();
    doc.objects.insert(
        inner,
        Object::Dictionary(dictionary! {
            "Type" => "Pages", "Parent" => pages, "Kids" => kids[1..].to_vec(), "Count" => 2,
            "MediaBox" => vec![0.into(), 0.into(), 300.into(), 400.into()], "Resources" => font,
        }),
    );
    let root = doc
        .get_object_mut(pages)
        .and_then(Object::as_dict_mut)
        .unwrap();
    root.set("Kids", vec![kids[0].clone(), Object::Reference(inner)]);
    let _ = cat;
    let outcome = assert_fail_closed("nested.pdf", &save(doc));
    let out = lopdf::Document::load_mem(outcome.output().unwrap().bytes()).unwrap();
    let pages = out.get_pages();
    assert_eq!(pages.len(), 3);
    let third = out.get_dictionary(pages[&3]).unwrap();
    assert_eq!(
        third.get(b"MediaBox").unwrap().as_array().unwrap()[3]
            .as_i64()
            .unwrap(),
        400
    );
    assert!(third.has(b"Resources"));
}

#[test]
fn an_empty_password_encrypted_pdf_is_rebuilt_unencrypted_and_valid() {
    use lopdf::encryption::crypt_filters::{Aes128CryptFilter, Aes256CryptFilter, CryptFilter};
    use std::collections::BTreeMap;
    use std::sync::Arc;
    for variant in ["rc4-128", "aes-128", "aes-256"] {
        let (mut doc, cat, _) = pdf_base(2);
        doc.trailer.set(
            "ID",
            vec![
                lopdf::Object::String(
                    b"0123456789abcdef".to_vec(),
                    lopdf::StringFormat::Hexadecimal,
                ),
                lopdf::Object::String(
                    b"0123456789abcdef".to_vec(),
                    lopdf::StringFormat::Hexadecimal,
                ),
            ],
        );
        // A string outside any stream, so string decryption is exercised too.
        doc.get_object_mut(cat)
            .and_then(lopdf::Object::as_dict_mut)
            .unwrap()
            .set("Lang", lit("ja-JP-mukaika-lang"));
        let key = [7u8; 32];
        let state = {
            let version = match variant {
                "rc4-128" => lopdf::EncryptionVersion::V2 {
                    document: &doc,
                    owner_password: "owner-secret",
                    user_password: "",
                    key_length: 128,
                    permissions: lopdf::Permissions::all(),
                },
                "aes-128" => {
                    let filter: Arc<dyn CryptFilter> = Arc::new(Aes128CryptFilter);
                    lopdf::EncryptionVersion::V4 {
                        document: &doc,
                        encrypt_metadata: true,
                        crypt_filters: BTreeMap::from([(b"StdCF".to_vec(), filter)]),
                        stream_filter: b"StdCF".to_vec(),
                        string_filter: b"StdCF".to_vec(),
                        owner_password: "owner-secret",
                        user_password: "",
                        permissions: lopdf::Permissions::all(),
                    }
                }
                _ => {
                    let filter: Arc<dyn CryptFilter> = Arc::new(Aes256CryptFilter);
                    lopdf::EncryptionVersion::V5 {
                        encrypt_metadata: true,
                        crypt_filters: BTreeMap::from([(b"StdCF".to_vec(), filter)]),
                        file_encryption_key: &key,
                        stream_filter: b"StdCF".to_vec(),
                        string_filter: b"StdCF".to_vec(),
                        owner_password: "owner-secret",
                        user_password: "",
                        permissions: lopdf::Permissions::all(),
                    }
                }
            };
            lopdf::EncryptionState::try_from(version).unwrap()
        };
        doc.encrypt(&state).unwrap();
        let bytes = save(doc);
        assert!(contains(&bytes, "/Encrypt"), "{variant}");
        assert!(
            !contains(&bytes, "mukaika-fixture-text"),
            "{variant}: not encrypted"
        );
        let outcome = assert_fail_closed("protected.pdf", &bytes);
        assert!(
            removed(&outcome, What::Encryption, "empty user password"),
            "{variant}: {:?}",
            outcome.report.removed
        );
        let out = outcome.output().unwrap().bytes();
        assert!(!pdf_names(out).iter().any(|n| n == "Encrypt"), "{variant}");
        let payload = pdf_payload(out);
        assert!(contains(&payload, "mukaika-fixture-text"), "{variant}");
        assert!(contains(&payload, "ja-JP-mukaika-lang"), "{variant}");
        assert_eq!(pdf_pages(out), 2, "{variant}");
    }
}

#[test]
fn an_empty_password_pdf_that_does_not_decrypt_cleanly_is_held() {
    let (mut doc, _, _) = pdf_base(2);
    doc.trailer.set(
        "ID",
        vec![
            lopdf::Object::String(
                b"0123456789abcdef".to_vec(),
                lopdf::StringFormat::Hexadecimal,
            ),
            lopdf::Object::String(
                b"0123456789abcdef".to_vec(),
                lopdf::StringFormat::Hexadecimal,
            ),
        ],
    );
    let version = lopdf::EncryptionVersion::V2 {
        document: &doc,
        owner_password: "owner-secret",
        user_password: "",
        key_length: 128,
        permissions: lopdf::Permissions::all(),
    };
    let state = lopdf::EncryptionState::try_from(version).unwrap();
    doc.encrypt(&state).unwrap();
    // Page 2's content no longer decrypts to a valid Flate stream.
    let contents = doc
        .get_dictionary(*doc.get_pages().get(&2).unwrap())
        .and_then(|p| p.get(b"Contents"))
        .and_then(lopdf::Object::as_reference)
        .unwrap();
    let stream = doc
        .get_object_mut(contents)
        .and_then(lopdf::Object::as_stream_mut)
        .unwrap();
    stream.dict.set("Filter", "FlateDecode");
    stream.set_content(b"\x13\x37 damaged ciphertext \xde\xad\xbe\xef".to_vec());
    let outcome = process(&save(doc), "damaged.pdf");
    assert_eq!(outcome.report.verdict, Verdict::Quarantined);
    let reason = outcome.report.reason.unwrap();
    assert_eq!(reason.code, "encrypted", "{}", reason.detail);
    assert!(
        reason.detail.contains("does not decode"),
        "{}",
        reason.detail
    );
}

// ---------------------------------------------------------------------------------------------
// Damaged cross-reference data (issue #20 class 11): files qpdf and pdf.js open are rebuilt
// from the objects a scan finds.
// ---------------------------------------------------------------------------------------------

fn find_all(hay: &[u8], needle: &[u8]) -> Vec<usize> {
    hay.windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect()
}

fn last(hay: &[u8], needle: &[u8]) -> usize {
    *find_all(hay, needle).last().expect("keyword present")
}

/// Where the last classic cross-reference table starts.
fn table_at(bytes: &[u8]) -> usize {
    last(bytes, b"\nxref\n") + 1
}

/// The text pdftotext reads from a PDF.
fn pdf_text(bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.pdf");
    std::fs::write(&path, bytes).unwrap();
    let out = std::process::Command::new("pdftotext")
        .arg("-q")
        .arg(&path)
        .arg("-")
        .output()
        .expect("pdftotext is installed");
    assert_eq!(out.status.code(), Some(0), "pdftotext fails");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Saves with a classic cross-reference table and trailer (lopdf writes a stream by default).
fn save_classic(mut doc: lopdf::Document) -> Vec<u8> {
    doc.reference_table.cross_reference_type = lopdf::xref::XrefType::CrossReferenceTable;
    let bytes = save(doc);
    assert!(contains(&bytes, "trailer"));
    bytes
}

/// A two-page document with a classic cross-reference table.
fn intact_pdf() -> Vec<u8> {
    save_classic(pdf_base(2).0)
}

/// The same document written with object streams and a cross-reference stream.
fn intact_modern_pdf() -> Vec<u8> {
    let (mut doc, _, _) = pdf_base(2);
    let mut bytes = Vec::new();
    doc.save_modern(&mut bytes).unwrap();
    assert!(contains(&bytes, "/ObjStm") && contains(&bytes, "/XRef"));
    bytes
}

/// Replaces the number after the last `startxref`.
fn with_startxref(bytes: &[u8], value: &str) -> Vec<u8> {
    let at = last(bytes, b"startxref") + b"startxref".len();
    let eof = last(bytes, b"%%EOF");
    let mut out = bytes[..at].to_vec();
    out.extend_from_slice(format!("\n{value}\n").as_bytes());
    out.extend_from_slice(&bytes[eof..]);
    out
}

/// Inserts a comment line after the header: every offset the file records is now wrong.
fn shifted(bytes: &[u8]) -> Vec<u8> {
    let nl = bytes.iter().position(|&b| b == b'\n').unwrap() + 1;
    let mut out = bytes[..nl].to_vec();
    out.extend_from_slice(b"% a line an editor added, shifting every object by its length\n");
    out.extend_from_slice(&bytes[nl..]);
    out
}

/// Asserts the damaged file is rebuilt: sanitized with the scan warning, accepted by qpdf,
/// the text of both pages kept, and the output read again without repair.
fn assert_repaired(name: &str, damaged: &[u8]) -> Vec<u8> {
    let outcome = process(damaged, name);
    assert_eq!(
        outcome.report.verdict,
        Verdict::Sanitized,
        "{name}: {:?}",
        outcome.report.reason
    );
    let out = outcome.output().unwrap().bytes().to_vec();
    assert_qpdf_accepts(name, &out);
    let text = pdf_text(&out);
    for page in ["Page 1 mukaika-fixture-text", "Page 2 mukaika-fixture-text"] {
        assert!(text.contains(page), "{name}: lost {page:?}: {text:?}");
    }
    assert_eq!(pdf_pages(&out), 2, "{name}");
    let reread = lopdf::Document::load_mem(&out).unwrap();
    assert!(
        reread.xref_recovery.is_none(),
        "{name}: output needs repair"
    );
    assert_second_pass_removes_nothing(&outcome);
    out
}

fn warned_of_scan(name: &str, damaged: &[u8]) {
    let outcome = process(damaged, name);
    assert!(
        outcome
            .report
            .warnings
            .iter()
            .any(|w| w.contains("objects were located by scanning")),
        "{name}: {:?}",
        outcome.report.warnings
    );
}

#[test]
fn a_pdf_with_a_long_binary_tail_after_eof_is_rebuilt() {
    // More than 1024 bytes after %%EOF: the startxref is not where readers look for it.
    for (name, mut damaged) in [
        ("tail.pdf", intact_pdf()),
        ("tail-modern.pdf", intact_modern_pdf()),
    ] {
        let mut x: u32 = 0x1234_5678;
        for _ in 0..4000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            // Bytes no PDF keyword is made of.
            damaged.push(0x80 | (x as u8 & 0x7f));
        }
        assert_repaired(name, &damaged);
    }
}

#[test]
fn a_pdf_whose_xref_offsets_are_wrong_is_rebuilt() {
    let bytes = intact_pdf();
    let table = table_at(&bytes);
    let trailer = last(&bytes, b"trailer");
    let mut damaged = bytes[..table].to_vec();
    let entries = String::from_utf8_lossy(&bytes[table..trailer]).into_owned();
    for line in entries.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        if fields.len() >= 3 && fields[2] == "n" {
            let off: u64 = fields[0].parse().unwrap();
            damaged.extend_from_slice(format!("{:010} {} n\r\n", off + 7, fields[1]).as_bytes());
        } else {
            damaged.extend_from_slice(line.as_bytes());
            damaged.push(b'\n');
        }
    }
    damaged.extend_from_slice(&bytes[trailer..]);
    warned_of_scan("offsets.pdf", &damaged);
    assert_repaired("offsets.pdf", &damaged);
    // A cross-reference stream written without compression: every offset in it moved by 7.
    let bytes = intact_modern_pdf();
    let data = last(&bytes, b"/Type/XRef");
    let start = data + find_all(&bytes[data..], b"stream\n")[0] + 7;
    let end = data + find_all(&bytes[data..], b"endstream")[0] - 1;
    let mut damaged = bytes.clone();
    for entry in damaged[start..end].chunks_mut(7) {
        if entry[0] == 1 {
            let off = u32::from_be_bytes([entry[1], entry[2], entry[3], entry[4]]) + 7;
            entry[1..5].copy_from_slice(&off.to_be_bytes());
        }
    }
    assert_ne!(damaged, bytes);
    assert_repaired("offsets-stream.pdf", &damaged);
}

#[test]
fn a_pdf_cut_before_its_xref_table_is_rebuilt() {
    let bytes = intact_pdf();
    let damaged = bytes[..table_at(&bytes)].to_vec();
    warned_of_scan("cut.pdf", &damaged);
    assert_repaired("cut.pdf", &damaged);
    // The table and trailer gone but startxref left, pointing at nothing.
    let mut no_table = bytes[..table_at(&bytes)].to_vec();
    no_table.extend_from_slice(&bytes[last(&bytes, b"startxref")..]);
    assert_repaired("no-table.pdf", &no_table);
}

#[test]
fn a_pdf_whose_xref_stream_offsets_are_wrong_is_rebuilt() {
    let bytes = shifted(&intact_modern_pdf());
    // startxref made right again, so the stream is read and its entries are what is wrong.
    let xref_obj = {
        let type_at = last(&bytes, b"/XRef");
        let obj = find_all(&bytes[..type_at], b" obj").pop().unwrap();
        let line = bytes[..obj].iter().rposition(|&b| b == b'\n').unwrap() + 1;
        line
    };
    let damaged = with_startxref(&bytes, &xref_obj.to_string());
    warned_of_scan("xref-stream.pdf", &damaged);
    assert_repaired("xref-stream.pdf", &damaged);
    // And with startxref left wrong too.
    assert_repaired("xref-stream-shifted.pdf", &bytes);
}

#[test]
fn a_pdf_whose_startxref_is_wrong_is_rebuilt() {
    for (name, value) in [
        ("zero.pdf", "0"),
        ("past-end.pdf", "999999"),
        ("inside.pdf", "100"),
    ] {
        assert_repaired(name, &with_startxref(&intact_pdf(), value));
        assert_repaired(name, &with_startxref(&intact_modern_pdf(), value));
    }
}

#[test]
fn a_pdf_with_garbage_before_the_header_counted_in_its_offsets_is_rebuilt() {
    // A writer that put a mail header in front and counted it in every offset.
    let bytes = intact_pdf();
    let garbage = b"X-Mailer: something\r\nContent-Type: application/pdf\r\n\r\n";
    let mut damaged = garbage.to_vec();
    // Offsets right for the file as a whole, wrong when read from the header.
    let pdf = bytes;
    let table = table_at(&pdf);
    let trailer = last(&pdf, b"trailer");
    let mut body = pdf[..table].to_vec();
    for line in String::from_utf8_lossy(&pdf[table..trailer]).lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        if fields.len() >= 3 && fields[2] == "n" {
            let off: usize = fields[0].parse().unwrap();
            body.extend_from_slice(
                format!("{:010} {} n\r\n", off + garbage.len(), fields[1]).as_bytes(),
            );
        } else {
            body.extend_from_slice(line.as_bytes());
            body.push(b'\n');
        }
    }
    body.extend_from_slice(&pdf[trailer..]);
    let body = with_startxref(&body, &(table + garbage.len()).to_string());
    damaged.extend(body);
    assert_repaired("prefixed.pdf", &damaged);
    // The same with a cross-reference stream.
    let mut damaged = garbage.to_vec();
    damaged.extend(shifted(&intact_modern_pdf()));
    assert_repaired("prefixed-modern.pdf", &damaged);
}

#[test]
fn a_pdf_cut_before_its_xref_stream_finds_the_catalog_in_an_object_stream() {
    let bytes = intact_modern_pdf();
    let type_at = last(&bytes, b"/XRef");
    let obj = find_all(&bytes[..type_at], b" obj").pop().unwrap();
    let line = bytes[..obj].iter().rposition(|&b| b == b'\n').unwrap() + 1;
    let damaged = bytes[..line].to_vec();
    assert!(!contains(&damaged, "/Root"));
    warned_of_scan("cut-modern.pdf", &damaged);
    assert_repaired("cut-modern.pdf", &damaged);
}

#[test]
fn a_damaged_pdf_with_two_catalogs_and_no_trailer_is_held() {
    let (mut doc, _, pages) = pdf_base(2);
    doc.add_object(lopdf::dictionary! { "Type" => "Catalog", "Pages" => pages, "OpenAction" => lopdf::dictionary! { "S" => "JavaScript", "JS" => lit("second-catalog()") } });
    let bytes = save_classic(doc);
    let damaged = bytes[..table_at(&bytes)].to_vec();
    let outcome = process(&damaged, "two.pdf");
    assert_eq!(outcome.report.verdict, Verdict::Quarantined);
    let reason = outcome.report.reason.unwrap();
    assert_eq!(reason.code, "malformed", "{}", reason.detail);
    assert!(reason.detail.contains("catalog"), "{}", reason.detail);
}

#[test]
fn a_damaged_pdf_still_has_its_javascript_removed() {
    let (mut doc, cat, _) = pdf_base(2);
    doc.get_object_mut(cat)
        .and_then(lopdf::Object::as_dict_mut)
        .unwrap()
        .set("OpenAction", lopdf::dictionary! { "S" => "JavaScript", "JS" => lit("app.alert('mukaika-js-marker')") });
    let bytes = save_classic(doc);
    let damaged = bytes[..table_at(&bytes)].to_vec();
    let outcome = process(&damaged, "js.pdf");
    assert_eq!(
        outcome.report.verdict,
        Verdict::Sanitized,
        "{:?}",
        outcome.report.reason
    );
    assert!(removed(&outcome, What::Javascript, "OpenAction"));
    let out = outcome.output().unwrap().bytes();
    assert_no_active_content(out);
    assert!(!contains(&pdf_payload(out), "mukaika-js-marker"));
    assert_eq!(pdf_pages(out), 2);
}

#[test]
fn streams_under_kept_key_names_on_the_wrong_kind_of_dictionary_are_dropped() {
    use lopdf::{dictionary, Object, Stream};
    let (mut doc, cat, _) = pdf_base(1);
    // A font that parses as one (and so passes the font check) with the PE in its glyph data.
    let mut head = vec![0u8; 54];
    head[0..4].copy_from_slice(&0x0001_0000u32.to_be_bytes());
    head[12..16].copy_from_slice(&0x5F0F_3CF5u32.to_be_bytes());
    head[18..20].copy_from_slice(&1000u16.to_be_bytes());
    let font_with_pe = sfnt(&[
        (b"head", head),
        (b"maxp", vec![0, 0, 0x50, 0, 0, 1]),
        (b"loca", vec![0, 0, 0, 0]),
        (b"glyf", pe_bytes()),
    ]);
    let on_catalog = doc.add_object(Stream::new(dictionary! {}, font_with_pe.clone()));
    let on_prefs = doc.add_object(Stream::new(dictionary! {}, font_with_pe));
    let mut compressed = Stream::new(dictionary! {}, pe_bytes());
    compressed.compress().unwrap();
    let to_unicode = doc.add_object(compressed);
    let annot_contents = doc.add_object(Stream::new(dictionary! {}, pe_bytes()));
    let annot = doc.add_object(dictionary! {
        "Type" => "Annot", "Subtype" => "Text", "Rect" => vec![0.into(), 0.into(), 10.into(), 10.into()],
        "Contents" => annot_contents,
    });
    page_dict(&mut doc, 1).set("Annots", vec![Object::Reference(annot)]);
    // A real embedded TrueType font where fonts go: it stays.
    let good = doc.add_object(Stream::new(dictionary! {}, valid_sfnt()));
    let descriptor = doc.add_object(dictionary! {
        "Type" => "FontDescriptor", "FontName" => "Good", "Flags" => 32,
        "FontBBox" => vec![0.into(), 0.into(), 1000.into(), 1000.into()],
        "ItalicAngle" => 0, "Ascent" => 800, "Descent" => -200, "CapHeight" => 700, "StemV" => 80,
        "FontFile2" => good,
    });
    let font = doc.add_object(dictionary! {
        "Type" => "Font", "Subtype" => "TrueType", "BaseFont" => "Good", "FontDescriptor" => descriptor,
    });
    page_dict(&mut doc, 1)
        .get_mut(b"Resources")
        .and_then(Object::as_dict_mut)
        .unwrap()
        .get_mut(b"Font")
        .and_then(Object::as_dict_mut)
        .unwrap()
        .set("G1", font);
    let c = doc
        .get_object_mut(cat)
        .and_then(Object::as_dict_mut)
        .unwrap();
    c.set("FontFile2", on_catalog);
    c.set(
        "ViewerPreferences",
        dictionary! { "ToUnicode" => to_unicode, "FontFile2" => on_prefs },
    );
    let input = save(doc);
    let outcome = assert_fail_closed("roles.pdf", &input);
    for needle in [
        "/ViewerPreferences /ToUnicode",
        "/ViewerPreferences /FontFile2",
        // The annotation is an object of its own, so it is named by its number.
        " /Contents",
    ] {
        assert!(
            removed(&outcome, What::UnknownPart, needle),
            "missing {needle}: {:#?}",
            outcome.report.removed
        );
    }
    assert!(removed(&outcome, What::UnknownPart, "catalog /FontFile2"));
    let out = outcome.output().unwrap().bytes();
    assert!(!contains(&pdf_payload(out), PE_MARKER), "a PE survived");
    assert!(
        !contains(&pdf_payload(out), "MZ\u{90}"),
        "an MZ header survived"
    );
    let names = pdf_names(out);
    assert_eq!(
        names.iter().filter(|n| *n == "FontFile2").count(),
        1,
        "the real font stays"
    );
    assert!(!names.iter().any(|n| n == "ToUnicode"));
    assert_second_pass_removes_nothing(&outcome);
}

/// A two-page document encrypted with the empty user password, saved with a classic table.
fn encrypted_classic_pdf() -> Vec<u8> {
    let (mut doc, _, _) = pdf_base(2);
    let id = lopdf::Object::String(
        b"0123456789abcdef".to_vec(),
        lopdf::StringFormat::Hexadecimal,
    );
    doc.trailer.set("ID", vec![id.clone(), id]);
    let version = lopdf::EncryptionVersion::V2 {
        document: &doc,
        owner_password: "owner-secret",
        user_password: "",
        key_length: 128,
        permissions: lopdf::Permissions::all(),
    };
    let state = lopdf::EncryptionState::try_from(version).unwrap();
    doc.encrypt(&state).unwrap();
    let bytes = save_classic(doc);
    assert!(!contains(&bytes, "mukaika-fixture-text"));
    bytes
}

#[test]
fn a_damaged_encrypted_pdf_is_decrypted_after_the_scan_and_held_without_its_trailer() {
    // The trailer (with /Encrypt and /ID) survives: the scan keeps it, lopdf decrypts.
    let mut damaged = encrypted_classic_pdf();
    damaged.extend(std::iter::repeat_n(0xA5u8, 4000));
    let out = assert_repaired("encrypted-tail.pdf", &damaged);
    assert!(!pdf_names(&out).iter().any(|n| n == "Encrypt"));
    // Cut before the table, the trailer is gone: nothing says how to decrypt.
    let bytes = encrypted_classic_pdf();
    let outcome = process(&bytes[..table_at(&bytes)], "encrypted-cut.pdf");
    assert_eq!(outcome.report.verdict, Verdict::Quarantined);
    let reason = outcome.report.reason.unwrap();
    assert_eq!(reason.code, "encrypted", "{}", reason.detail);
}

#[test]
fn a_damaged_pdf_with_an_unclosed_string_is_held_quickly() {
    // Thousands of object headers each opening a string that never closes: reading every one
    // to the end of the file would take minutes.
    let mut damaged = b"%PDF-1.4\n".to_vec();
    while damaged.len() < 400_000 {
        damaged.extend_from_slice(b"1 0 obj (\n");
    }
    let started = std::time::Instant::now();
    let outcome = process(&damaged, "unclosed.pdf");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(outcome.report.verdict, Verdict::Quarantined);
}

#[test]
fn a_pdf_whose_last_xref_stream_is_itself_damaged_is_held() {
    // The stream that would say which catalog is current has a wrong /Length and the
    // startxref is wrong too: another catalog's word would be a guess.
    let bytes = shifted(&intact_modern_pdf());
    let xref = last(&bytes, b"/Type/XRef");
    let length = xref + find_all(&bytes[xref..], b"/Length ")[0] + b"/Length ".len();
    let digits = bytes[length..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    let value: usize = std::str::from_utf8(&bytes[length..length + digits])
        .unwrap()
        .parse()
        .unwrap();
    let mut damaged = bytes[..length].to_vec();
    damaged.extend_from_slice(format!("{}", value - 5).as_bytes());
    damaged.extend_from_slice(&bytes[length + digits..]);
    let outcome = process(&damaged, "bad-xref-stream.pdf");
    assert_eq!(outcome.report.verdict, Verdict::Quarantined);
    let reason = outcome.report.reason.unwrap();
    assert_eq!(reason.code, "malformed", "{}", reason.detail);
    assert!(
        reason
            .detail
            .contains("cross-reference stream is itself damaged"),
        "{}",
        reason.detail
    );
}

#[test]
fn damaged_pdfs_are_rebuilt_or_held_and_never_held_by_a_bug() {
    // Every cut and a spread of overwritten bytes, of both kinds of cross-reference data: each
    // outcome is a decision (process() fails on an internal error, and checks every output
    // with qpdf).
    let mut delivered = 0;
    let mut held = 0;
    for intact in [intact_pdf(), intact_modern_pdf(), pdf_kitchen_sink()] {
        let mut variants: Vec<Vec<u8>> = (9..intact.len())
            .step_by(29)
            .map(|cut| intact[..cut].to_vec())
            .collect();
        for at in (9..intact.len()).step_by(31) {
            for byte in [b'0', b' ', b'(', 0xFF, b'/'] {
                let mut v = intact.clone();
                v[at] = byte;
                variants.push(v);
            }
        }
        for v in variants {
            let outcome = process(&v, "damaged.pdf");
            match outcome.output() {
                Some(out) => {
                    assert!(pdf_pages(out.bytes()) >= 1);
                    delivered += 1;
                }
                None => held += 1,
            }
        }
    }
    assert!(
        delivered > 0 && held > 0,
        "{delivered} delivered, {held} held"
    );
}

#[test]
fn a_page_tree_node_typed_page_with_kids_is_held() {
    // qpdf reads it as an inner node, a reader trusting /Type as a page.
    let (mut doc, _, pages) = pdf_base(2);
    doc.get_object_mut(pages)
        .and_then(lopdf::Object::as_dict_mut)
        .unwrap()
        .set("Type", "Page");
    let outcome = process(&save(doc), "typed.pdf");
    assert_eq!(outcome.report.verdict, Verdict::Quarantined);
    let reason = outcome.report.reason.unwrap();
    assert_eq!(reason.code, "malformed", "{}", reason.detail);
    assert!(reason.detail.contains("/Kids"), "{}", reason.detail);
}

#[test]
fn a_damaged_pdf_with_an_update_is_rebuilt_from_the_last_definitions() {
    // The update redefines the catalog with a JavaScript OpenAction. With the table lost, the
    // scan must take the update's catalog (the last definition), not the first revision's.
    // The update follows the first revision's %%EOF on the same line, as the fixture (and
    // some writers) append it.
    let bytes = pdf_incremental_js();
    let first_eof = find_all(&bytes, b"%%EOF")[0];
    assert!(bytes[first_eof + 5].is_ascii_digit());
    let mut tail = bytes.clone();
    tail.extend(std::iter::repeat_n(0xA5u8, 4000));
    for (name, damaged) in [
        ("update-tail.pdf", tail),
        ("update-startxref.pdf", with_startxref(&bytes, "0")),
    ] {
        let outcome = process(&damaged, name);
        assert_eq!(
            outcome.report.verdict,
            Verdict::Sanitized,
            "{name}: {:?}",
            outcome.report.reason
        );
        assert!(
            removed(&outcome, What::Javascript, "OpenAction"),
            "{name}: the update's catalog was not the one rebuilt: {:#?}",
            outcome.report.removed
        );
        let out = outcome.output().unwrap().bytes();
        assert_no_active_content(out);
        assert!(
            pdf_text(out).contains("Page 2 mukaika-fixture-text"),
            "{name}"
        );
        assert_eq!(pdf_pages(out), 2, "{name}");
    }
}

#[test]
fn a_page_whose_contents_hold_a_brace_is_held_not_delivered_with_qpdf_warnings() {
    // A brace is PostScript calculator syntax: in a content stream qpdf reads it as null and
    // warns (exit 3). Found by the single-byte corruption property test.
    for (name, content) in [
        ("close.pdf", &b"BT /F1 24 Tf 72 720 Td (Page 1) Tj } ET"[..]),
        ("open.pdf", b"q { 1 0 0 1 0 0 cm Q"),
    ] {
        let (mut doc, _, _) = pdf_base(1);
        let page = *doc.get_pages().get(&1).unwrap();
        let contents = doc
            .get_object(page)
            .and_then(lopdf::Object::as_dict)
            .and_then(|d| d.get(b"Contents"))
            .and_then(lopdf::Object::as_reference)
            .unwrap();
        doc.objects.insert(
            contents,
            lopdf::Object::Stream(lopdf::Stream::new(
                lopdf::Dictionary::new(),
                content.to_vec(),
            )),
        );
        let mut bytes = Vec::new();
        doc.save_to(&mut bytes).unwrap();
        let outcome = process(&bytes, name);
        assert_eq!(outcome.report.verdict, Verdict::Quarantined, "{name}");
        let reason = outcome.report.reason.unwrap();
        assert_eq!(reason.code, "malformed", "{name}: {}", reason.detail);
        assert!(reason.detail.contains("brace"), "{name}: {}", reason.detail);
    }
}
