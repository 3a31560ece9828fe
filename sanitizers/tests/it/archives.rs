//! Archives are unpacked, every member goes through the registry, and only rebuilt members are
//! repacked into a new ZIP with UTF-8 names; anything the gateway cannot vouch for holds or
//! blocks the whole archive unless policy delivers the rest with a report inside.

use crate::common;

use std::io::{Cursor, Read, Write};

use common::generate::*;
use common::*;
use mukaika_sanitizers::{FileKind, Policy, Verdict, What};

fn zip_bytes(zip: &[u8], name: &str) -> Option<Vec<u8>> {
    let mut archive = zip::ZipArchive::new(Cursor::new(zip)).expect("output is a ZIP");
    let mut member = archive.by_name(name).ok()?;
    let mut out = Vec::new();
    member.read_to_end(&mut out).unwrap();
    Some(out)
}

#[test]
fn zip_members_are_rebuilt_renamed_and_reported() {
    let docm = docm_with_macro().build();
    let cp932_name = encoding_rs::SHIFT_JIS
        .encode("資料/見積書.docm")
        .0
        .into_owned();
    let input = raw_zip(&[
        (&cp932_name, &docm),
        (b"images/logo.png", &tiny_png()),
        (b"notes\\readme.txt", b"plain notes\r\n"),
        (b"__MACOSX/._logo.png", b"\x00\x05\x16\x07 resource fork"),
        (
            b"desktop.ini",
            b"[.ShellClassInfo]\r\nIconResource=\\\\evil\\share\\x.ico\r\n",
        ),
    ]);
    let outcome = assert_fail_closed("受領資料.zip", &input);
    let out = outcome.output().unwrap();
    assert_eq!(out.kind(), FileKind::Zip);
    assert_eq!(out.name(), "受領資料.zip");
    let mut names = zip_names(out.bytes());
    names.sort();
    assert_eq!(
        names,
        vec!["images/logo.png", "notes/readme.txt", "資料/見積書.docx"]
    );
    // The docm member lost its macro and its name says so.
    let docx = zip_bytes(out.bytes(), "資料/見積書.docx").unwrap();
    assert!(!zip_names(&docx).iter().any(|n| n.contains("vbaProject")));
    let child = outcome
        .report
        .children
        .iter()
        .find(|c| c.input.as_deref() == Some("資料/見積書.docm"))
        .expect("the member's report is a child of the archive's");
    assert_eq!(child.verdict, Verdict::Sanitized);
    assert!(child.removed.iter().any(|r| r.what == What::Macro));
    assert!(removed(&outcome, What::Metadata, "__MACOSX/._logo.png"));
    assert!(removed(&outcome, What::Metadata, "desktop.ini"));
    assert_eq!(
        zip_bytes(out.bytes(), "notes/readme.txt").unwrap(),
        b"plain notes\r\n"
    );
}

#[test]
fn an_executable_member_blocks_the_whole_archive() {
    let input = zip_of(&[
        ("請求書.pdf", &pdf_js_openaction()),
        ("請求書.pdf.exe", b"MZ\x90\x00 not really a program"),
    ]);
    let outcome = process(&input, "請求書.zip");
    assert_eq!(outcome.report.verdict, Verdict::Blocked);
    assert_eq!(
        outcome.report.reason.as_ref().unwrap().code,
        "blocked-member"
    );
    assert!(outcome.output().is_none());
    assert_eq!(outcome.report.children.len(), 2);
}

#[test]
fn a_held_member_holds_the_archive_unless_policy_delivers_the_rest() {
    let rar = b"Rar!\x1a\x07\x00\xcf\x90\x73\x00\x00\x0d\x00\x00\x00\x00\x00\x00\x00";
    let input = zip_of(&[("a.txt", b"hello\n"), ("inner.rar", rar)]);
    let outcome = process(&input, "x.zip");
    assert_eq!(outcome.report.verdict, Verdict::Quarantined);
    assert_eq!(outcome.report.reason.as_ref().unwrap().code, "held-member");

    let policy = Policy {
        archive_deliver_rest: true,
        ..Policy::default()
    };
    let outcome = process_with(&input, "x.zip", &policy);
    assert_eq!(outcome.report.verdict, Verdict::Sanitized);
    assert!(removed(&outcome, What::ArchiveMember, "inner.rar"));
    let out = outcome.output().unwrap().bytes();
    let mut names = zip_names(out);
    names.sort();
    assert_eq!(names, vec!["a.txt", "無害化レポート.txt"]);
    let note = String::from_utf8(zip_bytes(out, "無害化レポート.txt").unwrap()).unwrap();
    assert!(
        note.contains("inner.rar") && note.contains("隔離"),
        "{note}"
    );
    // Staff open this note: why in plain Japanese, not the reason code and English detail.
    assert!(
        note.contains("・inner.rar — 隔離: 圧縮ファイル (.rar) は、"),
        "{note}"
    );
    assert!(!note.contains("policy-quarantine"), "{note}");
}

