//! PostgreSQL: the database every node of a cluster shares (`[store] backend = "postgres"`).
//!
//! Owns: the connection (one per process, re-made when it breaks), TLS to the server (rustls
//! with the ring provider, trusting only `ca_file`), and the schema: numbered migrations
//! shipped in the binary, recorded in `schema_version`, applied only by `mukaika store
//! migrate` ([`Pg::migrate`]).
//! Invariants:
//! - A node never runs against a schema other than the one it was built for: newer means
//!   another node was upgraded first (this one must be too), older means `store migrate` has
//!   not run; [`Pg::open`] refuses both, before anything is read or written.
//! - Migrations run in one transaction under a transaction-level advisory lock, so two nodes
//!   migrating at once apply each step once, and a failed step leaves the schema as it was.
//! - A plain link is made only to a Unix socket or loopback, unless the configuration says
//!   `dangerous_plaintext`.
//!
//! Must never: log the connection string (it may hold a password), or be called from inside
//! an async task expecting it not to block (every call waits for the server).
//!
//! The client is `tokio-postgres`, driven by a private current-thread runtime on its own
//! thread: the callers (the review store) are synchronous and run on blocking threads, the
//! CLI and start-up code, and the async SMTP runtime alike, and none of them may start a
//! runtime inside theirs (as the synchronous `postgres` crate would). Queries are awaited on
//! the calling thread with [`block_on`]; only the socket's I/O runs on the private thread.

use std::future::Future;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake};

use crate::config::StoreSection;
use crate::error::{Error, Result};

/// The migrations this binary knows, in order: (version, what it does, SQL).
pub const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "accounts, login sessions and release requests",
        include_str!("migrations/postgres/0001_review.sql"),
    ),
    (
        2,
        "the nodes of the cluster and when each was last seen",
        include_str!("migrations/postgres/0002_nodes.sql"),
    ),
    (
        3,
        "the shared quarantine: items and content-addressed blobs in 1 MiB chunks",
        include_str!("migrations/postgres/0003_quarantine.sql"),
    ),
    (
        4,
        "a copy of every node's audit records",
        include_str!("migrations/postgres/0004_audit.sql"),
    ),
    (
        5,
        "import folder claims shared by the nodes on one folder",
        include_str!("migrations/postgres/0005_import_claims.sql"),
    ),
    (
        6,
        "release claims with a lease, the cluster's shared state, login throttles",
        include_str!("migrations/postgres/0006_release_claims.sql"),
    ),
];

/// How often a running node reports in (`mukaika selfcheck` counts a node seen within four of
/// these as running).
pub const NODE_HEARTBEAT_SECS: u64 = 30;

/// One node of the cluster as it last reported in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSeen {
    /// Its `[audit] node` name.
    pub name: String,
    /// The mukaika version it runs.
    pub version: String,
    /// Seconds since it last reported in (by the database's clock).
    pub seconds_ago: i64,
}

/// Approved releases not yet delivered ([`Pg::release_backlog`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseBacklog {
    /// How many.
    pub approved: i64,
    /// The nodes holding a live claim on one, comma-separated (empty: none).
    pub delivering: String,
    /// Seconds the oldest has waited since its approval.
    pub oldest_secs: i64,
}

/// The schema version this binary runs against.
pub fn latest_version() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.0)
}

/// A connection held from the pool ([`Pg::conn`]); derefs to the client.
pub struct Conn<'a>(MutexGuard<'a, Option<tokio_postgres::Client>>);

impl std::ops::Deref for Conn<'_> {
    type Target = tokio_postgres::Client;
    fn deref(&self) -> &tokio_postgres::Client {
        match self.0.as_ref() {
            Some(client) => client,
            // `Pg::conn` makes a Conn only around a connection, and nothing takes it out.
            None => unreachable!("a Conn always holds a connection"),
        }
    }
}

impl std::ops::DerefMut for Conn<'_> {
    fn deref_mut(&mut self) -> &mut tokio_postgres::Client {
        match self.0.as_mut() {
            Some(client) => client,
            None => unreachable!("a Conn always holds a connection"),
        }
    }
}

/// A job that runs on one node of the cluster at a time ([`Pg::one_at_a_time`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Job {
    /// Removing quarantine items past their retention.
    Retention,
    /// The administrators' notices of new quarantine items (and their watermark).
    AdminNotices,
}

impl Job {
    /// Its advisory lock: arbitrary constants, apart from [`MIGRATION_LOCK`].
    fn key(self) -> i64 {
        match self {
            Job::Retention => 0x6d75_6b61_7265_7431,
            Job::AdminNotices => 0x6d75_6b61_6e6f_7431,
        }
    }
}

