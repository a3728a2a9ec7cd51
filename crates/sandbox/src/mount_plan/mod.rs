//! The container's filesystem view: rootfs assembly, /proc, /dev, /sys, the supplied /etc files
//! and the step's mounts, then pivot_root. Runs as pid 1 of the new pid namespace (a fresh procfs
//! must be mounted from inside it) through the [`Syscalls`] trait.
//!
//! Mount points missing from the image are created and remembered as [`MountStubs`], removed
//! again when the step ends with their parent directory's times restored, so they never reach
//! the layer (BuildKit's mount stub cleaner does the same).

use std::path::{Component, Path, PathBuf};

use nix::mount::MsFlags;

use crate::protocol::{ChildFailure, SetupStep};
use crate::spec::{BindMode, NetworkMode, Rootfs, SandboxSpec, StepMount};
use crate::syscalls::{FileKind, Syscalls, Times};

mod system;
#[cfg(test)]
mod tests;

pub(crate) use system::resolv_conf_from_host;

/// Mount points created in the root filesystem, in creation order.
#[derive(Debug, Default)]
pub(crate) struct MountStubs {
    created: Vec<Stub>,
    mounted: Vec<PathBuf>,
}

#[derive(Debug)]
struct Stub {
    /// Path inside the container.
    path: PathBuf,
    kind: FileKind,
    parent_times: Option<Times>,
}

impl MountStubs {
    /// Detaches the mounts over stubs and removes the stubs, newest first, restoring parents'
    /// times; runs after pivot_root, so paths are container paths.
    pub(crate) fn clean(&self, sys: &dyn Syscalls) {
        self.clean_at(sys, Path::new("/"));
    }

    /// [`MountStubs::clean`] with container paths under `root` (before pivot_root).
    fn clean_at(&self, sys: &dyn Syscalls, root: &Path) {
        let at = |path: &Path| root.join(path.strip_prefix("/").unwrap_or(path));
        for target in self.mounted.iter().rev() {
            let _ = sys.umount(&at(target));
        }
        for stub in self.created.iter().rev() {
            let path = at(&stub.path);
            if sys.remove(&path, stub.kind).is_ok() {
                if let (Some(parent), Some(times)) = (path.parent(), stub.parent_times) {
                    let _ = sys.set_times(parent, times);
                }
            }
        }
    }
}

/// Parses mount(8) options into flags and filesystem data.
pub(crate) fn parse_options(options: &[String]) -> (MsFlags, String) {
    let mut flags = MsFlags::empty();
    let mut data = Vec::new();
    for opt in options {
        match opt.as_str() {
            "ro" => flags |= MsFlags::MS_RDONLY,
            "rw" | "defaults" => {}
            "nosuid" => flags |= MsFlags::MS_NOSUID,
            "nodev" => flags |= MsFlags::MS_NODEV,
            "noexec" => flags |= MsFlags::MS_NOEXEC,
            "bind" => flags |= MsFlags::MS_BIND,
            "rbind" => flags |= MsFlags::MS_BIND | MsFlags::MS_REC,
            "relatime" => flags |= MsFlags::MS_RELATIME,
            "noatime" => flags |= MsFlags::MS_NOATIME,
            "strictatime" => flags |= MsFlags::MS_STRICTATIME,
            "sync" => flags |= MsFlags::MS_SYNCHRONOUS,
            other => data.push(other),
        }
    }
    (flags, data.join(","))
}

/// Sets up the root for `spec` under host directory `staging` (mounted over by a tmpfs) and
/// pivots into it.
pub(crate) struct RootSetup<'a> {
    pub sys: &'a dyn Syscalls,
    pub spec: &'a SandboxSpec,
    pub staging: &'a Path,
    /// Whether gid 5 (tty) exists in the namespace, for devpts's `gid=5`.
    pub tty_gid_mapped: bool,
    /// Idmapped clones of host paths (real root's steps), attached over their paths first.
    pub idmapped: &'a [crate::isolate::IdmappedTree],
}

type Result<T> = std::result::Result<T, ChildFailure>;

