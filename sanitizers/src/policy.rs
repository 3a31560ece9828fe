//! Policy and limits: what happens to each kind of file, and how much work one file may cost.
//!
//! Owns: [`Policy`], [`Limits`] and [`Action`], loaded from TOML with safe defaults.
//! Invariants: every field has a default that fails closed; unknown keys are an error (a typo
//! in a security setting must not silently fall back to a default); `sanitize` may only be
//! chosen for kinds that have a sanitizer and `pass` only for kinds with a validator — the
//! registry checks that when it is given a policy.
//! Must never: read files or the environment; loading is the caller's job.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::kind::{FileKind, KindClass};

/// What the gateway does with a file of some kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Rebuild from an allowlist; deliver only the rebuilt bytes.
    Sanitize,
    /// Deliver unchanged after validation (only for inert kinds with a validator).
    Pass,
    /// Never deliver in any form; keep nothing for release.
    Block,
    /// Hold the original for administrators; deliver nothing.
    Quarantine,
}

/// Resource limits applied to every file and every nested member.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest input accepted, in bytes. Larger files are quarantined unopened.
    pub max_input_bytes: u64,
    /// Largest total size all members of one container may expand to, in bytes.
    pub max_expanded_bytes: u64,
    /// Most members one container (ZIP package, archive) may hold.
    pub max_members: u64,
    /// Highest expanded/compressed ratio allowed for a member larger than
    /// `ratio_floor_bytes` (zip bombs reach thousands; real XML stays far below this).
    pub max_compression_ratio: u64,
    /// Members smaller than this, once expanded, are not checked for ratio.
    pub ratio_floor_bytes: u64,
    /// Deepest nesting of containers (an archive in an archive is depth 2).
    pub max_depth: u32,
    /// Wall-clock budget for one top-level file, in milliseconds. Work that cannot be
    /// interrupted once started (drawing an SVG's filters) is estimated first and refused when
    /// it would not fit in what is left of it.
    pub max_millis: u64,
    /// Deepest nesting of HTML elements (in an HTML file or a mail body) that is rendered as
    /// text; deeper markup is held before the HTML parser sees it, whose cost grows with the
    /// square of the depth.
    pub max_html_depth: u32,
    /// Most indirect objects a PDF may hold.
    pub max_pdf_objects: u64,
    /// Largest size any single PDF stream may decompress to while parsing, in bytes.
    pub max_pdf_stream_bytes: u64,
    /// Most pixels (width × height) one image, or one animation frame, may have.
    pub max_image_pixels: u64,
    /// Largest width or height of an image, in pixels.
    pub max_image_dimension: u32,
    /// Most frames an animated image may have.
    pub max_image_frames: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_input_bytes: 100 << 20,
            max_expanded_bytes: 512 << 20,
            max_members: 10_000,
            max_compression_ratio: 200,
            ratio_floor_bytes: 1 << 20,
            max_depth: 3,
            max_millis: 60_000,
            max_html_depth: 256,
            max_pdf_objects: 1_000_000,
            max_pdf_stream_bytes: 256 << 20,
            max_image_pixels: 64 << 20,
            max_image_dimension: 20_000,
            max_image_frames: 500,
        }
    }
}

