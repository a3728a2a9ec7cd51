//! The rootless container in which one `RUN` step executes.
//!
//! Pipeline position: called by `solver` for exec ops. It knows nothing about Dockerfiles: it
//! takes a root filesystem (a directory, or mounts such as an overlay to perform first), extra
//! mounts, a process description and a uid/gid mapping, runs the process in new user, mount,
//! pid, ipc and uts namespaces (and a network namespace for `--network=none`) under Docker's
//! default seccomp profile, streams its output and reports its exit code.
//!
//! # Design
//!
//! The sandbox is set up by a *freshly executed* process, never by a fork of the caller: the
//! caller (the `img` binary) is multithreaded, and after `fork` only async-signal-safe work is
//! allowed until `exec`, which rules out the allocation-heavy mount setup. [`Sandbox::run`]
//! therefore re-executes an init program — by default `/proc/self/exe`, the calling binary itself —
//! with a hidden environment variable; that program's `main` calls [`maybe_run_init`] first
//! thing, which turns it into the sandbox init:
//!
//! 1. stage 1 reads the request from stdin and makes the step's user namespace: as real root
//!    it does so itself (root's subordinate ids, idmapped mounts: see [`IdMapping`]);
//!    otherwise it unshares one and asks the parent over a `SOCK_SEQPACKET` socket to write the
//!    uid/gid maps (`newuidmap`/`newgidmap` for an ordinary user's subordinate ranges,
//!    `/proc/<pid>/uid_map` directly for a single id or for uid 0 of another namespace). Then
//!    it unshares the mount, pid, ipc, uts (and network) namespaces and forks;
//! 2. stage 2 is pid 1 of the new pid namespace: it mounts the root filesystem, a fresh /proc
//!    with Docker's masked and read-only paths, a small `nodev` /dev, a /sys read-only all the
//!    way down, the supplied /etc/hosts, /etc/resolv.conf and /etc/hostname and the step's
//!    mounts, pivots into the root, forks the command, reaps zombies, forwards signals, and on
//!    cancellation kills the whole namespace;
//! 3. stage 3 resolves `USER` in the image, bounds capabilities to Docker's default set,
//!    installs the seccomp filter while still root of its namespace, switches user and
//!    executes the command.
//!
//! # Containment
//!
//! A step is confined as a Docker or BuildKit container is, and is never the host's root:
//!
//! - **User namespace, always** (except with [`IdMapping::host`]). For real root the step's
//!   ids are root's subordinate range ([`DEFAULT_ROOT_RANGE_START`] without an /etc/subuid
//!   entry), so the kernel's checks for the host's uid 0 fail for it and its capabilities hold
//!   only in its namespace; idmapped mounts keep files' ids on disk as before, so snapshots
//!   and layer export need nothing else. (Re-executing img itself in such a namespace, as
//!   for an ordinary user, was the other option: it would make everything img writes — state
//!   directory, outputs — belong to the subordinate ids and cut it off from a root-owned state
//!   directory under /root.) Where the kernel cannot idmap the state directory's filesystem,
//!   the step runs with the host's ids in its own namespace, and the caller is told once.
//! - **seccomp**: Docker's default profile, compiled once per process (see `src/seccomp`),
//!   installed by the step's process just before it switches user. `no_new_privs` is not set,
//!   as with BuildKit, so sudo and other setuid programs work. On architectures other than
//!   x86_64, aarch64 and riscv64 no filter can be compiled and steps run without one; 32-bit
//!   compat binaries (i386 on x86_64) are killed by the filter's architecture check.
//! - **Filesystems**: /sys, cgroupfs and /proc/sys read-only including every submount
//!   (`mount_setattr` with `AT_RECURSIVE`); Docker's masked paths; /dev without device files
//!   of its own.
//! - [`SecurityMode::Insecure`] (`RUN --security=insecure`, which the caller allows only with
//!   `--allow security.insecure`) lifts seccomp, the capability bound and the /proc masks, and
//!   for real root runs the step with the host's ids and capabilities: a privileged container,
//!   as BuildKit runs it.
//!
//! Failures inside the sandbox come back to the caller as typed data over the socket
//! ([`SetupError`]). Every privileged system call of the setup goes through one internal trait
//! with a real and a recording implementation, so the mount plan is unit-tested without root;
//! `tests/` runs real namespaces. Host paths (`/proc`, `/etc/subuid`, the uidmap helpers) are
//! injectable through [`HostPaths`].
//!
//! # What a binary must do
//!
//! ```no_run
//! fn main() {
//!     img_sandbox::maybe_run_init(); // first thing: returns at once unless started as the init
//!     // For rootless builds: continue as root of a user namespace (returns at once for root).
//!     if let Err(e) = img_sandbox::reexec_in_user_namespace(&img_sandbox::HostPaths::default()) {
//!         eprintln!("error: {e}");
//!         std::process::exit(1);
//!     }
//!     // ... the program proper
//! }
//! ```
//!
//! Libraries and tests that cannot change `main` use the `img-sandbox-init` binary of this
//! crate through [`Sandbox::with_init_program`].
//!
//! A rootless builder also needs to make and read files of many owners outside steps (applying
//! image layers, diffing a step's changes), which an ordinary user cannot do outside a user
//! namespace. [`reexec_in_user_namespace`], called right after [`maybe_run_init`], re-executes
//! the whole program as root of a user namespace holding the caller's mapping (the model of
//! `buildah unshare`); sandboxes started from there nest a user namespace with the same ids
//! ([`IdMapping::detect`] describes them), as they do for uid 0 of a pod's user namespace.
//!
//! # Running a step
//!
//! ```no_run
//! use img_sandbox::{
//!     BindMode, CancelToken, HostPaths, IdMapping, LineSink, NetworkMode, Process, Rootfs, Sandbox,
//!     SandboxSpec, StepMount, Stream,
//! };
//!
//! let mapping = IdMapping::detect(&HostPaths::default())?;
//! if let Some(limitation) = mapping.limitation_once() {
//!     eprintln!("warning: {limitation}");
//! }
//! let mut process = Process::new(["/bin/sh", "-c", "make"]);
//! process.env = vec!["PATH=/usr/bin:/bin".into()];
//! process.cwd = "/src".into();
//! let spec = SandboxSpec::builder(Rootfs::Directory("/var/lib/img/snapshots/7/fs".into()), process, mapping)
//!     .mount(StepMount::Bind { source: "/home/me/app".into(), target: "/src".into(), mode: BindMode::ReadOnly })
//!     .network(NetworkMode::None)
//!     .build();
//! let mut sink = LineSink::new(|stream: Stream, line: &[u8]| {
//!     print!("{stream:?}: {}", String::from_utf8_lossy(line));
//! });
//! let exit = Sandbox::new().run(&spec, &mut sink, &CancelToken::new())?;
//! println!("exit code {}", exit.code_or_signal());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]
// The example above is about `main` itself.
#![allow(clippy::needless_doctest_main)]

