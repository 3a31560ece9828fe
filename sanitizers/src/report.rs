//! The sanitizer report: one stable JSON schema for the CLI, the mail notice, the audit log and
//! the admin UI.
//!
//! Owns: [`Report`], [`Verdict`], [`Removal`], [`What`] and [`Reason`], with Japanese and
//! English descriptions of every removal kind and reason, and the one place that turns a
//! machine reason (code, detected type, findings) into plain Japanese for staff:
//! [`Reason::explain_ja`] (and [`Report::explain_ja`], which adds the archive members at
//! fault). The verdict words ([`Verdict::label_ja`]) are defined here once; mail notices,
//! import reports, the CLI and the web UI all use them, and reason texts never contain a
//! verdict word (a reason says why, the verdict or state says what happened).
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
    /// Japanese label for notices, reports, the CLI and the UI: the one word for each verdict.
    /// `削除` means "not delivered, whatever its content" (a blocked kind); whether the
    /// original is also kept (the import folder keeps it in quarantine, mail does not) is said
    /// next to it with the quarantine ID, not by another word.
    pub fn label_ja(self) -> &'static str {
        match self {
            Verdict::Sanitized => "無害化済み",
            Verdict::Passed => "通過",
            Verdict::Blocked => "削除",
            Verdict::Quarantined => "隔離",
        }
    }

    /// What the verdict means for the person waiting for the file, in one plain sentence.
    pub fn meaning_ja(self) -> &'static str {
        match self {
            Verdict::Sanitized => "危険になりうる部分を取り除き、安全な形に作り直しました。",
            Verdict::Passed => "安全な形式と確認できたため、そのまま渡しました。",
            Verdict::Blocked => {
                "受け付けない種類のファイル (またはそれを含む書庫) のため、LGWAN 側へは渡しません。"
            }
            Verdict::Quarantined => {
                "安全に作り直せなかったため、LGWAN 側へは渡さず、原本を隔離しました。"
            }
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
            What::OleObject => "埋め込みオブジェクト (OLE)",
            What::Activex => "ActiveX コントロール",
            What::ExternalReference => "外部参照 (リモートテンプレート等)",
            What::Hyperlink => "外部リンク",
            What::Field => "フィールドコード (DDE など)",
            What::DataConnection => "データ接続",
            What::CustomUi => "リボン (メニュー) のカスタマイズ",
            What::Multimedia => "マルチメディア・3D コンテンツ",
            What::Xfa => "XFA 形式の入力フォーム (通常の表示は残しています)",
            What::Signature => "電子署名",
            What::Metadata => "メタデータ (作成者など)",
            What::PrinterSettings => "プリンター設定",
            What::CustomXml => "カスタム XML・Web 拡張",
            What::UnknownPart => "不明な構成要素",
            What::RevisionHistory => "過去の版のデータ (追記された更新履歴)",
            What::TrailingData => "ファイルの前後に付いていた余分なデータ",
            What::Encryption => "空のパスワードによる暗号化 (解除して保存しました)",
            What::Formula => "開くと数式として動くセル (先頭に ' を付けて文字にしました)",
            What::Dde => "外部のプログラムを呼び出す形のセル (DDE、文字にしました)",
            What::ArchiveMember => "書庫の中の、渡せないファイル",
            What::EmbeddedFont => "壊れた埋め込みフォント (文字は代わりのフォントで表示されます)",
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

    /// Short Japanese label of the reason code, for lists, filters, the dashboard and notice
    /// lines. It says why, never what happened (no 削除 or 隔離 in it: the verdict or the
    /// item's state says that, so a blocked file kept in quarantine reads consistently).
    pub fn description_ja(&self) -> &'static str {
        match self.code.as_str() {
            "blocked-kind" => "実行ファイル・スクリプト等",
            "blocked-name" => "実行ファイル・スクリプト等の名前",
            "blocked-member" => "書庫の中に実行ファイル等",
            "held-member" => "書庫の中に無害化できないファイル",
            "policy-quarantine" => "無害化に対応していない形式",
            "type-mismatch" => "名前・種類の表示と中身が不一致",
            "polyglot" => "複数の形式に見せかけたファイル",
            "malformed" => "ファイルの構造が壊れている",
            "unsupported" => "作り直せない機能を含む",
            "encrypted" => "パスワード付き (暗号化)",
            "wrong-password" => "パスワードが一致しない",
            "limit-exceeded" => "大きさ・展開量などの上限超過",
            "timeout" => "処理時間の上限超過",
            "internal-error" => "処理中のエラー",
            "virus" => "ウイルスを検知",
            "scanner-unavailable" => "ウイルス検査ができない (後で再処理)",
            "unscannable" => "ウイルス検査の上限超過",
            "text-only" => "添付ファイルを受け付けない設定",
            "placeholder" => "中身のない添付ファイル",
            "unsupported-encoding" => "対応していない符号化 (BinHex)",
            "bad-name" => "扱えないファイル名",
            _ => "その他の理由",
        }
    }

    /// The reason in plain Japanese for staff: what the file is and why it cannot be handed
    /// over, in one or two sentences, without codes, part names or English. `detected` is the
    /// type found in the content and `findings` the name and type findings of the same
    /// report; both make the sentence concrete ("ファイル名は .txt ですが、中身は Windows の
    /// 実行ファイルでした"). The technical detail stays in [`Reason::detail`] and the JSON
    /// report. Used by the mail notice, the import report and (through the service's
    /// `sink::notice::explain_item_ja`) notices, the CLI and the web UI.
    pub fn explain_ja(&self, detected: FileKind, findings: &[Finding]) -> String {
        let kind = kind_label_ja(detected);
        let mut out = String::new();
        // What the name or the sender claimed, when that is part of the story.
        // The name and the declared type often both disagree with the content: one sentence
        // about the content is enough.
        let mut content_named = false;
        for f in findings {
            let about_content = matches!(
                f,
                Finding::ExtensionMismatch { .. } | Finding::MimeMismatch { .. }
            );
            if about_content && content_named {
                continue;
            }
            content_named |= about_content;
            out.push_str(&finding_ja(f));
        }
        let because = match self.code.as_str() {
            // The finding already named the type: not twice in one breath.
            "blocked-kind" if !findings.is_empty() => "開くとパソコン上でプログラムとして動くおそれがあるため、受け付けない種類のファイルです。".into(),
            "blocked-kind" => format!(
                "{kind} は、開くとパソコン上でプログラムとして動くおそれがあるため、受け付けない種類です。"
            ),
            "blocked-name" => "ファイル名の拡張子が、開くとプログラムとして動く種類 (実行ファイル・スクリプト・ショートカット等) のものです。".into(),
            "blocked-member" => "書庫 (ZIP 等) の中に、受け付けない種類のファイル (実行ファイル等) が入っていたため、書庫全体を渡せません。".into(),
            "held-member" => "書庫 (ZIP 等) の中に、安全に作り直せないファイルが入っていたため、書庫全体を渡せません。".into(),
            "policy-quarantine" if detected == FileKind::Unknown => {
                "ファイルの種類を判別できず、安全を確かめられません。".into()
            }
            "policy-quarantine" => {
                format!("{kind} は、mukaika が安全に作り直すことのできない形式です。")
            }
            "type-mismatch" if findings.is_empty() => {
                "ファイル名や種類の表示と、実際の中身の形式が一致しません。".into()
            }
            "type-mismatch" => "名前を偽ったファイルのおそれがあるため、そのままでは渡せません。".into(),
            "polyglot" => "1 つのファイルが複数の形式として読めるように作られています。攻撃に使われる手口のため、そのままでは渡せません。".into(),
            "malformed" => "ファイルの構造が壊れているか、読み方が一通りに定まらないため、安全に作り直せませんでした。".into(),
            "unsupported" => format!("{kind} に、安全に作り直す方法のない機能が含まれていました。"),
            "encrypted" => "パスワードで保護 (暗号化) されているため、中身を確認できません。パスワードが分かれば、解除して中身を無害化できます。".into(),
            "wrong-password" => "知らされたパスワードでは開けず、中身を確認できませんでした。".into(),
            "limit-exceeded" => "ファイルの大きさ、圧縮を展開したときの量、入れ子の深さなどが、安全に処理できる上限を超えました。".into(),
            "timeout" => "処理に時間がかかりすぎたため、途中で打ち切りました。".into(),
            "internal-error" => "処理中に mukaika の内部でエラーが起きたため、安全のため渡していません。".into(),
            "virus" if !self.detail.trim().is_empty() => format!(
                "ウイルス対策ソフトがウイルスを検知しました (検知名: {})。",
                one_line(&self.detail)
            ),
            "virus" => "ウイルス対策ソフトがウイルスを検知しました。".into(),
            "scanner-unavailable" => "ウイルス対策ソフトが応答しないため、まだ検査できていません。検査できるようになり次第、自動で処理します。".into(),
            "unscannable" => "大きさなどがウイルス対策ソフトの検査できる上限を超えたため、検査できませんでした。".into(),
            "text-only" => "この窓口は、メール本文だけを受け付け、添付ファイルは受け付けない設定です。".into(),
            "placeholder" => "数バイトだけの、中身のない添付ファイルでした。".into(),
            "unsupported-encoding" => "古い方式 (BinHex) で変換された添付ファイルで、mukaika は元に戻しません。".into(),
            "bad-name" => "ファイル名に、そのまま書き出せない文字や形 (制御文字、長すぎる名前など) が含まれています。".into(),
            _ => format!("{}。", self.description_ja()),
        };
        out.push_str(&because);
        out
    }
}

