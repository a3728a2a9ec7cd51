//! Layer export: entries -> deterministic tar -> compressor -> content store, in one pass.
//! The diffID (sha256 of the tar) and the blob digest are both computed as the bytes stream
//! through; the uncompressed tar is never stored.
//!
//! The stages overlap on threads of their own: the caller's thread reads the files and
//! writes the tar into 128 KiB chunks, one thread hashes the chunks for the diffID, the
//! compressor's threads compress them, and one thread hashes and writes the blob. Chunks are
//! shared, never copied, between the diffID hasher and the compressor. An uncompressed layer
//! is hashed once: its diffID is its digest.

use std::collections::HashMap;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use oci_spec::image::{Descriptor, MediaType};

use super::compression::{Compression, Compressor, Stage};
use super::gzip::CHUNK;
use super::tarfmt::{self, TarEntry};
use crate::changes::{self, EntryKind, LayerEntry};
use crate::content::{ContentError, ContentStore};
use crate::copy::read_xattrs;
use crate::digest::HashingWriter;
use img_llb::Digest;

/// A failure while exporting a layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// Reading the tree failed.
    #[error("exporting layer: reading {path}: {source}")]
    Read {
        /// The file or directory being read.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Writing the tar stream or the compressed blob failed.
    #[error("exporting layer: writing the blob: {source}")]
    Write {
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Storing the blob failed.
    #[error(transparent)]
    Content(#[from] ContentError),
}

/// How to write a layer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExportOptions {
    /// The compression (gzip by default).
    pub compression: Compression,
    /// The compression level; `None` for [`Compression::default_level`].
    pub level: Option<u32>,
    /// Clamp every mtime to at most this (unix seconds), for reproducible layers; the cli
    /// takes it from `SOURCE_DATE_EPOCH`.
    pub source_date_epoch: Option<i64>,
    /// Compression threads; 0 means one per core.
    pub threads: usize,
    /// Told how many bytes of the uncompressed tar have been written, as the export goes.
    pub progress: Option<ExportProgress>,
}

/// A callback told the number of uncompressed bytes of a layer written so far (about every
/// 128 KiB, from the exporting thread); it should return quickly.
#[derive(Clone)]
pub struct ExportProgress(Arc<dyn Fn(u64) + Send + Sync>);

impl ExportProgress {
    /// Wraps `report`.
    pub fn new(report: impl Fn(u64) + Send + Sync + 'static) -> Self {
        ExportProgress(Arc::new(report))
    }
}

impl fmt::Debug for ExportProgress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ExportProgress")
    }
}

/// Two options are equal when they report to the same callback.
impl PartialEq for ExportProgress {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for ExportProgress {}

/// A layer stored in the content store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerDescriptor {
    /// The digest of the (compressed) blob.
    pub digest: Digest,
    /// The blob size in bytes.
    pub size: u64,
    /// The digest of the uncompressed tar: the image config's `rootfs.diff_ids` entry.
    pub diff_id: Digest,
    /// The compression used.
    pub compression: Compression,
}

impl LayerDescriptor {
    /// The descriptor to put in a manifest's `layers`.
    pub fn to_oci(&self) -> Descriptor {
        Descriptor::new(
            match self.compression {
                Compression::Gzip => MediaType::ImageLayerGzip,
                Compression::Zstd => MediaType::ImageLayerZstd,
                _ => MediaType::ImageLayer,
            },
            self.size,
            self.digest.to_oci(),
        )
    }
}

/// Exports the whole tree at `root` as a layer with no parent.
pub fn export_layer(
    content: &ContentStore,
    root: &Path,
    options: &ExportOptions,
) -> Result<LayerDescriptor, ExportError> {
    let entries = changes::whole_tree(root).map_err(|source| ExportError::Read {
        path: root.to_owned(),
        source,
    })?;
    export_entries(content, None, root, &entries, options)
}

