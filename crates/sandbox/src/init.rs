//! The sandbox side: a freshly executed copy of the program (see [`maybe_run_init`]) that
//! builds the namespaces and supervises the step.
//!
//! Three processes: stage 1 unshares the user namespace (the parent writes its maps), then the
//! other namespaces, and forks stage 2, pid 1 of the new pid namespace, which mounts the root,
//! forks the command (stage 3) and acts as its init: it reaps every zombie, forwards signals,
//! honours cancellation by killing the whole namespace, and removes the mount stubs at the end.
//! Being a fresh single-threaded process, the init may allocate freely after fork.

use std::ffi::CString;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sched::CloneFlags;
use nix::sys::signal::{self, SigHandler, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Gid, Pid, Uid};

use crate::caps;
use crate::idmap::IdMapping;
use crate::mount_plan::RootSetup;
use crate::protocol::{self, ChildFailure, ChildMessage, InitRequest, ParentMessage, SetupStep};
use crate::spec::{NetworkMode, SandboxSpec, SecurityMode};
use crate::syscalls::{LinuxSyscalls, Syscalls};
use crate::user;

/// Environment variable that turns the program into the sandbox init; its value is the
/// control socket's file descriptor number.
pub(crate) const INIT_ENV: &str = "_IMG_SANDBOX_INIT";

/// Exit code of the init when setup failed (the failure itself went to the parent as data).
const SETUP_FAILED: i32 = 125;
/// Signals pid 1 relays to the command.
const FORWARDED: [Signal; 6] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Becomes the sandbox init when this process was started as one by [`crate::Sandbox`], and
/// never returns then; returns immediately otherwise.
///
/// A program that runs sandboxes with the default init program (`/proc/self/exe`), such as the
/// `img` binary, must call this first thing in `main`, before starting threads or parsing
/// arguments.
pub fn maybe_run_init() {
    let Some(fd) = std::env::var_os(INIT_ENV) else {
        return;
    };
    let fd: i32 = match fd.to_str().and_then(|s| s.parse().ok()) {
        Some(fd) if fd > 2 => fd,
        _ => std::process::exit(SETUP_FAILED),
    };
    std::env::remove_var(INIT_ENV);
    // Nothing the caller's process happened to leave open (a jobserver pipe, a log file) may
    // reach the step.
    // SAFETY: closes descriptors this freshly executed process does not use.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            fd.max(3) as libc::c_uint + 1,
            libc::c_uint::MAX,
            0,
        )
    };
    for other in 3..fd {
        // SAFETY: as above, below the control socket.
        unsafe { libc::close(other) };
    }
    // SAFETY: the parent passed this descriptor, and nothing else in this process owns it.
    let control = unsafe { OwnedFd::from_raw_fd(fd) };
    let _ = nix::fcntl::fcntl(
        &control,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    );
    std::process::exit(stage1(control.as_fd()));
}

fn fail(control: BorrowedFd<'_>, failure: ChildFailure) -> i32 {
    let _ = protocol::send(control, &ChildMessage::Failed(failure));
    SETUP_FAILED
}

fn set_parent_death_signal() {
    // SAFETY: plain prctl; the sandbox dies with whoever started it.
    unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
}

