//! The review store's seam: one SQL text run against SQLite (`review.db`, one node) or a
//! shared PostgreSQL (every node of a cluster), chosen by `[store] backend`.
//!
//! Owns: the two connections, the translation of the one dialect the review code writes
//! (`?N` parameters, `"user"` quoted, BIGINT-sized integers, no backend-only functions) to
//! PostgreSQL's `$N`, typed values both ways, and write transactions that exclude each other
//! on the tables named — `BEGIN IMMEDIATE` on SQLite, `LOCK TABLE … IN SHARE ROW EXCLUSIVE
//! MODE` on PostgreSQL, where the other writers may be other nodes.
//! Invariants: every statement of one caller runs on the connection it holds for the call
//! (one per process, behind a mutex), so a transaction is never interleaved with another
//! caller's statements; a transaction that returns an error or unwinds is rolled back.
//! Must never: put a value into SQL text (only parameters), or hide which backend failed.

use std::sync::{Arc, Mutex};

use crate::store::postgres::{block_on, Pg};

use super::ReviewError;

/// A parameter.
#[derive(Debug, Clone, Copy)]
pub(crate) enum V<'a> {
    /// An integer (SQLite INTEGER, PostgreSQL BIGINT).
    I(i64),
    /// Text.
    T(&'a str),
    /// Text or NULL.
    OT(Option<&'a str>),
}

/// A value read back.
#[derive(Debug, Clone)]
enum Cell {
    Null,
    I(i64),
    T(String),
}

/// A row read back, with typed getters that fail (rather than guess) on a surprise.
#[derive(Debug, Clone)]
pub(crate) struct Row(Vec<Cell>);

fn surprise(n: usize, want: &str) -> ReviewError {
    ReviewError::internal(format!("review database: column {n} is not {want}"))
}

impl Row {
    /// An integer column.
    pub(crate) fn i(&self, n: usize) -> Result<i64, ReviewError> {
        match self.0.get(n) {
            Some(Cell::I(v)) => Ok(*v),
            _ => Err(surprise(n, "an integer")),
        }
    }

    /// An integer column or NULL.
    pub(crate) fn oi(&self, n: usize) -> Result<Option<i64>, ReviewError> {
        match self.0.get(n) {
            Some(Cell::I(v)) => Ok(Some(*v)),
            Some(Cell::Null) => Ok(None),
            _ => Err(surprise(n, "an integer")),
        }
    }

    /// A text column.
    pub(crate) fn t(&self, n: usize) -> Result<String, ReviewError> {
        match self.0.get(n) {
            Some(Cell::T(v)) => Ok(v.clone()),
            _ => Err(surprise(n, "text")),
        }
    }

    /// A text column or NULL.
    pub(crate) fn ot(&self, n: usize) -> Result<Option<String>, ReviewError> {
        match self.0.get(n) {
            Some(Cell::T(v)) => Ok(Some(v.clone())),
            Some(Cell::Null) => Ok(None),
            _ => Err(surprise(n, "text")),
        }
    }
}

/// What a statement runs on: a connection, or a transaction on one.
pub(crate) trait Sql {
    /// Runs a statement; the rows it changed.
    fn exec(&self, sql: &str, params: &[V<'_>]) -> Result<u64, ReviewError>;
    /// Runs a query; its rows.
    fn rows(&self, sql: &str, params: &[V<'_>]) -> Result<Vec<Row>, ReviewError>;
    /// Runs a query; its first row, if any.
    fn row(&self, sql: &str, params: &[V<'_>]) -> Result<Option<Row>, ReviewError> {
        Ok(self.rows(sql, params)?.into_iter().next())
    }
}

fn sqlite_error(e: rusqlite::Error) -> ReviewError {
    ReviewError::internal(format!("review database: {e}"))
}

fn pg_error(e: tokio_postgres::Error) -> ReviewError {
    // The server's own message (constraint, connection) is what an operator needs.
    let detail = e
        .as_db_error()
        .map_or_else(|| e.to_string(), |d| d.message().to_string());
    ReviewError::internal(format!("review database (PostgreSQL): {detail}"))
}

impl rusqlite::ToSql for V<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        match self {
            V::I(v) => v.to_sql(),
            V::T(v) => v.to_sql(),
            V::OT(v) => v.to_sql(),
        }
    }
}

impl Sql for rusqlite::Connection {
    fn exec(&self, sql: &str, params: &[V<'_>]) -> Result<u64, ReviewError> {
        self.execute(sql, rusqlite::params_from_iter(params.iter()))
            .map(|n| n as u64)
            .map_err(sqlite_error)
    }

    fn rows(&self, sql: &str, params: &[V<'_>]) -> Result<Vec<Row>, ReviewError> {
        let mut stmt = self.prepare(sql).map_err(sqlite_error)?;
        let columns = stmt.column_count();
        let rows = stmt
            .query_map(rusqlite::params_from_iter(params.iter()), |r| {
                let mut cells = Vec::with_capacity(columns);
                for n in 0..columns {
                    use rusqlite::types::ValueRef;
                    cells.push(match r.get_ref(n)? {
                        ValueRef::Null => Cell::Null,
                        ValueRef::Integer(v) => Cell::I(v),
                        ValueRef::Real(v) => Cell::I(v as i64),
                        ValueRef::Text(t) | ValueRef::Blob(t) => {
                            Cell::T(String::from_utf8_lossy(t).into_owned())
                        }
                    });
                }
                Ok(Row(cells))
            })
            .map_err(sqlite_error)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(sqlite_error)?;
        Ok(rows)
    }
}

impl tokio_postgres::types::ToSql for V<'_> {
    fn to_sql(
        &self,
        ty: &tokio_postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        use tokio_postgres::types::Type;
        match self {
            V::I(v) if *ty == Type::INT4 => i32::try_from(*v)?.to_sql(ty, out),
            V::I(v) if *ty == Type::BOOL => (*v != 0).to_sql(ty, out),
            V::I(v) => v.to_sql(ty, out),
            V::T(v) => v.to_sql(ty, out),
            V::OT(v) => v.to_sql(ty, out),
        }
    }

    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        use tokio_postgres::types::Type;
        <i64 as tokio_postgres::types::ToSql>::accepts(ty)
            || *ty == Type::INT4
            || *ty == Type::BOOL
            || <&str as tokio_postgres::types::ToSql>::accepts(ty)
    }

    tokio_postgres::types::to_sql_checked!();
}

/// `?N` → `$N` (the review code writes SQLite's numbered parameters; no literal in it holds a
/// question mark).
fn dollar(sql: &str) -> String {
    sql.replace('?', "$")
}

fn pg_row(r: &tokio_postgres::Row) -> Result<Row, ReviewError> {
    use tokio_postgres::types::Type;
    let mut cells = Vec::with_capacity(r.len());
    for (n, column) in r.columns().iter().enumerate() {
        let ty = column.type_();
        let cell = if *ty == Type::INT8 {
            r.try_get::<_, Option<i64>>(n).map(|v| v.map(Cell::I))
        } else if *ty == Type::INT4 {
            r.try_get::<_, Option<i32>>(n)
                .map(|v| v.map(|v| Cell::I(i64::from(v))))
        } else if *ty == Type::INT2 {
            r.try_get::<_, Option<i16>>(n)
                .map(|v| v.map(|v| Cell::I(i64::from(v))))
        } else if *ty == Type::BOOL {
            r.try_get::<_, Option<bool>>(n)
                .map(|v| v.map(|v| Cell::I(i64::from(v))))
        } else {
            r.try_get::<_, Option<String>>(n).map(|v| v.map(Cell::T))
        }
        .map_err(pg_error)?;
        cells.push(cell.unwrap_or(Cell::Null));
    }
    Ok(Row(cells))
}

fn pg_params<'a>(params: &'a [V<'a>]) -> Vec<&'a (dyn tokio_postgres::types::ToSql + Sync)> {
    params
        .iter()
        .map(|p| p as &(dyn tokio_postgres::types::ToSql + Sync))
        .collect()
}

/// A PostgreSQL connection or transaction.
struct PgSql<'a, C: tokio_postgres::GenericClient>(&'a C);

impl<C: tokio_postgres::GenericClient + Sync> Sql for PgSql<'_, C> {
    fn exec(&self, sql: &str, params: &[V<'_>]) -> Result<u64, ReviewError> {
        block_on(self.0.execute(dollar(sql).as_str(), &pg_params(params))).map_err(pg_error)
    }

    fn rows(&self, sql: &str, params: &[V<'_>]) -> Result<Vec<Row>, ReviewError> {
        block_on(self.0.query(dollar(sql).as_str(), &pg_params(params)))
            .map_err(pg_error)?
            .iter()
            .map(pg_row)
            .collect()
    }
}

/// The review store's database.
pub(crate) enum Db {
    /// `review.db` under the data directory.
    Sqlite(Mutex<rusqlite::Connection>),
    /// The cluster's shared database.
    Postgres(Arc<Pg>),
}

impl Db {
    /// Runs `f` on the connection, held for the whole call.
    pub(crate) fn with<T>(
        &self,
        f: impl FnOnce(&dyn Sql) -> Result<T, ReviewError>,
    ) -> Result<T, ReviewError> {
        match self {
            Db::Sqlite(db) => {
                let db = db
                    .lock()
                    .map_err(|_| ReviewError::internal("review database lock poisoned"))?;
                f(&*db)
            }
            Db::Postgres(pg) => {
                let client = pg.conn().map_err(ReviewError::internal)?;
                f(&PgSql(&*client))
            }
        }
    }

    /// Runs `f` in a transaction that excludes every other writer of `tables` (on any node)
    /// until it ends; commits when `f` returns `Ok`, rolls back otherwise.
    pub(crate) fn write<T>(
        &self,
        tables: &[&str],
        f: impl FnOnce(&dyn Sql) -> Result<T, ReviewError>,
    ) -> Result<T, ReviewError> {
        match self {
            Db::Sqlite(db) => {
                let mut db = db
                    .lock()
                    .map_err(|_| ReviewError::internal("review database lock poisoned"))?;
                // IMMEDIATE takes SQLite's one write lock now: all tables at once.
                let tx = db
                    .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                    .map_err(sqlite_error)?;
                let out = f(&*tx)?;
                tx.commit().map_err(sqlite_error)?;
                Ok(out)
            }
            Db::Postgres(pg) => {
                let mut client = pg.conn().map_err(ReviewError::internal)?;
                let tx = block_on(client.transaction()).map_err(pg_error)?;
                for table in tables {
                    // SHARE ROW EXCLUSIVE conflicts with itself and with every write: as
                    // SQLite's IMMEDIATE, readers go on and other writers wait.
                    block_on(
                        tx.batch_execute(&format!(
                            "LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE"
                        )),
                    )
                    .map_err(pg_error)?;
                }
                let out = f(&PgSql(&tx))?;
                block_on(tx.commit()).map_err(pg_error)?;
                Ok(out)
            }
        }
    }
}
