//! Exec ops: run a process in a container whose root filesystem is the op's output.

use serde::{Deserialize, Serialize};

use crate::OpRef;

/// Runs a command (a `RUN` instruction) on a root filesystem; the changed root is the output.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecOp {
    /// The root filesystem the process starts in; `None` runs on an empty one (`FROM scratch`).
    pub root: Option<OpRef>,
    /// The argument vector, `args[0]` being the program.
    pub args: Vec<String>,
    /// The environment as `KEY=value` strings, in order.
    pub env: Vec<String>,
    /// The working directory, absolute.
    pub cwd: String,
    /// `user[:group]` as in `USER`; names resolve against the root's `/etc/passwd`.
    pub user: Option<String>,
    /// The network the process sees.
    pub network: NetworkMode,
    /// Whether the process gets extra privileges.
    pub security: SecurityMode,
    /// Extra mounts on top of the root, in mount order.
    pub mounts: Vec<Mount>,
    /// `/etc/hosts` entries added after the defaults (`--add-host`), in order. Left out of the
    /// canonical form when empty, so graphs without them keep their digests.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_hosts: Vec<HostEntry>,
    /// Resource limits of the process (`--ulimit`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ulimits: Vec<Ulimit>,
    /// Size of the `/dev/shm` tmpfs in bytes (`--shm-size`); `None` for the default 64 MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shm_size: Option<u64>,
}

/// One `--add-host` entry: `ip` resolves `host` in the step's `/etc/hosts`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostEntry {
    /// The host name.
    pub host: String,
    /// The address, IPv4 or IPv6.
    pub ip: String,
}

/// One `--ulimit` resource limit (`nofile=1024:2048`); `u64::MAX` stands for unlimited.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ulimit {
    /// The resource as Docker names it: `nofile`, `nproc`, `core`, `stack`, ...
    pub name: String,
    /// The soft limit.
    pub soft: u64,
    /// The hard limit.
    pub hard: u64,
}

impl ExecOp {
    /// Runs `args` as root in `/`, with the default sandboxed network and no mounts.
    pub fn new(root: Option<OpRef>, args: Vec<String>) -> Self {
        ExecOp {
            root,
            args,
            env: Vec::new(),
            cwd: "/".to_owned(),
            user: None,
            network: NetworkMode::Sandbox,
            security: SecurityMode::Sandbox,
            mounts: Vec::new(),
            extra_hosts: Vec::new(),
            ulimits: Vec::new(),
            shm_size: None,
        }
    }

    /// Appends `KEY=value` to the environment.
    pub fn with_env(mut self, key: &str, value: &str) -> Self {
        self.env.push(format!("{key}={value}"));
        self
    }

    /// Sets the working directory.
    pub fn with_cwd(mut self, cwd: impl Into<String>) -> Self {
        self.cwd = cwd.into();
        self
    }

    /// Sets the user.
    pub fn with_user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }

    /// Sets the network mode.
    pub fn with_network(mut self, network: NetworkMode) -> Self {
        self.network = network;
        self
    }

    /// Sets the security mode.
    pub fn with_security(mut self, security: SecurityMode) -> Self {
        self.security = security;
        self
    }

    /// Adds a mount.
    pub fn with_mount(mut self, mount: Mount) -> Self {
        self.mounts.push(mount);
        self
    }
}

/// `RUN --network=`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum NetworkMode {
    /// The default: the builder's network for build steps.
    Sandbox,
    /// The host's network namespace.
    Host,
    /// No network but loopback.
    None,
}

/// `RUN --security=`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SecurityMode {
    /// The default, unprivileged set of capabilities.
    Sandbox,
    /// All capabilities the builder can give.
    Insecure,
}

/// A mount added to an exec's filesystem at `target`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// Absolute path inside the container.
    pub target: String,
    /// What is mounted.
    pub kind: MountKind,
}

/// What a [`Mount`] puts at its target (`RUN --mount=type=…`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum MountKind {
    /// Another op's output (or a sub-path of it). Writes are never kept: a read-write bind gets
    /// a throwaway copy, as Docker's `type=bind,rw` does.
    Bind {
        /// The mounted output.
        source: OpRef,
        /// Sub-path of the source to mount, `/` for all of it.
        selector: String,
        /// Mount read-only; otherwise writes go to a discarded layer.
        readonly: bool,
    },
    /// A persistent cache directory shared between builds (`type=cache`).
    Cache {
        /// The cache's identity; builds using the same id see the same directory.
        id: String,
        /// How concurrent builds share it.
        sharing: CacheSharing,
        /// Initial content when the cache is first created.
        source: Option<OpRef>,
        /// Sub-path of `source` to seed from.
        selector: String,
        /// Mount read-only.
        readonly: bool,
        /// Owner uid of the cache directory.
        uid: u32,
        /// Owner gid of the cache directory.
        gid: u32,
        /// Permission bits of the cache directory.
        mode: u32,
    },
    /// An empty tmpfs.
    Tmpfs {
        /// Size limit in bytes, `None` for the kernel default.
        size: Option<u64>,
    },
    /// A secret file; only its id is part of the build graph, never its value.
    Secret {
        /// The secret's id as given with `--secret id=…`.
        id: String,
        /// Also expose the value in this environment variable (`env=`); the file is then only
        /// mounted when the mount's target is not empty.
        env: Option<String>,
        /// Fail when the client did not provide it.
        required: bool,
        /// Owner uid of the file.
        uid: u32,
        /// Owner gid of the file.
        gid: u32,
        /// Permission bits of the file.
        mode: u32,
    },
    /// A forwarded SSH agent socket.
    Ssh {
        /// The agent's id as given with `--ssh id=…`.
        id: String,
        /// Fail when the client did not provide it.
        required: bool,
        /// Owner uid of the socket.
        uid: u32,
        /// Owner gid of the socket.
        gid: u32,
        /// Permission bits of the socket.
        mode: u32,
    },
}

/// `RUN --mount=type=cache,sharing=`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum CacheSharing {
    /// Concurrent writers share the directory.
    Shared,
    /// Concurrent writers each get their own directory.
    Private,
    /// Writers wait for each other.
    Locked,
}
