//! Snapshots: directory trees an op reads or writes, in two backends behind one interface.
//!
//! * overlayfs: a snapshot's directory holds only its own changes (the overlay upper
//!   directory); the full view is an overlay of the parent chain. Preparing is O(1), and the
//!   diff is the upper directory. A chain too deep for one mount's option string is mounted
//!   over a flattened view of the parent (see `flatten`).
//! * native: a snapshot's directory is a full copy of its parent (reflink, else
//!   copy_file_range, else read/write); the diff compares the two trees.
//!
//! Metadata (key, parent, kind, backend, size) lives in `metadata.db`. A snapshot directory is
//! built under `<state>/tmp` and renamed to `snapshots/<id>` in the same transaction that
//! inserts its row, so a crash leaves either nothing or a complete snapshot.

mod chain;
mod flatten;
mod mount;
mod overlay;
mod reuse;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use rusqlite::OptionalExtension;

pub use mount::{run_mounted, Mount};

use crate::changes;
use crate::content::{ContentError, ContentStore};
use crate::copy::TreeCopier;
use crate::db::{now_unix, DatabaseError, Db};
use crate::layer::{
    self, ApplyError, ApplyOptions, ApplyReport, ExportError, ExportOptions, LayerDescriptor,
    WhiteoutStyle,
};
use crate::lease::Lease;
use crate::state::StateDir;
use img_llb::Digest;

/// A failure of the snapshotter.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// No snapshot has this key.
    #[error("snapshot {key:?} not found")]
    NotFound {
        /// The key looked up.
        key: String,
    },
    /// The key is already used.
    #[error("snapshot {key:?} already exists")]
    Exists {
        /// The key.
        key: String,
    },
    /// The operation needs an active (writable) snapshot.
    #[error("snapshot {key:?} is committed; prepare a new snapshot on top of it to change it")]
    NotActive {
        /// The key.
        key: String,
    },
    /// A parent must be committed before children are prepared on it.
    #[error("snapshot {key:?} is active; commit it before using it as a parent")]
    NotCommitted {
        /// The key.
        key: String,
    },
    /// Other snapshots are built on this one.
    #[error("snapshot {key:?} has {children} child snapshot(s); remove them first")]
    HasChildren {
        /// The key.
        key: String,
        /// How many children.
        children: u64,
    },
    /// The snapshot was made by the other backend.
    #[error("snapshot {key:?} belongs to the {found} backend, not {expected}; use --backend {found} or rebuild")]
    WrongBackend {
        /// The key.
        key: String,
        /// Its backend.
        found: Backend,
        /// The snapshotter's backend.
        expected: Backend,
    },
    /// overlayfs was requested but cannot be used here.
    #[error("overlayfs backend unavailable: {source}; use --backend native")]
    OverlayUnavailable {
        /// Why the probe failed.
        #[source]
        source: std::io::Error,
    },
    /// A filesystem operation on a snapshot failed.
    #[error("snapshot i/o on {path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Writing the flattened view of a snapshot whose parent chain is too deep to mount.
    #[error("flattening the parent chain of snapshot {key:?} into {path}: {source}; check free space and permissions under the state directory")]
    Flatten {
        /// The snapshot whose merged view was being written.
        key: String,
        /// Where it was being written.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The database failed.
    #[error(transparent)]
    Database(#[from] DatabaseError),
    /// Exporting a diff failed.
    #[error(transparent)]
    Export(#[from] ExportError),
    /// Applying a layer failed.
    #[error(transparent)]
    Apply(#[from] ApplyError),
    /// Reading a layer blob failed.
    #[error(transparent)]
    Content(#[from] ContentError),
}

/// The snapshot backend in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Backend {
    /// Overlay of the parent chain plus an upper directory.
    Overlayfs,
    /// Full copies.
    Native,
}

impl Backend {
    /// The name used on the command line and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Overlayfs => "overlayfs",
            Backend::Native => "native",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `-b/--backend` choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum BackendChoice {
    /// overlayfs when a probe mount succeeds in a user namespace, else native.
    #[default]
    Auto,
    /// overlayfs, or an error if it cannot be used.
    Overlayfs,
    /// native copies.
    Native,
}

impl FromStr for BackendChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(BackendChoice::Auto),
            "overlayfs" | "overlay" => Ok(BackendChoice::Overlayfs),
            "native" => Ok(BackendChoice::Native),
            other => Err(format!(
                "unknown backend {other:?}: use auto, overlayfs or native"
            )),
        }
    }
}

/// Whether a snapshot can still change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SnapshotKind {
    /// Writable; becomes committed with [`Snapshotter::commit`].
    Active,
    /// Immutable; can be a parent.
    Committed,
}

