//! Two or more nodes on one import folder (#21) against a real, private PostgreSQL
//! (support::postgres): each file of a shared import folder is claimed in the database and
//! processed by one node, exported once and audited once; a claim left by a node that died is
//! taken over after its lease. The claim logic itself is tested against the database first.

use crate::support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use mukaika::config::{ImportPair, ServiceConfig};
use mukaika::source::import::cluster::{Claims, FileIdentity};
use support::postgres::{migrate, Database};
use support::{config, runtime};

/// A node: its own data folder, the shared database and the shared import pair.
fn node(data: &Path, db: &Database, name: &str, shared: &Path) -> ServiceConfig {
    let mut c = config(data, "");
    c.audit.node = name.into();
    c.notices.recipients = false;
    db.configure(&mut c);
    c.import.settle_secs = 0;
    c.import.rescan_secs = 1;
    c.import.pairs = vec![ImportPair {
        name: "soumu".into(),
        import: shared.join("import"),
        export: shared.join("export"),
        mode: None,
        uid: None,
        gid: None,
    }];
    c
}

fn file(path: &str, ctime_ns: i64) -> FileIdentity {
    FileIdentity {
        pair: "soumu".into(),
        path: path.into(),
        ino: 42,
        size: 7,
        mtime_ns: 1_000,
        ctime_ns,
    }
}

fn migrated() -> (Database, ServiceConfig, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::new();
    let c = node(dir.path(), &db, "node-a", dir.path());
    migrate(&c);
    (db, c, dir)
}

#[test]
fn one_node_wins_a_file_and_nobody_takes_a_finished_file_again() {
    let (db, c, _dir) = migrated();
    let a = Claims::open(&c.store, "node-a").unwrap();
    let b = Claims::open(&c.store, "node-b").unwrap();
    let memo = file("課/memo.txt", 5);
    let won = a.claim(&memo).unwrap().expect("the first claim wins");
    assert_eq!(b.claim(&memo).unwrap(), None, "the second node loses");
    // The same name holding another file (replaced while A works) is not B's either.
    let replaced = file("課/memo.txt", 6);
    assert_eq!(
        b.claim(&replaced).unwrap(),
        None,
        "one node at a time per name"
    );
    // Only the claimant records its work.
    assert!(b.write_entry(won, "{}").is_err());
    assert!(b.set_import_id(won, "Ix").is_err());
    a.set_import_id(won, "Iabc").unwrap();
    // Export names: one claim each.
    let other = a.claim(&file("other.txt", 5)).unwrap().unwrap();
    assert!(a.reserve(won, "soumu", "課/memo.txt").unwrap());
    assert!(
        a.reserve(won, "soumu", "課/memo.txt").unwrap(),
        "still its own"
    );
    assert!(!a.reserve(other, "soumu", "課/memo.txt").unwrap());
    assert!(b
        .working(&["Iabc".to_string(), "Inone".to_string()])
        .unwrap()
        .contains("Iabc"));
    a.finish(won).unwrap();
    assert!(b.working(&["Iabc".to_string()]).unwrap().is_empty());
    // Finished: the name is free again, the very same file is not taken again.
    assert!(a.reserve(other, "soumu", "課/memo.txt").unwrap());
    assert_eq!(b.claim(&memo).unwrap(), None, "a tombstone");
    // The same name dropped again later (a new change time) is a new file.
    assert!(b.claim(&replaced).unwrap().is_some());
    assert_eq!(
        db.psql("SELECT count(*) FROM import_claims WHERE done_at IS NULL"),
        "2"
    );
    // A claim given up goes, with its names.
    a.release(other).unwrap();
    assert_eq!(db.psql("SELECT count(*) FROM import_names"), "0");
}