/// The sanitization policy of one gateway.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Policy {
    /// Resource limits.
    pub limits: Limits,
    /// Per-kind overrides of the default action, keyed by kind name (`pdf`, `docm`, `zip`…).
    pub actions: BTreeMap<String, Action>,
    /// What to do when the name or declared type disagrees with the content, or the content is
    /// a polyglot. `block` and `quarantine` are allowed; a stricter kind action still wins.
    pub on_mismatch: Action,
    /// Keep external hyperlinks (PDF URI actions, Office hyperlink relationships) to http,
    /// https and mailto addresses. Off by default: LGWAN terminals cannot follow them, and their
    /// targets are listed in the report. Other schemes are always removed.
    pub keep_links: bool,
    /// Remove document metadata (PDF Info and XMP, Office docProps). On by default.
    pub strip_metadata: bool,
    /// Word field instructions kept when found (upper case); every other field (DDE, DDEAUTO,
    /// INCLUDETEXT, INCLUDEPICTURE, …) is replaced by its displayed result.
    pub field_allowlist: Vec<String>,
    /// Mail → text conversion.
    pub mail: MailPolicy,
    /// File names ending in one of these extensions (lower case, no dot) are blocked whatever
    /// their content: Windows decides what to run by the name. The default is the union of
    /// the Outlook, OWA and Gmail block lists. Replacing the list replaces the defaults.
    pub blocked_extensions: Vec<String>,
    /// When an archive holds a member that is blocked or held, deliver the rebuilt rest with
    /// a report file inside instead of holding the whole archive. Off by default.
    pub archive_deliver_rest: bool,
    /// Neutralise CSV cells that a spreadsheet would run as a formula by prefixing `'`. On by
    /// default; when off, a CSV with such a cell is quarantined instead.
    pub csv_neutralize_formulas: bool,
}

/// What happens to a message's attachments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AttachmentMode {
    /// Each attachment goes through the file registry: rebuilt and attached, removed, or held.
    Sanitize,
    /// Every attachment is removed (listed in the notice) — for sites that want text only.
    RemoveAll,
}

/// The character set of converted messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OutputCharset {
    /// UTF-8 (base64 bodies, RFC 2047 B-encoded headers).
    #[serde(rename = "utf-8")]
    Utf8,
    /// ISO-2022-JP for old LGWAN clients; a message with a character outside it falls back to
    /// UTF-8 whole.
    #[serde(rename = "iso-2022-jp")]
    Iso2022Jp,
}

/// What happens to links in delivered mail bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LinkMode {
    /// Every URL, `www.` name, bare IP host and UNC path is made unclickable
    /// (`hxxps://example[.]jp`), and the notice says so. The default.
    Defang,
    /// Links in plain text stay as sent (links from HTML are still shown defanged beside their
    /// text); the notice then makes no claim about links.
    Keep,
}

/// Mail → text policy (`[mail]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MailPolicy {
    /// What to do with a message whose structure is ambiguous (duplicate MIME headers, missing
    /// boundaries, mixed line endings, limits): `quarantine` (default) or `block`.
    pub on_ambiguous: Action,
    /// `sanitize` (default) or `remove-all`.
    pub attachments: AttachmentMode,
    /// Prefix added to every converted subject, e.g. "[無害化]" (default none).
    pub subject_tag: Option<String>,
    /// Carry Reply-To over (off by default: a forged Reply-To is a common fraud step).
    pub keep_reply_to: bool,
    /// `utf-8` (default) or `iso-2022-jp`.
    pub output_charset: OutputCharset,
    /// Deepest nesting of multiparts and attached messages.
    pub max_depth: u32,
    /// Most MIME parts in one message.
    pub max_parts: u32,
    /// Most header fields in one part.
    pub max_headers: u32,
    /// `defang` (default) or `keep`: links in delivered bodies.
    pub links: LinkMode,
    /// PPAP password mails: at most this many password candidates (`パスワード：…`) are read
    /// from a message's text and handed to the caller to try on held encrypted attachments;
    /// 0 (the default) reads none. The service sets it from `[ppap] max_candidates`.
    pub password_candidates: u32,
    /// Replace the candidates found in the delivered text with `********` (on by default;
    /// only when `password_candidates` is above 0). The service sets it from
    /// `[ppap] mask_password`.
    pub mask_passwords: bool,
}

