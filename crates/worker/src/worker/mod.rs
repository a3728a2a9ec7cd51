//! The real executor: performs ops on snapshots of `img-snapshot`, runs `RUN` steps in
//! `img-sandbox`, and pulls base images with `img-registry`.
//!
//! Every op's result is a committed snapshot ([`WorkerRef::Snapshot`]) whose parent is the
//! snapshot of the op's root input, so the chain of snapshots from an image's base to its last
//! step is the chain of its layers. The build context is the one exception: it is the client's
//! directory itself ([`WorkerRef::Local`]), read in place and never copied whole.
//!
//! Committed snapshots are named after the op's cache key plus a unique suffix, and the solver
//! records that name, so a later process reloads the result with [`Executor::load`]. Base image
//! layers are named after their chain id (`layer/sha256:…`), so every build of every image on
//! the same base shares them. Everything a build creates joins a [`Lease`] the worker holds
//! until it is dropped, so a concurrent `img prune` never removes a running build's work;
//! [`Worker::gc_roots`] lists what the build cache keeps alive afterwards.

mod context;
pub(crate) mod copy;
mod error;
mod exec;
mod file;
pub(crate) mod image;
pub(crate) mod layer_db;
mod lazy;
mod local_blobs;
pub(crate) mod mounted;
mod paths;
mod plan;
mod record;
mod remote;
pub(crate) mod remote_cache;
mod remote_key;
pub(crate) mod root;
mod secrets;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use img_llb::{Digest as OpDigest, Op, SourceOp};
use img_registry::Client;
use img_sandbox::{IdMapping, Sandbox};
use img_snapshot::{Digest, GcRoots, Lease, SnapshotError, Snapshotter, Store};
use serde::{Deserialize, Serialize};

use img_solver::{CacheDb, CacheKeyExtra, CancelToken, ExecContext, Executor, Inputs, PathFilter};

pub use context::{ContextFilterFactory, GlobContextFilter};
pub use error::WorkerError;
pub(crate) use image::image_parts;
pub use image::BaseImage;
pub use lazy::{LazyBlobs, LazyStats};
pub use local_blobs::LocalBlobs;
pub use remote::DownloadTimeouts;
pub use secrets::{SecretSource, SecretStore};

use layer_db::LayerDb;

/// How long the build's lease protects its work from garbage collection if the process dies
/// without releasing it.
const LEASE_TTL: Duration = Duration::from_secs(24 * 3600);

/// The result of an op.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum WorkerRef {
    /// A committed snapshot.
    Snapshot {
        /// The snapshot's key.
        key: String,
        /// For an image source: the digest of the image manifest it was unpacked from, whose
        /// layers an exporter reuses as they are.
        image: Option<Digest>,
    },
    /// A local directory of the client (the build context), read in place.
    Local {
        /// The source's name (`context`, or a `--build-context` name).
        name: String,
        /// The directory.
        path: PathBuf,
        /// Only paths matching these are part of it (empty: all).
        include_patterns: Vec<String>,
        /// Paths matching these are left out.
        exclude_patterns: Vec<String>,
    },
}

impl WorkerRef {
    /// The snapshot key, unless this is a local directory.
    pub fn snapshot_key(&self) -> Option<&str> {
        match self {
            WorkerRef::Snapshot { key, .. } => Some(key),
            WorkerRef::Local { .. } => None,
        }
    }

    /// The manifest digest of the image this snapshot was unpacked from, for an image source.
    pub fn image_manifest(&self) -> Option<&Digest> {
        match self {
            WorkerRef::Snapshot { image, .. } => image.as_ref(),
            WorkerRef::Local { .. } => None,
        }
    }
}

/// The host directories behind named local sources.
#[derive(Debug, Clone, Default)]
pub struct LocalDirs(BTreeMap<String, PathBuf>);

impl LocalDirs {
    /// No local directories.
    pub fn new() -> Self {
        LocalDirs::default()
    }

    /// Names `dir` as local source `name` (`context` for the build context).
    pub fn with(mut self, name: impl Into<String>, dir: impl Into<PathBuf>) -> Self {
        self.0.insert(name.into(), dir.into());
        self
    }

    fn get(&self, name: &str) -> Option<&PathBuf> {
        self.0.get(name)
    }
}

