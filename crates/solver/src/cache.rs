//! The persistent cache: cache key → stored output, plus the file checksum cache (per file:
//! stamp → content and attribute digests), the checksums of selections from committed
//! snapshots (`tree_checksums`) and the step history that explains misses (`history`).
//!
//! All tables live in one SQLite database in the state directory. SQLite in WAL mode lets
//! several img processes share it: readers never block, writers queue behind `busy_timeout`
//! instead of failing with "database is locked". The checksum cache sits in the same file rather
//! than a sidecar so that it gets the same crash safety and multi-process locking for free, and
//! so a whole context's entries can be loaded with one range query and written in one
//! transaction.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use img_llb::Digest;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use crate::CacheKey;

/// How long a process waits for another one holding the write lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(120);

/// Switches `conn` to write-ahead logging, retrying the immediate `SQLITE_BUSY` SQLite gives
/// when processes open a new database at once (each holds a read lock and asks for the write
/// lock, which it refuses without waiting, to avoid a deadlock).
fn enable_wal(conn: &Connection) -> rusqlite::Result<()> {
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
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

/// An error of the cache database.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CacheError {
    /// The database could not be opened or set up.
    #[error("cannot open the build cache database {path}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: rusqlite::Error,
    },
    /// A query failed.
    #[error("build cache database {path}: {operation} failed")]
    Query {
        /// The database file.
        path: PathBuf,
        /// What was being done, e.g. `look up a cache key`.
        operation: &'static str,
        /// The cause.
        #[source]
        source: rusqlite::Error,
    },
    /// A stored value is not what this version of img writes.
    #[error("build cache database {path} holds a malformed {column}: {value:?}; remove the file to reset the cache")]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// Which column.
        column: &'static str,
        /// The stored value.
        value: String,
    },
}

/// One cached result, as listed by `img du` and removed by `img prune`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheRecord {
    /// The cache key.
    pub key: CacheKey,
    /// The executor's id of the stored output.
    pub output_id: String,
    /// The digest of the op that produced it.
    pub op: Digest,
    /// The op's description when it was recorded.
    pub description: String,
    /// Size on disk, if the executor knew it.
    pub size: Option<u64>,
    /// When the result was recorded.
    pub created_at: SystemTime,
    /// When a build last used it.
    pub last_used_at: SystemTime,
}

/// A file's identity as the checksum cache sees it: if none of this changed, the content did
/// not either (barring a write within the timestamp granularity, see [`crate::checksum_tree`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileStamp {
    /// Size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i64,
    /// Status change time, nanoseconds since the epoch.
    pub ctime_ns: i64,
    /// Inode number.
    pub inode: u64,
}

/// A checksum cache entry.
#[derive(Clone, Copy, Debug)]
pub struct StampedChecksum {
    /// The file's identity when it was hashed.
    pub stamp: FileStamp,
    /// The sha256 of its content.
    pub sha256: [u8; 32],
    /// Digest of the extended attributes; `None` when there are none.
    pub xattrs: Option<[u8; 32]>,
    /// When the file was examined; entries whose timestamps are this recent are not trusted.
    pub recorded_ns: i64,
}

/// The cache database. Cheap to share between threads (one connection behind a mutex); open
/// one per process.
#[derive(Debug)]
pub struct CacheDb {
    path: PathBuf,
    conn: Mutex<Connection>,
}

