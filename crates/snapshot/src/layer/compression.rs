//! Layer compression: parallel gzip (one gzip member made of independently compressed blocks,
//! as pigz writes, so every gzip reader accepts it), multithreaded zstd, or none. Each runs on
//! threads of its own, fed the tar in chunks.

use std::io::{self, Write};
use std::str::FromStr;
use std::sync::mpsc::{self, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::gzip::ParallelGzip;
use crate::content::BlobWriter;

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Compression {
    /// gzip, compressed on all cores (`application/vnd.oci.image.layer.v1.tar+gzip`).
    #[default]
    Gzip,
    /// zstd, multithreaded (`application/vnd.oci.image.layer.v1.tar+zstd`).
    Zstd,
    /// A plain tar (`application/vnd.oci.image.layer.v1.tar`).
    Uncompressed,
}

impl Compression {
    /// The OCI media type of a layer compressed this way.
    pub fn media_type(self) -> &'static str {
        match self {
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
            Compression::Uncompressed => "application/vnd.oci.image.layer.v1.tar",
        }
    }

    /// The default level: 6 for gzip (what `gzip`, `pigz` and Go's gzip use), 3 for zstd.
    pub fn default_level(self) -> u32 {
        match self {
            Compression::Gzip => 6,
            Compression::Zstd => 3,
            Compression::Uncompressed => 0,
        }
    }
}

impl FromStr for Compression {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "gzip" => Ok(Compression::Gzip),
            "zstd" => Ok(Compression::Zstd),
            "uncompressed" | "none" => Ok(Compression::Uncompressed),
            other => Err(format!(
                "unknown compression {other:?}: use gzip, zstd or uncompressed"
            )),
        }
    }
}

/// The compressing stage of a layer export: takes the tar in chunks and writes the blob,
/// on threads of its own so the caller can go on reading files meanwhile.
pub(crate) enum Compressor {
    /// Chunks compressed on every core, see [`ParallelGzip`].
    Gzip(ParallelGzip<BlobWriter>),
    /// zstd's own worker threads, fed by a thread that owns the encoder.
    Zstd(Stage<zstd::stream::Encoder<'static, BlobWriter>>),
    /// The tar itself, written by a thread of its own.
    Plain(Stage<BlobWriter>),
}

impl Compressor {
    pub(crate) fn new(
        kind: Compression,
        level: u32,
        threads: usize,
        out: BlobWriter,
    ) -> io::Result<Compressor> {
        Ok(match kind {
            Compression::Gzip => Compressor::Gzip(ParallelGzip::new(out, level, threads)?),
            Compression::Zstd => {
                let mut enc = zstd::stream::Encoder::new(out, level as i32)?;
                // Worker threads write the frame in order, so the output is the same for any
                // thread count.
                enc.multithread(threads.max(1) as u32)?;
                Compressor::Zstd(Stage::start("img-zstd", enc)?)
            }
            Compression::Uncompressed => Compressor::Plain(Stage::start("img-blob", out)?),
        })
    }

    /// Takes the next chunk of the tar; see [`ParallelGzip::push_chunk`] for the sizes.
    pub(crate) fn push(&mut self, chunk: Arc<Vec<u8>>) -> io::Result<()> {
        match self {
            Compressor::Gzip(w) => w.push_chunk(chunk),
            Compressor::Zstd(w) => w.push(chunk),
            Compressor::Plain(w) => w.push(chunk),
        }
    }

    /// Ends the stream and returns the blob, not yet committed.
    pub(crate) fn finish(self) -> io::Result<BlobWriter> {
        match self {
            Compressor::Gzip(w) => w.finish(),
            Compressor::Zstd(w) => w.finish()?.finish(),
            Compressor::Plain(w) => w.finish(),
        }
    }
}

/// A thread writing chunks into `W` in the order they were pushed.
pub(crate) struct Stage<W: Write + Send + 'static> {
    chunks: Option<SyncSender<Arc<Vec<u8>>>>,
    thread: Option<JoinHandle<io::Result<W>>>,
}

impl<W: Write + Send + 'static> Stage<W> {
    pub(crate) fn start(name: &str, mut out: W) -> io::Result<Self> {
        // A few chunks in flight: enough to smooth out a slow write, little memory.
        let (chunks, rx) = mpsc::sync_channel::<Arc<Vec<u8>>>(8);
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                for chunk in rx {
                    out.write_all(&chunk)?;
                }
                Ok(out)
            })?;
        Ok(Stage {
            chunks: Some(chunks),
            thread: Some(thread),
        })
    }

    pub(crate) fn push(&mut self, chunk: Arc<Vec<u8>>) -> io::Result<()> {
        let sent = self.chunks.as_ref().map(|tx| tx.send(chunk));
        match sent {
            Some(Ok(())) => Ok(()),
            // The thread stopped on an error: report it.
            _ => match self.join() {
                Err(e) => Err(e),
                Ok(_) => Err(io::Error::other("the writing thread stopped")),
            },
        }
    }

    pub(crate) fn finish(mut self) -> io::Result<W> {
        self.join()
    }

    fn join(&mut self) -> io::Result<W> {
        self.chunks = None;
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(io::Error::other("the writing thread panicked")),
            None => Err(io::Error::other("the writing thread already stopped")),
        }
    }
}

impl<W: Write + Send + 'static> Drop for Stage<W> {
    fn drop(&mut self) {
        self.chunks = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The compression a blob uses, from its first bytes.
pub(crate) fn detect(magic: &[u8]) -> Compression {
    if magic.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::Uncompressed
    }
}
