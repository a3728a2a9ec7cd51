//! File ops (`COPY`, `ADD`, `WORKDIR`, heredoc files): actions applied in order to an active
//! snapshot on the base, with Docker's copy rules; merge and diff ops.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use img_llb::{
    CopyAction, DiffOp, FileAction, FileOp, MergeOp, MkdirAction, MkfileAction, OpRef, PathPattern,
    RmAction, SymlinkAction,
};
use img_snapshot::{ApplyOptions, Compression, ExportOptions};

use super::context::filter_pattern;
use super::copy::Copier;
use super::layer_db::ExportVariant;
use super::paths::{clean_components, resolve_in_root_checked, resolve_owner};
use super::plan::{expand_wildcard, plan_copy, EntryKind, PlannedSource, Selection};
use super::record::{
    combine, file_digest, first_difference, planned_reads, source_reads, xattrs_digest,
    HashingReader, Read as CopyRead,
};
use super::root::{rel_str, TreeRoot};
use super::{Worker, WorkerError, WorkerRef};
use img_solver::{
    checksum_immutable_tree, CacheKeyExtra, ChecksumOptions, ExecContext, Inputs, PathFilter,
    TreeChecksum, TreeListing,
};

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

/// Reads a file at a position of one's own, so detection and unpacking share one open file.
struct ReadAt<'f> {
    file: &'f fs::File,
    pos: u64,
}

impl Read for ReadAt<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = std::os::unix::fs::FileExt::read_at(self.file, buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// How a file `ADD` unpacks is compressed, decided by content as Docker does.
#[derive(Clone, Copy)]
enum Packing {
    Gzip,
    Bzip2,
    Xz,
    Zstd,
    Plain,
}

impl Packing {
    fn detect(magic: &[u8]) -> Packing {
        if magic.starts_with(&[0x1f, 0x8b]) {
            Packing::Gzip
        } else if magic.starts_with(b"BZh") {
            Packing::Bzip2
        } else if magic.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
            Packing::Xz
        } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Packing::Zstd
        } else {
            Packing::Plain
        }
    }

    fn decode<'r>(self, raw: impl Read + 'r) -> Option<Box<dyn Read + 'r>> {
        Some(match self {
            Packing::Gzip => Box::new(flate2::read::MultiGzDecoder::new(raw)),
            Packing::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(raw)),
            Packing::Xz => Box::new(xz2::read::XzDecoder::new_multi_decoder(raw)),
            Packing::Zstd => Box::new(zstd::stream::read::Decoder::new(raw).ok()?),
            Packing::Plain => Box::new(raw),
        })
    }
}

/// How the open regular file `file` is packed, when it is an archive `ADD` unpacks: a tar,
/// plain or compressed with gzip, bzip2, xz or zstd.
fn archive_packing(file: &fs::File) -> Option<Packing> {
    let mut magic = [0u8; 6];
    let n = std::os::unix::fs::FileExt::read_at(file, &mut magic, 0).ok()?;
    let packing = Packing::detect(&magic[..n]);
    let mut header = [0u8; 512];
    packing
        .decode(ReadAt { file, pos: 0 })?
        .read_exact(&mut header)
        .ok()?;
    // ustar and GNU tar headers carry "ustar" at offset 257.
    (&header[257..262] == b"ustar").then_some(packing)
}

/// What one file op works on: the destination tree and every copy source's tree.
struct Trees<'a> {
    dest: &'a Path,
    sources: BTreeMap<OpRef, (TreeRoot, &'a WorkerRef)>,
}

impl Worker {
    pub(super) fn file(
        &self,
        file: &FileOp,
        inputs: &Inputs<WorkerRef>,
        name: &str,
        ctx: &ExecContext<'_>,
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
        // The destination and every snapshot source are mounted; a local source is read in
        // place, through its root.
        let mut mount_sets: Vec<Vec<img_snapshot::Mount>> = vec![active.mounts().to_vec()];
        for (_, output) in &source_refs {
            if let WorkerRef::Snapshot { key, .. } = output {
                mount_sets.push(self.snapshotter.mounts(key)?);
            }
        }
        let sets: Vec<&[img_snapshot::Mount]> = mount_sets.iter().map(Vec::as_slice).collect();
        let reads = super::mounted::with_all_mounted(&sets, &self.scratch(), |dirs| {
            let mut mounted = dirs[1..].iter();
            let mut sources = BTreeMap::new();
            for (r, output) in &source_refs {
                let dir = match output {
                    WorkerRef::Local { path, .. } => path.as_path(),
                    WorkerRef::Snapshot { .. } => {
                        mounted.next().ok_or(WorkerError::MissingInput {
                            what: "mounted copy source",
                        })?
                    }
                };
                let tree = TreeRoot::open(dir).map_err(WorkerError::file("opening", dir))?;
                sources.insert(*r, (tree, *output));
            }
            let trees = Trees {
                dest: &dirs[0],
                sources,
            };
            let mut reads: HashMap<OpRef, Vec<CopyRead>> = HashMap::new();
            for action in &file.actions {
                self.apply_action(action, &trees, &mut reads)?;
            }
            Ok::<_, WorkerError>(reads)
        })
        .map_err(|source| WorkerError::Mount {
            snapshot: active.key().to_owned(),
            source,
        })??;
        self.check_reads(file, inputs, ctx, reads)?;
        active.commit(name)
    }

