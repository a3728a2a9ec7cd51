//! Every privileged or filesystem-changing system call the sandbox setup makes, behind one trait:
//! [`LinuxSyscalls`] performs them, and the recording implementation of the unit tests writes
//! them down, so the mount plan is tested without root or namespaces.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;

/// What a path is, for deciding whether a mount point must be created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileKind {
    Dir,
    File,
    Symlink,
}

/// Access and modification times of a directory, restored after a stub inside it is removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Times {
    pub atime: (i64, i64),
    pub mtime: (i64, i64),
}

pub(crate) trait Syscalls {
    fn unshare(&self, flags: CloneFlags) -> io::Result<()>;
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> io::Result<()>;
    /// Lazily detaches the mount at `target`.
    fn umount(&self, target: &Path) -> io::Result<()>;
    /// Makes `new_root` the root and detaches the old one.
    fn pivot_root(&self, new_root: &Path) -> io::Result<()>;
    fn sethostname(&self, name: &str) -> io::Result<()>;
    fn chown(&self, path: &Path, uid: u32, gid: u32) -> io::Result<()>;
    /// Brings the loopback interface of the current network namespace up.
    fn loopback_up(&self) -> io::Result<()>;
    /// Mount flags (`nosuid`, `nodev`, `noexec`, `rdonly`) of the filesystem holding `path`; a
    /// read-only remount of a bind must repeat them because the kernel locks them in a user
    /// namespace.
    fn mount_flags(&self, path: &Path) -> io::Result<MsFlags>;
    /// Attaches the detached mount `tree` over `target`.
    fn attach(&self, tree: std::os::fd::BorrowedFd<'_>, target: &Path) -> io::Result<()>;
    /// Makes the mount at `path` and all mounts below it read-only.
    fn read_only_recursive(&self, path: &Path) -> io::Result<()>;
    fn kind(&self, path: &Path) -> Option<FileKind>;
    /// The `cpu<N>` directories in `dir` (sysfs's devices/system/cpu).
    fn cpu_dirs(&self, dir: &Path) -> Vec<PathBuf>;
    fn read_link(&self, path: &Path) -> io::Result<PathBuf>;
    fn mkdir(&self, path: &Path, mode: u32) -> io::Result<()>;
    fn create_file(&self, path: &Path, mode: u32) -> io::Result<()>;
    fn symlink(&self, target: &Path, link: &Path) -> io::Result<()>;
    fn write_file(&self, path: &Path, data: &[u8], mode: u32) -> io::Result<()>;
    fn chmod(&self, path: &Path, mode: u32) -> io::Result<()>;
    fn remove(&self, path: &Path, kind: FileKind) -> io::Result<()>;
    fn times(&self, path: &Path) -> io::Result<Times>;
    fn set_times(&self, path: &Path, times: Times) -> io::Result<()>;
}

fn is_cpu_name(name: &str) -> bool {
    name.strip_prefix("cpu")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The real system calls.
pub(crate) struct LinuxSyscalls;

fn cpath(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

impl Syscalls for LinuxSyscalls {
    fn unshare(&self, flags: CloneFlags) -> io::Result<()> {
        Ok(nix::sched::unshare(flags)?)
    }

    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> io::Result<()> {
        Ok(nix::mount::mount(source, target, fstype, flags, data)?)
    }

    fn umount(&self, target: &Path) -> io::Result<()> {
        Ok(nix::mount::umount2(target, MntFlags::MNT_DETACH)?)
    }

    fn pivot_root(&self, new_root: &Path) -> io::Result<()> {
        // pivot_root(".", ".") stacks the old root on top of the new one; detaching "." then
        // removes the old root without needing a directory for it inside the image.
        nix::unistd::chdir(new_root)?;
        nix::unistd::pivot_root(".", ".")?;
        nix::mount::umount2(".", MntFlags::MNT_DETACH)?;
        nix::unistd::chdir("/")?;
        Ok(())
    }

    fn sethostname(&self, name: &str) -> io::Result<()> {
        Ok(nix::unistd::sethostname(name)?)
    }

    fn chown(&self, path: &Path, uid: u32, gid: u32) -> io::Result<()> {
        std::os::unix::fs::lchown(path, Some(uid), Some(gid))
    }

    fn loopback_up(&self) -> io::Result<()> {
        // SIOCSIFFLAGS on an AF_INET datagram socket is how ip(8) sets IFF_UP; no netlink needed.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            let mut req: libc::ifreq = std::mem::zeroed();
            for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
                *dst = *src as libc::c_char;
            }
            let result = if libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req) < 0 {
                Err(io::Error::last_os_error())
            } else {
                req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
                if libc::ioctl(fd, libc::SIOCSIFFLAGS, &req) < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(())
                }
            };
            libc::close(fd);
            result
        }
    }

    fn mount_flags(&self, path: &Path) -> io::Result<MsFlags> {
        let st = nix::sys::statvfs::statvfs(path)?;
        let f = st.flags();
        use nix::sys::statvfs::FsFlags;
        let mut flags = MsFlags::empty();
        for (fs_flag, ms_flag) in [
            (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
            (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
            (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
            (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
            (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
            (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
            (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
        ] {
            if f.contains(fs_flag) {
                flags |= ms_flag;
            }
        }
        Ok(flags)
    }

    fn attach(&self, tree: std::os::fd::BorrowedFd<'_>, target: &Path) -> io::Result<()> {
        crate::mount_api::attach(tree, target)
    }

    fn read_only_recursive(&self, path: &Path) -> io::Result<()> {
        crate::mount_api::set_read_only_recursive(path, |p| self.mount_flags(p))
    }

    fn cpu_dirs(&self, dir: &Path) -> Vec<PathBuf> {
        let Ok(entries) = fs::read_dir(dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter(|e| is_cpu_name(&e.file_name().to_string_lossy()))
            .map(|e| e.path())
            .collect()
    }

    fn kind(&self, path: &Path) -> Option<FileKind> {
        let meta = fs::symlink_metadata(path).ok()?;
        let ft = meta.file_type();
        Some(if ft.is_symlink() {
            FileKind::Symlink
        } else if ft.is_dir() {
            FileKind::Dir
        } else {
            FileKind::File
        })
    }

    fn read_link(&self, path: &Path) -> io::Result<PathBuf> {
        fs::read_link(path)
    }

    fn mkdir(&self, path: &Path, mode: u32) -> io::Result<()> {
        fs::DirBuilder::new().mode(mode).create(path)
    }

    fn create_file(&self, path: &Path, mode: u32) -> io::Result<()> {
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map(drop)
    }

    fn symlink(&self, target: &Path, link: &Path) -> io::Result<()> {
        symlink(target, link)
    }

    fn write_file(&self, path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
        use std::io::Write;
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)?;
        file.write_all(data)?;
        file.set_permissions(fs::Permissions::from_mode(mode))
    }

    fn chmod(&self, path: &Path, mode: u32) -> io::Result<()> {
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
    }

    fn remove(&self, path: &Path, kind: FileKind) -> io::Result<()> {
        match kind {
            FileKind::Dir => fs::remove_dir(path),
            FileKind::File | FileKind::Symlink => fs::remove_file(path),
        }
    }

    fn times(&self, path: &Path) -> io::Result<Times> {
        let st = nix::sys::stat::lstat(path)?;
        Ok(Times {
            atime: (st.st_atime, st.st_atime_nsec),
            mtime: (st.st_mtime, st.st_mtime_nsec),
        })
    }

    fn set_times(&self, path: &Path, times: Times) -> io::Result<()> {
        let c = cpath(path)?;
        let ts = [
            libc::timespec {
                tv_sec: times.atime.0,
                tv_nsec: times.atime.1,
            },
            libc::timespec {
                tv_sec: times.mtime.0,
                tv_nsec: times.mtime.1,
            },
        ];
        // SAFETY: c is a valid NUL-terminated path and ts holds two timespecs.
        let rc = unsafe {
            libc::utimensat(
                libc::AT_FDCWD,
                c.as_ptr(),
                ts.as_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod recording {
    //! A recording implementation over an in-memory file tree.

    use std::cell::RefCell;
    use std::collections::BTreeMap;

    use super::*;

    /// Records calls as readable lines and models which paths exist.
    #[derive(Default)]
    pub(crate) struct RecordingSyscalls {
        pub calls: RefCell<Vec<String>>,
        pub tree: RefCell<BTreeMap<PathBuf, (FileKind, Option<PathBuf>)>>,
        pub fail_mount_fstype: Option<&'static str>,
    }

    impl RecordingSyscalls {
        pub fn with_dirs(dirs: &[&str]) -> Self {
            let r = RecordingSyscalls::default();
            for d in dirs {
                r.tree
                    .borrow_mut()
                    .insert(PathBuf::from(d), (FileKind::Dir, None));
            }
            r
        }

        pub fn add(&self, path: &str, kind: FileKind, link: Option<&str>) {
            self.tree
                .borrow_mut()
                .insert(path.into(), (kind, link.map(PathBuf::from)));
        }

        fn record(&self, line: String) {
            self.calls.borrow_mut().push(line);
        }

        pub fn calls(&self) -> Vec<String> {
            self.calls.borrow().clone()
        }
    }

    impl Syscalls for RecordingSyscalls {
        fn unshare(&self, flags: CloneFlags) -> io::Result<()> {
            self.record(format!("unshare {flags:?}"));
            Ok(())
        }
        fn mount(
            &self,
            source: Option<&Path>,
            target: &Path,
            fstype: Option<&str>,
            flags: MsFlags,
            data: Option<&str>,
        ) -> io::Result<()> {
            if fstype.is_some() && fstype == self.fail_mount_fstype {
                return Err(io::Error::from_raw_os_error(libc::EPERM));
            }
            let source = source.map_or("-".into(), |s| s.display().to_string());
            let flags = if flags.is_empty() {
                String::new()
            } else {
                format!("{flags:?}")
                    .replace("MsFlags(", "")
                    .replace(')', "")
            };
            self.record(format!(
                "mount {source} {} {} [{flags}] {}",
                target.display(),
                fstype.unwrap_or("-"),
                data.unwrap_or("")
            ));
            Ok(())
        }
        fn umount(&self, target: &Path) -> io::Result<()> {
            self.record(format!("umount {}", target.display()));
            Ok(())
        }
        fn pivot_root(&self, new_root: &Path) -> io::Result<()> {
            self.record(format!("pivot_root {}", new_root.display()));
            Ok(())
        }
        fn sethostname(&self, name: &str) -> io::Result<()> {
            self.record(format!("sethostname {name}"));
            Ok(())
        }
        fn chown(&self, path: &Path, uid: u32, gid: u32) -> io::Result<()> {
            self.record(format!("chown {} {uid}:{gid}", path.display()));
            Ok(())
        }
        fn loopback_up(&self) -> io::Result<()> {
            self.record("loopback_up".into());
            Ok(())
        }
        fn mount_flags(&self, _path: &Path) -> io::Result<MsFlags> {
            Ok(MsFlags::MS_NOSUID | MsFlags::MS_NODEV)
        }
        fn attach(&self, _tree: std::os::fd::BorrowedFd<'_>, target: &Path) -> io::Result<()> {
            self.record(format!("attach idmapped {}", target.display()));
            Ok(())
        }
        fn read_only_recursive(&self, path: &Path) -> io::Result<()> {
            self.record(format!("read-only -R {}", path.display()));
            Ok(())
        }
        fn cpu_dirs(&self, dir: &Path) -> Vec<PathBuf> {
            self.tree
                .borrow()
                .keys()
                .filter(|p| p.parent() == Some(dir))
                .filter(|p| is_cpu_name(&p.file_name().unwrap_or_default().to_string_lossy()))
                .cloned()
                .collect()
        }
        fn kind(&self, path: &Path) -> Option<FileKind> {
            self.tree.borrow().get(path).map(|e| e.0)
        }
        fn read_link(&self, path: &Path) -> io::Result<PathBuf> {
            self.tree
                .borrow()
                .get(path)
                .and_then(|e| e.1.clone())
                .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))
        }
        fn mkdir(&self, path: &Path, mode: u32) -> io::Result<()> {
            self.record(format!("mkdir {} {mode:o}", path.display()));
            self.add(&path.display().to_string(), FileKind::Dir, None);
            Ok(())
        }
        fn create_file(&self, path: &Path, mode: u32) -> io::Result<()> {
            self.record(format!("create {} {mode:o}", path.display()));
            self.add(&path.display().to_string(), FileKind::File, None);
            Ok(())
        }
        fn symlink(&self, target: &Path, link: &Path) -> io::Result<()> {
            self.record(format!(
                "symlink {} -> {}",
                link.display(),
                target.display()
            ));
            Ok(())
        }
        fn write_file(&self, path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
            self.record(format!("write {} {}B {mode:o}", path.display(), data.len()));
            self.add(&path.display().to_string(), FileKind::File, None);
            Ok(())
        }
        fn chmod(&self, path: &Path, mode: u32) -> io::Result<()> {
            self.record(format!("chmod {} {mode:o}", path.display()));
            Ok(())
        }
        fn remove(&self, path: &Path, _kind: FileKind) -> io::Result<()> {
            self.record(format!("remove {}", path.display()));
            self.tree.borrow_mut().remove(path);
            Ok(())
        }
        fn times(&self, _path: &Path) -> io::Result<Times> {
            Ok(Times {
                atime: (1, 0),
                mtime: (2, 0),
            })
        }
        fn set_times(&self, path: &Path, _times: Times) -> io::Result<()> {
            self.record(format!("restore_times {}", path.display()));
            Ok(())
        }
    }
}