/// Writes `entries` (sorted, as produced by `changes`) from the tree at `root`.
pub(crate) fn export_entries(
    content: &ContentStore,
    lease: Option<&str>,
    root: &Path,
    entries: &[LayerEntry],
    options: &ExportOptions,
) -> Result<LayerDescriptor, ExportError> {
    let write_err = |source| ExportError::Write { source };
    let sink = ChunkSink::start(content, lease, options)?;
    let mut builder = tar::Builder::new(sink);
    let mut links: HashMap<(u64, u64), Vec<u8>> = HashMap::new();
    for entry in entries {
        write_entry(
            &mut builder,
            root,
            entry,
            options.source_date_epoch,
            &mut links,
        )?;
    }
    let sink = builder.into_inner().map_err(write_err)?;
    let (blob, diff_id) = sink.finish().map_err(write_err)?;
    let info = blob.commit()?;
    Ok(LayerDescriptor {
        digest: info.digest,
        size: info.size,
        diff_id: diff_id.unwrap_or(info.digest),
        compression: options.compression,
    })
}

/// Writes the layer in the content store's blob `blob` again with `options`' compression and
/// level (`force-compression`): the blob is decompressed as it is read, whatever its own
/// compression, and the tar goes through the same pipeline as an export, so the diffID, the
/// digest of the tar, is unchanged. `lease` keeps the new blob.
pub fn recompress_layer(
    content: &ContentStore,
    lease: Option<&str>,
    blob: &Digest,
    options: &ExportOptions,
) -> Result<LayerDescriptor, ExportError> {
    let path = content.path(blob);
    let read_err = |source| ExportError::Read {
        path: path.clone(),
        source,
    };
    let mut reader = io::BufReader::new(content.open(blob)?);
    let magic = io::BufRead::fill_buf(&mut reader).map_err(read_err)?;
    let mut tar: Box<dyn io::Read> = match super::compression::detect(magic) {
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(reader)),
        Compression::Zstd => {
            Box::new(zstd::stream::read::Decoder::with_buffer(reader).map_err(read_err)?)
        }
        _ => Box::new(reader),
    };
    let write_err = |source| ExportError::Write { source };
    let mut sink = ChunkSink::start(content, lease, options)?;
    io::copy(&mut tar, &mut sink).map_err(read_err)?;
    let (out, diff_id) = sink.finish().map_err(write_err)?;
    let info = out.commit()?;
    Ok(LayerDescriptor {
        digest: info.digest,
        size: info.size,
        diff_id: diff_id.unwrap_or(info.digest),
        compression: options.compression,
    })
}

/// The tar's destination: cuts the stream into [`CHUNK`]-sized pieces and hands each to the
/// diffID hasher and the compressor.
struct ChunkSink {
    buf: Vec<u8>,
    compressor: Compressor,
    hasher: Option<Stage<HashingWriter<io::Sink>>>,
    written: u64,
    progress: Option<ExportProgress>,
}

impl ChunkSink {
    /// A new blob in `content` (kept by `lease`), written with `options`' compression, level
    /// and threads; the diffID is hashed beside it unless the blob is the tar itself.
    fn start(
        content: &ContentStore,
        lease: Option<&str>,
        options: &ExportOptions,
    ) -> Result<ChunkSink, ExportError> {
        let mut blob = content.ingest(None)?;
        if let Some(lease) = lease {
            blob = blob.with_lease_id(lease.to_owned());
        }
        let threads = match options.threads {
            0 => std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            n => n,
        };
        let level = options.level.unwrap_or(options.compression.default_level());
        let write_err = |source| ExportError::Write { source };
        let compressor =
            Compressor::new(options.compression, level, threads, blob).map_err(write_err)?;
        // An uncompressed blob is the tar itself: its digest is the diffID.
        let hasher = match options.compression {
            Compression::Uncompressed => None,
            _ => Some(
                Stage::start("img-diffid", HashingWriter::new(io::sink())).map_err(write_err)?,
            ),
        };
        Ok(ChunkSink {
            buf: Vec::with_capacity(CHUNK),
            compressor,
            hasher,
            written: 0,
            progress: options.progress.clone(),
        })
    }

