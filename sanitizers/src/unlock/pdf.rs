//! PDF with a user password → the same document re-saved without `/Encrypt`.
//!
//! Owns: telling a PDF that needs a password from one that opens with the empty password, and
//! decrypting it with lopdf's standard security handler (RC4, AES-128, AES-256).
//! Invariants: lopdf authenticates the password (user or owner) before decrypting anything;
//! the saved document is re-opened without a password and must not be encrypted; stream
//! sizes stay under the PDF stream limit while loading.
//! Must never: return a document that still needs a password, or one saved from a failed
//! authentication.

use lopdf::{Document, LoadOptions, Object};

use super::{Container, EncryptedListing, Method, Password, Unlocked};
use crate::error::{Error, Result};
use crate::kind::FileKind;
use crate::policy::Limits;

/// Stream limit while only listing (no content is kept).
const LISTING_STREAM_BYTES: usize = 64 << 20;

fn method(doc: &Document) -> Method {
    let dict = doc.trailer.get(b"Encrypt").ok().and_then(|o| match o {
        Object::Reference(id) => doc.get_dictionary(*id).ok(),
        Object::Dictionary(d) => Some(d),
        _ => None,
    });
    let version = dict
        .and_then(|d| d.get(b"V").ok())
        .and_then(|v| v.as_i64().ok())
        .unwrap_or(0);
    let aesv2 = dict
        .and_then(|d| d.get(b"CF").ok())
        .and_then(|cf| cf.as_dict().ok())
        .is_some_and(|cf| {
            cf.iter().any(|(_, f)| {
                f.as_dict()
                    .ok()
                    .and_then(|f| f.get(b"CFM").ok())
                    .and_then(|m| m.as_name().ok())
                    == Some(b"AESV2".as_slice())
            })
        });
    match version {
        v if v >= 5 => Method::PdfAes256,
        4 if aesv2 => Method::PdfAes128,
        _ => Method::PdfRc4,
    }
}

pub(super) fn listing(input: &[u8]) -> Option<EncryptedListing> {
    let options = LoadOptions {
        max_decompressed_size: Some(LISTING_STREAM_BYTES),
        ..LoadOptions::default()
    };
    // Without a password lopdf tries the empty one; a document that still has /Encrypt after
    // loading needs a user password.
    let doc = Document::load_mem_with_options(input, options).ok()?;
    if !doc.trailer.has(b"Encrypt") {
        return None;
    }
    Some(EncryptedListing {
        container: Container::Pdf,
        method: method(&doc),
        names_visible: false,
        members: Vec::new(),
        members_total: 0,
        unlockable: true,
    })
}

pub(super) fn unlock(input: &[u8], password: &Password, limits: &Limits) -> Result<Unlocked> {
    let Some(listed) = listing(input) else {
        return Err(Error::unsupported(
            "the PDF does not need a password (or does not parse)",
        ));
    };
    let options = LoadOptions {
        password: Some(password.expose().to_string()),
        max_decompressed_size: Some(
            usize::try_from(limits.max_pdf_stream_bytes).unwrap_or(usize::MAX),
        ),
        ..LoadOptions::default()
    };
    let mut doc = Document::load_mem_with_options(input, options).map_err(|e| match e {
        lopdf::Error::InvalidPassword => Error::wrong_password("the PDF password does not match"),
        other => {
            let text = other.to_string();
            if text.contains("limit") {
                Error::limit_exceeded(format!("PDF stream over the size limit: {text}"))
            } else {
                Error::malformed(format!("PDF does not decrypt: {text}"))
            }
        }
    })?;
    if doc.trailer.has(b"Encrypt") {
        return Err(Error::wrong_password("the PDF password does not match"));
    }
    if doc.objects.len() as u64 > limits.max_pdf_objects {
        return Err(Error::limit_exceeded(format!(
            "{} objects in the PDF",
            doc.objects.len()
        )));
    }
    // Saved in the clear: with no encryption state lopdf writes no /Encrypt. Decryption
    // dropped the /Encrypt object, and the save writes one classic xref table: the trailer's
    // /Size and pointers into the old file would be stale.
    doc.encryption_state = None;
    let highest = doc.objects.keys().map(|(n, _)| *n).max().unwrap_or(0);
    doc.max_id = highest;
    doc.trailer.set("Size", i64::from(highest) + 1);
    for stale in [b"Prev".as_slice(), b"XRefStm", b"Encrypt"] {
        doc.trailer.remove(stale);
    }
    let mut bytes = Vec::new();
    doc.save_to(&mut bytes)
        .map_err(|e| Error::internal(format!("saving the decrypted PDF: {e}")))?;
    let reopened = Document::load_mem(&bytes)
        .map_err(|e| Error::internal(format!("the decrypted PDF does not re-open: {e}")))?;
    if reopened.trailer.has(b"Encrypt") || reopened.encryption_state.is_some() {
        return Err(Error::internal("the decrypted PDF is still encrypted"));
    }
    Ok(Unlocked {
        bytes,
        kind: FileKind::Pdf,
        extension: "pdf",
        container: Container::Pdf,
        method: listed.method,
        members_verified: 1,
    })
}