fn stage1(control: BorrowedFd<'_>) -> i32 {
    set_parent_death_signal();
    let mut input = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut input) {
        return fail(
            control,
            ChildFailure::os(SetupStep::ReadRequest, "stdin", &e),
        );
    }
    let mut request: InitRequest = match serde_json::from_slice(&input) {
        Ok(r) => r,
        Err(e) => {
            return fail(
                control,
                ChildFailure::BadRequest {
                    detail: e.to_string(),
                },
            )
        }
    };
    drop(input);
    let (mapping, sources) = match &request {
        InitRequest::Run { spec, .. } => (spec.id_mapping.clone(), crate::isolate::sources(spec)),
        InitRequest::Probe { id_mapping, dir } => (id_mapping.clone(), vec![(dir.clone(), false)]),
    };
    let sys = LinuxSyscalls;
    let mut idmapped = Vec::new();
    if mapping.is_isolated() {
        match crate::isolate::enter(&mapping, &sources) {
            Ok((trees, refused)) => {
                idmapped = trees;
                if let Some(refused) = refused {
                    let _ = protocol::send(control, &ChildMessage::NotIsolated(refused));
                }
            }
            Err(failure) => return fail(control, failure),
        }
    } else if mapping.parent_writes_maps() {
        match sys.unshare(CloneFlags::CLONE_NEWUSER) {
            Ok(()) => {}
            // uid 0 of a namespace that may not nest one (a container whose seccomp profile
            // allows namespaces only with CAP_SYS_ADMIN, which it has): the step runs in this
            // namespace, as root of it, when the other namespaces can be made below.
            Err(_) if mapping.is_nested() => return stage1_namespaces(control, request, idmapped),
            Err(e) => {
                return fail(
                    control,
                    ChildFailure::os(SetupStep::Unshare, "user namespace", &e),
                )
            }
        }
        if protocol::send(control, &ChildMessage::UserNamespaceCreated).is_err() {
            return SETUP_FAILED;
        }
        match protocol::recv::<ParentMessage>(control) {
            Ok(Some(ParentMessage::MappingDone { effective })) => {
                // The parent wrote another mapping than asked for (one id): the step's checks
                // must use that one.
                if let Some(effective) = effective {
                    match &mut request {
                        InitRequest::Run { spec, .. } => spec.id_mapping = effective,
                        InitRequest::Probe { id_mapping, .. } => *id_mapping = effective,
                    }
                }
            }
            _ => return SETUP_FAILED,
        }
    }
    stage1_namespaces(control, request, idmapped)
}

