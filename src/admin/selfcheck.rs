//! `mukaika selfcheck`: the configuration and data held against the municipal standard
//! (地方公共団体における情報セキュリティポリシーに関するガイドライン, as each city's 対策基準 adopts it).
//!
//! Owns: one [`Check`] per clause — no open relay (7.1(14)①), a size limit (7.1(14)③), TLS on
//! listeners reachable beyond this host (5.3④⑤), an intact audit chain and set retention
//! (7.1(6)), an antivirus engine that answers, with its version and signature date (7.4(1)),
//! a synchronised time source (8.1②), releases decided by someone other than the requester
//! (2(9)), no account left with its initial password (6.4(3)⑤, 7.2(1)), an admin listener
//! that is loopback or HTTPS — and the Japanese table printed from them.
//! Invariants: each check says what it looked at; a check that cannot tell (time source not
//! found) fails rather than passes, so cron mail says so.
//! Must never: change anything it checks.

use std::path::Path;
use std::process::Command;

use crate::config::ServiceConfig;

/// One clause's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// The clause (e.g. "7.1(14)①").
    pub clause: &'static str,
    /// What was checked, in Japanese.
    pub item: &'static str,
    /// Passed?
    pub ok: bool,
    /// What was found.
    pub detail: String,
}

fn check(clause: &'static str, item: &'static str, ok: bool, detail: impl Into<String>) -> Check {
    Check {
        clause,
        item,
        ok,
        detail: detail.into(),
    }
}

/// Runs every check against a loaded configuration.
pub fn run(config: &ServiceConfig) -> Vec<Check> {
    let mut out = Vec::new();
    let smtp = &config.smtp;

    let loopback = smtp.listen.ip().is_loopback();
    out.push(check(
        "7.1(14)①",
        "不正中継の禁止 (オープンリレーでない)",
        loopback || !smtp.accepted_domains.is_empty(),
        if loopback {
            format!("{} (ループバックのみで待ち受け)", smtp.listen)
        } else {
            format!(
                "受け付ける宛先ドメイン: {}",
                smtp.accepted_domains.join(", ")
            )
        },
    ));

    let limit = smtp.max_message_bytes;
    out.push(check(
        "7.1(14)③",
        "受信メールのサイズ上限",
        limit > 0 && limit <= 100 << 20,
        format!("{} MiB", limit >> 20),
    ));

    let tls = match (&smtp.tls_cert_file, &smtp.tls_key_file) {
        (Some(cert), Some(key)) => match crate::tls::tls_acceptor(cert, key) {
            Ok(_) => Ok(format!("STARTTLS ({})", cert.display())),
            Err(e) => Err(format!("証明書を読み込めません: {e}")),
        },
        _ => Err("STARTTLS が設定されていません".to_string()),
    };
    out.push(match (loopback, tls) {
        (_, Ok(detail)) => check("5.3④⑤", "SMTP 受信の暗号化 (TLS)", true, detail),
        (true, Err(_)) => check(
            "5.3④⑤",
            "SMTP 受信の暗号化 (TLS)",
            true,
            "ループバックのみで待ち受け (通信路が本機の外に出ない)",
        ),
        (false, Err(e)) => check("5.3④⑤", "SMTP 受信の暗号化 (TLS)", false, e),
    });
    out.push(relay_tls_check(config));
    let admin_tls = config.admin.tls_cert_file.is_some() && config.admin.tls_key_file.is_some();
    let admin_loopback = config.admin.listen.ip().is_loopback();
    out.push(check(
        "5.3④⑤",
        "管理用待ち受けの保護",
        admin_loopback || admin_tls,
        match (admin_loopback, admin_tls) {
            (_, true) => format!("{} (HTTPS、画面はログイン必須)", config.admin.listen),
            (true, false) => format!("{} (ループバックのみ)", config.admin.listen),
            (false, false) => format!(
                "{} で TLS なしに公開 (admin.dangerous_expose、admin.tls_* 未設定)",
                config.admin.listen
            ),
        },
    ));

    out.push(audit_check(config));
    out.push(check(
        "7.1(6)",
        "ログ・隔離物の保存期間",
        config.audit.retention_days > 0 && config.quarantine.retention_days > 0,
        format!(
            "監査ログ {} 日、隔離物 {} 日",
            config.audit.retention_days, config.quarantine.retention_days
        ),
    ));

    out.push(antivirus_check(config));

    let (synced, how) = time_source();
    out.push(check("8.1②", "時刻の同期", synced, how));

    out.push(two_person_check(config));
    out.push(initial_password_check(config));
    if config.store.backend == crate::config::StoreBackend::Postgres {
        out.extend(cluster_checks(config));
    }
    out
}

