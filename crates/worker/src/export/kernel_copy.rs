//! Copies between files inside the kernel: `copy_file_range` (a reflink or a server-side copy
//! where the filesystem offers one, else a page-cache copy), then `sendfile` (which also
//! writes into pipes, for an archive on standard output), then a plain read/write loop.
//! Each is tried once per copy and the next taken when the kernel says the pair of files
//! does not support it.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

/// Appends `len` bytes of `src`, read from its start, to `dst` at `dst`'s current offset
/// (advancing it, as a write would). Returns the method that did the copy.
pub(crate) fn copy_into(src: &File, dst: &File, len: u64) -> io::Result<Method> {
    let mut offset: u64 = 0;
    let mut method = Method::CopyFileRange;
    while offset < len {
        let want = usize::try_from(len - offset)
            .unwrap_or(usize::MAX)
            .min(1 << 30);
        let result = match method {
            Method::CopyFileRange => copy_file_range(src, offset, dst, want),
            Method::Sendfile => sendfile(src, offset, dst, want),
            Method::ReadWrite => read_write(src, offset, dst, want),
        };
        match result {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("the source ended after {offset} of {len} bytes"),
                ))
            }
            Ok(n) => offset += n as u64,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // Nothing was copied by a call that failed, so the next method starts where this
            // one stopped.
            Err(e) if unsupported(&e) => match method.next() {
                Some(next) => method = next,
                None => return Err(e),
            },
            Err(e) => return Err(e),
        }
    }
    Ok(method)
}

/// How the kernel was asked to copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    CopyFileRange,
    Sendfile,
    ReadWrite,
}

impl Method {
    fn next(self) -> Option<Method> {
        match self {
            Method::CopyFileRange => Some(Method::Sendfile),
            Method::Sendfile => Some(Method::ReadWrite),
            Method::ReadWrite => None,
        }
    }
}

/// The errors by which the kernel says a method does not apply to these two files (a pipe,
/// two filesystems, an old kernel, a filesystem without the operation, an append-only file).
fn unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EXDEV | libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP | libc::EBADF)
    )
}

fn copy_file_range(src: &File, offset: u64, dst: &File, len: usize) -> io::Result<usize> {
    let mut off_in = offset as libc::loff_t;
    // SAFETY: both descriptors are open for the call's duration; `off_in` is a valid
    // pointer; a null `off_out` means dst's file offset, which the kernel advances.
    let n = unsafe {
        libc::copy_file_range(
            src.as_raw_fd(),
            &mut off_in,
            dst.as_raw_fd(),
            std::ptr::null_mut(),
            len,
            0,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

fn sendfile(src: &File, offset: u64, dst: &File, len: usize) -> io::Result<usize> {
    let mut off_in = offset as libc::off_t;
    // SAFETY: as above; sendfile writes at dst's offset (or into the pipe).
    let n = unsafe { libc::sendfile(dst.as_raw_fd(), src.as_raw_fd(), &mut off_in, len) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

fn read_write(src: &File, offset: u64, mut dst: &File, len: usize) -> io::Result<usize> {
    let mut buf = vec![0u8; len.min(1 << 20)];
    let n = src.read_at(&mut buf, offset)?;
    dst.write_all(&buf[..n])?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Seek, SeekFrom};

    use super::*;

    fn source(len: usize) -> File {
        let mut f = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
        f.write_all(&data).unwrap();
        f
    }

    #[test]
    fn appends_at_the_destination_offset_from_the_source_start() {
        let src = source(300_000);
        let mut dst = tempfile::tempfile().unwrap();
        dst.write_all(b"head").unwrap();
        // Two files on one filesystem: the kernel copies (Linux 5.3 and later).
        assert_eq!(
            copy_into(&src, &dst, 300_000).unwrap(),
            Method::CopyFileRange
        );
        dst.write_all(b"tail").unwrap();
        let mut got = Vec::new();
        dst.seek(SeekFrom::Start(0)).unwrap();
        dst.read_to_end(&mut got).unwrap();
        let mut want = b"head".to_vec();
        want.extend((0..300_000).map(|i| (i * 31 % 251) as u8));
        want.extend_from_slice(b"tail");
        assert_eq!(got, want);
    }

    #[test]
    fn writes_into_a_pipe() {
        let src = source(200_000);
        let (reader, writer) = nix::unistd::pipe().unwrap();
        let dst = File::from(writer);
        let read = std::thread::spawn(move || {
            let mut got = Vec::new();
            File::from(reader).read_to_end(&mut got).unwrap();
            got
        });
        // copy_file_range refuses pipes; sendfile writes into them.
        assert_eq!(copy_into(&src, &dst, 200_000).unwrap(), Method::Sendfile);
        drop(dst);
        let want: Vec<u8> = (0..200_000).map(|i| (i * 31 % 251) as u8).collect();
        assert_eq!(read.join().unwrap(), want);
    }

    #[test]
    fn a_short_source_is_an_error() {
        let src = source(10);
        let dst = tempfile::tempfile().unwrap();
        let err = copy_into(&src, &dst, 20).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }
}
