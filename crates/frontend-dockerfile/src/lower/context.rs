//! The paths a build reads from its context, so that the context source can name them
//! (BuildKit's `ctxPaths` and `FollowPaths`): the client then sends and checksums only those.

use std::collections::BTreeSet;

use crate::instructions::{Instruction, MountType};
use crate::lower::git::parse_git_ref;
use crate::lower::paths;
use crate::stages::BuildPlan;

/// The context paths the plan reads, relative and sorted; empty when it reads the whole
/// context (a `COPY . …`, or a RUN bind mount of the context's root).
pub(crate) fn follow_paths(plan: &BuildPlan) -> Vec<String> {
    let mut used = BTreeSet::new();
    for stage in &plan.stages {
        for planned in &stage.instructions {
            match &planned.instruction {
                Instruction::Copy(copy) if copy.from.is_none() => {
                    used.extend(copy.files.sources.iter().map(|s| paths::absolute(s)));
                }
                Instruction::Add(add) => {
                    let local = add.files.sources.iter().filter(|s| is_local(s));
                    used.extend(local.map(|s| paths::absolute(s)));
                }
                Instruction::Run(run) => {
                    let context_binds = run
                        .mounts
                        .iter()
                        .filter(|m| m.kind == MountType::Bind && m.from.is_none());
                    used.extend(
                        context_binds.map(|m| paths::absolute(m.source.as_deref().unwrap_or("/"))),
                    );
                }
                _ => {}
            }
        }
    }
    if used.contains("/") {
        return Vec::new();
    }
    used.into_iter()
        .map(|p| p.trim_start_matches('/').to_string())
        .collect()
}

/// Whether an ADD source is a path of the context (not a URL or a repository).
pub(crate) fn is_local(source: &str) -> bool {
    !is_http(source) && !matches!(parse_git_ref(source), Ok(Some(_)) | Err(_))
}

/// Whether a source is an HTTP(S) URL.
pub(crate) fn is_http(source: &str) -> bool {
    source.starts_with("http://") || source.starts_with("https://")
}
