//! MP3 (MPEG-1/2/2.5 audio, layers I–III): voice mail and recordings.
//!
//! Owns: [`frames`], which walks a file as ID3v2 tag, a gapless run of MPEG audio frames, and
//! trailing ID3v1 / APE tags; and the sanitizer, which writes the frames alone.
//! Invariants: every byte between the leading tag and the trailing tags belongs to a frame whose
//! header is valid and whose length the header decides; anything else there (junk between
//! frames, a second file appended) is malformed, not skipped. Tags are metadata and are
//! reported; the output is the frames, byte for byte, and nothing else.
//! Must never: re-encode audio, or keep a tag.

use crate::error::{Error, Result};
use crate::kind::FileKind;
use crate::registry::{Context, Sanitized, Sanitizer};
use crate::report::What;

/// The byte length of the MPEG audio frame whose header starts `bytes`, if it is one.
pub fn frame_len(bytes: &[u8]) -> Option<usize> {
    let h = bytes.get(..4)?;
    if h[0] != 0xFF || h[1] & 0xE0 != 0xE0 {
        return None;
    }
    let version = (h[1] >> 3) & 3; // 0: 2.5, 1: reserved, 2: MPEG-2, 3: MPEG-1
    let layer = (h[1] >> 1) & 3; // 1: III, 2: II, 3: I
    let bitrate_index = usize::from(h[2] >> 4);
    let rate_index = usize::from((h[2] >> 2) & 3);
    let padding = usize::from((h[2] >> 1) & 1);
    if version == 1 || layer == 0 || bitrate_index == 0 || bitrate_index == 15 || rate_index == 3 {
        return None;
    }
    if h[3] & 3 == 2 {
        return None; // reserved emphasis
    }
    const V1: [[u32; 14]; 3] = [
        [
            32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448,
        ],
        [
            32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384,
        ],
        [
            32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320,
        ],
    ];
    const V2: [[u32; 14]; 2] = [
        [
            32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256,
        ],
        [8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160],
    ];
    let layer_row = match layer {
        3 => 0,
        2 => 1,
        _ => 2,
    };
    let kbps = if version == 3 {
        V1[layer_row][bitrate_index - 1]
    } else {
        V2[layer_row.min(1)][bitrate_index - 1]
    };
    let rate = [
        [11025u32, 12000, 8000],
        [0, 0, 0],
        [22050, 24000, 16000],
        [44100, 48000, 32000],
    ][usize::from(version)][rate_index];
    let bitrate = kbps * 1000;
    let len = match layer {
        3 => (12 * bitrate / rate) as usize * 4 + padding * 4,
        1 if version != 3 => (72 * bitrate / rate) as usize + padding,
        _ => (144 * bitrate / rate) as usize + padding,
    };
    (len >= 4).then_some(len)
}

/// The size of a leading ID3v2 tag, header and footer included.
fn id3v2_len(bytes: &[u8]) -> Option<usize> {
    if !bytes.starts_with(b"ID3") || bytes.len() < 10 {
        return None;
    }
    let size = bytes[6..10].iter().try_fold(0usize, |acc, &b| {
        (b < 0x80).then(|| (acc << 7) | usize::from(b))
    })?;
    let footer = if bytes[5] & 0x10 != 0 { 10 } else { 0 };
    Some(10 + size + footer)
}

