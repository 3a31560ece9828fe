//! 7z with the AES-256 coder (content, and headers with `-mhe=on`) → a new unencrypted ZIP.
//!
//! Owns: listing a 7z archive's members when its headers are in the clear, and decrypting
//! its members into a fresh ZIP.
//! Invariants: the member count and the expanded size are limited while reading (decoder
//! memory too); every member with data must carry a CRC and match it after decryption;
//! links and special files are refused, as the archive sanitizer refuses them.
//! Must never: return an archive where any member failed its check.

use std::io::{Cursor, Read};

use sevenz_rust2::{ArchiveReader, Error as SevenZipError, Password as SevenZipPassword};

use super::{
    ClearZip, Container, EncryptedListing, ListedMember, Method, Password, Unlocked,
    MAX_LISTED_MEMBERS,
};
use crate::error::{Error, Result};
use crate::kind::FileKind;
use crate::policy::Limits;

/// Decoder memory for listing only (headers, no content).
const LISTING_MEMORY_KB: usize = 64 * 1024;

pub(super) fn listing(input: &[u8]) -> Option<EncryptedListing> {
    match ArchiveReader::new_with_memory_limit(
        Cursor::new(input),
        SevenZipPassword::empty(),
        LISTING_MEMORY_KB,
    ) {
        Err(SevenZipError::PasswordRequired) => Some(EncryptedListing {
            container: Container::SevenZip,
            method: Method::SevenZipAes,
            names_visible: false,
            members: Vec::new(),
            members_total: 0,
            unlockable: true,
        }),
        Err(_) => None,
        Ok(reader) => {
            let archive = reader.archive();
            let encrypted: Vec<bool> = (0..archive.files.len())
                .map(|i| archive.is_file_encrypted(i))
                .collect();
            if !encrypted.iter().any(|e| *e) {
                return None;
            }
            let members = archive
                .files
                .iter()
                .zip(&encrypted)
                .take(MAX_LISTED_MEMBERS)
                .map(|(f, e)| ListedMember {
                    name: f.name.clone(),
                    size: f.size,
                    encrypted: *e,
                })
                .collect();
            Some(EncryptedListing {
                container: Container::SevenZip,
                method: Method::SevenZipAes,
                names_visible: true,
                members,
                members_total: archive.files.len() as u64,
                unlockable: true,
            })
        }
    }
}

pub(super) fn unlock(input: &[u8], password: &Password, limits: &Limits) -> Result<Unlocked> {
    if listing(input).is_none() {
        return Err(Error::unsupported("the 7z archive is not encrypted"));
    }
    // With the structure known to be an encrypted 7z, a header or stream that does not decode
    // or check is what a wrong password produces.
    let classify = |e: SevenZipError| match e {
        SevenZipError::MaxMemLimited { .. } => {
            Error::limit_exceeded("7z decoder memory over the limit")
        }
        SevenZipError::UnsupportedCompressionMethod(m)
            if !m.to_ascii_uppercase().contains("AES") =>
        {
            Error::unsupported(format!("7z compression method {m}"))
        }
        _ => Error::wrong_password(
            "the 7z archive does not decrypt to valid data (wrong password or damaged)",
        ),
    };
    let memory_kb =
        usize::try_from((limits.max_expanded_bytes / 1024).min(512 * 1024)).unwrap_or(512 * 1024);
    let secret = SevenZipPassword::from(password.expose());
    let mut reader = ArchiveReader::new_with_memory_limit(Cursor::new(input), secret, memory_kb)
        .map_err(classify)?;
    reader.set_thread_count(1);
    let count = reader.archive().files.len() as u64;
    if count > limits.max_members {
        return Err(Error::limit_exceeded(format!(
            "{count} members in the 7z archive (limit {})",
            limits.max_members
        )));
    }
    let declared: u64 = reader
        .archive()
        .files
        .iter()
        .fold(0u64, |sum, f| sum.saturating_add(f.size));
    if declared > limits.max_expanded_bytes {
        return Err(Error::limit_exceeded(
            "7z archive expands past the size limit",
        ));
    }
    let mut out = ClearZip::new();
    let mut total = 0u64;
    let mut verified = 0u64;
    let mut failure: Option<Error> = None;
    reader
        .for_each_entries(|entry, data| {
            let special = crate::archive::is_special_7z_entry(entry);
            let step = (|| -> Result<()> {
                if special {
                    return Err(Error::malformed(format!(
                        "7z member {} is a link or special file",
                        entry.name
                    )));
                }
                if entry.is_anti_item {
                    return Ok(());
                }
                if entry.is_directory {
                    let name = format!("{}/", entry.name.trim_end_matches('/'));
                    return out.directory(&name);
                }
                let room = limits.max_expanded_bytes.saturating_sub(total);
                let mut bytes = Vec::new();
                data.take(room.saturating_add(1))
                    .read_to_end(&mut bytes)
                    .map_err(|_| {
                        Error::wrong_password(format!(
                            "7z member {} does not decrypt (wrong password or damaged)",
                            entry.name
                        ))
                    })?;
                total = total.saturating_add(bytes.len() as u64);
                if total > limits.max_expanded_bytes {
                    return Err(Error::limit_exceeded(
                        "7z archive expands past the size limit",
                    ));
                }
                if !bytes.is_empty() {
                    if !entry.has_crc {
                        return Err(Error::unsupported(format!(
                            "7z member {} has no CRC: its decryption cannot be verified",
                            entry.name
                        )));
                    }
                    if u64::from(crc32fast::hash(&bytes)) != entry.crc {
                        return Err(Error::wrong_password(format!(
                            "7z member {} fails its CRC after decryption (wrong password)",
                            entry.name
                        )));
                    }
                }
                verified += 1;
                out.file(&entry.name, &bytes)
            })();
            match step {
                Ok(()) => Ok(true),
                Err(e) => {
                    failure = Some(e);
                    Ok(false)
                }
            }
        })
        .map_err(classify)?;
    if let Some(e) = failure {
        return Err(e);
    }
    Ok(Unlocked {
        bytes: out.finish()?,
        kind: FileKind::Zip,
        extension: "zip",
        container: Container::SevenZip,
        method: Method::SevenZipAes,
        members_verified: verified,
    })
}