/// What the database knows about a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// The caller's key.
    pub key: String,
    /// The snapshot's number in this state directory, never reused (a key may be, after the
    /// snapshot was removed): with the key it names this snapshot's content for good, e.g. in
    /// a cache of checksums of committed trees.
    pub id: i64,
    /// The parent's key.
    pub parent: Option<String>,
    /// Active or committed.
    pub kind: SnapshotKind,
    /// The backend that made it.
    pub backend: Backend,
    /// Bytes on disk of the snapshot's own directory (set on commit).
    pub size: Option<u64>,
    /// Creation time (unix seconds).
    pub created: i64,
}

/// A freshly prepared, writable snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveSnapshot {
    /// Its key.
    pub key: String,
    /// What to mount (in order) to see and change its tree.
    pub mounts: Vec<Mount>,
}

#[derive(Debug, Clone)]
struct Row {
    id: i64,
    key: String,
    parent: Option<i64>,
    kind: SnapshotKind,
    backend: Backend,
    size: Option<i64>,
    created: i64,
}

/// Creates, commits, mounts, diffs and removes snapshots. Cheap to clone.
#[derive(Clone)]
pub struct Snapshotter {
    state: StateDir,
    db: Arc<Db>,
    backend: Backend,
    lease: Option<String>,
}

impl Snapshotter {
    pub(crate) fn new(
        state: StateDir,
        db: Arc<Db>,
        choice: BackendChoice,
    ) -> Result<Snapshotter, SnapshotError> {
        let backend = match choice {
            BackendChoice::Native => Backend::Native,
            BackendChoice::Overlayfs => {
                overlay::probe(&state.tmp())
                    .map_err(|source| SnapshotError::OverlayUnavailable { source })?;
                Backend::Overlayfs
            }
            BackendChoice::Auto => match overlay::probe(&state.tmp()) {
                Ok(()) => Backend::Overlayfs,
                Err(_) => Backend::Native,
            },
        };
        Ok(Snapshotter {
            state,
            db,
            backend,
            lease: None,
        })
    }

    /// The backend chosen.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// A snapshotter whose new snapshots (and diff blobs) are recorded in `lease`, atomically
    /// with their creation, so garbage collection never takes them from a running build.
    pub fn with_lease(&self, lease: &Lease) -> Snapshotter {
        Snapshotter {
            lease: Some(lease.id().to_owned()),
            ..self.clone()
        }
    }

    /// Creates an active snapshot `key` on top of committed `parent` (or empty).
    /// O(1) with overlayfs; a full copy of the parent with native.
    pub fn prepare(
        &self,
        key: &str,
        parent: Option<&str>,
    ) -> Result<ActiveSnapshot, SnapshotError> {
        let parent_row = match parent {
            Some(p) => {
                let row = self.row(p)?;
                if row.kind != SnapshotKind::Committed {
                    return Err(SnapshotError::NotCommitted { key: p.to_owned() });
                }
                // A native copy of an overlayfs parent would copy only that parent's diff.
                self.check_backend(&row)?;
                Some(row)
            }
            None => None,
        };
        if self.find(key)?.is_some() {
            return Err(SnapshotError::Exists {
                key: key.to_owned(),
            });
        }
        if let (Backend::Overlayfs, Some(p)) = (self.backend, &parent_row) {
            self.flatten_if_too_deep(p)?;
        }
        let tmp_root = self.state.tmp();
        let staging = tempfile::Builder::new()
            .prefix("snapshot-")
            .tempdir_in(&tmp_root)
            .map_err(|source| SnapshotError::Io {
                path: tmp_root.clone(),
                source,
            })?;
        let fs_dir = staging.path().join("fs");
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| SnapshotError::Io { path, source }
        };
        std::fs::create_dir(&fs_dir).map_err(io(&fs_dir))?;
        std::fs::set_permissions(&fs_dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .map_err(io(&fs_dir))?;
        match (self.backend, &parent_row) {
            (Backend::Overlayfs, _) => {
                let work = staging.path().join("work");
                std::fs::create_dir(&work).map_err(io(&work))?;
            }
            (Backend::Native, Some(p)) => {
                let src = self.fs_dir(p.id);
                TreeCopier::new()
                    .copy_tree(&src, &fs_dir)
                    .map_err(io(&src))?;
            }
            (Backend::Native, None) => {}
        }
        let staged = staging.keep();
        let result = self.db.write_with(|tx| -> Result<i64, SnapshotError> {
            let exists: Option<i64> = tx
                .query_row("SELECT id FROM snapshots WHERE key = ?1", [key], |r| r.get(0))
                .optional()
                .map_err(|e| self.db.err(e))?;
            if exists.is_some() {
                return Err(SnapshotError::Exists { key: key.to_owned() });
            }
            tx.execute(
                "INSERT INTO snapshots (key, parent, kind, backend, size, created) VALUES (?1, ?2, 'active', ?3, NULL, ?4)",
                (key, parent_row.as_ref().map(|p| p.id), self.backend.as_str(), now_unix()),
            )
            .map_err(|e| self.db.err(e))?;
            let id = tx.last_insert_rowid();
            self.lease_in(tx, key)?;
            let dest = self.dir(id);
            // A directory left by a crash between rename and commit has no row; it is ours to
            // replace.
            if dest.exists() {
                force_remove_dir_all(&dest).map_err(io(&dest))?;
            }
            std::fs::rename(&staged, &dest).map_err(io(&dest))?;
            crate::fsutil::sync_parent(&dest).map_err(io(&dest))?;
            Ok(id)
        });
        let id = match result {
            Ok(id) => id,
            Err(e) => {
                let _ = force_remove_dir_all(&staged);
                return Err(e);
            }
        };
        let row = self.row_by_id(id)?;
        Ok(ActiveSnapshot {
            key: key.to_owned(),
            mounts: self.mounts_for(&row)?,
        })
    }

