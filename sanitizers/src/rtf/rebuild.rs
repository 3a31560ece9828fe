//! The RTF sanitizer: tokens → group tree → filtered tree → new RTF.
//!
//! Owns: dropping what runs or fetches — `\object` groups (keeping their `\result` picture or
//! text), `\objdata`, `\datastore` (OLE data some exploits hide there), embedded fonts, a remote
//! `\*\template`, mail-merge data sources (`\mailmerge`, `\mmodso…`, `\mmconnectstr`), shape
//! properties that link a picture or hyperlink outside the document (`pibName` with a UNC
//! path), `\fldinst` groups outside a field, and every field whose instruction Word would not
//! read as an allowlisted field type (its `\fldrslt` stays in place) — plus `\info` metadata by
//! policy; then writing the tree back out.
//! Invariants: the output is written from tokens only, so it always re-lexes to the same tree;
//! the header is written as `{\rtf1` whatever the input said (`{\rtvpn`…); a kept field has
//! exactly one instruction, written back as plain text (Word's own reading of it: text, `\\`,
//! `\'hh` and `\uN` through nested groups, `\*` destinations left out), so no reader can find
//! another field type in it; a second pass finds nothing to remove. Groups nest at most
//! [`MAX_DEPTH`] deep.
//! Must never: keep an object's data because its result is missing — the object goes; judge a
//! field by anything but the instruction Word reads.

use super::{lex, Token};
use crate::error::{Error, Result};
use crate::kind::FileKind;
use crate::registry::{Context, Sanitized, Sanitizer};
use crate::report::What;

/// Deepest group nesting accepted (Word's own documents stay far below).
pub const MAX_DEPTH: usize = 512;

enum Node {
    Token(Token),
    Group(Vec<Node>),
}

/// Builds the group tree from a token stream that starts with `{`.
fn tree(tokens: Vec<Token>) -> Result<Vec<Node>> {
    let mut stack: Vec<Vec<Node>> = vec![Vec::new()];
    for token in tokens {
        match token {
            Token::Open => {
                if stack.len() > MAX_DEPTH {
                    return Err(Error::limit_exceeded(format!(
                        "RTF groups nest deeper than {MAX_DEPTH}"
                    )));
                }
                stack.push(Vec::new());
            }
            Token::Close => {
                let group = stack
                    .pop()
                    .ok_or_else(|| Error::malformed("RTF group closed twice"))?;
                stack
                    .last_mut()
                    .ok_or_else(|| Error::malformed("RTF group closed twice"))?
                    .push(Node::Group(group));
            }
            other => stack
                .last_mut()
                .ok_or_else(|| Error::malformed("RTF token outside the document"))?
                .push(Node::Token(other)),
        }
    }
    match stack.pop() {
        Some(top) if stack.is_empty() => Ok(top),
        _ => Err(Error::malformed("RTF groups are not balanced")),
    }
}

/// The destination of a group: its first control word, after an optional `\*`.
fn destination(group: &[Node]) -> Option<&[u8]> {
    for node in group {
        match node {
            Node::Token(Token::Star) => continue,
            Node::Token(Token::Word { name, .. }) => return Some(name),
            _ => return None,
        }
    }
    None
}

/// All plain text inside a group, for field instructions and object classes.
fn text_of(group: &[Node], out: &mut String) {
    for node in group {
        match node {
            Node::Token(Token::Text(t)) => out.push_str(&String::from_utf8_lossy(t)),
            Node::Token(Token::Symbol(c)) => out.push(*c as char),
            Node::Group(g) => text_of(g, out),
            _ => {}
        }
    }
}

fn find_group<'a>(group: &'a [Node], dest: &[u8]) -> Option<&'a Vec<Node>> {
    group.iter().find_map(|n| match n {
        Node::Group(g) if destination(g) == Some(dest) => Some(g),
        _ => None,
    })
}

/// Drops the result group's own destination word, keeping what it shows.
fn result_body(result: &[Node]) -> Vec<Node> {
    let mut skipped = false;
    result
        .iter()
        .filter(|n| {
            if !skipped {
                if let Node::Token(Token::Word { name, .. }) = n {
                    if name == b"result" || name == b"fldrslt" {
                        skipped = true;
                        return false;
                    }
                }
            }
            true
        })
        .map(clone_node)
        .collect()
}

