//! Where pulled blobs go and where pushed blobs come from.
//!
//! The content store belongs to another crate; these traits are the narrow seam. A download
//! streams into a [`BlobWriter`] while the digest is computed, and only a verified blob is
//! committed: dropping the writer uncommitted discards it.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};

use oci_spec::image::{Descriptor, Digest};
use sha2::Digest as _;

/// Receives blobs from pulls.
pub trait BlobSink: Sync {
    /// Whether the blob is already stored (then it is not downloaded).
    fn contains(&self, digest: &Digest) -> io::Result<bool>;
    /// Starts writing a blob. The writer is committed only after size and digest are
    /// verified; dropping it without commit must discard what was written.
    fn begin(&self, descriptor: &Descriptor) -> io::Result<Box<dyn BlobWriter>>;
}

/// A blob being written; see [`BlobSink::begin`].
pub trait BlobWriter: Write + Send {
    /// Makes the fully written, verified blob visible in the store.
    fn commit(self: Box<Self>) -> io::Result<()>;
}

/// Provides blobs (and child manifests of an index) for pushes.
pub trait BlobSource: Sync {
    /// Opens a blob for reading from its start.
    fn open(&self, digest: &Digest) -> io::Result<Box<dyn Read + Send>>;
}

/// A directory of blobs laid out as in an OCI image layout: `blobs/<algorithm>/<hex>`.
///
/// Implements both [`BlobSink`] and [`BlobSource`]; used for `oci-layout` style output and by
/// this crate's tests and transfer benchmark.
#[derive(Debug, Clone)]
pub struct DirBlobStore {
    root: PathBuf,
}

impl DirBlobStore {
    /// A store rooted at `root` (created if missing).
    pub fn new(root: impl Into<PathBuf>) -> io::Result<Self> {
        let root = root.into();
        std::fs::create_dir_all(root.join("blobs"))?;
        Ok(DirBlobStore { root })
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob with `digest` lives (whether or not it exists).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(digest.algorithm().to_string())
            .join(digest.digest())
    }

    /// Stores `bytes` as a blob and returns its sha256 digest.
    pub fn put_bytes(&self, bytes: &[u8]) -> io::Result<Digest> {
        let digest = sha256_digest(bytes);
        let path = self.blob_path(&digest);
        std::fs::create_dir_all(path.parent().expect("blob paths have a parent"))?;
        std::fs::write(&path, bytes)?;
        Ok(digest)
    }
}

/// The sha256 digest of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> Digest {
    let hex = hex::encode(sha2::Sha256::digest(bytes));
    Digest::from_str(&format!("sha256:{hex}")).expect("a sha256 hex digest is valid")
}

impl BlobSink for DirBlobStore {
    fn contains(&self, digest: &Digest) -> io::Result<bool> {
        Ok(self.blob_path(digest).is_file())
    }

    fn begin(&self, descriptor: &Descriptor) -> io::Result<Box<dyn BlobWriter>> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let dest = self.blob_path(descriptor.digest());
        let dir = dest.parent().expect("blob paths have a parent");
        std::fs::create_dir_all(dir)?;
        // The temporary file sits beside its destination so the commit is a rename.
        let tmp = dir.join(format!(
            ".{}.{}.{}.partial",
            descriptor.digest().digest(),
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let file = std::fs::File::create(&tmp)?;
        Ok(Box::new(DirBlobWriter {
            file: Some(io::BufWriter::with_capacity(256 << 10, file)),
            tmp,
            dest,
        }))
    }
}

impl BlobSource for DirBlobStore {
    fn open(&self, digest: &Digest) -> io::Result<Box<dyn Read + Send>> {
        Ok(Box::new(std::fs::File::open(self.blob_path(digest))?))
    }
}

struct DirBlobWriter {
    file: Option<io::BufWriter<std::fs::File>>,
    tmp: PathBuf,
    dest: PathBuf,
}

impl Write for DirBlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file
            .as_mut()
            .ok_or_else(|| io::Error::other("blob writer already closed"))?
            .write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

impl BlobWriter for DirBlobWriter {
    fn commit(mut self: Box<Self>) -> io::Result<()> {
        let file = self.file.take().expect("committed once");
        let file = file.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&self.tmp, &self.dest)
    }
}

impl Drop for DirBlobWriter {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use oci_spec::image::MediaType;

    use super::*;

    #[test]
    fn uncommitted_writes_leave_nothing() {
        let dir = std::env::temp_dir().join(format!("img-registry-store-{}", std::process::id()));
        let store = DirBlobStore::new(&dir).unwrap();
        let digest = sha256_digest(b"hello");
        let desc = Descriptor::new(MediaType::ImageLayer, 5, digest.clone());
        let mut w = store.begin(&desc).unwrap();
        w.write_all(b"hel").unwrap();
        drop(w);
        assert!(!store.contains(&digest).unwrap());
        let parent = store.blob_path(&digest).parent().unwrap().to_path_buf();
        assert_eq!(
            std::fs::read_dir(&parent).unwrap().count(),
            0,
            "temporary file removed"
        );
        let mut w = store.begin(&desc).unwrap();
        w.write_all(b"hello").unwrap();
        w.commit().unwrap();
        assert!(store.contains(&digest).unwrap());
        let mut back = String::new();
        store
            .open(&digest)
            .unwrap()
            .read_to_string(&mut back)
            .unwrap();
        assert_eq!(back, "hello");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