#[test]
fn a_claim_is_taken_over_only_after_its_lease_ran_out() {
    let (db, c, _dir) = migrated();
    let dead = Claims::open(&c.store, "node-dead").unwrap();
    let b = Claims::open(&c.store, "node-b").unwrap();
    let x = dead.claim(&file("x.txt", 1)).unwrap().unwrap();
    dead.set_import_id(x, "Idead").unwrap();
    let done = dead.claim(&file("done.txt", 1)).unwrap().unwrap();
    dead.finish(done).unwrap();
    drop(dead);
    let pairs = ["soumu".to_string()];
    assert!(b.take_over(&pairs).unwrap().is_none(), "the lease holds");
    db.psql("UPDATE import_claims SET lease_until = now() - interval '1 second'");
    let taken = b.take_over(&pairs).unwrap().expect("taken over");
    assert_eq!(taken.claim, x);
    assert_eq!(taken.previous, "node-dead");
    assert_eq!(taken.import_id.as_deref(), Some("Idead"));
    assert_eq!(
        db.psql(&format!(
            "SELECT node, lease_until > now() FROM import_claims WHERE id = {x}"
        )),
        "node-b|t"
    );
    // Now B's, under a fresh lease: a third node does not take it.
    let c3 = Claims::open(&c.store, "node-c").unwrap();
    assert!(c3.take_over(&pairs).unwrap().is_none());
    assert!(c3.take_over(&["other-pair".to_string()]).unwrap().is_none());
}

