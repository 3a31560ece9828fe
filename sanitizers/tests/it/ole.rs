//! Legacy Office (doc, xls, ppt): documents are rebuilt into a new compound file of allowlisted
//! streams. VBA projects go from all three (with Excel's OBPROJ record and PowerPoint's
//! VBAInfoContainer, the streams rebuilt record by record), and so do Word and Excel object
//! storages and PowerPoint's embedded objects — unless the embedded package is a program or
//! shortcut, which blocks the file. XLM sheets, encryption, DDE fields, external links and any
//! structure the rebuild does not understand hold the file with the exact finding. Inputs with
//! macros are real documents LibreOffice writes at test time, with a VBA project added in code;
//! olevba must see the macro in each input and none in its output, and LibreOffice must show
//! the same text in both.

use crate::common;

use std::io::{Cursor, Read, Write};

use common::*;
use mukaika_sanitizers::{FileKind, Verdict, What};

fn compound(streams: &[(&str, &[u8])]) -> Vec<u8> {
    let mut file =
        cfb::CompoundFile::create_with_version(cfb::Version::V3, Cursor::new(Vec::new())).unwrap();
    for (path, data) in streams {
        if let Some((parent, _)) = path.rsplit_once('/') {
            if !parent.is_empty() {
                file.create_storage_all(parent).unwrap();
            }
        }
        file.create_stream(path).unwrap().write_all(data).unwrap();
    }
    file.flush().unwrap();
    file.into_inner().into_inner()
}

fn stream_names(bytes: &[u8]) -> Vec<String> {
    let file = cfb::CompoundFile::open(Cursor::new(bytes)).unwrap();
    let mut names: Vec<String> = file
        .walk()
        .map(|e| e.path().to_string_lossy().into_owned())
        .filter(|p| p != "/")
        .collect();
    names.sort();
    names
}

/// A Word 97 FIB start (magic 0xA5EC, flags) followed by text, 8-bit or UTF-16.
fn word_stream(flags: u16, text: &[u8]) -> Vec<u8> {
    let mut w = vec![0xEC, 0xA5, 0xC1, 0x00, 0, 0, 0, 0, 0, 0];
    w.extend_from_slice(&flags.to_le_bytes());
    w.resize(0x200, 0);
    w.extend_from_slice(text);
    w
}

fn package(name: &str, data: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; 4];
    p.extend_from_slice(&2u16.to_le_bytes());
    p.extend_from_slice(name.as_bytes());
    p.push(0);
    p.extend_from_slice(format!("C:\\Users\\x\\{name}").as_bytes());
    p.push(0);
    p.extend_from_slice(&[0; 8]);
    p.extend_from_slice(format!("C:\\Temp\\{name}").as_bytes());
    p.push(0);
    p.extend_from_slice(&(data.len() as u32).to_le_bytes());
    p.extend_from_slice(data);
    p
}

fn doc(extra: &[(&str, &[u8])]) -> Vec<u8> {
    let word = word_stream(0, b"Synthetic memo text");
    let mut streams: Vec<(&str, &[u8])> = vec![
        ("/WordDocument", &word),
        ("/1Table", b"table stream"),
        ("/\u{5}SummaryInformation", b"author: synthetic"),
    ];
    streams.extend_from_slice(extra);
    compound(&streams)
}

#[test]
fn word_object_pool_and_metadata_go_the_text_streams_stay() {
    let native = package("memo.txt", b"plain memo\r\n");
    let input = doc(&[
        ("/ObjectPool/_1234/\u{1}Ole10Native", &native),
        ("/ObjectPool/_1234/\u{3}ObjInfo", b"\0\0\0\0\0\0"),
        ("/CustomStorage/x", b"unknown"),
    ]);
    let outcome = assert_fail_closed("議事録.doc", &input);
    assert!(removed(&outcome, What::OleObject, "ObjectPool"));
    assert!(removed(&outcome, What::Metadata, "SummaryInformation"));
    assert!(removed(&outcome, What::UnknownPart, "CustomStorage"));
    let out = outcome.output().unwrap();
    assert_eq!(out.kind(), FileKind::Doc);
    assert_eq!(stream_names(out.bytes()), vec!["/1Table", "/WordDocument"]);
    let mut file = cfb::CompoundFile::open(Cursor::new(out.bytes())).unwrap();
    let mut word = Vec::new();
    file.open_stream("/WordDocument")
        .unwrap()
        .read_to_end(&mut word)
        .unwrap();
    assert_eq!(
        word,
        word_stream(0, b"Synthetic memo text"),
        "kept streams are copied whole"
    );
    assert_eq!(
        outcome.report.children.len(),
        1,
        "the package was looked into"
    );
}

