//! Office files in a CFB container: OOXML `EncryptedPackage` (ECMA-376 agile and standard
//! encryption, [MS-OFFCRYPTO] 2.3.4.5 and 2.3.4.10–13) is decrypted here; legacy doc/xls/ppt
//! encryption is recognised and listed, not decrypted.
//!
//! Owns: reading `EncryptionInfo`, deriving the key from the password, checking the password
//! verifier, checking the agile data-integrity HMAC, and decrypting `EncryptedPackage`.
//! Invariants: the password verifier decides wrong-password before any package byte is
//! decrypted; a present agile HMAC must match (a mismatch is tampering: `malformed`); the
//! spin count is capped (it is CPU the sender chooses); the declared package size is limited
//! by the expanded-size budget and by the stream's own length.
//! Must never: return bytes when the verifier or the HMAC disagrees. Legacy RC4 (Word, Excel,
//! PowerPoint 97–2003) is not decrypted: office-crypto 0.4, the one Rust crate that tries,
//! covers Word and PowerPoint only, parses CFB with its own unbounded reader and pins old
//! RustCrypto versions, so those files stay held as `unsupported`.

use std::collections::HashMap;
use std::io::{Cursor, Read};

use aes::cipher::{BlockCipherDecrypt, KeyInit};
use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2_11::{Digest, Sha256, Sha384, Sha512};

use super::{Container, EncryptedListing, Method, Password, Unlocked};
use crate::error::{Error, Result};
use crate::policy::Limits;

/// Highest agile spin count accepted (Office writes 100 000).
const MAX_SPIN_COUNT: u32 = 1_000_000;
/// Standard encryption's fixed spin count.
const STANDARD_SPIN_COUNT: u32 = 50_000;
/// Agile package segment size.
const SEGMENT: usize = 4096;
/// Largest `EncryptionInfo` stream read (it is a few KiB).
const MAX_INFO_BYTES: u64 = 1 << 20;

const BLOCK_VERIFIER_INPUT: [u8; 8] = [0xfe, 0xa7, 0xd2, 0x76, 0x3b, 0x4b, 0x9e, 0x79];
const BLOCK_VERIFIER_VALUE: [u8; 8] = [0xd7, 0xaa, 0x0f, 0x6d, 0x30, 0x61, 0x34, 0x4e];
const BLOCK_KEY: [u8; 8] = [0x14, 0x6e, 0x0b, 0xe7, 0xab, 0xac, 0xd0, 0xd6];
const BLOCK_HMAC_KEY: [u8; 8] = [0x5f, 0xb2, 0xad, 0x01, 0x0c, 0xb9, 0xe1, 0xf6];
const BLOCK_HMAC_VALUE: [u8; 8] = [0xa0, 0x67, 0x7f, 0x02, 0xb2, 0x2c, 0x84, 0x33];

type Cfb<'a> = cfb::CompoundFile<Cursor<&'a [u8]>>;

fn read_stream(file: &mut Cfb<'_>, path: &str, max: u64) -> Result<Vec<u8>> {
    let stream = file
        .open_stream(path)
        .map_err(|e| Error::malformed(format!("CFB stream {path}: {e}")))?;
    let mut bytes = Vec::new();
    stream
        .take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| Error::malformed(format!("CFB stream {path}: {e}")))?;
    if bytes.len() as u64 > max {
        return Err(Error::limit_exceeded(format!(
            "CFB stream {path} is too large"
        )));
    }
    Ok(bytes)
}

/// The encryption scheme named by an `EncryptionInfo` stream's version.
fn scheme(info: &[u8]) -> Method {
    match info.get(..4) {
        Some([4, 0, 4, 0]) => Method::OoxmlAgile,
        Some([2..=4, 0, 2, 0]) => Method::OoxmlStandard,
        _ => Method::OoxmlOther,
    }
}