    fn lease_in(&self, tx: &rusqlite::Transaction<'_>, key: &str) -> Result<(), SnapshotError> {
        if let Some(lease) = &self.lease {
            tx.execute(
                "INSERT OR IGNORE INTO lease_resources (lease, kind, resource) VALUES (?1, 'snapshot', ?2)",
                (lease, key),
            )
            .map_err(|e| self.db.err(e))?;
        }
        Ok(())
    }

    /// Makes active snapshot `key` immutable under the new key `name`, recording its size.
    pub fn commit(&self, key: &str, name: &str) -> Result<SnapshotInfo, SnapshotError> {
        let row = self.row(key)?;
        if row.kind != SnapshotKind::Active {
            return Err(SnapshotError::NotActive {
                key: key.to_owned(),
            });
        }
        let dir = self.fs_dir(row.id);
        let size = disk_usage(&dir).map_err(|source| SnapshotError::Io {
            path: dir.clone(),
            source,
        })?;
        // What the step wrote sits in the page cache; recorded as committed before it reaches
        // the disk, a power cut would leave a cache hit pointing at truncated files.
        crate::fsutil::sync_filesystem(&dir).map_err(|source| SnapshotError::Io {
            path: dir.clone(),
            source,
        })?;
        self.db.write_with(|tx| -> Result<(), SnapshotError> {
            if name != key {
                let taken: Option<i64> = tx
                    .query_row("SELECT id FROM snapshots WHERE key = ?1", [name], |r| r.get(0))
                    .optional()
                    .map_err(|e| self.db.err(e))?;
                if taken.is_some() {
                    return Err(SnapshotError::Exists { key: name.to_owned() });
                }
            }
            let n = tx
                .execute(
                    "UPDATE snapshots SET key = ?1, kind = 'committed', size = ?2 WHERE id = ?3 AND kind = 'active'",
                    (name, size as i64, row.id),
                )
                .map_err(|e| self.db.err(e))?;
            if n == 0 {
                return Err(SnapshotError::NotActive { key: key.to_owned() });
            }
            self.lease_in(tx, name)
        })?;
        self.stat(name)
    }

    /// What to mount to see snapshot `key`: writable for an active snapshot, read-only for a
    /// committed one.
    pub fn mounts(&self, key: &str) -> Result<Vec<Mount>, SnapshotError> {
        let row = self.row(key)?;
        self.mounts_for(&row)
    }

    fn mounts_for(&self, row: &Row) -> Result<Vec<Mount>, SnapshotError> {
        self.check_backend(row)?;
        match self.backend {
            Backend::Overlayfs => self.overlay_mounts(row),
            Backend::Native => Ok(vec![overlay::bind(
                &self.fs_dir(row.id),
                row.kind != SnapshotKind::Active,
            )]),
        }
    }