    /// What the copies read from the build context must be what the cache key was computed
    /// from: a file edited in between would otherwise be recorded under the key of content
    /// the image does not hold.
    fn check_reads(
        &self,
        file: &FileOp,
        inputs: &Inputs<WorkerRef>,
        ctx: &ExecContext<'_>,
        mut reads: HashMap<OpRef, Vec<CopyRead>>,
    ) -> Result<(), WorkerError> {
        for source in keyed_local_sources(file, inputs) {
            let expected = self
                .copy_reads
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&(ctx.op(), source));
            let expected = expected.ok_or(WorkerError::MissingInput {
                what: "record of what the cache key read",
            })?;
            let actual = reads.remove(&source).unwrap_or_default();
            if let Some(path) = first_difference(&expected, &actual) {
                return Err(WorkerError::ContextChanged {
                    path: rel_str(&path),
                });
            }
        }
        Ok(())
    }

    fn apply_action(
        &self,
        action: &FileAction,
        trees: &Trees<'_>,
        reads: &mut HashMap<OpRef, Vec<CopyRead>>,
    ) -> Result<(), WorkerError> {
        let root = trees.dest;
        match action {
            FileAction::Copy(copy) => {
                let (tree, output) =
                    trees
                        .sources
                        .get(&copy.source)
                        .ok_or(WorkerError::MissingInput {
                            what: "copy source",
                        })?;
                let reads = reads.entry(copy.source).or_default();
                self.copy_action(copy, root, tree, output, reads)
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

    /// What a copy from `output` takes: the local source's own selection, and the copy's
    /// `--include`/`--exclude` patterns.
    fn selection_rules(
        &self,
        copy: &CopyAction,
        output: &WorkerRef,
    ) -> Result<(Option<Box<dyn PathFilter + Send>>, Selection<'static>), WorkerError> {
        let filter = match output {
            WorkerRef::Local {
                include_patterns,
                exclude_patterns,
                ..
            } => Some(self.local_filter(include_patterns, exclude_patterns)?),
            WorkerRef::Snapshot { .. } => None,
        };
        let patterns = |list: &[String]| -> Result<Vec<PathPattern>, WorkerError> {
            list.iter()
                .map(|p| {
                    filter_pattern(p).map_err(|source| WorkerError::Pattern {
                        written: p.clone(),
                        source,
                    })
                })
                .collect()
        };
        let selection = Selection {
            filter: None,
            include: patterns(&copy.include_patterns)?,
            exclude: patterns(&copy.exclude_patterns)?,
        };
        Ok((filter, selection))
    }

    /// Docker's COPY: wildcards expand in the source; a directory's contents are copied; a
    /// destination ending in `/` (or several sources, or an existing directory) receives
    /// entries under their own names; otherwise the destination is the new name. What is read
    /// is appended to `reads`.
    fn copy_action(
        &self,
        copy: &CopyAction,
        dest_root: &Path,
        tree: &TreeRoot,
        output: &WorkerRef,
        reads: &mut Vec<CopyRead>,
    ) -> Result<(), WorkerError> {
        let is_local = matches!(output, WorkerRef::Local { .. });
        let owner = match &copy.owner {
            Some(owner) => Some(resolve_owner(dest_root, owner)?),
            // Context files belong to whoever runs the client: they go to root, as in Docker.
            None if is_local => Some((0, 0)),
            None => None,
        };
        let (filter, selection) = self.selection_rules(copy, output)?;
        let selection = Selection {
            filter: filter.as_deref().map(|f| f as &dyn PathFilter),
            ..selection
        };
        let planned = plan_copy(tree, copy, &selection)?;
        let copier = Copier::new(owner, copy.mode, copy.symbolic_mode.as_ref());
        let dest = &copy.dest;
        let into_dir = dest.ends_with('/') || planned.len() > 1;
        let parent_owner = owner.unwrap_or((0, 0));
        for source in &planned {
            let contents = if source.entries.is_empty() {
                // A socket: nothing to copy.
                Vec::new()
            } else {
                self.copy_source(
                    copy,
                    dest_root,
                    tree,
                    source,
                    &copier,
                    into_dir,
                    parent_owner,
                )?
            };
            source_reads(source, &contents, !is_local, reads);
        }
        Ok(())
    }

    /// Copies one planned source to where `copy` says; each entry's content hash.
    #[allow(clippy::too_many_arguments)]
    fn copy_source(
        &self,
        copy: &CopyAction,
        dest_root: &Path,
        tree: &TreeRoot,
        source: &PlannedSource,
        copier: &Copier<'_>,
        into_dir: bool,
        parent_owner: (u32, u32),
    ) -> Result<Vec<Option<[u8; 32]>>, WorkerError> {
        let dest = &copy.dest;
        let top = source.top();
        if top.kind == EntryKind::Dir && copy.copy_dir_contents {
            let target = self.dest_dir(dest_root, dest, copy.create_dest_path, parent_owner)?;
            return copier.copy_contents(tree, &source.entries, &target);
        }
        if top.kind == EntryKind::File && copy.unpack_archive {
            let file = tree
                .open_file(&top.path)
                .map_err(WorkerError::file("opening", tree.host_path(&top.path)))?;
            if let Some(packing) = archive_packing(&file) {
                let target = self.dest_dir(dest_root, dest, copy.create_dest_path, parent_owner)?;
                let mut raw = HashingReader::new(ReadAt {
                    file: &file,
                    pos: 0,
                });
                let decoded = packing.decode(&mut raw).ok_or_else(|| WorkerError::File {
                    action: "decompressing",
                    path: tree.host_path(&top.path),
                    source: std::io::Error::from(std::io::ErrorKind::InvalidData),
                })?;
                img_snapshot::apply_layer(decoded, &target, &ApplyOptions::default())?;
                let sha = raw
                    .finish()
                    .map_err(WorkerError::file("reading", tree.host_path(&top.path)))?;
                let xattrs = xattrs_digest(&file).map_err(WorkerError::file(
                    "reading attributes of",
                    tree.host_path(&top.path),
                ))?;
                return Ok(vec![Some(file_digest(sha, xattrs))]);
            }
        }
        let dest_host = resolve_in_root_checked(dest_root, dest, true)?;
        let name = source
            .name
            .file_name()
            .map(|n| n.to_owned())
            .unwrap_or_default();
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
        copier.copy(tree, &source.entries, &target)
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

    /// The cache key of a file op: each copy source that is not also the base is keyed by
    /// what the op's copies read from it (the same plan the copy follows, `plan.rs`), so
    /// editing an unrelated context file does not re-run the step. What is read from the
    /// build context is kept until the op runs, to check the copy against it.
    pub(super) fn file_cache_key(
        &self,
        file: &FileOp,
        inputs: &Inputs<WorkerRef>,
    ) -> Result<CacheKeyExtra, WorkerError> {
        let mut copies: BTreeMap<OpRef, Vec<&CopyAction>> = BTreeMap::new();
        for action in &file.actions {
            if let FileAction::Copy(copy) = action {
                if Some(copy.source) != file.base {
                    copies.entry(copy.source).or_default().push(copy);
                }
            }
        }
        let op = (!copies.is_empty()).then(|| img_llb::Op::File(file.clone()).digest());
        let mut extra = CacheKeyExtra::new();
        for (source, actions) in copies {
            let Some(output) = inputs.get(&source) else {
                continue;
            };
            let plan_all = |tree: &TreeRoot| -> Result<Vec<PlannedSource>, WorkerError> {
                let mut planned = Vec::new();
                for copy in &actions {
                    let (filter, selection) = self.selection_rules(copy, output)?;
                    let selection = Selection {
                        filter: filter.as_deref().map(|f| f as &dyn PathFilter),
                        ..selection
                    };
                    planned.extend(plan_copy(tree, copy, &selection)?);
                }
                Ok(planned)
            };
            let sum = match output {
                WorkerRef::Local { path, .. } => {
                    let tree = TreeRoot::open(path).map_err(WorkerError::file("opening", path))?;
                    let planned = plan_all(&tree)?;
                    let cache = self.options.checksum_cache.as_ref();
                    let reads = planned_reads(&tree, &planned, false, cache)?;
                    let sum = reads_checksum(&reads, reads.len());
                    if let Some(op) = op {
                        self.copy_reads
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert((op, source), reads);
                    }
                    sum
                }
                WorkerRef::Snapshot { key, .. } => {
                    // The checksum of a lazy result's files needs them: it is unpacked here
                    // (docs/cache-format.md says why the cache does not carry checksums).
                    self.materialize_key(key)?;
                    let compute = || -> Result<TreeChecksum, WorkerError> {
                        self.with_tree(output, |root| -> Result<_, WorkerError> {
                            let tree =
                                TreeRoot::open(root).map_err(WorkerError::file("opening", root))?;
                            let planned = plan_all(&tree)?;
                            let reads = planned_reads(&tree, &planned, true, None)?;
                            Ok(reads_checksum(&reads, reads.len()))
                        })?
                    };
                    self.snapshot_checksum(key, &actions, compute)?
                }
            };
            extra = extra.with_tree(source, &sum);
        }
        Ok(extra)
    }

    /// The checksum of what `actions` read from a committed snapshot. A committed snapshot
    /// never changes, so the checksum is recorded once per (snapshot, actions) and later
    /// builds neither mount nor read it; `compute` plans and hashes the reads the first time.
    fn snapshot_checksum(
        &self,
        key: &str,
        actions: &[&CopyAction],
        compute: impl FnOnce() -> Result<TreeChecksum, WorkerError>,
    ) -> Result<TreeChecksum, WorkerError> {
        let Some(cache) = self.options.checksum_cache.as_ref() else {
            return compute();
        };
        // The row id is never reused, so it and the key name this content for good.
        let tree = format!("snapshot:{}:{key}", self.snapshotter.stat(key)?.id);
        // Everything that decides what the plan reads, field by field, each length-framed.
        let mut selection = b"img-worker/copy-plan/v1".to_vec();
        let mut field = |bytes: &[u8]| {
            selection.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
            selection.extend_from_slice(bytes);
        };
        for action in actions {
            field(b"action");
            field(&(action.src.len() as u64).to_le_bytes());
            for src in &action.src {
                field(src.as_bytes());
            }
            field(&[
                u8::from(action.follow_symlinks),
                u8::from(action.copy_dir_contents),
                u8::from(action.allow_wildcard),
                u8::from(action.allow_empty_wildcard),
            ]);
            field(&(action.include_patterns.len() as u64).to_le_bytes());
            for pattern in &action.include_patterns {
                field(pattern.as_bytes());
            }
            field(&(action.exclude_patterns.len() as u64).to_le_bytes());
            for pattern in &action.exclude_patterns {
                field(pattern.as_bytes());
            }
        }
        let options = ChecksumOptions::with_ownership(true);
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
        self.materialize(output)?;
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

/// Removes what `rm` names. Paths resolve inside the tree (a wildcard's matches without
/// following links, as BuildKit's rm does), so a link of the image never leads a removal to
/// the host.
fn rm_action(root: &Path, rm: &RmAction) -> Result<(), WorkerError> {
    let tree = TreeRoot::open(root).map_err(WorkerError::file("opening", root))?;
    let targets: Vec<PathBuf> = if rm.allow_wildcard && PathPattern::has_wildcards(&rm.path) {
        expand_wildcard(&tree, &rm.path, false)?.0
    } else {
        let path = Path::new(&rm.path);
        let resolved = tree
            .resolve(path, false)
            .map_err(WorkerError::file("reading", root))?;
        vec![resolved.path]
    };
    if targets.is_empty() && !rm.allow_not_found {
        return Err(WorkerError::SourceNotFound {
            path: rm.path.clone(),
        });
    }
    for rel in targets {
        // A canonical path: no link on the way; the last component itself is never followed.
        let host = tree.host_path(&rel);
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

/// The local copy sources of `file` whose reads its cache key covered (all but its own base).
fn keyed_local_sources(file: &FileOp, inputs: &Inputs<WorkerRef>) -> Vec<OpRef> {
    let mut sources = Vec::new();
    for action in &file.actions {
        if let FileAction::Copy(copy) = action {
            let local = matches!(inputs.get(&copy.source), Some(WorkerRef::Local { .. }));
            if local && Some(copy.source) != file.base && !sources.contains(&copy.source) {
                sources.push(copy.source);
            }
        }
    }
    sources
}

/// A tree checksum of the reads of a copy: their combined digest, with a listing by path so a
/// miss can name what changed.
fn reads_checksum(reads: &[CopyRead], entries: usize) -> TreeChecksum {
    use std::os::unix::ffi::OsStrExt;
    TreeChecksum {
        digest: combine(reads),
        entries,
        files_read: 0,
        listing: TreeListing::from_digests(
            reads
                .iter()
                .map(|r| (r.path.as_os_str().as_bytes().to_vec(), r.digest)),
        ),
    }
}