pub(super) fn listing(input: &[u8]) -> Option<EncryptedListing> {
    let mut file = cfb::CompoundFile::open(Cursor::new(input)).ok()?;
    let (container, method, unlockable) =
        if file.is_stream("EncryptionInfo") && file.is_stream("EncryptedPackage") {
            let info = read_stream(&mut file, "EncryptionInfo", MAX_INFO_BYTES).ok()?;
            let method = scheme(&info);
            (Container::Ooxml, method, method != Method::OoxmlOther)
        } else if legacy_encrypted(&mut file) {
            (Container::LegacyOffice, Method::LegacyOffice, false)
        } else {
            return None;
        };
    Some(EncryptedListing {
        container,
        method,
        names_visible: false,
        members: Vec::new(),
        members_total: 0,
        unlockable,
    })
}

/// Word's FIB `fEncrypted`, Excel's FILEPASS record, PowerPoint's `EncryptedSummary` stream.
fn legacy_encrypted(file: &mut Cfb<'_>) -> bool {
    const MAX_LEGACY_SCAN: u64 = 1 << 20;
    if file.is_stream("WordDocument") {
        let Ok(word) = read_head(file, "WordDocument", 0x20) else {
            return false;
        };
        let flags = word
            .get(0x0A..0x0C)
            .map_or(0, |b| u16::from_le_bytes([b[0], b[1]]));
        return word.get(..2) == Some(&[0xEC, 0xA5]) && flags & 0x0100 != 0;
    }
    for name in ["Workbook", "Book"] {
        if file.is_stream(name) {
            let Ok(book) = read_head(file, name, MAX_LEGACY_SCAN) else {
                return false;
            };
            // FILEPASS sits in the globals substream, before its EOF record.
            let mut at = 0usize;
            while let Some(head) = book.get(at..at + 4) {
                let kind = u16::from_le_bytes([head[0], head[1]]);
                let len = usize::from(u16::from_le_bytes([head[2], head[3]]));
                match kind {
                    0x002F => return true,
                    0x000A => return false,
                    _ => at += 4 + len,
                }
            }
            return false;
        }
    }
    file.is_stream("PowerPoint Document") && file.is_stream("EncryptedSummary")
}

fn read_head(file: &mut Cfb<'_>, path: &str, max: u64) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    file.open_stream(path)?.take(max).read_to_end(&mut bytes)?;
    Ok(bytes)
}

pub(super) fn unlock(input: &[u8], password: &Password, limits: &Limits) -> Result<Unlocked> {
    let Some(listed) = listing(input) else {
        return Err(Error::unsupported("the Office file is not encrypted"));
    };
    if listed.container == Container::LegacyOffice {
        return Err(Error::unsupported(
            "legacy Word/Excel/PowerPoint encryption is not decrypted (no maintained crate \
             covers it): held",
        ));
    }
    let mut file = cfb::CompoundFile::open(Cursor::new(input))
        .map_err(|e| Error::malformed(format!("not a readable CFB file: {e}")))?;
    let info = read_stream(&mut file, "EncryptionInfo", MAX_INFO_BYTES)?;
    let package = read_stream(
        &mut file,
        "EncryptedPackage",
        limits.max_expanded_bytes.saturating_add(8 + SEGMENT as u64),
    )?;
    let declared = package
        .get(..8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_le_bytes)
        .ok_or_else(|| Error::malformed("EncryptedPackage has no size"))?;
    if declared > limits.max_expanded_bytes {
        return Err(Error::limit_exceeded(
            "the encrypted package declares a size over the limit",
        ));
    }
    let body = package.get(8..).unwrap_or_default();
    if declared > body.len() as u64 {
        return Err(Error::malformed(
            "EncryptedPackage declares more bytes than it holds",
        ));
    }
    let mut clear = match listed.method {
        Method::OoxmlAgile => agile(&info, &package, password)?,
        Method::OoxmlStandard => standard(&info, body, password)?,
        _ => {
            return Err(Error::unsupported(
                "ECMA-376 extensible encryption is not decrypted",
            ))
        }
    };
    clear.truncate(usize::try_from(declared).unwrap_or(usize::MAX));
    if !clear.starts_with(b"PK\x03\x04") {
        // The verifier matched, so the key is right: a package that is not a ZIP is damaged.
        return Err(Error::malformed("the decrypted package is not a ZIP"));
    }
    let kind = super::detected_kind(&clear);
    if !kind.is_ooxml() {
        return Err(Error::malformed(format!(
            "the decrypted package is {kind}, not an Office Open XML document"
        )));
    }
    Ok(Unlocked {
        extension: kind.preferred_extension().unwrap_or("zip"),
        bytes: clear,
        kind,
        container: Container::Ooxml,
        method: listed.method,
        members_verified: 1,
    })
}