/// The rest of stage 1, in the step's user namespace (or the caller's): the other namespaces,
/// and pid 1.
fn stage1_namespaces(
    control: BorrowedFd<'_>,
    request: InitRequest,
    idmapped: Vec<crate::isolate::IdmappedTree>,
) -> i32 {
    let sys = LinuxSyscalls;
    let network = match &request {
        InitRequest::Run { spec, .. } => spec.network,
        InitRequest::Probe { .. } => NetworkMode::Host,
    };
    let mut flags = CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWUTS;
    if network == NetworkMode::None {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    if let Err(e) = sys.unshare(flags) {
        return fail(
            control,
            ChildFailure::os(SetupStep::Unshare, "mount, pid, ipc, uts namespaces", &e),
        );
    }
    // SAFETY: this process is single-threaded (freshly executed), so the child may do anything.
    match unsafe { fork() } {
        Err(e) => fail(
            control,
            ChildFailure::os(SetupStep::Fork, "pid 1", &e.into()),
        ),
        Ok(ForkResult::Child) => {
            set_parent_death_signal();
            let code = match request {
                InitRequest::Run {
                    spec,
                    staging,
                    seccomp,
                } => pid1(control, &spec, &staging, seccomp.as_deref(), &idmapped),
                InitRequest::Probe { dir, .. } => probe(control, &dir, &idmapped),
            };
            std::process::exit(code)
        }
        Ok(ForkResult::Parent { child }) => {
            let _ = protocol::send(
                control,
                &ChildMessage::InitStarted {
                    pid: child.as_raw(),
                },
            );
            // Only the command may hold the output pipes, so they close when it is gone.
            redirect_to_dev_null(&[1, 2]);
            exit_code_of(wait_for(child))
        }
    }
}

fn redirect_to_dev_null(fds: &[i32]) {
    if let Ok(null) = File::options().read(true).write(true).open("/dev/null") {
        for &fd in fds {
            // SAFETY: dup2 onto a standard descriptor of this process.
            unsafe { libc::dup2(null.as_raw_fd(), fd) };
        }
    }
}

fn wait_for(pid: Pid) -> WaitStatus {
    loop {
        match waitpid(pid, None) {
            Err(nix::errno::Errno::EINTR) => continue,
            Ok(status @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) => return status,
            Ok(_) => continue,
            Err(_) => return WaitStatus::Exited(pid, SETUP_FAILED),
        }
    }
}

fn exit_code_of(status: WaitStatus) -> i32 {
    match status {
        WaitStatus::Exited(_, code) => code,
        WaitStatus::Signaled(_, sig, _) => 128 + sig as i32,
        _ => SETUP_FAILED,
    }
}

fn pid1(
    control: BorrowedFd<'_>,
    spec: &SandboxSpec,
    staging: &Path,
    seccomp: Option<&[crate::seccomp::Program]>,
    idmapped: &[crate::isolate::IdmappedTree],
) -> i32 {
    // The command runs with the same ids: without this it could ptrace pid 1 (or open its
    // descriptors through /proc/1/fd) and take pid 1's unbounded capabilities.
    // SAFETY: plain prctl.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    let signals = match supervise_signals() {
        Ok(fd) => fd,
        Err(e) => {
            return fail(
                control,
                ChildFailure::os(SetupStep::Fork, "signalfd", &e.into()),
            )
        }
    };
    let sys = LinuxSyscalls;
    let setup = RootSetup {
        sys: &sys,
        spec,
        staging,
        tty_gid_mapped: spec.id_mapping.host_gid(5).is_some(),
        idmapped,
    };
    let stubs = match setup.run() {
        Ok(stubs) => stubs,
        Err(failure) => return fail(control, failure),
    };
    // SAFETY: single-threaded process.
    let command = match unsafe { fork() } {
        Err(e) => {
            stubs.clean(&sys);
            return fail(
                control,
                ChildFailure::os(SetupStep::Fork, "command", &e.into()),
            );
        }
        Ok(ForkResult::Child) => {
            let failure = exec_command(spec, seccomp);
            let _ = protocol::send(control, &ChildMessage::Failed(failure));
            // SAFETY: leave without running anything inherited from pid 1.
            unsafe { libc::_exit(127) }
        }
        Ok(ForkResult::Parent { child }) => child,
    };
    redirect_to_dev_null(&[0, 1, 2]);
    let status = supervise(control, &signals, command, Duration::from_secs(1));
    stubs.clean(&sys);
    let (code, signal) = match status {
        WaitStatus::Exited(_, code) => (Some(code), None),
        WaitStatus::Signaled(_, sig, _) => (None, Some(sig as i32)),
        _ => (Some(SETUP_FAILED), None),
    };
    let _ = protocol::send(control, &ChildMessage::Exited { code, signal });
    exit_code_of(status)
}

/// Routes SIGCHLD and the forwarded signals to a signalfd. pid 1 of a namespace only gets
/// signals it has a handler for, so the forwarded ones get a no-op handler first.
fn supervise_signals() -> nix::Result<SignalFd> {
    extern "C" fn ignore(_: libc::c_int) {}
    let mut set = SigSet::empty();
    set.add(Signal::SIGCHLD);
    for sig in FORWARDED {
        // SAFETY: installing an empty extern "C" handler.
        unsafe { signal::signal(sig, SigHandler::Handler(ignore))? };
        set.add(sig);
    }
    signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None)?;
    SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
}

