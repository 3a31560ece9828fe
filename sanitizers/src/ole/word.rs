//! Word 97–2003: what the `WordDocument` stream says about the document.
//!
//! Owns: the FIB's encryption flag and the search for field instructions that run, fetch or
//! include something. A Word VBA project lives only in the `Macros` storage, which the rebuild
//! in the parent module never copies; the FIB keeps no reference to it that Word or
//! LibreOffice need removed (DocBleach removes the storage the same way), so the text streams
//! are copied whole.
//! Invariants: reads only; every index is bounds-checked.
//! Must never: rewrite the text (a dangerous field holds the file instead).

use crate::error::{Error, Result};

/// Fields that run something, fetch something or pull in another file when Word updates them.
const DANGEROUS_FIELDS: [&str; 7] = [
    "DDEAUTO",
    "DDE",
    "INCLUDETEXT",
    "INCLUDEPICTURE",
    "IMPORT",
    "LINK",
    "DATABASE",
];

/// Word: encryption flag in the FIB, and dangerous field instructions in the text (field begin
/// mark 0x13 followed by the instruction, in 8-bit or UTF-16 text pieces).
pub(super) fn check_word(word: &[u8]) -> Result<()> {
    let flags = word
        .get(0x0A..0x0C)
        .map(|b| u16::from_le_bytes([b[0], b[1]]))
        .ok_or_else(|| Error::malformed("WordDocument stream is too short for its FIB"))?;
    if word.get(..2) != Some(&[0xEC, 0xA5]) {
        return Err(Error::malformed("WordDocument stream has no Word 97 FIB"));
    }
    if flags & 0x0100 != 0 {
        return Err(Error::encrypted("Word document is encrypted or obfuscated"));
    }
    for (i, _) in word.iter().enumerate().filter(|(_, &b)| b == 0x13) {
        for wide in [false, true] {
            let step = if wide { 2 } else { 1 };
            let mut j = i + step;
            let mut name = String::new();
            while let Some(&b) = word.get(j) {
                if wide && word.get(j + 1) != Some(&0) {
                    break;
                }
                if b == b' ' && name.is_empty() {
                    j += step;
                    continue;
                }
                if !b.is_ascii_alphabetic() || name.len() > 16 {
                    break;
                }
                name.push(b.to_ascii_uppercase() as char);
                j += step;
            }
            if DANGEROUS_FIELDS.contains(&name.as_str()) {
                return Err(Error::unsupported(format!(
                    "{name} field in a Word 97–2003 document (its text cannot be rewritten safely)"
                )));
            }
        }
    }
    Ok(())
}
