//! Fuzzes the SMTP session state machine, the first code internet bytes reach.
//!
//! The input's first byte picks the bare-line-ending mode and how the rest is cut into
//! reads (a client may split anything anywhere); the rest is the client's side of the
//! conversation. Checked on every run: no panic; a stored message holds only CRLF line
//! endings (whatever smuggling form was sent, CVE-2023-51764/5/6), fits the size limit and
//! has at most the allowed recipients; every reply is CRLF-terminated lines.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mukaika::config::BareLineEndings;
use mukaika::source::smtp::budget::MemoryBudget;
use mukaika::source::smtp::session::{Action, Session, SessionConfig};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, client)) = data.split_first() else {
        return;
    };
    let config = SessionConfig {
        hostname: "mukaika.example.lg.jp".into(),
        max_message_bytes: 4096,
        max_recipients: 3,
        max_line_bytes: 1000,
        accepted_domains: Vec::new(),
        bare_line_endings: if mode & 1 == 0 {
            BareLineEndings::Reject
        } else {
            BareLineEndings::Normalize
        },
        starttls: mode & 2 != 0,
        hard_error_limit: 20,
        // Room for several messages at the size limit: the budget is not what is fuzzed here.
        memory: MemoryBudget::new(1 << 20),
    };
    let chunk = usize::from(mode >> 2) + 1;
    let (mut session, greeting) = Session::new(config);
    check_reply(&greeting);
    let mut pending: Vec<&[u8]> = client.chunks(chunk).collect();
    pending.reverse();
    let mut stored = 0;
    while let Some(bytes) = pending.pop() {
        let mut actions = session.feed(bytes);
        // After a Store the session buffers; feeding nothing drains what it buffered.
        loop {
            let mut again = false;
            for action in actions {
                match action {
                    Action::Reply(reply) => check_reply(&reply),
                    Action::Store(envelope, message) => {
                        check_message(&message);
                        assert!(envelope.rcpt_to.len() <= 3);
                        assert!(!envelope.rcpt_to.is_empty());
                        stored += 1;
                        check_reply(&session.message_stored(Ok(format!("Q{stored}"))));
                        again = true;
                    }
                    Action::StartTls => session.tls_established(),
                    Action::Close => return,
                }
            }
            if !again {
                break;
            }
            actions = session.feed(&[]);
        }
    }
});

fn check_message(message: &[u8]) {
    assert!(message.len() <= 4096, "over the size limit");
    for (i, &b) in message.iter().enumerate() {
        match b {
            b'\r' => assert_eq!(message.get(i + 1), Some(&b'\n'), "bare CR stored"),
            b'\n' => assert_eq!(
                i.checked_sub(1).map(|p| message[p]),
                Some(b'\r'),
                "bare LF stored"
            ),
            _ => {}
        }
    }
}

fn check_reply(reply: &str) {
    assert!(reply.ends_with("\r\n"), "{reply:?}");
    for line in reply.trim_end_matches("\r\n").split("\r\n") {
        assert!(!line.contains(['\r', '\n']), "{reply:?}");
        assert!(
            line.len() >= 3 && line.as_bytes()[..3].iter().all(u8::is_ascii_digit),
            "{reply:?}"
        );
    }
}
