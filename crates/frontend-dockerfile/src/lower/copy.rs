//! COPY and ADD: one file op of copy actions, as BuildKit's `dispatchCopy` builds it. Sources
//! come from the build context, a stage, an image, a download or a repository; heredocs become
//! files of their own first. With `--link` the copy lands on an empty filesystem that is merged
//! onto the stage, so that it does not depend on (and is not rebuilt for) what is below.

use img_llb::{
    CopyAction, Digest, FileAction, FileOp, GitSource, HttpSource, IdOrName, MergeOp, MkfileAction,
    OpRef, Owner, SourceOp,
};

use crate::instructions::{
    AddInstruction, Chmod, ChmodFlag, CopyInstruction, FileSources, Location,
};
use crate::lower::build::Lowerer;
use crate::lower::context::is_http;
use crate::lower::describe::{instruction_text, StepCounter};
use crate::lower::git::parse_git_ref;
use crate::lower::{paths, LowerError};
use crate::stages::PlannedInstruction;

/// The flags of COPY and ADD, in one shape.
struct CopyFlags<'i> {
    files: &'i FileSources,
    chown: Option<&'i str>,
    chmod: Option<&'i ChmodFlag>,
    link: bool,
    parents: bool,
    excludes: &'i [String],
    add: Option<&'i AddInstruction>,
}

/// What every action of one instruction shares.
struct Common {
    dest: String,
    owner: Option<Owner>,
    /// An octal `--chmod`.
    mode: Option<u32>,
    /// A symbolic `--chmod`, applied to each copied entry's own mode when the copy runs.
    symbolic_mode: Option<Chmod>,
    excludes: Vec<String>,
}

impl Lowerer<'_> {
    pub(super) fn lower_copy(
        &mut self,
        base: Option<OpRef>,
        planned: &PlannedInstruction,
        copy: &CopyInstruction,
        steps: &mut StepCounter,
    ) -> Result<OpRef, LowerError> {
        let source = match (&copy.from, planned.sources.first()) {
            (Some(_), Some(source)) => Some(self.source_fs(source, &planned.location)?),
            (Some(from), None) => {
                return Err(LowerError::MissingMountSource {
                    location: Box::new(planned.location.clone()),
                    from: from.clone(),
                })
            }
            (None, _) => None,
        };
        let flags = CopyFlags {
            files: &copy.files,
            chown: copy.chown.as_deref(),
            chmod: copy.chmod.as_ref(),
            link: copy.link,
            parents: copy.parents,
            excludes: &copy.excludes,
            add: None,
        };
        self.lower_file_copy(base, planned, source, flags, steps)
    }

    pub(super) fn lower_add(
        &mut self,
        base: Option<OpRef>,
        planned: &PlannedInstruction,
        add: &AddInstruction,
        steps: &mut StepCounter,
    ) -> Result<OpRef, LowerError> {
        let flags = CopyFlags {
            files: &add.files,
            chown: add.chown.as_deref(),
            chmod: add.chmod.as_ref(),
            link: add.link,
            parents: false,
            excludes: &add.excludes,
            add: Some(add),
        };
        self.lower_file_copy(base, planned, None, flags, steps)
    }

    /// `from` is the filesystem local paths are copied from; `None` is the build context.
    fn lower_file_copy(
        &mut self,
        base: Option<OpRef>,
        planned: &PlannedInstruction,
        from: Option<OpRef>,
        flags: CopyFlags<'_>,
        steps: &mut StepCounter,
    ) -> Result<OpRef, LowerError> {
        let location = &planned.location;
        let text = instruction_text(location, &planned.instruction);
        let description = steps.next(&text, planned.from_trigger);
        let chmod = flags.chmod.map(|c| chmod(c, location)).transpose()?;
        let common = Common {
            dest: paths::destination(&planned.context.workdir, &flags.files.dest),
            owner: flags.chown.map(|c| parse_owner(c, location)).transpose()?,
            mode: match chmod {
                Some(Chmod::Octal(mode)) => Some(*mode),
                _ => None,
            },
            symbolic_mode: chmod.filter(|c| matches!(c, Chmod::Symbolic(_))).cloned(),
            excludes: flags.excludes.to_vec(),
        };
        let mut actions: Vec<FileAction> = Vec::new();
        for src in &flags.files.sources {
            let action = match flags.add {
                Some(add) => self.add_action(src, add, &common, &description, steps, location)?,
                None => {
                    if !matches!(parse_git_ref(src), Ok(None)) {
                        return Err(LowerError::GitSourceInCopy {
                            location: Box::new(location.clone()),
                            url: src.clone(),
                        });
                    }
                    let source = match from {
                        Some(op) => op,
                        None => self.context_fs()?,
                    };
                    local_action(src, source, &common, flags.parents, false)
                }
            };
            actions.push(action.into());
        }
        for inline in &flags.files.inline {
            let name = paths::absolute(&inline.name);
            let file = FileOp::new(None).with_action(MkfileAction {
                path: name.clone(),
                mode: 0o644,
                data: inline.data.clone(),
                owner: None,
            });
            let file = self
                .graph
                .add(file, steps.internal("preparing inline document", location))?;
            actions.push(single_file_action(file, name, &common).into());
        }
        let metadata = steps.metadata(description, location);
        if !flags.link {
            let op = FileOp { base, actions };
            return Ok(self.graph.add(op, metadata)?);
        }
        // `--link`: the copy on an empty filesystem, merged onto the stage (BuildKit's
        // approach), so its result does not depend on the stage's filesystem.
        let layer = self.graph.add(
            FileOp {
                base: None,
                actions,
            },
            metadata,
        )?;
        let Some(base) = base else {
            return Ok(layer);
        };
        let merge = MergeOp {
            inputs: vec![base, layer],
        };
        let merge_description = steps.again(&format!("LINK {text}"), planned.from_trigger);
        Ok(self
            .graph
            .add(merge, steps.metadata(merge_description, location))?)
    }

    /// One ADD source: a repository, a download, or a context path (archives unpacked).
    fn add_action(
        &mut self,
        src: &str,
        add: &AddInstruction,
        common: &Common,
        description: &str,
        steps: &StepCounter,
        location: &Location,
    ) -> Result<CopyAction, LowerError> {
        let git = parse_git_ref(src).map_err(|reason| LowerError::GitReference {
            location: Box::new(location.clone()),
            url: src.to_string(),
            reason,
        })?;
        if let Some(git) = git {
            if add.checksum.is_some() {
                return Err(LowerError::GitReference {
                    location: Box::new(location.clone()),
                    url: src.to_string(),
                    reason: "--checksum for a repository is not supported yet".to_string(),
                });
            }
            let repo = GitSource {
                url: git.remote,
                reference: git.reference,
                keep_git_dir: add.keep_git_dir || git.keep_git_dir.unwrap_or(false),
            };
            let repo = self.graph.add(
                SourceOp::Git(repo),
                steps.metadata(description.to_string(), location),
            )?;
            let selector = paths::absolute(git.subdir.as_deref().unwrap_or("/"));
            let mut action = single_file_action(repo, selector, common);
            // A checkout is a directory: its contents go to the destination.
            action.copy_dir_contents = true;
            return Ok(action);
        }
        if is_http(src) {
            let checksum = add
                .checksum
                .as_deref()
                .map(|value| {
                    value
                        .parse::<Digest>()
                        .map_err(|source| LowerError::InvalidChecksum {
                            location: Box::new(location.clone()),
                            value: value.to_string(),
                            source,
                        })
                })
                .transpose()?;
            let file_name = paths::url_file_name(src);
            let download = HttpSource {
                url: src.to_string(),
                checksum,
                filename: Some(file_name.clone()),
            };
            let download = self.graph.add(
                SourceOp::Http(download),
                steps.metadata(description.to_string(), location),
            )?;
            // Downloads are not unpacked unless asked, and are private (0600) unless --chmod
            // says otherwise, as BuildKit's HTTP source writes them.
            let unpack = add.unpack.unwrap_or(false);
            let mut action = single_file_action(download, format!("/{file_name}"), common);
            action.unpack_archive = unpack;
            if common.mode.is_none() && common.symbolic_mode.is_none() && !unpack {
                action.mode = Some(0o600);
            }
            return Ok(action);
        }
        if add.checksum.is_some() {
            return Err(LowerError::ChecksumNeedsUrl {
                location: Box::new(location.clone()),
                source_path: src.to_string(),
            });
        }
        let context = self.context_fs()?;
        Ok(local_action(
            src,
            context,
            common,
            false,
            add.unpack.unwrap_or(true),
        ))
    }
}