    /// Removes snapshot `key` and its directory. Fails if other snapshots build on it.
    pub fn remove(&self, key: &str) -> Result<(), SnapshotError> {
        let row = self.row(key)?;
        let trash = self
            .db
            .write_with(|tx| -> Result<Option<PathBuf>, SnapshotError> {
                let children: i64 = tx
                    .query_row(
                        "SELECT COUNT(*) FROM snapshots WHERE parent = ?1",
                        [row.id],
                        |r| r.get(0),
                    )
                    .map_err(|e| self.db.err(e))?;
                if children > 0 {
                    return Err(SnapshotError::HasChildren {
                        key: key.to_owned(),
                        children: children as u64,
                    });
                }
                tx.execute("DELETE FROM snapshots WHERE id = ?1", [row.id])
                    .map_err(|e| self.db.err(e))?;
                trash_snapshot_dir(&self.state, row.id)
            })?;
        match trash {
            Some(trash) => force_remove_dir_all(&trash).map_err(|source| SnapshotError::Io {
                path: trash,
                source,
            }),
            None => Ok(()),
        }
    }

    /// Where the file at `rel` (relative to the snapshot root) in snapshot `key` lives on the
    /// host, for reading it without mounting (e.g. `/etc/passwd` to resolve `USER name`).
    /// `None` if the path does not exist or passes through a symlink or a non-directory; symlinks
    /// are not followed, and `..` is refused, so the result is always inside a snapshot.
    pub fn host_path(&self, key: &str, rel: &Path) -> Result<Option<PathBuf>, SnapshotError> {
        let row = self.row(key)?;
        self.check_backend(&row)?;
        let mut clean = PathBuf::new();
        for comp in rel.components() {
            match comp {
                std::path::Component::Normal(c) => clean.push(c),
                std::path::Component::ParentDir => return Ok(None),
                _ => {}
            }
        }
        let layers = match self.backend {
            Backend::Overlayfs => {
                let mut layers = vec![self.fs_dir(row.id)];
                layers.extend(self.lowers(&row)?);
                layers
            }
            Backend::Native => vec![self.fs_dir(row.id)],
        };
        if clean.as_os_str().is_empty() {
            return Ok(Some(layers[0].clone()));
        }
        changes::lookup(&layers, &clean).map_err(|source| SnapshotError::Io {
            path: clean.clone(),
            source,
        })
    }

    /// The snapshot's metadata.
    pub fn stat(&self, key: &str) -> Result<SnapshotInfo, SnapshotError> {
        let row = self.row(key)?;
        self.info(&row)
    }

    /// Every snapshot, oldest first.
    pub fn list(&self) -> Result<Vec<SnapshotInfo>, SnapshotError> {
        let rows = self.db.read(|c| {
            let mut st = c.prepare(
                "SELECT id, key, parent, kind, backend, size, created FROM snapshots ORDER BY id",
            )?;
            let rows = st
                .query_map([], row_from_sql)?
                .collect::<rusqlite::Result<Vec<_>>>();
            rows
        })?;
        rows.iter().map(|r| self.info(r)).collect()
    }

    /// Writes the changes of snapshot `key` against its parent as a layer blob in `content`.
    pub fn diff(
        &self,
        key: &str,
        content: &ContentStore,
        options: &ExportOptions,
    ) -> Result<LayerDescriptor, SnapshotError> {
        let row = self.row(key)?;
        self.check_backend(&row)?;
        let fs = self.fs_dir(row.id);
        let io = |source| SnapshotError::Io {
            path: fs.clone(),
            source,
        };
        let entries = match self.backend {
            Backend::Overlayfs => changes::overlay_changes(&self.lowers(&row)?, &fs).map_err(io)?,
            Backend::Native => {
                let parent = row.parent.map(|p| self.fs_dir(p));
                changes::native_changes(parent.as_deref(), &fs).map_err(io)?
            }
        };
        Ok(layer::export_entries(
            content,
            self.lease.as_deref(),
            &fs,
            &entries,
            options,
        )?)
    }

    /// Unpacks layer blob `layer` from `content` into active snapshot `key`.
    pub fn apply(
        &self,
        key: &str,
        content: &ContentStore,
        layer: &Digest,
    ) -> Result<ApplyReport, SnapshotError> {
        let row = self.row(key)?;
        self.check_backend(&row)?;
        if row.kind != SnapshotKind::Active {
            return Err(SnapshotError::NotActive {
                key: key.to_owned(),
            });
        }
        let blob = content.open(layer)?;
        let whiteouts = match self.backend {
            Backend::Overlayfs => WhiteoutStyle::Overlay {
                lowers: self.lowers(&row)?,
                xattr_prefix: overlay::XATTR_PREFIX.to_owned(),
            },
            Backend::Native => WhiteoutStyle::Delete,
        };
        Ok(layer::apply_layer(
            blob,
            &self.fs_dir(row.id),
            &ApplyOptions { whiteouts },
        )?)
    }

