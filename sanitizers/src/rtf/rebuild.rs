//! The RTF sanitizer: tokens → group tree → filtered tree → new RTF.
//!
//! Owns: dropping what runs or fetches — `\object` groups (keeping their `\result` picture or
//! text), `\objdata`, `\datastore` (OLE data some exploits hide there), embedded fonts, a remote
//! `\*\template`, and every field whose instruction is not on the policy's allowlist (its
//! `\fldrslt` stays in place) — plus `\info` metadata by policy; then writing the tree back out.
//! Invariants: the output is written from tokens only, so it always re-lexes to the same tree;
//! the header is written as `{\rtf1` whatever the input said (`{\rtvpn`…); a second pass finds
//! nothing to remove. Groups nest at most [`MAX_DEPTH`] deep.
//! Must never: keep an object's data because its result is missing — the object goes.

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
            Some(b"field") => {
                let mut instr = String::new();
                if let Some(inst) = find_group(&group, b"fldinst") {
                    text_of(inst, &mut instr);
                }
                let word = instr
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .to_ascii_uppercase();
                if !self.allow.iter().any(|a| a.eq_ignore_ascii_case(&word)) {
                    let shown: String = instr.trim().chars().take(120).collect();
                    self.cx
                        .remove(What::Field, path.to_string(), format!("field {shown}"));
                    return match find_group(&group, b"fldrslt") {
                        Some(result) => {
                            let body = result_body(result);
                            self.children(body, path).map(Some)
                        }
                        None => Ok(None),
                    };
                }
            }
            _ => {}
        }
        self.children(group, path).map(Some)
    }

    fn children(&mut self, group: Vec<Node>, path: &str) -> Result<Vec<Node>> {
        let mut out = Vec::with_capacity(group.len());
        for node in group {
            match node {
                Node::Group(g) => {
                    if let Some(kept) = self.group(g, path)? {
                        out.push(Node::Group(kept));
                    }
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
        Ok(out)
    }
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
        };
        let kept = filter.children(document, "")?;
        let mut out = Vec::with_capacity(input.len());
        write(&[Node::Group(kept)], &mut out);
        out.extend_from_slice(b"\r\n");
        Ok(Sanitized::new(out, FileKind::Rtf))
    }
}
