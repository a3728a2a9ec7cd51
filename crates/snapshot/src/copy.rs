//! Full-tree copy for the native snapshotter, with uv's fallback chain for file data:
//! reflink (FICLONE), else `copy_file_range`, else a plain read/write loop — decided once, on
//! the first regular file, and reused for the rest. Hardlinks inside the tree are recreated as
//! links between the new copies; nothing ever links back into the source tree, because the
//! copy is a layer that will be modified.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use nix::sys::stat::{Mode, SFlag};
use nix::sys::time::TimeSpec;

/// How file data was copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CopyMethod {
    Reflink,
    CopyFileRange,
    ReadWrite,
}

/// Copies trees, remembering the data-copy method chosen on the first file.
pub(crate) struct TreeCopier {
    method: Option<CopyMethod>,
    links: HashMap<(u64, u64), std::path::PathBuf>,
}

impl TreeCopier {
    pub(crate) fn new() -> Self {
        TreeCopier {
            method: None,
            links: HashMap::new(),
        }
    }

    /// The method in use, once a file has been copied.
    #[cfg(test)]
    pub(crate) fn method(&self) -> Option<CopyMethod> {
        self.method
    }

    /// Copies the contents of directory `src` into existing directory `dst`, then `src`'s own
    /// metadata onto `dst`.
    pub(crate) fn copy_tree(&mut self, src: &Path, dst: &Path) -> io::Result<()> {
        let mut names: Vec<_> = fs::read_dir(src)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()?;
        names.sort();
        for name in names {
            self.copy_entry(&src.join(&name), &dst.join(&name))?;
        }
        copy_metadata(src, dst, &fs::symlink_metadata(src)?)
    }

    /// Copies one entry (recursively for directories).
    pub(crate) fn copy_entry(&mut self, src: &Path, dst: &Path) -> io::Result<()> {
        let meta = fs::symlink_metadata(src)?;
        let ft = meta.file_type();
        if ft.is_dir() {
            fs::create_dir(dst)?;
            return self.copy_tree(src, dst);
        }
        if ft.is_file() && meta.nlink() > 1 {
            if let Some(first) = self.links.get(&(meta.dev(), meta.ino())) {
                return fs::hard_link(first, dst);
            }
            self.links.insert((meta.dev(), meta.ino()), dst.to_owned());
        }
        if ft.is_file() {
            self.copy_file_data(src, dst, &meta)?;
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(src)?, dst)?;
        } else if ft.is_char_device() || ft.is_block_device() || ft.is_fifo() {
            let kind = if ft.is_char_device() {
                SFlag::S_IFCHR
            } else if ft.is_block_device() {
                SFlag::S_IFBLK
            } else {
                SFlag::S_IFIFO
            };
            nix::sys::stat::mknod(
                dst,
                kind,
                Mode::from_bits_truncate(meta.mode() & 0o7777),
                meta.rdev(),
            )?;
        } else {
            // Sockets are not part of a filesystem image; Docker skips them too.
            return Ok(());
        }
        copy_metadata(src, dst, &meta)
    }

    fn copy_file_data(&mut self, src: &Path, dst: &Path, meta: &fs::Metadata) -> io::Result<()> {
        let mut from = File::open(src)?;
        let mut to = File::options()
            .write(true)
            .create_new(true)
            .mode_0600()
            .open(dst)?;
        let methods: &[CopyMethod] = match self.method {
            Some(m) => &[m][..],
            None => &[
                CopyMethod::Reflink,
                CopyMethod::CopyFileRange,
                CopyMethod::ReadWrite,
            ][..],
        };
        let mut last = None;
        for &method in methods.iter() {
            let result = match method {
                CopyMethod::Reflink => reflink(&from, &to),
                CopyMethod::CopyFileRange => copy_range(&from, &to, meta.len()),
                CopyMethod::ReadWrite => read_write(&mut from, &mut to),
            };
            match result {
                Ok(()) => {
                    self.method = Some(method);
                    return Ok(());
                }
                Err(e) if self.method.is_none() && unsupported(&e) => {
                    // Undo a partial attempt before trying the next method.
                    to.set_len(0)?;
                    from = File::open(src)?;
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("no copy method")))
    }
}

trait CreateMode {
    fn mode_0600(&mut self) -> &mut Self;
}

impl CreateMode for fs::OpenOptions {
    fn mode_0600(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.mode(0o600)
    }
}

