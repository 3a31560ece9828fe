//! Raster images: decode to pixels, encode a new file.
//!
//! Owns: PNG, JPEG, GIF (every frame), BMP, TIFF (single page) and WebP (still). Each input is
//! decoded by the pure-Rust decoders of the `image` crate under the policy's dimension, pixel,
//! frame and allocation limits, and a new file of the same kind is encoded from the pixels
//! alone. EXIF orientation is applied before the EXIF block goes, so photos stay upright.
//! Invariants: no byte of the input reaches the output except through decoded pixels — text
//! chunks, EXIF/XMP/IPTC, ICC profiles, comments and data after the end marker are gone by
//! construction. The chunk walkers here only *report* what the re-encode drops; a walker that
//! finds a structure the format forbids (a chunk before IHDR) makes the file malformed.
//! Must never: decode without limits, or return an image it could not fully decode.

use std::io::Cursor;

use image::codecs::gif::{GifDecoder, GifEncoder, Repeat};
use image::codecs::jpeg::JpegEncoder;
use image::codecs::webp::{WebPDecoder, WebPEncoder};
use image::{AnimationDecoder, DynamicImage, ImageDecoder, ImageError, ImageFormat, ImageReader};

use crate::error::{Error, Result};
use crate::kind::FileKind;
use crate::policy::Limits;
use crate::registry::{Context, Sanitized, Sanitizer};
use crate::report::What;

/// JPEG quality of re-encoded photos: visually lossless for documents and photos.
const JPEG_QUALITY: u8 = 90;

/// Re-encodes raster images.
pub struct ImageSanitizer;

impl Sanitizer for ImageSanitizer {
    fn kinds(&self) -> &'static [FileKind] {
        &[
            FileKind::Png,
            FileKind::Jpeg,
            FileKind::Gif,
            FileKind::Bmp,
            FileKind::Tiff,
            FileKind::Webp,
        ]
    }

    fn sanitize(&self, input: &[u8], kind: FileKind, cx: &mut Context<'_>) -> Result<Sanitized> {
        let limits = cx.policy().limits.clone();
        match kind {
            FileKind::Png => walk_png(input, cx)?,
            FileKind::Jpeg => walk_jpeg(input, cx)?,
            FileKind::Gif => walk_gif(input, cx)?,
            FileKind::Tiff => check_single_page_tiff(input)?,
            _ => {}
        }
        cx.check_deadline()?;
        let bytes = match kind {
            FileKind::Gif => reencode_gif(input, &limits, cx)?,
            FileKind::Webp => {
                let decoder = WebPDecoder::new(Cursor::new(input)).map_err(decode_error)?;
                if decoder.has_animation() {
                    return Err(Error::unsupported(
                        "animated WebP is not rebuilt; the file is held",
                    ));
                }
                let image = decode(input, ImageFormat::WebP, &limits)?;
                encode(&image, kind)?
            }
            _ => {
                let format = match kind {
                    FileKind::Png => ImageFormat::Png,
                    FileKind::Jpeg => ImageFormat::Jpeg,
                    FileKind::Bmp => ImageFormat::Bmp,
                    FileKind::Tiff => ImageFormat::Tiff,
                    other => return Err(Error::unsupported(format!("{other} is not an image"))),
                };
                let image = decode(input, format, &limits)?;
                encode(&image, kind)?
            }
        };
        Ok(Sanitized::new(bytes, kind))
    }
}

fn image_limits(limits: &Limits) -> image::Limits {
    let mut out = image::Limits::default();
    out.max_image_width = Some(limits.max_image_dimension);
    out.max_image_height = Some(limits.max_image_dimension);
    // Room for the decoded pixels at 16 bits × 4 channels, plus the decoder's own buffers.
    out.max_alloc = Some(limits.max_image_pixels.saturating_mul(8).max(1 << 20));
    out
}

fn decode_error(err: ImageError) -> Error {
    match err {
        ImageError::Limits(e) => Error::limit_exceeded(format!("image: {e}")),
        ImageError::Unsupported(e) => Error::unsupported(format!("image: {e}")),
        other => Error::malformed(format!("image does not decode: {other}")),
    }
}

