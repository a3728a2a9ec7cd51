//! The store: one state directory opened once, handing out the content store, image store,
//! snapshotter and leases, and running garbage collection over all of them.

use std::collections::{HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::content::{ContentError, ContentStore};
use crate::db::{now_unix, DatabaseError, Db};
use crate::fsutil;
use crate::image::{self, ImageError, ImageStore};
use crate::lease::Lease;
use crate::snapshotter::{self, BackendChoice, SnapshotError, Snapshotter};
use crate::state::StateDir;
use img_llb::Digest;

/// A failure opening the store or collecting garbage.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Creating or reading the state directory failed.
    #[error("state directory {path}: {source}; check permissions or pick another with --state")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The database failed.
    #[error(transparent)]
    Database(#[from] DatabaseError),
    /// Writing the OCI layout index failed.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// Removing a snapshot failed.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// Removing a blob failed.
    #[error(transparent)]
    Content(#[from] ContentError),
}

/// What garbage collection must keep besides named images and leased items: the caller's own
/// records (e.g. the solver's cache) that point at blobs and snapshots.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcRoots {
    /// Blobs to keep (with everything a manifest or index among them references).
    pub blobs: Vec<Digest>,
    /// Snapshot keys to keep (with their parents).
    pub snapshots: Vec<String>,
}

/// What garbage collection removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Blobs deleted.
    pub blobs_removed: Vec<Digest>,
    /// Snapshots deleted.
    pub snapshots_removed: Vec<String>,
    /// Bytes freed on disk.
    pub bytes_reclaimed: u64,
}

/// What a disk-usage record describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum UsageKind {
    /// A blob in the content store.
    Blob,
    /// A snapshot directory.
    Snapshot,
}

/// One line of `img du`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRecord {
    /// Blob or snapshot.
    pub kind: UsageKind,
    /// The digest or snapshot key.
    pub id: String,
    /// Bytes on disk.
    pub size: u64,
}

/// An open state directory.
#[derive(Clone)]
pub struct Store {
    state: StateDir,
    db: Arc<Db>,
}

