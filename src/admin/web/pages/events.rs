//! Audit events as sentences people read: one Japanese (or English) sentence per event kind
//! of [`crate::audit::AuditEvent`], built from its typed fields.
//!
//! Owns: [`sentence`].
//! Invariants: every kind of the enum has its own arm (the match is exhaustive, so a new kind
//! does not compile until it is worded here); a record that does not parse as any kind (a
//! newer or older version's event) is shown as its type and JSON, never dropped. Values from
//! the record are plain text for the template to escape.
//! Must never: show more than the record holds, or hide a field the record carries only in
//! JSON (the audit page keeps the raw JSON alongside).

use crate::admin::web::html::Lang;
use crate::audit::event::AuditEvent;
use crate::sink::notice::reason_ja;

/// A list of names, or "-".
fn names(v: &[String]) -> String {
    if v.is_empty() {
        "-".to_string()
    } else {
        v.join(", ")
    }
}

/// The first 12 hex digits of a hash (the full one is in the JSON).
fn short(h: &str) -> &str {
    h.get(..12).unwrap_or(h)
}

/// A verdict word in Japanese.
fn verdict_ja(v: &str) -> &str {
    match v {
        "sanitized" => "無害化済み",
        "passed" => "無害化不要（検査済み）",
        "blocked" => "遮断",
        "quarantined" => "隔離",
        "delivered" | "forwarded" => "配送",
        "rejected" => "拒否",
        "converted" => "テキスト化",
        other => other,
    }
}

/// How a PPAP item was unlocked, in Japanese.
fn way_ja(way: &str) -> &str {
    match way {
        "password-mail" => "パスワードメール",
        "same-mail" => "同じメールのパスワード",
        "web" => "Web 画面",
        "cli" => "CLI",
        "link" => "受信者のリンク",
        other => other,
    }
}

/// A login outcome in Japanese.
fn login_ja(outcome: &str) -> &str {
    match outcome {
        "ok" | "success" => "成功",
        "failed" | "failure" | "wrong-password" => "失敗",
        "lockout" => "ロック",
        "locked" => "ロック中のため拒否",
        other => other,
    }
}

/// The event of `json` (a record's `event`) as one sentence in `lang`.
pub(super) fn sentence(lang: Lang, json: &serde_json::Value) -> String {
    let Ok(event) = serde_json::from_value::<AuditEvent>(json.clone()) else {
        let kind = json.get("type").and_then(|t| t.as_str()).unwrap_or("?");
        return match lang {
            Lang::Ja => format!("未知の種類の記録（{kind}）"),
            Lang::En => format!("event of an unknown kind ({kind})"),
        };
    };
    match lang {
        Lang::Ja => ja(&event),
        Lang::En => en(&event),
    }
}

