//! Reconstruction of a PDF whose cross-reference data is damaged (a table or stream with wrong
//! offsets, missing or cut off, a wrong `startxref`, bytes added before the header or after the
//! end), the way qpdf recovers such a file: by scanning it for objects.
//!
//! Owns: finding every `N G obj … endobj` at a token boundary outside stream data (a stream's
//! data ends where a right `/Length` says, else at its `endstream`), the members of object
//! streams, the `trailer` dictionaries and cross-reference streams; choosing which objects are
//! current and which catalog is the document's; and writing them out as a fresh PDF with a
//! classic cross-reference table that lopdf then reads without any repair.
//! Invariants:
//! - Sans-IO and synchronous; never panics on any input; bounded by the input's length, the
//!   object limit and the stream size limit.
//! - The last definition of an object number in file order wins (an object-stream member
//!   counts at its stream's place), as incremental updates append.
//! - The catalog is the `/Root` of the last trailer dictionary or cross-reference stream in the
//!   file; only when there is neither, the one object with `/Type /Catalog`. Several catalogs
//!   and nothing saying which is current is an error: a guess is not allowed.
//! - Objects are copied as read (strings, names, numbers, stream data byte for byte); only a
//!   stream's `/Length` is set to the data found, and object and cross-reference streams are
//!   left out (their members are written as objects of their own).
//!
//! Must never: decide what is safe — the output is only the input's objects laid out anew, and
//! goes through the same rebuild as any other PDF; never guess between catalogs.

use std::collections::BTreeMap;

use lopdf::{Dictionary, Document, Object, ObjectId, Stream, StringFormat};
use memchr::memmem;

use crate::error::{Error, Result};

/// Limits the scan honours.
pub(crate) struct Bounds {
    /// Objects the rebuilt file may hold.
    pub max_objects: u64,
    /// Bytes one object stream may decode to.
    pub max_stream_bytes: usize,
}

/// The highest object number a PDF may use (ISO 32000-1, Annex C); a larger one is no object.
const MAX_OBJECT_NUMBER: u32 = 8_388_607;

/// Nesting of arrays and dictionaries beyond which an object is taken as unparseable.
const MAX_DEPTH: u32 = 64;

/// One definition of an object met in the file.
struct Found {
    generation: u16,
    object: Object,
}

