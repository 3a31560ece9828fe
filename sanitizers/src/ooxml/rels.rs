//! Relationship parts (`*.rels`): reading them, resolving targets, and writing fresh ones.
//!
//! Owns: [`Relationship`], target resolution relative to the source part, and the rule that a
//! target escaping the package root is malformed.

use crate::error::{Error, Result};
use crate::util::percent_decode;

use super::xml::{escape_attr, Document};

/// One relationship of a part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relationship {
    /// The `Id` referenced from the source part (`rId5`).
    pub id: String,
    /// The full type URI.
    pub rel_type: String,
    /// The target as written.
    pub target: String,
    /// True for `TargetMode="External"`.
    pub external: bool,
}

impl Relationship {
    /// The last segment of the type URI (`officeDocument`, `vbaProject`, `hyperlink`…).
    pub fn type_name(&self) -> &str {
        self.rel_type.rsplit('/').next().unwrap_or(&self.rel_type)
    }
}

/// Parses a `.rels` part.
///
/// # Errors
/// Malformed XML, a DOCTYPE, a relationship without Id/Type/Target, or a duplicate Id.
pub fn parse(xml: &[u8]) -> Result<Vec<Relationship>> {
    let doc = Document::parse(xml)?;
    let mut out: Vec<Relationship> = Vec::new();
    for el in doc.child_elements(doc.root()) {
        if doc.local(el) != "Relationship" {
            continue;
        }
        let (Some(id), Some(rel_type), Some(target)) = (
            doc.attr(el, "Id"),
            doc.attr(el, "Type"),
            doc.attr(el, "Target"),
        ) else {
            return Err(Error::malformed("relationship without Id, Type or Target"));
        };
        if out.iter().any(|r| r.id == id) {
            return Err(Error::malformed(format!("relationship Id {id} used twice")));
        }
        out.push(Relationship {
            id,
            rel_type,
            target,
            external: doc
                .attr(el, "TargetMode")
                .is_some_and(|m| m.eq_ignore_ascii_case("External")),
        });
    }
    Ok(out)
}

/// The `.rels` part name for a source part (`word/document.xml` → `word/_rels/document.xml.rels`;
/// the package root `""` → `_rels/.rels`).
pub fn rels_name_for(part: &str) -> String {
    match part.rsplit_once('/') {
        Some((dir, file)) => format!("{dir}/_rels/{file}.rels"),
        None => format!("_rels/{part}.rels"),
    }
}

/// Resolves an internal target against its source part, to a part name without a leading slash.
///
/// # Errors
/// A target that climbs above the package root, or is empty.
pub fn resolve(source: &str, target: &str) -> Result<String> {
    let target = target.split('#').next().unwrap_or_default();
    let target = String::from_utf8_lossy(&percent_decode(target)).into_owned();
    let mut segments: Vec<&str> = if target.starts_with('/') {
        Vec::new()
    } else {
        match source.rsplit_once('/') {
            Some((dir, _)) => dir.split('/').collect(),
            None => Vec::new(),
        }
    };
    for seg in target.split(['/', '\\']) {
        match seg {
            "" | "." => {}
            ".." => {
                if segments.pop().is_none() {
                    return Err(Error::malformed(format!(
                        "relationship target {target} escapes the package"
                    )));
                }
            }
            s => segments.push(s),
        }
    }
    if segments.is_empty() {
        return Err(Error::malformed("empty relationship target"));
    }
    Ok(segments.join("/"))
}

/// Writes a `.rels` part with exactly these relationships.
pub fn write(rels: &[Relationship]) -> Vec<u8> {
    let mut out = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n<Relationships xmlns=\"http://schemas.openxmlformats.org/package/2006/relationships\">",
    );
    for r in rels {
        out.push_str(&format!(
            "<Relationship Id=\"{}\" Type=\"{}\" Target=\"{}\"{}/>",
            escape_attr(&r.id),
            escape_attr(&r.rel_type),
            escape_attr(&r.target),
            if r.external {
                " TargetMode=\"External\""
            } else {
                ""
            }
        ));
    }
    out.push_str("</Relationships>");
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_relative_and_absolute_targets() {
        assert_eq!(
            resolve("word/document.xml", "media/image1.png").unwrap(),
            "word/media/image1.png"
        );
        assert_eq!(
            resolve("xl/worksheets/sheet1.xml", "../drawings/d1.xml").unwrap(),
            "xl/drawings/d1.xml"
        );
        assert_eq!(
            resolve("", "/word/document.xml").unwrap(),
            "word/document.xml"
        );
        assert!(resolve("word/document.xml", "../../etc/passwd").is_err());
        assert_eq!(
            rels_name_for("word/document.xml"),
            "word/_rels/document.xml.rels"
        );
    }
}
