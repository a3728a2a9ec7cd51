//! The typed exchange between the caller (parent) and the sandbox init over a `SOCK_SEQPACKET`
//! socketpair: one JSON message per datagram, so the init's stages can write to the same socket
//! without interleaving. Failures inside the sandbox travel back as [`ChildFailure`] data.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::idmap::IdMapping;
use crate::spec::SandboxSpec;
use crate::user::UserError;

/// The first and only thing the parent writes to the init's stdin.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum InitRequest {
    /// Run a step; `staging` is an empty host directory the init mounts a tmpfs on for the
    /// files it supplies (hosts, resolv.conf, secrets) and throwaway overlay upper directories.
    Run {
        spec: Box<SandboxSpec>,
        staging: PathBuf,
        /// The seccomp filters to install, in order; `None` runs the step without one.
        seccomp: Option<Vec<crate::seccomp::Program>>,
    },
    /// Probe what the kernel allows inside a user namespace, using `dir` as scratch space.
    Probe { id_mapping: IdMapping, dir: PathBuf },
}

/// Messages from the sandbox to the parent.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ChildMessage {
    /// The init has unshared its user namespace and waits for the maps to be written.
    UserNamespaceCreated,
    /// Real root's step runs with the host's ids: the kernel would not idmap this path.
    NotIsolated(crate::isolate::NotIsolated),
    /// The pid namespace's init runs, with this pid in the parent's namespace.
    InitStarted { pid: i32 },
    /// Setup failed.
    Failed(ChildFailure),
    /// The step's process ended: exit code, or the signal that killed it.
    Exited {
        code: Option<i32>,
        signal: Option<i32>,
    },
    /// Results of [`InitRequest::Probe`].
    ProbeResults {
        overlay: Result<(), ChildFailure>,
        proc: Result<(), ChildFailure>,
        /// sethostname(2) in the step's UTS namespace, which every step makes.
        hostname: Result<(), ChildFailure>,
    },
}

/// Messages from the parent to the sandbox.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ParentMessage {
    /// The uid and gid maps are written; `effective` is the mapping written instead of the
    /// one asked for (one id, when the uidmap helpers were refused).
    MappingDone { effective: Option<IdMapping> },
    /// Stop the step: SIGTERM, then SIGKILL of the whole pid namespace after `grace_ms`.
    Cancel { grace_ms: u64 },
}

/// The setup step that failed inside the sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum SetupStep {
    /// Reading the request from the parent.
    ReadRequest,
    /// Creating namespaces.
    Unshare,
    /// Waiting for the uid/gid maps.
    WaitForMapping,
    /// Mounting a filesystem of this type.
    Mount(String),
    /// Creating a mount point in the root filesystem.
    CreateMountPoint,
    /// Writing a file the sandbox supplies.
    WriteFile,
    /// Setting the hostname.
    Hostname,
    /// Bringing loopback up.
    Loopback,
    /// Entering the root filesystem.
    PivotRoot,
    /// Forking a process.
    Fork,
    /// Creating the working directory.
    WorkingDirectory,
    /// Reading the image's /etc/passwd or /etc/group.
    ReadUserDatabase,
    /// Switching to the step's uid, gid and groups.
    SetIds,
    /// Setting a resource limit (`--ulimit`).
    ResourceLimit,
    /// Limiting capabilities.
    Capabilities,
    /// Installing the seccomp filter.
    Seccomp,
    /// Executing the command.
    Exec,
}

impl std::fmt::Display for SetupStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SetupStep::ReadRequest => f.write_str("reading the sandbox request"),
            SetupStep::Unshare => f.write_str("creating namespaces"),
            SetupStep::WaitForMapping => f.write_str("waiting for the uid/gid maps"),
            SetupStep::Mount(fstype) => write!(f, "mounting {fstype}"),
            SetupStep::CreateMountPoint => f.write_str("creating a mount point"),
            SetupStep::WriteFile => f.write_str("writing a file"),
            SetupStep::Hostname => f.write_str("setting the hostname"),
            SetupStep::Loopback => f.write_str("bringing loopback up"),
            SetupStep::PivotRoot => f.write_str("entering the root filesystem"),
            SetupStep::Fork => f.write_str("forking"),
            SetupStep::WorkingDirectory => f.write_str("creating the working directory"),
            SetupStep::ReadUserDatabase => f.write_str("reading the user database"),
            SetupStep::SetIds => f.write_str("switching user"),
            SetupStep::ResourceLimit => f.write_str("setting a resource limit"),
            SetupStep::Capabilities => f.write_str("dropping capabilities"),
            SetupStep::Seccomp => f.write_str("installing the seccomp filter"),
            SetupStep::Exec => f.write_str("executing"),
        }
    }
}

/// A failure inside the sandbox, as data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum ChildFailure {
    /// A system call failed with `errno` while doing `step` on `path`.
    Os {
        step: SetupStep,
        path: PathBuf,
        errno: i32,
    },
    /// The kernel refused a fresh procfs (a masked /proc).
    ProcMasked { errno: i32 },
    /// `USER` did not resolve.
    User(UserError),
    /// The step's uid or gid is not mapped in the user namespace.
    Unmapped { uid: u32, gid: u32 },
    /// The command was not found in `PATH`.
    CommandNotFound { program: String, path: String },
    /// A mount point exists but is of the wrong kind (a file where a directory is needed).
    MountPointKind { path: PathBuf },
    /// The request could not be decoded.
    BadRequest { detail: String },
}

impl ChildFailure {
    pub(crate) fn os(step: SetupStep, path: impl Into<PathBuf>, err: &io::Error) -> ChildFailure {
        ChildFailure::Os {
            step,
            path: path.into(),
            errno: err.raw_os_error().unwrap_or(libc::EIO),
        }
    }
}

/// Largest message either side sends; spec and secrets travel over stdin instead.
const MAX_MESSAGE: usize = 64 * 1024;

pub(crate) fn send<T: Serialize>(fd: BorrowedFd<'_>, message: &T) -> io::Result<()> {
    let bytes = serde_json::to_vec(message).map_err(io::Error::other)?;
    nix::sys::socket::send(
        fd.as_raw_fd(),
        &bytes,
        nix::sys::socket::MsgFlags::MSG_NOSIGNAL,
    )?;
    Ok(())
}

/// Receives one message; `Ok(None)` at end of stream (every writer closed its end).
pub(crate) fn recv<T: for<'de> Deserialize<'de>>(fd: impl AsFd) -> io::Result<Option<T>> {
    let mut buf = vec![0u8; MAX_MESSAGE];
    let n = loop {
        match nix::sys::socket::recv(
            fd.as_fd().as_raw_fd(),
            &mut buf,
            nix::sys::socket::MsgFlags::empty(),
        ) {
            Err(nix::errno::Errno::EINTR) => continue,
            other => break other?,
        }
    };
    if n == 0 {
        return Ok(None);
    }
    serde_json::from_slice(&buf[..n])
        .map(Some)
        .map_err(io::Error::other)
}