impl Default for MailPolicy {
    fn default() -> Self {
        Self {
            on_ambiguous: Action::Quarantine,
            attachments: AttachmentMode::Sanitize,
            subject_tag: None,
            keep_reply_to: false,
            output_charset: OutputCharset::Utf8,
            max_depth: 12,
            max_parts: 1000,
            max_headers: 500,
            links: LinkMode::Defang,
            password_candidates: 0,
            mask_passwords: true,
        }
    }
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            actions: BTreeMap::new(),
            on_mismatch: Action::Quarantine,
            keep_links: false,
            strip_metadata: true,
            field_allowlist: DEFAULT_FIELD_ALLOWLIST
                .iter()
                .map(|s| s.to_string())
                .collect(),
            mail: MailPolicy::default(),
            blocked_extensions: DEFAULT_BLOCKED_EXTENSIONS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            archive_deliver_rest: false,
            csv_neutralize_formulas: true,
        }
    }
}

/// Extensions Windows (or a browser, Java, Office add-in loaders) runs or mounts: the union of
/// Outlook's Level-1 list, OWA's BlockedFileTypes and Gmail's list.
const DEFAULT_BLOCKED_EXTENSIONS: &[&str] = &[
    "ade",
    "adp",
    "dqy",
    "iqy",
    "oqy",
    "rqy",
    "slk",
    "apk",
    "app",
    "appcontent-ms",
    "application",
    "appref-ms",
    "appx",
    "appxbundle",
    "asp",
    "aspx",
    "asx",
    "bas",
    "bat",
    "bgi",
    "cab",
    "cer",
    "chm",
    "cmd",
    "cnt",
    "com",
    "cpl",
    "crt",
    "csh",
    "der",
    "diagcab",
    "dll",
    "dmg",
    "exe",
    "fxp",
    "gadget",
    "grp",
    "hlp",
    "hpj",
    "hta",
    "htc",
    "img",
    "inf",
    "ins",
    "iso",
    "isp",
    "its",
    "jar",
    "jnlp",
    "js",
    "jse",
    "ksh",
    "lib",
    "library-ms",
    "lnk",
    "mad",
    "maf",
    "mag",
    "mam",
    "maq",
    "mar",
    "mas",
    "mat",
    "mau",
    "mav",
    "maw",
    "mcf",
    "mda",
    "mdb",
    "mde",
    "mdt",
    "mdw",
    "mdz",
    "mjs",
    "msc",
    "msh",
    "msh1",
    "msh1xml",
    "msh2",
    "msh2xml",
    "mshxml",
    "msi",
    "msix",
    "msixbundle",
    "msp",
    "mst",
    "msu",
    "nsh",
    "one",
    "onepkg",
    "ops",
    "osd",
    "pcd",
    "pif",
    "pl",
    "plg",
    "prf",
    "prg",
    "printerexport",
    "ps1",
    "ps1xml",
    "ps2",
    "ps2xml",
    "psc1",
    "psc2",
    "psd1",
    "psdm1",
    "psm1",
    "pssc",
    "pst",
    "py",
    "pyc",
    "pyo",
    "pyw",
    "pyz",
    "pyzw",
    "reg",
    "scf",
    "scr",
    "sct",
    "settingcontent-ms",
    "shb",
    "shs",
    "sys",
    "theme",
    "tmp",
    "udl",
    "url",
    "vb",
    "vbe",
    "vbp",
    "vbs",
    "vbscript",
    "vhd",
    "vhdx",
    "vsmacros",
    "vsw",
    "webpnp",
    "website",
    "ws",
    "wsb",
    "wsc",
    "wsf",
    "wsh",
    "xbap",
    "xll",
    "xnk",
];