// ---- primitives -------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum HashAlg {
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

impl HashAlg {
    fn from_name(name: &str) -> Result<Self> {
        match name.to_ascii_uppercase().replace('-', "").as_str() {
            "SHA1" => Ok(Self::Sha1),
            "SHA256" => Ok(Self::Sha256),
            "SHA384" => Ok(Self::Sha384),
            "SHA512" => Ok(Self::Sha512),
            other => Err(Error::unsupported(format!(
                "ECMA-376 hash algorithm {other}"
            ))),
        }
    }

    fn hash(self, parts: &[&[u8]]) -> Vec<u8> {
        fn run<D: Digest>(parts: &[&[u8]]) -> Vec<u8> {
            let mut d = D::new();
            for p in parts {
                d.update(p);
            }
            d.finalize().to_vec()
        }
        match self {
            Self::Sha1 => run::<Sha1>(parts),
            Self::Sha256 => run::<Sha256>(parts),
            Self::Sha384 => run::<Sha384>(parts),
            Self::Sha512 => run::<Sha512>(parts),
        }
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Result<Vec<u8>> {
        fn run<M: Mac + KeyInitHmac>(key: &[u8], data: &[u8]) -> Result<Vec<u8>> {
            let mut mac = M::with_key(key)?;
            mac.update(data);
            Ok(mac.finalize().into_bytes().to_vec())
        }
        match self {
            Self::Sha1 => run::<Hmac<Sha1>>(key, data),
            Self::Sha256 => run::<Hmac<Sha256>>(key, data),
            Self::Sha384 => run::<Hmac<Sha384>>(key, data),
            Self::Sha512 => run::<Hmac<Sha512>>(key, data),
        }
    }
}

/// `KeyInit` for the HMAC types, named apart from the AES one.
trait KeyInitHmac: Sized {
    fn with_key(key: &[u8]) -> Result<Self>;
}

impl<T: hmac::digest::KeyInit> KeyInitHmac for T {
    fn with_key(key: &[u8]) -> Result<Self> {
        T::new_from_slice(key).map_err(|_| Error::malformed("HMAC key of an invalid length"))
    }
}

enum AnyAes {
    A128(aes::Aes128),
    A192(aes::Aes192),
    A256(aes::Aes256),
}

impl AnyAes {
    fn new(key: &[u8]) -> Result<Self> {
        let bad = |_| Error::malformed("AES key of an invalid length");
        Ok(match key.len() {
            16 => Self::A128(aes::Aes128::new_from_slice(key).map_err(bad)?),
            24 => Self::A192(aes::Aes192::new_from_slice(key).map_err(bad)?),
            32 => Self::A256(aes::Aes256::new_from_slice(key).map_err(bad)?),
            n => return Err(Error::unsupported(format!("AES key of {n} bytes"))),
        })
    }

    fn decrypt_block(&self, block: &mut [u8; 16]) {
        let mut b = aes::Block::from(*block);
        match self {
            Self::A128(c) => c.decrypt_block(&mut b),
            Self::A192(c) => c.decrypt_block(&mut b),
            Self::A256(c) => c.decrypt_block(&mut b),
        }
        block.copy_from_slice(&b);
    }

