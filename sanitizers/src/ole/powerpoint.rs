//! PowerPoint 97–2003: the `PowerPoint Document` record stream and its `Current User` pointer.
//!
//! Owns: looking into every embedded object storage (a program or shortcut in a package blocks
//! the file), and rebuilding the document stream from its persist objects: the last edit only
//! (earlier edits are dropped), without the VBAInfoContainer (in the DocInfoListContainer) and
//! the VBA project storage it names, without each ExOleEmbedContainer and the ExOleObjStg it names (the shape and its
//! picture in `Pictures` stay, so the slide still shows the object's last image), followed by
//! one fresh PersistDirectoryAtom and UserEditAtom, and a new `Current User` that points at it.
//! Invariants: a persist object is copied whole unless it is the DocumentContainer, which is
//! re-assembled from its kept child records; every offset in the output (persist directory,
//! UserEditAtom, CurrentUserAtom) is computed from what was written; the output holds no
//! VBAInfoAtom that names a project and no object storage — links and ActiveX controls keep theirs, so they hold
//! the file; an unknown persist object type, a broken edit chain or a dangling reference holds
//! the file.
//! Must never: write an offset it did not compute, or keep a persist object it cannot name.

use std::collections::{BTreeMap, BTreeSet};

use super::{inflate_object, judge_embedded_storage};
use crate::error::{Error, Result};
use crate::registry::Context;
use crate::report::What;

const DOCUMENT: u16 = 0x03E8;
const SLIDE: u16 = 0x03EE;
const NOTES: u16 = 0x03F0;
const MAIN_MASTER: u16 = 0x03F8;
const HANDOUT: u16 = 0x0FC9;
const OBJECT_STORAGE: u16 = 0x1011;
const CRYPT_SESSION: u16 = 0x2F14;
const VBA_INFO: u16 = 0x03FF;
const VBA_INFO_ATOM: u16 = 0x0400;
const EX_OBJ_LIST: u16 = 0x0409;
const DOC_INFO_LIST: u16 = 0x07D0;
const OLE_EMBED: u16 = 0x0FCC;
const OLE_OBJ_ATOM: u16 = 0x0FC3;
const USER_EDIT: u16 = 0x0FF5;
const CURRENT_USER: u16 = 0x0FF6;
const PERSIST_DIRECTORY: u16 = 0x1772;

const TOKEN_PLAIN: u32 = 0xE391_C05F;
const TOKEN_ENCRYPTED: u32 = 0xF3D1_C4DF;

/// Edits followed before the chain is taken to be a loop.
const MAX_EDITS: usize = 4096;

/// The rebuilt streams.
pub(super) struct Rebuilt {
    pub document: Vec<u8>,
    pub current_user: Vec<u8>,
}

/// A record header: version and instance, type, and the body's range in its buffer.
#[derive(Clone)]
struct Rec {
    ver_instance: u16,
    kind: u16,
    at: usize,
    body: std::ops::Range<usize>,
}

impl Rec {
    fn is_container(&self) -> bool {
        self.ver_instance & 0x000F == 0x000F
    }
    fn end(&self) -> usize {
        self.body.end
    }
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    b.get(at..at.checked_add(2)?)
        .map(|x| u16::from_le_bytes([x[0], x[1]]))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at.checked_add(4)?)
        .map(|x| u32::from_le_bytes([x[0], x[1], x[2], x[3]]))
}

/// The record at `at`, which must end by `end`.
fn rec_at(b: &[u8], at: usize, end: usize) -> Result<Rec> {
    let header = (|| Some((u16_at(b, at)?, u16_at(b, at + 2)?, u32_at(b, at + 4)?)))();
    let (ver_instance, kind, len) = header
        .ok_or_else(|| Error::malformed(format!("PowerPoint record header at {at} is cut off")))?;
    let start = at + 8;
    let stop = start
        .checked_add(len as usize)
        .filter(|&n| n <= end && n <= b.len())
        .ok_or_else(|| {
            Error::malformed(format!(
                "PowerPoint record {kind:#06x} at {at} runs past its container"
            ))
        })?;
    Ok(Rec {
        ver_instance,
        kind,
        at,
        body: start..stop,
    })
}

/// The direct children of a container.
fn children(b: &[u8], parent: &Rec) -> Result<Vec<Rec>> {
    let mut out = Vec::new();
    let mut at = parent.body.start;
    while at < parent.body.end {
        let r = rec_at(b, at, parent.body.end)?;
        at = r.end();
        out.push(r);
    }
    Ok(out)
}

