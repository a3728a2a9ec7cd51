//! What to run: the root filesystem, the extra mounts and the process of one step.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::idmap::IdMapping;

/// Hostname a step sees unless the caller picks another (BuildKit uses `buildkitsandbox`).
pub const DEFAULT_HOSTNAME: &str = "imgsandbox";

/// A filesystem mount performed inside the sandbox's mount namespace, e.g. the overlay that
/// assembles the root filesystem from snapshot layers.
///
/// `options` follow mount(8): flag words (`ro`, `nosuid`, `nodev`, `noexec`, `bind`, `rbind`,
/// `relatime`, ...) become mount flags, everything else (`lowerdir=...`, `size=64m`) is passed to
/// the filesystem as data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// Filesystem type (`overlay`, `tmpfs`, `bind`, ...).
    pub fstype: String,
    /// Mount source (a path for binds, a name such as `overlay` otherwise).
    pub source: PathBuf,
    /// Absolute host path the filesystem is mounted on.
    pub target: PathBuf,
    /// mount(8)-style options.
    pub options: Vec<String>,
}

impl Mount {
    /// An overlay of read-only `lower` layers (topmost first) under a writable `upper` directory,
    /// mounted at `target`: the usual way to assemble a step's root filesystem.
    ///
    /// It carries `userxattr`: inside a user namespace overlayfs cannot write its
    /// `trusted.overlay.*` attributes, so without it removing a lower directory and making it
    /// again fails with EIO. Opaque directories in `upper` are therefore marked with the
    /// `user.overlay.opaque` attribute (`y`), as run by root too, and whiteouts are 0/0
    /// character devices; a layer differ reads them as such.
    pub fn overlay(lower: &[PathBuf], upper: &Path, work: &Path, target: &Path) -> Mount {
        let lowerdir = lower
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(":");
        Mount {
            fstype: "overlay".into(),
            source: "overlay".into(),
            target: target.to_path_buf(),
            options: vec![
                format!("lowerdir={lowerdir}"),
                format!("upperdir={}", upper.display()),
                format!("workdir={}", work.display()),
                "userxattr".into(),
            ],
        }
    }
}

/// The root filesystem of a step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Rootfs {
    /// An existing directory (a snapshot already mounted or copied by the caller).
    Directory(PathBuf),
    /// A directory that becomes the root after `mounts` are performed, in order, inside the
    /// sandbox's namespaces (so an unprivileged caller can mount overlayfs).
    Mounted {
        /// The directory that is the root once the mounts are done.
        root: PathBuf,
        /// Mounts performed before the root is entered.
        mounts: Vec<Mount>,
    },
}

impl Rootfs {
    /// The host path of the root directory.
    pub fn root(&self) -> &Path {
        match self {
            Rootfs::Directory(root) | Rootfs::Mounted { root, .. } => root,
        }
    }
}

/// How a host directory is bound into the step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum BindMode {
    /// Read-only (the default of `RUN --mount=type=bind`).
    ReadOnly,
    /// Writable, and writes reach the host directory.
    ReadWrite,
    /// Writable, but writes land in a throwaway overlay upper directory and are discarded
    /// when the step ends (`RUN --mount=type=bind,rw`).
    ReadWriteDiscard,
}

/// Secret bytes: never shown by `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretBytes(Vec<u8>);

impl SecretBytes {
    /// Wraps secret bytes.
    pub fn new(bytes: impl Into<Vec<u8>>) -> SecretBytes {
        SecretBytes(bytes.into())
    }

    /// The secret value.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretBytes(<redacted>)")
    }
}

/// A mount requested by the step (`RUN --mount=...`), with a target inside the container.
///
/// Mount points the sandbox has to create in the root filesystem are removed when the step
/// ends, so none of these ever leave a trace in the layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum StepMount {
    /// A host directory or file.
    Bind {
        /// Host path.
        source: PathBuf,
        /// Absolute path in the container.
        target: PathBuf,
        /// Read-only, read-write, or read-write with writes discarded.
        mode: BindMode,
    },
    /// A cache directory (rw bind); guard concurrent use with [`crate::CacheMountLock`].
    Cache {
        /// Host directory (see [`crate::CacheMountLock::dir`]).
        source: PathBuf,
        /// Absolute path in the container.
        target: PathBuf,
    },
    /// A fresh tmpfs.
    Tmpfs {
        /// Absolute path in the container.
        target: PathBuf,
        /// Size limit in bytes (kernel default, half of RAM, when absent).
        size: Option<u64>,
    },
    /// A secret file, bound read-only; its bytes live only in a tmpfs of the sandbox.
    Secret {
        /// The secret's contents.
        data: SecretBytes,
        /// Absolute path in the container (`/run/secrets/<id>` by convention).
        target: PathBuf,
        /// File mode (`0o400` by default in BuildKit).
        mode: u32,
        /// Owner uid inside the container.
        uid: u32,
        /// Owner gid inside the container.
        gid: u32,
    },
    /// An ssh-agent socket of the host, bound at `target` (`SSH_AUTH_SOCK` is the caller's to set).
    SshAgent {
        /// Host path of the agent socket.
        socket: PathBuf,
        /// Absolute path in the container.
        target: PathBuf,
    },
}

