//! The new mount API calls the sandbox makes: detached clones of a tree (`open_tree`, Linux
//! 5.2), attributes set on a whole tree at once (`mount_setattr`, 5.12: read-only, idmapped)
//! and attaching a detached tree (`move_mount`, 5.2).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::mount::MsFlags;

fn cpath(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

fn check(rc: libc::c_long) -> io::Result<libc::c_long> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// A detached copy of the mount at `path` (of its subtree, with the mounts below it when
/// `recursive`), to be changed and attached elsewhere.
pub(crate) fn clone_tree(path: &Path, recursive: bool) -> io::Result<OwnedFd> {
    let c = cpath(path)?;
    let mut flags = libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC;
    if recursive {
        flags |= libc::AT_RECURSIVE as libc::c_uint;
    }
    // SAFETY: a NUL-terminated path; the returned descriptor is owned below.
    let fd =
        check(unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, c.as_ptr(), flags) })?;
    // SAFETY: open_tree returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn setattr(
    dirfd: libc::c_int,
    path: &CString,
    flags: libc::c_int,
    attr: &libc::mount_attr,
) -> io::Result<()> {
    // SAFETY: valid path and attribute struct of the size passed.
    check(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            dirfd,
            path.as_ptr(),
            flags,
            attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    })
    .map(drop)
}

/// Makes the detached `tree` an idmapped mount: files owned by id `n` on disk appear owned by
/// the id that `n` maps to in user namespace `userns`, and the other way round when written.
pub(crate) fn set_idmap(
    tree: BorrowedFd<'_>,
    userns: BorrowedFd<'_>,
    recursive: bool,
) -> io::Result<()> {
    let attr = libc::mount_attr {
        attr_set: libc::MOUNT_ATTR_IDMAP,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.as_raw_fd() as u64,
    };
    let mut flags = libc::AT_EMPTY_PATH;
    if recursive {
        flags |= libc::AT_RECURSIVE;
    }
    setattr(tree.as_raw_fd(), &CString::default(), flags, &attr)
}

/// Attaches the detached `tree` on `target`.
pub(crate) fn attach(tree: BorrowedFd<'_>, target: &Path) -> io::Result<()> {
    let c = cpath(target)?;
    // SAFETY: an open tree descriptor and a NUL-terminated path.
    check(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            c.as_ptr(),
            libc::MOVE_MOUNT_F_EMPTY_PATH,
        )
    })
    .map(drop)
}

/// Makes the mount at `path` and every mount below it read-only. A read-only remount changes
/// one mount only, so the submounts of a recursive bind (cgroupfs under /sys,
/// binfmt_misc under /proc/sys) would otherwise stay writable.
pub(crate) fn set_read_only_recursive(
    path: &Path,
    mount_flags: impl Fn(&Path) -> io::Result<MsFlags>,
) -> io::Result<()> {
    let attr = libc::mount_attr {
        attr_set: libc::MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    match setattr(libc::AT_FDCWD, &cpath(path)?, libc::AT_RECURSIVE, &attr) {
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {}
        other => return other,
    }
    // Before Linux 5.12: remount every mount of the tree, parents first, each repeating the
    // flags the kernel locks in a user namespace.
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
    for target in mounts_under(&mountinfo, path) {
        let flags =
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | mount_flags(&target)?;
        nix::mount::mount(None::<&str>, &target, None::<&str>, flags, None::<&str>)?;
    }
    Ok(())
}

/// Mount points at or below `path` in mountinfo text, in mount order.
fn mounts_under(mountinfo: &str, path: &Path) -> Vec<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(unescape)
        .filter(|p| p.starts_with(path))
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(field: &str) -> PathBuf {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)));
        if let Some(digits) = octal {
            let value = digits.iter().fold(0u32, |v, d| v * 8 + u32::from(d - b'0'));
            out.push(value as u8);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    PathBuf::from(std::ffi::OsStr::from_bytes(&out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_below_a_path_come_from_mountinfo() {
        let text = "22 1 0:21 / /sys rw,nosuid - sysfs sysfs rw\n\
                    30 22 0:26 / /sys/fs/cgroup ro - tmpfs tmpfs ro\n\
                    31 30 0:27 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n\
                    40 1 0:30 / /system rw - tmpfs tmpfs rw\n\
                    41 1 0:31 / /with\\040space rw - tmpfs tmpfs rw\n";
        assert_eq!(
            mounts_under(text, Path::new("/sys")),
            [
                PathBuf::from("/sys"),
                "/sys/fs/cgroup".into(),
                "/sys/fs/cgroup/cpu".into()
            ]
        );
        assert_eq!(
            mounts_under(text, Path::new("/with space")),
            [PathBuf::from("/with space")]
        );
    }
}