/// Checksum cache entries by absolute path bytes.
pub type KnownChecksums = HashMap<Vec<u8>, StampedChecksum>;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS cache_records (
    cache_key    TEXT PRIMARY KEY,
    output_id    TEXT NOT NULL,
    op_digest    TEXT NOT NULL,
    description  TEXT NOT NULL,
    size         INTEGER,
    created_ns   INTEGER NOT NULL,
    last_used_ns INTEGER NOT NULL
);
-- Paths as raw bytes (names need not be UTF-8); xattrs NULL when the file has none.
CREATE TABLE IF NOT EXISTS file_digests (
    path        BLOB PRIMARY KEY,
    size        INTEGER NOT NULL,
    mtime_ns    INTEGER NOT NULL,
    ctime_ns    INTEGER NOT NULL,
    inode       INTEGER NOT NULL,
    sha256      BLOB NOT NULL,
    xattrs      BLOB,
    recorded_ns INTEGER NOT NULL
);
-- Replaced by file_digests, which also keeps extended attributes.
DROP TABLE IF EXISTS file_checksums;
CREATE TABLE IF NOT EXISTS tree_checksums (
    tree        TEXT NOT NULL,
    selection   TEXT NOT NULL,
    digest      TEXT NOT NULL,
    entries     INTEGER NOT NULL,
    recorded_ns INTEGER NOT NULL,
    PRIMARY KEY (tree, selection)
);
-- What an executor learnt about a remote source at its last build (an HTTP download's
-- validators and where its content is kept), to ask the remote again cheaply next time.
CREATE TABLE IF NOT EXISTS source_metadata (
    source      TEXT PRIMARY KEY,
    value       TEXT NOT NULL,
    recorded_ns INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS step_history (
    step        TEXT PRIMARY KEY,
    inputs      TEXT NOT NULL,
    listings    BLOB NOT NULL,
    recorded_ns INTEGER NOT NULL
);
";

impl CacheDb {
    /// Opens (creating if needed) the database at `path`, e.g. `<state>/cache.db`.
    pub fn open(path: impl AsRef<Path>) -> Result<CacheDb, CacheError> {
        let path = path.as_ref().to_path_buf();
        let open_err = |source| CacheError::Open {
            path: path.clone(),
            source,
        };
        let mut conn = Connection::open(&path).map_err(open_err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
        // Switching to WAL takes an exclusive lock once per database file; later opens find
        // it already in WAL and only read the setting.
        enable_wal(&conn).map_err(open_err)?;
        // In WAL mode NORMAL keeps the database consistent after a crash and skips an fsync per
        // commit; a lost last record only costs a rebuild of that op.
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(open_err)?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(open_err)?;
        tx.execute_batch(SCHEMA).map_err(open_err)?;
        tx.commit().map_err(open_err)?;
        Ok(CacheDb {
            path,
            conn: Mutex::new(conn),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent: it rolls back.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn query_err(
        &self,
        operation: &'static str,
    ) -> impl Fn(rusqlite::Error) -> CacheError + '_ {
        move |source| CacheError::Query {
            path: self.path.clone(),
            operation,
            source,
        }
    }

    /// The record for `key`, if any.
    pub fn lookup(&self, key: &CacheKey) -> Result<Option<CacheRecord>, CacheError> {
        let row = self
            .conn()
            .prepare_cached(
                "SELECT cache_key, output_id, op_digest, description, size, created_ns, last_used_ns
                 FROM cache_records WHERE cache_key = ?1",
            )
            .and_then(|mut stmt| {
                stmt.query_row(params![key.to_string()], RawRecord::from_row)
                    .optional()
            })
            .map_err(self.query_err("look up a cache key"))?;
        row.map(|raw| raw.parse(&self.path)).transpose()
    }

    /// Records that `key`'s result is the output `output_id`, replacing any older record.
    /// Called only after the op succeeded, so no partial result is ever recorded.
    pub fn record(
        &self,
        key: &CacheKey,
        output_id: &str,
        op: &Digest,
        description: &str,
        size: Option<u64>,
    ) -> Result<(), CacheError> {
        let now = unix_ns(SystemTime::now());
        self.conn()
            .prepare_cached(
                "INSERT OR REPLACE INTO cache_records
                 (cache_key, output_id, op_digest, description, size, created_ns, last_used_ns)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    key.to_string(),
                    output_id,
                    op.to_string(),
                    description,
                    size.map(|s| s as i64),
                    now
                ])
            })
            .map_err(self.query_err("record a result"))?;
        Ok(())
    }

    /// Marks `key` as used now (for least-recently-used pruning).
    pub fn touch(&self, key: &CacheKey) -> Result<(), CacheError> {
        let now = unix_ns(SystemTime::now());
        self.conn()
            .prepare_cached("UPDATE cache_records SET last_used_ns = ?2 WHERE cache_key = ?1")
            .and_then(|mut stmt| stmt.execute(params![key.to_string(), now]))
            .map_err(self.query_err("mark a result used"))?;
        Ok(())
    }

    /// Forgets `key`; returns whether there was a record.
    pub fn remove(&self, key: &CacheKey) -> Result<bool, CacheError> {
        let removed = self
            .conn()
            .prepare_cached("DELETE FROM cache_records WHERE cache_key = ?1")
            .and_then(|mut stmt| stmt.execute(params![key.to_string()]))
            .map_err(self.query_err("remove a record"))?;
        Ok(removed > 0)
    }

    /// Every record, least recently used first.
    pub fn records(&self) -> Result<Vec<CacheRecord>, CacheError> {
        let raws = self
            .conn()
            .prepare_cached(
                "SELECT cache_key, output_id, op_digest, description, size, created_ns, last_used_ns
                 FROM cache_records ORDER BY last_used_ns, cache_key",
            )
            .and_then(|mut stmt| {
                stmt.query_map([], RawRecord::from_row)?
                    .collect::<Result<Vec<_>, _>>()
            })
            .map_err(self.query_err("list records"))?;
        raws.into_iter().map(|raw| raw.parse(&self.path)).collect()
    }

    /// Checksum cache entries for files under the directory `root` (an absolute path), by
    /// path bytes. Holds every entry at once: [`CacheDb::visit_checksums_under`] streams them.
    pub fn checksums_under(&self, root: &[u8]) -> Result<Arc<KnownChecksums>, CacheError> {
        let mut entries = HashMap::new();
        self.visit_checksums_under(root, |path, checksum| {
            entries.insert(path.to_vec(), checksum);
        })?;
        Ok(Arc::new(entries))
    }

    /// Calls `visit` with each checksum cache entry for a file under the directory `root` (an
    /// absolute path), in path byte order, holding none of them: a caller that sorts its own
    /// paths the same way merges the two lists in one pass (the worker keys a whole context
    /// so, in memory that does not grow with the number of recorded files). The database stays
    /// locked for this process while `visit` runs.
    pub fn visit_checksums_under(
        &self,
        root: &[u8],
        mut visit: impl FnMut(&[u8], StampedChecksum),
    ) -> Result<(), CacheError> {
        let trimmed = root.strip_suffix(b"/").unwrap_or(root);
        let mut prefix = trimmed.to_vec();
        prefix.push(b'/');
        // Every path starting with "<root>/" sorts in ["<root>/", "<root>0"): '0' follows '/'
        // (blobs compare bytewise).
        let mut upper = trimmed.to_vec();
        upper.push(b'0');
        let conn = self.conn();
        let err = self.query_err("read the checksum cache");
        // The primary key's index gives the rows in path order: no sort.
        let mut stmt = conn
            .prepare_cached(
                "SELECT path, size, mtime_ns, ctime_ns, inode, sha256, xattrs, recorded_ns
                 FROM file_digests WHERE path >= ?1 AND path < ?2 ORDER BY path",
            )
            .map_err(&err)?;
        let mut rows = stmt.query(params![prefix, upper]).map_err(&err)?;
        while let Some(row) = rows.next().map_err(&err)? {
            // A malformed entry is only a missed shortcut: the file is hashed again.
            let Some(checksum) = stamped_checksum(row).map_err(&err)? else {
                continue;
            };
            let path = row
                .get_ref(0)
                .and_then(|v| Ok(v.as_blob()?))
                .map_err(&err)?;
            visit(path, checksum);
        }
        Ok(())
    }

    /// Stores checksum cache entries (by absolute path bytes) in one transaction.
    pub fn store_checksums(&self, entries: &[(&[u8], StampedChecksum)]) -> Result<(), CacheError> {
        if entries.is_empty() {
            return Ok(());
        }
        let err = self.query_err("update the checksum cache");
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&err)?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO file_digests
                     (path, size, mtime_ns, ctime_ns, inode, sha256, xattrs, recorded_ns)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )
                .map_err(&err)?;
            for (path, entry) in entries {
                stmt.execute(params![
                    path,
                    entry.stamp.size as i64,
                    entry.stamp.mtime_ns,
                    entry.stamp.ctime_ns,
                    entry.stamp.inode as i64,
                    &entry.sha256[..],
                    entry.xattrs.as_ref().map(|x| &x[..]),
                    entry.recorded_ns
                ])
                .map_err(&err)?;
            }
        }
        tx.commit().map_err(&err)
    }

    /// The recorded checksum (digest, entry count) of `selection` from the immutable `tree`.
    pub(crate) fn tree_checksum(
        &self,
        tree: &str,
        selection: &Digest,
    ) -> Result<Option<(Digest, usize)>, CacheError> {
        let row = self
            .conn()
            .prepare_cached(
                "SELECT digest, entries FROM tree_checksums WHERE tree = ?1 AND selection = ?2",
            )
            .and_then(|mut stmt| {
                stmt.query_row(params![tree, selection.to_string()], |row| {
                    Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
                })
                .optional()
            })
            .map_err(self.query_err("read a tree checksum"))?;
        let Some((digest, entries)) = row else {
            return Ok(None);
        };
        let digest = digest.parse().map_err(|_| CacheError::Corrupt {
            path: self.path.clone(),
            column: "tree_checksums.digest",
            value: digest.clone(),
        })?;
        Ok(Some((digest, entries.max(0) as usize)))
    }

    /// What an executor stored about a remote source under `source` (a name of its own
    /// choosing), if anything.
    pub fn source_metadata(&self, source: &str) -> Result<Option<String>, CacheError> {
        self.conn()
            .prepare_cached("SELECT value FROM source_metadata WHERE source = ?1")
            .and_then(|mut stmt| {
                stmt.query_row(params![source], |row| row.get::<_, String>(0))
                    .optional()
            })
            .map_err(self.query_err("read source metadata"))
    }

    /// Stores `value` about a remote source under `source`, replacing what was there.
    pub fn store_source_metadata(&self, source: &str, value: &str) -> Result<(), CacheError> {
        self.conn()
            .prepare_cached(
                "INSERT OR REPLACE INTO source_metadata (source, value, recorded_ns)
                 VALUES (?1, ?2, ?3)",
            )
            .and_then(|mut stmt| stmt.execute(params![source, value, unix_ns(SystemTime::now())]))
            .map_err(self.query_err("record source metadata"))?;
        Ok(())
    }

    /// Records the checksum of `selection` from the immutable `tree`.
    pub(crate) fn store_tree_checksum(
        &self,
        tree: &str,
        selection: &Digest,
        digest: &Digest,
        entries: usize,
    ) -> Result<(), CacheError> {
        self.conn()
            .prepare_cached(
                "INSERT OR REPLACE INTO tree_checksums (tree, selection, digest, entries, recorded_ns)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    tree,
                    selection.to_string(),
                    digest.to_string(),
                    entries as i64,
                    unix_ns(SystemTime::now())
                ])
            })
            .map_err(self.query_err("record a tree checksum"))?;
        Ok(())
    }
}

