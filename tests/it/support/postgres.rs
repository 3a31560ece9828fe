//! A private, real PostgreSQL for the cluster tests: Debian's server binaries
//! (`/usr/lib/postgresql/15/bin`, installed by tests/ci.sh), never the system cluster. One
//! server runs while any test holds it: `initdb` into a temporary folder owned by the
//! `postgres` user (we may run as root, which initdb refuses), listening on a Unix socket in
//! that folder and on 127.0.0.1 at a free port (TLS offered there, with a self-signed
//! certificate for `localhost`), trust authentication, fsync off. Each test gets its own
//! database; the server stops (`pg_ctl stop`) when the last holder drops it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, Weak};

const BIN: &str = "/usr/lib/postgresql/15/bin";

/// The running server.
pub struct Server {
    dir: tempfile::TempDir,
    port: u16,
}

fn as_postgres(program: &str) -> Command {
    let path = format!("{BIN}/{program}");
    if rustix::process::geteuid().is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", &path]);
        c
    } else {
        Command::new(path)
    }
}

fn run(mut c: Command, what: &str) {
    let out = c.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Server {
    /// A server of its own (for a test that restarts it); most tests share [`server`].
    pub fn start() -> Server {
        assert!(
            Path::new(BIN).join("initdb").exists(),
            "PostgreSQL 15 server binaries missing: tests/ci.sh installs Debian's postgresql"
        );
        let dir = tempfile::Builder::new()
            .prefix("mukaika-pg-")
            .tempdir()
            .unwrap();
        // The server's certificate, which the TLS test trusts as its own CA.
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        std::fs::write(dir.path().join("server.crt"), cert.cert.pem()).unwrap();
        let key = dir.path().join("server.key");
        std::fs::write(&key, cert.signing_key.serialize_pem()).unwrap();
        std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        if rustix::process::geteuid().is_root() {
            let out = Command::new("chown")
                .args(["-R", "postgres:postgres", dir.path().to_str().unwrap()])
                .output()
                .unwrap();
            assert!(out.status.success(), "chown: {out:?}");
        }
        let data = dir.path().join("data");
        let mut init = as_postgres("initdb");
        init.args(["-D", data.to_str().unwrap()])
            .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C"])
            .arg("--no-sync");
        run(init, "initdb");
        let port = super::free_port();
        let mut ctl = as_postgres("pg_ctl");
        ctl.args(["-D", data.to_str().unwrap()])
            .args(["-l", dir.path().join("log").to_str().unwrap()])
            .args(["-w", "-t", "60", "-o"])
            .arg(format!(
                "-k {dir} -p {port} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200 \
                 -c ssl=on -c ssl_cert_file={dir}/server.crt -c ssl_key_file={dir}/server.key",
                dir = dir.path().display()
            ))
            .arg("start");
        run(ctl, "pg_ctl start");
        Server { dir, port }
    }

    /// The Unix socket folder.
    pub fn socket_dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// Restarts it (fast shutdown: every client's connection is cut).
    pub fn restart(&self) {
        let mut ctl = as_postgres("pg_ctl");
        ctl.args(["-D", self.dir.path().join("data").to_str().unwrap()])
            // A log file, or the postmaster would hold our output pipe open.
            .args(["-l", self.dir.path().join("log").to_str().unwrap()])
            .args(["-m", "fast", "-w", "-t", "60", "restart"]);
        run(ctl, "pg_ctl restart");
    }

    /// The server's certificate (self-signed for `localhost`: its own CA).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("server.crt")
    }

    /// The loopback port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Runs SQL as the superuser in `db`.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = Command::new("/usr/bin/psql")
            .args(["-h", self.dir.path().to_str().unwrap()])
            .args(["-p", &self.port.to_string(), "-U", "postgres", "-d", db])
            .args(["-v", "ON_ERROR_STOP=1", "-Atq", "-c", sql])
            .output()
            .unwrap();
        assert!(out.status.success(), "psql {sql}: {out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let mut ctl = as_postgres("pg_ctl");
        ctl.args(["-D", self.dir.path().join("data").to_str().unwrap()])
            .args(["-m", "immediate", "-w", "stop"]);
        let _ = ctl.output();
    }
}

/// The server, started when no test holds it.
pub fn server() -> Arc<Server> {
    static SERVER: Mutex<Weak<Server>> = Mutex::new(Weak::new());
    let mut slot = SERVER.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(s) = slot.upgrade() {
        return s;
    }
    let s = Arc::new(Server::start());
    *slot = Arc::downgrade(&s);
    s
}

/// A fresh database on the private server, kept until dropped with the test.
pub struct Database {
    pub server: Arc<Server>,
    pub name: String,
}

impl Database {
    /// A new empty database.
    pub fn new() -> Database {
        Database::on(server())
    }

    /// A new empty database on `server`.
    pub fn on(server: Arc<Server>) -> Database {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let name = format!(
            "t{}_{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        server.psql("postgres", &format!("CREATE DATABASE {name}"));
        Database { server, name }
    }

    /// Its connection string over the Unix socket.
    pub fn url(&self) -> String {
        format!(
            "host={} port={} user=postgres dbname={}",
            self.server.socket_dir().display(),
            self.server.port(),
            self.name
        )
    }

    /// Its connection string over TCP to `localhost` (where TLS is offered).
    pub fn tcp_url(&self) -> String {
        format!(
            "host=localhost port={} user=postgres dbname={}",
            self.server.port(),
            self.name
        )
    }

    /// Runs SQL in it.
    pub fn psql(&self, sql: &str) -> String {
        self.server.psql(&self.name, sql)
    }

    /// `config` pointed at this database (after `store migrate`, when `migrate`).
    pub fn configure(&self, config: &mut mukaika::config::ServiceConfig) {
        config.store.backend = mukaika::config::StoreBackend::Postgres;
        config.store.url = Some(self.url());
    }
}

/// Brings the database's schema up to date, as `mukaika store migrate` does.
pub fn migrate(config: &mukaika::config::ServiceConfig) {
    mukaika::store::postgres::Pg::connect(&config.store)
        .unwrap()
        .migrate()
        .unwrap();
}
