//! Nothing mukaika writes is readable by other local users, whatever umask it was started
//! with: the README's plain `mukaika serve` under the usual umask 022 gives a data directory
//! 0750 and files 0640 at most (review.db holds password hashes, the quarantine the originals
//! only an approver may download, the audit log and the spool whole messages).

use crate::support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `mukaika args…` started by a shell whose umask is 022.
fn under_umask_022(args: &[&str]) -> Command {
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg("umask 022 && exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_mukaika"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o7777
}

/// Every file and folder below `dir` with group write or any access for other users.
fn too_open(dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if mode(&path) & 0o027 != 0 {
            out.push(format!("{} {:o}", path.display(), mode(&path)));
        }
        if entry.file_type().unwrap().is_dir() {
            too_open(&path, out);
        }
    }
}

fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_service_started_under_umask_022_writes_nothing_other_users_can_read() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let port = support::free_port();
    let config = root.path().join("mukaika.toml");
    std::fs::write(
        &config,
        support::config_text(&data, &format!("127.0.0.1:{port}"))
            .replace("settle_secs = 5", "settle_secs = 0")
            .replace("rescan_secs = 30", "rescan_secs = 1"),
    )
    .unwrap();
    let config = config.to_str().unwrap();

    let added = under_umask_022(&[
        "admin", "user", "add", "aiko", "--role", "approver", "--config", config,
    ])
    .status()
    .unwrap();
    assert!(added.success());
    let mut serve = under_umask_022(&["serve", "--config", config])
        .spawn()
        .unwrap();
    wait_until("the listener", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let (mut smtp, greeting) = support::Client::connect(([127, 0, 0, 1], port).into());
    assert_eq!(greeting, 220);
    assert_eq!(smtp.send(b"EHLO client.invalid\r\n"), 250);
    assert_eq!(
        smtp.mail(
            "soumu@city.example.invalid",
            b"Subject: notice\r\n\r\nsynthetic body\r\n"
        ),
        250
    );
    std::fs::write(
        data.join("import/setup.exe"),
        b"MZ\x90\x00 synthetic program",
    )
    .unwrap();
    wait_until("the mail's delivery", || {
        std::fs::read_dir(data.join("maildir/new")).is_ok_and(|d| d.count() > 0)
    });
    wait_until("the program's quarantine", || {
        !data.join("import/setup.exe").exists()
    });
    let pid = rustix::process::Pid::from_raw(serve.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    assert!(serve.wait().unwrap().success());

    assert_eq!(mode(&data), 0o750, "the data directory");
    assert!(data.join("review.db").exists());
    assert!(data.join("spool").exists());
    assert!(data.join("quarantine").exists());
    assert!(data.join("audit").exists());
    let mut open = Vec::new();
    too_open(&data, &mut open);
    assert!(open.is_empty(), "readable by other users: {open:#?}");
}