/// Word fields that only format or number the document (after msodde's allowlist).
const DEFAULT_FIELD_ALLOWLIST: &[&str] = &[
    "PAGE",
    "NUMPAGES",
    "SECTIONPAGES",
    "SECTION",
    "DATE",
    "TIME",
    "CREATEDATE",
    "SAVEDATE",
    "PRINTDATE",
    "EDITTIME",
    "TOC",
    "TOA",
    "TA",
    "TC",
    "XE",
    "INDEX",
    "REF",
    "PAGEREF",
    "NOTEREF",
    "STYLEREF",
    "SEQ",
    "LISTNUM",
    "AUTONUM",
    "AUTONUMLGL",
    "AUTONUMOUT",
    "NUMWORDS",
    "NUMCHARS",
    "AUTHOR",
    "TITLE",
    "SUBJECT",
    "KEYWORDS",
    "COMMENTS",
    "LASTSAVEDBY",
    "REVNUM",
    "FILESIZE",
    "TEMPLATE",
    "EQ",
    "SYMBOL",
    "ADVANCE",
    "FORMTEXT",
    "FORMCHECKBOX",
    "FORMDROPDOWN",
    "BIBLIOGRAPHY",
    "CITATION",
    "BARCODE",
    "DISPLAYBARCODE",
    "USERNAME",
    "USERINITIALS",
];

/// Why a policy cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError(String);

impl std::fmt::Display for PolicyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PolicyError {}

impl PolicyError {
    pub(crate) fn new(message: String) -> Self {
        PolicyError(message)
    }
}

impl Policy {
    /// Parses a policy from TOML. Missing keys take their safe defaults.
    ///
    /// # Errors
    /// Unknown keys, wrong types, unknown kind names in `[actions]` and an `on_mismatch` of
    /// `sanitize` or `pass` are errors, named with their key.
    pub fn from_toml(text: &str) -> Result<Self, PolicyError> {
        let policy: Policy = toml::from_str(text).map_err(|e| PolicyError(e.to_string()))?;
        policy.check_shape()?;
        Ok(policy)
    }