fn clone_node(node: &Node) -> Node {
    match node {
        Node::Token(t) => Node::Token(t.clone()),
        Node::Group(g) => Node::Group(g.iter().map(clone_node).collect()),
    }
}

struct Filter<'c, 'a> {
    cx: &'c mut Context<'a>,
    allow: Vec<String>,
    strip_metadata: bool,
    objects: usize,
    /// The `\ucN` in force where the filter is (fallback characters after each `\uN`).
    uc: usize,
}

impl Filter<'_, '_> {
    fn group(&mut self, group: Vec<Node>, path: &str) -> Result<Option<Vec<Node>>> {
        self.cx.check_deadline()?;
        let dest = destination(&group).map(<[u8]>::to_vec);
        match dest.as_deref() {
            Some(b"object") => {
                self.objects += 1;
                let mut class = String::new();
                if let Some(c) = find_group(&group, b"objclass") {
                    text_of(c, &mut class);
                }
                self.cx.remove(
                    What::OleObject,
                    format!("{path}object {}", self.objects),
                    format!("embedded object {}", class.trim()),
                );
                // The object's last rendering stays, filtered like everything else.
                return match find_group(&group, b"result") {
                    Some(result) => {
                        let body = result_body(result);
                        self.children(body, path).map(Some)
                    }
                    None => Ok(None),
                };
            }
            Some(b"objdata") | Some(b"datastore") => {
                self.cx.remove(
                    What::OleObject,
                    path.to_string(),
                    "OLE data outside an object",
                );
                return Ok(None);
            }
            Some(b"template") => {
                let mut target = String::new();
                text_of(&group, &mut target);
                self.cx.remove(
                    What::ExternalReference,
                    path.to_string(),
                    format!("attached template {}", target.trim()),
                );
                return Ok(None);
            }
            Some(b"fontemb") | Some(b"fontfile") => {
                self.cx
                    .remove(What::UnknownPart, path.to_string(), "embedded font");
                return Ok(None);
            }
            Some(b"info") if self.strip_metadata => {
                self.cx
                    .remove(What::Metadata, path.to_string(), "document information");
                return Ok(None);
            }
            Some(b"field") => return self.field(group, path).map(Some),
            Some(b"fldinst") => {
                // An instruction outside a field runs nowhere in Word, but scanners (and other
                // readers) still see it; it has no business in a rebuilt document.
                let mut instr = String::new();
                text_of(&group, &mut instr);
                let shown: String = instr.trim().chars().take(120).collect();
                self.cx.remove(
                    What::Field,
                    path.to_string(),
                    format!("field instruction outside a field: {shown}"),
                );
                return Ok(None);
            }
            Some(d) if is_mail_merge(d) => {
                // Mail merge names an ODBC/OLE DB data source and a query Word runs on open.
                let mut source = String::new();
                text_of(&group, &mut source);
                let shown: String = source.trim().chars().take(120).collect();
                self.cx.remove(
                    What::DataConnection,
                    path.to_string(),
                    format!("mail merge data source {shown}"),
                );
                return Ok(None);
            }
            Some(b"sp") => {
                if let Some(why) = linked_shape_property(&group) {
                    self.cx
                        .remove(What::ExternalReference, path.to_string(), why);
                    return Ok(None);
                }
            }
            _ => {}
        }
        self.children(group, path).map(Some)
    }

