//! The caller's side: starts the sandbox init, writes the uid/gid maps when asked, streams the
//! step's output to the sink, relays cancellation, and collects the result.

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use nix::unistd::Pid;

use crate::cancel::CancelToken;
use crate::error::{SandboxError, SetupError};
use crate::init::INIT_ENV;
use crate::mount_plan::resolv_conf_from_host;
use crate::output::{OutputSink, Stream};
use crate::paths::HostPaths;
use crate::protocol::{self, ChildFailure, ChildMessage, InitRequest, ParentMessage};
use crate::spec::{SandboxSpec, SecurityMode};

/// How the step's process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepExit {
    /// Exit code, when it exited.
    pub code: Option<i32>,
    /// Signal number, when a signal killed it.
    pub signal: Option<i32>,
}

impl StepExit {
    /// Whether the step exited with code 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// The shell-style code: the exit code, or 128 + signal.
    pub fn code_or_signal(&self) -> i32 {
        self.code.unwrap_or_else(|| 128 + self.signal.unwrap_or(0))
    }
}

/// Runs steps. Cheap to create and to share between threads; each [`Sandbox::run`] is
/// independent.
#[derive(Debug, Clone)]
pub struct Sandbox {
    init_program: PathBuf,
    paths: HostPaths,
    staging_parent: PathBuf,
}

impl Default for Sandbox {
    fn default() -> Self {
        Sandbox::new()
    }
}

/// How often the run loop looks at the cancel token while the step is quiet.
const CANCEL_POLL: Duration = Duration::from_millis(20);

impl Sandbox {
    /// A sandbox whose init is this very program (`/proc/self/exe`), which must call
    /// [`crate::maybe_run_init`] first thing in `main`.
    pub fn new() -> Sandbox {
        Sandbox {
            init_program: PathBuf::from("/proc/self/exe"),
            paths: HostPaths::default(),
            staging_parent: std::env::temp_dir(),
        }
    }

    /// Uses `program` as the sandbox init instead (a program whose `main` calls
    /// [`crate::maybe_run_init`], such as this crate's `img-sandbox-init`).
    pub fn with_init_program(mut self, program: impl Into<PathBuf>) -> Sandbox {
        self.init_program = program.into();
        self
    }

    /// Uses other host paths (procfs, /etc/subuid, the uidmap helpers).
    pub fn with_host_paths(mut self, paths: HostPaths) -> Sandbox {
        self.paths = paths;
        self
    }

    /// Creates the per-step scratch directories (a tmpfs is mounted over each inside the
    /// sandbox, so they stay empty on disk) under `dir` instead of the temp directory.
    pub fn with_staging_dir(mut self, dir: impl Into<PathBuf>) -> Sandbox {
        self.staging_parent = dir.into();
        self
    }

    /// The host paths in use.
    pub fn host_paths(&self) -> &HostPaths {
        &self.paths
    }

    /// The init program in use.
    pub fn init_program(&self) -> &Path {
        &self.init_program
    }

    /// Runs the step of `spec`, blocking until it ended; output goes to `sink` as it arrives.
    /// A non-zero exit is `Ok`; a sandbox that could not be set up, or a cancelled step, is
    /// `Err`.
    pub fn run(
        &self,
        spec: &SandboxSpec,
        sink: &mut dyn OutputSink,
        cancel: &CancelToken,
    ) -> Result<StepExit, SandboxError> {
        validate(spec)?;
        let mut spec_to_send = spec.clone();
        // RUN --security=insecure is a privileged container, as with BuildKit: for real root,
        // the host's ids and capabilities.
        if spec.security == SecurityMode::Insecure && spec.id_mapping.is_isolated() {
            spec_to_send.id_mapping = crate::IdMapping::host();
        }
        if spec_to_send.resolv_conf.is_none() {
            let host = std::fs::read_to_string(&self.paths.resolv_conf).unwrap_or_default();
            spec_to_send.resolv_conf =
                Some(resolv_conf_from_host(&host, spec.network).into_bytes());
        }
        let staging = tempfile::Builder::new()
            .prefix("img-sandbox-")
            .tempdir_in(&self.staging_parent)
            .map_err(|source| SandboxError::Io { source })?;
        let seccomp = match spec.security {
            SecurityMode::Sandbox => crate::seccomp::default_filters()?.map(<[_]>::to_vec),
            _ => None,
        };
        let request = InitRequest::Run {
            spec: Box::new(spec_to_send),
            staging: staging.path().to_path_buf(),
            seccomp,
        };
        let mut session = self.start(&request)?;
        let result = session.drive(spec, sink, cancel, &self.paths);
        sink.finish();
        result
    }

