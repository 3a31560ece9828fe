//! ZIP with ZipCrypto or WinZip AES members → a new ZIP without encryption.
//!
//! Owns: listing a ZIP's members without the password, and decrypting every member into a
//! fresh archive written by the zip crate's writer.
//! Invariants: sizes, counts and ratios are checked on the declared values before anything
//! is inflated, and every read is capped at the declared size plus one byte; every member
//! with a CRC is checked against it after decryption (ZipCrypto's header check is one byte:
//! a wrong password passes it one time in 256); AES members are authenticated by their HMAC
//! as the zip crate reads them to the end.
//! Must never: return an archive where any member failed its check; inflate past the limits.

use std::io::{Cursor, Read};

use zip::result::ZipError;
use zip::{CompressionMethod, ExtraField, ZipArchive};

use super::{
    decode_name, ClearZip, Container, EncryptedListing, ListedMember, Method, Password, Unlocked,
    MAX_LISTED_MEMBERS,
};
use crate::error::{Error, Result};
use crate::kind::FileKind;
use crate::policy::Limits;

/// What the central directory says about one member.
struct Meta {
    name: String,
    encrypted: bool,
    aes: bool,
    size: u64,
    compressed: u64,
    crc: u32,
    is_dir: bool,
    is_symlink: bool,
    compression: CompressionMethod,
}

fn meta(archive: &mut ZipArchive<Cursor<&[u8]>>, i: usize) -> Result<Meta> {
    let entry = archive
        .by_index_raw(i)
        .map_err(|e| Error::malformed(format!("ZIP entry {i}: {e}")))?;
    let fallback = entry.name().map(|n| n.into_owned()).unwrap_or_default();
    let aes = entry
        .extra_data_fields()
        .any(|f| matches!(f, ExtraField::AeXEncryption(_)));
    Ok(Meta {
        name: decode_name(entry.name_raw(), &fallback),
        encrypted: entry.encrypted(),
        aes,
        size: entry.size(),
        compressed: entry.compressed_size(),
        crc: entry.crc32(),
        is_dir: entry.is_dir(),
        is_symlink: entry.is_symlink(),
        compression: entry.compression(),
    })
}

pub(super) fn listing(input: &[u8]) -> Option<EncryptedListing> {
    let mut archive = ZipArchive::new(Cursor::new(input)).ok()?;
    let total = archive.len();
    let mut members = Vec::new();
    let mut method = None;
    for i in 0..total {
        let m = meta(&mut archive, i).ok()?;
        if m.encrypted && method.is_none() {
            method = Some(if m.aes {
                Method::WinzipAes
            } else {
                Method::ZipCrypto
            });
        }
        if members.len() < MAX_LISTED_MEMBERS {
            members.push(ListedMember {
                name: m.name,
                size: m.size,
                encrypted: m.encrypted,
            });
        }
    }
    Some(EncryptedListing {
        container: Container::Zip,
        method: method?,
        names_visible: true,
        members,
        members_total: total as u64,
        unlockable: true,
    })
}

/// Maps a failure while reading an encrypted member: with the header check passed, a stream
/// that does not inflate, fails its CRC or its HMAC is what a wrong password produces.
fn read_failure(name: &str, encrypted: bool, e: std::io::Error) -> Error {
    if encrypted {
        Error::wrong_password(format!(
            "ZIP entry {name} does not decrypt to valid data (wrong password or damaged)"
        ))
    } else {
        Error::malformed(format!("ZIP entry {name} does not inflate: {e}"))
    }
}

pub(super) fn unlock(input: &[u8], password: &Password, limits: &Limits) -> Result<Unlocked> {
    let mut archive = crate::zipread::open(input, limits)?;
    // Every limit is checked on the declared values first, so a bomb stops before inflating.
    let metas = (0..archive.len())
        .map(|i| meta(&mut archive, i))
        .collect::<Result<Vec<_>>>()?;
    let mut method = None;
    let mut total: u64 = 0;
    for m in &metas {
        if m.encrypted && method.is_none() {
            method = Some(if m.aes {
                Method::WinzipAes
            } else {
                Method::ZipCrypto
            });
        }
        total = total.saturating_add(m.size);
        if total > limits.max_expanded_bytes {
            return Err(Error::limit_exceeded("ZIP expands past the size limit"));
        }
        if m.size > limits.ratio_floor_bytes
            && m.size / m.compressed.max(1) > limits.max_compression_ratio
        {
            return Err(Error::limit_exceeded(format!(
                "ZIP entry {} compresses {}:1 (limit {}:1)",
                m.name,
                m.size / m.compressed.max(1),
                limits.max_compression_ratio
            )));
        }
        if m.is_symlink {
            return Err(Error::unsupported(format!(
                "ZIP entry {} is a symbolic link",
                m.name
            )));
        }
        if !m.is_dir
            && m.compression != CompressionMethod::Stored
            && m.compression != CompressionMethod::Deflated
        {
            return Err(Error::unsupported(format!(
                "ZIP entry {} uses compression method {:?}",
                m.name, m.compression
            )));
        }
    }
    let Some(method) = method else {
        return Err(Error::unsupported("the ZIP has no encrypted member"));
    };

    let mut out = ClearZip::new();
    let mut verified = 0u64;
    for (i, m) in metas.iter().enumerate() {
        if m.is_dir {
            out.directory(&m.name)?;
            continue;
        }
        let entry = if m.encrypted {
            archive.by_index_decrypt(i, password.expose().as_bytes())
        } else {
            archive.by_index(i)
        };
        let entry = entry.map_err(|e| match e {
            ZipError::InvalidPassword => {
                Error::wrong_password(format!("ZIP entry {}: the password does not match", m.name))
            }
            ZipError::UnsupportedArchive(what) => {
                Error::unsupported(format!("ZIP entry {}: {what}", m.name))
            }
            other => Error::malformed(format!("ZIP entry {}: {other}", m.name)),
        })?;
        let mut bytes = Vec::with_capacity(usize::try_from(m.size.min(64 << 20)).unwrap_or(0));
        // One byte past the declared size, so a lying header is caught, not trusted; reading
        // to the end is also what makes the zip crate check an AES member's HMAC.
        entry
            .take(m.size.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(|e| read_failure(&m.name, m.encrypted, e))?;
        if bytes.len() as u64 != m.size {
            return Err(if m.encrypted {
                Error::wrong_password(format!(
                    "ZIP entry {} decrypts to another size than declared",
                    m.name
                ))
            } else {
                Error::malformed(format!(
                    "ZIP entry {} inflates to a size other than declared",
                    m.name
                ))
            });
        }
        // AE-2 members store no CRC (0): their HMAC, checked above, is the verification.
        let crc_stored = !(m.aes && m.crc == 0);
        if crc_stored && crc32fast::hash(&bytes) != m.crc {
            return Err(if m.encrypted {
                Error::wrong_password(format!(
                    "ZIP entry {} fails its CRC after decryption (wrong password)",
                    m.name
                ))
            } else {
                Error::malformed(format!("ZIP entry {} fails its CRC", m.name))
            });
        }
        verified += 1;
        out.file(&m.name, &bytes)?;
    }
    Ok(Unlocked {
        bytes: out.finish()?,
        kind: FileKind::Zip,
        extension: "zip",
        container: Container::Zip,
        method,
        members_verified: verified,
    })
}