    /// A field stays only when Word would read its single instruction as an allowlisted field
    /// type; it is then written back with that instruction as plain text, so nothing a reader
    /// could see differently (ignorable groups, nested fields, formatting) survives inside it.
    /// Any other field is replaced by its result.
    fn field(&mut self, group: Vec<Node>, path: &str) -> Result<Vec<Node>> {
        let mut flags = Vec::new();
        let mut insts = Vec::new();
        let mut results = Vec::new();
        let mut stray = false;
        for node in group {
            match node {
                Node::Group(g) if destination(&g) == Some(b"fldinst") => insts.push(g),
                Node::Group(g) if destination(&g) == Some(b"fldrslt") => results.push(g),
                Node::Token(Token::Word { ref name, .. })
                    if matches!(
                        name.as_slice(),
                        b"field" | b"flddirty" | b"fldedit" | b"fldlock" | b"fldpriv"
                    ) =>
                {
                    flags.push(node)
                }
                Node::Token(Token::Text(ref t)) if t.iter().all(u8::is_ascii_whitespace) => {}
                _ => stray = true,
            }
        }
        let verdict = match insts.as_slice() {
            [inst] => read_instruction(inst, &self.allow, self.uc),
            [] => Err("field without an instruction".to_string()),
            more => Err(format!("field with {} instruction groups", more.len())),
        };
        if results.len() > 1 {
            self.cx.remove(
                What::Field,
                path.to_string(),
                format!("{} extra field result group(s)", results.len() - 1),
            );
        }
        let result = results.into_iter().next();
        match verdict {
            Ok(instruction) => {
                if stray {
                    self.cx.remove(
                        What::Field,
                        path.to_string(),
                        "content outside the field's instruction and result",
                    );
                }
                if instruction.dropped_groups > 0 {
                    self.cx.remove(
                        What::Field,
                        path.to_string(),
                        format!(
                            "{} ignorable group(s) inside the instruction of field {}",
                            instruction.dropped_groups, instruction.word
                        ),
                    );
                }
                let mut out = flags;
                let mut inst = vec![
                    Node::Token(Token::Star),
                    Node::Token(Token::Word {
                        name: b"fldinst".to_vec(),
                        param: None,
                    }),
                ];
                inst.extend(instruction.tokens.into_iter().map(Node::Token));
                out.push(Node::Group(inst));
                if let Some(result) = result {
                    if let Some(kept) = self.group(result, path)? {
                        out.push(Node::Group(kept));
                    }
                }
                Ok(out)
            }
            Err(why) => {
                self.cx
                    .remove(What::Field, path.to_string(), format!("field {why}"));
                match result {
                    Some(result) => {
                        let body = result_body(&result);
                        self.children(body, path)
                    }
                    None => Ok(Vec::new()),
                }
            }
        }
    }

    fn children(&mut self, group: Vec<Node>, path: &str) -> Result<Vec<Node>> {
        let mut out = Vec::with_capacity(group.len());
        // \ucN holds to the end of the group it is set in, and fields inside read it.
        let outer_uc = self.uc;
        for node in group {
            if let Node::Token(Token::Word {
                name,
                param: Some(n),
            }) = &node
            {
                if name == b"uc" {
                    self.uc = usize::try_from(*n).unwrap_or(0).min(16);
                }
            }
            match node {
                Node::Group(g) => {
                    if let Some(kept) = self.group(g, path)? {
                        out.push(Node::Group(kept));
                    }
                }
                Node::Token(Token::Word { name, .. }) if is_mail_merge(&name) => {
                    self.cx.remove(
                        What::DataConnection,
                        path.to_string(),
                        format!(
                            "mail merge control word \\{}",
                            String::from_utf8_lossy(&name)
                        ),
                    );
                }
                Node::Token(Token::Word { name, .. }) if name == b"fldinst" => {
                    // An instruction word that does not open its own group: what follows it in
                    // this group is an instruction no field owns.
                    self.cx.remove(
                        What::Field,
                        path.to_string(),
                        "field instruction outside a field",
                    );
                    break;
                }
                Node::Token(Token::Word { name, .. }) if name == b"objdata" => {
                    // A bare \objdata without its own group: the rest of the group is data.
                    self.cx
                        .remove(What::OleObject, path.to_string(), "OLE data");
                    break;
                }
                token => out.push(token),
            }
        }
        self.uc = outer_uc;
        Ok(out)
    }
}