/// Scans `body` (starting at `%PDF-`) for objects and writes them out as a fresh PDF with an
/// intact cross-reference table. `tick` is called now and then (the caller's deadline).
///
/// # Errors
/// Malformed when no catalog can be chosen (none, or several and no trailer saying which is
/// current), the catalog is not a dictionary, or an encrypted file keeps objects in object
/// streams; limit exceeded over the object limit; whatever `tick` returns.
pub(crate) fn rebuild(
    body: &[u8],
    bounds: &Bounds,
    tick: &mut dyn FnMut() -> Result<()>,
) -> Result<Vec<u8>> {
    let mut scan = scan(body, bounds, tick)?;
    let trailer = match scan.trailer.take() {
        Some((_, false)) => {
            // It would have said which catalog is current; another one's word is a guess.
            return Err(Error::malformed(
                "the last cross-reference stream is itself damaged, so which catalog is current cannot be told",
            ));
        }
        Some((t, true)) => Some(t),
        None => None,
    };
    if scan.dangling {
        // Whatever the cut-off object was (a new revision's catalog, a page), the file the
        // author wrote is not all there; rebuilding the rest would be a guess.
        return Err(Error::malformed(
            "the file ends inside an object (truncated?)",
        ));
    }
    let encrypted = trailer.as_ref().is_some_and(|t| t.has(b"Encrypt"));

    // Final definitions, in file order: (place, sub-place) -> number.
    let mut objects: BTreeMap<u32, ((usize, usize), Found)> = BTreeMap::new();
    for (place, number, found) in scan.objects {
        objects.insert(number, ((place, 0), found));
    }
    let streams: Vec<(usize, Stream)> = objects
        .values()
        .filter_map(|((place, _), f)| match &f.object {
            Object::Stream(s) if s.dict.has_type(b"ObjStm") => Some((*place, s.clone())),
            _ => None,
        })
        .collect();
    if encrypted && !streams.is_empty() {
        // Their members are encrypted with the stream; written out as objects of their own they
        // would be decrypted a second time.
        return Err(Error::malformed(
            "an encrypted PDF with damaged cross-reference data keeps objects in object streams",
        ));
    }
    for (place, stream) in streams {
        for (i, (number, object)) in members(&stream, bounds)?.into_iter().enumerate() {
            if !(1..=MAX_OBJECT_NUMBER).contains(&number) {
                continue;
            }
            let key = (place, i + 1);
            let newer = objects.get(&number).is_none_or(|(at, _)| *at < key);
            if newer {
                let found = Found {
                    generation: 0,
                    object,
                };
                objects.insert(number, (key, found));
            }
            if objects.len() as u64 > bounds.max_objects {
                return Err(Error::limit_exceeded(format!(
                    "more than {} objects in the PDF",
                    bounds.max_objects
                )));
            }
        }
        tick()?;
    }
    // Object and cross-reference streams are replaced by the new table (lopdf's writer leaves
    // out anything typed so, a dictionary included: leaving it out here too keeps what was
    // found and what is written the same).
    objects.retain(|_, (_, f)| {
        !matches!(
            f.object.type_name(),
            Ok(b"ObjStm" | b"XRef" | b"Linearized")
        )
    });

    let generation_of = |n: u32| objects.get(&n).map(|(_, f)| f.generation);
    let root = match &trailer {
        Some(trailer) => trailer
            .get(b"Root")
            .and_then(Object::as_reference)
            .map_err(|_| Error::malformed("the last trailer has no /Root reference"))?,
        None => {
            // A security handler's dictionary with no trailer naming it and the file's /ID: the
            // objects cannot be decrypted, and read as they are they are ciphertext.
            let security = objects.values().any(|(_, f)| {
                matches!(&f.object, Object::Dictionary(d) if d.has(b"Filter") && d.has(b"O") && d.has(b"U"))
            });
            if security {
                return Err(Error::encrypted(
                    "an encrypted PDF lost its trailer: its objects cannot be decrypted",
                ));
            }
            let catalogs: Vec<ObjectId> = objects
                .iter()
                .filter(|(_, (_, f))| {
                    matches!(&f.object, Object::Dictionary(d) if d.has_type(b"Catalog"))
                })
                .map(|(n, (_, f))| (*n, f.generation))
                .collect();
            match catalogs.as_slice() {
                [one] => *one,
                [] => {
                    return Err(Error::malformed(
                        "cross-reference data is unusable and the scan found no catalog",
                    ))
                }
                _ => {
                    return Err(Error::malformed(format!(
                        "cross-reference data is unusable, no trailer survives and {} objects are a catalog: which is current cannot be told",
                        catalogs.len()
                    )))
                }
            }
        }
    };
    let root = match objects.get(&root.0) {
        Some((_, f)) if matches!(f.object, Object::Dictionary(_)) => (root.0, f.generation),
        _ => {
            return Err(Error::malformed(
                "the catalog the trailer names is not a dictionary the scan found",
            ))
        }
    };

    let mut doc = Document::new();
    doc.version = header_version(body);
    doc.reference_table.cross_reference_type = lopdf::xref::XrefType::CrossReferenceTable;
    let mut fresh = Dictionary::new();
    fresh.set("Root", Object::Reference(root));
    if let Some(old) = &trailer {
        if let Ok(Object::Reference(info)) = old.get(b"Info") {
            if let Some(generation) = generation_of(info.0) {
                fresh.set("Info", Object::Reference((info.0, generation)));
            }
        }
        for key in [&b"ID"[..], b"Encrypt"] {
            if let Ok(v) = old.get(key) {
                fresh.set(key.to_vec(), v.clone());
            }
        }
    }
    doc.trailer = fresh;
    for (number, (_, found)) in objects {
        doc.objects.insert((number, found.generation), found.object);
    }
    doc.max_id = doc.objects.keys().next_back().map_or(0, |id| id.0);
    let mut out = Vec::with_capacity(body.len());
    doc.save_to(&mut out)
        .map_err(|e| Error::internal(format!("writing the reconstructed PDF failed: {e}")))?;
    Ok(out)
}