mod cache_lock;
mod cancel;
mod caps;
mod doctor;
mod error;
mod idmap;
mod init;
mod isolate;
mod mount_api;
mod mount_plan;
mod output;
mod paths;
mod protocol;
mod sandbox;
mod seccomp;
mod spec;
mod syscalls;
mod user;
mod userns;

pub use cache_lock::{CacheLockError, CacheMountLock, CacheSharing};
pub use cancel::CancelToken;
pub use doctor::{
    binfmt_dir, doctor, platform_probe, platform_support, BinfmtError, DoctorReport,
    PlatformSupport, Probe, ProbeResult, ProbeStatus, BINFMT_FIX, MIN_SUBORDINATE_IDS,
};
pub use error::{SandboxError, SetupError};
pub use idmap::{
    IdMapError, IdMapping, IdRange, MappingLimitation, SubIdRange, DEFAULT_ROOT_RANGE_START,
    ROOT_RANGE_COUNT,
};
pub use init::maybe_run_init;
pub use output::{DiscardOutput, LineSink, OutputChunk, OutputSink, Stream};
pub use paths::HostPaths;
pub use protocol::SetupStep;
pub use sandbox::{Sandbox, StepExit};
pub use seccomp::SeccompError;
pub use spec::{
    BindMode, Mount, NetworkMode, Process, ResourceLimit, Rootfs, SandboxSpec, SandboxSpecBuilder,
    SecretBytes, SecurityMode, StepMount, DEFAULT_HOSTNAME,
};
pub use user::UserError;
pub use userns::reexec_in_user_namespace;