/// Mail-merge destinations and words: they name a data source (ODBC connection strings, UDL
/// files, Office data source objects) and a query Word runs when the document opens. Math's
/// `\\mm…` words (`\\mmathPr`, `\\mmr`) share the prefix, hence the explicit list.
fn is_mail_merge(word: &[u8]) -> bool {
    word == b"mailmerge"
        || word.starts_with(b"mmodso")
        || word.starts_with(b"mmconnectstr")
        || word.starts_with(b"mmdatatype")
        || matches!(
            word,
            b"mmdatasource"
                | b"mmheadersource"
                | b"mmquery"
                | b"mmaddfieldname"
                | b"mmmailsubject"
                | b"mmdefaultsql"
                | b"mmlinktoquery"
        )
}

/// A field instruction as Word reads it, rebuilt as plain tokens.
struct Instruction {
    /// The field type (upper case).
    word: String,
    /// The instruction as text, `\\`, `\{`, `\}` and code-page bytes kept as such.
    tokens: Vec<Token>,
    /// Ignorable destinations (`{\*\…}`) left out of the instruction.
    dropped_groups: usize,
}

/// Field types that fetch, run or import something, refused wherever they appear in an
/// instruction (a second field type after the first is how instructions get smuggled).
const DANGEROUS_FIELD_WORDS: &[&str] = &[
    "DDE",
    "DDEAUTO",
    "INCLUDEPICTURE",
    "INCLUDETEXT",
    "INCLUDE",
    "IMPORT",
    "LINK",
    "HYPERLINK",
    "DATABASE",
    "MERGEFIELD",
    "MACROBUTTON",
    "GOTOBUTTON",
    "AUTOTEXT",
    "AUTOTEXTLIST",
    "PRIVATE",
    "ADDIN",
    "RD",
];