    /// CBC decryption without padding removal (ECMA-376 pads to the block and records sizes).
    fn cbc_decrypt(&self, iv: &[u8], data: &[u8]) -> Result<Vec<u8>> {
        let mut prev: [u8; 16] = iv
            .get(..16)
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| Error::malformed("AES IV shorter than a block"))?;
        if !data.len().is_multiple_of(16) {
            return Err(Error::malformed(
                "AES-CBC data is not a whole number of blocks",
            ));
        }
        let mut out = Vec::with_capacity(data.len());
        for chunk in data.chunks_exact(16) {
            let mut block = [0u8; 16];
            block.copy_from_slice(chunk);
            let cipher_block = block;
            self.decrypt_block(&mut block);
            for (b, p) in block.iter_mut().zip(prev) {
                *b ^= p;
            }
            out.extend_from_slice(&block);
            prev = cipher_block;
        }
        Ok(out)
    }

    fn ecb_decrypt(&self, data: &[u8]) -> Result<Vec<u8>> {
        if !data.len().is_multiple_of(16) {
            return Err(Error::malformed(
                "AES-ECB data is not a whole number of blocks",
            ));
        }
        let mut out = Vec::with_capacity(data.len());
        for chunk in data.chunks_exact(16) {
            let mut block = [0u8; 16];
            block.copy_from_slice(chunk);
            self.decrypt_block(&mut block);
            out.extend_from_slice(&block);
        }
        Ok(out)
    }
}

fn utf16le(password: &Password) -> zeroize::Zeroizing<Vec<u8>> {
    zeroize::Zeroizing::new(
        password
            .expose()
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect(),
    )
}

/// Truncates or pads (with `pad`) to `len` bytes, as ECMA-376 sizes keys and IVs.
fn fit(mut bytes: Vec<u8>, len: usize, pad: u8) -> Vec<u8> {
    bytes.resize(len, pad);
    bytes
}

fn head(bytes: &[u8], len: usize) -> Result<&[u8]> {
    bytes
        .get(..len)
        .ok_or_else(|| Error::malformed("decrypted value shorter than declared"))
}

// ---- agile ------------------------------------------------------------------------------

/// The attributes of the elements that matter in the agile `EncryptionInfo` XML.
#[derive(Default)]
struct AgileInfo {
    key_data: HashMap<String, String>,
    password_key: HashMap<String, String>,
    integrity: HashMap<String, String>,
}

fn agile_info(xml: &[u8]) -> Result<AgileInfo> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_reader(xml);
    let mut info = AgileInfo::default();
    let mut buf = Vec::new();
    loop {
        let event = reader
            .read_event_into(&mut buf)
            .map_err(|e| Error::malformed(format!("EncryptionInfo XML: {e}")))?;
        let element = match &event {
            Event::Start(e) | Event::Empty(e) => e,
            Event::Eof => break,
            _ => {
                buf.clear();
                continue;
            }
        };
        let target = match element.local_name().as_ref() {
            "keyData" => &mut info.key_data,
            // Only the password key encryptor carries these attributes (the certificate
            // one has its own element names).
            "encryptedKey" => &mut info.password_key,
            "dataIntegrity" => &mut info.integrity,
            _ => {
                buf.clear();
                continue;
            }
        };
        for attr in element.attributes() {
            let attr = attr.map_err(|e| Error::malformed(format!("EncryptionInfo XML: {e}")))?;
            let key = attr.key.local_name().as_ref().to_string();
            let value = attr.value.to_string();
            target.insert(key, value);
        }
        buf.clear();
    }
    Ok(info)
}

fn attr<'a>(map: &'a HashMap<String, String>, name: &str) -> Result<&'a str> {
    map.get(name)
        .map(String::as_str)
        .ok_or_else(|| Error::malformed(format!("EncryptionInfo lacks {name}")))
}

fn b64(map: &HashMap<String, String>, name: &str) -> Result<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(attr(map, name)?.trim())
        .map_err(|_| Error::malformed(format!("EncryptionInfo {name} is not base64")))
}

fn number(map: &HashMap<String, String>, name: &str) -> Result<usize> {
    attr(map, name)?
        .trim()
        .parse()
        .map_err(|_| Error::malformed(format!("EncryptionInfo {name} is not a number")))
}

/// Sizes come from the sender's XML: only what AES and the hashes above can have.
fn aes_key_bytes(bits: usize) -> Result<usize> {
    match bits {
        128 | 192 | 256 => Ok(bits / 8),
        other => Err(Error::unsupported(format!("ECMA-376 key of {other} bits"))),
    }
}

