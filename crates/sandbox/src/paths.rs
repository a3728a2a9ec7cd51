//! Host paths the sandbox reads, injectable so tests and unusual systems can point elsewhere.

use std::path::PathBuf;

/// Host files and programs the sandbox and the doctor consult.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPaths {
    /// The host's procfs (`/proc`).
    pub proc: PathBuf,
    /// Subordinate uid ranges (`/etc/subuid`).
    pub subuid: PathBuf,
    /// Subordinate gid ranges (`/etc/subgid`).
    pub subgid: PathBuf,
    /// The setuid uid-map writer (`/usr/bin/newuidmap`).
    pub newuidmap: PathBuf,
    /// The setuid gid-map writer (`/usr/bin/newgidmap`).
    pub newgidmap: PathBuf,
    /// The host's resolver configuration, copied into steps (`/etc/resolv.conf`).
    pub resolv_conf: PathBuf,
}

impl Default for HostPaths {
    fn default() -> Self {
        HostPaths {
            proc: "/proc".into(),
            subuid: "/etc/subuid".into(),
            subgid: "/etc/subgid".into(),
            newuidmap: "/usr/bin/newuidmap".into(),
            newgidmap: "/usr/bin/newgidmap".into(),
            resolv_conf: "/etc/resolv.conf".into(),
        }
    }
}
