//! PPAP: password-protected attachments, encrypted at test time by the real tools senders use
//! (Info-ZIP `zip -e`, 7-Zip, qpdf, msoffcrypto-tool), are listed without the password,
//! unlocked with the right one into clear bytes the registry then sanitizes, and never
//! unlocked by a wrong one. `bash tests/ci.sh` installs every tool used here.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::generate::*;
use common::*;
use mukaika_sanitizers::unlock::{Container, Method};
use mukaika_sanitizers::{
    encrypted_listing, unlock, FileKind, Limits, Password, Policy, Verdict, What,
};

/// Runs a tool; a missing tool fails the test with the way to install it.
fn run(program: &str, args: &[&str], dir: &Path) {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{program} is not installed ({e}): run `bash tests/ci.sh`"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Writes `files` into a fresh directory.
fn staged(files: &[(&str, &[u8])]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, bytes) in files {
        let path = dir.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(path, bytes).unwrap();
    }
    dir
}

/// Info-ZIP `zip -e -P` (ZipCrypto); `store` keeps members uncompressed.
fn zipcrypto(files: &[(&str, &[u8])], password: &str, store: bool) -> Vec<u8> {
    let dir = staged(files);
    let mut args = vec!["-q", "-X", "-e", "-P", password];
    if store {
        args.push("-0");
    }
    args.push("out.zip");
    args.extend(files.iter().map(|(n, _)| *n));
    run("zip", &args, dir.path());
    std::fs::read(dir.path().join("out.zip")).unwrap()
}

/// 7-Zip; `kind` is `7z` or `zip` (WinZip AES-256 with `-mem=AES256`).
fn seven_zip(files: &[(&str, &[u8])], password: &str, kind: &str, extra: &[&str]) -> Vec<u8> {
    let dir = staged(files);
    let pw = format!("-p{password}");
    let ty = format!("-t{kind}");
    let mut args = vec!["a", "-bd", "-y", ty.as_str(), pw.as_str()];
    args.extend(extra);
    args.push("out.bin");
    args.extend(files.iter().map(|(n, _)| *n));
    run("7z", &args, dir.path());
    std::fs::read(dir.path().join("out.bin")).unwrap()
}

/// qpdf AES-256 with a user and an owner password.
fn qpdf_encrypted(pdf: &[u8], user: &str, owner: &str) -> Vec<u8> {
    let dir = staged(&[("in.pdf", pdf)]);
    run(
        "qpdf",
        &["--encrypt", user, owner, "256", "--", "in.pdf", "out.pdf"],
        dir.path(),
    );
    std::fs::read(dir.path().join("out.pdf")).unwrap()
}

fn msoffcrypto_tool() -> PathBuf {
    workspace_root().join("target/ppap-venv/bin/msoffcrypto-tool")
}

/// msoffcrypto-tool (ECMA-376 agile, as Office 2010 and later write it).
fn office_encrypted(package: &[u8], password: &str) -> Vec<u8> {
    let dir = staged(&[("in.docx", package)]);
    let tool = msoffcrypto_tool();
    run(
        tool.to_str().unwrap(),
        &["-e", "-p", password, "in.docx", "out.docx"],
        dir.path(),
    );
    std::fs::read(dir.path().join("out.docx")).unwrap()
}

/// Text that does not compress, so a package passes 4096 bytes: msoffcrypto-tool 6.1.0
/// writes a CFB whose root entry is shorter than its mini stream when the package is
/// smaller (olefile then reads it short and the tool cannot decrypt its own output).
fn noise(bytes: usize) -> String {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..bytes)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b"0123456789abcdefghijklmnopqrstuvwxyz"[(x % 36) as usize])
        })
        .collect()
}

/// A docm with a macro, large enough for msoffcrypto-tool (see [`noise`]).
fn large_docm() -> Vec<u8> {
    docm_with_macro()
        .part(
            "word/document.xml",
            DOCM_MAIN,
            word_document(&para(&noise(12_000))),
        )
        .build()
}

/// A docx large enough for msoffcrypto-tool.
fn large_docx() -> Vec<u8> {
    docx_benign()
        .part(
            "word/document.xml",
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml",
            word_document(&para(&noise(12_000))),
        )
        .build()
}

fn limits() -> Limits {
    Limits::default()
}