/// An arbitrary constant naming the migration lock among advisory locks.
const MIGRATION_LOCK: i64 = 0x6d75_6b61_6d69_6731;

/// Waits for `f` on the calling thread (which parks between wake-ups). The futures of a
/// `tokio_postgres::Client` only talk to its connection task through channels, so they need
/// no runtime here; the connection itself runs on [`Pg`]'s own thread.
pub fn block_on<F: Future>(f: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Arc::new(Unpark(std::thread::current())).into();
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

/// How many connections one process keeps to the database: enough that a large quarantine
/// upload does not stall a login on the same node, few enough that dozens of nodes stay far
/// below the server's `max_connections`.
pub const POOL_SIZE: usize = 4;

/// A PostgreSQL database: a small pool of connections, each re-made on first use after it
/// broke.
pub struct Pg {
    config: tokio_postgres::Config,
    /// TLS to the server, when `ca_file` is set.
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
    /// The private runtime's handle: connections and their I/O run there.
    runtime: tokio::runtime::Handle,
    /// Ends the private runtime's thread when dropped.
    _stop: tokio::sync::oneshot::Sender<()>,
    clients: Vec<Mutex<Option<tokio_postgres::Client>>>,
    /// The connection that holds this process's advisory locks ([`Pg::one_at_a_time`]),
    /// apart from the pool so that a job holding a lock can use any pooled connection, with
    /// a count of how often it was (re)made: a lock taken on an earlier one is gone.
    locks: Mutex<(u64, Option<tokio_postgres::Client>)>,
    /// The jobs this process runs under an advisory lock now: session locks are re-entrant,
    /// so two threads of one process must be kept apart here.
    running: Mutex<Vec<Job>>,
    /// Where a caller that finds every connection busy waits (round robin).
    next: std::sync::atomic::AtomicUsize,
}

impl std::fmt::Debug for Pg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the connection string: it may hold a password.
        f.write_str("Pg")
    }
}

fn db_error(what: &str, e: tokio_postgres::Error) -> Error {
    Error::transient(format!("PostgreSQL: {what}")).with_source(e)
}

impl Pg {
    /// Connects to the database `store` names and checks that its schema is the one this
    /// binary knows.
    ///
    /// # Errors
    /// A bad section, an unreachable server, a schema older than this binary (run `mukaika
    /// store migrate`) or newer (upgrade this node).
    pub fn open(store: &StoreSection) -> Result<Pg> {
        let pg = Pg::connect(store)?;
        let version = pg.schema_version()?;
        let latest = latest_version();
        if version > latest {
            return Err(Error::config(format!(
                "PostgreSQL schema version {version} is newer than this mukaika knows ({latest}): \
                 another node was upgraded; upgrade this one too"
            )));
        }
        if version == latest && pg.missing_steps()? > 0 {
            return Err(Error::config(
                "PostgreSQL schema lacks a step this mukaika needs: run `mukaika store migrate \
                 --config FILE` first",
            ));
        }
        if version < latest {
            return Err(Error::config(format!(
                "PostgreSQL schema version {version}, this mukaika needs {latest}: run `mukaika \
                 store migrate --config FILE` first"
            )));
        }
        Ok(pg)
    }

    /// The database `store` names, opened once per process and shared by everything that
    /// uses it (the review store, the quarantine, the node's reports): one pool, one
    /// connection thread. Opened (and its schema checked, as [`Pg::open`]) on first use; a
    /// later call while it is in use returns the same one.
    ///
    /// # Errors
    /// As [`Pg::open`].
    pub fn shared(store: &StoreSection) -> Result<Arc<Pg>> {
        type Open = Vec<(
            (Option<String>, Option<std::path::PathBuf>),
            std::sync::Weak<Pg>,
        )>;
        static OPEN: Mutex<Open> = Mutex::new(Vec::new());
        let key = (store.url.clone(), store.ca_file.clone());
        let mut open = OPEN.lock().unwrap_or_else(|p| p.into_inner());
        open.retain(|(_, pg)| pg.strong_count() > 0);
        if let Some(pg) = open
            .iter()
            .find(|(k, _)| *k == key)
            .and_then(|(_, pg)| pg.upgrade())
        {
            return Ok(pg);
        }
        let pg = Arc::new(Pg::open(store)?);
        open.push((key, Arc::downgrade(&pg)));
        Ok(pg)
    }