    /// Starts the init with `request` on its stdin.
    pub(crate) fn start(&self, request: &InitRequest) -> Result<Session, SandboxError> {
        let io = |source| SandboxError::Io { source };
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|e| io(e.into()))?;
        let theirs_raw = theirs.as_raw_fd();
        let mut command = Command::new(&self.init_program);
        command
            .env_clear()
            .env(INIT_ENV, "3")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: only async-signal-safe calls (dup2, fcntl, prctl) between fork and exec.
        unsafe {
            command.pre_exec(move || crate::userns::socket_at_fd3_and_die_with_parent(theirs_raw));
        }
        let mut child = command.spawn().map_err(|source| SandboxError::Spawn {
            program: self.init_program.clone(),
            source,
        })?;
        drop(theirs);
        let bytes = serde_json::to_vec(request).map_err(|e| io(std::io::Error::other(e)))?;
        let mut stdin = child.stdin.take().expect("stdin is piped");
        // A broken pipe means the init died early: its status tells why, below.
        let _ = stdin.write_all(&bytes);
        drop(stdin);
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        Ok(Session {
            program: self.init_program.clone(),
            child,
            control: ours,
            stdout: Some(stdout),
            stderr: Some(stderr),
            init_pid: None,
            notices: Vec::new(),
        })
    }
}

fn validate(spec: &SandboxSpec) -> Result<(), SandboxError> {
    let invalid = |field, problem: &str| {
        Err(SandboxError::InvalidSpec {
            field,
            problem: problem.to_string(),
        })
    };
    if spec.process.args.is_empty() || spec.process.args[0].is_empty() {
        return invalid("process.args", "is empty: give the command to run");
    }
    if !spec.process.cwd.is_absolute() {
        return invalid("process.cwd", "must be an absolute path");
    }
    if spec.hostname.is_empty() || spec.hostname.len() > 64 {
        return invalid("hostname", "must have 1 to 64 bytes");
    }
    if !spec.rootfs.root().is_dir() {
        return invalid(
            "rootfs",
            &format!("{} is not a directory", spec.rootfs.root().display()),
        );
    }
    if let Some(m) = spec.mounts.iter().find(|m| !m.target().is_absolute()) {
        return invalid(
            "mounts",
            &format!("target {} must be absolute", m.target().display()),
        );
    }
    Ok(())
}

/// One running init.
pub(crate) struct Session {
    program: PathBuf,
    child: Child,
    control: OwnedFd,
    stdout: Option<ChildStdout>,
    stderr: Option<ChildStderr>,
    init_pid: Option<i32>,
    /// Warnings for the caller, said once per process (see [`Session::say_notices`]).
    notices: Vec<String>,
}

/// Notices already said by this process: a build says each once, not once per step.
static NOTICES_SAID: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

impl Session {
    /// Receives one message, writing the maps when the init asks for them; `None` at end of
    /// stream.
    pub(crate) fn recv_one(
        &mut self,
        mapping: &crate::IdMapping,
        paths: &HostPaths,
    ) -> Result<Option<ChildMessage>, SandboxError> {
        let message = protocol::recv::<ChildMessage>(&self.control)
            .map_err(|source| SandboxError::Io { source })?;
        match &message {
            Some(ChildMessage::UserNamespaceCreated) => self.write_maps(mapping, paths)?,
            Some(ChildMessage::InitStarted { pid }) => self.init_pid = Some(*pid),
            Some(ChildMessage::NotIsolated(n)) => self.notices.push(format!(
                "RUN steps run with the host's ids in a user namespace of their own, not with \
                 root's subordinate ids: the kernel cannot make an idmapped mount of {} ({}); \
                 put the state directory on a filesystem that supports idmapped mounts (ext4, \
                 xfs, btrfs; tmpfs from Linux 6.3)",
                n.path.display(),
                std::io::Error::from_raw_os_error(n.errno)
            )),
            _ => {}
        }
        Ok(message)
    }

    fn write_maps(
        &mut self,
        mapping: &crate::IdMapping,
        paths: &HostPaths,
    ) -> Result<(), SandboxError> {
        let effective = match mapping.apply(self.child.id() as i32, paths) {
            Ok(effective) => effective,
            Err(e) => {
                self.kill_all();
                return Err(e.into());
            }
        };
        let effective = effective.map(|(mapping, limitation)| {
            self.notices.push(limitation.to_string());
            mapping
        });
        protocol::send(
            self.control.as_fd(),
            &ParentMessage::MappingDone { effective },
        )
        .map_err(|source| SandboxError::Io { source })
    }

    /// Writes the notices this process has not said yet to `sink`, as standard error of the
    /// step, where a build's log shows them.
    fn say_notices(&mut self, sink: &mut dyn OutputSink) {
        let mut said = NOTICES_SAID.lock().unwrap_or_else(|e| e.into_inner());
        for notice in self.notices.drain(..) {
            if !said.contains(&notice) {
                sink.output(
                    Stream::Stderr,
                    format!("img: warning: {notice}\n").as_bytes(),
                );
                said.push(notice);
            }
        }
    }