fn header(ver_instance: u16, kind: u16, len: usize) -> Result<[u8; 8]> {
    let len = u32::try_from(len).map_err(|_| Error::malformed("PowerPoint record too long"))?;
    let mut h = [0u8; 8];
    h[..2].copy_from_slice(&ver_instance.to_le_bytes());
    h[2..4].copy_from_slice(&kind.to_le_bytes());
    h[4..].copy_from_slice(&len.to_le_bytes());
    Ok(h)
}

/// Walks the whole record tree: encryption holds the file, and every object storage is
/// looked into (a program or shortcut in a package blocks the document) before it goes.
pub(super) fn check_powerpoint(stream: &[u8], cx: &mut Context<'_>) -> Result<()> {
    let mut stack = vec![(0usize, stream.len())];
    while let Some((mut at, end)) = stack.pop() {
        while at + 8 <= end {
            cx.check_deadline()?;
            let r = rec_at(stream, at, end)?;
            match r.kind {
                CRYPT_SESSION => return Err(Error::encrypted("PowerPoint file is encrypted")),
                OBJECT_STORAGE => {
                    let data = &stream[r.body.clone()];
                    let storage = if r.ver_instance >> 4 == 1 {
                        inflate_object(data, &cx.policy().limits)?
                    } else {
                        data.to_vec()
                    };
                    judge_embedded_storage(&storage, &format!("ExOleObjStg at {at}"), cx)?;
                }
                _ => {}
            }
            if r.is_container() {
                stack.push((r.body.start, r.body.end));
            }
            at = r.end();
        }
    }
    Ok(())
}

/// The fields of a UserEditAtom this rebuild reads and writes.
struct UserEdit {
    last_slide_id: u32,
    version: u16,
    minor: u8,
    major: u8,
    offset_last_edit: u32,
    offset_persist_directory: u32,
    doc_persist_id: u32,
    persist_id_seed: u32,
    last_view: u16,
}

fn user_edit(stream: &[u8], offset: u32) -> Result<UserEdit> {
    let r = rec_at(stream, offset as usize, stream.len())?;
    let b = &stream[r.body.clone()];
    if r.kind != USER_EDIT {
        return Err(Error::malformed(format!(
            "PowerPoint edit offset {offset} does not point at a UserEditAtom"
        )));
    }
    match b.len() {
        0x1C => {}
        0x20 => {
            return Err(Error::encrypted(
                "PowerPoint file is encrypted (UserEditAtom names a crypt session)",
            ))
        }
        n => {
            return Err(Error::malformed(format!(
                "PowerPoint UserEditAtom is {n} bytes"
            )))
        }
    }
    let field = |at| u32_at(b, at).unwrap_or(0);
    Ok(UserEdit {
        last_slide_id: field(0),
        version: u16_at(b, 4).unwrap_or(0),
        minor: b[6],
        major: b[7],
        offset_last_edit: field(8),
        offset_persist_directory: field(12),
        doc_persist_id: field(16),
        persist_id_seed: field(20),
        last_view: u16_at(b, 24).unwrap_or(0),
    })
}

/// Adds one PersistDirectoryAtom's entries to `map` (later calls override earlier ones).
fn read_directory(stream: &[u8], offset: u32, map: &mut BTreeMap<u32, u32>) -> Result<()> {
    let r = rec_at(stream, offset as usize, stream.len())?;
    if r.kind != PERSIST_DIRECTORY {
        return Err(Error::malformed(format!(
            "PowerPoint persist directory offset {offset} does not point at one"
        )));
    }
    let b = &stream[r.body.clone()];
    let mut at = 0usize;
    while at < b.len() {
        let entry = u32_at(b, at)
            .ok_or_else(|| Error::malformed("PowerPoint persist directory entry is cut off"))?;
        let (first, count) = (entry & 0x000F_FFFF, entry >> 20);
        at += 4;
        for i in 0..count {
            let off = u32_at(b, at)
                .ok_or_else(|| Error::malformed("PowerPoint persist directory is cut off"))?;
            at += 4;
            map.insert(first + i, off);
        }
    }
    Ok(())
}

/// The parsed CurrentUserAtom: its offset to the current edit and the fields written back.
struct CurrentUser {
    offset_to_current_edit: u32,
    /// Everything after offsetToCurrentEdit, field by field: lenUserName, docFileVersion,
    /// major and minor version, the ANSI name, relVersion and the optional Unicode name.
    len_user_name: u16,
    ansi_name: Vec<u8>,
    rel_version: u32,
    unicode_name: Vec<u8>,
}

