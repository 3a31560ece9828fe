//! `[Content_Types].xml`: reading the declared types and writing a fresh one.
//!
//! Owns: the map from part names and extensions to content types, the list of main-part
//! content types and the kind each one means, and the macro-free twin of each macro-enabled
//! main type.
//! Invariant: written content types list only parts mukaika keeps.

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::kind::FileKind;

use super::xml::{escape_attr, Document};

/// Main-part content types and the kind each means.
const MAIN_TYPES: &[(&str, FileKind)] = &[
    (
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml",
        FileKind::Docx,
    ),
    (
        "application/vnd.ms-word.document.macroEnabled.main+xml",
        FileKind::Docm,
    ),
    (
        "application/vnd.openxmlformats-officedocument.wordprocessingml.template.main+xml",
        FileKind::Dotx,
    ),
    (
        "application/vnd.ms-word.template.macroEnabledTemplate.main+xml",
        FileKind::Dotm,
    ),
    (
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml",
        FileKind::Xlsx,
    ),
    (
        "application/vnd.ms-excel.sheet.macroEnabled.main+xml",
        FileKind::Xlsm,
    ),
    (
        "application/vnd.openxmlformats-officedocument.spreadsheetml.template.main+xml",
        FileKind::Xltx,
    ),
    (
        "application/vnd.ms-excel.template.macroEnabled.main+xml",
        FileKind::Xltm,
    ),
    (
        "application/vnd.ms-excel.addin.macroEnabled.main+xml",
        FileKind::Xlam,
    ),
    (
        "application/vnd.ms-excel.sheet.binary.macroEnabled.main",
        FileKind::Xlsb,
    ),
    (
        "application/vnd.openxmlformats-officedocument.presentationml.presentation.main+xml",
        FileKind::Pptx,
    ),
    (
        "application/vnd.ms-powerpoint.presentation.macroEnabled.main+xml",
        FileKind::Pptm,
    ),
    (
        "application/vnd.openxmlformats-officedocument.presentationml.slideshow.main+xml",
        FileKind::Ppsx,
    ),
    (
        "application/vnd.ms-powerpoint.slideshow.macroEnabled.main+xml",
        FileKind::Ppsm,
    ),
    (
        "application/vnd.openxmlformats-officedocument.presentationml.template.main+xml",
        FileKind::Potx,
    ),
    (
        "application/vnd.ms-powerpoint.template.macroEnabled.main+xml",
        FileKind::Potm,
    ),
];

/// The main content type of a kind (the first listed for it).
pub fn main_type_of(kind: FileKind) -> Option<&'static str> {
    MAIN_TYPES.iter().find(|(_, k)| *k == kind).map(|(t, _)| *t)
}

/// The kind a main content type means.
pub fn kind_of_main_type(content_type: &str) -> Option<FileKind> {
    MAIN_TYPES
        .iter()
        .find(|(t, _)| t.eq_ignore_ascii_case(content_type.trim()))
        .map(|(_, k)| *k)
}

/// The parsed `[Content_Types].xml`.
#[derive(Debug, Default, Clone)]
pub struct ContentTypes {
    /// Extension (lower case) → content type.
    defaults: BTreeMap<String, String>,
    /// Part name (lower case, no leading slash) → content type.
    overrides: BTreeMap<String, String>,
}

impl ContentTypes {
    /// Parses `[Content_Types].xml`.
    ///
    /// # Errors
    /// Malformed XML, or a DOCTYPE.
    pub fn parse(xml: &[u8]) -> Result<Self> {
        let doc = Document::parse(xml)?;
        let mut out = ContentTypes::default();
        for el in doc.child_elements(doc.root()) {
            match doc.local(el) {
                "Default" => {
                    if let (Some(ext), Some(ct)) =
                        (doc.attr(el, "Extension"), doc.attr(el, "ContentType"))
                    {
                        out.defaults
                            .insert(ext.to_ascii_lowercase(), ct.to_string());
                    }
                }
                "Override" => {
                    if let (Some(name), Some(ct)) =
                        (doc.attr(el, "PartName"), doc.attr(el, "ContentType"))
                    {
                        let key = name.trim_start_matches('/').to_ascii_lowercase();
                        if out.overrides.insert(key.clone(), ct.to_string()).is_some() {
                            return Err(Error::malformed(format!(
                                "content type of /{key} declared twice"
                            )));
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(out)
    }

    /// The content type of a part (override first, then the extension default).
    pub fn of(&self, part: &str) -> Option<&str> {
        let key = part.trim_start_matches('/').to_ascii_lowercase();
        if let Some(ct) = self.overrides.get(&key) {
            return Some(ct);
        }
        let ext = key.rsplit_once('.').map(|(_, e)| e)?;
        self.defaults.get(ext).map(String::as_str)
    }

    /// The document kind, from the one main-part content type declared.
    pub fn main_kind(&self) -> Option<FileKind> {
        let mut kinds = self
            .overrides
            .values()
            .filter_map(|ct| kind_of_main_type(ct));
        let first = kinds.next()?;
        kinds.all(|k| k == first).then_some(first)
    }

    /// Writes a `[Content_Types].xml` listing exactly `parts` (name, content type).
    pub fn write(parts: &[(String, String)]) -> Vec<u8> {
        let mut out = String::from(
            "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n<Types xmlns=\"http://schemas.openxmlformats.org/package/2006/content-types\">",
        );
        out.push_str("<Default Extension=\"rels\" ContentType=\"application/vnd.openxmlformats-package.relationships+xml\"/>");
        out.push_str("<Default Extension=\"xml\" ContentType=\"application/xml\"/>");
        for (name, ct) in parts {
            out.push_str(&format!(
                "<Override PartName=\"/{}\" ContentType=\"{}\"/>",
                escape_attr(name),
                escape_attr(ct)
            ));
        }
        out.push_str("</Types>");
        out.into_bytes()
    }
}