/// A context, stage or image path: wildcards allowed, directory contents copied, symlinks
/// followed at the top, and (with `--parents`) the path below the `/./` pivot kept.
fn local_action(
    src: &str,
    source: OpRef,
    common: &Common,
    parents: bool,
    unpack: bool,
) -> CopyAction {
    let (src, include) = if parents {
        match src.split_once("/./") {
            Some((parent, pattern)) => (parent.to_string(), paths::absolute(pattern)),
            None => ("/".to_string(), paths::absolute(src)),
        }
    } else {
        (src.to_string(), String::new())
    };
    let mut action = CopyAction::new(source, vec![paths::absolute(&src)], common.dest.clone());
    // BuildKit lets a wildcard match nothing for local sources.
    action.allow_empty_wildcard = true;
    action.unpack_archive = unpack;
    action.owner = common.owner.clone();
    action.mode = common.mode;
    action.symbolic_mode = common.symbolic_mode.clone();
    action.exclude_patterns = common.excludes.clone();
    if !include.is_empty() {
        action.include_patterns = vec![include.trim_start_matches('/').to_string()];
    }
    action
}

/// One known file or directory (a heredoc, a download, a checkout): no wildcards, no
/// symlink following.
fn single_file_action(source: OpRef, src: String, common: &Common) -> CopyAction {
    let mut action = CopyAction::new(source, vec![src], common.dest.clone());
    action.follow_symlinks = false;
    action.copy_dir_contents = false;
    action.allow_wildcard = false;
    action.allow_empty_wildcard = false;
    action.owner = common.owner.clone();
    action.mode = common.mode;
    action.symbolic_mode = common.symbolic_mode.clone();
    action.exclude_patterns = common.excludes.clone();
    action
}

/// `--chown` or USER as an owner: numbers are ids, anything else a name to look up in the
/// destination's `/etc/passwd` and `/etc/group`.
pub(super) fn parse_owner(value: &str, location: &Location) -> Result<Owner, LowerError> {
    let (user, group) = match value.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (value, None),
    };
    if user.is_empty() {
        return Err(LowerError::InvalidChown {
            location: Box::new(location.clone()),
            value: value.to_string(),
        });
    }
    let id_or_name = |s: &str| match s.parse::<u32>() {
        Ok(id) => IdOrName::Id(id),
        Err(_) => IdOrName::Name(s.to_string()),
    };
    Ok(Owner {
        user: id_or_name(user),
        group: group.filter(|g| !g.is_empty()).map(id_or_name),
    })
}

fn chmod<'a>(flag: &'a ChmodFlag, location: &Location) -> Result<&'a Chmod, LowerError> {
    flag.mode.as_ref().ok_or_else(|| LowerError::InvalidChmod {
        location: Box::new(location.clone()),
        value: flag.raw.clone(),
    })
}
