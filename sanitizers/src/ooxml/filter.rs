//! Re-serialising one kept XML part with its active elements removed.
//!
//! Owns: the element-level rules — elements referencing a removed relationship go (hyperlinks
//! only lose the reference, keeping their text), Word simple and complex fields outside the
//! allowlist become their displayed result, spreadsheet formulas that reach outside the
//! workbook (external references, DDE) lose the formula and keep the cached value, auto-run
//! defined names and names of removed macro sheets go, and containers left empty are dropped.
//! Also owns the package-wide consistency check for removed Excel 4.0 macro sheets.
//! Invariants: the output is parsed again by the registry's re-check; anything this module
//! cannot remove while keeping the workbook consistent is an error (quarantine), not a guess.

use crate::util::short;
use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::registry::Context;
use crate::report::What;

use super::xml::{Document, NodeId};
use super::{fields, NS_R, NS_S, NS_W};

/// Facts gathered across parts while rewriting a package.
#[derive(Debug, Default)]
pub struct PackageState {
    /// Names of sheets whose relationship was removed (macro and dialog sheets).
    removed_sheets: Vec<String>,
    /// Formulas in kept parts that still name a removed sheet.
    dangling: Vec<String>,
    /// A defined name scoped by sheet index survived next to a removed sheet.
    local_names_with_removed_sheet: bool,
}

impl PackageState {
    /// A copy for a part rewritten on another thread: what the main part decided, none of
    /// its findings.
    pub fn fork(&self) -> Self {
        Self {
            removed_sheets: self.removed_sheets.clone(),
            dangling: Vec::new(),
            local_names_with_removed_sheet: false,
        }
    }

    /// Takes in what a [`PackageState::fork`] found. Only the workbook (rewritten first,
    /// alone) may remove sheets; a forked part that did would have been filtered without
    /// its siblings knowing, so that makes the package inconsistent.
    pub fn join(&mut self, forked: Self) {
        if forked.removed_sheets.len() > self.removed_sheets.len() {
            self.dangling
                .push("a sheet removed outside the workbook part".to_string());
        }
        self.dangling.extend(forked.dangling);
        self.local_names_with_removed_sheet |= forked.local_names_with_removed_sheet;
    }

    /// Fails when removing macro sheets left the workbook inconsistent.
    ///
    /// # Errors
    /// [`Error::is_unsupported`] naming the first dangling reference.
    pub fn check_consistent(&self) -> Result<()> {
        if let Some(first) = self.dangling.first() {
            return Err(Error::unsupported(format!(
                "a macro sheet cannot be removed cleanly: {first} still refers to it"
            )));
        }
        if self.local_names_with_removed_sheet {
            return Err(Error::unsupported(
                "a macro sheet cannot be removed cleanly: sheet-scoped names would shift",
            ));
        }
        Ok(())
    }
}

/// Parses, filters and re-serialises one XML part.
///
/// # Errors
/// Malformed XML or fields, or a deadline.
pub fn rewrite_part(
    name: &str,
    bytes: &[u8],
    removed: &HashMap<String, What>,
    state: &mut PackageState,
    cx: &mut Context<'_>,
) -> Result<Vec<u8>> {
    let mut doc = Document::parse(bytes)?;
    let location = format!("/{name}");
    let root = doc.root();
    // Complex fields need a document-order walk; parts without any skip it.
    let has_fields = contains(bytes, b"fldChar") || contains(bytes, b"nstrText");
    if has_fields && NS_W.contains(&doc.ns(root)) {
        fields::neutralise(&mut doc, &location, cx)?;
    }
    let is_workbook = doc.is(root, NS_S, "workbook");
    let mut filter = Filter {
        part: location,
        removed,
        state,
        cx,
        sheets_dropped: false,
    };
    filter.children(&mut doc, root)?;
    if is_workbook && filter.sheets_dropped {
        reset_views(&mut doc);
    }
    // A re-check only asks whether the filter still removes anything (the caller looks at
    // the context's findings); the package is not written again, so neither is the part.
    if filter.cx.is_recheck() {
        return Ok(Vec::new());
    }
    Ok(doc.write())
}

struct Filter<'a, 'c, 'p> {
    part: String,
    removed: &'a HashMap<String, What>,
    state: &'a mut PackageState,
    cx: &'c mut Context<'p>,
    sheets_dropped: bool,
}

enum Decision {
    Keep,
    Drop,
    Unwrap,
}

/// Containers that are invalid or pointless once their last child is gone.
const DROP_WHEN_EMPTY: &[&str] = &[
    "externalReferences",
    "definedNames",
    "controls",
    "oleObjects",
    "hyperlinks",
];

/// Elements that only lose their relationship attribute (their text stays).
const LINK_ELEMENTS: &[&str] = &["hyperlink", "hlinkClick", "hlinkHover", "hlinkMouseOver"];