/// `x.y` from the `%PDF-x.y` header, or 1.7.
fn header_version(body: &[u8]) -> String {
    let v: Vec<u8> = body
        .get(5..)
        .unwrap_or_default()
        .iter()
        .take(4)
        .take_while(|b| b.is_ascii_digit() || **b == b'.')
        .copied()
        .collect();
    match String::from_utf8(v) {
        Ok(s) if s.len() == 3 => s,
        _ => "1.7".into(),
    }
}

/// What a scan of the whole file found.
struct Scan {
    /// Every object definition: (place in the file, number, definition), in file order.
    objects: Vec<(usize, u32, Found)>,
    /// The last trailer dictionary or cross-reference stream dictionary in the file, and
    /// whether it can be trusted (a cross-reference stream whose own data is damaged cannot).
    trailer: Option<(Dictionary, bool)>,
    /// The last object begun in the file is not complete: the file was cut inside it.
    dangling: bool,
}

fn scan(body: &[u8], bounds: &Bounds, tick: &mut dyn FnMut() -> Result<()>) -> Result<Scan> {
    let mut out = Scan {
        objects: Vec::new(),
        trailer: None,
        dangling: false,
    };
    let mut steps = 0u64;
    let mut pos = 0;
    while pos < body.len() {
        // Every step counts, not only object headers: megabytes of comments, trailers or
        // bytes that are no object are as much work to walk through as objects are.
        steps += 1;
        if steps.is_multiple_of(256) {
            tick()?;
        }
        let Some(&b) = body.get(pos) else { break };
        if b == b'%' {
            // `%%EOF` ends a revision, and writers append the next one right after it, on the
            // same line: the comment is the marker alone, or the update would be lost.
            pos = if body.get(pos..).is_some_and(|r| r.starts_with(b"%%EOF")) {
                pos + 5
            } else {
                line_end(body, pos)
            };
            continue;
        }
        let boundary = pos == 0
            || body.get(pos - 1).is_some_and(|&p| is_ws(p) || is_delim(p))
            || body.get(..pos).is_some_and(|r| r.ends_with(b"%%EOF"));
        if boundary && b.is_ascii_digit() {
            // Object 0 heads the free list; it is never an object.
            if let Some((number @ 1..=MAX_OBJECT_NUMBER, generation, after)) =
                object_header(body, pos)
            {
                match object_body(body, after) {
                    Ok(Body {
                        object,
                        end,
                        closed,
                        length_right,
                    }) => {
                        out.dangling = !closed;
                        if let Object::Stream(s) = &object {
                            if s.dict.has_type(b"XRef") {
                                let intact = length_right && xref_stream_intact(s, bounds);
                                out.trailer = Some((s.dict.clone(), intact));
                            }
                        }
                        out.objects
                            .push((pos, number, Found { generation, object }));
                        if out.objects.len() as u64 > bounds.max_objects.saturating_mul(4) {
                            return Err(Error::limit_exceeded(format!(
                                "more than {} object definitions in the PDF",
                                bounds.max_objects.saturating_mul(4)
                            )));
                        }
                        pos = end;
                        continue;
                    }
                    Err(stop) if stop >= body.len() => {
                        // The object runs to the end of the file (a string or stream never
                        // closed): everything after its header is inside it, so nothing
                        // after it is an object of its own. Stopping here also keeps the scan
                        // linear: every later header would be read to the end again.
                        out.dangling = true;
                        break;
                    }
                    Err(_) => out.dangling = true,
                }
            }
        }
        if boundary && body.get(pos..).is_some_and(|r| r.starts_with(b"trailer")) {
            let mut lx = Lexer {
                data: body,
                pos: pos + 7,
            };
            match lx.value(0) {
                Some(Object::Dictionary(d)) => {
                    out.trailer = Some((d, true));
                    pos = lx.pos;
                    continue;
                }
                // As above: a trailer that runs to the end swallows the rest.
                None if lx.pos >= body.len() => break,
                _ => {}
            }
        }
        pos += 1;
    }
    Ok(out)
}

/// Whether the object `number generation` is defined at `at` (white space before it allowed).
pub(crate) fn defines_at(body: &[u8], at: usize, number: u32, generation: u16) -> bool {
    let Some(rest) = body.get(at..) else {
        return false;
    };
    let skip = rest.iter().take_while(|&&b| is_ws(b)).count();
    object_header(body, at + skip).is_some_and(|(n, g, _)| n == number && g == generation)
}

