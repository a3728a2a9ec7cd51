//! The interface every place a cache can live implements.

use std::io::{self, Write};
use std::sync::{Arc, Mutex};

use img_registry::{BlobSink, BlobSource, BlobWriter, Descriptor, Digest};

use crate::error::CacheError;
use crate::format::{CacheConfig, CacheLayer};

/// Where a cache lives: a registry reference or an OCI layout directory.
///
/// Every method may be called from several threads at once (layers of different steps are
/// fetched in parallel) and blocks on I/O: call it from a plain thread, never from rayon.
pub trait CacheBackend: Send + Sync + std::fmt::Debug {
    /// The location as the user gave it, for messages.
    fn location(&self) -> String;

    /// The registry reference the cache lives at, when it is in a registry: its layers can
    /// be mounted from there into another repository of the same registry.
    fn registry_reference(&self) -> Option<String> {
        None
    }

    /// Reads the cache's config. Only the manifest and the config blob are fetched.
    fn read(&self) -> Result<CacheConfig, CacheError>;

    /// Stores `layer` into `sink`, verified against its digest and size; a blob the sink
    /// already holds is not fetched again.
    fn fetch_layer(&self, layer: &CacheLayer, sink: &dyn BlobSink) -> Result<(), CacheError>;

    /// Writes `config` with every layer it names, read from `blobs`: blobs first, the
    /// manifest last, so a reader (or a concurrent writer) never sees a manifest whose blobs
    /// are missing.
    fn write(
        &self,
        config: &CacheConfig,
        blobs: &dyn BlobSource,
    ) -> Result<WriteReport, CacheError>;
}

/// What [`CacheBackend::write`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WriteReport {
    /// The digest of the cache manifest.
    pub manifest: Digest,
    /// Layers the cache names.
    pub layers: usize,
    /// Their total size in bytes.
    pub size: u64,
}

impl WriteReport {
    pub(crate) fn new(manifest: Digest, config: &CacheConfig) -> Self {
        WriteReport {
            manifest,
            layers: config.layers.len(),
            size: config.layers.iter().map(|l| l.size).sum(),
        }
    }
}

/// A [`BlobSource`] serving some blobs from memory (the cache's config and manifest) and the
/// rest from another source (the content store).
pub(crate) struct WithExtraBlobs<'a> {
    pub extra: Vec<(Digest, Vec<u8>)>,
    pub inner: &'a dyn BlobSource,
}

impl BlobSource for WithExtraBlobs<'_> {
    fn open(&self, digest: &Digest) -> io::Result<Box<dyn io::Read + Send>> {
        match self.extra.iter().find(|(d, _)| d == digest) {
            Some((_, bytes)) => Ok(Box::new(io::Cursor::new(bytes.clone()))),
            None => self.inner.open(digest),
        }
    }
}

/// A [`BlobSink`] keeping one small blob in memory (a config fetched with the registry
/// client, which verifies it on the way).
#[derive(Default)]
pub(crate) struct MemorySink {
    pub bytes: Arc<Mutex<Option<Vec<u8>>>>,
}

struct MemoryWriter {
    buf: Vec<u8>,
    out: Arc<Mutex<Option<Vec<u8>>>>,
    limit: usize,
}

/// Cache configs are read into memory; refuse absurd ones.
const CONFIG_LIMIT: usize = 256 << 20;

impl BlobSink for MemorySink {
    fn contains(&self, _: &Digest) -> io::Result<bool> {
        Ok(false)
    }

    fn begin(&self, _: &Descriptor) -> io::Result<Box<dyn BlobWriter>> {
        Ok(Box::new(MemoryWriter {
            buf: Vec::new(),
            out: self.bytes.clone(),
            limit: CONFIG_LIMIT,
        }))
    }
}

impl Write for MemoryWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.buf.len() + buf.len() > self.limit {
            return Err(io::Error::other("cache config larger than 256 MiB"));
        }
        self.buf.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl BlobWriter for MemoryWriter {
    fn commit(self: Box<Self>) -> io::Result<()> {
        *self.out.lock().unwrap_or_else(|e| e.into_inner()) = Some(self.buf);
        Ok(())
    }
}
