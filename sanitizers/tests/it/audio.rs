//! MP3: tags go, frames stay byte for byte, and anything between frames holds the file.

use crate::common;

use common::*;
use mukaika_sanitizers::{FileKind, Verdict, What};

/// `n` MPEG-1 layer III frames (128 kbit/s, 44.1 kHz: 417 bytes each) of synthetic payload.
fn frames(n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..n {
        out.extend_from_slice(&[0xFF, 0xFB, 0x90, 0x00]);
        out.extend((0..413).map(|k| ((k * 7 + i) % 251) as u8));
    }
    out
}

fn id3v2(payload: &[u8]) -> Vec<u8> {
    let size = payload.len();
    let mut tag = b"ID3\x04\x00\x00".to_vec();
    tag.extend([21, 14, 7, 0].iter().map(|s| ((size >> s) & 0x7F) as u8));
    tag.extend_from_slice(payload);
    tag
}

#[test]
fn tags_are_dropped_and_frames_kept() {
    let audio = frames(20);
    let mut input = id3v2(b"TIT2\x00\x00\x00\x10\x00\x00\x03Voice mail from Taro");
    input.extend_from_slice(&audio);
    let mut v1 = b"TAG".to_vec();
    v1.resize(128, b' ');
    input.extend_from_slice(&v1);
    let outcome = assert_fail_closed("留守電.mp3", &input);
    assert_eq!(outcome.report.detected_type, FileKind::Mp3);
    assert!(removed(&outcome, What::Metadata, "ID3v2"));
    assert!(removed(&outcome, What::Metadata, "ID3v1"));
    assert_eq!(outcome.output().unwrap().bytes(), &audio[..]);
}

#[test]
fn bytes_between_frames_hold_the_file() {
    let mut input = frames(5);
    input.extend_from_slice(b"PK\x03\x04 smuggled");
    input.extend_from_slice(&frames(5));
    let outcome = process(&input, "a.mp3");
    assert_eq!(outcome.report.verdict, Verdict::Quarantined);
    assert_eq!(outcome.report.reason.unwrap().code, "malformed");
}
