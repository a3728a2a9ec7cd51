//! File ops (`COPY`, `ADD`, `WORKDIR`, heredoc files): actions applied in order to an active
//! snapshot on the base, with Docker's copy rules; merge and diff ops.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use glob::Pattern;
use img_llb::{
    CopyAction, DiffOp, FileAction, FileOp, MergeOp, MkdirAction, MkfileAction, OpRef, RmAction,
    SymlinkAction,
};
use img_snapshot::{ApplyOptions, Compression, ExportOptions};

use super::context::{matches_self_or_parent, may_match_below, MATCH};
use super::copy::Copier;
use super::layer_db::ExportVariant;
use super::paths::{clean_components, resolve_in_root_checked, resolve_owner};
use super::{Worker, WorkerError, WorkerRef};
use img_solver::{
    checksum_immutable_tree, checksum_tree, CacheKeyExtra, ChecksumOptions, ExecContext, Inputs,
    PathFilter, TreeChecksum,
};

fn has_wildcard(path: &str) -> bool {
    path.contains(['*', '?', '['])
}

fn pattern(p: &str) -> Result<Pattern, WorkerError> {
    Pattern::new(p).map_err(|source| WorkerError::Pattern {
        pattern: p.to_owned(),
        source: Box::new(source),
    })
}

/// Paths inside `root` matching `src` (components may hold wildcards), as (relative, host).
fn expand_wildcard(root: &Path, src: &str) -> Result<Vec<(String, PathBuf)>, WorkerError> {
    let mut found: Vec<(String, PathBuf)> = vec![(String::new(), root.to_path_buf())];
    for part in clean_components(src) {
        let mut next = Vec::new();
        for (rel, dir) in found {
            let join = |name: &str| {
                if rel.is_empty() {
                    name.to_owned()
                } else {
                    format!("{rel}/{name}")
                }
            };
            if !has_wildcard(&part) {
                let host = resolve_in_root_checked(root, &join(&part), false)?;
                if fs::symlink_metadata(&host).is_ok() {
                    next.push((join(&part), host));
                }
                continue;
            }
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            let p = pattern(&part)?;
            let mut names: Vec<String> = entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| p.matches_with(n, MATCH))
                .collect();
            names.sort();
            for name in names {
                next.push((join(&name), dir.join(&name)));
            }
        }
        found = next;
    }
    Ok(found
        .into_iter()
        .filter(|(rel, _)| !rel.is_empty())
        .collect())
}

/// Creates the missing directories of `path` (inside `root`), owned by `owner`, mode 0755.
fn make_parents(root: &Path, path: &str, owner: (u32, u32)) -> Result<PathBuf, WorkerError> {
    let mut current = String::new();
    for part in clean_components(path) {
        current.push('/');
        current.push_str(&part);
        let host = resolve_in_root_checked(root, &current, true)?;
        match fs::metadata(&host) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(WorkerError::File {
                    action: "creating directory",
                    path: host,
                    source: std::io::Error::from(std::io::ErrorKind::NotADirectory),
                })
            }
            Err(_) => {
                fs::create_dir(&host).map_err(WorkerError::file("creating", &host))?;
                fs::set_permissions(&host, fs::Permissions::from_mode(0o755))
                    .map_err(WorkerError::file("changing the mode of", &host))?;
                std::os::unix::fs::lchown(&host, Some(owner.0), Some(owner.1))
                    .map_err(WorkerError::file("changing the owner of", &host))?;
            }
        }
    }
    resolve_in_root_checked(root, path, true)
}