/// Everything a [`Worker`] is built from. Only the store is required.
pub struct WorkerOptions {
    /// Named local directories (the build context and `--build-context` directories).
    pub locals: LocalDirs,
    /// Turns a local source's include/exclude patterns into a filter. The cli injects the
    /// frontend's `.dockerignore` matcher here; the default is [`GlobContextFilter`].
    pub context_filter: ContextFilterFactory,
    /// Secrets for `RUN --mount=type=secret`.
    pub secrets: SecretStore,
    /// SSH agent sockets for `RUN --mount=type=ssh`, by id (`default` for `--ssh default`).
    pub ssh_agents: BTreeMap<String, PathBuf>,
    /// The registry client for pulling base images; `None` allows only local images.
    pub registry: Option<Client>,
    /// Pull base images even when the local image store has them (`--pull`).
    pub pull_always: bool,
    /// How RUN steps are run (the init program; `/proc/self/exe` by default).
    pub sandbox: Sandbox,
    /// The uid/gid mapping of RUN steps.
    pub id_mapping: IdMapping,
    /// The checksum cache for context files (usually the solver's own cache database).
    pub checksum_cache: Option<CacheDb>,
    /// Network timeouts of `ADD <url>`.
    pub download_timeouts: DownloadTimeouts,
}

impl std::fmt::Debug for WorkerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerOptions")
            .field("locals", &self.locals)
            .field("secrets", &self.secrets)
            .field("ssh_agents", &self.ssh_agents)
            .field("registry", &self.registry.is_some())
            .field("pull_always", &self.pull_always)
            .field("sandbox", &self.sandbox)
            .field("id_mapping", &self.id_mapping)
            .field("download_timeouts", &self.download_timeouts)
            .finish_non_exhaustive()
    }
}

impl WorkerOptions {
    /// Defaults: no locals, glob filters, no secrets, no registry, the calling binary as the
    /// sandbox init and the detected id mapping (identity for root).
    pub fn new(id_mapping: IdMapping) -> Self {
        WorkerOptions {
            locals: LocalDirs::new(),
            context_filter: context::default_filter_factory(),
            secrets: SecretStore::new(),
            ssh_agents: BTreeMap::new(),
            registry: None,
            pull_always: false,
            sandbox: Sandbox::new(),
            id_mapping,
            checksum_cache: None,
            download_timeouts: DownloadTimeouts::default(),
        }
    }
}

/// The executor that builds images. See the module documentation.
pub struct Worker {
    store: Store,
    snapshotter: Snapshotter,
    lease: Lease,
    layers: LayerDb,
    options: WorkerOptions,
    /// Image references resolved during this build, so an image is resolved once per build.
    resolved: Mutex<HashMap<String, Arc<image::ResolvedBase>>>,
    /// What each remote source (`ADD <url>`, `ADD <git url>`) resolved to when its key was
    /// computed, for the step to use.
    remote_resolved: Mutex<HashMap<String, remote_key::Resolved>>,
    /// Extra environment of particular exec ops, kept out of their cache keys.
    exec_env: Mutex<HashMap<OpDigest, Vec<(String, String)>>>,
    /// What a file op's copies read from a local source when its cache key was computed, by
    /// (op, source), until the op runs and is checked against it.
    copy_reads: Mutex<HashMap<(OpDigest, img_llb::OpRef), Vec<record::Read>>>,
    /// What each local source's cache key read, until a `RUN` mount of it is checked against it.
    local_reads: Mutex<HashMap<context::LocalKey, Arc<Vec<record::Read>>>>,
    /// Private copies of local sources for `RUN` mounts, one per source per build.
    staged_locals: Mutex<HashMap<context::LocalKey, Arc<context::StagedLocal>>>,
    /// Caches imported with `--cache-from`, asked on local misses.
    remote: remote_cache::RemoteState,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("state", &self.store.state().root())
            .field("backend", &self.snapshotter.backend())
            .finish_non_exhaustive()
    }
}

static UNIQUE: AtomicU64 = AtomicU64::new(0);

/// A name no other snapshot of any process has: pid, time and a counter.
pub(crate) fn unique_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{}-{nanos}-{}",
        std::process::id(),
        UNIQUE.fetch_add(1, Ordering::Relaxed)
    )
}

