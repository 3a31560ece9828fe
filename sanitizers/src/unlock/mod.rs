//! Unlocking password-protected attachments (PPAP): ZIP (ZipCrypto, WinZip AES), 7z (AES),
//! PDF (user password) and OOXML `EncryptedPackage` (ECMA-376 agile and standard).
//!
//! Owns: [`Password`] (a secret wiped on drop that never prints), [`encrypted_listing`] (what
//! an encrypted container shows without its password) and [`unlock`] (the decrypted content,
//! as bytes the registry then sanitizes as if they had arrived in the clear).
//! Invariants:
//! - A wrong password never yields output. ZipCrypto's one-byte header check passes one wrong
//!   password in 256, so a ZIP member counts as unlocked only when its CRC-32 matches (AES
//!   members: when their HMAC does); a 7z member only with its CRC; OOXML only when the
//!   password verifier matches and, when present, the data-integrity HMAC.
//! - Limits (input size, member count, expanded size, ratio) hold while decrypting: a bomb
//!   inside an encrypted container stops at the limit, not after inflating.
//! - The unlocked bytes are never a deliverable: they go through the whole registry.
//!
//! Must never: put a password in an error, a listing, a log line or a `Debug` output; return
//! partially decrypted content; decrypt legacy doc/xls/ppt RC4 (no maintained crate does it
//! for all three; they stay held as `unsupported`).

mod office;
mod pdf;
mod sevenz;
mod zipfile;

use std::fmt;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::kind::FileKind;
use crate::policy::Limits;

/// At most this many members are listed (the rest is counted in `members_total`).
pub const MAX_LISTED_MEMBERS: usize = 1000;

/// A password to try. The secret is wiped from memory on drop; `Debug` and `Display` print
/// `***`, and it has no serde implementation, so it cannot end up in a report or a log.
#[derive(Clone)]
pub struct Password {
    secret: Zeroizing<String>,
}

impl Password {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Self {
            secret: Zeroizing::new(secret.into()),
        }
    }

    /// True when the secret is empty.
    pub fn is_empty(&self) -> bool {
        self.secret.is_empty()
    }

    /// The secret, for handing to a decryptor only.
    pub(crate) fn expose(&self) -> &str {
        &self.secret
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

impl fmt::Display for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Which kind of container is encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Container {
    /// A ZIP archive with at least one encrypted member.
    Zip,
    /// A 7z archive with an AES coder (content, headers or both).
    SevenZip,
    /// A PDF that needs a non-empty user password.
    Pdf,
    /// An Office Open XML document inside a CFB `EncryptedPackage`.
    Ooxml,
    /// A legacy Word, Excel or PowerPoint file with its own encryption.
    LegacyOffice,
}

/// How it is encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// The traditional PKWARE stream cipher.
    ZipCrypto,
    /// WinZip AES (AE-1/AE-2).
    WinzipAes,
    /// 7z AES-256 with SHA-256 key derivation.
    SevenZipAes,
    /// PDF standard security handler with RC4 (revisions 2–4).
    PdfRc4,
    /// PDF standard security handler with AES-128 (revision 4, AESV2).
    PdfAes128,
    /// PDF standard security handler with AES-256 (revisions 5–6).
    PdfAes256,
    /// ECMA-376 agile encryption (Office 2010 and later).
    OoxmlAgile,
    /// ECMA-376 standard encryption (Office 2007).
    OoxmlStandard,
    /// ECMA-376 extensible or other encryption mukaika does not decrypt.
    OoxmlOther,
    /// Legacy binary Office encryption (RC4, CryptoAPI RC4 or XOR obfuscation).
    LegacyOffice,
}

/// One member of an encrypted archive, as far as it can be seen without the password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedMember {
    /// The member's name (UTF-8, or CP932 as Japanese Windows archivers write it).
    pub name: String,
    /// Its expanded size as the archive declares it.
    pub size: u64,
    /// True when this member needs the password.
    pub encrypted: bool,
}

/// What an encrypted container shows without its password. Holds no secret: it is written
/// into reports and shown to staff deciding whether to ask for the password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncryptedListing {
    /// The container.
    pub container: Container,
    /// The encryption method (for a ZIP that mixes methods, the first encrypted member's).
    pub method: Method,
    /// False when the names are encrypted too (7z `-mhe=on`) or the format has no members.
    pub names_visible: bool,
    /// The members (at most [`MAX_LISTED_MEMBERS`]).
    pub members: Vec<ListedMember>,
    /// How many members the archive has (0 when not visible).
    pub members_total: u64,
    /// True when [`unlock`] can decrypt this method.
    pub unlockable: bool,
}

/// The decrypted content of an encrypted container.
#[derive(Clone, PartialEq, Eq)]
pub struct Unlocked {
    /// The content in the clear: a new unencrypted ZIP for ZIP and 7z, the PDF re-saved
    /// without `/Encrypt`, the `.docx`/`.xlsx`/`.pptx` package for OOXML.
    pub bytes: Vec<u8>,
    /// The kind of `bytes` as detected from their content.
    pub kind: FileKind,
    /// The extension the unlocked file should carry (`zip` for a 7z input).
    pub extension: &'static str,
    /// The container that was unlocked.
    pub container: Container,
    /// Its encryption method.
    pub method: Method,
    /// How many members (or, for PDF and OOXML, documents) were verified by CRC, HMAC or
    /// password verifier after decryption.
    pub members_verified: u64,
}

impl fmt::Debug for Unlocked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Unlocked")
            .field("bytes", &self.bytes.len())
            .field("kind", &self.kind)
            .field("extension", &self.extension)
            .field("container", &self.container)
            .field("method", &self.method)
            .field("members_verified", &self.members_verified)
            .finish()
    }
}