    /// The notices collected so far (the doctor reads them instead of printing them).
    pub(crate) fn take_notices(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notices)
    }

    fn kill_all(&mut self) {
        if let Some(pid) = self.init_pid {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let _ = self.child.kill();
    }

    /// Waits for the init to exit; an init that never spoke was not an init at all.
    pub(crate) fn finish(mut self, spoke: bool) -> Result<(), SandboxError> {
        let status = self
            .child
            .wait()
            .map_err(|source| SandboxError::Io { source })?;
        if !spoke {
            return Err(SandboxError::InitNotResponding {
                program: self.program,
                status: status.to_string(),
            });
        }
        Ok(())
    }

    fn drive(
        &mut self,
        spec: &SandboxSpec,
        sink: &mut dyn OutputSink,
        cancel: &CancelToken,
        paths: &HostPaths,
    ) -> Result<StepExit, SandboxError> {
        let mut exit: Option<StepExit> = None;
        let mut failure: Option<ChildFailure> = None;
        let mut spoke = false;
        let mut control_open = true;
        let mut cancelled_at: Option<Instant> = None;
        let mut buf = vec![0u8; 64 * 1024];
        while control_open || self.stdout.is_some() || self.stderr.is_some() {
            if cancel.is_cancelled() && cancelled_at.is_none() {
                cancelled_at = Some(Instant::now());
                let grace_ms = spec.cancel_grace.as_millis().min(u64::MAX as u128) as u64;
                if protocol::send(self.control.as_fd(), &ParentMessage::Cancel { grace_ms })
                    .is_err()
                {
                    self.kill_all();
                }
            }
            // An init that does not honour the cancel in time is killed with its namespace.
            if cancelled_at
                .is_some_and(|at| at.elapsed() > spec.cancel_grace + Duration::from_secs(2))
            {
                self.kill_all();
            }
            let (control_ready, out_ready, err_ready) = {
                let mut fds = Vec::with_capacity(3);
                let mut slots = [None; 3];
                if control_open {
                    slots[0] = Some(fds.len());
                    fds.push(PollFd::new(self.control.as_fd(), PollFlags::POLLIN));
                }
                if let Some(out) = &self.stdout {
                    slots[1] = Some(fds.len());
                    fds.push(PollFd::new(out.as_fd(), PollFlags::POLLIN));
                }
                if let Some(err) = &self.stderr {
                    slots[2] = Some(fds.len());
                    fds.push(PollFd::new(err.as_fd(), PollFlags::POLLIN));
                }
                let timeout = PollTimeout::try_from(CANCEL_POLL).unwrap_or(PollTimeout::MAX);
                match poll(&mut fds, timeout) {
                    Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                    Err(e) => return Err(SandboxError::Io { source: e.into() }),
                }
                let ready = |slot: Option<usize>| {
                    slot.and_then(|i| fds[i].revents())
                        .is_some_and(|r| !r.is_empty())
                };
                (ready(slots[0]), ready(slots[1]), ready(slots[2]))
            };
            if out_ready {
                read_stream(&mut self.stdout, Stream::Stdout, &mut buf, sink)?;
            }
            if err_ready {
                read_stream(&mut self.stderr, Stream::Stderr, &mut buf, sink)?;
            }
            if control_ready {
                let received = self.recv_one(&spec.id_mapping, paths);
                self.say_notices(sink);
                match received {
                    Ok(Some(message)) => {
                        spoke = true;
                        match message {
                            ChildMessage::Exited { code, signal } => {
                                exit = Some(StepExit { code, signal })
                            }
                            ChildMessage::Failed(f) => failure = failure.or(Some(f)),
                            _ => {}
                        }
                    }
                    Ok(None) => control_open = false,
                    Err(e) => {
                        self.kill_all();
                        let _ = self.child.wait();
                        return Err(e);
                    }
                }
            }
        }
        let status = self
            .child
            .wait()
            .map_err(|source| SandboxError::Io { source })?;
        if cancelled_at.is_some() {
            return Err(SandboxError::Cancelled);
        }
        if let Some(f) = failure {
            return Err(SandboxError::Setup(SetupError::from(f)));
        }
        match exit {
            Some(exit) if spoke => Ok(exit),
            _ => Err(SandboxError::InitNotResponding {
                program: self.program.clone(),
                status: status.to_string(),
            }),
        }
    }
}

fn read_stream<R: Read>(
    stream: &mut Option<R>,
    id: Stream,
    buf: &mut [u8],
    sink: &mut dyn OutputSink,
) -> Result<(), SandboxError> {
    let Some(reader) = stream else { return Ok(()) };
    match reader.read(buf) {
        Ok(0) => *stream = None,
        Ok(n) => sink.output(id, &buf[..n]),
        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
        Err(source) => return Err(SandboxError::Io { source }),
    }
    Ok(())
}