    /// Connects without looking at the schema (for [`Pg::migrate`]).
    ///
    /// # Errors
    /// A bad section or an unreachable server.
    pub fn connect(store: &StoreSection) -> Result<Pg> {
        store.check().map_err(Error::config)?;
        let url = store.url.as_deref().unwrap_or_default();
        let mut config = tokio_postgres::Config::from_str(url)
            .map_err(|_| Error::config("store.url: not a PostgreSQL connection string"))?;
        if config.get_application_name().is_none() {
            config.application_name("mukaika");
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(std::time::Duration::from_secs(10));
        }
        // A dead server or a cut link is noticed, not waited on for ever.
        config.keepalives(true);
        config.keepalives_idle(std::time::Duration::from_secs(30));
        let tls = match &store.ca_file {
            Some(ca) => {
                config.ssl_mode(tokio_postgres::config::SslMode::Require);
                let client = crate::tls::client_config(ca)?;
                Some(tokio_postgres_rustls::MakeRustlsConnect::new(
                    Arc::unwrap_or_clone(client),
                ))
            }
            None => {
                config.ssl_mode(tokio_postgres::config::SslMode::Disable);
                None
            }
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| Error::io("PostgreSQL connection runtime", e))?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("mukaika-pg".into())
            .spawn(move || {
                // Runs the connections until the store is dropped (or the sender is).
                let _ = runtime.block_on(stopped);
            })
            .map_err(|e| Error::io("PostgreSQL connection thread", e))?;
        let pg = Pg {
            config,
            tls,
            runtime: handle,
            _stop: stop,
            clients: (0..POOL_SIZE).map(|_| Mutex::new(None)).collect(),
            locks: Mutex::new((0, None)),
            running: Mutex::new(Vec::new()),
            next: std::sync::atomic::AtomicUsize::new(0),
        };
        drop(pg.client()?);
        Ok(pg)
    }