/// A finding about a file's name or declared type, as one plain Japanese sentence.
pub fn finding_ja(finding: &Finding) -> String {
    match finding {
        Finding::ExtensionMismatch {
            extension,
            detected,
        } => format!(
            "ファイル名の拡張子は「.{}」ですが、中身は {} でした。",
            one_line(extension),
            kind_label_ja(*detected)
        ),
        Finding::MimeMismatch { detected, .. } => format!(
            "メールでは別の種類のファイルとして送られていましたが、中身は {} でした。",
            kind_label_ja(*detected)
        ),
        Finding::DoubleExtension { name } => format!(
            "「{}」のように拡張子を二重にして、安全なファイルに見せかけた名前です。",
            one_line(name)
        ),
        Finding::BidiControlInName { name } => format!(
            "ファイル名に文字の並ぶ向きを変える特殊な文字が入っていて、本当の拡張子が隠されていました (実際の名前: {})。",
            one_line(name)
        ),
        Finding::Polyglot { .. } => {
            "ファイルの先頭が、別の形式のファイルに見えるように作られています。".into()
        }
    }
}

/// A finding as one English line for the technical detail (the JSON report keeps the
/// structured finding); never JSON, so the admin view reads as a sentence.
pub fn finding_detail_en(finding: &Finding) -> String {
    match finding {
        Finding::ExtensionMismatch {
            extension,
            detected,
        } => format!(
            "the name ends in .{} but the content is {detected}",
            one_line(extension)
        ),
        Finding::MimeMismatch { mime, detected } => {
            format!(
                "declared as {} but the content is {detected}",
                one_line(mime)
            )
        }
        Finding::DoubleExtension { name } => format!("double extension in {name:?}"),
        Finding::BidiControlInName { name } => {
            format!("a bidi control character hides the extension in {name:?}")
        }
        Finding::Polyglot { leading } => {
            format!("polyglot: the leading bytes look like {leading}")
        }
    }
}

