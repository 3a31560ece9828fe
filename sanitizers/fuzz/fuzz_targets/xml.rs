//! Fuzzes XML detection: the whole-document sniff and `detect` on markup named `.xml`. Besides
//! panics and hangs (the sniff must stay linear in its input), it checks the sniff against an
//! independent reader: whatever the sniff calls plain data, quick-xml's own namespace reader
//! must find no element in a namespace a browser or Office acts on, and `detect` must not turn
//! it into an Office, shell or active-XML kind. Half the inputs are wrapped in a data root that
//! binds the XHTML, SVG and Office namespaces, so the fuzzer reaches the element checks fast.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mukaika_sanitizers::detect::{detect, Declared};
use mukaika_sanitizers::xmlsniff::{self, XmlClass};
use mukaika_sanitizers::FileKind;
use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;

const WATCHED: &[&str] = &[
    xmlsniff::XHTML_NS,
    xmlsniff::SVG_NS,
    xmlsniff::XSLT_NS,
    "urn:schemas-microsoft-com:office:spreadsheet",
    "http://schemas.microsoft.com/office/word/2003/wordml",
    "http://schemas.microsoft.com/office/2006/xmlPackage",
];

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let input = if mode & 1 == 1 {
        let mut wrapped = b"<r xmlns:h=\"http://www.w3.org/1999/xhtml\" \
            xmlns:s=\"http://www.w3.org/2000/svg\" \
            xmlns:ss=\"urn:schemas-microsoft-com:office:spreadsheet\">"
            .to_vec();
        wrapped.extend_from_slice(body);
        wrapped.extend_from_slice(b"</r>");
        wrapped
    } else {
        body.to_vec()
    };
    let class = xmlsniff::sniff(&input);
    let detection = detect(
        &input,
        &Declared {
            name: Some("data.xml"),
            mime: None,
        },
    );
    if class != Some(XmlClass::Data) {
        return;
    }
    assert!(
        // (Not shell-file: a `[Shell]` line in plain text content is a shell file's mark.)
        !matches!(detection.kind, FileKind::OfficeXml | FileKind::XmlActive),
        "plain data detected as {}",
        detection.kind
    );
    let Ok(text) = std::str::from_utf8(input.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&input))
    else {
        return;
    };
    let mut reader = NsReader::from_str(text);
    loop {
        match reader.read_resolved_event() {
            Ok((ResolveResult::Bound(ns), Event::Start(_) | Event::Empty(_))) => {
                assert!(
                    !WATCHED.contains(&ns.0),
                    "the sniff called plain data a document with an element in {}",
                    ns.0
                );
            }
            Ok((_, Event::Eof)) | Err(_) => break,
            Ok(_) => {}
        }
    }
});