/// The tar stream of the regular file at `path` when it is an archive `ADD` unpacks: a tar,
/// plain or compressed with gzip, bzip2, xz or zstd, decided by content as Docker does.
fn open_archive(path: &Path) -> Option<Box<dyn Read>> {
    let open = || fs::File::open(path).ok();
    let mut magic = [0u8; 6];
    let n = open()?.read(&mut magic).ok()?;
    let magic = &magic[..n];
    let decoded = |file: fs::File| -> Option<Box<dyn Read>> {
        Some(if magic.starts_with(&[0x1f, 0x8b]) {
            Box::new(flate2::read::MultiGzDecoder::new(file))
        } else if magic.starts_with(b"BZh") {
            Box::new(bzip2::read::MultiBzDecoder::new(file))
        } else if magic.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
            Box::new(xz2::read::XzDecoder::new_multi_decoder(file))
        } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Box::new(zstd::stream::read::Decoder::new(file).ok()?)
        } else {
            Box::new(file)
        })
    };
    let mut header = [0u8; 512];
    decoded(open()?)?.read_exact(&mut header).ok()?;
    // ustar and GNU tar headers carry "ustar" at offset 257.
    if &header[257..262] != b"ustar" {
        return None;
    }
    decoded(open()?)
}

/// What one file op works on: the destination tree and every copy source's tree.
struct Trees<'a> {
    dest: &'a Path,
    sources: BTreeMap<OpRef, (&'a Path, &'a WorkerRef)>,
}

impl Worker {
    pub(super) fn file(
        &self,
        file: &FileOp,
        inputs: &Inputs<WorkerRef>,
        name: &str,
        _ctx: &ExecContext<'_>,
    ) -> Result<WorkerRef, WorkerError> {
        let base = file.base.as_ref().and_then(|b| inputs.get(b));
        let active = self.prepare(base)?;
        let mut source_refs: Vec<(OpRef, &WorkerRef)> = Vec::new();
        for action in &file.actions {
            if let FileAction::Copy(copy) = action {
                if !source_refs.iter().any(|(r, _)| *r == copy.source) {
                    if let Some(output) = inputs.get(&copy.source) {
                        source_refs.push((copy.source, output));
                    }
                }
            }
        }
        let mut mount_sets: Vec<Vec<img_snapshot::Mount>> = vec![active.mounts().to_vec()];
        for (_, output) in &source_refs {
            mount_sets.push(match output {
                WorkerRef::Local { path, .. } => vec![img_snapshot::Mount {
                    kind: "bind".into(),
                    source: path.display().to_string(),
                    options: vec!["rbind".into(), "ro".into()],
                }],
                WorkerRef::Snapshot { key, .. } => self.snapshotter.mounts(key)?,
            });
        }
        let sets: Vec<&[img_snapshot::Mount]> = mount_sets.iter().map(Vec::as_slice).collect();
        super::mounted::with_all_mounted(&sets, &self.scratch(), |dirs| {
            let trees = Trees {
                dest: &dirs[0],
                sources: source_refs
                    .iter()
                    .zip(&dirs[1..])
                    .map(|((r, output), dir)| (*r, (dir.as_path(), *output)))
                    .collect(),
            };
            for action in &file.actions {
                self.apply_action(action, &trees)?;
            }
            Ok::<(), WorkerError>(())
        })
        .map_err(|source| WorkerError::Mount {
            snapshot: active.key().to_owned(),
            source,
        })??;
        active.commit(name)
    }

    fn apply_action(&self, action: &FileAction, trees: &Trees<'_>) -> Result<(), WorkerError> {
        let root = trees.dest;
        match action {
            FileAction::Copy(copy) => {
                let (src_root, output) =
                    trees
                        .sources
                        .get(&copy.source)
                        .copied()
                        .ok_or(WorkerError::MissingInput {
                            what: "copy source",
                        })?;
                self.copy_action(copy, root, src_root, output)
            }
            FileAction::Mkdir(mkdir) => mkdir_action(root, mkdir),
            FileAction::Mkfile(mkfile) => mkfile_action(root, mkfile),
            FileAction::Rm(rm) => rm_action(root, rm),
            FileAction::Symlink(link) => symlink_action(root, link),
            _ => Err(WorkerError::UnsupportedOp {
                kind: "file action",
            }),
        }
    }

