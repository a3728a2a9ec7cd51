//! The content store as the registry client's blob sink and source: pulls stream into it,
//! pushes read from it. Blobs written or found while pulling join the build's lease, so a
//! concurrent `img prune` cannot delete them before an image or cache record references them.

use std::io::{self, Read, Write};

use img_registry::{BlobSink, BlobSource, Descriptor};
use img_snapshot::{ContentError, ContentStore, Digest, Lease};

/// [`ContentStore`] behind img-registry's [`BlobSink`] and [`BlobSource`].
pub struct LocalBlobs<'a> {
    content: ContentStore,
    lease: Option<&'a Lease>,
}

impl std::fmt::Debug for LocalBlobs<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalBlobs")
            .field("lease", &self.lease)
            .finish()
    }
}

impl<'a> LocalBlobs<'a> {
    /// Blobs of `content`; new and existing blobs of a pull join `lease` when given.
    pub fn new(content: ContentStore, lease: Option<&'a Lease>) -> Self {
        LocalBlobs { content, lease }
    }
}

fn local_digest(digest: &img_registry::Digest) -> io::Result<Digest> {
    Digest::try_from(digest).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

fn content_io(err: ContentError) -> io::Error {
    match err {
        ContentError::NotFound { .. } => io::Error::new(io::ErrorKind::NotFound, err),
        other => io::Error::other(other),
    }
}

impl BlobSink for LocalBlobs<'_> {
    fn contains(&self, digest: &img_registry::Digest) -> io::Result<bool> {
        let digest = local_digest(digest)?;
        let present = self.content.exists(&digest);
        if present {
            if let Some(lease) = self.lease {
                lease.add_blob(&digest).map_err(io::Error::other)?;
            }
        }
        Ok(present)
    }

    fn begin(&self, descriptor: &Descriptor) -> io::Result<Box<dyn img_registry::BlobWriter>> {
        let digest = local_digest(descriptor.digest())?;
        let mut writer = self.content.ingest(Some(&digest)).map_err(content_io)?;
        if let Some(lease) = self.lease {
            writer = writer.with_lease(lease);
        }
        Ok(Box::new(LocalBlobWriter(writer)))
    }
}

impl BlobSource for LocalBlobs<'_> {
    fn open(&self, digest: &img_registry::Digest) -> io::Result<Box<dyn Read + Send>> {
        let file = self
            .content
            .open(&local_digest(digest)?)
            .map_err(content_io)?;
        Ok(Box::new(file))
    }
}

struct LocalBlobWriter(img_snapshot::BlobWriter);

impl Write for LocalBlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl img_registry::BlobWriter for LocalBlobWriter {
    fn commit(self: Box<Self>) -> io::Result<()> {
        self.0.commit().map(drop).map_err(content_io)
    }
}
