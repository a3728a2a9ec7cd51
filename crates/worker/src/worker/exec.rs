//! Exec ops (`RUN`): an active snapshot on the root input, the process in the sandbox with the
//! op's mounts, output streamed to the progress log, commit on exit code 0.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use img_llb::{CacheSharing, ExecOp, MountKind, NetworkMode, SecurityMode};
use img_sandbox::{
    BindMode, CacheMountLock, Mount as SandboxMount, Process, Rootfs, SandboxError, SandboxSpec,
    StepMount, Stream,
};
use sha2::{Digest as _, Sha256};

use super::copy::copy_tree;
use super::root::TreeRoot;
use super::{Worker, WorkerError, WorkerRef};
use img_solver::{ExecContext, Inputs, LogStream};

/// What a step's mounts hold on to until it ends.
#[derive(Default)]
struct StepResources {
    mounts: Vec<StepMount>,
    extra_root_mounts: Vec<SandboxMount>,
    secret_env: Vec<(String, img_sandbox::SecretBytes)>,
    env: Vec<String>,
    _cache_locks: Vec<CacheMountLock>,
}

fn to_sandbox_mounts(mounts: &[img_snapshot::Mount], target: &Path) -> Vec<SandboxMount> {
    mounts
        .iter()
        .map(|m| SandboxMount {
            fstype: m.kind.clone(),
            source: PathBuf::from(&m.source),
            target: target.to_path_buf(),
            options: m.options.clone(),
        })
        .collect()
}

/// The canonical path of `selector` inside the tree at `root`, links followed inside it as
/// the source's own `/` would; a "not found" error naming `selector` when nothing is there.
fn selected_path(root: &Path, selector: &str) -> Result<PathBuf, WorkerError> {
    let tree = TreeRoot::open(root).map_err(WorkerError::file("opening", root))?;
    let resolved = tree
        .resolve(Path::new(selector), true)
        .map_err(WorkerError::file("reading", root))?;
    match tree.lstat(&resolved.path) {
        Ok(_) => Ok(resolved.path),
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR)) => {
            Err(WorkerError::SourceNotFound {
                path: selector.to_owned(),
            })
        }
        Err(e) => Err(WorkerError::file("reading", tree.host_path(&resolved.path))(e)),
    }
}

