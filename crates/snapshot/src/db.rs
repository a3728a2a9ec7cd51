//! The embedded metadata database (`<state>/metadata.db`).
//!
//! SQLite in WAL mode with a long busy timeout: readers never block writers, and a second
//! process that wants the write lock waits for it instead of failing with "database is locked".
//! Every write is an IMMEDIATE transaction so the write lock is taken up front; a deferred
//! transaction that upgrades from read to write can fail with SQLITE_BUSY without waiting.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{Connection, Transaction, TransactionBehavior};

/// A failure of the metadata database.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DatabaseError {
    /// SQLite reported an error.
    #[error("metadata database {path}: {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: rusqlite::Error,
    },
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS snapshots (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    parent INTEGER REFERENCES snapshots(id),
    kind TEXT NOT NULL,
    backend TEXT NOT NULL,
    size INTEGER,
    created INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS images (
    name TEXT PRIMARY KEY,
    digest TEXT NOT NULL,
    descriptor TEXT NOT NULL,
    created INTEGER NOT NULL,
    updated INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS leases (
    id TEXT PRIMARY KEY,
    created INTEGER NOT NULL,
    expires INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS lease_resources (
    lease TEXT NOT NULL REFERENCES leases(id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    resource TEXT NOT NULL,
    PRIMARY KEY (lease, kind, resource)
);
CREATE TABLE IF NOT EXISTS settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
";

/// How long a process waits for another one's write transaction before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(600);

pub(crate) struct Db {
    path: PathBuf,
    conn: Mutex<Connection>,
}

impl Db {
    pub(crate) fn open(path: &Path) -> Result<Db, DatabaseError> {
        let err = |source| DatabaseError::Sqlite {
            path: path.to_owned(),
            source,
        };
        let conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(err)?;
        enable_wal(&conn, BUSY_TIMEOUT).map_err(err)?;
        // WAL with synchronous=FULL: a committed transaction survives power loss.
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(err)?;
        let db = Db {
            path: path.to_owned(),
            conn: Mutex::new(conn),
        };
        db.write(|tx| tx.execute_batch(SCHEMA))?;
        Ok(db)
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (the transaction rolls back).
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn err(&self, source: rusqlite::Error) -> DatabaseError {
        DatabaseError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// Runs `f` in an IMMEDIATE transaction, committing when it returns `Ok`.
    pub(crate) fn write<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> rusqlite::Result<T>,
    ) -> Result<T, DatabaseError> {
        self.write_with(|tx| f(tx).map_err(|e| self.err(e)))
    }

    /// As [`Db::write`] for records that need not outlive the process (leases): the commit is
    /// not synced to disk by itself (`synchronous=NORMAL`), which saves an fsync per lease
    /// change. The database stays consistent after a crash, and the next durable commit on
    /// the same write-ahead log syncs these frames too, in order; a lease lost to a power
    /// failure protected only the work of a process that died with it.
    pub(crate) fn write_transient<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> rusqlite::Result<T>,
    ) -> Result<T, DatabaseError> {
        self.write_transient_with(|tx| f(tx).map_err(|e| self.err(e)))
    }

    /// As [`Db::write_transient`] with a caller error type (see [`Db::write_with`]).
    pub(crate) fn write_transient_with<T, E: From<DatabaseError>>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut conn = self.lock();
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(|e| self.err(e))?;
        let result = (|| -> Result<T, E> {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(|e| self.err(e))?;
            let value = f(&tx)?;
            tx.commit().map_err(|e| self.err(e))?;
            Ok(value)
        })();
        let restored = conn
            .pragma_update(None, "synchronous", "FULL")
            .map_err(|e| self.err(e));
        let value = result?;
        restored?;
        Ok(value)
    }

    /// As [`Db::write`] with a caller error type, so work outside SQLite (a rename, a file
    /// write) can happen while the write lock is held and abort the transaction on failure.
    pub(crate) fn write_with<T, E: From<DatabaseError>>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.err(e))?;
        let value = f(&tx)?;
        tx.commit().map_err(|e| self.err(e))?;
        Ok(value)
    }

    /// Runs a read-only query.
    pub(crate) fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, DatabaseError> {
        let conn = self.lock();
        f(&conn).map_err(|e| self.err(e))
    }
}

/// Switches `conn` to write-ahead logging. Processes opening a new database at the same time
/// each take a read lock and then ask for the write lock, which SQLite refuses at once
/// (`SQLITE_BUSY`, without its busy handler, to avoid a deadlock): that refusal is retried
/// until `timeout`.
pub fn enable_wal(conn: &Connection, timeout: Duration) -> rusqlite::Result<()> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        match conn.pragma_update(None, "journal_mode", "WAL") {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            done => return done,
        }
    }
}

pub(crate) fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