#[test]
fn an_embedded_program_or_shortcut_blocks_the_document() {
    for name in ["invoice.exe", "calc.lnk"] {
        let native = package(name, b"MZ\x90\x00\x03\x00\x00\x00 synthetic");
        let input = doc(&[("/ObjectPool/_1/\u{1}Ole10Native", &native)]);
        let outcome = process(&input, "a.doc");
        assert_eq!(outcome.report.verdict, Verdict::Blocked, "{name}");
        assert!(outcome.output().is_none());
    }
}

#[test]
fn encryption_and_dde_fields_hold_word_files() {
    let encrypted = compound(&[("/WordDocument", &word_stream(0x0100, b"x"))]);
    let mut field = vec![0x13, 0x00];
    field.extend(
        "DDEAUTO c:\\\\windows\\\\system32\\\\cmd.exe"
            .encode_utf16()
            .flat_map(u16::to_le_bytes),
    );
    let dde = compound(&[("/WordDocument", &word_stream(0, &field))]);
    let ansi = compound(&[(
        "/WordDocument",
        &word_stream(
            0,
            b"\x13 INCLUDEPICTURE \"http://tracker.example/p.png\" \x14\x15",
        ),
    )]);
    for (name, input, code) in [
        ("encrypted", encrypted, "encrypted"),
        ("dde", dde, "unsupported"),
        ("includepicture", ansi, "unsupported"),
    ] {
        let outcome = process(&input, "a.doc");
        assert_eq!(outcome.report.verdict, Verdict::Quarantined, "{name}");
        assert_eq!(outcome.report.reason.unwrap().code, code, "{name}");
    }
}

