//! File kinds: the closed set of types mukaika tells apart.
//!
//! Owns: [`FileKind`], its stable names (used in reports, policy files and the audit log), its
//! class (document, archive, executable…), the extensions a kind is normally named with, and
//! the macro-free twin of a macro-enabled Office kind.
//! Invariant: a kind is always decided from content by `detect`; nothing here looks at bytes.

use serde::{Deserialize, Serialize};

macro_rules! kinds {
    ($( $variant:ident => $name:literal, $class:ident, [$($ext:literal),*] ; )*) => {
        /// A file's true type, decided from its content.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum FileKind {
            $(
                #[doc = concat!("`", $name, "`")]
                #[serde(rename = $name)]
                $variant,
            )*
        }

        impl FileKind {
            /// Every kind, in declaration order.
            pub const ALL: &'static [FileKind] = &[$(FileKind::$variant),*];

            /// The stable name used in reports and policy files.
            pub fn name(self) -> &'static str {
                match self { $(FileKind::$variant => $name,)* }
            }

            /// The broad class that default policy is decided on.
            pub fn class(self) -> KindClass {
                match self { $(FileKind::$variant => KindClass::$class,)* }
            }

            /// Extensions (lower case, no dot) a file of this kind is normally named with.
            pub fn extensions(self) -> &'static [&'static str] {
                match self { $(FileKind::$variant => &[$($ext),*],)* }
            }

            /// Looks a kind up by its stable name.
            pub fn from_name(name: &str) -> Option<FileKind> {
                match name { $($name => Some(FileKind::$variant),)* _ => None }
            }
        }
    };
}

kinds! {
    Pdf => "pdf", Document, ["pdf"];
    Docx => "docx", Document, ["docx"];
    Docm => "docm", Document, ["docm"];
    Dotx => "dotx", Document, ["dotx"];
    Dotm => "dotm", Document, ["dotm"];
    Xlsx => "xlsx", Document, ["xlsx"];
    Xlsm => "xlsm", Document, ["xlsm"];
    Xltx => "xltx", Document, ["xltx"];
    Xltm => "xltm", Document, ["xltm"];
    Xlam => "xlam", Document, ["xlam"];
    Xlsb => "xlsb", Document, ["xlsb"];
    Pptx => "pptx", Document, ["pptx"];
    Pptm => "pptm", Document, ["pptm"];
    Ppsx => "ppsx", Document, ["ppsx"];
    Ppsm => "ppsm", Document, ["ppsm"];
    Potx => "potx", Document, ["potx"];
    Potm => "potm", Document, ["potm"];
    OoxmlOther => "ooxml-other", Document, [];
    Doc => "doc", Document, ["doc", "dot", "wiz"];
    Xls => "xls", Document, ["xls", "xlt", "xla"];
    Ppt => "ppt", Document, ["ppt", "pps", "pot"];
    EncryptedOoxml => "encrypted-ooxml", Document, ["docx", "docm", "xlsx", "xlsm", "xlsb", "pptx", "pptm", "dotx", "dotm", "xltx", "xltm", "ppsx", "ppsm", "potx", "potm"];
    Msi => "msi", Executable, ["msi", "msp", "mst"];
    OleOther => "ole-other", Document, [];
    Odt => "odt", Document, ["odt", "ott"];
    Ods => "ods", Document, ["ods", "ots"];
    Odp => "odp", Document, ["odp", "otp"];
    OdfOther => "odf-other", Document, ["odg", "odf", "odb", "odc"];
    Rtf => "rtf", Document, ["rtf"];
    // Not "dat": every kind of file is called .dat, and a text .dat is no mismatch.
    Tnef => "tnef", Document, ["tnef"];
    Zip => "zip", Archive, ["zip"];
    SevenZip => "7z", Archive, ["7z"];
    Rar => "rar", Archive, ["rar"];
    Gzip => "gzip", Archive, ["gz", "tgz"];
    Bzip2 => "bzip2", Archive, ["bz2", "tbz", "tbz2"];
    Xz => "xz", Archive, ["xz", "txz"];
    Tar => "tar", Archive, ["tar"];
    Lzh => "lzh", Archive, ["lzh", "lha"];
    Cab => "cab", Executable, ["cab"];
    Iso => "iso", DiskImage, ["iso", "img"];
    Png => "png", Image, ["png"];
    Jpeg => "jpeg", Image, ["jpg", "jpeg", "jpe", "jfif"];
    Gif => "gif", Image, ["gif"];
    Bmp => "bmp", Image, ["bmp", "dib"];
    Tiff => "tiff", Image, ["tif", "tiff"];
    Webp => "webp", Image, ["webp"];
    Svg => "svg", Image, ["svg"];
    Mp3 => "mp3", Media, ["mp3"];
    Pe => "pe", Executable, ["exe", "dll", "sys", "scr", "com", "cpl", "ocx", "drv", "efi"];
    Elf => "elf", Executable, ["so", "elf", "bin", "o"];
    MachO => "mach-o", Executable, ["dylib", "bundle"];
    JavaClass => "java-class", Executable, ["class"];
    Wasm => "wasm", Executable, ["wasm"];
    ScriptJs => "script-js", Script, ["js", "jse", "mjs"];
    ScriptVbs => "script-vbs", Script, ["vbs", "vbe", "vb"];
    ScriptPs1 => "script-ps1", Script, ["ps1", "psm1", "psd1"];
    ScriptBat => "script-bat", Script, ["bat", "cmd"];
    ScriptSh => "script-sh", Script, ["sh", "bash", "ksh", "zsh"];
    ScriptPython => "script-python", Script, ["py", "pyw"];
    ScriptPhp => "script-php", Script, ["php", "phtml"];
    ScriptWsf => "script-wsf", Script, ["wsf", "wsc", "wsh", "sct"];
    Hta => "hta", Script, ["hta"];
    Lnk => "lnk", Shortcut, ["lnk"];
    OneNote => "onenote", Executable, ["one", "onepkg"];
    Chm => "chm", Executable, ["chm"];
    Vhd => "vhd", DiskImage, ["vhd", "vhdx"];
    Dmg => "dmg", DiskImage, ["dmg"];
    Sylk => "sylk", Document, ["slk", "sylk"];
    // Word 2003 XML, SpreadsheetML, Flat OPC: named .xml, opened by Office as documents.
    OfficeXml => "office-xml", Document, ["xml"];
    // Windows shell files: Explorer reads them when it shows the folder or the icon, and an
    // icon or target on a UNC share leaks the user's NTLM hash. desktop.ini is one by name.
    ShellFile => "shell-file", Shortcut, ["url", "website", "scf", "library-ms", "searchconnector-ms", "search-ms", "settingcontent-ms", "theme", "themepack", "deskthemepack"];
    Html => "html", Markup, ["html", "htm", "xhtml", "mht", "mhtml"];
    // XML a browser would style, script or expand (xml-stylesheet, XHTML/SVG/XSLT elements
    // below a data root, a DOCTYPE), or XML that claims to be XML and does not parse.
    XmlActive => "xml-active", Markup, [];
    Text => "text", Text, ["txt", "text", "log", "md", "xml", "json", "ini", "cfg"];
    Csv => "csv", Text, ["csv", "tsv"];
    Empty => "empty", Empty, [];
    Unknown => "unknown", Unknown, [];
}