#[test]
fn zipcrypto_zip_lists_its_members_and_unlocks_into_a_zip_the_registry_sanitizes() {
    let docm = docm_with_macro().build();
    let memo = "見積の件、よろしくお願いします。\n".as_bytes();
    let locked = zipcrypto(
        &[("見積書.docm", &docm), ("memo.txt", memo)],
        "Abc123!",
        false,
    );

    let listing = encrypted_listing(&locked).expect("an encrypted ZIP is recognised");
    assert_eq!(listing.container, Container::Zip);
    assert_eq!(listing.method, Method::ZipCrypto);
    assert!(listing.names_visible && listing.unlockable);
    let mut seen: Vec<(String, u64, bool)> = listing
        .members
        .iter()
        .map(|m| (m.name.clone(), m.size, m.encrypted))
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        vec![
            ("memo.txt".to_string(), memo.len() as u64, true),
            ("見積書.docm".to_string(), docm.len() as u64, true),
        ]
    );
    let json = serde_json::to_string(&listing).unwrap();
    assert!(json.contains("zip-crypto") && !json.contains("Abc123"));

    let open = unlock(&locked, &Password::new("Abc123!"), &limits()).expect("right password");
    assert_eq!(open.kind, FileKind::Zip);
    assert_eq!(open.extension, "zip");
    assert_eq!(open.members_verified, 2);
    assert!(
        encrypted_listing(&open.bytes).is_none(),
        "output is in the clear"
    );

    // The registry takes the unlocked bytes as if they had arrived in the clear.
    let outcome = process(&open.bytes, "見積書.zip");
    assert_eq!(
        outcome.report.verdict,
        Verdict::Sanitized,
        "{:?}",
        outcome.report.reason
    );
    let out = outcome.output().unwrap();
    let mut names = zip_names(out.bytes());
    names.sort();
    assert_eq!(names, vec!["memo.txt", "見積書.docx"]);
    let child = outcome
        .report
        .children
        .iter()
        .find(|c| c.input.as_deref() == Some("見積書.docm"))
        .expect("member report");
    assert!(child.removed.iter().any(|r| r.what == What::Macro));
}

#[test]
fn wrong_passwords_never_yield_bytes_for_any_container() {
    let docx = large_docx();
    let pdf = pdf_js_openaction();
    let files: &[(&str, &[u8])] = &[("報告書.docx", &docx), ("a.txt", b"some text here\n")];
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("zipcrypto", zipcrypto(files, "right-pw1", false)),
        (
            "winzip-aes",
            seven_zip(files, "right-pw1", "zip", &["-mem=AES256"]),
        ),
        ("7z", seven_zip(files, "right-pw1", "7z", &["-mhe=off"])),
        ("7z-mhe", seven_zip(files, "right-pw1", "7z", &["-mhe=on"])),
        ("pdf", qpdf_encrypted(&pdf, "right-pw1", "owner-pw1")),
        ("docx", office_encrypted(&docx, "right-pw1")),
    ];
    for (name, locked) in &cases {
        assert!(
            encrypted_listing(locked).is_some(),
            "{name}: not recognised"
        );
        for wrong in ["right-pw2", "", "RIGHT-PW1", "right-pw"] {
            match unlock(locked, &Password::new(wrong), &limits()) {
                Ok(u) => panic!("{name}: a wrong password unlocked it ({u:?})"),
                Err(e) => {
                    assert!(e.is_wrong_password(), "{name}: {e}");
                    assert!(
                        !e.to_string().contains(wrong) || wrong.is_empty() || wrong == "right-pw"
                    );
                }
            }
        }
        let open = unlock(locked, &Password::new("right-pw1"), &limits())
            .unwrap_or_else(|e| panic!("{name}: the right password fails: {e}"));
        assert!(!open.bytes.is_empty());
        assert!(
            encrypted_listing(&open.bytes).is_none(),
            "{name}: still encrypted"
        );
    }
}

#[test]
fn a_zipcrypto_password_passing_the_header_check_is_rejected_by_the_crc() {
    // Stored, so a wrong key decrypts to garbage of the right length: only the CRC tells.
    let body = b"quarterly numbers, confidential, 2026\n".repeat(20);
    let locked = zipcrypto(&[("data.txt", &body)], "q9w8e7", true);
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(&locked)).unwrap();
    let mut passing = None;
    for n in 0..20_000 {
        let candidate = format!("guess{n}");
        if archive.by_index_decrypt(0, candidate.as_bytes()).is_ok() {
            passing = Some(candidate);
            break;
        }
    }
    let passing = passing.expect("one guess in ~256 passes the one-byte header check");
    let err = unlock(&locked, &Password::new(passing), &limits()).unwrap_err();
    assert!(err.is_wrong_password(), "{err}");
    let open = unlock(&locked, &Password::new("q9w8e7"), &limits()).unwrap();
    assert_eq!(zip_text(&open.bytes, "data.txt").unwrap().as_bytes(), body);
}