/// Whether a cross-reference stream's data is whole: it decodes and, when no predictor is
/// applied, holds exactly the entries its `/W` and `/Index` (or `/Size`) describe.
fn xref_stream_intact(s: &Stream, bounds: &Bounds) -> bool {
    let data = match s.decompressed_content_with_limit(bounds.max_stream_bytes) {
        Ok(data) => data,
        Err(_) if !s.dict.has(b"Filter") => s.content.clone(),
        Err(_) => return false,
    };
    if s.dict.has(b"DecodeParms") {
        return true;
    }
    let ints = |key: &[u8]| -> Option<Vec<u64>> {
        s.dict
            .get(key)
            .and_then(Object::as_array)
            .ok()?
            .iter()
            .map(|o| o.as_i64().ok().and_then(|v| u64::try_from(v).ok()))
            .collect()
    };
    let Some(widths) = ints(b"W") else {
        return false;
    };
    let count = match ints(b"Index") {
        Some(index) => index
            .chunks(2)
            .map(|p| p.get(1).copied().unwrap_or(0))
            .sum(),
        None => s
            .dict
            .get(b"Size")
            .and_then(Object::as_i64)
            .ok()
            .and_then(|v| u64::try_from(v).ok())
            .unwrap_or(0),
    };
    let row: u64 = widths.iter().sum();
    row.checked_mul(count)
        .is_some_and(|n| n == data.len() as u64)
}

/// `N G obj` at `pos`: the numbers and where the object's value starts.
fn object_header(data: &[u8], pos: usize) -> Option<(u32, u16, usize)> {
    let mut lx = Lexer { data, pos };
    let number = lx.unsigned()?;
    if !lx.ws1() {
        return None;
    }
    let generation = lx.unsigned()?;
    lx.skip_ws();
    if !lx.keyword(b"obj") {
        return None;
    }
    Some((
        u32::try_from(number).ok()?,
        u16::try_from(generation).ok()?,
        lx.pos,
    ))
}

/// An object read after its header.
struct Body {
    object: Object,
    /// Where the definition ends (after `endobj`, or where it should have been).
    end: usize,
    /// `endobj` was there.
    closed: bool,
    /// For a stream: its `/Length` was right (the data was not found by searching).
    length_right: bool,
}

/// The object after its header: a value, or a dictionary with stream data. When it does not
/// read, where reading stopped (the data's length when the data ran out first).
fn object_body(data: &[u8], at: usize) -> std::result::Result<Body, usize> {
    let mut lx = Lexer { data, pos: at };
    let value = lx.value(0).ok_or(lx.pos)?;
    lx.skip_ws();
    let mut length_right = false;
    let value = match value {
        Object::Dictionary(dict) if lx.keyword(b"stream") => {
            // The data starts after the end of the `stream` line (CR LF or LF; a lone CR too).
            let mut start = lx.pos;
            if data.get(start) == Some(&b'\r') {
                start += 1;
            }
            if data.get(start) == Some(&b'\n') {
                start += 1;
            }
            let (content, end, right) = stream_data(data, start, &dict).ok_or(data.len())?;
            lx.pos = end;
            length_right = right;
            let mut s = Stream::new(dict, content.to_vec());
            s.allows_compression = false;
            Object::Stream(s)
        }
        v => v,
    };
    lx.skip_ws();
    // A missing endobj is forgiven (qpdf does too) where another object follows: the value
    // itself was complete. At the end of the file it means the file was cut.
    let closed = lx.keyword(b"endobj");
    Ok(Body {
        object: value,
        end: lx.pos,
        closed,
        length_right,
    })
}

/// A stream's data from `start`: `/Length` bytes when `endstream` follows them, else up to the
/// next `endstream` (less the end-of-line before it). Returns the data, where `endstream`
/// ends, and whether `/Length` was right.
fn stream_data<'a>(
    data: &'a [u8],
    start: usize,
    dict: &Dictionary,
) -> Option<(&'a [u8], usize, bool)> {
    if let Ok(Object::Integer(len)) = dict.get(b"Length") {
        if let Some(end) = usize::try_from(*len)
            .ok()
            .and_then(|l| start.checked_add(l))
        {
            if let Some(rest) = data.get(end..) {
                let skip = rest.iter().take_while(|&&b| is_ws(b)).count();
                if rest
                    .get(skip..)
                    .is_some_and(|r| r.starts_with(b"endstream"))
                {
                    return Some((data.get(start..end)?, end + skip + 9, true));
                }
            }
        }
    }
    let found = start + memmem::find(data.get(start..)?, b"endstream")?;
    let mut end = found;
    if end > start && data.get(end - 1) == Some(&b'\n') {
        end -= 1;
    }
    if end > start && data.get(end - 1) == Some(&b'\r') {
        end -= 1;
    }
    Some((data.get(start..end)?, found + 9, false))
}