impl Worker {
    /// A worker on `store` using `snapshotter` (whose backend decides how snapshots are made).
    pub fn new(
        store: Store,
        snapshotter: &Snapshotter,
        options: WorkerOptions,
    ) -> Result<Worker, WorkerError> {
        let lease = store.lease(LEASE_TTL).map_err(WorkerError::Lease)?;
        let layers = LayerDb::open(&store.state().root().join("layers.db"))?;
        Ok(Worker {
            snapshotter: snapshotter.with_lease(&lease),
            store,
            lease,
            layers,
            options,
            resolved: Mutex::new(HashMap::new()),
            remote_resolved: Mutex::new(HashMap::new()),
            exec_env: Mutex::new(HashMap::new()),
            copy_reads: Mutex::new(HashMap::new()),
            local_reads: Mutex::new(HashMap::new()),
            staged_locals: Mutex::new(HashMap::new()),
            remote: remote_cache::RemoteState::default(),
        })
    }

    /// Extra environment for the exec op `op`, kept out of its cache key: the frontend's proxy
    /// variables (`LoweredBuild::proxy_env`), known only after lowering, which may itself need
    /// this worker ([`Worker::resolve_base_image`]).
    pub fn set_exec_env(&self, op: OpDigest, vars: Vec<(String, String)>) {
        self.exec_env
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(op, vars);
    }

    pub(crate) fn exec_env(&self, op: &OpDigest) -> Vec<(String, String)> {
        self.exec_env
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(op)
            .cloned()
            .unwrap_or_default()
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The snapshotter (its new snapshots join the build's lease).
    pub fn snapshotter(&self) -> &Snapshotter {
        &self.snapshotter
    }

    /// The lease protecting this build's snapshots and blobs until the worker is dropped.
    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    pub(crate) fn layer_db(&self) -> &LayerDb {
        &self.layers
    }

    /// What garbage collection must keep for the build cache: the snapshot of every record of
    /// `cache`, the images they were unpacked from, and the recorded exported layers (which
    /// spare an unchanged rebuild the compression).
    pub fn gc_roots(&self, cache: &CacheDb) -> Result<GcRoots, WorkerError> {
        let mut roots = GcRoots::default();
        for record in cache.records()? {
            if let Some(lazy) = parse_lazy_id(&record.output_id) {
                // A lazy result keeps its blobs, which are all it is until unpacked.
                roots.snapshots.push(lazy.key);
                roots.blobs.extend(lazy.image);
                roots.blobs.extend(
                    lazy.layers
                        .iter()
                        .filter_map(|l| Digest::try_from(&l.digest).ok()),
                );
            } else if let Some(WorkerRef::Snapshot { key, image }) =
                parse_output_id(&record.output_id)
            {
                roots.snapshots.push(key);
                roots.blobs.extend(image);
            }
        }
        // A recorded layer is kept while the snapshot it came from is: that snapshot, or one
        // built on it, is what a cache record keeps.
        let mut kept = std::collections::HashSet::new();
        for key in &roots.snapshots {
            let mut next = Some(key.clone());
            while let Some(k) = next {
                if !kept.insert(k.clone()) {
                    break;
                }
                next = match self.snapshotter.stat(&k) {
                    Ok(info) => info.parent,
                    Err(SnapshotError::NotFound { .. }) => None,
                    Err(e) => return Err(e.into()),
                };
            }
        }
        roots.blobs.extend(
            self.layers
                .blobs()?
                .into_iter()
                .filter(|(snapshot, _)| kept.contains(snapshot))
                .map(|(_, digest)| digest),
        );
        Ok(roots)
    }

    /// The directory to mount snapshots on and stage files in.
    pub(crate) fn scratch(&self) -> PathBuf {
        self.store.state().tmp()
    }

    /// Prepares an active snapshot on `parent` (a committed snapshot, unpacked first when it
    /// is a lazy result, or empty).
    pub(crate) fn prepare(&self, parent: Option<&WorkerRef>) -> Result<Active<'_>, WorkerError> {
        let parent_key = match parent {
            None => None,
            Some(WorkerRef::Snapshot { key, .. }) => Some(key.as_str()),
            Some(WorkerRef::Local { name, .. }) => {
                return Err(WorkerError::LocalAsRoot { name: name.clone() })
            }
        };
        if let Some(key) = parent_key {
            self.materialize_key(key)?;
        }
        self.prepare_on(parent_key)
    }

    /// Prepares an active snapshot on the committed snapshot `parent_key`, or empty.
    pub(crate) fn prepare_on(&self, parent_key: Option<&str>) -> Result<Active<'_>, WorkerError> {
        let key = format!("active/{}", unique_suffix());
        let snapshot = self.snapshotter.prepare(&key, parent_key)?;
        Ok(Active {
            worker: self,
            key,
            mounts: snapshot.mounts,
            done: false,
        })
    }