/// The cluster's shared database (`[store] backend = "postgres"`): reached over TLS (or a
/// local socket), at the schema this binary knows, and the nodes that reported in recently
/// (`mukaika serve` does every [`crate::store::postgres::NODE_HEARTBEAT_SECS`]).
fn cluster_checks(config: &ServiceConfig) -> Vec<Check> {
    use crate::store::postgres::{latest_version, Pg};
    const LINK: &str = "クラスタ: 共有データベースへの接続";
    const SCHEMA: &str = "クラスタ: データベースの版";
    const NODES: &str = "クラスタ: 稼働中のノード";
    let pg = match Pg::connect(&config.store) {
        Ok(pg) => pg,
        Err(e) => {
            return vec![check("5.3④⑤", LINK, false, format!("接続できません: {e}"))];
        }
    };
    let mut out = vec![if pg.is_tls() {
        check("5.3④⑤", LINK, true, "TLS (証明書を ca_file で検証)")
    } else if config.store.dangerous_plaintext {
        check(
            "5.3④⑤",
            LINK,
            false,
            "暗号化なし (store.dangerous_plaintext)",
        )
    } else {
        check(
            "5.3④⑤",
            LINK,
            true,
            "本機内の接続 (Unix ソケットまたはループバック)",
        )
    }];
    let latest = latest_version();
    out.push(match pg.schema_version() {
        Ok(v) if v == latest => check("7.1(6)", SCHEMA, true, format!("{v} (このバイナリと同じ)")),
        Ok(v) if v < latest => check(
            "7.1(6)",
            SCHEMA,
            false,
            format!("{v}、このバイナリは {latest} が必要 (mukaika store migrate)"),
        ),
        Ok(v) => check(
            "7.1(6)",
            SCHEMA,
            false,
            format!("{v}、このバイナリは {latest} まで (このノードを更新してください)"),
        ),
        Err(e) => check("7.1(6)", SCHEMA, false, format!("読めません: {e}")),
    });
    let recent = 4 * crate::store::postgres::NODE_HEARTBEAT_SECS as i64;
    out.push(match pg.nodes() {
        Ok(nodes) => {
            let (seen, silent): (Vec<_>, Vec<_>) =
                nodes.iter().partition(|n| n.seconds_ago <= recent);
            let mut detail = seen
                .iter()
                .map(|n| format!("{} ({}、{} 秒前)", n.name, n.version, n.seconds_ago))
                .collect::<Vec<_>>()
                .join(", ");
            if seen.is_empty() {
                detail = format!("{recent} 秒以内に報告したノードがありません");
            }
            if !silent.is_empty() {
                let names: Vec<&str> = silent.iter().map(|n| n.name.as_str()).collect();
                detail.push_str(&format!("; 応答なし: {}", names.join(", ")));
            }
            check("8.1②", NODES, !seen.is_empty(), detail)
        }
        Err(e) => check("8.1②", NODES, false, format!("読めません: {e}")),
    });
    out.push(release_backlog_check(&pg, config.store.release_lease_secs));
    out.push(copies_check(config, &pg));
    out
}

/// Approved releases waiting: fine while each is within a few leases of its approval (a node
/// delivering it, or one that died being taken over); one older than that means no node can
/// hand it to the relay (the relay refuses, or no node runs).
fn release_backlog_check(pg: &crate::store::postgres::Pg, lease_secs: u64) -> Check {
    const ITEM: &str = "クラスタ: 承認済みで未配送の解除";
    let patience = (4 * lease_secs).max(600) as i64;
    match pg.release_backlog() {
        Ok(b) if b.approved == 0 => check("8.1②", ITEM, true, "なし"),
        Ok(b) => {
            let mut detail = format!(
                "{} 件、最も古いもので承認から {} 秒",
                b.approved, b.oldest_secs
            );
            if !b.delivering.is_empty() {
                detail.push_str(&format!("; 配送中のノード: {}", b.delivering));
            }
            if b.oldest_secs > patience {
                detail.push_str(&format!(
                    "; {patience} 秒を超えています (リレーの拒否か、稼働中のノードがありません: ログを確認してください)"
                ));
            }
            check("8.1②", ITEM, b.oldest_secs <= patience, detail)
        }
        Err(e) => check("8.1②", ITEM, false, format!("読めません: {e}")),
    }
}