/// What a file of `kind` is, in words staff know: `Word 文書 (.docx)`, `Windows の実行ファイル
/// (プログラム)`. Never the internal kind name alone.
pub fn kind_label_ja(kind: FileKind) -> String {
    use FileKind as K;
    let plain = |s: &str| s.to_string();
    let ext = |s: &str| {
        kind.preferred_extension()
            .map_or_else(|| s.to_string(), |e| format!("{s} (.{e})"))
    };
    match kind {
        K::Pdf => ext("PDF 文書"),
        K::Docx | K::Dotx | K::Doc => ext("Word 文書"),
        K::Rtf => ext("リッチテキスト文書"),
        K::Docm | K::Dotm => ext("マクロ付きの Word 文書"),
        K::Xlsx | K::Xltx | K::Xls | K::Xlsb => ext("Excel ブック"),
        K::Xlsm | K::Xltm | K::Xlam => ext("マクロ付きの Excel ブック"),
        K::Pptx | K::Ppsx | K::Potx | K::Ppt => ext("PowerPoint 資料"),
        K::Pptm | K::Ppsm | K::Potm => ext("マクロ付きの PowerPoint 資料"),
        K::OoxmlOther => plain("Office 文書"),
        K::EncryptedOoxml => plain("パスワード付きの Office 文書"),
        K::OleOther => plain("その他のアプリケーションの文書 (一太郎など)"),
        K::Odt => ext("OpenDocument 文書"),
        K::Ods => ext("OpenDocument 表計算"),
        K::Odp => ext("OpenDocument プレゼンテーション"),
        K::OdfOther => plain("OpenDocument ファイル"),
        K::Tnef => plain("Outlook の添付形式 (winmail.dat)"),
        K::Zip | K::SevenZip | K::Rar | K::Gzip | K::Bzip2 | K::Xz | K::Tar | K::Lzh => {
            ext("圧縮ファイル")
        }
        K::Cab => plain("Windows のインストール用書庫 (.cab)"),
        K::Msi => plain("Windows のインストーラー (.msi)"),
        K::Iso | K::Vhd | K::Dmg => plain("ディスクイメージ (.iso / .vhd など)"),
        K::Png | K::Jpeg | K::Gif | K::Bmp | K::Tiff | K::Webp | K::Svg => ext("画像"),
        K::Mp3 => ext("音声"),
        K::Pe => plain("Windows の実行ファイル (プログラム)"),
        K::Elf | K::MachO | K::JavaClass | K::Wasm => plain("実行ファイル (プログラム)"),
        K::ScriptJs
        | K::ScriptVbs
        | K::ScriptPs1
        | K::ScriptBat
        | K::ScriptSh
        | K::ScriptPython
        | K::ScriptPhp
        | K::ScriptWsf
        | K::Hta => ext("スクリプト (プログラム)"),
        K::Lnk => plain("ショートカット (.lnk)"),
        K::OneNote => plain("OneNote ファイル"),
        K::Chm => plain("Windows ヘルプファイル (.chm)"),
        K::Sylk => plain("SYLK 形式の表計算ファイル"),
        K::OfficeXml => plain("XML 形式の Office 文書"),
        K::ShellFile => plain("Windows の特殊なファイル (インターネットショートカット等)"),
        K::Html => plain("HTML (Web ページ)"),
        K::XmlActive => plain("動作する内容を含む XML"),
        K::Text => plain("テキスト"),
        K::Csv => ext("CSV"),
        K::Empty => plain("空のファイル"),
        K::Unknown => plain("種類の分からないファイル"),
    }
}