    /// Runs `work` on the tree of a committed snapshot (unpacked first when it is a lazy
    /// result) or a local directory.
    pub(crate) fn with_tree<R: Send>(
        &self,
        tree: &WorkerRef,
        work: impl FnOnce(&Path) -> R + Send,
    ) -> Result<R, WorkerError> {
        match tree {
            WorkerRef::Local { path, .. } => Ok(work(path)),
            WorkerRef::Snapshot { key, .. } => {
                self.materialize_key(key)?;
                let mounts = self.snapshotter.mounts(key)?;
                mounted::with_mounted(&mounts, &self.scratch(), work).map_err(|source| {
                    WorkerError::Mount {
                        snapshot: key.clone(),
                        source,
                    }
                })
            }
        }
    }

    fn local_ref(&self, name: &str, include: &[String], exclude: &[String]) -> Option<WorkerRef> {
        self.options.locals.get(name).map(|path| WorkerRef::Local {
            name: name.to_owned(),
            path: path.clone(),
            include_patterns: include.to_vec(),
            exclude_patterns: exclude.to_vec(),
        })
    }

    /// The filter selecting a local source's files.
    pub(crate) fn local_filter(
        &self,
        include: &[String],
        exclude: &[String],
    ) -> Result<Box<dyn PathFilter + Send>, WorkerError> {
        (self.options.context_filter)(include, exclude)
            .map_err(|reason| WorkerError::ContextPatterns { reason })
    }
}

/// An active snapshot being changed by an op: committed on success, removed otherwise.
pub(crate) struct Active<'w> {
    worker: &'w Worker,
    key: String,
    mounts: Vec<img_snapshot::Mount>,
    done: bool,
}

impl Active<'_> {
    pub(crate) fn mounts(&self) -> &[img_snapshot::Mount] {
        &self.mounts
    }

    /// Runs `work` on the snapshot's writable tree.
    pub(crate) fn with_tree<R: Send>(
        &self,
        work: impl FnOnce(&Path) -> R + Send,
    ) -> Result<R, WorkerError> {
        mounted::with_mounted(&self.mounts, &self.worker.scratch(), work).map_err(|source| {
            WorkerError::Mount {
                snapshot: self.key.clone(),
                source,
            }
        })
    }

    pub(crate) fn key(&self) -> &str {
        &self.key
    }

    /// Commits under a name derived from `name_prefix` that no other snapshot has.
    pub(crate) fn commit(mut self, name_prefix: &str) -> Result<WorkerRef, WorkerError> {
        let name = format!("{name_prefix}.{}", unique_suffix());
        self.worker.snapshotter.commit(&self.key, &name)?;
        self.done = true;
        Ok(WorkerRef::Snapshot {
            key: name,
            image: None,
        })
    }

    /// Commits under exactly `name`; when another build committed that name first, this
    /// snapshot is dropped and theirs used (the content is the same by construction).
    pub(crate) fn commit_shared(mut self, name: &str) -> Result<String, WorkerError> {
        match self.worker.snapshotter.commit(&self.key, name) {
            Ok(_) => {
                self.done = true;
                Ok(name.to_owned())
            }
            Err(SnapshotError::Exists { .. }) => Ok(name.to_owned()),
            Err(e) => Err(e.into()),
        }
    }
}

impl Drop for Active<'_> {
    fn drop(&mut self) {
        if !self.done {
            // A failed op leaves nothing behind; a failure to remove is swept by gc later.
            let _ = self.worker.snapshotter.remove(&self.key);
        }
    }
}

/// The output an id written by [`Executor::output_id`] names, if it is well formed.
fn parse_output_id(id: &str) -> Option<WorkerRef> {
    let json = id
        .strip_prefix(SNAPSHOT_ID)
        .or_else(|| id.strip_prefix(LOCAL_ID))?;
    serde_json::from_str(json).ok()
}

/// The lazy result an id written by [`Executor::output_id`] names, if it is one.
fn parse_lazy_id(id: &str) -> Option<lazy::LazyRecord> {
    serde_json::from_str(id.strip_prefix(LAZY_ID)?).ok()
}

/// `output_id` prefixes.
const SNAPSHOT_ID: &str = "snapshot:";
const LOCAL_ID: &str = "local:";
const LAZY_ID: &str = "lazy:";