    pub(crate) fn check_shape(&self) -> Result<(), PolicyError> {
        for name in self.actions.keys() {
            if FileKind::from_name(name).is_none() {
                return Err(PolicyError(format!(
                    "actions.{name}: unknown file kind (known: {})",
                    FileKind::ALL
                        .iter()
                        .map(|k| k.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
        if matches!(self.on_mismatch, Action::Sanitize | Action::Pass) {
            return Err(PolicyError(
                "on_mismatch: must be \"quarantine\" or \"block\" (a mismatch is never let through)"
                    .into(),
            ));
        }
        if matches!(self.mail.on_ambiguous, Action::Sanitize | Action::Pass) {
            return Err(PolicyError(
                "mail.on_ambiguous: must be \"quarantine\" or \"block\"".into(),
            ));
        }
        let l = &self.limits;
        if l.max_input_bytes == 0 || l.max_expanded_bytes == 0 || l.max_millis == 0 {
            return Err(PolicyError(
                "limits: sizes and time must be greater than zero".into(),
            ));
        }
        Ok(())
    }

    /// True when a file of this name is blocked by its name alone: an extension in
    /// `blocked_extensions`, or a Windows shell file (desktop.ini, .url, .scf, .library-ms…),
    /// which no site list can let through — Explorer acts on those just by showing them.
    pub fn blocks_name(&self, name: &str) -> bool {
        crate::detect::is_shell_file_name(name)
            || crate::detect::extension(name).is_some_and(|ext| {
                self.blocked_extensions
                    .iter()
                    .any(|b| b.eq_ignore_ascii_case(&ext))
            })
    }

    /// The action for a kind: the override from `[actions]`, else the safe default.
    pub fn action_for(&self, kind: FileKind) -> Action {
        if let Some(action) = self.actions.get(kind.name()) {
            return *action;
        }
        default_action(kind)
    }
}

/// True for link targets `keep_links` may keep: web and mail addresses only. `file:`, UNC
/// paths, `javascript:`, `ms-msdt:` and every other scheme are removed whatever the policy.
pub fn link_allowed(target: &str) -> bool {
    let t = target.trim().to_ascii_lowercase();
    ["http://", "https://", "mailto:"]
        .iter()
        .any(|scheme| t.starts_with(scheme))
}

/// The built-in action for a kind: PDF and OOXML are rebuilt; programs, scripts, shortcuts
/// and disk images are blocked; an empty file passes; everything else waits in quarantine
/// until mukaika has a sanitizer for it.
pub fn default_action(kind: FileKind) -> Action {
    match kind {
        FileKind::Pdf => Action::Sanitize,
        // An add-in exists to carry code; without it there is nothing left to deliver.
        FileKind::Xlam => Action::Quarantine,
        k if k.is_ooxml() => Action::Sanitize,
        FileKind::Empty | FileKind::Text => Action::Pass,
        FileKind::Csv | FileKind::Html => Action::Sanitize,
        FileKind::Png
        | FileKind::Jpeg
        | FileKind::Gif
        | FileKind::Bmp
        | FileKind::Tiff
        | FileKind::Webp
        | FileKind::Svg
        | FileKind::Mp3
        | FileKind::Doc
        | FileKind::Xls
        | FileKind::Ppt
        | FileKind::Rtf
        | FileKind::Odt
        | FileKind::Ods
        | FileKind::Odp => Action::Sanitize,
        FileKind::Zip
        | FileKind::Tar
        | FileKind::Gzip
        | FileKind::Bzip2
        | FileKind::Xz
        | FileKind::SevenZip
        | FileKind::Tnef => Action::Sanitize,
        k => match k.class() {
            KindClass::Executable
            | KindClass::Script
            | KindClass::Shortcut
            | KindClass::DiskImage => Action::Block,
            _ => Action::Quarantine,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fail_closed() {
        let p = Policy::default();
        assert_eq!(p.action_for(FileKind::Pdf), Action::Sanitize);
        assert_eq!(p.action_for(FileKind::Docm), Action::Sanitize);
        assert_eq!(p.action_for(FileKind::Pe), Action::Block);
        assert_eq!(p.action_for(FileKind::ScriptJs), Action::Block);
        assert_eq!(p.action_for(FileKind::Lnk), Action::Block);
        assert_eq!(p.action_for(FileKind::Iso), Action::Block);
        assert_eq!(p.action_for(FileKind::Doc), Action::Sanitize);
        assert_eq!(p.action_for(FileKind::OleOther), Action::Quarantine);
        assert_eq!(p.action_for(FileKind::Zip), Action::Sanitize);
        assert_eq!(p.action_for(FileKind::Rar), Action::Quarantine);
        assert_eq!(p.action_for(FileKind::Unknown), Action::Quarantine);
        assert_eq!(p.on_mismatch, Action::Quarantine);
    }

    #[test]
    fn only_web_and_mail_links_can_be_kept() {
        assert!(link_allowed("https://example.invalid/a"));
        assert!(link_allowed(" MAILTO:someone@example.invalid"));
        for bad in [
            "javascript:alert(1)",
            "file:///c:/x.exe",
            "\\\\host\\share",
            "ms-msdt:/id",
            "smb://h/s",
        ] {
            assert!(!link_allowed(bad), "{bad}");
        }
    }

    #[test]
    fn toml_overrides_and_rejects_typos() {
        let p = Policy::from_toml(
            "keep_links = true\n[limits]\nmax_depth = 2\n[actions]\ndocm = \"quarantine\"\n",
        )
        .unwrap();
        assert!(p.keep_links);
        assert_eq!(p.limits.max_depth, 2);
        assert_eq!(p.action_for(FileKind::Docm), Action::Quarantine);
        assert!(Policy::from_toml("keep_link = true")
            .unwrap_err()
            .to_string()
            .contains("keep_link"));
        assert!(Policy::from_toml("[actions]\nexe = \"pass\"")
            .unwrap_err()
            .to_string()
            .contains("unknown file kind"));
        assert!(Policy::from_toml("on_mismatch = \"pass\"").is_err());
    }
}