/// This node's audit copies in the cluster's database: each equals the local record, none is
/// missing or extra (a conflict: another node with the same `[audit] node` name, or an
/// altered copy), and how many local records wait to be copied.
fn copies_check(config: &ServiceConfig, pg: &crate::store::postgres::Pg) -> Check {
    const COPIES: &str = "クラスタ: 監査記録の写し";
    let key = match config
        .audit
        .hmac_key_file
        .as_ref()
        .map(|p| std::fs::read(p).map(|k| k.trim_ascii().to_vec()))
        .transpose()
    {
        Ok(k) => k,
        Err(e) => return check("7.1(6)", COPIES, false, format!("HMAC 鍵を読めません: {e}")),
    };
    let dir = config.data.dir.join("audit");
    if !dir.exists() {
        return check("7.1(6)", COPIES, true, "まだ記録がありません");
    }
    match crate::store::audit_copies::verify(pg, &config.audit.node, &dir, key.as_deref(), true) {
        Ok(r) if r.intact() => check(
            "7.1(6)",
            COPIES,
            true,
            format!(
                "{}: {} 件を複写済み、未複写 {} 件",
                config.audit.node,
                r.nodes.first().map_or(0, |n| n.records),
                r.not_copied
            ),
        ),
        Ok(r) => check(
            "7.1(6)",
            COPIES,
            false,
            format!(
                "{}: 写しに問題 {} 件 (同じ [audit] node 名の別ノード、または写しの改ざん): {}",
                config.audit.node,
                r.problem_count,
                r.problems
                    .iter()
                    .take(3)
                    .map(|p| format!("#{} {} ({})", p.seq, p.kind_ja(), p.detail))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        ),
        Err(e) => check("7.1(6)", COPIES, false, format!("読めません: {e}")),
    }
}

/// 2(9): every release so far was decided by someone other than its requester (the review
/// code refuses anything else; this finds a database edited behind its back).
fn two_person_check(config: &ServiceConfig) -> Check {
    let item = "隔離解除の二人承認 (兼務の禁止)";
    // A cluster's requests are in its PostgreSQL, whatever this node's folder holds.
    let sqlite = config.store.backend == crate::config::StoreBackend::Sqlite;
    if sqlite && !config.data.dir.join("review.db").exists() {
        return check(
            "2(9)",
            item,
            true,
            "解除の記録なし (解除には申請者と別人の承認が必要)",
        );
    }
    match crate::review::requests_in(config, None) {
        Ok(requests) => {
            let decided: Vec<_> = requests.iter().filter(|r| r.decided_by.is_some()).collect();
            let own: Vec<&str> = decided
                .iter()
                .filter(|r| {
                    r.decided_by.as_deref() == Some(r.requester.as_str())
                        && r.state != crate::review::RequestState::Cancelled
                })
                .map(|r| r.id.as_str())
                .collect();
            if own.is_empty() {
                check(
                    "2(9)",
                    item,
                    true,
                    format!(
                        "判断済みの申請 {} 件、すべて申請者と別人が判断 (自己承認はシステムが拒否)",
                        decided.len()
                    ),
                )
            } else {
                check(
                    "2(9)",
                    item,
                    false,
                    format!("申請者本人が判断した申請: {}", own.join(", ")),
                )
            }
        }
        Err(e) => check("2(9)", item, false, format!("申請の記録を読めません: {e}")),
    }
}

/// 6.4(3)⑤, 7.2(1): no account still has its one-time initial password.
fn initial_password_check(config: &ServiceConfig) -> Check {
    let item = "初期パスワードのままのアカウントがない";
    let sqlite = config.store.backend == crate::config::StoreBackend::Sqlite;
    if sqlite && !config.data.dir.join("review.db").exists() {
        return check(
            "6.4(3)⑤, 7.2(1)",
            item,
            true,
            "アカウントはまだありません (既定のアカウントは存在しません)",
        );
    }
    match crate::review::users_in(config) {
        Ok(users) => {
            let pending: Vec<&str> = users
                .iter()
                .filter(|u| u.must_change)
                .map(|u| u.name.as_str())
                .collect();
            if pending.is_empty() {
                check(
                    "6.4(3)⑤, 7.2(1)",
                    item,
                    true,
                    format!(
                        "アカウント {} 件、すべて初期パスワードを変更済み",
                        users.len()
                    ),
                )
            } else {
                check(
                    "6.4(3)⑤, 7.2(1)",
                    item,
                    false,
                    format!("初期パスワードのまま: {}", pending.join(", ")),
                )
            }
        }
        Err(e) => check(
            "6.4(3)⑤, 7.2(1)",
            item,
            false,
            format!("アカウントを読めません: {e}"),
        ),
    }
}

/// 5.3④⑤ for the hop into LGWAN: STARTTLS to the relay unless it is on this host.
fn relay_tls_check(config: &ServiceConfig) -> Check {
    let item = "LGWAN 側への中継の暗号化 (TLS)";
    if config.delivery.mode != crate::config::DeliveryMode::Relay {
        return check("5.3④⑤", item, true, "maildir 配送 (中継なし)");
    }
    let host = config
        .delivery
        .relay_target()
        .map(|(h, _)| h)
        .unwrap_or_default();
    let local = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match (config.delivery.relay_starttls, local) {
        (true, _) => check("5.3④⑤", item, true, format!("STARTTLS 必須 ({host})")),
        (false, true) => check("5.3④⑤", item, true, format!("{host} (本機内の中継)")),
        (false, false) => check(
            "5.3④⑤",
            item,
            false,
            format!("{host} へ平文で中継 (delivery.relay_starttls を設定してください)"),
        ),
    }
}

/// 7.4(1): the antivirus stage is configured and clamd answers with its version and
/// signature date.
fn antivirus_check(config: &ServiceConfig) -> Check {
    let item = "不正プログラム対策 (ウイルス検査)";
    let Some(endpoint) = &config.antivirus.clamd else {
        return check(
            "7.4(1)①②",
            item,
            false,
            "antivirus.clamd が未設定です (上流で検査している場合も、本ゲートウェイでの検査を推奨)",
        );
    };
    let clamd = match endpoint.parse() {
        Ok(e) => crate::antivirus::Clamd::new(
            e,
            std::time::Duration::from_secs(config.antivirus.timeout_secs.min(10)),
        ),
        Err(e) => return check("7.4(1)①②", item, false, e),
    };
    match clamd.version() {
        Ok(version) => check("7.4(1)①②", item, true, format!("clamd: {version}")),
        Err(e) => check(
            "7.4(1)①②",
            item,
            false,
            format!("clamd が応答しません: {e}"),
        ),
    }
}

fn audit_check(config: &ServiceConfig) -> Check {
    let dir = config.data.dir.join("audit");
    let key = config
        .audit
        .hmac_key_file
        .as_ref()
        .map(|p| std::fs::read(p).map(|k| k.trim_ascii().to_vec()));
    let key = match key.transpose() {
        Ok(k) => k,
        Err(e) => {
            return check(
                "7.1(6)",
                "監査ログの改ざん検知",
                false,
                format!("HMAC 鍵を読めません: {e}"),
            )
        }
    };
    if !dir.exists() {
        return check(
            "7.1(6)",
            "監査ログの改ざん検知",
            true,
            format!("{}: まだ記録がありません", dir.display()),
        );
    }
    match crate::audit::verify(&dir, key.as_deref(), None) {
        Ok(report) if report.intact() => check(
            "7.1(6)",
            "監査ログの改ざん検知",
            true,
            format!("ハッシュチェーン検証 OK ({})", dir.display()),
        ),
        Ok(report) => check(
            "7.1(6)",
            "監査ログの改ざん検知",
            false,
            format!("チェーンが壊れています: {:?}", report.problem),
        ),
        Err(e) => check("7.1(6)", "監査ログの改ざん検知", false, e.to_string()),
    }
}

/// Whether the clock is synchronised, and how that was found out: systemd-timesyncd's flag
/// file, chrony's leap status, or timedatectl, in that order.
fn time_source() -> (bool, String) {
    if Path::new("/run/systemd/timesync/synchronized").exists() {
        return (true, "systemd-timesyncd: 同期済み".into());
    }
    if let Ok(out) = Command::new("chronyc").args(["-n", "tracking"]).output() {
        let text = String::from_utf8_lossy(&out.stdout);
        if let Some(line) = text.lines().find(|l| l.starts_with("Leap status")) {
            let normal = line.trim_end().ends_with("Normal");
            return (normal, format!("chrony: {}", line.trim()));
        }
    }
    if let Ok(out) = Command::new("timedatectl")
        .args(["show", "-p", "NTPSynchronized", "--value"])
        .output()
    {
        let value = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !value.is_empty() {
            return (
                value == "yes",
                format!("timedatectl: NTPSynchronized={value}"),
            );
        }
    }
    (
        false,
        "時刻同期 (chrony / systemd-timesyncd) を確認できません".into(),
    )
}

/// The table `mukaika selfcheck` prints.
pub fn table(checks: &[Check]) -> String {
    let mut out = String::from("条項\t確認項目\t結果\t詳細\n");
    for c in checks {
        out.push_str(&format!(
            "{}\t{}\t{}\t{}\n",
            c.clause,
            c.item,
            if c.ok { "適合" } else { "不適合" },
            c.detail
        ));
    }
    let failed = checks.iter().filter(|c| !c.ok).count();
    out.push_str(&if failed == 0 {
        "すべての確認項目に適合しています。\n".to_string()
    } else {
        format!("{failed} 件が不適合です。\n")
    });
    out
}