fn hash_bytes(size: usize) -> Result<usize> {
    match size {
        20 | 32 | 48 | 64 => Ok(size),
        other => Err(Error::malformed(format!("ECMA-376 hash size {other}"))),
    }
}

fn check_cipher(map: &HashMap<String, String>) -> Result<()> {
    let algorithm = attr(map, "cipherAlgorithm")?;
    let chaining = attr(map, "cipherChaining")?;
    if algorithm != "AES" || chaining != "ChainingModeCBC" {
        return Err(Error::unsupported(format!(
            "ECMA-376 cipher {algorithm} {chaining}"
        )));
    }
    Ok(())
}

fn agile(info: &[u8], package: &[u8], password: &Password) -> Result<Vec<u8>> {
    let xml = info
        .get(8..)
        .ok_or_else(|| Error::malformed("EncryptionInfo too short"))?;
    let info = agile_info(xml)?;
    let key = &info.password_key;
    check_cipher(key)?;
    check_cipher(&info.key_data)?;
    let alg = HashAlg::from_name(attr(key, "hashAlgorithm")?)?;
    let spin = u32::try_from(number(key, "spinCount")?).unwrap_or(u32::MAX);
    if spin > MAX_SPIN_COUNT {
        return Err(Error::limit_exceeded(format!(
            "ECMA-376 spin count {spin} over {MAX_SPIN_COUNT}"
        )));
    }
    let key_bytes = aes_key_bytes(number(key, "keyBits")?)?;
    let hash_size = hash_bytes(number(key, "hashSize")?)?;
    let salt = b64(key, "saltValue")?;

    let mut h = zeroize::Zeroizing::new(alg.hash(&[&salt, &utf16le(password)]));
    for i in 0..spin {
        *h = alg.hash(&[&i.to_le_bytes(), &h]);
    }
    let derive = |block: &[u8]| fit(alg.hash(&[&h, block]), key_bytes, 0x36);
    let decrypt = |block: &[u8], name: &str| -> Result<Vec<u8>> {
        AnyAes::new(&derive(block))?.cbc_decrypt(&salt, &b64(key, name)?)
    };
    let verifier_input = decrypt(&BLOCK_VERIFIER_INPUT, "encryptedVerifierHashInput")?;
    let verifier_hash = decrypt(&BLOCK_VERIFIER_VALUE, "encryptedVerifierHashValue")?;
    let expected = alg.hash(&[head(&verifier_input, salt.len())?]);
    if head(&verifier_hash, hash_size)? != head(&expected, hash_size)? {
        return Err(Error::wrong_password(
            "the Office document's password verifier does not match",
        ));
    }
    let secret = zeroize::Zeroizing::new(
        head(&decrypt(&BLOCK_KEY, "encryptedKeyValue")?, key_bytes)?.to_vec(),
    );

    let data = &info.key_data;
    let data_alg = HashAlg::from_name(attr(data, "hashAlgorithm")?)?;
    let data_salt = b64(data, "saltValue")?;
    let block_size = number(data, "blockSize")?;
    if block_size != 16 {
        return Err(Error::unsupported(format!(
            "ECMA-376 block size {block_size}"
        )));
    }
    let data_hash_size = hash_bytes(number(data, "hashSize")?)?;
    let cipher = AnyAes::new(&secret)?;
    let iv_for = |block: &[u8]| fit(data_alg.hash(&[&data_salt, block]), block_size, 0x36);

    if !info.integrity.is_empty() {
        let hmac_key = cipher.cbc_decrypt(
            &iv_for(&BLOCK_HMAC_KEY),
            &b64(&info.integrity, "encryptedHmacKey")?,
        )?;
        let hmac_value = cipher.cbc_decrypt(
            &iv_for(&BLOCK_HMAC_VALUE),
            &b64(&info.integrity, "encryptedHmacValue")?,
        )?;
        let computed = data_alg.hmac(head(&hmac_key, data_hash_size)?, package)?;
        if head(&computed, data_hash_size)? != head(&hmac_value, data_hash_size)? {
            return Err(Error::malformed(
                "the Office document fails its data-integrity HMAC (altered after encryption)",
            ));
        }
    }

    let body = package.get(8..).unwrap_or_default();
    let mut out = Vec::with_capacity(body.len());
    for (i, segment) in body.chunks(SEGMENT).enumerate() {
        let index = u32::try_from(i).map_err(|_| Error::malformed("too many segments"))?;
        out.extend(cipher.cbc_decrypt(&iv_for(&index.to_le_bytes()), segment)?);
    }
    Ok(out)
}