    /// A connection of the pool — a free one if any, else the next in turn, waited for —
    /// made (again) when there is none or it broke. Held, it is the caller's alone: its
    /// statements and transactions do not interleave with anyone else's.
    ///
    /// # Errors
    /// The server cannot be reached or refuses the login.
    pub fn client(&self) -> Result<MutexGuard<'_, Option<tokio_postgres::Client>>> {
        use std::sync::TryLockError;
        // A caller that panicked left at most a connection in a transaction, which
        // tokio-postgres rolls back when the transaction is dropped: the slot is usable.
        let free = self.clients.iter().find_map(|slot| match slot.try_lock() {
            Ok(guard) => Some(guard),
            Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        });
        let mut guard = match free {
            Some(guard) => guard,
            None => {
                let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.clients[n % self.clients.len()]
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
            }
        };
        if guard.as_ref().is_none_or(|c| c.is_closed()) {
            *guard = None;
            *guard = Some(self.connect_client()?);
        }
        Ok(guard)
    }

    /// A new connection, its I/O driven on the private runtime.
    fn connect_client(&self) -> Result<tokio_postgres::Client> {
        let config = self.config.clone();
        let tls = self.tls.clone();
        let task = self.runtime.spawn(async move {
            let client = match tls {
                Some(tls) => {
                    let (client, connection) = config.connect(tls).await?;
                    tokio::spawn(async move {
                        if let Err(e) = connection.await {
                            tracing::warn!(error = %e, "PostgreSQL connection ended");
                        }
                    });
                    client
                }
                None => {
                    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
                    tokio::spawn(async move {
                        if let Err(e) = connection.await {
                            tracing::warn!(error = %e, "PostgreSQL connection ended");
                        }
                    });
                    client
                }
            };
            Ok::<_, tokio_postgres::Error>(client)
        });
        block_on(task)
            .map_err(|_| Error::transient("PostgreSQL: the connection task failed"))?
            .map_err(|e| db_error("connect", e))
    }

    /// Runs `f` on the private runtime and waits for it: for I/O that needs a tokio reactor
    /// (an SMTP hand-off) from a caller that has none, or must not block its own.
    ///
    /// # Errors
    /// The task panicked or the runtime is gone.
    pub fn run<F>(&self, f: F) -> Result<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        block_on(self.runtime.spawn(f))
            .map_err(|_| Error::transient("PostgreSQL runtime: the task failed"))
    }

    /// Runs `f` if no other process of the cluster (and no other thread of this one) is
    /// running `job`, under a session-level advisory lock held on a connection of its own;
    /// `None` when another holds it. The lock goes with its connection: if that breaks while
    /// `f` runs, another node may start the job too, so jobs run this way must tolerate a
    /// rare overlap (retention removes what is already gone as nothing; the notice pass
    /// moves its watermark only forward).
    ///
    /// # Errors
    /// The lock cannot be asked for (the database is unreachable): `f` did not run.
    pub fn one_at_a_time<T>(&self, job: Job, f: impl FnOnce() -> T) -> Result<Option<T>> {
        {
            let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
            if running.contains(&job) {
                return Ok(None);
            }
            running.push(job);
        }
        struct Done<'a>(&'a Mutex<Vec<Job>>, Job);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                self.0
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .retain(|j| *j != self.1);
            }
        }
        let _done = Done(&self.running, job);
        let key = job.key();
        let generation = {
            let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            if locks.1.as_ref().is_none_or(|c| c.is_closed()) {
                locks.1 = Some(self.connect_client()?);
                locks.0 += 1;
            }
            let client = locks
                .1
                .as_ref()
                .ok_or_else(|| Error::transient("PostgreSQL: no connection"))?;
            let got: bool = block_on(client.query_one("SELECT pg_try_advisory_lock($1)", &[&key]))
                .and_then(|r| r.try_get(0))
                .map_err(|e| db_error("take an advisory lock", e))?;
            if !got {
                return Ok(None);
            }
            locks.0
        };
        let out = f();
        let locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        match locks.1.as_ref() {
            Some(client) if locks.0 == generation && !client.is_closed() => {
                if let Err(e) = block_on(client.execute("SELECT pg_advisory_unlock($1)", &[&key])) {
                    // The connection broke: the server dropped the lock with it.
                    tracing::warn!(job = ?job, error = %e, "advisory lock not released; gone with its connection");
                }
            }
            _ => {
                tracing::warn!(job = ?job, "the advisory lock's connection broke while the job ran: another node may have run it too")
            }
        }
        Ok(Some(out))
    }

    /// A value the cluster keeps once for all nodes (`None`: never set).
    ///
    /// # Errors
    /// The server cannot be reached or read.
    pub fn state(&self, name: &str) -> Result<Option<String>> {
        let client = self.conn()?;
        block_on(client.query_opt("SELECT value FROM cluster_state WHERE name = $1", &[&name]))
            .and_then(|r| r.map(|r| r.try_get(0)).transpose())
            .map_err(|e| db_error("read the cluster state", e))
    }

    /// Sets a value the cluster keeps once for all nodes, naming the node that set it.
    ///
    /// # Errors
    /// The server cannot be reached or written.
    pub fn set_state(&self, name: &str, value: &str, node: &str) -> Result<()> {
        let client = self.conn()?;
        block_on(client.execute(
            "INSERT INTO cluster_state (name, value, updated_by) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE
             SET value = EXCLUDED.value, updated_by = EXCLUDED.updated_by, updated_at = now()",
            &[&name, &value, &node],
        ))
        .map(|_| ())
        .map_err(|e| db_error("write the cluster state", e))
    }

    /// A connection of the pool, as [`Pg::client`], ready to use: a caller needs no check of
    /// its own that one was made.
    ///
    /// # Errors
    /// The server cannot be reached or refuses the login.
    pub fn conn(&self) -> Result<Conn<'_>> {
        let guard = self.client()?;
        if guard.is_none() {
            return Err(Error::transient("PostgreSQL: no connection"));
        }
        Ok(Conn(guard))
    }

    /// The schema version recorded in the database (0: none yet).
    ///
    /// # Errors
    /// The server cannot be reached or read.
    pub fn schema_version(&self) -> Result<i64> {
        let client = self.conn()?;
        let exists: bool =
            block_on(client.query_one("SELECT to_regclass('schema_version') IS NOT NULL", &[]))
                .and_then(|r| r.try_get(0))
                .map_err(|e| db_error("read the schema version", e))?;
        if !exists {
            return Ok(0);
        }
        block_on(client.query_one(
            "SELECT COALESCE(MAX(version), 0)::BIGINT FROM schema_version",
            &[],
        ))
        .and_then(|r| r.try_get(0))
        .map_err(|e| db_error("read the schema version", e))
    }

    /// How many of this binary's migrations the database has not recorded.
    ///
    /// # Errors
    /// The server cannot be reached or read.
    pub fn missing_steps(&self) -> Result<usize> {
        let client = self.conn()?;
        let known: Vec<i64> = MIGRATIONS.iter().map(|m| m.0).collect();
        let n: i64 = block_on(client.query_one(
            "SELECT count(*) FROM schema_version WHERE version = ANY($1)",
            &[&known],
        ))
        .and_then(|r| r.try_get(0))
        .map_err(|e| db_error("read the schema version", e))?;
        Ok(known.len().saturating_sub(usize::try_from(n).unwrap_or(0)))
    }

    /// Whether the link to the server is TLS (a `ca_file` is set).
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Reports this node in: its name and version, seen now.
    ///
    /// # Errors
    /// The server cannot be reached or written.
    pub fn heartbeat(&self, node: &str, version: &str) -> Result<()> {
        let client = self.conn()?;
        block_on(client.execute(
            "INSERT INTO nodes (name, version, last_seen) VALUES ($1, $2, now())
             ON CONFLICT (name) DO UPDATE SET version = EXCLUDED.version, last_seen = now()",
            &[&node, &version],
        ))
        .map(|_| ())
        .map_err(|e| db_error("report this node in", e))
    }

    /// Approved releases not yet delivered: how many, the nodes delivering some now (a live
    /// claim), and how long the oldest has waited since its approval (seconds).
    ///
    /// # Errors
    /// The server cannot be reached or read.
    pub fn release_backlog(&self) -> Result<ReleaseBacklog> {
        let client = self.conn()?;
        let row = block_on(client.query_one(
            "SELECT count(*),
                    COALESCE(string_agg(DISTINCT claimed_by, ', ')
                        FILTER (WHERE claim_token IS NOT NULL AND claim_until > now()), ''),
                    COALESCE(MAX(EXTRACT(EPOCH FROM (now() - decided_at::timestamptz)))::BIGINT, 0)
             FROM requests WHERE state = 'approved'",
            &[],
        ))
        .map_err(|e| db_error("read the approved releases", e))?;
        let read = |e| db_error("read the approved releases", e);
        Ok(ReleaseBacklog {
            approved: row.try_get(0).map_err(read)?,
            delivering: row.try_get(1).map_err(read)?,
            oldest_secs: row.try_get(2).map_err(read)?,
        })
    }

    /// Every node that ever reported in, most recently seen first.
    ///
    /// # Errors
    /// The server cannot be reached or read.
    pub fn nodes(&self) -> Result<Vec<NodeSeen>> {
        let client = self.conn()?;
        let rows = block_on(client.query(
            "SELECT name, version,
                    EXTRACT(EPOCH FROM (now() - last_seen))::BIGINT
             FROM nodes ORDER BY last_seen DESC",
            &[],
        ))
        .map_err(|e| db_error("read the nodes", e))?;
        rows.iter()
            .map(|r| {
                Ok(NodeSeen {
                    name: r.try_get(0)?,
                    version: r.try_get(1)?,
                    seconds_ago: r.try_get(2)?,
                })
            })
            .collect::<std::result::Result<_, tokio_postgres::Error>>()
            .map_err(|e| db_error("read the nodes", e))
    }

    /// Applies the migrations the database lacks, in one transaction; returns the versions
    /// before and after.
    ///
    /// # Errors
    /// The server cannot be reached or a step fails (nothing is applied), or the schema is
    /// newer than this binary knows.
    pub fn migrate(&self) -> Result<(i64, i64)> {
        let mut client = self.conn()?;
        let tx = block_on(client.transaction()).map_err(|e| db_error("begin", e))?;
        block_on(tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]))
            .map_err(|e| db_error("take the migration lock", e))?;
        block_on(tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_version (
                 version BIGINT PRIMARY KEY,
                 description TEXT NOT NULL,
                 applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
             )",
        ))
        .map_err(|e| db_error("create schema_version", e))?;
        let before: i64 = block_on(tx.query_one(
            "SELECT COALESCE(MAX(version), 0)::BIGINT FROM schema_version",
            &[],
        ))
        .and_then(|r| r.try_get(0))
        .map_err(|e| db_error("read the schema version", e))?;
        let latest = latest_version();
        if before > latest {
            return Err(Error::config(format!(
                "PostgreSQL schema version {before} is newer than this mukaika knows ({latest})"
            )));
        }
        // Every step not recorded yet, not only those above the highest: a database brought
        // up by a build that lacked a step in the middle gets it too.
        let applied: Vec<i64> = block_on(tx.query("SELECT version FROM schema_version", &[]))
            .map_err(|e| db_error("read the schema version", e))?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| db_error("read the schema version", e))?;
        for (version, description, sql) in MIGRATIONS.iter().filter(|m| !applied.contains(&m.0)) {
            block_on(tx.batch_execute(sql))
                .map_err(|e| db_error(&format!("migration {version}"), e))?;
            block_on(tx.execute(
                "INSERT INTO schema_version (version, description) VALUES ($1, $2)",
                &[version, description],
            ))
            .map_err(|e| db_error("record the schema version", e))?;
            tracing::info!(version, description, "PostgreSQL schema migrated");
        }
        block_on(tx.commit()).map_err(|e| db_error("commit the migration", e))?;
        Ok((before, latest))
    }
}