fn current_user(bytes: &[u8]) -> Result<CurrentUser> {
    let r = rec_at(bytes, 0, bytes.len())?;
    let b = &bytes[r.body.clone()];
    if r.kind != CURRENT_USER || b.len() < 20 {
        return Err(Error::malformed(
            "Current User stream holds no CurrentUserAtom",
        ));
    }
    let token = u32_at(b, 4).unwrap_or(0);
    match token {
        TOKEN_PLAIN => {}
        TOKEN_ENCRYPTED => return Err(Error::encrypted("PowerPoint file is encrypted")),
        _ => {
            return Err(Error::malformed(
                "CurrentUserAtom has an unknown header token",
            ))
        }
    }
    if u32_at(b, 0) != Some(0x14) || u16_at(b, 14) != Some(0x03F4) || b.get(16..18) != Some(&[3, 0])
    {
        return Err(Error::unsupported(
            "PowerPoint CurrentUserAtom of an unknown version",
        ));
    }
    let len_user_name = u16_at(b, 12).unwrap_or(0);
    let name_end = 20 + usize::from(len_user_name);
    let ansi_name = b
        .get(20..name_end)
        .ok_or_else(|| Error::malformed("CurrentUserAtom user name is cut off"))?
        .to_vec();
    let rel_version = u32_at(b, name_end)
        .ok_or_else(|| Error::malformed("CurrentUserAtom relVersion is cut off"))?;
    let unicode_name = b[name_end + 4..].to_vec();
    if !unicode_name.is_empty() && unicode_name.len() != 2 * usize::from(len_user_name) {
        return Err(Error::malformed(
            "CurrentUserAtom Unicode user name has the wrong size",
        ));
    }
    Ok(CurrentUser {
        offset_to_current_edit: u32_at(b, 8).unwrap_or(0),
        len_user_name,
        ansi_name,
        rel_version,
        unicode_name,
    })
}

/// Persist objects a presentation may hold, by record type.
fn known_persist_object(kind: u16) -> bool {
    matches!(
        kind,
        DOCUMENT | SLIDE | NOTES | MAIN_MASTER | HANDOUT | OBJECT_STORAGE | CRYPT_SESSION
    )
}

/// The persist id an atom's field names, at `field` in its body.
fn persist_ref(stream: &[u8], container: &Rec, atom: u16, field: usize) -> Result<u32> {
    children(stream, container)?
        .into_iter()
        .find(|c| c.kind == atom)
        .and_then(|c| u32_at(&stream[c.body.clone()], field))
        .ok_or_else(|| {
            Error::malformed(format!(
                "PowerPoint record {:#06x} has no {atom:#06x} atom naming its storage",
                container.kind
            ))
        })
}

