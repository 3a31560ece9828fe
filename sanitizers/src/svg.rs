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
//! Filters are the one part of drawing whose cost the file decides almost freely (a 300-byte
//! `feMorphology` with a large radius runs for an hour; a blur on a large canvas takes
//! gigabytes) and resvg cannot be stopped once it draws, so their work is estimated from the
//! parsed tree first and a file whose filters would not fit in the time left is held.
//! Must never: load a resource by URL or path, or start drawing work that cannot fit in the
//! file's deadline.

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
        // resvg cannot be interrupted: the filters' cost is the one the file decides, so it
        // must fit in the time left before drawing starts.
        let work = filter_work(&tree, width, height);
        let budget = cx.remaining().as_secs_f64() * 1000.0 * FILTER_WORK_PER_MS;
        if work > budget {
            return Err(Error::limit_exceeded(format!(
                "SVG filters would cost about {work:.0} pixel operations; {budget:.0} fit in the time left"
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

/// Pixel operations per millisecond assumed when sizing filter work against the deadline:
/// several times below what resvg manages on one slow core, so a file refused here would
/// really not have been drawn in time.
const FILTER_WORK_PER_MS: f64 = 50_000.0;

/// An estimate, in pixel operations, of what drawing the filters of `tree` on a
/// `width`×`height` canvas costs, following how resvg 0.49 does it: each filtered group gets
/// a layer the size of its filter region (at most 5× the canvas each way), and each primitive
/// walks that layer once — `feMorphology` once per pixel of its radius window, a convolution
/// once per kernel cell, a blur a fixed number of passes. Masks, clip paths, patterns and
/// `feImage` content are counted wherever they are drawn.
fn filter_work(tree: &usvg::Tree, width: u32, height: u32) -> f64 {
    let max = (5.0 * f64::from(width), 5.0 * f64::from(height));
    let mut total = 0.0;
    group_filter_work(tree.root(), max, &mut total);
    total
}

fn group_filter_work(group: &usvg::Group, max: (f64, f64), total: &mut f64) {
    let ts = group.abs_transform();
    let (sx, sy) = ts.get_scale();
    let (sx, sy) = (f64::from(sx).max(1e-3), f64::from(sy).max(1e-3));
    for filter in group.filters() {
        let (w, h) = filter.rect().transform(ts).map_or(max, |r| {
            (
                f64::from(r.width()).ceil().clamp(1.0, max.0),
                f64::from(r.height()).ceil().clamp(1.0, max.1),
            )
        });
        let area = w * h;
        // The layer itself, drawn and copied.
        *total += 2.0 * area;
        for primitive in filter.primitives() {
            use usvg::filter::Kind;
            let per_pixel = match primitive.kind() {
                Kind::Morphology(m) => {
                    let rx = (f64::from(m.radius_x().get()) * sx).round().min(w);
                    let ry = (f64::from(m.radius_y().get()) * sy).round().min(h);
                    (2.0 * rx + 1.0) * (2.0 * ry + 1.0)
                }
                Kind::ConvolveMatrix(c) => {
                    f64::from(c.matrix().columns()) * f64::from(c.matrix().rows())
                }
                Kind::Turbulence(t) => 8.0 * f64::from(t.num_octaves().max(1)),
                // Five box passes each way, plus the copies around them.
                Kind::GaussianBlur(_) | Kind::DropShadow(_) => 14.0,
                Kind::DiffuseLighting(_) | Kind::SpecularLighting(_) => 12.0,
                _ => 2.0,
            };
            *total += area * per_pixel;
        }
    }
    for child in group.children() {
        if let usvg::Node::Group(g) = child {
            group_filter_work(g, max, total);
        }
        child.subroots(|sub| group_filter_work(sub, max, total));
    }
}
