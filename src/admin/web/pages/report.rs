//! The sanitizer report as a table people read: what was removed or found, where, and why.
//!
//! Owns: [`rows`] (the report's JSON walked into rows) and [`report_table`].
//! Invariants: reads the stored JSON generically (a file's `Report` and a mail's report
//! alike: `removed`, `findings`, `warnings` and `reason` at every level, descending into
//! `children` and `attachments`), so a report of any version shows what it holds; each row
//! names where it was, nested path first (`見積書.zip › 中.docm › word/vbaProject.bin`). The item
//! page keeps the raw JSON beside it, folded.
//! Must never: drop a finding it does not recognise (unknown shapes are shown as their text).

use maud::{html, Markup};
use serde_json::Value;

use crate::admin::web::html::{cut, Lang};

/// One line of the report table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Row {
    /// Removed, found, a warning, or the reason for holding.
    pub kind: &'static str,
    /// Where: the nested file path, then the location inside.
    pub place: String,
    /// What, in the UI language.
    pub what: String,
    /// Why or which (the sanitizer's detail).
    pub why: String,
}

/// A JSON value as short text.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The description of a removal's `what` code in `lang` (the code itself when unknown).
fn what_label(lang: Lang, what: &Value) -> String {
    match serde_json::from_value::<mukaika_sanitizers::report::What>(what.clone()) {
        Ok(w) => match lang {
            Lang::Ja => w.description_ja().to_string(),
            Lang::En => w.description_en().to_string(),
        },
        Err(_) => text(what),
    }
}

/// A name or type finding (`detect::Finding`) in `lang`; other codes as they are.
fn finding_label(lang: Lang, code: &str) -> String {
    let ja = match code {
        "extension-mismatch" => "拡張子と中身の形式が一致しない",
        "mime-mismatch" => "宣言された MIME 型と中身の形式が一致しない",
        "double-extension" => "二重拡張子（例: 報告書.pdf.exe）",
        "bidi-control-in-name" => "名前に文字の向きを変える制御文字",
        "polyglot" => "複数の形式として解釈できる",
        _ => return code.to_string(),
    };
    match lang {
        Lang::Ja => format!("{ja}（{code}）"),
        Lang::En => code.to_string(),
    }
}

/// Joins the nested path and a location inside it.
fn place(path: &[String], location: &str) -> String {
    let mut parts: Vec<&str> = path.iter().map(String::as_str).collect();
    if !location.is_empty() {
        parts.push(location);
    }
    if parts.is_empty() {
        "-".to_string()
    } else {
        parts.join(" › ")
    }
}

fn walk(lang: Lang, v: &Value, path: &mut Vec<String>, out: &mut Vec<Row>, depth: usize) {
    // Reports nest as deep as archives do, and the sanitizers bound that depth; this bound
    // only keeps a damaged record from recursing without end.
    if depth > 32 {
        return;
    }
    let Some(o) = v.as_object() else { return };
    let name = o
        .get("input")
        .or_else(|| o.get("name"))
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty());
    let pushed = name.is_some_and(|n| path.last().map(String::as_str) != Some(n));
    if let (true, Some(n)) = (pushed, name) {
        path.push(n.to_string());
    }
    if let Some(r) = o.get("reason").and_then(Value::as_object) {
        let code = r.get("code").map(text).unwrap_or_default();
        out.push(Row {
            kind: lang.t("保留の理由", "held because"),
            place: place(path, ""),
            what: match lang {
                Lang::Ja => format!("{}（{code}）", crate::sink::notice::reason_ja(&code)),
                Lang::En => code.clone(),
            },
            why: r.get("detail").map(text).unwrap_or_default(),
        });
    }
    for r in o
        .get("removed")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        out.push(Row {
            kind: lang.t("除去", "removed"),
            place: place(path, &r.get("location").map(text).unwrap_or_default()),
            what: r
                .get("what")
                .map(|w| what_label(lang, w))
                .unwrap_or_default(),
            why: r.get("detail").map(text).unwrap_or_default(),
        });
    }
    for f in o
        .get("findings")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let (what, why) = match f {
            Value::Object(m) => {
                let kind_key = ["finding", "kind", "code", "what"]
                    .into_iter()
                    .find(|k| m.contains_key(*k));
                let kind = kind_key
                    .and_then(|k| m.get(k))
                    .map(text)
                    .unwrap_or_default();
                // The detail, or else the finding's other fields as `key: value`.
                let why = m.get("detail").map(text).unwrap_or_else(|| {
                    m.iter()
                        .filter(|(k, _)| Some(k.as_str()) != kind_key)
                        .map(|(k, v)| format!("{k}: {}", text(v)))
                        .collect::<Vec<_>>()
                        .join(", ")
                });
                (finding_label(lang, &kind), why)
            }
            other => (finding_label(lang, &text(other)), String::new()),
        };
        out.push(Row {
            kind: lang.t("検出", "finding"),
            place: place(path, ""),
            what,
            why,
        });
    }
    for w in o
        .get("warnings")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        out.push(Row {
            kind: lang.t("注意", "warning"),
            place: place(path, ""),
            what: String::new(),
            why: text(w),
        });
    }
    for key in ["children", "attachments"] {
        for c in o.get(key).and_then(Value::as_array).into_iter().flatten() {
            walk(lang, c, path, out, depth + 1);
            // An attachment entry may carry its file's report one level down.
            if let Some(inner) = c.get("report") {
                walk(lang, inner, path, out, depth + 1);
            }
        }
    }
    if pushed {
        path.pop();
    }
}

