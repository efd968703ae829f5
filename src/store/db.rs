//! `Db`: a connection to the database that only `store` can speak SQL on. Everything else
//! holds one (a pooled reader, the writer's connection) and passes it to the typed
//! functions of `store`, so the SQL of perch lives in this module and nowhere else (the
//! tidy test keeps it so).

use rusqlite::{CachedStatement, Connection, Params, Row, Statement};

use super::StoreError;

pub struct Db(Connection);

/// Prepared statements kept per connection (rusqlite's default is 16; the writer alone
/// runs more than that per commit).
const STATEMENT_CACHE: usize = 64;

impl Db {
    pub(super) fn new(conn: Connection) -> Db {
        // Every statement perch runs is a fixed string, and there are a few dozen of them.
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Db(conn)
    }

    pub(super) fn raw(&self) -> &Connection {
        &self.0
    }

    /// Prepared once per connection and kept (parsing a statement costs about as much as
    /// running a small one).
    pub(super) fn execute<P: Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize> {
        self.0.prepare_cached(sql)?.execute(params)
    }

    pub(super) fn execute_batch(&self, sql: &str) -> rusqlite::Result<()> {
        self.0.execute_batch(sql)
    }

    pub(super) fn query_row<T, P, F>(&self, sql: &str, params: P, f: F) -> rusqlite::Result<T>
    where
        P: Params,
        F: FnOnce(&Row<'_>) -> rusqlite::Result<T>,
    {
        self.0.prepare_cached(sql)?.query_row(params, f)
    }

    /// One statement without parameters or rows (transaction control), prepared once.
    fn control(&self, sql: &str) -> rusqlite::Result<()> {
        self.0.prepare_cached(sql)?.execute([]).map(|_| ())
    }

    pub(super) fn prepare(&self, sql: &str) -> rusqlite::Result<Statement<'_>> {
        self.0.prepare(sql)
    }

    pub(super) fn prepare_cached(&self, sql: &str) -> rusqlite::Result<CachedStatement<'_>> {
        self.0.prepare_cached(sql)
    }

    /// The database answers at all (the watchdog's probe).
    pub fn ping(&self) -> Result<(), StoreError> {
        self.query_row("SELECT 1", [], |_| Ok(()))?;
        Ok(())
    }

    /// Starts the writer's transaction: immediate, so a group of jobs never waits for the
    /// write lock halfway through.
    pub fn begin_write(&self) -> Result<(), StoreError> {
        Ok(self.control("BEGIN IMMEDIATE")?)
    }

    pub fn commit(&self) -> Result<(), StoreError> {
        Ok(self.control("COMMIT")?)
    }

    /// Abandons the open transaction (a no-op when SQLite has already rolled it back).
    pub fn rollback(&self) {
        if !self.0.is_autocommit() {
            let _ = self.execute_batch("ROLLBACK");
        }
    }

    /// Runs `f` in a savepoint: its changes stay when it succeeds and are undone alone when
    /// it fails, so one failed job does not undo the others of its transaction.
    pub fn savepoint<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&Db) -> Result<T, E>,
    ) -> Result<T, E> {
        self.control("SAVEPOINT job").map_err(StoreError::from)?;
        match f(self) {
            Ok(v) => {
                self.control("RELEASE job").map_err(StoreError::from)?;
                Ok(v)
            }
            Err(e) => {
                let _ = self.execute_batch("ROLLBACK TO job; RELEASE job");
                Err(e)
            }
        }
    }

    /// A read transaction until the guard is dropped, so every query through it sees the
    /// same committed state while the writer goes on (an export read twice, say).
    pub fn begin_read(&self) -> Result<ReadTxn<'_>, StoreError> {
        self.execute_batch("BEGIN DEFERRED")?;
        Ok(ReadTxn(self))
    }

    /// Closes the connection, reporting what SQLite says (dropping it would not).
    pub fn close(self) -> Result<(), StoreError> {
        self.0.close().map_err(|(_, e)| StoreError::Sqlite(e))
    }
}

/// An open read transaction (see [`Db::begin_read`]); ends when dropped.
pub struct ReadTxn<'a>(&'a Db);

impl std::ops::Deref for ReadTxn<'_> {
    type Target = Db;
    fn deref(&self) -> &Db {
        self.0
    }
}

impl Drop for ReadTxn<'_> {
    fn drop(&mut self) {
        let _ = self.0.execute_batch("COMMIT");
    }
}