/// Rebuilds the document stream from the persist objects of its last edit, without VBA and
/// embedded objects, and the `Current User` stream that points at it.
pub(super) fn rebuild(stream: &[u8], user: &[u8], cx: &mut Context<'_>) -> Result<Rebuilt> {
    let current = current_user(user)?;

    // The edit chain, newest first; the persist directory is read oldest first so that newer
    // entries replace older ones.
    let mut edits = Vec::new();
    let mut seen = BTreeSet::new();
    let mut offset = current.offset_to_current_edit;
    loop {
        cx.check_deadline()?;
        if !seen.insert(offset) || edits.len() >= MAX_EDITS {
            return Err(Error::malformed("PowerPoint edit chain loops"));
        }
        let edit = user_edit(stream, offset)?;
        offset = edit.offset_last_edit;
        edits.push(edit);
        if offset == 0 {
            break;
        }
    }
    let mut directory = BTreeMap::new();
    for edit in edits.iter().rev() {
        // Every edit may name the same large directory: thousands of merges of it are minutes
        // of work from a small file, so the clock is looked at between them.
        cx.check_deadline()?;
        read_directory(stream, edit.offset_persist_directory, &mut directory)?;
    }
    let last = &edits[0];
    // persistIdSeed is at least every id in use (LibreOffice writes the largest id itself).
    if directory
        .keys()
        .any(|&id| id == 0 || id > last.persist_id_seed)
    {
        return Err(Error::malformed(
            "PowerPoint persist id outside 1..=persistIdSeed",
        ));
    }

    // Every persist object, by id. Persist objects never overlap, so together they fit in the stream; ids that share or
    // overlap bytes would make the copy larger than the input (and are not a presentation).
    let mut objects: BTreeMap<u32, Rec> = BTreeMap::new();
    let mut total = 0usize;
    for (&id, &off) in &directory {
        cx.check_deadline()?;
        let r = rec_at(stream, off as usize, stream.len())?;
        total = total.saturating_add(r.end() - r.at);
        if total > stream.len() {
            return Err(Error::malformed("PowerPoint persist objects overlap"));
        }
        if !known_persist_object(r.kind) {
            return Err(Error::unsupported(format!(
                "PowerPoint persist object {id} of unknown type {:#06x}",
                r.kind
            )));
        }
        if r.kind == CRYPT_SESSION {
            return Err(Error::encrypted("PowerPoint file is encrypted"));
        }
        objects.insert(id, r);
    }
    let doc = objects
        .get(&last.doc_persist_id)
        .filter(|r| r.kind == DOCUMENT && r.is_container())
        .cloned()
        .ok_or_else(|| Error::malformed("PowerPoint edit names no DocumentContainer"))?;

    // The DocumentContainer, re-assembled from its kept children.
    let mut dropped: BTreeSet<u32> = BTreeSet::new();
    let mut storage_of = |id: u32, what: &str| -> Result<()> {
        match objects.get(&id) {
            Some(r) if r.kind == OBJECT_STORAGE => {
                dropped.insert(id);
                Ok(())
            }
            _ => Err(Error::malformed(format!(
                "PowerPoint {what} names persist object {id}, which is no storage"
            ))),
        }
    };
    let mut doc_body = Vec::with_capacity(doc.body.len());
    for child in children(stream, &doc)? {
        cx.check_deadline()?;
        // A VBAInfoContainer belongs in the DocInfoListContainer; the object list holds the
        // embedded objects. Both lists are re-assembled from the children they keep.
        let list_of = match child.kind {
            DOC_INFO_LIST | EX_OBJ_LIST if child.is_container() => children(stream, &child)?,
            _ => {
                doc_body.extend_from_slice(&stream[child.at..child.end()]);
                continue;
            }
        };
        let mut list = Vec::with_capacity(child.body.len());
        for item in list_of {
            match (child.kind, item.kind) {
                // LibreOffice writes an empty VBAInfoContainer (persist id 0: no project);
                // it names nothing and stays.
                (DOC_INFO_LIST, VBA_INFO) if persist_ref(stream, &item, VBA_INFO_ATOM, 0)? == 0 => {
                    list.extend_from_slice(&stream[item.at..item.end()]);
                }
                (DOC_INFO_LIST, VBA_INFO) => {
                    let id = persist_ref(stream, &item, VBA_INFO_ATOM, 0)?;
                    storage_of(id, "VBAInfoAtom")?;
                    cx.remove(
                        What::Macro,
                        "PowerPoint Document",
                        format!("VBA project (VBAInfoContainer, storage persist object {id})"),
                    );
                }
                (EX_OBJ_LIST, OLE_EMBED) => {
                    let id = persist_ref(stream, &item, OLE_OBJ_ATOM, 16)?;
                    storage_of(id, "ExOleObjAtom")?;
                    cx.remove(
                        What::OleObject,
                        "PowerPoint Document",
                        format!(
                            "embedded OLE object (storage persist object {id}); its picture is kept"
                        ),
                    );
                }
                _ => list.extend_from_slice(&stream[item.at..item.end()]),
            }
        }
        doc_body.extend_from_slice(&header(child.ver_instance, child.kind, list.len())?);
        doc_body.extend_from_slice(&list);
    }
    let mut new_doc = header(doc.ver_instance, doc.kind, doc_body.len())?.to_vec();
    new_doc.extend_from_slice(&doc_body);

    if edits.len() > 1 {
        cx.remove(
            What::RevisionHistory,
            "PowerPoint Document",
            format!("{} earlier edits (fast saves)", edits.len() - 1),
        );
    }

    // What is kept must hold no VBA record, no object storage and no reference to one
    // dropped: links and controls keep their storages, and that holds the file as before.
    for (&id, r) in &objects {
        if dropped.contains(&id) || id == last.doc_persist_id {
            continue;
        }
        if r.kind == OBJECT_STORAGE {
            return Err(Error::unsupported(format!(
                "PowerPoint object storage (persist object {id}) of a linked object, control or \
                 unreferenced VBA project: held, not removed"
            )));
        }
        refuse_active_records(stream, r, &dropped, cx)?;
    }
    let doc_rec = rec_at(&new_doc, 0, new_doc.len())?;
    refuse_active_records(&new_doc, &doc_rec, &dropped, cx)?;

    // The new stream: kept persist objects in id order, one directory, one edit.
    let mut out = Vec::with_capacity(stream.len());
    let mut offsets: Vec<(u32, u32)> = Vec::new();
    for (&id, r) in &objects {
        if dropped.contains(&id) {
            continue;
        }
        let at = u32::try_from(out.len())
            .map_err(|_| Error::limit_exceeded("PowerPoint stream too long"))?;
        offsets.push((id, at));
        if id == last.doc_persist_id {
            out.extend_from_slice(&new_doc);
        } else {
            out.extend_from_slice(&stream[r.at..r.end()]);
        }
    }
    let mut dir = Vec::new();
    let mut run_start = 0usize;
    while run_start < offsets.len() {
        let first = offsets[run_start].0;
        let mut run_end = run_start + 1;
        while run_end < offsets.len()
            && offsets[run_end].0 == first + (run_end - run_start) as u32
            && run_end - run_start < 0xFFF
        {
            run_end += 1;
        }
        let count = (run_end - run_start) as u32;
        dir.extend_from_slice(&(first | (count << 20)).to_le_bytes());
        for (_, off) in &offsets[run_start..run_end] {
            dir.extend_from_slice(&off.to_le_bytes());
        }
        run_start = run_end;
    }
    let dir_at = u32::try_from(out.len())
        .map_err(|_| Error::limit_exceeded("PowerPoint stream too long"))?;
    out.extend_from_slice(&header(0, PERSIST_DIRECTORY, dir.len())?);
    out.extend_from_slice(&dir);
    let edit_at = u32::try_from(out.len())
        .map_err(|_| Error::limit_exceeded("PowerPoint stream too long"))?;
    out.extend_from_slice(&header(0, USER_EDIT, 0x1C)?);
    out.extend_from_slice(&last.last_slide_id.to_le_bytes());
    out.extend_from_slice(&last.version.to_le_bytes());
    out.extend_from_slice(&[last.minor, last.major]);
    out.extend_from_slice(&0u32.to_le_bytes()); // offsetLastEdit: no earlier edit
    out.extend_from_slice(&dir_at.to_le_bytes());
    out.extend_from_slice(&last.doc_persist_id.to_le_bytes());
    out.extend_from_slice(&last.persist_id_seed.to_le_bytes());
    out.extend_from_slice(&last.last_view.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());

    let mut body = Vec::new();
    body.extend_from_slice(&0x14u32.to_le_bytes());
    body.extend_from_slice(&TOKEN_PLAIN.to_le_bytes());
    body.extend_from_slice(&edit_at.to_le_bytes());
    body.extend_from_slice(&current.len_user_name.to_le_bytes());
    body.extend_from_slice(&0x03F4u16.to_le_bytes());
    body.extend_from_slice(&[3, 0, 0, 0]);
    body.extend_from_slice(&current.ansi_name);
    body.extend_from_slice(&current.rel_version.to_le_bytes());
    body.extend_from_slice(&current.unicode_name);
    let mut current_user = header(0, CURRENT_USER, body.len())?.to_vec();
    current_user.extend_from_slice(&body);

    Ok(Rebuilt {
        document: out,
        current_user,
    })
}