/// The frames of an MP3, as byte ranges, and the tags around them.
pub struct Layout {
    /// Length of the leading ID3v2 tag (0 if none).
    pub id3v2: usize,
    /// Start and end of the frame run.
    pub frames: (usize, usize),
    /// Number of frames.
    pub count: usize,
    /// Descriptions of trailing tags found after the frames.
    pub trailing: Vec<(usize, &'static str)>,
}

/// Walks an MP3.
///
/// # Errors
/// Malformed when the bytes after the leading tag are not a gapless run of frames followed only
/// by ID3v1 / APE tags.
pub fn frames(input: &[u8]) -> Result<Layout> {
    let id3v2 = match id3v2_len(input) {
        Some(len) if len <= input.len() => len,
        Some(_) => return Err(Error::malformed("MP3 ID3v2 tag runs past the end")),
        None => 0,
    };
    let mut at = id3v2;
    let mut count = 0;
    while let Some(len) = input.get(at..).and_then(frame_len) {
        if at + len > input.len() {
            break; // a cut-off last frame is handled below as trailing bytes
        }
        at += len;
        count += 1;
    }
    if count == 0 {
        return Err(Error::malformed(
            "no MPEG audio frame where the audio should start",
        ));
    }
    let end = at;
    let mut trailing = Vec::new();
    let mut rest = &input[end..];
    loop {
        if rest.is_empty() {
            break;
        }
        if rest.starts_with(b"APETAGEX") && rest.len() >= 32 {
            let size = u32::from_le_bytes([rest[12], rest[13], rest[14], rest[15]]) as usize;
            let has_header = rest[23] & 0x80 != 0;
            let total = size + if has_header { 32 } else { 0 };
            if total > rest.len() {
                return Err(Error::malformed("MP3 APE tag runs past the end"));
            }
            trailing.push((total, "APE tag"));
            rest = &rest[total..];
        } else if rest.starts_with(b"TAG") && rest.len() == 128 {
            trailing.push((128, "ID3v1 tag"));
            rest = &[];
        } else if rest.starts_with(b"LYRICS") {
            // Lyrics3 sits before an ID3v1 tag; accept it only in that position.
            let Some(tag) = rest.len().checked_sub(128) else {
                return Err(Error::malformed("MP3 Lyrics3 block without an ID3v1 tag"));
            };
            if !rest[tag..].starts_with(b"TAG") {
                return Err(Error::malformed("MP3 Lyrics3 block without an ID3v1 tag"));
            }
            trailing.push((tag, "Lyrics3 tag"));
            rest = &rest[tag..];
        } else {
            return Err(Error::malformed(format!(
                "{} bytes after the last MPEG audio frame are neither a frame nor a tag",
                rest.len()
            )));
        }
    }
    Ok(Layout {
        id3v2,
        frames: (id3v2, end),
        count,
        trailing,
    })
}

/// Writes an MP3's frames without its tags.
pub struct Mp3Sanitizer;

impl Sanitizer for Mp3Sanitizer {
    fn kinds(&self) -> &'static [FileKind] {
        &[FileKind::Mp3]
    }

    fn sanitize(&self, input: &[u8], _kind: FileKind, cx: &mut Context<'_>) -> Result<Sanitized> {
        let layout = frames(input)?;
        if layout.id3v2 > 0 {
            cx.remove(
                What::Metadata,
                "start",
                format!(
                    "ID3v2 tag, {} bytes (title, artist, pictures)",
                    layout.id3v2
                ),
            );
        }
        for (len, what) in &layout.trailing {
            cx.remove(What::Metadata, "end", format!("{what}, {len} bytes"));
        }
        let (start, end) = layout.frames;
        Ok(Sanitized::new(input[start..end].to_vec(), FileKind::Mp3))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_lengths_follow_the_header() {
        // MPEG-1 layer III, 128 kbit/s, 44.1 kHz, no padding: 417 bytes.
        assert_eq!(frame_len(&[0xFF, 0xFB, 0x90, 0x00]), Some(417));
        // With padding: 418.
        assert_eq!(frame_len(&[0xFF, 0xFB, 0x92, 0x00]), Some(418));
        // MPEG-2 layer III, 64 kbit/s, 22.05 kHz: 72 * 64000 / 22050 = 208.
        assert_eq!(frame_len(&[0xFF, 0xF3, 0x80, 0x00]), Some(208));
        // Free format and bad bitrate are refused.
        assert_eq!(frame_len(&[0xFF, 0xFB, 0x00, 0x00]), None);
        assert_eq!(frame_len(&[0xFF, 0xFB, 0xF0, 0x00]), None);
    }
}
