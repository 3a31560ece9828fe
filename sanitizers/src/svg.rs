//! SVG: rendered to a PNG with resvg; nothing of the markup survives.
//!
//! Owns: the `svg` kind under policy `sanitize` (the default policy holds SVG instead). The
//! picture is parsed by usvg with no way to reach outside the file — `resources_dir` unset, and
//! every `href` that is not a `data:` URL resolves to nothing — and rasterised at its own size
//! within the image limits. Scripts, event handlers, `foreignObject`, external references and
//! entity declarations are reported; they cannot survive a raster.
//! Invariants: fonts come only from the caller's [`FontSource`], asked once, the first time
//! an SVG has text (the library reads no files, and a gateway that never sees SVG text never
//! pays the fonts' memory); an SVG with text and no fonts to draw it is held rather than
//! rendered without its words.
//! Must never: load a resource by URL or path.

use std::sync::{Arc, OnceLock};

use resvg::usvg::{self, fontdb};

use crate::error::{Error, Result};
use crate::kind::FileKind;
use crate::registry::{Context, Sanitized, Sanitizer};
use crate::report::What;

/// Where the fonts for SVG text come from: called at most once, on first need.
pub type FontSource = Box<dyn Fn() -> fontdb::Database + Send + Sync>;

/// Rasterises SVG.
pub struct SvgSanitizer {
    source: FontSource,
    fonts: OnceLock<Arc<fontdb::Database>>,
}

impl SvgSanitizer {
    /// A rasteriser drawing text with the fonts `source` provides.
    pub fn new(source: FontSource) -> Self {
        Self {
            source,
            fonts: OnceLock::new(),
        }
    }

    fn fonts(&self, needed: bool) -> Arc<fontdb::Database> {
        if !needed {
            if let Some(fonts) = self.fonts.get() {
                return Arc::clone(fonts);
            }
            return Arc::new(fontdb::Database::new());
        }
        Arc::clone(self.fonts.get_or_init(|| Arc::new((self.source)())))
    }
}

/// What a raster drops, reported from the markup (case-insensitive).
const REPORTED: &[(&str, What, &str)] = &[
    ("<script", What::Javascript, "script element"),
    (
        "<foreignobject",
        What::ExternalReference,
        "foreignObject (embedded HTML)",
    ),
    ("<!entity", What::UnknownPart, "entity declaration"),
    ("<a ", What::Hyperlink, "link"),
    ("href=\"http", What::ExternalReference, "external reference"),
    ("href='http", What::ExternalReference, "external reference"),
    (
        "href=\"file:",
        What::ExternalReference,
        "local file reference",
    ),
    (" onload=", What::AutoAction, "onload handler"),
    (" onclick=", What::AutoAction, "onclick handler"),
    (" onmouseover=", What::AutoAction, "onmouseover handler"),
    ("<animate", What::Multimedia, "animation"),
    ("<set ", What::Multimedia, "animation (set)"),
];

impl Sanitizer for SvgSanitizer {
    fn kinds(&self) -> &'static [FileKind] {
        &[FileKind::Svg]
    }

    fn sanitize(&self, input: &[u8], _kind: FileKind, cx: &mut Context<'_>) -> Result<Sanitized> {
        let text = crate::text::decode_strict(input)?;
        let lower = text.to_ascii_lowercase();
        for (needle, what, why) in REPORTED {
            let count = lower.matches(needle).count();
            if count > 0 {
                cx.remove(*what, "svg", format!("{count} × {why}"));
            }
        }
        let has_text = lower.contains("<text");
        let fonts = self.fonts(has_text);
        if has_text && fonts.is_empty() {
            return Err(Error::unsupported(
                "SVG with text, and no fonts loaded to draw it (held rather than drawn without its words)",
            ));
        }
        let options = usvg::Options {
            resources_dir: None,
            fontdb: fonts,
            image_href_resolver: usvg::ImageHrefResolver {
                resolve_data: usvg::ImageHrefResolver::default_data_resolver(),
                // Paths and URLs resolve to nothing: the file is drawn from itself alone.
                resolve_string: Box::new(|_, _| None),
            },
            ..usvg::Options::default()
        };
        cx.check_deadline()?;
        let tree = usvg::Tree::from_str(&text, &options)
            .map_err(|e| Error::malformed(format!("SVG does not parse: {e}")))?;
        let size = tree.size().to_int_size();
        let (width, height) = (size.width(), size.height());
        let limits = &cx.policy().limits;
        if width > limits.max_image_dimension
            || height > limits.max_image_dimension
            || u64::from(width) * u64::from(height) > limits.max_image_pixels
        {
            return Err(Error::limit_exceeded(format!(
                "SVG draws at {width}×{height}, over the image limits"
            )));
        }
        let mut pixmap = resvg::tiny_skia::Pixmap::new(width, height)
            .ok_or_else(|| Error::malformed("SVG has no drawable size"))?;
        resvg::render(
            &tree,
            resvg::tiny_skia::Transform::default(),
            &mut pixmap.as_mut(),
        );
        cx.check_deadline()?;
        let mut rgba = Vec::with_capacity(pixmap.data().len());
        for pixel in pixmap.pixels() {
            let c = pixel.demultiply();
            rgba.extend_from_slice(&[c.red(), c.green(), c.blue(), c.alpha()]);
        }
        let image = image::RgbaImage::from_raw(width, height, rgba)
            .ok_or_else(|| Error::internal("rendered SVG has the wrong size"))?;
        let mut png = std::io::Cursor::new(Vec::new());
        image
            .write_to(&mut png, image::ImageFormat::Png)
            .map_err(|e| Error::internal(format!("PNG encoder failed: {e}")))?;
        Ok(Sanitized::new(png.into_inner(), FileKind::Png))
    }
}