fn check_pixels(width: u32, height: u32, limits: &Limits) -> Result<()> {
    let pixels = u64::from(width) * u64::from(height);
    if pixels > limits.max_image_pixels {
        return Err(Error::limit_exceeded(format!(
            "image is {width}×{height} = {pixels} pixels, limit is {}",
            limits.max_image_pixels
        )));
    }
    if pixels == 0 {
        return Err(Error::malformed("image has no pixels"));
    }
    Ok(())
}

/// Decodes a still image, upright.
fn decode(input: &[u8], format: ImageFormat, limits: &Limits) -> Result<DynamicImage> {
    let mut reader = ImageReader::with_format(Cursor::new(input), format);
    reader.limits(image_limits(limits));
    let mut decoder = reader.into_decoder().map_err(decode_error)?;
    let (width, height) = decoder.dimensions();
    check_pixels(width, height, limits)?;
    let orientation = decoder.orientation().map_err(decode_error)?;
    let mut image = DynamicImage::from_decoder(decoder).map_err(decode_error)?;
    image.apply_orientation(orientation);
    Ok(image)
}

/// Encodes pixels as a new file of `kind`.
fn encode(image: &DynamicImage, kind: FileKind) -> Result<Vec<u8>> {
    let mut out = Cursor::new(Vec::new());
    let written = match kind {
        FileKind::Png => image.write_to(&mut out, ImageFormat::Png),
        FileKind::Jpeg => {
            // JPEG has no alpha; grey stays grey.
            let flat = if image.color().has_color() {
                DynamicImage::ImageRgb8(image.to_rgb8())
            } else {
                DynamicImage::ImageLuma8(image.to_luma8())
            };
            flat.write_with_encoder(JpegEncoder::new_with_quality(&mut out, JPEG_QUALITY))
        }
        FileKind::Bmp | FileKind::Tiff => {
            let eight_bit = if image.color().has_alpha() {
                DynamicImage::ImageRgba8(image.to_rgba8())
            } else {
                DynamicImage::ImageRgb8(image.to_rgb8())
            };
            let format = if kind == FileKind::Bmp {
                ImageFormat::Bmp
            } else {
                ImageFormat::Tiff
            };
            eight_bit.write_to(&mut out, format)
        }
        FileKind::Webp => {
            let eight_bit = if image.color().has_alpha() {
                DynamicImage::ImageRgba8(image.to_rgba8())
            } else {
                DynamicImage::ImageRgb8(image.to_rgb8())
            };
            eight_bit.write_with_encoder(WebPEncoder::new_lossless(&mut out))
        }
        other => return Err(Error::unsupported(format!("no encoder for {other}"))),
    };
    written.map_err(|e| Error::internal(format!("image encoder failed: {e}")))?;
    Ok(out.into_inner())
}

/// Decodes every frame of a GIF (composited by the decoder) and writes a new animated GIF.
fn reencode_gif(input: &[u8], limits: &Limits, cx: &Context<'_>) -> Result<Vec<u8>> {
    let mut decoder = GifDecoder::new(Cursor::new(input)).map_err(decode_error)?;
    decoder
        .set_limits(image_limits(limits))
        .map_err(decode_error)?;
    let (width, height) = decoder.dimensions();
    check_pixels(width, height, limits)?;
    let frame_pixels = u64::from(width) * u64::from(height);
    let mut frames = Vec::new();
    let mut total = 0u64;
    for frame in decoder.into_frames() {
        cx.check_deadline()?;
        let frame = frame.map_err(decode_error)?;
        total += frame_pixels;
        if frames.len() as u32 >= limits.max_image_frames || total > limits.max_image_pixels {
            return Err(Error::limit_exceeded(format!(
                "GIF has more than {} frames or {} pixels in all",
                limits.max_image_frames, limits.max_image_pixels
            )));
        }
        frames.push(frame);
    }
    if frames.is_empty() {
        return Err(Error::malformed("GIF has no frames"));
    }
    let animated = frames.len() > 1;
    let mut out = Vec::new();
    {
        let mut encoder = GifEncoder::new(&mut out);
        if animated {
            encoder
                .set_repeat(Repeat::Infinite)
                .map_err(|e| Error::internal(format!("GIF encoder: {e}")))?;
        }
        encoder
            .encode_frames(frames)
            .map_err(|e| Error::internal(format!("GIF encoder failed: {e}")))?;
    }
    Ok(out)
}

