//! The crate's error type.

use std::io;
use std::path::PathBuf;

use crate::cache_lock::CacheLockError;
use crate::idmap::IdMapError;
use crate::protocol::{ChildFailure, SetupStep};
use crate::user::UserError;

/// A failure inside the sandbox while preparing the step, reported back by the sandbox init.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    /// The kernel refused a fresh procfs.
    #[error(
        "cannot mount a fresh /proc for the step's pid namespace because this /proc is masked \
         (paths under it are mounted over, as in a default container or Kubernetes pod): in \
         Kubernetes set `securityContext.procMount: Unmasked` on the container (with \
         `hostUsers: false`); with docker or podman run with `--security-opt \
         systempaths=unconfined`; or run on a host with an unmasked /proc"
    )]
    ProcMasked {
        /// The error of mount(2).
        #[source]
        source: io::Error,
    },
    /// sethostname(2) was refused in the step's own uts namespace, where the kernel allows it:
    /// a seccomp profile (podman's default one without CAP_SYS_ADMIN) or a security module.
    /// Every step sets its hostname, as BuildKit's do.
    #[error(
        "setting the step's hostname was refused, by a seccomp profile or a security module \
         (the kernel allows it in the step's own uts namespace): in Kubernetes set \
         `securityContext.seccompProfile.type: Unconfined` (or a Localhost profile that allows \
         sethostname); with docker or podman run with `--security-opt seccomp=unconfined`"
    )]
    HostnameRefused {
        /// The error of sethostname(2).
        #[source]
        source: io::Error,
    },
    /// A system call failed.
    #[error("{step} ({path}) failed")]
    Os {
        /// What was being done.
        step: SetupStep,
        /// The path or object concerned.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// `USER` did not resolve.
    #[error(transparent)]
    User(#[from] UserError),
    /// The step's user or group has no id on the host.
    #[error(
        "uid {uid} / gid {gid} of the step is not mapped in the user namespace: only root is \
         without subordinate ids; add ranges with `sudo usermod --add-subuids 100000-165535 \
         --add-subgids 100000-165535 $USER` and install the uidmap package"
    )]
    Unmapped {
        /// The uid.
        uid: u32,
        /// The gid.
        gid: u32,
    },
    /// The command is not in `PATH`.
    #[error("{program}: executable file not found in PATH {path}")]
    CommandNotFound {
        /// argv\[0\].
        program: String,
        /// The PATH searched.
        path: String,
    },
    /// A mount target exists in the image with the wrong type.
    #[error(
        "mount point {path} exists in the root filesystem with the wrong type (file vs directory)"
    )]
    MountPointKind {
        /// The container path.
        path: PathBuf,
    },
    /// The init could not decode the request: the init program is of another version.
    #[error("the sandbox init could not decode its request ({detail}): it must be the same build as the caller")]
    BadRequest {
        /// The decoder's message.
        detail: String,
    },
}

impl From<ChildFailure> for SetupError {
    fn from(f: ChildFailure) -> Self {
        match f {
            ChildFailure::Os {
                step: SetupStep::Hostname,
                errno: errno @ (libc::EPERM | libc::EACCES),
                ..
            } => SetupError::HostnameRefused {
                source: io::Error::from_raw_os_error(errno),
            },
            ChildFailure::Os { step, path, errno } => SetupError::Os {
                step,
                path,
                source: io::Error::from_raw_os_error(errno),
            },
            ChildFailure::ProcMasked { errno } => SetupError::ProcMasked {
                source: io::Error::from_raw_os_error(errno),
            },
            ChildFailure::User(e) => SetupError::User(e),
            ChildFailure::Unmapped { uid, gid } => SetupError::Unmapped { uid, gid },
            ChildFailure::CommandNotFound { program, path } => {
                SetupError::CommandNotFound { program, path }
            }
            ChildFailure::MountPointKind { path } => SetupError::MountPointKind { path },
            ChildFailure::BadRequest { detail } => SetupError::BadRequest { detail },
        }
    }
}

/// Errors of running a step.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SandboxError {
    /// The spec cannot be run.
    #[error("invalid sandbox spec: {field} {problem}")]
    InvalidSpec {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// The init program could not be started.
    #[error("cannot start the sandbox init {program}")]
    Spawn {
        /// The init program.
        program: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The init program exited without acting as the sandbox init.
    #[error(
        "{program} did not act as the sandbox init (exit status {status}): its main() must call \
         img_sandbox::maybe_run_init() first"
    )]
    InitNotResponding {
        /// The init program.
        program: PathBuf,
        /// Its exit status.
        status: String,
    },
    /// Communication with the sandbox failed.
    #[error("i/o with the sandbox init failed")]
    Io {
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The uid/gid maps could not be written.
    #[error(transparent)]
    IdMap(#[from] IdMapError),
    /// Setting up the sandbox failed.
    #[error("sandbox setup failed")]
    Setup(#[from] SetupError),
    /// A cache mount lock failed.
    #[error(transparent)]
    CacheLock(#[from] CacheLockError),
    /// The seccomp profile could not be compiled.
    #[error(transparent)]
    Seccomp(#[from] crate::seccomp::SeccompError),
    /// The step was cancelled through its [`crate::CancelToken`].
    #[error("step cancelled")]
    Cancelled,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_hostname_names_the_seccomp_setting() {
        let refused = SetupError::from(ChildFailure::Os {
            step: SetupStep::Hostname,
            path: "imgsandbox".into(),
            errno: libc::EPERM,
        });
        assert!(matches!(refused, SetupError::HostnameRefused { .. }));
        let message = refused.to_string();
        assert!(message.contains("seccompProfile.type: Unconfined"));
        assert!(!message.contains("  "), "{message}");
        // Another failure of the same step stays a plain system call error.
        let other = SetupError::from(ChildFailure::Os {
            step: SetupStep::Hostname,
            path: "imgsandbox".into(),
            errno: libc::EINVAL,
        });
        assert!(matches!(other, SetupError::Os { .. }));
    }
}
