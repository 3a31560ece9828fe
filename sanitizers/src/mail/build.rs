//! Writing the converted message from scratch.
//!
//! Owns: header encoding (RFC 2047 for words, RFC 2231 for file names), the text body, the
//! attachment parts, and the choice between UTF-8 and ISO-2022-JP output.
//! Invariants: every header value has CR, LF and other control characters removed before it is
//! written; only the headers named in [`Outgoing`] are written; nothing here copies original
//! MIME: it only ever receives decoded text and rebuilt file bytes.

use base64::Engine;

use crate::policy::OutputCharset;

/// One mailbox: display name and address, both already decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    /// Display name, if any.
    pub name: Option<String>,
    /// The address.
    pub address: String,
}

/// An attachment to write.
#[derive(Debug, Clone)]
pub struct OutPart {
    /// File name (UTF-8).
    pub name: String,
    /// MIME type.
    pub content_type: &'static str,
    /// Bytes (rebuilt by the registry).
    pub bytes: Vec<u8>,
}

/// Everything the new message is made of.
#[derive(Debug, Clone, Default)]
pub struct Outgoing {
    /// From.
    pub from: Vec<Mailbox>,
    /// To.
    pub to: Vec<Mailbox>,
    /// Cc.
    pub cc: Vec<Mailbox>,
    /// Reply-To (only when policy keeps it).
    pub reply_to: Vec<Mailbox>,
    /// Date in RFC 5322 form.
    pub date: Option<String>,
    /// Subject, decoded.
    pub subject: String,
    /// Message-ID without angle brackets.
    pub message_id: Option<String>,
    /// In-Reply-To ids.
    pub in_reply_to: Vec<String>,
    /// References ids.
    pub references: Vec<String>,
    /// X-Mukaika-Id.
    pub mukaika_id: String,
    /// X-Mukaika-Sanitized.
    pub sanitized: String,
    /// Further `X-Mukaika-*` headers mukaika itself adds (release markers); values are
    /// cleaned like every other header value.
    pub extra: Vec<(&'static str, String)>,
    /// The text body.
    pub body: String,
    /// Rebuilt attachments.
    pub attachments: Vec<OutPart>,
}

/// Writes the message. ISO-2022-JP is used only when every header and the body fit it.
pub fn write(msg: &Outgoing, charset: OutputCharset) -> Vec<u8> {
    if charset == OutputCharset::Iso2022Jp {
        if let Some(bytes) = write_with(msg, Charset::Jis) {
            return bytes;
        }
    }
    write_with(msg, Charset::Utf8).unwrap_or_default()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Charset {
    Utf8,
    Jis,
}

fn write_with(msg: &Outgoing, cs: Charset) -> Option<Vec<u8>> {
    let mut h = String::new();
    let mut header = |name: &str, value: String| {
        if !value.is_empty() {
            h.push_str(name);
            h.push_str(": ");
            h.push_str(&value);
            h.push_str("\r\n");
        }
    };
    header("From", mailboxes(&msg.from, cs)?);
    header("To", mailboxes(&msg.to, cs)?);
    header("Cc", mailboxes(&msg.cc, cs)?);
    header("Reply-To", mailboxes(&msg.reply_to, cs)?);
    header("Date", msg.date.as_deref().map(clean).unwrap_or_default());
    header("Subject", encode_words(&clean(&msg.subject), cs)?);
    header(
        "Message-ID",
        msg.message_id
            .as_deref()
            .map(|id| format!("<{}>", clean_id(id)))
            .unwrap_or_default(),
    );
    header("In-Reply-To", ids(&msg.in_reply_to));
    header("References", ids(&msg.references));
    header("MIME-Version", "1.0".into());
    header("X-Mukaika-Id", clean(&msg.mukaika_id));
    header("X-Mukaika-Sanitized", clean(&msg.sanitized));
    for (name, value) in &msg.extra {
        if name.starts_with("X-Mukaika-")
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            header(name, clean(value));
        }
    }

    let (cs_name, cte, body) = body_part(&msg.body, cs)?;
    let mut out = h.into_bytes();
    if msg.attachments.is_empty() {
        out.extend_from_slice(format!("Content-Type: text/plain; charset={cs_name}\r\nContent-Transfer-Encoding: {cte}\r\n\r\n").as_bytes());
        out.extend_from_slice(&body);
        return Some(out);
    }
    let boundary = format!(
        "=_mukaika_{}",
        clean_id(&msg.mukaika_id).replace(['@', '<', '>'], "")
    );
    out.extend_from_slice(format!("Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\nThis is a MIME message converted by mukaika.\r\n").as_bytes());
    out.extend_from_slice(format!("--{boundary}\r\nContent-Type: text/plain; charset={cs_name}\r\nContent-Transfer-Encoding: {cte}\r\n\r\n").as_bytes());
    out.extend_from_slice(&body);
    for part in &msg.attachments {
        let name = clean(&part.name);
        out.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Type: {}; name=\"{}\"\r\nContent-Disposition: attachment; filename*=UTF-8''{}\r\nContent-Transfer-Encoding: base64\r\n\r\n",
                part.content_type,
                encode_words(&name, Charset::Utf8).unwrap_or_default().replace('"', ""),
                percent(&name)
            )
            .as_bytes(),
        );
        out.extend_from_slice(&base64_lines(&part.bytes));
    }
    out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    Some(out)
}

fn body_part(text: &str, cs: Charset) -> Option<(&'static str, &'static str, Vec<u8>)> {
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    match cs {
        Charset::Utf8 => Some((
            "UTF-8",
            "base64",
            base64_lines(text.replace('\n', "\r\n").as_bytes()),
        )),
        Charset::Jis => {
            let mut out = Vec::new();
            for line in text.split('\n') {
                let encoded = jis(line)?;
                if encoded.len() > 990 {
                    return None;
                }
                out.extend_from_slice(&encoded);
                out.extend_from_slice(b"\r\n");
            }
            Some(("ISO-2022-JP", "7bit", out))
        }
    }
}

