//! Legacy Office (doc, xls, ppt): macros, XLM sheets, encryption, DDE fields, external links
//! and objects PowerPoint keeps inside its stream hold the file with the exact finding; other
//! documents are rebuilt into a new compound file of allowlisted streams, Word and Excel object
//! storages removed — unless the embedded package is a program or shortcut, which blocks it.

mod common;

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
fn macros_encryption_and_dde_fields_hold_word_files() {
    let macros = doc(&[("/Macros/VBA/dir", b"\x01\x00")]);
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
        ("macros", macros, "unsupported"),
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

#[test]
fn powerpoint_vba_is_held() {
    // DocumentContainer (0x03E8) holding a VBAInfoContainer (0x03FF).
    let mut inner = vec![0x0F, 0x00, 0xFF, 0x03];
    inner.extend_from_slice(&0u32.to_le_bytes());
    let mut stream = vec![0x0F, 0x00, 0xE8, 0x03];
    stream.extend_from_slice(&(inner.len() as u32).to_le_bytes());
    stream.extend_from_slice(&inner);
    let input = compound(&[
        ("/PowerPoint Document", &stream),
        ("/Current User", b"user"),
    ]);
    let outcome = process(&input, "a.ppt");
    assert_eq!(outcome.report.verdict, Verdict::Quarantined);
    assert!(outcome.report.reason.unwrap().detail.contains("VBA"));
}