/// How Word reads a `\fldinst` group (`uc`: the `\ucN` in force around the field): text, symbols, `\'hh` bytes and `\uN` characters (with
/// their `\ucN` fallbacks skipped) in order, through nested formatting groups, skipping `\*`
/// destinations; the field type is the first word after leading spaces.
///
/// # Errors
/// A description of why the field may not stay: no allowlisted type first, a nested field, a
/// dangerous field type anywhere, or a reading that differs when fallbacks are counted.
fn read_instruction(
    inst: &[Node],
    allow: &[String],
    uc: usize,
) -> std::result::Result<Instruction, String> {
    struct Reader {
        /// Word's reading, as chars (code-page bytes above 0x7f become U+FFFD).
        word_view: String,
        /// Everything, fallbacks included: a reader that ignores `\uc` sees this.
        raw_view: String,
        tokens: Vec<Token>,
        dropped: usize,
        nested_field: bool,
        has_unicode: bool,
    }
    fn walk(r: &mut Reader, nodes: &[Node], mut uc: usize) {
        let mut skip = 0usize;
        for node in nodes {
            match node {
                Node::Group(g) => {
                    if destination(g) == Some(b"field") {
                        r.nested_field = true;
                    } else if matches!(g.first(), Some(Node::Token(Token::Star))) {
                        r.dropped += 1;
                    } else {
                        walk(r, g, uc);
                    }
                    skip = 0;
                }
                Node::Token(Token::Star) => {}
                Node::Token(Token::Word { name, param }) => {
                    match (name.as_slice(), *param) {
                        (b"uc", Some(n)) => uc = usize::try_from(n).unwrap_or(0).min(16),
                        (b"u", Some(n)) => {
                            let unit = if n < 0 { n + 65536 } else { n };
                            let c = u32::try_from(unit)
                                .ok()
                                .and_then(char::from_u32)
                                .unwrap_or('\u{fffd}');
                            r.word_view.push(c);
                            r.raw_view.push(c);
                            r.has_unicode = true;
                            r.tokens.push(Token::Word {
                                name: b"u".to_vec(),
                                param: Some(n),
                            });
                            r.tokens.push(Token::Text(b"?".to_vec()));
                            skip = uc;
                        }
                        _ => {
                            // Formatting: not part of the instruction, and it ends a fallback.
                            skip = 0;
                        }
                    }
                }
                Node::Token(Token::Text(bytes)) => {
                    for &b in bytes {
                        let c = if b.is_ascii() { b as char } else { '\u{fffd}' };
                        r.raw_view.push(c);
                        if skip > 0 {
                            skip -= 1;
                            continue;
                        }
                        r.word_view.push(c);
                        match r.tokens.last_mut() {
                            Some(Token::Text(t)) if t != b"?" => t.push(b),
                            _ => r.tokens.push(Token::Text(vec![b])),
                        }
                    }
                }
                Node::Token(Token::Hex(b)) => {
                    let c = if b.is_ascii() { *b as char } else { '\u{fffd}' };
                    r.raw_view.push(c);
                    if skip > 0 {
                        skip -= 1;
                        continue;
                    }
                    r.word_view.push(c);
                    r.tokens.push(Token::Hex(*b));
                }
                Node::Token(Token::Symbol(s)) => {
                    let c = match s {
                        b'~' => ' ',
                        b'-' | b'_' => '-',
                        other => *other as char,
                    };
                    r.raw_view.push(c);
                    if skip > 0 {
                        skip -= 1;
                        continue;
                    }
                    r.word_view.push(c);
                    r.tokens.push(Token::Symbol(*s));
                }
                Node::Token(Token::Bin(_)) => {
                    r.raw_view.push('\u{fffd}');
                    r.word_view.push('\u{fffd}');
                    r.nested_field = true;
                }
                Node::Token(Token::Open | Token::Close) => {}
            }
        }
    }
    let mut r = Reader {
        word_view: String::new(),
        raw_view: String::new(),
        tokens: Vec::new(),
        dropped: 0,
        nested_field: false,
        has_unicode: false,
    };
    // The group opens `\\*\\fldinst`; what follows is the instruction.
    let body = match inst {
        [Node::Token(Token::Star), Node::Token(Token::Word { name, .. }), rest @ ..]
        | [Node::Token(Token::Word { name, .. }), rest @ ..]
            if name == b"fldinst" =>
        {
            rest
        }
        other => other,
    };
    walk(&mut r, body, uc);
    let shown: String = r
        .word_view
        .trim()
        .chars()
        .filter(|c| !c.is_control())
        .take(120)
        .collect();
    if r.nested_field {
        return Err(format!("with a nested field or binary data: {shown}"));
    }
    let first_word = |view: &str| -> Option<String> {
        let view = view.trim_start_matches(|c: char| c.is_ascii_whitespace());
        let end = view
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(view.len());
        let (word, rest) = view.split_at(end);
        let delimited = rest.is_empty()
            || rest.starts_with(|c: char| c.is_ascii_whitespace() || c == '\\' || c == '"');
        (!word.is_empty() && delimited).then(|| word.to_ascii_uppercase())
    };
    let word = first_word(&r.word_view);
    let Some(word) = word.filter(|w| first_word(&r.raw_view).as_ref() == Some(w)) else {
        return Err(shown);
    };
    if !allow.iter().any(|a| a.eq_ignore_ascii_case(&word)) {
        return Err(shown);
    }
    for view in [&r.word_view, &r.raw_view] {
        let dangerous = view.split(|c: char| !c.is_ascii_alphanumeric()).any(|w| {
            DANGEROUS_FIELD_WORDS
                .iter()
                .any(|d| d.eq_ignore_ascii_case(w))
        });
        if dangerous {
            return Err(shown);
        }
    }
    let mut tokens = Vec::with_capacity(r.tokens.len() + 1);
    if r.has_unicode {
        // The fallback written after each \uN is one '?': say so, whatever the document's \uc.
        tokens.push(Token::Word {
            name: b"uc".to_vec(),
            param: Some(1),
        });
    }
    tokens.extend(r.tokens);
    Ok(Instruction {
        word,
        tokens,
        dropped_groups: r.dropped,
    })
}

