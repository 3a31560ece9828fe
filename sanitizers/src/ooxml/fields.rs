//! Word complex fields (`w:fldChar` begin / `w:instrText` / separate / end).
//!
//! Owns: finding every complex field in a WordprocessingML tree, deciding it by the first word
//! of its instruction against the policy's allowlist, and removing the field code of every
//! other field (DDE, DDEAUTO, INCLUDETEXT, INCLUDEPICTURE…) while keeping its displayed result.
//! Invariants: instructions split across many runs are joined before deciding; a field nested
//! in the instruction of a removed field goes with it, result included; unbalanced fields are
//! malformed (guessing where a field ends could keep a live instruction). Field characters are
//! found wherever they are — in Word runs, in Office Math runs (`m:r`), and in every nested
//! story: each branch of an `mc:AlternateContent` (a reader runs one of them, so each must be
//! clean and balanced on its own) and each run's non-text content (a text box in a drawing)
//! is a sequence of its own, decided by the same rules.

use crate::error::{Error, Result};
use crate::registry::Context;
use crate::report::What;
use crate::util::short;

use super::xml::{Document, NodeId};
use super::NS_W;

/// Markup compatibility (`mc:AlternateContent`, `mc:Choice`, `mc:Fallback`).
const NS_MC: &[&str] = &["http://schemas.openxmlformats.org/markup-compatibility/2006"];
/// Office Math, whose runs (`m:r`) may hold Word field characters.
const NS_M: &[&str] = &[
    "http://schemas.openxmlformats.org/officeDocument/2006/math",
    "http://purl.oclc.org/ooxml/officeDocument/math",
];

#[derive(Debug)]
enum Token {
    Begin,
    Separate,
    End,
    Instr(String),
    Other,
}

#[derive(Debug, Default)]
struct Field {
    begin: NodeId,
    instr: String,
    instr_items: Vec<NodeId>,
    separate: Option<NodeId>,
    result_items: Vec<NodeId>,
    end: Option<NodeId>,
    in_result: bool,
    /// The field whose instruction this one sits in, if any.
    parent_in_instr: Option<usize>,
}

/// Removes non-allowlisted complex fields from a WordprocessingML tree.
///
/// # Errors
/// Unbalanced field characters.
pub fn neutralise(doc: &mut Document<'_>, part: &str, cx: &mut Context<'_>) -> Result<()> {
    let mut stories = vec![doc.root()];
    while let Some(story) = stories.pop() {
        let mut items = Vec::new();
        collect(doc, story, &mut items, &mut stories, 0);
        neutralise_story(doc, items, part, cx)?;
    }
    Ok(())
}

/// Decides the fields of one story (a sequence of field characters that must balance).
fn neutralise_story(
    doc: &mut Document<'_>,
    items: Vec<(NodeId, Token)>,
    part: &str,
    cx: &mut Context<'_>,
) -> Result<()> {
    if items.iter().all(|(_, t)| matches!(t, Token::Other)) {
        return Ok(());
    }
    let mut fields: Vec<Field> = Vec::new();
    let mut open: Vec<usize> = Vec::new();
    let mut deletions: Vec<NodeId> = Vec::new();
    for (path, token) in items {
        match token {
            Token::Begin => {
                let parent_in_instr = open.last().copied().filter(|&f| !fields[f].in_result);
                if let Some(&f) = open.last() {
                    fields[f].register(path);
                }
                fields.push(Field {
                    begin: path,
                    parent_in_instr,
                    ..Field::default()
                });
                open.push(fields.len() - 1);
            }
            Token::Separate => {
                let &f = open.last().ok_or_else(|| {
                    Error::malformed(format!("{part}: field separator outside a field"))
                })?;
                fields[f].separate = Some(path);
                fields[f].in_result = true;
            }
            Token::End => {
                let f = open.pop().ok_or_else(|| {
                    Error::malformed(format!("{part}: field end outside a field"))
                })?;
                fields[f].end = Some(path);
            }
            Token::Instr(text) => match open.last() {
                Some(&f) if !fields[f].in_result => {
                    fields[f].instr.push_str(&text);
                    fields[f].instr_items.push(path);
                }
                Some(&f) => fields[f].register(path),
                None => {
                    cx.remove(
                        What::Field,
                        part,
                        format!("stray field instruction: {}", short(&text)),
                    );
                    deletions.push(path);
                }
            },
            Token::Other => {
                if let Some(&f) = open.last() {
                    fields[f].register(path);
                }
            }
        }
    }
    if !open.is_empty() {
        return Err(Error::malformed(format!("{part}: a field is never closed")));
    }

    let allow = cx.policy().field_allowlist.clone();
    let mut dropped = vec![false; fields.len()];
    let mut inside_dropped = vec![false; fields.len()];
    for i in 0..fields.len() {
        // Parents come before children, so their decisions are known.
        inside_dropped[i] = fields[i]
            .parent_in_instr
            .is_some_and(|p| dropped[p] || inside_dropped[p]);
        let word = fields[i]
            .instr
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        dropped[i] = inside_dropped[i] || !allow.iter().any(|a| a.eq_ignore_ascii_case(&word));
        if dropped[i] && !inside_dropped[i] {
            cx.remove(
                What::Field,
                part,
                format!("field {}", short(fields[i].instr.trim())),
            );
        }
    }
    for (i, f) in fields.into_iter().enumerate() {
        if !dropped[i] {
            continue;
        }
        deletions.push(f.begin);
        deletions.extend(f.instr_items);
        deletions.extend(f.separate);
        deletions.extend(f.end);
        if inside_dropped[i] {
            deletions.extend(f.result_items);
        }
    }
    for id in deletions {
        doc.remove(id);
    }
    Ok(())
}

impl Field {
    fn register(&mut self, path: NodeId) {
        if self.in_result {
            self.result_items.push(path);
        } else {
            self.instr_items.push(path);
        }
    }
}

/// Lists the children of every run (the field tokens among them) in document order, and the
/// roots of nested stories to decide on their own: each branch of an `mc:AlternateContent`,
/// and each run child with element content (a drawing, a picture, an embedded text box).
fn collect(
    doc: &Document<'_>,
    el: NodeId,
    out: &mut Vec<(NodeId, Token)>,
    stories: &mut Vec<NodeId>,
    depth: usize,
) {
    // The parser bounds nesting well below this; a deeper tree cannot exist here.
    if depth > 256 {
        return;
    }
    let is_run = doc.is(el, NS_W, "r") || doc.is(el, NS_M, "r");
    for c in doc.child_elements(el) {
        let token = if doc.is(c, NS_W, "fldChar") {
            match doc.attr_ns(c, NS_W, "fldCharType").as_deref() {
                Some("begin") => Token::Begin,
                Some("separate") => Token::Separate,
                Some("end") => Token::End,
                _ => Token::Other,
            }
        } else if doc.is(c, NS_W, "instrText") || doc.is(c, NS_W, "delInstrText") {
            Token::Instr(doc.text(c))
        } else if doc.is(c, NS_MC, "AlternateContent") {
            stories.extend(doc.child_elements(c));
            Token::Other
        } else if is_run {
            if doc.local(c) == "rPr" {
                continue;
            }
            if doc.child_elements(c).next().is_some() {
                stories.push(c);
            }
            Token::Other
        } else {
            collect(doc, c, out, stories, depth + 1);
            continue;
        };
        out.push((c, token));
    }
}
