//! Raster images are decoded under limits and re-encoded from their pixels: metadata, comments
//! and appended payloads are gone and reported, pixels survive, photos stay upright, and
//! anything the decoders cannot fully read is held.

use crate::common;

use std::io::Cursor;

use common::*;
use image::{DynamicImage, ImageFormat, Rgb, RgbImage, Rgba, RgbaImage};
use mukaika_sanitizers::{FileKind, Policy, Verdict, What};

fn pattern(width: u32, height: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| {
        Rgb([
            (x * 37 % 256) as u8,
            (y * 11 % 256) as u8,
            ((x + y) % 256) as u8,
        ])
    })
}

fn encoded(image: DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    image.write_to(&mut out, format).unwrap();
    out.into_inner()
}

fn png_chunk(kind: &[u8], data: &[u8]) -> Vec<u8> {
    let mut chunk = (data.len() as u32).to_be_bytes().to_vec();
    chunk.extend_from_slice(kind);
    chunk.extend_from_slice(data);
    let mut crc = crc32fast::Hasher::new();
    crc.update(kind);
    crc.update(data);
    chunk.extend_from_slice(&crc.finalize().to_be_bytes());
    chunk
}

/// Inserts a chunk right after IHDR (8-byte signature + 25-byte IHDR chunk).
fn with_chunk(png: &[u8], kind: &[u8], data: &[u8]) -> Vec<u8> {
    let mut out = png[..33].to_vec();
    out.extend(png_chunk(kind, data));
    out.extend_from_slice(&png[33..]);
    out
}

fn png_chunk_names(png: &[u8]) -> Vec<String> {
    let mut names = Vec::new();
    let mut at = 8;
    while at + 8 <= png.len() {
        let len = u32::from_be_bytes(png[at..at + 4].try_into().unwrap()) as usize;
        names.push(String::from_utf8_lossy(&png[at + 4..at + 8]).into_owned());
        at += 12 + len;
    }
    names
}

#[test]
fn png_metadata_and_appended_archive_are_dropped_pixels_kept() {
    let original = pattern(40, 30);
    let png = encoded(DynamicImage::ImageRgb8(original.clone()), ImageFormat::Png);
    let mut hostile = with_chunk(&png, b"tEXt", b"Author\0Synthetic Tester");
    hostile = with_chunk(&hostile, b"eXIf", b"MM\0*\0\0\0\x08\0\0");
    hostile = with_chunk(&hostile, b"prVt", b"private payload");
    hostile.extend_from_slice(b"PK\x03\x04 appended archive bytes");
    let outcome = assert_fail_closed("写真.png", &hostile);
    assert!(removed(&outcome, What::Metadata, "tEXt"));
    assert!(removed(&outcome, What::Metadata, "eXIf"));
    assert!(removed(&outcome, What::UnknownPart, "prVt"));
    assert!(removed(&outcome, What::TrailingData, "after IEND"));
    let out = outcome.output().unwrap().bytes();
    let names = png_chunk_names(out);
    assert!(
        names
            .iter()
            .all(|n| ["IHDR", "IDAT", "IEND"].contains(&n.as_str())),
        "{names:?}"
    );
    assert!(out.ends_with(&png_chunk(b"IEND", b"")));
    let decoded = image::load_from_memory(out).unwrap().to_rgb8();
    assert_eq!(decoded, original, "PNG re-encoding is lossless");
}

#[test]
fn png_with_a_chunk_before_ihdr_is_malformed() {
    let png = encoded(DynamicImage::ImageRgb8(pattern(4, 4)), ImageFormat::Png);
    let mut bad = png[..8].to_vec();
    bad.extend(png_chunk(b"tEXt", b"Comment\0first"));
    bad.extend_from_slice(&png[8..]);
    let outcome = process(&bad, "a.png");
    assert_eq!(outcome.report.verdict, Verdict::Quarantined);
    assert_eq!(outcome.report.reason.unwrap().code, "malformed");
}

/// A minimal EXIF APP1 segment holding only an orientation tag.
fn exif_orientation(value: u16) -> Vec<u8> {
    let mut tiff = b"II*\0\x08\0\0\0\x01\0".to_vec();
    tiff.extend_from_slice(&0x0112u16.to_le_bytes());
    tiff.extend_from_slice(&3u16.to_le_bytes());
    tiff.extend_from_slice(&1u32.to_le_bytes());
    tiff.extend_from_slice(&value.to_le_bytes());
    tiff.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    let mut body = b"Exif\0\0".to_vec();
    body.extend(tiff);
    let mut seg = vec![0xFF, 0xE1];
    seg.extend_from_slice(&((body.len() + 2) as u16).to_be_bytes());
    seg.extend(body);
    seg
}