/// Waits for the command, reaping every orphan re-parented to pid 1 meanwhile; on its exit
/// kills what it left behind. Returns the command's status.
fn supervise(
    control: BorrowedFd<'_>,
    signals: &SignalFd,
    command: Pid,
    default_grace: Duration,
) -> WaitStatus {
    let mut kill_at: Option<Instant> = None;
    let mut control_open = true;
    let status = 'outer: loop {
        let timeout = match kill_at {
            Some(at) => PollTimeout::try_from(at.saturating_duration_since(Instant::now()))
                .unwrap_or(PollTimeout::MAX),
            None => PollTimeout::NONE,
        };
        let mut fds = vec![PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
        if control_open {
            fds.push(PollFd::new(control, PollFlags::POLLIN));
        }
        if poll(&mut fds, timeout).is_err() {
            continue;
        }
        let control_ready = fds
            .get(1)
            .and_then(|f| f.revents())
            .is_some_and(|r| !r.is_empty());
        drop(fds);
        if kill_at.is_some_and(|at| Instant::now() >= at) {
            let _ = signal::kill(Pid::from_raw(-1), Signal::SIGKILL);
            kill_at = None;
        }
        if control_ready {
            match protocol::recv::<ParentMessage>(control) {
                Ok(Some(ParentMessage::Cancel { grace_ms })) => {
                    let _ = signal::kill(command, Signal::SIGTERM);
                    kill_at = Some(Instant::now() + Duration::from_millis(grace_ms));
                }
                Ok(Some(ParentMessage::MappingDone { .. })) => {}
                // The caller is gone: nobody will read the result.
                Ok(None) | Err(_) => {
                    control_open = false;
                    kill_at = Some(Instant::now() + default_grace);
                    let _ = signal::kill(command, Signal::SIGTERM);
                }
            }
        }
        while let Ok(Some(info)) = signals.read_signal() {
            let sig = info.ssi_signo as i32;
            if sig != libc::SIGCHLD {
                if let Ok(sig) = Signal::try_from(sig) {
                    let _ = signal::kill(command, sig);
                }
            }
        }
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(status @ (WaitStatus::Exited(pid, _) | WaitStatus::Signaled(pid, _, _)))
                    if pid == command =>
                {
                    break 'outer status;
                }
                Ok(_) => {}
            }
        }
    };
    // Whatever the command left running dies with it, as when a container's init exits.
    let _ = signal::kill(Pid::from_raw(-1), Signal::SIGKILL);
    while !matches!(
        waitpid(Pid::from_raw(-1), None),
        Err(nix::errno::Errno::ECHILD)
    ) {}
    status
}

/// Prepares and executes the command; returns only on failure.
fn exec_command(spec: &SandboxSpec, seccomp: Option<&[crate::seccomp::Program]>) -> ChildFailure {
    let mut unblock = SigSet::empty();
    unblock.add(Signal::SIGCHLD);
    for sig in FORWARDED {
        unblock.add(sig);
        // SAFETY: restoring default dispositions.
        let _ = unsafe { signal::signal(sig, SigHandler::SigDfl) };
    }
    let _ = signal::sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(&unblock), None);
    let _ = nix::unistd::setsid();
    // Docker's umask.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    // stdin is /dev/null, as for BuildKit's RUN.
    redirect_stdin_from_dev_null();
    match prepare_and_exec(spec, seccomp) {
        Ok(never) => match never {},
        Err(failure) => failure,
    }
}

/// `--ulimit`: each limit set while the step is still root of its namespace. Raising a hard
/// limit above the builder's own needs CAP_SYS_RESOURCE over the host, which a user namespace
/// does not give, so such a limit fails the step, naming the resource.
fn set_resource_limits(limits: &[crate::ResourceLimit]) -> Result<(), ChildFailure> {
    for limit in limits {
        let failure = |errno: i32| {
            ChildFailure::os(
                SetupStep::ResourceLimit,
                format!("ulimit {}={}:{}", limit.name, limit.soft, limit.hard),
                &std::io::Error::from_raw_os_error(errno),
            )
        };
        let resource = crate::ResourceLimit::resource(&limit.name).ok_or(failure(libc::EINVAL))?;
        let value = libc::rlimit {
            rlim_cur: limit.soft,
            rlim_max: limit.hard,
        };
        // SAFETY: setrlimit reads the struct we own.
        if unsafe { libc::setrlimit(resource, &value) } != 0 {
            return Err(failure(
                std::io::Error::last_os_error()
                    .raw_os_error()
                    .unwrap_or(libc::EPERM),
            ));
        }
    }
    Ok(())
}

fn redirect_stdin_from_dev_null() {
    if let Ok(null) = File::open("/dev/null") {
        // SAFETY: dup2 onto stdin.
        unsafe { libc::dup2(null.as_raw_fd(), 0) };
    }
}

