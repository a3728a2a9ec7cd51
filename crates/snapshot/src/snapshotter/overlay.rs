//! The overlayfs backend's mount options and its availability probe.
//!
//! Mounts always use `userxattr` (Linux 5.11+): the overlay is mounted inside the build's user
//! namespace, where `trusted.*` xattrs are out of reach, so overlay keeps its opaque markers in
//! `user.overlay.*`. Real root mounting in the initial namespace accepts the same option, so
//! one on-disk format serves both.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::mount::{Mount, UserNsMaps};

/// The xattr namespace overlay uses with `userxattr`.
pub(crate) const XATTR_PREFIX: &str = "user.overlay.";

/// The longest mount data string this backend hands out. mount(2) copies at most one page
/// (4096 bytes, the terminating NUL included) of options; the rest is headroom for options
/// a mount performer may add (an SELinux `context=`, for one).
pub(crate) const MAX_MOUNT_DATA: usize = 3072;

/// The most lower layers one mount names. The kernel accepts 500, but every lookup that
/// misses walks all of them; Docker's overlay2 driver stops at 128 as well.
pub(crate) const MAX_LOWER_LAYERS: usize = 128;

/// Whether `mounts` (made over `lowers` lower layers) can be performed as they are; if not,
/// the chain must be flattened.
pub(crate) fn fits(mounts: &[Mount], lowers: usize) -> bool {
    lowers <= MAX_LOWER_LAYERS && mounts.iter().all(|m| m.data().len() <= MAX_MOUNT_DATA)
}

/// A bind mount of `dir`, read-only or writable.
pub(crate) fn bind(dir: &Path, read_only: bool) -> Mount {
    Mount {
        kind: "bind".into(),
        source: dir.display().to_string(),
        options: vec!["rbind".into(), if read_only { "ro" } else { "rw" }.into()],
    }
}

/// The mount for a snapshot whose own directory is `upper` (with `work` beside it) over
/// `lowers` (nearest first). `writable` false gives a read-only view.
pub(crate) fn mounts(upper: &Path, work: &Path, lowers: &[PathBuf], writable: bool) -> Vec<Mount> {
    if writable && lowers.is_empty() {
        return vec![bind(upper, false)];
    }
    if !writable && lowers.is_empty() {
        return vec![bind(upper, true)];
    }
    let mut options = vec!["index=off".into(), "userxattr".into()];
    if writable {
        options.push(format!("workdir={}", work.display()));
        options.push(format!("upperdir={}", upper.display()));
        options.push(format!("lowerdir={}", join_lowers(lowers.iter())));
    } else {
        // A read-only overlay needs no upper; it needs at least two lower layers.
        options.push(format!(
            "lowerdir={}",
            join_lowers(std::iter::once(&upper.to_owned()).chain(lowers))
        ));
        options.push("ro".into());
    }
    vec![Mount {
        kind: "overlay".into(),
        source: "overlay".into(),
        options,
    }]
}

fn join_lowers<'a>(dirs: impl Iterator<Item = &'a PathBuf>) -> String {
    dirs.map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(":")
}

/// Tries an overlay mount with a whiteout in a fresh user namespace, in a forked child, with
/// directories under `scratch` (on the state directory's filesystem, where snapshots live).
pub(crate) fn probe(scratch: &Path) -> io::Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("overlay-probe-")
        .tempdir_in(scratch)?;
    let d = dir.path();
    for sub in ["lower", "upper", "work", "merged"] {
        std::fs::create_dir(d.join(sub))?;
    }
    std::fs::write(d.join("lower/file"), b"probe")?;
    let c = |p: PathBuf| {
        CString::new(p.as_os_str().as_bytes())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
    };
    let merged = c(d.join("merged"))?;
    let victim = c(d.join("merged/file"))?;
    let data = CString::new(format!(
        "lowerdir={},upperdir={},workdir={},userxattr",
        d.join("lower").display(),
        d.join("upper").display(),
        d.join("work").display()
    ))?;
    let maps = UserNsMaps::new(
        nix::unistd::getuid().as_raw(),
        nix::unistd::getgid().as_raw(),
    )?;
    // SAFETY: the child makes raw system calls only, then exits.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        unsafe {
            if maps.enter() != 0 {
                libc::_exit(2);
            }
            if libc::mount(
                c"overlay".as_ptr(),
                merged.as_ptr(),
                c"overlay".as_ptr(),
                0,
                data.as_ptr().cast(),
            ) != 0
            {
                libc::_exit(3);
            }
            // Deleting a lower file makes overlay create a whiteout in the upper directory.
            if libc::unlink(victim.as_ptr()) != 0 {
                libc::_exit(4);
            }
            libc::_exit(0);
        }
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    if unsafe { libc::waitpid(pid, &mut status, 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // overlay's work/work directory is created mode 000.
    let _ = std::fs::set_permissions(
        d.join("work/work"),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    );
    match (libc::WIFEXITED(status), libc::WEXITSTATUS(status)) {
        (true, 0) => Ok(()),
        (true, 2) => Err(io::Error::other("cannot create a user namespace")),
        // The child cannot tell why; the usual causes, which `img doctor` tells apart.
        (true, 3) => Err(io::Error::other(
            "overlay mount with userxattr refused in a user namespace (a kernel before 5.11, \
             or the state directory on overlayfs, such as a container's root filesystem)",
        )),
        (true, 4) => Err(io::Error::other("overlay cannot create whiteouts here")),
        _ => Err(io::Error::other(format!(
            "overlay probe child failed (wait status {status})"
        ))),
    }
}