/// Shape properties (`{\sp{\sn name}{\sv value}}`) that link a picture, fill or hyperlink to
/// a file or URL outside the document; Word fetches linked pictures on open (a UNC path leaks
/// NTLM credentials). Returns why the property goes.
fn linked_shape_property(sp: &[Node]) -> Option<String> {
    let mut name = String::new();
    if let Some(sn) = find_group(sp, b"sn") {
        text_of(sn, &mut name);
    }
    let mut value = String::new();
    if let Some(sv) = find_group(sp, b"sv") {
        text_of(sv, &mut value);
    }
    let name = name.trim();
    let value = value.trim();
    const LINKING: &[&str] = &[
        "pibName",
        "fillBlipName",
        "lineFillBlipName",
        "lineBlipName",
        "pihlShape",
        "wzHyperlink",
        "hlinkClick",
        "hlinkHover",
    ];
    let lower = value.to_ascii_lowercase();
    let looks_external = value.starts_with("\\\\")
        || lower.contains("://")
        || lower.starts_with("file:")
        || lower.starts_with("mhtml:")
        || (value.len() > 2
            && value.as_bytes()[1] == b':'
            && value.as_bytes()[0].is_ascii_alphabetic());
    if LINKING.iter().any(|l| l.eq_ignore_ascii_case(name)) || looks_external {
        let shown: String = value
            .chars()
            .filter(|c| !c.is_control())
            .take(120)
            .collect();
        return Some(format!("shape property {name} linking to {shown}"));
    }
    None
}

fn write(nodes: &[Node], out: &mut Vec<u8>) {
    for node in nodes {
        match node {
            Node::Group(g) => {
                out.push(b'{');
                write(g, out);
                out.push(b'}');
            }
            Node::Token(t) => match t {
                Token::Star => out.extend_from_slice(b"\\*"),
                Token::Word { name, param } => {
                    out.push(b'\\');
                    out.extend_from_slice(name);
                    if let Some(p) = param {
                        out.extend_from_slice(p.to_string().as_bytes());
                    }
                    // Always a delimiter space: the lexer takes exactly one, so following text
                    // (even text starting with a space) reads back unchanged.
                    out.push(b' ');
                }
                Token::Hex(b) => out.extend_from_slice(format!("\\'{b:02x}").as_bytes()),
                Token::Bin(data) => {
                    out.extend_from_slice(format!("\\bin{} ", data.len()).as_bytes());
                    out.extend_from_slice(data);
                }
                Token::Symbol(c) => {
                    out.push(b'\\');
                    out.push(*c);
                }
                Token::Text(bytes) => out.extend_from_slice(bytes),
                Token::Open | Token::Close => {}
            },
        }
    }
}

/// Rebuilds RTF documents.
pub struct RtfSanitizer;

impl Sanitizer for RtfSanitizer {
    fn kinds(&self) -> &'static [FileKind] {
        &[FileKind::Rtf]
    }

    fn sanitize(&self, input: &[u8], _kind: FileKind, cx: &mut Context<'_>) -> Result<Sanitized> {
        let tokens = lex(input)?;
        let mut top = tree(tokens)?;
        let [Node::Group(document)] = top.as_mut_slice() else {
            return Err(Error::malformed("RTF is not exactly one top-level group"));
        };
        let mut document = std::mem::take(document);
        // The header: `{\rt…` must open the document; it is written as `\rtf1`.
        match document.first_mut() {
            Some(Node::Token(Token::Word { name, param })) if name.starts_with(b"rt") => {
                if name.as_slice() != b"rtf" || *param != Some(1) {
                    if !cx.is_recheck() {
                        cx.warn(format!(
                            "header \\{}{} written as \\rtf1",
                            String::from_utf8_lossy(name),
                            param.map(|p| p.to_string()).unwrap_or_default()
                        ));
                    }
                    *name = b"rtf".to_vec();
                    *param = Some(1);
                }
            }
            _ => return Err(Error::malformed("RTF does not start with {\\rtf")),
        }
        let mut filter = Filter {
            allow: cx.policy().field_allowlist.clone(),
            strip_metadata: cx.policy().strip_metadata,
            cx,
            objects: 0,
            uc: 1,
        };
        let kept = filter.children(document, "")?;
        let mut out = Vec::with_capacity(input.len());
        write(&[Node::Group(kept)], &mut out);
        out.extend_from_slice(b"\r\n");
        Ok(Sanitized::new(out, FileKind::Rtf))
    }
}