impl StepMount {
    /// The absolute container path of the mount.
    pub fn target(&self) -> &Path {
        match self {
            StepMount::Bind { target, .. }
            | StepMount::Cache { target, .. }
            | StepMount::Tmpfs { target, .. }
            | StepMount::Secret { target, .. }
            | StepMount::SshAgent { target, .. } => target,
        }
    }
}

/// The network a step sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub enum NetworkMode {
    /// The caller's network (`RUN --network=default` and `host`).
    #[default]
    Host,
    /// A new network namespace with only loopback, up (`RUN --network=none`).
    None,
}

/// How much of Docker's confinement applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub enum SecurityMode {
    /// Capabilities bounded to Docker's default set, `no_new_privs`.
    #[default]
    Sandbox,
    /// All capabilities of the namespace (`RUN --security=insecure`): the caller must only
    /// choose this when the user explicitly allowed it.
    Insecure,
}

/// The process of a step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Process {
    /// argv; `args[0]` is looked up in the `PATH` of `env` when it has no slash.
    pub args: Vec<String>,
    /// Environment, `KEY=value`.
    pub env: Vec<String>,
    /// Secret environment variables (`RUN --mount=type=secret,env=NAME`).
    pub secret_env: Vec<(String, SecretBytes)>,
    /// Working directory in the container, created if missing as Docker does.
    pub cwd: PathBuf,
    /// `USER`: `name`, `uid`, `name:group`, `uid:gid`, resolved against the image's
    /// `/etc/passwd` and `/etc/group`; empty means root.
    pub user: String,
}

impl Process {
    /// A process running `args` as root in `/` with no environment.
    pub fn new<S: Into<String>>(args: impl IntoIterator<Item = S>) -> Process {
        Process {
            args: args.into_iter().map(Into::into).collect(),
            env: Vec::new(),
            secret_env: Vec::new(),
            cwd: PathBuf::from("/"),
            user: String::new(),
        }
    }
}

/// A resource limit set on the step's process before it starts (`setrlimit`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceLimit {
    /// The resource as Docker names it (`nofile`, `nproc`, `core`, ...): see
    /// [`ResourceLimit::NAMES`].
    pub name: String,
    /// The soft limit; `u64::MAX` is unlimited.
    pub soft: u64,
    /// The hard limit; `u64::MAX` is unlimited.
    pub hard: u64,
}

impl ResourceLimit {
    /// The resources a limit may name, as `docker run --ulimit` names them.
    pub const NAMES: [&'static str; 15] = [
        "core",
        "cpu",
        "data",
        "fsize",
        "locks",
        "memlock",
        "msgqueue",
        "nice",
        "nofile",
        "nproc",
        "rss",
        "rtprio",
        "rttime",
        "sigpending",
        "stack",
    ];

    /// The kernel's resource number for `name`.
    pub(crate) fn resource(name: &str) -> Option<libc::__rlimit_resource_t> {
        Some(match name {
            "core" => libc::RLIMIT_CORE,
            "cpu" => libc::RLIMIT_CPU,
            "data" => libc::RLIMIT_DATA,
            "fsize" => libc::RLIMIT_FSIZE,
            "locks" => libc::RLIMIT_LOCKS,
            "memlock" => libc::RLIMIT_MEMLOCK,
            "msgqueue" => libc::RLIMIT_MSGQUEUE,
            "nice" => libc::RLIMIT_NICE,
            "nofile" => libc::RLIMIT_NOFILE,
            "nproc" => libc::RLIMIT_NPROC,
            "rss" => libc::RLIMIT_RSS,
            "rtprio" => libc::RLIMIT_RTPRIO,
            "rttime" => libc::RLIMIT_RTTIME,
            "sigpending" => libc::RLIMIT_SIGPENDING,
            "stack" => libc::RLIMIT_STACK,
            _ => return None,
        })
    }
}

