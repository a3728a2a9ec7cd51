//! RUN: an exec op on the stage's filesystem with the environment, user, working directory,
//! network, security mode and mounts the plan gives it, as BuildKit's `dispatchRun` builds it.

use img_llb::{
    CacheSharing as LlbSharing, ExecOp, FileOp, MkfileAction, Mount as LlbMount, MountKind,
    NetworkMode as LlbNetwork, OpRef, SecurityMode as LlbSecurity,
};

use crate::instructions::{
    CacheSharing, Mount, MountType, NetworkMode, RunInstruction, RunScript, SecurityMode,
};
use crate::lower::build::Lowerer;
use crate::lower::describe::{instruction_text, StepCounter};
use crate::lower::{paths, LowerError};
use crate::stages::PlannedInstruction;

/// Where BuildKit mounts the file of a `#!` heredoc, read-only.
const HEREDOC_PIPES: &str = "/dev/pipes";

impl Lowerer<'_> {
    pub(super) fn lower_run(
        &mut self,
        root: Option<OpRef>,
        planned: &PlannedInstruction,
        run: &RunInstruction,
        steps: &mut StepCounter,
    ) -> Result<OpRef, LowerError> {
        let location = &planned.location;
        let context = &planned.context;
        let mut exec = ExecOp::new(root, run.argv(&context.shell));
        exec.env = context
            .env
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        exec.cwd = context.workdir.clone();
        exec.user = context.user.clone();
        exec.network = match run.network {
            NetworkMode::Default => LlbNetwork::Sandbox,
            NetworkMode::None => LlbNetwork::None,
            NetworkMode::Host => LlbNetwork::Host,
        };
        exec.security = match run.security {
            SecurityMode::Sandbox => LlbSecurity::Sandbox,
            SecurityMode::Insecure => LlbSecurity::Insecure,
        };
        if let RunScript::Executable { name, content } = run.script() {
            // The script is a file of its own, mounted where `argv` runs it from.
            let file = FileOp::new(None).with_action(MkfileAction {
                path: paths::absolute(&name),
                mode: 0o755,
                data: content,
                owner: None,
            });
            let source = self
                .graph
                .add(file, steps.internal("preparing inline document", location))?;
            exec.mounts.push(LlbMount {
                target: HEREDOC_PIPES.to_string(),
                kind: MountKind::Bind {
                    source,
                    selector: "/".to_string(),
                    readonly: true,
                },
            });
        }
        // The plan lists one resolved source per mount that has `from`, in mount order.
        let mut sources = planned.sources.iter();
        for mount in &run.mounts {
            let from = match &mount.from {
                Some(from) => {
                    let source = sources
                        .next()
                        .ok_or_else(|| LowerError::MissingMountSource {
                            location: Box::new(location.clone()),
                            from: from.clone(),
                        })?;
                    Some(self.source_fs(source, location)?)
                }
                None => None,
            };
            let kind = self.mount_kind(mount, from)?;
            exec.mounts.push(LlbMount {
                target: mount.target.clone().unwrap_or_default(),
                kind,
            });
        }
        let description = steps.next(
            &instruction_text(location, &planned.instruction),
            planned.from_trigger,
        );
        let op = self
            .graph
            .add(exec, steps.metadata(description, location))?;
        if !context.proxy_env.is_empty() {
            self.proxy_env.insert(op.digest, context.proxy_env.clone());
        }
        Ok(op)
    }

    /// The graph's form of a `--mount`; `from` is the resolved `from=` filesystem.
    fn mount_kind(&mut self, mount: &Mount, from: Option<OpRef>) -> Result<MountKind, LowerError> {
        let selector = paths::absolute(mount.source.as_deref().unwrap_or("/"));
        Ok(match mount.kind {
            MountType::Bind => MountKind::Bind {
                source: match from {
                    Some(op) => op,
                    None => self.context_fs()?,
                },
                selector,
                readonly: mount.read_only,
            },
            // Without `from` a cache starts empty (BuildKit mounts it from scratch).
            MountType::Cache => MountKind::Cache {
                id: mount
                    .id
                    .clone()
                    .or_else(|| mount.target.clone())
                    .unwrap_or_default(),
                sharing: match mount.sharing.unwrap_or(CacheSharing::Shared) {
                    CacheSharing::Shared => LlbSharing::Shared,
                    CacheSharing::Private => LlbSharing::Private,
                    CacheSharing::Locked => LlbSharing::Locked,
                },
                source: from,
                selector,
                readonly: mount.read_only,
                uid: mount.uid.unwrap_or(0),
                gid: mount.gid.unwrap_or(0),
                mode: mount.mode.unwrap_or(0o755),
            },
            MountType::Tmpfs => MountKind::Tmpfs {
                size: mount.size_limit,
            },
            MountType::Secret => MountKind::Secret {
                id: mount.id.clone().unwrap_or_default(),
                env: mount.env.clone(),
                required: mount.required,
                uid: mount.uid.unwrap_or(0),
                gid: mount.gid.unwrap_or(0),
                mode: mount.mode.unwrap_or(0o400),
            },
            MountType::Ssh => MountKind::Ssh {
                id: mount.id.clone().unwrap_or_else(|| "default".to_string()),
                required: mount.required,
                uid: mount.uid.unwrap_or(0),
                gid: mount.gid.unwrap_or(0),
                mode: mount.mode.unwrap_or(0o600),
            },
        })
    }
}