    /// Docker's COPY: wildcards expand in the source; a directory's contents are copied; a
    /// destination ending in `/` (or several sources, or an existing directory) receives
    /// entries under their own names; otherwise the destination is the new name.
    fn copy_action(
        &self,
        copy: &CopyAction,
        dest_root: &Path,
        src_root: &Path,
        output: &WorkerRef,
    ) -> Result<(), WorkerError> {
        let is_local = matches!(output, WorkerRef::Local { .. });
        let owner = match &copy.owner {
            Some(owner) => Some(resolve_owner(dest_root, owner)?),
            // Context files belong to whoever runs the client: they go to root, as in Docker.
            None if is_local => Some((0, 0)),
            None => None,
        };
        let local_filter = match output {
            WorkerRef::Local {
                include_patterns,
                exclude_patterns,
                ..
            } => Some(self.local_filter(include_patterns, exclude_patterns)?),
            WorkerRef::Snapshot { .. } => None,
        };
        let copier = Copier {
            owner,
            mode: copy.mode,
            symbolic_mode: copy.symbolic_mode.as_ref(),
            source_filter: local_filter.as_deref().map(|f| f as &dyn PathFilter),
            include: copy
                .include_patterns
                .iter()
                .map(|p| pattern(p.trim_start_matches('/')))
                .collect::<Result<_, _>>()?,
            exclude: copy
                .exclude_patterns
                .iter()
                .map(|p| pattern(p.trim_start_matches('/')))
                .collect::<Result<_, _>>()?,
            linked: Default::default(),
            deferred: Default::default(),
        };
        let mut sources: Vec<(String, PathBuf)> = Vec::new();
        for src in &copy.src {
            if copy.allow_wildcard && has_wildcard(src) {
                let mut found = expand_wildcard(src_root, src)?;
                if let Some(filter) = &local_filter {
                    found.retain(|(rel, host)| filter.selects(rel, host.is_dir()));
                }
                if found.is_empty() && !copy.allow_empty_wildcard {
                    return Err(WorkerError::SourceNotFound { path: src.clone() });
                }
                sources.extend(found);
            } else {
                let host = resolve_in_root_checked(src_root, src, copy.follow_symlinks)?;
                let rel = host
                    .strip_prefix(src_root)
                    .unwrap_or(&host)
                    .to_string_lossy()
                    .into_owned();
                let selected = local_filter.as_ref().is_none_or(|f| {
                    rel.is_empty()
                        || f.selects(&rel, host.is_dir())
                        || (host.is_dir() && f.may_select_under(&rel))
                });
                if fs::symlink_metadata(&host).is_err() || !selected {
                    return Err(WorkerError::SourceNotFound { path: src.clone() });
                }
                sources.push((rel, host));
            }
        }
        let dest = &copy.dest;
        let into_dir = dest.ends_with('/') || sources.len() > 1;
        let parent_owner = owner.unwrap_or((0, 0));
        for (rel, host) in sources {
            let meta = if copy.follow_symlinks {
                fs::metadata(&host)
            } else {
                fs::symlink_metadata(&host)
            }
            .map_err(WorkerError::file("reading", &host))?;
            if meta.is_dir() && copy.copy_dir_contents {
                let target = self.dest_dir(dest_root, dest, copy.create_dest_path, parent_owner)?;
                copier.copy_contents(&host, &target, &rel)?;
                continue;
            }
            let archive = (meta.is_file() && copy.unpack_archive)
                .then(|| open_archive(&host))
                .flatten();
            if let Some(archive) = archive {
                let target = self.dest_dir(dest_root, dest, copy.create_dest_path, parent_owner)?;
                img_snapshot::apply_layer(archive, &target, &ApplyOptions::default())?;
                continue;
            }
            let dest_host = resolve_in_root_checked(dest_root, dest, true)?;
            let name = host.file_name().map(|n| n.to_owned()).unwrap_or_default();
            let target = if into_dir || dest_host.is_dir() {
                self.dest_dir(dest_root, dest, copy.create_dest_path, parent_owner)?
                    .join(name)
            } else {
                let parent = Path::new(dest.as_str())
                    .parent()
                    .map(|p| p.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "/".into());
                if copy.create_dest_path {
                    make_parents(dest_root, &parent, parent_owner)?;
                }
                resolve_in_root_checked(dest_root, dest, false)?
            };
            // A top-level symlink followed: the copy is of what it points to.
            if copy.follow_symlinks && fs::symlink_metadata(&host).is_ok_and(|m| m.is_symlink()) {
                let real = fs::canonicalize(&host).map_err(WorkerError::file("reading", &host))?;
                copier.copy(&real, &target, &rel)?;
            } else {
                copier.copy(&host, &target, &rel)?;
            }
        }
        Ok(())
    }