// ---- standard ---------------------------------------------------------------------------

fn le32(bytes: &[u8], at: usize) -> Result<u32> {
    at.checked_add(4)
        .and_then(|end| bytes.get(at..end))
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| Error::malformed("EncryptionInfo too short"))
}

fn standard(info: &[u8], body: &[u8], password: &Password) -> Result<Vec<u8>> {
    const AES_128: u32 = 0x660E;
    const AES_192: u32 = 0x660F;
    const AES_256: u32 = 0x6610;
    let header_size = usize::try_from(le32(info, 8)?).unwrap_or(usize::MAX);
    let header_start = 12usize;
    let alg_id = le32(info, header_start + 8)?;
    let key_bits = le32(info, header_start + 16)?;
    if !matches!(alg_id, AES_128 | AES_192 | AES_256) {
        return Err(Error::unsupported(format!(
            "ECMA-376 standard encryption with algorithm 0x{alg_id:04X} (RC4 is not decrypted)"
        )));
    }
    let verifier = header_start
        .checked_add(header_size)
        .ok_or_else(|| Error::malformed("EncryptionInfo header size"))?;
    let salt_size = usize::try_from(le32(info, verifier)?).unwrap_or(usize::MAX);
    if salt_size != 16 {
        return Err(Error::malformed("standard encryption salt is not 16 bytes"));
    }
    let slice = |offset: usize, len: usize| {
        verifier
            .checked_add(offset)
            .and_then(|at| info.get(at..at.checked_add(len)?))
            .ok_or_else(|| Error::malformed("EncryptionInfo too short"))
    };
    let salt = slice(4, 16)?;
    let encrypted_verifier = slice(20, 16)?;
    let encrypted_hash = slice(40, 32)?;

    let mut h = zeroize::Zeroizing::new(HashAlg::Sha1.hash(&[salt, &utf16le(password)]));
    for i in 0..STANDARD_SPIN_COUNT {
        *h = HashAlg::Sha1.hash(&[&i.to_le_bytes(), &h]);
    }
    let final_hash = HashAlg::Sha1.hash(&[&h, &0u32.to_le_bytes()]);
    let mut x1 = [0x36u8; 64];
    let mut x2 = [0x5cu8; 64];
    for (i, b) in final_hash.iter().enumerate() {
        x1[i] ^= b;
        x2[i] ^= b;
    }
    let mut derived = HashAlg::Sha1.hash(&[&x1]);
    derived.extend(HashAlg::Sha1.hash(&[&x2]));
    let key_len = usize::try_from(key_bits / 8).unwrap_or(0);
    let key = zeroize::Zeroizing::new(head(&derived, key_len)?.to_vec());
    let cipher = AnyAes::new(&key)?;
    let plain_verifier = cipher.ecb_decrypt(encrypted_verifier)?;
    let plain_hash = cipher.ecb_decrypt(encrypted_hash)?;
    if HashAlg::Sha1.hash(&[&plain_verifier]) != head(&plain_hash, 20)? {
        return Err(Error::wrong_password(
            "the Office document's password verifier does not match",
        ));
    }
    let whole = body.len() - body.len() % 16;
    cipher.ecb_decrypt(body.get(..whole).unwrap_or_default())
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::kind::FileKind;
    use aes::cipher::BlockCipherEncrypt;

    /// Builds a standard-encrypted (ECMA-376 2.3.4.5, AES-128) CFB around `package`, the way
    /// Office 2007 writes it, for the round trip below (no tool at hand writes this scheme).
    pub(crate) fn standard_encrypted(package: &[u8], password: &str) -> Vec<u8> {
        let salt = [7u8; 16];
        let pw: Vec<u8> = password.encode_utf16().flat_map(u16::to_le_bytes).collect();
        let mut h = HashAlg::Sha1.hash(&[&salt, &pw]);
        for i in 0..STANDARD_SPIN_COUNT {
            h = HashAlg::Sha1.hash(&[&i.to_le_bytes(), &h]);
        }
        let f = HashAlg::Sha1.hash(&[&h, &0u32.to_le_bytes()]);
        let mut x1 = [0x36u8; 64];
        for (i, b) in f.iter().enumerate() {
            x1[i] ^= b;
        }
        let key = HashAlg::Sha1.hash(&[&x1]);
        let cipher = aes::Aes128::new_from_slice(&key[..16]).unwrap();
        let ecb = |data: &[u8]| {
            let mut out = Vec::new();
            for chunk in data.chunks(16) {
                let mut block = [0u8; 16];
                block[..chunk.len()].copy_from_slice(chunk);
                let mut b = aes::Block::from(block);
                cipher.encrypt_block(&mut b);
                out.extend_from_slice(&b);
            }
            out
        };
        let verifier = [0x42u8; 16];
        let mut verifier_hash = HashAlg::Sha1.hash(&[&verifier]);
        verifier_hash.resize(32, 0);
        let csp: Vec<u8> = "Microsoft Enhanced RSA and AES Cryptographic Provider\0"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        let mut header = Vec::new();
        for v in [0x24u32, 0, 0x660E, 0x8004, 128, 0x18, 0, 0] {
            header.extend(v.to_le_bytes());
        }
        header.extend(&csp);
        let mut info = vec![3, 0, 2, 0];
        info.extend(0x24u32.to_le_bytes());
        info.extend((header.len() as u32).to_le_bytes());
        info.extend(&header);
        info.extend(16u32.to_le_bytes());
        info.extend(salt);
        info.extend(ecb(&verifier));
        info.extend(20u32.to_le_bytes());
        info.extend(ecb(&verifier_hash));
        let mut stream = (package.len() as u64).to_le_bytes().to_vec();
        stream.extend(ecb(package));

        let mut file = cfb::CompoundFile::create(Cursor::new(Vec::new())).unwrap();
        use std::io::Write;
        file.create_stream("EncryptionInfo")
            .unwrap()
            .write_all(&info)
            .unwrap();
        file.create_stream("EncryptedPackage")
            .unwrap()
            .write_all(&stream)
            .unwrap();
        file.flush().unwrap();
        file.into_inner().into_inner()
    }

    fn tiny_docx() -> Vec<u8> {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let o = zip::write::SimpleFileOptions::default();
        use std::io::Write;
        w.start_file("[Content_Types].xml", o).unwrap();
        w.write_all(br#"<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>"#).unwrap();
        w.start_file("_rels/.rels", o).unwrap();
        w.write_all(br#"<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="word/document.xml"/></Relationships>"#).unwrap();
        w.start_file("word/document.xml", o).unwrap();
        w.write_all(br#"<?xml version="1.0" encoding="UTF-8"?><w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body><w:p><w:r><w:t>secret</w:t></w:r></w:p></w:body></w:document>"#).unwrap();
        w.finish().unwrap().into_inner()
    }

    #[test]
    fn standard_encryption_opens_with_the_right_password_only() {
        let docx = tiny_docx();
        let locked = standard_encrypted(&docx, "Pa55-標準");
        let listed = listing(&locked).expect("listed as encrypted");
        assert_eq!(listed.method, Method::OoxmlStandard);
        let limits = Limits::default();
        let open = unlock(&locked, &Password::new("Pa55-標準"), &limits).unwrap();
        assert_eq!(open.bytes, docx);
        assert_eq!(open.kind, FileKind::Docx);
        let wrong = unlock(&locked, &Password::new("Pa55-標"), &limits).unwrap_err();
        assert!(wrong.is_wrong_password(), "{wrong}");
    }
}
