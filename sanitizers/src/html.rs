//! HTML files: converted to plain text with the mail engine's converter.
//!
//! Owns: the `html` kind in the registry (policy `sanitize`; `quarantine` holds them instead).
//! Invariants: no markup is delivered — the output is UTF-8 text (with a BOM and CRLF line ends,
//! which every Windows viewer on an LGWAN terminal reads correctly) named `.txt`; scripts,
//! frames, forms and links are counted in the report; links appear only defanged.
//! Must never: deliver HTML (HTML smuggling rebuilds payloads from script in the browser).

use crate::error::{Error, Result};
use crate::kind::FileKind;
use crate::registry::{Context, Sanitized, Sanitizer};
use crate::report::What;

/// Converts HTML files to text.
pub struct HtmlSanitizer;

impl Sanitizer for HtmlSanitizer {
    fn kinds(&self) -> &'static [FileKind] {
        &[FileKind::Html]
    }

    fn sanitize(&self, input: &[u8], kind: FileKind, cx: &mut Context<'_>) -> Result<Sanitized> {
        let html = crate::text::decode_strict(input)?;
        if kind == FileKind::Text {
            // The registry's second pass over our own output: it must still be clean text.
            return Ok(Sanitized::new(input.to_vec(), FileKind::Text));
        }
        if kind != FileKind::Html {
            return Err(Error::unsupported(format!("{kind} is not HTML")));
        }
        let lower = html.to_ascii_lowercase();
        for (tag, what, detail) in [
            ("<script", What::Javascript, "script element"),
            ("<iframe", What::ExternalReference, "inline frame"),
            ("<frame", What::ExternalReference, "frame"),
            ("<object", What::OleObject, "object element"),
            ("<embed", What::EmbeddedFile, "embed element"),
            ("<form", What::Action, "form (submits to a remote address)"),
            ("<a ", What::Hyperlink, "link (shown defanged in the text)"),
            (
                "<meta http-equiv=\"refresh\"",
                What::Action,
                "automatic redirect",
            ),
        ] {
            let count = count_tags(&lower, tag);
            if count > 0 {
                cx.remove(what, "html", format!("{count} × {detail}"));
            }
        }
        cx.check_deadline()?;
        let limits = &cx.policy().limits;
        let text = crate::mail::html::to_text(&html, limits.max_html_depth, cx.remaining())?;
        // The renderer cannot look at the clock; what it finished late is not delivered.
        cx.check_deadline()?;
        let mut out = Vec::with_capacity(text.len() + 16);
        out.extend_from_slice(b"\xEF\xBB\xBF");
        for line in text.lines() {
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        // A page that shows markup as text (`&lt;body&gt;`, or `<<body>body>`) yields text that
        // content detection takes for markup again: it would fail its own re-check, and
        // delivered under another name it would be opened as HTML. A decision, held here.
        let again = crate::detect::detect(&out, &crate::Declared::default()).kind;
        if again != FileKind::Text {
            return Err(Error::unsupported(format!(
                "the page's text reads as {again} itself (markup shown as text): held, not delivered"
            )));
        }
        Ok(Sanitized::new(out, FileKind::Text))
    }
}

/// Occurrences of `needle` (which starts with `<`) also in its prefixed form, `<h:script`:
/// in XHTML any prefix bound to the XHTML namespace makes an element HTML.
fn count_tags(lower: &str, needle: &str) -> usize {
    let Some(rest) = needle.strip_prefix('<') else {
        return lower.matches(needle).count();
    };
    let bytes = lower.as_bytes();
    let is_name = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.');
    lower
        .match_indices(rest)
        .filter(|&(at, _)| match at.checked_sub(1).map(|i| bytes[i]) {
            Some(b'<') => true,
            Some(b':') => {
                let prefix_start = bytes[..at - 1]
                    .iter()
                    .rposition(|&b| !is_name(b))
                    .map_or(0, |i| i + 1);
                prefix_start < at - 1 && prefix_start > 0 && bytes[prefix_start - 1] == b'<'
            }
            _ => false,
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::count_tags;

    #[test]
    fn prefixed_xhtml_tags_are_counted() {
        let doc = "<h:script>a</h:script><script>b</script><x:y:script><notscript>";
        assert_eq!(count_tags(doc, "<script"), 2);
        assert_eq!(count_tags("<a href=x><h:a href=y>", "<a "), 2);
    }
}