/// The members of an object stream: (number, value) in the order the stream lists them.
fn members(stream: &Stream, bounds: &Bounds) -> Result<Vec<(u32, Object)>> {
    let data = match stream.decompressed_content_with_limit(bounds.max_stream_bytes) {
        Ok(data) => data,
        Err(_) if !stream.dict.has(b"Filter") => stream.content.clone(),
        Err(e) => {
            return Err(Error::malformed(format!(
                "an object stream does not decode: {e}"
            )))
        }
    };
    let count = stream.dict.get(b"N").and_then(Object::as_i64).unwrap_or(0);
    let first = stream
        .dict
        .get(b"First")
        .and_then(Object::as_i64)
        .ok()
        .and_then(|f| usize::try_from(f).ok())
        .ok_or_else(|| Error::malformed("an object stream has no /First"))?;
    let count = usize::try_from(count)
        .ok()
        .filter(|n| *n <= data.len() / 2 + 1)
        .ok_or_else(|| Error::malformed("an object stream's /N is out of range"))?;
    let mut head = Lexer {
        data: &data,
        pos: 0,
    };
    let mut index = Vec::with_capacity(count);
    for _ in 0..count {
        head.skip_ws();
        let number = head.unsigned().and_then(|n| u32::try_from(n).ok());
        head.skip_ws();
        let offset = head.unsigned().and_then(|o| usize::try_from(o).ok());
        let (Some(number), Some(offset)) = (number, offset) else {
            return Err(Error::malformed("an object stream's index does not read"));
        };
        if index.last().is_some_and(|(_, prev)| *prev >= offset) {
            // Members are stored in order; reading each up to the next keeps the work to one
            // pass over the data.
            return Err(Error::malformed(
                "an object stream's members are not in order",
            ));
        }
        index.push((number, offset));
    }
    let mut out = Vec::with_capacity(count);
    for (i, (number, offset)) in index.iter().enumerate() {
        let end = index
            .get(i + 1)
            .map_or(data.len(), |(_, next)| first.saturating_add(*next))
            .min(data.len());
        let Some(slice) = data.get(..end) else {
            continue;
        };
        let mut lx = Lexer {
            data: slice,
            pos: first.saturating_add(*offset),
        };
        if let Some(value) = lx.value(0) {
            out.push((*number, value));
        }
    }
    Ok(out)
}

fn is_ws(b: u8) -> bool {
    matches!(b, 0 | b'\t' | b'\n' | 0x0C | b'\r' | b' ')
}

fn is_delim(b: u8) -> bool {
    matches!(
        b,
        b'(' | b')' | b'<' | b'>' | b'[' | b']' | b'{' | b'}' | b'/' | b'%'
    )
}

fn line_end(data: &[u8], mut pos: usize) -> usize {
    while pos < data.len() && data[pos] != b'\n' && data[pos] != b'\r' {
        pos += 1;
    }
    pos
}