impl RootSetup<'_> {
    fn root(&self) -> &Path {
        self.spec.rootfs.root()
    }

    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: &str,
        flags: MsFlags,
        data: &str,
    ) -> Result<()> {
        let fs = (!fstype.is_empty() && fstype != "bind").then_some(fstype);
        let data = (!data.is_empty()).then_some(data);
        self.sys
            .mount(source, target, fs, flags, data)
            .map_err(|e| ChildFailure::os(SetupStep::Mount(fstype.to_string()), target, &e))
    }

    /// A bind, made read-only with a remount that keeps the flags the kernel locks.
    fn bind(&self, source: &Path, target: &Path, recursive: bool, readonly: bool) -> Result<()> {
        let rec = if recursive {
            MsFlags::MS_REC
        } else {
            MsFlags::empty()
        };
        self.mount(Some(source), target, "bind", MsFlags::MS_BIND | rec, "")?;
        if readonly {
            let locked = self
                .sys
                .mount_flags(target)
                .map_err(|e| ChildFailure::os(SetupStep::Mount("bind".into()), target, &e))?;
            let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | locked;
            self.mount(None, target, "bind", flags, "")?;
        }
        Ok(())
    }

    /// Performs everything up to and including pivot_root; returns the stubs to clean later.
    /// On failure the stubs made so far are removed at once.
    pub(crate) fn run(&self) -> Result<MountStubs> {
        let mut stubs = MountStubs::default();
        match self.setup(&mut stubs) {
            Ok(()) => Ok(stubs),
            Err(failure) => {
                stubs.clean_at(self.sys, self.root());
                Err(failure)
            }
        }
    }

    fn setup(&self, stubs: &mut MountStubs) -> Result<()> {
        // Nothing done here may propagate back to the caller's mount namespace.
        self.mount(
            None,
            Path::new("/"),
            "",
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            "",
        )?;
        for tree in self.idmapped {
            use std::os::fd::AsFd;
            self.sys
                .attach(tree.fd.as_fd(), &tree.source)
                .map_err(|e| {
                    ChildFailure::os(SetupStep::Mount("idmapped".into()), &tree.source, &e)
                })?;
        }
        if let Rootfs::Mounted { mounts, .. } = &self.spec.rootfs {
            for m in mounts {
                let (flags, data) = parse_options(&m.options);
                self.mount(Some(&m.source), &m.target, &m.fstype, flags, &data)?;
            }
        }
        // pivot_root needs the new root to be a mount point.
        self.bind(self.root(), self.root(), true, false)?;
        self.mount(
            Some(Path::new("tmpfs")),
            self.staging,
            "tmpfs",
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            "mode=755",
        )?;

        self.mount_proc(stubs)?;
        self.mount_dev(stubs)?;
        self.mount_sys(stubs)?;
        self.supply_etc_files(stubs)?;
        let mut mounts: Vec<(usize, &StepMount)> = self.spec.mounts.iter().enumerate().collect();
        // Parents before children, whatever order the caller listed them in.
        mounts.sort_by_key(|(_, m)| m.target().components().count());
        for (index, mount) in mounts {
            self.step_mount(index, mount, stubs)?;
        }
        self.sys
            .sethostname(&self.spec.hostname)
            .map_err(|e| ChildFailure::os(SetupStep::Hostname, &self.spec.hostname, &e))?;
        if self.spec.network == NetworkMode::None {
            self.sys
                .loopback_up()
                .map_err(|e| ChildFailure::os(SetupStep::Loopback, "lo", &e))?;
        }
        self.sys
            .pivot_root(self.root())
            .map_err(|e| ChildFailure::os(SetupStep::PivotRoot, self.root(), &e))?;
        Ok(())
    }

    fn step_mount(&self, index: usize, mount: &StepMount, stubs: &mut MountStubs) -> Result<()> {
        let host_target = match mount {
            StepMount::Bind {
                source,
                target,
                mode,
            } => {
                let is_dir = self.sys.kind(source) == Some(FileKind::Dir);
                let host_target = if is_dir {
                    self.ensure_dir(target, stubs)?
                } else {
                    self.ensure_file(target, stubs)?
                };
                match (mode, is_dir) {
                    (BindMode::ReadOnly, _) => self.bind(source, &host_target, true, true)?,
                    (BindMode::ReadWrite, _) => self.bind(source, &host_target, true, false)?,
                    (BindMode::ReadWriteDiscard, true) => {
                        let upper = self.staging_dir(&format!("discard-{index}-upper"))?;
                        let work = self.staging_dir(&format!("discard-{index}-work"))?;
                        // userxattr: see `Mount::overlay`.
                        let data = format!(
                            "lowerdir={},upperdir={},workdir={},userxattr",
                            source.display(),
                            upper.display(),
                            work.display()
                        );
                        self.mount(
                            Some(Path::new("overlay")),
                            &host_target,
                            "overlay",
                            MsFlags::empty(),
                            &data,
                        )?;
                    }
                    (BindMode::ReadWriteDiscard, false) => {
                        let copy = self.staging.join(format!("discard-{index}"));
                        let data = std::fs::read(source)
                            .map_err(|e| ChildFailure::os(SetupStep::WriteFile, source, &e))?;
                        self.sys
                            .write_file(&copy, &data, 0o644)
                            .map_err(|e| ChildFailure::os(SetupStep::WriteFile, &copy, &e))?;
                        self.bind(&copy, &host_target, false, false)?;
                    }
                }
                host_target
            }
            StepMount::Cache { source, target } => {
                let host_target = self.ensure_dir(target, stubs)?;
                self.bind(source, &host_target, true, false)?;
                host_target
            }
            StepMount::Tmpfs { target, size } => {
                let host_target = self.ensure_dir(target, stubs)?;
                let data = size.map(|s| format!("size={s}")).unwrap_or_default();
                self.mount(
                    Some(Path::new("tmpfs")),
                    &host_target,
                    "tmpfs",
                    MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                    &data,
                )?;
                host_target
            }
            StepMount::Secret {
                data,
                target,
                mode,
                uid,
                gid,
            } => {
                let mapping = &self.spec.id_mapping;
                if mapping.host_uid(*uid).is_none() || mapping.host_gid(*gid).is_none() {
                    return Err(ChildFailure::Unmapped {
                        uid: *uid,
                        gid: *gid,
                    });
                }
                let source = self.staging.join(format!("secret-{index}"));
                let err = |e: std::io::Error| ChildFailure::os(SetupStep::WriteFile, &source, &e);
                self.sys
                    .write_file(&source, data.expose(), 0o600)
                    .map_err(err)?;
                self.sys.chown(&source, *uid, *gid).map_err(err)?;
                self.sys.chmod(&source, *mode).map_err(err)?;
                let host_target = self.ensure_file(target, stubs)?;
                self.bind(&source, &host_target, false, true)?;
                host_target
            }
            StepMount::SshAgent { socket, target } => {
                let host_target = self.ensure_file(target, stubs)?;
                self.bind(socket, &host_target, false, false)?;
                host_target
            }
        };
        stubs.mounted.push(self.container_path(&host_target));
        Ok(())
    }

    fn staging_dir(&self, name: &str) -> Result<PathBuf> {
        let dir = self.staging.join(name);
        self.sys
            .mkdir(&dir, 0o755)
            .map_err(|e| ChildFailure::os(SetupStep::CreateMountPoint, &dir, &e))?;
        Ok(dir)
    }

    /// The host path of container path `path`, following symlinks without leaving the root
    /// (an image's `/etc/resolv.conf -> /run/...` stays inside the image).
    pub(crate) fn resolve(&self, path: &Path) -> PathBuf {
        let mut resolved: Vec<std::ffi::OsString> = Vec::new();
        let mut pending: Vec<std::ffi::OsString> = path
            .components()
            .rev()
            .filter_map(|c| normal_or_parent(&c))
            .collect();
        let mut links = 0;
        while let Some(part) = pending.pop() {
            if part == ".." {
                resolved.pop();
                continue;
            }
            let host = self.host_path(&resolved).join(&part);
            if links < 40 && self.sys.kind(&host) == Some(FileKind::Symlink) {
                if let Ok(target) = self.sys.read_link(&host) {
                    links += 1;
                    if target.is_absolute() {
                        resolved.clear();
                    }
                    pending.extend(
                        target
                            .components()
                            .rev()
                            .filter_map(|c| normal_or_parent(&c)),
                    );
                    continue;
                }
            }
            resolved.push(part);
        }
        self.host_path(&resolved)
    }

    fn host_path(&self, parts: &[std::ffi::OsString]) -> PathBuf {
        let mut p = self.root().to_path_buf();
        p.extend(parts);
        p
    }

    /// Container path of a host path under the root.
    fn container_path(&self, host: &Path) -> PathBuf {
        Path::new("/").join(host.strip_prefix(self.root()).unwrap_or(host))
    }

    fn ensure_dir(&self, path: &Path, stubs: &mut MountStubs) -> Result<PathBuf> {
        let host = self.resolve(path);
        match self.sys.kind(&host) {
            Some(FileKind::Dir) => Ok(host),
            Some(_) => Err(ChildFailure::MountPointKind {
                path: path.to_path_buf(),
            }),
            None => {
                if let Some(parent) = path.parent().filter(|p| *p != path) {
                    self.ensure_dir(parent, stubs)?;
                }
                self.create_stub(&host, FileKind::Dir, stubs)?;
                Ok(host)
            }
        }
    }

    fn ensure_file(&self, path: &Path, stubs: &mut MountStubs) -> Result<PathBuf> {
        let host = self.resolve(path);
        match self.sys.kind(&host) {
            Some(FileKind::Dir) => Err(ChildFailure::MountPointKind {
                path: path.to_path_buf(),
            }),
            Some(_) => Ok(host),
            None => {
                if let Some(parent) = path.parent() {
                    self.ensure_dir(parent, stubs)?;
                }
                self.create_stub(&host, FileKind::File, stubs)?;
                Ok(host)
            }
        }
    }

    fn create_stub(&self, host: &Path, kind: FileKind, stubs: &mut MountStubs) -> Result<()> {
        let parent_times = host.parent().and_then(|p| self.sys.times(p).ok());
        let created = match kind {
            FileKind::Dir => self.sys.mkdir(host, 0o755),
            _ => self.sys.create_file(host, 0o644),
        };
        created.map_err(|e| ChildFailure::os(SetupStep::CreateMountPoint, host, &e))?;
        stubs.created.push(Stub {
            path: self.container_path(host),
            kind,
            parent_times,
        });
        Ok(())
    }
}

fn normal_or_parent(c: &Component<'_>) -> Option<std::ffi::OsString> {
    match c {
        Component::Normal(s) => Some(s.to_os_string()),
        Component::ParentDir => Some("..".into()),
        _ => None,
    }
}