/// Holds the file when a kept record tree still names a VBA project, holds an embedded object
/// container or refers to a storage that was dropped.
fn refuse_active_records(
    b: &[u8],
    root: &Rec,
    dropped: &BTreeSet<u32>,
    cx: &Context<'_>,
) -> Result<()> {
    let mut stack = vec![root.clone()];
    while let Some(r) = stack.pop() {
        cx.check_deadline()?;
        match r.kind {
            // A VBAInfoAtom left in place must name no project (persist id 0).
            VBA_INFO_ATOM if u32_at(&b[r.body.clone()], 0) != Some(0) => {
                return Err(Error::unsupported(
                    "VBA project outside the PowerPoint document's DocInfoList: held, not removed",
                ))
            }
            OLE_EMBED => {
                return Err(Error::unsupported(
                    "embedded OLE object outside the PowerPoint object list: held, not removed",
                ))
            }
            OLE_OBJ_ATOM => {
                if let Some(id) = u32_at(&b[r.body.clone()], 16) {
                    if dropped.contains(&id) {
                        return Err(Error::malformed(format!(
                            "PowerPoint object storage {id} is shared by another object"
                        )));
                    }
                }
            }
            _ => {}
        }
        if r.is_container() {
            stack.extend(children(b, &r)?);
        }
    }
    Ok(())
}