/// Text from a report shown on one line (a name or signature never breaks a line of a
/// notice or report, nor carries a control character into it).
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
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

    /// Why this file was not delivered, in plain Japanese ([`Reason::explain_ja`] with this
    /// report's type and findings), naming the archive members at fault for `blocked-member`
    /// and `held-member`. `None` for a delivered file.
    pub fn explain_ja(&self) -> Option<String> {
        let reason = self.reason.as_ref()?;
        let mut text = reason.explain_ja(self.detected_type, &self.findings);
        if matches!(reason.code.as_str(), "blocked-member" | "held-member") {
            let culprits: Vec<String> = self
                .children
                .iter()
                .filter(|c| matches!(c.verdict, Verdict::Blocked | Verdict::Quarantined))
                .map(|c| {
                    format!(
                        "{} ({})",
                        one_line(c.input.as_deref().unwrap_or("名前なし")),
                        c.reason
                            .as_ref()
                            .map_or("その他の理由", |r| r.description_ja())
                    )
                })
                .collect();
            if !culprits.is_empty() {
                let shown = culprits.iter().take(5).cloned().collect::<Vec<_>>();
                text.push_str(&format!("該当: {}", shown.join("、")));
                if culprits.len() > shown.len() {
                    text.push_str(&format!(" ほか {} 件", culprits.len() - shown.len()));
                }
            }
        }
        Some(text)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every reason code the registry, the mail converter, the pipeline and the import folder
    /// write.
    const CODES: [&str; 21] = [
        "blocked-kind",
        "blocked-name",
        "blocked-member",
        "held-member",
        "policy-quarantine",
        "type-mismatch",
        "polyglot",
        "malformed",
        "unsupported",
        "encrypted",
        "wrong-password",
        "limit-exceeded",
        "timeout",
        "internal-error",
        "virus",
        "scanner-unavailable",
        "unscannable",
        "text-only",
        "placeholder",
        "unsupported-encoding",
        "bad-name",
    ];

    #[test]
    fn every_reason_has_a_label_without_a_verdict_word_and_a_plain_sentence_for_every_kind() {
        for code in CODES {
            // Only a virus's sentence quotes its detail (the signature name).
            let detail = if code == "virus" {
                "Win.Test.EICAR_HDB-1"
            } else {
                "pe is blocked by policy"
            };
            let reason = Reason::new(code, detail);
            let label = reason.description_ja();
            assert_ne!(label, "その他の理由", "{code}");
            // The verdict or the state says what happened; the label only why.
            assert!(
                !label.contains("削除") && !label.contains("隔離"),
                "{code}: {label}"
            );
            for kind in FileKind::ALL {
                let text = reason.explain_ja(*kind, &[]);
                assert!(text.ends_with('。'), "{code} {kind}: {text}");
                for jargon in [code, kind.name(), "policy", "blocked", "{"] {
                    // A kind name may appear as a file extension (`(.pdf)`), never alone.
                    let bare = text.replace(&format!("(.{})", kind.name()), "");
                    assert!(
                        !bare.contains(&format!(" {jargon}"))
                            && !bare.contains(&format!("({jargon})")),
                        "{code} {kind}: {jargon:?} in {text}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_finding_makes_the_sentence_concrete_and_is_said_once() {
        let findings = [
            Finding::ExtensionMismatch {
                extension: "txt".into(),
                detected: FileKind::Pe,
            },
            Finding::MimeMismatch {
                mime: "text/plain".into(),
                detected: FileKind::Pe,
            },
        ];
        let text = Reason::new("blocked-kind", "").explain_ja(FileKind::Pe, &findings);
        assert_eq!(
            text,
            "ファイル名の拡張子は「.txt」ですが、中身は Windows の実行ファイル (プログラム) でした。\
             開くとパソコン上でプログラムとして動くおそれがあるため、受け付けない種類のファイルです。"
        );
        assert_eq!(
            finding_detail_en(&findings[0]),
            "the name ends in .txt but the content is pe"
        );
    }

    #[test]
    fn an_archive_names_the_members_at_fault() {
        let mut zip = Report::new(Some("書類.zip"), b"zip", FileKind::Zip);
        zip.verdict = Verdict::Blocked;
        zip.reason = Some(Reason::new(
            "blocked-member",
            "archive member a.exe is blocked",
        ));
        let mut exe = Report::new(Some("a.exe"), b"MZ", FileKind::Pe);
        exe.verdict = Verdict::Blocked;
        exe.reason = Some(Reason::new("blocked-kind", "pe is blocked by policy"));
        let mut txt = Report::new(Some("b.txt"), b"hi", FileKind::Text);
        txt.verdict = Verdict::Passed;
        zip.children = vec![exe, txt];
        let text = zip.explain_ja().unwrap_or_default();
        assert!(
            text.ends_with("該当: a.exe (実行ファイル・スクリプト等)"),
            "{text}"
        );
        assert!(!text.contains("b.txt"), "{text}");
        let mut fine = Report::new(None, b"", FileKind::Empty);
        fine.verdict = Verdict::Passed;
        assert_eq!(fine.explain_ja(), None);
    }
}