    fn dest_dir(
        &self,
        root: &Path,
        dest: &str,
        create: bool,
        owner: (u32, u32),
    ) -> Result<PathBuf, WorkerError> {
        if create {
            make_parents(root, dest, owner)
        } else {
            resolve_in_root_checked(root, dest, true)
        }
    }

    /// The cache key of a file op: each copy source that is not also the base is keyed by a
    /// checksum of the paths the op copies from it, so editing an unrelated context file does
    /// not re-run the step.
    pub(super) fn file_cache_key(
        &self,
        file: &FileOp,
        inputs: &Inputs<WorkerRef>,
    ) -> Result<CacheKeyExtra, WorkerError> {
        let mut srcs: BTreeMap<OpRef, Vec<String>> = BTreeMap::new();
        for action in &file.actions {
            if let FileAction::Copy(copy) = action {
                if Some(copy.source) == file.base {
                    continue;
                }
                srcs.entry(copy.source)
                    .or_default()
                    .extend(copy.src.iter().cloned());
            }
        }
        let mut extra = CacheKeyExtra::new();
        for (source, paths) in srcs {
            let Some(output) = inputs.get(&source) else {
                continue;
            };
            let sum = match output {
                WorkerRef::Local {
                    path,
                    include_patterns,
                    exclude_patterns,
                    ..
                } => {
                    let context = self.local_filter(include_patterns, exclude_patterns)?;
                    let filter = SourcePaths {
                        patterns: source_patterns(path, &paths)?,
                        context: Some(context.as_ref()),
                    };
                    checksum_tree(
                        path,
                        &filter,
                        &ChecksumOptions::with_ownership(false),
                        self.options.checksum_cache.as_ref(),
                    )?
                }
                WorkerRef::Snapshot { key, .. } => self.snapshot_checksum(output, key, &paths)?,
            };
            extra = extra.with_tree(source, &sum);
        }
        Ok(extra)
    }

    /// The checksum of `paths` in a committed snapshot. A committed snapshot never changes, so
    /// the checksum is recorded once per (snapshot, paths) and later builds neither mount nor
    /// read it.
    fn snapshot_checksum(
        &self,
        output: &WorkerRef,
        key: &str,
        paths: &[String],
    ) -> Result<TreeChecksum, WorkerError> {
        let options = ChecksumOptions::with_ownership(true);
        let compute = || -> Result<TreeChecksum, WorkerError> {
            self.with_tree(output, |root| -> Result<_, WorkerError> {
                let filter = SourcePaths {
                    patterns: source_patterns(root, paths)?,
                    context: None,
                };
                Ok(checksum_tree(root, &filter, &options, None)?)
            })?
        };
        let Some(cache) = self.options.checksum_cache.as_ref() else {
            return compute();
        };
        // The row id is never reused, so it and the key name this content for good.
        let tree = format!("snapshot:{}:{key}", self.snapshotter.stat(key)?.id);
        // Everything that decides the selection: the copy's source paths and how they match.
        let mut selection = b"img-worker/copy-sources/v1".to_vec();
        for path in paths {
            selection.push(0);
            selection.extend_from_slice(path.as_bytes());
        }
        checksum_immutable_tree(cache, &tree, &selection, &options, compute)
    }

    /// `COPY --link` and friends: every input after the first is stacked, snapshot by
    /// snapshot of its chain, on top of the first.
    pub(super) fn merge(
        &self,
        merge: &MergeOp,
        inputs: &Inputs<WorkerRef>,
        name: &str,
    ) -> Result<WorkerRef, WorkerError> {
        let outputs: Vec<&WorkerRef> = merge.inputs.iter().filter_map(|r| inputs.get(r)).collect();
        let Some((first, rest)) = outputs.split_first() else {
            return self.prepare(None)?.commit(name);
        };
        let active = self.prepare(Some(first))?;
        let below = self.chain(first)?;
        for input in rest {
            // What the first input already holds (a shared base) is not applied again.
            let chain = self.chain(input)?;
            let shared = chain.iter().zip(&below).take_while(|(a, b)| a == b).count();
            for key in &chain[shared..] {
                self.apply_snapshot_diff(key, active.key())?;
            }
        }
        active.commit(name)
    }