#[test]
fn winzip_aes_zip_is_listed_as_aes_and_unlocks() {
    let locked = seven_zip(
        &[("請求書.csv", "品目,金額\nA,100\n".as_bytes())],
        "Kx9#mQ2z",
        "zip",
        &["-mem=AES256"],
    );
    let listing = encrypted_listing(&locked).unwrap();
    assert_eq!(listing.method, Method::WinzipAes);
    assert_eq!(listing.members.len(), 1);
    assert!(listing.members[0].encrypted);
    let open = unlock(&locked, &Password::new("Kx9#mQ2z"), &limits()).unwrap();
    assert_eq!(open.method, Method::WinzipAes);
    assert_eq!(
        zip_text(&open.bytes, "請求書.csv").unwrap(),
        "品目,金額\nA,100\n"
    );
}

#[test]
fn seven_zip_lists_names_only_when_its_headers_are_clear_and_unlocks_either_way() {
    let docm = docm_with_macro().build();
    let files: &[(&str, &[u8])] = &[("資料/提案書.docm", &docm)];
    let clear_headers = seven_zip(files, "z8X!p0q", "7z", &["-mhe=off"]);
    let listing = encrypted_listing(&clear_headers).unwrap();
    assert_eq!(listing.container, Container::SevenZip);
    assert_eq!(listing.method, Method::SevenZipAes);
    assert!(listing.names_visible);
    assert!(listing
        .members
        .iter()
        .any(|m| m.name == "資料/提案書.docm" && m.size == docm.len() as u64 && m.encrypted));

    let hidden_headers = seven_zip(files, "z8X!p0q", "7z", &["-mhe=on"]);
    let listing = encrypted_listing(&hidden_headers).unwrap();
    assert!(!listing.names_visible && listing.members.is_empty());

    for locked in [clear_headers, hidden_headers] {
        let open = unlock(&locked, &Password::new("z8X!p0q"), &limits()).unwrap();
        assert_eq!((open.kind, open.extension), (FileKind::Zip, "zip"));
        let outcome = process(&open.bytes, "資料.zip");
        assert_eq!(outcome.report.verdict, Verdict::Sanitized);
        let names = zip_names(outcome.output().unwrap().bytes());
        assert!(names.contains(&"資料/提案書.docx".to_string()), "{names:?}");
    }
}

#[test]
fn pdf_with_a_user_password_unlocks_to_a_clear_pdf_the_registry_rebuilds() {
    let locked = qpdf_encrypted(&pdf_js_openaction(), "pdf-user-7", "pdf-owner-7");
    let listing = encrypted_listing(&locked).unwrap();
    assert_eq!(
        (listing.container, listing.method),
        (Container::Pdf, Method::PdfAes256)
    );
    // Held as today, now with the listing in the report.
    let held = process(&locked, "契約書.pdf");
    assert_eq!(held.report.reason.as_ref().unwrap().code, "encrypted");
    assert_eq!(held.report.encrypted.as_ref(), Some(&listing));

    let open = unlock(&locked, &Password::new("pdf-user-7"), &limits()).unwrap();
    assert_eq!((open.kind, open.extension), (FileKind::Pdf, "pdf"));
    assert_qpdf_accepts("unlocked", &open.bytes);
    assert!(!pdf_names(&open.bytes).iter().any(|n| n == "Encrypt"));
    let outcome = process(&open.bytes, "契約書.pdf");
    assert_eq!(outcome.report.verdict, Verdict::Sanitized);
    assert!(outcome
        .report
        .removed
        .iter()
        .any(|r| r.what == What::Javascript));
    // The owner password opens it too (it is the sender's).
    assert!(unlock(&locked, &Password::new("pdf-owner-7"), &limits()).is_ok());
}

