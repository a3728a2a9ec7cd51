//! Layer compression: parallel gzip (one gzip member made of independently compressed blocks,
//! as pigz writes, so every gzip reader accepts it), multithreaded zstd, or none.

use std::io::{self, Write};
use std::str::FromStr;

use gzp::deflate::Gzip;
use gzp::par::compress::{ParCompress, ParCompressBuilder};
use gzp::ZWriter;

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

/// A compressing writer into a blob.
pub(crate) enum Compressor {
    Gzip(ParCompress<'static, Gzip, BlobWriter>),
    Zstd(zstd::stream::Encoder<'static, BlobWriter>),
    Plain(BlobWriter),
}

impl Compressor {
    pub(crate) fn new(
        kind: Compression,
        level: u32,
        threads: usize,
        out: BlobWriter,
    ) -> io::Result<Compressor> {
        Ok(match kind {
            Compression::Gzip => {
                let builder = ParCompressBuilder::<Gzip>::new()
                    .num_threads(threads.max(1))
                    .map_err(io::Error::other)?
                    .compression_level(gzp::Compression::new(level.min(9)));
                Compressor::Gzip(builder.from_writer(out))
            }
            Compression::Zstd => {
                let mut enc = zstd::stream::Encoder::new(out, level as i32)?;
                // Worker threads write the frame in order, so the output is the same for any
                // thread count.
                enc.multithread(threads.max(1) as u32)?;
                Compressor::Zstd(enc)
            }
            Compression::Uncompressed => Compressor::Plain(out),
        })
    }

    pub(crate) fn finish(self) -> io::Result<BlobWriter> {
        match self {
            Compressor::Gzip(mut w) => w.finish().map_err(io::Error::other),
            Compressor::Zstd(w) => w.finish(),
            Compressor::Plain(w) => Ok(w),
        }
    }
}

impl Write for Compressor {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Compressor::Gzip(w) => w.write(buf),
            Compressor::Zstd(w) => w.write(buf),
            Compressor::Plain(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Compressor::Gzip(w) => w.flush(),
            Compressor::Zstd(w) => w.flush(),
            Compressor::Plain(w) => w.flush(),
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
