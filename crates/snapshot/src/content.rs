//! The content store: blobs addressed by sha256 under `<state>/content/blobs/sha256`.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::sync::Arc;

use tempfile::NamedTempFile;

use crate::db::{DatabaseError, Db};
use crate::digest::HashingWriter;
use crate::fsutil;
use crate::lease::Lease;
use crate::state::StateDir;
use img_llb::Digest;

/// A failure of the content store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ContentError {
    /// No blob with this digest is stored.
    #[error("blob {digest} not found in the content store")]
    NotFound {
        /// The digest looked up.
        digest: Digest,
    },
    /// The data written does not hash to the digest the caller expected; nothing was stored.
    #[error("blob digest mismatch: expected {expected}, got {actual} ({size} bytes); the data is corrupt or truncated")]
    DigestMismatch {
        /// The digest the caller promised.
        expected: Digest,
        /// The digest of the data actually written.
        actual: Digest,
        /// How many bytes were written.
        size: u64,
    },
    /// A filesystem operation on a blob failed.
    #[error("content store i/o on {path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Recording the blob in a lease failed.
    #[error(transparent)]
    Database(#[from] DatabaseError),
}

/// A stored blob: its digest and size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    /// The sha256 of the content.
    pub digest: Digest,
    /// The size in bytes.
    pub size: u64,
}

/// Blobs by digest. Cheap to clone; shares the store's database.
#[derive(Clone)]
pub struct ContentStore {
    state: StateDir,
    db: Arc<Db>,
}

impl ContentStore {
    pub(crate) fn new(state: StateDir, db: Arc<Db>) -> Self {
        ContentStore { state, db }
    }

    /// Starts writing a blob. With `expected`, [`BlobWriter::commit`] verifies the digest and
    /// stores nothing on mismatch.
    pub fn ingest(&self, expected: Option<&Digest>) -> Result<BlobWriter, ContentError> {
        let tmp_dir = self.state.tmp();
        let tmp = NamedTempFile::new_in(&tmp_dir).map_err(|source| ContentError::Io {
            path: tmp_dir,
            source,
        })?;
        Ok(BlobWriter {
            out: HashingWriter::new(BufWriter::with_capacity(1 << 20, tmp)),
            expected: expected.cloned(),
            store: self.clone(),
            lease: None,
        })
    }

    /// Stores `bytes` as one blob.
    pub fn write_blob(
        &self,
        bytes: &[u8],
        expected: Option<&Digest>,
    ) -> Result<BlobInfo, ContentError> {
        let mut w = self.ingest(expected)?;
        w.write_all(bytes).map_err(|source| ContentError::Io {
            path: self.state.tmp(),
            source,
        })?;
        w.commit()
    }

    /// The path of a blob (which may not exist). Read-only: never write to it.
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.state.blobs().join(digest.hex())
    }

    /// Opens a blob for reading.
    pub fn open(&self, digest: &Digest) -> Result<File, ContentError> {
        let path = self.path(digest);
        File::open(&path).map_err(|source| self.not_found_or(digest, path, source))
    }

    /// Reads a whole blob (manifests, configs).
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>, ContentError> {
        let path = self.path(digest);
        std::fs::read(&path).map_err(|source| self.not_found_or(digest, path, source))
    }

    /// Whether a blob is stored.
    pub fn exists(&self, digest: &Digest) -> bool {
        self.path(digest).is_file()
    }

    /// The size of a stored blob.
    pub fn size(&self, digest: &Digest) -> Result<u64, ContentError> {
        let path = self.path(digest);
        std::fs::metadata(&path)
            .map(|m| m.len())
            .map_err(|source| self.not_found_or(digest, path, source))
    }

    /// Deletes a blob; deleting a missing blob is not an error.
    pub fn delete(&self, digest: &Digest) -> Result<(), ContentError> {
        let path = self.path(digest);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(ContentError::Io { path, source: e })
            }
            _ => Ok(()),
        }
    }

    /// Every stored blob.
    pub fn list(&self) -> Result<Vec<Digest>, ContentError> {
        let dir = self.state.blobs();
        let entries = std::fs::read_dir(&dir).map_err(|source| ContentError::Io {
            path: dir.clone(),
            source,
        })?;
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| ContentError::Io {
                path: dir.clone(),
                source,
            })?;
            if let Ok(d) = format!("sha256:{}", entry.file_name().to_string_lossy()).parse() {
                out.push(d);
            }
        }
        out.sort();
        Ok(out)
    }

    fn not_found_or(&self, digest: &Digest, path: PathBuf, source: io::Error) -> ContentError {
        if source.kind() == io::ErrorKind::NotFound {
            ContentError::NotFound { digest: *digest }
        } else {
            ContentError::Io { path, source }
        }
    }
}

/// A blob being written: a temporary file in `<state>/tmp`, hashed as it is written, renamed
/// to `blobs/sha256/<hex>` by [`BlobWriter::commit`]. Dropping it without commit stores nothing.
pub struct BlobWriter {
    out: HashingWriter<BufWriter<NamedTempFile>>,
    expected: Option<Digest>,
    store: ContentStore,
    lease: Option<String>,
}

impl BlobWriter {
    /// Records the blob in `lease` as part of the commit, so a concurrent garbage collection
    /// cannot delete it between its rename and the caller referencing it.
    pub fn with_lease(self, lease: &Lease) -> Self {
        self.with_lease_id(lease.id().to_owned())
    }

    pub(crate) fn with_lease_id(mut self, id: String) -> Self {
        self.lease = Some(id);
        self
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.out.written()
    }

    /// Finishes the blob: fsync, verify the digest, rename into place. An identical blob
    /// already stored is kept and the new copy discarded.
    pub fn commit(self) -> Result<BlobInfo, ContentError> {
        let tmp_dir = self.store.state.tmp();
        let io_err = |source| ContentError::Io {
            path: tmp_dir.clone(),
            source,
        };
        let (buf, digest, size) = self.out.finish();
        let tmp = buf.into_inner().map_err(|e| io_err(e.into_error()))?;
        if let Some(expected) = &self.expected {
            if *expected != digest {
                return Err(ContentError::DigestMismatch {
                    expected: *expected,
                    actual: digest,
                    size,
                });
            }
        }
        tmp.as_file().sync_all().map_err(io_err)?;
        let dest = self.store.path(&digest);
        let publish = || -> Result<(), ContentError> {
            if dest.is_file() {
                return Ok(());
            }
            let file = tmp.persist(&dest).map_err(|e| ContentError::Io {
                path: dest.clone(),
                source: e.error,
            })?;
            fsutil::set_readable(&file).map_err(|source| ContentError::Io {
                path: dest.clone(),
                source,
            })?;
            fsutil::sync_parent(&dest).map_err(|source| ContentError::Io {
                path: dest.clone(),
                source,
            })
        };
        match &self.lease {
            // The rename happens while the write lock is held, and gc holds the same lock
            // while it marks and sweeps, so gc sees the blob either leased or not at all.
            // The lease row need not outlive the process; the blob itself is synced by
            // `publish`.
            Some(lease) => self.store.db.write_transient_with(|tx| {
                tx.execute(
                    "INSERT OR IGNORE INTO lease_resources (lease, kind, resource) VALUES (?1, 'blob', ?2)",
                    (lease, digest.to_string()),
                )
                .map_err(|e| self.store.db.err(e))?;
                publish()
            })?,
            None => publish()?,
        }
        Ok(BlobInfo { digest, size })
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}