fn prepare_and_exec(
    spec: &SandboxSpec,
    seccomp: Option<&[crate::seccomp::Program]>,
) -> Result<std::convert::Infallible, ChildFailure> {
    let process = &spec.process;
    let read_db = |path: &str| match std::fs::read_to_string(path) {
        Ok(text) => Ok(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(ChildFailure::os(SetupStep::ReadUserDatabase, path, &e)),
    };
    let user = user::resolve(
        &process.user,
        &read_db("/etc/passwd")?,
        &read_db("/etc/group")?,
    )
    .map_err(ChildFailure::User)?;
    let mapping: &IdMapping = &spec.id_mapping;
    if mapping.host_uid(user.uid).is_none() || mapping.host_gid(user.gid).is_none() {
        return Err(ChildFailure::Unmapped {
            uid: user.uid,
            gid: user.gid,
        });
    }
    set_resource_limits(&spec.rlimits)?;
    // Docker creates a missing working directory, as root, before switching user.
    std::fs::create_dir_all(&process.cwd)
        .map_err(|e| ChildFailure::os(SetupStep::WorkingDirectory, &process.cwd, &e))?;

    let mut env = process.env.clone();
    let has = |env: &[String], key: &str| {
        env.iter()
            .any(|e| e.split_once('=').is_some_and(|(k, _)| k == key))
    };
    if !has(&env, "PATH") {
        env.push(format!("PATH={DEFAULT_PATH}"));
    }
    if !has(&env, "HOME") {
        env.push(format!("HOME={}", user.home));
    }
    for (name, value) in &process.secret_env {
        env.retain(|e| e.split_once('=').is_none_or(|(k, _)| k != name));
        env.push(format!(
            "{name}={}",
            String::from_utf8_lossy(value.expose())
        ));
    }

    let ids = |e: nix::errno::Errno| {
        ChildFailure::os(
            SetupStep::SetIds,
            format!("{}:{}", user.uid, user.gid),
            &e.into(),
        )
    };
    if !mapping.setgroups_denied() {
        let groups: Vec<Gid> = user
            .groups
            .iter()
            .filter(|g| mapping.host_gid(**g).is_some())
            .map(|g| Gid::from_raw(*g))
            .collect();
        nix::unistd::setgroups(&groups).map_err(ids)?;
    }
    let capabilities =
        |e: std::io::Error| ChildFailure::os(SetupStep::Capabilities, "bounding set", &e);
    if spec.security == SecurityMode::Sandbox {
        caps::bound_to_docker_default().map_err(capabilities)?;
    }
    // The filter goes in while this process is still root of its user namespace: without
    // no_new_privs (kept off so that setuid programs such as sudo work, as with BuildKit) the
    // kernel requires CAP_SYS_ADMIN for it, which setresuid to another user takes away. What
    // remains to do (set ids, capset, prctl, chdir, execve) is allowed by the profile.
    if let Some(filters) = seccomp {
        crate::seccomp::install(filters)
            .map_err(|e| ChildFailure::os(SetupStep::Seccomp, "filter", &e))?;
    }
    nix::unistd::setresgid(
        Gid::from_raw(user.gid),
        Gid::from_raw(user.gid),
        Gid::from_raw(user.gid),
    )
    .map_err(ids)?;
    nix::unistd::setresuid(
        Uid::from_raw(user.uid),
        Uid::from_raw(user.uid),
        Uid::from_raw(user.uid),
    )
    .map_err(ids)?;
    if spec.security == SecurityMode::Sandbox {
        caps::clear_inheritable().map_err(capabilities)?;
    }
    nix::unistd::chdir(&process.cwd)
        .map_err(|e| ChildFailure::os(SetupStep::WorkingDirectory, &process.cwd, &e.into()))?;

    let path_var = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH)
        .to_string();
    let program = process.args.first().cloned().unwrap_or_default();
    let resolved =
        find_program(&program, &path_var).ok_or_else(|| ChildFailure::CommandNotFound {
            program: program.clone(),
            path: path_var.clone(),
        })?;
    let cstr = |s: &str| {
        CString::new(s).map_err(|_| ChildFailure::CommandNotFound {
            program: program.clone(),
            path: path_var.clone(),
        })
    };
    let argv = process
        .args
        .iter()
        .map(|a| cstr(a))
        .collect::<Result<Vec<_>, _>>()?;
    let envp = env.iter().map(|e| cstr(e)).collect::<Result<Vec<_>, _>>()?;
    let exe = CString::new(resolved.as_os_str().as_bytes()).map_err(|_| {
        ChildFailure::CommandNotFound {
            program: program.clone(),
            path: path_var.clone(),
        }
    })?;
    let err = nix::unistd::execve(&exe, &argv, &envp).unwrap_err();
    Err(ChildFailure::os(SetupStep::Exec, resolved, &err.into()))
}

