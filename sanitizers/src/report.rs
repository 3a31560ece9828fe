//! The sanitizer report: one stable JSON schema for the CLI, the mail notice, the audit log and
//! the admin UI.
//!
//! Owns: [`Report`], [`Verdict`], [`Removal`], [`What`] and [`Reason`], with Japanese and
//! English descriptions of every removal kind and reason.
//! Invariants: field names and enum spellings are part of the schema (docs/report-schema.md);
//! add, never rename. A report never contains the input's content beyond short, quoted
//! details (a URL target, a field instruction, a macro stream name).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::detect::Finding;
use crate::kind::FileKind;

/// The gateway's decision for one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Rebuilt from an allowlist; only the rebuilt bytes go on.
    Sanitized,
    /// Inert and validated; delivered unchanged.
    Passed,
    /// Never delivered.
    Blocked,
    /// Held for administrators; nothing delivered.
    Quarantined,
}

impl Verdict {
    /// Japanese label for notices and the UI.
    pub fn label_ja(self) -> &'static str {
        match self {
            Verdict::Sanitized => "無害化済み",
            Verdict::Passed => "通過",
            Verdict::Blocked => "削除",
            Verdict::Quarantined => "隔離",
        }
    }
}

/// What kind of thing a sanitizer removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum What {
    /// VBA project, its signature or its data part.
    Macro,
    /// Excel 4.0 (XLM) macro sheet or dialog sheet, and its auto-run names.
    XlmMacroSheet,
    /// JavaScript (PDF name tree or action).
    Javascript,
    /// A PDF action other than an in-document GoTo (Launch, SubmitForm, GoToR, URI…).
    Action,
    /// An additional-actions (`/AA`) trigger dictionary.
    AutoAction,
    /// An embedded file or attachment.
    EmbeddedFile,
    /// An embedded OLE object or package.
    OleObject,
    /// An ActiveX control.
    Activex,
    /// A link to something outside the document (remote template, external workbook, frame).
    ExternalReference,
    /// A hyperlink to an external URL (removed under the link policy).
    Hyperlink,
    /// A DDE or other non-allowlisted field code (its displayed result is kept).
    Field,
    /// A data connection, query table or web query.
    DataConnection,
    /// Ribbon customisation (customUI) with callbacks.
    CustomUi,
    /// Multimedia, 3D or rich-media content.
    Multimedia,
    /// An XFA form (the AcroForm appearance is kept).
    Xfa,
    /// A digital signature (no longer valid after rebuilding).
    Signature,
    /// Document metadata (author, company, timestamps, XMP).
    Metadata,
    /// Printer settings blobs.
    PrinterSettings,
    /// Custom XML data and web extensions.
    CustomXml,
    /// A part or object outside the allowlist.
    UnknownPart,
    /// Earlier revisions kept by incremental updates.
    RevisionHistory,
    /// Bytes before the header or after the end of the file.
    TrailingData,
    /// Encryption with an empty password (the output is written unencrypted).
    Encryption,
    /// A CSV cell a spreadsheet would run as a formula (neutralised with a leading `'`).
    Formula,
    /// A CSV cell shaped like a DDE command (`=cmd|' /c …'!A1`), neutralised.
    Dde,
    /// An archive member that was blocked or held (only when policy delivers the rest).
    ArchiveMember,
    /// An embedded font program that does not parse as its format (the text stays, shown in
    /// a substitute font).
    EmbeddedFont,
}

impl What {
    /// Japanese description for notices and the UI.
    pub fn description_ja(self) -> &'static str {
        match self {
            What::Macro => "マクロ (VBA)",
            What::XlmMacroSheet => "Excel 4.0 マクロシート",
            What::Javascript => "JavaScript",
            What::Action => "アクション (外部起動・送信など)",
            What::AutoAction => "自動実行アクション",
            What::EmbeddedFile => "埋め込みファイル",
            What::OleObject => "埋め込み OLE オブジェクト",
            What::Activex => "ActiveX コントロール",
            What::ExternalReference => "外部参照 (リモートテンプレート等)",
            What::Hyperlink => "外部リンク",
            What::Field => "フィールドコード (DDE など)",
            What::DataConnection => "データ接続",
            What::CustomUi => "リボンのカスタマイズ (customUI)",
            What::Multimedia => "マルチメディア・3D コンテンツ",
            What::Xfa => "XFA フォーム",
            What::Signature => "電子署名",
            What::Metadata => "メタデータ (作成者など)",
            What::PrinterSettings => "プリンター設定",
            What::CustomXml => "カスタム XML・Web 拡張",
            What::UnknownPart => "不明な構成要素",
            What::RevisionHistory => "更新履歴 (増分更新)",
            What::TrailingData => "ファイル前後の余分なデータ",
            What::Encryption => "暗号化 (空パスワード)",
            What::Formula => "数式として実行されるセル (CSV インジェクション)",
            What::Dde => "DDE 命令の形をしたセル",
            What::ArchiveMember => "書庫内の削除・隔離されたファイル",
            What::EmbeddedFont => "埋め込みフォント (形式不正)",
        }
    }

    /// English description for the UI.
    pub fn description_en(self) -> &'static str {
        match self {
            What::Macro => "VBA macro",
            What::XlmMacroSheet => "Excel 4.0 macro sheet",
            What::Javascript => "JavaScript",
            What::Action => "action (launch, submit, remote go-to…)",
            What::AutoAction => "automatic action trigger",
            What::EmbeddedFile => "embedded file",
            What::OleObject => "embedded OLE object",
            What::Activex => "ActiveX control",
            What::ExternalReference => "external reference (remote template, linked file)",
            What::Hyperlink => "external hyperlink",
            What::Field => "field code (DDE and similar)",
            What::DataConnection => "data connection",
            What::CustomUi => "ribbon customisation (customUI)",
            What::Multimedia => "multimedia or 3D content",
            What::Xfa => "XFA form",
            What::Signature => "digital signature",
            What::Metadata => "metadata (author and similar)",
            What::PrinterSettings => "printer settings",
            What::CustomXml => "custom XML or web extension",
            What::UnknownPart => "unknown component",
            What::RevisionHistory => "revision history (incremental updates)",
            What::TrailingData => "extra data before or after the file",
            What::Encryption => "encryption (empty password)",
            What::Formula => "cell a spreadsheet would run as a formula (CSV injection)",
            What::Dde => "cell shaped like a DDE command",
            What::ArchiveMember => "archive member that was blocked or held",
            What::EmbeddedFont => "embedded font program that does not parse",
        }
    }
}

