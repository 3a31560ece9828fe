//! The dashboard's charts, drawn on the server as inline SVG: no script and no inline style, so
//! the CSP stays `default-src 'none'; style-src 'self'`.
//!
//! Owns: [`day_volumes`] (what the audit log says each Japan-time day brought, by verdict),
//! [`stacked_days`] (that as stacked columns) and [`bars`] (labelled horizontal bars, each
//! optionally a link).
//! Invariants: every value reaches the SVG through maud (escaped); colours come from classes
//! in the stylesheet, not from attributes a value could reach; every mark stays inside its
//! `viewBox` (labels are cut to fit), so a chart scales to its column and never widens a page;
//! each chart has a `<title>` and the numbers as text, for screen readers and for print.
//! Must never: take markup or a style from data, or count an item twice in one day.

use std::collections::{BTreeMap, HashSet};

use maud::{html, Markup};

use crate::admin::web::html::Lang;

/// The verdict classes a day's column is split into, in drawing order (bottom first).
pub(super) const VERDICTS: [&str; 4] = ["forwarded", "quarantined", "rejected", "other"];

/// The label of a verdict class.
pub(super) fn verdict_label(lang: Lang, class: &str) -> &'static str {
    match class {
        "forwarded" => lang.t("配送（無害化済み）", "forwarded (sanitized)"),
        "quarantined" => lang.t("隔離", "quarantined"),
        "rejected" => lang.t("遮断", "blocked"),
        _ => lang.t("その他", "other"),
    }
}

/// The class of a verdict word as the audit log writes it.
fn class_of(verdict: &str) -> usize {
    match verdict {
        "delivered" | "sanitized" | "passed" | "forwarded" | "converted" => 0,
        "quarantined" => 1,
        "blocked" | "rejected" => 2,
        _ => 3,
    }
}

/// Per Japan-time day (`YYYY-MM-DD`), how many mails (`message_converted`) and imported files
/// (`file_exported`, once per item) ended in each class of [`VERDICTS`].
pub(super) fn day_volumes(records: &[crate::audit::Record]) -> BTreeMap<String, [usize; 4]> {
    let mut days: BTreeMap<String, [usize; 4]> = BTreeMap::new();
    let mut exported: HashSet<String> = HashSet::new();
    for r in records {
        let kind = r.event.get("type").and_then(|t| t.as_str()).unwrap_or("");
        let verdict = r
            .event
            .get("verdict")
            .and_then(|v| v.as_str())
            .unwrap_or("");
        let counted = match kind {
            "message_converted" => true,
            "file_exported" => {
                let item = r
                    .event
                    .get("item_id")
                    .and_then(|v| v.as_str())
                    .unwrap_or("");
                exported.insert(item.to_string())
            }
            _ => false,
        };
        if !counted {
            continue;
        }
        let day: String = crate::admin::web::html::jst(&r.ts)
            .chars()
            .take(10)
            .collect();
        if let Some(slot) = days.entry(day).or_default().get_mut(class_of(verdict)) {
            *slot += 1;
        }
    }
    days
}

/// Width of the drawing area of every chart, in `viewBox` units.
const W: u32 = 520;

/// As much of `s` as fits in `room` units of 11-px text (labels must stay inside the chart,
/// or the SVG clips them): wide (CJK) characters count 11, others 6.5; an ellipsis when cut.
fn fit(s: &str, room: u32) -> String {
    let width = |c: char| if c.is_ascii() { 6.5 } else { 11.0 };
    if s.chars().map(width).sum::<f64>() <= f64::from(room) {
        return s.to_string();
    }
    let mut used = 11.0; // the ellipsis
    let mut out = String::new();
    for c in s.chars() {
        used += width(c);
        if used > f64::from(room) {
            break;
        }
        out.push(c);
    }
    out.push('…');
    out
}

/// One coloured piece of a day's column: class, count, y, height.
type Segment<'a> = (&'a str, usize, u32, u32);