#[test]
fn nesting_past_the_depth_limit_is_held() {
    let mut nested = zip_of(&[("deep.txt", b"bottom\n")]);
    for level in 0..3 {
        nested = zip_of(&[(&format!("level{level}.zip"), &nested)]);
    }
    // 4 levels of ZIP around a text file: the text sits at depth 5.
    let outcome = process(&nested, "outer.zip");
    assert_eq!(outcome.report.verdict, Verdict::Quarantined);
    assert_eq!(outcome.report.reason.as_ref().unwrap().code, "held-member");

    let three = zip_of(&[("l1.zip", &zip_of(&[("deep.txt", b"bottom\n")]))]);
    let outcome = process(&three, "outer.zip");
    assert_eq!(
        outcome.report.verdict,
        Verdict::Sanitized,
        "{:?}",
        outcome.report.reason
    );
}

#[test]
fn unsafe_entries_hold_the_archive() {
    for (name, input) in [
        ("traversal", raw_zip(&[(b"../../evil.txt", b"x")])),
        ("absolute", raw_zip(&[(b"/etc/cron.d/x", b"x")])),
        ("drive", raw_zip(&[(b"C:\\Windows\\x.txt", b"x")])),
        ("duplicate", raw_zip(&[(b"a.txt", b"x"), (b"A.TXT", b"y")])),
    ] {
        let outcome = process(&input, "x.zip");
        assert_eq!(outcome.report.verdict, Verdict::Quarantined, "{name}");
        assert_eq!(
            outcome.report.reason.as_ref().unwrap().code,
            "malformed",
            "{name}"
        );
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

fn tar_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, data) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, name, *data).unwrap();
    }
    builder.into_inner().unwrap()
}

#[test]
fn compressed_tarballs_become_zips_of_rebuilt_members() {
    let tar = tar_of(&[
        ("dir/list.csv", b"name,amount\r\nx,=1+1\r\n"),
        (
            "dir/page.html",
            b"<html><body><p>hello</p><script>x()</script></body></html>",
        ),
    ]);
    let outcome = process(&gzip(&tar), "export.tar.gz");
    assert_eq!(
        outcome.report.verdict,
        Verdict::Sanitized,
        "{:?}",
        outcome.report.reason
    );
    let out = outcome.output().unwrap();
    assert_eq!(out.name(), "export.zip");
    let mut names = zip_names(out.bytes());
    names.sort();
    assert_eq!(names, vec!["dir/list.csv", "dir/page.txt"]);
    assert_eq!(
        zip_bytes(out.bytes(), "dir/list.csv").unwrap(),
        b"name,amount\r\nx,'=1+1\r\n"
    );
}

#[test]
fn single_compressed_files_keep_their_inner_name() {
    let text = b"line one\nline two\n".repeat(50);
    let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
    bz.write_all(&text).unwrap();
    let bz = bz.finish().unwrap();
    let mut xz = Vec::new();
    lzma_rs::xz_compress(&mut Cursor::new(&text), &mut xz).unwrap();
    for (input, name, inner) in [
        (gzip(&text), "log.txt.gz", "log.txt"),
        (bz, "log.txt.bz2", "log.txt"),
        (xz, "log.txt.xz", "log.txt"),
    ] {
        let outcome = process(&input, name);
        assert_eq!(
            outcome.report.verdict,
            Verdict::Sanitized,
            "{name}: {:?}",
            outcome.report.reason
        );
        let out = outcome.output().unwrap();
        assert_eq!(out.name(), "log.txt.zip", "{name}");
        assert_eq!(zip_bytes(out.bytes(), inner).unwrap(), text, "{name}");
    }
}

#[test]
fn tar_links_and_bombs_are_held() {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Symlink);
    header.set_size(0);
    builder
        .append_link(&mut header, "passwd", "/etc/passwd")
        .unwrap();
    let tar = builder.into_inner().unwrap();
    let outcome = process(&tar, "x.tar");
    assert_eq!(outcome.report.verdict, Verdict::Quarantined);
    assert_eq!(outcome.report.reason.as_ref().unwrap().code, "malformed");

    // 16 MiB of zeros gzips about 1000:1, past the ratio limit.
    let bomb = gzip(&vec![0u8; 16 << 20]);
    let outcome = process(&bomb, "zeros.bin.gz");
    assert_eq!(outcome.report.verdict, Verdict::Quarantined);
    assert_eq!(
        outcome.report.reason.as_ref().unwrap().code,
        "limit-exceeded"
    );

    let small = Policy {
        limits: mukaika_sanitizers::Limits {
            max_expanded_bytes: 1000,
            ..Default::default()
        },
        ..Policy::default()
    };
    let outcome = process_with(&gzip(&[b'a'; 5000]), "a.txt.gz", &small);
    assert_eq!(
        outcome.report.reason.as_ref().unwrap().code,
        "limit-exceeded"
    );
}