const SEVEN_ZIP_MAGIC: &[u8] = b"7z\xBC\xAF\x27\x1C";
const CFB_MAGIC: &[u8] = b"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1";

fn is_zip(input: &[u8]) -> bool {
    input.starts_with(b"PK\x03\x04") || input.starts_with(b"PK\x05\x06")
}

fn is_pdf(input: &[u8]) -> bool {
    let head = input.get(..input.len().min(1024)).unwrap_or(input);
    memchr::memmem::find(head, b"%PDF-").is_some()
}

/// Detects an encrypted container and lists what it shows without the password. `None` for
/// anything that is not encrypted (or not parseable enough to tell).
pub fn encrypted_listing(input: &[u8]) -> Option<EncryptedListing> {
    // The parsers read hostile input: a panic in one loses the listing, nothing else.
    std::panic::catch_unwind(|| listing_of(input))
        .ok()
        .flatten()
}

fn listing_of(input: &[u8]) -> Option<EncryptedListing> {
    if is_zip(input) {
        zipfile::listing(input)
    } else if input.starts_with(SEVEN_ZIP_MAGIC) {
        sevenz::listing(input)
    } else if input.starts_with(CFB_MAGIC) {
        office::listing(input)
    } else if is_pdf(input) {
        pdf::listing(input)
    } else {
        None
    }
}

/// Decrypts an encrypted container with `password`, within `limits`.
///
/// # Errors
/// - [`Error::is_wrong_password`] when the password does not open it (no byte of output is
///   returned, not even of members that did decrypt);
/// - `unsupported` for an input that is not encrypted, or a method mukaika does not decrypt
///   (legacy doc/xls/ppt RC4, ECMA-376 extensible, RC4 OOXML standard encryption);
/// - `limit-exceeded` for the input size, member count, expanded size or ratio;
/// - `malformed` when the structure does not parse or fails an integrity check that the
///   password verifier already passed.
pub fn unlock(input: &[u8], password: &Password, limits: &Limits) -> Result<Unlocked> {
    if input.len() as u64 > limits.max_input_bytes {
        return Err(Error::limit_exceeded(format!(
            "input is {} bytes, limit is {}",
            input.len(),
            limits.max_input_bytes
        )));
    }
    // The parsers and decoders read hostile input: a panic is a failure like any other.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        unlock_checked(input, password, limits)
    }))
    .unwrap_or_else(|_| Err(Error::internal("unlocking panicked")))
}

fn unlock_checked(input: &[u8], password: &Password, limits: &Limits) -> Result<Unlocked> {
    if is_zip(input) {
        zipfile::unlock(input, password, limits)
    } else if input.starts_with(SEVEN_ZIP_MAGIC) {
        sevenz::unlock(input, password, limits)
    } else if input.starts_with(CFB_MAGIC) {
        office::unlock(input, password, limits)
    } else if is_pdf(input) {
        pdf::unlock(input, password, limits)
    } else {
        Err(Error::unsupported(
            "not an encrypted container mukaika can unlock",
        ))
    }
}

/// The kind of decrypted bytes, from their content alone.
fn detected_kind(bytes: &[u8]) -> FileKind {
    crate::detect::detect(
        bytes,
        &crate::detect::Declared {
            name: None,
            mime: None,
        },
    )
    .kind
}

/// Decodes a stored archive name: UTF-8 when valid, else CP932 (Japanese Windows archivers
/// write it without the UTF-8 flag), else the archive library's reading.
fn decode_name(raw: &[u8], fallback: &str) -> String {
    if let Ok(name) = std::str::from_utf8(raw) {
        return name.to_string();
    }
    encoding_rs::SHIFT_JIS
        .decode_without_bom_handling_and_without_replacement(raw)
        .map(std::borrow::Cow::into_owned)
        .unwrap_or_else(|| fallback.to_string())
}

/// A writer for the unencrypted ZIP that ZIP and 7z inputs are unlocked into.
struct ClearZip {
    writer: zip::ZipWriter<std::io::Cursor<Vec<u8>>>,
}

impl ClearZip {
    fn new() -> Self {
        Self {
            writer: zip::ZipWriter::new(std::io::Cursor::new(Vec::new())),
        }
    }

    fn options() -> zip::write::SimpleFileOptions {
        zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .large_file(false)
    }

    fn directory(&mut self, name: &str) -> Result<()> {
        self.writer
            .add_directory(name, Self::options())
            .map_err(|e| Error::malformed(format!("directory {name}: {e}")))
    }

    fn file(&mut self, name: &str, bytes: &[u8]) -> Result<()> {
        use std::io::Write;
        let options = Self::options().large_file(bytes.len() as u64 >= zip::ZIP64_BYTES_THR);
        self.writer
            .start_file(name, options)
            .map_err(|e| Error::malformed(format!("member {name}: {e}")))?;
        self.writer
            .write_all(bytes)
            .map_err(|e| Error::internal(format!("writing member {name}: {e}")))
    }

    fn finish(self) -> Result<Vec<u8>> {
        self.writer
            .finish()
            .map(std::io::Cursor::into_inner)
            .map_err(|e| Error::internal(format!("finishing the unlocked ZIP: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_never_prints_its_secret() {
        let p = Password::new("s3cret-Pa55");
        assert_eq!(format!("{p}"), "***");
        assert!(!format!("{p:?}").contains("s3cret"));
        assert!(!format!("{p:#?}").contains("s3cret"));
    }

    #[test]
    fn plain_bytes_are_not_an_encrypted_container() {
        assert!(encrypted_listing(b"hello").is_none());
        let e = unlock(b"hello", &Password::new("x"), &Limits::default()).unwrap_err();
        assert!(e.is_unsupported());
    }
}