#[test]
fn office_documents_encrypted_by_msoffcrypto_unlock_to_the_original_package() {
    let docm = large_docm();
    let xlsx = xlsx_of(
        "",
        &format!(
            "<sheetData><row r=\"1\"><c r=\"A1\" t=\"inlineStr\"><is><t>売上 {}</t></is></c></row></sheetData>",
            noise(12_000)
        ),
    );
    for (name, package, kind) in [
        ("議事録.docm", &docm, FileKind::Docm),
        ("売上.xlsx", &xlsx, FileKind::Xlsx),
    ] {
        let locked = office_encrypted(package, "パス1234");
        let listing = encrypted_listing(&locked).expect("EncryptedPackage is recognised");
        assert_eq!(
            (listing.container, listing.method),
            (Container::Ooxml, Method::OoxmlAgile)
        );
        let held = process(&locked, name);
        assert_eq!(held.report.reason.as_ref().unwrap().code, "encrypted");
        assert!(held.report.encrypted.is_some());

        let open = unlock(&locked, &Password::new("パス1234"), &limits()).unwrap();
        assert_eq!(&open.bytes, package, "{name}");
        assert_eq!(open.kind, kind);
        let outcome = process(&open.bytes, name);
        assert_eq!(outcome.report.verdict, Verdict::Sanitized, "{name}");
        let out = outcome.output().unwrap();
        assert!(!zip_names(out.bytes())
            .iter()
            .any(|n| n.contains("vbaProject")));
        if kind == FileKind::Docm {
            assert_eq!(out.kind(), FileKind::Docx);
        }
    }
}

#[test]
fn an_office_package_whose_integrity_hmac_disagrees_is_not_unlocked() {
    let docx = large_docx();
    let mut locked = office_encrypted(&docx, "pw-4321");
    // Alter the stored HMAC (same length, so the CFB stays valid): the package itself still
    // decrypts cleanly, and only the data-integrity check can tell.
    let needle = b"encryptedHmacValue=\"";
    let at = locked
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("agile EncryptionInfo has dataIntegrity")
        + needle.len();
    locked[at] = if locked[at] == b'A' { b'B' } else { b'A' };
    match unlock(&locked, &Password::new("pw-4321"), &limits()) {
        Ok(_) => panic!("a package failing its HMAC was unlocked"),
        Err(e) => assert!(e.is_malformed(), "{e}"),
    }
}

#[test]
fn a_zip_bomb_inside_an_encrypted_zip_stops_at_the_limit() {
    let zeros = vec![0u8; 8 << 20];
    let locked = zipcrypto(&[("zeros.bin", &zeros)], "bomb-pw", false);
    assert!(locked.len() < 64 << 10);
    let small = Limits {
        max_expanded_bytes: 4 << 20,
        ..Limits::default()
    };
    let err = unlock(&locked, &Password::new("bomb-pw"), &small).unwrap_err();
    assert!(err.is_limit_exceeded(), "{err}");
    let err = unlock(&locked, &Password::new("bomb-pw"), &limits()).unwrap_err();
    assert!(err.is_limit_exceeded(), "the ratio limit holds too: {err}");

    let packed = seven_zip(&[("zeros.bin", &zeros)], "bomb-pw", "7z", &["-mhe=on"]);
    let err = unlock(&packed, &Password::new("bomb-pw"), &small).unwrap_err();
    assert!(err.is_limit_exceeded(), "{err}");
}

#[test]
fn clear_and_unknown_inputs_are_not_unlocked() {
    let clear = zip_of(&[("a.txt", b"plain")]);
    assert!(encrypted_listing(&clear).is_none());
    let err = unlock(&clear, &Password::new("x"), &limits()).unwrap_err();
    assert!(err.is_unsupported(), "{err}");
    let pdf = pdf_js_openaction();
    assert!(encrypted_listing(&pdf).is_none());
    assert!(unlock(&pdf, &Password::new("x"), &limits())
        .unwrap_err()
        .is_unsupported());
    // An empty user password is no PPAP: the registry already opens it.
    let empty_user = qpdf_encrypted(&pdf, "", "owner-only");
    assert!(encrypted_listing(&empty_user).is_none());
    let policy = Policy::default();
    let outcome = process_with(&empty_user, "x.pdf", &policy);
    assert_eq!(outcome.report.verdict, Verdict::Sanitized);
}

/// A CFB file with the given streams.
fn compound(streams: &[(&str, &[u8])]) -> Vec<u8> {
    use std::io::Write;
    let mut file = cfb::CompoundFile::create(std::io::Cursor::new(Vec::new())).unwrap();
    for (path, bytes) in streams {
        file.create_stream(path).unwrap().write_all(bytes).unwrap();
    }
    file.flush().unwrap();
    file.into_inner().into_inner()
}

