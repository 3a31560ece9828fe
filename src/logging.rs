//! The service's log lines: what `mukaika serve` writes, one event a line.
//!
//! Owns: the writer every log line passes through ([`escaping`]).
//! Invariants: a written event is one line — every C0 and C1 control, DEL and bidirectional
//! control inside it is escaped (`\u{a}` in text, `\u000a` in JSON), whichever field carried it,
//! so a file or mail name with a newline cannot forge a log line, set a terminal's title or
//! reorder a line shown in a viewer. JSON lines stay valid JSON with the same values.
//! Must never: drop or reorder an event's text; only the hidden characters change form.

use std::borrow::Cow;
use std::io::{self, Write};

use mukaika_sanitizers::names::{escape_controls, is_hidden_control};
use tracing_subscriber::fmt::MakeWriter;

/// `text` (JSON) with every hidden control written as a JSON `\uXXXX` escape. serde_json already
/// escapes C0 controls; DEL, C1 controls and bidi controls it leaves raw, and they can only
/// stand inside a string, where the escape means the same character.
pub fn escape_json(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_hidden_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if is_hidden_control(c) {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Wraps a log writer so every event it writes stays one line with no hidden characters.
/// `json`: the lines are JSON (escaped the JSON way). Text lines must be written without ANSI
/// colours, since the escape character of a colour cannot be told from one in a field.
pub fn escaping<M>(inner: M, json: bool) -> Escaping<M> {
    Escaping { inner, json }
}

/// See [`escaping`].
pub struct Escaping<M> {
    inner: M,
    json: bool,
}

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for Escaping<M> {
    type Writer = EscapingWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        EscapingWriter {
            inner: self.inner.make_writer(),
            json: self.json,
        }
    }
}

/// One event's writer (see [`escaping`]).
pub struct EscapingWriter<W> {
    inner: W,
    json: bool,
}

impl<W: Write> Write for EscapingWriter<W> {
    /// Takes the whole buffer: `tracing-subscriber` formats an event and writes it with one
    /// `write_all`, so `buf` is the whole event and its final newline is the only one kept.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let (body, end) = match text.strip_suffix('\n') {
            Some(body) => (body, "\n"),
            None => (text.as_ref(), ""),
        };
        let body = if self.json {
            escape_json(body)
        } else {
            escape_controls(body)
        };
        self.inner.write_all(body.as_bytes())?;
        self.inner.write_all(end.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn logged(json: bool) -> String {
        let captured = Captured::default();
        let sink = captured.clone();
        let writer = escaping(move || sink.clone(), json);
        let hostile =
            "x.txt\n2026-12-04T00:00:00Z  INFO mukaika: FORGED\r\u{1b}]0;title\u{7}\u{202e}txt.exe";
        if json {
            let subscriber = tracing_subscriber::fmt()
                .json()
                .with_writer(writer)
                .finish();
            tracing::subscriber::with_default(subscriber, || {
                tracing::info!(path = %hostile, "imported");
            });
        } else {
            let subscriber = tracing_subscriber::fmt()
                .with_ansi(false)
                .with_writer(writer)
                .finish();
            tracing::subscriber::with_default(subscriber, || {
                tracing::info!(path = %hostile, "imported");
            });
        }
        let bytes = captured.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn a_name_with_newlines_escapes_and_bidi_stays_on_its_own_log_line() {
        for json in [false, true] {
            let out = logged(json);
            assert_eq!(out.matches('\n').count(), 1, "{out}");
            assert!(out.ends_with('\n'));
            let line = out.trim_end_matches('\n');
            assert!(!line.chars().any(is_hidden_control), "{line:?}");
            assert!(line.contains("FORGED"), "{line}");
            if json {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                assert!(v["fields"]["path"]
                    .as_str()
                    .unwrap()
                    .contains("\u{202e}txt.exe"));
            } else {
                assert!(line.contains("x.txt\\u{a}2026"), "{line}");
            }
        }
    }
}
