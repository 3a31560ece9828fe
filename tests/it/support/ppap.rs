//! PPAP helpers the browser test shares: an Info-ZIP encrypted mail and the recipients' link
//! notices read back from the maildir.

#![allow(dead_code)]

use mukaika_fixtures as generate;
use std::path::Path;
use std::time::{Duration, Instant};

/// The base of the links the tests configure as `[ppap] public_url`.
pub const PUBLIC_URL: &str = "https://gateway.city.example.invalid/ppap";

/// Info-ZIP `zip -e -P` of `files` (a missing tool fails the test and says how to install it).
pub fn zip_e(files: &[(&str, &[u8])], password: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in files {
        std::fs::write(dir.path().join(name), bytes).unwrap();
    }
    let mut args = vec!["-q", "-X", "-e", "-P", password, "out.zip"];
    args.extend(files.iter().map(|(n, _)| *n));
    let out = std::process::Command::new("zip")
        .args(&args)
        .current_dir(dir.path())
        .output()
        .expect("zip is not installed: run `bash tests/ci.sh`");
    assert!(out.status.success());
    std::fs::read(dir.path().join("out.zip")).unwrap()
}

/// A mail with a text part and `bytes` attached as `name`.
pub fn mail_with(subject: &str, text: &str, name: &str, bytes: &[u8]) -> Vec<u8> {
    let word = generate::encoded_word("UTF-8", name.as_bytes());
    generate::eml(
        &[
            format!("Subject: {subject}"),
            "Content-Type: multipart/mixed; boundary=\"b1\"".into(),
        ],
        &generate::multipart(
            "b1",
            &[
                (
                    vec![
                        "Content-Type: text/plain; charset=utf-8".into(),
                        "Content-Transfer-Encoding: 8bit".into(),
                    ],
                    text.as_bytes().to_vec(),
                ),
                generate::attachment_part(
                    &format!("application/octet-stream; name=\"{word}\""),
                    &format!("attachment; filename=\"{word}\""),
                    bytes,
                ),
            ],
        ),
    )
}

/// The link notices in `maildir/new` under `data` as (recipient, subject of the held mail,
/// token), waiting up to 30 s for at least `n`.
pub fn links(data: &Path, n: usize) -> Vec<(String, String, String)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let found: Vec<(String, String, String)> = std::fs::read_dir(data.join("maildir/new"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| std::fs::read(e.path()).ok())
            .filter_map(|b| {
                let m = mail_parser::MessageParser::default().parse(&b)?;
                let subject = m
                    .subject()?
                    .strip_prefix("【パスワード入力のお願い】")?
                    .to_string();
                let to = m.to()?.first()?.address()?.to_string();
                let text = m.body_text(0)?.into_owned();
                let at = text.find(&format!("{PUBLIC_URL}/"))? + PUBLIC_URL.len() + 1;
                Some((to, subject, text.get(at..at + 64)?.to_string()))
            })
            .collect();
        if found.len() >= n || Instant::now() > deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