/// Every removal, finding, warning and reason in `report`, in the order the report holds them.
pub(super) fn rows(lang: Lang, report: &Value) -> Vec<Row> {
    let mut out = Vec::new();
    walk(lang, report, &mut Vec::new(), &mut out, 0);
    out
}

/// The report as a table, with the raw JSON folded below it.
pub(super) fn report_table(lang: Lang, report: &Value) -> Markup {
    let rows = rows(lang, report);
    let raw = serde_json::to_string_pretty(report).unwrap_or_default();
    html! {
        @if rows.is_empty() {
            p { (lang.t("除去・検出した事項はありません。", "Nothing was removed or found.")) }
        } @else {
            table.report {
                caption { (lang.t("無害化レポート: 何を、どこで、なぜ", "Sanitizer report: what, where, why")) }
                thead { tr {
                    th scope="col" { (lang.t("区分", "Kind")) }
                    th scope="col" { (lang.t("場所", "Where")) }
                    th scope="col" { (lang.t("内容", "What")) }
                    th scope="col" { (lang.t("理由・詳細", "Why / detail")) }
                } }
                tbody {
                    @for r in &rows {
                        tr {
                            td.nw { (r.kind) }
                            td.long { (cut(&r.place, 300)) }
                            td { (r.what) }
                            td.long { (cut(&r.why, 600)) }
                        }
                    }
                }
            }
        }
        details {
            summary { (lang.t("レポートの JSON（機械向け）", "The report as JSON (for machines)")) }
            pre { (raw) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nested_macro_is_one_row_naming_the_path_and_why() {
        let report = serde_json::json!({
            "input": "見積書.zip",
            "reason": {"code": "encrypted", "detail": "zip: encrypted members"},
            "removed": [],
            "findings": [{"finding": "extension-mismatch", "extension": "pdf", "detected": "zip"}],
            "warnings": ["comment dropped"],
            "children": [{
                "input": "中.docm",
                "removed": [{"what": "macro", "location": "word/vbaProject.bin", "detail": "VBA project"}],
                "children": []
            }]
        });
        let rows = rows(Lang::Ja, &report);
        assert_eq!(rows.len(), 4, "{rows:?}");
        assert_eq!(rows[3].kind, "除去");
        assert_eq!(rows[3].place, "見積書.zip › 中.docm › word/vbaProject.bin");
        assert_eq!(rows[3].what, "マクロ (VBA)");
        assert_eq!(rows[3].why, "VBA project");
        assert_eq!(rows[0].kind, "保留の理由");
        assert_eq!(
            rows[1].what,
            "拡張子と中身の形式が一致しない（extension-mismatch）"
        );
        assert_eq!(rows[1].why, "detected: zip, extension: pdf");
        assert_eq!(rows[2].why, "comment dropped");
    }
}
