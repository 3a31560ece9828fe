//! The SMTP envelope of one message: who said they send it and to whom.
//!
//! Owns: the record every layer passes along with a message (spool metadata, notices,
//! releases, relay).
//! Invariant: addresses are as the SMTP session accepted them (checked there); nothing here
//! parses or trusts message headers.

/// The envelope of one message.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Envelope {
    /// HELO/EHLO name.
    pub helo: String,
    /// MAIL FROM address ("" for the null sender).
    pub mail_from: String,
    /// RCPT TO addresses.
    pub rcpt_to: Vec<String>,
    /// 8BITMIME was declared.
    pub eight_bit: bool,
    /// SMTPUTF8 was declared.
    pub smtputf8: bool,
}