#[test]
fn jpeg_exif_and_comments_go_and_the_photo_stays_upright() {
    let jpeg = encoded(DynamicImage::ImageRgb8(pattern(64, 32)), ImageFormat::Jpeg);
    let mut hostile = jpeg[..2].to_vec();
    hostile.extend(exif_orientation(6)); // rotate 90° clockwise to display
    hostile.extend_from_slice(&[0xFF, 0xFE, 0x00, 0x0A]);
    hostile.extend_from_slice(b"comment!");
    hostile.extend_from_slice(&jpeg[2..]);
    hostile.extend_from_slice(b"<script>appended</script>");
    let outcome = assert_fail_closed("IMG_0001.JPG", &hostile);
    assert!(removed(&outcome, What::Metadata, "Exif"));
    assert!(removed(&outcome, What::Metadata, "COM"));
    assert!(removed(&outcome, What::TrailingData, "after EOI"));
    let out = outcome.output().unwrap();
    assert_eq!(out.kind(), FileKind::Jpeg);
    assert!(out.bytes().ends_with(&[0xFF, 0xD9]));
    assert!(!out.bytes().windows(4).any(|w| w == b"Exif"));
    let decoded = image::load_from_memory(out.bytes()).unwrap();
    assert_eq!(
        (decoded.width(), decoded.height()),
        (32, 64),
        "orientation 6 is applied before EXIF is dropped"
    );
}

#[test]
fn gif_animation_keeps_every_frame_and_loses_its_comment() {
    use image::codecs::gif::{GifEncoder, Repeat};
    use image::{Delay, Frame};
    let mut gif = Vec::new();
    {
        let mut enc = GifEncoder::new(&mut gif);
        enc.set_repeat(Repeat::Infinite).unwrap();
        let frames = (0..3u8).map(|i| {
            Frame::from_parts(
                RgbaImage::from_pixel(8, 8, Rgba([i * 80, 0, 255 - i * 80, 255])),
                0,
                0,
                Delay::from_numer_denom_ms(100, 1),
            )
        });
        enc.encode_frames(frames).unwrap();
    }
    // A comment extension right after the global colour table / before the first block.
    let trailer = gif.len() - 1;
    let mut hostile = gif[..trailer].to_vec();
    hostile.extend_from_slice(&[0x21, 0xFE, 5]);
    hostile.extend_from_slice(b"hello");
    hostile.push(0);
    hostile.push(0x3B);
    hostile.extend_from_slice(b"trailing");
    let outcome = assert_fail_closed("anim.gif", &hostile);
    assert!(removed(&outcome, What::Metadata, "comment"));
    assert!(removed(&outcome, What::TrailingData, "GIF trailer"));
    let out = outcome.output().unwrap().bytes();
    use image::AnimationDecoder;
    let frames = image::codecs::gif::GifDecoder::new(Cursor::new(out))
        .unwrap()
        .into_frames()
        .collect_frames()
        .unwrap();
    assert_eq!(frames.len(), 3);
    assert_eq!(frames[2].buffer().get_pixel(4, 4), &Rgba([160, 0, 95, 255]));
}

#[test]
fn bmp_tiff_and_webp_round_trip_their_pixels() {
    let original = pattern(17, 9);
    for (format, name, kind) in [
        (ImageFormat::Bmp, "scan.bmp", FileKind::Bmp),
        (ImageFormat::Tiff, "scan.tif", FileKind::Tiff),
        (ImageFormat::WebP, "scan.webp", FileKind::Webp),
    ] {
        let mut input = encoded(DynamicImage::ImageRgb8(original.clone()), format);
        if format == ImageFormat::Bmp {
            input.extend_from_slice(b"appended"); // BMP has no end marker to report against
        }
        let outcome = process(&input, name);
        assert_eq!(
            outcome.report.verdict,
            Verdict::Sanitized,
            "{name}: {:?}",
            outcome.report.reason
        );
        let out = outcome.output().unwrap();
        assert_eq!(out.kind(), kind);
        let decoded = image::load_from_memory(out.bytes()).unwrap().to_rgb8();
        assert_eq!(decoded, original, "{name}");
    }
}

#[test]
fn multi_page_tiff_is_held_rather_than_cut_to_one_page() {
    let tiff = encoded(DynamicImage::ImageRgb8(pattern(4, 4)), ImageFormat::Tiff);
    // Point the first IFD's next-IFD link back at itself: a second page.
    let ifd = u32::from_le_bytes(tiff[4..8].try_into().unwrap()) as usize;
    let entries = u16::from_le_bytes(tiff[ifd..ifd + 2].try_into().unwrap()) as usize;
    let mut two = tiff.clone();
    let link = ifd + 2 + entries * 12;
    two[link..link + 4].copy_from_slice(&(ifd as u32).to_le_bytes());
    let outcome = process(&two, "fax.tif");
    assert_eq!(outcome.report.verdict, Verdict::Quarantined);
    assert_eq!(outcome.report.reason.unwrap().code, "unsupported");
}

