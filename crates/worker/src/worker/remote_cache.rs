//! The build cache shared between machines (`--cache-from`, `--cache-to`), on the worker's
//! side: a remote hit becomes a lazy snapshot chain, and a solved build becomes a cache config.
//!
//! A record of the cache maps an op's cache key to the layer chain of its snapshot, base
//! image layers included. On a local miss ([`Executor::load_remote`](img_solver::Executor))
//! a hit costs nothing but the lookup: the result is the chain's top snapshot, named by chain
//! id as base image layers are, and left unpacked ([`super::lazy`]) until a step or an export
//! needs its files or its blobs. A chain shared with the base image or with another hit is
//! unpacked once. A cache export in a build whose results are still lazy names their layers
//! from the imported cache, without downloading them.
//!
//! Cache mounts travel as one layer each, keyed by their id, restored before the solve into
//! a cache directory this state directory does not have yet (a local one is never replaced).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use img_llb::{Definition, MountKind, Op};
use img_remote_cache::{
    CacheBackend, CacheBuilder, CacheConfig, CacheError, CacheLayer, WriteReport,
};
use img_snapshot::{
    apply_layer, export_layer, ApplyOptions, Compression, Digest, ExportOptions, LayerDescriptor,
};
use img_solver::{CacheKey, Solved};

use super::image::{chain_ids, image_parts};
use super::layer_db::ExportVariant;
use super::lazy::{LazyLayer, LazyState, Origin};
use super::{unique_suffix, LocalBlobs, Worker, WorkerError, WorkerRef};

/// The diff id of an empty tar: a step that changed nothing (such layers are left out of
/// images, so an inline cache cannot name them).
const EMPTY_LAYER_DIFF_ID: &str =
    "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef";

/// Which results a cache export keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheMode {
    /// Only the final result's own chain (`mode=min`, the default, as in BuildKit).
    #[default]
    Min,
    /// Every step of every stage (`mode=max`).
    Max,
}

/// How a solved build becomes a cache config.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct CacheExportOptions {
    /// Which results to keep.
    pub mode: CacheMode,
    /// Layer compression; the image export's, so both name the same blobs.
    pub compression: Compression,
    /// Compression level (`None`: the compression's default); the image export's too.
    pub level: Option<u32>,
    /// `SOURCE_DATE_EPOCH` of the image export, for the same reason.
    pub source_date_epoch: Option<i64>,
    /// Export the content of the build's cache mounts (`cache-mounts=true`).
    pub cache_mounts: bool,
    /// Cache mounts larger than this many bytes are skipped with a warning.
    pub cache_mounts_max_size: Option<u64>,
    /// Leave out records whose chain holds an empty layer (inline caches, whose layers are
    /// the image's, which has none).
    pub skip_empty_layers: bool,
}

/// A cache config built from a solve, with what was left out and why.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BuiltCache {
    /// The config.
    pub config: CacheConfig,
    /// Cache mounts exported, by id, with their layer size.
    pub cache_mounts: Vec<(String, u64)>,
    /// What was skipped (a cache mount over the size limit), for the user.
    pub warnings: Vec<String>,
}

/// A cache read for this build.
#[derive(Debug)]
pub(crate) struct Import {
    pub(crate) backend: Arc<dyn CacheBackend>,
    config: CacheConfig,
}

/// The worker's shared-cache state: the imported caches and what went wrong using them.
#[derive(Debug, Default)]
pub(crate) struct RemoteState {
    imports: Mutex<Vec<Arc<Import>>>,
    warnings: Mutex<Vec<String>>,
    /// Lazy results and what unpacking them did.
    pub(crate) lazy: LazyState,
}

pub(crate) fn remote_err(source: CacheError) -> WorkerError {
    WorkerError::RemoteCache {
        source: Box::new(source),
    }
}

fn oci_digest(d: &img_registry::Digest, what: &str) -> Result<Digest, WorkerError> {
    Digest::try_from(d).map_err(|_| WorkerError::BadImage {
        reference: what.to_owned(),
        problem: format!("unsupported digest {d}"),
    })
}

/// The compression a layer media type says, for the layer database's export variant.
pub(crate) fn compression_of(media_type: &str) -> Option<Compression> {
    if media_type.ends_with("+gzip") || media_type.ends_with(".tar.gzip") {
        Some(Compression::Gzip)
    } else if media_type.ends_with("+zstd") || media_type.ends_with(".tar.zstd") {
        Some(Compression::Zstd)
    } else if media_type.ends_with(".tar") {
        Some(Compression::Uncompressed)
    } else {
        None
    }
}