fn ja(e: &AuditEvent) -> String {
    use AuditEvent as E;
    match e {
        E::MessageReceived(m) => format!(
            "SMTP でメールを受け付けました（差出人 {}、宛先 {}、{} バイト、送信元 {}、キューID {}）",
            m.mail_from, names(&m.rcpt_to), m.size, m.client, m.queue_id
        ),
        E::PartSanitized(p) => format!(
            "ファイル「{}」を処理しました: {}（形式 {}{}）",
            p.name.as_deref().unwrap_or("（名前なし）"),
            verdict_ja(&p.verdict),
            p.detected_type.as_deref().unwrap_or("不明"),
            if p.removed.is_empty() {
                String::new()
            } else {
                format!("、除去 {}", p.removed.join(", "))
            }
        ),
        E::MessageConverted(m) => format!(
            "メールを変換しました: {}（キューID {}、ID {}{}）",
            verdict_ja(&m.verdict),
            m.queue_id,
            m.mukaika_id,
            if m.findings.is_empty() {
                String::new()
            } else {
                format!("、検出 {}", m.findings.join(", "))
            }
        ),
        E::Delivered(d) => format!(
            "LGWAN 側へ配送しました（宛先 {}、配送先 {}）",
            names(&d.rcpt_to),
            d.destination
        ),
        E::Deferred(d) => format!(
            "配送が一時的に失敗しました（{} 回目、次回 {}）: {}",
            d.attempt,
            crate::admin::web::html::jst(&d.next_attempt),
            d.reason
        ),
        E::Held(h) => format!("配送できず保留しました: {}", h.reason),
        E::Quarantined(q) => format!(
            "隔離しました: {}（{}、経路 {}、元ID {}）",
            reason_ja(&q.reason),
            q.reason,
            q.source,
            q.origin_id
        ),
        E::FileImported(f) => format!(
            "取り込みフォルダー「{}」からファイル {} を受け付けました（{} バイト）",
            f.department, f.path, f.size
        ),
        E::FileExported(f) => format!(
            "出力フォルダー「{}」へ {} を書き出しました: {}",
            f.department,
            f.path,
            verdict_ja(&f.verdict)
        ),
        E::ImportFailed(f) => format!(
            "取り込みフォルダー「{}」の {} を今回は処理できませんでした: {}",
            f.department, f.path, f.error
        ),
        E::ReleaseRequested(d) => format!(
            "{} さんが解除を申請しました（{}）。理由: {}",
            d.by,
            d.target.as_deref().unwrap_or("-"),
            d.reason
        ),
        E::ReleaseApproved(d) => format!("{} さんが解除を承認しました。理由: {}", d.by, d.reason),
        E::ReleaseRejected(d) => format!("{} さんが解除を却下しました。理由: {}", d.by, d.reason),
        E::ReleaseCancelled(d) => {
            format!("{} さんが解除申請を取り下げました。理由: {}", d.by, d.reason)
        }
        E::ReleaseDelivered(d) => format!("解除した項目を配送しました（{}）", d.reason),
        E::QuarantineDeleted(d) => format!("{} さんが隔離項目を削除しました。理由: {}", d.by, d.reason),
        E::OriginalDownloaded(d) => format!("{} さんが原本をダウンロードしました", d.by),
        E::OriginalViewed(d) => format!("{} さんが原本を安全な表示で閲覧しました", d.by),
        E::NoticeSent(n) => format!(
            "通知メールを送りました（宛先 {}、対象 {} 件）",
            names(&n.rcpt_to),
            n.items.len()
        ),
        E::UserChanged(u) => format!(
            "{} さんがアカウント {} を変更しました（{}{}）",
            u.by,
            u.user,
            u.action,
            u.role
                .as_deref()
                .map(|r| format!("、役割 {r}"))
                .unwrap_or_default()
        ),
        E::AdminLogin(l) => format!(
            "{} のログイン: {}（接続元 {}）",
            l.user,
            login_ja(&l.outcome),
            l.client
        ),
        E::StoreCopied(c) => format!(
            "ノードのデータを共有データベースへ複製しました（隔離 {}件、アカウント {}件、申請 {}件{}）",
            c.items_copied,
            c.users_copied,
            c.requests_copied,
            if c.items_failed.is_empty() && c.users_differing.is_empty() {
                String::new()
            } else {
                format!(
                    "、失敗 {}件、相違するアカウント {}件",
                    c.items_failed.len(),
                    c.users_differing.len()
                )
            }
        ),
        E::ConfigLoaded(c) => format!(
            "設定を読み込みました（{}、SHA-256 {}…）",
            c.source,
            short(&c.sha256)
        ),
        E::ServiceStarted(s) => format!("サービスを開始しました（版 {}）", s.version),
        E::ServiceStopped(s) => format!(
            "サービスを停止しました（版 {}{}）",
            s.version,
            s.reason
                .as_deref()
                .map(|r| format!("、{r}"))
                .unwrap_or_default()
        ),
        E::AuditVerified(a) => format!(
            "監査ログを検証しました: {} 件、{}{}",
            a.records,
            if a.intact { "改ざんなし" } else { "問題あり" },
            a.problem
                .as_deref()
                .map(|p| format!("（{p}）"))
                .unwrap_or_default()
        ),
        E::Checkpoint(c) => format!("区切りの記録（前回から {} 件）", c.records),
        E::Recovery(r) => format!(
            "前回の異常終了で途切れた行を記録しました（{} の {} 行目、{} バイト）",
            r.file, r.line, r.bytes
        ),
        E::RetentionExpired(r) => format!(
            "保存期間（{} 日）を過ぎたものを削除しました: {}",
            r.days,
            names(&r.removed)
        ),
        E::UnlockAttempted(u) => format!(
            "{} さんがパスワード付きファイルの解除を試みました（{}、候補 {} 個）: {}",
            u.by,
            way_ja(&u.way),
            u.candidates,
            match u.outcome.as_str() {
                "unlocked" => "解除",
                "wrong-password" => "パスワード違い",
                "locked" => "試行回数の上限でロック",
                "already-unlocked" => "解除済み",
                other => other,
            }
        ),
        E::UnlockDelivered(u) => format!(
            "解除したファイルを無害化して配送しました: {}（{}、宛先 {}）",
            verdict_ja(&u.verdict),
            way_ja(&u.way),
            names(&u.rcpt_to)
        ),
    }
}