    fn emit(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Arc::new(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.written += chunk.len() as u64;
        if let Some(hasher) = &mut self.hasher {
            hasher.push(Arc::clone(&chunk))?;
        }
        self.compressor.push(chunk)?;
        if let Some(progress) = &self.progress {
            (progress.0)(self.written);
        }
        Ok(())
    }

    /// Sends the last chunk; returns the blob (not yet committed) and the diffID when it
    /// differs from the blob's digest.
    fn finish(mut self) -> io::Result<(crate::content::BlobWriter, Option<Digest>)> {
        self.emit()?;
        let diff_id = match self.hasher.take() {
            Some(hasher) => Some(hasher.finish()?.finish().1),
            None => None,
        };
        Ok((self.compressor.finish()?, diff_id))
    }
}

impl Write for ChunkSink {
    fn write(&mut self, mut data: &[u8]) -> io::Result<usize> {
        let n = data.len();
        while !data.is_empty() {
            let take = (CHUNK - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buf.len() == CHUNK {
                self.emit()?;
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        // Chunks are cut at fixed offsets; a flush does not cut one early.
        Ok(())
    }
}

fn write_entry<W: io::Write>(
    builder: &mut tar::Builder<W>,
    root: &Path,
    entry: &LayerEntry,
    epoch: Option<i64>,
    links: &mut HashMap<(u64, u64), Vec<u8>>,
) -> Result<(), ExportError> {
    let name = changes::tar_name(entry);
    let name = name.as_os_str().as_encoded_bytes();
    let write_err = |source| ExportError::Write { source };
    if entry.kind != EntryKind::Write {
        // Whiteouts carry no metadata of their own; fixed values keep layers reproducible.
        let marker = TarEntry {
            name,
            kind: tar::EntryType::Regular,
            mode: 0,
            uid: 0,
            gid: 0,
            mtime: 0,
            size: 0,
            link: None,
            device: None,
            xattrs: &[],
        };
        return tarfmt::append(builder, &marker, io::empty()).map_err(write_err);
    }
    let path = root.join(&entry.rel);
    let read_err = |source| ExportError::Read {
        path: path.clone(),
        source,
    };
    let meta = fs::symlink_metadata(&path).map_err(read_err)?;
    let ft = meta.file_type();
    let mtime = meta.mtime().max(0);
    let mtime = epoch.map_or(mtime, |e| mtime.min(e.max(0))) as u64;
    let xattrs = read_xattrs(&path).map_err(read_err)?;
    let mut tar_entry = TarEntry {
        name,
        kind: tar::EntryType::Regular,
        mode: meta.mode(),
        uid: meta.uid() as u64,
        gid: meta.gid() as u64,
        mtime,
        size: 0,
        link: None,
        device: None,
        xattrs: &xattrs,
    };
    let dir_name;
    let target;
    if ft.is_dir() {
        let mut n = name.to_vec();
        n.push(b'/');
        dir_name = n;
        tar_entry.name = &dir_name;
        tar_entry.kind = tar::EntryType::Directory;
    } else if ft.is_file() {
        if meta.nlink() > 1 {
            let key = (meta.dev(), meta.ino());
            if let Some(first) = links.get(&key).cloned() {
                tar_entry.kind = tar::EntryType::Link;
                tar_entry.link = Some(&first);
                return tarfmt::append(builder, &tar_entry, io::empty()).map_err(write_err);
            }
            links.insert(key, name.to_vec());
        }
        tar_entry.size = meta.size();
        // O_NOFOLLOW: the entry was a regular file when listed; never read through a symlink
        // swapped in since.
        let file = File::options()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(read_err)?;
        let data = ExactReader {
            inner: file.take(meta.size()),
            left: meta.size(),
        };
        return tarfmt::append(builder, &tar_entry, data).map_err(|source| match source.kind() {
            io::ErrorKind::UnexpectedEof => ExportError::Read {
                path: path.clone(),
                source,
            },
            _ => ExportError::Write { source },
        });
    } else if ft.is_symlink() {
        target = fs::read_link(&path).map_err(read_err)?;
        tar_entry.kind = tar::EntryType::Symlink;
        tar_entry.link = Some(target.as_os_str().as_encoded_bytes());
    } else if ft.is_char_device() || ft.is_block_device() {
        tar_entry.kind = if ft.is_char_device() {
            tar::EntryType::Char
        } else {
            tar::EntryType::Block
        };
        let rdev = meta.rdev();
        tar_entry.device = Some((libc::major(rdev), libc::minor(rdev)));
    } else if ft.is_fifo() {
        tar_entry.kind = tar::EntryType::Fifo;
    } else {
        // Sockets cannot be represented in a layer.
        return Ok(());
    }
    tarfmt::append(builder, &tar_entry, io::empty()).map_err(write_err)
}

/// Reads exactly the size announced in the tar header: a file that shrank while being read
/// would otherwise leave a corrupt archive.
struct ExactReader<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for ExactReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && self.left > 0 && !buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shrank while being archived",
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}
