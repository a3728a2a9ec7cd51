//! Mounts as data (like containerd's `mount.Mount`): the snapshotter describes them, the
//! sandbox performs them inside the build's namespaces.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::ExitStatus;

use nix::mount::MsFlags;

/// One mount: `kind` is the filesystem type (`"overlay"` or `"bind"`), `source` the device or
/// directory, `options` the mount options (`lowerdir=…`, `upperdir=…`, `workdir=…`,
/// `userxattr`, `ro`, `rbind`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Filesystem type: `"overlay"` or `"bind"`.
    pub kind: String,
    /// What to mount: `"overlay"` for overlayfs, a directory for a bind mount.
    pub source: String,
    /// Mount options, as `mount -o` takes them.
    pub options: Vec<String>,
}

impl Mount {
    /// Whether the mount is read-only.
    pub fn read_only(&self) -> bool {
        self.options.iter().any(|o| o == "ro")
    }

    /// Performs the mount on `target` in the current mount namespace (which needs
    /// CAP_SYS_ADMIN there: real root, or inside a user namespace).
    pub fn mount(&self, target: &Path) -> io::Result<()> {
        let ro = if self.read_only() {
            MsFlags::MS_RDONLY
        } else {
            MsFlags::empty()
        };
        match self.kind.as_str() {
            "bind" => {
                nix::mount::mount(
                    Some(self.source.as_str()),
                    target,
                    None::<&str>,
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    None::<&str>,
                )?;
                if self.read_only() {
                    // A bind mount ignores MS_RDONLY until remounted.
                    nix::mount::mount(
                        None::<&str>,
                        target,
                        None::<&str>,
                        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | ro,
                        None::<&str>,
                    )?;
                }
                Ok(())
            }
            kind => {
                let data = self.data();
                nix::mount::mount(
                    Some(self.source.as_str()),
                    target,
                    Some(kind),
                    ro,
                    Some(data.as_str()),
                )?;
                Ok(())
            }
        }
    }

    /// The filesystem-specific option string (`ro`/`rw`/`rbind` are flags, not data).
    pub fn data(&self) -> String {
        self.options
            .iter()
            .filter(|o| !matches!(o.as_str(), "ro" | "rw" | "rbind" | "bind"))
            .cloned()
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Runs `argv` with `mounts` mounted (in order) on `target`, in a child that has its own user
/// namespace (mapping root to the caller) and mount namespace, so it works unprivileged and
/// leaves no mount behind. For work that needs the merged view of an overlay snapshot.
pub fn run_mounted(mounts: &[Mount], target: &Path, argv: &[&str]) -> io::Result<ExitStatus> {
    use std::os::unix::process::ExitStatusExt;

    let uid = nix::unistd::getuid().as_raw();
    let gid = nix::unistd::getgid().as_raw();
    // Everything the child needs is prepared before fork: after fork in a threaded process only
    // raw system calls are safe.
    let c = |s: &[u8]| CString::new(s).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e));
    let target_c = c(target.as_os_str().as_bytes())?;
    let mut prepared = Vec::new();
    for m in mounts {
        let ro = m.read_only();
        prepared.push((
            c(m.kind.as_bytes())?,
            c(m.source.as_bytes())?,
            c(m.data().as_bytes())?,
            ro,
        ));
    }
    let argv_c = argv
        .iter()
        .map(|a| c(a.as_bytes()))
        .collect::<io::Result<Vec<_>>>()?;
    let mut argv_p: Vec<*const libc::c_char> = argv_c.iter().map(|a| a.as_ptr()).collect();
    argv_p.push(std::ptr::null());
    if argv_c.is_empty() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty command"));
    }
    let maps = UserNsMaps::new(uid, gid)?;
    // SAFETY: the child calls only async-signal-safe system calls, then execs or exits.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        unsafe {
            if maps.enter() != 0 {
                libc::_exit(125);
            }
            for (kind, source, data, ro) in &prepared {
                let r = if kind.as_bytes() == b"bind" {
                    let mut r = libc::mount(
                        source.as_ptr(),
                        target_c.as_ptr(),
                        std::ptr::null(),
                        libc::MS_BIND | libc::MS_REC,
                        std::ptr::null(),
                    );
                    if r == 0 && *ro {
                        r = libc::mount(
                            std::ptr::null(),
                            target_c.as_ptr(),
                            std::ptr::null(),
                            libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY,
                            std::ptr::null(),
                        );
                    }
                    r
                } else {
                    let flags = if *ro { libc::MS_RDONLY } else { 0 };
                    libc::mount(
                        source.as_ptr(),
                        target_c.as_ptr(),
                        kind.as_ptr(),
                        flags,
                        data.as_ptr().cast(),
                    )
                };
                if r != 0 {
                    libc::_exit(126);
                }
            }
            if libc::chdir(target_c.as_ptr()) != 0 {
                libc::_exit(126);
            }
            libc::execvp(argv_p[0], argv_p.as_ptr());
            libc::_exit(127);
        }
    }
    let mut status = 0;
    // SAFETY: waiting for the child just forked.
    if unsafe { libc::waitpid(pid, &mut status, 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ExitStatus::from_raw(status))
}

/// Pre-built `/proc/self/{setgroups,uid_map,gid_map}` contents mapping root in a new user
/// namespace to the caller's ids.
pub(crate) struct UserNsMaps {
    setgroups: CString,
    uid_map_path: CString,
    gid_map_path: CString,
    uid_map: Vec<u8>,
    gid_map: Vec<u8>,
}

impl UserNsMaps {
    pub(crate) fn new(uid: u32, gid: u32) -> io::Result<Self> {
        let c =
            |s: &str| CString::new(s).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e));
        Ok(UserNsMaps {
            setgroups: c("/proc/self/setgroups")?,
            uid_map_path: c("/proc/self/uid_map")?,
            gid_map_path: c("/proc/self/gid_map")?,
            uid_map: format!("0 {uid} 1\n").into_bytes(),
            gid_map: format!("0 {gid} 1\n").into_bytes(),
        })
    }

    /// In a forked child: unshare user and mount namespaces and write the maps. Returns 0 on
    /// success. Only raw system calls.
    pub(crate) unsafe fn enter(&self) -> i32 {
        if libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS) != 0 {
            return -1;
        }
        // An unprivileged process must deny setgroups before it may write gid_map.
        write_file(&self.setgroups, b"deny");
        if write_file(&self.uid_map_path, &self.uid_map) != 0
            || write_file(&self.gid_map_path, &self.gid_map) != 0
        {
            return -1;
        }
        // Keep mounts made here from propagating anywhere.
        let root = c"/";
        libc::mount(
            std::ptr::null(),
            root.as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        );
        0
    }
}

unsafe fn write_file(path: &CString, data: &[u8]) -> i32 {
    let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
    if fd < 0 {
        return -1;
    }
    let n = libc::write(fd, data.as_ptr().cast(), data.len());
    libc::close(fd);
    if n == data.len() as isize {
        0
    } else {
        -1
    }
}