/// Files below `dir` (relative, sorted), temporary names included.
fn files_under(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// `file_imported` records by path, over the audit logs under `data` folders.
fn imports(datas: &[&Path]) -> Vec<BTreeMap<String, usize>> {
    datas
        .iter()
        .map(|d| {
            let mut by_path = BTreeMap::new();
            // A killed node's log may end in a torn line: what it holds is counted.
            for r in
                mukaika::audit::search(&d.join("audit"), &Default::default()).unwrap_or_default()
            {
                if r.event["type"] == "file_imported" {
                    let path = r.event["path"].as_str().unwrap_or_default().to_string();
                    *by_path.entry(path).or_insert(0) += 1;
                }
            }
            by_path
        })
        .collect()
}

/// Waits until the import folder is empty and the export folder holds `n` files.
fn wait_exported(shared: &Path, n: usize, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if files_under(&shared.join("import")).is_empty()
            && files_under(&shared.join("export")).len() >= n
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Drops `bytes` as `name` into the import folder at once (written beside it, renamed in).
fn drop_file(shared: &Path, name: &str, bytes: &[u8]) {
    let staging = shared.join("staging");
    std::fs::create_dir_all(&staging).unwrap();
    let tmp = staging.join(name.replace('/', "_"));
    std::fs::write(&tmp, bytes).unwrap();
    let to = shared.join("import").join(name);
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::rename(&tmp, &to).unwrap();
}

#[test]
fn two_nodes_on_one_import_folder_export_each_of_200_files_once() {
    let shared = tempfile::tempdir().unwrap();
    let (da, dbd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let db = Database::new();
    let a = node(da.path(), &db, "node-a", shared.path());
    let b = node(dbd.path(), &db, "node-b", shared.path());
    migrate(&a);
    std::fs::create_dir_all(shared.path().join("import")).unwrap();
    let rt = runtime();
    let node_a = support::start(&rt, a.clone(), "test");
    let node_b = support::start(&rt, b.clone(), "test");
    // 200 files at once: text and CSV (two outputs each: the file and its report), and a few
    // programs, quarantined (the report only).
    let mut clean = Vec::new();
    let mut held = Vec::new();
    for i in 0..200 {
        match i % 20 {
            0 => {
                let name = format!("tool-{i:03}.exe");
                let mut exe = b"MZ\x90\x00 synthetic program ".to_vec();
                exe.resize(256, 0);
                drop_file(shared.path(), &name, &exe);
                held.push(name);
            }
            n if n % 2 == 0 => {
                let name = format!("課/一覧-{i:03}.csv");
                let csv = format!("番号,件名\r\n{i},会議 {i}\r\n");
                drop_file(shared.path(), &name, csv.as_bytes());
                clean.push(name);
            }
            _ => {
                let name = format!("memo-{i:03}.txt");
                drop_file(
                    shared.path(),
                    &name,
                    format!("会議は{i}時から\n").as_bytes(),
                );
                clean.push(name);
            }
        }
    }
    let expected = clean.len() * 2 + held.len();
    wait_exported(shared.path(), expected, 180);
    rt.block_on(node_a.stop("test"));
    rt.block_on(node_b.stop("test"));

    assert_eq!(
        files_under(&shared.path().join("import")),
        Vec::<String>::new()
    );
    let exported = files_under(&shared.path().join("export"));
    let mut want: Vec<String> = clean
        .iter()
        .flat_map(|n| [n.clone(), format!("{n}.無害化レポート.txt")])
        .chain(held.iter().map(|n| format!("{n}.無害化レポート.txt")))
        .collect();
    want.sort();
    // Each exported once: no "(2)" copies, no temporary files left.
    assert_eq!(exported, want);
    let per_node = imports(&[da.path(), dbd.path()]);
    let mut all: BTreeMap<String, usize> = BTreeMap::new();
    for by_path in &per_node {
        for (path, n) in by_path {
            *all.entry(path.clone()).or_insert(0) += n;
        }
    }
    assert_eq!(all.len(), 200);
    let twice: Vec<_> = all.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "imported more than once: {twice:?}");
    let counts: Vec<usize> = per_node.iter().map(|m| m.values().sum()).collect();
    assert!(
        counts.iter().all(|n| *n > 0),
        "both nodes did some: {counts:?}"
    );
    // Quarantined once, by whichever node took the program, in the shared quarantine.
    assert_eq!(
        db.psql("SELECT count(*) FROM quarantine_items WHERE source = 'import'"),
        held.len().to_string()
    );
    assert_eq!(
        db.psql("SELECT count(*) FROM import_claims WHERE done_at IS NULL"),
        "0"
    );
    assert_eq!(db.psql("SELECT count(*) FROM import_claims"), "200");
    eprintln!("files imported per node: {counts:?}");
}

/// The identity of `path` (in the pair `soumu`, below `import`) as the database keeps it.
fn identity_sql(import: &Path, rel: &str) -> String {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(import.join(rel)).unwrap();
    let ns = |s: i64, n: i64| s * 1_000_000_000 + n;
    format!(
        "'soumu', '{rel}', {}, {}, {}, {}",
        m.ino(),
        m.size(),
        ns(m.mtime(), m.mtime_nsec()),
        ns(m.ctime(), m.ctime_nsec())
    )
}

#[test]
fn a_file_claimed_by_a_node_that_died_before_exporting_is_taken_over_and_exported_once() {
    let shared = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let db = Database::new();
    let b = node(data.path(), &db, "node-b", shared.path());
    migrate(&b);
    drop_file(shared.path(), "memo.txt", "会議は10時から\n".as_bytes());
    // The dead node had read the file and begun an export under a temporary name.
    let export = shared.path().join("export");
    std::fs::create_dir_all(&export).unwrap();
    let tmp = export.join(".Ideadbeef0000000000000000.4242.0.abcdef.tmp");
    std::fs::write(&tmp, b"half an export").unwrap();
    db.psql(&format!(
        "INSERT INTO import_claims (pair, path, ino, size, mtime_ns, ctime_ns, node, lease_until, import_id)
         VALUES ({}, 'node-dead', now() - interval '1 second', 'Ideadbeef0000000000000000')",
        identity_sql(&shared.path().join("import"), "memo.txt")
    ));
    // Another node's work in progress in the same folder is not swept.
    let working = export.join(".Ialive00000000000000000000.77.0.abcdef.tmp");
    std::fs::write(&working, b"being written").unwrap();
    db.psql(
        "INSERT INTO import_claims (pair, path, ino, size, mtime_ns, ctime_ns, node, lease_until, import_id)
         VALUES ('soumu', 'busy.txt', 1, 1, 1, 1, 'node-alive', now() + interval '1 hour', 'Ialive00000000000000000000')",
    );
    let rt = runtime();
    let node_b = support::start(&rt, b.clone(), "test");
    wait_exported(shared.path(), 3, 60);
    rt.block_on(node_b.stop("test"));
    assert_eq!(
        files_under(&export),
        vec![
            ".Ialive00000000000000000000.77.0.abcdef.tmp",
            "memo.txt",
            "memo.txt.無害化レポート.txt"
        ]
    );
    assert!(files_under(&shared.path().join("import")).is_empty());
    assert_eq!(
        db.psql("SELECT node, done_at IS NOT NULL FROM import_claims WHERE path = 'memo.txt'"),
        "node-b|t"
    );
    assert_eq!(imports(&[data.path()])[0].get("memo.txt"), Some(&1));
}

#[test]
fn a_file_whose_node_died_after_its_ledger_entry_is_completed_by_another_without_a_second_copy() {
    let shared = tempfile::tempdir().unwrap();
    let (dead_data, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let db = Database::new();
    let dead = node(dead_data.path(), &db, "node-dead", shared.path());
    let b = node(data.path(), &db, "node-b", shared.path());
    migrate(&b);
    drop_file(shared.path(), "課/memo.txt", "会議は10時から\n".as_bytes());
    // The dead node: exports renamed into place under its ledger entry in the database, audit
    // records written, and then it stops before it removes the original.
    {
        let registry = std::sync::Arc::new(mukaika::sanitizers::Registry::standard());
        let audit = std::sync::Arc::new(mukaika::store::open_audit(&dead).unwrap());
        let quarantine = mukaika::store::quarantine::open(
            dead_data.path().join("quarantine"),
            dead.quarantine.store,
        )
        .unwrap();
        let importer = mukaika::source::import::Importer::new(
            dead.import.clone(),
            dead_data.path(),
            registry,
            audit,
            quarantine,
        )
        .with_cluster(&dead.store, "node-dead")
        .unwrap()
        .with_hook(|point, _| {
            if point == mukaika::source::import::HookPoint::BeforeRetire {
                panic!("the node dies here");
            }
        });
        let died = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            importer.pass(&dead.policy, false)
        }));
        assert!(died.is_err());
    }
    std::thread::sleep(Duration::from_millis(300));
    let export = shared.path().join("export");
    assert_eq!(
        files_under(&export),
        vec!["課/memo.txt", "課/memo.txt.無害化レポート.txt"]
    );
    assert_eq!(
        db.psql("SELECT node, entry IS NOT NULL, done_at IS NULL FROM import_claims"),
        "node-dead|t|t"
    );
    db.psql("UPDATE import_claims SET lease_until = now() - interval '1 second'");
    let rt = runtime();
    let node_b = support::start(&rt, b.clone(), "test");
    wait_exported(shared.path(), 2, 60);
    // Give it a few passes: a second copy would show up as "memo (2).txt".
    std::thread::sleep(Duration::from_secs(3));
    rt.block_on(node_b.stop("test"));
    assert!(files_under(&shared.path().join("import")).is_empty());
    assert_eq!(
        files_under(&export),
        vec!["課/memo.txt", "課/memo.txt.無害化レポート.txt"]
    );
    assert_eq!(
        db.psql("SELECT node, done_at IS NOT NULL FROM import_claims"),
        "node-b|t"
    );
    let kinds = support::audit_kinds(data.path());
    assert!(kinds.iter().any(|k| k == "file_exported"), "{kinds:?}");
}