fn en(e: &AuditEvent) -> String {
    use AuditEvent as E;
    match e {
        E::MessageReceived(m) => format!(
            "Mail accepted over SMTP from {} to {} ({} bytes, client {})",
            m.mail_from,
            names(&m.rcpt_to),
            m.size,
            m.client
        ),
        E::PartSanitized(p) => format!(
            "File {} processed: {}",
            p.name.as_deref().unwrap_or("(unnamed)"),
            p.verdict
        ),
        E::MessageConverted(m) => format!("Message converted: {}", m.verdict),
        E::Delivered(d) => format!("Delivered to {} via {}", names(&d.rcpt_to), d.destination),
        E::Deferred(d) => format!("Delivery deferred (attempt {}): {}", d.attempt, d.reason),
        E::Held(h) => format!("Delivery held: {}", h.reason),
        E::Quarantined(q) => format!("Quarantined: {} (from {})", q.reason, q.source),
        E::FileImported(f) => format!("Imported {} from {}", f.path, f.department),
        E::FileExported(f) => format!("Exported {} to {}: {}", f.path, f.department, f.verdict),
        E::ImportFailed(f) => format!("Import of {} failed this pass: {}", f.path, f.error),
        E::ReleaseRequested(d) => format!("{} requested release: {}", d.by, d.reason),
        E::ReleaseApproved(d) => format!("{} approved the release: {}", d.by, d.reason),
        E::ReleaseRejected(d) => format!("{} rejected the release: {}", d.by, d.reason),
        E::ReleaseCancelled(d) => format!("{} withdrew the request: {}", d.by, d.reason),
        E::ReleaseDelivered(d) => format!("Released item delivered ({})", d.reason),
        E::QuarantineDeleted(d) => format!("{} deleted the item: {}", d.by, d.reason),
        E::OriginalDownloaded(d) => format!("{} downloaded the original", d.by),
        E::OriginalViewed(d) => format!("{} viewed the original (safe view)", d.by),
        E::NoticeSent(n) => format!("Notice sent to {}", names(&n.rcpt_to)),
        E::UserChanged(u) => format!("{} changed account {}: {}", u.by, u.user, u.action),
        E::AdminLogin(l) => format!("Login of {}: {} (from {})", l.user, l.outcome, l.client),
        E::StoreCopied(c) => format!(
            "Node data copied into the shared database ({} items, {} accounts, {} requests; {} items failed, {} accounts differ)",
            c.items_copied,
            c.users_copied,
            c.requests_copied,
            c.items_failed.len(),
            c.users_differing.len()
        ),
        E::ConfigLoaded(c) => format!("Configuration loaded from {}", c.source),
        E::ServiceStarted(s) => format!("Service started (version {})", s.version),
        E::ServiceStopped(s) => format!("Service stopped (version {})", s.version),
        E::AuditVerified(a) => format!(
            "Audit log verified: {} records, {}",
            a.records,
            if a.intact { "intact" } else { "problem found" }
        ),
        E::Checkpoint(c) => format!("Checkpoint ({} records since the last)", c.records),
        E::Recovery(r) => format!("Recovered a torn line in {} (line {})", r.file, r.line),
        E::RetentionExpired(r) => {
            format!("Retention ({} days) removed {}", r.days, names(&r.removed))
        }
        E::UnlockAttempted(u) => format!(
            "{} tried to unlock a password-protected file ({}): {}",
            u.by, u.way, u.outcome
        ),
        E::UnlockDelivered(u) => format!(
            "Unlocked file delivered: {} to {}",
            u.verdict,
            names(&u.rcpt_to)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_release_request_reads_as_a_japanese_sentence_naming_who_and_why() {
        let json = serde_json::json!({
            "type": "release_requested", "item_id": "A-1", "request_id": "R1",
            "by": "yamada", "reason": "取引先の見積書", "target": "original-recipients"
        });
        assert_eq!(
            sentence(Lang::Ja, &json),
            "yamada さんが解除を申請しました（original-recipients）。理由: 取引先の見積書"
        );
    }

    #[test]
    fn an_unknown_kind_is_named_not_dropped() {
        let json = serde_json::json!({"type": "from_the_future", "x": 1});
        assert_eq!(
            sentence(Lang::Ja, &json),
            "未知の種類の記録（from_the_future）"
        );
    }
}
