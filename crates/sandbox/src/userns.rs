//! Running the whole program inside a user namespace, the model of `buildah unshare`.
//!
//! A rootless builder must create files owned by many users when it applies image layers, and
//! read files of many owners when it diffs a step's changes; outside a user namespace an
//! ordinary user can do neither (no chown to subordinate ids, no reading another id's 0600
//! files). [`reexec_in_user_namespace`] re-executes the program inside a user and mount
//! namespace with the caller's mapping, so everything after it — snapshots, layer
//! application, overlay mounts, and sandboxes (which then need no user namespace of their
//! own) — runs as root of that namespace.

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

use nix::sched::CloneFlags;
use nix::sys::signal::{self, SigSet, SigmaskHow, Signal};
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use nix::unistd::Pid;

use crate::error::{SandboxError, SetupError};
use crate::idmap::IdMapping;
use crate::paths::HostPaths;
use crate::protocol::{self, ChildFailure, ChildMessage, ParentMessage, SetupStep};

/// Marks the re-executed process; the value is its control socket's descriptor.
const USERNS_ENV: &str = "_IMG_USERNS";

/// Signals the waiting parent passes on to the program in the namespace.
const RELAYED: [Signal; 5] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
];

/// Makes the rest of `main` run as root of a user namespace holding the caller's id mapping
/// ([`IdMapping::detect`]): an ordinary user's process re-executes itself (same arguments,
/// environment and standard streams) inside new user and mount namespaces, waits for that copy
/// and exits with its exit code, so this returns only in the copy. Returns at once for root.
///
/// When the kernel refuses the setuid `newuidmap` its privileges (a container with
/// `no_new_privs`), the copy gets the caller's own id only, and one line on standard error says
/// what that costs.
///
/// Call it at the start of `main`, after [`crate::maybe_run_init`] and before starting threads.
/// Afterwards [`IdMapping::detect`] describes the namespace's ids and [`crate::Sandbox`] runs
/// steps without a further user namespace.
pub fn reexec_in_user_namespace(paths: &HostPaths) -> Result<(), SandboxError> {
    if let Some(fd) = std::env::var_os(USERNS_ENV) {
        std::env::remove_var(USERNS_ENV);
        let fd: i32 = fd
            .to_str()
            .and_then(|s| s.parse().ok())
            .filter(|fd| *fd > 2)
            .ok_or_else(|| SetupError::BadRequest {
                detail: format!("{USERNS_ENV} is not a descriptor"),
            })?;
        // SAFETY: the parent passed this descriptor and nothing else owns it.
        let control = unsafe { OwnedFd::from_raw_fd(fd) };
        return enter(control);
    }
    if nix::unistd::getuid().is_root() {
        return Ok(());
    }
    let mapping = IdMapping::detect(paths)?;
    let code = run_copy_in_namespace(&mapping, paths)?;
    std::process::exit(code)
}

/// The copy's side: unshare, have the maps written, continue as root.
fn enter(control: OwnedFd) -> Result<(), SandboxError> {
    let failure = |e: nix::Error| {
        SandboxError::Setup(SetupError::from(ChildFailure::os(
            SetupStep::Unshare,
            "user namespace",
            &e.into(),
        )))
    };
    nix::sched::unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS).map_err(failure)?;
    let io = |source| SandboxError::Io { source };
    protocol::send(control.as_fd(), &ChildMessage::UserNamespaceCreated).map_err(io)?;
    match protocol::recv::<ParentMessage>(&control).map_err(io)? {
        Some(ParentMessage::MappingDone { .. }) => Ok(()),
        _ => Err(SandboxError::Io {
            source: std::io::Error::from(std::io::ErrorKind::UnexpectedEof),
        }),
    }
}

/// The caller's side: start the copy, write its maps, relay signals, return its exit code.
fn run_copy_in_namespace(mapping: &IdMapping, paths: &HostPaths) -> Result<i32, SandboxError> {
    let io = |source| SandboxError::Io { source };
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| io(e.into()))?;
    let theirs_raw = theirs.as_raw_fd();
    // Blocked before the copy exists, so none is lost; the copy unblocks them for itself.
    let mut relayed = SigSet::empty();
    relayed.add(Signal::SIGCHLD);
    for sig in RELAYED {
        relayed.add(sig);
    }
    let mut previous = SigSet::empty();
    signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&relayed), Some(&mut previous))
        .map_err(|e| io(e.into()))?;
    let mut args = std::env::args_os();
    let mut command = Command::new("/proc/self/exe");
    if let Some(arg0) = args.next() {
        command.arg0(arg0);
    }
    command.args(args).env(USERNS_ENV, "3");
    // SAFETY: only async-signal-safe calls (dup2, fcntl, prctl, sigprocmask) before exec.
    unsafe {
        command.pre_exec(move || {
            socket_at_fd3_and_die_with_parent(theirs_raw)?;
            signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&previous), None)?;
            Ok(())
        });
    }
    let program = std::path::PathBuf::from("/proc/self/exe");
    let mut child = command
        .spawn()
        .map_err(|source| SandboxError::Spawn { program, source })?;
    drop(theirs);
    let pid = Pid::from_raw(child.id() as i32);
    // A copy that fails before asking says why on its stderr, and its status tells.
    if let Ok(Some(ChildMessage::UserNamespaceCreated)) = protocol::recv::<ChildMessage>(&ours) {
        match mapping.apply(pid.as_raw(), paths) {
            Ok(None) => {}
            // The copy finds its one id itself (IdMapping::detect); this is the one place that
            // knows why.
            Ok(Some((_, limitation))) => eprintln!("warning: {limitation}"),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e.into());
            }
        }
        let done = ParentMessage::MappingDone { effective: None };
        protocol::send(ours.as_fd(), &done).map_err(io)?;
    }
    drop(ours);
    loop {
        match relayed.wait() {
            Ok(Signal::SIGCHLD) => {
                if let Some(status) = child.try_wait().map_err(io)? {
                    use std::os::unix::process::ExitStatusExt;
                    return Ok(status
                        .code()
                        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)));
                }
            }
            Ok(sig) => {
                let _ = signal::kill(pid, sig);
            }
            Err(e) => return Err(io(e.into())),
        }
    }
}

/// In a forked child, before exec: puts `fd` at descriptor 3, where the re-executed `img`
/// finds its socket to the parent, and asks for SIGKILL when the parent dies, so the child
/// never outlives a caller that crashed. Only async-signal-safe calls.
pub(crate) fn socket_at_fd3_and_die_with_parent(fd: std::os::fd::RawFd) -> std::io::Result<()> {
    // SAFETY: fcntl, dup2 and prctl on descriptors and flags of this process only.
    unsafe {
        if fd == 3 {
            if libc::fcntl(3, libc::F_SETFD, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
        } else if libc::dup2(fd, 3) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        );
    }
    Ok(())
}
