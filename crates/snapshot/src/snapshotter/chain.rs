//! Which lower directories an overlay mount names, and flattening when they would not fit
//! one mount: the parent chain up to the nearest flattened ancestor; past the limits of
//! [`overlay::fits`], the parent (or, for a read-only view, the snapshot itself) is flattened
//! once into `snapshots/<id>/flat/fs` and stands for everything below it.

use std::path::{Path, PathBuf};

use rusqlite::OptionalExtension;

use super::{
    flatten, force_remove_dir_all, overlay, Mount, Row, SnapshotError, SnapshotKind, Snapshotter,
};

impl Snapshotter {
    /// The overlay mount of `row`, over its parent chain as far as the nearest flattened
    /// ancestor; when that still names too many layers for one mount, the chain is flattened
    /// first (the parent for a writable view, the snapshot itself for a read-only one).
    pub(super) fn overlay_mounts(&self, row: &Row) -> Result<Vec<Mount>, SnapshotError> {
        let fs = self.fs_dir(row.id);
        let work = self.dir(row.id).join("work");
        if row.kind == SnapshotKind::Committed {
            let flat = self.flat_dir(row.id);
            if flat.is_dir() {
                return Ok(vec![overlay::bind(&flat, true)]);
            }
        }
        let lowers = self.mount_lowers(row.parent)?;
        let writable = row.kind == SnapshotKind::Active;
        let mounts = overlay::mounts(&fs, &work, &lowers, writable);
        let layers = lowers.len() + usize::from(!writable);
        if overlay::fits(&mounts, layers) {
            return Ok(mounts);
        }
        match (writable, row.parent) {
            (true, Some(parent)) => {
                let flat = self.flattened(&self.row_by_id(parent)?)?;
                Ok(overlay::mounts(&fs, &work, &[flat], true))
            }
            _ => Ok(vec![overlay::bind(&self.flattened(row)?, true)]),
        }
    }

    /// Flattens `parent` before a child is created on it if the child's mount would not fit
    /// (judged with the longest possible snapshot id), so a failure leaves no child behind.
    pub(super) fn flatten_if_too_deep(&self, parent: &Row) -> Result<(), SnapshotError> {
        let lowers = self.mount_lowers(Some(parent.id))?;
        let widest = self.dir(i64::MAX);
        let mounts = overlay::mounts(&widest.join("fs"), &widest.join("work"), &lowers, true);
        if !overlay::fits(&mounts, lowers.len()) {
            self.flattened(parent)?;
        }
        Ok(())
    }

    /// The lower directories for a mount over `parent`, nearest first: each ancestor's own
    /// directory up to the first one that has a flattened view, which stands for itself and
    /// everything below it.
    fn mount_lowers(&self, parent: Option<i64>) -> Result<Vec<PathBuf>, SnapshotError> {
        let mut out = Vec::new();
        let mut next = parent;
        while let Some(id) = next {
            let flat = self.flat_dir(id);
            if flat.is_dir() {
                out.push(flat);
                break;
            }
            out.push(self.fs_dir(id));
            next = self.row_by_id(id)?.parent;
        }
        Ok(out)
    }

    /// The flattened view of committed snapshot `row` (its merged tree as one plain
    /// directory), built now if it does not exist yet. Built in `tmp/` and renamed into
    /// `snapshots/<id>/flat` under the write lock after checking the snapshot still exists,
    /// so it is complete whenever it exists and goes away with the snapshot. A lock file
    /// keeps two builds (threads or processes) from flattening the same snapshot at once.
    fn flattened(&self, row: &Row) -> Result<PathBuf, SnapshotError> {
        let flat = self.flat_dir(row.id);
        if flat.is_dir() {
            return Ok(flat);
        }
        let tmp = self.state.tmp();
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| SnapshotError::Io { path, source }
        };
        let lock_path = tmp.join(format!("flatten-{}.lock", row.id));
        let _lock = lock_exclusive(&lock_path).map_err(io(&lock_path))?;
        if flat.is_dir() {
            return Ok(flat);
        }
        // Kept from the start and removed with `force_remove_dir_all` on failure: a
        // half-built tree may already hold read-only directories.
        let staged = tempfile::Builder::new()
            .prefix("flat-")
            .tempdir_in(&tmp)
            .map_err(io(&tmp))?
            .keep();
        let result = self.build_flat(row, &staged);
        if !matches!(result, Ok(true)) {
            let _ = force_remove_dir_all(&staged);
        }
        result?;
        Ok(flat)
    }

    /// Writes `row`'s merged view into `staged/fs` and renames `staged` to
    /// `snapshots/<id>/flat`; `false` if another build published one first.
    fn build_flat(&self, row: &Row, staged: &Path) -> Result<bool, SnapshotError> {
        let mut layers = vec![self.fs_dir(row.id)];
        layers.extend(self.mount_lowers(row.parent)?);
        let tree = staged.join("fs");
        let flatten_err = |source| SnapshotError::Flatten {
            key: row.key.clone(),
            path: tree.clone(),
            source,
        };
        std::fs::create_dir(&tree).map_err(flatten_err)?;
        flatten::flatten(&layers, &tree).map_err(flatten_err)?;
        // One flush of the filesystem instead of an fsync per entry: once the rename below
        // is durable, so is everything it publishes.
        crate::fsutil::sync_filesystem(staged).map_err(flatten_err)?;
        let dest = self.dir(row.id).join(FLAT_DIR);
        self.db.write_with(|tx| -> Result<bool, SnapshotError> {
            let kind: Option<String> = tx
                .query_row("SELECT kind FROM snapshots WHERE id = ?1", [row.id], |r| {
                    r.get(0)
                })
                .optional()
                .map_err(|e| self.db.err(e))?;
            match kind.as_deref() {
                None => {
                    return Err(SnapshotError::NotFound {
                        key: row.key.clone(),
                    })
                }
                Some("committed") => {}
                Some(_) => {
                    return Err(SnapshotError::NotCommitted {
                        key: row.key.clone(),
                    })
                }
            }
            if dest.exists() {
                return Ok(false);
            }
            let io = |source| SnapshotError::Io {
                path: dest.clone(),
                source,
            };
            std::fs::rename(staged, &dest).map_err(io)?;
            crate::fsutil::sync_parent(&dest).map_err(io)?;
            Ok(true)
        })
    }

    /// The flattened view's tree (present only once complete). It sits one level below the
    /// directory renamed into place, so publishing it never needs write permission on a
    /// read-only root directory (rename(2) of a directory updates its `..`).
    fn flat_dir(&self, id: i64) -> PathBuf {
        self.dir(id).join(FLAT_DIR).join("fs")
    }
}

/// `snapshots/<id>/flat`: the flattened view of a committed overlay snapshot.
const FLAT_DIR: &str = "flat";

/// Takes an exclusive `flock` on `path` (created if missing), released when the file closes.
fn lock_exclusive(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    loop {
        // SAFETY: flock on an fd we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
            return Ok(file);
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}