/// One thing a sanitizer removed, and where it was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Removal {
    /// What was removed.
    pub what: What,
    /// Where: part name, PDF object number and key, nested path.
    pub location: String,
    /// Why or which: the action type, the link target, the field instruction.
    pub detail: String,
}

/// Why a file was blocked or quarantined.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    /// Stable reason code (`blocked-kind`, `policy-quarantine`, `type-mismatch`, `polyglot`,
    /// `malformed`, `unsupported`, `encrypted`, `limit-exceeded`, `timeout`, `internal-error`).
    pub code: String,
    /// English, technical detail.
    pub detail: String,
}

impl Reason {
    /// Builds a reason from a code and a detail.
    pub fn new(code: &str, detail: impl Into<String>) -> Self {
        Self {
            code: code.to_string(),
            detail: detail.into(),
        }
    }

    /// Japanese description of the reason code, for notices and the UI.
    pub fn description_ja(&self) -> &'static str {
        match self.code.as_str() {
            "blocked-kind" => "実行ファイル・スクリプト等のため削除",
            "policy-quarantine" => "無害化に対応していない形式のため隔離",
            "type-mismatch" => "拡張子・宣言された形式と中身が一致しないため隔離",
            "polyglot" => "複数の形式として解釈できるファイルのため隔離",
            "malformed" => "ファイル構造が壊れている、または曖昧なため隔離",
            "unsupported" => "対応していない機能を含むため隔離",
            "encrypted" => "暗号化・パスワード付きのため隔離",
            "wrong-password" => "パスワードが一致せず開けないため隔離",
            "limit-exceeded" => "サイズ・展開量などの上限を超えたため隔離",
            "timeout" => "処理時間の上限を超えたため隔離",
            "internal-error" => "処理中の内部エラーのため隔離",
            "blocked-member" => "実行ファイル等を含むため書庫ごと削除",
            "blocked-name" => "実行ファイル・スクリプト等の名前のため削除",
            "held-member" => "無害化できないファイルを含むため書庫ごと隔離",
            "virus" => "ウイルスを検知したため削除",
            "scanner-unavailable" => "ウイルス検査ができないため保留 (後で再処理)",
            "unscannable" => "ウイルス検査の上限を超えるため隔離",
            _ => "その他の理由",
        }
    }
}

/// The full record of what happened to one file (and, for containers, its members).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The input's file name, when it had one.
    pub input: Option<String>,
    /// SHA-256 of the input bytes, lower-case hex.
    pub input_sha256: String,
    /// Size of the input in bytes.
    pub input_size: u64,
    /// The true type found in the content.
    pub detected_type: FileKind,
    /// The decision.
    pub verdict: Verdict,
    /// Why it was blocked or quarantined (absent for sanitized and passed files).
    pub reason: Option<Reason>,
    /// Name and type findings (mismatch, double extension, RTLO, polyglot).
    pub findings: Vec<Finding>,
    /// Everything removed, in the order found.
    pub removed: Vec<Removal>,
    /// Notes that changed nothing but are worth knowing.
    pub warnings: Vec<String>,
    /// The output's file name (absent when nothing is delivered).
    pub output: Option<String>,
    /// SHA-256 of the output bytes.
    pub output_sha256: Option<String>,
    /// The output's kind (differs from the input for docm → docx and similar).
    pub output_type: Option<FileKind>,
    /// Reports of nested members (archive entries, mail attachments).
    pub children: Vec<Report>,
    /// For a file held as `encrypted`: what it shows without its password (container,
    /// method, member names and sizes). Never holds a password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encrypted: Option<crate::unlock::EncryptedListing>,
}

impl Report {
    /// True when this report or any member's report below it has reason `code` (a scanner
    /// that gave no answer deep inside an archive defers the whole file).
    pub fn any_reason(&self, code: &str) -> bool {
        self.reason.as_ref().is_some_and(|r| r.code == code)
            || self.children.iter().any(|c| c.any_reason(code))
    }

    pub(crate) fn new(input: Option<&str>, bytes: &[u8], kind: FileKind) -> Self {
        Self {
            input_sha256: sha256_hex(bytes),
            ..Self::unhashed(input, bytes.len(), kind)
        }
    }

    /// A report whose `input_sha256` the caller fills in (the registry hashes large inputs
    /// beside the rebuild).
    pub(crate) fn unhashed(input: Option<&str>, size: usize, kind: FileKind) -> Self {
        Self {
            input: input.map(str::to_string),
            input_sha256: String::new(),
            input_size: size as u64,
            detected_type: kind,
            verdict: Verdict::Quarantined,
            reason: None,
            findings: Vec::new(),
            removed: Vec::new(),
            warnings: Vec::new(),
            output: None,
            output_sha256: None,
            output_type: None,
            children: Vec::new(),
            encrypted: None,
        }
    }
}

/// SHA-256 of `bytes` as lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}