#[test]
fn oversized_dimensions_are_refused_before_decoding() {
    let png = encoded(DynamicImage::ImageRgb8(pattern(64, 64)), ImageFormat::Png);
    let policy = Policy {
        limits: mukaika_sanitizers::Limits {
            max_image_pixels: 1000,
            ..Default::default()
        },
        ..Policy::default()
    };
    let outcome = process_with(&png, "big.png", &policy);
    assert_eq!(outcome.report.verdict, Verdict::Quarantined);
    assert_eq!(outcome.report.reason.unwrap().code, "limit-exceeded");

    // A header that claims 100000 × 100000 pixels (a decompression bomb's shape).
    let mut bomb = png.clone();
    bomb[16..20].copy_from_slice(&100_000u32.to_be_bytes());
    bomb[20..24].copy_from_slice(&100_000u32.to_be_bytes());
    let crc = crc32fast::hash(&bomb[12..29]);
    bomb[29..33].copy_from_slice(&crc.to_be_bytes());
    let outcome = process(&bomb, "bomb.png");
    assert_eq!(outcome.report.verdict, Verdict::Quarantined);
    assert_eq!(outcome.report.reason.unwrap().code, "limit-exceeded");
}

#[test]
fn svg_is_drawn_to_png_without_reaching_outside_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let green = dir.path().join("green.png");
    let solid = RgbImage::from_pixel(10, 10, Rgb([0, 255, 0]));
    std::fs::write(
        &green,
        encoded(DynamicImage::ImageRgb8(solid), ImageFormat::Png),
    )
    .unwrap();
    let svg = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="40" height="20" onload="alert(1)">
<script>fetch('https://evil.example/')</script>
<rect x="0" y="0" width="20" height="20" fill="#ff0000"/>
<image x="20" y="0" width="20" height="20" xlink:href="{}"/>
<foreignObject width="10" height="10"><div xmlns="http://www.w3.org/1999/xhtml">html</div></foreignObject>
</svg>"##,
        green.display()
    );
    let outcome = process(svg.as_bytes(), "図.svg");
    assert_eq!(
        outcome.report.verdict,
        Verdict::Sanitized,
        "{:?}",
        outcome.report.reason
    );
    assert!(removed(&outcome, What::Javascript, "script"));
    assert!(removed(&outcome, What::AutoAction, "onload"));
    assert!(removed(&outcome, What::ExternalReference, "foreignObject"));
    let out = outcome.output().unwrap();
    assert_eq!(out.kind(), FileKind::Png);
    assert_eq!(out.name(), "図.png");
    let png = image::load_from_memory(out.bytes()).unwrap().to_rgba8();
    assert_eq!(png.dimensions(), (40, 20));
    assert_eq!(
        png.get_pixel(5, 5),
        &Rgba([255, 0, 0, 255]),
        "drawn content stays"
    );
    assert_eq!(
        png.get_pixel(30, 5)[3],
        0,
        "a file the SVG points at is never loaded"
    );
}

#[test]
fn svg_text_needs_fonts_and_is_drawn_with_them() {
    let svg = r#"<svg xmlns="http://www.w3.org/2000/svg" width="200" height="40"><text x="5" y="30" font-size="24" font-family="IPAexGothic">会議室</text></svg>"#.as_bytes();
    let outcome = process(svg, "label.svg");
    assert_eq!(
        outcome.report.verdict,
        Verdict::Quarantined,
        "no fonts: held, not drawn blank"
    );
    assert_eq!(outcome.report.reason.unwrap().code, "unsupported");

    // tests/ci.sh installs fonts-ipaexfont.
    let registry = mukaika_sanitizers::Registry::standard_with_fonts(Box::new(|| {
        let mut fonts = mukaika_sanitizers::fontdb::Database::new();
        let path = "/usr/share/fonts/opentype/ipaexfont-gothic/ipaexg.ttf";
        fonts.load_font_data(std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}")));
        fonts
    }));
    let outcome = registry.process(
        svg,
        &mukaika_sanitizers::Declared {
            name: Some("label.svg"),
            mime: None,
        },
        &Policy::default(),
    );
    assert_eq!(
        outcome.report.verdict,
        Verdict::Sanitized,
        "{:?}",
        outcome.report.reason
    );
    let png = image::load_from_memory(outcome.output().unwrap().bytes())
        .unwrap()
        .to_rgba8();
    let inked = png.pixels().filter(|p| p[3] > 0).count();
    assert!(inked > 100, "the text is drawn ({inked} pixels)");
}
