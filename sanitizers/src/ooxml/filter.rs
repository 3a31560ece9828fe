//! Re-serialising one kept XML part with its active elements removed.
//!
//! Owns: the element-level rules — elements referencing a removed relationship go (hyperlinks
//! only lose the reference, keeping their text), Word simple and complex fields outside the
//! allowlist become their displayed result, spreadsheet formulas that reach outside the
//! workbook (judged by [`crate::formula`]: DDE, other files, web calls, hyperlinks) go wherever
//! they live — a cell loses its formula and keeps the cached value; a data validation,
//! conditional format, sparkline or table-column formula goes with its owner; a defined name
//! goes — auto-run defined names and names of removed macro sheets go, and containers left
//! empty are dropped.
//! Also owns the package-wide consistency check for removed Excel 4.0 macro sheets.
//! Invariants: the output is parsed again by the registry's re-check; anything this module
//! cannot remove while keeping the workbook consistent is an error (quarantine), not a guess.

use crate::util::short;
use std::collections::{HashMap, HashSet};

use crate::error::{Error, Result};
use crate::formula;
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
    let keep_links = cx.policy().keep_links;
    // A shared formula's followers hold no text of their own: they go with their leader,
    // wherever in the sheet they are.
    let dropped_shared = if doc.is(root, NS_S, "worksheet") && contains(bytes, b"shared") {
        shared_leaders_reaching_outside(&doc, keep_links)
    } else {
        HashSet::new()
    };
    let mut filter = Filter {
        part: location,
        removed,
        state,
        cx,
        sheets_dropped: false,
        keep_links,
        dropped_shared,
        cell: String::new(),
        range: String::new(),
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
    /// The policy's link setting, for `HYPERLINK` formulas.
    keep_links: bool,
    /// `si` of shared formulas whose leader reaches outside the workbook.
    dropped_shared: HashSet<String>,
    /// The reference of the cell being filtered.
    cell: String,
    /// The range of the conditional format being filtered.
    range: String,
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

/// Containers (in a spreadsheet namespace) that go when the filter removed the last child
/// they need ("" for any child element): an `x14` conditional format keeps its `xm:sqref`
/// after its last rule goes, and is pointless without one.
const PRUNE_WHEN_EMPTIED: &[(&str, &str)] = &[
    ("dataValidations", "dataValidation"),
    ("conditionalFormatting", "cfRule"),
    ("conditionalFormattings", "conditionalFormatting"),
    ("sparklineGroups", "sparklineGroup"),
    ("sparklineGroup", "sparklines"),
    ("sparklines", "sparkline"),
    ("ext", ""),
    ("extLst", ""),
];

/// Elements that own formulas and go whole when one of them reaches outside the workbook.
const FORMULA_OWNERS: &[&str] = &[
    "dataValidation",
    "cfRule",
    "sparkline",
    "calculatedColumnFormula",
    "totalsRowFormula",
];

/// Elements that hold one formula as their text.
const FORMULA_ELEMENTS: &[&str] = &["f", "formula", "formula1", "formula2"];

/// The `xm` namespace of spreadsheet extension formulas (`xm:f`, `xm:sqref`).
const NS_XM: &str = "http://schemas.microsoft.com/office/excel/2006/main";

/// SpreadsheetML and its Microsoft extension namespaces (`x14`, `x15`, `xm`…).
fn is_sheet_ns(ns: &str) -> bool {
    NS_S.contains(&ns)
        || ns == NS_XM
        || ns.starts_with("http://schemas.microsoft.com/office/spreadsheetml/")
}

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
                    let prune = PRUNE_WHEN_EMPTIED
                        .iter()
                        .find(|(l, _)| *l == doc.local(c))
                        .filter(|_| is_sheet_ns(doc.ns(c)))
                        .map(|(_, required)| *required);
                    let count = |doc: &Document<'_>, required: &str| {
                        doc.child_elements(c)
                            .filter(|&k| required.is_empty() || doc.local(k) == required)
                            .count()
                    };
                    let before = prune.map(|r| count(doc, r));
                    self.children(doc, c)?;
                    if DROP_WHEN_EMPTY.contains(&doc.local(c))
                        && doc.child_elements(c).next().is_none()
                    {
                        doc.remove(c);
                    }
                    if let (Some(required), Some(before)) = (prune, before) {
                        let after = count(doc, required);
                        if before > 0 && after == 0 {
                            doc.remove(c);
                        } else if after < before {
                            // `count` would now lie; it is optional.
                            for a in doc.attrs_mut(c) {
                                if a.qname() == "count" {
                                    a.removed = true;
                                }
                            }
                        }
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
        if is_sheet_ns(doc.ns(el)) {
            let local = doc.local(el);
            // Where the formulas below sit, for the report.
            if local == "c" {
                self.cell = doc.attr(el, "r").unwrap_or_default();
            } else if local == "conditionalFormatting" {
                self.range = sqref(doc, el);
            }
            if FORMULA_OWNERS.contains(&local) {
                let formulas = owned_formulas(doc, el);
                if let Some((reach, f)) = formulas
                    .iter()
                    .find_map(|f| formula::judge(f, self.keep_links).map(|r| (r, f)))
                {
                    let label = owner_label(doc, el, &self.range);
                    self.cx.remove(
                        reach.what,
                        self.part.clone(),
                        format!("{label}: {} {}", reach.why, short(f)),
                    );
                    return Ok(Decision::Drop);
                }
            } else if FORMULA_ELEMENTS.contains(&local) {
                let formula = doc.text(el);
                let is_cell = doc.is(el, NS_S, "f");
                let follower = is_cell
                    && doc.attr(el, "t").as_deref() == Some("shared")
                    && doc
                        .attr(el, "si")
                        .is_some_and(|si| self.dropped_shared.contains(&si));
                if let Some(reach) = formula::judge(&formula, self.keep_links) {
                    let label = if is_cell {
                        format!("cell {}", self.cell)
                    } else {
                        format!("{} formula", doc.local(el))
                    };
                    self.cx.remove(
                        reach.what,
                        self.part.clone(),
                        format!("{label}: {} {}", reach.why, short(&formula)),
                    );
                    return Ok(Decision::Drop);
                }
                if follower && formula.trim().is_empty() {
                    // Reported with its leader; a follower alone would be a broken cell.
                    return Ok(Decision::Drop);
                }
                if is_cell
                    && self
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
            if let Some(reach) = formula::judge(&text, self.keep_links) {
                self.cx.remove(
                    reach.what,
                    self.part.clone(),
                    format!("name {name}: {} {}", reach.why, short(&text)),
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

/// Every formula an owner holds: the text of its formula elements (`formula1`, `xm:f`…), a
/// table column's own text, and the `val` of `cfvo type="formula"` thresholds.
fn owned_formulas(doc: &Document<'_>, owner: NodeId) -> Vec<String> {
    let mut out = Vec::new();
    if matches!(
        doc.local(owner),
        "calculatedColumnFormula" | "totalsRowFormula"
    ) {
        out.push(doc.text(owner));
        return out;
    }
    let mut stack = vec![owner];
    while let Some(n) = stack.pop() {
        for c in doc.child_elements(n) {
            let local = doc.local(c);
            if FORMULA_ELEMENTS.contains(&local) {
                out.push(doc.text(c));
            } else {
                if local == "cfvo" && doc.attr(c, "type").as_deref() == Some("formula") {
                    out.extend(doc.attr(c, "val"));
                }
                stack.push(c);
            }
        }
    }
    out
}

/// The range an element applies to: its `sqref` attribute or its `xm:sqref` child.
fn sqref(doc: &Document<'_>, el: NodeId) -> String {
    doc.attr(el, "sqref").unwrap_or_else(|| {
        doc.child_elements(el)
            .find(|&c| doc.local(c) == "sqref")
            .map(|c| doc.text(c))
            .unwrap_or_default()
    })
}

/// How a removed formula owner is named in the report.
fn owner_label(doc: &Document<'_>, owner: NodeId, range: &str) -> String {
    match doc.local(owner) {
        "dataValidation" => format!("data validation {}", sqref(doc, owner)),
        "cfRule" => format!("conditional format {range}"),
        "sparkline" => format!("sparkline {}", sqref(doc, owner)),
        other => other.to_string(),
    }
}

/// The `si` of every shared-formula leader in a worksheet that reaches outside the workbook.
fn shared_leaders_reaching_outside(doc: &Document<'_>, keep_links: bool) -> HashSet<String> {
    let mut out = HashSet::new();
    let mut stack = vec![doc.root()];
    while let Some(n) = stack.pop() {
        for c in doc.child_elements(n) {
            if doc.is(c, NS_S, "f") {
                if doc.attr(c, "t").as_deref() == Some("shared")
                    && formula::judge(&doc.text(c), keep_links).is_some()
                {
                    out.extend(doc.attr(c, "si"));
                }
            } else {
                stack.push(c);
            }
        }
    }
    out
}

fn names_sheet(formula: &str, sheet: &str) -> bool {
    formula.contains(&format!("{sheet}!"))
        || formula.contains(&format!("'{}'!", sheet.replace('\'', "''")))
}