/// A node's configuration file for `mukaika serve` as a process of its own.
fn node_file(data: &Path, db: &Database, name: &str, shared: &Path) -> std::path::PathBuf {
    let pairs = "[[import.pairs]]\nname = \"default\"\n# Relative folders are taken from data.dir.\nimport = \"import\"\nexport = \"export\"";
    let text = support::config_text(data, "127.0.0.1:0")
        .replace("node = \"mukaika-1\"", &format!("node = \"{name}\""))
        .replace("settle_secs = 5", "settle_secs = 0")
        .replace("rescan_secs = 30", "rescan_secs = 1")
        .replace(
            pairs,
            &format!(
                "[[import.pairs]]\nname = \"soumu\"\nimport = \"{}\"\nexport = \"{}\"",
                shared.join("import").display(),
                shared.join("export").display()
            ),
        )
        .replace(
            "backend = \"sqlite\"",
            &format!("backend = \"postgres\"\nurl = \"{}\"", db.url()),
        );
    assert!(
        text.contains("name = \"soumu\""),
        "the default pair changed"
    );
    let path = data.join("node.toml");
    std::fs::create_dir_all(data).unwrap();
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_node_killed_mid_run_leaves_nothing_lost_and_nothing_exported_twice() {
    let shared = tempfile::tempdir().unwrap();
    let (da, dbd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let db = Database::new();
    let a_file = node_file(da.path(), &db, "node-a", shared.path());
    let b = node(dbd.path(), &db, "node-b", shared.path());
    migrate(&b);
    let mut names = Vec::new();
    for i in 0..200 {
        let name = format!("memo-{i:03}.txt");
        drop_file(
            shared.path(),
            &name,
            format!("会議は{i}時から\n").as_bytes(),
        );
        names.push(name);
    }
    let mut a = std::process::Command::new(env!("CARGO_BIN_EXE_mukaika"))
        .args(["serve", "--config", a_file.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Killed while it works through the folder.
    let export = shared.path().join("export");
    let deadline = Instant::now() + Duration::from_secs(120);
    while files_under(&export).len() < 40 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    rustix::process::kill_process(
        rustix::process::Pid::from_child(&a),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    a.wait().unwrap();
    let left = files_under(&shared.path().join("import")).len();
    let unfinished = db.psql("SELECT count(*) FROM import_claims WHERE done_at IS NULL");
    assert!(left > 0 && left < 200, "killed mid-run: {left} files left");
    // Its leases run out (the database's clock moved on, as it would in a minute).
    db.psql(
        "UPDATE import_claims SET lease_until = now() - interval '1 second' WHERE done_at IS NULL",
    );
    let rt = runtime();
    let node_b = support::start(&rt, b.clone(), "test");
    wait_exported(shared.path(), 400, 180);
    rt.block_on(node_b.stop("test"));
    assert!(files_under(&shared.path().join("import")).is_empty());
    let mut want: Vec<String> = names
        .iter()
        .flat_map(|n| [n.clone(), format!("{n}.無害化レポート.txt")])
        .collect();
    want.sort();
    assert_eq!(
        files_under(&export),
        want,
        "each once, no temporary file left"
    );
    let per_node = imports(&[da.path(), dbd.path()]);
    for name in &names {
        let n: usize = per_node
            .iter()
            .map(|m| m.get(name).copied().unwrap_or(0))
            .sum();
        assert!(n >= 1, "{name} not on record");
    }
    assert_eq!(
        db.psql("SELECT count(*) FROM import_claims WHERE done_at IS NULL"),
        "0"
    );
    eprintln!(
        "left by the killed node: {left} files, {unfinished} unfinished claims; imports on record per node: {:?}",
        per_node.iter().map(|m| m.values().sum::<usize>()).collect::<Vec<_>>()
    );
}

#[test]
fn a_taken_over_entry_never_removes_a_file_that_is_not_the_one_claimed() {
    use std::os::unix::fs::MetadataExt;
    let shared = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let db = Database::new();
    let b = node(data.path(), &db, "node-b", shared.path());
    migrate(&b);
    drop_file(shared.path(), "memo.txt", "会議は10時から\n".as_bytes());
    // A dead node's entry for a `memo.txt` with the same inode number but another change
    // time: the same name on a folder it alone saw (or a file put there since).
    let m = std::fs::metadata(shared.path().join("import/memo.txt")).unwrap();
    let entry = format!(
        r#"{{"source":"memo.txt","rel":"memo.txt","renames":[],"ino":{},"events":[]}}"#,
        m.ino()
    );
    db.psql(&format!(
        "INSERT INTO import_claims (pair, path, ino, size, mtime_ns, ctime_ns, node, lease_until, import_id, entry)
         VALUES ('soumu', 'memo.txt', {}, {}, {}, {}, 'node-elsewhere', now() - interval '1 second', 'Ielsewhere', '{entry}')",
        m.ino(),
        m.size(),
        m.mtime() * 1_000_000_000 + m.mtime_nsec(),
        m.ctime() * 1_000_000_000 + m.ctime_nsec() + 1,
    ));
    let rt = runtime();
    let node_b = support::start(&rt, b.clone(), "test");
    wait_exported(shared.path(), 2, 60);
    rt.block_on(node_b.stop("test"));
    // Not removed by the take-over: taken as a file of its own and exported.
    assert_eq!(
        files_under(&shared.path().join("export")),
        vec!["memo.txt", "memo.txt.無害化レポート.txt"]
    );
    assert_eq!(imports(&[data.path()])[0].get("memo.txt"), Some(&1));
    assert_eq!(
        db.psql("SELECT count(*) FROM import_claims WHERE done_at IS NOT NULL AND node = 'node-b'"),
        "2"
    );
}

#[test]
fn a_claim_taken_over_is_renewed_while_it_is_worked_on() {
    let (_db, c, _dir) = migrated();
    let dead = Claims::with_lease(&c.store, "node-dead", 1).unwrap();
    let x = dead.claim(&file("x.txt", 1)).unwrap().unwrap();
    let y = dead.claim(&file("y.txt", 1)).unwrap().unwrap();
    drop(dead);
    std::thread::sleep(Duration::from_millis(1500));
    let pairs = ["soumu".to_string()];
    // A lease of 2 s renewed every 0.5 s: room for a slow machine.
    let b = Claims::with_lease(&c.store, "node-b", 2).unwrap();
    let first = b.take_over(&pairs).unwrap().into_iter().next().unwrap();
    assert!(first.claim == x || first.claim == y);
    // B works on it for longer than two leases: it stays B's, the other node takes it not.
    std::thread::sleep(Duration::from_millis(5000));
    let c3 = Claims::with_lease(&c.store, "node-c", 1).unwrap();
    let by_c: Vec<i64> = c3
        .take_over(&pairs)
        .unwrap()
        .into_iter()
        .map(|t| t.claim)
        .collect();
    assert!(
        !by_c.contains(&first.claim),
        "taken over twice at once: {by_c:?}"
    );
}

#[test]
fn a_claim_whose_lease_ran_out_is_not_confirmed_for_a_destructive_step() {
    let (db, c, _dir) = migrated();
    let a = Claims::open(&c.store, "node-a").unwrap();
    let b = Claims::open(&c.store, "node-b").unwrap();
    let x = a.claim(&file("x.txt", 1)).unwrap().unwrap();
    a.confirm(x).unwrap();
    assert!(b.confirm(x).is_err(), "not B's");
    // A stalled past its lease: refused even before anyone took the claim over.
    db.psql("UPDATE import_claims SET lease_until = now() - interval '1 second'");
    assert!(a.confirm(x).is_err());
    let taken = b.take_over(&["soumu".to_string()]).unwrap().unwrap();
    assert_eq!(taken.claim, x);
    b.confirm(x).unwrap();
    assert!(a.confirm(x).is_err(), "now B's");
}

/// An importer of node `name` in this process, on the shared folders of `c`, claiming with
/// `claims`; `hook` as [`mukaika::source::import::Importer::with_hook`].
fn importer(
    c: &ServiceConfig,
    claims: Claims,
    hook: impl Fn(mukaika::source::import::HookPoint, &Path) + Send + Sync + 'static,
) -> mukaika::source::import::Importer {
    let registry = std::sync::Arc::new(mukaika::sanitizers::Registry::standard());
    let audit = std::sync::Arc::new(mukaika::store::open_audit(c).unwrap());
    let quarantine =
        mukaika::store::quarantine::open(c.data.dir.join("quarantine"), c.quarantine.store)
            .unwrap();
    mukaika::source::import::Importer::new(
        c.import.clone(),
        &c.data.dir,
        registry,
        audit,
        quarantine,
    )
    .with_claims(claims)
    .with_hook(hook)
}

#[test]
fn a_node_that_stalled_in_a_take_over_does_not_sweep_the_temporaries_of_a_newer_claim() {
    use std::sync::{Arc, Mutex};
    let shared = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let db = Arc::new(Database::new());
    let a = node(data.path(), &db, "node-a", shared.path());
    migrate(&a);
    drop_file(shared.path(), "memo.txt", "会議は10時から\n".as_bytes());
    let import = shared.path().join("import");
    let export = shared.path().join("export");
    std::fs::create_dir_all(&export).unwrap();
    // A dead node's claim on memo.txt: read (its import ID recorded), no ledger entry.
    let id = "Imemo00000000000000000000";
    db.psql(&format!(
        "INSERT INTO import_claims (pair, path, ino, size, mtime_ns, ctime_ns, node, lease_until, import_id)
         VALUES ({}, 'node-dead', now() - interval '1 second', '{id}')",
        identity_sql(&import, "memo.txt")
    ));
    // A takes it over and stalls there past its lease; meanwhile B takes it over and gives
    // the file back, and C claims it afresh and is writing its exports: the same import ID
    // (it is the file's), so the same tag on its temporary files.
    let newer = export.join(format!(".{id}.99.0.abcdef.tmp"));
    let fresh = Arc::new(Mutex::new(None));
    let hook = {
        let (db, store, fresh) = (Arc::clone(&db), a.store.clone(), Arc::clone(&fresh));
        let (newer, import) = (newer.clone(), import.clone());
        move |point, _: &Path| {
            if point != mukaika::source::import::HookPoint::TakenOver
                || fresh.lock().unwrap().is_some()
            {
                return;
            }
            db.psql("UPDATE import_claims SET lease_until = now() - interval '1 second'");
            let b = Claims::open(&store, "node-b").unwrap();
            let taken = b
                .take_over(&["soumu".to_string()])
                .unwrap()
                .into_iter()
                .next()
                .expect("B takes the stalled claim over");
            b.release(taken.claim).unwrap();
            let c = Claims::open(&store, "node-c").unwrap();
            let meta = std::fs::metadata(import.join("memo.txt")).unwrap();
            let claim = c
                .claim(&FileIdentity::of("soumu", "memo.txt", &meta))
                .unwrap()
                .expect("C claims the file afresh");
            c.set_import_id(claim, id).unwrap();
            std::fs::write(&newer, b"C's export being written").unwrap();
            *fresh.lock().unwrap() = Some(c);
        }
    };
    let a_node = importer(&a, Claims::open(&a.store, "node-a").unwrap(), hook);
    let summary = a_node.pass(&a.policy, false);
    assert!(fresh.lock().unwrap().is_some(), "the take-over was reached");
    assert!(newer.exists(), "A swept a file of C's claim: {summary:?}");
    assert!(import.join("memo.txt").exists());
    assert_eq!(
        db.psql("SELECT node FROM import_claims WHERE done_at IS NULL"),
        "node-c"
    );
}

#[test]
fn a_taken_over_entry_whose_exports_are_gone_keeps_the_original_and_exports_it_again() {
    use std::os::unix::fs::MetadataExt;
    let shared = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let db = Database::new();
    let b = node(data.path(), &db, "node-b", shared.path());
    migrate(&b);
    drop_file(shared.path(), "memo.txt", "会議は10時から\n".as_bytes());
    std::fs::create_dir_all(shared.path().join("export")).unwrap();
    // The entry of a node whose renames failed: its temporary exports were swept (by a node
    // that was too slow to know they were no longer its claim's), nothing renamed into place.
    let m = std::fs::metadata(shared.path().join("import/memo.txt")).unwrap();
    let entry = format!(
        r#"{{"source":"memo.txt","rel":"memo.txt","renames":[[".Igone0000000000000000000.7.0.aaaaaa.tmp","memo.txt"],[".Igone0000000000000000000.7.1.bbbbbb.tmp","memo.txt.無害化レポート.txt"]],"ino":{},"events":[]}}"#,
        m.ino()
    );
    db.psql(&format!(
        "INSERT INTO import_claims (pair, path, ino, size, mtime_ns, ctime_ns, node, lease_until, import_id, entry)
         VALUES ({}, 'node-failed', now() - interval '1 second', 'Igone0000000000000000000', '{entry}')",
        identity_sql(&shared.path().join("import"), "memo.txt")
    ));
    let rt = runtime();
    let node_b = support::start(&rt, b.clone(), "test");
    wait_exported(shared.path(), 2, 30);
    rt.block_on(node_b.stop("test"));
    assert_eq!(
        files_under(&shared.path().join("export")),
        vec!["memo.txt", "memo.txt.無害化レポート.txt"],
        "the original was removed with nothing exported"
    );
    assert_eq!(
        std::fs::read_to_string(shared.path().join("export/memo.txt")).unwrap(),
        "会議は10時から\n"
    );
    assert!(files_under(&shared.path().join("import")).is_empty());
    // The entry given back (its claim gone), the file claimed afresh and finished.
    assert_eq!(
        db.psql("SELECT node, done_at IS NOT NULL FROM import_claims"),
        "node-b|t"
    );
    assert_eq!(imports(&[data.path()])[0].get("memo.txt"), Some(&1));
    let kinds = support::audit_kinds(data.path());
    assert!(kinds.iter().any(|k| k == "import_failed"), "{kinds:?}");
}