/// A cache id as a directory name: hashed, so any id is a safe single path component.
pub(super) fn cache_dir_name(id: &str) -> String {
    let hash = Sha256::digest(id.as_bytes());
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

impl Worker {
    pub(super) fn exec(
        &self,
        exec: &ExecOp,
        inputs: &Inputs<WorkerRef>,
        name: &str,
        ctx: &ExecContext<'_>,
    ) -> Result<WorkerRef, WorkerError> {
        let root = exec.root.as_ref().and_then(|r| inputs.get(r));
        let active = self.prepare(root)?;
        let staging = tempfile::Builder::new()
            .prefix("exec-")
            .tempdir_in(self.scratch())
            .map_err(WorkerError::file(
                "creating a staging directory in",
                self.scratch(),
            ))?;
        let root_dir = staging.path().join("root");
        std::fs::create_dir(&root_dir).map_err(WorkerError::file("creating", &root_dir))?;
        let resources = self.step_resources(exec, inputs, staging.path())?;

        let mut root_mounts = to_sandbox_mounts(active.mounts(), &root_dir);
        root_mounts.extend(resources.extra_root_mounts.iter().cloned());
        let mut env = exec.env.clone();
        env.extend(
            self.exec_env(&ctx.op())
                .iter()
                .map(|(k, v)| format!("{k}={v}")),
        );
        env.extend(resources.env.iter().cloned());
        let process = Process {
            args: exec.args.clone(),
            env,
            secret_env: resources.secret_env.clone(),
            cwd: PathBuf::from(&exec.cwd),
            user: exec.user.clone().unwrap_or_default(),
        };
        let mut builder = SandboxSpec::builder(
            Rootfs::Mounted {
                root: root_dir,
                mounts: root_mounts,
            },
            process,
            self.options.id_mapping.clone(),
        )
        .network(match exec.network {
            NetworkMode::None => img_sandbox::NetworkMode::None,
            _ => img_sandbox::NetworkMode::Host,
        })
        .security(match exec.security {
            SecurityMode::Insecure => img_sandbox::SecurityMode::Insecure,
            _ => img_sandbox::SecurityMode::Sandbox,
        });
        for mount in &resources.mounts {
            builder = builder.mount(mount.clone());
        }
        for entry in &exec.extra_hosts {
            builder = builder.extra_host(&entry.host, &entry.ip);
        }
        for limit in &exec.ulimits {
            builder = builder.rlimit(img_sandbox::ResourceLimit {
                name: limit.name.clone(),
                soft: limit.soft,
                hard: limit.hard,
            });
        }
        if let Some(bytes) = exec.shm_size {
            builder = builder.shm_size(bytes);
        }
        let spec = builder.build();

        let exit = self.run_step(&spec, ctx)?;
        drop(resources);
        if !exit.success() {
            return Err(WorkerError::ExitCode {
                args: exec.args.clone(),
                code: exit.code_or_signal(),
            });
        }
        active.commit(name)
    }

    /// Runs the sandbox, relaying the solver's cancellation to it.
    fn run_step(
        &self,
        spec: &SandboxSpec,
        ctx: &ExecContext<'_>,
    ) -> Result<img_sandbox::StepExit, WorkerError> {
        let sandbox_cancel = img_sandbox::CancelToken::new();
        let finished = AtomicBool::new(false);
        let result = std::thread::scope(|scope| {
            scope.spawn(|| {
                while !finished.load(Ordering::SeqCst) {
                    if ctx.cancel_token().wait_timeout(Duration::from_millis(50)) {
                        sandbox_cancel.cancel();
                        return;
                    }
                }
            });
            let mut sink = |stream: Stream, data: &[u8]| {
                let stream = match stream {
                    Stream::Stdout => LogStream::Stdout,
                    _ => LogStream::Stderr,
                };
                ctx.log(stream, data);
            };
            let result = self.options.sandbox.run(spec, &mut sink, &sandbox_cancel);
            finished.store(true, Ordering::SeqCst);
            result
        });
        match result {
            Ok(exit) => Ok(exit),
            Err(SandboxError::Cancelled) => Err(WorkerError::Cancelled),
            Err(e) => Err(WorkerError::Sandbox(Box::new(e))),
        }
    }

    fn step_resources(
        &self,
        exec: &ExecOp,
        inputs: &Inputs<WorkerRef>,
        staging: &Path,
    ) -> Result<StepResources, WorkerError> {
        let mut res = StepResources::default();
        for (index, mount) in exec.mounts.iter().enumerate() {
            let target = PathBuf::from(&mount.target);
            match &mount.kind {
                MountKind::Bind {
                    source,
                    selector,
                    readonly,
                } => {
                    let source = inputs.get(source).ok_or(WorkerError::MissingInput {
                        what: "bind mount source",
                    })?;
                    let host = self.mount_source(source, selector, staging, index, &mut res)?;
                    res.mounts.push(StepMount::Bind {
                        source: host,
                        target,
                        mode: if *readonly {
                            BindMode::ReadOnly
                        } else {
                            BindMode::ReadWriteDiscard
                        },
                    });
                }
                MountKind::Cache {
                    id,
                    sharing,
                    source,
                    selector,
                    readonly,
                    uid,
                    gid,
                    mode,
                } => {
                    let dir = self
                        .store
                        .state()
                        .root()
                        .join("cache-mounts")
                        .join(cache_dir_name(id));
                    let fresh = !dir.join("data").exists();
                    let sharing = match sharing {
                        CacheSharing::Private => img_sandbox::CacheSharing::Private,
                        CacheSharing::Locked => img_sandbox::CacheSharing::Locked,
                        _ => img_sandbox::CacheSharing::Shared,
                    };
                    let lock = CacheMountLock::acquire(&dir, sharing).map_err(|source| {
                        WorkerError::CacheMount {
                            id: id.clone(),
                            source,
                        }
                    })?;
                    let data = lock.dir().to_path_buf();
                    if fresh {
                        self.init_cache_dir(
                            &data,
                            source.as_ref().and_then(|s| inputs.get(s)),
                            selector,
                            (*uid, *gid, *mode),
                        )?;
                    }
                    res.mounts.push(if *readonly {
                        StepMount::Bind {
                            source: data,
                            target,
                            mode: BindMode::ReadOnly,
                        }
                    } else {
                        StepMount::Cache {
                            source: data,
                            target,
                        }
                    });
                    res._cache_locks.push(lock);
                }
                MountKind::Tmpfs { size } => res.mounts.push(StepMount::Tmpfs {
                    target,
                    size: *size,
                }),
                MountKind::Secret {
                    id,
                    env,
                    required,
                    uid,
                    gid,
                    mode,
                } => {
                    let Some(value) = self.options.secrets.value(id)? else {
                        if *required {
                            return Err(WorkerError::MissingSecret { id: id.clone() });
                        }
                        continue;
                    };
                    if let Some(name) = env {
                        res.secret_env.push((name.clone(), value.clone()));
                    }
                    if env.is_none() || !mount.target.is_empty() {
                        res.mounts.push(StepMount::Secret {
                            data: value,
                            target,
                            mode: *mode,
                            uid: *uid,
                            gid: *gid,
                        });
                    }
                }
                MountKind::Ssh { id, required, .. } => {
                    let Some(socket) = self.options.ssh_agents.get(id) else {
                        if *required {
                            return Err(WorkerError::MissingSsh { id: id.clone() });
                        }
                        continue;
                    };
                    // As BuildKit: the step finds the agent through SSH_AUTH_SOCK.
                    if !exec.env.iter().any(|e| e.starts_with("SSH_AUTH_SOCK=")) {
                        res.env.push(format!("SSH_AUTH_SOCK={}", mount.target));
                    }
                    res.mounts.push(StepMount::SshAgent {
                        socket: socket.clone(),
                        target,
                    });
                }
                _ => return Err(WorkerError::UnsupportedOp { kind: "mount type" }),
            }
        }
        Ok(res)
    }

    /// The host path the sandbox binds for `selector` of a mount source: resolved inside the
    /// source's tree (a link never leads to the host's files), in a private copy of the
    /// build context checked against its cache key, or in a snapshot (mounted read-only under
    /// `staging` by the sandbox itself when it is an overlay).
    fn mount_source(
        &self,
        source: &WorkerRef,
        selector: &str,
        staging: &Path,
        index: usize,
        res: &mut StepResources,
    ) -> Result<PathBuf, WorkerError> {
        match source {
            WorkerRef::Local { .. } => {
                let staged = self.staged_local(source)?;
                let path = selected_path(staged.path(), selector)?;
                Ok(staged.path().join(path))
            }
            WorkerRef::Snapshot { key, .. } => {
                self.materialize_key(key)?;
                let mounts = self.snapshotter.mounts(key)?;
                if let [only] = mounts.as_slice() {
                    if only.kind == "bind" {
                        let root = PathBuf::from(&only.source);
                        let path = selected_path(&root, selector)?;
                        return Ok(root.join(path));
                    }
                }
                // The snapshot is immutable: where the selector leads in this process's mount
                // of it is where it leads in the sandbox's.
                let path = self.with_tree(source, |root| selected_path(root, selector))??;
                let dir = staging.join(format!("mount-{index}"));
                std::fs::create_dir(&dir).map_err(WorkerError::file("creating", &dir))?;
                res.extra_root_mounts
                    .extend(to_sandbox_mounts(&mounts, &dir));
                Ok(dir.join(path))
            }
        }
    }

    /// A new cache directory gets the mount's owner and mode, and the seed content if any.
    fn init_cache_dir(
        &self,
        data: &Path,
        seed: Option<&WorkerRef>,
        selector: &str,
        (uid, gid, mode): (u32, u32, u32),
    ) -> Result<(), WorkerError> {
        match seed {
            Some(local @ WorkerRef::Local { .. }) => {
                // What `.dockerignore` leaves out never reaches the step, not even this way.
                let staged = self.staged_local(local)?;
                let start = selected_path(staged.path(), selector)?;
                copy_tree(staged.path(), &start, data)?;
            }
            Some(snapshot) => {
                self.with_tree(snapshot, |root| -> Result<(), WorkerError> {
                    let start = selected_path(root, selector)?;
                    copy_tree(root, &start, data)
                })??;
            }
            None => {}
        }
        // Without a user namespace of the sandbox's own (root, or img re-executed as root of
        // one), the step's ids are this process's; otherwise they map to host ids.
        let mapping = &self.options.id_mapping;
        let (owner_uid, owner_gid) = if mapping.uses_user_namespace() {
            (
                mapping.host_uid(uid).unwrap_or(uid),
                mapping.host_gid(gid).unwrap_or(gid),
            )
        } else {
            (uid, gid)
        };
        std::os::unix::fs::chown(data, Some(owner_uid), Some(owner_gid))
            .map_err(WorkerError::file("changing the owner of", data))?;
        std::fs::set_permissions(data, std::fs::Permissions::from_mode(mode))
            .map_err(WorkerError::file("changing the mode of", data))
    }
}