fn biff(records: &[(u16, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (kind, data) in records {
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(&(data.len() as u16).to_le_bytes());
        out.extend_from_slice(data);
    }
    out
}

#[test]
fn excel_macro_sheets_links_and_passwords_hold_the_workbook() {
    let bof: &[u8] = &[0, 6, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let sheet: &[u8] = &[0, 0, 0, 0, 0, 0, 5, 0, b'S', b'h', b'e', b'e', b't'];
    let plain = biff(&[(0x0809, bof), (0x0085, sheet), (0x000A, &[])]);
    let outcome = process(
        &compound(&[
            ("/Workbook", &plain),
            ("/MBD01/\u{1}Ole10Native", &package("a.txt", b"x")),
        ]),
        "a.xls",
    );
    assert_eq!(
        outcome.report.verdict,
        Verdict::Sanitized,
        "{:?}",
        outcome.report.reason
    );
    assert!(removed(&outcome, What::OleObject, "MBD01"));
    assert_eq!(
        stream_names(outcome.output().unwrap().bytes()),
        vec!["/Workbook"]
    );

    let macro_sheet: &[u8] = &[0, 0, 0, 0, 0, 1, 5, 0, b'M', b'a', b'c', b'r', b'o'];
    let link: &[u8] = &[1, 0, 3, 0, 0, b'c', b'm', b'd'];
    for (name, records, code) in [
        (
            "xlm",
            vec![(0x0809, bof), (0x0085, macro_sheet)],
            "unsupported",
        ),
        (
            "password",
            vec![(0x0809, bof), (0x002F, &[0u8; 6][..])],
            "encrypted",
        ),
        (
            "dde link",
            vec![(0x0809, bof), (0x01AE, link)],
            "unsupported",
        ),
    ] {
        let outcome = process(&compound(&[("/Workbook", &biff(&records))]), "a.xls");
        assert_eq!(outcome.report.verdict, Verdict::Quarantined, "{name}");
        assert_eq!(outcome.report.reason.unwrap().code, code, "{name}");
    }
}

// ---------------------------------------------------------------------------------------------
// VBA projects and PowerPoint objects in documents LibreOffice writes
// ---------------------------------------------------------------------------------------------

/// Appears in the VBA source of every input and must appear in no output.
const MARKER: &str = "MUKAIKA_MARKER";

fn vba_project() -> Vec<u8> {
    let source = format!(
        "Attribute VB_Name = \"Module1\"\r\nSub AutoOpen()\r\n    MsgBox \"{MARKER}\"\r\n    Shell \"calc.exe\"\r\nEnd Sub\r\n"
    );
    common::generate::vba_project_bin("Module1", &source)
}

fn read_all(file: &mut cfb::CompoundFile<Cursor<&[u8]>>, path: &str) -> Vec<u8> {
    let mut bytes = Vec::new();
    file.open_stream(path)
        .unwrap()
        .read_to_end(&mut bytes)
        .unwrap();
    bytes
}

fn stream_of(bytes: &[u8], path: &str) -> Vec<u8> {
    let mut file = cfb::CompoundFile::open(Cursor::new(bytes)).unwrap();
    read_all(&mut file, path)
}

/// A copy of a compound file with some streams replaced and every stream of the compound
/// file `extra` added under the storage `prefix`.
fn amend(base: &[u8], replace: &[(&str, Vec<u8>)], prefix: &str, extra: &[u8]) -> Vec<u8> {
    let mut out =
        cfb::CompoundFile::create_with_version(cfb::Version::V3, Cursor::new(Vec::new())).unwrap();
    for (source, under) in [(base, ""), (extra, prefix)] {
        if source.is_empty() {
            continue;
        }
        let mut file = cfb::CompoundFile::open(Cursor::new(source)).unwrap();
        let entries: Vec<(String, bool)> = file
            .walk()
            .map(|e| (e.path().to_string_lossy().into_owned(), e.is_stream()))
            .collect();
        if !under.is_empty() {
            out.create_storage_all(under).unwrap();
        }
        for (path, is_stream) in entries {
            let target = format!("{under}{path}").replace("//", "/");
            if target == "/" {
                continue;
            }
            if !is_stream {
                out.create_storage_all(&target).unwrap();
                continue;
            }
            let bytes = replace
                .iter()
                .find(|(p, _)| *p == path && under.is_empty())
                .map(|(_, b)| b.clone())
                .unwrap_or_else(|| read_all(&mut file, &path));
            out.create_stream(&target)
                .unwrap()
                .write_all(&bytes)
                .unwrap();
        }
    }
    out.flush().unwrap();
    out.into_inner().into_inner()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Checks the common promises for a macro input and its output: olevba sees the marker macro
/// in the input and no macro in the output, whose bytes hold no marker; a second pass removes
/// nothing; LibreOffice shows `text` in the output as in the input.
fn assert_macro_gone(name: &str, input: &[u8], outcome: &mukaika_sanitizers::Outcome, text: &str) {
    let before = olevba_output(name, input);
    assert!(
        before.contains(MARKER) && before.contains("AutoOpen"),
        "{name}: olevba does not see the input's macro:\n{before}"
    );
    assert_eq!(
        outcome.report.verdict,
        Verdict::Sanitized,
        "{name}: {:?}",
        outcome.report.reason
    );
    let out = outcome.output().unwrap();
    let after = olevba_output(out.name(), out.bytes());
    assert!(
        after.contains("No VBA or XLM macros found"),
        "{name}: olevba on the output:\n{after}"
    );
    assert!(
        !contains(out.bytes(), MARKER.as_bytes()),
        "{name}: marker left"
    );
    assert_second_pass_removes_nothing(outcome);
    let shown = libreoffice_text(&[(name, input), (out.name(), out.bytes())]);
    let squash = |s: &str| s.split_whitespace().collect::<String>();
    assert!(
        shown[0].contains(text),
        "{name}: input shows {:?}",
        shown[0]
    );
    assert_eq!(
        squash(&shown[0]),
        squash(&shown[1]),
        "{name}: LibreOffice shows different text after sanitizing"
    );
}

#[test]
fn removes_vba_project_from_word_document() {
    let text = "Synthetic memo MUKAIKA_TEXT 会議のお知らせ";
    let base = libreoffice_convert(&[("memo.txt", text.as_bytes())], "doc").remove(0);
    let input = amend(&base, &[], "/Macros", &vba_project());
    let outcome = assert_fail_closed("memo.doc", &input);
    assert!(
        removed(&outcome, What::Macro, "Macros"),
        "{:?}",
        outcome.report
    );
    let out = outcome.output().unwrap();
    assert!(stream_names(out.bytes())
        .iter()
        .all(|n| !n.contains("Macros")));
    assert_eq!(
        stream_of(out.bytes(), "/WordDocument"),
        stream_of(&input, "/WordDocument"),
        "Word's text stream is copied whole"
    );
    assert_macro_gone("memo.doc", &input, &outcome, "MUKAIKA_TEXT");
}

/// BIFF8 records of a stream: (position, type, data).
fn biff_list(book: &[u8]) -> Vec<(usize, u16, Vec<u8>)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 4 <= book.len() {
        let kind = u16::from_le_bytes([book[at], book[at + 1]]);
        let len = u16::from_le_bytes([book[at + 2], book[at + 3]]) as usize;
        out.push((at, kind, book[at + 4..at + 4 + len].to_vec()));
        at += 4 + len;
    }
    out
}

/// Stream positions each record type holds: (field offset, stride) pairs.
fn positions(kind: u16, len: usize) -> Vec<usize> {
    match kind {
        0x0085 => vec![0],
        0x020B => (12..len).step_by(4).collect(),
        0x00FF => (2..len).step_by(8).collect(),
        _ => Vec::new(),
    }
}

/// The workbook stream with an OBPROJ record after CODEPAGE, as Excel writes it for a workbook
/// with a VBA project; every later stream position moves by the record's four bytes.
fn with_obproj(book: &[u8]) -> Vec<u8> {
    let records = biff_list(book);
    let (at, _, data) = records.iter().find(|(_, k, _)| *k == 0x0042).unwrap();
    let insert = at + 4 + data.len();
    let mut out = Vec::new();
    for (at, kind, mut data) in records {
        if at == insert {
            out.extend_from_slice(&[0xD3, 0x00, 0x00, 0x00]);
        }
        for field in positions(kind, data.len()) {
            let old = u32::from_le_bytes(data[field..field + 4].try_into().unwrap());
            if old as usize >= insert {
                data[field..field + 4].copy_from_slice(&(old + 4).to_le_bytes());
            }
        }
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(&(data.len() as u16).to_le_bytes());
        out.extend_from_slice(&data);
    }
    out
}

#[test]
fn removes_vba_project_and_obproj_from_excel_workbook() {
    let csv = "品目,金額\nMUKAIKA_TEXT,100\n売上,2500\n";
    let base = libreoffice_convert(&[("book.csv", csv.as_bytes())], "xls").remove(0);
    let book = stream_of(&base, "/Workbook");
    let input = amend(
        &base,
        &[("/Workbook", with_obproj(&book))],
        "/_VBA_PROJECT_CUR",
        &vba_project(),
    );
    let outcome = assert_fail_closed("book.xls", &input);
    assert!(removed(&outcome, What::Macro, "_VBA_PROJECT_CUR"));
    assert!(removed(&outcome, What::Macro, "OBPROJ"));
    let out = outcome.output().unwrap();
    assert!(stream_names(out.bytes()).iter().all(|n| !n.contains("VBA")));
    // The rebuilt stream is LibreOffice's own again: OBPROJ gone, every position restored.
    assert_eq!(stream_of(out.bytes(), "/Workbook"), book);
    assert_macro_gone("book.xls", &input, &outcome, "MUKAIKA_TEXT");
}

/// A PowerPoint record header.
fn ppt_header(ver_instance: u16, kind: u16, len: usize) -> Vec<u8> {
    let mut h = ver_instance.to_le_bytes().to_vec();
    h.extend_from_slice(&kind.to_le_bytes());
    h.extend_from_slice(&(len as u32).to_le_bytes());
    h
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

/// A presentation with a VBA project added as PowerPoint adds one in a fast save: a new edit
/// holding a compressed VbaProjectStg and a DocumentContainer whose DocInfoList (or, with
/// `misplaced`, the container itself) names it in a VBAInfoContainer.
fn with_vba_edit(ppt: &[u8], misplaced: bool) -> Vec<u8> {
    let mut stream = stream_of(ppt, "/PowerPoint Document");
    let mut user = stream_of(ppt, "/Current User");
    // LibreOffice's empty VBAInfoAtom says version 1, which olevba refuses (and then reads no
    // PowerPoint record at all); PowerPoint writes 2.
    let atom = [0x02, 0x00, 0x00, 0x04, 0x0C, 0x00, 0x00, 0x00];
    if let Some(at) = stream.windows(8).position(|w| w == atom) {
        stream[at + 16..at + 20].copy_from_slice(&2u32.to_le_bytes());
    }
    let edit = u32_at(&user, 16) as usize;
    let dir = u32_at(&stream, edit + 8 + 12) as usize;
    let doc_id = u32_at(&stream, edit + 8 + 16);
    let seed = u32_at(&stream, edit + 8 + 20);
    // The DocumentContainer's offset, from the persist directory.
    let (mut at, end) = (dir + 8, dir + 8 + u32_at(&stream, dir + 4) as usize);
    let mut doc_at = None;
    while at < end {
        let entry = u32_at(&stream, at);
        let (first, count) = (entry & 0xFFFFF, entry >> 20);
        for i in 0..count {
            if first + i == doc_id {
                doc_at = Some(u32_at(&stream, at + 4 + 4 * i as usize) as usize);
            }
        }
        at += 4 + 4 * count as usize;
    }
    let doc_at = doc_at.unwrap();
    let doc_len = u32_at(&stream, doc_at + 4) as usize;
    let mut info = ppt_header(0x001F, 0x03FF, 20);
    info.extend(ppt_header(0x0002, 0x0400, 12));
    // The project's persist id: one past persistIdSeed, which may itself be in use.
    let vba_id = seed + 1;
    info.extend_from_slice(&vba_id.to_le_bytes()); // persistIdRef
    info.extend_from_slice(&1u32.to_le_bytes()); // fHasMacros
    info.extend_from_slice(&2u32.to_le_bytes()); // version
    let mut body = Vec::new();
    let mut at = doc_at + 8;
    while at < doc_at + 8 + doc_len {
        let kind = u16::from_le_bytes([stream[at + 2], stream[at + 3]]);
        let len = u32_at(&stream, at + 4) as usize;
        let record = &stream[at..at + 8 + len];
        if kind == 0x07D0 && !misplaced {
            // In place of the empty VBAInfoContainer LibreOffice writes.
            let mut list = Vec::new();
            let mut item = at + 8;
            while item < at + 8 + len {
                let item_kind = u16::from_le_bytes([stream[item + 2], stream[item + 3]]);
                let item_len = u32_at(&stream, item + 4) as usize;
                if item_kind != 0x03FF {
                    list.extend_from_slice(&stream[item..item + 8 + item_len]);
                }
                item += 8 + item_len;
            }
            list.extend_from_slice(&info);
            body.extend(ppt_header(0x000F, 0x07D0, list.len()));
            body.extend_from_slice(&list);
        } else {
            body.extend_from_slice(record);
        }
        at += 8 + len;
    }
    if misplaced {
        body.extend_from_slice(&info);
    }
    let project = vba_project();
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(&project).unwrap();
    let packed = z.finish().unwrap();

    let vba_at = stream.len() as u32;
    stream.extend(ppt_header(0x0010, 0x1011, 4 + packed.len()));
    stream.extend_from_slice(&(project.len() as u32).to_le_bytes());
    stream.extend_from_slice(&packed);
    let new_doc_at = stream.len() as u32;
    stream.extend(ppt_header(0x000F, 0x03E8, body.len()));
    stream.extend_from_slice(&body);
    let new_dir_at = stream.len() as u32;
    stream.extend(ppt_header(0, 0x1772, 16));
    for (id, off) in [(doc_id, new_doc_at), (vba_id, vba_at)] {
        stream.extend_from_slice(&(id | 1 << 20).to_le_bytes());
        stream.extend_from_slice(&off.to_le_bytes());
    }
    let new_edit_at = stream.len() as u32;
    let mut atom = stream[edit..edit + 8 + 0x1C].to_vec();
    atom[8 + 8..8 + 12].copy_from_slice(&(edit as u32).to_le_bytes());
    atom[8 + 12..8 + 16].copy_from_slice(&new_dir_at.to_le_bytes());
    atom[8 + 20..8 + 24].copy_from_slice(&vba_id.to_le_bytes());
    stream.extend_from_slice(&atom);
    user[16..20].copy_from_slice(&new_edit_at.to_le_bytes());
    amend(
        ppt,
        &[("/PowerPoint Document", stream), ("/Current User", user)],
        "",
        &[],
    )
}

/// An ODF presentation with one text box and, with `object`, an embedded formula object
/// (LibreOffice writes it to PowerPoint as an ExOleEmbedContainer and ExOleObjStg).
fn odp(object: bool) -> Vec<u8> {
    let ns = r#"xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" xmlns:draw="urn:oasis:names:tc:opendocument:xmlns:drawing:1.0" xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" xmlns:svg="urn:oasis:names:tc:opendocument:xmlns:svg-compatible:1.0" xmlns:xlink="http://www.w3.org/1999/xlink""#;
    let frame = if object {
        r#"<draw:frame svg:width="6cm" svg:height="3cm" svg:x="2cm" svg:y="8cm"><draw:object xlink:href="./Object 1" xlink:type="simple" xlink:show="embed" xlink:actuate="onLoad"/></draw:frame>"#
    } else {
        ""
    };
    let content = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><office:document-content {ns} office:version="1.2"><office:body><office:presentation><draw:page draw:name="page1"><draw:frame svg:width="20cm" svg:height="3cm" svg:x="2cm" svg:y="2cm"><draw:text-box><text:p>Synthetic slide MUKAIKA_TEXT 説明会</text:p></draw:text-box></draw:frame>{frame}</draw:page></office:presentation></office:body></office:document-content>"#
    );
    let formula = r#"<?xml version="1.0" encoding="UTF-8"?><math:math xmlns:math="http://www.w3.org/1998/Math/MathML"><math:semantics><math:mrow><math:mi>x</math:mi><math:mo>+</math:mo><math:mn>1</math:mn></math:mrow><math:annotation math:encoding="StarMath 5.0">x + 1</math:annotation></math:semantics></math:math>"#;
    let mut manifest = String::from(
        r#"<?xml version="1.0" encoding="UTF-8"?><manifest:manifest xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0" manifest:version="1.2"><manifest:file-entry manifest:full-path="/" manifest:media-type="application/vnd.oasis.opendocument.presentation"/><manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml"/>"#,
    );
    if object {
        manifest.push_str(r#"<manifest:file-entry manifest:full-path="Object 1/" manifest:media-type="application/vnd.oasis.opendocument.formula"/><manifest:file-entry manifest:full-path="Object 1/content.xml" manifest:media-type="text/xml"/>"#);
    }
    manifest.push_str("</manifest:manifest>");
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let stored =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file("mimetype", stored).unwrap();
    zip.write_all(b"application/vnd.oasis.opendocument.presentation")
        .unwrap();
    let mut parts = vec![
        ("META-INF/manifest.xml", manifest),
        ("content.xml", content),
    ];
    if object {
        parts.push(("Object 1/content.xml", formula.to_string()));
    }
    for (name, text) in parts {
        zip.start_file(name, zip::write::SimpleFileOptions::default())
            .unwrap();
        zip.write_all(text.as_bytes()).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

/// Every record type anywhere in a PowerPoint stream's record tree.
fn ppt_record_types(stream: &[u8]) -> Vec<u16> {
    let mut out = Vec::new();
    let mut stack = vec![(0usize, stream.len())];
    while let Some((mut at, end)) = stack.pop() {
        while at + 8 <= end {
            let vi = u16::from_le_bytes([stream[at], stream[at + 1]]);
            let kind = u16::from_le_bytes([stream[at + 2], stream[at + 3]]);
            let len = u32_at(stream, at + 4) as usize;
            out.push(kind);
            if vi & 0xF == 0xF {
                stack.push((at + 8, at + 8 + len));
            }
            at += 8 + len;
        }
    }
    out
}

#[test]
fn removes_vba_project_from_powerpoint_presentation() {
    let base = libreoffice_convert(&[("slides.odp", &odp(false))], "ppt").remove(0);
    let input = with_vba_edit(&base, false);
    let outcome = assert_fail_closed("slides.ppt", &input);
    assert!(
        removed(&outcome, What::Macro, "VBAInfoContainer"),
        "{:?}",
        outcome.report
    );
    assert!(removed(&outcome, What::RevisionHistory, "earlier edit"));
    let out = outcome.output().unwrap();
    let kinds = ppt_record_types(&stream_of(out.bytes(), "/PowerPoint Document"));
    for gone in [0x03FF, 0x0400, 0x1011] {
        assert!(!kinds.contains(&gone), "record {gone:#06x} left");
    }
    assert_macro_gone("slides.ppt", &input, &outcome, "MUKAIKA_TEXT");
}

#[test]
fn removes_embedded_object_from_powerpoint_and_keeps_its_picture() {
    let input = libreoffice_convert(&[("object.odp", &odp(true))], "ppt").remove(0);
    let before = stream_of(&input, "/PowerPoint Document");
    assert!(
        ppt_record_types(&before).contains(&0x1011),
        "no ExOleObjStg"
    );
    let outcome = process(&input, "object.ppt");
    assert_eq!(
        outcome.report.verdict,
        Verdict::Sanitized,
        "{:?}",
        outcome.report.reason
    );
    assert!(removed(&outcome, What::OleObject, "picture is kept"));
    let out = outcome.output().unwrap();
    let kinds = ppt_record_types(&stream_of(out.bytes(), "/PowerPoint Document"));
    assert!(!kinds.contains(&0x1011) && !kinds.contains(&0x0FCC));
    // The shape stays on its slide (the slide records are copied whole), and the pictures
    // stream with any preview image PowerPoint stores there is copied whole.
    let after = stream_of(out.bytes(), "/PowerPoint Document");
    let mut slides = 0;
    let mut at = 0;
    while at + 8 <= before.len() {
        let kind = u16::from_le_bytes([before[at + 2], before[at + 3]]);
        let end = at + 8 + u32_at(&before, at + 4) as usize;
        if kind == 0x03EE {
            slides += 1;
            assert!(contains(&after, &before[at..end]), "slide at {at} changed");
        }
        at = end;
    }
    assert!(slides > 0);
    assert_eq!(
        stream_of(out.bytes(), "/Pictures"),
        stream_of(&input, "/Pictures")
    );
    assert_second_pass_removes_nothing(&outcome);
    let shown = libreoffice_text(&[("out.ppt", out.bytes())]);
    assert!(shown[0].contains("MUKAIKA_TEXT"), "{:?}", shown[0]);
}

#[test]
fn vba_links_and_unknown_structures_still_hold() {
    // PowerPoint: a VBAInfoContainer outside the DocInfoList.
    let base = libreoffice_convert(&[("slides.odp", &odp(false))], "ppt").remove(0);
    let misplaced = with_vba_edit(&base, true);
    let outcome = process(&misplaced, "slides.ppt");
    assert_eq!(outcome.report.verdict, Verdict::Quarantined);
    assert_eq!(outcome.report.reason.unwrap().code, "unsupported");

    // PowerPoint: the same object as a link (ExOleLinkContainer), which keeps its storage.
    let object = libreoffice_convert(&[("object.odp", &odp(true))], "ppt").remove(0);
    let mut stream = stream_of(&object, "/PowerPoint Document");
    let embed = [0x0F, 0x00, 0xCC, 0x0F];
    let at = stream.windows(4).position(|w| w == embed).unwrap();
    stream[at + 2] = 0xCE;
    let linked = amend(&object, &[("/PowerPoint Document", stream)], "", &[]);
    let outcome = process(&linked, "object.ppt");
    assert_eq!(outcome.report.verdict, Verdict::Quarantined);
    assert_eq!(outcome.report.reason.unwrap().code, "unsupported");

    // PowerPoint: a record stream with no persist directory or Current User to rebuild from.
    let mut info = ppt_header(0x000F, 0x03FF, 0);
    let mut stream = ppt_header(0x000F, 0x03E8, info.len());
    stream.append(&mut info);
    let bare = compound(&[
        ("/PowerPoint Document", &stream),
        ("/Current User", b"user"),
    ]);
    let outcome = process(&bare, "a.ppt");
    assert_eq!(outcome.report.verdict, Verdict::Quarantined);
    assert_eq!(outcome.report.reason.unwrap().code, "malformed");

    // Excel: an OBPROJ record in a BIFF5 workbook, whose record layouts the rebuild does not
    // know; and one whose sheet position points nowhere.
    let bof5: &[u8] = &[0, 5, 5, 0, 0, 0, 0, 0];
    let sheet: &[u8] = &[0, 0, 0, 0, 0, 0, 5, 0, b'S', b'h', b'e', b'e', b't'];
    let biff5 = biff(&[
        (0x0809, bof5),
        (0x00D3, &[]),
        (0x0085, sheet),
        (0x000A, &[]),
    ]);
    let bof8: &[u8] = &[0, 6, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let stray: &[u8] = &[99, 0, 0, 0, 0, 0, 5, 0, b'S', b'h', b'e', b'e', b't'];
    let dangling = biff(&[
        (0x0809, bof8),
        (0x00D3, &[]),
        (0x0085, stray),
        (0x000A, &[]),
    ]);
    for (name, book, code) in [
        ("biff5", biff5, "unsupported"),
        ("dangling", dangling, "malformed"),
    ] {
        let input = compound(&[("/Workbook", &book), ("/_VBA_PROJECT_CUR/VBA/dir", b"\x01")]);
        let outcome = process(&input, "a.xls");
        assert_eq!(outcome.report.verdict, Verdict::Quarantined, "{name}");
        assert_eq!(outcome.report.reason.unwrap().code, code, "{name}");
    }
}

/// A BIFF8 workbook with every kind of stream position the rebuild recomputes: a sheet's
/// BOUNDSHEET, an EXTSST into the SST, and a sheet INDEX naming its DefColWidth and DBCELL.
/// Positions are laid out for the records actually written, with or without OBPROJ.
fn workbook_with_positions(obproj: bool) -> Vec<u8> {
    let bof: &[u8] = &[0, 6, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let sst: &[u8] = &[1, 0, 0, 0, 1, 0, 0, 0, 3, 0, 0, b'a', b'b', b'c'];
    let lay = |positions: &[u32]| -> Vec<(u16, Vec<u8>)> {
        let (sheet, sst_at, defcol, dbcell) =
            (positions[0], positions[1], positions[2], positions[3]);
        let mut records: Vec<(u16, Vec<u8>)> =
            vec![(0x0809, bof.to_vec()), (0x0042, vec![0xE4, 0x04])];
        if obproj {
            records.push((0x00D3, Vec::new()));
        }
        let mut boundsheet = sheet.to_le_bytes().to_vec();
        boundsheet.extend_from_slice(&[0, 0, 5, 0, b'S', b'h', b'e', b'e', b't']);
        records.push((0x0085, boundsheet));
        records.push((0x00FC, sst.to_vec()));
        let mut extsst = 8u16.to_le_bytes().to_vec();
        extsst.extend_from_slice(&(sst_at + 12).to_le_bytes());
        extsst.extend_from_slice(&12u16.to_le_bytes());
        extsst.extend_from_slice(&[0, 0]);
        records.push((0x00FF, extsst));
        records.push((0x000A, Vec::new()));
        records.push((0x0809, bof.to_vec()));
        let mut index = vec![0u8; 4];
        index.extend_from_slice(&0u32.to_le_bytes());
        index.extend_from_slice(&1u32.to_le_bytes());
        index.extend_from_slice(&defcol.to_le_bytes());
        index.extend_from_slice(&dbcell.to_le_bytes());
        records.push((0x020B, index));
        records.push((0x0055, 8u16.to_le_bytes().to_vec()));
        records.push((0x0208, vec![0; 16]));
        records.push((0x00D7, vec![20, 0, 0, 0]));
        records.push((0x000A, Vec::new()));
        records
    };
    // First pass with dummy positions to find where each record lands, then the real one.
    let mut positions = [0u32; 4];
    let mut at = 0u32;
    let mut bofs = 0;
    for (kind, data) in lay(&positions) {
        match kind {
            0x0809 if bofs == 1 => positions[0] = at,
            0x00FC => positions[1] = at,
            0x0055 => positions[2] = at,
            0x00D7 => positions[3] = at,
            _ => {}
        }
        if kind == 0x0809 {
            bofs += 1;
        }
        at += 4 + data.len() as u32;
    }
    let records = lay(&positions);
    let refs: Vec<(u16, &[u8])> = records.iter().map(|(k, d)| (*k, d.as_slice())).collect();
    biff(&refs)
}

#[test]
fn excel_rebuild_recomputes_every_stream_position() {
    let input = compound(&[
        ("/Workbook", &workbook_with_positions(true)),
        ("/_VBA_PROJECT_CUR/VBA/dir", b"\x01"),
    ]);
    let outcome = assert_fail_closed("book.xls", &input);
    assert_eq!(
        outcome.report.verdict,
        Verdict::Sanitized,
        "{:?}",
        outcome.report.reason
    );
    assert!(removed(&outcome, What::Macro, "OBPROJ"));
    assert_eq!(
        stream_of(outcome.output().unwrap().bytes(), "/Workbook"),
        workbook_with_positions(false)
    );
    assert_second_pass_removes_nothing(&outcome);
}

#[test]
fn powerpoint_program_package_blocks_and_encryption_holds() {
    let base = libreoffice_convert(&[("object.odp", &odp(true))], "ppt").remove(0);

    // An object storage whose package is a program: the document is blocked, not cleaned.
    let storage = compound(&[(
        "/\u{1}Ole10Native",
        &package("setup.exe", b"MZ\x90\x00\x03\x00\x00\x00 synthetic"),
    )]);
    let mut stream = stream_of(&base, "/PowerPoint Document");
    stream.extend(ppt_header(0x0000, 0x1011, storage.len()));
    stream.extend_from_slice(&storage);
    let input = amend(&base, &[("/PowerPoint Document", stream)], "", &[]);
    let outcome = process(&input, "object.ppt");
    assert_eq!(
        outcome.report.verdict,
        Verdict::Blocked,
        "{:?}",
        outcome.report.reason
    );
    assert!(outcome.output().is_none());

    // The CurrentUserAtom's token says the document is encrypted.
    let mut user = stream_of(&base, "/Current User");
    user[12..16].copy_from_slice(&0xF3D1_C4DFu32.to_le_bytes());
    let input = amend(&base, &[("/Current User", user)], "", &[]);
    let outcome = process(&input, "object.ppt");
    assert_eq!(outcome.report.verdict, Verdict::Quarantined);
    assert_eq!(outcome.report.reason.unwrap().code, "encrypted");
}