/// The broad class a kind belongs to; default policy is decided per class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KindClass {
    /// Office documents, PDF, RTF, ODF.
    Document,
    /// Containers of other files.
    Archive,
    /// Raster and vector images.
    Image,
    /// Audio and video.
    Media,
    /// Native or byte-code programs and installers.
    Executable,
    /// Script source that a desktop would run when opened.
    Script,
    /// Windows shortcuts.
    Shortcut,
    /// Disk images (ISO/IMG), which historically bypassed Mark-of-the-Web.
    DiskImage,
    /// HTML and friends.
    Markup,
    /// Plain text and CSV.
    Text,
    /// A zero-byte file.
    Empty,
    /// Nothing recognised.
    Unknown,
}

impl FileKind {
    /// True for the Office Open XML kinds mukaika rebuilds (not xlsb, which is binary).
    pub fn is_ooxml(self) -> bool {
        use FileKind::*;
        matches!(
            self,
            Docx | Docm
                | Dotx
                | Dotm
                | Xlsx
                | Xlsm
                | Xltx
                | Xltm
                | Xlam
                | Pptx
                | Pptm
                | Ppsx
                | Ppsm
                | Potx
                | Potm
        )
    }

    /// The macro-free kind a macro-enabled Office kind becomes once its macros are gone;
    /// other kinds map to themselves.
    pub fn macro_free(self) -> FileKind {
        use FileKind::*;
        match self {
            Docm => Docx,
            Dotm => Dotx,
            Xlsm => Xlsx,
            Xltm => Xltx,
            Pptm => Pptx,
            Ppsm => Ppsx,
            Potm => Potx,
            other => other,
        }
    }

    /// The MIME type mukaika declares for its output of this kind.
    pub fn mime_type(self) -> &'static str {
        use FileKind::*;
        match self {
            Pdf => "application/pdf",
            Docx => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            Dotx => "application/vnd.openxmlformats-officedocument.wordprocessingml.template",
            Xlsx => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            Xltx => "application/vnd.openxmlformats-officedocument.spreadsheetml.template",
            Pptx => "application/vnd.openxmlformats-officedocument.presentationml.presentation",
            Ppsx => "application/vnd.openxmlformats-officedocument.presentationml.slideshow",
            Potx => "application/vnd.openxmlformats-officedocument.presentationml.template",
            Png => "image/png",
            Jpeg => "image/jpeg",
            Gif => "image/gif",
            Bmp => "image/bmp",
            Tiff => "image/tiff",
            Webp => "image/webp",
            Mp3 => "audio/mpeg",
            Text => "text/plain",
            Csv => "text/csv",
            _ => "application/octet-stream",
        }
    }

    /// The extension mukaika gives its output of this kind.
    pub fn preferred_extension(self) -> Option<&'static str> {
        self.extensions().first().copied()
    }
}

impl std::fmt::Display for FileKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