impl Executor for Worker {
    type Output = WorkerRef;
    type Error = WorkerError;

    fn cache_key_extra(
        &self,
        op: &Op,
        inputs: &Inputs<WorkerRef>,
        cancel: &CancelToken,
    ) -> Result<CacheKeyExtra, WorkerError> {
        match op {
            Op::Source(SourceOp::Image(source)) => {
                let base = self.resolve_image(source)?;
                Ok(CacheKeyExtra::new().with_salt(format!("manifest:{}", base.manifest_digest)))
            }
            Op::Source(SourceOp::Local(local)) => self.local_cache_key(local),
            Op::Source(SourceOp::Http(http)) => self.http_cache_key(http, cancel),
            Op::Source(SourceOp::Git(git)) => self.git_cache_key(git, cancel),
            Op::File(file) => self.file_cache_key(file, inputs),
            _ => Ok(CacheKeyExtra::new()),
        }
    }

    fn execute(
        &self,
        op: &Op,
        inputs: &Inputs<WorkerRef>,
        ctx: &ExecContext<'_>,
    ) -> Result<WorkerRef, WorkerError> {
        let name = ctx.cache_key().digest().hex();
        match op {
            Op::Source(SourceOp::Image(source)) => self.image_source(source, ctx),
            Op::Source(SourceOp::Local(local)) => self
                .local_ref(
                    &local.name,
                    &local.include_patterns,
                    &local.exclude_patterns,
                )
                .ok_or_else(|| WorkerError::UnknownLocal {
                    name: local.name.clone(),
                }),
            Op::Source(SourceOp::Http(http)) => self.http_source(http, &name, ctx),
            Op::Source(SourceOp::Git(git)) => self.git_source(git, &name, ctx),
            Op::Exec(exec) => self.exec(exec, inputs, &name, ctx),
            Op::File(file) => self.file(file, inputs, &name, ctx),
            Op::Merge(merge) => self.merge(merge, inputs, &name),
            Op::Diff(diff) => self.diff(diff, inputs, &name),
            other => Err(WorkerError::UnsupportedOp {
                kind: other.kind_name(),
            }),
        }
    }

    fn output_id(&self, output: &WorkerRef) -> String {
        if let Some(record) = self.lazy_record(output) {
            // Plain data always serializes.
            return format!(
                "{LAZY_ID}{}",
                serde_json::to_string(&record).unwrap_or_default()
            );
        }
        match output {
            WorkerRef::Snapshot { .. } => {
                // Plain data always serializes.
                format!(
                    "{SNAPSHOT_ID}{}",
                    serde_json::to_string(output).unwrap_or_default()
                )
            }
            WorkerRef::Local { .. } => {
                format!(
                    "{LOCAL_ID}{}",
                    serde_json::to_string(output).unwrap_or_default()
                )
            }
        }
    }

    fn output_size(&self, output: &WorkerRef) -> Option<u64> {
        let key = output.snapshot_key()?;
        self.snapshotter.stat(key).ok()?.size
    }

    fn load_remote(&self, key: &img_solver::CacheKey) -> Result<Option<WorkerRef>, WorkerError> {
        self.load_remote_key(key)
    }

    fn load(&self, id: &str) -> Result<Option<WorkerRef>, WorkerError> {
        if id.starts_with(LAZY_ID) {
            return match parse_lazy_id(id) {
                Some(record) => self.load_lazy(record),
                None => Err(WorkerError::MalformedOutputId { id: id.to_owned() }),
            };
        }
        let output = parse_output_id(id)
            .ok_or_else(|| WorkerError::MalformedOutputId { id: id.to_owned() })?;
        match output {
            // Checked and leased in one step, so a concurrent prune cannot remove it between
            // the two; a snapshot of the other backend is a miss, made again with this one.
            WorkerRef::Snapshot { ref key, ref image } => {
                let blobs: Vec<Digest> = image.iter().cloned().collect();
                Ok(self
                    .snapshotter
                    .lease_existing(key, &blobs)?
                    .map(|_| output))
            }
            // The directory is this build's, wherever an earlier build found it: the cache key
            // (the checksum of its files) already says the content is the same.
            WorkerRef::Local {
                name,
                include_patterns,
                exclude_patterns,
                ..
            } => Ok(self.local_ref(&name, &include_patterns, &exclude_patterns)),
        }
    }
}