/// A checksum cache row (path first) as an entry; `None` when its digests are malformed.
fn stamped_checksum(row: &rusqlite::Row<'_>) -> rusqlite::Result<Option<StampedChecksum>> {
    let digest = |index| -> rusqlite::Result<Option<[u8; 32]>> {
        Ok(match row.get_ref(index)?.as_blob_or_null()? {
            None => None,
            Some(bytes) => <[u8; 32]>::try_from(bytes).ok(),
        })
    };
    let Some(sha256) = digest(5)? else {
        return Ok(None);
    };
    let xattrs = match row.get_ref(6)?.as_blob_or_null()? {
        None => None,
        Some(_) => match digest(6)? {
            Some(x) => Some(x),
            None => return Ok(None),
        },
    };
    Ok(Some(StampedChecksum {
        stamp: FileStamp {
            size: row.get::<_, i64>(1)? as u64,
            mtime_ns: row.get(2)?,
            ctime_ns: row.get(3)?,
            inode: row.get::<_, i64>(4)? as u64,
        },
        sha256,
        xattrs,
        recorded_ns: row.get(7)?,
    }))
}

struct RawRecord {
    key: String,
    output_id: String,
    op: String,
    description: String,
    size: Option<i64>,
    created_ns: i64,
    last_used_ns: i64,
}

impl RawRecord {
    fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<RawRecord> {
        Ok(RawRecord {
            key: row.get(0)?,
            output_id: row.get(1)?,
            op: row.get(2)?,
            description: row.get(3)?,
            size: row.get(4)?,
            created_ns: row.get(5)?,
            last_used_ns: row.get(6)?,
        })
    }

    fn parse(self, path: &Path) -> Result<CacheRecord, CacheError> {
        let corrupt = |column, value: &str| CacheError::Corrupt {
            path: path.to_path_buf(),
            column,
            value: value.to_owned(),
        };
        Ok(CacheRecord {
            key: self
                .key
                .parse()
                .map_err(|_| corrupt("cache_key", &self.key))?,
            op: self
                .op
                .parse()
                .map_err(|_| corrupt("op_digest", &self.op))?,
            output_id: self.output_id,
            description: self.description,
            size: self.size.map(|s| s as u64),
            created_at: from_unix_ns(self.created_ns),
            last_used_at: from_unix_ns(self.last_used_ns),
        })
    }
}

pub(crate) fn unix_ns(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

fn from_unix_ns(ns: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(ns.max(0) as u64)
}