    fn info(&self, row: &Row) -> Result<SnapshotInfo, SnapshotError> {
        let parent = match row.parent {
            Some(p) => Some(self.row_by_id(p)?.key),
            None => None,
        };
        Ok(SnapshotInfo {
            key: row.key.clone(),
            id: row.id,
            parent,
            kind: row.kind,
            backend: row.backend,
            size: row.size.map(|s| s as u64),
            created: row.created,
        })
    }

    fn check_backend(&self, row: &Row) -> Result<(), SnapshotError> {
        if row.backend != self.backend {
            return Err(SnapshotError::WrongBackend {
                key: row.key.clone(),
                found: row.backend,
                expected: self.backend,
            });
        }
        Ok(())
    }

    /// The parent chain's directories, nearest first.
    fn lowers(&self, row: &Row) -> Result<Vec<PathBuf>, SnapshotError> {
        let mut out = Vec::new();
        let mut next = row.parent;
        while let Some(id) = next {
            out.push(self.fs_dir(id));
            next = self.row_by_id(id)?.parent;
        }
        Ok(out)
    }

    fn dir(&self, id: i64) -> PathBuf {
        self.state.snapshots().join(id.to_string())
    }

    fn fs_dir(&self, id: i64) -> PathBuf {
        self.dir(id).join("fs")
    }

    fn find(&self, key: &str) -> Result<Option<Row>, SnapshotError> {
        Ok(self.db.read(|c| {
            c.query_row("SELECT id, key, parent, kind, backend, size, created FROM snapshots WHERE key = ?1", [key], row_from_sql)
                .optional()
        })?)
    }

    fn row(&self, key: &str) -> Result<Row, SnapshotError> {
        self.find(key)?.ok_or_else(|| SnapshotError::NotFound {
            key: key.to_owned(),
        })
    }

    fn row_by_id(&self, id: i64) -> Result<Row, SnapshotError> {
        self.db
            .read(|c| {
                c.query_row("SELECT id, key, parent, kind, backend, size, created FROM snapshots WHERE id = ?1", [id], row_from_sql)
                    .optional()
            })?
            .ok_or_else(|| SnapshotError::NotFound { key: format!("#{id}") })
    }
}

fn row_from_sql(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    let kind: String = r.get(3)?;
    let backend: String = r.get(4)?;
    Ok(Row {
        id: r.get(0)?,
        key: r.get(1)?,
        parent: r.get(2)?,
        kind: if kind == "committed" {
            SnapshotKind::Committed
        } else {
            SnapshotKind::Active
        },
        backend: if backend == "overlayfs" {
            Backend::Overlayfs
        } else {
            Backend::Native
        },
        size: r.get(5)?,
        created: r.get(6)?,
    })
}

/// Renames `snapshots/<id>` into `tmp` (a cheap step to take under the write lock, where
/// `prepare` renames directories in) and returns where it went; `None` if it is already gone.
pub(crate) fn trash_snapshot_dir(
    state: &StateDir,
    id: i64,
) -> Result<Option<PathBuf>, SnapshotError> {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let dir = state.snapshots().join(id.to_string());
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let trash = state
        .tmp()
        .join(format!("removing-{id}-{}-{n}", std::process::id()));
    match std::fs::rename(&dir, &trash) {
        Ok(()) => Ok(Some(trash)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(SnapshotError::Io { path: dir, source }),
    }
}

/// `remove_dir_all` that also works without privileges on trees holding read-only
/// directories (a layer's `0555` directories, overlay's mode-000 `work/work`): it makes our
/// own directories writable and retries.
pub(crate) fn force_remove_dir_all(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            make_dirs_writable(path);
            std::fs::remove_dir_all(path)
        }
        other => other,
    }
}

fn make_dirs_writable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                make_dirs_writable(&entry.path());
            }
        }
    }
}

/// Bytes allocated under `dir`, each inode counted once.
pub(crate) fn disk_usage(dir: &Path) -> std::io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let mut seen = std::collections::HashSet::new();
    let mut total = 0u64;
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            let meta = entry.metadata()?;
            if meta.nlink() > 1 && !meta.is_dir() && !seen.insert((meta.dev(), meta.ino())) {
                continue;
            }
            total += meta.blocks() * 512;
            if meta.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    Ok(total)
}
