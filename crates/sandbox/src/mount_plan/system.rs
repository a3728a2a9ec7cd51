//! The filesystems every step gets: a fresh /proc confined as Docker confines it, a small /dev
//! without device files of its own (`nodev`), a /sys read-only all the way down with Docker's
//! masks, and the /etc files the sandbox supplies.

use std::path::Path;

use nix::mount::MsFlags;

use super::{MountStubs, Result, RootSetup};
use crate::protocol::{ChildFailure, SetupStep};
use crate::spec::{NetworkMode, SecurityMode};
use crate::syscalls::FileKind;

/// Device nodes bound from the host's /dev, as runc's default rootless devices.
const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];
/// Parts of /proc made read-only (with everything mounted below them), as Docker does.
const PROC_READ_ONLY: [&str; 5] = ["bus", "fs", "irq", "sys", "sysrq-trigger"];
/// Parts of /proc hidden, as Docker does: a file under /dev/null, a directory under an empty
/// read-only tmpfs.
const PROC_MASKED: [&str; 10] = [
    "asound",
    "acpi",
    "interrupts",
    "kcore",
    "keys",
    "latency_stats",
    "timer_list",
    "timer_stats",
    "sched_debug",
    "scsi",
];
/// Parts of /sys hidden, as Docker does (besides each CPU's `thermal_throttle`).
const SYS_MASKED: [&str; 2] = ["firmware", "devices/virtual/powercap"];

impl RootSetup<'_> {
    pub(super) fn mount_proc(&self, stubs: &mut MountStubs) -> Result<()> {
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

    /// Docker's default masked and read-only paths of /proc: without them a step could change
    /// sysctls that check file permissions only (as the host's root did before steps got a
    /// user namespace of their own), or read the kernel's memory and keys.
    fn confine_proc(&self, proc: &Path) -> Result<()> {
        for name in PROC_READ_ONLY {
            let path = proc.join(name);
            if self.sys.kind(&path).is_some() {
                self.bind(&path, &path, true, false)?;
                self.read_only_recursive(&path)?;
            }
        }
        for name in PROC_MASKED {
            self.mask(&proc.join(name))?;
        }
        Ok(())
    }

    /// Hides `path`: a file under /dev/null, a directory under an empty read-only tmpfs.
    fn mask(&self, path: &Path) -> Result<()> {
        match self.sys.kind(path) {
            Some(FileKind::Dir) => {
                let flags = MsFlags::MS_RDONLY
                    | MsFlags::MS_NOSUID
                    | MsFlags::MS_NODEV
                    | MsFlags::MS_NOEXEC;
                self.mount(Some(Path::new("tmpfs")), path, "tmpfs", flags, "size=0")
            }
            Some(_) => self.bind(Path::new("/dev/null"), path, false, false),
            None => Ok(()),
        }
    }

    fn read_only_recursive(&self, path: &Path) -> Result<()> {
        self.sys
            .read_only_recursive(path)
            .map_err(|e| ChildFailure::os(SetupStep::Mount("read-only".into()), path, &e))
    }

    pub(super) fn mount_dev(&self, stubs: &mut MountStubs) -> Result<()> {
        let dev = self.ensure_dir(Path::new("/dev"), stubs)?;
        // nodev: a device node made in /dev does not open. The standard nodes are binds of the
        // host's, mounts of their own that keep working.
        let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_STRICTATIME;
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
            &format!(
                "mode=1777,size={}k",
                self.spec.shm_size.map_or(65536, |b| b.div_ceil(1024))
            ),
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

    pub(super) fn mount_sys(&self, stubs: &mut MountStubs) -> Result<()> {
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
            return self.confine_sys(&target);
        }
        // Recursive: in a user namespace the kernel refuses a bind that would uncover what the
        // host's submounts (cgroup, ...) hide. Read-only all the way down: a writable cgroupfs
        // (a v1 hierarchy's release_agent) is a known way out of a container.
        self.bind(Path::new("/sys"), &target, true, false)?;
        self.confine_sys(&target)
    }

    fn confine_sys(&self, sys: &Path) -> Result<()> {
        for name in SYS_MASKED {
            self.mask(&sys.join(name))?;
        }
        for cpu in self.sys.cpu_dirs(&sys.join("devices/system/cpu")) {
            self.mask(&cpu.join("thermal_throttle"))?;
        }
        self.read_only_recursive(sys)
    }

    pub(super) fn supply_etc_files(&self, stubs: &mut MountStubs) -> Result<()> {
        let hostname = format!("{}\n", self.spec.hostname);
        let mut hosts = self
            .spec
            .hosts
            .clone()
            .unwrap_or_else(|| default_hosts(&self.spec.hostname).into_bytes());
        // `--add-host` entries follow the defaults, as BuildKit writes them.
        for (host, ip) in &self.spec.extra_hosts {
            hosts.extend_from_slice(format!("{ip}\t{host}\n").as_bytes());
        }
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
}

fn default_hosts(hostname: &str) -> String {
    format!(
        "127.0.0.1\tlocalhost {hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\n\
         ff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n"
    )
}

/// The step's resolv.conf from the host's: with the host's network as it is; in a network
/// namespace of its own no nameserver is reachable, so none is listed.
pub(crate) fn resolv_conf_from_host(host: &str, network: NetworkMode) -> String {
    if network == NetworkMode::Host {
        return host.to_string();
    }
    host.lines()
        .filter(|l| !l.trim_start().starts_with("nameserver"))
        .map(|l| format!("{l}\n"))
        .collect()
}