/// Stacked columns, one per day (oldest left), split by [`VERDICTS`], with a legend.
pub(super) fn stacked_days(lang: Lang, title: &str, days: &[(String, [usize; 4])]) -> Markup {
    let (h, top, bottom, left) = (200u32, 16u32, 34u32, 34u32);
    let plot_h = h - top - bottom;
    let max = days
        .iter()
        .map(|(_, c)| c.iter().sum::<usize>())
        .max()
        .unwrap_or(0)
        .max(1);
    let n = days.len().max(1) as u32;
    let slot = (W - left - 6) / n;
    let bar = slot.saturating_sub(6).max(4);
    let scale = |v: usize| (v as u64 * u64::from(plot_h) / max as u64) as u32;
    // Each column: x, day, total, and its segments bottom up.
    let columns: Vec<(u32, &str, usize, Vec<Segment<'_>>)> = days
        .iter()
        .enumerate()
        .map(|(i, (day, counts))| {
            let x = left + 4 + i as u32 * slot;
            let mut y = top + plot_h;
            let mut segments = Vec::new();
            for (class, v) in VERDICTS.iter().zip(counts.iter()) {
                let hgt = scale(*v);
                if hgt > 0 {
                    y -= hgt;
                    segments.push((*class, *v, y, hgt));
                }
            }
            (x, day.as_str(), counts.iter().sum(), segments)
        })
        .collect();
    html! {
        figure {
            figcaption { (title) }
            svg.chart viewBox={ "0 0 " (W) " " (h) } role="img" aria-label=(title) xmlns="http://www.w3.org/2000/svg" {
                title { (title) }
                line.axis x1=(left) y1=(top + plot_h) x2=(W - 2) y2=(top + plot_h) {}
                text x=(left - 4) y=(top + 4) text-anchor="end" { (max) }
                text x=(left - 4) y=(top + plot_h) text-anchor="end" { "0" }
                @for (x, day, total, segments) in &columns {
                    g {
                        title { (day) ": " (total) }
                        @for (class, v, y, hgt) in segments {
                            rect class={ "v-" (class) } x=(x) y=(y) width=(bar) height=(hgt) {
                                title { (day) " " (verdict_label(lang, class)) ": " (v) }
                            }
                        }
                        @if *total > 0 {
                            text x=(x + bar / 2) y=((top + plot_h).saturating_sub(scale(*total) + 3)) text-anchor="middle" { (total) }
                        }
                        text x=(x + bar / 2) y=(h - bottom + 14) text-anchor="middle" { (day.get(5..).unwrap_or(day)) }
                    }
                }
            }
            ul.legend {
                @for class in VERDICTS {
                    li { span class={ "k-" (class) } {} (verdict_label(lang, class)) }
                }
            }
        }
    }
}

/// One bar of [`bars`]: label, value, link.
pub(super) struct Bar {
    /// What it counts.
    pub label: String,
    /// How many.
    pub value: usize,
    /// Where a click leads (the filtered list), if anywhere.
    pub href: Option<String>,
    /// The second colour (for a bar that stands apart, such as expired PPAP items).
    pub alt: bool,
}

/// Labelled horizontal bars, one row each, the count at the end.
pub(super) fn bars(title: &str, rows: &[Bar]) -> Markup {
    let (row_h, label_w) = (22u32, 200u32);
    let h = (rows.len().max(1) as u32) * row_h + 8;
    let max = rows.iter().map(|r| r.value).max().unwrap_or(0).max(1);
    let room = W - label_w - 40;
    html! {
        figure {
            figcaption { (title) }
            svg.chart viewBox={ "0 0 " (W) " " (h) } role="img" aria-label=(title) xmlns="http://www.w3.org/2000/svg" {
                title { (title) }
                @for (i, r) in rows.iter().enumerate() {
                    @let y = 4 + i as u32 * row_h;
                    @let len = (r.value as u64 * u64::from(room) / max as u64) as u32;
                    @let mark = html! {
                        text x=(label_w - 6) y=(y + 15) text-anchor="end" { (fit(&r.label, label_w - 12)) }
                        rect class=(if r.alt { "bar2" } else { "bar" }) x=(label_w) y=(y + 3) width=(len.max(1)) height=(row_h - 6) {
                            title { (r.label) ": " (r.value) }
                        }
                        text x=(label_w + len + 4) y=(y + 15) { (r.value) }
                    };
                    @if let Some(href) = &r.href {
                        a href=(href) { (mark) }
                    } @else {
                        g { (mark) }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(ts: &str, event: serde_json::Value) -> crate::audit::Record {
        crate::audit::Record {
            seq: 1,
            ts: ts.into(),
            node: "n".into(),
            prev: String::new(),
            event,
            hash: String::new(),
        }
    }

    #[test]
    fn days_are_japan_time_and_an_import_counts_once() {
        let records = [
            // 2026-11-27 23:30 UTC is the 28th in Japan.
            record(
                "2026-11-27T23:30:00.000Z",
                serde_json::json!({"type": "message_converted", "verdict": "delivered"}),
            ),
            record(
                "2026-11-28T01:00:00.000Z",
                serde_json::json!({"type": "message_converted", "verdict": "quarantined"}),
            ),
            record(
                "2026-11-28T01:00:00.000Z",
                serde_json::json!({"type": "file_exported", "item_id": "F1", "verdict": "blocked"}),
            ),
            record(
                "2026-11-28T01:00:00.000Z",
                serde_json::json!({"type": "file_exported", "item_id": "F1", "verdict": "blocked"}),
            ),
        ];
        let days = day_volumes(&records);
        assert_eq!(days.get("2026-11-28"), Some(&[1, 1, 1, 0]));
        assert_eq!(days.len(), 1);
    }

    #[test]
    fn labels_are_cut_to_the_room_they_have() {
        assert_eq!(fit("abc", 100), "abc");
        assert_eq!(fit("暗号化・パスワード付きのため隔離", 66), "暗号化・パ…");
    }

    #[test]
    fn a_label_from_data_is_escaped_in_the_svg() {
        let svg = bars(
            "t",
            &[Bar {
                label: "<script>".into(),
                value: 3,
                href: None,
                alt: false,
            }],
        )
        .into_string();
        assert!(svg.contains("&lt;script&gt;") && !svg.contains("<script>"));
    }
}