impl Filter<'_, '_, '_> {
    fn children(&mut self, doc: &mut Document<'_>, parent: NodeId) -> Result<()> {
        // Removal only marks nodes, so sibling links stay valid while we edit.
        let mut next = doc.first_child(parent);
        while let Some(c) = next {
            next = doc.next_sibling(c);
            if doc.node(c).removed || !doc.is_element(c) {
                continue;
            }
            match self.decide(doc, c)? {
                Decision::Keep => {
                    self.children(doc, c)?;
                    if DROP_WHEN_EMPTY.contains(&doc.local(c))
                        && doc.child_elements(c).next().is_none()
                    {
                        doc.remove(c);
                    }
                }
                Decision::Drop => doc.remove(c),
                Decision::Unwrap => {
                    self.children(doc, c)?;
                    doc.unwrap(c);
                }
            }
        }
        Ok(())
    }

    fn decide(&mut self, doc: &mut Document<'_>, el: NodeId) -> Result<Decision> {
        let removed = self.removed;
        let refs_removed = doc
            .attrs(el)
            .any(|a| NS_R.contains(&a.ns()) && removed.contains_key(&a.value()));
        if refs_removed {
            if LINK_ELEMENTS.contains(&doc.local(el)) {
                for a in doc.attrs_mut(el) {
                    if NS_R.contains(&a.ns()) && removed.contains_key(&a.value()) {
                        a.removed = true;
                    }
                }
                return Ok(Decision::Keep);
            }
            if doc.is(el, NS_S, "sheet") {
                if let Some(name) = doc.attr(el, "name") {
                    self.state.removed_sheets.push(name);
                }
                self.sheets_dropped = true;
            }
            return Ok(Decision::Drop);
        }
        if doc.is(el, NS_W, "fldSimple") {
            let instr = doc.attr_ns(el, NS_W, "instr").unwrap_or_default();
            let word = instr
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_ascii_uppercase();
            if !self
                .cx
                .policy()
                .field_allowlist
                .iter()
                .any(|a| a.eq_ignore_ascii_case(&word))
            {
                self.cx.remove(
                    What::Field,
                    self.part.clone(),
                    format!("field {}", short(instr.trim())),
                );
                return Ok(Decision::Unwrap);
            }
        }
        if doc.is(el, NS_S, "f") {
            let formula = doc.text(el);
            if reaches_outside(&formula) {
                self.cx.remove(
                    What::Field,
                    self.part.clone(),
                    format!("external or DDE formula {}", short(&formula)),
                );
                return Ok(Decision::Drop);
            }
            if self
                .state
                .removed_sheets
                .iter()
                .any(|s| names_sheet(&formula, s))
            {
                self.state
                    .dangling
                    .push(format!("{} formula {}", self.part, short(&formula)));
            }
        }
        if doc.is(el, NS_S, "definedName") {
            let name = doc.attr(el, "name").unwrap_or_default();
            let text = doc.text(el);
            if is_auto_run_name(&name) {
                self.cx.remove(
                    What::XlmMacroSheet,
                    self.part.clone(),
                    format!("auto-run name {name}"),
                );
                return Ok(Decision::Drop);
            }
            if self
                .state
                .removed_sheets
                .iter()
                .any(|s| names_sheet(&text, s))
            {
                self.cx.remove(
                    What::XlmMacroSheet,
                    self.part.clone(),
                    format!("name {name} on a removed macro sheet"),
                );
                return Ok(Decision::Drop);
            }
            if reaches_outside(&text) {
                self.cx.remove(
                    What::ExternalReference,
                    self.part.clone(),
                    format!("name {name} refers outside the workbook"),
                );
                return Ok(Decision::Drop);
            }
            if !self.state.removed_sheets.is_empty() && doc.attr(el, "localSheetId").is_some() {
                self.state.local_names_with_removed_sheet = true;
            }
        }
        Ok(Decision::Keep)
    }
}

/// After sheets are removed, the active and first visible tab may point past the end.
fn reset_views(doc: &mut Document<'_>) {
    let views: Vec<NodeId> = doc
        .child_elements(doc.root())
        .filter(|&c| doc.is(c, NS_S, "bookViews"))
        .flat_map(|c| doc.child_elements(c).collect::<Vec<_>>())
        .collect();
    for v in views {
        for a in doc.attrs_mut(v) {
            if a.qname() == "activeTab" || a.qname() == "firstSheet" {
                a.removed = true;
            }
        }
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(hay, needle).is_some()
}

fn is_auto_run_name(name: &str) -> bool {
    let n = name.trim_start_matches("_xlnm.").to_ascii_lowercase();
    [
        "auto_open",
        "auto_close",
        "auto_activate",
        "auto_deactivate",
    ]
    .iter()
    .any(|p| n.starts_with(p))
}

/// A formula that reaches outside the workbook: an external workbook index (`[1]Sheet!A1`)
/// or a DDE call (`cmd|'/c calc'!A1`).
fn reaches_outside(formula: &str) -> bool {
    let mut in_string = false;
    let bytes = formula.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'"' => in_string = !in_string,
            b'|' if !in_string => return true,
            b'[' if !in_string => {
                let digits = bytes[i + 1..]
                    .iter()
                    .take_while(|c| c.is_ascii_digit())
                    .count();
                if digits > 0 && bytes.get(i + 1 + digits) == Some(&b']') {
                    return true;
                }
            }
            _ => {}
        }
    }
    false
}

fn names_sheet(formula: &str, sheet: &str) -> bool {
    formula.contains(&format!("{sheet}!"))
        || formula.contains(&format!("'{}'!", sheet.replace('\'', "''")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spots_formulas_that_leave_the_workbook() {
        assert!(reaches_outside("cmd|' /C calc'!A0"));
        assert!(reaches_outside("[1]Sheet1!$A$1"));
        assert!(!reaches_outside("SUM(A1:A3)"));
        assert!(!reaches_outside("\"a|b\"&A1"));
        assert!(!reaches_outside("Table1[Column]"));
    }
}