fn be32(bytes: &[u8], at: usize) -> Option<u32> {
    bytes
        .get(at..at + 4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// Reports what re-encoding a PNG drops; refuses chunk orders the format forbids.
fn walk_png(input: &[u8], cx: &mut Context<'_>) -> Result<()> {
    let mut at = 8;
    let mut first = true;
    while at < input.len() {
        let len = be32(input, at).ok_or_else(|| Error::malformed("PNG chunk header cut off"))?;
        let kind = input
            .get(at + 4..at + 8)
            .ok_or_else(|| Error::malformed("PNG chunk header cut off"))?;
        let name = String::from_utf8_lossy(kind).into_owned();
        if first && kind != b"IHDR" {
            return Err(Error::malformed(format!(
                "PNG starts with a {name} chunk instead of IHDR"
            )));
        }
        first = false;
        let next = at
            .checked_add(12)
            .and_then(|a| a.checked_add(len as usize))
            .ok_or_else(|| Error::malformed("PNG chunk length overflows"))?;
        match kind {
            b"tEXt" | b"zTXt" | b"iTXt" | b"eXIf" | b"tIME" | b"iCCP" => {
                cx.remove(What::Metadata, format!("PNG chunk at {at}"), name)
            }
            b"IEND" => {
                if next < input.len() {
                    cx.remove(
                        What::TrailingData,
                        "after IEND",
                        format!("{} bytes", input.len() - next),
                    );
                }
                return Ok(());
            }
            // Private or unregistered ancillary chunks (lower-case first letter).
            k if k[0].is_ascii_lowercase()
                && !matches!(
                    k,
                    b"tRNS"
                        | b"gAMA"
                        | b"cHRM"
                        | b"sRGB"
                        | b"sBIT"
                        | b"bKGD"
                        | b"pHYs"
                        | b"hIST"
                        | b"sPLT"
                        | b"acTL"
                        | b"fcTL"
                        | b"fdAT"
                        | b"cICP"
                ) =>
            {
                cx.remove(What::UnknownPart, format!("PNG chunk at {at}"), name)
            }
            _ => {}
        }
        at = next;
    }
    Err(Error::malformed("PNG ends before IEND (truncated)"))
}

/// Reports the metadata segments and trailing bytes re-encoding a JPEG drops.
fn walk_jpeg(input: &[u8], cx: &mut Context<'_>) -> Result<()> {
    let mut at = 2;
    // Marker segments up to the first scan.
    loop {
        let Some(&[0xFF, marker]) = input.get(at..at + 2) else {
            return Err(Error::malformed(format!("JPEG marker expected at {at}")));
        };
        if marker == 0xFF {
            at += 1; // fill byte
            continue;
        }
        let len = input
            .get(at + 2..at + 4)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
            .ok_or_else(|| Error::malformed("JPEG segment cut off"))?;
        let body = input.get(at + 4..at + 2 + len).unwrap_or_default();
        let label = |b: &[u8]| String::from_utf8_lossy(&b[..b.len().min(12)]).replace('\0', "");
        match marker {
            0xE0 if body.starts_with(b"JFIF\0") => {}
            0xEE if body.starts_with(b"Adobe") => {}
            0xE0..=0xEF => cx.remove(
                What::Metadata,
                format!("JPEG APP{} at {at}", marker - 0xE0),
                label(body),
            ),
            0xFE => cx.remove(What::Metadata, format!("JPEG comment at {at}"), "COM"),
            0xDA => break,
            _ => {}
        }
        at += 2 + len;
    }
    // Entropy-coded data and any later tables and scans, up to EOI.
    let mut i = at;
    while i + 1 < input.len() {
        if input[i] != 0xFF {
            i += 1;
            continue;
        }
        match input[i + 1] {
            0x00 | 0xD0..=0xD7 | 0xFF => i += 1,
            0xD9 => {
                let end = i + 2;
                if end < input.len() {
                    cx.remove(
                        What::TrailingData,
                        "after EOI",
                        format!("{} bytes", input.len() - end),
                    );
                }
                return Ok(());
            }
            0xFE => {
                cx.remove(What::Metadata, format!("JPEG comment at {i}"), "COM");
                i += 2;
            }
            _ => i += 2,
        }
    }
    // Decoders fill a cut-off scan with grey; a partial picture is not the sender's picture.
    Err(Error::malformed("JPEG ends before EOI (truncated)"))
}

/// Reports comments, unknown extensions and trailing bytes in a GIF.
fn walk_gif(input: &[u8], cx: &mut Context<'_>) -> Result<()> {
    let flags = *input
        .get(10)
        .ok_or_else(|| Error::malformed("GIF header cut off"))?;
    let mut at = 13;
    if flags & 0x80 != 0 {
        at += 3 << ((flags & 7) + 1);
    }
    let skip_blocks = |mut at: usize| -> Option<usize> {
        loop {
            let n = usize::from(*input.get(at)?);
            at += 1;
            if n == 0 {
                return Some(at);
            }
            at += n;
        }
    };
    loop {
        match input.get(at) {
            Some(0x3B) => {
                if at + 1 < input.len() {
                    cx.remove(
                        What::TrailingData,
                        "after the GIF trailer",
                        format!("{} bytes", input.len() - at - 1),
                    );
                }
                return Ok(());
            }
            Some(0x21) => {
                let label = *input.get(at + 1).unwrap_or(&0);
                let body = at + 2;
                match label {
                    0xFE => cx.remove(What::Metadata, format!("GIF comment at {at}"), "comment"),
                    0xFF => {
                        let app = input.get(body + 1..body + 12).unwrap_or_default();
                        if app != b"NETSCAPE2.0" && app != b"ANIMEXTS1.0" {
                            let name = String::from_utf8_lossy(app).into_owned();
                            cx.remove(
                                What::Metadata,
                                format!("GIF application block at {at}"),
                                name,
                            );
                        }
                    }
                    0x01 => cx.remove(
                        What::UnknownPart,
                        format!("GIF text block at {at}"),
                        "plain text",
                    ),
                    _ => {}
                }
                at = skip_blocks(body).ok_or_else(|| Error::malformed("GIF block cut off"))?;
            }
            Some(0x2C) => {
                let flags = *input
                    .get(at + 9)
                    .ok_or_else(|| Error::malformed("GIF image descriptor cut off"))?;
                at += 10;
                if flags & 0x80 != 0 {
                    at += 3 << ((flags & 7) + 1);
                }
                at = skip_blocks(at + 1)
                    .ok_or_else(|| Error::malformed("GIF image data cut off"))?;
            }
            Some(other) => {
                return Err(Error::malformed(format!(
                    "GIF block type {other:#04x} at {at} is not defined"
                )))
            }
            None => return Err(Error::malformed("GIF ends before its trailer (truncated)")),
        }
    }
}

/// TIFF: one image only (the encoder writes one page; dropping pages silently would lose
/// content), classic TIFF only.
fn check_single_page_tiff(input: &[u8]) -> Result<()> {
    let le = input.starts_with(b"II");
    let u16_at = |at: usize| {
        input.get(at..at + 2).map(|b| {
            if le {
                u16::from_le_bytes([b[0], b[1]])
            } else {
                u16::from_be_bytes([b[0], b[1]])
            }
        })
    };
    let u32_at = |at: usize| {
        input.get(at..at + 4).map(|b| {
            let b = [b[0], b[1], b[2], b[3]];
            if le {
                u32::from_le_bytes(b)
            } else {
                u32::from_be_bytes(b)
            }
        })
    };
    if u16_at(2) != Some(42) {
        return Err(Error::unsupported("BigTIFF is not rebuilt"));
    }
    let ifd = u32_at(4).ok_or_else(|| Error::malformed("TIFF header cut off"))? as usize;
    let entries = u16_at(ifd).ok_or_else(|| Error::malformed("TIFF IFD out of range"))?;
    let next = u32_at(ifd + 2 + usize::from(entries) * 12)
        .ok_or_else(|| Error::malformed("TIFF IFD cut off"))?;
    if next != 0 {
        return Err(Error::unsupported(
            "multi-page TIFF is not rebuilt (only one page would survive)",
        ));
    }
    Ok(())
}