/// Everything the sandbox needs to run one step; built with [`SandboxSpec::builder`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxSpec {
    pub(crate) rootfs: Rootfs,
    pub(crate) mounts: Vec<StepMount>,
    pub(crate) process: Process,
    pub(crate) hostname: String,
    pub(crate) network: NetworkMode,
    pub(crate) security: SecurityMode,
    pub(crate) id_mapping: IdMapping,
    pub(crate) resolv_conf: Option<Vec<u8>>,
    pub(crate) hosts: Option<Vec<u8>>,
    pub(crate) extra_hosts: Vec<(String, String)>,
    pub(crate) shm_size: Option<u64>,
    pub(crate) rlimits: Vec<ResourceLimit>,
    #[serde(skip)]
    pub(crate) cancel_grace: Duration,
}

impl SandboxSpec {
    /// Starts a spec for `process` in `rootfs` with `id_mapping`.
    pub fn builder(rootfs: Rootfs, process: Process, id_mapping: IdMapping) -> SandboxSpecBuilder {
        SandboxSpecBuilder {
            spec: SandboxSpec {
                rootfs,
                mounts: Vec::new(),
                process,
                hostname: DEFAULT_HOSTNAME.to_string(),
                network: NetworkMode::Host,
                security: SecurityMode::Sandbox,
                id_mapping,
                resolv_conf: None,
                hosts: None,
                extra_hosts: Vec::new(),
                shm_size: None,
                rlimits: Vec::new(),
                cancel_grace: Duration::from_secs(1),
            },
        }
    }

    /// The root filesystem.
    pub fn rootfs(&self) -> &Rootfs {
        &self.rootfs
    }

    /// The process.
    pub fn process(&self) -> &Process {
        &self.process
    }

    /// The uid/gid mapping.
    pub fn id_mapping(&self) -> &IdMapping {
        &self.id_mapping
    }

    /// The `RUN --mount` style mounts.
    pub fn mounts(&self) -> &[StepMount] {
        &self.mounts
    }

    /// The hostname.
    pub fn hostname(&self) -> &str {
        &self.hostname
    }

    /// The network mode.
    pub fn network(&self) -> NetworkMode {
        self.network
    }

    /// The security mode.
    pub fn security(&self) -> SecurityMode {
        self.security
    }
}

/// Builder of a [`SandboxSpec`].
#[derive(Debug, Clone)]
pub struct SandboxSpecBuilder {
    spec: SandboxSpec,
}

impl SandboxSpecBuilder {
    /// Adds a `RUN --mount` style mount.
    pub fn mount(mut self, mount: StepMount) -> Self {
        self.spec.mounts.push(mount);
        self
    }

    /// The hostname (default [`DEFAULT_HOSTNAME`]).
    pub fn hostname(mut self, hostname: impl Into<String>) -> Self {
        self.spec.hostname = hostname.into();
        self
    }

    /// The network mode (default [`NetworkMode::Host`]).
    pub fn network(mut self, network: NetworkMode) -> Self {
        self.spec.network = network;
        self
    }

    /// The security mode (default [`SecurityMode::Sandbox`]).
    pub fn security(mut self, security: SecurityMode) -> Self {
        self.spec.security = security;
        self
    }

    /// Contents of the step's `/etc/resolv.conf` (default: the host's; without nameservers
    /// for [`NetworkMode::None`]).
    pub fn resolv_conf(mut self, contents: impl Into<Vec<u8>>) -> Self {
        self.spec.resolv_conf = Some(contents.into());
        self
    }

    /// Contents of the step's `/etc/hosts` (default: localhost entries and the hostname).
    pub fn hosts(mut self, contents: impl Into<Vec<u8>>) -> Self {
        self.spec.hosts = Some(contents.into());
        self
    }

    /// Adds `ip host` to the step's `/etc/hosts`, after the default entries (`--add-host`).
    pub fn extra_host(mut self, host: impl Into<String>, ip: impl Into<String>) -> Self {
        self.spec.extra_hosts.push((host.into(), ip.into()));
        self
    }

    /// The size of the step's `/dev/shm` tmpfs in bytes (default 64 MiB, as Docker's).
    pub fn shm_size(mut self, bytes: u64) -> Self {
        self.spec.shm_size = Some(bytes);
        self
    }

    /// A resource limit of the step's process (`--ulimit`).
    pub fn rlimit(mut self, limit: ResourceLimit) -> Self {
        self.spec.rlimits.push(limit);
        self
    }

    /// How long a cancelled step gets between SIGTERM and SIGKILL of its whole pid namespace
    /// (default one second).
    pub fn cancel_grace(mut self, grace: Duration) -> Self {
        self.spec.cancel_grace = grace;
        self
    }

    /// The finished spec.
    pub fn build(self) -> SandboxSpec {
        self.spec
    }
}