#[test]
fn unsupported_zip_methods_are_named() {
    let mut input = zip_of(&[("a.txt", b"hello hello hello hello\n")]);
    // Rewrite the method field (local header offset 8, central header offset 10) to 9,
    // Deflate64.
    input[8] = 9;
    let cd = input.windows(4).position(|w| w == b"PK\x01\x02").unwrap();
    input[cd + 10] = 9;
    let outcome = process(&input, "a.zip");
    assert_eq!(outcome.report.verdict, Verdict::Quarantined);
    assert_eq!(outcome.report.reason.as_ref().unwrap().code, "unsupported");
}

fn seven_zip(entries: &[(&str, &[u8])], password: Option<&str>) -> Vec<u8> {
    use sevenz_rust2::encoder_options::AesEncoderOptions;
    use sevenz_rust2::{ArchiveEntry, ArchiveWriter, EncoderMethod, Password};
    let mut writer = ArchiveWriter::new(Cursor::new(Vec::new())).unwrap();
    if let Some(password) = password {
        writer.set_content_methods(vec![
            AesEncoderOptions::new(Password::from(password)).into(),
            EncoderMethod::LZMA2.into(),
        ]);
    }
    for (name, data) in entries {
        writer
            .push_archive_entry(ArchiveEntry::new_file(name), Some(*data))
            .unwrap();
    }
    writer.finish().unwrap().into_inner()
}

#[test]
fn seven_zip_members_are_rebuilt_and_encryption_is_held() {
    let input = seven_zip(
        &[
            ("資料/一覧.csv", b"a,=1+1\r\n"),
            ("資料/説明.txt", b"plain\r\n"),
        ],
        None,
    );
    let outcome = assert_fail_closed("資料.7z", &input);
    let out = outcome.output().unwrap();
    assert_eq!(out.name(), "資料.zip");
    let mut names = zip_names(out.bytes());
    names.sort();
    assert_eq!(names, vec!["資料/一覧.csv", "資料/説明.txt"]);
    assert_eq!(
        zip_bytes(out.bytes(), "資料/一覧.csv").unwrap(),
        b"a,'=1+1\r\n"
    );

    let locked = seven_zip(&[("a.txt", b"secret\n")], Some("infected"));
    let outcome = process(&locked, "locked.7z");
    assert_eq!(outcome.report.verdict, Verdict::Quarantined);
    assert_eq!(outcome.report.reason.as_ref().unwrap().code, "encrypted");

    let bad = seven_zip(&[("../../escape.txt", b"x")], None);
    let outcome = process(&bad, "bad.7z");
    assert_eq!(outcome.report.reason.as_ref().unwrap().code, "malformed");
}

/// Found by the registry's single-byte-corruption property test: one byte of a package's
/// central directory renamed `word/document.xml` to ` ord/document.xml` while the local header
/// kept the old name. Readers that walk local headers and readers that trust the central
/// directory then see different packages; the rebuild lost its main part and only the output
/// re-check (internal-error) stopped it. Now the disagreement itself is the verdict.
#[test]
fn a_member_named_differently_in_its_local_header_is_malformed() {
    let mut buf = Cursor::new(Vec::new());
    {
        let mut w = zip::ZipWriter::new(&mut buf);
        let opts = zip::write::SimpleFileOptions::default();
        w.start_file("docs/readme.txt", opts).unwrap();
        w.write_all(b"an ordinary memo\n").unwrap();
        w.finish().unwrap();
    }
    let good = buf.into_inner();
    assert_eq!(
        process(&good, "docs.zip").report.verdict,
        Verdict::Sanitized
    );
    // The second occurrence of the name is the central directory's copy.
    let at = good
        .windows(4)
        .enumerate()
        .filter(|(_, w)| *w == b"docs")
        .map(|(i, _)| i)
        .nth(1)
        .expect("central directory name");
    let mut bad = good.clone();
    bad[at] = b'x';
    let outcome = process(&bad, "docs.zip");
    assert_eq!(outcome.report.verdict, Verdict::Quarantined);
    assert!(outcome.output().is_none());
    let reason = outcome.report.reason.unwrap();
    assert_eq!(reason.code, "malformed", "{}", reason.detail);
    assert!(reason.detail.contains("local header"), "{}", reason.detail);
}