/// A reader of PDF objects (ISO 32000-1 §7.3) over a byte slice.
struct Lexer<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Lexer<'_> {
    fn peek(&self) -> Option<u8> {
        self.data.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while let Some(b) = self.peek() {
            if is_ws(b) {
                self.pos += 1;
            } else if b == b'%' {
                self.pos = line_end(self.data, self.pos);
            } else {
                break;
            }
        }
    }

    /// Skips white space; true when there was some.
    fn ws1(&mut self) -> bool {
        let at = self.pos;
        self.skip_ws();
        self.pos > at
    }

    /// A keyword ending at a delimiter, white space or the end of the data.
    fn keyword(&mut self, word: &[u8]) -> bool {
        let rest = self.data.get(self.pos..).unwrap_or_default();
        let ends = rest
            .get(word.len())
            .is_none_or(|&b| is_ws(b) || is_delim(b));
        if rest.starts_with(word) && ends {
            self.pos += word.len();
            true
        } else {
            false
        }
    }

    fn unsigned(&mut self) -> Option<u64> {
        let start = self.pos;
        let mut n: u64 = 0;
        while let Some(b) = self.peek().filter(u8::is_ascii_digit) {
            n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
            self.pos += 1;
        }
        (self.pos > start).then_some(n)
    }

    fn value(&mut self, depth: u32) -> Option<Object> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.skip_ws();
        match self.peek()? {
            b'/' => self.name().map(Object::Name),
            b'(' => self
                .literal()
                .map(|s| Object::String(s, StringFormat::Literal)),
            b'<' if self.data.get(self.pos + 1) == Some(&b'<') => {
                self.pos += 2;
                let mut dict = Dictionary::new();
                loop {
                    self.skip_ws();
                    if self.data.get(self.pos..)?.starts_with(b">>") {
                        self.pos += 2;
                        return Some(Object::Dictionary(dict));
                    }
                    let key = self.name()?;
                    let value = self.value(depth + 1)?;
                    dict.set(key, value);
                }
            }
            b'<' => self
                .hex()
                .map(|s| Object::String(s, StringFormat::Hexadecimal)),
            b'[' => {
                self.pos += 1;
                let mut items = Vec::new();
                loop {
                    self.skip_ws();
                    if self.peek()? == b']' {
                        self.pos += 1;
                        return Some(Object::Array(items));
                    }
                    items.push(self.value(depth + 1)?);
                }
            }
            b'+' | b'-' | b'.' | b'0'..=b'9' => self.number(),
            _ => {
                if self.keyword(b"true") {
                    Some(Object::Boolean(true))
                } else if self.keyword(b"false") {
                    Some(Object::Boolean(false))
                } else if self.keyword(b"null") {
                    Some(Object::Null)
                } else {
                    None
                }
            }
        }
    }

    /// A number, or a reference `N G R`.
    fn number(&mut self) -> Option<Object> {
        let start = self.pos;
        while let Some(b) = self.peek() {
            if b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.') {
                self.pos += 1;
            } else {
                break;
            }
        }
        let text = std::str::from_utf8(self.data.get(start..self.pos)?).ok()?;
        if text.contains('.') {
            // PDF reals have no exponent; "-.5" and "4." are fine, a lone sign or dot is 0.
            let real: f32 = match text.trim_start_matches(['+', '-']) {
                "" | "." => 0.0,
                _ => text.parse().ok()?,
            };
            return Some(Object::Real(real));
        }
        let int: i64 = text.parse().ok()?;
        if !text.starts_with(['+', '-']) {
            // `N G R`: look ahead without consuming unless it is one.
            let save = self.pos;
            if self.ws1() {
                if let Some(generation) = self.unsigned() {
                    if self.ws1() && self.keyword(b"R") {
                        if let (Ok(n), Ok(g)) = (u32::try_from(int), u16::try_from(generation)) {
                            return Some(Object::Reference((n, g)));
                        }
                    }
                }
            }
            self.pos = save;
        }
        Some(Object::Integer(int))
    }

    fn name(&mut self) -> Option<Vec<u8>> {
        if self.peek()? != b'/' {
            return None;
        }
        self.pos += 1;
        let mut out = Vec::new();
        while let Some(b) = self.peek() {
            if is_ws(b) || is_delim(b) {
                break;
            }
            self.pos += 1;
            if b == b'#' {
                let hex = self.data.get(self.pos..self.pos + 2);
                if let Some(v) = hex
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    out.push(v);
                    self.pos += 2;
                    continue;
                }
            }
            out.push(b);
        }
        Some(out)
    }

    fn literal(&mut self) -> Option<Vec<u8>> {
        self.pos += 1;
        let mut out = Vec::new();
        let mut depth = 0usize;
        loop {
            let b = self.peek()?;
            self.pos += 1;
            match b {
                b'\\' => {
                    let e = self.peek()?;
                    self.pos += 1;
                    match e {
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'b' => out.push(0x08),
                        b'f' => out.push(0x0C),
                        b'0'..=b'7' => {
                            let mut v = u32::from(e - b'0');
                            for _ in 0..2 {
                                match self.peek() {
                                    Some(d @ b'0'..=b'7') => {
                                        v = v * 8 + u32::from(d - b'0');
                                        self.pos += 1;
                                    }
                                    _ => break,
                                }
                            }
                            out.push((v & 0xFF) as u8);
                        }
                        b'\r' => {
                            // A line continuation: the escaped end of line is no data.
                            if self.peek() == Some(b'\n') {
                                self.pos += 1;
                            }
                        }
                        b'\n' => {}
                        other => out.push(other),
                    }
                }
                b'(' => {
                    depth += 1;
                    out.push(b);
                }
                b')' => {
                    if depth == 0 {
                        return Some(out);
                    }
                    depth -= 1;
                    out.push(b);
                }
                _ => out.push(b),
            }
        }
    }

    fn hex(&mut self) -> Option<Vec<u8>> {
        self.pos += 1;
        let mut digits = Vec::new();
        loop {
            let b = self.peek()?;
            self.pos += 1;
            match b {
                b'>' => break,
                _ if is_ws(b) => {}
                _ => digits.push(char::from(b).to_digit(16)? as u8),
            }
        }
        if digits.len() % 2 == 1 {
            digits.push(0);
        }
        Some(
            digits
                .chunks_exact(2)
                .map(|p| match p {
                    [hi, lo] => hi << 4 | lo,
                    _ => 0,
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &[u8]) -> Option<Object> {
        Lexer { data: text, pos: 0 }.value(0)
    }

    #[test]
    fn reads_every_kind_of_value() {
        let v =
            read(b"<< /A [1 -2 +3 4.5 -.5 (a\\(b\\)c\\101) <48 65 6> /N#20x true null 12 0 R] >>")
                .unwrap();
        let a = v.as_dict().unwrap().get(b"A").unwrap().as_array().unwrap();
        assert_eq!(a[0], Object::Integer(1));
        assert_eq!(a[1], Object::Integer(-2));
        assert_eq!(a[2], Object::Integer(3));
        assert_eq!(a[3], Object::Real(4.5));
        assert_eq!(a[4], Object::Real(-0.5));
        assert_eq!(a[5].as_str().unwrap(), b"a(b)cA");
        assert_eq!(a[6].as_str().unwrap(), b"He`");
        assert_eq!(a[7], Object::Name(b"N x".to_vec()));
        assert_eq!(a[8], Object::Boolean(true));
        assert_eq!(a[9], Object::Null);
        assert_eq!(a[10], Object::Reference((12, 0)));
        for bad in [
            &b"<< /A 1"[..],
            b"[1 2",
            b"(open",
            b"<4G>",
            b"<< 1 2 >>",
            b"bogus",
        ] {
            assert!(read(bad).is_none(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn stream_data_ends_at_a_right_length_or_else_at_endstream() {
        let text = b"1 0 obj << /Length 5 >> stream\nabcde\nendstream endobj";
        let (h, g, at) = object_header(text, 0).unwrap();
        assert_eq!((h, g), (1, 0));
        let body = object_body(text, at).ok().unwrap();
        assert!(body.closed && body.length_right);
        assert_eq!(body.object.as_stream().unwrap().content, b"abcde");
        assert_eq!(body.end, text.len());
        let wrong = b"1 0 obj << /Length 99 >> stream\r\nab endobj cd\r\nendstream\nendobj";
        let body = object_body(wrong, object_header(wrong, 0).unwrap().2)
            .ok()
            .unwrap();
        assert!(!body.length_right);
        assert_eq!(body.object.as_stream().unwrap().content, b"ab endobj cd");
    }

    #[test]
    fn objects_inside_stream_data_are_not_found() {
        let pdf = b"%PDF-1.4\n1 0 obj << /Length 8 0 R >> stream\n2 0 obj (fake) endobj\nendstream\nendobj\n3 0 obj (real) endobj\n";
        let bounds = Bounds {
            max_objects: 100,
            max_stream_bytes: 1000,
        };
        let found = scan(pdf, &bounds, &mut || Ok(())).unwrap();
        let numbers: Vec<u32> = found.objects.iter().map(|(_, n, _)| *n).collect();
        assert_eq!(numbers, vec![1, 3]);
    }
}
