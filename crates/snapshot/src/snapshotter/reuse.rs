//! Taking an existing committed snapshot into a build (a cache hit, a base layer unpacked by an
//! earlier build): the check that it still exists and the lease that keeps it are one step.

use rusqlite::OptionalExtension;

use super::{row_from_sql, Row, SnapshotError, SnapshotInfo, SnapshotKind, Snapshotter};
use img_llb::Digest;

impl Snapshotter {
    /// Takes committed snapshot `key`, and the blobs that go with it (e.g. the manifest it was
    /// unpacked from), into this snapshotter's lease. `None` when the snapshot is gone, is not
    /// committed, was made by the other backend, or one of `blobs` is gone: the caller then
    /// builds it again. Without a lease ([`Snapshotter::with_lease`]) it only checks.
    ///
    /// The check and the lease are one IMMEDIATE transaction, the lock garbage collection
    /// sweeps under, so a concurrent `img prune --all` removes the snapshot either before the
    /// check (`None`) or not at all; checking first and leasing afterwards would leave a window
    /// in which the build is handed a snapshot that no longer exists.
    ///
    /// A snapshot of the other backend counts as absent rather than as an error: its directory
    /// means something else (an overlayfs snapshot holds only its diff, which a native child
    /// would copy as if it were the whole tree), so the result must be made again here.
    pub fn lease_existing(
        &self,
        key: &str,
        blobs: &[Digest],
    ) -> Result<Option<SnapshotInfo>, SnapshotError> {
        let row = self
            .db
            // Only the lease changes: it need not outlive the process (see
            // `Db::write_transient`).
            .write_transient_with(|tx| -> Result<Option<Row>, SnapshotError> {
                let row = tx
                    .query_row(
                        "SELECT id, key, parent, kind, backend, size, created FROM snapshots WHERE key = ?1",
                        [key],
                        row_from_sql,
                    )
                    .optional()
                    .map_err(|e| self.db.err(e))?;
                let Some(row) = row else {
                    return Ok(None);
                };
                if row.kind != SnapshotKind::Committed || row.backend != self.backend {
                    return Ok(None);
                }
                // Blobs are swept under this same lock, so a blob seen here stays.
                if blobs
                    .iter()
                    .any(|blob| !self.state.blobs().join(blob.hex()).is_file())
                {
                    return Ok(None);
                }
                if let Some(lease) = &self.lease {
                    self.lease_in(tx, key)?;
                    for blob in blobs {
                        tx.execute(
                            "INSERT OR IGNORE INTO lease_resources (lease, kind, resource) VALUES (?1, 'blob', ?2)",
                            (lease, blob.to_string()),
                        )
                        .map_err(|e| self.db.err(e))?;
                    }
                }
                Ok(Some(row))
            })?;
        // Outside the transaction: `info` reads the parent's row through the same connection.
        row.map(|row| self.info(&row)).transpose()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::{BackendChoice, GcRoots, StateDir, Store};

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StateDir::at(dir.path())).unwrap();
        (dir, store)
    }

    #[test]
    fn a_leased_existing_snapshot_survives_gc_and_a_removed_one_is_reported_absent() {
        let (_dir, store) = store();
        let plain = store.snapshotter(BackendChoice::Native).unwrap();
        plain.prepare("a", None).unwrap();
        plain.commit("a", "done-a").unwrap();
        plain.prepare("b", None).unwrap();
        plain.commit("b", "done-b").unwrap();

        let lease = store.lease(Duration::from_secs(60)).unwrap();
        let leased = plain.with_lease(&lease);
        let info = leased.lease_existing("done-a", &[]).unwrap().unwrap();
        assert_eq!(info.key, "done-a");
        let report = store.gc(&GcRoots::default()).unwrap();
        assert_eq!(report.snapshots_removed, vec!["done-b".to_owned()]);
        assert!(leased.lease_existing("done-a", &[]).unwrap().is_some());
        assert!(leased.lease_existing("done-b", &[]).unwrap().is_none());
        assert!(leased.lease_existing("never", &[]).unwrap().is_none());
    }

    #[test]
    fn an_active_snapshot_or_a_missing_blob_is_not_reused() {
        let (_dir, store) = store();
        let snapshotter = store.snapshotter(BackendChoice::Native).unwrap();
        snapshotter.prepare("active", None).unwrap();
        assert!(snapshotter.lease_existing("active", &[]).unwrap().is_none());
        snapshotter.commit("active", "done").unwrap();
        let missing = crate::Digest::of(b"no such manifest");
        assert!(snapshotter
            .lease_existing("done", &[missing])
            .unwrap()
            .is_none());
        let blob = store.content().write_blob(b"manifest", None).unwrap();
        assert!(snapshotter
            .lease_existing("done", &[blob.digest])
            .unwrap()
            .is_some());
    }

    #[test]
    fn commit_flushes_the_filesystem_before_recording() {
        let (_dir, store) = store();
        let snapshotter = store.snapshotter(BackendChoice::Native).unwrap();
        let active = snapshotter.prepare("step", None).unwrap();
        let before = crate::fsutil::SYNCFS_CALLS.with(|c| c.get());
        snapshotter.commit(&active.key, "step-done").unwrap();
        let after = crate::fsutil::SYNCFS_CALLS.with(|c| c.get());
        assert_eq!(after - before, 1, "commit must syncfs once");
    }
}