/// `program` itself when it has a slash, else the first executable of that name in `path`.
fn find_program(program: &str, path: &str) -> Option<PathBuf> {
    if program.is_empty() {
        return None;
    }
    if program.contains('/') {
        return Some(PathBuf::from(program));
    }
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(program))
        .find(|candidate| {
            nix::unistd::access(candidate.as_path(), nix::unistd::AccessFlags::X_OK).is_ok()
                && !candidate.is_dir()
        })
}

/// The doctor's probe, as pid 1 of fresh namespaces: can a fresh procfs and an overlay be
/// mounted here, and the hostname set?
fn probe(control: BorrowedFd<'_>, dir: &Path, idmapped: &[crate::isolate::IdmappedTree]) -> i32 {
    let sys = LinuxSyscalls;
    let os = |step: SetupStep, path: &Path, e: std::io::Error| ChildFailure::os(step, path, &e);
    let private = nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE;
    let _ = sys.mount(None, Path::new("/"), None, private, None);
    for tree in idmapped {
        use std::os::fd::AsFd;
        let _ = sys.attach(tree.fd.as_fd(), &tree.source);
    }
    let proc_dir = dir.join("proc");
    let proc = std::fs::create_dir_all(&proc_dir)
        .map_err(|e| os(SetupStep::CreateMountPoint, &proc_dir, e))
        .and_then(|()| {
            sys.mount(
                Some(Path::new("proc")),
                &proc_dir,
                Some("proc"),
                nix::mount::MsFlags::empty(),
                None,
            )
            .map_err(|e| match e.raw_os_error() {
                Some(errno @ (libc::EPERM | libc::EACCES)) => ChildFailure::ProcMasked { errno },
                _ => os(SetupStep::Mount("proc".into()), &proc_dir, e),
            })
        });
    let overlay = (|| {
        let names = ["lower", "upper", "work", "merged"];
        for name in names {
            let d = dir.join(name);
            std::fs::create_dir_all(&d).map_err(|e| os(SetupStep::CreateMountPoint, &d, e))?;
        }
        let data = format!(
            "lowerdir={},upperdir={},workdir={},userxattr",
            dir.join("lower").display(),
            dir.join("upper").display(),
            dir.join("work").display()
        );
        let merged = dir.join("merged");
        sys.mount(
            Some(Path::new("overlay")),
            &merged,
            Some("overlay"),
            nix::mount::MsFlags::empty(),
            Some(&data),
        )
        .map_err(|e| os(SetupStep::Mount("overlay".into()), &merged, e))
    })();
    // Every step sets its hostname, as runc does for BuildKit's steps; a seccomp profile may
    // refuse that even where namespaces and mounts are allowed (podman's default one does
    // without CAP_SYS_ADMIN).
    let hostname = sys.sethostname(crate::spec::DEFAULT_HOSTNAME).map_err(|e| {
        os(
            SetupStep::Hostname,
            Path::new(crate::spec::DEFAULT_HOSTNAME),
            e,
        )
    });
    let _ = protocol::send(
        control,
        &ChildMessage::ProbeResults {
            overlay,
            proc,
            hostname,
        },
    );
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_programs_like_execvp() {
        assert_eq!(
            find_program("sh", "/nonexistent:/bin"),
            Some(PathBuf::from("/bin/sh"))
        );
        assert_eq!(find_program("./x", "/bin"), Some(PathBuf::from("./x")));
        assert_eq!(find_program("no-such-program-here", "/bin:/usr/bin"), None);
        assert_eq!(find_program("", "/bin"), None);
    }
}