impl Store {
    /// Opens (creating if needed) the state directory: its folders, the OCI layout files and
    /// the database. Safe to call from several processes at once.
    pub fn open(state: &StateDir) -> Result<Store, StoreError> {
        for dir in [
            state.root().to_owned(),
            state.blobs(),
            state.snapshots(),
            state.tmp(),
        ] {
            std::fs::create_dir_all(&dir).map_err(|source| StoreError::Io {
                path: dir.clone(),
                source,
            })?;
        }
        let layout = state.content().join("oci-layout");
        if !layout.exists() {
            fsutil::write_atomic(&state.tmp(), &layout, br#"{"imageLayoutVersion":"1.0.0"}"#)
                .map_err(|source| StoreError::Io {
                    path: layout.clone(),
                    source,
                })?;
        }
        let db = Arc::new(Db::open(&state.database())?);
        let store = Store {
            state: state.clone(),
            db,
        };
        if !state.content().join("index.json").exists() {
            // Under the write lock, from the database, so it cannot overwrite a newer index.
            store.db.write_with(|tx| -> Result<(), StoreError> {
                Ok(image::regenerate_index(&store.state, &store.db, tx)?)
            })?;
        }
        Ok(store)
    }

    /// The state directory.
    pub fn state(&self) -> &StateDir {
        &self.state
    }

    /// Blobs by digest.
    pub fn content(&self) -> ContentStore {
        ContentStore::new(self.state.clone(), self.db.clone())
    }

    /// Image names.
    pub fn images(&self) -> ImageStore {
        ImageStore::new(self.state.clone(), self.db.clone())
    }

    /// A snapshotter with the chosen backend (`auto` probes overlayfs in a user namespace).
    pub fn snapshotter(&self, choice: BackendChoice) -> Result<Snapshotter, SnapshotError> {
        Snapshotter::new(self.state.clone(), self.db.clone(), choice)
    }

    /// Takes a lease that protects what is added to it from garbage collection until it is
    /// dropped or `ttl` passes (whichever is first; the expiry covers a crashed process).
    pub fn lease(&self, ttl: Duration) -> Result<Lease, DatabaseError> {
        Lease::create(self.db.clone(), ttl)
    }

    /// Sizes of every blob and snapshot.
    pub fn disk_usage(&self) -> Result<Vec<UsageRecord>, StoreError> {
        let content = self.content();
        let mut out = Vec::new();
        for d in content.list()? {
            if let Ok(size) = content.size(&d) {
                out.push(UsageRecord {
                    kind: UsageKind::Blob,
                    id: d.to_string(),
                    size,
                });
            }
        }
        let rows: Vec<(i64, String, Option<i64>)> = self.db.read(|c| {
            let mut st = c.prepare("SELECT id, key, size FROM snapshots ORDER BY id")?;
            let rows = st
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect();
            rows
        })?;
        for (id, key, size) in rows {
            let size = match size {
                Some(s) => s as u64,
                None => snapshotter::disk_usage(&self.state.snapshots().join(id.to_string()))
                    .unwrap_or(0),
            };
            out.push(UsageRecord {
                kind: UsageKind::Snapshot,
                id: key,
                size,
            });
        }
        Ok(out)
    }

    /// Deletes every blob and snapshot reachable from no image, no unexpired lease and none of
    /// `roots`. Runs under the database write lock, which blob commits and snapshot creation
    /// with a lease also take, so a concurrent build never loses what it leased.
    pub fn gc(&self, roots: &GcRoots) -> Result<GcReport, StoreError> {
        let content = self.content();
        let mut report = GcReport::default();
        let mut doomed_dirs = Vec::new();
        self.db.write_with(|tx| -> Result<(), StoreError> {
            let err = |e| self.db.err(e);
            tx.execute("DELETE FROM leases WHERE expires < ?1", [now_unix()])
                .map_err(err)?;
            let leased: Vec<(String, String)> = {
                let mut st = tx
                    .prepare("SELECT kind, resource FROM lease_resources")
                    .map_err(err)?;
                let rows = st
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                    .map_err(err)?;
                rows.collect::<rusqlite::Result<_>>().map_err(err)?
            };
            let image_digests: Vec<String> = {
                let mut st = tx.prepare("SELECT digest FROM images").map_err(err)?;
                let rows = st.query_map([], |r| r.get(0)).map_err(err)?;
                rows.collect::<rusqlite::Result<_>>().map_err(err)?
            };

            // Mark blobs: images, leases and roots, then what their manifests reference.
            let mut queue: VecDeque<Digest> = roots.blobs.iter().cloned().collect();
            queue.extend(
                image_digests
                    .iter()
                    .filter_map(|d| d.parse::<Digest>().ok()),
            );
            queue.extend(
                leased
                    .iter()
                    .filter(|(k, _)| k == "blob")
                    .filter_map(|(_, d)| d.parse::<Digest>().ok()),
            );
            let mut live: HashSet<Digest> = HashSet::new();
            while let Some(d) = queue.pop_front() {
                if live.insert(d) {
                    queue.extend(referenced_blobs(&content, &d));
                }
            }

            // Mark snapshots: roots and leases, with their parent chains.
            let rows: Vec<(i64, String, Option<i64>)> = {
                let mut st = tx
                    .prepare("SELECT id, key, parent FROM snapshots")
                    .map_err(err)?;
                let rows = st
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .map_err(err)?;
                rows.collect::<rusqlite::Result<_>>().map_err(err)?
            };
            let keep_keys: HashSet<&str> = roots
                .snapshots
                .iter()
                .map(String::as_str)
                .chain(
                    leased
                        .iter()
                        .filter(|(k, _)| k == "snapshot")
                        .map(|(_, s)| s.as_str()),
                )
                .collect();
            let parent_of: std::collections::HashMap<i64, Option<i64>> =
                rows.iter().map(|(id, _, p)| (*id, *p)).collect();
            let mut live_snaps = HashSet::new();
            for (id, key, _) in &rows {
                if keep_keys.contains(key.as_str()) {
                    let mut next = Some(*id);
                    while let Some(i) = next {
                        if !live_snaps.insert(i) {
                            break;
                        }
                        next = parent_of.get(&i).copied().flatten();
                    }
                }
            }

            // Sweep snapshots, children (higher ids) first.
            let mut dead: Vec<&(i64, String, Option<i64>)> = rows
                .iter()
                .filter(|(id, _, _)| !live_snaps.contains(id))
                .collect();
            dead.sort_by_key(|(id, _, _)| std::cmp::Reverse(*id));
            for (id, key, _) in dead {
                tx.execute("DELETE FROM snapshots WHERE id = ?1", [id])
                    .map_err(err)?;
                report.snapshots_removed.push(key.clone());
                doomed_dirs.extend(snapshotter::trash_snapshot_dir(&self.state, *id)?);
            }
            // Directories with no row: a crash between rename and commit. Only under the
            // lock is "no row" final: prepare renames a directory in before its row commits.
            let kept: HashSet<i64> = rows
                .iter()
                .map(|(id, _, _)| *id)
                .filter(|id| live_snaps.contains(id))
                .collect();
            let snaps = self.state.snapshots();
            let entries = std::fs::read_dir(&snaps).map_err(|source| StoreError::Io {
                path: snaps.clone(),
                source,
            })?;
            for entry in entries.flatten() {
                let id = entry
                    .file_name()
                    .to_str()
                    .and_then(|s| s.parse::<i64>().ok());
                if let Some(id) = id.filter(|id| !kept.contains(id)) {
                    doomed_dirs.extend(snapshotter::trash_snapshot_dir(&self.state, id)?);
                }
            }

            // Sweep blobs while still holding the lock.
            for d in content.list()? {
                if !live.contains(&d) {
                    let size = std::fs::symlink_metadata(content.path(&d))
                        .map(|m| std::os::unix::fs::MetadataExt::blocks(&m) * 512)
                        .unwrap_or(0);
                    content.delete(&d)?;
                    report.bytes_reclaimed += size;
                    report.blobs_removed.push(d);
                }
            }
            Ok(())
        })?;
        for trash in doomed_dirs {
            report.bytes_reclaimed += snapshotter::disk_usage(&trash).unwrap_or(0);
            snapshotter::force_remove_dir_all(&trash).map_err(|source| StoreError::Io {
                path: trash,
                source,
            })?;
        }
        self.remove_stale_staging();
        Ok(report)
    }

    /// Staging files and directories older than a day: left by a crashed writer.
    fn remove_stale_staging(&self) {
        let day = Duration::from_secs(24 * 3600);
        let Ok(entries) = std::fs::read_dir(self.state.tmp()) else {
            return;
        };
        for entry in entries.flatten() {
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > day);
            if old {
                let p = entry.path();
                // Best effort: another process may be removing the same leftovers.
                let _ = if p.is_dir() {
                    snapshotter::force_remove_dir_all(&p)
                } else {
                    std::fs::remove_file(&p)
                };
            }
        }
    }
}

/// The blobs a manifest or index refers to (nothing for other blobs).
fn referenced_blobs(content: &ContentStore, digest: &Digest) -> Vec<Digest> {
    // Manifests and indexes are small JSON documents; layers are never parsed.
    const MAX_MANIFEST: u64 = 4 << 20;
    if content.size(digest).map_or(true, |s| s > MAX_MANIFEST) {
        return Vec::new();
    }
    let Ok(bytes) = content.read_blob(digest) else {
        return Vec::new();
    };
    if bytes.first() != Some(&b'{') {
        return Vec::new();
    }
    let Ok(doc) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut push = |v: &serde_json::Value| {
        if let Some(d) = v
            .get("digest")
            .and_then(|d| d.as_str())
            .and_then(|d| d.parse().ok())
        {
            out.push(d);
        }
    };
    for key in ["manifests", "layers", "blobs"] {
        if let Some(list) = doc.get(key).and_then(|l| l.as_array()) {
            list.iter().for_each(&mut push);
        }
    }
    for key in ["config", "subject"] {
        if let Some(v) = doc.get(key) {
            push(v);
        }
    }
    out
}
