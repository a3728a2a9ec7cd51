//! Which layer blob a committed snapshot was exported as, so that exporting an unchanged
//! snapshot again costs one lookup instead of a tar and a compression pass.
//!
//! The records live in `<state>/layers.db` (SQLite, WAL, like the other databases of the state
//! directory). A record is only trusted while its blob is still in the content store.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use img_snapshot::{Compression, Digest, LayerDescriptor};
use rusqlite::{params, Connection, OptionalExtension};

/// A failure of the layer record database.
#[derive(Debug, thiserror::Error)]
#[error("layer record database {path}: {operation} failed")]
pub struct LayerDbError {
    /// The database file.
    pub path: PathBuf,
    /// What was being done.
    pub operation: &'static str,
    /// The cause.
    #[source]
    pub source: rusqlite::Error,
}

/// What a layer export depends on besides the snapshot: the same snapshot exported with
/// another compression or epoch is another blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExportVariant {
    pub compression: Compression,
    pub level: Option<u32>,
    pub source_date_epoch: Option<i64>,
}

impl ExportVariant {
    fn key(&self) -> String {
        format!(
            "{}/{}/{}",
            self.compression.media_type(),
            self.level
                .map_or_else(|| "default".into(), |l| l.to_string()),
            self.source_date_epoch
                .map_or_else(|| "none".into(), |e| e.to_string())
        )
    }
}

/// The database of exported layers.
#[derive(Debug)]
pub(crate) struct LayerDb {
    path: PathBuf,
    conn: Mutex<Connection>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS exported_layers (
    snapshot TEXT NOT NULL,
    variant  TEXT NOT NULL,
    digest   TEXT NOT NULL,
    size     INTEGER NOT NULL,
    diff_id  TEXT NOT NULL,
    PRIMARY KEY (snapshot, variant)
);
";

impl LayerDb {
    pub(crate) fn open(path: &Path) -> Result<LayerDb, LayerDbError> {
        let err = |operation| {
            let path = path.to_path_buf();
            move |source| LayerDbError {
                path,
                operation,
                source,
            }
        };
        let conn = Connection::open(path).map_err(err("open"))?;
        conn.busy_timeout(Duration::from_secs(120))
            .map_err(err("open"))?;
        img_snapshot::enable_wal(&conn, Duration::from_secs(120)).map_err(err("open"))?;
        // Which blob a snapshot was exported to is derived data: a record lost to a power
        // failure costs one export again, so commits skip their fsync (the log stays
        // consistent in WAL mode).
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(err("open"))?;
        conn.execute_batch(SCHEMA).map_err(err("create tables"))?;
        Ok(LayerDb {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
        })
    }

    fn err(&self, operation: &'static str) -> impl Fn(rusqlite::Error) -> LayerDbError + '_ {
        move |source| LayerDbError {
            path: self.path.clone(),
            operation,
            source,
        }
    }

    pub(crate) fn get(
        &self,
        snapshot: &str,
        variant: &ExportVariant,
    ) -> Result<Option<LayerDescriptor>, LayerDbError> {
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let row: Option<(String, i64, String)> = conn
            .query_row(
                "SELECT digest, size, diff_id FROM exported_layers WHERE snapshot = ?1 AND variant = ?2",
                params![snapshot, variant.key()],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(self.err("look up a layer"))?;
        // A malformed row is only a missed shortcut: the layer is exported again.
        Ok(row.and_then(|(digest, size, diff_id)| {
            Some(LayerDescriptor {
                digest: digest.parse::<Digest>().ok()?,
                size: size as u64,
                diff_id: diff_id.parse::<Digest>().ok()?,
                compression: variant.compression,
            })
        }))
    }

    pub(crate) fn put(
        &self,
        snapshot: &str,
        variant: &ExportVariant,
        layer: &LayerDescriptor,
    ) -> Result<(), LayerDbError> {
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        conn.execute(
            "INSERT OR REPLACE INTO exported_layers (snapshot, variant, digest, size, diff_id)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                snapshot,
                variant.key(),
                layer.digest.to_string(),
                layer.size as i64,
                layer.diff_id.to_string()
            ],
        )
        .map_err(self.err("record a layer"))?;
        Ok(())
    }

    /// Every recorded layer blob with the snapshot it was exported from, for garbage
    /// collection roots.
    pub(crate) fn blobs(&self) -> Result<Vec<(String, Digest)>, LayerDbError> {
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let mut st = conn
            .prepare("SELECT snapshot, digest FROM exported_layers")
            .map_err(self.err("list layers"))?;
        let rows = st
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .map_err(self.err("list layers"))?;
        let mut out = Vec::new();
        for row in rows {
            let (snapshot, digest) = row.map_err(self.err("list layers"))?;
            if let Ok(d) = digest.parse() {
                out.push((snapshot, d));
            }
        }
        Ok(out)
    }
}