    /// The changes from `lower` to `upper` as a filesystem of their own. Supported when
    /// `lower` is one of `upper`'s ancestors (as for the steps of one stage).
    pub(super) fn diff(
        &self,
        diff: &DiffOp,
        inputs: &Inputs<WorkerRef>,
        name: &str,
    ) -> Result<WorkerRef, WorkerError> {
        let upper = inputs.get(&diff.upper).ok_or(WorkerError::MissingInput {
            what: "diff upper input",
        })?;
        let lower_key = match diff.lower.as_ref().and_then(|l| inputs.get(l)) {
            Some(lower) => Some(self.snapshot_key(lower, "diff")?),
            None => None,
        };
        let chain = self.chain(upper)?;
        let start = match &lower_key {
            None => 0,
            Some(lower) => chain
                .iter()
                .position(|k| k == lower)
                .map(|i| i + 1)
                .ok_or_else(|| WorkerError::Unrelated {
                    op: "diff",
                    problem: format!(
                        "{lower} is not below {}",
                        chain.last().cloned().unwrap_or_default()
                    ),
                })?,
        };
        let active = self.prepare(None)?;
        for key in &chain[start..] {
            self.apply_snapshot_diff(key, active.key())?;
        }
        active.commit(name)
    }

    fn snapshot_key(&self, output: &WorkerRef, op: &'static str) -> Result<String, WorkerError> {
        output
            .snapshot_key()
            .map(str::to_owned)
            .ok_or_else(|| WorkerError::Unrelated {
                op,
                problem: "a local directory has no snapshot chain".into(),
            })
    }

    /// The snapshot keys from the root of `output`'s chain to `output` itself.
    pub(crate) fn chain(&self, output: &WorkerRef) -> Result<Vec<String>, WorkerError> {
        let mut key = Some(self.snapshot_key(output, "merge")?);
        let mut chain = Vec::new();
        while let Some(k) = key {
            key = self.snapshotter.stat(&k)?.parent;
            chain.push(k);
        }
        chain.reverse();
        Ok(chain)
    }

    /// Applies the changes of committed snapshot `key` (against its parent) to `active`. The
    /// uncompressed diff is recorded like an exported layer, so stacking the same snapshot
    /// again (another `COPY --link` onto it) reads the blob instead of diffing again.
    fn apply_snapshot_diff(&self, key: &str, active: &str) -> Result<(), WorkerError> {
        let content = self.store.content();
        let variant = ExportVariant {
            compression: Compression::Uncompressed,
            level: None,
            source_date_epoch: None,
        };
        let layer = match self.layer_db().get(key, &variant)? {
            Some(layer) if content.exists(&layer.digest) => layer,
            _ => {
                let options = ExportOptions {
                    compression: Compression::Uncompressed,
                    ..ExportOptions::default()
                };
                let layer = self.snapshotter.diff(key, &content, &options)?;
                self.layer_db().put(key, &variant, &layer)?;
                layer
            }
        };
        self.lease
            .add_blob(&layer.digest)
            .map_err(WorkerError::Lease)?;
        self.snapshotter.apply(active, &content, &layer.digest)?;
        Ok(())
    }
}

/// The patterns of the paths copies read from `root`: each source as written, and for a
/// source that is (or passes through) a symlink, also where it leads, since the copy follows
/// it and the target's content is what lands in the image.
fn source_patterns(root: &Path, paths: &[String]) -> Result<Vec<Pattern>, WorkerError> {
    let mut patterns = Vec::new();
    for p in paths {
        let clean = clean_components(p).join("/");
        patterns.push(pattern(&clean)?);
        if !has_wildcard(p) {
            let resolved = resolve_in_root_checked(root, p, true)?;
            let rel = resolved.strip_prefix(root).unwrap_or(&resolved);
            let rel = rel.to_string_lossy();
            if rel != clean {
                patterns.push(pattern(&Pattern::escape(&rel))?);
            }
        }
    }
    Ok(patterns)
}