#[test]
fn legacy_office_encryption_is_listed_and_held_as_unsupported() {
    // Word 97: FIB magic, fEncrypted (0x0100) in the flags at 0x0A.
    let mut fib = vec![0u8; 0x40];
    fib[..2].copy_from_slice(&[0xEC, 0xA5]);
    fib[0x0A..0x0C].copy_from_slice(&0x0100u16.to_le_bytes());
    let doc = compound(&[("/WordDocument", &fib), ("/1Table", &[0u8; 16])]);
    // Excel 97: BOF, then FILEPASS (0x002F) in the globals substream.
    let mut book = Vec::new();
    for (kind, data) in [
        (0x0809u16, &[0u8; 16][..]),
        (0x002F, &[1, 0, 1, 0][..]),
        (0x000A, &[][..]),
    ] {
        book.extend(kind.to_le_bytes());
        book.extend((data.len() as u16).to_le_bytes());
        book.extend(data);
    }
    let xls = compound(&[("/Workbook", &book)]);
    for (name, locked) in [("a.doc", doc), ("a.xls", xls)] {
        let listing = encrypted_listing(&locked).unwrap_or_else(|| panic!("{name}"));
        assert_eq!(
            (listing.container, listing.method, listing.unlockable),
            (Container::LegacyOffice, Method::LegacyOffice, false)
        );
        let err = unlock(&locked, &Password::new("any"), &limits()).unwrap_err();
        assert!(err.is_unsupported(), "{name}: {err}");
        assert!(err.message().contains("legacy"), "{err}");
    }
    // Without the flag it is no encrypted container.
    let mut clear_fib = vec![0u8; 0x40];
    clear_fib[..2].copy_from_slice(&[0xEC, 0xA5]);
    assert!(encrypted_listing(&compound(&[("/WordDocument", &clear_fib)])).is_none());
}

#[test]
fn candidates_from_a_password_mail_unlock_the_attachment_it_belongs_to() {
    use mukaika_sanitizers::mail::ppap::{mask_passwords, password_candidates};
    let mail = "田中様\n\nお世話になっております。\n先ほどの「見積書.zip」の解凍パスワードをお送りします。\n\n【パスワード】\n  ｑ９ｗ８ｅ７\n\n※PW: は半角英数字です。\n";
    let locked = zipcrypto(
        &[("見積書.txt", "金額: 100円\n".as_bytes())],
        "q9w8e7",
        false,
    );
    let candidates = password_candidates(mail, 3);
    assert!(!candidates.is_empty());
    let opened = candidates
        .iter()
        .find_map(|p| unlock(&locked, p, &limits()).ok())
        .expect("one candidate opens the attachment");
    assert_eq!(opened.members_verified, 1);
    let (masked, n) = mask_passwords(mail);
    assert_eq!(n, 1);
    assert!(!masked.contains("ｑ９ｗ８ｅ７") && masked.contains("********"));
}

#[test]
fn real_world_encrypted_files_from_the_corpus_unlock_with_their_passwords() {
    let dir = corpus_dir();
    let read = |path: &str| {
        std::fs::read(dir.join(path))
            .unwrap_or_else(|e| panic!("corpus file {path} ({e}): see tests/ci.sh"))
    };
    // Excel-written agile encryption with Excel's default password, a macro inside.
    let xlsm = read("office/encrypted/oletools-autostart-encrypt-standardpassword.xlsm");
    let listing = encrypted_listing(&xlsm).unwrap();
    assert_eq!(listing.method, Method::OoxmlAgile);
    assert!(unlock(&xlsm, &Password::new("velvetsweatshop"), &limits())
        .unwrap_err()
        .is_wrong_password());
    let open = unlock(&xlsm, &Password::new("VelvetSweatshop"), &limits()).unwrap();
    assert_eq!(open.kind, FileKind::Xlsm);
    let outcome = process(&open.bytes, "autostart.xlsm");
    assert_eq!(
        outcome.report.verdict,
        Verdict::Sanitized,
        "{:?}",
        outcome.report.reason
    );
    let out = outcome.output().unwrap();
    assert_eq!(out.kind(), FileKind::Xlsx);
    assert!(!zip_names(out.bytes())
        .iter()
        .any(|n| n.contains("vbaProject")));

    // A ZipCrypto ZIP as oletools ships its samples ("infected-test").
    let zip = read("office/dde/oletools-dde-test-from-office2016.doc.zip");
    assert_eq!(encrypted_listing(&zip).unwrap().method, Method::ZipCrypto);
    assert!(unlock(&zip, &Password::new("infected"), &limits())
        .unwrap_err()
        .is_wrong_password());
    let open = unlock(&zip, &Password::new("infected-test"), &limits()).unwrap();
    assert_eq!(open.members_verified, 1);
    // The Word document inside has a DDE field: the registry holds the archive for it.
    let outcome = process(&open.bytes, "dde.zip");
    assert_ne!(outcome.report.verdict, Verdict::Sanitized);
    assert!(outcome
        .report
        .children
        .iter()
        .any(|c| c.detected_type == FileKind::Doc));
}