/// The ids of the cache mounts the definition's `RUN` steps use.
pub fn cache_mount_ids(definition: &Definition) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    for (_, op) in definition.ops() {
        if let Op::Exec(exec) = op {
            for mount in &exec.mounts {
                if let MountKind::Cache { id, .. } = &mount.kind {
                    ids.insert(id.clone());
                }
            }
        }
    }
    ids
}

/// The bytes of the files below `dir`, links not followed.
fn tree_size(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => tree_size(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}

impl Worker {
    /// Reads the cache at `backend` (its metadata only) for this build's lookups; returns how
    /// many records it holds. An error leaves the build without that cache: the caller warns.
    pub fn import_cache(&self, backend: Arc<dyn CacheBackend>) -> Result<usize, CacheError> {
        let config = backend.read()?;
        let records = config.records.len();
        self.remote
            .imports
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::new(Import { backend, config }));
        Ok(records)
    }

    /// What went wrong using imported caches since the last call (a refused blob, an
    /// unreachable registry), one line each; the steps concerned ran instead.
    pub fn take_cache_warnings(&self) -> Vec<String> {
        std::mem::take(
            &mut *self
                .remote
                .warnings
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        )
    }

    /// Fetches `layer` from `import` into the content store unless it is there already.
    fn fetch_into_store(
        &self,
        import: &Import,
        layer: &CacheLayer,
        digest: &Digest,
    ) -> Result<(), WorkerError> {
        let content = self.store.content();
        if content.exists(digest) {
            return Ok(());
        }
        let sink = LocalBlobs::new(content, Some(&self.lease));
        import
            .backend
            .fetch_layer(layer, &sink)
            .map_err(remote_err)?;
        self.remote.lazy.count_download(layer.size);
        Ok(())
    }

    pub(crate) fn warn(&self, line: String) {
        self.remote
            .warnings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(line);
    }

    /// The result cached under `key` in an imported cache, as a lazy result: nothing is
    /// downloaded until it is needed. `None` when no cache has it, or only with a layer
    /// refused earlier in this build.
    pub(super) fn load_remote_key(&self, key: &CacheKey) -> Result<Option<WorkerRef>, WorkerError> {
        let imports = self
            .remote
            .imports
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let key = key.to_string();
        for import in imports {
            let Some(chain) = import.config.lookup(&key) else {
                continue;
            };
            if chain
                .iter()
                .any(|l| self.remote.lazy.is_refused(l.digest.as_ref()))
            {
                continue;
            }
            let location = import.backend.location();
            let diff_ids = chain
                .iter()
                .map(|l| oci_digest(&l.diff_id, &location))
                .collect::<Result<Vec<_>, _>>()?;
            let mut layers = Vec::with_capacity(chain.len());
            for ((layer, diff_id), chain_id) in
                chain.iter().zip(&diff_ids).zip(chain_ids(&diff_ids))
            {
                layers.push(LazyLayer {
                    layer: (*layer).clone(),
                    digest: oci_digest(&layer.digest, &location)?,
                    diff_id: *diff_id,
                    key: self.layer_key(&chain_id),
                });
            }
            return self
                .lazy_result(Origin::Cache(import.clone()), layers, None)
                .map(Some);
        }
        Ok(None)
    }

    /// Restores the imported content of the cache mounts `definition` uses into cache
    /// directories this state directory lacks; returns the ids restored with their sizes.
    /// A mount that cannot be restored is said in the warnings and starts empty.
    pub fn restore_cache_mounts(&self, definition: &Definition) -> Vec<(String, u64)> {
        let used = cache_mount_ids(definition);
        let imports = self
            .remote
            .imports
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut restored = Vec::new();
        let mut done = HashSet::new();
        for import in imports {
            for entry in &import.config.cache_mounts {
                if !used.contains(&entry.id) || done.contains(&entry.id) {
                    continue;
                }
                let Some(layer) = import.config.cache_mount(&entry.id) else {
                    continue;
                };
                match self.restore_cache_mount(&import, &entry.id, layer) {
                    Ok(true) => {
                        done.insert(entry.id.clone());
                        restored.push((entry.id.clone(), layer.size));
                    }
                    Ok(false) => {
                        done.insert(entry.id.clone());
                    }
                    Err(err) => self.warn(format!(
                        "cache {}: cache mount {:?}: {}; it starts empty",
                        import.backend.location(),
                        entry.id,
                        img_solver::error_chain(&err)
                    )),
                }
            }
        }
        restored
    }

    /// `Ok(false)`: the mount exists here already and is kept.
    fn restore_cache_mount(
        &self,
        import: &Import,
        id: &str,
        layer: &CacheLayer,
    ) -> Result<bool, WorkerError> {
        let dir = self.cache_mount_dir(id);
        let data = dir.join("data");
        if data.exists() {
            return Ok(false);
        }
        let location = import.backend.location();
        let content = self.store.content();
        let digest = oci_digest(&layer.digest, &location)?;
        self.fetch_into_store(import, layer, &digest)?;
        // Unpacked beside its final name and renamed: a concurrent build sees no cache
        // directory or a whole one.
        let staging = dir.join(format!("data.import-{}", unique_suffix()));
        std::fs::create_dir_all(&staging).map_err(WorkerError::file(
            "creating cache mount directory",
            &staging,
        ))?;
        let blob = content.open(&digest)?;
        let unpacked = apply_layer(blob, &staging, &ApplyOptions::default());
        let report = match unpacked {
            Ok(report) => report,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&staging);
                return Err(e.into());
            }
        };
        if report.diff_id.to_string() != layer.diff_id.to_string() {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(WorkerError::DiffIdMismatch {
                reference: location,
                layer: digest.to_string(),
                expected: layer.diff_id.to_string(),
                actual: report.diff_id.to_string(),
            });
        }
        if std::fs::rename(&staging, &data).is_err() {
            // Another build restored or created it first: theirs is kept.
            let _ = std::fs::remove_dir_all(&staging);
            return Ok(false);
        }
        Ok(true)
    }

    fn cache_mount_dir(&self, id: &str) -> std::path::PathBuf {
        self.store
            .state()
            .root()
            .join("cache-mounts")
            .join(super::exec::cache_dir_name(id))
    }

    /// The cache config of a solved build: a record per step kept by `options.mode` (source
    /// ops are fetched again rather than cached), each the layer chain of its snapshot, and
    /// with `cache_mounts` the content of the build's cache mounts. Layers not exported yet
    /// are exported now and recorded, so the image export that follows reuses them.
    pub fn build_cache(
        &self,
        definition: &Definition,
        solved: &Solved<WorkerRef>,
        options: &CacheExportOptions,
    ) -> Result<BuiltCache, WorkerError> {
        let content = self.store.content();
        // Base image snapshots are their image's layers.
        let mut image_layers: HashMap<String, CacheLayer> = HashMap::new();
        for output in solved.outputs.values() {
            if let Some(manifest) = output.image_manifest() {
                let parts = image_parts(&content, manifest)?;
                for (((digest, media_type, size), diff_id), chain_id) in parts
                    .layers
                    .iter()
                    .zip(&parts.diff_ids)
                    .zip(chain_ids(&parts.diff_ids))
                {
                    image_layers.insert(
                        self.layer_key(&chain_id),
                        CacheLayer::new(
                            digest.to_oci(),
                            *size,
                            media_type.clone(),
                            diff_id.to_oci(),
                        ),
                    );
                }
            }
        }
        let variant = ExportVariant {
            compression: options.compression,
            level: options.level,
            source_date_epoch: options.source_date_epoch,
        };
        // Lazy results, and snapshots unpacked from them, are the blobs they came from (when
        // of the compression asked for): nothing is downloaded or compressed again.
        for layer in self.lazy_layers() {
            if compression_of(&layer.layer.media_type) == Some(options.compression) {
                image_layers.entry(layer.key).or_insert(layer.layer);
            }
        }
        // mode=min keeps the chains of the results: one per platform of a multi-platform build.
        let mut final_chain: HashSet<String> = HashSet::new();
        for output in definition.outputs() {
            if let Some(key) = solved
                .outputs
                .get(&output.digest)
                .and_then(WorkerRef::snapshot_key)
            {
                final_chain.extend(self.snapshot_chain(key)?);
            }
        }
        let mut builder = CacheBuilder::new();
        let mut layer_memo: HashMap<String, CacheLayer> = HashMap::new();
        for (digest, op) in definition.ops() {
            if matches!(op, Op::Source(_)) {
                continue;
            }
            let (Some(output), Some(key)) = (solved.outputs.get(digest), solved.keys.get(digest))
            else {
                continue;
            };
            let Some(snapshot) = output.snapshot_key() else {
                continue;
            };
            if options.mode == CacheMode::Min && !final_chain.contains(snapshot) {
                continue;
            }
            let mut chain = Vec::new();
            for s in self.snapshot_chain(snapshot)? {
                let layer = match layer_memo.get(&s).or_else(|| image_layers.get(&s)) {
                    Some(layer) => layer.clone(),
                    None => {
                        let layer = self.export_snapshot_layer(&s, &variant)?;
                        layer_memo.insert(s.clone(), layer.clone());
                        layer
                    }
                };
                chain.push(layer);
            }
            if options.skip_empty_layers
                && chain
                    .iter()
                    .any(|l| l.diff_id.to_string() == EMPTY_LAYER_DIFF_ID)
            {
                continue;
            }
            builder.add_record(&key.to_string(), &chain);
        }
        let mut warnings = Vec::new();
        let mut mounts = Vec::new();
        if options.cache_mounts {
            for id in cache_mount_ids(definition) {
                let data = self.cache_mount_dir(&id).join("data");
                if !data.is_dir() {
                    continue;
                }
                let size = tree_size(&data);
                if let Some(max) = options.cache_mounts_max_size.filter(|&max| size > max) {
                    warnings.push(format!(
                        "cache mount {id:?} holds {size} bytes, over cache-mounts-max-size={max}; not exported"
                    ));
                    continue;
                }
                let export = ExportOptions {
                    compression: options.compression,
                    level: options.level,
                    ..ExportOptions::default()
                };
                let layer = export_layer(&content, &data, &export).map_err(|source| {
                    WorkerError::CacheMountExport {
                        id: id.clone(),
                        source,
                    }
                })?;
                self.lease
                    .add_blob(&layer.digest)
                    .map_err(WorkerError::Lease)?;
                let layer = cache_layer(&layer);
                mounts.push((id.clone(), layer.size));
                builder.add_cache_mount(&id, &layer);
            }
        }
        Ok(BuiltCache {
            config: builder.build(),
            cache_mounts: mounts,
            warnings,
        })
    }

    /// The references of the base images this build resolved: repositories that may hold the
    /// cache's base layers, for a cross-repository mount instead of an upload.
    pub fn base_image_references(&self) -> Vec<String> {
        let resolved = self.resolved.lock().unwrap_or_else(|e| e.into_inner());
        let mut references: Vec<String> = resolved.values().map(|r| r.reference.clone()).collect();
        references.sort();
        references.dedup();
        references
    }

    /// Writes `config` to `backend`, its layers read from the content store; a layer of a
    /// lazy result is downloaded only if the backend has it neither already nor for a mount.
    pub fn export_cache(
        &self,
        backend: &dyn CacheBackend,
        config: &CacheConfig,
    ) -> Result<WriteReport, CacheError> {
        backend.write(config, &self.lazy_blobs())
    }

    /// The registry references of the imported caches: repositories that hold their layers,
    /// for a cross-repository mount instead of a download and an upload.
    pub fn imported_cache_references(&self) -> Vec<String> {
        let imports = self
            .remote
            .imports
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        imports
            .iter()
            .filter_map(|import| import.backend.registry_reference())
            .collect()
    }

    /// The snapshot keys from the bottom of `key`'s chain up to `key` (a lazy result's from
    /// its layers, without unpacking them).
    fn snapshot_chain(&self, key: &str) -> Result<Vec<String>, WorkerError> {
        if let Some(lazy) = self.lazy_chain(key) {
            return Ok(lazy.layers().iter().map(|l| l.key.clone()).collect());
        }
        let mut chain = Vec::new();
        let mut next = Some(key.to_owned());
        while let Some(k) = next {
            next = self.snapshotter.stat(&k)?.parent;
            chain.push(k);
        }
        chain.reverse();
        Ok(chain)
    }

    /// The layer of snapshot `key` against its parent: the recorded export, else a new one.
    fn export_snapshot_layer(
        &self,
        key: &str,
        variant: &ExportVariant,
    ) -> Result<CacheLayer, WorkerError> {
        let content = self.store.content();
        let recorded = self
            .layers
            .get(key, variant)?
            .filter(|l| content.exists(&l.digest));
        let layer = match recorded {
            Some(layer) => layer,
            None => {
                let options = ExportOptions {
                    compression: variant.compression,
                    level: variant.level,
                    source_date_epoch: variant.source_date_epoch,
                    ..ExportOptions::default()
                };
                let layer = self.snapshotter.diff(key, &content, &options)?;
                self.layers.put(key, variant, &layer)?;
                layer
            }
        };
        self.lease
            .add_blob(&layer.digest)
            .map_err(WorkerError::Lease)?;
        Ok(cache_layer(&layer))
    }
}

fn cache_layer(layer: &LayerDescriptor) -> CacheLayer {
    CacheLayer::new(
        layer.digest.to_oci(),
        layer.size,
        layer.compression.media_type(),
        layer.diff_id.to_oci(),
    )
}