/// Selects the paths a copy reads: those matching a source pattern and everything below them,
/// within the local source's own selection.
struct SourcePaths<'a> {
    patterns: Vec<Pattern>,
    context: Option<&'a (dyn PathFilter + Send)>,
}

impl PathFilter for SourcePaths<'_> {
    fn selects(&self, path: &str, is_dir: bool) -> bool {
        let wanted = self
            .patterns
            .iter()
            .any(|p| p.as_str().is_empty() || matches_self_or_parent(p, path));
        wanted && self.context.is_none_or(|c| c.selects(path, is_dir))
    }

    fn may_select_under(&self, dir: &str) -> bool {
        let wanted = self.patterns.iter().any(|p| {
            p.as_str().is_empty() || matches_self_or_parent(p, dir) || may_match_below(p, dir)
        });
        wanted && self.context.is_none_or(|c| c.may_select_under(dir))
    }
}

fn owner_or_root(root: &Path, owner: &Option<img_llb::Owner>) -> Result<(u32, u32), WorkerError> {
    match owner {
        Some(o) => resolve_owner(root, o),
        None => Ok((0, 0)),
    }
}

fn mkdir_action(root: &Path, mkdir: &MkdirAction) -> Result<(), WorkerError> {
    let owner = owner_or_root(root, &mkdir.owner)?;
    let host = resolve_in_root_checked(root, &mkdir.path, true)?;
    if host.is_dir() {
        return Ok(());
    }
    if mkdir.make_parents {
        let parent = Path::new(&mkdir.path)
            .parent()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_else(|| "/".into());
        make_parents(root, &parent, owner)?;
    }
    fs::create_dir(&host).map_err(WorkerError::file("creating", &host))?;
    fs::set_permissions(&host, fs::Permissions::from_mode(mkdir.mode))
        .map_err(WorkerError::file("changing the mode of", &host))?;
    std::os::unix::fs::lchown(&host, Some(owner.0), Some(owner.1))
        .map_err(WorkerError::file("changing the owner of", &host))
}

fn mkfile_action(root: &Path, mkfile: &MkfileAction) -> Result<(), WorkerError> {
    let owner = owner_or_root(root, &mkfile.owner)?;
    let host = resolve_in_root_checked(root, &mkfile.path, false)?;
    if fs::symlink_metadata(&host).is_ok_and(|m| !m.is_dir()) {
        fs::remove_file(&host).map_err(WorkerError::file("replacing", &host))?;
    }
    fs::write(&host, mkfile.data.as_bytes()).map_err(WorkerError::file("writing", &host))?;
    fs::set_permissions(&host, fs::Permissions::from_mode(mkfile.mode))
        .map_err(WorkerError::file("changing the mode of", &host))?;
    std::os::unix::fs::lchown(&host, Some(owner.0), Some(owner.1))
        .map_err(WorkerError::file("changing the owner of", &host))
}

fn rm_action(root: &Path, rm: &RmAction) -> Result<(), WorkerError> {
    let targets: Vec<PathBuf> = if rm.allow_wildcard && has_wildcard(&rm.path) {
        expand_wildcard(root, &rm.path)?
            .into_iter()
            .map(|(_, host)| host)
            .collect()
    } else {
        vec![resolve_in_root_checked(root, &rm.path, false)?]
    };
    if targets.is_empty() && !rm.allow_not_found {
        return Err(WorkerError::SourceNotFound {
            path: rm.path.clone(),
        });
    }
    for host in targets {
        let result = match fs::symlink_metadata(&host) {
            Ok(m) if m.is_dir() => fs::remove_dir_all(&host),
            Ok(_) => fs::remove_file(&host),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && rm.allow_not_found => Ok(()),
            Err(e) => Err(e),
        };
        result.map_err(WorkerError::file("removing", &host))?;
    }
    Ok(())
}

fn symlink_action(root: &Path, link: &SymlinkAction) -> Result<(), WorkerError> {
    let host = resolve_in_root_checked(root, &link.path, false)?;
    std::os::unix::fs::symlink(&link.target, &host)
        .map_err(WorkerError::file("creating link", &host))
}