/// Encodes with ISO-2022-JP, or None if a character does not fit.
fn jis(text: &str) -> Option<Vec<u8>> {
    let (bytes, _, had_errors) = encoding_rs::ISO_2022_JP.encode(text);
    (!had_errors).then(|| bytes.into_owned())
}

fn base64_lines(bytes: &[u8]) -> Vec<u8> {
    let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
    let mut out = Vec::with_capacity(encoded.len() + encoded.len() / 38 + 2);
    for chunk in encoded.as_bytes().chunks(76) {
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Removes CR, LF and other control characters from a header value.
fn clean(value: &str) -> String {
    value
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_string()
}

fn clean_id(id: &str) -> String {
    clean(id)
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '<' && *c != '>')
        .collect()
}

fn ids(list: &[String]) -> String {
    list.iter()
        .map(|id| format!("<{}>", clean_id(id)))
        .collect::<Vec<_>>()
        .join(" ")
}

fn mailboxes(list: &[Mailbox], cs: Charset) -> Option<String> {
    let mut out = Vec::new();
    for m in list {
        let address: String = clean(&m.address)
            .chars()
            .filter(|c| !matches!(c, '<' | '>' | ',' | ' ' | '"'))
            .collect();
        let name = m
            .name
            .as_deref()
            .map(clean)
            .filter(|n| !n.is_empty() && *n != address);
        out.push(match name {
            Some(n) if n.is_ascii() && !n.contains("=?") => {
                format!("\"{}\" <{address}>", n.replace(['"', '\\'], ""))
            }
            Some(n) => format!("{} <{address}>", encode_words(&n, cs)?),
            None => format!("<{address}>"),
        });
    }
    Some(out.join(",\r\n "))
}

/// RFC 2047 encoded words (B encoding), each at most 75 characters, split at character
/// boundaries and folded. ASCII-only text is written as is, unless it holds `=?` (a client
/// would decode that as an encoded-word of its own — text that decoded to `=?…=0D=0A…?=` must
/// reach the reader as those characters, not as a new header line) or is too long for one line.
fn encode_words(text: &str, cs: Charset) -> Option<String> {
    if text.is_ascii() && !text.contains("=?") && text.len() <= 900 {
        return Some(text.to_string());
    }
    let (label, max_input) = match cs {
        Charset::Utf8 => ("UTF-8", 45),
        // Each chunk's escape sequences cost bytes too; stay well inside 75 characters.
        Charset::Jis => ("ISO-2022-JP", 36),
    };
    let mut words = Vec::new();
    let mut chunk = String::new();
    let mut flush = |chunk: &mut String| -> Option<()> {
        if chunk.is_empty() {
            return Some(());
        }
        let bytes = match cs {
            Charset::Utf8 => chunk.as_bytes().to_vec(),
            Charset::Jis => jis(chunk)?,
        };
        words.push(format!(
            "=?{label}?B?{}?=",
            base64::engine::general_purpose::STANDARD.encode(bytes)
        ));
        chunk.clear();
        Some(())
    };
    for c in text.chars() {
        let cost = match cs {
            Charset::Utf8 => c.len_utf8(),
            Charset::Jis => 2,
        };
        let current = match cs {
            Charset::Utf8 => chunk.len(),
            Charset::Jis => chunk.chars().count() * 2 + 6,
        };
        if current + cost > max_input {
            flush(&mut chunk)?;
        }
        chunk.push(c);
    }
    flush(&mut chunk)?;
    Some(words.join("\r\n "))
}

/// RFC 2231 / RFC 5987 percent-encoding of a UTF-8 file name.
fn percent(name: &str) -> String {
    name.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_words_stay_short_and_split_on_characters() {
        let subject = "重要なお知らせ：令和八年度の予算編成について（架空）".repeat(2);
        let encoded = encode_words(&subject, Charset::Utf8).unwrap();
        for word in encoded.split("\r\n ") {
            assert!(word.len() <= 75, "{word}");
        }
        assert!(!encoded.contains('\n') || encoded.contains("\r\n "));
    }

    #[test]
    fn header_values_lose_line_breaks() {
        let msg = Outgoing {
            subject: "a\r\nBcc: victim@example.invalid".into(),
            mukaika_id: "id1".into(),
            body: "本文".into(),
            ..Outgoing::default()
        };
        let out = String::from_utf8(write(&msg, OutputCharset::Utf8)).unwrap();
        assert!(
            out.contains("Subject: a  Bcc: victim@example.invalid\r\n"),
            "{out}"
        );
        assert!(!out.contains("\r\nBcc:"));
    }

    #[test]
    fn falls_back_to_utf8_when_iso_2022_jp_cannot_hold_a_character() {
        let mut msg = Outgoing {
            subject: "お知らせ".into(),
            mukaika_id: "x".into(),
            body: "本文です".into(),
            ..Outgoing::default()
        };
        let jis = String::from_utf8(write(&msg, OutputCharset::Iso2022Jp)).unwrap();
        assert!(
            jis.contains("charset=ISO-2022-JP") && jis.contains("=?ISO-2022-JP?B?"),
            "{jis}"
        );
        msg.body.push('😀');
        let utf8 = String::from_utf8(write(&msg, OutputCharset::Iso2022Jp)).unwrap();
        assert!(
            utf8.contains("charset=UTF-8") && utf8.contains("=?UTF-8?B?"),
            "{utf8}"
        );
    }
}