fn unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::EOPNOTSUPP
                | libc::EXDEV
                | libc::EINVAL
                | libc::ENOSYS
                | libc::ENOTTY
                | libc::EBADF
                | libc::EPERM
        )
    )
}

fn reflink(from: &File, to: &File) -> io::Result<()> {
    // SAFETY: FICLONE takes the source fd as its argument; both fds are open.
    let r = unsafe { libc::ioctl(to.as_raw_fd(), libc::FICLONE, from.as_raw_fd()) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn copy_range(from: &File, to: &File, len: u64) -> io::Result<()> {
    let mut left = len;
    while left > 0 {
        let chunk = left.min(1 << 30) as usize;
        // SAFETY: null offsets use and advance the file positions of the two open fds.
        let n = unsafe {
            libc::copy_file_range(
                from.as_raw_fd(),
                std::ptr::null_mut(),
                to.as_raw_fd(),
                std::ptr::null_mut(),
                chunk,
                0,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        if n == 0 {
            break; // The file shrank while copying; copy what there is.
        }
        left -= n as u64;
    }
    Ok(())
}

fn read_write(from: &mut File, to: &mut File) -> io::Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = from.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        to.write_all(&buf[..n])?;
    }
}

/// Copies ownership, permissions, xattrs and timestamps from `src` to `dst` (never following a
/// symlink at `dst`). Ownership before mode: chown clears setuid bits.
pub(crate) fn copy_metadata(src: &Path, dst: &Path, meta: &fs::Metadata) -> io::Result<()> {
    std::os::unix::fs::lchown(dst, Some(meta.uid()), Some(meta.gid()))?;
    let is_link = meta.file_type().is_symlink();
    if !is_link {
        fs::set_permissions(dst, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    }
    for (name, value) in read_xattrs(src)? {
        xattr::set(dst, &name, &value)?;
    }
    set_times(dst, meta)
}

pub(crate) fn set_times(dst: &Path, meta: &fs::Metadata) -> io::Result<()> {
    let atime = TimeSpec::new(meta.atime(), meta.atime_nsec());
    let mtime = TimeSpec::new(meta.mtime(), meta.mtime_nsec());
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        dst,
        &atime,
        &mtime,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )?;
    Ok(())
}

/// Whether an xattr belongs to overlayfs's bookkeeping rather than to the file.
pub(crate) fn is_overlay_xattr(name: &OsStr) -> bool {
    let name = name.as_encoded_bytes();
    name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.")
}

/// The file's own xattrs (not following symlinks), sorted, without overlayfs bookkeeping.
pub(crate) fn read_xattrs(path: &Path) -> io::Result<Vec<(std::ffi::OsString, Vec<u8>)>> {
    let mut out = Vec::new();
    let names = match xattr::list(path) {
        Ok(names) => names,
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => return Ok(out),
        Err(e) => return Err(e),
    };
    for name in names {
        if is_overlay_xattr(&name) {
            continue;
        }
        if let Some(value) = xattr::get(path, &name)? {
            out.push((name, value));
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_tree_with_links_and_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        fs::create_dir_all(src.join("d")).unwrap();
        fs::write(src.join("d/f"), b"hello").unwrap();
        fs::hard_link(src.join("d/f"), src.join("g")).unwrap();
        std::os::unix::fs::symlink("d/f", src.join("l")).unwrap();
        fs::set_permissions(src.join("d/f"), fs::Permissions::from_mode(0o4751)).unwrap();
        let dst = dir.path().join("dst");
        fs::create_dir(&dst).unwrap();
        let mut copier = TreeCopier::new();
        copier.copy_tree(&src, &dst).unwrap();
        assert!(copier.method().is_some());
        assert_eq!(fs::read(dst.join("d/f")).unwrap(), b"hello");
        let (a, b) = (
            fs::metadata(dst.join("d/f")).unwrap(),
            fs::metadata(dst.join("g")).unwrap(),
        );
        assert_eq!(a.ino(), b.ino());
        assert_ne!(a.ino(), fs::metadata(src.join("d/f")).unwrap().ino());
        assert_eq!(a.mode() & 0o7777, 0o4751);
        assert_eq!(fs::read_link(dst.join("l")).unwrap(), Path::new("d/f"));
        assert_eq!(
            fs::metadata(src.join("d")).unwrap().mtime_nsec(),
            fs::metadata(dst.join("d")).unwrap().mtime_nsec()
        );
    }
}
