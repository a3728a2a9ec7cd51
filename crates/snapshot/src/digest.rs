//! Hashing readers and writers that compute a blob's or diffID's [`Digest`] in passing.
//!
//! The digest type itself is `img_llb::Digest`, the one every crate of img shares.

use std::io::{self, Write};

use img_llb::Digest;
use sha2::{Digest as _, Sha256};

/// A writer that hashes what passes through it and counts the bytes.
pub(crate) struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> HashingWriter<W> {
    pub(crate) fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            written: 0,
        }
    }

    pub(crate) fn written(&self) -> u64 {
        self.written
    }

    pub(crate) fn finish(self) -> (W, Digest, u64) {
        (self.inner, Digest::from_hasher(self.hasher), self.written)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that hashes what passes through it.
pub(crate) struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: io::Read> HashingReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
        }
    }

    pub(crate) fn finish(self) -> (R, Digest) {
        (self.inner, Digest::from_hasher(self.hasher))
    }
}

impl<R: io::Read> io::Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    #[test]
    fn hashing_reader_and_writer_agree_with_the_digest_of_the_bytes() {
        let data = b"layer bytes".repeat(1000);
        let mut writer = HashingWriter::new(Vec::new());
        writer.write_all(&data).unwrap();
        let (written, digest, count) = writer.finish();
        assert_eq!(
            (written.as_slice(), digest, count),
            (&data[..], Digest::of(&data), data.len() as u64)
        );

        let mut reader = HashingReader::new(&data[..]);
        std::io::copy(&mut reader.by_ref(), &mut std::io::sink()).unwrap();
        assert_eq!(reader.finish().1, Digest::of(&data));
    }

    #[test]
    fn converts_to_and_from_oci_digests() {
        let d = Digest::of(b"");
        assert_eq!(Digest::try_from(&d.to_oci()).unwrap(), d);
    }
}
