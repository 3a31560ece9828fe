//! Lose nothing: the gateway is killed with SIGKILL at arbitrary moments while mail flows and
//! restarted; every message that got a 250 is delivered (converted) at least once afterwards.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start(config: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_mukaika"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Sends one message; true only if the server answered 250 to the end of DATA.
fn send(port: u16, id: usize) -> bool {
    let attempt = || -> std::io::Result<bool> {
        let s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut r = BufReader::new(s.try_clone()?);
        let mut w = s;
        let mut reply = || -> std::io::Result<u16> {
            loop {
                let mut line = String::new();
                if r.read_line(&mut line)? == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                if line.as_bytes().get(3) != Some(&b'-') {
                    return Ok(line[..3].parse().unwrap_or(0));
                }
            }
        };
        if reply()? != 220 {
            return Ok(false);
        }
        for (cmd, want) in [
            (&b"EHLO t\r\n"[..], 250),
            (b"MAIL FROM:<s@example.invalid>\r\n", 250),
            (b"RCPT TO:<r@city.example.invalid>\r\n", 250),
            (b"DATA\r\n", 354),
        ] {
            w.write_all(cmd)?;
            if reply()? != want {
                return Ok(false);
            }
        }
        let body = format!("From: s@example.invalid\r\nTo: r@city.example.invalid\r\nSubject: durability {id}\r\nMessage-ID: <dur-{id}@example.invalid>\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\n本文 {id}\r\n.\r\n");
        w.write_all(body.as_bytes())?;
        Ok(reply()? == 250)
    };
    attempt().unwrap_or(false)
}

#[test]
fn every_acknowledged_message_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("mukaika.toml");
    let text = mukaika::config::DEFAULT_TOML
        .replace(
            "listen = \"127.0.0.1:2525\"",
            &format!("listen = \"127.0.0.1:{port}\""),
        )
        .replace(
            "dir = \"./data\"",
            &format!("dir = \"{}\"", dir.path().join("data").display()),
        )
        .replace("min_free_bytes = 104857600", "min_free_bytes = 1");
    std::fs::write(&config, text).unwrap();

    let child = std::sync::Arc::new(std::sync::Mutex::new(start(&config)));
    let sending = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    // The killer: SIGKILL at pseudo-random moments (mid-intake, mid-fsync, mid-conversion),
    // then restart, while the client keeps sending.
    let killer = {
        let (child, sending, config) = (
            std::sync::Arc::clone(&child),
            std::sync::Arc::clone(&sending),
            config.clone(),
        );
        std::thread::spawn(move || {
            let mut rng: u64 = 0x2545_F491_4F6C_DD1D;
            let mut kills = 0;
            while kills < 6 && sending.load(std::sync::atomic::Ordering::Relaxed) {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                std::thread::sleep(Duration::from_millis(40 + rng % 160));
                let mut c = child.lock().unwrap();
                c.kill().unwrap(); // SIGKILL
                c.wait().unwrap();
                kills += 1;
                std::thread::sleep(Duration::from_millis(rng % 50));
                *c = start(&config);
            }
            kills
        })
    };
    let mut acked = Vec::new();
    let total = 240;
    for id in 0..total {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if send(port, id) {
                acked.push(id);
                break;
            }
            if Instant::now() > deadline {
                break; // never acknowledged: the client would retry later; not counted
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    sending.store(false, std::sync::atomic::Ordering::Relaxed);
    let kills = killer.join().unwrap();
    let mut child = std::sync::Arc::try_unwrap(child)
        .ok()
        .unwrap()
        .into_inner()
        .unwrap();
    assert!(kills >= 3, "the run must include several kills ({kills})");
    // Let the last instance drain everything, then stop it.
    let maildir = dir.path().join("data/maildir/new");
    let deadline = Instant::now() + Duration::from_secs(60);
    let delivered_ids = || -> std::collections::HashMap<usize, usize> {
        let mut seen = std::collections::HashMap::new();
        for entry in std::fs::read_dir(&maildir).into_iter().flatten().flatten() {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            assert!(
                text.contains("X-Mukaika-Id: "),
                "only converted mail is ever delivered"
            );
            if let Some(id) = text
                .split("<dur-")
                .nth(1)
                .and_then(|t| t.split('@').next())
                .and_then(|n| n.parse().ok())
            {
                *seen.entry(id).or_insert(0) += 1;
            }
        }
        seen
    };
    while Instant::now() < deadline && !acked.iter().all(|id| delivered_ids().contains_key(id)) {
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();
    let seen = delivered_ids();
    let lost: Vec<_> = acked.iter().filter(|id| !seen.contains_key(id)).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged messages lost after {kills} kills: {lost:?}",
        lost.len()
    );
    assert!(
        acked.len() >= total * 9 / 10,
        "only {} of {total} were acknowledged",
        acked.len()
    );
    let audit = mukaika::audit::verify(&dir.path().join("data/audit"), None, None).unwrap();
    assert!(
        audit.intact(),
        "the audit chain survives the kills: {:?}",
        audit.problem
    );
    println!(
        "acknowledged {} of {total}, {kills} SIGKILLs, duplicates {}",
        acked.len(),
        seen.values().filter(|n| **n > 1).count()
    );
}
