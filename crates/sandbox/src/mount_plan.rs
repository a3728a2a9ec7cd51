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
use crate::spec::{BindMode, NetworkMode, Rootfs, SandboxSpec, SecurityMode, StepMount};
use crate::syscalls::{FileKind, Syscalls, Times};

/// Device nodes bound from the host's /dev, as runc's default rootless devices.
const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// Parts of /proc made read-only, as Docker does (moby `oci/defaults.go`).
const PROC_READ_ONLY: [&str; 5] = ["bus", "fs", "irq", "sys", "sysrq-trigger"];
/// Parts of /proc hidden, as Docker does.
const PROC_MASKED: [&str; 8] = [
    "asound",
    "acpi",
    "kcore",
    "keys",
    "latency_stats",
    "timer_list",
    "timer_stats",
    "sched_debug",
];

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

    fn mount_proc(&self, stubs: &mut MountStubs) -> Result<()> {
        let target = self.ensure_dir(Path::new("/proc"), stubs)?;
        let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
        self.sys
            .mount(Some(Path::new("proc")), &target, Some("proc"), flags, None)
            .map_err(|e| match e.raw_os_error() {
                // The kernel refuses a new procfs when the visible one has paths mounted over
                // (mount_too_revealing): the masked /proc of a default container or pod.
                Some(errno @ (libc::EPERM | libc::EACCES)) => ChildFailure::ProcMasked { errno },
                _ => ChildFailure::os(SetupStep::Mount("proc".into()), &target, &e),
            })?;
        stubs.mounted.push(self.container_path(&target));
        if self.spec.security == SecurityMode::Sandbox {
            self.confine_proc(&target)?;
        }
        Ok(())
    }

    /// Docker's default masked and read-only paths of /proc: without them a step run by real
    /// root could change the host's sysctls, which only check file permissions.
    fn confine_proc(&self, proc: &Path) -> Result<()> {
        for name in PROC_READ_ONLY {
            let path = proc.join(name);
            if self.sys.kind(&path).is_some() {
                self.bind(&path, &path, true, true)?;
            }
        }
        for name in PROC_MASKED {
            let path = proc.join(name);
            match self.sys.kind(&path) {
                Some(FileKind::Dir) => {
                    let flags = MsFlags::MS_RDONLY
                        | MsFlags::MS_NOSUID
                        | MsFlags::MS_NODEV
                        | MsFlags::MS_NOEXEC;
                    self.mount(Some(Path::new("tmpfs")), &path, "tmpfs", flags, "size=0")?;
                }
                Some(_) => self.bind(Path::new("/dev/null"), &path, false, false)?,
                None => {}
            }
        }
        Ok(())
    }

    fn mount_dev(&self, stubs: &mut MountStubs) -> Result<()> {
        let dev = self.ensure_dir(Path::new("/dev"), stubs)?;
        let flags = MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME;
        self.mount(
            Some(Path::new("tmpfs")),
            &dev,
            "tmpfs",
            flags,
            "mode=755,size=65536k",
        )?;
        stubs.mounted.push(self.container_path(&dev));
        // Everything below lives in the tmpfs: nothing to clean up.
        let fs = |step, path: &Path, e: std::io::Error| ChildFailure::os(step, path, &e);
        for name in DEVICES {
            let node = dev.join(name);
            self.sys
                .create_file(&node, 0o666)
                .map_err(|e| fs(SetupStep::CreateMountPoint, &node, e))?;
            self.bind(&Path::new("/dev").join(name), &node, false, false)?;
        }
        let pts = dev.join("pts");
        self.sys
            .mkdir(&pts, 0o755)
            .map_err(|e| fs(SetupStep::CreateMountPoint, &pts, e))?;
        let mut pts_data = "newinstance,ptmxmode=0666,mode=0620".to_string();
        if self.tty_gid_mapped {
            pts_data.push_str(",gid=5");
        }
        self.mount(
            Some(Path::new("devpts")),
            &pts,
            "devpts",
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
            &pts_data,
        )?;
        let shm = dev.join("shm");
        self.sys
            .mkdir(&shm, 0o1777)
            .map_err(|e| fs(SetupStep::CreateMountPoint, &shm, e))?;
        let shm_flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
        self.mount(
            Some(Path::new("shm")),
            &shm,
            "tmpfs",
            shm_flags,
            "mode=1777,size=65536k",
        )?;
        for (link, target) in [
            ("fd", "/proc/self/fd"),
            ("stdin", "/proc/self/fd/0"),
            ("stdout", "/proc/self/fd/1"),
            ("stderr", "/proc/self/fd/2"),
            ("ptmx", "pts/ptmx"),
        ] {
            let link = dev.join(link);
            self.sys
                .symlink(Path::new(target), &link)
                .map_err(|e| fs(SetupStep::CreateMountPoint, &link, e))?;
        }
        Ok(())
    }

    fn mount_sys(&self, stubs: &mut MountStubs) -> Result<()> {
        let target = self.ensure_dir(Path::new("/sys"), stubs)?;
        let flags =
            MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
        // A fresh sysfs needs a network namespace owned by our user namespace; with the host's
        // network the kernel refuses it, and a read-only bind of the host's /sys does instead.
        stubs.mounted.push(self.container_path(&target));
        if self.spec.network == NetworkMode::None
            && self
                .sys
                .mount(
                    Some(Path::new("sysfs")),
                    &target,
                    Some("sysfs"),
                    flags,
                    None,
                )
                .is_ok()
        {
            return Ok(());
        }
        // Recursive: in a user namespace the kernel refuses a bind that would uncover what the
        // host's submounts (cgroup, ...) hide.
        self.bind(Path::new("/sys"), &target, true, true)
    }

    fn supply_etc_files(&self, stubs: &mut MountStubs) -> Result<()> {
        let hostname = format!("{}\n", self.spec.hostname);
        let hosts = self
            .spec
            .hosts
            .clone()
            .unwrap_or_else(|| default_hosts(&self.spec.hostname).into_bytes());
        let resolv = self.spec.resolv_conf.clone().unwrap_or_default();
        for (name, data) in [
            ("hostname", hostname.into_bytes()),
            ("hosts", hosts),
            ("resolv.conf", resolv),
        ] {
            let source = self.staging.join(name);
            self.sys
                .write_file(&source, &data, 0o644)
                .map_err(|e| ChildFailure::os(SetupStep::WriteFile, &source, &e))?;
            let target = self.ensure_file(&Path::new("/etc").join(name), stubs)?;
            self.bind(&source, &target, false, false)?;
            stubs.mounted.push(self.container_path(&target));
        }
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
                        let data = format!(
                            "lowerdir={},upperdir={},workdir={}",
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

fn default_hosts(hostname: &str) -> String {
    format!(
        "127.0.0.1\tlocalhost {hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\n\
         ff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n"
    )
}

/// The step's resolv.conf from the host's: loopback nameservers (a local stub resolver) are
/// unreachable from a new network namespace and useless in `none`, so like Docker they are
/// replaced by public resolvers when nothing else remains.
pub(crate) fn resolv_conf_from_host(host: &str, network: NetworkMode) -> String {
    if network == NetworkMode::Host {
        return host.to_string();
    }
    host.lines()
        .filter(|l| !l.trim_start().starts_with("nameserver"))
        .map(|l| format!("{l}\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::idmap::IdMapping;
    use crate::spec::{Mount, Process, SecretBytes};
    use crate::syscalls::recording::RecordingSyscalls;

    fn spec(mounts: Vec<StepMount>, network: NetworkMode) -> SandboxSpec {
        let mut b = SandboxSpec::builder(
            Rootfs::Mounted {
                root: "/r".into(),
                mounts: vec![Mount::overlay(
                    &["/l1".into(), "/l0".into()],
                    Path::new("/u"),
                    Path::new("/w"),
                    Path::new("/r"),
                )],
            },
            Process::new(["true"]),
            IdMapping::single_id(1000, 1000),
        )
        .hostname("box")
        .network(network);
        for m in mounts {
            b = b.mount(m);
        }
        b.build()
    }

    fn run(sys: &RecordingSyscalls, spec: &SandboxSpec) -> Result<MountStubs> {
        RootSetup {
            sys,
            spec,
            staging: Path::new("/st"),
            tty_gid_mapped: false,
        }
        .run()
    }

    #[test]
    fn plans_rootfs_special_filesystems_and_pivot_in_order() {
        let sys = RecordingSyscalls::with_dirs(&["/r", "/r/proc", "/r/dev", "/r/sys", "/r/etc"]);
        run(&sys, &spec(vec![], NetworkMode::Host)).expect("setup");
        let calls = sys.calls();
        let expected_prefix = [
            "mount - / - [MS_REC | MS_PRIVATE] ",
            "mount overlay /r overlay [] lowerdir=/l1:/l0,upperdir=/u,workdir=/w",
            "mount /r /r - [MS_BIND | MS_REC] ",
            "mount tmpfs /st tmpfs [MS_NOSUID | MS_NODEV] mode=755",
            "mount proc /r/proc proc [MS_NOSUID | MS_NODEV | MS_NOEXEC] ",
            "mount tmpfs /r/dev tmpfs [MS_NOSUID | MS_STRICTATIME] mode=755,size=65536k",
            "create /r/dev/null 666",
            "mount /dev/null /r/dev/null - [MS_BIND] ",
        ];
        assert_eq!(&calls[..expected_prefix.len()], expected_prefix);
        assert!(calls.contains(&"mount devpts /r/dev/pts devpts [MS_NOSUID | MS_NOEXEC] newinstance,ptmxmode=0666,mode=0620".to_string()));
        assert!(calls.contains(&"symlink /r/dev/ptmx -> pts/ptmx".to_string()));
        // Host network: sysfs is the host's, bound read-only with its locked flags repeated.
        assert!(calls.contains(
            &"mount - /r/sys - [MS_RDONLY | MS_NOSUID | MS_NODEV | MS_REMOUNT | MS_BIND] "
                .to_string()
        ));
        assert!(!calls.contains(&"loopback_up".to_string()));
        assert_eq!(calls[calls.len() - 2], "sethostname box");
        assert_eq!(calls.last().map(String::as_str), Some("pivot_root /r"));
    }

    #[test]
    fn etc_files_get_stubs_only_when_absent_and_stubs_are_cleaned_newest_first() {
        let sys = RecordingSyscalls::with_dirs(&["/r", "/r/proc", "/r/dev", "/r/sys", "/r/etc"]);
        sys.add("/r/etc/hosts", FileKind::File, None);
        let stubs = run(&sys, &spec(vec![], NetworkMode::None)).expect("setup");
        let calls = sys.calls();
        assert!(calls.contains(&"create /r/etc/hostname 644".to_string()));
        assert!(calls.contains(&"create /r/etc/resolv.conf 644".to_string()));
        assert!(
            !calls.iter().any(|c| c == "create /r/etc/hosts 644"),
            "existing file reused"
        );
        assert!(calls.contains(&"mount /st/hosts /r/etc/hosts - [MS_BIND] ".to_string()));
        assert!(calls.contains(&"loopback_up".to_string()));
        assert!(calls
            .iter()
            .any(|c| c.starts_with("mount sysfs /r/sys sysfs")));

        let sys2 = RecordingSyscalls::default();
        stubs.clean(&sys2);
        let calls = sys2.calls();
        let (umounts, rest) = calls.split_at(
            calls
                .iter()
                .position(|c| c.starts_with("remove"))
                .expect("removes"),
        );
        assert_eq!(
            umounts,
            [
                "umount /etc/resolv.conf",
                "umount /etc/hosts",
                "umount /etc/hostname",
                "umount /sys",
                "umount /dev",
                "umount /proc"
            ]
        );
        assert_eq!(
            rest,
            [
                "remove /etc/resolv.conf",
                "restore_times /etc",
                "remove /etc/hostname",
                "restore_times /etc"
            ]
        );
    }

    #[test]
    fn step_mounts_create_nested_stubs_and_bind_with_their_mode() {
        let sys = RecordingSyscalls::with_dirs(&[
            "/r", "/r/proc", "/r/dev", "/r/sys", "/r/etc", "/src", "/cache",
        ]);
        sys.add("/sock", FileKind::File, None);
        let mounts = vec![
            StepMount::Secret {
                data: SecretBytes::new("pw"),
                target: "/run/secrets/token".into(),
                mode: 0o400,
                uid: 0,
                gid: 0,
            },
            StepMount::Bind {
                source: "/src".into(),
                target: "/src".into(),
                mode: BindMode::ReadOnly,
            },
            StepMount::Bind {
                source: "/src".into(),
                target: "/work".into(),
                mode: BindMode::ReadWriteDiscard,
            },
            StepMount::Cache {
                source: "/cache".into(),
                target: "/root/.cache".into(),
            },
            StepMount::Tmpfs {
                target: "/tmp".into(),
                size: Some(1 << 20),
            },
            StepMount::SshAgent {
                socket: "/sock".into(),
                target: "/run/ssh.sock".into(),
            },
        ];
        let stubs = run(&sys, &spec(mounts, NetworkMode::Host)).expect("setup");
        let calls = sys.calls();
        for want in [
            "mkdir /r/run 755",
            "mkdir /r/run/secrets 755",
            "create /r/run/secrets/token 644",
            "write /st/secret-0 2B 600",
            "chmod /st/secret-0 400",
            "mount /st/secret-0 /r/run/secrets/token - [MS_BIND] ",
            "mount - /r/run/secrets/token - [MS_RDONLY | MS_NOSUID | MS_NODEV | MS_REMOUNT | MS_BIND] ",
            "mount /src /r/src - [MS_BIND | MS_REC] ",
            "mount - /r/src - [MS_RDONLY | MS_NOSUID | MS_NODEV | MS_REMOUNT | MS_BIND] ",
            "mount overlay /r/work overlay [] lowerdir=/src,upperdir=/st/discard-2-upper,workdir=/st/discard-2-work",
            "mount /cache /r/root/.cache - [MS_BIND | MS_REC] ",
            "mount tmpfs /r/tmp tmpfs [MS_NOSUID | MS_NODEV] size=1048576",
            "create /r/run/ssh.sock 644",
            "mount /sock /r/run/ssh.sock - [MS_BIND] ",
        ] {
            assert!(calls.contains(&want.to_string()), "missing {want:?} in {calls:#?}");
        }
        let sys2 = RecordingSyscalls::default();
        stubs.clean(&sys2);
        let removed: Vec<String> = sys2
            .calls()
            .into_iter()
            .filter(|c| c.starts_with("remove"))
            .collect();
        assert_eq!(
            removed,
            [
                "remove /run/secrets/token",
                "remove /run/secrets",
                "remove /run/ssh.sock",
                "remove /run",
                "remove /root/.cache",
                "remove /root",
                "remove /tmp",
                "remove /work",
                "remove /src",
                "remove /etc/resolv.conf",
                "remove /etc/hosts",
                "remove /etc/hostname"
            ]
        );
    }

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let sys = RecordingSyscalls::with_dirs(&["/r", "/r/etc", "/r/run"]);
        sys.add(
            "/r/etc/resolv.conf",
            FileKind::Symlink,
            Some("/run/resolv.conf"),
        );
        sys.add("/r/escape", FileKind::Symlink, Some("../../../../etc"));
        let spec = spec(vec![], NetworkMode::Host);
        let setup = RootSetup {
            sys: &sys,
            spec: &spec,
            staging: Path::new("/st"),
            tty_gid_mapped: false,
        };
        assert_eq!(
            setup.resolve(Path::new("/etc/resolv.conf")),
            Path::new("/r/run/resolv.conf")
        );
        assert_eq!(
            setup.resolve(Path::new("/escape/passwd")),
            Path::new("/r/etc/passwd")
        );
        assert_eq!(setup.resolve(Path::new("/../../x")), Path::new("/r/x"));
    }

    #[test]
    fn masked_proc_is_reported_as_such() {
        let sys = RecordingSyscalls {
            fail_mount_fstype: Some("proc"),
            ..RecordingSyscalls::with_dirs(&["/r", "/r/proc"])
        };
        let err = run(&sys, &spec(vec![], NetworkMode::Host)).expect_err("proc refused");
        assert_eq!(err, ChildFailure::ProcMasked { errno: libc::EPERM });
    }

    #[test]
    fn proc_gets_docker_masks_unless_insecure() {
        let dirs = [
            "/r",
            "/r/proc",
            "/r/dev",
            "/r/sys",
            "/r/etc",
            "/r/proc/sys",
            "/r/proc/acpi",
        ];
        let sys = RecordingSyscalls::with_dirs(&dirs);
        sys.add("/r/proc/kcore", FileKind::File, None);
        run(&sys, &spec(vec![], NetworkMode::Host)).expect("setup");
        let calls = sys.calls();
        for want in [
            "mount /r/proc/sys /r/proc/sys - [MS_BIND | MS_REC] ",
            "mount - /r/proc/sys - [MS_RDONLY | MS_NOSUID | MS_NODEV | MS_REMOUNT | MS_BIND] ",
            "mount tmpfs /r/proc/acpi tmpfs [MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC] size=0",
            "mount /dev/null /r/proc/kcore - [MS_BIND] ",
        ] {
            assert!(
                calls.contains(&want.to_string()),
                "missing {want:?} in {calls:#?}"
            );
        }
        assert!(
            !calls.iter().any(|c| c.contains("/r/proc/fs")),
            "absent paths are skipped"
        );

        let sys = RecordingSyscalls::with_dirs(&dirs);
        let insecure = SandboxSpec {
            security: SecurityMode::Insecure,
            ..spec(vec![], NetworkMode::Host)
        };
        run(&sys, &insecure).expect("setup");
        assert!(
            !sys.calls().iter().any(|c| c.contains("/r/proc/")),
            "insecure keeps /proc whole"
        );
    }

    #[test]
    fn secrets_for_unmapped_owners_are_refused_before_writing() {
        let sys = RecordingSyscalls::with_dirs(&["/r", "/r/proc", "/r/dev", "/r/sys", "/r/etc"]);
        let secret = StepMount::Secret {
            data: SecretBytes::new("pw"),
            target: "/run/secrets/s".into(),
            mode: 0o400,
            uid: 1000,
            gid: 1000,
        };
        let err = run(&sys, &spec(vec![secret], NetworkMode::Host)).expect_err("uid 1000 unmapped");
        assert_eq!(
            err,
            ChildFailure::Unmapped {
                uid: 1000,
                gid: 1000
            }
        );
        let calls = sys.calls();
        assert!(!calls.iter().any(|c| c.contains("secret")), "{calls:?}");
        // The stubs made before the failure are gone again, at their host paths.
        assert!(
            calls.contains(&"umount /r/etc/hosts".to_string()),
            "{calls:?}"
        );
        assert!(
            calls.contains(&"remove /r/etc/hostname".to_string()),
            "{calls:?}"
        );
    }

    #[test]
    fn parses_mount_options() {
        let (flags, data) = parse_options(&[
            "ro".into(),
            "nosuid".into(),
            "lowerdir=/a".into(),
            "size=1m".into(),
        ]);
        assert_eq!(flags, MsFlags::MS_RDONLY | MsFlags::MS_NOSUID);
        assert_eq!(data, "lowerdir=/a,size=1m");
    }

    #[test]
    fn resolv_conf_drops_nameservers_without_host_network() {
        let host = "search x\nnameserver 127.0.0.53\n";
        assert_eq!(resolv_conf_from_host(host, NetworkMode::Host), host);
        assert_eq!(resolv_conf_from_host(host, NetworkMode::None), "search x\n");
    }
}
